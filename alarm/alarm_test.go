package alarm

import (
	"testing"
	"time"
)

// A Clock fires each Alarm at or after its deadline, never
// before; a deadline moved later fires once, at the last one; an earlier
// one re-arms at once; a disarmed Alarm stays silent; alarms at one
// instant all fire; the last Alarm's close closes the timerfd and a new
// Alarm opens another. On real time (a timerfd knows no synctest), so
// lateness is bounded generously and earliness not at all.
func TestClock(t *testing.T) {
	const step = 20 * time.Millisecond
	const late = 2 * time.Second // a loaded machine, not a defect
	var c Clock
	wait := func(a *Alarm, d time.Time) time.Time {
		t.Helper()
		select {
		case at := <-a.C():
			if at.Before(d) {
				t.Fatalf("Alarm fired %v before its deadline", d.Sub(at))
			}
			return at
		case <-time.After(time.Until(d) + late):
			t.Fatalf("Alarm not fired %v after its deadline", late)
		}
		return time.Time{}
	}
	silent := func(a *Alarm, d time.Duration) {
		t.Helper()
		select {
		case at := <-a.C():
			t.Fatalf("Alarm fired at %v; want none", at)
		case <-time.After(d):
		}
	}

	a, err := c.NewAlarm()
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.NewAlarm()
	if err != nil {
		t.Fatal(err)
	}
	fd := c.f

	// In order, each at its own deadline.
	da, db := time.Now().Add(2*step), time.Now().Add(step)
	a.Set(da)
	b.Set(db)
	wait(b, db)
	wait(a, da)

	// Moved later five times: one wake, at the last deadline.
	d := time.Now().Add(step)
	a.Set(d)
	for range 5 {
		time.Sleep(step / 3)
		d = time.Now().Add(step)
		a.Set(d)
	}
	wait(a, d)
	silent(a, 2*step)

	// Moved earlier: fires at the earlier one.
	a.Set(time.Now().Add(time.Hour))
	d = time.Now().Add(step)
	a.Set(d)
	if at := wait(a, d); at.After(d.Add(late)) {
		t.Fatalf("moved earlier, fired %v late", at.Sub(d))
	}

	// Disarmed: silent, and the other Alarm still fires.
	a.Set(time.Now().Add(step))
	a.Set(time.Time{})
	db = time.Now().Add(2 * step)
	b.Set(db)
	wait(b, db)
	silent(a, 2*step)

	// A hundred alarms at one instant all fire.
	many := make([]*Alarm, 100)
	d = time.Now().Add(step)
	for i := range many {
		if many[i], err = c.NewAlarm(); err != nil {
			t.Fatal(err)
		}
		many[i].Set(d)
	}
	for _, m := range many {
		wait(m, d)
	}
	if c.f != fd {
		t.Fatal("alarms opened another timerfd while one was open")
	}
	for _, m := range many {
		m.Close()
	}

	// The last close closes the timerfd (and ends its goroutine: close
	// waits for it); the next Alarm opens a new one that works.
	a.Close()
	if c.f == nil {
		t.Fatal("timerfd closed while an Alarm remains")
	}
	b.Close()
	if c.f != nil || c.users != 0 {
		t.Fatalf("after the last close: file %v, users %d; want none", c.f, c.users)
	}
	a, err = c.NewAlarm()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	d = time.Now().Add(step)
	a.Set(d)
	wait(a, d)
}

// A deadline every period, each one period after the last (a master's
// adverts), sets the timerfd twice (the first deadline, then the second
// with the interval) and never again; off the schedule it is set anew,
// and no Alarm fires early or is missed either way.
func TestClockPeriodic(t *testing.T) {
	const period = 15 * time.Millisecond
	c, a := clockAlarm(t)
	sets := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sets
	}
	next := time.Now().Add(period)
	run := func(rounds int) {
		t.Helper()
		for range rounds {
			a.Set(next)
			select {
			case at := <-a.C():
				if at.Before(next) {
					t.Fatalf("fired %v early", next.Sub(at))
				}
			case <-time.After(time.Until(next) + 2*time.Second):
				t.Fatal("not fired 2 s after its deadline")
			}
			next = next.Add(period)
		}
	}
	run(20)
	if n := sets(); n != 2 {
		t.Errorf("%d timerfd sets for 20 deadlines on one schedule, want 2", n)
	}
	// Off the schedule: half a period later, then on at that phase.
	next = next.Add(period / 2)
	run(5)
	if n := sets(); n != 4 {
		t.Errorf("%d timerfd sets after the schedule moved, want 4", n)
	}
	// Disarmed, the repeating timerfd wakes no one.
	a.Set(time.Time{})
	select {
	case at := <-a.C():
		t.Fatalf("a disarmed Alarm fired at %v", at)
	case <-time.After(5 * period):
	}
}

// An Inline function serves the wakes it takes on the Clock's goroutine,
// where it may set the Alarm's next deadline; those never reach C, the
// ones it declines do; on a schedule it keeps the timerfd unset as C's
// owner does.
func TestClockInline(t *testing.T) {
	const period = 15 * time.Millisecond
	c, a := clockAlarm(t)
	served := make(chan time.Time, 100)
	next := time.Now().Add(period)
	rounds := 0
	a.Inline(func(now time.Time) bool {
		if now.Before(next) {
			t.Errorf("inline wake %v early", next.Sub(now))
		}
		rounds++
		if rounds > 10 {
			return false // declined: to C
		}
		served <- now
		next = next.Add(period)
		a.Set(next)
		return true
	})
	a.Set(next)
	for n := range 10 {
		select {
		case <-served:
		case <-time.After(2 * time.Second):
			t.Fatalf("inline wake %d not served within 2 s", n+1)
		}
	}
	select {
	case <-a.C():
	case <-time.After(2 * time.Second):
		t.Fatal("a declined wake did not reach C")
	}
	if len(a.C()) != 0 {
		t.Error("more on C than the declined wake")
	}
	c.mu.Lock()
	sets := c.sets
	c.mu.Unlock()
	if sets != 2 {
		t.Errorf("%d timerfd sets over 11 wakes on one schedule, want 2", sets)
	}
}

// clockAlarm is a new Clock with one Alarm, closed at the test's end.
func clockAlarm(t *testing.T) (*Clock, *Alarm) {
	t.Helper()
	c := &Clock{}
	a, err := c.NewAlarm()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return c, a
}
