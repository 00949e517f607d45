package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/vrrp"
)

// Hub shares sockets among the VRRP instances of one process: one
// receiving and one sending socket per interface and address family (a
// link), whatever the number of instances on it. The kernel hands a copy
// of every VRRP packet to every raw socket of the protocol, so one socket
// per instance woke every instance for every advert on the link, and the
// cost grew with the square of the number of instances.
//
// The link's reader hands each advert to the endpoints of its VRID, as
// keepalived does. The alternative, a socket per instance with a classic
// BPF filter on the VRID so that the kernel wakes only its owner, was
// measured too: 100 VRRPv3 instances at 100 ms between two namespaces on
// a veth pair, CPU of each whole process (schedstat) over 20 s on 2
// shared cores, mean of 4-5 runs, backup and master: a socket per
// instance 537 and 212 ms/s (a loaded backup let some instances become
// master); the BPF filter 74 and 128 ms/s; this demultiplexer 69 and 66
// ms/s. The backups are close: the filter spares the wakeups, but the
// kernel still clones every packet for each socket and runs its filter,
// while the demultiplexer costs a goroutine handoff per advert. The master, which receives
// nothing, pays for its 2N sockets (N in the poller) against 2. The
// demultiplexer is also the simpler to keep right: one socket and one
// multicast membership per link, no filter program per family.
//
// An advert is handed from one goroutine to another once: the reader
// queues it on its endpoint, and the instance's loop takes it from
// Endpoint.Queue and decodes it there. Before, a goroutine per instance
// read the queue and decoded into a second queue for the loop, and the
// reader received through the runtime's ordinary system-call path, which
// woke its monitor thread (sysmon) for every advert (see rxSocket.read).
// With the first gone and the second a raw recvmsg, same method as above
// but 10 s windows, 3 alternating runs of each binary, means, 2 cores
// shared with a VM's test run: CPU per advert at 100 instances, the
// master sending 1,000/s (adverts/s from `lvsha status -o json`) and the
// backup receiving them, backup 31.2 -> 22.7 us (701 -> 406 context
// switches/s), master 37.0 -> 32.5 us (its adverts are also encoded once
// now); at one instance, where the daemon's fixed cost dominates, backup
// 3.5 -> 2.5 ms/s, master 3.7 -> 3.6 ms/s. An instance holds 11 KiB less
// for it (heap and stacks: its reading goroutine, 1.5 KiB buffer and
// 64-advert queue gone; 8 more places in this queue). What is left
// (perf): the backup's context switches and scheduler, and the kernel's
// receive; the master's VIP lifetime refreshes (a netlink request per VIP
// every Lifetime/4, a quarter of its CPU at 100 instances) and the
// kernel's delivery of each advert sent over the veth.
//
// A link on which every instance is a backup waiting on its
// Master_Down_Timer reads lazily, when a timer drains it (see sockets and
// Endpoint.SetLazy).
//
// The first Listen on a link opens its sockets; the last endpoint's Close
// closes them. A Hub's methods are safe for concurrent use.
type Hub struct {
	mu    sync.Mutex
	links map[linkKey]*link
	// open opens a link's sockets: openWire, or a test's fake.
	open func(ifi *net.Interface, v6 bool) (wire, error)
}

// NewHub returns a Hub with no link open.
func NewHub() *Hub { return &Hub{links: map[linkKey]*link{}, open: openWire} }

// wire is one link's sockets as its reader and endpoints use them.
type wire interface {
	// receive hands each datagram to each as it arrives, in the order
	// received, until reading fails or the wire closes (the error). A
	// Payload is each's only during the call.
	receive(each func(Datagram)) error
	// receiveNow hands each the datagrams waiting now, without waiting
	// for more; receive's order holds across both.
	receiveNow(each func(Datagram)) error
	writeTo(payload, oob []byte, dst netip.Addr) error
	// setLazy has receive wait only for adverts of priority 0 (true),
	// leaving the rest for receiveNow, or for every datagram (false).
	setLazy(lazy bool) error
	// kernelDrops counts what the kernel dropped for a full buffer.
	kernelDrops() uint64
	join() error
	leave() error
	close() error
}

// linkKey names a link. An interface index means something only within
// its network namespace, and a process may open instances from threads
// in different ones.
type linkKey struct {
	netns uint64
	index int
	name  string
	v6    bool
}

// readBuf is the size of a link's read buffer: larger datagrams would be
// cut short. One per link, not per instance.
const readBuf = 1 << 16

// minAdvert is the shortest datagram the reader routes: VRRP's fixed
// header, in both versions, holds the VRID in its second byte.
const minAdvert = 8

// queueLen bounds each endpoint's queue of adverts not yet read. A
// VRID's master sends one advert per interval, and the instance's loop
// takes them as they come; only an instance stalled for many intervals,
// or a flood, fills it. 16 is 1.6 s of one master at 100 ms, four times
// the longest Master_Down_Interval: an instance stalled that long has
// taken over on its timer already. (Until the loop took adverts from the
// queue itself, a reading goroutine per instance drained it into 64 more
// places; the queue is now all there is.)
const queueLen = 16

// link is the shared receive and send path of one interface and family.
type link struct {
	hub  *Hub
	key  linkKey
	name string
	w    wire
	// done closes when the reader has returned; err, set before, is why.
	done chan struct{}
	err  error

	// refs and multicast (endpoints that use the multicast group) are
	// guarded by the Hub's mu.
	refs, multicast int

	// modeMu guards eager, the count of endpoints that are not lazy, and
	// each endpoint's eager. The link is lazy while eager is 0. Not the Hub's
	// mu: an instance changes it from the reader's goroutine, which the
	// Hub waits for with its mu held when it closes the link.
	modeMu sync.Mutex
	eager  int

	mu sync.Mutex
	// byVRID holds each VRID's endpoints; a slice is replaced, never
	// changed in place, so the reader uses it without the lock.
	byVRID [256][]*Endpoint

	// Short counts datagrams too short to hold a VRRP header; Unknown
	// adverts for a VRID no endpoint on the link has.
	short, unknown atomic.Uint64
}

// run reads the link until its wire fails or closes.
func (l *link) run() {
	l.err = l.w.receive(l.dispatch)
	close(l.done)
}

// dispatch hands d to the endpoints of its VRID. It never blocks.
func (l *link) dispatch(d Datagram) {
	if len(d.Payload) < minAdvert {
		l.short.Add(1)
		return
	}
	l.mu.Lock()
	eps := l.byVRID[d.Payload[1]]
	l.mu.Unlock()
	if len(eps) == 0 {
		l.unknown.Add(1)
		return
	}
	// Once for all the VRID's endpoints, which take the parsed advert
	// with the datagram.
	adv, reason := vrrp.Parse(d.Payload, d.Src, d.Dst, d.HopLimit)
	d.Advert = adv
	for _, e := range eps {
		e.deliver(d, reason)
	}
}

func (l *link) dead() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// setEager counts e as eager or not, and makes the link lazy when no
// endpoint is eager, eager when one is. A wire that cannot change stays
// as it was: eager reading is always right, lazy only cheaper.
func (l *link) setEager(e *Endpoint, eager bool) {
	l.modeMu.Lock()
	defer l.modeMu.Unlock()
	if e.eager == eager {
		return
	}
	e.eager = eager
	if eager {
		l.eager++
	} else {
		l.eager--
	}
	switch {
	case eager && l.eager == 1:
		l.w.setLazy(false)
	case !eager && l.eager == 0:
		l.w.setLazy(true)
	}
}

// Listen opens an endpoint for cfg on the Hub's link of cfg.Interface and
// family, opening the link if it is the first. It must run in the
// network namespace of cfg.Interface.
func (h *Hub) Listen(cfg Config) (*Endpoint, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.VRID == 0 {
		return nil, errors.New("vrrp transport: a VRID is required to share a link")
	}
	var ns unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &ns); err != nil {
		return nil, fmt.Errorf("vrrp transport: network namespace: %w", err)
	}
	key := linkKey{netns: ns.Ino, index: cfg.Interface.Index, name: cfg.Interface.Name, v6: cfg.IPv6}
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.links[key]
	if l == nil || l.dead() {
		// A link whose reader failed stays with its endpoints, which
		// report the failure; a new endpoint gets a new link.
		w, err := h.open(cfg.Interface, cfg.IPv6)
		if err != nil {
			return nil, err
		}
		l = &link{hub: h, key: key, name: cfg.Interface.Name, w: w, done: make(chan struct{})}
		go l.run()
		h.links[key] = l
	}
	e := &Endpoint{link: l, cfg: cfg, oob: sendOOB(cfg.Interface, cfg.Source),
		queue: make(chan Datagram, queueLen), closed: make(chan struct{})}
	if len(cfg.Peers) == 0 {
		if l.multicast == 0 {
			if err := l.w.join(); err != nil {
				if l.refs == 0 {
					h.closeLink(l)
				}
				return nil, err
			}
		}
		l.multicast++
	}
	l.refs++
	l.setEager(e, true)
	l.mu.Lock()
	l.byVRID[cfg.VRID] = append(slices.Clip(l.byVRID[cfg.VRID]), e)
	l.mu.Unlock()
	return e, nil
}

// release takes e off its link, leaves the multicast group if e was the
// last to use it, and closes the link if e was its last endpoint.
func (h *Hub) release(e *Endpoint) error {
	l := e.link
	h.mu.Lock()
	defer h.mu.Unlock()
	l.mu.Lock()
	vrid := e.cfg.VRID
	// A new slice, as the reader may be using the old one.
	var eps []*Endpoint
	for _, x := range l.byVRID[vrid] {
		if x != e {
			eps = append(eps, x)
		}
	}
	l.byVRID[vrid] = eps
	l.mu.Unlock()
	l.refs--
	if l.refs > 0 {
		l.setEager(e, false)
	}
	var err error
	if len(e.cfg.Peers) == 0 {
		l.multicast--
		if l.multicast == 0 && l.refs > 0 && !l.dead() {
			err = l.w.leave()
		}
	}
	if l.refs == 0 {
		err = errors.Join(err, h.closeLink(l))
	}
	return err
}

// closeLink closes l's sockets and waits for its reader. h.mu is held.
func (h *Hub) closeLink(l *link) error {
	if h.links[l.key] == l {
		delete(h.links, l.key)
	}
	err := l.w.close()
	<-l.done
	return err
}

// LinkStats is what a link has dropped before any instance saw it.
type LinkStats struct {
	Interface string `json:"interface"`
	IPv6      bool   `json:"ipv6"`
	// Endpoints counts the instances on the link.
	Endpoints int `json:"instances"`
	// Short counts datagrams too short for a VRRP header, UnknownVRID
	// adverts of a VRID no instance on the link has: another group's, or
	// a peer configured with another virtual_router_id.
	Short       uint64 `json:"short"`
	UnknownVRID uint64 `json:"unknown_vrid"`
	// KernelDrops counts what the kernel dropped because the link's
	// socket was full: the reader fell behind (a stall, a flood). Once
	// it has dropped, the link reads every packet as it comes.
	KernelDrops uint64 `json:"kernel_drops"`
}

// Stats reports each open link. It first reads what waits in each
// link's socket, so that a lazy link's counts, and its instances' state
// and counts, are as of now (see SetLazy); it must not be called with a
// lock an instance's handler takes.
func (h *Hub) Stats() []LinkStats {
	h.mu.Lock()
	links := make([]*link, 0, len(h.links))
	for _, l := range h.links {
		links = append(links, l)
	}
	h.mu.Unlock()
	var out []LinkStats
	for _, l := range links {
		if !l.dead() {
			l.w.receiveNow(l.dispatch)
		}
		h.mu.Lock()
		refs := l.refs
		h.mu.Unlock()
		out = append(out, LinkStats{Interface: l.name, IPv6: l.key.v6, Endpoints: refs,
			Short: l.short.Load(), UnknownVRID: l.unknown.Load(), KernelDrops: l.w.kernelDrops()})
	}
	slices.SortFunc(out, func(a, b LinkStats) int {
		if c := strings.Compare(a.Interface, b.Interface); c != 0 {
			return c
		}
		return cmpBool(a.IPv6, b.IPv6)
	})
	return out
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// Endpoint is one instance's share of a link: it reads the adverts of its
// VRID and sends from its source. Read and WriteTo may be used from
// different goroutines. Its cost is its queue (queueLen Datagrams of 104
// bytes, and the adverts in it) and its config and control message:
// 1.1 KiB of heap measured with a queue of 8 (1.9 KiB with 16), no
// buffer or socket of its own.
type Endpoint struct {
	link *link
	cfg  Config
	// oob is the control message its adverts go out with.
	oob    []byte
	queue  chan Datagram
	closed chan struct{}
	once   sync.Once
	// NotPeer counts adverts dropped because they came from outside the
	// unicast peer list; Own counts our own adverts looped back; Full
	// adverts dropped because the queue was full (the instance did not
	// read in time).
	NotPeer, Own, Full atomic.Uint64
	// invalid counts, by vrrp.DropReason, packets of the endpoint's VRID
	// that are not valid VRRP (vrrp.Parse).
	invalid [vrrp.NumDropReasons]atomic.Uint64
	// handler, when set (SetHandler), takes the endpoint's adverts on the
	// link's reader instead of the queue.
	handler atomic.Pointer[func(Datagram)]
	// eager is whether the link must read as adverts come (see
	// SetLazy); guarded by the link's modeMu.
	eager bool
}

// SetLazy says whether the endpoint's instance can wait for its adverts
// until it calls Drain (true), as a backup can before its
// Master_Down_Timer counts, or needs each as it comes (false, as it opens).
// Adverts of priority 0 come at once either way. The link reads lazily
// while all its endpoints are lazy.
func (e *Endpoint) SetLazy(lazy bool) {
	select {
	case <-e.closed:
		return
	default:
	}
	e.link.setEager(e, !lazy)
}

// SetHandler has the link's reader call f with each valid advert of the
// endpoint's VRID, on the reader's goroutine, instead of queueing it; nil
// goes back to the queue. f gets d.Advert parsed, and must not keep
// d.Payload (the reader's buffer) past its return. f must not block for
// long: every instance on the link waits for it. It must not call Drain,
// which runs on the caller's goroutine and calls f.
//
// A goroutine hand-off per advert (channel send, the receiver's select
// and wakeup) was a quarter of a backup's CPU at 100 instances;
// keepalived steps each advert on the thread that read it.
func (e *Endpoint) SetHandler(f func(Datagram)) {
	if f == nil {
		e.handler.Store(nil)
		return
	}
	e.handler.Store(&f)
}

// deliver queues d, with a copy of its payload, unless it is filtered out,
// invalid (reason, from vrrp.Parse), or the queue is full: the link's
// reader never waits for an instance. Invalid packets are dropped here,
// before the queue: a flood of forged adverts for the instance's own
// VRID (TTL 1, a bad checksum...) filled its 16 places, and the master's
// real adverts were dropped with the flood's (queue_full).
func (e *Endpoint) deliver(d Datagram, reason vrrp.DropReason) {
	switch e.cfg.accept(d.Src) {
	case fromSelf:
		e.Own.Add(1)
		return
	case fromStranger:
		e.NotPeer.Add(1)
		return
	}
	if reason != vrrp.DropNone {
		e.invalid[reason].Add(1)
		return
	}
	if h := e.handler.Load(); h != nil {
		(*h)(d)
		return
	}
	d.Payload = bytes.Clone(d.Payload)
	select {
	case e.queue <- d:
	default:
		e.Full.Add(1)
	}
}

// Drops counts, by reason, the adverts of the endpoint's VRID dropped
// before its instance could read them: "not_peer" (unicast, from outside
// the peer list), "queue_full", and vrrp.Parse's reasons for packets that
// are not valid VRRP ("ttl", "checksum", ...); a reason that never
// happened is left out.
func (e *Endpoint) Drops() map[string]uint64 {
	out := map[string]uint64{}
	for reason, n := range map[string]uint64{"not_peer": e.NotPeer.Load(), "queue_full": e.Full.Load()} {
		if n > 0 {
			out[reason] = n
		}
	}
	for r := range e.invalid {
		if n := e.invalid[r].Load(); n > 0 {
			out[vrrp.DropReason(r).String()] = n
		}
	}
	return out
}

// Read returns the next advert of the endpoint's VRID from a peer, its
// payload copied into buf (cut short if buf is). It fails once the
// endpoint is closed or the link's reading failed.
func (e *Endpoint) Read(buf []byte) (Datagram, error) {
	select {
	case <-e.closed:
		return Datagram{}, fmt.Errorf("read VRRP on %s: %w", e.link.name, net.ErrClosed)
	default:
	}
	select {
	case d := <-e.queue:
		d.Payload = buf[:copy(buf, d.Payload)]
		return d, nil
	case <-e.closed:
		return Datagram{}, fmt.Errorf("read VRRP on %s: %w", e.link.name, net.ErrClosed)
	case <-e.link.done:
		return Datagram{}, e.link.err
	}
}

// Queue is the endpoint's queue itself, for a reader that waits on it
// beside other events: an instance's loop takes its adverts straight from
// the link's reader, one goroutine handoff per advert where a Read in a
// goroutine of its own cost two. It delivers what Read would return, each
// Payload the receiver's to keep. It is never closed: Failed closes when
// nothing more will come.
func (e *Endpoint) Queue() <-chan Datagram { return e.queue }

// Failed closes when reading the endpoint's link has failed; Err then
// says why.
func (e *Endpoint) Failed() <-chan struct{} { return e.link.done }

// Err is why reading the link failed, once Failed has closed; nil before.
func (e *Endpoint) Err() error {
	select {
	case <-e.link.done:
		return e.link.err
	default:
		return nil
	}
}

// Drain hands the link's endpoints, this one's included, every advert
// waiting in the link's socket, before Drain returns. A backup's
// Master_Down_Timer calls it before it counts: after the whole process
// stalled (a loaded host, a paused VM), the runtime may run the expired
// timer before the link's reader, and adverts sent in time would still
// be in the socket, unread. An error is left for the reader to report.
func (e *Endpoint) Drain() {
	if !e.link.dead() {
		e.link.w.receiveNow(e.link.dispatch)
	}
}

// Destinations are where WriteTo sends: the multicast group, or every
// peer.
func (e *Endpoint) Destinations() []netip.Addr { return e.cfg.destinations() }

// WriteTo sends one encoded message to dst from the endpoint's source on
// the link's socket; see Conn.WriteTo.
func (e *Endpoint) WriteTo(payload []byte, dst netip.Addr) error {
	select {
	case <-e.closed:
		return fmt.Errorf("send VRRP to %s on %s: %w", dst, e.link.name, net.ErrClosed)
	default:
	}
	return e.link.w.writeTo(payload, e.oob, dst)
}

// Close takes the endpoint off its link, closing the link's sockets if it
// was the last; a blocked Read returns.
func (e *Endpoint) Close() error {
	err := fmt.Errorf("close VRRP endpoint on %s: %w", e.link.name, net.ErrClosed)
	e.once.Do(func() {
		close(e.closed)
		err = e.link.hub.release(e)
	})
	return err
}
