// Package transport carries VRRP messages (IP protocol 112) on one
// interface: raw IPv4 or IPv6 sockets, multicast (224.0.0.18, ff02::12)
// joined on that interface or unicast to configured peers, TTL / hop limit
// 255 on send and reported on receive so the decoder can enforce RFC 5798
// 5.1.1.3. It knows nothing of the message format: the vrrp package
// decodes and validates what it reads.
package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
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
}

// Conn is an open transport. Read and Write may be used from different
// goroutines.
type Conn struct {
	cfg Config
	// p4 or p6 sets up the receiving socket; ipc reads it, through Go's
	// poller, with the control messages p4 and p6 would drop (the
	// kernel's receive time).
	p4  *ipv4.PacketConn
	p6  *ipv6.PacketConn
	ipc *net.IPConn
	// rxOOB is Read's buffer for control messages; Read has one caller.
	rxOOB []byte
	// send is a second raw socket, only for sending and kept out of Go's
	// poller: the poller registers every socket for edge-triggered
	// EPOLLOUT, and each packet sent, once freed, would wake a thread for
	// a write readiness nobody waits on. On an idle master that is one
	// needless wakeup per advert. It drops everything it would receive.
	send int
	// oob is the control message every advert goes out with: source
	// address and interface (and hop limit for IPv6).
	oob []byte
	// NotPeer counts adverts dropped because they came from outside the
	// unicast peer list; Own counts our own adverts looped back.
	NotPeer, Own atomic.Uint64
}

// Listen opens the transport. It must run in the namespace of cfg.Interface.
func Listen(cfg Config) (*Conn, error) {
	if cfg.Interface == nil || !cfg.Source.IsValid() {
		return nil, errors.New("vrrp transport: interface and source address are required")
	}
	if cfg.IPv6 != cfg.Source.Is6() {
		return nil, fmt.Errorf("vrrp transport: source %s is not of the instance's family", cfg.Source)
	}
	c := &Conn{cfg: cfg, send: -1, rxOOB: make([]byte, 256)}
	if cfg.IPv6 {
		pc, err := net.ListenPacket("ip6:112", "::")
		if err != nil {
			return nil, fmt.Errorf("open VRRP IPv6 socket: %w", err)
		}
		c.p6 = ipv6.NewPacketConn(pc)
		c.ipc, _ = pc.(*net.IPConn)
		if err := c.setup6(pc); err != nil {
			pc.Close()
			return nil, err
		}
	} else {
		pc, err := net.ListenPacket("ip4:112", "0.0.0.0")
		if err != nil {
			return nil, fmt.Errorf("open VRRP IPv4 socket: %w", err)
		}
		c.p4 = ipv4.NewPacketConn(pc)
		c.ipc, _ = pc.(*net.IPConn)
		if err := c.setup4(pc); err != nil {
			pc.Close()
			return nil, err
		}
	}
	if err := c.openSender(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// openSender opens the send-only socket: bound to the interface, TTL or
// hop limit 255 (RFC 5798 5.1.1.3), multicast out of the interface and not
// looped back.
func (c *Conn) openSender() error {
	ifi := c.cfg.Interface
	family := unix.AF_INET
	if c.cfg.IPv6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, Protocol)
	if err != nil {
		return fmt.Errorf("open VRRP send socket: %w", err)
	}
	c.send = fd
	// The kernel hands a copy of every VRRP packet to every raw socket of
	// the protocol; this one never reads, so a filter drops them all.
	dropAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	steps := []struct {
		what string
		err  func() error
	}{
		{"drop received packets", func() error {
			return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &dropAll[0]})
		}},
		{"bind to " + ifi.Name, func() error { return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name) }},
	}
	if c.cfg.IPv6 {
		steps = append(steps, []struct {
			what string
			err  func() error
		}{
			{"hop limit 255", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 255) }},
			{"multicast hop limit 255", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255) }},
			{"multicast interface", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index) }},
			{"multicast loopback off", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0) }},
		}...)
		c.oob = (&ipv6.ControlMessage{Src: c.cfg.Source.AsSlice(), IfIndex: ifi.Index, HopLimit: 255}).Marshal()
	} else {
		steps = append(steps, []struct {
			what string
			err  func() error
		}{
			{"TTL 255", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, 255) }},
			{"multicast TTL 255", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 255) }},
			{"multicast interface", func() error {
				return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)})
			}},
			{"multicast loopback off", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0) }},
		}...)
		c.oob = (&ipv4.ControlMessage{Src: c.cfg.Source.AsSlice(), IfIndex: ifi.Index}).Marshal()
	}
	for _, s := range steps {
		if err := s.err(); err != nil {
			return fmt.Errorf("VRRP send socket on %s: %s: %w", ifi.Name, s.what, err)
		}
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

func (c *Conn) setup4(pc net.PacketConn) error {
	ifi := c.cfg.Interface
	steps := []struct {
		what string
		err  func() error
	}{
		{"bind to " + ifi.Name, func() error { return bindToDevice(pc, ifi.Name) }},
		{"control messages", func() error { return c.p4.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true) }},
		{"receive timestamps", func() error { return setTimestamps(pc) }},
		{"TTL 255", func() error { return c.p4.SetTTL(255) }},
		{"multicast TTL 255", func() error { return c.p4.SetMulticastTTL(255) }},
		{"multicast interface", func() error { return c.p4.SetMulticastInterface(ifi) }},
		{"multicast loopback off", func() error { return c.p4.SetMulticastLoopback(false) }},
	}
	if len(c.cfg.Peers) == 0 {
		steps = append(steps, struct {
			what string
			err  func() error
		}{"join " + Group(false).String(), func() error { return c.p4.JoinGroup(ifi, &net.IPAddr{IP: Group(false).AsSlice()}) }})
	}
	for _, s := range steps {
		if err := s.err(); err != nil {
			return fmt.Errorf("VRRP socket on %s: %s: %w", ifi.Name, s.what, err)
		}
	}
	return nil
}

func (c *Conn) setup6(pc net.PacketConn) error {
	ifi := c.cfg.Interface
	steps := []struct {
		what string
		err  func() error
	}{
		{"bind to " + ifi.Name, func() error { return bindToDevice(pc, ifi.Name) }},
		{"control messages", func() error {
			return c.p6.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true)
		}},
		{"receive timestamps", func() error { return setTimestamps(pc) }},
		{"hop limit 255", func() error { return c.p6.SetHopLimit(255) }},
		{"multicast hop limit 255", func() error { return c.p6.SetMulticastHopLimit(255) }},
		{"multicast interface", func() error { return c.p6.SetMulticastInterface(ifi) }},
		{"multicast loopback off", func() error { return c.p6.SetMulticastLoopback(false) }},
	}
	if len(c.cfg.Peers) == 0 {
		steps = append(steps, struct {
			what string
			err  func() error
		}{"join " + Group(true).String(), func() error { return c.p6.JoinGroup(ifi, &net.IPAddr{IP: Group(true).AsSlice()}) }})
	}
	for _, s := range steps {
		if err := s.err(); err != nil {
			return fmt.Errorf("VRRP socket on %s: %s: %w", ifi.Name, s.what, err)
		}
	}
	return nil
}

// Close closes the sockets; a blocked Read returns.
func (c *Conn) Close() error {
	var errs []error
	if c.send >= 0 {
		errs = append(errs, unix.Close(c.send))
		c.send = -1
	}
	if c.p6 != nil {
		errs = append(errs, c.p6.Close())
	}
	if c.p4 != nil {
		errs = append(errs, c.p4.Close())
	}
	return errors.Join(errs...)
}

// Read returns the next VRRP message from a peer. Our own adverts and, in
// unicast mode, adverts from outside the peer list are counted and skipped.
func (c *Conn) Read(buf []byte) (Datagram, error) {
	for {
		d, err := c.read(buf)
		if err != nil {
			return d, err
		}
		switch {
		case d.Src == c.cfg.Source:
			c.Own.Add(1)
		case len(c.cfg.Peers) > 0 && !slices.Contains(c.cfg.Peers, d.Src):
			c.NotPeer.Add(1)
		default:
			return d, nil
		}
	}
}

func (c *Conn) read(buf []byte) (Datagram, error) {
	if c.ipc == nil {
		return Datagram{}, errors.New("read VRRP: not a raw IP socket")
	}
	n, oobn, _, src, err := c.ipc.ReadMsgIP(buf, c.rxOOB)
	if err != nil {
		return Datagram{}, fmt.Errorf("read VRRP on %s: %w", c.cfg.Interface.Name, err)
	}
	oob := c.rxOOB[:oobn]
	d := Datagram{Payload: buf[:n], At: ReceiveTime(oob)}
	if src != nil {
		d.Src = addrOf(src)
	}
	if c.p6 != nil {
		var cm ipv6.ControlMessage
		if cm.Parse(oob) == nil {
			d.HopLimit = cm.HopLimit
			d.Dst, _ = netip.AddrFromSlice(cm.Dst)
		}
		return d, nil
	}
	// An IPv4 raw socket returns the IP header too; its TTL and
	// destination come in the control messages.
	if n >= 20 && buf[0]>>4 == 4 {
		if hl := int(buf[0]&0x0f) * 4; hl >= 20 && hl <= n {
			d.Payload = buf[hl:n]
		}
	}
	var cm ipv4.ControlMessage
	if cm.Parse(oob) == nil {
		d.HopLimit = cm.TTL
		if a, ok := netip.AddrFromSlice(cm.Dst); ok {
			d.Dst = a.Unmap()
		}
	}
	return d, nil
}

// setTimestamps asks the kernel for each packet's receive time: a
// backup's Master_Down_Timer runs from the arrival of the master's last
// advert, not from when a busy process got round to reading it.
func setTimestamps(pc net.PacketConn) error {
	return control(pc, func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
}

// ReceiveTime is the kernel's receive time (SO_TIMESTAMPNS, wall clock) in
// a message's control data oob, or zero if it has none.
func ReceiveTime(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}
	}
	for _, msg := range msgs {
		if msg.Header.Level == unix.SOL_SOCKET && msg.Header.Type == unix.SCM_TIMESTAMPNS && len(msg.Data) >= 16 {
			// struct timespec: two 64-bit words on 64-bit Linux.
			return time.Unix(int64(binary.NativeEndian.Uint64(msg.Data[0:8])), int64(binary.NativeEndian.Uint64(msg.Data[8:16])))
		}
	}
	return time.Time{}
}

func addrOf(a net.Addr) netip.Addr {
	if ip, ok := a.(*net.IPAddr); ok {
		if x, ok := netip.AddrFromSlice(ip.IP); ok {
			return x.Unmap()
		}
	}
	return netip.Addr{}
}

// Destinations are where Write sends: the multicast group, or every peer.
func (c *Conn) Destinations() []netip.Addr {
	if len(c.cfg.Peers) > 0 {
		return c.cfg.Peers
	}
	return []netip.Addr{Group(c.cfg.IPv6)}
}

// WriteTo sends one encoded message to dst from the configured source.
// The caller encodes per destination, because the VRRPv3 checksum covers
// the destination address. It never blocks: with the socket's buffer full
// (a link that does not drain), the advert is refused with EAGAIN rather
// than holding up the state machine.
func (c *Conn) WriteTo(payload []byte, dst netip.Addr) error {
	var err error
	if c.cfg.IPv6 {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dst.As16(), Scope_id: uint32(c.cfg.Interface.Index)}
		err = rawSendmsg(c.send, payload, c.oob, unsafe.Pointer(&sa), unix.SizeofSockaddrInet6)
	} else {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.As4()}
		err = rawSendmsg(c.send, payload, c.oob, unsafe.Pointer(&sa), unix.SizeofSockaddrInet4)
	}
	if err != nil {
		return fmt.Errorf("send VRRP to %s on %s: %w", dst, c.cfg.Interface.Name, err)
	}
	return nil
}

// rawSendmsg is a non-blocking sendmsg(2) made as a raw system call. The
// runtime's ordinary system-call path wakes its monitor thread from deep
// sleep on every call, in case the call blocks; at one advert per 100 ms
// that wakeup and the thread handoffs after it cost more than the send
// (measured: 8 context switches per advert instead of 5 in a minimal
// program). MSG_DONTWAIT means the call cannot block, which is what a raw
// system call requires.
func rawSendmsg(fd int, p, oob []byte, to unsafe.Pointer, tolen uint32) error {
	if len(p) == 0 {
		return errors.New("empty message")
	}
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	msg := unix.Msghdr{Name: (*byte)(to), Namelen: tolen, Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	_, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
	if errno != 0 {
		return errno
	}
	return nil
}
