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

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// Holder is one VRRP instance's hold on its VIPs, built from its
// configuration on the parts a Host shares: the sockets that announce
// them, the tun device or real interface that holds them, and for IPv6
// VIPs on a tun device the neighbour responder that answers for them. Its
// methods act on this instance's VIPs only.
type Holder struct {
	log   *slog.Logger
	mgr   *Manager
	addrs *holderAddrs
	// tun says the VIPs are on a tun device, as host addresses.
	tun bool
	// nd answers for v6 while the VIPs are held (answering); nil unless
	// IPv6 VIPs are on a tun device.
	nd        *ndShare
	v6        []netip.Addr
	answering bool
	// shares are the shared runs Run takes part in: the device's watch
	// and the responder's, at most one each.
	shares  []*runShare
	refresh time.Duration
	// release gives back the shared parts taken, in order.
	release []func() error
	// announcing counts FollowUp's goroutines, which Close waits for.
	announcing sync.WaitGroup
}

// netlinkHandle is the netlink socket a Host shares (*netlink.Handle).
type netlinkHandle interface {
	Addrs
	Close()
}

// netlinkWorker makes a Host's netlink requests on one goroutine of its
// own. vishvananda/netlink reads each reply into a 64 KiB array on the
// caller's stack, so every goroutine that made a request kept a stack of
// 128 KiB: with 100 instances each refreshing its VIPs on its own
// goroutine, stacks were 21.7 MiB of a master's 39.6 MiB RSS. Requests
// on the shared socket were one at a time already (the handle's lock);
// now they are made by one goroutine, which alone carries that stack.
type netlinkWorker struct {
	h netlinkHandle
	// bs takes a refresh pass's requests many to a write (batch.go);
	// nil: one at a time.
	bs   *nl.NetlinkSocket
	reqs chan func()
	done chan struct{}
}

func newNetlinkWorker(h netlinkHandle, bs *nl.NetlinkSocket) *netlinkWorker {
	w := &netlinkWorker{h: h, bs: bs, reqs: make(chan func()), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for f := range w.reqs {
			f()
		}
	}()
	return w
}

// do runs f on the worker and waits for it.
func (w *netlinkWorker) do(f func()) {
	ran := make(chan struct{})
	w.reqs <- func() { f(); close(ran) }
	<-ran
}

func (w *netlinkWorker) LinkByName(name string) (l netlink.Link, err error) {
	w.do(func() { l, err = w.h.LinkByName(name) })
	return l, err
}

func (w *netlinkWorker) AddrReplace(link netlink.Link, addr *netlink.Addr) (err error) {
	w.do(func() { err = w.h.AddrReplace(link, addr) })
	return err
}

func (w *netlinkWorker) AddrDel(link netlink.Link, addr *netlink.Addr) (err error) {
	w.do(func() { err = w.h.AddrDel(link, addr) })
	return err
}

func (w *netlinkWorker) AddrList(link netlink.Link, family int) (addrs []netlink.Addr, err error) {
	w.do(func() { addrs, err = w.h.AddrList(link, family) })
	return addrs, err
}

// batch runs f on the worker; with a batch socket, the Addrs f gets is
// also a multiReplacer.
func (w *netlinkWorker) batch(f func(Addrs)) {
	w.do(func() {
		if w.bs != nil {
			f(batchAddrs{w.h, w.bs})
			return
		}
		f(w.h)
	})
}

// batchAddrs is the worker's handle with its batch socket, for a pass on
// the worker's goroutine.
type batchAddrs struct {
	Addrs
	bs batchSocket
}

func (b batchAddrs) replaceAll(reqs []replaceReq) []error { return replaceAll(b.bs, reqs) }

// Close stops the worker, once no request can come (the Host's last
// user has let go), and closes the handle.
func (w *netlinkWorker) Close() {
	close(w.reqs)
	<-w.done
	w.h.Close()
	if w.bs != nil {
		w.bs.Close()
	}
}

// opener is each step of opening a Holder's parts that can fail for want
// of something on the host; tests replace them to fail one by one.
type opener struct {
	interfaceByName func(name string) (*net.Interface, error)
	netlink         func() (netlinkHandle, error)
	listenARP       func(ifi *net.Interface) (net.PacketConn, error)
	newTun          func(name string) (device, error)
	newND           func(log *slog.Logger, ifi *net.Interface) (*NDResponder, error)
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
			// Without it the refresh makes its requests one at a time.
			bs, _ := openBatchSocket()
			return newNetlinkWorker(h, bs), nil
		},
		listenARP: func(ifi *net.Interface) (net.PacketConn, error) {
			c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		newTun: func(name string) (device, error) {
			d, err := NewTunHolder(name)
			if err != nil {
				return nil, err
			}
			return d, nil
		},
		newND: NewNDResponder,
	}
}

// packetAddr is the address mdlayher/packet's WriteTo wants for a MAC.
func packetAddr(hw net.HardwareAddr) net.Addr { return &packet.Addr{HardwareAddr: hw} }

// OpenHolder prepares cfg's VIP handling on parts of its own (see
// Host.Open): with tunName a device no other holder uses, as each
// instance had before devices were shared.
func OpenHolder(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Holder, error) {
	return NewHost().Open(log, cfg, tunName)
}

// Lifetime is how long a VIP outlives its last refresh: four advert
// intervals, at least 2s (IPv4 lifetimes are whole seconds, and one
// second could expire between two refreshes). A hung daemon, which keeps
// its tun device open and its process alive, loses its VIPs after that.
func Lifetime(advert time.Duration) time.Duration {
	return max(4*advert, 2*time.Second)
}

// Refresh asks for the held VIPs' lifetimes to be renewed; call it
// several times per Lifetime while master. It does not wait: the
// director's holders that ask within a few milliseconds are renewed in
// one pass (Host.refreshPass), which logs what fails. Only what the
// holder still holds then is renewed.
func (h *Holder) Refresh() {
	if h.addrs != nil {
		h.addrs.host.refresh(h.addrs)
	}
}

// Run serves the holder's VIPs until ctx is done, then returns nil: it
// takes part in the shared watch of their tun device and the shared
// neighbour responder of their interface for tun-held IPv6 VIPs, which
// run while any of their holders' Runs does. It holds no VIPs by itself.
// An error means the device or the responder failed, for every holder
// using it: the VIPs are gone or go unanswered, the caller must not stay
// master on this host, and may call Run again, which opens the failed
// part again.
func (h *Holder) Run(ctx context.Context) error {
	// Two channels: a holder takes part in two shared runs at most.
	var runs [2]*run
	var done [2]<-chan struct{}
	for i, s := range h.shares {
		runs[i] = s.join()
		done[i] = runs[i].done
	}
	defer func() {
		for i, s := range h.shares {
			s.leave(runs[i])
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case <-done[0]:
		return runs[0].err
	case <-done[1]:
		return runs[1].err
	}
}

// Serve is Run without a goroutine of the caller's waiting on it: it
// takes part in the same shared runs and returns at once. If one of them
// fails, failed is called with the error Run would return, once, on that
// run's goroutine, unless stop was called before; failed must not block.
// stop leaves the runs; once it returns, failed is not called. An
// instance's VRRP goroutine so serves its VIPs without a second goroutine
// parked for as long as it runs (issue #21).
func (h *Holder) Serve(failed func(error)) (stop func()) {
	var mu sync.Mutex
	done := false
	fire := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		done = true
		failed(err)
	}
	var runs [2]*run
	for i, s := range h.shares {
		runs[i] = s.joinWatch(fire)
	}
	return func() {
		mu.Lock()
		done = true
		mu.Unlock()
		for i, s := range h.shares {
			s.leave(runs[i])
		}
	}
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
		h.answering = true
		h.nd.answer(h, h.v6)
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
		// A failure is retried: the peer's advert that asked for this
		// burst can arrive as our link comes back up, before it carries
		// packets (ENETDOWN), and that peer, yielding, sends no other.
		err := h.mgr.Announce()
		for retry := 0; err != nil && retry < announceRetries; retry++ {
			if !pause(ctx, announceRetry) {
				return
			}
			err = h.mgr.Announce()
		}
		if err != nil {
			h.log.Warn("announce VIPs", "error", err)
			return
		}
	}
}

// announceRetries and announceRetry bound how long Announce keeps trying
// a failed announcement: 2 s, a link's way back up.
const (
	announceRetries = 20
	announceRetry   = 100 * time.Millisecond
)

// Reconfigure takes a reload's VIPs (same family) and announcement
// settings; held says whether the VIPs are held now (see
// Manager.Reconfigure). A new garp_refresh period starts with the next
// acquisition.
func (h *Holder) Reconfigure(ctx context.Context, cfg conf.VRRPInstance, held bool) error {
	h.refresh = cfg.GARPRefresh
	vips := hostPrefixes(cfg.VirtualIPs, h.tun)
	if h.nd != nil {
		v6 := make([]netip.Addr, len(vips))
		for i, p := range vips {
			v6[i] = p.Addr()
		}
		if err := h.nd.r.Join(v6); err != nil {
			return fmt.Errorf("vrrp_instance %s: %w", cfg.Name, err)
		}
		h.v6 = v6
		if h.answering {
			h.nd.answer(h, v6)
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
		h.answering = false
		h.nd.answer(h, nil)
	}
	return h.mgr.Release()
}

// Held reports which VIPs are held now.
func (h *Holder) Held() ([]netip.Prefix, error) { return h.mgr.Held() }

// Close removes the VIPs the holder still holds (unless another holder
// holds them too) and gives back its share of the parts: with the last
// holder of a tun device the kernel removes the device. It waits for the
// announcements of acquisitions whose contexts have ended.
func (h *Holder) Close() error {
	h.announcing.Wait()
	var errs []error
	if h.nd != nil {
		h.nd.answer(h, nil)
	}
	if h.addrs != nil {
		errs = append(errs, h.addrs.removeAll())
	}
	for _, release := range slices.Backward(h.release) {
		errs = append(errs, release())
	}
	h.release = nil
	return errors.Join(errs...)
}
