package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/proc"
)

// maxOutput bounds the exec output kept for messages.
const maxOutput = 512

// execWaitDelay is how long a probe may wait, after the command exited or
// was killed, for a process that escaped its group (setsid) to close the
// output pipe; a probe must not take much longer than its timeout.
const execWaitDelay = 500 * time.Millisecond

type execChecker struct {
	argv    []string
	env     []string
	timeout time.Duration
	dynamic bool // exit 2..255 means up at weight status-2
}

func newExecChecker(vs string, rs netip.AddrPort, c *conf.Check) (*execChecker, error) {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return nil, errors.New("exec check without command")
	}
	return &execChecker{
		argv:    slices.Clone(c.Command),
		timeout: c.Timeout,
		dynamic: c.DynamicWeight,
		env: []string{
			"LVSHA_VIRTUAL_SERVER=" + vs,
			"LVSHA_REAL_SERVER_IP=" + rs.Addr().String(),
			"LVSHA_REAL_SERVER_PORT=" + strconv.Itoa(int(rs.Port())),
			"LVSHA_REAL_SERVER=" + rs.String(),
		},
	}, nil
}

func (c *execChecker) String() string { return "exec " + strings.Join(c.argv, " ") }

func (c *execChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	r := Result{At: time.Now()}
	out := proc.Head{Max: maxOutput}
	err := (&proc.Cmd{Argv: c.argv, Env: c.env, Output: &out, WaitDelay: execWaitDelay}).Run(ctx)
	r.Latency = time.Since(r.At)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		r.Code = exitErr.ExitCode()
	}
	output := strings.TrimSpace(out.String())
	if c.dynamic && r.Code >= 2 && r.Code <= 255 && ctx.Err() == nil {
		// keepalived's misc_dynamic: up, at weight status-2.
		r.OK, r.Weighted, r.Weight = true, true, r.Code-2
		r.Message = fmt.Sprintf("exit %d: weight %d", r.Code, r.Weight)
		if output != "" {
			r.Message += ": " + output
		}
		return r
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		r.Message = "exit " + strconv.Itoa(r.Code)
		if output != "" {
			r.Message += ": " + output
		}
		return failure(r, ctx, c.timeout, err)
	}
	// Success, or success with a process that escaped the group still
	// holding the output (ErrWaitDelay): the command's verdict is in.
	r.OK = true
	r.Message = "exit 0"
	if output != "" {
		r.Message += ": " + output
	}
	return r
}
