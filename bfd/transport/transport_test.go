package transport

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
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
