package health

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// smtpServer speaks a scripted SMTP dialogue: greeting, then reply to
// the first line the client sends; it records that line.
func smtpServer(t *testing.T, greeting, reply string, seen chan<- string) netip.AddrPort {
	t.Helper()
	ln := listen(t, "127.0.0.1")
	// One connection at a time, owned by serveConns, which waits for it.
	serveConns(t, ln, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if greeting == "" {
			// Never greets: hold the connection until the client gives up.
			io.Copy(io.Discard, c)
			return
		}
		c.Write([]byte(greeting))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		select {
		case seen <- strings.TrimSpace(line):
		default:
		}
		c.Write([]byte(reply))
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

func TestSMTPCheck(t *testing.T) {
	tests := []struct {
		name, greeting, reply string
		want                  bool
		wantCode              int
	}{
		{"220 then 250", "220 mx.test ESMTP\r\n", "250 mx.test\r\n", true, 250},
		{"multi-line greeting", "220-mx.test ESMTP\r\n220 ready\r\n", "250 ok\r\n", true, 250},
		{"busy greeting", "421 busy\r\n", "", false, 421},
		{"HELO refused", "220 mx.test\r\n", "501 bad HELO\r\n", false, 501},
		{"silent server times out", "", "", false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan string, 1)
			rs := smtpServer(t, tc.greeting, tc.reply, seen)
			c, err := NewChecker("mail", rs, &conf.Check{Type: "smtp", Timeout: 500 * time.Millisecond, HeloName: "lb1.test"})
			if err != nil {
				t.Fatal(err)
			}
			r := c.Check(context.Background())
			if r.OK != tc.want || r.Code != tc.wantCode {
				t.Fatalf("result %+v (err %v), want ok=%v code=%d", r, r.Err, tc.want, tc.wantCode)
			}
			if tc.greeting != "" && tc.greeting[0] == '2' {
				if got := <-seen; got != "HELO lb1.test" {
					t.Errorf("server saw %q, want HELO lb1.test", got)
				}
			}
		})
	}
}
