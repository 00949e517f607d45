package health

import (
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
)

func TestStep(t *testing.T) {
	type want struct {
		state RiseFall
		trans bool
	}
	up := RiseFall{Up: true}
	down := RiseFall{}
	tests := []struct {
		name       string
		start      RiseFall
		results    []bool
		rise, fall int
		want       []want // one per result
	}{
		{
			name: "up stays up on success", start: up, results: []bool{true, true},
			rise: 2, fall: 2,
			want: []want{{RiseFall{Up: true, okRun: 1}, false}, {RiseFall{Up: true, okRun: 2}, false}},
		},
		{
			name: "up needs fall failures", start: up, results: []bool{false, false},
			rise: 2, fall: 2,
			want: []want{{RiseFall{Up: true, failRun: 1}, false}, {down, true}},
		},
		{
			name: "success resets failure run", start: up, results: []bool{false, true, false, false},
			rise: 2, fall: 2,
			want: []want{
				{RiseFall{Up: true, failRun: 1}, false},
				{RiseFall{Up: true, okRun: 1}, false},
				{RiseFall{Up: true, failRun: 1}, false},
				{down, true},
			},
		},
		{
			name: "fall 1 goes down at once", start: up, results: []bool{false},
			rise: 3, fall: 1,
			want: []want{{down, true}},
		},
		{
			name: "down needs rise successes", start: down, results: []bool{true, true, true},
			rise: 3, fall: 1,
			want: []want{
				{RiseFall{okRun: 1}, false},
				{RiseFall{okRun: 2}, false},
				{up, true},
			},
		},
		{
			name: "failure resets success run", start: down, results: []bool{true, false, true, true},
			rise: 2, fall: 5,
			want: []want{
				{RiseFall{okRun: 1}, false},
				{RiseFall{failRun: 1}, false},
				{RiseFall{okRun: 1}, false},
				{up, true},
			},
		},
		{
			name: "down stays down on failure, run capped", start: down, results: []bool{false, false, false},
			rise: 2, fall: 2,
			want: []want{{RiseFall{failRun: 1}, false}, {RiseFall{failRun: 2}, false}, {RiseFall{failRun: 2}, false}},
		},
		{
			name: "zero rise and fall act as 1", start: up, results: []bool{false, true},
			rise: 0, fall: 0,
			want: []want{{down, true}, {up, true}},
		},
		{
			name: "full cycle", start: initialState(), results: []bool{false, false, true, true},
			rise: 2, fall: 2,
			want: []want{
				{RiseFall{Up: true, failRun: 1}, false},
				{down, true},
				{RiseFall{okRun: 1}, false},
				{up, true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.start
			for i, ok := range tt.results {
				var trans bool
				s, trans = s.Step(ok, tt.rise, tt.fall)
				if s != tt.want[i].state || trans != tt.want[i].trans {
					t.Fatalf("after result %d (%v): got %+v transitioned=%v, want %+v transitioned=%v",
						i, ok, s, trans, tt.want[i].state, tt.want[i].trans)
				}
			}
		})
	}
}

func TestInitialStateIsUp(t *testing.T) {
	if !initialState().Up {
		t.Fatal("initial state is down; a restart would drain healthy servers")
	}
}

func TestNextDelay(t *testing.T) {
	const iv, retry = 10 * time.Second, time.Second
	tests := []struct {
		name  string
		state RiseFall
		retry time.Duration
		want  time.Duration
	}{
		{"up and passing", RiseFall{Up: true}, retry, iv},
		{"up and failing: retry", RiseFall{Up: true, failRun: 1}, retry, retry},
		{"up and failing, no retry set", RiseFall{Up: true, failRun: 2}, 0, iv},
		{"down: interval, as keepalived", RiseFall{Up: false, failRun: 0, okRun: 0}, retry, iv},
		{"down and recovering", RiseFall{Up: false, okRun: 1}, retry, iv},
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
			if got := initialFor(tc.c); got.Up != tc.up || got.okRun != 0 || got.failRun != 0 {
				t.Errorf("initialFor = %+v, want up=%v and no runs", got, tc.up)
			}
		})
	}
}
