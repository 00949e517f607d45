// Package alarm wakes a daemon's timers from one timerfd read through
// the runtime's poller, instead of a Go timer each (issue #21's idle
// cost). Every Go timer that expires while the process is idle also wakes
// the runtime's monitor thread (sysmon sleeps until the next timer) and
// readies the timer's goroutine from a thread that has just left the
// poller, which wakes a second thread to look for work: three to five
// context switches per VRRP advert sent or Master_Down check, or per BFD
// packet sent, against keepalived's one. A timerfd is a file: its expiry
// returns the poller's epoll_wait like a packet does, on one thread, and
// sysmon sleeps on.
package alarm

import (
	"container/heap"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Clock is one timerfd and one goroutine serving every Alarm made on it,
// so that deadlines that coincide (a director's aligned VRRP masters,
// vrrp.Config.AlignAdverts) share one wakeup. The zero Clock is ready to
// use; its timerfd opens with the first Alarm and closes with the last.
//
// A deadline moved later (a backup's Master_Down_Timer, at every advert)
// is only noted: the Alarm keeps its place and, when it comes due early,
// moves to the deadline then, without waking its owner.
//
// The timerfd repeats: each time it is set, its interval is the gap from
// the expiry just served to the new deadline, so that a master's adverts,
// every interval on schedule, find it set for the next one already and
// cost no timerfd_settime (issue #21: six system calls per advert, where
// keepalived makes two or three).
type Clock struct {
	mu     sync.Mutex
	f      *os.File // nil while no Alarm exists
	alarms alarmHeap
	armed  time.Time     // f's next expiry; zero: disarmed
	period time.Duration // f's interval; zero: one-shot
	// fired is the expiry last served, the base of the next interval.
	fired time.Time
	// sets counts timerfd_settime calls (tests).
	sets int
	// due is fire's, reused from one expiry to the next.
	due   []dueAlarm
	users int
	// done closes when the reading goroutine of f has returned.
	done chan struct{}
}

// Alarm is one deadline on a Clock, delivered on C.
type Alarm struct {
	c *Clock
	// at is the Alarm's place in the heap; want the deadline it serves,
	// at or after at. idx is its index in the heap, -1 when out of it.
	at, want time.Time
	idx      int
	ch       chan time.Time
	// inline, if set, serves the Alarm's wakes on the Clock's goroutine.
	inline func(now time.Time) bool
}

// NewAlarm returns an Alarm on c, opening c's timerfd if it is the first.
func (c *Clock) NewAlarm() (*Alarm, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("timerfd: %w", err)
		}
		// Non-blocking, so os.File reads it through the poller.
		c.f = os.NewFile(uintptr(fd), "alarm-timerfd")
		c.armed = time.Time{}
		c.done = make(chan struct{})
		go c.run(c.f, c.done)
	}
	c.users++
	return &Alarm{c: c, idx: -1, ch: make(chan time.Time, 1)}, nil
}

// run reads f until it is closed, firing what is due at each expiry.
func (c *Clock) run(f *os.File, done chan<- struct{}) {
	defer close(done)
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	var buf [8]byte
	// Reads with a raw system call: the runtime's ordinary path wakes its
	// monitor thread from deep sleep on every call in case it blocks (see
	// transport's rawRecvmsg), and a read of a non-blocking timerfd
	// cannot block. Every expiry is served inside one poller Read, which
	// so reads the timerfd only once the poller said it expired: a Read
	// per expiry would first read it empty (EAGAIN) before waiting, one
	// more system call per advert.
	var errno syscall.Errno
	_ = rc.Read(func(fd uintptr) bool {
		_, _, errno = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch errno {
		case 0:
			c.fire(time.Now(), *(*uint64)(unsafe.Pointer(&buf[0])))
			return false
		case unix.EAGAIN, unix.EINTR:
			return false
		}
		// Nothing but a closed or invalid descriptor fails a read of a
		// timerfd with room for its count.
		return true
	})
	// The Read ends with an error when the last Alarm's Close closes f.
}

// fire sends now to every Alarm whose deadline has come, moves the ones
// that came due early to their deadline, and sets f for the next; n is
// the count of expiries f read.
func (c *Clock) fire(now time.Time, n uint64) {
	c.mu.Lock()
	due := c.expire(now, n)
	c.mu.Unlock()
	for _, d := range due {
		if d.f != nil && d.f(now) {
			continue
		}
		// The channel holds one: an owner that has not taken the
		// last wake yet gets no second, which would say nothing new.
		select {
		case d.a.ch <- now:
		default:
		}
	}
	clear(due)
	c.due = due[:0]
}

// dueAlarm is an Alarm that came due, and its Inline function then.
type dueAlarm struct {
	a *Alarm
	f func(time.Time) bool
}

// expire takes the Alarms due at now out of the heap and returns them
// (in c.due, which only the Clock's goroutine uses); c.mu is held.
func (c *Clock) expire(now time.Time, n uint64) []dueAlarm {
	due := c.due[:0]
	if c.armed.IsZero() {
		// Disarmed after it expired, before this read: nothing to serve
		// but the alarms already due.
		n = 0
	}
	c.fired = c.armed
	switch {
	case n == 0:
	case c.period > 0:
		// The kernel has set f for the next period already.
		c.fired = c.armed.Add(time.Duration(n-1) * c.period)
		c.armed = c.fired.Add(c.period)
	default:
		c.armed = time.Time{}
	}
	for len(c.alarms) > 0 {
		a := c.alarms[0]
		if a.at.After(now) {
			break
		}
		if a.want.After(now) {
			a.at = a.want
			heap.Fix(&c.alarms, 0)
			continue
		}
		heap.Pop(&c.alarms)
		due = append(due, dueAlarm{a, a.inline})
	}
	if len(due) > 0 && len(c.alarms) == 0 {
		// The owners woken set their next deadlines next, a master's
		// one period on, where f repeats: disarming f now would cost a
		// system call, and setting it again another. If none does, f
		// wakes once more for nothing and is disarmed then.
		return due
	}
	c.program()
	return due
}

// maxPeriod bounds the interval f repeats at: a longer gap is no
// schedule worth keeping, and f would wake for nothing if it broke.
const maxPeriod = 10 * time.Second

// program sets f for the earliest Alarm if it is not set for it already.
// c.mu is held.
func (c *Clock) program() {
	var next time.Time
	if len(c.alarms) > 0 {
		next = c.alarms[0].at
	}
	if next.Equal(c.armed) || c.f == nil {
		return
	}
	var spec unix.ItimerSpec
	var period time.Duration
	if !next.IsZero() {
		// Relative, on Go's monotonic reading: Go's times carry no
		// absolute CLOCK_MONOTONIC value. A zero value disarms, so at
		// least a nanosecond.
		spec.Value = unix.NsecToTimespec(max(int64(time.Until(next)), 1))
		// Repeating at the gap from the expiry just served: a schedule
		// that goes on at that gap is served without setting f again.
		// A deadline that does not fall on the repetition sets f anew,
		// as above, so the guess costs nothing when it is wrong.
		if !c.fired.IsZero() {
			if p := next.Sub(c.fired); p > 0 && p <= maxPeriod {
				period = p
				spec.Interval = unix.NsecToTimespec(int64(p))
			}
		}
	}
	c.sets++
	if err := setTimer(c.f, &spec); err != nil {
		// Only a closed or invalid descriptor fails; the alarms of a
		// Clock being closed no longer matter.
		return
	}
	c.armed, c.period = next, period
}

// setTimer sets f's timer with a raw system call, which cannot block
// (see run).
func setTimer(f *os.File, spec *unix.ItimerSpec) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(spec)), 0, 0, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// C delivers the time of each wake.
func (a *Alarm) C() <-chan time.Time { return a.ch }

// Inline has f serve the Alarm's wakes on the Clock's goroutine, before
// and instead of C: a wake f takes (returns true for) is not sent on C.
// f runs without the Clock's lock, so it may Set the Alarm; it must not
// block, nor wait for the Clock's goroutine (the last Alarm's Close
// does). An owner that serves its wake there, a VRRP master sending its
// advert, spares its own goroutine a wakeup for it: two fewer goroutine
// switches per advert (issue #21). nil undoes it.
func (a *Alarm) Inline(f func(now time.Time) bool) {
	a.c.mu.Lock()
	defer a.c.mu.Unlock()
	a.inline = f
}

// Set arms the Alarm for d; zero disarms it. A later deadline than the
// armed one only is noted (see Clock).
func (a *Alarm) Set(d time.Time) {
	c := a.c
	c.mu.Lock()
	defer c.mu.Unlock()
	a.want = d
	switch {
	case d.IsZero():
		if a.idx >= 0 {
			heap.Remove(&c.alarms, a.idx)
		}
	case a.idx < 0:
		a.at = d
		heap.Push(&c.alarms, a)
	case d.Before(a.at):
		a.at = d
		heap.Fix(&c.alarms, a.idx)
	default:
		return // later: noted
	}
	c.program()
}

// Close disarms the Alarm and closes the Clock's timerfd with the last.
func (a *Alarm) Close() {
	a.Set(time.Time{})
	c := a.c
	c.mu.Lock()
	c.users--
	var done chan struct{}
	if c.users == 0 {
		c.f.Close()
		c.f, done = nil, c.done
	}
	c.mu.Unlock()
	if done != nil {
		<-done
	}
}

// alarmHeap orders alarms by at.
type alarmHeap []*Alarm

func (h alarmHeap) Len() int           { return len(h) }
func (h alarmHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h alarmHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *alarmHeap) Push(x any) {
	a := x.(*Alarm)
	a.idx = len(*h)
	*h = append(*h, a)
}
func (h *alarmHeap) Pop() any {
	old := *h
	a := old[len(old)-1]
	old[len(old)-1] = nil
	a.idx = -1
	*h = old[:len(old)-1]
	return a
}
