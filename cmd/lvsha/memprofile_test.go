package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteMemProfile: --memprofile's file is a heap profile (gzipped
// protobuf, as go tool pprof reads), and the log line carries the
// figures the profile lacks; a path it cannot create is logged.
func TestWriteMemProfile(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	path := filepath.Join(t.TempDir(), "heap.pprof")
	writeMemProfile(log, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("the profile is not gzipped (%d bytes)", len(b))
	}
	for _, k := range []string{"heap_inuse=", "stack_inuse=", "goroutines=", "gc_sys="} {
		if !strings.Contains(buf.String(), k) {
			t.Errorf("the log lacks %s: %s", k, buf.String())
		}
	}
	buf.Reset()
	writeMemProfile(log, filepath.Join(t.TempDir(), "missing", "heap.pprof"))
	if !strings.Contains(buf.String(), "heap profile not written") {
		t.Errorf("an unwritable path is not logged: %s", buf.String())
	}
}
