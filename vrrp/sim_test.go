package vrrp

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// The simulation wires machines together through the codec: every
// SendAdvert is encoded, delivered instantly to the same VRID on every
// other node, parsed and stepped in. Time jumps from deadline to deadline,
// so tests assert exact instants without sleeping.

type simMember struct {
	node    string
	cfg     Config
	machine *Machine
	vips    bool
	// trans are the member's transitions, in order.
	trans []Transition
}

type delivery struct {
	to       *simMember
	b        []byte
	src, dst netip.Addr
}

type sim struct {
	t       *testing.T
	now     time.Time
	members []*simMember
	// groups maps a node to its sync group's members (all its members).
	groups map[string]bool
	// coords are the nodes' sync groups, made at their first use (after
	// every member was added).
	coords map[string]*SyncGroup
	queue  []delivery
	// holders watches VIP ownership per VRID: gaps counts instants at which
	// nobody held a VRID's VIPs after somebody had.
	held   map[uint8]bool
	gaps   []string
	inSync bool
}

func newSim(t *testing.T) *sim {
	return &sim{t: t, now: t0, groups: map[string]bool{}, coords: map[string]*SyncGroup{}, held: map[uint8]bool{}}
}

func (s *sim) add(node string, last byte, vrid, prio uint8, edit func(c *Config)) *simMember {
	s.t.Helper()
	c := baseConfig()
	c.VRID, c.Priority = vrid, prio
	c.Source = netip.AddrFrom4([4]byte{192, 0, 2, last})
	if edit != nil {
		edit(&c)
	}
	machine, err := New(c)
	if err != nil {
		s.t.Fatal(err)
	}
	sm := &simMember{node: node, cfg: c, machine: machine}
	s.members = append(s.members, sm)
	return sm
}

// do steps ev into mb now and carries out everything that follows.
func (s *sim) do(mb *simMember, ev Event) {
	s.apply(mb, mb.machine.Step(s.now, ev))
	s.drain()
}

func (s *sim) apply(mb *simMember, acts []Action) {
	s.t.Helper()
	for _, a := range acts {
		switch a := a.(type) {
		case SendAdvert:
			for _, o := range s.members {
				if o.node == mb.node || o.cfg.VRID != mb.cfg.VRID {
					continue
				}
				b, err := Marshal(mb.cfg.Advert(a.Priority), mb.cfg.Source, grp4)
				if err != nil {
					s.t.Fatal(err)
				}
				s.queue = append(s.queue, delivery{to: o, b: b, src: mb.cfg.Source, dst: grp4})
			}
		case AddVIPs:
			mb.vips = true
		case RemoveVIPs:
			mb.vips = false
		case Transition:
			mb.trans = append(mb.trans, a)
		case Dropped:
			s.t.Errorf("%s VRID %d dropped an advert: %s", mb.node, mb.cfg.VRID, a.Reason)
		}
	}
	s.checkHolders()
	if s.groups[mb.node] {
		s.syncGroup(mb.node)
	}
}

// syncGroup is what a runner does after any member of a node's group
// steps: the node's SyncGroup settles over its machines, each gate
// stepped in at once.
func (s *sim) syncGroup(node string) {
	if s.inSync {
		return
	}
	s.inSync = true
	defer func() { s.inSync = false }()
	sg := s.coords[node]
	if sg == nil {
		var members []GroupMember
		for _, o := range s.members {
			if o.node == node {
				members = append(members, simGated{s, o})
			}
		}
		sg = NewSyncGroup(members)
		s.coords[node] = sg
	}
	sg.Settle()
}

// simGated is a simulated machine as its sync group sees it.
type simGated struct {
	s  *sim
	mb *simMember
}

func (g simGated) Wants() State { return g.mb.machine.Wants() }

func (g simGated) Gate(allow bool) {
	g.s.apply(g.mb, g.mb.machine.Step(g.s.now, GroupGate{AllowMaster: allow}))
}

func (s *sim) checkHolders() {
	byVRID := map[uint8]bool{}
	for _, o := range s.members {
		byVRID[o.cfg.VRID] = byVRID[o.cfg.VRID] || o.vips
	}
	for vrid, h := range byVRID {
		if s.held[vrid] && !h {
			s.gaps = append(s.gaps, fmt.Sprintf("VRID %d at +%s", vrid, s.now.Sub(t0)))
		}
		s.held[vrid] = h
	}
}

func (s *sim) drain() {
	s.t.Helper()
	for i := 0; len(s.queue) > 0; i++ {
		if i > 1000 {
			s.t.Fatal("advert storm: more than 1000 deliveries at one instant")
		}
		d := s.queue[0]
		s.queue = s.queue[1:]
		a, r := Parse(d.b, d.src, d.dst, HopLimit)
		if r != DropNone {
			s.t.Fatalf("own encoding dropped: %s", r)
		}
		s.apply(d.to, d.to.machine.Step(s.now, AdvertReceived{Advert: a, Src: d.src}))
	}
}

// run advances time to end, firing deadlines in order.
func (s *sim) run(end time.Duration) {
	s.t.Helper()
	until := t0.Add(end)
	for i := 0; ; i++ {
		if i > 100000 {
			s.t.Fatal("simulation did not reach its end")
		}
		var next time.Time
		for _, o := range s.members {
			if d := o.machine.NextDeadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
		if next.IsZero() || next.After(until) {
			s.now = until
			return
		}
		s.now = next
		for _, o := range s.members {
			if d := o.machine.NextDeadline(); !d.IsZero() && !d.After(s.now) {
				s.apply(o, o.machine.Step(s.now, TimerFired{}))
				s.drain()
			}
		}
	}
}

// lastTo is the instant mb last entered st, or -1.
func lastTo(mb *simMember, st State) time.Duration {
	for i := len(mb.trans) - 1; i >= 0; i-- {
		if mb.trans[i].To == st {
			return mb.trans[i].At.Sub(t0)
		}
	}
	return -1
}

func masters(s *sim, vrid uint8) []string {
	var out []string
	for _, o := range s.members {
		if o.cfg.VRID == vrid && o.machine.State() == Master {
			out = append(out, o.node)
		}
	}
	return out
}

// mdi is Master_Down_Interval at 1s for version 3.
func mdi(p uint8) time.Duration { return MasterDownInterval(3, p, time.Second) }

func TestSimElection(t *testing.T) {
	s := newSim(t)
	a := s.add("a", 1, 1, 200, nil)
	b := s.add("b", 2, 1, 100, nil)
	s.do(a, Start{})
	s.do(b, Start{})
	s.run(20 * time.Second)
	if a.machine.State() != Master || b.machine.State() != Backup {
		t.Fatalf("a %s, b %s; want MASTER, BACKUP", a.machine.State(), b.machine.State())
	}
	// 3s + (256-200)/256 s
	if got := lastTo(a, Master); got != 3218750*time.Microsecond {
		t.Errorf("a became master at +%s, want +3.21875s", got)
	}
	if got := lastTo(b, Master); got != -1 {
		t.Errorf("b was master at +%s", got)
	}
}

// TestSimEqualPriority: two routers of one priority start together, both
// time out at once, and the higher address keeps mastership (RFC 5798
// 6.4.3 (670)).
func TestSimEqualPriority(t *testing.T) {
	for _, order := range []string{"low first", "high first"} {
		t.Run(order, func(t *testing.T) {
			s := newSim(t)
			lo := s.add("lo", 1, 1, 100, nil)
			hi := s.add("hi", 2, 1, 100, nil)
			if order == "low first" {
				s.do(lo, Start{})
				s.do(hi, Start{})
			} else {
				s.do(hi, Start{})
				s.do(lo, Start{})
			}
			s.run(20 * time.Second)
			if got := masters(s, 1); len(got) != 1 || got[0] != "hi" {
				t.Fatalf("masters %v, want [hi]", got)
			}
			if n := len(lo.trans); n == 0 || lo.trans[n-1].Reason != ReasonHigherAddress {
				t.Errorf("lo's transitions %v, want to end on the address tiebreak", lo.trans)
			}
		})
	}
}

// TestSimHandover: a master's graceful stop hands over after the backup's
// Skew_Time, and the VIPs are held throughout.
func TestSimHandover(t *testing.T) {
	s := newSim(t)
	a := s.add("a", 1, 1, 200, nil)
	b := s.add("b", 2, 1, 100, nil)
	s.do(a, Start{})
	s.do(b, Start{})
	s.run(10 * time.Second)
	s.do(a, Shutdown{})
	if a.machine.State() != Stopping || !a.vips {
		t.Fatalf("a %s holding VIPs %v after shutdown; want STOPPING, holding", a.machine.State(), a.vips)
	}
	s.run(20 * time.Second)
	// priority 0 seen at 10s: b's Master_Down_Timer is Skew_Time(100)
	want := 10*time.Second + skew100
	if got := lastTo(b, Master); got != want {
		t.Errorf("b became master at +%s, want +%s", got, want)
	}
	if got := lastTo(a, Initialize); got != want {
		t.Errorf("a released at +%s, want +%s (on b's first advert)", got, want)
	}
	if a.vips || !b.vips {
		t.Errorf("VIPs held: a %v, b %v", a.vips, b.vips)
	}
	if len(s.gaps) > 0 {
		t.Errorf("VIPs unheld at %v", s.gaps)
	}
}

func TestSimPreempt(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(c *Config)
		wantA    State
		takeover time.Duration // when a becomes master, -1 never
	}{
		// b is master from mdi(100); a starts at 10s and takes over
		// Master_Down_Interval later, as b's lower adverts are discarded.
		{"preempt", nil, Master, 10*time.Second + mdi(200)},
		{"nopreempt", func(c *Config) { c.NoPreempt = true }, Backup, -1},
		// b advertises at mdi(100)+k s; the last one before 10s+20s is
		// still accepted, and a takes over Master_Down_Interval after it.
		{"preempt_delay 20s", func(c *Config) { c.PreemptDelay = 20 * time.Second }, Master, mdi(100) + 26*time.Second + mdi(200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t)
			b := s.add("b", 2, 1, 100, nil)
			a := s.add("a", 1, 1, 200, tt.edit)
			s.do(b, Start{})
			s.run(10 * time.Second)
			s.do(a, Start{})
			s.run(60 * time.Second)
			if a.machine.State() != tt.wantA {
				t.Fatalf("a %s, want %s", a.machine.State(), tt.wantA)
			}
			if got := lastTo(a, Master); got != tt.takeover {
				t.Errorf("a became master at +%s, want +%v", got, tt.takeover)
			}
			if got := masters(s, 1); len(got) != 1 {
				t.Errorf("masters %v", got)
			}
			if len(s.gaps) > 0 {
				t.Errorf("VIPs unheld at %v", s.gaps)
			}
		})
	}
}

// TestSimSyncGroup: x is preferred for both VRIDs; a fault on one of x's
// instances moves both VRIDs to y, and recovery moves both back at the
// same instant.
func TestSimSyncGroup(t *testing.T) {
	s := newSim(t)
	s.groups["x"], s.groups["y"] = true, true
	x1 := s.add("x", 1, 1, 200, nil)
	x2 := s.add("x", 1, 2, 200, nil)
	y1 := s.add("y", 2, 1, 100, nil)
	y2 := s.add("y", 2, 2, 100, nil)
	for _, mb := range s.members {
		s.do(mb, Start{})
	}
	s.run(10 * time.Second)
	if got := [][]string{masters(s, 1), masters(s, 2)}; fmt.Sprint(got) != "[[x] [x]]" {
		t.Fatalf("masters before the fault %v, want x for both", got)
	}
	if lastTo(x1, Master) != lastTo(x2, Master) {
		t.Errorf("x's instances became master at +%s and +%s, want together", lastTo(x1, Master), lastTo(x2, Master))
	}

	s.do(x1, FaultDetected{})
	s.run(20 * time.Second)
	if x1.machine.State() != Fault || x2.machine.State() != Backup {
		t.Fatalf("x after the fault: %s, %s; want FAULT, BACKUP", x1.machine.State(), x2.machine.State())
	}
	if y1.machine.State() != Master || y2.machine.State() != Master {
		t.Fatalf("y after x's fault: %s, %s; want MASTER, MASTER", y1.machine.State(), y2.machine.State())
	}
	// Both of x's resignations carried priority 0, so y took each over
	// after Skew_Time, not Master_Down_Interval.
	for _, mb := range []*simMember{y1, y2} {
		if got := lastTo(mb, Master); got != 10*time.Second+skew100 {
			t.Errorf("y VRID %d became master at +%s, want +%s", mb.cfg.VRID, got, 10*time.Second+skew100)
		}
	}

	s.do(x1, FaultCleared{})
	s.run(40 * time.Second)
	if got := [][]string{masters(s, 1), masters(s, 2)}; fmt.Sprint(got) != "[[x] [x]]" {
		t.Fatalf("masters after recovery %v, want x for both", got)
	}
	// x1 is a backup again at 20s and discards y's lower adverts; its
	// Master_Down_Timer opens the gate for both.
	if want := 20*time.Second + mdi(200); lastTo(x1, Master) != want || lastTo(x2, Master) != want {
		t.Errorf("x's instances became master again at +%s and +%s, want both at +%s", lastTo(x1, Master), lastTo(x2, Master), want)
	}
	// A fault releases at once; the only gap is y's Skew_Time then, and
	// none when x takes back over from a live y.
	slices.Sort(s.gaps)
	if want := []string{"VRID 1 at +10s", "VRID 2 at +10s"}; !slices.Equal(s.gaps, want) {
		t.Errorf("VIPs unheld at %v, want only %v", s.gaps, want)
	}
}
