package instance

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// OnTransition's function is called once per transition, and Status
// already shows the new state when it is: a consumer that reads Status
// on the call (the IPVS sync daemons) never acts on the state before.
// Registering nil stops the calls.
func TestOnTransition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn := newQueueConn()
		i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), conn, newRunHolder(0))
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var seen []string
		record := func() {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, i.Status().State)
		}
		got := func() []string {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(seen)
		}
		i.OnTransition(record)
		stop := startRun(t, i)
		synctest.Wait()
		if s := got(); !slices.Equal(s, []string{"BACKUP"}) {
			t.Fatalf("after Start: calls saw %q, want [BACKUP]", s)
		}
		// Alone on the link: master after Master_Down_Interval.
		time.Sleep(time.Second)
		if s, n := got(), i.Status().Transitions; !slices.Equal(s, []string{"BACKUP", "MASTER"}) || n != 2 {
			t.Fatalf("after the Master_Down_Timer: calls saw %q for %d transitions, want [BACKUP MASTER]", s, n)
		}
		// Silent for a second as master: adverts are no transitions.
		time.Sleep(time.Second)
		if s := got(); len(s) != 2 {
			t.Fatalf("a master's adverts called it: %q", s)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		// Resigning (STOPPING), then released after StopWait (INIT).
		if s := got(); !slices.Equal(s, []string{"BACKUP", "MASTER", "STOPPING", "INIT"}) {
			t.Errorf("through the handover: calls saw %q, want [BACKUP MASTER STOPPING INIT]", s)
		}

		j, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), newQueueConn(), newRunHolder(0))
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		j.OnTransition(func() { calls++ })
		j.OnTransition(nil)
		stopJ := startRun(t, j)
		time.Sleep(time.Second)
		synctest.Wait()
		if err := stopJ(); err != nil {
			t.Fatal(err)
		}
		if calls != 0 || j.Status().Transitions < 2 {
			t.Errorf("after OnTransition(nil): %d calls over %d transitions, want none", calls, j.Status().Transitions)
		}
	})
}
