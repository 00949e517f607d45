package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// nsCounter keeps namespace names unique within one test process; the pid
// keeps them unique across processes on a shared host.
var nsCounter atomic.Int32

// sh runs a command and fails the test with its output if it fails.
func sh(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace with its loopback up (IPVS rejects
// real servers in a namespace whose lo is down) and deletes it at cleanup.
func newNetns(t testing.TB, role string) string {
	t.Helper()
	name := fmt.Sprintf("lv%d-%d-%s", os.Getpid()%100000, nsCounter.Add(1), role)
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// inNS runs a command in namespace ns.
func inNS(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return sh(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// veth connects namespaces a and b with addresses (CIDR) on each end.
func veth(t testing.TB, a, aAddr, b, bAddr string) {
	t.Helper()
	id := nsCounter.Add(1)
	ea, eb := fmt.Sprintf("va%d", id), fmt.Sprintf("vb%d", id)
	sh(t, "ip", "link", "add", ea, "netns", a, "type", "veth", "peer", "name", eb, "netns", b)
	for _, x := range [][3]string{{a, ea, aAddr}, {b, eb, bAddr}} {
		if x[2] != "" {
			sh(t, "ip", "-n", x[0], "addr", "add", x[2], "dev", x[1])
		}
		sh(t, "ip", "-n", x[0], "link", "set", x[1], "up")
	}
}

// startIn starts a long-running process in ns, stopped at cleanup.
func startIn(t testing.TB, ns string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v in %s: %v", args, ns, err)
	}
	t.Cleanup(func() { stopProc(cmd) })
	return cmd
}

// stopProc ends a process with SIGTERM, then SIGKILL after 5 s.
func stopProc(cmd *exec.Cmd) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// eventually polls cond every 50 ms until it holds or limit passes; it
// returns how long that took.
func eventually(t testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// httpGet fetches url once from namespace ns (the "get" role of this test
// binary) and returns the body; a failure carries the helper's stderr.
func httpGet(t testing.TB, ns, url string) (string, error) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, self(t))
	cmd.Env = append(os.Environ(), envRole+"=get", "LVSHA_URL="+url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("GET %s from %s: %w: %s", url, ns, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), err
}

// ipvsWeight is the weight `ipvsadm -Ln` in ns shows for real server rs
// (as ipvsadm prints it, e.g. "10.0.0.1:80" or "[2001:db8::1]:80"), or
// "absent".
func ipvsWeight(t testing.TB, ns, rs string) string {
	t.Helper()
	for _, line := range strings.Split(inNS(t, ns, "ipvsadm", "-Ln"), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "->" && f[1] == rs {
			return f[3]
		}
	}
	return "absent"
}

// waitHTTP waits until url answers from namespace ns, so a test does not
// race a server that is still starting (under emulation that takes a while).
func waitHTTP(t testing.TB, ns, url string) {
	t.Helper()
	eventually(t, url+" answers", 20*time.Second, func() bool {
		_, err := httpGet(t, ns, url)
		return err == nil
	})
}
