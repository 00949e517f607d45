package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
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
}

// NewTunHolder creates the tun device name (at most 15 bytes) and sets it
// up. It must run on a thread in the network namespace the VIPs belong to:
// the tun driver creates the device in the namespace of the caller.
func NewTunHolder(name string) (*TunHolder, error) {
	t := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: name},
		Mode:       netlink.TUNTAP_MODE_TUN,
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE,
		NonPersist: true,
		Queues:     1,
	}
	if err := netlink.LinkAdd(t); err != nil {
		return nil, fmt.Errorf("create VIP device %s: %w", name, err)
	}
	h := &TunHolder{name: name, link: t, fds: t.Fds}
	if err := netlink.LinkSetUp(t); err != nil {
		h.Close()
		return nil, fmt.Errorf("set VIP device %s up: %w", name, err)
	}
	return h, nil
}

// Name is the device's name.
func (h *TunHolder) Name() string { return h.name }

// Close releases the device; the kernel removes it and its VIPs.
func (h *TunHolder) Close() error {
	var errs []error
	for _, f := range h.fds {
		errs = append(errs, f.Close())
	}
	h.fds = nil
	return errors.Join(errs...)
}

// NDResponder answers IPv6 neighbour solicitations for VIPs held on a
// TunHolder, on the interface clients reach them through.
type NDResponder struct {
	log  *slog.Logger
	conn *ndp.Conn
	mac  net.HardwareAddr
	// vips is the set answered for; a reload replaces it (SetVIPs).
	vips atomic.Pointer[map[netip.Addr]bool]
	// active is set while this host holds the VIPs: a backup answering
	// solicitations would pull clients to a host that drops their packets.
	active atomic.Bool
}

// SetActive turns answering on (while master) or off.
func (r *NDResponder) SetActive(on bool) { r.active.Store(on) }

// NewNDResponder listens for solicitations of vips on ifi. Like
// NewTunHolder it must run in the VIPs' namespace.
func NewNDResponder(log *slog.Logger, ifi *net.Interface, vips []netip.Addr) (*NDResponder, error) {
	conn, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("neighbour discovery on %s: %w", ifi.Name, err)
	}
	r := &NDResponder{log: log, conn: conn, mac: ifi.HardwareAddr}
	r.vips.Store(&map[netip.Addr]bool{})
	if err := r.SetVIPs(vips); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w on %s", err, ifi.Name)
	}
	return r, nil
}

// SetVIPs replaces the addresses answered for, joining the solicited-node
// groups of the new ones (groups of dropped ones stay joined: harmless,
// and shared by every address with the same low 24 bits).
func (r *NDResponder) SetVIPs(vips []netip.Addr) error {
	set := map[netip.Addr]bool{}
	for _, v := range vips {
		set[v] = true
		if (*r.vips.Load())[v] {
			continue
		}
		snm, err := ndp.SolicitedNodeMulticast(v)
		if err == nil {
			err = r.conn.JoinGroup(snm)
		}
		if err != nil {
			return fmt.Errorf("join the solicited-node group of %s: %w", v, err)
		}
	}
	r.vips.Store(&set)
	return nil
}

// Conn is the responder's socket, for sending unsolicited advertisements
// through an Announcer.
func (r *NDResponder) Conn() *ndp.Conn { return r.conn }

// Run answers solicitations until ctx is done.
func (r *NDResponder) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { r.conn.Close() })
	defer stop()
	for {
		msg, _, src, err := r.conn.ReadFrom()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read neighbour solicitations: %w", err)
		}
		ns, ok := msg.(*ndp.NeighborSolicitation)
		if !ok || !(*r.vips.Load())[ns.TargetAddress] || !r.active.Load() {
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
		if err := r.conn.WriteTo(na, nil, dst); err != nil {
			r.log.Warn("answer neighbour solicitation", "vip", ns.TargetAddress.String(), "to", dst.String(), "error", err)
		}
	}
}
