package health

import (
	"context"
	"fmt"
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
}

func newSMTPChecker(rs netip.AddrPort, c *conf.Check) (*smtpChecker, error) {
	addr, err := probeAddr(rs, c)
	if err != nil {
		return nil, err
	}
	return &smtpChecker{addr: addr, helo: c.HeloName, timeout: c.Timeout}, nil
}

func (c *smtpChecker) String() string { return "smtp " + c.addr }

func (c *smtpChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	r := Result{At: time.Now()}
	nc, err := dialProbe(ctx, "tcp", c.addr)
	if err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, err)
	}
	defer nc.Close()
	tc := textproto.NewConn(nc)
	step := func(what string, want int) error {
		code, msg, err := tc.ReadResponse(want)
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
	if err := tc.PrintfLine("HELO %s", c.helo); err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, fmt.Errorf("send HELO: %w", err))
	}
	if err := step("HELO", 250); err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, err)
	}
	// Polite, but the verdict is in: a server that drops QUIT is still up.
	_ = tc.PrintfLine("QUIT")
	r.Latency = time.Since(r.At)
	r.OK = true
	r.Message = "SMTP 250"
	return r
}
