package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lvsha/lvsha/alarm"
	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/hook"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/vrrp/bfdwatch"
	"github.com/lvsha/lvsha/vrrp/group"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// table is what the daemon needs from the IPVS reconciler.
type table interface {
	// Apply reads the kernel's table and writes the difference; Update
	// writes the difference from the table as last read and written
	// (ipvs.Reconciler).
	Apply(desired []ipvs.Service) (ipvs.Changes, error)
	Update(desired []ipvs.Service) (ipvs.Changes, error)
	Plan(desired []ipvs.Service) ([]ipvs.Change, error)
	Remove(services []ipvs.Service) error
	Read() ([]ipvs.ServiceStatus, error)
}

// noIPVS is the table of a kernel without IPVS: empty, and refusing
// anything but an empty table with the error that opening IPVS gave.
type noIPVS struct{ err error }

func (n noIPVS) Plan(desired []ipvs.Service) ([]ipvs.Change, error) {
	_, err := n.Apply(desired)
	return nil, err
}

func (n noIPVS) Update(desired []ipvs.Service) (ipvs.Changes, error) { return n.Apply(desired) }

func (n noIPVS) Apply(desired []ipvs.Service) (ipvs.Changes, error) {
	if len(desired) > 0 {
		return ipvs.Changes{}, fmt.Errorf("program %d virtual services: %w", len(desired), n.err)
	}
	return ipvs.Changes{}, nil
}

func (n noIPVS) Remove(services []ipvs.Service) error {
	if len(services) > 0 {
		return fmt.Errorf("remove %d virtual services: %w", len(services), n.err)
	}
	return nil
}

func (noIPVS) Read() ([]ipvs.ServiceStatus, error) { return nil, nil }

// prober is what the daemon needs from the health engine.
type prober interface {
	Run(ctx context.Context) error
	Update(cfg *conf.Config)
	Updates() <-chan struct{}
	Snapshot() map[health.Key]health.Status
	Up(vs string, rs netip.AddrPort) bool
	Weight(vs string, rs netip.AddrPort) (int, bool)
	// Preview is Up and Weight as they will be right after Update(cfg)
	// (health.Engine.Preview), for planning a reload.
	Preview(cfg *conf.Config) (up func(string, netip.AddrPort) bool, weight func(string, netip.AddrPort) (int, bool))
}

// refresher is a prober whose probes depend on more than the config (the
// director's addresses, for selfProber): the loop refreshes it at every
// resync.
type refresher interface {
	Refresh()
}

// runner runs queued hooks until ctx is done (hook.Runner).
type runner interface {
	Run(ctx context.Context)
}

// daemon wires configuration, health and the kernel table. One goroutine
// (loop) owns every change to the kernel; the control socket only reads.
type daemon struct {
	log    *slog.Logger
	path   string
	table  table
	probes prober
	sorry  ipvs.SorryMemory // quorum hysteresis: whether each sorry server serves
	// vrrp runs the VRRP instances; nil without any. vrrpLinks reports
	// the links their adverts come in on.
	vrrp      *group.Group
	vrrpLinks func() []transport.LinkStats
	// bfd runs BFD fast takeover beside the instances; nil runs none.
	bfd *bfdwatch.Watcher
	// connSync drives the IPVS connection sync daemons after the VRRP
	// election; nil drives none (tests).
	connSync *connSync
	// hooks and hookRunner run the real-server and quorum notify commands.
	hooks      *rsHooks
	hookRunner runner
	// load reads and validates the configuration file; a field so tests can
	// feed configs without files.
	load func(path string) (*conf.Config, error)

	// reloads carries `lvsha reload`'s requests to the loop, which
	// answers each on the channel it sent; manuals `lvsha drain`'s.
	reloads chan chan *ReloadReport
	manuals chan manualCall
	// state keeps manual and the real servers' health across restarts;
	// nil keeps nothing.
	state *stateStore
	// notify tells systemd of readiness, reloads and the loop's health;
	// nil outside systemd.
	notify *notifier
	// events are the recent state changes, recorded from the log
	// (events.go); nil keeps none.
	events *eventLog

	mu sync.Mutex
	// manual are the real servers drained or in maintenance by hand;
	// replaced whole on each change, never modified.
	manual    map[health.Key]manualEntry
	cfg       *conf.Config
	loadedAt  time.Time
	reloadErr error
	syncedAt  time.Time
	syncErr   error
	desired   []ipvs.Service
	// reloadedAt is when a reload last succeeded, or the daemon started;
	// syncErrors counts failed syncs. For metrics.
	reloadedAt time.Time
	syncErrors uint64
	// metrics serves [metrics] listen; nil serves none. Set before the
	// loop runs; reloads move it.
	metrics *metricsServer
	// cluster is this director's member of the cluster; nil without
	// [cluster] (cluster.go).
	cluster *clusterLink
	// control admits root alone to the control socket; nil (tests)
	// counts nothing.
	control *peerGuard
	// sched is the threads' scheduling (director.rt_priority, nice).
	sched schedState
	// memProfile, if set, is where a heap profile is written each time
	// the start-up pages are released (--memprofile).
	memProfile string
}

func newDaemon(log *slog.Logger, path string, cfg *conf.Config, t table, p prober) *daemon {
	runner := hook.New(log, hookTimeout)
	return &daemon{
		log: log, path: path, table: t, probes: p, cfg: cfg,
		loadedAt: time.Now(), reloadedAt: time.Now(), load: conf.Load, reloads: make(chan chan *ReloadReport), manuals: make(chan manualCall),
		hooks: newRSHooks(log, runner.Queue), hookRunner: runner,
	}
}

func (d *daemon) config() *conf.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// syncRead and syncKnown say whether a sync reads the kernel's table
// first (the start and the periodic resync: hand edits are repaired)
// or diffs against the table as last read and written (a reload, a
// health change, a drain by hand: the writes it makes and no dump).
const (
	syncRead  = true
	syncKnown = false
)

// sync computes the desired table from the current config and health and
// applies the difference to the kernel; it returns what it wrote and what
// the kernel refused.
func (d *daemon) sync(read bool) (ipvs.Changes, error) {
	// The health read below is newer than any update already signalled:
	// consumed here, it would only make the loop sync again for nothing
	// (each reload's engine update signals one).
	select {
	case <-d.probes.Updates():
	default:
	}
	cfg, weight := d.adjusted(d.config(), d.probes.Weight)
	// With a cluster, health_consensus may overrule this director's own
	// checks; without one this is d.probes.Up.
	up := d.cluster.up(cfg, d.probes.Up)
	desired := d.sorry.DesiredWeighted(cfg, up, weight)
	apply := d.table.Update
	if read {
		apply = d.table.Apply
	}
	changes, err := apply(desired)
	d.mu.Lock()
	prev := d.syncErr
	d.mu.Unlock()
	switch {
	case err != nil && (prev == nil || prev.Error() != err.Error()):
		// The kernel refused part of the table: keep running, keep the rest
		// programmed, and retry at the next resync. Logged when the error
		// changes: a state change, not every retry.
		d.log.Error("kernel table sync failed", "op", "sync", "error", err)
	case err != nil:
		d.log.Debug("kernel table sync still failing", "op", "sync", "error", err)
	case prev != nil:
		d.log.Info("kernel table sync recovered", "op", "sync", "was", prev.Error())
	}
	if changes.Total() > 0 {
		d.log.Info("kernel table changed", "op", "sync",
			"services_created", changes.ServicesCreated, "services_updated", changes.ServicesUpdated,
			"services_deleted", changes.ServicesDeleted, "destinations_created", changes.DestinationsCreated,
			"destinations_updated", changes.DestinationsUpdated, "destinations_deleted", changes.DestinationsDeleted)
	}
	d.mu.Lock()
	d.desired, d.syncedAt, d.syncErr = desired, time.Now(), err
	if err != nil {
		d.syncErrors++
	}
	d.mu.Unlock()
	d.hooks.observe(cfg, up, weight)
	d.saveState(d.config())
	if d.vrrp != nil {
		// Bounded: after shutdown no instance reads its events any more.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		d.vrrp.TrackVirtualServers(ctx, cfg, up)
		cancel()
	}
	return changes, err
}

// reload swaps in a new config if it is valid and reports what it did;
// otherwise the daemon keeps running the last good one, reports the
// config as stale, and the report lists every error.
func (d *daemon) reload() (rep *ReloadReport) {
	d.notify.reloading()
	defer func() { d.notify.reloaded(rep, d.config()) }()
	rep = newReloadReport(d.path)
	old := d.config()
	var (
		cfg     *conf.Config
		err     error
		changed bool
	)
	if conf.Unchanged(d.path, old) {
		cfg = old
	} else {
		cfg, err = d.load(d.path)
	}
	if err == nil {
		if changed = !cfg.Equal(old); changed {
			rep.Probes = health.PlanProbes(old, cfg)
			rep.VRRP = d.vrrp.Plan(cfg)
			// The new metrics address is bound before anything changes,
			// so a reload that cannot bind it is refused whole.
			// So is a scheduling the daemon may no longer set.
			var move *metricsMove
			if eff, cerr := effectiveCaps(); cerr == nil {
				err = d.sched.check(cfg.Director, eff)
			}
			if err == nil {
				if move, err = d.metrics.prepare(cfg.Metrics.Listen); err == nil {
					if err = d.reloadVRRP(cfg); err != nil {
						move.abort()
					} else {
						move.commit()
					}
				}
			}
		}
	}
	d.mu.Lock()
	d.reloadErr = err
	if err == nil {
		d.reloadedAt = time.Now()
	}
	if err == nil && changed {
		d.cfg, d.loadedAt = cfg, time.Now()
	}
	d.mu.Unlock()
	switch {
	case err != nil:
		d.log.Error("reload failed, keeping the previous configuration", "op", "reload", "file", d.path, "error", err)
		rep.refused(err)
		return rep
	case !changed:
		d.log.Info("reload: configuration unchanged", "op", "reload", "file", d.path)
		rep.Unchanged = true
		return rep
	}
	d.log.Info("configuration reloaded", "op", "reload", "file", d.path, "virtual_servers", len(cfg.VirtualServers),
		"probes_changed", len(rep.Probes), "vrrp_instances_changed", len(rep.VRRP))
	setMaxProcs(d.log, cfg.Director.MaxProcs)
	if err := d.sched.apply(d.log, cfg.Director); err != nil {
		d.log.Error("reload: scheduling not changed", "op", "reload", "error", err)
	}
	d.probes.Update(cfg)
	if d.connSync != nil {
		d.connSync.reconfigured()
	}
	if d.cluster == nil && cfg.Cluster != nil {
		d.log.Warn("reload: [cluster] added; the director joins the cluster when lvsha restarts", "op", "reload")
	}
	d.cluster.reload(cfg)
	changes, err := d.sync(syncKnown)
	rep.Applied, rep.Kernel = true, changes.Done
	if err != nil {
		rep.Errors = errorLines(err)
	}
	return rep
}

// plan says what a reload to the configuration at path would do now,
// without doing any of it: the same report reload gives, Applied false.
func (d *daemon) plan(path string) *ReloadReport {
	rep := newReloadReport(path)
	cfg, err := d.load(path)
	if err != nil {
		rep.refused(err)
		return rep
	}
	old := d.config()
	if cfg.Equal(old) {
		rep.Unchanged = true
		return rep
	}
	rep.Probes = health.PlanProbes(old, cfg)
	rep.VRRP = d.vrrp.Plan(cfg)
	if err := d.metrics.check(cfg.Metrics.Listen); err != nil {
		rep.refused(err)
		return rep
	}
	up, weight := d.probes.Preview(cfg)
	acfg, aweight := d.adjusted(cfg, weight)
	kernel, err := d.table.Plan(ipvs.DesiredWeighted(acfg, up, aweight, d.sorry.SorryActive))
	rep.Kernel = kernel
	if err != nil {
		rep.Errors = errorLines(err)
	}
	return rep
}

// reloadVRRP moves the VRRP instances to cfg (group.Reload); without
// a running group (a daemon started without instances, in tests) it
// accepts only a config without them.
func (d *daemon) reloadVRRP(cfg *conf.Config) error {
	if d.vrrp != nil {
		if err := d.vrrp.Reload(cfg); err != nil {
			return fmt.Errorf("%s: %w", d.path, err)
		}
		return nil
	}
	if len(cfg.VRRPInstances) > 0 {
		return fmt.Errorf("%s: vrrp_instance added to a daemon running without VRRP: restart it", d.path)
	}
	return nil
}

// loop runs the daemon until ctx is done. hup delivers reload requests.
func (d *daemon) loop(ctx context.Context, hup <-chan os.Signal) error {
	cfg := d.config()
	d.probes.Update(cfg)
	pctx, cancel := context.WithCancel(ctx)
	probesDone := make(chan error, 1)
	go func() { probesDone <- d.probes.Run(pctx) }()
	hooksDone := make(chan struct{})
	go func() { defer close(hooksDone); d.hookRunner.Run(pctx) }()
	// However the loop ends, the hook runner has stopped when it returns.
	defer func() {
		cancel()
		<-hooksDone
	}()

	d.sync(syncRead)
	d.notify.ready(cfg)
	// The watchdog is pinged from this loop, so a loop stuck anywhere
	// stops the pings and systemd restarts the daemon.
	watchdog, stopWatchdog := d.notify.watchdogTicks()
	defer stopWatchdog()
	resync := time.NewTicker(cfg.Director.Resync)
	defer resync.Stop()
	release := time.NewTimer(releaseAfter)
	defer release.Stop()
	for {
		select {
		case <-release.C:
			d.releasePages()
			if d.memProfile != "" {
				writeMemProfile(d.log, d.memProfile)
			}
		case <-watchdog:
			d.notify.watchdog()
		case <-ctx.Done():
			cancel()
			<-probesDone
			return nil
		case err := <-probesDone:
			if ctx.Err() != nil {
				// Stopped because the daemon is stopping: the engine ends
				// with ctx, and select may see that before ctx.Done.
				return nil
			}
			if err == nil {
				err = errors.New("it returned while the daemon runs")
			}
			return fmt.Errorf("health engine stopped: %w", err)
		case <-hup:
			d.reload()
			resync.Reset(d.config().Director.Resync)
			release.Reset(releaseAfter)
		case reply := <-d.reloads:
			reply <- d.reload()
			resync.Reset(d.config().Director.Resync)
			release.Reset(releaseAfter)
		case call := <-d.manuals:
			row, err := d.setManual(call.req)
			call.reply <- manualAnswer{row: row, err: err}
		case <-d.probes.Updates():
			d.sync(syncKnown)
		case <-d.cluster.changed():
			// Another director's state: drift may have changed, and so
			// may a consensus this director applies.
			d.cluster.observeDrift()
			if consensusNeeded(d.config()) {
				d.sync(syncKnown)
			}
		case <-resync.C:
			if r, ok := d.probes.(refresher); ok {
				r.Refresh()
			}
			d.sync(syncRead)
		}
	}
}

// run runs the daemon loop with VRRP and the control socket (serve)
// beside it, until ctx is done or the loop fails; then the VRRP
// instances hand over (priority 0, VIPs kept until the new master is
// heard) while the kernel table stays programmed, and the control socket
// closes last, so status answers during the handover.
func (d *daemon) run(ctx context.Context, hup <-chan os.Signal, serve func(ctx context.Context)) error {
	// VRRP has a context of its own: a loop that fails while ctx still
	// runs must stop it too, or the daemon would wait for it in vain.
	vctx, stopVRRP := context.WithCancel(ctx)
	defer stopVRRP()
	vrrpDone := make(chan struct{})
	go func() {
		defer close(vrrpDone)
		if d.vrrp != nil {
			d.vrrp.Run(vctx)
		}
	}()
	// BFD stops with VRRP's handover: its sessions go AdminDown (RFC 5880
	// 6.8.16), which a peer's backup takes for no failure of ours, so the
	// handover is VRRP's priority-0 advert's, not a BFD takeover.
	bfdDone := make(chan struct{})
	go func() {
		defer close(bfdDone)
		if d.bfd != nil {
			d.bfd.Run(vctx)
		}
	}()
	defer func() { stopVRRP(); <-bfdDone }()
	// The sync daemons follow VRRP through its handover at exit, so
	// their goroutine stops after VRRP has, not at the signal.
	sctx, stopSync := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSync()
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		if d.connSync != nil {
			d.connSync.run(sctx)
		}
	}()
	// The cluster member leaves last but the control socket: the others
	// see this director's VRRP handover through it.
	clctx, stopCluster := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCluster()
	clusterDone := make(chan struct{})
	go func() { defer close(clusterDone); d.cluster.run(clctx, d.vrrp) }()
	cctx, stopControl := context.WithCancel(ctx)
	controlDone := make(chan struct{})
	go func() { defer close(controlDone); serve(cctx) }()

	err := d.loop(ctx, hup)
	if err != nil {
		d.log.Error("daemon loop stopped, stopping VRRP", "op", "stop", "error", err)
	}
	d.notify.stopping()
	stopVRRP()
	bound := time.NewTimer(vrrpStopBound(d.config()))
	defer bound.Stop()
	select {
	case <-vrrpDone:
	case <-bound.C:
		// Each instance bounds its own handover below this; past it
		// something is stuck, and the process exits without it.
		d.log.Error("VRRP handover did not finish in time", "op", "stop")
	}
	stopSync()
	// Stopping a kernel sync thread waits for it; bounded all the same.
	sbound := time.NewTimer(syncStopBound)
	defer sbound.Stop()
	select {
	case <-syncDone:
	case <-sbound.C:
		d.log.Error("IPVS sync daemons not left in time at exit", "op", "stop")
	}
	stopCluster()
	<-clusterDone // bounded: a join in flight gives up after 2 s a seed, the leave after 1 s
	stopControl()
	<-controlDone
	return err
}

// releaseAfter is how long after start or a reload the daemon lets go of
// the executable's pages that only start-up touched (releaseStartupPages):
// by then VRRP instances have left INIT and the first probes have run.
const releaseAfter = 10 * time.Second

func (d *daemon) releasePages() {
	before, after, err := releaseStartupPages()
	if err != nil {
		d.log.Warn("could not release the executable's start-up pages", "error", err)
		return
	}
	d.log.Debug("released the executable's start-up pages", "rss_file_kib_before", before, "rss_file_kib_after", after)
}

// cleanup removes the services this configuration describes from the
// kernel; only for `lvsha run --cleanup`.
func (d *daemon) cleanup() error {
	d.mu.Lock()
	desired := d.desired
	d.mu.Unlock()
	return d.table.Remove(desired)
}

// Status joins config, health and the kernel's table into a Report.
func (d *daemon) Status() (*Report, error) {
	d.mu.Lock()
	cfg, desired := d.cfg, d.desired
	rep := &Report{
		Director:    cfg.Director.Name,
		ConfigFile:  d.path,
		LoadedAt:    d.loadedAt,
		ConfigStale: d.reloadErr != nil,
		ReloadedAt:  d.reloadedAt,
		SyncedAt:    d.syncedAt,
		SyncErrors:  d.syncErrors,
	}
	if d.reloadErr != nil {
		rep.ReloadError = d.reloadErr.Error()
	}
	if d.syncErr != nil {
		rep.SyncError = d.syncErr.Error()
	}
	d.mu.Unlock()

	kernel, err := d.table.Read()
	if err != nil {
		return nil, fmt.Errorf("read kernel table: %w", err)
	}
	buildReport(rep, cfg, desired, kernel, d.probes.Snapshot())
	d.mu.Lock()
	manual := d.manual
	d.mu.Unlock()
	for i := range rep.Services {
		s := &rep.Services[i]
		for j := range s.RealServers {
			rr := &s.RealServers[j]
			if a, err := netip.ParseAddrPort(rr.Address); err == nil && !rr.Sorry {
				if m, ok := manual[health.Key{VirtualServer: s.Name, RealServer: a}]; ok {
					rr.Manual, rr.ManualSince = m.Mode, m.Since
				}
			}
		}
	}
	// The links first: a lazy link holds its backups' adverts until read
	// (transport.Hub.Stats reads them), and the instances' state and
	// counts are then as of now.
	if d.vrrpLinks != nil {
		rep.VRRPLinks = d.vrrpLinks()
	}
	rep.VRRP = d.vrrp.Status()
	rep.BFD, rep.BFDLinks = d.bfd.Sessions(), d.bfd.Links()
	rep.TrackExecs = execStatus(d.vrrp)
	rep.ConnSync = d.connSync.report()
	rep.Cluster = d.cluster.report(cfg, d.probes.Up)
	rep.ControlRefused = d.control.Refused()
	for _, s := range kernel {
		for _, dst := range s.Destinations {
			rep.KernelConns += dst.ActiveConns + dst.InactConns
		}
	}
	rep.Schema = reportSchema
	emptyLists(reflect.ValueOf(rep))
	return rep, nil
}

// cmdRun implements `lvsha run`.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "lvsha run [-c] FILE [--cleanup] [--log-level LEVEL] [--log-format text|json] [--netns PATH] [--cpuprofile FILE] [--memprofile FILE]",
		"Run the director: probe real servers and keep the kernel's IPVS table as the config describes.\n"+
			"SIGHUP reloads the config (a bad config is refused; the last good one keeps running).\n"+
			"SIGTERM stops and leaves the kernel table in place, so no connection is dropped.", stderr)
	path := fs.String("c", "/etc/lvsha/lvsha.toml", "configuration `file`")
	cleanup := fs.Bool("cleanup", false, "on exit, remove the virtual services the config describes from the kernel")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	format := fs.String("log-format", "text", "log `format`: text (logfmt) or json, one object a line")
	netns := fs.String("netns", "", "program IPVS in the network namespace at `path` (e.g. /var/run/netns/lb) instead of the current one")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (go tool pprof) of the whole run to `file`, for finding where a start or reload spends its time")
	memProfile := fs.String("memprofile", "", "10 s after the start and after each reload, write a heap profile (go tool pprof) to `file` and log the runtime's memory figures, for finding what each virtual server or instance costs")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2}
	}
	if err := fileArg(fs, "c", path); err != nil {
		return &exitError{code: 2, err: err}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)}
	}
	var handler slog.Handler
	switch opts := (&slog.HandlerOptions{Level: lvl}); *format {
	case "text":
		handler = slog.NewTextHandler(stderr, opts)
	case "json":
		handler = slog.NewJSONHandler(stderr, opts)
	default:
		return &exitError{code: 2, err: fmt.Errorf("--log-format %q: want text or json", *format)}
	}
	// Every logger of the daemon goes through the events' recorder.
	events := newEventLog(eventsKept)
	log := slog.New(events.handler(handler))
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		defer stop(log)
	}
	if *memProfile != "" {
		// Every allocation, not one in 512 KiB: an instance's are small.
		runtime.MemProfileRate = 1
	}

	cfg, err := conf.Load(*path)
	if err != nil {
		return &exitError{code: 1, err: configError(*path, err)}
	}
	setMaxProcs(log, cfg.Director.MaxProcs)
	// Before anything that needs them, so a daemon short of privileges
	// says which ones rather than failing on the first socket.
	eff, err := effectiveCaps()
	if err == nil {
		err = checkCaps(eff, cfg, *netns != "")
	}
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	sched, err := startSched(log, cfg.Director)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	// Opening IPVS only reads; the most useful error for an operator (no
	// IPVS, not root) comes from here, so it goes first. A config of VRRP
	// instances only needs no IPVS, as keepalived's VRRP needs none.
	var tbl table
	handle, err := ipvs.Open(*netns)
	openErr := err // why there is no handle, for the sync daemons
	switch {
	case err == nil:
		defer handle.Close()
		tbl = ipvs.NewReconciler(handle, log)
	case errors.Is(err, ipvs.ErrUnavailable) && len(cfg.VirtualServers) == 0:
		log.Warn("IPVS is not available: running VRRP only; a reload that adds virtual servers will fail to sync", "op", "start", "error", err)
		tbl = noIPVS{err: err}
	default:
		return &exitError{code: 1, err: err}
	}
	// Listen before writing to the kernel, so a second daemon started by
	// mistake stops here instead of fighting the first over the table.
	dir := cfg.Director
	guard := newPeerGuard(log, dir.ControlSocketGroup, dir.ControlSocketGID)
	listen := func(path string) (net.Listener, error) {
		ln, err := listenControl(path)
		if err != nil {
			return nil, err
		}
		if dir.ControlSocketGroup != "" {
			if err := shareControl(path, dir.ControlSocketGID); err != nil {
				ln.Close()
				return nil, err
			}
		}
		return guard.listener(ln), nil
	}
	ln, err := listen(cfg.Director.ControlSocket)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	engine := health.NewEngine(log)
	// The scheduler sleeps between probes on a timerfd of its own, not on
	// VRRP's clock: a hundred probes a second must not delay a master's
	// inline ticks there.
	var probeClock alarm.Clock
	if a, err := probeClock.NewAlarm(); err != nil {
		log.Warn("health checks fall back to Go timers", "op", "start", "error", err)
	} else {
		defer a.Close()
		engine.WakeOn(a)
	}
	var probes prober = engine
	if *netns == "" {
		// IPVS in this namespace balances the probes this process sends
		// to its own virtual services; with --netns it is elsewhere.
		probes = newSelfProber(log, probes, localAddrs)
	}
	d := newDaemon(log, *path, cfg, tbl, probes)
	d.sched, d.memProfile = sched, *memProfile
	d.notify = newNotifier(log)
	d.control = guard
	d.events = events
	// What the previous daemon left: real servers taken out by hand, and
	// those it saw down (in the file, or at weight 0 in the kernel),
	// which start down instead of getting traffic until fall probes fail.
	var st savedState
	d.state, st = openState(log, cfg.Director.StateFile)
	defer d.state.close()
	kernel, err := tbl.Read()
	if err != nil {
		log.Error("cannot read the kernel table at start: real servers start as their checks say", "op", "start", "error", err)
	}
	down := d.restoreState(st, kernel)
	engine.StartDown(down)
	if len(down) > 0 || len(st.Manual) > 0 {
		log.Info("state restored", "op", "start", "state_file", cfg.Director.StateFile, "starting_down", len(down), "by_hand", len(d.manual))
	}
	// The group runs even without instances, so that a reload can add
	// some.
	if d.vrrp, d.vrrpLinks, d.bfd, err = openVRRP(log, cfg); err != nil {
		ln.Close()
		return &exitError{code: 1, err: err}
	}
	version, _, _ := buildVersion()
	if d.cluster, err = openCluster(log, cfg, version); err != nil {
		ln.Close()
		return &exitError{code: 1, err: err}
	}
	if handle != nil {
		d.connSync = newConnSync(log, handle, nil, d.config, d.vrrp)
	} else {
		d.connSync = newConnSync(log, nil, openErr, d.config, d.vrrp)
	}
	d.connSync.cleanup.Store(*cleanup)
	stopMetrics, err := d.serveMetrics(cfg.Metrics.Listen, engine)
	if err != nil {
		ln.Close()
		return &exitError{code: 1, err: err}
	}
	defer stopMetrics()
	// Start-up is done: what needed more than keptCaps is open. The rest
	// of the run, reloads included, needs only these.
	keep := keptCaps(cfg, *netns != "")
	if eff, err := dropCaps(capMask(keep)); err != nil {
		log.Warn("capabilities not dropped", "op", "start", "error", err)
	} else {
		log.Info("capabilities dropped", "op", "start", "kept", strings.Join(capNames(eff, keep), ","), "effective", fmt.Sprintf("%#x", eff))
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	log.Info("lvsha started", "op", "start", "director", cfg.Director.Name, "file", *path, "virtual_servers", len(cfg.VirtualServers), "vrrp_instances", len(cfg.VRRPInstances), "control_socket", cfg.Director.ControlSocket)
	err = d.run(ctx, hup, func(ctx context.Context) {
		superviseControl(ctx, log, ln, cfg.Director.ControlSocket, d, listen, backoff{min: minControlRetry, max: maxControlRetry})
	})
	if *cleanup {
		if rerr := d.cleanup(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", rerr))
		} else {
			log.Info("removed lvsha's virtual services from the kernel", "op", "cleanup")
		}
	} else {
		log.Info("stopping; kernel table left in place", "op", "stop")
	}
	return err
}

// startCPUProfile profiles the process into path until stop; stop logs
// a profile it could not finish instead of failing the daemon's exit.
func startCPUProfile(path string) (stop func(*slog.Logger), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile %s: %w", path, err)
	}
	return func(log *slog.Logger) {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Error("CPU profile not written", "op", "stop", "file", path, "error", err)
		}
	}, nil
}

// writeMemProfile writes the heap profile of what is in use now (after a
// collection) to path and logs the runtime's memory figures the profile
// lacks: goroutine stacks, the runtime's own structures. A profile it
// could not write is logged, not fatal.
func writeMemProfile(log *slog.Logger, path string) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// buckhash is the profile's own (every allocation is recorded).
	log.Info("memory", "op", "memprofile", "file", path, "heap_inuse", ms.HeapInuse, "heap_objects", ms.HeapObjects, "stack_inuse", ms.StackInuse,
		"goroutines", runtime.NumGoroutine(), "mspan", ms.MSpanInuse, "gc_sys", ms.GCSys, "other_sys", ms.OtherSys, "buckhash", ms.BuckHashSys, "sys", ms.Sys)
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		log.Error("heap profile not written", "op", "memprofile", "file", path, "error", err)
	}
}

// configError formats config errors one per line so every problem is seen
// at once.
func configError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("configuration file %s does not exist", path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("cannot read configuration file %s: permission denied", path)
	}
	return fmt.Errorf("invalid configuration:\n%w", err)
}

// setMaxProcs applies director.max_procs (0: the runtime's default)
// unless the environment's GOMAXPROCS says otherwise.
func setMaxProcs(log *slog.Logger, n int) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	was := runtime.GOMAXPROCS(0)
	if n == 0 {
		runtime.SetDefaultGOMAXPROCS()
	} else {
		runtime.GOMAXPROCS(n)
	}
	if now := runtime.GOMAXPROCS(0); now != was {
		log.Debug("max_procs applied", "gomaxprocs", now, "was", was)
	}
}
