package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lvsha/lvsha/vrrp/bfdwatch"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// testBFDSessions are a backup's session with its master, Up, failed
// once, and a session answering a peer's watch.
func testBFDSessions() []bfdwatch.Session {
	return []bfdwatch.Session{
		{Interface: "eth0", Local: "10.0.0.2", Peer: "10.0.0.1", State: "Up", Watching: true, Following: []string{"vi_1", "vi_2"},
			DetectionTime: 50 * time.Millisecond, DetectionMS: 50, Downs: 1, StateValue: 3},
		{Interface: "eth0", Local: "10.0.0.2", Peer: "10.0.0.3", State: "Down", Diag: "control detection time expired", StateValue: 1},
	}
}

// testBFDLinks is one local end that dropped a few packets.
func testBFDLinks() []bfdwatch.Link {
	return []bfdwatch.Link{{Interface: "eth0", Local: "10.0.0.2", Dropped: map[string]uint64{"ttl": 7, "no_session": 2, "short": 0}}}
}

// TestBFDReport: the BFD sessions and the instances' BFD counters reach
// `lvsha status` (text) and the metrics, each with its value.
func TestBFDReport(t *testing.T) {
	rep, stats := bigReport(1, 1)
	rep.VRRP = []instance.Status{{Name: "vi_1", Interface: "eth0", RouterID: 51, State: "BACKUP", BasePriority: 100, Priority: 100,
		BFDTakeovers: 3, BFDMasterAlive: 2}}
	rep.BFD, rep.BFDLinks = testBFDSessions(), testBFDLinks()

	// The client prints the report it reads as JSON.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeReport(&out, &got, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"VRRP instance vi_1: 3 takeovers on BFD, 2 of them contradicted by the master's adverts (BFD lost, master alive)",
		"10.0.0.1  eth0       10.0.0.2  Up                                     50ms       1      watching master of vi_1, vi_2",
		"10.0.0.3  eth0       10.0.0.2  Down (control detection time expired)  -          0      answering",
		"BFD on eth0 10.0.0.2: dropped 2 no_session, 7 ttl\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	c := newMetricsCollector(func() (*metricsState, error) { return &metricsState{report: rep}, nil }, stats)
	_, text := scrape(t, metricsHandler(slog.New(slog.NewTextHandler(io.Discard, nil)), c, func() error { return nil }))
	for _, want := range []string{
		`lvsha_bfd_session_state{interface="eth0",local="10.0.0.2",peer="10.0.0.1"} 3`,
		`lvsha_bfd_session_state{interface="eth0",local="10.0.0.2",peer="10.0.0.3"} 1`,
		`lvsha_bfd_session_detection_time_seconds{interface="eth0",local="10.0.0.2",peer="10.0.0.1"} 0.05`,
		`lvsha_bfd_session_downs_total{interface="eth0",local="10.0.0.2",peer="10.0.0.1"} 1`,
		`lvsha_vrrp_bfd_takeovers_total{interface="eth0",vrid="51",vrrp_instance="vi_1"} 3`,
		`lvsha_vrrp_bfd_master_alive_total{interface="eth0",vrid="51",vrrp_instance="vi_1"} 2`,
		`lvsha_bfd_dropped_total{interface="eth0",local="10.0.0.2",reason="ttl"} 7`,
		`lvsha_bfd_dropped_total{interface="eth0",local="10.0.0.2",reason="short"} 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}
