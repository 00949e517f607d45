// Package group supervises a director's VRRP instances beside its IPVS
// table: it runs each instance, feeds it what it tracks (links,
// track_execs, virtual servers) as one fault (which the instance ORs with
// its VIP holder's) and one effective priority, keeps each sync group in
// one state, and moves the running instances to
// a reloaded configuration instance by instance. It opens instances and
// watches links through functions it is given, so that its tests run it
// on fakes; it never touches IPVS or the health engine (the caller passes
// real-server health in).
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/track"
)

// Instance is what the group needs of one VRRP instance
// (*instance.Instance).
type Instance interface {
	Name() string
	// Source is the address adverts go out from, picked when the
	// instance opened, and its interface's index (0: not known).
	Source() (netip.Addr, int)
	// Run runs the instance until ctx is done and it has handed over.
	Run(ctx context.Context) error
	// Send queues an event for the state machine. It waits while the
	// instance's queue is full, until ctx is done or Run has returned
	// (instance.Instance.Send), so a caller holding a lock delays
	// whatever else needs it for that long.
	Send(ctx context.Context, ev vrrp.Event)
	// Reconfigure changes the running instance in place; it waits for
	// the instance to take the change.
	Reconfigure(ctx context.Context, cfg conf.VRRPInstance) error
	Status() instance.Status
	// Wants is the state the instance would take on its own; the
	// function given to OnWantsChange is called when it changes.
	Wants() vrrp.State
	OnWantsChange(f func())
	// OnTransition registers f, called after every state change once
	// Status shows it.
	OnTransition(f func())
	// Close releases an instance that never ran.
	Close() error
}

// OpenFunc opens the instance cfg describes, its VIPs on a private
// device named tunName (instance.Open).
type OpenFunc func(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (Instance, error)

// WatchFunc reports the state of the named links until ctx is done, then
// closes the channel (track.Links).
type WatchFunc func(ctx context.Context, names []string) <-chan track.LinkReport

// Options are what a Group is built from.
type Options struct {
	Log        *slog.Logger
	Open       OpenFunc
	WatchLinks WatchFunc
	// WatchAddrs reports whether addresses named by track.AddrName are
	// usable (track.Addrs); nil watches none.
	WatchAddrs WatchFunc
	// FindInterface checks that an interface exists before a reload
	// starts an instance on it; nil is net.InterfaceByName.
	FindInterface func(name string) error
	// ReconfigureTimeout bounds one instance's change in place at a
	// reload; zero is 5s.
	ReconfigureTimeout time.Duration
}

// Group runs the configured VRRP instances beside the director. Every
// director keeps its IPVS table programmed whatever its VRRP state; only
// the VIPs move, so a new master forwards at once. A reload changes it
// instance by instance (Reload): what is unchanged keeps running.
type Group struct {
	log           *slog.Logger
	open          OpenFunc
	links         *linkShares
	addrs         *linkShares // nil: sources not watched
	findInterface func(name string) error
	reconfTimeout time.Duration
	// execs runs the track_execs the instances track; nil without any.
	// Trackings read it at any time, so it is swapped atomically.
	execs atomic.Pointer[track.Execs]

	// reloadMu serializes reloads. A reload holds it while it waits for
	// instances to take their changes, and mu only to read and swap the
	// members, so that Status never waits on a reload.
	reloadMu sync.Mutex

	mu sync.Mutex
	// ctx is Run's; nil before Run. Everything started is counted in wg.
	ctx context.Context
	wg  sync.WaitGroup
	// members are the instances in configuration order.
	members    []*member
	groups     []conf.SyncGroup
	trackExecs []conf.TrackExec
	// coord is the goroutine gating the sync groups' members now.
	coord     *coordinator
	stopExecs context.CancelFunc

	// transitions has a value after any instance changed state
	// (Transitions).
	transitions chan struct{}
}

// coordinator is one generation of the sync-group goroutine: a reload
// that changes the groups or their members stops it and starts the next.
type coordinator struct {
	stop context.CancelFunc
	done chan struct{}
}

// member is one configured instance and what runs for it.
type member struct {
	cfg conf.VRRPInstance
	// inst is nil while a replaced instance waits for its predecessor to
	// hand over and close.
	inst  Instance
	track *tracking
	// stop ends the instance (a master hands over first); done closes
	// when it has, or when a replacement is abandoned before it started.
	stop      context.CancelFunc
	done      chan struct{}
	stopLinks context.CancelFunc
	// fault, while inst is nil, says why: its interface has no address
	// to send adverts from yet (instance.ErrNoSource). The member is in
	// FAULT until an open succeeds.
	fault string
}

func newMember(cfg conf.VRRPInstance, inst Instance, t *tracking) *member {
	return &member{cfg: cfg, inst: inst, track: t, done: make(chan struct{})}
}

// TunName names the VIP device, one per director: every instance with
// vip_holder "tun" keeps its VIPs there (vrrp/vip.Host), rather than on a
// device of its own, which cost a device and its sockets per instance
// (issue #21).
const TunName = "lvsha-vip"

// Open opens every instance of cfg; when one fails, the ones already
// opened are closed (their sockets and VIP devices released) and the
// error returned.
func Open(opts Options, cfg *conf.Config) (*Group, error) {
	g := &Group{log: opts.Log, open: opts.Open, findInterface: opts.FindInterface,
		reconfTimeout: opts.ReconfigureTimeout, groups: cfg.SyncGroups, trackExecs: cfg.TrackExecs, transitions: make(chan struct{}, 1)}
	g.links = newLinkShares(opts.WatchLinks, &g.wg)
	if opts.WatchAddrs != nil {
		g.addrs = newLinkShares(opts.WatchAddrs, &g.wg)
	}
	if g.findInterface == nil {
		g.findInterface = func(name string) error { _, err := net.InterfaceByName(name); return err }
	}
	if g.reconfTimeout == 0 {
		g.reconfTimeout = 5 * time.Second
	}
	if e := track.NewExecs(g.log, cfg.TrackExecs, cfg.VRRPInstances); e.Len() > 0 {
		g.execs.Store(e)
	}
	for _, ic := range cfg.VRRPInstances {
		inst, err := g.open(g.log, ic, TunName)
		if errors.Is(err, instance.ErrNoSource) {
			// Not a reason to stop the director: the instance waits in
			// FAULT (Run opens it once the address appears).
			mb := newMember(ic, nil, newTracking(g.log, ic, nil, g.execOK))
			g.noSource(mb, err)
			g.members = append(g.members, mb)
			continue
		}
		if err != nil {
			errs := []error{err}
			for _, mb := range g.members {
				if mb.inst == nil {
					continue
				}
				if cerr := mb.inst.Close(); cerr != nil {
					errs = append(errs, fmt.Errorf("close vrrp_instance %s: %w", mb.cfg.Name, cerr))
				}
			}
			return nil, errors.Join(errs...)
		}
		g.members = append(g.members, newMember(ic, inst, newTracking(g.log, ic, inst, g.execOK)))
	}
	return g, nil
}

// MsgNoSource is the log line of an instance that waits in FAULT for its
// interface's address (cmd/lvsha's events record it).
const MsgNoSource = "VRRP instance in fault: its interface has no address to send adverts from; it starts once one appears"

// noSource puts mb, whose open failed with err (instance.ErrNoSource), in
// FAULT until it opens; it says so once, not at every retry. g.mu is held
// or mb is not shared yet.
func (g *Group) noSource(mb *member, err error) {
	if mb.fault == "" {
		g.log.Warn(MsgNoSource, "vrrp_instance", mb.cfg.Name, "interface", mb.cfg.Interface, "error", err)
	}
	mb.fault = err.Error()
}

// execOK is the current track_exec verdict on name.
func (g *Group) execOK(name string) bool {
	if e := g.execs.Load(); e != nil {
		return e.OK(name)
	}
	return true
}

// Run runs the instances until ctx is done and every one has handed over.
func (g *Group) Run(ctx context.Context) {
	g.mu.Lock()
	g.ctx = ctx
	g.startExecs()
	g.startGroups()
	for _, mb := range g.members {
		if mb.inst == nil {
			g.start(mb, nil) // waiting for an address (Open)
			continue
		}
		g.startMember(mb)
	}
	g.mu.Unlock()
	<-ctx.Done()
	g.wg.Wait()
}

// startExecs runs the current track_exec runner and tells every instance
// its verdicts. g.mu is held.
func (g *Group) startExecs() {
	e := g.execs.Load()
	if e == nil {
		return
	}
	ctx, cancel := context.WithCancel(g.ctx)
	g.stopExecs = cancel
	g.wg.Add(2)
	go func() { defer g.wg.Done(); e.Run(ctx) }()
	go func() {
		defer g.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-e.Updates():
				g.mu.Lock()
				ms := slices.Clone(g.members)
				g.mu.Unlock()
				for _, mb := range ms {
					mb.track.execsChanged(ctx)
				}
			}
		}
	}()
}

// gated is a running instance as its sync group sees it.
type gated struct {
	ctx   context.Context
	log   *slog.Logger
	group string
	inst  Instance
}

func (x gated) Wants() vrrp.State { return x.inst.Wants() }

func (x gated) Gate(allow bool) {
	x.log.Info("sync group verdict", "vrrp_sync_group", x.group, "vrrp_instance", x.inst.Name(), "allow_master", allow)
	x.inst.Send(x.ctx, vrrp.GroupGate{AllowMaster: allow})
}

// faulted is a sync group's member that waits, in FAULT, for an address
// to send adverts from: as any member in fault, it keeps the rest of its
// group from master.
type faulted struct{}

func (faulted) Wants() vrrp.State { return vrrp.Fault }
func (faulted) Gate(bool)         {}

// startGroups starts the goroutine gating the sync groups over the
// members running now (vrrp.SyncGroup); instances in no group are let
// free. The previous one has ended first, so no stale gate of it can
// arrive after the new one's. g.mu is held.
func (g *Group) startGroups() {
	if g.coord != nil {
		g.coord.stop()
		<-g.coord.done
	}
	ctx, cancel := context.WithCancel(g.ctx)
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	grouped := map[string]bool{}
	var groups []*vrrp.SyncGroup
	for _, sg := range g.groups {
		var members []vrrp.GroupMember
		for _, name := range sg.Instances {
			grouped[name] = true
			for _, mb := range g.members {
				switch {
				case mb.cfg.Name != name:
				case mb.inst != nil:
					members = append(members, gated{ctx: ctx, log: g.log, group: sg.Name, inst: mb.inst})
					mb.inst.OnWantsChange(notify)
				case mb.fault != "":
					members = append(members, faulted{})
				}
			}
		}
		groups = append(groups, vrrp.NewSyncGroup(members))
	}
	var free []Instance
	for _, mb := range g.members {
		if mb.inst != nil && !grouped[mb.cfg.Name] {
			mb.inst.OnWantsChange(nil)
			free = append(free, mb.inst)
		}
	}
	c := &coordinator{stop: cancel, done: make(chan struct{})}
	g.coord = c
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(c.done)
		// Left a group by a reload: nothing holds it back any more.
		for _, inst := range free {
			inst.Send(ctx, vrrp.GroupGate{AllowMaster: true})
		}
		for {
			for _, sg := range groups {
				sg.Settle()
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}()
}

// Transitions has a value after any instance changed state, read it who
// may: one value stands for every transition since the last was taken,
// and Status already shows them. One consumer at a time.
// Nil for a nil Group, which never transitions.
func (g *Group) Transitions() <-chan struct{} {
	if g == nil {
		return nil
	}
	return g.transitions
}

// HoldPreempt holds the named instance's preemption until until
// (vrrp.HoldPreempt): as a backup it follows a lower-priority master
// until then, but still takes over from one that dies. It returns once
// the instance has the event queued, or with an error if no instance of
// that name runs or ctx ends first. A reload that rebuilds the instance
// loses the hold; the caller sends it again.
func (g *Group) HoldPreempt(ctx context.Context, name string, until time.Time) error {
	return g.send(ctx, name, vrrp.HoldPreempt{Until: until}, "hold preemption of")
}

// Yield has the named instance give master up to the master at to,
// which the cluster saw holding it too (vrrp.Yield: split_brain =
// "resolve"), and wait as backup until it hears adverts again; an
// invalid to lifts the wait. It returns once the instance has the event
// queued, or with an error if no instance of that name runs or ctx ends
// first. A reload that rebuilds the instance ends the wait.
func (g *Group) Yield(ctx context.Context, name string, to netip.Addr) error {
	return g.send(ctx, name, vrrp.Yield{To: to}, "yield master of")
}

// send queues ev for the named instance; what names the request in
// errors.
func (g *Group) send(ctx context.Context, name string, ev vrrp.Event, what string) error {
	if g == nil {
		return fmt.Errorf("%s vrrp_instance %s: not running", what, name)
	}
	var inst Instance
	g.mu.Lock()
	for _, mb := range g.members {
		if mb.cfg.Name == name {
			inst = mb.inst
		}
	}
	g.mu.Unlock()
	if inst == nil {
		return fmt.Errorf("%s vrrp_instance %s: not running", what, name)
	}
	inst.Send(ctx, ev)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s vrrp_instance %s: %w", what, name, err)
	}
	return nil
}

// transitioned is every instance's OnTransition: it never blocks the
// instance.
func (g *Group) transitioned() {
	select {
	case g.transitions <- struct{}{}:
	default:
	}
}

// startMember runs mb's instance and watches its tracked links. g.mu is
// held.
func (g *Group) startMember(mb *member) {
	ctx, stop := context.WithCancel(g.ctx)
	mb.stop = stop
	mb.inst.OnTransition(g.transitioned)
	// Commands that start failing (init_fail) count before the first
	// advert: the events queue up ahead of the instance's Run.
	mb.track.execsChanged(ctx)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(mb.done)
		if err := mb.inst.Run(ctx); err != nil {
			g.log.Error("VRRP instance stopped", "vrrp_instance", mb.cfg.Name, "error", err)
		}
	}()
	g.watchMemberLinks(ctx, mb)
	g.watchMemberSource(ctx, mb)
}

// MsgSourceGone is the log line of an instance whose source address left
// its interface (cmd/lvsha's events record it).
const MsgSourceGone = "VRRP instance's source address is gone: it starts anew, in fault until its interface has an address to send adverts from"

// watchMemberSource replaces mb when the address its instance picked to
// send adverts from leaves the interface or stops being usable (a
// link-local address gone with its link, an IPv4 address deleted): its
// adverts would fail while it went on as master, beside the backup
// that took over. The instance that replaces it waits in FAULT for an
// address, as at a start, and opens with the one there is then. A
// configured unicast_src is not watched: it is the administrator's.
func (g *Group) watchMemberSource(ctx context.Context, mb *member) {
	if g.addrs == nil || mb.cfg.UnicastSrc.IsValid() {
		return
	}
	src, ifindex := mb.inst.Source()
	if !src.IsValid() || ifindex == 0 {
		return
	}
	name := track.AddrName(src, ifindex)
	gone := false // reports come one at a time
	g.addrs.subscribe(ctx, []string{name}, func(r track.LinkReport) {
		// An unknown state is the link watch's fault to raise; only a
		// known absence restarts the instance.
		if r.Err == nil && !r.State[name] && !gone {
			gone = true
			g.sourceGone(mb, src)
		}
	})
}

// sourceGone replaces mb, whose source address src is gone, unless it
// was stopped or replaced meanwhile.
func (g *Group) sourceGone(mb *member, src netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(g.members, mb)
	if g.ctx.Err() != nil || i < 0 || mb.inst == nil {
		return
	}
	g.log.Warn(MsgSourceGone, "vrrp_instance", mb.cfg.Name, "interface", mb.cfg.Interface, "source", src.String())
	nm := newMember(mb.cfg, nil, newTracking(g.log, mb.cfg, nil, g.execOK))
	g.members[i] = nm
	g.replace(mb, nm)
	g.startGroups()
}

// watchMemberLinks feeds mb's tracking with the state of the interfaces
// it tracks (its own among them: track.LinkNames), until ctx is done or
// mb.stopLinks is called.
func (g *Group) watchMemberLinks(ctx context.Context, mb *member) {
	lctx, cancel := context.WithCancel(ctx)
	mb.stopLinks = cancel
	names := track.LinkNames(mb.cfg)
	if len(names) == 0 {
		mb.track.setLinks(ctx, nil, nil)
		return
	}
	g.links.subscribe(lctx, names, func(r track.LinkReport) {
		if r.Lost != nil {
			g.log.Warn("link subscription lost, subscribed again", "vrrp_instance", mb.cfg.Name, "error", r.Lost)
		}
		if r.Err != nil {
			// Unknown state must not leave a master in place: the
			// tracking faults until a subscription holds again.
			g.log.Error("track interfaces: link state unknown", "vrrp_instance", mb.cfg.Name, "error", r.Err)
		}
		mb.track.setLinks(ctx, r.State.Down(), r.Err)
	})
}

// Reload moves the running instances to cfg, instance by instance:
//   - an unchanged instance keeps running untouched;
//   - one whose change can be made in place (priority, version, advert
//     interval, preemption, accept, password, VIPs, announcements, hooks,
//     tracking: see instance.NeedsRestart) keeps its state: a master
//     stays master and adds or removes VIPs;
//   - one whose interface, router_id, source, peers, VIP device or
//     address family changed is replaced: the old one hands over as at a
//     stop, then the new one starts (as a backup, like any new instance);
//   - one removed hands over and stops; one added starts.
//
// Sync groups and track_execs follow (an unchanged track_exec keeps its
// verdict). It refuses, changing nothing, when an instance to start has no
// interface.
//
// Status does not wait for it: the members are swapped under g.mu, and
// the changes in place, which wait for each instance, are made after.
func (g *Group) Reload(cfg *conf.Config) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	changes, err := g.swap(cfg)
	for _, c := range changes {
		g.reconfigure(c.mb, c.was, c.cfg)
	}
	return err
}

// change is a member to change in place, from was to cfg.
type change struct {
	mb       *member
	was, cfg conf.VRRPInstance
}

// swap moves the members to cfg: it starts and stops what must, and
// returns the members to change in place. g.reloadMu is held.
func (g *Group) swap(cfg *conf.Config) ([]change, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx == nil || g.ctx.Err() != nil {
		return nil, errors.New("VRRP is not running")
	}
	old := map[string]*member{}
	for _, mb := range g.members {
		old[mb.cfg.Name] = mb
	}
	var errs []error
	// A member still waiting to start (inst nil) is replaced again.
	inPlace := func(mb *member, ic conf.VRRPInstance) bool {
		return mb != nil && mb.inst != nil && instance.NeedsRestart(mb.cfg, ic) == ""
	}
	for _, ic := range cfg.VRRPInstances {
		if inPlace(old[ic.Name], ic) {
			continue
		}
		if err := g.findInterface(ic.Interface); err != nil {
			errs = append(errs, fmt.Errorf("vrrp_instance %s: interface %s: %w", ic.Name, ic.Interface, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	if !reflect.DeepEqual(g.trackExecs, cfg.TrackExecs) || !sameTrackedExecs(g.members, cfg.VRRPInstances) {
		e := track.NewExecs(g.log, cfg.TrackExecs, cfg.VRRPInstances)
		e.Inherit(g.execs.Load())
		if g.stopExecs != nil {
			g.stopExecs()
			g.stopExecs = nil
		}
		if e.Len() > 0 {
			g.execs.Store(e)
		} else {
			g.execs.Store(nil)
		}
		g.trackExecs = cfg.TrackExecs
		g.startExecs()
	}

	regroup := !reflect.DeepEqual(g.groups, cfg.SyncGroups)
	var members []*member
	var changes []change
	for _, ic := range cfg.VRRPInstances {
		mb := old[ic.Name]
		delete(old, ic.Name)
		switch {
		case inPlace(mb, ic) && reflect.DeepEqual(mb.cfg, ic):
			members = append(members, mb)
			mb.track.execsChanged(g.ctx)
		case inPlace(mb, ic):
			members = append(members, mb)
			changes = append(changes, change{mb: mb, was: mb.cfg, cfg: ic})
			// Status and tracking see the new configuration from here.
			mb.cfg = ic
		default:
			if mb != nil {
				g.log.Info("VRRP instance replaced: handing over, then starting anew", "op", "reload", "vrrp_instance", ic.Name,
					"why", instance.NeedsRestart(mb.cfg, ic))
			} else {
				g.log.Info("VRRP instance added", "op", "reload", "vrrp_instance", ic.Name)
			}
			nm := newMember(ic, nil, newTracking(g.log, ic, nil, g.execOK))
			members = append(members, nm)
			g.replace(mb, nm)
			regroup = true
		}
	}
	for _, mb := range old {
		g.log.Info("VRRP instance removed: handing over and stopping", "op", "reload", "vrrp_instance", mb.cfg.Name)
		g.stopMember(mb)
		regroup = true
	}
	g.members, g.groups = members, cfg.SyncGroups
	if regroup {
		g.startGroups()
	}
	return changes, nil
}

// sameTrackedExecs reports whether the instances track the same
// track_exec names in both configurations (the runner runs only those).
func sameTrackedExecs(members []*member, cfgs []conf.VRRPInstance) bool {
	names := func(cfgs []conf.VRRPInstance) []string {
		var out []string
		for _, ic := range cfgs {
			for _, r := range ic.TrackExecs {
				out = append(out, r.Name)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	var was []conf.VRRPInstance
	for _, mb := range members {
		was = append(was, mb.cfg)
	}
	return slices.Equal(names(was), names(cfgs))
}

// reconfigure changes a running member in place, from was to ic. Only
// g.reloadMu is held: the instance may take up to g.reconfTimeout.
func (g *Group) reconfigure(mb *member, was, ic conf.VRRPInstance) {
	// mb.inst is set for good: only members not waiting to start are
	// changed in place, and only a reload (g.reloadMu) replaces one.
	ctx, cancel := context.WithTimeout(g.ctx, g.reconfTimeout)
	err := mb.inst.Reconfigure(ctx, ic)
	cancel()
	if err != nil {
		g.log.Error("reconfigure VRRP instance", "op", "reload", "vrrp_instance", ic.Name, "error", err)
	}
	// The new base priority, weights and tracked names take effect here.
	mb.track.setConfig(g.ctx, ic)
	if !slices.Equal(track.LinkNames(was), track.LinkNames(ic)) {
		g.mu.Lock()
		defer g.mu.Unlock()
		// Not a member any more if its source left meanwhile.
		if mb.stopLinks != nil && g.ctx.Err() == nil && slices.Contains(g.members, mb) {
			mb.stopLinks()
			g.watchMemberLinks(g.ctx, mb)
		}
	}
}

// stopMember ends mb's instance; it hands over in the background.
func (g *Group) stopMember(mb *member) {
	if mb.stopLinks != nil {
		mb.stopLinks()
	}
	if mb.stop != nil {
		mb.stop()
	}
}

// replace starts nm once prev (nil for an added instance) has handed over
// and closed its socket and VIP device, which nm reuses by name.
func (g *Group) replace(prev, nm *member) {
	var prevDone <-chan struct{}
	if prev != nil {
		g.stopMember(prev)
		prevDone = prev.done
	}
	g.start(nm, prevDone)
}

// The open of an instance whose interface has no address to send adverts
// from is retried after sourceRetryMin, doubling to sourceRetryMax: a
// link-local address usually comes a second or two after the link (DAD),
// and a retry costs one netlink dump of the interface's addresses. There
// is no address watch to wait on (track watches links only, and the
// address comes after the link).
const (
	sourceRetryMin = 100 * time.Millisecond
	sourceRetryMax = time.Second
)

// start opens nm's instance, once prevDone (if not nil) has closed, and
// runs it. While its interface has no address to send adverts from
// (instance.ErrNoSource), nm is in FAULT and the open is retried; a
// reload or a stop (nm.stop) ends the wait. g.mu is held.
func (g *Group) start(nm *member, prevDone <-chan struct{}) {
	ctx, cancel := context.WithCancel(g.ctx)
	nm.stop = cancel
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer cancel()
		// nm.done closes only once prev is done, even when nm is stopped
		// before: a successor waiting on it reuses prev's socket and VIP
		// device by name.
		if prevDone != nil {
			select {
			case <-prevDone:
			case <-g.ctx.Done():
				close(nm.done)
				return
			}
		}
		wait := sourceRetryMin
		for ctx.Err() == nil {
			// nm.cfg never changes: a member that has not started is
			// replaced, not reconfigured.
			inst, err := g.open(g.log, nm.cfg, TunName)
			if errors.Is(err, instance.ErrNoSource) {
				if !g.waitSource(ctx, nm, err, wait) {
					break
				}
				wait = min(2*wait, sourceRetryMax)
				continue
			}
			if g.started(ctx, nm, inst, err) {
				return
			}
			break
		}
		close(nm.done)
	}()
}

// waitSource records that nm's open failed for want of a source address
// (err), the first time regrouping so that nm's sync group sees it in
// fault, and waits d. It reports whether to try again: false when nm was
// stopped or replaced meanwhile.
func (g *Group) waitSource(ctx context.Context, nm *member, err error, d time.Duration) bool {
	g.mu.Lock()
	if ctx.Err() != nil || !slices.Contains(g.members, nm) {
		g.mu.Unlock()
		return false
	}
	first := nm.fault == ""
	g.noSource(nm, err)
	if first {
		g.startGroups()
		// Status shows FAULT from here, where it showed RESTARTING.
		g.transitioned()
	}
	g.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// started takes the outcome of nm's open and, if it succeeded and nm is
// still wanted, runs the instance; it reports whether it did (if not,
// nm never runs, and whoever waits for it may go on).
func (g *Group) started(ctx context.Context, nm *member, inst Instance, err error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case err != nil:
		g.log.Error("start VRRP instance", "vrrp_instance", nm.cfg.Name, "error", err)
		if nm.fault != "" {
			// It waited in FAULT and now cannot open at all (its
			// interface gone, say): status says why it stays there.
			nm.fault = err.Error() + " (not retried: a reload tries again)"
		}
		return false
	case ctx.Err() != nil || !slices.Contains(g.members, nm):
		// Shut down, or replaced again meanwhile: never started, and
		// its successor may go on.
		inst.Close()
		return false
	}
	if nm.fault != "" {
		g.log.Info("VRRP instance's interface has an address to send adverts from now: it leaves fault and starts",
			"vrrp_instance", nm.cfg.Name, "interface", nm.cfg.Interface)
		nm.fault = ""
	}
	nm.inst = inst
	nm.track.setSender(inst)
	g.startMember(nm)
	g.startGroups()
	return true
}

// TrackVirtualServers updates each instance's effective priority from the
// health of the virtual servers it tracks; up reports a real server's
// health.
func (g *Group) TrackVirtualServers(ctx context.Context, cfg *conf.Config, up func(vs string, rs netip.AddrPort) bool) {
	anyUp := func(name string) bool {
		for _, vs := range cfg.VirtualServers {
			if vs.Name != name {
				continue
			}
			for _, rs := range vs.RealServers {
				if up(vs.Name, rs.Address) {
					return true
				}
			}
		}
		return false
	}
	type tracked struct {
		t   *tracking
		vss []conf.TrackVirtualServer
	}
	g.mu.Lock()
	var ts []tracked
	for _, mb := range g.members {
		ts = append(ts, tracked{mb.track, mb.cfg.TrackVirtualServers})
	}
	g.mu.Unlock()
	for _, x := range ts {
		x.t.setVirtualServers(ctx, track.VirtualServersLowered(x.vss, anyUp))
	}
}

// Status reports every instance.
func (g *Group) Status() []instance.Status {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []instance.Status
	for _, mb := range g.members {
		if mb.inst == nil {
			st := instance.Status{Name: mb.cfg.Name, Interface: mb.cfg.Interface, RouterID: mb.cfg.RouterID,
				State: "RESTARTING", BasePriority: mb.cfg.Priority, Priority: mb.cfg.Priority}
			if mb.fault != "" {
				st.State, st.Fault = vrrp.Fault.String(), mb.fault
				for _, p := range mb.cfg.VirtualIPs {
					st.VIPs = append(st.VIPs, p.String())
				}
			}
			out = append(out, st)
			continue
		}
		st := mb.inst.Status()
		st.FaultReasons = mb.track.faults()
		out = append(out, st)
	}
	return out
}

// TrackExecs reports every running track_exec, and the configuration of
// every instance (what tracks them).
func (g *Group) TrackExecs() ([]track.ExecStatus, []conf.VRRPInstance) {
	if g == nil || g.execs.Load() == nil {
		return nil, nil
	}
	g.mu.Lock()
	var cfgs []conf.VRRPInstance
	for _, mb := range g.members {
		cfgs = append(cfgs, mb.cfg)
	}
	g.mu.Unlock()
	return g.execs.Load().Status(), cfgs
}
