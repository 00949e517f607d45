package bfd

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"
)

// upPacket is a typical packet of an Up session at 10 ms timers.
func upPacket() Packet {
	return Packet{State: Up, DetectMult: 5, MyDiscr: 0x11223344, YourDiscr: 0x55667788,
		DesiredMinTx: 10 * time.Millisecond, RequiredMinRx: 10 * time.Millisecond}
}

// TestMarshalBytes pins the wire format against hand-assembled bytes
// (RFC 5880 4.1).
func TestMarshalBytes(t *testing.T) {
	p := upPacket()
	p.Diag = DiagNeighborDown
	p.Poll = true
	p.RequiredMinEchoRx = 50 * time.Millisecond
	want := "23" + // version 1, diag 3
		"e0" + // state Up (3), P
		"05" + "18" + // detect mult 5, length 24
		"11223344" + "55667788" +
		"00002710" + "00002710" + // 10,000 µs
		"0000c350" // 50,000 µs
	if got := hex.EncodeToString(p.Marshal()); got != want {
		t.Errorf("Marshal = %s, want %s", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	base := upPacket()
	for _, tc := range []struct {
		name string
		edit func(*Packet)
	}{
		{"up", func(*Packet) {}},
		{"down, your discr 0", func(p *Packet) { p.State, p.YourDiscr, p.Diag = Down, 0, DiagControlDetectExpired }},
		{"admin down", func(p *Packet) { p.State, p.Diag = AdminDown, DiagAdminDown }},
		{"init", func(p *Packet) { p.State = Init }},
		{"poll", func(p *Packet) { p.Poll = true }},
		{"final", func(p *Packet) { p.Final = true }},
		{"C and D", func(p *Packet) { p.ControlPlaneIndependent, p.Demand = true, true }},
		{"max intervals", func(p *Packet) {
			p.DesiredMinTx, p.RequiredMinRx, p.RequiredMinEchoRx = 4294967295*time.Microsecond, 4294967295*time.Microsecond, time.Microsecond
		}},
		{"rx 0", func(p *Packet) { p.RequiredMinRx = 0 }},
		{"diag 31", func(p *Packet) { p.Diag = 31 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			tc.edit(&p)
			got, r := Parse(p.Marshal())
			if r != DropNone {
				t.Fatalf("Parse: dropped, %s", r)
			}
			if *got != p {
				t.Errorf("round trip:\n got %+v\nwant %+v", *got, p)
			}
		})
	}
}

// TestParseDrops covers every RFC 5880 6.8.6 check Parse makes.
func TestParseDrops(t *testing.T) {
	good := upPacket()
	enc := func(edit func(*Packet), raw func([]byte) []byte) []byte {
		p := good
		if edit != nil {
			edit(&p)
		}
		b := p.Marshal()
		if raw != nil {
			b = raw(b)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want DropReason
	}{
		{"empty", nil, DropShort},
		{"23 bytes", enc(nil, func(b []byte) []byte { return b[:23] }), DropShort},
		{"version 0", enc(nil, func(b []byte) []byte { b[0] &^= 0xe0; return b }), DropVersion},
		{"version 2", enc(nil, func(b []byte) []byte { b[0] = b[0]&0x1f | 2<<5; return b }), DropVersion},
		{"length 23", enc(nil, func(b []byte) []byte { b[3] = 23; return b }), DropLength},
		{"length 0", enc(nil, func(b []byte) []byte { b[3] = 0; return b }), DropLength},
		{"length past payload", enc(nil, func(b []byte) []byte { b[3] = 25; return b }), DropLength},
		{"auth, length 24", enc(func(p *Packet) { p.AuthPresent = true }, nil), DropLength},
		{"auth", enc(func(p *Packet) { p.AuthPresent = true }, func(b []byte) []byte {
			b[3] = 24 + 7
			return append(b, 1, 7, 1, 0, 'a', 'b', 'c') // simple password
		}), DropAuth},
		{"detect mult 0", enc(func(p *Packet) { p.DetectMult = 0 }, nil), DropDetectMult},
		{"multipoint", enc(func(p *Packet) { p.Multipoint = true }, nil), DropMultipoint},
		{"my discr 0", enc(func(p *Packet) { p.MyDiscr = 0 }, nil), DropMyDiscr},
		{"your discr 0, Up", enc(func(p *Packet) { p.YourDiscr = 0 }, nil), DropYourDiscr},
		{"your discr 0, Init", enc(func(p *Packet) { p.YourDiscr, p.State = 0, Init }, nil), DropYourDiscr},
		{"your discr 0, Down", enc(func(p *Packet) { p.YourDiscr, p.State = 0, Down }, nil), DropNone},
		{"your discr 0, AdminDown", enc(func(p *Packet) { p.YourDiscr, p.State = 0, AdminDown }, nil), DropNone},
		{"length 24 with trailing bytes", enc(nil, func(b []byte) []byte { return append(b, 0, 0) }), DropNone},
		{"length 26 of 26", enc(nil, func(b []byte) []byte { b[3] = 26; return append(b, 0, 0) }), DropNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := Parse(tc.b); got != tc.want {
				t.Errorf("Parse(%x) = %s, want %s", tc.b, got, tc.want)
			}
		})
	}
}

func TestDropReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range DropReasons() {
		n := r.String()
		if seen[n] || n == "" || n[0] == 'D' {
			t.Errorf("drop reason %d has name %q, not unique or unnamed", r, n)
		}
		seen[n] = true
	}
}

// FuzzParse feeds the decoder arbitrary bytes: it never panics, and a
// packet it accepts re-encodes to the bytes it came from.
func FuzzParse(f *testing.F) {
	for _, p := range []Packet{upPacket(), {State: Down, DetectMult: 3, MyDiscr: 1, DesiredMinTx: time.Second}} {
		b := p.Marshal()
		f.Add(b)
		f.Add(b[:20])
		bad := bytes.Clone(b)
		bad[1] |= flagA
		f.Add(append(bad, 1, 5, 1, 0, 'x'))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, r := Parse(b)
		if r != DropNone {
			return
		}
		if p.AuthPresent || p.Multipoint || p.DetectMult == 0 || p.MyDiscr == 0 {
			t.Fatalf("accepted %+v", p)
		}
		enc := p.Marshal()
		want := bytes.Clone(b[:HeaderLen])
		want[3] = HeaderLen // Marshal always writes 24
		if !bytes.Equal(enc, want) {
			t.Fatalf("re-encoded %x, want %x", enc, want)
		}
	})
}
