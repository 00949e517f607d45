package instance

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The advert source is an address the kernel lets adverts go out from
// now; where there is none, the error is ErrNoSource, which vrrp/group
// takes as "in FAULT until one appears", not as a reason to stop.
func TestPickSource(t *testing.T) {
	a := netip.MustParseAddr
	ll, ll2, global, v4 := a("fe80::1"), a("fe80::2"), a("2001:db8::1"), a("192.0.2.1")
	tests := []struct {
		name    string
		addrs   []ifAddr
		v6      bool
		want    netip.Addr
		wantErr string // "" for none; else in the message, which wraps ErrNoSource
	}{
		{"IPv6: the link-local address", []ifAddr{{addr: global}, {addr: ll}}, true, ll, ""},
		{"IPv6: no link-local (addrgenmode none)", []ifAddr{{addr: global}, {addr: v4}}, true, netip.Addr{}, "eth0 has no IPv6 link-local address"},
		{"IPv6: none at all", nil, true, netip.Addr{}, "eth0 has no IPv6 link-local address"},
		{"IPv6: tentative, DAD pending", []ifAddr{{addr: ll, flags: unix.IFA_F_TENTATIVE}}, true, netip.Addr{}, "tentative"},
		{"IPv6: DAD failed", []ifAddr{{addr: ll, flags: unix.IFA_F_TENTATIVE | unix.IFA_F_DADFAILED}}, true, netip.Addr{}, "tentative"},
		{"IPv6: optimistic is usable during DAD", []ifAddr{{addr: ll, flags: unix.IFA_F_TENTATIVE | unix.IFA_F_OPTIMISTIC}}, true, ll, ""},
		{"IPv6: a tentative one skipped for one that passed", []ifAddr{{addr: ll, flags: unix.IFA_F_TENTATIVE}, {addr: ll2}}, true, ll2, ""},
		{"IPv4: the first address", []ifAddr{{addr: ll}, {addr: v4}, {addr: a("192.0.2.2")}}, false, v4, ""},
		{"IPv4: none", []ifAddr{{addr: ll}}, false, netip.Addr{}, "eth0 has no IPv4 address (or set unicast_src)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickSource("eth0", tc.addrs, tc.v6)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("pickSource = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrNoSource) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("pickSource = %v, %v; want an ErrNoSource saying %q", got, err, tc.wantErr)
			}
		})
	}
}
