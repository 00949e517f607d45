package group

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/lvsha/lvsha/vrrp/track"
)

// A reader that lags gets the newest report with the loss an older one
// said, one call at a time, and no goroutine waits while nothing is to
// be delivered.
func TestMailbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var wg sync.WaitGroup
		release := make(chan struct{})
		var got []track.LinkReport
		inCall, most := 0, 0
		var mu sync.Mutex
		m := &mailbox{wg: &wg, fn: func(r track.LinkReport) {
			mu.Lock()
			inCall++
			most = max(most, inCall)
			got = append(got, r)
			mu.Unlock()
			<-release
			mu.Lock()
			inCall--
			mu.Unlock()
		}}
		base := runtime.NumGoroutine()
		m.put(track.LinkReport{State: track.LinkState{"eth0": true}})
		synctest.Wait() // the first is being delivered, held by release
		m.put(track.LinkReport{State: track.LinkState{"eth0": false}, Lost: errors.New("ENOBUFS")})
		m.put(track.LinkReport{State: track.LinkState{"eth0": true}})
		m.put(track.LinkReport{State: track.LinkState{"eth0": false}})
		release <- struct{}{}
		release <- struct{}{}
		wg.Wait()
		if len(got) != 2 {
			t.Fatalf("delivered %d reports, want 2 (the first, then the newest): %+v", len(got), got)
		}
		if last := got[1]; last.State["eth0"] || last.Lost == nil {
			t.Errorf("second delivery %+v, want eth0 down with the loss said in between", last)
		}
		if most != 1 {
			t.Errorf("%d deliveries at once, want 1", most)
		}
		if n := runtime.NumGoroutine(); n != base {
			t.Errorf("%d goroutines idle, want %d as before the first report", n, base)
		}
		m.close()
		m.put(track.LinkReport{State: track.LinkState{"eth0": true}})
		wg.Wait()
		if len(got) != 2 {
			t.Errorf("delivered after close: %+v", got[2:])
		}
	})
}
