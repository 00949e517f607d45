package integration

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procGroupUsage sums CPU time (user+system) and RSS over the processes of
// process group pgid, from /proc.
func procGroupUsage(pgid int) (cpu time.Duration, rssKiB int) {
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
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		cpu += time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
		status, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				n, _ := strconv.Atoi(strings.Fields(v)[0])
				rssKiB += n
			}
		}
	}
	return cpu, rssKiB
}

// BenchmarkIdleMaster measures each daemon as an idle VRRP master at 100 ms
// adverts, in the same run: CPU share over 10 s and RSS (all processes of
// the daemon: keepalived forks a VRRP child).
//
//	go test ./integration -run '^$' -bench IdleMaster -benchtime 1x
func BenchmarkIdleMaster(b *testing.B) {
	for _, kind := range []string{"lvsha", "keepalived"} {
		const vip = "10.79.0.100"
		_, ds := newDirectors(b, vip+"/24", func(int) string { return "advert_interval = \"100ms\"\n" }, 150, 100)
		p := &pair{kind: kind, ds: ds, kaArgs: []string{"  version 3\n  advert_int 0.1\n"}}
		p.startDirector(b, 0)
		p.startDirector(b, 1)
		eventually(b, kind+" master", 20*time.Second, func() bool { return ds[0].holdsVIP(b, vip) && !ds[1].holdsVIP(b, vip) })
		time.Sleep(2 * time.Second)
		pg := ds[0].cmd.Process.Pid
		cpu0, _ := procGroupUsage(pg)
		const window = 10 * time.Second
		time.Sleep(window)
		cpu1, rss := procGroupUsage(pg)
		share := float64(cpu1-cpu0) / float64(window) * 100
		b.ReportMetric(share, kind+"-cpu-%")
		b.ReportMetric(float64(rss)/1024, kind+"-rss-MiB")
		b.Logf("%s idle master at 100ms adverts: %.2f%% of one core, RSS %.1f MiB", kind, share, float64(rss)/1024)
	}
}
