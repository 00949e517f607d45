package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvsha/lvsha/bfd"
	"github.com/lvsha/lvsha/bfd/runner"
)

// bfdAcceptFlood sends, rate a second for d, to dst's port 3784 the
// packet a peer opens a session with (State Down, Your Discriminator
// zero, TTL 255: well-formed, from the link), forged in turn from count
// addresses from first on, and prints how many it sent.
func bfdAcceptFlood(dst, first, count, rate, d string) int {
	da, err := netip.ParseAddr(dst)
	src, err1 := netip.ParseAddr(first)
	k, err2 := strconv.Atoi(count)
	n, err3 := strconv.Atoi(rate)
	dur, err4 := time.ParseDuration(d)
	if err != nil || err1 != nil || err2 != nil || err3 != nil || err4 != nil || k < 1 {
		fmt.Fprintln(os.Stderr, "bfdacceptflood: bad LVSHA_DST, LVSHA_SRC, LVSHA_COUNT, LVSHA_RATE or LVSHA_DURATION")
		return 2
	}
	var pkts []rawUDP
	for i := range k {
		p := (&bfd.Packet{State: bfd.Down, DetectMult: 3, MyDiscr: uint32(i + 1),
			DesiredMinTx: time.Second, RequiredMinRx: time.Second}).Marshal()
		pkts = append(pkts, bfdUDP(src, da, 255, p))
		src = src.Next()
	}
	sent, err := rawFlood(pkts, n, dur)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bfdacceptflood:", err)
		return 1
	}
	fmt.Println(sent)
	return 0
}

// bfdAcceptReport is what TestBFDAcceptFlood reads of `lvsha status -o
// json`: every session, the answered ones too.
type bfdAcceptReport struct {
	VRRP  []bfdInstStatus    `json:"vrrp_instances"`
	BFD   []bfdSessionStatus `json:"bfd_sessions"`
	Links []struct {
		Dropped map[string]uint64 `json:"dropped"`
	} `json:"bfd_links"`
}

func (d *scaleDirector) bfdAcceptStatus(t testing.TB) bfdAcceptReport {
	t.Helper()
	var r bfdAcceptReport
	if err := statusJSON(d.sock, &r); err != nil || len(r.Links) != 1 || len(r.VRRP) != 1 {
		t.Fatalf("%s: status %+v: %v", d.name, r, err)
	}
	return r
}

// session is the report's session with peer.
func (r bfdAcceptReport) session(peer string) (bfdSessionStatus, bool) {
	for _, s := range r.BFD {
		if s.Peer == peer {
			return s, true
		}
	}
	return bfdSessionStatus{}, false
}

// TestBFDAcceptFlood: a third host on the LAN of an lvsha pair running
// BFD fast takeover forges, 2,000 a second for 5 s, the packet a backup
// opens its session with, from 150 addresses on the LAN that nobody has,
// at the master, which answers its backups' sessions (bfd/runner,
// Config.Accept) without knowing them. The master answers at most
// runner.MaxAccepted sessions at once (lb2's among them: sampled through
// the flood from its status), counts the packets of the rest as
// accept_limit and drops nothing else; once the flood stops, the forged
// sessions, never Up, are let go, leaving lb2's; lb2's session stays Up
// on both sides with no Down, and neither instance changes state. The
// master's CPU is logged.
func TestBFDAcceptFlood(t *testing.T) {
	hosts, ifs := lan(t, 3)
	lb1 := newScaleDirector(t, "lb1", hosts[0], ifs[0:1])
	lb2 := newScaleDirector(t, "lb2", hosts[1], ifs[1:2])
	lb1.bfd, lb2.bfd = true, true
	insts := scaleInstances(1, 1)
	lb1.startScale(t, "lvsha", 150, insts)
	lb2.startScale(t, "lvsha", 100, insts)
	settleScale(t, "lb1 master, lb2 backup", lb1, lb2, insts, 30*time.Second)
	const lb1Addr, lb2Addr = "10.79.0.1", "10.79.0.2"
	// 10.79.0.100-249: on the LAN (10.79.0.0/24), nobody's.
	const forgedFirst, forgedCount = "10.79.0.100", 150
	eventually(t, "lb2's BFD session with lb1 Up, watching it", 10*time.Second, func() bool {
		s, ok := lb2.bfdStatus(t).session(lb1Addr)
		return ok && s.State == "Up" && s.Watching
	})
	eventually(t, "lb1 answering lb2's session", 5*time.Second, func() bool {
		s, ok := lb1.bfdStatus(t).session(lb2Addr)
		return ok && s.State == "Up"
	})
	quiet1, quiet2 := lb1.bfdAcceptStatus(t), lb2.bfdAcceptStatus(t)
	const window = 5 * time.Second
	transitions := func() [2]int {
		return [2]int{lb1.bfdAcceptStatus(t).VRRP[0].Transitions, lb2.bfdAcceptStatus(t).VRRP[0].Transitions}
	}
	pid := lb1.cmd.Process.Pid
	quiet := quietWindow(t, pid, window, quiet1.VRRP[0].Transitions, quiet2.VRRP[0].Transitions, transitions)
	before1, before2 := lb1.bfdAcceptStatus(t), lb2.bfdAcceptStatus(t)

	// The master's sessions, sampled while the flood runs: the most
	// sessions at once, and the most of them forged.
	var (
		mu                  sync.Mutex
		mostAll, mostForged int
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var r bfdAcceptReport
			if err := statusJSON(lb1.sock, &r); err == nil {
				forged := 0
				for _, s := range r.BFD {
					if s.Peer != lb2Addr {
						forged++
					}
				}
				mu.Lock()
				mostAll, mostForged = max(mostAll, len(r.BFD)), max(mostForged, forged)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	rb0 := udpRcvbufErrors(t, lb1.ns)
	fl := exec.Command("ip", "netns", "exec", hosts[2], self(t))
	fl.Env = append(os.Environ(), envRole+"=bfdacceptflood", "LVSHA_DST="+lb1Addr, "LVSHA_SRC="+forgedFirst,
		"LVSHA_COUNT="+strconv.Itoa(forgedCount), "LVSHA_RATE=2000", "LVSHA_DURATION="+window.String())
	fl.Stderr = os.Stderr
	b0 := pidCPU(t, pid)
	out, err := fl.Output()
	busy := pidCPU(t, pid) - b0
	close(stop)
	<-sampled
	if err != nil {
		t.Fatalf("bfd accept flood: %v", err)
	}
	sent, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if sent < 9000 {
		t.Fatalf("the flood sent %d packets in %v, want 10,000 (at least 9,000): host too loaded", sent, window)
	}
	time.Sleep(500 * time.Millisecond) // the last packets counted
	rcvbuf := udpRcvbufErrors(t, lb1.ns) - rb0
	after1, after2 := lb1.bfdAcceptStatus(t), lb2.bfdAcceptStatus(t)

	mu.Lock()
	all, forged := mostAll, mostForged
	mu.Unlock()
	t.Logf("lb1's sessions through the flood: at most %d at once, %d of them forged", all, forged)
	if forged == 0 || all > runner.MaxAccepted {
		t.Errorf("lb1 answered up to %d sessions (%d forged), want 1 to %d forged and at most %d in all", all, forged, runner.MaxAccepted-1, runner.MaxAccepted)
	}
	got := map[string]uint64{}
	for r, n := range after1.Links[0].Dropped {
		if d := n - before1.Links[0].Dropped[r]; d > 0 {
			got[r] = d
		}
	}
	// Each source sent at most ceil(sent/count) packets; those of the
	// MaxAccepted-1 sources answered (lb2 has the last place) are
	// handled, every other one is counted, unless the kernel dropped it
	// for a full socket buffer.
	perSource := (sent + forgedCount - 1) / forgedCount
	least := sent - (runner.MaxAccepted-1)*perSource - int(rcvbuf)
	t.Logf("lb1 dropped by reason: %v of %d sent (want accept_limit at least %d; the kernel dropped %d for a full socket buffer)", got, sent, least, rcvbuf)
	if n := got["accept_limit"]; n == 0 || int(n) < least || int(n) > sent || len(got) != 1 {
		t.Errorf("lb1 dropped %v, want accept_limit only, %d to %d", got, max(least, 1), sent)
	}
	for r, n := range after2.Links[0].Dropped {
		if n != before2.Links[0].Dropped[r] {
			t.Errorf("lb2 counted %d packets dropped for %q during a flood at lb1", n-before2.Links[0].Dropped[r], r)
		}
	}
	for _, d := range []struct {
		name          string
		before, after bfdAcceptReport
		peer, state   string
	}{{"lb1", before1, after1, lb2Addr, "MASTER"}, {"lb2", before2, after2, lb1Addr, "BACKUP"}} {
		s, _ := d.after.session(d.peer)
		b, _ := d.before.session(d.peer)
		if s.State != "Up" || s.Downs != b.Downs {
			t.Errorf("%s's BFD session with %s after the flood: %q with %d downs (was %d); want Up, unchanged", d.name, d.peer, s.State, s.Downs, b.Downs)
		}
		v, bv := d.after.VRRP[0], d.before.VRRP[0]
		if v.State != d.state || v.Transitions != bv.Transitions || v.BFDTakeovers != bv.BFDTakeovers {
			t.Errorf("%s's instance after the flood: %s, %d transitions, %d BFD takeovers (was %d, %d); want %s, unchanged",
				d.name, v.State, v.Transitions, v.BFDTakeovers, bv.Transitions, bv.BFDTakeovers, d.state)
		}
	}
	// Never Up, the forged sessions go acceptIdle (5 s) after their last
	// packet; generous, for a loaded host.
	eventually(t, "lb1's forged sessions let go, lb2's left", 30*time.Second, func() bool {
		r := lb1.bfdAcceptStatus(t)
		s, ok := r.session(lb2Addr)
		return len(r.BFD) == 1 && ok && s.State == "Up"
	})
	if ok, seen := scaleSettled(t, lb1, lb2, insts); !ok {
		t.Errorf("after the flood: %s", seen)
	}
	perSec := func(d time.Duration) float64 { return float64(d.Milliseconds()) / window.Seconds() }
	t.Logf("lb1 (master) CPU from /proc/PID/stat: %.0f ms/s idle (BFD at 10 ms), %.0f ms/s under %d forged session openings/s",
		perSec(quiet), perSec(busy), sent/int(window.Seconds()))
}
