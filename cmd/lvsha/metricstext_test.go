package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// edgeReport is a report with every case the text path writes apart:
// a virtual server whose name needs escaping, one out of the kernel
// (no counters), a firewall-mark one, real servers IPv4 and IPv6, with
// and without a port, down, drained, in maintenance, out of the kernel,
// never probed, probed beyond the last bucket, the sorry server (not a
// real server), counters large enough for an exponent, and a VRRP
// instance; with probe stats for it.
func edgeReport() (*metricsState, *probeStats) {
	w := func(n int) *int { return &n }
	rep := &Report{Director: "lb1", ReloadedAt: time.Unix(1700000000, 123456789), SyncedAt: time.Unix(1700000001, 0), SyncErrors: 2,
		Services: []ServiceReport{
			{Name: "web \"prod\"\\eu\n2", Protocol: "tcp", Address: "192.0.2.1", Port: 80, InKernel: true, SorryActive: true,
				Stats: Counters{Conns: 1234567, InPkts: 1e6, OutPkts: 999999, InBytes: 1<<53 + 1, OutBytes: math.MaxUint64},
				RealServers: []RealReport{
					{Address: "10.0.0.2:80", Weight: 5, KernelWeight: w(5), Health: "up", Transitions: 1, ActiveConn: 3, InactiveConn: 1},
					{Address: "10.0.0.10:80", Weight: 1, KernelWeight: w(0), Health: "down", Transitions: 1000000},
					{Address: "10.0.0.1:8080", Weight: 0, KernelWeight: w(0), Health: "up", Manual: manualDrain},
					{Address: "10.0.0.3:80", Weight: 1, Health: "up", Manual: manualMaint},
					{Address: "192.0.2.99:80", Weight: 1, KernelWeight: w(1), Health: "unchecked", Sorry: true, ActiveConn: 7},
				}},
			{Name: "dns", FWMark: 7, Protocol: "udp", InKernel: true,
				RealServers: []RealReport{
					{Address: "[2001:db8::1]:0", Weight: 100, KernelWeight: w(100), Health: "unchecked"},
					{Address: "10.0.1.1:0", Weight: 100, KernelWeight: w(100), Health: "up"},
				}},
			{Name: "api", Protocol: "sctp", Address: "2001:db8::80", Port: 443,
				RealServers: []RealReport{{Address: "[2001:db8::2]:443", Weight: 3, Health: "down"}}},
		},
		VRRP: []instance.Status{{Name: "vi_1", Interface: "eth0", RouterID: 51, State: "MASTER", BasePriority: 100, Priority: 90,
			AdvertsSent: 1e7, Dropped: map[string]uint64{"bad_ttl": 1, "bad_auth": 3}}},
	}
	stats := newProbeStats()
	key := func(vs, rs string) health.Key {
		return health.Key{VirtualServer: vs, RealServer: netip.MustParseAddrPort(rs)}
	}
	web := rep.Services[0].Name
	for _, o := range []struct {
		k health.Key
		r health.Result
	}{
		{key(web, "10.0.0.2:80"), health.Result{OK: true, Latency: 700 * time.Microsecond}},
		{key(web, "10.0.0.2:80"), health.Result{OK: true, Latency: 30 * time.Millisecond}},
		{key(web, "10.0.0.10:80"), health.Result{Latency: 3 * time.Second, Err: context.DeadlineExceeded}},
		{key(web, "10.0.0.10:80"), health.Result{Latency: time.Millisecond, Err: fmt.Errorf("connect: %w", syscall.ECONNREFUSED)}},
		{key(web, "10.0.0.10:80"), health.Result{Latency: 1234 * time.Microsecond, Err: errors.New("reset")}},
		{key("dns", "[2001:db8::1]:0"), health.Result{OK: true, Latency: 2500 * time.Millisecond}},
		{key("api", "[2001:db8::2]:443"), health.Result{Latency: 100 * time.Millisecond, Err: errors.New("eof")}},
	} {
		stats.observe(o.k, o.r)
	}
	return &metricsState{report: rep, quorumLost: map[string]bool{web: true}}, stats
}

// getMetrics serves r by h and returns the answer's body, decompressed when it
// says gzip.
func getMetrics(t *testing.T, h http.Handler, r *http.Request) (*httptest.ResponseRecorder, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s: %d %s", r.URL, rec.Code, rec.Body)
	}
	body := rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return rec, body
}

// firstDiff says where two expositions part, for a failure's message.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n got  %q\n want %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(g), len(w))
}

// The text path writes, byte for byte, what the registry path (promhttp
// over the whole collector, which also serves protobuf) writes for the
// same state: same families, HELP and TYPE, series, order and values,
// compressed or not. The Go and process collectors are left out: their
// values change between two scrapes.
func TestMetricsTextPathEqualsRegistry(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	edge, edgeStats := edgeReport()
	big, bigStats := bigReport(3, 4)
	for _, tc := range []struct {
		name  string
		st    *metricsState
		stats *probeStats
	}{
		{"edge cases", edge, edgeStats},
		{"big report", &metricsState{report: big}, bigStats},
		{"nothing probed", &metricsState{report: big}, newProbeStats()},
		{"no servers", &metricsState{report: &Report{VRRP: edge.report.VRRP}}, newProbeStats()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newMetricsCollector(func() (*metricsState, error) { return tc.st, nil }, tc.stats)
			e := newMetricsEndpoint(log, c, prometheus.NewRegistry())
			_, want := getMetrics(t, e.generic, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if !bytes.Contains(want, []byte("lvsha_config_loaded 1\n")) {
				t.Fatalf("the registry path served no state:\n%s", want)
			}
			rec, got := getMetrics(t, e, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if !bytes.Equal(got, want) {
				t.Errorf("text path differs from the registry's at %s", firstDiff(got, want))
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
				t.Errorf("Content-Type %q, want the text format", ct)
			}

			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			rec, got = getMetrics(t, e, req)
			if rec.Header().Get("Content-Encoding") != "gzip" {
				t.Errorf("Accept-Encoding gzip: Content-Encoding %q, want gzip", rec.Header().Get("Content-Encoding"))
			}
			if !bytes.Equal(got, want) {
				t.Errorf("gzipped text path differs from the registry's at %s", firstDiff(got, want))
			}

			// Protobuf, which Prometheus asks for with native histograms,
			// goes the registry path: decoded and written as text, it
			// is the same exposition.
			req = httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
			rec, body := getMetrics(t, e, req)
			format := expfmt.ResponseFormat(rec.Header())
			if format.FormatType() != expfmt.TypeProtoDelim {
				t.Fatalf("Accept protobuf: Content-Type %q", rec.Header().Get("Content-Type"))
			}
			var text bytes.Buffer
			dec := expfmt.NewDecoder(bytes.NewReader(body), format)
			for {
				var mf dto.MetricFamily
				if err := dec.Decode(&mf); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				if _, err := expfmt.MetricFamilyToText(&text, &mf); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(text.Bytes(), want) {
				t.Errorf("protobuf differs from the text at %s", firstDiff(text.Bytes(), want))
			}
		})
	}
}

// Compression is negotiated as promhttp does: gzip when the client
// prefers it to identity, the highest q winning and identity winning a
// tie.
func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{"", false},
		{"gzip", true},
		{"br, gzip", true},
		{"gzip;q=0", false},
		{"deflate", false},
		{"*", false},
		{"*;q=0.5, gzip", true},
		{"identity;q=1, gzip;q=0.5", false},
		{"gzip, identity;q=0.5", true},
		{"gzip;q=0.8, identity;q=0.9", false},
		{"gzip; q=0.9 ,identity;q=0.8", true},
		{"gzip;q=bad", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tc.header != "" {
			r.Header.Set("Accept-Encoding", tc.header)
		}
		if got := acceptsGzip(r); got != tc.want {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", tc.header, got, tc.want)
		}
	}
}

// appendFloat writes every value as strconv's shortest 'g', which
// expfmt writes, whole numbers included.
func TestAppendFloat(t *testing.T) {
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 0.015, 1e-7, 42, 999999, 999999.5, 1e6, 1234567,
		1 << 53, 1<<53 + 2, 1e21, math.MaxUint64, -3, math.NaN(), math.Inf(1), math.Inf(-1)} {
		want := strconv.FormatFloat(v, 'g', -1, 64)
		if got := string(appendFloat(nil, v)); got != want {
			t.Errorf("appendFloat(%v) = %q, want %q", v, got, want)
		}
	}
}
