package instance

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

// clock wakes the instances of a director at their deadlines from one
// timerfd, read through the runtime's poller, instead of a Go timer per
// instance (issue #21's idle cost). Every Go timer that expires while the
// process is idle also wakes the runtime's monitor thread (sysmon sleeps
// until the next timer) and readies the timer's goroutine from a thread
// that has just left the poller, which wakes a second thread to look for
// work: three to five context switches per advert sent or Master_Down
// check, against keepalived's one. A timerfd is a file: its expiry
// returns the poller's epoll_wait like an advert does, on one thread, and
// sysmon sleeps on. One descriptor and one goroutine serve every instance,
// so aligned masters (vrrp.Config.AlignAdverts) share one wakeup.
//
// A deadline moved later (a backup's Master_Down_Timer, at every advert)
// is only noted: the alarm keeps its place and, when it comes due early,
// moves to the deadline then, without waking its instance.
type clock struct {
	mu     sync.Mutex
	f      *os.File // nil while no alarm exists
	alarms alarmHeap
	armed  time.Time // what f is set to; zero: disarmed
	users  int
	// done closes when the reading goroutine of f has returned.
	done chan struct{}
}

// alarm is one instance's deadline on a clock.
type alarm struct {
	c *clock
	// at is the alarm's place in the heap; want the deadline it serves,
	// at or after at. idx is its index in the heap, -1 when out of it.
	at, want time.Time
	idx      int
	ch       chan time.Time
}

// newAlarm returns an alarm on c, opening c's timerfd if it is the first.
func (c *clock) newAlarm() (*alarm, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("timerfd: %w", err)
		}
		// Non-blocking, so os.File reads it through the poller.
		c.f = os.NewFile(uintptr(fd), "vrrp-clock")
		c.armed = time.Time{}
		c.done = make(chan struct{})
		go c.run(c.f, c.done)
	}
	c.users++
	return &alarm{c: c, idx: -1, ch: make(chan time.Time, 1)}, nil
}

// run reads f until it is closed, firing what is due at each expiry.
func (c *clock) run(f *os.File, done chan<- struct{}) {
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
			// Closed by the last alarm's close; nothing else fails a
			// read of a timerfd with room for its count.
			return
		}
		c.fire(time.Now())
	}
}

// fire sends now to every alarm whose deadline has come, moves the ones
// that came due early to their deadline, and sets f for the next.
func (c *clock) fire(now time.Time) {
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
		// The channel holds one: an instance that has not taken the
		// last wake yet gets no second, which would say nothing new.
		select {
		case a.ch <- now:
		default:
		}
	}
	c.program()
}

// program sets f for the earliest alarm if it is not set for it already.
// c.mu is held.
func (c *clock) program() {
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
		// clock being closed no longer matter.
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
func (a *alarm) C() <-chan time.Time { return a.ch }

// set arms the alarm for d; zero disarms it. A later deadline than the
// armed one only is noted (see clock).
func (a *alarm) set(d time.Time) {
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

// close disarms the alarm and closes the clock's timerfd with the last.
func (a *alarm) close() {
	a.set(time.Time{})
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
type alarmHeap []*alarm

func (h alarmHeap) Len() int           { return len(h) }
func (h alarmHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h alarmHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *alarmHeap) Push(x any) {
	a := x.(*alarm)
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
