package health

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestTCPCheck(t *testing.T) {
	tests := []struct {
		name   string
		target func(t *testing.T, host string) netip.AddrPort
		want   bool
	}{
		{"open port", func(t *testing.T, host string) netip.AddrPort {
			ln := listen(t, host)
			serveConns(t, ln, func(c net.Conn) { c.Close() })
			return addrPort(t, ln.Addr())
		}, true},
		{"closed port", closedPort, false},
	}
	for _, host := range loopbacks {
		for _, tt := range tests {
			t.Run(host+"/"+tt.name, func(t *testing.T) {
				r := runCheck(t, tt.target(t, host), baseCheck("tcp"))
				if r.OK != tt.want {
					t.Fatalf("OK = %v (err %v), want %v", r.OK, r.Err, tt.want)
				}
				if !r.OK && r.Err == nil {
					t.Fatal("failed result without error")
				}
				if r.At.IsZero() || r.Latency <= 0 {
					t.Fatalf("At %v Latency %v not filled in", r.At, r.Latency)
				}
			})
		}
	}
}

// fullBacklog listens on host with the smallest accept queue and fills it,
// so the kernel drops further SYNs: a connect then stays in progress until
// a retransmitted SYN finds room. accept frees one slot.
func fullBacklog(t *testing.T, host string) (rs netip.AddrPort, accept func()) {
	t.Helper()
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	if host == "::1" {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		rs = netip.AddrPortFrom(netip.AddrFrom4(b.Addr), uint16(b.Port))
	case *unix.SockaddrInet6:
		rs = netip.AddrPortFrom(netip.AddrFrom16(b.Addr), uint16(b.Port))
	}
	for i := 0; ; i++ {
		if i == 16 {
			t.Fatal("accept queue of backlog 0 never filled")
		}
		c, err := net.DialTimeout("tcp", rs.String(), 100*time.Millisecond)
		if err != nil {
			break // dropped SYN: the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	return rs, func() {
		nfd, _, err := unix.Accept(fd)
		if err == nil {
			t.Cleanup(func() { unix.Close(nfd) })
		}
	}
}

func TestTCPCheckHandshakeInProgress(t *testing.T) {
	for _, host := range loopbacks {
		t.Run(host+"/times out", func(t *testing.T) {
			rs, _ := fullBacklog(t, host)
			c := baseCheck("tcp")
			c.Timeout = 200 * time.Millisecond
			start := time.Now()
			r := runCheck(t, rs, c)
			if r.OK || !errors.Is(r.Err, context.DeadlineExceeded) {
				t.Fatalf("OK %v err %v, want a timeout", r.OK, r.Err)
			}
			if d := time.Since(start); d < c.Timeout || d > c.Timeout+time.Second {
				t.Fatalf("took %v with timeout %v", d, c.Timeout)
			}
		})
		t.Run(host+"/completes late", func(t *testing.T) {
			rs, accept := fullBacklog(t, host)
			c := baseCheck("tcp")
			c.Timeout = 4 * time.Second
			time.AfterFunc(100*time.Millisecond, accept)
			r := runCheck(t, rs, c)
			// Only a retransmitted SYN (about a second later) can get in.
			if !r.OK || r.Latency < 500*time.Millisecond {
				t.Fatalf("OK %v latency %v err %v, want success after the SYN retransmit", r.OK, r.Latency, r.Err)
			}
		})
	}
}
