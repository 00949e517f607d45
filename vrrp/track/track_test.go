package track

import (
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
