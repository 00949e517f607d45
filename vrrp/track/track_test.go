package track

import (
	"slices"
	"testing"

	"github.com/lvsha/lvsha/conf"
)

func TestPriority(t *testing.T) {
	tracked := []conf.TrackVirtualServer{{Name: "web", Weight: 30}, {Name: "dns", Weight: 80}}
	tests := []struct {
		name string
		base int
		down []string
		want int
	}{
		{"all up", 100, nil, 100},
		{"one down", 100, []string{"web"}, 70},
		{"both down", 100, []string{"web", "dns"}, 1}, // 100-110 floors at 1, never 0
		{"owner lowered", 255, []string{"web"}, 225},
		{"untracked down changes nothing", 100, []string{"other"}, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := func(vs string) bool {
				for _, d := range tc.down {
					if d == vs {
						return false
					}
				}
				return true
			}
			if got := Priority(tc.base, VirtualServersLowered(tracked, up)); got != tc.want {
				t.Errorf("Priority = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestLinkState(t *testing.T) {
	s := LinkState{"eth0": true, "eth1": false}
	if s.AllUp() || len(s.Down()) != 1 || s.Down()[0] != "eth1" {
		t.Errorf("AllUp %v Down %v", s.AllUp(), s.Down())
	}
	if !(LinkState{"eth0": true}).AllUp() || !(LinkState{}).AllUp() {
		t.Error("all-up states reported down")
	}
}

func TestLinkEffect(t *testing.T) {
	weighted := []conf.TrackInterface{{Name: "eth1", Weight: 20}, {Name: "eth2", Weight: 30}}
	tests := []struct {
		name        string
		down        []string
		wantFault   bool
		wantLowered int
	}{
		{"all up", nil, false, 0},
		{"a faulting link down", []string{"eth0"}, true, 0},
		{"one weighted link down", []string{"eth2"}, false, 30},
		{"both weighted down", []string{"eth1", "eth2"}, false, 50},
		{"everything down", []string{"eth0", "eth1", "eth2"}, true, 50},
		{"an untracked link down", []string{"eth9"}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fault, lowered := LinkEffect([]string{"eth0"}, weighted, tc.down)
			if fault != tc.wantFault || lowered != tc.wantLowered {
				t.Errorf("LinkEffect(%v) = %v, %d; want %v, %d", tc.down, fault, lowered, tc.wantFault, tc.wantLowered)
			}
		})
	}
	in := conf.VRRPInstance{TrackInterfaces: []string{"eth0", "eth1"}, TrackInterfaceWeights: weighted}
	if got := LinkNames(in); !slices.Equal(got, []string{"eth0", "eth1", "eth2"}) {
		t.Errorf("LinkNames = %v, want eth0 eth1 eth2 once each", got)
	}
}
