package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// threadSched is one thread's scheduling from /proc/PID/task/TID/stat.
type threadSched struct{ policy, rtPrio, nice int }

func (s threadSched) String() string {
	return fmt.Sprintf("policy %d rt_priority %d nice %d", s.policy, s.rtPrio, s.nice)
}

// parseStatSched reads nice (field 19), rt_priority (40) and policy (41)
// from a stat line; the command's name, in parentheses, may hold spaces.
func parseStatSched(line string) (threadSched, bool) {
	i := strings.LastIndex(line, ") ")
	if i < 0 {
		return threadSched{}, false
	}
	f := strings.Fields(line[i+2:]) // f[0] is field 3
	if len(f) < 39 {
		return threadSched{}, false
	}
	nice, err1 := strconv.Atoi(f[16])
	rt, err2 := strconv.Atoi(f[37])
	policy, err3 := strconv.Atoi(f[38])
	return threadSched{policy: policy, rtPrio: rt, nice: nice}, err1 == nil && err2 == nil && err3 == nil
}

// threadScheds reads the scheduling of every thread of pid.
func threadScheds(t testing.TB, pid int) map[string]threadSched {
	t.Helper()
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	out := map[string]threadSched{}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // a thread that ended
		}
		s, ok := parseStatSched(string(b))
		if !ok {
			t.Fatalf("%s: %q", p, b)
		}
		out[filepath.Base(filepath.Dir(p))] = s
	}
	return out
}

// TestDaemonScheduling runs `lvsha run` with director.rt_priority and
// director.nice (a VRRP master and a track_exec, in namespaces: no IPVS
// needed) and checks, from /proc, that:
//   - every thread of the daemon runs SCHED_RR at rt_priority with the
//     nice asked, at start and again after a burst of work (any thread
//     made since inherits; how many the burst makes, if any, is the
//     runtime's choice, and the log says);
//   - it kept CAP_SYS_NICE, and the command it runs does not run at its
//     priority: SCHED_OTHER, nice 0;
//   - a reload that removes both keys returns every thread to how lvsha
//     was started, and one that sets them again raises it again;
//   - a daemon started without them refuses a reload that asks for them,
//     naming CAP_SYS_NICE, and keeps its threads as they were.
func TestDaemonScheduling(t *testing.T) {
	const vip = "10.79.0.100"
	na, nb := newNetns(t, "sch1"), newNetns(t, "sch2")
	veth(t, na, "10.79.0.1/24", nb, "10.79.0.2/24")
	iface := lastVeth(t, na)
	bin := lvshaBin(t)
	dir := t.TempDir()
	trackLog := filepath.Join(dir, "track.log")
	track := filepath.Join(dir, "track.sh")
	// The pause lets lvsha reset the command after its exec; the shell
	// then reads its own stat, as the command would run from then on.
	if err := os.WriteFile(track, []byte("#!/bin/sh\nsleep 0.2\ncat /proc/$$/stat >> "+trackLog+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := func(name, keys string) (cmd *exec.Cmd, sock string, write func(string)) {
		sock = filepath.Join(dir, name+".sock")
		cfg := filepath.Join(dir, name+".toml")
		write = func(keys string) {
			text := fmt.Sprintf(`[director]
name = %q
control_socket = %q
state_file = %q
%s

[[vrrp_instance]]
name = "vi"
interface = %q
router_id = 63
priority = 150
advert_interval = "100ms"
virtual_ips = ["%s/24"]

[[vrrp_instance.track_exec]]
name = "chk"

[[track_exec]]
name = "chk"
command = [%q]
interval = "1s"
`, name, sock, filepath.Join(dir, name+".state"), keys, iface, vip, track)
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write(keys)
		cmd = exec.Command("ip", "netns", "exec", na, bin, "run", "-c", cfg)
		cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopProc(cmd) })
		eventually(t, name+" master", 20*time.Second, func() bool {
			var st struct {
				VRRP []struct{ State string } `json:"vrrp_instances"`
			}
			return statusJSON(sock, &st) == nil && len(st.VRRP) == 1 && st.VRRP[0].State == "MASTER"
		})
		return cmd, sock, write
	}
	// every checks that each thread of pid runs at want.
	every := func(when string, pid int, want threadSched) {
		t.Helper()
		ts := threadScheds(t, pid)
		for tid, s := range ts {
			if s != want {
				t.Errorf("%s: thread %s of lvsha runs at %v, want %v", when, tid, s, want)
			}
		}
		t.Logf("%s: lvsha's %d threads at %v", when, len(ts), want)
	}
	reload := func(sock string) (string, error) {
		out, err := exec.Command(bin, "reload", "-s", sock).CombinedOutput()
		return string(out), err
	}
	const (
		schedOther = 0
		schedRR    = 2
		capSysNice = 23
	)

	cmd, sock, write := start("lb1", "rt_priority = 10\nnice = -5")
	pid := cmd.Process.Pid
	raised := threadSched{policy: schedRR, rtPrio: 10, nice: -5}
	every("at start", pid, raised)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if c := caps(string(status)); c["CapEff"]&(1<<capSysNice) == 0 {
		t.Errorf("CapEff %#x lacks CAP_SYS_NICE: a reload could not raise the priority again", c["CapEff"])
	}
	// The command: SCHED_OTHER, nice 0.
	eventually(t, "the track_exec command's stat", 10*time.Second, func() bool {
		b, _ := os.ReadFile(trackLog)
		return len(b) > 0
	})
	b, _ := os.ReadFile(trackLog)
	first, _, _ := strings.Cut(string(b), "\n")
	if s, ok := parseStatSched(first); !ok || s != (threadSched{policy: schedOther}) {
		t.Errorf("the track_exec command ran at %v (%q), want SCHED_OTHER, nice 0", s, first)
	}
	// A burst of status queries and track runs, then every thread
	// again: one the runtime made meanwhile was cloned from a raised one.
	before := threadScheds(t, pid)
	for range 20 {
		var st map[string]any
		_ = statusJSON(sock, &st)
	}
	time.Sleep(1500 * time.Millisecond)
	made := 0
	for tid := range threadScheds(t, pid) {
		if _, ok := before[tid]; !ok {
			made++
		}
	}
	t.Logf("the burst made %d new threads", made)
	every("after 20 status queries and more track runs", pid, raised)

	write("")
	if out, err := reload(sock); err != nil {
		t.Fatalf("reload without the keys: %v\n%s", err, out)
	}
	every("reloaded without rt_priority and nice", pid, threadSched{policy: schedOther})
	write("rt_priority = 20")
	if out, err := reload(sock); err != nil {
		t.Fatalf("reload with rt_priority 20: %v\n%s", err, out)
	}
	every("reloaded with rt_priority 20", pid, threadSched{policy: schedRR, rtPrio: 20})
	stopProc(cmd)

	// Started without: CAP_SYS_NICE is dropped, and a reload asking for
	// a real-time priority is refused whole.
	cmd2, sock2, write2 := start("lb2", "")
	every("lb2 at start", cmd2.Process.Pid, threadSched{policy: schedOther})
	write2("rt_priority = 10")
	out, err := reload(sock2)
	if err == nil || !strings.Contains(out, "CAP_SYS_NICE") {
		t.Errorf("reload raising a daemon started without rt_priority: %v, want it refused naming CAP_SYS_NICE\n%s", err, out)
	}
	every("lb2 after the refused reload", cmd2.Process.Pid, threadSched{policy: schedOther})
}
