package main

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvsha/lvsha/health"
)

func TestStateStore(t *testing.T) {
	since := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	st := savedState{
		Manual: []manualEntry{{VirtualServer: "web", RealServer: netip.MustParseAddrPort("10.0.1.2:80"), Mode: manualMaint, Since: since},
			{VirtualServer: "web", RealServer: netip.MustParseAddrPort("10.0.1.1:80"), Mode: manualDrain, Since: since}},
		Down: []health.Key{{VirtualServer: "api", RealServer: netip.MustParseAddrPort("10.0.2.1:443")}},
	}
	tests := []struct {
		name    string
		content *string // nil: no file
		wantLog string
		want    int // manual entries read
	}{
		{"no file: empty", nil, "", 0},
		{"corrupt: ignored and said", ptr("{\"version\": 1, \"manual\": [}"), "state file corrupt, ignored", 0},
		{"unknown field: ignored", ptr(`{"version": 1, "manual": [], "down": [], "extra": 1}`), "state file corrupt, ignored", 0},
		{"another version: ignored", ptr(`{"version": 7, "manual": [], "down": []}`), "version 7, want 1", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "state.json")
			if tc.content != nil {
				os.MkdirAll(filepath.Dir(path), 0o755)
				os.WriteFile(path, []byte(*tc.content), 0o600)
			}
			var logs bytes.Buffer
			s, got := openState(slog.New(slog.NewTextHandler(&logs, nil)), path)
			if s == nil {
				t.Fatalf("no store: %s", logs.String())
			}
			defer s.close()
			if len(got.Manual) != tc.want || tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) || tc.wantLog == "" && logs.Len() > 0 {
				t.Errorf("read %+v, log %q; want %d entries, log %q", got, logs.String(), tc.want, tc.wantLog)
			}
			// Whatever was there, a save replaces it and a new daemon
			// reads back what was saved, sorted.
			if err := s.save(st); err != nil {
				t.Fatal(err)
			}
			info, err := os.Stat(path)
			if err != nil || info.Mode().Perm() != 0o600 {
				t.Fatalf("state file %v, mode %v; want 0600", err, info.Mode())
			}
			// Saving the same again does not touch the file.
			before := info.ModTime()
			os.Chtimes(path, before.Add(-time.Hour), before.Add(-time.Hour))
			if err := s.save(st); err != nil {
				t.Fatal(err)
			}
			if info, _ := os.Stat(path); !info.ModTime().Equal(before.Add(-time.Hour)) {
				t.Error("an unchanged state was written again")
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 2 { // the file and its lock
				t.Errorf("the state directory holds %v: a temporary file was left", entries)
			}
			s.close()
			s2, back := openState(slog.New(slog.DiscardHandler), path)
			defer s2.close()
			if len(back.Manual) != 2 || back.Manual[0].RealServer.String() != "10.0.1.1:80" || !back.Manual[0].Since.Equal(since) || len(back.Down) != 1 {
				t.Errorf("read back %+v", back)
			}
		})
	}
}

// A second daemon on the same state file keeps no state instead of
// overwriting the first's, and says so.
func TestStateStoreHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	first, _ := openState(slog.New(slog.DiscardHandler), path)
	if first == nil {
		t.Fatal("the first daemon got no store")
	}
	defer first.close()
	var logs bytes.Buffer
	second, _ := openState(slog.New(slog.NewTextHandler(&logs, nil)), path)
	if second != nil || !strings.Contains(logs.String(), "held by another running lvsha") {
		t.Errorf("second store %v, log %q", second, logs.String())
	}
	if err := second.save(savedState{}); err != nil {
		t.Errorf("saving without a store: %v", err)
	}
}

func ptr(s string) *string { return &s }
