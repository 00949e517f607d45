package health

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/risefall"
)

// Key names one real server of one virtual server.
type Key struct {
	VirtualServer string         `json:"vs"`
	RealServer    netip.AddrPort `json:"rs"`
}

func (k Key) String() string { return k.VirtualServer + " " + k.RealServer.String() }

// Status is the current state of one Key.
type Status struct {
	Key Key
	// Up is the state after rise/fall; always true without a check.
	Up bool
	// Since is when Up last changed, or when the probe was created.
	Since time.Time
	// Last is the latest probe result; zero until Checked.
	Last Result
	// Checked reports that at least one probe ran.
	Checked bool
	// Probe describes the probe, e.g. "http GET http://10.0.0.1:80/";
	// "none" when the real server has no check.
	Probe string
	// Transitions counts changes of Up since the probe was created.
	Transitions int
}

// Engine runs the probes of a configuration and tracks their states.
//
// Identical probes are run once and feed every Key that uses them: the same
// backend behind several virtual servers gets one connection per interval,
// not one per virtual server. Two checks are identical when they probe the
// same target address:port and every field of their conf.Check is equal
// (see identity). Exec probes are never shared across virtual servers or
// real servers, because their environment names both.
type Engine struct {
	log     *slog.Logger
	updates chan struct{}
	// jitter picks the delay before a new probe's first run, in
	// [0, interval), so a large configuration does not probe in bursts.
	// Tests replace it to be deterministic.
	jitter func(interval time.Duration) time.Duration
	// newChecker builds a probe (NewChecker; tests fake the network).
	newChecker func(vs string, rs netip.AddrPort, c *conf.Check) (Checker, error)

	wake chan struct{} // cap 1: the queue's head moved earlier
	// alarm, if set (WakeOn), is what the scheduler sleeps on between
	// probes instead of a Go timer.
	alarm Alarm

	mu     sync.Mutex
	probes map[string]*probe
	keys   map[Key]*probe  // nil: no check, always up
	runCtx context.Context // non-nil while Run runs
	queue  probeQueue      // probes waiting for their next run
	wakeAt time.Time       // when the scheduler next wakes on its own
	wg     sync.WaitGroup  // probe runs in flight
	// startDown are real servers known to be down before this engine
	// ran (StartDown): their first probe starts down, not up.
	startDown map[Key]bool
	// onResult observes every probe result (OnResult); nil for none.
	onResult func(Key, Result)
}

// OnResult makes the engine call fn with every probe result it records,
// once for each real server the probe serves (a probe shared by several
// virtual servers reports to each), from the probe's goroutine or the
// engine's scheduler (a probe that finished without blocking) after the
// state is updated. It exists for observations a snapshot cannot give,
// such as a histogram of probe latencies; fn must be quick and safe for
// concurrent use. Results of probes stopped mid-run are not recorded, so
// not reported. nil stops the calls.
func (e *Engine) OnResult(fn func(Key, Result)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onResult = fn
}

// StartDown tells the engine, before its first Update, which real servers
// were down when the previous daemon stopped, so that a restart does not
// hand them traffic until rise probes pass. It affects only probes that
// Update creates afterwards, each once.
func (e *Engine) StartDown(keys []Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.startDown == nil {
		e.startDown = make(map[Key]bool, len(keys))
	}
	for _, k := range keys {
		e.startDown[k] = true
	}
}

// probe is one distinct probe and the state it feeds to its owners. Its
// interval, retry, rise and fall are used as conf.Load leaves them: it
// fills every default and rejects an interval or retry_interval under 1ms,
// so there is no second default here.
type probe struct {
	id       string
	checker  Checker
	desc     string
	interval time.Duration
	retry    time.Duration // interval while an up server is failing
	rise     int
	fall     int

	// Guarded by Engine.mu.
	owners      []Key
	state       risefall.State
	since       time.Time
	last        Result
	checked     bool
	transitions int
	ctx         context.Context // while Run runs: cancelled when the probe is removed
	cancel      context.CancelFunc
	next        time.Time // when the probe runs next
	weight      int       // dynamic weight of the last success; -1: configured
	index       int       // in Engine.queue; -1 when not queued (running or stopped)
}

// schedSlack lets the scheduler start probes due within this much of now
// in one wakeup (a probe at most a tenth of its interval early): each
// wakeup of the scheduler costs the runtime's idle and wake path. With a
// millisecond, 100 tcp checks a second cost lvsha 4.2–4.9 ms of CPU a
// check in the VM against 3.2–3.9 ms for a bare loop of their system
// calls; with 20 ms, 3.1 ms (BenchmarkHealthChecks). A probe started
// early is next due an interval after that start: it stays with the
// group it joined, a wakeup for each group, its schedule moved earlier
// once by less than the slack.
const schedSlack = 20 * time.Millisecond

// early is how long before its time p may start: schedSlack, or a tenth
// of a short interval.
func (p *probe) early() time.Duration { return min(schedSlack, p.interval/10) }

// probeQueue is a min-heap of probes by next run time.
type probeQueue []*probe

func (q probeQueue) Len() int           { return len(q) }
func (q probeQueue) Less(i, j int) bool { return q[i].next.Before(q[j].next) }
func (q probeQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *probeQueue) Push(x any) {
	p := x.(*probe)
	p.index = len(*q)
	*q = append(*q, p)
}
func (q *probeQueue) Pop() any {
	old := *q
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	p.index = -1
	return p
}

// NewEngine returns an Engine without probes; give it a configuration with
// Update and start it with Run, in either order.
func NewEngine(log *slog.Logger) *Engine {
	return &Engine{
		log:     log,
		updates: make(chan struct{}, 1),
		jitter: func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return rand.N(d)
		},
		newChecker: NewChecker,
		wake:       make(chan struct{}, 1),
		probes:     make(map[string]*probe),
		keys:       make(map[Key]*probe),
	}
}

// Alarm is a deadline the scheduler can sleep on (*alarm.Alarm, on a
// timerfd): Set arms it, a zero time disarms it; C delivers each wake. A
// Go timer's expiry in an idle process also wakes the runtime's monitor
// thread and hands the goroutine between threads: at a hundred probes a
// second and more, a cost per probe beside the probe's own system calls
// (issue #20).
type Alarm interface {
	Set(deadline time.Time)
	C() <-chan time.Time
}

// WakeOn has the scheduler sleep on a instead of a Go timer. Call it
// before Run.
func (e *Engine) WakeOn(a Alarm) { e.alarm = a }

// Updates receives a value, coalesced, after any state transition or
// configuration change; read Snapshot or Up for the current states.
func (e *Engine) Updates() <-chan struct{} { return e.updates }

func (e *Engine) notify() {
	select {
	case e.updates <- struct{}{}:
	default:
	}
}

// Run runs the probes until ctx is done, then waits for every probe in
// flight to return and returns nil. Only one Run may be active at a time;
// a later Run resumes the probes with the states they had.
//
// One scheduler (a heap of next run times, one timer) starts each probe
// run: a tcp connect that is answered at once runs in the scheduler
// itself, every other run in a goroutine of its own (start). A probe is
// requeued only when its run finishes, so a slow probe delays its next
// run instead of piling up. Idle probes therefore cost no goroutine.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.runCtx != nil {
		e.mu.Unlock()
		return errors.New("health engine already running")
	}
	e.runCtx = ctx
	now := time.Now()
	for _, p := range e.probes {
		e.arm(p, now)
	}
	e.mu.Unlock()

	e.schedule(ctx)

	e.mu.Lock()
	e.runCtx = nil
	for _, p := range e.queue {
		p.index = -1
	}
	e.queue = nil
	e.mu.Unlock()
	// Runs are added under mu only while runCtx is set, so none can be
	// added from here on.
	e.wg.Wait()
	return nil
}

// arm queues p's first run after a random part of its interval. e.mu must
// be held and e.runCtx set.
func (e *Engine) arm(p *probe, now time.Time) {
	p.ctx, p.cancel = context.WithCancel(e.runCtx)
	p.next = now.Add(e.jitter(p.interval))
	heap.Push(&e.queue, p)
	e.kick(p.next)
}

// kick wakes the scheduler if t is before its planned wakeup. e.mu held.
func (e *Engine) kick(t time.Time) {
	if t.Before(e.wakeAt) {
		e.wakeAt = t
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

func (e *Engine) schedule(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []*probe
	for {
		e.mu.Lock()
		due = due[:0]
		for now := time.Now(); len(e.queue) > 0 && !e.queue[0].next.After(now.Add(e.queue[0].early())); {
			p := heap.Pop(&e.queue).(*probe)
			e.wg.Add(1)
			due = append(due, p)
		}
		e.mu.Unlock()
		for i, p := range due {
			e.start(p)
			due[i] = nil
		}
		e.mu.Lock()
		now := time.Now()
		wait, early := time.Hour, time.Duration(0)
		if len(e.queue) > 0 {
			wait, early = e.queue[0].next.Sub(now), e.queue[0].early()
		}
		e.wakeAt = now.Add(wait)
		e.mu.Unlock()
		if wait <= early {
			// More came due while the last ones started.
			if ctx.Err() != nil {
				return
			}
			continue
		}
		var expired <-chan time.Time
		if e.alarm != nil {
			// A wake of the alarm that races one of e.wake's stays in C
			// and costs one pass over a queue with nothing due.
			e.alarm.Set(now.Add(wait))
			expired = e.alarm.C()
		} else {
			timer.Reset(wait)
			expired = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-expired:
		case <-e.wake:
		}
	}
}

// starter is a Checker that can begin a probe without blocking (the tcp
// connect): start returns the result and a nil wait when the probe
// finished at once, else a wait that blocks until it finishes and
// returns the result.
type starter interface {
	start(ctx context.Context) (r Result, wait func() Result)
}

// start runs one probe of p: a starter's start in the scheduler's
// goroutine, and whatever blocks in a goroutine of its own. A probe that
// finishes within start (a tcp connect to a real server on this host or
// over a veth) so costs no goroutine: with one goroutine a probe, the
// runtime handed the processor to another thread whenever a probe's
// system call outlasted a sysmon tick while other probes waited to run,
// and a busy director spent more on those hand-offs than on probing
// (BenchmarkHealthChecks, under emulation).
func (e *Engine) start(p *probe) {
	s, ok := p.checker.(starter)
	if !ok {
		go e.runOnce(p)
		return
	}
	at := time.Now()
	res, wait := s.start(p.ctx)
	if wait == nil {
		e.finish(p, res, at)
		return
	}
	go func() { e.finish(p, wait(), at) }()
}

func (e *Engine) runOnce(p *probe) {
	start := time.Now()
	e.finish(p, p.checker.Check(p.ctx), start)
}

// finish records res of p's run that began at start, unless the probe
// was stopped mid-run: the failure says nothing about the server then.
func (e *Engine) finish(p *probe, res Result, start time.Time) {
	defer e.wg.Done()
	if p.ctx.Err() != nil {
		return
	}
	e.record(p, res, start)
}

// record applies one result of p, whose run began at start, and queues
// its next run.
func (e *Engine) record(p *probe, res Result, start time.Time) {
	e.mu.Lock()
	if e.probes[p.id] != p || p.ctx.Err() != nil {
		e.mu.Unlock()
		return // removed by Update, or Run ended, while probing
	}
	p.last, p.checked = res, true
	observe, served := e.onResult, p.owners // owners: replaced, never mutated, by Update
	var changed bool
	p.state, changed = p.state.Step(res.OK, p.rise, p.fall)
	var owners []Key
	if changed {
		p.since = time.Now()
		p.transitions++
		owners = p.owners // replaced, never mutated, by Update
	}
	up := p.state.Up
	weight := p.weight
	switch {
	case res.OK && res.Weighted:
		weight = res.Weight
	case res.OK, changed && !up:
		// Success at the configured weight, or fallen: keepalived forgets
		// a dynamic weight either way.
		weight = -1
	}
	reweighed := weight != p.weight && up && !changed
	if reweighed {
		owners = p.owners
	}
	p.weight = weight
	p.next = start.Add(nextDelay(p.state, p.interval, p.retry))
	if now := time.Now(); p.next.Before(now) {
		p.next = now
	}
	heap.Push(&e.queue, p)
	e.kick(p.next)
	e.mu.Unlock()
	if observe != nil {
		for _, k := range served {
			observe(k, res)
		}
	}
	switch {
	case changed:
		for _, k := range owners {
			e.logTransition(k, p.desc, up, res)
		}
	case reweighed:
		for _, k := range owners {
			e.log.Info("real server weight", "vs", k.VirtualServer, "rs", k.RealServer.String(),
				"probe", p.desc, "result", res.Message, "dynamic_weight", weight)
		}
	default:
		return
	}
	e.notify()
}

func (e *Engine) logTransition(k Key, desc string, up bool, res Result) {
	state, level := "up", slog.LevelInfo
	if !up {
		state, level = "down", slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("vs", k.VirtualServer),
		slog.String("rs", k.RealServer.String()),
		slog.String("state", state),
		slog.String("probe", desc),
		slog.String("result", res.Message),
		slog.Int("code", res.Code),
		slog.Duration("latency", res.Latency),
	}
	if res.Err != nil {
		attrs = append(attrs, slog.String("error", res.Err.Error()))
	}
	e.log.LogAttrs(context.Background(), level, "real server "+state, attrs...)
}

// Update applies cfg. Probes whose identity is unchanged keep running and
// keep their state; removed ones stop; new ones start (once Run runs) in the
// initial up state. It may be called before or during Run; a nil cfg
// removes everything.
func (e *Engine) Update(cfg *conf.Config) {
	if cfg == nil {
		cfg = &conf.Config{}
	}
	type spec struct {
		vs     string
		rs     netip.AddrPort
		check  *conf.Check
		owners []Key
	}
	want := make(map[string]*spec)
	keys := configKeys(cfg)
	for _, k := range keys {
		if k.id == "" {
			continue
		}
		s := want[k.id]
		if s == nil {
			s = &spec{vs: k.VirtualServer, rs: k.RealServer, check: k.check}
			want[k.id] = s
		}
		s.owners = append(s.owners, k.Key)
	}

	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, p := range e.probes {
		if want[id] == nil {
			if p.cancel != nil {
				p.cancel()
			}
			if p.index >= 0 {
				heap.Remove(&e.queue, p.index)
			}
			delete(e.probes, id)
		}
	}
	for id, s := range want {
		if p := e.probes[id]; p != nil {
			p.owners = s.owners
			continue
		}
		p := &probe{
			id:       id,
			interval: s.check.Interval,
			retry:    s.check.RetryInterval,
			rise:     s.check.Rise,
			fall:     s.check.Fall,
			owners:   s.owners,
			state:    e.initialState(s.check, s.owners),
			weight:   -1,
			since:    now,
			index:    -1,
		}
		c, err := e.newChecker(s.vs, s.rs, s.check)
		if err != nil {
			// Config validation should prevent this; if it slips through
			// the server is reported down rather than silently unchecked.
			err = fmt.Errorf("check of %s in %s: %w", s.rs, s.vs, err)
			e.log.Error("cannot build health check", slog.String("vs", s.vs),
				slog.String("rs", s.rs.String()), slog.String("error", err.Error()))
			c = errChecker{err}
		}
		p.checker = c
		p.desc = describe(c)
		e.probes[id] = p
		if e.runCtx != nil {
			e.arm(p, now)
		}
	}
	e.keys = make(map[Key]*probe, len(keys))
	for _, k := range keys {
		var p *probe // none for a real server without a check
		if k.id != "" {
			p = e.probes[k.id]
		}
		e.keys[k.Key] = p
	}
	e.notify()
}

// initialState is a new probe's state: its check's, or down when one of
// its owners was down before this engine ran. e.mu held.
func (e *Engine) initialState(c *conf.Check, owners []Key) risefall.State {
	down := false
	for _, k := range owners {
		if e.startDown[k] {
			down = true
			delete(e.startDown, k)
		}
	}
	if down {
		return risefall.State{}
	}
	return initialFor(c)
}

// Snapshot returns the state of every real server of the current
// configuration, including those without a check.
func (e *Engine) Snapshot() map[Key]Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[Key]Status, len(e.keys))
	for k, p := range e.keys {
		if p == nil {
			out[k] = Status{Key: k, Up: true, Probe: "none"}
			continue
		}
		out[k] = Status{
			Key:         k,
			Up:          p.state.Up,
			Since:       p.since,
			Last:        p.last,
			Checked:     p.checked,
			Probe:       p.desc,
			Transitions: p.transitions,
		}
	}
	return out
}

// Up reports whether rs of vs is up. Unknown keys and real servers without
// a check are up.
func (e *Engine) Up(vs string, rs netip.AddrPort) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.keys[Key{VirtualServer: vs, RealServer: rs}]
	return p == nil || p.state.Up
}

// Weight returns the weight a dynamic_weight exec check of rs in vs asked
// for on its last success; ok is false when the configured weight applies.
func (e *Engine) Weight(vs string, rs netip.AddrPort) (weight int, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.keys[Key{VirtualServer: vs, RealServer: rs}]
	if p == nil || p.weight < 0 {
		return 0, false
	}
	return p.weight, true
}

// identity is equal for two checks exactly when one probe can serve both:
// same target and every field of conf.Check equal, whether or not the type
// uses it (conf leaves fields of other types zero, so this costs no
// sharing). TestIdentityCoversEveryField fails when a field of conf.Check
// is missing here.
func identity(vs string, rs netip.AddrPort, c *conf.Check) string {
	var b strings.Builder
	field := func(name, v string) {
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(v))
		b.WriteByte(' ')
	}
	field("type", c.Type)
	field("interval", c.Interval.String())
	field("retry_interval", c.RetryInterval.String())
	field("timeout", c.Timeout.String())
	field("rise", strconv.Itoa(c.Rise))
	field("fall", strconv.Itoa(c.Fall))
	field("start_down", strconv.FormatBool(c.StartDown))
	field("connect_address", c.ConnectAddress.String())
	field("connect_port", strconv.Itoa(int(c.ConnectPort)))
	field("method", c.Method)
	field("path", c.Path)
	field("host", c.Host)
	field("status", fmt.Sprint(c.Status))
	field("body", c.Body)
	field("body_regexp", c.BodyRegexp)
	field("body_md5", c.BodyMD5)
	field("tls_verify", strconv.FormatBool(c.TLSVerify))
	field("sni", c.SNI)
	for _, u := range c.URLs {
		field("url", u.Path)
		field("url_status", fmt.Sprint(u.Status))
		field("url_body", u.Body)
		field("url_body_regexp", u.BodyRegexp)
		field("url_body_md5", u.BodyMD5)
	}
	field("helo_name", c.HeloName)
	field("payload_hex", c.PayloadHex)
	field("reply_hex", c.ReplyHex)
	field("require_reply", strconv.FormatBool(c.RequireReply))
	field("dns_type", c.DNSType)
	field("dns_name", c.DNSName)
	for _, a := range c.Command {
		field("arg", a)
	}
	field("dynamic_weight", strconv.FormatBool(c.DynamicWeight))
	addr, err := probeAddr(rs, c)
	if c.Type == "exec" || err != nil {
		// An exec probe's environment names the pair, so the pair is its
		// identity; an unprobeable target stays distinct per pair so the
		// error is reported against each.
		field("vs", vs)
		field("rs", rs.String())
	}
	field("target", addr)
	return b.String()
}

func describe(c Checker) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", c)
}

// errChecker fails every probe with a fixed error.
type errChecker struct{ err error }

func (c errChecker) Check(context.Context) Result {
	return Result{At: time.Now(), Err: c.err, Message: c.err.Error()}
}

func (c errChecker) String() string { return "invalid check: " + c.err.Error() }
