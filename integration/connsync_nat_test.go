package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Issue #18 over NAT: the real servers route their replies back through
// the director, by a second VIP on the inside network that a sync group
// moves with the outside one (examples/nat-pair-sync.toml).

const (
	natVIP    = "10.79.0.100" // the service, outside
	natGW     = "10.78.0.254" // the real servers' gateway, inside
	natInside = "10.78.0."
)

// natPair builds the NAT pair: client, lb1 and lb2 on the outside LAN
// (10.79.0.0/24: 3, 1, 2); lb1, lb2 and two real servers running echoIn
// on the inside LAN (10.78.0.0/24: 1, 2, 4, 5), whose default route is
// the inside VIP. Each director runs the instance "vi" (the outside VIP,
// with the lvs_sync table lvsSync gives for its inside interface, ""
// for none) and "inside" (the gateway) in one sync group, and the NAT
// service; lb1 (150) is master of both, lb2 (100) backup. It returns the
// directors, the client and each director's inside interface.
func natPair(t testing.TB, lvsSync func(inside string) string) (ds []*director, client string, inside []string) {
	t.Helper()
	return natPairOf(t, [2]func(*director, int, string) string{}, lvsSync)
}

// natPairOf is natPair where ka[i], if set, makes director i a keepalived
// instead: it gives the keepalived.conf of the director at its priority
// with the inside interface, with instances VI (VRID 50) and INSIDE (51)
// in one sync group.
func natPairOf(t testing.TB, ka [2]func(d *director, prio int, inside string) string, lvsSync func(inside string) string) (ds []*director, client string, inside []string) {
	t.Helper()
	hosts, ifs := lan(t, 3)
	client = hosts[2]
	sw := newNetns(t, "sw-in")
	sh(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", sw, "link", "set", "br0", "up")
	join := func(ns, addr string) string {
		veth(t, ns, addr, sw, "")
		sh(t, "ip", "-n", sw, "link", "set", lastVeth(t, sw), "master", "br0")
		return lastVeth(t, ns)
	}
	for i, prio := range []int{150, 100} {
		ns := hosts[i]
		in := join(ns, fmt.Sprintf("%s%d/24", natInside, i+1))
		inside = append(inside, in)
		inNS(t, ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		d := &director{name: fmt.Sprintf("lb%d", i+1), ns: ns, iface: ifs[i], dir: t.TempDir()}
		d.cfg, d.sock = filepath.Join(d.dir, "lvsha.toml"), filepath.Join(d.dir, "s.sock")
		extra := lvsSync(in) + fmt.Sprintf(`
[[vrrp_instance]]
name = "inside"
interface = %q
router_id = 51
priority = %d
virtual_ips = ["%s/24"]

[[vrrp_sync_group]]
name = "nat"
instances = ["vi", "inside"]

[[virtual_server]]
name = "echo"
address = "%s:%s"
scheduler = "rr"
forwarding = "nat"
  [virtual_server.check]
  type = "tcp"
  interval = "500ms"
  timeout = "400ms"
  rise = 1
  fall = 2
  [[virtual_server.real_server]]
  address = "%s4:%s"
  [[virtual_server.real_server]]
  address = "%s5:%s"
`, in, prio, natGW, natVIP, connSyncPort, natInside, connSyncPort, natInside, connSyncPort)
		if ka[i] != nil {
			d.kaConf, d.kaVIPs = filepath.Join(d.dir, "keepalived.conf"), map[string]string{"vi": natVIP, "inside": natGW}
			if err := os.WriteFile(d.kaConf, []byte(ka[i](d, prio, in)), 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			d.writeConfig(t, prio, []string{natVIP + "/24"}, extra)
		}
		ds = append(ds, d)
	}
	for i := range 2 {
		rs := newNetns(t, fmt.Sprintf("rs%d", i+1))
		join(rs, fmt.Sprintf("%s%d/24", natInside, i+4))
		sh(t, "ip", "-n", rs, "route", "add", "default", "via", natGW)
		echoIn(t, rs)
	}
	for _, d := range ds {
		d.start(t)
	}
	lb1, lb2 := ds[0], ds[1]
	eventually(t, "lb1 master of both instances, lb2 backup", 30*time.Second, func() bool {
		s1, s2 := lb1.states(), lb2.states()
		return s1["vi"] == "MASTER" && s1["inside"] == "MASTER" && s2["vi"] == "BACKUP" && s2["inside"] == "BACKUP"
	})
	for _, d := range ds {
		eventually(t, d.name+"'s table with both real servers up", 15*time.Second, func() bool {
			return ipvsWeight(t, d.ns, natInside+"4:"+connSyncPort) == "1" && ipvsWeight(t, d.ns, natInside+"5:"+connSyncPort) == "1"
		})
	}
	return ds, client, inside
}

// TestConnSyncFailoverNAT is TestConnSyncFailover over NAT: connSyncN
// connections through lb1, whose replies come back through the inside
// VIP; lb1 is SIGKILLed and both its links taken down; lb2 takes both
// VIPs (the sync group) and, having learnt every connection with its
// NAT mapping, carries each on: zero errors. The control, without
// lvs_sync, has them reset.
func TestConnSyncFailoverNAT(t *testing.T) {
	lvshaBin(t)
	for _, tt := range []struct {
		name string
		sync bool
	}{{"sync", true}, {"control", false}} {
		t.Run(tt.name, func(t *testing.T) { testConnSyncFailoverNAT(t, tt.sync) })
	}
}

func testConnSyncFailoverNAT(t *testing.T, withSync bool) {
	vs := natVIP + ":" + connSyncPort
	ds, client, inside := natPair(t, func(in string) string {
		if !withSync {
			return ""
		}
		return fmt.Sprintf("[vrrp_instance.lvs_sync]\ninterface = %q\n", in)
	})
	lb1, lb2 := ds[0], ds[1]
	if withSync {
		eventually(t, "lb1 runs the master sync daemon alone, lb2 the backup", 10*time.Second, func() bool {
			return lb1.runsDaemon("master") && lb2.runsDaemon("backup")
		})
	}
	o, tookOver := syncFailover(t, lb1, lb2, client, vs, []string{lb1.iface, inside[0]}, func() {
		syncedBefore(t, lb1, lb2, vs, withSync)
	})
	t.Logf("NAT: lb2 master of both %v after the kill", tookOver.Round(time.Millisecond))
	o.check(t, "NAT failover", withSync)
	if withSync {
		o.checkStall(t, "NAT failover", tookOver)
	}
}
