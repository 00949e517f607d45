package ipvs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SetRefresh writes the refresh period and zeroes sync_threshold's
// period (keeping its threshold), only where they differ; a missing
// sysctl (ip_vs not loaded) is an error naming it, not a file created.
func TestSetRefresh(t *testing.T) {
	tests := []struct {
		name              string
		threshold, period string // the files before; "" absent
		refresh           time.Duration
		wantThr, wantPer  string
		changed           bool
		wantErr           string
	}{
		{name: "kernel defaults", threshold: "3\t50\n", period: "0\n", refresh: 10 * time.Second,
			wantThr: "3 0", wantPer: "10", changed: true},
		{name: "already set: nothing written", threshold: "3\t0\n", period: "10\n", refresh: 10 * time.Second,
			wantThr: "3\t0", wantPer: "10"},
		{name: "another threshold kept", threshold: "5\t100\n", period: "10\n", refresh: 10 * time.Second,
			wantThr: "5 0", wantPer: "10", changed: true},
		{name: "period changed", threshold: "3\t0\n", period: "10\n", refresh: 5 * time.Second,
			wantThr: "3\t0", wantPer: "5", changed: true},
		{name: "no ip_vs", refresh: 10 * time.Second, wantErr: "read IPVS sysctl: open "},
		{name: "not whole seconds", threshold: "3\t50\n", period: "0\n", refresh: 1500 * time.Millisecond,
			wantThr: "3\t50", wantPer: "0", wantErr: "want whole seconds"},
		{name: "garbled threshold", threshold: "3\n", period: "0\n", refresh: time.Second,
			wantThr: "3", wantPer: "0", wantErr: `"3" is not two integers`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, v := range map[string]string{"sync_threshold": tt.threshold, "sync_refresh_period": tt.period} {
				if v != "" {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			changed, err := SyncSysctls{Dir: dir}.SetRefresh(tt.refresh)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one saying %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if changed != tt.changed {
				t.Errorf("changed %v, want %v", changed, tt.changed)
			}
			for name, want := range map[string]string{"sync_threshold": tt.wantThr, "sync_refresh_period": tt.wantPer} {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if want == "" {
					if err == nil {
						t.Errorf("%s created", name)
					}
					continue
				}
				if got := strings.TrimSpace(string(b)); err != nil || got != want {
					t.Errorf("%s = %q (%v), want %q", name, got, err, want)
				}
			}
		})
	}
}
