package main

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// capNeed is one Linux capability the daemon needs, and for what.
type capNeed struct {
	cap  uint // a CAP_* number of linux/capability.h
	name string
	why  string
}

// neededCaps lists the capabilities `lvsha run` needs for cfg. IPVS and
// the VIPs are programmed over netlink (CAP_NET_ADMIN), always, since a
// reload may add virtual servers or instances to any daemon; VRRP adverts
// and ICMP probes use raw sockets (CAP_NET_RAW); --netns enters another
// network namespace with setns(2) (CAP_SYS_ADMIN); control_socket_group
// gives the socket to a group root is not a member of (CAP_CHOWN).
func neededCaps(cfg *conf.Config, netns bool) []capNeed {
	need := []capNeed{{cap: unix.CAP_NET_ADMIN, name: "CAP_NET_ADMIN", why: "to program IPVS and the VRRP addresses"}}
	var raw []string
	for _, ic := range cfg.VRRPInstances {
		raw = append(raw, fmt.Sprintf("vrrp_instance %q", ic.Name))
	}
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			if rs.Check != nil && rs.Check.Type == "icmp" {
				raw = append(raw, fmt.Sprintf("the icmp checks of virtual_server %q", vs.Name))
				break
			}
		}
	}
	if len(raw) > 0 {
		need = append(need, capNeed{cap: unix.CAP_NET_RAW, name: "CAP_NET_RAW", why: "for the raw sockets of " + strings.Join(raw, ", ")})
	}
	if netns {
		need = append(need, capNeed{cap: unix.CAP_SYS_ADMIN, name: "CAP_SYS_ADMIN", why: "to enter the --netns namespace"})
	}
	if cfg.Director.ControlSocketGroup != "" {
		need = append(need, capNeed{cap: unix.CAP_CHOWN, name: "CAP_CHOWN", why: "to give the control socket to control_socket_group"})
	}
	if raisesSched(cfg) {
		need = append(need, capNeed{cap: unix.CAP_SYS_NICE, name: "CAP_SYS_NICE", why: "for director.rt_priority or a negative director.nice"})
	}
	return need
}

// in says whether the capability set effective (bit n for CAP_* number
// n) holds n: the one test of a capability, for `lvsha run` and `lvsha
// check --host` alike.
func (n capNeed) in(effective uint64) bool { return effective&(1<<n.cap) != 0 }

func (n capNeed) String() string { return n.name + " (" + n.why + ")" }

// checkCaps says which of what cfg needs the effective capability set
// effective (bit n for CAP_* number n) lacks, as one start-up error that
// names each capability, what it is for, and how to grant it; nil when
// nothing is missing.
func checkCaps(effective uint64, cfg *conf.Config, netns bool) error {
	var missing []string
	for _, n := range neededCaps(cfg, netns) {
		if !n.in(effective) {
			missing = append(missing, n.String())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("missing capabilities: %s; run as root, or grant them (systemd: AmbientCapabilities= and CapabilityBoundingSet=)",
		strings.Join(missing, ", "))
}

// effectiveCaps reads this thread's effective capability set; every
// thread of lvsha has the same, as dropCaps changes them all at once.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("read capabilities (capget): %w", err)
	}
	return uint64(data[1].Effective)<<32 | uint64(data[0].Effective), nil
}

// keptCaps lists what the daemon keeps once start-up is done (dropCaps):
// CAP_NET_ADMIN and CAP_NET_RAW whatever cfg says, since a reload may add
// virtual servers, VRRP instances or icmp checks; CAP_SYS_ADMIN with
// --netns, where IPVS lives in another namespace; and
// CAP_NET_BIND_SERVICE when cfg binds a port below 1024 ([metrics]
// listen, [cluster] bind_port), so that a reload can bind it again;
// CAP_CHOWN with director.control_socket_group.
// Anything else lvsha does after start (its config, state file and
// control socket, all root's; its own children) needs no capability;
// what the children of a root daemon get is said at dropCaps.
func keptCaps(cfg *conf.Config, netns bool) []capNeed {
	keep := []capNeed{
		{cap: unix.CAP_NET_ADMIN, name: "CAP_NET_ADMIN", why: "IPVS, addresses, tun devices, sync daemons"},
		{cap: unix.CAP_NET_RAW, name: "CAP_NET_RAW", why: "VRRP and icmp raw sockets"},
	}
	if netns {
		keep = append(keep, capNeed{cap: unix.CAP_SYS_ADMIN, name: "CAP_SYS_ADMIN", why: "--netns"})
	}
	if privilegedPort(cfg) {
		keep = append(keep, capNeed{cap: unix.CAP_NET_BIND_SERVICE, name: "CAP_NET_BIND_SERVICE", why: "a port below 1024"})
	}
	if cfg.Director.ControlSocketGroup != "" {
		// A control socket opened again after a failure is given to the
		// group anew: a group root is not a member of.
		keep = append(keep, capNeed{cap: unix.CAP_CHOWN, name: "CAP_CHOWN", why: "control_socket_group"})
	}
	if raisesSched(cfg) {
		// A reload may raise the priority again after lowering it.
		keep = append(keep, capNeed{cap: unix.CAP_SYS_NICE, name: "CAP_SYS_NICE", why: "director.rt_priority, director.nice"})
	}
	return keep
}

// raisesSched says whether cfg may ask more of the scheduler than any
// process gets: a real-time policy or a negative nice.
func raisesSched(cfg *conf.Config) bool {
	return cfg.Director.RTPriority > 0 || cfg.Director.Nice < 0
}

// privilegedPort says whether cfg listens on a port below 1024.
func privilegedPort(cfg *conf.Config) bool {
	if cfg.Cluster != nil && cfg.Cluster.BindPort > 0 && cfg.Cluster.BindPort < 1024 {
		return true
	}
	if cfg.Metrics.Listen == "" {
		return false
	}
	_, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p > 0 && p < 1024
}

// capMask is the set of keep, bit n for CAP_* number n.
func capMask(keep []capNeed) uint64 {
	var m uint64
	for _, n := range keep {
		m |= 1 << n.cap
	}
	return m
}

// capNames names the capabilities of set (bit n for CAP_* number n)
// that keep lists, in keep's order.
func capNames(set uint64, keep []capNeed) []string {
	var names []string
	for _, n := range keep {
		if n.in(set) {
			names = append(names, n.name)
		}
	}
	return names
}

// errCapsCgo is dropCaps' error in a binary built with cgo, whose threads
// Go cannot all reach (syscall.AllThreadsSyscall); release builds are
// static, without cgo.
var errCapsCgo = errors.New("capabilities not dropped: this lvsha is built with cgo, which keeps Go from changing every thread's (build it with CGO_ENABLED=0)")

// dropCaps removes from the effective and permitted sets of every thread
// of the process each capability keep does not list, and returns the
// effective set left. The bounding set and the inheritable set stay as
// they were: a daemon running as uid 0 hands its commands (notify hooks,
// track_exec, exec checks) root's full capabilities again at execve, as
// the kernel gives any uid-0 process every capability of the bounding
// set (capabilities(7), "Capabilities and execution of programs by
// root"), so they run as before. A daemon run as another user with
// ambient capabilities keeps in its ambient set, and so hands its
// commands, only what it kept. What a child cannot regain is what
// only the daemon itself would use: the exec of a command file is
// checked against the daemon's kept set, so it must be executable by
// root as its owner, group or other (no CAP_DAC_OVERRIDE).
func dropCaps(keep uint64) (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("read capabilities (capget): %w", err)
	}
	for i := range data {
		k := uint32(keep >> (32 * i))
		data[i].Effective &= k
		data[i].Permitted &= k
	}
	// Every thread, not the caller's alone: capabilities are per thread,
	// and any of Go's threads may run any goroutine; threads made later
	// are cloned from these and inherit the reduced sets.
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	switch {
	case errno == syscall.ENOTSUP:
		return 0, errCapsCgo
	case errno != 0:
		return 0, fmt.Errorf("drop capabilities (capset): %w", errno)
	}
	return effectiveCaps()
}
