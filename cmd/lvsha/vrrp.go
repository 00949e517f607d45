package main

import (
	"log/slog"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp/group"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/track"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// openVRRP opens every VRRP instance of cfg on the host: real sockets,
// VIP devices and link notifications. links reports what the shared
// links drop before any instance sees it.
func openVRRP(log *slog.Logger, cfg *conf.Config) (g *group.Group, links func() []transport.LinkStats, err error) {
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
	}, cfg)
	return g, shared.Links, err
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
