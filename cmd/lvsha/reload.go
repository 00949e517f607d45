package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/vrrp/group"
)

// ReloadReport is what a reload did (`lvsha reload`) or would do
// (`lvsha check --diff`): the kernel writes, the probes started, stopped
// or restarted, the VRRP instances changed. Its JSON form is part of the
// control socket's interface.
type ReloadReport struct {
	File string `json:"file"`
	// Applied is true when the daemon now runs the file (even if the
	// kernel refused part of its table: see Errors); false for a plan
	// and for a refused reload.
	Applied bool `json:"applied"`
	// Refused: the file was not taken (or, for a plan, would not be);
	// Errors says why.
	Refused bool `json:"refused"`
	// Unchanged: the file configures what the daemon runs already, so
	// nothing is written and no probe restarts.
	Unchanged bool `json:"unchanged"`
	// Errors lists every problem, one a line: the file's (file:line:
	// key: message) when the reload was refused, the kernel's otherwise.
	Errors []string `json:"errors"`
	// Warnings are changes the file makes that wait for a restart.
	Warnings []string               `json:"warnings"`
	Kernel   []ipvs.Change          `json:"kernel"`
	Probes   []health.ProbeChange   `json:"probes"`
	VRRP     []group.InstanceChange `json:"vrrp_instances"`
}

func newReloadReport(file string) *ReloadReport {
	return &ReloadReport{File: file, Errors: []string{}, Warnings: []string{}, Kernel: []ipvs.Change{}, Probes: []health.ProbeChange{}, VRRP: []group.InstanceChange{}}
}

// refused records a reload that changed nothing because of err.
func (r *ReloadReport) refused(err error) {
	r.Applied, r.Refused = false, true
	r.Kernel, r.Probes, r.VRRP = []ipvs.Change{}, []health.ProbeChange{}, []group.InstanceChange{}
	r.Errors = errorLines(err)
}

// errorLines splits a joined error into its lines, one problem each.
func errorLines(err error) []string {
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// write prints r for an operator; plan says it is a prediction.
func (r *ReloadReport) write(w io.Writer, plan bool) error {
	var b strings.Builder
	verb := "reload"
	if plan {
		verb = "a reload would"
	}
	switch {
	case r.Refused:
		fmt.Fprintf(&b, "%s %s: refused, the daemon keeps its configuration:\n", verb, r.File)
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "  %s\n", e)
		}
		_, err := io.WriteString(w, b.String())
		return err
	case r.Unchanged:
		fmt.Fprintf(&b, "%s %s: unchanged: no kernel write, no probe restarted, no VRRP instance changed\n", verb, r.File)
		_, err := io.WriteString(w, b.String())
		return err
	case plan:
		fmt.Fprintf(&b, "a reload to %s would make:\n", r.File)
	default:
		fmt.Fprintf(&b, "reloaded %s:\n", r.File)
	}
	fmt.Fprintf(&b, "kernel: %d writes\n", len(r.Kernel))
	for _, c := range r.Kernel {
		fmt.Fprintf(&b, "  %s\n", c)
	}
	fmt.Fprintf(&b, "probes: %d changed\n", len(r.Probes))
	for _, p := range r.Probes {
		fmt.Fprintf(&b, "  %s %s\n", p.Key, p.Change)
	}
	fmt.Fprintf(&b, "vrrp instances: %d changed\n", len(r.VRRP))
	for _, v := range r.VRRP {
		line := v.Instance + " " + v.Change
		if v.Why != "" {
			line += ": " + v.Why
		}
		if v.MovesVIPs {
			line += " (master here: its VIPs move to a peer)"
		}
		fmt.Fprintf(&b, "  %s\n", line)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "kernel refused: %s\n", e)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "needs a restart: %s\n", w)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// handleReload serves POST /reload: the loop reloads the daemon's file and
// the answer is its report.
func (d *daemon) handleReload(w http.ResponseWriter, r *http.Request) {
	reply := make(chan *ReloadReport, 1)
	select {
	case d.reloads <- reply:
	case <-r.Context().Done():
		return
	}
	select {
	case rep := <-reply:
		writeJSON(w, rep)
	case <-r.Context().Done():
	}
}

// planRequest asks what a reload to File would do.
type planRequest struct {
	File string `json:"file"`
}

// handlePlan serves POST /plan.
func (d *daemon) handlePlan(w http.ResponseWriter, r *http.Request) {
	var req planRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.File == "" {
		http.Error(w, "want {\"file\": PATH}", http.StatusBadRequest)
		return
	}
	writeJSON(w, d.plan(req.File))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// askReload asks the daemon on socket to reload (file "") or to plan a
// reload to file.
func askReload(ctx context.Context, socket, file string) (*ReloadReport, error) {
	path, body := "/reload", ""
	if file != "" {
		b, err := json.Marshal(planRequest{File: file})
		if err != nil {
			return nil, err
		}
		path, body = "/plan", string(b)
	}
	var rep ReloadReport
	if err := controlCall(ctx, socket, http.MethodPost, path, strings.NewReader(body), &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}
