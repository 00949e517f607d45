// Package proc runs an operator's command so that it cannot outlive what
// lvsha allows it: in its own process group, killed whole when its context
// ends, and with a bound on how long a leftover process holding its output
// can keep the caller waiting. Health checks, track_exec commands and
// notify hooks all run commands through it.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultWaitDelay is the WaitDelay of a Cmd that sets none.
const DefaultWaitDelay = 500 * time.Millisecond

// Cmd is one command to run.
type Cmd struct {
	// Argv is run directly, without a shell.
	Argv []string
	// Env is added to lvsha's environment.
	Env []string
	// Output receives stdout and stderr; nil discards both (then no pipe
	// exists that a leftover could hold open).
	Output io.Writer
	// WaitDelay bounds how long Run waits, once the command has exited or
	// its context ended, for processes it left behind to close Output's
	// pipe; then Run closes the pipe itself. Zero means DefaultWaitDelay.
	WaitDelay time.Duration
	// KeepGroup leaves what the command started in the background running
	// when the command exits on its own. Without it the rest of the group
	// is killed then: a check that runs every second must not leave a
	// process behind on every run. When the context ends the group is
	// killed either way.
	KeepGroup bool
}

// Run runs c until it exits or ctx ends, whichever is first. When ctx ends
// the whole process group is killed (SIGKILL), not only the command, so a
// script's helpers go too. The error is nil for exit status 0; otherwise
// it wraps what failed: the start, an *exec.ExitError (errors.As gives the
// status, -1 when killed by a signal), or exec.ErrWaitDelay when the
// command succeeded but a leftover held the output open past WaitDelay.
func (c *Cmd) Run(ctx context.Context) error {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return errors.New("empty command")
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Stdout, cmd.Stderr = c.Output, c.Output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = c.WaitDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = DefaultWaitDelay
	}
	// The group's id is the command's pid, which the kernel cannot give to
	// another process while the command is unreaped (a zombie still holds
	// it). Killing by group id is therefore safe only until cmd.Wait reaps
	// it; reaped marks that point, so a cancellation racing with the
	// reaping cannot kill a stranger's group that reused the id.
	var (
		mu     sync.Mutex
		reaped bool
	)
	killGroup := func() error {
		mu.Lock()
		defer mu.Unlock()
		if reaped {
			return os.ErrProcessDone
		}
		if err := unix.Kill(-cmd.Process.Pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill process group %d: %w", cmd.Process.Pid, err)
		}
		return nil
	}
	cmd.Cancel = killGroup
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.Argv[0], err)
	}
	normalSched(cmd.Process.Pid)
	// Wait for the command's exit without reaping it, so that a cancel
	// until then and the kill of its leftovers can still use its id.
	if err := waitExited(cmd.Process.Pid); err == nil && !c.KeepGroup {
		_ = killGroup()
	}
	mu.Lock()
	reaped = true
	mu.Unlock()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("run %s: %w", c.Argv[0], err)
	}
	return nil
}

// waitExited blocks until child pid has exited, leaving it unreaped. It
// waits in the runtime's poller on a pidfd, so that many commands running
// at once do not each hold an OS thread in waitid; kernels without pidfds
// (before 5.3) get the blocking waitid.
func waitExited(pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return waitid(unix.P_PID, pid, 0)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return waitid(unix.P_PID, pid, 0)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	var werr error
	err = rc.Read(func(fd uintptr) bool {
		// A pidfd turns readable when the process exits; until then
		// WNOHANG leaves info zero (Linux clears it).
		var info unix.Siginfo
		werr = waitidInfo(unix.P_PIDFD, int(fd), unix.WNOHANG, &info)
		return werr != nil || info.Signo == int32(unix.SIGCHLD)
	})
	if err != nil {
		return fmt.Errorf("wait for %d: %w", pid, err)
	}
	return werr
}

func waitid(idType, id, flags int) error {
	var info unix.Siginfo
	return waitidInfo(idType, id, flags, &info)
}

func waitidInfo(idType, id, flags int, info *unix.Siginfo) error {
	for {
		err := unix.Waitid(idType, id, info, unix.WEXITED|unix.WNOWAIT|flags, nil)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return fmt.Errorf("waitid %d: %w", id, err)
			}
			return nil
		}
	}
}

// Head keeps the first Max bytes written to it and discards the rest, so
// that a chatty command can neither block on a full pipe nor grow memory
// while its output is only wanted for a message.
type Head struct {
	Max int
	buf []byte
}

func (h *Head) Write(p []byte) (int, error) {
	if n := h.Max - len(h.buf); n > 0 {
		h.buf = append(h.buf, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

// String returns what was kept.
func (h *Head) String() string { return string(h.buf) }

// normalSched sets the command pid, cloned from the calling thread, back
// to the normal policy, and to nice 0 if the thread runs below that: an
// operator's command never runs at the priority the daemon raised for
// itself (director.rt_priority, a negative director.nice), where a
// command that spins would starve the daemon's own adverts; keepalived
// resets its scripts' the same way. A command lvsha was started below
// (a positive nice) keeps it. Go runs no code of ours between fork and
// exec, so the command's first instructions ran at the daemon's
// priority; by the time Start returns it has exec'd, and this follows.
// A command already gone is nothing to reset.
func normalSched(pid int) {
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return
	}
	switch {
	case a.Policy == unix.SCHED_RR || a.Policy == unix.SCHED_FIFO:
		_ = unix.SchedSetAttr(pid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: max(a.Nice, 0)}, 0)
	case a.Nice < 0:
		_ = unix.Setpriority(unix.PRIO_PROCESS, pid, 0)
	}
}
