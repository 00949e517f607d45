package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// The kernel's IPVS connection sync daemons follow the VRRP election
// (issue #18), as keepalived's lvs_sync_daemon does: the instance with
// [vrrp_instance.lvs_sync] runs the master daemon while it is MASTER and
// the backup daemon otherwise, so a backup director already holds the
// master's connections when it takes over. connSync is the one goroutine
// of a director that drives them: every daemon call is made from it, so
// two calls never race (a stop and a start of the same state would
// otherwise interleave across two transitions).

// syncRetry is how soon an apply the kernel refused is tried again,
// unless the election or the configuration changes first.
const syncRetry = time.Second

// holdSendBound bounds handing a preemption hold to the instance, whose
// event queue may be full for a moment.
const holdSendBound = time.Second

// syncStopBound bounds leaving the daemons at exit: stopping a kernel
// sync thread waits for it to end.
const syncStopBound = 5 * time.Second

// syncWant is what the election and the configuration want of the
// kernel's sync daemons.
type syncWant struct {
	// managed: an instance has lvs_sync. A director never configured
	// with it leaves daemons started by hand (ipvsadm) alone.
	managed  bool
	instance string
	cfg      conf.LVSSync
	state    ipvs.DaemonState // DaemonNone to stop both
}

// wantSync is what cfg and the instances' states want: the master daemon
// while the lvs_sync instance is MASTER, or STOPPING (a master handing
// over at exit still forwards, and its last connections should reach the
// successor); the backup daemon in every other state (BACKUP, FAULT,
// INIT, RESTARTING), as keepalived does. In a sync group the instance's
// state is the group's: the group moves its members together.
func wantSync(cfg *conf.Config, states []instance.Status) syncWant {
	for _, ic := range cfg.VRRPInstances {
		if ic.LVSSync == nil {
			continue
		}
		w := syncWant{managed: true, instance: ic.Name, cfg: *ic.LVSSync, state: ipvs.DaemonBackup}
		for _, s := range states {
			if s.Name == ic.Name && (s.State == "MASTER" || s.State == "STOPPING") {
				w.state = ipvs.DaemonMaster
			}
		}
		return w
	}
	return syncWant{}
}

// hasLVSSync reports whether an instance of cfg has lvs_sync.
func hasLVSSync(cfg *conf.Config) bool {
	for _, ic := range cfg.VRRPInstances {
		if ic.LVSSync != nil {
			return true
		}
	}
	return false
}

// SyncReport is the connection sync daemons in `lvsha status`.
type SyncReport struct {
	// VRRPInstance is the instance the daemons follow; "" once a reload
	// removed lvs_sync (the daemons are then stopped).
	VRRPInstance string `json:"vrrp_instance"`
	// Want is the daemon the election wants: "master", "backup" or
	// "none".
	Want string `json:"want"`
	// Daemons are those the kernel runs, as last read (ReadAt).
	Daemons []SyncDaemonReport `json:"daemons"`
	ReadAt  time.Time          `json:"read_at,omitzero"`
	// Error is why the kernel does not run what Want says, from the
	// last attempt; Errors counts the failed attempts.
	Error  string `json:"error,omitempty"`
	Errors uint64 `json:"errors"`
	// RefreshPeriod is lvs_sync refresh_period ("10s"), set in the
	// kernel: the master announces every connection again this often.
	RefreshPeriod string `json:"refresh_period,omitempty"`
	// BackupSince is when the backup daemon last started (or was
	// adopted); PreemptHoldUntil is when the instance may preempt a
	// lower-priority master again: preempt_hold after BackupSince. Zero
	// when no hold was set.
	BackupSince      time.Time `json:"backup_since,omitzero"`
	PreemptHoldUntil time.Time `json:"preempt_hold_until,omitzero"`
}

// SyncDaemonReport is one running sync daemon, as the kernel reads it
// back (its defaults filled in).
type SyncDaemonReport struct {
	State     string `json:"state"` // master or backup
	Interface string `json:"interface"`
	SyncID    uint32 `json:"sync_id"`
	MaxLen    uint16 `json:"max_len"`
	Group     string `json:"group"`
	Port      uint16 `json:"port"`
	TTL       uint8  `json:"ttl"`
}

func (s SyncDaemonReport) String() string {
	return fmt.Sprintf("%s on %s (sync_id %d, max_len %d, group %s port %d ttl %d)", s.State, s.Interface, s.SyncID, s.MaxLen, s.Group, s.Port, s.TTL)
}

// election is the VRRP instances as connSync follows them
// (*group.Group).
type election interface {
	Status() []instance.Status
	// Transitions has a value after any instance changed state, which
	// Status then shows; one value may stand for several.
	Transitions() <-chan struct{}
	// HoldPreempt keeps the named instance from preempting a
	// lower-priority master until until.
	HoldPreempt(ctx context.Context, name string, until time.Time) error
}

// connSync drives the sync daemons of one director.
type connSync struct {
	log *slog.Logger
	// k is the kernel's daemons; nil without IPVS, noK saying why.
	k   ipvs.Daemons
	noK error
	// config reads the daemon's configuration; el is its instances.
	config func() *conf.Config
	el     election
	// tune sets the kernel's sync refresh period (SyncSysctls.SetRefresh)
	// and says whether it changed it; now is the clock.
	tune func(period time.Duration) (bool, error)
	now  func() time.Time
	// cleanup is set when the daemon exits with --cleanup: the daemons
	// stop with the table.
	cleanup atomic.Bool
	// kick wakes run after a reload (reconfigured).
	kick chan struct{}

	// Owned by run's goroutine.
	tried    syncWant // what the last apply was for
	applied  syncWant // what the kernel last took whole
	failed   bool
	lastTry  time.Time
	lastErr  error
	resyncAt time.Time
	exiting  bool
	// backupSince and holdUntil are the report's BackupSince and
	// PreemptHoldUntil, heldInstance the instance held.
	backupSince, holdUntil time.Time
	heldInstance           string
	// faulted: the followed instance was in FAULT at the last step.
	faulted bool

	mu  sync.Mutex
	rep *SyncReport // nil while lvsha has never driven the daemons
}

func newConnSync(log *slog.Logger, k ipvs.Daemons, noK error, config func() *conf.Config, el election) *connSync {
	return &connSync{log: log, k: k, noK: noK, config: config, el: el, kick: make(chan struct{}, 1),
		tune: ipvs.SyncSysctls{Dir: ipvs.DefaultSysctlDir}.SetRefresh, now: time.Now}
}

// reconfigured tells run that a reload took a new configuration, which
// may have given an idle director an lvs_sync to follow.
func (c *connSync) reconfigured() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// nextWake is when run must step without news from the election or a
// reload: to retry a refused apply, and while lvsha drives the daemons
// every resync interval; ok is false when nothing is due. Owned by run's
// goroutine.
//
// The transitions drive the daemons; the resync is not there to catch a
// missed one (Transitions keeps a value until it is taken, so none is
// lost). It puts back a daemon stopped or changed by hand (ipvsadm
// --stop-daemon is no transition) and re-reads the kernel's daemons for
// status, at the cost of one wakeup per resync interval (10 s by
// default), as the table's own resync does.
func (c *connSync) nextWake() (at time.Time, ok bool) {
	if c.failed {
		at, ok = c.lastTry.Add(syncRetry), true
	}
	if c.tried.managed && (!ok || c.resyncAt.Before(at)) {
		at, ok = c.resyncAt, true
	}
	return at, ok
}

// run drives the daemons until ctx is done, then leaves them as exit
// says. The caller cancels ctx once VRRP has handed over, not at the
// signal: the master daemon must run through the handover.
//
// It steps when the election reports a transition, at a reload, and at
// nextWake: it does not poll. Polling the instances' states every 100 ms
// cost an idle director of one VRRP instance about 60 context switches a
// second, and still left up to 100 ms between a takeover and the master
// daemon.
func (c *connSync) run(ctx context.Context) {
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		c.step(time.Now())
		if at, ok := c.nextWake(); ok {
			wake.Reset(time.Until(at))
		} else {
			wake.Stop()
		}
		select {
		case <-ctx.Done():
			c.exit()
			return
		case <-wake.C:
		case <-c.el.Transitions():
		case <-c.kick:
		}
	}
}

// step applies what the election wants if it changed, if the last try
// failed more than syncRetry ago, or, to take back a daemon changed by
// hand, every resync interval.
func (c *connSync) step(now time.Time) {
	cfg := c.config()
	if !hasLVSSync(cfg) && !c.tried.managed && !c.failed {
		// Not even the instances' states are read: a director of many
		// instances and no lvs_sync pays nothing at their transitions.
		return
	}
	states := c.el.Status()
	w := wantSync(cfg, states)
	if c.backFromFault(w, states) {
		// The backup daemon heard nothing while the instance was in
		// fault (its interface down, most often): the connections the
		// master made meanwhile reach it with the master's next
		// refresh, so preemption waits as long again from now. Without
		// this, a director whose link came back preempted as soon as
		// the hold set at its demotion had run out, and reset the
		// connections made while it was away (TestChaosSoak, seed
		// 1796678732073313026).
		c.holdPreempt(w, now)
	} else if w.managed && w.instance == c.heldInstance && now.Before(c.holdUntil) {
		// A reload that rebuilds the instance starts it without the
		// hold, while the backup daemon, which the rebuild leaves
		// running, is still learning: its first transition brings it
		// back here. Resending to the same instance changes nothing.
		ctx, cancel := context.WithTimeout(context.Background(), holdSendBound)
		err := c.el.HoldPreempt(ctx, w.instance, c.holdUntil)
		cancel()
		if err != nil {
			c.log.Debug("hold preemption again", "op", "conn_sync", "vrrp_instance", w.instance, "error", err)
		}
	}
	switch {
	case !w.managed && !c.tried.managed && !c.failed:
		return // lvsha does not drive the daemons
	case w != c.tried:
	case c.failed && now.Sub(c.lastTry) >= syncRetry:
	case w.managed && !now.Before(c.resyncAt):
	default:
		return
	}
	c.resyncAt = now.Add(cfg.Director.Resync)
	c.apply(now, w)
}

// backFromFault reports whether w's instance has just left FAULT for
// BACKUP with the backup daemon running as w wants and a hold to keep
// (preempt_hold); it notes the instance's state for the next step.
func (c *connSync) backFromFault(w syncWant, states []instance.Status) bool {
	state := ""
	for _, s := range states {
		if s.Name == w.instance {
			state = s.State
		}
	}
	was := c.faulted
	c.faulted = state == "FAULT"
	return was && state == "BACKUP" && c.k != nil && w.managed && w.state == ipvs.DaemonBackup &&
		w.cfg.PreemptHold > 0 && !c.exiting && c.applied == w
}

// exit leaves the daemons at the daemon's clean exit. With --cleanup they
// stop, as keepalived stops them. Otherwise the table stays for the
// next lvsha (a restart or an upgrade drops no connection) and so does a
// daemon, as a backup's: this director has handed over, and its backup
// daemon keeps learning the new master's connections while lvsha is
// down; the next lvsha, which starts as a backup, adopts it.
func (c *connSync) exit() {
	if !c.tried.managed {
		return
	}
	w := c.tried
	c.exiting = true
	if c.cleanup.Load() {
		w.state = ipvs.DaemonNone
	} else {
		w.state = ipvs.DaemonBackup
	}
	if c.apply(time.Now(), w) == nil {
		c.log.Info("IPVS sync daemons left at exit", "op", "stop", "state", w.state.String())
	}
}

// apply makes the kernel's daemons what w wants and reads them back for
// status. Errors are logged when they change, as the table's are.
func (c *connSync) apply(now time.Time, w syncWant) error {
	retry := c.failed && c.tried == w
	c.tried, c.lastTry = w, now
	// A backup daemon starting now has missed the connections the
	// master made before; it hears each again within a refresh period.
	// The hold goes to the instance before the kernel is touched (at
	// start the instance's Master_Down_Timer already runs), and again
	// from when the daemon runs. Retries of a refused start send no
	// more: a daemon that never starts holds preemption once, not
	// forever. Without IPVS no daemon will ever learn anything: no hold.
	holding := c.k != nil && w.managed && w.state == ipvs.DaemonBackup && w.cfg.PreemptHold > 0 && !c.exiting && c.applied != w
	if holding && !retry {
		c.holdPreempt(w, now)
	}
	var err error
	switch {
	case c.k == nil:
		err = fmt.Errorf("the IPVS connection sync daemon cannot run: %w", c.noK)
	case w.managed:
		if w.cfg.RefreshPeriod > 0 {
			if changed, terr := c.tune(w.cfg.RefreshPeriod); terr != nil {
				err = terr
			} else if changed {
				c.log.Info("IPVS sync refresh period set: the master announces every connection again this often", "op", "conn_sync",
					"refresh_period", w.cfg.RefreshPeriod.String())
			}
		}
		err = errors.Join(err, ipvs.ApplySync(c.k, w.cfg, w.state))
	default:
		// lvs_sync removed by a reload: stop what lvsha started.
		err = ipvs.ApplySync(c.k, c.applied.cfg, ipvs.DaemonNone)
	}
	if err != nil {
		err = fmt.Errorf("%s sync daemon for vrrp_instance %q: %w", stateWord(w), w.instance, err)
	}
	var running []ipvs.Daemon
	var rerr error
	if c.k != nil {
		running, rerr = c.k.GetDaemons()
	}
	prev := c.lastErr
	switch {
	case err != nil && (prev == nil || prev.Error() != err.Error()):
		c.log.Error("IPVS sync daemons not as the election wants", "op", "conn_sync", "vrrp_instance", w.instance, "want", stateWord(w), "error", err)
	case err == nil && prev != nil:
		c.log.Info("IPVS sync daemons recovered", "op", "conn_sync", "was", prev.Error())
	}
	if err == nil && w != c.applied {
		c.log.Info("IPVS sync daemons follow the election", "op", "conn_sync", "vrrp_instance", w.instance, "state", stateWord(w),
			"interface", w.cfg.Interface, "sync_id", w.cfg.SyncID)
	}
	c.failed, c.lastErr = err != nil, err
	if err == nil {
		c.applied = w
		if holding {
			c.holdPreempt(w, c.now())
		}
	}

	rep := &SyncReport{VRRPInstance: w.instance, Want: stateWord(w), RefreshPeriod: refreshWord(w.cfg.RefreshPeriod),
		BackupSince: c.backupSince, PreemptHoldUntil: c.holdUntil}
	if rerr == nil && c.k != nil {
		rep.ReadAt = now
		for _, d := range running {
			rep.Daemons = append(rep.Daemons, SyncDaemonReport{State: d.State.String(), Interface: d.Interface, SyncID: d.SyncID,
				MaxLen: d.MaxLen, Group: d.Group.String(), Port: d.Port, TTL: d.TTL})
		}
	}
	if e := errors.Join(err, rerr); e != nil {
		rep.Error = e.Error()
	}
	c.mu.Lock()
	if c.rep != nil {
		rep.Errors = c.rep.Errors
	}
	if err != nil {
		rep.Errors++
	}
	c.rep = rep
	c.mu.Unlock()
	return err
}

// holdPreempt keeps w's instance from preempting a lower-priority master
// for w's preempt_hold from since, when its backup daemon starts.
func (c *connSync) holdPreempt(w syncWant, since time.Time) {
	until := since.Add(w.cfg.PreemptHold)
	ctx, cancel := context.WithTimeout(context.Background(), holdSendBound)
	defer cancel()
	if err := c.el.HoldPreempt(ctx, w.instance, until); err != nil {
		c.log.Warn("cannot hold preemption: a failback may reset the connections made through the other director", "op", "conn_sync",
			"vrrp_instance", w.instance, "error", err)
		return
	}
	c.backupSince, c.holdUntil, c.heldInstance = since, until, w.instance
	c.mu.Lock()
	if c.rep != nil && c.rep.VRRPInstance == w.instance {
		c.rep.BackupSince, c.rep.PreemptHoldUntil = since, until
	}
	c.mu.Unlock()
	c.log.Info("preemption held while the backup sync daemon learns the master's connections", "op", "conn_sync",
		"vrrp_instance", w.instance, "until", until.Format(time.RFC3339Nano), "preempt_hold", w.cfg.PreemptHold.String(),
		"refresh_period", w.cfg.RefreshPeriod.String())
}

// refreshWord is a refresh period for status, "" for none.
func refreshWord(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// stateWord is the daemon w wants, in ipvsadm's words.
func stateWord(w syncWant) string {
	if !w.managed || w.state == ipvs.DaemonNone {
		return "none"
	}
	return w.state.String()
}

// report is the daemons for status; nil when lvsha has never driven them.
func (c *connSync) report() *SyncReport {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rep == nil {
		return nil
	}
	r := *c.rep
	r.Daemons = append([]SyncDaemonReport(nil), c.rep.Daemons...)
	return &r
}
