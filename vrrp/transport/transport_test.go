package transport

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// payload is what the tests send: the transport does not look inside.
var payload = []byte{0x31, 7, 100, 1, 0, 100, 0, 0, 127, 0, 0, 100}

// Listen refuses a configuration it cannot open before it opens anything.
func TestListenRefuses(t *testing.T) {
	lo := &net.Interface{Index: 1, Name: "lo"}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no interface", Config{Source: netip.MustParseAddr("127.0.0.1")}, "interface and source address are required"},
		{"no source", Config{Interface: lo}, "interface and source address are required"},
		{"IPv6 from an IPv4 source", Config{Interface: lo, IPv6: true, Source: netip.MustParseAddr("127.0.0.1")},
			"source 127.0.0.1 is not of the instance's family"},
		{"IPv4 from an IPv6 source", Config{Interface: lo, Source: netip.MustParseAddr("fe80::1")},
			"source fe80::1 is not of the instance's family"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Listen(tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Listen error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Adverts go to the multicast group of the family, or to every unicast
// peer instead.
func TestDestinations(t *testing.T) {
	peers := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}
	tests := []struct {
		name string
		cfg  Config
		want []netip.Addr
	}{
		{"IPv4 multicast", Config{}, []netip.Addr{netip.MustParseAddr("224.0.0.18")}},
		{"IPv6 multicast", Config{IPv6: true}, []netip.Addr{netip.MustParseAddr("ff02::12")}},
		{"unicast", Config{Peers: peers}, peers},
	}
	for _, tt := range tests {
		if got := (&Conn{cfg: tt.cfg}).Destinations(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Destinations = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// cmsg is one socket control message as the kernel lays it out.
// inPrivateNetns runs open on a thread in a new network namespace with
// its loopback up, so that the test's datagrams reach nothing outside it
// (the host may run VRRP of its own, or other tests). The sockets open
// opens stay in that namespace, which lives until they close.
func inPrivateNetns(t *testing.T, open func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw sockets in a network namespace of its own")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("new network namespace: %v", err)
	}
	defer ns.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Left locked, the thread ends with the goroutine instead of
			// running others in the wrong namespace.
			t.Errorf("back to the original network namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("loopback up: %v", err)
	}
	open()
}

// addToLo adds IPv6 addresses to lo and returns once they take
// datagrams: a new address is tentative, and drops what is sent to it,
// until a work queue ends its duplicate address detection, skipped
// (IFA_F_NODAD) or not. The kernel announces the end; nothing is timed.
func addToLo(t *testing.T, addrs ...netip.Addr) {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	updates := make(chan netlink.AddrUpdate)
	done := make(chan struct{})
	if err := netlink.AddrSubscribe(updates, done); err != nil {
		t.Fatalf("subscribe to address changes: %v", err)
	}
	defer func() {
		close(done)
		// The subscription's goroutine closes updates as it ends.
		for range updates {
		}
	}()
	pending := map[netip.Addr]bool{}
	for _, a := range addrs {
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(128, 128)}, Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatalf("add %s to lo: %v", a, err)
		}
		pending[a] = true
	}
	for len(pending) > 0 {
		u, ok := <-updates
		if !ok {
			t.Fatal("address subscription ended")
		}
		if a, _ := netip.AddrFromSlice(u.LinkAddress.IP); u.NewAddr && u.Flags&unix.IFA_F_TENTATIVE == 0 {
			delete(pending, a)
		}
	}
}

// listenLo opens a transport on lo from src, unicast to peer.
func listenLo(t *testing.T, src, peer netip.Addr) *Conn {
	t.Helper()
	ifi, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Listen(Config{Interface: ifi, IPv6: src.Is6(), Source: src, Peers: []netip.Addr{peer}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *Conn) Datagram {
	t.Helper()
	buf := make([]byte, 1500)
	d, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	d.Payload = bytes.Clone(d.Payload)
	return d
}

// A datagram from a peer arrives with its source, destination, TTL or
// hop limit 255 and the kernel's receive time, stripped of any IP
// header; one from outside the peer list, and our own (every raw VRRP
// socket sees every datagram delivered locally), are counted and
// skipped. On loopback, in a namespace of the test's own.
func TestUnicastLoopback(t *testing.T) {
	tests := []struct {
		name           string
		a, b, stranger netip.Addr
	}{
		{"IPv4", netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")},
		{"IPv6", netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::3")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a, b, stranger *Conn
			inPrivateNetns(t, func() {
				// lo holds all of 127/8 already.
				if tt.a.Is6() {
					addToLo(t, tt.a, tt.b, tt.stranger)
				}
				a = listenLo(t, tt.a, tt.b)
				b = listenLo(t, tt.b, tt.a)
				stranger = listenLo(t, tt.stranger, tt.b)
			})
			if err := stranger.WriteTo(payload, tt.b); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			if err := a.WriteTo(payload, tt.b); err != nil {
				t.Fatal(err)
			}
			d := read(t, b)
			readAt := time.Now()
			if d.Src != tt.a || d.Dst != tt.b || d.HopLimit != 255 || !bytes.Equal(d.Payload, payload) {
				t.Errorf("b read %x from %s to %s, hop limit %d; want %x from %s to %s, 255", d.Payload, d.Src, d.Dst, d.HopLimit, payload, tt.a, tt.b)
			}
			// The kernel's stamp, between the send and the read. Not
			// whether it is the arrival's: the kernel turns receive
			// stamps on from a work queue once the first socket asks, and
			// stamps at the read until then, so only a read made well after
			// the arrival tells them apart (integration's
			// TestVRRPTransport does that).
			if d.At.Before(sent.Round(0)) || d.At.After(readAt.Round(0)) {
				t.Errorf("receive time %v, want the kernel's, between the send %v and the read %v", d.At, sent, readAt)
			}
			if notPeer, own := b.NotPeer.Load(), b.Own.Load(); notPeer != 1 || own != 0 {
				t.Errorf("b skipped %d from strangers and %d of its own, want 1 and 0", notPeer, own)
			}

			if err := b.WriteTo(payload, tt.a); err != nil {
				t.Fatal(err)
			}
			if d := read(t, a); d.Src != tt.b || d.Dst != tt.a {
				t.Errorf("a read from %s to %s, want from %s to %s", d.Src, d.Dst, tt.b, tt.a)
			}
			if notPeer, own := a.NotPeer.Load(), a.Own.Load(); notPeer != 1 || own != 1 {
				t.Errorf("a skipped %d from strangers and %d of its own, want 1 (the stranger's to b) and 1 (its own to b)", notPeer, own)
			}
		})
	}
}

// Close ends a Read blocked on the socket (it is how an instance stops
// its reader), and a closed transport refuses to send.
func TestCloseEndsRead(t *testing.T) {
	a4, b4 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	var a, b *Conn
	inPrivateNetns(t, func() {
		a = listenLo(t, a4, b4)
		b = listenLo(t, b4, a4)
	})
	reading := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		if _, err := b.Read(buf); err != nil {
			done <- err
			return
		}
		// The first datagram read: this Read is the one Close must end.
		close(reading)
		_, err := b.Read(buf)
		done <- err
	}()
	if err := a.WriteTo(payload, b4); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reading:
	case err := <-done:
		t.Fatalf("first Read: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if err := b.WriteTo(payload, a4); !errors.Is(err, unix.EBADF) {
		t.Errorf("WriteTo after Close: %v, want EBADF", err)
	}
}

// A link's receiving socket holds seconds of adverts, not the default
// fifth of a second: root gets the whole receiveBuffer (the kernel
// reports twice what was set, for its bookkeeping).
func TestReceiveBuffer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a raw socket")
	}
	pc, err := net.ListenPacket("ip4:112", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := setReceiveBuffer(pc); err != nil {
		t.Fatal(err)
	}
	var got int
	if err := control(pc, func(fd int) error {
		var err error
		got, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got < receiveBuffer {
		t.Errorf("receive buffer %d bytes, want at least %d", got, receiveBuffer)
	}
}
