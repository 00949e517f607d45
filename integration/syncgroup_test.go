package integration

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestSyncGroup: two instances in a sync group change state together. On
// lb1 one of them tracks an interface; when it goes down that instance
// faults and its group partner gives up master too, so lb2 takes both
// VIPs; when it comes back lb1 takes both back.
func TestSyncGroup(t *testing.T) {
	_, ds := newDirectors(t, "10.79.0.100/24", func(int) string { return "" }, 150, 100)
	lb1, lb2 := ds[0], ds[1]
	// A link lb1 tracks, that the test can take down.
	sh(t, "ip", "-n", lb1.ns, "link", "add", "trk0", "type", "veth", "peer", "name", "trk1")
	sh(t, "ip", "-n", lb1.ns, "link", "set", "trk0", "up")
	sh(t, "ip", "-n", lb1.ns, "link", "set", "trk1", "up")
	for i, d := range ds {
		track := ""
		if i == 0 {
			track = "track_interfaces = [\"trk0\"]\n"
		}
		more := fmt.Sprintf(`
[[vrrp_instance]]
name = "vi2"
interface = %q
router_id = 51
priority = %d
virtual_ips = ["10.79.0.101/24"]
%s%s
[[vrrp_sync_group]]
name = "g"
instances = ["vi", "vi2"]
`, d.iface, []int{150, 100}[i], track, vmNoBFD())
		f, err := os.OpenFile(d.cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(more)
		f.Close()
	}
	lb1.start(t)
	lb2.start(t)
	both := func(d *director, state string) func() bool {
		return func() bool { s := d.states(); return s["vi"] == state && s["vi2"] == state }
	}
	eventually(t, "lb1 master of both", 20*time.Second, both(lb1, "MASTER"))
	eventually(t, "lb2 backup of both", 20*time.Second, both(lb2, "BACKUP"))

	sh(t, "ip", "-n", lb1.ns, "link", "set", "trk0", "down")
	took := eventually(t, "lb2 master of both after lb1's tracked link went down", 20*time.Second, both(lb2, "MASTER"))
	t.Logf("tracked link down on lb1: lb2 master of both instances after %v; lb1 %v", took.Round(time.Millisecond), lb1.states())
	if s := lb1.states(); s["vi2"] != "FAULT" || s["vi"] != "BACKUP" {
		t.Errorf("lb1 states %v, want vi2 FAULT (tracked link) and vi BACKUP (held by its group)", s)
	}
	eventually(t, "lb2 holds both VIPs", 10*time.Second, func() bool {
		return lb2.holdsVIP(t, "10.79.0.100") && lb2.holdsVIP(t, "10.79.0.101") && !lb1.holdsVIP(t, "10.79.0.100") && !lb1.holdsVIP(t, "10.79.0.101")
	})

	sh(t, "ip", "-n", lb1.ns, "link", "set", "trk0", "up")
	eventually(t, "lb1 master of both again", 20*time.Second, both(lb1, "MASTER"))
	eventually(t, "lb2 backup of both again", 20*time.Second, both(lb2, "BACKUP"))
}
