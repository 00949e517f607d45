package main

import (
	"fmt"
	"strings"

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
// network namespace with setns(2) (CAP_SYS_ADMIN).
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
// thread of lvsha has the same, as nothing changes them.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("read capabilities (capget): %w", err)
	}
	return uint64(data[1].Effective)<<32 | uint64(data[0].Effective), nil
}
