// Package vip moves virtual IP addresses for VRRP: it adds them to an
// interface with netlink when this director becomes master, announces them
// (gratuitous ARP for IPv4, unsolicited neighbour advertisements for IPv6)
// so that switches and neighbours learn the new owner at once, and removes
// them when it stops being master.
package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Addrs is the part of a netlink handle Manager needs; *netlink.Handle
// (opened in the right namespace) satisfies it.
type Addrs interface {
	LinkByName(name string) (netlink.Link, error)
	AddrReplace(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
}

// Announcer sends the gratuitous ARP and unsolicited neighbour
// advertisements that tell a link a VIP has moved to this host.
type Announcer struct {
	// ARP carries Ethernet frames of type ARP on the interface (an AF_PACKET
	// socket bound to it, e.g. from github.com/mdlayher/packet); nil when the
	// instance has no IPv4 VIP.
	ARP net.PacketConn
	// NDP sends neighbour advertisements on the interface; nil when the
	// instance has no IPv6 VIP.
	NDP NDPConn
	// HardwareAddr is the interface's MAC address, announced as the VIPs'.
	HardwareAddr net.HardwareAddr
}

// NDPConn is a socket that sends neighbour advertisements: an *ndp.Conn,
// or an NDResponder, which keeps sending across the reopening of its own
// socket. Close is for its owner; the Announcer never closes it.
type NDPConn interface {
	WriteTo(msg ndp.Message, cm *ipv6.ControlMessage, dst netip.Addr) error
	Close() error
}

// addrFunc converts a MAC address to the net.Addr the ARP conn's WriteTo
// wants (for github.com/mdlayher/packet, a *packet.Addr).
type addrFunc func(net.HardwareAddr) net.Addr

// Announce sends one gratuitous ARP (IPv4) or unsolicited neighbour
// advertisement (IPv6) for addr.
func (a *Announcer) Announce(addr netip.Addr, to addrFunc) error {
	if addr.Is4() {
		if a.ARP == nil {
			return fmt.Errorf("announce %s: no ARP socket", addr)
		}
		// A gratuitous ARP request (sender = target = VIP, to broadcast),
		// as keepalived sends: hosts that ignore unsolicited replies still
		// update their caches from a request.
		p, err := arp.NewPacket(arp.OperationRequest, a.HardwareAddr, addr, ethernet.Broadcast, addr)
		if err != nil {
			return fmt.Errorf("gratuitous ARP for %s: %w", addr, err)
		}
		pb, err := p.MarshalBinary()
		if err != nil {
			return fmt.Errorf("gratuitous ARP for %s: %w", addr, err)
		}
		f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: a.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
		fb, err := f.MarshalBinary()
		if err != nil {
			return fmt.Errorf("gratuitous ARP for %s: %w", addr, err)
		}
		if _, err := a.ARP.WriteTo(fb, to(ethernet.Broadcast)); err != nil {
			return fmt.Errorf("send gratuitous ARP for %s: %w", addr, err)
		}
		return nil
	}
	if a.NDP == nil {
		return fmt.Errorf("announce %s: no NDP socket", addr)
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: addr,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: a.HardwareAddr}},
	}
	if err := a.NDP.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("send unsolicited neighbour advertisement for %s: %w", addr, err)
	}
	return nil
}

// Manager holds one VRRP instance's VIPs on one interface.
type Manager struct {
	log   *slog.Logger
	nl    Addrs
	iface string
	vips  []netip.Prefix
	ann   *Announcer
	to    addrFunc
	// Repeat is how many announcements each VIP gets when acquired, Gap
	// the pause between them; 0 sends them back to back (keepalived:
	// garp_master_repeat 5, vrrp_garp_interval 0). Set them before use;
	// Reconfigure changes them later.
	Repeat int
	Gap    time.Duration
	// Lifetime, when set, gives every VIP a finite lifetime (whole seconds:
	// the kernel counts IPv4 lifetimes in seconds) that Refresh renews. A
	// daemon that hangs stops renewing, and the kernel removes its VIPs.
	Lifetime time.Duration
	// link is the interface as Acquire found it, so that the frequent
	// Refresh costs one netlink request per VIP and no lookup. Acquire,
	// Refresh, Release and Reconfigure are called in order from one
	// goroutine.
	link netlink.Link
	// mu guards vips, Repeat and Gap against Reconfigure for Announce and
	// Held, which other goroutines call.
	mu sync.Mutex
}

// current returns the VIPs, the announcement count and the gap.
func (m *Manager) current() ([]netip.Prefix, int, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vips, m.Repeat, m.Gap
}

// pause waits gap before the next announcement of a burst; false if ctx
// ended first. A zero gap does not yield: back-to-back announcements
// leave together, before anything else the process has to do.
func pause(ctx context.Context, gap time.Duration) bool {
	if gap <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(gap)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Reconfigure takes a reload's VIPs, announcement count and gap, and
// lifetime. While held (the instance is master) it removes the VIPs
// dropped, adds the new ones with the new lifetime and announces those
// Repeat times; otherwise it only remembers them for the next Acquire.
func (m *Manager) Reconfigure(ctx context.Context, vips []netip.Prefix, repeat int, gap, lifetime time.Duration, held bool) error {
	m.mu.Lock()
	old := m.vips
	m.vips, m.Repeat, m.Gap, m.Lifetime = slices.Clone(vips), repeat, gap, lifetime
	m.mu.Unlock()
	if !held {
		return nil
	}
	if err := m.lookup("reconfigure"); err != nil {
		return err
	}
	var errs []error
	// Removals first: a VIP whose prefix length changed is removed and
	// added again.
	for _, p := range old {
		if slices.Contains(vips, p) {
			continue
		}
		err := m.nl.AddrDel(m.link, m.nlAddr(p))
		switch {
		case err == nil:
			m.log.Info("VIP removed", "op", "reload", "vip", p.String(), "interface", m.iface)
		case errors.Is(err, errHeldElsewhere):
			m.log.Info("VIP kept: another vrrp_instance holds it too", "op", "reload", "vip", p.String(), "interface", m.iface)
		case errors.Is(err, unix.EADDRNOTAVAIL), errors.Is(err, unix.ENOENT):
		default:
			errs = append(errs, fmt.Errorf("remove VIP %s from %s: %w", p, m.iface, err))
		}
	}
	var added []netip.Prefix
	for _, p := range vips {
		// Replacing a kept VIP renews it with the new lifetime.
		if err := m.nl.AddrReplace(m.link, m.nlAddr(p)); err != nil {
			errs = append(errs, fmt.Errorf("add VIP %s to %s: %w", p, m.iface, err))
			continue
		}
		if !slices.Contains(old, p) {
			added = append(added, p)
			m.log.Info("VIP added", "op", "reload", "vip", p.String(), "interface", m.iface)
		}
	}
	if m.ann == nil || len(added) == 0 {
		return errors.Join(errs...)
	}
	for i := 0; i < repeat; i++ {
		if i > 0 && !pause(ctx, gap) {
			return errors.Join(append(errs, ctx.Err())...)
		}
		for _, p := range added {
			if err := m.ann.Announce(p.Addr(), m.to); err != nil && i == 0 {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// NewManager returns a Manager for vips on iface. ann may be nil (no
// announcements; tests of address handling only). to converts a MAC to the
// address type the ARP conn wants (for mdlayher/packet: func(h) net.Addr {
// return &packet.Addr{HardwareAddr: h} }).
func NewManager(log *slog.Logger, nl Addrs, iface string, vips []netip.Prefix, ann *Announcer, to func(net.HardwareAddr) net.Addr) *Manager {
	return &Manager{log: log, nl: nl, iface: iface, vips: vips, ann: ann, to: to, Repeat: 5}
}

func (m *Manager) nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		// A VIP moving between directors must be usable at once: duplicate
		// address detection would hold it tentative for a second or more,
		// and the previous master is the "duplicate" it would find.
		a.Flags = unix.IFA_F_NODAD
	}
	if m.Lifetime > 0 {
		secs := int((m.Lifetime + time.Second - 1) / time.Second)
		a.ValidLft, a.PreferedLft = secs, secs
	}
	return a
}

// Refresh renews the VIPs' lifetimes (see Lifetime): one netlink request
// per VIP, on the interface Acquire found. If that interface has gone (a
// device deleted and created again by name), it looks it up once more.
func (m *Manager) Refresh() error {
	if m.link == nil {
		if err := m.lookup("refresh"); err != nil {
			return err
		}
	}
	var errs []error
	for _, p := range m.vips {
		if err := m.replace("refresh", p); err != nil {
			errs = append(errs, fmt.Errorf("refresh VIP %s on %s: %w", p, m.iface, err))
		}
	}
	return errors.Join(errs...)
}

// replace adds or renews p on the interface as last found, looking it up
// again if it has gone (a device deleted and created again by name).
func (m *Manager) replace(op string, p netip.Prefix) error {
	err := m.nl.AddrReplace(m.link, m.nlAddr(p))
	if errors.Is(err, unix.ENODEV) {
		if err = m.lookup(op); err == nil {
			err = m.nl.AddrReplace(m.link, m.nlAddr(p))
		}
	}
	return err
}

// Prepare finds the interface now, so that Take, when this host becomes
// master, goes straight to adding the VIPs.
func (m *Manager) Prepare() error { return m.lookup("prepare") }

// lookup finds the interface by name for op.
func (m *Manager) lookup(op string) error {
	link, err := m.nl.LinkByName(m.iface)
	if err != nil {
		m.link = nil
		return fmt.Errorf("%s VIPs: interface %s: %w", op, m.iface, err)
	}
	m.link = link
	return nil
}

// Acquire puts every VIP on the interface (a VIP already there, e.g. left
// by a crash, is replaced in place, not duplicated) and announces each
// Repeat times. It returns after the announcements or when ctx ends.
func (m *Manager) Acquire(ctx context.Context) error {
	err := m.Take()
	return errors.Join(err, m.FollowUp(ctx))
}

// Take adds the VIPs and sends the first announcement, or with no Gap
// the whole burst: the part of Acquire that decides when clients come
// back, so that a caller can do it at once and leave FollowUp to another
// goroutine.
func (m *Manager) Take() error {
	// Taking over is the moment every millisecond counts: the interface
	// found before is used without a lookup (replace finds it again if it
	// has gone), and the first announcement goes before the logging.
	if m.link == nil {
		if err := m.lookup("acquire"); err != nil {
			return err
		}
	}
	vips, repeat, gap := m.current()
	var errs []error
	var added []netip.Prefix
	for _, p := range vips {
		if err := m.replace("acquire", p); err != nil {
			errs = append(errs, fmt.Errorf("add VIP %s to %s: %w", p, m.iface, err))
			continue
		}
		added = append(added, p)
	}
	if m.ann != nil {
		err := m.Announce()
		if err != nil {
			errs = append(errs, err)
		}
		// Back to back, the repeats go now: the runtime may not return to
		// a goroutine handed them for several milliseconds, and they are
		// the copies that count when the first is lost.
		for i := 1; i < repeat && gap <= 0 && err == nil; i++ {
			m.Announce()
		}
	}
	for _, p := range added {
		m.log.Info("VIP added", "op", "acquire", "vip", p.String(), "interface", m.iface)
	}
	return errors.Join(errs...)
}

// FollowUp sends the announcements after Take's first, Gap apart, until
// there were Repeat of them or ctx is done. With no Gap, Take sent them.
func (m *Manager) FollowUp(ctx context.Context) error {
	_, repeat, gap := m.current()
	if m.ann == nil || gap <= 0 {
		return nil
	}
	for i := 1; i < repeat; i++ {
		if !pause(ctx, gap) {
			return ctx.Err()
		}
		// Errors of the repeats were those of the first.
		m.Announce()
	}
	return nil
}

// Announce sends one announcement for every VIP; for a periodic refresh
// (keepalived's garp_master_refresh).
func (m *Manager) Announce() error {
	vips, _, _ := m.current()
	var errs []error
	for _, p := range vips {
		if err := m.ann.Announce(p.Addr(), m.to); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Release removes every VIP from the interface; one already gone is fine.
func (m *Manager) Release() error {
	link, err := m.nl.LinkByName(m.iface)
	if err != nil {
		return fmt.Errorf("release VIPs: interface %s: %w", m.iface, err)
	}
	var errs []error
	for _, p := range m.vips {
		err := m.nl.AddrDel(link, m.nlAddr(p))
		switch {
		case err == nil:
			m.log.Info("VIP removed", "op", "release", "vip", p.String(), "interface", m.iface)
		case errors.Is(err, errHeldElsewhere):
			m.log.Info("VIP kept: another vrrp_instance holds it too", "op", "release", "vip", p.String(), "interface", m.iface)
		case errors.Is(err, unix.EADDRNOTAVAIL), errors.Is(err, unix.ENOENT):
		default:
			errs = append(errs, fmt.Errorf("remove VIP %s from %s: %w", p, m.iface, err))
		}
	}
	return errors.Join(errs...)
}

// Held reports which of the VIPs are on the interface now, address and
// prefix length both: the same address with another length (a hand-made
// address, or a VIP before a reload changed its length) is not the VIP,
// and Release would not remove it.
func (m *Manager) Held() ([]netip.Prefix, error) {
	link, err := m.nl.LinkByName(m.iface)
	if err != nil {
		return nil, fmt.Errorf("list VIPs: interface %s: %w", m.iface, err)
	}
	addrs, err := m.nl.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", m.iface, err)
	}
	vips, _, _ := m.current()
	var held []netip.Prefix
	for _, p := range vips {
		for _, a := range addrs {
			if a.IPNet == nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			if ones, _ := a.Mask.Size(); ip.Unmap() == p.Addr() && ones == p.Bits() {
				held = append(held, p)
				break
			}
		}
	}
	return held, nil
}
