package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"golang.org/x/net/dns/dnsmessage"
)

// Issue #20, "Hostile input": a real server that misbehaves must cost a
// probe bounded time and memory. Each case below is a loopback server
// that misbehaves in one way; the probe must give a verdict with a clear
// cause within its timeout, read a bounded number of bytes, and close its
// connection, which the server sees.

// misbehavior is what a hostile server does with one accepted connection.
// It returns when it is done or once stop is closed; what the client sends
// is drained and discarded beside it unless it reads itself (ownsReads).
type misbehavior func(c net.Conn, stop <-chan struct{})

// hostileServer runs a misbehavior on every connection it accepts.
type hostileServer struct {
	rs net.Addr
	// gone is closed when the client of the first connection has gone:
	// the drain's read ended (EOF or reset).
	gone     chan struct{}
	goneOnce sync.Once
	accepted atomic.Int32
}

// How a hostile server reads what its client sends.
type reads int

const (
	drain     reads = iota // discard it beside the misbehavior
	afterHTTP              // read a request's head first, then drain: an HTTP client takes an answer before its request for an unsolicited one
	ownReads               // the misbehavior reads itself
)

// startHostile serves on host until the test ends; the cleanup stops
// every connection's goroutines and waits for them.
func startHostile(t testing.TB, host string, do misbehavior, r reads) *hostileServer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	return serveHostile(t, ln, do, r)
}

// readHead reads c up to the blank line that ends an HTTP request's head.
func readHead(c net.Conn) error {
	var b [1]byte
	var last uint32
	for last != 0x0d0a0d0a {
		if _, err := c.Read(b[:]); err != nil {
			return err
		}
		last = last<<8 | uint32(b[0])
	}
	return nil
}

func serveHostile(t testing.TB, ln net.Listener, do misbehavior, r reads) *hostileServer {
	s := &hostileServer{rs: ln.Addr(), gone: make(chan struct{})}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				if r == afterHTTP && readHead(c) != nil {
					s.goneOnce.Do(func() { close(s.gone) })
					return
				}
				if r != ownReads {
					wg.Go(func() {
						_, _ = io.Copy(io.Discard, c)
						s.goneOnce.Do(func() { close(s.gone) })
					})
				}
				do(c, stop)
			})
		}
	})
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// holdSilent accepts and never answers.
func holdSilent(_ net.Conn, stop <-chan struct{}) { <-stop }

// resetNow answers the handshake with a reset: SO_LINGER 0, then close.
func resetNow(c net.Conn, _ <-chan struct{}) {
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// resetAfter resets the connection d after the handshake, unless the
// client has gone by then.
func resetAfter(d time.Duration) misbehavior {
	return func(c net.Conn, stop <-chan struct{}) {
		select {
		case <-stop:
		case <-time.After(d):
			resetNow(c, nil)
		}
	}
}

// writeForever sends head, then chunk again and again until the write
// fails (the client has gone) or the test ends.
func writeForever(head, chunk string) misbehavior {
	return func(c net.Conn, stop <-chan struct{}) {
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		b := []byte(chunk)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}
}

// trickle sends head, then msg one byte a second: a slowloris answer.
func trickle(head, msg string) misbehavior {
	return func(c net.Conn, stop <-chan struct{}) {
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 0; ; i = (i + 1) % len(msg) {
			if _, err := c.Write([]byte{msg[i]}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}
}

// tlsResetAfterHandshake completes a TLS handshake with conf, then resets
// the connection.
func tlsResetAfterHandshake(cfg *tls.Config) misbehavior {
	return func(c net.Conn, _ <-chan struct{}) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_ = tls.Server(c, cfg).Handshake()
		resetNow(c, nil)
	}
}

// serverTLS is httptest's self-signed certificate, for servers that speak
// TLS by hand.
func serverTLS(t testing.TB) *tls.Config {
	s := httptest.NewUnstartedServer(http.NotFoundHandler())
	s.StartTLS()
	cfg := s.TLS.Clone()
	s.Close()
	return cfg
}

// countingConn counts the bytes a probe reads.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func countDial(dial dialFunc, n *atomic.Int64) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, n}, nil
	}
}

// countReads makes ch count the bytes it reads from its connections into
// n; false for a checker that reads nothing of a stream (tcp).
func countReads(t testing.TB, ch Checker, n *atomic.Int64) bool {
	switch c := ch.(type) {
	case *httpChecker:
		c.wrap = func(nc net.Conn) net.Conn { return countingConn{nc, n} }
	case *smtpChecker:
		c.dial = countDial(c.dial, n)
	case *tcpChecker:
		return false
	default:
		t.Fatalf("no byte count for %T", ch)
	}
	return true
}

// The limits of what a probe may read: the cap plus one buffer of the
// reader in front of it (bufio's 4 KiB; 64 KiB for slack).
const readSlack = 64 << 10

func TestHostileServers(t *testing.T) {
	tlsConf := serverTLS(t)
	const (
		ok200   = "HTTP/1.1 200 OK\r\n"
		chunked = ok200 + "Transfer-Encoding: chunked\r\n\r\n"
	)
	chunk := fmt.Sprintf("%x\r\n%s\r\n", 4096, strings.Repeat("x", 4096))
	bigHeader := ok200 + "X-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"
	tests := []struct {
		name      string
		check     string
		mod       func(c *conf.Check)
		serve     misbehavior
		ownsReads bool   // serve reads the connection itself
		want      bool   // the verdict: almost always down
		cause     string // Result.Cause
		errText   string // in the error
		maxRead   int64  // bytes the probe may read
	}{
		// http: keepalived's HTTP_GET verdicts, each bounded.
		{name: "accepts and never answers", check: "http", serve: holdSilent,
			cause: CauseTimeout, errText: "timed out", maxRead: 0},
		{name: "status line one byte a second", check: "http", serve: trickle("", ok200),
			cause: CauseTimeout, errText: "timed out", maxRead: 16},
		{name: "1 MiB header", check: "http", serve: writeForever(bigHeader, ""),
			cause: CauseOther, errText: "headers exceeded", maxRead: MaxBody + readSlack},
		{name: "endless header line", check: "http", serve: writeForever(ok200+"X-Endless: ", strings.Repeat("a", 1024)),
			cause: CauseOther, errText: "headers exceeded", maxRead: MaxBody + readSlack},
		{name: "endless 1xx responses", check: "http", serve: writeForever("", "HTTP/1.1 102 Processing\r\n\r\n"),
			cause: CauseOther, errText: "headers exceeded", maxRead: MaxBody + readSlack},
		// The status is the verdict when nothing else is asked of the
		// body: the body is not read at all, and the probe passes.
		{name: "endless body, status only", check: "http", serve: writeForever(chunked, chunk),
			want: true, maxRead: readSlack},
		{name: "endless body, body match", check: "http", mod: func(c *conf.Check) { c.Body = "healthy" },
			serve: writeForever(chunked, chunk), cause: CauseBody, errText: "does not contain", maxRead: MaxBody + readSlack},
		{name: "endless body, body md5", check: "http", mod: func(c *conf.Check) { c.BodyMD5 = md5hex("") },
			serve: writeForever(chunked, chunk), cause: CauseOther, errText: "body longer than", maxRead: conf.MaxDigestBody + readSlack},
		{name: "body one byte a second", check: "http", mod: func(c *conf.Check) { c.Body = "healthy" },
			serve: trickle(chunked, "1\r\nx\r\n"), cause: CauseTimeout, errText: "timed out", maxRead: readSlack},
		// lvsha, like keepalived's HTTP_GET, does not follow redirects:
		// the 302 is the answer, judged by the status list.
		{name: "redirect loop", check: "http", serve: writeForever(
			"HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n", ""),
			cause: CauseStatus, errText: "status 302", maxRead: readSlack},
		// The reset may reach the probe while it connects, writes or
		// reads: each says so in its own words.
		{name: "reset after the handshake", check: "http", serve: resetNow,
			cause: CauseOther, errText: "", maxRead: 0},

		// https
		{name: "TLS handshake never completes", check: "https", serve: holdSilent,
			cause: CauseTimeout, errText: "timed out", maxRead: 0},
		{name: "TLS ServerHello one byte a second", check: "https", serve: trickle("", "\x16\x03\x03\x00\x40"),
			cause: CauseTimeout, errText: "timed out", maxRead: 16},
		{name: "TLS answered with garbage", check: "https", serve: writeForever("", "garbage\r\n"),
			cause: CauseOther, errText: "tls", maxRead: readSlack},
		{name: "TLS answered with plain HTTP", check: "https", serve: writeForever(chunked, chunk),
			cause: CauseOther, errText: "HTTP response to HTTPS", maxRead: readSlack},
		{name: "reset after the TLS handshake", check: "https", serve: tlsResetAfterHandshake(tlsConf), ownsReads: true,
			cause: CauseOther, maxRead: readSlack},

		// smtp
		{name: "banner never sent", check: "smtp", serve: holdSilent,
			cause: CauseTimeout, errText: "greeting", maxRead: 0},
		{name: "banner one byte a second", check: "smtp", serve: trickle("", "220 mx.test\r\n"),
			cause: CauseTimeout, errText: "greeting", maxRead: 16},
		{name: "endless banner line", check: "smtp", serve: writeForever("220 ", strings.Repeat("x", 1024)),
			cause: CauseOther, errText: "longer than", maxRead: maxSMTPReply + readSlack},
		{name: "endless multi-line banner", check: "smtp", serve: writeForever("", "220-mx.test\r\n"),
			cause: CauseOther, errText: "longer than", maxRead: maxSMTPReply + readSlack},
		{name: "garbage banner", check: "smtp", serve: writeForever("", "\x00\xff garbage\r\n"),
			cause: CauseOther, errText: "greeting", maxRead: readSlack},
		{name: "smtp reset after the handshake", check: "smtp", serve: resetNow,
			cause: CauseOther, errText: "reset by peer", maxRead: 0},

		// tcp: the handshake is the whole check, so a server that then
		// says nothing, or resets, has passed it (keepalived's TCP_CHECK
		// too); the probe reads nothing. A reset right at accept may
		// reach the probe before it saw the handshake complete, so the
		// reset here comes later. A server that never completes the
		// handshake is TestTCPCheckHandshakeInProgress's.
		{name: "tcp accepts and never answers", check: "tcp", serve: holdSilent, want: true},
		{name: "tcp reset after the handshake", check: "tcp", serve: resetAfter(time.Second), want: true},
	}
	for _, host := range loopbacks {
		for _, tt := range tests {
			t.Run(host+"/"+tt.check+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				how := drain
				switch {
				case tt.ownsReads:
					how = ownReads
				case tt.check == "http":
					how = afterHTTP
				}
				s := startHostile(t, host, tt.serve, how)
				c := baseCheck(tt.check)
				c.Timeout = 500 * time.Millisecond
				c.HeloName = "lb1.test"
				if tt.mod != nil {
					tt.mod(c)
				}
				ch, err := NewChecker("vs1", addrPort(t, s.rs), c)
				if err != nil {
					t.Fatal(err)
				}
				var read atomic.Int64
				counted := countReads(t, ch, &read)
				start := time.Now()
				r := ch.Check(context.Background())
				took := time.Since(start)
				t.Logf("%v in %v, read %d bytes: %v", r.OK, took.Round(time.Millisecond), read.Load(), r.Err)
				if r.OK != tt.want {
					t.Fatalf("OK = %v (err %v), want %v", r.OK, r.Err, tt.want)
				}
				if got := r.Cause(); got != tt.cause {
					t.Errorf("cause %q (err %v), want %q", got, r.Err, tt.cause)
				}
				if !r.OK && !strings.Contains(r.Err.Error(), tt.errText) {
					t.Errorf("err %q, want it to say %q", r.Err, tt.errText)
				}
				// Generous slack: the bound is the timeout, not speed.
				if took > c.Timeout+time.Second {
					t.Errorf("probe took %v, timeout %v", took, c.Timeout)
				}
				if counted && read.Load() > tt.maxRead {
					t.Errorf("probe read %d bytes, want at most %d", read.Load(), tt.maxRead)
				}
				if !tt.ownsReads {
					select {
					case <-s.gone:
					case <-time.After(2 * time.Second):
						t.Errorf("the probe's connection is still open %v after it returned", time.Since(start)-took)
					}
				}
				if n := s.accepted.Load(); n != 1 {
					t.Errorf("server accepted %d connections, want 1", n)
				}
			})
		}
	}
}

// junk is n bytes of garbage that is no reply to q: a response whose ID
// differs from q's.
func junk(q dnsmessage.Message, n int) []byte {
	b := bytes.Repeat([]byte{0xff}, n)
	b[0], b[1] = byte(^q.ID>>8), byte(^q.ID)
	return b
}

// TestHostileDNS: a dns probe reads one datagram at a time into one
// buffer, so memory is bounded by construction; a server that never
// answers, or floods it with datagrams that are no reply, costs it its
// timeout and no more, and the error says what came instead.
func TestHostileDNS(t *testing.T) {
	tests := []struct {
		name    string
		reply   func(q dnsmessage.Message, send func([]byte) error)
		errText string
	}{
		{"never answers", func(dnsmessage.Message, func([]byte) error) {}, "timed out"},
		{"garbage flood", func(q dnsmessage.Message, send func([]byte) error) {
			for send(junk(q, 1400)) == nil {
			}
		}, "not a reply"},
		{"flood of replies to another query", func(q dnsmessage.Message, send func([]byte) error) {
			m := dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID + 1, Response: true}, Questions: q.Questions}
			b, _ := m.Pack()
			for send(b) == nil {
			}
		}, "not a reply"},
		{"oversized datagram", func(q dnsmessage.Message, send func([]byte) error) {
			_ = send(junk(q, 60000))
		}, "not a reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			t.Cleanup(func() { pc.Close(); wg.Wait() })
			wg.Go(func() {
				buf := make([]byte, 1500)
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				var q dnsmessage.Message
				if q.Unpack(buf[:n]) != nil {
					return
				}
				// The flood ends when the probe's socket is gone (port
				// unreachable) or the test closes the server.
				tt.reply(q, func(b []byte) error { _, err := pc.WriteTo(b, from); return err })
			})
			c, err := NewChecker("dns", netip.MustParseAddrPort(pc.LocalAddr().String()),
				&conf.Check{Type: "dns", Timeout: 500 * time.Millisecond, DNSType: "A", DNSName: "example.org"})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r := c.Check(context.Background())
			took := time.Since(start)
			t.Logf("in %v: %v", took.Round(time.Millisecond), r.Err)
			if r.OK || !errors.Is(r.Err, context.DeadlineExceeded) || r.Cause() != CauseTimeout {
				t.Fatalf("OK %v cause %q err %v, want a timeout", r.OK, r.Cause(), r.Err)
			}
			if !strings.Contains(r.Err.Error(), tt.errText) {
				t.Errorf("err %q, want it to say %q", r.Err, tt.errText)
			}
			if took > c.(*dnsChecker).timeout+time.Second {
				t.Errorf("probe took %v", took)
			}
		})
	}
}
