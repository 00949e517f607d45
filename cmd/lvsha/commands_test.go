package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every shipped example must pass `lvsha check`.
func TestExamplesPassCheck(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.toml")
	if err != nil || len(files) < 5 {
		t.Fatalf("want at least 5 examples, found %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := runMain(context.Background(), []string{"check", "-c", f}, &out, &errb); code != 0 {
				t.Fatalf("lvsha check %s: exit %d\n%s", f, code, errb.String())
			}
			if !strings.Contains(out.String(), "Prot LocalAddress:Port Scheduler Flags") {
				t.Errorf("check output lacks the ipvsadm title:\n%s", out.String())
			}
		})
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[[virtual_server]]\naddress = \"10.0.0.1:80\"\nscheduler = \"nope\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.2:80\"\nweight = 70000\n"), 0o644)
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[[virtual_server]]\naddress = \"10.0.0.1:80\"\nscheduler = \"sh\"\nscheduler_flags = [\"sh-port\"]\npersistence = \"300s\"\npersistence_netmask = 24\n[[virtual_server.real_server]]\naddress = \"10.0.0.2:8080\"\nweight = 3\n"), 0o644)
	// The seed's setup on loopback (the director's own address is its VIP
	// and one of its real servers), and a real server that is the VIP of
	// another virtual service this host does not hold (203.0.113.0/24 is
	// TEST-NET-3: never an address of a test machine).
	self := filepath.Join(dir, "self.toml")
	os.WriteFile(self, []byte("[[virtual_server]]\nname = \"web\"\naddress = \"127.0.0.1:80\"\nforwarding = \"nat\"\n[virtual_server.check]\ntype = \"tcp\"\n\n"+
		"[[virtual_server.real_server]]\naddress = \"127.0.0.1:80\"\n\n[[virtual_server]]\nname = \"front\"\naddress = \"203.0.113.7:443\"\nforwarding = \"nat\"\n[virtual_server.check]\ntype = \"tcp\"\n\n"+
		"[[virtual_server.real_server]]\naddress = \"203.0.113.7:443\"\n"), 0o644)
	vrrpCfg := filepath.Join(dir, "vrrp.toml")
	os.WriteFile(vrrpCfg, []byte(`[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
router_id = 51
priority = 150
virtual_ips = ["10.0.0.100/24", "10.0.0.101"]
track_interfaces = ["eth1"]
  [[vrrp_instance.track_exec]]
  name = "chk"
  weight = 20

[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
router_id = 52
preempt = false
virtual_ips = ["10.0.0.102"]
unicast_peers = ["10.0.0.3"]

[[vrrp_sync_group]]
name = "G"
instances = ["VI_1"]

[[track_exec]]
name = "chk"
command = ["/bin/true"]
`), 0o644)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"valid prints the ipvsadm table", []string{"check", "-c", good}, 0,
			[]string{"TCP  10.0.0.1:80 sh (sh-port) persistent 300 mask 255.255.255.0\n", "  -> 10.0.0.2:8080                Masq    3      0          0"}, nil},
		{"all errors with file:line", []string{"check", "-c", bad}, 1, nil,
			[]string{bad + ":3: virtual_server[0].scheduler", bad + ":6: virtual_server[0].real_server[0].weight"}},
		{"missing file", []string{"check", "-c", filepath.Join(dir, "nope.toml")}, 1, nil, []string{"does not exist"}},
		{"quiet", []string{"check", "-q", "-c", good}, 0, nil, nil},
		{"the file as the argument", []string{"check", good}, 0, []string{good + ": valid, 1 virtual servers"}, nil},
		{"quiet, the file as the argument", []string{"check", "-q", good}, 0, nil, nil},
		{"a second argument", []string{"check", good, "extra"}, 2, nil, []string{`unexpected arguments ["extra"]`}},
		{"the file twice", []string{"check", "-c", good, bad}, 2, nil, []string{"configuration file given twice: -c " + good + " and " + bad}},
		{"run with an unknown log format", []string{"run", "--log-format", "xml", good}, 2, nil, []string{`--log-format "xml": want text or json`}},
		{"the VRRP plan", []string{"check", vrrpCfg}, 0, []string{
			"VRRP instances: 2\n",
			"  VI_1: eth0 vrid 51, VRRPv3, priority 150, advert 100ms, sync group G\n    VIPs on tun: 10.0.0.100/24 10.0.0.101/32\n    tracks interface eth1 (fault), track_exec chk (-20)\n",
			"  VI_2: eth0 vrid 52, VRRPv3, priority 100, advert 100ms, no preempt\n    VIPs on tun: 10.0.0.102/32\n    unicast to 10.0.0.3\n",
		}, nil},
		{"the VRRP plan of a NAT pair with connection sync", []string{"check", "../../examples/nat-pair-sync.toml"}, 0, []string{
			"  outside: eth0 vrid 51, VRRPv3, priority 150, advert 100ms, sync group nat\n    VIPs on tun: 192.168.164.100/24\n" +
				"    connection sync on eth2 (sync_id 51), refresh every 10s, preemption held 13s after the backup daemon starts\n",
			"  inside: eth1 vrid 52, VRRPv3, priority 150, advert 100ms, sync group nat\n    VIPs on tun: 10.0.20.1/24\n",
		}, nil},
		{"a director's probe of its own virtual service", []string{"check", "-c", self}, 0,
			[]string{self + ":8: virtual_server[0].real_server[0]: note: probed at 127.0.0.1:80: tcp 127.0.0.1:80 is virtual service \"web\" of this director",
				self + ":18: virtual_server[1].real_server[0]: warning: not probed, reported down: tcp 203.0.113.7:443 is virtual service \"front\"", "set check.connect_address"}, nil},
		{"quiet still warns of a real server no probe reaches", []string{"check", "-q", "-c", self}, 0, nil,
			[]string{self + ":18: virtual_server[1].real_server[0]: warning: not probed"}},
		{"unknown command", []string{"frobnicate"}, 2, nil, []string{`unknown command "frobnicate"`}},
		{"version", []string{"version"}, 0, []string{"lvsha "}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runMain(context.Background(), tc.args, &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errb.String())
			}
			for _, w := range tc.stdout {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			if strings.HasPrefix(tc.name, "quiet") && out.Len() != 0 {
				t.Errorf("-q printed %q", out.String())
			}
		})
	}
}

// Without a daemon, status says so instead of a bare dial error.
func TestStatusWithoutDaemon(t *testing.T) {
	var out, errb bytes.Buffer
	sock := filepath.Join(t.TempDir(), "none.sock")
	if code := runMain(context.Background(), []string{"status", "-s", sock}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "no lvsha daemon is listening on "+sock) {
		t.Errorf("stderr = %q", errb.String())
	}
}
