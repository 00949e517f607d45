package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
)

// The reload bench's table: 100 virtual servers × 100 real servers,
// bigConfig's addresses (10.100.<i>.1:80 → 10.200.<i>.<j>:8080, wlc over
// NAT, weights 1..100), with no health check: lvsha and keepalived both
// keep an unchecked real server up, so 10,000 real servers cost the VM
// no probes.
const (
	reloadVS, reloadRS = 100, 100
	// reloadChanged is the 1% change: 50 weights, 25 real servers added,
	// 25 removed.
	reloadWeights, reloadAdded, reloadRemoved = 50, 25, 25
	reloadChanges                             = reloadWeights + reloadAdded + reloadRemoved
	// Bounds: programming 10,000 real servers from an empty table, and
	// one reload, under tcg.
	reloadProgramLimit = 5 * time.Minute
	reloadLimit        = 2 * time.Minute
	// reloadLate is how long after a reload is done its writes are still
	// counted: a write that came after the daemon said it was done
	// counts against it all the same.
	reloadLate = time.Second
)

// reloadTables are the bench's two tables: base, from bigConfig, and
// changed, base with the 1% change.
func reloadTables(t testing.TB) (base, changed []ipvs.Service) {
	t.Helper()
	cfg, err := conf.Parse("big.toml", []byte(bigConfig(reloadVS, reloadRS)))
	if err != nil {
		t.Fatal(err)
	}
	base = ipvs.Desired(cfg, allUp)
	changed = make([]ipvs.Service, len(base))
	for i, s := range base {
		s.Destinations = slices.Clone(s.Destinations)
		changed[i] = s
	}
	// Each change in a service of its own: weights in services 0-49,
	// removals in 50-74, additions in 75-99.
	for k := range reloadWeights {
		changed[k].Destinations[k].Weight += 100
	}
	for k := range reloadRemoved {
		s := &changed[reloadWeights+k]
		s.Destinations = slices.Delete(s.Destinations, k, k+1)
	}
	for k := range reloadAdded {
		i := reloadWeights + reloadRemoved + k
		changed[i].Destinations = append(changed[i].Destinations, ipvs.Destination{
			Address: netip.AddrFrom4([4]byte{10, 201, byte(i % 250), byte(k + 1)}), Port: 8080,
			Weight: 1, Forwarding: changed[i].Destinations[0].Forwarding,
		})
	}
	return base, changed
}

// reloadTOML is lvsha's file for a table of bigConfig's shape, with a
// control socket and state file in dir. The periodic resync is set to an
// hour so that no full read of the table falls into a timed reload.
func reloadTOML(dir string, svcs []ipvs.Service) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[director]\nname = \"bench\"\ncontrol_socket = %q\nstate_file = %q\nresync_interval = \"1h\"\n",
		filepath.Join(dir, "lvsha.sock"), filepath.Join(dir, "state.json"))
	for _, s := range svcs {
		fmt.Fprintf(&b, "[[virtual_server]]\naddress = \"%s\"\nscheduler = %q\n", netip.AddrPortFrom(s.Address, s.Port), s.Scheduler)
		for _, d := range s.Destinations {
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"%s\"\nweight = %d\n", d, d.Weight)
		}
	}
	return b.String()
}

// reloadKeepalivedConf is the same table for keepalived: real servers
// without a checker, which keepalived keeps up.
func reloadKeepalivedConf(svcs []ipvs.Service) string {
	var b strings.Builder
	b.WriteString("global_defs {\n  router_id bench\n}\n")
	for _, s := range svcs {
		fmt.Fprintf(&b, "virtual_server %s %d {\n  lb_algo %s\n  lb_kind NAT\n  protocol TCP\n", s.Address, s.Port, s.Scheduler)
		for _, d := range s.Destinations {
			fmt.Fprintf(&b, "  real_server %s %d {\n    weight %d\n  }\n", d.Address, d.Port, d.Weight)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// saveLines is a table as `ipvsadm -Sn` prints it, sorted as
// ipvsadmSave returns it.
func saveLines(svcs []ipvs.Service) []string {
	var lines []string
	for _, l := range strings.Split(ipvsadmRules(svcs), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

// tableDiff says how two sorted sets of ipvsadm -Sn lines differ, with
// a few examples.
func tableDiff(got, want []string) string {
	var missing, extra []string
	for _, l := range want {
		if _, ok := slices.BinarySearch(got, l); !ok {
			missing = append(missing, l)
		}
	}
	for _, l := range got {
		if _, ok := slices.BinarySearch(want, l); !ok {
			extra = append(extra, l)
		}
	}
	return fmt.Sprintf("%d lines (want %d), %d missing %q, %d unexpected %q",
		len(got), len(want), len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))])
}

// writeFileAtomic replaces path with text, so a daemon never reads half.
func writeFileAtomic(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitTable waits until ns's table is want and returns how long that
// took.
func waitTable(t testing.TB, ns, what string, want []string) time.Duration {
	t.Helper()
	var got []string
	start := time.Now()
	for {
		if got = ipvsadmSave(t, ns); slices.Equal(got, want) {
			return time.Since(start)
		}
		if time.Since(start) > reloadProgramLimit {
			t.Fatalf("%s: the table is not as configured after %v: %s", what, reloadProgramLimit, tableDiff(got, want))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// profileOut prints the CPU profile at path to stderr, base64 between
// marker lines, for the host to take out of the VM's output:
//
//	LVSHA_BENCH_PROFILE=1 go test ./integration -run '^$' -bench Reload10k -benchtime 1x -timeout 40m 2>&1 | tee out
//	sed -n '/^LVSHA-PROFILE-BEGIN/,/^LVSHA-PROFILE-END/{//!p}' out | base64 -d > lvsha.pprof
//	go tool pprof -top -cum -focus 'daemon..reload$' lvsha.pprof   # the reloads
//	go tool pprof -top -cum -ignore 'daemon..reload$' -focus 'daemon..loop$' lvsha.pprof   # the start's sync
func profileOut(t testing.TB, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("lvsha's CPU profile: %v", err)
		return
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	b.WriteString("LVSHA-PROFILE-BEGIN " + filepath.Base(path) + "\n")
	for len(enc) > 0 {
		n := min(len(enc), 76)
		b.WriteString(enc[:n] + "\n")
		enc = enc[n:]
	}
	b.WriteString("LVSHA-PROFILE-END\n")
	os.Stderr.WriteString(b.String())
}

// reloadRun is what one kind measured, one entry a round.
type reloadRun struct {
	program                      time.Duration // empty table → all 10,000 real servers
	programLog                   time.Duration // lvsha: start → its first sync's log line
	unchanged, changed           []time.Duration
	unchangedW, changedW         []ipvsWrites
	socket, sighup               []time.Duration // lvsha: unchanged, by the control socket and by SIGHUP
	socketC                      []time.Duration // lvsha: 1% changed, by the control socket
	socketCW                     []ipvsWrites
	socketW, sighupW             []ipvsWrites
	reportedUnchanged, reportedC []int // lvsha: kernel writes in its report
}

// timedReload runs one reload (do returns how long it took), counting the
// kernel's IPVS writes from just before it until reloadLate after it, and
// checks that ns's table is then want.
func timedReload(t testing.TB, tr *ipvsWriteTrace, ns, what string, want []string, do func() time.Duration) (time.Duration, ipvsWrites) {
	t.Helper()
	tr.start(t)
	d := do()
	time.Sleep(reloadLate)
	w := tr.stop(t)
	if got := ipvsadmSave(t, ns); !slices.Equal(got, want) {
		t.Errorf("%s: the table after the reload is not as configured: %s", what, tableDiff(got, want))
	}
	return d, w
}

// lvshaReport is the part of `lvsha reload -o json` (cmd/lvsha
// ReloadReport) the bench reads.
type lvshaReport struct {
	Applied, Refused, Unchanged bool
	Errors                      []string
	Kernel                      []struct {
		Op string `json:"op"`
	}
}

// lvshaReloadCLI runs `lvsha reload` and returns its wall time and report.
func lvshaReloadCLI(t testing.TB, sock string) (time.Duration, lvshaReport) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), reloadLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, lvshaBin(t), "reload", "-s", sock, "-o", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	d := time.Since(start)
	var rep lvshaReport
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("lvsha reload: %v %v\n%s%s", err, jerr, out, stderr.String())
	}
	if err != nil {
		t.Errorf("lvsha reload: %v: %s %v", err, stderr.String(), rep.Errors)
	}
	return d, rep
}

// lvshaReloadSocket asks the daemon to reload over its control socket
// (POST /reload, what `lvsha reload` sends) from this process: the
// daemon's part of a reload, without starting the lvsha command.
func lvshaReloadSocket(t testing.TB, sock string) (time.Duration, lvshaReport) {
	t.Helper()
	client := &http.Client{Timeout: reloadLimit, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Post("http://lvsha/reload", "application/json", nil)
	if err != nil {
		t.Fatalf("POST /reload on %s: %v", sock, err)
	}
	var rep lvshaReport
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("POST /reload on %s: %s: %v", sock, resp.Status, err)
	}
	return d, rep
}

// checkReport fails the bench when lvsha's report is not the expected
// one: unchanged, or applied with n kernel writes.
func checkReport(t testing.TB, what string, rep lvshaReport, unchanged bool, n int) {
	t.Helper()
	switch {
	case rep.Refused || len(rep.Errors) > 0:
		t.Errorf("%s: refused or failed: %v", what, rep.Errors)
	case unchanged && (!rep.Unchanged || len(rep.Kernel) != 0):
		t.Errorf("%s: report says unchanged %v with %d kernel writes, want unchanged and none", what, rep.Unchanged, len(rep.Kernel))
	case !unchanged && (!rep.Applied || len(rep.Kernel) != n):
		t.Errorf("%s: report says applied %v with %d kernel writes, want %d", what, rep.Applied, len(rep.Kernel), n)
	}
}

// checkWrites fails the bench when the kernel saw other than n IPVS
// writes.
func checkWrites(t testing.TB, what string, w ipvsWrites, n int) {
	t.Helper()
	if w.Commands != n {
		t.Errorf("%s: the kernel received %s; want %d", what, w, n)
	}
}

// reloadLvsha runs lvsha in ns on base, waits for its table, and then,
// each round, reloads the unchanged file (`lvsha reload`, then the
// control socket from this process, then SIGHUP timed to its log line),
// the 1% change (`lvsha reload`), and back.
func reloadLvsha(b *testing.B, ns string, tr *ipvsWriteTrace, base, changed []ipvs.Service) (r reloadRun) {
	dir := b.TempDir()
	cfg, sock := filepath.Join(dir, "lvsha.toml"), filepath.Join(dir, "lvsha.sock")
	writeFileAtomic(b, cfg, reloadTOML(dir, base))
	wantBase, wantChanged := saveLines(base), saveLines(changed)

	args := []string{"netns", "exec", ns, lvshaBin(b), "run", "-c", cfg}
	var profile string
	if os.Getenv(envProfile) != "" {
		profile = filepath.Join(dir, "cpu.pprof")
		args = append(args, "--cpuprofile", profile)
	}
	cmd := exec.Command("ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs, started := watchOutput(cmd)
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	started()
	b.Cleanup(func() {
		stopProc(cmd)
		if profile != "" {
			profileOut(b, profile)
		}
		if b.Failed() {
			fmt.Fprintf(os.Stderr, "reload lvsha: its log, last lines:\n%s\n", logs.tail(40))
		}
	})
	r.program = waitTable(b, ns, "lvsha programs 10,000 real servers", wantBase)
	// The daemon's own account: its first sync's summary, logged once
	// every write is made, which waitTable's polls see up to a poll late.
	if at, _, err := logs.wait(0, "kernel table changed", time.Second); err == nil {
		r.programLog = at.Sub(begin)
	}
	time.Sleep(2 * time.Second) // let start-up's own work finish

	for round := range b.N {
		d, w := timedReload(b, tr, ns, "lvsha reload, unchanged", wantBase, func() time.Duration {
			d, rep := lvshaReloadCLI(b, sock)
			checkReport(b, "lvsha reload, unchanged", rep, true, 0)
			r.reportedUnchanged = append(r.reportedUnchanged, len(rep.Kernel))
			return d
		})
		checkWrites(b, "lvsha reload, unchanged", w, 0)
		r.unchanged, r.unchangedW = append(r.unchanged, d), append(r.unchangedW, w)

		d, w = timedReload(b, tr, ns, "lvsha control socket reload, unchanged", wantBase, func() time.Duration {
			d, rep := lvshaReloadSocket(b, sock)
			checkReport(b, "lvsha control socket reload, unchanged", rep, true, 0)
			return d
		})
		checkWrites(b, "lvsha control socket reload, unchanged", w, 0)
		r.socket, r.socketW = append(r.socket, d), append(r.socketW, w)

		d, w = timedReload(b, tr, ns, "lvsha SIGHUP, unchanged", wantBase, func() time.Duration {
			mark := logs.mark()
			start := time.Now()
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				b.Fatal(err)
			}
			at, _, err := logs.wait(mark, "reload: configuration unchanged", reloadLimit)
			if err != nil {
				b.Fatalf("lvsha SIGHUP: %v", err)
			}
			return at.Sub(start)
		})
		checkWrites(b, "lvsha SIGHUP, unchanged", w, 0)
		r.sighup, r.sighupW = append(r.sighup, d), append(r.sighupW, w)

		writeFileAtomic(b, cfg, reloadTOML(dir, changed))
		d, w = timedReload(b, tr, ns, "lvsha reload, 1% changed", wantChanged, func() time.Duration {
			d, rep := lvshaReloadCLI(b, sock)
			checkReport(b, "lvsha reload, 1% changed", rep, false, reloadChanges)
			r.reportedC = append(r.reportedC, len(rep.Kernel))
			return d
		})
		// More writes than changes fails the bench; so do fewer (the
		// table check above says which are missing).
		checkWrites(b, "lvsha reload, 1% changed", w, reloadChanges)
		r.changed, r.changedW = append(r.changed, d), append(r.changedW, w)

		back := func() {
			writeFileAtomic(b, cfg, reloadTOML(dir, base))
			_, rep := lvshaReloadSocket(b, sock)
			checkReport(b, "lvsha reload back to the base table", rep, false, reloadChanges)
			waitTable(b, ns, "lvsha reload back to the base table", wantBase)
		}
		back()

		// The 1% change again, over the control socket: the daemon's part
		// alone, as keepalived's SIGHUP is, without starting a command.
		writeFileAtomic(b, cfg, reloadTOML(dir, changed))
		d, w = timedReload(b, tr, ns, "lvsha control socket reload, 1% changed", wantChanged, func() time.Duration {
			d, rep := lvshaReloadSocket(b, sock)
			checkReport(b, "lvsha control socket reload, 1% changed", rep, false, reloadChanges)
			return d
		})
		checkWrites(b, "lvsha control socket reload, 1% changed", w, reloadChanges)
		r.socketC, r.socketCW = append(r.socketC, d), append(r.socketCW, w)
		back()
		fmt.Fprintf(os.Stderr, "reload lvsha round %d: unchanged: lvsha reload %v, control socket %v, SIGHUP %v; 1%% changed: lvsha reload %v, control socket %v; kernel: unchanged %s / %s / %s, changed %s / %s\n",
			round+1, r.unchanged[round].Round(time.Microsecond), r.socket[round].Round(time.Microsecond), r.sighup[round].Round(time.Microsecond),
			r.changed[round].Round(time.Microsecond), r.socketC[round].Round(time.Microsecond), r.unchangedW[round], r.socketW[round], r.sighupW[round], r.changedW[round], r.socketCW[round])
	}
	stopProc(cmd)
	return r
}

// reloadKeepalived runs keepalived's checker process in ns on base, waits
// for its table, and then, each round, reloads the unchanged file, the
// 1% change and back, each by SIGHUP to keepalived's parent process. A
// reload is done when the parent logs "Reload complete": keepalived 2.2
// logs it when every child has reported its configuration read and its
// IPVS table written (core/config_notify.c; the checker reports after
// init_services).
func reloadKeepalived(b *testing.B, ns string, tr *ipvsWriteTrace, base, changed []ipvs.Service) (r reloadRun) {
	if _, err := exec.LookPath("keepalived"); err != nil {
		b.Fatal("keepalived is not installed (scripts/setup installs it): it is the peer this benchmark compares with")
	}
	dir := b.TempDir()
	cfg := filepath.Join(dir, "keepalived.conf")
	writeFileAtomic(b, cfg, reloadKeepalivedConf(base))
	wantBase, wantChanged := saveLines(base), saveLines(changed)

	// --no-syslog: the VM has no syslog, and with none keepalived writes
	// every line to /dev/console as well, the VM's emulated serial port,
	// at several ms a line.
	k := &kaProc{cmd: exec.Command("ip", "netns", "exec", ns, "keepalived", "--dont-fork", "--log-console", "--no-syslog", "--check", "-f", cfg,
		"-p", filepath.Join(dir, "k.pid"), "-c", filepath.Join(dir, "c.pid"), "-r", filepath.Join(dir, "r.pid")), done: make(chan struct{})}
	// keepalived forks its checker: a process group lets the bench end both.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs, started := watchOutput(k.cmd)
	if err := k.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	started()
	go func() { k.cmd.Wait(); close(k.done) }()
	b.Cleanup(func() {
		k.stop()
		if b.Failed() {
			fmt.Fprintf(os.Stderr, "reload keepalived: its log, last lines:\n%s\n", logs.tail(40))
		}
	})
	start := time.Now()
	if _, _, err := logs.wait(0, "Startup complete", reloadProgramLimit); err != nil {
		b.Fatalf("keepalived start: %v", err)
	}
	waitTable(b, ns, "keepalived programs 10,000 real servers", wantBase)
	r.program = time.Since(start)
	time.Sleep(2 * time.Second)

	sighup := func(what string) time.Duration {
		mark := logs.mark()
		start := time.Now()
		if err := k.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			b.Fatal(err)
		}
		at, _, err := logs.wait(mark, "Reload complete", reloadLimit)
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		return at.Sub(start)
	}
	for round := range b.N {
		d, w := timedReload(b, tr, ns, "keepalived SIGHUP, unchanged", wantBase, func() time.Duration {
			return sighup("keepalived SIGHUP, unchanged")
		})
		r.unchanged, r.unchangedW = append(r.unchanged, d), append(r.unchangedW, w)

		writeFileAtomic(b, cfg, reloadKeepalivedConf(changed))
		d, w = timedReload(b, tr, ns, "keepalived SIGHUP, 1% changed", wantChanged, func() time.Duration {
			return sighup("keepalived SIGHUP, 1% changed")
		})
		r.changed, r.changedW = append(r.changed, d), append(r.changedW, w)

		writeFileAtomic(b, cfg, reloadKeepalivedConf(base))
		sighup("keepalived SIGHUP back to the base table")
		waitTable(b, ns, "keepalived reload back to the base table", wantBase)
		fmt.Fprintf(os.Stderr, "reload keepalived round %d: unchanged: SIGHUP %v; 1%% changed: SIGHUP %v; kernel: unchanged %s, changed %s\n",
			round+1, r.unchanged[round].Round(time.Microsecond), r.changed[round].Round(time.Microsecond), r.unchangedW[round], r.changedW[round])
	}
	k.stop()
	return r
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func medianWrites(w []ipvsWrites) float64 {
	n := make([]float64, len(w))
	for i, x := range w {
		n[i] = float64(x.Commands)
	}
	return medianF(n)
}

// BenchmarkReload10k is issue #17's reload at 10,000 real servers:
// lvsha against keepalived in the same run, each alone in one director
// namespace (lvsha first; the table is flushed between the two). Each
// kind loads 100 virtual servers × 100 real servers (unchecked, so
// always up) and the bench waits until `ipvsadm -Sn` shows all of them.
// Each round then reloads:
//
//   - the unchanged file. lvsha by `lvsha reload` (wall time of the
//     command: it returns when the daemon has done), and also over the
//     control socket from this process (the daemon's part alone) and by
//     SIGHUP (until its "configuration unchanged" log line); keepalived by
//     SIGHUP until its parent logs "Reload complete". Target for lvsha:
//     no kernel write, under 100 ms.
//   - the file with 1% changed: 50 weights, 25 real servers added, 25
//     removed. lvsha must make exactly 100 kernel writes (more fails the
//     bench). lvsha by `lvsha reload`, then (after going back) over the
//     control socket, the daemon's part alone as keepalived's SIGHUP is.
//   - the base file again (not timed), for the next round.
//
// Kernel writes are counted on the kernel's side: ftrace's function
// tracer on the IPVS set-command entry points (generic netlink and
// setsockopt), from the reload's request until 1 s after it is done
// (ipvsWriteTrace). After every reload `ipvsadm -Sn` must show the
// configured table, for both kinds. Times are medians of b.N rounds.
//
//	go test ./integration -run '^$' -bench 'Reload10k' -benchtime 1x -timeout 40m
func BenchmarkReload10k(b *testing.B) {
	base, changed := reloadTables(b)
	// The TOML renders base as bigConfig writes it: the same table.
	if cfg, err := conf.Parse("reload.toml", []byte(reloadTOML(b.TempDir(), base))); err != nil {
		b.Fatal(err)
	} else if got := saveLines(ipvs.Desired(cfg, allUp)); !slices.Equal(got, saveLines(base)) {
		b.Fatalf("reloadTOML does not render bigConfig's table: %s", tableDiff(got, saveLines(base)))
	}
	ns := newNetns(b, "reload")
	tr := traceIPVSWrites(b)

	// What starting the lvsha command costs, which `lvsha reload` pays.
	var starts []time.Duration
	for range 3 {
		start := time.Now()
		sh(b, lvshaBin(b), "version")
		starts = append(starts, time.Since(start))
	}

	lv := reloadLvsha(b, ns, tr, base, changed)
	inNS(b, ns, "ipvsadm", "-C")
	ka := reloadKeepalived(b, ns, tr, base, changed)

	b.ReportMetric(msOf(median(lv.unchanged)), "lvsha-unchanged-ms")
	b.ReportMetric(medianWrites(lv.unchangedW), "lvsha-unchanged-writes")
	b.ReportMetric(msOf(median(lv.socket)), "lvsha-unchanged-socket-ms")
	b.ReportMetric(msOf(median(lv.sighup)), "lvsha-unchanged-sighup-ms")
	b.ReportMetric(msOf(median(lv.changed)), "lvsha-changed-ms")
	b.ReportMetric(msOf(median(lv.socketC)), "lvsha-changed-socket-ms")
	b.ReportMetric(medianWrites(lv.changedW), "lvsha-changed-writes")
	b.ReportMetric(msOf(median(starts)), "lvsha-command-start-ms")
	b.ReportMetric(msOf(lv.program), "lvsha-program-ms")
	b.ReportMetric(msOf(ka.program), "keepalived-program-ms")
	b.ReportMetric(msOf(median(ka.unchanged)), "keepalived-unchanged-ms")
	b.ReportMetric(medianWrites(ka.unchangedW), "keepalived-unchanged-writes")
	b.ReportMetric(msOf(median(ka.changed)), "keepalived-changed-ms")
	b.ReportMetric(medianWrites(ka.changedW), "keepalived-changed-writes")
	fmt.Fprintf(os.Stderr, "reload lvsha: programmed in %v (its log: %v); unchanged %.1f ms (control socket %.1f ms, SIGHUP %.1f ms, starting the lvsha command %.1f ms), %.0f writes; 1%% changed %.1f ms (control socket %.1f ms), %.0f writes (%d changes)\n",
		lv.program.Round(time.Millisecond), lv.programLog.Round(time.Millisecond), msOf(median(lv.unchanged)), msOf(median(lv.socket)), msOf(median(lv.sighup)), msOf(median(starts)),
		medianWrites(lv.unchangedW), msOf(median(lv.changed)), msOf(median(lv.socketC)), medianWrites(lv.changedW), reloadChanges)
	fmt.Fprintf(os.Stderr, "reload keepalived: programmed in %v; unchanged %.1f ms, %.0f writes; 1%% changed %.1f ms, %.0f writes (%d changes)\n",
		ka.program.Round(time.Millisecond), msOf(median(ka.unchanged)), medianWrites(ka.unchangedW), msOf(median(ka.changed)), medianWrites(ka.changedW), reloadChanges)
}
