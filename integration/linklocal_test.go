package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestIPv6NoLinkLocal: an IPv6 instance whose interface has no link-local
// address yet (addrgenmode none, as a link that just came up or whose
// DAD is pending) does not stop `lvsha run`: the instance is in FAULT,
// with the reason in `lvsha status`, while the daemon's other instance
// (IPv4, same link) runs its election. When a link-local address is
// added (tentative for a second while DAD runs), the same daemon, not
// restarted, starts the instance: it has the higher priority, so it
// takes master over from the peer, and the VIP ends on it alone.
func TestIPv6NoLinkLocal(t *testing.T) {
	raiseFileLimit(t)
	na, nb := newNetns(t, "ll1"), newNetns(t, "ll2")
	// lb1's link-local address is usable at once; lb2's interface gets
	// none: addrgenmode none for interfaces made in its namespace, and set
	// on it (with any address the kernel made already flushed) in case the
	// default came too late.
	inNS(t, na, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	inNS(t, nb, "sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1")
	veth(t, na, "10.79.0.1/24", nb, "10.79.0.2/24")
	lb1 := newScaleDirector(t, "lb1", na, []string{lastVeth(t, na)})
	lb2 := newScaleDirector(t, "lb2", nb, []string{lastVeth(t, nb)})
	ifb := lb2.ifaces[0]
	sh(t, "ip", "-n", nb, "link", "set", "dev", ifb, "addrgenmode", "none")
	sh(t, "ip", "-n", nb, "-6", "addr", "flush", "dev", ifb, "scope", "link")
	linkLocal := func(d *scaleDirector) bool {
		return strings.Contains(inNS(t, d.ns, "ip", "-6", "-o", "addr", "show", "dev", d.ifaces[0], "scope", "link"), "fe80::")
	}
	eventually(t, "lb1's link-local address", 10*time.Second, func() bool { return linkLocal(lb1) })
	if linkLocal(lb2) {
		t.Fatalf("lb2's %s has a link-local address at the start", ifb)
	}

	const vip6, vip4 = "2001:db8:81::7", "10.80.0.8"
	for _, x := range []struct {
		d    *scaleDirector
		prio int
	}{{lb1, 100}, {lb2, 200}} {
		text := fmt.Sprintf(`[director]
name = %q
control_socket = %q

[[vrrp_instance]]
name = "vi6"
interface = %q
router_id = 7
priority = %d
advert_interval = "100ms"
virtual_ips = ["%s/64"]

[[vrrp_instance]]
name = "vi4"
interface = %q
router_id = 8
priority = %d
advert_interval = "100ms"
virtual_ips = ["%s/24"]
`, x.d.name, x.d.sock, x.d.ifaces[0], x.prio, vip6, x.d.ifaces[0], x.prio, vip4)
		if err := os.WriteFile(x.d.cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		lvshaBin(t)
		x.d.kind = "lvsha"
		x.d.start(t)
	}
	st := func(d *scaleDirector, name string) instStatusFault {
		var r struct {
			VRRP []instStatusFault `json:"vrrp_instances"`
		}
		if err := statusJSON(d.sock, &r); err != nil {
			return instStatusFault{}
		}
		for _, v := range r.VRRP {
			if v.Name == name {
				return v
			}
		}
		return instStatusFault{}
	}
	holds := func(d *scaleDirector, vip string) bool {
		return strings.Contains(sh(t, "ip", "-n", d.ns, "addr", "show"), " "+vip+"/")
	}
	// Without the fix lvsha exited here, its status never answering.
	eventually(t, "lb2's vi6 in FAULT for want of a link-local address, vi4 its master", 20*time.Second, func() bool {
		return st(lb2, "vi6").State == "FAULT" && st(lb2, "vi4").State == "MASTER"
	})
	if s := st(lb2, "vi6"); !strings.Contains(s.Fault, "has no IPv6 link-local address") {
		t.Errorf("lb2's vi6 status: fault %q, want the reason", s.Fault)
	}
	eventually(t, "lb1 master of vi6 (lb2 in FAULT), backup of vi4", 10*time.Second, func() bool {
		return st(lb1, "vi6").State == "MASTER" && st(lb1, "vi4").State == "BACKUP"
	})
	text, err := exec.Command(os.Getenv(envLvsha), "status", "-s", lb2.sock).Output()
	if err != nil || !strings.Contains(string(text), "VRRP instance vi6: FAULT, not started: ") ||
		!strings.Contains(string(text), ifb+" has no IPv6 link-local address") {
		t.Errorf("lb2's lvsha status (%v) lacks vi6's FAULT and its reason:\n%s", err, text)
	}
	// Waiting is quiet: it was said once, not at each retry.
	time.Sleep(2 * time.Second)
	if lb2.exited() {
		t.Fatal("lb2's daemon exited")
	}
	log, _ := os.ReadFile(lb2.logFile)
	if n := strings.Count(string(log), "its interface has no address to send adverts from"); n != 1 {
		t.Errorf("lb2 logged the missing address %d times, want once", n)
	}
	if holds(lb2, vip6) || !holds(lb1, vip6) {
		t.Fatalf("vi6's VIP on lb1 %v, on lb2 %v; want lb1 only", holds(lb1, vip6), holds(lb2, vip6))
	}

	// The address appears (DAD keeps it tentative for a second first):
	// lb2 starts vi6 and, with the higher priority, takes master.
	pid := lb2.cmd.Process.Pid
	sh(t, "ip", "-n", nb, "-6", "addr", "add", "fe80::2/64", "dev", ifb)
	added := time.Now()
	eventually(t, "lb2 master of vi6, lb1 backup", 20*time.Second, func() bool {
		return st(lb2, "vi6").State == "MASTER" && st(lb1, "vi6").State == "BACKUP"
	})
	t.Logf("lb2's vi6 master %v after its link-local address was added", time.Since(added).Round(time.Millisecond))
	eventually(t, "vi6's VIP on lb2 alone", 5*time.Second, func() bool { return holds(lb2, vip6) && !holds(lb1, vip6) })
	for i := range 8 {
		s2, s1 := st(lb2, "vi6"), st(lb1, "vi6")
		if s2.State != "MASTER" || s1.State != "BACKUP" || !holds(lb2, vip6) || holds(lb1, vip6) {
			t.Fatalf("sample %d: lb2 %s, lb1 %s; VIP on lb2 %v, on lb1 %v", i, s2.State, s1.State, holds(lb2, vip6), holds(lb1, vip6))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := st(lb2, "vi6"); s.Fault != "" || s.Master != "fe80::2" {
		t.Errorf("lb2's vi6 once it runs: fault %q, master %q; want none, fe80::2", s.Fault, s.Master)
	}
	if st(lb2, "vi4").State != "MASTER" || holds(lb1, vip4) || !holds(lb2, vip4) {
		t.Errorf("vi4 moved meanwhile: lb2 %s", st(lb2, "vi4").State)
	}
	if lb2.exited() || lb2.cmd.Process.Pid != pid {
		t.Error("lb2's daemon did not keep running")
	}
}

// instStatusFault is what TestIPv6NoLinkLocal reads of an instance.
type instStatusFault struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Master string `json:"master"`
	Fault  string `json:"fault"`
}
