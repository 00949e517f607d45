package bfd

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// slowTx is the least Desired Min TX Interval a session advertises while
// it is not Up (RFC 5880 6.8.3): an idle or failed peer costs one packet
// a second.
const slowTx = time.Second

// Config is one session's parameters.
type Config struct {
	// LocalDiscr is bfd.LocalDiscr: nonzero and unique among the
	// system's sessions (the runner allocates it).
	LocalDiscr uint32
	// DesiredMinTx is the interval at which we want to send once Up;
	// while not Up at least one second is advertised and used.
	DesiredMinTx time.Duration
	// RequiredMinRx is the least interval at which we can receive. Zero
	// asks the peer to send nothing periodically.
	RequiredMinRx time.Duration
	// DetectMult is bfd.DetectMult, 1..255.
	DetectMult uint8
	// Passive is the passive role (RFC 5880 6.1): send nothing until the
	// peer has been heard.
	Passive bool
	// Rand is the jitter's source; nil draws from math/rand/v2's
	// top-level functions. Tests pass a seeded one.
	Rand rand.Source
}

// Validate reports what makes c unusable.
func (c *Config) Validate() error {
	var errs []error
	if c.LocalDiscr == 0 {
		errs = append(errs, errors.New("local discriminator 0 is reserved (RFC 5880 6.8.1)"))
	}
	if c.DesiredMinTx < time.Microsecond || c.DesiredMinTx/time.Microsecond > 1<<32-1 {
		errs = append(errs, fmt.Errorf("desired min TX %s, want 1µs..4294s", c.DesiredMinTx))
	}
	if c.RequiredMinRx < 0 || c.RequiredMinRx/time.Microsecond > 1<<32-1 {
		errs = append(errs, fmt.Errorf("required min RX %s, want 0..4294s", c.RequiredMinRx))
	}
	if c.DetectMult == 0 {
		errs = append(errs, errors.New("detect multiplier 0, want 1..255"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("BFD session %d: %w", c.LocalDiscr, err)
	}
	return nil
}

// Event is an input to Session.Step.
type Event interface{ isEvent() }

// Events.
type (
	// SetPassive changes the role (RFC 5880 6.1): a runner answers a
	// peer that opened a session passively, and turns active when it
	// starts to watch that peer itself, so that a session the peer let go
	// Down comes back without waiting for the peer.
	SetPassive struct{ Passive bool }
	// Start begins transmission; a new Session sends nothing before it.
	Start struct{}
	// TimerFired only runs the timers; any Step does that first.
	TimerFired struct{}
	// Received is a packet from the session's peer that passed Parse.
	Received struct{ Packet *Packet }
	// SetAdminDown takes the session administratively down (RFC 5880
	// 6.8.16) with the given diagnostic (DiagAdminDown if none).
	SetAdminDown struct{ Diag Diag }
	// SetAdminUp returns an AdminDown session to Down.
	SetAdminUp struct{}
	// SetTimers changes DesiredMinTx, RequiredMinRx and DetectMult; the
	// peer learns them by a Poll Sequence (RFC 5880 6.8.3).
	SetTimers struct {
		DesiredMinTx, RequiredMinRx time.Duration
		DetectMult                  uint8
	}
)

func (Start) isEvent()        {}
func (TimerFired) isEvent()   {}
func (Received) isEvent()     {}
func (SetAdminDown) isEvent() {}
func (SetAdminUp) isEvent()   {}
func (SetTimers) isEvent()    {}
func (SetPassive) isEvent()   {}

// Action is an output of Step for the caller to perform, in order.
type Action interface{ isAction() }

// Actions.
type (
	// Send asks for Packet to be sent to the peer.
	Send struct{ Packet Packet }
	// Transition reports a state change.
	Transition struct {
		From, To State
		Diag     Diag
		At       time.Time
	}
	// Dropped reports a received packet the session discarded.
	Dropped struct{ Reason DropReason }
)

func (Send) isAction()       {}
func (Transition) isAction() {}
func (Dropped) isAction()    {}

// timers is a pair of our advertised intervals.
type timers struct{ tx, rx time.Duration }

// Session is one BFD session's state machine (RFC 5880 6.8), the
// variables named as the RFC's bfd.X. It does no I/O and reads no clock:
// the caller passes the time to Step, performs the returned actions, and
// calls Step again by NextDeadline. It is not safe for concurrent use.
type Session struct {
	cfg Config
	rng *rand.Rand

	state       State
	diag        Diag
	remoteDiscr uint32
	remoteState State
	// remoteMinRx is bfd.RemoteMinRxInterval, initially 1 µs (6.8.1) so
	// that we send at our own rate until the peer says otherwise.
	remoteMinRx  time.Duration
	remoteMinTx  time.Duration // the peer's last Desired Min TX
	remoteMult   uint8
	remoteDemand bool
	started      bool
	heard        bool // remote values above are from a packet
	detectDeadln time.Time
	txDeadline   time.Time
	polling      bool
	pollSent     timers // what the running Poll Sequence carries
	acked        timers // what the peer has confirmed (or been told outside Up)
}

// New returns a Session in Down for a validated copy of cfg; Start
// begins transmission.
func New(cfg Config) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	src := cfg.Rand
	if src == nil {
		src = rand.NewPCG(rand.Uint64(), rand.Uint64())
	}
	s := &Session{cfg: cfg, rng: rand.New(src), state: Down, remoteState: Down, remoteMinRx: time.Microsecond}
	s.acked = s.advertised()
	return s, nil
}

// State returns bfd.SessionState.
func (s *Session) State() State { return s.state }

// LocalDiag returns bfd.LocalDiag.
func (s *Session) LocalDiag() Diag { return s.diag }

// RemoteDiscr returns bfd.RemoteDiscr, zero until the peer is heard and
// again after a Detection Time without its packets.
func (s *Session) RemoteDiscr() uint32 { return s.remoteDiscr }

// RemoteState returns bfd.RemoteSessionState.
func (s *Session) RemoteState() State { return s.remoteState }

// Polling says whether a Poll Sequence is under way.
func (s *Session) Polling() bool { return s.polling }

// DetectionDeadline returns when the session times out if nothing
// arrives; zero when the timer does not run.
func (s *Session) DetectionDeadline() time.Time { return s.detectDeadln }

// NextDeadline returns when Step must next be called even if nothing
// arrives; zero when no timer runs.
func (s *Session) NextDeadline() time.Time {
	switch {
	case s.txDeadline.IsZero():
		return s.detectDeadln
	case s.detectDeadln.IsZero() || s.txDeadline.Before(s.detectDeadln):
		return s.txDeadline
	}
	return s.detectDeadln
}

// advertised is bfd.DesiredMinTxInterval and bfd.RequiredMinRxInterval
// now: at least a second of TX while not Up (RFC 5880 6.8.3).
func (s *Session) advertised() timers {
	t := timers{tx: s.cfg.DesiredMinTx, rx: s.cfg.RequiredMinRx}
	if s.state != Up {
		t.tx = max(t.tx, slowTx)
	}
	return t
}

// sent is what our packets carry: a running Poll Sequence's values, so
// that its Final confirms exactly them, else the advertised ones.
func (s *Session) sent() timers {
	if s.polling {
		return s.pollSent
	}
	return s.advertised()
}

// effective is what our own timing uses (RFC 5880 6.8.3): a lower TX
// interval or a higher RX interval at once, the other way only once the
// peer has confirmed it, so the peer never waits for packets slower than
// it was told of, nor sends slower than our detection expects.
func (s *Session) effective() timers {
	a := s.advertised()
	return timers{tx: min(a.tx, s.acked.tx), rx: max(a.rx, s.acked.rx)}
}

// TxInterval is the transmit interval before jitter (RFC 5880 6.8.7):
// the larger of our Desired Min TX and the peer's Required Min RX; zero
// when the peer asked for no periodic packets.
func (s *Session) TxInterval() time.Duration {
	if s.remoteMinRx == 0 {
		return 0
	}
	return max(s.effective().tx, s.remoteMinRx)
}

// DetectionTime is RFC 5880 6.8.4's Detection Time in asynchronous mode:
// the peer's Detect Mult times the larger of our Required Min RX and the
// peer's last Desired Min TX. Zero before the peer is heard.
func (s *Session) DetectionTime() time.Duration {
	if !s.heard {
		return 0
	}
	return time.Duration(s.remoteMult) * s.PeerInterval()
}

// PeerInterval is the interval the peer's packets are expected at, the
// larger of our Required Min RX and its last Desired Min TX: a Detection
// Time is Detect Mult of them. Zero before the peer is heard.
func (s *Session) PeerInterval() time.Duration {
	if !s.heard {
		return 0
	}
	return max(s.effective().rx, s.remoteMinTx)
}

// jittered is interval less a random 0-25% (RFC 5880 6.8.7), or 10-25%
// with a Detect Mult of 1, so that one late packet cannot alone expire the
// peer's detection time.
func (s *Session) jittered(interval time.Duration) time.Duration {
	lo, hi := 0.75, 1.0
	if s.cfg.DetectMult == 1 {
		hi = 0.9
	}
	return time.Duration(float64(interval) * (lo + (hi-lo)*s.rng.Float64()))
}

// step collects one Step's actions.
type step struct {
	s   *Session
	now time.Time
	out []Action
	// send: a packet is due at the end of the step; final: it answers a
	// Poll. One packet carries both.
	send, final bool
}

func (st *step) do(a Action) { st.out = append(st.out, a) }

func (st *step) to(to State, d Diag) {
	s := st.s
	from := s.state
	s.state, s.diag = to, d
	if to != Up {
		// A Poll Sequence for timers of an Up session means nothing once
		// it is down; what we now advertise applies at once.
		s.polling = false
		s.acked = s.advertised()
	} else {
		st.timersChanged()
	}
	st.do(Transition{From: from, To: to, Diag: d, At: st.now})
	// Tell the peer at once rather than at the next periodic packet.
	st.send = true
}

// Step runs the timers due at now, then handles ev (nil is TimerFired),
// and returns what the caller must do, in order.
func (s *Session) Step(now time.Time, ev Event) []Action {
	st := &step{s: s, now: now}
	if !s.detectDeadln.IsZero() && !now.Before(s.detectDeadln) {
		st.detectionExpired()
	}
	periodic := !s.txDeadline.IsZero() && !now.Before(s.txDeadline)
	switch e := ev.(type) {
	case Start:
		if !s.started {
			s.started = true
			st.send = true
		}
	case Received:
		st.receive(e.Packet)
	case SetAdminDown:
		if s.state != AdminDown {
			d := e.Diag
			if d == DiagNone {
				d = DiagAdminDown
			}
			s.detectDeadln = time.Time{}
			st.to(AdminDown, d)
		}
	case SetAdminUp:
		if s.state == AdminDown {
			st.to(Down, DiagNone)
		}
	case SetTimers:
		st.setTimers(e)
	case SetPassive:
		if s.cfg.Passive != e.Passive {
			s.cfg.Passive = e.Passive
			// An active session that was silent starts sending now rather
			// than at a peer's packet that may never come.
			st.send = !e.Passive && s.txDeadline.IsZero()
		}
	}
	if st.send || st.final || periodic {
		st.transmit()
	}
	return st.out
}

// detectionExpired is RFC 5880 6.8.4 and 6.8.1: the peer was silent for
// a Detection Time.
func (st *step) detectionExpired() {
	s := st.s
	s.detectDeadln = time.Time{}
	s.remoteDiscr = 0
	s.remoteState = Down
	s.remoteDemand = false
	if s.state == Init || s.state == Up {
		st.to(Down, DiagControlDetectExpired)
	}
}

// receive is RFC 5880 6.8.6 from "If the A bit is set" on, for a packet
// that Parse accepted and the caller matched to this session.
func (st *step) receive(p *Packet) {
	s := st.s
	if p == nil {
		return
	}
	if s.state == AdminDown {
		st.do(Dropped{Reason: DropAdminDown})
		return
	}
	s.remoteDiscr = p.MyDiscr
	s.remoteState = p.State
	oldRemoteMinRx, oldDemand := s.remoteMinRx, s.remoteDemand
	s.remoteDemand = p.Demand
	s.remoteMinRx = p.RequiredMinRx
	s.remoteMinTx = p.DesiredMinTx
	s.remoteMult = p.DetectMult
	s.heard = true
	if p.Final && s.polling {
		// The Final confirms what the Poll Sequence carried; a change
		// made meanwhile needs a Poll Sequence of its own (6.5: one at a
		// time).
		s.acked = s.pollSent
		s.polling = false
		if s.advertised() != s.acked {
			st.startPoll()
		}
	}
	s.detectDeadln = st.now.Add(s.DetectionTime())

	switch {
	case p.State == AdminDown:
		if s.state != Down {
			st.to(Down, DiagNeighborDown)
		}
		// A peer going administratively down is stopping (lvsha's
		// graceful stop, a session removed): address it by Your
		// Discriminator zero, matched by its address, from now on. Kept,
		// its discriminator would outlive it: the peer back as a new
		// process drops every packet naming the old one (6.8.6), and
		// waiting for its own packets deadlocks with a peer that only
		// answers; only a Detection Time at the one-second rate of a
		// session not Up (five seconds) would clear it. A peer that comes
		// back Up itself goes through Down, where a zero Your
		// Discriminator reaches it by address (single hop, 6.3).
		s.remoteDiscr = 0
	case s.state == Down:
		switch p.State {
		case Down:
			st.to(Init, s.diag)
		case Init:
			st.to(Up, DiagNone)
		}
	case s.state == Init:
		if p.State == Init || p.State == Up {
			st.to(Up, DiagNone)
		}
	case s.state == Up:
		if p.State == Down {
			st.to(Down, DiagNeighborDown)
		}
	}
	if p.Poll {
		// Answer at once, whatever the transmit timer (6.8.7).
		st.final = true
	}
	if (s.remoteMinRx != oldRemoteMinRx || s.remoteDemand != oldDemand) && !st.send && !st.final {
		// A new rate asked for applies from now, not from a packet
		// scheduled at the old one; Demand mode stops or resumes it.
		st.schedule()
	}
}

// timersChanged starts a Poll Sequence when what we advertise differs
// from what the peer has confirmed (RFC 5880 6.8.3); during one, the
// Final's handling starts the next.
func (st *step) timersChanged() {
	s := st.s
	if !s.polling && s.advertised() != s.acked {
		st.startPoll()
	}
}

func (st *step) startPoll() {
	s := st.s
	s.polling = true
	s.pollSent = s.advertised()
	st.send = true
}

func (st *step) setTimers(e SetTimers) {
	s := st.s
	cfg := s.cfg
	cfg.DesiredMinTx, cfg.RequiredMinRx, cfg.DetectMult = e.DesiredMinTx, e.RequiredMinRx, e.DetectMult
	if cfg.Validate() != nil {
		return
	}
	old := s.advertised()
	s.cfg = cfg
	if s.advertised() == old {
		return
	}
	if s.state != Up {
		// Outside Up the new values apply at once (6.8.3).
		s.acked = s.advertised()
	}
	// Any change is announced by a Poll Sequence (6.8.3), after the one
	// under way if there is one.
	if !s.polling {
		st.startPoll()
	}
}

// transmit sends a packet now, the Final to a Poll if one came, and
// schedules the next periodic one.
func (st *step) transmit() {
	s := st.s
	if !st.mayTransmit() {
		s.txDeadline = time.Time{}
		return
	}
	t := s.sent()
	st.do(Send{Packet: Packet{
		Diag:  s.diag,
		State: s.state,
		// A Final goes without P: a packet with both is ambiguous, and
		// the Poll rides on the next periodic packet.
		Poll:          s.polling && !st.final,
		Final:         st.final,
		DetectMult:    s.cfg.DetectMult,
		MyDiscr:       s.cfg.LocalDiscr,
		YourDiscr:     s.remoteDiscr,
		DesiredMinTx:  t.tx,
		RequiredMinRx: t.rx,
	}})
	st.schedule()
}

// schedule sets the next periodic transmission (RFC 5880 6.8.7): none
// when the peer asks for none, or when it runs Demand mode and both
// sides are Up.
func (st *step) schedule() {
	s := st.s
	iv := s.TxInterval()
	if !st.mayTransmit() || iv == 0 || (s.remoteDemand && s.state == Up && s.remoteState == Up) {
		s.txDeadline = time.Time{}
		return
	}
	s.txDeadline = st.now.Add(s.jittered(iv))
}

// mayTransmit: after Start, and in the passive role only once the peer
// has been heard (RFC 5880 6.1 forbids beginning, not going on): a
// passive end whose peer fell silent still says Down, so that a peer that
// was only stalled learns on waking that the session failed on our side,
// by our word, rather than from our silence, which it could not tell
// from our death.
func (st *step) mayTransmit() bool {
	return st.s.started && !(st.s.cfg.Passive && !st.s.heard)
}
