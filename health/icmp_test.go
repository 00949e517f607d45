package health

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// TestICMPCheck pings the loopback addresses, which always answer; the
// integration test sees a real server stop answering.
func TestICMPCheck(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			rs := netip.AddrPortFrom(netip.MustParseAddr(host), 0)
			c, err := NewChecker("ping", rs, &conf.Check{Type: "icmp", Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if r := c.Check(context.Background()); !r.OK || r.Message != "echo reply" {
				t.Fatalf("ping %s: %+v (err %v)", host, r, r.Err)
			}
		})
	}
}
