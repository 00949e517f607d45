package conf

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestVRRPGood(t *testing.T) {
	text := `
[[virtual_server]]
name = "web"
address = "192.0.2.1:80"

[[vrrp_instance]]
name = "vi1"
interface = "eth0"
router_id = 51
virtual_ips = ["192.0.2.100/24", "192.0.2.101"]
track_interfaces = ["eth1"]
notify_master = ["/etc/lvsha/master.sh", "x"]
  [[vrrp_instance.track_virtual_server]]
  name = "web"
  weight = 20
  [[vrrp_instance.track_interface]]
  name = "eth2"
  weight = 40
  [[vrrp_instance.track_exec]]
  name = "haproxy"
  [[vrrp_instance.track_exec]]
  name = "disk"
  weight = 30

[[track_exec]]
name = "haproxy"
command = ["/usr/bin/pgrep", "haproxy"]

[[track_exec]]
name = "disk"
command = ["/usr/local/bin/disk-ok"]
interval = "5s"
timeout = "2s"
rise = 2
fall = 3
init_fail = true

[[vrrp_instance]]
name = "vi2"
interface = "eth0"
router_id = 52
version = 2
priority = 150
advert_interval = "2s"
preempt = false
auth_pass = "secret12"
unicast_src = "192.0.2.2"
unicast_peers = ["192.0.2.3"]
virtual_ips = ["192.0.2.102/24"]
vip_holder = "interface"
garp_interval = "5ms"
bfd = false
track_own_interface = false

[[vrrp_instance]]
name = "vi6"
interface = "eth0"
router_id = 51
virtual_ips = ["2001:db8::100/64"]
bfd = { interval = "20ms", multiplier = 3 }

[[vrrp_sync_group]]
name = "g"
instances = ["vi1", "vi6"]
`
	c, err := Parse("v.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []VRRPInstance{
		{Name: "vi1", Interface: "eth0", RouterID: 51, Priority: 100, Version: 3, AdvertInterval: 100 * time.Millisecond,
			Preempt: true, Accept: true, VIPHolder: "tun", GARPRepeat: 5, SplitBrain: "report", TrackOwnInterface: true,
			VirtualIPs:            []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24"), netip.MustParsePrefix("192.0.2.101/32")},
			TrackInterfaces:       []string{"eth1"},
			TrackVirtualServers:   []TrackVirtualServer{{Name: "web", Weight: 20}},
			TrackInterfaceWeights: []TrackInterface{{Name: "eth2", Weight: 40}},
			TrackExecs:            []TrackExecRef{{Name: "haproxy", Weight: 0}, {Name: "disk", Weight: 30}},
			Notify:                Notify{Master: []string{"/etc/lvsha/master.sh", "x"}, Timeout: 10 * time.Second},
			BFD:                   &BFD{Interval: 10 * time.Millisecond, Multiplier: 5}},
		{Name: "vi2", Interface: "eth0", RouterID: 52, Priority: 150, Version: 2, AdvertInterval: 2 * time.Second,
			Preempt: false, Accept: true, VIPHolder: "interface", GARPRepeat: 5, SplitBrain: "report", GARPInterval: 5 * time.Millisecond, AuthPass: "secret12",
			UnicastSrc: netip.MustParseAddr("192.0.2.2"), UnicastPeers: []netip.Addr{netip.MustParseAddr("192.0.2.3")},
			VirtualIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.102/24")},
			Notify:     Notify{Timeout: 10 * time.Second}},
		{Name: "vi6", Interface: "eth0", RouterID: 51, Priority: 100, Version: 3, AdvertInterval: 100 * time.Millisecond,
			Preempt: true, Accept: true, VIPHolder: "tun", GARPRepeat: 5, SplitBrain: "report", TrackOwnInterface: true,
			VirtualIPs: []netip.Prefix{netip.MustParsePrefix("2001:db8::100/64")},
			Notify:     Notify{Timeout: 10 * time.Second},
			BFD:        &BFD{Interval: 20 * time.Millisecond, Multiplier: 3}},
	}
	if d := cmp.Diff(want, c.VRRPInstances, cmpOpts...); d != "" {
		t.Errorf("instances (-want +got):\n%s", d)
	}
	wantExecs := []TrackExec{
		{Name: "haproxy", Command: []string{"/usr/bin/pgrep", "haproxy"}, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1},
		{Name: "disk", Command: []string{"/usr/local/bin/disk-ok"}, Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3, InitFail: true},
	}
	if d := cmp.Diff(wantExecs, c.TrackExecs); d != "" {
		t.Errorf("track_exec (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]SyncGroup{{Name: "g", Instances: []string{"vi1", "vi6"}}}, c.SyncGroups); d != "" {
		t.Errorf("sync groups (-want +got):\n%s", d)
	}
}

func TestVRRPBad(t *testing.T) {
	head := "[[vrrp_instance]]\nname = \"a\"\ninterface = \"eth0\"\nrouter_id = 1\n"
	tests := []struct{ name, toml, want string }{
		{"missing everything", "[[vrrp_instance]]\n",
			"t.toml:1: vrrp_instance[0].interface: missing (want the interface adverts go out on)\n" +
				"t.toml:1: vrrp_instance[0].name: missing (want a name for the instance)\n" +
				"t.toml:1: vrrp_instance[0].router_id: missing (want the VRID, 1..255, shared by every director of the group)\n" +
				`t.toml:1: vrrp_instance[0].virtual_ips: missing (want the VIPs, e.g. ["192.0.2.10/24"])`},
		{"router_id out of range", "[[vrrp_instance]]\nname = \"a\"\ninterface = \"eth0\"\nrouter_id = 256\nvirtual_ips = [\"192.0.2.1\"]\n",
			"t.toml:4: vrrp_instance[0].router_id: out of range (got 256, want 1..255)"},
		{"v3 interval not centiseconds", head + "virtual_ips = [\"192.0.2.1\"]\nadvert_interval = \"105ms\"\n",
			"t.toml:6: vrrp_instance[0].advert_interval: invalid for VRRP version 3 (got 105ms, want a multiple of 10ms from 10ms to 40.95s)"},
		{"v2 interval not seconds", head + "virtual_ips = [\"192.0.2.1\"]\nversion = 2\nadvert_interval = \"500ms\"\n",
			"t.toml:7: vrrp_instance[0].advert_interval: invalid for VRRP version 2 (got 500ms, want whole seconds from 1s to 255s)"},
		{"v2 with IPv6", head + "virtual_ips = [\"2001:db8::1\"]\nversion = 2\n",
			"t.toml:6: vrrp_instance[0].version: VRRP version 2 carries IPv4 only (got version 2 with IPv6 VIPs, want version 3)"},
		{"auth on v3", head + "virtual_ips = [\"192.0.2.1\"]\nauth_pass = \"x\"\n",
			"t.toml:6: vrrp_instance[0].auth_pass: applies only to VRRP version 2 (version 3 has no authentication, RFC 5798 9)"},
		{"auth_pass as a number is not shown", head + "virtual_ips = [\"192.0.2.1\"]\nversion = 2\nauth_pass = 73915824\n",
			"t.toml:7: vrrp_instance[0].auth_pass: wrong type (got integer, not shown: a secret; want string)"},
		{"mixed families", head + "virtual_ips = [\"192.0.2.1\", \"2001:db8::1\"]\n",
			"t.toml:5: vrrp_instance[0].virtual_ips[1]: mixes address families (got an IPv6 VIP, want an IPv4 one like the first VIP: use one instance per family)"},
		{"bad VIP", head + "virtual_ips = [\"192.0.2.300/24\"]\n",
			`t.toml:5: vrrp_instance[0].virtual_ips[0]: invalid VIP (got "192.0.2.300/24", want "IP" or "IP/prefix" such as "192.0.2.10/24")`},
		{"peer of another family", head + "virtual_ips = [\"192.0.2.1\"]\nunicast_peers = [\"2001:db8::2\"]\n",
			"t.toml:6: vrrp_instance[0].unicast_peers[0]: not of the VIPs' family (got 2001:db8::2, want an IPv4 address)"},
		{"unicast_src without peers", head + "virtual_ips = [\"192.0.2.1\"]\nunicast_src = \"192.0.2.2\"\n",
			"t.toml:6: vrrp_instance[0].unicast_src: needs unicast_peers (want the other directors' addresses)"},
		{"unknown tracked virtual server", head + "virtual_ips = [\"192.0.2.1\"]\n[[vrrp_instance.track_virtual_server]]\nname = \"nope\"\n",
			`t.toml:7: vrrp_instance[0].track_virtual_server[0].name: unknown virtual_server "nope"`},
		{"weighted track_interface without weight", head + "virtual_ips = [\"192.0.2.1\"]\n[[vrrp_instance.track_interface]]\nname = \"eth1\"\n",
			"t.toml:6: vrrp_instance[0].track_interface[0].weight: missing (want 1..254, subtracted from the priority while the interface is down)"},
		{"interface both faulting and weighted", head + "virtual_ips = [\"192.0.2.1\"]\ntrack_interfaces = [\"eth1\"]\n[[vrrp_instance.track_interface]]\nname = \"eth1\"\nweight = 5\n",
			"t.toml:8: vrrp_instance[0].track_interface[0].name: interface eth1 is already in track_interfaces (a fault there; want one or the other)"},
		{"unknown track_exec", head + "virtual_ips = [\"192.0.2.1\"]\n[[vrrp_instance.track_exec]]\nname = \"nope\"\n",
			`t.toml:7: vrrp_instance[0].track_exec[0].name: unknown track_exec "nope"`},
		{"track_exec weight out of range", head + "virtual_ips = [\"192.0.2.1\"]\n[[vrrp_instance.track_exec]]\nname = \"x\"\nweight = 255\n[[track_exec]]\nname = \"x\"\ncommand = [\"/bin/true\"]\n",
			"t.toml:8: vrrp_instance[0].track_exec[0].weight: out of range (got 255, want 0..254)"},
		{"track_exec without command", "[[track_exec]]\nname = \"x\"\n",
			`t.toml:1: track_exec[0].command: missing (want an argv such as ["/usr/local/bin/check", "arg"])`},
		{"track_exec timeout beyond interval", "[[track_exec]]\nname = \"x\"\ncommand = [\"/bin/true\"]\ninterval = \"1s\"\ntimeout = \"2s\"\n",
			"t.toml:5: track_exec[0].timeout: out of range (got 2s, want more than 0s and at most the interval 1s)"},
		{"same router on a link twice", head + "virtual_ips = [\"192.0.2.1\"]\n" + "[[vrrp_instance]]\nname = \"b\"\ninterface = \"eth0\"\nrouter_id = 1\nvirtual_ips = [\"192.0.2.2\"]\n",
			"t.toml:9: vrrp_instance[1].router_id: router_id 1 is already used on interface eth0 for inet VIPs by vrrp_instance[0] at line 1 (want a different router_id per virtual router on a link)"},
		{"unknown instance in group", head + "virtual_ips = [\"192.0.2.1\"]\n[[vrrp_sync_group]]\nname = \"g\"\ninstances = [\"a\", \"zz\"]\n",
			`t.toml:8: vrrp_sync_group[0].instances[1]: unknown vrrp_instance "zz"`},
		{"sync group without instances", head + "virtual_ips = [\"192.0.2.1\"]\n[[vrrp_sync_group]]\nname = \"g\"\n",
			"t.toml:6: vrrp_sync_group[0].instances: missing (want the names of at least one vrrp_instance)"},
		{"garp_interval too long", head + "virtual_ips = [\"192.0.2.1\"]\ngarp_interval = \"2s\"\n",
			"t.toml:6: vrrp_instance[0].garp_interval: too long (got 2s, want at most 1s between two announcements)"},
		{"garp_interval negative", head + "virtual_ips = [\"192.0.2.1\"]\ngarp_interval = \"-1ms\"\n",
			"t.toml:6: vrrp_instance[0].garp_interval: must not be negative (got -1ms, want >= 0s)"},
		{"interface name too long", "[[vrrp_instance]]\nname = \"a\"\ninterface = \"averyveryverylongname\"\nrouter_id = 1\nvirtual_ips = [\"192.0.2.1\"]\n",
			"t.toml:3: vrrp_instance[0].interface: too long for an interface name (got 21 bytes, want at most 15)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tt.toml))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestUniqueNames checks the names other tables refer to: every
// vrrp_instance, vrrp_sync_group and track_exec needs one, not empty, not
// another table's of its kind, and a name of the wrong type is reported as
// that alone.
func TestUniqueNames(t *testing.T) {
	// Each builds one table of its kind whose name line is name = <value>,
	// or none when value is ""; i keeps the other keys of two tables apart.
	instance := func(value string, i int) string {
		return "[[vrrp_instance]]\n" + nameLine(value) +
			fmt.Sprintf("interface = \"eth0\"\nrouter_id = %d\nvirtual_ips = [\"192.0.2.%d\"]\n", i, i)
	}
	group := func(value string, i int) string {
		return fmt.Sprintf("[[vrrp_sync_group]]\n%sinstances = [\"i%d\"]\n", nameLine(value), i)
	}
	exec := func(value string, _ int) string {
		return "[[track_exec]]\n" + nameLine(value) + "command = [\"/bin/true\"]\n"
	}
	// Groups need instances to hold: i1 and i2, on lines 1-5 and 6-10.
	grouped := instance(`"i1"`, 1) + instance(`"i2"`, 2)
	tests := []struct {
		name, toml, want string
	}{
		{"instance without name", instance("", 1),
			"t.toml:1: vrrp_instance[0].name: missing (want a name for the instance)"},
		{"instance with empty name", instance(`""`, 1),
			`t.toml:2: vrrp_instance[0].name: must not be empty (got "")`},
		{"instance name of the wrong type", instance("1", 1),
			"t.toml:2: vrrp_instance[0].name: wrong type (got integer 1, want string)"},
		{"instance name used twice", instance(`"a"`, 1) + instance(`"a"`, 2),
			`t.toml:7: vrrp_instance[1].name: duplicate vrrp_instance name "a" (first used by vrrp_instance[0] at line 1)`},
		{"sync group without name", grouped + group("", 1),
			"t.toml:11: vrrp_sync_group[0].name: missing (want a name for the sync group)"},
		{"sync group with empty name", grouped + group(`""`, 1),
			`t.toml:12: vrrp_sync_group[0].name: must not be empty (got "")`},
		{"sync group name of the wrong type", grouped + group("1", 1),
			"t.toml:12: vrrp_sync_group[0].name: wrong type (got integer 1, want string)"},
		{"sync group name used twice", grouped + group(`"g"`, 1) + group(`"g"`, 2),
			`t.toml:15: vrrp_sync_group[1].name: duplicate vrrp_sync_group name "g" (first used by vrrp_sync_group[0] at line 11)`},
		{"track_exec without name", exec("", 1),
			"t.toml:1: track_exec[0].name: missing (want a name that vrrp_instance track_exec tables refer to)"},
		{"track_exec with empty name", exec(`""`, 1),
			`t.toml:2: track_exec[0].name: must not be empty (got "")`},
		{"track_exec name of the wrong type", exec("1", 1),
			"t.toml:2: track_exec[0].name: wrong type (got integer 1, want string)"},
		{"track_exec name used twice", exec(`"x"`, 1) + exec(`"x"`, 2),
			`t.toml:5: track_exec[1].name: duplicate track_exec name "x" (first used by track_exec[0] at line 1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tt.toml))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func nameLine(value string) string {
	if value == "" {
		return ""
	}
	return "name = " + value + "\n"
}

// TestLVSSync checks the lvs_sync table: what each key becomes, with the
// defaults (the sync id is the router_id, the rest the kernel's), and
// every error at once with its line.
// TestBFD: an instance's "bfd" in each form it takes, and each way it
// is wrong, with its line and what was expected.
func TestBFD(t *testing.T) {
	instance := "[[vrrp_instance]]\nname = \"a\"\ninterface = \"eth0\"\nrouter_id = 1\nvirtual_ips = [\"192.0.2.1\"]\n"
	def := DefaultBFD()
	good := []struct {
		name, bfd string
		want      *BFD
	}{
		{"absent: on with the defaults", "", &def},
		{"true: the defaults", "bfd = true\n", &def},
		{"false: off", "bfd = false\n", nil},
		{"empty table: the defaults", "bfd = {}\n", &def},
		{"interval only", "bfd = { interval = \"25ms\" }\n", &BFD{Interval: 25 * time.Millisecond, Multiplier: 5}},
		{"both, as a table", "[vrrp_instance.bfd]\ninterval = \"1s\"\nmultiplier = 255\n", &BFD{Interval: time.Second, Multiplier: 255}},
		{"the least", "bfd = { interval = \"1ms\", multiplier = 2 }\n", &BFD{Interval: time.Millisecond, Multiplier: 2}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(instance+tt.bfd))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, c.VRRPInstances[0].BFD); d != "" {
				t.Errorf("BFD (-want +got):\n%s", d)
			}
		})
	}
	if d := def.DetectionTime(); d != 50*time.Millisecond {
		t.Errorf("default detection time %v, want 50ms", d)
	}
	bad := []struct{ name, bfd, want string }{
		{"interval too short", "bfd = { interval = \"500us\" }\n",
			"t.toml:6: vrrp_instance[0].bfd.interval: out of range (got 500µs, want 1ms..1s)"},
		{"interval too long", "bfd = { interval = \"2s\" }\n",
			"t.toml:6: vrrp_instance[0].bfd.interval: out of range (got 2s, want 1ms..1s)"},
		{"interval not a duration", "bfd = { interval = 10 }\n",
			`t.toml:6: vrrp_instance[0].bfd.interval: wrong type (got integer 10, want duration string such as "1s" or "500ms")`},
		{"multiplier 1", "bfd = { multiplier = 1 }\n",
			"t.toml:6: vrrp_instance[0].bfd.multiplier: out of range (got 1, want 2..255)"},
		{"multiplier 256", "bfd = { multiplier = 256 }\n",
			"t.toml:6: vrrp_instance[0].bfd.multiplier: out of range (got 256, want 2..255)"},
		{"unknown key", "bfd = { intervall = \"10ms\" }\n",
			`t.toml:6: vrrp_instance[0].bfd.intervall: unknown key (did you mean "interval"?)`},
		{"a string", "bfd = \"on\"\n",
			`t.toml:6: vrrp_instance[0].bfd: wrong type (got string "on", want false, true or a table such as { interval = "10ms", multiplier = 5 })`},
		{"every error at once", "[vrrp_instance.bfd]\ninterval = \"0s\"\nmultiplier = 0\n",
			"t.toml:7: vrrp_instance[0].bfd.interval: out of range (got 0s, want 1ms..1s)\n" +
				"t.toml:8: vrrp_instance[0].bfd.multiplier: out of range (got 0, want 2..255)"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(instance+tt.bfd))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestLVSSync(t *testing.T) {
	instance := func(name string, vrid int, sync string) string {
		return fmt.Sprintf("[[vrrp_instance]]\nname = %q\ninterface = \"eth0\"\nrouter_id = %d\nvirtual_ips = [\"192.0.2.%d\"]\n", name, vrid, vrid) + sync
	}
	good := []struct {
		name, sync string
		want       *LVSSync
	}{
		{"absent", "", nil},
		{"defaults", "[vrrp_instance.lvs_sync]\ninterface = \"eth1\"\n",
			&LVSSync{Interface: "eth1", SyncID: 51, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1}},
		{"every key", "[vrrp_instance.lvs_sync]\ninterface = \"bond0.100\"\nsync_id = 0\nmax_len = 1400\ngroup = \"239.1.2.3\"\nport = 9000\nttl = 3\n",
			&LVSSync{Interface: "bond0.100", SyncID: 0, MaxLen: 1400, Group: netip.MustParseAddr("239.1.2.3"), Port: 9000, TTL: 3}},
		{"inline table, IPv6 group at the largest length", "lvs_sync = { interface = \"eth1\", group = \"ff02::81\", max_len = 65487 }\n",
			&LVSSync{Interface: "eth1", SyncID: 51, MaxLen: 65487, Group: netip.MustParseAddr("ff02::81"), Port: 8848, TTL: 1}},
		{"IPv4 group at the largest length", "[vrrp_instance.lvs_sync]\ninterface = \"eth1\"\nmax_len = 65507\nsync_id = 255\nttl = 255\nport = 65535\n",
			&LVSSync{Interface: "eth1", SyncID: 255, MaxLen: 65507, Group: netip.MustParseAddr("224.0.0.81"), Port: 65535, TTL: 255}},
		{"refresh: the hold defaults to one period and the kernel's flush", "[vrrp_instance.lvs_sync]\ninterface = \"eth1\"\nrefresh_period = \"10s\"\n",
			&LVSSync{Interface: "eth1", SyncID: 51, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1,
				RefreshPeriod: 10 * time.Second, PreemptHold: 13 * time.Second}},
		{"refresh without the hold", "[vrrp_instance.lvs_sync]\ninterface = \"eth1\"\nrefresh_period = \"1s\"\npreempt_hold = \"0s\"\n",
			&LVSSync{Interface: "eth1", SyncID: 51, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1, RefreshPeriod: time.Second}},
		{"refresh and hold at their largest", "[vrrp_instance.lvs_sync]\ninterface = \"eth1\"\nrefresh_period = \"10m\"\npreempt_hold = \"15m\"\n",
			&LVSSync{Interface: "eth1", SyncID: 51, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1,
				RefreshPeriod: 10 * time.Minute, PreemptHold: 15 * time.Minute}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(instance("a", 51, tt.sync)))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, c.VRRPInstances[0].LVSSync, cmpOpts...); d != "" {
				t.Errorf("LVSSync (-want +got):\n%s", d)
			}
		})
	}

	// The table's header is line 6.
	sync := func(body string) string { return instance("a", 51, "[vrrp_instance.lvs_sync]\n"+body) }
	bad := []struct{ name, toml, want string }{
		{"no interface", sync("sync_id = 1\n"),
			"t.toml:6: vrrp_instance[0].lvs_sync.interface: missing (want the interface the sync messages go out and come in on)"},
		{"interface name too long", sync("interface = \"averyveryverylongname\"\n"),
			"t.toml:7: vrrp_instance[0].lvs_sync.interface: too long for an interface name (got 21 bytes, want at most 15)"},
		{"interface name with a slash", sync("interface = \"eth0/1\"\n"),
			`t.toml:7: vrrp_instance[0].lvs_sync.interface: invalid interface name (got "eth0/1")`},
		{"sync_id above 255", sync("interface = \"eth1\"\nsync_id = 256\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.sync_id: out of range (got 256, want 0..255)"},
		{"negative sync_id", sync("interface = \"eth1\"\nsync_id = -1\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.sync_id: out of range (got -1, want 0..255)"},
		{"ttl 0", sync("interface = \"eth1\"\nttl = 0\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.ttl: out of range (got 0, want 1..255)"},
		{"ttl 256", sync("interface = \"eth1\"\nttl = 256\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.ttl: out of range (got 256, want 1..255)"},
		{"port 0", sync("interface = \"eth1\"\nport = 0\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.port: out of range (got 0, want 1..65535)"},
		{"port 65536", sync("interface = \"eth1\"\nport = 65536\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.port: out of range (got 65536, want 1..65535)"},
		{"max_len 0", sync("interface = \"eth1\"\nmax_len = 0\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.max_len: out of range (got 0, want 1..65507)"},
		{"max_len beyond a datagram", sync("interface = \"eth1\"\nmax_len = 65508\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.max_len: out of range (got 65508, want 1..65507)"},
		{"max_len beyond an IPv6 datagram", sync("interface = \"eth1\"\ngroup = \"ff02::81\"\nmax_len = 65488\n"),
			"t.toml:9: vrrp_instance[0].lvs_sync.max_len: out of range for an IPv6 group (got 65488, want 1..65487: a UDP datagram less the IPv6 and UDP headers)"},
		{"max_len of the wrong type", sync("interface = \"eth1\"\nmax_len = \"1400\"\n"),
			`t.toml:8: vrrp_instance[0].lvs_sync.max_len: wrong type (got string "1400", want integer)`},
		{"unicast IPv4 group", sync("interface = \"eth1\"\ngroup = \"192.0.2.1\"\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.group: not a multicast address (got 192.0.2.1, want an IPv4 group in 224.0.0.0/4 or an IPv6 one in ff00::/8)"},
		{"unicast IPv6 group", sync("interface = \"eth1\"\ngroup = \"2001:db8::1\"\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.group: not a multicast address (got 2001:db8::1, want an IPv4 group in 224.0.0.0/4 or an IPv6 one in ff00::/8)"},
		{"group not an address", sync("interface = \"eth1\"\ngroup = \"sync.example\"\n"),
			`t.toml:8: vrrp_instance[0].lvs_sync.group: invalid IP address (got "sync.example", want a multicast group such as "224.0.0.81" or "ff02::81")`},
		{"group with a zone", sync("interface = \"eth1\"\ngroup = \"ff02::81%eth1\"\n"),
			`t.toml:8: vrrp_instance[0].lvs_sync.group: IPv6 zones are not supported (got "ff02::81%eth1", want a group without %zone: the interface names the link)`},
		{"IPv4-mapped group", sync("interface = \"eth1\"\ngroup = \"::ffff:239.1.2.3\"\n"),
			`t.toml:8: vrrp_instance[0].lvs_sync.group: IPv4-mapped IPv6 address (got "::ffff:239.1.2.3", want the plain IPv4 form 239.1.2.3)`},
		{"unknown key", sync("interface = \"eth1\"\nsyncid = 3\n"),
			`t.toml:8: vrrp_instance[0].lvs_sync.syncid: unknown key (did you mean "sync_id"?)`},
		{"refresh below a second", sync("interface = \"eth1\"\nrefresh_period = \"500ms\"\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.refresh_period: out of range (got 500ms, want whole seconds in 1s..10m0s: the kernel's sync_refresh_period counts seconds)"},
		{"refresh not whole seconds", sync("interface = \"eth1\"\nrefresh_period = \"1500ms\"\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.refresh_period: out of range (got 1.5s, want whole seconds in 1s..10m0s: the kernel's sync_refresh_period counts seconds)"},
		{"refresh too long", sync("interface = \"eth1\"\nrefresh_period = \"11m\"\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.refresh_period: out of range (got 11m0s, want whole seconds in 1s..10m0s: the kernel's sync_refresh_period counts seconds)"},
		{"hold without refresh", sync("interface = \"eth1\"\npreempt_hold = \"10s\"\n"),
			"t.toml:8: vrrp_instance[0].lvs_sync.preempt_hold: needs refresh_period (got 10s without it: the master announces a connection once, so a returning director would wait in vain for the ones made while it was away)"},
		{"hold too long", sync("interface = \"eth1\"\nrefresh_period = \"10s\"\npreempt_hold = \"16m\"\n"),
			"t.toml:9: vrrp_instance[0].lvs_sync.preempt_hold: too long (got 16m0s, want at most 15m0s)"},
		{"array of tables", instance("a", 51, "[[vrrp_instance.lvs_sync]]\ninterface = \"eth1\"\n"),
			"t.toml:6: vrrp_instance[0].lvs_sync: wrong type (got array of tables, want table)"},
		{"two instances with lvs_sync", sync("interface = \"eth1\"\n") + instance("b", 52, "[vrrp_instance.lvs_sync]\ninterface = \"eth1\"\n"),
			"t.toml:13: vrrp_instance[1].lvs_sync: a second lvs_sync (the first is vrrp_instance[0].lvs_sync at line 6; want one: the kernel runs one master and one backup sync daemon per network namespace)"},
		{"every error at once", sync("sync_id = 300\nttl = 0\nport = 0\ngroup = \"10.0.0.1\"\nmax_len = 70000\n"),
			"t.toml:6: vrrp_instance[0].lvs_sync.interface: missing (want the interface the sync messages go out and come in on)\n" +
				"t.toml:7: vrrp_instance[0].lvs_sync.sync_id: out of range (got 300, want 0..255)\n" +
				"t.toml:8: vrrp_instance[0].lvs_sync.ttl: out of range (got 0, want 1..255)\n" +
				"t.toml:9: vrrp_instance[0].lvs_sync.port: out of range (got 0, want 1..65535)\n" +
				"t.toml:10: vrrp_instance[0].lvs_sync.group: not a multicast address (got 10.0.0.1, want an IPv4 group in 224.0.0.0/4 or an IPv6 one in ff00::/8)\n" +
				"t.toml:11: vrrp_instance[0].lvs_sync.max_len: out of range (got 70000, want 1..65507)"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tt.toml))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}
