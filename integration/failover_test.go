package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// poll GETs url every 20 ms for the given duration, retrying a failed
// request once after 50 ms, and prints one JSON line: answers per server in
// order of first appearance, the number of requests that failed even after
// the retry, and when the answering server changed.
func poll(url, duration string) int {
	d, err := time.ParseDuration(duration)
	if err != nil {
		fmt.Fprintln(os.Stderr, "poll:", err)
		return 2
	}
	client := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b)), err
	}
	type result struct {
		Counts   map[string]int `json:"counts"`
		Failed   int            `json:"failed"`
		Total    int            `json:"total"`
		Switches []string       `json:"switches"` // "ms:server", ms since Start
		Start    int64          `json:"start_unix_ms"`
	}
	start, last := time.Now(), ""
	r := result{Counts: map[string]int{}, Start: start.UnixMilli()}
	for time.Since(start) < d {
		body, err := get()
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			body, err = get()
		}
		r.Total++
		if err != nil {
			r.Failed++
		} else {
			r.Counts[body]++
			if body != last {
				r.Switches = append(r.Switches, fmt.Sprintf("%d:%s", time.Since(start).Milliseconds(), body))
				last = body
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// director is one lvsha with a VRRP instance, in its own namespace on the
// shared LAN, with a responder answering its name on port 80.
type director struct {
	name, ns, iface, dir, cfg, sock string
	cmd                             *exec.Cmd
	// logFile, if set, takes the daemon's log instead of the test's
	// output (appended across restarts).
	logFile string
	// kaConf, if set, makes the director a keepalived (VRRP and checker)
	// on that file, for the tests that pair lvsha with keepalived: start
	// runs it, kill ends its process group, and each instance's state is
	// read from whether it holds its VIP in kaVIPs (by the name the
	// lvsha directors give the instance).
	kaConf string
	kaVIPs map[string]string
	ka     *kaProc
}

func (d *director) start(t testing.TB) {
	t.Helper()
	if d.kaConf != "" {
		d.ka = runKeepalived(t, d.ns, d.kaConf)
		d.cmd = d.ka.cmd
		return
	}
	cmd := exec.Command("ip", "netns", "exec", d.ns, os.Getenv(envLvsha), "run", "-c", d.cfg)
	cmd.Stderr = os.Stderr
	if os.Getenv(envTrace) != "" {
		cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	}
	if d.logFile != "" {
		f, err := os.OpenFile(d.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close() // the child has its own descriptor
		cmd.Stderr = f
	}
	// Its own process group, so the whole daemon can be SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.cmd = cmd
	t.Cleanup(func() { stopProc(cmd) })
}

func (d *director) kill() {
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	if d.ka != nil {
		<-d.ka.done // its own goroutine waits for it
		return
	}
	d.cmd.Wait()
}

// state is the instance's VRRP state from `lvsha status -o json`, or "" if
// the daemon does not answer.
func (d *director) state() string { return d.states()["vi"] }

// states is every VRRP instance's state from `lvsha status -o json`.
func (d *director) states() map[string]string {
	if d.kaConf != "" {
		out, err := exec.Command("ip", "-n", d.ns, "addr").Output()
		if err != nil {
			return nil
		}
		m := map[string]string{}
		for name, vip := range d.kaVIPs {
			m[name] = "BACKUP"
			if strings.Contains(string(out), vip+"/") {
				m[name] = "MASTER"
			}
		}
		return m
	}
	out, err := exec.Command(os.Getenv(envLvsha), "status", "-s", d.sock, "-o", "json").Output()
	if err != nil {
		return nil
	}
	var rep struct {
		VRRP []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"vrrp_instances"`
	}
	if json.Unmarshal(out, &rep) != nil {
		return nil
	}
	m := map[string]string{}
	for _, v := range rep.VRRP {
		m[v.Name] = v.State
	}
	return m
}

// instStatus is the part of an instance's `lvsha status -o json` the
// tests read.
type instStatus struct {
	Name           string    `json:"name"`
	State          string    `json:"state"`
	BasePriority   int       `json:"base_priority"`
	Priority       int       `json:"priority"`
	LastAdvert     time.Time `json:"last_advert"`
	Transitions    int       `json:"transitions"`
	LastTransition time.Time `json:"last_transition"`
	VIPs           []string  `json:"vips"`
}

// instanceStatus is the named instance's status, false if the daemon does
// not answer or lacks it.
func (d *director) instanceStatus(name string) (instStatus, bool) {
	out, err := exec.Command(os.Getenv(envLvsha), "status", "-s", d.sock, "-o", "json").Output()
	if err != nil {
		return instStatus{}, false
	}
	var rep struct {
		VRRP []instStatus `json:"vrrp_instances"`
	}
	if json.Unmarshal(out, &rep) != nil {
		return instStatus{}, false
	}
	for _, v := range rep.VRRP {
		if v.Name == name {
			return v, true
		}
	}
	return instStatus{}, false
}

// vipHolders names the directors whose namespace has vip, comma-separated
// in order: "" for none, "lb1,lb2" for two.
func vipHolders(t testing.TB, ds []*director, vip string) string {
	var h []string
	for _, d := range ds {
		if d.holdsVIP(t, vip) {
			h = append(h, d.name)
		}
	}
	return strings.Join(h, ",")
}

// holdsVIP reports whether the director's namespace has the VIP.
func (d *director) holdsVIP(t testing.TB, vip string) bool {
	return strings.Contains(inNS(t, d.ns, "ip", "addr"), vip+"/")
}

// writeConfig writes the director's config: instance "vi" (VRID 50) on
// its interface at prio with vips and extra keys.
func (d *director) writeConfig(t testing.TB, prio int, vips []string, extra string) {
	t.Helper()
	q := make([]string, len(vips))
	for i, v := range vips {
		q[i] = strconv.Quote(v)
	}
	// A state file of its own: directors in one kernel would share the
	// default, and the second would keep no state across a restart.
	text := fmt.Sprintf(`[director]
name = %q
control_socket = %q
state_file = %q
[[vrrp_instance]]
name = "vi"
interface = %q
router_id = 50
priority = %d
virtual_ips = [%s]
%s%s`, d.name, d.sock, filepath.Join(d.dir, "state.json"), d.iface, prio, strings.Join(q, ", "), vmNoBFD(), extra)
	if err := os.WriteFile(d.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// vmNoBFD is the bfd key of the instances of the tests that run in the
// VM: off. They are about VRRP's own timers (BenchmarkFailover compares
// lvsha with keepalived there), and under the VM's emulation a stall of
// BFD's 50 ms detection time is routine: a takeover on it and the
// handback at the next advert would flap their pairs. BFD fast takeover
// is tested and measured on the host (hostTests: TestBFDTakeover,
// BenchmarkFailoverBFD), and where the host has IPVS every test runs
// there with BFD at its default, on.
func vmNoBFD() string {
	if os.Getenv(envInVM) == "1" {
		return "bfd = false\n"
	}
	return ""
}

// newDirectors starts a LAN of len(prios) directors and a client; extra
// gives each director's additional vrrp_instance keys (by index).
func newDirectors(t testing.TB, vip string, extra func(i int) string, prios ...int) (client string, ds []*director) {
	hosts, ifs := lan(t, len(prios)+1)
	client = hosts[len(prios)]
	for i, p := range prios {
		d := &director{name: fmt.Sprintf("lb%d", i+1), ns: hosts[i], iface: ifs[i], dir: t.TempDir()}
		d.cfg, d.sock = filepath.Join(d.dir, "lvsha.toml"), filepath.Join(d.dir, "s.sock")
		d.writeConfig(t, p, []string{vip}, extra(i))
		startIn(t, d.ns, []string{envRole + "=web", "LVSHA_NAME=" + d.name, "LVSHA_LISTEN=:80"}, self(t))
		ds = append(ds, d)
	}
	return client, ds
}

// pollVIP polls url from the client namespace for d: the answers by
// server, the failed and total requests, the switches. Its failure ends
// the test, so only the test's goroutine may call it.
func pollVIP(t testing.TB, client, url string, d time.Duration) (counts map[string]int, failed, total int, switches []string) {
	t.Helper()
	r, err := pollVIPErr(client, url, d)
	if err != nil {
		t.Fatal(err)
	}
	return r.Counts, r.Failed, r.Total, r.Switches
}

// pollVIPErr is pollVIP for a goroutine other than the test's, which must
// not call t.Fatal: it returns the error for the test goroutine to report.
// (pollResult is the poll role's report, in failover_bench_test.go.)
func pollVIPErr(client, url string, d time.Duration) (pollResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return pollResult{}, fmt.Errorf("poll: %w", err)
	}
	cmd := exec.Command("ip", "netns", "exec", client, exe)
	cmd.Env = append(os.Environ(), envRole+"=poll", "LVSHA_URL="+url, "LVSHA_DURATION="+d.String())
	out, err := cmd.Output()
	if err != nil {
		return pollResult{}, fmt.Errorf("poll: %w", err)
	}
	var r pollResult
	if err := json.Unmarshal(out, &r); err != nil {
		return pollResult{}, fmt.Errorf("poll output %q: %w", out, err)
	}
	return r, nil
}

// TestFailover: two lvsha directors elect a master that holds the VIP and
// answers the client; the master's daemon SIGKILLed with its link up loses
// the VIP by itself and the backup takes over; the old master comes back
// and preempts; a SIGTERMed master hands over without a failed request.
// For VRRPv3 over IPv4 and IPv6 multicast, IPv4 unicast, and VRRPv2.
func TestFailover(t *testing.T) {
	for _, tc := range []struct {
		name, vip, url string
		extra          func(i int) string
	}{
		{"v3 ipv4 multicast", "10.79.0.100", "http://10.79.0.100/", func(int) string { return "" }},
		{"v3 ipv6 multicast", "2001:db8:79::100", "http://[2001:db8:79::100]/", func(int) string { return "" }},
		{"v3 ipv4 unicast", "10.79.0.100", "http://10.79.0.100/", func(i int) string {
			return fmt.Sprintf("unicast_src = \"10.79.0.%d\"\nunicast_peers = [\"10.79.0.%d\"]\n", i+1, 2-i)
		}},
		{"v2 ipv4", "10.79.0.100", "http://10.79.0.100/", func(int) string { return "version = 2\nadvert_interval = \"1s\"\n" }},
	} {
		t.Run(tc.name, func(t *testing.T) { testFailover(t, tc.vip, tc.url, tc.extra) })
	}
}

func testFailover(t *testing.T, vip, url string, extra func(int) string) {
	prefix := "/24"
	if strings.Contains(vip, ":") {
		prefix = "/64"
	}
	client, ds := newDirectors(t, vip+prefix, extra, 150, 100)
	lb1, lb2 := ds[0], ds[1]
	lb1.start(t)
	lb2.start(t)
	eventually(t, "lb1 master, lb2 backup", 20*time.Second, func() bool { return lb1.state() == "MASTER" && lb2.state() == "BACKUP" })
	// Started together, both may have been master for a moment; the
	// backup's release follows its transition.
	eventually(t, "only lb1 holds the VIP", 5*time.Second, func() bool { return lb1.holdsVIP(t, vip) && !lb2.holdsVIP(t, vip) })
	if counts, failed, _, _ := pollVIP(t, client, url, time.Second); failed != 0 || counts["lb1"] == 0 || counts["lb2"] != 0 {
		t.Fatalf("client through the VIP: %v, %d failed; want only lb1", counts, failed)
	}
	// Once adverts flow there is one master, sample after sample.
	for i := 0; i < 8; i++ {
		if a, b := lb1.state(), lb2.state(); a != "MASTER" || b != "BACKUP" {
			t.Fatalf("sample %d: lb1 %s, lb2 %s", i, a, b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The master's link goes down: the backup takes over and serves.
	sh(t, "ip", "-n", lb1.ns, "link", "set", lb1.iface, "down")
	eventually(t, "lb2 takes over from a master whose link went down", 10*time.Second, func() bool { return lb2.state() == "MASTER" })
	if counts, failed, _, _ := pollVIP(t, client, url, time.Second); failed != 0 || counts["lb2"] == 0 {
		t.Fatalf("with lb1's link down the client got %v, %d failed; want lb2", counts, failed)
	}
	sh(t, "ip", "-n", lb1.ns, "link", "set", lb1.iface, "up")
	eventually(t, "lb1 master again after its link returns", 20*time.Second, func() bool { return lb1.state() == "MASTER" && lb2.state() == "BACKUP" })
	eventually(t, "only lb1 holds the VIP", 5*time.Second, func() bool { return lb1.holdsVIP(t, vip) && !lb2.holdsVIP(t, vip) })

	// SIGKILL of the master's whole daemon, link up.
	lb1.kill()
	killed := time.Now()
	gone := eventually(t, "VIP gone from the killed master", 5*time.Second, func() bool { return !lb1.holdsVIP(t, vip) })
	eventually(t, "lb2 takes over", 10*time.Second, func() bool { return lb2.state() == "MASTER" && lb2.holdsVIP(t, vip) })
	t.Logf("SIGKILL of lb1's daemon: its VIP gone after %v; lb2 master %v after the kill", gone.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if counts, failed, _, _ := pollVIP(t, client, url, time.Second); failed != 0 || counts["lb2"] == 0 || counts["lb1"] != 0 {
		t.Fatalf("after the kill the client got %v, %d failed; want only lb2", counts, failed)
	}

	// lb1 returns with the higher priority and preempts.
	lb1.start(t)
	eventually(t, "lb1 preempts", 20*time.Second, func() bool { return lb1.state() == "MASTER" && lb2.state() == "BACKUP" })
	eventually(t, "only lb1 holds the VIP", 5*time.Second, func() bool { return lb1.holdsVIP(t, vip) && !lb2.holdsVIP(t, vip) })
	if counts, failed, _, _ := pollVIP(t, client, url, time.Second); failed != 0 || counts["lb1"] == 0 {
		t.Fatalf("after lb1 preempted the client got %v, %d failed; want lb1\nclient neighbours:\n%s\nlb1:\n%s\nlb2:\n%s", counts, failed,
			inNS(t, client, "ip", "neigh"), inNS(t, lb1.ns, "ip", "addr"), inNS(t, lb2.ns, "ip", "addr"))
	}

	// Graceful stop: no failed request across the handover.
	type polled struct {
		r   pollResult
		err error
	}
	done := make(chan polled, 1)
	go func() {
		r, err := pollVIPErr(client, url, 4*time.Second)
		done <- polled{r, err}
	}()
	time.Sleep(time.Second)
	stopProc(lb1.cmd)
	p := <-done
	if p.err != nil {
		t.Fatalf("client during the graceful stop: %v", p.err)
	}
	counts, failed, total, switches := p.r.Counts, p.r.Failed, p.r.Total, p.r.Switches
	t.Logf("SIGTERM of the master during 4 s of client requests: %d requests, %d failed, %v, switches %v", total, failed, counts, switches)
	if failed != 0 {
		t.Errorf("graceful handover lost %d of %d requests", failed, total)
	}
	if counts["lb2"] == 0 || lb2.state() != "MASTER" {
		t.Errorf("after lb1's graceful stop: counts %v, lb2 %s; want lb2 master and answering", counts, lb2.state())
	}
}
