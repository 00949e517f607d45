package bfdwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/lvsha/lvsha/bfd"
	"github.com/lvsha/lvsha/bfd/runner"
	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	t1     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	local  = netip.MustParseAddr("10.0.0.2")
	master = netip.MustParseAddr("10.0.0.1")
	other  = netip.MustParseAddr("10.0.0.3")
)

// fakeSource is the instances: a map of followers the test edits, and
// the events each was sent.
type fakeSource struct {
	mu      sync.Mutex
	reads   int // calls of Followers
	fs      map[string]instance.Follower
	sent    map[string][]vrrp.Event
	changed chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{fs: map[string]instance.Follower{}, sent: map[string][]vrrp.Event{}, changed: make(chan struct{}, 1)}
}

// set adds or replaces the follower named f.Name and wakes the watcher.
func (s *fakeSource) set(f instance.Follower) {
	s.mu.Lock()
	name := f.Name
	f.Send = func(_ context.Context, ev vrrp.Event) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.sent[name] = append(s.sent[name], ev)
	}
	s.fs[name] = f
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *fakeSource) remove(name string) {
	s.mu.Lock()
	delete(s.fs, name)
	s.mu.Unlock()
	s.changed <- struct{}{}
}

func (s *fakeSource) Followers() []instance.Follower {
	s.mu.Lock()
	s.reads++
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.fs))
}

func (s *fakeSource) FollowersChanged() <-chan struct{} { return s.changed }

func (s *fakeSource) events() map[string][]vrrp.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]vrrp.Event{}
	for k, v := range s.sent {
		out[k] = slices.Clone(v)
	}
	return out
}

// fakeEndpoint records the sessions added and lets the test publish
// changes.
type fakeEndpoint struct {
	iface   string
	accept  runner.Peer
	changes chan runner.Change
	mu      sync.Mutex
	peers   map[netip.Addr]runner.Peer
	running bool
}

func (e *fakeEndpoint) Run(ctx context.Context) error {
	e.mu.Lock()
	e.running = true
	e.mu.Unlock()
	<-ctx.Done()
	e.mu.Lock()
	e.running = false
	e.mu.Unlock()
	return nil
}

func (e *fakeEndpoint) Add(_ context.Context, p runner.Peer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.peers[p.Addr] = p
	return nil
}

func (e *fakeEndpoint) Remove(_ context.Context, addr netip.Addr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.peers, addr)
	return nil
}

func (e *fakeEndpoint) SetAccept(_ context.Context, p runner.Peer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.accept = p
	return nil
}

func (e *fakeEndpoint) answering() runner.Peer {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accept
}

func (e *fakeEndpoint) Changes() <-chan runner.Change { return e.changes }

func (e *fakeEndpoint) Statuses() []runner.Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []runner.Status
	for a := range e.peers {
		out = append(out, runner.Status{Peer: a, State: bfd.Up, Added: true, DetectionTime: 50 * time.Millisecond})
	}
	return out
}

func (e *fakeEndpoint) Drops() map[bfd.DropReason]uint64 { return nil }

func (e *fakeEndpoint) added() map[netip.Addr]runner.Peer {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.peers)
}

// opener opens fakeEndpoints, failing the first fails opens.
type opener struct {
	mu    sync.Mutex
	eps   []*fakeEndpoint
	fails int
}

func (o *opener) open(iface string, _ netip.Addr, accept runner.Peer) (Endpoint, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fails > 0 {
		o.fails--
		return nil, errors.New("address in use")
	}
	e := &fakeEndpoint{iface: iface, accept: accept, changes: make(chan runner.Change, 8), peers: map[netip.Addr]runner.Peer{}}
	o.eps = append(o.eps, e)
	return e, nil
}

// live returns the endpoints opened and still running.
func (o *opener) live() []*fakeEndpoint {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*fakeEndpoint
	for _, e := range o.eps {
		e.mu.Lock()
		if e.running {
			out = append(out, e)
		}
		e.mu.Unlock()
	}
	return out
}

func bfdOf(interval time.Duration, mult int) *conf.BFD {
	return &conf.BFD{Interval: interval, Multiplier: mult}
}

// start runs a watcher over src until the test ends.
func start(t *testing.T, src *fakeSource, o *opener) *Watcher {
	w := New(slog.New(slog.NewTextHandler(io.Discard, nil)), src, o.open)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// TestSessionsFollowMasters: one local end per interface and address
// with bfd on, answering with the fastest timers asked there; one
// session per master followed, shared by the instances following it,
// with the fastest of their timers; a changed master moves the session;
// no instance with bfd closes the end.
func TestSessionsFollowMasters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, o := newFakeSource(), &opener{}
		src.set(instance.Follower{Name: "a", Interface: "eth0", Local: local, Master: master, BFD: bfdOf(10*time.Millisecond, 5)})
		src.set(instance.Follower{Name: "b", Interface: "eth0", Local: local, Master: master, BFD: bfdOf(20*time.Millisecond, 3)})
		src.set(instance.Follower{Name: "c", Interface: "eth0", Local: local, BFD: bfdOf(5*time.Millisecond, 4)}) // a master
		src.set(instance.Follower{Name: "off", Interface: "eth1", Local: netip.MustParseAddr("10.1.0.2"), Master: other})
		start(t, src, o)
		// The watcher reconciles followSettle after the changes began.
		reconciled := func() { time.Sleep(followSettle); synctest.Wait() }
		reconciled()
		live := o.live()
		if len(live) != 1 || live[0].iface != "eth0" {
			t.Fatalf("ends running: %d, want one on eth0", len(live))
		}
		e := live[0]
		if want := (runner.Peer{DesiredMinTx: 5 * time.Millisecond, RequiredMinRx: 5 * time.Millisecond, DetectMult: 3}); e.answering() != want {
			t.Errorf("answering with %+v, want %+v", e.answering(), want)
		}
		want := map[netip.Addr]runner.Peer{master: {Addr: master, DesiredMinTx: 10 * time.Millisecond, RequiredMinRx: 10 * time.Millisecond, DetectMult: 3}}
		if d := cmp.Diff(want, e.added(), cmpAddr); d != "" {
			t.Errorf("sessions (-want +got):\n%s", d)
		}

		// Failover elsewhere: a and b now follow other.
		src.set(instance.Follower{Name: "a", Interface: "eth0", Local: local, Master: other, BFD: bfdOf(10*time.Millisecond, 5)})
		src.set(instance.Follower{Name: "b", Interface: "eth0", Local: local, Master: other, BFD: bfdOf(10*time.Millisecond, 5)})
		reconciled()
		want = map[netip.Addr]runner.Peer{other: {Addr: other, DesiredMinTx: 10 * time.Millisecond, RequiredMinRx: 10 * time.Millisecond, DetectMult: 5}}
		if d := cmp.Diff(want, e.added(), cmpAddr); d != "" {
			t.Errorf("sessions after the masters changed (-want +got):\n%s", d)
		}
		// A reload slows the master c: the answered sessions follow.
		src.set(instance.Follower{Name: "c", Interface: "eth0", Local: local, BFD: bfdOf(20*time.Millisecond, 4)})
		reconciled()
		if want := (runner.Peer{DesiredMinTx: 10 * time.Millisecond, RequiredMinRx: 10 * time.Millisecond, DetectMult: 4}); e.answering() != want {
			t.Errorf("answering after the reload with %+v, want %+v", e.answering(), want)
		}

		for _, n := range []string{"a", "b", "c"} {
			src.remove(n)
			reconciled()
		}
		if n := len(o.live()); n != 0 {
			t.Errorf("%d ends running with no instance using bfd", n)
		}
	})
}

// TestMasterDown: a session's fall from Up to Down tells exactly the
// backups on that end following that peer with bfd on; a session that
// never was Up, or that the peer took down itself (AdminDown), tells
// nobody, and the latter is not counted as the session's failure.
func TestMasterDown(t *testing.T) {
	tests := []struct {
		name   string
		change runner.Change
		told   []string
	}{
		{"up to down", runner.Change{Peer: master, From: bfd.Up, To: bfd.Down, Diag: bfd.DiagControlDetectExpired, RemoteState: bfd.Down, LastHeard: t1, Interval: 10 * time.Millisecond},
			[]string{"a", "b"}},
		{"up to down, the peer says it lost us: alive", runner.Change{Peer: master, From: bfd.Up, To: bfd.Down, Diag: bfd.DiagNeighborDown, RemoteState: bfd.Down},
			nil},
		{"peer's admin down", runner.Change{Peer: master, From: bfd.Up, To: bfd.Down, Diag: bfd.DiagNeighborDown, RemoteState: bfd.AdminDown}, nil},
		{"init to down: never up", runner.Change{Peer: master, From: bfd.Init, To: bfd.Down, Diag: bfd.DiagControlDetectExpired}, nil},
		{"down to up", runner.Change{Peer: master, From: bfd.Init, To: bfd.Up}, nil},
		{"another peer", runner.Change{Peer: other, From: bfd.Up, To: bfd.Down, Diag: bfd.DiagControlDetectExpired, RemoteState: bfd.Down}, []string{"c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src, o := newFakeSource(), &opener{}
				b := bfdOf(10*time.Millisecond, 5)
				src.set(instance.Follower{Name: "a", Interface: "eth0", Local: local, Master: master, BFD: b})
				src.set(instance.Follower{Name: "b", Interface: "eth0", Local: local, Master: master, BFD: b})
				src.set(instance.Follower{Name: "c", Interface: "eth0", Local: local, Master: other, BFD: b})
				src.set(instance.Follower{Name: "nobfd", Interface: "eth0", Local: local, Master: master})
				src.set(instance.Follower{Name: "master", Interface: "eth0", Local: local, BFD: b})
				w := start(t, src, o)
				synctest.Wait()
				o.live()[0].changes <- tt.change
				synctest.Wait()
				got := src.events()
				var told []string
				for name, evs := range got {
					told = append(told, name)
					if d := cmp.Diff([]vrrp.Event{vrrp.MasterDown{Peer: tt.change.Peer, LastHeard: tt.change.LastHeard, Interval: tt.change.Interval}}, evs, cmpAddr); d != "" {
						t.Errorf("%s was sent (-want +got):\n%s", name, d)
					}
				}
				slices.Sort(told)
				if !slices.Equal(told, tt.told) {
					t.Errorf("told %v, want %v", told, tt.told)
				}
				downs := 0
				for _, s := range w.Sessions() {
					if s.Peer == tt.change.Peer.String() {
						downs = s.Downs
					}
				}
				// Up to Down is a failure, but for the peer's own AdminDown
				// (its graceful stop).
				if want := tt.change.From == bfd.Up && tt.change.To == bfd.Down && tt.change.RemoteState != bfd.AdminDown; (downs == 1) != want {
					t.Errorf("session downs %d, want a failure counted: %v", downs, want)
				}
			})
		})
	}
}

// TestOpenRetry: an end that fails to open is tried again after the
// retry interval, and its sessions are added then.
func TestOpenRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, o := newFakeSource(), &opener{fails: 1}
		src.set(instance.Follower{Name: "a", Interface: "eth0", Local: local, Master: master, BFD: bfdOf(10*time.Millisecond, 5)})
		<-src.changed // only the retry may open it again
		w := start(t, src, o)
		synctest.Wait()
		if n := len(o.live()); n != 0 {
			t.Fatalf("%d ends running after a failed open", n)
		}
		time.Sleep(w.retry)
		synctest.Wait()
		live := o.live()
		if len(live) != 1 || len(live[0].added()) != 1 {
			t.Fatalf("after the retry: %d ends running, want one watching the master", len(live))
		}
		if s := w.Sessions(); len(s) != 1 || !s[0].Watching || s[0].Peer != master.String() || !slices.Equal(s[0].Following, []string{"a"}) {
			t.Errorf("sessions %+v", s)
		}
	})
}

// A takeover's burst of changes, one per instance, each waking the
// watcher, is read once when the burst settles, not once per change:
// reading every instance per change was quadratic in their number.
func TestBurstReconcilesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, o := newFakeSource(), &opener{}
		start(t, src, o)
		synctest.Wait()
		src.mu.Lock()
		before := src.reads
		src.mu.Unlock()
		for n := range 200 {
			src.set(instance.Follower{Name: fmt.Sprint("vi", n), Interface: "eth0", Local: local, Master: master, BFD: bfdOf(10*time.Millisecond, 5)})
			time.Sleep(followSettle / 100)
			synctest.Wait()
		}
		time.Sleep(followSettle)
		synctest.Wait()
		src.mu.Lock()
		reads := src.reads - before
		src.mu.Unlock()
		// 200 changes over twice followSettle: two or three settles.
		if reads < 1 || reads > 3 {
			t.Errorf("the watcher read the followers %d times for 200 changes; want 1 to 3", reads)
		}
		if live := o.live(); len(live) != 1 || len(live[0].added()) != 1 {
			t.Errorf("after the burst: %d ends; want one, with the master's session", len(live))
		}
	})
}
