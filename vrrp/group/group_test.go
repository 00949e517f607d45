package group

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/track"
)

// Every goroutine a Group starts has ended when Run returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeInst is an instance that records what it is told.
type fakeInst struct {
	name string
	// block, if set, holds Reconfigure until it is closed.
	block chan struct{}

	mu      sync.Mutex
	cfg     conf.VRRPInstance
	events  []string
	wants   vrrp.State
	onWants func()
	onTrans func()
	running bool
	ran     bool // Run has returned
	closed  bool
	master  bool // Status says MASTER
	// src and ifindex are what Source says: the opener gives every
	// instance 10.0.0.2 on an interface of its own (its VRID's index).
	src     netip.Addr
	ifindex int
}

func (f *fakeInst) Name() string { return f.name }

func (f *fakeInst) Source() (netip.Addr, int) { return f.src, f.ifindex }

func (f *fakeInst) Run(ctx context.Context) error {
	f.mu.Lock()
	f.running = true
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	f.running, f.ran = false, true
	f.mu.Unlock()
	return nil
}

func (f *fakeInst) Send(_ context.Context, ev vrrp.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s string
	switch e := ev.(type) {
	case vrrp.GroupGate:
		s = fmt.Sprintf("gate %v", e.AllowMaster)
	case vrrp.SetPriority:
		s = fmt.Sprintf("prio %d", e.Priority)
	case vrrp.FaultDetected:
		s = "fault"
	case vrrp.FaultCleared:
		s = "clear"
	case vrrp.HoldPreempt:
		s = "hold until " + e.Until.Format(time.RFC3339)
	case vrrp.Yield:
		s = fmt.Sprintf("yield to %v", e.To)
	default:
		s = fmt.Sprintf("%T", ev)
	}
	f.events = append(f.events, s)
}

func (f *fakeInst) Reconfigure(_ context.Context, cfg conf.VRRPInstance) error {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = cfg
	f.events = append(f.events, fmt.Sprintf("reconfigure prio %d", cfg.Priority))
	return nil
}

func (f *fakeInst) Status() instance.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := instance.Status{Name: f.name, State: "BACKUP", BasePriority: f.cfg.Priority}
	if f.master {
		st.State = "MASTER"
	}
	return st
}

func (f *fakeInst) Wants() vrrp.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wants
}

func (f *fakeInst) OnWantsChange(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onWants = fn
}

func (f *fakeInst) OnTransition(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onTrans = fn
}

// setMaster changes the state Status shows, then tells OnTransition's
// function, as a transition would.
func (f *fakeInst) setMaster(master bool) {
	f.mu.Lock()
	f.master = master
	fn := f.onTrans
	f.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// setWants changes the instance's own judgement, as a step would.
func (f *fakeInst) setWants(st vrrp.State) {
	f.mu.Lock()
	f.wants = st
	fn := f.onWants
	f.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func (f *fakeInst) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// take returns the events recorded since the last take.
func (f *fakeInst) take() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := strings.Join(f.events, "|")
	f.events = nil
	return s
}

// opener opens fake instances and remembers every one, in order.
type opener struct {
	mu     sync.Mutex
	opened []*fakeInst
	fail   map[string]error
	block  map[string]chan struct{}
	// tries counts the opens of each name, failed ones included.
	tries map[string]int
}

func (o *opener) open(_ *slog.Logger, cfg conf.VRRPInstance, _ string) (Instance, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tries == nil {
		o.tries = map[string]int{}
	}
	o.tries[cfg.Name]++
	if err := o.fail[cfg.Name]; err != nil {
		return nil, err
	}
	f := &fakeInst{name: cfg.Name, cfg: cfg, wants: vrrp.Backup, block: o.block[cfg.Name], src: netip.MustParseAddr("10.0.0.2"), ifindex: cfg.RouterID}
	o.opened = append(o.opened, f)
	return f, nil
}

// named is the instances opened for name, oldest first.
func (o *opener) named(name string) []*fakeInst {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*fakeInst
	for _, f := range o.opened {
		if f.name == name {
			out = append(out, f)
		}
	}
	return out
}

// links is a link watch the test feeds, per watched name list.
type links struct {
	mu  sync.Mutex
	chs map[string]chan track.LinkReport
}

func (l *links) watch(ctx context.Context, names []string) <-chan track.LinkReport {
	in := make(chan track.LinkReport)
	l.mu.Lock()
	l.chs[strings.Join(names, ",")] = in
	l.mu.Unlock()
	out := make(chan track.LinkReport)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-in:
				select {
				case out <- r:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (l *links) feed(names string, r track.LinkReport) {
	l.mu.Lock()
	ch := l.chs[names]
	l.mu.Unlock()
	ch <- r
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func vi(name string, vrid, prio int) conf.VRRPInstance {
	return conf.VRRPInstance{Name: name, Interface: "eth0", RouterID: vrid, Priority: prio,
		AdvertInterval: time.Second, VirtualIPs: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.0.0.%d/24", vrid))}}
}

// harness runs a Group on fakes inside a synctest bubble.
type harness struct {
	t      *testing.T
	open   *opener
	links  *links
	addrs  *links // the source address watch
	group  *Group
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, cfg *conf.Config, o *opener) *harness {
	t.Helper()
	if o == nil {
		o = &opener{}
	}
	h := &harness{t: t, open: o, links: &links{chs: map[string]chan track.LinkReport{}}, addrs: &links{chs: map[string]chan track.LinkReport{}},
		done: make(chan struct{})}
	g, err := Open(Options{Log: quiet, Open: o.open, WatchLinks: h.links.watch, WatchAddrs: h.addrs.watch,
		FindInterface: func(name string) error {
			if name == "nosuch0" {
				return errors.New("no such network interface")
			}
			return nil
		}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.group = g
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { defer close(h.done); g.Run(ctx) }()
	synctest.Wait()
	return h
}

// stop ends Run and checks that every instance ran to its end.
func (h *harness) stop() {
	h.cancel()
	<-h.done
}

func TestOpenFailureClosesWhatWasOpened(t *testing.T) {
	o := &opener{fail: map[string]error{"c": errors.New("no tun device")}}
	cfg := &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100), vi("b", 2, 100), vi("c", 3, 100)}}
	_, err := Open(Options{Log: quiet, Open: o.open}, cfg)
	if err == nil || !strings.Contains(err.Error(), "no tun device") {
		t.Fatalf("Open error %v, want the opener's", err)
	}
	for _, name := range []string{"a", "b"} {
		if f := o.named(name)[0]; !f.closed {
			t.Errorf("instance %s opened before the failure was not closed", name)
		}
	}
}

func TestReload(t *testing.T) {
	base := []conf.VRRPInstance{vi("a", 1, 100), vi("b", 2, 100)}
	tests := []struct {
		name string
		edit func(cfgs []conf.VRRPInstance) []conf.VRRPInstance
		// wantErr refuses the reload; then nothing may change.
		wantErr string
		// opened is how many instances each name has had; events what
		// the first instance of each was told.
		opened map[string]int
		events map[string]string
		// stopped lists the first instances that must have ended.
		stopped []string
		// masters are master before the reload; plan is what Plan says
		// the reload does.
		masters []string
		plan    []string
	}{
		{name: "unchanged", edit: func(c []conf.VRRPInstance) []conf.VRRPInstance { return c },
			opened: map[string]int{"a": 1, "b": 1}, events: map[string]string{"a": "", "b": ""}},
		{name: "priority changes in place", edit: func(c []conf.VRRPInstance) []conf.VRRPInstance { c[0].Priority = 50; return c },
			opened: map[string]int{"a": 1, "b": 1}, events: map[string]string{"a": "reconfigure prio 50|prio 50", "b": ""},
			plan: []string{"a reconfigured: priority"}},
		{name: "router_id replaces it after its handover", edit: func(c []conf.VRRPInstance) []conf.VRRPInstance { c[1].RouterID = 9; return c },
			opened: map[string]int{"a": 1, "b": 2}, events: map[string]string{"a": ""}, stopped: []string{"b"},
			plan: []string{"b rebuilt: router_id changed"}},
		{name: "a master rebuilt hands its VIPs over", edit: func(c []conf.VRRPInstance) []conf.VRRPInstance { c[1].RouterID = 9; return c },
			opened: map[string]int{"a": 1, "b": 2}, stopped: []string{"b"}, masters: []string{"b"},
			plan: []string{"b rebuilt: router_id changed, moves VIPs"}},
		{name: "added and removed", edit: func(c []conf.VRRPInstance) []conf.VRRPInstance { return []conf.VRRPInstance{c[0], vi("c", 3, 100)} },
			opened: map[string]int{"a": 1, "b": 1, "c": 1}, events: map[string]string{"a": ""}, stopped: []string{"b"}, masters: []string{"a", "b"},
			plan: []string{"c added", "b removed, moves VIPs"}},
		{name: "an instance to start without its interface is refused", edit: func(c []conf.VRRPInstance) []conf.VRRPInstance {
			c[0].Priority = 50
			c[1].Interface = "nosuch0"
			return c
		}, wantErr: "vrrp_instance b: interface nosuch0", opened: map[string]int{"a": 1, "b": 1}, events: map[string]string{"a": "", "b": ""},
			plan: []string{"a reconfigured: priority", "b rebuilt: interface changed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := start(t, &conf.Config{VRRPInstances: slices.Clone(base)}, nil)
				defer h.stop()
				for _, f := range h.open.opened {
					f.take()
					f.mu.Lock()
					f.master = slices.Contains(tc.masters, f.name)
					f.mu.Unlock()
				}
				next := &conf.Config{VRRPInstances: tc.edit(slices.Clone(base))}
				var plan []string
				for _, c := range h.group.Plan(next) {
					s := c.Instance + " " + c.Change
					if c.Why != "" {
						s += ": " + c.Why
					}
					if c.MovesVIPs {
						s += ", moves VIPs"
					}
					plan = append(plan, s)
				}
				if !slices.Equal(plan, tc.plan) {
					t.Errorf("Plan = %q, want %q", plan, tc.plan)
				}
				err := h.group.Reload(next)
				if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
					t.Fatalf("Reload error %v, want %q", err, tc.wantErr)
				}
				synctest.Wait()
				for name, n := range tc.opened {
					if got := len(h.open.named(name)); got != n {
						t.Errorf("%s opened %d times, want %d", name, got, n)
					}
				}
				for name, want := range tc.events {
					// A regroup tells a free instance again that it is
					// free; that is no change.
					got := strings.Join(slices.DeleteFunc(strings.Split(h.open.named(name)[0].take(), "|"),
						func(e string) bool { return e == "gate true" }), "|")
					if got != want {
						t.Errorf("%s was told %q, want %q", name, got, want)
					}
				}
				for _, name := range tc.stopped {
					if f := h.open.named(name)[0]; !f.ran {
						t.Errorf("%s's old instance still runs", name)
					}
				}
				// Whatever replaced or was added runs.
				for name, n := range tc.opened {
					if f := h.open.named(name)[n-1]; n > 1 && !f.running {
						t.Errorf("%s's new instance does not run", name)
					}
				}
				var names []string
				for _, st := range h.group.Status() {
					names = append(names, st.Name)
				}
				want := []string{"a", "b"}
				if tc.name == "added and removed" {
					want = []string{"a", "c"}
				}
				if !slices.Equal(names, want) {
					t.Errorf("status lists %v, want %v", names, want)
				}
			})
		})
	}
}

// A reload waits for an instance to take its change (up to 5 s); status
// must not wait with it.
func TestStatusDuringSlowReconfigure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		o := &opener{block: map[string]chan struct{}{"a": block}}
		h := start(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100)}}, o)
		defer h.stop()
		reloaded := make(chan error)
		go func() { reloaded <- h.group.Reload(&conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 50)}}) }()
		synctest.Wait() // the reload waits in Reconfigure
		if !h.group.mu.TryLock() {
			t.Fatal("the reload holds the group's lock while an instance reconfigures: status waits for it")
		}
		h.group.mu.Unlock()
		if st := h.group.Status(); len(st) != 1 || st[0].Name != "a" {
			t.Errorf("status during the reload %+v", st)
		}
		close(block)
		if err := <-reloaded; err != nil {
			t.Fatal(err)
		}
		if got := o.named("a")[0].take(); !strings.Contains(got, "reconfigure prio 50") {
			t.Errorf("a was told %q, want the new priority", got)
		}
	})
}

// The sync group's verdict reaches every member as a gate, and only its
// changes do; an instance in no group is let free.
func TestSyncGroupVerdicts(t *testing.T) {
	type step struct {
		name  string
		wants vrrp.State
		// what a, b and c are told after it, "|" between events
		a, b, c string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"master together or not at all", []step{
			{"a", vrrp.Master, "", "", ""},
			{"b", vrrp.Master, "gate true", "gate true", ""},
			{"b", vrrp.Fault, "gate false", "gate false", ""},
			{"b", vrrp.Backup, "", "", ""},
			{"b", vrrp.Master, "gate true", "gate true", ""},
		}},
		{"a member stopping holds the other back", []step{
			{"a", vrrp.Master, "", "", ""},
			{"b", vrrp.Master, "gate true", "gate true", ""},
			{"a", vrrp.Initialize, "gate false", "gate false", ""},
		}},
		{"a free instance is never gated", []step{
			{"c", vrrp.Master, "", "", ""},
			{"c", vrrp.Fault, "", "", ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100), vi("b", 2, 100), vi("c", 3, 100)},
					SyncGroups: []conf.SyncGroup{{Name: "g", Instances: []string{"a", "b"}}}}
				h := start(t, cfg, nil)
				defer h.stop()
				inst := map[string]*fakeInst{}
				for _, name := range []string{"a", "b", "c"} {
					inst[name] = h.open.named(name)[0]
				}
				// Both backups at the start: the group may not be master.
				for name, want := range map[string]string{"a": "gate false", "b": "gate false", "c": "gate true"} {
					if got := inst[name].take(); got != want {
						t.Fatalf("at start %s was told %q, want %q", name, got, want)
					}
				}
				for _, s := range tc.steps {
					inst[s.name].setWants(s.wants)
					synctest.Wait()
					for name, want := range map[string]string{"a": s.a, "b": s.b, "c": s.c} {
						if got := inst[name].take(); got != want {
							t.Errorf("after %s wants %s: %s was told %q, want %q", s.name, s.wants, name, got, want)
						}
					}
				}
			})
		})
	}
}

// Each tracked source faults on its own: a link state that is unknown
// (no subscription) faults the instance, and only a known state with
// every tracked link up clears it.
func TestLinkTrackingFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := vi("a", 1, 100)
		cfg.TrackInterfaces = []string{"eth1"}
		h := start(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{cfg}}, nil)
		defer h.stop()
		a := h.open.named("a")[0]
		a.take()
		for _, st := range []struct {
			report track.LinkReport
			want   string
		}{
			{track.LinkReport{State: track.LinkState{"eth1": true}}, ""},
			{track.LinkReport{Err: errors.New("subscription lost")}, "fault"},
			{track.LinkReport{State: track.LinkState{"eth1": false}}, ""},
			{track.LinkReport{State: track.LinkState{"eth1": true}, Lost: errors.New("ENOBUFS")}, "clear"},
		} {
			h.links.feed("eth1", st.report)
			synctest.Wait()
			if got := a.take(); got != st.want {
				t.Errorf("after %+v a was told %q, want %q", st.report, got, st.want)
			}
		}
	})
}
