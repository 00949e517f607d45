package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Where the test's Prometheus and lvsha's metrics listen, in the
// director's namespace (10.0.1.1 is its address on the client link).
const (
	promWeb     = "127.0.0.1:9090"
	promTarget  = "10.0.1.1:9650"
	promPeriod  = time.Second // scrape_interval and scrape_timeout
	promStartup = 3 * time.Minute
)

// TestPrometheusScrape is issue #17's metrics as Debian's Prometheus
// server scrapes them from a running lvsha: a virtual server with one
// healthy real server, one drained by hand with `lvsha drain` and one
// down (nothing listens), and a VRRP instance alone on its link, hence
// MASTER. Prometheus's HTTP API must give drained 1 only for the drained
// server, up 0 only for the down one, state 2 for the master, each as
// `lvsha status` reports it, and adverts sent rising between two queries.
func TestPrometheusScrape(t *testing.T) {
	prom := prometheusBin(t)
	s := newSeed(t, defaultSeedCheck())
	// web3: a third real server whose web server never runs.
	web3 := newNetns(t, "web3")
	veth(t, web3, "192.168.164.12/24", s.lb, "")
	sh(t, "ip", "-n", s.lb, "route", "add", "192.168.164.12/32", "dev", lastVeth(t, s.lb))
	iface := ifaceOf(t, s.lb, "10.0.1.1/24")
	cfg := strings.Replace(mustRead(t, s.cfg), "resync_interval", "state_file = \""+filepath.Join(s.dir, "state.json")+"\"\nresync_interval", 1)
	cfg += fmt.Sprintf(`
  [[virtual_server.real_server]]
  address = "192.168.164.12:80"
  weight = 1

[[vrrp_instance]]
name = "vi"
interface = %q
router_id = 50
priority = 100
virtual_ips = ["10.0.1.100/24"]

[metrics]
listen = %q
`, iface, promTarget)
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s.startWeb(t, "web1")
	s.startWeb(t, "web2")
	s.waitWebs(t)
	s.startLvsha(t)
	const web1, web2, web3Addr = "192.168.164.10:80", "192.168.164.11:80", "192.168.164.12:80"
	eventually(t, "web1 and web2 at weight 1, web3 down at 0", 20*time.Second, func() bool {
		return s.weight(t, web1) == "1" && s.weight(t, web2) == "1" && s.weight(t, web3Addr) == "0"
	})
	if text, code := s.lvshaCmd(t, "drain", "web", web2); code != 0 || !strings.Contains(text, "DRAINED by hand") {
		t.Fatalf("lvsha drain web %s: exit %d\n%s", web2, code, text)
	}
	d := &director{ns: s.lb, sock: s.sock}
	eventually(t, "vi MASTER, alone on its link", 30*time.Second, func() bool { return d.state() == "MASTER" })
	t.Logf("lvsha status before Prometheus starts:\n%s", sh(t, lvshaBin(t), "status", "-s", s.sock))

	// Prometheus in the same namespace, every flag explicit (the VM has no
	// /etc/prometheus), its storage in the test's temporary directory.
	dir := t.TempDir()
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
scrape_configs:
  - job_name: lvsha
    static_configs:
      - targets: [%q]
`, promPeriod, promPeriod, promTarget)), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	startIn(t, s.lb, nil, prom,
		"--config.file="+promCfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promWeb,
		"--web.console.templates="+filepath.Join(dir, "consoles"),
		"--web.console.libraries="+filepath.Join(dir, "console_libraries"),
		"--log.level=warn")
	// Its discovery hands the target over about 5 s after start; then it
	// scrapes every second. The VM is slow: the bound is generous.
	promWait(t, s.lb, "Prometheus scrapes lvsha", promStartup, `up{job="lvsha"}`, func(r []promSample) bool {
		return len(r) == 1 && r[0].value == 1
	})
	t.Logf("Prometheus %s scraped lvsha at %s %v after it started", promWeb, promTarget, time.Since(start).Round(time.Millisecond))

	st := s.status(t)
	rsState := map[string]map[string]any{}
	for _, rs := range st["virtual_servers"].([]any)[0].(map[string]any)["real_servers"].([]any) {
		m := rs.(map[string]any)
		rsState[m["address"].(string)] = m
	}
	byAddr := func(name string) map[string]float64 {
		t.Helper()
		got := map[string]float64{}
		for _, smp := range promQuery(t, s.lb, name+`{job="lvsha",virtual_server="web"}`) {
			if smp.metric["remote_port"] != "80" || smp.metric["instance"] != promTarget {
				t.Errorf("%s: labels %v", name, smp.metric)
			}
			got[smp.metric["remote_address"]+":80"] = smp.value
		}
		return got
	}
	for _, c := range []struct {
		metric string
		want   map[string]float64
		state  func(rs map[string]any) float64 // the same, from lvsha status
	}{
		{"lvsha_real_server_drained", map[string]float64{web1: 0, web2: 1, web3Addr: 0}, func(rs map[string]any) float64 { return b2f(rs["manual"] == "drain") }},
		{"lvsha_real_server_up", map[string]float64{web1: 1, web2: 1, web3Addr: 0}, func(rs map[string]any) float64 { return b2f(rs["health"] == "up") }},
	} {
		got := byAddr(c.metric)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("Prometheus: %s = %v, want %v", c.metric, got, c.want)
		}
		for addr, v := range got {
			if rs, ok := rsState[addr]; !ok || c.state(rs) != v {
				t.Errorf("Prometheus: %s{%s} = %v; lvsha status says %v", c.metric, addr, v, rs)
			}
		}
		t.Logf("Prometheus: %s = %v", c.metric, got)
	}
	if r := promQuery(t, s.lb, `lvsha_virtual_server_live_real_servers{virtual_server="web"}`); len(r) != 1 || r[0].value != 1 {
		t.Errorf("Prometheus: lvsha_virtual_server_live_real_servers = %v, want 1 (web1; web2 drained, web3 down)", r)
	}

	vrrp := `{job="lvsha",vrrp_instance="vi"}`
	r := promQuery(t, s.lb, "lvsha_vrrp_state"+vrrp)
	if len(r) != 1 || r[0].value != 2 || r[0].metric["interface"] != iface || r[0].metric["vrid"] != "50" {
		t.Fatalf("Prometheus: lvsha_vrrp_state = %v, want one series of 2 (MASTER) with interface %s, vrid 50", r, iface)
	}
	if got := d.state(); got != "MASTER" {
		t.Errorf("lvsha status: vi is %s, Prometheus says MASTER", got)
	}
	t.Logf("Prometheus: lvsha_vrrp_state%s = 2 (MASTER), labels %v", vrrp, r[0].metric)

	// A counter rises from one scrape to a later one.
	first := promQuery(t, s.lb, "lvsha_vrrp_adverts_sent_total"+vrrp)
	if len(first) != 1 || first[0].value <= 0 {
		t.Fatalf("Prometheus: lvsha_vrrp_adverts_sent_total = %v, want one positive series", first)
	}
	var second []promSample
	promWait(t, s.lb, "adverts sent rises in Prometheus", 30*promPeriod, "lvsha_vrrp_adverts_sent_total"+vrrp, func(r []promSample) bool {
		second = r
		return len(r) == 1 && r[0].value > first[0].value
	})
	if sent := instAdvertsSent(t, s); sent < second[0].value {
		t.Errorf("lvsha status: %v adverts sent, fewer than Prometheus scraped before (%v)", sent, second[0].value)
	}
	t.Logf("Prometheus: lvsha_vrrp_adverts_sent_total%s %v, then %v", vrrp, first[0].value, second[0].value)
}

// prometheusBin is Prometheus's server: Debian's prometheus package
// (scripts/setup installs it) on the host, copied into the VM by runInVM.
// A test that needs it fails without it.
func prometheusBin(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found (scripts/setup installs Debian's prometheus package; the VM gets the host's): %v", err)
	}
	return p
}

// ifaceOf names the interface in ns that has addr (CIDR).
func ifaceOf(t testing.TB, ns, addr string) string {
	t.Helper()
	for _, line := range strings.Split(inNS(t, ns, "ip", "-o", "addr", "show"), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[3] == addr {
			return f[1]
		}
	}
	t.Fatalf("no interface with %s in %s", addr, ns)
	return ""
}

// instAdvertsSent is instance vi's adverts_sent from `lvsha status -o json`
// (-1 without it).
func instAdvertsSent(t *testing.T, s *seed) float64 {
	t.Helper()
	for _, v := range s.status(t)["vrrp_instances"].([]any) {
		if m := v.(map[string]any); m["name"] == "vi" {
			n, _ := m["adverts_sent"].(float64)
			return n
		}
	}
	return -1
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// promSample is one series of an instant vector from Prometheus's API.
type promSample struct {
	metric map[string]string
	value  float64
}

func (p promSample) String() string { return fmt.Sprintf("%v=%v", p.metric, p.value) }

// promQueryErr asks the test's Prometheus (in ns) for the instant vector
// of query through /api/v1/query.
func promQueryErr(t testing.TB, ns, query string) ([]promSample, error) {
	body, err := httpGet(t, ns, "http://"+promWeb+"/api/v1/query?query="+url.QueryEscape(query))
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"` // [unix seconds, "value"]
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return nil, fmt.Errorf("query %s: %v: %s", query, err, body)
	}
	if resp.Status != "success" || resp.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: status %s, type %s, error %s", query, resp.Status, resp.Data.ResultType, resp.Error)
	}
	var out []promSample
	for _, r := range resp.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %v", query, r.Value, err)
		}
		out = append(out, promSample{metric: r.Metric, value: v})
	}
	return out, nil
}

// promQuery is promQueryErr; an error fails the test.
func promQuery(t testing.TB, ns, query string) []promSample {
	t.Helper()
	r, err := promQueryErr(t, ns, query)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// promWait queries every half second until ok accepts the answer, for at
// most limit and at most one try per half second of it; it fails the test
// with the last answer (or error) otherwise.
func promWait(t testing.TB, ns, what string, limit time.Duration, query string, ok func([]promSample) bool) {
	t.Helper()
	const every = 500 * time.Millisecond
	start := time.Now()
	var last []promSample
	var err error
	for try := 0; try <= int(limit/every) && time.Since(start) <= limit; try++ {
		if last, err = promQueryErr(t, ns, query); err == nil && ok(last) {
			return
		}
		time.Sleep(every)
	}
	t.Fatalf("%s: not within %v: %s gave %v, error %v", what, limit, query, last, err)
}
