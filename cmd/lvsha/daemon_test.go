package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// backend is a loopback HTTP server that can be stopped and restarted on
// the same port, as a real server that fails and recovers.
type backend struct {
	t    *testing.T
	addr string
	srv  *http.Server
}

func startBackend(t *testing.T, addr string) *backend {
	t.Helper()
	b := &backend{t: t, addr: addr}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *backend) start() {
	b.t.Helper()
	var ln net.Listener
	var err error
	// The port was just released by stop; retry briefly in case the kernel
	// still holds it.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("listen %s: %v", b.addr, err)
	}
	b.addr = ln.Addr().String()
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go b.srv.Serve(ln)
}

func (b *backend) stop() {
	if b.srv != nil {
		b.srv.Close()
		b.srv = nil
	}
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// kernelWeights reads the fake kernel's table as "service dest" → weight.
func kernelWeights(t *testing.T, k *ipvstest.Kernel) map[string]int {
	t.Helper()
	r := ipvs.NewReconciler(k, nil)
	st, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, s := range st {
		for _, d := range s.Destinations {
			out[s.Service.Key().String()+" "+d.Destination.String()] = d.Destination.Weight
		}
	}
	return out
}

// runDaemon runs d's loop (hup delivers reload signals; nil for none) and
// serves its control socket at sock until stop is called or the test
// ends; stopping checks the loop ended cleanly and shows the daemon's log
// if the test failed.
func runDaemon(t *testing.T, d *daemon, logs *syncWriter, sock string, hup chan os.Signal) (stop func()) {
	t.Helper()
	ln, err := listenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	loopDone, ctlDone := make(chan error, 1), make(chan error, 1)
	go func() { loopDone <- d.loop(ctx, hup) }()
	go func() { ctlDone <- serveControl(ctx, ln, d, d.log) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-loopDone; err != nil {
			t.Errorf("loop: %v", err)
		}
		<-ctlDone
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	t.Cleanup(stop)
	return stop
}

// waitFor re-checks cond each time the daemon logs a line (every kernel
// write, sync and reload is logged after it took effect), failing the test
// when limit passes first: it waits for the daemon's events, not on a
// polling clock.
func waitFor(t *testing.T, logs *syncWriter, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	bound := time.NewTimer(limit)
	defer bound.Stop()
	for !cond() {
		select {
		case <-logs.lines():
		case <-bound.C:
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
	}
}

// TestDaemonDrainsAndRestores runs the daemon loop with the real health
// engine against loopback HTTP servers and the stateful fake kernel: a real
// server that stops answering drains to weight 0, comes back at its weight,
// a bad reload keeps the last good config, and the control socket reports
// all of it.
func TestDaemonDrainsAndRestores(t *testing.T) {
	web1 := startBackend(t, "127.0.0.1:0")
	web2 := startBackend(t, "127.0.0.1:0")
	dir := t.TempDir()
	sock := filepath.Join(dir, "lvsha.sock")
	path := filepath.Join(dir, "lvsha.toml")
	good := fmt.Sprintf(`
[director]
name = "test"
control_socket = %q
resync_interval = "200ms"

[[virtual_server]]
name = "web"
address = "10.1.2.3:80"
scheduler = "rr"
  [virtual_server.check]
  type = "http"
  interval = "50ms"
  timeout = "40ms"
  rise = 2
  fall = 2
  [[virtual_server.real_server]]
  address = %q
  weight = 3
  [[virtual_server.real_server]]
  address = %q
  weight = 2
`, sock, web1.addr, web2.addr)
	writeConfig(t, path, good)
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	logs := &syncWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, nil))
	k := &ipvstest.Kernel{}
	d := newDaemon(log, path, cfg, ipvs.NewReconciler(k, log), health.NewEngine(log))
	hup := make(chan os.Signal, 1)
	runDaemon(t, d, logs, sock, hup)
	ctx := context.Background()

	svc := "TCP  10.1.2.3:80"
	d1, d2 := svc+" "+web1.addr, svc+" "+web2.addr
	waitFor(t, logs, "initial table", 5*time.Second, func() bool {
		w := kernelWeights(t, k)
		return w[d1] == 3 && w[d2] == 2
	})

	web2.stop()
	waitFor(t, logs, "web2 drained to weight 0", 5*time.Second, func() bool {
		w := kernelWeights(t, k)
		return w[d1] == 3 && w[d2] == 0
	})
	rep, err := fetchStatus(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Services[0].RealServers[1]; got.Health != "down" || got.KernelWeight == nil || *got.KernelWeight != 0 || got.Last == nil || got.Last.OK {
		t.Errorf("status of stopped web2 = %+v, want health down, kernel weight 0, last probe failed", got)
	}

	web2.start()
	waitFor(t, logs, "web2 restored to weight 2", 5*time.Second, func() bool {
		return kernelWeights(t, k)[d2] == 2
	})

	// Someone changes a weight by hand: the periodic resync repairs it.
	r := ipvs.NewReconciler(k, nil)
	st, _ := r.Read()
	drift := st[0].Service
	drift.Destinations = []ipvs.Destination{st[0].Destinations[0].Destination}
	drift.Destinations[0].Weight = 77
	if _, err := ipvs.NewReconciler(k, nil).Apply([]ipvs.Service{drift}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, logs, "hand-edited weight restored", 5*time.Second, func() bool {
		w := kernelWeights(t, k)
		return w[d1] == 3 && w[d2] == 2
	})

	// A broken config on reload is refused; the old table stays.
	writeConfig(t, path, strings.Replace(good, `weight = 3`, `weight = -1`, 1))
	hup <- os.Interrupt
	waitFor(t, logs, "stale config reported", 5*time.Second, func() bool {
		rep, err := fetchStatus(ctx, sock)
		return err == nil && rep.ConfigStale && strings.Contains(rep.ReloadError, "weight")
	})
	if w := kernelWeights(t, k); w[d1] != 3 || w[d2] != 2 {
		t.Errorf("after a bad reload the table changed: %v", w)
	}

	// A good reload with a new weight changes exactly that destination.
	writeConfig(t, path, strings.Replace(good, `weight = 3`, `weight = 5`, 1))
	k.ResetWrites()
	hup <- os.Interrupt
	waitFor(t, logs, "reloaded weight", 5*time.Second, func() bool { return kernelWeights(t, k)[d1] == 5 })
	if ops := k.WritesByOp(); ops[ipvstest.OpUpdateDestination] != 1 || k.Writes() != 1 {
		t.Errorf("weight change on reload wrote %v, want exactly one UpdateDestination", ops)
	}
	rep, err = fetchStatus(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ConfigStale {
		t.Errorf("config still stale after a good reload: %s", rep.ReloadError)
	}
	var text bytes.Buffer
	if err := writeReport(&text, rep, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TCP  10.1.2.3:80", web1.addr, "Masq", "up "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, text.String())
		}
	}
}

// syncWriter lets the daemon's goroutines share one log buffer, and
// tells a waiting test that a line was written.
type syncWriter struct {
	mu      sync.Mutex
	w       io.Writer
	written chan struct{}
}

// lines is signalled after each write; one signal may stand for several.
func (s *syncWriter) lines() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		s.written = make(chan struct{}, 1)
	}
	return s.written
}

// String is what was written, when w is a *bytes.Buffer.
func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(*bytes.Buffer).String()
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		s.written = make(chan struct{}, 1)
	}
	select {
	case s.written <- struct{}{}:
	default:
	}
	return s.w.Write(p)
}

// Without IPVS a daemon of VRRP instances alone runs on an empty table;
// programming or removing virtual services fails with the reason IPVS
// could not be opened.
func TestNoIPVS(t *testing.T) {
	reason := fmt.Errorf("%w: no such file or directory", ipvs.ErrUnavailable)
	n := noIPVS{err: reason}
	svc := []ipvs.Service{{}}
	tests := []struct {
		name    string
		call    func() error
		wantErr bool
	}{
		{"apply empty", func() error { _, err := n.Apply(nil); return err }, false},
		{"remove empty", func() error { return n.Remove(nil) }, false},
		{"read", func() error {
			s, err := n.Read()
			if err == nil && len(s) != 0 {
				return fmt.Errorf("read %d services", len(s))
			}
			return err
		}, false},
		{"apply a service", func() error { _, err := n.Apply(svc); return err }, true},
		{"remove a service", func() error { return n.Remove(svc) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if (err != nil) != tt.wantErr || err != nil && !errors.Is(err, ipvs.ErrUnavailable) {
				t.Errorf("error %v, want one wrapping %q: %v", err, ipvs.ErrUnavailable, tt.wantErr)
			}
		})
	}
}

// The JSON form of status has its schema version, and [] for every empty
// list, never null: here a director with one virtual server whose only
// real server has no check, no foreign service, no VRRP.
func TestStatusJSONLists(t *testing.T) {
	cfg, err := conf.Parse("t.toml", []byte("[director]\nname = \"t\"\n[[virtual_server]]\nname = \"web\"\naddress = \"10.1.2.3:80\"\n[[virtual_server.real_server]]\naddress = \"10.1.2.4:80\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	d := newDaemon(log, "t.toml", cfg, ipvs.NewReconciler(&ipvstest.Kernel{}, log), health.NewEngine(log))
	d.sync(syncRead)
	rep, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("null")) {
		t.Errorf("status JSON has a null:\n%s", b)
	}
	for _, want := range []string{`"schema_version":1`, `"foreign_services":[]`, `"vrrp_instances":[]`, `"track_execs":[]`, `"real_servers":[{`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("status JSON lacks %s:\n%s", want, b)
		}
	}
}
