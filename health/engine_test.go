package health

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// logBuf collects log output for assertions; safe for concurrent use.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fakeNet stands in for the network in engine tests, which run on
// virtual time (testing/synctest), where real sockets cannot block
// durably: each real server answers as set, and its probes are counted.
type fakeNet struct {
	mu      sync.Mutex
	results map[netip.AddrPort]Result // absent: OK
	hang    map[netip.AddrPort]bool   // probes block until cancelled
	probes  map[netip.AddrPort]int
	running int // probes in Check now
}

func newFakeNet() *fakeNet {
	return &fakeNet{results: map[netip.AddrPort]Result{}, hang: map[netip.AddrPort]bool{}, probes: map[netip.AddrPort]int{}}
}

var refused = Result{Message: "connection refused", Err: errors.New("connect: connection refused")}

// set makes rs answer with r from now on.
func (f *fakeNet) set(rs netip.AddrPort, r Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results[rs] = r
}

func (f *fakeNet) count(rs netip.AddrPort) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probes[rs]
}

func (f *fakeNet) newChecker(_ string, rs netip.AddrPort, c *conf.Check) (Checker, error) {
	if c.ConnectPort != 0 {
		rs = netip.AddrPortFrom(rs.Addr(), c.ConnectPort)
	}
	return &fakeChecker{net: f, rs: rs, desc: c.Type + " " + rs.String()}, nil
}

type fakeChecker struct {
	net  *fakeNet
	rs   netip.AddrPort
	desc string
}

func (c *fakeChecker) String() string { return c.desc }

func (c *fakeChecker) Check(ctx context.Context) Result {
	f := c.net
	f.mu.Lock()
	f.probes[c.rs]++
	r, ok := f.results[c.rs]
	hang := f.hang[c.rs]
	f.running++
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.running--; f.mu.Unlock() }()
	if hang {
		<-ctx.Done()
		return Result{At: time.Now(), Err: ctx.Err(), Message: ctx.Err().Error()}
	}
	if !ok {
		r = Result{OK: true, Message: "connected"}
	}
	r.At = time.Now()
	return r
}

// newTestEngine returns an engine on a fake network whose probes start at
// once (those with intervals of a minute or more only after half of it, so
// tests can look at a probe that has not run yet); start runs it until the
// test ends. Call it inside a synctest bubble.
func newTestEngine(t *testing.T) (e *Engine, net *fakeNet, logs *logBuf, start func()) {
	t.Helper()
	logs = &logBuf{}
	e = NewEngine(slog.New(slog.NewTextHandler(logs, nil)))
	e.jitter = func(d time.Duration) time.Duration {
		if d >= time.Minute {
			return d / 2
		}
		return 0
	}
	net = newFakeNet()
	e.newChecker = net.newChecker
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	start = func() { go func() { done <- e.Run(ctx) }() }
	t.Cleanup(func() {
		cancel()
		// In the bubble this cannot hang: a Run that never returned
		// would leave the bubble deadlocked, which fails the test.
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return e, net, logs, start
}

// settle lets virtual time pass by d and every goroutine of the bubble
// finish what that made due.
func settle(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func tcpCheck(interval time.Duration, rise, fall int) *conf.Check {
	return &conf.Check{Type: "tcp", Interval: interval, RetryInterval: interval, Timeout: interval / 2, Rise: rise, Fall: fall}
}

func vs(name string, c *conf.Check, rss ...netip.AddrPort) conf.VirtualServer {
	v := conf.VirtualServer{Name: name, Check: c}
	for _, rs := range rss {
		v.RealServers = append(v.RealServers, conf.RealServer{Address: rs, Weight: 1, Check: c})
	}
	return v
}

func config(vss ...conf.VirtualServer) *conf.Config { return &conf.Config{VirtualServers: vss} }

func status(e *Engine, k Key) Status { return e.Snapshot()[k] }

// updated reports whether an update was signalled, consuming it.
func updated(e *Engine) bool {
	select {
	case <-e.Updates():
		return true
	default:
		return false
	}
}

var (
	rs1 = netip.MustParseAddrPort("192.0.2.1:80")
	rs2 = netip.MustParseAddrPort("192.0.2.2:80")
	rs6 = netip.MustParseAddrPort("[2001:db8::1]:80")
)

func TestEngineRiseFall(t *testing.T) {
	for _, rs := range []netip.AddrPort{rs1, rs6} {
		t.Run(rs.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const interval = 50 * time.Millisecond
				k := Key{"web", rs}
				e, net, logs, start := newTestEngine(t)
				e.Update(config(vs("web", tcpCheck(interval, 2, 2), rs)))
				if !updated(e) {
					t.Fatal("no update signalled for the configuration")
				}
				if s := status(e, k); !s.Up || s.Checked || s.Probe != "tcp "+rs.String() {
					t.Fatalf("before Run: %+v, want up, unchecked, tcp probe", s)
				}
				start()
				synctest.Wait()
				if s := status(e, k); !s.Checked || !s.Up || !s.Last.OK || s.Transitions != 0 {
					t.Fatalf("healthy server after the first probe: %+v", s)
				}

				net.set(rs, refused)
				settle(interval) // one failure of two
				if s := status(e, k); !s.Up || s.Last.OK {
					t.Fatalf("after one failure with fall 2: %+v, want still up", s)
				}
				settle(interval)
				s := status(e, k)
				if s.Up || s.Transitions != 1 || s.Last.OK || s.Last.Err == nil {
					t.Fatalf("after two failures: %+v, want down, 1 transition and a failed last result", s)
				}
				if !updated(e) {
					t.Fatal("no update signalled for the down transition")
				}
				l := logs.String()
				for _, want := range []string{"state=down", "vs=web", "rs=" + rs.String(), "probe=", "error=", "connection refused"} {
					if !strings.Contains(l, want) {
						t.Errorf("down log lacks %q:\n%s", want, l)
					}
				}

				net.set(rs, Result{OK: true})
				settle(interval)
				if e.Up("web", rs) {
					t.Fatal("up after one success with rise 2")
				}
				settle(interval)
				if s := status(e, k); !s.Up || s.Transitions != 2 || !s.Last.OK {
					t.Fatalf("after two successes: %+v, want up, 2 transitions", s)
				}
				if !updated(e) || !strings.Contains(logs.String(), "state=up") {
					t.Errorf("up transition not signalled or not logged:\n%s", logs.String())
				}
			})
		})
	}
}

// TestEngineDedup: identical checks of one backend in several virtual
// servers are one probe; checks that differ in any field are not.
func TestEngineDedup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 100 * time.Millisecond
		e, net, _, start := newTestEngine(t)
		e.Update(config(
			vs("a", tcpCheck(interval, 2, 2), rs1),
			vs("b", tcpCheck(interval, 2, 2), rs1),
			// Same backend, different fall: a separate probe.
			vs("c", tcpCheck(interval, 2, 3), rs2),
			vs("d", tcpCheck(interval, 2, 2), rs2),
		))
		e.mu.Lock()
		n := len(e.probes)
		e.mu.Unlock()
		if n != 3 {
			t.Fatalf("%d probes for a, b (shared), c, d; want 3", n)
		}
		start()
		const window = time.Second
		settle(window)
		s := e.Snapshot()
		if !s[Key{"a", rs1}].Last.At.Equal(s[Key{"b", rs1}].Last.At) {
			t.Errorf("a and b saw different probes: %v vs %v", s[Key{"a", rs1}].Last.At, s[Key{"b", rs1}].Last.At)
		}
		// At start and once per interval through the window.
		want := int(window/interval) + 1
		if got := net.count(rs1); got != want {
			t.Errorf("shared backend got %d probes in %v, want %d (one probe)", got, window, want)
		}
		if got := net.count(rs2); got != 2*want {
			t.Errorf("backend with two distinct checks got %d probes in %v, want %d", got, window, 2*want)
		}
	})
}

func TestExecProbesNotShared(t *testing.T) {
	c := &conf.Check{Type: "exec", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 1,
		Command: []string{"true"}}
	rs := netip.MustParseAddrPort("127.0.0.1:80")
	e := NewEngine(slog.New(slog.DiscardHandler))
	e.Update(config(vs("a", c, rs), vs("b", c, rs)))
	if n := len(e.probes); n != 2 {
		t.Fatalf("%d exec probes for two virtual servers, want 2: the environment differs", n)
	}
}

func TestEngineUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, dead := rs1, rs2
		noCheck := netip.MustParseAddrPort("192.0.2.3:9")
		const interval = 50 * time.Millisecond
		e, net, _, start := newTestEngine(t)
		net.set(dead, refused)
		plain := vs("plain", nil, noCheck)
		e.Update(config(vs("web", tcpCheck(interval, 2, 1), up, dead), plain))
		start()
		synctest.Wait()
		kDead, kUp := Key{"web", dead}, Key{"web", up}
		if e.Up("web", dead) || !status(e, kUp).Checked {
			t.Fatalf("after the first probes: %v", e.Snapshot())
		}
		before := e.Snapshot()

		tests := []struct {
			name  string
			cfg   *conf.Config
			check func(t *testing.T, s map[Key]Status)
		}{
			{
				name: "add a virtual server, keep the rest",
				cfg:  config(vs("web", tcpCheck(interval, 2, 1), up, dead), plain, vs("new", nil, noCheck)),
				check: func(t *testing.T, s map[Key]Status) {
					if st := s[kDead]; st.Up || st.Transitions != 1 || !st.Since.Equal(before[kDead].Since) {
						t.Errorf("unchanged down probe lost its state: %+v", st)
					}
					if st := s[Key{"new", noCheck}]; !st.Up || st.Probe != "none" {
						t.Errorf("real server without check: %+v", st)
					}
				},
			},
			{
				name: "change the probe of one server",
				cfg: config(
					vs("web", tcpCheck(interval, 2, 1), up),
					conf.VirtualServer{Name: "web", RealServers: []conf.RealServer{{Address: dead, Check: tcpCheck(time.Hour, 2, 1)}}},
				),
				check: func(t *testing.T, s map[Key]Status) {
					if st := s[kDead]; !st.Up || st.Checked || st.Transitions != 0 {
						t.Errorf("changed probe kept old state: %+v", st)
					}
					if _, ok := s[Key{"plain", noCheck}]; ok {
						t.Errorf("removed virtual server still in snapshot")
					}
					if !e.Up("plain", noCheck) {
						t.Errorf("unknown key reported down")
					}
					if st := s[kUp]; !st.Checked {
						t.Errorf("unchanged probe restarted: %+v", st)
					}
				},
			},
			{
				name: "remove everything",
				cfg:  config(),
				check: func(t *testing.T, s map[Key]Status) {
					if len(s) != 0 {
						t.Errorf("snapshot after removing all: %v", s)
					}
					e.mu.Lock()
					defer e.mu.Unlock()
					if len(e.probes) != 0 {
						t.Errorf("%d probes left", len(e.probes))
					}
				},
			},
		}
		for _, tt := range tests {
			e.Update(tt.cfg)
			if !updated(e) {
				t.Errorf("%s: no update signalled", tt.name)
			}
			tt.check(t, e.Snapshot())
			synctest.Wait()
		}
		// A removed probe stops probing.
		n := net.count(up)
		settle(10 * interval)
		if m := net.count(up); m != n {
			t.Fatalf("removed probe still probing: %d -> %d", n, m)
		}
	})
}

// TestEngineRunStopsEverything: cancelling Run cancels the probes in
// flight and returns once they have; nothing probes until Run runs again,
// which resumes every probe.
func TestEngineRunStopsEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 20 * time.Millisecond
		e := NewEngine(slog.New(slog.DiscardHandler))
		e.jitter = func(time.Duration) time.Duration { return 0 }
		net := newFakeNet()
		e.newChecker = net.newChecker
		hung := rs2
		net.hang[hung] = true
		slow := tcpCheck(time.Minute, 1, 1)
		slow.Timeout = 30 * time.Second
		e.Update(config(vs("quick", tcpCheck(interval, 1, 1), rs1), vs("hung", slow, hung)))
		run := func() (context.CancelFunc, <-chan error) {
			ctx, cancel := context.WithCancel(t.Context())
			ret := make(chan error, 1)
			go func() { ret <- e.Run(ctx) }()
			return cancel, ret
		}
		cancel, ret := run()
		settle(10 * interval)
		if err := e.Run(t.Context()); err == nil {
			t.Fatal("second concurrent Run accepted")
		}
		net.mu.Lock()
		running := net.running
		net.mu.Unlock()
		if running != 1 || net.count(hung) != 1 {
			t.Fatalf("%d probes running, the hung one probed %d times; want it alone, once", running, net.count(hung))
		}
		cancel()
		if err := <-ret; err != nil {
			t.Fatalf("Run: %v", err)
		}
		// Run waits for its probes: none is left in Check.
		net.mu.Lock()
		running = net.running
		net.mu.Unlock()
		if running != 0 {
			t.Fatalf("%d probes still running after Run returned", running)
		}
		if s := status(e, Key{"hung", hung}); s.Checked {
			t.Errorf("a probe cancelled by the end of Run was recorded: %+v", s)
		}
		n := net.count(rs1)
		settle(10 * interval)
		if m := net.count(rs1); m != n {
			t.Fatalf("probing after Run returned: %d -> %d probes", n, m)
		}

		cancel, ret = run()
		settle(interval)
		if m := net.count(rs1); m <= n {
			t.Errorf("no probe after a second Run: %d -> %d", n, m)
		}
		cancel()
		if err := <-ret; err != nil {
			t.Fatalf("second Run: %v", err)
		}
	})
}

func TestJitterSpreadsFirstRuns(t *testing.T) {
	e := NewEngine(slog.New(slog.DiscardHandler))
	const interval = time.Second
	seen := make(map[time.Duration]bool)
	for range 1000 {
		d := e.jitter(interval)
		if d < 0 || d >= interval {
			t.Fatalf("jitter %v outside [0, %v)", d, interval)
		}
		seen[d/(interval/10)] = true
	}
	if len(seen) != 10 {
		t.Fatalf("1000 jitters hit %d of 10 tenths of the interval", len(seen))
	}
}

// TestRetryInterval: an up server that fails is probed again after
// retry_interval, not interval, until it falls (keepalived's
// delay_before_retry). The interval here is far longer than the test, so
// only retries can bring the server down.
func TestRetryInterval(t *testing.T) {
	const interval = 50 * time.Second
	for _, tc := range []struct {
		name     string
		retry    time.Duration
		wantDown bool
	}{
		{"retries bring it down", 20 * time.Millisecond, true},
		{"a retry of the interval waits for the interval", interval, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := tcpCheck(interval, 1, 3)
				c.RetryInterval = tc.retry
				e, net, _, start := newTestEngine(t)
				net.set(rs1, refused)
				e.Update(config(vs("web", c, rs1)))
				start()
				settle(3 * 20 * time.Millisecond)
				if down := !e.Up("web", rs1); down != tc.wantDown {
					t.Fatalf("down = %v after %d probes, want %v", down, net.count(rs1), tc.wantDown)
				}
				if want := map[bool]int{true: 3, false: 1}[tc.wantDown]; net.count(rs1) != want {
					t.Errorf("%d probes, want %d", net.count(rs1), want)
				}
			})
		})
	}
}

// TestStartDown: with start_down a real server is down until its first
// successful probes, and the engine reports the change.
func TestStartDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 20 * time.Millisecond
		c := tcpCheck(interval, 2, 2)
		c.StartDown = true
		e, _, _, start := newTestEngine(t)
		e.Update(config(vs("web", c, rs1)))
		updated(e)
		if e.Up("web", rs1) {
			t.Fatal("start_down server up before any probe")
		}
		start()
		synctest.Wait()
		if e.Up("web", rs1) {
			t.Fatal("start_down server up after one success with rise 2")
		}
		settle(interval)
		if !e.Up("web", rs1) || !updated(e) {
			t.Fatal("not up, or not signalled, after 2 successes")
		}
		if s := status(e, Key{"web", rs1}); s.Transitions != 1 {
			t.Errorf("transitions = %d, want 1 (down to up)", s.Transitions)
		}
	})
}

// TestEngineDynamicWeight: a dynamic_weight exec check's weight reaches
// Weight and signals an update; a plain success brings back the configured
// weight, and a failure takes the server down.
func TestEngineDynamicWeight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 20 * time.Millisecond
		c := &conf.Check{Type: "exec", Interval: interval, RetryInterval: interval, Timeout: interval / 2, Rise: 1, Fall: 1,
			DynamicWeight: true, Command: []string{"weigh"}}
		e, net, logs, start := newTestEngine(t)
		net.set(rs1, Result{OK: true, Weighted: true, Weight: 5, Code: 7, Message: "exit 7: weight 5"})
		e.Update(config(vs("web", c, rs1)))
		updated(e)
		if _, ok := e.Weight("web", rs1); ok {
			t.Fatal("weight reported before any probe")
		}
		start()
		synctest.Wait()
		if w, ok := e.Weight("web", rs1); !ok || w != 5 || !e.Up("web", rs1) {
			t.Fatalf("Weight = %d, %v, up %v; want 5, true, up", w, ok, e.Up("web", rs1))
		}
		if !updated(e) {
			t.Fatal("no update signalled for the weight change")
		}
		if !strings.Contains(logs.String(), "dynamic_weight=5") {
			t.Errorf("weight change not logged:\n%s", logs.String())
		}
		net.set(rs1, Result{OK: true, Message: "exit 0"})
		settle(interval)
		if _, ok := e.Weight("web", rs1); ok || !updated(e) {
			t.Fatal("configured weight not back, or not signalled, after exit 0")
		}
		net.set(rs1, Result{Code: 1, Message: "exit 1", Err: errors.New("exit status 1")})
		settle(interval)
		if e.Up("web", rs1) {
			t.Fatal("up after a failure with fall 1")
		}
	})
}

// fakeAlarm is an Alarm on a Go timer (synctest's virtual time), counting
// the deadlines it was set to.
type fakeAlarm struct {
	mu    sync.Mutex
	t     *time.Timer
	c     chan time.Time
	sets  int
	fired int
}

func newFakeAlarm() *fakeAlarm {
	a := &fakeAlarm{c: make(chan time.Time, 1)}
	a.t = time.AfterFunc(time.Hour, func() {
		a.mu.Lock()
		a.fired++
		a.mu.Unlock()
		select {
		case a.c <- time.Now():
		default:
		}
	})
	a.t.Stop()
	return a
}

func (a *fakeAlarm) Set(d time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sets++
	a.t.Stop()
	if !d.IsZero() {
		a.t.Reset(time.Until(d))
	}
}

func (a *fakeAlarm) C() <-chan time.Time { return a.c }

// With WakeOn, the scheduler sleeps on the alarm: every probe runs on
// its interval, each wake the alarm's.
func TestEngineWakeOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 50 * time.Millisecond
		e, net, _, start := newTestEngine(t)
		a := newFakeAlarm()
		e.WakeOn(a)
		e.Update(config(vs("web", tcpCheck(interval, 2, 2), rs1, rs2)))
		start()
		settle(time.Second)
		net.mu.Lock()
		p1, p2 := net.probes[rs1], net.probes[rs2]
		net.mu.Unlock()
		for _, n := range []int{p1, p2} {
			if n < 20 || n > 21 {
				t.Errorf("probes in 1 s at 50 ms: %d and %d, want 20 or 21 each", p1, p2)
				break
			}
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.fired < 19 {
			t.Errorf("the alarm fired %d times in 1 s of probes every 50 ms, want the scheduler's wakes on it", a.fired)
		}
	})
}

// TestEngineGroupsProbes: probes due within schedSlack of the one that
// wakes the scheduler start with it, and stay with it: each starts at the
// same moment as the first every round, an interval after its last run.
// A probe with a short interval is started early by at most a tenth of
// it.
func TestEngineGroupsProbes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		offset   time.Duration // the second probe's first run after the first's
		together bool
	}{
		{"1s, 5ms apart: one wakeup", time.Second, 5 * time.Millisecond, true},
		{"1s, 30ms apart: two", time.Second, 30 * time.Millisecond, false},
		{"20ms, 5ms apart: a tenth of 20ms is 2ms: two", 20 * time.Millisecond, 5 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, _, _, start := newTestEngine(t)
				firsts := 0
				e.jitter = func(time.Duration) time.Duration {
					firsts++
					if firsts == 1 {
						return 0
					}
					return tc.offset
				}
				var mu sync.Mutex
				starts := map[netip.AddrPort][]time.Time{}
				e.OnResult(func(k Key, r Result) {
					mu.Lock()
					starts[k.RealServer] = append(starts[k.RealServer], r.At)
					mu.Unlock()
				})
				e.Update(config(vs("web", tcpCheck(tc.interval, 1, 1), rs1, rs2)))
				start()
				settle(5*tc.interval + tc.interval/2)
				mu.Lock()
				defer mu.Unlock()
				a, b := starts[rs1], starts[rs2]
				if len(a) < 5 || len(b) < 5 {
					t.Fatalf("%d and %d runs in 5.5 intervals, want at least 5 each", len(a), len(b))
				}
				for i := range 5 {
					// Which of the two is armed first is the map's order.
					gap := b[i].Sub(a[i])
					if together := gap == 0; together != tc.together || (!together && gap != tc.offset && gap != -tc.offset) {
						t.Errorf("round %d: the probes ran %v apart, want %v", i, gap, map[bool]time.Duration{true: 0, false: tc.offset}[tc.together])
					}
					if i > 0 {
						if d := a[i].Sub(a[i-1]); d != tc.interval {
							t.Errorf("round %d: the first probe ran %v after its last run, want %v", i, d, tc.interval)
						}
						if d := b[i].Sub(b[i-1]); d != tc.interval {
							t.Errorf("round %d: the second probe ran %v after its last run, want %v", i, d, tc.interval)
						}
					}
				}
			})
		})
	}
}
