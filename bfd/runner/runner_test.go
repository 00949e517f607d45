package runner

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsha/lvsha/bfd"
	"github.com/lvsha/lvsha/bfd/transport"
)

// waitState reads ch until peer's session reaches want or limit passes.
func waitState(t *testing.T, ch <-chan Change, want bfd.State, limit time.Duration) Change {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case c := <-ch:
			if c.To == want {
				return c
			}
		case <-deadline:
			t.Fatalf("no %s within %v", want, limit)
		}
	}
}

// TestRunnersOnLoopback runs two runners on 127.0.0.31 and 127.0.0.32:
// both come Up, and when one dies (its sockets closed under it, so it
// sends nothing more, as on a crash) the other goes Down for a detection
// timeout within a generous multiple of the detection time.
func TestRunnersOnLoopback(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("127.0.0.31"), netip.MustParseAddr("127.0.0.32") // not transport test's 127.0.0.1
	peer := func(addr netip.Addr) Peer {
		return Peer{Addr: addr, DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 20 * time.Millisecond, DetectMult: 3}
	}
	open := func(local, remote netip.Addr) *Runner {
		r, err := Open(Config{Config: transport.Config{Interface: lo, Local: local}, Peers: []Peer{peer(remote)},
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("side", local)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := open(a, b), open(b, a)
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	doneA, doneB := make(chan struct{}), make(chan struct{})
	go func() { ra.Run(ctxA); close(doneA) }()
	go func() { rb.Run(ctxB); close(doneB) }()
	defer func() { stopA(); stopB(); <-doneA; <-doneB }()

	waitState(t, ra.Changes(), bfd.Up, 10*time.Second)
	waitState(t, rb.Changes(), bfd.Up, 10*time.Second)
	time.Sleep(200 * time.Millisecond) // let the polls settle at 20 ms
	if st, _ := ra.Status(b); st.State != bfd.Up || st.RemoteDiscr == 0 {
		t.Fatalf("status %+v", st)
	}
	rb.Close()
	stopped := time.Now()
	stopB()
	<-doneB
	c := waitState(t, ra.Changes(), bfd.Down, 5*time.Second)
	detect := 3 * 20 * time.Millisecond
	took := c.At.Sub(stopped)
	t.Logf("Down %v after the peer stopped (detection time %v), diag %q", took, detect, c.Diag)
	if c.Diag != bfd.DiagControlDetectExpired || took > 3*detect {
		t.Errorf("Down after %v with diag %q, want detection expired within %v", took, c.Diag, 3*detect)
	}
	// A watcher weighs an advert heard after LastHeard by Interval.
	if c.Interval != 20*time.Millisecond || c.LastHeard.After(stopped) || c.At.Sub(c.LastHeard) < detect {
		t.Errorf("Down's interval %v, last heard %v before the stop and %v before Down; want 20ms, and at least %v before Down",
			c.Interval, stopped.Sub(c.LastHeard), c.At.Sub(c.LastHeard), detect)
	}
	if d := ra.Drops(); len(d) != 0 {
		t.Errorf("drops %v", d)
	}
}

// startRunner opens and runs a runner on lo at local until the test ends.
func startRunner(t *testing.T, local netip.Addr, accept bool) *Runner {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Config: transport.Config{Interface: lo, Local: local},
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("side", local)}
	if accept {
		cfg.Accept = &Peer{DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 20 * time.Millisecond, DetectMult: 25}
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return r
}

// downs drains ch and returns the changes to Down in it.
func downs(ch <-chan Change) []Change {
	var out []Change
	for {
		select {
		case c := <-ch:
			if c.To == bfd.Down {
				out = append(out, c)
			}
		default:
			return out
		}
	}
}

// TestAddRemoveAccept: sessions added and removed while the runners run.
// Its sessions detect in 500 ms, not 60: the package's tests share the
// CPUs with the others', and a stall of the whole process (both ends)
// longer than the detection time is a real Down, not the one this test
// is after.
// A session one side adds the other answers (Accept); when the answering
// side adds it too, and when either lets it go while the other still
// watches, it stays Up: a backup's watch must not fail because its
// master's own interest changed.
func TestAddRemoveAccept(t *testing.T) {
	// Addresses of their own: the packages' tests run in parallel, and
	// transport's bind 127.0.0.1's port.
	a, b := netip.MustParseAddr("127.0.0.11"), netip.MustParseAddr("127.0.0.12")
	ra, rb := startRunner(t, a, true), startRunner(t, b, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peer := func(addr netip.Addr) Peer {
		return Peer{Addr: addr, DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 20 * time.Millisecond, DetectMult: 25}
	}
	if err := rb.Add(ctx, peer(a)); err != nil {
		t.Fatal(err)
	}
	waitState(t, rb.Changes(), bfd.Up, 5*time.Second)
	waitState(t, ra.Changes(), bfd.Up, 5*time.Second)
	check := func(r *Runner, peer netip.Addr, added bool) {
		t.Helper()
		st, ok := r.Status(peer)
		if !ok || st.State != bfd.Up || st.Added != added {
			t.Fatalf("session with %s: %+v (found %v), want Up, added %v", peer, st, ok, added)
		}
	}
	check(ra, b, false)
	check(rb, a, true)
	steps := []struct {
		name string
		do   func() error
		// a's and b's sessions are added
		wantA, wantB bool
	}{
		{"a adds b too", func() error { return ra.Add(ctx, peer(b)) }, true, true},
		{"b lets a go", func() error { return rb.Remove(ctx, a) }, true, false},
		{"b adds a again", func() error { return rb.Add(ctx, peer(a)) }, true, true},
		{"a lets b go", func() error { return ra.Remove(ctx, b) }, false, true},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		// Several round trips at the fast rate.
		time.Sleep(300 * time.Millisecond)
		check(ra, b, st.wantA)
		check(rb, a, st.wantB)
		if d := append(downs(ra.Changes()), downs(rb.Changes())...); len(d) > 0 {
			t.Fatalf("%s: sessions went down: %+v", st.name, d)
		}
	}
	// A answers b now; slower answering timers reach b's detection time
	// (a's multiplier times a's interval, above b's 20 ms).
	if err := ra.SetAccept(ctx, Peer{DesiredMinTx: 30 * time.Millisecond, RequiredMinRx: 30 * time.Millisecond, DetectMult: 4}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for st, _ := rb.Status(a); st.DetectionTime != 120*time.Millisecond; st, _ = rb.Status(a) {
		if time.Now().After(deadline) {
			t.Fatalf("b's detection time %v after a's SetAccept, want 120ms", st.DetectionTime)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Let go on both sides and added again: still the one session.
	if err := rb.Remove(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := ra.Add(ctx, peer(b)); err != nil {
		t.Fatal(err)
	}
	if got := len(ra.Statuses()); got != 1 {
		t.Fatalf("a has %d sessions, want 1", got)
	}
}

// TestAnswerLimits: without Accept, a peer's session is refused and
// counted; Remove without Accept forgets the session at once; a session
// nobody added is forgotten once its peer has been silent for acceptIdle.
func TestAnswerLimits(t *testing.T) {
	a, b, c := netip.MustParseAddr("127.0.0.21"), netip.MustParseAddr("127.0.0.22"), netip.MustParseAddr("127.0.0.23")
	ra, rc := startRunner(t, a, false), startRunner(t, c, true)
	lo, _ := net.InterfaceByName("lo")
	rb, err := Open(Config{Config: transport.Config{Interface: lo, Local: b}})
	if err != nil {
		t.Fatal(err)
	}
	ctxB, stopB := context.WithCancel(context.Background())
	doneB := make(chan struct{})
	go func() { rb.Run(ctxB); close(doneB) }()
	defer func() { stopB(); <-doneB }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peer := func(addr netip.Addr) Peer {
		return Peer{Addr: addr, DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 20 * time.Millisecond, DetectMult: 3}
	}
	for _, to := range []netip.Addr{a, c} {
		if err := rb.Add(ctx, peer(to)); err != nil {
			t.Fatal(err)
		}
	}
	waitState(t, rc.Changes(), bfd.Up, 5*time.Second)
	// b's first packet to a goes at once; the next a second later.
	deadline := time.Now().Add(3 * time.Second)
	for ra.Drops()[bfd.DropNoSession] == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := ra.Drops()[bfd.DropNoSession]; n == 0 || len(ra.Statuses()) != 0 {
		t.Fatalf("a without Accept: %d no-session drops, sessions %+v", n, ra.Statuses())
	}
	if err := rb.Remove(ctx, a); err != nil {
		t.Fatal(err)
	}
	if st := rb.Statuses(); len(st) != 1 || st[0].Peer != c {
		t.Fatalf("b after Remove(a): %+v", st)
	}
	stopB()
	<-doneB
	waitState(t, rc.Changes(), bfd.Down, 5*time.Second)
	deadline = time.Now().Add(acceptIdle + 3*time.Second)
	for len(rc.Statuses()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := rc.Statuses(); len(st) != 0 {
		t.Fatalf("c still has %+v %v after b stopped", st, acceptIdle)
	}
	if err := rb.Add(ctx, peer(c)); err == nil {
		t.Fatal("Add on a stopped runner succeeded")
	}
}

// TestStopSendsAdminDown: a runner that stops gracefully takes its
// sessions administratively down (RFC 5880 6.8.16), in either role: the
// peer goes Down by our word, diag "Neighbor Signaled Session Down" with
// the remote state AdminDown, not by its Detection Time running out
// (which would say "Control Detection Time Expired").
func TestStopSendsAdminDown(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	// run runs r until the returned stop, which waits for Run's end.
	run := func(r *Runner) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return func() { cancel(); <-done }
	}
	timers := Peer{DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 20 * time.Millisecond, DetectMult: 25}
	for i, stopWatcher := range []bool{true, false} {
		name := map[bool]string{true: "the watching side stops", false: "the answering side stops"}[stopWatcher]
		t.Run(name, func(t *testing.T) {
			a := netip.AddrFrom4([4]byte{127, 0, 0, byte(35 + 2*i)}) // answers
			b := a.Next()                                            // watches a
			accept := timers
			ra, err := Open(Config{Config: transport.Config{Interface: lo, Local: a}, Accept: &accept,
				Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("side", a)})
			if err != nil {
				t.Fatal(err)
			}
			watch := timers
			watch.Addr = a
			rb, err := Open(Config{Config: transport.Config{Interface: lo, Local: b}, Peers: []Peer{watch},
				Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("side", b)})
			if err != nil {
				t.Fatal(err)
			}
			stopA, stopB := run(ra), run(rb)
			waitState(t, rb.Changes(), bfd.Up, 10*time.Second)
			waitState(t, ra.Changes(), bfd.Up, 10*time.Second)
			stays, stop := ra.Changes(), stopB
			if !stopWatcher {
				stays, stop = rb.Changes(), stopA
			}
			stopped := time.Now()
			stop()
			c := waitState(t, stays, bfd.Down, 5*time.Second)
			t.Logf("Down %v after the peer's stop began (detection time 500 ms), diag %q, remote %s", c.At.Sub(stopped), c.Diag, c.RemoteState)
			if c.Diag != bfd.DiagNeighborDown || c.RemoteState != bfd.AdminDown {
				t.Errorf("Down with diag %q, remote state %s; want %q, AdminDown", c.Diag, c.RemoteState, bfd.DiagNeighborDown)
			}
		})
	}
}
