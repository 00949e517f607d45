package health

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/lvsha/lvsha/conf"
)

// A probe the director sends to one of its own virtual services never
// reaches the real server it is meant for: IPVS hooks locally generated
// packets too (NF_INET_LOCAL_OUT, ip_vs_in_hook via ip_vs_local_request4/6
// in net/netfilter/ipvs/ip_vs_core.c), looks the SYN or datagram up by
// (protocol, destination address, port) exactly as for a client, and
// schedules it over that service's real servers. In the seed's own setup
// (VIP = the director's address, the director one of the real servers) a
// round robin then sends every other probe of the director's server to its
// neighbour, which answers, so fall is never reached while half of the
// clients fail.
//
// The only per-socket exemption the hook has is IP_NODEFRAG, which the
// kernel accepts on raw sockets only (ENOPROTOOPT on a stream or datagram
// socket), and a packet let through at LOCAL_OUT is looked up again at
// LOCAL_IN when it comes back in over lo. So a probe with the same
// destination address and port cannot avoid IPVS; it has to use another
// destination. When the address is the director's own, the loopback
// address at the same port reaches the same listening socket whenever that
// socket is bound to the wildcard address (apache's and nginx's default
// "Listen 80"). A server bound only to the VIP refuses the loopback probe,
// so it is reported down rather than healthy through someone else: that is
// the safe failure, and the operator sets connect_address. When the address
// is not the director's own, no destination reaches that server from here
// without IPVS, and the probe is refused outright (Blocked).

// SelfProbe is a real server whose probe target is a virtual service of the
// same configuration.
type SelfProbe struct {
	// VirtualServer owns the real server; VSIndex and RSIndex locate it in
	// the configuration (virtual_server[VSIndex].real_server[RSIndex]).
	VirtualServer    string
	VSIndex, RSIndex int
	RealServer       netip.AddrPort
	// Target is where the check would connect: the real server's address
	// or connect_address, at its port or connect_port.
	Target netip.AddrPort
	// Protocol is the transport the probe uses, "tcp" or "udp".
	Protocol string
	// Service names the virtual server Target belongs to.
	Service string
	// Via is where the probe connects instead: loopback at Target's port
	// when Target's address is the director's own. Invalid when it is not:
	// then the probe cannot reach the server and it is reported down.
	Via netip.AddrPort
}

// Blocked reports that no probe from this director can reach the server.
func (p SelfProbe) Blocked() bool { return !p.Via.IsValid() }

// Reason says, for logs and status, why the probe does not go to Target.
func (p SelfProbe) Reason() string {
	if p.Blocked() {
		return fmt.Sprintf("%s %s is virtual service %q of this configuration and not an address of this director: IPVS here balances a probe sent to it over %q's real servers, so the probe cannot reach this real server; set check.connect_address to an address of that server that is not a virtual service",
			p.Protocol, p.Target, p.Service, p.Service)
	}
	return fmt.Sprintf("%s %s is virtual service %q of this director: IPVS would balance a probe sent to it over %q's real servers, so the probe goes to %s (a server listening only on %s is not reached there and is reported down: listen on the wildcard address or set check.connect_address)",
		p.Protocol, p.Target, p.Service, p.Service, p.Via, p.Target.Addr())
}

// probeProtocol is the transport a check of type typ sends its probe
// over; "" for checks IPVS does not balance: icmp (IPVS schedules TCP, UDP
// and SCTP only) and exec (its command may connect anywhere).
func probeProtocol(typ string) string {
	switch typ {
	case "tcp", "http", "https", "smtp":
		return "tcp"
	case "udp", "dns":
		return "udp"
	}
	return ""
}

// FindSelfProbes returns the real servers of cfg whose probe target is one
// of cfg's virtual services, in configuration order. local reports whether
// an address is one of this director's.
func FindSelfProbes(cfg *conf.Config, local func(netip.Addr) bool) []SelfProbe {
	if cfg == nil {
		return nil
	}
	var out []SelfProbe
	for i, vs := range cfg.VirtualServers {
		for j, rs := range vs.RealServers {
			c := rs.Check
			if c == nil {
				continue
			}
			proto := probeProtocol(c.Type)
			if proto == "" {
				continue
			}
			target, ok := checkTarget(rs.Address, c)
			if !ok {
				continue
			}
			svc, ok := serviceAt(cfg, proto, target)
			if !ok {
				continue
			}
			p := SelfProbe{VirtualServer: vs.Name, VSIndex: i, RSIndex: j, RealServer: rs.Address,
				Target: target, Protocol: proto, Service: svc}
			if local(target.Addr()) {
				lo := netip.IPv6Loopback()
				if target.Addr().Is4() {
					lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
				}
				p.Via = netip.AddrPortFrom(lo, target.Port())
			}
			out = append(out, p)
		}
	}
	return out
}

// checkTarget is the endpoint c probes for rs, as probeAddr computes it.
func checkTarget(rs netip.AddrPort, c *conf.Check) (netip.AddrPort, bool) {
	s, err := probeAddr(rs, c)
	if err != nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// serviceAt names the virtual server of cfg that IPVS would match a packet
// to target with: the same protocol and address, and the same port or port
// 0 (a persistent catch-all service matches every port, ip_vs_service_find).
// Fwmark services match on the packet's mark, which lvsha cannot see.
func serviceAt(cfg *conf.Config, proto string, target netip.AddrPort) (string, bool) {
	for _, vs := range cfg.VirtualServers {
		if vs.FWMark != 0 || vs.Protocol != proto || vs.Address.Addr().Unmap() != target.Addr() {
			continue
		}
		if p := vs.Address.Port(); p == target.Port() || p == 0 {
			return vs.Name, true
		}
	}
	return "", false
}

// RedirectSelfProbes returns a copy of cfg in which the check of every
// probe of sp that is not blocked connects to its Via address, keeping
// the check's port. An http or https check keeps naming Target in its
// Host header (and, for https, in the name it verifies the certificate
// against), so a server with name-based virtual hosts answers the probe
// as it answers a request to Target. Blocked probes are left as they
// are: the caller reports them down without running them. cfg is not
// modified.
func RedirectSelfProbes(cfg *conf.Config, sp []SelfProbe) *conf.Config {
	if cfg == nil || len(sp) == 0 {
		return cfg
	}
	out := *cfg
	out.VirtualServers = make([]conf.VirtualServer, len(cfg.VirtualServers))
	copy(out.VirtualServers, cfg.VirtualServers)
	copied := make(map[int]bool)
	for _, p := range sp {
		if p.Blocked() || p.VSIndex >= len(out.VirtualServers) {
			continue
		}
		vs := &out.VirtualServers[p.VSIndex]
		if !copied[p.VSIndex] {
			vs.RealServers = append([]conf.RealServer(nil), vs.RealServers...)
			copied[p.VSIndex] = true
		}
		if p.RSIndex >= len(vs.RealServers) || vs.RealServers[p.RSIndex].Check == nil {
			continue
		}
		// Checks may be shared by every real server inheriting the
		// virtual server's: change a copy. Its slices are not written.
		c := *vs.RealServers[p.RSIndex].Check
		c.ConnectAddress = p.Via.Addr()
		c.ConnectPort = p.Via.Port()
		if c.Type == "http" || c.Type == "https" {
			if c.Host == "" {
				c.Host = net.JoinHostPort(p.Target.Addr().String(), strconv.Itoa(int(p.Target.Port())))
			}
			if c.Type == "https" && c.SNI == "" {
				// An IP as ServerName is verified against the
				// certificate's IP SANs and not sent as SNI, as when the
				// probe went to Target.
				c.SNI = p.Target.Addr().String()
			}
		}
		vs.RealServers[p.RSIndex].Check = &c
	}
	return &out
}
