package health

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// smtpChecker passes when the server greets with 220 and answers HELO
// with 250, as keepalived's SMTP_CHECK requires; it then says QUIT.
type smtpChecker struct {
	addr    string
	helo    string
	timeout time.Duration
	// dial is dialProbe; tests count the bytes a probe reads through it.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// maxSMTPReply bounds what a probe reads of the greeting and the HELO
// reply together. textproto keeps a line, and the lines of a multi-line
// reply, however long, so a server sending an endless banner would make
// the probe buffer all it sends until the timeout (issue #20). A reply
// line is at most 512 bytes (RFC 5321 4.5.3.1.5): this allows a long
// multi-line greeting.
const maxSMTPReply = 16 << 10

// errReplyTooLong is why a probe stopped reading a server's reply.
var errReplyTooLong = fmt.Errorf("reply longer than %d bytes", maxSMTPReply)

// cappedReader reads at most n bytes of r, then fails and says so.
type cappedReader struct {
	r    io.Reader
	n    int
	over bool // a read beyond n was asked for
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.over = true
		return 0, errReplyTooLong
	}
	n, err := c.r.Read(p[:min(len(p), c.n)])
	c.n -= n
	return n, err
}

func newSMTPChecker(rs netip.AddrPort, c *conf.Check) (*smtpChecker, error) {
	addr, err := probeAddr(rs, c)
	if err != nil {
		return nil, err
	}
	return &smtpChecker{addr: addr, helo: c.HeloName, timeout: c.Timeout, dial: dialProbe}, nil
}

func (c *smtpChecker) String() string { return "smtp " + c.addr }

func (c *smtpChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	r := Result{At: time.Now()}
	nc, err := c.dial(ctx, "tcp", c.addr)
	if err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, err)
	}
	defer nc.Close()
	capped := &cappedReader{r: nc, n: maxSMTPReply}
	tr := textproto.NewReader(bufio.NewReader(capped))
	tw := textproto.NewWriter(bufio.NewWriter(nc))
	step := func(what string, want int) error {
		code, msg, err := tr.ReadResponse(want)
		// bufio hands the part of a line it holds when a read fails as a
		// whole line, so a reply cut at the cap may parse: it is still
		// too long.
		if capped.over {
			return fmt.Errorf("%s: %w", what, errReplyTooLong)
		}
		r.Code = code
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", what, ctx.Err())
			}
			if code != 0 {
				r.Message = fmt.Sprintf("SMTP %d %s", code, msg)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := step("greeting", 220); err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, err)
	}
	if err := tw.PrintfLine("HELO %s", c.helo); err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, fmt.Errorf("send HELO: %w", err))
	}
	if err := step("HELO", 250); err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, err)
	}
	// Polite, but the verdict is in: a server that drops QUIT is still up.
	_ = tw.PrintfLine("QUIT")
	r.Latency = time.Since(r.At)
	r.OK = true
	r.Message = "SMTP 250"
	return r
}
