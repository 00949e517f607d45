package integration

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
)

// bigConfig is n virtual servers × m real servers over NAT.
func bigConfig(n, m int) string {
	var b strings.Builder
	b.WriteString("[director]\nname = \"bench\"\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "[[virtual_server]]\naddress = \"10.%d.%d.1:80\"\nscheduler = \"wlc\"\n", 100+i/250, i%250)
		for j := 0; j < m; j++ {
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.200.%d.%d:8080\"\nweight = %d\n", i%250, j+1, j+1)
		}
	}
	return b.String()
}

// ipvsadmRules renders the same table as `ipvsadm -R` input.
func ipvsadmRules(services []ipvs.Service) string {
	var b strings.Builder
	for _, s := range services {
		vip := strings.TrimSpace(s.Key().String()[4:])
		fmt.Fprintf(&b, "-A -t %s -s %s\n", vip, s.Scheduler)
		for _, d := range s.Destinations {
			fmt.Fprintf(&b, "-a -t %s -r %s -m -w %d\n", vip, d.String(), d.Weight)
		}
	}
	return b.String()
}

// BenchmarkProgramTable programs 1,000 virtual servers × 10 real servers
// into an empty namespace, with lvsha's reconciler and with `ipvsadm -R`,
// alternating in the same run; it reports both and their ratio. Then it
// changes one weight among the 10,000 destinations and reports how many
// kernel writes that took (must be 1).
//
//	go test ./integration -run '^$' -bench ProgramTable -benchtime 3x
func BenchmarkProgramTable(b *testing.B) {
	cfg, err := conf.Parse("big.toml", []byte(bigConfig(1000, 10)))
	if err != nil {
		b.Fatal(err)
	}
	desired := ipvs.Desired(cfg, allUp)
	rules := ipvsadmRules(desired)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var lv, adm time.Duration
	var writes int
	for i := 0; i < b.N; i++ {
		ns := newNetns(b, "bench")
		h, err := ipvs.Open("/var/run/netns/" + ns)
		if err != nil {
			b.Fatal(err)
		}
		rec := ipvs.NewReconciler(h, log)
		start := time.Now()
		ch, err := rec.Apply(desired)
		lv += time.Since(start)
		if err != nil || ch.DestinationsCreated != 10000 {
			b.Fatalf("lvsha apply: %+v %v", ch, err)
		}
		desired[500].Destinations[5].Weight++
		ch, err = rec.Apply(desired)
		if err != nil {
			b.Fatal(err)
		}
		writes = ch.Total()
		desired[500].Destinations[5].Weight--
		h.Close()

		ns2 := newNetns(b, "bench")
		cmd := exec.Command("ip", "netns", "exec", ns2, "ipvsadm", "-R")
		cmd.Stdin = strings.NewReader(rules)
		start = time.Now()
		out, err := cmd.CombinedOutput()
		adm += time.Since(start)
		if err != nil {
			b.Fatalf("ipvsadm -R: %v %s", err, out)
		}
		if n := strings.Count(inNS(b, ns2, "ipvsadm", "-Ln"), "->") - 1; n != 10000 {
			b.Fatalf("ipvsadm -R programmed %d destinations", n)
		}
	}
	if writes != 1 {
		b.Errorf("one weight change among 10,000 destinations took %d kernel writes, want 1", writes)
	}
	b.ReportMetric(float64(lv.Milliseconds())/float64(b.N), "lvsha-ms/table")
	b.ReportMetric(float64(adm.Milliseconds())/float64(b.N), "ipvsadm-R-ms/table")
	b.ReportMetric(float64(lv)/float64(adm), "lvsha/ipvsadm")
	b.ReportMetric(float64(writes), "writes/weight-change")
}

// ipvsadmDiff renders, as `ipvsadm -R` input, the commands that take the
// kernel from table from to table to (the same services, in the same
// order): a destination gone is deleted, one whose weight changed edited,
// one new added. It is what a script driving ipvsadm by hand would have
// to compute to change no more than lvsha does.
func ipvsadmDiff(from, to []ipvs.Service) string {
	var b strings.Builder
	for i, s := range to {
		vip := strings.TrimSpace(s.Key().String()[4:])
		was := map[string]int{}
		for _, d := range from[i].Destinations {
			was[d.String()] = d.Weight
		}
		now := map[string]bool{}
		for _, d := range s.Destinations {
			now[d.String()] = true
			w, ok := was[d.String()]
			switch {
			case !ok:
				fmt.Fprintf(&b, "-a -t %s -r %s -m -w %d\n", vip, d.String(), d.Weight)
			case w != d.Weight:
				fmt.Fprintf(&b, "-e -t %s -r %s -m -w %d\n", vip, d.String(), d.Weight)
			}
		}
		for _, d := range from[i].Destinations {
			if !now[d.String()] {
				fmt.Fprintf(&b, "-d -t %s -r %s\n", vip, d.String())
			}
		}
	}
	return b.String()
}

// BenchmarkMassFailure: 1,000 virtual servers × 10 real servers are
// programmed, then every real server of 100 of them fails at once (1,000
// destinations, weight 0 or removed by on_down). It times lvsha's
// reconciler taking the kernel to the new table as the daemon does on a
// health change (Update: the writes, from the table it last read and
// wrote) and counts its writes (want 1,000: one per destination, nothing
// else touched), and as a resync does (Apply: the whole table read
// first), against
// `ipvsadm -R` of the same change (ipvsadmDiff, into a namespace holding
// the same start table) and against `ipvsadm -C` then `ipvsadm -R` of
// the whole new table (a naive script's rebuild, which also drops every
// connection). Both end tables are compared with lvsha's.
//
//	go test ./integration -run '^$' -bench MassFailure -benchtime 3x
func BenchmarkMassFailure(b *testing.B) {
	cfg, err := conf.Parse("big.toml", []byte(bigConfig(1000, 10)))
	if err != nil {
		b.Fatal(err)
	}
	failed := map[string]bool{}
	for _, vs := range cfg.VirtualServers[:100] {
		failed[vs.Name] = true
	}
	before := ipvs.Desired(cfg, allUp)
	after := ipvs.Desired(cfg, func(vs string, _ netip.AddrPort) bool { return !failed[vs] })
	diff := ipvsadmDiff(before, after)
	if n := strings.Count(diff, "\n"); n != 1000 {
		b.Fatalf("the change is %d ipvsadm commands, want 1,000", n)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	restore := func(ns, rules string) time.Duration {
		cmd := exec.Command("ip", "netns", "exec", ns, "ipvsadm", "-R")
		cmd.Stdin = strings.NewReader(rules)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		if err != nil {
			b.Fatalf("ipvsadm -R: %v %s", err, out)
		}
		return took
	}
	var lv, lvRead, adm, rebuild time.Duration
	var writes int
	for range b.N {
		ns := newNetns(b, "mass")
		h, err := ipvs.Open("/var/run/netns/" + ns)
		if err != nil {
			b.Fatal(err)
		}
		rec := ipvs.NewReconciler(h, log)
		if _, err := rec.Apply(before); err != nil {
			b.Fatal(err)
		}
		// The daemon's way on a health change: the writes alone.
		start := time.Now()
		ch, err := rec.Update(after)
		lv += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		writes = ch.Total()
		// A resync's way: the whole table read first.
		if _, err := rec.Update(before); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if ch, err := rec.Apply(after); err != nil || ch.Total() != writes {
			b.Fatalf("Apply after a read: %d writes, %v; want %d", ch.Total(), err, writes)
		}
		lvRead += time.Since(start)
		h.Close()
		want := sortedTable(inNS(b, ns, "ipvsadm", "-Ln"))

		ns2 := newNetns(b, "mass")
		restore(ns2, ipvsadmRules(before))
		adm += restore(ns2, diff)
		if got := sortedTable(inNS(b, ns2, "ipvsadm", "-Ln")); got != want {
			b.Fatalf("ipvsadm -R of the change left another table than lvsha's")
		}

		ns3 := newNetns(b, "mass")
		restore(ns3, ipvsadmRules(before))
		start = time.Now()
		inNS(b, ns3, "ipvsadm", "-C")
		rebuild += time.Since(start) + restore(ns3, ipvsadmRules(after))
		if got := sortedTable(inNS(b, ns3, "ipvsadm", "-Ln")); got != want {
			b.Fatalf("ipvsadm -C and -R left another table than lvsha's")
		}
	}
	if writes != 1000 {
		b.Errorf("1,000 destinations failing took %d kernel writes, want 1,000", writes)
	}
	n := float64(b.N)
	b.ReportMetric(float64(lv.Milliseconds())/n, "lvsha-ms")
	b.ReportMetric(float64(lvRead.Milliseconds())/n, "lvsha-read-and-apply-ms")
	b.ReportMetric(float64(adm.Milliseconds())/n, "ipvsadm-R-change-ms")
	b.ReportMetric(float64(rebuild.Milliseconds())/n, "ipvsadm-C-R-ms")
	b.ReportMetric(float64(lv)/float64(adm), "lvsha/ipvsadm-change")
	b.ReportMetric(float64(writes), "writes")
}

// sortedTable is `ipvsadm -Ln` output as one sorted line per service
// and per destination, each destination line after its service's
// address: the kernel lists destinations in the order they were added.
func sortedTable(out string) string {
	var lines []string
	svc := ""
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP" || f[0] == "FWM"):
			svc = f[0] + " " + f[1]
			lines = append(lines, strings.Join(f, " "))
		case len(f) >= 2 && f[0] == "->" && svc != "" && f[1] != "RemoteAddress:Port":
			lines = append(lines, svc+" "+strings.Join(f, " "))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
