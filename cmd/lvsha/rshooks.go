package main

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/hook"
	"github.com/lvsha/lvsha/ipvs"
)

// hookTimeout bounds each real-server and quorum hook.
const hookTimeout = 10 * time.Second

// rsHooks turns health changes into the notify_up / notify_down and
// notify_quorum_up / notify_quorum_down commands of the configuration.
// The first observation of a server or service only records its state: a
// start or a reload runs no hook. It logs each quorum change, the one
// place that sees them (the health engine logs real servers up and
// down).
type rsHooks struct {
	log   *slog.Logger
	queue func(hook.Job)
	up    map[health.Key]seenUp
	gen   uint64          // observe's count, which seenUp records
	below map[string]bool // per virtual server: quorum lost
	// lost is a copy of below as of the last observe, for readers on
	// other goroutines (metrics).
	lost atomic.Pointer[map[string]bool]
}

// quorumLost says, per virtual server, whether it had lost quorum at the
// last observation; nil before the first.
func (h *rsHooks) quorumLost() map[string]bool {
	if m := h.lost.Load(); m != nil {
		return *m
	}
	return nil
}

// seenUp is a real server's state at the observation gen that last saw
// it: observe forgets those an observation did not see without a set of
// 10,000 keys to compare.
type seenUp struct {
	up  bool
	gen uint64
}

func newRSHooks(log *slog.Logger, queue func(hook.Job)) *rsHooks {
	return &rsHooks{log: log, queue: queue, up: map[health.Key]seenUp{}, below: map[string]bool{}}
}

// observe compares the current health with the last observation and
// queues the hooks of what changed. Only the daemon's loop calls it.
func (h *rsHooks) observe(cfg *conf.Config, up func(vs string, rs netip.AddrPort) bool, weight ipvs.WeightFunc) {
	h.gen++
	seen := 0
	seenVS := make(map[string]bool, len(cfg.VirtualServers))
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		seenVS[vs.Name] = true
		for _, rs := range vs.RealServers {
			k := health.Key{VirtualServer: vs.Name, RealServer: rs.Address}
			u := up(vs.Name, rs.Address)
			prev, known := h.up[k]
			if !known || prev.gen != h.gen {
				seen++ // not counted twice if listed twice
			}
			h.up[k] = seenUp{up: u, gen: h.gen}
			if !known || prev.up == u {
				continue
			}
			argv, state := rs.NotifyDown, "down"
			if u {
				argv, state = rs.NotifyUp, "up"
			}
			if len(argv) > 0 {
				h.queue(hook.Job{Argv: argv,
					Env:   []string{"LVSHA_VIRTUAL_SERVER=" + vs.Name, "LVSHA_REAL_SERVER=" + rs.Address.String(), "LVSHA_STATE=" + state},
					Attrs: []any{"vs", vs.Name, "rs", rs.Address.String(), "state", state}})
			}
		}
		// The same rule as the sorry server's, so a quorum hook and the
		// table never disagree.
		upWeight := ipvs.UpWeightAtLeast(vs, up, weight, vs.Quorum+max(vs.Hysteresis, 0))
		wasBelow, known := h.below[vs.Name]
		below := ipvs.BelowQuorum(upWeight, vs.Quorum, vs.Hysteresis, known && wasBelow)
		h.below[vs.Name] = below
		if !known || below == wasBelow {
			continue
		}
		upWeight = ipvs.UpWeight(vs, up, weight) // the whole sum, for the log and the hook
		argv, state := vs.NotifyQuorumUp, "quorum_up"
		if below {
			argv, state = vs.NotifyQuorumDown, "quorum_down"
		}
		h.logQuorum(vs, below, upWeight)
		if len(argv) > 0 {
			h.queue(hook.Job{Argv: argv,
				Env:   []string{"LVSHA_VIRTUAL_SERVER=" + vs.Name, "LVSHA_STATE=" + state, "LVSHA_UP_WEIGHT=" + strconv.Itoa(upWeight)},
				Attrs: []any{"vs", vs.Name, "state", state, "up_weight", upWeight}})
		}
	}
	if len(h.up) > seen {
		for k, s := range h.up {
			if s.gen != h.gen {
				delete(h.up, k)
			}
		}
	}
	for n := range h.below {
		if !seenVS[n] {
			delete(h.below, n)
		}
	}
	lost := maps.Clone(h.below)
	h.lost.Store(&lost)
}

// logQuorum logs a change of vs's quorum with its cause, the weight of
// its real servers up; the sorry server, when it has one, serves exactly
// while quorum is lost (the same rule), so the line says so rather than
// a second line for the same change.
func (h *rsHooks) logQuorum(vs *conf.VirtualServer, lost bool, upWeight int) {
	msg, level, sorry := "virtual server regained quorum", slog.LevelInfo, "off"
	if lost {
		msg, level, sorry = "virtual server lost quorum", slog.LevelWarn, "serving"
	}
	attrs := []slog.Attr{slog.String("op", "quorum"), slog.String("vs", vs.Name), slog.Int("up_weight", upWeight),
		slog.Int("quorum", vs.Quorum), slog.Int("hysteresis", vs.Hysteresis)}
	if vs.SorryServer.IsValid() {
		attrs = append(attrs, slog.String("sorry_server", vs.SorryServer.String()), slog.String("sorry_server_state", sorry))
	}
	h.log.LogAttrs(context.Background(), level, msg, attrs...)
}
