package health

import (
	"time"

	"github.com/lvsha/lvsha/conf"
)

// riseFall is the hysteresis state of one probe: whether its server is
// considered up, and the current runs of consecutive successes and failures.
type riseFall struct {
	up      bool
	okRun   int
	failRun int
}

// initialState is up: like keepalived without "alpha", a restart of lvsha
// must not drain servers that were serving; a dead one goes down after Fall
// failures.
func initialState() riseFall { return riseFall{up: true} }

// initialFor is the state a new probe starts in: down for start_down
// (keepalived's alpha), else initialState.
func initialFor(c *conf.Check) riseFall {
	if c != nil && c.StartDown {
		return riseFall{}
	}
	return initialState()
}

// step applies one probe result. An up server goes down after fall
// consecutive failures, a down one comes up after rise consecutive
// successes; transitioned reports that up changed. Values below 1 count as 1.
func step(s riseFall, ok bool, rise, fall int) (next riseFall, transitioned bool) {
	rise, fall = max(rise, 1), max(fall, 1)
	if ok {
		s.failRun = 0
		// Capped so a server up for years cannot overflow the counter.
		s.okRun = min(s.okRun+1, rise)
		if !s.up && s.okRun >= rise {
			s.up, s.okRun = true, 0
			return s, true
		}
		return s, false
	}
	s.okRun = 0
	s.failRun = min(s.failRun+1, fall)
	if s.up && s.failRun >= fall {
		s.up, s.failRun = false, 0
		return s, true
	}
	return s, false
}

// nextDelay is the time from one probe's start to the next: retry while an
// up server has failed but not yet fallen (keepalived's
// delay_before_retry), interval otherwise. A retry of 0 means interval.
func nextDelay(s riseFall, interval, retry time.Duration) time.Duration {
	if s.up && s.failRun > 0 && retry > 0 {
		return retry
	}
	return interval
}
