package ipvs_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// dump renders the fake kernel's table straight from its moby objects (not
// through the package under test), sorted, one line per service and per
// destination.
func dump(t *testing.T, k *ipvstest.Kernel) []string {
	t.Helper()
	svcs, err := k.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range svcs {
		id := fmt.Sprintf("fwm=%d af=%d", s.FWMark, s.AddressFamily)
		if s.FWMark == 0 {
			id = fmt.Sprintf("proto=%d %s", s.Protocol, net.JoinHostPort(s.Address.String(), fmt.Sprint(s.Port)))
		}
		line := fmt.Sprintf("%s sched=%s flags=%#x timeout=%d mask=%#x", id, s.SchedName, s.Flags&^uint32(ipvs.FlagHashed), s.Timeout, s.Netmask)
		dests, err := k.GetDestinations(s)
		if err != nil {
			t.Fatal(err)
		}
		var dl []string
		for _, d := range dests {
			l := fmt.Sprintf("%s  -> %s fwd=%d w=%d", line, net.JoinHostPort(d.Address.String(), fmt.Sprint(d.Port)), d.ConnectionFlags, d.Weight)
			if d.UpperThreshold != 0 || d.LowerThreshold != 0 {
				l += fmt.Sprintf(" thresholds=%d/%d", d.UpperThreshold, d.LowerThreshold)
			}
			dl = append(dl, l)
		}
		out = append(out, line)
		out = append(out, dl...)
	}
	slices.Sort(out)
	return out
}

// apply applies want with Update, first asking for the plan: every
// Update of these tests also checks that Plan predicted exactly the
// writes it made, in order, and that planning wrote nothing.
func apply(t *testing.T, r *ipvs.Reconciler, want []ipvs.Service) ipvs.Changes {
	t.Helper()
	plan, err := r.Plan(want)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	again, _ := r.Plan(want)
	if diff := cmp.Diff(changeStrings(plan), changeStrings(again)); diff != "" {
		t.Fatalf("Plan changed when asked twice (-first +second):\n%s", diff)
	}
	ch, err := r.Update(want)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if diff := cmp.Diff(changeStrings(plan), changeStrings(ch.Done)); diff != "" {
		t.Fatalf("Update did other than Plan said (-plan +done):\n%s", diff)
	}
	if len(ch.Done) != ch.Total() {
		t.Fatalf("Update counted %d writes and listed %d", ch.Total(), len(ch.Done))
	}
	// What Update diffed against is the kernel's table: Apply, which
	// reads it, finds nothing left to do.
	if again, err := r.Apply(want); err != nil || again.Total() != 0 {
		t.Fatalf("Apply after Update: %v, wrote %v", err, changeStrings(again.Done))
	}
	return ch
}

// resync applies want with Apply, which reads the kernel's table (and so
// repairs hand edits), and checks that Update then has nothing to do.
func resync(t *testing.T, r *ipvs.Reconciler, want []ipvs.Service) ipvs.Changes {
	t.Helper()
	ch, err := r.Apply(want)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if plan, err := r.Plan(want); err != nil || len(plan) != 0 {
		t.Fatalf("Plan after Apply: %v, %v", err, changeStrings(plan))
	}
	return ch
}

func changeStrings(cs []ipvs.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}

// counts is a Changes without its list, to compare counts alone.
func counts(c ipvs.Changes) ipvs.Changes {
	c.Done = nil
	return c
}

func twoServices() *conf.Config {
	web := natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 2), rs("10.0.1.2:80", 3))
	web.SorryServer = ap("10.0.9.9:80")
	api := natVS("api", "10.0.0.2:443", rs("10.0.1.1:443", 1))
	api.Persistence = 300e9
	api.PersistenceNetmask = 24
	return cfgOf(web, api)
}

func TestApplyCreatesThenWritesNothing(t *testing.T) {
	k := &ipvstest.Kernel{}
	r := ipvs.NewReconciler(k, nil)
	want := ipvs.Desired(twoServices(), nil)

	ch := apply(t, r, want)
	if diff := cmp.Diff(ipvs.Changes{ServicesCreated: 2, DestinationsCreated: 3}, counts(ch)); diff != "" {
		t.Errorf("first Apply changes (-want +got):\n%s", diff)
	}
	wantTable := []string{
		"proto=6 10.0.0.1:80 sched=rr flags=0x0 timeout=0 mask=0xffffffff",
		"proto=6 10.0.0.1:80 sched=rr flags=0x0 timeout=0 mask=0xffffffff  -> 10.0.1.1:80 fwd=0 w=2",
		"proto=6 10.0.0.1:80 sched=rr flags=0x0 timeout=0 mask=0xffffffff  -> 10.0.1.2:80 fwd=0 w=3",
		fmt.Sprintf("proto=6 10.0.0.2:443 sched=rr flags=0x1 timeout=300 mask=%#x", ipvs.Netmask4(24)),
		fmt.Sprintf("proto=6 10.0.0.2:443 sched=rr flags=0x1 timeout=300 mask=%#x  -> 10.0.1.1:443 fwd=0 w=1", ipvs.Netmask4(24)),
	}
	slices.Sort(wantTable)
	if diff := cmp.Diff(wantTable, dump(t, k)); diff != "" {
		t.Errorf("kernel table (-want +got):\n%s", diff)
	}

	before := k.Writes()
	ch = apply(t, r, want)
	if ch.Total() != 0 || k.Writes() != before {
		t.Errorf("second Apply of the same table: changes %+v, %d writes; want none", ch, k.Writes()-before)
	}
}

func TestApplyMinimalWrites(t *testing.T) {
	base := twoServices()
	removeCfg := twoServices()
	removeCfg.VirtualServers[0].OnDown = "remove"

	tests := []struct {
		name    string
		cfg     *conf.Config
		up      func(string, netip.AddrPort) bool
		wantOps map[string]int
		check   func(t *testing.T, table []string)
	}{
		{
			name:    "one server down with weight0 is one UpdateDestination",
			cfg:     base,
			up:      downSet("10.0.1.2:80"),
			wantOps: map[string]int{ipvstest.OpUpdateDestination: 1},
			check:   wantLine("10.0.0.1:80", "-> 10.0.1.2:80 fwd=0 w=0"),
		},
		{
			name:    "one server down with remove is one DelDestination",
			cfg:     removeCfg,
			up:      downSet("10.0.1.2:80"),
			wantOps: map[string]int{ipvstest.OpDelDestination: 1},
			check:   noLine("-> 10.0.1.2:80"),
		},
		{
			name: "all down: both drained and the sorry server added",
			cfg:  base,
			up:   downSet("10.0.1.1:80", "10.0.1.2:80"),
			wantOps: map[string]int{
				ipvstest.OpUpdateDestination: 2,
				ipvstest.OpNewDestination:    1,
			},
			check: wantLine("10.0.0.1:80", "-> 10.0.9.9:80 fwd=0 w=1"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := &ipvstest.Kernel{}
			r := ipvs.NewReconciler(k, nil)
			apply(t, r, ipvs.Desired(tc.cfg, nil))
			k.ResetWrites()

			apply(t, r, ipvs.Desired(tc.cfg, tc.up))
			if diff := cmp.Diff(tc.wantOps, k.WritesByOp()); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			tc.check(t, dump(t, k))

			// Recovery undoes it exactly, and the result equals a fresh
			// apply of the all-up table.
			apply(t, r, ipvs.Desired(tc.cfg, nil))
			fresh := &ipvstest.Kernel{}
			apply(t, ipvs.NewReconciler(fresh, nil), ipvs.Desired(tc.cfg, nil))
			if diff := cmp.Diff(dump(t, fresh), dump(t, k)); diff != "" {
				t.Errorf("after recovery (-fresh +got):\n%s", diff)
			}
		})
	}
}

func wantLine(svc, dest string) func(*testing.T, []string) {
	return func(t *testing.T, table []string) {
		t.Helper()
		for _, l := range table {
			if strings.Contains(l, svc) && strings.HasSuffix(l, dest) {
				return
			}
		}
		t.Errorf("no %q under %s in:\n%s", dest, svc, strings.Join(table, "\n"))
	}
}

func noLine(dest string) func(*testing.T, []string) {
	return func(t *testing.T, table []string) {
		t.Helper()
		for _, l := range table {
			if strings.Contains(l, dest) {
				t.Errorf("unexpected %q in:\n%s", dest, strings.Join(table, "\n"))
			}
		}
	}
}

func mobySvc(addr string, sched string) *moby.Service {
	p := ap(addr)
	return &moby.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: p.Addr().AsSlice(), Port: p.Port(),
		SchedName: sched, Netmask: 0xffffffff}
}

func mobyDst(addr string, w int) *moby.Destination {
	p := ap(addr)
	return &moby.Destination{Address: p.Addr().AsSlice(), Port: p.Port(), Weight: w}
}

func TestAdoptionKeepsConnections(t *testing.T) {
	// A previous lvsha (or keepalived, or ipvsadm) left the service with
	// live connections; one weight differs from the configuration and one
	// destination is no longer configured.
	k := &ipvstest.Kernel{}
	svc := mobySvc("10.0.0.1:80", "rr")
	must(t, k.NewService(svc))
	must(t, k.NewDestination(svc, mobyDst("10.0.1.1:80", 2)))
	must(t, k.NewDestination(svc, mobyDst("10.0.1.2:80", 9)))
	must(t, k.NewDestination(svc, mobyDst("10.0.1.3:80", 1)))
	for _, d := range []string{"10.0.1.1:80", "10.0.1.2:80"} {
		must(t, k.SetConns(svc, mobyDst(d, 0), 10, 20))
	}
	k.ResetWrites()

	cfg := cfgOf(natVS("web", "10.0.0.1:80", rs("10.0.1.1:80", 2), rs("10.0.1.2:80", 3)))
	ch := apply(t, ipvs.NewReconciler(k, nil), ipvs.Desired(cfg, nil))

	if diff := cmp.Diff(ipvs.Changes{DestinationsUpdated: 1, DestinationsDeleted: 1}, counts(ch)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if ops := k.WritesByOp(); ops[ipvstest.OpDelService] != 0 || ops[ipvstest.OpNewService] != 0 {
		t.Errorf("service re-created on adoption: %v", ops)
	}
	dests, _ := k.GetDestinations(svc)
	for _, d := range dests {
		if d.ActiveConnections != 10 || d.InactiveConnections != 20 {
			t.Errorf("destination %s lost its connections: %d/%d", d.Address, d.ActiveConnections, d.InactiveConnections)
		}
	}
	fresh := &ipvstest.Kernel{}
	apply(t, ipvs.NewReconciler(fresh, nil), ipvs.Desired(cfg, nil))
	if diff := cmp.Diff(dump(t, fresh), dump(t, k)); diff != "" {
		t.Errorf("adopted table (-fresh +got):\n%s", diff)
	}
}

func TestDriftRepair(t *testing.T) {
	cfg := twoServices()
	web := mobySvc("10.0.0.1:80", "rr")
	tests := []struct {
		name  string
		drift func(t *testing.T, k *ipvstest.Kernel)
		want  ipvs.Changes
	}{
		{"weight changed by hand", func(t *testing.T, k *ipvstest.Kernel) {
			must(t, k.UpdateDestination(web, mobyDst("10.0.1.1:80", 50)))
		}, ipvs.Changes{DestinationsUpdated: 1}},
		{"forwarding changed by hand", func(t *testing.T, k *ipvstest.Kernel) {
			d := mobyDst("10.0.1.1:80", 2)
			d.ConnectionFlags = moby.ConnectionFlagDirectRoute
			must(t, k.UpdateDestination(web, d))
		}, ipvs.Changes{DestinationsUpdated: 1}},
		{"threshold changed by hand", func(t *testing.T, k *ipvstest.Kernel) {
			d := mobyDst("10.0.1.1:80", 2)
			d.UpperThreshold = 100
			must(t, k.UpdateDestination(web, d))
		}, ipvs.Changes{DestinationsUpdated: 1}},
		{"destination deleted by hand", func(t *testing.T, k *ipvstest.Kernel) {
			must(t, k.DelDestination(web, mobyDst("10.0.1.2:80", 0)))
		}, ipvs.Changes{DestinationsCreated: 1}},
		{"destination added by hand", func(t *testing.T, k *ipvstest.Kernel) {
			must(t, k.NewDestination(web, mobyDst("10.0.1.7:80", 1)))
		}, ipvs.Changes{DestinationsDeleted: 1}},
		{"scheduler changed by hand", func(t *testing.T, k *ipvstest.Kernel) {
			must(t, k.UpdateService(mobySvc("10.0.0.1:80", "wlc")))
		}, ipvs.Changes{ServicesUpdated: 1}},
		{"persistence removed by hand", func(t *testing.T, k *ipvstest.Kernel) {
			must(t, k.UpdateService(mobySvc("10.0.0.2:443", "rr")))
		}, ipvs.Changes{ServicesUpdated: 1}},
		{"service deleted by hand", func(t *testing.T, k *ipvstest.Kernel) {
			must(t, k.DelService(web))
		}, ipvs.Changes{ServicesCreated: 1, DestinationsCreated: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := &ipvstest.Kernel{}
			r := ipvs.NewReconciler(k, nil)
			apply(t, r, ipvs.Desired(cfg, nil))
			good := dump(t, k)

			tc.drift(t, k)
			if cmp.Equal(good, dump(t, k)) {
				t.Fatal("drift did not change the table")
			}
			// Update trusts what it wrote: it does not see the drift.
			if ch, err := r.Update(ipvs.Desired(cfg, nil)); err != nil || ch.Total() != 0 {
				t.Errorf("Update without a read: %v, wrote %v", err, changeStrings(ch.Done))
			}
			ch := resync(t, r, ipvs.Desired(cfg, nil))
			if diff := cmp.Diff(tc.want, counts(ch)); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(good, dump(t, k)); diff != "" {
				t.Errorf("table not restored (-want +got):\n%s", diff)
			}
		})
	}
}

func TestForeignServicesUntouchedAndLoggedOnce(t *testing.T) {
	k := &ipvstest.Kernel{}
	foreign := mobySvc("192.0.2.1:25", "wlc")
	must(t, k.NewService(foreign))
	must(t, k.NewDestination(foreign, mobyDst("192.0.2.10:25", 4)))

	var logs bytes.Buffer
	r := ipvs.NewReconciler(k, slog.New(slog.NewTextHandler(&logs, nil)))
	cfg := twoServices()
	for range 3 {
		apply(t, r, ipvs.Desired(cfg, nil))
	}
	// A reload that drops a service deletes it, but still not the
	// foreign one.
	apply(t, r, ipvs.Desired(cfgOf(cfg.VirtualServers[0]), nil))

	table := dump(t, k)
	wantLine("192.0.2.1:25", "-> 192.0.2.10:25 fwd=0 w=4")(t, table)
	noLine("10.0.0.2:443")(t, table)
	if n := strings.Count(logs.String(), "not in configuration"); n != 1 {
		t.Errorf("foreign service logged %d times, want once:\n%s", n, logs.String())
	}
}

func TestApplyFwmarkAndIPv6AreStable(t *testing.T) {
	fwm := conf.VirtualServer{
		Name: "fwmark:7", FWMark: 7, Family: "inet", Protocol: "tcp", Scheduler: "wlc", Forwarding: "dr",
		PersistenceNetmask: 32, OnDown: "weight0", SorryWeight: 1, Quorum: 1,
		RealServers: []conf.RealServer{{Address: ap("10.0.1.1:0"), Weight: 2, Forwarding: "dr"}},
	}
	fwm6 := fwm
	fwm6.Name, fwm6.Family, fwm6.PersistenceNetmask = "fwmark:7/inet6", "inet6", 128
	fwm6.RealServers = []conf.RealServer{{Address: ap("[2001:db8::10]:0"), Weight: 2, Forwarding: "dr"}}
	v6 := natVS("v6", "[2001:db8::1]:80", rs("[2001:db8::10]:8080", 1))
	v6.Persistence, v6.PersistenceNetmask = 60e9, 64
	cfg := cfgOf(fwm, fwm6, v6)

	k := &ipvstest.Kernel{}
	r := ipvs.NewReconciler(k, nil)
	ch := apply(t, r, ipvs.Desired(cfg, nil))
	if ch.ServicesCreated != 3 || ch.DestinationsCreated != 3 {
		t.Fatalf("changes %+v, want 3 services and 3 destinations created", ch)
	}
	want := []string{
		"fwm=7 af=2 sched=wlc flags=0x0 timeout=0 mask=0xffffffff",
		"fwm=7 af=2 sched=wlc flags=0x0 timeout=0 mask=0xffffffff  -> 10.0.1.1:0 fwd=3 w=2",
		"fwm=7 af=10 sched=wlc flags=0x0 timeout=0 mask=0x80",
		"fwm=7 af=10 sched=wlc flags=0x0 timeout=0 mask=0x80  -> 2001:db8::10:0 fwd=3 w=2",
		"proto=6 [2001:db8::1]:80 sched=rr flags=0x1 timeout=60 mask=0x40",
		"proto=6 [2001:db8::1]:80 sched=rr flags=0x1 timeout=60 mask=0x40  -> [2001:db8::10]:8080 fwd=0 w=1",
	}
	// dump joins fwmark destinations with JoinHostPort too.
	want[3] = "fwm=7 af=10 sched=wlc flags=0x0 timeout=0 mask=0x80  -> [2001:db8::10]:0 fwd=3 w=2"
	slices.Sort(want)
	if diff := cmp.Diff(want, dump(t, k)); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	before := k.Writes()
	if ch := apply(t, r, ipvs.Desired(cfg, nil)); ch.Total() != 0 || k.Writes() != before {
		t.Errorf("second Apply wrote: %+v", ch)
	}
}

func TestApplyContinuesAfterFailure(t *testing.T) {
	cfg := twoServices()
	k := &ipvstest.Kernel{}
	k.SetFail(func(op string, s *moby.Service, _ *moby.Destination) error {
		if op == ipvstest.OpNewService && s.Port == 80 {
			return unix.ENOMEM
		}
		return nil
	})
	r := ipvs.NewReconciler(k, nil)
	ch, err := r.Apply(ipvs.Desired(cfg, nil))
	if !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("Apply error = %v, want ENOMEM", err)
	}
	if !strings.Contains(err.Error(), "create service TCP  10.0.0.1:80 rr") {
		t.Errorf("error does not name the service: %v", err)
	}
	if ch.ServicesCreated != 1 || ch.DestinationsCreated != 1 {
		t.Errorf("changes %+v: the other service should have been created", ch)
	}
	wantLine("10.0.0.2:443", "-> 10.0.1.1:443 fwd=0 w=1")(t, dump(t, k))

	k.SetFail(nil)
	ch = apply(t, r, ipvs.Desired(cfg, nil))
	if ch.ServicesCreated != 1 || ch.DestinationsCreated != 2 {
		t.Errorf("retry changes %+v, want the failed service created", ch)
	}
}

func TestApplyReportsKernelRefusals(t *testing.T) {
	bad := natVS("bad", "10.0.0.3:80", rs("10.0.1.1:80", 1))
	bad.Scheduler = "nosuch"
	thresh := natVS("thresh", "10.0.0.4:80", conf.RealServer{Address: ap("10.0.1.1:80"), Weight: 1, LowerThreshold: 5})
	good := natVS("good", "10.0.0.5:80", rs("10.0.1.1:80", 1))

	k := &ipvstest.Kernel{}
	_, err := ipvs.NewReconciler(k, nil).Apply(ipvs.Desired(cfgOf(bad, thresh, good), nil))
	for _, want := range []struct {
		errno unix.Errno
		text  string
	}{
		{unix.ENOENT, "create service TCP  10.0.0.3:80 nosuch: no such file or directory"},
		{unix.ERANGE, "add destination 10.0.1.1:80 to TCP  10.0.0.4:80 rr: numerical result out of range"},
	} {
		if !errors.Is(err, want.errno) || !strings.Contains(fmt.Sprint(err), want.text) {
			t.Errorf("error %q lacks %q (%v)", err, want.text, want.errno)
		}
	}
	wantLine("10.0.0.5:80", "-> 10.0.1.1:80 fwd=0 w=1")(t, dump(t, k))
}

func TestRemove(t *testing.T) {
	k := &ipvstest.Kernel{}
	foreign := mobySvc("192.0.2.1:25", "wlc")
	must(t, k.NewService(foreign))
	r := ipvs.NewReconciler(k, nil)
	want := ipvs.Desired(twoServices(), nil)
	apply(t, r, want)

	if err := r.Remove(want[:1]); err != nil {
		t.Fatal(err)
	}
	table := dump(t, k)
	noLine("10.0.0.1:80")(t, table)
	wantLine("10.0.0.2:443", "-> 10.0.1.1:443 fwd=0 w=1")(t, table)
	wantLine("192.0.2.1:25", "sched=wlc flags=0x0 timeout=0 mask=0xffffffff")(t, table)

	// Absent already: not an error.
	if err := r.Remove(want[:1]); err != nil {
		t.Errorf("Remove of an absent service: %v", err)
	}
	// Removed services are forgotten: applying a table without them does
	// not try to delete them again.
	k.ResetWrites()
	apply(t, r, want[1:])
	if k.Writes() != 0 {
		t.Errorf("Apply after Remove wrote %v", k.WritesByOp())
	}
}

func TestRead(t *testing.T) {
	k := &ipvstest.Kernel{}
	r := ipvs.NewReconciler(k, nil)
	apply(t, r, ipvs.Desired(twoServices(), nil))
	web := mobySvc("10.0.0.1:80", "rr")
	must(t, k.SetConns(web, mobyDst("10.0.1.2:80", 0), 7, 8))
	must(t, k.SetStats(web, nil, moby.SvcStats{Connections: 11, PacketsIn: 12, PacketsOut: 13, BytesIn: 1 << 40, BytesOut: 15}))
	must(t, k.SetStats(web, mobyDst("10.0.1.2:80", 0), moby.SvcStats{Connections: 3}))

	got, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Read returned %d services, want 2", len(got))
	}
	s := got[0]
	if s.Service.Key() != (ipvs.ServiceKey{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: ip("10.0.0.1"), Port: 80}) {
		t.Fatalf("first service %s, want 10.0.0.1:80 (ipvsadm order)", s.Service)
	}
	if diff := cmp.Diff(ipvs.Stats{Conns: 11, InPkts: 12, OutPkts: 13, InBytes: 1 << 40, OutBytes: 15}, s.Stats); diff != "" {
		t.Errorf("service stats (-want +got):\n%s", diff)
	}
	if s.Service.Flags&ipvs.FlagHashed == 0 {
		t.Error("read-back service lacks HASHED")
	}
	wantDests := []ipvs.DestinationStatus{
		{Destination: ipvs.Destination{Address: ip("10.0.1.1"), Port: 80, Weight: 2}},
		{Destination: ipvs.Destination{Address: ip("10.0.1.2"), Port: 80, Weight: 3}, ActiveConns: 7, InactConns: 8, Stats: ipvs.Stats{Conns: 3}},
	}
	if diff := cmp.Diff(wantDests, s.Destinations, addrOpt); diff != "" {
		t.Errorf("destinations (-want +got):\n%s", diff)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkApplyNoChange measures a resync that finds nothing to do, the
// common case: 200 services of 20 destinations each.
func BenchmarkApplyNoChange(b *testing.B) {
	var vss []conf.VirtualServer
	for i := range 200 {
		var servers []conf.RealServer
		for j := range 20 {
			servers = append(servers, rs(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), byte(j + 1)}), 80).String(), 1))
		}
		vss = append(vss, natVS(fmt.Sprint("vs", i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 1}), 80).String(), servers...))
	}
	want := ipvs.Desired(cfgOf(vss...), nil)
	k := &ipvstest.Kernel{}
	r := ipvs.NewReconciler(k, nil)
	if _, err := r.Apply(want); err != nil {
		b.Fatal(err)
	}
	k.ResetWrites()
	for b.Loop() {
		if _, err := r.Apply(want); err != nil {
			b.Fatal(err)
		}
	}
	if k.Writes() != 0 {
		b.Fatalf("no-change Apply wrote %v", k.WritesByOp())
	}
}

// Plan reads and never writes: the kernel sees no write from it, however
// much it plans, and an unchanged table plans nothing.
func TestPlanWritesNothing(t *testing.T) {
	k := &ipvstest.Kernel{}
	r := ipvs.NewReconciler(k, nil)
	want := ipvs.Desired(twoServices(), nil)
	plan, err := r.Plan(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 5 || k.Writes() != 0 {
		t.Fatalf("planned %d changes (want 5: 2 services, 3 destinations) with %d kernel writes (want 0):\n%v", len(plan), k.Writes(), changeStrings(plan))
	}
	apply(t, r, want)
	k.ResetWrites()
	if plan, err := r.Plan(want); err != nil || len(plan) != 0 || k.Writes() != 0 {
		t.Fatalf("unchanged table: planned %v (%v), %d writes; want none", changeStrings(plan), err, k.Writes())
	}
}

// A hand edit that an Update's write trips over (the destination it
// updates was deleted by hand) makes Update read the table and finish
// the job at once, instead of failing until the next Apply.
func TestUpdateRereadsAfterAFailedWrite(t *testing.T) {
	cfg := twoServices()
	k := &ipvstest.Kernel{}
	r := ipvs.NewReconciler(k, nil)
	apply(t, r, ipvs.Desired(cfg, nil))
	must(t, k.DelDestination(mobySvc("10.0.0.1:80", "rr"), mobyDst("10.0.1.2:80", 0)))

	cfg.VirtualServers[0].RealServers[1].Weight = 7
	k.ResetWrites()
	ch, err := r.Update(ipvs.Desired(cfg, nil))
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	// The update fails (ENOENT), is not counted, and the re-read adds it.
	if diff := cmp.Diff([]string{"add destination TCP  10.0.0.1:80 rr -> 10.0.1.2:80 (weight 7, Masq) [web]"}, changeStrings(ch.Done)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if ops := k.WritesByOp(); ops[ipvstest.OpUpdateDestination] != 1 || ops[ipvstest.OpNewDestination] != 1 || k.Writes() != 2 {
		t.Errorf("kernel writes %v, want the failed update and one add", ops)
	}
	wantLine("10.0.0.1:80", "-> 10.0.1.2:80 fwd=0 w=7")(t, dump(t, k))
	if ch, err := r.Apply(ipvs.Desired(cfg, nil)); err != nil || ch.Total() != 0 {
		t.Errorf("Apply after: %v, %v", err, changeStrings(ch.Done))
	}
}

// bigTable is 100 virtual servers × 100 real servers, as the reload
// benchmarks' (integration.BenchmarkReload10k).
func bigTable() *conf.Config {
	var vss []conf.VirtualServer
	for i := range 100 {
		servers := make([]conf.RealServer, 0, 100)
		for j := range 100 {
			servers = append(servers, conf.RealServer{Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 200, byte(i), byte(j + 1)}), 8080), Weight: j + 1})
		}
		vss = append(vss, natVS(fmt.Sprint("vs", i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 100, byte(i), 1}), 80).String(), servers...))
	}
	return cfgOf(vss...)
}

// Update costs what changes, not the table's size (issue #17): at 10,000
// real servers, the 1% change (50 weights, 25 real servers added, 25
// removed) is exactly 100 writes and no dump of the kernel, and an
// unchanged table neither writes nor reads. Apply reads the table: one
// dump of the services and one of each service's destinations.
func TestUpdateCostsTheChanges(t *testing.T) {
	cfg := bigTable()
	k := &ipvstest.Kernel{}
	r := ipvs.NewReconciler(k, nil)
	if _, err := r.Apply(ipvs.Desired(cfg, nil)); err != nil {
		t.Fatal(err)
	}
	for k := range 50 {
		cfg.VirtualServers[k].RealServers[k].Weight += 100
	}
	for k := range 25 {
		vs := &cfg.VirtualServers[50+k]
		vs.RealServers = slices.Delete(vs.RealServers, k, k+1)
		vs = &cfg.VirtualServers[75+k]
		vs.RealServers = append(vs.RealServers, rs(fmt.Sprintf("10.201.%d.1:8080", k), 1))
	}
	k.ResetWrites()
	reads := k.Reads()
	ch, err := r.Update(ipvs.Desired(cfg, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := ipvs.Changes{DestinationsUpdated: 50, DestinationsCreated: 25, DestinationsDeleted: 25}
	if diff := cmp.Diff(want, counts(ch)); diff != "" || k.Writes() != 100 || k.Reads() != reads {
		t.Errorf("1%% change: %d writes, %d reads; changes (-want +got):\n%s", k.Writes(), k.Reads()-reads, diff)
	}
	k.ResetWrites()
	reads = k.Reads()
	if ch, err := r.Update(ipvs.Desired(cfg, nil)); err != nil || ch.Total() != 0 || k.Writes() != 0 || k.Reads() != reads {
		t.Errorf("unchanged: %v, %d changes, %d writes, %d reads", err, ch.Total(), k.Writes(), k.Reads()-reads)
	}
	if ch, err := r.Apply(ipvs.Desired(cfg, nil)); err != nil || ch.Total() != 0 || k.Reads()-reads != 101 {
		t.Errorf("Apply: %v, %d changes, %d reads (want 101)", err, ch.Total(), k.Reads()-reads)
	}
}

// BenchmarkUpdate1Percent is the 1% change of TestUpdateCostsTheChanges
// and back, two Updates an iteration, at 10,000 real servers.
func BenchmarkUpdate1Percent(b *testing.B) {
	base := ipvs.Desired(bigTable(), nil)
	changed := ipvs.Desired(bigTable(), nil)
	for k := range 50 {
		changed[k].Destinations[k].Weight += 100
	}
	for k := range 25 {
		s := &changed[50+k]
		s.Destinations = slices.Delete(s.Destinations, k, k+1)
		s = &changed[75+k]
		s.Destinations = append(s.Destinations, ipvs.Destination{Address: netip.AddrFrom4([4]byte{10, 201, byte(k), 1}), Port: 8080, Weight: 1})
	}
	k := &ipvstest.Kernel{}
	r := ipvs.NewReconciler(k, nil)
	if _, err := r.Apply(base); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, want := range [][]ipvs.Service{changed, base} {
			if ch, err := r.Update(want); err != nil || ch.Total() != 100 {
				b.Fatalf("%v, %d changes", err, ch.Total())
			}
		}
	}
}

// Update keeps no reference to the caller's table: a weight changed in
// place in the same slice is still a change.
func TestUpdateSeesAChangeMadeInPlace(t *testing.T) {
	k := &ipvstest.Kernel{}
	r := ipvs.NewReconciler(k, nil)
	want := ipvs.Desired(twoServices(), nil)
	apply(t, r, want)
	want[0].Destinations[0].Weight = 9
	k.ResetWrites()
	if ch, err := r.Update(want); err != nil || ch.DestinationsUpdated != 1 || k.Writes() != 1 {
		t.Errorf("weight changed in place: %v, %v, %d writes; want one update", err, changeStrings(ch.Done), k.Writes())
	}
	wantLine("10.0.0.1:80", "-> 10.0.1.1:80 fwd=0 w=9")(t, dump(t, k))
}
