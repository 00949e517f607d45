package integration

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/rawsock"
)

// envTrace ("1") makes the failover bench's client print the frames it
// sent and received around the takeover: where the time between the new
// master's announcement and the first answer goes; "cpu" also samples who
// used the CPU then.
const envTrace = "LVSHA_TRACE"

// frameTrace records, on every interface of the client's namespace, the
// ARP frames, the VRRP adverts and the TCP segments to and from the VIP,
// with the kernel's time of each (SO_TIMESTAMPNS): the client's own
// scheduling delays the reading, not the times. The failover bench takes
// its times from here.
type frameTrace struct {
	vip  netip.Addr
	fds  []int
	done atomic.Bool
	wg   sync.WaitGroup
	mu   sync.Mutex
	evs  []frameEvent
}

type frameEvent struct {
	us   int64 // unix µs
	what string
	// garpFrom is the sender MAC of a gratuitous ARP for the VIP,
	// vrrpFrom the source MAC of a VRRP advert (prio its priority),
	// answerFrom the source MAC of a TCP segment from the VIP that carries
	// data (an HTTP answer); "" for other frames.
	garpFrom, vrrpFrom, answerFrom string
	prio                           int
}

// maxFrameEvents bounds the trace's memory: a bench run sends ~100
// connections a second for a few seconds.
const maxFrameEvents = 100000

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func startFrameTrace(rawURL string) (*frameTrace, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	vip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return nil, fmt.Errorf("trace: the URL's host must be an address: %w", err)
	}
	t := &frameTrace{vip: vip}
	for _, ifi := range mustInterfaces() {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err == nil {
			t.fds = append(t.fds, fd)
			err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
		}
		if err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}
		if err == nil {
			// Reads wake up to see done.
			err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
		}
		if err != nil {
			t.close()
			return nil, fmt.Errorf("trace: packet socket on %s: %w", ifi.Name, err)
		}
		t.wg.Add(1)
		go t.read(fd)
	}
	return t, nil
}

func (t *frameTrace) close() {
	t.done.Store(true)
	t.wg.Wait()
	for _, fd := range t.fds {
		unix.Close(fd)
	}
}

func (t *frameTrace) read(fd int) {
	defer t.wg.Done()
	buf := make([]byte, 2048)
	oob := make([]byte, 128)
	for !t.done.Load() {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			return
		}
		rx := rawsock.ParseControl(oob[:oobn]).At
		if rx.IsZero() {
			rx = time.Now()
		}
		us := rx.UnixMicro()
		if e := t.describe(buf[:n]); e.what != "" {
			e.us = us
			t.mu.Lock()
			if len(t.evs) < maxFrameEvents {
				t.evs = append(t.evs, e)
			}
			t.mu.Unlock()
		}
	}
}

// describe names an ARP frame, a VRRP advert, or a TCP segment to or from
// the VIP (the zero event for anything else), and marks the frames the
// bench times.
func (t *frameTrace) describe(b []byte) frameEvent {
	var f ethernet.Frame
	if f.UnmarshalBinary(b) != nil {
		return frameEvent{}
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		var p arp.Packet
		if p.UnmarshalBinary(f.Payload) != nil {
			return frameEvent{}
		}
		e := frameEvent{what: fmt.Sprintf("ARP %v %v(%v) -> %v(%v)", p.Operation, p.SenderIP, p.SenderHardwareAddr, p.TargetIP, p.TargetHardwareAddr)}
		if p.SenderIP == p.TargetIP && p.SenderIP == t.vip {
			e.garpFrom = p.SenderHardwareAddr.String()
		}
		return e
	case ethernet.EtherTypeIPv4:
		ip := f.Payload
		if len(ip) < 20 {
			return frameEvent{}
		}
		hl := int(ip[0]&0xf) * 4
		src, _ := netip.AddrFromSlice(ip[12:16])
		dst, _ := netip.AddrFromSlice(ip[16:20])
		if ip[9] == 112 && len(ip) >= hl+4 {
			return frameEvent{
				what:     fmt.Sprintf("VRRP %v -> %v priority %d  (%v)", src, dst, ip[hl+2], f.Source),
				vrrpFrom: f.Source.String(),
				prio:     int(ip[hl+2]),
			}
		}
		if ip[9] != unix.IPPROTO_TCP || (src != t.vip && dst != t.vip) || len(ip) < hl+14 {
			return frameEvent{}
		}
		tcp := ip[hl:]
		data := int(binary.BigEndian.Uint16(ip[2:4])) - hl - int(tcp[12]>>4)*4
		e := frameEvent{what: fmt.Sprintf("TCP %v:%d -> %v:%d %s len %d  (%v -> %v)", src, binary.BigEndian.Uint16(tcp[0:2]), dst, binary.BigEndian.Uint16(tcp[2:4]), tcpFlags(tcp[13]), data, f.Source, f.Destination)}
		if src == t.vip && data > 0 {
			e.answerFrom = f.Source.String()
		}
		return e
	}
	return frameEvent{}
}

// takeoverTimes are the kernel's times (unix µs, 0 if not seen) of a
// takeover: the old master's last advert, the new master's first advert
// and first gratuitous ARP for the VIP after it, and the first answer
// through the new master after that.
type takeoverTimes struct {
	lastAdvert, firstAdvert, garp, answer int64
}

// takeover finds the times of the takeover by the director whose MAC is
// mac (with no mac, by any director): the old master is the one whose
// adverts carry masterPrio.
func (t *frameTrace) takeover(mac string, masterPrio int) (tt takeoverTimes) {
	t.mu.Lock()
	defer t.mu.Unlock()
	slices.SortFunc(t.evs, func(a, b frameEvent) int { return cmp.Compare(a.us, b.us) })
	from := func(m string) bool { return m != "" && (mac == "" || m == mac) }
	for _, e := range t.evs {
		switch {
		case tt.garp == 0 && e.vrrpFrom != "" && e.prio == masterPrio && (mac == "" || e.vrrpFrom != mac):
			tt.lastAdvert, tt.firstAdvert = e.us, 0
		case tt.garp == 0 && tt.lastAdvert != 0 && tt.firstAdvert == 0 && from(e.vrrpFrom):
			tt.firstAdvert = e.us
		case tt.garp == 0 && tt.lastAdvert != 0 && from(e.garpFrom):
			tt.garp = e.us
		case tt.garp != 0 && from(e.answerFrom):
			tt.answer = e.us
			return tt
		}
	}
	return tt
}

func tcpFlags(b byte) string {
	s := ""
	for i, n := range []string{"F", "S", "R", "P", "A"} {
		if b&(1<<i) != 0 {
			s += n
		}
	}
	return s
}

// print writes the takeover in two parts, the old master's last advert to
// the new master's first (Master_Down_Interval, plus how late the new
// master's timer ran) and to its first announcement, then the events from
// 5 ms before that announcement to the unix µs to, as ms after it.
func (t *frameTrace) print(w io.Writer, tt takeoverTimes, to int64) {
	if tt.lastAdvert != 0 && tt.firstAdvert != 0 {
		fmt.Fprintf(w, "trace summary: last advert of the old master to the new master's first %.1f ms, to its first announcement %.1f ms\n",
			float64(tt.firstAdvert-tt.lastAdvert)/1000, float64(tt.garp-tt.lastAdvert)/1000)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.evs {
		if e.us >= tt.garp-5000 && e.us <= to {
			fmt.Fprintf(w, "trace %+8.1f ms %s\n", float64(e.us-tt.garp)/1000, e.what)
		}
	}
}

// cpuSampler records, every period, how much CPU each process of the
// machine has used (/proc/*/task/*/schedstat, in ns), so that the trace
// can name who ran between the announcement and the answer.
type cpuSampler struct {
	mu      sync.Mutex
	samples []cpuSample
	done    atomic.Bool
	wg      sync.WaitGroup
}

type cpuSample struct {
	us  int64
	cpu map[string]int64 // "comm[pid]" → ns on a CPU
}

func startCPUSampler(period time.Duration) *cpuSampler {
	s := &cpuSampler{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for i := 0; i < 2000 && !s.done.Load(); i++ {
			c := readCPU()
			s.mu.Lock()
			s.samples = append(s.samples, cpuSample{time.Now().UnixMicro(), c})
			s.mu.Unlock()
			time.Sleep(period)
		}
	}()
	return s
}

func (s *cpuSampler) stop() { s.done.Store(true); s.wg.Wait() }

func readCPU() map[string]int64 {
	out := map[string]int64{}
	pids, _ := os.ReadDir("/proc")
	for _, p := range pids {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + p.Name() + "/comm")
		key := strings.TrimSpace(string(comm)) + "[" + p.Name() + "]"
		tasks, _ := os.ReadDir("/proc/" + p.Name() + "/task")
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/" + p.Name() + "/task/" + t.Name() + "/schedstat")
			if err != nil {
				continue
			}
			var ns int64
			fmt.Sscan(string(b), &ns)
			out[key] += ns
		}
	}
	return out
}

// print writes who used more than 1 ms of CPU between the last sample
// before from and the first after to (unix µs), as ms after ref.
func (s *cpuSampler) print(w io.Writer, from, to, ref int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, b := -1, -1
	for i, x := range s.samples {
		if x.us <= from {
			a = i
		}
		if x.us >= to && b < 0 {
			b = i
		}
	}
	if a < 0 || b < 0 {
		fmt.Fprintln(w, "trace: no CPU samples around the window")
		return
	}
	type use struct {
		who string
		ns  int64
	}
	var uses []use
	var total int64
	for who, ns := range s.samples[b].cpu {
		if d := ns - s.samples[a].cpu[who]; d > 0 {
			total += d
			if d > 1e6 {
				uses = append(uses, use{who, d})
			}
		}
	}
	slices.SortFunc(uses, func(x, y use) int { return cmp.Compare(y.ns, x.ns) })
	fmt.Fprintf(w, "trace cpu from %+.1f to %+.1f ms: %.1f ms used in all\n", float64(s.samples[a].us-ref)/1000, float64(s.samples[b].us-ref)/1000, float64(total)/1e6)
	for _, u := range uses {
		fmt.Fprintf(w, "trace cpu   %6.1f ms %s\n", float64(u.ns)/1e6, u.who)
	}
}
