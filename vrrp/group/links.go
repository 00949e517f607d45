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
	// subs hold at most the newest report each: a reader that lags
	// sees the state as it is now, not every step to it.
	subs map[chan track.LinkReport]struct{}
	last *track.LinkReport // nil before the first report
}

func newLinkShares(watch WatchFunc, wg *sync.WaitGroup) *linkShares {
	return &linkShares{watch: watch, wg: wg, shares: map[string]*linkShare{}}
}

// subscribe is a WatchFunc on the shared watch of names: the channel
// carries the newest report (the current one at once, if the watch has
// one) and closes when ctx is done. The watch stops with its last reader.
func (s *linkShares) subscribe(ctx context.Context, names []string) <-chan track.LinkReport {
	key := strings.Join(names, "\x00")
	out := make(chan track.LinkReport, 1)
	s.mu.Lock()
	sh := s.shares[key]
	if sh == nil {
		// The watch outlives the reader that started it: it ends with
		// the last one.
		wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		sh = &linkShare{stop: stop, subs: map[chan track.LinkReport]struct{}{}}
		s.shares[key] = sh
		reports := s.watch(wctx, names)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.pump(sh, reports) }()
	}
	sh.subs[out] = struct{}{}
	if sh.last != nil {
		out <- *sh.last
	}
	s.mu.Unlock()
	// No goroutine waits for the reader to leave: that would be one
	// more parked goroutine per instance.
	s.wg.Add(1)
	context.AfterFunc(ctx, func() {
		defer s.wg.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(sh.subs, out)
		close(out)
		if len(sh.subs) == 0 {
			sh.stop()
			delete(s.shares, key)
		}
	})
	return out
}

// pump hands every report of a watch to its readers, until the watch
// ends.
func (s *linkShares) pump(sh *linkShare, reports <-chan track.LinkReport) {
	for r := range reports {
		s.mu.Lock()
		last := r
		last.Lost = nil // said once, to the readers there are now
		sh.last = &last
		for ch := range sh.subs {
			// This is the only sender, under s.mu: after the unread
			// report is taken out, the send cannot block.
			send := r
			select {
			case old := <-ch:
				if send.Lost == nil {
					send.Lost = old.Lost
				}
			default:
			}
			ch <- send
		}
		s.mu.Unlock()
	}
}
