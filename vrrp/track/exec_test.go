package track

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/risefall"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestExecVerdict(t *testing.T) {
	tests := []struct {
		name       string
		start      bool
		rise, fall int
		runs       string // o: success, x: failure
		want       string // verdict after each run: o ok, x failing
	}{
		{"fall 1", true, 1, 1, "oxo", "oxo"},
		{"fall 3 needs three in a row", true, 1, 3, "xxoxxx", "ooooox"},
		{"rise 2 from failing", false, 2, 1, "oxoo", "xxxo"},
		{"rise counter reset by a failure", false, 3, 1, "ooxooo", "xxxxxo"},
		{"init_fail stays failing without successes", false, 1, 1, "xxx", "xxx"},
		{"zero rise and fall count as 1", true, 0, 0, "xo", "xo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := risefall.State{Up: tc.start}
			var got strings.Builder
			for _, r := range tc.runs {
				v, _ = v.Step(r == 'o', tc.rise, tc.fall)
				got.WriteString(map[bool]string{true: "o", false: "x"}[v.Up])
			}
			if got.String() != tc.want {
				t.Errorf("verdicts %s, want %s", got.String(), tc.want)
			}
		})
	}
}

// scripted returns a runFunc that answers from outcomes in turn and
// counts its runs by argv[0].
type scripted struct {
	mu       sync.Mutex
	outcomes []bool
	runs     map[string]int
}

func (s *scripted) run(_ context.Context, argv []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs == nil {
		s.runs = map[string]int{}
	}
	s.runs[argv[0]]++
	if len(s.outcomes) == 0 {
		return nil
	}
	ok := s.outcomes[0]
	s.outcomes = s.outcomes[1:]
	if !ok {
		return errors.New("exit 1")
	}
	return nil
}

// The runner applies rise/fall to each run and starts as init_fail says;
// every change of verdict is published on Updates.
func TestExecsRiseFallInitFail(t *testing.T) {
	tests := []struct {
		name       string
		initFail   bool
		rise, fall int
		runs       string // o success, x failure
		want       string // OK after each run
		changes    int
	}{
		{"starts ok", false, 1, 1, "ooxo", "ooxo", 2},
		{"init_fail starts failing until rise successes", true, 2, 1, "oo", "xo", 1},
		{"fall 2", false, 1, 2, "xoxx", "ooox", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := conf.TrackExec{Name: "chk", Command: []string{"chk"}, Interval: time.Second, Timeout: time.Second,
				Rise: tc.rise, Fall: tc.fall, InitFail: tc.initFail}
			e := NewExecs(quiet(), []conf.TrackExec{x}, []conf.VRRPInstance{{TrackExecs: []conf.TrackExecRef{{Name: "chk"}}}})
			if got, want := e.OK("chk"), !tc.initFail; got != want {
				t.Fatalf("before any run OK = %v, want %v", got, want)
			}
			s := &scripted{}
			e.run = s.run
			var got strings.Builder
			changes := 0
			for _, r := range tc.runs {
				s.outcomes = []bool{r == 'o'}
				e.runOnce(context.Background(), x)
				got.WriteString(map[bool]string{true: "o", false: "x"}[e.OK("chk")])
				select {
				case <-e.Updates():
					changes++
				default:
				}
			}
			if got.String() != tc.want || changes != tc.changes {
				t.Errorf("OK after each run %s with %d updates, want %s with %d", got.String(), changes, tc.want, tc.changes)
			}
			st := e.Status()[0]
			if st.Runs != uint64(len(tc.runs)) || st.Transitions != tc.changes || st.State != verdictName(e.OK("chk")) {
				t.Errorf("status %+v", st)
			}
		})
	}
}

// A command still running at its timeout is killed with its whole
// process group, and the run counts as a failure.
func TestExecsTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	x := conf.TrackExec{Name: "slow", Interval: time.Second, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 1,
		Command: []string{"/bin/sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"}}
	e := NewExecs(quiet(), []conf.TrackExec{x}, []conf.VRRPInstance{{TrackExecs: []conf.TrackExecRef{{Name: "slow"}}}})
	start := time.Now()
	e.runOnce(context.Background(), x)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("run took %v with a 300ms timeout", took)
	}
	st := e.Status()[0]
	if e.OK("slow") || st.LastOK || st.LastResult != "timed out after 300ms" {
		t.Errorf("after a timeout: OK %v, status %+v; want failing, timed out", e.OK("slow"), st)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The helper was reparented when its shell died; it is gone, or a
	// zombie waiting for a reaper (its pidfd is then readable), but not
	// sleeping on.
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 5000)
	for errors.Is(err, unix.EINTR) { // the runtime's preemption signals
		n, err = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 5000)
	}
	if err != nil || n == 0 {
		_ = unix.Kill(pid, unix.SIGKILL)
		t.Fatalf("the script's background sleep (pid %d) survived the timeout (poll: %v)", pid, err)
	}
}

// Commands run directly: shell syntax in an argument reaches the program
// as it is, and the result names the exit status.
func TestRunCommand(t *testing.T) {
	tests := []struct {
		name   string
		argv   []string
		ok     bool
		result string
	}{
		{"exit 0", []string{"/bin/true"}, true, "exit 0"},
		{"exit status", []string{"/bin/sh", "-c", "exit 3"}, false, "exit 3"},
		{"no shell between", []string{"/bin/sh", "-c", `test "$1" = 'a;$HOME'`, "sh", "a;$HOME"}, true, "exit 0"},
		{"missing program", []string{"/nonexistent/check"}, false, "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := conf.TrackExec{Name: "c", Command: tc.argv, Interval: time.Second, Timeout: 5 * time.Second, Rise: 1, Fall: 1}
			e := NewExecs(quiet(), []conf.TrackExec{x}, []conf.VRRPInstance{{TrackExecs: []conf.TrackExecRef{{Name: "c"}}}})
			e.runOnce(context.Background(), x)
			st := e.Status()[0]
			if st.LastOK != tc.ok || !strings.Contains(st.LastResult, tc.result) || e.OK("c") != tc.ok {
				t.Errorf("status %+v, want ok %v and result containing %q", st, tc.ok, tc.result)
			}
		})
	}
}

// A command tracked by two instances runs once per interval, not once per
// instance; a command nobody tracks never runs.
func TestExecsSharedOncePerInterval(t *testing.T) {
	execs := []conf.TrackExec{
		{Name: "shared", Command: []string{"shared"}, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1},
		{Name: "unused", Command: []string{"unused"}, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1},
	}
	instances := []conf.VRRPInstance{
		{Name: "a", TrackExecs: []conf.TrackExecRef{{Name: "shared"}}},
		{Name: "b", TrackExecs: []conf.TrackExecRef{{Name: "shared", Weight: 20}}},
	}
	e := NewExecs(quiet(), execs, instances)
	s := &scripted{}
	e.run = s.run
	ticks := make(chan time.Time)
	var tickers int
	e.tick = func(d time.Duration) (<-chan time.Time, func()) {
		if d != time.Second {
			t.Errorf("ticker of %v, want the interval 1s", d)
		}
		tickers++
		return ticks, func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	// Each send returns once the loop takes the tick, which it does only
	// after the previous run: three ticks are three more runs.
	for range 3 {
		select {
		case ticks <- time.Now():
		case <-time.After(5 * time.Second):
			t.Fatal("runner never took a tick")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs["shared"] != 4 || s.runs["unused"] != 0 || tickers != 1 || e.Len() != 1 {
		t.Errorf("runs %v with %d tickers, %d commands; want shared 4 (at start and on 3 ticks), unused 0, one ticker", s.runs, tickers, e.Len())
	}
}

func TestExecEffect(t *testing.T) {
	tracked := []conf.TrackExecRef{{Name: "proc", Weight: 0}, {Name: "disk", Weight: 30}, {Name: "load", Weight: 20}}
	tests := []struct {
		name    string
		failing []string
		fault   bool
		lowered int
	}{
		{"all ok", nil, false, 0},
		{"weight 0 faults", []string{"proc"}, true, 0},
		{"weights add up", []string{"disk", "load"}, false, 50},
		{"both", []string{"proc", "disk"}, true, 30},
		{"untracked failing changes nothing", []string{"other"}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok := func(n string) bool {
				for _, f := range tc.failing {
					if f == n {
						return false
					}
				}
				return true
			}
			fault, lowered, _ := ExecEffect(tracked, ok)
			if fault != tc.fault || lowered != tc.lowered {
				t.Errorf("ExecEffect = fault %v, lowered %d; want %v, %d", fault, lowered, tc.fault, tc.lowered)
			}
		})
	}
}

// TestExecsInherit: a reload keeps the verdict of an unchanged command
// (init_fail does not apply again) and starts a changed one afresh.
func TestExecsInherit(t *testing.T) {
	base := conf.TrackExec{Name: "chk", Command: []string{"chk"}, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1, InitFail: true}
	tracked := []conf.VRRPInstance{{TrackExecs: []conf.TrackExecRef{{Name: "chk"}}}}
	tests := []struct {
		name   string
		change func(x *conf.TrackExec)
		want   bool
	}{
		{"unchanged keeps its verdict", func(*conf.TrackExec) {}, true},
		{"changed command starts afresh (init_fail)", func(x *conf.TrackExec) { x.Command = []string{"other"} }, false},
		{"changed interval starts afresh", func(x *conf.TrackExec) { x.Interval = 2 * time.Second }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := NewExecs(quiet(), []conf.TrackExec{base}, tracked)
			old.run = (&scripted{outcomes: []bool{true}}).run
			old.runOnce(context.Background(), base)
			if !old.OK("chk") {
				t.Fatal("a success after init_fail with rise 1 must be ok")
			}
			x := base
			x.Command = slices.Clone(base.Command)
			tc.change(&x)
			e := NewExecs(quiet(), []conf.TrackExec{x}, tracked)
			e.Inherit(old)
			if got := e.OK("chk"); got != tc.want {
				t.Errorf("OK after reload = %v, want %v", got, tc.want)
			}
			if got := e.Status()[0].Runs; tc.want && got != 1 {
				t.Errorf("inherited runs %d, want 1", got)
			}
		})
	}
}
