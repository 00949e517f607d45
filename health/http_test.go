package health

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
)

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestHTTPCheck(t *testing.T) {
	handler := func(status int, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if status >= 300 && status < 400 {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
		})
	}
	server := func(status int, body string) func(t *testing.T, host string) netip.AddrPort {
		return func(t *testing.T, host string) netip.AddrPort {
			return httpServer(t, host, false, nil, handler(status, body))
		}
	}
	tests := []struct {
		name     string
		target   func(t *testing.T, host string) netip.AddrPort
		mod      func(c *conf.Check)
		want     bool
		wantCode int
		wantErr  error // checked with errors.Is when set
	}{
		{name: "200 up", target: server(200, "ok"), want: true, wantCode: 200},
		{name: "500 down", target: server(500, "ok"), wantCode: 500},
		{name: "301 in status list", target: server(301, ""), mod: func(c *conf.Check) { c.Status = []int{200, 301} },
			want: true, wantCode: 301},
		{name: "301 not followed", target: server(301, ""), wantCode: 301},
		{name: "200 not in status list", target: server(200, ""), mod: func(c *conf.Check) { c.Status = []int{204} },
			wantCode: 200},
		{name: "body substring match", target: server(200, "hello, healthy world"),
			mod: func(c *conf.Check) { c.Body = "healthy" }, want: true, wantCode: 200},
		{name: "body substring mismatch", target: server(200, "hello, sick world"),
			mod: func(c *conf.Check) { c.Body = "healthy" }, wantCode: 200},
		{name: "body regexp match", target: server(200, "status: green\n"),
			mod: func(c *conf.Check) { c.BodyRegexp = `(?m)^status: (green|yellow)$` }, want: true, wantCode: 200},
		{name: "body regexp mismatch", target: server(200, "status: red\n"),
			mod: func(c *conf.Check) { c.BodyRegexp = `(?m)^status: (green|yellow)$` }, wantCode: 200},
		{name: "body beyond limit not read", target: server(200, strings.Repeat("x", MaxBody)+"healthy"),
			mod: func(c *conf.Check) { c.Body = "healthy" }, wantCode: 200},
		// md5sum of "hello\n" is b1946ac92492d2347c6235b4d2611184.
		{name: "body md5 match", target: server(200, "hello\n"),
			mod: func(c *conf.Check) { c.BodyMD5 = "b1946ac92492d2347c6235b4d2611184" }, want: true, wantCode: 200},
		{name: "body md5 mismatch", target: server(200, "hello!\n"),
			mod: func(c *conf.Check) { c.BodyMD5 = "b1946ac92492d2347c6235b4d2611184" }, wantCode: 200},
		{name: "body md5 covers the whole body, substring the head",
			target: server(200, "healthy"+strings.Repeat("x", 2*MaxBody)),
			mod: func(c *conf.Check) {
				c.Body, c.BodyMD5 = "healthy", md5hex("healthy"+strings.Repeat("x", 2*MaxBody))
			}, want: true, wantCode: 200},
		{name: "every url passes", target: server(200, "hello\n"),
			mod: func(c *conf.Check) {
				c.URLs = []conf.URL{{Path: "/a", Status: []int{200}}, {Path: "/b", Status: []int{200}, Body: "hello"}}
			}, want: true, wantCode: 200},
		{name: "one url of several fails", target: server(200, "hello\n"),
			mod: func(c *conf.Check) {
				c.URLs = []conf.URL{{Path: "/a", Status: []int{200}}, {Path: "/b", Status: []int{200}, Body: "bye"}}
			}, wantCode: 200},
		{name: "accepts and never answers", target: silentListener, wantErr: context.DeadlineExceeded},
		{name: "connection reset", target: resetListener},
		{name: "closed port", target: closedPort},
	}
	for _, host := range loopbacks {
		for _, tt := range tests {
			t.Run(host+"/"+tt.name, func(t *testing.T) {
				c := baseCheck("http")
				if tt.mod != nil {
					tt.mod(c)
				}
				start := time.Now()
				r := runCheck(t, tt.target(t, host), c)
				if r.OK != tt.want || r.Code != tt.wantCode {
					t.Fatalf("OK %v code %d (err %v), want OK %v code %d", r.OK, r.Code, r.Err, tt.want, tt.wantCode)
				}
				if !r.OK && r.Err == nil {
					t.Fatal("failed result without error")
				}
				if tt.wantErr != nil && !errors.Is(r.Err, tt.wantErr) {
					t.Fatalf("err %v, want %v", r.Err, tt.wantErr)
				}
				if d := time.Since(start); d > c.Timeout+time.Second {
					t.Fatalf("probe took %v, timeout %v", d, c.Timeout)
				}
			})
		}
	}
}

func TestHTTPRequestSeenByServer(t *testing.T) {
	for _, host := range loopbacks {
		t.Run(host, func(t *testing.T) {
			type seen struct{ method, host, uri string }
			got := make(chan seen, 1)
			rs := httpServer(t, host, false, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case got <- seen{r.Method, r.Host, r.RequestURI}:
				default:
				}
			}))
			c := baseCheck("http")
			c.Method = "HEAD"
			c.Host = "www.example.test"
			c.Path = "/health?deep=1"
			if r := runCheck(t, rs, c); !r.OK {
				t.Fatalf("check failed: %v", r.Err)
			}
			want := seen{"HEAD", "www.example.test", "/health?deep=1"}
			if s := <-got; s != want {
				t.Fatalf("server saw %+v, want %+v", s, want)
			}
		})
	}
}

func TestHTTPSCheck(t *testing.T) {
	for _, host := range loopbacks {
		for _, verify := range []bool{false, true} {
			t.Run(host+"/verify="+strconv.FormatBool(verify), func(t *testing.T) {
				var mu sync.Mutex
				var sni []string
				tlsConf := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
					mu.Lock()
					sni = append(sni, h.ServerName)
					mu.Unlock()
					return nil, nil
				}}
				rs := httpServer(t, host, true, tlsConf, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
				c := baseCheck("https")
				c.TLSVerify = verify
				c.SNI = "backend.example.test"
				r := runCheck(t, rs, c)
				// httptest's certificate is self-signed: verification
				// must reject it, skipping verification must accept it.
				if r.OK == verify {
					t.Fatalf("OK = %v with tls_verify=%v (err %v)", r.OK, verify, r.Err)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(sni) != 1 || sni[0] != c.SNI {
					t.Fatalf("server saw SNI %q, want [%q]", sni, c.SNI)
				}
			})
		}
	}
}

// TestHTTPURLsInOrder: a check with more urls fetches each in order, with
// the check's method and host, and names the url that failed.
func TestHTTPURLsInOrder(t *testing.T) {
	paths := make(chan string, 8)
	rs := httpServer(t, "127.0.0.1", false, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.Host + r.RequestURI
		if r.URL.Path == "/broken" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	c := baseCheck("http")
	c.Host = "svc.test"
	c.Path = "/health"
	c.URLs = []conf.URL{{Path: "/ready", Status: []int{200}}, {Path: "/broken", Status: []int{200}}, {Path: "/never", Status: []int{200}}}
	r := runCheck(t, rs, c)
	if r.OK || r.Code != 503 || !strings.Contains(r.Err.Error(), "/broken") {
		t.Fatalf("result %+v, want a failure naming /broken with code 503", r)
	}
	close(paths)
	var got []string
	for p := range paths {
		got = append(got, p)
	}
	if want := []string{"svc.test/health", "svc.test/ready", "svc.test/broken"}; !slices.Equal(got, want) {
		t.Errorf("server saw %v, want %v (and nothing after the failure)", got, want)
	}
}

// BenchmarkHTTPCheck measures one http(s) probe against a local server
// (issue #20: the probe's CPU against keepalived's HTTP_GET). The server
// runs in this process, so its work is in the figures too: compare runs,
// not absolute values.
func BenchmarkHTTPCheck(b *testing.B) {
	for _, scheme := range []string{"http", "https"} {
		b.Run(scheme, func(b *testing.B) {
			h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
			s := httptest.NewUnstartedServer(h)
			s.Config.ErrorLog = log.New(io.Discard, "", 0)
			if scheme == "https" {
				s.StartTLS()
			} else {
				s.Start()
			}
			defer s.Close()
			rs := netip.MustParseAddrPort(s.Listener.Addr().String())
			c := &conf.Check{Type: scheme, Timeout: 2 * time.Second, Method: "GET", Path: "/", Status: []int{200}, Body: "ok"}
			ch, err := NewChecker("vs1", rs, c)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := processCPU(b)
			b.ResetTimer()
			for range b.N {
				if r := ch.Check(ctx); !r.OK {
					b.Fatalf("probe failed: %v", r.Err)
				}
			}
			b.StopTimer()
			// Wall time per op is mostly waiting on loopback; the CPU
			// the process spent (probe and server) is the cost.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
