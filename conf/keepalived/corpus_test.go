package keepalived

import (
	"path/filepath"
	"strings"
	"testing"
)

// find follows a path of "name args..." steps from the top level.
func find(nodes []*Node, path ...string) *Node {
	var n *Node
	for _, step := range path {
		n = nil
		for _, c := range nodes {
			if strings.Join(append([]string{c.Name}, c.Args...), " ") == step {
				n = c
				break
			}
		}
		if n == nil {
			return nil
		}
		nodes = n.Children
	}
	return n
}

type corpusCheck struct {
	path []string
	file string // the node's file relative to the corpus, "" for the file parsed
	line int
	body string // render of the node's children; "" for none
}

// TestCorpus parses realistic configurations from disk, through the default
// os.ReadFile and filepath.Glob, and checks nodes a mapper relies on.
func TestCorpus(t *testing.T) {
	for _, tc := range []struct {
		file   string
		params []string
		top    int // number of top-level directives
		checks []corpusCheck
	}{
		{file: "01-http-get.conf", top: 2, checks: []corpusCheck{
			{path: []string{"global_defs", "notification_email"}, line: 4, body: "ops@example.com"},
			{path: []string{"virtual_server 192.0.2.10 80", "real_server 10.0.1.11 80", "HTTP_GET"}, line: 22,
				body: "url { path /healthz; digest 9b3a0c85a887a256d6939da88aabd8cd }; url { path /status; status_code 200 }; connect_timeout 3; retry 3; delay_before_retry 3"},
			{path: []string{"virtual_server 192.0.2.10 80", "real_server 10.0.1.12 80", "HTTP_GET", "url", "status_code 200-299"}, line: 41},
		}},
		{file: "02-ssl-get.conf", top: 2, checks: []corpusCheck{
			{path: []string{"global_defs", "lvs_flush"}, line: 3},
			{path: []string{"virtual_server 203.0.113.20 443", "sorry_server 203.0.113.99 443"}, line: 12},
			{path: []string{"virtual_server 203.0.113.20 443", "real_server 203.0.113.21 443", "inhibit_on_failure"}, line: 18},
			{path: []string{"virtual_server 203.0.113.20 443", "real_server 203.0.113.22 443", "SSL_GET", "url"}, line: 34,
				body: "path /check?deep=1; status_code 200"},
		}},
		{file: "03-tcp-check.conf", top: 2, checks: []corpusCheck{
			{path: []string{"global_defs", "router_id lb-db"}, line: 4},
			{path: []string{"virtual_server 10.20.0.5 5432", "delay_loop 4"}, line: 9},
			{path: []string{"virtual_server 10.20.0.5 5432", "quorum_up /usr/local/bin/vs-up 10.20.0.5"}, line: 15},
			{path: []string{"virtual_server 10.20.0.5 5432", "real_server 10.20.1.1 5432", "TCP_CHECK"}, line: 21,
				body: "connect_port 5432; connect_timeout 2"},
			{path: []string{"virtual_server 10.20.0.5 5432", "real_server 10.20.1.2 5432", "TCP_CHECK"}, line: 29,
				body: "connect_port 5432; connect_timeout 2"},
			{path: []string{"virtual_server 10.20.0.5 5432", "real_server 10.20.1.3 5432"}, line: 31,
				body: "weight 0; TCP_CHECK {}"},
		}},
		{file: "04-misc-check-crlf.conf", top: 2, checks: []corpusCheck{
			{path: []string{"global_defs", "script_user keepalived_script"}, line: 3},
			{path: []string{"virtual_server 198.51.100.40 53", "real_server 198.51.100.41 53", "MISC_CHECK"}, line: 14,
				body: `misc_path "/usr/lib/keepalived/check_dns.sh 198.51.100.41 example.com"; misc_timeout 5; misc_dynamic; user nobody`},
			{path: []string{"virtual_server 198.51.100.40 53", "protocol UDP"}, line: 10},
		}},
		{file: "05-vs-group.conf", top: 2, checks: []corpusCheck{
			{path: []string{"virtual_server_group WEB"}, line: 1,
				body: "192.0.2.30 80; 192.0.2.31-35 80; 10.5.0.1 8080 weight 2; fwmark 7"},
			{path: []string{"virtual_server group WEB", "real_server 10.5.1.2 80", "TCP_CHECK", "connect_timeout 3"}, line: 26},
		}},
		{file: "06-fwmark.conf", top: 2, checks: []corpusCheck{
			{path: []string{"virtual_server fwmark 60", "persistence_granularity 255.255.255.0"}, line: 7},
			{path: []string{"virtual_server fwmark 60", "real_server 10.60.0.2 0", "TCP_CHECK"}, line: 20,
				body: "connect_ip 10.60.0.2; connect_port 443"},
			{path: []string{"virtual_server fwmark 61", "real_server 10.61.0.1 80"}, line: 30, body: ""},
		}},
		{file: "07-vrrp.conf", top: 2, checks: []corpusCheck{
			{path: []string{"vrrp_script chk_haproxy", "script /usr/bin/killall -0 haproxy"}, line: 2},
			{path: []string{"vrrp_script chk_haproxy", "weight -20"}, line: 4},
			{path: []string{"vrrp_instance VI_1", "unicast_peer"}, line: 16, body: "192.0.2.3; 192.0.2.4"},
			{path: []string{"vrrp_instance VI_1", "authentication", "auth_pass s3cr#t"}, line: 22},
			{path: []string{"vrrp_instance VI_1", "virtual_ipaddress"}, line: 24,
				body: "192.0.2.100/24 dev eth0 label eth0:vip; 192.0.2.101/24"},
			{path: []string{"vrrp_instance VI_1", "track_interface", "eth1 weight -10"}, line: 32},
			{path: []string{"vrrp_instance VI_1", "notify_fault /etc/keepalived/notify.sh FAULT"}, line: 36},
		}},
		{file: "08-sync-group.conf", top: 3, checks: []corpusCheck{
			{path: []string{"vrrp_sync_group VG1", "group"}, line: 2, body: "VI_EXT; VI_INT"},
			{path: []string{"vrrp_instance VI_EXT", "virtual_routes"}, line: 22,
				body: "src 203.0.113.1 to 0.0.0.0/0 via 203.0.113.254 dev eth0"},
			{path: []string{"vrrp_instance VI_INT", "virtual_ipaddress"}, line: 33, body: "10.0.0.1/16 dev eth1"},
		}},
		{file: "09-params.conf", params: []string{"lb1"}, top: 3, checks: []corpusCheck{
			{path: []string{"global_defs"}, line: 18, body: "router_id lb1"},
			{path: []string{"vrrp_instance VI_WEB", "state MASTER"}, line: 24},
			{path: []string{"vrrp_instance VI_WEB", "priority 150"}, line: 28},
			{path: []string{"vrrp_instance VI_WEB", "virtual_ipaddress"}, line: 29, body: "198.51.100.80/24"},
			{path: []string{"virtual_server 198.51.100.80 80", "real_server 10.9.0.1 80"}, line: 38,
				body: "weight 1; HTTP_GET { url { path /ping; status_code 200 } }"},
			{path: []string{"virtual_server 198.51.100.80 80", "real_server 10.9.0.2 80", "HTTP_GET", "url", "status_code 200"}, line: 40},
		}},
		{file: "09-params.conf", params: []string{"lb2"}, top: 3, checks: []corpusCheck{
			{path: []string{"global_defs"}, line: 18, body: "router_id lb2"},
			{path: []string{"vrrp_instance VI_WEB", "state BACKUP"}, line: 25},
			{path: []string{"vrrp_instance VI_WEB", "priority 100"}, line: 28},
		}},
		{file: "10-includes.conf", top: 6, checks: []corpusCheck{
			{path: []string{"virtual_server 10.10.0.53 53", "real_server 10.10.2.1 53", "MISC_CHECK", "misc_path /bin/true"},
				file: "conf.d/10-dns.conf", line: 5},
			{path: []string{"virtual_server 10.10.0.1 80"}, file: "conf.d/20-web.conf", line: 1,
				body: "lb_algo rr; lb_kind NAT; real_server 10.10.1.1 80 { TCP_CHECK { connect_timeout 3 } }"},
			{path: []string{"vrrp_instance VI_B", "virtual_router_id 21"}, file: "vrrp.d/b.inc", line: 3},
			{path: []string{"virtual_server 10.10.0.1 443", "lb_algo rr"}, line: 9},
			{path: []string{"virtual_server 10.10.0.1 443", "real_server 10.10.1.1 443", "SSL_GET", "url", "path /"},
				file: "conf.d/rs-443.snippet", line: 5},
		}},
	} {
		t.Run(tc.file+strings.Join(tc.params, ","), func(t *testing.T) {
			dir := filepath.Join("testdata", "corpus")
			name := filepath.Join(dir, tc.file)
			root, warns, err := ParseFile(name, Options{Params: tc.params})
			if err != nil || len(warns) > 0 {
				t.Fatalf("err %v, warnings %v", err, warns)
			}
			if len(root.Children) != tc.top {
				t.Errorf("%d top-level directives, want %d: %s", len(root.Children), tc.top, render(root.Children))
			}
			for _, c := range tc.checks {
				n := find(root.Children, c.path...)
				if n == nil {
					t.Errorf("%q not found", c.path)
					continue
				}
				file := name
				if c.file != "" {
					file = filepath.Join(dir, c.file)
				}
				if n.File != file || n.Line != c.line {
					t.Errorf("%q at %s:%d, want %s:%d", c.path, n.File, n.Line, file, c.line)
				}
				if got := render(n.Children); got != c.body {
					t.Errorf("%q body:\n got %s\nwant %s", c.path, got, c.body)
				}
			}
		})
	}
}

// TestCorpusIncludeOrder pins the order of spliced files: glob matches
// sorted, brace alternatives in the order written.
func TestCorpusIncludeOrder(t *testing.T) {
	root, _, err := ParseFile(filepath.Join("testdata", "corpus", "10-includes.conf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range root.Children {
		got = append(got, filepath.Base(n.File)+" "+n.Name+" "+strings.Join(n.Args, " "))
	}
	want := []string{
		"10-includes.conf global_defs ",
		"10-dns.conf virtual_server 10.10.0.53 53",
		"20-web.conf virtual_server 10.10.0.1 80",
		"b.inc vrrp_instance VI_B",
		"a.inc vrrp_instance VI_A",
		"10-includes.conf virtual_server 10.10.0.1 443",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
