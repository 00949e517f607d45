package main

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
)

// buildReport fills rep's services from the config (what lvsha manages),
// the last desired table (what it asked for), the kernel's table (what is
// there, with counters) and the health engine's states.
func buildReport(rep *Report, cfg *conf.Config, desired []ipvs.Service, kernel []ipvs.ServiceStatus, states map[health.Key]health.Status) {
	inKernel := make(map[ipvs.ServiceKey]*ipvs.ServiceStatus, len(kernel))
	for i := range kernel {
		inKernel[kernel[i].Service.Key()] = &kernel[i]
	}
	byName := make(map[string]*conf.VirtualServer, len(cfg.VirtualServers))
	for i := range cfg.VirtualServers {
		byName[cfg.VirtualServers[i].Name] = &cfg.VirtualServers[i]
	}
	managed := make(map[ipvs.ServiceKey]bool, len(desired))
	for _, want := range desired {
		// desired may lag a reload by one sync; show what it describes.
		vs := byName[want.Name]
		if vs == nil {
			continue
		}
		k := want.Key()
		managed[k] = true
		sr := ServiceReport{
			Name:        vs.Name,
			Service:     k.String(),
			Scheduler:   want.Scheduler,
			Flags:       strings.TrimSpace(want.Options()),
			SorryActive: want.SorryActive(),
			FWMark:      vs.FWMark,
		}
		if vs.FWMark == 0 {
			sr.Protocol, sr.Address, sr.Port = vs.Protocol, vs.Address.Addr().String(), vs.Address.Port()
		}
		have := inKernel[k]
		kdest := map[netip.AddrPort]*ipvs.DestinationStatus{}
		if have != nil {
			sr.InKernel = true
			sr.Stats = counters(have.Stats)
			for j := range have.Destinations {
				kdest[have.Destinations[j].Destination.Key()] = &have.Destinations[j]
			}
		}
		// Every configured real server is listed, including those on_down =
		// "remove" took out of the kernel: the operator asks about them most.
		for _, rs := range vs.RealServers {
			st, ok := states[health.Key{VirtualServer: vs.Name, RealServer: rs.Address}]
			rr := RealReport{Address: rs.Address.String(), Forward: rs.Forwarding, Weight: rs.Weight, Health: "unchecked"}
			if ok {
				rr.Probe, rr.Transitions = st.Probe, st.Transitions
				if rs.Check != nil {
					rr.Health, rr.Since = "down", st.Since
					if st.Up {
						rr.Health = "up"
					}
				}
				if st.Checked {
					rr.Last = &ProbeResult{OK: st.Last.OK, Message: st.Last.Message, Code: st.Last.Code,
						LatencyMS: float64(st.Last.Latency.Microseconds()) / 1000, At: st.Last.At}
					if st.Last.Err != nil && rr.Last.Message == "" {
						rr.Last.Message = st.Last.Err.Error()
					}
				}
			}
			if kd := kdest[destKey(want, rs.Address)]; kd != nil {
				w := kd.Destination.Weight
				rr.KernelWeight, rr.Forward = &w, kd.Destination.Forwarding.String()
				rr.ActiveConn, rr.InactiveConn = kd.ActiveConns, kd.InactConns
				rr.Stats = counters(kd.Stats)
			}
			sr.RealServers = append(sr.RealServers, rr)
		}
		for _, d := range want.Destinations {
			if !d.Sorry {
				continue
			}
			rr := RealReport{Address: d.String(), Forward: d.Forwarding.String(), Sorry: true, Weight: d.Weight, Health: "sorry"}
			if d.Standby {
				rr.Health = "sorry standby"
			}
			if kd := kdest[d.Key()]; kd != nil {
				w := kd.Destination.Weight
				rr.KernelWeight = &w
				rr.ActiveConn, rr.InactiveConn = kd.ActiveConns, kd.InactConns
				rr.Stats = counters(kd.Stats)
			}
			sr.RealServers = append(sr.RealServers, rr)
		}
		rep.Services = append(rep.Services, sr)
	}
	for _, s := range kernel {
		if k := s.Service.Key(); !managed[k] {
			rep.Foreign = append(rep.Foreign, k.String())
		}
	}
	slices.Sort(rep.Foreign)
}

func counters(s ipvs.Stats) Counters {
	return Counters{Conns: s.Conns, InPkts: s.InPkts, OutPkts: s.OutPkts, InBytes: s.InBytes, OutBytes: s.OutBytes,
		CPS: s.CPS, InPPS: s.InPPS, OutPPS: s.OutPPS, InBPS: s.InBPS, OutBPS: s.OutBPS}
}

// destKey is the kernel's key of real server rs in service s: the port
// lvsha gave it, which for DR and TUN is the virtual port, and for a real
// server given without a port the service's.
func destKey(s ipvs.Service, rs netip.AddrPort) netip.AddrPort {
	key := rs
	for _, d := range s.Destinations {
		if k := d.Key(); k.Addr() == rs.Addr() && !d.Sorry && (rs.Port() == 0 || k.Port() == rs.Port()) {
			key = k
		}
	}
	return key
}
