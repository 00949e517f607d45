package health

import (
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/risefall"
)

// initialState is up: like keepalived without "alpha", a restart of lvsha
// must not drain servers that were serving; a dead one goes down after Fall
// failures.
func initialState() risefall.State { return risefall.State{Up: true} }

// initialFor is the state a new probe starts in: down for start_down
// (keepalived's alpha), else initialState.
func initialFor(c *conf.Check) risefall.State {
	if c != nil && c.StartDown {
		return risefall.State{}
	}
	return initialState()
}

// nextDelay is the time from one probe's start to the next: retry while an
// up server has failed but not yet fallen (keepalived's
// delay_before_retry), interval otherwise. conf sets retry to the interval
// when retry_interval is unset.
func nextDelay(s risefall.State, interval, retry time.Duration) time.Duration {
	if s.Falling() {
		return retry
	}
	return interval
}
