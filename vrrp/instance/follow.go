package instance

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
)

// Follower is a running instance as BFD fast takeover sees it
// (draft-ietf-rtgwg-vrrp-bfd-p2p): who it is, where its adverts go from,
// the master it follows while backup, and how it wants that master
// watched.
type Follower struct {
	Name      string
	Interface string
	// Local is the address its adverts go from (unicast_src, or the
	// interface's primary IPv4 or link-local IPv6 address): BFD's local
	// end on the link.
	Local netip.Addr
	// Master is the master it follows (vrrp.Machine.MasterAddr): invalid
	// unless it is backup and has heard one.
	Master netip.Addr
	// BFD is the instance's bfd; nil when off.
	BFD *conf.BFD
	// Send queues an event for its state machine (Instance.Send).
	Send func(ctx context.Context, ev vrrp.Event)
}

// followers is the set of running instances a Shared reports to BFD.
type followers struct {
	mu  sync.Mutex
	set map[*Instance]struct{}
	// changed holds one wake-up when the set or a master changed.
	changed chan struct{}
}

func newFollowers() *followers {
	return &followers{set: map[*Instance]struct{}{}, changed: make(chan struct{}, 1)}
}

func (f *followers) poke() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *followers) add(i *Instance) {
	f.mu.Lock()
	f.set[i] = struct{}{}
	f.mu.Unlock()
	f.poke()
}

func (f *followers) remove(i *Instance) {
	f.mu.Lock()
	delete(f.set, i)
	f.mu.Unlock()
	f.poke()
}

// Followers returns every running instance opened through s, by name.
func (s *Shared) Followers() []Follower {
	s.follow.mu.Lock()
	out := make([]Follower, 0, len(s.follow.set))
	for i := range s.follow.set {
		out = append(out, i.Follower())
	}
	s.follow.mu.Unlock()
	slices.SortFunc(out, func(a, b Follower) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// FollowersChanged wakes whoever waits on it after an instance started
// or stopped, or a backup's master changed, since it was last read: then
// call Followers.
func (s *Shared) FollowersChanged() <-chan struct{} { return s.follow.changed }

// Follower returns the instance as BFD sees it, as of its last step.
func (i *Instance) Follower() Follower {
	i.mu.Lock()
	defer i.mu.Unlock()
	return Follower{Name: i.name, Interface: i.status.Interface, Local: i.source, Master: i.master, BFD: i.bfd, Send: i.Send}
}

// noteMaster records the master the machine follows after a step and
// tells the Shared's watcher when it changed. stepMu is held.
func (i *Instance) noteMaster() {
	m := i.fsm.MasterAddr()
	i.mu.Lock()
	changed := m != i.master
	i.master = m
	i.mu.Unlock()
	if changed && i.follow != nil {
		i.follow.poke()
	}
}
