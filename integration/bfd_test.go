package integration

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lvsha/lvsha/bfd"
	"github.com/lvsha/lvsha/bfd/runner"
	"github.com/lvsha/lvsha/bfd/transport"
)

// bfdLink is two namespaces on one veth, each end with an IPv4 and an
// IPv6 address: 10.81.0.1 and .2, 2001:db8:81::1 and ::2.
type bfdLink struct {
	ns, ifs [2]string
	v4, v6  [2]netip.Addr
}

func newBFDLink(t *testing.T) *bfdLink {
	t.Helper()
	l := &bfdLink{}
	for i := range 2 {
		l.ns[i] = newNetns(t, fmt.Sprintf("bfd%d", i))
		l.v4[i] = netip.MustParseAddr(fmt.Sprintf("10.81.0.%d", i+1))
		l.v6[i] = netip.MustParseAddr(fmt.Sprintf("2001:db8:81::%d", i+1))
	}
	veth(t, l.ns[0], "10.81.0.1/24", l.ns[1], "10.81.0.2/24")
	for i := range 2 {
		l.ifs[i] = lastVeth(t, l.ns[i])
		sh(t, "ip", "-n", l.ns[i], "addr", "add", l.v6[i].String()+"/64", "dev", l.ifs[i], "nodad")
	}
	return l
}

// bfdSide is a runner running in a namespace.
type bfdSide struct {
	r    *runner.Runner
	stop context.CancelFunc
	done chan struct{}
}

// halt stops the runner as a crash would: its sockets closed under it
// first, so that it sends nothing more (a runner stopped gracefully
// takes its sessions AdminDown, and its peer goes Down by its word).
func (s *bfdSide) halt() {
	s.r.Close()
	s.stop()
	<-s.done
}

// stopGracefully stops the runner as the daemon's graceful stop does.
func (s *bfdSide) stopGracefully() {
	s.stop()
	<-s.done
}

// startBFD runs lvsha's BFD runner on side i of l towards the other side.
func startBFD(t *testing.T, l *bfdLink, i int, v6 bool, tx time.Duration, mult uint8) *bfdSide {
	t.Helper()
	local, peer := l.v4[i], l.v4[1-i]
	if v6 {
		local, peer = l.v6[i], l.v6[1-i]
	}
	var r *runner.Runner
	inNetns(t, l.ns[i], func() {
		ifi, err := net.InterfaceByName(l.ifs[i])
		if err != nil {
			t.Fatal(err)
		}
		r, err = runner.Open(runner.Config{
			Config: transport.Config{Interface: ifi, Local: local},
			Peers:  []runner.Peer{{Addr: peer, DesiredMinTx: tx, RequiredMinRx: tx, DetectMult: mult}},
			Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)).With("ns", l.ns[i]),
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	s := &bfdSide{r: r, stop: cancel, done: make(chan struct{})}
	go func() { defer close(s.done); r.Run(ctx) }()
	t.Cleanup(s.halt)
	return s
}

// waitBFD waits for the runner's session to reach want and returns the
// change.
func waitBFD(t *testing.T, s *bfdSide, want bfd.State, limit time.Duration) runner.Change {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case c := <-s.r.Changes():
			if c.To == want {
				return c
			}
		case <-deadline:
			t.Fatalf("BFD session not %s within %v", want, limit)
		}
	}
}

// TestBFDRunners runs lvsha's BFD on both ends of a veth, IPv4 and IPv6:
// the session comes Up on both, and when one side stops the other goes
// Down by detection timeout. The time is logged; the bound is a generous
// three detection times, not a timing claim.
func TestBFDRunners(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			l := newBFDLink(t)
			const tx, mult = 20 * time.Millisecond, 3
			a, b := startBFD(t, l, 0, v6, tx, mult), startBFD(t, l, 1, v6, tx, mult)
			waitBFD(t, a, bfd.Up, 10*time.Second)
			waitBFD(t, b, bfd.Up, 10*time.Second)
			time.Sleep(500 * time.Millisecond) // Poll/Final to the fast rate
			b.halt()
			stopped := time.Now()
			c := waitBFD(t, a, bfd.Down, 5*time.Second)
			detect := mult * tx
			took := c.At.Sub(stopped)
			t.Logf("survivor Down %v after the peer stopped (detection time %v), diag %q", took, detect, c.Diag)
			if c.Diag != bfd.DiagControlDetectExpired || took > 3*detect {
				t.Errorf("Down after %v, diag %q: want detection expired within %v", took, c.Diag, 3*detect)
			}
			if d := a.r.Drops(); len(d) != 0 {
				t.Errorf("drops %v", d)
			}
		})
	}
}

// TestBFDTshark captures lvsha's BFD packets (both ends are lvsha) and
// has tshark's BFD dissector decode them: every packet is BFD Control,
// version 1, with no malformed packet and no expert warning.
func TestBFDTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark is missing (scripts/setup installs it): ", err)
	}
	l := newBFDLink(t)
	pcap := filepath.Join(t.TempDir(), "bfd.pcap")
	// The capture starts before the sessions, to see Down, Init, Up and
	// the Poll/Final exchange.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	capture := exec.CommandContext(ctx, "ip", "netns", "exec", l.ns[0], "tshark", "-n", "-i", l.ifs[0],
		"-f", "udp port 3784", "-c", "40", "-w", pcap)
	out := &strings.Builder{}
	capture.Stdout, capture.Stderr = out, out
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "tshark capturing", 10*time.Second, func() bool { return strings.Contains(out.String(), "Capturing on") })
	// tshark says so a little before its filter is attached.
	time.Sleep(time.Second)
	startBFD(t, l, 0, false, 20*time.Millisecond, 3)
	startBFD(t, l, 1, false, 20*time.Millisecond, 3)
	if err := capture.Wait(); err != nil {
		t.Fatalf("tshark capture: %v\n%s", err, out)
	}
	fields := sh(t, "tshark", "-n", "-r", pcap, "-T", "fields", "-E", "separator=,",
		"-e", "bfd.version", "-e", "bfd.sta", "-e", "bfd.flags.p", "-e", "bfd.flags.f", "-e", "bfd.detect_time_multiplier",
		"-e", "bfd.my_discriminator", "-e", "bfd.your_discriminator", "-e", "bfd.desired_min_tx_interval", "-e", "ip.ttl", "-e", "udp.srcport")
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(fields), "\n") {
		// sh merges stderr, where tshark warns that it runs as root.
		if !strings.HasPrefix(line, "Running as user") {
			lines = append(lines, line)
		}
	}
	states := map[string]bool{}
	for _, line := range lines {
		f := strings.Split(line, ",")
		if len(f) != 10 || f[0] != "1" || f[4] != "3" || f[8] != "255" {
			t.Errorf("packet not decoded as lvsha's BFD: %q", line)
			continue
		}
		states[f[1]] = true
	}
	t.Logf("%d packets; states seen %v; first: %s", len(lines), states, lines[0])
	if len(lines) != 40 || !states["0x01"] || !states["0x02"] || !states["0x03"] {
		t.Errorf("%d packets, states %v: want 40 with Down, Init and Up", len(lines), states)
	}
	verbose := sh(t, "tshark", "-n", "-r", pcap, "-V")
	if strings.Contains(verbose, "Malformed") || !strings.Contains(verbose, "BFD Control message") {
		t.Errorf("tshark -V:\n%s", verbose)
	}
	expert := sh(t, "tshark", "-n", "-r", pcap, "-q", "-z", "expert")
	for _, bad := range []string{"Error", "Warn", "Malformed"} {
		if strings.Contains(expert, bad) {
			t.Errorf("tshark expert info has %s:\n%s", bad, expert)
		}
	}
}

// syncBuffer is a strings.Builder safe for a process's output and a
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startKeepalivedBFD runs a real keepalived whose only configuration is
// a bfd_instance towards peer; its log goes to the returned buffer.
func startKeepalivedBFD(t *testing.T, ns string, local, peer netip.Addr, txMs, mult int) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "keepalived.conf")
	text := fmt.Sprintf(`global_defs {
  router_id ka
}
bfd_instance lvsha {
  neighbor_ip %s
  source_ip %s
  min_rx %d
  min_tx %d
  idle_tx 1000
  multiplier %d
}
`, peer, local, txMs, txMs, mult)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not --bfd: keepalived takes it as an abbreviation of --bfd_pid. A
	// configuration with nothing but a bfd_instance starts only the BFD
	// child.
	cmd := exec.Command("ip", "netns", "exec", ns, "keepalived", "--dont-fork", "--log-console", "--log-detail",
		"-f", cfg, "-p", filepath.Join(dir, "k.pid"), "-b", filepath.Join(dir, "b.pid"),
		"-r", filepath.Join(dir, "r.pid"), "-c", filepath.Join(dir, "c.pid"))
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	// keepalived forks its BFD process: a process group kills both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("keepalived: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		t.Logf("keepalived log:\n%s", log)
	})
	return cmd, log
}

// TestBFDKeepalived peers lvsha's BFD with a real keepalived's
// bfd_instance (Debian's keepalived is built with --enable-bfd): the
// session comes Up on both; SIGKILLing keepalived takes lvsha's side
// Down by detection timeout; with keepalived back and Up again, stopping
// lvsha takes keepalived's side Down.
func TestBFDKeepalived(t *testing.T) {
	l := newBFDLink(t)
	const txMs, mult = 50, 3
	detect := mult * txMs * time.Millisecond
	ka, kaLog := startKeepalivedBFD(t, l.ns[0], l.v4[0], l.v4[1], txMs, mult)
	lv := startBFD(t, l, 1, false, txMs*time.Millisecond, mult)
	waitBFD(t, lv, bfd.Up, 15*time.Second)
	eventually(t, "keepalived's session Up", 10*time.Second, func() bool { return strings.Contains(kaLog.String(), "(lvsha) Entering Up state") })
	time.Sleep(time.Second) // Poll/Final to the fast rate on both sides

	syscall.Kill(-ka.Process.Pid, syscall.SIGKILL)
	killed := time.Now()
	c := waitBFD(t, lv, bfd.Down, 5*time.Second)
	took := c.At.Sub(killed)
	t.Logf("lvsha Down %v after keepalived was killed (detection time %v), diag %q", took, detect, c.Diag)
	if c.Diag != bfd.DiagControlDetectExpired || took > 3*detect {
		t.Errorf("lvsha Down after %v, diag %q: want detection expired within %v", took, c.Diag, 3*detect)
	}
	ka.Wait()

	_, kaLog = startKeepalivedBFD(t, l.ns[0], l.v4[0], l.v4[1], txMs, mult)
	waitBFD(t, lv, bfd.Up, 15*time.Second)
	eventually(t, "keepalived's session Up again", 10*time.Second, func() bool { return strings.Contains(kaLog.String(), "(lvsha) Entering Up state") })
	time.Sleep(time.Second)
	if d := lv.r.Drops(); len(d) != 0 {
		t.Errorf("lvsha dropped keepalived's packets: %v", d)
	}
	// A graceful stop: lvsha's AdminDown takes keepalived's session
	// Down at once, by lvsha's word, not by its detection time.
	lv.stopGracefully()
	// keepalived's log has one-second timestamps: the bound is checked
	// by polling.
	took = eventually(t, "keepalived's session Down", 3*detect+time.Second, func() bool {
		return strings.Contains(kaLog.String(), "(lvsha) Entering Down state")
	})
	t.Logf("keepalived Down within %v of lvsha stopping gracefully (50 ms polls)", took)
}
