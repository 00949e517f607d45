package health

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// MaxBody is how much of an HTTP response body is read for body matching:
// enough for a status page, small enough that a huge response cannot make
// probes expensive.
const MaxBody = 64 << 10

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
	// conf fills the status list ([200] by default) of the check and of
	// every url.
	t := httpTarget{url: pu.String(), status: slices.Clone(u.Status), body: u.Body, md5: u.BodyMD5}
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
	method := c.Method // conf's default: GET
	tr := &http.Transport{
		// Proxy stays nil: a probe must reach the real server itself,
		// whatever HTTP_PROXY says.
		DialContext: dialProbeOf,
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

// probeCtxKey carries a probe's context, as a request's value, to the
// transport's dial (dialProbeOf).
type probeCtxKey struct{}

// dialProbeOf connects for the probe whose context ctx carries, bound to
// that context (dialProbe). net/http dials under a context detached from
// the request's, so that a dial a cancelled request started may serve the
// next one (Transport.getConn): a probe that timed out would leave its
// connect, and over it the TLS handshake (which has no timeout of its own
// here), running until the server gives up. A server that accepts and
// never sends its ServerHello would then hold a goroutine and a socket for
// every probe (issue #20, TestHostileServers). A probe's connection serves
// that probe only, so it ends with it.
func dialProbeOf(ctx context.Context, network, addr string) (net.Conn, error) {
	if pctx, ok := ctx.Value(probeCtxKey{}).(context.Context); ok {
		ctx = pctx
	}
	return dialProbe(ctx, network, addr)
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
	req, err := http.NewRequestWithContext(context.WithValue(ctx, probeCtxKey{}, ctx), c.method, t.url, nil)
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
		return failure(r, ctx, c.timeout, withCause(CauseStatus, fmt.Errorf("%s: status %d not in %v", req.URL.Path, resp.StatusCode, t.status)))
	}
	if t.body != "" || t.re != nil || t.md5 != "" {
		body, sum, err := readBody(resp.Body, t.md5 != "")
		r.Latency = time.Since(r.At)
		if err != nil {
			return failure(r, ctx, c.timeout, fmt.Errorf("read body of %s: %w", req.URL.Path, err))
		}
		if t.md5 != "" && sum != t.md5 {
			return failure(r, ctx, c.timeout, withCause(CauseBody, fmt.Errorf("%s: body MD5 %s, want %s", req.URL.Path, sum, t.md5)))
		}
		if t.body != "" && !bytes.Contains(body, []byte(t.body)) {
			return failure(r, ctx, c.timeout, withCause(CauseBody, fmt.Errorf("%s: body does not contain %q", req.URL.Path, t.body)))
		}
		if t.re != nil && !t.re.Match(body) {
			return failure(r, ctx, c.timeout, withCause(CauseBody, fmt.Errorf("%s: body does not match %q", req.URL.Path, t.re)))
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
