// Package ipvs turns a configuration plus health verdicts into the desired
// IPVS table (Desired, a pure function) and makes the kernel match it with
// the fewest netlink writes (Reconciler). It never flushes the kernel table
// and never deletes a service or destination to change it, so established
// connections survive reloads, restarts and health flaps.
//
// The kernel is reached through the small Kernel interface: the table
// through moby/ipvs, and the connection sync daemons (Daemons, which
// `ipvsadm --start-daemon` starts) over IPVS generic netlink, which moby
// numbers but does not implement. Handle (from Open) is the real one;
// ipvs/ipvstest holds a stateful fake of it.
package ipvs

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// Flags are IPVS service flags (IP_VS_SVC_F_* in linux/ip_vs.h). moby/ipvs
// passes them through as a bare uint32 and defines none of them.
type Flags uint32

// Service flags, values from include/uapi/linux/ip_vs.h.
const (
	FlagPersistent Flags = 0x0001 // IP_VS_SVC_F_PERSISTENT
	// FlagHashed is set by the kernel on every service it holds; it is
	// never desired and is masked out when comparing.
	FlagHashed    Flags = 0x0002 // IP_VS_SVC_F_HASHED
	FlagOnePacket Flags = 0x0004 // IP_VS_SVC_F_ONEPACKET
	FlagSched1    Flags = 0x0008 // IP_VS_SVC_F_SCHED1
	FlagSched2    Flags = 0x0010 // IP_VS_SVC_F_SCHED2
	FlagSched3    Flags = 0x0020 // IP_VS_SVC_F_SCHED3

	// The scheduler flags mean different things per scheduler; these are
	// the names ipvsadm -b accepts.
	FlagSHFallback = FlagSched1 // IP_VS_SVC_F_SCHED_SH_FALLBACK
	FlagSHPort     = FlagSched2 // IP_VS_SVC_F_SCHED_SH_PORT
	FlagMHFallback = FlagSched1 // IP_VS_SVC_F_SCHED_MH_FALLBACK
	FlagMHPort     = FlagSched2 // IP_VS_SVC_F_SCHED_MH_PORT

	flagsSched = FlagSched1 | FlagSched2 | FlagSched3
)

// Forwarding is a destination's forwarding method (the
// IP_VS_CONN_F_FWD_MASK bits of its connection flags).
type Forwarding uint32

// Forwarding methods, values from include/uapi/linux/ip_vs.h.
const (
	ForwardMasq        Forwarding = 0 // IP_VS_CONN_F_MASQ: NAT
	ForwardLocal       Forwarding = 1 // IP_VS_CONN_F_LOCALNODE
	ForwardTunnel      Forwarding = 2 // IP_VS_CONN_F_TUNNEL
	ForwardDirectRoute Forwarding = 3 // IP_VS_CONN_F_DROUTE

	forwardMask = 0x0007 // IP_VS_CONN_F_FWD_MASK
)

// String returns the name ipvsadm -L prints in its Forward column.
func (f Forwarding) String() string {
	switch f & forwardMask {
	case ForwardMasq:
		return "Masq"
	case ForwardLocal:
		return "Local"
	case ForwardTunnel:
		return "Tunnel"
	case ForwardDirectRoute:
		return "Route"
	}
	return "fwd-" + strconv.Itoa(int(f&forwardMask))
}

// Schedulers returns the IPVS scheduler names lvsha programs. They are
// conf's, so that a scheduler the configuration accepts is one the
// reconciler knows; ipvstest keeps its own copy on purpose, to catch a
// name the kernel lacks.
func Schedulers() []string { return conf.Schedulers() }

// Service is one IPVS virtual service as lvsha wants it (from Desired) or
// as the kernel holds it (read back). Identity is Key(); the rest are
// settings.
type Service struct {
	// Name is the virtual server's name in the configuration; empty for a
	// service read from the kernel.
	Name string
	// Family is unix.AF_INET or unix.AF_INET6.
	Family uint16
	// Protocol is unix.IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP; 0 for a
	// firewall-mark service, for which the kernel reports none.
	Protocol uint16
	Address  netip.Addr // zero for a firewall-mark service
	Port     uint16     // 0 for a firewall-mark service
	FWMark   uint32     // non-zero selects a firewall-mark service

	Scheduler string
	Flags     Flags
	// Timeout is the persistence timeout in seconds.
	Timeout uint32
	// Netmask groups persistent clients, encoded as the kernel takes it:
	// for IPv4 a mask in network byte order as moby passes it through
	// (see Netmask4), for IPv6 a prefix length.
	Netmask uint32

	Destinations []Destination
}

// Destination is one real server of a Service.
type Destination struct {
	Address        netip.Addr
	Port           uint16
	Weight         int
	Forwarding     Forwarding
	UpperThreshold uint32
	LowerThreshold uint32
	// Sorry marks the sorry server added by Desired; the kernel knows no
	// such thing, so it is false for destinations read back.
	Sorry bool
	// Standby marks a sorry server kept at weight 0 while not serving
	// (sorry_inhibit); SorryActive does not count it.
	Standby bool
}

// ServiceKey identifies a service in the kernel: (family, fwmark) for a
// firewall-mark service, else (family, protocol, address, port).
type ServiceKey struct {
	Family   uint16
	Protocol uint16
	Address  netip.Addr
	Port     uint16
	FWMark   uint32
}

// Key returns the service's kernel identity.
func (s Service) Key() ServiceKey {
	if s.FWMark != 0 {
		return ServiceKey{Family: s.Family, FWMark: s.FWMark}
	}
	return ServiceKey{Family: s.Family, Protocol: s.Protocol, Address: s.Address.Unmap(), Port: s.Port}
}

// String names the service the way ipvsadm -Ln starts its line for it,
// e.g. "TCP  10.0.0.1:80 rr", "FWM  1 rr", "FWM  1 IPv6 rr".
func (s Service) String() string {
	return s.Key().String() + " " + s.Scheduler
}

// String is the service's identity in ipvsadm's notation, e.g.
// "TCP  10.0.0.1:80", "UDP  [2001:db8::1]:53", "FWM  7".
func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		if k.Family == unix.AF_INET6 {
			return fmt.Sprintf("FWM  %d IPv6", k.FWMark)
		}
		return fmt.Sprintf("FWM  %d", k.FWMark)
	}
	return fmt.Sprintf("%-4s %s", protocolName(k.Protocol), netip.AddrPortFrom(k.Address, k.Port))
}

// Key returns the destination's identity within its service.
func (d Destination) Key() netip.AddrPort {
	return netip.AddrPortFrom(d.Address.Unmap(), d.Port)
}

// String returns "10.0.0.2:80" or "[2001:db8::2]:80".
func (d Destination) String() string {
	return d.Key().String()
}

// SorryActive reports whether the sorry server is among the destinations.
func (s Service) SorryActive() bool {
	for _, d := range s.Destinations {
		if d.Sorry && !d.Standby {
			return true
		}
	}
	return false
}

// protocolName is ipvsadm's protocol_name().
func protocolName(p uint16) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "TCP"
	case unix.IPPROTO_UDP:
		return "UDP"
	case unix.IPPROTO_SCTP:
		return "SCTP"
	}
	return "?"
}

// Netmask4 encodes an IPv4 persistence prefix length the way the kernel
// wants it through moby. The kernel reads IPVS_SVC_ATTR_NETMASK with
// nla_get_be32 (mask bytes in network order on the wire) while moby writes
// and reads Service.Netmask in host byte order, so the value is the mask's
// bytes read as a native-endian integer: /32 is 0xffffffff, /24 is
// 0x00ffffff on little-endian hosts. ipvsadm does the same (inet_aton into
// a u32, sent with nla_put_u32).
func Netmask4(prefixLen int) uint32 {
	prefixLen = max(0, min(32, prefixLen))
	return binary.NativeEndian.Uint32(net.CIDRMask(prefixLen, 32))
}

// netmask4Addr decodes a Netmask4 value to the dotted mask ipvsadm prints.
func netmask4Addr(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// schedFlagNames is ipvsadm's print_sched_flags(): the names depend on the
// scheduler.
func schedFlagNames(sched string, f Flags) string {
	var names []string
	switch sched {
	case "sh", "mh":
		if f&FlagSched1 != 0 {
			names = append(names, sched+"-fallback")
		}
		if f&FlagSched2 != 0 {
			names = append(names, sched+"-port")
		}
	default:
		for i, fl := range []Flags{FlagSched1, FlagSched2, FlagSched3} {
			if f&fl != 0 {
				names = append(names, "flag-"+strconv.Itoa(i+1))
			}
		}
	}
	return strings.Join(names, ",")
}

// toMoby builds the moby request for the service (destinations excluded).
func (s Service) toMoby() *moby.Service {
	ms := &moby.Service{
		AddressFamily: s.Family,
		FWMark:        s.FWMark,
		SchedName:     s.Scheduler,
		Flags:         uint32(s.Flags &^ FlagHashed),
		Timeout:       s.Timeout,
		Netmask:       s.Netmask,
	}
	if s.FWMark == 0 {
		ms.Protocol = s.Protocol
		ms.Address = s.Address.Unmap().AsSlice()
		ms.Port = s.Port
	}
	return ms
}

// serviceFromMoby converts a kernel service as moby parsed it.
func serviceFromMoby(ms *moby.Service) Service {
	s := Service{
		Family:    ms.AddressFamily,
		Protocol:  ms.Protocol,
		Port:      ms.Port,
		FWMark:    ms.FWMark,
		Scheduler: ms.SchedName,
		Flags:     Flags(ms.Flags),
		Timeout:   ms.Timeout,
		Netmask:   ms.Netmask,
	}
	if ms.FWMark != 0 {
		// The kernel reports no protocol, address or port for a
		// firewall-mark service (ip_vs_genl_fill_service).
		s.Protocol, s.Port = 0, 0
	} else {
		s.Address = addrFromIP(ms.Address)
	}
	return s
}

func (d Destination) toMoby() *moby.Destination {
	return &moby.Destination{
		Address:         d.Address.Unmap().AsSlice(),
		Port:            d.Port,
		Weight:          d.Weight,
		ConnectionFlags: uint32(d.Forwarding & forwardMask),
		UpperThreshold:  d.UpperThreshold,
		LowerThreshold:  d.LowerThreshold,
	}
}

// asRead is d as the kernel returns it once written: what toMoby sends,
// read back by destinationFromMoby, without the round trip.
func (d Destination) asRead() Destination {
	return Destination{
		Address:        d.Address.Unmap(),
		Port:           d.Port,
		Weight:         d.Weight,
		Forwarding:     d.Forwarding & forwardMask,
		UpperThreshold: d.UpperThreshold,
		LowerThreshold: d.LowerThreshold,
	}
}

func destinationFromMoby(md *moby.Destination) Destination {
	return Destination{
		Address:        addrFromIP(md.Address),
		Port:           md.Port,
		Weight:         md.Weight,
		Forwarding:     Forwarding(md.ConnectionFlags & forwardMask),
		UpperThreshold: md.UpperThreshold,
		LowerThreshold: md.LowerThreshold,
	}
}

func addrFromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}
