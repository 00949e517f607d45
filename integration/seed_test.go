package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seed is the topology of the seed scenario: a client, a director and two
// web servers, rr over NAT. The client reaches the VIP through the director;
// the web servers answer through it (their default route), so NAT works.
//
//	client 10.0.1.2 ── 10.0.1.1 director (VIP 192.168.164.100 on lo) 192.168.164.1 ── web1 .10, web2 .11
type seed struct {
	client, lb, web1, web2 string
	dir                    string
	cfg                    string
	sock                   string
	lvsha                  *exec.Cmd
	webs                   map[string]*exec.Cmd
}

const (
	seedVIP      = "192.168.164.100"
	seedInterval = 500 * time.Millisecond
	seedTimeout  = 300 * time.Millisecond
	seedRise     = 2
	seedFall     = 2
	seedResync   = 2 * time.Second
	// tcgSlack allows for the VM running 6-8x slower than the host.
	tcgSlack = 4 * time.Second
)

// seedCheck is the health check the seed's virtual server uses.
type seedCheck struct {
	interval, timeout time.Duration
	rise, fall        int
}

func defaultSeedCheck() seedCheck {
	return seedCheck{interval: seedInterval, timeout: seedTimeout, rise: seedRise, fall: seedFall}
}

func newSeed(t testing.TB, chk seedCheck) *seed {
	s := &seed{
		client: newNetns(t, "client"), lb: newNetns(t, "lb"),
		web1: newNetns(t, "web1"), web2: newNetns(t, "web2"),
		dir: t.TempDir(), webs: map[string]*exec.Cmd{},
	}
	veth(t, s.client, "10.0.1.2/24", s.lb, "10.0.1.1/24")
	veth(t, s.web1, "192.168.164.10/24", s.lb, "192.168.164.1/24")
	// web2 shares the /24 on a second link; a /32 route keeps it reachable.
	veth(t, s.web2, "192.168.164.11/24", s.lb, "")
	sh(t, "ip", "-n", s.lb, "addr", "add", seedVIP+"/32", "dev", "lo")
	sh(t, "ip", "netns", "exec", s.lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// The second veth into lb has no address; route web2's /32 over it.
	dev := lastVeth(t, s.lb)
	sh(t, "ip", "-n", s.lb, "route", "add", "192.168.164.11/32", "dev", dev)
	sh(t, "ip", "-n", s.client, "route", "add", "default", "via", "10.0.1.1")
	sh(t, "ip", "-n", s.web1, "route", "add", "default", "via", "192.168.164.1")
	sh(t, "ip", "-n", s.web2, "route", "add", "default", "via", "192.168.164.1")
	s.sock = filepath.Join(s.dir, "lvsha.sock")
	s.cfg = filepath.Join(s.dir, "lvsha.toml")
	cfg := fmt.Sprintf(`# The seed: two web servers behind one VIP, round robin over NAT.
[director]
name = "lb1"
control_socket = %q
resync_interval = %q

[[virtual_server]]
name = "web"
address = "%s:80"
protocol = "tcp"
scheduler = "rr"
forwarding = "nat"

  [virtual_server.check]
  type = "http"
  path = "/"
  status = [200]
  interval = %q
  timeout = %q
  rise = %d
  fall = %d

  [[virtual_server.real_server]]
  address = "192.168.164.10:80"
  weight = 1

  [[virtual_server.real_server]]
  address = "192.168.164.11:80"
  weight = 1
`, s.sock, seedResync, seedVIP, chk.interval, chk.timeout, chk.rise, chk.fall)
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// lastVeth names the most recently added veth end in ns.
func lastVeth(t testing.TB, ns string) string {
	t.Helper()
	name := ""
	for _, line := range strings.Split(inNS(t, ns, "ip", "-o", "link", "show", "type", "veth"), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			name = strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
		}
	}
	if name == "" {
		t.Fatalf("no veth in %s", ns)
	}
	return name
}

func self(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func (s *seed) startWeb(t testing.TB, name string) {
	ns := map[string]string{"web1": s.web1, "web2": s.web2}[name]
	s.webs[name] = startIn(t, ns, []string{envRole + "=web", "LVSHA_NAME=" + name, "LVSHA_LISTEN=:80"}, self(t))
}

// waitWebs waits until both web servers answer, seen from the director.
func (s *seed) waitWebs(t testing.TB) {
	waitHTTP(t, s.lb, "http://192.168.164.10/")
	waitHTTP(t, s.lb, "http://192.168.164.11/")
}

func (s *seed) stopWeb(name string) {
	stopProc(s.webs[name])
}

func (s *seed) startLvsha(t testing.TB) {
	bin := lvshaBin(t)
	s.lvsha = startIn(t, s.lb, nil, bin, "run", "-c", s.cfg)
}

// get fetches the VIP once from the client namespace.
func (s *seed) get(t testing.TB) (string, error) {
	return httpGet(t, s.client, "http://"+seedVIP+"/")
}

// status asks the running lvsha for its report, as `lvsha status -o json`.
func (s *seed) status(t *testing.T) map[string]any {
	t.Helper()
	out := sh(t, lvshaBin(t), "status", "-s", s.sock, "-o", "json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	return m
}

// weight returns the kernel's weight of a real server, from ipvsadm.
func (s *seed) weight(t testing.TB, rs string) string {
	t.Helper()
	return ipvsWeight(t, s.lb, rs)
}

// TestSeedNATRoundRobin is the seed scenario end to end on kernel IPVS.
// Run with -v it narrates what an operator sees; scripts/demo runs it so.
func TestSeedNATRoundRobin(t *testing.T) {
	s := newSeed(t, defaultSeedCheck())
	s.startWeb(t, "web1")
	s.startWeb(t, "web2")
	s.waitWebs(t)
	s.startLvsha(t)
	t.Logf("started lvsha in the director namespace with:\n%s", mustRead(t, s.cfg))

	wantTable := "Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  192.168.164.100:80 rr\n" +
		"  -> 192.168.164.10:80            Masq    1      0          0         \n" +
		"  -> 192.168.164.11:80            Masq    1      0          0         \n"
	eventually(t, "lvsha programs the table", 10*time.Second, func() bool { return ipvsadmTable(t, s.lb) == wantTable })
	t.Logf("ipvsadm -Ln in the director shows exactly the configured table:\n%s", inNS(t, s.lb, "ipvsadm", "-Ln"))

	// Round robin: consecutive requests alternate between the two servers.
	var seen []string
	for i := 0; i < 6; i++ {
		body, err := s.get(t)
		if err != nil {
			t.Fatalf("request %d to the VIP failed: %v", i, err)
		}
		seen = append(seen, body)
	}
	t.Logf("client fetched http://%s/ six times: %v", seedVIP, seen)
	for i := 1; i < len(seen); i++ {
		if seen[i] == seen[i-1] || (seen[i] != "web1" && seen[i] != "web2") {
			t.Fatalf("responses do not alternate between web1 and web2: %v", seen)
		}
	}

	// web2 fails: drained to weight 0 within interval×fall + timeout.
	s.stopWeb("web2")
	bound := seedInterval*seedFall + seedTimeout
	took := eventually(t, "web2 drained to weight 0", bound+tcgSlack, func() bool { return s.weight(t, "192.168.164.11:80") == "0" })
	t.Logf("stopped web2's HTTP server: weight 0 after %v (bound interval×fall+timeout = %v, + %v VM slack)", took.Round(time.Millisecond), bound, tcgSlack)
	for i := 0; i < 4; i++ {
		if body, err := s.get(t); err != nil || body != "web1" {
			t.Fatalf("with web2 down, request %d got %q, %v; want web1", i, body, err)
		}
	}
	t.Logf("client now sees only web1; lvsha status:\n%s", sh(t, lvshaBin(t), "status", "-s", s.sock))
	st := s.status(t)
	rs2 := st["virtual_servers"].([]any)[0].(map[string]any)["real_servers"].([]any)[1].(map[string]any)
	if rs2["health"] != "down" || rs2["kernel_weight"] != float64(0) {
		t.Errorf("status for web2 = %v, want health down and kernel_weight 0", rs2)
	}

	// web2 recovers: back at its weight within interval×rise.
	s.startWeb(t, "web2")
	bound = seedInterval * seedRise
	took = eventually(t, "web2 restored to weight 1", bound+tcgSlack, func() bool { return s.weight(t, "192.168.164.11:80") == "1" })
	t.Logf("restarted web2: weight 1 after %v (bound interval×rise = %v, + %v VM slack)", took.Round(time.Millisecond), bound, tcgSlack)

	// A hand edit is repaired by the periodic resync.
	inNS(t, s.lb, "ipvsadm", "-e", "-t", seedVIP+":80", "-r", "192.168.164.10:80", "-m", "-w", "5")
	took = eventually(t, "hand-edited weight restored", seedResync+tcgSlack, func() bool { return s.weight(t, "192.168.164.10:80") == "1" })
	t.Logf("ipvsadm -e set web1's weight to 5 by hand: lvsha restored 1 after %v (resync_interval %v)", took.Round(time.Millisecond), seedResync)

	// Restarting lvsha drops no connection: a client holding a keep-alive
	// connection through the VIP uses it again after the restart.
	stdin, out, first := s.holdClient(t)
	stopProc(s.lvsha)
	if got := ipvsadmTable(t, s.lb); !strings.Contains(got, "TCP  192.168.164.100:80 rr") {
		t.Fatalf("after SIGTERM the kernel table is gone:\n%s", got)
	}
	s.startLvsha(t)
	time.Sleep(seedInterval * 2) // let the new daemon probe and sync
	io.WriteString(stdin, "go\n")
	second, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(second, "second "+strings.TrimPrefix(strings.TrimSpace(first), "first ")) || !strings.Contains(second, "reused=true") {
		t.Fatalf("after restarting lvsha the held connection: %q %v; want the same server on the reused connection", second, err)
	}
	t.Logf("restarted lvsha while a client held a connection: %s then %s on the same connection", strings.TrimSpace(first), strings.TrimSpace(second))
	if got := ipvsadmTable(t, s.lb); !strings.Contains(got, "192.168.164.10:80") || !strings.Contains(got, "192.168.164.11:80") {
		t.Errorf("table after restart:\n%s", got)
	}
}

// holdClient starts, in the client's namespace, a client that fetches the
// VIP once on a keep-alive connection and again on the same connection
// when a line is written to stdin; first is its first answer's line.
func (s *seed) holdClient(t *testing.T) (stdin io.Writer, out *bufio.Reader, first string) {
	t.Helper()
	hold := exec.Command("ip", "netns", "exec", s.client, self(t))
	hold.Env = append(os.Environ(), envRole+"=hold", "LVSHA_URL=http://"+seedVIP+"/")
	in, _ := hold.StdinPipe()
	stdout, _ := hold.StdoutPipe()
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProc(hold) })
	out = bufio.NewReader(stdout)
	first, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "first web") {
		t.Fatalf("holding client's first request: %q %v", first, err)
	}
	return in, out, first
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
