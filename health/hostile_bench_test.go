package health

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// hostileKind is one kind of misbehaving real server in the benchmark's
// mix, and the check probing it.
type hostileKind struct {
	name  string
	check string
	mod   func(c *conf.Check)
	serve misbehavior
	reads reads
}

// hostileMix is the benchmark's mix: TestHostileServers' cases that a
// site could meet, each as often. Left out: body_md5 on an endless body,
// which reads its 16 MiB (conf.MaxDigestBody) by design and would
// measure loopback's bandwidth, not the bound.
func hostileMix() []hostileKind {
	const (
		ok200   = "HTTP/1.1 200 OK\r\n"
		chunked = ok200 + "Transfer-Encoding: chunked\r\n\r\n"
	)
	chunk := fmt.Sprintf("%x\r\n%s\r\n", 4096, strings.Repeat("x", 4096))
	bodyMatch := func(c *conf.Check) { c.Body = "healthy" }
	return []hostileKind{
		{"http silent", "http", nil, holdSilent, afterHTTP},
		{"http status line 1 B/s", "http", nil, trickle("", ok200), afterHTTP},
		{"http 1 MiB header", "http", nil, writeForever(ok200+"X-Big: "+strings.Repeat("a", 1<<20)+"\r\n\r\n", ""), afterHTTP},
		{"http endless body, body match", "http", bodyMatch, writeForever(chunked, chunk), afterHTTP},
		{"http body 1 B/s", "http", bodyMatch, trickle(chunked, "1\r\nx\r\n"), afterHTTP},
		{"http redirect loop", "http", nil, writeForever("HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n", ""), afterHTTP},
		{"http reset", "http", nil, resetNow, drain},
		{"https handshake never completes", "https", nil, holdSilent, drain},
		{"https garbage", "https", nil, writeForever("", "garbage\r\n"), drain},
		{"smtp silent", "smtp", nil, holdSilent, drain},
		{"smtp endless banner line", "smtp", nil, writeForever("220 ", strings.Repeat("x", 1024)), drain},
		{"smtp endless multi-line banner", "smtp", nil, writeForever("", "220-mx.test\r\n"), drain},
		{"tcp silent", "tcp", nil, holdSilent, drain},
	}
}

// The hostile servers run in a child process (this test binary again,
// running TestHostileServerProcess), so that their CPU and memory are not
// counted as the probes'.
const hostileEnv = "LVSHA_HOSTILE_SERVERS"

// TestHostileServerProcess is the benchmark's server process when
// LVSHA_HOSTILE_SERVERS is set to a count; otherwise it does nothing. It
// serves that many servers, cycling through hostileMix, prints each as
// "kind address", then "ready", and serves until its stdin closes.
func TestHostileServerProcess(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(hostileEnv))
	if err != nil {
		return // not the benchmark's child
	}
	mix := hostileMix()
	out := bufio.NewWriter(os.Stdout)
	for i := range n {
		k := mix[i%len(mix)]
		s := startHostile(t, "127.0.0.1", k.serve, k.reads)
		fmt.Fprintf(out, "%d %s\n", i%len(mix), s.rs)
	}
	fmt.Fprintln(out, "ready")
	out.Flush()
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// startHostileProcess starts n hostile servers in a child process and
// returns, for each, its kind (an index into hostileMix) and address.
func startHostileProcess(b *testing.B, n int) (kinds []int, addrs []netip.AddrPort) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileServerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), hostileEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		kind, addr, ok := strings.Cut(sc.Text(), " ")
		k, err := strconv.Atoi(kind)
		if !ok || err != nil {
			b.Fatalf("server process said %q", sc.Text())
		}
		kinds = append(kinds, k)
		addrs = append(addrs, netip.MustParseAddrPort(addr))
	}
	if len(addrs) != n {
		b.Fatalf("server process started %d servers of %d: %v", len(addrs), n, sc.Err())
	}
	return kinds, addrs
}

// ensureFiles makes sure this process may open n files, raising its soft
// limit as integration's raiseFileLimit does (the Go runtime already
// raised it to the hard limit at start).
func ensureFiles(b *testing.B, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = max(lim.Cur, min(n, lim.Max))
	if lim.Max < n {
		lim.Max, lim.Cur = n, n
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("raise the open files limit to %d: %v", n, err)
	}
}

// vmRSS is this process's resident set size, from /proc/self/status.
func vmRSS(b *testing.B) uint64 {
	f, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(f)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHostileServers probes 1,000 hostile servers (hostileMix, in a
// child process) once each per round, the starts spread over one second
// as the engine's would be at a 1 s interval; one op is one round, which
// lasts a second plus the last probes' timeout.
// It reports, per probe, the CPU and the bytes allocated, and for the
// whole run the growth of RSS (peak and at the end) and of the live heap
// (peak) over the process before the first round, and the slowest probe.
//
//	go test ./health -run '^$' -bench HostileServers -benchtime 5x
func BenchmarkHostileServers(b *testing.B) {
	const n = 1000
	timeout := 800 * time.Millisecond
	ensureFiles(b, 4*n)
	mix := hostileMix()
	kinds, addrs := startHostileProcess(b, n)
	checkers := make([]Checker, n)
	for i, rs := range addrs {
		k := mix[kinds[i]]
		c := baseCheck(k.check)
		c.Timeout, c.HeloName = timeout, "lb1.test"
		if k.mod != nil {
			k.mod(c)
		}
		ch, err := NewChecker("vs1", rs, c)
		if err != nil {
			b.Fatal(err)
		}
		checkers[i] = ch
	}
	results := make([]Result, n)

	runtime.GC()
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(samples)
	allocs0, heap0 := samples[0].Value.Uint64(), samples[1].Value.Uint64()
	rss0 := vmRSS(b)
	var mu sync.Mutex
	peakRSS, peakHeap := rss0, heap0
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			rss := vmRSS(b)
			metrics.Read(s)
			mu.Lock()
			peakRSS, peakHeap = max(peakRSS, rss), max(peakHeap, s[0].Value.Uint64())
			mu.Unlock()
		}
	}()
	cpu0 := cpuTime(b)
	var slowest time.Duration
	var slowKind string
	slowByKind := map[string]time.Duration{}
	down := make(map[string]int)
	unexpected := 0
	b.ResetTimer()
	for b.Loop() {
		// The engine spreads the probes over their interval (each first
		// run is jittered): probe i starts i/n of a second into the
		// round. All at one instant would overflow loopback's backlog of
		// packets (net.core.netdev_max_backlog, 1,000), and the dropped
		// SYNs would measure that instead.
		start := time.Now()
		var wg sync.WaitGroup
		for i, ch := range checkers {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / n)))
			wg.Go(func() { results[i] = ch.Check(context.Background()) })
		}
		wg.Wait()
		for i, r := range results {
			if r.Latency > slowest {
				slowest, slowKind = r.Latency, mix[kinds[i]].name
			}
			slowByKind[mix[kinds[i]].name] = max(slowByKind[mix[kinds[i]].name], r.Latency.Round(time.Millisecond))
			k := mix[kinds[i]]
			if !r.OK {
				down[k.name]++
			}
			// Every kind but tcp silent (a tcp check asks only for the
			// handshake) must be down.
			if r.OK != (k.check == "tcp") && unexpected < 5 {
				unexpected++
				b.Logf("%s: OK %v: %v", k.name, r.OK, r.Err)
			}
		}
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	close(stopSampling)
	<-sampled
	metrics.Read(samples)
	probes := float64(b.N * n)
	b.ReportMetric(float64(cpu.Microseconds())/probes, "µs-CPU/probe")
	b.ReportMetric(float64(samples[0].Value.Uint64()-allocs0)/probes, "B-alloc/probe")
	b.ReportMetric(float64(peakHeap-heap0)/(1<<20), "MiB-heap-peak-growth")
	b.ReportMetric(float64(peakRSS-rss0)/(1<<20), "MiB-RSS-peak-growth")
	b.ReportMetric(float64(int64(vmRSS(b))-int64(rss0))/(1<<20), "MiB-RSS-end-growth")
	b.ReportMetric(float64(slowest.Milliseconds()), "ms-slowest-probe")
	for _, k := range mix {
		want := b.N * ((n + len(mix) - 1 - indexOf(mix, k.name)) / len(mix))
		if k.check == "tcp" {
			want = 0
		}
		if down[k.name] != want {
			b.Errorf("%s: down %d times, want %d", k.name, down[k.name], want)
		}
	}
	if slowest > timeout+2*time.Second {
		b.Errorf("slowest probe took %v, timeout %v", slowest, timeout)
	}
	b.Logf("RSS before the first round %.1f MiB; %d probes, down by kind %v; slowest: %s %v", float64(rss0)/(1<<20), int(probes), down, slowKind, slowByKind)
}

func indexOf(mix []hostileKind, name string) int {
	for i, k := range mix {
		if k.name == name {
			return i
		}
	}
	return -1
}
