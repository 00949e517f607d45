package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BFD fast takeover (issue #19, draft-ietf-rtgwg-vrrp-bfd-p2p) between two
// lvsha directors in namespaces on the host, and beside keepalived. The
// pairs are scalePair's (10.79.0.1 lb1, 10.79.0.2 lb2, one veth), each
// instance VRRPv3 at 100 ms adverts with one VIP in 10.80/16 and bfd at
// its defaults (10 ms x 5: a 50 ms detection time).

// bfdInstStatus is what these tests read of an instance in `lvsha status
// -o json`.
type bfdInstStatus struct {
	Name           string `json:"name"`
	State          string `json:"state"`
	Transitions    int    `json:"transitions"`
	BFDTakeovers   int    `json:"bfd_takeovers"`
	BFDMasterAlive int    `json:"bfd_master_alive"`
}

// bfdSessionStatus is one of `lvsha status -o json`'s bfd_sessions.
type bfdSessionStatus struct {
	Peer        string   `json:"peer"`
	State       string   `json:"state"`
	Watching    bool     `json:"watching"`
	Following   []string `json:"following"`
	DetectionMS float64  `json:"detection_ms"`
	Downs       int      `json:"downs"`
	RemoteDiscr uint32   `json:"remote_discriminator"`
}

type bfdReport struct {
	VRRP []bfdInstStatus    `json:"vrrp_instances"`
	BFD  []bfdSessionStatus `json:"bfd_sessions"`
}

// bfdStatus reads lvsha's status on d (within 20 s).
func (d *scaleDirector) bfdStatus(t testing.TB) bfdReport {
	t.Helper()
	r, err := d.tryBFDStatus()
	if err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	return r
}

// tryBFDStatus is bfdStatus for a daemon that may not answer yet.
func (d *scaleDirector) tryBFDStatus() (bfdReport, error) {
	var r bfdReport
	err := statusJSON(d.sock, &r)
	return r, err
}

// statusJSON decodes `lvsha status -o json` of the daemon behind sock
// into v, waiting 20 s at most.
func statusJSON(sock string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, os.Getenv(envLvsha), "status", "-s", sock, "-o", "json").Output()
	if err != nil {
		return fmt.Errorf("lvsha status: %w", err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("lvsha status: %w: %s", err, out)
	}
	return nil
}

// session is d's BFD session with peer, if it has one.
func (r bfdReport) session(peer string) (bfdSessionStatus, bool) {
	for _, s := range r.BFD {
		if s.Peer == peer {
			return s, true
		}
	}
	return bfdSessionStatus{}, false
}

// sum adds f over the instances.
func (r bfdReport) sum(f func(bfdInstStatus) int) int {
	n := 0
	for _, v := range r.VRRP {
		n += f(v)
	}
	return n
}

// blockBFD drops every BFD control packet arriving in ns (UDP 3784, the
// adverts untouched) until the returned func removes the rule.
func blockBFD(t *testing.T, ns string) (unblock func()) {
	t.Helper()
	inNS(t, ns, "nft", "add", "table", "inet", "lvshabfd")
	inNS(t, ns, "nft", "add", "chain", "inet", "lvshabfd", "in", "{ type filter hook input priority 0 ; }")
	inNS(t, ns, "nft", "add", "rule", "inet", "lvshabfd", "in", "udp", "dport", "3784", "drop")
	return func() { inNS(t, ns, "nft", "delete", "table", "inet", "lvshabfd") }
}

// bfdPair is lvsha on two directors with BFD at its defaults and three
// instances, settled: all master on lb1 (150), backup on lb2 (100).
func bfdPair(t *testing.T) (lb1, lb2 *scaleDirector, insts []scaleInst) {
	t.Helper()
	lb1, lb2 = scalePair(t, 1)
	lb1.bfd, lb2.bfd = true, true
	insts = scaleInstances(1, 3)
	lb1.startScale(t, "lvsha", 150, insts)
	lb2.startScale(t, "lvsha", 100, insts)
	settleScale(t, "lb1 master of all, lb2 backup of all", lb1, lb2, insts, 30*time.Second)
	return lb1, lb2, insts
}

// TestBFDTakeover: lvsha on both directors, three instances all master on
// lb1. lb2 keeps one BFD session with lb1, shared by its three backups;
// lb1 answers it. A stall of lb2's whole process (SIGSTOP) under the live
// master moves nothing. With BFD dropped in lb2's namespace while adverts
// flow (BFD lost, master alive) every VIP is back on, or never left, lb1
// within a second, each instance counts the event, and the session, never
// Up again while blocked, moves nothing more; unblocked, it comes Up.
// SIGKILL of lb1's daemon: lb2 holds every VIP within the detection time
// plus slack, far under Master_Down_Interval, and says BFD did it.
func TestBFDTakeover(t *testing.T) {
	lb1, lb2, insts := bfdPair(t)
	const lb1Addr, lb2Addr = "10.79.0.1", "10.79.0.2"

	// One session, lb2 watching lb1 for its three backups; lb1 answering.
	var watch bfdSessionStatus
	eventually(t, "lb2's BFD session with lb1 Up, watching for all three instances", 10*time.Second, func() bool {
		s, ok := lb2.bfdStatus(t).session(lb1Addr)
		watch = s
		return ok && s.State == "Up" && s.Watching && len(s.Following) == len(insts) && s.DetectionMS > 0
	})
	if r := lb2.bfdStatus(t); len(r.BFD) != 1 {
		t.Errorf("lb2 runs %d BFD sessions, want one for every instance: %+v", len(r.BFD), r.BFD)
	}
	eventually(t, "lb1 answering lb2's session", 5*time.Second, func() bool {
		s, ok := lb1.bfdStatus(t).session(lb2Addr)
		return ok && s.State == "Up" && !s.Watching
	})
	detect := time.Duration(watch.DetectionMS * float64(time.Millisecond))
	t.Logf("lb2 watches lb1 for %v with detection time %v", watch.Following, detect)

	// The backup stalls for 300 ms, six detection times; when it runs
	// again its expired timers and lb1's packets are ready together.
	t1, t2 := transitionsOf(t, lb1), transitionsOf(t, lb2)
	if err := syscall.Kill(lb2.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := syscall.Kill(lb2.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if ok, seen := scaleSettled(t, lb1, lb2, insts); !ok {
		lb2.logTail(30)
		t.Fatalf("after the backup's stall: %s", seen)
	}
	holdSettled(t, lb1, lb2, insts, 2*time.Second)
	if c := append(changed("lb1 ", t1, transitionsOf(t, lb1)), changed("lb2 ", t2, transitionsOf(t, lb2))...); len(c) > 0 {
		lb2.logGrep(10, "BFD")
		t.Errorf("backup stalled for 300 ms under a live master: %d instances changed state: %v", len(c), c)
	}

	// BFD lost, master alive.
	before := lb2.bfdStatus(t)
	unblock := blockBFD(t, lb2.ns)
	eventually(t, "lb2's session down with BFD blocked", 5*time.Second, func() bool {
		s, _ := lb2.bfdStatus(t).session(lb1Addr)
		return s.State != "Up"
	})
	time.Sleep(time.Second)
	if ok, seen := scaleSettled(t, lb1, lb2, insts); !ok {
		lb2.logGrep(20, "VRRP transition")
		t.Fatalf("a second after BFD was blocked: %s", seen)
	}
	after := lb2.bfdStatus(t)
	for _, v := range after.VRRP {
		if v.BFDMasterAlive != 1 {
			lb2.logGrep(20, "BFD")
			t.Errorf("%s: %d master-alive events counted, want 1 (BFD lost, master alive)", v.Name, v.BFDMasterAlive)
		}
	}
	if c := changed("lb1 ", t1, transitionsOf(t, lb1)); len(c) > 0 {
		t.Errorf("lb1 left master while only BFD was lost: %v", c)
	}
	t.Logf("BFD blocked: %d of %d instances took master and gave it back at the next advert, the rest stayed backup (an advert after BFD's last packet)",
		after.sum(func(v bfdInstStatus) int { return v.BFDTakeovers })-before.sum(func(v bfdInstStatus) int { return v.BFDTakeovers }), len(insts))
	// Never Up while blocked: nothing more moves.
	holdSettled(t, lb1, lb2, insts, 3*time.Second)
	if later := lb2.bfdStatus(t); later.sum(func(v bfdInstStatus) int { return v.BFDTakeovers + v.BFDMasterAlive }) !=
		after.sum(func(v bfdInstStatus) int { return v.BFDTakeovers + v.BFDMasterAlive }) {
		t.Errorf("BFD events went on while blocked: %+v, then %+v", after.VRRP, later.VRRP)
	}
	unblock()
	eventually(t, "lb2's session Up again once unblocked", 10*time.Second, func() bool {
		s, _ := lb2.bfdStatus(t).session(lb1Addr)
		return s.State == "Up"
	})
	// The answering side's polls settle the fast rate again.
	time.Sleep(500 * time.Millisecond)

	// The master dies.
	took := lb2.bfdStatus(t).sum(func(v bfdInstStatus) int { return v.BFDTakeovers })
	w := watchVIPs(t, lb2.ns)
	at := lb1.killScale()
	lb1.kind = "dead"
	first, last, n, err := w.waitAll(insts, at, 5*time.Second)
	if err != nil || n != len(insts) {
		lb2.logTail(20)
		t.Fatalf("after SIGKILL of lb1: %d/%d VIPs on lb2 within 5 s (%v)", n, len(insts), err)
	}
	// Detection time, then the takeover's own work (VIPs on the tun
	// device, announcements); the slack covers a loaded host's scheduling.
	// Master_Down_Interval at 100 ms adverts and priority 100 is 361 ms.
	bound := detect + 150*time.Millisecond
	t.Logf("SIGKILL of lb1: first VIP on lb2 after %v, last after %v (bound %v; Master_Down_Interval 361ms)",
		first.Sub(at).Round(time.Millisecond), last.Sub(at).Round(time.Millisecond), bound)
	if d := last.Sub(at); d > bound {
		lb2.logGrep(20, "BFD")
		t.Errorf("last VIP on lb2 %v after the kill, want within %v", d, bound)
	}
	r := lb2.bfdStatus(t)
	if got := r.sum(func(v bfdInstStatus) int { return v.BFDTakeovers }) - took; got != len(insts) {
		t.Errorf("%d takeovers on BFD after the kill, want %d: %+v", got, len(insts), r.VRRP)
	}
	for _, v := range r.VRRP {
		if v.State != "MASTER" {
			t.Errorf("%s: %s after lb1 died, want MASTER", v.Name, v.State)
		}
	}
}

// TestBFDKeepalivedPeer: keepalived (no bfd_instance) master, lvsha
// backup with bfd at its defaults. lvsha's session never comes Up, and
// nothing moves; when keepalived dies, lvsha takes over by VRRP's own
// timer, BFD taking no part. (TestScaleInterop runs the same pair at 100
// instances without BFD, like for like with keepalived.)
func TestBFDKeepalivedPeer(t *testing.T) {
	lb1, lb2 := scalePair(t, 1)
	lb2.bfd = true
	insts := scaleInstances(1, 2)
	lb1.startScale(t, "keepalived", 150, insts)
	lb2.startScale(t, "lvsha", 100, insts)
	settleScale(t, "keepalived master of all, lvsha backup of all", lb1, lb2, insts, 30*time.Second)
	t2 := transitionsOf(t, lb2)
	var s bfdSessionStatus
	eventually(t, "lvsha watching keepalived's address", 5*time.Second, func() bool {
		var ok bool
		s, ok = lb2.bfdStatus(t).session("10.79.0.1")
		return ok && s.Watching
	})
	holdSettled(t, lb1, lb2, insts, 3*time.Second)
	r := lb2.bfdStatus(t)
	s, _ = r.session("10.79.0.1")
	if s.State == "Up" || s.Downs != 0 {
		t.Errorf("session with keepalived: %+v, want never Up", s)
	}
	if c := changed("lvsha ", t2, transitionsOf(t, lb2)); len(c) > 0 {
		t.Errorf("lvsha changed state beside a live keepalived master: %v", c)
	}
	w := watchVIPs(t, lb2.ns)
	at := lb1.killScale()
	lb1.kind = "dead"
	// keepalived leaves its VIPs on its interface when killed: gone with
	// its namespace's daemon, they are still there, so count lb2's only.
	_, last, n, err := w.waitAll(insts, at, 5*time.Second)
	if err != nil || n != len(insts) {
		t.Fatalf("after SIGKILL of keepalived: %d/%d VIPs on lvsha within 5 s (%v)", n, len(insts), err)
	}
	r = lb2.bfdStatus(t)
	if got := r.sum(func(v bfdInstStatus) int { return v.BFDTakeovers }); got != 0 {
		t.Errorf("%d takeovers on BFD from a peer that never answered BFD", got)
	}
	t.Logf("keepalived killed: lvsha holds every VIP after %v, by its Master_Down_Timer (%s)", last.Sub(at).Round(time.Millisecond),
		strings.TrimSpace(fmt.Sprint(r.VRRP)))
}

// BenchmarkBFDLoad (on the host): one VRRP instance between two
// directors, idle, then beside two CPU hogs (busy loops, one per core of
// the build hosts) for LVSHA_BFD_HOG (default 30 s): lvsha at its
// defaults (bfd 10 ms x 5, priorities 150/100) and keepalived at 10 ms
// adverts (250/240), each kind alone. It reports each daemon's CPU while
// idle (ms/s over 10 s, every thread of its process group) and how often
// the backup took the VIP from the live master under the hogs; for lvsha
// also its BFD takeovers, the BFD downs it ignored or gave back
// (bfd_master_alive) and the session's failures.
//
//	go test ./integration -run '^$' -bench BFDLoad -benchtime 1x -timeout 30m
func BenchmarkBFDLoad(b *testing.B) {
	window := envDuration(b, "LVSHA_BFD_HOG", 30*time.Second)
	for _, kind := range []string{"lvsha", "keepalived"} {
		lb1, lb2 := scalePair(b, 1)
		lb1.bfd, lb2.bfd = true, true
		insts := scaleInstances(1, 1)
		prios := [2]int{150, 100}
		if kind == "keepalived" {
			lb1.kaAdvert, lb2.kaAdvert = "0.01", "0.01"
			prios = [2]int{250, 240}
		}
		lb1.startScale(b, kind, prios[0], insts)
		lb2.startScale(b, kind, prios[1], insts)
		if _, ok, seen := waitSettled(b, lb1, lb2, insts, 30*time.Second); !ok {
			b.Fatalf("%s: not settled: %s", kind, seen)
		}
		time.Sleep(2 * time.Second) // BFD Up, its polls settled
		u1, u2, from := procGroupUsage(lb1.cmd.Process.Pid), procGroupUsage(lb2.cmd.Process.Pid), time.Now()
		time.Sleep(10 * time.Second)
		v1, v2, to := procGroupUsage(lb1.cmd.Process.Pid), procGroupUsage(lb2.cmd.Process.Pid), time.Now()
		msps := func(a, b usage) float64 {
			return float64(b.cpu-a.cpu) / float64(time.Millisecond) / to.Sub(from).Seconds()
		}
		b.ReportMetric(msps(u1, v1), kind+"-master-idle-cpu-ms/s")
		b.ReportMetric(msps(u2, v2), kind+"-backup-idle-cpu-ms/s")

		var before bfdReport
		if kind == "lvsha" {
			before = lb2.bfdStatus(b)
		}
		w := watchVIPs(b, lb2.ns)
		var hogs []*exec.Cmd
		for range 2 {
			h := exec.Command("sh", "-c", "while :; do :; done")
			if err := h.Start(); err != nil {
				b.Fatal(err)
			}
			hogs = append(hogs, h)
		}
		stopHogs := func() {
			for _, h := range hogs {
				h.Process.Kill()
				h.Wait()
			}
			hogs = nil
		}
		b.Cleanup(stopHogs)
		time.Sleep(window)
		stopHogs()
		time.Sleep(time.Second)
		took := w.added()
		w.stop()
		b.ReportMetric(float64(took), kind+"-takeovers-under-load")
		line := fmt.Sprintf("%s: idle CPU master %.1f ms/s, backup %.1f ms/s; under 2 hogs for %v the backup took the VIP %d times",
			kind, msps(u1, v1), msps(u2, v2), window, took)
		if kind == "lvsha" {
			after := lb2.bfdStatus(b)
			bt := after.sum(func(v bfdInstStatus) int { return v.BFDTakeovers }) - before.sum(func(v bfdInstStatus) int { return v.BFDTakeovers })
			alive := after.sum(func(v bfdInstStatus) int { return v.BFDMasterAlive }) - before.sum(func(v bfdInstStatus) int { return v.BFDMasterAlive })
			s0, _ := before.session("10.79.0.1")
			s1, _ := after.session("10.79.0.1")
			b.ReportMetric(float64(bt), "lvsha-bfd-takeovers-under-load")
			b.ReportMetric(float64(alive), "lvsha-bfd-master-alive-under-load")
			b.ReportMetric(float64(s1.Downs-s0.Downs), "lvsha-bfd-session-downs-under-load")
			line += fmt.Sprintf(" (%d on BFD; %d BFD downs ignored or given back; the session failed %d times)", bt, alive, s1.Downs-s0.Downs)
		}
		fmt.Fprintln(os.Stderr, line)
		lb1.stopScale(b)
		lb2.stopScale(b)
	}
}

// TestBFDGracefulStop: the master stops gracefully (SIGTERM) with BFD on
// both sides. Its sessions go AdminDown (RFC 5880 6.8.16), so the backup
// sees its session go Down by the peer's word ("neighbor signaled session
// down"), counts no failure and takes no BFD takeover: every instance is
// handed over by the master's priority-0 advert, after Skew_Time.
func TestBFDGracefulStop(t *testing.T) {
	lb1, lb2, insts := bfdPair(t)
	const lb1Addr = "10.79.0.1"
	eventually(t, "lb2's BFD session with lb1 Up, watching for all three instances", 10*time.Second, func() bool {
		s, ok := lb2.bfdStatus(t).session(lb1Addr)
		return ok && s.State == "Up" && s.Watching && len(s.Following) == len(insts)
	})
	before := lb2.bfdStatus(t)

	w := watchVIPs(t, lb2.ns)
	at := time.Now()
	if err := lb1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	first, last, n, err := w.waitAll(insts, at, 5*time.Second)
	if err != nil || n != len(insts) {
		lb2.logTail(20)
		t.Fatalf("after SIGTERM of lb1: %d/%d VIPs on lb2 within 5 s (%v)", n, len(insts), err)
	}
	// Skew_Time at priority 100 and 100 ms adverts is 61 ms; the bound is
	// only there to say the handover did not wait out anything longer.
	t.Logf("SIGTERM of lb1: first VIP on lb2 after %v, last after %v (Skew_Time 61ms, Master_Down_Interval 361ms)",
		first.Sub(at).Round(time.Millisecond), last.Sub(at).Round(time.Millisecond))
	if d := last.Sub(at); d > 2*time.Second {
		t.Errorf("last VIP on lb2 %v after the SIGTERM, want well within 2 s", d)
	}
	exited := make(chan struct{})
	go func() { lb1.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("lb1 did not exit within 10 s of its SIGTERM")
	}
	lb1.kind = "stopped"

	after := lb2.bfdStatus(t)
	take := func(v bfdInstStatus) int { return v.BFDTakeovers }
	if got := after.sum(take) - before.sum(take); got != 0 {
		lb2.logGrep(20, "BFD")
		t.Errorf("%d takeovers on BFD after lb1's graceful stop, want none (priority 0 hands over): %+v", got, after.VRRP)
	}
	for _, v := range after.VRRP {
		if v.State != "MASTER" {
			t.Errorf("%s: %s after lb1 stopped, want MASTER", v.Name, v.State)
		}
	}
	if s, ok := after.session(lb1Addr); ok && s.Downs != 0 {
		t.Errorf("lb2's session with lb1 counts %d failures after lb1's AdminDown, want 0: %+v", s.Downs, s)
	}
	log, err := os.ReadFile(lb2.logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "BFD session down by the peer's word") || !strings.Contains(string(log), "neighbor signaled session down") {
		lb2.logGrep(20, "BFD")
		t.Error("lb2's log has no session down by lb1's word (AdminDown, neighbor signaled session down)")
	}
	if strings.Contains(string(log), "BFD session with a peer failed") {
		lb2.logGrep(20, "BFD")
		t.Error("lb2 logged a BFD failure of lb1 at its graceful stop")
	}
	// lb2 forgets the stopped lb1's discriminator: lb1 back as a new
	// process drops packets naming the old one, and BFD between the two
	// stayed down for a five-second Detection Time, across the takeover
	// BenchmarkFailoverBFD made next (then by VRRP's timer, 300 ms).
	if s, ok := after.session(lb1Addr); ok && s.RemoteDiscr != 0 {
		t.Errorf("lb2 still names lb1's old discriminator %x after lb1's AdminDown, want 0", s.RemoteDiscr)
	}

	// lb1 back: it takes master back, lb2 watches it again, and lb1's
	// death is a takeover on BFD.
	lb1.startScale(t, "lvsha", 150, insts)
	settleScale(t, "lb1 back as master of all", lb1, lb2, insts, 30*time.Second)
	eventually(t, "lb2's BFD session with the new lb1 Up, watching", 10*time.Second, func() bool {
		s, ok := lb2.bfdStatus(t).session(lb1Addr)
		return ok && s.State == "Up" && s.Watching && len(s.Following) == len(insts)
	})
	before = lb2.bfdStatus(t)
	w = watchVIPs(t, lb2.ns)
	at = lb1.killScale()
	lb1.kind = "dead"
	if _, last, n, err := w.waitAll(insts, at, 5*time.Second); err != nil || n != len(insts) {
		t.Fatalf("after SIGKILL of the new lb1: %d/%d VIPs on lb2 within 5 s (%v)", n, len(insts), err)
	} else {
		t.Logf("SIGKILL of the restarted lb1: last VIP on lb2 after %v", last.Sub(at).Round(time.Millisecond))
	}
	eventually(t, "lb2's takeovers counted as BFD's", 5*time.Second, func() bool {
		return lb2.bfdStatus(t).sum(take)-before.sum(take) == len(insts)
	})
}
