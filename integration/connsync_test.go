package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issue #18: connections survive a director failover when the kernel's
// IPVS sync daemons follow the VRRP election ([vrrp_instance.lvs_sync]).

const (
	connSyncN     = 40                    // long-lived connections through the master
	connSyncBulk  = 64 << 10              // the bulk connection's line, exchanged back to back
	connSyncEvery = 75 * time.Millisecond // each exchanges a line this often
	connSyncPort  = "9000"
)

// echoIn serves, in namespace ns, a line echo on port connSyncPort: the
// real server of the long-lived connections. The listener is the test
// process's own, made in ns (a socket stays in the namespace it was made
// in), and closed at cleanup with every connection it accepted.
func echoIn(t testing.TB, ns string) {
	t.Helper()
	s := &echoServer{ns: ns}
	s.start(t)
	t.Cleanup(s.stop)
}

// echoServer is a line echo on connSyncPort in its namespace, which a
// test can stop (listener and every connection closed) and start again;
// with a name it greets each connection with it first.
type echoServer struct {
	name, ns string
	mu       sync.Mutex
	ln       net.Listener
	conns    []net.Conn
	wg       sync.WaitGroup
}

func (s *echoServer) start(t testing.TB) {
	t.Helper()
	var err error
	var ln net.Listener
	inNetns(t, s.ns, func() { ln, err = net.Listen("tcp", ":"+connSyncPort) })
	if err != nil {
		t.Fatalf("echo server in %s: %v", s.ns, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				if s.name != "" {
					if _, err := c.Write([]byte(s.name + "\n")); err != nil {
						return
					}
				}
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			})
		}
	})
}

// stop closes the listener and every connection and waits for their
// goroutines: the server is gone (its host's stack then refuses new
// connections and resets old ones).
func (s *echoServer) stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// heldConn is one long-lived client connection and what it saw.
type heldConn struct {
	c net.Conn
	// ok counts answered exchanges; okAfter those that started after
	// the mark (the old master gone). err is the error that ended it.
	ok, okAfter atomic.Int64
	err         atomic.Pointer[error]
	// stall is the longest time an exchange took.
	stall atomic.Int64
}

// holdConns opens n connections to addr from namespace ns and keeps each
// exchanging a numbered line, padded by pad bytes, every every (zero:
// back to back) until stop closes; an exchange may take up to 20 s (a
// failover stalls it: TCP retransmits), a read or write error or a wrong
// answer ends the connection. after tells a loop that the failover has
// begun.
func holdConns(t testing.TB, ns, addr string, n int, every time.Duration, pad int, stop <-chan struct{}, after *atomic.Bool) ([]*heldConn, func()) {
	t.Helper()
	var hs []*heldConn
	var dialErr error
	inNetns(t, ns, func() {
		for range n {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				dialErr = err
				return
			}
			hs = append(hs, &heldConn{c: c})
		}
	})
	if dialErr != nil {
		for _, h := range hs {
			h.c.Close()
		}
		t.Fatalf("dial %s from %s: %v", addr, ns, dialErr)
	}
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer h.c.Close()
			r := bufio.NewReader(h.c)
			var tick <-chan time.Time
			if every > 0 {
				tk := time.NewTicker(every)
				defer tk.Stop()
				tick = tk.C
			}
			padding := strings.Repeat("x", pad)
			for seq := 0; ; seq++ {
				if tick != nil {
					select {
					case <-stop:
						return
					case <-tick:
					}
				} else {
					select {
					case <-stop:
						return
					default:
					}
				}
				marked := after.Load()
				start := time.Now()
				h.c.SetDeadline(start.Add(20 * time.Second))
				msg := fmt.Sprintf("conn %d seq %d %s\n", i, seq, padding)
				_, err := h.c.Write([]byte(msg))
				var got string
				if err == nil {
					got, err = r.ReadString('\n')
				}
				if err == nil && got != msg {
					err = fmt.Errorf("answer %q to %q", got, msg)
				}
				if err != nil {
					select {
					case <-stop:
						return // closed by the test's end
					default:
					}
					h.err.Store(&err)
					return
				}
				h.ok.Add(1)
				if marked {
					h.okAfter.Add(1)
				}
				if d := int64(time.Since(start)); d > h.stall.Load() {
					h.stall.Store(d)
				}
			}
		}()
	}
	return hs, wg.Wait
}

// connSyncStatus is the part of `lvsha status -o json` about the sync
// daemons and the kernel's connections.
type connSyncStatus struct {
	ConnSync *struct {
		VRRPInstance string `json:"vrrp_instance"`
		Want         string `json:"want"`
		Error        string `json:"error"`
		Daemons      []struct {
			State     string `json:"state"`
			Interface string `json:"interface"`
			SyncID    int    `json:"sync_id"`
		} `json:"daemons"`
	} `json:"conn_sync"`
	KernelConns int `json:"kernel_connections"`
}

func (d *director) connSync() (connSyncStatus, error) {
	var st connSyncStatus
	out, err := exec.Command(os.Getenv(envLvsha), "status", "-s", d.sock, "-o", "json").Output()
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(out, &st)
	return st, err
}

// runsDaemon reports whether the director's status says the kernel runs
// the sync daemon of state alone.
func (d *director) runsDaemon(state string) bool {
	if d.kaConf != "" {
		out, err := exec.Command("ip", "netns", "exec", d.ns, "ipvsadm", "-L", "--daemon").Output()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return err == nil && len(lines) == 1 && strings.HasPrefix(lines[0], state+" sync daemon")
	}
	st, err := d.connSync()
	return err == nil && st.ConnSync != nil && st.ConnSync.Error == "" && len(st.ConnSync.Daemons) == 1 &&
		st.ConnSync.Daemons[0].State == state
}

// heldLoad is a client's load through a pair: held connections, and
// the mark that the failover has begun.
type heldLoad struct {
	hs      []*heldConn
	after   atomic.Bool
	stop    chan struct{}
	waits   []func()
	stopped bool
}

// startLoad opens n connections from client to vs, each exchanging a
// line every every, and with bulk one more that exchanges connSyncBulk
// bytes back to back (the bulk transfer, a stream through the director
// whose every segment needs the connection's entry).
func startLoad(t testing.TB, client, vs string, n int, every time.Duration, bulk bool) *heldLoad {
	t.Helper()
	l := &heldLoad{stop: make(chan struct{})}
	hs, wait := holdConns(t, client, vs, n, every, 0, l.stop, &l.after)
	l.hs, l.waits = hs, []func(){wait}
	t.Cleanup(l.finish)
	if bulk {
		b, wait := holdConns(t, client, vs, 1, 0, connSyncBulk, l.stop, &l.after)
		l.hs, l.waits = append(l.hs, b...), append(l.waits, wait)
	}
	return l
}

// knownIn counts the load's connections in the IPVS connection table of
// ns.
func (l *heldLoad) knownIn(t testing.TB, ns, vs string) int {
	c := vsClients(t, ns, vs)
	n := 0
	for _, h := range l.hs {
		if c[h.c.LocalAddr().String()] {
			n++
		}
	}
	return n
}

// finish ends the load and waits for its goroutines.
func (l *heldLoad) finish() {
	if !l.stopped {
		l.stopped = true
		close(l.stop)
		for _, w := range l.waits {
			w()
		}
	}
}

// exchanging waits until every connection has made k exchanges, none
// failed.
func (l *heldLoad) exchanging(t testing.TB, via string, k int64) {
	t.Helper()
	eventually(t, "every connection exchanging through "+via, 15*time.Second, func() bool {
		for _, h := range l.hs {
			if h.ok.Load() < k || h.err.Load() != nil {
				return false
			}
		}
		return true
	})
}

// settle waits up to limit until every connection that has not failed
// has made k exchanges since the mark.
func (l *heldLoad) settle(limit time.Duration, k int64) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		done := true
		for _, h := range l.hs {
			if h.err.Load() == nil && h.okAfter.Load() < k {
				done = false
			}
		}
		if done {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loadOutcome is what a load saw across a failover or failback.
type loadOutcome struct {
	conns  int
	failed []string // each failed connection and why
	resets int      // of them, those reset by a peer
	stall  time.Duration
}

// outcome ends the load and says which connections failed: with an
// error, or with fewer than k exchanges through via since the mark.
func (l *heldLoad) outcome(via string, k int64) loadOutcome {
	l.finish()
	o := loadOutcome{conns: len(l.hs)}
	for i, h := range l.hs {
		if p := h.err.Load(); p != nil {
			o.failed = append(o.failed, fmt.Sprintf("conn %d: %v", i, *p))
			if isReset(*p) {
				o.resets++
			}
		} else if n := h.okAfter.Load(); n < k {
			o.failed = append(o.failed, fmt.Sprintf("conn %d: %d exchanges through %s within 30 s, want %d", i, n, via, k))
		}
		o.stall = max(o.stall, time.Duration(h.stall.Load()))
	}
	return o
}

// checkStall asserts that no exchange across a failover that took
// tookOver (kill to the backup master, as polled) stalled longer than
// TCP needs to get through once the backup holds the VIP: a segment lost
// at the kill is sent again 0.2, 0.6, 1.4, 3 s... after it (the minimum
// RTO, doubling), so the first retry after the takeover comes within
// twice its time plus 0.2 s; 1 s more for an exchange that began before
// the kill and for the polling. A connection carried on but held far
// longer (a retransmission the new master did not forward) fails here.
func (o loadOutcome) checkStall(t testing.TB, what string, tookOver time.Duration) {
	t.Helper()
	if bound := 2*tookOver + 1200*time.Millisecond; o.stall > bound {
		t.Errorf("%s: an exchange stalled %v, over the takeover's %v and TCP's retransmission after it (bound %v)",
			what, o.stall.Round(time.Millisecond), tookOver.Round(time.Millisecond), bound)
	}
}

// check asserts a sync test's outcome: with connection sync none failed;
// without (the control) some were reset, or the test cannot tell.
func (o loadOutcome) check(t testing.TB, what string, withSync bool) {
	t.Helper()
	t.Logf("%s: %d of %d connections failed, %d reset; longest exchange %v", what, len(o.failed), o.conns, o.resets, o.stall.Round(time.Millisecond))
	if withSync {
		if len(o.failed) != 0 {
			t.Errorf("%s with connection sync: %d of %d connections failed:\n%s", what, len(o.failed), o.conns, strings.Join(o.failed, "\n"))
		}
	} else if o.resets == 0 {
		t.Errorf("%s, control: no connection was reset without connection sync; the test cannot tell sync from none:\n%s", what, strings.Join(o.failed, "\n"))
	}
}

// syncFailover is the failover of the connection sync tests: connSyncN
// connections and a bulk one through lb1, the master; once they flow,
// before (the test's look at the tables), then lb1's daemon SIGKILLed and
// its links taken down, so nothing of lb1 forwards or answers any more.
// It waits for lb2 to be master of every instance and for 10 exchanges
// of every connection through it, and says how long the takeover took.
func syncFailover(t testing.TB, lb1, lb2 *director, client, vs string, links []string, before func()) (loadOutcome, time.Duration) {
	t.Helper()
	l := startLoad(t, client, vs, connSyncN, connSyncEvery, true)
	l.exchanging(t, "lb1", 5)
	before()
	killed := time.Now()
	lb1.kill()
	for _, ln := range links {
		sh(t, "ip", "-n", lb1.ns, "link", "set", ln, "down")
	}
	// Exchanges started from here can only be answered through lb2.
	l.after.Store(true)
	eventually(t, "lb2 master of every instance", 20*time.Second, func() bool { return masterOfAll(lb2) })
	tookOver := time.Since(killed)
	// Long enough for every connection's retransmission to reach lb2
	// and for a few exchanges through it.
	l.settle(30*time.Second, 10)
	return l.outcome("lb2", 10), tookOver
}

// TestConnSyncFailover holds connSyncN connections and a bulk transfer
// through the master of a DR pair, each exchanging a line every
// connSyncEvery; the master's daemon is SIGKILLed and its link taken
// down. With lvs_sync the backup has learnt every connection from the
// master's sync daemon (its `ipvsadm -Lnc` shows them before the kill)
// and carries every one on: zero errors. The control, without lvs_sync,
// proves the test can fail: the new master knows none of them, its own
// stack answers their next segment with a reset.
func TestConnSyncFailover(t *testing.T) {
	lvshaBin(t)
	for _, tt := range []struct {
		name string
		sync bool
	}{{"sync", true}, {"control", false}} {
		t.Run(tt.name, func(t *testing.T) { testConnSyncFailover(t, tt.sync) })
	}
}

// connSyncVS is the DR pairs' virtual server, 10.79.0.100:9000 on the
// real servers 10.79.0.4 and .5.
const connSyncVS = `
[[virtual_server]]
name = "echo"
address = "10.79.0.100:` + connSyncPort + `"
scheduler = "rr"
forwarding = "dr"
  [virtual_server.check]
  type = "tcp"
  interval = "500ms"
  timeout = "400ms"
  rise = 1
  fall = 2
  [[virtual_server.real_server]]
  address = "10.79.0.4"
  [[virtual_server.real_server]]
  address = "10.79.0.5"
`

func testConnSyncFailover(t *testing.T, withSync bool) {
	const vip = "10.79.0.100"
	vs := vip + ":" + connSyncPort
	ds, hosts, _ := drPair(t, vip, connSyncPort, func(ns string, _ int) { echoIn(t, ns) }, func(d *director) string {
		if !withSync {
			return ""
		}
		// The sync messages share the VRRP LAN here; sync_id is the
		// router_id (50).
		return fmt.Sprintf("[vrrp_instance.lvs_sync]\ninterface = %q\n", d.iface)
	}, connSyncVS)
	lb1, lb2 := ds[0], ds[1]
	client := hosts[2]
	if withSync {
		eventually(t, "lb1 runs the master sync daemon alone, lb2 the backup", 10*time.Second, func() bool {
			return lb1.runsDaemon("master") && lb2.runsDaemon("backup")
		})
		t.Logf("sync daemons: lb1 %q, lb2 %q", ipvsadmDaemons(t, lb1.ns), ipvsadmDaemons(t, lb2.ns))
	} else if st, err := lb1.connSync(); err != nil || st.ConnSync != nil {
		t.Fatalf("control: lb1 drives sync daemons without lvs_sync: %+v %v", st.ConnSync, err)
	}
	o, tookOver := syncFailover(t, lb1, lb2, client, vs, []string{lb1.iface}, func() {
		syncedBefore(t, lb1, lb2, vs, withSync)
		if withSync {
			st, err := lb2.connSync()
			if err != nil || st.KernelConns < connSyncN+1 {
				t.Errorf("lb2's status: kernel_connections %d (%v), want at least %d", st.KernelConns, err, connSyncN+1)
			}
		}
	})
	t.Logf("lb2 master %v after the kill", tookOver.Round(time.Millisecond))
	if withSync && !lb2.runsDaemon("master") {
		t.Errorf("lb2 does not run the master sync daemon alone after the takeover: %q", ipvsadmDaemons(t, lb2.ns))
	}
	o.check(t, "DR failover", withSync)
	if withSync {
		o.checkStall(t, "DR failover", tookOver)
	}
}

// syncedBefore checks, before the kill, that lb1's table has every held
// connection and lb2's has them all with sync, none without.
func syncedBefore(t testing.TB, lb1, lb2 *director, vs string, withSync bool) {
	t.Helper()
	const n = connSyncN + 1
	if c1 := vsClients(t, lb1.ns, vs); len(c1) < n {
		t.Fatalf("lb1's connection table has %d entries for %s, want the client's %d", len(c1), vs, n)
	}
	if !withSync {
		if c2 := vsClients(t, lb2.ns, vs); len(c2) != 0 {
			t.Fatalf("control: lb2 has %d connections of %s without sync", len(c2), vs)
		}
		return
	}
	// The master's daemon sends a connection once it has seen 3 packets
	// of it (sync_threshold), so all are there within seconds.
	if got := waitSynced(t, lb2, vs, n); got < n {
		t.Fatalf("lb2's ipvsadm -Lnc shows %d of the %d connections of lb1 after 20 s\n%s", got, n, syncDiag(t, lb1, lb2))
	}
}

// waitSynced waits up to 20 s for n connections of vs in d's table and
// says how many there are.
func waitSynced(t testing.TB, d *director, vs string, n int) int {
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := len(vsClients(t, d.ns, vs))
		if got >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncDiag is what the kernels of a pair say about connection sync: each
// one's daemons, sync sysctls and the sync link's multicast groups and
// counters, for a failure's message.
func syncDiag(t testing.TB, ds ...*director) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%s: daemons %q\n", d.name, ipvsadmDaemons(t, d.ns))
		out, _ := exec.Command("ip", "netns", "exec", d.ns, "sh", "-c",
			"sysctl net.ipv4.vs.sync_version net.ipv4.vs.sync_threshold net.ipv4.vs.sync_refresh_period; ip maddr; ip -s link; cat /proc/net/snmp | grep -A1 Udp:").CombinedOutput()
		b.Write(out)
	}
	return b.String()
}

// isReset reports whether err is the peer's reset.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "connection reset")
}
