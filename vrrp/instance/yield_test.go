package instance

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/vrrp"
)

// TestYield is split_brain = "resolve" as an instance runs it: a master
// sent vrrp.Yield gives master up, releases its VIPs, counts the yield
// and shows whom it yielded to, then stays backup through any silence;
// the lift makes it master again after a Master_Down_Interval of it.
func TestYield(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newRunHolder(0)
		i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), newQueueConn(), h)
		if err != nil {
			t.Fatal(err)
		}
		stop := startRun(t, i)
		// Alone on the link: master after Master_Down_Interval (361 ms).
		time.Sleep(time.Second)
		synctest.Wait()
		if s := i.Status(); s.State != "MASTER" {
			t.Fatalf("alone on the link: %s, want MASTER", s.State)
		}
		winner := netip.MustParseAddr("10.0.0.9")
		i.Send(context.Background(), vrrp.Yield{To: winner})
		synctest.Wait()
		s := i.Status()
		if s.State != "BACKUP" || s.SplitBrainYields != 1 || s.YieldedTo != "10.0.0.9" || s.Master != "10.0.0.9" {
			t.Errorf("after Yield: state %s, yields %d, yielded_to %q, master %q; want BACKUP, 1, 10.0.0.9, 10.0.0.9",
				s.State, s.SplitBrainYields, s.YieldedTo, s.Master)
		}
		if calls := h.got(); len(calls) == 0 || calls[len(calls)-1] != "release" {
			t.Errorf("holder calls %q, want the VIPs released last", calls)
		}
		// Ten seconds of silence, 27 Master_Down_Intervals: still backup.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if s := i.Status(); s.State != "BACKUP" || s.Transitions != 3 {
			t.Errorf("yielded, 10 s without adverts: %s after %d transitions, want BACKUP after 3", s.State, s.Transitions)
		}
		i.Send(context.Background(), vrrp.Yield{})
		synctest.Wait()
		if s := i.Status(); s.State != "BACKUP" || s.YieldedTo != "" {
			t.Errorf("just lifted: %s yielded_to %q, want BACKUP and none", s.State, s.YieldedTo)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if s := i.Status(); s.State != "MASTER" || s.SplitBrainYields != 1 {
			t.Errorf("a second after the lift: %s with %d yields, want MASTER with 1", s.State, s.SplitBrainYields)
		}
		if n := slices.Index(h.got(), "release"); n < 0 {
			t.Error("the VIPs were never released")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}
