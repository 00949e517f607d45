package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics: the [metrics] listener serves /metrics, /healthz and /readyz.
// One collector reads the daemon's state at scrape time (Status, as
// `lvsha status` does), so no code elsewhere updates gauges; only what a
// snapshot cannot give, the latency and cause of each probe, is
// accumulated as it happens (probeStats, fed by health's OnResult).
// docs/metrics.md lists every metric.

// probeBuckets are the upper bounds of the probe duration histogram, in
// seconds: from a LAN tcp connect to an exec check near its timeout, and
// few, since every real server has its own.
func probeBuckets() []float64 {
	return []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
}

// probeStats accumulates every probe result per real server.
type probeStats struct {
	bounds []float64
	causes []string // health.Causes(), in order

	mu   sync.Mutex
	byRS map[health.Key]*probeCounts
}

// probeCounts is one real server's probe results: counts per histogram
// bucket (not cumulative: in[i] are those in (bounds[i-1], bounds[i]],
// the last those above every bound), their sum and the failures by
// cause, in probeStats.causes' order.
type probeCounts struct {
	in       []uint64
	count    uint64
	sum      float64
	failures []uint64
}

func newProbeStats() *probeStats {
	return &probeStats{bounds: probeBuckets(), causes: health.Causes(), byRS: map[health.Key]*probeCounts{}}
}

// observe is the health engine's OnResult hook.
func (s *probeStats) observe(k health.Key, r health.Result) {
	sec := r.Latency.Seconds()
	b := len(s.bounds)
	for i, le := range s.bounds {
		if sec <= le {
			b = i
			break
		}
	}
	cause := -1
	if c := r.Cause(); c != "" {
		cause = slices.Index(s.causes, c)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pc := s.byRS[k]
	if pc == nil {
		pc = &probeCounts{in: make([]uint64, len(s.bounds)+1), failures: make([]uint64, len(s.causes))}
		s.byRS[k] = pc
	}
	pc.in[b]++
	pc.count++
	pc.sum += sec
	if cause >= 0 {
		pc.failures[cause]++
	}
}

// take returns a copy of the counts of every real server in keep and
// forgets the others, removed from the configuration: their series end.
func (s *probeStats) take(keep map[health.Key]bool) map[health.Key]probeCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[health.Key]probeCounts, len(s.byRS))
	for k, pc := range s.byRS {
		if !keep[k] {
			delete(s.byRS, k)
			continue
		}
		out[k] = probeCounts{in: slices.Clone(pc.in), count: pc.count, sum: pc.sum, failures: slices.Clone(pc.failures)}
	}
	return out
}

// metricsState is what one scrape reads of the daemon.
type metricsState struct {
	report *Report
	// quorumLost is, per virtual server, whether it has lost quorum
	// (the rule of the sorry server and of the quorum hooks).
	quorumLost map[string]bool
}

// metricsState reads the daemon for a scrape.
func (d *daemon) metricsState() (*metricsState, error) {
	rep, err := d.Status()
	if err != nil {
		return nil, err
	}
	return &metricsState{report: rep, quorumLost: d.hooks.quorumLost()}, nil
}

// ready is /readyz's verdict: nil once a configuration is loaded and the
// last kernel sync succeeded. A stale configuration (a refused reload)
// does not make the daemon unready: it keeps serving the previous one.
func (d *daemon) ready() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.cfg == nil:
		return errors.New("no configuration loaded")
	case d.syncedAt.IsZero():
		return errors.New("kernel table not synced yet")
	case d.syncErr != nil:
		return fmt.Errorf("last kernel sync failed: %w", d.syncErr)
	}
	return nil
}

// metricsWarnings says what of cfg's [metrics] waits for a restart: the
// listener stays where the daemon bound it at start.
func (d *daemon) metricsWarnings(cfg *conf.Config) []string {
	if cfg.Metrics.Listen == d.metricsListen {
		return nil
	}
	from, to := d.metricsListen, cfg.Metrics.Listen
	if from == "" {
		from = "off"
	}
	if to == "" {
		to = "off"
	}
	d.log.Warn("[metrics] listen changed: it takes effect when lvsha restarts", "op", "reload", "running", from, "file", to)
	return []string{fmt.Sprintf("metrics.listen: %s, running %s: takes effect when lvsha restarts", to, from)}
}

// serveMetrics binds listen (a [metrics] listen, "" for none) and serves
// the daemon's metrics there until the returned stop is called. The
// engine reports its probe results to the metrics from now on. A
// listener that cannot bind is an error: the daemon must not run without
// the monitoring it was configured with.
func (d *daemon) serveMetrics(listen string, engine *health.Engine) (stop func(), err error) {
	if listen == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listener ([metrics] listen = %q): %w", listen, err)
	}
	d.metricsListen = listen
	stats := newProbeStats()
	engine.OnResult(stats.observe)
	h := metricsHandler(d.log, newMetricsCollector(d.metricsState, stats), d.ready)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics listener stopped", "op", "metrics", "listen", listen, "error", err)
		}
	}()
	d.log.Info("serving metrics", "op", "start", "listen", ln.Addr().String())
	return func() {
		engine.OnResult(nil)
		// A scrape in flight may finish; one that hangs does not hold
		// the daemon's exit.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
	}, nil
}

// metricsHandler serves /metrics from a registry of its own holding c
// and the Go runtime's and process's collectors, /healthz (the process
// answers) and /readyz (ready's verdict).
func metricsHandler(log *slog.Logger, c prometheus.Collector, ready func() error) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A scrape that fails in part (the kernel table unreadable)
		// still serves the rest, and says why in the log.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// metricsCollector is the prometheus.Collector of a daemon.
type metricsCollector struct {
	state func() (*metricsState, error)
	stats *probeStats

	buildInfo                                  *prometheus.Desc
	configLoaded, configStale                  *prometheus.Desc
	reloadOK, reloadTime                       *prometheus.Desc
	syncOK, syncTime, syncErrors               *prometheus.Desc
	vsInKernel, vsRealServers, vsLive          *prometheus.Desc
	vsQuorum, vsSorry                          *prometheus.Desc
	vsConns, vsInPkts, vsOutPkts               *prometheus.Desc
	vsInBytes, vsOutBytes                      *prometheus.Desc
	vsActive, vsInactive                       *prometheus.Desc
	rsUp, rsDrained, rsMaint                   *prometheus.Desc
	rsWeight, rsKernelWeight                   *prometheus.Desc
	rsProbeDuration, rsFailures, rsTransitions *prometheus.Desc
	vrrpState, vrrpPrio, vrrpBasePrio          *prometheus.Desc
	vrrpTransitions, vrrpSent, vrrpReceived    *prometheus.Desc
	vrrpInvalid                                *prometheus.Desc
}

func newMetricsCollector(state func() (*metricsState, error), stats *probeStats) *metricsCollector {
	// The virtual server's label names follow node_exporter's ipvs
	// collector (local_address, local_port, local_mark, proto), so its
	// counters join with node_ipvs_*; a real server's are its
	// remote_address and remote_port there.
	vsLabels := []string{"virtual_server", "local_address", "local_port", "local_mark", "proto"}
	rsLabels := []string{"virtual_server", "remote_address", "remote_port"}
	vrrpLabels := []string{"vrrp_instance", "interface", "vrid"}
	d := func(name, help string, labels []string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc("lvsha_"+name, help, append(slices.Clone(labels), extra...), nil)
	}
	return &metricsCollector{
		state: state, stats: stats,
		buildInfo:    d("build_info", "Always 1; the labels say which lvsha runs.", nil, "version", "revision", "goversion"),
		configLoaded: d("config_loaded", "1 when the daemon runs a configuration.", nil),
		configStale:  d("config_stale", "1 when the last reload failed and the daemon runs the previous configuration.", nil),
		reloadOK:     d("config_last_reload_successful", "1 when the last reload (or the start) succeeded.", nil),
		reloadTime:   d("config_last_reload_success_timestamp_seconds", "When a reload last succeeded, or the daemon started.", nil),
		syncOK:       d("kernel_last_sync_successful", "1 when the kernel took the whole table at the last sync.", nil),
		syncTime:     d("kernel_last_sync_timestamp_seconds", "When the daemon last synced the kernel's IPVS table.", nil),
		syncErrors:   d("kernel_sync_errors_total", "Syncs of the IPVS table the kernel refused, in whole or part.", nil),

		vsInKernel:    d("virtual_server_in_kernel", "1 when the virtual service is in the kernel's IPVS table.", vsLabels),
		vsRealServers: d("virtual_server_real_servers", "Real servers configured (the sorry server not counted).", vsLabels),
		vsLive:        d("virtual_server_live_real_servers", "Real servers up by their checks and not out by hand.", vsLabels),
		vsQuorum:      d("virtual_server_quorum_met", "1 when the up real servers' weight meets the quorum (with hysteresis).", vsLabels),
		vsSorry:       d("virtual_server_sorry_server_active", "1 when the sorry server serves in place of the real servers.", vsLabels),
		vsConns:       d("virtual_server_connections_total", "Connections the kernel scheduled to the virtual service.", vsLabels),
		vsInPkts:      d("virtual_server_incoming_packets_total", "Packets in, as the kernel counts them.", vsLabels),
		vsOutPkts:     d("virtual_server_outgoing_packets_total", "Packets out, as the kernel counts them.", vsLabels),
		vsInBytes:     d("virtual_server_incoming_bytes_total", "Bytes in, as the kernel counts them.", vsLabels),
		vsOutBytes:    d("virtual_server_outgoing_bytes_total", "Bytes out, as the kernel counts them.", vsLabels),
		vsActive:      d("virtual_server_connections_active", "Active connections over all the real servers (ipvsadm ActConn).", vsLabels),
		vsInactive:    d("virtual_server_connections_inactive", "Inactive connections over all the real servers (ipvsadm InActConn).", vsLabels),

		rsUp:            d("real_server_up", "1 when the real server is up by its checks (or has none).", rsLabels),
		rsDrained:       d("real_server_drained", "1 while drained by hand (lvsha drain): weight 0, established connections go on.", rsLabels),
		rsMaint:         d("real_server_maintenance", "1 while in maintenance by hand (lvsha maint): out of the kernel's table.", rsLabels),
		rsWeight:        d("real_server_weight", "The configured weight.", rsLabels),
		rsKernelWeight:  d("real_server_kernel_weight", "The weight in the kernel's table; absent when the real server is not in it.", rsLabels),
		rsProbeDuration: d("real_server_probe_duration_seconds", "How long each probe of the real server took.", rsLabels),
		rsFailures:      d("real_server_probe_failures_total", "Failed probes by cause: timeout, refused, status, body, other.", rsLabels, "cause"),
		rsTransitions:   d("real_server_transitions_total", "Changes between up and down since its probe started.", rsLabels),

		vrrpState:       d("vrrp_state", "The instance's state, numbered as keepalived's: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.", vrrpLabels),
		vrrpPrio:        d("vrrp_priority", "The priority the instance advertises now (tracking applied).", vrrpLabels),
		vrrpBasePrio:    d("vrrp_base_priority", "The configured priority.", vrrpLabels),
		vrrpTransitions: d("vrrp_transitions_total", "State changes of the instance.", vrrpLabels),
		vrrpSent:        d("vrrp_adverts_sent_total", "Adverts sent, one per destination.", vrrpLabels),
		vrrpReceived:    d("vrrp_adverts_received_total", "Valid adverts received.", vrrpLabels),
		vrrpInvalid:     d("vrrp_adverts_invalid_total", "Packets received and dropped, by reason.", vrrpLabels, "reason"),
	}
}

// Describe sends every descriptor.
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.configLoaded, c.configStale, c.reloadOK, c.reloadTime,
		c.syncOK, c.syncTime, c.syncErrors, c.vsInKernel, c.vsRealServers, c.vsLive, c.vsQuorum, c.vsSorry,
		c.vsConns, c.vsInPkts, c.vsOutPkts, c.vsInBytes, c.vsOutBytes, c.vsActive, c.vsInactive,
		c.rsUp, c.rsDrained, c.rsMaint, c.rsWeight, c.rsKernelWeight, c.rsProbeDuration, c.rsFailures, c.rsTransitions,
		c.vrrpState, c.vrrpPrio, c.vrrpBasePrio, c.vrrpTransitions, c.vrrpSent, c.vrrpReceived, c.vrrpInvalid} {
		ch <- d
	}
}

// vrrpStateNumber is keepalived's number for an instance state (as its
// exporters report it); lvsha's STOPPING (a master resigning at
// shutdown) and RESTARTING (an instance a reload rebuilds) are 0, INIT:
// neither serves as master nor backup.
func vrrpStateNumber(s string) float64 {
	switch s {
	case "BACKUP":
		return 1
	case "MASTER":
		return 2
	case "FAULT":
		return 3
	}
	return 0
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect reads the daemon and sends every metric.
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	version, revision, _ := buildVersion()
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, version, revision, runtime.Version())
	st, err := c.state()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.configLoaded, fmt.Errorf("read the daemon's state: %w", err))
		return
	}
	r := st.report
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.configLoaded, 1)
	gauge(c.configStale, b2f(r.ConfigStale))
	gauge(c.reloadOK, b2f(!r.ConfigStale))
	gauge(c.reloadTime, unixSeconds(r.ReloadedAt))
	if !r.SyncedAt.IsZero() {
		gauge(c.syncOK, b2f(r.SyncError == ""))
		gauge(c.syncTime, unixSeconds(r.SyncedAt))
	}
	counter(c.syncErrors, float64(r.SyncErrors))

	keep := map[health.Key]bool{}
	type rsRow struct {
		key    health.Key
		labels []string
		rr     *RealReport
	}
	var rows []rsRow
	for i := range r.Services {
		s := &r.Services[i]
		// As node_exporter labels them: a firewall-mark service has
		// proto FWM, its mark, no address and port 0.
		mark, proto := "", strings.ToUpper(s.Protocol)
		if s.FWMark != 0 {
			mark, proto = strconv.FormatUint(uint64(s.FWMark), 10), "FWM"
		}
		vl := []string{s.Name, s.Address, strconv.Itoa(int(s.Port)), mark, proto}
		gauge(c.vsInKernel, b2f(s.InKernel), vl...)
		gauge(c.vsSorry, b2f(s.SorryActive), vl...)
		gauge(c.vsQuorum, b2f(!st.quorumLost[s.Name]), vl...)
		var configured, live, active, inactive int
		for j := range s.RealServers {
			rr := &s.RealServers[j]
			active += rr.ActiveConn
			inactive += rr.InactiveConn
			if rr.Sorry {
				continue
			}
			configured++
			if rr.Health != "down" && rr.Manual == "" {
				live++
			}
			ap, err := netip.ParseAddrPort(rr.Address)
			if err != nil {
				continue // cannot happen: buildReport writes an AddrPort
			}
			k := health.Key{VirtualServer: s.Name, RealServer: ap}
			keep[k] = true
			rows = append(rows, rsRow{key: k, rr: rr, labels: []string{s.Name, ap.Addr().String(), strconv.Itoa(int(ap.Port()))}})
		}
		gauge(c.vsRealServers, float64(configured), vl...)
		gauge(c.vsLive, float64(live), vl...)
		if s.InKernel {
			counter(c.vsConns, float64(s.Stats.Conns), vl...)
			counter(c.vsInPkts, float64(s.Stats.InPkts), vl...)
			counter(c.vsOutPkts, float64(s.Stats.OutPkts), vl...)
			counter(c.vsInBytes, float64(s.Stats.InBytes), vl...)
			counter(c.vsOutBytes, float64(s.Stats.OutBytes), vl...)
			gauge(c.vsActive, float64(active), vl...)
			gauge(c.vsInactive, float64(inactive), vl...)
		}
	}

	// In the order the registry sorts them to (by label values, label
	// names sorted: remote_address, remote_port, virtual_server), which
	// its sort then only confirms: at 10,000 real servers sorting
	// unsorted series was a quarter of a scrape.
	slices.SortFunc(rows, func(a, b rsRow) int {
		for i := range 3 {
			// labels are virtual_server, remote_address, remote_port
			j := (i + 1) % 3
			if c := strings.Compare(a.labels[j], b.labels[j]); c != 0 {
				return c
			}
		}
		return 0
	})
	probes := c.stats.take(keep)
	for _, row := range rows {
		rr, l := row.rr, row.labels
		gauge(c.rsUp, b2f(rr.Health != "down"), l...)
		gauge(c.rsDrained, b2f(rr.Manual == manualDrain), l...)
		gauge(c.rsMaint, b2f(rr.Manual == manualMaint), l...)
		gauge(c.rsWeight, float64(rr.Weight), l...)
		if rr.KernelWeight != nil {
			gauge(c.rsKernelWeight, float64(*rr.KernelWeight), l...)
		}
		counter(c.rsTransitions, float64(rr.Transitions), l...)
		pc, ok := probes[row.key]
		if !ok {
			continue // never probed (no check, or none finished yet)
		}
		// A map of its own: the histogram keeps it until it is written.
		buckets := make(map[float64]uint64, len(c.stats.bounds))
		var cum uint64
		for i, le := range c.stats.bounds {
			cum += pc.in[i]
			buckets[le] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.rsProbeDuration, pc.count, pc.sum, buckets, l...)
		for i, cause := range c.stats.causes {
			counter(c.rsFailures, float64(pc.failures[i]), append(l[:len(l):len(l)], cause)...)
		}
	}

	for _, v := range r.VRRP {
		l := []string{v.Name, v.Interface, strconv.Itoa(v.RouterID)}
		gauge(c.vrrpState, vrrpStateNumber(v.State), l...)
		gauge(c.vrrpPrio, float64(v.Priority), l...)
		gauge(c.vrrpBasePrio, float64(v.BasePriority), l...)
		counter(c.vrrpTransitions, float64(v.Transitions), l...)
		counter(c.vrrpSent, float64(v.AdvertsSent), l...)
		counter(c.vrrpReceived, float64(v.AdvertsReceived), l...)
		for reason, n := range v.Dropped {
			counter(c.vrrpInvalid, float64(n), append(l[:len(l):len(l)], reason)...)
		}
	}
}

// unixSeconds is t as a Prometheus timestamp value; 0 for the zero time.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
