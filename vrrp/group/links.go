package group

import (
	"context"
	"strings"
	"sync"

	"github.com/lvsha/lvsha/vrrp/track"
)

// linkShares runs one link watch per set of watched interfaces, shared by
// every member watching that set. Every instance watches at least its own
// interface, so unshared each would hold a link subscription of its own:
// a netlink socket, a dump of every link when it opens and three
// goroutines per instance (issue #21 counts what an instance costs),
// where a director's instances mostly watch the same interface or two.
type linkShares struct {
	watch WatchFunc
	// wg is the group's: its Run waits for the shares' goroutines.
	wg *sync.WaitGroup

	mu     sync.Mutex
	shares map[string]*linkShare // by the watched names, joined
}

// linkShare is one watch and who reads it.
type linkShare struct {
	stop context.CancelFunc
	subs map[*mailbox]struct{}
	last *track.LinkReport // nil before the first report
}

func newLinkShares(watch WatchFunc, wg *sync.WaitGroup) *linkShares {
	return &linkShares{watch: watch, wg: wg, shares: map[string]*linkShare{}}
}

// subscribe hands the reports of the shared watch of names to fn, the
// current one at once if the watch has one, until ctx is done. fn is
// called one report at a time and may block; a reader that lags gets the
// state as it is now, not every step to it. The watch stops with its last
// reader.
func (s *linkShares) subscribe(ctx context.Context, names []string, fn func(track.LinkReport)) {
	key := strings.Join(names, "\x00")
	mb := &mailbox{fn: fn, wg: s.wg}
	s.mu.Lock()
	sh := s.shares[key]
	if sh == nil {
		// The watch outlives the reader that started it: it ends with
		// the last one.
		wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		sh = &linkShare{stop: stop, subs: map[*mailbox]struct{}{}}
		s.shares[key] = sh
		reports := s.watch(wctx, names)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.pump(sh, reports) }()
	}
	sh.subs[mb] = struct{}{}
	if sh.last != nil {
		mb.put(*sh.last)
	}
	s.mu.Unlock()
	// No goroutine waits for the reader to leave: that would be one
	// more parked goroutine per instance.
	s.wg.Add(1)
	context.AfterFunc(ctx, func() {
		defer s.wg.Done()
		mb.close()
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(sh.subs, mb)
		if len(sh.subs) == 0 {
			sh.stop()
			delete(s.shares, key)
		}
	})
}

// pump hands every report of a watch to its readers, until the watch
// ends.
func (s *linkShares) pump(sh *linkShare, reports <-chan track.LinkReport) {
	for r := range reports {
		s.mu.Lock()
		last := r
		last.Lost = nil // said once, to the readers there are now
		sh.last = &last
		for mb := range sh.subs {
			mb.put(r)
		}
		s.mu.Unlock()
	}
}

// mailbox delivers reports to one reader on a goroutine that exists only
// while there is a report to deliver: links change seldom, and a parked
// goroutine per reader (two per instance, links and source address) was
// most of what a hundred instances' stacks cost (issue #21).
type mailbox struct {
	fn func(track.LinkReport)
	wg *sync.WaitGroup

	mu      sync.Mutex
	pending *track.LinkReport // the newest report not yet delivered
	running bool              // a goroutine delivers
	closed  bool
}

// put queues r in place of any report not yet delivered, keeping the
// loss that one said; it never blocks.
func (m *mailbox) put(r track.LinkReport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if m.pending != nil && r.Lost == nil {
		r.Lost = m.pending.Lost
	}
	m.pending = &r
	if !m.running {
		m.running = true
		m.wg.Add(1)
		go m.deliver()
	}
}

func (m *mailbox) deliver() {
	defer m.wg.Done()
	for {
		m.mu.Lock()
		r := m.pending
		if r == nil || m.closed {
			m.running = false
			m.mu.Unlock()
			return
		}
		m.pending = nil
		m.mu.Unlock()
		m.fn(*r)
	}
}

// close drops what is not delivered yet; a delivery under way finishes.
func (m *mailbox) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed, m.pending = true, nil
}
