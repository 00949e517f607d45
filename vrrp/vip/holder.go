package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// Holder is everything one VRRP instance needs to take and give up its
// VIPs, built from its configuration: the sockets that announce them, the
// tun device or real interface that holds them, and for IPv6 VIPs on a tun
// device the neighbour responder that answers for them.
type Holder struct {
	log     *slog.Logger
	mgr     *Manager
	tun     *TunHolder
	nd      *NDResponder
	arp     net.PacketConn
	nl      netlinkHandle
	refresh time.Duration
	// announcing counts FollowUp's goroutines, which Close waits for.
	announcing sync.WaitGroup
}

// netlinkHandle is the netlink socket a Holder owns (*netlink.Handle).
type netlinkHandle interface {
	Addrs
	Close()
}

// opener is each step of opening a Holder that can fail for want of
// something on the host; tests replace them to fail one by one.
type opener struct {
	interfaceByName func(name string) (*net.Interface, error)
	netlink         func() (netlinkHandle, error)
	listenARP       func(ifi *net.Interface) (net.PacketConn, error)
	newTun          func(name string) (*TunHolder, error)
	newND           func(log *slog.Logger, ifi *net.Interface, answer []netip.Addr) (*NDResponder, error)
}

// hostOpener opens the real thing.
func hostOpener() opener {
	return opener{
		interfaceByName: net.InterfaceByName,
		netlink: func() (netlinkHandle, error) {
			h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
			if err != nil {
				return nil, err
			}
			return h, nil
		},
		listenARP: func(ifi *net.Interface) (net.PacketConn, error) {
			c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		newTun: NewTunHolder,
		newND:  NewNDResponder,
	}
}

// OpenHolder prepares cfg's VIP handling. Like NewTunHolder it must run in
// the network namespace of cfg.Interface. tunName names the tun device when
// cfg.VIPHolder is "tun" (at most 15 bytes, unique per instance). An error
// says what is missing (the interface, the tun driver, a socket); what was
// opened before it is closed.
func OpenHolder(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Holder, error) {
	return hostOpener().open(log, cfg, tunName)
}

func (o opener) open(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Holder, error) {
	h, err := o.build(log, cfg, tunName)
	if err != nil {
		// h, not the nil result: the parts opened before the error.
		h.Close()
		return nil, fmt.Errorf("vrrp_instance %s: %w", cfg.Name, err)
	}
	return h, nil
}

// build opens the parts of a Holder in turn; on error the returned Holder
// has those opened so far, for the caller to close.
func (o opener) build(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Holder, error) {
	h := &Holder{log: log, refresh: cfg.GARPRefresh}
	ifi, err := o.interfaceByName(cfg.Interface)
	if err != nil {
		return h, fmt.Errorf("interface %s: %w", cfg.Interface, err)
	}
	if h.nl, err = o.netlink(); err != nil {
		return h, fmt.Errorf("netlink: %w", err)
	}
	ann := &Announcer{HardwareAddr: ifi.HardwareAddr}
	var v6 []netip.Addr
	for _, p := range cfg.VirtualIPs {
		if p.Addr().Is6() {
			v6 = append(v6, p.Addr())
		}
	}
	if len(v6) < len(cfg.VirtualIPs) {
		if h.arp, err = o.listenARP(ifi); err != nil {
			return h, fmt.Errorf("ARP socket on %s: %w", cfg.Interface, err)
		}
		ann.ARP = h.arp
	}
	iface, vips := cfg.Interface, cfg.VirtualIPs
	if cfg.VIPHolder == "tun" {
		if h.tun, err = o.newTun(tunName); err != nil {
			return h, err
		}
		iface = h.tun.Name()
		vips = hostPrefixes(cfg.VirtualIPs, true)
	}
	if len(v6) > 0 {
		// The responder's socket also sends the unsolicited advertisements;
		// with the VIPs on the real interface the kernel answers
		// solicitations itself and the responder only announces.
		var answer []netip.Addr
		if h.tun != nil {
			answer = v6
		}
		if h.nd, err = o.newND(h.log, ifi, answer); err != nil {
			return h, err
		}
		ann.NDP = h.nd
	}
	h.mgr = NewManager(h.log, h.nl, iface, vips, ann, func(hw net.HardwareAddr) net.Addr { return &packet.Addr{HardwareAddr: hw} })
	h.mgr.Repeat, h.mgr.Gap = cfg.GARPRepeat, cfg.GARPInterval
	h.mgr.Lifetime = Lifetime(cfg.AdvertInterval)
	if err := h.mgr.Prepare(); err != nil {
		return h, err
	}
	return h, nil
}

// Lifetime is how long a VIP outlives its last refresh: four advert
// intervals, at least 2s (IPv4 lifetimes are whole seconds, and one
// second could expire between two refreshes). A hung daemon, which keeps
// its tun device open and its process alive, loses its VIPs after that.
func Lifetime(advert time.Duration) time.Duration {
	return max(4*advert, 2*time.Second)
}

// Refresh renews the held VIPs' lifetimes; call it several times per
// Lifetime while master.
func (h *Holder) Refresh() error { return h.mgr.Refresh() }

// Run answers neighbour solicitations for tun-held IPv6 VIPs until ctx is
// done, then returns nil. It holds no VIPs by itself. An error means the
// IPv6 VIPs go unanswered: the caller must not stay master on this host,
// and may call Run again, which opens a new socket.
func (h *Holder) Run(ctx context.Context) error {
	if h.nd == nil {
		<-ctx.Done()
		return nil
	}
	return h.nd.Run(ctx)
}

// secondBurst is when announcements are repeated after becoming master
// (keepalived's garp_master_delay, there 5s): neighbours that took a
// competing announcement last, e.g. from a peer that was master for a
// moment while both started, learn the right owner then.
const secondBurst = time.Second

// Acquire takes the VIPs and announces them; while ctx lives it announces
// them again after secondBurst and, with garp_refresh set, every period.
func (h *Holder) Acquire(ctx context.Context) error {
	err := h.Take()
	return errors.Join(err, h.FollowUp(ctx))
}

// Take adds the VIPs and sends their first announcement, without waiting:
// what a new master does at once.
func (h *Holder) Take() error {
	if h.nd != nil {
		h.nd.SetActive(true)
	}
	return h.mgr.Take()
}

// FollowUp is the rest of Acquire after Take: the repeated announcements,
// then in the background the second burst and the periodic refresh until
// ctx is done.
func (h *Holder) FollowUp(ctx context.Context) error {
	err := h.mgr.FollowUp(ctx)
	refresh := h.refresh
	h.announcing.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(secondBurst):
			h.Announce(ctx)
		}
		if refresh <= 0 {
			return
		}
		t := time.NewTicker(refresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := h.mgr.Announce(); err != nil {
					h.log.Warn("refresh VIP announcements", "error", err)
				}
			}
		}
	})
	return err
}

// Announce sends a burst of announcements for VIPs already held, e.g. when
// a master hears a lower-priority peer that believes itself master
// (keepalived's garp_lower_prio_repeat): that peer's announcements may
// have drawn the clients away.
func (h *Holder) Announce(ctx context.Context) {
	_, repeat, gap := h.mgr.current()
	for n := 0; n < repeat; n++ {
		if n > 0 && !pause(ctx, gap) {
			return
		}
		if err := h.mgr.Announce(); err != nil {
			h.log.Warn("announce VIPs", "error", err)
			return
		}
	}
}

// Reconfigure takes a reload's VIPs (same family) and announcement
// settings; held says whether the VIPs are held now (see
// Manager.Reconfigure). A new garp_refresh period starts with the next
// acquisition.
func (h *Holder) Reconfigure(ctx context.Context, cfg conf.VRRPInstance, held bool) error {
	h.refresh = cfg.GARPRefresh
	vips := hostPrefixes(cfg.VirtualIPs, h.tun != nil)
	if h.nd != nil && h.tun != nil {
		addrs := make([]netip.Addr, len(vips))
		for i, p := range vips {
			addrs[i] = p.Addr()
		}
		if err := h.nd.SetVIPs(addrs); err != nil {
			return fmt.Errorf("vrrp_instance %s: %w", cfg.Name, err)
		}
	}
	return h.mgr.Reconfigure(ctx, vips, cfg.GARPRepeat, cfg.GARPInterval, Lifetime(cfg.AdvertInterval), held)
}

// hostPrefixes is vips as the holder puts them: on a tun device a VIP is a
// host address, so that its subnet's route stays on the real interface.
func hostPrefixes(vips []netip.Prefix, tun bool) []netip.Prefix {
	if !tun {
		return vips
	}
	out := make([]netip.Prefix, len(vips))
	for i, p := range vips {
		out[i] = netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
	}
	return out
}

// Release gives the VIPs up.
func (h *Holder) Release() error {
	if h.nd != nil {
		h.nd.SetActive(false)
	}
	return h.mgr.Release()
}

// Held reports which VIPs are held now.
func (h *Holder) Held() ([]netip.Prefix, error) { return h.mgr.Held() }

// Close releases every resource; with a tun holder the kernel removes the
// device and any VIP still on it. It waits for the announcements of
// acquisitions whose contexts have ended.
func (h *Holder) Close() error {
	h.announcing.Wait()
	var errs []error
	if h.nd != nil {
		errs = append(errs, h.nd.Close())
	}
	if h.arp != nil {
		errs = append(errs, h.arp.Close())
	}
	if h.tun != nil {
		errs = append(errs, h.tun.Close())
	}
	if h.nl != nil {
		h.nl.Close()
	}
	return errors.Join(errs...)
}
