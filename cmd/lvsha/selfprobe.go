package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
)

// localAddrs reads this network namespace's addresses: the ones a probe
// from this process is delivered to locally.
func localAddrs() (func(netip.Addr) bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("read local addresses: %w", err)
	}
	set := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			set[p.Addr().Unmap()] = true
		}
	}
	return func(a netip.Addr) bool { return set[a.Unmap().WithZone("")] }, nil
}

// selfProber is the health engine as the daemon uses it, with the
// director's probes of its own virtual services taken out of IPVS's way
// (see health.FindSelfProbes): a probe whose target is a virtual service
// of this director goes to loopback at the same port, and one whose target
// is a virtual service that is not this director's address is not sent at
// all and its real server is down. Without this, IPVS balances the probe
// and the real server is reported up by whichever server answered.
type selfProber struct {
	prober
	log *slog.Logger
	// local reads the addresses of this director when a config is applied.
	local func() (func(netip.Addr) bool, error)

	mu     sync.Mutex
	cfg    *conf.Config // the last config given to Update, for Refresh
	probes map[health.Key]health.SelfProbe
	since  map[health.Key]time.Time // when a blocked key was first blocked
}

func newSelfProber(log *slog.Logger, inner prober, local func() (func(netip.Addr) bool, error)) *selfProber {
	return &selfProber{prober: inner, log: log, local: local,
		probes: map[health.Key]health.SelfProbe{}, since: map[health.Key]time.Time{}}
}

// Update finds the self probes of cfg with the director's current
// addresses and gives the engine cfg with those probes redirected.
func (s *selfProber) Update(cfg *conf.Config) {
	s.update(cfg, true)
}

// Refresh reads the director's addresses again and, when that changes
// which probes go via loopback or are blocked (an address added or
// removed by hand, by VRRP or by DHCP since the last Update), gives the
// engine the config with the probes redirected anew. Otherwise it touches
// nothing, so no probe restarts. The daemon calls it at every resync.
func (s *selfProber) Refresh() {
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	if cfg != nil {
		s.update(cfg, false)
	}
}

// Preview is the engine's preview of cfg with the self probes of cfg
// redirected as Update will redirect them now, and blocked real servers
// down.
func (s *selfProber) Preview(cfg *conf.Config) (func(string, netip.AddrPort) bool, func(string, netip.AddrPort) (int, bool)) {
	sp, probed := s.find(cfg, false)
	blocked := map[health.Key]bool{}
	for _, p := range sp {
		if p.Blocked() {
			blocked[health.Key{VirtualServer: p.VirtualServer, RealServer: p.RealServer}] = true
		}
	}
	up, weight := s.prober.Preview(probed)
	return func(vs string, rs netip.AddrPort) bool {
			return !blocked[health.Key{VirtualServer: vs, RealServer: rs}] && up(vs, rs)
		}, func(vs string, rs netip.AddrPort) (int, bool) {
			if blocked[health.Key{VirtualServer: vs, RealServer: rs}] {
				return 0, false
			}
			return weight(vs, rs)
		}
}

// find reads the director's addresses and returns cfg's self probes with
// the config the engine probes: those redirected, the blocked ones
// without a check. Unknown addresses count as none local, so a probe of
// a virtual service is refused (down) rather than balanced (wrongly up);
// logged when logErr.
func (s *selfProber) find(cfg *conf.Config, logErr bool) ([]health.SelfProbe, *conf.Config) {
	isLocal, err := s.local()
	if err != nil {
		if logErr {
			s.log.Error("cannot tell which virtual services are this director's own", "op", "probe", "error", err)
		}
		isLocal = func(netip.Addr) bool { return false }
	}
	sp := health.FindSelfProbes(cfg, isLocal)
	return sp, withoutBlocked(health.RedirectSelfProbes(cfg, sp), sp)
}

// update runs on the daemon loop only (Update and Refresh both), so two
// calls never give the engine their configs out of order.
func (s *selfProber) update(cfg *conf.Config, always bool) {
	sp, probed := s.find(cfg, true)
	now := time.Now()
	probes := make(map[health.Key]health.SelfProbe, len(sp))
	s.mu.Lock()
	changed := false
	since := make(map[health.Key]time.Time)
	for _, p := range sp {
		k := health.Key{VirtualServer: p.VirtualServer, RealServer: p.RealServer}
		probes[k] = p
		if old, ok := s.probes[k]; !ok || old != p {
			s.logSelfProbe(p)
			changed = true
		}
		if p.Blocked() {
			since[k] = now
			if t, ok := s.since[k]; ok { // s.since holds blocked keys only
				since[k] = t
			}
		}
	}
	for k := range s.probes {
		if _, ok := probes[k]; !ok {
			s.log.Info("real server no longer probed via loopback", "op", "probe", "vs", k.VirtualServer, "rs", k.RealServer.String())
			changed = true
		}
	}
	s.cfg, s.probes, s.since = cfg, probes, since
	s.mu.Unlock()
	if always || changed {
		s.prober.Update(probed)
	}
}

func (s *selfProber) logSelfProbe(p health.SelfProbe) {
	if p.Blocked() {
		s.log.Warn("real server cannot be probed: reported down", "op", "probe", "vs", p.VirtualServer,
			"rs", p.RealServer.String(), "target", p.Target.String(), "reason", p.Reason())
		return
	}
	s.log.Info("real server probed via loopback", "op", "probe", "vs", p.VirtualServer,
		"rs", p.RealServer.String(), "target", p.Target.String(), "via", p.Via.String(), "reason", p.Reason())
}

// withoutBlocked drops the checks of blocked probes from cfg (a copy), so
// the engine sends nothing that IPVS would balance; selfProber reports
// their real servers down itself.
func withoutBlocked(cfg *conf.Config, sp []health.SelfProbe) *conf.Config {
	var blocked []health.SelfProbe
	for _, p := range sp {
		if p.Blocked() {
			blocked = append(blocked, p)
		}
	}
	if len(blocked) == 0 {
		return cfg
	}
	out := *cfg
	out.VirtualServers = append([]conf.VirtualServer(nil), cfg.VirtualServers...)
	for _, p := range blocked {
		vs := &out.VirtualServers[p.VSIndex]
		rss := append([]conf.RealServer(nil), vs.RealServers...)
		rss[p.RSIndex].Check = nil
		vs.RealServers = rss
	}
	return &out
}

// Up is false for a blocked real server, whatever the engine says.
func (s *selfProber) Up(vs string, rs netip.AddrPort) bool {
	p, ok := s.probe(vs, rs)
	if ok && p.Blocked() {
		return false
	}
	return s.prober.Up(vs, rs)
}

// probe is rs's self probe, if it has one. A sync asks for every real
// server, and most directors have no self probe at all: then no key is
// hashed.
func (s *selfProber) probe(vs string, rs netip.AddrPort) (health.SelfProbe, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.probes) == 0 {
		return health.SelfProbe{}, false
	}
	p, ok := s.probes[health.Key{VirtualServer: vs, RealServer: rs}]
	return p, ok
}

// Weight has no dynamic weight for a blocked real server.
func (s *selfProber) Weight(vs string, rs netip.AddrPort) (int, bool) {
	p, ok := s.probe(vs, rs)
	if ok && p.Blocked() {
		return 0, false
	}
	return s.prober.Weight(vs, rs)
}

// Snapshot says where a redirected probe really goes and why, and reports
// a blocked real server down with the reason as its last result.
func (s *selfProber) Snapshot() map[health.Key]health.Status {
	snap := s.prober.Snapshot()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, p := range s.probes {
		st, ok := snap[k]
		if !ok {
			continue
		}
		if p.Blocked() {
			err := errors.New(p.Reason())
			snap[k] = health.Status{Key: k, Up: false, Since: s.since[k], Checked: true,
				Probe:       "none: not probed: " + p.Reason(),
				Last:        health.Result{At: s.since[k], Err: err, Message: "not probed: " + p.Target.String() + " is virtual service " + p.Service},
				Transitions: 0}
			continue
		}
		st.Probe += " (for " + p.Target.String() + ": " + p.Reason() + ")"
		if st.Checked && !st.Last.OK {
			st.Last.Message += " (probed at " + p.Via.String() + " for " + p.Target.String() + ")"
		}
		snap[k] = st
	}
	return snap
}

// selfProbeFinding is what `lvsha check` says about one self probe.
type selfProbeFinding struct {
	File, Key string
	Line      int
	Blocked   bool
	Msg       string
}

func (f selfProbeFinding) String() string {
	s := f.File
	if f.Line > 0 {
		s += fmt.Sprintf(":%d", f.Line)
	}
	level := "note"
	if f.Blocked {
		level = "warning"
	}
	return s + ": " + f.Key + ": " + level + ": " + f.Msg
}

// selfProbeFindings lists, at file:line, the real servers of cfg whose
// probe target is one of cfg's virtual services: a note where lvsha probes
// via loopback instead, a warning with the fix where it cannot probe at
// all.
func selfProbeFindings(cfg *conf.Config, local func(netip.Addr) bool) []selfProbeFinding {
	var out []selfProbeFinding
	for _, p := range health.FindSelfProbes(cfg, local) {
		key := fmt.Sprintf("virtual_server[%d].real_server[%d]", p.VSIndex, p.RSIndex)
		f := selfProbeFinding{File: cfg.Source, Key: key, Line: cfg.Line(key), Blocked: p.Blocked()}
		if p.Blocked() {
			f.Msg = "not probed, reported down: " + p.Reason()
		} else {
			f.Msg = "probed at " + p.Via.String() + ": " + p.Reason()
		}
		out = append(out, f)
	}
	return out
}

// writeSelfProbeFindings prints what `lvsha check` found about self
// probes of cfg, using this director's addresses; only the warnings when
// warningsOnly.
func writeSelfProbeFindings(w io.Writer, cfg *conf.Config, warningsOnly bool) error {
	isLocal, err := localAddrs()
	if err != nil {
		return err
	}
	for _, f := range selfProbeFindings(cfg, isLocal) {
		if warningsOnly && !f.Blocked {
			continue
		}
		if _, err := fmt.Fprintln(w, f); err != nil {
			return err
		}
	}
	return nil
}
