// Package notify runs an instance's notify hooks (keepalived's
// notify_master, notify_backup, notify_fault, notify_stop and notify) on
// VRRP transitions. Hooks run one at a time in transition order, each
// bounded by a timeout, on a goroutine of their own while any are queued:
// a slow or failing hook delays later hooks, never the state machine, and
// an instance whose state holds costs no goroutine (a hundred instances
// had a hundred goroutines waiting for transitions that rarely come).
package notify

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/hook"
)

// Event is one transition to report.
type Event struct {
	Instance string
	State    string // MASTER, BACKUP, FAULT or STOP, as keepalived names them
	Priority int
}

// queueLen bounds the transitions waiting for hooks; past it the oldest
// news is the least useful, so new events are dropped and counted.
const queueLen = 64

// Runner runs one instance's hooks.
type Runner struct {
	log *slog.Logger
	// mu guards hooks, which a reload may replace while hooks run, and
	// the queue and its goroutine.
	mu    sync.Mutex
	hooks conf.Notify
	queue []Event
	// ctx, from Start, bounds the hooks; running says a goroutine drains
	// the queue, wg waits for it.
	ctx     context.Context
	running bool
	wg      sync.WaitGroup
	// Dropped counts events not run because the queue was full; Failed
	// counts hooks that exited non-zero, timed out or could not start.
	Dropped, Failed atomic.Uint64
	// exec runs one hook bounded by timeout (hook.Exec; tests fake it).
	exec func(ctx context.Context, argv, env []string, timeout time.Duration) error
}

// New returns a Runner for hooks. log is the instance's: it names the
// instance already, so the Runner's lines do not name it again (a key
// twice in one line).
func New(log *slog.Logger, hooks conf.Notify) *Runner {
	return &Runner{log: log, hooks: hooks, exec: hook.Exec}
}

// SetHooks replaces the commands (a reload); transitions queued before
// run the new ones.
func (r *Runner) SetHooks(hooks conf.Notify) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = hooks
}

// Start lets queued transitions run their hooks until ctx is done.
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctx = ctx
	r.kick()
}

// Wait returns once no hook runs: call it after Start's ctx is done.
func (r *Runner) Wait() { r.wg.Wait() }

// Notify queues e without ever blocking.
func (r *Runner) Notify(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) >= queueLen {
		r.Dropped.Add(1)
		r.log.Warn("notify queue full, transition not reported to hooks", "state", e.State)
		return
	}
	r.queue = append(r.queue, e)
	r.kick()
}

// kick starts the goroutine that drains the queue, unless it runs, the
// queue is empty, or the Runner is not started or stopped. r.mu is held.
func (r *Runner) kick() {
	if r.running || len(r.queue) == 0 || r.ctx == nil || r.ctx.Err() != nil {
		return
	}
	r.running = true
	r.wg.Add(1)
	go r.drain(r.ctx)
}

// drain runs the queued hooks in order until the queue is empty or ctx is
// done, and leaves what remains for Finish.
func (r *Runner) drain(ctx context.Context) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		if len(r.queue) == 0 || ctx.Err() != nil {
			r.running = false
			r.mu.Unlock()
			return
		}
		e := r.queue[0]
		r.queue = r.queue[1:]
		if len(r.queue) == 0 {
			r.queue = nil // the backing array goes with the last event
		}
		r.mu.Unlock()
		r.runAll(ctx, e)
	}
}

// Finish runs, synchronously, the transitions still queued and then e
// (the instance's STOP): called once Start's ctx is done and Wait has
// returned, as the instance goes away. Each hook is still bounded by its
// timeout.
func (r *Runner) Finish(e Event) {
	r.mu.Lock()
	q := r.queue
	r.queue = nil
	r.mu.Unlock()
	for _, e := range q {
		r.runAll(context.Background(), e)
	}
	r.runAll(context.Background(), e)
}

func (r *Runner) runAll(ctx context.Context, e Event) {
	for _, argv := range r.commands(e.State) {
		if err := r.run(ctx, argv, e); err != nil {
			r.Failed.Add(1)
			r.log.Warn("notify hook failed", "state", e.State, "command", argv[0], "error", err)
		}
	}
}

func (r *Runner) commands(state string) [][]string {
	r.mu.Lock()
	hooks := r.hooks
	r.mu.Unlock()
	var out [][]string
	specific := map[string][]string{"MASTER": hooks.Master, "BACKUP": hooks.Backup, "FAULT": hooks.Fault, "STOP": hooks.Stop}[state]
	for _, c := range [][]string{specific, hooks.Any} {
		if len(c) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// run executes argv with the instance, state and priority appended as
// arguments (keepalived's notify passes INSTANCE name state priority) and
// set in the environment; on timeout the hook's whole process group is
// killed.
func (r *Runner) run(ctx context.Context, argv []string, e Event) error {
	r.mu.Lock()
	timeout := r.hooks.Timeout
	r.mu.Unlock()
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	prio := strconv.Itoa(e.Priority)
	args := append(append([]string{}, argv...), "INSTANCE", e.Instance, e.State, prio)
	env := []string{"LVSHA_VRRP_INSTANCE=" + e.Instance, "LVSHA_VRRP_STATE=" + e.State, "LVSHA_VRRP_PRIORITY=" + prio}
	start := time.Now()
	if err := r.exec(ctx, args, env, timeout); err != nil {
		return err
	}
	r.log.Info("notify hook ran", "state", e.State, "command", argv[0], "took", time.Since(start))
	return nil
}
