// Package health probes real servers and publishes whether each is up.
//
// A Checker runs one probe: a tcp connect, an http or https request, a dns
// query, an smtp greeting, an icmp echo, a udp datagram or an external
// command, each in its own file. The Engine runs each distinct probe on
// schedule, applies rise/fall hysteresis, and exposes the resulting states
// through Snapshot, Up and a coalescing Updates channel. health knows nothing about the kernel:
// consumers read states and decide what to program.
package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/lvsha/lvsha/conf"
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
		return newExecChecker(vs, rs, c)
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

// withTimeout bounds one probe. conf always sets a positive timeout; a
// zero one, only possible in a Check built by hand, leaves ctx alone rather
// than failing every probe at once.
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

// deadliner is what untilDone needs of a connection.
type deadliner interface{ SetDeadline(time.Time) error }

// untilDone makes every read and write on c fail once ctx is done, so a
// probe blocked on a silent server returns with its context; call stop
// when the connection is no longer used.
func untilDone(ctx context.Context, c deadliner) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
}

// probeConn is a connection whose deadline follows the probe's context.
type probeConn struct {
	net.Conn
	stop func() bool
}

func (c *probeConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// dialProbe connects to addr over network with its reads and writes bound
// by ctx (untilDone). Closing the connection releases the binding.
func dialProbe(ctx context.Context, network, addr string) (net.Conn, error) {
	// No TCP keepalive: the connection lasts one probe, and the option
	// would cost a system call.
	d := net.Dialer{KeepAlive: -1}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &probeConn{Conn: conn, stop: untilDone(ctx, conn)}, nil
}

// sendDatagram dials addr over UDP as dialProbe does and sends payload,
// which may be empty: an empty datagram is still a probe.
func sendDatagram(ctx context.Context, addr string, payload []byte) (net.Conn, error) {
	conn, err := dialProbe(ctx, "udp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(payload); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send to %s: %w", addr, err)
	}
	return conn, nil
}
