package vip

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// envHelper makes the test binary a daemon that holds VIPs until killed
// (holdUntilKilled), in the namespace it was started in.
const envHelper = "LVSHA_VIP_TEST_HOLD"

// testNetns creates a named network namespace of the test's own, with a
// veth pair veth0 (10.9.0.1/24) and veth1 up, deleted at cleanup. Named,
// so that `ip netns exec` can start a helper in it.
func testNetns(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and tun devices")
	}
	name := fmt.Sprintf("lvsha-vip-test-%d", os.Getpid())
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread, left locked in the new namespace, dies with the test.
		runtime.LockOSThread()
		t.Fatalf("back to the original network namespace: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		netns.DeleteNamed(name)
	})
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0"}, PeerName: "veth1"}
	if err := nl.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	for _, n := range []string{"lo", "veth0", "veth1"} {
		l, err := nl.LinkByName(n)
		if err == nil {
			err = nl.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("set %s up: %v", n, err)
		}
	}
	l, _ := nl.LinkByName("veth0")
	if err := nl.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 9, 0, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	return name, ns
}

// inNetns runs f on a thread in ns.
func inNetns(t *testing.T, ns netns.NsHandle, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("back to the original network namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	f()
}

// tunState is what ns has of the shared device: how many tun devices,
// and the addresses on lvsha-vip.
func tunState(t *testing.T, ns netns.NsHandle) (devices int, addrs []string) {
	t.Helper()
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Type() != "tuntap" {
			continue
		}
		devices++
		as, err := nl.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.IP.IsLinkLocalUnicast() {
				continue
			}
			addrs = append(addrs, a.IPNet.String())
		}
	}
	slices.Sort(addrs)
	return devices, addrs
}

func vipConfig(name, vip string) conf.VRRPInstance {
	return conf.VRRPInstance{Name: name, Interface: "veth0", VIPHolder: "tun", GARPRepeat: 1,
		AdvertInterval: 100_000_000, VirtualIPs: []netip.Prefix{netip.MustParsePrefix(vip)}}
}

// twoHolders opens, in a namespace of the test's own, the holders of
// instances a (VIP 10.9.0.100) and b (10.9.0.101) on one Host, sharing
// the tun device lvsha-vip.
func twoHolders(t *testing.T) (ns netns.NsHandle, a, b *Holder) {
	t.Helper()
	_, ns = testNetns(t)
	host := NewHost()
	inNetns(t, ns, func() {
		var err error
		if a, err = host.Open(quiet(), vipConfig("a", "10.9.0.100/24"), "lvsha-vip"); err != nil {
			t.Fatal(err)
		}
		if b, err = host.Open(quiet(), vipConfig("b", "10.9.0.101/24"), "lvsha-vip"); err != nil {
			a.Close()
			t.Fatal(err)
		}
	})
	return ns, a, b
}

// Two instances' holders share one tun device in a real namespace: each
// adds and removes its own VIP; the device goes with the last Close.
func TestHostSharedDevice(t *testing.T) {
	ns, a, b := twoHolders(t)
	steps := []struct {
		name    string
		do      func() error
		devices int
		addrs   []string
	}{
		{"opened", func() error { return nil }, 1, nil},
		{"a takes", a.Take, 1, []string{"10.9.0.100/32"}},
		{"b takes", b.Take, 1, []string{"10.9.0.100/32", "10.9.0.101/32"}},
		{"a releases", a.Release, 1, []string{"10.9.0.101/32"}},
		{"a closes", a.Close, 1, []string{"10.9.0.101/32"}},
		{"b closes holding its VIP", b.Close, 0, nil},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if n, addrs := tunState(t, ns); n != s.devices || !slices.Equal(addrs, s.addrs) {
			t.Errorf("%s: %d tun devices holding %q, want %d holding %q", s.name, n, addrs, s.devices, s.addrs)
		}
	}
}

// TestHostRefreshKernel: a refresh pass renews, in the kernel, the
// lifetime of the VIPs of the holder that asked and of no other.
func TestHostRefreshKernel(t *testing.T) {
	ns, a, b := twoHolders(t)
	defer a.Close()
	defer b.Close()
	for _, h := range []*Holder{a, b} {
		if err := h.Take(); err != nil {
			t.Fatal(err)
		}
	}
	lifetimes := func() map[string]int {
		nl, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer nl.Close()
		as, err := nl.AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int{}
		for _, a := range as {
			m[a.IP.String()] = a.ValidLft
		}
		return m
	}
	full := int(Lifetime(100*time.Millisecond) / time.Second)
	if got := lifetimes(); got["10.9.0.100"] != full || got["10.9.0.101"] != full {
		t.Fatalf("taken VIPs' lifetimes %v, want %d s each", got, full)
	}
	// A second and a bit later both have run down; a alone asks.
	time.Sleep(1200 * time.Millisecond)
	a.Refresh()
	var got map[string]int
	for range 50 {
		time.Sleep(10 * time.Millisecond)
		if got = lifetimes(); got["10.9.0.100"] == full {
			break
		}
	}
	if got["10.9.0.100"] != full {
		t.Errorf("a's VIP not renewed: lifetimes %v, want %d s for 10.9.0.100", got, full)
	}
	if lft, ok := got["10.9.0.101"]; !ok || lft >= full {
		t.Errorf("b's VIP: lifetime %d s (held %v), want it run down below %d s, b having asked nothing", lft, ok, full)
	}
}

// A device deleted by hand fails the Run of every holder on it; the next
// Runs create it again, and the holders take their VIPs onto it.
func TestHostDeviceDeleted(t *testing.T) {
	_, ns := testNetns(t)
	host := NewHost()
	var hs []*Holder
	inNetns(t, ns, func() {
		for i, v := range []string{"10.9.0.100/24", "10.9.0.101/24"} {
			h, err := host.Open(quiet(), vipConfig(fmt.Sprint("vi", i), v), "lvsha-vip")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			hs = append(hs, h)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := func() []chan error {
		var errcs []chan error
		for _, h := range hs {
			c := make(chan error, 1)
			go func() { c <- h.Run(ctx) }()
			errcs = append(errcs, c)
		}
		return errcs
	}
	errcs := run()
	for _, h := range hs {
		if err := h.Take(); err != nil {
			t.Fatal(err)
		}
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	dev, err := nl.LinkByName("lvsha-vip")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkDel(dev); err != nil {
		t.Fatal(err)
	}
	for i, c := range errcs {
		if err := <-c; err == nil || !strings.Contains(err.Error(), "VIP device lvsha-vip failed") {
			t.Errorf("holder %d's Run after the device's deletion: %v, want its failure", i, err)
		}
	}
	for _, h := range hs {
		h.Release()
	}
	// The next Runs create the device again, without VIPs, before they
	// watch it: the kernel's notice of the new link says it is there.
	links := make(chan netlink.LinkUpdate)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatal(err)
	}
	errcs = run()
	for u := range links {
		if u.Header.Type == unix.RTM_NEWLINK && u.Attrs().Name == "lvsha-vip" {
			break
		}
	}
	close(done)
	for range links {
	}
	for _, h := range hs {
		if err := h.Take(); err != nil {
			t.Fatalf("take after the device came back: %v", err)
		}
	}
	if n, addrs := tunState(t, ns); n != 1 || len(addrs) != 2 {
		t.Errorf("after the device came back: %d devices holding %q, want 1 holding both VIPs", n, addrs)
	}
	cancel()
	for i, c := range errcs {
		if err := <-c; err != nil {
			t.Errorf("holder %d's Run after cancel: %v", i, err)
		}
	}
}

// A daemon SIGKILLed while master leaves no holder: the kernel deletes
// the shared device, and every instance's VIP with it, as the process's
// descriptors close.
func TestHostKilledLeavesNoHolder(t *testing.T) {
	name, ns := testNetns(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", name, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=10.9.0.100/24,10.9.0.101/24")
	cmd.Stderr = os.Stderr
	// The helper holds until killed, reading its stdin, which stays open.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %q, %v; want ready", line, err)
	}
	if n, addrs := tunState(t, ns); n != 1 || !slices.Equal(addrs, []string{"10.9.0.100/32", "10.9.0.101/32"}) {
		t.Errorf("helper holds %q on %d devices, want both VIPs on one", addrs, n)
	}
	// `ip netns exec` execs the helper: the process killed is the one
	// holding the device.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if n, addrs := tunState(t, ns); n != 0 || len(addrs) != 0 {
		t.Errorf("after SIGKILL: %d devices holding %q, want none", n, addrs)
	}
}

// holdUntilKilled is the helper's body: two instances' holders on one
// device take vips (comma-separated), say "ready", and wait to be killed.
func holdUntilKilled(vips string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	host := NewHost()
	for i, v := range strings.Split(vips, ",") {
		h, err := host.Open(log, vipConfig(fmt.Sprint("vi", i), v), "lvsha-vip")
		if err == nil {
			err = h.Take()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "hold:", err)
			return 1
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}
