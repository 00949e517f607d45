package integration

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/lvsha/lvsha/bfd"
)

// bfdFloodKind is one kind of packet the BFD flood sends, the address it
// forges as its source, and the reason lvsha must drop it for.
type bfdFloodKind struct {
	name   string
	reason string
	// notPeer: from an address that is no peer's; otherwise from the
	// backup's peer itself (its master), forged.
	notPeer bool
	// ttl other than 255: sent as if routed in from off the link.
	ttl int
	// mangle spoils the encoding of the base packet.
	mangle func(b []byte) []byte
}

// bfdFloodKinds are the invalid packets of TestBFDFlood, each as
// dangerous as it can be made: the base packet says State Down and names
// the backup's real session (Your Discriminator), from the master's
// address, so a check that let it through would bring the session Down
// and, as the session would have failed by the peer's word, the backup
// would count a Down (never a takeover: the diag is the peer's). Only the
// one check each kind fails stands between it and the session.
var bfdFloodKinds = []bfdFloodKind{
	{name: "ttl", reason: "ttl", ttl: 254},
	{name: "short", reason: "short", mangle: func(b []byte) []byte { return b[:10] }},
	{name: "version", reason: "version", mangle: func(b []byte) []byte { b[0] = 2<<5 | b[0]&0x1f; return b }},
	{name: "length", reason: "length", mangle: func(b []byte) []byte { b[3] = 20; return b }},
	{name: "long", reason: "length", mangle: func(b []byte) []byte { b[3] = 48; return b }},
	{name: "detect_mult", reason: "detect_mult", mangle: func(b []byte) []byte { b[2] = 0; return b }},
	{name: "multipoint", reason: "multipoint", mangle: func(b []byte) []byte { b[1] |= 1; return b }},
	{name: "my_discriminator", reason: "my_discriminator", mangle: func(b []byte) []byte { clear(b[4:8]); return b }},
	// Up with Your Discriminator zero.
	{name: "your_discriminator", reason: "your_discriminator", mangle: func(b []byte) []byte {
		b[1] = byte(bfd.Up)<<6 | b[1]&0x3f
		clear(b[8:12])
		return b
	}},
	// The A bit, no authentication section (or one lvsha would refuse).
	{name: "authentication", reason: "authentication", mangle: func(b []byte) []byte {
		b[1] |= 1 << 2
		b[3] = 24 + 2
		return append(b, 1, 2)
	}},
	{name: "no_session", reason: "no_session", mangle: func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[8:], ^binary.BigEndian.Uint32(b[8:]))
		return b
	}},
	// Well-formed, TTL 255, naming the real session, from an address on
	// the link that is no peer.
	{name: "not_peer", reason: "no_session", notPeer: true},
}

// bfdFloodNotPeer is the forged source of not_peer, on the LAN and
// nobody's.
const bfdFloodNotPeer = "10.79.0.77"

// bfdFlood sends bfdFloodKinds in turn to dst's port 3784, rate a second
// for d (rawFlood), and prints how many it sent. The base packet names
// discr (the backup's discriminator of its session with peer).
func bfdFlood(peer, dst, discr, rate, d string) int {
	pa, err := netip.ParseAddr(peer)
	da, err1 := netip.ParseAddr(dst)
	yd, err2 := strconv.ParseUint(discr, 10, 32)
	n, err3 := strconv.Atoi(rate)
	dur, err4 := time.ParseDuration(d)
	if err != nil || err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		fmt.Fprintln(os.Stderr, "bfdflood: bad LVSHA_PEER, LVSHA_DST, LVSHA_DISCR, LVSHA_RATE or LVSHA_DURATION")
		return 2
	}
	base := (&bfd.Packet{State: bfd.Down, DetectMult: 3, MyDiscr: 0x0badf00d, YourDiscr: uint32(yd),
		DesiredMinTx: time.Second, RequiredMinRx: time.Second}).Marshal()
	var pkts []rawUDP
	for _, k := range bfdFloodKinds {
		p := append([]byte(nil), base...)
		if k.mangle != nil {
			p = k.mangle(p)
		}
		src := pa
		if k.notPeer {
			src = netip.MustParseAddr(bfdFloodNotPeer)
		}
		pkts = append(pkts, bfdUDP(src, da, cmp.Or(k.ttl, 255), p))
	}
	sent, err := rawFlood(pkts, n, dur)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bfdflood:", err)
		return 1
	}
	fmt.Println(sent)
	return 0
}

// rawUDP is one forged datagram: the IP header the flood writes itself
// and the UDP header and payload.
type rawUDP struct {
	h *ipv4.Header
	b []byte
}

// bfdUDP is payload from src to dst's BFD control port, with ttl.
func bfdUDP(src, dst netip.Addr, ttl int, payload []byte) rawUDP {
	// UDP from a port of RFC 5881's range, checksum 0 (none, IPv4).
	udp := binary.BigEndian.AppendUint16(nil, 49999)
	udp = binary.BigEndian.AppendUint16(udp, 3784)
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(payload)))
	udp = append(binary.BigEndian.AppendUint16(udp, 0), payload...)
	h := &ipv4.Header{Version: 4, Len: ipv4.HeaderLen, TotalLen: ipv4.HeaderLen + len(udp), TTL: ttl, Protocol: 17,
		Src: src.AsSlice(), Dst: dst.AsSlice()}
	return rawUDP{h, udp}
}

// rawFlood sends pkts in turn, rate a second for d, through a raw socket
// that takes each IP header as written (the forged source, the TTL), and
// returns how many it sent: every millisecond, as many as keep the rate
// since the start, bounded in count (rate x d) and time (d).
func rawFlood(pkts []rawUDP, rate int, d time.Duration) (int, error) {
	c, err := net.ListenPacket("ip4:17", "0.0.0.0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	rc, err := ipv4.NewRawConn(c)
	if err != nil {
		return 0, err
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	total := int(float64(rate) * d.Seconds())
	sent := 0
	for sent < total && time.Since(start) < d {
		<-tick.C
		due := min(total, int(float64(rate)*time.Since(start).Seconds()))
		for sent < due {
			p := pkts[sent%len(pkts)]
			if err := rc.WriteTo(p.h, p.b, nil); err != nil {
				return sent, err
			}
			sent++
		}
	}
	return sent, nil
}

// quietWindow is the CPU pid uses over window before a flood, the pair
// left alone. A VRRP change of either director meanwhile (transitions
// against was1 and was2) fails the test as the host's, not the flood's:
// a host that stalls the pair by itself.
func quietWindow(t *testing.T, pid int, window time.Duration, was1, was2 int, transitions func() [2]int) time.Duration {
	t.Helper()
	c0 := pidCPU(t, pid)
	time.Sleep(window)
	quiet := pidCPU(t, pid) - c0
	now := transitions()
	for i, was := range []int{was1, was2} {
		if now[i] != was {
			t.Errorf("lb%d changed VRRP state %d times before the flood, in the quiet window: the host stalls the pair by itself", i+1, now[i]-was)
		}
	}
	return quiet
}

// bfdFloodReport is what TestBFDFlood reads of `lvsha status -o json`.
type bfdFloodReport struct {
	VRRP []bfdInstStatus `json:"vrrp_instances"`
	BFD  []struct {
		bfdSessionStatus
		LocalDiscr uint32 `json:"local_discriminator"`
	} `json:"bfd_sessions"`
	Links []struct {
		Interface string            `json:"interface"`
		Local     string            `json:"local"`
		Dropped   map[string]uint64 `json:"dropped"`
	} `json:"bfd_links"`
}

func (d *scaleDirector) bfdFloodStatus(t *testing.T) bfdFloodReport {
	t.Helper()
	var r bfdFloodReport
	if err := statusJSON(d.sock, &r); err != nil || len(r.BFD) != 1 || len(r.Links) != 1 || len(r.VRRP) != 1 {
		t.Fatalf("%s: status %+v: %v", d.name, r, err)
	}
	return r
}

// pidCPU is the CPU time pid has used, user and system, from
// /proc/PID/stat (clock ticks of 10 ms).
func pidCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("cpu of %d: %v", pid, err)
	}
	// Fields after the command name, which may hold spaces: utime and
	// stime are the 14th and 15th of the line, the 12th and 13th here.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// udpRcvbufErrors is the namespace's count of UDP datagrams the kernel
// dropped for a full socket buffer (/proc/net/snmp, Udp RcvbufErrors).
func udpRcvbufErrors(t testing.TB, ns string) uint64 {
	t.Helper()
	lines := strings.Split(inNS(t, ns, "cat", "/proc/net/snmp"), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "Udp: ") || !strings.HasPrefix(lines[i+1], "Udp: ") {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j, n := range names {
			if n == "RcvbufErrors" && j < len(vals) {
				v, _ := strconv.ParseUint(vals[j], 10, 64)
				return v
			}
		}
	}
	t.Fatalf("%s: no Udp RcvbufErrors in /proc/net/snmp", ns)
	return 0
}

// TestBFDFlood is issue #20's hostile packets for BFD: a third host on
// the LAN of an lvsha pair running BFD fast takeover sends 10,000
// invalid control packets a second for 5 s at the backup's port 3784
// (bfdFloodKinds: each forged from the master's address, naming the
// backup's live session and saying Down, and each failing one check:
// TTL, length, version, Detect Mult, the M and A bits, the
// discriminators; plus well-formed ones from an address that is no
// peer's). The backup counts every one under its reason in
// lvsha_bfd_dropped_total (status bfd_links), its session with the
// master stays Up with no Down on either side, neither director's VRRP
// instance changes state, and the backup's CPU over the flood is logged.
//
// Precondition: the flood must send at least 90% of its 50,000 packets in
// the window; on a host too loaded for that the test fails saying so
// rather than assert on a weaker flood.
func TestBFDFlood(t *testing.T) {
	hosts, ifs := lan(t, 3)
	lb1 := newScaleDirector(t, "lb1", hosts[0], ifs[0:1])
	lb2 := newScaleDirector(t, "lb2", hosts[1], ifs[1:2])
	lb1.bfd, lb2.bfd = true, true
	insts := scaleInstances(1, 1)
	lb1.startScale(t, "lvsha", 150, insts)
	lb2.startScale(t, "lvsha", 100, insts)
	settleScale(t, "lb1 master, lb2 backup", lb1, lb2, insts, 30*time.Second)
	const lb1Addr, lb2Addr = "10.79.0.1", "10.79.0.2"
	eventually(t, "lb2's BFD session with lb1 Up, watching it", 10*time.Second, func() bool {
		s, ok := lb2.bfdStatus(t).session(lb1Addr)
		return ok && s.State == "Up" && s.Watching
	})
	eventually(t, "lb1 answering lb2's session", 5*time.Second, func() bool {
		s, ok := lb1.bfdStatus(t).session(lb2Addr)
		return ok && s.State == "Up"
	})
	quiet1, quiet2 := lb1.bfdFloodStatus(t), lb2.bfdFloodStatus(t)
	discr := quiet2.BFD[0].LocalDiscr
	if discr == 0 {
		t.Fatalf("lb2's session has no local discriminator in status: %+v", quiet2.BFD)
	}

	const window = 5 * time.Second
	transitions := func() [2]int {
		return [2]int{lb1.bfdFloodStatus(t).VRRP[0].Transitions, lb2.bfdFloodStatus(t).VRRP[0].Transitions}
	}
	pid := lb2.cmd.Process.Pid
	quiet := quietWindow(t, pid, window, quiet1.VRRP[0].Transitions, quiet2.VRRP[0].Transitions, transitions)
	// The baseline is taken after the quiet window.
	before1, before2 := lb1.bfdFloodStatus(t), lb2.bfdFloodStatus(t)

	rb0 := udpRcvbufErrors(t, lb2.ns)
	fl := exec.Command("ip", "netns", "exec", hosts[2], self(t))
	fl.Env = append(os.Environ(), envRole+"=bfdflood", "LVSHA_PEER="+lb1Addr, "LVSHA_DST="+lb2Addr,
		"LVSHA_DISCR="+strconv.FormatUint(uint64(discr), 10), "LVSHA_RATE=10000", "LVSHA_DURATION="+window.String())
	fl.Stderr = os.Stderr
	b0 := pidCPU(t, pid)
	out, err := fl.Output()
	busy := pidCPU(t, pid) - b0
	if err != nil {
		t.Fatalf("bfd flood: %v", err)
	}
	sent, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if sent < 45000 {
		t.Fatalf("the flood sent %d packets in %v, want 50,000 (at least 45,000): host too loaded", sent, window)
	}
	time.Sleep(500 * time.Millisecond) // the last packets counted
	rcvbuf := udpRcvbufErrors(t, lb2.ns) - rb0

	// Each kind went out sent/len times, the first sent%len once more.
	want := map[string]uint64{}
	for i, k := range bfdFloodKinds {
		n := uint64(sent / len(bfdFloodKinds))
		if i < sent%len(bfdFloodKinds) {
			n++
		}
		want[k.reason] += n
	}
	after1, after2 := lb1.bfdFloodStatus(t), lb2.bfdFloodStatus(t)
	got := map[string]uint64{}
	var counted uint64
	for r, n := range after2.Links[0].Dropped {
		if d := n - before2.Links[0].Dropped[r]; d > 0 {
			got[r] = d
			counted += d
		}
	}
	t.Logf("lb2 dropped by reason: %v (%d of %d sent; the kernel dropped %d UDP datagrams for a full socket buffer)", got, counted, sent, rcvbuf)
	// Every packet that reached the socket is counted under its reason:
	// exactly, when the kernel dropped none for a full buffer; else each
	// reason's count is at most what was sent of it and the missing ones
	// are the kernel's.
	for r, w := range want {
		if rcvbuf == 0 && got[r] != w || got[r] > w || got[r] == 0 {
			t.Errorf("lb2 counted %d packets dropped for %q, want %d", got[r], r, w)
		}
	}
	for r, n := range got {
		if _, ok := want[r]; !ok {
			t.Errorf("lb2 counted %d packets dropped for %q, which the flood sent none of", n, r)
		}
	}
	if rcvbuf > 0 && counted+rcvbuf < uint64(sent) {
		t.Errorf("lb2 counted %d and the kernel dropped %d of %d sent: %d unaccounted for", counted, rcvbuf, sent, uint64(sent)-counted-rcvbuf)
	}
	// The master saw none of it.
	for r, n := range after1.Links[0].Dropped {
		if n != before1.Links[0].Dropped[r] {
			t.Errorf("lb1 counted %d packets dropped for %q during a flood at lb2", n-before1.Links[0].Dropped[r], r)
		}
	}
	for _, d := range []struct {
		name          string
		before, after bfdFloodReport
		state         string
	}{{"lb1", before1, after1, "MASTER"}, {"lb2", before2, after2, "BACKUP"}} {
		s, b := d.after.BFD[0], d.before.BFD[0]
		if s.State != "Up" || s.Downs != b.Downs {
			t.Errorf("%s's BFD session after the flood: %s with %d downs (was %d); want Up, unchanged", d.name, s.State, s.Downs, b.Downs)
		}
		v, bv := d.after.VRRP[0], d.before.VRRP[0]
		if v.State != d.state || v.Transitions != bv.Transitions || v.BFDTakeovers != bv.BFDTakeovers {
			t.Errorf("%s's instance after the flood: %s, %d transitions, %d BFD takeovers (was %d, %d); want %s, unchanged",
				d.name, v.State, v.Transitions, v.BFDTakeovers, bv.Transitions, bv.BFDTakeovers, d.state)
		}
	}
	if ok, seen := scaleSettled(t, lb1, lb2, insts); !ok {
		t.Errorf("after the flood: %s", seen)
	}
	perSec := func(d time.Duration) float64 { return float64(d.Milliseconds()) / window.Seconds() }
	t.Logf("lb2 (backup) CPU from /proc/PID/stat: %.0f ms/s idle (BFD at 10 ms), %.0f ms/s under %d invalid BFD packets/s (%.1f us a packet above idle)",
		perSec(quiet), perSec(busy), sent/int(window.Seconds()), float64((busy-quiet).Microseconds())/float64(sent))
}
