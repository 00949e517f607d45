package ipvs_test

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
)

var addrOpt = cmpopts.EquateComparable(netip.Addr{})

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }

// rs builds a real server with weight w and no forwarding override.
func rs(addr string, w int) conf.RealServer {
	return conf.RealServer{Address: ap(addr), Weight: w}
}

// natVS is a resolved NAT virtual server as conf.Load would produce it.
func natVS(name, addr string, servers ...conf.RealServer) conf.VirtualServer {
	a := ap(addr)
	fam := "inet"
	if a.Addr().Is6() {
		fam = "inet6"
	}
	mask := 32
	if fam == "inet6" {
		mask = 128
	}
	for i := range servers {
		if servers[i].Forwarding == "" {
			servers[i].Forwarding = "nat"
		}
	}
	return conf.VirtualServer{
		Name: name, Address: a, Family: fam, Protocol: "tcp", Scheduler: "rr",
		Forwarding: "nat", PersistenceNetmask: mask, OnDown: "weight0",
		SorryWeight: 1, Quorum: 1, RealServers: servers,
	}
}

func cfgOf(vss ...conf.VirtualServer) *conf.Config {
	return &conf.Config{VirtualServers: vss}
}

// downSet marks the listed real servers down, every other up.
func downSet(down ...string) func(string, netip.AddrPort) bool {
	m := map[netip.AddrPort]bool{}
	for _, d := range down {
		m[ap(d)] = true
	}
	return func(_ string, rs netip.AddrPort) bool { return !m[rs] }
}

func TestNetmask4IsNetworkOrderInMemory(t *testing.T) {
	// The kernel reads the attribute as __be32 and moby writes the field
	// with the host's byte order, so the bytes in memory must be the mask
	// in network order whatever the host.
	for _, tc := range []struct {
		plen int
		want [4]byte
	}{
		{32, [4]byte{255, 255, 255, 255}},
		{24, [4]byte{255, 255, 255, 0}},
		{16, [4]byte{255, 255, 0, 0}},
		{1, [4]byte{128, 0, 0, 0}},
		{0, [4]byte{0, 0, 0, 0}},
	} {
		var got [4]byte
		binary.NativeEndian.PutUint32(got[:], ipvs.Netmask4(tc.plen))
		if got != tc.want {
			t.Errorf("Netmask4(%d) bytes = %v, want %v", tc.plen, got, tc.want)
		}
	}
}

func TestDesired(t *testing.T) {
	drVS := natVS("dr", "10.0.0.1:80", rs("10.0.1.1:0", 1), rs("10.0.1.2:8080", 1), conf.RealServer{Address: ap("10.0.1.3:0"), Weight: 1, Forwarding: "tun"})
	drVS.Forwarding = "dr"
	for i := range drVS.RealServers {
		if drVS.RealServers[i].Forwarding == "nat" {
			drVS.RealServers[i].Forwarding = "dr"
		}
	}

	persist := natVS("p", "10.0.0.1:443", rs("10.0.1.1:443", 1))
	persist.Persistence = 1500 * time.Millisecond
	persist.PersistenceNetmask = 24

	persist6 := natVS("p6", "[2001:db8::1]:443", rs("[2001:db8::10]:443", 3))
	persist6.Persistence = 300 * time.Second
	persist6.PersistenceNetmask = 64

	udp := natVS("dns", "10.0.0.1:53", rs("10.0.1.1:53", 1))
	udp.Protocol, udp.OnePacket = "udp", true
	udp.Scheduler, udp.SchedulerFlags = "sh", []string{"sh-port", "sh-fallback"}

	mh := natVS("mh", "10.0.0.1:80", rs("10.0.1.1:80", 1))
	mh.Protocol, mh.Scheduler, mh.SchedulerFlags = "sctp", "mh", []string{"mh-port"}

	fwm := conf.VirtualServer{
		Name: "fwmark:7", FWMark: 7, Family: "inet", Protocol: "tcp", Scheduler: "wlc",
		Forwarding: "dr", PersistenceNetmask: 32, OnDown: "weight0", SorryWeight: 1, Quorum: 1,
		RealServers: []conf.RealServer{{Address: ap("10.0.1.1:0"), Weight: 2, Forwarding: "dr"}},
	}
	fwm6 := fwm
	fwm6.Name, fwm6.Family, fwm6.PersistenceNetmask = "fwmark:7/inet6", "inet6", 128
	fwm6.RealServers = []conf.RealServer{{Address: ap("[2001:db8::10]:0"), Weight: 2, Forwarding: "dr"}}

	thresh := natVS("t", "10.0.0.1:80", conf.RealServer{Address: ap("10.0.1.1:80"), Weight: 5, Forwarding: "nat", UpperThreshold: 100, LowerThreshold: 50})

	removeVS := natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 2), rs("10.0.1.2:80", 3))
	removeVS.OnDown = "remove"

	sorry := natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 2), rs("10.0.1.2:80", 3))
	sorry.SorryServer, sorry.SorryWeight = ap("10.0.9.9:8080"), 7

	// Quorum 4 of weights 2+3: one server down puts the service below
	// quorum, and the sorry server replaces the one still up.
	quorum := sorry
	quorum.Quorum = 4
	quorumRemove := quorum
	quorumRemove.OnDown = "remove"
	selfSorry := natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 2), rs("10.0.1.2:80", 3))
	selfSorry.SorryServer, selfSorry.SorryWeight, selfSorry.Quorum = ap("10.0.1.1:80"), 7, 4

	standby := sorry
	standby.SorryInhibit = true

	mixed := natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 2), rs("10.0.1.2:80", 3))
	mixed.RealServers[1].OnDown = "remove"

	masq := func(a string, w int) ipvs.Destination {
		p := ap(a)
		return ipvs.Destination{Address: p.Addr(), Port: p.Port(), Weight: w}
	}
	tcp4 := func(name, addr, sched string, d ...ipvs.Destination) ipvs.Service {
		p := ap(addr)
		return ipvs.Service{Name: name, Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: p.Addr(), Port: p.Port(),
			Scheduler: sched, Netmask: 0xffffffff, Destinations: d}
	}

	tests := []struct {
		name string
		vs   conf.VirtualServer
		up   func(string, netip.AddrPort) bool
		want ipvs.Service
	}{
		{
			name: "all up get configured weights",
			vs:   natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 2), rs("10.0.1.2:81", 3)),
			want: tcp4("web", "10.0.0.1:80", "rr", masq("10.0.1.1:80", 2), masq("10.0.1.2:81", 3)),
		},
		{
			name: "down server drained to weight 0",
			vs:   natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 2), rs("10.0.1.2:80", 3)),
			up:   downSet("10.0.1.2:80"),
			want: tcp4("web", "10.0.0.1:80", "rr", masq("10.0.1.1:80", 2), masq("10.0.1.2:80", 0)),
		},
		{
			name: "down server removed with on_down remove",
			vs:   removeVS,
			up:   downSet("10.0.1.2:80"),
			want: tcp4("web", "10.0.0.1:80", "rr", masq("10.0.1.1:80", 2)),
		},
		{
			name: "sorry_inhibit keeps an unused sorry server at weight 0",
			vs:   standby,
			want: tcp4("web", "10.0.0.1:80", "rr", masq("10.0.1.1:80", 2), masq("10.0.1.2:80", 3),
				ipvs.Destination{Address: ip("10.0.9.9"), Port: 8080, Weight: 0, Sorry: true, Standby: true}),
		},
		{
			name: "sorry_inhibit: a serving sorry server has its weight",
			vs:   standby,
			up:   downSet("10.0.1.1:80", "10.0.1.2:80"),
			want: tcp4("web", "10.0.0.1:80", "rr", masq("10.0.1.1:80", 0), masq("10.0.1.2:80", 0),
				ipvs.Destination{Address: ip("10.0.9.9"), Port: 8080, Weight: 7, Sorry: true}),
		},
		{
			name: "a real server's own on_down overrides the service's",
			vs:   mixed,
			up:   downSet("10.0.1.1:80", "10.0.1.2:80"),
			want: tcp4("web", "10.0.0.1:80", "rr", masq("10.0.1.1:80", 0)),
		},
		{
			name: "sorry server absent while quorum holds",
			vs:   sorry,
			up:   downSet("10.0.1.2:80"),
			want: tcp4("web", "10.0.0.1:80", "rr", masq("10.0.1.1:80", 2), masq("10.0.1.2:80", 0)),
		},
		{
			name: "sorry server added when all down, real servers kept at 0",
			vs:   sorry,
			up:   downSet("10.0.1.1:80", "10.0.1.2:80"),
			want: tcp4("web", "10.0.0.1:80", "rr", masq("10.0.1.1:80", 0), masq("10.0.1.2:80", 0),
				ipvs.Destination{Address: ip("10.0.9.9"), Port: 8080, Weight: 7, Sorry: true}),
		},
		{
			name: "below quorum the sorry server replaces the servers still up",
			vs:   quorum,
			up:   downSet("10.0.1.2:80"),
			want: tcp4("web", "10.0.0.1:80", "rr", masq("10.0.1.1:80", 0), masq("10.0.1.2:80", 0),
				ipvs.Destination{Address: ip("10.0.9.9"), Port: 8080, Weight: 7, Sorry: true}),
		},
		{
			name: "below quorum with on_down remove only the sorry server is left",
			vs:   quorumRemove,
			up:   downSet("10.0.1.2:80"),
			want: tcp4("web", "10.0.0.1:80", "rr", ipvs.Destination{Address: ip("10.0.9.9"), Port: 8080, Weight: 7, Sorry: true}),
		},
		{
			name: "a sorry server that is also a real server serves with the sorry weight",
			vs:   selfSorry,
			up:   downSet("10.0.1.2:80"),
			want: tcp4("web", "10.0.0.1:80", "rr", ipvs.Destination{Address: ip("10.0.1.1"), Port: 80, Weight: 7, Sorry: true}, masq("10.0.1.2:80", 0)),
		},
		{
			name: "direct routing and tunnel use the service port",
			vs:   drVS,
			want: tcp4("dr", "10.0.0.1:80", "rr",
				ipvs.Destination{Address: ip("10.0.1.1"), Port: 80, Weight: 1, Forwarding: ipvs.ForwardDirectRoute},
				ipvs.Destination{Address: ip("10.0.1.2"), Port: 80, Weight: 1, Forwarding: ipvs.ForwardDirectRoute},
				ipvs.Destination{Address: ip("10.0.1.3"), Port: 80, Weight: 1, Forwarding: ipvs.ForwardTunnel}),
		},
		{
			name: "persistence rounds up and sets the flag and mask",
			vs:   persist,
			want: func() ipvs.Service {
				s := tcp4("p", "10.0.0.1:443", "rr", masq("10.0.1.1:443", 1))
				s.Flags, s.Timeout, s.Netmask = ipvs.FlagPersistent, 2, ipvs.Netmask4(24)
				return s
			}(),
		},
		{
			name: "IPv6 persistence netmask is the prefix length",
			vs:   persist6,
			want: ipvs.Service{Name: "p6", Family: unix.AF_INET6, Protocol: unix.IPPROTO_TCP, Address: ip("2001:db8::1"), Port: 443,
				Scheduler: "rr", Flags: ipvs.FlagPersistent, Timeout: 300, Netmask: 64,
				Destinations: []ipvs.Destination{masq("[2001:db8::10]:443", 3)}},
		},
		{
			name: "one packet and sh flags",
			vs:   udp,
			want: ipvs.Service{Name: "dns", Family: unix.AF_INET, Protocol: unix.IPPROTO_UDP, Address: ip("10.0.0.1"), Port: 53,
				Scheduler: "sh", Flags: ipvs.FlagOnePacket | ipvs.FlagSHPort | ipvs.FlagSHFallback, Netmask: 0xffffffff,
				Destinations: []ipvs.Destination{masq("10.0.1.1:53", 1)}},
		},
		{
			name: "mh-port alone is SCHED2",
			vs:   mh,
			want: ipvs.Service{Name: "mh", Family: unix.AF_INET, Protocol: unix.IPPROTO_SCTP, Address: ip("10.0.0.1"), Port: 80,
				Scheduler: "mh", Flags: ipvs.FlagSched2, Netmask: 0xffffffff,
				Destinations: []ipvs.Destination{masq("10.0.1.1:80", 1)}},
		},
		{
			name: "fwmark service has no address, port or protocol",
			vs:   fwm,
			want: ipvs.Service{Name: "fwmark:7", Family: unix.AF_INET, FWMark: 7, Scheduler: "wlc", Netmask: 0xffffffff,
				Destinations: []ipvs.Destination{{Address: ip("10.0.1.1"), Port: 0, Weight: 2, Forwarding: ipvs.ForwardDirectRoute}}},
		},
		{
			name: "fwmark inet6",
			vs:   fwm6,
			want: ipvs.Service{Name: "fwmark:7/inet6", Family: unix.AF_INET6, FWMark: 7, Scheduler: "wlc", Netmask: 128,
				Destinations: []ipvs.Destination{{Address: ip("2001:db8::10"), Weight: 2, Forwarding: ipvs.ForwardDirectRoute}}},
		},
		{
			name: "thresholds pass through",
			vs:   thresh,
			want: tcp4("t", "10.0.0.1:80", "rr", ipvs.Destination{Address: ip("10.0.1.1"), Port: 80, Weight: 5, UpperThreshold: 100, LowerThreshold: 50}),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ipvs.Desired(cfgOf(tc.vs), tc.up)
			if diff := cmp.Diff([]ipvs.Service{tc.want}, got, addrOpt); diff != "" {
				t.Errorf("Desired (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredUpFuncSeesNames(t *testing.T) {
	// Health is keyed by virtual server name and configured address: the
	// same real server can be up for one service and down for another.
	a := natVS("a", "10.0.0.1:80", rs("10.0.1.1:80", 1))
	b := natVS("b", "10.0.0.2:80", rs("10.0.1.1:80", 1))
	up := func(vs string, _ netip.AddrPort) bool { return vs == "a" }
	got := ipvs.Desired(cfgOf(a, b), up)
	if got[0].Destinations[0].Weight != 1 || got[1].Destinations[0].Weight != 0 {
		t.Errorf("weights = %d, %d; want 1, 0", got[0].Destinations[0].Weight, got[1].Destinations[0].Weight)
	}
}

func TestSorryHysteresis(t *testing.T) {
	// Five real servers of weight 1, quorum 3, hysteresis 2: the sorry
	// server comes in below 3 up and leaves only at 5 up.
	var servers []conf.RealServer
	for i := 1; i <= 5; i++ {
		servers = append(servers, rs(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 80).String(), 1))
	}
	vs := natVS("web", "10.0.0.1:80", servers...)
	vs.SorryServer, vs.Quorum, vs.Hysteresis = ap("10.0.9.9:80"), 3, 2
	cfg := cfgOf(vs)
	upCount := func(n int) func(string, netip.AddrPort) bool {
		return func(_ string, rs netip.AddrPort) bool { return int(rs.Addr().As4()[3]) <= n }
	}

	steps := []struct {
		up        int
		wantSorry bool
	}{
		{5, false},
		{3, false}, // at quorum: fine
		{2, true},  // below quorum
		{3, true},  // back at quorum but inside the hysteresis band
		{4, true},
		{5, false}, // quorum+hysteresis reached
		{4, false}, // no longer active: only < quorum brings it back
		{3, false},
		{2, true},
		{0, true},
	}
	var a ipvs.SorryMemory
	for i, st := range steps {
		got := a.Desired(cfg, upCount(st.up))
		if g := got[0].SorryActive(); g != st.wantSorry {
			t.Fatalf("step %d (%d up): sorry active = %v, want %v", i, st.up, g, st.wantSorry)
		}
		if a.SorryActive("web") != st.wantSorry {
			t.Fatalf("step %d: SorryMemory did not record the decision", i)
		}
		// The pure function gives the same answer from the same memory.
		prev := i > 0 && steps[i-1].wantSorry
		pure := ipvs.DesiredFrom(cfg, upCount(st.up), func(string) bool { return prev })
		if diff := cmp.Diff(got, pure, addrOpt); diff != "" {
			t.Fatalf("step %d: SorryMemory and DesiredFrom differ:\n%s", i, diff)
		}
	}

	// Without memory (Desired), the band does not exist.
	if ipvs.Desired(cfg, upCount(4))[0].SorryActive() {
		t.Error("Desired without memory kept the sorry server at 4 up (quorum 3)")
	}
}

func TestSorryMemoryForgetsRemovedServers(t *testing.T) {
	vs := natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 1))
	vs.SorryServer = ap("10.0.9.9:80")
	var a ipvs.SorryMemory
	a.Desired(cfgOf(vs), downSet("10.0.1.1:80"))
	if !a.SorryActive("web") {
		t.Fatal("sorry server not active with all down")
	}
	a.Desired(cfgOf(), nil)
	if a.SorryActive("web") {
		t.Error("decision kept for a virtual server no longer configured")
	}
}

// TestDesiredWeighted: a weight a check asked for replaces the configured
// one while the server is up, and the quorum counts it.
func TestDesiredWeighted(t *testing.T) {
	vs := natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 1), rs("10.0.1.2:80", 1))
	vs.SorryServer, vs.SorryWeight, vs.Quorum = ap("10.0.9.9:80"), 1, 3
	weight := func(_ string, r netip.AddrPort) (int, bool) {
		if r == ap("10.0.1.1:80") {
			return 5, true
		}
		return 0, false
	}
	got := ipvs.DesiredWeighted(cfgOf(vs), nil, weight, nil)
	ws := map[string]int{}
	for _, d := range got[0].Destinations {
		ws[d.String()] = d.Weight
	}
	if ws["10.0.1.1:80"] != 5 || ws["10.0.1.2:80"] != 1 || got[0].SorryActive() {
		t.Errorf("weights %v, sorry %v; want 5 and 1, and quorum 3 met by 5+1", ws, got[0].SorryActive())
	}
	// Down, the dynamic weight no longer counts: 1 < 3 brings the sorry server.
	down := func(_ string, r netip.AddrPort) bool { return r != ap("10.0.1.1:80") }
	if got := ipvs.DesiredWeighted(cfgOf(vs), down, weight, nil); !got[0].SorryActive() {
		t.Errorf("with the weighted server down the sorry server is not active: %+v", got[0].Destinations)
	}
}
