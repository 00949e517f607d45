package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The equivalence corpus files (conf/keepalived/testdata/corpus/*-eq-*)
// use these: real servers 10.77.0.1-3 and .9, fd77::1-2, each
// answering HTTP on 80 and 8080, HTTPS on 443, DNS on UDP 53 and SMTP on 25; MISC_CHECK scripts call
// /tmp/lvsha-eq/rs-up IP, which fails once /tmp/lvsha-eq/down-IP exists, or
// /tmp/lvsha-eq/rs-weight IP W, which then exits W+2 (misc_dynamic).
var eqServers = []string{"10.77.0.1", "10.77.0.2", "10.77.0.3", "10.77.0.9", "fd77::1", "fd77::2"}

const eqDir = "/tmp/lvsha-eq"

// TestKeepalivedEquivalence runs keepalived with a corpus file and lvsha
// with what `lvsha convert` made of it, each in its own namespace with the
// same real servers, and requires the two `ipvsadm -Ln` tables to be
// identical with every real server up and again after one stops answering.
func TestKeepalivedEquivalence(t *testing.T) {
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Fatal("keepalived is not installed (scripts/setup installs it): it is the reference here")
	}
	if err := os.MkdirAll(eqDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(eqDir) })
	scripts := map[string]string{
		"rs-up": "#!/bin/sh\n[ ! -e " + eqDir + "/down-\"$1\" ]\n",
		// notify hooks: one line per call, in a file per namespace.
		"note": "#!/bin/sh\necho \"$*\" >> " + eqDir + "/notes-$(ip netns identify)\n",
		// misc_dynamic: exit weight+2 while up.
		"rs-weight": "#!/bin/sh\n[ -e " + eqDir + "/down-\"$1\" ] && exit 1\nexit $(($2 + 2))\n",
	}
	for name, text := range scripts {
		if err := os.WriteFile(filepath.Join(eqDir, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// keepalived refuses executable configuration files, and the VM's
	// copies may be: work on a private copy with plain modes.
	corpus := t.TempDir()
	if err := copyTree(corpus, corpusDir()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file     string
		down     string // the real server that stops answering
		dropAddr bool   // it goes away altogether (not even ping answers)
	}{
		{"11-eq-nat-http.conf", "10.77.0.1", false},
		{"12-eq-dr-tcp-inhibit.conf", "10.77.0.1", false},
		{"13-eq-tun-ssl-persist.conf", "10.77.0.1", false},
		{"14-eq-fwmark.conf", "10.77.0.2", false},
		{"15-eq-udp-misc.conf", "10.77.0.1", false},
		{"16-eq-group.conf", "10.77.0.2", false},
		{"17-eq-ipv6.conf", "fd77::1", false},
		{"18-eq-sorry-quorum.conf", "10.77.0.1", false},
		{"19-eq-defaults.conf", "10.77.0.1", false},
		{"20-eq-sctp-thresholds.conf", "10.77.0.2", false},
		{"21-eq-includes.conf", "10.77.0.1", false},
		{"22-eq-twos-ovf.conf", "10.77.0.1", false},
		{"35-eq-sorry-inhibit.conf", "10.77.0.1", false},
		{"37-eq-dns.conf", "10.77.0.2", false},
		{"38-eq-misc-dynamic.conf", "10.77.0.1", false},
		{"39-eq-smtp.conf", "10.77.0.2", false},
		{"40-eq-ping.conf", "10.77.0.2", true},
		{"41-eq-udp.conf", "10.77.0.1", false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			src := filepath.Join(corpus, tc.file)
			if _, err := os.Stat(src); err != nil {
				t.Fatal(err)
			}
			old, _ := filepath.Glob(filepath.Join(eqDir, "down-*"))
			for _, f := range old {
				os.Remove(f)
			}
			ka := newEqSite(t, "ka")
			lv := newEqSite(t, "lv")
			startKeepalivedChecker(t, ka.ns, src)
			startIn(t, lv.ns, nil, lvshaBin(t), "run", "-c", convertForTest(t, src))

			// Both tables settle with every real server up ...
			var wg sync.WaitGroup
			for _, s := range []*eqSite{ka, lv} {
				wg.Add(1)
				go func() { defer wg.Done(); s.up = s.settle(t, "") }()
			}
			wg.Wait()
			if ka.up == "" || lv.up == "" {
				t.FailNow()
			}
			if ka.up != lv.up {
				t.Fatalf("all real servers up: tables differ\n--- keepalived\n%s--- lvsha\n%s", ka.up, lv.up)
			}
			if n := destinations(ka.up); n < 2 {
				t.Fatalf("all up: keepalived programmed %d destinations; the comparison would prove little:\n%s", n, ka.up)
			}
			// ... and after one stops answering at the same moment in both.
			for _, s := range []*eqSite{ka, lv} {
				os.Remove(filepath.Join(eqDir, "notes-"+s.ns))
			}
			if err := os.WriteFile(filepath.Join(eqDir, "down-"+tc.down), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			ka.stop(t, tc.down, tc.dropAddr)
			lv.stop(t, tc.down, tc.dropAddr)
			for _, s := range []*eqSite{ka, lv} {
				wg.Add(1)
				go func() { defer wg.Done(); s.down = s.settle(t, s.up) }()
			}
			wg.Wait()
			if ka.down == "" || lv.down == "" {
				t.FailNow()
			}
			if ka.down != lv.down {
				t.Fatalf("%s down: tables differ\n--- keepalived\n%s--- lvsha\n%s", tc.down, ka.down, lv.down)
			}
			t.Logf("identical tables, all up:\n%s%s down:\n%s", ka.up, tc.down, ka.down)
			// Hooks the file gives ran the same way in both.
			kaNotes, lvNotes := ka.notes(t), lv.notes(t)
			if kaNotes != lvNotes {
				t.Fatalf("%s down: hooks differ\n--- keepalived\n%s--- lvsha\n%s", tc.down, kaNotes, lvNotes)
			}
			if kaNotes != "" {
				t.Logf("identical hook calls:\n%s", kaNotes)
			}
		})
	}
}

// destinations counts the destination lines of an ipvsadm -Ln table.
func destinations(table string) int {
	n := 0
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "-> ") && !strings.Contains(l, "RemoteAddress") {
			n++
		}
	}
	return n
}

// copyTree copies the files under src to dst with mode 0644.
func copyTree(dst, src string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
}

// eqSite is one namespace with the equivalence real servers and a daemon.
type eqSite struct {
	name, ns string
	webs     map[string]*exec.Cmd
	up, down string
}

func newEqSite(t *testing.T, name string) *eqSite {
	t.Helper()
	s := &eqSite{name: name, ns: newNetns(t, "eq"+name), webs: map[string]*exec.Cmd{}}
	// keepalived's PING_CHECK uses unprivileged ICMP sockets.
	inNS(t, s.ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	// The real servers live on lo: their checks and the table need no
	// traffic through the virtual services.
	for _, a := range eqServers {
		if strings.Contains(a, ":") {
			inNS(t, s.ns, "ip", "addr", "add", a+"/128", "dev", "lo", "nodad")
			s.webs[a] = startIn(t, s.ns, []string{envRole + "=web", "LVSHA_NAME=" + a,
				"LVSHA_LISTEN=[" + a + "]:80 [" + a + "]:8080 tls:[" + a + "]:443 dns:[" + a + "]:53 smtp:[" + a + "]:25"}, self(t))
		} else {
			inNS(t, s.ns, "ip", "addr", "add", a+"/32", "dev", "lo")
			s.webs[a] = startIn(t, s.ns, []string{envRole + "=web", "LVSHA_NAME=" + a,
				"LVSHA_LISTEN=" + a + ":80 " + a + ":8080 tls:" + a + ":443 dns:" + a + ":53 smtp:" + a + ":25"}, self(t))
		}
	}
	for _, a := range eqServers {
		host := a
		if strings.Contains(a, ":") {
			host = "[" + a + "]"
		}
		waitHTTP(t, s.ns, "http://"+host+":8080/")
	}
	return s
}

// notes returns the hook calls recorded in the site's namespace, sorted.
func (s *eqSite) notes(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(eqDir, "notes-"+s.ns))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	slices.Sort(lines)
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// stop makes real server a stop answering: its listeners go, and its
// MISC_CHECK script fails (the caller creates the down file); with drop
// its address goes too, so that pings fail.
func (s *eqSite) stop(t *testing.T, a string, drop bool) {
	stopProc(s.webs[a])
	if drop {
		p := netip.MustParseAddr(a)
		inNS(t, s.ns, "ip", "addr", "del", netip.PrefixFrom(p, p.BitLen()).String(), "dev", "lo")
	}
}

// settle waits until the site's table differs from not and then stays the
// same for 3 s, and returns it; "" (after reporting) when it does not
// within the limit.
func (s *eqSite) settle(t *testing.T, not string) string {
	const (
		every  = 250 * time.Millisecond
		stable = 12 // samples in a row: 3 s
		limit  = 45 * time.Second
	)
	var last string
	same := 0
	for begin := time.Now(); time.Since(begin) < limit; time.Sleep(every) {
		out, err := exec.Command("ip", "netns", "exec", s.ns, "ipvsadm", "-Ln").CombinedOutput()
		if err != nil {
			t.Errorf("%s: ipvsadm -Ln: %v\n%s", s.name, err, out)
			return ""
		}
		cur := string(out)
		if cur == not || !strings.Contains(cur, "->") {
			same, last = 0, ""
			continue
		}
		if cur == last {
			same++
		} else {
			last, same = cur, 1
		}
		if same >= stable {
			return cur
		}
	}
	t.Errorf("%s: table did not settle within %v (last:\n%s)", s.name, limit, last)
	return ""
}

// startKeepalivedChecker runs keepalived's checker process alone (-C) on
// a configuration file, in ns.
func startKeepalivedChecker(t *testing.T, ns, cfg string) *kaProc {
	t.Helper()
	return runKeepalived(t, ns, cfg, "--check")
}

// kaProc is a keepalived started by runKeepalived.
type kaProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	once sync.Once
}

// stop ends keepalived's whole process group: SIGTERM, then SIGKILL.
func (k *kaProc) stop() {
	k.once.Do(func() {
		syscall.Kill(-k.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-k.done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
			<-k.done
		}
	})
}

// runKeepalived runs keepalived in ns on a configuration file with the
// given mode flags; its log is shown if the test fails.
func runKeepalived(t testing.TB, ns, cfg string, args ...string) *kaProc {
	t.Helper()
	dir := t.TempDir()
	argv := append([]string{"netns", "exec", ns, "keepalived", "--dont-fork", "--log-console", "-f", cfg,
		"-p", filepath.Join(dir, "k.pid"), "-c", filepath.Join(dir, "c.pid"), "-r", filepath.Join(dir, "r.pid")}, args...)
	k := &kaProc{cmd: exec.Command("ip", argv...), done: make(chan struct{})}
	var logs bytes.Buffer
	k.cmd.Stdout, k.cmd.Stderr = &logs, &logs
	// keepalived forks its children: a process group lets the test end all.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("keepalived: %v", err)
	}
	go func() { k.cmd.Wait(); close(k.done) }()
	t.Cleanup(func() {
		k.stop()
		if t.Failed() {
			t.Logf("keepalived's log (%s):\n%s", cfg, logs.String())
		}
	})
	return k
}

// convertForTest runs `lvsha convert` on src and returns the TOML's path,
// with a control socket of its own so runs never share one.
func convertForTest(t *testing.T, src string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "lvsha.toml")
	cmd := exec.Command(lvshaBin(t), append(append([]string{"convert", "-o", out}, args...), src)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) {
		t.Fatalf("lvsha convert %s: %v\n%s", src, err, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sock := fmt.Sprintf("control_socket = %q\n", filepath.Join(dir, "lvsha.sock"))
	text := string(data)
	if strings.Contains(text, "\n[director]\n") {
		text = strings.Replace(text, "\n[director]\n", "\n[director]\n"+sock, 1)
	} else {
		text = "[director]\n" + sock + text
	}
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
