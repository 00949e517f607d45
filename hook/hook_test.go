package hook

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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
// environment, and a failing job does not stop the next.
func TestRunnerOrderAndEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	var logs bytes.Buffer
	r := New(slog.New(slog.NewTextHandler(&logs, nil)), 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	script := `echo "$HOOK_N" >> "$0"`
	for _, n := range []string{"1", "2", "fail", "3"} {
		argv := []string{"/bin/sh", "-c", script, out}
		if n == "fail" {
			argv = []string{"/bin/sh", "-c", "exit 1"}
		}
		r.Queue(Job{Argv: argv, Env: []string{"HOOK_N=" + n}, Attrs: []any{"n", n}})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		if string(b) == "1\n2\n3\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hooks wrote %q, want 1 2 3 in order", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Failed.Load() != 1 || !strings.Contains(logs.String(), "n=fail") {
		t.Errorf("failed = %d, want 1, logged with its attributes:\n%s", r.Failed.Load(), logs.String())
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
