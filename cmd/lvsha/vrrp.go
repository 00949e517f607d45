package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/track"
)

// vrrpGroup runs the configured VRRP instances beside the director. Every
// director keeps its IPVS table programmed whatever its VRRP state; only
// the VIPs move, so a new master forwards at once.
type vrrpGroup struct {
	log   *slog.Logger
	cfg   []conf.VRRPInstance
	insts []*instance.Instance
	// tracks holds each instance's tracked inputs, index for index.
	tracks []*tracking
	// execs runs the track_execs the instances track; nil without any.
	execs *track.Execs
	// groups are the sync groups, by instance name.
	groups []conf.SyncGroup
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
	g := &vrrpGroup{log: log, cfg: cfg.VRRPInstances, groups: cfg.SyncGroups}
	execOK := func(string) bool { return true }
	if e := track.NewExecs(log, cfg.TrackExecs, cfg.VRRPInstances); e.Len() > 0 {
		g.execs, execOK = e, e.OK
	}
	for _, in := range cfg.VRRPInstances {
		i, err := instance.Open(log, in, tunName(in))
		if err != nil {
			return nil, err
		}
		g.insts = append(g.insts, i)
		g.tracks = append(g.tracks, newTracking(log, in, i, execOK))
	}
	return g, nil
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
	var wg sync.WaitGroup
	for _, sg := range g.groups {
		var members []*instance.Instance
		changed := make(chan struct{}, 1)
		for _, name := range sg.Instances {
			for _, i := range g.insts {
				if i.Name() == name {
					members = append(members, i)
					i.OnWantsChange(func() {
						select {
						case changed <- struct{}{}:
						default:
						}
					})
				}
			}
		}
		wg.Add(1)
		go func() { defer wg.Done(); g.syncGroup(ctx, sg, members, changed) }()
	}
	// Commands that start failing (init_fail) count before the first
	// advert: the events queue up ahead of the instances' Run.
	for _, t := range g.tracks {
		t.execsChanged(ctx)
	}
	if g.execs != nil {
		wg.Add(2)
		go func() { defer wg.Done(); g.execs.Run(ctx) }()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-g.execs.Updates():
					for _, t := range g.tracks {
						t.execsChanged(ctx)
					}
				}
			}
		}()
	}
	for idx, i := range g.insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := i.Run(ctx); err != nil {
				g.log.Error("VRRP instance stopped", "vrrp_instance", i.Name(), "error", err)
			}
		}()
		if names := track.LinkNames(g.cfg[idx]); len(names) > 0 {
			t := g.tracks[idx]
			links, err := track.WatchLinks(ctx, names)
			if err != nil {
				g.log.Error("track interfaces", "vrrp_instance", i.Name(), "error", err)
				// Unknown state must not leave a master in place.
				t.setLinks(ctx, nil, err)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := range links {
					t.setLinks(ctx, s.Down(), nil)
				}
			}()
		}
	}
	wg.Wait()
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
	for idx, in := range g.cfg {
		if len(in.TrackVirtualServers) > 0 {
			g.tracks[idx].setVirtualServers(ctx, track.VirtualServersLowered(in.TrackVirtualServers, anyUp))
		}
	}
}

// status reports every instance.
func (g *vrrpGroup) status() []instance.Status {
	if g == nil {
		return nil
	}
	out := make([]instance.Status, 0, len(g.insts))
	for _, i := range g.insts {
		out = append(out, i.Status())
	}
	return out
}

// execStatus reports every running track_exec and what it does to the
// instances that track it.
func (g *vrrpGroup) execStatus() []TrackExecReport {
	if g == nil || g.execs == nil {
		return nil
	}
	var out []TrackExecReport
	for _, st := range g.execs.Status() {
		r := TrackExecReport{ExecStatus: st}
		for _, in := range g.cfg {
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

// sameVRRP reports whether two configs describe the same VRRP setup; a
// reload may not change it (the instances would have to be rebuilt, which
// is a restart).
func sameVRRP(a, b *conf.Config) bool {
	return reflect.DeepEqual(a.VRRPInstances, b.VRRPInstances) && reflect.DeepEqual(a.SyncGroups, b.SyncGroups) &&
		reflect.DeepEqual(a.TrackExecs, b.TrackExecs)
}

// vrrpStopBound bounds the graceful handover at exit.
func vrrpStopBound(cfg *conf.Config) time.Duration {
	d := 2 * time.Second
	for _, in := range cfg.VRRPInstances {
		d = max(d, 4*in.AdvertInterval+2*time.Second)
	}
	return d
}
