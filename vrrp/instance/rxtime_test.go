package instance

import (
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// An advert counts from when the kernel received it, within limits: the
// result keeps the reading's monotonic clock and never runs back past the
// previous event.
func TestAdvertTime(t *testing.T) {
	now := time.Now()
	wall := now.Round(0) // as a kernel timestamp: no monotonic reading
	tests := []struct {
		name     string
		rx, last time.Time
		want     time.Time
	}{
		{"unknown", time.Time{}, now.Add(-time.Second), now},
		{"read 5ms late", wall.Add(-5 * time.Millisecond), now.Add(-time.Second), now.Add(-5 * time.Millisecond)},
		{"read 1.5s late (a stalled process)", wall.Add(-1500 * time.Millisecond), now.Add(-2 * time.Second), now.Add(-1500 * time.Millisecond)},
		{"not before the last event", wall.Add(-5 * time.Millisecond), now.Add(-2 * time.Millisecond), now.Add(-2 * time.Millisecond)},
		{"from the future (clock stepped)", wall.Add(time.Millisecond), now.Add(-time.Second), now},
		{"too old (clock stepped)", wall.Add(-maxAdvertWait - time.Millisecond), time.Time{}, now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := advertTime(now, tt.rx, tt.last)
			if !got.Equal(tt.want) {
				t.Errorf("advertTime = %v, want %v", got, tt.want)
			}
			// Deadlines derived from it must not follow wall clock steps.
			if got.Round(0) == got {
				t.Errorf("advertTime = %v lost the monotonic reading", got)
			}
		})
	}
}

// oneConn reads one datagram, then reports the socket closed.
type oneConn struct {
	fakeConn
	d    transport.Datagram
	done bool
}

func (c *oneConn) Read(buf []byte) (transport.Datagram, error) {
	if c.done {
		return transport.Datagram{}, io.EOF
	}
	c.done = true
	c.d.Payload = append(buf[:0], c.d.Payload...)
	return c.d, nil
}

// A backup's Master_Down_Timer runs from the kernel's receive time of the
// master's advert, carried from the socket to the state machine: taken
// from a shared link's queue, or read by the instance's own reading
// goroutine.
func TestMasterDownFromReceiveTime(t *testing.T) {
	tests := []struct {
		name string
		// take hands d to i as its kind of wire does.
		take func(t *testing.T, i *Instance, d transport.Datagram)
	}{
		{"queued", func(t *testing.T, i *Instance, d transport.Datagram) { i.received(d) }},
		{"read", func(t *testing.T, i *Instance, d transport.Datagram) {
			i.conn = &oneConn{d: d}
			out := make(chan transport.Datagram, 1)
			if err := i.readLoop(make(chan struct{}), out); !errors.Is(err, io.EOF) {
				t.Fatalf("readLoop: %v, want the socket's EOF", err)
			}
			i.received(<-out)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := newTestInstance(t, &fakeHolder{})
			master := netip.MustParseAddr("10.0.0.1")
			mcfg := i.mcfg
			mcfg.Priority = 150
			b, err := vrrp.Marshal(mcfg.Advert(150), master, group)
			if err != nil {
				t.Fatal(err)
			}
			rx := time.Now().Add(-40 * time.Millisecond).Round(0)
			t0 := time.Now()
			i.perform(t0, i.fsm.Step(t0, vrrp.Start{}), false)
			tt.take(t, i, transport.Datagram{Payload: b, Src: master, Dst: group, HopLimit: 255, At: rx})
			if i.fsm.State() != vrrp.Backup || i.Status().AdvertsReceived != 1 {
				t.Fatalf("state %v after %d adverts, want backup after 1", i.fsm.State(), i.Status().AdvertsReceived)
			}
			// Priority 100 at 100 ms: 3 × 100 ms + (256-100)/256 × 100 ms.
			mdi := 300*time.Millisecond + 156*100*time.Millisecond/256
			if got := i.fsm.NextDeadline().Sub(rx); got < mdi-time.Millisecond || got > mdi+time.Millisecond {
				t.Errorf("Master_Down_Timer fires %v after the advert's arrival, want %v", got, mdi)
			}
		})
	}
}

// When the Master_Down_Timer and an advert that arrived before it expired
// are both waiting (after a stall), the advert counts first: the backup
// stays backup instead of taking over from a live master. The advert may
// be queued already, or still in the link's socket, the reader not yet
// run: the timer then drains the socket first. A master's tick never
// drains (it only sends, one per advert interval).
func TestTimerAfterQueuedAdverts(t *testing.T) {
	master := netip.MustParseAddr("10.0.0.1")
	for _, tt := range []struct {
		name string
		// unread: the advert is in the socket, not in the queue.
		unread bool
	}{
		{"queued", false},
		{"unread in the socket", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			i := newTestInstance(t, &fakeHolder{})
			b, err := vrrp.Marshal(i.mcfg.Advert(150), master, group)
			if err != nil {
				t.Fatal(err)
			}
			adv, reason := vrrp.Parse(b, master, group, 255)
			if reason != vrrp.DropNone {
				t.Fatal(reason)
			}
			// The master's advert 380 ms ago: Master_Down_Interval (361
			// ms at priority 100) has just run out.
			t0 := time.Now().Add(-380 * time.Millisecond).Round(0)
			i.perform(t0, i.fsm.Step(t0, vrrp.Start{}), false)
			i.stepAt(t0, vrrp.AdvertReceived{Advert: adv, Src: master})
			if i.fsm.State() != vrrp.Backup {
				t.Fatalf("state %v, want backup", i.fsm.State())
			}
			// The master kept advertising; the daemon stalled past the
			// deadline, its last advert received 10 ms before it.
			late := transport.Datagram{Payload: b, Src: master, Dst: group, HopLimit: 255, At: i.fsm.NextDeadline().Add(-10 * time.Millisecond)}
			adverts := make(chan transport.Datagram, 8)
			drains := 0
			rd := reading{queue: adverts, drain: func() {
				drains++
				if tt.unread && drains == 1 {
					adverts <- late
				}
			}}
			if !tt.unread {
				adverts <- late
			}
			before := i.Status().Transitions
			i.timerFired(rd, false)
			if st := i.Status(); st.State != vrrp.Backup.String() || st.Transitions != before {
				t.Errorf("after the stall: %s with %d transitions (was %d): the timer was taken before the advert that arrived in time",
					st.State, st.Transitions, before)
			}
			if len(adverts) != 0 {
				t.Errorf("%d adverts left queued", len(adverts))
			}
			if drains != 1 {
				t.Errorf("a backup's timer drained the socket %d times, want once", drains)
			}
			// Without that advert the timer expires: the test's stall is
			// real. The new master's ticks do not drain.
			j := newTestInstance(t, &fakeHolder{})
			j.perform(t0, j.fsm.Step(t0, vrrp.Start{}), false)
			j.stepAt(t0, vrrp.AdvertReceived{Advert: adv, Src: master})
			drains = 0
			rd = reading{queue: make(chan transport.Datagram, 8), drain: func() { drains++ }}
			j.timerFired(rd, false)
			if j.fsm.State() != vrrp.Master {
				t.Fatalf("state %v with no advert since: want master", j.fsm.State())
			}
			j.timerFired(rd, false)
			if drains != 1 {
				t.Errorf("drains: %d, want 1 (the backup's timer, not the master's tick)", drains)
			}
		})
	}
}
