// Package transport carries BFD control packets for single-hop sessions
// (RFC 5881): UDP to port 3784 from a source port in 49152-65535, with
// TTL / hop limit 255 on send and required on receive, so a packet from
// off the link (whose TTL a router decremented) is refused (RFC 5881 5,
// the GTSM check of RFC 5082). It knows nothing of the packet format:
// package bfd decodes and validates what it reads.
package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/rawsock"
)

// ControlPort is the single-hop control packets' destination port
// (RFC 5881 4).
const ControlPort = 3784

// Source ports are from this range (RFC 5881 4).
const (
	SourcePortMin = 49152
	SourcePortMax = 65535
)

// HopLimit is the TTL or hop limit every packet is sent with and must
// arrive with (RFC 5881 5).
const HopLimit = 255

// Config is one local end: the link and the address on it.
type Config struct {
	// Interface is the link the sessions run over; the sockets are bound
	// to it, so a packet arriving on another link is never seen.
	Interface *net.Interface
	// Local is the address to receive on and send from. An IPv6
	// link-local address is scoped to Interface.
	Local netip.Addr
}

func (c Config) check() error {
	if c.Interface == nil || !c.Local.IsValid() || c.Local.Is4In6() {
		return errors.New("bfd transport: an interface and a plain IPv4 or IPv6 local address are required")
	}
	return nil
}

func (c Config) network() string {
	if c.Local.Is4() {
		return "udp4"
	}
	return "udp6"
}

// udpAddr is ap as a UDP address, link-local ones scoped to the interface.
func (c Config) udpAddr(ap netip.AddrPort) *net.UDPAddr {
	a := &net.UDPAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
	if ap.Addr().Is6() && ap.Addr().IsLinkLocalUnicast() {
		a.Zone = c.Interface.Name
	}
	return a
}

// listen binds a UDP socket to the interface (before bind, so that the
// bind itself is scoped) and to addr.
func (c Config) listen(addr netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, c.Interface.Name)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), c.network(), c.udpAddr(addr).String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// receiveBuffer is the receiving socket's SO_RCVBUF. Every session of a
// local end and whatever else reaches port 3784 (a flood of invalid
// packets, forged peers) share that socket, and a reader that falls
// behind, on a loaded host or under such a flood, lost the real peers'
// packets in the kernel once the queue was full: the default
// (net.core.rmem_default, 208 KiB on most hosts, and whatever a host
// tuned it to) held 256 control packets on lo. The kernel doubles what
// is set, for its bookkeeping: 256 KiB hold about 600 (measured on lo),
// six seconds of one session at 10 ms, or 60 ms of TestBFDFlood's
// 10,000 invalid packets a second. Modest on purpose: a packet queued
// behind a long flood arrives late anyway, and the runner takes what is
// queued before it lets a Detection Time run out.
const receiveBuffer = 256 << 10

// setReceiveBuffer sets the socket's receive buffer to receiveBuffer:
// past net.core.rmem_max with SO_RCVBUFFORCE (lvsha runs with
// CAP_NET_ADMIN), else as far as SO_RCVBUF may, as VRRP's link sockets
// do (vrrp/transport).
func setReceiveBuffer(uc *net.UDPConn) error {
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, receiveBuffer)
		}
	})
	return errors.Join(err, serr)
}

// Datagram is one received control packet and what its IP header said.
type Datagram struct {
	Payload []byte
	Src     netip.AddrPort
	Dst     netip.Addr
	// HopLimit is the TTL or hop limit it arrived with: always 255 from
	// Read.
	HopLimit int
}

// Conn receives control packets on Config.Local, port 3784.
type Conn struct {
	cfg Config
	uc  *net.UDPConn
	rc  syscall.RawConn
	oob []byte // the control messages of the last read
	p4  *ipv4.PacketConn
	p6  *ipv6.PacketConn
	// BadHopLimit counts packets dropped for a TTL or hop limit other
	// than 255 (or none reported).
	BadHopLimit atomic.Uint64
}

// Listen opens the receiving socket. It must run in the network
// namespace of cfg.Interface.
func Listen(cfg Config) (*Conn, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	uc, err := cfg.listen(netip.AddrPortFrom(cfg.Local, ControlPort))
	if err != nil {
		return nil, fmt.Errorf("bfd: listen on %s port %d on %s: %w", cfg.Local, ControlPort, cfg.Interface.Name, err)
	}
	if err := setReceiveBuffer(uc); err != nil {
		uc.Close()
		return nil, fmt.Errorf("bfd: receive buffer on %s: %w", cfg.Interface.Name, err)
	}
	c := &Conn{cfg: cfg, uc: uc}
	if cfg.Local.Is4() {
		c.p4 = ipv4.NewPacketConn(uc)
		err = c.p4.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst, true)
	} else {
		c.p6 = ipv6.NewPacketConn(uc)
		err = c.p6.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst, true)
	}
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("bfd: ask for the TTL of received packets on %s: %w", cfg.Interface.Name, err)
	}
	if c.rc, err = uc.SyscallConn(); err != nil {
		uc.Close()
		return nil, fmt.Errorf("bfd: listen on %s: %w", cfg.Interface.Name, err)
	}
	c.oob = make([]byte, 128) // TTL or hop limit and packet info, with room
	return c, nil
}

// Read returns the next packet that arrived with TTL or hop limit 255;
// others are counted in BadHopLimit and skipped. buf must hold a packet
// (64 bytes are plenty: lvsha reads no authentication section).
func (c *Conn) Read(buf []byte) (Datagram, error) {
	for {
		d, err := c.read(buf)
		if err != nil {
			return Datagram{}, fmt.Errorf("bfd: read on %s: %w", c.cfg.Interface.Name, err)
		}
		if d.HopLimit != HopLimit {
			c.BadHopLimit.Add(1)
			continue
		}
		return d, nil
	}
}

// read reads one datagram with a raw, non-blocking recvmsg, waiting in
// the poller: like the sends (Sender.WriteTo), a hundred reads a second
// through the net package's system-call path woke the runtime's monitor
// thread and handed the P between threads.
func (c *Conn) read(buf []byte) (Datagram, error) {
	var (
		n, oobn int
		from    unix.RawSockaddrAny
		errno   syscall.Errno
	)
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, errno = rawsock.Recvmsg(int(fd), buf, c.oob, &from)
			if errno != unix.EINTR {
				return errno != unix.EAGAIN
			}
		}
	})
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return Datagram{}, err
	}
	ctl := rawsock.ParseControl(c.oob[:oobn])
	return Datagram{Payload: buf[:n], Src: rawsock.AddrPort(&from), Dst: ctl.Dst, HopLimit: ctl.HopLimit}, nil
}

// Close closes the socket; a blocked Read returns.
func (c *Conn) Close() error { return c.uc.Close() }

// Pending reports whether a datagram waits in the socket's receive
// queue (SIOCINQ), not yet read.
func (c *Conn) Pending() bool {
	rc, err := c.uc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}

// Sender sends one session's packets: RFC 5881 4 wants one source port
// per session, the same for its whole life, so each session has a socket.
type Sender struct {
	cfg Config
	uc  *net.UDPConn
	rc  syscall.RawConn
}

// OpenSender binds a sending socket to Config.Local and a free source
// port from 49152-65535, starting at a random one so that sessions of
// successive runs do not reuse ports, and sets TTL / hop limit 255.
func OpenSender(cfg Config) (*Sender, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	const span = SourcePortMax - SourcePortMin + 1
	start := rand.IntN(span)
	var lastErr error
	// A few hundred tries: a port in use is rare, and a host short of
	// them should fail rather than scan all sixteen thousand.
	for i := range 256 {
		port := uint16(SourcePortMin + (start+i)%span)
		uc, err := cfg.listen(netip.AddrPortFrom(cfg.Local, port))
		if errors.Is(err, unix.EADDRINUSE) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bfd: send socket on %s from %s: %w", cfg.Interface.Name, cfg.Local, err)
		}
		if cfg.Local.Is4() {
			err = ipv4.NewConn(uc).SetTTL(HopLimit)
		} else {
			err = ipv6.NewConn(uc).SetHopLimit(HopLimit)
		}
		if err != nil {
			uc.Close()
			return nil, fmt.Errorf("bfd: send socket on %s: TTL %d: %w", cfg.Interface.Name, HopLimit, err)
		}
		rc, err := uc.SyscallConn()
		if err != nil {
			uc.Close()
			return nil, fmt.Errorf("bfd: send socket on %s: %w", cfg.Interface.Name, err)
		}
		return &Sender{cfg: cfg, uc: uc, rc: rc}, nil
	}
	return nil, fmt.Errorf("bfd: no free source port on %s from %s: %w", cfg.Interface.Name, cfg.Local, lastErr)
}

// Port is the sender's source port.
func (s *Sender) Port() uint16 { return s.uc.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// WriteTo sends payload to peer's control port.
//
// The send is a raw, non-blocking system call: through the net package,
// each of the hundred sends a second went through the scheduler's
// system-call path, where a send that took longer than the runtime's
// monitor thread's tick lost its P and another thread was woken to take
// it; an idle daemon with one session at 10 ms spent a fifth of its CPU
// in those wake-ups. VRRP's adverts are sent the same way (package
// rawsock). A full socket buffer waits in the poller.
func (s *Sender) WriteTo(payload []byte, peer netip.Addr) error {
	var (
		sa4   unix.RawSockaddrInet4
		sa6   unix.RawSockaddrInet6
		sa    unsafe.Pointer
		salen uint32
	)
	if peer.Is4() {
		sa4.Family, sa4.Addr = unix.AF_INET, peer.As4()
		putPort((*[2]byte)(unsafe.Pointer(&sa4.Port)), ControlPort)
		sa, salen = unsafe.Pointer(&sa4), unix.SizeofSockaddrInet4
	} else {
		sa6.Family, sa6.Addr = unix.AF_INET6, peer.As16()
		putPort((*[2]byte)(unsafe.Pointer(&sa6.Port)), ControlPort)
		if peer.IsLinkLocalUnicast() {
			sa6.Scope_id = uint32(s.cfg.Interface.Index)
		}
		sa, salen = unsafe.Pointer(&sa6), unix.SizeofSockaddrInet6
	}
	var werr error
	err := s.rc.Write(func(fd uintptr) bool {
		werr = rawsock.Sendmsg(int(fd), payload, nil, sa, salen)
		return !errors.Is(werr, unix.EAGAIN)
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("bfd: send to %s on %s: %w", peer, s.cfg.Interface.Name, err)
	}
	return nil
}

// putPort writes port in network byte order.
func putPort(b *[2]byte, port uint16) { b[0], b[1] = byte(port>>8), byte(port) }

// Close closes the socket.
func (s *Sender) Close() error { return s.uc.Close() }
