package health

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lvsha/lvsha/conf"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func localSet(addrs ...string) func(netip.Addr) bool {
	set := map[netip.Addr]bool{}
	for _, a := range addrs {
		set[netip.MustParseAddr(a)] = true
	}
	return func(a netip.Addr) bool { return set[a] }
}

// vsWith is a virtual server at addr whose real servers all use chk.
func vsWith(name, proto, addr string, chk *conf.Check, rss ...string) conf.VirtualServer {
	vs := conf.VirtualServer{Name: name, Protocol: proto}
	if addr != "" {
		vs.Address = ap(addr)
	}
	for _, rs := range rss {
		vs.RealServers = append(vs.RealServers, conf.RealServer{Address: ap(rs), Weight: 1, Check: chk})
	}
	return vs
}

func TestFindSelfProbes(t *testing.T) {
	httpChk := &conf.Check{Type: "http", Path: "/", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2}
	with := func(f func(c *conf.Check)) *conf.Check {
		c := *httpChk
		f(&c)
		return &c
	}
	lo4 := ap("127.0.0.1:80")
	tests := []struct {
		name  string
		vss   []conf.VirtualServer
		local []string
		want  []SelfProbe
	}{
		{
			name:  "the seed: director's own address is the VIP and a real server",
			vss:   []conf.VirtualServer{vsWith("web", "tcp", "192.168.164.1:80", httpChk, "192.168.164.1:80", "192.168.164.11:80")},
			local: []string{"192.168.164.1"},
			want: []SelfProbe{{VirtualServer: "web", VSIndex: 0, RSIndex: 0, RealServer: ap("192.168.164.1:80"),
				Target: ap("192.168.164.1:80"), Protocol: "tcp", Service: "web", Via: lo4}},
		},
		{
			name:  "not this director's address: blocked",
			vss:   []conf.VirtualServer{vsWith("web", "tcp", "192.168.164.1:80", httpChk, "192.168.164.1:80")},
			local: []string{"192.168.164.11"},
			want: []SelfProbe{{VirtualServer: "web", RealServer: ap("192.168.164.1:80"),
				Target: ap("192.168.164.1:80"), Protocol: "tcp", Service: "web"}},
		},
		{
			name:  "connect_port off the service: IPVS does not match it",
			vss:   []conf.VirtualServer{vsWith("web", "tcp", "192.168.164.1:80", with(func(c *conf.Check) { c.ConnectPort = 8080 }), "192.168.164.1:80")},
			local: []string{"192.168.164.1"},
		},
		{
			name: "connect_port onto another virtual service keeps its port",
			vss: []conf.VirtualServer{
				vsWith("web", "tcp", "192.168.164.1:80", with(func(c *conf.Check) { c.ConnectPort = 8080 }), "192.168.164.1:80"),
				vsWith("admin", "tcp", "192.168.164.1:8080", nil),
			},
			local: []string{"192.168.164.1"},
			want: []SelfProbe{{VirtualServer: "web", RealServer: ap("192.168.164.1:80"),
				Target: ap("192.168.164.1:8080"), Protocol: "tcp", Service: "admin", Via: ap("127.0.0.1:8080")}},
		},
		{
			name:  "connect_address onto a virtual service",
			vss:   []conf.VirtualServer{vsWith("web", "tcp", "192.168.164.1:80", with(func(c *conf.Check) { c.ConnectAddress = netip.MustParseAddr("192.168.164.1") }), "192.168.164.11:80")},
			local: []string{"192.168.164.1"},
			want: []SelfProbe{{VirtualServer: "web", RealServer: ap("192.168.164.11:80"),
				Target: ap("192.168.164.1:80"), Protocol: "tcp", Service: "web", Via: lo4}},
		},
		{
			name:  "connect_address 127.0.0.1 (the workaround) is left alone",
			vss:   []conf.VirtualServer{vsWith("web", "tcp", "192.168.164.1:80", with(func(c *conf.Check) { c.ConnectAddress = netip.MustParseAddr("127.0.0.1") }), "192.168.164.1:80")},
			local: []string{"192.168.164.1", "127.0.0.1"},
		},
		{
			name:  "a tcp probe does not match a udp service",
			vss:   []conf.VirtualServer{vsWith("dns", "udp", "192.168.164.1:53", &conf.Check{Type: "tcp"}, "192.168.164.1:53")},
			local: []string{"192.168.164.1"},
		},
		{
			name:  "a dns probe is udp and matches a udp service",
			vss:   []conf.VirtualServer{vsWith("dns", "udp", "192.168.164.1:53", &conf.Check{Type: "dns"}, "192.168.164.1:53")},
			local: []string{"192.168.164.1"},
			want: []SelfProbe{{VirtualServer: "dns", RealServer: ap("192.168.164.1:53"),
				Target: ap("192.168.164.1:53"), Protocol: "udp", Service: "dns", Via: ap("127.0.0.1:53")}},
		},
		{
			name:  "icmp is not balanced by IPVS",
			vss:   []conf.VirtualServer{vsWith("web", "tcp", "192.168.164.1:80", &conf.Check{Type: "icmp"}, "192.168.164.1:80")},
			local: []string{"192.168.164.1"},
		},
		{
			name:  "exec connects wherever its command does",
			vss:   []conf.VirtualServer{vsWith("web", "tcp", "192.168.164.1:80", &conf.Check{Type: "exec", Command: []string{"true"}}, "192.168.164.1:80")},
			local: []string{"192.168.164.1"},
		},
		{
			name:  "no check",
			vss:   []conf.VirtualServer{vsWith("web", "tcp", "192.168.164.1:80", nil, "192.168.164.1:80")},
			local: []string{"192.168.164.1"},
		},
		{
			name:  "IPv6 goes to ::1",
			vss:   []conf.VirtualServer{vsWith("web6", "tcp", "[2001:db8::1]:443", &conf.Check{Type: "https"}, "[2001:db8::1]:443")},
			local: []string{"2001:db8::1"},
			want: []SelfProbe{{VirtualServer: "web6", RealServer: ap("[2001:db8::1]:443"),
				Target: ap("[2001:db8::1]:443"), Protocol: "tcp", Service: "web6", Via: ap("[::1]:443")}},
		},
		{
			name:  "a port-0 service catches every port of its address",
			vss:   []conf.VirtualServer{vsWith("all", "tcp", "192.168.164.1:0", &conf.Check{Type: "tcp", ConnectPort: 22}, "192.168.164.1:0")},
			local: []string{"192.168.164.1"},
			want: []SelfProbe{{VirtualServer: "all", RealServer: ap("192.168.164.1:0"),
				Target: ap("192.168.164.1:22"), Protocol: "tcp", Service: "all", Via: ap("127.0.0.1:22")}},
		},
		{
			name: "fwmark services match marks, not addresses",
			vss: []conf.VirtualServer{{Name: "fwm", FWMark: 1, Protocol: "tcp",
				RealServers: []conf.RealServer{{Address: ap("192.168.164.1:80"), Check: httpChk}}}},
			local: []string{"192.168.164.1"},
		},
		{
			name: "second virtual server's real server, found by index",
			vss: []conf.VirtualServer{
				vsWith("api", "tcp", "192.168.164.1:8443", httpChk, "192.168.164.11:8443"),
				vsWith("web", "tcp", "192.168.164.1:80", httpChk, "192.168.164.11:80", "192.168.164.1:80"),
			},
			local: []string{"192.168.164.1"},
			want: []SelfProbe{{VirtualServer: "web", VSIndex: 1, RSIndex: 1, RealServer: ap("192.168.164.1:80"),
				Target: ap("192.168.164.1:80"), Protocol: "tcp", Service: "web", Via: lo4}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FindSelfProbes(&conf.Config{VirtualServers: tc.vss}, localSet(tc.local...))
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("FindSelfProbes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedirectSelfProbes(t *testing.T) {
	shared := &conf.Check{Type: "http", Path: "/", Status: []int{200}}
	https := &conf.Check{Type: "https", Path: "/", TLSVerify: true}
	named := &conf.Check{Type: "http", Path: "/", Host: "www.example.com"}
	cfg := &conf.Config{VirtualServers: []conf.VirtualServer{
		vsWith("web", "tcp", "192.168.164.1:80", shared, "192.168.164.1:80", "192.168.164.11:80"),
		vsWith("tls", "tcp", "192.168.164.1:443", https, "192.168.164.1:443"),
		vsWith("named", "tcp", "192.168.164.1:81", named, "192.168.164.1:81"),
		vsWith("far", "tcp", "10.9.9.9:80", shared, "10.9.9.9:80"),
	}}
	sp := FindSelfProbes(cfg, localSet("192.168.164.1"))
	if len(sp) != 4 {
		t.Fatalf("found %d self probes, want 4: %+v", len(sp), sp)
	}
	out := RedirectSelfProbes(cfg, sp)

	tests := []struct {
		name   string
		vs, rs int
		want   conf.Check
	}{
		{"loopback, same port, Host names the target", 0, 0,
			conf.Check{Type: "http", Path: "/", Status: []int{200}, ConnectAddress: netip.MustParseAddr("127.0.0.1"), ConnectPort: 80, Host: "192.168.164.1:80"}},
		{"the neighbour sharing the check keeps it", 0, 1, *shared},
		{"https verifies the certificate against the target", 1, 0,
			conf.Check{Type: "https", Path: "/", TLSVerify: true, ConnectAddress: netip.MustParseAddr("127.0.0.1"), ConnectPort: 443, Host: "192.168.164.1:443", SNI: "192.168.164.1"}},
		{"a configured Host is kept", 2, 0,
			conf.Check{Type: "http", Path: "/", Host: "www.example.com", ConnectAddress: netip.MustParseAddr("127.0.0.1"), ConnectPort: 81}},
		{"blocked is left for the caller", 3, 0, *shared},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := out.VirtualServers[tc.vs].RealServers[tc.rs].Check
			if diff := cmp.Diff(tc.want, *got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("check (-want +got):\n%s", diff)
			}
		})
	}
	// The input is a running daemon's config: it must not change.
	if c := cfg.VirtualServers[0].RealServers[0].Check; c != shared || c.ConnectAddress.IsValid() || c.Host != "" {
		t.Errorf("input config modified: %+v", c)
	}
	if c := cfg.VirtualServers[1].RealServers[0].Check; c.SNI != "" || c.Host != "" {
		t.Errorf("input https check modified: %+v", c)
	}
}

// The redirected check is what the engine runs: a server on the loopback
// address at the target's port is reached and sees the target in Host,
// and a server bound only to the target's own address is not reached and
// fails the probe (127.0.0.2 stands in for the director's address: it is
// local without being loopback's 127.0.0.1).
func TestSelfProbeReachesLoopbackOnly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	hosts := make(chan string, 10)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hosts <- r.Host })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	// Bound only to the "VIP": a port of 127.0.0.2 that nothing serves on
	// 127.0.0.1.
	var vipOnly net.Listener
	for vipOnly == nil {
		l, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		p := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		if free, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", p)); err == nil {
			free.Close()
			vipOnly = l
		} else {
			defer l.Close() // taken on 127.0.0.1: keep it so the next try differs
		}
	}
	t.Cleanup(func() { vipOnly.Close() })
	vipPort := vipOnly.Addr().(*net.TCPAddr).Port

	chk := &conf.Check{Type: "http", Path: "/", Status: []int{200}, Timeout: 2 * time.Second}
	tcp := &conf.Check{Type: "tcp", Timeout: 2 * time.Second}
	vip := "127.0.0.2:" + strconv.Itoa(port)
	vipOnlyAddr := "127.0.0.2:" + strconv.Itoa(vipPort)
	cfg := &conf.Config{VirtualServers: []conf.VirtualServer{
		vsWith("wild", "tcp", vip, chk, vip),
		vsWith("only", "tcp", vipOnlyAddr, tcp, vipOnlyAddr),
	}}
	sp := FindSelfProbes(cfg, localSet("127.0.0.2"))
	out := RedirectSelfProbes(cfg, sp)
	tests := []struct {
		name   string
		vs     int
		wantOK bool
		errHas string
	}{
		{"listener on loopback's port is reached", 0, true, ""},
		{"bound only to the VIP: refused, not healthy", 1, false, "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := out.VirtualServers[tc.vs].RealServers[0]
			c, err := NewChecker(out.VirtualServers[tc.vs].Name, rs.Address, rs.Check)
			if err != nil {
				t.Fatal(err)
			}
			res := c.Check(context.Background())
			if res.OK != tc.wantOK || (tc.errHas != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tc.errHas))) {
				t.Fatalf("probe %s: ok=%v err=%v, want ok=%v err containing %q", c, res.OK, res.Err, tc.wantOK, tc.errHas)
			}
		})
	}
	if got := <-hosts; got != vip {
		t.Errorf("Host header %q, want the target %q", got, vip)
	}
}
