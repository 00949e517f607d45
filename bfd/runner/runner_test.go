package runner

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsha/lvsha/bfd"
	"github.com/lvsha/lvsha/bfd/transport"
)

// waitState reads ch until peer's session reaches want or limit passes.
func waitState(t *testing.T, ch <-chan Change, want bfd.State, limit time.Duration) Change {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case c := <-ch:
			if c.To == want {
				return c
			}
		case <-deadline:
			t.Fatalf("no %s within %v", want, limit)
		}
	}
}

// TestRunnersOnLoopback runs two runners on 127.0.0.1 and 127.0.0.2:
// both come Up, and when one stops the other goes Down for a detection
// timeout within a generous multiple of the detection time.
func TestRunnersOnLoopback(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	peer := func(addr netip.Addr) Peer {
		return Peer{Addr: addr, DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 20 * time.Millisecond, DetectMult: 3}
	}
	open := func(local, remote netip.Addr) *Runner {
		r, err := Open(Config{Config: transport.Config{Interface: lo, Local: local}, Peers: []Peer{peer(remote)},
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("side", local)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := open(a, b), open(b, a)
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	doneA, doneB := make(chan struct{}), make(chan struct{})
	go func() { ra.Run(ctxA); close(doneA) }()
	go func() { rb.Run(ctxB); close(doneB) }()
	defer func() { stopA(); stopB(); <-doneA; <-doneB }()

	waitState(t, ra.Changes(), bfd.Up, 10*time.Second)
	waitState(t, rb.Changes(), bfd.Up, 10*time.Second)
	time.Sleep(200 * time.Millisecond) // let the polls settle at 20 ms
	if st, _ := ra.Status(b); st.State != bfd.Up || st.RemoteDiscr == 0 {
		t.Fatalf("status %+v", st)
	}
	stopB()
	stopped := time.Now()
	<-doneB
	c := waitState(t, ra.Changes(), bfd.Down, 5*time.Second)
	detect := 3 * 20 * time.Millisecond
	took := c.At.Sub(stopped)
	t.Logf("Down %v after the peer stopped (detection time %v), diag %q", took, detect, c.Diag)
	if c.Diag != bfd.DiagControlDetectExpired || took > 3*detect {
		t.Errorf("Down after %v with diag %q, want detection expired within %v", took, c.Diag, 3*detect)
	}
	if d := ra.Drops(); len(d) != 0 {
		t.Errorf("drops %v", d)
	}
}
