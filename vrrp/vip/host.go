package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// Host is what the VIP holders of one director share, so that their cost
// grows with its interfaces, not with its instances (issue #21): one
// netlink socket; per interface one ARP socket and one neighbour discovery
// socket, which for tun-held IPv6 VIPs is also the one responder; and one
// tun device per name, holding the VIPs of every holder opened with that
// name. `lvsha run` with 100 instances (50 IPv4, 50 IPv6, vip_holder tun,
// one interface, all master) had, with a holder's own parts each, 100 tun
// devices and 558 descriptors (100 tun, 401 sockets: per instance two for
// adverts, a netlink and an ARP or neighbour discovery socket) in 67 MB
// resident; sharing them, 1 device and 214 descriptors (1 tun, 204
// sockets, 200 of them the adverts') in 29 MB.
//
// Sharing keeps #6's guarantees per instance. The kernel removes a tun
// device, and every VIP on it, when the last descriptor of it closes: a
// killed daemon still leaves none behind. A holder adds and removes only
// its own VIPs, and an address two holders hold stays until both gave it
// up (conf forbids duplicate VIPs only within an instance). A shared part
// that fails (the device deleted, a responder's socket) fails the Run of
// every holder that depends on it, so each instance faults; their next
// Run opens it again.
//
// Each part is opened by the first holder that needs it and closed with
// the last holder that used it, so nobody closes a Host. Its methods are
// safe for concurrent use.
type Host struct {
	open opener

	mu    sync.Mutex
	parts map[string]*part

	// addrMu orders the address changes of all holders, so that one
	// holder's removal and another's addition of the same address reach
	// the kernel in the order counted in addrs, the number of holders
	// that hold each address.
	addrMu sync.Mutex
	addrs  map[addrKey]int

	// refreshMu guards the holders that asked for a lifetime refresh
	// since the last pass, and whether a pass is scheduled.
	refreshMu   sync.Mutex
	refreshWant []*holderAddrs
	refreshDue  bool
	// refreshYield runs before a pass collects the requests
	// (runtime.Gosched; tests hold the pass back with it).
	refreshYield func()
}

// refresh asks for a's VIPs' lifetimes to be renewed in the next pass.
// The pass runs on a goroutine of its own that first yields, so that the
// other masters woken by the same tick (a director's masters send their
// adverts on the same ticks, vrrp.Config.AlignAdverts, and one timerfd
// expiry readies them all) ask before it collects: one pass serves them.
// A timer to wait for them (5 ms) cost a master of one instance two more
// wake-ups a second, a tenth of its idle CPU.
func (h *Host) refresh(a *holderAddrs) {
	h.refreshMu.Lock()
	defer h.refreshMu.Unlock()
	if !a.refreshWanted {
		a.refreshWanted = true
		h.refreshWant = append(h.refreshWant, a)
	}
	if !h.refreshDue {
		h.refreshDue = true
		go func() {
			h.refreshYield()
			h.refreshPass()
		}()
	}
}

// refreshPass renews the lifetimes of every address still held by the
// holders that asked (issue #21): with a lifetime refresh per instance
// each on its own goroutine, a master of 255 instances spent a fifth of
// its CPU (25 of 110 ms/s, 800 of 2,700 context switches a second)
// handing 510 refreshes a second between goroutines; one pass on the
// netlink goroutine makes the same requests back to back. It holds
// addrMu throughout, so an address released before it is not brought
// back, and one released after it goes as usual.
func (h *Host) refreshPass() {
	h.refreshMu.Lock()
	want := h.refreshWant
	h.refreshWant, h.refreshDue = nil, false
	for _, a := range want {
		a.refreshWanted = false
	}
	h.refreshMu.Unlock()
	if len(want) == 0 {
		return
	}
	h.addrMu.Lock()
	defer h.addrMu.Unlock()
	pass := func(nl Addrs) {
		if m, ok := nl.(multiReplacer); ok {
			renewBatched(m, nl, want)
			return
		}
		for _, a := range want {
			if err := a.renew(nl); err != nil {
				a.log.Warn("refresh VIP lifetimes", "error", err)
			}
		}
	}
	// All holders share the Host's one netlink handle.
	if b, ok := want[0].Addrs.(batcher); ok {
		b.batch(pass)
	} else {
		pass(want[0].Addrs)
	}
}

// batcher runs several requests on a netlink handle in one go
// (*netlinkWorker: on its goroutine, without a hand-off per request).
type batcher interface {
	batch(f func(Addrs))
}

// NewHost returns a Host with nothing open yet.
func NewHost() *Host { return newHost(hostOpener()) }

func newHost(o opener) *Host {
	return &Host{open: o, parts: map[string]*part{}, addrs: map[addrKey]int{}, refreshYield: runtime.Gosched}
}

// Open prepares cfg's VIP handling on the parts h shares. Like
// NewTunHolder it must run in the network namespace of cfg.Interface.
// tunName names the tun device when cfg.VIPHolder is "tun" (at most 15
// bytes); holders opened with the same name share the device. An error
// says what is missing (the interface, the tun driver, a socket); what
// was opened for it before is released. log is the director's: the
// holder adds the instance to it, and the shared parts it opens (a
// responder, a device) log with it as they are no one instance's.
func (h *Host) Open(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Holder, error) {
	hd := &Holder{log: log.With("vrrp_instance", cfg.Name, "vrid", cfg.RouterID), refresh: cfg.GARPRefresh}
	if err := h.build(hd, log, cfg, tunName); err != nil {
		hd.Close()
		return nil, fmt.Errorf("vrrp_instance %s: %w", cfg.Name, err)
	}
	return hd, nil
}

// part is one shared resource and the number of holders using it.
type part struct {
	v     any
	users int
	close func() error
}

// use returns the part key, opening it with open if no holder uses it,
// and the function that gives it back, closing it with its last user.
func use[T any](h *Host, key string, open func() (T, func() error, error)) (T, func() error, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.parts[key]
	if p == nil {
		v, closeFn, err := open()
		if err != nil {
			var zero T
			return zero, nil, err
		}
		p = &part{v: v, close: closeFn}
		h.parts[key] = p
	}
	p.users++
	var once sync.Once
	release := func() error {
		var err error
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if p.users--; p.users == 0 {
				delete(h.parts, key)
				err = p.close()
			}
		})
		return err
	}
	return p.v.(T), release, nil
}

// build opens or joins the parts of hd in turn, recording how to give
// each back; on error hd holds those taken so far.
func (h *Host) build(hd *Holder, log *slog.Logger, cfg conf.VRRPInstance, tunName string) error {
	o := h.open
	ifi, err := o.interfaceByName(cfg.Interface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", cfg.Interface, err)
	}
	// Not to keep the netlink dump the address points into alive.
	ifi.HardwareAddr = slices.Clone(ifi.HardwareAddr)
	nl, release, err := use(h, "netlink", func() (netlinkHandle, func() error, error) {
		nl, err := o.netlink()
		if err != nil {
			return nil, nil, err
		}
		return nl, func() error { nl.Close(); return nil }, nil
	})
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	hd.release = append(hd.release, release)
	hd.addrs = &holderAddrs{Addrs: nl, host: h, log: hd.log, held: map[addrKey]heldAddr{}}

	ann := &Announcer{HardwareAddr: ifi.HardwareAddr}
	var v6 []netip.Addr
	for _, p := range cfg.VirtualIPs {
		if p.Addr().Is6() {
			v6 = append(v6, p.Addr())
		}
	}
	if len(v6) < len(cfg.VirtualIPs) {
		arp, release, err := use(h, "arp "+ifi.Name, func() (net.PacketConn, func() error, error) {
			c, err := o.listenARP(ifi)
			if err != nil {
				return nil, nil, err
			}
			return c, c.Close, nil
		})
		if err != nil {
			return fmt.Errorf("ARP socket on %s: %w", cfg.Interface, err)
		}
		hd.release = append(hd.release, release)
		ann.ARP = arp
	}
	iface, vips := cfg.Interface, cfg.VirtualIPs
	tun := cfg.VIPHolder == "tun"
	hd.tun = tun
	if tun {
		dev, release, err := use(h, "tun "+tunName, func() (*devShare, func() error, error) {
			d, err := o.newTun(tunName)
			if err != nil {
				return nil, nil, err
			}
			s := &devShare{log: log, dev: d}
			s.run = newRunShare(s.watch)
			return s, d.Close, nil
		})
		if err != nil {
			return err
		}
		hd.release = append(hd.release, release)
		hd.shares = append(hd.shares, dev.run)
		iface = dev.dev.Name()
		vips = hostPrefixes(cfg.VirtualIPs, true)
	}
	if len(v6) > 0 {
		// The responder's socket also sends the unsolicited advertisements;
		// with the VIPs on the real interface the kernel answers
		// solicitations itself and the responder only announces.
		nd, release, err := use(h, "nd "+ifi.Name, func() (*ndShare, func() error, error) {
			r, err := o.newND(log.With("interface", ifi.Name), ifi)
			if err != nil {
				return nil, nil, err
			}
			return &ndShare{r: r, run: newRunShare(r.Run), answering: map[*Holder][]netip.Addr{}}, r.Close, nil
		})
		if err != nil {
			return err
		}
		hd.release = append(hd.release, release)
		ann.NDP = nd.r
		if tun {
			if err := nd.r.Join(v6); err != nil {
				return fmt.Errorf("%w on %s", err, ifi.Name)
			}
			hd.nd, hd.v6 = nd, v6
			hd.shares = append(hd.shares, nd.run)
		}
	}
	hd.mgr = NewManager(hd.log, hd.addrs, iface, vips, ann, packetAddr)
	hd.mgr.Repeat, hd.mgr.Gap = cfg.GARPRepeat, cfg.GARPInterval
	hd.mgr.Lifetime = Lifetime(cfg.AdvertInterval)
	return hd.mgr.Prepare()
}

// devShare is a tun device as the holders share it: Watch runs while any
// of them runs, and after a failure the next run opens the device again.
type devShare struct {
	log *slog.Logger
	dev device
	run *runShare
	// broken says the last watch failed; only the run touches it.
	broken bool
}

// device holds VIPs (*TunHolder).
type device interface {
	Name() string
	Watch(ctx context.Context) error
	Reopen() error
	Close() error
}

func (s *devShare) watch(ctx context.Context) error {
	if s.broken {
		if err := s.dev.Reopen(); err != nil {
			return fmt.Errorf("create VIP device %s again: %w", s.dev.Name(), err)
		}
		s.broken = false
		s.log.Info("VIP device created again", "device", s.dev.Name())
	}
	err := s.dev.Watch(ctx)
	s.broken = err != nil
	return err
}

// ndShare is an interface's neighbour responder as the holders share it:
// it answers for the VIPs of every holder that holds them on a tun device
// now.
type ndShare struct {
	r   *NDResponder
	run *runShare

	mu        sync.Mutex
	answering map[*Holder][]netip.Addr
}

// answer sets the VIPs answered for hd; nil stops answering for it.
func (s *ndShare) answer(hd *Holder, vips []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if vips == nil {
		delete(s.answering, hd)
	} else {
		s.answering[hd] = vips
	}
	set := map[netip.Addr]bool{}
	for _, vs := range s.answering {
		for _, v := range vs {
			set[v] = true
		}
	}
	s.r.Answer(set)
}

// errHeldElsewhere is holderAddrs.AddrDel's answer for an address another
// holder holds too: it stays.
var errHeldElsewhere = errors.New("held by another instance too")

// addrKey is an address as the kernel tells one from another: by
// interface, address and prefix length.
type addrKey struct {
	link   string
	prefix netip.Prefix
}

func keyOf(link netlink.Link, a *netlink.Addr) addrKey {
	ip, _ := netip.AddrFromSlice(a.IP)
	ones, _ := a.Mask.Size()
	return addrKey{link: link.Attrs().Name, prefix: netip.PrefixFrom(ip.Unmap(), ones)}
}

// holderAddrs is one holder's view of the shared netlink socket: it counts
// the addresses the holder adds, and leaves in place one it removes that
// another holder holds too. Its holder's Manager calls it from one
// goroutine at a time.
type holderAddrs struct {
	Addrs
	host *Host
	log  *slog.Logger
	// held is what the holder holds, each as last added (its lifetime
	// the one a refresh renews); guarded by host.addrMu.
	held map[addrKey]heldAddr
	// refreshWanted says a is in host.refreshWant; guarded by
	// host.refreshMu.
	refreshWanted bool
}

// heldAddr is an address as a holder last added it.
type heldAddr struct {
	link netlink.Link
	addr *netlink.Addr
}

func (a *holderAddrs) AddrReplace(link netlink.Link, addr *netlink.Addr) error {
	k := keyOf(link, addr)
	a.host.addrMu.Lock()
	defer a.host.addrMu.Unlock()
	if err := a.Addrs.AddrReplace(link, addr); err != nil {
		return err
	}
	if _, ok := a.held[k]; !ok {
		a.host.addrs[k]++
	}
	a.held[k] = heldAddr{link: link, addr: addr}
	return nil
}

// renew adds every address a holds again through nl, with the lifetime
// it was last added with; host.addrMu is held. An interface deleted and
// created again by name (a tun device reopened) is looked up once more.
func (a *holderAddrs) renew(nl Addrs) error {
	var errs []error
	for k := range a.held {
		if err := a.renewOne(nl, k, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// renewOne adds k again through nl, unless err, a batch's result for it,
// says the kernel refused it for a reason other than a missing device;
// host.addrMu is held. An interface deleted and created again by name is
// looked up once more.
func (a *holderAddrs) renewOne(nl Addrs, k addrKey, err error) error {
	h := a.held[k]
	if err == nil || errors.Is(err, errNotBatched) {
		err = nl.AddrReplace(h.link, h.addr)
	}
	if errors.Is(err, unix.ENODEV) {
		var link netlink.Link
		if link, err = nl.LinkByName(k.link); err == nil {
			h.link = link
			a.held[k] = h
			err = nl.AddrReplace(h.link, h.addr)
		}
	}
	if err != nil {
		return fmt.Errorf("refresh VIP %s on %s: %w", k.prefix, k.link, err)
	}
	return nil
}

// renewBatched is the refresh pass over want's addresses through m, many
// to a netlink write (replaceAll); what the batch did not make, or made
// on a device since re-created, is made again alone through nl.
// host.addrMu is held.
func renewBatched(m multiReplacer, nl Addrs, want []*holderAddrs) {
	type item struct {
		a *holderAddrs
		k addrKey
	}
	var reqs []replaceReq
	var items []item
	for _, a := range want {
		for k, h := range a.held {
			reqs = append(reqs, replaceReq(h))
			items = append(items, item{a, k})
		}
	}
	failed := map[*holderAddrs][]error{}
	for i, err := range m.replaceAll(reqs) {
		if err == nil {
			continue
		}
		it := items[i]
		if err = it.a.renewOne(nl, it.k, err); err != nil {
			failed[it.a] = append(failed[it.a], err)
		}
	}
	for a, errs := range failed {
		a.log.Warn("refresh VIP lifetimes", "error", errors.Join(errs...))
	}
}

func (a *holderAddrs) AddrDel(link netlink.Link, addr *netlink.Addr) error {
	k := keyOf(link, addr)
	a.host.addrMu.Lock()
	defer a.host.addrMu.Unlock()
	a.drop(k)
	if a.host.addrs[k] > 0 {
		return errHeldElsewhere
	}
	return a.Addrs.AddrDel(link, addr)
}

// drop forgets that the holder holds k; addrMu is held.
func (a *holderAddrs) drop(k addrKey) {
	if _, ok := a.held[k]; !ok {
		return
	}
	delete(a.held, k)
	if a.host.addrs[k]--; a.host.addrs[k] == 0 {
		delete(a.host.addrs, k)
	}
}

// removeAll removes the addresses the holder still holds and no other
// holder does: at Close, what a private device's removal did.
func (a *holderAddrs) removeAll() error {
	a.host.addrMu.Lock()
	held := slices.Collect(maps.Keys(a.held))
	a.host.addrMu.Unlock()
	var errs []error
	for _, k := range held {
		link, err := a.LinkByName(k.link)
		if err != nil {
			// The device gone took the address with it.
			a.host.addrMu.Lock()
			a.drop(k)
			a.host.addrMu.Unlock()
			continue
		}
		p := k.prefix
		err = a.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}})
		if err != nil && !errors.Is(err, errHeldElsewhere) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove VIP %s from %s: %w", p, k.link, err))
		}
	}
	return errors.Join(errs...)
}

// runShare runs fn while at least one holder's Run runs, once for all of
// them: the one reader of a shared socket or device. When fn fails, every
// Run sharing it returns the error, and the next Run starts fn again.
type runShare struct {
	fn func(ctx context.Context) error

	mu  sync.Mutex
	cur *run // nil when fn does not run
}

// run is one call of fn.
type run struct {
	cancel   context.CancelFunc
	done     chan struct{} // closed when fn has returned
	err      error         // fn's error, set before done closes
	users    int
	stopping bool // the last user left and cancelled it
	// ends are called with err when fn returns (Holder.Serve's users).
	ends []func(error)
}

func newRunShare(fn func(ctx context.Context) error) *runShare { return &runShare{fn: fn} }

// join makes the caller a user of the current run, starting one if none
// is going. A run being stopped is waited for: two calls of fn at once
// would share one socket's read deadline.
func (s *runShare) join() *run { return s.joinWatch(nil) }

// joinWatch is join, and has end called with fn's error when the run
// ends, on its goroutine, unless end is nil.
func (s *runShare) joinWatch(end func(error)) *run {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.cur != nil && s.cur.stopping {
		done := s.cur.done
		s.mu.Unlock()
		<-done
		s.mu.Lock()
	}
	if s.cur == nil {
		ctx, cancel := context.WithCancel(context.Background())
		r := &run{cancel: cancel, done: make(chan struct{})}
		s.cur = r
		go func() {
			defer close(r.done)
			defer cancel()
			err := s.fn(ctx)
			if err == nil && ctx.Err() == nil {
				err = errors.New("stopped by itself")
			}
			s.mu.Lock()
			r.err = err
			if s.cur == r {
				s.cur = nil
			}
			ends := r.ends
			s.mu.Unlock()
			for _, end := range ends {
				end(err)
			}
		}()
	}
	s.cur.users++
	if end != nil {
		s.cur.ends = append(s.cur.ends, end)
	}
	return s.cur
}

// leave ends the caller's use of r; the last user stops it and waits for
// it, so that no goroutine outlives the Runs that started it.
func (s *runShare) leave(r *run) {
	s.mu.Lock()
	r.users--
	last := r.users == 0 && s.cur == r
	if last {
		r.stopping = true
	}
	s.mu.Unlock()
	if last {
		r.cancel()
		<-r.done
	}
}
