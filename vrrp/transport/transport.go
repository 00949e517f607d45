// Package transport carries VRRP messages (IP protocol 112) on one
// interface: raw IPv4 or IPv6 sockets, multicast (224.0.0.18, ff02::12)
// joined on that interface or unicast to configured peers, TTL / hop limit
// 255 on send and reported on receive so the decoder can enforce RFC 5798
// 5.1.1.3. It knows nothing of the message format: the vrrp package
// decodes and validates what it reads.
package transport

import (
	"errors"
	"fmt"
	"github.com/lvsha/lvsha/rawsock"
	"github.com/lvsha/lvsha/vrrp"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Protocol is VRRP's IP protocol number.
const Protocol = 112

// Group returns VRRP's multicast group of a family (RFC 5798 5.1.1.2,
// 5.1.2.2).
func Group(ipv6 bool) netip.Addr {
	if ipv6 {
		return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x12})
	}
	return netip.AddrFrom4([4]byte{224, 0, 0, 18})
}

// Datagram is one received VRRP message with what its IP header said.
type Datagram struct {
	Payload  []byte
	Src, Dst netip.Addr
	// HopLimit is the IPv4 TTL or IPv6 hop limit it arrived with.
	HopLimit int
	// At is when the kernel received it (SO_TIMESTAMPNS, wall clock); zero
	// if the kernel did not say.
	At time.Time
	// Advert is Payload parsed by a shared link's reader, which checks
	// every datagram before queueing it; nil if nothing parsed it. Shared
	// between the VRID's endpoints: read only.
	Advert *vrrp.Advert
}

// Config describes one VRRP instance's transport.
type Config struct {
	Interface *net.Interface
	IPv6      bool
	// Source is the address adverts are sent from: for IPv4 the
	// interface's primary address, for IPv6 its link-local address, or the
	// configured unicast source.
	Source netip.Addr
	// Peers, when set, switches to unicast: adverts go to each peer, and
	// adverts from any other address are dropped and counted.
	Peers []netip.Addr
	// VRID is the instance's: a Hub hands its endpoint the adverts of
	// that VRID alone. A Conn of its own reads every VRID.
	VRID uint8
}

// Conn is an open transport of its own: a receiving and a sending
// socket for one endpoint. Read and Write may be used from different
// goroutines. A process running many instances shares sockets through a
// Hub instead.
type Conn struct {
	cfg Config
	rx  *rxSocket
	tx  *txSocket
	// oob is the control message every advert goes out with.
	oob []byte
	// NotPeer counts adverts dropped because they came from outside the
	// unicast peer list; Own counts our own adverts looped back.
	NotPeer, Own atomic.Uint64
}

// Listen opens the transport. It must run in the namespace of cfg.Interface.
func Listen(cfg Config) (*Conn, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	rx, err := openRX(cfg.Interface, cfg.IPv6)
	if err != nil {
		return nil, err
	}
	if len(cfg.Peers) == 0 {
		if err := rx.join(); err != nil {
			rx.close()
			return nil, err
		}
	}
	tx, err := openTX(cfg.Interface, cfg.IPv6)
	if err != nil {
		rx.close()
		return nil, err
	}
	return &Conn{cfg: cfg, rx: rx, tx: tx, oob: sendOOB(cfg.Interface, cfg.Source)}, nil
}

func (cfg Config) check() error {
	if cfg.Interface == nil || !cfg.Source.IsValid() {
		return errors.New("vrrp transport: interface and source address are required")
	}
	if cfg.IPv6 != cfg.Source.Is6() {
		return fmt.Errorf("vrrp transport: source %s is not of the instance's family", cfg.Source)
	}
	return nil
}

// Close closes the sockets; a blocked Read returns.
func (c *Conn) Close() error {
	return errors.Join(c.tx.close(), c.rx.close())
}

// Read returns the next VRRP message from a peer. Our own adverts and, in
// unicast mode, adverts from outside the peer list are counted and skipped.
func (c *Conn) Read(buf []byte) (Datagram, error) {
	for {
		d, err := c.rx.read(buf)
		if err != nil {
			return d, err
		}
		switch c.cfg.accept(d.Src) {
		case fromSelf:
			c.Own.Add(1)
		case fromStranger:
			c.NotPeer.Add(1)
		default:
			return d, nil
		}
	}
}

type origin uint8

const (
	fromPeer origin = iota
	fromSelf
	fromStranger
)

// accept classifies an advert's source for the endpoint cfg describes.
func (cfg *Config) accept(src netip.Addr) origin {
	switch {
	case src == cfg.Source:
		return fromSelf
	case len(cfg.Peers) > 0 && !slices.Contains(cfg.Peers, src):
		return fromStranger
	}
	return fromPeer
}

// Destinations are where Write sends: the multicast group, or every peer.
func (c *Conn) Destinations() []netip.Addr { return c.cfg.destinations() }

func (cfg *Config) destinations() []netip.Addr {
	if len(cfg.Peers) > 0 {
		return cfg.Peers
	}
	return []netip.Addr{Group(cfg.IPv6)}
}

// WriteTo sends one encoded message to dst from the configured source.
// The caller encodes per destination, because the VRRPv3 checksum covers
// the destination address. It never blocks: with the socket's buffer full
// (a link that does not drain), the advert is refused with EAGAIN rather
// than holding up the state machine.
func (c *Conn) WriteTo(payload []byte, dst netip.Addr) error {
	return c.tx.writeTo(payload, c.oob, dst)
}

// rxSocket is a raw socket receiving every VRRP message on one interface.
type rxSocket struct {
	ifi *net.Interface
	// p4 or p6 sets the socket up; rc reads it (see read) with the
	// control messages p4 and p6 would drop (the kernel's receive time).
	p4 *ipv4.PacketConn
	p6 *ipv6.PacketConn
	rc syscall.RawConn
	// oob is read's buffer for control messages; read has one caller.
	oob []byte
}

type setupStep struct {
	what string
	err  func() error
}

func openRX(ifi *net.Interface, v6 bool) (*rxSocket, error) {
	r := &rxSocket{ifi: ifi, oob: make([]byte, 256)}
	network, address, family := "ip4:112", "0.0.0.0", "IPv4"
	if v6 {
		network, address, family = "ip6:112", "::", "IPv6"
	}
	pc, err := net.ListenPacket(network, address)
	if err != nil {
		return nil, fmt.Errorf("open VRRP %s socket: %w", family, err)
	}
	if ipc, ok := pc.(*net.IPConn); ok {
		r.rc, err = ipc.SyscallConn()
	} else {
		err = fmt.Errorf("%T is not a raw IP socket", pc)
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("VRRP socket on %s: %w", ifi.Name, err)
	}
	steps := []setupStep{
		{"bind to " + ifi.Name, func() error { return bindToDevice(pc, ifi.Name) }},
		{"receive timestamps", func() error { return setTimestamps(pc) }},
		{"receive buffer", func() error { return setReceiveBuffer(pc) }},
	}
	if v6 {
		r.p6 = ipv6.NewPacketConn(pc)
		steps = append(steps, setupStep{"control messages", func() error {
			return r.p6.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true)
		}})
	} else {
		r.p4 = ipv4.NewPacketConn(pc)
		steps = append(steps, setupStep{"control messages", func() error {
			return r.p4.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true)
		}})
	}
	for _, s := range steps {
		if err := s.err(); err != nil {
			pc.Close()
			return nil, fmt.Errorf("VRRP socket on %s: %s: %w", ifi.Name, s.what, err)
		}
	}
	return r, nil
}

// join joins VRRP's multicast group on the interface.
func (r *rxSocket) join() error {
	var err error
	if r.p6 != nil {
		err = r.p6.JoinGroup(r.ifi, &net.IPAddr{IP: Group(true).AsSlice()})
	} else {
		err = r.p4.JoinGroup(r.ifi, &net.IPAddr{IP: Group(false).AsSlice()})
	}
	if err != nil {
		return fmt.Errorf("VRRP socket on %s: join %s: %w", r.ifi.Name, Group(r.p6 != nil), err)
	}
	return nil
}

func (r *rxSocket) close() error {
	if r.p6 != nil {
		return r.p6.Close()
	}
	return r.p4.Close()
}

// read waits in Go's poller for the socket to be readable, then reads one
// datagram with a raw non-blocking recvmsg(2). Through the runtime's
// ordinary system-call path (ReadMsgIP), each read woke the runtime's
// monitor thread from its deep sleep, in case the call blocked, and the
// monitor then polled on a short timer until it found nothing to do
// again: at 1,000 adverts a second it was 18% of a backup's CPU (perf,
// 100 instances). A call that cannot block needs none of that; see
// rawsock.Sendmsg.
func (r *rxSocket) read(buf []byte) (Datagram, error) {
	var (
		d     Datagram
		errno syscall.Errno
	)
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			d, errno = r.recv(int(fd), buf)
			if errno != unix.EINTR {
				return errno != unix.EAGAIN
			}
		}
	})
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return Datagram{}, fmt.Errorf("read VRRP on %s: %w", r.ifi.Name, err)
	}
	return d, nil
}

// recv reads one datagram from fd into buf without waiting: EAGAIN when
// none is there.
func (r *rxSocket) recv(fd int, buf []byte) (Datagram, syscall.Errno) {
	d, _, errno := recvDatagram(fd, buf, r.oob, r.p6 != nil)
	return d, errno
}

// txSocket is a raw socket only for sending, kept out of Go's poller: the
// poller registers every socket for edge-triggered EPOLLOUT, and each
// packet sent, once freed, would wake a thread for a write readiness
// nobody waits on. On an idle master that is one needless wakeup per
// advert. It drops everything it would receive.
type txSocket struct {
	ifi *net.Interface
	v6  bool
	// mu keeps close from freeing the descriptor, which the kernel may
	// then hand to another file, while a send is under way.
	mu sync.RWMutex
	fd int
}

// openTX opens the send-only socket: bound to the interface, TTL or hop
// limit 255 (RFC 5798 5.1.1.3), multicast out of the interface and not
// looped back.
func openTX(ifi *net.Interface, v6 bool) (*txSocket, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, Protocol)
	if err != nil {
		return nil, fmt.Errorf("open VRRP send socket: %w", err)
	}
	// The kernel hands a copy of every VRRP packet to every raw socket of
	// the protocol; this one never reads, so a filter drops them all.
	dropAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	steps := []setupStep{
		{"drop received packets", func() error {
			return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &dropAll[0]})
		}},
		{"bind to " + ifi.Name, func() error { return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name) }},
	}
	if v6 {
		steps = append(steps, []setupStep{
			{"hop limit 255", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 255) }},
			{"multicast hop limit 255", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255) }},
			{"multicast interface", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index) }},
			{"multicast loopback off", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0) }},
		}...)
	} else {
		steps = append(steps, []setupStep{
			{"TTL 255", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, 255) }},
			{"multicast TTL 255", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 255) }},
			{"multicast interface", func() error {
				return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)})
			}},
			{"multicast loopback off", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0) }},
		}...)
	}
	for _, s := range steps {
		if err := s.err(); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("VRRP send socket on %s: %s: %w", ifi.Name, s.what, err)
		}
	}
	return &txSocket{ifi: ifi, v6: v6, fd: fd}, nil
}

// sendOOB is the control message every advert from src goes out with:
// source address and interface (and hop limit for IPv6). Each endpoint
// has its own, so endpoints of different sources share one socket.
func sendOOB(ifi *net.Interface, src netip.Addr) []byte {
	if src.Is6() {
		return (&ipv6.ControlMessage{Src: src.AsSlice(), IfIndex: ifi.Index, HopLimit: 255}).Marshal()
	}
	return (&ipv4.ControlMessage{Src: src.AsSlice(), IfIndex: ifi.Index}).Marshal()
}

// writeTo sends payload to dst with control message oob; after close it
// fails with EBADF.
func (t *txSocket) writeTo(payload, oob []byte, dst netip.Addr) error {
	t.mu.RLock()
	var err error
	if t.v6 {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dst.As16(), Scope_id: uint32(t.ifi.Index)}
		err = rawsock.Sendmsg(t.fd, payload, oob, unsafe.Pointer(&sa), unix.SizeofSockaddrInet6)
	} else {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.As4()}
		err = rawsock.Sendmsg(t.fd, payload, oob, unsafe.Pointer(&sa), unix.SizeofSockaddrInet4)
	}
	t.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("send VRRP to %s on %s: %w", dst, t.ifi.Name, err)
	}
	return nil
}

func (t *txSocket) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	if err != nil {
		return fmt.Errorf("close VRRP send socket on %s: %w", t.ifi.Name, err)
	}
	return nil
}

// bindToDevice restricts the socket to the instance's interface, so adverts
// of the same VRID on another link are never seen.
func bindToDevice(pc net.PacketConn, ifname string) error {
	return control(pc, func(fd int) error { return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname) })
}

// control runs set on pc's file descriptor.
func control(pc net.PacketConn, set func(fd int) error) error {
	sconn, ok := pc.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", pc)
	}
	sc, err := sconn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) { serr = set(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// setTimestamps asks the kernel for each packet's receive time: a
// backup's Master_Down_Timer runs from the arrival of the master's last
// advert, not from when a busy process got round to reading it.
func setTimestamps(pc net.PacketConn) error {
	return control(pc, func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
}

// receiveBuffer is what a link's receiving socket may queue: every advert
// of every instance on the link arrives on it (1,000 a second at 100
// instances advertising every 100 ms) and each small packet costs about
// 1 KiB of buffer, so the default 208 KiB held only a fifth of a second.
// A reader stalled longer, on a busy host, lost adverts in the kernel and
// backups took over from live masters. 4 MiB holds several seconds at
// that rate: adverts queued are read late, with their receive times, and
// count as received in time.
const receiveBuffer = 4 << 20

// setReceiveBuffer raises pc's receive buffer (setReceiveBufferFD).
func setReceiveBuffer(pc net.PacketConn) error {
	return control(pc, setReceiveBufferFD)
}
