package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/mdlayher/ndp"

	"github.com/lvsha/lvsha/conf"
)

// fakeDevice is a tun device: Watch blocks until its context ends or the
// test sends an error on fail; Close is logged as "tun".
type fakeDevice struct {
	name string
	log  *closeLog
	fail chan error

	mu       sync.Mutex
	reopened int
}

func newFakeDevice(name string, log *closeLog) *fakeDevice {
	return &fakeDevice{name: name, log: log, fail: make(chan error)}
}

func (d *fakeDevice) Name() string { return d.name }

func (d *fakeDevice) Watch(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-d.fail:
		return err
	}
}

func (d *fakeDevice) Reopen() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reopened++
	return nil
}

func (d *fakeDevice) Close() error { d.log.add("tun"); return nil }

// hostFixture is a Host on fakes: what it opened, what it closed, and the
// addresses on its one fake netlink.
type hostFixture struct {
	host   *Host
	opened *closeLog
	closed *closeLog
	nl     *fakeNetlink

	mu   sync.Mutex
	devs []*fakeDevice
	nds  []*fakeND
}

func newHostFixture() *hostFixture {
	fx := &hostFixture{opened: &closeLog{}, closed: &closeLog{}}
	fx.nl = &fakeNetlink{fakeAddrs: &fakeAddrs{}, log: fx.closed}
	fx.host = newHost(opener{
		interfaceByName: func(name string) (*net.Interface, error) {
			return &net.Interface{Index: 2, Name: name, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}, nil
		},
		netlink: func() (netlinkHandle, error) {
			fx.opened.add("netlink")
			return fx.nl, nil
		},
		listenARP: func(ifi *net.Interface) (net.PacketConn, error) {
			fx.opened.add("arp " + ifi.Name)
			return &fakePacketConn{name: "arp " + ifi.Name, log: fx.closed}, nil
		},
		newTun: func(name string) (device, error) {
			fx.opened.add("tun")
			d := newFakeDevice(name, fx.closed)
			fx.mu.Lock()
			defer fx.mu.Unlock()
			fx.devs = append(fx.devs, d)
			return d, nil
		},
		newND: func(log *slog.Logger, ifi *net.Interface) (*NDResponder, error) {
			fx.opened.add("nd " + ifi.Name)
			return newNDResponder(log, ifi, func() (ndConn, error) {
				c := newFakeND("nd "+ifi.Name, fx.closed)
				fx.mu.Lock()
				defer fx.mu.Unlock()
				fx.nds = append(fx.nds, c)
				return c, nil
			})
		},
	})
	return fx
}

// nd is the neighbour discovery socket opened last.
func (fx *hostFixture) nd() *fakeND {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.nds[len(fx.nds)-1]
}

// addrs are the addresses on the fake netlink, without lifetimes, sorted.
func (fx *hostFixture) addrs() []string {
	var out []string
	for _, a := range fx.nl.addrs {
		out = append(out, strings.Fields(a)[0])
	}
	slices.Sort(out)
	return out
}

func (fx *hostFixture) open(t *testing.T, name, iface, holder string, vips ...string) *Holder {
	t.Helper()
	cfg := conf.VRRPInstance{Name: name, Interface: iface, VIPHolder: holder, GARPRepeat: 1, VirtualIPs: prefixes(vips...)}
	h, err := fx.host.Open(quiet(), cfg, "lvsha-vip")
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	return h
}

// The holders of one Host share one netlink socket, one device and, per
// interface, one ARP and one neighbour discovery socket; each part closes
// with the last holder that uses it, whatever the order, and the next
// holder opens it anew.
func TestHostSharesParts(t *testing.T) {
	tests := []struct {
		name  string
		order []string // the holders in the order they close
		// closed is what has closed after each Close.
		closed [][]string
	}{
		{"first opened closes first", []string{"a", "b", "c"}, [][]string{
			{"arp eth0"},
			{"nd eth0", "tun"},
			{"arp eth1", "netlink"},
		}},
		{"last opened closes first", []string{"c", "b", "a"}, [][]string{
			{"arp eth1"},
			{"nd eth0"},
			{"arp eth0", "netlink", "tun"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newHostFixture()
			hs := map[string]*Holder{
				"a": fx.open(t, "a", "eth0", "tun", "10.0.0.1/24"),
				"b": fx.open(t, "b", "eth0", "tun", "2001:db8::1/64"),
				"c": fx.open(t, "c", "eth1", "interface", "10.0.1.1/24"),
			}
			if got, want := fx.opened.got(), []string{"netlink", "arp eth0", "tun", "nd eth0", "arp eth1"}; !slices.Equal(got, want) {
				t.Errorf("three holders opened %q, want each part once: %q", got, want)
			}
			var want []string
			for i, name := range tt.order {
				if err := hs[name].Close(); err != nil {
					t.Fatalf("close %s: %v", name, err)
				}
				want = append(want, tt.closed[i]...)
				slices.Sort(want)
				got := fx.closed.got()
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("after closing %s: closed %q, want %q", name, got, want)
				}
			}
			fx.open(t, "d", "eth0", "tun", "10.0.0.4/24").Close()
			if got, want := fx.opened.got()[5:], []string{"netlink", "arp eth0", "tun"}; !slices.Equal(got, want) {
				t.Errorf("a holder after the last closed opened %q, want them anew: %q", got, want)
			}
		})
	}
}

// Two holders on one device add and remove their own VIPs only; an
// address both hold stays until neither does; a holder closed while it
// holds VIPs takes them away, as a private device's removal did.
func TestHostAddresses(t *testing.T) {
	fx := newHostFixture()
	a := fx.open(t, "a", "eth0", "tun", "10.0.0.1/24", "10.0.0.3/24")
	b := fx.open(t, "b", "eth0", "tun", "10.0.0.2/24", "10.0.0.3/24")
	steps := []struct {
		name string
		do   func() error
		want []string
	}{
		{"a takes", a.Take, []string{"10.0.0.1/32", "10.0.0.3/32"}},
		{"b takes", b.Take, []string{"10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"}},
		{"a releases: b's VIPs stay, the one both hold too", a.Release, []string{"10.0.0.2/32", "10.0.0.3/32"}},
		{"a releases again", a.Release, []string{"10.0.0.2/32", "10.0.0.3/32"}},
		{"a takes again", a.Take, []string{"10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"}},
		{"b releases", b.Release, []string{"10.0.0.1/32", "10.0.0.3/32"}},
		{"b closes", b.Close, []string{"10.0.0.1/32", "10.0.0.3/32"}},
		{"a closes holding its VIPs", a.Close, nil},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := fx.addrs(); !slices.Equal(got, s.want) {
			t.Errorf("%s: addresses %q, want %q", s.name, got, s.want)
		}
	}
}

// TestHostRefresh: the masters that ask for a lifetime refresh within
// one scheduling round are renewed in one pass, each address a holder holds
// once however often it asked, with the lifetime it was added with; what
// a holder released before the pass is not brought back; an interface
// created again by name is looked up again.
func TestHostRefresh(t *testing.T) {
	tests := []struct {
		name string
		// do takes the holders' VIPs and asks for refreshes.
		do func(fx *hostFixture, a, b *Holder)
		// want are the renewals (replace calls after do) and the
		// addresses then held.
		wantReplaced []string
		wantAddrs    []string
	}{
		{
			name: "two masters, one pass",
			do: func(_ *hostFixture, a, b *Holder) {
				a.Refresh()
				b.Refresh()
				a.Refresh()
			},
			wantReplaced: []string{"10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32", "10.0.0.3/32"},
			wantAddrs:    []string{"10.0.0.1/32 2s", "10.0.0.2/32 2s", "10.0.0.3/32 2s"},
		},
		{
			name: "released before the pass: not brought back",
			do: func(_ *hostFixture, a, b *Holder) {
				a.Refresh()
				b.Refresh()
				if err := a.Release(); err != nil {
					t.Fatal(err)
				}
			},
			wantReplaced: []string{"10.0.0.2/32", "10.0.0.3/32"},
			wantAddrs:    []string{"10.0.0.2/32 2s", "10.0.0.3/32 2s"},
		},
		{
			name:         "nobody asked",
			do:           func(*hostFixture, *Holder, *Holder) {},
			wantAddrs:    []string{"10.0.0.1/32 2s", "10.0.0.2/32 2s", "10.0.0.3/32 2s"},
			wantReplaced: nil,
		},
		{
			name: "device created again",
			do: func(fx *hostFixture, a, _ *Holder) {
				fx.host.addrMu.Lock()
				for _, h := range a.addrs.held {
					fx.nl.stale = append(fx.nl.stale, h.link)
				}
				fx.host.addrMu.Unlock()
				a.Refresh()
			},
			wantReplaced: []string{"10.0.0.1/32", "10.0.0.1/32", "10.0.0.3/32", "10.0.0.3/32"},
			wantAddrs:    []string{"10.0.0.1/32 2s", "10.0.0.2/32 2s", "10.0.0.3/32 2s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fx := newHostFixture()
				a := fx.open(t, "a", "eth0", "tun", "10.0.0.1/24", "10.0.0.3/24")
				b := fx.open(t, "b", "eth0", "tun", "10.0.0.2/24", "10.0.0.3/24")
				defer a.Close()
				defer b.Close()
				for _, h := range []*Holder{a, b} {
					if err := h.Take(); err != nil {
						t.Fatal(err)
					}
				}
				// The pass waits until do is done, as if every request
				// came within one scheduling round.
				held := make(chan struct{})
				fx.host.refreshYield = func() { <-held }
				from := len(fx.nl.calls)
				tt.do(fx, a, b)
				close(held)
				synctest.Wait()
				fx.host.addrMu.Lock()
				defer fx.host.addrMu.Unlock()
				var replaced []string
				for _, c := range fx.nl.calls[from:] {
					if p, ok := strings.CutPrefix(c, "replace "); ok {
						replaced = append(replaced, p)
					}
				}
				slices.Sort(replaced)
				if !slices.Equal(replaced, tt.wantReplaced) {
					t.Errorf("renewed %q, want %q", replaced, tt.wantReplaced)
				}
				addrs := slices.Sorted(slices.Values(fx.nl.addrs))
				if !slices.Equal(addrs, tt.wantAddrs) {
					t.Errorf("addresses %q, want %q", addrs, tt.wantAddrs)
				}
			})
		})
	}
}

// A shared part that fails fails the Run of every holder that depends on
// it, and of no other; the next Runs open it again once, and run on.
func TestHostRunFailure(t *testing.T) {
	tests := []struct {
		name string
		// fail breaks a part.
		fail func(fx *hostFixture)
		// failed are the holders whose Run returns wantErr.
		failed  []string
		wantErr string
		// reopened is what the next Runs open again.
		reopened func(fx *hostFixture) bool
	}{
		{
			name:    "device deleted",
			fail:    func(fx *hostFixture) { fx.devs[0].fail <- errors.New("VIP device lvsha-vip failed") },
			failed:  []string{"v4", "v6"},
			wantErr: "VIP device lvsha-vip failed",
			reopened: func(fx *hostFixture) bool {
				fx.devs[0].mu.Lock()
				defer fx.devs[0].mu.Unlock()
				return fx.devs[0].reopened == 1
			},
		},
		{
			name:     "responder's socket fails",
			fail:     func(fx *hostFixture) { fx.nd().reads <- ndRead{err: errors.New("boom")} },
			failed:   []string{"v6"},
			wantErr:  "read neighbour solicitations: boom",
			reopened: func(fx *hostFixture) bool { return len(fx.nds) == 2 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fx := newHostFixture()
				hs := map[string]*Holder{
					"v4":    fx.open(t, "v4", "eth0", "tun", "10.0.0.1/24"),
					"v6":    fx.open(t, "v6", "eth0", "tun", "2001:db8::1/64"),
					"iface": fx.open(t, "iface", "eth0", "interface", "10.0.0.2/24"),
				}
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				errc := map[string]chan error{}
				run := func(name string) {
					c, h := make(chan error, 1), hs[name]
					errc[name] = c
					go func() { c <- h.Run(ctx) }()
				}
				for name := range hs {
					run(name)
				}
				synctest.Wait()
				tt.fail(fx)
				synctest.Wait()
				for name := range hs {
					select {
					case err := <-errc[name]:
						if !slices.Contains(tt.failed, name) {
							t.Errorf("%s's Run returned %v; its parts did not fail", name, err)
						} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
							t.Errorf("%s's Run returned %v, want %q", name, err, tt.wantErr)
						}
						run(name)
					default:
						if slices.Contains(tt.failed, name) {
							t.Errorf("%s's Run goes on after a part it uses failed", name)
						}
					}
				}
				synctest.Wait()
				if !tt.reopened(fx) {
					t.Error("the failed part was not opened again once")
				}
				cancel()
				for name := range hs {
					if err := <-errc[name]; err != nil {
						t.Errorf("%s's Run after cancel: %v, want nil", name, err)
					}
					hs[name].Close()
				}
			})
		})
	}
}

// The one responder of an interface answers for the VIPs of every holder
// that holds them now, and for no other.
func TestHostAnswersHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newHostFixture()
		vipA, vipB := netip.MustParseAddr("2001:db8::a"), netip.MustParseAddr("2001:db8::b")
		a := fx.open(t, "a", "eth0", "tun", vipA.String()+"/64")
		b := fx.open(t, "b", "eth0", "tun", vipB.String()+"/64")
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		var wg sync.WaitGroup
		for _, h := range []*Holder{a, b} {
			wg.Go(func() { h.Run(ctx) })
		}
		nd := fx.nd()
		// answered says whether a solicitation for target got an answer.
		answered := func(target netip.Addr) bool {
			before := len(nd.sent())
			nd.reads <- ndRead{msg: &ndp.NeighborSolicitation{TargetAddress: target}, src: netip.MustParseAddr("fe80::2")}
			synctest.Wait()
			return len(nd.sent()) > before
		}
		steps := []struct {
			name string
			do   func() error
			want map[netip.Addr]bool
		}{
			{"neither holds", func() error { return nil }, map[netip.Addr]bool{vipA: false, vipB: false}},
			{"a takes", a.Take, map[netip.Addr]bool{vipA: true, vipB: false}},
			{"b takes", b.Take, map[netip.Addr]bool{vipA: true, vipB: true}},
			{"a releases", a.Release, map[netip.Addr]bool{vipA: false, vipB: true}},
			{"b closes holding", b.Close, map[netip.Addr]bool{vipA: false, vipB: false}},
		}
		for _, s := range steps {
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			for target, want := range s.want {
				if got := answered(target); got != want {
					t.Errorf("%s: solicitation for %s answered %v, want %v", s.name, target, got, want)
				}
			}
		}
		cancel()
		wg.Wait()
		a.Close()
	})
}

// runShare runs its function once however many join, stops it with its
// last user, and never runs two at once: a join while the last user's
// stop is under way waits for it.
func TestRunShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		running, most, calls := 0, 0, 0
		release := make(chan struct{})
		s := newRunShare(func(ctx context.Context) error {
			mu.Lock()
			running++
			calls++
			most = max(most, running)
			mu.Unlock()
			<-ctx.Done()
			<-release // a slow stop
			mu.Lock()
			running--
			mu.Unlock()
			return nil
		})
		r1, r2 := s.join(), s.join()
		synctest.Wait()
		if r1 != r2 {
			t.Fatal("two joins started two runs")
		}
		s.leave(r1)
		left := make(chan struct{})
		go func() { s.leave(r2); close(left) }()
		synctest.Wait()
		joined := make(chan *run)
		go func() { joined <- s.join() }()
		synctest.Wait()
		select {
		case <-joined:
			t.Fatal("a join went on while the last run was stopping")
		default:
		}
		close(release)
		<-left
		r3 := <-joined
		synctest.Wait()
		s.leave(r3)
		if most != 1 || calls != 2 {
			t.Errorf("%d runs at most at once, %d in all; want 1 and 2", most, calls)
		}
		if err := fmt.Sprint(r3.err); err != "<nil>" {
			t.Errorf("a stopped run's error: %s, want nil", err)
		}
	})
}

// Serve takes part in a holder's shared runs without a goroutine of its
// own: a failure of either run reaches failed once, with its error, and
// a stopped serve hears nothing of a later failure; the last to stop
// stops the run.
func TestHolderServe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fail := [2]chan error{make(chan error), make(chan error)}
		runs := [2]int{}
		var mu sync.Mutex
		share := func(n int) *runShare {
			return newRunShare(func(ctx context.Context) error {
				mu.Lock()
				runs[n]++
				mu.Unlock()
				select {
				case err := <-fail[n]:
					return err
				case <-ctx.Done():
					return nil
				}
			})
		}
		a, b := share(0), share(1)
		h1 := &Holder{shares: []*runShare{a, b}}
		h2 := &Holder{shares: []*runShare{a}}
		var got1, got2 []error
		base := runtime.NumGoroutine()
		stop1 := h1.Serve(func(err error) { got1 = append(got1, err) })
		stop2 := h2.Serve(func(err error) { got2 = append(got2, err) })
		synctest.Wait()
		if n := runtime.NumGoroutine() - base; n != 2 {
			t.Errorf("%d goroutines serving two holders on two shared runs, want 2 (the runs)", n)
		}
		stop2()
		fail[1] <- errors.New("tun gone")
		synctest.Wait()
		if len(got1) != 1 || got1[0].Error() != "tun gone" {
			t.Errorf("the holder on the failed run heard %v, want [tun gone]", got1)
		}
		if len(got2) != 0 {
			t.Errorf("a stopped serve heard %v", got2)
		}
		// Still on the failed run's share a: stopping leaves it, and as
		// its last user stops it.
		stop1()
		synctest.Wait()
		if n := runtime.NumGoroutine(); n != base {
			t.Errorf("%d goroutines after every serve stopped, want %d", n, base)
		}
		if len(got1) != 1 {
			t.Errorf("failed called %d times, want once", len(got1))
		}
		// Served again, the failed share runs anew.
		stop := h1.Serve(func(error) {})
		synctest.Wait()
		stop()
		mu.Lock()
		defer mu.Unlock()
		if runs != [2]int{2, 2} {
			t.Errorf("runs %v, want each share run twice", runs)
		}
	})
}
