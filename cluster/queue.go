package cluster

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

// sendQueue holds the changes waiting to be gossiped, at most one per
// name (a director and the object it is about): a newer change of the
// same object replaces the older one.
//
// It stands in for memberlist's TransmitLimitedQueue, which loses
// messages (hashicorp/memberlist#263, unfixed in v0.5.4 and at its
// head): it sets its id counter back to 0 whenever its tree is empty for
// a moment, as when it takes out the only message to count a transmit or
// to replace it with a newer one, and two messages of one length and one
// id then count as one in its tree, so the later queued silently
// replaces the earlier. Two health changes of one real server differ
// only in their director's name, so they have one length: under load
// TestThreeDirectors lost a change that way one run in twenty, and
// neither the sender nor the relays ever sent it.
type sendQueue struct {
	mult     int        // each message goes out mult × ⌈log10(directors+1)⌉ times
	numNodes func() int // live directors, self included

	mu    sync.Mutex
	items map[string]*queued
	order uint64 // last order handed out: a newer queuing has a larger one
}

type queued struct {
	name      string
	msg       []byte
	transmits int
	order     uint64
}

func newSendQueue(mult int, numNodes func() int) *sendQueue {
	return &sendQueue{mult: mult, numNodes: numNodes, items: map[string]*queued{}}
}

// put queues msg under name, replacing what was queued under it, and
// returns how many messages wait.
func (q *sendQueue) put(name string, msg []byte) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.order++
	q.items[name] = &queued{name: name, msg: msg, order: q.order}
	return len(q.items)
}

// len is how many messages wait.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// clear drops every waiting message.
func (q *sendQueue) clear() {
	q.mu.Lock()
	defer q.mu.Unlock()
	clear(q.items)
}

// take hands out the messages for one packet: those sent the fewest
// times first, the newest first among them, as many as fit in limit
// bytes with overhead bytes each. A message leaves the queue once it
// has gone out its number of times.
func (q *sendQueue) take(overhead, limit int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	// memberlist's retransmitLimit: enough sends for the gossip to reach
	// every director with high probability as the cluster grows.
	times := q.mult * int(math.Ceil(math.Log10(float64(max(q.numNodes(), 1)+1))))
	all := make([]*queued, 0, len(q.items))
	for _, it := range q.items {
		all = append(all, it)
	}
	slices.SortFunc(all, func(a, b *queued) int {
		return cmp.Or(cmp.Compare(a.transmits, b.transmits), cmp.Compare(b.order, a.order))
	})
	var out [][]byte
	used := 0
	for _, it := range all {
		if used+overhead+len(it.msg) > limit {
			continue // a smaller one behind it may still fit
		}
		used += overhead + len(it.msg)
		out = append(out, it.msg)
		it.transmits++
		if it.transmits >= times {
			delete(q.items, it.name)
		}
	}
	return out
}
