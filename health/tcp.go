package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/lvsha/lvsha/conf"
	"golang.org/x/sys/unix"
)

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
	r, wait := c.start(ctx)
	if wait != nil {
		return wait()
	}
	return r
}

// start begins a probe without blocking. When the handshake finished
// within connect (a real server on this host, in a namespace or over a
// veth: the kernel runs the other end's half of it in the same system
// call), it returns the result and a nil wait; else wait blocks until
// the handshake is done, the timeout passes or ctx ends, and returns the
// result. The engine calls start from its scheduler, so such a probe
// costs no goroutine and no hand-off between threads (starter).
func (c *tcpChecker) start(ctx context.Context) (Result, func() Result) {
	at := time.Now()
	fd, done, err := c.begin(ctx)
	if done {
		return c.result(ctx, at, err), nil
	}
	return Result{}, func() Result { return c.result(ctx, at, c.wait(ctx, fd, at)) }
}

// result is the Result of a probe that began at at and ended with err.
func (c *tcpChecker) result(ctx context.Context, at time.Time, err error) Result {
	r := Result{At: at, Latency: time.Since(at)}
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

// begin opens the socket and starts connecting; done reports that the
// probe has its answer (err, nil for success) and fd is closed, else fd
// is connecting and wait must finish it. Asked right after connect, a
// socket whose handshake is done needs none of the runtime poller, whose
// registration (fcntl, epoll_ctl in and out), deadline timer and context
// hook were three of a probe's eight system calls and most of its
// garbage. Across a network the handshake takes a round trip, and this
// costs one system call that answers EAGAIN.
func (c *tcpChecker) begin(ctx context.Context) (fd int, done bool, err error) {
	fd, established, err := c.open(ctx)
	switch {
	case err != nil:
		return -1, true, err
	case established:
		unix.Close(fd)
		return -1, true, nil
	}
	return fd, false, nil
}

// open opens a non-blocking socket to the target and starts connecting
// it; established reports that the handshake finished within connect
// (handshakeDone). On error no socket is left open. The http check
// connects this way too, then speaks over fd.
func (c *tcpChecker) open(ctx context.Context) (fd int, established bool, err error) {
	if err := ctx.Err(); err != nil {
		return -1, false, err
	}
	fd, err = unix.Socket(c.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, false, os.NewSyscallError("socket", err)
	}
	err = unix.Connect(fd, c.sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) && !errors.Is(err, unix.EINTR) {
		unix.Close(fd)
		return -1, false, os.NewSyscallError("connect", err)
	}
	done, err := handshakeDone(fd)
	if err != nil {
		unix.Close(fd)
		return -1, false, err
	}
	return fd, done, nil
}

// wait finishes the connect that begin left in progress on fd, which it
// closes, bounded by the timeout from start and by ctx.
func (c *tcpChecker) wait(ctx context.Context, fd int, start time.Time) error {
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
	return awaitHandshake(ctx, f)
}

// awaitHandshake waits until the connect in progress on f is done and
// returns its error. The caller has bounded f's writes by a deadline that
// ctx's end moves to the past; ctx's error is returned once it is done.
func awaitHandshake(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var connErr error
	err = rc.Write(func(fd uintptr) bool {
		// Asked again first: the poller reports only changes after its
		// registration, so a handshake done in between must be seen here.
		var done bool
		done, connErr = handshakeDone(int(fd))
		return done
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The deadline and the handshake's completion can wake the
			// probe together, and on a busy director the deadline is
			// often seen first: the poller then returns without asking
			// the socket. An established connection is the server's
			// answer, not a timeout (keepalived's scheduler, too, runs a
			// ready socket before its timeout); without this, a CPU-bound
			// director took real servers down (BenchmarkHealthChecks).
			var done bool
			if cerr := rc.Control(func(fd uintptr) { done, connErr = handshakeDone(int(fd)) }); cerr == nil && done {
				return connErr
			}
		}
		return err
	}
	return connErr
}

// handshakeDone reports whether the connect on fd has finished, and its
// error if it failed. An empty send says so in one system call (instead
// of getsockopt SO_ERROR plus getpeername): EAGAIN while connecting, the
// pending error if it failed, success once established (tcp_sendmsg
// waits for the connection first). An established socket is set to
// reset on close instead of sending a FIN: the probe has its answer, and
// an orderly close would leave a TIME_WAIT socket on the director for
// every probe (tens of thousands a minute at scale).
func handshakeDone(fd int) (bool, error) {
	err := unix.Sendto(fd, nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, nil)
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return false, nil
	case err != nil:
		return true, os.NewSyscallError("connect", err)
	}
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	return true, nil
}
