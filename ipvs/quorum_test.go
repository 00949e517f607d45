package ipvs_test

import (
	"net/netip"
	"testing"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
)

func TestBelowQuorum(t *testing.T) {
	tests := []struct {
		name                         string
		upWeight, quorum, hysteresis int
		wasBelow, want               bool
	}{
		{"held, above quorum", 5, 3, 2, false, false},
		{"held, at quorum", 3, 3, 2, false, false},
		{"held, one below quorum: lost", 2, 3, 2, false, true},
		{"lost, back at quorum: inside the band", 3, 3, 2, true, true},
		{"lost, one short of quorum+hysteresis", 4, 3, 2, true, true},
		{"lost, at quorum+hysteresis: regained", 5, 3, 2, true, false},
		{"no hysteresis: regained at quorum", 3, 3, 0, true, false},
		{"no hysteresis: lost below quorum", 2, 3, 0, false, true},
		{"quorum 0 never lost", 0, 0, 0, false, false},
		{"quorum 0, hysteresis 1: once lost, weight 0 stays lost", 0, 0, 1, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ipvs.BelowQuorum(tc.upWeight, tc.quorum, tc.hysteresis, tc.wasBelow); got != tc.want {
				t.Errorf("BelowQuorum(%d, %d, %d, %v) = %v, want %v", tc.upWeight, tc.quorum, tc.hysteresis, tc.wasBelow, got, tc.want)
			}
		})
	}
}

func TestUpWeight(t *testing.T) {
	a, b, c := ap("10.0.1.1:80"), ap("10.0.1.2:80"), ap("10.0.1.3:80")
	vs := &conf.VirtualServer{Name: "web", RealServers: []conf.RealServer{
		{Address: a, Weight: 1}, {Address: b, Weight: 2}, {Address: c, Weight: 4},
	}}
	downC := func(_ string, rs netip.AddrPort) bool { return rs != c }
	tests := []struct {
		name   string
		up     func(string, netip.AddrPort) bool
		weight ipvs.WeightFunc
		want   int
	}{
		{"nil up: all up at configured weights", nil, nil, 7},
		{"a down server does not count", downC, nil, 3},
		{"a dynamic weight replaces the configured one", nil, func(_ string, rs netip.AddrPort) (int, bool) { return 10, rs == a }, 16},
		{"a down server's dynamic weight does not count", downC, func(_ string, rs netip.AddrPort) (int, bool) { return 10, rs == c }, 3},
		{"health is per virtual server", func(vsName string, _ netip.AddrPort) bool { return vsName != "web" }, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ipvs.UpWeight(vs, tc.up, tc.weight); got != tc.want {
				t.Errorf("UpWeight = %d, want %d", got, tc.want)
			}
		})
	}
}

// UpWeightAtLeast decides quorum as UpWeight does, whatever the health of
// each real server, with or without hysteresis, before and after a loss.
func TestUpWeightAtLeastDecidesAsUpWeight(t *testing.T) {
	vs := natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 3), rs("10.0.1.2:80", 1), rs("10.0.1.3:80", 2), rs("10.0.1.4:80", 5))
	addrs := []string{"10.0.1.1:80", "10.0.1.2:80", "10.0.1.3:80", "10.0.1.4:80"}
	for mask := range 1 << len(addrs) {
		var down []string
		for i, a := range addrs {
			if mask&(1<<i) != 0 {
				down = append(down, a)
			}
		}
		up := downSet(down...)
		full := ipvs.UpWeight(&vs, up, nil)
		for quorum := 0; quorum <= 12; quorum++ {
			for _, hyst := range []int{0, 1, 3} {
				capped := ipvs.UpWeightAtLeast(&vs, up, nil, quorum+hyst)
				for _, was := range []bool{false, true} {
					if got, want := ipvs.BelowQuorum(capped, quorum, hyst, was), ipvs.BelowQuorum(full, quorum, hyst, was); got != want {
						t.Errorf("down %v, quorum %d, hysteresis %d, was below %v: %v, want %v", down, quorum, hyst, was, got, want)
					}
				}
			}
		}
	}
}
