package instance

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lvsha/lvsha/alarm"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// On a director's clock and a shared link (inline adverts), a master's
// ticks are served on the clock's goroutine: adverts go out every
// interval with no wake of the loop; a higher priority read inline makes
// it a backup, whose Master_Down_Timer the loop serves again; a stop
// still resigns. Real time: a timerfd knows no synctest, so counts are
// bounded loosely (a loaded host only delays, never adds, adverts).
func TestMasterTicksInline(t *testing.T) {
	c, conn := connKinds[1].new() // handler: inline adverts
	if _, ok := c.(inlineConn); !ok {
		t.Fatal("connKinds[1] is not inline")
	}
	i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), c, &servedHolder{})
	if err != nil {
		t.Fatal(err)
	}
	i.clock = &alarm.Clock{}
	stop := startRun(t, i)
	waitState := func(want string, within time.Duration) {
		t.Helper()
		for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if i.Status().State == want {
				return
			}
		}
		t.Fatalf("state %s after %v, want %s", i.Status().State, within, want)
	}
	loopTimers := func() int {
		i.stepMu.Lock()
		defer i.stepMu.Unlock()
		return i.loopTimers
	}
	waitState("MASTER", 5*time.Second)
	sent, loop := len(conn.priorities()), loopTimers()
	time.Sleep(time.Second)
	if n := len(conn.priorities()) - sent; n < 5 || n > 11 {
		t.Errorf("%d adverts in 1 s at 100 ms, want 5..11", n)
	}
	if n := loopTimers() - loop; n > 1 {
		t.Errorf("the loop served %d of a master's ticks, want none (inline)", n)
	}

	// A priority-200 master: backup, and its timer is the loop's again.
	peer := netip.MustParseAddr("10.0.0.1")
	b, err := vrrp.Marshal(i.mcfg.Advert(200), peer, group)
	if err != nil {
		t.Fatal(err)
	}
	conn.in <- transport.Datagram{Payload: b, Src: peer, Dst: group, HopLimit: 255}
	waitState("BACKUP", 5*time.Second)
	loop = loopTimers()
	waitState("MASTER", 5*time.Second) // the peer went silent
	if loopTimers() == loop {
		t.Error("the backup's Master_Down_Timer was not served by the loop")
	}
	sent = len(conn.priorities())
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := conn.priorities()[sent:]; !slices.Contains(got, 0) {
		t.Errorf("adverts at the stop: %v, want a resignation (priority 0)", got)
	}
}
