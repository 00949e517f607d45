// Package bfdwatch is VRRP fast takeover with BFD
// (draft-ietf-rtgwg-vrrp-bfd-p2p): a backup keeps one BFD session with
// each master it follows and, when that session goes from Up to Down,
// tells every instance following that master, which takes over as if
// its Master_Down_Timer had expired (vrrp.MasterDown). One session per
// pair of directors serves all their instances: 100 instances at 10 ms
// adverts would be 10,000 multicast packets a second, one session at
// 10 ms is 100 unicast.
//
// A master needs nothing of its own: every local end answers sessions
// that peers open (runner Config.Accept). A peer that never answers
// (keepalived without a bfd_instance for us) leaves the session Down,
// never Up, so no Up-to-Down ever moves a VIP: the default is safe in a
// mixed pair. Should BFD fail while the master lives (a firewall dropping
// UDP 3784), the master's next advert takes master back by RFC 5798's own
// rules; the instances count that (instance.Status.BFDMasterAlive).
package bfdwatch

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lvsha/lvsha/bfd"
	"github.com/lvsha/lvsha/bfd/runner"
	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// Source is the running instances (*instance.Shared).
type Source interface {
	Followers() []instance.Follower
	// FollowersChanged wakes the watcher when Followers may differ.
	FollowersChanged() <-chan struct{}
}

// Endpoint is BFD on one local address (*runner.Runner).
type Endpoint interface {
	Run(ctx context.Context) error
	Add(ctx context.Context, p runner.Peer) error
	Remove(ctx context.Context, addr netip.Addr) error
	SetAccept(ctx context.Context, p runner.Peer) error
	Changes() <-chan runner.Change
	Statuses() []runner.Status
	Drops() map[bfd.DropReason]uint64
}

// OpenFunc opens BFD's local end at local on the named interface,
// answering peers' sessions with accept's timers (runner.Open).
type OpenFunc func(iface string, local netip.Addr, accept runner.Peer) (Endpoint, error)

// key names a local end.
type key struct {
	iface string
	local netip.Addr
}

// endpoint is an open local end and the sessions added on it.
type endpoint struct {
	ep    Endpoint
	stop  context.CancelFunc
	done  chan struct{}
	added map[netip.Addr]runner.Peer
	// accept is the timers it answers peers with.
	accept runner.Peer
	// downs counts each peer's sessions going from Up to Down.
	downs map[netip.Addr]int
}

// Watcher runs the local ends the instances need and turns their
// sessions' failures into MasterDown events.
type Watcher struct {
	log  *slog.Logger
	src  Source
	open OpenFunc
	// retry is how soon an end that failed to open is tried again.
	retry time.Duration

	mu  sync.Mutex
	eps map[key]*endpoint
}

// New returns a Watcher of src's instances that opens its ends with open.
func New(log *slog.Logger, src Source, open OpenFunc) *Watcher {
	return &Watcher{log: log, src: src, open: open, retry: 5 * time.Second, eps: map[key]*endpoint{}}
}

// change is one end's session change, for Run's loop.
type change struct {
	key key
	c   runner.Change
}

// Run keeps the ends and sessions in line with the instances until ctx
// is done, then stops every end.
// followSettle is how long the watcher lets changes to the followers
// gather before it reconciles: far under any detection time that matters
// when a backup starts following a master, and long enough to take a
// whole takeover's changes at once.
const followSettle = 20 * time.Millisecond

func (w *Watcher) Run(ctx context.Context) {
	changes := make(chan change, 64)
	var wg sync.WaitGroup
	defer func() {
		w.mu.Lock()
		for k, e := range w.eps {
			e.stop()
			delete(w.eps, k)
		}
		w.mu.Unlock()
		wg.Wait()
	}()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	// A takeover changes the master of every instance within
	// milliseconds, each change a wakeup here: the watcher reconciles
	// once for the burst, followSettle after its first change. Reconciling
	// per wakeup read every instance each time: a takeover of 1,000
	// instances took 1.3 s instead of 0.45 s (BenchmarkScale, max_procs
	// 1). Sessions' changes are handled meanwhile, at once.
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	settling := false
	for {
		if !settling {
			if failed := w.reconcile(ctx, &wg, changes); failed {
				retry.Reset(w.retry)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-w.src.FollowersChanged():
			if !settling {
				settling = true
				settle.Reset(followSettle)
			}
		case <-settle.C:
			settling = false
		case <-retry.C:
		case ch := <-changes:
			w.changed(ctx, ch)
		}
	}
}

// want is what the instances ask of one end.
type want struct {
	accept runner.Peer
	peers  map[netip.Addr]runner.Peer
}

// peerOf is the session bfd asks for with addr.
func peerOf(addr netip.Addr, b conf.BFD) runner.Peer {
	return runner.Peer{Addr: addr, DesiredMinTx: b.Interval, RequiredMinRx: b.Interval, DetectMult: uint8(b.Multiplier)}
}

// faster merges two instances' wishes for one session: the faster
// interval and the smaller multiplier, so that no instance detects
// slower than it asked.
func faster(a, b runner.Peer) runner.Peer {
	a.DesiredMinTx, a.RequiredMinRx = min(a.DesiredMinTx, b.DesiredMinTx), min(a.RequiredMinRx, b.RequiredMinRx)
	a.DetectMult = min(a.DetectMult, b.DetectMult)
	return a
}

// wants is what fs ask of each end: an end for every instance with bfd
// on, answering peers; a session with every master a backup follows.
func wants(fs []instance.Follower) map[key]*want {
	out := map[key]*want{}
	for _, f := range fs {
		if f.BFD == nil || !f.Local.IsValid() {
			continue
		}
		k := key{f.Interface, f.Local}
		p := peerOf(netip.Addr{}, *f.BFD)
		wt := out[k]
		if wt == nil {
			wt = &want{accept: p, peers: map[netip.Addr]runner.Peer{}}
			out[k] = wt
		}
		wt.accept = faster(wt.accept, p)
		if m := f.Master; m.IsValid() && m.Is4() == f.Local.Is4() {
			p.Addr = m
			if q, ok := wt.peers[m]; ok {
				p = faster(q, p)
			}
			wt.peers[m] = p
		}
	}
	return out
}

// reconcile opens and stops ends and adds and removes sessions to match
// the instances; it reports whether an end failed to open.
func (w *Watcher) reconcile(ctx context.Context, wg *sync.WaitGroup, changes chan<- change) (failed bool) {
	wanted := wants(w.src.Followers())
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, e := range w.eps {
		if wanted[k] == nil {
			w.log.Info("BFD local end closed: no instance with bfd on it", "op", "bfd", "interface", k.iface, "local", k.local.String())
			e.stop()
			delete(w.eps, k)
		}
	}
	for k, wt := range wanted {
		e := w.eps[k]
		if e == nil {
			ep, err := w.open(k.iface, k.local, wt.accept)
			if err != nil {
				w.log.Error("BFD open local end; fast takeover off there until it opens", "op", "bfd",
					"interface", k.iface, "local", k.local.String(), "error", err)
				failed = true
				continue
			}
			ectx, stop := context.WithCancel(ctx)
			e = &endpoint{ep: ep, stop: stop, done: make(chan struct{}), added: map[netip.Addr]runner.Peer{}, accept: wt.accept,
				downs: map[netip.Addr]int{}}
			w.eps[k] = e
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer close(e.done)
				if err := ep.Run(ectx); err != nil {
					w.log.Error("BFD local end stopped", "op", "bfd", "interface", k.iface, "local", k.local.String(), "error", err)
				}
			}()
			go func() {
				defer wg.Done()
				forward(ectx, k, ep.Changes(), changes)
			}()
		}
		if e.accept != wt.accept {
			if err := e.ep.SetAccept(ctx, wt.accept); err != nil {
				w.log.Warn("BFD change the timers of answered sessions", "op", "bfd", "interface", k.iface, "error", err)
			} else {
				e.accept = wt.accept
			}
		}
		for addr := range e.added {
			if _, ok := wt.peers[addr]; ok {
				continue
			}
			if err := e.ep.Remove(ctx, addr); err != nil {
				w.log.Warn("BFD stop watching", "op", "bfd", "peer", addr.String(), "error", err)
				continue
			}
			delete(e.added, addr)
		}
		for addr, p := range wt.peers {
			if q, ok := e.added[addr]; ok && q == p {
				continue
			}
			if err := e.ep.Add(ctx, p); err != nil {
				w.log.Warn("BFD watch master", "op", "bfd", "peer", addr.String(), "error", err)
				continue
			}
			e.added[addr] = p
		}
	}
	return failed
}

// forward hands an end's changes to Run's loop until ctx is done.
func forward(ctx context.Context, k key, in <-chan runner.Change, out chan<- change) {
	for {
		select {
		case c := <-in:
			select {
			case out <- change{key: k, c: c}:
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// changed acts on a session's change. A session that was Up and timed
// out (the peer fell silent for a Detection Time) means the peer is
// gone, and every backup on that end following it is told. A peer that
// says Down or AdminDown is talking, so alive: it lost our packets, or
// took the session down on purpose (RFC 5882 3.2); its adverts, not BFD,
// decide then, so that a one-way loss does not move the VIPs.
func (w *Watcher) changed(ctx context.Context, ch change) {
	c := ch.c
	if c.From != bfd.Up || c.To != bfd.Down {
		return
	}
	// A peer that took the session down on purpose (AdminDown: its
	// graceful stop) is no failure to count.
	if c.RemoteState != bfd.AdminDown {
		w.mu.Lock()
		if e := w.eps[ch.key]; e != nil {
			e.downs[c.Peer]++
		}
		w.mu.Unlock()
	}
	if c.Diag != bfd.DiagControlDetectExpired {
		w.log.Info("BFD session down by the peer's word: it is alive, its adverts decide", "op", "bfd",
			"interface", ch.key.iface, "peer", c.Peer.String(), "diag", c.Diag.String(), "peer_state", c.RemoteState.String())
		return
	}
	var told []string
	for _, f := range w.src.Followers() {
		if f.BFD == nil || f.Interface != ch.key.iface || f.Local != ch.key.local || f.Master != c.Peer {
			continue
		}
		f.Send(ctx, vrrp.MasterDown{Peer: c.Peer, LastHeard: c.LastHeard, Interval: c.Interval})
		told = append(told, f.Name)
	}
	w.log.Info("BFD session with a peer failed", "op", "bfd", "interface", ch.key.iface, "peer", c.Peer.String(),
		"diag", c.Diag.String(), "after", time.Since(c.At).String(), "backups_told", strings.Join(told, ","))
}

// Session is one BFD session as `lvsha status` and the metrics show it.
type Session struct {
	Interface string `json:"interface"`
	Local     string `json:"local"`
	Peer      string `json:"peer"`
	State     string `json:"state"`
	Diag      string `json:"diag,omitempty"`
	// Watching says a backup here follows this peer as its master;
	// otherwise the session answers the peer's own watch.
	Watching bool `json:"watching"`
	// Following names the instances whose master the peer is.
	Following []string `json:"following,omitempty"`
	// DetectionTime is how long the peer may fall silent before the
	// session goes Down (DetectionMS in milliseconds); zero before the
	// peer is heard.
	DetectionTime time.Duration `json:"-"`
	DetectionMS   float64       `json:"detection_ms"`
	// Downs counts the session's failures (Up to Down, but for the
	// peer's AdminDown) since lvsha started.
	Downs int `json:"downs"`
	// StateValue is the state as RFC 5880 numbers it (AdminDown 0, Down 1,
	// Init 2, Up 3), for metrics.
	StateValue int `json:"-"`
	// LocalDiscr and RemoteDiscr are the session's discriminators (RFC
	// 5880 6.3), as the peer's own status shows them the other way
	// round: what a capture of the session's packets names it by.
	LocalDiscr  uint32 `json:"local_discriminator"`
	RemoteDiscr uint32 `json:"remote_discriminator"`
}

// Sessions reports every session of every local end, by interface,
// local address and peer.
func (w *Watcher) Sessions() []Session {
	if w == nil {
		return nil
	}
	following := map[key]map[netip.Addr][]string{}
	for _, f := range w.src.Followers() {
		if f.BFD == nil || !f.Master.IsValid() {
			continue
		}
		k := key{f.Interface, f.Local}
		if following[k] == nil {
			following[k] = map[netip.Addr][]string{}
		}
		following[k][f.Master] = append(following[k][f.Master], f.Name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Session
	for k, e := range w.eps {
		for _, st := range e.ep.Statuses() {
			s := Session{Interface: k.iface, Local: k.local.String(), Peer: st.Peer.String(), State: st.State.String(),
				Watching: st.Added, Following: following[k][st.Peer], DetectionTime: st.DetectionTime,
				DetectionMS: float64(st.DetectionTime) / float64(time.Millisecond),
				Downs:       e.downs[st.Peer], StateValue: int(st.State), LocalDiscr: st.LocalDiscr, RemoteDiscr: st.RemoteDiscr}
			if st.Diag != bfd.DiagNone {
				s.Diag = st.Diag.String()
			}
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Session) int {
		return strings.Compare(a.Interface+" "+a.Local+" "+a.Peer, b.Interface+" "+b.Local+" "+b.Peer)
	})
	return out
}

// Link is one local end's receive counters, as `lvsha status` and the
// metrics show them.
type Link struct {
	Interface string `json:"interface"`
	Local     string `json:"local"`
	// Dropped counts the control packets received and dropped, by
	// reason (bfd.DropReason's names, every one present): checks of RFC
	// 5880 6.8.6 and RFC 5881 5 (ttl), no_session for a packet that
	// names no session here or comes from another address than its
	// session's peer, and accept_limit for one that would open a session
	// beyond runner.MaxAccepted.
	Dropped map[string]uint64 `json:"dropped"`
}

// Links reports each local end's drops, by interface and local address.
func (w *Watcher) Links() []Link {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Link, 0, len(w.eps))
	for k, e := range w.eps {
		m := map[string]uint64{}
		for _, r := range bfd.DropReasons() {
			m[r.String()] = 0
		}
		for r, n := range e.ep.Drops() {
			m[r.String()] = n
		}
		out = append(out, Link{Interface: k.iface, Local: k.local.String(), Dropped: m})
	}
	slices.SortFunc(out, func(a, b Link) int { return strings.Compare(a.Interface+" "+a.Local, b.Interface+" "+b.Local) })
	return out
}
