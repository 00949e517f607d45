package ipvs_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/ipvs"
)

// The expected texts below are ipvsadm 1.31's output layout (print_title,
// print_service_entry: "  -> %-28s %-7s %-6d %-10u %-10u\n"), written out
// by hand; note the trailing spaces ipvsadm leaves after InActConn.
const title = "IP Virtual Server version 1.2.1 (size=4096)\n" +
	"Prot LocalAddress:Port Scheduler Flags\n" +
	"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"

func TestFormatMatchesIpvsadm(t *testing.T) {
	tcp := func(addr, sched string, d ...ipvs.Destination) ipvs.Service {
		p := ap(addr)
		fam := uint16(unix.AF_INET)
		if p.Addr().Is6() {
			fam = unix.AF_INET6
		}
		return ipvs.Service{Family: fam, Protocol: unix.IPPROTO_TCP, Address: p.Addr(), Port: p.Port(), Scheduler: sched, Netmask: 0xffffffff, Destinations: d}
	}
	dst := func(addr string, w int, f ipvs.Forwarding) ipvs.Destination {
		p := ap(addr)
		return ipvs.Destination{Address: p.Addr(), Port: p.Port(), Weight: w, Forwarding: f}
	}

	persistent := tcp("10.0.0.1:443", "wlc", dst("10.0.1.1:443", 1, ipvs.ForwardDirectRoute))
	persistent.Flags, persistent.Timeout, persistent.Netmask = ipvs.FlagPersistent|ipvs.FlagHashed, 300, ipvs.Netmask4(24)

	persistent32 := tcp("10.0.0.1:444", "wlc")
	persistent32.Flags, persistent32.Timeout = ipvs.FlagPersistent, 60

	v6 := tcp("[2001:db8::1]:80", "rr", dst("[2001:db8::10]:8080", 65535, ipvs.ForwardMasq))
	v6.Flags, v6.Timeout, v6.Netmask = ipvs.FlagPersistent, 60, 64

	sh := tcp("10.0.0.1:80", "sh", dst("10.0.1.1:80", 1, ipvs.ForwardTunnel))
	sh.Flags = ipvs.FlagSHFallback | ipvs.FlagSHPort

	udp := ipvs.Service{Family: unix.AF_INET, Protocol: unix.IPPROTO_UDP, Address: ip("10.0.0.1"), Port: 53, Scheduler: "rr", Flags: ipvs.FlagOnePacket, Netmask: 0xffffffff}
	sctp := ipvs.Service{Family: unix.AF_INET, Protocol: unix.IPPROTO_SCTP, Address: ip("10.0.0.1"), Port: 9, Scheduler: "wrr", Flags: ipvs.FlagSched3, Netmask: 0xffffffff}
	fwm := ipvs.Service{Family: unix.AF_INET, FWMark: 1, Scheduler: "rr", Netmask: 0xffffffff, Destinations: []ipvs.Destination{dst("10.0.1.1:0", 1, ipvs.ForwardDirectRoute)}}
	fwm6 := ipvs.Service{Family: unix.AF_INET6, FWMark: 1, Scheduler: "rr", Netmask: 128}

	tests := []struct {
		name string
		in   []ipvs.Service
		want string
	}{
		{
			name: "the seed example",
			in:   []ipvs.Service{tcp("192.168.164.100:80", "rr", dst("192.168.164.10:80", 1, ipvs.ForwardMasq))},
			want: title +
				"TCP  192.168.164.100:80 rr\n" +
				"  -> 192.168.164.10:80            Masq    1      0          0         \n",
		},
		{
			name: "persistence with mask, and none at /32",
			in:   []ipvs.Service{persistent32, persistent},
			want: title +
				"TCP  10.0.0.1:443 wlc persistent 300 mask 255.255.255.0\n" +
				"  -> 10.0.1.1:443                 Route   1      0          0         \n" +
				"TCP  10.0.0.1:444 wlc persistent 60\n",
		},
		{
			name: "IPv6 with prefix mask",
			in:   []ipvs.Service{v6},
			want: title +
				"TCP  [2001:db8::1]:80 rr persistent 60 mask 64\n" +
				"  -> [2001:db8::10]:8080          Masq    65535  0          0         \n",
		},
		{
			name: "scheduler flags, one-packet, SCTP",
			in:   []ipvs.Service{sh, udp, sctp},
			want: title +
				"TCP  10.0.0.1:80 sh (sh-fallback,sh-port)\n" +
				"  -> 10.0.1.1:80                  Tunnel  1      0          0         \n" +
				"UDP  10.0.0.1:53 rr ops\n" +
				"SCTP 10.0.0.1:9 wrr (flag-3)\n",
		},
		{
			name: "fwmark after address services, inet before inet6",
			in:   []ipvs.Service{fwm6, fwm, tcp("10.0.0.1:80", "rr")},
			want: title +
				"TCP  10.0.0.1:80 rr\n" +
				"FWM  1 rr\n" +
				"  -> 10.0.1.1:0                   Route   1      0          0         \n" +
				"FWM  1 IPv6 rr\n",
		},
		{
			name: "ipvsadm's wrapping sort: 10/8 after 192.168/16",
			in: []ipvs.Service{
				tcp("10.0.0.1:80", "rr", dst("10.0.1.2:80", 1, 0), dst("10.0.1.1:81", 1, 0), dst("10.0.1.1:80", 1, 0)),
				tcp("192.168.0.1:80", "rr"),
				tcp("10.0.0.1:22", "rr"),
			},
			want: title +
				"TCP  192.168.0.1:80 rr\n" +
				"TCP  10.0.0.1:22 rr\n" +
				"TCP  10.0.0.1:80 rr\n" +
				"  -> 10.0.1.1:80                  Masq    1      0          0         \n" +
				"  -> 10.0.1.1:81                  Masq    1      0          0         \n" +
				"  -> 10.0.1.2:80                  Masq    1      0          0         \n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(strings.Split(tc.want, "\n"), strings.Split(ipvs.Format(tc.in), "\n")); diff != "" {
				t.Errorf("Format (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteTableStats(t *testing.T) {
	st := []ipvs.ServiceStatus{{
		Service: ipvs.Service{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: ip("10.0.0.1"), Port: 80, Scheduler: "rr"},
		Stats:   ipvs.Stats{Conns: 5, InPkts: 123_456_789, OutPkts: 99_999_999, InBytes: 12_345_678_901, OutBytes: 12_345_678_901_234},
		Destinations: []ipvs.DestinationStatus{{
			Destination: ipvs.Destination{Address: ip("10.0.1.1"), Port: 80, Weight: 1},
			ActiveConns: 3, InactConns: 4,
			Stats: ipvs.Stats{Conns: 5, InPkts: 200_000_000_000_000},
		}},
	}}
	var b strings.Builder
	if err := ipvs.WriteTable(&b, st, ipvs.TableOptions{Title: true, Stats: true}); err != nil {
		t.Fatal(err)
	}
	want := "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n" +
		"  -> RemoteAddress:Port\n" +
		"TCP  10.0.0.1:80                         5  123456K 99999999   12345M   12345G\n" +
		"  -> 10.0.1.1:80                         5     200T        0        0        0\n"
	if diff := cmp.Diff(strings.Split(want, "\n"), strings.Split(b.String(), "\n")); diff != "" {
		t.Errorf("stats table (-want +got):\n%s", diff)
	}

	b.Reset()
	if err := ipvs.WriteTable(&b, st, ipvs.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	want = "TCP  10.0.0.1:80 rr\n" +
		"  -> 10.0.1.1:80                  Masq    1      3          4         \n"
	if b.String() != want {
		t.Errorf("entries only:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestStringForms(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{ipvs.Service{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: ip("10.0.0.1"), Port: 80, Scheduler: "rr"}.String(), "TCP  10.0.0.1:80 rr"},
		{ipvs.Service{Family: unix.AF_INET6, Protocol: unix.IPPROTO_UDP, Address: ip("::1"), Port: 53, Scheduler: "sh"}.String(), "UDP  [::1]:53 sh"},
		{ipvs.Service{Family: unix.AF_INET, FWMark: 1, Scheduler: "rr"}.String(), "FWM  1 rr"},
		{ipvs.Service{Family: unix.AF_INET6, FWMark: 1, Scheduler: "rr"}.String(), "FWM  1 IPv6 rr"},
		{ipvs.Destination{Address: ip("::1"), Port: 80}.String(), "[::1]:80"},
		{ipvs.Destination{Address: ip("::ffff:10.0.0.1"), Port: 80}.String(), "10.0.0.1:80"},
		{ipvs.ForwardDirectRoute.String(), "Route"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
