package instance

import (
	"testing"
	"testing/synctest"
	"time"
)

// The wake never fires before the deadline it serves: a master's schedule
// moves to a ticker after its first one-shot, keeps it while each deadline
// follows the last by one period, and falls back to one shot when the
// schedule changes; no deadline means no wake at all. On virtual time, so
// a wake a moment early is caught, however loaded the machine.
func TestWake(t *testing.T) { synctest.Test(t, testWake) }

func testWake(t *testing.T) {
	const period = 30 * time.Millisecond
	w := newWake(period)
	defer w.stop()
	fired := func() time.Time {
		t.Helper()
		for {
			select {
			case at := <-w.timer.C:
				if w.expired() {
					return at
				}
			case at := <-w.ticker.C:
				return at
			case <-time.After(2 * time.Second):
				t.Fatal("no wake within 2s")
				return time.Time{}
			}
		}
	}

	d := time.Now().Add(period)
	w.set(d, true)
	if w.ticking {
		t.Fatal("a new schedule started a ticker; want one shot first")
	}
	for n := range 4 {
		if at := fired(); at.Before(d) {
			t.Fatalf("wake %d at %v, %v before its deadline", n, at, d.Sub(at))
		}
		d = d.Add(period)
		w.set(d, true)
		if !w.ticking {
			t.Fatalf("after wake %d the next deadline is one period on, but no ticker runs", n)
		}
	}
	// Unchanged deadline: nothing re-armed, still ticking.
	w.set(d, true)
	if !w.ticking {
		t.Fatal("setting the same deadline again stopped the ticker")
	}
	// A new schedule (an advert answering priority 0, say) is one shot again.
	d = time.Now().Add(period / 2)
	w.set(d, true)
	if w.ticking {
		t.Fatal("a deadline off the schedule kept the ticker")
	}
	if at := fired(); at.Before(d) {
		t.Fatalf("one shot at %v, %v before its deadline", at, d.Sub(at))
	}
	// Backup: never a ticker, even one period on.
	d = d.Add(period)
	w.set(d, false)
	if w.ticking {
		t.Fatal("a non-master deadline started a ticker")
	}
	if at := fired(); at.Before(d) {
		t.Fatalf("backup wake %v before its deadline", d.Sub(at))
	}
	// A backup's deadline moves later with every advert: the timer is not
	// moved each time but fires at the first deadline and is re-armed
	// once for the last, and never serves a deadline early.
	d = time.Now().Add(period)
	w.set(d, false)
	for range 5 {
		time.Sleep(period / 3)
		d = time.Now().Add(period)
		w.set(d, false)
	}
	fires := 0
	for {
		select {
		case at := <-w.timer.C:
			fires++
			if !w.expired() {
				continue
			}
			if at.Before(d) {
				t.Fatalf("backup wake %v before its moved deadline", d.Sub(at))
			}
		case <-w.ticker.C:
			t.Fatal("a backup ticked")
		case <-time.After(2 * time.Second):
			t.Fatal("no wake within 2s")
		}
		break
	}
	if fires != 2 {
		t.Fatalf("timer fired %d times for a deadline moved 5 times; want 2 (the first deadline, then the last)", fires)
	}
	// An earlier deadline re-arms at once.
	d = time.Now().Add(period)
	w.set(d, false)
	d = time.Now().Add(period / 3)
	w.set(d, false)
	if at := fired(); at.Before(d) || at.After(d.Add(period/3)) {
		t.Fatalf("backup wake at %v for deadline %v", at, d)
	}
	// No deadline: silence.
	w.set(time.Time{}, false)
	select {
	case <-w.timer.C:
		t.Fatal("timer fired with no deadline")
	case <-w.ticker.C:
		t.Fatal("ticker fired with no deadline")
	case <-time.After(3 * period):
	}
}
