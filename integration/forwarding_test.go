package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDirectRoutingAndTunnel carries client traffic through kernel IPVS
// with lvsha's DR and TUN forwarding: each real server holds the VIP itself
// (on lo with ARP suppressed for DR; on tunl0 for TUN) and answers the
// client directly, with the VIP as source.
func TestDirectRoutingAndTunnel(t *testing.T) {
	for _, fwd := range []string{"dr", "tun"} {
		t.Run(fwd, func(t *testing.T) {
			client, lb, web := newNetns(t, "fc"), newNetns(t, "flb"), newNetns(t, "fw")
			const vip = "10.80.0.100"
			veth(t, client, "10.80.1.2/24", lb, "10.80.1.1/24")
			veth(t, web, "10.80.2.10/24", lb, "10.80.2.1/24")
			sh(t, "ip", "-n", lb, "addr", "add", vip+"/32", "dev", "lo")
			inNS(t, lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
			// The real server answers with the VIP as source and its route
			// back goes through the director, which must forward packets
			// whose source is one of its own addresses.
			inNS(t, lb, "sysctl", "-qw", "net.ipv4.conf.all.accept_local=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
			for _, dev := range strings.Fields(inNS(t, lb, "ls", "/proc/sys/net/ipv4/conf")) {
				inNS(t, lb, "sysctl", "-qw", "net.ipv4.conf."+dev+".rp_filter=0", "net.ipv4.conf."+dev+".accept_local=1")
			}
			sh(t, "ip", "-n", client, "route", "add", "default", "via", "10.80.1.1")
			sh(t, "ip", "-n", web, "route", "add", "default", "via", "10.80.2.1")
			switch fwd {
			case "dr":
				sh(t, "ip", "-n", web, "addr", "add", vip+"/32", "dev", "lo")
				inNS(t, web, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
			case "tun":
				sh(t, "ip", "-n", web, "link", "set", "tunl0", "up")
				sh(t, "ip", "-n", web, "addr", "add", vip+"/32", "dev", "tunl0")
				inNS(t, web, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.tunl0.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
			}
			startIn(t, web, []string{envRole + "=web", "LVSHA_NAME=web-" + fwd, "LVSHA_LISTEN=:80"}, self(t))
			// Serving before lvsha starts: under emulation the server can
			// start slower than two failed checks, and a drained service
			// sends the client to the director's own stack (a refusal).
			waitHTTP(t, web, "http://127.0.0.1:80/")
			dir := t.TempDir()
			cfg := filepath.Join(dir, "lvsha.toml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`[director]
control_socket = %q
[[virtual_server]]
address = "%s:80"
scheduler = "wlc"
forwarding = %q
  [virtual_server.check]
  type = "tcp"
  interval = "500ms"
  timeout = "300ms"
  [[virtual_server.real_server]]
  address = "10.80.2.10"
`, filepath.Join(dir, "s.sock"), vip, fwd)), 0o644)
			startIn(t, lb, nil, lvshaBin(t), "run", "-c", cfg)
			want := map[string]string{"dr": "Route", "tun": "Tunnel"}[fwd]
			eventually(t, "table programmed", 10*time.Second, func() bool {
				for _, line := range strings.Split(inNS(t, lb, "ipvsadm", "-Ln"), "\n") {
					if f := strings.Fields(line); len(f) >= 4 && f[1] == "10.80.2.10:80" && f[2] == want && f[3] == "1" {
						return true
					}
				}
				return false
			})
			// Still up after more than fall × interval: the check probes the
			// port the server listens on (the virtual port, none being given).
			time.Sleep(2 * time.Second)
			if w := ipvsWeight(t, lb, "10.80.2.10:80"); w != "1" {
				t.Fatalf("real server weight %s two seconds later, want 1 (checked and up)", w)
			}
			body, err := httpGet(t, client, "http://"+vip+"/")
			if err != nil || body != "web-"+fwd {
				t.Fatalf("client through %s: %q %v\n%s", fwd, body, err, inNS(t, lb, "ipvsadm", "-Ln", "--stats"))
			}
			t.Logf("%s forwarding: the client got %q through the VIP", fwd, body)
		})
	}
}
