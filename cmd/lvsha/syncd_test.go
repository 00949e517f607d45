package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	moby "github.com/moby/ipvs"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// syncConfig is a director of instances vi and vj; lvs_sync on the
// named one ("" for none) with sync id id.
func syncConfig(on string, id int) *conf.Config {
	cfg := &conf.Config{Director: conf.Director{Name: "t", Resync: time.Minute}}
	for i, name := range []string{"vi", "vj"} {
		ic := conf.VRRPInstance{Name: name, Interface: "eth0", RouterID: 50 + i, Priority: 100, AdvertInterval: time.Second}
		if name == on {
			ic.LVSSync = &conf.LVSSync{Interface: "eth1", SyncID: id}
		}
		cfg.VRRPInstances = append(cfg.VRRPInstances, ic)
	}
	return cfg
}

// syncRig is a connSync on a fake kernel, its configuration and the
// instances' states set by the test.
type syncRig struct {
	k      *ipvstest.Kernel
	c      *connSync
	cfg    *conf.Config
	states map[string]string
	now    time.Time
	reads  int // of the instances' states
	// holds are the preemption holds sent; tuned the refresh periods
	// set in the kernel, tuneErr what setting one returns.
	holds   []string
	tuned   []time.Duration
	tuneErr error
}

func newSyncRig(cfg *conf.Config) *syncRig {
	r := &syncRig{k: &ipvstest.Kernel{}, cfg: cfg, states: map[string]string{"vi": "INIT", "vj": "INIT"}, now: time.Unix(1e9, 0)}
	r.k.SetInterface("eth1", 1500)
	r.k.SetInterface("eth2", 1500)
	r.c = newConnSync(slog.New(slog.DiscardHandler), r.k, nil, func() *conf.Config { return r.cfg }, fakeElection{status: r.status, holds: &r.holds})
	r.c.now = func() time.Time { return r.now }
	r.c.tune = func(p time.Duration) (bool, error) {
		r.tuned = append(r.tuned, p)
		return true, r.tuneErr
	}
	return r
}

// fakeElection is the instances' states from status; the test sends
// their transitions on ch. holds records HoldPreempt's calls, as
// "name until".
type fakeElection struct {
	status func() []instance.Status
	ch     chan struct{}
	holds  *[]string
}

func (f fakeElection) Status() []instance.Status    { return f.status() }
func (f fakeElection) Transitions() <-chan struct{} { return f.ch }
func (f fakeElection) HoldPreempt(_ context.Context, name string, until time.Time) error {
	if f.holds != nil {
		*f.holds = append(*f.holds, fmt.Sprintf("%s %s", name, until.UTC().Format("15:04:05.0")))
	}
	return nil
}

// stepGap is the time between two steps of a syncRig.
const stepGap = 100 * time.Millisecond

func (r *syncRig) status() []instance.Status {
	r.reads++
	var out []instance.Status
	for _, n := range []string{"vi", "vj"} {
		out = append(out, instance.Status{Name: n, State: r.states[n]})
	}
	return out
}

// step runs one step, stepGap after the last.
func (r *syncRig) step() {
	r.now = r.now.Add(stepGap)
	r.c.step(r.now)
}

// daemonsRunning is the kernel's daemons as "master:eth1/50 backup:eth1/50".
func daemonsRunning(t *testing.T, k ipvs.Daemons) string {
	t.Helper()
	ds, err := k.GetDaemons()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s:%s/%d", d.State, d.Interface, d.SyncID))
	}
	return strings.Join(out, " ")
}

// writes is the fake's daemon writes since the last call, as "new=1 del=1".
func writes(k *ipvstest.Kernel) string {
	w := k.WritesByOp()
	k.ResetWrites()
	return fmt.Sprintf("new=%d del=%d", w[ipvstest.OpNewDaemon], w[ipvstest.OpDelDaemon])
}

// Every state of the lvs_sync instance, in sequence, leaves the kernel
// with the one daemon keepalived would run, switched with the fewest
// writes: none while the state maps to the same daemon.
func TestConnSyncFollowsTransitions(t *testing.T) {
	type stage struct {
		state, want, writes string
	}
	tests := []struct {
		name   string
		stages []stage
	}{
		{"start as backup", []stage{
			{"INIT", "backup:eth1/50", "new=1 del=0"},
			{"BACKUP", "backup:eth1/50", "new=0 del=0"},
		}},
		{"elected, then preempted", []stage{
			{"BACKUP", "backup:eth1/50", "new=1 del=0"},
			{"MASTER", "master:eth1/50", "new=1 del=1"},
			{"MASTER", "master:eth1/50", "new=0 del=0"},
			{"BACKUP", "backup:eth1/50", "new=1 del=1"},
		}},
		{"fault and back", []stage{
			{"MASTER", "master:eth1/50", "new=1 del=0"},
			{"FAULT", "backup:eth1/50", "new=1 del=1"},
			{"INIT", "backup:eth1/50", "new=0 del=0"},
			{"RESTARTING", "backup:eth1/50", "new=0 del=0"},
			{"MASTER", "master:eth1/50", "new=1 del=1"},
		}},
		{"a master handing over at exit keeps sending", []stage{
			{"MASTER", "master:eth1/50", "new=1 del=0"},
			{"STOPPING", "master:eth1/50", "new=0 del=0"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSyncRig(syncConfig("vi", 50))
			for i, s := range tt.stages {
				r.states["vi"] = s.state
				r.step()
				if got := daemonsRunning(t, r.k); got != s.want {
					t.Errorf("stage %d (%s): kernel runs %q, want %q", i, s.state, got, s.want)
				}
				if got := writes(r.k); got != s.writes {
					t.Errorf("stage %d (%s): writes %s, want %s", i, s.state, got, s.writes)
				}
			}
			if rep := r.c.report(); rep == nil || rep.Error != "" || rep.VRRPInstance != "vi" {
				t.Errorf("report %+v, want vrrp_instance vi without error", rep)
			}
		})
	}
}

// At start lvsha adopts what a crashed lvsha left: a daemon already as
// wanted is kept (a restart would lose what it holds), any other replaced.
// A director without lvs_sync leaves daemons started by hand alone.
func TestConnSyncStart(t *testing.T) {
	tests := []struct {
		name      string
		cfg       *conf.Config
		left      []ipvs.Daemon
		state     string
		want      string
		writes    string
		hasReport bool
	}{
		{"adopts its backup daemon", syncConfig("vi", 50),
			[]ipvs.Daemon{{State: ipvs.DaemonBackup, Interface: "eth1", SyncID: 50}}, "INIT", "backup:eth1/50", "new=0 del=0", true},
		{"a crashed master's daemon is replaced", syncConfig("vi", 50),
			[]ipvs.Daemon{{State: ipvs.DaemonMaster, Interface: "eth1", SyncID: 50}}, "INIT", "backup:eth1/50", "new=1 del=1", true},
		{"both left: the master is stopped", syncConfig("vi", 50),
			[]ipvs.Daemon{{State: ipvs.DaemonMaster, Interface: "eth1", SyncID: 50}, {State: ipvs.DaemonBackup, Interface: "eth1", SyncID: 50}},
			"BACKUP", "backup:eth1/50", "new=0 del=1", true},
		{"other settings are restarted", syncConfig("vi", 50),
			[]ipvs.Daemon{{State: ipvs.DaemonBackup, Interface: "eth2", SyncID: 50}}, "INIT", "backup:eth1/50", "new=1 del=1", true},
		{"no lvs_sync: hand-started daemons untouched", syncConfig("", 0),
			[]ipvs.Daemon{{State: ipvs.DaemonMaster, Interface: "eth2", SyncID: 9}}, "MASTER", "master:eth2/9", "new=0 del=0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSyncRig(tt.cfg)
			for _, d := range tt.left {
				if err := r.k.NewDaemon(d); err != nil {
					t.Fatal(err)
				}
			}
			r.k.ResetWrites()
			r.states["vi"] = tt.state
			r.step()
			r.step()
			if got := daemonsRunning(t, r.k); got != tt.want {
				t.Errorf("kernel runs %q, want %q", got, tt.want)
			}
			if got := writes(r.k); got != tt.writes {
				t.Errorf("writes %s, want %s", got, tt.writes)
			}
			if rep := r.c.report(); (rep != nil) != tt.hasReport {
				t.Errorf("report %+v, want one: %v", rep, tt.hasReport)
			}
			if !tt.hasReport && r.reads != 0 {
				t.Errorf("without lvs_sync the instances' states were read %d times, want none", r.reads)
			}
		})
	}
}

// A reload re-applies: a changed lvs_sync restarts the daemon, lvs_sync
// moved to another instance follows that one's state, removed stops the
// daemons; an unchanged one writes nothing.
func TestConnSyncReload(t *testing.T) {
	tests := []struct {
		name   string
		to     *conf.Config
		want   string
		writes string
	}{
		{"unchanged", syncConfig("vi", 50), "backup:eth1/50", "new=0 del=0"},
		{"sync id changed", syncConfig("vi", 60), "backup:eth1/60", "new=1 del=1"},
		{"moved to the master vj", syncConfig("vj", 50), "master:eth1/50", "new=1 del=1"},
		{"removed", syncConfig("", 0), "", "new=0 del=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSyncRig(syncConfig("vi", 50))
			r.states["vi"], r.states["vj"] = "BACKUP", "MASTER"
			r.step()
			writes(r.k)
			r.cfg = tt.to
			r.step()
			r.step()
			if got := daemonsRunning(t, r.k); got != tt.want {
				t.Errorf("kernel runs %q, want %q", got, tt.want)
			}
			if got := writes(r.k); got != tt.writes {
				t.Errorf("writes %s, want %s", got, tt.writes)
			}
			if rep := r.c.report(); rep == nil || rep.Error != "" {
				t.Errorf("report %+v, want no error", rep)
			}
		})
	}
}

// At a clean exit the daemons stop with --cleanup, as keepalived's do;
// otherwise the director is left a backup, like the table it leaves, so
// it keeps learning connections until the next lvsha adopts the daemon.
func TestConnSyncExit(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *conf.Config
		state   string
		cleanup bool
		want    string
	}{
		{"master left as backup", syncConfig("vi", 50), "STOPPING", false, "backup:eth1/50"},
		{"backup left running", syncConfig("vi", 50), "BACKUP", false, "backup:eth1/50"},
		{"cleanup stops them", syncConfig("vi", 50), "MASTER", true, ""},
		{"no lvs_sync: nothing", syncConfig("", 0), "MASTER", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSyncRig(tt.cfg)
			r.states["vi"] = tt.state
			r.step()
			r.c.cleanup.Store(tt.cleanup)
			r.c.exit()
			if got := daemonsRunning(t, r.k); got != tt.want {
				t.Errorf("kernel runs %q after exit, want %q", got, tt.want)
			}
		})
	}
}

// A refused start is reported with its cause, counted, and tried again
// after syncRetry, not at every poll; without IPVS the report says what
// is missing.
func TestConnSyncErrors(t *testing.T) {
	r := newSyncRig(syncConfig("vi", 50))
	refuse := true
	r.k.SetFail(func(op string, _ *moby.Service, _ *moby.Destination) error {
		if op == ipvstest.OpNewDaemon && refuse {
			return fmt.Errorf("new daemon: %w", errors.New("injected"))
		}
		return nil
	})
	r.step()
	rep := r.c.report()
	if rep == nil || !strings.Contains(rep.Error, "injected") || rep.Errors != 1 || rep.Want != "backup" {
		t.Fatalf("report %+v, want the injected error, counted once", rep)
	}
	writes(r.k)
	r.step() // within syncRetry: not tried again
	if got := writes(r.k); got != "new=0 del=0" {
		t.Errorf("retried at once: %s", got)
	}
	refuse = false
	for range syncRetry / stepGap {
		r.step()
	}
	if got := daemonsRunning(t, r.k); got != "backup:eth1/50" {
		t.Errorf("after the retry the kernel runs %q", got)
	}
	if rep := r.c.report(); rep.Error != "" || rep.Errors != 1 || len(rep.Daemons) != 1 {
		t.Errorf("report after recovery %+v", rep)
	}

	none := newConnSync(slog.New(slog.DiscardHandler), nil, fmt.Errorf("%w: no such file", ipvs.ErrUnavailable),
		func() *conf.Config { return syncConfig("vi", 50) }, fakeElection{status: func() []instance.Status { return nil }})
	none.step(time.Now())
	if rep := none.report(); rep == nil || !strings.Contains(rep.Error, "IPVS is not available") || !strings.Contains(rep.Error, "sync daemon") {
		t.Errorf("without IPVS: report %+v, want what is missing", rep)
	}
	var holds []string
	noneHold := newConnSync(slog.New(slog.DiscardHandler), nil, fmt.Errorf("%w: no such file", ipvs.ErrUnavailable),
		func() *conf.Config { return holdConfig(13 * time.Second) }, fakeElection{status: func() []instance.Status { return nil }, holds: &holds})
	noneHold.step(time.Now())
	if len(holds) != 0 {
		t.Errorf("without IPVS preemption was held: %q", holds)
	}
	none.exit() // never panics without a kernel
}

// The daemon runs the sync goroutine beside VRRP: a director whose
// instance is in no state but backup runs the backup daemon, and when the
// daemon stops the goroutine has left it (no --cleanup) before run
// returns.
func TestDaemonRunsConnSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := slog.New(slog.DiscardHandler)
		cfg := syncConfig("vi", 50)
		k := &ipvstest.Kernel{}
		k.SetInterface("eth1", 1500)
		d := newDaemon(log, "lvsha.toml", cfg, ipvs.NewReconciler(k, log), failingProber{err: errors.New("stop")})
		d.connSync = newConnSync(log, k, nil, d.config, fakeElection{status: func() []instance.Status { return nil }})
		d.run(t.Context(), nil, func(ctx context.Context) { <-ctx.Done() })
		if got := daemonsRunning(t, k); got != "backup:eth1/50" {
			t.Errorf("after run the kernel runs %q, want the backup daemon", got)
		}
		if rep := d.connSync.report(); rep == nil || rep.Want != "backup" {
			t.Errorf("report %+v", rep)
		}
	})
}

// Status counts the kernel's connections over every destination and
// shows the sync daemons, in text and JSON.
func TestStatusConnSync(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	cfg, err := conf.Parse("t.toml", []byte("[director]\nname = \"t\"\n[[virtual_server]]\nname = \"web\"\naddress = \"10.1.2.3:80\"\nforwarding = \"dr\"\n"+
		"[[virtual_server.real_server]]\naddress = \"10.1.2.4:80\"\n[[virtual_server.real_server]]\naddress = \"10.1.2.5:80\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	k := &ipvstest.Kernel{}
	k.SetInterface("eth1", 1500)
	d := newDaemon(log, "t.toml", cfg, ipvs.NewReconciler(k, log), health.NewEngine(log))
	if _, err := d.sync(syncRead); err != nil {
		t.Fatal(err)
	}
	svcs, _ := k.GetServices()
	dests, _ := k.GetDestinations(svcs[0])
	k.SetConns(svcs[0], dests[0], 7, 2)
	k.SetConns(svcs[0], dests[1], 3, 0)
	sc := syncConfig("vi", 50)
	d.connSync = newConnSync(log, k, nil, func() *conf.Config { return sc }, fakeElection{status: func() []instance.Status {
		return []instance.Status{{Name: "vi", State: "MASTER"}}
	}})
	d.connSync.step(time.Now())
	rep, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if rep.KernelConns != 12 {
		t.Errorf("kernel_connections %d, want 12", rep.KernelConns)
	}
	var text bytes.Buffer
	if err := writeReport(&text, rep, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kernel connections: 12", "IPVS connection sync: follows vrrp_instance vi, wants master daemon",
		"kernel runs master on eth1 (sync_id 50, max_len 1472, group 224.0.0.81 port 8848 ttl 1)"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, text.String())
		}
	}
	b, _ := json.Marshal(rep)
	for _, want := range []string{`"kernel_connections":12`, `"conn_sync":{"vrrp_instance":"vi","want":"master","daemons":[{"state":"master","interface":"eth1","sync_id":50`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("status JSON lacks %s:\n%s", want, b)
		}
	}
}

// connSync follows the election's transitions, not a poll: a director
// without lvs_sync reads nothing until a reload adds it; with it, a
// transition switches the daemons at once (no time passes in the
// bubble), and between transitions the states are read only at the
// slow resync, which also puts back a daemon stopped by hand.
func TestConnSyncFollowsElection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cfg atomic.Pointer[conf.Config]
		sc := syncConfig("", 0)
		sc.Director.Resync = 10 * time.Second
		cfg.Store(sc)
		var reads, statusReads atomic.Int32
		config := func() *conf.Config { reads.Add(1); return cfg.Load() }
		k := &ipvstest.Kernel{}
		k.SetInterface("eth1", 1500)
		var state atomic.Value
		state.Store("BACKUP")
		el := fakeElection{ch: make(chan struct{}, 1), status: func() []instance.Status {
			statusReads.Add(1)
			return []instance.Status{{Name: "vi", State: state.Load().(string)}, {Name: "vj", State: "BACKUP"}}
		}}
		transition := func(to string) {
			t.Helper()
			state.Store(to)
			select {
			case el.ch <- struct{}{}:
			default:
				t.Fatalf("transition to %s: the previous one was never taken", to)
			}
			synctest.Wait()
		}
		c := newConnSync(slog.New(slog.DiscardHandler), k, nil, config, el)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := reads.Load(); n > 2 {
			t.Errorf("an idle director read its configuration %d times in 10 s: it polls", n)
		}
		if n := statusReads.Load(); n != 0 {
			t.Errorf("without lvs_sync the instances' states were read %d times", n)
		}

		withSync := syncConfig("vi", 50)
		withSync.Director.Resync = 10 * time.Second
		cfg.Store(withSync)
		c.reconfigured()
		synctest.Wait()
		if got := daemonsRunning(t, k); got != "backup:eth1/50" {
			t.Fatalf("after the reload that added lvs_sync the kernel runs %q, want backup:eth1/50", got)
		}
		for i, to := range []string{"MASTER", "BACKUP", "FAULT", "MASTER", "STOPPING"} {
			before := time.Now()
			transition(to)
			want := "backup:eth1/50"
			if to == "MASTER" || to == "STOPPING" {
				want = "master:eth1/50"
			}
			if got := daemonsRunning(t, k); got != want || time.Since(before) != 0 {
				t.Errorf("transition %d to %s: the kernel runs %q after %v, want %q at once", i, to, got, time.Since(before), want)
			}
		}

		// Quiet: between transitions, nothing but the resync reads the
		// states.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		n0 := statusReads.Load()
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if n := statusReads.Load() - n0; n != 0 {
			t.Errorf("%d reads of the states in 4 s without a transition: it polls", n)
		}
		// A daemon stopped by hand is back at the next resync.
		if err := k.DelDaemon(ipvs.DaemonMaster); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := daemonsRunning(t, k); got != "master:eth1/50" {
			t.Errorf("a resync after the master daemon was stopped by hand: the kernel runs %q", got)
		}
		if n := statusReads.Load() - n0; n < 1 || n > 2 {
			t.Errorf("%d reads of the states in 14 s at a resync of 10 s, want 1 or 2", n)
		}
	})
}

// holdConfig is syncConfig("vi", 50) with a refresh period and the
// preempt_hold conf gives it by default.
func holdConfig(hold time.Duration) *conf.Config {
	cfg := syncConfig("vi", 50)
	cfg.VRRPInstances[0].LVSSync.RefreshPeriod = 10 * time.Second
	cfg.VRRPInstances[0].LVSSync.PreemptHold = hold
	return cfg
}

// With refresh_period the kernel is told to announce every connection
// again; with preempt_hold a backup daemon that starts (at start-up, or
// a master demoted) holds the instance's preemption for preempt_hold
// from when it runs: sent before the kernel is touched and again once
// the daemon runs, and never while it keeps running, nor for the
// master daemon, nor at exit. The rig's clock starts at 01:46:40.
func TestConnSyncPreemptHold(t *testing.T) {
	type stage struct {
		state string
		holds []string // sent at this stage
	}
	tests := []struct {
		name   string
		hold   time.Duration
		stages []stage
		// until is the report's hold at the end ("" none).
		until string
	}{
		{"start as backup", 13 * time.Second, []stage{
			{"INIT", []string{"vi 01:46:53.1", "vi 01:46:53.1"}},
			// Each step during the hold sends it again (a rebuilt
			// instance lost it), unchanged.
			{"BACKUP", []string{"vi 01:46:53.1"}},
		}, "01:46:53.1"},
		{"master daemon: no hold", 13 * time.Second, []stage{
			{"MASTER", nil},
			{"STOPPING", nil},
		}, ""},
		{"a master demoted holds from then", 13 * time.Second, []stage{
			{"MASTER", nil},
			{"MASTER", nil},
			{"BACKUP", []string{"vi 01:46:53.3", "vi 01:46:53.3"}},
			{"FAULT", []string{"vi 01:46:53.3"}},
		}, "01:46:53.3"},
		{"back from fault holds again, from then", 13 * time.Second, []stage{
			{"BACKUP", []string{"vi 01:46:53.1", "vi 01:46:53.1"}},
			{"FAULT", []string{"vi 01:46:53.1"}},
			{"FAULT", []string{"vi 01:46:53.1"}},
			// Its daemon heard nothing meanwhile: held anew, once.
			{"BACKUP", []string{"vi 01:46:53.4"}},
			{"BACKUP", []string{"vi 01:46:53.4"}},
		}, "01:46:53.4"},
		{"preempt_hold 0s: refresh alone", 0, []stage{
			{"INIT", nil},
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSyncRig(holdConfig(tt.hold))
			for i, s := range tt.stages {
				r.states["vi"] = s.state
				r.holds = nil
				r.step()
				if !slices.Equal(r.holds, s.holds) {
					t.Errorf("stage %d (%s): holds %q, want %q", i, s.state, r.holds, s.holds)
				}
			}
			rep := r.c.report()
			if rep == nil || rep.Error != "" || rep.RefreshPeriod != "10s" {
				t.Fatalf("report %+v, want refresh_period 10s without error", rep)
			}
			got := ""
			if !rep.PreemptHoldUntil.IsZero() {
				got = rep.PreemptHoldUntil.UTC().Format("15:04:05.0")
				if d := rep.PreemptHoldUntil.Sub(rep.BackupSince); d != tt.hold {
					t.Errorf("hold of %v after the backup daemon started, want %v", d, tt.hold)
				}
			}
			if got != tt.until {
				t.Errorf("report holds until %q, want %q", got, tt.until)
			}
			if len(r.tuned) == 0 || r.tuned[0] != 10*time.Second {
				t.Errorf("refresh periods set: %v, want 10s at each apply", r.tuned)
			}
			r.holds = nil
			r.c.exit()
			if len(r.holds) != 0 {
				t.Errorf("exit held preemption: %q", r.holds)
			}
		})
	}
}

// A backup daemon the kernel refuses holds preemption once, for
// preempt_hold from the first attempt: retries do not extend it, or a
// daemon that never starts would keep a director from ever preempting.
// Once it starts, the hold runs from then. A refresh period the kernel
// refuses is an error like the daemon's.
func TestConnSyncPreemptHoldRefused(t *testing.T) {
	r := newSyncRig(holdConfig(13 * time.Second))
	refuse := true
	r.k.SetFail(func(op string, _ *moby.Service, _ *moby.Destination) error {
		if op == ipvstest.OpNewDaemon && refuse {
			return errors.New("injected")
		}
		return nil
	})
	r.states["vi"] = "BACKUP"
	for range 3 * syncRetry / stepGap {
		r.step()
	}
	// Sent before the first attempt, then again at each step while it
	// lasts, never extended.
	for _, h := range r.holds {
		if h != "vi 01:46:53.1" {
			t.Errorf("holds while refused: %q, want each until 01:46:53.1", r.holds)
			break
		}
	}
	refuse = false
	r.holds = nil
	for range syncRetry / stepGap {
		r.step()
	}
	// The daemon started at the retry at 01:46:43.1: held 13 s from then.
	if n := len(r.holds); n == 0 || r.holds[n-1] != "vi 01:46:56.1" || daemonsRunning(t, r.k) != "backup:eth1/50" {
		t.Errorf("once started: holds %q, kernel %q; want the hold from then, until 01:46:56.1", r.holds, daemonsRunning(t, r.k))
	}

	q := newSyncRig(holdConfig(13 * time.Second))
	q.tuneErr = errors.New("set IPVS sysctl sync_refresh_period: permission denied")
	q.step()
	if rep := q.c.report(); rep == nil || !strings.Contains(rep.Error, "sync_refresh_period: permission denied") || rep.Errors != 1 {
		t.Errorf("report %+v, want the refused refresh period", rep)
	}
}

// The hold shows in `lvsha status` (text and JSON) while it lasts and
// after, and as a metric: the Unix time until which it holds.
func TestStatusPreemptHold(t *testing.T) {
	now := time.Unix(1e9, 0)
	tests := []struct {
		name  string
		until time.Time
		text  string
	}{
		{"held", now.Add(5 * time.Second),
			"PREEMPTION HELD for 5s more: the backup daemon, started 8s ago, learns the master's connections (preempt_hold)"},
		{"ended", now.Add(-2 * time.Second), "preemption hold ended 2s ago (the backup daemon started 15s ago)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &Report{ConnSync: &SyncReport{VRRPInstance: "vi", Want: "backup", RefreshPeriod: "10s",
				BackupSince: tt.until.Add(-13 * time.Second), PreemptHoldUntil: tt.until}}
			var text bytes.Buffer
			writeConnSync(&text, rep, now)
			for _, want := range []string{"a master announces every connection again every 10s (refresh_period)", tt.text} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("status text lacks %q:\n%s", want, text.String())
				}
			}
			b, _ := json.Marshal(rep.ConnSync)
			if want := `"refresh_period":"10s","backup_since":"`; !bytes.Contains(b, []byte(want)) || !bytes.Contains(b, []byte(`"preempt_hold_until":"`)) {
				t.Errorf("status JSON lacks the hold:\n%s", b)
			}
			c := newMetricsCollector(func() (*metricsState, error) { return &metricsState{report: rep}, nil }, &probeStats{})
			mfs, _ := scrape(t, metricsHandler(slog.New(slog.DiscardHandler), c, func() error { return nil }))
			if v, ok := value(mfs, sample{name: "lvsha_ipvs_sync_preempt_hold_until_timestamp_seconds"}); !ok || v != float64(tt.until.Unix()) {
				t.Errorf("lvsha_ipvs_sync_preempt_hold_until_timestamp_seconds = %v (%v), want %d", v, ok, tt.until.Unix())
			}
		})
	}
}

// A hold outlives nothing: once it has passed, steps send no more.
func TestConnSyncPreemptHoldPasses(t *testing.T) {
	r := newSyncRig(holdConfig(time.Second))
	r.states["vi"] = "BACKUP"
	r.step()
	for range 2 * time.Second / stepGap {
		r.step()
	}
	r.holds = nil
	r.c.resyncAt = time.Time{} // a resync step
	r.step()
	if len(r.holds) != 0 {
		t.Errorf("holds after it passed: %q", r.holds)
	}
}
