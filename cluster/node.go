package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/lvsha/lvsha/conf"
)

// Options configure a Node: conf's [cluster] table plus who this director
// is (OptionsFrom builds them).
type Options struct {
	Name    string // the director's name: unique in the cluster
	Version string // lvsha's version, shown to the other directors

	BindAddr      netip.Addr
	BindPort      int // 0 picks a free port (tests)
	AdvertiseAddr netip.Addr
	AdvertisePort int
	Seeds         []netip.AddrPort
	Key           []byte // exactly 32 bytes: AES-256-GCM

	GossipInterval   time.Duration
	GossipNodes      int
	ProbeInterval    time.Duration
	ProbeTimeout     time.Duration
	SuspicionMult    int
	PushPullInterval time.Duration
	RejoinInterval   time.Duration

	Logger *slog.Logger

	// gossipToTheDead overrides memberlist's 30 s of gossip to directors
	// it declared dead, which heals a short partition by itself; the
	// partition test sets it short to show the rejoin is what heals.
	gossipToTheDead time.Duration
	// wrapTransport lets tests cut links between nodes.
	wrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// OptionsFrom takes the Options from a loaded Config, which must have a
// Cluster (and its Key: Load reads it).
func OptionsFrom(c *conf.Config, version string, l *slog.Logger) Options {
	cl := c.Cluster
	return Options{
		Name: c.Director.Name, Version: version,
		BindAddr: cl.BindAddress, BindPort: cl.BindPort,
		AdvertiseAddr: cl.AdvertiseAddress, AdvertisePort: cl.AdvertisePort,
		Seeds: slices.Clone(cl.Seeds), Key: slices.Clone(cl.Key),
		GossipInterval: cl.GossipInterval, GossipNodes: cl.GossipNodes,
		ProbeInterval: cl.ProbeInterval, ProbeTimeout: cl.ProbeTimeout, SuspicionMult: cl.SuspicionMult,
		PushPullInterval: cl.PushPullInterval, RejoinInterval: cl.RejoinInterval,
		Logger: l,
	}
}

// DigestsOf shortens conf's digests for gossip.
func DigestsOf(d conf.Digests) Digests {
	out := Digests{Config: d.Config, VirtualServers: map[string]Short{}, Instances: map[string]Short{}}
	for n, v := range d.VirtualServers {
		out.VirtualServers[n] = Short(v[:len(Short{})])
	}
	for n, v := range d.Instances {
		out.Instances[n] = Short(v[:len(Short{})])
	}
	return out
}

// leaveTimeout bounds how long a stopping node waits for its leave
// message to go out, so the others drop it at once instead of after a
// suspicion timeout.
const leaveTimeout = time.Second

// joinTimeout bounds a join and a push/pull (memberlist's TCPTimeout).
const joinTimeout = 2 * time.Second

// Node is this director's member of the cluster. Create it with New, run
// it with Run; the setters publish this director's state and the
// accessors read everyone's. Every method is safe for concurrent use.
type Node struct {
	opts  Options
	log   *slog.Logger
	glog  *gossipLog // memberlist's logger
	ml    *memberlist.Memberlist
	addr  netip.AddrPort
	queue *sendQueue
	alive atomic.Int64 // live directors, self included: the queue's fan-out

	metaDirty chan struct{} // the node meta changed: Run updates it
	pushDirty chan struct{} // the digests changed: Run pushes the full state
	changed   chan struct{} // another director's state changed
	closeOnce sync.Once

	mu    sync.Mutex
	self  State
	insts map[string]Instance
	peers map[string]*peer
}

// peer is what this director knows of another one.
type peer struct {
	name    string
	addr    netip.AddrPort
	alive   bool
	meta    Meta
	state   State // Health and Instances as last merged
	insts   map[string]Instance
	itemSeq map[RealServer]uint64 // the Seq each real server's value came with
	instSeq map[string]uint64
}

func newPeer(name string) *peer {
	return &peer{name: name, insts: map[string]Instance{}, itemSeq: map[RealServer]uint64{}, instSeq: map[string]uint64{},
		state: State{Name: name, Health: map[RealServer]Health{}}}
}

// New binds the gossip port and starts memberlist; it joins nobody until
// Run. The key must be 32 bytes: there is no plaintext mode.
func New(opts Options) (*Node, error) {
	if len(opts.Key) != conf.ClusterKeySize {
		return nil, fmt.Errorf("cluster key of %d bytes, want %d: gossip is never sent in plaintext", len(opts.Key), conf.ClusterKeySize)
	}
	if opts.Name == "" {
		return nil, errors.New("cluster node without a name")
	}
	l := opts.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	l = l.With("component", "cluster")
	n := &Node{
		opts: opts, log: l,
		metaDirty: make(chan struct{}, 1), pushDirty: make(chan struct{}, 1), changed: make(chan struct{}, 1),
		self:  State{Name: opts.Name, Version: opts.Version, Epoch: time.Now().UnixNano(), Health: map[RealServer]Health{}},
		insts: map[string]Instance{}, peers: map[string]*peer{},
	}
	n.alive.Store(1)
	// Each change is sent 8 times (times log10 of the directors, so 8
	// for up to 9 of them), one count for each director a gossip round
	// sends it to, and every director that takes it relays it. With
	// memberlist's usual 4, a mass failure of 100 changes went partly
	// unseen in about one BenchmarkGossip10k run in 20; some of those
	// may have been the queue losing changes (see sendQueue), but 8
	// stays: twice the packets, only while things change. The push/pull
	// every 10 s repairs what is still missed.
	n.queue = newSendQueue(8, func() int { return int(n.alive.Load()) })

	n.glog = newGossipLog(l)
	std := n.glog.std()
	bind := opts.BindAddr
	if !bind.IsValid() {
		bind = netip.IPv4Unspecified()
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{bind.String()}, BindPort: opts.BindPort, Logger: std})
	if err != nil {
		return nil, fmt.Errorf("cluster: listen on %s: %w", net.JoinHostPort(bind.String(), strconv.Itoa(opts.BindPort)), err)
	}
	c := memberlist.DefaultLANConfig()
	c.Name = opts.Name
	c.Label = "lvsha" // keeps Consul's or Serf's gossip on a shared port apart
	c.BindAddr, c.BindPort = bind.String(), nt.GetAutoBindPort()
	c.AdvertisePort = cmp.Or(opts.AdvertisePort, c.BindPort)
	if opts.BindPort == 0 {
		c.AdvertisePort = c.BindPort
	}
	if opts.AdvertiseAddr.IsValid() {
		c.AdvertiseAddr = opts.AdvertiseAddr.String()
	}
	c.SecretKey = slices.Clone(opts.Key)
	c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	c.GossipInterval = cmp.Or(opts.GossipInterval, c.GossipInterval)
	c.GossipNodes = cmp.Or(opts.GossipNodes, c.GossipNodes)
	c.ProbeInterval = cmp.Or(opts.ProbeInterval, c.ProbeInterval)
	c.ProbeTimeout = cmp.Or(opts.ProbeTimeout, c.ProbeTimeout)
	c.SuspicionMult = cmp.Or(opts.SuspicionMult, c.SuspicionMult)
	c.PushPullInterval = cmp.Or(opts.PushPullInterval, c.PushPullInterval)
	c.GossipToTheDeadTime = cmp.Or(opts.gossipToTheDead, c.GossipToTheDeadTime)
	// A join, and a push/pull, give up after this: on a LAN a director
	// that has not answered in 2 s (80 kB of state included) is not
	// there, and a rejoin that waits 10 s for each missing seed, as at
	// memberlist's LAN default, holds up a stopping daemon that long.
	c.TCPTimeout = joinTimeout
	c.Delegate = delegate{n}
	c.Events = delegate{n}
	c.Logger = std
	var t memberlist.NodeAwareTransport = nt
	if opts.wrapTransport != nil {
		t = opts.wrapTransport(nt)
	}
	c.Transport = t
	ml, err := memberlist.Create(c)
	if err != nil {
		_ = nt.Shutdown()
		return nil, fmt.Errorf("cluster: start memberlist: %w", err)
	}
	n.ml = ml
	// Read once, before anything else runs: LocalNode returns memberlist's
	// own record, which its goroutines update without a lock we can take.
	ln := ml.LocalNode()
	a, _ := netip.AddrFromSlice(ln.Addr)
	n.addr = netip.AddrPortFrom(a.Unmap(), ln.Port)
	return n, nil
}

// Addr is where the other directors reach this one.
func (n *Node) Addr() netip.AddrPort { return n.addr }

// Changed is signalled (coalesced) when another director's state or the
// membership changed.
func (n *Node) Changed() <-chan struct{} { return n.changed }

func (n *Node) signal() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// Run joins the seeds, rejoins the missing ones every RejoinInterval and
// keeps the node meta current, until ctx ends; then it leaves the cluster
// and shuts memberlist down.
func (n *Node) Run(ctx context.Context) error {
	defer n.Close()
	// Its own goroutine: a join waits up to joinTimeout for each seed
	// that does not answer, and meta updates and state pushes must not
	// wait behind it. Stopping waits for a join in flight.
	rejoined := make(chan struct{})
	defer func() { <-rejoined }()
	go func() {
		defer close(rejoined)
		n.rejoin()
		t := time.NewTicker(cmp.Or(n.opts.RejoinInterval, 10*time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.rejoin()
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.pushDirty:
			n.pushState()
		case <-n.metaDirty:
			// UpdateNode waits until its broadcast has been sent as many
			// times as memberlist sends one. A timeout leaves it queued,
			// still going out: worth a debug line only, and bounded so
			// that rejoins and newer metas do not wait long behind it.
			if err := n.ml.UpdateNode(10 * cmp.Or(n.opts.GossipInterval, 200*time.Millisecond)); err != nil {
				n.log.Debug("cluster: node meta update still going out", "error", err)
			}
		}
	}
}

// Close leaves the cluster, telling the others at once, and stops
// memberlist. Run calls it on return; calling it again does nothing.
func (n *Node) Close() {
	n.closeOnce.Do(func() {
		if err := n.ml.Leave(leaveTimeout); err != nil {
			n.log.Warn("cluster: leave", "error", err)
		}
		if err := n.ml.Shutdown(); err != nil {
			n.log.Warn("cluster: shut down", "error", err)
		}
		n.glog.stop()
	})
}

// GossipErrors counts memberlist's warnings and errors since New, by kind
// (GossipErrorKinds): on a LAN whose directors share the key, label,
// decrypt, checksum, stream and decode errors are packets from outside
// the cluster (another cluster on the port, a scanner, a forger) or a
// director with another key.
func (n *Node) GossipErrors() map[string]uint64 { return n.glog.counts() }

// rejoin joins every seed that is not a live member. memberlist neither
// probes nor gossips to a director it declared dead, so after a partition
// heals only a join brings the halves together again.
func (n *Node) rejoin() {
	live := map[netip.AddrPort]bool{n.Addr(): true}
	for _, a := range n.liveAddrs() {
		live[a] = true
	}
	var missing []string
	for _, s := range n.opts.Seeds {
		if !live[s] {
			missing = append(missing, s.String())
		}
	}
	if len(missing) == 0 {
		return
	}
	got, err := n.ml.Join(missing)
	switch {
	case got > 0:
		n.log.Info("cluster: joined", "seeds", missing, "reached", got, "live", n.alive.Load())
	case err != nil:
		n.log.Debug("cluster: no seed reachable", "seeds", missing, "error", err)
	}
}

// maxQueued bounds the changes waiting to be gossiped. Each goes out in
// a packet of some 25 to a few random directors, so a backlog drains at
// about 250 changes a second per director: at start, a mass failure or a
// reload, thousands would wait behind each other for minutes, and the
// changes that follow behind them. Past the bound the queue is dropped
// and the whole state pushed to every director instead (pushState): 80
// kB at 10,000 real servers, in one round trip.
const maxQueued = 256

// queueLocked queues one change, or, past maxQueued, has Run push the
// whole state instead. n.mu is held, which keeps changes in Seq order.
func (n *Node) queueLocked(name string, msg []byte) {
	if n.queue.put(name, msg) > maxQueued {
		n.queue.clear()
		select {
		case n.pushDirty <- struct{}{}:
		default:
		}
	}
}

// liveAddrs are the other live directors' addresses, as the event
// delegate recorded them. Not from memberlist's Members: it returns its
// own records, which its goroutines go on updating without a lock.
func (n *Node) liveAddrs() []netip.AddrPort {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []netip.AddrPort
	for _, p := range n.peers {
		if p.alive && p.addr.IsValid() {
			out = append(out, p.addr)
		}
	}
	return out
}

// SetDigests publishes this director's configuration digests (at start
// and after each reload). The config digest travels in the node meta at
// once; the per-object ones, which name what drifted, in a full state
// pushed to every live director right away (Run does it).
func (n *Node) SetDigests(d Digests) {
	n.mu.Lock()
	n.self.Digests = cloneDigests(d)
	n.self.Seq++
	n.mu.Unlock()
	n.markMeta()
	select {
	case n.pushDirty <- struct{}{}:
	default:
	}
}

// pushState swaps full states with every live director now, instead of
// with one random director per push/pull interval: after a reload the
// others can name what drifted within a round trip, not in tens of
// seconds, and a burst of changes too many to gossip (maxQueued) arrives
// whole. memberlist's Join is its one way to push/pull on demand, and a
// join of a live member changes nothing else. It costs a full state (80
// kB at 10,000 real servers) per director, once per reload or burst.
func (n *Node) pushState() {
	var addrs []string
	for _, a := range n.liveAddrs() {
		addrs = append(addrs, a.String())
	}
	if len(addrs) == 0 {
		return
	}
	if _, err := n.ml.Join(addrs); err != nil {
		n.log.Debug("cluster: push state after a reload", "error", err)
	}
}

// SetHealth publishes this director's verdict on one real server.
func (n *Node) SetHealth(rs RealServer, h Health) {
	n.mu.Lock()
	if old, ok := n.self.Health[rs]; ok && old == h {
		n.mu.Unlock()
		return
	}
	n.self.Health[rs] = h
	n.self.Seq++
	// Queued under n.mu so two changes of one real server enter the
	// queue in Seq order: the later one replaces the earlier there.
	x := delta{origin: n.self.Name, epoch: n.self.Epoch, seq: n.self.Seq, kind: kindHealth, rs: rs, health: h}
	n.queueLocked(x.name(), encodeDelta(x))
	n.mu.Unlock()
}

// SetInstance publishes one VRRP instance's state and effective priority.
func (n *Node) SetInstance(in Instance) {
	n.mu.Lock()
	if old, ok := n.insts[in.Name]; ok && old == in {
		n.mu.Unlock()
		return
	}
	n.insts[in.Name] = in
	n.self.Seq++
	x := delta{origin: n.self.Name, epoch: n.self.Epoch, seq: n.self.Seq, kind: kindVRRP, inst: in}
	n.queueLocked(x.name(), encodeDelta(x))
	n.mu.Unlock()
	n.markMeta()
}

// Retain forgets the real servers and instances a reload removed. The
// others drop them at the next push/pull.
func (n *Node) Retain(rs func(RealServer) bool, inst func(string) bool) {
	n.mu.Lock()
	maps.DeleteFunc(n.self.Health, func(k RealServer, _ Health) bool { return !rs(k) })
	maps.DeleteFunc(n.insts, func(k string, _ Instance) bool { return !inst(k) })
	n.self.Seq++
	n.mu.Unlock()
	n.markMeta()
}

func (n *Node) markMeta() {
	select {
	case n.metaDirty <- struct{}{}:
	default:
	}
}

// Director is one director as this one knows it.
type Director struct {
	Name    string
	Addr    netip.AddrPort
	Self    bool
	Alive   bool
	Version string
	// ConfigDigest comes with the node meta; Digests' per-object maps
	// only with a push/pull, so they may still be empty for a director
	// that just joined.
	ConfigDigest [32]byte
	Digests      Digests
	Instances    []Instance // sorted by name
	Health       map[RealServer]Health
}

// Directors returns every director known, this one first, then by name.
// Directors that left or were declared dead are listed with Alive false
// until they come back.
func (n *Node) Directors() []Director { return n.directors(true) }

// Members is Directors without the real servers' health: what drift and
// split brain need, at a small fraction of the copying with 10,000 real
// servers.
func (n *Node) Members() []Director { return n.directors(false) }

func (n *Node) directors(withHealth bool) []Director {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []Director{n.selfDirectorLocked(withHealth)}
	for _, name := range sortedKeys(n.peers) {
		p := n.peers[name]
		d := Director{
			Name: p.name, Addr: p.addr, Alive: p.alive, Version: cmp.Or(p.state.Version, p.meta.Version),
			ConfigDigest: p.meta.ConfigDigest, Digests: cloneDigests(p.state.Digests),
		}
		if withHealth {
			d.Health = maps.Clone(p.state.Health)
		}
		if len(p.insts) > 0 {
			d.Instances = sortedInstances(p.insts)
		} else {
			d.Instances = slices.Clone(p.meta.Instances)
		}
		out = append(out, d)
	}
	return out
}

func (n *Node) selfDirectorLocked(withHealth bool) Director {
	d := Director{
		Name: n.self.Name, Addr: n.Addr(), Self: true, Alive: true, Version: n.self.Version,
		ConfigDigest: n.self.Digests.Config, Digests: cloneDigests(n.self.Digests),
		Instances: sortedInstances(n.insts),
	}
	if withHealth {
		d.Health = maps.Clone(n.self.Health)
	}
	return d
}

// Ping asks the named director for an answer now, by memberlist's direct
// UDP probe, and waits for it at most ProbeTimeout: nil means its
// process lives and answers gossip this moment. A director's state is
// gossiped when it changes, so a dead director's last state stays until
// the failure detector declares it dead, seconds later (suspicion):
// before acting on another director's claim (split_brain = "resolve"
// yields to it), ask it. It errs for a director not known alive.
func (n *Node) Ping(name string) error {
	n.mu.Lock()
	p := n.peers[name]
	var addr netip.AddrPort
	alive := p != nil && p.alive
	if alive {
		addr = p.addr
	}
	n.mu.Unlock()
	if !alive {
		return fmt.Errorf("cluster: ping %s: not a live director", name)
	}
	if _, err := n.ml.Ping(name, net.UDPAddrFromAddrPort(addr)); err != nil {
		return fmt.Errorf("cluster: ping %s at %s: %w", name, addr, err)
	}
	return nil
}

// Views returns what each live director, this one included, says of one
// real server: the input of Consensus. Directors that do not check it
// are left out.
func (n *Node) Views(rs RealServer) []Seen {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Seen
	if h := n.self.Health[rs]; h != HealthUnknown {
		out = append(out, Seen{Director: n.self.Name, Health: h})
	}
	for _, p := range n.peers {
		if h := p.state.Health[rs]; p.alive && h != HealthUnknown {
			out = append(out, Seen{Director: p.name, Health: h})
		}
	}
	slices.SortFunc(out, func(a, b Seen) int { return cmp.Compare(a.Director, b.Director) })
	return out
}

// delegate is memberlist's view of a Node. memberlist calls it from its
// packet and stream handlers, so nothing here blocks: it takes n.mu for
// map updates only and signals Changed without waiting.
type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte {
	n := d.n
	n.mu.Lock()
	defer n.mu.Unlock()
	return encodeMeta(Meta{Name: n.self.Name, Version: n.self.Version, ConfigDigest: n.self.Digests.Config, Instances: sortedInstances(n.insts)}, limit)
}

func (d delegate) NotifyMsg(b []byte) {
	x, err := decodeDelta(b)
	if err != nil {
		d.n.log.Warn("cluster: dropped a malformed message", "error", err)
		return
	}
	n := d.n
	n.mu.Lock()
	if x.origin == n.self.Name {
		n.mu.Unlock()
		return
	}
	p := n.peerLocked(x.origin)
	changed := p.applyDelta(x)
	if changed {
		// Relayed, as serf relays its user events: a change goes out a
		// fixed number of times (sendQueue), each to a random member,
		// and memberlist never passes on what it received, so one
		// director could miss it (a mass failure of 100 real servers
		// missed some on one director in BenchmarkGossip10k). Relayed,
		// every director that
		// has it sends it on, and only a newer change is relayed, so it
		// dies out. Queued under n.mu, like the origin's, in Seq order.
		n.queueLocked(x.name(), slices.Clone(b))
	}
	n.mu.Unlock()
	if changed {
		n.signal()
	}
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.n.queue.take(overhead, limit)
}

func (d delegate) LocalState(bool) []byte {
	n := d.n
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.self
	s.Instances = sortedInstances(n.insts)
	return encodeState(&s)
}

func (d delegate) MergeRemoteState(buf []byte, _ bool) {
	s, err := decodeState(buf)
	if err != nil {
		d.n.log.Warn("cluster: dropped a malformed state", "error", err)
		return
	}
	n := d.n
	n.mu.Lock()
	if s.Name == n.self.Name {
		n.mu.Unlock()
		return
	}
	n.peerLocked(s.Name).mergeState(s)
	n.mu.Unlock()
	n.signal()
}

func (d delegate) NotifyJoin(m *memberlist.Node)   { d.member(m, true) }
func (d delegate) NotifyUpdate(m *memberlist.Node) { d.member(m, true) }
func (d delegate) NotifyLeave(m *memberlist.Node)  { d.member(m, false) }

func (d delegate) member(m *memberlist.Node, alive bool) {
	n := d.n
	if m.Name == n.opts.Name {
		return
	}
	meta, err := decodeMeta(m.Meta)
	if err != nil && alive {
		n.log.Warn("cluster: director with unreadable meta", "director", m.Name, "error", err)
	}
	a, _ := netip.AddrFromSlice(m.Addr)
	n.mu.Lock()
	p := n.peerLocked(m.Name)
	was := p.alive
	p.alive, p.addr = alive, netip.AddrPortFrom(a.Unmap(), m.Port)
	if err == nil {
		p.meta = meta
	}
	live := int64(1)
	for _, q := range n.peers {
		if q.alive {
			live++
		}
	}
	n.alive.Store(live)
	n.mu.Unlock()
	if was != alive {
		n.log.Info("cluster: director "+map[bool]string{true: "joined", false: "left"}[alive], "director", m.Name, "addr", p.addr, "live", live)
	}
	if alive && !was {
		// A director back from dead (or a suspicion memberlist took for
		// death) missed the changes gossiped meanwhile, and memberlist
		// swaps states with it only at a join it starts itself: push
		// ours now rather than at the next push/pull.
		select {
		case n.pushDirty <- struct{}{}:
		default:
		}
	}
	n.signal()
}

func (n *Node) peerLocked(name string) *peer {
	p := n.peers[name]
	if p == nil {
		p = newPeer(name)
		n.peers[name] = p
	}
	return p
}

// reset starts over for a director that restarted: nothing of its old
// life is true any more.
func (p *peer) reset(epoch int64) {
	*p = peer{name: p.name, addr: p.addr, alive: p.alive, meta: p.meta,
		insts: map[string]Instance{}, itemSeq: map[RealServer]uint64{}, instSeq: map[string]uint64{},
		state: State{Name: p.name, Epoch: epoch, Health: map[RealServer]Health{}}}
}

// applyDelta takes one broadcast change unless a newer value is known;
// it reports whether anything changed.
func (p *peer) applyDelta(x delta) bool {
	switch {
	case x.epoch < p.state.Epoch:
		return false
	case x.epoch > p.state.Epoch:
		p.reset(x.epoch)
	}
	p.state.Seq = max(p.state.Seq, x.seq)
	switch x.kind {
	case kindHealth:
		if p.itemSeq[x.rs] >= x.seq {
			return false
		}
		p.itemSeq[x.rs] = x.seq
		p.state.Health[x.rs] = x.health
	case kindVRRP:
		if p.instSeq[x.inst.Name] >= x.seq {
			return false
		}
		p.instSeq[x.inst.Name] = x.seq
		p.insts[x.inst.Name] = x.inst
	}
	return true
}

// mergeState takes a full state: every value it holds that is not older
// than what a broadcast brought, and drops what it no longer holds
// unless a newer broadcast set it.
func (p *peer) mergeState(s *State) {
	switch {
	case s.Epoch < p.state.Epoch:
		return
	case s.Epoch > p.state.Epoch:
		p.reset(s.Epoch)
	}
	for k, h := range s.Health {
		if p.itemSeq[k] <= s.Seq {
			p.state.Health[k], p.itemSeq[k] = h, s.Seq
		}
	}
	for k := range p.state.Health {
		if _, ok := s.Health[k]; !ok && p.itemSeq[k] <= s.Seq {
			delete(p.state.Health, k)
			delete(p.itemSeq, k)
		}
	}
	names := map[string]bool{}
	for _, in := range s.Instances {
		names[in.Name] = true
		if p.instSeq[in.Name] <= s.Seq {
			p.insts[in.Name], p.instSeq[in.Name] = in, s.Seq
		}
	}
	for k := range p.insts {
		if !names[k] && p.instSeq[k] <= s.Seq {
			delete(p.insts, k)
			delete(p.instSeq, k)
		}
	}
	if s.Seq >= p.state.Seq {
		p.state.Version, p.state.Digests = s.Version, s.Digests
	}
	p.state.Seq = max(p.state.Seq, s.Seq)
}

// name is the queue's key of a change: its director and the object it
// is about, so a newer change of one real server replaces a queued older
// one of the same director instead of gossiping both.
func (x delta) name() string {
	if x.kind == kindVRRP {
		return "V" + x.origin + "\x00" + x.inst.Name
	}
	return "H" + x.origin + "\x00" + x.rs.VS + "\x00" + x.rs.RS.String()
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func sortedInstances(m map[string]Instance) []Instance {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func sortRealServers(rs []RealServer) {
	slices.SortFunc(rs, func(a, b RealServer) int { return cmp.Or(cmp.Compare(a.VS, b.VS), a.RS.Compare(b.RS)) })
}

func cloneDigests(d Digests) Digests {
	return Digests{Config: d.Config, VirtualServers: maps.Clone(d.VirtualServers), Instances: maps.Clone(d.Instances)}
}
