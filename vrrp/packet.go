// Package vrrp is lvsha's VRRP: the advertisement codec (VRRPv3, RFC 5798,
// over IPv4 and IPv6; VRRPv2, RFC 3768, over IPv4) and the per-instance
// state machine of RFC 5798 section 6. Both are pure: sockets live in
// vrrp/transport, addresses in vrrp/vip, and a runner feeds one into the
// other.
package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
)

// Wire constants (RFC 5798 5.1, 5.2; RFC 3768 5.3).
const (
	// Protocol is VRRP's IP protocol number.
	Protocol = 112
	// HopLimit is the only TTL / hop limit a VRRP packet may carry, so a
	// packet that crossed a router is refused (RFC 5798 5.1.1.3).
	HopLimit = 255
	// TypeAdvert is the only VRRP message type.
	TypeAdvert = 1
	// AuthNone and AuthSimple are the VRRPv2 authentication types lvsha
	// speaks (RFC 3768 5.3.6, and RFC 2338 for the simple text password
	// keepalived still sends as auth_type PASS).
	AuthNone   = 0
	AuthSimple = 1

	headerLen = 8
	authLen   = 8 // VRRPv2's authentication data, present whatever the type
	// v3MaxInterval is the 12-bit Max Adver Int in centiseconds.
	v3MaxInterval = 0xfff * centisecond
	centisecond   = 10 * time.Millisecond
)

// Advert is one decoded VRRP advertisement.
type Advert struct {
	// Version is 2 (RFC 3768) or 3 (RFC 5798).
	Version  int
	VRID     uint8
	Priority uint8
	// Interval is the sender's advert interval: whole seconds for version
	// 2, centiseconds for version 3.
	Interval time.Duration
	// Addrs are the virtual addresses, of the family of the packet.
	Addrs []netip.Addr
	// AuthType and AuthData are VRRPv2's; zero for version 3.
	AuthType uint8
	AuthData [8]byte
}

// DropReason says why a received packet was not used. DropNone means it
// was.
type DropReason uint8

// Drop reasons. The order is the wire checks' order in Parse, then the
// instance checks of Config.Filter.
const (
	DropNone     DropReason = iota
	DropFamily              // source/destination invalid or of mixed family, VRRPv2 over IPv6, or an IPv4-mapped address in an IPv6 advert
	DropTTL                 // TTL / hop limit not 255: it crossed a router
	DropShort               // shorter than the fixed header
	DropVersion             // version neither 2 nor 3, or not the instance's
	DropType                // not an advertisement
	DropLength              // length disagrees with the address count, or no address
	DropChecksum            // checksum mismatch
	DropAuth                // VRRPv2 auth type unknown, or type/password not the instance's
	DropInterval            // zero interval, or a VRRPv2 interval not the instance's
	DropVRID                // no instance with this VRID
	DropOwn                 // our own advert came back

	// NumDropReasons is the number of reasons, DropNone included.
	NumDropReasons
)

// String names the reason in metric-label form.
func (r DropReason) String() string {
	switch r {
	case DropNone:
		return "none"
	case DropFamily:
		return "family"
	case DropTTL:
		return "ttl"
	case DropShort:
		return "short"
	case DropVersion:
		return "version"
	case DropType:
		return "type"
	case DropLength:
		return "length"
	case DropChecksum:
		return "checksum"
	case DropAuth:
		return "auth"
	case DropInterval:
		return "interval"
	case DropVRID:
		return "vrid"
	case DropOwn:
		return "own"
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// Counters counts received packets by DropReason; the DropNone slot counts
// accepted ones. The zero value is ready; it is safe for concurrent use, so
// the reading goroutine counts while a metrics scrape reads.
type Counters struct {
	n [NumDropReasons]atomic.Uint64
}

// Inc counts one packet. A reason out of range is ignored rather than
// trusted as an index.
func (c *Counters) Inc(r DropReason) {
	if r < NumDropReasons {
		c.n[r].Add(1)
	}
}

// Get returns the count of r.
func (c *Counters) Get(r DropReason) uint64 {
	if r < NumDropReasons {
		return c.n[r].Load()
	}
	return 0
}

// Snapshot returns every count, indexed by DropReason.
func (c *Counters) Snapshot() [NumDropReasons]uint64 {
	var s [NumDropReasons]uint64
	for i := range s {
		s[i] = c.n[i].Load()
	}
	return s
}

// Marshal encodes a for sending from src to dst. VRRPv3's checksum covers
// both addresses, so a unicast sender encodes once per peer.
func Marshal(a *Advert, src, dst netip.Addr) ([]byte, error) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("encode VRRP advert for VRID %d: source %s and destination %s must be addresses of one family", a.VRID, src, dst)
	}
	v4 := src.Is4()
	if err := checkAdvert(a, v4); err != nil {
		return nil, fmt.Errorf("encode VRRP advert for VRID %d: %w", a.VRID, err)
	}
	alen := 4
	if !v4 {
		alen = 16
	}
	n := headerLen + alen*len(a.Addrs)
	if a.Version == 2 {
		n += authLen
	}
	b := make([]byte, n)
	b[0] = byte(a.Version)<<4 | TypeAdvert
	b[1] = a.VRID
	b[2] = a.Priority
	b[3] = byte(len(a.Addrs))
	if a.Version == 2 {
		b[4] = a.AuthType
		b[5] = byte(a.Interval / time.Second)
	} else {
		// The top four bits are reserved and sent as zero.
		binary.BigEndian.PutUint16(b[4:], uint16(a.Interval/centisecond))
	}
	off := headerLen
	for _, x := range a.Addrs {
		off += copy(b[off:], x.AsSlice())
	}
	if a.Version == 2 {
		copy(b[off:], a.AuthData[:])
	}
	binary.BigEndian.PutUint16(b[6:], checksum(b, a.Version, src, dst))
	return b, nil
}

// checkAdvert refuses what the wire cannot carry or a receiver would drop.
func checkAdvert(a *Advert, v4 bool) error {
	switch a.Version {
	case 2:
		if !v4 {
			return errors.New("VRRPv2 is IPv4 only")
		}
		if a.AuthType != AuthNone && a.AuthType != AuthSimple {
			return fmt.Errorf("VRRPv2 auth type %d is not 0 (none) or 1 (simple)", a.AuthType)
		}
		if a.Interval < time.Second || a.Interval > 255*time.Second || a.Interval%time.Second != 0 {
			return fmt.Errorf("VRRPv2 interval %s is not whole seconds in 1s..255s", a.Interval)
		}
	case 3:
		if a.AuthType != 0 || a.AuthData != [8]byte{} {
			return errors.New("VRRPv3 has no authentication")
		}
		if a.Interval < centisecond || a.Interval > v3MaxInterval || a.Interval%centisecond != 0 {
			return fmt.Errorf("VRRPv3 interval %s is not a multiple of 10ms in 10ms..40.95s", a.Interval)
		}
	default:
		return fmt.Errorf("version %d is not 2 or 3", a.Version)
	}
	if len(a.Addrs) == 0 || len(a.Addrs) > 255 {
		return fmt.Errorf("%d addresses, want 1..255", len(a.Addrs))
	}
	for _, x := range a.Addrs {
		if x.Unmap().Is4() != v4 || x.Is4In6() {
			return fmt.Errorf("address %s is not of the packet's family", x)
		}
	}
	return nil
}

// Parse decodes and validates one VRRP message b that arrived from src to
// dst with the given TTL / hop limit (RFC 5798 7.1; RFC 3768 7.1). It
// checks what the packet alone can tell; Config.Filter checks it against
// an instance. The advert is nil unless the reason is DropNone.
func Parse(b []byte, src, dst netip.Addr, hopLimit int) (*Advert, DropReason) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, DropFamily
	}
	if hopLimit != HopLimit {
		return nil, DropTTL
	}
	if len(b) < headerLen {
		return nil, DropShort
	}
	a := &Advert{Version: int(b[0] >> 4), VRID: b[1], Priority: b[2]}
	if a.Version != 2 && a.Version != 3 {
		return nil, DropVersion
	}
	if b[0]&0x0f != TypeAdvert {
		return nil, DropType
	}
	v4 := src.Is4()
	if a.Version == 2 && !v4 {
		return nil, DropFamily
	}
	count := int(b[3])
	alen := 4
	if !v4 {
		alen = 16
	}
	want := headerLen + alen*count
	if a.Version == 2 {
		want += authLen
	}
	// A count of zero is refused: RFC 5798 5.2.5 sets the minimum at one,
	// and an advert without addresses cannot be checked against ours.
	if count == 0 || len(b) != want {
		return nil, DropLength
	}
	if binary.BigEndian.Uint16(b[6:]) != checksum(b, a.Version, src, dst) {
		return nil, DropChecksum
	}
	if a.Version == 2 {
		a.AuthType = b[4]
		if a.AuthType != AuthNone && a.AuthType != AuthSimple {
			return nil, DropAuth
		}
		a.Interval = time.Duration(b[5]) * time.Second
		copy(a.AuthData[:], b[want-authLen:])
	} else {
		// The reserved top four bits are ignored on receipt (RFC 5798 5.2.7).
		a.Interval = time.Duration(binary.BigEndian.Uint16(b[4:])&0x0fff) * centisecond
	}
	// A zero interval would make Master_Down_Interval all skew and every
	// backup take over at once.
	if a.Interval == 0 {
		return nil, DropInterval
	}
	a.Addrs = make([]netip.Addr, count)
	for i := range count {
		p := b[headerLen+i*alen:]
		if v4 {
			a.Addrs[i] = netip.AddrFrom4([4]byte(p[:4]))
		} else {
			a.Addrs[i] = netip.AddrFrom16([16]byte(p[:16]))
			// An IPv4-mapped address is never an IPv6 VIP (RFC 4291
			// 2.5.5.2: it stands for an IPv4 node inside a host's stack)
			// and our encoder refuses one, so accepting it would let a peer
			// place an address we could not advertise back.
			if a.Addrs[i].Is4In6() {
				return nil, DropFamily
			}
		}
	}
	return a, DropNone
}

// checksum computes the message's checksum as if its checksum field were
// zero: over the message alone for VRRPv2 (RFC 3768 5.3.8), over the IP
// pseudo-header and the message for VRRPv3 (RFC 5798 5.2.8: RFC 768's for
// IPv4, RFC 2460 8.1's for IPv6). Received packets are compared against
// it exactly, so an accepted packet re-encodes to the same bytes.
func checksum(b []byte, version int, src, dst netip.Addr) uint16 {
	var sum uint32
	if version == 3 {
		sum = add(sum, src.AsSlice())
		sum = add(sum, dst.AsSlice())
		if src.Is4() {
			// zero, protocol, VRRP length
			sum += Protocol + uint32(len(b))
		} else {
			// 32-bit upper-layer length, 24 zero bits, next header
			sum += uint32(len(b))>>16 + uint32(len(b))&0xffff + Protocol
		}
	}
	sum = add(sum, b[:6])
	sum = add(sum, b[8:])
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// add adds b as big-endian 16-bit words, the last odd byte padded with
// zero (RFC 1071). Callers fold; a VRRP message is far too short to
// overflow 32 bits.
func add(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}
