package integration

import (
	"context"
	"testing"
	"time"

	"github.com/lvsha/lvsha/vrrp/track"
)

// TestTrackInterfaces: the link watcher reports a tracked interface going
// down, coming back and disappearing, from the kernel's own notifications.
func TestTrackInterfaces(t *testing.T) {
	a, b := newNetns(t, "trA"), newNetns(t, "trB")
	veth(t, a, "10.81.0.1/24", b, "10.81.0.2/24")
	ifA := lastVeth(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ch <-chan track.LinkState
	inNetns(t, a, func() {
		var err error
		if ch, err = track.WatchLinks(ctx, []string{ifA, "absent0"}); err != nil {
			t.Fatal(err)
		}
	})
	next := func(want map[string]bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case s := <-ch:
				if s[ifA] == want[ifA] && s["absent0"] == want["absent0"] {
					return
				}
			case <-deadline:
				t.Fatalf("link state never became %v", want)
			}
		}
	}
	next(map[string]bool{ifA: true, "absent0": false})
	sh(t, "ip", "-n", a, "link", "set", ifA, "down")
	next(map[string]bool{ifA: false})
	sh(t, "ip", "-n", a, "link", "set", ifA, "up")
	next(map[string]bool{ifA: true})
	sh(t, "ip", "-n", a, "link", "del", ifA)
	next(map[string]bool{ifA: false})
}
