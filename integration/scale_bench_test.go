package integration

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvsha/lvsha/vrrp"
)

// scaleRound is what one round of one kind measured. Rates are per
// second of the time between the readings each comes from, as the
// readings themselves take a while in a busy VM.
type scaleRound struct {
	settled      bool
	settle       time.Duration
	seen         string  // the last settle check's findings
	masterCPU    float64 // ms/s over the window
	backupCPU    float64
	masterSw     float64 // context switches/s over the window
	backupSw     float64
	masterRSS    int // KiB at the window's end
	backupRSS    int
	masterAnon   int // KiB of masterRSS that is anonymous memory
	backupAnon   int
	masterThr    int // threads at the window's end
	backupThr    int
	busy         float64       // ms/s, every task in the VM, over the window
	transitions  int           // lvsha: over the window, both directors; -1 unknown
	placedAfter  string        // VIP placement after the window
	moved        int           // VIPs on the backup after the kill, of len(insts)
	first, last  time.Duration // kill → first and last VIP on the backup
	movedChecked bool          // the kill was timed
	exited       bool          // a daemon ended before it settled
	flaps        int           // with hogs: VIPs added on either director over the window; -1 not watched
}

// BenchmarkScale measures many VRRP instances per director, lvsha against
// keepalived in the same run and the same namespaces, each kind alone
// (its pair stopped before the other kind starts). Two directors are
// joined by veth pairs: VRRPv3 at 100 ms adverts, master priority 150,
// backup 100, one VRID and one /32 VIP (10.80.<link>.<vrid>) per
// instance. Sizes are sub-benchmarks: 1, 100 and 255 instances on one
// link, and 1000 as VRIDs 1–250 on each of four links.
//
// Each round starts both daemons, waits until the master holds every VIP
// and the backup none (for lvsha, also every instance MASTER and BACKUP
// in its status) for at most 30 s + 100 ms per instance, leaves 3 s (and
// at least until 13 s after the start: lvsha lets go of its start-up
// pages at 10 s), and
// then measures over a window (10 s, LVSHA_SCALE_WINDOW to change): the
// CPU time of each daemon's process group (schedstat), its context
// switches and RSS, and the CPU time of every task in the VM (from
// /proc/schedstat, which also covers the kernel's delivery of adverts
// wherever it is charged).
// With LVSHA_SCALE_HOG=N, N processes spin on the CPU for the whole
// window (2 fill the host's 2 cores), and netlink watches in both
// namespaces count every VIP added over it: a takeover by the backup, or
// a master that lost its VIPs and took them back, whichever kind it is
// (keepalived's users report false takeovers on busy hosts). With
// LVSHA_SCALE_HOG_RT=P as well, the hogs run at the real-time policy
// SCHED_FIFO at priority P, pinned with both daemons to the last CPU (the
// rest of the host keeps the others); LVSHA_SCALE_RT=N runs both daemons
// under SCHED_RR at N (lvsha's director.rt_priority, keepalived's
// vrrp_rt_priority).
// Then the master's daemon is SIGKILLed and the bench times, from a
// netlink subscription in the backup's namespace, the kill → the first
// and the last VIP present on the backup, against the bound
// Master_Down_Interval + 20 ms. A kind whose instances do not settle in
// time is measured all the same and reported with settled 0 and without
// a move time: that is the result, not a failure.
//
//	go test ./integration -run '^$' -bench 'Scale/1$|Scale/100$' -benchtime 1x -timeout 60m
func BenchmarkScale(b *testing.B) {
	for _, size := range []struct {
		name           string
		links, perLink int
	}{
		{"1", 1, 1},
		{"100", 1, 100},
		{"255", 1, 255},
		{"1000", 4, 250},
	} {
		b.Run(size.name, func(b *testing.B) {
			insts := scaleInstances(size.links, size.perLink)
			master, backup := scalePair(b, size.links)
			window := envDuration(b, "LVSHA_SCALE_WINDOW", 10*time.Second)
			hogs := envCount(b, "LVSHA_SCALE_HOG")
			hogRT := envCount(b, "LVSHA_SCALE_HOG_RT")
			master.rtPriority = envCount(b, "LVSHA_SCALE_RT")
			backup.rtPriority = master.rtPriority
			bound := vrrp.MasterDownInterval(3, 100, 100*time.Millisecond) + 20*time.Millisecond
			rounds := map[string][]scaleRound{}
			kinds := []string{"lvsha", "keepalived"}
			for round := range b.N {
				for _, kind := range kinds {
					r := scaleRun(b, kind, master, backup, insts, window, hogs, hogRT)
					rounds[kind] = append(rounds[kind], r)
					move := "not timed (not settled)"
					if r.movedChecked {
						move = fmt.Sprintf("%d/%d VIPs on the backup, first %v, last %v after the kill (bound %v)",
							r.moved, len(insts), r.first.Round(time.Millisecond), r.last.Round(time.Millisecond), bound)
					}
					// stderr: a benchmark's log keeps only its first lines.
					fmt.Fprintf(os.Stderr, "scale %s round %d %s: settled %v in %v (%s); over %v: master %.1f ms/s CPU, %.0f switches/s, RSS %.1f MiB (anonymous %.1f), %d threads; backup %.1f ms/s CPU, %.0f switches/s, RSS %.1f MiB (anonymous %.1f), %d threads; VM tasks %.0f ms/s; transitions %d; hogs %d, VIPs added %d; after: %s; kill: %s\n",
						size.name, round+1, kind, r.settled, r.settle.Round(time.Millisecond), r.seen, window,
						r.masterCPU, r.masterSw, float64(r.masterRSS)/1024, float64(r.masterAnon)/1024, r.masterThr,
						r.backupCPU, r.backupSw, float64(r.backupRSS)/1024, float64(r.backupAnon)/1024, r.backupThr,
						r.busy, r.transitions, hogs, r.flaps, r.placedAfter, move)
				}
			}
			for _, kind := range kinds {
				reportScale(b, kind, rounds[kind], len(insts), bound)
			}
		})
	}
}

// reading is a cumulative count and when it was read: the middle of
// the time the reading took.
type reading[T any] struct {
	v  T
	at time.Time
}

func read[T any](f func() T) reading[T] {
	start := time.Now()
	v := f()
	return reading[T]{v, start.Add(time.Since(start) / 2)}
}

// rate is (b-a) per second between the two readings, scaled by unit.
func rate(a, b, unit float64, from, to time.Time) float64 {
	return (b - a) / unit / to.Sub(from).Seconds()
}

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// reportScale reports the medians of one kind's rounds.
func reportScale(b *testing.B, kind string, rs []scaleRound, n int, bound time.Duration) {
	pick := func(f func(scaleRound) float64) float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, f(r))
		}
		return medianF(v)
	}
	settled := 0
	for _, r := range rs {
		if r.settled {
			settled++
		}
	}
	b.ReportMetric(float64(settled)/float64(len(rs)), kind+"-settled")
	exited := 0
	for _, r := range rs {
		if r.exited {
			exited++
		}
	}
	if exited > 0 {
		// Nothing else was measured in those rounds.
		b.ReportMetric(float64(exited)/float64(len(rs)), kind+"-exited")
		if exited == len(rs) {
			return
		}
		var kept []scaleRound
		for _, r := range rs {
			if !r.exited {
				kept = append(kept, r)
			}
		}
		rs = kept
	}
	b.ReportMetric(pick(func(r scaleRound) float64 { return r.settle.Seconds() }), kind+"-settle-s")
	b.ReportMetric(pick(func(r scaleRound) float64 { return r.masterCPU }), kind+"-master-cpu-ms/s")
	b.ReportMetric(pick(func(r scaleRound) float64 { return r.backupCPU }), kind+"-backup-cpu-ms/s")
	b.ReportMetric(pick(func(r scaleRound) float64 { return r.masterSw }), kind+"-master-switches/s")
	b.ReportMetric(pick(func(r scaleRound) float64 { return r.backupSw }), kind+"-backup-switches/s")
	b.ReportMetric(pick(func(r scaleRound) float64 { return float64(r.masterRSS) / 1024 }), kind+"-master-rss-MiB")
	b.ReportMetric(pick(func(r scaleRound) float64 { return float64(r.backupRSS) / 1024 }), kind+"-backup-rss-MiB")
	b.ReportMetric(pick(func(r scaleRound) float64 { return float64(r.masterAnon) / 1024 }), kind+"-master-anon-MiB")
	b.ReportMetric(pick(func(r scaleRound) float64 { return float64(r.masterThr) }), kind+"-master-threads")
	b.ReportMetric(pick(func(r scaleRound) float64 { return float64(r.backupThr) }), kind+"-backup-threads")
	b.ReportMetric(pick(func(r scaleRound) float64 { return r.busy }), kind+"-vm-tasks-cpu-ms/s")
	if kind == "lvsha" {
		b.ReportMetric(pick(func(r scaleRound) float64 { return float64(r.transitions) }), kind+"-transitions-in-window")
	}
	if rs[0].flaps >= 0 {
		b.ReportMetric(pick(func(r scaleRound) float64 { return float64(r.flaps) }), kind+"-vips-added-in-window")
	}
	var moved []scaleRound
	for _, r := range rs {
		if r.movedChecked {
			moved = append(moved, r)
		}
	}
	if len(moved) == 0 {
		return
	}
	within, all := 0, 0
	var first, last []time.Duration
	for _, r := range moved {
		if r.moved == n {
			all++
			last = append(last, r.last)
			if r.last <= bound {
				within++
			}
		}
		first = append(first, r.first)
	}
	b.ReportMetric(float64(all)/float64(len(moved)), kind+"-all-moved")
	b.ReportMetric(median(first).Seconds(), kind+"-move-first-s")
	if len(last) > 0 {
		b.ReportMetric(median(last).Seconds(), kind+"-move-last-s")
	}
	b.ReportMetric(float64(within)/float64(len(moved)), kind+"-move-within-bound")
}

// scaleRun is one round of kind on the pair: settle, measure, kill the
// master, time the move; both daemons are stopped and the namespaces
// cleared of VIPs at the end.
func scaleRun(b *testing.B, kind string, master, backup *scaleDirector, insts []scaleInst, window time.Duration, hogs, hogRT int) (r scaleRound) {
	r.transitions, r.flaps = -1, -1
	defer func() {
		if b.Failed() && kind == "lvsha" {
			master.logTail(20)
			backup.logTail(20)
		}
		backup.stopScale(b)
		master.stopScale(b)
	}()
	started := time.Now()
	master.startScale(b, kind, 150, insts)
	backup.startScale(b, kind, 100, insts)
	limit := 30*time.Second + time.Duration(len(insts))*100*time.Millisecond
	r.settle, r.settled, r.seen = waitSettled(b, master, backup, insts, limit)
	if master.exited() || backup.exited() {
		// Nothing to measure: say why, and go on to the next kind.
		fmt.Fprintf(os.Stderr, "scale %s: a daemon exited before settling: %s\nkernel: %s\n", kind, r.seen, whyExited())
		if kind == "lvsha" {
			master.logTail(10)
			backup.logTail(10)
		}
		r.exited = true
		return r
	}
	// 3 s, and past lvsha's release of its start-up pages 10 s after it
	// started (cmd/lvsha releaseAfter) with its refaults, so the window
	// sees each kind's steady state; keepalived waits as long.
	time.Sleep(max(3*time.Second, time.Until(started.Add(13*time.Second))))

	t0 := -1
	if kind == "lvsha" {
		_, tm, err1 := master.countStates(insts, "MASTER")
		_, tb, err2 := backup.countStates(insts, "BACKUP")
		if err1 == nil && err2 == nil {
			t0 = tm + tb
		}
	}
	mpg, bpg := master.cmd.Process.Pid, backup.cmd.Process.Pid
	mu := func() usage { return procGroupUsage(mpg) }
	bu := func() usage { return procGroupUsage(bpg) }
	var wm, wb *vipWatch
	var stopHogs func()
	if hogs > 0 {
		wm, wb = watchVIPs(b, master.ns), watchVIPs(b, backup.ns)
		if hogRT > 0 {
			// The hogs and both daemons on the last CPU alone: the
			// rest of the host keeps the other.
			cpu := runtime.NumCPU() - 1
			pinGroup(b, mpg, cpu)
			pinGroup(b, bpg, cpu)
			stopHogs = startRTHogs(b, hogs, hogRT, cpu)
		} else {
			stopHogs = startHogs(b, hogs)
		}
	}
	m0, b0, busy0 := read(mu), read(bu), read(systemBusy)
	time.Sleep(window)
	m1, b1, busy1 := read(mu), read(bu), read(systemBusy)
	if hogs > 0 {
		stopHogs()
		r.flaps = wm.added() + wb.added()
		wm.stop()
		wb.stop()
	}
	ms := float64(time.Millisecond)
	r.masterCPU = rate(float64(m0.v.cpu), float64(m1.v.cpu), ms, m0.at, m1.at)
	r.backupCPU = rate(float64(b0.v.cpu), float64(b1.v.cpu), ms, b0.at, b1.at)
	r.masterSw = rate(float64(m0.v.switches), float64(m1.v.switches), 1, m0.at, m1.at)
	r.backupSw = rate(float64(b0.v.switches), float64(b1.v.switches), 1, b0.at, b1.at)
	r.busy = rate(float64(busy0.v), float64(busy1.v), ms, busy0.at, busy1.at)
	r.masterRSS, r.backupRSS = m1.v.rssKiB, b1.v.rssKiB
	r.masterAnon, r.backupAnon = m1.v.anonKiB, b1.v.anonKiB
	r.masterThr, r.backupThr = m1.v.threads, b1.v.threads
	if t0 >= 0 {
		_, tm, err1 := master.countStates(insts, "MASTER")
		_, tb, err2 := backup.countStates(insts, "BACKUP")
		if err1 == nil && err2 == nil {
			r.transitions = tm + tb - t0
		}
	}
	_, r.placedAfter = scaleSettled(b, master, backup, insts)
	if !r.settled {
		return r
	}

	// The master's daemon dies with its links up; the backup takes every
	// instance over.
	w := watchVIPs(b, backup.ns)
	if _, _, n, _ := w.waitAll(insts, time.Now(), 0); n != 0 {
		// Not timed: the move time is of the others.
		fmt.Fprintf(os.Stderr, "scale %s: %d VIPs already on the backup before the kill\n", kind, n)
	}
	killed := master.killScale()
	first, last, n, err := w.waitAll(insts, killed, 30*time.Second+time.Duration(len(insts))*20*time.Millisecond)
	w.stop()
	if err != nil {
		b.Fatalf("%s: watching the backup's addresses: %v", kind, err)
	}
	r.movedChecked, r.moved = true, n
	if !first.IsZero() {
		r.first, r.last = first.Sub(killed), last.Sub(killed)
	}
	return r
}

// envCount is the count in environment variable name, 0 if unset.
func envCount(t testing.TB, name string) int {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 64 {
		t.Fatalf("%s=%q: want a count from 0 to 64", name, v)
	}
	return n
}

// startRTHogs is startHogs at the real-time policy SCHED_FIFO at prio,
// on CPU cpu alone: above every normal task there, and the kernel's
// real-time throttling (sched_rt_runtime_us) leaves the normal tasks
// 50 ms a second.
func startRTHogs(t testing.TB, n, prio, cpu int) (stop func()) {
	return spin(t, n, "taskset", "-c", strconv.Itoa(cpu), "chrt", "-f", strconv.Itoa(prio), "sh", "-c", "while :; do :; done")
}

// pinGroup binds every thread of every process in process group pg to
// CPU cpu.
func pinGroup(t testing.TB, pg, cpu int) {
	out, err := exec.Command("pgrep", "-g", strconv.Itoa(pg)).Output()
	if err != nil {
		t.Fatalf("processes of group %d: %v", pg, err)
	}
	for _, pid := range strings.Fields(string(out)) {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(cpu), pid).CombinedOutput(); err != nil {
			t.Fatalf("pin %s to CPU %d: %v\n%s", pid, cpu, err, out)
		}
	}
}

// startHogs starts n processes that spin on the CPU until the returned
// stop (or the test's cleanup) kills them.
func startHogs(t testing.TB, n int) (stop func()) {
	return spin(t, n, "sh", "-c", "while :; do :; done")
}

// spin runs n copies of argv until stop.
func spin(t testing.TB, n int, argv ...string) (stop func()) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
		cmds = nil
	}
	t.Cleanup(stop)
	for range n {
		c := exec.Command(argv[0], argv[1:]...)
		if err := c.Start(); err != nil {
			stop()
			t.Fatalf("start a CPU hog: %v", err)
		}
		cmds = append(cmds, c)
	}
	return stop
}
