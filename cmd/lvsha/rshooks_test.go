package main

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/hook"
	"github.com/lvsha/lvsha/ipvs"
)

func TestRSHooks(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.1:80"), netip.MustParseAddrPort("10.0.0.2:80")
	cfg := &conf.Config{VirtualServers: []conf.VirtualServer{{
		Name: "web", Quorum: 3, Hysteresis: 1,
		NotifyQuorumUp: []string{"/q", "up"}, NotifyQuorumDown: []string{"/q", "down"},
		RealServers: []conf.RealServer{
			{Address: a, Weight: 2, NotifyUp: []string{"/up", "a"}, NotifyDown: []string{"/down", "a"}},
			{Address: b, Weight: 2}, // no hooks of its own
		},
	}}}
	var jobs []string
	h := newRSHooks(slog.New(slog.DiscardHandler), func(j hook.Job) { jobs = append(jobs, strings.Join(j.Argv, " ")+" "+strings.Join(j.Env, " ")) })
	noWeight := func(string, netip.AddrPort) (int, bool) { return 0, false }
	steps := []struct {
		name   string
		up     map[netip.AddrPort]bool
		weight func(string, netip.AddrPort) (int, bool)
		want   []string
	}{
		{"first observation runs nothing", map[netip.AddrPort]bool{a: true, b: true}, noWeight, nil},
		{"no change", map[netip.AddrPort]bool{a: true, b: true}, noWeight, nil},
		{"a down: its hook, and quorum lost (2 < 3)", map[netip.AddrPort]bool{a: false, b: true}, noWeight, []string{
			"/down a LVSHA_VIRTUAL_SERVER=web LVSHA_REAL_SERVER=10.0.0.1:80 LVSHA_STATE=down",
			"/q down LVSHA_VIRTUAL_SERVER=web LVSHA_STATE=quorum_down LVSHA_UP_WEIGHT=2"}},
		{"b down: no hook of its own", map[netip.AddrPort]bool{a: false, b: false}, noWeight, nil},
		{"a up: 2 is inside the hysteresis band", map[netip.AddrPort]bool{a: true, b: false}, noWeight, []string{
			"/up a LVSHA_VIRTUAL_SERVER=web LVSHA_REAL_SERVER=10.0.0.1:80 LVSHA_STATE=up"}},
		{"a at dynamic weight 4 reaches quorum+hysteresis", map[netip.AddrPort]bool{a: true, b: false},
			func(_ string, rs netip.AddrPort) (int, bool) { return 4, rs == a }, []string{
				"/q up LVSHA_VIRTUAL_SERVER=web LVSHA_STATE=quorum_up LVSHA_UP_WEIGHT=4"}},
	}
	for _, st := range steps {
		jobs = nil
		h.observe(cfg, func(_ string, rs netip.AddrPort) bool { return st.up[rs] }, st.weight)
		if strings.Join(jobs, "\n") != strings.Join(st.want, "\n") {
			t.Fatalf("%s: jobs\n%s\nwant\n%s", st.name, strings.Join(jobs, "\n"), strings.Join(st.want, "\n"))
		}
	}
	// A reload that drops the service forgets it: re-adding it is a first
	// observation again.
	h.observe(&conf.Config{}, nil, noWeight)
	jobs = nil
	h.observe(cfg, func(string, netip.AddrPort) bool { return false }, noWeight)
	if len(jobs) != 0 {
		t.Errorf("re-added service ran hooks: %v", jobs)
	}
}

// TestQuorumHooksFollowTheTable: the quorum hooks and the sorry server
// decide with one rule, so over any sequence of health changes (dynamic
// weights included) a quorum_down has run exactly while the table serves
// the sorry server.
func TestQuorumHooksFollowTheTable(t *testing.T) {
	var servers []conf.RealServer
	for i := 1; i <= 5; i++ {
		servers = append(servers, conf.RealServer{Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 80), Weight: 1, Forwarding: "nat"})
	}
	cfg := &conf.Config{VirtualServers: []conf.VirtualServer{{
		Name: "web", Address: netip.MustParseAddrPort("10.0.0.1:80"), Protocol: "tcp", Scheduler: "rr", Forwarding: "nat",
		SorryServer: netip.MustParseAddrPort("10.0.9.9:80"), SorryWeight: 1, Quorum: 3, Hysteresis: 2,
		NotifyQuorumUp: []string{"up"}, NotifyQuorumDown: []string{"down"}, RealServers: servers,
	}}}
	var mem ipvs.SorryMemory
	lost := false // what the hooks last said
	h := newRSHooks(slog.New(slog.DiscardHandler), func(j hook.Job) { lost = j.Argv[0] == "down" })
	// Up count and the dynamic weight of the first server, step by step:
	// into the band from above and from below, and across it by weight.
	steps := []struct{ up, w1 int }{{5, 1}, {3, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {4, 1}, {2, 1}, {2, 3}, {1, 4}, {1, 2}, {0, 1}, {5, 1}}
	sawLost := false
	for i, st := range steps {
		up := func(_ string, rs netip.AddrPort) bool { return int(rs.Addr().As4()[3]) <= st.up }
		weight := func(_ string, rs netip.AddrPort) (int, bool) { return st.w1, rs == servers[0].Address }
		h.observe(cfg, up, weight)
		table := mem.DesiredWeighted(cfg, up, weight)
		if got := table[0].SorryActive(); got != lost {
			t.Fatalf("step %d (%d up, first at weight %d): sorry server serving %v, quorum hooks say lost %v", i, st.up, st.w1, got, lost)
		}
		sawLost = sawLost || lost
	}
	if !sawLost {
		t.Fatal("the sequence never lost quorum: it tests nothing")
	}
}
