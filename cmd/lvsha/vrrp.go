package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	bfdrunner "github.com/lvsha/lvsha/bfd/runner"
	bfdtransport "github.com/lvsha/lvsha/bfd/transport"
	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp/bfdwatch"
	"github.com/lvsha/lvsha/vrrp/group"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/track"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// openVRRP opens every VRRP instance of cfg on the host: real sockets,
// VIP devices and link notifications. links reports what the shared
// links drop before any instance sees it; bfd runs BFD fast takeover for
// the instances with bfd on (run it beside the group).
func openVRRP(log *slog.Logger, cfg *conf.Config) (g *group.Group, links func() []transport.LinkStats, bfd *bfdwatch.Watcher, err error) {
	shared := instance.NewShared()
	g, err = group.Open(group.Options{
		Log: log,
		Open: func(log *slog.Logger, ic conf.VRRPInstance, tunName string) (group.Instance, error) {
			// Returned as is, a nil *Instance would be a non-nil Instance.
			inst, err := shared.Open(log, ic, tunName)
			if err != nil {
				return nil, err
			}
			return inst, nil
		},
		WatchLinks: track.Links,
		WatchAddrs: track.Addrs,
	}, cfg)
	return g, shared.Links, bfdwatch.New(log, shared, openBFD(log)), err
}

// openBFD opens BFD's local ends on the host (bfd/runner), in this
// process's network namespace.
func openBFD(log *slog.Logger) bfdwatch.OpenFunc {
	return func(iface string, local netip.Addr, accept bfdrunner.Peer) (bfdwatch.Endpoint, error) {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return nil, fmt.Errorf("bfd: interface %s: %w", iface, err)
		}
		r, err := bfdrunner.Open(bfdrunner.Config{Config: bfdtransport.Config{Interface: ifi, Local: local}, Accept: &accept,
			Logger: log.With("op", "bfd", "interface", iface)})
		if err != nil {
			// Returned as is, a nil *Runner would be a non-nil Endpoint.
			return nil, err
		}
		return r, nil
	}
}

// execStatus reports every running track_exec and what it does to the
// instances that track it.
func execStatus(g *group.Group) []TrackExecReport {
	execs, cfgs := g.TrackExecs()
	var out []TrackExecReport
	for _, st := range execs {
		r := TrackExecReport{ExecStatus: st}
		for _, ic := range cfgs {
			for _, ref := range ic.TrackExecs {
				if ref.Name != st.Name {
					continue
				}
				r.TrackedBy = append(r.TrackedBy, TrackedBy{Instance: ic.Name, Weight: ref.Weight})
			}
		}
		out = append(out, r)
	}
	return out
}

// vrrpStopBound bounds the graceful handover at exit.
func vrrpStopBound(cfg *conf.Config) time.Duration {
	d := 2 * time.Second
	for _, ic := range cfg.VRRPInstances {
		d = max(d, 4*ic.AdvertInterval+2*time.Second)
	}
	return d
}
