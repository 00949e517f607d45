package health

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
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
		// conf rejects these; a check built by hand must not smuggle
		// header lines into the request the http probe writes as is.
		{"http method with a line break", netip.MustParseAddrPort("127.0.0.1:80"), func(c *conf.Check) { c.Method = "GET / HTTP/1.1\r\nX-Smuggled: 1\r\n\r\nGET" }},
		{"http host with a line break", netip.MustParseAddrPort("127.0.0.1:80"), func(c *conf.Check) { c.Host = "svc.test\r\nX-Smuggled: 1" }},
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
