package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/group"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/track"
)

// Every goroutine the daemon starts has ended when its tests have.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// failingProber is a health engine that stops with an error at once.
type failingProber struct{ err error }

func (p failingProber) Run(context.Context) error               { return p.err }
func (failingProber) Update(*conf.Config)                       {}
func (failingProber) Updates() <-chan struct{}                  { return nil }
func (failingProber) Snapshot() map[health.Key]health.Status    { return nil }
func (failingProber) Up(string, netip.AddrPort) bool            { return false }
func (failingProber) Weight(string, netip.AddrPort) (int, bool) { return 0, false }
func (p failingProber) Preview(*conf.Config) (func(string, netip.AddrPort) bool, func(string, netip.AddrPort) (int, bool)) {
	return p.Up, p.Weight
}

// vrrpInst is a VRRP instance that runs until its context ends.
type vrrpInst struct {
	name    string
	stopped atomic.Bool
}

func (v *vrrpInst) Name() string { return v.name }

// Source says nothing: no address watch.
func (*vrrpInst) Source() (netip.Addr, int) { return netip.Addr{}, 0 }
func (v *vrrpInst) Run(ctx context.Context) error {
	<-ctx.Done()
	v.stopped.Store(true)
	return nil
}
func (*vrrpInst) Send(context.Context, vrrp.Event)                     {}
func (*vrrpInst) Reconfigure(context.Context, conf.VRRPInstance) error { return nil }
func (v *vrrpInst) Status() instance.Status                            { return instance.Status{Name: v.name} }
func (*vrrpInst) Wants() vrrp.State                                    { return vrrp.Backup }
func (*vrrpInst) OnWantsChange(func())                                 {}
func (*vrrpInst) OnTransition(func())                                  {}
func (*vrrpInst) Close() error                                         { return nil }

func testConfig() *conf.Config {
	return &conf.Config{Director: conf.Director{Name: "t", Resync: time.Minute}, VRRPInstances: []conf.VRRPInstance{{
		Name: "vi", Interface: "eth0", RouterID: 1, Priority: 100, AdvertInterval: time.Second,
		VirtualIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}}}}
}

// When the daemon loop fails, VRRP is stopped with it at once: the daemon
// neither waits out the handover bound nor reports a handover that did
// not finish in time.
func TestLoopFailureStopsVRRP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &syncWriter{w: &bytes.Buffer{}}
		log := slog.New(slog.NewTextHandler(logs, nil))
		cfg := testConfig()
		boom := errors.New("boom")
		d := newDaemon(log, "lvsha.toml", cfg, ipvs.NewReconciler(&ipvstest.Kernel{}, log), failingProber{err: boom})
		inst := &vrrpInst{name: "vi"}
		var err error
		d.vrrp, err = group.Open(group.Options{Log: log,
			Open: func(*slog.Logger, conf.VRRPInstance, string) (group.Instance, error) { return inst, nil },
			WatchLinks: func(ctx context.Context, _ []string) <-chan track.LinkReport {
				ch := make(chan track.LinkReport)
				close(ch)
				return ch
			}}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = d.run(t.Context(), nil, func(ctx context.Context) { <-ctx.Done() })
		if !errors.Is(err, boom) {
			t.Errorf("run returned %v, want the health engine's error", err)
		}
		if !inst.stopped.Load() {
			t.Error("the VRRP instance still runs after the daemon stopped")
		}
		if took := time.Since(start); took > 0 {
			t.Errorf("stopping took %v, want no wait for a handover bound", took)
		}
		if strings.Contains(logs.String(), "did not finish in time") {
			t.Errorf("a handover reported late:\n%s", logs.String())
		}
	})
}

// hookRunner is a hook runner that takes a while to stop.
type slowRunner struct{ stopped atomic.Bool }

func (r *slowRunner) Run(ctx context.Context) {
	<-ctx.Done()
	time.Sleep(time.Second) // the running hook finishing
	r.stopped.Store(true)
}

// The loop returns only when the hook runner it started has stopped.
func TestLoopJoinsHookRunner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
		d := newDaemon(log, "lvsha.toml", testConfig(), ipvs.NewReconciler(&ipvstest.Kernel{}, log), failingProber{err: errors.New("boom")})
		r := &slowRunner{}
		d.hookRunner = r
		if err := d.loop(t.Context(), nil); err == nil {
			t.Fatal("loop returned no error from a failed health engine")
		}
		if !r.stopped.Load() {
			t.Error("loop returned while its hook runner still ran")
		}
	})
}

// fakeListener is a control socket whose Accept the test fails.
type fakeListener struct {
	path   string
	fail   chan error
	closed chan struct{}
	once   sync.Once
}

func newFakeListener(path string) *fakeListener {
	return &fakeListener{path: path, fail: make(chan error, 1), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.fail:
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error { l.once.Do(func() { close(l.closed) }); return nil }
func (l *fakeListener) Addr() net.Addr {
	return &net.UnixAddr{Name: l.path, Net: "unix"}
}

// A control socket that fails is reported at once, while the daemon
// runs, and opened again after the backoff; one that cannot be opened
// is retried.
func TestControlSocketFailureReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.sock")
		logs := &syncWriter{w: &bytes.Buffer{}}
		log := slog.New(slog.NewTextHandler(logs, nil))
		first := newFakeListener(path)
		var mu sync.Mutex
		var listens []time.Duration
		var current *fakeListener
		start := time.Now()
		listen := func(p string) (net.Listener, error) {
			mu.Lock()
			defer mu.Unlock()
			if p != path {
				t.Errorf("opened %s, want %s", p, path)
			}
			listens = append(listens, time.Since(start))
			if len(listens) == 1 {
				return nil, os.ErrPermission
			}
			current = newFakeListener(p)
			return current, nil
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			superviseControl(ctx, log, first, path, nil, listen, backoff{min: time.Second, max: 30 * time.Second})
		}()
		synctest.Wait()
		first.fail <- errors.New("accept: bad file descriptor")
		synctest.Wait()
		if !strings.Contains(logs.String(), "control socket failed") {
			t.Errorf("the failure is not logged while the daemon runs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Second)
		mu.Lock()
		got := listens
		reopened := current
		mu.Unlock()
		if len(got) != 2 || got[0] != time.Second || got[1] != 3*time.Second {
			t.Errorf("opened again at %v, want at 1s and, after a refusal, 3s", got)
		}
		if reopened == nil {
			t.Fatal("the control socket was not opened again")
		}
		cancel()
		<-done
		select {
		case <-reopened.closed:
		default:
			t.Error("the reopened control socket is still open after the stop")
		}
	})
}
