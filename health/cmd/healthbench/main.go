// Command healthbench measures the health engine's cost: it runs many
// distinct tcp probes against loopback listeners served by a child process
// (so the accepting side's CPU is not counted) and reports this process's
// CPU share of one core and its RSS.
//
//	go run ./health/cmd/healthbench -n 10000 -interval 1s -duration 20s
//	go run ./health/cmd/healthbench -floor -duration 10s
//
// Measured on the 2-vCPU development VM (Go 1.26, 10,000 distinct probes
// over 100 listeners, 1s interval, 20s window): about 50% of one core (of
// which about 32% is system time) and 37 MiB RSS. The -floor mode, which
// does only the unavoidable system calls from one thread, costs about 32%
// of one core at the same rate: on loopback the connecting thread also
// runs the listener's half of every handshake, so most of the cost is the
// kernel's, not the engine's.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"golang.org/x/sys/unix"
)

const childEnv = "LVSHA_HEALTHBENCH_LISTENERS"

func main() {
	if v := os.Getenv(childEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, "healthbench child:", err)
			os.Exit(2)
		}
		if err := child(n); err != nil {
			fmt.Fprintln(os.Stderr, "healthbench child:", err)
			os.Exit(1)
		}
		return
	}
	n := flag.Int("n", 10000, "distinct tcp probes")
	listeners := flag.Int("listeners", 100, "loopback listeners the probes spread over")
	interval := flag.Duration("interval", time.Second, "probe interval")
	warmup := flag.Duration("warmup", 3*time.Second, "time before measuring (first runs are jittered over one interval)")
	duration := flag.Duration("duration", 20*time.Second, "measurement window")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the measurement window here")
	verbose := flag.Bool("v", false, "log transitions")
	floorMode := flag.Bool("floor", false, "instead of the engine, measure the bare kernel cost: the same "+
		"connects per second from one thread with blocking poll (socket, connect, poll, getsockopt, linger, close)")
	flag.Parse()
	level := slog.LevelError
	if *verbose {
		level = slog.LevelInfo
	}
	if *floorMode {
		if err := floor(*n, *listeners, *interval, *duration); err != nil {
			fmt.Fprintln(os.Stderr, "healthbench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*n, *listeners, *interval, *warmup, *duration, *profile, level); err != nil {
		fmt.Fprintln(os.Stderr, "healthbench:", err)
		os.Exit(1)
	}
}

// child serves n listeners on 127.0.0.1, printing their ports, then the
// running count of accepted connections every 500ms, until stdin closes.
func child(n int) error {
	var accepted atomic.Int64
	out := bufio.NewWriter(os.Stdout)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Fprintln(out, ln.Addr().(*net.TCPAddr).Port)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
	}
	fmt.Fprintln(out, "ready")
	if err := out.Flush(); err != nil {
		return err
	}
	go func() {
		for range time.Tick(500 * time.Millisecond) {
			fmt.Printf("accepted %d\n", accepted.Load())
		}
	}()
	_, _ = bufio.NewReader(os.Stdin).ReadString(0) // returns when the parent exits
	return nil
}

func raiseNoFile() (uint64, error) {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	l.Cur = l.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}

// cpuTime returns user and system CPU time used so far.
func cpuTime() (user, sys time.Duration) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// procStatus reads a kB field such as VmRSS from /proc/self/status, in MiB.
func procStatus(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return -1
}

// startChild starts the listener process; stop ends it.
func startChild(listeners int, accepted *atomic.Int64) (ports []uint16, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(listeners))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start listener child: %w", err)
	}
	stop = func() { stdin.Close(); _ = cmd.Wait() }
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		p, err := strconv.Atoi(sc.Text())
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("child said %q", sc.Text())
		}
		ports = append(ports, uint16(p))
	}
	if len(ports) != listeners {
		stop()
		return nil, nil, fmt.Errorf("child opened %d of %d listeners", len(ports), listeners)
	}
	go func() {
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "accepted "); ok {
				a, _ := strconv.ParseInt(v, 10, 64)
				accepted.Store(a)
			}
		}
	}()
	return ports, stop, nil
}

func run(n, listeners int, interval, warmup, duration time.Duration, profile string, logLevel slog.Level) error {
	nofile, err := raiseNoFile()
	if err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	var accepted atomic.Int64
	ports, stop, err := startChild(listeners, &accepted)
	if err != nil {
		return err
	}
	defer stop()

	// Probes are made distinct by listener port and rise/fall (which do not
	// change the load), so the engine cannot collapse them.
	perListener := (n + listeners - 1) / listeners
	if perListener > 100*100 {
		return fmt.Errorf("at most %d probes per listener", 100*100)
	}
	cfg := &conf.Config{}
	count := 0
	for q := 0; q < perListener && count < n; q++ {
		check := &conf.Check{Type: "tcp", Interval: interval, RetryInterval: interval, Timeout: interval / 2,
			Rise: q%100 + 1, Fall: q/100 + 1}
		vs := conf.VirtualServer{Name: "vs" + strconv.Itoa(q), Check: check}
		for _, p := range ports {
			if count == n {
				break
			}
			rs := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
			vs.RealServers = append(vs.RealServers, conf.RealServer{Address: rs, Weight: 1, Check: check})
			count++
		}
		cfg.VirtualServers = append(cfg.VirtualServers, vs)
	}

	var transitions atomic.Int64
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))
	e := health.NewEngine(log)
	e.Update(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	go func() {
		for range e.Updates() {
			transitions.Add(1)
		}
	}()

	fmt.Printf("probes=%d listeners=%d interval=%v nofile=%d GOMAXPROCS=%d\n",
		n, listeners, interval, nofile, runtime.GOMAXPROCS(0))
	time.Sleep(warmup)
	snap := e.Snapshot()
	fmt.Printf("after warmup: %d keys, goroutines=%d RSS=%.1f MiB\n", len(snap), runtime.NumGoroutine(), procStatus("VmRSS"))

	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	user0, sys0 := cpuTime()
	wall0, acc0 := time.Now(), accepted.Load()
	var maxRSS float64
	for t := time.Duration(0); t < duration; t += time.Second {
		time.Sleep(time.Second)
		maxRSS = max(maxRSS, procStatus("VmRSS"))
	}
	user1, sys1 := cpuTime()
	user, sys := user1-user0, sys1-sys0
	cpu, wall, acc := user+sys, time.Since(wall0), accepted.Load()-acc0
	if profile != "" {
		pprof.StopCPUProfile()
	}

	snap = e.Snapshot()
	var checked, up, failed int
	for _, s := range snap {
		if s.Checked {
			checked++
		}
		if s.Up {
			up++
		}
		if s.Checked && !s.Last.OK {
			failed++
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("window=%v cpu=%v (user %v, sys %v) share=%.1f%% of one core\n", wall.Round(time.Millisecond),
		cpu.Round(time.Millisecond), user.Round(time.Millisecond), sys.Round(time.Millisecond),
		100*cpu.Seconds()/wall.Seconds())
	fmt.Printf("connections accepted by listeners: %d (%.0f/s, expected %.0f/s)\n",
		acc, float64(acc)/wall.Seconds(), float64(n)/interval.Seconds())
	fmt.Printf("RSS max=%.1f MiB now=%.1f MiB HWM=%.1f MiB; heap inuse=%.1f MiB sys=%.1f MiB; goroutines=%d\n",
		maxRSS, procStatus("VmRSS"), procStatus("VmHWM"), float64(ms.HeapInuse)/(1<<20), float64(ms.Sys)/(1<<20),
		runtime.NumGoroutine())
	fmt.Printf("keys=%d checked=%d up=%d last-failed=%d update-signals=%d\n", len(snap), checked, up, failed, transitions.Load())

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("engine did not stop within 10s")
	}
	return nil
}

// floor connects to the listeners at the engine's rate from one goroutine
// locked to its thread, with the fewest system calls a connect probe
// needs, so the engine's figure can be compared with what the kernel alone
// costs on this machine (on loopback the kernel also does the listener's
// half of every handshake in the connecting thread).
func floor(n, listeners int, interval, duration time.Duration) error {
	runtime.LockOSThread()
	var accepted atomic.Int64
	ports, stop, err := startChild(listeners, &accepted)
	if err != nil {
		return err
	}
	defer stop()
	perSecond := float64(n) / interval.Seconds()
	user0, sys0 := cpuTime()
	start := time.Now()
	done := 0
	for time.Since(start) < duration {
		// Pace in 10ms slices so the rate matches the engine's.
		due := int(time.Since(start).Seconds()*perSecond) + int(perSecond/100)
		for ; done < due; done++ {
			if err := rawConnect(ports[done%len(ports)]); err != nil {
				return err
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	user1, sys1 := cpuTime()
	wall := time.Since(start)
	user, sys := user1-user0, sys1-sys0
	fmt.Printf("floor: %d connects in %v (%.0f/s) cpu=%v (user %v, sys %v) share=%.1f%% of one core, %.1fus/connect\n",
		done, wall.Round(time.Millisecond), float64(done)/wall.Seconds(), (user + sys).Round(time.Millisecond),
		user.Round(time.Millisecond), sys.Round(time.Millisecond), 100*(user+sys).Seconds()/wall.Seconds(),
		float64((user+sys).Microseconds())/float64(done))
	return nil
}

func rawConnect(port uint16) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}})
	if err != nil && err != unix.EINPROGRESS {
		return err
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if _, err := unix.Poll(pfd, 1000); err != nil {
		return err
	}
	if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
		return fmt.Errorf("connect: %v %v", err, unix.Errno(e))
	}
	return unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}
