package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/transport"
)

func viewReport(now time.Time) *Report {
	w3, w0 := 3, 0
	long := "Get \"http://[2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:8080/health/check/deep\": dial tcp: connect: connection refused by the far end"
	return &Report{Director: "lb1", ConfigFile: "/etc/lvsha/lvsha.toml", LoadedAt: now, SyncedAt: now,
		Services: []ServiceReport{
			{Name: "web6", Service: "TCP  [2001:db8:aaaa:bbbb:cccc:dddd:eeee:100]:443", Scheduler: "wlc", InKernel: true,
				Stats: Counters{Conns: 10, InPkts: 20, OutPkts: 30, InBytes: 40, OutBytes: 50, CPS: 1, InPPS: 2, OutPPS: 3, InBPS: 4, OutBPS: 5},
				RealServers: []RealReport{
					{Address: "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:8080", Forward: "Masq", Weight: 3, KernelWeight: &w0, Health: "down", Since: now.Add(-time.Minute),
						Last: &ProbeResult{OK: false, LatencyMS: 1.5, Message: long}, ActiveConn: 7, InactiveConn: 8,
						Stats: Counters{Conns: 11, InPkts: 21, OutPkts: 31, InBytes: 41, OutBytes: 51, CPS: 6, InPPS: 7, OutPPS: 8, InBPS: 9, OutBPS: 10}},
				}},
			{Name: "web", Service: "TCP  10.0.0.1:80", Scheduler: "rr", InKernel: true, RealServers: []RealReport{
				{Address: "10.0.0.2:80", Forward: "Route", Weight: 3, KernelWeight: &w3, Health: "up", Last: &ProbeResult{OK: true, LatencyMS: 0.4}},
			}},
		},
		VRRP: []instance.Status{{Name: "VI_1", Interface: "eth0", RouterID: 51, State: "MASTER", Priority: 150, BasePriority: 150},
			{Name: "VI_6", Interface: "eth1", RouterID: 52, State: "FAULT", Priority: 100, BasePriority: 100,
				Fault: "no address to send adverts from yet: eth1 has no IPv6 link-local address"},
			{Name: "VI_2", Interface: "eth2", RouterID: 53, State: "FAULT", Priority: 100, BasePriority: 100,
				FaultReasons: []string{"interface eth2 down", "track_exec chk failing"}}},
		VRRPLinks: []transport.LinkStats{{Interface: "eth0", Endpoints: 1, UnknownVRID: 42, Short: 3},
			{Interface: "eth1", IPv6: true, Endpoints: 2, KernelDrops: 5}},
	}
}

func TestStatusViews(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		view      statusView
		filter    []string
		want      []string
		wantNot   []string
		maxColumn int // 0: no limit
	}{
		{"default fits 120 columns, cutting the probe", statusView{width: defaultWidth}, nil,
			[]string{"ActConn  InActConn", "web6", "0/3", "down 1m0s", "FAIL 1.5ms", "…", "VRRP instance",
				"VRRP link eth0 IPv4: 1 instances; dropped 42 adverts of other VRIDs, 3 too short\n",
				"VRRP link eth1 IPv6: 2 instances; dropped 0 adverts of other VRIDs, 0 too short; the kernel dropped 5 for a full buffer (lvsha fell behind)",
				"VRRP instance VI_6: FAULT, not started: no address to send adverts from yet: eth1 has no IPv6 link-local address",
				"VRRP instance VI_2: FAULT: interface eth2 down; track_exec chk failing"},
			[]string{"by the far end", "InPkts", "CPS"}, defaultWidth},
		{"wide keeps the whole message", statusView{wide: true, width: defaultWidth}, nil,
			[]string{"connection refused by the far end)"}, nil, 0},
		{"stats: totals", statusView{counters: "stats", width: defaultWidth}, nil,
			[]string{"Conns  InPkts  OutPkts  InBytes  OutBytes", "11     21      31       41       51"}, []string{"ActConn", "CPS", "Last probe", "FAIL"}, defaultWidth},
		{"rate: per second", statusView{counters: "rate", width: defaultWidth}, nil,
			[]string{"CPS  InPPS  OutPPS  InBPS  OutBPS", "6    7      8       9      10"}, []string{"ActConn", "InBytes", "Last probe"}, defaultWidth},
		{"a filter keeps one virtual server and no VRRP", statusView{width: defaultWidth}, []string{"web"},
			[]string{"TCP  10.0.0.1:80", "10.0.0.2:80"}, []string{"web6", "VRRP instance", "VRRP link"}, defaultWidth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := viewReport(now)
			if err := r.only(tc.filter); err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := writeReportView(&b, r, now, tc.view); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			if tc.maxColumn > 0 {
				// The real-server table, between the sync line and VRRP.
				table := out[strings.Index(out, "Prot "):]
				if i := strings.Index(table, "\nVRRP"); i >= 0 {
					table = table[:i]
				}
				for _, line := range strings.Split(table, "\n") {
					if n := utf8.RuneCountInString(line); n > tc.maxColumn {
						t.Errorf("line of %d columns, want at most %d: %q", n, tc.maxColumn, line)
					}
				}
			}
		})
	}
}

func TestStatusFilterUnknown(t *testing.T) {
	err := viewReport(time.Now()).only([]string{"web", "nope"})
	if err == nil || !strings.Contains(err.Error(), `no virtual server named "nope" (the daemon has: web6, web)`) {
		t.Errorf("only(nope) = %v", err)
	}
}
