package health

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitGone waits until pid has exited (a zombie counts: only its new
// parent can reap it), on a pidfd, which turns readable then, instead of
// polling; it fails the test after bound.
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
	n, err := unix.Poll(fds, int(bound.Milliseconds()))
	for errors.Is(err, unix.EINTR) { // the runtime's preemption signals
		n, err = unix.Poll(fds, int(bound.Milliseconds()))
	}
	if err != nil || n == 0 {
		_ = unix.Kill(pid, unix.SIGKILL)
		t.Fatalf("child %d of the check survived it by %v (poll: %v)", pid, bound, err)
	}
}

func TestExecCheck(t *testing.T) {
	tests := []struct {
		name     string
		script   string // run by sh with $1 = a pid file
		timeout  time.Duration
		want     bool
		wantCode int
		maxTime  time.Duration
		wantErr  error
	}{
		{name: "exit 0", script: "exit 0", timeout: 2 * time.Second, want: true, maxTime: 2 * time.Second},
		{name: "exit 1", script: "exit 1", timeout: 2 * time.Second, wantCode: 1, maxTime: 2 * time.Second},
		{name: "exit 3 with output", script: "echo broken; exit 3", timeout: 2 * time.Second, wantCode: 3,
			maxTime: 2 * time.Second},
		{name: "hangs past timeout", script: `sleep 30 & echo $! > "$1"; wait`, timeout: 200 * time.Millisecond,
			wantCode: -1, maxTime: 200*time.Millisecond + execWaitDelay + time.Second, wantErr: context.DeadlineExceeded},
		{name: "exits leaving a child on stdout", script: `sleep 30 & echo $! > "$1"; exit 0`,
			timeout: 5 * time.Second, want: true, maxTime: execWaitDelay + 2*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			c := baseCheck("exec")
			c.Timeout = tt.timeout
			c.Command = []string{"/bin/sh", "-c", tt.script, "sh", pidFile}
			start := time.Now()
			r := runCheck(t, netip.MustParseAddrPort("127.0.0.1:80"), c)
			took := time.Since(start)
			if r.OK != tt.want || r.Code != tt.wantCode {
				t.Fatalf("OK %v code %d (err %v, msg %q), want OK %v code %d",
					r.OK, r.Code, r.Err, r.Message, tt.want, tt.wantCode)
			}
			if tt.wantErr != nil && !errors.Is(r.Err, tt.wantErr) {
				t.Fatalf("err %v, want %v", r.Err, tt.wantErr)
			}
			if took > tt.maxTime {
				t.Fatalf("check took %v, want at most %v", took, tt.maxTime)
			}
			b, err := os.ReadFile(pidFile)
			if err != nil {
				return // the script started no child
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("pid file: %v", err)
			}
			waitGone(t, pid, 2*time.Second)
		})
	}
}

func TestExecEnvironment(t *testing.T) {
	t.Setenv("LVSHA_TEST_INHERITED", "yes")
	tests := []struct {
		rs   netip.AddrPort
		want map[string]string
	}{
		{netip.MustParseAddrPort("127.0.0.1:8080"), map[string]string{
			"LVSHA_VIRTUAL_SERVER":   "vs1",
			"LVSHA_REAL_SERVER_IP":   "127.0.0.1",
			"LVSHA_REAL_SERVER_PORT": "8080",
			"LVSHA_REAL_SERVER":      "127.0.0.1:8080",
			"LVSHA_TEST_INHERITED":   "yes",
		}},
		{netip.MustParseAddrPort("[::1]:443"), map[string]string{
			"LVSHA_VIRTUAL_SERVER":   "vs1",
			"LVSHA_REAL_SERVER_IP":   "::1",
			"LVSHA_REAL_SERVER_PORT": "443",
			"LVSHA_REAL_SERVER":      "[::1]:443",
			"LVSHA_TEST_INHERITED":   "yes",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.rs.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "env")
			c := baseCheck("exec")
			c.Timeout = 2 * time.Second
			c.Command = []string{"/bin/sh", "-c", `env > "$1"`, "sh", out}
			if r := runCheck(t, tt.rs, c); !r.OK {
				t.Fatalf("check failed: %v", r.Err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			got := make(map[string]string)
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					got[k] = v
				}
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestExecDynamicWeight: keepalived's misc_dynamic exit statuses.
func TestExecDynamicWeight(t *testing.T) {
	tests := []struct {
		name         string
		exit         int
		dynamic      bool
		want         bool
		wantWeighted bool
		wantWeight   int
	}{
		{"exit 0 is up at the configured weight", 0, true, true, false, 0},
		{"exit 1 is down", 1, true, false, false, 0},
		{"exit 2 is up at weight 0", 2, true, true, true, 0},
		{"exit 7 is up at weight 5", 7, true, true, true, 5},
		{"exit 255 is up at weight 253", 255, true, true, true, 253},
		{"without dynamic_weight exit 7 is down", 7, false, false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseCheck("exec")
			c.Timeout = 2 * time.Second
			c.DynamicWeight = tt.dynamic
			c.Command = []string{"/bin/sh", "-c", "exit " + strconv.Itoa(tt.exit)}
			r := runCheck(t, netip.MustParseAddrPort("127.0.0.1:80"), c)
			if r.OK != tt.want || r.Weighted != tt.wantWeighted || r.Weight != tt.wantWeight || r.Code != tt.exit {
				t.Fatalf("result %+v, want OK %v weighted %v weight %d code %d", r, tt.want, tt.wantWeighted, tt.wantWeight, tt.exit)
			}
		})
	}
}

// An exec check's command is run as argv, with no shell between: shell
// syntax in an argument reaches the program as it is and runs nothing.
// The program here records its arguments; a shell that evaluated the
// command line would create one of the marker files instead.
func TestExecCheckArgvLiteral(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	out := filepath.Join(dir, "args")
	for _, arg := range []string{
		"$(touch " + marker + ")",
		"`touch " + marker + "`",
		"; touch " + marker,
		"a && touch " + marker + " | cat > /dev/null",
		"$HOME ${PATH} * ?",
	} {
		t.Run(arg, func(t *testing.T) {
			c := baseCheck("exec")
			c.Timeout = 5 * time.Second
			c.Command = []string{"/bin/sh", "-c", `printf '%s' "$1" > "$0"`, out, arg}
			if r := runCheck(t, netip.MustParseAddrPort("127.0.0.1:80"), c); !r.OK {
				t.Fatalf("check failed: %v %q", r.Err, r.Message)
			}
			if got, err := os.ReadFile(out); err != nil || string(got) != arg {
				t.Errorf("the command got %q (%v), want %q as given", got, err, arg)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatalf("%s exists: the argument went through a shell", marker)
			}
		})
	}
}
