package main

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/track"
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
	ConfigStale bool            `json:"config_stale"`
	ReloadError string          `json:"reload_error,omitempty"`
	SyncedAt    time.Time       `json:"last_sync"`
	SyncError   string          `json:"sync_error,omitempty"`
	Services    []ServiceReport `json:"virtual_servers"`
	// Foreign lists kernel services the configuration does not name; lvsha
	// leaves them alone.
	Foreign []string `json:"foreign_services"`
	// VRRP is the state of each VRRP instance.
	VRRP []instance.Status `json:"vrrp_instances"`
	// TrackExecs is the state of each track_exec an instance tracks.
	TrackExecs []TrackExecReport `json:"track_execs"`
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
	Name        string       `json:"name"`
	Service     string       `json:"service"` // ipvsadm-style "TCP  10.0.0.1:80"
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
	Weight       int          `json:"weight"`
	KernelWeight *int         `json:"kernel_weight,omitempty"`
	Health       string       `json:"health"` // up, down or unchecked
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
}

// writeReport prints r the way an LVS operator reads `ipvsadm -Ln --stats`,
// with lvsha's health columns added to each real server.
func writeReport(w io.Writer, r *Report, now time.Time) error {
	fmt.Fprintf(w, "director %s   config %s (loaded %s)\n", r.Director, r.ConfigFile, r.LoadedAt.Format(time.RFC3339))
	if r.ConfigStale {
		fmt.Fprintf(w, "CONFIG STALE: last reload failed, running the previous config: %s\n", r.ReloadError)
	}
	if r.SyncError != "" {
		fmt.Fprintf(w, "KERNEL SYNC ERROR (%s ago): %s\n", ago(now, r.SyncedAt), r.SyncError)
	} else {
		fmt.Fprintf(w, "kernel in sync %s ago\n", ago(now, r.SyncedAt))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Prot LocalAddress:Port\tScheduler\tWeight\tHealth\tLast probe\tActConn\tInActConn\tConns\tInPkts\tOutPkts\tInBytes\tOutBytes")
	fmt.Fprintln(tw, "  -> RemoteAddress:Port\tForward\t\t\t\t\t\t\t\t\t\t")
	for _, s := range r.Services {
		sched := s.Scheduler
		if s.Flags != "" {
			sched += " " + s.Flags
		}
		state := ""
		if !s.InKernel {
			state = "MISSING FROM KERNEL"
		} else if s.SorryActive {
			state = "SORRY"
		}
		fmt.Fprintf(tw, "%s\t%s\t\t%s\t%s\t\t\t%d\t%d\t%d\t%d\t%d\n", s.Service, sched, state, s.Name,
			s.Stats.Conns, s.Stats.InPkts, s.Stats.OutPkts, s.Stats.InBytes, s.Stats.OutBytes)
		for _, d := range s.RealServers {
			weight := "-"
			if d.KernelWeight != nil {
				weight = fmt.Sprint(*d.KernelWeight)
				if *d.KernelWeight != d.Weight {
					weight += fmt.Sprintf("/%d", d.Weight)
				}
			}
			health := d.Health
			if d.Sorry {
				health = d.Health
			} else if !d.Since.IsZero() {
				health += " " + ago(now, d.Since)
			}
			fmt.Fprintf(tw, "  -> %s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", d.Address, d.Forward, weight, health,
				probeSummary(d.Last), d.ActiveConn, d.InactiveConn,
				d.Stats.Conns, d.Stats.InPkts, d.Stats.OutPkts, d.Stats.InBytes, d.Stats.OutBytes)
		}
	}
	if err := tw.Flush(); err != nil {
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
	}
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

func probeSummary(p *ProbeResult) string {
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
		if len(msg) > 60 {
			msg = msg[:57] + "..."
		}
		s += " (" + msg + ")"
	}
	return s
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
