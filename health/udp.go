package health

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// udpChecker sends one datagram, as keepalived's UDP_CHECK does. Without
// a required reply the server passes unless an ICMP error (port or host
// unreachable) comes back within the timeout; with one, a reply must come
// and start with the expected bytes.
type udpChecker struct {
	addr         string
	payload      []byte
	requireReply bool
	reply        []byte
	timeout      time.Duration
}

func newUDPChecker(rs netip.AddrPort, c *conf.Check) (*udpChecker, error) {
	addr, err := probeAddr(rs, c)
	if err != nil {
		return nil, err
	}
	payload, err := hex.DecodeString(c.PayloadHex)
	if err != nil {
		return nil, fmt.Errorf("payload_hex: %w", err)
	}
	reply, err := hex.DecodeString(c.ReplyHex)
	if err != nil {
		return nil, fmt.Errorf("reply_hex: %w", err)
	}
	return &udpChecker{addr: addr, payload: payload, requireReply: c.RequireReply || len(reply) > 0, reply: reply, timeout: c.Timeout}, nil
}

func (c *udpChecker) String() string { return "udp " + c.addr }

func (c *udpChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	r := Result{At: time.Now()}
	conn, err := sendDatagram(ctx, c.addr, c.payload)
	if err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, err)
	}
	defer conn.Close()
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	r.Latency = time.Since(r.At)
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.requireReply:
		// Silence is all a UDP service owes a probe it does not understand.
		r.OK, r.Message = true, "no ICMP error"
		return r
	case err != nil && ctx.Err() != nil:
		return failure(r, ctx, c.timeout, fmt.Errorf("no reply: %w", ctx.Err()))
	case err != nil:
		// ECONNREFUSED and friends: the kernel passed on an ICMP error.
		return failure(r, ctx, c.timeout, err)
	case !bytes.HasPrefix(buf[:n], c.reply):
		return failure(r, ctx, c.timeout, withCause(CauseBody, fmt.Errorf("reply %x does not start with %x", buf[:min(n, 32)], c.reply)))
	}
	r.OK, r.Message = true, fmt.Sprintf("reply of %d bytes", n)
	return r
}
