package integration

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/vrrp/vip"
)

// inNetns runs fn on a thread switched into the named namespace; sockets
// opened by fn stay in that namespace after it returns.
func inNetns(t testing.TB, name string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig)
	fn()
}

// TestVIPAcquireRelease moves IPv4 and IPv6 VIPs onto a real interface
// with netlink and checks, with tcpdump on the neighbour as the witness,
// that each is announced the configured number of times (gratuitous ARP
// request; unsolicited neighbour advertisement with override). A VIP left
// on the interface by a crash is taken over, not duplicated.
func TestVIPAcquireRelease(t *testing.T) {
	a, b := newNetns(t, "vipA"), newNetns(t, "vipB")
	for _, ns := range []string{a, b} {
		// Link-local addresses usable at once, for the NDP socket.
		inNS(t, ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	}
	veth(t, a, "10.77.0.1/24", b, "10.77.0.2/24")
	ifA, ifB := lastVeth(t, a), lastVeth(t, b)
	vips := []netip.Prefix{netip.MustParsePrefix("10.77.0.100/24"), netip.MustParsePrefix("2001:db8:77::100/64")}
	// Left over from a crashed daemon.
	sh(t, "ip", "-n", a, "addr", "add", "10.77.0.100/24", "dev", ifA)

	var ann vip.Announcer
	var nl *netlink.Handle
	inNetns(t, a, func() {
		ifi, err := net.InterfaceByName(ifA)
		if err != nil {
			t.Fatal(err)
		}
		ann.HardwareAddr = ifi.HardwareAddr
		if ann.ARP, err = packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil); err != nil {
			t.Fatal(err)
		}
		if ann.NDP, _, err = ndp.Listen(ifi, ndp.LinkLocal); err != nil {
			t.Fatal(err)
		}
		if nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			t.Fatal(err)
		}
	})
	defer ann.ARP.Close()
	defer ann.NDP.Close()
	defer nl.Close()

	dump := exec.Command("ip", "netns", "exec", b, "tcpdump", "-Z", "root", "-l", "-n", "-i", ifB, "-c", "6", "arp or icmp6[0] == 136")
	out, _ := dump.StdoutPipe()
	var dumpErr strings.Builder
	dump.Stderr = &dumpErr
	if err := dump.Start(); err != nil {
		t.Fatalf("tcpdump (the witness): %v", err)
	}
	t.Cleanup(func() { stopProc(dump) })
	time.Sleep(1500 * time.Millisecond) // tcpdump's capture is live

	m := vip.NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)), nl, ifA, vips, &ann,
		func(h net.HardwareAddr) net.Addr { return &packet.Addr{HardwareAddr: h} })
	m.Repeat = 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Acquire(ctx); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	addrs := inNS(t, a, "ip", "addr", "show", "dev", ifA)
	for _, want := range []string{"inet 10.77.0.100/24", "inet6 2001:db8:77::100/64"} {
		if n := strings.Count(addrs, want); n != 1 {
			t.Errorf("%q appears %d times on %s, want once:\n%s", want, n, ifA, addrs)
		}
	}
	if strings.Contains(addrs, "tentative") {
		t.Errorf("IPv6 VIP is tentative (DAD not skipped):\n%s", addrs)
	}

	var garp, na int
	lines := bufio.NewScanner(out)
	deadline := time.AfterFunc(10*time.Second, func() { stopProc(dump) })
	defer deadline.Stop()
	var seen []string
	for lines.Scan() {
		l := lines.Text()
		seen = append(seen, l)
		switch {
		case strings.Contains(l, "Request who-has 10.77.0.100 ") && strings.HasSuffix(strings.SplitN(l, ", length", 2)[0], "tell 10.77.0.100"):
			garp++
		case strings.Contains(l, "neighbor advertisement") && strings.Contains(l, "tgt is 2001:db8:77::100"):
			na++
		}
	}
	if garp != 3 || na != 3 {
		t.Errorf("the neighbour saw %d gratuitous ARPs and %d neighbour advertisements, want 3 and 3:\n%s\ntcpdump: %s", garp, na, strings.Join(seen, "\n"), dumpErr.String())
	}
	held, err := m.Held()
	if err != nil || len(held) != 2 {
		t.Errorf("Held = %v, %v; want both VIPs", held, err)
	}

	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	if addrs := inNS(t, a, "ip", "addr", "show", "dev", ifA); strings.Contains(addrs, "10.77.0.100") || strings.Contains(addrs, "2001:db8:77::100") {
		t.Errorf("VIPs still on %s after Release:\n%s", ifA, addrs)
	}
	if err := m.Release(); err != nil {
		t.Errorf("a second Release (nothing to remove) failed: %v", err)
	}
}
