// Package runner drives BFD sessions (package bfd) with real timers over
// real sockets (bfd/transport): one receiving socket per local address,
// one sending socket per session, one goroutine owning every session.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

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
	Peers  []Peer
	Logger *slog.Logger
}

// Change is one session's state change, as published on Changes.
type Change struct {
	Peer     netip.Addr
	From, To bfd.State
	Diag     bfd.Diag
	At       time.Time
}

// Status is a session's state as Status reports it.
type Status struct {
	Peer        netip.Addr
	State       bfd.State
	Diag        bfd.Diag
	LocalDiscr  uint32
	RemoteDiscr uint32
}

type session struct {
	peer   Peer
	m      *bfd.Session
	tx     *transport.Sender
	discr  uint32
	sendOK bool // the last send succeeded; a failure is logged once per run of them
}

// Runner runs the sessions of one Config.
type Runner struct {
	log     *slog.Logger
	rx      *transport.Conn
	byDiscr map[uint32]*session
	byAddr  map[netip.Addr]*session
	changes chan Change

	mu     sync.Mutex
	status map[netip.Addr]Status
	drops  map[bfd.DropReason]uint64
	// lost counts changes not published because Changes was full.
	lost uint64

	closeOnce sync.Once
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
		log: log.With("local", cfg.Local), rx: rx,
		byDiscr: map[uint32]*session{}, byAddr: map[netip.Addr]*session{},
		// Room for every session to change state many times while a
		// consumer is slow; beyond that changes are counted, never block.
		changes: make(chan Change, 64+8*len(cfg.Peers)),
		status:  map[netip.Addr]Status{}, drops: map[bfd.DropReason]uint64{},
	}
	for _, p := range cfg.Peers {
		if err := r.add(cfg.Config, p); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

func (r *Runner) add(tc transport.Config, p Peer) error {
	if _, dup := r.byAddr[p.Addr]; dup || !p.Addr.IsValid() || p.Addr.Is4() != tc.Local.Is4() {
		return fmt.Errorf("bfd: peer %s: duplicate, invalid or of another family than %s", p.Addr, tc.Local)
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
		return fmt.Errorf("bfd: peer %s: %w", p.Addr, err)
	}
	tx, err := transport.OpenSender(tc)
	if err != nil {
		return fmt.Errorf("bfd: peer %s: %w", p.Addr, err)
	}
	s := &session{peer: p, m: m, tx: tx, discr: discr, sendOK: true}
	r.byDiscr[discr], r.byAddr[p.Addr] = s, s
	r.status[p.Addr] = Status{Peer: p.Addr, State: m.State(), LocalDiscr: discr}
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

// received is one datagram handed from the reader to the loop.
type received struct {
	payload []byte
	src     netip.Addr
}

// Run runs the sessions until ctx is done, then closes the sockets and
// returns once its reader has stopped. Sessions send nothing on the way
// out: the peer sees the silence its Detection Time is for, as on a crash.
func (r *Runner) Run(ctx context.Context) error {
	defer r.Close()
	rxc := make(chan received, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.read(ctx, rxc)
	}()
	defer wg.Wait()
	// Closing the socket is what ends a blocked read; it runs before
	// wg.Wait (defers run last first).
	defer r.rx.Close()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	now := time.Now()
	for _, s := range r.byDiscr {
		r.apply(s, s.m.Step(now, bfd.Start{}))
	}
	for {
		timer.Reset(r.wait(time.Now()))
		select {
		case <-ctx.Done():
			return nil
		case d := <-rxc:
			r.receive(d)
		case <-timer.C:
		}
		now := time.Now()
		for _, s := range r.byDiscr {
			if dl := s.m.NextDeadline(); !dl.IsZero() && !now.Before(dl) {
				r.apply(s, s.m.Step(now, bfd.TimerFired{}))
			}
		}
	}
}

// wait is how long until the earliest session deadline.
func (r *Runner) wait(now time.Time) time.Duration {
	next := time.Hour
	for _, s := range r.byDiscr {
		if dl := s.m.NextDeadline(); !dl.IsZero() {
			next = min(next, dl.Sub(now))
		}
	}
	return max(next, 0)
}

func (r *Runner) read(ctx context.Context, out chan<- received) {
	buf := make([]byte, 1500)
	for {
		d, err := r.rx.Read(buf)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("BFD receive failed; sessions will time out", "error", err)
			}
			return
		}
		select {
		case out <- received{payload: append([]byte(nil), d.Payload...), src: d.Src.Addr()}:
		case <-ctx.Done():
			return
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
func (r *Runner) receive(d received) {
	p, reason := bfd.Parse(d.payload)
	if reason != bfd.DropNone {
		r.drop(reason)
		return
	}
	var s *session
	if p.YourDiscr != 0 {
		s = r.byDiscr[p.YourDiscr]
	} else {
		s = r.byAddr[d.src]
	}
	if s == nil || s.peer.Addr != d.src {
		r.drop(bfd.DropNoSession)
		return
	}
	r.apply(s, s.m.Step(time.Now(), bfd.Received{Packet: p}))
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
			c := Change{Peer: s.peer.Addr, From: a.From, To: a.To, Diag: a.Diag, At: a.At}
			r.mu.Lock()
			r.status[s.peer.Addr] = Status{Peer: s.peer.Addr, State: a.To, Diag: a.Diag, LocalDiscr: s.discr, RemoteDiscr: s.m.RemoteDiscr()}
			select {
			case r.changes <- c:
			default:
				r.lost++
			}
			r.mu.Unlock()
		}
	}
}
