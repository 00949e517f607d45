package integration

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// clusterDirector is one lvsha daemon of TestClusterDirectors: VRRP and
// gossip only, so it needs no IPVS and runs on the host.
type clusterDirector struct {
	name, ns, iface, addr, cfg, sock string
	cmd                              *exec.Cmd
}

// clusterView is the part of `lvsha status --cluster -o json` the test
// reads.
type clusterView struct {
	Directors []struct {
		Name      string `json:"name"`
		Alive     bool   `json:"alive"`
		Drift     string `json:"drift"`
		Instances []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"vrrp_instances"`
	} `json:"directors"`
	SplitBrains []struct {
		Instance string   `json:"vrrp_instance"`
		Masters  []string `json:"masters"`
	} `json:"split_brains"`
	SplitBrainsTotal int `json:"split_brains_total"`
}

// view is the director's `lvsha status --cluster`; false while it does
// not answer.
func (d *clusterDirector) view() (clusterView, bool) {
	out, err := exec.Command(os.Getenv(envLvsha), "status", "--cluster", "-s", d.sock, "-o", "json").Output()
	var v clusterView
	if err != nil || json.Unmarshal(out, &v) != nil {
		return v, false
	}
	return v, true
}

// alive lists the directors d sees alive, sorted.
func (d *clusterDirector) alive() []string {
	v, ok := d.view()
	if !ok {
		return nil
	}
	var out []string
	for _, x := range v.Directors {
		if x.Alive {
			out = append(out, x.Name)
		}
	}
	slices.Sort(out)
	return out
}

// states maps each director to its state of instance "vi" as d sees it.
func (d *clusterDirector) states() map[string]string {
	v, _ := d.view()
	out := map[string]string{}
	for _, x := range v.Directors {
		for _, in := range x.Instances {
			if in.Name == "vi" && x.Alive {
				out[x.Name] = in.State
			}
		}
	}
	return out
}

// writeConfig writes the director's file: instance "vi" (VRID 60) at
// prio, gossip on its address with every director as a seed.
func (d *clusterDirector) writeConfig(t *testing.T, prio int, keyFile string, seeds []string, extra string) {
	t.Helper()
	text := fmt.Sprintf(`[director]
name = %q
control_socket = %q
state_file = %q

[cluster]
bind_address = %q
seeds = [%s]
key_file = %q
rejoin_interval = "1s"

[[vrrp_instance]]
name = "vi"
interface = %q
router_id = 60
priority = %d
advert_interval = "100ms"
virtual_ips = ["10.79.0.100/24"]
%s`, d.name, d.sock, filepath.Join(filepath.Dir(d.cfg), d.name+".state"), d.addr, `"`+strings.Join(seeds, `", "`)+`"`, keyFile, d.iface, prio, extra)
	if err := os.WriteFile(d.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (d *clusterDirector) start(t *testing.T) {
	t.Helper()
	d.cmd = startIn(t, d.ns, nil, lvshaBin(t), "run", "-c", d.cfg)
}

// nft runs nft in the director's namespace.
func (d *clusterDirector) nft(t *testing.T, args ...string) {
	t.Helper()
	inNS(t, d.ns, append([]string{"nft"}, args...)...)
}

// TestClusterDirectors runs three lvsha directors with [cluster] on one
// LAN (issue #19) and checks what gossip adds to VRRP: they see each
// other and each one's instance state; a director with another key
// cannot join; blocking VRRP between two of them while gossip flows
// shows as a split brain within a few gossip intervals, and its end when
// adverts flow again; a reloaded config that differs is reported as
// drift naming the instance; a partition of the gossip port heals by the
// periodic rejoin. Health consensus needs virtual servers, hence IPVS:
// cmd/lvsha's TestClusterConsensusInSync covers it against the fake
// kernel.
func TestClusterDirectors(t *testing.T) {
	hosts, ifaces := lan(t, 4)
	dir := t.TempDir()
	key, other := filepath.Join(dir, "cluster.key"), filepath.Join(dir, "other.key")
	for _, k := range []string{key, other} {
		b := make([]byte, 32)
		rand.Read(b)
		if err := os.WriteFile(k, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var ds []*clusterDirector
	seeds := []string{"10.79.0.1", "10.79.0.2", "10.79.0.3"}
	for i := range 3 {
		d := &clusterDirector{name: fmt.Sprintf("lb%d", i+1), ns: hosts[i], iface: ifaces[i], addr: seeds[i],
			cfg: filepath.Join(dir, fmt.Sprintf("lb%d.toml", i+1)), sock: filepath.Join(dir, fmt.Sprintf("lb%d.sock", i+1))}
		d.writeConfig(t, 150-50*i, key, seeds, "")
		d.start(t)
		ds = append(ds, d)
	}
	lb1, lb2, lb3 := ds[0], ds[1], ds[2]
	all := []string{"lb1", "lb2", "lb3"}
	for _, d := range ds {
		eventually(t, d.name+" sees three live directors", 20*time.Second, func() bool { return slices.Equal(d.alive(), all) })
	}
	want := map[string]string{"lb1": "MASTER", "lb2": "BACKUP", "lb3": "BACKUP"}
	for _, d := range ds {
		eventually(t, d.name+" sees lb1 master, the others backup", 20*time.Second, func() bool {
			return fmt.Sprint(d.states()) == fmt.Sprint(want)
		})
	}

	t.Run("wrong key", func(t *testing.T) {
		lb4 := &clusterDirector{name: "lb4", ns: hosts[3], iface: ifaces[3], addr: "10.79.0.4",
			cfg: filepath.Join(dir, "lb4.toml"), sock: filepath.Join(dir, "lb4.sock")}
		// VRID 61: its election is its own; only the key is wrong.
		lb4.writeConfig(t, 100, other, seeds, "")
		text, _ := os.ReadFile(lb4.cfg)
		os.WriteFile(lb4.cfg, []byte(strings.Replace(string(text), "router_id = 60", "router_id = 61", 1)), 0o644)
		lb4.start(t)
		eventually(t, "lb4 answers status", 20*time.Second, func() bool { _, ok := lb4.view(); return ok })
		// Three rejoin intervals: lb4 tries every one of them.
		time.Sleep(3 * time.Second)
		if got := lb4.alive(); !slices.Equal(got, []string{"lb4"}) {
			t.Errorf("lb4, with another key, sees %v alive; want only itself", got)
		}
		if v, _ := lb1.view(); len(v.Directors) != 3 {
			t.Errorf("lb1 knows %d directors after lb4 tried to join with another key, want 3", len(v.Directors))
		}
		stopProc(lb4.cmd)
	})

	t.Run("split brain", func(t *testing.T) {
		// lb2 stops hearing lb1's adverts (lb3 still hears them): it
		// becomes master too, while gossip still flows.
		lb2.nft(t, "add", "table", "inet", "lvsha_test")
		lb2.nft(t, "add chain inet lvsha_test in { type filter hook input priority 0; }")
		lb2.nft(t, "add", "rule", "inet", "lvsha_test", "in", "ip", "protocol", "vrrp", "drop")
		took := eventually(t, "lb1 reports a split brain on vi, lb1 keeping master", 10*time.Second, func() bool {
			v, _ := lb1.view()
			return len(v.SplitBrains) == 1 && v.SplitBrains[0].Instance == "vi" && slices.Equal(v.SplitBrains[0].Masters, []string{"lb1", "lb2"})
		})
		t.Logf("split brain reported by lb1 %s after VRRP was cut (lb2's master-down interval included)", took.Round(time.Millisecond))
		lb2.nft(t, "delete", "table", "inet", "lvsha_test")
		eventually(t, "the split brain ends on lb1 once lb2 hears lb1 again", 10*time.Second, func() bool {
			v, _ := lb1.view()
			return len(v.SplitBrains) == 0 && v.SplitBrainsTotal == 1
		})
	})

	t.Run("drift", func(t *testing.T) {
		lb3.writeConfig(t, 50, key, seeds, "garp_repeat = 3\n")
		out, err := exec.Command(lvshaBin(t), "reload", "-s", lb3.sock).CombinedOutput()
		if err != nil {
			t.Fatalf("lvsha reload: %v\n%s", err, out)
		}
		took := eventually(t, "lb1 reports lb3's vi as drifted", 20*time.Second, func() bool {
			v, _ := lb1.view()
			for _, d := range v.Directors {
				if d.Name == "lb3" {
					return d.Drift == "vrrp instances vi"
				}
			}
			return false
		})
		t.Logf("lb1 named the drift %s after lb3's reload returned", took.Round(time.Millisecond))
		lb3.writeConfig(t, 50, key, seeds, "")
		if out, err := exec.Command(lvshaBin(t), "reload", "-s", lb3.sock).CombinedOutput(); err != nil {
			t.Fatalf("lvsha reload: %v\n%s", err, out)
		}
		eventually(t, "no drift once lb3 runs the shared config again", 20*time.Second, func() bool {
			v, _ := lb1.view()
			for _, d := range v.Directors {
				if d.Drift != "" {
					return false
				}
			}
			return true
		})
	})

	t.Run("partition heals", func(t *testing.T) {
		lb3.nft(t, "add", "table", "inet", "lvsha_test")
		lb3.nft(t, "add chain inet lvsha_test in { type filter hook input priority 0; }")
		lb3.nft(t, "add chain inet lvsha_test out { type filter hook output priority 0; }")
		lb3.nft(t, "add", "rule", "inet", "lvsha_test", "in", "tcp", "dport", "7946", "drop")
		lb3.nft(t, "add", "rule", "inet", "lvsha_test", "in", "udp", "dport", "7946", "drop")
		lb3.nft(t, "add", "rule", "inet", "lvsha_test", "out", "tcp", "dport", "7946", "drop")
		lb3.nft(t, "add", "rule", "inet", "lvsha_test", "out", "udp", "dport", "7946", "drop")
		eventually(t, "lb1 sees lb3 gone", 30*time.Second, func() bool { return slices.Equal(lb1.alive(), []string{"lb1", "lb2"}) })
		eventually(t, "lb3 sees the others gone", 30*time.Second, func() bool { return slices.Equal(lb3.alive(), []string{"lb3"}) })
		lb3.nft(t, "delete", "table", "inet", "lvsha_test")
		took := eventually(t, "all three see each other again", 30*time.Second, func() bool {
			return slices.Equal(lb1.alive(), all) && slices.Equal(lb3.alive(), all)
		})
		t.Logf("healed %s after the gossip port was opened again (rejoin_interval 1s)", took.Round(time.Millisecond))
	})
}

// TestClusterConsensus is issue #19's shared health in namespaces: three
// directors check one real server; lb2 alone loses its path to it (a
// blackhole route in its namespace: the server and the others are fine).
// With health_consensus = "quorum" the server keeps its weight on every
// director, lb2 included; with "local" only lb2 drains it, as without a
// cluster; with "any" every director drains it. The kernel tables are
// each director's own IPVS table, read with ipvsadm.
func TestClusterConsensus(t *testing.T) {
	tests := []struct {
		mode string
		want map[string]string // director → the real server's weight with lb2's path cut
	}{
		{"quorum", map[string]string{"lb1": "5", "lb2": "5", "lb3": "5"}},
		{"local", map[string]string{"lb1": "5", "lb2": "0", "lb3": "5"}},
		{"any", map[string]string{"lb1": "0", "lb2": "0", "lb3": "0"}},
	}
	for _, tt := range tests {
		mode := tt.mode
		t.Run(mode, func(t *testing.T) {
			hosts, _ := lan(t, 4)
			dir := t.TempDir()
			key := filepath.Join(dir, "cluster.key")
			b := make([]byte, 32)
			rand.Read(b)
			if err := os.WriteFile(key, b, 0o600); err != nil {
				t.Fatal(err)
			}
			startIn(t, hosts[3], []string{envRole + "=web", "LVSHA_NAME=rs", "LVSHA_LISTEN=10.79.0.4:80"}, self(t))
			seeds := []string{"10.79.0.1", "10.79.0.2", "10.79.0.3"}
			var ds []*clusterDirector
			for i := range 3 {
				d := &clusterDirector{name: fmt.Sprintf("lb%d", i+1), ns: hosts[i], addr: seeds[i],
					cfg: filepath.Join(dir, fmt.Sprintf("lb%d.toml", i+1)), sock: filepath.Join(dir, fmt.Sprintf("lb%d.sock", i+1))}
				text := fmt.Sprintf(`[director]
name = %q
control_socket = %q
state_file = %q

[cluster]
bind_address = %q
seeds = ["10.79.0.1", "10.79.0.2", "10.79.0.3"]
key_file = %q
rejoin_interval = "1s"

[[virtual_server]]
name = "web"
address = "10.79.0.200:80"
health_consensus = %q
  [virtual_server.check]
  type = "http"
  interval = "200ms"
  timeout = "150ms"
  rise = 1
  fall = 2
  [[virtual_server.real_server]]
  address = "10.79.0.4:80"
  weight = 5
`, d.name, d.sock, filepath.Join(dir, d.name+".state"), d.addr, key, mode)
				if err := os.WriteFile(d.cfg, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				d.start(t)
				ds = append(ds, d)
			}
			all := []string{"lb1", "lb2", "lb3"}
			for _, d := range ds {
				eventually(t, d.name+" sees three live directors", 60*time.Second, func() bool { return slices.Equal(d.alive(), all) })
				eventually(t, d.name+" has the real server at weight 5", 60*time.Second, func() bool { return ipvsWeight(t, d.ns, "10.79.0.4:80") == "5" })
			}

			inNS(t, ds[1].ns, "ip", "route", "add", "blackhole", "10.79.0.4/32")
			// lb2's own check fails: wait until the others hear it.
			eventually(t, "lb1 hears that lb2 sees the real server down", 30*time.Second, func() bool {
				out, err := exec.Command(lvshaBin(t), "status", "--cluster", "-s", ds[0].sock, "-o", "json").Output()
				if err != nil {
					return false
				}
				var v struct {
					RealServers []struct {
						Seen map[string]string `json:"seen"`
					} `json:"real_servers"`
				}
				return json.Unmarshal(out, &v) == nil && len(v.RealServers) == 1 && v.RealServers[0].Seen["lb2"] == "down"
			})
			weights := func() map[string]string {
				got := map[string]string{}
				for _, d := range ds {
					got[d.name] = ipvsWeight(t, d.ns, "10.79.0.4:80")
				}
				return got
			}
			// Every drain the mode calls for happens; then, some syncs
			// later, none it does not call for has.
			eventually(t, "the drains "+mode+" calls for", 30*time.Second, func() bool {
				got := weights()
				for n, w := range tt.want {
					if w == "0" && got[n] != "0" {
						return false
					}
				}
				return true
			})
			time.Sleep(2 * time.Second)
			if got := weights(); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("weights with health_consensus = %q and lb2's path blackholed: %v, want %v", mode, got, tt.want)
			}
		})
	}
}
