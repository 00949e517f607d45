package main

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

func TestWantSched(t *testing.T) {
	normal := sched{policy: unix.SCHED_NORMAL}
	niced := sched{policy: unix.SCHED_NORMAL, nice: 5}
	rr := sched{policy: unix.SCHED_RR, prio: 20, nice: -3}
	for _, tc := range []struct {
		name string
		base sched
		d    conf.Director
		want sched
	}{
		{"nothing set keeps the start's", niced, conf.Director{}, niced},
		{"rt_priority", normal, conf.Director{RTPriority: 10}, sched{policy: unix.SCHED_RR, prio: 10}},
		{"nice", niced, conf.Director{Nice: -10}, sched{policy: unix.SCHED_NORMAL, nice: -10}},
		{"both", niced, conf.Director{RTPriority: 99, Nice: -20}, sched{policy: unix.SCHED_RR, prio: 99, nice: -20}},
		{"started real-time, nothing set", rr, conf.Director{}, rr},
		{"started real-time, rt_priority", rr, conf.Director{RTPriority: 5}, sched{policy: unix.SCHED_RR, prio: 5, nice: -3}},
	} {
		if got := wantSched(tc.base, tc.d); got != tc.want {
			t.Errorf("%s: wantSched(%v, %+v) = %v, want %v", tc.name, tc.base, tc.d, got, tc.want)
		}
	}
}

func TestRaises(t *testing.T) {
	normal := sched{policy: unix.SCHED_NORMAL}
	rr10 := sched{policy: unix.SCHED_RR, prio: 10}
	for _, tc := range []struct {
		name      string
		cur, want sched
		raises    bool
	}{
		{"same", normal, normal, false},
		{"to real-time", normal, rr10, true},
		{"higher real-time priority", rr10, sched{policy: unix.SCHED_RR, prio: 11}, true},
		{"lower real-time priority", rr10, sched{policy: unix.SCHED_RR, prio: 9}, false},
		{"back to normal", rr10, normal, false},
		{"lower nice", normal, sched{policy: unix.SCHED_NORMAL, nice: -1}, true},
		{"higher nice", normal, sched{policy: unix.SCHED_NORMAL, nice: 1}, false},
		{"real-time, nice lowered", rr10, sched{policy: unix.SCHED_RR, prio: 10, nice: -5}, true},
	} {
		if got := raises(tc.cur, tc.want); got != tc.raises {
			t.Errorf("%s: raises(%v, %v) = %v, want %v", tc.name, tc.cur, tc.want, got, tc.raises)
		}
	}
}

// TestSchedCheck: a reload may lower the scheduling without
// CAP_SYS_NICE, not raise it; with it, either.
func TestSchedCheck(t *testing.T) {
	const withNice, without = 1 << unix.CAP_SYS_NICE, 1 << unix.CAP_NET_ADMIN
	normal := sched{policy: unix.SCHED_NORMAL}
	for _, tc := range []struct {
		name    string
		cur     sched
		d       conf.Director
		caps    uint64
		refused bool
	}{
		{"unchanged", normal, conf.Director{}, without, false},
		{"raise without CAP_SYS_NICE", normal, conf.Director{RTPriority: 10}, without, true},
		{"raise with it", normal, conf.Director{RTPriority: 10}, withNice, false},
		{"lower nice without it", normal, conf.Director{Nice: -5}, without, true},
		{"back to the start's without it", sched{policy: unix.SCHED_RR, prio: 10}, conf.Director{}, without, false},
	} {
		st := schedState{base: normal, cur: tc.cur, known: true}
		err := st.check(tc.d, tc.caps)
		if (err != nil) != tc.refused {
			t.Errorf("%s: check = %v, want refused %v", tc.name, err, tc.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "CAP_SYS_NICE") {
			t.Errorf("%s: %v does not name the capability", tc.name, err)
		}
	}
	if err := (&schedState{}).check(conf.Director{RTPriority: 10}, without); err != nil {
		t.Errorf("a daemon that never read its scheduling refuses: %v", err)
	}
}
