package ipvstest

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/ipvs"
)

// DaemonRule is one rule of the kernel's sync daemons, as seen through
// ipvs.Daemons. Like Rules, the same table runs against the fake
// (ipvstest's tests) and against the kernel (integration's
// TestIPVSSyncDaemon), which makes the fake's answers the kernel's.
type DaemonRule struct {
	Name string
	// Op runs with no daemon running.
	Op func(k ipvs.Daemons) error
	// Want is the errno of Op's last request; 0 means it succeeds.
	Want syscall.Errno
	// Running is what GetDaemons returns after Op, master first.
	Running []ipvs.Daemon
}

// DaemonRules returns the rules for a namespace where iface is an
// interface with MTU 1500, up, with an IPv4 and an IPv6 address (a master
// needs a route to its group; on the fake, SetInterface(iface, 1500)).
func DaemonRules(iface string) []DaemonRule {
	g4 := netip.MustParseAddr("239.1.2.3")
	g6 := netip.MustParseAddr("ff02::81")
	def := ipvs.DefaultSyncGroup
	master := func(id uint32) ipvs.Daemon {
		return ipvs.Daemon{State: ipvs.DaemonMaster, Interface: iface, SyncID: id}
	}
	backup := func(id uint32) ipvs.Daemon {
		return ipvs.Daemon{State: ipvs.DaemonBackup, Interface: iface, SyncID: id}
	}
	// withDefaults is d as the kernel reports it when started without
	// options: 224.0.0.81:8848, TTL 1, and a message of 1500 less the
	// IPv4 and UDP headers (1500 is also the MTU, a backup's bound).
	withDefaults := func(d ipvs.Daemon) ipvs.Daemon {
		d.MaxLen, d.Group, d.Port, d.TTL = 1472, def, ipvs.DefaultSyncPort, ipvs.DefaultSyncTTL
		return d
	}
	// with is d with options: as requested, or as read back.
	with := func(d ipvs.Daemon, maxLen uint16, group netip.Addr, port uint16, ttl uint8) ipvs.Daemon {
		d.MaxLen, d.Group, d.Port, d.TTL = maxLen, group, port, ttl
		return d
	}
	start := func(ds ...ipvs.Daemon) func(ipvs.Daemons) error {
		return func(k ipvs.Daemons) error {
			for i, d := range ds {
				if err := k.NewDaemon(d); err != nil || i == len(ds)-1 {
					return err
				}
			}
			return nil
		}
	}
	startThenStop := func(s ipvs.DaemonState, ds ...ipvs.Daemon) func(ipvs.Daemons) error {
		return func(k ipvs.Daemons) error {
			for _, d := range ds {
				if err := k.NewDaemon(d); err != nil {
					return fmt.Errorf("setup: %w", err)
				}
			}
			return k.DelDaemon(s)
		}
	}
	stop := func(s ipvs.DaemonState) func(ipvs.Daemons) error {
		return func(k ipvs.Daemons) error { return k.DelDaemon(s) }
	}
	return []DaemonRule{
		{Name: "master with the kernel's defaults", Op: start(master(51)), Running: []ipvs.Daemon{withDefaults(master(51))}},
		{Name: "backup with the kernel's defaults", Op: start(backup(51)), Running: []ipvs.Daemon{withDefaults(backup(51))}},
		{Name: "master and backup at once, listed master first", Op: start(backup(2), master(1)),
			Running: []ipvs.Daemon{withDefaults(master(1)), withDefaults(backup(2))}},
		{Name: "master with every option", Op: start(with(master(7), 1000, g4, 9000, 5)),
			Running: []ipvs.Daemon{with(master(7), 1000, g4, 9000, 5)}},
		{Name: "backup with every option", Op: start(with(backup(7), 1200, g4, 9000, 5)),
			Running: []ipvs.Daemon{with(backup(7), 1200, g4, 9000, 5)}},
		// Over IPv6 the headers take 48 bytes: 1452 by default.
		{Name: "master with an IPv6 group", Op: start(with(master(8), 0, g6, 9001, 2)),
			Running: []ipvs.Daemon{with(master(8), 1452, g6, 9001, 2)}},
		{Name: "backup with an IPv6 group", Op: start(with(backup(8), 0, g6, 0, 0)),
			Running: []ipvs.Daemon{with(backup(8), 1452, g6, ipvs.DefaultSyncPort, 1)}},
		{Name: "an IPv4-mapped group is an IPv4 group", Op: start(with(master(9), 0, netip.MustParseAddr("::ffff:239.1.2.3"), 0, 0)),
			Running: []ipvs.Daemon{with(master(9), 1472, g4, ipvs.DefaultSyncPort, 1)}},
		{Name: "max length above a datagram's clamped to it", Op: start(with(master(1), 65535, netip.Addr{}, 0, 0)),
			Running: []ipvs.Daemon{with(master(1), ipvs.MaxSyncLen4, def, ipvs.DefaultSyncPort, 1)}},
		{Name: "max length above an IPv6 datagram's clamped to it", Op: start(with(backup(1), 65535, g6, 0, 0)),
			Running: []ipvs.Daemon{with(backup(1), ipvs.MaxSyncLen6, g6, ipvs.DefaultSyncPort, 1)}},
		{Name: "a master takes a max length of 1", Op: start(with(master(1), 1, netip.Addr{}, 0, 0)),
			Running: []ipvs.Daemon{with(master(1), 1, def, ipvs.DefaultSyncPort, 1)}},
		{Name: "a backup's max length raised to 1024", Op: start(with(backup(1), 100, netip.Addr{}, 0, 0)),
			Running: []ipvs.Daemon{with(backup(1), ipvs.MinSyncLenBackup, def, ipvs.DefaultSyncPort, 1)}},
		{Name: "a sync id beyond 8 bits reads back whole", Op: start(master(300)), Running: []ipvs.Daemon{withDefaults(master(300))}},
		{Name: "second master", Op: start(master(1), master(2)), Want: unix.EEXIST, Running: []ipvs.Daemon{withDefaults(master(1))}},
		{Name: "second backup", Op: start(backup(1), backup(2)), Want: unix.EEXIST, Running: []ipvs.Daemon{withDefaults(backup(1))}},
		{Name: "unknown interface", Op: start(ipvs.Daemon{State: ipvs.DaemonMaster, Interface: "nosuch0"}), Want: unix.ENODEV},
		{Name: "empty interface name", Op: start(ipvs.Daemon{State: ipvs.DaemonBackup}), Want: unix.ENODEV},
		{Name: "interface name of 16 bytes", Op: start(ipvs.Daemon{State: ipvs.DaemonMaster, Interface: strings.Repeat("x", 16)}), Want: unix.EINVAL},
		{Name: "IPv4 group not multicast", Op: start(with(master(1), 0, netip.MustParseAddr("192.0.2.1"), 0, 0)), Want: unix.EINVAL},
		{Name: "IPv6 group not multicast", Op: start(with(backup(1), 0, netip.MustParseAddr("2001:db8::1"), 0, 0)), Want: unix.EINVAL},
		{Name: "state neither master nor backup", Op: start(ipvs.Daemon{State: 3, Interface: iface}), Want: unix.EINVAL},
		{Name: "state 0", Op: start(ipvs.Daemon{State: 0, Interface: iface}), Want: unix.EINVAL},
		// The interface is looked up before the state is checked.
		{Name: "unknown interface and state", Op: start(ipvs.Daemon{State: 3, Interface: "nosuch0"}), Want: unix.ENODEV},
		{Name: "stop the master, the backup runs on", Op: startThenStop(ipvs.DaemonMaster, master(1), backup(2)),
			Running: []ipvs.Daemon{withDefaults(backup(2))}},
		{Name: "stop the backup, the master runs on", Op: startThenStop(ipvs.DaemonBackup, master(1), backup(2)),
			Running: []ipvs.Daemon{withDefaults(master(1))}},
		{Name: "stop a master that is not running", Op: stop(ipvs.DaemonMaster), Want: unix.ESRCH},
		{Name: "stop a backup that is not running", Op: stop(ipvs.DaemonBackup), Want: unix.ESRCH},
		{Name: "stop a master while only a backup runs", Op: startThenStop(ipvs.DaemonMaster, backup(1)), Want: unix.ESRCH,
			Running: []ipvs.Daemon{withDefaults(backup(1))}},
		{Name: "stop state 3", Op: stop(3), Want: unix.EINVAL},
		{Name: "a stopped master starts again with new settings", Op: func(k ipvs.Daemons) error {
			if err := startThenStop(ipvs.DaemonMaster, master(1))(k); err != nil {
				return err
			}
			return k.NewDaemon(master(2))
		}, Running: []ipvs.Daemon{withDefaults(master(2))}},
	}
}

// Run runs r on k, which must run no daemon, says how the result differs
// from the rule, and stops every daemon it finds afterwards so the next
// rule starts from none.
func (r DaemonRule) Run(k ipvs.Daemons) error {
	if ds, err := k.GetDaemons(); err != nil || len(ds) != 0 {
		return fmt.Errorf("before the rule: daemons %v, error %v; want none", ds, err)
	}
	var problems []error
	err := r.Op(k)
	if r.Want == 0 && err != nil || r.Want != 0 && !errors.Is(err, r.Want) {
		problems = append(problems, fmt.Errorf("got %s, want %s", errText(err), errText(r.Want)))
	}
	got, err := k.GetDaemons()
	if err != nil {
		return errors.Join(append(problems, err)...)
	}
	if !slices.Equal(got, r.Running) {
		problems = append(problems, fmt.Errorf("running:\n%s\nwant:\n%s", daemonList(got), daemonList(r.Running)))
	}
	for _, d := range got {
		if err := k.DelDaemon(d.State); err != nil {
			problems = append(problems, fmt.Errorf("cleanup: %w", err))
		}
	}
	return errors.Join(problems...)
}

func daemonList(ds []ipvs.Daemon) string {
	if len(ds) == 0 {
		return "  none"
	}
	var lines []string
	for _, d := range ds {
		lines = append(lines, "  "+d.String())
	}
	return strings.Join(lines, "\n")
}
