package main

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// The start-up check names exactly the capabilities missing for the
// configuration, and what each is for.
func TestCheckCaps(t *testing.T) {
	const (
		admin = uint64(1) << unix.CAP_NET_ADMIN
		raw   = uint64(1) << unix.CAP_NET_RAW
		sys   = uint64(1) << unix.CAP_SYS_ADMIN
		all   = ^uint64(0)
	)
	rs := func(check string) conf.RealServer {
		r := conf.RealServer{Address: netip.MustParseAddrPort("10.0.0.2:80")}
		if check != "" {
			r.Check = &conf.Check{Type: check}
		}
		return r
	}
	tcpOnly := &conf.Config{VirtualServers: []conf.VirtualServer{{Name: "web", RealServers: []conf.RealServer{rs("tcp"), rs("")}}}}
	icmp := &conf.Config{VirtualServers: []conf.VirtualServer{
		{Name: "web", RealServers: []conf.RealServer{rs("tcp")}},
		{Name: "dns", RealServers: []conf.RealServer{rs("tcp"), rs("icmp"), rs("icmp")}},
	}}
	withVRRP := &conf.Config{VirtualServers: tcpOnly.VirtualServers, VRRPInstances: []conf.VRRPInstance{{Name: "vi_1"}, {Name: "vi_2"}}}
	for _, tc := range []struct {
		name      string
		effective uint64
		cfg       *conf.Config
		netns     bool
		want      []string // each a part of the error; none: no error
		wantNot   []string
	}{
		{name: "root", effective: all, cfg: withVRRP, netns: true},
		{name: "the unit's two", effective: admin | raw, cfg: withVRRP},
		{name: "LVS alone needs no raw sockets", effective: admin, cfg: tcpOnly},
		{name: "empty config still needs NET_ADMIN", effective: raw, cfg: &conf.Config{},
			want: []string{"missing capabilities: CAP_NET_ADMIN (to program IPVS and the VRRP addresses)"}, wantNot: []string{"CAP_NET_RAW"}},
		{name: "nothing", effective: 0, cfg: withVRRP,
			want: []string{"CAP_NET_ADMIN (to program IPVS", `CAP_NET_RAW (for the raw sockets of vrrp_instance "vi_1", vrrp_instance "vi_2")`, "AmbientCapabilities="}},
		{name: "VRRP without NET_RAW", effective: admin | sys, cfg: withVRRP,
			want: []string{`missing capabilities: CAP_NET_RAW (for the raw sockets of vrrp_instance "vi_1"`}, wantNot: []string{"CAP_NET_ADMIN"}},
		{name: "icmp check without NET_RAW", effective: admin, cfg: icmp,
			want: []string{`missing capabilities: CAP_NET_RAW (for the raw sockets of the icmp checks of virtual_server "dns")`}, wantNot: []string{`"web"`}},
		{name: "netns without SYS_ADMIN", effective: admin | raw, cfg: tcpOnly, netns: true,
			want: []string{"missing capabilities: CAP_SYS_ADMIN (to enter the --netns namespace)"}, wantNot: []string{"CAP_NET"}},
		{name: "netns with SYS_ADMIN", effective: admin | sys, cfg: tcpOnly, netns: true},
		{name: "control_socket_group without CHOWN", effective: admin | raw, cfg: &conf.Config{Director: conf.Director{ControlSocketGroup: "ops"}},
			want: []string{"missing capabilities: CAP_CHOWN (to give the control socket to control_socket_group)"}, wantNot: []string{"CAP_NET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCaps(tc.effective, tc.cfg, tc.netns)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("checkCaps: %v, want none missing", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkCaps found nothing missing, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q names %q, which is not missing", err, w)
				}
			}
		})
	}
}

// effectiveCaps reads this process's set as /proc/self/status shows it.
func TestEffectiveCaps(t *testing.T) {
	got, err := effectiveCaps()
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:\t"); ok {
			want, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("effectiveCaps = %#x, /proc/self/status says %#x", got, want)
			}
			return
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
}

// What the daemon keeps after start-up: CAP_NET_ADMIN and CAP_NET_RAW
// whatever the config (a reload may need them), CAP_SYS_ADMIN with
// --netns alone, CAP_NET_BIND_SERVICE only for a port below 1024.
func TestKeptCaps(t *testing.T) {
	withMetrics := func(listen string) *conf.Config { return &conf.Config{Metrics: conf.Metrics{Listen: listen}} }
	for _, tc := range []struct {
		name  string
		cfg   *conf.Config
		netns bool
		want  string
	}{
		{"empty", &conf.Config{}, false, "CAP_NET_ADMIN,CAP_NET_RAW"},
		{"netns", &conf.Config{}, true, "CAP_NET_ADMIN,CAP_NET_RAW,CAP_SYS_ADMIN"},
		{"metrics on a high port", withMetrics(":9477"), false, "CAP_NET_ADMIN,CAP_NET_RAW"},
		{"metrics on port 80", withMetrics("127.0.0.1:80"), false, "CAP_NET_ADMIN,CAP_NET_RAW,CAP_NET_BIND_SERVICE"},
		{"metrics on [::]:443", withMetrics("[::]:443"), false, "CAP_NET_ADMIN,CAP_NET_RAW,CAP_NET_BIND_SERVICE"},
		{"cluster on port 700", &conf.Config{Cluster: &conf.Cluster{BindPort: 700}}, false, "CAP_NET_ADMIN,CAP_NET_RAW,CAP_NET_BIND_SERVICE"},
		{"cluster on its default", &conf.Config{Cluster: &conf.Cluster{BindPort: 7946}}, false, "CAP_NET_ADMIN,CAP_NET_RAW"},
		{"control_socket_group", &conf.Config{Director: conf.Director{ControlSocketGroup: "ops"}}, false, "CAP_NET_ADMIN,CAP_NET_RAW,CAP_CHOWN"},
		{"rt_priority", &conf.Config{Director: conf.Director{RTPriority: 10}}, false, "CAP_NET_ADMIN,CAP_NET_RAW,CAP_SYS_NICE"},
		{"negative nice", &conf.Config{Director: conf.Director{Nice: -1}}, false, "CAP_NET_ADMIN,CAP_NET_RAW,CAP_SYS_NICE"},
		{"positive nice", &conf.Config{Director: conf.Director{Nice: 5}}, false, "CAP_NET_ADMIN,CAP_NET_RAW"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep := keptCaps(tc.cfg, tc.netns)
			if got := strings.Join(capNames(capMask(keep), keep), ","); got != tc.want {
				t.Errorf("kept %s, want %s", got, tc.want)
			}
			if m := capMask(keep); m&(1<<unix.CAP_DAC_OVERRIDE|1<<unix.CAP_SYS_MODULE|1<<unix.CAP_SETUID|1<<unix.CAP_SYS_PTRACE) != 0 {
				t.Errorf("kept set %#x holds a capability the running daemon never needs", m)
			}
		})
	}
}
