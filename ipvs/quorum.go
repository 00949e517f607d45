package ipvs

import (
	"net/netip"

	"github.com/lvsha/lvsha/conf"
)

// BelowQuorum is lvsha's one quorum rule, shared by the sorry server (the
// table) and the notify_quorum_up/down hooks, so the two never disagree on
// whether a virtual server has quorum. Below quorum the service has lost
// it; once lost it is regained only at quorum+hysteresis, so an up weight
// hovering around quorum does not flap. wasBelow is the previous decision;
// with no previous decision pass false (quorum is presumed held).
func BelowQuorum(upWeight, quorum, hysteresis int, wasBelow bool) bool {
	if wasBelow {
		return upWeight < quorum+hysteresis
	}
	return upWeight < quorum
}

// UpWeight is the weight quorum counts for vs: the sum, over its real
// servers that are up, of the weight each serves with. up nil means every
// real server is up; weight may be nil.
func UpWeight(vs *conf.VirtualServer, up func(vs string, rs netip.AddrPort) bool, weight WeightFunc) int {
	sum := 0
	for _, rs := range vs.RealServers {
		if w, ok := servingWeight(vs.Name, rs, up, weight); ok {
			sum += w
		}
	}
	return sum
}

// UpWeightAtLeast is UpWeight, except that it stops adding once the sum
// reaches enough: BelowQuorum decides the same with it when enough is
// quorum plus a non-negative hysteresis, without asking for the health of
// every real server of a service that has quorum many times over.
func UpWeightAtLeast(vs *conf.VirtualServer, up func(vs string, rs netip.AddrPort) bool, weight WeightFunc, enough int) int {
	sum := 0
	for _, rs := range vs.RealServers {
		if sum >= enough {
			break
		}
		if w, ok := servingWeight(vs.Name, rs, up, weight); ok {
			sum += w
		}
	}
	return sum
}

// servingWeight is the weight real server rs of virtual server vsName
// serves with, and whether it is up: a dynamic weight its check asked for
// replaces the configured one while it is up.
func servingWeight(vsName string, rs conf.RealServer, up func(string, netip.AddrPort) bool, weight WeightFunc) (int, bool) {
	if up != nil && !up(vsName, rs.Address) {
		return 0, false
	}
	if weight != nil {
		if w, ok := weight(vsName, rs.Address); ok {
			return w, true
		}
	}
	return rs.Weight, true
}
