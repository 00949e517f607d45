package instance

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	"github.com/lvsha/lvsha/vrrp"
)

// recConn records each advert written, a copy of its bytes, with its
// destination; it sends unicast to two peers.
type recConn struct {
	fakeConn
	peers []netip.Addr
	sent  []recSent
}

type recSent struct {
	b   []byte
	dst netip.Addr
}

func (c *recConn) Destinations() []netip.Addr { return c.peers }

func (c *recConn) WriteTo(b []byte, dst netip.Addr) error {
	c.sent = append(c.sent, recSent{slices.Clone(b), dst})
	return nil
}

// An instance encodes its adverts once and sends the same bytes again,
// but what goes out always matches what it would encode now: each
// destination gets its own checksum (VRRPv3's covers the destination),
// and a new priority or a reload's new VIPs are sent at once.
func TestSendEncoded(t *testing.T) {
	src := netip.MustParseAddr("10.0.0.2")
	conn := &recConn{peers: []netip.Addr{netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")}}
	i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), src, conn, &fakeHolder{})
	if err != nil {
		t.Fatal(err)
	}
	defer i.Close()
	// check decodes the adverts sent since from: each destination's, once
	// per send, at priority prio with vip.
	check := func(from int, sends int, prio uint8, vip string) {
		t.Helper()
		got := conn.sent[from:]
		if len(got) != sends*len(conn.peers) {
			t.Fatalf("%d adverts written, want %d to each of %d peers", len(got), sends, len(conn.peers))
		}
		for n, s := range got {
			if want := conn.peers[n%len(conn.peers)]; s.dst != want {
				t.Errorf("advert %d to %s, want %s", n, s.dst, want)
			}
			adv, reason := vrrp.Parse(s.b, src, s.dst, vrrp.HopLimit)
			if reason != vrrp.DropNone {
				t.Fatalf("advert %d to %s dropped by its receiver: %s", n, s.dst, reason)
			}
			if adv.Priority != prio || len(adv.Addrs) != 1 || adv.Addrs[0].String() != vip {
				t.Errorf("advert %d: priority %d, VIPs %v; want %d, [%s]", n, adv.Priority, adv.Addrs, prio, vip)
			}
		}
	}
	i.send(100)
	i.send(100)
	check(0, 2, 100, "10.0.0.100")
	i.send(0)
	check(4, 1, 0, "10.0.0.100")
	i.send(100)
	check(6, 1, 100, "10.0.0.100")

	cfg := testConfig()
	cfg.VirtualIPs = []netip.Prefix{netip.MustParsePrefix("10.0.0.101/24")}
	if err := i.reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	from := len(conn.sent)
	i.send(100)
	check(from, 1, 100, "10.0.0.101")
}
