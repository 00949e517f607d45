package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// registeredNames is every lvsha series name the daemon can expose,
// read from the collector itself (its descriptors, with each family's
// type from a gather of a report that has them all), so a renamed or
// removed metric shows here without a list kept by hand. A histogram
// gives its _bucket, _sum and _count series.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	rep, stats := bigReport(2, 2)
	rep.VRRP = []instance.Status{{Name: "vi_1", Interface: "eth0", RouterID: 51, State: "MASTER", BasePriority: 100, Priority: 100,
		Dropped: map[string]uint64{"ttl": 1}}}
	rep.VRRPLinks = []transport.LinkStats{{Interface: "eth0", Endpoints: 1}}
	rep.BFD, rep.BFDLinks = testBFDSessions(), testBFDLinks()
	rep.ConnSync = &SyncReport{VRRPInstance: "vi_1", Want: "master", Daemons: []SyncDaemonReport{{State: "master", Interface: "eth1", SyncID: 51}}}
	rep.Cluster = clusterReport()
	c := newMetricsCollector(func() (*metricsState, error) { return &metricsState{report: rep}, nil }, stats)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]dto.MetricType{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType()
	}
	// A Desc tells its name only in its String: Desc{fqName: "lvsha_...", ...}.
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	names := map[string]bool{}
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no fqName in %s", d)
		}
		typ, ok := types[m[1]]
		if !ok {
			t.Fatalf("%s is registered but the test report gathers none: its type is unknown", m[1])
		}
		names[m[1]] = true
		if typ == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+suffix] = true
			}
		}
	}
	if len(names) < 30 {
		t.Fatalf("only %d names registered: the collector's descriptors were not read", len(names))
	}
	return names
}

// dashboardQueries walks a Grafana dashboard model and returns every
// PromQL query in it: the panels' targets' expr, and the template
// variables' queries, each with the path it is at.
func dashboardQueries(v any, path string, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := path + "." + k
			if s, ok := e.(string); ok && (k == "expr" || k == "query" && strings.Contains(path, "templating")) {
				out[p] = s
				continue
			}
			dashboardQueries(e, p, out)
		}
	case []any:
		for i, e := range v {
			dashboardQueries(e, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// The sample dashboard is a Grafana dashboard on a Prometheus data
// source variable whose every query uses only metrics lvsha registers,
// and parses as PromQL (promtool, with Grafana's variables substituted).
func TestDashboard(t *testing.T) {
	tool := promtool(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "lvsha-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title      string
			Type       string
			Datasource struct{ Type, UID string }
		}
		Templating struct {
			List []struct{ Name, Type, Query any }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("docs/lvsha-dashboard.json: %v", err)
	}
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	hasDS := false
	for _, v := range dash.Templating.List {
		hasDS = hasDS || v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}
	if !hasDS {
		t.Error(`no Prometheus data source variable (name "datasource", type "datasource", query "prometheus")`)
	}
	for _, p := range dash.Panels {
		if p.Type != "row" && (p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}") {
			t.Errorf("panel %q: datasource %+v, want the variable: {prometheus ${datasource}}", p.Title, p.Datasource)
		}
	}

	queries := map[string]string{}
	dashboardQueries(raw, "", queries)
	if len(queries) < 10 {
		t.Fatalf("only %d queries found in the dashboard", len(queries))
	}
	registered := registeredNames(t)
	// Names outside label matchers' quoted values, which may hold anything.
	quoted := regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	metric := regexp.MustCompile(`\blvsha_[A-Za-z0-9_]+`)
	used := map[string]bool{}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, path := range slices.Sorted(maps.Keys(queries)) {
		q := queries[path]
		for _, name := range metric.FindAllString(quoted.ReplaceAllString(q, `""`), -1) {
			used[name] = true
			if !registered[name] {
				t.Errorf("%s: %s is not a metric lvsha registers: %s", path, name, q)
			}
		}
		if strings.HasPrefix(q, "label_values(") {
			continue // Grafana's, not PromQL
		}
		// Grafana's variables as Prometheus would get them.
		q = strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*").Replace(q)
		n++
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %q\n", n, q)
	}
	if len(used) < 10 {
		t.Errorf("the dashboard uses only %d lvsha metrics", len(used))
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("the dashboard's queries do not parse as PromQL: %v\n%s\n%s", err, out, rules.String())
	}
}
