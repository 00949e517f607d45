package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsha/lvsha/cluster"
	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// fakeGossip is a cluster as a test sets it: this director's published
// state, and the other directors' as given.
type fakeGossip struct {
	mu      sync.Mutex
	self    string
	health  map[cluster.RealServer]cluster.Health
	insts   map[string]cluster.Instance
	digests cluster.Digests
	peers   map[string]map[cluster.RealServer]cluster.Health // live directors' views
	members []cluster.Director                               // Members' answer after self
	deaf    map[string]bool                                  // directors that answer no Ping
}

func newFakeGossip(self string) *fakeGossip {
	return &fakeGossip{self: self, health: map[cluster.RealServer]cluster.Health{}, insts: map[string]cluster.Instance{},
		peers: map[string]map[cluster.RealServer]cluster.Health{}}
}

func (f *fakeGossip) Run(ctx context.Context) error   { <-ctx.Done(); return nil }
func (f *fakeGossip) Changed() <-chan struct{}        { return nil }
func (f *fakeGossip) GossipErrors() map[string]uint64 { return map[string]uint64{"decrypt": 0} }
func (f *fakeGossip) SetDigests(d cluster.Digests) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.digests = d
}
func (f *fakeGossip) SetHealth(rs cluster.RealServer, h cluster.Health) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.health[rs] = h
}
func (f *fakeGossip) SetInstance(in cluster.Instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.insts[in.Name] = in
}
func (f *fakeGossip) Retain(rs func(cluster.RealServer) bool, inst func(string) bool) {}
func (f *fakeGossip) Views(rs cluster.RealServer) []cluster.Seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.Seen
	if h, ok := f.health[rs]; ok {
		out = append(out, cluster.Seen{Director: f.self, Health: h})
	}
	for name, m := range f.peers {
		if h, ok := m[rs]; ok {
			out = append(out, cluster.Seen{Director: name, Health: h})
		}
	}
	return out
}
func (f *fakeGossip) Directors() []cluster.Director {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []cluster.Director{{Name: f.self, Self: true, Alive: true, ConfigDigest: f.digests.Config, Digests: f.digests,
		Health: maps.Clone(f.health), Addr: netip.MustParseAddrPort("192.0.2.1:7946")}}
	for _, n := range slices.Sorted(maps.Keys(f.peers)) {
		out = append(out, cluster.Director{Name: n, Alive: true, ConfigDigest: f.digests.Config, Health: maps.Clone(f.peers[n])})
	}
	return out
}
func (f *fakeGossip) Ping(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deaf[name] {
		return fmt.Errorf("ping %s: no answer", name)
	}
	return nil
}
func (f *fakeGossip) Members() []cluster.Director {
	f.mu.Lock()
	defer f.mu.Unlock()
	insts := slices.SortedFunc(maps.Values(f.insts), func(a, b cluster.Instance) int { return strings.Compare(a.Name, b.Name) })
	self := cluster.Director{Name: f.self, Self: true, Alive: true, Addr: netip.MustParseAddrPort("192.0.2.1:7946"),
		ConfigDigest: f.digests.Config, Digests: f.digests, Instances: insts}
	return append([]cluster.Director{self}, f.members...)
}

const clusterConfig = `
[director]
name = "lb1"

[cluster]
key_file = "/etc/lvsha/cluster.key"

[[virtual_server]]
name = "q"
address = "10.1.2.3:80"
health_consensus = "quorum"
  [[virtual_server.real_server]]
  address = "192.0.2.10:80"
  [[virtual_server.real_server]]
  address = "192.0.2.11:80"

[[virtual_server]]
name = "l"
address = "10.1.2.3:81"
  [[virtual_server.real_server]]
  address = "192.0.2.10:81"
  [[virtual_server.real_server]]
  address = "192.0.2.11:81"
`

// TestClusterConsensusInSync checks the sync applies health_consensus:
// with quorum, a real server this director alone sees down keeps its
// weight and one the two others see down is drained although this
// director sees it up; a local virtual server follows this director's
// checks as before. Every real server's own view is published.
func TestClusterConsensusInSync(t *testing.T) {
	cfg, err := conf.Parse("c.toml", []byte(clusterConfig))
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	probes := &staticProber{down: map[health.Key]bool{
		{VirtualServer: "q", RealServer: ap("192.0.2.10:80")}: true,
		{VirtualServer: "l", RealServer: ap("192.0.2.10:81")}: true,
	}}
	g := newFakeGossip("lb1")
	for _, p := range []string{"lb2", "lb3"} {
		g.peers[p] = map[cluster.RealServer]cluster.Health{
			{VS: "q", RS: ap("192.0.2.10:80")}: cluster.HealthUp,
			{VS: "q", RS: ap("192.0.2.11:80")}: cluster.HealthDown,
			{VS: "l", RS: ap("192.0.2.10:81")}: cluster.HealthUp,
			{VS: "l", RS: ap("192.0.2.11:81")}: cluster.HealthDown,
		}
	}
	k := &ipvstest.Kernel{}
	d := newDaemon(log, "c.toml", cfg, ipvs.NewReconciler(k, log), probes)
	d.cluster = newClusterLink(log, g, cfg)
	if _, err := d.sync(syncRead); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"TCP  10.1.2.3:80 192.0.2.10:80": 1, // 1 of 3 down: kept
		"TCP  10.1.2.3:80 192.0.2.11:80": 0, // 2 of 3 down: drained
		"TCP  10.1.2.3:81 192.0.2.10:81": 0, // local: this director's check
		"TCP  10.1.2.3:81 192.0.2.11:81": 1,
	}
	if diff := cmp.Diff(want, kernelWeights(t, k)); diff != "" {
		t.Errorf("kernel weights (-want +got):\n%s", diff)
	}
	wantPublished := map[cluster.RealServer]cluster.Health{
		{VS: "q", RS: ap("192.0.2.10:80")}: cluster.HealthDown, {VS: "q", RS: ap("192.0.2.11:80")}: cluster.HealthUp,
		{VS: "l", RS: ap("192.0.2.10:81")}: cluster.HealthDown, {VS: "l", RS: ap("192.0.2.11:81")}: cluster.HealthUp,
	}
	if diff := cmp.Diff(wantPublished, g.health, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("published health (-want +got):\n%s", diff)
	}
	for _, line := range []string{
		`msg="real server up by cluster consensus" op=cluster vs=q rs=192.0.2.10:80 consensus=quorum seen="1 of 3 see it down (lb1=down lb2=up lb3=up)"`,
		`msg="real server down by cluster consensus" op=cluster vs=q rs=192.0.2.11:80 consensus=quorum seen="2 of 3 see it down (lb1=up lb2=down lb3=down)"`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log lacks %s\nlog:\n%s", line, logs)
		}
	}
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "by cluster consensus") && strings.Contains(line, " vs=l ") {
			t.Errorf("a local virtual server logged a consensus: %s", line)
		}
	}

	// The others recover it: the drained one returns; each transition
	// is logged once, not at every sync.
	g.mu.Lock()
	for _, p := range []string{"lb2", "lb3"} {
		g.peers[p][cluster.RealServer{VS: "q", RS: ap("192.0.2.11:80")}] = cluster.HealthUp
	}
	g.mu.Unlock()
	d.sync(syncRead)
	d.sync(syncRead)
	if w := kernelWeights(t, k)["TCP  10.1.2.3:80 192.0.2.11:80"]; w != 1 {
		t.Errorf("q/192.0.2.11:80 weight %d after the others see it up, want 1", w)
	}
	if n := strings.Count(logs.String(), "rs=192.0.2.11:80 consensus=quorum"); n != 2 {
		t.Errorf("%d consensus lines for 192.0.2.11:80, want 2 (down, then up)\nlog:\n%s", n, logs)
	}
}

// TestClusterSplitBrainAndDrift checks each split brain and each drift is
// logged once when it starts and when it ends, and counted.
func TestClusterSplitBrainAndDrift(t *testing.T) {
	cfg, err := conf.Parse("c.toml", []byte(clusterConfig))
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	g := newFakeGossip("lb1")
	c := newClusterLink(slog.New(slog.NewTextHandler(logs, nil)), g, cfg)

	c.publishVRRP([]instance.Status{{Name: "vi1", RouterID: 51, State: "MASTER", Priority: 100, Master: "192.0.2.1"}})
	want := cluster.Instance{Name: "vi1", VRID: 51, State: cluster.StateMaster, Priority: 100, Addr: netip.MustParseAddr("192.0.2.1")}
	if got := g.insts["vi1"]; got != want {
		t.Fatalf("published %+v, want %+v", got, want)
	}
	lb2 := cluster.Director{Name: "lb2", Alive: true, Addr: netip.MustParseAddrPort("10.0.0.2:7946"),
		ConfigDigest: [32]byte{9}, Digests: cluster.Digests{Config: [32]byte{9}, VirtualServers: map[string]cluster.Short{"q": {1}}, Instances: map[string]cluster.Short{}},
		Instances: []cluster.Instance{{Name: "vi1", VRID: 51, State: cluster.StateMaster, Priority: 150, Addr: netip.MustParseAddr("192.0.2.2")}}}
	g.members = []cluster.Director{lb2}
	for range 3 {
		c.observeSplitBrains()
		c.observeDrift()
	}
	out := logs.String()
	if n := strings.Count(out, "split brain: more than one master"); n != 1 {
		t.Errorf("%d split brain lines over three looks, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, `vrrp_instance=vi1 vrid=51 masters="lb2(priority 150, 192.0.2.2) lb1(priority 100, 192.0.2.1)" keeps_master=lb2 this_director_would_yield=true`) {
		t.Errorf("split brain line lacks the masters and the verdict:\n%s", out)
	}
	if n := strings.Count(out, "configuration drift"); n != 1 || !strings.Contains(out, `drift="lb2: virtual servers l,q"`) {
		t.Errorf("drift logged %d times, want once naming l and q on lb2:\n%s", n, out)
	}
	rep := c.report(cfg, func(string, netip.AddrPort) bool { return true })
	if rep.SplitBrainsTotal != 1 || len(rep.SplitBrains) != 1 || !rep.SplitBrains[0].ThisYields {
		t.Errorf("report: %d split brains since start, now %+v; want 1, vi1 with this director yielding", rep.SplitBrainsTotal, rep.SplitBrains)
	}

	lb2.Instances[0].State = cluster.StateBackup
	g.members = []cluster.Director{lb2}
	c.observeSplitBrains()
	if !strings.Contains(logs.String(), `msg="split brain over: one master" op=cluster vrrp_instance=vi1`) {
		t.Errorf("no line for the split brain's end:\n%s", logs)
	}
	if c.report(cfg, func(string, netip.AddrPort) bool { return true }).SplitBrainsTotal != 1 {
		t.Error("the count of split brains went down")
	}
}

// TestClusterView checks `lvsha status --cluster`'s text: directors,
// instances and real servers side by side.
func TestClusterView(t *testing.T) {
	r := &ClusterReport{
		Self: "lb1",
		Directors: []ClusterDirector{
			{Name: "lb1", Address: "10.0.0.1:7946", Self: true, Alive: true, Version: "v1", ConfigDigest: "0011223344556677",
				Instances: []ClusterInstance{{Name: "vi1", VRID: 51, State: "MASTER", Priority: 150}}},
			{Name: "lb2", Address: "10.0.0.2:7946", Alive: false, Version: "v1", ConfigDigest: "8899aabbccddeeff", Drift: "virtual servers web",
				Instances: []ClusterInstance{{Name: "vi1", VRID: 51, State: "BACKUP", Priority: 100}}},
		},
		RealServers: []ClusterRealServer{{VirtualServer: "web", Address: "192.0.2.10:80", Consensus: "quorum", Seen: map[string]string{"lb1": "down", "lb2": "up"}, Up: true}},
	}
	var b bytes.Buffer
	if err := writeClusterView(&b, r); err != nil {
		t.Fatal(err)
	}
	want := `DIRECTOR  ADDRESS        STATE  CONFIG            VERSION  DRIFT
lb1*      10.0.0.1:7946  alive  0011223344556677  v1       -
lb2       10.0.0.2:7946  gone   8899aabbccddeeff  v1       virtual servers web

VRRP INSTANCE  lb1         lb2
vi1            MASTER 150  BACKUP 100

VIRTUAL SERVER  REAL SERVER    lb1   lb2  CONSENSUS  APPLIED
web             192.0.2.10:80  down  up   quorum     up

split brains since start: 0
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("cluster view (-want +got):\n%s", diff)
	}
}

// fakeVRRP is the VRRP instances as the cluster link drives them: the
// states it reads, the yields it sends.
type fakeVRRP struct {
	sts    []instance.Status
	yields []string
}

func (f *fakeVRRP) Status() []instance.Status { return f.sts }
func (f *fakeVRRP) Yield(_ context.Context, name string, to netip.Addr) error {
	f.yields = append(f.yields, fmt.Sprintf("%s to %v", name, to))
	return nil
}

// TestClusterResolveSplitBrain is split_brain = "resolve" against fakes:
// which master yields (lower effective priority; on a tie, the lower
// address), only once the split brain has lasted the hold and the
// master keeping master answers a ping, and when the yield is lifted.
// Each row moves lb2's claim (and this director lb1's state) through
// steps at offsets from the first look, and lists the yields sent.
func TestClusterResolveSplitBrain(t *testing.T) {
	const hold = time.Second
	type step struct {
		at       time.Duration
		self     string // lb1's state of vi1
		lb2      string // lb2's: MASTER, BACKUP, or DEAD (master, not alive)
		deafLB2  bool
		wantSent []string // yields sent by this step
	}
	yield := "vi1 to 192.0.2.2"
	lift := "vi1 to invalid IP"
	tests := []struct {
		name     string
		mode     string
		selfPrio int
		lb2Prio  int
		selfAddr string
		steps    []step
	}{
		{name: "report only: nobody yields", mode: "report", selfPrio: 100, lb2Prio: 150,
			steps: []step{{0, "MASTER", "MASTER", false, nil}, {5 * time.Second, "MASTER", "MASTER", false, nil}}},
		{name: "lower priority yields after the hold", mode: "resolve", selfPrio: 100, lb2Prio: 150,
			steps: []step{{0, "MASTER", "MASTER", false, nil}, {hold / 2, "MASTER", "MASTER", false, nil},
				{hold, "MASTER", "MASTER", false, []string{yield}},
				// Yielded: no split brain, the other master stays: nothing more.
				{hold + 100*time.Millisecond, "BACKUP", "MASTER", false, nil}, {time.Minute, "BACKUP", "MASTER", false, nil}}},
		{name: "higher priority keeps master", mode: "resolve", selfPrio: 200, lb2Prio: 150,
			steps: []step{{0, "MASTER", "MASTER", false, nil}, {5 * time.Second, "MASTER", "MASTER", false, nil}}},
		{name: "tie: the lower address yields", mode: "resolve", selfPrio: 150, lb2Prio: 150, selfAddr: "192.0.2.1",
			steps: []step{{0, "MASTER", "MASTER", false, nil}, {hold, "MASTER", "MASTER", false, []string{yield}}}},
		{name: "tie: the higher address keeps master", mode: "resolve", selfPrio: 150, lb2Prio: 150, selfAddr: "192.0.2.3",
			steps: []step{{0, "MASTER", "MASTER", false, nil}, {5 * time.Second, "MASTER", "MASTER", false, nil}}},
		{name: "two masters for less than the hold (a handover) are left alone", mode: "resolve", selfPrio: 100, lb2Prio: 150,
			steps: []step{{0, "MASTER", "MASTER", false, nil}, {hold / 2, "MASTER", "BACKUP", false, nil},
				{hold, "MASTER", "MASTER", false, nil}, {hold + hold/2, "MASTER", "MASTER", false, nil},
				{2 * hold, "MASTER", "MASTER", false, []string{yield}}}},
		{name: "a master that answers no ping (dead, not yet declared) is not yielded to", mode: "resolve", selfPrio: 100, lb2Prio: 150,
			steps: []step{{0, "MASTER", "MASTER", true, nil}, {hold, "MASTER", "MASTER", true, nil},
				{5 * time.Second, "MASTER", "MASTER", true, nil}, {6 * time.Second, "MASTER", "MASTER", false, []string{yield}}}},
		{name: "lifted when the master yielded to steps down", mode: "resolve", selfPrio: 100, lb2Prio: 150,
			steps: []step{{0, "MASTER", "MASTER", false, nil}, {hold, "MASTER", "MASTER", false, []string{yield}},
				{2 * hold, "BACKUP", "MASTER", false, nil}, {3 * hold, "BACKUP", "BACKUP", false, []string{lift}},
				{4 * hold, "BACKUP", "BACKUP", false, nil}}},
		{name: "lifted when the master yielded to dies", mode: "resolve", selfPrio: 100, lb2Prio: 150,
			steps: []step{{0, "MASTER", "MASTER", false, nil}, {hold, "MASTER", "MASTER", false, []string{yield}},
				{3 * hold, "BACKUP", "DEAD", false, []string{lift}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := clusterConfig + fmt.Sprintf(`
[[vrrp_instance]]
name = "vi1"
interface = "eth0"
router_id = 51
priority = %d
virtual_ips = ["10.1.2.100/24"]
split_brain = %q
`, tt.selfPrio, tt.mode)
			cfg, err := conf.Parse("c.toml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			g := newFakeGossip("lb1")
			c := newClusterLink(slog.New(slog.NewTextHandler(io.Discard, nil)), g, cfg)
			if c.resolveHold != hold {
				t.Fatalf("hold %s at the default gossip interval, want %s", c.resolveHold, hold)
			}
			vr := &fakeVRRP{}
			selfAddr := tt.selfAddr
			if selfAddr == "" {
				selfAddr = "192.0.2.1"
			}
			t0 := time.Now()
			for _, st := range tt.steps {
				vr.sts = []instance.Status{{Name: "vi1", RouterID: 51, State: st.self, Priority: tt.selfPrio, Master: selfAddr}}
				lb2 := cluster.Director{Name: "lb2", Alive: st.lb2 != "DEAD", Addr: netip.MustParseAddrPort("10.0.0.2:7946"),
					Instances: []cluster.Instance{{Name: "vi1", VRID: 51, State: cluster.StateBackup, Priority: uint8(tt.lb2Prio), Addr: netip.MustParseAddr("192.0.2.2")}}}
				if st.lb2 != "BACKUP" {
					lb2.Instances[0].State = cluster.StateMaster
				}
				g.mu.Lock()
				g.members, g.deaf = []cluster.Director{lb2}, map[string]bool{"lb2": st.deafLB2}
				g.mu.Unlock()
				vr.yields = nil
				c.publishVRRP(vr.Status())
				c.observeSplitBrains()
				c.resolveSplitBrains(t.Context(), vr, t0.Add(st.at))
				if !slices.Equal(vr.yields, st.wantSent) {
					t.Errorf("at +%s (lb1 %s, lb2 %s): sent %q, want %q", st.at, st.self, st.lb2, vr.yields, st.wantSent)
				}
			}
		})
	}
}
