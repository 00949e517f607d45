package cluster

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// syncBuffer is a log sink the summary timer and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestLineKind(t *testing.T) {
	for msg, want := range map[string]string{
		`discarding packet with unacceptable label "x": from=10.0.0.1:1`:                       "label",
		"cannot decode label; packet has been truncated from=10.0.0.1:1":                       "label",
		"Decrypt packet failed: No installed keys could decrypt the message from=10.0.0.1:1":   "decrypt",
		"failed to receive: Encryption is configured but remote state is not encrypted from=x": "decrypt",
		"Got invalid checksum for UDP packet: 1, 2":                                            "checksum",
		"failed to receive: read tcp 10.0.0.1:7946->10.0.0.3:1: i/o timeout from=10.0.0.3:1":   "stream",
		"Failed to decode ping request: EOF from=10.0.0.1:1":                                   "decode",
		"msg type (99) not supported from=10.0.0.1:1":                                          "decode",
		"Push/Pull with lb2 failed: dial tcp: i/o timeout":                                     "other",
	} {
		if got := lineKind(msg); got != want {
			t.Errorf("lineKind(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestGossipLogRateLimit: a flood of one kind of error logs logBurst lines
// and, at the window's end, one summary with the count and a sample; a
// line of another kind is logged meanwhile; information lines are never
// limited; every warning and error is counted by kind.
func TestGossipLogRateLimit(t *testing.T) {
	var buf syncBuffer
	g := newGossipLog(slog.New(slog.NewTextHandler(&buf, nil)))
	g.window = 200 * time.Millisecond
	defer g.stop()
	std := g.std()
	const flood = 1000
	for i := range flood {
		std.Printf("[ERR] memberlist: Decrypt packet failed: No installed keys could decrypt the message from=10.79.0.9:%d", i)
	}
	std.Printf("[WARN] memberlist: Got invalid checksum for UDP packet: 1, 2")
	for range 20 {
		std.Printf("[INFO] memberlist: Marking lb3 as failed, suspect timeout reached")
	}
	if n := len(buf.lines()); n != logBurst+1+20 {
		t.Errorf("%d lines logged during the flood, want %d:\n%s", n, logBurst+1+20, strings.Join(buf.lines(), "\n"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(buf.lines()) < logBurst+1+20+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lines := buf.lines()
	last := lines[len(lines)-1]
	for _, want := range []string{"level=ERROR", `msg="memberlist lines not logged (rate limit)"`, "kind=decrypt",
		fmt.Sprintf("lines=%d", flood-logBurst), "from=10.79.0.9:999"} {
		if !strings.Contains(last, want) {
			t.Errorf("summary %q lacks %q", last, want)
		}
	}
	want := map[string]uint64{"decrypt": flood, "checksum": 1, "label": 0, "stream": 0, "decode": 0, "other": 0}
	if diff := cmp.Diff(want, g.counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	// The next window logs again.
	std.Printf("[ERR] memberlist: Decrypt packet failed: again")
	if got := buf.lines(); !strings.Contains(got[len(got)-1], "again") {
		t.Errorf("a line after the summary was not logged: %q", got[len(got)-1])
	}
}
