package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsVeth is a test namespace (testNetns), a netlink handle in it, and
// its veth0.
func nsVeth(t *testing.T) (netns.NsHandle, *netlink.Handle, netlink.Link) {
	t.Helper()
	_, ns := testNetns(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	link, err := h.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	return ns, h, link
}

// A batch renews addresses to what AddrReplace makes of the same
// requests, in the kernel, and adds again those deleted meanwhile: every
// field AddrList shows is the same but the lifetimes asked for, across more writes than one (batchMax); a request
// on a device that is gone gets its own error, the others theirs; one the
// batch cannot express is left to the caller.
func TestReplaceAllKernel(t *testing.T) {
	ns, h, link := nsVeth(t)
	var err error
	var bs *nl.NetlinkSocket
	inNetns(t, ns, func() { bs, err = openBatchSocket() })
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()

	// The kinds of address a Manager adds, and then many.
	mk := func(cidr string, flags int, label string) *netlink.Addr {
		ip, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return &netlink.Addr{IPNet: n, Flags: flags, Label: label, ValidLft: 30, PreferedLft: 30}
	}
	addrs := []*netlink.Addr{
		mk("10.9.0.100/24", 0, ""),
		mk("10.9.0.101/32", 0, ""),
		mk("10.9.0.102/24", 0, "veth0:vip"),
		mk("fd00:9::100/64", unix.IFA_F_NODAD, ""),
	}
	for i := range 150 {
		addrs = append(addrs, mk(fmt.Sprintf("10.9.%d.%d/32", 1+i/200, 1+i%200), 0, ""))
	}
	for _, a := range addrs {
		if err := h.AddrReplace(link, a); err != nil {
			t.Fatalf("add %s: %v", a.IPNet, err)
		}
	}
	list := func() map[string]netlink.Addr {
		t.Helper()
		got, err := h.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]netlink.Addr{}
		for _, a := range got {
			m[a.IPNet.String()] = a
		}
		return m
	}
	before := list()
	// A renewal adds what is missing (NLM_F_CREATE), as AddrReplace does:
	// the broadcast, label and flags of an address matter then only.
	for _, a := range addrs[:4] {
		if err := h.AddrDel(link, a); err != nil {
			t.Fatalf("delete %s: %v", a.IPNet, err)
		}
	}

	var reqs []replaceReq
	for _, a := range addrs {
		r := *a
		r.ValidLft, r.PreferedLft = 60, 60
		reqs = append(reqs, replaceReq{link, &r})
	}
	errs := replaceAll(bs, reqs)
	for i, err := range errs {
		if err != nil {
			t.Errorf("renew %s: %v", addrs[i].IPNet, err)
		}
	}
	after := list()
	for _, a := range addrs {
		k := a.IPNet.String()
		b, n := before[k], after[k]
		if n.ValidLft <= 30 || n.PreferedLft <= 30 {
			t.Errorf("%s: lifetimes %d/%d after the batch, want about 60", k, n.ValidLft, n.PreferedLft)
		}
		b.ValidLft, b.PreferedLft, n.ValidLft, n.PreferedLft = 0, 0, 0, 0
		if fmt.Sprint(b) != fmt.Sprint(n) || !slices.Equal(b.Broadcast, n.Broadcast) || b.Label != n.Label || b.Flags != n.Flags || b.Scope != n.Scope {
			t.Errorf("%s changed beyond its lifetimes:\nbefore %+v\nafter  %+v", k, b, n)
		}
	}

	// A device that is gone: its request fails alone.
	gone := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "gone", Index: 9999}}
	peer := *addrs[0]
	peer.Peer = &net.IPNet{IP: net.IPv4(10, 9, 0, 2), Mask: net.CIDRMask(32, 32)}
	errs = replaceAll(bs, []replaceReq{{link, addrs[1]}, {gone, mk("10.9.9.9/32", 0, "")}, {link, &peer}, {link, addrs[4]}})
	if errs[0] != nil || errs[3] != nil {
		t.Errorf("good requests before and after failing ones: %v, %v", errs[0], errs[3])
	}
	if !errors.Is(errs[1], unix.ENODEV) {
		t.Errorf("a request on a missing device: %v, want ENODEV", errs[1])
	}
	if !errors.Is(errs[2], errNotBatched) {
		t.Errorf("a request with a peer address: %v, want it left to AddrReplace", errs[2])
	}
}

// lateSocket is a batch socket whose acknowledgements are not waiting
// when the batch first looks (GetFd gives an empty socket after the
// write's): they come from Receive, the blocking read, or its error.
type lateSocket struct {
	real     *nl.NetlinkSocket
	empty    int
	calls    int
	receives int
	fail     error
}

func (l *lateSocket) GetFd() int {
	l.calls++
	if l.calls == 1 {
		return l.real.GetFd()
	}
	return l.empty
}

func (l *lateSocket) Receive() ([]syscall.NetlinkMessage, *unix.SockaddrNetlink, error) {
	l.receives++
	if l.fail != nil {
		return nil, nil, l.fail
	}
	return l.real.Receive()
}

// TestReplaceAllLateAck: an acknowledgement not yet queued when the
// batch looks is waited for with the blocking read; a read that fails
// leaves every request of the batch to be made alone.
func TestReplaceAllLateAck(t *testing.T) {
	ns, h, link := nsVeth(t)
	var err error
	for _, tc := range []struct {
		name string
		fail error
		want error
	}{
		{"acknowledged late", nil, nil},
		{"the read fails", unix.EAGAIN, errNotBatched},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bs *nl.NetlinkSocket
			inNetns(t, ns, func() { bs, err = openBatchSocket() })
			if err != nil {
				t.Fatal(err)
			}
			defer bs.Close()
			empty, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(empty)
			ip, n, _ := net.ParseCIDR("10.9.7.1/32")
			n.IP = ip
			s := &lateSocket{real: bs, empty: empty, fail: tc.fail}
			errs := replaceAll(s, []replaceReq{{link, &netlink.Addr{IPNet: n, ValidLft: 60, PreferedLft: 60}}})
			if !errors.Is(errs[0], tc.want) || (tc.want == nil && errs[0] != nil) {
				t.Errorf("result %v, want %v", errs[0], tc.want)
			}
			if s.receives != 1 {
				t.Errorf("%d blocking reads, want 1 (the acknowledgement was not waiting)", s.receives)
			}
			if tc.fail == nil {
				got, err := h.AddrList(link, netlink.FAMILY_V4)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(got, func(a netlink.Addr) bool { return a.IP.Equal(ip) }) {
					t.Errorf("10.9.7.1 not on veth0 after the batch: %v", got)
				}
			}
		})
	}
}

// fakeBatch answers a batch with a result per address, by address.
type fakeBatch map[string]error

func (f fakeBatch) replaceAll(reqs []replaceReq) []error {
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		errs[i] = f[r.addr.IP.String()]
	}
	return errs
}

// aloneHandle records the requests made alone; its LinkByName finds the
// device again at index 8.
type aloneHandle struct {
	recordingHandle
	replaced []string // address@index
}

func (a *aloneHandle) AddrReplace(l netlink.Link, addr *netlink.Addr) error {
	a.replaced = append(a.replaced, fmt.Sprintf("%s@%d", addr.IP, l.Attrs().Index))
	return nil
}

func (a *aloneHandle) LinkByName(name string) (netlink.Link, error) {
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, Index: 8}}, nil
}

// What a batch did not make is made alone: a request on a device since
// re-created (ENODEV) after looking the device up again, which the holder
// keeps; one the batch left (errNotBatched) as is. A request the kernel
// refused otherwise is not made again: its error is logged.
func TestRenewBatched(t *testing.T) {
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "d0", Index: 7}}
	var logs strings.Builder
	a := &holderAddrs{log: slog.New(slog.NewTextHandler(&logs, nil)), held: map[addrKey]heldAddr{}}
	for _, ip := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"} {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(ip).To4(), Mask: net.CIDRMask(32, 32)}}
		a.held[keyOf(link, addr)] = heldAddr{link: link, addr: addr}
	}
	alone := &aloneHandle{}
	renewBatched(fakeBatch{"10.0.0.2": unix.ENODEV, "10.0.0.3": errNotBatched, "10.0.0.4": unix.EPERM}, alone, []*holderAddrs{a})
	slices.Sort(alone.replaced)
	if want := []string{"10.0.0.2@8", "10.0.0.3@7"}; !slices.Equal(alone.replaced, want) {
		t.Errorf("made alone: %v, want %v", alone.replaced, want)
	}
	for k, h := range a.held {
		if want := map[bool]int{true: 8, false: 7}[k.prefix.Addr().String() == "10.0.0.2"]; h.link.Attrs().Index != want {
			t.Errorf("%s held on index %d, want %d", k.prefix, h.link.Attrs().Index, want)
		}
	}
	if l := logs.String(); !strings.Contains(l, "10.0.0.4/32") || !strings.Contains(l, "operation not permitted") || strings.Contains(l, "10.0.0.2") {
		t.Errorf("log: %s\nwant the refused 10.0.0.4 only", l)
	}
}
