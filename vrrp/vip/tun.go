package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// TunHolder keeps VIPs on a private, non-persistent tun device. The kernel
// removes such a device, and with it the VIPs, when the last descriptor of
// it closes: when the daemon exits, however it exits (SIGKILL included).
// keepalived puts VIPs on the real interface instead, where they outlive a
// killed daemon and two directors end up holding the same VIP for good.
//
// Traffic still arrives on the real interface: Linux delivers locally any
// packet for a local address whatever interface holds it, and answers ARP
// for such addresses on every interface (arp_ignore = 0, the default). For
// IPv6 the kernel answers neighbour solicitations only for addresses on the
// receiving interface, so an NDResponder answers them for the VIPs, and it
// too dies with the daemon.
type TunHolder struct {
	name string
	link netlink.Link
	// fds keep the device alive; they must stay referenced, because a
	// collected *os.File closes its descriptor and the device with it.
	fds []*os.File
	// ns is the namespace the device belongs to, for Reopen, which may
	// run on any thread.
	ns netns.NsHandle
}

// NewTunHolder creates the tun device name (at most 15 bytes) and sets it
// up. It must run on a thread in the network namespace the VIPs belong to:
// the tun driver creates the device in the namespace of the caller.
func NewTunHolder(name string) (*TunHolder, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("create VIP device %s: network namespace: %w", name, err)
	}
	h := &TunHolder{name: name, ns: ns}
	if err := h.create(); err != nil {
		ns.Close()
		return nil, err
	}
	return h, nil
}

// create makes the device on the calling thread.
func (h *TunHolder) create() error {
	t := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: h.name},
		Mode:       netlink.TUNTAP_MODE_TUN,
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE,
		NonPersist: true,
		Queues:     1,
	}
	if err := netlink.LinkAdd(t); err != nil {
		return tunError(h.name, err)
	}
	h.link, h.fds = t, t.Fds
	if err := netlink.LinkSetUp(t); err != nil {
		h.closeFds()
		return fmt.Errorf("set VIP device %s up: %w", h.name, err)
	}
	return nil
}

// tunError says what failed creating the tun device name. The tun
// driver's absence shows only as an errno from opening /dev/net/tun
// (netlink returns it bare): ENOENT without the device node, ENODEV with
// the node but without the module.
func tunError(name string, err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("create VIP device %s: no tun device: is the tun module loaded? (/dev/net/tun: %w; or set vip_holder = \"interface\")", name, err)
	}
	return fmt.Errorf("create VIP device %s: %w", name, err)
}

// Name is the device's name.
func (h *TunHolder) Name() string { return h.name }

// Watch reads the device until ctx is done (then it returns nil) or
// reading fails, which says the device is gone: deleted by hand (the
// kernel then fails reads with EBADFD), with every VIP on it. Nothing is
// routed to the device (its addresses are local), so the packets read,
// if any, are dropped as the kernel would drop them unread.
func (h *TunHolder) Watch(ctx context.Context) error {
	f := h.fds[0]
	// A deadline in the past ends the read without closing the device,
	// as NDResponder.Run does; the next Watch clears it.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("watch VIP device %s: %w", h.name, err)
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 1<<16)
	for {
		if _, err := f.Read(buf); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("VIP device %s failed, its VIPs gone: %w", h.name, err)
		}
	}
}

// Reopen replaces a device that Watch found gone with a new one of the
// same name, in the same namespace, without VIPs.
func (h *TunHolder) Reopen() error {
	h.closeFds()
	return inNamespace(h.ns, h.create)
}

func (h *TunHolder) closeFds() error {
	var errs []error
	for _, f := range h.fds {
		errs = append(errs, f.Close())
	}
	h.fds = nil
	return errors.Join(errs...)
}

// Close releases the device; the kernel removes it and its VIPs.
func (h *TunHolder) Close() error {
	err := h.closeFds()
	h.ns.Close()
	return err
}

// ndConn is the responder's socket (*ndp.Conn).
type ndConn interface {
	ReadFrom() (ndp.Message, *ipv6.ControlMessage, netip.Addr, error)
	WriteTo(msg ndp.Message, cm *ipv6.ControlMessage, dst netip.Addr) error
	JoinGroup(group netip.Addr) error
	SetReadDeadline(t time.Time) error
	Close() error
}

// NDResponder answers IPv6 neighbour solicitations for VIPs held on a
// TunHolder, on the interface clients reach them through: one per
// interface, for the VIPs of every holder on it that holds them now. Its
// socket also sends the unsolicited advertisements (it is an Announcer's
// NDP). When
// reading fails, Run returns the error and the next Run opens a new
// socket: a responder that stays dead leaves a master's IPv6 VIPs
// unanswered, so its owner must see the failure and retry.
type NDResponder struct {
	log *slog.Logger
	mac net.HardwareAddr
	// listen opens a new socket on the interface, in its namespace.
	listen func() (ndConn, error)
	// answer is the set answered for: the VIPs held now. A backup
	// answering solicitations would pull clients to a host that drops
	// their packets.
	answer atomic.Pointer[map[netip.Addr]bool]

	// mu guards conn, joined and broken against a reopening Run.
	mu   sync.Mutex
	conn ndConn
	// joined are the VIPs whose solicited-node groups conn has joined, to
	// join again on a new socket.
	joined map[netip.Addr]bool
	// broken says the last Run failed reading conn: the next one opens a
	// new socket. conn stays open meanwhile, for announcements.
	broken bool
}

// Answer replaces the set of VIPs answered for; each must have been
// joined (Join) first.
func (r *NDResponder) Answer(vips map[netip.Addr]bool) { r.answer.Store(&vips) }

// NewNDResponder listens for solicitations on ifi. Like
// NewTunHolder it must run in the VIPs' namespace; a socket opened again
// after a failure is opened in that namespace too.
func NewNDResponder(log *slog.Logger, ifi *net.Interface) (*NDResponder, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("neighbour discovery on %s: network namespace: %w", ifi.Name, err)
	}
	name := ifi.Name
	listen := func() (ndConn, error) {
		var c *ndp.Conn
		err := inNamespace(ns, func() error {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			c, _, err = ndp.Listen(ifi, ndp.LinkLocal)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("neighbour discovery on %s: %w", name, err)
		}
		return c, nil
	}
	r, err := newNDResponder(log, ifi, listen)
	if err != nil {
		ns.Close()
		return nil, err
	}
	// The namespace handle lives as long as the responder may reopen.
	runtime.AddCleanup(r, func(ns netns.NsHandle) { ns.Close() }, ns)
	return r, nil
}

// inNamespace runs f on a thread in ns: a new thread when ns is not the
// calling thread's, locked and never unlocked, so that it dies with its
// goroutine instead of going back to the pool in the wrong namespace.
func inNamespace(ns netns.NsHandle, f func() error) error {
	if cur, err := netns.Get(); err == nil {
		same := cur.Equal(ns)
		cur.Close()
		if same {
			return f()
		}
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// newNDResponder is NewNDResponder with the socket from listen.
func newNDResponder(log *slog.Logger, ifi *net.Interface, listen func() (ndConn, error)) (*NDResponder, error) {
	conn, err := listen()
	if err != nil {
		return nil, err
	}
	r := &NDResponder{log: log, conn: conn, mac: ifi.HardwareAddr, listen: listen, joined: map[netip.Addr]bool{}}
	r.Answer(nil)
	return r, nil
}

// Join joins the solicited-node groups of vips not joined yet, so that
// their solicitations reach the responder. Groups stay joined when a VIP
// goes (harmless, and shared by every address with the same low 24 bits).
func (r *NDResponder) Join(vips []netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range vips {
		if r.joined[v] {
			continue
		}
		if err := joinSolicited(r.conn, v); err != nil {
			return err
		}
		r.joined[v] = true
	}
	return nil
}

func joinSolicited(c ndConn, v netip.Addr) error {
	snm, err := ndp.SolicitedNodeMulticast(v)
	if err == nil {
		err = c.JoinGroup(snm)
	}
	if err != nil {
		return fmt.Errorf("join the solicited-node group of %s: %w", v, err)
	}
	return nil
}

// WriteTo sends msg on the responder's current socket, so that an
// Announcer keeps working across a reopening.
func (r *NDResponder) WriteTo(msg ndp.Message, cm *ipv6.ControlMessage, dst netip.Addr) error {
	r.mu.Lock()
	c := r.conn
	r.mu.Unlock()
	return c.WriteTo(msg, cm, dst)
}

// Close closes the responder's socket.
func (r *NDResponder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conn.Close()
}

// ready returns the socket to read, opening a new one (and joining the
// VIPs' groups on it) if the last Run failed.
func (r *NDResponder) ready() (ndConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.broken {
		return r.conn, nil
	}
	c, err := r.listen()
	if err != nil {
		return nil, fmt.Errorf("reopen: %w", err)
	}
	for v := range r.joined {
		if err := joinSolicited(c, v); err != nil {
			c.Close()
			return nil, fmt.Errorf("reopen: %w", err)
		}
	}
	old := r.conn
	r.conn, r.broken = c, false
	old.Close()
	r.log.Info("neighbour responder socket reopened")
	return c, nil
}

// Run answers solicitations until ctx is done (then it returns nil) or
// reading fails (then the error, and the next Run opens a new socket).
func (r *NDResponder) Run(ctx context.Context) error {
	conn, err := r.ready()
	if err != nil {
		return err
	}
	// A deadline in the past ends the read without closing the socket,
	// which Announce still uses; the next Run clears it.
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return r.fail(conn, fmt.Errorf("clear read deadline: %w", err))
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		msg, _, src, err := conn.ReadFrom()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return r.fail(conn, fmt.Errorf("read neighbour solicitations: %w", err))
		}
		ns, ok := msg.(*ndp.NeighborSolicitation)
		if !ok || !(*r.answer.Load())[ns.TargetAddress] {
			continue
		}
		na := &ndp.NeighborAdvertisement{
			Solicited:     !src.IsUnspecified(),
			Override:      true,
			TargetAddress: ns.TargetAddress,
			Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.mac}},
		}
		dst := src
		if src.IsUnspecified() {
			// RFC 4861 7.2.4: a solicitation from the unspecified address
			// (duplicate address detection) is answered to all nodes.
			dst = netip.IPv6LinkLocalAllNodes()
		}
		if err := conn.WriteTo(na, nil, dst); err != nil {
			r.log.Warn("answer neighbour solicitation", "vip", ns.TargetAddress.String(), "to", dst.String(), "error", err)
		}
	}
}

// fail marks conn broken, so the next Run reopens, and returns err.
func (r *NDResponder) fail(conn ndConn, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == conn {
		r.broken = true
	}
	return err
}
