package integration

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vsConns is the connection count `ipvsadm -Ln --stats` in ns shows for
// the virtual service vs ("10.79.0.100:80"), or -1 if it is absent.
func vsConns(t testing.TB, ns, vs string) int {
	t.Helper()
	for _, line := range strings.Split(inNS(t, ns, "ipvsadm", "-Ln", "--stats"), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "TCP" && f[1] == vs {
			n, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("ipvsadm --stats line %q: %v", line, err)
			}
			return n
		}
	}
	return -1
}

// TestHAPairDR is lvsha's whole job on one LAN: two directors, each
// health-checking the same two real servers and keeping the same IPVS
// table (DR forwarding), elect a master with VRRP. The client reaches the
// real servers through the master's IPVS. When the master's daemon is
// SIGKILLed, the backup, its table already programmed, takes the VIP and
// forwards at once. When a real server stops, the new master drains it.
func TestHAPairDR(t *testing.T) {
	const vip = "10.79.0.100"
	hosts, ifs := lan(t, 5)
	client, rs := hosts[2], hosts[3:]
	for i, h := range rs {
		// DR: each real server holds the VIP without answering ARP for it.
		sh(t, "ip", "-n", h, "addr", "add", vip+"/32", "dev", "lo")
		inNS(t, h, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
		startIn(t, h, []string{envRole + "=web", fmt.Sprintf("LVSHA_NAME=rs%d", i+1), "LVSHA_LISTEN=:80"}, self(t))
		waitHTTP(t, h, "http://127.0.0.1:80/")
	}
	var ds []*director
	for i, prio := range []int{150, 100} {
		d := &director{name: fmt.Sprintf("lb%d", i+1), ns: hosts[i], iface: ifs[i], dir: t.TempDir()}
		d.cfg, d.sock = d.dir+"/lvsha.toml", d.dir+"/s.sock"
		d.writeConfig(t, prio, []string{vip + "/24"}, `
[[virtual_server]]
name = "web"
address = "`+vip+`:80"
scheduler = "rr"
forwarding = "dr"
  [virtual_server.check]
  type = "tcp"
  interval = "200ms"
  timeout = "150ms"
  rise = 1
  fall = 1
  [[virtual_server.real_server]]
  address = "10.79.0.4"
  [[virtual_server.real_server]]
  address = "10.79.0.5"
`)
		d.start(t)
		ds = append(ds, d)
	}
	lb1, lb2 := ds[0], ds[1]
	eventually(t, "lb1 master, lb2 backup", 20*time.Second, func() bool { return lb1.state() == "MASTER" && lb2.state() == "BACKUP" })
	eventually(t, "only lb1 holds the VIP", 5*time.Second, func() bool { return vipHolders(t, ds, vip) == "lb1" })
	// Warm standby: the backup's table is the master's, real servers up.
	for _, d := range ds {
		eventually(t, d.name+"'s table with both real servers up", 10*time.Second, func() bool {
			return ipvsWeight(t, d.ns, "10.79.0.4:80") == "1" && ipvsWeight(t, d.ns, "10.79.0.5:80") == "1"
		})
	}
	t.Logf("both directors' tables:\nlb1:\n%s\nlb2:\n%s", inNS(t, lb1.ns, "ipvsadm", "-Ln"), inNS(t, lb2.ns, "ipvsadm", "-Ln"))

	url := "http://" + vip + "/"
	counts, failed, _, _ := pollVIP(t, client, url, time.Second)
	if failed != 0 || counts["rs1"] == 0 || counts["rs2"] == 0 {
		t.Fatalf("client through lb1: %v, %d failed; want rs1 and rs2 in turn", counts, failed)
	}
	// The kernel sums its per-CPU counters into these totals every 2 s
	// (its rate estimator's period), so they lag the traffic.
	eventually(t, "connections counted through lb1", 5*time.Second, func() bool { return vsConns(t, lb1.ns, vip+":80") > 0 })
	if c2 := vsConns(t, lb2.ns, vip+":80"); c2 != 0 {
		t.Fatalf("%d connections through the backup lb2; want all through the master", c2)
	}
	t.Logf("client through the master lb1: %v", counts)

	// The master's daemon dies, its link up. A request every 10 ms, each
	// on its own connection, times the first answer after it: with lb1
	// dead, any answer came through lb2.
	syscall.Kill(-lb1.cmd.Process.Pid, syscall.SIGKILL)
	killed := time.Now()
	answered := startRace(t, client, url, "rs1", "", 150, 5*time.Second)
	lb1.cmd.Wait()
	at, _, _, ok := answered()
	if !ok {
		t.Fatal("no answer through lb2 within 5 s of the kill")
	}
	if st := lb2.state(); st != "MASTER" {
		t.Fatalf("lb2 is %s after answering, want MASTER", st)
	}
	t.Logf("lb1's daemon SIGKILLed: the client was answered through lb2 %v later", at.Sub(killed).Round(time.Millisecond))
	if h := vipHolders(t, ds, vip); h != "lb2" {
		t.Errorf("VIP holders after the kill: %q, want lb2 only", h)
	}
	before := vsConns(t, lb2.ns, vip+":80")
	counts, failed, _, _ = pollVIP(t, client, url, time.Second)
	if failed != 0 || counts["rs1"] == 0 || counts["rs2"] == 0 {
		t.Fatalf("client through lb2: %v, %d failed; want rs1 and rs2 in turn", counts, failed)
	}
	// The totals lag by up to 2 s, as above.
	eventually(t, "the client's connections counted through lb2's IPVS", 5*time.Second, func() bool {
		return vsConns(t, lb2.ns, vip+":80") > before
	})
	t.Logf("client through the new master lb2: %v", counts)

	// A real server stops: the new master drains it.
	sh(t, "ip", "netns", "exec", rs[0], "ip", "link", "set", ifs[3], "down")
	eventually(t, "lb2 drains rs1", 10*time.Second, func() bool { return ipvsWeight(t, lb2.ns, "10.79.0.4:80") == "0" })
	counts, failed, _, _ = pollVIP(t, client, url, time.Second)
	if failed != 0 || counts["rs1"] != 0 || counts["rs2"] == 0 {
		t.Fatalf("with rs1 down: %v, %d failed; want rs2 only", counts, failed)
	}
	t.Logf("rs1 down: lb2 drained it; the client got %v", counts)
}
