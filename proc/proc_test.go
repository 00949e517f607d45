package proc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitGone waits, on a pidfd rather than by polling, until pid has exited
// (a zombie counts: only its new parent can reap it), failing the test
// after bound.
func waitGone(t *testing.T, pid int, bound time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatalf("pidfd of %d: %v", pid, err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(bound.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll pidfd of %d: %v", pid, err)
		}
		if n == 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
			t.Fatalf("process %d outlived its command by %v", pid, bound)
		}
		return
	}
}

// leftover reads the pid a script wrote to file; 0 when it wrote none.
func leftover(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

func TestRun(t *testing.T) {
	const (
		delay = 200 * time.Millisecond
		slack = 3 * time.Second // 2 shared cores, race detector
	)
	tests := []struct {
		name string
		// script runs as sh -c with $1 a file for the pid of a process it
		// leaves behind.
		script    string
		argv      []string // instead of script
		env       []string
		keepGroup bool
		noOutput  bool
		timeout   time.Duration // of ctx; 0: none
		wantErr   string        // substring; "" means success
		wantIs    error
		wantCode  int // of an *exec.ExitError; 0 when there is none
		wantOut   string
		maxTime   time.Duration
		// leftoverLives: the process in $1 must still run afterwards (the
		// test then kills it); otherwise it must be gone.
		leftoverLives bool
	}{
		{name: "success", script: "exit 0", maxTime: slack},
		{name: "exit status", script: "echo nope; exit 3", wantErr: "run /bin/sh: exit status 3", wantCode: 3,
			wantOut: "nope\n", maxTime: slack},
		{name: "stdout and stderr captured", script: "echo out; echo err >&2", wantOut: "out\nerr\n", maxTime: slack},
		{name: "environment added", script: `echo "$PROC_TEST"`, env: []string{"PROC_TEST=added"},
			wantOut: "added\n", maxTime: slack},
		{name: "missing program", argv: []string{"/nonexistent/lvsha-test"}, wantErr: "start /nonexistent/lvsha-test:",
			wantIs: os.ErrNotExist, maxTime: slack},
		{name: "empty command", argv: []string{}, wantErr: "empty command", maxTime: slack},
		{name: "timeout kills the command", argv: []string{"sleep", "30"}, timeout: delay,
			wantErr: "signal: killed", wantCode: -1, maxTime: delay + slack},
		{name: "timeout kills the group, not only the leader",
			script:  `sleep 30 & echo $! > "$1"; wait`,
			timeout: delay, wantErr: "signal: killed", wantCode: -1, maxTime: delay + slack},
		{name: "a group that ignores the leader's death is killed",
			// The helper ignores the signals a dying shell's group could
			// send it, and would sleep on as an orphan.
			script:  `(trap '' HUP TERM INT; exec sleep 30) & echo $! > "$1"; exec sleep 30`,
			timeout: delay, wantErr: "signal: killed", wantCode: -1, maxTime: delay + slack},
		{name: "leftover of a successful command is killed at its exit",
			script:   `(trap '' HUP TERM INT; exec sleep 30) & echo $! > "$1"; exit 0`,
			noOutput: true, maxTime: slack},
		{name: "grandchild holding the pipe open is killed at the command's exit",
			script:  `sleep 30 & echo $! > "$1"; echo started`,
			wantOut: "started\n", maxTime: slack},
		{name: "keep_group: grandchild holding the pipe is waited for only WaitDelay",
			script:    `sleep 30 & echo $! > "$1"; echo started`,
			keepGroup: true, wantErr: "WaitDelay", wantIs: exec.ErrWaitDelay, wantOut: "started\n",
			maxTime: delay + slack, leftoverLives: true},
		{name: "process that left the group and holds the pipe is waited for only WaitDelay",
			// It writes its pid once in its own session: only then can
			// the group's kill miss it.
			script:  `setsid sh -c 'echo $$ > "$1"; exec sleep 30' sh "$1" & while [ ! -s "$1" ]; do :; done; echo started`,
			wantErr: "WaitDelay", wantIs: exec.ErrWaitDelay, wantOut: "started\n",
			maxTime: delay + slack, leftoverLives: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			argv := tc.argv
			if argv == nil {
				argv = []string{"/bin/sh", "-c", tc.script, "sh", pidFile}
			}
			var out bytes.Buffer
			c := &Cmd{Argv: argv, Env: tc.env, Output: &out, WaitDelay: delay, KeepGroup: tc.keepGroup}
			if tc.noOutput {
				c.Output = nil
			}
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			start := time.Now()
			err := c.Run(ctx)
			took := time.Since(start)
			if pid := leftover(t, pidFile); pid != 0 {
				if tc.leftoverLives {
					if unix.Kill(pid, 0) != nil {
						t.Errorf("leftover %d is gone, want it running", pid)
					}
					_ = unix.Kill(pid, unix.SIGKILL)
				} else {
					waitGone(t, pid, 2*time.Second)
				}
			} else if tc.leftoverLives {
				t.Fatal("the script left no pid")
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err %v, want success", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err %v is not %v", err, tc.wantIs)
			}
			var ee *exec.ExitError
			if code := 0; errors.As(err, &ee) {
				if code = ee.ExitCode(); code != tc.wantCode {
					t.Errorf("exit code %d, want %d", code, tc.wantCode)
				}
			} else if tc.wantCode != 0 {
				t.Errorf("err %v is no exit status, want %d", err, tc.wantCode)
			}
			if out.String() != tc.wantOut {
				t.Errorf("output %q, want %q", out.String(), tc.wantOut)
			}
			if took > tc.maxTime {
				t.Errorf("took %v, want at most %v", took, tc.maxTime)
			}
		})
	}
}

// Cancelling the context, not only a deadline, kills the group.
func TestRunCancel(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var out bytes.Buffer
	w := &notifyWriter{w: &out, first: started}
	done := make(chan error, 1)
	go func() {
		done <- (&Cmd{Argv: []string{"/bin/sh", "-c", `sleep 30 & echo $! > "$1"; echo up; wait`, "sh", pidFile}, Output: w}).Run(ctx)
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("command never started")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && !strings.Contains(fmtErr(err), "signal: killed") {
			t.Errorf("err %v, want the command killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	waitGone(t, leftover(t, pidFile), 2*time.Second)
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// notifyWriter closes first on the first write: the script has started.
type notifyWriter struct {
	w     *bytes.Buffer
	first chan struct{}
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	if n.first != nil {
		close(n.first)
		n.first = nil
	}
	return n.w.Write(p)
}

func TestHead(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"under the limit", 8, []string{"abc", "de"}, "abcde"},
		{"cut inside a write", 4, []string{"abc", "def"}, "abcd"},
		{"writes past the limit are dropped", 3, []string{"abc", "def"}, "abc"},
		{"zero keeps nothing", 0, []string{"abc"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &Head{Max: tc.max}
			for _, w := range tc.writes {
				// Reporting less than len would make the command's
				// output copy fail and Run report an error.
				if n, err := h.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			if got := h.String(); got != tc.want {
				t.Errorf("kept %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRunSched: a command started by a thread at a raised priority (a
// daemon with director.rt_priority or a negative nice) runs at the
// normal policy and nice 0; one started below nice 0 keeps its nice.
// The command's shell reads its own /proc stat after a pause, past the
// reset that follows the exec.
func TestRunSched(t *testing.T) {
	for _, tc := range []struct {
		name       string
		set        *unix.SchedAttr
		wantPolicy int
		wantNice   int
	}{
		{"SCHED_RR at nice -5", &unix.SchedAttr{Policy: unix.SCHED_RR, Priority: 1}, unix.SCHED_NORMAL, 0},
		{"nice -7", &unix.SchedAttr{Policy: unix.SCHED_NORMAL, Nice: -7}, unix.SCHED_NORMAL, 0},
		{"nice 4", &unix.SchedAttr{Policy: unix.SCHED_NORMAL, Nice: 4}, unix.SCHED_NORMAL, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			errc := make(chan error, 1)
			go func() {
				// The thread ends with the goroutine (locked, never
				// unlocked), and its priority with it.
				runtime.LockOSThread()
				tc.set.Size = unix.SizeofSchedAttr
				if tc.set.Policy == unix.SCHED_RR {
					if err := unix.Setpriority(unix.PRIO_PROCESS, 0, -5); err != nil {
						errc <- err
						return
					}
				}
				if err := unix.SchedSetAttr(0, tc.set, 0); err != nil {
					errc <- err
					return
				}
				errc <- (&Cmd{Argv: []string{"/bin/sh", "-c", "sleep 0.2; cat /proc/$$/stat"}, Output: &out}).Run(context.Background())
			}()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			// Fields after the command's name, which is in parentheses:
			// nice is the 19th field of stat, policy the 41st.
			_, rest, ok := strings.Cut(out.String(), ") ")
			f := strings.Fields(rest)
			if !ok || len(f) < 39 {
				t.Fatalf("stat %q", out.String())
			}
			nice, _ := strconv.Atoi(f[16])
			policy, _ := strconv.Atoi(f[38])
			if policy != tc.wantPolicy || nice != tc.wantNice {
				t.Errorf("the command ran at policy %d, nice %d; want policy %d, nice %d", policy, nice, tc.wantPolicy, tc.wantNice)
			}
		})
	}
}
