package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestInterfaceDownFault: a master whose own VRRP interface goes down (in
// no track_interfaces) goes to FAULT, with the reason in `lvsha status`,
// releases its VIP and runs its fault hook; the backup, across a bridge
// whose other ports stay up, takes over. When the link comes back the old
// master returns to BACKUP and, with the higher priority, preempts: one
// VIP holder at the end. Before lvsha watched the instance's own
// interface, the master stayed MASTER with its VIP while the backup took
// over too: two holders until the link came back.
func TestInterfaceDownFault(t *testing.T) {
	raiseFileLimit(t)
	hosts, ifaces := lan(t, 2)
	lb1 := newScaleDirector(t, "lb1", hosts[0], []string{ifaces[0]})
	lb2 := newScaleDirector(t, "lb2", hosts[1], []string{ifaces[1]})
	const vip = "10.79.0.50"
	hooks := filepath.Join(t.TempDir(), "hooks.log")
	for _, x := range []struct {
		d    *scaleDirector
		prio int
	}{{lb1, 200}, {lb2, 100}} {
		text := fmt.Sprintf(`[director]
name = %q
control_socket = %q

[[vrrp_instance]]
name = "vi"
interface = %q
router_id = 9
priority = %d
advert_interval = "100ms"
virtual_ips = ["%s/24"]
notify = ["/bin/sh", "-c", "echo \"$0 $@\" >> %s", %q]
`, x.d.name, x.d.sock, x.d.ifaces[0], x.prio, vip, hooks, x.d.name)
		if err := os.WriteFile(x.d.cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		lvshaBin(t)
		x.d.kind = "lvsha"
		x.d.start(t)
	}
	st := func(d *scaleDirector) instStatusReasons {
		var r struct {
			VRRP []instStatusReasons `json:"vrrp_instances"`
		}
		if err := statusJSON(d.sock, &r); err != nil {
			return instStatusReasons{}
		}
		for _, v := range r.VRRP {
			if v.Name == "vi" {
				return v
			}
		}
		return instStatusReasons{}
	}
	holds := func(d *scaleDirector) bool {
		return strings.Contains(sh(t, "ip", "-n", d.ns, "addr", "show"), " "+vip+"/")
	}
	// wait is eventually, saying on failure what each director showed.
	wait := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				s1, s2 := st(lb1), st(lb2)
				t.Fatalf("%s: not within %v; lb1 %s %v holds VIP %v, lb2 %s %v holds VIP %v", what, limit,
					s1.State, s1.FaultReasons, holds(lb1), s2.State, s2.FaultReasons, holds(lb2))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait("lb1 master, lb2 backup, the VIP on lb1 alone", 20*time.Second, func() bool {
		return st(lb1).State == "MASTER" && st(lb2).State == "BACKUP" && holds(lb1) && !holds(lb2)
	})

	sh(t, "ip", "-n", lb1.ns, "link", "set", lb1.ifaces[0], "down")
	wait("lb1 in FAULT without the VIP, lb2 master with it", 10*time.Second, func() bool {
		return st(lb1).State == "FAULT" && !holds(lb1) && st(lb2).State == "MASTER" && holds(lb2)
	})
	want := "interface " + lb1.ifaces[0] + " down"
	if s := st(lb1); !slices.Contains(s.FaultReasons, want) {
		t.Errorf("lb1's fault reasons %q, want %q", s.FaultReasons, want)
	}
	text, err := exec.Command(os.Getenv(envLvsha), "status", "-s", lb1.sock).Output()
	if err != nil || !strings.Contains(string(text), "VRRP instance vi: FAULT: "+want) {
		t.Errorf("lb1's lvsha status (%v) lacks vi's FAULT and its reason:\n%s", err, text)
	}
	// Held down: lb1 stays in FAULT and lb2 master.
	for i := range 10 {
		if s1, s2 := st(lb1), st(lb2); s1.State != "FAULT" || s2.State != "MASTER" || holds(lb1) || !holds(lb2) {
			t.Fatalf("sample %d while down: lb1 %s, lb2 %s; VIP on lb1 %v, on lb2 %v", i, s1.State, s2.State, holds(lb1), holds(lb2))
		}
		time.Sleep(100 * time.Millisecond)
	}

	sh(t, "ip", "-n", lb1.ns, "link", "set", lb1.ifaces[0], "up")
	wait("lb1 master again (preempting), lb2 backup, the VIP on lb1 alone", 20*time.Second, func() bool {
		return st(lb1).State == "MASTER" && st(lb2).State == "BACKUP" && holds(lb1) && !holds(lb2)
	})
	if s := st(lb1); len(s.FaultReasons) > 0 {
		t.Errorf("lb1's fault reasons once up: %q", s.FaultReasons)
	}
	for i := range 8 {
		if h1, h2 := holds(lb1), holds(lb2); h1 == h2 {
			t.Fatalf("sample %d: VIP on lb1 %v, on lb2 %v; want one holder", i, h1, h2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, err := os.ReadFile(hooks)
	if err != nil {
		t.Fatal(err)
	}
	var lb1Hooks []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) == 5 && f[0] == "lb1" {
			lb1Hooks = append(lb1Hooks, f[3])
		}
	}
	// BACKUP at the start, MASTER, FAULT on the link down, BACKUP when
	// it is back, MASTER on preemption.
	if got, want := strings.Join(lb1Hooks, " "), "BACKUP MASTER FAULT BACKUP MASTER"; got != want {
		t.Errorf("lb1's hooks ran for %q, want %q\n%s", got, want, b)
	}
}

// instStatusReasons is what TestInterfaceDownFault reads of an instance.
type instStatusReasons struct {
	Name         string   `json:"name"`
	State        string   `json:"state"`
	FaultReasons []string `json:"fault_reasons"`
}
