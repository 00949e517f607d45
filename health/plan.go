package health

import (
	"net/netip"

	"github.com/lvsha/lvsha/conf"
)

// What Update does to one real server's probe when the configuration
// changes from old to new.
const (
	ProbeStarted   = "started"   // a real server or check that was not there
	ProbeStopped   = "stopped"   // its real server or check is gone
	ProbeRestarted = "restarted" // the check changed: it starts again from its initial state
)

// ProbeChange is one real server whose probe a reload changes.
type ProbeChange struct {
	Key    Key    `json:"key"`
	Change string `json:"change"`
}

// PlanProbes lists what Engine.Update(new) does to the probes of an engine
// running old: a probe whose identity is unchanged keeps running with its
// state, so an unchanged file lists nothing. Real servers come in the
// order of new, then those stopped in the order of old.
func PlanProbes(old, new *conf.Config) []ProbeChange {
	oldKeys := configKeys(old)
	before := make(map[Key]string, len(oldKeys))
	checked := false // any old real server with a probe, which may stop
	for _, k := range oldKeys {
		before[k.Key] = k.id
		checked = checked || k.id != ""
	}
	var out []ProbeChange
	var seen map[Key]bool
	newKeys := configKeys(new)
	if checked {
		seen = make(map[Key]bool, len(newKeys))
	}
	for _, k := range newKeys {
		if checked {
			seen[k.Key] = true
		}
		was, had := before[k.Key]
		switch {
		case k.id == "" && had && was != "":
			out = append(out, ProbeChange{k.Key, ProbeStopped})
		case k.id == "":
		case !had || was == "":
			out = append(out, ProbeChange{k.Key, ProbeStarted})
		case was != k.id:
			out = append(out, ProbeChange{k.Key, ProbeRestarted})
		}
	}
	for _, k := range oldKeys {
		if k.id != "" && !seen[k.Key] {
			out = append(out, ProbeChange{k.Key, ProbeStopped})
		}
	}
	return out
}

type keyID struct {
	Key
	id    string // "" for a real server without a check
	check *conf.Check
}

// configKeys lists cfg's real servers with the identity of their probe,
// as Update computes it.
func configKeys(cfg *conf.Config) []keyID {
	if cfg == nil {
		return nil
	}
	n := 0
	for _, vs := range cfg.VirtualServers {
		n += len(vs.RealServers)
	}
	out := make([]keyID, 0, n)
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			k := keyID{Key: Key{VirtualServer: vs.Name, RealServer: rs.Address}}
			if rs.Check != nil && rs.Check.Type != "none" {
				k.id, k.check = identity(vs.Name, rs.Address, rs.Check), rs.Check
			}
			out = append(out, k)
		}
	}
	return out
}

// Preview is Up and Weight as they will be right after Update(cfg): a
// real server whose probe Update keeps (the same identity, possibly
// another real server's) has that probe's state, one whose probe is new
// its check's initial state, one without a check is up. It changes
// nothing, so a reload can be planned before it is made.
func (e *Engine) Preview(cfg *conf.Config) (up func(vs string, rs netip.AddrPort) bool, weight func(vs string, rs netip.AddrPort) (int, bool)) {
	type view struct {
		up     bool
		weight int // -1: configured
	}
	views := map[Key]view{}
	e.mu.Lock()
	for _, k := range configKeys(cfg) {
		switch p := e.probes[k.id]; {
		case k.id == "":
			views[k.Key] = view{up: true, weight: -1}
		case p != nil:
			views[k.Key] = view{up: p.state.Up, weight: p.weight}
		default:
			views[k.Key] = view{up: !e.startDown[k.Key] && initialFor(k.check).Up, weight: -1}
		}
	}
	e.mu.Unlock()
	up = func(vs string, rs netip.AddrPort) bool {
		v, ok := views[Key{VirtualServer: vs, RealServer: rs}]
		return !ok || v.up
	}
	weight = func(vs string, rs netip.AddrPort) (int, bool) {
		v, ok := views[Key{VirtualServer: vs, RealServer: rs}]
		if !ok || v.weight < 0 {
			return 0, false
		}
		return v.weight, true
	}
	return up, weight
}
