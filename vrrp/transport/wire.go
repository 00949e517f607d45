package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/rawsock"
)

// sockets is the real wire of a link: a data socket that queues every
// VRRP packet on the link, kept out of Go's poller, a bell socket in the
// poller that tells the reader when to read it, and the send socket.
//
// The bell exists so that a link can be read lazily. A backup needs its
// master's adverts only when its Master_Down_Timer would fire: each
// advert is stepped at its kernel receive time, so reading three of
// them at the deadline resets the timer exactly as reading each as it
// came. The instance's timer drains the link before it counts
// (Endpoint.Drain), so a link whose every endpoint is a backup (lazy,
// Endpoint.SetLazy) need not wake for each advert: its bell's filter
// then passes only adverts of priority 0, a master resigning, which a
// backup must answer within Skew_Time. Any other endpoint (a master, an
// instance starting) makes the link eager, and the bell rings for every
// packet. A socket registered with the poller wakes a thread for every
// packet whether or not a goroutine waits on it, so the data socket
// cannot be the one the reader waits on.
//
// At one backup instance and 100 ms adverts that is one wakeup per
// Master_Down_Interval instead of one per advert: the Go runtime's fixed
// cost per wakeup (the poller, the scheduler, sysmon) was most of the
// backup's CPU, against keepalived's thread that wakes in select(2).
// Measured with BenchmarkScale on the host (docs/benchmarks.md): one
// instance 0.96 -> 0.6 ms/s (17 -> 5 context switches a second); 1,000
// instances on four links 190 -> 59 ms/s, half keepalived's 119.
//
// The bell's packets are cut to one byte by its filter and dropped when
// its small buffer is full: it only rings. The reader empties it before
// it drains the data socket, so a packet that comes in between rings
// again.
type sockets struct {
	ifi *net.Interface
	v6  bool
	tx  *txSocket

	bell   *os.File
	bellRC syscall.RawConn

	// mu is held from recvmsg to the end of each, so that the link's
	// reader and an instance draining the socket (Endpoint.Drain) hand
	// datagrams on in the order the kernel queued them; it guards fd
	// (-1 once closed), buf, oob and seenDrops.
	mu        sync.Mutex
	fd        int
	buf, oob  []byte
	seenDrops uint32

	// modeMu guards lazy and overflowed, and orders the bell's filter
	// changes.
	modeMu     sync.Mutex
	lazy       bool
	overflowed bool

	// drops is what the kernel dropped for a full receive buffer.
	drops  atomic.Uint64
	closed atomic.Bool
	// recheckAfter is how long after an empty ring the data socket is
	// read again (see receive).
	recheckAfter time.Duration
}

// recheckAfter is sockets.recheckAfter's value: short against an advert
// interval, long against the kernel's delivery of one packet.
const recheckAfter = 5 * time.Millisecond

// drainBound is the most datagrams one pass reads before letting go of
// the lock: a flood must not hold an instance's timer for long.
const drainBound = 64

// drainPasses bounds receiveNow. A lazy link is read at most once per
// Master_Down_Interval: 255 instances at 100 ms leave about 1,000 adverts
// waiting, and a flood of 10,000 packets a second 3,600 more; each
// instance's latest advert is what its timer needs.
const drainPasses = 256

// bellBuffer is the bell's receive buffer: the kernel's minimum, a few
// packets of one byte. A full bell drops what comes; it rings all the
// same.
const bellBuffer = 1024

// openWire opens the link's sockets, the bell before the data socket:
// the kernel hands each packet to a protocol's raw sockets newest first
// (raw_hash_sk adds a socket at the head of its list), so the data socket
// holds a packet before the bell rings for it. The other way round, the
// reader woken by the bell could drain the data socket a moment before
// the packet reached it, and then sleep with it unread (found as a test
// that hung on a 2-core host; TestSocketsRing checks the order).
func openWire(ifi *net.Interface, v6 bool) (wire, error) {
	bell, err := openBell(ifi, v6)
	if err != nil {
		return nil, err
	}
	rc, err := bell.SyscallConn()
	if err != nil {
		bell.Close()
		return nil, fmt.Errorf("VRRP bell socket on %s: %w", ifi.Name, err)
	}
	fd, err := openData(ifi, v6)
	if err != nil {
		bell.Close()
		return nil, err
	}
	tx, err := openTX(ifi, v6)
	if err != nil {
		bell.Close()
		unix.Close(fd)
		return nil, err
	}
	return &sockets{ifi: ifi, v6: v6, tx: tx, bell: bell, bellRC: rc, fd: fd,
		buf: make([]byte, readBuf), oob: make([]byte, 256), recheckAfter: recheckAfter}, nil
}

// rawSocket opens a raw VRRP socket of ifi's family, non-blocking.
func rawSocket(v6 bool) (int, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	return unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, Protocol)
}

// openData opens the data socket: bound to ifi, with each datagram's
// receive time, TTL or hop limit, destination and the kernel's drop
// count, and a receive buffer of receiveBuffer.
func openData(ifi *net.Interface, v6 bool) (int, error) {
	fd, err := rawSocket(v6)
	if err != nil {
		return -1, fmt.Errorf("open VRRP socket on %s: %w", ifi.Name, err)
	}
	on := func(level, opt int) func() error {
		return func() error { return unix.SetsockoptInt(fd, level, opt, 1) }
	}
	steps := []setupStep{
		{"bind to " + ifi.Name, func() error { return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name) }},
		{"receive timestamps", on(unix.SOL_SOCKET, unix.SO_TIMESTAMPNS)},
		{"drop counts", on(unix.SOL_SOCKET, unix.SO_RXQ_OVFL)},
		{"receive buffer", func() error { return setReceiveBufferFD(fd) }},
	}
	// An IPv4 raw socket returns the IP header, which holds the TTL and
	// the destination (recvDatagram reads them there): asking the kernel
	// for them again as control messages cost two more copies to user
	// space per packet. IPv6 raw sockets return the payload alone.
	if v6 {
		steps = append(steps, setupStep{"hop limits", on(unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT)},
			setupStep{"destinations", on(unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO)})
	}
	for _, s := range steps {
		if err := s.err(); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("VRRP socket on %s: %s: %w", ifi.Name, s.what, err)
		}
	}
	return fd, nil
}

// openBell opens the bell, eager: its filter is set before it is bound,
// so it never holds a packet the filter did not see.
func openBell(ifi *net.Interface, v6 bool) (*os.File, error) {
	fd, err := rawSocket(v6)
	if err != nil {
		return nil, fmt.Errorf("open VRRP bell socket on %s: %w", ifi.Name, err)
	}
	steps := []setupStep{
		{"filter", func() error { return attachFilter(fd, eagerBell) }},
		{"bind to " + ifi.Name, func() error { return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name) }},
		{"receive buffer", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bellBuffer) }},
	}
	for _, s := range steps {
		if err := s.err(); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("VRRP bell socket on %s: %s: %w", ifi.Name, s.what, err)
		}
	}
	// A non-blocking descriptor goes into Go's poller.
	return os.NewFile(uintptr(fd), "vrrp-bell-"+ifi.Name), nil
}

// The bell's filters, classic BPF. Each keeps one byte of what it
// passes (it only rings).
var (
	eagerBell = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 1}}
	// An IPv4 raw socket's filter sees the IP header: the priority is
	// the third byte after it (RFC 3768 5.3, RFC 5798 5.2), in both
	// versions. A packet too short to hold it fails the load, which
	// drops it.
	lazyBell4 = []unix.SockFilter{
		{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 0},
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_IND, K: 2},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
	}
	// An IPv6 raw socket's filter sees the payload.
	lazyBell6 = []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 2},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
	}
)

func attachFilter(fd int, prog []unix.SockFilter) error {
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
}

// receive hands each datagram on as the bell rings. The poller is
// edge-triggered and forgets an earlier edge before it waits, so each
// pass empties the bell and then reads the data socket until EAGAIN (or
// the bound, and then passes again at once) before it waits again. A
// read deadline in the past (setLazy) wakes it to read what a lazy link
// left in the data socket.
//
// A ring that finds the data socket empty reads it again after
// recheckAfter: openWire has the data socket served first, but that is
// the kernel's order, not its promise, and a datagram missed that way
// would wait for the next one.
func (s *sockets) receive(each func(Datagram)) error {
	for {
		var err error
		rerr := s.bellRC.Read(func(fd uintptr) bool {
			rung := ring(int(fd))
			var more bool
			var n int
			n, more, err = s.drain(each)
			if rung > 0 && n == 0 && !more && err == nil {
				s.bell.SetReadDeadline(time.Now().Add(s.recheckAfter))
			}
			return more || err != nil
		})
		if errors.Is(rerr, os.ErrDeadlineExceeded) {
			// Cleared before the drain: a deadline set after this
			// wakes the next pass, one set before is served here.
			s.bell.SetReadDeadline(time.Time{})
			if _, _, err = s.drain(each); err != nil {
				return err
			}
			continue
		}
		if rerr != nil && s.closed.Load() {
			// The poller's own error says "use of closed file".
			rerr = net.ErrClosed
		}
		if rerr != nil {
			return fmt.Errorf("read VRRP on %s: %w", s.ifi.Name, rerr)
		}
		if err != nil {
			return err
		}
	}
}

// ring empties the bell, and says how many rings it read.
func ring(fd int) int {
	var b [1]byte
	n := 0
	for range 2 * drainBound {
		_, _, errno := rawsock.Recvmsg(fd, b[:], nil, nil)
		switch errno {
		case 0:
			n++
		case unix.EINTR:
		default:
			return n
		}
	}
	return n
}

func (s *sockets) receiveNow(each func(Datagram)) error {
	for range drainPasses {
		_, more, err := s.drain(each)
		if !more || err != nil {
			return err
		}
	}
	return nil
}

// drain reads at most drainBound datagrams waiting in the data socket,
// handing each on; n is how many, more says the bound stopped it.
func (s *sockets) drain(each func(Datagram)) (n int, more bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return 0, false, fmt.Errorf("read VRRP on %s: %w", s.ifi.Name, net.ErrClosed)
	}
	for range drainBound {
		d, c, errno := recvDatagram(s.fd, s.buf, s.oob, s.v6)
		switch errno {
		case 0:
			if c.Dropped > s.seenDrops {
				s.overflow(c.Dropped)
			}
			n++
			each(d)
		case unix.EINTR:
		case unix.EAGAIN:
			return n, false, nil
		default:
			return n, false, fmt.Errorf("read VRRP on %s: %w", s.ifi.Name, errno)
		}
	}
	return n, true, nil
}

// overflow counts the kernel's new drops (dropped is its running count;
// s.mu is held) and makes the link eager for good: it drops only when
// the reader fell behind, and a lazy link must not be the reason.
func (s *sockets) overflow(dropped uint32) {
	s.drops.Add(uint64(dropped - s.seenDrops))
	s.seenDrops = dropped
	s.modeMu.Lock()
	defer s.modeMu.Unlock()
	if !s.overflowed {
		s.overflowed = true
		s.setFilter(false)
	}
}

// setLazy has the bell ring for every packet (false) or only for a
// master's resignation (true). A link that ever overflowed stays eager.
func (s *sockets) setLazy(lazy bool) error {
	s.modeMu.Lock()
	defer s.modeMu.Unlock()
	if s.overflowed {
		lazy = false
	}
	if lazy == s.lazy {
		return nil
	}
	return s.setFilter(lazy)
}

// setFilter sets the bell's filter; modeMu is held. Going eager, it wakes
// the reader for what the data socket queued unrung.
func (s *sockets) setFilter(lazy bool) error {
	prog := eagerBell
	if lazy {
		prog = lazyBell4
		if s.v6 {
			prog = lazyBell6
		}
	}
	var err error
	if cerr := s.bellRC.Control(func(fd uintptr) { err = attachFilter(int(fd), prog) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("VRRP bell socket on %s: filter: %w", s.ifi.Name, err)
	}
	s.lazy = lazy
	if !lazy {
		s.bell.SetReadDeadline(time.Unix(1, 0))
	}
	return nil
}

func (s *sockets) kernelDrops() uint64 { return s.drops.Load() }

// join joins VRRP's multicast group on the interface; leave leaves it.
func (s *sockets) join() error  { return s.membership(true) }
func (s *sockets) leave() error { return s.membership(false) }

func (s *sockets) membership(join bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	switch {
	case s.fd < 0:
		err = net.ErrClosed
	case s.v6:
		opt := unix.IPV6_JOIN_GROUP
		if !join {
			opt = unix.IPV6_LEAVE_GROUP
		}
		err = unix.SetsockoptIPv6Mreq(s.fd, unix.IPPROTO_IPV6, opt,
			&unix.IPv6Mreq{Multiaddr: Group(true).As16(), Interface: uint32(s.ifi.Index)})
	default:
		opt := unix.IP_ADD_MEMBERSHIP
		if !join {
			opt = unix.IP_DROP_MEMBERSHIP
		}
		err = unix.SetsockoptIPMreqn(s.fd, unix.IPPROTO_IP, opt,
			&unix.IPMreqn{Multiaddr: Group(false).As4(), Ifindex: int32(s.ifi.Index)})
	}
	if err != nil {
		what := "join"
		if !join {
			what = "leave"
		}
		return fmt.Errorf("VRRP socket on %s: %s %s: %w", s.ifi.Name, what, Group(s.v6), err)
	}
	return nil
}

func (s *sockets) writeTo(payload, oob []byte, dst netip.Addr) error {
	return s.tx.writeTo(payload, oob, dst)
}

// close closes the sockets; the reader returns once the bell is closed.
func (s *sockets) close() error {
	s.closed.Store(true)
	s.mu.Lock()
	var derr error
	if s.fd >= 0 {
		derr = unix.Close(s.fd)
		s.fd = -1
	}
	s.mu.Unlock()
	if derr != nil {
		derr = fmt.Errorf("close VRRP socket on %s: %w", s.ifi.Name, derr)
	}
	return errors.Join(s.tx.close(), s.bell.Close(), derr)
}

// recvDatagram reads one datagram from fd into buf without waiting:
// EAGAIN when none is there. An IPv4 raw socket returns the IP header
// too: the payload starts after it, and the TTL and destination are read
// from it unless control messages gave them.
func recvDatagram(fd int, buf, oob []byte, v6 bool) (Datagram, rawsock.Control, syscall.Errno) {
	var from unix.RawSockaddrAny
	n, oobn, errno := rawsock.Recvmsg(fd, buf, oob, &from)
	if errno != 0 {
		return Datagram{}, rawsock.Control{}, errno
	}
	c := rawsock.ParseControl(oob[:oobn])
	d := Datagram{Payload: buf[:n], At: c.At, Src: rawsock.Addr(&from), Dst: c.Dst, HopLimit: c.HopLimit}
	if !v6 && n >= 20 && buf[0]>>4 == 4 {
		if hl := int(buf[0]&0x0f) * 4; hl >= 20 && hl <= n {
			d.Payload = buf[hl:n]
			if d.HopLimit == 0 {
				d.HopLimit = int(buf[8])
			}
			if !d.Dst.IsValid() {
				d.Dst = netip.AddrFrom4([4]byte(buf[16:20]))
			}
		}
	}
	return d, c, 0
}

// setReceiveBufferFD raises fd's receive buffer to receiveBuffer: past
// net.core.rmem_max with SO_RCVBUFFORCE (lvsha runs with CAP_NET_ADMIN),
// else as far as SO_RCVBUF may.
func setReceiveBufferFD(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer); err == nil {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, receiveBuffer)
}
