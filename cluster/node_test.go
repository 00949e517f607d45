package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// The tests here run real memberlist nodes in this process, each on its
// own 127.0.0.x address with a port the kernel picks, so they send
// nothing beyond loopback and run in parallel with anything.

var testKey = []byte("lvsha-test-key-0123456789abcdef!") // 32 bytes

// testTiming is gossip fast enough for tests to converge in well under a
// second: a probe every 50 ms, dead after two missed ones.
func testTiming(o *Options) {
	o.GossipInterval = 20 * time.Millisecond
	o.GossipNodes = 3
	o.ProbeInterval = 50 * time.Millisecond
	o.ProbeTimeout = 25 * time.Millisecond
	o.SuspicionMult = 2
	// Long: after the join, changes must travel as broadcasts, not by
	// a push/pull that would mask broken ones.
	o.PushPullInterval = time.Hour
	o.RejoinInterval = time.Hour
}

// syncWriter passes log lines to the test until it ends: memberlist's
// goroutines can log after Shutdown returns, and t.Log after the test
// panics.
type syncWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return len(p), nil
	}
	return s.w.Write(p)
}

// startNode creates a node named name on 127.0.0.<host>, lets prepare set
// its state before it joins anyone, runs it until the test ends, and waits
// for it to leave.
func startNode(t testing.TB, name string, host byte, edit func(*Options), prepare ...func(*Node)) *Node {
	t.Helper()
	w := &syncWriter{w: t.Output()}
	o := Options{
		Name: name, Version: "test",
		BindAddr: netip.AddrFrom4([4]byte{127, 0, 0, host}), Key: testKey,
		Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	testTiming(&o)
	if edit != nil {
		edit(&o)
	}
	n, err := New(o)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	for _, p := range prepare {
		p(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run(%s): %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run(%s) did not return within 5s of its cancel", name)
		}
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return n
}

func seeds(ns ...*Node) func(*Options) {
	return func(o *Options) {
		for _, n := range ns {
			o.Seeds = append(o.Seeds, n.Addr())
		}
	}
}

// calm adds to edit a failure detector slow enough that a test run
// under -race on a loaded host declares no live node dead: a node
// suspected dead for a moment stops getting broadcasts, and a test of
// what broadcasts carry then fails for what it does not test. With
// testTiming's 25 ms probe timeout TestThreeDirectors failed 3 runs in
// 22 on a loaded host, a broadcast not seen within 5 s.
func calm(edit func(*Options)) func(*Options) {
	return func(o *Options) {
		if edit != nil {
			edit(o)
		}
		o.ProbeInterval, o.ProbeTimeout, o.SuspicionMult = 500*time.Millisecond, 250*time.Millisecond, 4
	}
}

// eventually polls cond every 10ms until it holds or limit passes.
func eventually(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// live lists the directors n considers alive, itself included.
func live(n *Node) []string {
	var out []string
	for _, d := range n.Directors() {
		if d.Alive {
			out = append(out, d.Name)
		}
	}
	slices.Sort(out)
	return out
}

func director(n *Node, name string) (Director, bool) {
	for _, d := range n.Directors() {
		if d.Name == name {
			return d, true
		}
	}
	return Director{}, false
}

func digestsFor(config byte, web byte) Digests {
	return Digests{Config: [32]byte{config}, VirtualServers: map[string]Short{"web": {web}, "dns": {2}}, Instances: map[string]Short{"vi1": {3}}}
}

// TestThreeDirectors joins three nodes and checks each kind of state gets
// across: what was set before the join by push/pull, what changes after
// by broadcast alone (push/pull is an hour away), and a drifted config by
// name.
func TestThreeDirectors(t *testing.T) {
	rs := RealServer{"web", netip.MustParseAddrPort("192.0.2.10:80")}
	lb1 := startNode(t, "lb1", 1, calm(nil), func(n *Node) {
		n.SetDigests(digestsFor(1, 1))
		n.SetHealth(rs, HealthUp) // before anyone joins: reaches them by push/pull
	})
	lb2 := startNode(t, "lb2", 2, calm(seeds(lb1)), func(n *Node) { n.SetDigests(digestsFor(1, 1)) })
	lb3 := startNode(t, "lb3", 3, calm(seeds(lb1, lb2)), func(n *Node) { n.SetDigests(digestsFor(9, 7)) }) // "web" drifted on lb3

	all := []string{"lb1", "lb2", "lb3"}
	for _, n := range []*Node{lb1, lb2, lb3} {
		eventually(t, "every node sees three live directors", 5*time.Second, func() bool { return slices.Equal(live(n), all) })
	}
	eventually(t, "lb3 has lb1's pre-join health by push/pull", 5*time.Second, func() bool {
		v := lb3.Views(rs)
		return len(v) == 1 && v[0] == Seen{"lb1", HealthUp}
	})

	start := time.Now()
	lb2.SetHealth(rs, HealthDown)
	lb3.SetHealth(rs, HealthUp)
	lb3.SetInstance(Instance{Name: "vi1", VRID: 51, State: StateMaster, Priority: 140, Addr: netip.MustParseAddr("192.0.2.3")})
	want := []Seen{{"lb1", HealthUp}, {"lb2", HealthDown}, {"lb3", HealthUp}}
	eventually(t, "lb1 sees every director's view of the real server", 5*time.Second, func() bool { return slices.Equal(lb1.Views(rs), want) })
	t.Logf("a health change reached lb1 by broadcast in %s", time.Since(start).Round(time.Millisecond))
	if v := Consensus(ConsensusQuorum, "lb1", lb1.Views(rs)); v.Down || v.String() != "1 of 3 see it down (lb1=up lb2=down lb3=up)" {
		t.Errorf("quorum on lb1: down %t, %s; want up, 1 of 3", v.Down, v)
	}
	eventually(t, "lb1 sees lb3 master of vi1 at 140", 5*time.Second, func() bool {
		ms := lb1.Members()
		if len(ms) != 3 || ms[2].Name != "lb3" || ms[2].Health != nil {
			return false
		}
		d := ms[2]
		return len(d.Instances) == 1 && d.Instances[0].State == StateMaster && d.Instances[0].Priority == 140 &&
			d.Instances[0].Addr == netip.MustParseAddr("192.0.2.3")
	})

	// Drift: lb1 has lb3's per-object digests from the push/pull of the
	// join, its config digest also from the node meta.
	eventually(t, "lb1 reports lb3, and only lb3, as drifted on web", 5*time.Second, func() bool {
		ds := lb1.Directors()
		drift := DriftOf(ds[0], ds[1:])
		return len(drift) == 1 && drift[0].Director == "lb3" && slices.Equal(drift[0].VirtualServers, []string{"web"}) && drift[0].Named
	})

	// A newer change of the same real server wins over the older.
	lb2.SetHealth(rs, HealthUp)
	eventually(t, "lb1 sees lb2's newer verdict", 5*time.Second, func() bool {
		return slices.Equal(lb1.Views(rs), []Seen{{"lb1", HealthUp}, {"lb2", HealthUp}, {"lb3", HealthUp}})
	})
}

// TestWrongKeyCannotJoin checks a director with another key neither joins
// nor learns anything: every message is authenticated with the key.
func TestWrongKeyCannotJoin(t *testing.T) {
	lb1 := startNode(t, "lb1", 11, nil)
	lb1.SetHealth(RealServer{"web", netip.MustParseAddrPort("192.0.2.10:80")}, HealthDown)
	other := []byte("another-key-0123456789abcdefghij")
	lb2 := startNode(t, "lb2", 12, func(o *Options) {
		seeds(lb1)(o)
		o.Key = other
	})
	if got, err := lb2.ml.Join([]string{lb1.Addr().String()}); got != 0 || err == nil {
		t.Errorf("Join with the wrong key: %d joined, error %v; want 0 and an error", got, err)
	}
	// Run's own join has happened too; give gossip a few probe rounds.
	time.Sleep(500 * time.Millisecond)
	if l1, l2 := live(lb1), live(lb2); !slices.Equal(l1, []string{"lb1"}) || !slices.Equal(l2, []string{"lb2"}) {
		t.Errorf("live directors: lb1 sees %v, lb2 sees %v; want each only itself", l1, l2)
	}
	if len(lb2.Directors()) != 1 {
		t.Errorf("lb2 knows %d directors, want only itself", len(lb2.Directors()))
	}

	if _, err := New(Options{Name: "x", BindAddr: netip.MustParseAddr("127.0.0.13"), Key: testKey[:16]}); err == nil || !strings.Contains(err.Error(), "never sent in plaintext") {
		t.Errorf("New with a 16-byte key: %v, want the 32-byte error", err)
	}
	if _, err := New(Options{Name: "x", BindAddr: netip.MustParseAddr("127.0.0.13")}); err == nil {
		t.Error("New without a key succeeded, want an error: no plaintext cluster")
	}
}

// cutter drops everything a node sends to the addresses cut, which, done
// on both sides, is a network partition between them.
type cutter struct {
	memberlist.NodeAwareTransport
	mu  sync.Mutex
	cut map[netip.Addr]bool
}

var errCut = errors.New("link cut by the test")

func (c *cutter) isCut(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	return err == nil && c.cut[ap.Addr()]
}

func (c *cutter) set(cut bool, addrs ...netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range addrs {
		c.cut[a] = cut
	}
}

func (c *cutter) WriteTo(b []byte, addr string) (time.Time, error) {
	if c.isCut(addr) {
		return time.Now(), nil // lost on the wire, as UDP is
	}
	return c.NodeAwareTransport.WriteTo(b, addr)
}

func (c *cutter) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if c.isCut(a.Addr) {
		return time.Now(), nil
	}
	return c.NodeAwareTransport.WriteToAddress(b, a)
}

func (c *cutter) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if c.isCut(addr) {
		return nil, errCut
	}
	return c.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (c *cutter) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if c.isCut(a.Addr) {
		return nil, errCut
	}
	return c.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// TestPartitionHeals cuts lb3 off from lb1 and lb2 until each side
// declares the other dead, then restores the links. memberlist alone
// never talks to the dead again (gossip to the dead is cut to 100 ms
// here, from its 30 s), so without the periodic rejoin the cluster stays
// split; with it, it is one again within a few rejoin intervals, and
// state flows again.
func TestPartitionHeals(t *testing.T) {
	tests := []struct {
		name      string
		rejoin    time.Duration
		wantHeals bool
	}{
		{"without rejoin it stays split", time.Hour, false},
		{"the periodic rejoin heals it", 200 * time.Millisecond, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := byte(20 + 10*i)
			cutters := map[string]*cutter{}
			opts := func(name string, peers ...*Node) func(*Options) {
				return func(o *Options) {
					seeds(peers...)(o)
					o.RejoinInterval = tt.rejoin
					o.gossipToTheDead = 100 * time.Millisecond
					o.wrapTransport = func(nt memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
						c := &cutter{NodeAwareTransport: nt, cut: map[netip.Addr]bool{}}
						cutters[name] = c
						return c
					}
				}
			}
			lb1 := startNode(t, "lb1", base+1, opts("lb1"))
			lb2 := startNode(t, "lb2", base+2, opts("lb2", lb1))
			lb3 := startNode(t, "lb3", base+3, opts("lb3", lb1, lb2))
			// lb1 has no seeds of its own: it learns lb3 is back only
			// from lb3's rejoin. lb2 and lb3 rejoin lb1.
			all := []string{"lb1", "lb2", "lb3"}
			for _, n := range []*Node{lb1, lb2, lb3} {
				eventually(t, "three live directors before the cut", 5*time.Second, func() bool { return slices.Equal(live(n), all) })
			}

			a1, a2, a3 := lb1.Addr().Addr(), lb2.Addr().Addr(), lb3.Addr().Addr()
			cutters["lb1"].set(true, a3)
			cutters["lb2"].set(true, a3)
			cutters["lb3"].set(true, a1, a2)
			eventually(t, "lb1 declares lb3 dead", 10*time.Second, func() bool { return slices.Equal(live(lb1), []string{"lb1", "lb2"}) })
			eventually(t, "lb3 declares lb1 and lb2 dead", 10*time.Second, func() bool { return slices.Equal(live(lb3), []string{"lb3"}) })
			// Past gossip to the dead: from here on memberlist itself
			// sends nothing across.
			time.Sleep(300 * time.Millisecond)

			cutters["lb1"].set(false, a3)
			cutters["lb2"].set(false, a3)
			cutters["lb3"].set(false, a1, a2)
			healed := func() bool { return slices.Equal(live(lb1), all) && slices.Equal(live(lb3), all) }
			if !tt.wantHeals {
				deadline := time.Now().Add(2 * time.Second)
				for time.Now().Before(deadline) {
					if healed() {
						t.Fatalf("the cluster healed without rejoin: the test no longer shows what rejoin is for")
					}
					time.Sleep(50 * time.Millisecond)
				}
				return
			}
			start := time.Now()
			eventually(t, "lb1 and lb3 see three live directors again", 10*time.Second, healed)
			t.Logf("healed %s after the links came back (rejoin every %s)", time.Since(start).Round(time.Millisecond), tt.rejoin)
			rs := RealServer{"web", netip.MustParseAddrPort("192.0.2.10:80")}
			lb3.SetHealth(rs, HealthDown)
			eventually(t, "lb1 hears lb3 again", 5*time.Second, func() bool { return slices.Equal(lb1.Views(rs), []Seen{{"lb3", HealthDown}}) })
		})
	}
}

// TestLeaveIsSeenAtOnce checks a stopping director says goodbye: the
// others drop it without waiting for the failure detector.
func TestLeaveIsSeenAtOnce(t *testing.T) {
	lb1 := startNode(t, "lb1", 41, func(o *Options) { o.ProbeInterval, o.ProbeTimeout = time.Hour, time.Second })
	o := Options{Name: "lb2", BindAddr: netip.MustParseAddr("127.0.0.42"), Key: testKey, Seeds: []netip.AddrPort{lb1.Addr()}}
	testTiming(&o)
	o.ProbeInterval, o.ProbeTimeout = time.Hour, time.Second // no failure detector: only the leave can tell
	lb2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lb2.Run(ctx) }()
	eventually(t, "lb1 sees lb2", 5*time.Second, func() bool { return slices.Equal(live(lb1), []string{"lb1", "lb2"}) })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its cancel")
	}
	eventually(t, "lb1 sees lb2 gone", 2*time.Second, func() bool { return slices.Equal(live(lb1), []string{"lb1"}) })
	if d, ok := director(lb1, "lb2"); !ok || d.Alive {
		t.Errorf("lb1's record of lb2: %+v, %t; want it kept, not alive", d, ok)
	}
}

// TestReloadDriftAndSplitBrain checks what a running director's changes
// show the others: a reload's new config digest and the names of what
// changed, pushed at once, and two masters for one instance as a split
// brain that both sides resolve alike.
func TestReloadDriftAndSplitBrain(t *testing.T) {
	// Push/pull stays an hour away (testTiming): the reload's names must
	// come with the state the reload pushes.
	lb1 := startNode(t, "lb1", 51, nil, func(n *Node) { n.SetDigests(digestsFor(1, 1)) })
	lb2 := startNode(t, "lb2", 52, seeds(lb1), func(n *Node) { n.SetDigests(digestsFor(1, 1)) })
	eventually(t, "two live directors", 5*time.Second, func() bool { return slices.Equal(live(lb1), []string{"lb1", "lb2"}) })
	drift := func() []Drift {
		ds := lb1.Directors()
		return DriftOf(ds[0], ds[1:])
	}
	if d := drift(); len(d) != 0 {
		t.Fatalf("drift before the reload: %+v, want none", d)
	}

	lb2.SetDigests(digestsFor(2, 9)) // a reload that changed "web"
	eventually(t, "lb1 names web as drifted on lb2", 5*time.Second, func() bool {
		d := drift()
		return len(d) == 1 && d[0].Director == "lb2" && d[0].Named && slices.Equal(d[0].VirtualServers, []string{"web"})
	})

	lb1.SetInstance(Instance{Name: "vi1", VRID: 51, State: StateMaster, Priority: 100, Addr: netip.MustParseAddr("192.0.2.1")})
	lb2.SetInstance(Instance{Name: "vi1", VRID: 51, State: StateMaster, Priority: 100, Addr: netip.MustParseAddr("192.0.2.2")})
	for _, n := range []*Node{lb1, lb2} {
		eventually(t, "a split brain on vi1, lb2 keeping master", 5*time.Second, func() bool {
			sb := SplitBrains(n.Members())
			return len(sb) == 1 && sb[0].Instance == "vi1" && ShouldYield(sb[0], "lb1") && !ShouldYield(sb[0], "lb2")
		})
	}
	lb1.SetInstance(Instance{Name: "vi1", VRID: 51, State: StateBackup, Priority: 100, Addr: netip.MustParseAddr("192.0.2.1")})
	eventually(t, "lb2 sees the split brain resolved", 5*time.Second, func() bool { return len(SplitBrains(lb2.Directors())) == 0 })
}

// TestBurstPushesState checks a burst of changes too many to gossip (a
// mass failure) reaches the others whole and at once, by a pushed full
// state, not at gossip's 25 changes a packet nor at the next push/pull
// (an hour away here).
func TestBurstPushesState(t *testing.T) {
	lb1 := startNode(t, "lb1", 81, nil)
	lb2 := startNode(t, "lb2", 82, seeds(lb1))
	eventually(t, "two live directors", 5*time.Second, func() bool { return slices.Equal(live(lb1), []string{"lb1", "lb2"}) })
	const n = 5000
	rsOf := func(i int) RealServer {
		return RealServer{"web", netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 80)}
	}
	start := time.Now()
	for i := range n {
		lb2.SetHealth(rsOf(i), HealthDown)
	}
	if q := lb2.queue.len(); q > maxQueued {
		t.Errorf("%d changes queued after the burst, want at most %d", q, maxQueued)
	}
	eventually(t, "lb1 has all of lb2's verdicts", 5*time.Second, func() bool {
		d, _ := director(lb1, "lb2")
		if len(d.Health) != n {
			return false
		}
		for _, h := range d.Health {
			if h != HealthDown {
				return false
			}
		}
		return true
	})
	t.Logf("%d changes reached lb1 in %s", n, time.Since(start).Round(time.Millisecond))
}

// TestPing: a live director answers a ping; one that stopped does not,
// long before the failure detector would declare it dead; one never
// known is an error at once.
func TestPing(t *testing.T) {
	slow := func(o *Options) { o.ProbeInterval, o.ProbeTimeout = time.Hour, 200*time.Millisecond }
	lb1 := startNode(t, "lb1", 46, slow)
	o := Options{Name: "lb2", BindAddr: netip.MustParseAddr("127.0.0.47"), Key: testKey, Seeds: []netip.AddrPort{lb1.Addr()}}
	testTiming(&o)
	slow(&o)
	lb2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- lb2.Run(ctx) }()
	eventually(t, "lb1 sees lb2", 5*time.Second, func() bool { return slices.Equal(live(lb1), []string{"lb1", "lb2"}) })
	if err := lb1.Ping("lb2"); err != nil {
		t.Errorf("ping of a live lb2: %v", err)
	}
	if err := lb1.Ping("nosuch"); err == nil || !strings.Contains(err.Error(), "not a live director") {
		t.Errorf("ping of an unknown director: %v", err)
	}
	// Gone without a leave, as a SIGKILL: memberlist shut down under Run
	// (taking Close's once, so Run's return does not leave).
	lb2.closeOnce.Do(func() {
		if err := lb2.ml.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	if err := lb1.Ping("lb2"); err == nil {
		t.Error("a stopped lb2 answered a ping")
	}
	if !slices.Equal(live(lb1), []string{"lb1", "lb2"}) {
		t.Errorf("lb1 sees %v alive; the test wanted lb2's death not yet detected", live(lb1))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its cancel")
	}
}
