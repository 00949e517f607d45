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
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
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
	// Dropped counts jobs not run because the queue was full; Failed
	// counts commands that exited non-zero, timed out or could not start.
	Dropped, Failed atomic.Uint64
}

// New returns a Runner whose commands each get timeout.
func New(log *slog.Logger, timeout time.Duration) *Runner {
	return &Runner{log: log, timeout: timeout, queue: make(chan Job, queueLen)}
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
			if err := Exec(ctx, j.Argv, j.Env, r.timeout); err != nil {
				r.Failed.Add(1)
				r.log.Warn("hook failed", append([]any{"command", j.Argv[0], "error", err}, j.Attrs...)...)
				continue
			}
			r.log.Info("hook ran", append([]any{"command", j.Argv[0], "took", time.Since(start)}, j.Attrs...)...)
		}
	}
}

// Exec runs argv with env added to lvsha's environment, in its own process
// group, which is killed whole when timeout passes or ctx ends.
func Exec(ctx context.Context, argv, env []string, timeout time.Duration) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("empty command")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild holding the output pipe must not keep Wait blocked.
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%w: %.200s", err, out)
	}
	return err
}
