package risefall

import "testing"

func TestStep(t *testing.T) {
	type want struct {
		state State
		trans bool
	}
	up := State{Up: true}
	down := State{}
	tests := []struct {
		name       string
		start      State
		results    []bool
		rise, fall int
		want       []want // one per result
	}{
		{
			name: "up stays up on success", start: up, results: []bool{true, true},
			rise: 2, fall: 2,
			want: []want{{State{Up: true, okRun: 1}, false}, {State{Up: true, okRun: 2}, false}},
		},
		{
			name: "up needs fall failures", start: up, results: []bool{false, false},
			rise: 2, fall: 2,
			want: []want{{State{Up: true, failRun: 1}, false}, {down, true}},
		},
		{
			name: "success resets failure run", start: up, results: []bool{false, true, false, false},
			rise: 2, fall: 2,
			want: []want{
				{State{Up: true, failRun: 1}, false},
				{State{Up: true, okRun: 1}, false},
				{State{Up: true, failRun: 1}, false},
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
				{State{okRun: 1}, false},
				{State{okRun: 2}, false},
				{up, true},
			},
		},
		{
			name: "failure resets success run", start: down, results: []bool{true, false, true, true},
			rise: 2, fall: 5,
			want: []want{
				{State{okRun: 1}, false},
				{State{failRun: 1}, false},
				{State{okRun: 1}, false},
				{up, true},
			},
		},
		{
			name: "down stays down on failure, run capped", start: down, results: []bool{false, false, false},
			rise: 2, fall: 2,
			want: []want{{State{failRun: 1}, false}, {State{failRun: 2}, false}, {State{failRun: 2}, false}},
		},
		{
			name: "zero rise and fall act as 1", start: up, results: []bool{false, true},
			rise: 0, fall: 0,
			want: []want{{down, true}, {up, true}},
		},
		{
			name: "full cycle", start: up, results: []bool{false, false, true, true},
			rise: 2, fall: 2,
			want: []want{
				{State{Up: true, failRun: 1}, false},
				{down, true},
				{State{okRun: 1}, false},
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

func TestFalling(t *testing.T) {
	tests := []struct {
		name    string
		results []bool
		start   State
		want    bool
	}{
		{"up and passing", []bool{true}, State{Up: true}, false},
		{"up, one failure short of fall", []bool{false}, State{Up: true}, true},
		{"up again after a success", []bool{false, true}, State{Up: true}, false},
		{"fallen", []bool{false, false, false}, State{Up: true}, false},
		{"down and failing", []bool{false}, State{}, false},
		{"down and recovering", []bool{true}, State{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.start
			for _, ok := range tc.results {
				s, _ = s.Step(ok, 3, 3)
			}
			if got := s.Falling(); got != tc.want {
				t.Errorf("Falling() of %+v = %v, want %v", s, got, tc.want)
			}
		})
	}
}
