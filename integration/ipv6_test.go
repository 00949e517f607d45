package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestIPv6NAT carries client traffic to an IPv6 VIP through kernel IPVS
// over NAT to two IPv6 web servers, and drains one when it fails.
func TestIPv6NAT(t *testing.T) {
	client, lb, web1, web2 := newNetns(t, "c6"), newNetns(t, "lb6"), newNetns(t, "w61"), newNetns(t, "w62")
	addr := func(ns, cidr string) {
		sh(t, "ip", "-n", ns, "addr", "add", cidr, "dev", lastVeth(t, ns), "nodad")
	}
	veth(t, client, "", lb, "")
	addr(client, "2001:db8:1::2/64")
	addr(lb, "2001:db8:1::1/64")
	veth(t, web1, "", lb, "")
	addr(web1, "2001:db8:164::10/64")
	addr(lb, "2001:db8:164::1/64")
	veth(t, web2, "", lb, "")
	addr(web2, "2001:db8:164::11/64")
	// Unlike ARP, Linux answers neighbour solicitations only for addresses
	// on the receiving interface: web2's link needs the gateway address too.
	sh(t, "ip", "-n", lb, "addr", "add", "2001:db8:164::1/128", "dev", lastVeth(t, lb), "nodad")
	sh(t, "ip", "-n", lb, "-6", "route", "add", "2001:db8:164::11/128", "dev", lastVeth(t, lb))
	sh(t, "ip", "-n", lb, "addr", "add", "2001:db8:164::100/128", "dev", "lo")
	inNS(t, lb, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	sh(t, "ip", "-n", client, "-6", "route", "add", "default", "via", "2001:db8:1::1")
	for _, w := range []string{web1, web2} {
		sh(t, "ip", "-n", w, "-6", "route", "add", "default", "via", "2001:db8:164::1")
	}
	webs := map[string]*exec.Cmd{}
	for name, ns := range map[string]string{"web1": web1, "web2": web2} {
		webs[name] = startIn(t, ns, []string{envRole + "=web", "LVSHA_NAME=" + name, "LVSHA_LISTEN=[::]:80"}, self(t))
	}
	waitHTTP(t, lb, "http://[2001:db8:164::10]/")
	waitHTTP(t, lb, "http://[2001:db8:164::11]/")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lvsha.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[director]
control_socket = %q
[[virtual_server]]
address = "[2001:db8:164::100]:80"
scheduler = "rr"
  [virtual_server.check]
  type = "http"
  interval = "500ms"
  timeout = "300ms"
  [[virtual_server.real_server]]
  address = "[2001:db8:164::10]:80"
  [[virtual_server.real_server]]
  address = "[2001:db8:164::11]:80"
`, filepath.Join(dir, "s.sock"))), 0o644)
	startIn(t, lb, nil, lvshaBin(t), "run", "-c", cfg)

	get := func() (string, error) { return httpGet(t, client, "http://[2001:db8:164::100]/") }
	weight := func(rs string) string { return ipvsWeight(t, lb, rs) }
	eventually(t, "IPv6 table programmed", 10*time.Second, func() bool {
		return weight("[2001:db8:164::10]:80") == "1" && weight("[2001:db8:164::11]:80") == "1"
	})
	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		body, err := get()
		if err != nil {
			t.Fatalf("IPv6 request %d: %v\nclient: %s\nlb: %s", i, err, inNS(t, client, "ip", "-6", "addr"), inNS(t, lb, "ip", "-6", "route"))
		}
		seen[body]++
	}
	if seen["web1"] != 2 || seen["web2"] != 2 {
		t.Fatalf("4 requests over rr reached %v, want web1 and web2 twice each", seen)
	}
	stopProc(webs["web2"])
	eventually(t, "IPv6 web2 drained", 10*time.Second, func() bool { return weight("[2001:db8:164::11]:80") == "0" })
	for i := 0; i < 3; i++ {
		if body, err := get(); err != nil || body != "web1" {
			t.Fatalf("with web2 down got %q, %v; want web1", body, err)
		}
	}
	t.Logf("IPv6 NAT through kernel IPVS:\n%s", inNS(t, lb, "ipvsadm", "-Ln"))
}
