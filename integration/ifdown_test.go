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
	p := newIfdownPair(t, false)
	lb1, lb2, st, holds := p.lb1, p.lb2, p.st, p.holds
	sh(t, "ip", "-n", lb1.ns, "link", "set", lb1.ifaces[0], "down")
	p.wait("lb1 in FAULT without the VIP, lb2 master with it", 10*time.Second, func() bool {
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
	p.wait("lb1 master again (preempting), lb2 backup, the VIP on lb1 alone", 20*time.Second, p.lb1Master)
	if s := st(lb1); len(s.FaultReasons) > 0 {
		t.Errorf("lb1's fault reasons once up: %q", s.FaultReasons)
	}
	p.oneHolder()
	// BACKUP at the start, MASTER, FAULT on the link down, BACKUP when
	// it is back, MASTER on preemption.
	if got, want := p.lb1Hooks(), "BACKUP MASTER FAULT BACKUP MASTER"; got != want {
		t.Errorf("lb1's hooks ran for %q, want %q", got, want)
	}
}

// oneHolder samples the VIP: on one director at a time.
func (p *ifdownPair) oneHolder() {
	p.t.Helper()
	for i := range 8 {
		if h1, h2 := p.holds(p.lb1), p.holds(p.lb2); h1 == h2 {
			p.t.Fatalf("sample %d: VIP on lb1 %v, on lb2 %v; want one holder", i, h1, h2)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSourceAddressGone: the address the master's adverts go out from,
// its only IPv4 address or its IPv6 link-local one, is deleted: the
// instance starts anew and waits in FAULT, with the reason in lvsha
// status, holding no VIP, while the backup takes over. The address back,
// it starts, as a backup, and preempts. Before, the master went on as
// master, its adverts failing, beside the backup that took over: two
// holders until the address came back.
func TestSourceAddressGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		v6   bool
		why  string
	}{
		{"ipv4", false, "has no IPv4 address"},
		{"ipv6", true, "has no IPv6 link-local address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newIfdownPair(t, tc.v6)
			lb1, lb2, st, holds := p.lb1, p.lb2, p.st, p.holds
			pid := lb1.cmd.Process.Pid
			src := []string{"10.79.0.1/24"}
			if tc.v6 {
				// The link-local address(es) the kernel made.
				src = nil
				for _, l := range strings.Split(inNS(t, lb1.ns, "ip", "-6", "-o", "addr", "show", "dev", lb1.ifaces[0], "scope", "link"), "\n") {
					if f := strings.Fields(l); len(f) > 3 {
						src = append(src, f[3])
					}
				}
				if len(src) == 0 {
					t.Fatalf("lb1's %s has no link-local address", lb1.ifaces[0])
				}
			}
			for _, a := range src {
				sh(t, "ip", "-n", lb1.ns, "addr", "del", a, "dev", lb1.ifaces[0])
			}
			p.wait("lb1 in FAULT without the VIP, lb2 master with it", 15*time.Second, func() bool {
				return st(lb1).State == "FAULT" && !holds(lb1) && st(lb2).State == "MASTER" && holds(lb2)
			})
			if s := st(lb1); !strings.Contains(s.Fault, tc.why) {
				t.Errorf("lb1's fault %q, want %q", s.Fault, tc.why)
			}
			for i := range 10 {
				if s1, s2 := st(lb1), st(lb2); s1.State != "FAULT" || s2.State != "MASTER" || holds(lb1) || !holds(lb2) {
					t.Fatalf("sample %d without the address: lb1 %s, lb2 %s; VIP on lb1 %v, on lb2 %v", i, s1.State, s2.State, holds(lb1), holds(lb2))
				}
				time.Sleep(100 * time.Millisecond)
			}
			for _, a := range src {
				sh(t, "ip", "-n", lb1.ns, "addr", "add", a, "dev", lb1.ifaces[0], "nodad")
			}
			p.wait("lb1 master again (preempting), lb2 backup, the VIP on lb1 alone", 20*time.Second, p.lb1Master)
			p.oneHolder()
			if s := st(lb1); s.Fault != "" {
				t.Errorf("lb1's fault once it runs again: %q", s.Fault)
			}
			if lb1.exited() || lb1.cmd.Process.Pid != pid {
				t.Error("lb1's daemon did not keep running")
			}
		})
	}
}

// ifdownPair is two lvsha directors on one bridge, each a VRRP instance
// vi on its port, lb1 at priority 200, lb2 at 100, lb1 master.
type ifdownPair struct {
	t        *testing.T
	lb1, lb2 *scaleDirector
	// hooks logs every transition's hook: director, INSTANCE vi STATE
	// priority.
	hooks string
	vip   string
}

// newIfdownPair starts the pair, with an IPv6 VIP if v6.
func newIfdownPair(t *testing.T, v6 bool) *ifdownPair {
	raiseFileLimit(t)
	hosts, ifaces := lan(t, 2)
	p := &ifdownPair{t: t, lb1: newScaleDirector(t, "lb1", hosts[0], []string{ifaces[0]}),
		lb2: newScaleDirector(t, "lb2", hosts[1], []string{ifaces[1]}), hooks: filepath.Join(t.TempDir(), "hooks.log"), vip: "10.79.0.50/24"}
	if v6 {
		p.vip = "2001:db8:79::50/64"
	}
	for _, x := range []struct {
		d    *scaleDirector
		prio int
	}{{p.lb1, 200}, {p.lb2, 100}} {
		text := fmt.Sprintf(`[director]
name = %q
control_socket = %q

[[vrrp_instance]]
name = "vi"
interface = %q
router_id = 9
priority = %d
advert_interval = "100ms"
virtual_ips = [%q]
notify = ["/bin/sh", "-c", "echo \"$0 $@\" >> %s", %q]
`, x.d.name, x.d.sock, x.d.ifaces[0], x.prio, p.vip, p.hooks, x.d.name)
		if err := os.WriteFile(x.d.cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		lvshaBin(t)
		x.d.kind = "lvsha"
		x.d.start(t)
	}
	p.wait("lb1 master, lb2 backup, the VIP on lb1 alone", 20*time.Second, p.lb1Master)
	return p
}

// st is d's instance vi as its status shows it.
func (p *ifdownPair) st(d *scaleDirector) instStatusReasons {
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

func (p *ifdownPair) holds(d *scaleDirector) bool {
	addr, _, _ := strings.Cut(p.vip, "/")
	return strings.Contains(sh(p.t, "ip", "-n", d.ns, "addr", "show"), " "+addr+"/")
}

func (p *ifdownPair) lb1Master() bool {
	return p.st(p.lb1).State == "MASTER" && p.st(p.lb2).State == "BACKUP" && p.holds(p.lb1) && !p.holds(p.lb2)
}

// wait is eventually, saying on failure what each director showed.
func (p *ifdownPair) wait(what string, limit time.Duration, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			s1, s2 := p.st(p.lb1), p.st(p.lb2)
			p.t.Fatalf("%s: not within %v; lb1 %s %v %q holds VIP %v, lb2 %s %v holds VIP %v", what, limit,
				s1.State, s1.FaultReasons, s1.Fault, p.holds(p.lb1), s2.State, s2.FaultReasons, p.holds(p.lb2))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lb1Hooks are the states lb1's hooks ran for, in order.
func (p *ifdownPair) lb1Hooks() string {
	b, err := os.ReadFile(p.hooks)
	if err != nil {
		p.t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) == 5 && f[0] == "lb1" {
			out = append(out, f[3])
		}
	}
	return strings.Join(out, " ")
}

// instStatusReasons is what TestInterfaceDownFault and TestSourceAddressGone read of an instance.
type instStatusReasons struct {
	Name         string   `json:"name"`
	State        string   `json:"state"`
	Fault        string   `json:"fault"`
	FaultReasons []string `json:"fault_reasons"`
}
