package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/lvsha/lvsha/conf"
)

// writeVRRPPlan prints what `lvsha run` would do with cfg's VRRP
// instances: for each, where it speaks, what it starts with, what it
// holds and what moves its priority, so an operator reviewing a change
// sees the election as well as the table.
func writeVRRPPlan(w io.Writer, cfg *conf.Config) error {
	if len(cfg.VRRPInstances) == 0 {
		return nil
	}
	group := map[string]string{}
	for _, g := range cfg.SyncGroups {
		for _, n := range g.Instances {
			group[n] = g.Name
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "VRRP instances: %d\n", len(cfg.VRRPInstances))
	for _, vi := range cfg.VRRPInstances {
		fmt.Fprintf(&b, "  %s: %s vrid %d, VRRPv%d, priority %d, advert %v", vi.Name, vi.Interface, vi.RouterID, vi.Version, vi.Priority, vi.AdvertInterval)
		switch {
		case !vi.Preempt:
			b.WriteString(", no preempt")
		case vi.PreemptDelay > 0:
			fmt.Fprintf(&b, ", preempt after %v", vi.PreemptDelay)
		}
		if g, ok := group[vi.Name]; ok {
			fmt.Fprintf(&b, ", sync group %s", g)
		}
		b.WriteString("\n")
		vips := make([]string, len(vi.VirtualIPs))
		for i, p := range vi.VirtualIPs {
			vips[i] = p.String()
		}
		fmt.Fprintf(&b, "    VIPs on %s: %s\n", vi.VIPHolder, strings.Join(vips, " "))
		if len(vi.UnicastPeers) > 0 {
			peers := make([]string, len(vi.UnicastPeers))
			for i, p := range vi.UnicastPeers {
				peers[i] = p.String()
			}
			fmt.Fprintf(&b, "    unicast to %s\n", strings.Join(peers, " "))
		}
		if t := trackPlan(vi); t != "" {
			fmt.Fprintf(&b, "    tracks %s\n", t)
		}
		if ls := vi.LVSSync; ls != nil {
			fmt.Fprintf(&b, "    connection sync on %s (sync_id %d)", ls.Interface, ls.SyncID)
			if ls.RefreshPeriod > 0 {
				fmt.Fprintf(&b, ", refresh every %v", ls.RefreshPeriod)
			}
			if ls.PreemptHold > 0 {
				fmt.Fprintf(&b, ", preemption held %v after the backup daemon starts", ls.PreemptHold)
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// trackPlan lists what an instance tracks and what each does to it.
func trackPlan(vi conf.VRRPInstance) string {
	var items []string
	for _, n := range vi.TrackInterfaces {
		items = append(items, "interface "+n+" (fault)")
	}
	for _, t := range vi.TrackInterfaceWeights {
		items = append(items, fmt.Sprintf("interface %s (-%d)", t.Name, t.Weight))
	}
	for _, t := range vi.TrackVirtualServers {
		items = append(items, fmt.Sprintf("virtual_server %s (-%d)", t.Name, t.Weight))
	}
	for _, t := range vi.TrackExecs {
		if t.Weight == 0 {
			items = append(items, "track_exec "+t.Name+" (fault)")
		} else {
			items = append(items, fmt.Sprintf("track_exec %s (-%d)", t.Name, t.Weight))
		}
	}
	return strings.Join(items, ", ")
}
