package vrrp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// peer is the other router in single-machine tests; its address is above
// src4 (192.0.2.1) and lower is below it.
var (
	peer  = mustAddr("192.0.2.9")
	lower = mustAddr("192.0.2.0")
)

func baseConfig() Config {
	return Config{Version: 3, VRID: 1, Priority: 100, AdvertInterval: time.Second,
		Source: src4, Addrs: []netip.Addr{vip4a}, Accept: true}
}

func TestFormulas(t *testing.T) {
	// Expected values worked from RFC 5798 6.1 / RFC 3768 6.1 by hand:
	// (256-100)/256 = 0.609375, (256-255)/256 = 0.00390625,
	// (256-1)/256 = 0.99609375.
	tests := []struct {
		version  int
		prio     uint8
		interval time.Duration
		skew     time.Duration
		down     time.Duration
	}{
		{2, 100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		// Version 2's skew is in seconds whatever the interval.
		{2, 100, 3 * time.Second, 609375 * time.Microsecond, 9609375 * time.Microsecond},
		{2, 1, time.Second, 996093750 * time.Nanosecond, 3996093750 * time.Nanosecond},
		{3, 100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{3, 100, 100 * time.Millisecond, 60937500 * time.Nanosecond, 360937500 * time.Nanosecond},
		{3, 255, time.Second, 3906250 * time.Nanosecond, 3003906250 * time.Nanosecond},
		{3, 1, 10 * time.Millisecond, 9960937 * time.Nanosecond, 39960937 * time.Nanosecond},
	}
	for _, tt := range tests {
		if got := SkewTime(tt.version, tt.prio, tt.interval); got != tt.skew {
			t.Errorf("SkewTime(v%d, %d, %s) = %s, want %s", tt.version, tt.prio, tt.interval, got, tt.skew)
		}
		if got := MasterDownInterval(tt.version, tt.prio, tt.interval); got != tt.down {
			t.Errorf("MasterDownInterval(v%d, %d, %s) = %s, want %s", tt.version, tt.prio, tt.interval, got, tt.down)
		}
	}
}

// TestMasterDownTiming: a backup that hears nothing takes over exactly at
// Master_Down_Interval, not a nanosecond before.
func TestMasterDownTiming(t *testing.T) {
	tests := []struct {
		name     string
		version  int
		interval time.Duration
		down     time.Duration // 3*interval + (256-100)/256 * (v3: interval, v2: 1s)
	}{
		{"v2 1s", 2, time.Second, 3*time.Second + 609375*time.Microsecond},
		{"v3 1s", 3, time.Second, 3*time.Second + 609375*time.Microsecond},
		{"v3 100ms", 3, 100 * time.Millisecond, 300*time.Millisecond + 60937500*time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			c.Version, c.AdvertInterval = tt.version, tt.interval
			m, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			m.Step(t0, Start{})
			if got := m.NextDeadline(); !got.Equal(t0.Add(tt.down)) {
				t.Fatalf("NextDeadline = %s after start, want +%s", got.Sub(t0), tt.down)
			}
			if acts := m.Step(t0.Add(tt.down-1), TimerFired{}); len(acts) != 0 || m.State() != Backup {
				t.Fatalf("1ns early: %v, state %s", acts, m.State())
			}
			acts := m.Step(t0.Add(tt.down), TimerFired{})
			want := []Action{SendAdvert{Priority: 100}, AddVIPs{Accept: true},
				Transition{From: Backup, To: Master, Reason: ReasonMasterDown, At: t0.Add(tt.down)}}
			if diff := cmp.Diff(want, acts); diff != "" {
				t.Errorf("at Master_Down_Interval (-want +got):\n%s", diff)
			}
			if got := m.NextDeadline(); !got.Equal(t0.Add(tt.down + tt.interval)) {
				t.Errorf("Adver_Timer = +%s, want +%s", got.Sub(t0), tt.down+tt.interval)
			}
		})
	}
}

// input is one event stepped in at an offset from t0.
type input struct {
	at time.Duration
	ev Event
}

func adv(prio uint8, src netip.Addr) AdvertReceived {
	return AdvertReceived{Advert: &Advert{Version: 3, VRID: 1, Priority: prio, Interval: time.Second, Addrs: []netip.Addr{vip4a}}, Src: src}
}

func advInterval(prio uint8, interval time.Duration) AdvertReceived {
	a := adv(prio, peer)
	a.Advert.Interval = interval
	return a
}

func tr(from, to State, r Reason, at time.Duration) Transition {
	return Transition{From: from, To: to, Reason: r, At: t0.Add(at)}
}

const noDeadline = time.Duration(-1)

// Durations the rows use, worked by hand: at priority 100 and 1s,
// Master_Down_Interval is 3.609375s and Skew_Time 0.609375s.
const (
	mdi100  = 3609375 * time.Microsecond
	skew100 = 609375 * time.Microsecond
)

// masterAt makes a machine of priority p master at 0: an owner by
// starting, any other by starting a Master_Down_Interval earlier.
func masterAt(p uint8) []input {
	if p == 255 {
		return []input{{0, Start{}}}
	}
	return []input{{-MasterDownInterval(3, p, time.Second), Start{}}, {0, TimerFired{}}}
}

// TestTransitions walks every transition of RFC 5798 6.4 and lvsha's
// additions. Each row feeds inputs in order and checks the last input's
// actions, the state, and the one running timer.
func TestTransitions(t *testing.T) {
	tests := []struct {
		name     string
		cfg      func(c *Config)
		steps    []input
		want     []Action
		state    State
		deadline time.Duration // from t0; noDeadline for none
		wants    State         // Wants(); zero value means "same as state"
	}{
		// 6.4.1 Initialize
		{name: "start non-owner", steps: []input{{0, Start{}}},
			want: []Action{tr(Initialize, Backup, ReasonStartup, 0)}, state: Backup, deadline: mdi100},
		{name: "start owner", cfg: func(c *Config) { c.Priority = 255 }, steps: []input{{0, Start{}}},
			want:  []Action{SendAdvert{255}, AddVIPs{Accept: true}, tr(Initialize, Master, ReasonOwner, 0)},
			state: Master, deadline: time.Second},
		{name: "advert before start is ignored", steps: []input{{0, adv(200, peer)}},
			want: nil, state: Initialize, deadline: noDeadline},
		{name: "second start is ignored", steps: []input{{0, Start{}}, {time.Second, Start{}}},
			want: nil, state: Backup, deadline: mdi100},
		{name: "timer before start does nothing", steps: []input{{time.Hour, TimerFired{}}},
			want: nil, state: Initialize, deadline: noDeadline},

		// 6.4.2 Backup
		{name: "backup: master down", steps: []input{{0, Start{}}, {mdi100, TimerFired{}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, mdi100)},
			state: Master, deadline: mdi100 + time.Second},
		{name: "backup: higher priority resets Master_Down_Timer", steps: []input{{0, Start{}}, {3 * time.Second, adv(200, peer)}},
			want: nil, state: Backup, deadline: 3*time.Second + mdi100},
		{name: "backup: equal priority resets Master_Down_Timer", steps: []input{{0, Start{}}, {3 * time.Second, adv(100, peer)}},
			want: nil, state: Backup, deadline: 3*time.Second + mdi100},
		{name: "backup, preempt: lower priority discarded", steps: []input{{0, Start{}}, {3 * time.Second, adv(50, peer)}},
			want: nil, state: Backup, deadline: mdi100},
		{name: "backup, preempt: takes over from lower master", steps: []input{{0, Start{}}, {3 * time.Second, adv(50, peer)}, {mdi100, TimerFired{}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, mdi100)},
			state: Master, deadline: mdi100 + time.Second},
		{name: "backup, nopreempt: lower priority resets", cfg: func(c *Config) { c.NoPreempt = true },
			steps: []input{{0, Start{}}, {3 * time.Second, adv(50, peer)}},
			want:  nil, state: Backup, deadline: 3*time.Second + mdi100},
		{name: "backup, nopreempt: stays backup under a live lower master", cfg: func(c *Config) { c.NoPreempt = true },
			steps: []input{{0, Start{}}, {3 * time.Second, adv(50, peer)}, {6 * time.Second, adv(50, peer)}, {9 * time.Second, TimerFired{}}},
			want:  nil, state: Backup, deadline: 6*time.Second + mdi100},
		{name: "backup, preempt_delay: lower master kept during the delay", cfg: func(c *Config) { c.PreemptDelay = 10 * time.Second },
			steps: []input{{0, Start{}}, {3 * time.Second, adv(50, peer)}},
			want:  nil, state: Backup, deadline: 3*time.Second + mdi100},
		{name: "backup, preempt_delay: lower master preempted after the delay", cfg: func(c *Config) { c.PreemptDelay = 2 * time.Second },
			steps: []input{{0, Start{}}, {time.Second, adv(50, peer)}, {3 * time.Second, adv(50, peer)}},
			want:  nil, state: Backup, deadline: time.Second + mdi100},
		{name: "backup, preempt hold: lower master kept during the hold",
			steps: []input{{0, Start{}}, {0, HoldPreempt{Until: t0.Add(10 * time.Second)}}, {3 * time.Second, adv(50, peer)}},
			want:  nil, state: Backup, deadline: 3*time.Second + mdi100},
		{name: "backup, preempt hold: lower master preempted once the hold has passed",
			steps: []input{{0, Start{}}, {0, HoldPreempt{Until: t0.Add(2 * time.Second)}}, {time.Second, adv(50, peer)}, {3 * time.Second, adv(50, peer)}},
			want:  nil, state: Backup, deadline: time.Second + mdi100},
		{name: "backup, preempt hold: a silent lower master is still taken over",
			steps: []input{{0, Start{}}, {0, HoldPreempt{Until: t0.Add(time.Hour)}}, {time.Second, adv(50, peer)}, {time.Second + mdi100, TimerFired{}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, time.Second+mdi100)},
			state: Master, deadline: 2*time.Second + mdi100},
		{name: "backup, preempt hold: a resigning master is taken over at Skew_Time",
			steps: []input{{0, Start{}}, {0, HoldPreempt{Until: t0.Add(time.Hour)}}, {2 * time.Second, adv(0, peer)}},
			want:  nil, state: Backup, deadline: 2*time.Second + skew100},
		{name: "backup, preempt hold: a zero Until lifts it",
			steps: []input{{0, Start{}}, {0, HoldPreempt{Until: t0.Add(time.Hour)}}, {time.Second, HoldPreempt{}}, {3 * time.Second, adv(50, peer)}},
			want:  nil, state: Backup, deadline: mdi100},
		{name: "backup, preempt hold: a higher master is followed as ever",
			steps: []input{{0, Start{}}, {0, HoldPreempt{Until: t0.Add(time.Hour)}}, {3 * time.Second, adv(200, peer)}},
			want:  nil, state: Backup, deadline: 3*time.Second + mdi100},
		{name: "backup: priority 0 sets Master_Down_Timer to Skew_Time", steps: []input{{0, Start{}}, {2 * time.Second, adv(0, peer)}},
			want: nil, state: Backup, deadline: 2*time.Second + skew100},
		{name: "backup: takes over at Skew_Time after priority 0", steps: []input{{0, Start{}}, {2 * time.Second, adv(0, peer)}, {2*time.Second + skew100, TimerFired{}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, 2*time.Second+skew100)},
			state: Master, deadline: 3*time.Second + skew100},
		{name: "backup v3: learns Master_Adver_Interval", cfg: func(c *Config) { c.AdvertInterval = 100 * time.Millisecond },
			steps: []input{{0, Start{}}, {100 * time.Millisecond, advInterval(200, 2*time.Second)}},
			// 3*2s + (256-100)*2s/256 = 6s + 1.21875s
			want: nil, state: Backup, deadline: 100*time.Millisecond + 7218750*time.Microsecond},
		{name: "backup v3: relearns the interval after a priority 0", cfg: func(c *Config) { c.AdvertInterval = 100 * time.Millisecond },
			steps: []input{{0, Start{}}, {0, advInterval(200, 2*time.Second)}, {time.Second, advInterval(0, 2*time.Second)}},
			// Skew_Time uses the learned 2s: 156*2s/256
			want: nil, state: Backup, deadline: time.Second + 1218750*time.Microsecond},
		{name: "backup v2: interval other than ours is dropped",
			cfg: func(c *Config) { c.Version = 2 },
			steps: []input{{0, Start{}}, {time.Second, AdvertReceived{Src: peer,
				Advert: &Advert{Version: 2, VRID: 1, Priority: 200, Interval: 2 * time.Second, Addrs: []netip.Addr{vip4a}}}}},
			want: []Action{Dropped{DropInterval}}, state: Backup, deadline: mdi100},
		{name: "backup: shutdown", steps: []input{{0, Start{}}, {time.Second, Shutdown{}}},
			want: []Action{tr(Backup, Initialize, ReasonShutdown, time.Second)}, state: Initialize, deadline: noDeadline},
		{name: "backup: late event sees the timer fire first", steps: []input{{0, Start{}}, {mdi100 + time.Millisecond, adv(200, peer)}},
			want: []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, mdi100+time.Millisecond),
				SendAdvert{100}, RemoveVIPs{}, tr(Master, Backup, ReasonHigherPriority, mdi100+time.Millisecond)},
			state: Backup, deadline: 2*mdi100 + time.Millisecond},

		// 6.4.3 Master
		{name: "master: Adver_Timer sends", steps: append(masterAt(100), input{time.Second, TimerFired{}}),
			want: []Action{SendAdvert{100}}, state: Master, deadline: 2 * time.Second},
		{name: "master: a late Adver_Timer keeps the schedule", steps: append(masterAt(100), input{1300 * time.Millisecond, TimerFired{}}),
			want: []Action{SendAdvert{100}}, state: Master, deadline: 2 * time.Second},
		{name: "master: slots missed while stopped are skipped", steps: append(masterAt(100), input{3500 * time.Millisecond, TimerFired{}}),
			want: []Action{SendAdvert{100}}, state: Master, deadline: 4 * time.Second},
		{name: "master: a timer exactly on a later slot moves to the next", steps: append(masterAt(100), input{3 * time.Second, TimerFired{}}),
			want: []Action{SendAdvert{100}}, state: Master, deadline: 4 * time.Second},
		{name: "master: priority 0 answered at once", steps: append(masterAt(100), input{300 * time.Millisecond, adv(0, peer)}),
			want: []Action{SendAdvert{100}}, state: Master, deadline: 1300 * time.Millisecond},
		{name: "master: higher priority: one last advert of ours, then backup", steps: append(masterAt(100), input{500 * time.Millisecond, adv(150, peer)}),
			want:  []Action{SendAdvert{100}, RemoveVIPs{}, tr(Master, Backup, ReasonHigherPriority, 500*time.Millisecond)},
			state: Backup, deadline: 500*time.Millisecond + mdi100},
		{name: "master v3: learns the new master's interval", steps: append(masterAt(100), input{0, advInterval(150, 200*time.Millisecond)}),
			// 600ms + 156*200ms/256 = 600ms + 121.875ms
			want:  []Action{SendAdvert{100}, RemoveVIPs{}, tr(Master, Backup, ReasonHigherPriority, 0)},
			state: Backup, deadline: 721875 * time.Microsecond},
		{name: "master: equal priority, higher address wins", steps: append(masterAt(100), input{time.Second / 2, adv(100, peer)}),
			want:  []Action{SendAdvert{100}, RemoveVIPs{}, tr(Master, Backup, ReasonHigherAddress, time.Second/2)},
			state: Backup, deadline: time.Second/2 + mdi100},
		{name: "master: equal priority, lower address discarded", steps: append(masterAt(100), input{time.Second / 2, adv(100, lower)}),
			want: nil, state: Master, deadline: time.Second},
		{name: "master: lower priority discarded", steps: append(masterAt(100), input{time.Second / 2, adv(99, peer)}),
			want: nil, state: Master, deadline: time.Second},
		{name: "owner: equal priority, higher address wins", cfg: func(c *Config) { c.Priority = 255 },
			steps: append(masterAt(255), input{time.Second / 2, adv(255, peer)}),
			want:  []Action{SendAdvert{255}, RemoveVIPs{}, tr(Master, Backup, ReasonHigherAddress, time.Second/2)},
			// priority 255: 3s + 1/256 s
			state: Backup, deadline: time.Second/2 + 3003906250*time.Nanosecond},
		{name: "master: lowered priority is advertised", steps: append(masterAt(100), input{0, SetPriority{60}}, input{time.Second, TimerFired{}}),
			want: []Action{SendAdvert{60}}, state: Master, deadline: 2 * time.Second},

		// Shutdown and lvsha's handover
		{name: "master: shutdown resigns, keeps VIPs", steps: append(masterAt(100), input{time.Second / 2, Shutdown{}}),
			want:  []Action{SendAdvert{0}, tr(Master, Stopping, ReasonShutdown, time.Second/2)},
			state: Stopping, deadline: time.Second/2 + 3*time.Second, wants: Initialize},
		{name: "stopping: StopWait configurable", cfg: func(c *Config) { c.StopWait = 700 * time.Millisecond },
			steps: append(masterAt(100), input{0, Shutdown{}}),
			want:  []Action{SendAdvert{0}, tr(Master, Stopping, ReasonShutdown, 0)},
			state: Stopping, deadline: 700 * time.Millisecond, wants: Initialize},
		{name: "stopping: successor's advert releases", steps: append(masterAt(100), input{0, Shutdown{}}, input{skew100, adv(50, peer)}),
			want:  []Action{RemoveVIPs{}, tr(Stopping, Initialize, ReasonNewMaster, skew100)},
			state: Initialize, deadline: noDeadline},
		{name: "stopping: another resignation does not release", steps: append(masterAt(100), input{0, Shutdown{}}, input{time.Second, adv(0, peer)}),
			want: nil, state: Stopping, deadline: 3 * time.Second, wants: Initialize},
		{name: "stopping: bounded wait", steps: append(masterAt(100), input{0, Shutdown{}}, input{3 * time.Second, TimerFired{}}),
			want:  []Action{RemoveVIPs{}, tr(Stopping, Initialize, ReasonStopWaitExpired, 3*time.Second)},
			state: Initialize, deadline: noDeadline},
		{name: "stopping: second shutdown releases at once", steps: append(masterAt(100), input{0, Shutdown{}}, input{time.Second, Shutdown{}}),
			want:  []Action{RemoveVIPs{}, tr(Stopping, Initialize, ReasonShutdown, time.Second)},
			state: Initialize, deadline: noDeadline},
		{name: "stopping: start cancels the resignation", steps: append(masterAt(100), input{0, Shutdown{}}, input{time.Second, Start{}}),
			want:  []Action{SendAdvert{100}, tr(Stopping, Master, ReasonStartup, time.Second)},
			state: Master, deadline: 2 * time.Second},
		{name: "stopping: start while gated releases and waits", steps: append(masterAt(100), input{0, Shutdown{}}, input{0, GroupGate{AllowMaster: false}}, input{time.Second, Start{}}),
			want:  []Action{RemoveVIPs{}, tr(Stopping, Backup, ReasonStartup, time.Second)},
			state: Backup, deadline: time.Second + mdi100},
		{name: "stopped machine restarts", steps: append(masterAt(100), input{0, Shutdown{}}, input{0, Shutdown{}}, input{time.Second, Start{}}),
			want: []Action{tr(Initialize, Backup, ReasonStartup, time.Second)}, state: Backup, deadline: time.Second + mdi100},

		// Filter
		{name: "own advert dropped", steps: []input{{0, Start{}}, {time.Second, adv(200, src4)}},
			want: []Action{Dropped{DropOwn}}, state: Backup, deadline: mdi100},
		{name: "other VRID dropped", steps: []input{{0, Start{}}, {time.Second, func() Event { a := adv(200, peer); a.Advert.VRID = 2; return a }()}},
			want: []Action{Dropped{DropVRID}}, state: Backup, deadline: mdi100},
		{name: "other version dropped", steps: []input{{0, Start{}}, {time.Second, func() Event { a := adv(200, peer); a.Advert.Version = 2; return a }()}},
			want: []Action{Dropped{DropVersion}}, state: Backup, deadline: mdi100},
		{name: "IPv6 advert on an IPv4 instance dropped", steps: []input{{0, Start{}}, {time.Second, func() Event {
			a := adv(200, peer)
			a.Advert.Addrs = []netip.Addr{vip6a}
			return a
		}()}},
			want: []Action{Dropped{DropFamily}}, state: Backup, deadline: mdi100},
		{name: "v2 wrong password dropped", cfg: func(c *Config) { c.Version, c.AuthType, c.AuthData = 2, AuthSimple, [8]byte{'a'} },
			steps: []input{{0, Start{}}, {time.Second, AdvertReceived{Src: peer, Advert: &Advert{Version: 2, VRID: 1, Priority: 200,
				Interval: time.Second, Addrs: []netip.Addr{vip4a}, AuthType: AuthSimple, AuthData: [8]byte{'b'}}}}},
			want: []Action{Dropped{DropAuth}}, state: Backup, deadline: mdi100},
		{name: "v2 missing password dropped", cfg: func(c *Config) { c.Version, c.AuthType, c.AuthData = 2, AuthSimple, [8]byte{'a'} },
			steps: []input{{0, Start{}}, {time.Second, AdvertReceived{Src: peer, Advert: &Advert{Version: 2, VRID: 1, Priority: 200,
				Interval: time.Second, Addrs: []netip.Addr{vip4a}}}}},
			want: []Action{Dropped{DropAuth}}, state: Backup, deadline: mdi100},
		{name: "v2 right password accepted", cfg: func(c *Config) { c.Version, c.AuthType, c.AuthData = 2, AuthSimple, [8]byte{'a'} },
			steps: []input{{0, Start{}}, {time.Second, AdvertReceived{Src: peer, Advert: &Advert{Version: 2, VRID: 1, Priority: 200,
				Interval: time.Second, Addrs: []netip.Addr{vip4a}, AuthType: AuthSimple, AuthData: [8]byte{'a'}}}}},
			want: nil, state: Backup, deadline: time.Second + mdi100},

		// Fault
		{name: "backup: fault", steps: []input{{0, Start{}}, {time.Second, FaultDetected{}}},
			want: []Action{tr(Backup, Fault, ReasonFault, time.Second)}, state: Fault, deadline: noDeadline},
		{name: "master: fault resigns and releases", steps: append(masterAt(100), input{time.Second / 2, FaultDetected{}}),
			want:  []Action{SendAdvert{0}, RemoveVIPs{}, tr(Master, Fault, ReasonFault, time.Second/2)},
			state: Fault, deadline: noDeadline},
		{name: "fault: adverts ignored", steps: []input{{0, Start{}}, {0, FaultDetected{}}, {time.Second, adv(0, peer)}},
			want: nil, state: Fault, deadline: noDeadline},
		{name: "fault cleared: backup", steps: []input{{0, Start{}}, {0, FaultDetected{}}, {time.Second, FaultCleared{}}},
			want: []Action{tr(Fault, Backup, ReasonRecovered, time.Second)}, state: Backup, deadline: time.Second + mdi100},
		{name: "fault cleared: owner is master", cfg: func(c *Config) { c.Priority = 255 },
			steps: []input{{0, Start{}}, {0, FaultDetected{}}, {time.Second, FaultCleared{}}},
			want:  []Action{SendAdvert{255}, AddVIPs{Accept: true}, tr(Fault, Master, ReasonOwner, time.Second)},
			state: Master, deadline: 2 * time.Second},
		{name: "fault before start", steps: []input{{0, FaultDetected{}}, {time.Second, Start{}}},
			want: []Action{tr(Initialize, Fault, ReasonFault, time.Second)}, state: Fault, deadline: noDeadline},
		{name: "fault: shutdown", steps: []input{{0, Start{}}, {0, FaultDetected{}}, {time.Second, Shutdown{}}},
			want: []Action{tr(Fault, Initialize, ReasonShutdown, time.Second)}, state: Initialize, deadline: noDeadline},
		{name: "stopping: fault releases", steps: append(masterAt(100), input{0, Shutdown{}}, input{time.Second, FaultDetected{}}),
			want:  []Action{RemoveVIPs{}, tr(Stopping, Initialize, ReasonFault, time.Second)},
			state: Initialize, deadline: noDeadline},

		// Priority changes
		{name: "backup raised above master preempts", steps: []input{{0, Start{}}, {time.Second, adv(150, peer)}, {2 * time.Second, SetPriority{200}},
			{3 * time.Second, adv(150, peer)}, {time.Second + mdi100, TimerFired{}}},
			// The 3s advert is discarded, so the timer armed at 1s fires.
			want:  []Action{SendAdvert{200}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, time.Second+mdi100)},
			state: Master, deadline: 2*time.Second + mdi100},
		{name: "priority 0 is raised to 1", steps: []input{{0, SetPriority{0}}, {0, Start{}}},
			// 3s + 255/256 s
			want: []Action{tr(Initialize, Backup, ReasonStartup, 0)}, state: Backup, deadline: 3996093750 * time.Nanosecond},

		// Sync group gate
		{name: "gated backup waits instead of taking over", steps: []input{{0, GroupGate{AllowMaster: false}}, {0, Start{}}, {mdi100, TimerFired{}}},
			want: nil, state: Backup, deadline: noDeadline, wants: Master},
		{name: "gate opens: waiting backup takes over", steps: []input{{0, GroupGate{AllowMaster: false}}, {0, Start{}}, {mdi100, TimerFired{}}, {5 * time.Second, GroupGate{AllowMaster: true}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonSyncGroup, 5*time.Second)},
			state: Master, deadline: 6 * time.Second},
		{name: "gate opens: backup that defers to a master stays", steps: []input{{0, GroupGate{AllowMaster: false}}, {0, Start{}}, {time.Second, adv(200, peer)}, {2 * time.Second, GroupGate{AllowMaster: true}}},
			want: nil, state: Backup, deadline: time.Second + mdi100},
		{name: "gate closes on a master", steps: append(masterAt(100), input{time.Second / 2, GroupGate{AllowMaster: false}}),
			want:  []Action{SendAdvert{0}, RemoveVIPs{}, tr(Master, Backup, ReasonSyncGroup, time.Second/2)},
			state: Backup, deadline: noDeadline, wants: Master},
		// draft-ietf-rtgwg-vrrp-bfd-p2p: MasterDown from BFD
		{name: "backup: MasterDown from its master takes over",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {1500 * time.Millisecond, MasterDown{Peer: peer}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonBFDDown, 1500*time.Millisecond)},
			state: Master, deadline: 2500 * time.Millisecond},
		{name: "backup: MasterDown when the master advertised after BFD last heard it: alive, stays backup",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {1050 * time.Millisecond, MasterDown{Peer: peer, LastHeard: t0.Add(900 * time.Millisecond), Interval: 30 * time.Millisecond}}},
			want:  []Action{MasterAlive{Peer: peer}}, state: Backup, deadline: time.Second + mdi100},
		// The master's last advert left just after its last BFD packet,
		// then it died: the advert proves it alive only then.
		{name: "backup: MasterDown when the master advertised within a BFD interval of BFD last hearing it takes over",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {1090 * time.Millisecond, MasterDown{Peer: peer, LastHeard: t0.Add(995 * time.Millisecond), Interval: 30 * time.Millisecond}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonBFDDown, 1090*time.Millisecond)},
			state: Master, deadline: 2090 * time.Millisecond},
		{name: "backup: MasterDown when BFD heard the master after its last advert takes over",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {1050 * time.Millisecond, MasterDown{Peer: peer, LastHeard: t0.Add(1020 * time.Millisecond), Interval: 10 * time.Millisecond}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonBFDDown, 1050*time.Millisecond)},
			state: Master, deadline: 2050 * time.Millisecond},
		{name: "backup: MasterDown of another address is ignored",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {1500 * time.Millisecond, MasterDown{Peer: lower}}},
			want:  nil, state: Backup, deadline: time.Second + mdi100},
		{name: "backup: MasterDown before any master is heard is ignored",
			steps: []input{{0, Start{}}, {time.Second, MasterDown{Peer: peer}}},
			want:  nil, state: Backup, deadline: mdi100},
		{name: "backup: MasterDown of a master that resigned into our own mastership is ignored",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {2 * time.Second, adv(0, peer)}, {2*time.Second + skew100, TimerFired{}},
				{3 * time.Second, MasterDown{Peer: peer}}},
			want: nil, state: Master, deadline: 3*time.Second + skew100},
		{name: "master: MasterDown is ignored", steps: append(masterAt(100), input{time.Second / 2, MasterDown{Peer: peer}}),
			want: nil, state: Master, deadline: time.Second},
		{name: "gated backup: MasterDown makes it want master",
			steps: []input{{0, GroupGate{AllowMaster: false}}, {0, Start{}}, {time.Second, adv(200, peer)}, {1500 * time.Millisecond, MasterDown{Peer: peer}}},
			want:  nil, state: Backup, deadline: noDeadline, wants: Master},
		{name: "after MasterDown, the live master's advert takes master back and is reported",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {1500 * time.Millisecond, MasterDown{Peer: peer}}, {2 * time.Second, adv(200, peer)}},
			want:  []Action{MasterAlive{Peer: peer}, SendAdvert{100}, RemoveVIPs{}, tr(Master, Backup, ReasonHigherPriority, 2*time.Second)},
			state: Backup, deadline: 2*time.Second + mdi100},
		{name: "MasterAlive is reported once",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {1500 * time.Millisecond, MasterDown{Peer: peer}}, {2 * time.Second, adv(200, peer)},
				{3 * time.Second, adv(200, peer)}},
			want: nil, state: Backup, deadline: 3*time.Second + mdi100},
		{name: "an advert after Master_Down_Interval is a master come back, not MasterAlive",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {1500 * time.Millisecond, MasterDown{Peer: peer}},
				{1500*time.Millisecond + mdi100, adv(200, peer)}},
			// The advert due at 4.5s goes first: no step ran the timer.
			want:  []Action{SendAdvert{100}, SendAdvert{100}, RemoveVIPs{}, tr(Master, Backup, ReasonHigherPriority, 1500*time.Millisecond+mdi100)},
			state: Backup, deadline: 1500*time.Millisecond + 2*mdi100},
		// Yield: split_brain = "resolve" (the cluster saw another master).
		{name: "master: Yield gives master up, with no Master_Down_Timer",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}),
			want:  []Action{RemoveVIPs{}, tr(Master, Backup, ReasonYield, time.Second/2)},
			state: Backup, deadline: noDeadline},
		{name: "yielded backup stays backup however long adverts stay away",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}, input{time.Hour, TimerFired{}}),
			want:  nil, state: Backup, deadline: noDeadline},
		{name: "yielded backup: an advert heard again brings VRRP's rules back",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}, input{time.Minute, adv(200, peer)}),
			want:  nil, state: Backup, deadline: time.Minute + mdi100},
		{name: "yielded backup: a lower master heard again is preempted at Master_Down_Interval",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}, input{time.Minute, adv(50, peer)},
				input{time.Minute + mdi100, TimerFired{}}),
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, time.Minute+mdi100)},
			state: Master, deadline: time.Minute + mdi100 + time.Second},
		{name: "yielded backup: a priority 0 from the other master is taken over at Skew_Time",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}, input{time.Minute, adv(0, peer)}),
			want:  nil, state: Backup, deadline: time.Minute + skew100},
		{name: "yielded backup: the lift restarts Master_Down_Timer",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}, input{time.Minute, Yield{}}),
			want:  nil, state: Backup, deadline: time.Minute + mdi100},
		{name: "yielded backup: lifted and still silent, master again",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}, input{time.Minute, Yield{}}, input{time.Minute + mdi100, TimerFired{}}),
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, time.Minute+mdi100)},
			state: Master, deadline: time.Minute + mdi100 + time.Second},
		{name: "yielded backup: MasterDown about the other master takes over at once",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}, input{time.Minute, MasterDown{Peer: peer}}),
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonBFDDown, time.Minute)},
			state: Master, deadline: time.Minute + time.Second},
		{name: "backup: Yield is ignored",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {2 * time.Second, Yield{To: peer}}},
			want:  nil, state: Backup, deadline: time.Second + mdi100},
		{name: "backup: a lift without a Yield is ignored",
			steps: []input{{0, Start{}}, {time.Second, adv(200, peer)}, {2 * time.Second, Yield{}}},
			want:  nil, state: Backup, deadline: time.Second + mdi100},
		{name: "master: a lift without a Yield is ignored",
			steps: append(masterAt(100), input{time.Second / 2, Yield{}}),
			want:  nil, state: Master, deadline: time.Second},
		{name: "fault: Yield is ignored",
			steps: []input{{0, Start{}}, {0, FaultDetected{}}, {time.Second, Yield{To: peer}}},
			want:  nil, state: Fault, deadline: noDeadline},
		{name: "yielded backup: fault and recovery start a fresh backup",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}, input{time.Second, FaultDetected{}}, input{2 * time.Second, FaultCleared{}}),
			want:  []Action{tr(Fault, Backup, ReasonRecovered, 2*time.Second)},
			state: Backup, deadline: 2*time.Second + mdi100},
		{name: "yielded backup: shutdown",
			steps: append(masterAt(100), input{time.Second / 2, Yield{To: peer}}, input{time.Second, Shutdown{}}),
			want:  []Action{tr(Backup, Initialize, ReasonShutdown, time.Second)},
			state: Initialize, deadline: noDeadline},
		{name: "gated owner starts as waiting backup", cfg: func(c *Config) { c.Priority = 255 },
			steps: []input{{0, GroupGate{AllowMaster: false}}, {0, Start{}}},
			want:  []Action{tr(Initialize, Backup, ReasonStartup, 0)}, state: Backup, deadline: noDeadline, wants: Master},
		{name: "gated backup that hears a better master no longer wants master",
			steps: []input{{0, GroupGate{AllowMaster: false}}, {0, Start{}}, {mdi100, TimerFired{}}, {4 * time.Second, adv(200, peer)}},
			want:  nil, state: Backup, deadline: 4*time.Second + mdi100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			if tt.cfg != nil {
				tt.cfg(&c)
			}
			m, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			var got []Action
			for _, s := range tt.steps {
				got = m.Step(t0.Add(s.at), s.ev)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("last step's actions (-want +got):\n%s", diff)
			}
			if m.State() != tt.state {
				t.Errorf("state %s, want %s", m.State(), tt.state)
			}
			wantDL := time.Time{}
			if tt.deadline != noDeadline {
				wantDL = t0.Add(tt.deadline)
			}
			if got := m.NextDeadline(); !got.Equal(wantDL) {
				t.Errorf("NextDeadline %v (+%s), want +%s", got, got.Sub(t0), tt.deadline)
			}
			// Zero means "what the state says"; Stopping wants Initialize.
			wants := tt.wants
			if wants == Initialize && tt.state != Stopping {
				wants = tt.state
			}
			if got := m.Wants(); got != wants {
				t.Errorf("Wants %s, want %s", got, wants)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
		want string // substring of the error; "" for valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"valid v2 password", func(c *Config) { c.Version, c.AuthType = 2, AuthSimple }, ""},
		{"valid IPv6", func(c *Config) { c.Source, c.Addrs = src6, []netip.Addr{vip6a} }, ""},
		{"VRID 0", func(c *Config) { c.VRID = 0 }, "VRID 0"},
		{"priority 0", func(c *Config) { c.Priority = 0 }, "priority 0"},
		{"no source", func(c *Config) { c.Source = netip.Addr{} }, "source address invalid IP"},
		{"mapped source", func(c *Config) { c.Source = netip.AddrFrom16(src4.As16()) }, "source address ::ffff:192.0.2.1"},
		{"no addresses", func(c *Config) { c.Addrs = nil }, "0 addresses"},
		{"mixed family", func(c *Config) { c.Addrs = []netip.Addr{vip6a} }, "address 2001:db8::100 is not of the packet's family"},
		{"v2 IPv6", func(c *Config) { c.Version, c.Source, c.Addrs = 2, src6, []netip.Addr{vip6a} }, "VRRPv2 is IPv4 only"},
		{"v3 15ms", func(c *Config) { c.AdvertInterval = 15 * time.Millisecond }, "interval 15ms"},
		{"v2 100ms", func(c *Config) { c.Version, c.AdvertInterval = 2, 100*time.Millisecond }, "VRRPv2 interval 100ms"},
		{"v3 auth", func(c *Config) { c.AuthType = AuthSimple }, "VRRPv3 has no authentication"},
		{"version 1", func(c *Config) { c.Version = 1 }, "version 1 is not 2 or 3"},
		{"negative preempt delay", func(c *Config) { c.PreemptDelay = -time.Second }, "preempt delay -1s"},
		{"negative stop wait", func(c *Config) { c.StopWait = -time.Second }, "stop wait -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := New(c); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if _, err := New(c); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

// TestNewCopiesAddrs: the machine must not see the caller's later edits.
func TestNewCopiesAddrs(t *testing.T) {
	c := baseConfig()
	c.Addrs = []netip.Addr{vip4a}
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Addrs[0] = vip6a
	if got := m.cfg.Addrs[0]; got != vip4a {
		t.Fatalf("machine's address changed to %s", got)
	}
}

func TestGroupTarget(t *testing.T) {
	tests := []struct {
		wants []State
		want  State
	}{
		{nil, Backup},
		{[]State{Master}, Master},
		{[]State{Master, Master, Master}, Master},
		{[]State{Master, Backup}, Backup},
		{[]State{Backup, Master}, Backup},
		{[]State{Master, Fault}, Fault},
		{[]State{Fault, Master}, Fault},
		{[]State{Backup, Fault, Master}, Fault},
		{[]State{Master, Initialize}, Backup},
		{[]State{Backup, Backup}, Backup},
	}
	for _, tt := range tests {
		if got := GroupTarget(tt.wants); got != tt.want {
			t.Errorf("GroupTarget(%v) = %s, want %s", tt.wants, got, tt.want)
		}
	}
}

// FuzzMachine feeds arbitrary event sequences and checks the invariants a
// runner relies on: VIPs are held exactly in Master and Stopping, never
// added twice or removed when not held; transitions chain from the
// current state; a state that needs a timer has one; a priority-0 advert
// is sent only when leaving Master.
func FuzzMachine(f *testing.F) {
	f.Add([]byte{0, 9, 9, 9, 9, 1, 9, 9})
	f.Add([]byte{0, 2, 9, 9, 9, 3, 5, 4, 6, 7, 1, 1})
	f.Add([]byte{0x80, 0, 8, 9, 9, 1, 2, 0x30, 7, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		c := baseConfig()
		c.Priority = data[0] | 1
		c.NoPreempt = data[0]&2 != 0
		c.PreemptDelay = time.Duration(data[0]>>4) * time.Second
		m, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		now, holding, gated := t0, false, false
		for i, b := range data[1:] {
			if i > 500 {
				break
			}
			now = now.Add(time.Duration(b>>4) * 300 * time.Millisecond)
			var ev Event
			switch b & 0x0f {
			case 0:
				ev = Start{}
			case 1:
				ev = Shutdown{}
			case 2, 3:
				ev = adv(b>>4*17, peer)
			case 4:
				ev = adv(m.Priority(), lower)
			case 5:
				ev = FaultDetected{}
			case 6:
				ev = FaultCleared{}
			case 7:
				ev = SetPriority{b >> 4 * 17}
			case 8:
				ev = GroupGate{AllowMaster: b&0x10 == 0}
			case 9:
				ev = MasterDown{Peer: peer}
			case 10:
				ev = Yield{To: peer}
			case 11:
				ev = Yield{}
			default:
				if d := m.NextDeadline(); !d.IsZero() && d.After(now) {
					now = d
				}
				ev = TimerFired{}
			}
			if g, ok := ev.(GroupGate); ok {
				gated = !g.AllowMaster
			}
			before := m.State()
			acts := m.Step(now, ev)
			cur := before
			for _, a := range acts {
				switch a := a.(type) {
				case AddVIPs:
					if holding {
						t.Fatalf("step %d %T: AddVIPs while holding", i, ev)
					}
					holding = true
				case RemoveVIPs:
					if !holding {
						t.Fatalf("step %d %T: RemoveVIPs while not holding", i, ev)
					}
					holding = false
				case Transition:
					if a.From != cur || a.From == a.To {
						t.Fatalf("step %d %T: transition %s->%s from state %s", i, ev, a.From, a.To, cur)
					}
					cur = a.To
				case SendAdvert:
					if a.Priority == 0 && cur != Master {
						t.Fatalf("step %d %T: priority 0 sent in %s", i, ev, cur)
					}
				}
			}
			if cur != m.State() {
				t.Fatalf("step %d %T: transitions end in %s, state %s", i, ev, cur, m.State())
			}
			st := m.State()
			if want := st == Master || st == Stopping; holding != want {
				t.Fatalf("step %d %T: holding VIPs %v in %s", i, ev, holding, st)
			}
			if gated && st == Master {
				t.Fatalf("step %d %T: master while the group forbids it", i, ev)
			}
			hasTimer := !m.NextDeadline().IsZero()
			if (st == Master || st == Stopping) && !hasTimer || (st == Initialize || st == Fault) && hasTimer {
				t.Fatalf("step %d %T: timer %v in %s", i, ev, hasTimer, st)
			}
			if hasTimer && m.NextDeadline().Before(now) {
				t.Fatalf("step %d %T: deadline in the past", i, ev)
			}
		}
	})
}

// TestMasterAddr: the master a backup follows is the source of the
// adverts that reset its timer, and nothing outside Backup.
func TestMasterAddr(t *testing.T) {
	tests := []struct {
		name  string
		steps []input
		want  netip.Addr
	}{
		{"started", []input{{0, Start{}}}, netip.Addr{}},
		{"heard", []input{{0, Start{}}, {time.Second, adv(200, peer)}}, peer},
		{"lower master discarded (preempt)", []input{{0, Start{}}, {time.Second, adv(50, lower)}}, netip.Addr{}},
		{"replaced", []input{{0, Start{}}, {time.Second, adv(200, peer)}, {2 * time.Second, adv(200, lower)}}, lower},
		{"resigned, still the one we follow", []input{{0, Start{}}, {time.Second, adv(200, peer)}, {2 * time.Second, adv(0, peer)}}, peer},
		{"master", masterAt(100), netip.Addr{}},
		{"deposed by a higher master", append(masterAt(100), input{time.Second, adv(200, peer)}), peer},
		{"yielded to a master unheard", append(masterAt(100), input{time.Second, Yield{To: peer}}), peer},
		{"yielded, then lifted", append(masterAt(100), input{time.Second, Yield{To: peer}}, input{2 * time.Second, Yield{}}), peer},
		{"fault", []input{{0, Start{}}, {time.Second, adv(200, peer)}, {2 * time.Second, FaultDetected{}}}, netip.Addr{}},
		{"fault cleared", []input{{0, Start{}}, {time.Second, adv(200, peer)}, {2 * time.Second, FaultDetected{}}, {3 * time.Second, FaultCleared{}}}, netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(baseConfig())
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.steps {
				m.Step(t0.Add(s.at), s.ev)
			}
			if got := m.MasterAddr(); got != tt.want {
				t.Errorf("MasterAddr %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReconfigure: a reload changes a running machine's parameters without
// a transition; a master whose adverts change sends one at once.
func TestReconfigure(t *testing.T) {
	tests := []struct {
		name     string
		before   []input // steps before the reconfiguration, at their times
		at       time.Duration
		change   func(c *Config)
		after    []input // steps after it
		want     []Action
		err      string
		state    State
		deadline time.Duration
	}{
		{name: "master, new interval: advert at once, then on the new period",
			before: masterAt(100), at: time.Second / 2, change: func(c *Config) { c.AdvertInterval = 2 * time.Second },
			want: []Action{SendAdvert{100}}, state: Master, deadline: time.Second/2 + 2*time.Second},
		{name: "master, new VIP list: advert at once",
			before: masterAt(100), at: time.Second / 2, change: func(c *Config) { c.Addrs = []netip.Addr{vip4a, mustAddr("192.0.2.200")} },
			want: []Action{SendAdvert{100}}, state: Master, deadline: time.Second/2 + time.Second},
		{name: "master, only preempt changed: no advert, same schedule",
			before: masterAt(100), at: time.Second / 2, change: func(c *Config) { c.NoPreempt = true },
			want: nil, state: Master, deadline: time.Second},
		{name: "backup keeps its Master_Down_Timer",
			before: []input{{0, Start{}}, {time.Second, adv(200, peer)}}, at: 2 * time.Second, change: func(c *Config) { c.AdvertInterval = 3 * time.Second },
			want: nil, state: Backup, deadline: time.Second + mdi100},
		{name: "nopreempt to preempt: a backup over a lower master takes over at its timer",
			before: []input{{0, Start{}}, {time.Second, adv(50, peer)}}, at: 2 * time.Second, change: func(c *Config) { c.NoPreempt = false },
			after: []input{{time.Second + mdi100, TimerFired{}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, time.Second+mdi100)},
			state: Master, deadline: time.Second + mdi100 + time.Second},
		{name: "preempt_delay shortened counts from start",
			before: []input{{0, Start{}}, {time.Second, adv(50, peer)}, {3 * time.Second, adv(50, peer)}, {5 * time.Second, adv(50, peer)}}, at: 6 * time.Second,
			change: func(c *Config) { c.PreemptDelay = 3 * time.Second },
			// Past the new delay, the lower master's adverts no longer
			// reset the timer.
			after: []input{{6 * time.Second, adv(50, peer)}, {5*time.Second + mdi100, TimerFired{}}},
			want:  []Action{SendAdvert{100}, AddVIPs{Accept: true}, tr(Backup, Master, ReasonMasterDown, 5*time.Second+mdi100)},
			state: Master, deadline: 5*time.Second + mdi100 + time.Second},
		{name: "new VRID refused", before: masterAt(100), at: time.Second / 2, change: func(c *Config) { c.VRID = 2 },
			err: "cannot change in place", state: Master, deadline: time.Second},
		{name: "invalid config refused", before: masterAt(100), at: time.Second / 2, change: func(c *Config) { c.Priority = 0 },
			err: "priority 0", state: Master, deadline: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			if tt.name == "preempt_delay shortened counts from start" {
				c.PreemptDelay = 10 * time.Second
			}
			if tt.name == "nopreempt to preempt: a backup over a lower master takes over at its timer" {
				c.NoPreempt = true
			}
			m, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.before {
				m.Step(t0.Add(s.at), s.ev)
			}
			tt.change(&c)
			got, err := m.Reconfigure(t0.Add(tt.at), c)
			switch {
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("Reconfigure error %v, want one containing %q", err, tt.err)
			case tt.err == "" && err != nil:
				t.Fatalf("Reconfigure: %v", err)
			}
			for _, s := range tt.after {
				got = m.Step(t0.Add(s.at), s.ev)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if m.State() != tt.state {
				t.Errorf("state %s, want %s", m.State(), tt.state)
			}
			if got := m.NextDeadline(); !got.Equal(t0.Add(tt.deadline)) {
				t.Errorf("NextDeadline +%s, want +%s", got.Sub(t0), tt.deadline)
			}
		})
	}
}

// With AlignAdverts, a master's adverts after the one it sends off
// schedule (becoming master, answering a resignation, a reload) fall on
// the multiples of the interval since the Unix epoch, at most one
// interval later, and stay there; masters that took over at different
// moments then share one phase.
func TestAlignAdverts(t *testing.T) {
	const interval = 100 * time.Millisecond
	// Master_Down_Interval at priority 100: 360.9375 ms.
	down := MasterDownInterval(3, 100, interval)
	tests := []struct {
		name  string
		start time.Duration // of the backup, from t0 (on the grid)
		align bool
		first time.Duration // second advert, from the takeover
	}{
		{"aligned, takeover 60.9375 ms past a slot", 0, true, 39062500 * time.Nanosecond},
		{"aligned, takeover 99.9375 ms past a slot", 39 * time.Millisecond, true, 62500 * time.Nanosecond},
		{"aligned, takeover on a slot", 39062500 * time.Nanosecond, true, interval},
		{"not aligned", 0, false, interval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			c.AdvertInterval, c.AlignAdverts = interval, tt.align
			m, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			m.Step(t0.Add(tt.start), Start{})
			took := t0.Add(tt.start + down)
			m.Step(took, TimerFired{})
			if m.State() != Master {
				t.Fatalf("state %s at Master_Down_Interval, want master", m.State())
			}
			next := m.NextDeadline()
			if got := next.Sub(took); got != tt.first {
				t.Errorf("second advert %v after the takeover, want %v", got, tt.first)
			}
			for range 3 {
				acts := m.Step(next, TimerFired{})
				if len(acts) != 1 {
					t.Fatalf("at the Adver_Timer: %v, want one advert", acts)
				}
				if got := m.NextDeadline().Sub(next); got != interval {
					t.Errorf("adverts %v apart, want %v", got, interval)
				}
				next = m.NextDeadline()
			}
			if onGrid := next.UnixNano()%int64(interval) == 0; onGrid != tt.align {
				t.Errorf("advert at %v: on the grid %v, want %v", next.Sub(t0), onGrid, tt.align)
			}
		})
	}
}
