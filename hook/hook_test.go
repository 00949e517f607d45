package hook

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExec(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		timeout time.Duration
		wantErr string
	}{
		{"success", []string{"/bin/sh", "-c", "exit 0"}, 5 * time.Second, ""},
		{"failure carries output", []string{"/bin/sh", "-c", "echo nope; exit 3"}, 5 * time.Second, "exit status 3: nope"},
		{"timeout kills the group", []string{"/bin/sh", "-c", "sleep 30 & sleep 30"}, 200 * time.Millisecond, "timed out after 200ms"},
		{"missing program", []string{"/nonexistent/lvsha-hook"}, 5 * time.Second, "no such file"},
		{"empty", nil, time.Second, "empty command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := Exec(context.Background(), tc.argv, nil, tc.timeout)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if time.Since(start) > tc.timeout+3*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}

// TestRunnerOrderAndEnv: jobs run one at a time in queue order with their
// environment and the runner's timeout, and a failing job does not stop
// the next.
func TestRunnerOrderAndEnv(t *testing.T) {
	var logs bytes.Buffer
	r := New(slog.New(slog.NewTextHandler(&logs, nil)), 5*time.Second)
	type call struct {
		argv, env string
		timeout   time.Duration
	}
	calls := make(chan call)
	r.exec = func(ctx context.Context, argv, env []string, timeout time.Duration) error {
		// Unbuffered: the next job cannot start before the test took
		// this one, so order is the runner's, not a race's.
		select {
		case calls <- call{strings.Join(argv, " "), strings.Join(env, " "), timeout}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if argv[0] == "fail" {
			return errors.New("exit status 1")
		}
		return nil
	}
	jobs := []string{"1", "2", "fail", "3"}
	for _, n := range jobs {
		r.Queue(Job{Argv: []string{n, "arg"}, Env: []string{"HOOK_N=" + n}, Attrs: []any{"n", n}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for _, n := range jobs {
		select {
		case c := <-calls:
			if want := (call{n + " arg", "HOOK_N=" + n, 5 * time.Second}); c != want {
				t.Errorf("ran %+v, want %+v", c, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("job %s never ran", n)
		}
	}
	cancel()
	<-done
	// Read the log only now: the runner writes it until Run returns.
	if r.Failed.Load() != 1 || !strings.Contains(logs.String(), "n=fail") || !strings.Contains(logs.String(), "exit status 1") {
		t.Errorf("failed = %d, want 1, logged with its attributes and error:\n%s", r.Failed.Load(), logs.String())
	}
}

func TestQueueNeverBlocks(t *testing.T) {
	r := New(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), time.Second)
	for i := 0; i < queueLen+10; i++ {
		r.Queue(Job{Argv: []string{"/bin/true"}})
	}
	if r.Dropped.Load() != 10 {
		t.Errorf("dropped %d, want 10", r.Dropped.Load())
	}
}

// A hook's command is run as argv, with no shell between: shell syntax
// in an argument reaches the program as it is and runs nothing.
func TestExecArgvLiteral(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	out := filepath.Join(dir, "args")
	for _, arg := range []string{
		"$(touch " + marker + ")",
		"`touch " + marker + "`",
		"; touch " + marker,
		"a && touch " + marker + " | cat > /dev/null",
	} {
		t.Run(arg, func(t *testing.T) {
			argv := []string{"/bin/sh", "-c", `printf '%s' "$1" > "$0"`, out, arg}
			if err := Exec(context.Background(), argv, nil, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(out); err != nil || string(got) != arg {
				t.Errorf("the hook got %q (%v), want %q as given", got, err, arg)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatalf("%s exists: the argument went through a shell", marker)
			}
		})
	}
}
