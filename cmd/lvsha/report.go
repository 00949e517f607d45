package main

import (
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/lvsha/lvsha/vrrp/bfdwatch"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/track"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// Report is what `lvsha status` shows: the daemon's view of every virtual
// server it manages, joined with the kernel's table and counters. Its JSON
// form (-o json) is a stable interface for scripts and monitoring.
type Report struct {
	// Schema is the version of this JSON form: it grows when a field is
	// removed or changes meaning, never when one is added.
	Schema     int       `json:"schema_version"`
	Director   string    `json:"director"`
	ConfigFile string    `json:"config_file"`
	LoadedAt   time.Time `json:"config_loaded_at"`
	// ConfigStale is true when the last reload failed and the daemon still
	// runs the previous good config; ReloadError says why.
	ConfigStale bool   `json:"config_stale"`
	ReloadError string `json:"reload_error,omitempty"`
	// ReloadedAt is when a reload last succeeded (changed or not), or
	// the daemon started.
	ReloadedAt time.Time `json:"last_reload_success"`
	SyncedAt   time.Time `json:"last_sync"`
	SyncError  string    `json:"sync_error,omitempty"`
	// SyncErrors counts the syncs the kernel refused (part of), since
	// the daemon started.
	SyncErrors uint64          `json:"sync_errors"`
	Services   []ServiceReport `json:"virtual_servers"`
	// Foreign lists kernel services the configuration does not name; lvsha
	// leaves them alone.
	Foreign []string `json:"foreign_services"`
	// VRRP is the state of each VRRP instance.
	VRRP []instance.Status `json:"vrrp_instances"`
	// VRRPLinks are the interfaces and families the instances' adverts
	// come in on, with what each dropped before any instance saw it.
	VRRPLinks []transport.LinkStats `json:"vrrp_links"`
	// BFD is each BFD session of fast takeover: with the masters the
	// backups follow, and answering peers that watch us.
	BFD []bfdwatch.Session `json:"bfd_sessions"`
	// BFDLinks are BFD's local ends, with the control packets each
	// dropped by reason (issue #20: a flood of invalid packets is
	// counted, and changes nothing).
	BFDLinks []bfdwatch.Link `json:"bfd_links"`
	// TrackExecs is the state of each track_exec an instance tracks.
	TrackExecs []TrackExecReport `json:"track_execs"`
	// ConnSync is the IPVS connection sync daemons lvsha drives after
	// the election ([vrrp_instance.lvs_sync]); absent when it drives none.
	ConnSync *SyncReport `json:"conn_sync,omitempty"`
	// KernelConns is the connections in the kernel's IPVS table: active
	// and inactive over every real server of every virtual service
	// (ipvsadm's ActConn and InActConn), connections a backup's sync
	// daemon learnt included.
	KernelConns int `json:"kernel_connections"`
	// ControlRefused counts the control-socket clients refused for not
	// being root, since the daemon started.
	ControlRefused uint64 `json:"control_refused"`
	// Cluster is every director of the cluster side by side; absent
	// without [cluster].
	Cluster *ClusterReport `json:"cluster,omitempty"`
}

// reportSchema is Report's Schema.
const reportSchema = 1

// emptyLists replaces every nil slice reachable from v (a pointer) by an
// empty one, so that the JSON form has [] where a list is empty, never
// null: a script iterating over a list need not test for null first.
func emptyLists(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			emptyLists(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				emptyLists(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.IsNil() {
			if v.CanSet() {
				v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			}
			return
		}
		for i := range v.Len() {
			emptyLists(v.Index(i))
		}
	}
}

// TrackExecReport is one track_exec and the instances it acts on.
type TrackExecReport struct {
	track.ExecStatus
	TrackedBy []TrackedBy `json:"tracked_by"`
}

// TrackedBy is one instance tracking a track_exec: while it fails, weight
// 0 puts the instance in fault, another weight lowers its priority.
type TrackedBy struct {
	Instance string `json:"vrrp_instance"`
	Weight   int    `json:"weight"`
}

func (t TrackedBy) String() string {
	if t.Weight == 0 {
		return t.Instance + " (fault)"
	}
	return fmt.Sprintf("%s (-%d)", t.Instance, t.Weight)
}

// ServiceReport is one virtual server.
type ServiceReport struct {
	Name    string `json:"name"`
	Service string `json:"service"` // ipvsadm-style "TCP  10.0.0.1:80"
	// Protocol ("tcp", "udp", "sctp"), Address and Port name an address
	// service, FWMark a firewall-mark one: Service's parts, as fields.
	Protocol    string       `json:"protocol,omitempty"`
	Address     string       `json:"address,omitempty"`
	Port        uint16       `json:"port,omitempty"`
	FWMark      uint32       `json:"fwmark,omitempty"`
	Scheduler   string       `json:"scheduler"`
	Flags       string       `json:"flags,omitempty"`
	InKernel    bool         `json:"in_kernel"`
	SorryActive bool         `json:"sorry_active"`
	Stats       Counters     `json:"stats"`
	RealServers []RealReport `json:"real_servers"`
}

// RealReport is one real server (or the sorry server) of a virtual server.
type RealReport struct {
	Address string `json:"address"`
	Forward string `json:"forward"`
	Sorry   bool   `json:"sorry,omitempty"`
	// Weight is the configured weight; KernelWeight what the kernel holds
	// (absent when the destination is not in the kernel).
	Weight       int    `json:"weight"`
	KernelWeight *int   `json:"kernel_weight,omitempty"`
	Health       string `json:"health"` // up, down or unchecked
	// Manual is "drain" or "maint" while an operator has the real
	// server out by hand (lvsha drain, maint), since ManualSince.
	Manual       string       `json:"manual,omitempty"`
	ManualSince  time.Time    `json:"manual_since,omitzero"`
	Since        time.Time    `json:"since,omitzero"`
	Transitions  int          `json:"transitions"`
	Probe        string       `json:"probe,omitempty"`
	Last         *ProbeResult `json:"last_probe,omitempty"`
	ActiveConn   int          `json:"active_conns"`
	InactiveConn int          `json:"inactive_conns"`
	Stats        Counters     `json:"stats"`
}

// ProbeResult is the outcome of the latest probe.
type ProbeResult struct {
	OK        bool      `json:"ok"`
	Message   string    `json:"message,omitempty"`
	Code      int       `json:"code,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
	At        time.Time `json:"at"`
}

// Counters are the kernel's per-service or per-destination statistics.
type Counters struct {
	Conns    uint64 `json:"conns"`
	InPkts   uint64 `json:"in_pkts"`
	OutPkts  uint64 `json:"out_pkts"`
	InBytes  uint64 `json:"in_bytes"`
	OutBytes uint64 `json:"out_bytes"`
	// Rates per second, as the kernel estimates them (ipvsadm --rate).
	CPS    uint64 `json:"cps"`
	InPPS  uint64 `json:"in_pps"`
	OutPPS uint64 `json:"out_pps"`
	InBPS  uint64 `json:"in_bps"`
	OutBPS uint64 `json:"out_bps"`
}

// statusView says how `lvsha status` prints the table: which counters,
// how wide, which virtual servers.
type statusView struct {
	// counters is "" (active and inactive connections, as ipvsadm -Ln),
	// "stats" (totals, as --stats) or "rate" (per second, as --rate).
	counters string
	// wide prints every column whole; otherwise the health and probe
	// columns are cut so a line fits width.
	wide  bool
	width int
}

// only keeps the virtual servers of r named in names, and leaves out the
// VRRP and track_exec sections: `lvsha status web` is about web. A name r
// does not have is an error that lists the names it has.
func (r *Report) only(names []string) error {
	if len(names) == 0 {
		return nil
	}
	have := make(map[string]bool, len(r.Services))
	var all []string
	for _, s := range r.Services {
		have[s.Name] = true
		all = append(all, s.Name)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		if !have[n] {
			return fmt.Errorf("no virtual server named %q (the daemon has: %s)", n, strings.Join(all, ", "))
		}
		want[n] = true
	}
	kept := r.Services[:0]
	for _, s := range r.Services {
		if want[s.Name] {
			kept = append(kept, s)
		}
	}
	r.Services = kept
	r.VRRP, r.VRRPLinks, r.TrackExecs = []instance.Status{}, []transport.LinkStats{}, []TrackExecReport{}
	r.BFD, r.BFDLinks = []bfdwatch.Session{}, []bfdwatch.Link{}
	r.ConnSync = nil
	return nil
}

// defaultWidth is what a line of `lvsha status` fits by default.
const defaultWidth = 120

// writeReport prints r the way an LVS operator reads `ipvsadm -Ln`, with
// lvsha's health columns added to each real server.
func writeReport(w io.Writer, r *Report, now time.Time) error {
	return writeReportView(w, r, now, statusView{width: defaultWidth})
}

func writeReportView(w io.Writer, r *Report, now time.Time, v statusView) error {
	fmt.Fprintf(w, "director %s   config %s (loaded %s)\n", r.Director, r.ConfigFile, r.LoadedAt.Format(time.RFC3339))
	if r.ConfigStale {
		fmt.Fprintf(w, "CONFIG STALE: last reload failed, running the previous config: %s\n", r.ReloadError)
	}
	if r.SyncError != "" {
		fmt.Fprintf(w, "KERNEL SYNC ERROR (%s ago): %s\n", ago(now, r.SyncedAt), r.SyncError)
	} else {
		fmt.Fprintf(w, "kernel in sync %s ago\n", ago(now, r.SyncedAt))
	}
	fmt.Fprintf(w, "kernel connections: %d\n", r.KernelConns)
	if err := writeTable(w, serviceRows(r, now, v.counters, v.wide), v); err != nil {
		return err
	}
	if len(r.Foreign) > 0 {
		fmt.Fprintf(w, "not managed by lvsha (left alone): %s\n", strings.Join(r.Foreign, "; "))
	}
	if len(r.VRRP) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\nVRRP instance\tInterface\tVRID\tState\tPriority\tMaster\tLast advert\tTransitions\tLast transition\tVIPs")
		for _, v := range r.VRRP {
			prio := fmt.Sprint(v.Priority)
			if v.Priority != v.BasePriority {
				prio += fmt.Sprintf(" (base %d)", v.BasePriority)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.Name, v.Interface, v.RouterID, v.State, prio,
				v.Master, ago(now, v.LastAdvert), v.Transitions, ago(now, v.LastTransition), strings.Join(v.VIPs, " "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		// Adverts of a VRID nobody here has are another group's, or a
		// peer whose virtual_router_id differs from ours.
		for _, l := range r.VRRPLinks {
			family := "IPv4"
			if l.IPv6 {
				family = "IPv6"
			}
			fmt.Fprintf(w, "VRRP link %s %s: %d instances; dropped %d adverts of other VRIDs, %d too short",
				l.Interface, family, l.Endpoints, l.UnknownVRID, l.Short)
			if l.KernelDrops > 0 {
				// Lost before lvsha read them: some instance may have
				// missed its master's adverts.
				fmt.Fprintf(w, "; the kernel dropped %d for a full buffer (lvsha fell behind)", l.KernelDrops)
			}
			fmt.Fprintln(w)
		}
		for _, v := range r.VRRP {
			// Why an instance is in FAULT: not started, or held there by
			// what it tracks (its own interface among them).
			if v.Fault != "" {
				fmt.Fprintf(w, "VRRP instance %s: FAULT, not started: %s\n", v.Name, v.Fault)
			}
			if len(v.FaultReasons) > 0 {
				fmt.Fprintf(w, "VRRP instance %s: FAULT: %s\n", v.Name, strings.Join(v.FaultReasons, "; "))
			}
			if v.HolderFault {
				fmt.Fprintf(w, "VRRP instance %s: FAULT, VIP holder failed (%d times): %s\n", v.Name, v.HolderFailures, v.HolderError)
			}
			if v.BFDTakeovers > 0 {
				fmt.Fprintf(w, "VRRP instance %s: %d takeovers on BFD, %d of them contradicted by the master's adverts (BFD lost, master alive)\n",
					v.Name, v.BFDTakeovers, v.BFDMasterAlive)
			}
			if v.SplitBrainYields > 0 || v.YieldedTo != "" {
				fmt.Fprintf(w, "VRRP instance %s: gave master up %d times to another master the cluster saw (split brain)", v.Name, v.SplitBrainYields)
				if v.YieldedTo != "" {
					fmt.Fprintf(w, "; now waiting, as backup, to hear adverts from %s", v.YieldedTo)
				}
				fmt.Fprintln(w)
			}
		}
	}
	if err := writeBFD(w, r); err != nil {
		return err
	}
	writeConnSync(w, r, now)
	if len(r.TrackExecs) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\ntrack_exec\tState\tSince\tLast run\tResult\tRuns\tTracked by\tCommand")
		for _, x := range r.TrackExecs {
			state := x.State
			if state != "ok" {
				state = strings.ToUpper(state)
			}
			result := "-"
			if !x.LastRun.IsZero() {
				result = fmt.Sprintf("%s %.1fms", x.LastResult, x.LastDuration)
			}
			by := make([]string, len(x.TrackedBy))
			for j, tb := range x.TrackedBy {
				by[j] = tb.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", x.Name, state, ago(now, x.Since), ago(now, x.LastRun), result, x.Runs,
				strings.Join(by, ", "), strings.Join(x.Command, " "))
		}
		return tw.Flush()
	}
	return nil
}

// writeBFD prints the BFD sessions of fast takeover.
func writeBFD(w io.Writer, r *Report) error {
	if len(r.BFD) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nBFD peer\tInterface\tLocal\tState\tDetection\tDowns\tRole")
	for _, s := range r.BFD {
		state := s.State
		if s.Diag != "" {
			state += " (" + s.Diag + ")"
		}
		// From DetectionMS: the client reads the report as JSON.
		detect := "-"
		if s.DetectionMS > 0 {
			detect = time.Duration(s.DetectionMS * float64(time.Millisecond)).String()
		}
		role := "answering"
		if s.Watching {
			role = "watching master of " + strings.Join(s.Following, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Peer, s.Interface, s.Local, state, detect, s.Downs, role)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Drops only where there are some: a quiet LAN drops none.
	for _, l := range r.BFDLinks {
		var parts []string
		for _, reason := range slices.Sorted(maps.Keys(l.Dropped)) {
			if n := l.Dropped[reason]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, reason))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "BFD on %s %s: dropped %s\n", l.Interface, l.Local, strings.Join(parts, ", "))
		}
	}
	return nil
}

// probeSummary is the last probe in a few words; whole keeps all of a
// failure's message, which is otherwise cut at 60 characters.
func probeSummary(p *ProbeResult, whole bool) string {
	if p == nil {
		return "-"
	}
	res := "ok"
	if !p.OK {
		res = "FAIL"
	}
	s := fmt.Sprintf("%s %.1fms", res, p.LatencyMS)
	if p.Code != 0 {
		s += fmt.Sprintf(" code=%d", p.Code)
	}
	if !p.OK && p.Message != "" {
		msg := p.Message
		if !whole && len(msg) > 60 {
			msg = msg[:57] + "..."
		}
		s += " (" + msg + ")"
	}
	return s
}

// counterHeads and counterCells are the counter columns of each view.
func counterHeads(view string) []string {
	switch view {
	case "stats":
		return []string{"Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"}
	case "rate":
		return []string{"CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"}
	}
	return []string{"ActConn", "InActConn"}
}

func counterCells(view string, c Counters, act, inact int, service bool) []string {
	u := func(n ...uint64) []string {
		out := make([]string, len(n))
		for i, x := range n {
			out[i] = strconv.FormatUint(x, 10)
		}
		return out
	}
	switch view {
	case "stats":
		return u(c.Conns, c.InPkts, c.OutPkts, c.InBytes, c.OutBytes)
	case "rate":
		return u(c.CPS, c.InPPS, c.OutPPS, c.InBPS, c.OutBPS)
	}
	if service {
		return []string{"", ""}
	}
	return []string{strconv.Itoa(act), strconv.Itoa(inact)}
}

// The columns of the real-server table that give way when a line is too
// long, the last probe first.
const (
	colHealth = 3
	colProbe  = 4
)

// serviceRows lays out the real-server table: two header rows, then each
// virtual server and its real servers.
func serviceRows(r *Report, now time.Time, view string, wide bool) [][]string {
	// The counter views leave the probe out, as ipvsadm's leave out
	// the connection counts: the line would not fit.
	probe := view == ""
	head := []string{"Prot LocalAddress:Port", "Scheduler", "Weight", "Health"}
	if probe {
		head = append(head, "Last probe")
	}
	rows := [][]string{append(head, counterHeads(view)...), {"  -> RemoteAddress:Port", "Forward"}}
	row := func(cells []string, probeCell string, counters []string) []string {
		if probe {
			cells = append(cells, probeCell)
		}
		return append(cells, counters...)
	}
	for _, s := range r.Services {
		sched := s.Scheduler
		if s.Flags != "" {
			sched += " " + s.Flags
		}
		state := s.Name
		if !s.InKernel {
			state += ": MISSING FROM KERNEL"
		} else if s.SorryActive {
			state += ": SORRY"
		}
		rows = append(rows, row([]string{s.Service, sched, "", state}, "", counterCells(view, s.Stats, 0, 0, true)))
		for _, d := range s.RealServers {
			weight := "-"
			if d.KernelWeight != nil {
				weight = fmt.Sprint(*d.KernelWeight)
				if *d.KernelWeight != d.Weight {
					weight += fmt.Sprintf("/%d", d.Weight)
				}
			}
			health := d.Health
			if !d.Sorry && !d.Since.IsZero() {
				health += " " + ago(now, d.Since)
			}
			switch d.Manual {
			case manualDrain:
				health = "DRAINED by hand " + ago(now, d.ManualSince) + ", " + health
			case manualMaint:
				health = "MAINT by hand " + ago(now, d.ManualSince) + ", " + health
			}
			rows = append(rows, row([]string{"  -> " + d.Address, d.Forward, weight, health}, probeSummary(d.Last, wide),
				counterCells(view, d.Stats, d.ActiveConn, d.InactiveConn, false)))
		}
	}
	return rows
}

// writeTable prints rows in columns two spaces apart. Unless v.wide, the
// last-probe column and then the health column are cut (ending in "…")
// until a line fits v.width, each down to no less than its heading.
func writeTable(w io.Writer, rows [][]string, v statusView) error {
	widths := []int{}
	for _, row := range rows {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	total := func() int {
		n := 2 * (len(widths) - 1)
		for _, x := range widths {
			n += x
		}
		return n
	}
	if !v.wide && v.width > 0 {
		cut := []int{colHealth}
		if v.counters == "" {
			cut = []int{colProbe, colHealth}
		}
		for _, col := range cut {
			if over := total() - v.width; over > 0 && col < len(widths) {
				widths[col] = max(widths[col]-over, utf8.RuneCountInString(rows[0][col]))
			}
		}
	}
	var b strings.Builder
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString("  ")
			}
			if n := utf8.RuneCountInString(c); n > widths[i] {
				c = string([]rune(c)[:widths[i]-1]) + "…"
			}
			line.WriteString(c)
			if i < len(row)-1 {
				line.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)))
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// writeConnSync prints the sync daemons: what the election wants, what
// the kernel runs, and why they differ.
func writeConnSync(w io.Writer, r *Report, now time.Time) {
	cs := r.ConnSync
	if cs == nil {
		return
	}
	follows := "no vrrp_instance (lvs_sync removed)"
	if cs.VRRPInstance != "" {
		follows = "vrrp_instance " + cs.VRRPInstance
	}
	fmt.Fprintf(w, "\nIPVS connection sync: follows %s, wants %s daemon\n", follows, cs.Want)
	if cs.Error != "" {
		fmt.Fprintf(w, "CONNECTION SYNC ERROR (%d failed attempts): %s\n", cs.Errors, cs.Error)
	}
	if cs.RefreshPeriod != "" {
		fmt.Fprintf(w, "  a master announces every connection again every %s (refresh_period)\n", cs.RefreshPeriod)
	}
	switch h := cs.PreemptHoldUntil; {
	case h.IsZero():
	case now.Before(h):
		fmt.Fprintf(w, "  PREEMPTION HELD for %s more: the backup daemon, started %s ago, learns the master's connections (preempt_hold)\n",
			ago(h, now), ago(now, cs.BackupSince))
	default:
		fmt.Fprintf(w, "  preemption hold ended %s ago (the backup daemon started %s ago)\n", ago(now, h), ago(now, cs.BackupSince))
	}
	if cs.ReadAt.IsZero() {
		return
	}
	if len(cs.Daemons) == 0 {
		fmt.Fprintf(w, "  kernel runs no sync daemon (read %s ago)\n", ago(now, cs.ReadAt))
	}
	for _, d := range cs.Daemons {
		fmt.Fprintf(w, "  kernel runs %s (read %s ago)\n", d, ago(now, cs.ReadAt))
	}
}
