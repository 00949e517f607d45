package health

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestEngineTCPStarts runs the engine on real tcp probes, both ways a
// probe can go (start): one answered within connect, run by the
// scheduler itself, and one whose handshake stays in progress (a full
// accept queue), finished by a goroutine that waits for it and times out.
func TestEngineTCPStarts(t *testing.T) {
	for _, host := range loopbacks {
		t.Run(host, func(t *testing.T) {
			const interval = 300 * time.Millisecond
			ln := listen(t, host)
			serveConns(t, ln, func(c net.Conn) { c.Close() })
			open := addrPort(t, ln.Addr())
			full, _ := fullBacklog(t, host)

			e := NewEngine(slog.New(slog.DiscardHandler))
			e.Update(config(vs("open", tcpCheck(interval, 1, 1), open), vs("full", tcpCheck(interval, 1, 1), full)))
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			kOpen, kFull := Key{"open", open}, Key{"full", full}
			deadline := time.Now().Add(10 * time.Second)
			for {
				so, sf := status(e, kOpen), status(e, kFull)
				if so.Checked && sf.Checked && !sf.Up {
					if !so.Up || !so.Last.OK {
						t.Fatalf("open port: %+v, want up", so)
					}
					if !errors.Is(sf.Last.Err, context.DeadlineExceeded) {
						t.Fatalf("full accept queue: %+v, want a timeout", sf.Last)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("after 10 s: open %+v, full %+v; want the open port checked up and the full one down", so, sf)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
