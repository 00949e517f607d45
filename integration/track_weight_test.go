package integration

import (
	"testing"
	"time"
)

// TestTrackInterfaceWeight: a weighted tracked interface going down lowers
// the master's priority below the backup's, which takes over, without a
// fault (keepalived's track_interface with a weight); when it comes back
// the master preempts again.
func TestTrackInterfaceWeight(t *testing.T) {
	const vip = "10.79.0.100"
	extra := func(i int) string {
		if i != 0 {
			return ""
		}
		return "[[vrrp_instance.track_interface]]\nname = \"trk0\"\nweight = 100\n"
	}
	_, ds := newDirectors(t, vip+"/24", extra, 150, 100)
	lb1, lb2 := ds[0], ds[1]
	// The tracked link: a veth from lb1 to a namespace of its own.
	far := newNetns(t, "trkfar")
	sh(t, "ip", "link", "add", "trk0", "netns", lb1.ns, "type", "veth", "peer", "name", "trk1", "netns", far)
	sh(t, "ip", "-n", lb1.ns, "link", "set", "trk0", "up")
	sh(t, "ip", "-n", far, "link", "set", "trk1", "up")
	lb1.start(t)
	lb2.start(t)
	eventually(t, "lb1 master", 20*time.Second, func() bool { return lb1.state() == "MASTER" && lb2.state() == "BACKUP" })

	sh(t, "ip", "-n", lb1.ns, "link", "set", "trk0", "down")
	took := eventually(t, "lb2 takes over, lb1 backup (not fault)", 20*time.Second, func() bool {
		return lb2.state() == "MASTER" && lb1.state() == "BACKUP"
	})
	t.Logf("tracked link down: lb2 master after %v", took.Round(time.Millisecond))
	eventually(t, "only lb2 holds the VIP", 5*time.Second, func() bool { return lb2.holdsVIP(t, vip) && !lb1.holdsVIP(t, vip) })

	sh(t, "ip", "-n", lb1.ns, "link", "set", "trk0", "up")
	eventually(t, "lb1 preempts when the link is back", 20*time.Second, func() bool {
		return lb1.state() == "MASTER" && lb2.state() == "BACKUP"
	})
}
