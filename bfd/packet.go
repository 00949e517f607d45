// Package bfd is Bidirectional Forwarding Detection in asynchronous mode
// (RFC 5880) for single-hop sessions (RFC 5881): the control packet codec
// and a session state machine that does no I/O and reads no clock.
// bfd/transport carries the packets; bfd/runner drives sessions over it
// with real timers.
package bfd

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Version is the only BFD protocol version (RFC 5880 4.1).
const Version = 1

// HeaderLen is the mandatory section's length; with the A bit clear it
// is the whole packet (RFC 5880 4.1).
const HeaderLen = 24

// State is a session state (RFC 5880 4.1, 6.2), numbered as on the wire.
type State uint8

// States.
const (
	AdminDown State = iota
	Down
	Init
	Up
)

func (s State) String() string {
	switch s {
	case AdminDown:
		return "AdminDown"
	case Down:
		return "Down"
	case Init:
		return "Init"
	case Up:
		return "Up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag is a diagnostic code (RFC 5880 4.1): why the sender's session last
// changed state. It is 5 bits on the wire.
type Diag uint8

// Diagnostic codes.
const (
	DiagNone                  Diag = 0
	DiagControlDetectExpired  Diag = 1
	DiagEchoFailed            Diag = 2
	DiagNeighborDown          Diag = 3
	DiagForwardingReset       Diag = 4
	DiagPathDown              Diag = 5
	DiagConcatenatedPathDown  Diag = 6
	DiagAdminDown             Diag = 7
	DiagReverseConcatPathDown Diag = 8
)

func (d Diag) String() string {
	names := [...]string{"no diagnostic", "control detection time expired", "echo function failed",
		"neighbor signaled session down", "forwarding plane reset", "path down",
		"concatenated path down", "administratively down", "reverse concatenated path down"}
	if int(d) < len(names) {
		return names[d]
	}
	return fmt.Sprintf("Diag(%d)", uint8(d))
}

// Packet is a BFD control packet's mandatory section. The intervals are
// microseconds on the wire: encoding truncates them to whole microseconds
// and caps them at 2^32-1 µs.
type Packet struct {
	Diag  Diag
	State State
	// Poll, Final, ControlPlaneIndependent, AuthPresent, Demand and
	// Multipoint are the P, F, C, A, D and M bits.
	Poll, Final             bool
	ControlPlaneIndependent bool
	AuthPresent             bool
	Demand                  bool
	Multipoint              bool
	DetectMult              uint8
	MyDiscr, YourDiscr      uint32
	DesiredMinTx            time.Duration
	RequiredMinRx           time.Duration
	RequiredMinEchoRx       time.Duration
}

// Flag bits of the second byte.
const (
	flagP = 1 << 5
	flagF = 1 << 4
	flagC = 1 << 3
	flagA = 1 << 2
	flagD = 1 << 1
	flagM = 1 << 0
)

// Append appends p's encoding (24 bytes: lvsha sends no authentication
// section) to b.
func (p *Packet) Append(b []byte) []byte {
	var flags byte
	for _, f := range []struct {
		set bool
		bit byte
	}{{p.Poll, flagP}, {p.Final, flagF}, {p.ControlPlaneIndependent, flagC}, {p.AuthPresent, flagA}, {p.Demand, flagD}, {p.Multipoint, flagM}} {
		if f.set {
			flags |= f.bit
		}
	}
	b = append(b, Version<<5|byte(p.Diag)&0x1f, byte(p.State&3)<<6|flags, p.DetectMult, HeaderLen)
	b = binary.BigEndian.AppendUint32(b, p.MyDiscr)
	b = binary.BigEndian.AppendUint32(b, p.YourDiscr)
	b = binary.BigEndian.AppendUint32(b, micros(p.DesiredMinTx))
	b = binary.BigEndian.AppendUint32(b, micros(p.RequiredMinRx))
	return binary.BigEndian.AppendUint32(b, micros(p.RequiredMinEchoRx))
}

// Marshal returns p's encoding.
func (p *Packet) Marshal() []byte { return p.Append(make([]byte, 0, HeaderLen)) }

func micros(d time.Duration) uint32 {
	us := d / time.Microsecond
	switch {
	case us < 0:
		return 0
	case us > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(us)
}

// DropReason says why a received packet was discarded; each is counted.
type DropReason uint8

// Drop reasons: the RFC 5880 6.8.6 reception checks, then the session
// and transport's.
const (
	DropNone DropReason = iota
	// DropShort: fewer bytes than the mandatory section.
	DropShort
	// DropVersion: version is not 1.
	DropVersion
	// DropLength: the length field is below the minimum, or above the
	// bytes received.
	DropLength
	// DropDetectMult: Detect Mult is zero.
	DropDetectMult
	// DropMultipoint: the M bit is set.
	DropMultipoint
	// DropMyDiscr: My Discriminator is zero.
	DropMyDiscr
	// DropYourDiscr: Your Discriminator is zero in a packet whose state is
	// neither Down nor AdminDown.
	DropYourDiscr
	// DropAuth: the A bit is set, and lvsha supports no authentication.
	DropAuth
	// DropNoSession: no session matches Your Discriminator, or (when it is
	// zero) the source address.
	DropNoSession
	// DropAdminDown: the local session is AdminDown (RFC 5880 6.8.6).
	DropAdminDown
	// DropTTL: the TTL or hop limit was not 255 (RFC 5881 5), or the
	// kernel did not report it.
	DropTTL
	// DropAcceptLimit: a packet that would open a session for a peer
	// nobody added (runner Config.Accept) while MaxAccepted such sessions
	// exist: a flood of forged sources on the link, most likely.
	DropAcceptLimit
	numDropReasons
)

// DropReasons are every reason a packet can be dropped for, to name
// counters in a fixed order.
func DropReasons() []DropReason {
	out := make([]DropReason, 0, numDropReasons-1)
	for r := DropNone + 1; r < numDropReasons; r++ {
		out = append(out, r)
	}
	return out
}

func (r DropReason) String() string {
	names := [...]string{"none", "short", "version", "length", "detect_mult", "multipoint",
		"my_discriminator", "your_discriminator", "authentication", "no_session", "admin_down", "ttl", "accept_limit"}
	if int(r) < len(names) {
		return names[r]
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// Parse decodes b, one UDP payload, and applies the reception checks of
// RFC 5880 6.8.6 that need no session: a packet that fails one is
// returned with the reason, never a panic. Finding the session (by Your
// Discriminator, or by source address when that is zero) is the caller's.
func Parse(b []byte) (*Packet, DropReason) {
	if len(b) < HeaderLen {
		return nil, DropShort
	}
	if b[0]>>5 != Version {
		return nil, DropVersion
	}
	flags := b[1] & 0x3f
	p := &Packet{
		Diag:                    Diag(b[0] & 0x1f),
		State:                   State(b[1] >> 6),
		Poll:                    flags&flagP != 0,
		Final:                   flags&flagF != 0,
		ControlPlaneIndependent: flags&flagC != 0,
		AuthPresent:             flags&flagA != 0,
		Demand:                  flags&flagD != 0,
		Multipoint:              flags&flagM != 0,
		DetectMult:              b[2],
		MyDiscr:                 binary.BigEndian.Uint32(b[4:]),
		YourDiscr:               binary.BigEndian.Uint32(b[8:]),
		DesiredMinTx:            time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Microsecond,
		RequiredMinRx:           time.Duration(binary.BigEndian.Uint32(b[16:])) * time.Microsecond,
		RequiredMinEchoRx:       time.Duration(binary.BigEndian.Uint32(b[20:])) * time.Microsecond,
	}
	length, minLen := int(b[3]), HeaderLen
	if p.AuthPresent {
		// The authentication section is at least type and length (4.2).
		minLen = HeaderLen + 2
	}
	switch {
	case length < minLen || length > len(b):
		return p, DropLength
	case p.AuthPresent:
		// RFC 5880 6.8.6: A set and no authentication in use, discard.
		return p, DropAuth
	case p.DetectMult == 0:
		return p, DropDetectMult
	case p.Multipoint:
		return p, DropMultipoint
	case p.MyDiscr == 0:
		return p, DropMyDiscr
	case p.YourDiscr == 0 && p.State != Down && p.State != AdminDown:
		return p, DropYourDiscr
	}
	return p, DropNone
}
