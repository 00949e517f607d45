package health

import (
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/risefall"
)

func TestInitialStateIsUp(t *testing.T) {
	if !initialState().Up {
		t.Fatal("initial state is down; a restart would drain healthy servers")
	}
}

func TestNextDelay(t *testing.T) {
	const iv, retry = 10 * time.Second, time.Second
	up := risefall.State{Up: true}
	// after applies results with rise and fall 3, so none of these flips Up.
	after := func(s risefall.State, results ...bool) risefall.State {
		for _, ok := range results {
			s, _ = s.Step(ok, 3, 3)
		}
		return s
	}
	tests := []struct {
		name  string
		state risefall.State
		retry time.Duration
		want  time.Duration
	}{
		{"up and passing", after(up, true), retry, iv},
		{"up and failing: retry", after(up, false), retry, retry},
		{"up and failing twice: still retry", after(up, false, false), retry, retry},
		{"down: interval, as keepalived", risefall.State{}, retry, iv},
		{"down and recovering", after(risefall.State{}, true), retry, iv},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextDelay(tc.state, iv, tc.retry); got != tc.want {
				t.Errorf("nextDelay(%+v) = %v, want %v", tc.state, got, tc.want)
			}
		})
	}
}

func TestInitialFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    *conf.Check
		up   bool
	}{
		{"no check", nil, true},
		{"default: up, so a restart drains nothing", &conf.Check{Type: "tcp"}, true},
		{"start_down: keepalived's alpha", &conf.Check{Type: "tcp", StartDown: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := initialFor(tc.c); got != (risefall.State{Up: tc.up}) {
				t.Errorf("initialFor = %+v, want up=%v and no runs", got, tc.up)
			}
		})
	}
}
