// Package risefall is rise/fall hysteresis: a verdict that changes only
// after several consecutive results agree, so one lost probe does not
// flap what depends on it. The health engine judges real servers with it
// and vrrp/track its track_exec commands; it imports no lvsha package so
// that neither has to import the other.
package risefall

// State is whether the thing judged is up, and the current runs of
// consecutive successes and failures. The zero State is down with no
// history; State{Up: true} is up with none.
type State struct {
	Up      bool
	okRun   int
	failRun int
}

// Step applies one result. What is up goes down after fall consecutive
// failures, what is down comes up after rise consecutive successes;
// transitioned reports that Up changed. Values below 1 count as 1.
func (s State) Step(ok bool, rise, fall int) (next State, transitioned bool) {
	rise, fall = max(rise, 1), max(fall, 1)
	if ok {
		s.failRun = 0
		// Capped so a server up for years cannot overflow the counter.
		s.okRun = min(s.okRun+1, rise)
		if !s.Up && s.okRun >= rise {
			s.Up, s.okRun = true, 0
			return s, true
		}
		return s, false
	}
	s.okRun = 0
	s.failRun = min(s.failRun+1, fall)
	if s.Up && s.failRun >= fall {
		s.Up, s.failRun = false, 0
		return s, true
	}
	return s, false
}

// Falling reports that s is up but its latest results failed: it goes
// down if enough more fail. The health engine probes such a server
// sooner (keepalived's delay_before_retry).
func (s State) Falling() bool { return s.Up && s.failRun > 0 }
