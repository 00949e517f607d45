package integration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// selfSeed is the seed as a new user sets it up: the director receives on
// its own address (the VIP is its own IP:80) and balances round robin over
// NAT to itself and its neighbour, each running a web server. A client
// behind the director and a client on the director itself use it.
//
//	client 10.0.1.2 ── 10.0.1.1 director 192.168.164.1 (VIP 192.168.164.1:80, web "director") ── web2 192.168.164.11
type selfSeed struct {
	client, lb, web2 string
	cfg, sock        string
	webs             map[string]*exec.Cmd
}

const (
	selfVIP   = "192.168.164.1"
	selfOwn   = selfVIP + ":80" // the director as its own real server
	selfNeigh = "192.168.164.11:80"
)

func newSelfSeed(t *testing.T) *selfSeed {
	s := &selfSeed{client: newNetns(t, "client"), lb: newNetns(t, "lb"), web2: newNetns(t, "web2"), webs: map[string]*exec.Cmd{}}
	veth(t, s.client, "10.0.1.2/24", s.lb, "10.0.1.1/24")
	veth(t, s.web2, "192.168.164.11/24", s.lb, selfVIP+"/24")
	sh(t, "ip", "netns", "exec", s.lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	sh(t, "ip", "-n", s.client, "route", "add", "default", "via", "10.0.1.1")
	sh(t, "ip", "-n", s.web2, "route", "add", "default", "via", selfVIP)
	dir := t.TempDir()
	s.sock = filepath.Join(dir, "lvsha.sock")
	s.cfg = filepath.Join(dir, "lvsha.toml")
	// Exactly what the seed's user writes: the real servers by their
	// addresses, one of which is the VIP; no connect_address.
	cfg := fmt.Sprintf(`[director]
name = "lb1"
control_socket = %q
resync_interval = %q

[[virtual_server]]
name = "web"
address = "%s"
protocol = "tcp"
scheduler = "rr"
forwarding = "nat"

  [virtual_server.check]
  type = "http"
  path = "/"
  status = [200]
  interval = %q
  timeout = %q
  rise = %d
  fall = %d

  [[virtual_server.real_server]]
  address = "%s"
  weight = 1

  [[virtual_server.real_server]]
  address = "%s"
  weight = 1
`, s.sock, seedResync, selfOwn, seedInterval, seedTimeout, seedRise, seedFall, selfOwn, selfNeigh)
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// startWeb starts the web server called name ("director" in the director's
// namespace, "web2" on the neighbour) listening on listen.
func (s *selfSeed) startWeb(t *testing.T, name, listen string) {
	ns := map[string]string{"director": s.lb, "web2": s.web2}[name]
	s.webs[name] = startIn(t, ns, []string{envRole + "=web", "LVSHA_NAME=" + name, "LVSHA_LISTEN=" + listen}, self(t))
}

// gets fetches the VIP n times from ns and returns the bodies; any failure
// fails the test.
func (s *selfSeed) gets(t *testing.T, ns string, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		body, err := httpGet(t, ns, "http://"+selfVIP+"/")
		if err != nil {
			t.Fatalf("request %d of %d to the VIP from %s failed: %v", i+1, n, ns, err)
		}
		out = append(out, body)
	}
	return out
}

// ownStatus is the director's own real server in `lvsha status -o json`.
func (s *selfSeed) ownStatus(t *testing.T) map[string]any {
	t.Helper()
	st := (&seed{sock: s.sock}).status(t)
	for _, rs := range st["virtual_servers"].([]any)[0].(map[string]any)["real_servers"].([]any) {
		if m := rs.(map[string]any); m["address"] == selfOwn {
			return m
		}
	}
	t.Fatalf("status has no real server %s: %v", selfOwn, st)
	return nil
}

// TestSelfServer is the seed's own setup on kernel IPVS: the director is
// one of its real servers, at the VIP. Its probe of itself must not go
// through IPVS (which balances locally generated packets too, so every
// other probe reached the neighbour and the director's stopped server was
// never drained: half of the clients' requests failed). lvsha probes it
// via loopback at the same port; a server bound only to the VIP is not
// reached there and stays drained rather than reported healthy.
func TestSelfServer(t *testing.T) {
	s := newSelfSeed(t)
	s.startWeb(t, "director", ":80")
	s.startWeb(t, "web2", ":80")
	waitHTTP(t, s.lb, "http://"+selfNeigh+"/")
	waitHTTP(t, s.lb, "http://"+selfOwn+"/")
	bin := lvshaBin(t)
	startIn(t, s.lb, nil, bin, "run", "-c", s.cfg)
	t.Logf("lvsha runs in the director with:\n%s", mustRead(t, s.cfg))
	t.Logf("lvsha check in the director says:\n%s", inNS(t, s.lb, bin, "check", "-c", s.cfg))

	eventually(t, "lvsha programs both real servers at weight 1", 10*time.Second, func() bool {
		return s.weight(t, selfOwn) == "1" && s.weight(t, selfNeigh) == "1"
	})
	t.Logf("ipvsadm -Ln in the director:\n%s", inNS(t, s.lb, "ipvsadm", "-Ln"))

	// The probe's real target is visible, with the reason.
	own := s.ownStatus(t)
	if p, _ := own["probe"].(string); !strings.Contains(p, "http://127.0.0.1:80/") || !strings.Contains(p, "is virtual service \"web\" of this director") {
		t.Fatalf("status does not say the director's own server is probed via loopback and why: probe = %q", p)
	}
	t.Logf("status of %s: health %v, probe %q", selfOwn, own["health"], own["probe"])

	// Round robin over both, from the client and from the director itself.
	for _, ns := range []string{s.client, s.lb} {
		got := s.gets(t, ns, 4)
		if strings.Count(strings.Join(got, " "), "director") != 2 || strings.Count(strings.Join(got, " "), "web2") != 2 {
			t.Fatalf("from %s, 4 requests to the VIP were answered by %v; want director and web2 twice each", ns, got)
		}
		t.Logf("from %s, 4 requests to http://%s/ were answered by %v", ns, selfVIP, got)
	}

	// The director's own server stops: drained to weight 0 within
	// interval×fall + timeout, and every request then succeeds (on web2).
	stopProc(s.webs["director"])
	bound := seedInterval*seedFall + seedTimeout
	took := eventually(t, "the director's own real server drained to weight 0", bound+tcgSlack, func() bool { return s.weight(t, selfOwn) == "0" })
	t.Logf("stopped the director's web server: weight 0 after %v (bound interval×fall+timeout = %v, + %v VM slack)", took.Round(time.Millisecond), bound, tcgSlack)
	for _, ns := range []string{s.client, s.lb} {
		for _, body := range s.gets(t, ns, 6) {
			if body != "web2" {
				t.Fatalf("with the director's server down, a request from %s was answered by %q, want web2", ns, body)
			}
		}
	}
	t.Logf("all 6 requests from the client and 6 from the director itself succeeded, on web2")
	own = s.ownStatus(t)
	last, _ := own["last_probe"].(map[string]any)
	if own["health"] != "down" || own["kernel_weight"] != float64(0) || last == nil || last["ok"] != false ||
		!strings.Contains(fmt.Sprint(last["message"]), "probed at 127.0.0.1:80 for "+selfOwn) {
		t.Errorf("status of the stopped director's server = %v; want down, kernel_weight 0, a failed probe at 127.0.0.1:80", own)
	}

	// Kernel facts behind the fix, while every new connection to the VIP
	// is scheduled to web2 (the director's own server is at weight 0).
	ipvsBalancesLocalProbes(t, s)
	noStreamSocketBypass(t)
	rawNodefragStillBalanced(t, s)

	// It comes back: weight 1 within interval×rise.
	s.startWeb(t, "director", ":80")
	bound = seedInterval * seedRise
	took = eventually(t, "the director's own real server restored to weight 1", bound+tcgSlack, func() bool { return s.weight(t, selfOwn) == "1" })
	t.Logf("restarted the director's web server: weight 1 after %v (bound interval×rise = %v, + %v VM slack)", took.Round(time.Millisecond), bound, tcgSlack)
	if got := s.gets(t, s.client, 4); strings.Count(strings.Join(got, " "), "director") != 2 {
		t.Fatalf("after the director's server came back, 4 requests were answered by %v; want director twice", got)
	}

	// Bound only to the VIP, the director's server is not reached via
	// loopback: it is drained and stays drained (never reported healthy
	// through web2), and the clients keep being served.
	stopProc(s.webs["director"])
	eventually(t, "the director's own real server drained again", bound+seedInterval*seedFall+tcgSlack, func() bool { return s.weight(t, selfOwn) == "0" })
	s.startWeb(t, "director", selfOwn)
	// No probe can ask it through the VIP without IPVS (the kernel facts
	// above): the kernel's socket table shows it listening.
	eventually(t, "the VIP-only server listens", 10*time.Second, func() bool {
		return strings.Contains(inNS(t, s.lb, "cat", "/proc/net/tcp"), listenHex(selfOwn))
	})
	hold := seedInterval * seedRise * 4
	time.Sleep(hold)
	if w := s.weight(t, selfOwn); w != "0" {
		t.Fatalf("a server bound only to %s was restored to weight %s: reported healthy though the probe cannot reach it", selfOwn, w)
	}
	own = s.ownStatus(t)
	last, _ = own["last_probe"].(map[string]any)
	if own["health"] != "down" || last == nil || !strings.Contains(fmt.Sprint(last["message"]), "connection refused") {
		t.Errorf("status of the VIP-only server = %v; want down with connection refused at 127.0.0.1:80", own)
	}
	t.Logf("a server bound only to %s stays at weight 0 for %v (rise needs %v): last probe %q", selfOwn, hold, seedInterval*seedRise, last["message"])
	for _, body := range s.gets(t, s.client, 4) {
		if body != "web2" {
			t.Fatalf("with the director's server unreachable by probe, a request was answered by %q, want web2", body)
		}
	}
}

func (s *selfSeed) weight(t testing.TB, rs string) string { return ipvsWeight(t, s.lb, rs) }

// listenHex is addr as /proc/net/tcp writes a socket in LISTEN (state 0A).
func listenHex(addr string) string {
	a := netip.MustParseAddrPort(addr)
	b := a.Addr().As4()
	return fmt.Sprintf("%08X:%04X 00000000:0000 0A", binary.LittleEndian.Uint32(b[:]), a.Port())
}

// ipvsBalancesLocalProbes shows the defect's cause: with nothing listening
// on the director's port 80, a request the director itself sends to its
// own address is answered, by web2, because IPVS scheduled it.
func ipvsBalancesLocalProbes(t *testing.T, s *selfSeed) {
	t.Helper()
	body, err := httpGet(t, s.lb, "http://"+selfOwn+"/")
	if err != nil || body != "web2" {
		t.Fatalf("GET http://%s/ from the director with its own server stopped: %q, %v; want web2 (IPVS balances locally generated packets)", selfOwn, body, err)
	}
	t.Logf("kernel: with nothing listening on the director's port 80, its own GET of http://%s/ was answered by %s: IPVS schedules locally generated packets", selfOwn, body)
}

// noStreamSocketBypass: ip_vs_in_hook lets a locally generated packet pass
// only when its socket has IP_NODEFRAG set, and the kernel accepts that
// option on raw sockets only, so no TCP or UDP probe can use it.
func noStreamSocketBypass(t *testing.T) {
	t.Helper()
	for _, tc := range []struct {
		name     string
		typ      int
		proto    int
		wantErrn error
	}{
		{"tcp", unix.SOCK_STREAM, unix.IPPROTO_TCP, unix.ENOPROTOOPT},
		{"udp", unix.SOCK_DGRAM, unix.IPPROTO_UDP, unix.ENOPROTOOPT},
		{"raw", unix.SOCK_RAW, unix.IPPROTO_TCP, nil},
	} {
		fd, err := unix.Socket(unix.AF_INET, tc.typ|unix.SOCK_CLOEXEC, tc.proto)
		if err != nil {
			t.Fatalf("%s socket: %v", tc.name, err)
		}
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_NODEFRAG, 1)
		unix.Close(fd)
		if !errors.Is(err, tc.wantErrn) && !(tc.wantErrn == nil && err == nil) {
			t.Fatalf("IP_NODEFRAG on a %s socket: %v, want %v", tc.name, err, tc.wantErrn)
		}
		t.Logf("kernel: IP_NODEFRAG on a %s socket: %v", tc.name, err)
	}
}

// rawNodefragStillBalanced sends a bare SYN from the director to its own
// VIP:80 on a raw socket, with and without IP_NODEFRAG, and watches what
// answers. Nothing listens on the director's port 80 and IPVS schedules
// every new connection to web2 (the director's server is at weight 0), so
// a SYN-ACK means IPVS took the SYN to web2 and a RST means the local
// stack got it. IP_NODEFRAG skips IPVS at LOCAL_OUT, but the SYN loops
// back over lo and meets ip_vs_in_hook again at LOCAL_IN, where the socket
// is gone: so even a raw probe cannot reach a server bound only to the VIP.
func rawNodefragStillBalanced(t *testing.T, s *selfSeed) {
	t.Helper()
	for _, nodefrag := range []bool{false, true} {
		var flags byte
		var err error
		inNetns(t, s.lb, func() { flags, err = rawSYN(netip.MustParseAddrPort(selfOwn), nodefrag) })
		if err != nil {
			t.Fatalf("raw SYN (IP_NODEFRAG %v): %v", nodefrag, err)
		}
		answer := "RST from the director's own stack"
		if flags&tcpSYN != 0 && flags&tcpACK != 0 {
			answer = "SYN-ACK from web2 through IPVS"
		}
		t.Logf("kernel: raw SYN to %s with IP_NODEFRAG %v: %s (flags %#x)", selfOwn, nodefrag, answer, flags)
		if flags&tcpSYN == 0 {
			t.Errorf("raw SYN with IP_NODEFRAG %v reached the director's stack (flags %#x): IPVS did not balance it", nodefrag, flags)
		}
	}
}

const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// rawSYN sends one SYN to dst from the director's address on a raw
// socket and returns the flags of the first segment that answers it.
func rawSYN(dst netip.AddrPort, nodefrag bool) (byte, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return 0, fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	if nodefrag {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_NODEFRAG, 1); err != nil {
			return 0, fmt.Errorf("IP_NODEFRAG: %w", err)
		}
	}
	src := dst.Addr().As4()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src}); err != nil {
		return 0, fmt.Errorf("bind: %w", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}); err != nil {
		return 0, err
	}
	sport := uint16(40000 + rand.N(20000))
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dst.Port())
	binary.BigEndian.PutUint32(seg[4:], rand.Uint32())
	seg[12] = 5 << 4 // data offset: 5 words
	seg[13] = tcpSYN
	binary.BigEndian.PutUint16(seg[14:], 64240)
	binary.BigEndian.PutUint16(seg[16:], tcpChecksum(src, dst.Addr().As4(), seg))
	if err := unix.Sendto(fd, seg, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()}); err != nil {
		return 0, fmt.Errorf("send SYN: %w", err)
	}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("receive: %w", err)
		}
		if n < 20 {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+14 {
			continue
		}
		tcp := buf[ihl:n]
		if binary.BigEndian.Uint16(tcp[0:]) == dst.Port() && binary.BigEndian.Uint16(tcp[2:]) == sport {
			return tcp[13], nil
		}
	}
	return 0, errors.New("no answer within 5s")
}

func tcpChecksum(src, dst [4]byte, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	add([]byte{0, unix.IPPROTO_TCP, byte(len(seg) >> 8), byte(len(seg))})
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
