package health

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// answerAndHold is a misbehavior that sends resp and then holds the connection
// open: a probe that waits for the server to close times out.
func answerAndHold(resp string) misbehavior {
	return func(c net.Conn, stop <-chan struct{}) {
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
		<-stop
	}
}

// TestHTTPAnswers: how the probe reads an answer's head and body, each
// from a server that never closes the connection.
func TestHTTPAnswers(t *testing.T) {
	const ok200 = "HTTP/1.1 200 OK\r\n"
	bodyMatch := func(c *conf.Check) { c.Body = "healthy" }
	tests := []struct {
		name     string
		resp     string
		mod      func(c *conf.Check)
		want     bool
		wantCode int
		errText  string
		maxRead  int64 // when set, the most the probe may read
	}{
		{name: "head just under the bound", resp: ok200 + "X-Big: " + strings.Repeat("a", MaxBody-1024) + "\r\nContent-Length: 0\r\n\r\n",
			want: true, wantCode: 200},
		// The bound is MaxBody and what bufio reads ahead of the parser.
		{name: "head over the bound", resp: ok200 + "X-Big: " + strings.Repeat("a", maxHeadBytes) + "\r\n\r\n",
			errText: "headers exceeded", maxRead: maxHeadBytes},
		{name: "chunked body matched", resp: ok200 + "Transfer-Encoding: chunked\r\n\r\n4\r\nheal\r\n3\r\nthy\r\n0\r\n\r\n",
			mod: bodyMatch, want: true, wantCode: 200},
		{name: "chunked body mismatched", resp: ok200 + "Transfer-Encoding: chunked\r\n\r\n4\r\nheal\r\n3\r\nxhy\r\n0\r\n\r\n",
			mod: bodyMatch, wantCode: 200, errText: "does not contain"},
		{name: "content-length body matched", resp: ok200 + "Content-Length: 14\r\n\r\nstatus=healthy",
			mod: bodyMatch, want: true, wantCode: 200},
		{name: "content-length body md5", resp: ok200 + "Content-Length: 6\r\n\r\nhello\n",
			mod: func(c *conf.Check) { c.BodyMD5 = md5hex("hello\n") }, want: true, wantCode: 200},
		{name: "body past MaxBody not read", resp: ok200 + "Content-Length: " + strconv.Itoa(MaxBody+7) + "\r\n\r\n" + strings.Repeat("x", MaxBody) + "healthy",
			mod: bodyMatch, wantCode: 200, errText: "does not contain", maxRead: MaxBody + 2*headBufSize},
		{name: "1xx answers before the final one", resp: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + ok200 + "Content-Length: 0\r\n\r\n",
			want: true, wantCode: 200},
		{name: "too many 1xx answers", resp: strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", max1xx+1) + ok200 + "Content-Length: 0\r\n\r\n",
			errText: "informational"},
		{name: "HEAD answer has no body", resp: ok200 + "Content-Length: 1000\r\n\r\n",
			mod: func(c *conf.Check) { c.Method = "HEAD" }, want: true, wantCode: 200},
		// An empty body, at once: not a wait for the 1000 bytes announced.
		{name: "HEAD answer has no body to match", resp: ok200 + "Content-Length: 1000\r\n\r\n",
			mod: func(c *conf.Check) { c.Method, c.Body = "HEAD", "healthy" }, wantCode: 200, errText: "does not contain"},
		{name: "GET answer with a body yet to come", resp: ok200 + "Content-Length: 1000\r\n\r\n",
			mod: bodyMatch, wantCode: 200, errText: "timed out"},
		{name: "redirect judged, not followed", resp: "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
			wantCode: 302, errText: "status 302"},
		{name: "malformed status line", resp: "HTTP/1.1 abc OK\r\n\r\n", errText: "malformed"},
	}
	for _, host := range loopbacks {
		for _, tt := range tests {
			t.Run(host+"/"+tt.name, func(t *testing.T) {
				s := startHostile(t, host, answerAndHold(tt.resp), afterHTTP)
				c := baseCheck("http")
				if tt.mod != nil {
					tt.mod(c)
				}
				ch, err := NewChecker("vs1", addrPort(t, s.rs), c)
				if err != nil {
					t.Fatal(err)
				}
				var read atomic.Int64
				countReads(t, ch, &read)
				r := ch.Check(t.Context())
				if r.OK != tt.want || r.Code != tt.wantCode {
					t.Fatalf("OK %v code %d (err %v), want OK %v code %d", r.OK, r.Code, r.Err, tt.want, tt.wantCode)
				}
				if !r.OK && !strings.Contains(r.Err.Error(), tt.errText) {
					t.Errorf("err %q, want it to say %q", r.Err, tt.errText)
				}
				if tt.maxRead > 0 && read.Load() > tt.maxRead {
					t.Errorf("probe read %d bytes, want at most %d", read.Load(), tt.maxRead)
				}
			})
		}
	}
}

// TestHTTPRequestHeaders: the request is what net/http sent, Host
// included, and nothing else but for Accept-Encoding.
func TestHTTPRequestHeaders(t *testing.T) {
	type seen struct {
		proto, host, ua, conn string
		close                 bool
		headers               int
	}
	tests := []struct {
		name     string
		host     string // the check's host; "" for the address
		wantHost func(addr string) string
	}{
		{"address as Host", "", func(addr string) string { return addr }},
		{"host with port", "svc.test:8080", func(string) string { return "svc.test:8080" }},
		{"international host in punycode", "bücher.test", func(string) string { return "xn--bcher-kva.test" }},
	}
	for _, lb := range loopbacks {
		for _, tt := range tests {
			t.Run(lb+"/"+tt.name, func(t *testing.T) {
				got := make(chan seen, 1)
				rs := httpServer(t, lb, false, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					got <- seen{r.Proto, r.Host, r.UserAgent(), r.Header.Get("Connection"), r.Close, len(r.Header)}
				}))
				c := baseCheck("http")
				c.Host = tt.host
				if r := runCheck(t, rs, c); !r.OK {
					t.Fatalf("check failed: %v", r.Err)
				}
				// net/http's form of an address: host:port, an IPv6
				// literal in brackets.
				addr := net.JoinHostPort(rs.Addr().String(), strconv.Itoa(int(rs.Port())))
				want := seen{"HTTP/1.1", tt.wantHost(addr), "lvsha-health", "close", true, 2}
				if s := <-got; s != want {
					t.Fatalf("server saw %+v, want %+v", s, want)
				}
			})
		}
	}
}

// TestHTTPSVerify: against httptest's TLS server, whose certificate no
// system trusts, tls_verify decides; without an SNI the certificate is
// checked against the address, as net/http did.
func TestHTTPSVerify(t *testing.T) {
	tests := []struct {
		name    string
		verify  bool
		sni     string
		want    bool
		errText string
	}{
		{name: "no verification", want: true},
		{name: "no verification, SNI", sni: "backend.test", want: true},
		{name: "verification, no SNI", verify: true, errText: "certificate signed by unknown authority"},
		{name: "verification, SNI", verify: true, sni: "example.com", errText: "certificate signed by unknown authority"},
	}
	for _, host := range loopbacks {
		for _, tt := range tests {
			t.Run(host+"/"+tt.name, func(t *testing.T) {
				rs := httpServer(t, host, true, nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					io.WriteString(w, "all healthy")
				}))
				c := baseCheck("https")
				c.TLSVerify, c.SNI, c.Body = tt.verify, tt.sni, "healthy"
				r := runCheck(t, rs, c)
				if r.OK != tt.want {
					t.Fatalf("OK %v (err %v), want %v", r.OK, r.Err, tt.want)
				}
				if !r.OK && !strings.Contains(r.Err.Error(), tt.errText) {
					t.Errorf("err %q, want it to say %q", r.Err, tt.errText)
				}
			})
		}
	}
}

// TestHTTPCancel: a probe whose context ends mid-way returns at once,
// says so, and closes its connection; its timeout is far away.
func TestHTTPCancel(t *testing.T) {
	tests := []struct {
		name  string
		check string
		serve misbehavior
		reads reads
	}{
		{"mid head", "http", answerAndHold("HTTP/1.1 200 OK\r\nContent-"), afterHTTP},
		{"mid body", "http", answerAndHold("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nheal"), afterHTTP},
		{"mid TLS handshake", "https", holdSilent, drain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startHostile(t, "127.0.0.1", tt.serve, tt.reads)
			c := baseCheck(tt.check)
			c.Timeout, c.Body = time.Minute, "healthy"
			ch, err := NewChecker("vs1", addrPort(t, s.rs), c)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			r := ch.Check(ctx)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("cancelled probe took %v", d)
			}
			if r.OK || !errors.Is(r.Err, context.Canceled) {
				t.Fatalf("OK %v err %v, want a failure for the cancel", r.OK, r.Err)
			}
			select {
			case <-s.gone:
			case <-time.After(2 * time.Second):
				t.Error("the probe's connection is still open")
			}
		})
	}
}

// TestHTTPResetsConnection: a probe ends its connection with a reset, so
// the director keeps no TIME_WAIT socket per probe.
func TestHTTPResetsConnection(t *testing.T) {
	for _, host := range loopbacks {
		t.Run(host, func(t *testing.T) {
			ln := listen(t, host)
			after := make(chan error, 1)
			serveConns(t, ln, func(c net.Conn) {
				defer c.Close()
				if err := readHead(c); err != nil {
					after <- err
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := c.Read(make([]byte, 1))
				after <- err
			})
			if r := runCheck(t, addrPort(t, ln.Addr()), baseCheck("http")); !r.OK {
				t.Fatalf("check failed: %v", r.Err)
			}
			if err := <-after; !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("server's read after the answer: %v, want a reset", err)
			}
		})
	}
}

// TestHTTPStart: the engine's scheduler runs an http probe's connect
// (starter); a refused connect is the whole probe, and anything else
// waits in a goroutine of its own.
func TestHTTPStart(t *testing.T) {
	up := httpServer(t, "127.0.0.1", false, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	tests := []struct {
		name     string
		rs       netip.AddrPort
		wantWait bool
		cause    string
	}{
		{"refused within start", closedPort(t, "127.0.0.1"), false, CauseRefused},
		{"answer waited for", up, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := NewChecker("vs1", tt.rs, baseCheck("http"))
			if err != nil {
				t.Fatal(err)
			}
			s, ok := ch.(starter)
			if !ok {
				t.Fatalf("%T is no starter", ch)
			}
			r, wait := s.start(t.Context())
			if (wait != nil) != tt.wantWait {
				t.Fatalf("wait %v, want one: %v", wait != nil, tt.wantWait)
			}
			if wait != nil {
				r = wait()
			}
			if got := r.Cause(); got != tt.cause || r.At.IsZero() {
				t.Fatalf("cause %q at %v (err %v), want %q", got, r.At, r.Err, tt.cause)
			}
		})
	}
}
