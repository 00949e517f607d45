package notify

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/conf"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeExec records each hook run as "argv... | env..."; a hook whose
// command is "hang" runs until its timeout, as a hung script would.
type fakeExec struct {
	mu  sync.Mutex
	ran []string
}

func (f *fakeExec) exec(ctx context.Context, argv, env []string, timeout time.Duration) error {
	f.mu.Lock()
	f.ran = append(f.ran, strings.Join(argv, " ")+" | "+strings.Join(env, " "))
	f.mu.Unlock()
	if argv[0] != "hang" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	<-ctx.Done()
	return fmt.Errorf("timed out after %v", timeout)
}

func (f *fakeExec) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ran)
}

// Run runs the state's own hook and the catch-all, in transition order,
// with instance, state and priority as arguments and environment.
func TestRunInOrderWithArguments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeExec{}
		r := New(quiet(), conf.Notify{Master: []string{"m"}, Backup: []string{"b"}, Any: []string{"any", "-x"}, Timeout: time.Second})
		r.exec = f.exec
		ctx, cancel := context.WithCancel(context.Background())
		r.Start(ctx)
		r.Notify(Event{Instance: "vi1", State: "MASTER", Priority: 150})
		r.Notify(Event{Instance: "vi1", State: "BACKUP", Priority: 100})
		r.Notify(Event{Instance: "vi1", State: "FAULT", Priority: 0})
		synctest.Wait()
		env := func(state, prio string) string {
			return " | LVSHA_VRRP_INSTANCE=vi1 LVSHA_VRRP_STATE=" + state + " LVSHA_VRRP_PRIORITY=" + prio
		}
		want := []string{
			"m INSTANCE vi1 MASTER 150" + env("MASTER", "150"),
			"any -x INSTANCE vi1 MASTER 150" + env("MASTER", "150"),
			"b INSTANCE vi1 BACKUP 100" + env("BACKUP", "100"),
			"any -x INSTANCE vi1 BACKUP 100" + env("BACKUP", "100"),
			"any -x INSTANCE vi1 FAULT 0" + env("FAULT", "0"),
		}
		if got := f.got(); !slices.Equal(got, want) {
			t.Errorf("hooks ran:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// Between transitions no goroutine waits.
		r.mu.Lock()
		running := r.running
		r.mu.Unlock()
		if running {
			t.Error("the hooks' goroutine still runs with the queue empty")
		}
		cancel()
		r.Wait()
	})
}

// A hook that hangs until its timeout is counted as failed and delays
// only the hooks after it; Notify never blocks meanwhile, and what the
// full queue cannot take is dropped and counted.
func TestHangingHookNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeExec{}
		r := New(quiet(), conf.Notify{Master: []string{"hang"}, Backup: []string{"b"}, Timeout: 200 * time.Millisecond})
		r.exec = f.exec
		ctx, cancel := context.WithCancel(context.Background())
		r.Start(ctx)
		r.Notify(Event{Instance: "vi", State: "MASTER", Priority: 1})
		synctest.Wait() // the MASTER hook hangs
		start := time.Now()
		for range 1000 {
			r.Notify(Event{Instance: "vi", State: "FAULT", Priority: 1})
		}
		r.Notify(Event{Instance: "vi", State: "BACKUP", Priority: 1})
		if d := time.Since(start); d != 0 {
			t.Errorf("Notify blocked for %v", d)
		}
		if got, want := r.Dropped.Load(), uint64(1001-queueLen); got != want {
			t.Errorf("dropped %d events, want %d (1001 into a queue of %d)", got, want, queueLen)
		}
		time.Sleep(199 * time.Millisecond)
		synctest.Wait()
		if r.Failed.Load() != 0 {
			t.Errorf("the hook failed before its timeout")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if r.Failed.Load() != 1 {
			t.Errorf("failed hooks = %d, want 1 (the one that timed out)", r.Failed.Load())
		}
		// The BACKUP event was dropped with the queue full: the next one runs.
		r.Notify(Event{Instance: "vi", State: "BACKUP", Priority: 1})
		synctest.Wait()
		if got := f.got(); len(got) != 2 || !strings.HasPrefix(got[1], "b INSTANCE vi BACKUP") {
			t.Errorf("hooks ran %q, want the hung MASTER hook, then BACKUP's", got)
		}
		cancel()
		r.Wait()
	})
}

// Finish runs what is still queued, then the final event, synchronously:
// real commands, getting their arguments and environment.
func TestFinish(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	script := `echo "$0 $* env=$LVSHA_VRRP_INSTANCE/$LVSHA_VRRP_STATE/$LVSHA_VRRP_PRIORITY" >> ` + log
	r := New(quiet(), conf.Notify{
		Master:  []string{"/bin/sh", "-c", script, "master"},
		Stop:    []string{"/bin/sh", "-c", script, "stop"},
		Any:     []string{"/bin/sh", "-c", script, "any"},
		Timeout: 5 * time.Second,
	})
	r.Notify(Event{Instance: "vi1", State: "MASTER", Priority: 150})
	r.Finish(Event{Instance: "vi1", State: "STOP", Priority: 150})
	b, _ := os.ReadFile(log)
	want := "master INSTANCE vi1 MASTER 150 env=vi1/MASTER/150\n" +
		"any INSTANCE vi1 MASTER 150 env=vi1/MASTER/150\n" +
		"stop INSTANCE vi1 STOP 150 env=vi1/STOP/150\n" +
		"any INSTANCE vi1 STOP 150 env=vi1/STOP/150\n"
	if string(b) != want {
		t.Errorf("hook log:\n%s\nwant:\n%s", b, want)
	}
}

// A transition before Start waits for it; one after the Runner stopped
// waits for Finish.
func TestQueuedAcrossStartAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeExec{}
		r := New(quiet(), conf.Notify{Any: []string{"any"}, Timeout: time.Second})
		r.exec = f.exec
		r.Notify(Event{Instance: "vi", State: "BACKUP", Priority: 1})
		synctest.Wait()
		if got := f.got(); len(got) != 0 {
			t.Fatalf("hooks ran before Start: %q", got)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.Start(ctx)
		synctest.Wait()
		if got := f.got(); len(got) != 1 {
			t.Fatalf("after Start hooks ran %q; want the BACKUP one", got)
		}
		cancel()
		r.Wait()
		r.Notify(Event{Instance: "vi", State: "MASTER", Priority: 1})
		synctest.Wait()
		if got := f.got(); len(got) != 1 {
			t.Fatalf("a stopped Runner ran %q", got[1:])
		}
		r.Finish(Event{Instance: "vi", State: "STOP", Priority: 1})
		if got := f.got(); len(got) != 3 || !strings.Contains(got[1], "MASTER") || !strings.Contains(got[2], "STOP") {
			t.Fatalf("Finish ran %q; want MASTER's, then STOP's", got[1:])
		}
	})
}
