package main

import (
	"cmp"
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

	"github.com/lvsha/lvsha/health"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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

// take copies the counts of rows' real servers into them (nil for one
// never probed) and forgets every other, removed from the configuration:
// their series end. The copies share one allocation.
func (s *probeStats) take(rows []rsRow) {
	keep := make(map[health.Key]bool, len(rows))
	for _, row := range rows {
		keep[row.key] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	nIn, nFail := len(s.bounds)+1, len(s.causes)
	backing := make([]uint64, 0, (nIn+nFail)*len(s.byRS))
	counts := make([]probeCounts, 0, len(s.byRS))
	for i := range rows {
		pc := s.byRS[rows[i].key]
		if pc == nil {
			continue
		}
		backing = append(backing, pc.in...)
		in := backing[len(backing)-nIn:]
		backing = append(backing, pc.failures...)
		counts = append(counts, probeCounts{in: in, count: pc.count, sum: pc.sum, failures: backing[len(backing)-nFail:]})
		rows[i].probe = &counts[len(counts)-1]
	}
	for k := range s.byRS {
		if !keep[k] {
			delete(s.byRS, k)
		}
	}
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

// metricsServer serves the daemon's metrics where [metrics] listen says,
// and moves when a reload changes it. The handler and the probe counts
// outlive a move: counters go on where they were.
type metricsServer struct {
	log     *slog.Logger
	handler http.Handler
	engine  *health.Engine // nil: no probe results (tests)
	stats   *probeStats

	mu     sync.Mutex
	listen string // "" while off
	srv    *http.Server
	done   chan struct{} // closed when srv.Serve has returned
}

// metricsMove is a listener bound for a reload not yet accepted: commit
// serves on it and closes the previous one, abort closes it. A nil
// *metricsMove (the address unchanged) does nothing.
type metricsMove struct {
	m      *metricsServer
	listen string
	ln     net.Listener // nil: turn metrics off
}

// bind binds listen ("" for none) as a listener for [metrics] listen.
func bindMetrics(listen string) (net.Listener, error) {
	if listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listener ([metrics] listen = %q): %w", listen, err)
	}
	return ln, nil
}

// prepare binds listen if it is not where m serves, so that a reload that
// cannot bind is refused while the old listener keeps serving.
func (m *metricsServer) prepare(listen string) (*metricsMove, error) {
	if m == nil {
		// A daemon built without serveMetrics (tests) ignores [metrics].
		return nil, nil
	}
	m.mu.Lock()
	same := listen == m.listen
	m.mu.Unlock()
	if same {
		return nil, nil
	}
	ln, err := bindMetrics(listen)
	if err != nil {
		return nil, err
	}
	return &metricsMove{m: m, listen: listen, ln: ln}, nil
}

// check says whether prepare(listen) would succeed, binding nothing for
// long: for a planned reload.
func (m *metricsServer) check(listen string) error {
	mv, err := m.prepare(listen)
	mv.abort()
	return err
}

func (mv *metricsMove) abort() {
	if mv != nil && mv.ln != nil {
		mv.ln.Close()
	}
}

// commit serves on the new listener and stops the old one; an old scrape
// in flight gets up to a second.
func (mv *metricsMove) commit() {
	if mv == nil {
		return
	}
	m := mv.m
	m.mu.Lock()
	defer m.mu.Unlock()
	from := m.listen
	m.stopLocked()
	if mv.ln != nil {
		m.serveLocked(mv.ln, mv.listen)
	}
	m.log.Info("metrics listener moved", "op", "reload", "from", cmp.Or(from, "off"), "to", cmp.Or(mv.listen, "off"))
}

// serveLocked serves on ln, the address of [metrics] listen = listen.
func (m *metricsServer) serveLocked(ln net.Listener, listen string) {
	if m.engine != nil {
		m.engine.OnResult(m.stats.observe)
	}
	srv := &http.Server{Handler: m.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("metrics listener stopped", "op", "metrics", "listen", listen, "error", err)
		}
	}()
	m.listen, m.srv, m.done = listen, srv, done
	m.log.Info("serving metrics", "op", "metrics", "listen", ln.Addr().String())
}

// stopLocked stops serving, if m serves.
func (m *metricsServer) stopLocked() {
	if m.srv == nil {
		return
	}
	if m.engine != nil {
		m.engine.OnResult(nil)
	}
	// A scrape in flight may finish; one that hangs does not hold the
	// daemon's exit or its reload.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.done
	m.listen, m.srv, m.done = "", nil, nil
}

// serveMetrics binds listen (a [metrics] listen, "" for none) and serves
// the daemon's metrics there, and wherever reloads move it, until the
// returned stop is called. The engine reports its probe results to the
// metrics while they are served. A listener that cannot bind is an
// error: the daemon must not run without the monitoring it was
// configured with.
func (d *daemon) serveMetrics(listen string, engine *health.Engine) (stop func(), err error) {
	ln, err := bindMetrics(listen)
	if err != nil {
		return nil, err
	}
	stats := newProbeStats()
	m := &metricsServer{log: d.log, engine: engine, stats: stats,
		handler: metricsHandler(d.log, newMetricsCollector(d.metricsState, stats), d.ready)}
	if ln != nil {
		m.serveLocked(ln, listen) // m is not shared yet
	}
	d.metrics = m
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.stopLocked()
	}, nil
}

// metricsHandler serves /metrics (see metricsEndpoint) from c and the
// Go runtime's and process's collectors, /healthz (the process answers)
// and /readyz (ready's verdict).
func metricsHandler(log *slog.Logger, c *metricsCollector, ready func() error) http.Handler {
	base := prometheus.NewRegistry()
	base.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", newMetricsEndpoint(log, c, base))
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

// metricsCollector is the prometheus.Collector of a daemon. Its virtual
// and real servers' families, nearly every series at scale, are also
// written straight as text by metricsEndpoint (metricstext.go); both
// paths read the same snapshot and the same family tables (vs, rs and
// the probe families), so they cannot say different things.
type metricsCollector struct {
	state func() (*metricsState, error)
	stats *probeStats

	buildInfo                               *prometheus.Desc
	configLoaded, configStale               *prometheus.Desc
	reloadOK, reloadTime                    *prometheus.Desc
	syncOK, syncTime, syncErrors            *prometheus.Desc
	vrrpState, vrrpPrio, vrrpBasePrio       *prometheus.Desc
	vrrpTransitions, vrrpSent, vrrpReceived *prometheus.Desc
	vrrpInvalid                             *prometheus.Desc
	vrrpLinkDropped                         *prometheus.Desc
	vrrpBFDTakeovers, vrrpBFDMasterAlive    *prometheus.Desc
	vrrpSplitBrainYields                    *prometheus.Desc
	bfdState, bfdDetection, bfdDowns        *prometheus.Desc
	bfdDropped                              *prometheus.Desc
	kernelConns                             *prometheus.Desc
	controlRefused                          *prometheus.Desc
	syncDaemonRunning, syncDaemonInfo       *prometheus.Desc
	syncDaemonOK, syncDaemonErrors          *prometheus.Desc
	syncPreemptHoldUntil                    *prometheus.Desc
	clusterAlive, clusterDrift              *prometheus.Desc
	clusterSplitBrain, clusterSplitBrains   *prometheus.Desc
	clusterGossipErrors                     *prometheus.Desc

	vsLabels, rsLabels labelSet
	// vs and rs are the families of one sample per virtual, real server.
	vs []seriesFamily[vsRow]
	rs []seriesFamily[rsRow]
	// The real servers' probe families, of a histogram and of one
	// counter per cause; their value is unused.
	rsProbeDuration, rsFailures seriesFamily[rsRow]

	// text is how metricsEndpoint writes the virtual and real servers'
	// families, sorted by name as the registry sorts families.
	text []textFamily
	// causeOrder indexes stats.causes in the order of their names: the
	// order of the failures' series, which sort by cause first.
	causeOrder []int
	// le is each of stats.bounds as the exposition writes it.
	le [][]byte
}

// seriesFamily is a family of one sample per row R (a virtual or a real
// server): its descriptor for the registry, its name, help and type for
// the text path, and its value.
type seriesFamily[R any] struct {
	name, help string
	desc       *prometheus.Desc
	typ        prometheus.ValueType
	// value is the row's sample; false for none (a real server out of
	// the kernel has no kernel weight).
	value func(*R) (float64, bool)
}

func newFamily[R any](name, help string, labels labelSet, typ prometheus.ValueType, value func(*R) (float64, bool), extra ...string) seriesFamily[R] {
	name = "lvsha_" + name
	return seriesFamily[R]{name: name, help: help, typ: typ, value: value,
		desc: prometheus.NewDesc(name, help, append(slices.Clone(labels.names), extra...), nil)}
}

// always is value of a family every row has.
func always[R any](value func(*R) float64) func(*R) (float64, bool) {
	return func(r *R) (float64, bool) { return value(r), true }
}

// labelSet is the label names of a kind of row, in its descriptors'
// order, and that order sorted by name: the order the exposition writes
// labels in and the registry sorts series by.
type labelSet struct {
	names  []string
	sorted []int // indexes of names, sorted by name
}

func newLabelSet(names ...string) labelSet {
	sorted := make([]int, len(names))
	for i := range sorted {
		sorted[i] = i
	}
	slices.SortFunc(sorted, func(a, b int) int { return strings.Compare(names[a], names[b]) })
	return labelSet{names: names, sorted: sorted}
}

// compare orders two rows' label values as the registry orders series.
func (ls labelSet) compare(a, b []string) int {
	for _, i := range ls.sorted {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// format writes label values as the exposition does: name="value",
// names sorted, comma separated.
func (ls labelSet) format(values []string) []byte {
	var b []byte
	for n, i := range ls.sorted {
		if n > 0 {
			b = append(b, ',')
		}
		b = appendLabel(b, ls.names[i], values[i])
	}
	return b
}

func newMetricsCollector(state func() (*metricsState, error), stats *probeStats) *metricsCollector {
	// The virtual server's label names follow node_exporter's ipvs
	// collector (local_address, local_port, local_mark, proto), so its
	// counters join with node_ipvs_*; a real server's are its
	// remote_address and remote_port there.
	vsLabels := newLabelSet("virtual_server", "local_address", "local_port", "local_mark", "proto")
	rsLabels := newLabelSet("virtual_server", "remote_address", "remote_port")
	vrrpLabels := []string{"vrrp_instance", "interface", "vrid"}
	d := func(name, help string, labels []string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc("lvsha_"+name, help, append(slices.Clone(labels), extra...), nil)
	}
	vs := func(name, help string, typ prometheus.ValueType, value func(*vsRow) (float64, bool)) seriesFamily[vsRow] {
		return newFamily(name, help, vsLabels, typ, value)
	}
	// The kernel's counters of a service, present while it is in the
	// kernel.
	inKernel := func(value func(*vsRow) float64) func(*vsRow) (float64, bool) {
		return func(v *vsRow) (float64, bool) { return value(v), v.s.InKernel }
	}
	rs := func(name, help string, typ prometheus.ValueType, value func(*rsRow) (float64, bool)) seriesFamily[rsRow] {
		return newFamily(name, help, rsLabels, typ, value)
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	c := &metricsCollector{
		state: state, stats: stats, vsLabels: vsLabels, rsLabels: rsLabels,
		buildInfo:    d("build_info", "Always 1; the labels say which lvsha runs.", nil, "version", "revision", "goversion"),
		configLoaded: d("config_loaded", "1 when the daemon runs a configuration.", nil),
		configStale:  d("config_stale", "1 when the last reload failed and the daemon runs the previous configuration.", nil),
		reloadOK:     d("config_last_reload_successful", "1 when the last reload (or the start) succeeded.", nil),
		reloadTime:   d("config_last_reload_success_timestamp_seconds", "When a reload last succeeded, or the daemon started.", nil),
		syncOK:       d("kernel_last_sync_successful", "1 when the kernel took the whole table at the last sync.", nil),
		syncTime:     d("kernel_last_sync_timestamp_seconds", "When the daemon last synced the kernel's IPVS table.", nil),
		syncErrors:   d("kernel_sync_errors_total", "Syncs of the IPVS table the kernel refused, in whole or part.", nil),

		vrrpState:            d("vrrp_state", "The instance's state, numbered as keepalived's: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.", vrrpLabels),
		vrrpPrio:             d("vrrp_priority", "The priority the instance advertises now (tracking applied).", vrrpLabels),
		vrrpBasePrio:         d("vrrp_base_priority", "The configured priority.", vrrpLabels),
		vrrpTransitions:      d("vrrp_transitions_total", "State changes of the instance.", vrrpLabels),
		vrrpSent:             d("vrrp_adverts_sent_total", "Adverts sent, one per destination.", vrrpLabels),
		vrrpReceived:         d("vrrp_adverts_received_total", "Valid adverts received.", vrrpLabels),
		vrrpInvalid:          d("vrrp_adverts_invalid_total", "Packets received and dropped, by reason.", vrrpLabels, "reason"),
		controlRefused:       d("control_refused_total", "Control-socket clients refused because they were not root (their credentials, SO_PEERCRED).", nil),
		kernelConns:          d("kernel_connections", "Connections in the kernel's IPVS table: active and inactive over every real server, those a backup's sync daemon learnt included.", nil),
		syncDaemonRunning:    d("ipvs_sync_daemon_running", "1 while the kernel runs the IPVS connection sync daemon of this state (master, backup), as last read; present while lvsha drives them (lvs_sync).", nil, "state"),
		syncDaemonInfo:       d("ipvs_sync_daemon_info", "Always 1, one per running IPVS sync daemon; the labels are its state, interface and sync id.", nil, "state", "interface", "sync_id"),
		syncDaemonOK:         d("ipvs_sync_daemon_last_apply_successful", "1 when the kernel runs the sync daemon the VRRP election wants (the last attempt succeeded).", nil),
		syncDaemonErrors:     d("ipvs_sync_daemon_errors_total", "Attempts to start or stop the IPVS sync daemons that failed.", nil),
		syncPreemptHoldUntil: d("ipvs_sync_preempt_hold_until_timestamp_seconds", "Until when (Unix time) the lvs_sync instance does not preempt a lower-priority master while its backup sync daemon learns the connections (preempt_hold); 0 when none was held.", nil),
		clusterAlive:         d("cluster_directors_alive", "Directors of the cluster alive as this one sees them, itself included; present with [cluster].", nil),
		clusterDrift:         d("cluster_director_drift", "1 for each live director whose configuration differs from this one's (lvsha status --cluster names what differs).", nil, "director"),
		clusterSplitBrain:    d("cluster_split_brain", "1 for each VRRP instance that more than one live director is master of now.", nil, "vrrp_instance"),
		clusterSplitBrains:   d("cluster_split_brains_total", "Split brains that started since the daemon started.", nil),
		clusterGossipErrors:  d("cluster_gossip_errors_total", "memberlist's warnings and errors by kind: label, decrypt, checksum, stream and decode are packets or streams on the gossip port it refused; other, failed probes and syncs.", nil, "kind"),
		vrrpLinkDropped:      d("vrrp_link_dropped_total", "VRRP packets an interface received for no instance here, by reason: unknown_vrid (another group's, or a peer with another virtual_router_id), short, or kernel (dropped by the kernel for a full socket buffer: lvsha fell behind).", nil, "interface", "family", "reason"),
		vrrpBFDTakeovers:     d("vrrp_bfd_takeovers_total", "Takeovers because the BFD session with the master failed (bfd fast takeover).", vrrpLabels),
		vrrpBFDMasterAlive:   d("vrrp_bfd_master_alive_total", "BFD takeovers the deposed master's adverts contradicted within Master_Down_Interval: BFD lost, master alive; master went back to it.", vrrpLabels),
		vrrpSplitBrainYields: d("vrrp_split_brain_yields_total", "Times the instance gave master up to another master the cluster saw (split_brain = \"resolve\").", vrrpLabels),
		bfdState:             d("bfd_session_state", "A BFD session's state, numbered as RFC 5880: 0 AdminDown, 1 Down, 2 Init, 3 Up.", nil, "interface", "local", "peer"),
		bfdDetection:         d("bfd_session_detection_time_seconds", "How long the peer may be silent before the session goes Down; 0 before it is heard.", nil, "interface", "local", "peer"),
		bfdDowns:             d("bfd_session_downs_total", "Times the session failed (Up to Down) since lvsha started.", nil, "interface", "local", "peer"),
		bfdDropped:           d("bfd_dropped_total", "BFD control packets a local end received and dropped, by reason: the checks of RFC 5880 6.8.6, ttl (not 255, RFC 5881 5), no_session (names no session here, or not from its peer), and accept_limit (would open a 65th session answering a peer).", nil, "interface", "local", "reason"),

		vs: []seriesFamily[vsRow]{
			vs("virtual_server_in_kernel", "1 when the virtual service is in the kernel's IPVS table.", gauge,
				always(func(v *vsRow) float64 { return b2f(v.s.InKernel) })),
			vs("virtual_server_real_servers", "Real servers configured (the sorry server not counted).", gauge,
				always(func(v *vsRow) float64 { return float64(v.configured) })),
			vs("virtual_server_live_real_servers", "Real servers up by their checks and not out by hand.", gauge,
				always(func(v *vsRow) float64 { return float64(v.live) })),
			vs("virtual_server_quorum_met", "1 when the up real servers' weight meets the quorum (with hysteresis).", gauge,
				always(func(v *vsRow) float64 { return b2f(v.quorumMet) })),
			vs("virtual_server_sorry_server_active", "1 when the sorry server serves in place of the real servers.", gauge,
				always(func(v *vsRow) float64 { return b2f(v.s.SorryActive) })),
			vs("virtual_server_connections_total", "Connections the kernel scheduled to the virtual service.", counter,
				inKernel(func(v *vsRow) float64 { return float64(v.s.Stats.Conns) })),
			vs("virtual_server_incoming_packets_total", "Packets in, as the kernel counts them.", counter,
				inKernel(func(v *vsRow) float64 { return float64(v.s.Stats.InPkts) })),
			vs("virtual_server_outgoing_packets_total", "Packets out, as the kernel counts them.", counter,
				inKernel(func(v *vsRow) float64 { return float64(v.s.Stats.OutPkts) })),
			vs("virtual_server_incoming_bytes_total", "Bytes in, as the kernel counts them.", counter,
				inKernel(func(v *vsRow) float64 { return float64(v.s.Stats.InBytes) })),
			vs("virtual_server_outgoing_bytes_total", "Bytes out, as the kernel counts them.", counter,
				inKernel(func(v *vsRow) float64 { return float64(v.s.Stats.OutBytes) })),
			vs("virtual_server_connections_active", "Active connections over all the real servers (ipvsadm ActConn).", gauge,
				inKernel(func(v *vsRow) float64 { return float64(v.active) })),
			vs("virtual_server_connections_inactive", "Inactive connections over all the real servers (ipvsadm InActConn).", gauge,
				inKernel(func(v *vsRow) float64 { return float64(v.inactive) })),
		},
		rs: []seriesFamily[rsRow]{
			rs("real_server_up", "1 when the real server is up by its checks (or has none).", gauge,
				always(func(r *rsRow) float64 { return b2f(r.rr.Health != "down") })),
			rs("real_server_drained", "1 while drained by hand (lvsha drain): weight 0, established connections go on.", gauge,
				always(func(r *rsRow) float64 { return b2f(r.rr.Manual == manualDrain) })),
			rs("real_server_maintenance", "1 while in maintenance by hand (lvsha maint): out of the kernel's table.", gauge,
				always(func(r *rsRow) float64 { return b2f(r.rr.Manual == manualMaint) })),
			rs("real_server_weight", "The configured weight.", gauge,
				always(func(r *rsRow) float64 { return float64(r.rr.Weight) })),
			rs("real_server_kernel_weight", "The weight in the kernel's table; absent when the real server is not in it.", gauge,
				func(r *rsRow) (float64, bool) {
					if r.rr.KernelWeight == nil {
						return 0, false
					}
					return float64(*r.rr.KernelWeight), true
				}),
			rs("real_server_transitions_total", "Changes between up and down since its probe started.", counter,
				always(func(r *rsRow) float64 { return float64(r.rr.Transitions) })),
		},
		// A histogram has no ValueType: the text path names its type.
		rsProbeDuration: newFamily[rsRow]("real_server_probe_duration_seconds", "How long each probe of the real server took.", rsLabels, 0, nil),
		rsFailures:      newFamily[rsRow]("real_server_probe_failures_total", "Failed probes by cause: timeout, refused, status, body, other.", rsLabels, counter, nil, "cause"),
	}
	c.initText()
	return c
}

// Describe sends every descriptor.
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.configLoaded, c.configStale, c.reloadOK, c.reloadTime,
		c.syncOK, c.syncTime, c.syncErrors, c.rsProbeDuration.desc, c.rsFailures.desc,
		c.vrrpState, c.vrrpPrio, c.vrrpBasePrio, c.vrrpTransitions, c.vrrpSent, c.vrrpReceived, c.vrrpInvalid, c.vrrpLinkDropped,
		c.vrrpBFDTakeovers, c.vrrpBFDMasterAlive, c.vrrpSplitBrainYields, c.bfdState, c.bfdDetection, c.bfdDowns, c.bfdDropped,
		c.kernelConns, c.controlRefused, c.syncDaemonRunning, c.syncDaemonInfo, c.syncDaemonOK, c.syncDaemonErrors, c.syncPreemptHoldUntil,
		c.clusterAlive, c.clusterDrift, c.clusterSplitBrain, c.clusterSplitBrains, c.clusterGossipErrors} {
		ch <- d
	}
	for _, f := range c.vs {
		ch <- f.desc
	}
	for _, f := range c.rs {
		ch <- f.desc
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

// metricsSnapshot is what one scrape reads: the daemon's state (or why
// it could not be read), its virtual and real servers in the order the
// exposition lists them, the real servers with their probe counts.
type metricsSnapshot struct {
	st  *metricsState
	err error
	vs  []vsRow
	rs  []rsRow
}

// vsRow is a virtual server of a snapshot.
type vsRow struct {
	s *ServiceReport
	// labels are the values of the collector's vsLabels; text is
	// them as the exposition writes them.
	labels []string
	text   []byte
	// Its real servers configured, live (up and not out by hand), and
	// the connections over all its destinations, the sorry server's
	// included.
	configured, live, active, inactive int
	quorumMet                          bool
}

// rsRow is a real server of a snapshot.
type rsRow struct {
	key    health.Key
	rr     *RealReport
	labels []string // the values of the collector's rsLabels
	text   []byte   // labels as the exposition writes them
	probe  *probeCounts
}

// snapshot reads the daemon for one scrape. Probe counts of real servers
// no longer configured are forgotten: their series end.
func (c *metricsCollector) snapshot() *metricsSnapshot {
	st, err := c.state()
	if err != nil {
		return &metricsSnapshot{err: err}
	}
	snap := &metricsSnapshot{st: st}
	for i := range st.report.Services {
		s := &st.report.Services[i]
		// As node_exporter labels them: a firewall-mark service has
		// proto FWM, its mark, no address and port 0.
		mark, proto := "", strings.ToUpper(s.Protocol)
		if s.FWMark != 0 {
			mark, proto = strconv.FormatUint(uint64(s.FWMark), 10), "FWM"
		}
		v := vsRow{s: s, labels: []string{s.Name, s.Address, strconv.Itoa(int(s.Port)), mark, proto}, quorumMet: !st.quorumLost[s.Name]}
		for j := range s.RealServers {
			rr := &s.RealServers[j]
			v.active += rr.ActiveConn
			v.inactive += rr.InactiveConn
			if rr.Sorry {
				continue
			}
			v.configured++
			if rr.Health != "down" && rr.Manual == "" {
				v.live++
			}
			ap, err := netip.ParseAddrPort(rr.Address)
			if err != nil {
				continue // cannot happen: buildReport writes an AddrPort
			}
			snap.rs = append(snap.rs, rsRow{key: health.Key{VirtualServer: s.Name, RealServer: ap}, rr: rr,
				labels: []string{s.Name, ap.Addr().String(), strconv.Itoa(int(ap.Port()))}})
		}
		snap.vs = append(snap.vs, v)
	}
	// In the order the registry sorts series to, which its sort then
	// only confirms and the text path writes as is: at 10,000 real
	// servers the registry sorting unsorted series was a quarter of a
	// scrape.
	slices.SortFunc(snap.vs, func(a, b vsRow) int { return c.vsLabels.compare(a.labels, b.labels) })
	slices.SortFunc(snap.rs, func(a, b rsRow) int { return c.rsLabels.compare(a.labels, b.labels) })
	for i := range snap.vs {
		snap.vs[i].text = c.vsLabels.format(snap.vs[i].labels)
	}
	for i := range snap.rs {
		snap.rs[i].text = c.rsLabels.format(snap.rs[i].labels)
	}
	c.stats.take(snap.rs)
	return snap
}

// Collect reads the daemon and sends every metric. It serves the
// formats other than text (protobuf), and is what the text path must
// equal.
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.snapshot()
	c.collectDaemon(ch, snap)
	collectRows(ch, c.vs, snap.vs, func(v *vsRow) []string { return v.labels })
	collectRows(ch, c.rs, snap.rs, func(r *rsRow) []string { return r.labels })
	c.collectProbes(ch, snap)
}

// collectDaemon sends snap's daemon and VRRP metrics: what the registry
// gathers on either path.
func (c *metricsCollector) collectDaemon(ch chan<- prometheus.Metric, snap *metricsSnapshot) {
	version, revision, _ := buildVersion()
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, version, revision, runtime.Version())
	if snap.err != nil {
		ch <- prometheus.NewInvalidMetric(c.configLoaded, fmt.Errorf("read the daemon's state: %w", snap.err))
		return
	}
	r := snap.st.report
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
	gauge(c.kernelConns, float64(r.KernelConns))
	counter(c.controlRefused, float64(r.ControlRefused))
	if cs := r.ConnSync; cs != nil {
		running := map[string]bool{}
		for _, d := range cs.Daemons {
			running[d.State] = true
			gauge(c.syncDaemonInfo, 1, d.State, d.Interface, strconv.FormatUint(uint64(d.SyncID), 10))
		}
		for _, st := range []string{"master", "backup"} {
			gauge(c.syncDaemonRunning, b2f(running[st]), st)
		}
		gauge(c.syncDaemonOK, b2f(cs.Error == ""))
		counter(c.syncDaemonErrors, float64(cs.Errors))
		gauge(c.syncPreemptHoldUntil, unixSeconds(cs.PreemptHoldUntil))
	}
	if cl := r.Cluster; cl != nil {
		alive := 0
		for _, d := range cl.Directors {
			if d.Alive {
				alive++
			}
			if d.Alive && d.Drift != "" {
				gauge(c.clusterDrift, 1, d.Name)
			}
		}
		gauge(c.clusterAlive, float64(alive))
		for _, sb := range cl.SplitBrains {
			gauge(c.clusterSplitBrain, 1, sb.Instance)
		}
		counter(c.clusterSplitBrains, float64(cl.SplitBrainsTotal))
		for kind, n := range cl.GossipErrors {
			counter(c.clusterGossipErrors, float64(n), kind)
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
		counter(c.vrrpBFDTakeovers, float64(v.BFDTakeovers), l...)
		counter(c.vrrpBFDMasterAlive, float64(v.BFDMasterAlive), l...)
		counter(c.vrrpSplitBrainYields, float64(v.SplitBrainYields), l...)
	}
	for _, s := range r.BFD {
		gauge(c.bfdState, float64(s.StateValue), s.Interface, s.Local, s.Peer)
		gauge(c.bfdDetection, s.DetectionTime.Seconds(), s.Interface, s.Local, s.Peer)
		counter(c.bfdDowns, float64(s.Downs), s.Interface, s.Local, s.Peer)
	}
	for _, l := range r.BFDLinks {
		for reason, n := range l.Dropped {
			counter(c.bfdDropped, float64(n), l.Interface, l.Local, reason)
		}
	}
	for _, l := range r.VRRPLinks {
		family := "ipv4"
		if l.IPv6 {
			family = "ipv6"
		}
		counter(c.vrrpLinkDropped, float64(l.UnknownVRID), l.Interface, family, "unknown_vrid")
		counter(c.vrrpLinkDropped, float64(l.Short), l.Interface, family, "short")
		counter(c.vrrpLinkDropped, float64(l.KernelDrops), l.Interface, family, "kernel")
	}
}

// collectRows sends the samples of families over rows.
func collectRows[R any](ch chan<- prometheus.Metric, families []seriesFamily[R], rows []R, labels func(*R) []string) {
	for i := range rows {
		for _, f := range families {
			if v, ok := f.value(&rows[i]); ok {
				ch <- prometheus.MustNewConstMetric(f.desc, f.typ, v, labels(&rows[i])...)
			}
		}
	}
}

// collectProbes sends the probe histograms and failures of snap's real
// servers probed.
func (c *metricsCollector) collectProbes(ch chan<- prometheus.Metric, snap *metricsSnapshot) {
	for _, row := range snap.rs {
		pc, l := row.probe, row.labels
		if pc == nil {
			continue // never probed (no check, or none finished yet)
		}
		// A map of its own: the histogram keeps it until it is written.
		buckets := make(map[float64]uint64, len(c.stats.bounds))
		var cum uint64
		for i, le := range c.stats.bounds {
			cum += pc.in[i]
			buckets[le] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.rsProbeDuration.desc, pc.count, pc.sum, buckets, l...)
		for i, cause := range c.stats.causes {
			ch <- prometheus.MustNewConstMetric(c.rsFailures.desc, prometheus.CounterValue, float64(pc.failures[i]), append(l[:len(l):len(l)], cause)...)
		}
	}
}

// daemonCollector is a metricsCollector's snapshot less its virtual and
// real servers, which the text path writes itself: what the registry
// gathers for one text scrape.
type daemonCollector struct {
	c    *metricsCollector
	snap *metricsSnapshot
}

func (d daemonCollector) Describe(ch chan<- *prometheus.Desc) { d.c.Describe(ch) }
func (d daemonCollector) Collect(ch chan<- prometheus.Metric) { d.c.collectDaemon(ch, d.snap) }

// unixSeconds is t as a Prometheus timestamp value; 0 for the zero time.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
