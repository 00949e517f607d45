package ipvstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/ipvs"
)

// Schedulers are the IPVS schedulers of the kernel (one module
// net/netfilter/ipvs/ip_vs_<name>.c each, Linux 6.12; twos since 6.2).
// The fake accepts exactly these. The list is written out here rather
// than taken from lvsha's own, so that a scheduler lvsha offers and the
// kernel lacks fails against the fake as it fails against the kernel;
// integration's TestKernelRules compares it with the VM kernel's modules.
func Schedulers() []string {
	return []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
}

// Rule is one rule of the kernel's IPVS table (net/netfilter/ipvs/
// ip_vs_ctl.c) that a reconciler can trip over, as seen through moby's
// requests. The same rules run against the fake (ipvstest's tests) and
// against the kernel (integration's TestKernelRules), which is what makes
// the fake's answers the kernel's.
type Rule struct {
	Name string
	// Op runs on a table holding what Base programs.
	Op func(k ipvs.Kernel) error
	// Want is the errno Op returns; 0 means it succeeds.
	Want syscall.Errno
	// Check, when set, inspects the table (as Dump shows it) after Op.
	Check func(table []string) error
}

// Run runs r on k, which must hold the base table, and says how the
// result differs from the rule. A write that fails must leave the table
// as it was, and Run checks that for every failing rule.
func (r Rule) Run(k ipvs.Kernel) error {
	before, err := Dump(k)
	if err != nil {
		return err
	}
	err = r.Op(k)
	if r.Want == 0 && err != nil || r.Want != 0 && !errors.Is(err, r.Want) {
		return fmt.Errorf("got %s, want %s", errText(err), errText(r.Want))
	}
	after, err := Dump(k)
	if err != nil {
		return err
	}
	if r.Want != 0 && !slices.Equal(before, after) {
		return fmt.Errorf("the failed write changed the table from\n%s\nto\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
	if r.Check != nil {
		if err := r.Check(after); err != nil {
			return fmt.Errorf("%w; table:\n%s", err, strings.Join(after, "\n"))
		}
	}
	return nil
}

func errText(err error) string {
	var e syscall.Errno
	switch {
	case err == nil:
		return "success"
	case errors.As(err, &e) && e == 0:
		return "success"
	case errors.As(err, &e):
		return fmt.Sprintf("%s (%v)", unix.ErrnoName(e), err)
	}
	return err.Error()
}

// The base table every rule starts from: an IPv4 service with one
// destination, an IPv6 service with one, and an IPv4 firewall-mark
// service without any.
func baseV4() *moby.Service { return svc4("10.0.0.1", 80) }
func baseV6() *moby.Service { return svc6("2001:db8::1", 80) }
func baseFWM() *moby.Service {
	return &moby.Service{AddressFamily: unix.AF_INET, FWMark: 1, SchedName: "wlc", Netmask: 0xffffffff}
}

// Base programs the base table into an empty kernel.
func Base(k ipvs.Kernel) error {
	for _, s := range []*moby.Service{baseV4(), baseV6(), baseFWM()} {
		if err := k.NewService(s); err != nil {
			return fmt.Errorf("base table: add service %s: %w", svcID(s), err)
		}
	}
	if err := k.NewDestination(baseV4(), dst("10.0.1.1", 80, 1)); err != nil {
		return fmt.Errorf("base table: add destination: %w", err)
	}
	if err := k.NewDestination(baseV6(), dst("2001:db8:1::1", 80, 1)); err != nil {
		return fmt.Errorf("base table: add destination: %w", err)
	}
	return nil
}

func svc4(addr string, port uint16) *moby.Service {
	return &moby.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: net.ParseIP(addr), Port: port, SchedName: "rr", Netmask: 0xffffffff}
}

func svc6(addr string, port uint16) *moby.Service {
	return &moby.Service{AddressFamily: unix.AF_INET6, Protocol: unix.IPPROTO_TCP, Address: net.ParseIP(addr), Port: port, SchedName: "rr", Netmask: 128}
}

func dst(addr string, port uint16, w int) *moby.Destination {
	return &moby.Destination{Address: net.ParseIP(addr), Port: port, Weight: w}
}

// with returns a copy of s changed by f.
func with(s *moby.Service, f func(*moby.Service)) *moby.Service {
	c := *s
	f(&c)
	return &c
}

func withDst(d *moby.Destination, f func(*moby.Destination)) *moby.Destination {
	c := *d
	f(&c)
	return &c
}

// has checks that the table holds every line of want.
func has(want ...string) func([]string) error {
	return func(table []string) error {
		var missing []string
		for _, w := range want {
			if !slices.Contains(table, w) {
				missing = append(missing, w)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing %q", missing)
		}
		return nil
	}
}

// lacks checks that no line of the table starts with prefix.
func lacks(prefix string) func([]string) error {
	return func(table []string) error {
		for _, l := range table {
			if strings.HasPrefix(l, prefix) {
				return fmt.Errorf("unexpected %q", l)
			}
		}
		return nil
	}
}

func both(a, b func([]string) error) func([]string) error {
	return func(table []string) error {
		if err := a(table); err != nil {
			return err
		}
		return b(table)
	}
}

// Rules returns the rules, each to run on a fresh kernel holding the base
// table (Base).
func Rules() []Rule {
	v4, v6, fwm := baseV4(), baseV6(), baseFWM()
	missing := svc4("10.0.0.9", 80)
	newSvc := func(s *moby.Service) func(ipvs.Kernel) error {
		return func(k ipvs.Kernel) error { return k.NewService(s) }
	}
	updSvc := func(s *moby.Service) func(ipvs.Kernel) error {
		return func(k ipvs.Kernel) error { return k.UpdateService(s) }
	}
	newDst := func(s *moby.Service, d *moby.Destination) func(ipvs.Kernel) error {
		return func(k ipvs.Kernel) error { return k.NewDestination(s, d) }
	}
	updDst := func(s *moby.Service, d *moby.Destination) func(ipvs.Kernel) error {
		return func(k ipvs.Kernel) error { return k.UpdateDestination(s, d) }
	}
	rules := []Rule{
		// Services.
		{Name: "base table reads back with HASHED, a firewall-mark service without protocol, address or port",
			Op: func(ipvs.Kernel) error { return nil },
			Check: has(
				"tcp 10.0.0.1:80 rr flags 0x2 timeout 0 netmask 0xffffffff",
				"tcp [2001:db8::1]:80 rr flags 0x2 timeout 0 netmask 0x80",
				"fwmark 1 inet proto 0 addr <nil> port 0 wlc flags 0x2 timeout 0 netmask 0xffffffff",
				"tcp 10.0.0.1:80 -> 10.0.1.1:80 masq weight 1 thresholds 0-0",
				"tcp [2001:db8::1]:80 -> [2001:db8:1::1]:80 masq weight 1 thresholds 0-0")},
		{Name: "duplicate service", Op: newSvc(svc4("10.0.0.1", 80)), Want: unix.EEXIST},
		{Name: "duplicate service given as an IPv4-mapped address", Op: newSvc(svc4("::ffff:10.0.0.1", 80)), Want: unix.EEXIST},
		{Name: "duplicate firewall-mark service", Op: newSvc(baseFWM()), Want: unix.EEXIST},
		// The lookup comes before ip_vs_add_service checks anything.
		{Name: "duplicate service with an unknown scheduler", Op: newSvc(with(v4, func(s *moby.Service) { s.SchedName = "nosuch" })), Want: unix.EEXIST},
		{Name: "same address and port over udp is another service",
			Op:    newSvc(with(v4, func(s *moby.Service) { s.Protocol = unix.IPPROTO_UDP })),
			Check: has("udp 10.0.0.1:80 rr flags 0x2 timeout 0 netmask 0xffffffff")},
		{Name: "same firewall mark in IPv6 is another service",
			Op:    newSvc(with(fwm, func(s *moby.Service) { s.AddressFamily, s.Netmask = unix.AF_INET6, 128 })),
			Check: has("fwmark 1 inet6 proto 0 addr <nil> port 0 wlc flags 0x2 timeout 0 netmask 0x80")},
		{Name: "unknown scheduler", Op: newSvc(with(svc4("10.0.0.2", 80), func(s *moby.Service) { s.SchedName = "nosuch" })), Want: unix.ENOENT},
		{Name: "empty scheduler", Op: newSvc(with(svc4("10.0.0.2", 80), func(s *moby.Service) { s.SchedName = "" })), Want: unix.ENOENT},
		{Name: "IPv6 netmask 0", Op: newSvc(with(svc6("2001:db8::2", 80), func(s *moby.Service) { s.Netmask = 0 })), Want: unix.EINVAL},
		{Name: "IPv6 netmask 129", Op: newSvc(with(svc6("2001:db8::2", 80), func(s *moby.Service) { s.Netmask = 129 })), Want: unix.EINVAL},
		{Name: "IPv4 netmask is not checked",
			Op:    newSvc(with(svc4("10.0.0.2", 80), func(s *moby.Service) { s.Netmask = 0 })),
			Check: has("tcp 10.0.0.2:80 rr flags 0x2 timeout 0 netmask 0x0")},
		// ip_vs_genl_parse_service checks no protocol; only the old
		// setsockopt interface refuses one that is not tcp, udp or sctp.
		{Name: "unknown protocol is taken",
			Op:    newSvc(with(svc4("10.0.0.2", 80), func(s *moby.Service) { s.Protocol = 99 })),
			Check: has("proto99 10.0.0.2:80 rr flags 0x2 timeout 0 netmask 0xffffffff")},
		{Name: "unknown family", Op: newSvc(with(svc4("10.0.0.2", 80), func(s *moby.Service) { s.AddressFamily = 99 })), Want: unix.EAFNOSUPPORT},
		// The kernel reads the address attribute in the family the
		// request names, whatever its length: an IPv4 service given an
		// IPv6 address gets its first four bytes, 2001:db8:: being
		// 32.1.13.184.
		{Name: "IPv6 address in an IPv4 service is read as its first four bytes",
			Op:    newSvc(with(svc4("10.0.0.2", 80), func(s *moby.Service) { s.Address = net.ParseIP("2001:db8::2") })),
			Check: has("tcp 32.1.13.184:80 rr flags 0x2 timeout 0 netmask 0xffffffff")},
		{Name: "IPv4 address in an IPv6 service is read as four bytes and zeros",
			Op:    newSvc(with(svc6("10.0.0.2", 80), func(s *moby.Service) {})),
			Check: has("tcp [a00:2::]:80 rr flags 0x2 timeout 0 netmask 0x80")},
		{Name: "update a service of unknown family", Op: updSvc(with(v4, func(s *moby.Service) { s.AddressFamily = 99 })), Want: unix.EAFNOSUPPORT},
		{Name: "update missing service", Op: updSvc(missing), Want: unix.ESRCH},
		{Name: "delete missing service", Op: func(k ipvs.Kernel) error { return k.DelService(missing) }, Want: unix.ESRCH},
		{Name: "update to an unknown scheduler", Op: updSvc(with(v4, func(s *moby.Service) { s.SchedName = "nosuch" })), Want: unix.ENOENT},
		{Name: "update an IPv6 service to netmask 0", Op: updSvc(with(v6, func(s *moby.Service) { s.Netmask = 0 })), Want: unix.EINVAL},
		{Name: "update changes scheduler, flags, timeout and netmask",
			Op: updSvc(with(v4, func(s *moby.Service) {
				s.SchedName, s.Flags, s.Timeout, s.Netmask = "wlc", uint32(ipvs.FlagPersistent), 300, ipvs.Netmask4(24)
			})),
			Check: has(fmt.Sprintf("tcp 10.0.0.1:80 wlc flags 0x3 timeout 300 netmask %#x", ipvs.Netmask4(24)),
				"tcp 10.0.0.1:80 -> 10.0.1.1:80 masq weight 1 thresholds 0-0")},
		{Name: "update a firewall-mark service",
			Op:    updSvc(with(fwm, func(s *moby.Service) { s.SchedName = "rr" })),
			Check: has("fwmark 1 inet proto 0 addr <nil> port 0 rr flags 0x2 timeout 0 netmask 0xffffffff")},
		{Name: "a deleted service takes its destinations",
			Op: func(k ipvs.Kernel) error {
				if err := k.DelService(v4); err != nil {
					return err
				}
				return k.NewService(v4)
			},
			Check: both(has("tcp 10.0.0.1:80 rr flags 0x2 timeout 0 netmask 0xffffffff"), lacks("tcp 10.0.0.1:80 ->"))},
		{Name: "destinations of a missing service are an empty list",
			Op: func(k ipvs.Kernel) error {
				ds, err := k.GetDestinations(missing)
				if err == nil && len(ds) != 0 {
					return fmt.Errorf("%d destinations", len(ds))
				}
				return err
			}},

		// Destinations.
		{Name: "destination on a missing service", Op: newDst(missing, dst("10.0.1.2", 80, 1)), Want: unix.ESRCH},
		{Name: "destination on a service of unknown family", Op: newDst(with(v4, func(s *moby.Service) { s.AddressFamily = 99 }), dst("10.0.1.2", 80, 1)), Want: unix.EAFNOSUPPORT},
		// ip_vs_add_dest checks weight and thresholds before it looks the
		// destination up, ip_vs_new_dest the address after.
		{Name: "duplicate destination with a negative weight", Op: newDst(v4, dst("10.0.1.1", 80, -1)), Want: unix.ERANGE},
		{Name: "update missing destination to a negative weight", Op: updDst(v4, dst("10.0.1.2", 80, -1)), Want: unix.ERANGE},
		{Name: "update destination on a missing service", Op: updDst(missing, dst("10.0.1.1", 80, 1)), Want: unix.ESRCH},
		{Name: "delete destination on a missing service", Op: func(k ipvs.Kernel) error { return k.DelDestination(missing, dst("10.0.1.1", 80, 1)) }, Want: unix.ESRCH},
		{Name: "duplicate destination", Op: newDst(v4, dst("10.0.1.1", 80, 5)), Want: unix.EEXIST},
		{Name: "update missing destination", Op: updDst(v4, dst("10.0.1.2", 80, 1)), Want: unix.ENOENT},
		{Name: "delete missing destination", Op: func(k ipvs.Kernel) error { return k.DelDestination(v4, dst("10.0.1.2", 80, 1)) }, Want: unix.ENOENT},
		{Name: "delete destination",
			Op:    func(k ipvs.Kernel) error { return k.DelDestination(v4, dst("10.0.1.1", 80, 0)) },
			Check: lacks("tcp 10.0.0.1:80 ->")},
		{Name: "negative weight", Op: newDst(v4, dst("10.0.1.2", 80, -1)), Want: unix.ERANGE},
		{Name: "update to a negative weight", Op: updDst(v4, dst("10.0.1.1", 80, -1)), Want: unix.ERANGE},
		{Name: "lower threshold above upper", Op: newDst(v4, withDst(dst("10.0.1.2", 80, 1), func(d *moby.Destination) { d.LowerThreshold = 1 })), Want: unix.ERANGE},
		{Name: "update to a lower threshold above upper", Op: updDst(v4, withDst(dst("10.0.1.1", 80, 1), func(d *moby.Destination) { d.LowerThreshold, d.UpperThreshold = 5, 4 })), Want: unix.ERANGE},
		{Name: "valid destination",
			Op:    newDst(v4, withDst(dst("10.0.1.2", 8080, 3), func(d *moby.Destination) { d.LowerThreshold, d.UpperThreshold = 2, 10 })),
			Check: has("tcp 10.0.0.1:80 -> 10.0.1.2:8080 masq weight 3 thresholds 2-10")},
		{Name: "destination given as an IPv4-mapped address", Op: newDst(v4, dst("::ffff:10.0.1.1", 80, 1)), Want: unix.EEXIST},
		{Name: "update changes weight, forwarding and thresholds",
			Op: updDst(v4, withDst(dst("10.0.1.1", 80, 0), func(d *moby.Destination) {
				d.ConnectionFlags, d.UpperThreshold, d.LowerThreshold = moby.ConnectionFlagDirectRoute, 7, 3
			})),
			Check: has("tcp 10.0.0.1:80 -> 10.0.1.1:80 route weight 0 thresholds 3-7")},
		{Name: "direct-routing destination on another port is kept as given",
			Op:    newDst(v4, withDst(dst("10.0.1.2", 81, 1), func(d *moby.Destination) { d.ConnectionFlags = moby.ConnectionFlagDirectRoute })),
			Check: has("tcp 10.0.0.1:80 -> 10.0.1.2:81 route weight 1 thresholds 0-0")},
		{Name: "destination port 0 on a NAT service",
			Op:    newDst(v4, dst("10.0.1.2", 0, 1)),
			Check: has("tcp 10.0.0.1:80 -> 10.0.1.2:0 masq weight 1 thresholds 0-0")},
		{Name: "destination of a firewall-mark service",
			Op:    newDst(fwm, dst("10.0.1.2", 0, 1)),
			Check: has("fwmark 1 inet -> 10.0.1.2:0 masq weight 1 thresholds 0-0")},
		{Name: "tunnelled IPv6 destination",
			Op:    newDst(v6, withDst(dst("2001:db8:1::2", 80, 1), func(d *moby.Destination) { d.ConnectionFlags = moby.ConnectionFlagTunnel })),
			Check: has("tcp [2001:db8::1]:80 -> [2001:db8:1::2]:80 tunnel weight 1 thresholds 0-0")},
		{Name: "multicast destination", Op: newDst(v4, dst("224.0.0.1", 80, 1)), Want: unix.EINVAL},
		{Name: "broadcast destination", Op: newDst(v4, dst("255.255.255.255", 80, 1)), Want: unix.EINVAL},
		{Name: "unspecified destination", Op: newDst(v4, dst("0.0.0.0", 80, 1)), Want: unix.EINVAL},
		{Name: "destination in 0.0.0.0/8 other than 0.0.0.0",
			Op:    newDst(v4, dst("0.0.0.1", 80, 1)),
			Check: has("tcp 10.0.0.1:80 -> 0.0.0.1:80 masq weight 1 thresholds 0-0")},
		{Name: "loopback destination",
			Op:    newDst(v4, dst("127.0.0.1", 80, 1)),
			Check: has("tcp 10.0.0.1:80 -> 127.0.0.1:80 masq weight 1 thresholds 0-0")},
		{Name: "IPv6 multicast destination", Op: newDst(v6, dst("ff02::1", 80, 1)), Want: unix.EINVAL},
		{Name: "IPv6 link-local destination", Op: newDst(v6, dst("fe80::1", 80, 1)), Want: unix.EINVAL},
		{Name: "IPv6 unspecified destination", Op: newDst(v6, dst("::", 80, 1)), Want: unix.EINVAL},
		// moby sends no destination family, so the kernel takes the
		// service's and reads the address in it; its mixed-family rule
		// (only tunnelling may cross families) is out of moby's reach.
		{Name: "IPv6 destination in an IPv4 service is read as its first four bytes",
			Op:    newDst(v4, dst("2001:db8::2", 80, 1)),
			Check: has("tcp 10.0.0.1:80 -> 32.1.13.184:80 masq weight 1 thresholds 0-0")},
		{Name: "tunnelled IPv6 destination in an IPv4 service is read as its first four bytes",
			Op:    newDst(v4, withDst(dst("2001:db8::2", 80, 1), func(d *moby.Destination) { d.ConnectionFlags = moby.ConnectionFlagTunnel })),
			Check: has("tcp 10.0.0.1:80 -> 32.1.13.184:80 tunnel weight 1 thresholds 0-0")},
		{Name: "IPv4 destination in an IPv6 service is read as four bytes and zeros",
			Op:    newDst(v6, dst("10.0.1.2", 80, 1)),
			Check: has("tcp [2001:db8::1]:80 -> [a00:102::]:80 masq weight 1 thresholds 0-0")},
		{Name: "an IPv6 destination whose first four bytes are an IPv4 one already there",
			Op: newDst(v4, dst("a00:101::", 80, 1)), Want: unix.EEXIST},
	}
	for i, name := range Schedulers() {
		s := with(svc4("10.0.0.3", uint16(1000+i)), func(s *moby.Service) { s.SchedName = name })
		rules = append(rules, Rule{Name: "scheduler " + name, Op: newSvc(s),
			Check: has(fmt.Sprintf("tcp 10.0.0.3:%d %s flags 0x2 timeout 0 netmask 0xffffffff", 1000+i, name))})
	}
	return rules
}

// Dump returns k's table as sorted lines, one per service and one per
// destination, each destination line starting with its service's name.
// It shows every field a reconciler compares and none that traffic
// changes (counters, connections).
func Dump(k ipvs.Kernel) ([]string, error) {
	svcs, err := k.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	var out []string
	for _, s := range svcs {
		id := svcID(s)
		if s.FWMark != 0 {
			id += fmt.Sprintf(" proto %d addr %v port %d", s.Protocol, s.Address, s.Port)
		}
		out = append(out, fmt.Sprintf("%s %s flags %#x timeout %d netmask %#x", id, s.SchedName, s.Flags, s.Timeout, s.Netmask))
		ds, err := k.GetDestinations(s)
		if err != nil {
			return nil, fmt.Errorf("list destinations of %s: %w", svcID(s), err)
		}
		for _, d := range ds {
			out = append(out, fmt.Sprintf("%s -> %s %s weight %d thresholds %d-%d", svcID(s),
				netip.AddrPortFrom(ipAddr(d.Address), d.Port), fwdName(d.ConnectionFlags), d.Weight, d.LowerThreshold, d.UpperThreshold))
		}
	}
	slices.Sort(out)
	return out, nil
}

func svcID(s *moby.Service) string {
	if s.FWMark != 0 {
		fam := "af" + strconv.Itoa(int(s.AddressFamily))
		switch s.AddressFamily {
		case unix.AF_INET:
			fam = "inet"
		case unix.AF_INET6:
			fam = "inet6"
		}
		return fmt.Sprintf("fwmark %d %s", s.FWMark, fam)
	}
	proto := "proto" + strconv.Itoa(int(s.Protocol))
	switch s.Protocol {
	case unix.IPPROTO_TCP:
		proto = "tcp"
	case unix.IPPROTO_UDP:
		proto = "udp"
	case unix.IPPROTO_SCTP:
		proto = "sctp"
	}
	return proto + " " + netip.AddrPortFrom(ipAddr(s.Address), s.Port).String()
}

func ipAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func fwdName(flags uint32) string {
	switch flags & moby.ConnectionFlagFwdMask {
	case moby.ConnectionFlagMasq:
		return "masq"
	case moby.ConnectionFlagLocalNode:
		return "local"
	case moby.ConnectionFlagTunnel:
		return "tunnel"
	case moby.ConnectionFlagDirectRoute:
		return "route"
	}
	return fmt.Sprintf("fwd%d", flags&moby.ConnectionFlagFwdMask)
}
