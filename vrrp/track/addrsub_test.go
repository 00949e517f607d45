package track

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// addrNetns is a network namespace of the test's own with a veth pair
// veth0 and veth1 up, deleted at cleanup, and a handle in it.
func addrNetns(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // the thread dies with the test
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0"}, PeerName: "veth1"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"veth0", "veth1"} {
		l, err := h.LinkByName(n)
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return ns, h
}

func cidrAddr(t *testing.T, cidr string, flags int) *netlink.Addr {
	t.Helper()
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return &netlink.Addr{IPNet: n, Flags: flags}
}

// The kernel drops the notifications of interfaces a filtered
// subscription does not watch: veth1's addresses, added first, never
// come; veth0's do, new and deleted, with their flags.
func TestAddrSubscribeFiltered(t *testing.T) {
	ns, h := addrNetns(t)
	v0, _ := h.LinkByName("veth0")
	v1, _ := h.LinkByName("veth1")
	ch := make(chan netlink.AddrUpdate, 512)
	done := make(chan struct{})
	defer close(done)
	var lost lostError
	if err := addrSubscribe(&ns, []int{v0.Attrs().Index}, ch, done, &lost); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := h.AddrAdd(v1, cidrAddr(t, fmt.Sprintf("10.7.1.%d/32", i+1), 0)); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		do   func(netlink.Link, *netlink.Addr) error
		addr *netlink.Addr
		new  bool
	}{
		{h.AddrAdd, cidrAddr(t, "10.7.0.1/24", 0), true},
		{h.AddrAdd, cidrAddr(t, "fd00:7::1/64", unix.IFA_F_NODAD), true},
		{h.AddrDel, cidrAddr(t, "10.7.0.1/24", 0), false},
	}
	for _, st := range steps {
		if err := st.do(v0, st.addr); err != nil {
			t.Fatal(err)
		}
		select {
		case u := <-ch:
			if u.LinkIndex != v0.Attrs().Index || !u.LinkAddress.IP.Equal(st.addr.IP) || u.NewAddr != st.new {
				t.Fatalf("update %+v, want %s on veth0 (new %v): veth1's were not dropped", u, st.addr.IP, st.new)
			}
			if st.addr.Flags != 0 && u.Flags&st.addr.Flags == 0 {
				t.Errorf("%s: flags %#x, want %#x among them", st.addr.IP, u.Flags, st.addr.Flags)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no update for %s within 5 s", st.addr.IP)
		}
	}
	if n := len(ch); n != 0 {
		t.Errorf("%d more updates, want none", n)
	}
}

// Addrs, on the kernel: a watched address is up while present and past
// DAD, down while tentative or once deleted; the VIPs renewed on another
// interface meanwhile change nothing.
func TestAddrsKernel(t *testing.T) {
	ns, h := addrNetns(t)
	v0, _ := h.LinkByName("veth0")
	v1, _ := h.LinkByName("veth1")
	for _, a := range []*netlink.Addr{cidrAddr(t, "10.7.0.1/24", 0), cidrAddr(t, "fd00:7::1/64", unix.IFA_F_NODAD)} {
		if err := h.AddrAdd(v0, a); err != nil {
			t.Fatal(err)
		}
	}
	idx := v0.Attrs().Index
	v4 := AddrName(netip.MustParseAddr("10.7.0.1"), idx)
	v6 := AddrName(netip.MustParseAddr("fd00:7::1"), idx)
	dad := AddrName(netip.MustParseAddr("fd00:7::2"), idx)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reports <-chan LinkReport
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, _ := netns.Get()
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			t.Fatal(err)
		}
		defer netns.Set(orig)
		reports = Addrs(ctx, []string{v4, v6, dad})
	}()
	want := func(what string, state LinkState) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case r := <-reports:
				if r.Err != nil {
					t.Fatalf("%s: %v", what, r.Err)
				}
				if fmt.Sprint(r.State) == fmt.Sprint(state) {
					return
				}
			case <-deadline:
				t.Fatalf("%s: no report of %v within 10 s", what, state)
			}
		}
	}
	want("at start", LinkState{v4: true, v6: true, dad: false})
	// Renewals on veth1, as of VIPs on another device, while an address
	// with DAD comes on veth0: tentative (down), then usable.
	renewed := cidrAddr(t, "10.7.1.1/32", 0)
	renewed.ValidLft, renewed.PreferedLft = 30, 30
	go func() {
		for range 20 {
			_ = h.AddrReplace(v1, renewed)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if err := h.AddrAdd(v0, cidrAddr(t, "fd00:7::2/64", 0)); err != nil {
		t.Fatal(err)
	}
	want("past DAD", LinkState{v4: true, v6: true, dad: true})
	if err := h.AddrDel(v0, cidrAddr(t, "10.7.0.1/24", 0)); err != nil {
		t.Fatal(err)
	}
	want("deleted", LinkState{v4: false, v6: true, dad: true})
}
