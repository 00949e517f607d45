package cluster

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConsensus(t *testing.T) {
	up, down, unk := HealthUp, HealthDown, HealthUnknown
	seen := func(hs ...Health) []Seen {
		var out []Seen
		for i, h := range hs {
			out = append(out, Seen{Director: string(rune('a' + i)), Health: h}) // self is "a"
		}
		return out
	}
	tests := []struct {
		name   string
		mode   string
		seen   []Seen
		want   bool
		wantVs string
	}{
		{"local: only this director's view counts", ConsensusLocal, seen(down, up, up), true, "1 of 3 see it down (a=down b=up c=up)"},
		{"local: others seeing it down drain nothing", ConsensusLocal, seen(up, down, down), false, "2 of 3 see it down (a=up b=down c=down)"},
		{"local: no own view is not down", ConsensusLocal, seen(unk, down), false, "1 of 1 see it down (a=unknown b=down)"},
		{"any: one other director suffices", ConsensusAny, seen(up, up, down), true, "1 of 3 see it down (a=up b=up c=down)"},
		{"any: all up", ConsensusAny, seen(up, up, up), false, "0 of 3 see it down (a=up b=up c=up)"},
		{"quorum: one broken path of three keeps it up", ConsensusQuorum, seen(down, up, up), false, "1 of 3 see it down (a=down b=up c=up)"},
		{"quorum: two of three drain it", ConsensusQuorum, seen(up, down, down), true, "2 of 3 see it down (a=up b=down c=down)"},
		{"quorum: one of two is no majority", ConsensusQuorum, seen(down, up), false, "1 of 2 see it down (a=down b=up)"},
		{"quorum: both of two", ConsensusQuorum, seen(down, down), true, "2 of 2 see it down (a=down b=down)"},
		{"quorum: two of four is no majority", ConsensusQuorum, seen(down, down, up, up), false, "2 of 4 see it down (a=down b=down c=up d=up)"},
		{"quorum: directors without a view do not vote", ConsensusQuorum, seen(down, unk, unk), true, "1 of 1 see it down (a=down b=unknown c=unknown)"},
		{"quorum: alone, its own view decides", ConsensusQuorum, seen(down), true, "1 of 1 see it down (a=down)"},
		{"unknown mode decides as local", "bogus", seen(up, down, down), false, "2 of 3 see it down (a=up b=down c=down)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Reversed input: the verdict must not depend on the order
			// gossip delivered the views in.
			in := make([]Seen, len(tt.seen))
			for i, s := range tt.seen {
				in[len(in)-1-i] = s
			}
			v := Consensus(tt.mode, "a", in)
			if v.Down != tt.want || v.String() != tt.wantVs {
				t.Errorf("Consensus = down %t %q, want down %t %q", v.Down, v.String(), tt.want, tt.wantVs)
			}
		})
	}
}

func TestDriftOf(t *testing.T) {
	digests := func(config byte, vs, inst map[string]Short) Digests {
		return Digests{Config: [32]byte{config}, VirtualServers: vs, Instances: inst}
	}
	self := Director{Name: "lb1", Self: true, Alive: true, ConfigDigest: [32]byte{1},
		Digests: digests(1, map[string]Short{"web": {1}, "dns": {2}}, map[string]Short{"vi1": {3}})}
	dir := func(name string, alive bool, d Digests) Director {
		return Director{Name: name, Alive: alive, ConfigDigest: d.Config, Digests: d}
	}
	tests := []struct {
		name   string
		others []Director
		want   []Drift
	}{
		{"same config", []Director{dir("lb2", true, self.Digests)}, nil},
		{"a changed virtual server and an extra one", []Director{
			dir("lb2", true, digests(2, map[string]Short{"web": {9}, "dns": {2}, "mail": {4}}, map[string]Short{"vi1": {3}})),
		}, []Drift{{Director: "lb2", VirtualServers: []string{"mail", "web"}, Named: true}}},
		{"a missing instance", []Director{
			dir("lb3", true, digests(3, map[string]Short{"web": {1}, "dns": {2}}, map[string]Short{})),
		}, []Drift{{Director: "lb3", Instances: []string{"vi1"}, Named: true}}},
		{"only something unnamed differs", []Director{
			dir("lb2", true, digests(2, self.Digests.VirtualServers, self.Digests.Instances)),
		}, []Drift{{Director: "lb2", Named: true}}},
		{"per-object digests not yet pushed", []Director{
			{Name: "lb2", Alive: true, ConfigDigest: [32]byte{2}},
		}, []Drift{{Director: "lb2"}}},
		{"per-object digests of an older config are not named", []Director{
			{Name: "lb2", Alive: true, ConfigDigest: [32]byte{3}, Digests: digests(2, map[string]Short{"web": {9}}, map[string]Short{})},
		}, []Drift{{Director: "lb2"}}},
		{"dead directors and ones without meta are not reported", []Director{
			dir("lb2", false, digests(2, nil, nil)),
			{Name: "lb3", Alive: true},
		}, nil},
		{"several, sorted", []Director{
			dir("lb3", true, digests(3, map[string]Short{"web": {1}, "dns": {2}}, map[string]Short{"vi1": {4}})),
			dir("lb2", true, digests(2, map[string]Short{"web": {1}}, map[string]Short{"vi1": {3}})),
		}, []Drift{{Director: "lb2", VirtualServers: []string{"dns"}, Named: true}, {Director: "lb3", Instances: []string{"vi1"}, Named: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, DriftOf(self, tt.others)); d != "" {
				t.Errorf("DriftOf (-want +got):\n%s", d)
			}
		})
	}
}

func TestSplitBrain(t *testing.T) {
	ip := netip.MustParseAddr
	inst := func(name string, vrid uint8, st VRRPState, prio uint8, addr string) Instance {
		in := Instance{Name: name, VRID: vrid, State: st, Priority: prio}
		if addr != "" {
			in.Addr = ip(addr)
		}
		return in
	}
	dir := func(name, gossip string, alive bool, ins ...Instance) Director {
		return Director{Name: name, Addr: netip.AddrPortFrom(ip(gossip), 7946), Alive: alive, Instances: ins}
	}
	tests := []struct {
		name      string
		dirs      []Director
		want      []SplitBrain
		wantYield map[string]bool // director → gives up master, for the first split brain
	}{
		{"one master, one backup", []Director{
			dir("lb1", "10.0.0.1", true, inst("vi1", 51, StateMaster, 150, "192.0.2.1")),
			dir("lb2", "10.0.0.2", true, inst("vi1", 51, StateBackup, 100, "192.0.2.2")),
		}, nil, nil},
		{"two masters: the lower priority yields", []Director{
			dir("lb1", "10.0.0.1", true, inst("vi1", 51, StateMaster, 100, "192.0.2.9")),
			dir("lb2", "10.0.0.2", true, inst("vi1", 51, StateMaster, 150, "192.0.2.2")),
		}, []SplitBrain{{Instance: "vi1", VRID: 51, Masters: []Claim{{"lb2", 150, ip("192.0.2.2")}, {"lb1", 100, ip("192.0.2.9")}}}},
			map[string]bool{"lb1": true, "lb2": false}},
		{"equal priority: the lower address yields", []Director{
			dir("lb1", "10.0.0.1", true, inst("vi1", 51, StateMaster, 100, "192.0.2.1")),
			dir("lb2", "10.0.0.2", true, inst("vi1", 51, StateMaster, 100, "192.0.2.2")),
		}, []SplitBrain{{Instance: "vi1", VRID: 51, Masters: []Claim{{"lb2", 100, ip("192.0.2.2")}, {"lb1", 100, ip("192.0.2.1")}}}},
			map[string]bool{"lb1": true, "lb2": false}},
		{"no advert address: the gossip address breaks the tie", []Director{
			dir("lb1", "10.0.0.9", true, inst("vi1", 51, StateMaster, 100, "")),
			dir("lb2", "10.0.0.2", true, inst("vi1", 51, StateMaster, 100, "")),
		}, []SplitBrain{{Instance: "vi1", VRID: 51, Masters: []Claim{{"lb1", 100, ip("10.0.0.9")}, {"lb2", 100, ip("10.0.0.2")}}}},
			map[string]bool{"lb1": false, "lb2": true}},
		{"three masters: all but the best yield", []Director{
			dir("lb1", "10.0.0.1", true, inst("vi1", 51, StateMaster, 120, "192.0.2.1")),
			dir("lb2", "10.0.0.2", true, inst("vi1", 51, StateMaster, 130, "192.0.2.2")),
			dir("lb3", "10.0.0.3", true, inst("vi1", 51, StateMaster, 110, "192.0.2.3")),
		}, []SplitBrain{{Instance: "vi1", VRID: 51, Masters: []Claim{{"lb2", 130, ip("192.0.2.2")}, {"lb1", 120, ip("192.0.2.1")}, {"lb3", 110, ip("192.0.2.3")}}}},
			map[string]bool{"lb1": true, "lb2": false, "lb3": true, "lb9": false}},
		{"a dead director's stale master does not count", []Director{
			dir("lb1", "10.0.0.1", true, inst("vi1", 51, StateMaster, 100, "192.0.2.1")),
			dir("lb2", "10.0.0.2", false, inst("vi1", 51, StateMaster, 150, "192.0.2.2")),
		}, nil, nil},
		{"same VRID, different instances (another link) are no split brain", []Director{
			dir("lb1", "10.0.0.1", true, inst("vi1", 51, StateMaster, 100, "192.0.2.1")),
			dir("lb2", "10.0.0.2", true, inst("other", 51, StateMaster, 100, "198.51.100.2")),
		}, nil, nil},
		{"IPv4 and IPv6 of one VRID are separate routers", []Director{
			dir("lb1", "10.0.0.1", true, inst("vi1", 51, StateMaster, 100, "192.0.2.1")),
			dir("lb2", "10.0.0.2", true, Instance{Name: "vi1", VRID: 51, IPv6: true, State: StateMaster, Priority: 100, Addr: ip("fe80::2")}),
		}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SplitBrains(tt.dirs)
			if d := cmp.Diff(tt.want, got, cmpAddrs); d != "" {
				t.Fatalf("SplitBrains (-want +got):\n%s", d)
			}
			for who, want := range tt.wantYield {
				if y := ShouldYield(got[0], who); y != want {
					t.Errorf("ShouldYield(%s) = %t, want %t", who, y, want)
				}
			}
		})
	}
}
