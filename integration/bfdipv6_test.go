package integration

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestBFDTakeoverIPv6 is BFD fast takeover over IPv6: a VRRPv3 pair on
// one link in namespaces (adverts and BFD from the link-local
// addresses), bfd at its defaults (10 ms x 5). The backup's session with
// the master comes Up; when the master's daemon is SIGKILLed the backup
// takes the VIP by BFD (a takeover counted as such), well under
// Master_Down_Interval (361 ms at 100 ms adverts and priority 100). The
// time is logged; the bound is the detection time plus slack for the
// takeover's work on a loaded host, as TestBFDTakeover's.
func TestBFDTakeoverIPv6(t *testing.T) {
	raiseFileLimit(t)
	na, nb := newNetns(t, "sa6"), newNetns(t, "sb6")
	for _, ns := range []string{na, nb} {
		// Link-local addresses usable at once.
		inNS(t, ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	}
	veth(t, na, "10.79.0.1/24", nb, "10.79.0.2/24")
	lb1 := newScaleDirector(t, "lb1", na, []string{lastVeth(t, na)})
	lb2 := newScaleDirector(t, "lb2", nb, []string{lastVeth(t, nb)})
	// The daemons start once the link-local addresses are there (the
	// kernel adds them once the link is up): an instance started before
	// waits in FAULT (TestIPv6NoLinkLocal), and this test times a pair
	// already running.
	for _, d := range []*scaleDirector{lb1, lb2} {
		eventually(t, d.name+"'s link-local address", 10*time.Second, func() bool {
			return strings.Contains(inNS(t, d.ns, "ip", "-6", "-o", "addr", "show", "dev", d.ifaces[0], "scope", "link"), "fe80::")
		})
	}
	const vip = "2001:db8:80::7"
	for _, x := range []struct {
		d    *scaleDirector
		prio int
	}{{lb1, 150}, {lb2, 100}} {
		text := fmt.Sprintf(`[director]
name = %q
control_socket = %q

[[vrrp_instance]]
name = "vi6"
interface = %q
router_id = 7
priority = %d
version = 3
advert_interval = "100ms"
virtual_ips = [%q]
`, x.d.name, x.d.sock, x.d.ifaces[0], x.prio, vip)
		if err := os.WriteFile(x.d.cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		lvshaBin(t)
		x.d.kind = "lvsha"
		x.d.start(t)
	}
	// The daemons answer once they have started: until then, no state.
	state := func(d *scaleDirector) bfdInstStatus {
		r, err := d.tryBFDStatus()
		if err != nil {
			return bfdInstStatus{}
		}
		for _, v := range r.VRRP {
			if v.Name == "vi6" {
				return v
			}
		}
		return bfdInstStatus{}
	}
	eventually(t, "lb1 master, lb2 backup", 30*time.Second, func() bool {
		return state(lb1).State == "MASTER" && state(lb2).State == "BACKUP"
	})
	var watch bfdSessionStatus
	eventually(t, "lb2's BFD session with lb1 Up, watching over IPv6", 10*time.Second, func() bool {
		for _, s := range lb2.bfdStatus(t).BFD {
			if a, err := netip.ParseAddr(s.Peer); err == nil && a.Is6() && a.IsLinkLocalUnicast() && s.Watching && s.State == "Up" && s.DetectionMS > 0 {
				watch = s
				return true
			}
		}
		return false
	})
	detect := time.Duration(watch.DetectionMS * float64(time.Millisecond))
	t.Logf("lb2 watches lb1 at %s for %v, detection time %v", watch.Peer, watch.Following, detect)
	// The answering side's polls settle the fast rate.
	time.Sleep(500 * time.Millisecond)

	h, err := netns.GetFromName(nb)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	held := func() bool {
		as, err := nl.AddrList(nil, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.IP.String() == vip {
				return true
			}
		}
		return false
	}
	if held() {
		t.Fatal("lb2 holds the VIP as backup")
	}
	before := state(lb2).BFDTakeovers
	at := lb1.killScale()
	lb1.kind = "dead"
	var took time.Duration
	for deadline := at.Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if held() {
			took = time.Since(at)
			break
		}
		if time.Now().After(deadline) {
			lb2.logTail(20)
			t.Fatal("lb2 did not take the VIP within 5 s of lb1's SIGKILL")
		}
	}
	bound := detect + 150*time.Millisecond
	t.Logf("SIGKILL of lb1: VIP %s on lb2 after %v (detection time %v, bound %v; Master_Down_Interval 361ms)",
		vip, took.Round(time.Millisecond), detect, bound)
	if took > bound {
		lb2.logGrep(20, "BFD")
		t.Errorf("VIP on lb2 %v after the kill, want within %v", took, bound)
	}
	after := state(lb2)
	if after.State != "MASTER" || after.BFDTakeovers != before+1 {
		log, _ := os.ReadFile(lb2.logFile)
		t.Errorf("lb2 after the kill: %+v, want MASTER by one BFD takeover (log has %d BFD lines)", after, strings.Count(string(log), "BFD"))
	}
}
