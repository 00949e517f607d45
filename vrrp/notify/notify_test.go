package notify

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitFile(t *testing.T, path string, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %q, have %q", path, want, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Hooks get instance, state and priority as arguments and environment;
// the state's own hook and the catch-all both run, in transition order.
func TestHooksRunInOrderWithArguments(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := `echo "$0 $* env=$LVSHA_VRRP_INSTANCE/$LVSHA_VRRP_STATE/$LVSHA_VRRP_PRIORITY" >> ` + log
	r := New(quiet(), conf.Notify{
		Master:  []string{"/bin/sh", "-c", script, "master"},
		Backup:  []string{"/bin/sh", "-c", script, "backup"},
		Any:     []string{"/bin/sh", "-c", script, "any"},
		Timeout: 5 * time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	r.Notify(Event{Instance: "vi1", State: "MASTER", Priority: 150})
	r.Notify(Event{Instance: "vi1", State: "BACKUP", Priority: 100})
	r.Notify(Event{Instance: "vi1", State: "FAULT", Priority: 0})
	waitFile(t, log, "any INSTANCE vi1 FAULT 0")
	b, _ := os.ReadFile(log)
	want := "master INSTANCE vi1 MASTER 150 env=vi1/MASTER/150\n" +
		"any INSTANCE vi1 MASTER 150 env=vi1/MASTER/150\n" +
		"backup INSTANCE vi1 BACKUP 100 env=vi1/BACKUP/100\n" +
		"any INSTANCE vi1 BACKUP 100 env=vi1/BACKUP/100\n" +
		"any INSTANCE vi1 FAULT 0 env=vi1/FAULT/0\n"
	if string(b) != want {
		t.Errorf("hook log:\n%s\nwant:\n%s", b, want)
	}
}

// A hook that hangs is killed at its timeout with its children, counted as
// failed, and the next hook still runs; Notify never blocks meanwhile.
func TestSlowHookNeverBlocks(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "after")
	pidf := filepath.Join(dir, "pid")
	r := New(quiet(), conf.Notify{
		Master:  []string{"/bin/sh", "-c", "sleep 30 & echo $! > " + pidf + "; wait"},
		Backup:  []string{"/bin/sh", "-c", "echo ran > " + mark},
		Timeout: 200 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	start := time.Now()
	r.Notify(Event{Instance: "vi", State: "MASTER", Priority: 1})
	for i := 0; i < 1000; i++ {
		r.Notify(Event{Instance: "vi", State: "FAULT", Priority: 1})
	}
	r.Notify(Event{Instance: "vi", State: "BACKUP", Priority: 1})
	if d := time.Since(start); d > time.Second {
		t.Errorf("Notify blocked for %v", d)
	}
	if r.Dropped.Load() == 0 {
		t.Errorf("1002 events into a queue of %d dropped none", queueLen)
	}
	// The BACKUP event was dropped (queue full), so queue another after
	// the slow hook had time to be killed.
	time.Sleep(500 * time.Millisecond)
	r.Notify(Event{Instance: "vi", State: "BACKUP", Priority: 1})
	waitFile(t, mark, "ran")
	if r.Failed.Load() != 1 {
		t.Errorf("failed hooks = %d, want 1 (the one that timed out)", r.Failed.Load())
	}
	b, err := os.ReadFile(pidf)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	if _, err := os.Stat("/proc/" + pid); err == nil {
		st, _ := os.ReadFile("/proc/" + pid + "/stat")
		if !strings.Contains(string(st), ") Z ") {
			t.Errorf("the hook's child %s survived the timeout", pid)
		}
	}
}

// Finish runs what is still queued, then the final event, synchronously.
func TestFinish(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	r := New(quiet(), conf.Notify{Any: []string{"/bin/sh", "-c", "echo \"$LVSHA_VRRP_STATE\" >> " + log}, Timeout: 5 * time.Second})
	r.Notify(Event{Instance: "vi", State: "MASTER", Priority: 1})
	r.Finish(Event{Instance: "vi", State: "STOP", Priority: 1})
	b, _ := os.ReadFile(log)
	if string(b) != "MASTER\nSTOP\n" {
		t.Errorf("hooks ran %q, want MASTER then STOP", b)
	}
}
