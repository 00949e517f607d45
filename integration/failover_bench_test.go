package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// pollResult is the poll role's report.
type pollResult struct {
	Counts   map[string]int `json:"counts"`
	Failed   int            `json:"failed"`
	Total    int            `json:"total"`
	Switches []string       `json:"switches"`
	Start    int64          `json:"start_unix_ms"`
}

// startPoll runs the poll role in the client namespace in the background.
func startPoll(t testing.TB, client, url string, d time.Duration) func() pollResult {
	cmd := exec.Command("ip", "netns", "exec", client, self(t))
	cmd.Env = append(os.Environ(), envRole+"=poll", "LVSHA_URL="+url, "LVSHA_DURATION="+d.String())
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() pollResult {
		cmd.Wait()
		var r pollResult
		if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
			t.Fatalf("poll output %q: %v", out.String(), err)
		}
		return r
	}
}

// firstAnswerFrom is when server first answered after the poll started,
// as a wall-clock time.
func (r pollResult) firstAnswerFrom(server string) (time.Time, bool) {
	for _, s := range r.Switches {
		ms, name, _ := strings.Cut(s, ":")
		if name == server {
			n, _ := strconv.ParseInt(ms, 10, 64)
			return time.UnixMilli(r.Start + n), true
		}
	}
	return time.Time{}, false
}

// pair is two directors of one kind (lvsha or keepalived) on a LAN with a
// client, lb1 the preferred master.
type pair struct {
	kind   string
	client string
	ds     []*director
	kaArgs []string // keepalived vrrp_instance extra lines
	prios  [2]int   // lb1's, lb2's
}

func (p *pair) startDirector(t testing.TB, i int) {
	d := p.ds[i]
	if p.kind == "lvsha" {
		d.start(t)
		return
	}
	d.cmd = startKeepalivedVRRP(t, d.ns, d.iface, p.prios[i], "10.79.0.100/24", p.kaArgs[0])
}

// BenchmarkFailover measures, for lvsha and keepalived with the same
// settings in the same run, the hard failover time (SIGKILL of the
// master's daemon and its link down → first client answer through the
// backup) and the client requests lost in a graceful handover (SIGTERM of
// the master, client retrying within 50 ms). Reported as medians.
//
//	go test ./integration -run '^$' -bench Failover -benchtime 10x
func BenchmarkFailover(b *testing.B) {
	for _, set := range []struct {
		name      string
		lvsha, ka string
		advert    time.Duration
		version   int
		prios     [2]int
	}{
		{"v3-1s", "version = 3\nadvert_interval = \"1s\"\n", "  version 3\n  advert_int 1\n", time.Second, 3, [2]int{150, 100}},
		// lvsha's defaults: nothing set.
		{"v3-100ms", "", "  version 3\n  advert_int 0.1\n", 100 * time.Millisecond, 3, [2]int{150, 100}},
		// The backup's skew time shrinks as its priority grows: at 200
		// Master_Down_Interval is 322 ms instead of 361.
		{"v3-100ms-prio250-200", "", "  version 3\n  advert_int 0.1\n", 100 * time.Millisecond, 3, [2]int{250, 200}},
		{"v2-1s", "version = 2\nadvert_interval = \"1s\"\n", "  version 2\n  advert_int 1\n", time.Second, 2, [2]int{150, 100}},
	} {
		b.Run(set.name, func(b *testing.B) {
			var hards [][]time.Duration
			for _, kind := range []string{"lvsha", "keepalived"} {
				r := failoverRuns(b, kind, set.lvsha, set.ka, set.advert, set.prios, b.N)
				hards = append(hards, r.hard)
				hard := r.hard
				// The backup takes over Master_Down_Interval after the
				// master's last advert, which the kill follows by a phase
				// of up to one interval; the issue allows 20 ms more than
				// Master_Down_Interval from the kill.
				bound := vrrp.MasterDownInterval(set.version, uint8(set.prios[1]), set.advert) + 20*time.Millisecond
				within := 0
				for _, h := range hard {
					if h <= bound {
						within++
					}
				}
				b.ReportMetric(median(hard).Seconds(), kind+"-failover-s")
				b.ReportMetric(slices.Max(hard).Seconds(), kind+"-failover-max-s")
				b.ReportMetric(slices.Min(hard).Seconds(), kind+"-failover-min-s")
				b.ReportMetric(median(r.sinceAdvert).Seconds(), kind+"-since-last-advert-s")
				b.ReportMetric(median(r.phase).Seconds(), kind+"-kill-phase-s")
				b.ReportMetric(median(r.announced).Seconds(), kind+"-announced-after-last-advert-s")
				b.ReportMetric(float64(within)/float64(len(hard)), kind+"-within-bound")
				b.ReportMetric(float64(medianInt(r.lost)), kind+"-graceful-lost")
				b.ReportMetric(float64(slices.Max(r.lost)), kind+"-graceful-lost-max")
				if len(r.takeover) > 0 {
					b.ReportMetric(median(r.takeover).Seconds(), kind+"-takeover-s")
					b.ReportMetric(slices.Max(r.takeover).Seconds(), kind+"-takeover-max-s")
				}
				b.Logf("%s %s: failover %v (bound %v); from the last advert %v; kill phase %v; announced after the last advert %v; takeover after the kill %v; graceful handover lost %v",
					set.name, kind, hard, bound, r.sinceAdvert, r.phase, r.announced, r.takeover, r.lost)
			}
			// Run i of each kind was killed at the same phase: the median
			// of their differences compares the daemons kill for kill,
			// where the medians of each compare runs that may sit at
			// different phases.
			diffs := make([]time.Duration, len(hards[0]))
			for i := range diffs {
				diffs[i] = hards[0][i] - hards[1][i]
			}
			b.ReportMetric(median(diffs).Seconds(), "lvsha-minus-keepalived-same-phase-s")
		})
	}
}

// BenchmarkFailoverBFD measures BFD fast takeover (issue #19): lvsha at
// its defaults (VRRPv3 at 100 ms adverts, bfd 10 ms x 5, a 50 ms
// detection time) against keepalived at its best, VRRPv3 at 10 ms
// adverts, and at 100 ms, priorities 250/240, in the same run: SIGKILL
// of the master's daemon and its link down → the client's first answer
// through the backup, by kernel timestamps (failoverRuns). It runs on the
// host (hostTests): detection in tens of milliseconds means nothing under
// the VM's emulation.
//
//	go test ./integration -run '^$' -bench FailoverBFD -benchtime 10x -timeout 30m
func BenchmarkFailoverBFD(b *testing.B) {
	for _, set := range []struct {
		name, kind, lvsha, ka string
		advert                time.Duration
		prios                 [2]int
	}{
		{"lvsha-bfd", "lvsha", "", "", 100 * time.Millisecond, [2]int{150, 100}},
		{"keepalived-10ms", "keepalived", "", "  version 3\n  advert_int 0.01\n", 10 * time.Millisecond, [2]int{250, 240}},
		{"keepalived-100ms", "keepalived", "", "  version 3\n  advert_int 0.1\n", 100 * time.Millisecond, [2]int{250, 240}},
	} {
		r := failoverRuns(b, set.kind, set.lvsha, set.ka, set.advert, set.prios, b.N)
		b.ReportMetric(median(r.hard).Seconds(), set.name+"-failover-s")
		b.ReportMetric(slices.Max(r.hard).Seconds(), set.name+"-failover-max-s")
		b.ReportMetric(slices.Min(r.hard).Seconds(), set.name+"-failover-min-s")
		b.ReportMetric(float64(medianInt(r.lost)), set.name+"-graceful-lost")
		if len(r.takeover) > 0 {
			b.ReportMetric(median(r.takeover).Seconds(), set.name+"-takeover-s")
		}
		// stderr: a benchmark's log keeps only its first lines.
		fmt.Fprintf(os.Stderr, "%s: failover %v; takeover after the kill %v; graceful handover lost %v\n", set.name, r.hard, r.takeover, r.lost)
	}
}

func medianInt(v []int) int {
	d := make([]time.Duration, len(v))
	for i, x := range v {
		d[i] = time.Duration(x)
	}
	return int(median(d))
}

// failoverResult is one kind's runs at one setting, one entry per run.
type failoverResult struct {
	// hard is kill → first answer through the backup; sinceAdvert the
	// same from the master's last advert, phase the kill's delay after
	// that advert, announced the backup's first gratuitous ARP after it.
	hard, sinceAdvert, phase, announced []time.Duration
	// takeover is kill → the backup's transition to master, from its
	// status (lvsha only).
	takeover []time.Duration
	// lost is the failed requests of each graceful handover.
	lost []int
}

func failoverRuns(b *testing.B, kind, lvshaExtra, kaExtra string, advert time.Duration, prios [2]int, n int) (r failoverResult) {
	const vip = "10.79.0.100"
	url := "http://" + vip + "/"
	client, ds := newDirectors(b, vip+"/24", func(int) string { return lvshaExtra }, prios[0], prios[1])
	// keepalived logs to syslog, which nothing reads in the VM; lvsha's
	// log would go to the VM's emulated serial console, at a cost that
	// would land on the takeover measured. A file costs what syslog does.
	for _, d := range ds {
		d.logFile = filepath.Join(d.dir, "lvsha.log")
		b.Cleanup(func() {
			if b.Failed() {
				log, _ := os.ReadFile(d.logFile)
				// stderr: a benchmark's log keeps only its first lines.
				fmt.Fprintf(os.Stderr, "%s's log:\n%s", d.name, log)
			}
		})
	}
	p := &pair{kind: kind, client: client, ds: ds, kaArgs: []string{kaExtra}, prios: prios}
	holder := func() string { return vipHolders(b, ds, vip) }
	p.startDirector(b, 0)
	p.startDirector(b, 1)
	settle := 20*advert + 10*time.Second
	// One failover first that counts for nothing. A series starts on a
	// fresh LAN, the first lvsha series of a round just as the previous
	// round's namespaces are deleted (work the kernel does in the
	// background, slowly under emulation); without it, lvsha's first
	// measured run was 38–65 ms slower than keepalived's at the same phase
	// at three of four settings, and only one other run was.
	for i := -1; i < n; i++ {
		warm := i < 0
		eventually(b, kind+" lb1 master", settle, func() bool { return holder() == "lb1" })
		time.Sleep(3 * advert) // adverts flowing, the backup's timer armed

		// Hard failover: the master's daemon dies with its link, at a
		// chosen point of its advert interval. The failover time depends
		// on that point (Master_Down_Interval runs from the last advert),
		// so every kind is killed at the same points, spread evenly over
		// the interval (a golden-ratio sequence), at least one advert
		// into the race's window.
		phase := time.Duration(math.Mod(float64(max(i, 0))*0.6180339887+0.5, 1) * 0.95 * float64(advert))
		kill := killPlan{pgid: ds[0].cmd.Process.Pid, after: advert + 500*time.Millisecond, phase: phase}
		answered := startRace(b, client, url, "lb2", hwAddr(b, ds[1].ns, ds[1].iface), prios[0], 7*advert+3*time.Second)
		killedAt := startKiller(b, client, kill, prios[0], 4*advert+3*time.Second)
		exited := make(chan struct{})
		go func() { ds[0].cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(7*advert + 5*time.Second):
			syscall.Kill(-kill.pgid, syscall.SIGKILL)
			<-exited
			b.Fatalf("%s: the killer never killed the master (no advert seen?)", kind)
		}
		sh(b, "ip", "-n", ds[0].ns, "link", "set", ds[0].iface, "down")
		killed := killedAt()
		read, last, garp, at := answered()
		if read.IsZero() || at.IsZero() || last.IsZero() || garp.IsZero() || killed.IsZero() {
			b.Fatalf("%s: the backup never answered after the master died (or no advert, announcement, answer frame or kill was seen)", kind)
		}
		what := "failover run"
		if warm {
			what = "failover warm-up (not counted)"
		} else {
			r.hard = append(r.hard, at.Sub(killed))
			r.sinceAdvert = append(r.sinceAdvert, at.Sub(last))
			r.phase = append(r.phase, killed.Sub(last))
			r.announced = append(r.announced, garp.Sub(last))
		}
		// Where the time went, run by run (stderr: a benchmark's log keeps
		// only its first lines): the master's last advert, the kill, the
		// backup's takeover (lvsha's status), its first announcement and
		// the client's first answer.
		takeover := "-"
		if kind == "lvsha" {
			if st, ok := ds[1].instanceStatus("vi"); ok {
				if !warm {
					r.takeover = append(r.takeover, st.LastTransition.Sub(killed))
				}
				takeover = st.LastTransition.Sub(last).Round(time.Millisecond).String()
			}
		}
		fmt.Fprintf(os.Stderr, "%s: %s advert %v: kill %v after the last advert; from it: takeover %s, announced %v, answered %v (%v after the kill; the client read it %v later)\n",
			what, kind, advert, killed.Sub(last).Round(time.Millisecond), takeover, garp.Sub(last).Round(time.Millisecond),
			at.Sub(last).Round(time.Millisecond), at.Sub(killed).Round(time.Millisecond), read.Sub(at).Round(time.Millisecond))
		if kind == "lvsha" && at.Sub(killed) > 100*time.Millisecond {
			// Past BFD's worst case: what BFD did, if it ran.
			log, _ := os.ReadFile(ds[1].logFile)
			var bfdLines []string
			for _, l := range strings.Split(string(log), "\n") {
				if strings.Contains(l, "BFD") {
					bfdLines = append(bfdLines, l)
				}
			}
			if len(bfdLines) > 0 {
				fmt.Fprintf(os.Stderr, "lb2's BFD log, last lines:\n%s\n", strings.Join(bfdLines[max(0, len(bfdLines)-12):], "\n"))
			}
		}
		if os.Getenv(envTrace) != "" && kind == "lvsha" {
			// The new master's log around the takeover, its collections
			// (gctrace) among them.
			log, _ := os.ReadFile(ds[1].logFile)
			lines := strings.Split(string(log), "\n")
			fmt.Fprintf(os.Stderr, "lb2 log tail:\n%s\n", strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
		// keepalived leaves its VIP behind when killed; clear it as an
		// operator would have to.
		exec.Command("ip", "-n", ds[0].ns, "addr", "del", vip+"/24", "dev", ds[0].iface).Run()
		sh(b, "ip", "-n", ds[0].ns, "link", "set", ds[0].iface, "up")
		p.startDirector(b, 0)
		eventually(b, kind+" lb1 master again", settle, func() bool { return holder() == "lb1" })
		time.Sleep(3 * advert)
		if warm {
			continue
		}

		// Graceful handover.
		wait := startPoll(b, client, url, 4*advert+3*time.Second)
		time.Sleep(500 * time.Millisecond)
		ds[0].cmd.Process.Signal(syscall.SIGTERM)
		res := wait()
		r.lost = append(r.lost, res.Failed)
		ds[0].cmd.Wait()
		if _, ok := res.firstAnswerFrom("lb2"); !ok {
			b.Fatalf("%s: no answer from the backup after a graceful stop: %+v", kind, res)
		}
		p.startDirector(b, 0)
	}
	// The next kind must not share the VM's two CPUs with this pair.
	for _, d := range ds {
		stopProc(d.cmd)
	}
	return r
}

// killPlan is when the killer kills the master: kill.pgid's process group
// gets SIGKILL phase after the first advert seen after, from the killer's
// start. The killer sees the adverts as they arrive, so the phase of the
// kill in the master's advert interval is chosen, not left to chance:
// lvsha and keepalived are killed at the same phases, and their medians
// differ by what they do, not by where the kills happened to land.
type killPlan struct {
	pgid         int
	after, phase time.Duration
}

// String is the form parseKillPlan reads.
func (k killPlan) String() string { return fmt.Sprintf("%d %v %v", k.pgid, k.after, k.phase) }

func parseKillPlan(s string) (k killPlan, err error) {
	var after, phase string
	if _, err := fmt.Sscan(s, &k.pgid, &after, &phase); err != nil {
		return k, fmt.Errorf("kill %q: %w", s, err)
	}
	if k.after, err = time.ParseDuration(after); err == nil {
		k.phase, err = time.ParseDuration(phase)
	}
	return k, err
}

// killer is a process of its own that does what killPlan says and prints
// when it killed (unix µs; 0 if it never saw an advert at masterPrio
// within limit). The race's client keeps a hundred goroutines busy, and a
// kill timed from inside it landed up to 18 ms late at 100 ms adverts;
// alone, the killer wakes on time. It times the phase from the advert's
// arrival by the kernel's clock, not from its own reading of it, so that
// a late read does not move the kill (at 100 ms adverts the phases of
// the two kinds' kills once differed by a median 10 ms).
func killer(kill killPlan, masterPrio int, limit time.Duration) int {
	c, err := listenAdvertsTimed()
	if err != nil {
		fmt.Fprintln(os.Stderr, "killer:", err)
		return 2
	}
	defer c.Close()
	adverts := make(chan transport.Datagram, 16)
	go func() {
		defer close(adverts)
		buf := make([]byte, 1500)
		for {
			d, err := c.Read(buf)
			if err != nil {
				return
			}
			if len(d.Payload) >= 3 && int(d.Payload[2]) == masterPrio {
				d.Payload = nil
				adverts <- d
			}
		}
	}()
	begin := time.Now()
	deadline := time.After(limit)
	for {
		select {
		case <-deadline:
			fmt.Println(0)
			return 0
		case d, ok := <-adverts:
			if !ok {
				fmt.Println(0)
				return 0
			}
			if time.Since(begin) < kill.after {
				continue
			}
			rx := d.At
			if rx.IsZero() {
				rx = time.Now()
			}
			time.Sleep(time.Until(rx.Add(kill.phase)))
			syscall.Kill(-kill.pgid, syscall.SIGKILL)
			fmt.Println(time.Now().UnixMicro())
			return 0
		}
	}
}

// listenAdvertsTimed receives VRRP adverts through lvsha's transport,
// which gives each one's arrival time by the kernel's clock, on the
// namespace's interface to the LAN: the first with multicast and an IPv4
// address (the VM's kernel adds address-less tunnel devices to every
// namespace).
func listenAdvertsTimed() (*transport.Conn, error) {
	for _, ifi := range mustInterfaces() {
		if ifi.Flags&net.FlagMulticast == 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				return transport.Listen(transport.Config{Interface: &ifi, Source: p.Addr()})
			}
		}
	}
	return nil, errors.New("no multicast interface with an IPv4 address")
}

// race starts a GET of url every 10 ms for duration, each on its own
// connection and without waiting for the ones in flight, and prints the
// times of the takeover by the director whose MAC is garpFrom: when the
// client read the first answer from server (unix ms; 0 if none came), and
// by the kernel's clock as its interfaces saw the frames (unix µs; 0 if
// not seen) the master's last advert at masterPrio, the takeover's first
// gratuitous ARP and the first answer through the new master. A serial
// client measures its own timeouts: a request sent to a dead master waits
// out its timeout, and the first answer from the backup comes only after
// it. Requests in parallel put the resolution at the 10 ms cadence.
func race(rawURL, duration, server, garpFrom string, masterPrio int) int {
	d, err := time.ParseDuration(duration)
	if err != nil {
		fmt.Fprintln(os.Stderr, "race:", err)
		return 2
	}
	// A connection attempt gives up after 250 ms, before the kernel's first
	// SYN retransmission (1 s): the attempts sent to the dead master then
	// end quietly instead of piling up, some hundred at 1 s adverts, whose
	// retransmissions and timeouts all fell due around the takeover and
	// kept the client's CPU busy just when it had to notice the new
	// master. An attempt every 10 ms still finds the new master within
	// 10 ms of its announcement.
	//
	// Each attempt is a bare HTTP/1.0 exchange on its own connection,
	// not net/http's client: the client shares the VM's two CPUs with the
	// directors, and the less it does per attempt, the sooner after the
	// new master's announcement it sends its request.
	u, err := url.Parse(rawURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "race:", err)
		return 2
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	request := []byte("GET / HTTP/1.0\r\n\r\n")
	get := func() bool {
		conn, err := net.DialTimeout("tcp", host, 250*time.Millisecond)
		if err != nil {
			return false
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write(request); err != nil {
			return false
		}
		b, err := io.ReadAll(io.LimitReader(conn, 4096))
		if err != nil {
			return false
		}
		status, body, ok := strings.Cut(string(b), "\r\n\r\n")
		line, _, _ := strings.Cut(status, "\r\n")
		return ok && strings.HasPrefix(line, "HTTP/1.") && strings.Contains(line, " 200 ") && strings.TrimSpace(body) == server
	}
	var (
		mu    sync.Mutex
		first int64
		wg    sync.WaitGroup
	)
	// The frames' kernel times, not the client's reading of them: a
	// client busy with a hundred connections reads an advert or an
	// answer up to tens of ms after it arrived, and that delay would be
	// measured as the director's.
	tr, err := startFrameTrace(rawURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "race:", err)
		return 2
	}
	defer tr.close()
	var cpu *cpuSampler
	if os.Getenv(envTrace) == "cpu" {
		cpu = startCPUSampler(20 * time.Millisecond)
		defer cpu.stop()
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		mu.Lock()
		done := first != 0
		mu.Unlock()
		if done {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !get() {
				return
			}
			now := time.Now().UnixMilli()
			mu.Lock()
			if first == 0 || now < first {
				first = now
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	tt := tr.takeover(garpFrom, masterPrio)
	if os.Getenv(envTrace) != "" && tt.garp != 0 && first != 0 {
		// Everything relative to the announcement's kernel time.
		ref := tt.garp
		tr.print(os.Stderr, tt, first*1000+2000)
		if cpu != nil {
			cpu.stop()
			cpu.print(os.Stderr, ref-50000, ref, ref)
			cpu.print(os.Stderr, ref, first*1000, ref)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		for i, end := range ms.PauseEnd {
			if us := int64(end / 1000); us >= ref-50000 && us <= first*1000+2000 {
				fmt.Fprintf(os.Stderr, "trace %+8.1f ms race client GC pause end (%v)\n", float64(us-ref)/1000, time.Duration(ms.PauseNs[i]))
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(first, tt.lastAdvert, tt.garp, tt.answer)
	return 0
}

// hwAddr is the hardware address of iface in namespace ns.
func hwAddr(t testing.TB, ns, iface string) string {
	f := strings.Fields(sh(t, "ip", "-n", ns, "-br", "link", "show", "dev", iface))
	if len(f) < 3 {
		t.Fatalf("no hardware address for %s in %s: %q", iface, ns, f)
	}
	return f[2]
}

// mustInterfaces is the namespace's non-loopback interfaces.
func mustInterfaces() []net.Interface {
	ifs, _ := net.Interfaces()
	return slices.DeleteFunc(ifs, func(i net.Interface) bool { return i.Flags&net.FlagLoopback != 0 })
}

// startKiller runs the killer role in the client namespace in the
// background; the returned func waits for the time of the kill (zero if
// there was none).
func startKiller(t testing.TB, client string, kill killPlan, masterPrio int, limit time.Duration) func() time.Time {
	cmd := exec.Command("ip", "netns", "exec", client, self(t))
	cmd.Env = append(os.Environ(), envRole+"=killer", "LVSHA_KILL="+kill.String(), "LVSHA_PRIO="+strconv.Itoa(masterPrio), "LVSHA_DURATION="+limit.String())
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() time.Time {
		cmd.Wait()
		var us int64
		if _, err := fmt.Sscan(out.String(), &us); err != nil || us == 0 {
			return time.Time{}
		}
		return time.UnixMicro(us)
	}
}

// startRace runs the race role in the client namespace in the background;
// the returned func waits for its times (see race; zero if not seen):
// the client's reading of the first answer from server, and the kernel's
// times of the last advert at masterPrio, of the first gratuitous ARP
// after it from the hardware address garpFrom and of the first answer
// through garpFrom.
func startRace(t testing.TB, client, url, server, garpFrom string, masterPrio int, d time.Duration) func() (read, lastAdvert, garp, answer time.Time) {
	cmd := exec.Command("ip", "netns", "exec", client, self(t))
	if os.Getenv(envTrace) != "" {
		cmd.Stderr = os.Stderr
	}
	cmd.Env = append(os.Environ(), envRole+"=race", "LVSHA_URL="+url, "LVSHA_DURATION="+d.String(), "LVSHA_NAME="+server, "LVSHA_MAC="+garpFrom, "LVSHA_PRIO="+strconv.Itoa(masterPrio))
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() (time.Time, time.Time, time.Time, time.Time) {
		cmd.Wait()
		var ms, last, garp, answer int64
		if _, err := fmt.Sscan(out.String(), &ms, &last, &garp, &answer); err != nil {
			t.Fatalf("race output %q: %v", out.String(), err)
		}
		at := func(us int64) time.Time {
			if us == 0 {
				return time.Time{}
			}
			return time.UnixMicro(us)
		}
		return at(ms * 1000), at(last), at(garp), at(answer)
	}
}
