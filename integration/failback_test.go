package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue #18, beyond keepalived: connections made through the backup
// while the higher-priority director was away survive its return.

const (
	// failbackRefresh is lvs_sync refresh_period; failbackHold the
	// preempt_hold conf derives from it (refresh_period + 3 s).
	failbackRefresh = 10 * time.Second
	failbackHold    = failbackRefresh + 3*time.Second
	// failbackEvery is how often the connections made through the
	// backup exchange a line: slow ones, which the sync threshold's
	// packet count alone would announce rarely.
	failbackEvery = time.Second
	// failbackReturn is when lb1's links come back, after the
	// connections through lb2 opened.
	failbackReturn = 4 * time.Second
)

// TestConnSyncFailback: a pair with lvs_sync and refresh_period 10s, DR
// (the sync messages on a link of their own) and NAT (natPair, on the
// inside link). The master (lb1, priority 150) is SIGKILLed and its links
// taken down; lb2 takes over, and the client opens connSyncN connections
// through it, each exchanging a line every second. lb1 comes back (links
// up, lvsha started) while lb2's kernel has announced those connections
// only once, to nobody. With preempt_hold (the default, 13s), lb1 follows
// lb2 until its backup daemon has heard every connection again, then
// preempts: every connection goes on through lb1, zero errors. The
// control (preempt_hold = "0s") preempts at once and its kernel knows
// none of them: they are reset. It logs the preemption delay of both
// and, with the hold over DR, the sync traffic on the sync link.
func TestConnSyncFailback(t *testing.T) {
	lvshaBin(t)
	for _, topo := range []string{"dr", "nat"} {
		for _, tt := range []struct {
			name string
			hold bool
		}{{"hold", true}, {"control", false}} {
			t.Run(topo+"/"+tt.name, func(t *testing.T) {
				if topo == "dr" {
					testConnSyncFailback(t, drFailbackPair(t, tt.hold, [2]func(*director) string{}), tt.hold)
				} else {
					testConnSyncFailback(t, natFailbackPair(t, tt.hold, [2]func(*director, int, string) string{}), tt.hold)
				}
			})
		}
	}
}

// failbackPair is a pair set up for the failback, lb1 master.
type failbackPair struct {
	lb1, lb2 *director
	client   string
	// links are lb1's, taken down with it and up again; syncLink, if
	// set, carries the sync messages alone.
	links    []string
	syncLink string
}

// masterOfAll reports whether every VRRP instance of d is MASTER.
func masterOfAll(d *director) bool {
	st := d.states()
	for _, s := range st {
		if s != "MASTER" {
			return false
		}
	}
	return len(st) > 0
}

// failbackSync is the lvs_sync table of a failback pair on iface.
func failbackSync(iface string, hold bool) string {
	s := fmt.Sprintf("[vrrp_instance.lvs_sync]\ninterface = %q\nrefresh_period = %q\n", iface, failbackRefresh)
	if !hold {
		s += "preempt_hold = \"0s\"\n"
	}
	return s
}

// drFailbackPair is the DR pair, its sync messages on sync0, a link of
// their own, so that its counters are the sync traffic alone. lb1 starts
// first: its end is made with the peer beside it, which moves to lb2.
// ka[i], if set, makes director i a keepalived (drPairOf).
func drFailbackPair(t testing.TB, hold bool, ka [2]func(*director) string) failbackPair {
	var lb1ns string
	ds, hosts, _ := drPairOf(t, ka, natVIP, connSyncPort, func(ns string, _ int) { echoIn(t, ns) }, func(d *director) string {
		if d.name == "lb1" {
			lb1ns = d.ns
			sh(t, "ip", "-n", d.ns, "link", "add", "sync0", "type", "veth", "peer", "name", "syncp")
			sh(t, "ip", "-n", d.ns, "addr", "add", "10.78.0.1/24", "dev", "sync0")
			sh(t, "ip", "-n", d.ns, "link", "set", "sync0", "up")
		} else {
			sh(t, "ip", "-n", lb1ns, "link", "set", "syncp", "netns", d.ns)
			sh(t, "ip", "-n", d.ns, "link", "set", "syncp", "name", "sync0")
			sh(t, "ip", "-n", d.ns, "addr", "add", "10.78.0.2/24", "dev", "sync0")
			sh(t, "ip", "-n", d.ns, "link", "set", "sync0", "up")
		}
		return failbackSync("sync0", hold)
	}, connSyncVS)
	return failbackPair{lb1: ds[0], lb2: ds[1], client: hosts[2], links: []string{ds[0].iface, "sync0"}, syncLink: "sync0"}
}

// natFailbackPair is natPair with the sync messages on the inside link,
// which the real servers' traffic shares: no traffic is measured.
func natFailbackPair(t testing.TB, hold bool, ka [2]func(*director, int, string) string) failbackPair {
	ds, client, inside := natPairOf(t, ka, func(in string) string { return failbackSync(in, hold) })
	return failbackPair{lb1: ds[0], lb2: ds[1], client: client, links: []string{ds[0].iface, inside[0]}}
}

// linkCounters reads an interface's transmitted packets and bytes in ns
// (through ip netns exec, which mounts the namespace's own /sys).
func linkCounters(t testing.TB, ns, ifname string) (pkts, bytes int64) {
	t.Helper()
	for _, c := range []struct {
		name string
		v    *int64
	}{{"tx_packets", &pkts}, {"tx_bytes", &bytes}} {
		out := inNS(t, ns, "cat", filepath.Join("/sys/class/net", ifname, "statistics", c.name))
		v, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			t.Fatalf("%s of %s in %s: %v", c.name, ifname, ns, err)
		}
		*c.v = v
	}
	return pkts, bytes
}

func testConnSyncFailback(t *testing.T, p failbackPair, hold bool) {
	lb1, lb2 := p.lb1, p.lb2
	eventually(t, "lb1 runs the master sync daemon alone, lb2 the backup", 15*time.Second, func() bool {
		return lb1.runsDaemon("master") && lb2.runsDaemon("backup")
	})
	for _, d := range []*director{lb1, lb2} {
		if got := strings.Fields(inNS(t, d.ns, "sysctl", "-n", "net.ipv4.vs.sync_refresh_period", "net.ipv4.vs.sync_threshold")); strings.Join(got, " ") != "10 3 0" {
			t.Fatalf("%s: sync_refresh_period and sync_threshold %q, want 10, 3 0", d.name, got)
		}
	}

	// The master dies, its links with it.
	lb1.kill()
	for _, ln := range p.links {
		sh(t, "ip", "-n", lb1.ns, "link", "set", ln, "down")
	}
	eventually(t, "lb2 master of every instance", 20*time.Second, func() bool { return masterOfAll(lb2) })
	o, delay := syncFailback(t, p, func() {
		if hold && p.syncLink != "" {
			// The sync traffic of the new master with connSyncN
			// connections exchanging every second: two refresh periods
			// of sync0.
			p0, b0 := linkCounters(t, lb1.ns, p.syncLink)
			window := 2 * failbackRefresh
			time.Sleep(window)
			p1, b1 := linkCounters(t, lb1.ns, p.syncLink)
			t.Logf("sync traffic of the master, %d connections, refresh_period %v: %d packets, %d bytes in %v (%.2f packets/s, %.0f bytes/s, %.1f bytes per connection per period)",
				connSyncN, failbackRefresh, p1-p0, b1-b0, window, float64(p1-p0)/window.Seconds(), float64(b1-b0)/window.Seconds(),
				float64(b1-b0)/float64(connSyncN)/(window.Seconds()/failbackRefresh.Seconds()))
			if p1 == p0 {
				t.Errorf("the master sent nothing on sync0 in %v with refresh_period %v", window, failbackRefresh)
			}
		}
	})
	if hold && delay < failbackHold {
		t.Errorf("with preempt_hold %v, lb1 preempted %v after its restart", failbackHold, delay)
	}
	if !hold && delay >= failbackRefresh {
		t.Errorf("control: lb1 preempted %v after its restart, want well within the refresh period %v", delay, failbackRefresh)
	}
	o.check(t, "failback", hold)
}

// syncFailback is the failback of a pair whose lb1 is dead, its links
// down, and lb2 master: the client opens connSyncN connections through
// lb2, each exchanging a line every failbackEvery (connections lb1 has
// never seen); lb1's links come back failbackReturn after they opened
// and its daemon starts; once lb1 has preempted and every connection has
// made 5 exchanges through it, during runs (with the load still on) and
// the load's outcome comes back with the preemption delay from the
// restart.
func syncFailback(t testing.TB, p failbackPair, during func()) (loadOutcome, time.Duration) {
	t.Helper()
	vs := natVIP + ":" + connSyncPort
	lb1, lb2 := p.lb1, p.lb2
	eventually(t, "lb2 switched to the master sync daemon", 10*time.Second, func() bool { return lb2.runsDaemon("master") })
	l := startLoad(t, p.client, vs, connSyncN, failbackEvery, false)
	opened := time.Now()
	l.exchanging(t, "lb2", 2)
	// lb1's table may still hold the connections of a failover before.
	if n := l.knownIn(t, lb1.ns, vs); n != 0 {
		t.Fatalf("lb1 knows %d of the connections of %s before it returns", n, vs)
	}

	// lb1 returns well within one refresh period of the connections'
	// first announcement, but after it: lb2's kernel sends a sync buffer
	// that is not full 2-3 s after its first connection (a measured run
	// that brought lb1 back 2.4 s after the connections opened had its
	// new backup daemon hear them all at once). Its kernel hears each
	// again only at the next refresh.
	time.Sleep(time.Until(opened.Add(failbackReturn)))
	for _, ln := range p.links {
		sh(t, "ip", "-n", lb1.ns, "link", "set", ln, "up")
	}
	// As a rebooted director's links are up before its daemon starts: a
	// director that hears no master takes over whatever its hold.
	eventually(t, "lb1 reaches lb2 again", 10*time.Second, func() bool {
		return exec.Command("ip", "netns", "exec", lb1.ns, "ping", "-c1", "-W1", "10.79.0.2").Run() == nil
	})
	restarted := time.Now()
	lb1.start(t)
	t.Logf("lb1 restarted %v after the connections opened", restarted.Sub(opened).Round(time.Millisecond))
	// Without the hold lb1 may be master, and run the master daemon,
	// within half a second: either daemon says it is back.
	eventually(t, "lb1 runs a sync daemon", 15*time.Second, func() bool { return lb1.runsDaemon("backup") || lb1.runsDaemon("master") })
	var known int
	eventually(t, "lb1 preempts", failbackHold+30*time.Second, func() bool {
		if !masterOfAll(lb1) {
			known = l.knownIn(t, lb1.ns, vs)
			return false
		}
		return true
	})
	l.after.Store(true)
	delay := time.Since(restarted)
	t.Logf("lb1 master %v after its restart, knowing %d of the %d connections at its last look as a backup",
		delay.Round(time.Millisecond), known, connSyncN)
	eventually(t, "lb2 back to the backup sync daemon", 15*time.Second, func() bool { return lb2.runsDaemon("backup") })
	l.settle(30*time.Second, 5)
	during()
	return l.outcome("lb1", 5), delay
}
