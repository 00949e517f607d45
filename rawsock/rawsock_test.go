package rawsock

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func timespec(sec, nsec uint64) []byte {
	return binary.NativeEndian.AppendUint64(binary.NativeEndian.AppendUint64(nil, sec), nsec)
}

// ParseControl reads the TTL or hop limit and the header's destination
// as x/net's parsers do, in any order, and leaves out what is absent or
// cut short rather than reading past it.
func TestParseControl(t *testing.T) {
	pkt4 := make([]byte, 12) // in_pktinfo: ifindex, spec_dst, addr
	copy(pkt4[8:], []byte{224, 0, 0, 18})
	pkt6 := make([]byte, 20) // in6_pktinfo: addr, ifindex
	group6 := netip.MustParseAddr("ff02::12")
	copy(pkt6, group6.AsSlice())
	ttl := cmsg(unix.IPPROTO_IP, unix.IP_TTL, binary.NativeEndian.AppendUint32(nil, 255))
	hop := cmsg(unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, binary.NativeEndian.AppendUint32(nil, 64))
	stamp := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespec(1700000000, 5))
	info4 := cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pkt4)
	info6 := cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pkt6)
	ovfl := cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, binary.NativeEndian.AppendUint32(nil, 7))
	join := func(b ...[]byte) []byte { return slices.Concat(b...) }
	tests := []struct {
		name string
		oob  []byte
		want Control
	}{
		{"none", nil, Control{}},
		{"v4 as the kernel sends", join(stamp, info4, ttl), Control{time.Unix(1700000000, 5), 255, netip.MustParseAddr("224.0.0.18"), 0}},
		{"v4 other order", join(ttl, info4), Control{HopLimit: 255, Dst: netip.MustParseAddr("224.0.0.18")}},
		{"v4 after drops", join(stamp, ovfl, info4, ttl), Control{time.Unix(1700000000, 5), 255, netip.MustParseAddr("224.0.0.18"), 7}},
		{"drops cut short", join(cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, []byte{7, 0}), ttl), Control{HopLimit: 255}},
		{"v6", join(stamp, hop, info6), Control{time.Unix(1700000000, 5), 64, group6, 0}},
		{"pktinfo cut short", join(ttl, cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pkt4[:8])), Control{HopLimit: 255}},
		{"length past the end", append(slices.Clone(ttl[:unix.SizeofCmsghdr]), 1), Control{}},
		{"timestamp cut short", join(ttl, cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespec(1700000000, 0)[:8])), Control{HopLimit: 255}},
		{"garbage", []byte{1, 2, 3}, Control{}},
	}
	for _, tt := range tests {
		if got := ParseControl(tt.oob); !got.At.Equal(tt.want.At) || got.HopLimit != tt.want.HopLimit || got.Dst != tt.want.Dst || got.Dropped != tt.want.Dropped {
			t.Errorf("%s: ParseControl = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// AddrPort reads the address and the port (network byte order) of either
// family, unmaps an IPv4-mapped address, and finds nothing in another
// family.
func TestAddrPort(t *testing.T) {
	v4 := func(a [4]byte, port [2]byte) *unix.RawSockaddrAny {
		var sa unix.RawSockaddrAny
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		s.Family, s.Addr = unix.AF_INET, a
		*(*[2]byte)(unsafe.Pointer(&s.Port)) = port
		return &sa
	}
	v6 := func(a netip.Addr, port [2]byte) *unix.RawSockaddrAny {
		var sa unix.RawSockaddrAny
		s := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
		s.Family, s.Addr = unix.AF_INET6, a.As16()
		*(*[2]byte)(unsafe.Pointer(&s.Port)) = port
		return &sa
	}
	tests := []struct {
		name string
		sa   *unix.RawSockaddrAny
		want netip.AddrPort
	}{
		{"v4", v4([4]byte{10, 0, 0, 1}, [2]byte{0x0e, 0xc8}), netip.MustParseAddrPort("10.0.0.1:3784")},
		{"v6", v6(netip.MustParseAddr("fe80::1"), [2]byte{0xc0, 0x01}), netip.MustParseAddrPort("[fe80::1]:49153")},
		{"v4-mapped", v6(netip.MustParseAddr("::ffff:10.0.0.2"), [2]byte{0, 1}), netip.MustParseAddrPort("10.0.0.2:1")},
		{"no address", &unix.RawSockaddrAny{}, netip.AddrPort{}},
	}
	for _, tt := range tests {
		if got := AddrPort(tt.sa); got != tt.want {
			t.Errorf("%s: AddrPort = %v, want %v", tt.name, got, tt.want)
		}
		if got := Addr(tt.sa); got != tt.want.Addr() {
			t.Errorf("%s: Addr = %v, want %v", tt.name, got, tt.want.Addr())
		}
	}
}
