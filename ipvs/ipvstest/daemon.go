package ipvstest

import (
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/ipvs"
)

// The sync daemons, as net/netfilter/ipvs/ip_vs_ctl.c
// (ip_vs_genl_new_daemon, ip_vs_genl_del_daemon) and ip_vs_sync.c
// (start_sync_thread, stop_sync_thread) run them: one master and one
// backup at most, checked in the kernel's order so that a request with
// two faults gets the kernel's errno. DaemonRules holds the same rules as
// a table that also runs on the kernel. Not modelled: the kernel's
// refusal while a service has destinations of another family (moby
// cannot create those), and errors from setting up the daemon's socket
// (the fake holds no addresses, routes or link state).

// loopbackMTU is lo's MTU in a new network namespace.
const loopbackMTU = 65536

// SetInterface makes an interface of that name and MTU known to the
// daemons; lo (MTU 65536) always is, as in a new network namespace. A
// daemon on any other interface fails with ENODEV, as on the kernel.
func (k *Kernel) SetInterface(name string, mtu int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.links == nil {
		k.links = map[string]int{}
	}
	k.links[name] = mtu
}

func (k *Kernel) mtu(name string) (int, bool) {
	if mtu, ok := k.links[name]; ok {
		return mtu, true
	}
	return loopbackMTU, name == "lo"
}

// NewDaemon starts d: EINVAL for an interface name longer than
// ipvs.MaxDaemonInterface (the netlink policy) or a group that is not
// multicast, ENODEV for an unknown interface, EEXIST when a daemon of
// that state runs, EINVAL for a state other than master and backup. The
// read-back has the kernel's defaults filled in and MaxLen clamped.
func (k *Kernel) NewDaemon(d ipvs.Daemon) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write(OpNewDaemon, nil, nil); err != nil {
		return err
	}
	if len(d.Interface) > ipvs.MaxDaemonInterface {
		return unix.EINVAL
	}
	d.Group = d.Group.Unmap() // as Handle sends it
	if d.Group.IsValid() && !isMulticast(d.Group) {
		return unix.EINVAL
	}
	if !d.Group.IsValid() {
		d.Group = ipvs.DefaultSyncGroup
	}
	if d.Port == 0 {
		d.Port = ipvs.DefaultSyncPort
	}
	if d.TTL == 0 {
		d.TTL = ipvs.DefaultSyncTTL
	}
	mtu, ok := k.mtu(d.Interface)
	if !ok {
		return unix.ENODEV
	}
	d.MaxLen = syncMaxLen(d, mtu)
	switch d.State {
	case ipvs.DaemonMaster:
		if k.master != nil {
			return unix.EEXIST
		}
		k.master = &d
	case ipvs.DaemonBackup:
		if k.backup != nil {
			return unix.EEXIST
		}
		k.backup = &d
	default:
		return unix.EINVAL
	}
	return nil
}

// syncMaxLen is the message size start_sync_thread settles on: d.MaxLen
// clamped to what the state can use, or without one 1500 (a master) or
// the interface's MTU within 1500..65535 (a backup), less the headers.
func syncMaxLen(d ipvs.Daemon, mtu int) uint16 {
	hlen := 20 + 8
	if d.Group.Is6() {
		hlen = 40 + 8
	}
	top, least := 1500, 1
	if d.State == ipvs.DaemonBackup {
		top, least = min(max(mtu, 1500), 65535), ipvs.MinSyncLenBackup
	}
	if d.MaxLen == 0 {
		return uint16(top - hlen)
	}
	return uint16(min(max(int(d.MaxLen), least), 65535-hlen))
}

// isMulticast is the kernel's test of a group: ipv4_is_multicast, or
// IPV6_ADDR_MULTICAST (ff00::/8) for an IPv6 one.
func isMulticast(a netip.Addr) bool {
	if a.Is4() {
		return a.IsMulticast()
	}
	return a.As16()[0] == 0xff
}

// DelDaemon stops the daemon of state s: ESRCH when none runs, EINVAL
// for a state other than master and backup.
func (k *Kernel) DelDaemon(s ipvs.DaemonState) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write(OpDelDaemon, nil, nil); err != nil {
		return err
	}
	var running **ipvs.Daemon
	switch s {
	case ipvs.DaemonMaster:
		running = &k.master
	case ipvs.DaemonBackup:
		running = &k.backup
	default:
		return unix.EINVAL
	}
	if *running == nil {
		return unix.ESRCH
	}
	*running = nil
	return nil
}

// GetDaemons returns the running daemons, master first, as the kernel's
// dump (ip_vs_genl_dump_daemons) lists them.
func (k *Kernel) GetDaemons() ([]ipvs.Daemon, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []ipvs.Daemon
	for _, d := range []*ipvs.Daemon{k.master, k.backup} {
		if d != nil {
			out = append(out, *d)
		}
	}
	return out, nil
}
