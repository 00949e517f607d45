// Package hook runs operator commands on events (a real server going up
// or down, a virtual server losing quorum): one at a time in event order,
// each bounded by a timeout, from a queue that never blocks the caller.
// Exec, the bounded run of one command, also serves vrrp/notify.
package hook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync/atomic"
	"time"

	"github.com/lvsha/lvsha/proc"
)

// Job is one command to run.
type Job struct {
	Argv []string // run directly, without a shell
	Env  []string // added to lvsha's environment
	// Attrs describe the event in logs, as slog key-value pairs.
	Attrs []any
}

// queueLen bounds the jobs waiting; past it new events are dropped and
// counted, since a backlog that long means the commands cannot keep up.
const queueLen = 256

// Runner runs queued jobs.
type Runner struct {
	log     *slog.Logger
	timeout time.Duration
	queue   chan Job
	// exec runs one job's command (Exec; tests fake it).
	exec func(ctx context.Context, argv, env []string, timeout time.Duration) error
	// Dropped counts jobs not run because the queue was full; Failed
	// counts commands that exited non-zero, timed out or could not start.
	Dropped, Failed atomic.Uint64
}

// New returns a Runner whose commands each get timeout.
func New(log *slog.Logger, timeout time.Duration) *Runner {
	return &Runner{log: log, timeout: timeout, queue: make(chan Job, queueLen), exec: Exec}
}

// Queue adds j without ever blocking.
func (r *Runner) Queue(j Job) {
	select {
	case r.queue <- j:
	default:
		r.Dropped.Add(1)
		r.log.Warn("hook queue full, command not run", append([]any{"command", j.Argv[0]}, j.Attrs...)...)
	}
}

// Run executes queued jobs until ctx is done.
func (r *Runner) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-r.queue:
			start := time.Now()
			if err := r.exec(ctx, j.Argv, j.Env, r.timeout); err != nil {
				r.Failed.Add(1)
				r.log.Warn("hook failed", append([]any{"command", j.Argv[0], "error", err}, j.Attrs...)...)
				continue
			}
			r.log.Info("hook ran", append([]any{"command", j.Argv[0], "took", time.Since(start)}, j.Attrs...)...)
		}
	}
}

// hookWaitDelay is how long a hook's background process may hold its
// output open after the hook exited before Exec stops reading it.
const hookWaitDelay = time.Second

// maxOutput bounds the output a failed hook's error quotes.
const maxOutput = 200

// Exec runs argv with env added to lvsha's environment, in its own process
// group, which is killed whole when timeout passes or ctx ends. A hook may
// start something that outlives it on purpose (a notify script starting a
// service), so what it leaves behind when it exits on its own stays.
func Exec(ctx context.Context, argv, env []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := proc.Head{Max: maxOutput}
	err := (&proc.Cmd{Argv: argv, Env: env, Output: &out, WaitDelay: hookWaitDelay, KeepGroup: true}).Run(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%w: %s", err, out.String())
	}
	return err
}
