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
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"

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
	p4  *ipv4.PacketConn
	p6  *ipv6.PacketConn
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
	c := &Conn{cfg: cfg}
	if cfg.IPv6 {
		pc, err := net.ListenPacket("ip6:112", "::")
		if err != nil {
			return nil, fmt.Errorf("open VRRP IPv6 socket: %w", err)
		}
		c.p6 = ipv6.NewPacketConn(pc)
		if err := c.setup6(pc); err != nil {
			pc.Close()
			return nil, err
		}
		return c, nil
	}
	pc, err := net.ListenPacket("ip4:112", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("open VRRP IPv4 socket: %w", err)
	}
	c.p4 = ipv4.NewPacketConn(pc)
	if err := c.setup4(pc); err != nil {
		pc.Close()
		return nil, err
	}
	return c, nil
}

// bindToDevice restricts the socket to the instance's interface, so adverts
// of the same VRID on another link are never seen.
func bindToDevice(pc net.PacketConn, ifname string) error {
	sconn, ok := pc.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", pc)
	}
	sc, err := sconn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
	}); err != nil {
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

// Close closes the socket; a blocked Read returns.
func (c *Conn) Close() error {
	if c.p6 != nil {
		return c.p6.Close()
	}
	return c.p4.Close()
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
	if c.p6 != nil {
		n, cm, src, err := c.p6.ReadFrom(buf)
		if err != nil {
			return Datagram{}, fmt.Errorf("read VRRP on %s: %w", c.cfg.Interface.Name, err)
		}
		d := Datagram{Payload: buf[:n], Src: addrOf(src)}
		if cm != nil {
			d.HopLimit = cm.HopLimit
			d.Dst, _ = netip.AddrFromSlice(cm.Dst)
		}
		return d, nil
	}
	// An IPv4 raw socket returns the IP header too; ipv4.PacketConn strips
	// it and reports TTL and destination in the control message.
	n, cm, src, err := c.p4.ReadFrom(buf)
	if err != nil {
		return Datagram{}, fmt.Errorf("read VRRP on %s: %w", c.cfg.Interface.Name, err)
	}
	d := Datagram{Payload: buf[:n], Src: addrOf(src)}
	if cm != nil {
		d.HopLimit = cm.TTL
		if a, ok := netip.AddrFromSlice(cm.Dst); ok {
			d.Dst = a.Unmap()
		}
	}
	return d, nil
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
// the destination address.
func (c *Conn) WriteTo(payload []byte, dst netip.Addr) error {
	ifindex := c.cfg.Interface.Index
	if c.p6 != nil {
		cm := &ipv6.ControlMessage{Src: c.cfg.Source.AsSlice(), IfIndex: ifindex, HopLimit: 255}
		if _, err := c.p6.WriteTo(payload, cm, &net.IPAddr{IP: dst.AsSlice(), Zone: c.cfg.Interface.Name}); err != nil {
			return fmt.Errorf("send VRRP to %s on %s: %w", dst, c.cfg.Interface.Name, err)
		}
		return nil
	}
	cm := &ipv4.ControlMessage{Src: c.cfg.Source.AsSlice(), IfIndex: ifindex}
	if _, err := c.p4.WriteTo(payload, cm, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("send VRRP to %s on %s: %w", dst, c.cfg.Interface.Name, err)
	}
	return nil
}
