// Package cluster lets the directors of one site know each other over
// gossip (hashicorp/memberlist): each shares what it sees of the real
// servers and its VRRP instances, so the others can take health decisions
// together, notice configs that drifted apart and two masters for one
// instance. It knows no kernel table and no election: cmd/lvsha feeds it
// states and acts on the pure decisions in decide.go.
package cluster

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Health is one director's verdict on one real server.
type Health uint8

const (
	// HealthUnknown: not checked by this director (not in its config, or
	// no verdict yet). It counts for no side in a consensus.
	HealthUnknown Health = iota
	HealthUp
	HealthDown
)

func (h Health) String() string {
	switch h {
	case HealthUp:
		return "up"
	case HealthDown:
		return "down"
	default:
		return "unknown"
	}
}

// VRRPState is an instance's state, numbered as keepalived's (and lvsha's
// vrrp_instance_state metric) are.
type VRRPState uint8

const (
	StateInit VRRPState = iota
	StateBackup
	StateMaster
	StateFault
)

func (s VRRPState) String() string {
	switch s {
	case StateBackup:
		return "BACKUP"
	case StateMaster:
		return "MASTER"
	case StateFault:
		return "FAULT"
	default:
		return "INIT"
	}
}

// Instance is what a director says about one of its VRRP instances.
type Instance struct {
	Name     string
	VRID     uint8
	IPv6     bool
	State    VRRPState
	Priority uint8      // effective: configured less what tracking takes
	Addr     netip.Addr // the instance's advert source; split brain ties go by it
}

// Short is a truncated digest: enough to tell two objects apart, which is
// all drift needs, at a quarter of the bytes per virtual server.
type Short [8]byte

// Digests fingerprint a director's configuration (conf.Config.Digests,
// truncated per object).
type Digests struct {
	Config         [sha256.Size]byte
	VirtualServers map[string]Short
	Instances      map[string]Short
}

// RealServer names one real server of one virtual server.
type RealServer struct {
	VS string
	RS netip.AddrPort
}

// State is everything one director publishes. Epoch is its start time
// (a restarted director's state replaces its old one); Seq counts its
// changes, so a late broadcast never overwrites a newer value.
type State struct {
	Name      string
	Version   string
	Epoch     int64
	Seq       uint64
	Digests   Digests
	Instances []Instance
	Health    map[RealServer]Health
}

// The wire formats. Each message starts with a kind byte; every integer
// is a uvarint, every string and byte run length-prefixed. Adding a kind
// or a trailing field keeps old decoders working: they ignore what
// follows what they know.
const (
	kindState  byte = 'S' // full state: push/pull
	kindHealth byte = 'H' // one real server's health changed
	kindVRRP   byte = 'V' // one instance's state changed
	kindMeta   byte = 'M' // node meta
)

// maxMetaName bounds the director name in the node meta; the full name is
// memberlist's node name anyway.
const maxMetaName = 64

type encoder struct{ b []byte }

func (e *encoder) byte(c byte)       { e.b = append(e.b, c) }
func (e *encoder) uint(v uint64)     { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) bytes(p []byte)    { e.uint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) string(s string)   { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) addr(a netip.Addr) { e.bytes(a.AsSlice()) }
func (e *encoder) addrPort(ap netip.AddrPort) {
	e.addr(ap.Addr())
	e.b = binary.BigEndian.AppendUint16(e.b, ap.Port())
}

func (e *encoder) instance(in Instance) {
	e.string(in.Name)
	e.byte(in.VRID)
	f := byte(in.State) & 0x7f
	if in.IPv6 {
		f |= 0x80
	}
	e.byte(f)
	e.byte(in.Priority)
	e.addr(in.Addr)
}

var errShort = errors.New("truncated message")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail(errShort)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length that must fit in what is left, each element taking
// at least min bytes: a forged length cannot make the decoder allocate more
// than the message could hold.
func (d *decoder) count(min int) int {
	n := d.uint()
	if n > uint64(len(d.b)/min) {
		d.fail(fmt.Errorf("length %d exceeds the %d bytes left", n, len(d.b)))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count(1)
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) addr() netip.Addr {
	p := d.bytes()
	if len(p) == 0 {
		return netip.Addr{}
	}
	a, ok := netip.AddrFromSlice(p)
	if !ok {
		d.fail(fmt.Errorf("address of %d bytes", len(p)))
	}
	return a
}

func (d *decoder) addrPort() netip.AddrPort {
	a := d.addr()
	if len(d.b) < 2 {
		d.fail(errShort)
		return netip.AddrPort{}
	}
	p := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return netip.AddrPortFrom(a, p)
}

func (d *decoder) instance() Instance {
	in := Instance{Name: d.string(), VRID: d.byte()}
	f := d.byte()
	in.IPv6, in.State = f&0x80 != 0, VRRPState(f&0x7f)
	in.Priority = d.byte()
	in.Addr = d.addr()
	return in
}

func (d *decoder) short() (s Short) {
	if len(d.b) < len(s) {
		d.fail(errShort)
		return s
	}
	copy(s[:], d.b)
	d.b = d.b[len(s):]
	return s
}

// encodeState is the push/pull payload. Real servers are grouped by
// virtual server so each name is written once: about 8 bytes per IPv4
// real server (TestStateSize measures it).
func encodeState(s *State) []byte {
	e := &encoder{b: make([]byte, 0, 64+10*len(s.Health))}
	e.byte(kindState)
	e.string(s.Name)
	e.string(s.Version)
	e.uint(uint64(s.Epoch))
	e.uint(s.Seq)
	e.b = append(e.b, s.Digests.Config[:]...)
	for _, m := range []map[string]Short{s.Digests.VirtualServers, s.Digests.Instances} {
		e.uint(uint64(len(m)))
		for _, n := range sortedKeys(m) {
			e.string(n)
			d := m[n]
			e.b = append(e.b, d[:]...)
		}
	}
	e.uint(uint64(len(s.Instances)))
	for _, in := range s.Instances {
		e.instance(in)
	}
	byVS := map[string][]RealServer{}
	for k := range s.Health {
		byVS[k.VS] = append(byVS[k.VS], k)
	}
	e.uint(uint64(len(byVS)))
	for _, vs := range sortedKeys(byVS) {
		rss := byVS[vs]
		sortRealServers(rss)
		e.string(vs)
		e.uint(uint64(len(rss)))
		for _, k := range rss {
			e.addrPort(k.RS)
			e.byte(byte(s.Health[k]))
		}
	}
	return e.b
}

func decodeState(b []byte) (*State, error) {
	d := &decoder{b: b}
	if k := d.byte(); k != kindState && d.err == nil {
		return nil, fmt.Errorf("not a state message (kind %q)", k)
	}
	s := &State{Name: d.string(), Version: d.string(), Epoch: int64(d.uint()), Seq: d.uint()}
	if len(d.b) < sha256.Size {
		d.fail(errShort)
	} else {
		copy(s.Digests.Config[:], d.b)
		d.b = d.b[sha256.Size:]
	}
	for _, m := range []*map[string]Short{&s.Digests.VirtualServers, &s.Digests.Instances} {
		n := d.count(1 + len(Short{}))
		*m = make(map[string]Short, n)
		for range n {
			name := d.string()
			(*m)[name] = d.short()
		}
	}
	n := d.count(5)
	s.Instances = make([]Instance, 0, n)
	for range n {
		s.Instances = append(s.Instances, d.instance())
	}
	nvs := d.count(2)
	s.Health = map[RealServer]Health{}
	for range nvs {
		vs := d.string()
		nrs := d.count(4)
		for range nrs {
			rs := d.addrPort()
			s.Health[RealServer{vs, rs}] = Health(d.byte())
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode state: %w", d.err)
	}
	return s, nil
}

// delta is one change broadcast as it happens.
type delta struct {
	origin string
	epoch  int64
	seq    uint64
	kind   byte
	rs     RealServer // kindHealth
	health Health     // kindHealth
	inst   Instance   // kindVRRP
}

func encodeDelta(x delta) []byte {
	e := &encoder{}
	e.byte(x.kind)
	e.string(x.origin)
	e.uint(uint64(x.epoch))
	e.uint(x.seq)
	switch x.kind {
	case kindHealth:
		e.string(x.rs.VS)
		e.addrPort(x.rs.RS)
		e.byte(byte(x.health))
	case kindVRRP:
		e.instance(x.inst)
	}
	return e.b
}

func decodeDelta(b []byte) (delta, error) {
	d := &decoder{b: b}
	x := delta{kind: d.byte()}
	if x.kind != kindHealth && x.kind != kindVRRP {
		return delta{}, fmt.Errorf("unknown message kind %q", x.kind)
	}
	x.origin, x.epoch, x.seq = d.string(), int64(d.uint()), d.uint()
	if x.kind == kindHealth {
		x.rs = RealServer{VS: d.string(), RS: d.addrPort()}
		x.health = Health(d.byte())
	} else {
		x.inst = d.instance()
	}
	if d.err != nil {
		return delta{}, fmt.Errorf("decode %c message: %w", x.kind, d.err)
	}
	return x, nil
}

// Meta is the node meta every member carries in memberlist's own alive
// messages: small (at most 512 bytes) and seen at once on join, before
// any push/pull.
type Meta struct {
	Name         string
	Version      string
	ConfigDigest [sha256.Size]byte
	Instances    []Instance // without Addr
	// Truncated: more instances than fit; the full state has them all.
	Truncated bool
}

// encodeMeta fits m into limit bytes, dropping instances from the end if
// it must (and saying so).
func encodeMeta(m Meta, limit int) []byte {
	name := m.Name
	if len(name) > maxMetaName {
		name = name[:maxMetaName]
	}
	version := m.Version
	if len(version) > maxMetaName {
		version = version[:maxMetaName]
	}
	e := &encoder{}
	e.byte(kindMeta)
	e.string(name)
	e.string(version)
	e.b = append(e.b, m.ConfigDigest[:]...)
	head := e.b
	per := func(in Instance) int { return len(in.Name) + 5 } // varint length < 128 for names that fit
	room := limit - len(head) - 2                            // count and flags
	n := 0
	for _, in := range m.Instances {
		if room-per(in) < 0 || len(in.Name) > 127 {
			break
		}
		room -= per(in)
		n++
	}
	flags := byte(0)
	if n < len(m.Instances) {
		flags = 1
	}
	e.byte(flags)
	e.uint(uint64(n))
	for _, in := range m.Instances[:n] {
		in.Addr = netip.Addr{}
		e.instance(in)
	}
	return e.b
}

func decodeMeta(b []byte) (Meta, error) {
	d := &decoder{b: b}
	if k := d.byte(); k != kindMeta && d.err == nil {
		return Meta{}, fmt.Errorf("not a meta message (kind %q)", k)
	}
	m := Meta{Name: d.string(), Version: d.string()}
	if len(d.b) < sha256.Size {
		d.fail(errShort)
	} else {
		copy(m.ConfigDigest[:], d.b)
		d.b = d.b[sha256.Size:]
	}
	m.Truncated = d.byte()&1 != 0
	n := d.count(5)
	for range n {
		m.Instances = append(m.Instances, d.instance())
	}
	if d.err != nil {
		return Meta{}, fmt.Errorf("decode meta: %w", d.err)
	}
	return m, nil
}
