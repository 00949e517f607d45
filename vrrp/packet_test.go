package vrrp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// refChecksum is an independent RFC 1071 checksum over the concatenation
// of parts: a byte-at-a-time, 64-bit accumulator with the fold done once at
// the end, unlike the codec's word loop.
func refChecksum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	var sum uint64
	for i, c := range all {
		if i%2 == 0 {
			sum += uint64(c) << 8
		} else {
			sum += uint64(c)
		}
	}
	for sum>>16 != 0 {
		sum = (sum & 0xffff) + (sum >> 16)
	}
	return ^uint16(sum)
}

// pseudo4 and pseudo6 are the pseudo-headers as RFC 768 and RFC 2460 8.1
// draw them.
func pseudo4(src, dst netip.Addr, n int) []byte {
	s, d := src.As4(), dst.As4()
	b := append(s[:], d[:]...)
	return append(b, 0, Protocol, byte(n>>8), byte(n))
}

func pseudo6(src, dst netip.Addr, n int) []byte {
	s, d := src.As16(), dst.As16()
	b := append(s[:], d[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return append(b, 0, 0, 0, Protocol)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

var (
	src4  = mustAddr("192.0.2.1")
	grp4  = mustAddr("224.0.0.18")
	src6  = mustAddr("fe80::1")
	grp6  = mustAddr("ff02::12")
	vip4a = mustAddr("192.0.2.100")
	vip6a = mustAddr("2001:db8::100")
)

// TestMarshalVectors checks encodings byte by byte. The checksums were
// worked by hand (in the comments) and are also recomputed by refChecksum
// over the pseudo-header built here, so a wrong pseudo-header, word order
// or fold in the codec shows up.
func TestMarshalVectors(t *testing.T) {
	tests := []struct {
		name     string
		a        Advert
		src, dst netip.Addr
		pseudo   []byte
		want     []byte
	}{{
		// pseudo c000+0201+e000+0012+0070+000c, message
		// 3107+6401+000a+c000+0264 = 0x2fa05 -> fa07 -> ^ = 05f8
		name: "v3 IPv4",
		a:    Advert{Version: 3, VRID: 7, Priority: 100, Interval: 100 * time.Millisecond, Addrs: []netip.Addr{vip4a}},
		src:  src4, dst: grp4,
		pseudo: pseudo4(src4, grp4, 12),
		want:   []byte{0x31, 7, 100, 1, 0x00, 0x0a, 0x05, 0xf8, 192, 0, 2, 100},
	}, {
		// keepalived's own advert (testdata v2-pass-ipv4.pcap):
		// 2133+9602+0101+0a4d+0064+0a4d+0065+7365+6372+6574+3132
		// = 0x23b16 -> 3b18 -> ^ = c4e7
		name: "v2 IPv4 simple password",
		a: Advert{Version: 2, VRID: 51, Priority: 150, Interval: time.Second,
			Addrs:    []netip.Addr{mustAddr("10.77.0.100"), mustAddr("10.77.0.101")},
			AuthType: AuthSimple, AuthData: [8]byte([]byte("secret12"))},
		src: mustAddr("10.77.0.1"), dst: grp4,
		want: []byte{0x21, 51, 150, 2, 1, 1, 0xc4, 0xe7, 10, 77, 0, 100, 10, 77, 0, 101,
			's', 'e', 'c', 'r', 'e', 't', '1', '2'},
	}, {
		name: "v3 IPv6",
		a:    Advert{Version: 3, VRID: 9, Priority: 255, Interval: 40950 * time.Millisecond, Addrs: []netip.Addr{vip6a}},
		src:  src6, dst: grp6,
		pseudo: pseudo6(src6, grp6, 24),
		want: append([]byte{0x31, 9, 255, 1, 0x0f, 0xff, 0, 0},
			0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := bytes.Clone(tt.want)
			zeroed := bytes.Clone(want)
			zeroed[6], zeroed[7] = 0, 0
			ref := refChecksum(tt.pseudo, zeroed)
			if got := binary.BigEndian.Uint16(want[6:]); tt.name != "v3 IPv6" && got != ref {
				t.Fatalf("vector's hand checksum %#04x, reference computes %#04x", got, ref)
			}
			binary.BigEndian.PutUint16(want[6:], ref)
			got, err := Marshal(&tt.a, tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Marshal =\n% x\nwant\n% x", got, want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	pass := [8]byte([]byte("pw\x00\x00\x00\x00\x00\x00"))
	tests := []struct {
		name     string
		a        Advert
		src, dst netip.Addr
	}{
		{"v3 IPv4 multicast", Advert{Version: 3, VRID: 1, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip4a, mustAddr("192.0.2.101")}}, src4, grp4},
		{"v3 IPv4 unicast", Advert{Version: 3, VRID: 255, Priority: 1, Interval: 10 * time.Millisecond, Addrs: []netip.Addr{vip4a}}, src4, mustAddr("192.0.2.2")},
		{"v3 IPv6", Advert{Version: 3, VRID: 42, Priority: 0, Interval: 1230 * time.Millisecond, Addrs: []netip.Addr{vip6a, mustAddr("2001:db8::101"), mustAddr("fe80::5")}}, src6, grp6},
		{"v2 IPv4 no auth", Advert{Version: 2, VRID: 3, Priority: 254, Interval: 255 * time.Second, Addrs: []netip.Addr{vip4a}}, src4, grp4},
		{"v2 IPv4 password", Advert{Version: 2, VRID: 3, Priority: 100, Interval: 3 * time.Second, Addrs: []netip.Addr{vip4a}, AuthType: AuthSimple, AuthData: pass}, src4, grp4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Marshal(&tt.a, tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			got, r := Parse(b, tt.src, tt.dst, 255)
			if r != DropNone {
				t.Fatalf("Parse: dropped, %s", r)
			}
			if diff := cmp.Diff(&tt.a, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMarshalRefuses(t *testing.T) {
	ok := Advert{Version: 3, VRID: 1, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip4a}}
	tests := []struct {
		name     string
		edit     func(a *Advert)
		src, dst netip.Addr
	}{
		{"mixed family src/dst", nil, src4, grp6},
		{"invalid src", nil, netip.Addr{}, grp4},
		{"v6 address in v4 packet", func(a *Advert) { a.Addrs = []netip.Addr{vip6a} }, src4, grp4},
		{"no addresses", func(a *Advert) { a.Addrs = nil }, src4, grp4},
		{"256 addresses", func(a *Advert) { a.Addrs = make([]netip.Addr, 256); fillAddrs(a.Addrs) }, src4, grp4},
		{"v3 interval not centiseconds", func(a *Advert) { a.Interval = 15 * time.Millisecond }, src4, grp4},
		{"v3 interval too long", func(a *Advert) { a.Interval = 40960 * time.Millisecond }, src4, grp4},
		{"v3 zero interval", func(a *Advert) { a.Interval = 0 }, src4, grp4},
		{"v3 with auth", func(a *Advert) { a.AuthType = AuthSimple }, src4, grp4},
		{"v2 over IPv6", func(a *Advert) { a.Version = 2; a.Addrs = []netip.Addr{vip6a} }, src6, grp6},
		{"v2 interval not seconds", func(a *Advert) { a.Version = 2; a.Interval = 1500 * time.Millisecond }, src4, grp4},
		{"v2 interval too long", func(a *Advert) { a.Version = 2; a.Interval = 256 * time.Second }, src4, grp4},
		{"v2 AH auth", func(a *Advert) { a.Version = 2; a.AuthType = 2 }, src4, grp4},
		{"version 4", func(a *Advert) { a.Version = 4 }, src4, grp4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := ok
			if tt.edit != nil {
				tt.edit(&a)
			}
			if b, err := Marshal(&a, tt.src, tt.dst); err == nil {
				t.Errorf("Marshal = % x, want an error", b)
			}
		})
	}
}

func fillAddrs(as []netip.Addr) {
	for i := range as {
		as[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
}

// TestParseDrops triggers every reason Parse gives, one row each, by
// editing a valid packet (and fixing the checksum where the edit is not
// about the checksum, so the row's own reason is what trips).
func TestParseDrops(t *testing.T) {
	v3 := Advert{Version: 3, VRID: 1, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip4a}}
	v2 := Advert{Version: 2, VRID: 1, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip4a}}
	v36 := Advert{Version: 3, VRID: 1, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip6a}}
	tests := []struct {
		name     string
		a        Advert
		src, dst netip.Addr
		// edit changes the encoded packet; fix recomputes its checksum.
		edit func(b []byte) []byte
		fix  bool
		// at gives the addresses Parse is told (nil: as encoded); hop
		// the TTL (zero: 255).
		at   func() (src, dst netip.Addr)
		hop  int
		want DropReason
	}{
		{name: "valid v3", a: v3, src: src4, dst: grp4, want: DropNone},
		{name: "valid v2", a: v2, src: src4, dst: grp4, want: DropNone},
		{name: "valid v3 IPv6", a: v36, src: src6, dst: grp6, want: DropNone},
		{name: "reserved bits ignored", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { b[4] |= 0xf0; return b }, fix: true, want: DropNone},
		{name: "invalid source", a: v3, src: src4, dst: grp4, at: func() (netip.Addr, netip.Addr) { return netip.Addr{}, grp4 }, want: DropFamily},
		{name: "mixed family", a: v3, src: src4, dst: grp4, at: func() (netip.Addr, netip.Addr) { return src4, grp6 }, want: DropFamily},
		{name: "TTL 254", a: v3, src: src4, dst: grp4, hop: 254, want: DropTTL},
		{name: "TTL 1", a: v3, src: src4, dst: grp4, hop: 1, want: DropTTL},
		{name: "7 bytes", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { return b[:7] }, want: DropShort},
		{name: "empty", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { return nil }, want: DropShort},
		{name: "version 1", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { b[0] = 0x11; return b }, fix: true, want: DropVersion},
		{name: "version 4", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { b[0] = 0x41; return b }, fix: true, want: DropVersion},
		{name: "type 2", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { b[0] = 0x32; return b }, fix: true, want: DropType},
		{name: "v2 over IPv6", a: v36, src: src6, dst: grp6, edit: func(b []byte) []byte { b[0] = 0x21; return b }, fix: true, want: DropFamily},
		{name: "IPv4-mapped address in IPv6", a: v36, src: src6, dst: grp6, edit: func(b []byte) []byte {
			copy(b[8:], netip.MustParseAddr("::ffff:255.255.1.1").AsSlice())
			return b
		}, fix: true, want: DropFamily},
		{name: "truncated address", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { return b[:10] }, want: DropLength},
		{name: "trailing bytes", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { return append(b, 0, 0, 0, 0) }, fix: true, want: DropLength},
		{name: "count says 2", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { b[3] = 2; return b }, fix: true, want: DropLength},
		{name: "count 0", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { b[3] = 0; return b[:8] }, fix: true, want: DropLength},
		{name: "v2 missing auth data", a: v2, src: src4, dst: grp4, edit: func(b []byte) []byte { return b[:12] }, fix: true, want: DropLength},
		{name: "IPv4-sized address in IPv6", a: v3, src: src4, dst: grp4, at: func() (netip.Addr, netip.Addr) { return src6, grp6 }, want: DropLength},
		{name: "flipped bit", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { b[2] ^= 1; return b }, want: DropChecksum},
		{name: "other destination (pseudo-header)", a: v3, src: src4, dst: grp4, at: func() (netip.Addr, netip.Addr) { return src4, mustAddr("192.0.2.2") }, want: DropChecksum},
		{name: "other source IPv6", a: v36, src: src6, dst: grp6, at: func() (netip.Addr, netip.Addr) { return mustAddr("fe80::2"), grp6 }, want: DropChecksum},
		{name: "v2 checksum", a: v2, src: src4, dst: grp4, edit: func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }, want: DropChecksum},
		{name: "v2 AH auth", a: v2, src: src4, dst: grp4, edit: func(b []byte) []byte { b[4] = 2; return b }, fix: true, want: DropAuth},
		{name: "v2 auth 255", a: v2, src: src4, dst: grp4, edit: func(b []byte) []byte { b[4] = 255; return b }, fix: true, want: DropAuth},
		{name: "v3 zero interval", a: v3, src: src4, dst: grp4, edit: func(b []byte) []byte { b[4], b[5] = 0xf0, 0; return b }, fix: true, want: DropInterval},
		{name: "v2 zero interval", a: v2, src: src4, dst: grp4, edit: func(b []byte) []byte { b[5] = 0; return b }, fix: true, want: DropInterval},
	}
	seen := map[DropReason]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Marshal(&tt.a, tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				b = tt.edit(b)
			}
			if tt.fix {
				b[6], b[7] = 0, 0
				ck := refChecksum(b)
				if b[0]>>4 == 3 {
					if tt.src.Is6() {
						ck = refChecksum(pseudo6(tt.src, tt.dst, len(b)), b)
					} else {
						ck = refChecksum(pseudo4(tt.src, tt.dst, len(b)), b)
					}
				}
				binary.BigEndian.PutUint16(b[6:], ck)
			}
			psrc, pdst, hop := tt.src, tt.dst, 255
			if tt.at != nil {
				psrc, pdst = tt.at()
			}
			if tt.hop != 0 {
				hop = tt.hop
			}
			a, r := Parse(b, psrc, pdst, hop)
			if r != tt.want {
				t.Fatalf("Parse(% x, %s, %s, %d) reason %s, want %s", b, psrc, pdst, hop, r, tt.want)
			}
			if (a == nil) != (r != DropNone) {
				t.Errorf("advert %v with reason %s", a, r)
			}
			seen[r] = true
		})
	}
	// Reasons only Config.Filter gives are covered by TestFilter.
	for r := DropNone; r < DropVRID; r++ {
		if !seen[r] {
			t.Errorf("no row triggers %s", r)
		}
	}
}

func TestDropReasonString(t *testing.T) {
	names := map[string]DropReason{}
	for r := DropNone; r < NumDropReasons; r++ {
		s := r.String()
		if prev, dup := names[s]; dup {
			t.Errorf("%d and %d are both %q", prev, r, s)
		}
		names[s] = r
		if s == (DropReason(200)).String() || s == "" {
			t.Errorf("%d has no name", r)
		}
	}
	if got := NumDropReasons.String(); got != "DropReason(12)" {
		t.Errorf("out of range reason named %q", got)
	}
}

func TestCounters(t *testing.T) {
	var c Counters
	// Each reason r counted r+1 times, so a slot mix-up or a reason left
	// out shows.
	var want [NumDropReasons]uint64
	for r := DropNone; r < NumDropReasons; r++ {
		for range int(r) + 1 {
			c.Inc(r)
		}
		want[r] = uint64(r) + 1
	}
	c.Inc(NumDropReasons) // ignored, not a panic
	c.Inc(255)
	for r := DropNone; r < NumDropReasons; r++ {
		if got := c.Get(r); got != want[r] {
			t.Errorf("Get(%s) = %d, want %d", r, got, want[r])
		}
	}
	if got := c.Get(255); got != 0 {
		t.Errorf("Get(255) = %d", got)
	}
	if got := c.Snapshot(); got != want {
		t.Errorf("Snapshot = %v, want %v", got, want)
	}
}

// pcapPacket is one captured VRRP packet with its IP header's facts.
type pcapPacket struct {
	payload  []byte
	src, dst netip.Addr
	hop      int
}

// readPcap reads an Ethernet pcap holding IPv4 or IPv6 VRRP packets.
func readPcap(t testing.TB, path string) []pcapPacket {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 24 || binary.LittleEndian.Uint32(raw) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(raw[20:]) != 1 {
		t.Fatalf("%s: not a little-endian Ethernet pcap", path)
	}
	var out []pcapPacket
	for p := raw[24:]; len(p) > 0; {
		if len(p) < 16 {
			t.Fatalf("%s: truncated record header", path)
		}
		n := int(binary.LittleEndian.Uint32(p[8:]))
		frame := p[16 : 16+n]
		p = p[16+n:]
		ip := frame[14:]
		switch binary.BigEndian.Uint16(frame[12:]) {
		case 0x0800:
			ihl := int(ip[0]&0x0f) * 4
			total := int(binary.BigEndian.Uint16(ip[2:]))
			if ip[9] != Protocol {
				t.Fatalf("%s: protocol %d", path, ip[9])
			}
			out = append(out, pcapPacket{payload: ip[ihl:total], src: netip.AddrFrom4([4]byte(ip[12:16])),
				dst: netip.AddrFrom4([4]byte(ip[16:20])), hop: int(ip[8])})
		case 0x86dd:
			if ip[6] != Protocol {
				t.Fatalf("%s: next header %d (extension headers are not expected)", path, ip[6])
			}
			plen := int(binary.BigEndian.Uint16(ip[4:]))
			out = append(out, pcapPacket{payload: ip[40 : 40+plen], src: netip.AddrFrom16([16]byte(ip[8:24])),
				dst: netip.AddrFrom16([16]byte(ip[24:40])), hop: int(ip[7])})
		default:
			t.Fatalf("%s: ethertype %#x", path, binary.BigEndian.Uint16(frame[12:]))
		}
	}
	return out
}

// TestKeepalivedCaptures decodes adverts a real keepalived sent (settings in
// testdata/keepalived/README.md) and re-encodes them to the same bytes.
func TestKeepalivedCaptures(t *testing.T) {
	tests := []struct {
		file string
		want Advert
	}{
		{"v2-pass-ipv4.pcap", Advert{Version: 2, VRID: 51, Priority: 150, Interval: time.Second,
			Addrs: []netip.Addr{mustAddr("10.77.0.100"), mustAddr("10.77.0.101")}, AuthType: AuthSimple, AuthData: [8]byte([]byte("secret12"))}},
		{"v3-ipv4.pcap", Advert{Version: 3, VRID: 52, Priority: 200, Interval: 100 * time.Millisecond, Addrs: []netip.Addr{mustAddr("10.77.0.102")}}},
		{"v3-ipv6.pcap", Advert{Version: 3, VRID: 53, Priority: 100, Interval: time.Second,
			Addrs: []netip.Addr{mustAddr("2001:db8:77::100"), mustAddr("2001:db8:77::101")}}},
		{"v3-ipv4-unicast.pcap", Advert{Version: 3, VRID: 54, Priority: 120, Interval: time.Second, Addrs: []netip.Addr{mustAddr("10.77.0.103")}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			pkts := readPcap(t, filepath.Join("testdata", "keepalived", tt.file))
			if len(pkts) == 0 {
				t.Fatal("no packets")
			}
			for _, p := range pkts {
				got, r := Parse(p.payload, p.src, p.dst, p.hop)
				if r != DropNone {
					t.Fatalf("Parse(% x from %s to %s): dropped, %s", p.payload, p.src, p.dst, r)
				}
				if diff := cmp.Diff(&tt.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
					t.Errorf("decoded (-want +got):\n%s", diff)
				}
				b, err := Marshal(got, p.src, p.dst)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, p.payload) {
					t.Errorf("re-encoded\n% x\nkeepalived sent\n% x", b, p.payload)
				}
			}
		})
	}
}

// FuzzParse: Parse never panics, every rejection has a named reason, and
// what it accepts re-encodes to the same bytes (the reserved bits of a v3
// packet aside, which are ignored on receipt and sent as zero).
func FuzzParse(f *testing.F) {
	for _, file := range []string{"v2-pass-ipv4.pcap", "v3-ipv4.pcap", "v3-ipv6.pcap", "v3-ipv4-unicast.pcap"} {
		for _, p := range readPcap(f, filepath.Join("testdata", "keepalived", file)) {
			f.Add(p.payload, p.src.AsSlice(), p.dst.AsSlice(), p.hop)
		}
	}
	f.Add([]byte{0x31, 1, 100, 0, 0, 0, 0, 0}, src4.AsSlice(), grp4.AsSlice(), 255)
	f.Fuzz(func(t *testing.T, b, srcB, dstB []byte, hop int) {
		src, _ := netip.AddrFromSlice(srcB)
		dst, _ := netip.AddrFromSlice(dstB)
		in := bytes.Clone(b)
		a, r := Parse(b, src, dst, hop)
		if !bytes.Equal(in, b) {
			t.Fatal("Parse modified its input")
		}
		if r >= NumDropReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != DropNone {
			if a != nil {
				t.Fatalf("advert returned with reason %s", r)
			}
			return
		}
		if a == nil {
			t.Fatal("accepted without an advert")
		}
		out, err := Marshal(a, src, dst)
		if err != nil {
			t.Fatalf("accepted %+v does not re-encode: %v", a, err)
		}
		want := b
		if a.Version == 3 && b[4]&0xf0 != 0 {
			want = bytes.Clone(b)
			want[4] &= 0x0f
			want[6], want[7] = 0, 0
			var ps []byte
			if src.Unmap().Is4() {
				ps = pseudo4(src.Unmap(), dst.Unmap(), len(want))
			} else {
				ps = pseudo6(src, dst, len(want))
			}
			binary.BigEndian.PutUint16(want[6:], refChecksum(ps, want))
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("re-encoded\n% x\nreceived\n% x", out, want)
		}
	})
}
