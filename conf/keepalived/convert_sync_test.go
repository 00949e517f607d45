package keepalived

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsha/lvsha/conf"
)

// TestConvertLVSSync converts every form of keepalived's sync daemon:
// global_defs' lvs_sync_daemon with each option, the bare sync id of
// older keepalived, bad and missing values, and a vrrp_instance's
// lvs_sync_daemon_interface. Each converted file must pass conf's
// validation (Convert parses it); the table must land in the instance the
// daemon follows, and every part not carried must be reported at its
// line.
func TestConvertLVSSync(t *testing.T) {
	instance := func(name string, vrid int, extra string) string {
		return "vrrp_instance " + name + " {\n    interface eth0\n    virtual_router_id " + strconv.Itoa(vrid) + "\n" + extra +
			"    virtual_ipaddress {\n        192.0.2." + strconv.Itoa(vrid) + "\n    }\n}\n"
	}
	global := func(lines ...string) string {
		return "global_defs {\n    " + strings.Join(lines, "\n    ") + "\n}\n"
	}
	one := instance("VI_1", 51, "")
	group4 := netip.MustParseAddr("239.1.2.3")
	group6 := netip.MustParseAddr("ff02::81")
	kernel := netip.MustParseAddr("224.0.0.81")
	defaults := func(iface string, id int) *conf.LVSSync {
		return &conf.LVSSync{Interface: iface, SyncID: id, Group: kernel, Port: 8848, TTL: 1}
	}

	tests := []struct {
		name string
		in   string
		// want is each instance's LVSSync, by name.
		want map[string]*conf.LVSSync
		// warns are the warnings, each as "line: message".
		warns []string
		// toml, when set, must appear in the output.
		toml string
	}{
		{name: "interface and instance only: the sync id is the virtual_router_id",
			in:   global("lvs_sync_daemon eth1 VI_1") + one,
			want: map[string]*conf.LVSSync{"VI_1": defaults("eth1", 51)},
			toml: "  [vrrp_instance.lvs_sync]\n  # k.conf:2 lvs_sync_daemon eth1 VI_1\n  interface = \"eth1\"\n  # sync_id: the router_id, keepalived's default too\n"},
		{name: "id",
			in:   global("lvs_sync_daemon eth1 VI_1 id 7") + one,
			want: map[string]*conf.LVSSync{"VI_1": defaults("eth1", 7)}},
		{name: "id 0: a backup that takes every id",
			in:   global("lvs_sync_daemon eth1 VI_1 id 0") + one,
			want: map[string]*conf.LVSSync{"VI_1": defaults("eth1", 0)}},
		{name: "every option",
			in:   global("lvs_sync_daemon eth1 VI_1 id 7 maxlen 1400 port 9000 ttl 3 group 239.1.2.3") + one,
			want: map[string]*conf.LVSSync{"VI_1": {Interface: "eth1", SyncID: 7, MaxLen: 1400, Group: group4, Port: 9000, TTL: 3}},
			toml: "  interface = \"eth1\"\n  sync_id = 7\n  max_len = 1400  # maxlen\n  group = \"239.1.2.3\"\n  port = 9000\n  ttl = 3\n"},
		{name: "options in another order",
			in:   global("lvs_sync_daemon eth1 VI_1 group ff02::81 ttl 2 id 8") + one,
			want: map[string]*conf.LVSSync{"VI_1": {Interface: "eth1", SyncID: 8, Group: group6, Port: 8848, TTL: 2}}},
		{name: "IPv6 group with a maxlen only IPv4 allows: the kernel's clamp",
			in:   global("lvs_sync_daemon eth1 VI_1 group ff02::81 maxlen 65500") + one,
			want: map[string]*conf.LVSSync{"VI_1": {Interface: "eth1", SyncID: 51, MaxLen: 65487, Group: group6, Port: 8848, TTL: 1}},
			toml: "  max_len = 65487  # keepalived's maxlen 65500; the kernel clamps it to 65487 over IPv6\n"},
		{name: "zeros mean the kernel's defaults",
			in:   global("lvs_sync_daemon eth1 VI_1 maxlen 0 port 0 ttl 0") + one,
			want: map[string]*conf.LVSSync{"VI_1": defaults("eth1", 51)}},
		{name: "bare sync id of keepalived before the id keyword",
			in:   global("lvs_sync_daemon eth1 VI_1 9 ttl 4") + one,
			want: map[string]*conf.LVSSync{"VI_1": {Interface: "eth1", SyncID: 9, Group: kernel, Port: 8848, TTL: 4}}},
		{name: "bare sync id out of range",
			in:    global("lvs_sync_daemon eth1 VI_1 300") + one,
			want:  map[string]*conf.LVSSync{"VI_1": defaults("eth1", 51)},
			warns: []string{`2: lvs_sync_daemon: sync id "300" not carried: want 0..255; keepalived uses the virtual_router_id`}},
		{name: "bad values are dropped one by one",
			in:   global("lvs_sync_daemon eth1 VI_1 id 999 maxlen 70000 port x ttl 256 group 10.0.0.1 port 9000") + one,
			want: map[string]*conf.LVSSync{"VI_1": {Interface: "eth1", SyncID: 51, Group: kernel, Port: 9000, TTL: 1}},
			warns: []string{
				"2: lvs_sync_daemon: id 999 not carried: want 0..255; keepalived uses the virtual_router_id",
				"2: lvs_sync_daemon: maxlen 70000 not carried: want 0..65507; keepalived ignores it",
				"2: lvs_sync_daemon: port x not carried: want 0..65535; keepalived ignores it",
				"2: lvs_sync_daemon: ttl 256 not carried: want 0..255; keepalived ignores it",
				"2: lvs_sync_daemon: group 10.0.0.1 not carried: want an IPv4 or IPv6 multicast address; keepalived ignores it",
			}},
		{name: "an option without its value",
			in:    global("lvs_sync_daemon eth1 VI_1 id 5 ttl") + one,
			want:  map[string]*conf.LVSSync{"VI_1": defaults("eth1", 5)},
			warns: []string{"2: lvs_sync_daemon: ttl not carried: no value"}},
		{name: "unknown option",
			in:   global("lvs_sync_daemon eth1 VI_1 frob 1") + one,
			want: map[string]*conf.LVSSync{"VI_1": defaults("eth1", 51)},
			warns: []string{
				"2: lvs_sync_daemon: option frob not carried: keepalived knows id, maxlen, port, ttl and group",
				"2: lvs_sync_daemon: option 1 not carried: keepalived knows id, maxlen, port, ttl and group",
			}},
		{name: "no instance named",
			in:    global("lvs_sync_daemon eth1") + one,
			want:  map[string]*conf.LVSSync{"VI_1": nil},
			warns: []string{"2: lvs_sync_daemon: not carried: want an interface and a vrrp_instance name (got 1 words)"}},
		{name: "interface name too long",
			in:    global("lvs_sync_daemon averyveryverylongname VI_1") + one,
			want:  map[string]*conf.LVSSync{"VI_1": nil},
			warns: []string{`2: lvs_sync_daemon: not carried: interface name "averyveryverylongname" longer than 15 bytes (keepalived ignores it too)`}},
		{name: "interface alias",
			in:    global("lvs_sync_daemon eth0:1 VI_1") + one,
			want:  map[string]*conf.LVSSync{"VI_1": nil},
			warns: []string{`2: lvs_sync_daemon: not carried: invalid interface name "eth0:1" (the kernel has no such device)`}},
		{name: "instance name longer than keepalived takes",
			in:    global("lvs_sync_daemon eth1 VI_with_a_long_name") + instance("VI_with_a_long_name", 51, ""),
			want:  map[string]*conf.LVSSync{"VI_with_a_long_name": nil},
			warns: []string{`2: lvs_sync_daemon: not carried: keepalived ignores a vrrp_instance name longer than 15 bytes (got "VI_with_a_long_name")`}},
		{name: "unknown instance",
			in:    global("lvs_sync_daemon eth1 VI_9") + one,
			want:  map[string]*conf.LVSSync{"VI_1": nil},
			warns: []string{"2: lvs_sync_daemon: not carried: no vrrp_instance VI_9 to follow (keepalived runs no sync daemon either)"}},
		{name: "a second lvs_sync_daemon is ignored",
			in:    global("lvs_sync_daemon eth1 VI_1 id 1", "lvs_sync_daemon eth2 VI_2 id 2") + one + instance("VI_2", 52, ""),
			want:  map[string]*conf.LVSSync{"VI_1": defaults("eth1", 1), "VI_2": nil},
			warns: []string{"3: lvs_sync_daemon: not carried: keepalived runs one sync daemon and ignores this one; the first is at k.conf:2"}},
		{name: "the daemon follows the instance it names",
			in:   global("lvs_sync_daemon eth1 VI_2") + one + instance("VI_2", 52, ""),
			want: map[string]*conf.LVSSync{"VI_1": nil, "VI_2": defaults("eth1", 52)}},
		{name: "lvs_sync_daemon_interface in an instance",
			in:   instance("VI_1", 51, "    lvs_sync_daemon_interface eth1\n"),
			want: map[string]*conf.LVSSync{"VI_1": defaults("eth1", 51)},
			toml: "  # k.conf:4 lvs_sync_daemon_interface eth1\n  # keepalived's deprecated form of global_defs' lvs_sync_daemon\n"},
		{name: "lvs_sync_daemon_interface after lvs_sync_daemon is ignored",
			in:    global("lvs_sync_daemon eth1 VI_1 id 3") + instance("VI_2", 52, "    lvs_sync_daemon_interface eth2\n") + one,
			want:  map[string]*conf.LVSSync{"VI_1": defaults("eth1", 3), "VI_2": nil},
			warns: []string{"7: lvs_sync_daemon_interface: not carried: keepalived runs one sync daemon and ignores this one; the first is at k.conf:2"}},
		{name: "lvs_sync_daemon after lvs_sync_daemon_interface is ignored",
			in:    instance("VI_2", 52, "    lvs_sync_daemon_interface eth2\n") + global("lvs_sync_daemon eth1 VI_1 id 3") + one,
			want:  map[string]*conf.LVSSync{"VI_1": nil, "VI_2": defaults("eth2", 52)},
			warns: []string{"10: lvs_sync_daemon: not carried: keepalived runs one sync daemon and ignores this one; the first is at k.conf:4"}},
		{name: "lvs_sync_daemon_interface with two words",
			in:    instance("VI_1", 51, "    lvs_sync_daemon_interface eth1 eth2\n"),
			want:  map[string]*conf.LVSSync{"VI_1": nil},
			warns: []string{"4: lvs_sync_daemon_interface: not carried: want one interface (got 2 words)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, pw, err := Parse("k.conf", []byte(tt.in), Options{})
			if err != nil || len(pw) > 0 {
				t.Fatalf("parse: %v %v", pw, err)
			}
			conv, err := Convert(root, "lvsha.toml")
			if err != nil {
				t.Fatalf("convert: %v\n%s", err, conv.TOML)
			}
			got := map[string]*conf.LVSSync{}
			for _, inst := range conv.Config.VRRPInstances {
				got[inst.Name] = inst.LVSSync
			}
			if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("lvs_sync by instance (-want +got):\n%s\n%s", d, conv.TOML)
			}
			var warns []string
			for _, w := range conv.Warnings {
				if strings.Contains(w.Msg, "lvs_sync") || strings.Contains(w.Msg, "sync id") {
					warns = append(warns, strconv.Itoa(w.Line)+": "+w.Msg)
				}
			}
			if d := cmp.Diff(tt.warns, warns); d != "" {
				t.Errorf("warnings (-want +got):\n%s", d)
			}
			if tt.toml != "" && !strings.Contains(string(conv.TOML), tt.toml) {
				t.Errorf("TOML lacks\n%s\nin\n%s", tt.toml, conv.TOML)
			}
		})
	}
}

// TestConvertLVSSyncUnconvertedInstance checks the report when the
// daemon's instance exists but cannot be converted: the instance's error,
// and the daemon not carried.
func TestConvertLVSSyncUnconvertedInstance(t *testing.T) {
	in := "global_defs {\n    lvs_sync_daemon eth1 VI_1\n}\nvrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n}\n"
	root, _, err := Parse("k.conf", []byte(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	conv, err := Convert(root, "lvsha.toml")
	if err == nil || !strings.Contains(err.Error(), "vrrp_instance VI_1: no virtual_ipaddress lvsha can carry") {
		t.Errorf("Convert error %v, want the instance's", err)
	}
	want := Warning{File: "k.conf", Line: 2, Msg: "lvs_sync_daemon: not carried: its vrrp_instance VI_1 was not converted"}
	found := false
	for _, w := range conv.Warnings {
		found = found || w == want
	}
	if !found {
		t.Errorf("warnings %v lack %v", conv.Warnings, want)
	}
}
