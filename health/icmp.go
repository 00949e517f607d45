package health

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/lvsha/lvsha/conf"
)

// icmpChecker sends one echo request and passes on the matching echo
// reply, as keepalived's PING_CHECK does. It uses a raw socket (lvsha runs
// with the privileges IPVS needs anyway), so it needs no ping_group_range.
type icmpChecker struct {
	addr    netip.Addr
	timeout time.Duration
}

func newICMPChecker(rs netip.AddrPort, c *conf.Check) (*icmpChecker, error) {
	a := rs.Addr()
	if c.ConnectAddress.IsValid() {
		a = c.ConnectAddress
	}
	if !a.IsValid() {
		return nil, fmt.Errorf("no address to ping")
	}
	return &icmpChecker{addr: a.Unmap(), timeout: c.Timeout}, nil
}

func (c *icmpChecker) String() string { return "icmp " + c.addr.String() }

func (c *icmpChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	r := Result{At: time.Now()}
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if c.addr.Is6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	conn, err := icmp.ListenPacket(network, laddr)
	if err != nil {
		return failure(r, ctx, c.timeout, fmt.Errorf("open ICMP socket: %w", err))
	}
	defer conn.Close()
	defer untilDone(ctx, conn)()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return failure(r, ctx, c.timeout, fmt.Errorf("echo id: %w", err))
	}
	id, seq := int(binary.BigEndian.Uint16(b[:2])), int(binary.BigEndian.Uint16(b[2:]))
	msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("lvsha")}}
	wb, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	if err != nil {
		return failure(r, ctx, c.timeout, fmt.Errorf("build echo: %w", err))
	}
	dst := &net.IPAddr{IP: c.addr.AsSlice()}
	if _, err := conn.WriteTo(wb, dst); err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, fmt.Errorf("send echo: %w", err))
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			r.Latency = time.Since(r.At)
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return failure(r, ctx, c.timeout, fmt.Errorf("no echo reply: %w", err))
		}
		// A raw socket sees every ICMP message of the host: keep only the
		// reply to this request.
		ip, ok := from.(*net.IPAddr)
		if !ok || !ip.IP.Equal(dst.IP) {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); !ok || e.ID != id || e.Seq != seq {
			continue
		}
		r.Latency = time.Since(r.At)
		r.OK, r.Message = true, "echo reply"
		return r
	}
}
