package conf

import (
	"bytes"
	"crypto/sha256"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// digestBase is one director's file of a pair: lb1, priority 150.
const digestBase = `[director]
name = "lb1"

[cluster]
key_file = "/etc/lvsha/cluster.key"
bind_address = "192.0.2.1"

[[virtual_server]]
name = "web"
address = "192.0.2.100:80"
[virtual_server.check]
type = "http"
[[virtual_server.real_server]]
address = "192.0.2.10:80"
[[virtual_server.real_server]]
address = "192.0.2.11:80"

[[virtual_server]]
name = "dns"
address = "192.0.2.100:53"
protocol = "udp"

[[vrrp_instance]]
name = "vi1"
interface = "eth0"
router_id = 51
priority = 150
unicast_src = "192.0.2.1"
unicast_peers = ["192.0.2.2"]
virtual_ips = ["192.0.2.100/24"]
`

// TestDigests checks what changes a digest and what does not: the
// normalisation is what keeps two directors of one cluster from reporting
// drift they cannot fix, and each changed object must be named.
func TestDigests(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(string) string
		wantVS    []string // virtual servers whose digests differ from the base
		wantInsts []string // instances whose digests differ
		wantSame  bool     // the whole-config digest is unchanged
	}{
		{"identical", func(s string) string { return s }, nil, nil, true},
		{"comments, blank lines and indentation", func(s string) string {
			return "# lb1\n\n" + strings.ReplaceAll(strings.ReplaceAll(s, "\n[[", "\n\n  # next\n[["), "address = ", "address   =   ")
		}, nil, nil, true},
		{"a default written out", func(s string) string {
			return strings.Replace(s, `name = "dns"`, `name = "dns"`+"\nscheduler = \"wlc\"\nhealth_consensus = \"local\"", 1)
		}, nil, nil, true},
		{"real servers in another order", func(s string) string {
			s = strings.Replace(s, `"192.0.2.10:80"`, `"TMP"`, 1)
			s = strings.Replace(s, `"192.0.2.11:80"`, `"192.0.2.10:80"`, 1)
			return strings.Replace(s, `"TMP"`, `"192.0.2.11:80"`, 1)
		}, nil, nil, true},
		{"the peer's file: its name, bind address, priority and unicast roles", func(s string) string {
			s = strings.Replace(s, `name = "lb1"`, `name = "lb2"`, 1)
			s = strings.Replace(s, `bind_address = "192.0.2.1"`, `bind_address = "192.0.2.2"`, 1)
			s = strings.Replace(s, "priority = 150", "priority = 100", 1)
			s = strings.Replace(s, `unicast_src = "192.0.2.1"`, `unicast_src = "192.0.2.2"`, 1)
			return strings.Replace(s, `unicast_peers = ["192.0.2.2"]`, `unicast_peers = ["192.0.2.1"]`, 1)
		}, nil, nil, true},
		{"the host's own interface names", func(s string) string {
			return strings.Replace(s, `interface = "eth0"`, `interface = "ens3"`, 1)
		}, nil, nil, true},
		{"a tracked interface", func(s string) string {
			return strings.Replace(s, `interface = "eth0"`, "interface = \"eth0\"\ntrack_interfaces = [\"eth1\"]", 1)
		}, nil, []string{"vi1"}, false},
		{"virtual servers in another order", func(s string) string {
			i, j := strings.Index(s, "[[virtual_server]]\nname = \"web\""), strings.Index(s, "[[virtual_server]]\nname = \"dns\"")
			k := strings.Index(s, "[[vrrp_instance]]")
			return s[:i] + s[j:k] + s[i:j] + s[k:]
		}, nil, nil, true},
		{"a real server's weight", func(s string) string {
			return strings.Replace(s, `address = "192.0.2.11:80"`, "address = \"192.0.2.11:80\"\nweight = 2", 1)
		}, []string{"web"}, nil, false},
		{"a check's path", func(s string) string {
			return strings.Replace(s, `type = "http"`, "type = \"http\"\npath = \"/health\"", 1)
		}, []string{"web"}, nil, false},
		{"health_consensus", func(s string) string {
			return strings.Replace(s, `protocol = "udp"`, "protocol = \"udp\"\nhealth_consensus = \"quorum\"", 1)
		}, []string{"dns"}, nil, false},
		{"a VIP", func(s string) string {
			return strings.Replace(s, `"192.0.2.100/24"`, `"192.0.2.101/24"`, 1)
		}, nil, []string{"vi1"}, false},
		{"a third router", func(s string) string {
			return strings.Replace(s, `["192.0.2.2"]`, `["192.0.2.2", "192.0.2.3"]`, 1)
		}, nil, []string{"vi1"}, false},
		{"a virtual server only one side has", func(s string) string {
			return strings.Replace(s, "[[vrrp_instance]]", "[[virtual_server]]\nname = \"mail\"\naddress = \"192.0.2.100:25\"\n\n[[vrrp_instance]]", 1)
		}, []string{"mail"}, nil, false},
		{"a track_exec", func(s string) string {
			return s + "[[track_exec]]\nname = \"x\"\ncommand = [\"/bin/true\"]\n"
		}, nil, nil, false},
	}
	base := mustParse(t, digestBase).Digests()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.edit(digestBase)).Digests()
			if d := cmp.Diff(tt.wantVS, differing(base.VirtualServers, got.VirtualServers)); d != "" {
				t.Errorf("virtual servers differing (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantInsts, differing(base.Instances, got.Instances)); d != "" {
				t.Errorf("instances differing (-want +got):\n%s", d)
			}
			if same := got.Config == base.Config; same != tt.wantSame {
				t.Errorf("config digest unchanged = %t, want %t", same, tt.wantSame)
			}
		})
	}
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("d.toml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// differing lists the names whose digests differ or exist on one side.
func differing(a, b map[string]Digest) []string {
	var out []string
	for n, d := range a {
		if e, ok := b[n]; !ok || e != d {
			out = append(out, n)
		}
	}
	for n := range b {
		if _, ok := a[n]; !ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// A password enters an instance's digest under the cluster key: another
// password is drift, but without the key the digest cannot be recomputed
// to try passwords against it.
func TestDigestPasswordKeyed(t *testing.T) {
	in := VRRPInstance{Name: "vi", Version: 2, AuthPass: "Pw7xQ9zK"}
	key1, key2 := bytes.Repeat([]byte{1}, ClusterKeySize), bytes.Repeat([]byte{2}, ClusterKeySize)
	other := in
	other.AuthPass = "Qz3vN8rL"
	noPass := in
	noPass.AuthPass = ""
	for _, tc := range []struct {
		name string
		a, b Digest
		same bool
	}{
		{"same password, same key", instanceDigest(in, key1), instanceDigest(in, key1), true},
		{"another password", instanceDigest(in, key1), instanceDigest(other, key1), false},
		{"another key", instanceDigest(in, key1), instanceDigest(in, key2), false},
		{"the password in clear does not give the digest", instanceDigest(in, key1), sha256.Sum256(canonical(struct {
			Instance VRRPInstance
			Routers  []netip.Addr
		}{in, nil})), false},
		{"no password: the key changes nothing", instanceDigest(noPass, key1), instanceDigest(noPass, key2), true},
	} {
		if (tc.a == tc.b) != tc.same {
			t.Errorf("%s: digests equal %v, want %v", tc.name, tc.a == tc.b, tc.same)
		}
	}
}
