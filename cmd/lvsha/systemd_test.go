package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// notifySocket is the unixgram socket systemd would listen on: each
// datagram the daemon sends arrives on msgs, in order.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
	done chan struct{}
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	s := &notifySocket{conn: conn, msgs: make(chan string, 1000), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.msgs)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

// next returns the next message that is not a watchdog ping, and how many
// pings came before it.
func (s *notifySocket) next(t *testing.T, what string) (msg string, pings int) {
	t.Helper()
	bound := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				t.Fatalf("notify socket closed waiting for %s", what)
			}
			if m == "WATCHDOG=1" {
				pings++
				continue
			}
			return m, pings
		case <-bound:
			t.Fatalf("timed out waiting for %s (%d watchdog pings)", what, pings)
		}
	}
}

// pings waits for n watchdog pings, failing on anything else.
func (s *notifySocket) pings(t *testing.T, n int) {
	t.Helper()
	bound := time.After(10 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case m := <-s.msgs:
			if m != "WATCHDOG=1" {
				t.Fatalf("got %q after %d watchdog pings, want %d pings", m, i, n)
			}
		case <-bound:
			t.Fatalf("timed out after %d watchdog pings, want %d", i, n)
		}
	}
}

// fields parses a notification's NAME=value lines.
func fields(msg string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(msg, "\n") {
		k, v, _ := strings.Cut(l, "=")
		out[k] = v
	}
	return out
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// The daemon under systemd (the real health engine probing a loopback
// server, the fake kernel) notifies READY=1 only once the kernel holds its
// table; RELOADING=1 with the CLOCK_MONOTONIC time and READY=1 around each
// reload, SIGHUP or lvsha reload, with STATUS= naming a refused file's
// errors; STOPPING=1 at shutdown. The watchdog is pinged at half
// WATCHDOG_USEC while the loop runs, not while it is stuck in a reload,
// and never after it stopped.
func TestSystemdNotify(t *testing.T) {
	web := startBackend(t, "127.0.0.1:0")
	dir := t.TempDir()
	sock := filepath.Join(dir, "lvsha.sock")
	path := filepath.Join(dir, "lvsha.toml")
	const tmpl = `[director]
name = "test"
control_socket = %q

[[virtual_server]]
name = "web"
address = "10.1.2.3:80"
  [virtual_server.check]
  type = "tcp"
  interval = "50ms"
  timeout = "40ms"
  [[virtual_server.real_server]]
  address = %q
  weight = %d
`
	writeConfig(t, path, fmt.Sprintf(tmpl, sock, web.addr, 1))
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ns := listenNotify(t)
	const every = 25 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(2*every/time.Microsecond)))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	logs := &syncWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, nil))
	k := &ipvstest.Kernel{}
	d := newDaemon(log, path, cfg, ipvs.NewReconciler(k, log), health.NewEngine(log))
	d.notify = newNotifier(log)
	if d.notify == nil || d.notify.every != every {
		t.Fatalf("notifier %+v, want one pinging every %v", d.notify, every)
	}
	// A reload can be held inside the loop, as a loop stuck in the kernel
	// would be.
	hold := make(chan chan struct{}, 1)
	d.load = func(p string) (*conf.Config, error) {
		select {
		case release := <-hold:
			<-release
		default:
		}
		return conf.Load(p)
	}
	ln, err := listenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	runDone := make(chan error, 1)
	go func() {
		runDone <- d.run(ctx, hup, func(ctx context.Context) { serveControl(ctx, ln, d, log) })
	}()
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	}()

	msg, _ := ns.next(t, "READY=1 at start")
	if f := fields(msg); f["READY"] != "1" || f["STATUS"] != "running 1 virtual servers, 0 VRRP instances" {
		t.Errorf("first notification %q, want READY=1 with the running status", msg)
	}
	if len(kernelWeights(t, k)) != 1 {
		t.Errorf("READY=1 came before the kernel held the table: %v", kernelWeights(t, k))
	}
	ns.pings(t, 3)

	// A SIGHUP reload held in the loop: RELOADING=1 at once, then no ping
	// until the loop moves again.
	release := make(chan struct{})
	hold <- release
	writeConfig(t, path, fmt.Sprintf(tmpl, sock, web.addr, 2))
	before := monotonicUsec(t)
	hup <- syscall.SIGHUP
	msg, _ = ns.next(t, "RELOADING=1")
	after := monotonicUsec(t)
	f := fields(msg)
	mono, err := strconv.ParseInt(f["MONOTONIC_USEC"], 10, 64)
	if f["RELOADING"] != "1" || err != nil || mono < before || mono > after {
		t.Errorf("reload notification %q, want RELOADING=1 and MONOTONIC_USEC in [%d, %d]", msg, before, after)
	}
	select {
	case m := <-ns.msgs:
		t.Errorf("the loop held in a reload notified %q", m)
	case <-time.After(10 * every):
	}
	close(release)
	msg, _ = ns.next(t, "READY=1 after the reload")
	if f := fields(msg); f["READY"] != "1" || f["STATUS"] != "running 1 virtual servers, 0 VRRP instances" {
		t.Errorf("after the reload %q, want READY=1 with the running status", msg)
	}
	if w := kernelWeights(t, k); w["TCP  10.1.2.3:80 "+web.addr] != 2 {
		t.Errorf("the reload was not applied: %v", w)
	}
	ns.pings(t, 2)

	// lvsha reload (ExecReload=) of a bad file: exit 1, and systemd hears
	// why.
	writeConfig(t, path, strings.Replace(fmt.Sprintf(tmpl, sock, web.addr, 2), `type = "tcp"`, `type = "nope"`, 1))
	var out, errb bytes.Buffer
	if code := runMain(ctx, []string{"reload", "-s", sock}, &out, &errb); code != 1 {
		t.Errorf("lvsha reload of a bad file: exit %d, want 1\n%s%s", code, out.String(), errb.String())
	}
	if msg, _ := ns.next(t, "RELOADING=1"); fields(msg)["RELOADING"] != "1" {
		t.Errorf("second reload notified %q, want RELOADING=1", msg)
	}
	msg, _ = ns.next(t, "READY=1 after the refused reload")
	if f := fields(msg); f["READY"] != "1" || !strings.HasPrefix(f["STATUS"], "reload failed: "+path+":9: virtual_server[0].check.type") ||
		!strings.HasSuffix(f["STATUS"], "(previous configuration)") {
		t.Errorf("after the refused reload %q, want READY=1 and STATUS=reload failed: with the error at file:line", msg)
	}
	ns.pings(t, 2)

	cancel()
	if err := <-runDone; err != nil {
		t.Errorf("run: %v", err)
	}
	if msg, _ := ns.next(t, "STOPPING=1"); fields(msg)["STOPPING"] != "1" {
		t.Errorf("at shutdown %q, want STOPPING=1", msg)
	}
	// Everything the daemon sent has arrived: it has returned.
	select {
	case m := <-ns.msgs:
		t.Errorf("after STOPPING=1 the daemon notified %q", m)
	case <-time.After(5 * every):
	}
}

// Without NOTIFY_SOCKET the daemon tells nobody; WATCHDOG_USEC for
// another process (a parent's, inherited) is not this one's to ping.
func TestNewNotifier(t *testing.T) {
	for _, tc := range []struct {
		name           string
		socket, usec   string
		pid            string
		want           bool
		wantEvery      time.Duration
		wantLogMessage string
	}{
		{name: "not under systemd", usec: "1000000"},
		{name: "no watchdog", socket: "/run/systemd/notify", want: true},
		{name: "watchdog", socket: "/run/systemd/notify", usec: "30000000", want: true, wantEvery: 15 * time.Second},
		{name: "watchdog of this pid", socket: "@abstract", usec: "2000000", pid: strconv.Itoa(os.Getpid()), want: true, wantEvery: time.Second},
		{name: "watchdog of another pid", socket: "/run/systemd/notify", usec: "2000000", pid: "1", want: true},
		{name: "bad WATCHDOG_USEC", socket: "/run/systemd/notify", usec: "soon", want: true, wantLogMessage: "ignoring WATCHDOG_USEC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", tc.socket)
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			var logs bytes.Buffer
			n := newNotifier(slog.New(slog.NewTextHandler(&logs, nil)))
			if (n != nil) != tc.want {
				t.Fatalf("notifier %+v, want one: %v", n, tc.want)
			}
			if n != nil && n.every != tc.wantEvery {
				t.Errorf("pings every %v, want %v", n.every, tc.wantEvery)
			}
			if ticks, stop := n.watchdogTicks(); (ticks != nil) != (tc.wantEvery > 0) {
				t.Errorf("watchdog ticks %v, want some: %v", ticks, tc.wantEvery > 0)
			} else {
				stop()
			}
			if !strings.Contains(logs.String(), tc.wantLogMessage) {
				t.Errorf("log %q, want %q", logs.String(), tc.wantLogMessage)
			}
		})
	}
}
