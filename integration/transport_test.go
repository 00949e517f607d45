package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lvsha/lvsha/vrrp/transport"
)

// lan puts n new namespaces on one bridge (in its own namespace), each with
// an IPv4 /24 and an IPv6 /64 address: 10.79.0.(i+1), 2001:db8:79::(i+1).
func lan(t testing.TB, n int) (hosts, ifaces []string) {
	t.Helper()
	sw := newNetns(t, "sw")
	sh(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", sw, "link", "set", "br0", "up")
	for i := 0; i < n; i++ {
		h := newNetns(t, fmt.Sprintf("h%d", i))
		// Addresses usable at once, and kept across a link flap (as a network
		// manager would re-add them): tests take links down on purpose.
		inNS(t, h, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0",
			"net.ipv6.conf.default.keep_addr_on_down=1", "net.ipv6.conf.all.keep_addr_on_down=1")
		veth(t, h, fmt.Sprintf("10.79.0.%d/24", i+1), sw, "")
		sh(t, "ip", "-n", sw, "link", "set", lastVeth(t, sw), "master", "br0")
		ifc := lastVeth(t, h)
		sh(t, "ip", "-n", h, "addr", "add", fmt.Sprintf("2001:db8:79::%d/64", i+1), "dev", ifc, "nodad")
		hosts, ifaces = append(hosts, h), append(ifaces, ifc)
	}
	return hosts, ifaces
}

func openTransport(t *testing.T, ns, ifname string, v6 bool, src netip.Addr, peers []netip.Addr) *transport.Conn {
	t.Helper()
	var c *transport.Conn
	inNetns(t, ns, func() {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			t.Fatal(err)
		}
		if v6 {
			// Multicast adverts go from the link-local address.
			addrs, _ := ifi.Addrs()
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsLinkLocalUnicast() && !src.IsValid() {
					src = p.Addr()
				}
			}
		}
		c, err = transport.Listen(transport.Config{Interface: ifi, IPv6: v6, Source: src, Peers: peers})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// readWithin reads one datagram or fails after d.
func readWithin(t *testing.T, c *transport.Conn, d time.Duration) transport.Datagram {
	t.Helper()
	type res struct {
		d   transport.Datagram
		err error
	}
	ch := make(chan res, 1)
	go func() {
		buf := make([]byte, 1500)
		dg, err := c.Read(buf)
		dg.Payload = bytes.Clone(dg.Payload)
		ch <- res{dg, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.d
	case <-time.After(d):
		t.Fatalf("no VRRP datagram within %v", d)
	}
	return transport.Datagram{}
}

// TestVRRPTransport sends and receives protocol-112 datagrams between
// namespaces on a bridge: multicast on IPv4 and IPv6 with TTL/hop limit 255,
// unicast with a peer list that drops and counts a stranger, and a real
// keepalived's adverts received by lvsha's socket.
func TestVRRPTransport(t *testing.T) {
	hosts, ifs := lan(t, 3)
	payload := []byte{0x31, 7, 100, 1, 0, 100, 0, 0, 10, 79, 0, 100}
	for _, tc := range []struct {
		name string
		v6   bool
		src  netip.Addr
	}{
		{"ipv4 multicast", false, netip.MustParseAddr("10.79.0.1")},
		{"ipv6 multicast", true, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := openTransport(t, hosts[0], ifs[0], tc.v6, tc.src, nil)
			b := openTransport(t, hosts[1], ifs[1], tc.v6, func() netip.Addr {
				if tc.v6 {
					return netip.Addr{}
				}
				return netip.MustParseAddr("10.79.0.2")
			}(), nil)
			time.Sleep(200 * time.Millisecond) // group membership settles
			sent := time.Now()
			if err := a.WriteTo(payload, transport.Group(tc.v6)); err != nil {
				t.Fatal(err)
			}
			// Read late: the datagram must carry the kernel's receive
			// time, not the time it was read.
			time.Sleep(300 * time.Millisecond)
			d := readWithin(t, b, 5*time.Second)
			if lag := d.At.Sub(sent); d.At.IsZero() || lag < -time.Millisecond || lag > 150*time.Millisecond {
				t.Errorf("receive time %v is %v after the send; want the kernel's, within 150 ms of it (read 300 ms later)", d.At, lag)
			}
			if !bytes.Equal(d.Payload, payload) || d.HopLimit != 255 || d.Dst != transport.Group(tc.v6) {
				t.Errorf("received %x from %s to %s hop limit %d; want %x to the group with 255", d.Payload, d.Src, d.Dst, d.HopLimit, payload)
			}
			if tc.v6 && !d.Src.IsLinkLocalUnicast() || !tc.v6 && d.Src != tc.src {
				t.Errorf("source %s, want the sender's (link-local for IPv6)", d.Src)
			}
		})
	}

	t.Run("ipv4 unicast peers", func(t *testing.T) {
		a1, a2, a3 := netip.MustParseAddr("10.79.0.1"), netip.MustParseAddr("10.79.0.2"), netip.MustParseAddr("10.79.0.3")
		a := openTransport(t, hosts[0], ifs[0], false, a1, []netip.Addr{a2})
		b := openTransport(t, hosts[1], ifs[1], false, a2, []netip.Addr{a1})
		stranger := openTransport(t, hosts[2], ifs[2], false, a3, []netip.Addr{a2})
		if err := stranger.WriteTo(payload, a2); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if err := a.WriteTo(payload, a2); err != nil {
			t.Fatal(err)
		}
		d := readWithin(t, b, 5*time.Second)
		if d.Src != a1 || d.Dst != a2 || d.HopLimit != 255 {
			t.Errorf("got a datagram from %s to %s hop %d; want the peer %s to %s, 255", d.Src, d.Dst, d.HopLimit, a1, a2)
		}
		if n := b.NotPeer.Load(); n != 1 {
			t.Errorf("datagrams dropped as not from a peer: %d, want 1 (the stranger's)", n)
		}
	})

	t.Run("keepalived adverts", func(t *testing.T) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "k.conf")
		os.WriteFile(cfg, []byte(`vrrp_instance VI_1 {
  state MASTER
  interface `+ifs[2]+`
  version 3
  virtual_router_id 61
  priority 150
  advert_int 0.1
  virtual_ipaddress {
    10.79.0.100/24
  }
}
`), 0o644)
		b := openTransport(t, hosts[1], ifs[1], false, netip.MustParseAddr("10.79.0.2"), nil)
		startIn(t, hosts[2], nil, "keepalived", "--dont-fork", "--vrrp", "-f", cfg,
			"-p", filepath.Join(dir, "p"), "-r", filepath.Join(dir, "r"))
		d := readWithin(t, b, 10*time.Second)
		if d.Src != netip.MustParseAddr("10.79.0.3") || d.HopLimit != 255 || len(d.Payload) != 12 ||
			d.Payload[0] != 0x31 || d.Payload[1] != 61 || d.Payload[2] != 150 {
			t.Errorf("keepalived advert as read: src %s hop %d payload %x; want v3 type 1, vrid 61, prio 150 from 10.79.0.3", d.Src, d.HopLimit, d.Payload)
		}
	})
}
