// Package runner drives BFD sessions (package bfd) with real timers over
// real sockets (bfd/transport): one receiving socket per local address,
// one sending socket per session, one goroutine owning every session.
// Sessions are given at Open and added or let go while it runs (a VRRP
// backup watches whichever master it hears); with Config.Accept it also
// answers peers that open sessions to it.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvsha/lvsha/alarm"
	"github.com/lvsha/lvsha/bfd"
	"github.com/lvsha/lvsha/bfd/transport"
)

// Peer is one session to run.
type Peer struct {
	Addr          netip.Addr
	DesiredMinTx  time.Duration
	RequiredMinRx time.Duration
	DetectMult    uint8
	Passive       bool
}

// Config is one local end and its sessions.
type Config struct {
	transport.Config
	Peers []Peer
	// Accept, if set, answers a peer that opens a session to us without
	// one added for it: a passive session with Accept's timers (its Addr
	// and Passive are ignored), up to MaxAccepted of them; the packets of
	// peers beyond that are dropped (bfd.DropAcceptLimit). A session let
	// go with Remove stays so too while the peer keeps it Up. Such a
	// session is let go acceptIdle after its peer's last packet unless it
	// is Up.
	Accept *Peer
	Logger *slog.Logger
}

// MaxAccepted bounds the sessions Accept opens, so that a flood of
// forged peers on the link costs a bounded number of sockets and of
// sessions to time: far more than the directors that share a link watch
// one another (each pair of directors has one session, whatever the
// number of instances).
const MaxAccepted = 64

// acceptIdle is how long a session nobody added stays after its last
// packet once it is not Up: longer than the peer's one-second slow
// transmission, so a peer still trying is not forgotten between packets.
const acceptIdle = 5 * time.Second

// Change is one session's state change, as published on Changes.
type Change struct {
	Peer     netip.Addr
	From, To bfd.State
	Diag     bfd.Diag
	// RemoteState is the peer's state as last heard: AdminDown when the
	// peer took the session down on purpose, which RFC 5882 3.2 says is
	// no failure of the path or the peer.
	RemoteState bfd.State
	At          time.Time
	// LastHeard is when the peer's last packet arrived (or the session
	// began, if none did).
	LastHeard time.Time
	// Interval is the interval the peer's packets were expected at
	// (bfd.Session.PeerInterval): the peer, had it lived, would have been
	// heard again within Interval of LastHeard.
	Interval time.Duration
}

// Status is a session's state as Status reports it.
type Status struct {
	Peer        netip.Addr
	State       bfd.State
	Diag        bfd.Diag
	LocalDiscr  uint32
	RemoteDiscr uint32
	// Added says the session was given at Open or by Add (and not
	// removed since); otherwise it answers a peer (Config.Accept).
	Added bool
	// DetectionTime is the session's Detection Time, zero before the peer
	// is heard.
	DetectionTime time.Duration
}

type session struct {
	peer   Peer
	m      *bfd.Session
	tx     *transport.Sender
	discr  uint32
	sendOK bool // the last send succeeded; a failure is logged once per run of them
	added  bool
	// heard is when the peer's last packet, or the session's creation.
	heard time.Time
}

// command is an Add, a Remove or a SetAccept for the loop.
type command struct {
	add    *Peer
	remove netip.Addr
	accept *Peer
	reply  chan error
}

// Runner runs the sessions of one Config.
type Runner struct {
	log     *slog.Logger
	tc      transport.Config
	accept  *Peer
	rx      *transport.Conn
	byDiscr map[uint32]*session
	byAddr  map[netip.Addr]*session
	changes chan Change
	cmds    chan command
	// done closes when Run returns; Add and Remove then fail.
	done chan struct{}
	// smu guards the sessions (byDiscr, byAddr, accept and each
	// session): the reader handles each packet as it reads it, under smu,
	// rather than hand it to Run's goroutine, which cost a wake-up of a
	// second thread per packet (a third of an idle director's CPU at
	// 100 packets a second). Run's goroutine runs the timers and commands.
	smu sync.Mutex
	// wakeAt is when Run's goroutine next wakes; a packet that brings a
	// deadline before it kicks it. Guarded by smu.
	wakeAt time.Time
	kick   chan struct{}
	// inflight counts packets the reader has read and not yet handled:
	// a stalled reader may hold one that the socket no longer shows.
	inflight atomic.Int64
	// refusing: the last peer that would have opened a session was
	// refused at MaxAccepted, and that was logged. Guarded by smu.
	refusing bool

	mu     sync.Mutex
	status map[netip.Addr]Status
	drops  map[bfd.DropReason]uint64
	// lost counts changes not published because Changes was full.
	lost uint64

	closeOnce sync.Once
	// clock wakes Run (see timer).
	clock alarm.Clock
}

// timer is Run's wake-up: an alarm on the runner's timerfd, or a Go
// timer where no timerfd can be made. At 100 packets a second a Go
// timer's expiry in an idle daemon cost three to five context switches
// (package alarm), and each session's Detection Time, moved later by
// every packet received, only is noted by an alarm.
type timer struct {
	a *alarm.Alarm
	t *time.Timer
}

func newTimer(c *alarm.Clock) timer {
	if a, err := c.NewAlarm(); err == nil {
		return timer{a: a}
	}
	return timer{t: time.NewTimer(time.Hour)}
}

func (t timer) set(at time.Time) {
	if t.a != nil {
		t.a.Set(at)
		return
	}
	t.t.Reset(time.Until(at))
}

func (t timer) c() <-chan time.Time {
	if t.a != nil {
		return t.a.C()
	}
	return t.t.C
}

func (t timer) stop() {
	if t.a != nil {
		t.a.Close()
		return
	}
	t.t.Stop()
}

// Open opens the sockets of cfg's sessions; it must run in the network
// namespace of cfg.Interface. Run them with Run, or release them with
// Close.
func Open(cfg Config) (*Runner, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rx, err := transport.Listen(cfg.Config)
	if err != nil {
		return nil, err
	}
	r := &Runner{
		log: log.With("local", cfg.Local), tc: cfg.Config, accept: cfg.Accept, rx: rx,
		byDiscr: map[uint32]*session{}, byAddr: map[netip.Addr]*session{},
		// Room for every session to change state many times while a
		// consumer is slow; beyond that changes are counted, never block.
		changes: make(chan Change, 256+8*len(cfg.Peers)),
		cmds:    make(chan command),
		done:    make(chan struct{}),
		kick:    make(chan struct{}, 1),
		status:  map[netip.Addr]Status{}, drops: map[bfd.DropReason]uint64{},
	}
	for _, p := range cfg.Peers {
		if _, err := r.add(p, true, time.Now()); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

func (r *Runner) add(p Peer, added bool, now time.Time) (*session, error) {
	if _, dup := r.byAddr[p.Addr]; dup || !p.Addr.IsValid() || p.Addr.Is4() != r.tc.Local.Is4() {
		return nil, fmt.Errorf("bfd: peer %s: duplicate, invalid or of another family than %s", p.Addr, r.tc.Local)
	}
	// Discriminators are random, so that a restarted runner's new session
	// is not mistaken by the peer for the old one, and unique here.
	var discr uint32
	for discr == 0 || r.byDiscr[discr] != nil {
		discr = rand.Uint32()
	}
	m, err := bfd.New(bfd.Config{LocalDiscr: discr, DesiredMinTx: p.DesiredMinTx, RequiredMinRx: p.RequiredMinRx,
		DetectMult: p.DetectMult, Passive: p.Passive})
	if err != nil {
		return nil, fmt.Errorf("bfd: peer %s: %w", p.Addr, err)
	}
	tx, err := transport.OpenSender(r.tc)
	if err != nil {
		return nil, fmt.Errorf("bfd: peer %s: %w", p.Addr, err)
	}
	s := &session{peer: p, m: m, tx: tx, discr: discr, sendOK: true, added: added, heard: now}
	r.byDiscr[discr], r.byAddr[p.Addr] = s, s
	r.setStatus(s)
	return s, nil
}

// setStatus publishes s's state to Status.
func (r *Runner) setStatus(s *session) {
	r.mu.Lock()
	r.status[s.peer.Addr] = Status{Peer: s.peer.Addr, State: s.m.State(), Diag: s.m.LocalDiag(), LocalDiscr: s.discr,
		RemoteDiscr: s.m.RemoteDiscr(), Added: s.added, DetectionTime: s.m.DetectionTime()}
	r.mu.Unlock()
}

// forget closes and drops s.
func (r *Runner) forget(s *session) {
	if err := s.tx.Close(); err != nil {
		r.log.Warn("BFD close send socket", "peer", s.peer.Addr, "error", err)
	}
	delete(r.byDiscr, s.discr)
	delete(r.byAddr, s.peer.Addr)
	r.mu.Lock()
	delete(r.status, s.peer.Addr)
	r.mu.Unlock()
}

// Add runs a session with p (a running one with p.Addr takes p's timers
// and role) once Run has it; it waits for that, for ctx or for Run to
// return.
func (r *Runner) Add(ctx context.Context, p Peer) error {
	return r.do(ctx, command{add: &p})
}

// Remove lets the session with addr go: at once without Config.Accept
// (telling the peer with an AdminDown packet),
// else it becomes a passive one that stays while the peer keeps it Up,
// so that a peer that still watches us does not see it fail.
func (r *Runner) Remove(ctx context.Context, addr netip.Addr) error {
	return r.do(ctx, command{remove: addr})
}

// SetAccept changes the timers Config.Accept answers peers with, for the
// sessions answering now too (a reload of bfd). It does nothing to a
// runner opened without Accept.
func (r *Runner) SetAccept(ctx context.Context, p Peer) error {
	return r.do(ctx, command{accept: &p})
}

func (r *Runner) do(ctx context.Context, c command) error {
	c.reply = make(chan error, 1)
	select {
	case r.cmds <- c:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return errors.New("bfd: runner stopped")
	}
	select {
	case err := <-c.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return errors.New("bfd: runner stopped")
	}
}

// command runs an Add, Remove or SetAccept on the loop.
func (r *Runner) command(c command, now time.Time) error {
	if c.accept != nil {
		if r.accept == nil {
			return nil
		}
		r.accept = c.accept
		for _, s := range r.byAddr {
			if !s.added {
				r.apply(s, s.m.Step(now, bfd.SetTimers{DesiredMinTx: c.accept.DesiredMinTx, RequiredMinRx: c.accept.RequiredMinRx, DetectMult: c.accept.DetectMult}))
				r.setStatus(s)
			}
		}
		return nil
	}
	if c.add == nil {
		s := r.byAddr[c.remove]
		switch {
		case s == nil || !s.added:
			return nil
		case r.accept == nil:
			// Nobody here wants the session any more: say so rather than
			// fall silent, which the peer would take for our death.
			r.apply(s, s.m.Step(now, bfd.SetAdminDown{Diag: bfd.DiagAdminDown}))
			r.forget(s)
			return nil
		}
		s.added = false
		a := r.accept
		r.apply(s, s.m.Step(now, bfd.SetTimers{DesiredMinTx: a.DesiredMinTx, RequiredMinRx: a.RequiredMinRx, DetectMult: a.DetectMult}))
		r.apply(s, s.m.Step(now, bfd.SetPassive{Passive: true}))
		r.setStatus(s)
		return nil
	}
	p := *c.add
	s := r.byAddr[p.Addr]
	if s == nil {
		s, err := r.add(p, true, now)
		if err != nil {
			return err
		}
		r.apply(s, s.m.Step(now, bfd.Start{}))
		return nil
	}
	s.added, s.peer = true, p
	r.apply(s, s.m.Step(now, bfd.SetTimers{DesiredMinTx: p.DesiredMinTx, RequiredMinRx: p.RequiredMinRx, DetectMult: p.DetectMult}))
	r.apply(s, s.m.Step(now, bfd.SetPassive{Passive: p.Passive}))
	r.setStatus(s)
	return nil
}

// Close releases the sockets; Run does so itself when it returns.
func (r *Runner) Close() error {
	var err error
	r.closeOnce.Do(func() {
		errs := []error{r.rx.Close()}
		for _, s := range r.byDiscr {
			errs = append(errs, s.tx.Close())
		}
		err = errors.Join(errs...)
	})
	return err
}

// Changes publishes every state change. It is buffered; when full,
// changes are dropped (and counted in Lost) rather than stall sessions.
func (r *Runner) Changes() <-chan Change { return r.changes }

// Lost is the number of changes Changes could not take.
func (r *Runner) Lost() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// Status returns the session with peer.
func (r *Runner) Status(peer netip.Addr) (Status, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.status[peer]
	return st, ok
}

// Statuses returns every session, by peer address.
func (r *Runner) Statuses() []Status {
	r.mu.Lock()
	out := make([]Status, 0, len(r.status))
	for _, st := range r.status {
		out = append(out, st)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return a.Peer.Compare(b.Peer) })
	return out
}

// Drops returns how many received packets were dropped, by reason.
func (r *Runner) Drops() map[bfd.DropReason]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[bfd.DropReason]uint64, len(r.drops)+1)
	for k, v := range r.drops {
		out[k] = v
	}
	if n := r.rx.BadHopLimit.Load(); n > 0 {
		out[bfd.DropTTL] = n
	}
	return out
}

// received is one datagram read, valid until the next read.
type received struct {
	payload []byte
	src     netip.Addr
}

// adminDownPackets is how many AdminDown packets each session sends as
// the runner stops, adminDownGap apart: one lost packet must not turn a
// graceful stop into a failure the peer detects, and the three go out
// within a Detection Time of lvsha's defaults (5 x 10 ms).
const (
	adminDownPackets = 3
	adminDownGap     = 10 * time.Millisecond
)

// Run runs the sessions until ctx is done, then takes them down on
// purpose (adminDown), closes the sockets and returns once its reader
// has stopped.
func (r *Runner) Run(ctx context.Context) error {
	defer close(r.done)
	defer r.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.read(ctx)
	}()
	defer wg.Wait()
	// Closing the socket is what ends a blocked read; it runs before
	// wg.Wait (defers run last first).
	defer r.rx.Close()

	timer := newTimer(&r.clock)
	defer timer.stop()
	r.smu.Lock()
	now := time.Now()
	for _, s := range r.byDiscr {
		r.apply(s, s.m.Step(now, bfd.Start{}))
	}
	for {
		now := time.Now()
		wait := r.wait(now)
		r.wakeAt = now.Add(wait)
		r.smu.Unlock()
		timer.set(r.wakeAt)
		select {
		case <-ctx.Done():
			r.adminDown()
			return nil
		case c := <-r.cmds:
			r.smu.Lock()
			c.reply <- r.command(c, time.Now())
			r.smu.Unlock()
		case <-r.kick:
		case <-timer.c():
		}
		r.catchUp()
		r.smu.Lock()
		r.expire(time.Now())
	}
}

// expire runs the sessions' timers due by now, and lets go the sessions
// nobody added whose peers fell silent (idleUntil). Called under smu.
func (r *Runner) expire(now time.Time) {
	for _, s := range r.byDiscr {
		if dl := s.m.NextDeadline(); !dl.IsZero() && !now.Before(dl) {
			r.apply(s, s.m.Step(now, bfd.TimerFired{}))
		}
		if dl := s.idleUntil(); !dl.IsZero() && !now.Before(dl) {
			r.log.Debug("BFD session let go", "peer", s.peer.Addr)
			r.forget(s)
		}
	}
}

// adminDown takes every session administratively down as the runner
// stops (RFC 5880 6.8.16: State AdminDown, Diag 7 "Administratively
// Down"), sending the packet adminDownPackets times. The peer then goes
// Down by our word ("Neighbor Signaled Session Down", RFC 5882 3.2: no
// failure of the path or of this system) rather than by its Detection
// Time running out, which it could not tell from our death: a VRRP
// backup watching us takes over on a detection timeout only, and leaves
// a stopping master's handover to its priority-0 advert. A session
// whose peer never spoke (passive, or not yet heard) sends nothing.
func (r *Runner) adminDown() {
	type resend struct {
		s *session
		b []byte
	}
	var again []resend
	r.smu.Lock()
	now := time.Now()
	for _, s := range r.byDiscr {
		acts := s.m.Step(now, bfd.SetAdminDown{Diag: bfd.DiagAdminDown})
		for _, a := range acts {
			if snd, ok := a.(bfd.Send); ok {
				again = append(again, resend{s, snd.Packet.Marshal()})
			}
		}
		r.apply(s, acts)
	}
	r.smu.Unlock()
	if len(again) == 0 {
		return
	}
	for range adminDownPackets - 1 {
		time.Sleep(adminDownGap)
		for _, x := range again {
			// Failures were logged by apply's first send, or are the
			// socket's closing under a stop: nothing to do about either.
			_ = x.s.tx.WriteTo(x.b, x.s.peer.Addr)
		}
	}
}

// idleUntil is when s, a session nobody added and no longer Up, is
// forgotten; zero while it is added or Up. This is what frees the places
// (MaxAccepted) that forged peers took: a forger never brings its
// session Up without answering our packets at the address it forged.
func (s *session) idleUntil() time.Time {
	if s.added || s.m.State() == bfd.Up {
		return time.Time{}
	}
	return s.heard.Add(acceptIdle)
}

// detectionDue says whether a session's Detection Time has run out.
func (r *Runner) detectionDue(now time.Time) bool {
	for _, s := range r.byDiscr {
		if dl := s.m.DetectionDeadline(); !dl.IsZero() && !now.Before(dl) {
			return true
		}
	}
	return false
}

// catchUp lets the reader handle the packets received but not yet read
// before any Detection Time is let run out: after a stall of this
// process (a busy host, a stop) the timer and the peer's packets that
// arrived during it are ready together, and taking the timer first
// would declare a live peer down, and a VRRP backup would take over from
// its live master. Called without smu; bounded.
func (r *Runner) catchUp() {
	for range 64 {
		r.smu.Lock()
		due := r.detectionDue(time.Now())
		r.smu.Unlock()
		if !due || (r.inflight.Load() == 0 && !r.rx.Pending()) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// wait is how long until the earliest session deadline.
func (r *Runner) wait(now time.Time) time.Duration {
	next := time.Hour
	for _, s := range r.byDiscr {
		if dl := s.m.NextDeadline(); !dl.IsZero() {
			next = min(next, dl.Sub(now))
		}
		if dl := s.idleUntil(); !dl.IsZero() {
			next = min(next, dl.Sub(now))
		}
	}
	return max(next, 0)
}

// read handles each packet as it arrives, until the socket closes.
func (r *Runner) read(ctx context.Context) {
	buf := make([]byte, 1500)
	for {
		d, err := r.rx.Read(buf)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("BFD receive failed; sessions will time out", "error", err)
			}
			return
		}
		r.inflight.Add(1)
		r.smu.Lock()
		r.receive(received{payload: d.Payload, src: d.Src.Addr()})
		r.inflight.Add(-1)
		// A Poll answered, a session come Up or slower timers acked can
		// bring a deadline before Run's next wake-up.
		kick := r.wait(time.Now()) < time.Until(r.wakeAt)
		r.smu.Unlock()
		if kick {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
	}
}

func (r *Runner) drop(reason bfd.DropReason) {
	r.mu.Lock()
	r.drops[reason]++
	r.mu.Unlock()
}

// receive finds a packet's session (RFC 5880 6.8.6): by Your
// Discriminator, or when that is zero by the source address, which for a
// single-hop session must be the peer's either way.
//
// A packet handled after its session's Detection Time ran out, the
// expiry not yet handled, was queued while this process was behind (a
// stall: on time, the timer would have run first): it counts as arrived
// just before the expiry, or a stall would declare a live peer down.
func (r *Runner) receive(d received) {
	p, reason := bfd.Parse(d.payload)
	if reason != bfd.DropNone {
		r.drop(reason)
		return
	}
	now := time.Now()
	var s *session
	if p.YourDiscr != 0 {
		s = r.byDiscr[p.YourDiscr]
	} else {
		s = r.byAddr[d.src]
		if s == nil {
			var refused bfd.DropReason
			if s, refused = r.answer(d.src, now); s == nil {
				r.drop(refused)
				return
			}
		}
	}
	if s == nil || s.peer.Addr != d.src {
		r.drop(bfd.DropNoSession)
		return
	}
	if dl := s.m.DetectionDeadline(); !dl.IsZero() && !now.Before(dl) {
		now = dl.Add(-time.Nanosecond)
	}
	s.heard = now
	r.apply(s, s.m.Step(now, bfd.Received{Packet: p}))
	// The peer's packets change the Detection Time Status shows.
	r.setStatus(s)
}

// answer opens a passive session for a peer that opened one to us
// (Config.Accept), or returns nil and the reason to drop its packet.
//
// Answering a peer nobody configured is on purpose, though keepalived
// does not (its bfd_instance names the one neighbor it talks to, and a
// packet from any other is discarded): a VRRP master cannot name its
// backups, which send nothing under RFC 5798, and a backup opens its
// session with whichever master it hears (package bfdwatch), so only
// the master's answering brings the session Up. RFC 5880 6.8.6 leaves it
// to the application whether a packet that matches no session opens one,
// and the TTL check of RFC 5881 5 (transport) leaves only hosts on the
// link able to. What one of them can do by forging sources is bounded:
// MaxAccepted sessions, a socket each, the packets of any more dropped
// and counted (bfd.DropAcceptLimit); a forger cannot bring a session Up
// without our packets to the address it forged, so its sessions are let
// go acceptIdle after its last packet (idleUntil). Sessions added, and
// those answered before the flood, are untouched; while it lasts a
// backup that opens a new session is refused too, and it does without
// BFD, on VRRP's own timers.
func (r *Runner) answer(src netip.Addr, now time.Time) (*session, bfd.DropReason) {
	if r.accept == nil || !src.IsValid() {
		return nil, bfd.DropNoSession
	}
	n := 0
	for _, s := range r.byAddr {
		if !s.added {
			n++
		}
	}
	if n >= MaxAccepted {
		if !r.refusing {
			r.refusing = true
			r.log.Warn("BFD refuses sessions opened by peers: as many as it answers are open (forged sources on the link?)",
				"peer", src, "max", MaxAccepted)
		}
		return nil, bfd.DropAcceptLimit
	}
	r.refusing = false
	p := *r.accept
	p.Addr, p.Passive = src, true
	s, err := r.add(p, false, now)
	if err != nil {
		r.log.Warn("BFD answer a peer", "peer", src, "error", err)
		return nil, bfd.DropNoSession
	}
	r.log.Info("BFD session opened by the peer", "peer", src)
	r.apply(s, s.m.Step(now, bfd.Start{}))
	return s, bfd.DropNone
}

// apply performs a session's actions.
func (r *Runner) apply(s *session, acts []bfd.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case bfd.Send:
			err := s.tx.WriteTo(a.Packet.Marshal(), s.peer.Addr)
			switch {
			case err != nil && s.sendOK:
				r.log.Warn("BFD send failed", "peer", s.peer.Addr, "error", err)
			case err == nil && !s.sendOK:
				r.log.Info("BFD send works again", "peer", s.peer.Addr)
			}
			s.sendOK = err == nil
		case bfd.Dropped:
			r.drop(a.Reason)
		case bfd.Transition:
			r.log.Info("BFD session state", "peer", s.peer.Addr, "from", a.From.String(), "state", a.To.String(),
				"diag", a.Diag.String(), "remote_discr", s.m.RemoteDiscr())
			c := Change{Peer: s.peer.Addr, From: a.From, To: a.To, Diag: a.Diag, RemoteState: s.m.RemoteState(), At: a.At, LastHeard: s.heard, Interval: s.m.PeerInterval()}
			r.setStatus(s)
			r.mu.Lock()
			select {
			case r.changes <- c:
			default:
				r.lost++
			}
			r.mu.Unlock()
		}
	}
}
