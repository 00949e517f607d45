package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/hook"
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
	h := newRSHooks(func(j hook.Job) { jobs = append(jobs, strings.Join(j.Argv, " ")+" "+strings.Join(j.Env, " ")) })
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
