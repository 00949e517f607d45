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
type Clock struct {
	mu     sync.Mutex
	f      *os.File // nil while no Alarm exists
	alarms alarmHeap
	armed  time.Time // what f is set to; zero: disarmed
	users  int
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
	for {
		// Waits in the poller, then reads with a raw system call: the
		// runtime's ordinary path wakes its monitor thread from deep sleep
		// on every call in case it blocks (see transport's rawRecvmsg),
		// and a read of a non-blocking timerfd cannot block.
		var errno syscall.Errno
		err := rc.Read(func(fd uintptr) bool {
			_, _, errno = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			return errno != unix.EAGAIN
		})
		if err != nil || (errno != 0 && errno != unix.EINTR) {
			// Closed by the last Alarm's Close; nothing else fails a
			// read of a timerfd with room for its count.
			return
		}
		c.fire(time.Now())
	}
}

// fire sends now to every Alarm whose deadline has come, moves the ones
// that came due early to their deadline, and sets f for the next.
func (c *Clock) fire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = time.Time{}
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
		// The channel holds one: an owner that has not taken the
		// last wake yet gets no second, which would say nothing new.
		select {
		case a.ch <- now:
		default:
		}
	}
	c.program()
}

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
	if !next.IsZero() {
		// Relative, on Go's monotonic reading: Go's times carry no
		// absolute CLOCK_MONOTONIC value. A zero value disarms, so at
		// least a nanosecond.
		spec.Value = unix.NsecToTimespec(max(int64(time.Until(next)), 1))
	}
	if err := setTimer(c.f, &spec); err != nil {
		// Only a closed or invalid descriptor fails; the alarms of a
		// Clock being closed no longer matter.
		return
	}
	c.armed = next
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
