package health

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
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

// newTestEngine returns an engine whose probes start at once (those with
// intervals of a minute or more only after half of it, so tests can look at
// a probe that has not run yet), and runs it until the test ends, failing
// the test if Run does not return promptly.
func newTestEngine(t *testing.T) (*Engine, *logBuf, func()) {
	t.Helper()
	lb := &logBuf{}
	e := NewEngine(slog.New(slog.NewTextHandler(lb, nil)))
	e.jitter = func(d time.Duration) time.Duration {
		if d >= time.Minute {
			return d / 2
		}
		return 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := func() { go func() { done <- e.Run(ctx) }() }
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return e, lb, start
}

func tcpCheck(interval time.Duration, rise, fall int) *conf.Check {
	return &conf.Check{Type: "tcp", Interval: interval, Timeout: interval / 2, Rise: rise, Fall: fall}
}

func vs(name string, c *conf.Check, rss ...netip.AddrPort) conf.VirtualServer {
	v := conf.VirtualServer{Name: name, Check: c}
	for _, rs := range rss {
		v.RealServers = append(v.RealServers, conf.RealServer{Address: rs, Weight: 1, Check: c})
	}
	return v
}

func config(vss ...conf.VirtualServer) *conf.Config { return &conf.Config{VirtualServers: vss} }

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(e *Engine, k Key) Status { return e.Snapshot()[k] }

// acceptAndClose serves ln until it closes, counting connections.
func acceptAndClose(ln net.Listener, n *atomic.Int64) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return done
}

func TestEngineRiseFall(t *testing.T) {
	for _, host := range loopbacks {
		t.Run(host, func(t *testing.T) {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
			if err != nil {
				t.Fatal(err)
			}
			var conns atomic.Int64
			served := acceptAndClose(ln, &conns)
			rs := addrPort(t, ln.Addr())
			k := Key{"web", rs}

			e, logs, start := newTestEngine(t)
			e.Update(config(vs("web", tcpCheck(50*time.Millisecond, 2, 2), rs)))
			<-e.Updates() // the configuration change
			if s := status(e, k); !s.Up || s.Checked || s.Probe != "tcp "+net.JoinHostPort(host, strconv.Itoa(int(rs.Port()))) {
				t.Fatalf("before Run: %+v, want up, unchecked, tcp probe", s)
			}
			start()
			waitFor(t, "first probe", 2*time.Second, func() bool { return status(e, k).Checked })
			if s := status(e, k); !s.Up || !s.Last.OK || s.Transitions != 0 {
				t.Fatalf("healthy server: %+v", s)
			}

			ln.Close()
			<-served
			waitFor(t, "down", 2*time.Second, func() bool { return !e.Up("web", rs) })
			s := status(e, k)
			if s.Transitions != 1 || s.Last.OK || s.Last.Err == nil {
				t.Fatalf("after stop: %+v, want 1 transition and a failed last result", s)
			}
			// record signals just after releasing the state it changed.
			select {
			case <-e.Updates():
			case <-time.After(time.Second):
				t.Fatal("no update signalled for the down transition")
			}
			l := logs.String()
			for _, want := range []string{"state=down", "vs=web", "rs=" + rs.String(), "probe=", "error=", "connection refused"} {
				if !strings.Contains(l, want) {
					t.Errorf("down log lacks %q:\n%s", want, l)
				}
			}

			// Rebind the same port; retried since the port may linger.
			waitFor(t, "relisten", 2*time.Second, func() bool {
				ln, err = net.Listen("tcp", rs.String())
				return err == nil
			})
			served = acceptAndClose(ln, &conns)
			defer func() { ln.Close(); <-served }()
			waitFor(t, "up", 2*time.Second, func() bool { return e.Up("web", rs) })
			if s := status(e, k); s.Transitions != 2 || !s.Last.OK {
				t.Fatalf("after restart: %+v, want 2 transitions", s)
			}
			if !strings.Contains(logs.String(), "state=up") {
				t.Errorf("no up transition logged:\n%s", logs.String())
			}
		})
	}
}

func TestEngineDedup(t *testing.T) {
	shared, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var sharedConns atomic.Int64
	sharedDone := acceptAndClose(shared, &sharedConns)
	defer func() { shared.Close(); <-sharedDone }()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var otherConns atomic.Int64
	otherDone := acceptAndClose(other, &otherConns)
	defer func() { other.Close(); <-otherDone }()
	rs := addrPort(t, shared.Addr())
	rsOther := addrPort(t, other.Addr())

	const interval = 100 * time.Millisecond
	e, _, start := newTestEngine(t)
	e.Update(config(
		vs("a", tcpCheck(interval, 2, 2), rs),
		vs("b", tcpCheck(interval, 2, 2), rs),
		// Same backend, different fall: a separate probe.
		vs("c", tcpCheck(interval, 2, 3), rsOther),
		vs("d", tcpCheck(interval, 2, 2), rsOther),
	))
	e.mu.Lock()
	n := len(e.probes)
	e.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d probes for a, b (shared), c, d; want 3", n)
	}
	start()
	ka, kb := Key{"a", rs}, Key{"b", rs}
	waitFor(t, "first probes", 2*time.Second, func() bool {
		s := e.Snapshot()
		return s[ka].Checked && s[kb].Checked && s[Key{"c", rsOther}].Checked && s[Key{"d", rsOther}].Checked
	})
	s := e.Snapshot()
	if !s[ka].Last.At.Equal(s[kb].Last.At) {
		t.Fatalf("a and b saw different probes: %v vs %v", s[ka].Last.At, s[kb].Last.At)
	}
	s0, o0 := sharedConns.Load(), otherConns.Load()
	const window = time.Second
	time.Sleep(window)
	sharedN, otherN := sharedConns.Load()-s0, otherConns.Load()-o0
	// One probe connects at most once per interval; two would double it.
	limit := int64(window/interval) + 1
	if sharedN < 3 || sharedN > limit {
		t.Fatalf("shared backend got %d connections in %v, want 3..%d (one probe)", sharedN, window, limit)
	}
	if otherN <= limit {
		t.Fatalf("backend with two distinct probes got %d connections in %v, want more than %d", otherN, window, limit)
	}
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	done := acceptAndClose(ln, &conns)
	defer func() { ln.Close(); <-done }()
	up := addrPort(t, ln.Addr())
	dead := closedPort(t, "127.0.0.1")
	noCheck := netip.MustParseAddrPort("127.0.0.1:9")

	const interval = 50 * time.Millisecond
	e, _, start := newTestEngine(t)
	plain := vs("plain", nil, noCheck)
	e.Update(config(
		vs("web", tcpCheck(interval, 2, 1), up, dead),
		plain,
	))
	start()
	kDead, kUp := Key{"web", dead}, Key{"web", up}
	waitFor(t, "dead server down", 2*time.Second, func() bool { return !e.Up("web", dead) })
	waitFor(t, "live server checked", 2*time.Second, func() bool { return status(e, kUp).Checked })
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
		t.Run(tt.name, func(t *testing.T) {
			e.Update(tt.cfg)
			tt.check(t, e.Snapshot())
		})
	}
	// A removed probe stops connecting.
	time.Sleep(2 * interval)
	n := conns.Load()
	time.Sleep(4 * interval)
	if m := conns.Load(); m != n {
		t.Fatalf("removed probe still connecting: %d -> %d", n, m)
	}
}

func TestEngineRunStopsEverything(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	done := acceptAndClose(ln, &conns)
	defer func() { ln.Close(); <-done }()
	rs := addrPort(t, ln.Addr())
	silent := silentListener(t, "::1")
	web := httpServer(t, "127.0.0.1", false, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))

	httpc := &conf.Check{Type: "http", Interval: 30 * time.Millisecond, Timeout: 20 * time.Millisecond,
		Rise: 1, Fall: 1, Method: "GET", Path: "/", Status: []int{200}}
	slow := &conf.Check{Type: "http", Interval: time.Minute, Timeout: 30 * time.Second,
		Rise: 1, Fall: 1, Method: "GET", Path: "/", Status: []int{200}}
	hang := &conf.Check{Type: "exec", Interval: time.Minute, Timeout: 30 * time.Second, Rise: 1, Fall: 1,
		Command: []string{"sleep", "30"}}
	cfg := config(
		vs("tcp", tcpCheck(20*time.Millisecond, 1, 1), rs),
		vs("http", httpc, web),
		vs("slow", slow, silent),
		vs("hang", hang, rs),
	)

	baseline := runtime.NumGoroutine()
	e := NewEngine(slog.New(slog.DiscardHandler))
	e.jitter = func(time.Duration) time.Duration { return 0 }
	e.Update(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ret := make(chan error, 1)
	go func() { ret <- e.Run(ctx) }()
	waitFor(t, "probes", 2*time.Second, func() bool {
		s := e.Snapshot()
		return s[Key{"tcp", rs}].Checked && s[Key{"http", web}].Checked
	})
	if err := e.Run(ctx); err == nil {
		t.Fatal("second concurrent Run accepted")
	}
	time.Sleep(100 * time.Millisecond) // the slow probes are now mid-probe
	cancel()
	select {
	case err := <-ret:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return within 3s of cancel")
	}
	// Run returned, so its goroutines are gone; the http transport's
	// connection goroutines and the servers' handlers wind down shortly.
	waitFor(t, "goroutines back to baseline", 3*time.Second, func() bool {
		return runtime.NumGoroutine() <= baseline
	})
	n := conns.Load()
	time.Sleep(100 * time.Millisecond)
	if m := conns.Load(); m != n {
		t.Fatalf("probes still running after Run returned: %d -> %d connections", n, m)
	}

	// A second Run resumes probing.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { ret <- e.Run(ctx) }()
	waitFor(t, "probing after a second Run", 2*time.Second, func() bool { return conns.Load() > n })
	cancel()
	select {
	case <-ret:
	case <-time.After(3 * time.Second):
		t.Fatal("second Run did not return within 3s of cancel")
	}
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := addrPort(t, ln.Addr())
	ln.Close() // refused from the first probe on
	for _, tc := range []struct {
		name     string
		retry    time.Duration
		wantDown bool
	}{
		{"retries bring it down", 20 * time.Millisecond, true},
		{"without retries it waits for the interval", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tcpCheck(50*time.Second, 1, 3)
			c.RetryInterval = tc.retry
			e, _, start := newTestEngine(t)
			e.Update(config(vs("web", c, rs)))
			start()
			k := Key{"web", rs}
			waitFor(t, "first probe", 2*time.Second, func() bool { return status(e, k).Checked })
			if tc.wantDown {
				waitFor(t, "down after 3 quick failures", 5*time.Second, func() bool { return !e.Up("web", rs) })
				return
			}
			time.Sleep(300 * time.Millisecond)
			if s := status(e, k); !s.Up {
				t.Fatalf("down without retries after one failure: %+v", s)
			}
		})
	}
}

// TestStartDown: with start_down a real server is down until its first
// successful probes, and the engine reports the change.
func TestStartDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	served := acceptAndClose(ln, &conns)
	defer func() { ln.Close(); <-served }()
	rs := addrPort(t, ln.Addr())
	c := tcpCheck(20*time.Millisecond, 2, 2)
	c.StartDown = true
	e, _, start := newTestEngine(t)
	e.Update(config(vs("web", c, rs)))
	if e.Up("web", rs) {
		t.Fatal("start_down server up before any probe")
	}
	start()
	waitFor(t, "up after 2 successes", 5*time.Second, func() bool { return e.Up("web", rs) })
	if s := status(e, Key{"web", rs}); s.Transitions != 1 {
		t.Errorf("transitions = %d, want 1 (down to up)", s.Transitions)
	}
}

// TestEngineDynamicWeight: a dynamic_weight exec check's weight reaches
// Weight and signals an update; exit 0 brings back the configured weight.
func TestEngineDynamicWeight(t *testing.T) {
	dir := t.TempDir()
	code := filepath.Join(dir, "code")
	if err := os.WriteFile(code, []byte("7"), 0o644); err != nil {
		t.Fatal(err)
	}
	rs := netip.MustParseAddrPort("127.0.0.1:80")
	c := &conf.Check{Type: "exec", Interval: 20 * time.Millisecond, Timeout: 2 * time.Second, Rise: 1, Fall: 1,
		DynamicWeight: true, Command: []string{"/bin/sh", "-c", `exit $(cat "$0")`, code}}
	e, logs, start := newTestEngine(t)
	e.Update(config(vs("web", c, rs)))
	<-e.Updates()
	if _, ok := e.Weight("web", rs); ok {
		t.Fatal("weight reported before any probe")
	}
	start()
	waitFor(t, "weight 5", 5*time.Second, func() bool { w, ok := e.Weight("web", rs); return ok && w == 5 })
	if !e.Up("web", rs) {
		t.Fatal("dynamic weight 5 but down")
	}
	select {
	case <-e.Updates():
	case <-time.After(time.Second):
		t.Fatal("no update signalled for the weight change")
	}
	if !strings.Contains(logs.String(), "dynamic_weight=5") {
		t.Errorf("weight change not logged:\n%s", logs.String())
	}
	if err := os.WriteFile(code, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "configured weight again", 5*time.Second, func() bool { _, ok := e.Weight("web", rs); return !ok })
	if err := os.WriteFile(code, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "down", 5*time.Second, func() bool { return !e.Up("web", rs) })
}
