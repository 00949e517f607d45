package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
)

// recordingProber is a health engine that records the config it is given
// and reports every real server up, as an engine does before its probes
// fail.
type recordingProber struct{ cfg, preview *conf.Config }

func (p *recordingProber) Run(context.Context) error      { return nil }
func (p *recordingProber) Update(cfg *conf.Config)        { p.cfg = cfg }
func (p *recordingProber) Updates() <-chan struct{}       { return nil }
func (p *recordingProber) Up(string, netip.AddrPort) bool { return true }
func (p *recordingProber) Weight(string, netip.AddrPort) (int, bool) {
	return 7, true
}
func (p *recordingProber) Preview(cfg *conf.Config) (func(string, netip.AddrPort) bool, func(string, netip.AddrPort) (int, bool)) {
	p.preview = cfg
	return p.Up, p.Weight
}
func (p *recordingProber) Snapshot() map[health.Key]health.Status {
	out := map[health.Key]health.Status{}
	for _, vs := range p.cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			k := health.Key{VirtualServer: vs.Name, RealServer: rs.Address}
			st := health.Status{Key: k, Up: true, Probe: "none"}
			if rs.Check != nil {
				st.Probe = "tcp " + rs.Address.String()
				if rs.Check.ConnectAddress.IsValid() {
					st.Probe = "tcp " + netip.AddrPortFrom(rs.Check.ConnectAddress, rs.Check.ConnectPort).String()
				}
				st.Checked, st.Last = true, health.Result{Message: "connection refused"}
			}
			out[k] = st
		}
	}
	return out
}

const selfSeed = `[director]
name = "lb1"

[[virtual_server]]
name = "web"
address = "192.168.164.1:80"
scheduler = "rr"
  [virtual_server.check]
  type = "tcp"

  [[virtual_server.real_server]]
  address = "192.168.164.1:80"

  [[virtual_server.real_server]]
  address = "192.168.164.11:80"

[[virtual_server]]
name = "other"
address = "10.0.0.5:80"

  [[virtual_server.real_server]]
  address = "10.0.0.5:80"
  check = { type = "tcp" }
`

func parseSelfSeed(t *testing.T) *conf.Config {
	t.Helper()
	cfg, err := conf.Parse("seed.toml", []byte(selfSeed))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func directorAddrs(addrs ...string) func() (func(netip.Addr) bool, error) {
	return func() (func(netip.Addr) bool, error) {
		set := map[netip.Addr]bool{}
		for _, a := range addrs {
			set[netip.MustParseAddr(a)] = true
		}
		return func(a netip.Addr) bool { return set[a] }, nil
	}
}

func TestSelfProber(t *testing.T) {
	own := netip.MustParseAddrPort("192.168.164.1:80")
	neighbour := netip.MustParseAddrPort("192.168.164.11:80")
	far := netip.MustParseAddrPort("10.0.0.5:80")
	tests := []struct {
		name  string
		local func() (func(netip.Addr) bool, error)
		// what the engine is asked to probe for each real server ("" for none)
		probes map[netip.AddrPort]string
		up     map[netip.AddrPort]bool
		logHas []string
	}{
		{
			name:   "own address via loopback, the other virtual service's address is not ours: not probed",
			local:  directorAddrs("192.168.164.1"),
			probes: map[netip.AddrPort]string{own: "127.0.0.1:80", neighbour: "", far: "none"},
			up:     map[netip.AddrPort]bool{own: true, neighbour: true, far: false},
			logHas: []string{`msg="real server probed via loopback" op=probe vs=web rs=192.168.164.1:80 target=192.168.164.1:80 via=127.0.0.1:80`,
				`msg="real server cannot be probed: reported down" op=probe vs=other rs=10.0.0.5:80`},
		},
		{
			name:   "addresses unknown: nothing is ours, nothing probed through IPVS",
			local:  func() (func(netip.Addr) bool, error) { return nil, errors.New("netlink says no") },
			probes: map[netip.AddrPort]string{own: "none", neighbour: "", far: "none"},
			up:     map[netip.AddrPort]bool{own: false, neighbour: true, far: false},
			logHas: []string{"netlink says no"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			inner := &recordingProber{}
			sp := newSelfProber(slog.New(slog.NewTextHandler(&logs, nil)), inner, tc.local)
			cfg := parseSelfSeed(t)
			sp.Update(cfg)
			for _, vs := range inner.cfg.VirtualServers {
				for _, rs := range vs.RealServers {
					want, ok := tc.probes[rs.Address]
					if !ok {
						t.Fatalf("unexpected real server %s", rs.Address)
					}
					got := ""
					switch {
					case rs.Check == nil:
						got = "none"
					case rs.Check.ConnectAddress.IsValid():
						got = netip.AddrPortFrom(rs.Check.ConnectAddress, rs.Check.ConnectPort).String()
					}
					if got != want {
						t.Errorf("%s %s: engine probes %q, want %q", vs.Name, rs.Address, got, want)
					}
				}
			}
			snap := sp.Snapshot()
			for _, vs := range cfg.VirtualServers {
				for _, rs := range vs.RealServers {
					if got := sp.Up(vs.Name, rs.Address); got != tc.up[rs.Address] {
						t.Errorf("Up(%s, %s) = %v, want %v", vs.Name, rs.Address, got, tc.up[rs.Address])
					}
					st := snap[health.Key{VirtualServer: vs.Name, RealServer: rs.Address}]
					if st.Up != tc.up[rs.Address] {
						t.Errorf("Snapshot %s: up=%v, want %v", rs.Address, st.Up, tc.up[rs.Address])
					}
					if !tc.up[rs.Address] {
						if !strings.Contains(st.Probe, "not probed") || !strings.Contains(st.Last.Message, "is virtual service") || st.Last.OK {
							t.Errorf("Snapshot of blocked %s does not say why: %+v", rs.Address, st)
						}
						if _, ok := sp.Weight(vs.Name, rs.Address); ok {
							t.Errorf("blocked %s has a dynamic weight", rs.Address)
						}
					}
				}
			}
			if tc.probes[own] == "127.0.0.1:80" {
				st := snap[health.Key{VirtualServer: "web", RealServer: own}]
				if !strings.Contains(st.Probe, "tcp 127.0.0.1:80 (for 192.168.164.1:80: tcp 192.168.164.1:80 is virtual service \"web\" of this director") ||
					!strings.Contains(st.Last.Message, "(probed at 127.0.0.1:80 for 192.168.164.1:80)") {
					t.Errorf("redirected probe's status does not say where it goes and why: %+v", st)
				}
			}
			for _, w := range tc.logHas {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, logs.String())
				}
			}
			// The daemon's own config is shared with status and sync: untouched.
			if c := cfg.VirtualServers[0].RealServers[0].Check; c.ConnectAddress.IsValid() || cfg.VirtualServers[1].RealServers[0].Check == nil {
				t.Errorf("Update modified the daemon's config")
			}
		})
	}
}

// A reload that changes nothing about the self probes logs nothing again.
func TestSelfProberLogsChangesOnly(t *testing.T) {
	var logs bytes.Buffer
	sp := newSelfProber(slog.New(slog.NewTextHandler(&logs, nil)), &recordingProber{}, directorAddrs("192.168.164.1"))
	sp.Update(parseSelfSeed(t))
	first := strings.Count(logs.String(), "\n")
	sp.Update(parseSelfSeed(t))
	if n := strings.Count(logs.String(), "\n"); n != first || first != 2 {
		t.Errorf("log lines after first update %d (want 2), after an identical reload %d:\n%s", first, n, logs.String())
	}
}

func TestSelfProbeFindings(t *testing.T) {
	cfg := parseSelfSeed(t)
	tests := []struct {
		name  string
		local []string
		want  []string
	}{
		{"own address: a note with the line of the real server", []string{"192.168.164.1"}, []string{
			`seed.toml:11: virtual_server[0].real_server[0]: note: probed at 127.0.0.1:80: tcp 192.168.164.1:80 is virtual service "web" of this director`,
			`seed.toml:21: virtual_server[1].real_server[0]: warning: not probed, reported down: tcp 10.0.0.5:80 is virtual service "other" of this configuration and not an address of this director`,
		}},
		{"elsewhere: both are warnings with the fix", nil, []string{
			`seed.toml:11: virtual_server[0].real_server[0]: warning: not probed, reported down:`,
			`set check.connect_address to an address of that server that is not a virtual service`,
			`seed.toml:21: virtual_server[1].real_server[0]: warning:`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			local, _ := directorAddrs(tc.local...)()
			var b strings.Builder
			for _, f := range selfProbeFindings(cfg, local) {
				b.WriteString(f.String() + "\n")
			}
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("findings lack %q:\n%s", w, b.String())
				}
			}
			if n := strings.Count(b.String(), "\n"); n != 2 {
				t.Errorf("%d findings, want 2:\n%s", n, b.String())
			}
		})
	}
}

// Refresh follows the director's addresses: the engine gets a new config
// only when an address change moves a real server between probed via
// loopback, not probed, and probed directly.
func TestSelfProberRefresh(t *testing.T) {
	var addrs []string
	local := func() (func(netip.Addr) bool, error) { return directorAddrs(addrs...)() }
	inner := &countingProber{}
	sp := newSelfProber(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), inner, local)
	own := netip.MustParseAddrPort("192.168.164.1:80")
	steps := []struct {
		name    string
		addrs   []string
		updates int    // engine updates so far
		probe   string // where the engine probes the director's own server; "none" for not at all
	}{
		{"not ours at start: not probed", nil, 1, "none"},
		{"nothing changed", nil, 1, "none"},
		{"the address arrives: via loopback", []string{"192.168.164.1"}, 2, "127.0.0.1:80"},
		{"another address arrives that no probe targets", []string{"192.168.164.1", "192.168.164.2"}, 2, "127.0.0.1:80"},
		{"it leaves again: not probed", []string{"192.168.164.2"}, 3, "none"},
	}
	for i, step := range steps {
		addrs = step.addrs
		if i == 0 {
			sp.Update(parseSelfSeed(t))
		} else {
			sp.Refresh()
		}
		if inner.updates != step.updates {
			t.Fatalf("%s: engine updated %d times, want %d", step.name, inner.updates, step.updates)
		}
		got := "none"
		if c := inner.cfg.VirtualServers[0].RealServers[0].Check; c != nil {
			got = netip.AddrPortFrom(c.ConnectAddress, c.ConnectPort).String()
		}
		if got != step.probe {
			t.Fatalf("%s: engine probes %s at %s, want %s", step.name, own, got, step.probe)
		}
		if up := sp.Up("web", own); up != (step.probe != "none") {
			t.Fatalf("%s: Up = %v", step.name, up)
		}
	}
}

type countingProber struct {
	recordingProber
	updates int
}

func (p *countingProber) Update(cfg *conf.Config) { p.updates++; p.recordingProber.Update(cfg) }
