package track

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/proc"
	"github.com/lvsha/lvsha/risefall"
)

// ExecStatus is what `lvsha status` shows of one track_exec.
type ExecStatus struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	// State is the verdict after rise/fall: "ok" or "failing".
	State       string    `json:"state"`
	Since       time.Time `json:"since,omitzero"` // last change of State; zero while still the initial state
	Transitions int       `json:"transitions"`
	Runs        uint64    `json:"runs"`
	// LastRun and LastResult describe the latest run: "exit 0", "exit 1",
	// "timed out after 1s", or why it could not start.
	LastRun      time.Time `json:"last_run,omitzero"`
	LastOK       bool      `json:"last_ok"`
	LastResult   string    `json:"last_result,omitempty"`
	LastDuration float64   `json:"last_duration_ms"`
}

// runFunc runs argv once, bounded by ctx, and reports how it ended; nil
// is exit status 0.
type runFunc func(ctx context.Context, argv []string) error

// tickFunc returns a channel that fires every d and a function that
// stops it; tests replace time.NewTicker with ticks they send by hand.
type tickFunc func(d time.Duration) (<-chan time.Time, func())

func realTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// runCommand runs argv without a shell in its own process group. When ctx
// ends first the whole group is killed, so a script's helpers do not
// outlive its timeout, and helpers left running when it exits are killed
// then, so a command run every interval cannot pile them up. Output is
// discarded.
func runCommand(ctx context.Context, argv []string) error {
	return (&proc.Cmd{Argv: argv}).Run(ctx)
}

// Execs runs the track_exec commands that VRRP instances track. Each
// command runs on its own goroutine once per interval, however many
// instances track it; instances read the verdicts with OK.
type Execs struct {
	log     *slog.Logger
	execs   []conf.TrackExec
	run     runFunc
	tick    tickFunc
	now     func() time.Time
	updates chan struct{}

	mu     sync.Mutex
	states map[string]*execState
}

type execState struct {
	verdict risefall.State // Up: the command succeeds
	status  ExecStatus
}

// NewExecs prepares the track_execs that at least one of instances
// tracks; the others never run (keepalived also skips unused scripts).
// Each starts as succeeding unless init_fail is set.
func NewExecs(log *slog.Logger, execs []conf.TrackExec, instances []conf.VRRPInstance) *Execs {
	used := map[string]bool{}
	for _, in := range instances {
		for _, r := range in.TrackExecs {
			used[r.Name] = true
		}
	}
	e := &Execs{
		log: log, run: runCommand, tick: realTicker, now: time.Now,
		updates: make(chan struct{}, 1),
		states:  map[string]*execState{},
	}
	for _, x := range execs {
		if !used[x.Name] {
			continue
		}
		e.execs = append(e.execs, x)
		st := &execState{verdict: risefall.State{Up: !x.InitFail}}
		st.status = ExecStatus{Name: x.Name, Command: slices.Clone(x.Command), State: verdictName(st.verdict.Up)}
		e.states[x.Name] = st
	}
	return e
}

// Inherit carries over, from the runner a reload replaces, the verdict and
// history of every command whose definition did not change, so that a
// reload neither restarts their rise/fall counting nor flaps what tracks
// them. Call it before Run.
func (e *Execs) Inherit(old *Execs) {
	if old == nil {
		return
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	for _, x := range e.execs {
		i := slices.IndexFunc(old.execs, func(o conf.TrackExec) bool { return o.Name == x.Name })
		if i < 0 || !reflect.DeepEqual(old.execs[i], x) {
			continue
		}
		st := *old.states[x.Name]
		st.status.Command = slices.Clone(st.status.Command)
		e.states[x.Name] = &st
	}
}

func verdictName(ok bool) string {
	if ok {
		return "ok"
	}
	return "failing"
}

// Len is how many commands run.
func (e *Execs) Len() int { return len(e.execs) }

// OK reports the verdict on the named command; an unknown name is
// failing, since no verdict can vouch for it.
func (e *Execs) OK(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.states[name]
	return st != nil && st.verdict.Up
}

// Updates receives a value after any verdict changes; several changes
// may come as one, so read every verdict again on each.
func (e *Execs) Updates() <-chan struct{} { return e.updates }

// Status reports every command, in configuration order.
func (e *Execs) Status() []ExecStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ExecStatus, 0, len(e.execs))
	for _, x := range e.execs {
		s := e.states[x.Name].status
		s.Command = slices.Clone(s.Command)
		out = append(out, s)
	}
	return out
}

// Run runs every command until ctx is done.
func (e *Execs) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, x := range e.execs {
		wg.Add(1)
		go func() { defer wg.Done(); e.loop(ctx, x) }()
	}
	wg.Wait()
}

// loop runs x at once, so that a failure is known within one timeout of
// start, then once per interval. A run ends by its timeout, at most the
// interval, so runs never overlap.
func (e *Execs) loop(ctx context.Context, x conf.TrackExec) {
	ticks, stop := e.tick(x.Interval)
	defer stop()
	for {
		e.runOnce(ctx, x)
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
	}
}

// runOnce runs x once and applies the outcome.
func (e *Execs) runOnce(ctx context.Context, x conf.TrackExec) {
	rctx, cancel := context.WithTimeout(ctx, x.Timeout)
	start := e.now()
	err := e.run(rctx, x.Command)
	took := e.now().Sub(start)
	timedOut := errors.Is(rctx.Err(), context.DeadlineExceeded)
	cancel()
	if ctx.Err() != nil {
		// Killed because lvsha stops: says nothing about the command.
		return
	}
	result := "exit 0"
	var ee *exec.ExitError
	switch {
	case timedOut:
		// Whatever the command managed to return, it overran.
		result = fmt.Sprintf("timed out after %s", x.Timeout)
		if err == nil {
			err = errors.New(result)
		}
	case errors.As(err, &ee):
		result = fmt.Sprintf("exit %d", ee.ExitCode())
		if ee.ExitCode() < 0 {
			result = ee.String() // "signal: killed"
		}
	case err != nil:
		result = err.Error()
	}
	ok := err == nil && !timedOut

	e.mu.Lock()
	st := e.states[x.Name]
	was := st.verdict.Up
	var changed bool
	st.verdict, changed = st.verdict.Step(ok, x.Rise, x.Fall)
	s := &st.status
	s.Runs++
	s.LastRun, s.LastOK, s.LastResult = start, ok, result
	s.LastDuration = float64(took.Microseconds()) / 1000
	if changed {
		s.State, s.Since = verdictName(st.verdict.Up), start
		s.Transitions++
	}
	e.mu.Unlock()

	if !changed {
		return
	}
	if was {
		e.log.Warn("track_exec failing", "track_exec", x.Name, "result", result, "fall", x.Fall)
	} else {
		e.log.Info("track_exec succeeding", "track_exec", x.Name, "rise", x.Rise)
	}
	select {
	case e.updates <- struct{}{}:
	default:
	}
}

// ExecEffect is what an instance's tracked commands do to it now: fault
// when a weight-0 command fails, and the summed weight of the failing
// weighted ones, by which its priority drops.
func ExecEffect(tracked []conf.TrackExecRef, ok func(name string) bool) (fault bool, lowered int, failing []string) {
	for _, t := range tracked {
		if ok(t.Name) {
			continue
		}
		failing = append(failing, t.Name)
		if t.Weight == 0 {
			fault = true
		} else {
			lowered += t.Weight
		}
	}
	return fault, lowered, failing
}
