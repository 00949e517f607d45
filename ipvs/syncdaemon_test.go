package ipvs_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// TestApplySync drives the fake's daemons from every starting point to
// every state and checks the daemons that run afterwards, and that
// nothing is written when they already are as wanted.
func TestApplySync(t *testing.T) {
	cfg := conf.LVSSync{Interface: "eth1", SyncID: 51, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1}
	withLen := cfg
	withLen.MaxLen = 100 // a backup's is raised to 1024
	v6 := cfg
	v6.Group, v6.MaxLen = netip.MustParseAddr("ff02::81"), 1400
	other := cfg
	other.SyncID = 7

	// read is d as the fake reads it back after starting it on eth1
	// (MTU 1500).
	read := func(c conf.LVSSync, s ipvs.DaemonState) ipvs.Daemon {
		k := &ipvstest.Kernel{}
		k.SetInterface("eth1", 1500)
		if err := k.NewDaemon(ipvs.SyncDaemon(c, s)); err != nil {
			t.Fatal(err)
		}
		ds, _ := k.GetDaemons()
		return ds[0]
	}
	master, backup := ipvs.DaemonMaster, ipvs.DaemonBackup
	tests := []struct {
		name    string
		cfg     conf.LVSSync
		running []ipvs.Daemon // started before, in this order
		state   ipvs.DaemonState
		want    []ipvs.Daemon
		writes  int
	}{
		{name: "none to master", cfg: cfg, state: master, want: []ipvs.Daemon{read(cfg, master)}, writes: 1},
		{name: "none to backup", cfg: cfg, state: backup, want: []ipvs.Daemon{read(cfg, backup)}, writes: 1},
		{name: "none to none", cfg: cfg, state: ipvs.DaemonNone},
		{name: "master stays", cfg: cfg, running: []ipvs.Daemon{ipvs.SyncDaemon(cfg, master)}, state: master,
			want: []ipvs.Daemon{read(cfg, master)}},
		{name: "backup stays", cfg: cfg, running: []ipvs.Daemon{ipvs.SyncDaemon(cfg, backup)}, state: backup,
			want: []ipvs.Daemon{read(cfg, backup)}},
		{name: "backup with a clamped max length stays", cfg: withLen, running: []ipvs.Daemon{ipvs.SyncDaemon(withLen, backup)}, state: backup,
			want: []ipvs.Daemon{read(withLen, backup)}},
		{name: "IPv6 master stays", cfg: v6, running: []ipvs.Daemon{ipvs.SyncDaemon(v6, master)}, state: master,
			want: []ipvs.Daemon{read(v6, master)}},
		{name: "backup to master", cfg: cfg, running: []ipvs.Daemon{ipvs.SyncDaemon(cfg, backup)}, state: master,
			want: []ipvs.Daemon{read(cfg, master)}, writes: 2},
		{name: "master to backup", cfg: cfg, running: []ipvs.Daemon{ipvs.SyncDaemon(cfg, master)}, state: backup,
			want: []ipvs.Daemon{read(cfg, backup)}, writes: 2},
		{name: "both to master", cfg: cfg, running: []ipvs.Daemon{ipvs.SyncDaemon(cfg, master), ipvs.SyncDaemon(cfg, backup)}, state: master,
			want: []ipvs.Daemon{read(cfg, master)}, writes: 1},
		{name: "both to none", cfg: cfg, running: []ipvs.Daemon{ipvs.SyncDaemon(cfg, master), ipvs.SyncDaemon(cfg, backup)}, state: ipvs.DaemonNone,
			writes: 2},
		{name: "master with other settings restarted", cfg: cfg, running: []ipvs.Daemon{ipvs.SyncDaemon(other, master)}, state: master,
			want: []ipvs.Daemon{read(cfg, master)}, writes: 2},
		{name: "a max length changed restarts", cfg: withLen, running: []ipvs.Daemon{ipvs.SyncDaemon(cfg, backup)}, state: backup,
			want: []ipvs.Daemon{read(withLen, backup)}, writes: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &ipvstest.Kernel{}
			k.SetInterface("eth1", 1500)
			for _, d := range tt.running {
				if err := k.NewDaemon(d); err != nil {
					t.Fatal(err)
				}
			}
			k.ResetWrites()
			if err := ipvs.ApplySync(k, tt.cfg, tt.state); err != nil {
				t.Fatal(err)
			}
			got, _ := k.GetDaemons()
			if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("daemons (-want +got):\n%s", d)
			}
			if k.Writes() != tt.writes {
				t.Errorf("%d writes (%v), want %d", k.Writes(), k.WritesByOp(), tt.writes)
			}
			// Applying again writes nothing.
			k.ResetWrites()
			if err := ipvs.ApplySync(k, tt.cfg, tt.state); err != nil || k.Writes() != 0 {
				t.Errorf("again: %v, %v writes", err, k.WritesByOp())
			}
		})
	}
}

// TestApplySyncErrors checks that a refusal is returned, with the kernel's
// errno in the chain, and that a failed stop starts nothing.
func TestApplySyncErrors(t *testing.T) {
	cfg := conf.LVSSync{Interface: "eth1", SyncID: 1, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1}

	k := &ipvstest.Kernel{} // no eth1
	if err := ipvs.ApplySync(k, cfg, ipvs.DaemonMaster); !errors.Is(err, unix.ENODEV) {
		t.Errorf("unknown interface: %v, want ENODEV", err)
	}

	k = &ipvstest.Kernel{}
	k.SetInterface("eth1", 1500)
	if err := k.NewDaemon(ipvs.SyncDaemon(cfg, ipvs.DaemonBackup)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	k.SetFail(func(op string, _ *moby.Service, _ *moby.Destination) error {
		if op == ipvstest.OpDelDaemon {
			return boom
		}
		return nil
	})
	if err := ipvs.ApplySync(k, cfg, ipvs.DaemonMaster); !errors.Is(err, boom) {
		t.Errorf("failing stop: %v, want boom", err)
	}
	got, _ := k.GetDaemons()
	if !slices.EqualFunc(got, []ipvs.DaemonState{ipvs.DaemonBackup}, func(d ipvs.Daemon, s ipvs.DaemonState) bool { return d.State == s }) {
		t.Errorf("after a failed stop: %v, want the backup alone", got)
	}
	if err := ipvs.ApplySync(k, cfg, 3); err == nil {
		t.Error("state 3 accepted")
	}
}
