// Package instance runs one configured VRRP instance: it owns the state
// machine (package vrrp) on one goroutine and performs what it asks: adverts
// on the wire (vrrp/transport), VIPs on the host (vrrp/vip) and hooks
// (vrrp/notify), fed by adverts, timers, Send (tracking's fault and
// priority, its sync group's gate), its VIP holder's failures, reloads and
// shutdown.
package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/alarm"
	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/notify"
	"github.com/lvsha/lvsha/vrrp/transport"
	"github.com/lvsha/lvsha/vrrp/vip"
)

// Status is what `lvsha status` shows of an instance.
type Status struct {
	Name           string    `json:"name"`
	Interface      string    `json:"interface"`
	RouterID       int       `json:"router_id"`
	State          string    `json:"state"`
	BasePriority   int       `json:"base_priority"`
	Priority       int       `json:"priority"`
	Master         string    `json:"master,omitempty"` // address of the master last heard (ourselves when master)
	LastAdvert     time.Time `json:"last_advert,omitzero"`
	Transitions    int       `json:"transitions"`
	LastTransition time.Time `json:"last_transition,omitzero"`
	VIPs           []string  `json:"vips"`
	// Dropped counts received packets refused, by reason.
	Dropped map[string]uint64 `json:"dropped,omitempty"`
	// AdvertsSent counts adverts written to the wire, one per
	// destination; AdvertsReceived the valid adverts the state machine
	// was given (those refused are in Dropped). Since the instance opened.
	AdvertsSent     uint64 `json:"adverts_sent"`
	AdvertsReceived uint64 `json:"adverts_received"`
	// HolderFault says the VIP holder's Run failed and has not run again
	// since: the instance is in fault until it does. HolderFailures counts
	// those failures; HolderError is the last one's error.
	HolderFault    bool   `json:"holder_fault,omitempty"`
	HolderFailures int    `json:"holder_failures,omitempty"`
	HolderError    string `json:"holder_error,omitempty"`
	// BFDTakeovers counts takeovers on a BFD session's failure
	// (vrrp.MasterDown); BFDMasterAlive those of them the deposed master's
	// adverts contradicted (vrrp.MasterAlive: BFD lost, master alive).
	BFDTakeovers   int `json:"bfd_takeovers,omitempty"`
	BFDMasterAlive int `json:"bfd_master_alive,omitempty"`
	// SplitBrainYields counts the times this instance gave master up to
	// another master the cluster saw (vrrp.Yield, split_brain =
	// "resolve"); YieldedTo is that master's address while the instance
	// waits, as backup, to hear its adverts again.
	SplitBrainYields int    `json:"split_brain_yields,omitempty"`
	YieldedTo        string `json:"yielded_to,omitempty"`
	// Fault, when set, says why an instance that is not running yet is in
	// FAULT: its interface has no address to send adverts from
	// (ErrNoSource). vrrp/group opens it once one appears.
	Fault string `json:"fault,omitempty"`
	// FaultReasons say what tracking holds the instance in FAULT for:
	// its interface or a tracked one down, the link state unknown, a
	// weight-0 track_exec failing. vrrp/group fills them in.
	FaultReasons []string `json:"fault_reasons,omitempty"`
}

// AdvertConn is the wire as an instance uses it (*transport.Conn). Read
// blocks until a datagram arrives or Close is called. Destinations must
// not change over the conn's life, and WriteTo must not keep payload:
// the instance encodes its adverts once and sends the same bytes again.
type AdvertConn interface {
	Read(buf []byte) (transport.Datagram, error)
	Destinations() []netip.Addr
	WriteTo(payload []byte, dst netip.Addr) error
	Close() error
}

// queuedConn is an AdvertConn whose adverts already wait in a queue
// (*transport.Endpoint: the link's reader queues them). The instance's
// loop takes them from Queue itself, so a received advert costs one
// goroutine handoff, the link reader's to the loop. Any other AdvertConn
// is read by a goroutine of the instance's own that queues what it reads
// (readLoop), a second handoff. Dropping it for shared links, with
// reading them by raw recvmsg, cut a backup's CPU per advert by a
// quarter and each instance by 11 KiB: see transport.Hub for the numbers
// and how they were taken.
type queuedConn interface {
	AdvertConn
	// Queue delivers the adverts Read would, each Payload the
	// receiver's; it is never closed.
	Queue() <-chan transport.Datagram
	// Failed closes when reading has failed; Err then says why.
	Failed() <-chan struct{}
	Err() error
	// Drain queues, before it returns, the adverts that have arrived
	// but that the reader has not read yet.
	Drain()
}

// A shared link's endpoint is read through its queue: were it ever to
// lose a method of queuedConn, instances would fall back to a reading
// goroutine each, silently.
var _ queuedConn = (*transport.Endpoint)(nil)

// wireDrops is an AdvertConn that drops adverts before they are read and
// counts them by reason (*transport.Endpoint: not from a unicast peer, its
// queue full).
type wireDrops interface {
	Drops() map[string]uint64
}

// VIPHolder is where an instance's VIPs live (*vip.Holder). Run serves
// them (vip.Holder answers neighbour solicitations for IPv6 VIPs on a tun
// device) until its context ends; an error means they are unreachable
// from this host, so the instance faults until a later Run keeps running.
type VIPHolder interface {
	Take() error
	FollowUp(ctx context.Context) error
	Acquire(ctx context.Context) error
	Announce(ctx context.Context)
	// Refresh asks for the held VIPs' lifetimes to be renewed, without
	// waiting (vip.Holder renews every master's in one pass).
	Refresh()
	Release() error
	Reconfigure(ctx context.Context, cfg conf.VRRPInstance, held bool) error
	Run(ctx context.Context) error
	Close() error
}

// Instance is one running VRRP instance.
type Instance struct {
	log *slog.Logger
	// name is cfg.Name, for other goroutines: a reload replaces cfg.
	name   string
	cfg    conf.VRRPInstance
	mcfg   vrrp.Config
	fsm    *vrrp.Machine
	conn   AdvertConn
	holder VIPHolder
	hooks  *notify.Runner
	drops  vrrp.Counters
	events chan vrrp.Event
	reconf chan reconfig
	// stopped closes when Run returns.
	stopped chan struct{}
	vipOps  chan vipReq // in order
	// vipPending counts the VIP ops queued or running. They are queued
	// only under stepMu (the loop, or a master's inline tick), so when a
	// holder of stepMu reads zero no VIP op runs, and none will until it
	// queues again.
	vipPending atomic.Int32
	// vipWork performs the VIP ops, in order, on a goroutine that runs
	// only while some are pending (vipWorker): an instance's VIPs change
	// seldom, and a goroutine parked for them in each instance was a
	// stack per instance (issue #21). vipCtx is Run's; no worker starts
	// before Run sets it. acquisitions belong to the one worker running.
	vipWork      sync.WaitGroup
	vipCtx       context.Context
	acquisitions []context.CancelFunc
	// lastReannounce rate-limits re-announcing on lower-priority adverts;
	// reannounceDue, if set, is a re-announcement the limit deferred.
	lastReannounce, reannounceDue time.Time
	// loopTimers counts the wakes the loop served (tests: a master's
	// ticks are served inline, tickInline). stepMu guards it.
	loopTimers int
	// lastRefresh rate-limits renewing the VIPs' lifetimes.
	lastRefresh time.Time
	// lastStep is the time of the last event fed to the machine, which
	// must never see time run back.
	lastStep time.Time
	// dsts are the conn's Destinations, asked once: an endpoint builds
	// the slice on every call.
	dsts []netip.Addr
	// encoded holds the adverts last sent, one per destination in dsts,
	// encoded at priority prio with mcfg (nil: none yet, or mcfg changed),
	// or why one could not be. A master sends the same bytes every
	// interval; encoding them each time cost an Advert, a message and a
	// checksum per advert.
	encoded struct {
		prio uint8
		msgs [][]byte
		errs []error
	}
	// trackFault is the fault last sent through Send (FaultDetected or
	// FaultCleared, from tracking), holderFault the holder's own (its Run
	// failed and has not run again). The machine is in fault while either
	// is: one source's recovery must not clear the other's fault.
	trackFault, holderFault bool
	// stepMu serialises stepping the machine between the loop and a
	// shared link's reader (see loop); it guards fsm and what each step
	// touches, w, inline, which says the reader may step adverts, and
	// lazy, what the instance last told its link (syncLazy).
	stepMu sync.Mutex
	w      *wake
	inline bool
	lazy   bool
	// draining is set while the instance's own timer drains the link
	// (drainAdverts): its adverts then leave the wake to timerFired,
	// which sets it once for the last of them. Set for each, the first
	// (the oldest, a deadline soon after now) re-armed the timer that
	// had just fired, and the later ones were only noted: one more
	// wakeup per drain, for nothing.
	draining bool
	// kick wakes the loop after the reader changed the machine's state.
	kick chan struct{}
	// clock wakes the instance at its deadlines; nil: Go timers (New's
	// instances, whose tests run on synctest's virtual time).
	clock *alarm.Clock

	// source is the advert source, fixed for the instance's life; follow
	// is the Shared's set it joins while it runs (nil without a Shared).
	source netip.Addr
	// ifindex is the interface's index where Open found it; 0 from New.
	ifindex int
	follow  *followers

	mu     sync.Mutex
	status Status
	// heardFrom is the advert source status.Master was last set from
	// (under mu): the string is made again only when it changes.
	heardFrom netip.Addr
	// master is the machine's MasterAddr after the last step and bfd the
	// configuration's, for BFD fast takeover (Follower).
	master netip.Addr
	bfd    *conf.BFD
	// wants is the machine's Wants after the last step, for a sync group;
	// onWants, if set, is told when it changes.
	wants   vrrp.State
	onWants func()
	// onTransition, if set, is told of each transition once Status
	// shows it.
	onTransition func()
}

// Wants is the state the instance would take on its own (see
// vrrp.Machine.Wants), as of its last step.
func (i *Instance) Wants() vrrp.State {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.wants
}

// OnWantsChange registers f, called (from the instance's goroutine, so it
// must not block) whenever Wants changes; nil stops the calls. A reload
// moving the instance between sync groups calls it while it runs.
func (i *Instance) OnWantsChange(f func()) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.onWants = f
}

// OnTransition registers f, called (from the instance's goroutine, so it
// must not block) after every state change, once Status shows the new
// state; nil stops the calls. It lets a consumer follow the election
// (the IPVS sync daemons) without polling Status.
func (i *Instance) OnTransition(f func()) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.onTransition = f
}

// Open prepares cfg: its socket and its VIP holder, on resources of its
// own. It must run on a thread in the network namespace of cfg.Interface.
func Open(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Instance, error) {
	return NewShared().Open(log, cfg, tunName)
}

// open is Open on the resources s shares.
func (s *Shared) open(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Instance, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("vrrp_instance %s: interface %s: %w", cfg.Name, cfg.Interface, err)
	}
	// The address points into the whole netlink dump it was parsed from,
	// which the instance would keep alive for as long as it runs (15 KiB
	// an instance; 1.5 MiB of a director's heap at 100).
	ifi.HardwareAddr = slices.Clone(ifi.HardwareAddr)
	v6 := cfg.VirtualIPs[0].Addr().Is6()
	src := cfg.UnicastSrc
	if !src.IsValid() {
		if src, err = sourceAddr(ifi, v6); err != nil {
			return nil, fmt.Errorf("vrrp_instance %s: %w", cfg.Name, err)
		}
	}
	// Checked before any socket opens.
	if _, err := vrrp.New(machineConfig(cfg, src)); err != nil {
		return nil, fmt.Errorf("vrrp_instance %s: %w", cfg.Name, err)
	}
	conn, err := s.listen(transport.Config{Interface: ifi, IPv6: v6, Source: src, Peers: cfg.UnicastPeers, VRID: uint8(cfg.RouterID)})
	if err != nil {
		return nil, fmt.Errorf("vrrp_instance %s: %w", cfg.Name, err)
	}
	holder, err := s.openHolder(log, cfg, tunName)
	if err != nil {
		conn.Close()
		return nil, err
	}
	i, err := New(log, cfg, src, conn, holder)
	if err != nil {
		return nil, errors.Join(err, conn.Close(), holder.Close())
	}
	i.clock = s.clock
	i.follow = s.follow
	i.ifindex = ifi.Index
	return i, nil
}

// New returns an instance of cfg that sends its adverts from src on conn
// and keeps its VIPs in holder (as seesaw's NewNode takes its HAConn):
// Open passes the real ones, tests fakes. Run, or Close if it never runs,
// closes both; if New fails, they are the caller's to close.
func New(log *slog.Logger, cfg conf.VRRPInstance, src netip.Addr, conn AdvertConn, holder VIPHolder) (*Instance, error) {
	mcfg := machineConfig(cfg, src)
	fsm, err := vrrp.New(mcfg)
	if err != nil {
		return nil, fmt.Errorf("vrrp_instance %s: %w", cfg.Name, err)
	}
	log = log.With("vrrp_instance", cfg.Name, "vrid", cfg.RouterID)
	i := &Instance{
		log: log, name: cfg.Name, cfg: cfg, mcfg: mcfg, fsm: fsm, conn: conn, holder: holder, dsts: conn.Destinations(),
		source: src, bfd: cfg.BFD,
		hooks:   notify.New(log, cfg.Notify),
		events:  make(chan vrrp.Event, 16),
		reconf:  make(chan reconfig),
		stopped: make(chan struct{}),
		vipOps:  make(chan vipReq, 16),
		kick:    make(chan struct{}, 1),
		status: Status{Name: cfg.Name, Interface: cfg.Interface, RouterID: cfg.RouterID, State: vrrp.Initialize.String(),
			BasePriority: cfg.Priority, Priority: cfg.Priority},
	}
	for _, p := range cfg.VirtualIPs {
		i.status.VIPs = append(i.status.VIPs, p.String())
	}
	return i, nil
}

// machineConfig is cfg's state machine configuration, adverts sent from src.
func machineConfig(cfg conf.VRRPInstance, src netip.Addr) vrrp.Config {
	mcfg := vrrp.Config{
		VRID:           uint8(cfg.RouterID),
		Priority:       uint8(cfg.Priority),
		Version:        cfg.Version,
		AdvertInterval: cfg.AdvertInterval,
		NoPreempt:      !cfg.Preempt,
		PreemptDelay:   cfg.PreemptDelay,
		Accept:         cfg.Accept,
		Source:         src,
		// One wakeup per interval for all of a director's masters.
		AlignAdverts: true,
	}
	for _, p := range cfg.VirtualIPs {
		mcfg.Addrs = append(mcfg.Addrs, p.Addr())
	}
	if cfg.AuthPass != "" {
		mcfg.AuthType = vrrp.AuthSimple
		copy(mcfg.AuthData[:], cfg.AuthPass)
	}
	return mcfg
}

// NeedsRestart says why a running instance configured as a cannot become
// b in place (Reconfigure), or "" if it can: what names it on the wire
// (interface, VRID, source, peers) and what holds its VIPs (the device,
// the address family) are fixed when it opens.
func NeedsRestart(a, b conf.VRRPInstance) string {
	switch {
	case a.Name != b.Name:
		return "name changed"
	case a.Interface != b.Interface:
		return "interface changed"
	case a.RouterID != b.RouterID:
		return "router_id changed"
	case a.UnicastSrc != b.UnicastSrc:
		return "unicast_src changed"
	case !slices.Equal(a.UnicastPeers, b.UnicastPeers):
		return "unicast_peers changed"
	case a.VIPHolder != b.VIPHolder:
		return "vip_holder changed"
	case a.VirtualIPs[0].Addr().Is6() != b.VirtualIPs[0].Addr().Is6():
		return "address family of virtual_ips changed"
	}
	return ""
}

// reconfig is a Reconfigure request, answered on done.
type reconfig struct {
	cfg  conf.VRRPInstance
	done chan error
}

// Reconfigure applies cfg to the running instance without leaving its
// state (see vrrp.Machine.Reconfigure): priority, version, advert
// interval, preemption, accept, password, VIPs, announcement settings
// and hooks. A master adds the new VIPs, announces them and removes the
// dropped ones; a backup only remembers them. NeedsRestart(current, cfg)
// must be "". It returns when the machine has taken the change, or with
// ctx's error if the instance does not run.
func (i *Instance) Reconfigure(ctx context.Context, cfg conf.VRRPInstance) error {
	r := reconfig{cfg: cfg, done: make(chan error, 1)}
	select {
	case i.reconf <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-i.stopped:
		return fmt.Errorf("vrrp_instance %s: not running", cfg.Name)
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reconfigure is Reconfigure on the instance's goroutine.
func (i *Instance) reconfigure(cfg conf.VRRPInstance) error {
	if why := NeedsRestart(i.cfg, cfg); why != "" {
		return fmt.Errorf("vrrp_instance %s: %s: the instance must be restarted", cfg.Name, why)
	}
	mcfg := machineConfig(cfg, i.mcfg.Source)
	acts, err := i.fsm.Reconfigure(time.Now(), mcfg)
	if err != nil {
		return fmt.Errorf("vrrp_instance %s: %w", cfg.Name, err)
	}
	old := i.cfg
	i.cfg, i.mcfg = cfg, mcfg
	i.encoded.msgs = nil
	i.hooks.SetHooks(cfg.Notify)
	i.mu.Lock()
	i.bfd = cfg.BFD
	i.status.BasePriority = cfg.Priority
	i.status.VIPs = nil
	for _, p := range cfg.VirtualIPs {
		i.status.VIPs = append(i.status.VIPs, p.String())
	}
	i.mu.Unlock()
	if !slices.Equal(old.VirtualIPs, cfg.VirtualIPs) || old.GARPRepeat != cfg.GARPRepeat || old.GARPInterval != cfg.GARPInterval ||
		old.GARPRefresh != cfg.GARPRefresh || old.AdvertInterval != cfg.AdvertInterval {
		i.queueVIP(vipReq{op: opReconfigure, cfg: &cfg})
	}
	i.perform(time.Now(), acts, false)
	if i.follow != nil { // bfd may have changed
		i.follow.poke()
	}
	i.log.Info("VRRP instance reconfigured in place", "op", "reload", "state", i.fsm.State().String())
	return nil
}

// ErrNoSource is why Open fails on an interface that has no address to
// send adverts from yet: an IPv6 link-local address not yet added (the
// link just came up, or addrgenmode none) or still tentative (DAD
// pending), or no IPv4 address. Unlike a configuration error it passes
// once the address appears, so vrrp/group keeps such an instance in
// fault and opens it again then, as keepalived keeps it in FAULT.
var ErrNoSource = errors.New("no address to send adverts from yet")

// sourceAddr is the address adverts go out from: the interface's first
// IPv4 address, or its link-local IPv6 address (RFC 5798 5.1.2.1). Read
// through netlink rather than ifi.Addrs, which hides the flags: a
// tentative address cannot be sent from (the kernel refuses it as a
// packet's source until DAD has passed), so it is no source yet.
func sourceAddr(ifi *net.Interface, v6 bool) (netip.Addr, error) {
	family := netlink.FAMILY_V4
	if v6 {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: ifi.Index, Name: ifi.Name}}, family)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	var cands []ifAddr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			cands = append(cands, ifAddr{addr: ip.Unmap(), flags: a.Flags})
		}
	}
	return pickSource(ifi.Name, cands, v6)
}

// ifAddr is one address of an interface and its IFA_F_* flags.
type ifAddr struct {
	addr  netip.Addr
	flags int
}

// pickSource is sourceAddr's choice among the interface's addresses: a
// tentative address is skipped unless optimistic (RFC 4429: usable during
// DAD), and one whose DAD failed is never used. It fails with ErrNoSource
// when none is left.
func pickSource(name string, addrs []ifAddr, v6 bool) (netip.Addr, error) {
	tentative := false
	for _, a := range addrs {
		ip := a.addr
		if !(v6 && ip.Is6() && ip.IsLinkLocalUnicast() || !v6 && ip.Is4()) {
			continue
		}
		if a.flags&unix.IFA_F_DADFAILED != 0 || a.flags&unix.IFA_F_TENTATIVE != 0 && a.flags&unix.IFA_F_OPTIMISTIC == 0 {
			tentative = true
			continue
		}
		return ip, nil
	}
	switch {
	case v6 && tentative:
		return netip.Addr{}, fmt.Errorf("%w: %s's IPv6 link-local address is tentative (DAD pending or failed)", ErrNoSource, name)
	case v6:
		return netip.Addr{}, fmt.Errorf("%w: %s has no IPv6 link-local address", ErrNoSource, name)
	}
	return netip.Addr{}, fmt.Errorf("%w: %s has no IPv4 address (or set unicast_src)", ErrNoSource, name)
}

// Name is the instance's configured name.
func (i *Instance) Name() string { return i.name }

// Source is the address the instance sends adverts from, fixed when it
// opened, and the index of the interface it is on (0 when not known).
func (i *Instance) Source() (netip.Addr, int) { return i.source, i.ifindex }

// Status returns a copy of the instance's status.
func (i *Instance) Status() Status {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := i.status
	s.VIPs = append([]string(nil), s.VIPs...)
	s.Dropped = map[string]uint64{}
	for r, n := range i.drops.Snapshot() {
		if n > 0 {
			s.Dropped[vrrp.DropReason(r).String()] = n
		}
	}
	// The link drops invalid packets of the instance's VRID before they
	// reach it, under the same reasons the instance's own checks use.
	if w, ok := i.conn.(wireDrops); ok {
		for r, n := range w.Drops() {
			s.Dropped[r] += n
		}
	}
	return s
}

// Send queues an event for the state machine: SetPriority,
// FaultDetected or FaultCleared (from tracking), GroupGate (from a sync
// group), HoldPreempt (connection sync), MasterDown (BFD), Yield (the
// cluster's split_brain = "resolve"). It returns once the event is queued, not handled. The queue
// holds 16 events and is drained only while the state machine runs, so
// Send blocks while it is full (before Run starts, while the instance's
// goroutine is busy, and after the handover while Run winds down: its
// last VIP release, then the hooks still queued and STOP's) until there
// is room, ctx is done or Run has returned. In the last two cases the
// event may be lost; a stopped instance has no use for it. Tracking's
// FaultCleared ends only tracking's fault: the instance stays in fault
// while its VIP holder is down.
func (i *Instance) Send(ctx context.Context, ev vrrp.Event) {
	select {
	case i.events <- ev:
	case <-ctx.Done():
	case <-i.stopped:
	}
}

// Close releases the socket and VIP holder of an instance that never ran;
// Run releases them itself.
func (i *Instance) Close() error {
	return errors.Join(i.conn.Close(), i.holder.Close())
}

// Run runs the instance until ctx is done, then hands over gracefully: a
// master resigns with priority 0 and keeps its VIPs until the new master's
// first advert (or StopWait), so no request is lost; then everything is
// released. It returns an error if reading adverts fails. Every goroutine
// it starts (hooks, VIP holder, VIP changes, and the advert reader of a
// conn that is not a queuedConn) has ended when it returns.
func (i *Instance) Run(ctx context.Context) error {
	defer close(i.stopped)
	if i.follow != nil {
		i.follow.add(i)
		defer i.follow.remove(i)
	}
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()

	hooksCtx, stopHooks := context.WithCancel(bg)
	i.hooks.Start(hooksCtx)

	holderCtx, stopHolder := context.WithCancel(bg)
	holderc := make(chan error)
	holder := i.superviseHolder(holderCtx, holderc)

	i.vipCtx = bg
	if i.vipPending.Load() > 0 {
		i.startVIPWorker()
	}

	var rd reading
	readStop := make(chan struct{})
	readDone := make(chan struct{})
	if q, ok := i.conn.(queuedConn); ok {
		rd = reading{queue: q.Queue(), failed: q.Failed(), err: q.Err, drain: q.Drain}
		close(readDone)
	} else {
		rd = i.startReading(readStop, readDone)
	}

	err := i.loop(ctx, rd, holderc)

	// The machine is back in Initialize with its release queued: the VIP
	// worker finishes the queue (cancelling an acquisition ends its
	// announcements and refreshes), then the holder stops serving, the
	// reader is unblocked by closing its socket, and the hooks still
	// queued run, then STOP's.
	i.vipWork.Wait()
	for _, c := range i.acquisitions {
		c()
	}
	stopHolder()
	holder.close()
	close(readStop)
	cerr := i.conn.Close()
	<-readDone
	stopHooks()
	i.hooks.Wait()
	i.hooks.Finish(notify.Event{Instance: i.cfg.Name, State: "STOP", Priority: int(i.fsm.Priority())})
	herr := i.holder.Close()
	if err == nil && (cerr != nil || herr != nil) {
		i.log.Warn("close VRRP instance", "error", errors.Join(cerr, herr))
	}
	return err
}

// timerFired runs the machine's timers, after the adverts already queued:
// select picks at random among ready cases, so after a stall (a busy
// host, a GC pause) the Master_Down_Timer and an advert that arrived
// before it expired are ready together, and taking the timer first made
// a backup take over from a live master and give it back a moment later.
// Each advert steps at its kernel receive time, so one that arrived in
// time resets the timer as it would have. Bounded by the queue's size.
//
// An advert can also be later than the timer without being queued yet:
// after a stall of the whole process, the runtime may run the expired
// timer before the link's reader has read the socket. So a timer that is
// not a master's tick first drains the socket into the queues (rd.drain,
// a shared link's), or lets its own reading goroutine run (readLoop).
// Not on a master's tick, one per advert sent: there the timer only
// sends, and an advert read a moment later changes nothing but that one
// advert. A backup's Master_Down_Timer fires only when adverts stop, so
// the drain costs nothing while the master is heard.
func (i *Instance) timerFired(rd reading, oneShot bool) {
	i.drainAdverts(rd)
	i.stepMu.Lock()
	defer i.stepMu.Unlock()
	i.loopTimers++
	// Once for all the adverts drained (see draining); no wake outside
	// the loop (a test's direct call).
	if i.w != nil {
		i.w.set(i.fsm.NextDeadline(), i.fsm.State() == vrrp.Master)
	}
	// A one-shot wake may have come before the deadline it serves now:
	// one moved later (lazily) or by an advert just drained.
	if oneShot && !i.w.expired() {
		return
	}
	i.takeQueued(rd)
	i.step(vrrp.TimerFired{})
}

// drainAdverts has the adverts already received stepped, before an event
// that declares the master dead: the Master_Down_Timer, or BFD's
// MasterDown, which after a stall of this process must not win over an
// advert that proves the master alive. A shared link's drain steps them
// through inlineAdvert, which takes stepMu, so it is called without it;
// what a queue holds is for takeQueued, with it.
func (i *Instance) drainAdverts(rd reading) {
	i.stepMu.Lock()
	master := i.fsm.State() == vrrp.Master
	i.draining = !master && rd.drain != nil
	i.stepMu.Unlock()
	if !master {
		if rd.drain != nil {
			rd.drain()
			i.stepMu.Lock()
			i.draining = false
			i.stepMu.Unlock()
		} else {
			runtime.Gosched()
		}
	}
}

// takeQueued steps the adverts rd's queue holds; stepMu is held.
func (i *Instance) takeQueued(rd reading) {
	adverts := rd.queue
	for range cap(adverts) {
		select {
		case d := <-adverts:
			i.received(d)
		default:
			return
		}
	}
}

// received decodes one datagram and feeds the machine the advert, at
// the kernel's receive time; a malformed one is counted and dropped.
func (i *Instance) received(d transport.Datagram) {
	adv, reason := d.Advert, vrrp.DropNone
	if adv == nil {
		adv, reason = vrrp.Parse(d.Payload, d.Src, d.Dst, d.HopLimit)
	}
	if reason != vrrp.DropNone {
		i.drops.Inc(reason)
		i.log.Debug("advert dropped", "src", d.Src.String(), "reason", reason.String())
		return
	}
	i.stepAt(advertTime(time.Now(), d.At, i.lastStep), vrrp.AdvertReceived{Advert: adv, Src: d.Src})
}

// reading is where the loop takes received datagrams from: queue, until
// failed closes, err then saying why.
type reading struct {
	queue  <-chan transport.Datagram
	failed <-chan struct{}
	err    func() error
	// drain, if set, queues what has arrived and is not read yet.
	drain func()
}

// loop is Run's state machine loop, until the handover is done (nil) or
// reading fails (its error).
//
// On a shared link that takes a handler (inlineConn), adverts do not come
// through the loop: the link's reader steps them itself (inlineAdvert),
// under stepMu, which the loop holds for everything else it does with
// the machine. The loop keeps timers and events.
func (i *Instance) loop(ctx context.Context, rd reading, holderc <-chan error) error {
	i.stepMu.Lock()
	i.step(vrrp.Start{})
	i.w = newClockWake(i.log, i.clock, i.cfg.AdvertInterval)
	if ic, ok := i.conn.(inlineConn); ok && rd.drain != nil {
		i.inline = true
		ic.SetHandler(i.inlineAdvert)
		defer ic.SetHandler(nil)
		i.tickInline(i.w)
	}
	i.stepMu.Unlock()
	defer func() {
		i.stepMu.Lock()
		i.inline = false
		i.syncLazy()
		i.w.close()
		i.stepMu.Unlock()
	}()
	stopping := false
	var stopDeadline <-chan time.Time
	done, failed := ctx.Done(), rd.failed
	for {
		i.stepMu.Lock()
		if stopping && i.fsm.State() == vrrp.Initialize {
			i.stepMu.Unlock()
			return nil
		}
		w := i.w
		w.set(i.fsm.NextDeadline(), i.fsm.State() == vrrp.Master)
		i.syncLazy()
		timerC, tickerC, alarmC := w.timerC(), w.tickerC(), w.alarmC()
		i.stepMu.Unlock()
		select {
		case <-done:
			done = nil
			stopping = true
			i.locked(func() { i.step(vrrp.Shutdown{}) })
			// Bound the handover even if the machine never settles.
			stopDeadline = time.After(3*i.cfg.AdvertInterval + time.Second)
		case <-stopDeadline:
			i.locked(func() { i.step(vrrp.Shutdown{}) })
		case d := <-rd.queue:
			i.locked(func() { i.received(d) })
		case <-timerC:
			i.timerFired(rd, true)
		case <-tickerC:
			i.timerFired(rd, false)
		case <-alarmC:
			i.timerFired(rd, true)
		case <-i.kick:
			// The reader stepped the machine to a state the loop must see.
		case ev := <-i.events:
			_, down := ev.(vrrp.MasterDown)
			if down {
				i.drainAdverts(rd)
			}
			i.locked(func() {
				if down {
					i.takeQueued(rd)
				}
				i.event(ev)
			})
		case err := <-holderc:
			i.locked(func() { i.holderChanged(err) })
		case r := <-i.reconf:
			i.locked(func() {
				interval := i.cfg.AdvertInterval
				r.done <- i.reconfigure(r.cfg)
				if i.cfg.AdvertInterval != interval {
					i.w.close()
					i.w = newClockWake(i.log, i.clock, i.cfg.AdvertInterval)
					if i.inline {
						i.tickInline(i.w)
					}
				}
			})
		case <-failed:
			if !stopping {
				i.locked(func() {
					i.step(vrrp.Shutdown{})
					i.step(vrrp.Shutdown{})
				})
				return fmt.Errorf("vrrp_instance %s: %w", i.cfg.Name, rd.err())
			}
			failed = nil
		}
	}
}

// locked runs f holding stepMu.
func (i *Instance) locked(f func()) {
	i.stepMu.Lock()
	defer i.stepMu.Unlock()
	f()
}

// lazyConn is a shared link's endpoint that can leave adverts in the
// socket until its instance drains it (*transport.Endpoint).
type lazyConn interface {
	SetLazy(bool)
}

// syncLazy tells the link whether the instance needs its adverts as they
// come; stepMu is held. A backup whose Master_Down_Timer runs does not:
// the timer drains the link before it counts (timerFired), and each
// advert steps at its kernel receive time, so adverts read late reset
// the timer as they would have; only a master's resignation (priority 0)
// needs an answer sooner, and the link reads those at once. That saves a
// backup a wakeup per advert, most of its CPU at one instance (see
// transport.sockets). A backup without a timer (after a Yield, or gated
// by its sync group while it wants master) waits for adverts to change
// its mind, and a master answers a higher priority at once: both read
// eagerly, as do the brief states.
func (i *Instance) syncLazy() {
	lazy := i.inline && i.fsm.State() == vrrp.Backup && !i.fsm.NextDeadline().IsZero()
	if lazy == i.lazy {
		return
	}
	if lc, ok := i.conn.(lazyConn); ok {
		i.lazy = lazy
		lc.SetLazy(lazy)
	}
}

// inlineConn is a shared link's endpoint that can hand adverts to a
// handler on its reader (*transport.Endpoint).
type inlineConn interface {
	SetHandler(func(transport.Datagram))
}

// inlineAdvert steps one advert on the link's reader (see loop). It
// re-arms the wake for the machine's new deadline, and wakes the loop if
// the advert ended a graceful stop, which the loop must see to return.
func (i *Instance) inlineAdvert(d transport.Datagram) {
	i.stepMu.Lock()
	defer i.stepMu.Unlock()
	if !i.inline {
		return // before Start or after the loop: the machine takes none
	}
	was := i.fsm.State()
	i.received(d)
	now := i.fsm.State()
	if !i.draining {
		i.w.set(i.fsm.NextDeadline(), now == vrrp.Master)
	}
	i.syncLazy()
	if now != was {
		select {
		case i.kick <- struct{}{}:
		default:
		}
	}
}

// tickInline has a master's ticks on w served on the alarm clock's
// goroutine, as inlineAdvert serves adverts on the link reader's: an
// advert sent with no wakeup of the instance's goroutine, two goroutine
// switches fewer per advert (issue #21). Only with inline adverts: every
// advert the machine must see before its tick has been stepped as it
// was read, so the loop has nothing to take first. stepMu is held.
func (i *Instance) tickInline(w *wake) {
	if w.alarm == nil {
		return
	}
	w.alarm.Inline(func(time.Time) bool {
		// Never wait for stepMu: the loop holds it while it closes a
		// wake, and the last Alarm's Close waits for this goroutine.
		// A wake not taken here reaches the loop as before.
		if !i.stepMu.TryLock() {
			return false
		}
		defer i.stepMu.Unlock()
		// Nor for room in the VIP queue, which a tick may add to: with
		// the queue half full the tick goes to the loop, which may.
		if i.w != w || !i.inline || i.fsm.State() != vrrp.Master || int(i.vipPending.Load()) >= cap(i.vipOps)/2 {
			return false
		}
		w.set(i.fsm.NextDeadline(), true)
		if !w.expired() {
			return true // re-armed for the deadline it serves now
		}
		i.step(vrrp.TimerFired{})
		state := i.fsm.State()
		w.set(i.fsm.NextDeadline(), state == vrrp.Master)
		i.syncLazy()
		if state != vrrp.Master {
			select {
			case i.kick <- struct{}{}:
			default:
			}
		}
		return true
	})
}

// event feeds the machine an event from Send. Tracking's fault events set
// only tracking's share of the fault.
func (i *Instance) event(ev vrrp.Event) {
	switch ev.(type) {
	case vrrp.FaultDetected:
		i.setFault(true, i.holderFault)
	case vrrp.FaultCleared:
		i.setFault(false, i.holderFault)
	default:
		i.step(ev)
	}
}

// setFault records both fault sources and tells the machine when their
// OR changes.
func (i *Instance) setFault(track, holder bool) {
	was := i.trackFault || i.holderFault
	i.trackFault, i.holderFault = track, holder
	i.mu.Lock()
	i.status.HolderFault = holder
	i.mu.Unlock()
	switch now := track || holder; {
	case now && !was:
		i.step(vrrp.FaultDetected{})
	case !now && was:
		i.step(vrrp.FaultCleared{})
	}
}

// holderChanged takes superviseHolder's news: the holder's Run failed
// (err), or runs again (nil).
func (i *Instance) holderChanged(err error) {
	if err == nil {
		i.log.Info("VIP holder runs again, its fault cleared", "op", "holder")
		i.setFault(i.trackFault, false)
		return
	}
	i.mu.Lock()
	i.status.HolderFailures++
	i.status.HolderError = err.Error()
	n := i.status.HolderFailures
	i.mu.Unlock()
	i.log.Error("VIP holder failed: the VIPs are unreachable through this host, fault until it runs again",
		"op", "holder", "error", err, "failures", n)
	i.setFault(i.trackFault, true)
}

// The VIP holder's Run is retried after holderRetryMin, doubling to
// holderRetryMax while it keeps failing; a Run that lasts holderSettle
// counts as running again, and one that lasts holderRetryMax starts the
// backoff over.
const (
	holderRetryMin = 100 * time.Millisecond
	holderRetryMax = 10 * time.Second
	holderSettle   = time.Second
)

// holderServer is a VIPHolder that serves without a goroutine of the
// instance's parked on it (vip.Holder): Serve takes part in what Run
// runs and returns at once; failed is called at most once, with Run's
// error, if that fails, and never once stop has returned.
type holderServer interface {
	Serve(failed func(error)) (stop func())
}

var _ holderServer = (*vip.Holder)(nil)

// holderSupervisor keeps the holder served while the instance runs,
// serving it again after each failure, holderRetryMin later and doubling
// to holderRetryMax. It reports each failure on report, and nil when a
// serve after a failure has lasted holderSettle. A healthy holder costs
// no goroutine here: one runs only from a failure until the holder has
// settled again.
type holderSupervisor struct {
	serve  func(failed func(error)) (stop func())
	ctx    context.Context // ends at shutdown
	report chan<- error
	wg     sync.WaitGroup // the goroutines after failures

	mu      sync.Mutex
	stop    func() // the current serve's; nil after a failure until the retry
	gen     int    // counts serves and failures: a failure of an older serve is stale
	backoff time.Duration
}

func (i *Instance) superviseHolder(ctx context.Context, report chan<- error) *holderSupervisor {
	s := &holderSupervisor{ctx: ctx, report: report, backoff: holderRetryMin}
	if hs, ok := i.holder.(holderServer); ok {
		s.serve = hs.Serve
	} else {
		s.serve = serveByRun(i.holder)
	}
	s.mu.Lock()
	s.serveLocked()
	s.mu.Unlock()
	return s
}

// serveByRun serves a holder that has only Run on a goroutine of its own.
func serveByRun(h VIPHolder) func(failed func(error)) (stop func()) {
	return func(failed func(error)) func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			err := h.Run(ctx)
			if ctx.Err() == nil {
				failed(err)
			}
		}()
		return func() { cancel(); <-done }
	}
}

// serveLocked serves the holder again; s.mu is held. It returns the
// serve's generation.
func (s *holderSupervisor) serveLocked() int {
	s.gen++
	gen, start := s.gen, time.Now()
	s.stop = s.serve(func(err error) { s.failed(gen, start, err) })
	return gen
}

// failed takes the failure of the serve of generation gen, started at
// start; it runs on the holder's goroutine, so it only hands on.
func (s *holderSupervisor) failed(gen int, start time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen || s.ctx.Err() != nil {
		return
	}
	s.gen++
	stop := s.stop
	s.stop = nil
	if err == nil {
		err = errors.New("VIP holder stopped by itself")
	}
	if time.Since(start) >= holderRetryMax {
		s.backoff = holderRetryMin
	}
	backoff := s.backoff
	s.backoff = min(2*s.backoff, holderRetryMax)
	s.wg.Add(1)
	go s.retry(stop, fmt.Errorf("%w (retry in %v)", err, backoff), backoff)
}

// retry leaves the failed serve, reports err, serves again after
// backoff, and reports the recovery once that serve has held for
// holderSettle (a failure meanwhile starts the next retry instead).
func (s *holderSupervisor) retry(stop func(), err error, backoff time.Duration) {
	defer s.wg.Done()
	if stop != nil {
		stop()
	}
	if !s.tell(err) || !s.sleep(backoff) {
		return
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	gen := s.serveLocked()
	s.mu.Unlock()
	if !s.sleep(holderSettle) {
		return
	}
	s.mu.Lock()
	settled := s.gen == gen
	s.mu.Unlock()
	if settled {
		s.tell(nil)
	}
}

func (s *holderSupervisor) tell(err error) bool {
	select {
	case s.report <- err:
		return true
	case <-s.ctx.Done():
		return false
	}
}

func (s *holderSupervisor) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// close ends the supervision, once ctx is done: the current serve stops,
// and the goroutines after failures end.
func (s *holderSupervisor) close() {
	s.mu.Lock()
	s.gen++
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	s.wg.Wait()
}

// wake wakes the instance at the machine's next deadline. A master's
// deadlines come every advert interval (vrrp keeps them on schedule), so
// there a periodic ticker serves them: the runtime re-arms a ticker as it
// fires, while a one-shot timer is re-armed only after the instance has
// run, by when another thread may already sleep in the poller past the
// new deadline and must be woken to shorten its sleep, once per advert.
//
// Other states use a one-shot timer, moved lazily: a backup's
// Master_Down_Timer moves later with every advert, and the runtime keeps
// a timer moved later at its old place in the heap until that old time
// comes, waking the poller (and sysmon) then for nothing. At 100 ms
// adverts that was a wakeup per advert besides the advert's own. So a
// later deadline only is noted (want), and the timer, when it fires
// before want, is re-armed for it: a wakeup per Master_Down_Interval.
//
// On a director's clock (Shared's), an alarm on its timerfd serves every
// deadline instead, and the Go timer and ticker stay stopped.
type wake struct {
	timer   *time.Timer
	ticker  *time.Ticker
	alarm   *alarm.Alarm
	period  time.Duration
	ticking bool
	// at is when the armed timer or the ticker's next tick fires; zero
	// when neither is armed. want is the deadline to serve, at or after
	// at; zero when none.
	at, want time.Time
}

func newWake(period time.Duration) *wake {
	w := &wake{timer: time.NewTimer(time.Hour), ticker: time.NewTicker(period), period: period}
	w.timer.Stop()
	w.ticker.Stop()
	return w
}

// newClockWake is a wake on c's timerfd, or on Go timers if c is nil or
// its timerfd cannot be had.
func newClockWake(log *slog.Logger, c *alarm.Clock, period time.Duration) *wake {
	w := newWake(period)
	if c == nil {
		return w
	}
	a, err := c.NewAlarm()
	if err != nil {
		log.Warn("VRRP timers fall back to Go timers", "error", err)
		return w
	}
	w.alarm = a
	return w
}

// alarmC is the alarm's channel; nil (never ready) without one. timerC
// and tickerC are the Go timers', nil with an alarm: a select skips nil
// channels, and each of its cases costs a lock on every wakeup.
func (w *wake) alarmC() <-chan time.Time {
	if w.alarm == nil {
		return nil
	}
	return w.alarm.C()
}

func (w *wake) timerC() <-chan time.Time {
	if w.alarm != nil {
		return nil
	}
	return w.timer.C
}

func (w *wake) tickerC() <-chan time.Time {
	if w.alarm != nil {
		return nil
	}
	return w.ticker.C
}

// set arms the wake for deadline d (zero: none); periodic says d is a
// master's, one interval after the previous one when in step.
func (w *wake) set(d time.Time, periodic bool) {
	if w.alarm != nil {
		if !d.Equal(w.want) || w.at.IsZero() {
			w.alarm.Set(d)
		}
		w.at, w.want = d, d
		return
	}
	switch {
	case d.IsZero():
		w.stop()
		return
	case d.Equal(w.want) && !w.at.IsZero():
		// Armed already.
	case periodic && d.Equal(w.want.Add(w.period)) && !w.want.IsZero():
		// The schedule goes on. A running ticker's next tick is no
		// earlier than d, since its ticks were each no earlier than the
		// deadline they served; a new one's first tick, one period from
		// now, is no earlier than d because now is past w.want.
		if !w.ticking {
			w.timer.Stop()
			w.ticker.Reset(w.period)
			w.ticking = true
		}
		w.at = d
	case !periodic && !w.ticking && !w.at.IsZero() && d.After(w.at):
		// Later than the armed timer: expired re-arms it when it fires.
	default:
		// A new schedule (or none): one shot, which a master turns into
		// ticks once it has fired. Since Go 1.23 Stop and Reset leave no
		// stale value in the channels.
		w.ticker.Stop()
		w.ticking = false
		w.timer.Reset(max(time.Until(d), 0))
		w.at = d
	}
	w.want = d
}

// expired is told that the timer fired and says whether the deadline it
// serves has come; if not, it re-arms the timer for that deadline.
func (w *wake) expired() bool {
	w.at = time.Time{}
	if left := time.Until(w.want); left > 0 {
		if w.alarm != nil {
			w.alarm.Set(w.want)
		} else {
			w.timer.Reset(left)
		}
		w.at = w.want
		return false
	}
	return true
}

func (w *wake) stop() {
	if w.alarm != nil {
		w.alarm.Set(time.Time{})
	}
	w.timer.Stop()
	w.ticker.Stop()
	w.ticking = false
	w.at, w.want = time.Time{}, time.Time{}
}

// close stops the wake for good, releasing its alarm.
func (w *wake) close() {
	w.stop()
	if w.alarm != nil {
		w.alarm.Close()
		w.alarm = nil
	}
}

// readQueue bounds the datagrams readLoop has read and the loop not yet
// taken, as the shared link's endpoint bounds its queue.
const readQueue = 16

// startReading starts readLoop for an AdvertConn that only reads: a
// socket of the instance's own, or a test's fake. done closes when it
// has returned.
func (i *Instance) startReading(stop <-chan struct{}, done chan<- struct{}) reading {
	queue := make(chan transport.Datagram, readQueue)
	failed := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = i.readLoop(stop, queue)
		close(failed)
	}()
	// err is read only after failed has closed.
	return reading{queue: queue, failed: failed, err: func() error { return err }}
}

// readLoop queues what conn reads, each datagram with a payload of its
// own, until reading fails (its error) or stop closes (nil).
func (i *Instance) readLoop(stop <-chan struct{}, out chan<- transport.Datagram) error {
	buf := make([]byte, 1500)
	for {
		d, err := i.conn.Read(buf)
		if err != nil {
			return err
		}
		d.Payload = slices.Clone(d.Payload)
		select {
		case out <- d:
		case <-stop:
			return nil
		}
	}
}

type vipOp uint8

// vipReq is one VIP change for the VIP worker; cfg is opReconfigure's new
// config, grace opHandOver's wait, taken says that opAcquire's VIPs were
// added and first announced already (see perform).
type vipReq struct {
	op vipOp
	// cfg is a pointer: a config is 440 bytes, and every instance's
	// vipOps holds 16 requests, 7 KiB of buffer for a rare reload.
	cfg   *conf.VRRPInstance
	grace time.Duration
	taken bool
}

// queueVIP queues req for the VIP worker, starting one if none runs; it
// blocks while 16 are pending.
func (i *Instance) queueVIP(req vipReq) {
	if i.vipPending.Add(1) == 1 && i.vipCtx != nil {
		i.startVIPWorker()
	}
	i.vipOps <- req
}

func (i *Instance) startVIPWorker() {
	i.vipWork.Add(1)
	go i.vipWorker()
}

// vipWorker performs the queued VIP ops until none is pending. A worker
// that brought the count to zero ends; the next queueVIP, which sees the
// count leave zero, starts the next one, so one runs at a time and each
// sees what the last one left in acquisitions.
func (i *Instance) vipWorker() {
	defer i.vipWork.Done()
	for {
		i.acquisitions = i.doVIP(i.vipCtx, <-i.vipOps, i.acquisitions)
		if i.vipPending.Add(-1) == 0 {
			return
		}
	}
}

const (
	opAcquire vipOp = iota
	opRelease
	opAnnounce
	// opHandOver releases after handoverGrace: see step.
	opHandOver
	// opReconfigure takes a reload's VIPs and announcement settings.
	opReconfigure
)

// maxAdvertWait bounds how long before its reading an advert may have
// arrived for its arrival time to be used; a longer wait is a wall clock
// that moved, not a slow read. A stalled process reads a second late and
// more (it was 1 s: on a loaded host a backup resumed after a stall of a
// second then stepped its master's adverts at the time it read them,
// after its Master_Down_Timer, and flapped to master and back). A wall
// clock stepped forward by less than this is harmless: advertTime never
// goes back past the previous event.
const maxAdvertWait = 10 * time.Second

// advertTime is when an advert read at now happened: when the kernel
// received it (rx), so that a backup's Master_Down_Timer runs from the
// master's advert itself, not from when this process got round to it
// (wakeups and the hand-off from the reading goroutine; milliseconds on
// a busy machine, all added to a failover). It is now less that wait, so
// it keeps now's monotonic reading; never before last, the previous
// event's time, so the machine's clock never runs back; now if rx is
// unknown or implausible.
func advertTime(now, rx, last time.Time) time.Time {
	if rx.IsZero() {
		return now
	}
	wait := now.Sub(rx) // wall clock: rx has no monotonic reading
	if wait <= 0 || wait > maxAdvertWait {
		return now
	}
	if t := now.Add(-wait); t.After(last) {
		return t
	}
	return last
}

// step feeds one event that happens now to the machine and performs its
// actions.
func (i *Instance) step(ev vrrp.Event) { i.stepAt(time.Now(), ev) }

// stepAt feeds the machine one event that happened at now.
func (i *Instance) stepAt(now time.Time, ev vrrp.Event) {
	i.lastStep = now
	if a, ok := ev.(vrrp.AdvertReceived); ok {
		i.mu.Lock()
		i.status.LastAdvert = now
		i.status.AdvertsReceived++
		// Formatted only when it changes: a backup of a hundred
		// instances hears a thousand adverts a second.
		if a.Advert.Priority > 0 && i.fsm.State() != vrrp.Master && i.heardFrom != a.Src {
			i.status.Master, i.heardFrom = a.Src.String(), a.Src
		}
		i.mu.Unlock()
		// A master hearing a lower-priority master (back from a partition,
		// or started at the same moment) stays master, as the RFC says, but
		// that peer has announced the VIPs too: announce them again so the
		// neighbours come back (keepalived: garp_lower_prio_repeat).
		// A lower-priority advert within the rate limit is not dropped
		// but deferred to the limit's end (run on our next advert): the
		// other master's last advert, sent as it yields, can follow its
		// first by less than the limit, with its own announcements in
		// between, and only an announcement after those brings the
		// neighbours back (TestChaosSoak: 20 s of lost traffic).
		if p := a.Advert.Priority; i.fsm.State() == vrrp.Master && p > 0 && p < i.fsm.Priority() {
			if now.Sub(i.lastReannounce) > time.Second {
				i.lastReannounce, i.reannounceDue = now, time.Time{}
				i.queueVIP(vipReq{op: opAnnounce})
			} else {
				i.reannounceDue = i.lastReannounce.Add(time.Second)
			}
		}
	}
	acts := i.fsm.Step(now, ev)
	// A resigning master releases its VIPs when it hears its successor's
	// first advert, but the successor sends that advert before it adds and
	// announces the VIPs; releasing at once would leave clients a moment
	// with nobody answering. So the release waits a short grace.
	handover := false
	for _, act := range acts {
		if t, ok := act.(vrrp.Transition); ok && t.From == vrrp.Stopping && t.Reason == vrrp.ReasonNewMaster {
			handover = true
		}
	}
	i.perform(now, acts, handover)
}

// perform does what the machine asked, in order; handover delays a
// release by handoverGrace.
func (i *Instance) perform(now time.Time, acts []vrrp.Action, handover bool) {
	// Taking the VIPs gives them fresh lifetimes: a refresh queued by the
	// advert that precedes AddVIPs would only make the acquisition wait
	// behind it.
	if slices.ContainsFunc(acts, func(a vrrp.Action) bool { _, ok := a.(vrrp.AddVIPs); return ok }) {
		i.lastRefresh = now
	}
	for _, act := range acts {
		switch a := act.(type) {
		case vrrp.SendAdvert:
			i.send(a.Priority)
			if !i.reannounceDue.IsZero() && !now.Before(i.reannounceDue) {
				if i.fsm.State() == vrrp.Master {
					i.lastReannounce = now
					i.queueVIP(vipReq{op: opAnnounce})
				}
				i.reannounceDue = time.Time{}
			}
			// Adverts prove the daemon alive: renew the VIPs' lifetimes,
			// four times per lifetime (a netlink request per VIP, so not on
			// every 100 ms advert). Refresh does not wait, and renews
			// only what is still held when its pass runs, so a release
			// queued meanwhile is not undone.
			if a.Priority > 0 && i.fsm.State() == vrrp.Master && now.Sub(i.lastRefresh) >= vip.Lifetime(i.cfg.AdvertInterval)/4 {
				i.holder.Refresh()
				i.lastRefresh = now
			}
		case vrrp.AddVIPs:
			// The clients' wait ends with the first announcement: with
			// no VIP op pending, add the VIPs and announce them here, at
			// once, rather than after a hand-off to the VIP worker (which
			// on a busy machine runs only after this goroutine has logged
			// the transition and queued its hooks). The worker does the
			// rest.
			if i.vipPending.Load() == 0 {
				if err := i.holder.Take(); err != nil {
					i.log.Error("acquire VIPs", "error", err)
				}
				i.queueVIP(vipReq{op: opAcquire, taken: true})
			} else {
				i.queueVIP(vipReq{op: opAcquire})
			}
		case vrrp.RemoveVIPs:
			if handover {
				i.queueVIP(vipReq{op: opHandOver, grace: i.handoverGrace()})
			} else {
				i.queueVIP(vipReq{op: opRelease})
			}
		case vrrp.Dropped:
			i.drops.Inc(a.Reason)
		case vrrp.Transition:
			i.transition(a)
		case vrrp.MasterAlive:
			i.log.Warn("BFD declared the master down, but its advert followed: BFD lost, master alive; it takes master back",
				"op", "bfd", "master", a.Peer.String())
			i.mu.Lock()
			i.status.BFDMasterAlive++
			i.mu.Unlock()
		}
	}
	i.noteMaster()
	i.mu.Lock()
	i.status.Priority = int(i.fsm.Priority())
	i.status.YieldedTo = ""
	if y := i.fsm.YieldedTo(); y.IsValid() {
		i.status.YieldedTo = y.String()
	}
	changed := i.wants != i.fsm.Wants()
	i.wants = i.fsm.Wants()
	onWants := i.onWants
	i.mu.Unlock()
	if changed && onWants != nil {
		onWants()
	}
}

func (i *Instance) send(prio uint8) {
	e := &i.encoded
	if e.msgs == nil || e.prio != prio {
		adv := i.mcfg.Advert(prio)
		e.prio, e.msgs, e.errs = prio, make([][]byte, len(i.dsts)), make([]error, len(i.dsts))
		for n, dst := range i.dsts {
			e.msgs[n], e.errs[n] = vrrp.Marshal(adv, i.mcfg.Source, dst)
		}
	}
	for n, dst := range i.dsts {
		err := e.errs[n]
		if err == nil {
			err = i.conn.WriteTo(e.msgs[n], dst)
		}
		if err != nil {
			i.log.Warn("send advert", "to", dst.String(), "priority", prio, "error", err)
			continue
		}
		i.mu.Lock()
		i.status.AdvertsSent++
		i.mu.Unlock()
	}
}

func (i *Instance) transition(t vrrp.Transition) {
	i.log.Info("VRRP transition", "op", "transition", "from", t.From.String(), "state", t.To.String(), "reason", string(t.Reason), "priority", i.fsm.Priority())
	i.mu.Lock()
	i.status.State = t.To.String()
	i.status.Transitions++
	switch t.Reason {
	case vrrp.ReasonBFDDown:
		i.status.BFDTakeovers++
	case vrrp.ReasonYield:
		i.status.SplitBrainYields++
		i.status.Master, i.heardFrom = i.fsm.YieldedTo().String(), netip.Addr{}
	}
	i.status.LastTransition = t.At
	if t.To == vrrp.Master {
		i.status.Master, i.heardFrom = i.mcfg.Source.String(), netip.Addr{}
	}
	onTransition := i.onTransition
	i.mu.Unlock()
	if onTransition != nil {
		onTransition()
	}
	state := map[vrrp.State]string{vrrp.Master: "MASTER", vrrp.Backup: "BACKUP", vrrp.Fault: "FAULT"}[t.To]
	if state != "" {
		i.hooks.Notify(notify.Event{Instance: i.cfg.Name, State: state, Priority: int(i.fsm.Priority())})
	}
}

// handoverGrace is how long a resigning master keeps its VIPs after its
// successor's first advert: two advert intervals, within 100ms..1s.
func (i *Instance) handoverGrace() time.Duration {
	return min(max(2*i.cfg.AdvertInterval, 100*time.Millisecond), time.Second)
}

// doVIP performs one request for the VIP worker, off the state machine's
// goroutine (announcing takes several gaps, and the machine must keep its
// adverts on time meanwhile); acquisitions are the cancel
// funcs of the acquisitions still announcing.
func (i *Instance) doVIP(ctx context.Context, req vipReq, acquisitions []context.CancelFunc) []context.CancelFunc {
	op := req.op
	switch op {
	case opReconfigure:
		if err := i.holder.Reconfigure(ctx, *req.cfg, len(acquisitions) > 0); err != nil {
			i.log.Error("reconfigure VIPs", "error", err)
		}
		return acquisitions
	case opAnnounce:
		if len(acquisitions) > 0 {
			i.holder.Announce(ctx)
		}
		return acquisitions
	}
	for _, c := range acquisitions {
		c()
	}
	acquisitions = acquisitions[:0]
	if op == opHandOver {
		time.Sleep(req.grace)
	}
	if op == opRelease || op == opHandOver {
		if err := i.holder.Release(); err != nil {
			i.log.Error("release VIPs", "error", err)
		}
		return acquisitions
	}
	mctx, cancel := context.WithCancel(ctx)
	acquisitions = append(acquisitions, cancel)
	var err error
	if req.taken {
		err = i.holder.FollowUp(mctx)
	} else {
		err = i.holder.Acquire(mctx)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		i.log.Error("acquire VIPs", "error", err)
	}
	return acquisitions
}
