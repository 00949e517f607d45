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
	connSyncN     = 20                    // long-lived connections through the master
	connSyncEvery = 75 * time.Millisecond // each exchanges a line this often
	connSyncPort  = "9000"
)

// echoIn serves, in namespace ns, a line echo on port connSyncPort: the
// real server of the long-lived connections. The listener is the test
// process's own, made in ns (a socket stays in the namespace it was made
// in), and closed at cleanup with every connection it accepted.
func echoIn(t *testing.T, ns string) {
	t.Helper()
	var ln net.Listener
	var err error
	inNetns(t, ns, func() { ln, err = net.Listen("tcp", ":"+connSyncPort) })
	if err != nil {
		t.Fatalf("echo server in %s: %v", ns, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
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
			}()
		}
	}()
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
// exchanging a numbered line every every until stop closes; an
// exchange may take up to 20 s (a failover stalls it: TCP retransmits),
// a read or write error or a wrong answer ends the connection. after
// tells a loop that the failover has begun.
func holdConns(t *testing.T, ns, addr string, n int, every time.Duration, stop <-chan struct{}, after *atomic.Bool) ([]*heldConn, func()) {
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
			tick := time.NewTicker(every)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				marked := after.Load()
				start := time.Now()
				h.c.SetDeadline(start.Add(20 * time.Second))
				msg := fmt.Sprintf("conn %d seq %d\n", i, seq)
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
	st, err := d.connSync()
	return err == nil && st.ConnSync != nil && st.ConnSync.Error == "" && len(st.ConnSync.Daemons) == 1 &&
		st.ConnSync.Daemons[0].State == state
}

// TestConnSyncFailover holds connSyncN connections through the master
// of a DR pair, each exchanging a line every connSyncEvery; the master's
// daemon is SIGKILLed and its link taken down. With lvs_sync the backup
// has learnt every connection from the master's sync daemon (its
// `ipvsadm -Lnc` shows them before the kill) and carries every one on:
// zero errors. The control, without lvs_sync, proves the test can fail:
// the new master knows none of them, its own stack answers their next
// segment with a reset.
func TestConnSyncFailover(t *testing.T) {
	lvshaBin(t)
	for _, tt := range []struct {
		name string
		sync bool
	}{{"sync", true}, {"control", false}} {
		t.Run(tt.name, func(t *testing.T) { testConnSyncFailover(t, tt.sync) })
	}
}

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
	}, `
[[virtual_server]]
name = "echo"
address = "`+vs+`"
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
`)
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

	stop := make(chan struct{})
	var after atomic.Bool
	hs, wait := holdConns(t, client, vs, connSyncN, connSyncEvery, stop, &after)
	stopped := false
	finish := func() {
		if !stopped {
			stopped = true
			close(stop)
			wait()
		}
	}
	defer finish()
	eventually(t, "every connection exchanging through lb1", 15*time.Second, func() bool {
		for _, h := range hs {
			if h.ok.Load() < 5 || h.err.Load() != nil {
				return false
			}
		}
		return true
	})
	if c1 := vsClients(t, lb1.ns, vs); len(c1) < connSyncN {
		t.Fatalf("lb1's connection table has %d entries for %s, want the client's %d", len(c1), vs, connSyncN)
	}
	if withSync {
		// The master's daemon sends a connection once it has seen 3
		// packets of it (sync_threshold), so all are there within seconds.
		eventually(t, fmt.Sprintf("lb2's ipvsadm -Lnc shows the %d connections synced from lb1", connSyncN), 20*time.Second, func() bool {
			return len(vsClients(t, lb2.ns, vs)) >= connSyncN
		})
		t.Logf("lb2's ipvsadm -Lnc before the kill: %d entries of %s", len(vsClients(t, lb2.ns, vs)), vs)
		st, err := lb2.connSync()
		if err != nil || st.KernelConns < connSyncN {
			t.Errorf("lb2's status: kernel_connections %d (%v), want at least %d", st.KernelConns, err, connSyncN)
		}
	} else if c2 := vsClients(t, lb2.ns, vs); len(c2) != 0 {
		t.Fatalf("control: lb2 has %d connections of %s without sync", len(c2), vs)
	}

	// The master dies, and its link with it: nothing of lb1 forwards or
	// answers any more.
	killed := time.Now()
	lb1.kill()
	sh(t, "ip", "-n", lb1.ns, "link", "set", lb1.iface, "down")
	// Exchanges started from here can only be answered through lb2.
	after.Store(true)
	eventually(t, "lb2 master", 20*time.Second, func() bool { return lb2.state() == "MASTER" })
	tookOver := time.Since(killed)
	if withSync {
		eventually(t, "lb2 switched to the master sync daemon", 10*time.Second, func() bool { return lb2.runsDaemon("master") })
	}
	// Long enough for every connection's retransmission to reach lb2
	// and for a few exchanges through it.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for _, h := range hs {
			if h.err.Load() == nil && h.okAfter.Load() < 10 {
				done = false
			}
		}
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	finish()

	var failed []string
	var maxStall time.Duration
	for i, h := range hs {
		if p := h.err.Load(); p != nil {
			failed = append(failed, fmt.Sprintf("conn %d: %v", i, *p))
		} else if n := h.okAfter.Load(); n < 10 {
			failed = append(failed, fmt.Sprintf("conn %d: %d exchanges through lb2 within 30 s, want 10", i, n))
		}
		maxStall = max(maxStall, time.Duration(h.stall.Load()))
	}
	t.Logf("lb2 master %v after the kill; %d of %d connections failed; longest exchange %v",
		tookOver.Round(time.Millisecond), len(failed), len(hs), maxStall.Round(time.Millisecond))
	if withSync {
		if len(failed) != 0 {
			t.Errorf("with lvs_sync, %d of %d connections failed over lb2:\n%s", len(failed), len(hs), strings.Join(failed, "\n"))
		}
		return
	}
	resets := 0
	for _, h := range hs {
		if p := h.err.Load(); p != nil && isReset(*p) {
			resets++
		}
	}
	t.Logf("control: %d of %d connections reset", resets, len(hs))
	if resets == 0 {
		t.Errorf("control: no connection was reset without lvs_sync; the test cannot tell sync from none:\n%s", strings.Join(failed, "\n"))
	}
}

// isReset reports whether err is the peer's reset.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "connection reset")
}
