package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	moby "github.com/moby/ipvs"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// staticProber is a prober whose real servers are as a test sets them:
// up unless in down. It never probes.
type staticProber struct {
	down map[health.Key]bool
}

func (p *staticProber) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (p *staticProber) Update(*conf.Config)           {}
func (p *staticProber) Updates() <-chan struct{}      { return nil }
func (p *staticProber) Snapshot() map[health.Key]health.Status {
	out := map[health.Key]health.Status{}
	for k, down := range p.down {
		out[k] = health.Status{Key: k, Up: !down, Checked: true, Probe: "tcp", Transitions: 3}
	}
	return out
}
func (p *staticProber) Up(vs string, rs netip.AddrPort) bool {
	return !p.down[health.Key{VirtualServer: vs, RealServer: rs}]
}
func (p *staticProber) Weight(string, netip.AddrPort) (int, bool) { return 0, false }
func (p *staticProber) Preview(*conf.Config) (func(string, netip.AddrPort) bool, func(string, netip.AddrPort) (int, bool)) {
	return p.Up, p.Weight
}

// scrape gets h's /metrics and parses it.
func scrape(t *testing.T, h http.Handler) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	text := rec.Body.String()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, text)
	}
	return mfs, text
}

// sample is one series: a family name and labels written "k=v,k=v" in
// any order ("" for none).
type sample struct {
	name, labels string
}

// value is the sample's value (a histogram's count), and whether it is
// there.
func value(mfs map[string]*dto.MetricFamily, s sample) (float64, bool) {
	mf := mfs[s.name]
	if mf == nil {
		return 0, false
	}
	want := []string{}
	if s.labels != "" {
		want = strings.Split(s.labels, ",")
	}
	sort.Strings(want)
	for _, m := range mf.GetMetric() {
		var got []string
		for _, lp := range m.GetLabel() {
			got = append(got, lp.GetName()+"="+lp.GetValue())
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// bucket is the cumulative count of a histogram's bucket le.
func bucket(mfs map[string]*dto.MetricFamily, name, labels string, le float64) (uint64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	want := strings.Split(labels, ",")
	sort.Strings(want)
	for _, m := range mf.GetMetric() {
		var got []string
		for _, lp := range m.GetLabel() {
			got = append(got, lp.GetName()+"="+lp.GetValue())
		}
		sort.Strings(got)
		if !slices.Equal(got, want) || m.Histogram == nil {
			continue
		}
		for _, b := range m.GetHistogram().GetBucket() {
			if b.GetUpperBound() == le {
				return b.GetCumulativeCount(), true
			}
		}
	}
	return 0, false
}

const metricsTestConfig = `
[director]
name = "lb1"
control_socket = "/nonexistent/lvsha.sock"
state_file = "/nonexistent/state.json"

[metrics]
listen = "127.0.0.1:9650"

[[virtual_server]]
name = "web"
address = "192.0.2.1:80"
quorum = 2
sorry_server = "192.0.2.99:80"
check = { type = "tcp" }
  [[virtual_server.real_server]]
  address = "10.0.0.1:80"
  weight = 5
  [[virtual_server.real_server]]
  address = "10.0.0.2:80"
  [[virtual_server.real_server]]
  address = "10.0.0.3:80"

[[virtual_server]]
name = "dns"
fwmark = 7
protocol = "udp"
  [[virtual_server.real_server]]
  address = "10.0.1.1"
  forwarding = "dr"
`

// The metrics say what the daemon's state is: each row names a series
// and the value it must have, for a daemon whose web real servers are
// one up (10.0.0.1, weight 5, drained by hand), one down (10.0.0.2) and
// one up (10.0.0.3), which leaves web below its quorum of 2 with its
// sorry server serving; then a refused reload (config stale) and a kernel
// that refuses a sync.
func TestMetricsValues(t *testing.T) {
	cfg, err := conf.Parse("t.toml", []byte(metricsTestConfig))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	k := &ipvstest.Kernel{}
	rs := netip.MustParseAddrPort
	p := &staticProber{down: map[health.Key]bool{
		{VirtualServer: "web", RealServer: rs("10.0.0.1:80")}: false,
		{VirtualServer: "web", RealServer: rs("10.0.0.2:80")}: true,
		{VirtualServer: "web", RealServer: rs("10.0.0.3:80")}: false,
	}}
	d := newDaemon(log, "t.toml", cfg, ipvs.NewReconciler(k, log), p)
	d.manual = map[health.Key]manualEntry{{VirtualServer: "web", RealServer: rs("10.0.0.1:80")}: {Mode: manualDrain, Since: time.Now()}}
	if _, err := d.sync(syncRead); err != nil {
		t.Fatal(err)
	}
	web := &moby.Service{AddressFamily: 2, Protocol: 6, Address: net.ParseIP("192.0.2.1"), Port: 80}
	if err := k.SetStats(web, nil, moby.SvcStats{Connections: 11, PacketsIn: 22, PacketsOut: 33, BytesIn: 44, BytesOut: 55}); err != nil {
		t.Fatal(err)
	}
	if err := k.SetConns(web, &moby.Destination{Address: net.ParseIP("10.0.0.3"), Port: 80}, 7, 2); err != nil {
		t.Fatal(err)
	}
	stats := newProbeStats()
	down := health.Key{VirtualServer: "web", RealServer: rs("10.0.0.2:80")}
	stats.observe(down, health.Result{Latency: 300 * time.Millisecond, Err: context.DeadlineExceeded})
	stats.observe(down, health.Result{Latency: 2 * time.Millisecond, Err: fmt.Errorf("connect: %w", errConnRefused())})
	stats.observe(health.Key{VirtualServer: "web", RealServer: rs("10.0.0.3:80")}, health.Result{OK: true, Latency: time.Millisecond})
	// A real server no longer configured: its series must go.
	stats.observe(health.Key{VirtualServer: "gone", RealServer: rs("10.9.9.9:80")}, health.Result{OK: true})
	h := metricsHandler(log, newMetricsCollector(d.metricsState, stats), d.ready)

	webVS := "virtual_server=web,local_address=192.0.2.1,local_port=80,local_mark=,proto=TCP"
	dnsVS := "virtual_server=dns,local_address=,local_port=0,local_mark=7,proto=FWM"
	rs1 := "virtual_server=web,remote_address=10.0.0.1,remote_port=80"
	rs2 := "virtual_server=web,remote_address=10.0.0.2,remote_port=80"
	rs3 := "virtual_server=web,remote_address=10.0.0.3,remote_port=80"
	check := func(t *testing.T, rows []struct {
		s    sample
		want float64 // -1: absent
	}) {
		t.Helper()
		mfs, text := scrape(t, h)
		for _, r := range rows {
			got, ok := value(mfs, r.s)
			switch {
			case r.want < 0 && ok:
				t.Errorf("%s{%s} = %v, want absent", r.s.name, r.s.labels, got)
			case r.want >= 0 && !ok:
				t.Errorf("%s{%s} absent, want %v", r.s.name, r.s.labels, r.want)
			case r.want >= 0 && got != r.want:
				t.Errorf("%s{%s} = %v, want %v", r.s.name, r.s.labels, got, r.want)
			}
		}
		if t.Failed() {
			t.Logf("scraped:\n%s", lvshaLines(text))
		}
	}
	type row = struct {
		s    sample
		want float64
	}
	t.Run("running", func(t *testing.T) {
		check(t, []row{
			{sample{"lvsha_config_loaded", ""}, 1},
			{sample{"lvsha_config_stale", ""}, 0},
			{sample{"lvsha_config_last_reload_successful", ""}, 1},
			{sample{"lvsha_kernel_last_sync_successful", ""}, 1},
			{sample{"lvsha_kernel_sync_errors_total", ""}, 0},
			{sample{"lvsha_virtual_server_in_kernel", webVS}, 1},
			{sample{"lvsha_virtual_server_in_kernel", dnsVS}, 1},
			{sample{"lvsha_virtual_server_real_servers", webVS}, 3},
			// 10.0.0.1 is drained, 10.0.0.2 down: one live.
			{sample{"lvsha_virtual_server_live_real_servers", webVS}, 1},
			{sample{"lvsha_virtual_server_quorum_met", webVS}, 0},
			{sample{"lvsha_virtual_server_sorry_server_active", webVS}, 1},
			{sample{"lvsha_virtual_server_quorum_met", dnsVS}, 1},
			{sample{"lvsha_virtual_server_sorry_server_active", dnsVS}, 0},
			{sample{"lvsha_virtual_server_connections_total", webVS}, 11},
			{sample{"lvsha_virtual_server_incoming_packets_total", webVS}, 22},
			{sample{"lvsha_virtual_server_outgoing_packets_total", webVS}, 33},
			{sample{"lvsha_virtual_server_incoming_bytes_total", webVS}, 44},
			{sample{"lvsha_virtual_server_outgoing_bytes_total", webVS}, 55},
			{sample{"lvsha_virtual_server_connections_active", webVS}, 7},
			{sample{"lvsha_virtual_server_connections_inactive", webVS}, 2},
			{sample{"lvsha_real_server_up", rs1}, 1},
			{sample{"lvsha_real_server_drained", rs1}, 1},
			{sample{"lvsha_real_server_maintenance", rs1}, 0},
			{sample{"lvsha_real_server_weight", rs1}, 5},
			{sample{"lvsha_real_server_kernel_weight", rs1}, 0},
			{sample{"lvsha_real_server_up", rs2}, 0},
			{sample{"lvsha_real_server_drained", rs2}, 0},
			{sample{"lvsha_real_server_kernel_weight", rs2}, 0},
			{sample{"lvsha_real_server_up", rs3}, 1},
			{sample{"lvsha_real_server_transitions_total", rs3}, 3},
			{sample{"lvsha_real_server_probe_duration_seconds", rs2}, 2},
			{sample{"lvsha_real_server_probe_duration_seconds", rs3}, 1},
			{sample{"lvsha_real_server_probe_duration_seconds", rs1}, -1},
			{sample{"lvsha_real_server_probe_failures_total", rs2 + ",cause=timeout"}, 1},
			{sample{"lvsha_real_server_probe_failures_total", rs2 + ",cause=refused"}, 1},
			{sample{"lvsha_real_server_probe_failures_total", rs2 + ",cause=status"}, 0},
			{sample{"lvsha_real_server_probe_failures_total", rs3 + ",cause=timeout"}, 0},
			{sample{"lvsha_real_server_up", "virtual_server=dns,remote_address=10.0.1.1,remote_port=0"}, 1},
			{sample{"lvsha_real_server_probe_duration_seconds", "virtual_server=gone,remote_address=10.9.9.9,remote_port=80"}, -1},
		})
		// 10.0.0.2's probes took 300ms and 2ms.
		mfs, _ := scrape(t, h)
		for le, want := range map[float64]uint64{0.001: 0, 0.0025: 1, 0.25: 1, 0.5: 2, 2.5: 2} {
			if got, ok := bucket(mfs, "lvsha_real_server_probe_duration_seconds", rs2, le); !ok || got != want {
				t.Errorf("probe duration of %s, bucket le=%v: %d (present %v), want %d", rs2, le, got, ok, want)
			}
		}
		if err := d.ready(); err != nil {
			t.Errorf("ready: %v, want ready after a good sync", err)
		}
	})

	t.Run("reload refused", func(t *testing.T) {
		d.load = func(string) (*conf.Config, error) { return nil, errors.New("t.toml:3: weight: out of range") }
		before := d.reloadedAt
		if rep := d.reload(); !rep.Refused {
			t.Fatalf("reload of a bad file not refused: %+v", rep)
		}
		check(t, []row{
			{sample{"lvsha_config_loaded", ""}, 1},
			{sample{"lvsha_config_stale", ""}, 1},
			{sample{"lvsha_config_last_reload_successful", ""}, 0},
			{sample{"lvsha_config_last_reload_success_timestamp_seconds", ""}, unixSeconds(before)},
		})
		if err := d.ready(); err != nil {
			t.Errorf("ready: %v, want a stale config to stay ready (it serves the previous one)", err)
		}
	})

	t.Run("sync refused", func(t *testing.T) {
		k.SetFail(func(string, *moby.Service, *moby.Destination) error { return errors.New("no memory") })
		p.down[health.Key{VirtualServer: "web", RealServer: rs("10.0.0.2:80")}] = false
		if _, err := d.sync(syncRead); err == nil {
			t.Fatal("sync succeeded on a failing kernel")
		}
		check(t, []row{
			{sample{"lvsha_kernel_last_sync_successful", ""}, 0},
			{sample{"lvsha_kernel_sync_errors_total", ""}, 1},
			{sample{"lvsha_real_server_up", rs2}, 1},
		})
		if err := d.ready(); err == nil || !strings.Contains(err.Error(), "no memory") {
			t.Errorf("ready: %v, want the sync's error", err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "no memory") {
			t.Errorf("/readyz: %d %q, want 503 with the sync's error", rec.Code, rec.Body)
		}
	})
}

// lvshaLines keeps lvsha's samples of a scrape, for a failure's log.
func lvshaLines(text string) string {
	var b strings.Builder
	for l := range strings.Lines(text) {
		if strings.HasPrefix(l, "lvsha_") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// errConnRefused is the error a refused connect wraps.
func errConnRefused() error {
	_, err := net.Dial("tcp", closedTCPPort())
	return err
}

// closedTCPPort is a loopback address nothing listens on.
func closedTCPPort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:1"
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// vrrpReport is a Report of VRRP instances only.
func vrrpReport(insts ...instance.Status) *Report {
	return &Report{VRRP: insts, ReloadedAt: time.Unix(1700000000, 0)}
}

// An instance's state is numbered as keepalived's, and its priorities and
// advert counters are exported as its status has them.
func TestMetricsVRRP(t *testing.T) {
	tests := []struct {
		state string
		want  float64
	}{
		{"INIT", 0}, {"BACKUP", 1}, {"MASTER", 2}, {"FAULT", 3}, {"STOPPING", 0}, {"RESTARTING", 0},
	}
	for _, tc := range tests {
		t.Run(tc.state, func(t *testing.T) {
			rep := vrrpReport(instance.Status{Name: "vi_1", Interface: "eth0", RouterID: 51, State: tc.state,
				BasePriority: 100, Priority: 90, Transitions: 4, AdvertsSent: 12, AdvertsReceived: 34,
				Dropped: map[string]uint64{"bad_ttl": 2}})
			rep.VRRPLinks = []transport.LinkStats{{Interface: "eth0", Endpoints: 1, UnknownVRID: 7, Short: 1, KernelDrops: 3}, {Interface: "eth0", IPv6: true, Endpoints: 1}}
			c := newMetricsCollector(func() (*metricsState, error) { return &metricsState{report: rep}, nil }, newProbeStats())
			mfs, text := scrape(t, metricsHandler(slog.New(slog.NewTextHandler(io.Discard, nil)), c, func() error { return nil }))
			l := "vrrp_instance=vi_1,interface=eth0,vrid=51"
			for _, r := range []struct {
				s    sample
				want float64
			}{
				{sample{"lvsha_vrrp_state", l}, tc.want},
				{sample{"lvsha_vrrp_priority", l}, 90},
				{sample{"lvsha_vrrp_base_priority", l}, 100},
				{sample{"lvsha_vrrp_transitions_total", l}, 4},
				{sample{"lvsha_vrrp_adverts_sent_total", l}, 12},
				{sample{"lvsha_vrrp_adverts_received_total", l}, 34},
				{sample{"lvsha_vrrp_adverts_invalid_total", l + ",reason=bad_ttl"}, 2},
				{sample{"lvsha_vrrp_link_dropped_total", "interface=eth0,family=ipv4,reason=unknown_vrid"}, 7},
				{sample{"lvsha_vrrp_link_dropped_total", "interface=eth0,family=ipv4,reason=short"}, 1},
				{sample{"lvsha_vrrp_link_dropped_total", "interface=eth0,family=ipv4,reason=kernel"}, 3},
				{sample{"lvsha_vrrp_link_dropped_total", "interface=eth0,family=ipv6,reason=unknown_vrid"}, 0},
			} {
				if got, ok := value(mfs, r.s); !ok || got != r.want {
					t.Errorf("%s{%s} = %v (present %v), want %v\n%s", r.s.name, r.s.labels, got, ok, r.want, text)
				}
			}
		})
	}
}

// clusterReport is three directors: lb1 (this one), lb2 drifted, lb3
// gone (and drifted, which no longer counts); lb1 and lb2 both master of
// vi_1.
func clusterReport() *ClusterReport {
	return &ClusterReport{
		Self: "lb1",
		Directors: []ClusterDirector{
			{Name: "lb1", Self: true, Alive: true},
			{Name: "lb2", Alive: true, Drift: "virtual servers web"},
			{Name: "lb3", Alive: false, Drift: "virtual servers web"},
		},
		SplitBrains:      []ClusterSplitBrain{{Instance: "vi_1", VRID: 51, Masters: []string{"lb2", "lb1"}, ThisYields: true}},
		SplitBrainsTotal: 3,
		GossipErrors:     map[string]uint64{"decrypt": 12, "label": 0},
	}
}

func TestMetricsCluster(t *testing.T) {
	rep := vrrpReport(instance.Status{Name: "vi_1", Interface: "eth0", RouterID: 51, State: "MASTER"})
	rep.Cluster = clusterReport()
	c := newMetricsCollector(func() (*metricsState, error) { return &metricsState{report: rep}, nil }, newProbeStats())
	mfs, text := scrape(t, metricsHandler(slog.New(slog.NewTextHandler(io.Discard, nil)), c, func() error { return nil }))
	for _, r := range []struct {
		s       sample
		want    float64
		present bool
	}{
		{sample{"lvsha_cluster_directors_alive", ""}, 2, true},
		{sample{"lvsha_cluster_director_drift", "director=lb2"}, 1, true},
		{sample{"lvsha_cluster_director_drift", "director=lb3"}, 0, false},
		{sample{"lvsha_cluster_director_drift", "director=lb1"}, 0, false},
		{sample{"lvsha_cluster_split_brain", "vrrp_instance=vi_1"}, 1, true},
		{sample{"lvsha_cluster_split_brains_total", ""}, 3, true},
		{sample{"lvsha_cluster_gossip_errors_total", "kind=decrypt"}, 12, true},
		{sample{"lvsha_cluster_gossip_errors_total", "kind=label"}, 0, true},
	} {
		if got, ok := value(mfs, r.s); ok != r.present || got != r.want {
			t.Errorf("%s{%s} = %v (present %v), want %v (present %v)\n%s", r.s.name, r.s.labels, got, ok, r.want, r.present, text)
		}
	}

	// Without [cluster], no cluster series at all.
	rep.Cluster = nil
	mfs, _ = scrape(t, metricsHandler(slog.New(slog.NewTextHandler(io.Discard, nil)), c, func() error { return nil }))
	for name := range mfs {
		if strings.HasPrefix(name, "lvsha_cluster_") {
			t.Errorf("%s present without a cluster", name)
		}
	}
}

// A daemon whose state cannot be read (the kernel table unreadable)
// still answers a scrape, with what it has: the build info.
func TestMetricsStateError(t *testing.T) {
	c := newMetricsCollector(func() (*metricsState, error) { return nil, errors.New("netlink: boom") }, newProbeStats())
	var logs bytes.Buffer
	mfs, _ := scrape(t, metricsHandler(slog.New(slog.NewTextHandler(&logs, nil)), c, func() error { return nil }))
	if _, ok := mfs["lvsha_build_info"]; !ok {
		t.Error("no lvsha_build_info when the state is unreadable")
	}
	if _, ok := mfs["lvsha_config_loaded"]; ok {
		t.Error("lvsha_config_loaded served without a state")
	}
	if !strings.Contains(logs.String(), "netlink: boom") {
		t.Errorf("the error is not logged: %q", logs.String())
	}
}

// bigReport is a synthetic report of nVS virtual servers of perVS real
// servers each, every one in the kernel with counters, and probe stats
// with every real server probed.
func bigReport(nVS, perVS int) (*Report, *probeStats) {
	rep := &Report{Director: "lb1", ReloadedAt: time.Now(), SyncedAt: time.Now()}
	stats := newProbeStats()
	for i := range nVS {
		s := ServiceReport{Name: fmt.Sprintf("vs%d", i), Protocol: "tcp", Address: fmt.Sprintf("192.0.%d.%d", i/250, i%250+1), Port: 443,
			InKernel: true, Stats: Counters{Conns: 1e6, InPkts: 1e7, OutPkts: 1e7, InBytes: 1e9, OutBytes: 1e10}}
		for j := range perVS {
			w := 100
			a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j)}), 443)
			s.RealServers = append(s.RealServers, RealReport{Address: a.String(), Forward: "Masq", Weight: 100, KernelWeight: &w,
				Health: "up", Transitions: 2, ActiveConn: 100, InactiveConn: 50})
			k := health.Key{VirtualServer: s.Name, RealServer: a}
			for n := range 5 {
				stats.observe(k, health.Result{OK: n != 0, Latency: time.Duration(n+1) * time.Millisecond, Err: context.DeadlineExceeded})
			}
		}
		rep.Services = append(rep.Services, s)
	}
	return rep, stats
}

// BenchmarkScrape scrapes /metrics at 1,000 and 10,000 real servers
// (virtual servers of 10), uncompressed and gzipped as Prometheus asks
// for it (Accept-Encoding: gzip). Besides the wall time it reports the
// CPU time of the whole process per scrape, GC included, which a loaded
// build machine does not inflate as it does the wall time, and the bytes
// sent.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, enc := range []string{"identity", "gzip"} {
			b.Run(fmt.Sprintf("rs=%d/%s", n*10, enc), func(b *testing.B) {
				rep, stats := bigReport(n, 10)
				c := newMetricsCollector(func() (*metricsState, error) { return &metricsState{report: rep}, nil }, stats)
				h := metricsHandler(slog.New(slog.NewTextHandler(io.Discard, nil)), c, func() error { return nil })
				var size int
				cpu0 := cpuTime(b)
				for b.Loop() {
					rw := &countingWriter{header: http.Header{}, code: http.StatusOK}
					req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
					req.Header.Set("Accept-Encoding", enc)
					h.ServeHTTP(rw, req)
					if rw.code != http.StatusOK {
						b.Fatal(rw.code)
					}
					if got := rw.header.Get("Content-Encoding"); enc == "gzip" && got != "gzip" {
						b.Fatalf("Content-Encoding %q, want gzip", got)
					}
					size = rw.n
				}
				b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N)/1e6, "cpu-ms/scrape")
				b.ReportMetric(float64(size), "bytes/scrape")
			})
		}
	}
}

// countingWriter is an http.ResponseWriter that counts the body and
// keeps none of it, as a connection streams it: httptest's recorder
// growing a 32 MB buffer was a third of a scrape's time, a cost of the
// benchmark, not of the daemon.
type countingWriter struct {
	header http.Header
	code   int
	n      int
}

func (w *countingWriter) Header() http.Header  { return w.header }
func (w *countingWriter) WriteHeader(code int) { w.code = code }
func (w *countingWriter) Write(b []byte) (int, error) {
	w.n += len(b)
	return len(b), nil
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// promtool is the path of Prometheus's promtool. scripts/setup installs
// it (Debian's prometheus package); a test that needs it fails without
// it rather than skip, so CI cannot lose the check unnoticed.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (scripts/setup installs it, from Debian's prometheus package): %v", err)
	}
	return p
}

// The exposition passes promtool's lint: names, units, _total on
// counters, help text. The scrape covers every lvsha family: a daemon's
// virtual and real servers, probe histograms and failures, a VRRP
// instance and the sync daemon it drives.
func TestPromtoolCheckMetrics(t *testing.T) {
	tool := promtool(t)
	rep, stats := bigReport(2, 2)
	rep.Services[1].FWMark, rep.Services[1].Protocol, rep.Services[1].Address, rep.Services[1].Port = 7, "", "", 0
	rep.VRRP = []instance.Status{{Name: "vi_1", Interface: "eth0", RouterID: 51, State: "MASTER", BasePriority: 100, Priority: 100,
		Dropped: map[string]uint64{"bad_ttl": 1}}}
	rep.ConnSync = &SyncReport{VRRPInstance: "vi_1", Want: "master", Daemons: []SyncDaemonReport{{State: "master", Interface: "eth1", SyncID: 51}}}
	rep.BFD, rep.BFDLinks = testBFDSessions(), testBFDLinks()
	rep.Cluster = clusterReport()
	c := newMetricsCollector(func() (*metricsState, error) { return &metricsState{report: rep}, nil }, stats)
	mfs, text := scrape(t, metricsHandler(slog.New(slog.NewTextHandler(io.Discard, nil)), c, func() error { return nil }))
	var families int
	for name := range mfs {
		if strings.HasPrefix(name, "lvsha_") {
			families++
		}
	}
	if want := 54; families != want {
		t.Errorf("%d lvsha families scraped, want all %d", families, want)
	}
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// The sample alert rules parse and pass promtool's checks, and fire on
// the series lvsha exports (promtool test rules, docs/lvsha-alerts_test.yml).
func TestAlertRules(t *testing.T) {
	tool := promtool(t)
	rules := filepath.Join("..", "..", "docs", "lvsha-alerts.yml")
	if _, err := os.Stat(rules); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "rules", rules},
		{"test", "rules", filepath.Join("..", "..", "docs", "lvsha-alerts_test.yml")},
	} {
		out, err := exec.Command(tool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// The listener serves the three endpoints where [metrics] listen says,
// a taken address is a start-up error naming it, and stop releases the
// address.
func TestServeMetrics(t *testing.T) {
	cfg, err := conf.Parse("t.toml", []byte(metricsTestConfig))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := newDaemon(log, "t.toml", cfg, ipvs.NewReconciler(&ipvstest.Kernel{}, log), &staticProber{})
	engine := health.NewEngine(log)

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := taken.Addr().String()
	if _, err := d.serveMetrics(addr, engine); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("serveMetrics on a taken address: %v, want an error naming %s", err, addr)
	}
	taken.Close()

	stop, err := d.serveMetrics(addr, engine)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not synced") {
		t.Errorf("/readyz before the first sync: %d %q, want 503 not synced", code, body)
	}
	d.sync(syncRead)
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after a sync: %d, want 200", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "lvsha_real_server_up{") {
		t.Errorf("/metrics: %d, want 200 with real servers", code)
	}
	stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("address still taken after stop: %v", err)
	}
	ln.Close()
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A reload moves the metrics listener: the new address is bound before
// the reload is taken, so one that cannot be bound refuses the reload and
// the old listener keeps serving; once taken, the old one is closed. A
// plan predicts the refusal.
func TestMetricsRebindOnReload(t *testing.T) {
	first, second, third := freeAddr(t), freeAddr(t), freeAddr(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	base, err := conf.Parse("t.toml", []byte(metricsTestConfig))
	if err != nil {
		t.Fatal(err)
	}
	at := func(listen string) *conf.Config {
		c := *base
		c.Metrics.Listen = listen
		return &c
	}
	log := slog.New(slog.DiscardHandler)
	d := newDaemon(log, "t.toml", at(first), ipvs.NewReconciler(&ipvstest.Kernel{}, log), &staticProber{})
	var next *conf.Config
	d.load = func(string) (*conf.Config, error) { return next, nil }
	stop, err := d.serveMetrics(first, health.NewEngine(log))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	serves := func(addr string) bool {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	steps := []struct {
		name    string
		listen  string
		refused bool
		serving string   // where metrics answer after the reload, "" nowhere
		closed  []string // addresses that must no longer answer
	}{
		{"to a new port", second, false, second, []string{first}},
		{"to a taken port: refused, the old keeps serving", taken.Addr().String(), true, second, nil},
		{"off", "", false, "", []string{second}},
		{"on again", third, false, third, []string{first, second}},
	}
	for _, st := range steps {
		next = at(st.listen)
		plan := d.plan("t.toml")
		rep := d.reload()
		if rep.Refused != st.refused || plan.Refused != st.refused {
			t.Errorf("%s: reload refused %v (%q), plan refused %v, want %v", st.name, rep.Refused, rep.Errors, plan.Refused, st.refused)
		}
		if st.refused && (len(rep.Errors) == 0 || !strings.Contains(rep.Errors[0], st.listen)) {
			t.Errorf("%s: errors %q, want one naming %s", st.name, rep.Errors, st.listen)
		}
		if st.serving != "" && !serves(st.serving) {
			t.Errorf("%s: no metrics at %s", st.name, st.serving)
		}
		for _, a := range st.closed {
			if serves(a) {
				t.Errorf("%s: metrics still served at %s", st.name, a)
			}
		}
		if got := d.config().Metrics.Listen; !st.refused && got != st.listen {
			t.Errorf("%s: running [metrics] listen %q, want %q", st.name, got, st.listen)
		}
	}
}
