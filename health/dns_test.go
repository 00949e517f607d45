package health

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer answers every query on a loopback UDP port through reply,
// which gets the parsed query and returns the packets to send back.
func dnsServer(t *testing.T, reply func(q dnsmessage.Message) [][]byte) netip.AddrPort {
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
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			for _, p := range reply(q) {
				pc.WriteTo(p, from)
			}
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func answer(t *testing.T, q dnsmessage.Message, id uint16, rcode dnsmessage.RCode) []byte {
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: id, Response: true, RCode: rcode}, Questions: q.Questions}
	b, err := m.Pack()
	if err != nil {
		t.Error(err)
	}
	return b
}

func TestDNSCheck(t *testing.T) {
	tests := []struct {
		name     string
		reply    func(t *testing.T, q dnsmessage.Message) [][]byte
		want     bool
		wantCode int
		wantErr  error
	}{
		{"NOERROR passes", func(t *testing.T, q dnsmessage.Message) [][]byte {
			return [][]byte{answer(t, q, q.Header.ID, dnsmessage.RCodeSuccess)}
		}, true, 0, nil},
		{"SERVFAIL fails", func(t *testing.T, q dnsmessage.Message) [][]byte {
			return [][]byte{answer(t, q, q.Header.ID, dnsmessage.RCodeServerFailure)}
		}, false, 2, nil},
		{"a reply to another query is ignored", func(t *testing.T, q dnsmessage.Message) [][]byte {
			return [][]byte{answer(t, q, q.Header.ID+1, dnsmessage.RCodeServerFailure), []byte("junk"),
				answer(t, q, q.Header.ID, dnsmessage.RCodeSuccess)}
		}, true, 0, nil},
		{"silence times out", func(t *testing.T, q dnsmessage.Message) [][]byte { return nil }, false, 0, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan dnsmessage.Question, 1)
			rs := dnsServer(t, func(q dnsmessage.Message) [][]byte {
				if len(q.Questions) == 1 {
					select {
					case seen <- q.Questions[0]:
					default:
					}
				}
				return tc.reply(t, q)
			})
			c, err := NewChecker("dns", rs, &conf.Check{Type: "dns", Timeout: 300 * time.Millisecond, DNSType: "A", DNSName: "example.org"})
			if err != nil {
				t.Fatal(err)
			}
			r := c.Check(context.Background())
			if r.OK != tc.want || r.Code != tc.wantCode {
				t.Fatalf("result %+v, want ok=%v code=%d", r, tc.want, tc.wantCode)
			}
			if tc.wantErr != nil && !errors.Is(r.Err, tc.wantErr) {
				t.Errorf("error %v, want %v", r.Err, tc.wantErr)
			}
			select {
			case got := <-seen:
				if got.Type != dnsmessage.TypeA || got.Name.String() != "example.org." {
					t.Errorf("server saw question %v, want A example.org.", got)
				}
			case <-time.After(time.Second):
				t.Error("the server saw no question")
			}
		})
	}
}

func TestDNSCheckClosedPort(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	c, err := NewChecker("dns", rs, &conf.Check{Type: "dns", Timeout: 2 * time.Second, DNSType: "SOA", DNSName: "."})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := c.Check(context.Background())
	if r.OK {
		t.Fatalf("closed port passed: %+v", r)
	}
	// The port unreachable error ends the probe; it does not wait out the timeout.
	if errors.Is(r.Err, context.DeadlineExceeded) {
		t.Errorf("closed port timed out instead of failing on the ICMP error (after %v): %v", time.Since(start), r.Err)
	}
}
