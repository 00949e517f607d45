package vip

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// An interface that does not exist is an error naming it, not a panic:
// the deferred Close once ran on the nil result.
func TestOpenHolderMissingInterface(t *testing.T) {
	cfg := conf.VRRPInstance{Name: "vi", Interface: "lvsha-none0", VIPHolder: "tun",
		VirtualIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.100/24")}}
	h, err := OpenHolder(quiet(), cfg, "lvsha-t0")
	if err == nil {
		h.Close()
		t.Fatal("OpenHolder on a missing interface succeeded")
	}
	if want := "vrrp_instance vi: interface lvsha-none0: "; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to contain %q", err, want)
	}
}

// closeLog records which parts were closed, in order.
type closeLog struct {
	mu     sync.Mutex
	closed []string
}

func (c *closeLog) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = append(c.closed, s)
}

func (c *closeLog) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.closed)
}

type fakeNetlink struct {
	*fakeAddrs
	log *closeLog
	// missing is a link LinkByName does not find.
	missing string
	// stale are links deleted since they were looked up (a device
	// created again by name): AddrReplace on them fails with ENODEV.
	stale []netlink.Link
}

func (f *fakeNetlink) AddrReplace(link netlink.Link, a *netlink.Addr) error {
	if slices.Contains(f.stale, link) {
		f.calls = append(f.calls, "replace "+key(a))
		return unix.ENODEV
	}
	return f.fakeAddrs.AddrReplace(link, a)
}

func (f *fakeNetlink) LinkByName(name string) (netlink.Link, error) {
	if name == f.missing {
		return nil, unix.ENODEV
	}
	return f.fakeAddrs.LinkByName(name)
}

func (f *fakeNetlink) Close() { f.log.add("netlink") }

type fakePacketConn struct {
	net.PacketConn // nil: only WriteTo and Close are called
	name           string
	log            *closeLog
}

func (c *fakePacketConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

func (c *fakePacketConn) Close() error { c.log.add(c.name); return nil }

// fakeND is a neighbour discovery socket: ReadFrom returns what reads
// holds, in turn, then blocks until a past read deadline or Close; every
// call is recorded.
type fakeND struct {
	name  string
	log   *closeLog
	reads chan ndRead
	// expired closes when a read deadline in the past is set; a zero
	// deadline makes a new one.
	mu      sync.Mutex
	expired chan struct{}
	closed  chan struct{}
	joined  []netip.Addr
	written []netip.Addr // target addresses
}

type ndRead struct {
	msg ndp.Message
	src netip.Addr
	err error
}

func newFakeND(name string, log *closeLog) *fakeND {
	return &fakeND{name: name, log: log, reads: make(chan ndRead, 4), expired: make(chan struct{}), closed: make(chan struct{})}
}

func (c *fakeND) ReadFrom() (ndp.Message, *ipv6.ControlMessage, netip.Addr, error) {
	c.mu.Lock()
	expired := c.expired
	c.mu.Unlock()
	select {
	case r := <-c.reads:
		return r.msg, nil, r.src, r.err
	case <-expired:
		return nil, nil, netip.Addr{}, os.ErrDeadlineExceeded
	case <-c.closed:
		return nil, nil, netip.Addr{}, net.ErrClosed
	}
}

func (c *fakeND) WriteTo(msg ndp.Message, _ *ipv6.ControlMessage, _ netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if na, ok := msg.(*ndp.NeighborAdvertisement); ok {
		c.written = append(c.written, na.TargetAddress)
	}
	return nil
}

func (c *fakeND) JoinGroup(g netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.joined = append(c.joined, g)
	return nil
}

func (c *fakeND) SetReadDeadline(d time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case d.IsZero():
		select {
		case <-c.expired:
			c.expired = make(chan struct{})
		default:
		}
	case d.Before(time.Now()):
		select {
		case <-c.expired:
		default:
			close(c.expired)
		}
	}
	return nil
}

func (c *fakeND) Close() error {
	c.log.add(c.name)
	close(c.closed)
	return nil
}

func (c *fakeND) sent() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.written)
}

// Every step of opening a holder that fails is an error saying what is
// missing, and what was opened before it is closed.
func TestOpenHolderStepFails(t *testing.T) {
	cfg := conf.VRRPInstance{Name: "vi", Interface: "eth0", VIPHolder: "tun",
		VirtualIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.100/24"), netip.MustParsePrefix("2001:db8::100/64")}}
	refused := errors.New("refused")
	tests := []struct {
		name       string
		fail       string // the step that fails
		wantErr    string
		wantClosed []string
	}{
		{"no interface", "interface", "vrrp_instance vi: interface eth0: no such network interface", nil},
		{"no netlink", "netlink", "vrrp_instance vi: netlink: refused", nil},
		{"no ARP socket", "arp", "vrrp_instance vi: ARP socket on eth0: refused", []string{"netlink"}},
		{"no tun module", "tun", "vrrp_instance vi: create VIP device lvsha-t0: no tun device: is the tun module loaded? (/dev/net/tun: no such device",
			[]string{"arp", "netlink"}},
		{"no neighbour socket", "nd", "vrrp_instance vi: neighbour discovery on eth0: refused", []string{"tun", "arp", "netlink"}},
		{"tun device gone at once", "prepare", "vrrp_instance vi: prepare VIPs: interface lvsha-t0: no such device",
			[]string{"nd", "tun", "arp", "netlink"}},
		{"nothing fails", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &closeLog{}
			nl := &fakeNetlink{fakeAddrs: &fakeAddrs{}, log: log}
			o := opener{
				interfaceByName: func(name string) (*net.Interface, error) {
					if tt.fail == "interface" {
						return nil, errors.New("no such network interface")
					}
					return &net.Interface{Index: 2, Name: name, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}, nil
				},
				netlink: func() (netlinkHandle, error) {
					if tt.fail == "netlink" {
						return nil, refused
					}
					return nl, nil
				},
				listenARP: func(*net.Interface) (net.PacketConn, error) {
					if tt.fail == "arp" {
						return nil, refused
					}
					return &fakePacketConn{name: "arp", log: log}, nil
				},
				newTun: func(name string) (device, error) {
					if tt.fail == "tun" {
						return nil, tunError(name, unix.ENODEV)
					}
					if tt.fail == "prepare" {
						nl.missing = name
					}
					return newFakeDevice(name, log), nil
				},
				newND: func(log2 *slog.Logger, ifi *net.Interface) (*NDResponder, error) {
					return newNDResponder(log2, ifi, func() (ndConn, error) {
						if tt.fail == "nd" {
							return nil, errors.New("neighbour discovery on eth0: refused")
						}
						return newFakeND("nd", log), nil
					})
				},
			}
			h, err := newHost(o).Open(quiet(), cfg, "lvsha-t0")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				if got := log.got(); len(got) != 0 {
					t.Errorf("a successful open closed %q", got)
				}
				if err := h.Close(); err != nil {
					t.Fatal(err)
				}
				tt.wantClosed = []string{"nd", "arp", "tun", "netlink"}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("open: %v, want an error containing %q", err, tt.wantErr)
			}
			got := log.got()
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.wantClosed))
			if !slices.Equal(got, want) {
				t.Errorf("closed %q, want %q", got, want)
			}
		})
	}
}

// Without the tun driver, creating the device says so and how to do
// without it; other errors are passed on as they are.
func TestTunError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{unix.ENOENT, "create VIP device lvsha5-4: no tun device: is the tun module loaded? (/dev/net/tun: no such file or directory; or set vip_holder = \"interface\")"},
		{unix.ENODEV, "create VIP device lvsha5-4: no tun device: is the tun module loaded? (/dev/net/tun: no such device; or set vip_holder = \"interface\")"},
		{unix.EPERM, "create VIP device lvsha5-4: operation not permitted"},
	}
	for _, tt := range tests {
		err := tunError("lvsha5-4", tt.err)
		if err.Error() != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("tunError(%v) = %q, want %q wrapping it", tt.err, err, tt.want)
		}
	}
}

// The responder answers solicitations for its VIPs while active; when
// reading fails Run returns the error, and the next Run opens a new socket
// that joins the VIPs' groups, replaces the old one for announcements
// too, and answers again. A reopening that fails is retried by the next
// Run. A cancelled Run returns nil and leaves the socket open.
func TestNDResponderReopen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &closeLog{}
		vipA := netip.MustParseAddr("2001:db8::100")
		client := netip.MustParseAddr("fe80::2")
		var conns []*fakeND
		failListen := false
		listen := func() (ndConn, error) {
			if failListen {
				return nil, errors.New("refused")
			}
			c := newFakeND("nd"+string(rune('0'+len(conns))), log)
			conns = append(conns, c)
			return c, nil
		}
		r, err := newNDResponder(quiet(), &net.Interface{Name: "eth0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}, listen)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Join([]netip.Addr{vipA}); err != nil {
			t.Fatal(err)
		}
		r.Answer(map[netip.Addr]bool{vipA: true})
		snm, _ := ndp.SolicitedNodeMulticast(vipA)
		ns := ndRead{msg: &ndp.NeighborSolicitation{TargetAddress: vipA}, src: client}

		run := func() (context.CancelFunc, chan error) {
			ctx, cancel := context.WithCancel(context.Background())
			// A t.Fatal ends the Run it left going, inside the bubble, so
			// the test fails with its message rather than synctest's
			// panic on a goroutine left blocked.
			t.Cleanup(cancel)
			errc := make(chan error, 1)
			go func() { errc <- r.Run(ctx) }()
			return cancel, errc
		}

		// First socket: answers, then fails.
		cancel, errc := run()
		conns[0].reads <- ns
		synctest.Wait()
		if got := conns[0].sent(); !slices.Equal(got, []netip.Addr{vipA}) {
			t.Errorf("answers on the first socket: %v, want one for %v", got, vipA)
		}
		conns[0].reads <- ndRead{err: errors.New("boom")}
		if err := <-errc; err == nil || !strings.Contains(err.Error(), "read neighbour solicitations: boom") {
			t.Fatalf("Run after a read error: %v, want that error", err)
		}
		cancel()

		// Reopening fails: an error, and no new socket.
		failListen = true
		cancel, errc = run()
		if err := <-errc; err == nil || !strings.Contains(err.Error(), "reopen: refused") {
			t.Fatalf("Run with a failing reopen: %v, want the reopen's error", err)
		}
		cancel()
		if len(conns) != 1 {
			t.Fatalf("%d sockets opened, want 1", len(conns))
		}

		// Reopening works: the new socket joins, answers and announces,
		// the old one is closed.
		failListen = false
		cancel, errc = run()
		synctest.Wait()
		if len(conns) != 2 {
			t.Fatalf("%d sockets opened, want 2", len(conns))
		}
		if got := log.got(); !slices.Equal(got, []string{"nd0"}) {
			t.Errorf("closed %q, want the failed socket nd0", got)
		}
		if !slices.Equal(conns[1].joined, []netip.Addr{snm}) {
			t.Errorf("the new socket joined %v, want %v", conns[1].joined, snm)
		}
		conns[1].reads <- ns
		synctest.Wait()
		if err := r.WriteTo(&ndp.NeighborAdvertisement{TargetAddress: vipA}, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
			t.Fatal(err)
		}
		if got := conns[1].sent(); len(got) != 2 {
			t.Errorf("the new socket sent %v, want an answer and an announcement", got)
		}

		// Cancelled: nil, and the socket stays open until Close.
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("cancelled Run: %v, want nil", err)
		}
		if got := log.got(); len(got) != 1 {
			t.Errorf("cancelling Run closed %q", got[1:])
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
