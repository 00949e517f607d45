package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Many VRRP instances per director (issue #21): the helpers that
// TestScale* and BenchmarkScale share. They read only what any daemon
// leaves behind (addresses in a namespace, from `ip` and netlink) and
// lvsha's status JSON, so they hold whether instances share sockets and
// VIP devices or not.

// scaleVIPRange holds every VIP of the scale tests: 10.80.<link>.<vrid>, a
// private range that exists only in the namespaces the tests create.
const scaleVIPRange = "10.80.0.0/16"

// scaleInst is one VRRP instance of a scale test: VRID vrid on link link
// (0-based) of its director, with the one VIP scaleVIP gives it.
type scaleInst struct{ link, vrid int }

func (i scaleInst) vip() string  { return fmt.Sprintf("10.80.%d.%d", i.link, i.vrid) }
func (i scaleInst) name() string { return fmt.Sprintf("vi-%d-%d", i.link, i.vrid) }

// scaleInstances is perLink instances (VRIDs 1..perLink) on each of links.
func scaleInstances(links, perLink int) []scaleInst {
	var out []scaleInst
	for l := range links {
		for v := 1; v <= perLink; v++ {
			out = append(out, scaleInst{l, v})
		}
	}
	return out
}

// scaleDirector is a director with one interface per link; its daemon is
// lvsha or keepalived, in a process group of its own.
type scaleDirector struct {
	*director
	ifaces []string // by link
	kind   string   // of the daemon started last
	// kaAdvert is keepalived's advert_int; "" is 0.1.
	kaAdvert string
	// rtPriority, if set, runs either daemon under SCHED_RR at it:
	// lvsha's director.rt_priority, keepalived's vrrp_rt_priority.
	rtPriority int
	// bfd runs lvsha's instances with BFD at its defaults; off, they
	// compare VRRP alone with keepalived's.
	bfd bool
}

// newScaleDirector is a director named name in ns, its interfaces ifaces.
func newScaleDirector(t testing.TB, name, ns string, ifaces []string) *scaleDirector {
	d := &director{name: name, ns: ns, iface: ifaces[0], dir: t.TempDir()}
	d.cfg, d.sock = filepath.Join(d.dir, "lvsha.toml"), filepath.Join(d.dir, "s.sock")
	// With a hundred instances and more, lvsha's log on the VM's emulated
	// serial console would cost more than the daemon; a file costs what
	// keepalived's syslog does (nothing reads it in the VM).
	d.logFile = filepath.Join(d.dir, "lvsha.log")
	return &scaleDirector{director: d, ifaces: ifaces}
}

// scalePair is two directors joined by one veth pair per link, with no
// other host: 10.79.<link>.1/24 on a, 10.79.<link>.2/24 on b.
func scalePair(t testing.TB, links int) (a, b *scaleDirector) {
	t.Helper()
	raiseFileLimit(t)
	na, nb := newNetns(t, "sa"), newNetns(t, "sb")
	var ia, ib []string
	for l := range links {
		veth(t, na, fmt.Sprintf("10.79.%d.1/24", l), nb, fmt.Sprintf("10.79.%d.2/24", l))
		ia, ib = append(ia, lastVeth(t, na)), append(ib, lastVeth(t, nb))
	}
	return newScaleDirector(t, "lb1", na, ia), newScaleDirector(t, "lb2", nb, ib)
}

// raiseFileLimit lets the daemons this process starts open 64 Ki files:
// today's lvsha opens a few descriptors per instance, and the VM's init
// leaves the kernel's default hard limit of 4,096, below a thousand
// instances' need (a host's service manager gives far more). The Go
// runtime of lvsha raises its soft limit to the hard one by itself.
func raiseFileLimit(t testing.TB) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max >= 1<<16 && lim.Cur >= 1<<16 {
		return
	}
	want := lim
	want.Cur, want.Max = max(lim.Cur, 1<<16), max(lim.Max, 1<<16)
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	if err == nil {
		return
	}
	// A container may forbid raising the hard limit even to root; its own
	// hard limit is enough when it allows a thousand instances.
	if lim.Max >= 1<<14 {
		lim.Cur = lim.Max
		if err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
			return
		}
	}
	t.Fatalf("raise the open files limit to %d (hard limit %d): %v", want.Max, lim.Max, err)
}

// lvshaScaleConfig is lvsha's config for insts at prio: VRRPv3 at 100 ms
// adverts, one VIP each, and BFD off unless d.bfd: the scale tests
// compare VRRP with keepalived's, which runs none (BFD's takeover and
// cost are the BFD tests' and benchmarks', which set d.bfd).
func (d *scaleDirector) lvshaScaleConfig(prio int, insts []scaleInst) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[director]\nname = %q\ncontrol_socket = %q\n", d.name, d.sock)
	if d.rtPriority > 0 {
		fmt.Fprintf(&b, "rt_priority = %d\n", d.rtPriority)
	}
	for _, in := range insts {
		fmt.Fprintf(&b, `
[[vrrp_instance]]
name = %q
interface = %q
router_id = %d
priority = %d
version = 3
advert_interval = "100ms"
virtual_ips = [%q]
bfd = %t
`, in.name(), d.ifaces[in.link], in.vrid, prio, in.vip(), d.bfd)
	}
	return b.String()
}

// keepalivedScaleConfig is the same for keepalived.
func (d *scaleDirector) keepalivedScaleConfig(prio int, insts []scaleInst) string {
	var b strings.Builder
	advert := d.kaAdvert
	if advert == "" {
		advert = "0.1"
	}
	rt := ""
	if d.rtPriority > 0 {
		rt = fmt.Sprintf("  vrrp_rt_priority %d\n", d.rtPriority)
	}
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n%s}\n", d.name, rt)
	for _, in := range insts {
		fmt.Fprintf(&b, `vrrp_instance VI_%d_%d {
  state BACKUP
  interface %s
  virtual_router_id %d
  priority %d
  version 3
  advert_int %s
  virtual_ipaddress {
    %s/32
  }
}
`, in.link, in.vrid, d.ifaces[in.link], in.vrid, prio, advert, in.vip())
	}
	return b.String()
}

// startScale starts kind ("lvsha" or "keepalived") on d with insts at
// prio; the daemon is stopped at cleanup if still running.
func (d *scaleDirector) startScale(t testing.TB, kind string, prio int, insts []scaleInst) {
	t.Helper()
	d.kind = kind
	if kind == "lvsha" {
		lvshaBin(t)
		if err := os.WriteFile(d.cfg, []byte(d.lvshaScaleConfig(prio, insts)), 0o644); err != nil {
			t.Fatal(err)
		}
		d.start(t)
		return
	}
	cfg := filepath.Join(d.dir, "keepalived.conf")
	if err := os.WriteFile(cfg, []byte(d.keepalivedScaleConfig(prio, insts)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", d.ns, "keepalived", "--dont-fork", "--vrrp", "-f", cfg,
		"-p", filepath.Join(d.dir, "k.pid"), "-r", filepath.Join(d.dir, "r.pid"))
	// keepalived forks its VRRP process: the group holds both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("keepalived: %v", err)
	}
	d.cmd = cmd
	t.Cleanup(func() { stopProc(cmd) })
}

// stopScale stops the daemon (SIGTERM, SIGKILL after 5 s) and removes
// whatever VIP it left on d's interfaces: keepalived leaves them there
// when killed, so the next daemon in these namespaces starts clean.
func (d *scaleDirector) stopScale(t testing.TB) {
	if d.cmd != nil {
		stopProc(d.cmd)
	}
	for _, ifc := range d.ifaces {
		exec.Command("ip", "-n", d.ns, "addr", "flush", "dev", ifc, "to", scaleVIPRange).Run()
	}
}

// killScale SIGKILLs the daemon's whole process group and reaps it; it
// returns the moment of the kill.
func (d *scaleDirector) killScale() time.Time {
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	at := time.Now()
	d.cmd.Wait()
	return at
}

// scaleVIPs is the set of VIPs (10.80/16) present on any device of ns.
func scaleVIPs(t testing.TB, ns string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	// "2: eth0    inet 10.80.0.1/32 scope global eth0 ..."
	for _, line := range strings.Split(sh(t, "ip", "-n", ns, "-o", "-4", "addr", "show"), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" {
			continue
		}
		a, _, _ := strings.Cut(f[3], "/")
		if strings.HasPrefix(a, "10.80.") {
			set[a] = true
		}
	}
	return set
}

// placement counts insts' VIPs on the master and on the backup.
func placement(t testing.TB, master, backup *scaleDirector, insts []scaleInst) (onMaster, onBackup int) {
	m, b := scaleVIPs(t, master.ns), scaleVIPs(t, backup.ns)
	for _, in := range insts {
		if m[in.vip()] {
			onMaster++
		}
		if b[in.vip()] {
			onBackup++
		}
	}
	return onMaster, onBackup
}

// scaleStatus is every instance's status from lvsha on d by name, or why
// there is none (the daemon must answer within 20 s).
func (d *scaleDirector) scaleStatus() (map[string]instStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, os.Getenv(envLvsha), "status", "-s", d.sock, "-o", "json")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("lvsha status: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var rep struct {
		VRRP []instStatus `json:"vrrp_instances"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("lvsha status: %v", err)
	}
	m := make(map[string]instStatus, len(rep.VRRP))
	for _, v := range rep.VRRP {
		m[v.Name] = v
	}
	return m, nil
}

// countStates counts insts of lvsha on d in state want; the sum of their
// transitions comes with it.
func (d *scaleDirector) countStates(insts []scaleInst, want string) (n, transitions int, err error) {
	st, err := d.scaleStatus()
	if err != nil {
		return 0, 0, err
	}
	for _, in := range insts {
		s := st[in.name()]
		if s.State == want {
			n++
		}
		transitions += s.Transitions
	}
	return n, transitions, nil
}

// scaleSettled reports whether master holds every VIP of insts and backup
// none, and, for lvsha, whether each instance is MASTER on master and
// BACKUP on backup; what says what was seen.
func scaleSettled(t testing.TB, master, backup *scaleDirector, insts []scaleInst) (ok bool, what string) {
	onM, onB := placement(t, master, backup, insts)
	what = fmt.Sprintf("VIPs on %s %d/%d, on %s %d", master.name, onM, len(insts), backup.name, onB)
	ok = onM == len(insts) && onB == 0
	for _, x := range []struct {
		d    *scaleDirector
		want string
	}{{master, "MASTER"}, {backup, "BACKUP"}} {
		if x.d.kind != "lvsha" {
			continue
		}
		n, _, err := x.d.countStates(insts, x.want)
		if err != nil {
			what += fmt.Sprintf("; %s: %v", x.d.name, err)
			ok = false
			continue
		}
		what += fmt.Sprintf("; %s: %d/%d %s", x.d.name, n, len(insts), x.want)
		ok = ok && n == len(insts)
	}
	return ok, what
}

// exited reports whether d's daemon has ended (a zombie not yet reaped
// counts as ended).
func (d *scaleDirector) exited() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// whyExited is what the kernel's log says of killed processes, for a
// daemon that ended by itself: the OOM killer, say.
func whyExited() string {
	out, _ := exec.Command("dmesg").Output()
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "Out of memory") || strings.Contains(l, "Killed process") || strings.Contains(l, "oom-kill") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines[max(0, len(lines)-4):], "\n")
}

// waitSettled polls scaleSettled every half second until it holds at two
// polls in a row or limit passes; it returns how long that took, or false
// and what was seen last.
func waitSettled(t testing.TB, master, backup *scaleDirector, insts []scaleInst, limit time.Duration) (time.Duration, bool, string) {
	start, streak, what := time.Now(), 0, ""
	for time.Since(start) < limit {
		for _, d := range []*scaleDirector{master, backup} {
			if d.cmd != nil && d.kind != "dead" && d.kind != "stopped" && d.exited() {
				return time.Since(start), false, fmt.Sprintf("%s's %s exited; %s", d.name, d.kind, what)
			}
		}
		var ok bool
		ok, what = scaleSettled(t, master, backup, insts)
		if ok {
			streak++
			if streak == 2 {
				return time.Since(start), true, what
			}
		} else {
			streak = 0
		}
		time.Sleep(500 * time.Millisecond)
	}
	return time.Since(start), false, what
}

// vipWatch records when VIPs of the scale range are added in a namespace,
// from a netlink subscription opened before what it times: the latest
// appearance of each (renewals of a present one do not count), by the
// moment this process read the notification.
type vipWatch struct {
	mu      sync.Mutex
	first   map[string]time.Time
	present map[string]bool
	// adds counts the appearances of VIPs absent before.
	adds int
	// pre is what was present when the watch began: those VIPs count as
	// present but have no time.
	pre     map[string]bool
	err     error
	done    chan struct{}
	stopped chan struct{}
}

// watchVIPs subscribes to ns's address changes; stop ends the watch.
func watchVIPs(t testing.TB, ns string) *vipWatch {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	w := &vipWatch{first: map[string]time.Time{}, present: map[string]bool{}, done: make(chan struct{}), stopped: make(chan struct{})}
	ch := make(chan netlink.AddrUpdate, 8192)
	_, rng, _ := net.ParseCIDR(scaleVIPRange)
	err = netlink.AddrSubscribeWithOptions(ch, w.done, netlink.AddrSubscribeOptions{
		Namespace:              &h,
		ListExisting:           true,
		ReceiveBufferSize:      8 << 20,
		ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("watch addresses in %s: %v", ns, err)
	}
	go func() {
		defer close(w.stopped)
		for u := range ch {
			now := time.Now()
			if !rng.Contains(u.LinkAddress.IP) {
				continue
			}
			a := u.LinkAddress.IP.String()
			w.mu.Lock()
			if u.NewAddr && !w.present[a] {
				w.first[a] = now
				w.adds++
			}
			w.present[a] = u.NewAddr
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.stop)
	// The listing of what is there comes first; under emulation it has
	// been read well within this.
	time.Sleep(300 * time.Millisecond)
	w.mu.Lock()
	w.pre = maps.Clone(w.present)
	w.mu.Unlock()
	return w
}

// added is how many times a VIP appeared that was absent before, since
// the watch began (those present then not counted).
func (w *vipWatch) added() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.adds - len(w.pre)
}

// stop ends the subscription; it is safe to call more than once.
func (w *vipWatch) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
}

// waitAll waits until every VIP of insts is present, at most limit. It
// returns the earliest and the latest appearance after since among those
// that were not there when the watch began (a VIP present since before
// since is not timed), and how many are present.
func (w *vipWatch) waitAll(insts []scaleInst, since time.Time, limit time.Duration) (first, last time.Time, n int, err error) {
	deadline := time.Now().Add(limit)
	for {
		w.mu.Lock()
		first, last, n, err = time.Time{}, time.Time{}, 0, w.err
		for _, in := range insts {
			if !w.present[in.vip()] {
				continue
			}
			n++
			if w.pre[in.vip()] {
				continue
			}
			at := w.first[in.vip()]
			if at.Before(since) {
				continue
			}
			if first.IsZero() || at.Before(first) {
				first = at
			}
			if at.After(last) {
				last = at
			}
		}
		w.mu.Unlock()
		if n == len(insts) || err != nil || time.Now().After(deadline) {
			return first, last, n, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// systemBusy is the CPU time every task of the machine has run so far,
// all CPUs, in nanoseconds: the sum of rq_cpu_time over the cpu lines of
// /proc/schedstat. Under qemu's tcg the ticks of /proc/stat undercount
// (at 100 instances they showed 1.3 s of busy time a second while the two
// daemons alone ran 2 s); the scheduler's clock does not. The VM's kernel
// has no IRQ time accounting, so softirq work (the delivery of adverts)
// counts to whatever task it interrupted: this includes it, except what
// ran on an idle CPU.
func systemBusy() time.Duration {
	b, err := os.ReadFile("/proc/schedstat")
	if err != nil {
		return 0
	}
	var busy int64
	// cpu<N> yld_count 0 sched_count sched_goidle ttwu_count ttwu_local rq_cpu_time run_delay pcount
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		n, _ := strconv.ParseInt(f[7], 10, 64)
		busy += n
	}
	return time.Duration(busy)
}

// envDuration is the duration in the environment variable name, else def.
// The outer run passes LVSHA_SCALE_* variables into the VM.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 60s", name, v)
	}
	return d
}

// logTail prints the last lines of d's lvsha log to stderr (a benchmark's
// log keeps only its first lines).
func (d *scaleDirector) logTail(lines int) { d.logGrep(lines, "") }

// logGrep prints the last lines of d's lvsha log that contain what.
func (d *scaleDirector) logGrep(lines int, what string) {
	b, err := os.ReadFile(d.logFile)
	if err != nil {
		return
	}
	var l []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.Contains(line, what) {
			l = append(l, line)
		}
	}
	fmt.Fprintf(os.Stderr, "%s's lvsha log, last %d of %d lines with %q:\n%s\n", d.name, min(lines, len(l)), len(l), what, strings.Join(l[max(0, len(l)-lines):], "\n"))
}
