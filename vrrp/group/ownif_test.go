package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/track"
	"github.com/lvsha/lvsha/vrrp/transport"
)

var vrrpGroup = netip.MustParseAddr("224.0.0.18")

// wire is an instance's advert socket: Read returns what the test puts on
// in, until Close.
type wire struct {
	in     chan transport.Datagram
	closed chan struct{}
	once   sync.Once
}

func newWire() *wire { return &wire{in: make(chan transport.Datagram), closed: make(chan struct{})} }

func (w *wire) Read(buf []byte) (transport.Datagram, error) {
	select {
	case d := <-w.in:
		d.Payload = append(buf[:0], d.Payload...)
		return d, nil
	case <-w.closed:
		return transport.Datagram{}, errors.New("use of closed connection")
	}
}

func (w *wire) Destinations() []netip.Addr       { return []netip.Addr{vrrpGroup} }
func (w *wire) WriteTo([]byte, netip.Addr) error { return nil }
func (w *wire) Close() error                     { w.once.Do(func() { close(w.closed) }); return nil }

// vips is a VIP holder that says whether it holds them.
type vips struct {
	mu   sync.Mutex
	held bool
}

func (v *vips) set(held bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.held = held
	return nil
}

func (v *vips) holds() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.held
}

func (v *vips) Take() error                                                { return v.set(true) }
func (v *vips) FollowUp(context.Context) error                             { return nil }
func (v *vips) Acquire(context.Context) error                              { return v.set(true) }
func (v *vips) Announce(context.Context)                                   {}
func (v *vips) Refresh()                                                   {}
func (v *vips) Release() error                                             { return v.set(false) }
func (v *vips) Reconfigure(context.Context, conf.VRRPInstance, bool) error { return nil }
func (v *vips) Run(ctx context.Context) error                              { <-ctx.Done(); return nil }
func (v *vips) Close() error                                               { return nil }

// realInst is an instance.Instance on a fake wire and VIP holder.
type realInst struct {
	wire *wire
	vips *vips
}

// ownIfConfig is an instance on eth0 that faults while eth0 is down.
func ownIfConfig(name string, vrid, prio int) conf.VRRPInstance {
	return conf.VRRPInstance{Name: name, Interface: "eth0", RouterID: vrid, Priority: prio, Version: 3,
		AdvertInterval: 100 * time.Millisecond, Preempt: true, Accept: true, VIPHolder: "tun", GARPRepeat: 1,
		TrackOwnInterface: true, VirtualIPs: []netip.Prefix{netip.MustParsePrefix(netip.AddrFrom4([4]byte{10, 0, 0, byte(vrid)}).String() + "/24")}}
}

// startReal runs a Group of real instances on fakes (in a synctest
// bubble); it returns the group, its link watch and each instance's
// fakes by name.
func startReal(t *testing.T, cfg *conf.Config) (*Group, *links, map[string]*realInst) {
	t.Helper()
	var mu sync.Mutex
	insts := map[string]*realInst{}
	open := func(log *slog.Logger, ic conf.VRRPInstance, _ string) (Instance, error) {
		r := &realInst{wire: newWire(), vips: &vips{}}
		mu.Lock()
		insts[ic.Name] = r
		mu.Unlock()
		return instance.New(log, ic, netip.MustParseAddr("10.0.0.2"), r.wire, r.vips)
	}
	l := &links{chs: map[string]chan track.LinkReport{}}
	g, err := Open(Options{Log: quiet, Open: open, WatchLinks: l.watch, FindInterface: func(string) error { return nil }}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	synctest.Wait()
	return g, l, insts
}

// peer advertises at prio from 10.0.0.3 on every wire until stop.
func peer(t *testing.T, vrid, prio int, wires ...*wire) (stop func()) {
	b, err := vrrp.Marshal(&vrrp.Advert{Version: 3, VRID: uint8(vrid), Priority: uint8(prio), Interval: 100 * time.Millisecond,
		Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(vrid)})}}, netip.MustParseAddr("10.0.0.3"), vrrpGroup)
	if err != nil {
		t.Fatal(err)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, w := range wires {
				select {
				case w.in <- transport.Datagram{Payload: b, Src: netip.MustParseAddr("10.0.0.3"), Dst: vrrpGroup, HopLimit: 255}:
				case <-quit:
					return
				}
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// An instance whose own interface goes down, in no track_interfaces,
// goes to FAULT and releases its VIPs, status saying why; when the link
// is back it returns to BACKUP and, with the higher priority and
// preemption, takes master back from the peer that took over meanwhile.
// With track_own_interface off its interface is not watched at all.
func TestOwnInterfaceDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, l, insts := startReal(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{ownIfConfig("a", 1, 200)}})
		a := insts["a"]
		l.feed("eth0", track.LinkReport{State: track.LinkState{"eth0": true}})
		time.Sleep(time.Second)
		synctest.Wait()
		if st := statusOf(t, g, "a"); st.State != "MASTER" || !a.vips.holds() {
			t.Fatalf("at start a is %s, holding its VIPs %v; want MASTER holding them", st.State, a.vips.holds())
		}

		l.feed("eth0", track.LinkReport{State: track.LinkState{"eth0": false}})
		synctest.Wait()
		st := statusOf(t, g, "a")
		if st.State != "FAULT" || a.vips.holds() {
			t.Fatalf("eth0 down: a is %s, holding its VIPs %v; want FAULT without them", st.State, a.vips.holds())
		}
		if want := []string{"interface eth0 down"}; !slices.Equal(st.FaultReasons, want) {
			t.Errorf("eth0 down: fault reasons %q, want %q", st.FaultReasons, want)
		}
		// The peer takes over while a is in FAULT, and stays master
		// with its lower priority until a preempts it.
		stop := peer(t, 1, 100, a.wire)
		defer stop()
		time.Sleep(time.Second)
		synctest.Wait()
		if st := statusOf(t, g, "a"); st.State != "FAULT" {
			t.Fatalf("eth0 still down: a is %s", st.State)
		}

		l.feed("eth0", track.LinkReport{State: track.LinkState{"eth0": true}})
		synctest.Wait()
		if st := statusOf(t, g, "a"); st.State != "BACKUP" || len(st.FaultReasons) > 0 || a.vips.holds() {
			t.Fatalf("eth0 up: a is %s (reasons %q), holding its VIPs %v; want BACKUP, none, without", st.State, st.FaultReasons, a.vips.holds())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if st := statusOf(t, g, "a"); st.State != "MASTER" || !a.vips.holds() {
			t.Fatalf("after preemption a is %s, holding its VIPs %v; want MASTER holding them", st.State, a.vips.holds())
		}
	})
	t.Run("track_own_interface off", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cfg := ownIfConfig("a", 1, 200)
			cfg.TrackOwnInterface = false
			g, l, _ := startReal(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{cfg}})
			time.Sleep(time.Second)
			synctest.Wait()
			l.mu.Lock()
			n := len(l.chs)
			l.mu.Unlock()
			if st := statusOf(t, g, "a"); st.State != "MASTER" || n != 0 {
				t.Fatalf("a is %s with %d link watches; want MASTER with none", st.State, n)
			}
		})
	})
}

// A sync group's member whose own interface goes down takes the whole
// group out of master: the other member, whose interface is up, goes to
// BACKUP and gives its VIPs up; both return once the link is back.
func TestOwnInterfaceDownSyncGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := ownIfConfig("a", 1, 200), ownIfConfig("b", 2, 200)
		b.Interface = "eth1"
		g, l, insts := startReal(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{a, b},
			SyncGroups: []conf.SyncGroup{{Name: "g", Instances: []string{"a", "b"}}}})
		l.feed("eth0", track.LinkReport{State: track.LinkState{"eth0": true}})
		l.feed("eth1", track.LinkReport{State: track.LinkState{"eth1": true}})
		time.Sleep(time.Second)
		synctest.Wait()
		states := func() []string {
			return []string{statusOf(t, g, "a").State, statusOf(t, g, "b").State}
		}
		if got := states(); !slices.Equal(got, []string{"MASTER", "MASTER"}) {
			t.Fatalf("at start a, b are %v, want both MASTER", got)
		}
		l.feed("eth0", track.LinkReport{State: track.LinkState{"eth0": false}})
		time.Sleep(time.Second)
		synctest.Wait()
		if got := states(); !slices.Equal(got, []string{"FAULT", "BACKUP"}) || insts["a"].vips.holds() || insts["b"].vips.holds() {
			t.Fatalf("eth0 down: a, b are %v, holding VIPs %v, %v; want FAULT, BACKUP, neither", got, insts["a"].vips.holds(), insts["b"].vips.holds())
		}
		l.feed("eth0", track.LinkReport{State: track.LinkState{"eth0": true}})
		time.Sleep(time.Second)
		synctest.Wait()
		if got := states(); !slices.Equal(got, []string{"MASTER", "MASTER"}) {
			t.Fatalf("eth0 up: a, b are %v, want both MASTER", got)
		}
	})
}

// The members watching the same interfaces share one link watch: a
// second subscription gets the state at once, and the watch ends with
// its last reader.
func TestLinkSharesShareOneWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		watches := 0
		feed := make(chan track.LinkReport)
		s := newLinkShares(func(ctx context.Context, _ []string) <-chan track.LinkReport {
			mu.Lock()
			watches++
			mu.Unlock()
			out := make(chan track.LinkReport)
			go func() {
				defer close(out)
				for {
					select {
					case r := <-feed:
						out <- r
					case <-ctx.Done():
						return
					}
				}
			}()
			return out
		}, &wg)
		// Each reader's reports, as its callback got them.
		reader := func(ctx context.Context) <-chan track.LinkReport {
			got := make(chan track.LinkReport, 8)
			s.subscribe(ctx, []string{"eth0"}, func(r track.LinkReport) { got <- r })
			return got
		}
		ctx1, cancel1 := context.WithCancel(t.Context())
		first := reader(ctx1)
		feed <- track.LinkReport{State: track.LinkState{"eth0": false}, Lost: errors.New("ENOBUFS")}
		synctest.Wait()
		ctx2, cancel2 := context.WithCancel(t.Context())
		second := reader(ctx2)
		if r := <-first; r.State["eth0"] || r.Lost == nil {
			t.Errorf("first reader got %+v, want eth0 down, the loss said", r)
		}
		if r := <-second; r.State["eth0"] || r.Lost != nil {
			t.Errorf("second reader got %+v at once, want eth0 down, no loss (said before it came)", r)
		}
		mu.Lock()
		if watches != 1 {
			t.Errorf("%d watches, want 1", watches)
		}
		mu.Unlock()
		cancel1()
		synctest.Wait()
		feed <- track.LinkReport{State: track.LinkState{"eth0": true}}
		synctest.Wait()
		if r := <-second; !r.State["eth0"] {
			t.Errorf("second reader got %+v, want eth0 up", r)
		}
		select {
		case r := <-first:
			t.Errorf("first reader got %+v after it left", r)
		default:
		}
		cancel2()
		wg.Wait() // the watch has ended with its last reader, and every delivery
		select {
		case r := <-second:
			t.Errorf("second reader got %+v after it left", r)
		default:
		}
	})
}

// A reload that turns track_own_interface off clears the fault its down
// interface held, and stops watching it; turned on again, the instance
// is back in fault.
func TestOwnInterfaceReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		on := vi("a", 1, 100)
		on.TrackOwnInterface = true
		off := on
		off.TrackOwnInterface = false
		h := start(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{on}}, nil)
		defer h.stop()
		a := h.open.named("a")[0]
		h.links.feed("eth0", track.LinkReport{State: track.LinkState{"eth0": false}})
		synctest.Wait()
		if got := a.take(); got != "gate true|fault" {
			t.Fatalf("eth0 down: a was told %q, want the fault", got)
		}
		for _, step := range []struct {
			cfg  conf.VRRPInstance
			feed bool
			want string
		}{
			{off, false, "reconfigure prio 100|clear"},
			{on, true, "reconfigure prio 100|fault"},
		} {
			if err := h.group.Reload(&conf.Config{VRRPInstances: []conf.VRRPInstance{step.cfg}}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			if step.feed {
				h.links.feed("eth0", track.LinkReport{State: track.LinkState{"eth0": false}})
				synctest.Wait()
			}
			if got := a.take(); got != step.want {
				t.Errorf("track_own_interface %v: a was told %q, want %q", step.cfg.TrackOwnInterface, got, step.want)
			}
			if st := statusOf(t, h.group, "a"); (len(st.FaultReasons) > 0) != step.cfg.TrackOwnInterface {
				t.Errorf("track_own_interface %v: fault reasons %q", step.cfg.TrackOwnInterface, st.FaultReasons)
			}
		}
	})
}

// An instance whose source address leaves its interface (a link-local
// address gone with its link, an IPv4 address deleted) starts anew: the
// old one stops, and the new one waits in FAULT, with the reason, until
// the interface has an address again, then runs. Its sync group is held
// back meanwhile. A report that the address is still there, or that the
// state is unknown, restarts nothing.
func TestSourceGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100), vi("b", 2, 100)},
			SyncGroups: []conf.SyncGroup{{Name: "g", Instances: []string{"a", "b"}}}}
		h := start(t, cfg, nil)
		defer h.stop()
		const name = "10.0.0.2%1"
		old := h.open.named("a")[0]
		for _, r := range []track.LinkReport{
			{State: track.LinkState{name: true}},
			{Err: errors.New("subscription lost")},
		} {
			h.addrs.feed(name, r)
			synctest.Wait()
		}
		if n := len(h.open.named("a")); n != 1 || old.ran {
			t.Fatalf("a opened %d times, its first stopped %v; want once, running", n, old.ran)
		}
		noSource := fmt.Errorf("vrrp_instance a: %w: eth0 has no IPv4 address", instance.ErrNoSource)
		h.open.setFail("a", noSource)
		b := h.open.named("b")[0]
		old.setWants(vrrp.Master)
		b.setWants(vrrp.Master)
		synctest.Wait()
		if got := b.take(); !strings.HasSuffix(got, "gate true") {
			t.Fatalf("both wanting master, b was told %q; want the group let free", got)
		}
		h.addrs.feed(name, track.LinkReport{State: track.LinkState{name: false}})
		time.Sleep(time.Second)
		synctest.Wait()
		if !old.ran {
			t.Fatal("a's instance still runs after its source address went")
		}
		st := statusOf(t, h.group, "a")
		if st.State != "FAULT" || !strings.Contains(st.Fault, "eth0 has no IPv4 address") {
			t.Errorf("a without an address: %s, fault %q; want FAULT and why", st.State, st.Fault)
		}
		if got := b.take(); !strings.HasSuffix(got, "gate false") {
			t.Errorf("b was told %q, want its group held back", got)
		}
		h.open.setFail("a", nil)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(h.open.named("a")); n != 2 || !h.open.named("a")[1].running {
			t.Fatalf("a opened %d times once the address is back, want a second instance running", n)
		}
		if st := statusOf(t, h.group, "a"); st.Fault != "" {
			t.Errorf("a once it runs again: fault %q", st.Fault)
		}
	})
}
