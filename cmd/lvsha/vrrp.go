package main

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

// vrrpGroup runs the configured VRRP instances beside the director. Every
// director keeps its IPVS table programmed whatever its VRRP state; only
// the VIPs move, so a new master forwards at once. A reload changes it
// instance by instance (reload): what is unchanged keeps running.
type vrrpGroup struct {
	log *slog.Logger
	// execs runs the track_execs the instances track; nil without any.
	// Trackings read it at any time, so it is swapped atomically.
	execs atomic.Pointer[track.Execs]

	mu sync.Mutex
	// ctx is run's; nil before run. Everything started is counted in wg.
	ctx context.Context
	wg  sync.WaitGroup
	// members are the instances in configuration order.
	members    []*member
	groups     []conf.SyncGroup
	trackExecs []conf.TrackExec
	stopGroups context.CancelFunc
	stopExecs  context.CancelFunc
}

// member is one configured instance and what runs for it.
type member struct {
	in conf.VRRPInstance
	// inst is nil while a replaced instance waits for its predecessor to
	// hand over and close.
	inst  *instance.Instance
	track *tracking
	// stop ends the instance (a master hands over first); done closes
	// when it has, or when a replacement is abandoned before it started.
	stop      context.CancelFunc
	done      chan struct{}
	stopLinks context.CancelFunc
}

func newMember(in conf.VRRPInstance, inst *instance.Instance, t *tracking) *member {
	return &member{in: in, inst: inst, track: t, done: make(chan struct{})}
}

// sender is what tracking needs of an instance.
type sender interface {
	Send(ctx context.Context, ev vrrp.Event)
}

// tracking combines everything one instance tracks into the two inputs
// its state machine takes, fault and effective priority, and sends only
// their changes. Links, track_execs and virtual servers change on
// different goroutines; one place deciding keeps a fault from one source
// from being cleared by the recovery of another.
type tracking struct {
	log *slog.Logger
	in  conf.VRRPInstance
	to  sender
	// execOK reports a track_exec's verdict.
	execOK func(name string) bool

	mu        sync.Mutex
	linksDown []string // tracked interfaces down, sorted
	linkErr   error    // the link watcher could not start: state unknown
	vsLowered int      // summed weight of tracked virtual servers down
	// fault and prio are what the instance was last sent (it starts
	// without fault, at its configured priority).
	fault bool
	prio  int
}

func newTracking(log *slog.Logger, in conf.VRRPInstance, to sender, execOK func(string) bool) *tracking {
	return &tracking{log: log, in: in, to: to, execOK: execOK, prio: in.Priority}
}

// setConfig takes a reload's configuration of the instance: base
// priority, weights, tracked names.
func (t *tracking) setConfig(ctx context.Context, in conf.VRRPInstance) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.in = in
	t.push(ctx)
}

// setSender gives a tracking created before its instance opened the
// instance to tell; what was decided meanwhile is sent by the next push.
func (t *tracking) setSender(to sender) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.to = to
}

func (t *tracking) setLinks(ctx context.Context, down []string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.linksDown, t.linkErr = down, err
	t.push(ctx)
}

func (t *tracking) setVirtualServers(ctx context.Context, lowered int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.vsLowered = lowered
	t.push(ctx)
}

// execsChanged re-reads the track_exec verdicts.
func (t *tracking) execsChanged(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.push(ctx)
}

// push sends what changed; t.mu is held, so that two sources never
// interleave their events.
func (t *tracking) push(ctx context.Context) {
	if t.to == nil {
		return
	}
	execFault, execLowered, failing := track.ExecEffect(t.in.TrackExecs, t.execOK)
	linkFault, linkLowered := track.LinkEffect(t.in.TrackInterfaces, t.in.TrackInterfaceWeights, t.linksDown)
	// The priority goes first: a fault that clears restarts the instance
	// at whatever priority it has then.
	if p := track.Priority(t.in.Priority, t.vsLowered+execLowered+linkLowered); p != t.prio {
		t.log.Info("effective priority changed by tracking", "vrrp_instance", t.in.Name, "priority", p, "was", t.prio,
			"virtual_servers_lowered", t.vsLowered, "track_exec_lowered", execLowered, "interfaces_lowered", linkLowered)
		t.prio = p
		t.to.Send(ctx, vrrp.SetPriority{Priority: uint8(p)})
	}
	fault := linkFault || t.linkErr != nil || execFault
	if fault == t.fault {
		return
	}
	t.fault = fault
	if fault {
		t.log.Warn("tracking fault", "vrrp_instance", t.in.Name, "interfaces_down", t.linksDown,
			"link_watch_error", t.linkErr, "track_exec_failing", failing)
		t.to.Send(ctx, vrrp.FaultDetected{})
	} else {
		t.log.Info("tracking fault cleared", "vrrp_instance", t.in.Name)
		t.to.Send(ctx, vrrp.FaultCleared{})
	}
}

// tunName names an instance's private VIP device, unique per VRID and
// family within the namespace and within IFNAMSIZ.
func tunName(in conf.VRRPInstance) string {
	fam := 4
	if in.VirtualIPs[0].Addr().Is6() {
		fam = 6
	}
	return fmt.Sprintf("lvsha%d-%d", in.RouterID, fam)
}

// openVRRP opens every instance; on error the ones opened are closed by
// letting their (never started) resources go with the process.
func openVRRP(log *slog.Logger, cfg *conf.Config) (*vrrpGroup, error) {
	g := &vrrpGroup{log: log, groups: cfg.SyncGroups, trackExecs: cfg.TrackExecs}
	if e := track.NewExecs(log, cfg.TrackExecs, cfg.VRRPInstances); e.Len() > 0 {
		g.execs.Store(e)
	}
	for _, in := range cfg.VRRPInstances {
		i, err := instance.Open(log, in, tunName(in))
		if err != nil {
			return nil, err
		}
		g.members = append(g.members, newMember(in, i, newTracking(log, in, i, g.execOK)))
	}
	return g, nil
}

// execOK is the current track_exec verdict on name.
func (g *vrrpGroup) execOK(name string) bool {
	if e := g.execs.Load(); e != nil {
		return e.OK(name)
	}
	return true
}

// syncGroup keeps a sync group's members in one state: whenever a member's
// own judgement (Wants) changes, the group's verdict (vrrp.GroupTarget) is
// sent to every member as a GroupGate; gated members re-judge, and the loop
// repeats until nothing changes (vrrp.GateGroup does the same in one
// goroutine; here each member runs on its own).
func (g *vrrpGroup) syncGroup(ctx context.Context, sg conf.SyncGroup, members []*instance.Instance, changed <-chan struct{}) {
	gate := make([]*bool, len(members))
	for {
		wants := make([]vrrp.State, len(members))
		for j, m := range members {
			wants[j] = m.Wants()
		}
		target := vrrp.GroupTarget(wants)
		allow := target == vrrp.Master
		for j, m := range members {
			if gate[j] == nil || *gate[j] != allow {
				g.log.Info("sync group verdict", "vrrp_sync_group", sg.Name, "vrrp_instance", m.Name(), "target", target.String())
				gate[j] = &allow
				m.Send(ctx, vrrp.GroupGate{AllowMaster: allow})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// run runs the instances until ctx is done and every one has handed over.
func (g *vrrpGroup) run(ctx context.Context) {
	g.mu.Lock()
	g.ctx = ctx
	g.startExecs()
	g.startGroups()
	for _, m := range g.members {
		g.startMember(m)
	}
	g.mu.Unlock()
	<-ctx.Done()
	g.wg.Wait()
}

// startExecs runs the current track_exec runner and tells every instance
// its verdicts. g.mu is held.
func (g *vrrpGroup) startExecs() {
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
				for _, m := range ms {
					m.track.execsChanged(ctx)
				}
			}
		}
	}()
}

// startGroups starts one goroutine per sync group over the members
// running now; instances in no group are let free. g.mu is held.
func (g *vrrpGroup) startGroups() {
	if g.stopGroups != nil {
		g.stopGroups()
	}
	ctx, cancel := context.WithCancel(g.ctx)
	g.stopGroups = cancel
	grouped := map[string]bool{}
	for _, sg := range g.groups {
		var members []*instance.Instance
		changed := make(chan struct{}, 1)
		for _, name := range sg.Instances {
			grouped[name] = true
			for _, m := range g.members {
				if m.in.Name == name && m.inst != nil {
					members = append(members, m.inst)
					m.inst.OnWantsChange(func() {
						select {
						case changed <- struct{}{}:
						default:
						}
					})
				}
			}
		}
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.syncGroup(ctx, sg, members, changed) }()
	}
	for _, m := range g.members {
		if m.inst != nil && !grouped[m.in.Name] {
			m.inst.OnWantsChange(nil)
			// Left a group by a reload: nothing holds it back any more.
			m.inst.Send(ctx, vrrp.GroupGate{AllowMaster: true})
		}
	}
}

// startMember runs m's instance and watches its tracked links. g.mu is
// held.
func (g *vrrpGroup) startMember(m *member) {
	ctx, stop := context.WithCancel(g.ctx)
	m.stop = stop
	// Commands that start failing (init_fail) count before the first
	// advert: the events queue up ahead of the instance's Run.
	m.track.execsChanged(ctx)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(m.done)
		if err := m.inst.Run(ctx); err != nil {
			g.log.Error("VRRP instance stopped", "vrrp_instance", m.in.Name, "error", err)
		}
	}()
	g.watchLinks(ctx, m)
}

// watchLinks feeds m's tracking with the state of the interfaces it
// tracks, until ctx is done or m.stopLinks is called.
func (g *vrrpGroup) watchLinks(ctx context.Context, m *member) {
	lctx, cancel := context.WithCancel(ctx)
	m.stopLinks = cancel
	names := track.LinkNames(m.in)
	if len(names) == 0 {
		m.track.setLinks(ctx, nil, nil)
		return
	}
	links, err := track.WatchLinks(lctx, names)
	if err != nil {
		g.log.Error("track interfaces", "vrrp_instance", m.in.Name, "error", err)
		// Unknown state must not leave a master in place.
		m.track.setLinks(ctx, nil, err)
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for s := range links {
			m.track.setLinks(ctx, s.Down(), nil)
		}
	}()
}

// reload moves the running instances to cfg, instance by instance:
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
func (g *vrrpGroup) reload(cfg *conf.Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx == nil || g.ctx.Err() != nil {
		return errors.New("VRRP is not running")
	}
	old := map[string]*member{}
	for _, m := range g.members {
		old[m.in.Name] = m
	}
	var errs []error
	// A member still waiting to start (inst nil) is replaced again.
	inPlace := func(m *member, in conf.VRRPInstance) bool {
		return m != nil && m.inst != nil && instance.NeedsRestart(m.in, in) == ""
	}
	for _, in := range cfg.VRRPInstances {
		if inPlace(old[in.Name], in) {
			continue
		}
		if _, err := net.InterfaceByName(in.Interface); err != nil {
			errs = append(errs, fmt.Errorf("vrrp_instance %s: interface %s: %w", in.Name, in.Interface, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
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
	for _, in := range cfg.VRRPInstances {
		m := old[in.Name]
		delete(old, in.Name)
		switch {
		case inPlace(m, in) && reflect.DeepEqual(m.in, in):
			members = append(members, m)
			m.track.execsChanged(g.ctx)
		case inPlace(m, in):
			members = append(members, m)
			g.reconfigure(m, in)
		default:
			if m != nil {
				g.log.Info("VRRP instance replaced: handing over, then starting anew", "op", "reload", "vrrp_instance", in.Name,
					"why", instance.NeedsRestart(m.in, in))
			} else {
				g.log.Info("VRRP instance added", "op", "reload", "vrrp_instance", in.Name)
			}
			nm := newMember(in, nil, newTracking(g.log, in, nil, g.execOK))
			members = append(members, nm)
			g.replace(m, nm)
			regroup = true
		}
	}
	for _, m := range old {
		g.log.Info("VRRP instance removed: handing over and stopping", "op", "reload", "vrrp_instance", m.in.Name)
		g.stopMember(m)
		regroup = true
	}
	g.members, g.groups = members, cfg.SyncGroups
	if regroup {
		g.startGroups()
	}
	return nil
}

// sameTrackedExecs reports whether the instances track the same
// track_exec names in both configurations (the runner runs only those).
func sameTrackedExecs(members []*member, ins []conf.VRRPInstance) bool {
	names := func(ins []conf.VRRPInstance) []string {
		var out []string
		for _, in := range ins {
			for _, r := range in.TrackExecs {
				out = append(out, r.Name)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	var was []conf.VRRPInstance
	for _, m := range members {
		was = append(was, m.in)
	}
	return slices.Equal(names(was), names(ins))
}

// reconfigure changes a running member in place. g.mu is held.
func (g *vrrpGroup) reconfigure(m *member, in conf.VRRPInstance) {
	relink := !slices.Equal(track.LinkNames(m.in), track.LinkNames(in))
	m.in = in
	if m.inst != nil {
		ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
		err := m.inst.Reconfigure(ctx, in)
		cancel()
		if err != nil {
			g.log.Error("reconfigure VRRP instance", "op", "reload", "vrrp_instance", in.Name, "error", err)
		}
	}
	// The new base priority, weights and tracked names take effect here.
	m.track.setConfig(g.ctx, in)
	if relink && m.stopLinks != nil {
		m.stopLinks()
		g.watchLinks(g.ctx, m)
	}
}

// stopMember ends m's instance; it hands over in the background.
func (g *vrrpGroup) stopMember(m *member) {
	if m.stopLinks != nil {
		m.stopLinks()
	}
	if m.stop != nil {
		m.stop()
	}
}

// replace starts nm once prev (nil for an added instance) has handed over
// and closed its socket and VIP device, which nm reuses by name.
func (g *vrrpGroup) replace(prev, nm *member) {
	var prevDone <-chan struct{}
	if prev != nil {
		g.stopMember(prev)
		prevDone = prev.done
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if prevDone != nil {
			select {
			case <-prevDone:
			case <-g.ctx.Done():
				close(nm.done)
				return
			}
		}
		// nm.in never changes: a member that has not started is replaced,
		// not reconfigured.
		inst, err := instance.Open(g.log, nm.in, tunName(nm.in))
		g.mu.Lock()
		defer g.mu.Unlock()
		switch {
		case err != nil:
			g.log.Error("start VRRP instance after reload", "op", "reload", "vrrp_instance", nm.in.Name, "error", err)
			close(nm.done)
			return
		case g.ctx.Err() != nil || !slices.Contains(g.members, nm):
			// Shut down, or replaced again meanwhile: never started, and
			// its successor may go on.
			inst.Close()
			close(nm.done)
			return
		}
		nm.inst = inst
		nm.track.setSender(inst)
		g.startMember(nm)
		g.startGroups()
	}()
}

// track updates each instance's effective priority from the health of the
// virtual servers it tracks; up reports a real server's health.
func (g *vrrpGroup) track(ctx context.Context, cfg *conf.Config, up func(vs string, rs netip.AddrPort) bool) {
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
	for _, m := range g.members {
		ts = append(ts, tracked{m.track, m.in.TrackVirtualServers})
	}
	g.mu.Unlock()
	for _, x := range ts {
		x.t.setVirtualServers(ctx, track.VirtualServersLowered(x.vss, anyUp))
	}
}

// status reports every instance.
func (g *vrrpGroup) status() []instance.Status {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []instance.Status
	for _, m := range g.members {
		if m.inst == nil {
			out = append(out, instance.Status{Name: m.in.Name, Interface: m.in.Interface, RouterID: m.in.RouterID,
				State: "RESTARTING", BasePriority: m.in.Priority, Priority: m.in.Priority})
			continue
		}
		out = append(out, m.inst.Status())
	}
	return out
}

// execStatus reports every running track_exec and what it does to the
// instances that track it.
func (g *vrrpGroup) execStatus() []TrackExecReport {
	if g == nil || g.execs.Load() == nil {
		return nil
	}
	g.mu.Lock()
	var ins []conf.VRRPInstance
	for _, m := range g.members {
		ins = append(ins, m.in)
	}
	g.mu.Unlock()
	var out []TrackExecReport
	for _, st := range g.execs.Load().Status() {
		r := TrackExecReport{ExecStatus: st}
		for _, in := range ins {
			for _, ref := range in.TrackExecs {
				if ref.Name != st.Name {
					continue
				}
				r.TrackedBy = append(r.TrackedBy, TrackedBy{Instance: in.Name, Weight: ref.Weight})
			}
		}
		out = append(out, r)
	}
	return out
}

// vrrpStopBound bounds the graceful handover at exit.
func vrrpStopBound(cfg *conf.Config) time.Duration {
	d := 2 * time.Second
	for _, in := range cfg.VRRPInstances {
		d = max(d, 4*in.AdvertInterval+2*time.Second)
	}
	return d
}
