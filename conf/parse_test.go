package conf

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpOpts compares netip values by value. Diffs are taken on Config values,
// not pointers: cmp would otherwise call (*Config).Equal and print no detail.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	// Where keys stand in the file is TestConfigLine's business.
	cmpopts.IgnoreUnexported(Config{}),
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// defDirector is the director section of a file that has none.
func defDirector() Director {
	return Director{ControlSocket: "/run/lvsha/lvsha.sock", StateFile: "/var/lib/lvsha/state.json", Resync: 10 * time.Second, MaxProcs: 1}
}

// defVS is an address virtual server with every default written out.
func defVS(name, addr string, rs ...RealServer) VirtualServer {
	return VirtualServer{
		Name:               name,
		Address:            ap(addr),
		Family:             "inet",
		Protocol:           "tcp",
		Scheduler:          "wlc",
		Forwarding:         "nat",
		PersistenceNetmask: 32,
		OnDown:             "weight0",
		SorryWeight:        1,
		Quorum:             1,
		HealthConsensus:    "local",
		RealServers:        rs,
	}
}

func defRS(addr string, check *Check) RealServer {
	return RealServer{Address: ap(addr), Weight: 1, Forwarding: "nat", OnDown: "weight0", Check: check}
}

func httpCheck() *Check {
	return &Check{Type: "http", Interval: time.Second, RetryInterval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2,
		Method: "GET", Path: "/", Status: []int{200}}
}

func tcpCheck() *Check {
	return &Check{Type: "tcp", Interval: time.Second, RetryInterval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2}
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want Config
	}{{
		name: "empty file",
		toml: "",
		want: Config{Director: defDirector()},
	}, {
		name: "minimal address service takes every default",
		toml: `
[[virtual_server]]
address = "192.0.2.1:80"
[[virtual_server.real_server]]
address = "192.0.2.10:8080"
`,
		want: Config{Director: defDirector(), VirtualServers: []VirtualServer{
			defVS("192.0.2.1:80", "192.0.2.1:80", defRS("192.0.2.10:8080", nil)),
		}},
	}, {
		name: "director keys",
		toml: `
[director]
name = "lb2"
control_socket = "/tmp/l.sock"
state_file = "/tmp/l.state"
resync_interval = "1m30s"
max_procs = 0
rt_priority = 10
nice = -5
`,
		want: Config{Director: Director{Name: "lb2", ControlSocket: "/tmp/l.sock", StateFile: "/tmp/l.state", Resync: 90 * time.Second, RTPriority: 10, Nice: -5}},
	}, {
		name: "metrics listener on loopback",
		toml: "[metrics]\nlisten = \"127.0.0.1:9650\"\n",
		want: Config{Director: defDirector(), Metrics: Metrics{Listen: "127.0.0.1:9650"}},
	}, {
		name: "metrics listener on every address, and IPv6",
		toml: "metrics = { listen = \":9650\" }\n",
		want: Config{Director: defDirector(), Metrics: Metrics{Listen: ":9650"}},
	}, {
		name: "metrics listener on IPv6 loopback",
		toml: "[metrics]\nlisten = \"[::1]:9650\"\n",
		want: Config{Director: defDirector(), Metrics: Metrics{Listen: "[::1]:9650"}},
	}, {
		name: "empty metrics listen is off",
		toml: "[metrics]\nlisten = \"\"\n",
		want: Config{Director: defDirector()},
	}, {
		name: "same address over tcp and udp gets distinct default names",
		toml: `
[[virtual_server]]
address = "192.0.2.1:53"
[[virtual_server]]
address = "192.0.2.1:53"
protocol = "udp"
one_packet = true
`,
		want: Config{Director: defDirector(), VirtualServers: []VirtualServer{
			defVS("192.0.2.1:53", "192.0.2.1:53"),
			func() VirtualServer {
				v := defVS("192.0.2.1:53/udp", "192.0.2.1:53")
				v.Protocol, v.OnePacket = "udp", true
				return v
			}(),
		}},
	}, {
		name: "fwmark inet6 with portless dr real servers",
		toml: `
[[virtual_server]]
fwmark = 7
family = "inet6"
forwarding = "dr"
persistence = "300s"
[[virtual_server.real_server]]
address = "2001:db8::10"
[[virtual_server.real_server]]
address = "[2001:db8::11]:443"
forwarding = "tun"
weight = 0
upper_threshold = 100
lower_threshold = 50
`,
		want: Config{Director: defDirector(), VirtualServers: []VirtualServer{{
			Name: "fwmark:7/inet6", FWMark: 7, Family: "inet6", Protocol: "tcp", Scheduler: "wlc",
			Forwarding: "dr", Persistence: 300 * time.Second, PersistenceNetmask: 128, OnDown: "weight0",
			SorryWeight: 1, Quorum: 1, HealthConsensus: "local",
			RealServers: []RealServer{
				{Address: netip.AddrPortFrom(netip.MustParseAddr("2001:db8::10"), 0), Weight: 1, Forwarding: "dr", OnDown: "weight0"},
				{Address: ap("[2001:db8::11]:443"), Weight: 0, Forwarding: "tun", OnDown: "weight0", UpperThreshold: 100, LowerThreshold: 50},
			},
		}}},
	}, {
		name: "fwmark inet default name and family",
		toml: "[[virtual_server]]\nfwmark = 4294967295\n",
		want: Config{Director: defDirector(), VirtualServers: []VirtualServer{{
			Name: "fwmark:4294967295", FWMark: 4294967295, Family: "inet", Protocol: "tcp", Scheduler: "wlc",
			Forwarding: "nat", PersistenceNetmask: 32, OnDown: "weight0", SorryWeight: 1, Quorum: 1, HealthConsensus: "local",
		}}},
	}, {
		// Without a port, a DR server listens on the virtual port: that is
		// the port its check probes.
		name: "dr real server may repeat the virtual port or omit it",
		toml: `
[[virtual_server]]
address = "[2001:db8::1]:80"
forwarding = "dr"
sorry_server = "2001:db8::99"
[[virtual_server.real_server]]
address = "[2001:db8::10]:80"
[[virtual_server.real_server]]
address = "2001:db8::11"
`,
		want: Config{Director: defDirector(), VirtualServers: []VirtualServer{func() VirtualServer {
			v := defVS("[2001:db8::1]:80", "[2001:db8::1]:80")
			v.Family, v.PersistenceNetmask, v.Forwarding = "inet6", 128, "dr"
			v.SorryServer = ap("[2001:db8::99]:80")
			v.RealServers = []RealServer{{Address: ap("[2001:db8::10]:80"), Weight: 1, Forwarding: "dr", OnDown: "weight0"},
				{Address: ap("[2001:db8::11]:80"), Weight: 1, Forwarding: "dr", OnDown: "weight0"}}
			return v
		}()}},
	}, {
		name: "check inheritance field by field and by type",
		toml: `
[[virtual_server]]
name = "web"
address = "192.0.2.1:80"
[virtual_server.check]
type = "http"
interval = "2s"
retry_interval = "250ms"
path = "/health"
status = [200, 204, "301-303"]
host = "example.com"
connect_port = 8081

[[virtual_server.real_server]]        # inherits everything
address = "192.0.2.10:80"
[[virtual_server.real_server]]        # overrides some fields
address = "192.0.2.11:80"
check = { rise = 5, timeout = "300ms", start_down = true }
[[virtual_server.real_server]]        # another type: http fields are not inherited
address = "192.0.2.12:80"
check = { type = "tcp" }
[[virtual_server.real_server]]        # no check at all
address = "192.0.2.13:80"
check = { type = "none" }
[[virtual_server.real_server]]        # https keeps the http fields
address = "192.0.2.14:80"
[virtual_server.real_server.check]
type = "https"
tls_verify = true
[[virtual_server.real_server]]        # more urls, all of which must pass
address = "192.0.2.15:80"
[[virtual_server.real_server.check.url]]
path = "/ready"
[[virtual_server.real_server.check.url]]
path = "/version"
status = ["200-201"]
body_md5 = "B1946AC92492D2347C6235B4D2611184"
`,
		want: func() Config {
			base := Check{Type: "http", Interval: 2 * time.Second, RetryInterval: 250 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2,
				ConnectPort: 8081, Method: "GET", Path: "/health", Host: "example.com", Status: []int{200, 204, 301, 302, 303}}
			rise5 := base
			rise5.Rise, rise5.Timeout, rise5.StartDown = 5, 300*time.Millisecond, true
			tcp := Check{Type: "tcp", Interval: 2 * time.Second, RetryInterval: 250 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2, ConnectPort: 8081}
			https := base
			https.Type, https.TLSVerify, https.SNI = "https", true, "example.com"
			urls := base
			urls.URLs = []URL{{Path: "/ready", Status: []int{200}},
				{Path: "/version", Status: []int{200, 201}, BodyMD5: "b1946ac92492d2347c6235b4d2611184"}}
			v := defVS("web", "192.0.2.1:80",
				defRS("192.0.2.10:80", &base),
				defRS("192.0.2.11:80", &rise5),
				defRS("192.0.2.12:80", &tcp),
				defRS("192.0.2.13:80", nil),
				defRS("192.0.2.14:80", &https),
				defRS("192.0.2.15:80", &urls),
			)
			vsCheck := base
			v.Check = &vsCheck
			return Config{Director: defDirector(), VirtualServers: []VirtualServer{v}}
		}(),
	}, {
		name: "real server check without a virtual server check",
		toml: `
[[virtual_server]]
address = "192.0.2.1:443"
[[virtual_server.real_server]]
address = "192.0.2.10:443"
check.type = "https"
check.host = "www.example.com:8443"
check.connect_address = "198.51.100.7"
check.body_regexp = "^ok$"
check.method = "HEAD"
[[virtual_server.real_server]]
address = "192.0.2.11:443"
check = { type = "exec", command = ["/usr/bin/probe", "--quiet"], fall = 3, interval = "5s" }
[[virtual_server.real_server]]
address = "192.0.2.12:443"
check = { type = "dns", connect_port = 53 }
[[virtual_server.real_server]]
address = "192.0.2.13:443"
check = { type = "dns", connect_port = 53, dns_type = "aaaa", dns_name = "example.org" }
`,
		want: Config{Director: defDirector(), VirtualServers: []VirtualServer{defVS("192.0.2.1:443", "192.0.2.1:443",
			defRS("192.0.2.10:443", &Check{Type: "https", Interval: time.Second, RetryInterval: time.Second, Timeout: 500 * time.Millisecond,
				Rise: 2, Fall: 2, ConnectAddress: netip.MustParseAddr("198.51.100.7"), Method: "HEAD", Path: "/",
				Host: "www.example.com:8443", Status: []int{200}, BodyRegexp: "^ok$", SNI: "www.example.com"}),
			defRS("192.0.2.11:443", &Check{Type: "exec", Interval: 5 * time.Second, RetryInterval: 5 * time.Second, Timeout: 2500 * time.Millisecond,
				Rise: 2, Fall: 3, Command: []string{"/usr/bin/probe", "--quiet"}}),
			defRS("192.0.2.12:443", &Check{Type: "dns", Interval: time.Second, RetryInterval: time.Second, Timeout: 500 * time.Millisecond,
				Rise: 2, Fall: 2, ConnectPort: 53, DNSType: "SOA", DNSName: "."}),
			defRS("192.0.2.13:443", &Check{Type: "dns", Interval: time.Second, RetryInterval: time.Second, Timeout: 500 * time.Millisecond,
				Rise: 2, Fall: 2, ConnectPort: 53, DNSType: "AAAA", DNSName: "example.org"}),
		)}},
	}, {
		name: "inline array of real servers and a check of type none on the virtual server",
		toml: `
[[virtual_server]]
address = "192.0.2.1:80"
check = { type = "none" }
real_server = [
  { address = "192.0.2.10:80", weight = 3 },
  { address = "192.0.2.11:80", check = { type = "tcp" } },
]
`,
		want: Config{Director: defDirector(), VirtualServers: []VirtualServer{defVS("192.0.2.1:80", "192.0.2.1:80",
			RealServer{Address: ap("192.0.2.10:80"), Weight: 3, Forwarding: "nat", OnDown: "weight0"},
			defRS("192.0.2.11:80", tcpCheck()),
		)}},
	}, {
		name: "port 0 with persistence serves all ports",
		toml: `
[[virtual_server]]
address = "192.0.2.1:0"
persistence = "1h"
persistence_netmask = 24
scheduler = "mh"
scheduler_flags = ["mh-port", "mh-fallback"]
on_down = "remove"
quorum = 0
hysteresis = 3
sorry_weight = 0
[[virtual_server.real_server]]
address = "192.0.2.10"
`,
		want: Config{Director: defDirector(), VirtualServers: []VirtualServer{func() VirtualServer {
			v := defVS("192.0.2.1:0", "192.0.2.1:0")
			v.Persistence, v.PersistenceNetmask, v.Scheduler = time.Hour, 24, "mh"
			v.SchedulerFlags = []string{"mh-port", "mh-fallback"}
			v.OnDown, v.Quorum, v.Hysteresis, v.SorryWeight = "remove", 0, 3, 0
			v.RealServers = []RealServer{{Address: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), 0), Weight: 1, Forwarding: "nat", OnDown: "remove"}}
			return v
		}()}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("t.toml", []byte(tt.toml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.want.Source = "t.toml"
			if diff := cmp.Diff(tt.want, *got, cmpOpts...); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSketch parses the schema sketch the configuration was designed from.
// As written it pairs scheduler "rr" with the flag "sh-port", which IPVS
// would silently ignore, so it is refused; with scheduler "sh" it parses.
func TestSketch(t *testing.T) {
	data, err := os.ReadFile("testdata/sketch.toml")
	if err != nil {
		t.Fatal(err)
	}
	asWritten := strings.Replace(string(data), `scheduler = "sh"`, `scheduler = "rr"`, 1)
	_, err = Parse("sketch.toml", []byte(asWritten))
	const wantErr = `sketch.toml:11: virtual_server[0].scheduler_flags[0]: sh-port applies only to scheduler sh (got scheduler rr)`
	if err == nil || err.Error() != wantErr {
		t.Errorf("sketch with rr: got error %v, want %s", err, wantErr)
	}

	got, err := Parse("sketch.toml", data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	vsCheck := &Check{Type: "http", Interval: time.Second, RetryInterval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2,
		Method: "GET", Path: "/", Status: []int{200}}
	want := Config{
		Source:   "sketch.toml",
		Director: Director{Name: "lb1", ControlSocket: "/run/lvsha/lvsha.sock", StateFile: "/var/lib/lvsha/state.json", Resync: 10 * time.Second, MaxProcs: 1},
		VirtualServers: []VirtualServer{{
			Name: "web", Address: ap("192.168.164.100:80"), Family: "inet", Protocol: "tcp",
			Scheduler: "sh", SchedulerFlags: []string{"sh-port"}, Forwarding: "nat",
			PersistenceNetmask: 24, OnDown: "weight0", SorryServer: ap("10.0.0.9:80"),
			SorryWeight: 1, Quorum: 1, Hysteresis: 0, HealthConsensus: "local", Check: vsCheck,
			RealServers: []RealServer{
				{Address: ap("192.168.164.11:80"), Weight: 1, Forwarding: "nat", OnDown: "weight0", Check: httpCheck()},
				{Address: ap("192.168.164.10:80"), Weight: 1, Forwarding: "nat", OnDown: "weight0", Check: tcpCheck()},
			},
		}},
	}
	if diff := cmp.Diff(want, *got, cmpOpts...); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
}

// vsHead is a valid virtual server occupying lines 1 and 2 of a bad input,
// so the rows below can name exact lines.
const vsHead = "[[virtual_server]]\naddress = \"192.0.2.1:80\"\n"

func TestParseBad(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want string
	}{
		{"syntax error", vsHead + "weight = \n", `t.toml:3: syntax error: expected value but found '\n' instead`},
		{"unknown top-level key", "colour = 1\n", `t.toml:1: colour: unknown key (want one of director, metrics, cluster, virtual_server, vrrp_instance, vrrp_sync_group, track_exec)`},
		{"unknown metrics key", "[metrics]\nlisten_address = \":9650\"\n",
			`t.toml:2: metrics.listen_address: unknown key (want one of listen)`},
		{"metrics as a string", "metrics = \":9650\"\n",
			`t.toml:1: metrics: wrong type (got string ":9650", want table)`},
		{"metrics listen of wrong type", "[metrics]\nlisten = 9650\n",
			`t.toml:2: metrics.listen: wrong type (got integer 9650, want string)`},
		{"metrics listen without port", "[metrics]\nlisten = \"127.0.0.1\"\n",
			`t.toml:2: metrics.listen: invalid listen address (got "127.0.0.1", want "IP:port" such as "127.0.0.1:9650", "[::1]:9650" or ":9650" for every address)`},
		{"metrics listen on a host name", "[metrics]\nlisten = \"localhost:9650\"\n",
			`t.toml:2: metrics.listen: host must be an IP address, not a name (got "localhost", want "IP:port" such as "127.0.0.1:9650", "[::1]:9650" or ":9650" for every address)`},
		{"metrics listen on port 0", "[metrics]\nlisten = \"127.0.0.1:0\"\n",
			`t.toml:2: metrics.listen: invalid port (got "0", want 1..65535)`},
		{"metrics listen on a named port", "[metrics]\nlisten = \"127.0.0.1:http\"\n",
			`t.toml:2: metrics.listen: invalid port (got "http", want 1..65535)`},
		{"unknown key with suggestion", vsHead + "[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\nwieght = 2\n",
			`t.toml:5: virtual_server[0].real_server[0].wieght: unknown key (did you mean "weight"?)`},
		{"unknown director key", "[director]\nsocket = \"/x\"\n",
			`t.toml:2: director.socket: unknown key (want one of name, control_socket, control_socket_group, state_file, resync_interval, max_procs, rt_priority, nice)`},
		{"wrong type", vsHead + "[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\nweight = \"1\"\n",
			`t.toml:5: virtual_server[0].real_server[0].weight: wrong type (got string "1", want integer)`},
		{"wrong type in array", vsHead + "[virtual_server.check]\ntype = \"http\"\nstatus = [200,\n  \"404\"]\n",
			`t.toml:6: virtual_server[0].check.status[1]: invalid status range (got "404", want "LO-HI" with 100 <= LO <= HI <= 599, e.g. "200-299")`},
		{"reversed status range", vsHead + "check = { type = \"http\", status = [\"299-200\"] }\n",
			`t.toml:3: virtual_server[0].check.status[0]: invalid status range (got "299-200", want "LO-HI" with 100 <= LO <= HI <= 599, e.g. "200-299")`},
		{"status of wrong type", vsHead + "check = { type = \"http\", status = [true] }\n",
			`t.toml:3: virtual_server[0].check.status[0]: wrong type (got boolean true, want integer)`},
		{"virtual_server as a plain table", "[virtual_server]\naddress = \"192.0.2.1:80\"\n",
			`t.toml:1: virtual_server: wrong type (got table, want array of tables: write [[virtual_server]], not [virtual_server])`},
		{"duration as a number", vsHead + "persistence = 30\n",
			`t.toml:3: virtual_server[0].persistence: wrong type (got integer 30, want duration string such as "1s" or "500ms")`},
		{"bad duration", "[director]\nresync_interval = \"10 s\"\n",
			`t.toml:2: director.resync_interval: invalid duration (got "10 s", want a duration such as "1s" or "500ms")`},
		{"negative duration", vsHead + "persistence = \"-1s\"\n",
			`t.toml:3: virtual_server[0].persistence: must not be negative (got -1s, want >= 0s)`},
		{"persistence not in seconds", vsHead + "persistence = \"1500ms\"\n",
			`t.toml:3: virtual_server[0].persistence: must be a whole number of seconds (got 1.5s)`},
		{"negative max_procs", "[director]\nmax_procs = -1\n",
			`t.toml:2: director.max_procs: out of range (got -1, want 0..1024)`},
		{"rt_priority above 99", "[director]\nrt_priority = 100\n",
			`t.toml:2: director.rt_priority: out of range (got 100, want 0..99)`},
		{"nice below -20", "[director]\nnice = -21\n",
			`t.toml:2: director.nice: out of range (got -21, want -20..19)`},
		{"zero resync", "[director]\nresync_interval = \"0s\"\n",
			`t.toml:2: director.resync_interval: must be positive (got 0s, want > 0s)`},
		{"relative control socket", "[director]\ncontrol_socket = \"lvsha.sock\"\n",
			`t.toml:2: director.control_socket: must be an absolute path (got "lvsha.sock")`},
		{"control socket group with a space", "[director]\ncontrol_socket_group = \"lvsha ops\"\n",
			`t.toml:2: director.control_socket_group: invalid group (got "lvsha ops", want a group name such as "lvsha-ops" or a number such as "4242")`},
		{"empty control socket group", "[director]\ncontrol_socket_group = \"\"\n",
			`t.toml:2: director.control_socket_group: invalid group (got "", want a group name such as "lvsha-ops" or a number such as "4242")`},
		{"control socket group of gid -1", "[director]\ncontrol_socket_group = \"4294967295\"\n",
			`t.toml:2: director.control_socket_group: invalid group (got "4294967295", want a group name such as "lvsha-ops" or a number such as "4242")`},
		{"relative state file", "[director]\nstate_file = \"state.json\"\n",
			`t.toml:2: director.state_file: must be an absolute path (got "state.json")`},
		{"empty director name", "[director]\nname = \"\"\n",
			`t.toml:2: director.name: must not be empty (got "", want a name, or no name key to use the hostname)`},
		{"duplicate name", vsHead + "name = \"web\"\n[[virtual_server]]\naddress = \"192.0.2.2:80\"\nname = \"web\"\n",
			`t.toml:6: virtual_server[1].name: duplicate virtual server name "web" (first used by virtual_server[0] at line 1)`},
		{"duplicate address and protocol", vsHead + "name = \"a\"\n[[virtual_server]]\nname = \"b\"\naddress = \"192.0.2.1:80\"\n",
			`t.toml:6: virtual_server[1].address: duplicate virtual server 192.0.2.1:80/tcp (first defined by virtual_server[0] at line 1)`},
		{"duplicate unnamed address reported once", vsHead + vsHead,
			`t.toml:4: virtual_server[1].address: duplicate virtual server 192.0.2.1:80/tcp (first defined by virtual_server[0] at line 1)`},
		{"duplicate fwmark and family", "[[virtual_server]]\nfwmark = 1\n[[virtual_server]]\nfwmark = 1\nfamily = \"inet\"\n",
			`t.toml:4: virtual_server[1].fwmark: duplicate virtual server fwmark 1/inet (first defined by virtual_server[0] at line 1)`},
		{"duplicate real server", vsHead + "real_server = [{ address = \"192.0.2.10:80\" },\n  { address = \"192.0.2.10:80\", weight = 2 }]\n",
			`t.toml:4: virtual_server[0].real_server[1].address: duplicate real server 192.0.2.10:80 (first defined by virtual_server[0].real_server[0] at line 3)`},
		{"address without port", "[[virtual_server]]\naddress = \"192.0.2.1\"\n",
			`t.toml:2: virtual_server[0].address: missing port (got "192.0.2.1", want IP:port such as "192.0.2.1:80")`},
		{"ipv6 address without brackets", "[[virtual_server]]\naddress = \"2001:db8::1\"\n",
			`t.toml:2: virtual_server[0].address: missing port (got "2001:db8::1", want [IPv6]:port such as "[2001:db8::1]:80")`},
		{"garbage address", "[[virtual_server]]\naddress = \"www.example.com:80\"\n",
			`t.toml:2: virtual_server[0].address: invalid address (got "www.example.com:80", want IP:port such as "192.0.2.1:80" or "[2001:db8::1]:80")`},
		{"ipv4-mapped address", "[[virtual_server]]\naddress = \"[::ffff:192.0.2.1]:80\"\n",
			`t.toml:2: virtual_server[0].address: IPv4-mapped IPv6 address (got "[::ffff:192.0.2.1]:80", want the plain IPv4 form 192.0.2.1)`},
		{"port 0 without persistence", "[[virtual_server]]\naddress = \"192.0.2.1:0\"\n",
			`t.toml:2: virtual_server[0].address: port 0 (all ports) needs persistence (got persistence 0s, want > 0s)`},
		{"address and fwmark", vsHead + "fwmark = 3\n",
			`t.toml:1: virtual_server[0]: address and fwmark are mutually exclusive (got both, want one)`},
		{"neither address nor fwmark", "[[virtual_server]]\nname = \"x\"\n",
			`t.toml:1: virtual_server[0]: missing address or fwmark (got neither, want one)`},
		{"fwmark zero", "[[virtual_server]]\nfwmark = 0\n",
			`t.toml:2: virtual_server[0].fwmark: out of range (got 0, want 1..4294967295)`},
		{"family contradicts address", vsHead + "family = \"inet6\"\n",
			`t.toml:3: virtual_server[0].family: does not match the address (got inet6, want inet for 192.0.2.1:80)`},
		{"real server family mismatch", vsHead + "[[virtual_server.real_server]]\naddress = \"[2001:db8::10]:80\"\n",
			`t.toml:4: virtual_server[0].real_server[0].address: address family inet6 does not match the virtual server's inet (got "[2001:db8::10]:80", want an IPv4 address)`},
		{"sorry server family mismatch", "[[virtual_server]]\nfwmark = 2\nfamily = \"inet6\"\nsorry_server = \"10.0.0.9:80\"\n",
			`t.toml:4: virtual_server[0].sorry_server: address family inet does not match the virtual server's inet6 (got "10.0.0.9:80", want an IPv6 address)`},
		{"nat real server without port", vsHead + "[[virtual_server.real_server]]\naddress = \"192.0.2.10\"\n",
			`t.toml:4: virtual_server[0].real_server[0].address: missing port (got "192.0.2.10", want IP:port: nat forwarding needs the server's port)`},
		{"dr cannot change the port", vsHead + "forwarding = \"dr\"\n[[virtual_server.real_server]]\naddress = \"192.0.2.10:8080\"\n",
			`t.toml:5: virtual_server[0].real_server[0].address: dr forwarding cannot change the port (got 8080, want 80 or no port)`},
		{"unknown protocol", vsHead + "protocol = \"icmp\"\n",
			`t.toml:3: virtual_server[0].protocol: unknown protocol (got "icmp", want one of tcp, udp, sctp)`},
		{"unknown scheduler", vsHead + "scheduler = \"random\"\n",
			`t.toml:3: virtual_server[0].scheduler: unknown scheduler (got "random", want one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos)`},
		{"unknown scheduler flag", vsHead + "scheduler = \"sh\"\nscheduler_flags = [\"sh-port\", \"port\"]\n",
			`t.toml:4: virtual_server[0].scheduler_flags[1]: unknown scheduler flag (got "port", want one of sh-fallback, sh-port, mh-fallback, mh-port)`},
		{"scheduler flag twice", vsHead + "scheduler = \"sh\"\nscheduler_flags = [\"sh-port\", \"sh-port\"]\n",
			`t.toml:4: virtual_server[0].scheduler_flags[1]: scheduler flag "sh-port" listed twice`},
		{"unknown forwarding", vsHead + "forwarding = \"masq\"\n",
			`t.toml:3: virtual_server[0].forwarding: unknown forwarding method (got "masq", want one of nat, dr, tun)`},
		{"unknown on_down", vsHead + "on_down = \"drain\"\n",
			`t.toml:3: virtual_server[0].on_down: unknown on_down action (got "drain", want one of weight0, remove)`},
		{"unknown check type", vsHead + "check = { type = \"gopher\" }\n",
			`t.toml:3: virtual_server[0].check.type: unknown check type (got "gopher", want one of tcp, http, https, dns, smtp, icmp, udp, exec, none)`},
		{"check without type", vsHead + "[virtual_server.check]\ninterval = \"2s\"\n",
			`t.toml:3: virtual_server[0].check: missing type (want one of tcp, http, https, dns, smtp, icmp, udp, exec, none)`},
		{"real server check without type and nothing to inherit", vsHead + "[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\ncheck = { rise = 3 }\n",
			`t.toml:5: virtual_server[0].real_server[0].check: missing type (want one of tcp, http, https, dns, smtp, icmp, udp, exec, none)`},
		{"timeout not shorter than interval", vsHead + "check = { type = \"tcp\", interval = \"1s\", timeout = \"1s\" }\n",
			`t.toml:3: virtual_server[0].check.timeout: must be shorter than interval (got 1s, want less than 1s)`},
		{"timeout longer than the default interval", vsHead + "check = { type = \"tcp\", timeout = \"3s\" }\n",
			`t.toml:3: virtual_server[0].check.timeout: must be shorter than interval (got 3s, want less than 1s)`},
		{"real server interval below the inherited timeout", vsHead +
			"[virtual_server.check]\ntype = \"tcp\"\ninterval = \"5s\"\ntimeout = \"2s\"\n" +
			"[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\ncheck = { interval = \"1s\" }\n",
			`t.toml:9: virtual_server[0].real_server[0].check.interval: must be longer than the timeout 2s set at virtual_server[0].check.timeout (got 1s)`},
		{"zero interval", vsHead + "check = { type = \"tcp\", interval = \"0s\" }\n",
			`t.toml:3: virtual_server[0].check.interval: too short (got 0s, want at least 1ms)`},
		{"zero timeout", vsHead + "check = { type = \"tcp\", timeout = \"0s\" }\n",
			`t.toml:3: virtual_server[0].check.timeout: must be positive (got 0s, want > 0s)`},
		{"rise zero", vsHead + "check = { type = \"tcp\", rise = 0 }\n",
			`t.toml:3: virtual_server[0].check.rise: out of range (got 0, want 1..100)`},
		{"fall too big", vsHead + "check = { type = \"tcp\", fall = 101 }\n",
			`t.toml:3: virtual_server[0].check.fall: out of range (got 101, want 1..100)`},
		{"weight too big", vsHead + "[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\nweight = 65536\n",
			`t.toml:5: virtual_server[0].real_server[0].weight: out of range (got 65536, want 0..65535)`},
		{"negative weight", vsHead + "[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\nweight = -1\n",
			`t.toml:5: virtual_server[0].real_server[0].weight: out of range (got -1, want 0..65535)`},
		{"status out of range", vsHead + "check = { type = \"http\", status = [200, 600] }\n",
			`t.toml:3: virtual_server[0].check.status[1]: out of range (got 600, want 100..599)`},
		{"sorry_inhibit without sorry_server", vsHead + "sorry_inhibit = true\n",
			`t.toml:3: virtual_server[0].sorry_inhibit: needs sorry_server (want a sorry_server to keep at weight 0)`},
		{"unknown dns_type", vsHead + "check = { type = \"dns\", dns_type = \"SRV\" }\n",
			`t.toml:3: virtual_server[0].check.dns_type: unknown DNS type (got "SRV", want one of A, AAAA, CNAME, DNSKEY, MX, NS, RRSIG, SOA, TXT)`},
		{"dns_name on http", vsHead + "check = { type = \"http\", dns_name = \"x\" }\n",
			`t.toml:3: virtual_server[0].check.dns_name: applies only to dns checks (got type http)`},
		{"url without path", vsHead + "check = { type = \"http\", url = [{ status = [200] }] }\n",
			`t.toml:3: virtual_server[0].check.url[0].path: missing (want the URL's path, e.g. "/status")`},
		{"url on tcp", vsHead + "check = { type = \"tcp\", url = [{ path = \"/x\" }] }\n",
			`t.toml:3: virtual_server[0].check.url: applies only to http and https checks (got type tcp)`},
		{"url with a bad digest", vsHead + "check = { type = \"http\", url = [{ path = \"/x\", body_md5 = \"zz\" }] }\n",
			`t.toml:3: virtual_server[0].check.url[0].body_md5: invalid MD5 digest (got "zz", want 32 hexadecimal digits, as md5sum prints)`},
		{"bad payload_hex", vsHead + "check = { type = \"udp\", payload_hex = \"0g\" }\n",
			`t.toml:3: virtual_server[0].check.payload_hex: invalid hex (got "0g", want pairs of hex digits such as "0d0a")`},
		{"reply_hex on tcp", vsHead + "check = { type = \"tcp\", reply_hex = \"00\" }\n",
			`t.toml:3: virtual_server[0].check.reply_hex: applies only to udp checks (got type tcp)`},
		{"bad body_md5", vsHead + "check = { type = \"http\", body_md5 = \"abc\" }\n",
			`t.toml:3: virtual_server[0].check.body_md5: invalid MD5 digest (got "abc", want 32 hexadecimal digits, as md5sum prints)`},
		{"body_md5 on tcp", vsHead + "check = { type = \"tcp\", body_md5 = \"b1946ac92492d2347c6235b4d2611184\" }\n",
			`t.toml:3: virtual_server[0].check.body_md5: applies only to http and https checks (got type tcp)`},
		{"empty status", vsHead + "check = { type = \"http\", status = [] }\n",
			`t.toml:3: virtual_server[0].check.status: must list at least one status code (got [], want e.g. [200])`},
		{"body_regexp does not compile", vsHead + "check = { type = \"http\", body_regexp = \"(ok\" }\n",
			"t.toml:3: virtual_server[0].check.body_regexp: does not compile (got \"(ok\", want a Go regexp): error parsing regexp: missing closing ): `(ok`"},
		{"exec without command", vsHead + "check = { type = \"exec\" }\n",
			`t.toml:3: virtual_server[0].check: exec check needs a command (want command = ["/path/to/program", "arg", ...])`},
		{"exec with empty program", vsHead + "check = { type = \"exec\", command = [\"\"] }\n",
			`t.toml:3: virtual_server[0].check.command[0]: program must not be empty (got "", want a program path)`},
		{"http field on tcp check", vsHead + "[virtual_server.check]\ntype = \"tcp\"\npath = \"/health\"\n",
			`t.toml:5: virtual_server[0].check.path: applies only to http and https checks (got type tcp)`},
		{"tls field on http check", vsHead + "check = { type = \"http\", sni = \"a\" }\n",
			`t.toml:3: virtual_server[0].check.sni: applies only to https checks (got type http)`},
		{"command on http check", vsHead + "check = { type = \"http\", command = [\"/bin/true\"] }\n",
			`t.toml:3: virtual_server[0].check.command: applies only to exec checks (got type http)`},
		{"inherited type with a field it does not take", vsHead + "check = { type = \"tcp\" }\n" +
			"[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\ncheck = { path = \"/x\" }\n",
			`t.toml:6: virtual_server[0].real_server[0].check.path: applies only to http and https checks (got type tcp)`},
		{"path without slash", vsHead + "check = { type = \"http\", path = \"health\" }\n",
			`t.toml:3: virtual_server[0].check.path: must start with / (got "health")`},
		{"bad method", vsHead + "check = { type = \"http\", method = \"GET /\" }\n",
			`t.toml:3: virtual_server[0].check.method: invalid HTTP method (got "GET /", want a token such as GET or HEAD)`},
		{"bad connect_address", vsHead + "check = { type = \"tcp\", connect_address = \"localhost\" }\n",
			`t.toml:3: virtual_server[0].check.connect_address: invalid IP address (got "localhost")`},
		{"persistence_netmask too long for inet", vsHead + "persistence_netmask = 33\n",
			`t.toml:3: virtual_server[0].persistence_netmask: out of range for inet (got 33, want 1..32)`},
		{"persistence_netmask too long for inet6", "[[virtual_server]]\naddress = \"[2001:db8::1]:80\"\npersistence_netmask = 129\n",
			`t.toml:3: virtual_server[0].persistence_netmask: out of range (got 129, want 1..128)`},
		{"negative quorum", vsHead + "quorum = -1\n",
			`t.toml:3: virtual_server[0].quorum: out of range (got -1, want 0..2147483647)`},
		{"negative hysteresis", vsHead + "hysteresis = -2\n",
			`t.toml:3: virtual_server[0].hysteresis: out of range (got -2, want 0..2147483647)`},
		{"lower threshold above upper", vsHead + "[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\nupper_threshold = 10\nlower_threshold = 20\n",
			`t.toml:6: virtual_server[0].real_server[0].lower_threshold: must not exceed upper_threshold (got 20, want <= 10)`},
		{"lower threshold alone", vsHead + "[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\nlower_threshold = 20\n",
			`t.toml:5: virtual_server[0].real_server[0].lower_threshold: needs upper_threshold (got lower_threshold 20, want upper_threshold >= 20 too)`},
		{"nested check table of a later virtual server", vsHead + "[[virtual_server]]\nname = \"b\"\naddress = \"192.0.2.2:80\"\n" +
			"[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\n[[virtual_server.real_server]]\naddress = \"192.0.2.11:80\"\n" +
			"[virtual_server.real_server.check]\ntype = \"tcp\"\nrise = 0\n",
			`t.toml:12: virtual_server[1].real_server[1].check.rise: out of range (got 0, want 1..100)`},
		{"dotted check key", vsHead + "[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\ncheck.type = \"tcp\"\ncheck.fall = 0\n",
			`t.toml:6: virtual_server[0].real_server[0].check.fall: out of range (got 0, want 1..100)`},
		{"real server without address", vsHead + "[[virtual_server.real_server]]\nweight = 2\n",
			`t.toml:3: virtual_server[0].real_server[0]: missing address (want IP:port such as "192.0.2.10:80")`},
		{"quoted unknown key", vsHead + "\"my key\" = 1\n",
			`t.toml:3: virtual_server[0]."my key": unknown key (want one of name, address, fwmark, family, protocol, scheduler, scheduler_flags, forwarding, persistence, persistence_netmask, one_packet, on_down, sorry_server, sorry_weight, sorry_inhibit, quorum, hysteresis, notify_quorum_up, notify_quorum_down, health_consensus, check, real_server)`},
		{"lines stay right after multi-line strings and arrays", "[director]\nname = \"\"\"\n[[virtual_server]]\nweight = 1\n\"\"\"\n" +
			"control_socket = '''\n'''\n" + vsHead + "real_server = [\n  # comment ]\n  { address = \"192.0.2.10:80\" },\n  { address = \"192.0.2.11:80\",\n    weigth = 1 },\n]\n",
			"t.toml:6: director.control_socket: must be an absolute path (got \"\")\n" +
				`t.toml:14: virtual_server[0].real_server[1].weigth: unknown key (did you mean "weight"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(tt.toml))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want error %s", c, tt.want)
			}
			if c != nil {
				t.Errorf("Parse returned a Config along with error %v", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestParseReportsAllErrors checks one run reports every problem, sorted by
// line, each as a *Error.
func TestParseReportsAllErrors(t *testing.T) {
	src := `[director]
resync_interval = "-5s"

[[virtual_server]]
address = "192.0.2.1:80"
scheduler = "fastest"
[virtual_server.check]
type = "tcp"
status = [200]
[[virtual_server.real_server]]
address = "192.0.2.10:80"
weight = 1e3
[[virtual_server.real_server]]
address = "[2001:db8::1]:80"

[[virtual_server]]
address = "192.0.2.1:80"
typo = true
`
	_, err := Parse("multi.toml", []byte(src))
	want := []Error{
		{"multi.toml", 2, "director.resync_interval", "must not be negative (got -5s, want >= 0s)"},
		{"multi.toml", 6, "virtual_server[0].scheduler", `unknown scheduler (got "fastest", want one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos)`},
		{"multi.toml", 9, "virtual_server[0].check.status", "applies only to http and https checks (got type tcp)"},
		{"multi.toml", 12, "virtual_server[0].real_server[0].weight", "wrong type (got float 1000, want integer)"},
		{"multi.toml", 14, "virtual_server[0].real_server[1].address", `address family inet6 does not match the virtual server's inet (got "[2001:db8::1]:80", want an IPv4 address)`},
		{"multi.toml", 17, "virtual_server[1].address", "duplicate virtual server 192.0.2.1:80/tcp (first defined by virtual_server[0] at line 4)"},
		{"multi.toml", 18, "virtual_server[1].typo", "unknown key (want one of name, address, fwmark, family, protocol, scheduler, scheduler_flags, forwarding, persistence, persistence_netmask, one_packet, on_down, sorry_server, sorry_weight, sorry_inhibit, quorum, hysteresis, notify_quorum_up, notify_quorum_down, health_consensus, check, real_server)"},
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Parse error %v (%T) does not unwrap to a list", err, err)
	}
	var got []Error
	for _, e := range joined.Unwrap() {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %v is %T, want *conf.Error", e, e)
		}
		got = append(got, *ce)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s", diff)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{"a.toml", 3, "virtual_server[0].name", "bad"}, "a.toml:3: virtual_server[0].name: bad"},
		{Error{"a.toml", 0, "director", "bad"}, "a.toml: director: bad"},
		{Error{"a.toml", 7, "", "syntax error: x"}, "a.toml:7: syntax error: x"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lvsha.toml")
	if err := os.WriteFile(path, []byte(vsHead), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("os.Hostname: %v", err)
	}
	if c.Director.Name != host || c.Source != path {
		t.Errorf("Load: Director.Name %q, Source %q; want %q, %q", c.Director.Name, c.Source, host, path)
	}

	if err := os.WriteFile(path, []byte("[director]\nname = \"lb9\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(path); err != nil || c.Director.Name != "lb9" {
		t.Errorf("Load with a name: got %+v, %v; want name lb9", c, err)
	}

	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error %v, want one wrapping os.ErrNotExist", err)
	}

	if err := os.WriteFile(path, []byte("[[virtual_server]]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	var ce *Error
	if !errors.As(err, &ce) || ce.File != path || ce.Line != 1 {
		t.Errorf("Load(invalid) error %v, want a *conf.Error at %s:1", err, path)
	}
}

func TestEqual(t *testing.T) {
	parse := func(name, src string) *Config {
		t.Helper()
		c, err := Parse(name, []byte(src))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		return c
	}
	const src = vsHead + "check = { type = \"http\", status = [200, 301] }\n[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\n"
	base := parse("a.toml", src)
	tests := []struct {
		name string
		a, b *Config
		want bool
	}{
		{"same text", base, parse("a.toml", src), true},
		{"same text from another path", base, parse("b.toml", src), true},
		{"defaults spelled out", base, parse("a.toml", src+"weight = 1\nforwarding = \"nat\"\n"), true},
		{"lines moved by a comment", base, parse("a.toml", "# moved\n\n"+src), true},
		{"weight changed", base, parse("a.toml", src+"weight = 2\n"), false},
		{"status changed", base, parse("a.toml", strings.Replace(src, "301", "302", 1)), false},
		{"both nil", nil, nil, true},
		{"one nil", base, nil, false},
	}
	for _, tt := range tests {
		if got := tt.a.Equal(tt.b); got != tt.want {
			t.Errorf("%s: Equal = %t, want %t", tt.name, got, tt.want)
		}
	}
}

// Line finds a key of the parsed file after validation, and the nearest
// enclosing table for a key the file does not spell out.
func TestConfigLine(t *testing.T) {
	src := "# a comment\n" + vsHead + "check = { type = \"tcp\" }\n\n[[virtual_server.real_server]]\naddress = \"192.0.2.10:80\"\n\n[[virtual_server.real_server]]\naddress = \"192.0.2.11:80\"\nweight = 2\n"
	c, err := Parse("a.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(src, "\n")
	lineOf := func(text string, nth int) int {
		for i, l := range lines {
			if strings.TrimSpace(l) == text {
				if nth == 0 {
					return i + 1
				}
				nth--
			}
		}
		t.Fatalf("no line %q", text)
		return 0
	}
	tests := []struct {
		key  string
		want int
	}{
		{"virtual_server[0]", lineOf("[[virtual_server]]", 0)},
		{"virtual_server[0].real_server[0]", lineOf("[[virtual_server.real_server]]", 0)},
		{"virtual_server[0].real_server[1]", lineOf("[[virtual_server.real_server]]", 1)},
		{"virtual_server[0].real_server[1].weight", lineOf("weight = 2", 0)},
		{"virtual_server[0].real_server[0].check", lineOf("[[virtual_server.real_server]]", 0)},
	}
	for _, tt := range tests {
		if got := c.Line(tt.key); got != tt.want {
			t.Errorf("Line(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
	if got := (&Config{}).Line("virtual_server[0]"); got != 0 {
		t.Errorf("Line of a Config not parsed from a file = %d, want 0", got)
	}
}

func TestSchedulersNotShared(t *testing.T) {
	s := Schedulers()
	s[0] = "bogus"
	if Schedulers()[0] == "bogus" {
		t.Error("Schedulers returns shared state")
	}
	_, err := Parse("t.toml", []byte(vsHead+"scheduler = \"rr\"\n"))
	if err != nil {
		t.Errorf("rr refused after mutating a returned slice: %v", err)
	}
}

// Unchanged says a file still holds the bytes a Config was loaded from,
// so a reload can skip parsing it; any other bytes (even a comment that
// changes nothing Equal sees), a file that cannot be read, or a Config
// Load did not read, mean the file must be loaded.
func TestUnchanged(t *testing.T) {
	named := "[director]\nname = \"lb9\"\n"
	tests := []struct {
		name    string
		loaded  string // the file Load read ("": the Config comes from Parse)
		now     string // the file at reload ("": removed)
		want    bool
		equalTo bool // whether Load of now would be Equal to the loaded one
	}{
		{"same bytes", named, named, true, true},
		{"a comment added", named, named + "# tuned\n", false, true},
		{"a setting changed", named, "[director]\nname = \"lb8\"\n", false, false},
		{"file removed", named, "", false, false},
		{"named by the hostname, same bytes", vsHead, vsHead, true, true},
		{"not read by Load", "", named, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lvsha.toml")
			var c *Config
			var err error
			if tt.loaded == "" {
				c, err = Parse(path, []byte(tt.now))
			} else {
				if err := os.WriteFile(path, []byte(tt.loaded), 0o600); err != nil {
					t.Fatal(err)
				}
				c, err = Load(path)
			}
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(path)
			if tt.now != "" {
				if err := os.WriteFile(path, []byte(tt.now), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := Unchanged(path, c); got != tt.want {
				t.Errorf("Unchanged = %v, want %v", got, tt.want)
			}
			if tt.now != "" && tt.loaded != "" {
				again, err := Load(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := again.Equal(c); got != tt.equalTo {
					t.Errorf("Load again: Equal %v, want %v (the digest must not count)", got, tt.equalTo)
				}
			}
		})
	}
}

// Load resolves director.control_socket_group through the host's group
// database; a group the host lacks is an error at the key's line.
func TestLoadControlSocketGroup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lvsha.toml")
	for _, tc := range []struct {
		name, group string
		wantGID     uint32
		wantErr     string
	}{
		{"a name", "root", 0, ""},
		{"a number", "4242", 4242, ""},
		{"a group the host lacks", "no-such-lvsha-group", 0, path + ":3: director.control_socket_group: no group \"no-such-lvsha-group\" on this host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "[director]\nname = \"lb1\"\ncontrol_socket_group = \"" + tc.group + "\"\n"
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Load: %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Errorf("Load: %v", err)
			case c.Director.ControlSocketGroup != tc.group || c.Director.ControlSocketGID != tc.wantGID:
				t.Errorf("group %q gid %d, want %q gid %d", c.Director.ControlSocketGroup, c.Director.ControlSocketGID, tc.group, tc.wantGID)
			}
		})
	}
}
