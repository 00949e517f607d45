package instance

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// Status counts the adverts an instance sends and the valid ones it
// receives, apart from those it drops: monitoring tells a silent peer
// from a rejected one by these.
func TestAdvertCounters(t *testing.T) {
	for _, kind := range connKinds {
		t.Run(kind.name, func(t *testing.T) { synctest.Test(t, func(t *testing.T) { testAdvertCounters(t, kind.new) }) })
	}
}

func testAdvertCounters(t *testing.T, newConn func() (AdvertConn, *wireConn)) {
	c, conn := newConn()
	i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), c, newRunHolder(0))
	if err != nil {
		t.Fatal(err)
	}
	stop := startRun(t, i)
	// Alone: master after Master_Down_Interval, then advertising.
	time.Sleep(time.Second)
	synctest.Wait()
	s := i.Status()
	if s.State != "MASTER" {
		t.Fatalf("state %s, want MASTER", s.State)
	}
	if sent := uint64(len(conn.priorities())); sent == 0 || s.AdvertsSent != sent {
		t.Errorf("AdvertsSent %d, want the %d adverts written", s.AdvertsSent, sent)
	}
	if s.AdvertsReceived != 0 {
		t.Errorf("AdvertsReceived %d with no peer, want 0", s.AdvertsReceived)
	}

	// A peer's valid advert (lower priority: we stay master) and a
	// malformed one.
	peer := netip.MustParseAddr("10.0.0.1")
	b, err := vrrp.Marshal(i.mcfg.Advert(50), peer, group)
	if err != nil {
		t.Fatal(err)
	}
	conn.in <- transport.Datagram{Payload: b, Src: peer, Dst: group, HopLimit: 255}
	conn.in <- transport.Datagram{Payload: b[:4], Src: peer, Dst: group, HopLimit: 255}
	synctest.Wait()
	s = i.Status()
	if s.AdvertsReceived != 1 {
		t.Errorf("AdvertsReceived %d after one valid advert, want 1", s.AdvertsReceived)
	}
	var dropped uint64
	for _, n := range s.Dropped {
		dropped += n
	}
	if dropped != 1 {
		t.Errorf("dropped %v after one malformed advert, want 1 in all", s.Dropped)
	}
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
}
