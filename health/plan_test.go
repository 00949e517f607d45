package health

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/risefall"
)

// PlanProbes predicts what Update does: for each case the engine runs the
// old config, takes the new one, and every real server whose probe object
// changed (or appeared, or went) is exactly what the plan listed.
func TestPlanProbesMatchesUpdate(t *testing.T) {
	const base = `
[[virtual_server]]
name = "web"
address = "10.0.0.1:80"
  [virtual_server.check]
  type = "http"
  path = "/"
  [[virtual_server.real_server]]
  address = "10.0.1.1:80"
  [[virtual_server.real_server]]
  address = "10.0.1.2:80"
  [[virtual_server.real_server]]
  address = "10.0.1.3:80"
  check = { type = "none" }

[[virtual_server]]
name = "api"
address = "10.0.0.2:80"
  [virtual_server.check]
  type = "tcp"
  [[virtual_server.real_server]]
  address = "10.0.1.1:80"
`
	tests := []struct {
		name string
		edit func(string) string
		want []string
	}{
		{"unchanged", func(s string) string { return s }, nil},
		{"comments and order of keys", func(s string) string { return "# a comment\n" + s }, nil},
		{"a real server added", func(s string) string {
			return strings.Replace(s, "  [[virtual_server.real_server]]\n  address = \"10.0.1.2:80\"\n", "  [[virtual_server.real_server]]\n  address = \"10.0.1.2:80\"\n  [[virtual_server.real_server]]\n  address = \"10.0.1.4:80\"\n", 1)
		}, []string{"web 10.0.1.4:80 started"}},
		{"a real server removed", func(s string) string {
			return strings.Replace(s, "  [[virtual_server.real_server]]\n  address = \"10.0.1.2:80\"\n", "", 1)
		}, []string{"web 10.0.1.2:80 stopped"}},
		{"the check path changed", func(s string) string { return strings.Replace(s, `path = "/"`, `path = "/health"`, 1) },
			[]string{"web 10.0.1.1:80 restarted", "web 10.0.1.2:80 restarted"}},
		{"a check turned off and one on", func(s string) string {
			s = strings.Replace(s, "address = \"10.0.1.2:80\"\n", "address = \"10.0.1.2:80\"\n  check = { type = \"none\" }\n", 1)
			return strings.Replace(s, "  address = \"10.0.1.3:80\"\n  check = { type = \"none\" }\n", "  address = \"10.0.1.3:80\"\n", 1)
		}, []string{"web 10.0.1.2:80 stopped", "web 10.0.1.3:80 started"}},
		{"a weight changed", func(s string) string {
			return strings.Replace(s, "address = \"10.0.1.1:80\"\n", "address = \"10.0.1.1:80\"\n  weight = 5\n", 1)
		}, nil},
		{"another virtual server's check changed", func(s string) string { return strings.Replace(s, `type = "tcp"`, `type = "tcp"`+"\n  rise = 3", 1) },
			[]string{"api 10.0.1.1:80 restarted"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old, err := conf.Parse("old.toml", []byte(base))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := conf.Parse("new.toml", []byte(tc.edit(base)))
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for _, c := range PlanProbes(old, cfg) {
				plan = append(plan, c.Key.String()+" "+c.Change)
			}
			if !slices.Equal(plan, tc.want) {
				t.Errorf("PlanProbes = %q, want %q", plan, tc.want)
			}

			e := NewEngine(slog.New(slog.DiscardHandler))
			e.Update(old)
			before := probesByKey(e)
			// Every running probe is down, so a kept probe and a new one
			// (up at first) differ in what Preview must say.
			e.mu.Lock()
			for _, p := range e.probes {
				p.state = risefall.State{}
			}
			e.mu.Unlock()
			up, weight := e.Preview(cfg)
			e.Update(cfg)
			after := probesByKey(e)
			for _, k := range configKeys(cfg) {
				gotW, gotOK := weight(k.VirtualServer, k.RealServer)
				wantW, wantOK := e.Weight(k.VirtualServer, k.RealServer)
				if u := up(k.VirtualServer, k.RealServer); u != e.Up(k.VirtualServer, k.RealServer) || gotW != wantW || gotOK != wantOK {
					t.Errorf("%s: Preview said up %v weight %d,%v; after Update up %v weight %d,%v", k.Key, u, gotW, gotOK,
						e.Up(k.VirtualServer, k.RealServer), wantW, wantOK)
				}
			}
			var did []string
			for k, p := range before {
				switch q, ok := after[k]; {
				case p != nil && (!ok || q == nil):
					did = append(did, k.String()+" "+ProbeStopped)
				case p != nil && q != p:
					did = append(did, k.String()+" "+ProbeRestarted)
				}
			}
			for k, q := range after {
				if p := before[k]; q != nil && p == nil {
					did = append(did, k.String()+" "+ProbeStarted)
				}
			}
			slices.Sort(did)
			sortedPlan := slices.Sorted(slices.Values(plan))
			if !slices.Equal(did, sortedPlan) {
				t.Errorf("Update did %q, the plan said %q", did, sortedPlan)
			}
		})
	}
}

// probesByKey is the engine's probe of each real server (nil for none).
func probesByKey(e *Engine) map[Key]*probe {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[Key]*probe, len(e.keys))
	for k, p := range e.keys {
		out[k] = p
	}
	return out
}

// A real server the previous daemon saw down starts down, until rise
// probes pass; only its first probe does, and the others start as their
// checks say.
func TestStartDownAfterRestart(t *testing.T) {
	cfg, err := conf.Parse("t.toml", []byte(`
[[virtual_server]]
name = "web"
address = "10.0.0.1:80"
check = { type = "tcp" }
  [[virtual_server.real_server]]
  address = "10.0.1.1:80"
  [[virtual_server.real_server]]
  address = "10.0.1.2:80"
`))
	if err != nil {
		t.Fatal(err)
	}
	down := Key{VirtualServer: "web", RealServer: netip.MustParseAddrPort("10.0.1.1:80")}
	other := Key{VirtualServer: "web", RealServer: netip.MustParseAddrPort("10.0.1.2:80")}
	e := NewEngine(slog.New(slog.DiscardHandler))
	e.StartDown([]Key{down})
	up, _ := e.Preview(cfg)
	if up(down.VirtualServer, down.RealServer) || !up(other.VirtualServer, other.RealServer) {
		t.Errorf("Preview before the first Update: %v %v, want down and up", up(down.VirtualServer, down.RealServer), up(other.VirtualServer, other.RealServer))
	}
	e.Update(cfg)
	if e.Up(down.VirtualServer, down.RealServer) || !e.Up(other.VirtualServer, other.RealServer) {
		t.Fatalf("after the first Update: %v %v, want down and up", e.Up(down.VirtualServer, down.RealServer), e.Up(other.VirtualServer, other.RealServer))
	}
	// A reload that restarts the probe starts it as its check says.
	cfg2, err := conf.Parse("t.toml", []byte(strings.Replace(`
[[virtual_server]]
name = "web"
address = "10.0.0.1:80"
check = { type = "tcp" }
  [[virtual_server.real_server]]
  address = "10.0.1.1:80"
  [[virtual_server.real_server]]
  address = "10.0.1.2:80"
`, `type = "tcp"`, `type = "tcp", rise = 3`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	e.Update(cfg2)
	if !e.Up(down.VirtualServer, down.RealServer) {
		t.Error("a probe restarted by a reload still started down")
	}
}
