package ipvs

import (
	"errors"
	"fmt"

	"github.com/lvsha/lvsha/conf"
)

// DaemonNone is the state of a director that runs no sync daemon
// (IP_VS_STATE_NONE); ApplySync takes it to stop both.
const DaemonNone DaemonState = 0

// SyncDaemon is the daemon of state s that cfg describes.
func SyncDaemon(cfg conf.LVSSync, s DaemonState) Daemon {
	return Daemon{
		State:     s,
		Interface: cfg.Interface,
		SyncID:    uint32(cfg.SyncID),
		MaxLen:    uint16(cfg.MaxLen),
		Group:     cfg.Group,
		Port:      uint16(cfg.Port),
		TTL:       uint8(cfg.TTL),
	}
}

// ApplySync makes the kernel run the sync daemons a director in VRRP state
// s runs for cfg, as keepalived does: the master daemon alone for
// DaemonMaster, the backup alone for DaemonBackup, none for DaemonNone.
// It reads first and writes only the difference, stopping before it
// starts: a daemon already running as cfg says is left alone (a restart
// would lose what it has queued), one with other settings, or of the
// other state, is stopped. So it can be called again on every transition
// and resync. The namespace's daemons are taken as lvsha's: the kernel
// has one of each state, and keepalived treats them the same way.
func ApplySync(k Daemons, cfg conf.LVSSync, s DaemonState) error {
	if s != DaemonNone && s != DaemonMaster && s != DaemonBackup {
		return fmt.Errorf("apply IPVS sync daemons: unknown state %s", s)
	}
	running, err := k.GetDaemons()
	if err != nil {
		return err
	}
	want := SyncDaemon(cfg, s)
	keep := false
	var errs []error
	for _, d := range running {
		if d.State == s && sameDaemon(d, want) {
			keep = true
			continue
		}
		errs = append(errs, k.DelDaemon(d.State))
	}
	if err := errors.Join(errs...); err != nil || keep || s == DaemonNone {
		return err
	}
	return k.NewDaemon(want)
}

// sameDaemon reports whether running, as the kernel reads it back, is
// want started: the kernel fills in its defaults and clamps MaxLen. When
// want has no MaxLen any running one is taken as the kernel's choice: a
// backup's depends on the interface's MTU, which this does not know.
func sameDaemon(running, want Daemon) bool {
	if want.MaxLen != 0 {
		hi := uint16(MaxSyncLen4)
		if want.Group.Unmap().Is6() {
			hi = MaxSyncLen6
		}
		lo := uint16(1)
		if want.State == DaemonBackup {
			lo = MinSyncLenBackup
		}
		want.MaxLen = min(max(want.MaxLen, lo), hi)
	} else {
		want.MaxLen = running.MaxLen
	}
	if !want.Group.IsValid() {
		want.Group = DefaultSyncGroup
	}
	want.Group = want.Group.Unmap()
	if want.Port == 0 {
		want.Port = DefaultSyncPort
	}
	if want.TTL == 0 {
		want.TTL = DefaultSyncTTL
	}
	return running == want
}
