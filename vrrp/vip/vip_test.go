package vip

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeAddrs is one interface's addresses, with every call recorded.
type fakeAddrs struct {
	addrs []string // "prefix lifetime"
	calls []string
	// lookups counts LinkByName calls.
	lookups int
}

func (f *fakeAddrs) LinkByName(name string) (netlink.Link, error) {
	f.lookups++
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}, nil
}

func key(a *netlink.Addr) string {
	p, _ := netip.AddrFromSlice(a.IP)
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(p.Unmap(), ones).String()
}

func (f *fakeAddrs) AddrReplace(_ netlink.Link, a *netlink.Addr) error {
	f.calls = append(f.calls, "replace "+key(a))
	f.addrs = slices.DeleteFunc(f.addrs, func(s string) bool { return strings.HasPrefix(s, key(a)+" ") })
	f.addrs = append(f.addrs, key(a)+" "+time.Duration(a.ValidLft*int(time.Second)).String())
	return nil
}

func (f *fakeAddrs) AddrDel(_ netlink.Link, a *netlink.Addr) error {
	f.calls = append(f.calls, "del "+key(a))
	n := len(f.addrs)
	f.addrs = slices.DeleteFunc(f.addrs, func(s string) bool { return strings.HasPrefix(s, key(a)+" ") })
	if len(f.addrs) == n {
		return unix.EADDRNOTAVAIL
	}
	return nil
}

// AddrList returns the addresses held, of family (netlink.FAMILY_ALL,
// FAMILY_V4 or FAMILY_V6), as the kernel does.
func (f *fakeAddrs) AddrList(_ netlink.Link, family int) ([]netlink.Addr, error) {
	f.calls = append(f.calls, "list")
	var out []netlink.Addr
	for _, s := range f.addrs {
		p := netip.MustParsePrefix(strings.Fields(s)[0])
		if family == netlink.FAMILY_V4 && !p.Addr().Is4() || family == netlink.FAMILY_V6 && !p.Addr().Is6() {
			continue
		}
		out = append(out, netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}})
	}
	return out, nil
}

func prefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// TestManagerReconfigure: a reload on a master removes the VIPs dropped,
// adds the new ones and renews the kept ones with the new lifetime; on a
// backup it touches nothing and the next Acquire takes the new set.
func TestManagerReconfigure(t *testing.T) {
	tests := []struct {
		name      string
		held      bool
		next      []netip.Prefix
		wantAddrs []string
		wantCalls []string
	}{
		{"master: one added, one dropped, one kept", true, prefixes("10.0.0.1/24", "10.0.0.3/24"),
			[]string{"10.0.0.1/24 4s", "10.0.0.3/24 4s"},
			[]string{"del 10.0.0.2/24", "replace 10.0.0.1/24", "replace 10.0.0.3/24"}},
		{"master: prefix length changed is removed then added", true, prefixes("10.0.0.1/25", "10.0.0.2/24"),
			[]string{"10.0.0.1/25 4s", "10.0.0.2/24 4s"},
			[]string{"del 10.0.0.1/24", "replace 10.0.0.1/25", "replace 10.0.0.2/24"}},
		{"backup: nothing touched", false, prefixes("10.0.0.3/24"),
			[]string{"10.0.0.1/24 2s", "10.0.0.2/24 2s"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAddrs{}
			m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)), f, "eth0", prefixes("10.0.0.1/24", "10.0.0.2/24"), nil, nil)
			m.Lifetime = 2 * time.Second
			if err := m.Acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
			f.calls = nil
			if err := m.Reconfigure(context.Background(), tt.next, 3, 5*time.Millisecond, 4*time.Second, tt.held); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.addrs, tt.wantAddrs) || !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("addresses %q after calls %q, want %q after %q", f.addrs, f.calls, tt.wantAddrs, tt.wantCalls)
			}
			if _, repeat, gap := m.current(); repeat != 3 || gap != 5*time.Millisecond {
				t.Errorf("announcement count %d and gap %v, want 3 and 5ms", repeat, gap)
			}
			// Whatever was held, Acquire and Release now work on the new set.
			f.calls = nil
			if err := m.Release(); err != nil {
				t.Fatal(err)
			}
			var dels []string
			for _, p := range tt.next {
				dels = append(dels, "del "+p.String())
			}
			if !slices.Equal(f.calls, dels) {
				t.Errorf("release after reconfigure: %q, want %q", f.calls, dels)
			}
		})
	}
}

// arpRecorder is an ARP socket that records each frame's target address.
type arpRecorder struct {
	net.PacketConn // nil: only WriteTo is called
	mu             sync.Mutex
	sent           []string
}

func (r *arpRecorder) WriteTo(b []byte, _ net.Addr) (int, error) {
	var f ethernet.Frame
	var p arp.Packet
	if err := f.UnmarshalBinary(b); err != nil {
		return 0, err
	}
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, p.TargetIP.String())
	return len(b), nil
}

func (r *arpRecorder) frames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// TestManagerTakeFollowUp: Take adds every VIP and sends one announcement
// each, without waiting, or with no Gap every round back to back;
// FollowUp sends the other Repeat-1 rounds, Gap apart, and stops when its
// context ends.
func TestManagerTakeFollowUp(t *testing.T) {
	one := []string{"10.0.0.1", "10.0.0.2"}
	three := []string{"10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"}
	tests := []takeFollowUpCase{
		{"three rounds", 3, time.Millisecond, false, one, three, nil},
		{"one round: nothing to follow", 1, time.Millisecond, false, one, one, nil},
		{"cancelled: no more rounds", 3, time.Millisecond, true, one, one, context.Canceled},
		{"no gap: every round in Take", 3, 0, false, three, three, nil},
		{"no gap, cancelled: nothing left to cancel", 3, 0, true, three, three, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				testTakeFollowUp(t, tt)
			})
		})
	}
}

type takeFollowUpCase struct {
	name      string
	repeat    int
	gap       time.Duration
	cancel    bool // cancel FollowUp's context before it starts
	wantTake  []string
	wantAfter []string
	wantErr   error
}

// testTakeFollowUp is one row of TestManagerTakeFollowUp, on virtual time:
// FollowUp's gaps pass without waiting, and take exactly their length.
func testTakeFollowUp(t *testing.T, tt takeFollowUpCase) {
	f := &fakeAddrs{}
	rec := &arpRecorder{}
	ann := &Announcer{ARP: rec, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)), f, "eth0", prefixes("10.0.0.1/24", "10.0.0.2/24"), ann,
		func(hw net.HardwareAddr) net.Addr { return &net.IPAddr{} })
	m.Repeat, m.Gap = tt.repeat, tt.gap
	if err := m.Take(); err != nil {
		t.Fatal(err)
	}
	if got, want := f.addrs, []string{"10.0.0.1/24 0s", "10.0.0.2/24 0s"}; !slices.Equal(got, want) {
		t.Errorf("after Take: addresses %q, want %q", got, want)
	}
	if got := rec.frames(); !slices.Equal(got, tt.wantTake) {
		t.Errorf("after Take: announced %q, want %q", got, tt.wantTake)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if tt.cancel {
		cancel()
	}
	defer cancel()
	start := time.Now()
	if err := m.FollowUp(ctx); !errors.Is(err, tt.wantErr) {
		t.Errorf("FollowUp: %v, want %v", err, tt.wantErr)
	}
	if got := rec.frames(); !slices.Equal(got, tt.wantAfter) {
		t.Errorf("after FollowUp: announced %q, want %q", got, tt.wantAfter)
	}
	if d := time.Since(start); tt.gap > 0 && !tt.cancel && d != time.Duration(tt.repeat-1)*tt.gap {
		t.Errorf("FollowUp took %v, want %d gaps of %v", d, tt.repeat-1, tt.gap)
	}
}

// A prepared manager finds its interface once, before any takeover: Take,
// the moment every millisecond counts, makes no lookup (a netlink round
// trip that once came first on every new master's path).
func TestManagerPrepare(t *testing.T) {
	f := &fakeAddrs{}
	m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)), f, "eth0", prefixes("10.0.0.1/24"), nil, nil)
	if err := m.Prepare(); err != nil {
		t.Fatal(err)
	}
	f.lookups = 0
	if err := m.Take(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"replace 10.0.0.1/24"}; f.lookups != 0 || !slices.Equal(f.calls, want) {
		t.Errorf("Take made %d lookups and the calls %q, want none and %q", f.lookups, f.calls, want)
	}
}

// Held reports the VIPs on the interface as they are configured, address
// and prefix length: a VIP whose address is there with another length
// (put there by hand, or by a configuration before a reload) is not
// held, since Release, which removes the configured prefix, would leave
// it in place.
func TestManagerHeld(t *testing.T) {
	tests := []struct {
		name  string
		vips  []netip.Prefix
		addrs []string
		want  []netip.Prefix
	}{
		{"none", prefixes("10.0.0.1/24", "2001:db8::1/64"), nil, nil},
		{"both families", prefixes("10.0.0.1/24", "2001:db8::1/64"), []string{"10.0.0.9/24 0s", "2001:db8::1/64 0s", "10.0.0.1/24 0s"},
			prefixes("10.0.0.1/24", "2001:db8::1/64")},
		{"same address, other length", prefixes("10.0.0.1/32"), []string{"10.0.0.1/24 0s"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAddrs{addrs: tt.addrs}
			m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)), f, "eth0", tt.vips, nil, nil)
			got, err := m.Held()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Held = %v, want %v", got, tt.want)
			}
		})
	}
	// Take then Release: held, then not.
	f := &fakeAddrs{}
	m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)), f, "eth0", prefixes("10.0.0.1/24", "2001:db8::1/64"), nil, nil)
	if err := m.Take(); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Held(); len(got) != 2 {
		t.Errorf("after Take: Held = %v, want both", got)
	}
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Held(); len(got) != 0 {
		t.Errorf("after Release: Held = %v, want none", got)
	}
}
