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
)

func TestClusterGood(t *testing.T) {
	tests := []struct {
		name, toml string
		want       *Cluster
	}{
		{"no cluster table", "", nil},
		{"defaults", "[cluster]\nkey_file = \"/etc/lvsha/cluster.key\"\n", &Cluster{
			BindAddress: netip.IPv4Unspecified(), BindPort: 7946, AdvertisePort: 7946,
			KeyFile:        "/etc/lvsha/cluster.key",
			GossipInterval: 100 * time.Millisecond, GossipNodes: 3,
			ProbeInterval: 500 * time.Millisecond, ProbeTimeout: 200 * time.Millisecond, SuspicionMult: 4,
			PushPullInterval: 10 * time.Second, RejoinInterval: 10 * time.Second,
		}},
		{"everything set", `[cluster]
bind_address = "192.0.2.1"
bind_port = 7000
advertise_port = 7001
seeds = ["192.0.2.2", "192.0.2.3:7002", "2001:db8::4", "[2001:db8::5]:7003"]
key_file = "/k"
gossip_interval = "50ms"
gossip_nodes = 4
probe_interval = "1s"
probe_timeout = "300ms"
suspicion_mult = 5
push_pull_interval = "30s"
rejoin_interval = "5s"
`, &Cluster{
			BindAddress: netip.MustParseAddr("192.0.2.1"), BindPort: 7000,
			AdvertiseAddress: netip.MustParseAddr("192.0.2.1"), AdvertisePort: 7001,
			Seeds:   []netip.AddrPort{ap("192.0.2.2:7000"), ap("192.0.2.3:7002"), ap("[2001:db8::4]:7000"), ap("[2001:db8::5]:7003")},
			KeyFile: "/k", GossipInterval: 50 * time.Millisecond, GossipNodes: 4,
			ProbeInterval: time.Second, ProbeTimeout: 300 * time.Millisecond, SuspicionMult: 5,
			PushPullInterval: 30 * time.Second, RejoinInterval: 5 * time.Second,
		}},
		{"advertise differs from a wildcard bind", "[cluster]\nbind_address = \"::\"\nadvertise_address = \"2001:db8::1\"\nkey_file = \"/k\"\n", &Cluster{
			BindAddress: netip.IPv6Unspecified(), BindPort: 7946,
			AdvertiseAddress: netip.MustParseAddr("2001:db8::1"), AdvertisePort: 7946, KeyFile: "/k",
			GossipInterval: 100 * time.Millisecond, GossipNodes: 3,
			ProbeInterval: 500 * time.Millisecond, ProbeTimeout: 200 * time.Millisecond, SuspicionMult: 4,
			PushPullInterval: 10 * time.Second, RejoinInterval: 10 * time.Second,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(tt.toml))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, c.Cluster, cmpOpts...); d != "" {
				t.Errorf("cluster (-want +got):\n%s", d)
			}
		})
	}
}

func TestClusterPerObjectSettings(t *testing.T) {
	src := `[cluster]
key_file = "/k"
[[virtual_server]]
address = "192.0.2.1:80"
health_consensus = "quorum"
[[virtual_server]]
address = "192.0.2.1:81"
[[vrrp_instance]]
name = "a"
interface = "eth0"
router_id = 1
virtual_ips = ["192.0.2.100"]
split_brain = "resolve"
[[vrrp_instance]]
name = "b"
interface = "eth0"
router_id = 2
virtual_ips = ["192.0.2.101"]
`
	c, err := Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{c.VirtualServers[0].HealthConsensus, c.VirtualServers[1].HealthConsensus, c.VRRPInstances[0].SplitBrain, c.VRRPInstances[1].SplitBrain}
	if d := cmp.Diff([]string{"quorum", "local", "resolve", "report"}, got); d != "" {
		t.Errorf("health_consensus, split_brain (-want +got):\n%s", d)
	}
}

func TestClusterBad(t *testing.T) {
	head := "[cluster]\nkey_file = \"/k\"\n"
	vrrp := "[[vrrp_instance]]\nname = \"a\"\ninterface = \"eth0\"\nrouter_id = 1\nvirtual_ips = [\"192.0.2.1\"]\n"
	tests := []struct{ name, toml, want string }{
		{"no key file", "[cluster]\nbind_port = 7946\n",
			"t.toml:1: cluster.key_file: missing (want the path of a file holding 32 random bytes, e.g. from head -c 32 /dev/urandom: gossip is never sent in plaintext)"},
		{"relative key file", "[cluster]\nkey_file = \"cluster.key\"\n",
			`t.toml:2: cluster.key_file: must be an absolute path (got "cluster.key")`},
		{"unknown key", head + "port = 1\n",
			`t.toml:3: cluster.port: unknown key (want one of bind_address, bind_port, advertise_address, advertise_port, seeds, key_file, gossip_interval, gossip_nodes, probe_interval, probe_timeout, suspicion_mult, push_pull_interval, rejoin_interval)`},
		{"host name bind", head + "bind_address = \"lb1\"\n",
			`t.toml:3: cluster.bind_address: invalid IP address (got "lb1", want an address such as "192.0.2.1"; no host names: gossip starts without DNS)`},
		{"wildcard advertise", head + "advertise_address = \"0.0.0.0\"\n",
			"t.toml:3: cluster.advertise_address: unspecified address (got 0.0.0.0, want the address the other directors reach this one at)"},
		{"port out of range", head + "bind_port = 70000\n",
			"t.toml:3: cluster.bind_port: out of range (got 70000, want 1..65535)"},
		{"seed with a name", head + "seeds = [\"192.0.2.2\", \"lb2:7946\"]\n",
			`t.toml:3: cluster.seeds[1]: invalid seed (got "lb2:7946", want "IP" or "IP:port" such as "192.0.2.2" or "[2001:db8::2]:7946"; no host names)`},
		{"seed port 0", head + "seeds = [\"192.0.2.2:0\"]\n",
			`t.toml:3: cluster.seeds[0]: invalid seed (got "192.0.2.2:0", want "IP" or "IP:port" such as "192.0.2.2" or "[2001:db8::2]:7946"; no host names)`},
		{"seed twice, once with the default port", head + "seeds = [\"192.0.2.2\", \"192.0.2.2:7946\"]\n",
			"t.toml:3: cluster.seeds[1]: duplicate seed 192.0.2.2:7946 (first listed as cluster.seeds[0])"},
		{"probe timeout not below interval", head + "probe_interval = \"200ms\"\n",
			"t.toml:3: cluster.probe_interval: probe_timeout must be shorter than probe_interval (got probe_timeout 200ms, probe_interval 200ms)"},
		{"zero gossip interval", head + "gossip_interval = \"0s\"\n",
			"t.toml:3: cluster.gossip_interval: too short (got 0s, want at least 1ms)"},
		{"gossip_nodes out of range", head + "gossip_nodes = 0\n",
			"t.toml:3: cluster.gossip_nodes: out of range (got 0, want 1..16)"},
		{"quorum without a cluster", "[[virtual_server]]\naddress = \"192.0.2.1:80\"\nhealth_consensus = \"quorum\"\n",
			`t.toml:3: virtual_server[0].health_consensus: needs a [cluster] table (got "quorum", want "local" for a director without peers)`},
		{"unknown consensus", head + "[[virtual_server]]\naddress = \"192.0.2.1:80\"\nhealth_consensus = \"majority\"\n",
			`t.toml:5: virtual_server[0].health_consensus: unknown health_consensus (got "majority", want one of local, any, quorum)`},
		{"resolve without a cluster", vrrp + "split_brain = \"resolve\"\n",
			`t.toml:6: vrrp_instance[0].split_brain: needs a [cluster] table (got "resolve": split brain is seen through gossip; want "report" or a [cluster])`},
		{"unknown split_brain", head + vrrp + "split_brain = \"fight\"\n",
			`t.toml:8: vrrp_instance[0].split_brain: unknown split_brain action (got "fight", want one of report, resolve)`},
		{"every error at once", "[cluster]\nbind_address = \"x\"\nseeds = [\"y\"]\n",
			"t.toml:1: cluster.key_file: missing (want the path of a file holding 32 random bytes, e.g. from head -c 32 /dev/urandom: gossip is never sent in plaintext)\n" +
				`t.toml:2: cluster.bind_address: invalid IP address (got "x", want an address such as "192.0.2.1"; no host names: gossip starts without DNS)` + "\n" +
				`t.toml:3: cluster.seeds[0]: invalid seed (got "y", want "IP" or "IP:port" such as "192.0.2.2" or "[2001:db8::2]:7946"; no host names)`},
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

// TestClusterKey checks Load reads the key as given and refuses every key
// file it cannot use, rather than gossip in plaintext.
func TestClusterKey(t *testing.T) {
	dir := t.TempDir()
	key := []byte("0123456789abcdef0123456789abcdef")
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.key", key, 0o600)
	newline := write("newline.key", append(key, '\n'), 0o600)
	short := write("short.key", key[:16], 0o600)
	unreadable := write("unreadable.key", key, 0o000)
	tests := []struct {
		name, keyFile string
		wantKey       []byte
		wantErr       string // substring of the one error; "" for none
	}{
		{"32 bytes", good, key, ""},
		{"a trailing newline is a 33rd byte", newline, nil, "cluster.key_file: wrong size for the cluster key (got 33 bytes in " + newline + ", want exactly 32"},
		{"16 bytes", short, nil, "cluster.key_file: wrong size for the cluster key (got 16 bytes in " + short + ", want exactly 32"},
		{"missing", filepath.Join(dir, "none.key"), nil, "cluster.key_file: cannot read the cluster key (open " + filepath.Join(dir, "none.key") + ": no such file or directory;"},
		{"directory", dir, nil, "cluster.key_file: cannot read the cluster key (read " + dir + ": is a directory;"},
	}
	if os.Geteuid() != 0 { // root reads a mode 000 file
		tests = append(tests, struct {
			name, keyFile string
			wantKey       []byte
			wantErr       string
		}{"unreadable", unreadable, nil, "permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write("lvsha.toml", []byte("[director]\nname = \"lb1\"\n\n[cluster]\nkey_file = \""+tt.keyFile+"\"\n"), 0o600)
			c, err := Load(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if string(c.Cluster.Key) != string(tt.wantKey) {
					t.Errorf("Key = %q, want %q", c.Cluster.Key, tt.wantKey)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Line != 5 || ce.Key != "cluster.key_file" || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error %v, want a *conf.Error at line 5 containing %q", err, tt.wantErr)
			}
			if c != nil {
				t.Errorf("Load returned a Config with its error")
			}
		})
	}

	// A new key behind an unchanged file is a new configuration.
	path := write("lvsha.toml", []byte("[director]\nname = \"lb1\"\n[cluster]\nkey_file = \""+good+"\"\n"), 0o600)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !Unchanged(path, c) {
		t.Fatal("Unchanged = false right after Load")
	}
	write("good.key", []byte("fedcba9876543210fedcba9876543210"), 0o600)
	if Unchanged(path, c) {
		t.Error("Unchanged = true after the key file changed")
	}
}
