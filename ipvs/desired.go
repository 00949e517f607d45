package ipvs

import (
	"net/netip"
	"sync"
	"time"

	"github.com/lvsha/lvsha/conf"
	"golang.org/x/sys/unix"
)

// Desired computes the table the kernel should hold for cfg, given which
// real servers are up. It is DesiredFrom with no memory of earlier sorry
// server decisions: the sorry server serves exactly when the up weight is
// below quorum. Use a SorryMemory to get hysteresis.
func Desired(cfg *conf.Config, up func(vs string, rs netip.AddrPort) bool) []Service {
	return DesiredFrom(cfg, up, nil)
}

// DesiredFrom computes the desired table; it is pure.
//
// up reports whether real server rs (its address as configured) of virtual
// server vs passes its checks; nil means every real server is up.
// sorryWasActive reports whether the previous decision for vs had the sorry
// server serving; nil means never. It is what makes hysteresis possible.
//
// Rules, per virtual server:
//   - an up real server gets its configured weight;
//   - a down one gets weight 0 when on_down is "weight0" (drained:
//     established connections continue) and is left out when it is
//     "remove";
//   - the sorry server is added, with SorryWeight, while the summed
//     configured weight of the up real servers is below Quorum; once added
//     it stays until that weight reaches Quorum+Hysteresis. Meanwhile it
//     replaces the real servers still up: they are treated as down
//     (weight 0 or left out, by on_down), as keepalived does, so that below
//     quorum every new client sees the sorry server.
func DesiredFrom(cfg *conf.Config, up func(vs string, rs netip.AddrPort) bool, sorryWasActive func(vs string) bool) []Service {
	return DesiredWeighted(cfg, up, nil, sorryWasActive)
}

// WeightFunc reports the weight a real server's check asked for
// (dynamic_weight); ok false means its configured weight applies.
type WeightFunc func(vs string, rs netip.AddrPort) (weight int, ok bool)

// DesiredWeighted is DesiredFrom where weight, when not nil, replaces the
// configured weight of the real servers that are up and for which it
// reports one; the quorum counts those weights.
func DesiredWeighted(cfg *conf.Config, up func(vs string, rs netip.AddrPort) bool, weight WeightFunc, sorryWasActive func(vs string) bool) []Service {
	if cfg == nil {
		return nil
	}
	out := make([]Service, 0, len(cfg.VirtualServers))
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		was := sorryWasActive != nil && sorryWasActive(vs.Name)
		out = append(out, desiredService(vs, up, weight, was))
	}
	return out
}

func desiredService(vs *conf.VirtualServer, up func(string, netip.AddrPort) bool, weight WeightFunc, sorryWas bool) Service {
	s := Service{
		Name:      vs.Name,
		Family:    family(vs),
		Scheduler: vs.Scheduler,
		FWMark:    vs.FWMark,
	}
	if vs.FWMark == 0 {
		s.Protocol = protocol(vs.Protocol)
		s.Address = vs.Address.Addr().Unmap()
		s.Port = vs.Address.Port()
	}
	if vs.Persistence > 0 {
		s.Flags |= FlagPersistent
		s.Timeout = ceilSeconds(vs.Persistence)
	}
	if vs.OnePacket {
		s.Flags |= FlagOnePacket
	}
	for _, f := range vs.SchedulerFlags {
		switch f {
		case "sh-fallback", "mh-fallback":
			s.Flags |= FlagSched1
		case "sh-port", "mh-port":
			s.Flags |= FlagSched2
		}
	}
	// The kernel keeps whatever netmask it is given even without
	// persistence, and rejects an IPv6 one outside 1..128, so always send a
	// valid one: the values ipvsadm and kube-proxy send by default unless
	// configured otherwise.
	if s.Family == unix.AF_INET6 {
		n := vs.PersistenceNetmask
		if n < 1 || n > 128 {
			n = 128
		}
		s.Netmask = uint32(n)
	} else {
		n := vs.PersistenceNetmask
		if n < 1 || n > 32 {
			n = 32
		}
		s.Netmask = Netmask4(n)
	}

	seen := make(map[netip.AddrPort]bool, len(vs.RealServers)+1)
	// Only a sorry server taking over reads it: not kept for the others.
	var removeIfDown map[netip.AddrPort]bool
	if vs.SorryServer.IsValid() {
		removeIfDown = make(map[netip.AddrPort]bool, len(vs.RealServers))
	}
	for _, rs := range vs.RealServers {
		fwd := forwarding(rs.Forwarding, vs.Forwarding)
		d := Destination{
			Address:        rs.Address.Addr().Unmap(),
			Port:           destPort(vs, rs.Address.Port(), fwd),
			Weight:         rs.Weight,
			Forwarding:     fwd,
			UpperThreshold: rs.UpperThreshold,
			LowerThreshold: rs.LowerThreshold,
		}
		if seen[d.Key()] {
			continue // conf rejects duplicates; never send the kernel two
		}
		onDown := rs.OnDown
		if onDown == "" {
			onDown = vs.OnDown
		}
		if w, ok := servingWeight(vs.Name, rs, up, weight); ok {
			d.Weight = w
		} else if onDown == "remove" {
			continue
		} else {
			d.Weight = 0
		}
		seen[d.Key()] = true
		if removeIfDown != nil {
			removeIfDown[d.Key()] = onDown == "remove"
		}
		s.Destinations = append(s.Destinations, d)
	}

	active := vs.SorryServer.IsValid() && BelowQuorum(UpWeight(vs, up, weight), vs.Quorum, vs.Hysteresis, sorryWas)
	if vs.SorryServer.IsValid() && !active && vs.SorryInhibit {
		fwd := forwarding("", vs.Forwarding)
		d := Destination{Address: vs.SorryServer.Addr().Unmap(), Port: destPort(vs, vs.SorryServer.Port(), fwd), Forwarding: fwd,
			Sorry: true, Standby: true}
		if !seen[d.Key()] {
			s.Destinations = append(s.Destinations, d)
		}
	}
	if active {
		kept := s.Destinations[:0]
		for _, d := range s.Destinations {
			if d.Weight > 0 {
				if removeIfDown[d.Key()] {
					delete(seen, d.Key())
					continue
				}
				d.Weight = 0
			}
			kept = append(kept, d)
		}
		s.Destinations = kept
		fwd := forwarding("", vs.Forwarding)
		d := Destination{
			Address:    vs.SorryServer.Addr().Unmap(),
			Port:       destPort(vs, vs.SorryServer.Port(), fwd),
			Weight:     vs.SorryWeight,
			Forwarding: fwd,
			Sorry:      true,
		}
		// A sorry server that is also a listed real server is already in
		// the table, at weight 0 by now; the kernel holds one destination
		// per address and port, so that one serves as the sorry server.
		if !seen[d.Key()] {
			s.Destinations = append(s.Destinations, d)
		} else {
			for i := range s.Destinations {
				if s.Destinations[i].Key() == d.Key() {
					s.Destinations[i].Weight, s.Destinations[i].Sorry = d.Weight, true
				}
			}
		}
	}
	return s
}

// destPort is the destination port the kernel should hold. A real server
// given without a port (0) takes the virtual server's. Direct routing and
// tunnelling cannot change the destination port, so ipvsadm forces it to
// the service port for those (ipvsadm.c: "The destination port must be
// equal to service port if the IP_VS_CONN_F_TUNNEL or IP_VS_CONN_F_DROUTE
// is set"); do the same, so a table written by ipvsadm is adopted
// unchanged. Firewall-mark services have no port: keep what was given.
func destPort(vs *conf.VirtualServer, port uint16, fwd Forwarding) uint16 {
	if vs.FWMark != 0 {
		return port
	}
	if port == 0 || fwd == ForwardDirectRoute || fwd == ForwardTunnel {
		return vs.Address.Port()
	}
	return port
}

func forwarding(rs, vs string) Forwarding {
	f := rs
	if f == "" {
		f = vs
	}
	switch f {
	case "dr":
		return ForwardDirectRoute
	case "tun":
		return ForwardTunnel
	}
	return ForwardMasq
}

func family(vs *conf.VirtualServer) uint16 {
	switch vs.Family {
	case "inet6":
		return unix.AF_INET6
	case "inet":
		return unix.AF_INET
	}
	if vs.FWMark == 0 && vs.Address.Addr().Unmap().Is6() {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

func protocol(p string) uint16 {
	switch p {
	case "udp":
		return unix.IPPROTO_UDP
	case "sctp":
		return unix.IPPROTO_SCTP
	}
	return unix.IPPROTO_TCP
}

// ceilSeconds rounds up so that a sub-second persistence never becomes 0,
// which would silently turn persistence off.
func ceilSeconds(d time.Duration) uint32 {
	s := (d + time.Second - 1) / time.Second
	return uint32(min(s, 1<<32-1))
}

// SorryMemory is the sorry server's memory: per virtual server, whether
// the sorry server was serving (quorum lost) after the previous
// computation, the one bit of state quorum hysteresis needs. The zero
// value is ready to use; it is safe for concurrent use.
type SorryMemory struct {
	mu     sync.Mutex
	active map[string]bool
}

// Desired computes the table with DesiredFrom, feeding it the previous
// decisions, and records the new ones. Virtual servers no longer in cfg
// are forgotten.
func (m *SorryMemory) Desired(cfg *conf.Config, up func(vs string, rs netip.AddrPort) bool) []Service {
	return m.DesiredWeighted(cfg, up, nil)
}

// DesiredWeighted is Desired with dynamic weights (see DesiredWeighted).
func (m *SorryMemory) DesiredWeighted(cfg *conf.Config, up func(vs string, rs netip.AddrPort) bool, weight WeightFunc) []Service {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.active
	out := DesiredWeighted(cfg, up, weight, func(vs string) bool { return prev[vs] })
	m.active = make(map[string]bool, len(out))
	for _, s := range out {
		if s.SorryActive() {
			m.active[s.Name] = true
		}
	}
	return out
}

// SorryActive reports the last decision for virtual server vs.
func (m *SorryMemory) SorryActive(vs string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active[vs]
}
