package health

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// udpServer answers every datagram with reply, or stays silent when reply
// is nil.
func udpServer(t *testing.T, reply []byte) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The cleanup owns the server: it stops it and waits for it to end.
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply != nil {
				pc.WriteTo(reply, from)
			}
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func closedUDPPort(t *testing.T) netip.AddrPort {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	return ap
}

func TestUDPCheck(t *testing.T) {
	tests := []struct {
		name   string
		target func(t *testing.T) netip.AddrPort
		check  conf.Check
		want   bool
	}{
		{"silent server passes without a required reply", func(t *testing.T) netip.AddrPort { return udpServer(t, nil) },
			conf.Check{PayloadHex: "0d0a"}, true},
		{"closed port fails on the ICMP error", closedUDPPort, conf.Check{PayloadHex: "0d0a"}, false},
		{"silent server fails when a reply is required", func(t *testing.T) netip.AddrPort { return udpServer(t, nil) },
			conf.Check{RequireReply: true}, false},
		{"any reply passes", func(t *testing.T) netip.AddrPort { return udpServer(t, []byte("pong")) },
			conf.Check{RequireReply: true}, true},
		{"reply with the expected start", func(t *testing.T) netip.AddrPort { return udpServer(t, []byte("pong!")) },
			conf.Check{ReplyHex: "706f6e67"}, true},
		{"reply with another start", func(t *testing.T) netip.AddrPort { return udpServer(t, []byte("nope")) },
			conf.Check{ReplyHex: "706f6e67"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.check
			c.Type, c.Timeout = "udp", 300*time.Millisecond
			ch, err := NewChecker("u", tc.target(t), &c)
			if err != nil {
				t.Fatal(err)
			}
			if r := ch.Check(context.Background()); r.OK != tc.want {
				t.Fatalf("result %+v (err %v), want ok=%v", r, r.Err, tc.want)
			}
		})
	}
}
