package instance

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// A master that hears a lower-priority master announces its VIPs again
// (the other's announcements drew the neighbours away), at most once a
// second; a lower-priority advert within that second is deferred to its
// end, not dropped, since the other master's last advert (sent as it
// yields) follows its own announcements and only an announcement after
// them brings the neighbours back.
func TestReannounceOnLowerPriority(t *testing.T) {
	for _, tt := range []struct {
		name string
		// gaps are the times between the peer's adverts, the first sent
		// at once.
		gaps []time.Duration
		// want is the announcements, each as the time after the first
		// advert, rounded to the advert interval.
		want []time.Duration
	}{
		{"one advert", []time.Duration{0}, []time.Duration{0}},
		{"two, a second apart", []time.Duration{0, 1100 * time.Millisecond}, []time.Duration{0, 1100 * time.Millisecond}},
		{"the last within the second: deferred to its end", []time.Duration{0, 300 * time.Millisecond}, []time.Duration{0, time.Second}},
		{"many within the second: one more", []time.Duration{0, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}, []time.Duration{0, time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, conn := connKinds[0].new()
				h := newRunHolder(0)
				i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), c, h)
				if err != nil {
					t.Fatal(err)
				}
				stop := startRun(t, i)
				time.Sleep(time.Second) // alone: master
				synctest.Wait()
				if s := i.Status().State; s != "MASTER" {
					t.Fatalf("state %s, want MASTER", s)
				}
				before := len(h.got())
				peer := netip.MustParseAddr("10.0.0.1")
				b, err := vrrp.Marshal(i.mcfg.Advert(50), peer, group)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				var at []time.Duration
				seen := before
				watch := func(until time.Time) {
					for time.Now().Before(until) {
						time.Sleep(10 * time.Millisecond)
						synctest.Wait()
						for _, call := range h.got()[seen:] {
							if call == "announce" {
								at = append(at, time.Since(start).Round(100*time.Millisecond))
							}
						}
						seen = len(h.got())
					}
				}
				for _, gap := range tt.gaps {
					watch(time.Now().Add(gap))
					conn.in <- transport.Datagram{Payload: b, Src: peer, Dst: group, HopLimit: 255}
				}
				watch(time.Now().Add(2 * time.Second))
				if !slices.Equal(at, tt.want) {
					t.Errorf("announcements at %v after the first lower-priority advert, want %v", at, tt.want)
				}
				if s := i.Status().State; s != "MASTER" {
					t.Errorf("state %s after lower-priority adverts, want MASTER", s)
				}
				if err := stop(); err != nil {
					t.Errorf("Run: %v", err)
				}
			})
		})
	}
}
