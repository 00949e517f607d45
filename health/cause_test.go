package health

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"golang.org/x/net/dns/dnsmessage"
)

// TestCause runs real probes against servers that fail each way and
// checks the cause each result is classified as: the classes label a
// metric operators alert on, so a checker that changes how it reports a
// failure must not silently move it to "other".
func TestCause(t *testing.T) {
	httpAnswer := func(status int, body string) func(t *testing.T) netip.AddrPort {
		return func(t *testing.T) netip.AddrPort {
			return httpServer(t, "127.0.0.1", false, nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(status)
				io.WriteString(w, body)
			}))
		}
	}
	httpCheck := func(mod func(c *conf.Check)) *conf.Check {
		c := baseCheck("http")
		if mod != nil {
			mod(c)
		}
		return c
	}
	dnsAnswer := func(rcode dnsmessage.RCode) func(t *testing.T) netip.AddrPort {
		return func(t *testing.T) netip.AddrPort {
			return dnsServer(t, func(q dnsmessage.Message) [][]byte { return [][]byte{answer(t, q, q.Header.ID, rcode)} })
		}
	}
	dnsCheck := &conf.Check{Type: "dns", Timeout: 300 * time.Millisecond, DNSType: "A", DNSName: "example.org"}
	udpCheck := &conf.Check{Type: "udp", Timeout: 300 * time.Millisecond, PayloadHex: "01", ReplyHex: "aa", RequireReply: true}
	smtpServer := func(greeting string) func(t *testing.T) netip.AddrPort {
		return func(t *testing.T) netip.AddrPort {
			ln := listen(t, "127.0.0.1")
			serveConns(t, ln, func(c net.Conn) { io.WriteString(c, greeting); c.Close() })
			return addrPort(t, ln.Addr())
		}
	}
	smtpCheck := &conf.Check{Type: "smtp", Timeout: 300 * time.Millisecond, HeloName: "t.invalid"}
	at := func(s string) func(*testing.T) netip.AddrPort {
		return func(*testing.T) netip.AddrPort { return netip.MustParseAddrPort(s) }
	}
	// Generous but for the one meant to time out: starting a process on
	// a loaded machine under the race detector can take a good part of
	// a second.
	exec := func(timeout time.Duration, argv ...string) *conf.Check {
		return &conf.Check{Type: "exec", Timeout: timeout, Command: argv}
	}

	tests := []struct {
		name   string
		target func(t *testing.T) netip.AddrPort
		check  *conf.Check
		want   string
	}{
		{"http up has no cause", httpAnswer(200, "ok"), httpCheck(nil), ""},
		{"http 503", httpAnswer(503, "ok"), httpCheck(nil), CauseStatus},
		{"http body mismatch", httpAnswer(200, "sick"), httpCheck(func(c *conf.Check) { c.Body = "healthy" }), CauseBody},
		{"http body regexp mismatch", httpAnswer(200, "sick"), httpCheck(func(c *conf.Check) { c.BodyRegexp = "^ok$" }), CauseBody},
		{"http body md5 mismatch", httpAnswer(200, "sick"), httpCheck(func(c *conf.Check) { c.BodyMD5 = md5hex("ok") }), CauseBody},
		{"http silent server", func(t *testing.T) netip.AddrPort { return silentListener(t, "127.0.0.1") }, httpCheck(nil), CauseTimeout},
		{"http nothing listening", func(t *testing.T) netip.AddrPort { return closedPort(t, "127.0.0.1") }, httpCheck(nil), CauseRefused},
		{"http reset", func(t *testing.T) netip.AddrPort { return resetListener(t, "127.0.0.1") }, httpCheck(nil), CauseOther},
		{"tcp nothing listening", func(t *testing.T) netip.AddrPort { return closedPort(t, "127.0.0.1") }, baseCheck("tcp"), CauseRefused},
		{"dns SERVFAIL", dnsAnswer(dnsmessage.RCodeServerFailure), dnsCheck, CauseStatus},
		{"dns silent", func(t *testing.T) netip.AddrPort {
			return dnsServer(t, func(dnsmessage.Message) [][]byte { return nil })
		}, dnsCheck, CauseTimeout},
		{"udp wrong reply", func(t *testing.T) netip.AddrPort { return udpServer(t, []byte{0xbb}) }, udpCheck, CauseBody},
		{"udp port closed", closedUDPPort, udpCheck, CauseRefused},
		{"smtp 554 greeting", smtpServer("554 go away\r\n"), smtpCheck, CauseStatus},
		{"exec exit 1", at("192.0.2.1:80"), exec(5*time.Second, "false"), CauseStatus},
		{"exec killed at its timeout", at("192.0.2.1:80"), exec(300*time.Millisecond, "sleep", "5"), CauseTimeout},
		{"exec missing command", at("192.0.2.1:80"), exec(5*time.Second, "/nonexistent/lvsha-check"), CauseOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCheck(t, tc.target(t), tc.check)
			if got := r.Cause(); got != tc.want {
				t.Errorf("Cause() = %q, want %q (result %+v)", got, tc.want, r)
			}
			if r.OK != (tc.want == "") {
				t.Errorf("OK = %v, want %v", r.OK, tc.want == "")
			}
		})
	}
}

// TestCauseKeepsMessages: marking an error with its cause changes
// neither its text nor what it wraps.
func TestCauseKeepsMessages(t *testing.T) {
	inner := errors.New("/: status 503 not in [200]")
	err := withCause(CauseStatus, inner)
	if err.Error() != inner.Error() || !errors.Is(err, inner) {
		t.Errorf("withCause changed the error: %q", err)
	}
	if got := (Result{Err: err}).Cause(); got != CauseStatus {
		t.Errorf("Cause() = %q, want %q", got, CauseStatus)
	}
}
