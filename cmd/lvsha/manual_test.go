package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// runningDaemon is a daemon loop with its control socket, as lvsha run
// starts it (state file included), on a fake kernel.
type runningDaemon struct {
	d      *daemon
	logs   *syncWriter
	stop   func()
	socket string
}

func startDaemon(t *testing.T, path string, k *ipvstest.Kernel) *runningDaemon {
	t.Helper()
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, nil))
	tbl := ipvs.NewReconciler(k, log)
	engine := health.NewEngine(log)
	d := newDaemon(log, path, cfg, tbl, engine)
	kernel, err := tbl.Read()
	if err != nil {
		t.Fatal(err)
	}
	var st savedState
	d.state, st = openState(log, cfg.Director.StateFile)
	engine.StartDown(d.restoreState(st, kernel))
	stop := runDaemon(t, d, logs, cfg.Director.ControlSocket, nil)
	r := &runningDaemon{d: d, logs: logs, socket: cfg.Director.ControlSocket}
	r.stop = sync.OnceFunc(func() {
		stop()
		d.state.close()
	})
	t.Cleanup(r.stop)
	return r
}

// Drain, maint and undrain by hand through the CLI: each holds across
// health changes, a reload and a restart, and is shown in status; the
// restarted daemon also starts down the real server the previous one saw
// down, from the state file or from the kernel's weight 0.
func TestDrainByHand(t *testing.T) {
	webs := []*backend{startBackend(t, "127.0.0.1:0"), startBackend(t, "127.0.0.1:0"), startBackend(t, "127.0.0.1:0")}
	dir := t.TempDir()
	path := filepath.Join(dir, "lvsha.toml")
	sock := filepath.Join(dir, "lvsha.sock")
	state := filepath.Join(dir, "state", "state.json")
	tmpl := `[director]
name = "test"
control_socket = %q
state_file = %q

[[virtual_server]]
name = "web"
address = "10.1.2.3:80"
  [virtual_server.check]
  type = "http"
  interval = "50ms"
  timeout = "40ms"
  rise = 2
  fall = 2
  [[virtual_server.real_server]]
  address = %q
  weight = 3
  [[virtual_server.real_server]]
  address = %q
  weight = 2
  [[virtual_server.real_server]]
  address = %q
  weight = 1
`
	cfgText := fmt.Sprintf(tmpl, sock, state, webs[0].addr, webs[1].addr, webs[2].addr)
	writeConfig(t, path, cfgText)
	k := &ipvstest.Kernel{}
	r := startDaemon(t, path, k)
	svc := "TCP  10.1.2.3:80 "
	weights := func() (int, int, int, bool) {
		w := kernelWeights(t, k)
		_, has2 := w[svc+webs[1].addr]
		return w[svc+webs[0].addr], w[svc+webs[1].addr], w[svc+webs[2].addr], has2
	}
	waitFor(t, r.logs, "the table", 5*time.Second, func() bool { a, b, c, _ := weights(); return a == 3 && b == 2 && c == 1 })
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runMain(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}

	if code, out, errb := run("drain", "-s", sock, "web", webs[0].addr); code != 0 || !strings.Contains(out, "DRAINED by hand") || !strings.Contains(out, webs[0].addr) {
		t.Fatalf("drain: exit %d\n%s%s", code, out, errb)
	}
	if code, out, errb := run("maint", "-s", sock, "web", webs[1].addr); code != 0 || !strings.Contains(out, "MAINT by hand") {
		t.Fatalf("maint: exit %d\n%s%s", code, out, errb)
	}
	if a, _, c, has2 := weights(); a != 0 || has2 || c != 1 {
		t.Fatalf("after drain and maint the kernel holds %v", kernelWeights(t, k))
	}
	// Unknown names are refused with what to do.
	if code, _, errb := run("drain", "-s", sock, "web", "10.9.9.9:80"); code != 1 || !strings.Contains(errb, `no real server 10.9.9.9:80 in virtual server "web"`) {
		t.Errorf("drain of an unknown real server: exit %d, %s", code, errb)
	}
	if code, _, errb := run("drain", "-s", sock, "web"); code != 2 || !strings.Contains(errb, "want a virtual server's name and a real server's ADDRESS:PORT") {
		t.Errorf("drain without a real server: exit %d, %s", code, errb)
	}

	// A health change: the drained server goes down and comes back up,
	// and stays at weight 0.
	webs[0].stop()
	waitFor(t, r.logs, "web1 seen down", 5*time.Second, func() bool { return !r.d.probes.Up("web", mustAP(webs[0].addr)) })
	webs[0].start()
	waitFor(t, r.logs, "web1 seen up", 5*time.Second, func() bool { return r.d.probes.Up("web", mustAP(webs[0].addr)) })
	if a, _, _, has2 := weights(); a != 0 || has2 {
		t.Fatalf("after its health came back, the drained server holds %v", kernelWeights(t, k))
	}
	// A reload changing its weight: still drained.
	writeConfig(t, path, strings.Replace(cfgText, "weight = 3", "weight = 7", 1))
	if code, out, _ := run("reload", "-s", sock); code != 0 {
		t.Fatalf("reload: exit %d\n%s", code, out)
	}
	if a, _, _, has2 := weights(); a != 0 || has2 {
		t.Fatalf("after a reload the drained server holds %v", kernelWeights(t, k))
	}
	rep, err := fetchStatus(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	rrs := rep.Services[0].RealServers
	if rrs[0].Manual != manualDrain || rrs[0].ManualSince.IsZero() || rrs[1].Manual != manualMaint || rrs[1].KernelWeight != nil || rrs[2].Manual != "" {
		t.Errorf("status: %+v", rrs)
	}

	// The third server dies; then the daemon restarts, on a fresh kernel
	// (only the state file remembers).
	webs[2].stop()
	waitFor(t, r.logs, "web3 drained for its health", 5*time.Second, func() bool { _, _, c, _ := weights(); return c == 0 })
	r.stop()
	k2 := &ipvstest.Kernel{}
	r2 := startDaemon(t, path, k2)
	k = k2
	waitFor(t, r2.logs, "the restarted table", 5*time.Second, func() bool { _, _, _, has2 := weights(); return len(kernelWeights(t, k)) == 2 && !has2 })
	if a, _, c, _ := weights(); a != 0 || c != 0 {
		t.Fatalf("after a restart the kernel holds %v: want the drained and the dead server at 0, the one in maintenance out", kernelWeights(t, k))
	}
	if n := k2.WritesByOp()[ipvstest.OpUpdateDestination]; n != 0 {
		t.Errorf("the restarted daemon created a server at a weight it then corrected (%d updates): traffic reached it meanwhile", n)
	}
	r2.stop()

	// Without a state file, the kernel's weight 0 is what tells the
	// restarted daemon the server was down.
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	r3 := startDaemon(t, path, k)
	k.ResetWrites()
	// The first sync, after the engine took the config, adopts the table.
	waitFor(t, r3.logs, "the first sync", 5*time.Second, func() bool { return strings.Contains(r3.logs.String(), "service adopted") })
	if _, _, c, _ := weights(); c != 0 || r3.d.probes.Up("web", mustAP(webs[2].addr)) {
		t.Errorf("without a state file the dead server got weight %d (up %v)", c, r3.d.probes.Up("web", mustAP(webs[2].addr)))
	}

	// Undrain gives both back to their checks.
	webs[2].start()
	for _, rs := range []string{webs[0].addr, webs[1].addr} {
		if code, out, errb := run("undrain", "-s", sock, "web", rs); code != 0 {
			t.Fatalf("undrain %s: exit %d\n%s%s", rs, code, out, errb)
		}
	}
	waitFor(t, r3.logs, "everything back", 5*time.Second, func() bool { a, b, c, _ := weights(); return a == 7 && b == 2 && c == 1 })
}

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// restoreState starts down what the previous daemon saw down: from the
// state file, or from the kernel's weight 0 where the configuration says
// more; not a real server at weight 0 by configuration, by hand, or
// because the sorry server serves.
func TestRestoreState(t *testing.T) {
	cfg, err := conf.Parse("t.toml", []byte(`
[[virtual_server]]
name = "web"
address = "10.0.0.1:80"
sorry_server = "10.0.9.9:80"
quorum = 1
  [[virtual_server.real_server]]
  address = "10.0.1.1:80"
  [[virtual_server.real_server]]
  address = "10.0.1.2:80"
  weight = 0
  [[virtual_server.real_server]]
  address = "10.0.1.3:80"
`))
	if err != nil {
		t.Fatal(err)
	}
	svc := ipvs.Desired(cfg, nil)[0]
	kernelWith := func(w map[string]int) []ipvs.ServiceStatus {
		st := ipvs.ServiceStatus{Service: svc}
		for a, weight := range w {
			st.Destinations = append(st.Destinations, ipvs.DestinationStatus{Destination: ipvs.Destination{
				Address: netip.MustParseAddrPort(a).Addr(), Port: 80, Weight: weight, Forwarding: ipvs.ForwardMasq}})
		}
		return []ipvs.ServiceStatus{st}
	}
	key := func(a string) health.Key { return health.Key{VirtualServer: "web", RealServer: mustAP(a)} }
	tests := []struct {
		name   string
		state  savedState
		kernel []ipvs.ServiceStatus
		want   []string
	}{
		{"nothing known", savedState{}, nil, nil},
		{"weight 0 in the kernel, more configured", savedState{}, kernelWith(map[string]int{"10.0.1.1:80": 0, "10.0.1.2:80": 0, "10.0.1.3:80": 1}), []string{"10.0.1.1:80"}},
		{"the sorry server serves", savedState{}, kernelWith(map[string]int{"10.0.1.1:80": 0, "10.0.1.3:80": 0, "10.0.9.9:80": 1}), nil},
		{"drained by hand", savedState{Manual: []manualEntry{{VirtualServer: "web", RealServer: mustAP("10.0.1.1:80"), Mode: manualDrain}}},
			kernelWith(map[string]int{"10.0.1.1:80": 0, "10.0.1.3:80": 1}), nil},
		{"from the state file, one no longer configured dropped", savedState{Down: []health.Key{key("10.0.1.3:80"), key("10.0.7.7:80")}}, nil, []string{"10.0.1.3:80"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDaemon(slog.New(slog.DiscardHandler), "t.toml", cfg, ipvs.NewReconciler(&ipvstest.Kernel{}, nil), health.NewEngine(slog.New(slog.DiscardHandler)))
			var got []string
			for _, k := range d.restoreState(tc.state, tc.kernel) {
				got = append(got, k.RealServer.String())
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("start down %v, want %v", got, tc.want)
			}
		})
	}
}
