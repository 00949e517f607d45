package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Both daemons are configured to declare a server down after two failed
// probes one second apart and up after one good probe:
//
//	keepalived: delay_loop 1, connect_timeout 1, retry 1, delay_before_retry 1
//	lvsha:      interval 1s, timeout 500ms, fall 2, rise 1
var detectCheck = seedCheck{interval: time.Second, timeout: 500 * time.Millisecond, rise: 1, fall: 2}

// BenchmarkDetection measures, on kernel IPVS in the seed topology, the
// time from stopping web2's HTTP server until the director stops sending
// it new connections (lvsha: weight 0; keepalived: destination removed),
// and from restarting it until it is back, for lvsha and for keepalived in
// the same run. It reports medians of b.N repetitions each.
//
//	go test ./integration -run '^$' -bench Detection -benchtime 7x
func BenchmarkDetection(b *testing.B) {
	lvDrain, lvRestore := detect(b, "lvsha", b.N)
	kaDrain, kaRestore := detect(b, "keepalived", b.N)
	b.ReportMetric(median(lvDrain).Seconds(), "lvsha-drain-s")
	b.ReportMetric(median(lvRestore).Seconds(), "lvsha-restore-s")
	b.ReportMetric(median(kaDrain).Seconds(), "keepalived-drain-s")
	b.ReportMetric(median(kaRestore).Seconds(), "keepalived-restore-s")
	b.Logf("lvsha drain %v restore %v", lvDrain, lvRestore)
	b.Logf("keepalived drain %v restore %v", kaDrain, kaRestore)
}

func detect(b *testing.B, daemon string, n int) (drain, restore []time.Duration) {
	s := newSeed(b, detectCheck)
	s.startWeb(b, "web1")
	s.startWeb(b, "web2")
	s.waitWebs(b)
	rs := "192.168.164.11:80"
	out := func(w string) bool { return w == "0" }
	if daemon == "keepalived" {
		startKeepalived(b, s)
		out = func(w string) bool { return w == "absent" }
	} else {
		s.startLvsha(b)
	}
	eventually(b, daemon+" programs the table", 20*time.Second, func() bool { return s.weight(b, rs) == "1" })
	for i := 0; i < n; i++ {
		s.stopWeb("web2")
		drain = append(drain, eventually(b, daemon+" drains web2", 20*time.Second, func() bool { return out(s.weight(b, rs)) }))
		s.startWeb(b, "web2")
		restore = append(restore, eventually(b, daemon+" restores web2", 20*time.Second, func() bool { return s.weight(b, rs) == "1" }))
	}
	return drain, restore
}

func startKeepalived(b *testing.B, s *seed) {
	b.Helper()
	if _, err := exec.LookPath("keepalived"); err != nil {
		b.Fatal("keepalived is not installed (scripts/setup installs it): it is the peer this benchmark compares with")
	}
	cfg := filepath.Join(s.dir, "keepalived.conf")
	real := func(addr string) string {
		return fmt.Sprintf(`  real_server %s 80 {
    weight 1
    HTTP_GET {
      url {
        path /
        status_code 200
      }
      connect_timeout 1
      retry 1
      delay_before_retry 1
    }
  }
`, addr)
	}
	text := "global_defs {\n  router_id lb1\n}\nvirtual_server " + seedVIP + " 80 {\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n" +
		real("192.168.164.10") + real("192.168.164.11") + "}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	startIn(b, s.lb, nil, "keepalived", "--dont-fork", "--check", "-f", cfg,
		"-p", filepath.Join(s.dir, "k.pid"), "-c", filepath.Join(s.dir, "kc.pid"), "-r", filepath.Join(s.dir, "kr.pid"))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
