package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
)

// manualRequest is one `lvsha drain|maint|undrain VS RS` sent to the
// daemon; Mode "" undrains.
type manualRequest struct {
	VirtualServer string `json:"vs"`
	RealServer    string `json:"rs"`
	Mode          string `json:"mode"`
}

// manualCall carries a request to the daemon loop and its answer back.
type manualCall struct {
	req   manualRequest
	reply chan manualAnswer
}

type manualAnswer struct {
	row *RealReport
	err error
}

// errNotFound marks a request naming a virtual or real server the daemon
// does not run.
var errNotFound = errors.New("not found")

// adjusted is cfg and weight with the operator's hand on them: real
// servers in maintenance left out of cfg (a copy; cfg is shared), drained
// ones at weight 0 whatever their health says. Quorum counts them so.
func (d *daemon) adjusted(cfg *conf.Config, weight ipvs.WeightFunc) (*conf.Config, ipvs.WeightFunc) {
	d.mu.Lock()
	manual := d.manual
	d.mu.Unlock()
	if len(manual) == 0 {
		return cfg, weight
	}
	out := *cfg
	out.VirtualServers = make([]conf.VirtualServer, len(cfg.VirtualServers))
	for i, vs := range cfg.VirtualServers {
		var kept []conf.RealServer
		for _, rs := range vs.RealServers {
			if m, ok := manual[health.Key{VirtualServer: vs.Name, RealServer: rs.Address}]; ok && m.Mode == manualMaint {
				continue
			}
			kept = append(kept, rs)
		}
		vs.RealServers = kept
		out.VirtualServers[i] = vs
	}
	return &out, func(vs string, rs netip.AddrPort) (int, bool) {
		if m, ok := manual[health.Key{VirtualServer: vs, RealServer: rs}]; ok && m.Mode == manualDrain {
			return 0, true
		}
		if weight == nil {
			return 0, false
		}
		return weight(vs, rs)
	}
}

// setManual applies one request on the daemon loop: it records it, keeps
// it in the state file, applies the table, and returns the real server's
// row as status shows it.
func (d *daemon) setManual(req manualRequest) (*RealReport, error) {
	cfg := d.config()
	rs, err := netip.ParseAddrPort(req.RealServer)
	if err != nil {
		return nil, fmt.Errorf("real server %q: want ADDRESS:PORT as the configuration writes it: %w", req.RealServer, err)
	}
	k := health.Key{VirtualServer: req.VirtualServer, RealServer: rs}
	if !hasRealServer(cfg, k) {
		return nil, fmt.Errorf("%w: no real server %s in virtual server %q (see lvsha status)", errNotFound, req.RealServer, req.VirtualServer)
	}
	d.mu.Lock()
	manual := make(map[health.Key]manualEntry, len(d.manual)+1)
	for key, m := range d.manual {
		manual[key] = m
	}
	switch old, had := manual[k]; {
	case req.Mode == "":
		delete(manual, k)
	case had && old.Mode == req.Mode:
		// Again: keep its since.
	default:
		manual[k] = manualEntry{VirtualServer: k.VirtualServer, RealServer: rs, Mode: req.Mode, Since: time.Now()}
	}
	d.manual = manual
	d.mu.Unlock()
	mode := req.Mode
	if mode == "" {
		mode = "undrain"
	}
	d.log.Info("real server taken by hand", "op", mode, "vs", k.VirtualServer, "rs", k.RealServer.String())
	d.sync(syncKnown)
	rep, err := d.Status()
	if err != nil {
		return nil, err
	}
	for _, s := range rep.Services {
		for i := range s.RealServers {
			if s.Name == k.VirtualServer && s.RealServers[i].Address == rs.String() {
				return &s.RealServers[i], nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s of %s is not in the status", errNotFound, rs, k.VirtualServer)
}

func hasRealServer(cfg *conf.Config, k health.Key) bool {
	for _, vs := range cfg.VirtualServers {
		if vs.Name != k.VirtualServer {
			continue
		}
		for _, rs := range vs.RealServers {
			if rs.Address == k.RealServer {
				return true
			}
		}
	}
	return false
}

// saveState writes the manual entries and the real servers now down to
// the state file, when they changed. Real servers no longer configured
// are dropped from both.
func (d *daemon) saveState(cfg *conf.Config) {
	if d.state == nil {
		return
	}
	st := savedState{Manual: []manualEntry{}, Down: []health.Key{}}
	d.mu.Lock()
	for k, m := range d.manual {
		if hasRealServer(cfg, k) {
			st.Manual = append(st.Manual, m)
		}
	}
	d.mu.Unlock()
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			if !d.probes.Up(vs.Name, rs.Address) {
				st.Down = append(st.Down, health.Key{VirtualServer: vs.Name, RealServer: rs.Address})
			}
		}
	}
	if err := d.state.save(st); err != nil {
		d.log.Error("state file not written: drain state and health will not survive a restart", "op", "state", "error", err)
	}
}

// restoreState takes what the previous daemon left: its manual entries,
// and the real servers it saw down, with those the kernel still holds at
// weight 0 though configured with more (drained for their health), which
// start down until rise probes pass.
func (d *daemon) restoreState(st savedState, kernel []ipvs.ServiceStatus) []health.Key {
	cfg := d.config()
	manual := map[health.Key]manualEntry{}
	for _, m := range st.Manual {
		if (m.Mode == manualDrain || m.Mode == manualMaint) && hasRealServer(cfg, m.key()) {
			manual[m.key()] = m
		}
	}
	d.mu.Lock()
	d.manual = manual
	d.mu.Unlock()
	down := map[health.Key]bool{}
	for _, k := range st.Down {
		down[k] = true
	}
	type dest struct {
		svc ipvs.ServiceKey
		dst netip.AddrPort
	}
	zero := map[dest]bool{}
	sorry := map[ipvs.ServiceKey]bool{} // the sorry server serves: every weight is 0 for quorum, not health
	byKey := map[ipvs.ServiceKey]ipvs.ServiceStatus{}
	for _, s := range kernel {
		byKey[s.Service.Key()] = s
		for _, dst := range s.Destinations {
			if dst.Destination.Weight == 0 {
				zero[dest{s.Service.Key(), dst.Destination.Key()}] = true
			}
		}
	}
	if len(zero) == 0 {
		// No destination at weight 0 (an empty table at a first start):
		// none to find among 10,000 real servers.
		return keysIn(cfg, down)
	}
	desired := ipvs.Desired(cfg, nil)
	for i, s := range desired {
		sv := cfg.VirtualServers[i].SorryServer
		for _, dst := range byKey[s.Key()].Destinations {
			if sv.IsValid() && dst.Destination.Weight > 0 && dst.Destination.Address == sv.Addr().Unmap() {
				sorry[s.Key()] = true
			}
		}
	}
	// Every real server up: the table as configured, each at its weight.
	for i, s := range desired {
		vs := cfg.VirtualServers[i]
		if sorry[s.Key()] {
			continue
		}
		for _, rs := range vs.RealServers {
			k := health.Key{VirtualServer: vs.Name, RealServer: rs.Address}
			if _, byHand := manual[k]; rs.Weight > 0 && !byHand && zero[dest{s.Key(), destKey(s, rs.Address)}] {
				down[k] = true
			}
		}
	}
	return keysIn(cfg, down)
}

// keysIn lists the keys of set that cfg has.
func keysIn(cfg *conf.Config, set map[health.Key]bool) []health.Key {
	var out []health.Key
	for k := range set {
		if hasRealServer(cfg, k) {
			out = append(out, k)
		}
	}
	return out
}

// handleManual serves POST /manual.
func (d *daemon) handleManual(w http.ResponseWriter, r *http.Request) {
	var req manualRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "want {\"vs\": NAME, \"rs\": ADDRESS:PORT, \"mode\": \"drain\"|\"maint\"|\"\"}", http.StatusBadRequest)
		return
	}
	if req.Mode != "" && req.Mode != manualDrain && req.Mode != manualMaint {
		http.Error(w, fmt.Sprintf("mode %q: want drain, maint or none", req.Mode), http.StatusBadRequest)
		return
	}
	call := manualCall{req: req, reply: make(chan manualAnswer, 1)}
	select {
	case d.manuals <- call:
	case <-r.Context().Done():
		return
	}
	select {
	case a := <-call.reply:
		switch {
		case errors.Is(a.err, errNotFound):
			http.Error(w, a.err.Error(), http.StatusNotFound)
		case a.err != nil:
			http.Error(w, a.err.Error(), http.StatusBadRequest)
		default:
			writeJSON(w, a.row)
		}
	case <-r.Context().Done():
	}
}

// cmdManual implements `lvsha drain`, `lvsha maint` and `lvsha undrain`.
func cmdManual(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	about := map[string]string{
		"drain":   "Set real server RS of virtual server VS to weight 0: no new connections, established ones go on.",
		"maint":   "Take real server RS of virtual server VS out of the kernel's table (maintenance).",
		"undrain": "Give real server RS of virtual server VS back to its health checks.",
	}[name]
	fs := newFlagSet(name, "lvsha "+name+" [-s SOCKET | -c FILE] [-o text|json] VS RS", about+
		"\nIt stays so across health changes, reloads and restarts until undrained (state_file).", stderr)
	client := addClientFlags(fs, "text", "json")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2}
	}
	if fs.NArg() != 2 {
		return &exitError{code: 2, err: fmt.Errorf("want a virtual server's name and a real server's ADDRESS:PORT, got %q", fs.Args())}
	}
	socket, err := client.socket()
	if err != nil {
		return err
	}
	mode := map[string]string{"drain": manualDrain, "maint": manualMaint}[name]
	body, err := json.Marshal(manualRequest{VirtualServer: fs.Arg(0), RealServer: fs.Arg(1), Mode: mode})
	if err != nil {
		return err
	}
	var row RealReport
	if err := controlCall(ctx, socket, http.MethodPost, "/manual", strings.NewReader(string(body)), &row); err != nil {
		return err
	}
	if *client.out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(row)
	}
	// The row as lvsha status prints it, under its heading.
	rows := serviceRows(&Report{Services: []ServiceReport{{Name: fs.Arg(0), RealServers: []RealReport{row}}}}, time.Now(), "", false)
	return writeTable(stdout, [][]string{rows[0], rows[3]}, statusView{width: defaultWidth})
}
