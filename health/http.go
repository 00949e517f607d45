package health

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvsha/lvsha/conf"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/sys/unix"
)

// MaxBody is how much of an HTTP response body is read for body matching:
// enough for a status page, small enough that a huge response cannot make
// probes expensive.
const MaxBody = 64 << 10

// httpChecker probes like keepalived's HTTP_GET: one raw non-blocking
// socket per url (connected as tcpChecker connects), a request written
// once at configuration time, and the answer parsed in the probe's own
// goroutine. net/http's Transport cost four times as much per probe: its
// dialer, the read and write goroutines of every connection and their
// stacks (issue #20).
type httpChecker struct {
	desc    string
	targets []httpTarget // all must pass, in order
	timeout time.Duration
	method  string
	dial    *tcpChecker // where and how to connect
	// headReq tells http.ReadResponse the request's method: a HEAD
	// answer has no body. Shared by every probe, read only.
	headReq *http.Request
	tls     *tls.Config // nil for http
	raddr   net.Addr
	// wrap, nil outside tests, wraps each connection a probe opens (under
	// TLS); TestHostileServers counts the bytes a probe reads through it.
	wrap func(net.Conn) net.Conn
}

// httpTarget is one URL a check fetches and what its answer must be.
type httpTarget struct {
	url     string
	path    string // for messages
	request []byte // the whole request, written as is
	status  []int
	body    string
	re      *regexp.Regexp
	md5     string
}

// maxHeadBytes bounds what a probe reads before its answer's body: the
// head, and 1xx answers before it, may be up to MaxBody bytes (net/http's
// MaxResponseHeaderBytes as the probe set it before), plus what bufio
// reads ahead of the parser.
const maxHeadBytes = MaxBody + headBufSize

// headBufSize is the probe's read buffer, bufio's default.
const headBufSize = 4096

// max1xx bounds the informational (1xx) answers a probe skips before the
// final one: a real server sends one or two, if any.
const max1xx = 5

// errHeadTooLong is why a probe stopped reading an answer's head; its
// text says what net/http's did.
var errHeadTooLong = fmt.Errorf("server response headers exceeded %d bytes", MaxBody)

func newHTTPTarget(scheme, addr, method, host string, u conf.URL) (httpTarget, error) {
	path := u.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	pu, err := url.Parse(scheme + "://" + addr + path)
	if err != nil {
		return httpTarget{}, fmt.Errorf("check url: %w", err)
	}
	if host == "" {
		host = pu.Host
	}
	host, err = hostHeader(host)
	if err != nil {
		return httpTarget{}, err
	}
	uri := pu.RequestURI()
	if strings.ContainsFunc(uri, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return httpTarget{}, fmt.Errorf("check url %s: control character in path", pu)
	}
	// What net/http wrote for this request, but for Accept-Encoding: the
	// probe wants the body as the server has it. Connection: close, as
	// keepalived: every probe opens a new connection, so a backend that
	// stopped accepting is noticed.
	req := method + " " + uri + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: lvsha-health\r\nConnection: close\r\n\r\n"
	// conf fills the status list ([200] by default) of the check and of
	// every url.
	t := httpTarget{url: pu.String(), path: pu.Path, request: []byte(req), status: slices.Clone(u.Status), body: u.Body, md5: u.BodyMD5}
	if u.BodyRegexp != "" {
		if t.re, err = regexp.Compile(u.BodyRegexp); err != nil {
			return httpTarget{}, fmt.Errorf("body_regexp: %w", err)
		}
	}
	return t, nil
}

// hostHeader is the Host header net/http sends for host: an IDN in
// punycode, without an IPv6 zone (RFC 6874). A value that would break
// the request's framing is an error (conf rejects it already).
func hostHeader(host string) (string, error) {
	h, err := httpguts.PunycodeHostPort(host)
	if err != nil {
		return "", fmt.Errorf("host %q: %w", host, err)
	}
	if !httpguts.ValidHostHeader(h) {
		return "", fmt.Errorf("host %q: not a valid Host header", host)
	}
	if strings.HasPrefix(h, "[") {
		if i := strings.LastIndex(h, "]"); i > 0 {
			if j := strings.LastIndex(h[:i], "%"); j > 0 {
				h = h[:j] + h[i:]
			}
		}
	}
	return h, nil
}

func newHTTPChecker(rs netip.AddrPort, c *conf.Check) (*httpChecker, error) {
	dial, err := newTCPChecker(rs, c)
	if err != nil {
		return nil, err
	}
	addr := dial.addr
	method := c.Method // conf's default: GET
	if method == "" {
		method = http.MethodGet // as net/http took it, for a check built by hand
	}
	// conf checks the method; a check built by hand must not smuggle
	// header lines into the request either.
	if !httpguts.ValidHeaderFieldName(method) {
		return nil, fmt.Errorf("invalid HTTP method %q", method)
	}
	var targets []httpTarget
	for _, u := range append([]conf.URL{{Path: c.Path, Status: c.Status, Body: c.Body, BodyRegexp: c.BodyRegexp, BodyMD5: c.BodyMD5}}, c.URLs...) {
		t, err := newHTTPTarget(c.Type, addr, method, c.Host, u)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	ap := netip.MustParseAddrPort(addr) // newTCPChecker parsed it
	h := &httpChecker{
		targets: targets,
		timeout: c.Timeout,
		method:  method,
		dial:    dial,
		headReq: &http.Request{Method: method},
		raddr:   net.TCPAddrFromAddrPort(ap),
	}
	if c.Type == "https" {
		h.tls = &tls.Config{
			InsecureSkipVerify: !c.TLSVerify, //nolint:gosec // keepalived parity; opt in with tls_verify
			ServerName:         c.SNI,
		}
		if h.tls.ServerName == "" {
			// What net/http verified the certificate against: the
			// address (an IP, so no SNI is sent).
			h.tls.ServerName = ap.Addr().WithZone("").String()
		}
	}
	h.desc = c.Type + " " + method + " " + targets[0].url
	if len(targets) > 1 {
		h.desc += fmt.Sprintf(" (+%d urls)", len(targets)-1)
	}
	if c.Host != "" {
		h.desc += " host=" + c.Host
	}
	return h, nil
}

func (c *httpChecker) String() string { return c.desc }

func (c *httpChecker) Check(ctx context.Context) Result {
	r, wait := c.start(ctx)
	if wait != nil {
		return wait()
	}
	return r
}

// start connects for the first url in the caller's goroutine (the
// engine's scheduler, starter): a server that refuses costs no goroutine.
// The rest, the answer and every further url, waits in wait. The whole
// check shares one timeout, as keepalived's checks share one
// connect_timeout per url.
func (c *httpChecker) start(ctx context.Context) (Result, func() Result) {
	r := Result{At: time.Now()}
	fd, established, err := c.dial.open(ctx)
	if err != nil {
		return c.failed(ctx, r, &c.targets[0], err), nil
	}
	return Result{}, func() Result {
		for i := range c.targets {
			if i > 0 {
				if fd, established, err = c.dial.open(ctx); err != nil {
					return c.failed(ctx, r, &c.targets[i], err)
				}
			}
			if r = c.fetch(ctx, &c.targets[i], r, fd, established); !r.OK {
				return r
			}
		}
		return r
	}
}

// fetch judges one target over fd, connecting or connected (established),
// which it closes.
func (c *httpChecker) fetch(ctx context.Context, t *httpTarget, r Result, fd int, established bool) Result {
	r.OK, r.Message, r.Code = false, "", 0
	if c.tls != nil {
		// TLS writes its last handshake flight and the request apart:
		// with Nagle's algorithm the request waited for the server's
		// delayed ACK (40 ms a probe). net.Dialer set this too.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	// The runtime poller waits for the socket; the file owns fd now. Its
	// close resets the connection (handshakeDone): no TIME_WAIT on the
	// director, and nothing of an unread body is read.
	f := os.NewFile(uintptr(fd), c.dial.addr)
	defer f.Close()
	if c.timeout > 0 {
		if err := f.SetDeadline(r.At.Add(c.timeout)); err != nil {
			return c.failed(ctx, r, t, fmt.Errorf("set deadline: %w", err))
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if !established {
		if err := awaitHandshake(ctx, f); err != nil {
			return c.failed(ctx, r, t, err)
		}
	}
	var conn net.Conn = &fileConn{f: f, raddr: c.raddr}
	if c.wrap != nil {
		conn = c.wrap(conn)
	}
	if c.tls != nil {
		tc := tls.Client(conn, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			if rh := (tls.RecordHeaderError{}); errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" {
				err = fmt.Errorf("server gave HTTP response to HTTPS client: %w", err)
			}
			return c.failed(ctx, r, t, fmt.Errorf("tls handshake: %w", err))
		}
		conn = tc
	}
	if _, err := conn.Write(t.request); err != nil {
		return c.failed(ctx, r, t, fmt.Errorf("send request: %w", err))
	}
	lr := &limitedReader{r: conn, n: maxHeadBytes}
	br := bufio.NewReaderSize(lr, headBufSize)
	resp, err := c.readHead(br, lr)
	if err != nil {
		return c.failed(ctx, r, t, fmt.Errorf("read response: %w", err))
	}
	// The body has bounds of its own (readBody). Its Close is never
	// called: net/http's would read it to the end.
	lr.n = math.MaxInt64
	r.Code = resp.StatusCode
	if !slices.Contains(t.status, resp.StatusCode) {
		r.Latency = time.Since(r.At)
		r.Message = "HTTP " + strconv.Itoa(resp.StatusCode)
		if len(c.targets) > 1 {
			r.Message += " " + t.path
		}
		return failure(r, ctx, c.timeout, withCause(CauseStatus, fmt.Errorf("%s: status %d not in %v", t.path, resp.StatusCode, t.status)))
	}
	if t.body != "" || t.re != nil || t.md5 != "" {
		body, sum, err := readBody(resp.Body, t.md5 != "")
		if err != nil {
			return c.failed(ctx, r, t, fmt.Errorf("read body of %s: %w", t.path, err))
		}
		r.Latency = time.Since(r.At)
		if t.md5 != "" && sum != t.md5 {
			return failure(r, ctx, c.timeout, withCause(CauseBody, fmt.Errorf("%s: body MD5 %s, want %s", t.path, sum, t.md5)))
		}
		if t.body != "" && !bytes.Contains(body, []byte(t.body)) {
			return failure(r, ctx, c.timeout, withCause(CauseBody, fmt.Errorf("%s: body does not contain %q", t.path, t.body)))
		}
		if t.re != nil && !t.re.Match(body) {
			return failure(r, ctx, c.timeout, withCause(CauseBody, fmt.Errorf("%s: body does not match %q", t.path, t.re)))
		}
	}
	r.Latency = time.Since(r.At)
	r.OK = true
	r.Message = "HTTP " + strconv.Itoa(resp.StatusCode)
	return r
}

// readHead reads the answer's head from br, which reads lr. ReadResponse
// returns an informational (1xx) answer as any other; like net/http's
// Transport, the probe skips them (but 101, which ends HTTP), a few at
// most, all within lr's bound.
func (c *httpChecker) readHead(br *bufio.Reader, lr *limitedReader) (*http.Response, error) {
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(br, c.headReq)
		if err != nil {
			// bufio hands the part of a line it holds when a read fails
			// as a whole line, and ReadResponse calls it malformed: the
			// read's error (the limit, a timeout, a reset) is the cause.
			if lr.err != nil && lr.err != io.EOF {
				return nil, lr.err
			}
			return nil, err
		}
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if n == max1xx {
			return nil, fmt.Errorf("server response headers exceeded: more than %d informational (1xx) responses", max1xx)
		}
	}
}

// failed is the Result of a probe of t that failed with err. The file's
// deadline is the check's timeout, and can fire a moment before ctx
// says so: the error then says it timed out, as one of ctx would.
func (c *httpChecker) failed(ctx context.Context, r Result, t *httpTarget, err error) Result {
	r.Latency = time.Since(r.At)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		switch cerr := ctx.Err(); {
		case cerr == nil:
			return failure(r, ctx, c.timeout, fmt.Errorf("timed out after %s (%w): %s %s: %w", c.timeout, context.DeadlineExceeded, c.method, t.url, err))
		case !errors.Is(err, cerr):
			// ctx's end, not the timeout, moved the deadline.
			err = fmt.Errorf("%w: %w", cerr, err)
		}
	}
	return failure(r, ctx, c.timeout, fmt.Errorf("%s %s: %w", c.method, t.url, err))
}

// limitedReader reads r while n allows, then fails; err is the first
// error a read returned.
type limitedReader struct {
	r   io.Reader
	n   int64
	err error
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		l.err = cmp.Or(l.err, errHeadTooLong)
		return 0, errHeadTooLong
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if err != nil && l.err == nil {
		l.err = err
	}
	return n, err
}

// fileConn is a net.Conn over a connected socket the runtime poller
// waits on, for crypto/tls (and tests). net.FileConn would dup the
// socket and ask the kernel for both addresses: three system calls a
// probe does not need.
type fileConn struct {
	f     *os.File
	raddr net.Addr
}

func (c *fileConn) Read(p []byte) (int, error)  { return c.f.Read(p) }
func (c *fileConn) Write(p []byte) (int, error) { return c.f.Write(p) }
func (c *fileConn) Close() error                { return c.f.Close() }

// LocalAddr is unknown: no probe asks for it, and getsockname would cost
// a system call.
func (c *fileConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *fileConn) RemoteAddr() net.Addr               { return c.raddr }
func (c *fileConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *fileConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *fileConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// readBody returns the first MaxBody bytes of a response body for
// matching and, when digest is set, the MD5 of the whole body (at most
// conf.MaxDigestBody bytes; a longer body is an error).
func readBody(r io.Reader, digest bool) (head []byte, sum string, err error) {
	if !digest {
		head, err = io.ReadAll(io.LimitReader(r, MaxBody))
		return head, "", err
	}
	h := md5.New()
	var buf bytes.Buffer
	n, err := io.Copy(io.MultiWriter(h, &capped{&buf, MaxBody}), io.LimitReader(r, conf.MaxDigestBody+1))
	if err != nil {
		return nil, "", err
	}
	if n > conf.MaxDigestBody {
		return nil, "", fmt.Errorf("body longer than %d bytes", conf.MaxDigestBody)
	}
	return buf.Bytes(), hex.EncodeToString(h.Sum(nil)), nil
}

// capped keeps the first n bytes written to it and discards the rest.
type capped struct {
	b *bytes.Buffer
	n int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.n - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
