package integration

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkDetection measures, on kernel IPVS in the seed topology, how long
// lvsha takes from stopping a real server's HTTP server to its weight 0 in
// the kernel (drain), and from restarting it to its weight back (restore),
// with keepalived-like settings: interval 1s, timeout 500ms, rise 1, fall 1.
// It reports medians over b.N repetitions.
//
//	go test ./integration -run '^$' -bench Detection -benchtime 7x
func BenchmarkDetection(b *testing.B) {
	chk := seedCheck{interval: time.Second, timeout: 500 * time.Millisecond, rise: 1, fall: 1}
	s := newSeed(b, chk)
	s.startWeb(b, "web1")
	s.startWeb(b, "web2")
	s.startLvsha(b)
	rs := "192.168.164.11:80"
	eventually(b, "table programmed", 10*time.Second, func() bool { return s.weight(b, rs) == "1" })
	var drain, restore []time.Duration
	for i := 0; i < b.N; i++ {
		s.stopWeb("web2")
		drain = append(drain, eventually(b, "drain", 10*time.Second, func() bool { return s.weight(b, rs) == "0" }))
		s.startWeb(b, "web2")
		restore = append(restore, eventually(b, "restore", 10*time.Second, func() bool { return s.weight(b, rs) == "1" }))
	}
	b.ReportMetric(median(drain).Seconds(), "drain-s")
	b.ReportMetric(median(restore).Seconds(), "restore-s")
	b.Logf("drain %v; restore %v", drain, restore)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
