package main

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// sched is how the kernel schedules the daemon's threads, as
// director.rt_priority and director.nice set it: a policy (SCHED_RR at
// prio, or the one lvsha was started with) and a nice value.
type sched struct {
	policy uint32
	prio   uint32
	nice   int32
}

func (s sched) realtime() bool { return s.policy == unix.SCHED_RR || s.policy == unix.SCHED_FIFO }

func (s sched) String() string {
	names := map[uint32]string{unix.SCHED_NORMAL: "SCHED_OTHER", unix.SCHED_FIFO: "SCHED_FIFO", unix.SCHED_RR: "SCHED_RR",
		unix.SCHED_BATCH: "SCHED_BATCH", unix.SCHED_IDLE: "SCHED_IDLE", unix.SCHED_DEADLINE: "SCHED_DEADLINE"}
	name, ok := names[s.policy]
	if !ok {
		name = fmt.Sprintf("policy %d", s.policy)
	}
	if s.realtime() {
		return fmt.Sprintf("%s priority %d, nice %d", name, s.prio, s.nice)
	}
	return fmt.Sprintf("%s, nice %d", name, s.nice)
}

// currentSched reads the calling thread's scheduling: every thread's,
// since applySched sets them all and threads made later are cloned from
// them.
func currentSched() (sched, error) {
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return sched{}, fmt.Errorf("read the scheduling policy (sched_getattr): %w", err)
	}
	return sched{policy: a.Policy, prio: a.Priority, nice: a.Nice}, nil
}

// wantSched is what d asks for on top of base, the daemon's scheduling
// at start: a key left at 0 keeps base's.
func wantSched(base sched, d conf.Director) sched {
	w := base
	if d.RTPriority > 0 {
		w.policy, w.prio = unix.SCHED_RR, uint32(d.RTPriority)
	}
	if d.Nice != 0 {
		w.nice = int32(d.Nice)
	}
	return w
}

// raises says whether going from cur to want needs CAP_SYS_NICE: a
// real-time policy or priority the threads lack, or a lower nice value.
func raises(cur, want sched) bool {
	return want.realtime() && (!cur.realtime() || want.prio > cur.prio) || want.nice < cur.nice
}

// errSchedCgo is applySched's error in a binary built with cgo, as for
// capabilities (errCapsCgo).
var errSchedCgo = errors.New("scheduling not changed: this lvsha is built with cgo, which keeps Go from changing every thread's (build it with CGO_ENABLED=0)")

// applySched sets every thread of the process to s. A policy and a nice
// value are the thread's own, and any of Go's threads may run any
// goroutine: the VRRP timers as well as the probes. Threads made later
// are cloned from these and inherit both (without
// SCHED_FLAG_RESET_ON_FORK, which would give every new thread the normal
// policy again); the commands lvsha runs are set back to normal by
// proc.Run. sched_setattr ignores nice under a real-time policy, so
// setpriority sets it after.
func applySched(s sched) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: s.policy, Priority: s.prio, Nice: s.nice}
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_SCHED_SETATTR, 0, uintptr(unsafe.Pointer(&attr)), 0)
	runtime.KeepAlive(&attr)
	if errno == 0 {
		_, _, errno = syscall.AllThreadsSyscall(unix.SYS_SETPRIORITY, unix.PRIO_PROCESS, 0, uintptr(int(s.nice)))
	}
	switch {
	case errno == syscall.ENOTSUP:
		return errSchedCgo
	case errno != 0:
		return fmt.Errorf("set every thread to %s: %w", s, errno)
	}
	return nil
}

// schedState is the daemon's scheduling across reloads. The zero value
// (a daemon in tests) changes nothing.
type schedState struct {
	// base is the scheduling lvsha was started with: what a key left
	// unset keeps, or returns to when a reload removes it. cur is what
	// the threads run at now.
	base, cur sched
	known     bool
}

// startSched applies d at start and returns the state reloads change.
func startSched(log *slog.Logger, d conf.Director) (schedState, error) {
	base, err := currentSched()
	if err != nil {
		return schedState{}, err
	}
	st := schedState{base: base, cur: base, known: true}
	return st, st.apply(log, d)
}

// check refuses a reload whose scheduling the daemon may no longer
// set: raising it needs CAP_SYS_NICE, which the daemon keeps only when
// it started with rt_priority or a negative nice (keptCaps).
func (st *schedState) check(d conf.Director, effective uint64) error {
	if !st.known {
		return nil
	}
	want := wantSched(st.base, d)
	if want != st.cur && raises(st.cur, want) && effective&(1<<unix.CAP_SYS_NICE) == 0 {
		return fmt.Errorf("director.rt_priority, director.nice: %s asks more than the %s this daemon runs at, which needs CAP_SYS_NICE; the daemon kept it only if it started with rt_priority or a negative nice: restart lvsha to apply it", want, st.cur)
	}
	return nil
}

// apply sets every thread to what d asks, if that changed.
func (st *schedState) apply(log *slog.Logger, d conf.Director) error {
	if !st.known {
		return nil
	}
	want := wantSched(st.base, d)
	if want == st.cur {
		return nil
	}
	if err := applySched(want); err != nil {
		return fmt.Errorf("director.rt_priority, director.nice: %w", err)
	}
	log.Info("scheduling set", "op", "sched", "now", want.String(), "was", st.cur.String())
	st.cur = want
	return nil
}
