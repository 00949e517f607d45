package instance

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// lazyLinkConn is a shared link's endpoint as the instance uses it when
// it may read lazily (transport.Endpoint.SetLazy): push hands an advert
// to the handler at once while the instance is eager, or when its
// priority is 0 (after what is held, in order), and otherwise holds it
// for the next Drain, as the link's bell and data socket do.
type lazyLinkConn struct {
	*queueConn
	mu      sync.Mutex
	handler func(transport.Datagram)
	lazy    bool
	calls   []bool
	held    []transport.Datagram
	drains  int
}

func newLazyLinkConn() *lazyLinkConn { return &lazyLinkConn{queueConn: newQueueConn()} }

func (c *lazyLinkConn) SetHandler(f func(transport.Datagram)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handler = f
}

func (c *lazyLinkConn) SetLazy(lazy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lazy = lazy
	c.calls = append(c.calls, lazy)
}

func (c *lazyLinkConn) Drain() {
	c.mu.Lock()
	held, h := c.held, c.handler
	c.held = nil
	c.drains++
	c.mu.Unlock()
	for _, d := range held {
		h(d)
	}
}

func (c *lazyLinkConn) push(d transport.Datagram) {
	c.mu.Lock()
	if c.lazy && d.Advert.Priority != 0 {
		c.held = append(c.held, d)
		c.mu.Unlock()
		return
	}
	held, h := c.held, c.handler
	c.held = nil
	c.mu.Unlock()
	for _, x := range append(held, d) {
		h(x)
	}
}

func (c *lazyLinkConn) seen() (calls []bool, drains, held int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls), c.drains, len(c.held)
}

// A backup whose master advertises reads lazily: its adverts wait until
// the Master_Down_Timer drains them, a few per drain, and it stays
// backup however long they wait; a resignation comes at once and it
// takes over after Skew_Time, eager from then on; as master it answers
// a higher priority at once, and is lazy again as backup.
func TestLazyBackup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn := newLazyLinkConn()
		i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), conn, &fakeHolder{})
		if err != nil {
			t.Fatal(err)
		}
		stop := startRun(t, i)
		master := netip.MustParseAddr("10.0.0.1")
		from := func(prio uint8) transport.Datagram {
			b, err := vrrp.Marshal(i.mcfg.Advert(prio), master, group)
			if err != nil {
				t.Fatal(err)
			}
			adv, reason := vrrp.Parse(b, master, group, 255)
			if reason != vrrp.DropNone {
				t.Fatal(reason)
			}
			return transport.Datagram{Payload: b, Src: master, Dst: group, HopLimit: 255, At: time.Now(), Advert: adv}
		}
		synctest.Wait()
		const adverts = 50 // 5 s at 100 ms
		for range adverts {
			conn.push(from(150))
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		calls, drains, held := conn.seen()
		st := i.Status()
		if st.State != vrrp.Backup.String() || st.Transitions != 1 {
			t.Fatalf("after %d adverts read lazily: %s after %d transitions, want backup after 1", adverts, st.State, st.Transitions)
		}
		if !slices.Equal(calls, []bool{true}) {
			t.Fatalf("SetLazy calls %v, want [true] (backup)", calls)
		}
		// Master_Down_Interval is 361 ms: a drain every 3 adverts or so.
		if drains < adverts/5 || drains > adverts/2 {
			t.Errorf("%d drains for %d adverts, want one per Master_Down_Interval", drains, adverts)
		}
		if got := int(st.AdvertsReceived) + held; got != adverts {
			t.Errorf("%d adverts received and %d held, want %d in all", st.AdvertsReceived, held, adverts)
		}

		conn.push(from(0))
		time.Sleep(100 * time.Millisecond) // Skew_Time is 61 ms
		synctest.Wait()
		if st := i.Status(); st.State != vrrp.Master.String() {
			t.Fatalf("100 ms after a resignation read lazily: %s, want master", st.State)
		}
		if calls, _, _ := conn.seen(); !slices.Equal(calls, []bool{true, false}) {
			t.Fatalf("SetLazy calls %v, want [true false] (master)", calls)
		}
		conn.push(from(200))
		synctest.Wait()
		if st := i.Status(); st.State != vrrp.Backup.String() {
			t.Fatalf("after a higher priority: %s, want backup at once", st.State)
		}
		if calls, _, _ := conn.seen(); !slices.Equal(calls, []bool{true, false, true}) {
			t.Fatalf("SetLazy calls %v, want [true false true]", calls)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}
