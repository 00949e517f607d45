package health

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// results records what an OnResult hook is given.
type results struct {
	mu  sync.Mutex
	got map[Key][]Result
}

func (r *results) observe(k Key, res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[k] = append(r.got[k], res)
}

func (r *results) of(k Key) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.got[k]...)
}

func TestOnResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 100 * time.Millisecond
		e, net, _, start := newTestEngine(t)
		rec := &results{got: map[Key][]Result{}}
		e.OnResult(rec.observe)
		// a and b share rs1's probe; rs2's hangs until cancelled.
		e.Update(config(
			vs("a", tcpCheck(interval, 1, 1), rs1, rs2),
			vs("b", tcpCheck(interval, 1, 1), rs1),
		))
		net.mu.Lock()
		net.hang[rs2] = true
		net.mu.Unlock()
		net.set(rs1, refused)
		start()
		settle(interval / 2)

		// One probe of rs1 so far, reported to both of its owners, as
		// the engine recorded it.
		for _, k := range []Key{{"a", rs1}, {"b", rs1}} {
			got := rec.of(k)
			if len(got) != 1 {
				t.Fatalf("%v: %d results after one probe, want 1", k, len(got))
			}
			if got[0].OK || got[0].Message != refused.Message {
				t.Errorf("%v: observed %+v, want the refused result", k, got[0])
			}
			if st := status(e, k); st.Up || !st.Last.At.Equal(got[0].At) {
				t.Errorf("%v: state %+v when the hook ran, want down with the observed result", k, st)
			}
		}
		settle(2 * interval)
		if n := len(rec.of(Key{"a", rs1})); n != 3 {
			t.Errorf("a rs1: %d results after three probes, want 3", n)
		}

		// b removed, rs2's hanging probe stopped mid-run: neither reports.
		e.Update(config(vs("a", tcpCheck(interval, 1, 1), rs1)))
		before := len(rec.of(Key{"b", rs1}))
		settle(3 * interval)
		if n := len(rec.of(Key{"b", rs1})); n != before {
			t.Errorf("b rs1 got %d results after it was removed", n-before)
		}
		if n := len(rec.of(Key{"a", rs2})); n != 0 {
			t.Errorf("a rs2: %d results from a probe stopped mid-run, want 0", n)
		}
		if n := len(rec.of(Key{"a", rs1})); n <= 3 {
			t.Errorf("a rs1: %d results, want the hook to go on after the update", n)
		}

		// nil stops the calls.
		e.OnResult(nil)
		before = len(rec.of(Key{"a", rs1}))
		settle(3 * interval)
		if n := len(rec.of(Key{"a", rs1})); n != before {
			t.Errorf("a rs1 got %d results after OnResult(nil)", n-before)
		}
	})
}
