package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vsClients is the client ends (address:port) of the entries of the
// virtual service vs ("10.79.0.100:80") in the IPVS connection table of ns.
// Unlike the service's connection total, which the kernel folds in from
// per-CPU counters only every 2 s, an entry is there as soon as its
// first packet was forwarded, and stays for a while after it closes.
func vsClients(t testing.TB, ns, vs string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	// pro expire state source virtual destination
	for _, line := range strings.Split(inNS(t, ns, "ipvsadm", "-Lnc"), "\n") {
		if f := strings.Fields(line); len(f) == 6 && f[0] == "TCP" && f[4] == vs {
			out[f[3]] = true
		}
	}
	return out
}

// TestHAPairDR is lvsha's whole job on one LAN: two directors, each
// health-checking the same two real servers and keeping the same IPVS
// table (DR forwarding), elect a master with VRRP. The client reaches the
// real servers through the master's IPVS. When the master's daemon is
// SIGKILLed, the backup, its table already programmed, takes the VIP and
// forwards at once. When a real server stops, the new master drains it.
func TestHAPairDR(t *testing.T) {
	const vip = "10.79.0.100"
	ds, hosts, ifs := drPair(t, vip, "80", func(ns string, i int) {
		startIn(t, ns, []string{envRole + "=web", fmt.Sprintf("LVSHA_NAME=rs%d", i+1), "LVSHA_LISTEN=:80"}, self(t))
		waitHTTP(t, ns, "http://127.0.0.1:80/")
	}, func(*director) string { return "" }, `
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
	lb1, lb2 := ds[0], ds[1]
	client, rs := hosts[2], hosts[3:]
	t.Logf("both directors' tables:\nlb1:\n%s\nlb2:\n%s", inNS(t, lb1.ns, "ipvsadm", "-Ln"), inNS(t, lb2.ns, "ipvsadm", "-Ln"))

	url := "http://" + vip + "/"
	counts, failed, _, _ := pollVIP(t, client, url, time.Second)
	if failed != 0 || counts["rs1"] == 0 || counts["rs2"] == 0 {
		t.Fatalf("client through lb1: %v, %d failed; want rs1 and rs2 in turn", counts, failed)
	}
	if c1, c2 := vsClients(t, lb1.ns, vip+":80"), vsClients(t, lb2.ns, vip+":80"); len(c1) == 0 || len(c2) != 0 {
		t.Fatalf("connections through lb1 %d and lb2 %d; want all through the master", len(c1), len(c2))
	}
	t.Logf("client through the master lb1: %v", counts)

	// The master's daemon dies, its link up. A request every 10 ms, each
	// on its own connection, times the first answer after it: with lb1
	// dead, any answer came through lb2.
	syscall.Kill(-lb1.cmd.Process.Pid, syscall.SIGKILL)
	killed := time.Now()
	answered := startRace(t, client, url, "rs1", "", 150, 5*time.Second)
	lb1.cmd.Wait()
	at, _, _, _ := answered()
	if at.IsZero() {
		t.Fatal("no answer through lb2 within 5 s of the kill")
	}
	if st := lb2.state(); st != "MASTER" {
		t.Fatalf("lb2 is %s after answering, want MASTER", st)
	}
	t.Logf("lb1's daemon SIGKILLed: the client was answered through lb2 %v later", at.Sub(killed).Round(time.Millisecond))
	if h := vipHolders(t, ds, vip); h != "lb2" {
		t.Errorf("VIP holders after the kill: %q, want lb2 only", h)
	}
	before := vsClients(t, lb2.ns, vip+":80")
	counts, failed, _, _ = pollVIP(t, client, url, time.Second)
	if failed != 0 || counts["rs1"] == 0 || counts["rs2"] == 0 {
		t.Fatalf("client through lb2: %v, %d failed; want rs1 and rs2 in turn", counts, failed)
	}
	newConns := 0
	for c := range vsClients(t, lb2.ns, vip+":80") {
		if !before[c] {
			newConns++
		}
	}
	if newConns == 0 {
		t.Fatal("no new entry in lb2's IPVS connection table: the client did not go through lb2's IPVS")
	}
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

// drPair is lvsha's DR pair on one LAN of five hosts: directors lb1
// (priority 150) and lb2 (100), a client (returned), and two real servers
// 10.79.0.4 and .5 that hold vip on lo without answering ARP for it,
// each serving through serve(its namespace, its index). Each director's
// configuration is extra(d), then vsTOML, a virtual server on port of
// those real servers. It returns once lb1 is master, lb2 backup, only lb1
// holds the VIP, and both tables have both real servers up (the backup's
// standby is warm), with the LAN's hosts and interfaces as lan gives
// them: the directors, the client (hosts[2]), the real servers.
func drPair(t *testing.T, vip, port string, serve func(ns string, i int), extra func(d *director) string, vsTOML string) (ds []*director, hosts, ifs []string) {
	t.Helper()
	return drPairOf(t, [2]func(*director) string{}, vip, port, serve, extra, vsTOML)
}

// drPairOf is drPair where ka[i], if set, makes director i a keepalived
// instead: it gives the keepalived.conf of the director (whose ns and
// iface are set), with VRRP instance VI, VRID 50, at its priority.
// extra is called for every director, after its links are made: what it
// sets up in the namespace serves both kinds, its TOML only lvsha.
func drPairOf(t testing.TB, ka [2]func(*director) string, vip, port string, serve func(ns string, i int), extra func(d *director) string, vsTOML string) (ds []*director, hosts, ifs []string) {
	t.Helper()
	hosts, ifs = lan(t, 5)
	for i, h := range hosts[3:] {
		sh(t, "ip", "-n", h, "addr", "add", vip+"/32", "dev", "lo")
		inNS(t, h, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
		serve(h, i)
	}
	for i, prio := range []int{150, 100} {
		d := &director{name: fmt.Sprintf("lb%d", i+1), ns: hosts[i], iface: ifs[i], dir: t.TempDir()}
		d.cfg, d.sock = d.dir+"/lvsha.toml", d.dir+"/s.sock"
		x := extra(d)
		if ka[i] != nil {
			d.kaConf, d.kaVIPs = d.dir+"/keepalived.conf", map[string]string{"vi": vip}
			if err := os.WriteFile(d.kaConf, []byte(ka[i](d)), 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			d.writeConfig(t, prio, []string{vip + "/24"}, x+vsTOML)
		}
		d.start(t)
		ds = append(ds, d)
	}
	lb1, lb2 := ds[0], ds[1]
	eventually(t, "lb1 master, lb2 backup", 30*time.Second, func() bool { return lb1.state() == "MASTER" && lb2.state() == "BACKUP" })
	eventually(t, "only lb1 holds the VIP", 5*time.Second, func() bool { return vipHolders(t, ds, vip) == "lb1" })
	for _, d := range ds {
		eventually(t, d.name+"'s table with both real servers up", 15*time.Second, func() bool {
			return ipvsWeight(t, d.ns, "10.79.0.4:"+port) == "1" && ipvsWeight(t, d.ns, "10.79.0.5:"+port) == "1"
		})
	}
	return ds, hosts, ifs
}
