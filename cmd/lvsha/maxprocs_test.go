package main

import (
	"log/slog"
	"runtime"
	"testing"
)

// director.max_procs sets GOMAXPROCS, 0 the runtime's default, and an
// operator's GOMAXPROCS in the environment wins over the file.
func TestSetMaxProcs(t *testing.T) {
	was := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(was) })
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)
	log := slog.New(slog.DiscardHandler)
	// Each case starts from a value none of the others would set.
	preset := def + 4
	for _, tc := range []struct {
		name string
		env  string
		n    int
		want int
	}{
		{"one", "", 1, 1},
		{"three", "", 3, 3},
		{"zero is the default", "", 0, def},
		{"environment wins", "2", 1, preset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tc.env)
			runtime.GOMAXPROCS(preset)
			setMaxProcs(log, tc.n)
			if got := runtime.GOMAXPROCS(0); got != tc.want {
				t.Fatalf("GOMAXPROCS %d after max_procs %d (env %q); want %d", got, tc.n, tc.env, tc.want)
			}
		})
	}
}
