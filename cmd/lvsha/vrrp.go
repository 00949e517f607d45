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
	// prio is the last effective priority sent to each instance.
	prio []int
	// groups are the sync groups, by instance name.
	groups []conf.SyncGroup
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
	for _, in := range cfg.VRRPInstances {
		i, err := instance.Open(log, in, tunName(in))
		if err != nil {
			return nil, err
		}
		g.insts = append(g.insts, i)
		g.prio = append(g.prio, in.Priority)
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
	for idx, i := range g.insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := i.Run(ctx); err != nil {
				g.log.Error("VRRP instance stopped", "vrrp_instance", i.Name(), "error", err)
			}
		}()
		if names := g.cfg[idx].TrackInterfaces; len(names) > 0 {
			links, err := track.WatchLinks(ctx, names)
			if err != nil {
				g.log.Error("track interfaces", "vrrp_instance", i.Name(), "error", err)
				// Unknown state must not leave a master in place.
				i.Send(ctx, vrrp.FaultDetected{})
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := range links {
					if s.AllUp() {
						i.Send(ctx, vrrp.FaultCleared{})
					} else {
						g.log.Warn("tracked interface down", "vrrp_instance", i.Name(), "down", s.Down())
						i.Send(ctx, vrrp.FaultDetected{})
					}
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
		if len(in.TrackVirtualServers) == 0 {
			continue
		}
		p := track.Priority(in.Priority, in.TrackVirtualServers, anyUp)
		if p != g.prio[idx] {
			g.log.Info("effective priority changed by tracked virtual servers", "vrrp_instance", in.Name, "priority", p, "was", g.prio[idx])
			g.prio[idx] = p
			g.insts[idx].Send(ctx, vrrp.SetPriority{Priority: uint8(p)})
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

// sameVRRP reports whether two configs describe the same VRRP setup; a
// reload may not change it (the instances would have to be rebuilt, which
// is a restart).
func sameVRRP(a, b *conf.Config) bool {
	return reflect.DeepEqual(a.VRRPInstances, b.VRRPInstances) && reflect.DeepEqual(a.SyncGroups, b.SyncGroups)
}

// vrrpStopBound bounds the graceful handover at exit.
func vrrpStopBound(cfg *conf.Config) time.Duration {
	d := 2 * time.Second
	for _, in := range cfg.VRRPInstances {
		d = max(d, 4*in.AdvertInterval+2*time.Second)
	}
	return d
}
