package health

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"golang.org/x/sys/unix"
)

// loopbacks are the families every network test runs on.
var loopbacks = []string{"127.0.0.1", "::1"}

func listen(t *testing.T, host string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatalf("parse %s: %v", a, err)
	}
	return ap
}

// serveConns accepts until ln closes, handing each connection to handle.
func serveConns(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// closedPort returns an address on host where nothing listens.
func closedPort(t *testing.T, host string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	ap := addrPort(t, ln.Addr())
	ln.Close()
	return ap
}

// silentListener accepts and never answers; it holds connections until
// the test ends.
func silentListener(t *testing.T, host string) netip.AddrPort {
	ln := listen(t, host)
	var mu sync.Mutex
	var held []net.Conn
	serveConns(t, ln, func(c net.Conn) { mu.Lock(); held = append(held, c); mu.Unlock() })
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return addrPort(t, ln.Addr())
}

// resetListener answers every connection with a TCP reset.
func resetListener(t *testing.T, host string) netip.AddrPort {
	ln := listen(t, host)
	serveConns(t, ln, func(c net.Conn) {
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	return addrPort(t, ln.Addr())
}

// httpServer serves h on host; tls selects httptest's self-signed TLS.
func httpServer(t *testing.T, host string, useTLS bool, tlsConf *tls.Config, h http.Handler) netip.AddrPort {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = listen(t, host)
	// Failed handshakes are the point of some tests, not news.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		s.TLS = tlsConf
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return addrPort(t, s.Listener.Addr())
}

func baseCheck(typ string) *conf.Check {
	return &conf.Check{
		Type:     typ,
		Interval: time.Second,
		Timeout:  300 * time.Millisecond,
		Rise:     2,
		Fall:     2,
		Method:   "GET",
		Path:     "/",
		Status:   []int{200},
	}
}

func runCheck(t *testing.T, rs netip.AddrPort, c *conf.Check) Result {
	t.Helper()
	ch, err := NewChecker("vs1", rs, c)
	if err != nil {
		t.Fatalf("NewChecker: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ch.Check(ctx)
}

func TestTCPCheck(t *testing.T) {
	tests := []struct {
		name   string
		target func(t *testing.T, host string) netip.AddrPort
		want   bool
	}{
		{"open port", func(t *testing.T, host string) netip.AddrPort {
			ln := listen(t, host)
			serveConns(t, ln, func(c net.Conn) { c.Close() })
			return addrPort(t, ln.Addr())
		}, true},
		{"closed port", closedPort, false},
	}
	for _, host := range loopbacks {
		for _, tt := range tests {
			t.Run(host+"/"+tt.name, func(t *testing.T) {
				r := runCheck(t, tt.target(t, host), baseCheck("tcp"))
				if r.OK != tt.want {
					t.Fatalf("OK = %v (err %v), want %v", r.OK, r.Err, tt.want)
				}
				if !r.OK && r.Err == nil {
					t.Fatal("failed result without error")
				}
				if r.At.IsZero() || r.Latency <= 0 {
					t.Fatalf("At %v Latency %v not filled in", r.At, r.Latency)
				}
			})
		}
	}
}

func TestConnectAddressOverride(t *testing.T) {
	for _, host := range loopbacks {
		t.Run(host, func(t *testing.T) {
			ln := listen(t, host)
			serveConns(t, ln, func(c net.Conn) { c.Close() })
			open := addrPort(t, ln.Addr())
			closed := closedPort(t, host)

			c := baseCheck("tcp")
			c.ConnectPort = open.Port()
			if r := runCheck(t, closed, c); !r.OK {
				t.Fatalf("connect_port %d to open port failed: %v", open.Port(), r.Err)
			}
			c = baseCheck("tcp")
			c.ConnectAddress = open.Addr()
			if r := runCheck(t, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), open.Port()), c); !r.OK {
				t.Fatalf("connect_address %s failed: %v", open.Addr(), r.Err)
			}
		})
	}
}

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

// procGone reports whether pid has exited (a zombie counts as exited:
// only its parent can reap it).
func procGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func TestExecCheck(t *testing.T) {
	tests := []struct {
		name     string
		script   string // run by sh with $1 = a pid file
		timeout  time.Duration
		want     bool
		wantCode int
		maxTime  time.Duration
		wantErr  error
	}{
		{name: "exit 0", script: "exit 0", timeout: 2 * time.Second, want: true, maxTime: 2 * time.Second},
		{name: "exit 1", script: "exit 1", timeout: 2 * time.Second, wantCode: 1, maxTime: 2 * time.Second},
		{name: "exit 3 with output", script: "echo broken; exit 3", timeout: 2 * time.Second, wantCode: 3,
			maxTime: 2 * time.Second},
		{name: "hangs past timeout", script: `sleep 30 & echo $! > "$1"; wait`, timeout: 200 * time.Millisecond,
			wantCode: -1, maxTime: 200*time.Millisecond + execWaitDelay + time.Second, wantErr: context.DeadlineExceeded},
		{name: "exits leaving a child on stdout", script: `sleep 30 & echo $! > "$1"; exit 0`,
			timeout: 5 * time.Second, want: true, maxTime: execWaitDelay + 2*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			c := baseCheck("exec")
			c.Timeout = tt.timeout
			c.Command = []string{"/bin/sh", "-c", tt.script, "sh", pidFile}
			start := time.Now()
			r := runCheck(t, netip.MustParseAddrPort("127.0.0.1:80"), c)
			took := time.Since(start)
			if r.OK != tt.want || r.Code != tt.wantCode {
				t.Fatalf("OK %v code %d (err %v, msg %q), want OK %v code %d",
					r.OK, r.Code, r.Err, r.Message, tt.want, tt.wantCode)
			}
			if tt.wantErr != nil && !errors.Is(r.Err, tt.wantErr) {
				t.Fatalf("err %v, want %v", r.Err, tt.wantErr)
			}
			if took > tt.maxTime {
				t.Fatalf("check took %v, want at most %v", took, tt.maxTime)
			}
			b, err := os.ReadFile(pidFile)
			if err != nil {
				return // the script started no child
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("pid file: %v", err)
			}
			deadline := time.Now().Add(2 * time.Second)
			for !procGone(pid) {
				if time.Now().After(deadline) {
					t.Fatalf("child %d of the check survived it", pid)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestExecEnvironment(t *testing.T) {
	t.Setenv("LVSHA_TEST_INHERITED", "yes")
	tests := []struct {
		rs   netip.AddrPort
		want map[string]string
	}{
		{netip.MustParseAddrPort("127.0.0.1:8080"), map[string]string{
			"LVSHA_VIRTUAL_SERVER":   "vs1",
			"LVSHA_REAL_SERVER_IP":   "127.0.0.1",
			"LVSHA_REAL_SERVER_PORT": "8080",
			"LVSHA_REAL_SERVER":      "127.0.0.1:8080",
			"LVSHA_TEST_INHERITED":   "yes",
		}},
		{netip.MustParseAddrPort("[::1]:443"), map[string]string{
			"LVSHA_VIRTUAL_SERVER":   "vs1",
			"LVSHA_REAL_SERVER_IP":   "::1",
			"LVSHA_REAL_SERVER_PORT": "443",
			"LVSHA_REAL_SERVER":      "[::1]:443",
			"LVSHA_TEST_INHERITED":   "yes",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.rs.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "env")
			c := baseCheck("exec")
			c.Timeout = 2 * time.Second
			c.Command = []string{"/bin/sh", "-c", `env > "$1"`, "sh", out}
			if r := runCheck(t, tt.rs, c); !r.OK {
				t.Fatalf("check failed: %v", r.Err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			got := make(map[string]string)
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					got[k] = v
				}
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestCheckCancelReturnsPromptly(t *testing.T) {
	silent := silentListener(t, "127.0.0.1")
	full, _ := fullBacklog(t, "127.0.0.1")
	tests := []struct {
		name string
		rs   netip.AddrPort
		c    *conf.Check
	}{
		{"tcp with handshake in progress", full, baseCheck("tcp")},
		{"http to silent server", silent, baseCheck("http")},
		{"exec sleep", silent, func() *conf.Check {
			c := baseCheck("exec")
			c.Command = []string{"sleep", "30"}
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.Timeout = time.Minute
			ch, err := NewChecker("vs1", tt.rs, tt.c)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			r := ch.Check(ctx)
			if r.OK {
				t.Fatal("cancelled check reported OK")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("cancelled check took %v", d)
			}
		})
	}
}

func TestNewCheckerErrors(t *testing.T) {
	tests := []struct {
		name string
		rs   netip.AddrPort
		mod  func(c *conf.Check)
	}{
		{"unknown type", netip.MustParseAddrPort("127.0.0.1:80"), func(c *conf.Check) { c.Type = "gopher" }},
		{"bad udp payload", netip.MustParseAddrPort("127.0.0.1:53"), func(c *conf.Check) { c.Type, c.PayloadHex = "udp", "zz" }},
		{"unknown dns type", netip.MustParseAddrPort("127.0.0.1:53"), func(c *conf.Check) { c.Type, c.DNSType = "dns", "SRV" }},
		{"no port", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0), nil},
		{"bad regexp", netip.MustParseAddrPort("127.0.0.1:80"), func(c *conf.Check) { c.BodyRegexp = "(" }},
		{"exec without command", netip.MustParseAddrPort("127.0.0.1:80"), func(c *conf.Check) { c.Type = "exec" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseCheck("http")
			if tt.mod != nil {
				tt.mod(c)
			}
			if _, err := NewChecker("vs1", tt.rs, c); err == nil {
				t.Fatal("NewChecker accepted an unusable check")
			}
		})
	}
}

// fullBacklog listens on host with the smallest accept queue and fills it,
// so the kernel drops further SYNs: a connect then stays in progress until
// a retransmitted SYN finds room. accept frees one slot.
func fullBacklog(t *testing.T, host string) (rs netip.AddrPort, accept func()) {
	t.Helper()
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	if host == "::1" {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		rs = netip.AddrPortFrom(netip.AddrFrom4(b.Addr), uint16(b.Port))
	case *unix.SockaddrInet6:
		rs = netip.AddrPortFrom(netip.AddrFrom16(b.Addr), uint16(b.Port))
	}
	for i := 0; ; i++ {
		if i == 16 {
			t.Fatal("accept queue of backlog 0 never filled")
		}
		c, err := net.DialTimeout("tcp", rs.String(), 100*time.Millisecond)
		if err != nil {
			break // dropped SYN: the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	return rs, func() {
		nfd, _, err := unix.Accept(fd)
		if err == nil {
			t.Cleanup(func() { unix.Close(nfd) })
		}
	}
}

func TestTCPCheckHandshakeInProgress(t *testing.T) {
	for _, host := range loopbacks {
		t.Run(host+"/times out", func(t *testing.T) {
			rs, _ := fullBacklog(t, host)
			c := baseCheck("tcp")
			c.Timeout = 200 * time.Millisecond
			start := time.Now()
			r := runCheck(t, rs, c)
			if r.OK || !errors.Is(r.Err, context.DeadlineExceeded) {
				t.Fatalf("OK %v err %v, want a timeout", r.OK, r.Err)
			}
			if d := time.Since(start); d < c.Timeout || d > c.Timeout+time.Second {
				t.Fatalf("took %v with timeout %v", d, c.Timeout)
			}
		})
		t.Run(host+"/completes late", func(t *testing.T) {
			rs, accept := fullBacklog(t, host)
			c := baseCheck("tcp")
			c.Timeout = 4 * time.Second
			time.AfterFunc(100*time.Millisecond, accept)
			r := runCheck(t, rs, c)
			// Only a retransmitted SYN (about a second later) can get in.
			if !r.OK || r.Latency < 500*time.Millisecond {
				t.Fatalf("OK %v latency %v err %v, want success after the SYN retransmit", r.OK, r.Latency, r.Err)
			}
		})
	}
}

// TestExecDynamicWeight: keepalived's misc_dynamic exit statuses.
func TestExecDynamicWeight(t *testing.T) {
	tests := []struct {
		name         string
		exit         int
		dynamic      bool
		want         bool
		wantWeighted bool
		wantWeight   int
	}{
		{"exit 0 is up at the configured weight", 0, true, true, false, 0},
		{"exit 1 is down", 1, true, false, false, 0},
		{"exit 2 is up at weight 0", 2, true, true, true, 0},
		{"exit 7 is up at weight 5", 7, true, true, true, 5},
		{"exit 255 is up at weight 253", 255, true, true, true, 253},
		{"without dynamic_weight exit 7 is down", 7, false, false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseCheck("exec")
			c.Timeout = 2 * time.Second
			c.DynamicWeight = tt.dynamic
			c.Command = []string{"/bin/sh", "-c", "exit " + strconv.Itoa(tt.exit)}
			r := runCheck(t, netip.MustParseAddrPort("127.0.0.1:80"), c)
			if r.OK != tt.want || r.Weighted != tt.wantWeighted || r.Weight != tt.wantWeight || r.Code != tt.exit {
				t.Fatalf("result %+v, want OK %v weighted %v weight %d code %d", r, tt.want, tt.wantWeighted, tt.wantWeight, tt.exit)
			}
		})
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
