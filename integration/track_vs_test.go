package integration

import (
	"fmt"
	"testing"
	"time"
)

// TestTrackVirtualServer: a master whose tracked virtual server loses its
// last real server lowers its priority below the backup's and the backup
// takes over; when the real server returns, the master's priority comes
// back and it preempts again. Tracking is native: no script.
func TestTrackVirtualServer(t *testing.T) {
	const vip = "10.79.0.100"
	extra := func(i int) string {
		// Each director checks its own backend on the client host.
		return fmt.Sprintf(`[[vrrp_instance.track_virtual_server]]
name = "web"
weight = 100

[[virtual_server]]
name = "web"
address = "10.79.0.200:80"
scheduler = "rr"
  [virtual_server.check]
  type = "tcp"
  interval = "200ms"
  timeout = "150ms"
  rise = 1
  fall = 1
  [[virtual_server.real_server]]
  address = "10.79.0.3:%d"
`, 8081+i)
	}
	client, ds := newDirectors(t, vip+"/24", extra, 150, 100)
	lb1, lb2 := ds[0], ds[1]
	backend1 := startIn(t, client, []string{envRole + "=web", "LVSHA_NAME=b1", "LVSHA_LISTEN=:8081"}, self(t))
	startIn(t, client, []string{envRole + "=web", "LVSHA_NAME=b2", "LVSHA_LISTEN=:8082"}, self(t))
	waitHTTP(t, lb1.ns, "http://10.79.0.3:8081/")
	waitHTTP(t, lb2.ns, "http://10.79.0.3:8082/")
	lb1.start(t)
	lb2.start(t)
	eventually(t, "lb1 master", 20*time.Second, func() bool { return lb1.state() == "MASTER" && lb2.state() == "BACKUP" })

	stopProc(backend1)
	took := eventually(t, "lb2 takes over when lb1's tracked virtual server is down", 20*time.Second, func() bool {
		return lb2.state() == "MASTER" && lb1.state() == "BACKUP"
	})
	t.Logf("lb1's only real server stopped: lb2 master after %v", took.Round(time.Millisecond))
	eventually(t, "only lb2 holds the VIP", 5*time.Second, func() bool { return lb2.holdsVIP(t, vip) && !lb1.holdsVIP(t, vip) })

	startIn(t, client, []string{envRole + "=web", "LVSHA_NAME=b1", "LVSHA_LISTEN=:8081"}, self(t))
	eventually(t, "lb1 preempts when its real server is back", 20*time.Second, func() bool {
		return lb1.state() == "MASTER" && lb2.state() == "BACKUP"
	})
}
