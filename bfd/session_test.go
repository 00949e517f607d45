package bfd

import (
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	localDiscr  = 0x1001
	remoteDiscr = 0x2002
)

func testConfig() Config {
	return Config{LocalDiscr: localDiscr, DesiredMinTx: 10 * time.Millisecond, RequiredMinRx: 10 * time.Millisecond,
		DetectMult: 3, Rand: rand.NewPCG(1, 2)}
}

func newSession(t *testing.T, cfg Config) *Session {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// from is a packet the peer sends in state st.
func from(st State) *Packet {
	p := &Packet{State: st, DetectMult: 4, MyDiscr: remoteDiscr, YourDiscr: localDiscr,
		DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 30 * time.Millisecond}
	if st == Down || st == AdminDown {
		p.YourDiscr = 0
	}
	return p
}

// reach brings a started session to st at t0 and returns it.
func reach(t *testing.T, st State) *Session {
	t.Helper()
	s := newSession(t, testConfig())
	s.Step(t0, Start{})
	switch st {
	case AdminDown:
		s.Step(t0, SetAdminDown{})
	case Init:
		s.Step(t0, Received{from(Down)})
	case Up:
		s.Step(t0, Received{from(Down)})
		s.Step(t0, Received{from(Up)})
	}
	if s.State() != st {
		t.Fatalf("reach %s: in %s", st, s.State())
	}
	return s
}

func sends(acts []Action) []Packet {
	var out []Packet
	for _, a := range acts {
		if s, ok := a.(Send); ok {
			out = append(out, s.Packet)
		}
	}
	return out
}

func transitions(acts []Action) []Transition {
	var out []Transition
	for _, a := range acts {
		if tr, ok := a.(Transition); ok {
			out = append(out, tr)
		}
	}
	return out
}

// TestReceiveTransitions is RFC 5880 6.8.6's state table (and 6.2's
// diagram): every local state against every received state.
func TestReceiveTransitions(t *testing.T) {
	for _, tc := range []struct {
		local, remote State
		want          State
		diag          Diag
		dropped       bool
	}{
		{local: AdminDown, remote: AdminDown, want: AdminDown, diag: DiagAdminDown, dropped: true},
		{local: AdminDown, remote: Down, want: AdminDown, diag: DiagAdminDown, dropped: true},
		{local: AdminDown, remote: Init, want: AdminDown, diag: DiagAdminDown, dropped: true},
		{local: AdminDown, remote: Up, want: AdminDown, diag: DiagAdminDown, dropped: true},
		{local: Down, remote: AdminDown, want: Down},
		{local: Down, remote: Down, want: Init},
		{local: Down, remote: Init, want: Up},
		{local: Down, remote: Up, want: Down},
		{local: Init, remote: AdminDown, want: Down, diag: DiagNeighborDown},
		{local: Init, remote: Down, want: Init},
		{local: Init, remote: Init, want: Up},
		{local: Init, remote: Up, want: Up},
		{local: Up, remote: AdminDown, want: Down, diag: DiagNeighborDown},
		{local: Up, remote: Down, want: Down, diag: DiagNeighborDown},
		{local: Up, remote: Init, want: Up},
		{local: Up, remote: Up, want: Up},
	} {
		t.Run(tc.local.String()+"+"+tc.remote.String(), func(t *testing.T) {
			s := reach(t, tc.local)
			now := t0.Add(time.Millisecond)
			acts := s.Step(now, Received{from(tc.remote)})
			if s.State() != tc.want || s.LocalDiag() != tc.diag {
				t.Fatalf("state %s diag %q, want %s diag %q", s.State(), s.LocalDiag(), tc.want, tc.diag)
			}
			trs := transitions(acts)
			changed := tc.want != tc.local
			if changed != (len(trs) == 1) || (changed && (trs[0].From != tc.local || trs[0].To != tc.want || !trs[0].At.Equal(now))) {
				t.Errorf("transitions %+v", trs)
			}
			if changed && len(sends(acts)) != 1 {
				t.Errorf("a state change sends one packet at once, got %+v", sends(acts))
			}
			dropped := len(acts) > 0 && acts[0] == Action(Dropped{Reason: DropAdminDown})
			if dropped != tc.dropped {
				t.Errorf("actions %+v, want dropped %v", acts, tc.dropped)
			}
			// A peer going AdminDown is forgotten by discriminator: back
			// as a new process it would drop packets naming the old one.
			want := uint32(remoteDiscr)
			if tc.remote == AdminDown {
				want = 0
			}
			if !tc.dropped && s.RemoteDiscr() != want {
				t.Errorf("remote discriminator %x, want %x", s.RemoteDiscr(), want)
			}
		})
	}
}

// TestDetectionExpiry: a Detection Time without packets takes Init and
// Up down (diag 1) and forgets the peer's discriminator in every state
// (RFC 5880 6.8.1, 6.8.4).
func TestDetectionExpiry(t *testing.T) {
	for _, tc := range []struct {
		local State
		want  State
		diag  Diag
	}{
		{Down, Down, DiagNone},
		{Init, Down, DiagControlDetectExpired},
		{Up, Down, DiagControlDetectExpired},
	} {
		t.Run(tc.local.String(), func(t *testing.T) {
			s := newSession(t, testConfig())
			s.Step(t0, Start{})
			// The peer's last packet, in each case at t0.
			switch tc.local {
			case Down:
				s.Step(t0, Received{from(Up)}) // stays Down
			case Init:
				s.Step(t0, Received{from(Down)})
			case Up:
				s.Step(t0, Received{from(Down)})
				s.Step(t0, Received{from(Up)})
			}
			// Peer: mult 4, desired TX 20 ms; ours RX 10 ms: 4 × 20 ms.
			dt := s.DetectionTime()
			if dt != 80*time.Millisecond {
				t.Fatalf("detection time %v, want 80ms", dt)
			}
			s.Step(t0.Add(dt-time.Nanosecond), TimerFired{})
			if s.State() != tc.local || s.RemoteDiscr() == 0 {
				t.Fatalf("before the detection time: %s, remote discr %x", s.State(), s.RemoteDiscr())
			}
			acts := s.Step(t0.Add(dt), TimerFired{})
			if s.State() != tc.want || s.LocalDiag() != tc.diag || s.RemoteDiscr() != 0 {
				t.Fatalf("after: %s diag %q remote discr %x, want %s diag %q discr 0", s.State(), s.LocalDiag(), s.RemoteDiscr(), tc.want, tc.diag)
			}
			if tc.want != tc.local {
				p := sends(acts)
				if len(p) != 1 || p[0].State != Down || p[0].YourDiscr != 0 || p[0].Diag != DiagControlDetectExpired {
					t.Errorf("packets at expiry %+v", p)
				}
			}
		})
	}
}

// TestDetectionTime is RFC 5880 6.8.4 for several parameter pairs.
func TestDetectionTime(t *testing.T) {
	for _, tc := range []struct {
		localRx, remoteTx time.Duration
		remoteMult        uint8
		want              time.Duration
	}{
		{10 * time.Millisecond, 20 * time.Millisecond, 4, 80 * time.Millisecond},
		{50 * time.Millisecond, 20 * time.Millisecond, 3, 150 * time.Millisecond},
		{time.Second, time.Second, 1, time.Second},
	} {
		cfg := testConfig()
		cfg.RequiredMinRx = tc.localRx
		s := newSession(t, cfg)
		p := from(Down)
		p.DesiredMinTx, p.DetectMult = tc.remoteTx, tc.remoteMult
		s.Step(t0, Received{p})
		if got := s.DetectionTime(); got != tc.want {
			t.Errorf("%+v: detection time %v", tc, got)
		}
		if got, want := s.PeerInterval(), tc.want/time.Duration(tc.remoteMult); got != want {
			t.Errorf("%+v: peer interval %v, want %v", tc, got, want)
		}
		if got := s.NextDeadline(); !got.Equal(t0.Add(tc.want)) {
			t.Errorf("%+v: next deadline %v, want t0+%v", tc, got.Sub(t0), tc.want)
		}
	}
}

func TestAdmin(t *testing.T) {
	s := reach(t, Up)
	acts := s.Step(t0, SetAdminDown{})
	p := sends(acts)
	if s.State() != AdminDown || len(p) != 1 || p[0].State != AdminDown || p[0].Diag != DiagAdminDown {
		t.Fatalf("admin down: %s, sent %+v", s.State(), p)
	}
	if !s.detectDeadln.IsZero() {
		t.Error("AdminDown runs no detection timer")
	}
	if acts := s.Step(t0, SetAdminDown{}); len(transitions(acts)) != 0 {
		t.Error("a second AdminDown changed something")
	}
	s.Step(t0, SetAdminUp{})
	if s.State() != Down || s.LocalDiag() != DiagNone {
		t.Fatalf("admin up: %s %q", s.State(), s.LocalDiag())
	}
	s.Step(t0, Received{from(Down)})
	if s.State() != Init {
		t.Fatalf("after admin up, peer Down: %s", s.State())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"discriminator 0", func(c *Config) { c.LocalDiscr = 0 }},
		{"tx 0", func(c *Config) { c.DesiredMinTx = 0 }},
		{"rx negative", func(c *Config) { c.RequiredMinRx = -1 }},
		{"tx past 32 bits", func(c *Config) { c.DesiredMinTx = 1 << 32 * time.Microsecond }},
		{"mult 0", func(c *Config) { c.DetectMult = 0 }},
	} {
		cfg := testConfig()
		tc.edit(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestSlowTransmitUntilUp: before Up a session sends once a second, less
// 0-25% jitter, whatever its configured rate (RFC 5880 6.8.3, 6.8.7),
// and the first packet goes at Start.
func TestSlowTransmitUntilUp(t *testing.T) {
	s := newSession(t, testConfig())
	if p := sends(s.Step(t0, Start{})); len(p) != 1 || p[0].State != Down || p[0].DesiredMinTx != time.Second || p[0].YourDiscr != 0 || p[0].MyDiscr != localDiscr {
		t.Fatalf("first packet %+v", p)
	}
	now := t0
	for range 200 {
		next := s.NextDeadline()
		if gap := next.Sub(now); gap < 750*time.Millisecond || gap > time.Second {
			t.Fatalf("gap %v outside 750ms..1s", gap)
		}
		now = next
		if p := sends(s.Step(now, TimerFired{})); len(p) != 1 {
			t.Fatalf("at deadline sent %+v", p)
		}
	}
}

// TestJitter: once Up, the interval is max(our desired TX, the peer's
// required RX) less 0-25%, or 10-25% at detect multiplier 1 (RFC 5880
// 6.8.7), and the jitter covers its range.
func TestJitter(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mult     uint8
		tx       time.Duration
		remoteRx time.Duration
		lo, hi   time.Duration
	}{
		{"ours larger", 3, 40 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond},
		{"peer's larger", 3, 10 * time.Millisecond, 30 * time.Millisecond, 22500 * time.Microsecond, 30 * time.Millisecond},
		{"mult 1", 1, 40 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond, 36 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.DetectMult, cfg.DesiredMinTx = tc.mult, tc.tx
			s := newSession(t, cfg)
			s.Step(t0, Start{})
			p := from(Down)
			p.RequiredMinRx = tc.remoteRx
			s.Step(t0, Received{p})
			p = from(Up)
			p.RequiredMinRx = tc.remoteRx
			p.DesiredMinTx = 10 * time.Millisecond
			now := t0
			s.Step(now, Received{p})
			f := *p
			f.Final = true
			s.Step(now, Received{&f})
			if s.State() != Up || s.Polling() {
				t.Fatalf("%s, polling %v", s.State(), s.Polling())
			}
			minGap, maxGap := time.Hour, time.Duration(0)
			for range 2000 {
				next := s.NextDeadline()
				gap := next.Sub(now)
				minGap, maxGap = min(minGap, gap), max(maxGap, gap)
				now = next
				s.Step(now, Received{p}) // keeps detection away
				s.Step(now, TimerFired{})
			}
			if minGap < tc.lo || maxGap > tc.hi {
				t.Errorf("gaps %v..%v, want within %v..%v", minGap, maxGap, tc.lo, tc.hi)
			}
			if spread := tc.hi - tc.lo; minGap > tc.lo+spread/10 || maxGap < tc.hi-spread/10 {
				t.Errorf("gaps %v..%v do not cover %v..%v", minGap, maxGap, tc.lo, tc.hi)
			}
		})
	}
}

// TestPollFinal: coming Up lowers TX from a second to the configured rate
// through a Poll Sequence (RFC 5880 6.5, 6.8.3): packets carry P until a
// Final arrives, and then none does.
func TestPollFinal(t *testing.T) {
	s := reach(t, Init)
	acts := s.Step(t0, Received{from(Up)})
	p := sends(acts)
	if s.State() != Up || len(p) != 1 || !p[0].Poll || p[0].DesiredMinTx != 10*time.Millisecond {
		t.Fatalf("on Up: %s, sent %+v", s.State(), p)
	}
	// A lower TX applies at once: max(10ms, peer's 30ms).
	if s.TxInterval() != 30*time.Millisecond {
		t.Errorf("tx interval %v, want 30ms", s.TxInterval())
	}
	now := s.NextDeadline()
	if p := sends(s.Step(now, TimerFired{})); len(p) != 1 || !p[0].Poll {
		t.Fatalf("periodic packet during the poll: %+v", p)
	}
	f := from(Up)
	f.Final = true
	s.Step(now, Received{f})
	if s.Polling() {
		t.Fatal("still polling after the Final")
	}
	now = s.NextDeadline()
	if p := sends(s.Step(now, TimerFired{})); len(p) != 1 || p[0].Poll || p[0].Final {
		t.Fatalf("after the Final: %+v", p)
	}
}

// TestAnswerPoll: a Poll is answered at once with F and without P,
// whatever the transmit timer (RFC 5880 6.8.6, 6.8.7).
func TestAnswerPoll(t *testing.T) {
	s := reach(t, Up) // polling itself
	now := t0.Add(time.Millisecond)
	p := from(Up)
	p.Poll = true
	out := sends(s.Step(now, Received{p}))
	if len(out) != 1 || !out[0].Final || out[0].Poll || out[0].State != Up {
		t.Fatalf("answer %+v", out)
	}
}

// TestTimerChangeWhileUp: a higher TX interval and a lower RX interval
// take effect only when the peer's Final confirms them (RFC 5880 6.8.3);
// the opposite changes at once.
func TestTimerChangeWhileUp(t *testing.T) {
	s := reach(t, Up)
	final := from(Up)
	final.Final = true
	final.RequiredMinRx = time.Millisecond
	final.DesiredMinTx = time.Millisecond
	s.Step(t0, Received{final})
	if s.Polling() || s.TxInterval() != 10*time.Millisecond || s.DetectionTime() != 40*time.Millisecond {
		t.Fatalf("set-up: polling %v tx %v detect %v", s.Polling(), s.TxInterval(), s.DetectionTime())
	}
	// Slower TX, faster RX.
	acts := s.Step(t0, SetTimers{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 2 * time.Millisecond, DetectMult: 3})
	if p := sends(acts); len(p) != 1 || !p[0].Poll || p[0].DesiredMinTx != 100*time.Millisecond || p[0].RequiredMinRx != 2*time.Millisecond {
		t.Fatalf("poll %+v", p)
	}
	if s.TxInterval() != 10*time.Millisecond || s.DetectionTime() != 40*time.Millisecond {
		t.Errorf("before the Final: tx %v detect %v, want the old 10ms and 40ms", s.TxInterval(), s.DetectionTime())
	}
	// A change during the poll waits for the next one.
	s.Step(t0, SetTimers{DesiredMinTx: 200 * time.Millisecond, RequiredMinRx: 2 * time.Millisecond, DetectMult: 3})
	s.Step(t0, Received{final})
	if s.TxInterval() != 100*time.Millisecond || s.DetectionTime() != 4*2*time.Millisecond {
		t.Errorf("after the Final: tx %v detect %v, want 100ms and 8ms", s.TxInterval(), s.DetectionTime())
	}
	if !s.Polling() || s.sent().tx != 200*time.Millisecond {
		t.Fatalf("second poll: polling %v carrying %v", s.Polling(), s.sent())
	}
	s.Step(t0, Received{final})
	if s.Polling() || s.TxInterval() != 200*time.Millisecond {
		t.Errorf("after the second Final: polling %v tx %v", s.Polling(), s.TxInterval())
	}
	// Faster TX applies at once.
	s.Step(t0, SetTimers{DesiredMinTx: 5 * time.Millisecond, RequiredMinRx: 2 * time.Millisecond, DetectMult: 3})
	if s.TxInterval() != 5*time.Millisecond {
		t.Errorf("faster TX: %v, want 5ms at once", s.TxInterval())
	}
}

// TestGoingDownSlows: leaving Up returns to a second's TX at once and
// ends the poll (RFC 5880 6.8.3).
func TestGoingDownSlows(t *testing.T) {
	s := reach(t, Up)
	acts := s.Step(t0.Add(time.Millisecond), Received{from(Down)})
	p := sends(acts)
	if s.State() != Down || len(p) != 1 || p[0].DesiredMinTx != time.Second || p[0].Poll {
		t.Fatalf("%s, sent %+v", s.State(), p)
	}
	if s.TxInterval() != time.Second {
		t.Errorf("tx interval %v", s.TxInterval())
	}
}

// TestNoPeriodicTransmit: none when the peer's Required Min RX is 0, none
// in the passive role until the peer is heard, and none while the peer
// runs Demand mode and both are Up (RFC 5880 6.1, 6.8.3, 6.8.6).
func TestNoPeriodicTransmit(t *testing.T) {
	t.Run("remote rx 0", func(t *testing.T) {
		s := newSession(t, testConfig())
		s.Step(t0, Start{})
		p := from(Up)
		p.RequiredMinRx = 0
		s.Step(t0, Received{p})
		if !s.txDeadline.IsZero() {
			t.Errorf("tx deadline %v", s.txDeadline)
		}
	})
	t.Run("passive", func(t *testing.T) {
		cfg := testConfig()
		cfg.Passive = true
		s := newSession(t, cfg)
		if p := sends(s.Step(t0, Start{})); len(p) != 0 || !s.NextDeadline().IsZero() {
			t.Fatalf("passive sent %+v, deadline %v", p, s.NextDeadline())
		}
		if p := sends(s.Step(t0, Received{from(Down)})); len(p) != 1 || p[0].State != Init || p[0].YourDiscr != remoteDiscr {
			t.Fatalf("heard: sent %+v", p)
		}
	})
	t.Run("passive, peer fell silent: says Down", func(t *testing.T) {
		cfg := testConfig()
		cfg.Passive = true
		s := newSession(t, cfg)
		s.Step(t0, Start{})
		s.Step(t0, Received{from(Down)})
		s.Step(t0, Received{from(Up)})
		dl := s.DetectionDeadline()
		p := sends(s.Step(dl, TimerFired{}))
		if s.State() != Down || len(p) != 1 || p[0].State != Down || p[0].Diag != DiagControlDetectExpired {
			t.Fatalf("after the detection time: %s, sent %+v; want Down said once", s.State(), p)
		}
		if s.NextDeadline().IsZero() {
			t.Error("no periodic Down packets")
		}
	})
	t.Run("passive to active", func(t *testing.T) {
		cfg := testConfig()
		cfg.Passive = true
		s := newSession(t, cfg)
		s.Step(t0, Start{})
		p := sends(s.Step(t0, SetPassive{Passive: false}))
		if len(p) != 1 || p[0].State != Down || s.NextDeadline().IsZero() {
			t.Fatalf("turned active: sent %+v, deadline %v", p, s.NextDeadline())
		}
		if p := sends(s.Step(t0, SetPassive{Passive: false})); len(p) != 0 {
			t.Fatalf("active again: sent %+v", p)
		}
		// Back to passive with the peer unheard: silent from the next
		// periodic packet on.
		s.Step(t0, SetPassive{Passive: true})
		if p := sends(s.Step(s.NextDeadline(), TimerFired{})); len(p) != 0 || !s.NextDeadline().IsZero() {
			t.Fatalf("passive again: sent %+v, deadline %v", p, s.NextDeadline())
		}
	})
	t.Run("demand", func(t *testing.T) {
		s := reach(t, Up)
		p := from(Up)
		p.Demand = true
		s.Step(t0, Received{p})
		if !s.txDeadline.IsZero() {
			t.Errorf("tx deadline %v with the peer in Demand mode", s.txDeadline)
		}
	})
}

// TestBringUp runs two sessions against each other through a fake wire
// with a fake clock: both come Up, settle their polls, and keep each
// other Up at the fast rate for a minute of simulated time.
func TestBringUp(t *testing.T) {
	a := newSession(t, testConfig())
	cb := testConfig()
	cb.LocalDiscr, cb.Rand = 0x3003, rand.NewPCG(3, 4)
	b := newSession(t, cb)
	now := t0
	deliver := func(to *Session, acts []Action) []Action {
		var out []Action
		for _, p := range sends(acts) {
			out = append(out, to.Step(now, Received{&p})...)
		}
		return out
	}
	// Settle exchanges in both directions until nothing more is sent.
	exchange := func(fromA, fromB []Action) {
		for len(fromA)+len(fromB) > 0 {
			fromA, fromB = deliver(a, fromB), deliver(b, fromA)
		}
	}
	exchange(a.Step(now, Start{}), b.Step(now, Start{}))
	upAt := time.Time{}
	packets := 0
	for now.Before(t0.Add(time.Minute)) {
		na, nb := a.NextDeadline(), b.NextDeadline()
		if nb.Before(na) {
			now = nb
		} else {
			now = na
		}
		aa, bb := a.Step(now, TimerFired{}), b.Step(now, TimerFired{})
		packets += len(sends(aa)) + len(sends(bb))
		exchange(aa, bb)
		if upAt.IsZero() && a.State() == Up && b.State() == Up {
			upAt = now
		}
		if !upAt.IsZero() && (a.State() != Up || b.State() != Up) {
			t.Fatalf("at +%v: %s and %s", now.Sub(t0), a.State(), b.State())
		}
	}
	if upAt.IsZero() || a.Polling() || b.Polling() {
		t.Fatalf("never settled Up: %s %s polling %v %v", a.State(), b.State(), a.Polling(), b.Polling())
	}
	// 10 ms less jitter on both sides: 100..133 packets a second each.
	if perSec := float64(packets) / time.Minute.Seconds(); perSec < 190 || perSec > 270 {
		t.Errorf("%.0f packets a second between the two", perSec)
	}
	t.Logf("both Up %v after start, %d periodic packets in a minute", upAt.Sub(t0), packets)
}
