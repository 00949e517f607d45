package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// State is a VRRP instance's state (RFC 5798 6.4), plus Fault (the
// instance cannot serve: see FaultDetected) and Stopping (lvsha's
// graceful handover).
type State uint8

// States.
const (
	// Initialize is before Start and after a completed Shutdown.
	Initialize State = iota
	Backup
	Master
	// Fault holds no VIPs and ignores adverts until FaultCleared.
	Fault
	// Stopping is a master that resigned (sent priority 0) but keeps its
	// VIPs until it sees the new master's advert or StopWait passes, so
	// clients are never left without a holder during the handover.
	Stopping
)

func (s State) String() string {
	switch s {
	case Initialize:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	case Stopping:
		return "STOPPING"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Reason says why a transition happened.
type Reason string

// Transition reasons.
const (
	ReasonStartup         Reason = "startup"         // Start, not the address owner
	ReasonOwner           Reason = "address owner"   // Start (or recovery) at priority 255
	ReasonMasterDown      Reason = "master down"     // Master_Down_Timer fired
	ReasonHigherPriority  Reason = "higher priority" // a master saw a higher-priority advert
	ReasonHigherAddress   Reason = "equal priority, higher address"
	ReasonShutdown        Reason = "shutdown"
	ReasonNewMaster       Reason = "new master seen"   // Stopping ended by the successor's advert
	ReasonStopWaitExpired Reason = "no successor seen" // Stopping ended by StopWait
	ReasonFault           Reason = "fault"
	ReasonRecovered       Reason = "fault cleared"
	ReasonSyncGroup       Reason = "sync group"
)

// ReasonBFDDown is MasterDown's: the BFD session with the master failed.
const ReasonBFDDown Reason = "master down (BFD)"

// ReasonYield is Yield's: another master of the instance keeps master.
const ReasonYield Reason = "split brain: yielded"

// Config is one instance's VRRP parameters. The zero value of every
// optional field is the usual choice.
type Config struct {
	VRID uint8
	// Priority is 1..255; 255 is the address owner, master at once on
	// Start.
	Priority uint8
	// Version is 3 (RFC 5798) or 2 (RFC 3768, IPv4 only).
	Version int
	// AdvertInterval is the master's advert period: for version 3 a
	// multiple of 10ms in 10ms..40.95s, for version 2 whole seconds.
	AdvertInterval time.Duration
	// NoPreempt keeps a higher-priority backup from taking over from a
	// live lower-priority master; preemption is the RFC's default.
	NoPreempt bool
	// PreemptDelay holds preemption back for this long after Start, so a
	// director that just booted does not take the VIPs before its health
	// checks have run.
	PreemptDelay time.Duration
	// Accept is passed on in AddVIPs: whether the master accepts packets
	// addressed to the VIPs when it is not their owner (RFC 5798 6.1).
	Accept bool
	// Source is the address adverts are sent from (IPv4: the interface's
	// primary address; IPv6: its link-local address). It breaks ties
	// between equal priorities and identifies our own adverts.
	Source netip.Addr
	// Addrs are the virtual addresses, carried in every advert.
	Addrs []netip.Addr
	// AuthType and AuthData are VRRPv2's simple password (AuthSimple, the
	// password zero-padded to 8 bytes) or AuthNone.
	AuthType uint8
	AuthData [8]byte
	// StopWait bounds how long a resigning master keeps its VIPs waiting
	// for its successor's advert; zero means 3 advert intervals.
	StopWait time.Duration
	// AlignAdverts puts a master's adverts on a shared schedule, the
	// multiples of AdvertInterval since the Unix epoch (see firstTick);
	// otherwise each keeps the phase of its first advert.
	AlignAdverts bool
}

// Validate reports what makes c unusable.
func (c *Config) Validate() error {
	var errs []error
	if c.VRID == 0 {
		errs = append(errs, errors.New("VRID 0, want 1..255"))
	}
	if c.Priority == 0 {
		errs = append(errs, errors.New("priority 0 is reserved for a resigning master, want 1..255"))
	}
	if !c.Source.IsValid() || c.Source.Is4In6() {
		errs = append(errs, fmt.Errorf("source address %s is not a plain IPv4 or IPv6 address", c.Source))
	} else if err := checkAdvert(c.Advert(c.Priority), c.Source.Is4()); err != nil {
		errs = append(errs, err)
	}
	if c.PreemptDelay < 0 {
		errs = append(errs, fmt.Errorf("preempt delay %s is negative", c.PreemptDelay))
	}
	if c.StopWait < 0 {
		errs = append(errs, fmt.Errorf("stop wait %s is negative", c.StopWait))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("VRRP instance VRID %d: %w", c.VRID, err)
	}
	return nil
}

// Advert is the advert this instance sends at priority.
func (c *Config) Advert(priority uint8) *Advert {
	return &Advert{
		Version:  c.Version,
		VRID:     c.VRID,
		Priority: priority,
		Interval: c.AdvertInterval,
		Addrs:    c.Addrs,
		AuthType: c.AuthType,
		AuthData: c.AuthData,
	}
}

// Filter checks a parsed advert from src against this instance (RFC 5798
// 7.1; RFC 3768 7.1, which also requires the interval and the
// authentication to match ours). The address list is not compared: the
// RFCs allow accepting a mismatch, and keepalived does.
func (c *Config) Filter(a *Advert, src netip.Addr) DropReason {
	switch {
	case src.Unmap().WithZone("") == c.Source:
		return DropOwn
	case a.VRID != c.VRID:
		return DropVRID
	case a.Version != c.Version:
		return DropVersion
	case len(a.Addrs) == 0 || a.Addrs[0].Is4() != c.Source.Is4():
		return DropFamily
	case c.Version == 2 && a.Interval != c.AdvertInterval:
		return DropInterval
	case a.AuthType != c.AuthType || (a.AuthType == AuthSimple && a.AuthData != c.AuthData):
		return DropAuth
	}
	return DropNone
}

// SkewTime is RFC 5798 6.1's Skew_Time,
// ((256 - Priority) * Master_Adver_Interval) / 256, for version 3, and
// RFC 3768 6.1's (256 - Priority) / 256 seconds for version 2. It is kept
// to the nanosecond rather than truncated to whole centiseconds, which
// would only blur the order in which backups of close priorities time out.
func SkewTime(version int, priority uint8, masterAdverInterval time.Duration) time.Duration {
	if version == 2 {
		return time.Duration(256-int(priority)) * time.Second / 256
	}
	return time.Duration(256-int(priority)) * masterAdverInterval / 256
}

// MasterDownInterval is RFC 5798 6.1's Master_Down_Interval,
// 3 * Master_Adver_Interval + Skew_Time (RFC 3768 6.1 with
// Advertisement_Interval for version 2).
func MasterDownInterval(version int, priority uint8, masterAdverInterval time.Duration) time.Duration {
	return 3*masterAdverInterval + SkewTime(version, priority, masterAdverInterval)
}

// Event is an input to Machine.Step.
type Event interface{ isEvent() }

// Events.
type (
	// Start is RFC 5798's Startup event.
	Start struct{}
	// Shutdown is RFC 5798's Shutdown event. A master resigns with a
	// priority-0 advert and enters Stopping; a second Shutdown while
	// Stopping releases the VIPs at once.
	Shutdown struct{}
	// AdvertReceived is a parsed advert and its IP source.
	AdvertReceived struct {
		Advert *Advert
		Src    netip.Addr
	}
	// TimerFired only runs the timers; any Step does that first.
	TimerFired struct{}
	// FaultDetected and FaultCleared set and clear the machine's one
	// fault flag. It has several causes, merged by the caller before they
	// reach the machine (vrrp/instance sends the OR of its VIP holder's
	// failure and tracking's verdict from vrrp/group, which itself ORs
	// tracked interfaces without a weight down, the links' state unknown
	// for want of a subscription, and track_execs without a weight
	// failing), so that one cause's recovery never clears another's fault.
	FaultDetected struct{}
	FaultCleared  struct{}
	// SetPriority changes the effective priority: the configured one
	// lowered by tracking's weights (tracked virtual servers with no real
	// server up, weighted interfaces down, weighted track_execs failing),
	// summed by vrrp/group's tracking and passed on unchanged by
	// vrrp/instance. 0 is raised to 1: only a resigning master sends 0.
	SetPriority struct{ Priority uint8 }
	// GroupGate carries the sync group's verdict (GroupTarget): while
	// AllowMaster is false the instance may not be master.
	GroupGate struct{ AllowMaster bool }
	// HoldPreempt holds preemption until Until, as PreemptDelay does
	// after Start: a backup hearing a lower-priority master keeps
	// following it, but still takes over when that master goes silent or
	// resigns. The IPVS connection sync sends it while a returning
	// director learns the connections made through the master it would
	// preempt. Each replaces the last; a zero Until lifts the hold.
	HoldPreempt struct{ Until time.Time }
	// MasterDown says Peer failed by other means than its adverts' silence
	// (its BFD session went Down): a backup whose master is Peer acts as
	// if its Master_Down_Timer had expired (draft-ietf-rtgwg-vrrp-bfd-p2p
	// 5). Any other state, or another master, ignores it. If Peer was
	// alive after all, its next advert (of a higher priority) takes
	// master back by RFC 5798's own rules; the machine reports that with
	// MasterAlive.
	//
	// LastHeard, if set, is when BFD last heard Peer, and Interval the
	// interval its BFD packets came at. A master whose advert came more
	// than Interval after LastHeard is alive: it would have sent a BFD
	// packet by then, so the BFD path failed, and the machine stays
	// backup (and reports MasterAlive) rather than take master only to
	// give it back. An advert within Interval of LastHeard proves
	// nothing: a master killed just after sending it went silent to BFD
	// and VRRP alike.
	MasterDown struct {
		Peer      netip.Addr
		LastHeard time.Time
		Interval  time.Duration
	}
	// Yield says another master of this instance, known by other means
	// than its adverts (the cluster's gossip shows two masters: a split
	// brain, the adverts lost between them), keeps master: To is its
	// advert source. A master gives up master for Backup, removing its
	// VIPs, as if it had heard To's advert, and its Master_Down_Timer
	// waits (without it the silence that caused the split brain would
	// make it master again) until an advert arrives: from then RFC
	// 5798's rules apply as usual. A Yield whose To is invalid lifts the
	// wait (the other master is gone or no longer master), restarting
	// the Master_Down_Timer. Any other state ignores a Yield: a backup
	// already follows a master by its adverts.
	Yield struct{ To netip.Addr }
)

func (Start) isEvent()          {}
func (Shutdown) isEvent()       {}
func (AdvertReceived) isEvent() {}
func (TimerFired) isEvent()     {}
func (FaultDetected) isEvent()  {}
func (FaultCleared) isEvent()   {}
func (SetPriority) isEvent()    {}
func (GroupGate) isEvent()      {}
func (HoldPreempt) isEvent()    {}
func (MasterDown) isEvent()     {}
func (Yield) isEvent()          {}

// Action is an output of Machine.Step for the caller to perform, in order.
type Action interface{ isAction() }

// Actions.
type (
	// SendAdvert asks for Config.Advert(Priority) to be sent.
	SendAdvert struct{ Priority uint8 }
	// AddVIPs asks for the VIPs to be added and announced (gratuitous ARP,
	// unsolicited neighbour advertisements).
	AddVIPs struct{ Accept bool }
	// RemoveVIPs asks for the VIPs to be removed.
	RemoveVIPs struct{}
	// Dropped reports an advert refused by Config.Filter, to be counted.
	Dropped struct{ Reason DropReason }
	// Transition reports a state change, to be published.
	Transition struct {
		From, To State
		Reason   Reason
		At       time.Time
	}
	// MasterAlive reports that Peer, which a MasterDown declared dead,
	// is alive: its advert came more than a BFD interval after BFD last
	// heard it (the MasterDown is then ignored), or within Master_Down_Interval of the takeover.
	// The BFD session failed, not the master. Reported once per
	// MasterDown, to be counted.
	MasterAlive struct{ Peer netip.Addr }
)

func (SendAdvert) isAction() {}
func (AddVIPs) isAction()    {}
func (RemoveVIPs) isAction() {}
func (Dropped) isAction()    {}
func (Transition) isAction() {}

func (MasterAlive) isAction() {}

// Machine is one instance's state machine. It does no I/O and reads no
// clock: the caller passes the time to Step, performs the returned
// actions, and calls Step again by NextDeadline. It is not safe for
// concurrent use; one goroutine owns it.
type Machine struct {
	cfg   Config
	state State
	prio  uint8
	// masterAdverInterval is RFC 5798's Master_Adver_Interval: ours until
	// a version-3 advert teaches us the master's.
	masterAdverInterval time.Duration
	// deadline is the one timer of the current state: Adver_Timer in
	// Master, Master_Down_Timer in Backup, StopWait in Stopping. Zero
	// means none.
	deadline  time.Time
	preemptAt time.Time
	// holdUntil is HoldPreempt's.
	holdUntil time.Time
	running   bool
	// faulted is the caller's fault (FaultDetected until FaultCleared),
	// remembered outside Fault too: a Start while faulted enters Fault.
	faulted bool
	// gated is the sync group forbidding Master; wantMaster is a gated
	// backup whose own judgement says Master.
	gated, wantMaster bool
	// master is the address of the master a backup follows: the source
	// of the last advert that reset its Master_Down_Timer (at
	// masterHeard); invalid elsewhere and before one is heard.
	master      netip.Addr
	masterHeard time.Time
	// deadPeer is the master a MasterDown declared dead, until
	// deadUntil: an advert from it before then is a MasterAlive.
	deadPeer  netip.Addr
	deadUntil time.Time
	// yieldedTo is the master a Yield gave master up to, while a backup
	// waits for adverts with no Master_Down_Timer; invalid otherwise.
	yieldedTo netip.Addr
}

// New returns a Machine in Initialize for a validated copy of cfg.
func New(cfg Config) (*Machine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Addrs = append([]netip.Addr(nil), cfg.Addrs...)
	if cfg.StopWait == 0 {
		cfg.StopWait = 3 * cfg.AdvertInterval
	}
	return &Machine{cfg: cfg, prio: cfg.Priority, masterAdverInterval: cfg.AdvertInterval}, nil
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Reconfigure replaces the parameters of a running machine (a reload)
// without leaving its state: a master stays master, a backup keeps the
// master it heard. VRID and Source name the instance on the wire and may
// not change; a new one is a new instance. A master whose adverts change
// (interval, version, addresses, password) advertises at once, so backups
// learn the new values before their timers need them. The effective
// priority is SetPriority's, as before.
func (m *Machine) Reconfigure(now time.Time, cfg Config) ([]Action, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.VRID != m.cfg.VRID || cfg.Source != m.cfg.Source {
		return nil, fmt.Errorf("VRRP instance VRID %d from %s: VRID and source address cannot change in place (now VRID %d from %s)",
			m.cfg.VRID, m.cfg.Source, cfg.VRID, cfg.Source)
	}
	cfg.Addrs = append([]netip.Addr(nil), cfg.Addrs...)
	if cfg.StopWait == 0 {
		cfg.StopWait = 3 * cfg.AdvertInterval
	}
	old := m.cfg
	m.cfg = cfg
	s := &step{m: m, now: now}
	if m.running {
		// The delay still counts from Start, not from the reload.
		m.preemptAt = m.preemptAt.Add(cfg.PreemptDelay - old.PreemptDelay)
	}
	advertChanged := old.AdvertInterval != cfg.AdvertInterval || old.Version != cfg.Version ||
		!slices.Equal(old.Addrs, cfg.Addrs) || old.AuthType != cfg.AuthType || old.AuthData != cfg.AuthData
	switch {
	case m.state == Master && advertChanged:
		s.do(SendAdvert{Priority: m.prio})
		m.deadline = m.firstTick(now)
	case m.state == Backup && cfg.Version == 2:
		// Version 2 never learns the master's interval from its adverts.
		m.masterAdverInterval = cfg.AdvertInterval
	}
	return s.out, nil
}

// Priority returns the effective priority: the last SetPriority's, and
// before any the one configured at New (Reconfigure leaves it alone, so a
// reload's new base priority arrives as a SetPriority from tracking).
func (m *Machine) Priority() uint8 { return m.prio }

// MasterAddr returns the address of the master a backup follows (the
// source of the adverts that keep it backup), invalid in other states or
// before it has heard one: what a BFD session should watch.
func (m *Machine) MasterAddr() netip.Addr {
	if m.state != Backup {
		return netip.Addr{}
	}
	return m.master
}

// YieldedTo returns the master a Yield gave master up to while the
// backup waits for an advert (Yield), invalid otherwise.
func (m *Machine) YieldedTo() netip.Addr { return m.yieldedTo }

// MasterAdverInterval returns Master_Adver_Interval as last learned.
func (m *Machine) MasterAdverInterval() time.Duration { return m.masterAdverInterval }

// NextDeadline returns when Step must next be called even if nothing
// arrives; zero when no timer runs.
func (m *Machine) NextDeadline() time.Time { return m.deadline }

// Wants is the state the instance would take on its own, which a sync
// group combines with GroupTarget: a gated backup that would have taken
// over wants Master; a stopping or stopped instance wants Initialize.
func (m *Machine) Wants() State {
	switch {
	case m.state == Backup && m.wantMaster:
		return Master
	case m.state == Stopping:
		return Initialize
	}
	return m.state
}

// masterDownInterval is the current Master_Down_Interval.
func (m *Machine) masterDownInterval() time.Duration {
	return MasterDownInterval(m.cfg.Version, m.prio, m.masterAdverInterval)
}

// step collects the actions of one Step.
type step struct {
	m   *Machine
	now time.Time
	out []Action
}

func (s *step) do(a ...Action) { s.out = append(s.out, a...) }

func (s *step) to(st State, r Reason) {
	s.do(Transition{From: s.m.state, To: st, Reason: r, At: s.now})
	s.m.state = st
}

// Step runs the timers due at now, then handles ev (nil is TimerFired),
// and returns what the caller must do, in order. Timers are run first so
// that an event handled late sees the state the timers already decided.
func (m *Machine) Step(now time.Time, ev Event) []Action {
	s := &step{m: m, now: now}
	if !m.deadline.IsZero() && !now.Before(m.deadline) {
		s.timer()
	}
	switch e := ev.(type) {
	case Start:
		s.start()
	case Shutdown:
		s.shutdown()
	case AdvertReceived:
		s.advert(e.Advert, e.Src)
	case FaultDetected:
		s.fault()
	case FaultCleared:
		m.faulted = false
		if m.state == Fault {
			s.startup(ReasonRecovered)
		}
	case SetPriority:
		m.prio = max(e.Priority, 1)
	case GroupGate:
		s.gate(e.AllowMaster)
	case HoldPreempt:
		m.holdUntil = e.Until
	case MasterDown:
		s.masterDown(e)
	case Yield:
		s.yield(e.To)
	}
	return s.out
}

// yield gives master up to another master the caller learned of by
// other means than adverts (Yield), or lifts that.
func (s *step) yield(to netip.Addr) {
	m := s.m
	switch {
	case !to.IsValid():
		if m.yieldedTo.IsValid() && m.state == Backup {
			m.yieldedTo = netip.Addr{}
			m.deadline = s.now.Add(m.masterDownInterval())
		}
	case m.state == Master:
		// The other master is the one this backup follows, though not by
		// its adverts (masterHeard stays zero): a BFD session with it
		// may still tell of its death sooner than gossip.
		m.wantMaster = false
		m.yieldedTo = to.Unmap().WithZone("")
		m.master, m.masterHeard = m.yieldedTo, time.Time{}
		s.toBackup(ReasonYield)
		m.deadline = time.Time{}
	case m.state == Backup && m.yieldedTo.IsValid():
		m.yieldedTo = to.Unmap().WithZone("")
		m.master = m.yieldedTo
	}
}

// masterDown is the Master_Down_Timer's expiry brought forward by BFD
// (draft-ietf-rtgwg-vrrp-bfd-p2p 5), for a backup of peer only: a stale
// report about a master since replaced must not depose the new one.
func (s *step) masterDown(e MasterDown) {
	m := s.m
	if m.state != Backup || !m.master.IsValid() || m.master != e.Peer.Unmap().WithZone("") || m.wantMaster {
		return
	}
	if !e.LastHeard.IsZero() && m.masterHeard.After(e.LastHeard.Add(e.Interval)) {
		s.do(MasterAlive{Peer: m.master})
		return
	}
	m.deadPeer, m.deadUntil = m.master, s.now.Add(m.masterDownInterval())
	if m.gated {
		m.wantMaster = true
		m.deadline = time.Time{}
		return
	}
	s.becomeMaster(ReasonBFDDown)
}

func (s *step) timer() {
	m := s.m
	switch m.state {
	case Master: // RFC 5798 6.4.3 (600)
		s.do(SendAdvert{Priority: m.prio})
		m.deadline = nextAdvert(m.deadline, s.now, m.cfg.AdvertInterval)
	case Backup: // RFC 5798 6.4.2 (330)
		if m.gated {
			m.wantMaster = true
			m.deadline = time.Time{}
			return
		}
		s.becomeMaster(ReasonMasterDown)
	case Stopping:
		s.release(ReasonStopWaitExpired)
	default:
		m.deadline = time.Time{}
	}
}

// firstTick is when a master's next advert goes out after one it sent at
// now off schedule (it became master, or answered a resignation or a
// reload at once): an interval later, or with AlignAdverts the next
// multiple of the interval since the Unix epoch, by the wall clock, at
// most one interval away as RFC 5798 wants. Aligned, every master of one
// interval on a director, and on directors whose clocks agree, keeps the
// same phase (nextAdvert keeps it), so the process wakes once per
// interval for all of them rather than once per instance, and a backup
// reads their adverts in bursts. The advert this brings forward (by less
// than an interval) only resets backups' timers early.
func (m *Machine) firstTick(now time.Time) time.Time {
	interval := m.cfg.AdvertInterval
	if !m.cfg.AlignAdverts {
		return now.Add(interval)
	}
	phase := time.Duration(now.UnixNano() % int64(interval))
	if phase < 0 {
		phase += interval
	}
	return now.Add(interval - phase)
}

// nextAdvert is when the advert after the one due at due goes out, seen
// at now: one interval after due, not after now, so that adverts keep to
// their schedule instead of each being late by the delays before it
// (and a caller can keep the timer as a periodic one, which costs less to
// run). Slots that passed while nothing ran (a stopped process) are
// skipped, not sent in a burst.
func nextAdvert(due, now time.Time, interval time.Duration) time.Time {
	next := due.Add(interval)
	if next.After(now) {
		return next
	}
	return due.Add((now.Sub(due)/interval + 1) * interval)
}

func (s *step) start() {
	m := s.m
	if m.running {
		return
	}
	m.running = true
	m.preemptAt = s.now.Add(m.cfg.PreemptDelay)
	if m.state == Stopping {
		if !m.gated {
			// Still master and holding the VIPs: cancel the resignation,
			// and advertise at once so backups waiting out Skew_Time
			// stand down.
			s.do(SendAdvert{Priority: m.prio})
			m.deadline = m.firstTick(s.now)
			s.to(Master, ReasonStartup)
			return
		}
		s.do(RemoveVIPs{})
	}
	if m.faulted {
		s.to(Fault, ReasonFault)
		return
	}
	s.startup(ReasonStartup)
}

// startup is RFC 5798 6.4.1, also run when a fault clears.
func (s *step) startup(r Reason) {
	m := s.m
	if m.prio == 255 {
		if !m.gated {
			s.becomeMaster(ReasonOwner)
			return
		}
		m.wantMaster = true
	}
	m.masterAdverInterval = m.cfg.AdvertInterval
	m.master = netip.Addr{}
	m.yieldedTo = netip.Addr{}
	if !m.wantMaster {
		m.deadline = s.now.Add(m.masterDownInterval())
	}
	s.to(Backup, r)
}

func (s *step) becomeMaster(r Reason) {
	m := s.m
	m.wantMaster = false
	m.master = netip.Addr{}
	m.yieldedTo = netip.Addr{}
	s.do(SendAdvert{Priority: m.prio}, AddVIPs{Accept: m.cfg.Accept})
	m.deadline = m.firstTick(s.now)
	s.to(Master, r)
}

// toBackup leaves Master for Backup with a fresh Master_Down_Timer.
func (s *step) toBackup(r Reason) {
	m := s.m
	s.do(RemoveVIPs{})
	m.deadline = s.now.Add(m.masterDownInterval())
	s.to(Backup, r)
}

func (s *step) release(r Reason) {
	s.do(RemoveVIPs{})
	s.m.deadline = time.Time{}
	s.to(Initialize, r)
}

func (s *step) shutdown() {
	m := s.m
	m.running = false
	m.wantMaster = false
	m.yieldedTo = netip.Addr{}
	switch m.state {
	case Backup, Fault: // RFC 5798 6.4.2 (310)
		m.deadline = time.Time{}
		s.to(Initialize, ReasonShutdown)
	case Master: // RFC 5798 6.4.3 (615), but the VIPs stay until handover
		s.do(SendAdvert{Priority: 0})
		m.deadline = s.now.Add(m.cfg.StopWait)
		s.to(Stopping, ReasonShutdown)
	case Stopping:
		s.release(ReasonShutdown)
	}
}

func (s *step) fault() {
	m := s.m
	m.faulted = true
	m.wantMaster = false
	m.yieldedTo = netip.Addr{}
	switch m.state {
	case Backup:
		m.deadline = time.Time{}
		s.to(Fault, ReasonFault)
	case Master:
		// Resign so a backup takes over after Skew_Time rather than
		// Master_Down_Interval.
		s.do(SendAdvert{Priority: 0}, RemoveVIPs{})
		m.deadline = time.Time{}
		s.to(Fault, ReasonFault)
	case Stopping:
		s.release(ReasonFault)
	}
}

func (s *step) advert(a *Advert, src netip.Addr) {
	m := s.m
	if a == nil {
		return
	}
	if r := m.cfg.Filter(a, src); r != DropNone {
		s.do(Dropped{Reason: r})
		return
	}
	from := src.Unmap().WithZone("")
	if a.Priority > 0 && m.deadPeer.IsValid() && from == m.deadPeer {
		if s.now.Before(m.deadUntil) {
			s.do(MasterAlive{Peer: from})
		}
		m.deadPeer = netip.Addr{}
	}
	switch m.state {
	case Backup: // RFC 5798 6.4.2 (400)
		if m.yieldedTo.IsValid() {
			// Adverts are heard again: the wait a Yield began ends, and
			// the timer runs by the RFC's rules from here (an advert
			// this backup does not follow leaves it to expire).
			m.yieldedTo = netip.Addr{}
			m.deadline = s.now.Add(m.masterDownInterval())
		}
		if a.Priority == 0 {
			m.deadline = s.now.Add(SkewTime(m.cfg.Version, m.prio, m.masterAdverInterval))
			return
		}
		preempt := !m.cfg.NoPreempt && !s.now.Before(m.preemptAt) && !s.now.Before(m.holdUntil)
		if !preempt || a.Priority >= m.prio {
			m.learn(a)
			m.master, m.masterHeard = from, s.now
			m.wantMaster = false
			m.deadline = s.now.Add(m.masterDownInterval())
		}
	case Master: // RFC 5798 6.4.3 (635)
		if a.Priority == 0 {
			s.do(SendAdvert{Priority: m.prio})
			m.deadline = m.firstTick(s.now)
			return
		}
		// Two masters: the VIPs' neighbours may have our announcement
		// last. One more advert at our priority before we yield (beyond
		// the RFC, harmless to its routers, which ignore a lower
		// priority) tells the winner so, and a winner that re-announces
		// on a lower-priority master's advert (lvsha, keepalived's
		// garp_lower_prio_repeat) draws them back. Without it, when we
		// hear the winner before it hears us, it never learns there were
		// two of us, and the clients that took our announcement send to
		// us, no longer master, until their ARP entry expires (found by
		// TestChaosSoak after a partition healed: 20 s of lost traffic).
		switch {
		case a.Priority > m.prio:
			m.learn(a)
			m.master, m.masterHeard = from, s.now
			s.do(SendAdvert{Priority: m.prio})
			s.toBackup(ReasonHigherPriority)
		case a.Priority == m.prio && from.Compare(m.cfg.Source) > 0:
			m.learn(a)
			m.master, m.masterHeard = from, s.now
			s.do(SendAdvert{Priority: m.prio})
			s.toBackup(ReasonHigherAddress)
		}
	case Stopping:
		if a.Priority != 0 {
			s.release(ReasonNewMaster)
		}
	}
}

// learn takes Master_Adver_Interval from a version-3 advert (RFC 5798
// 6.4.2 (450), 6.4.3 (680)); version 2 intervals are equal by Filter.
func (m *Machine) learn(a *Advert) {
	if m.cfg.Version == 3 {
		m.masterAdverInterval = a.Interval
	}
}

func (s *step) gate(allow bool) {
	m := s.m
	m.gated = !allow
	switch {
	case m.gated && m.state == Master:
		// Resign at once so the peer's instance follows the rest of the
		// group after Skew_Time. Our own judgement has not changed, so we
		// still want Master and wait for the group to allow it.
		s.do(SendAdvert{Priority: 0})
		s.toBackup(ReasonSyncGroup)
		m.wantMaster = true
		m.deadline = time.Time{}
	case !m.gated && m.state == Backup && m.wantMaster:
		s.becomeMaster(ReasonSyncGroup)
	}
}

// GroupTarget is a sync group's verdict from its members' Wants: Fault
// when any member is in fault, Master only when every member wants
// Master, Backup otherwise. Members are then sent GroupGate{AllowMaster:
// target == Master}, so the group is master together or not at all; a
// member that is not running keeps the others from Master.
func GroupTarget(wants []State) State {
	if len(wants) == 0 {
		return Backup
	}
	all := true
	for _, w := range wants {
		if w == Fault {
			return Fault
		}
		all = all && w == Master
	}
	if all {
		return Master
	}
	return Backup
}

// GroupMember is a sync group's member as its coordinator sees it.
type GroupMember interface {
	// Wants is the member's own judgement (Machine.Wants).
	Wants() State
	// Gate delivers GroupGate{AllowMaster: allow} to the member.
	Gate(allow bool)
}

// SyncGroup coordinates one sync group: Settle sends every member the
// group's verdict (GroupTarget) as a GroupGate whenever it changes for
// that member. It is the one algorithm both where the machines step in
// place (the simulation) and where each runs on its own goroutine
// (vrrp/group, over running instances). It is not safe for concurrent
// use; one goroutine owns it.
type SyncGroup struct {
	members []GroupMember
	// sent is the gate each member was last sent; unknown before the
	// first Settle, so every member is told once.
	sent []gate
}

type gate uint8

const (
	gateUnknown gate = iota
	gateClosed
	gateOpen
)

// NewSyncGroup coordinates members.
func NewSyncGroup(members []GroupMember) *SyncGroup {
	return &SyncGroup{members: members, sent: make([]gate, len(members))}
}

// Settle gates the members until the verdict holds and returns it. A
// member that takes its gate at once (a machine stepped in place) can
// change its Wants and so the verdict: Settle repeats until a pass sends
// nothing. A member that takes it later (a running instance) changes its
// Wants after Settle returned: call Settle again then.
func (g *SyncGroup) Settle() State {
	wants := make([]State, len(g.members))
	var target State
	// Each pass either settles or moves a member towards Master or
	// Backup for good; the bound only guards against a future bug.
	for range len(g.members) + 2 {
		for i, mb := range g.members {
			wants[i] = mb.Wants()
		}
		target = GroupTarget(wants)
		want := gateClosed
		if target == Master {
			want = gateOpen
		}
		sent := false
		for i, mb := range g.members {
			if g.sent[i] != want {
				g.sent[i] = want
				mb.Gate(want == gateOpen)
				sent = true
			}
		}
		if !sent {
			break
		}
	}
	return target
}
