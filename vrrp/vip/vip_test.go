package vip

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeAddrs is one interface's addresses, with every call recorded.
type fakeAddrs struct {
	addrs []string // "prefix lifetime"
	calls []string
}

func (f *fakeAddrs) LinkByName(name string) (netlink.Link, error) {
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

func (f *fakeAddrs) AddrList(netlink.Link, int) ([]netlink.Addr, error) { return nil, nil }

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
			if err := m.Reconfigure(context.Background(), tt.next, 3, 4*time.Second, tt.held); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.addrs, tt.wantAddrs) || !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("addresses %q after calls %q, want %q after %q", f.addrs, f.calls, tt.wantAddrs, tt.wantCalls)
			}
			if _, repeat := m.current(); repeat != 3 {
				t.Errorf("announcement count %d, want 3", repeat)
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
