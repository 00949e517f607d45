package integration

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// usage is what the processes of one group have used so far.
type usage struct {
	cpu      time.Duration // time on a CPU, every thread, to the nanosecond
	switches int           // context switches, voluntary and not
	rssKiB   int
	anonKiB  int // of rssKiB, anonymous memory: what no other process shares
	threads  int // at the reading
}

// procGroupUsage sums usage over the processes of process group pgid,
// from /proc. CPU time comes from each thread's schedstat, which the
// scheduler keeps in nanoseconds: the 10 ms ticks of /proc/PID/stat only
// sample, and at a few percent of a core over 10 s their noise was as
// large as the differences measured.
func procGroupUsage(pgid int) usage {
	var u usage
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name, which may hold spaces.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if len(f) < 13 {
			continue
		}
		if pg, _ := strconv.Atoi(f[2]); pg != pgid {
			continue
		}
		if kib, ok := statusField("/proc/"+e.Name()+"/status", "VmRSS:"); ok {
			u.rssKiB += kib
		}
		if kib, ok := statusField("/proc/"+e.Name()+"/status", "RssAnon:"); ok {
			u.anonKiB += kib
		}
		tasks, _ := os.ReadDir("/proc/" + e.Name() + "/task")
		u.threads += len(tasks)
		for _, t := range tasks {
			dir := "/proc/" + e.Name() + "/task/" + t.Name()
			if b, err := os.ReadFile(dir + "/schedstat"); err == nil {
				if f := strings.Fields(string(b)); len(f) > 0 {
					ns, _ := strconv.ParseInt(f[0], 10, 64)
					u.cpu += time.Duration(ns)
				}
			}
			for _, key := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
				if n, ok := statusField(dir+"/status", key); ok {
					u.switches += n
				}
			}
		}
	}
	return u
}

// statusField is the first number after key in a /proc status file.
func statusField(path, key string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, err := strconv.Atoi(f[0])
				return n, err == nil
			}
		}
	}
	return 0, false
}

// BenchmarkIdleMaster measures each daemon as an idle VRRP master at 100 ms
// adverts, alternating in the same run: CPU share and context switches
// over 10 s, and RSS (all processes of the daemon: keepalived forks a VRRP
// child). With -benchtime Nx each is measured N times, and the medians are
// reported.
//
//	go test ./integration -run '^$' -bench IdleMaster -benchtime 3x
func BenchmarkIdleMaster(b *testing.B) {
	kinds := []string{"lvsha", "keepalived"}
	share := map[string][]time.Duration{} // CPU per 10 s window
	switches := map[string][]int{}
	rss := map[string][]int{}
	for round := range b.N {
		for _, kind := range kinds {
			func() {
				const vip = "10.79.0.100"
				_, ds := newDirectors(b, vip+"/24", func(int) string { return "advert_interval = \"100ms\"\n" }, 150, 100)
				p := &pair{kind: kind, ds: ds, kaArgs: []string{"  version 3\n  advert_int 0.1\n"}}
				p.startDirector(b, 0)
				p.startDirector(b, 1)
				// Stopped before the next daemon starts, so rounds do not
				// compete for the CPU.
				defer stopProc(ds[1].cmd)
				defer stopProc(ds[0].cmd)
				eventually(b, kind+" master", 20*time.Second, func() bool { return ds[0].holdsVIP(b, vip) && !ds[1].holdsVIP(b, vip) })
				time.Sleep(2 * time.Second)
				pg := ds[0].cmd.Process.Pid
				u0 := procGroupUsage(pg)
				const window = 10 * time.Second
				time.Sleep(window)
				u1 := procGroupUsage(pg)
				share[kind] = append(share[kind], u1.cpu-u0.cpu)
				switches[kind] = append(switches[kind], u1.switches-u0.switches)
				rss[kind] = append(rss[kind], u1.rssKiB)
				b.Logf("round %d: %s idle master at 100ms adverts: %.2f%% of one core, %.1f context switches/s, RSS %.1f MiB", round+1, kind,
					float64(u1.cpu-u0.cpu)/float64(window)*100, float64(u1.switches-u0.switches)/window.Seconds(), float64(u1.rssKiB)/1024)
			}()
		}
	}
	for _, kind := range kinds {
		b.ReportMetric(float64(median(share[kind]))/float64(10*time.Second)*100, kind+"-cpu-%")
		b.ReportMetric(float64(medianInt(switches[kind]))/10, kind+"-switches/s")
		b.ReportMetric(float64(medianInt(rss[kind]))/1024, kind+"-rss-MiB")
	}
}
