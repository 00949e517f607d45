package group

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
)

// recorder is an instance that records the events it is sent.
type recorder struct{ got []string }

func (r *recorder) Send(_ context.Context, ev vrrp.Event) {
	switch e := ev.(type) {
	case vrrp.FaultDetected:
		r.got = append(r.got, "fault")
	case vrrp.FaultCleared:
		r.got = append(r.got, "clear")
	case vrrp.SetPriority:
		r.got = append(r.got, fmt.Sprintf("prio %d", e.Priority))
	default:
		r.got = append(r.got, fmt.Sprintf("%T", ev))
	}
}

// Links, track_execs and virtual servers each change on their own; the
// instance sees a fault while any source has one, a fault clears only
// when none has, and the priority is lowered by every weight that
// applies, floored at 1.
func TestTrackingCombinesSources(t *testing.T) {
	cfg := conf.VRRPInstance{Name: "vi", Priority: 100, TrackInterfaces: []string{"eth1"},
		TrackExecs: []conf.TrackExecRef{{Name: "proc", Weight: 0}, {Name: "disk", Weight: 30}}}
	type step struct {
		do   string // link-down, link-up, link-error, exec-fail NAME, exec-ok NAME, vs N
		want string // events sent, space-separated with "|" between events
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"link then exec, cleared in the other order", []step{
			{"link-down", "fault"},
			{"exec-fail proc", ""},
			{"link-up", ""}, // proc still fails: no clear
			{"exec-ok proc", "clear"},
		}},
		{"exec then link", []step{
			{"exec-fail proc", "fault"},
			{"link-down", ""},
			{"exec-ok proc", ""},
			{"link-up", "clear"},
		}},
		{"weights add up with virtual servers", []step{
			{"exec-fail disk", "prio 70"},
			{"vs 50", "prio 20"},
			{"vs 90", "prio 1"}, // 100-30-90 floors at 1
			{"exec-ok disk", "prio 10"},
			{"vs 0", "prio 100"},
		}},
		{"priority goes before the clear", []step{
			{"exec-fail proc", "fault"},
			{"exec-fail disk", "prio 70"},
			{"exec-ok proc", "clear"},
			{"exec-ok disk", "prio 100"},
			{"exec-fail disk", "prio 70"},
			{"link-down", "fault"},
			{"exec-ok disk", "prio 100"},
		}},
		{"a link watcher that cannot start is a fault", []step{
			{"link-error", "fault"},
			{"exec-ok proc", ""},
		}},
		{"nothing changes, nothing sent", []step{
			{"link-up", ""},
			{"vs 0", ""},
			{"exec-ok disk", ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			failing := map[string]bool{}
			rec := &recorder{}
			tr := newTracking(slog.New(slog.NewTextHandler(io.Discard, nil)), cfg, rec, func(n string) bool { return !failing[n] })
			ctx := context.Background()
			for _, s := range tc.steps {
				rec.got = nil
				verb, arg, _ := strings.Cut(s.do, " ")
				switch verb {
				case "link-down":
					tr.setLinks(ctx, []string{"eth1"}, nil)
				case "link-up":
					tr.setLinks(ctx, nil, nil)
				case "link-error":
					tr.setLinks(ctx, nil, errors.New("netlink refused"))
				case "exec-fail":
					failing[arg] = true
					tr.execsChanged(ctx)
				case "exec-ok":
					failing[arg] = false
					tr.execsChanged(ctx)
				case "vs":
					var n int
					fmt.Sscan(arg, &n)
					tr.setVirtualServers(ctx, n)
				}
				if got := strings.Join(rec.got, "|"); got != s.want {
					t.Fatalf("after %q sent %q, want %q", s.do, got, s.want)
				}
			}
		})
	}
}

// A weighted tracked interface lowers the priority while down; only the
// faulting ones fault.
func TestTrackingWeightedLinks(t *testing.T) {
	cfg := conf.VRRPInstance{Name: "vi", Priority: 100, TrackInterfaces: []string{"eth0"},
		TrackInterfaceWeights: []conf.TrackInterface{{Name: "eth1", Weight: 30}, {Name: "eth2", Weight: 90}}}
	rec := &recorder{}
	tr := newTracking(slog.New(slog.NewTextHandler(io.Discard, nil)), cfg, rec, func(string) bool { return true })
	ctx := context.Background()
	for _, st := range []struct {
		down []string
		want string
	}{
		{[]string{"eth1"}, "prio 70"},
		{[]string{"eth1", "eth2"}, "prio 1"}, // floored
		{[]string{"eth0", "eth2"}, "prio 10|fault"},
		{nil, "prio 100|clear"},
	} {
		rec.got = nil
		tr.setLinks(ctx, st.down, nil)
		if got := strings.Join(rec.got, "|"); got != st.want {
			t.Fatalf("links down %v: sent %q, want %q", st.down, got, st.want)
		}
	}
}

// The instance's own interface faults it while down, unless
// track_own_interface is off, and status says what holds it in fault,
// its own interface first.
func TestTrackingOwnInterface(t *testing.T) {
	tests := []struct {
		name     string
		own      bool
		down     []string
		linkErr  error
		failing  []string
		want     string
		wantWhy  []string
		tracking []string
	}{
		{name: "own interface down", own: true, down: []string{"eth0"}, want: "fault", wantWhy: []string{"interface eth0 down"}},
		{name: "not tracked with track_own_interface off", down: []string{"eth0"}, want: ""},
		{name: "own and tracked down, a track_exec failing", own: true, down: []string{"eth0", "eth1"}, failing: []string{"proc", "disk"},
			want: "prio 70|fault", wantWhy: []string{"interface eth0 down", "tracked interface eth1 down", "track_exec proc failing"}},
		{name: "own interface also in track_interfaces", own: true, tracking: []string{"eth0"}, down: []string{"eth0"},
			want: "fault", wantWhy: []string{"interface eth0 down"}},
		{name: "link state unknown", own: true, linkErr: errors.New("netlink refused"),
			want: "fault", wantWhy: []string{"link state unknown: netlink refused"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := conf.VRRPInstance{Name: "vi", Interface: "eth0", Priority: 100, TrackOwnInterface: tc.own, TrackInterfaces: []string{"eth1"},
				TrackExecs: []conf.TrackExecRef{{Name: "proc", Weight: 0}, {Name: "disk", Weight: 30}}}
			if tc.tracking != nil {
				cfg.TrackInterfaces = tc.tracking
			}
			rec := &recorder{}
			tr := newTracking(slog.New(slog.NewTextHandler(io.Discard, nil)), cfg, rec,
				func(n string) bool { return !slices.Contains(tc.failing, n) })
			tr.setLinks(context.Background(), tc.down, tc.linkErr)
			if got := strings.Join(rec.got, "|"); got != tc.want {
				t.Errorf("sent %q, want %q", got, tc.want)
			}
			if got := tr.faults(); !slices.Equal(got, tc.wantWhy) {
				t.Errorf("reasons %q, want %q", got, tc.wantWhy)
			}
			rec.got = nil
			tr.setLinks(context.Background(), nil, nil)
			if len(tc.failing) == 0 && len(tr.faults()) > 0 {
				t.Errorf("links up: reasons %q, want none", tr.faults())
			}
		})
	}
}
