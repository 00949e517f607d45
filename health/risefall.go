package health

import (
	"time"

	"github.com/lvsha/lvsha/conf"
)

// RiseFall is rise/fall hysteresis: whether the thing judged is up, and
// the current runs of consecutive successes and failures. The health
// engine judges real servers with it, vrrp/track its track_exec commands.
type RiseFall struct {
	Up      bool
	okRun   int
	failRun int
}

// initialState is up: like keepalived without "alpha", a restart of lvsha
// must not drain servers that were serving; a dead one goes down after Fall
// failures.
func initialState() RiseFall { return RiseFall{Up: true} }

// initialFor is the state a new probe starts in: down for start_down
// (keepalived's alpha), else initialState.
func initialFor(c *conf.Check) RiseFall {
	if c != nil && c.StartDown {
		return RiseFall{}
	}
	return initialState()
}

// Step applies one result. What is up goes down after fall consecutive
// failures, what is down comes up after rise consecutive successes;
// transitioned reports that Up changed. Values below 1 count as 1.
func (s RiseFall) Step(ok bool, rise, fall int) (next RiseFall, transitioned bool) {
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

// nextDelay is the time from one probe's start to the next: retry while an
// up server has failed but not yet fallen (keepalived's
// delay_before_retry), interval otherwise. A retry of 0 means interval.
func nextDelay(s RiseFall, interval, retry time.Duration) time.Duration {
	if s.Up && s.failRun > 0 && retry > 0 {
		return retry
	}
	return interval
}
