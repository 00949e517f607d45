// Package health probes real servers and publishes whether each is up.
//
// A Checker runs one probe (tcp connect, http/https request, or an external
// command). The Engine schedules one goroutine per distinct probe, applies
// rise/fall hysteresis, and exposes the resulting states through Snapshot,
// Up and a coalescing Updates channel. health knows nothing about the kernel:
// consumers read states and decide what to program.
package health

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/proc"
	"golang.org/x/sys/unix"
)

// Checker runs one probe. Check must return once ctx is done, releasing every
// socket and process it opened.
type Checker interface {
	Check(ctx context.Context) Result
}

// Result is the outcome of one probe.
type Result struct {
	// OK reports whether the server passed the probe.
	OK bool
	// Message is a short human summary, e.g. "HTTP 200" or "exit 1".
	Message string
	// Code is the HTTP status for http/https or the exit status for exec
	// (-1 when killed by a signal); 0 when the probe never got that far.
	Code int
	// Latency is how long the probe took.
	Latency time.Duration
	// At is when the probe started.
	At time.Time
	// Err says why the probe failed; nil when OK.
	Err error
	// Weighted is set when an exec check with dynamic_weight asked for
	// Weight (exit status 2..255 means weight status-2) instead of the
	// configured weight.
	Weighted bool
	Weight   int
}

// MaxBody is how much of an HTTP response body is read for body matching:
// enough for a status page, small enough that a huge response cannot make
// probes expensive.
const MaxBody = 64 << 10

// maxOutput bounds the exec output kept for messages.
const maxOutput = 512

// execWaitDelay is how long a probe may wait, after the command exited or
// was killed, for a process that escaped its group (setsid) to close the
// output pipe; a probe must not take much longer than its timeout.
const execWaitDelay = 500 * time.Millisecond

// NewChecker builds the Checker for real server rs of virtual server vs
// according to c, whose fields must be resolved (as conf.Load leaves them).
// The returned Checker also implements fmt.Stringer, describing the probe.
func NewChecker(vs string, rs netip.AddrPort, c *conf.Check) (Checker, error) {
	if c == nil {
		return nil, errors.New("no check")
	}
	switch c.Type {
	case "tcp":
		return newTCPChecker(rs, c)
	case "http", "https":
		return newHTTPChecker(rs, c)
	case "dns":
		return newDNSChecker(rs, c)
	case "smtp":
		return newSMTPChecker(rs, c)
	case "icmp":
		return newICMPChecker(rs, c)
	case "udp":
		return newUDPChecker(rs, c)
	case "exec":
		if len(c.Command) == 0 || c.Command[0] == "" {
			return nil, errors.New("exec check without command")
		}
		return &execChecker{
			argv:    slices.Clone(c.Command),
			timeout: c.Timeout,
			dynamic: c.DynamicWeight,
			env: []string{
				"LVSHA_VIRTUAL_SERVER=" + vs,
				"LVSHA_REAL_SERVER_IP=" + rs.Addr().String(),
				"LVSHA_REAL_SERVER_PORT=" + strconv.Itoa(int(rs.Port())),
				"LVSHA_REAL_SERVER=" + rs.String(),
			},
		}, nil
	default:
		return nil, fmt.Errorf("unknown check type %q", c.Type)
	}
}

// probeAddr is the host:port a network probe connects to.
func probeAddr(rs netip.AddrPort, c *conf.Check) (string, error) {
	addr, port := rs.Addr(), rs.Port()
	if c.ConnectAddress.IsValid() {
		addr = c.ConnectAddress
	}
	if c.ConnectPort != 0 {
		port = c.ConnectPort
	}
	if !addr.IsValid() {
		return "", errors.New("no address to probe")
	}
	if port == 0 {
		return "", fmt.Errorf("no port to probe on %s: set connect_port", addr)
	}
	return net.JoinHostPort(addr.String(), strconv.Itoa(int(port))), nil
}

// withTimeout bounds one probe; a zero timeout leaves ctx alone.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// failure fills in a failed result, naming a timeout explicitly because
// "context deadline exceeded" does not tell an operator which limit fired.
func failure(r Result, ctx context.Context, timeout time.Duration, err error) Result {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s: %w", timeout, err)
		} else {
			// e.g. exec's "signal: killed": keep the timeout matchable.
			err = fmt.Errorf("timed out after %s (%w): %w", timeout, context.DeadlineExceeded, err)
		}
	}
	r.OK = false
	r.Err = err
	if r.Message == "" {
		r.Message = err.Error()
	}
	return r
}

// tcpChecker connects with raw non-blocking sockets instead of net.Dialer:
// at thousands of probes per second the dialer's extra system calls
// (keepalive and nodelay options, getsockname, getpeername) and its
// context timer dominate the cost, and the probe needs none of them.
type tcpChecker struct {
	addr    string // for messages
	sa      unix.Sockaddr
	family  int
	timeout time.Duration
}

func newTCPChecker(rs netip.AddrPort, c *conf.Check) (*tcpChecker, error) {
	addr, err := probeAddr(rs, c)
	if err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("probe address %s: %w", addr, err)
	}
	t := &tcpChecker{addr: addr, timeout: c.Timeout}
	ip := ap.Addr()
	if ip.Is4() || ip.Is4In6() {
		t.family = unix.AF_INET
		t.sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ip.Unmap().As4()}
		return t, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
	if zone := ip.Zone(); zone != "" {
		ifi, err := net.InterfaceByName(zone)
		if err != nil {
			n, perr := strconv.Atoi(zone)
			if perr != nil {
				return nil, fmt.Errorf("zone of %s: %w", addr, err)
			}
			sa.ZoneId = uint32(n)
		} else {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	t.family, t.sa = unix.AF_INET6, sa
	return t, nil
}

func (c *tcpChecker) String() string { return "tcp " + c.addr }

func (c *tcpChecker) Check(ctx context.Context) Result {
	r := Result{At: time.Now()}
	err := c.connect(ctx, r.At)
	r.Latency = time.Since(r.At)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("connect %s: timed out after %s (%w): %w", c.addr, c.timeout, context.DeadlineExceeded, err)
		} else {
			err = fmt.Errorf("connect %s: %w", c.addr, err)
		}
		return failure(r, ctx, c.timeout, err)
	}
	r.OK = true
	r.Message = "connected"
	return r
}

func (c *tcpChecker) connect(ctx context.Context, start time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fd, err := unix.Socket(c.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	err = unix.Connect(fd, c.sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) && !errors.Is(err, unix.EINTR) {
		unix.Close(fd)
		return os.NewSyscallError("connect", err)
	}
	// The runtime poller waits for the handshake; the file owns fd now.
	f := os.NewFile(uintptr(fd), c.addr)
	defer f.Close()
	if c.timeout > 0 {
		if err := f.SetWriteDeadline(start.Add(c.timeout)); err != nil {
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var connErr error
	err = rc.Write(func(fd uintptr) bool {
		// An empty send reports the handshake's state in one system call
		// (instead of getsockopt SO_ERROR plus getpeername): EAGAIN while
		// connecting, the pending error if it failed, success once
		// established (tcp_sendmsg waits for the connection first).
		err := unix.Sendto(int(fd), nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, nil)
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			return false
		case err != nil:
			connErr = os.NewSyscallError("connect", err)
			return true
		}
		// Reset instead of FIN: the probe has its answer, and an orderly
		// close would leave a TIME_WAIT socket on the director for every
		// probe (tens of thousands a minute at scale).
		_ = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		return true
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return connErr
}

type httpChecker struct {
	desc    string
	method  string
	host    string
	targets []httpTarget // all must pass, in order
	timeout time.Duration
	client  *http.Client
}

// httpTarget is one URL a check fetches and what its answer must be.
type httpTarget struct {
	url    string
	status []int
	body   string
	re     *regexp.Regexp
	md5    string
}

func newHTTPTarget(scheme, addr string, u conf.URL) (httpTarget, error) {
	path := u.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	pu, err := url.Parse(scheme + "://" + addr + path)
	if err != nil {
		return httpTarget{}, fmt.Errorf("check url: %w", err)
	}
	t := httpTarget{url: pu.String(), status: slices.Clone(u.Status), body: u.Body, md5: u.BodyMD5}
	if len(t.status) == 0 {
		t.status = []int{http.StatusOK}
	}
	if u.BodyRegexp != "" {
		if t.re, err = regexp.Compile(u.BodyRegexp); err != nil {
			return httpTarget{}, fmt.Errorf("body_regexp: %w", err)
		}
	}
	return t, nil
}

func newHTTPChecker(rs netip.AddrPort, c *conf.Check) (*httpChecker, error) {
	addr, err := probeAddr(rs, c)
	if err != nil {
		return nil, err
	}
	var targets []httpTarget
	for _, u := range append([]conf.URL{{Path: c.Path, Status: c.Status, Body: c.Body, BodyRegexp: c.BodyRegexp, BodyMD5: c.BodyMD5}}, c.URLs...) {
		t, err := newHTTPTarget(c.Type, addr, u)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	tr := &http.Transport{
		// Proxy stays nil: a probe must reach the real server itself,
		// whatever HTTP_PROXY says.
		DialContext: (&net.Dialer{KeepAlive: -1}).DialContext,
		// Like keepalived, every probe opens a new connection, so a
		// backend that stopped accepting is noticed.
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: MaxBody,
	}
	if c.Type == "https" {
		tr.TLSClientConfig = &tls.Config{
			InsecureSkipVerify: !c.TLSVerify, //nolint:gosec // keepalived parity; opt in with tls_verify
			ServerName:         c.SNI,
		}
	}
	desc := c.Type + " " + method + " " + targets[0].url
	if len(targets) > 1 {
		desc += fmt.Sprintf(" (+%d urls)", len(targets)-1)
	}
	if c.Host != "" {
		desc += " host=" + c.Host
	}
	return &httpChecker{
		desc:    desc,
		method:  method,
		host:    c.Host,
		targets: targets,
		timeout: c.Timeout,
		client: &http.Client{
			Transport: tr,
			// A redirect is the server's answer: judge it by the status list.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func (c *httpChecker) String() string { return c.desc }

func (c *httpChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	r := Result{At: time.Now()}
	for i := range c.targets {
		if r = c.fetch(ctx, &c.targets[i], r); !r.OK {
			return r
		}
	}
	return r
}

// fetch judges one target; the whole check shares one timeout, as
// keepalived's checks share one connect_timeout per url.
func (c *httpChecker) fetch(ctx context.Context, t *httpTarget, r Result) Result {
	r.OK, r.Message, r.Code = false, "", 0
	req, err := http.NewRequestWithContext(ctx, c.method, t.url, nil)
	if err != nil {
		return failure(r, ctx, c.timeout, fmt.Errorf("build request %s: %w", t.url, err))
	}
	if c.host != "" {
		req.Host = c.host
	}
	req.Header.Set("User-Agent", "lvsha-health")
	resp, err := c.client.Do(req)
	if err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, err)
	}
	defer resp.Body.Close()
	r.Code = resp.StatusCode
	if !slices.Contains(t.status, resp.StatusCode) {
		r.Latency = time.Since(r.At)
		r.Message = "HTTP " + strconv.Itoa(resp.StatusCode)
		if len(c.targets) > 1 {
			r.Message += " " + req.URL.Path
		}
		return failure(r, ctx, c.timeout, fmt.Errorf("%s: status %d not in %v", req.URL.Path, resp.StatusCode, t.status))
	}
	if t.body != "" || t.re != nil || t.md5 != "" {
		body, sum, err := readBody(resp.Body, t.md5 != "")
		r.Latency = time.Since(r.At)
		if err != nil {
			return failure(r, ctx, c.timeout, fmt.Errorf("read body of %s: %w", req.URL.Path, err))
		}
		if t.md5 != "" && sum != t.md5 {
			return failure(r, ctx, c.timeout, fmt.Errorf("%s: body MD5 %s, want %s", req.URL.Path, sum, t.md5))
		}
		if t.body != "" && !bytes.Contains(body, []byte(t.body)) {
			return failure(r, ctx, c.timeout, fmt.Errorf("%s: body does not contain %q", req.URL.Path, t.body))
		}
		if t.re != nil && !t.re.Match(body) {
			return failure(r, ctx, c.timeout, fmt.Errorf("%s: body does not match %q", req.URL.Path, t.re))
		}
	}
	r.Latency = time.Since(r.At)
	r.OK = true
	r.Message = "HTTP " + strconv.Itoa(resp.StatusCode)
	return r
}

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

type execChecker struct {
	argv    []string
	env     []string
	timeout time.Duration
	dynamic bool // exit 2..255 means up at weight status-2
}

func (c *execChecker) String() string { return "exec " + strings.Join(c.argv, " ") }

func (c *execChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	r := Result{At: time.Now()}
	out := proc.Head{Max: maxOutput}
	err := (&proc.Cmd{Argv: c.argv, Env: c.env, Output: &out, WaitDelay: execWaitDelay}).Run(ctx)
	r.Latency = time.Since(r.At)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		r.Code = exitErr.ExitCode()
	}
	output := strings.TrimSpace(out.String())
	if c.dynamic && r.Code >= 2 && r.Code <= 255 && ctx.Err() == nil {
		// keepalived's misc_dynamic: up, at weight status-2.
		r.OK, r.Weighted, r.Weight = true, true, r.Code-2
		r.Message = fmt.Sprintf("exit %d: weight %d", r.Code, r.Weight)
		if output != "" {
			r.Message += ": " + output
		}
		return r
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		r.Message = "exit " + strconv.Itoa(r.Code)
		if output != "" {
			r.Message += ": " + output
		}
		return failure(r, ctx, c.timeout, err)
	}
	// Success, or success with a process that escaped the group still
	// holding the output (ErrWaitDelay): the command's verdict is in.
	r.OK = true
	r.Message = "exit 0"
	if output != "" {
		r.Message += ": " + output
	}
	return r
}
