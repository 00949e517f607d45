package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// lvsha reload and lvsha check --diff against a running daemon loop (the
// real health engine probing loopback servers, the stateful fake kernel):
// an unchanged file writes nothing and restarts no probe; a changed one
// does exactly what check --diff predicted, counted from the kernel's
// side; a bad one is refused with every error and the old table stays.
func TestReloadReports(t *testing.T) {
	webs := []*backend{startBackend(t, "127.0.0.1:0"), startBackend(t, "127.0.0.1:0"), startBackend(t, "127.0.0.1:0")}
	dir := t.TempDir()
	sock := filepath.Join(dir, "lvsha.sock")
	path := filepath.Join(dir, "lvsha.toml")
	const tmpl = `[director]
name = "test"
control_socket = %q

[[virtual_server]]
name = "web"
address = "10.1.2.3:80"
scheduler = "rr"
  [virtual_server.check]
  type = "http"
  path = "/"
  interval = "50ms"
  timeout = "40ms"
  [[virtual_server.real_server]]
  address = %q
  weight = 3
  [[virtual_server.real_server]]
  address = %q
  weight = 2
`
	good := fmt.Sprintf(tmpl, sock, webs[0].addr, webs[1].addr)
	writeConfig(t, path, good)
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, nil))
	k := &ipvstest.Kernel{}
	d := newDaemon(log, path, cfg, ipvs.NewReconciler(k, log), health.NewEngine(log))
	runDaemon(t, d, logs, sock, nil)
	ctx := context.Background()
	svc := "TCP  10.1.2.3:80"
	waitFor(t, logs, "initial table", 5e9, func() bool {
		w := kernelWeights(t, k)
		return w[svc+" "+webs[0].addr] == 3 && w[svc+" "+webs[1].addr] == 2
	})

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runMain(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}
	reportOf := func(args ...string) *ReloadReport {
		t.Helper()
		code, out, errb := run(append(args, "-o", "json")...)
		var rep ReloadReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v: exit %d, %v\n%s%s", args, code, err, out, errb)
		}
		return &rep
	}

	// Unchanged: nothing written, nothing restarted.
	k.ResetWrites()
	if code, out, _ := run("check", "--diff", "-s", sock, path); code != 0 || !strings.Contains(out, "unchanged: no kernel write, no probe restarted") {
		t.Errorf("check --diff of the running file: exit %d\n%s", code, out)
	}
	if rep := reportOf("reload", "-s", sock); !rep.Unchanged || !rep.Applied && rep.Refused || len(rep.Kernel)+len(rep.Probes) != 0 || k.Writes() != 0 {
		t.Errorf("reload of an unchanged file: %+v, %d kernel writes", rep, k.Writes())
	}

	// One real server added, one weight changed, the check path changed.
	changed := fmt.Sprintf(tmpl, sock, webs[0].addr, webs[1].addr) + fmt.Sprintf("  [[virtual_server.real_server]]\n  address = %q\n  weight = 4\n", webs[2].addr)
	changed = strings.Replace(changed, "weight = 2", "weight = 5", 1)
	changed = strings.Replace(changed, `path = "/"`, `path = "/health"`, 1)
	writeConfig(t, path, changed)
	code, diffText, errb := run("check", "--diff", "-s", sock, path)
	if code != 0 {
		t.Fatalf("check --diff: exit %d: %s", code, errb)
	}
	plan := planOf(t, d, path)
	k.ResetWrites()
	code, reloadText, errb := run("reload", "-s", sock)
	if code != 0 {
		t.Fatalf("reload: exit %d: %s\n%s", code, errb, reloadText)
	}
	t.Logf("check --diff said:\n%s\nreload said:\n%s", diffText, reloadText)
	// The text of both lists the same changes.
	if strings.SplitN(diffText, "\n", 2)[1] != strings.SplitN(reloadText, "\n", 2)[1] {
		t.Errorf("check --diff and reload differ:\n%s\n---\n%s", diffText, reloadText)
	}
	wantKernel := []string{
		"update destination " + svc + " rr -> " + webs[1].addr + " (weight 2, Masq => weight 5, Masq) [web]",
		"add destination " + svc + " rr -> " + webs[2].addr + " (weight 4, Masq) [web]",
	}
	if diff := cmp.Diff(wantKernel, changeStrings(plan.Kernel)); diff != "" {
		t.Errorf("planned kernel writes (-want +got):\n%s", diff)
	}
	ops := k.WritesByOp()
	if k.Writes() != 2 || ops[ipvstest.OpUpdateDestination] != 1 || ops[ipvstest.OpNewDestination] != 1 {
		t.Errorf("the kernel saw %v, want one update and one new destination", ops)
	}
	var probes []string
	for _, p := range plan.Probes {
		probes = append(probes, p.Key.String()+" "+p.Change)
	}
	wantProbes := []string{"web " + webs[0].addr + " restarted", "web " + webs[1].addr + " restarted", "web " + webs[2].addr + " started"}
	if diff := cmp.Diff(wantProbes, probes); diff != "" {
		t.Errorf("planned probe changes (-want +got):\n%s", diff)
	}
	if w := kernelWeights(t, k); w[svc+" "+webs[1].addr] != 5 || w[svc+" "+webs[2].addr] != 4 {
		t.Errorf("after the reload the kernel holds %v", w)
	}

	// A bad file: refused with every error at file:line, the table kept.
	writeConfig(t, path, strings.Replace(strings.Replace(changed, "weight = 3", "weight = -1", 1), `scheduler = "rr"`, `scheduler = "nope"`, 1))
	k.ResetWrites()
	code, out, _ := run("reload", "-s", sock)
	if code != 1 || !strings.Contains(out, "refused, the daemon keeps its configuration") ||
		!strings.Contains(out, path+":8: virtual_server[0].scheduler") || !strings.Contains(out, "virtual_server[0].real_server[0].weight") {
		t.Errorf("reload of a bad file: exit %d\n%s", code, out)
	}
	if code, out, _ := run("check", "--diff", "-s", sock, path); code != 1 {
		t.Errorf("check --diff of a bad file: exit %d\n%s", code, out)
	}
	if k.Writes() != 0 {
		t.Errorf("a refused reload wrote to the kernel: %v", k.WritesByOp())
	}
	if rep, err := fetchStatus(ctx, sock); err != nil || !rep.ConfigStale {
		t.Errorf("status after a refused reload: %v, stale %v", err, rep != nil && rep.ConfigStale)
	}
}

// planOf asks the daemon directly for its plan of path, as check --diff
// does over the socket.
func planOf(t *testing.T, d *daemon, path string) *ReloadReport {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatal(err)
	}
	return d.plan(abs)
}

func changeStrings(cs []ipvs.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}
