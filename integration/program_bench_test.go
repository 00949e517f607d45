package integration

import (
	"fmt"
	"io"
	"log/slog"
	"os/exec"
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
