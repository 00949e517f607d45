package transport

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// TestLoopback sends over lo on IPv4 and IPv6: a Sender's packets arrive
// with hop limit 255 from a port in 49152-65535; a packet sent with
// another TTL is counted and dropped.
func TestLoopback(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"127.0.0.1", "::1"} {
		t.Run(addr, func(t *testing.T) {
			cfg := Config{Interface: lo, Local: netip.MustParseAddr(addr)}
			c, err := Listen(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := OpenSender(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if p := s.Port(); p < SourcePortMin {
				t.Errorf("source port %d", p)
			}
			// A sender with the kernel's default TTL, as from off the link.
			bad, err := net.ListenUDP(cfg.network(), &net.UDPAddr{IP: cfg.Local.AsSlice()})
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close()
			if cfg.Local.Is4() {
				err = ipv4.NewConn(bad).SetTTL(64)
			} else {
				err = ipv6.NewConn(bad).SetHopLimit(64)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bad.WriteToUDP([]byte("ttl 64"), cfg.udpAddr(netip.AddrPortFrom(cfg.Local, ControlPort))); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteTo([]byte("ttl 255"), cfg.Local); err != nil {
				t.Fatal(err)
			}
			c.uc.SetReadDeadline(time.Now().Add(5 * time.Second))
			d, err := c.Read(make([]byte, 64))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d.Payload, []byte("ttl 255")) || d.HopLimit != 255 || d.Src != netip.AddrPortFrom(cfg.Local, s.Port()) || d.Dst != cfg.Local {
				t.Errorf("read %+v", d)
			}
			if n := c.BadHopLimit.Load(); n != 1 {
				t.Errorf("bad hop limit count %d, want 1", n)
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	lo := &net.Interface{Name: "lo", Index: 1}
	for _, cfg := range []Config{{Local: netip.MustParseAddr("127.0.0.1")}, {Interface: lo}, {Interface: lo, Local: netip.MustParseAddr("::ffff:127.0.0.1")}} {
		if _, err := Listen(cfg); err == nil {
			t.Errorf("Listen(%+v) accepted", cfg)
		}
		if _, err := OpenSender(cfg); err == nil {
			t.Errorf("OpenSender(%+v) accepted", cfg)
		}
	}
}

// TestReceiveBuffer: the receiving socket's buffer is receiveBuffer
// whatever net.core.rmem_default says (the kernel reports twice what was
// set, for its bookkeeping), so that a reader behind a burst does not
// lose the peers' packets in the kernel at the host's default.
func TestReceiveBuffer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) for SO_RCVBUFFORCE past net.core.rmem_max")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	// An address of its own: TestLoopback binds 127.0.0.1's port 3784.
	c, err := Listen(Config{Interface: lo, Local: netip.MustParseAddr("127.0.0.151")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got int
	var gerr error
	if err := c.rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if got != 2*receiveBuffer {
		t.Errorf("SO_RCVBUF %d bytes, want %d (twice the %d set)", got, 2*receiveBuffer, receiveBuffer)
	}
}
