package integration

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// instanceView is the part of one instance in `lvsha status -o json` the
// split brain test reads.
type instanceView struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Transitions int    `json:"transitions"`
	Yields      int    `json:"split_brain_yields"`
	YieldedTo   string `json:"yielded_to"`
}

// instance is the director's own view of instance "vi"; ok false while
// it does not answer.
func (d *clusterDirector) instance() (instanceView, bool) {
	var v struct {
		VRRP []instanceView `json:"vrrp_instances"`
	}
	if statusJSON(d.sock, &v) != nil {
		return instanceView{}, false
	}
	for _, in := range v.VRRP {
		if in.Name == "vi" {
			return in, true
		}
	}
	return instanceView{}, false
}

// holdsVIP says whether the director's namespace has vi's VIP.
func (d *clusterDirector) holdsVIP(t *testing.T) bool {
	return strings.Contains(sh(t, "ip", "-n", d.ns, "-o", "addr", "show"), " 10.79.0.100/")
}

// TestClusterSplitBrainResolve is issue #19's split brain with two lvsha
// directors: VRRP (protocol 112) is dropped on its way into lb2 while
// gossip flows, so lb2 (priority 100) becomes master beside lb1 (150).
// By default ("report") both stay master and the split brain is
// reported for as long as it lasts. With split_brain = "resolve" lb2,
// the lower, gives master up and releases the VIP within a bound (the
// hold of 1 s plus gossip), stays backup while the block lasts, and when
// adverts flow again follows lb1 by VRRP's rules: no transition on either
// director after the yield.
func TestClusterSplitBrainResolve(t *testing.T) {
	for _, mode := range []string{"report", "resolve"} {
		t.Run(mode, func(t *testing.T) {
			hosts, ifaces := lan(t, 2)
			dir := t.TempDir()
			key := filepath.Join(dir, "cluster.key")
			kb := make([]byte, 32)
			rand.Read(kb)
			if err := os.WriteFile(key, kb, 0o600); err != nil {
				t.Fatal(err)
			}
			seeds := []string{"10.79.0.1", "10.79.0.2"}
			var ds []*clusterDirector
			for i := range 2 {
				d := &clusterDirector{name: fmt.Sprintf("lb%d", i+1), ns: hosts[i], iface: ifaces[i], addr: seeds[i],
					cfg: filepath.Join(dir, fmt.Sprintf("lb%d.toml", i+1)), sock: filepath.Join(dir, fmt.Sprintf("lb%d.sock", i+1))}
				d.writeConfig(t, 150-50*i, key, seeds, fmt.Sprintf("split_brain = %q\n", mode))
				d.start(t)
				ds = append(ds, d)
			}
			lb1, lb2 := ds[0], ds[1]
			for _, d := range ds {
				eventually(t, d.name+" sees both directors", 20*time.Second, func() bool { return slices.Equal(d.alive(), []string{"lb1", "lb2"}) })
			}
			eventually(t, "lb1 master, lb2 backup", 20*time.Second, func() bool {
				a, _ := lb1.instance()
				b, _ := lb2.instance()
				return a.State == "MASTER" && b.State == "BACKUP"
			})

			lb2.nft(t, "add", "table", "inet", "lvsha_test")
			lb2.nft(t, "add chain inet lvsha_test in { type filter hook input priority 0; }")
			lb2.nft(t, "add", "rule", "inet", "lvsha_test", "in", "ip", "protocol", "vrrp", "drop")
			cut := time.Now()
			took := eventually(t, "lb1 reports the split brain", 10*time.Second, func() bool {
				v, _ := lb1.view()
				return len(v.SplitBrains) == 1 && slices.Equal(v.SplitBrains[0].Masters, []string{"lb1", "lb2"})
			})
			t.Logf("split brain reported %s after VRRP was cut (lb2's Master_Down_Interval included)", took.Round(time.Millisecond))

			if mode == "report" {
				// Three holds: nobody gives master up.
				time.Sleep(3 * time.Second)
				a, _ := lb1.instance()
				b, _ := lb2.instance()
				if a.State != "MASTER" || b.State != "MASTER" || b.Yields != 0 || !lb1.holdsVIP(t) || !lb2.holdsVIP(t) {
					t.Errorf("report only, 3 s into the split brain: lb1 %+v (VIP %t), lb2 %+v (VIP %t); want both master with the VIP, no yield",
						a, lb1.holdsVIP(t), b, lb2.holdsVIP(t))
				}
				if v, _ := lb1.view(); len(v.SplitBrains) != 1 || v.SplitBrainsTotal != 1 {
					t.Errorf("report only: split brains now %+v, %d since start; want vi's, 1", v.SplitBrains, v.SplitBrainsTotal)
				}
				lb2.nft(t, "delete", "table", "inet", "lvsha_test")
				eventually(t, "the split brain ends once lb2 hears lb1", 10*time.Second, func() bool {
					v, _ := lb1.view()
					b, _ := lb2.instance()
					return len(v.SplitBrains) == 0 && b.State == "BACKUP"
				})
				return
			}

			released := eventually(t, "lb2 yields and releases the VIP", 10*time.Second, func() bool {
				b, _ := lb2.instance()
				return b.State == "BACKUP" && b.Yields == 1 && b.YieldedTo == "10.79.0.1" && !lb2.holdsVIP(t)
			})
			t.Logf("lb2 released the VIP %s after the split brain was reported, %s after VRRP was cut",
				released.Round(time.Millisecond), time.Since(cut).Round(time.Millisecond))
			a, _ := lb1.instance()
			if a.State != "MASTER" || !lb1.holdsVIP(t) {
				t.Errorf("lb1 after lb2 yielded: %+v, VIP %t; want master with the VIP", a, lb1.holdsVIP(t))
			}
			b, _ := lb2.instance()
			// The block stays 3 s (eight Master_Down_Intervals): lb2 waits.
			time.Sleep(3 * time.Second)
			a2, _ := lb1.instance()
			b2, _ := lb2.instance()
			if a2.Transitions != a.Transitions || b2.Transitions != b.Transitions || b2.State != "BACKUP" || lb2.holdsVIP(t) {
				t.Errorf("yielded, VRRP still cut for 3 s: lb1 %+v, lb2 %+v (VIP %t); want no transition since the yield (lb1 %d, lb2 %d)",
					a2, b2, lb2.holdsVIP(t), a.Transitions, b.Transitions)
			}
			if v, _ := lb1.view(); len(v.SplitBrains) != 0 || v.SplitBrainsTotal != 1 {
				t.Errorf("after the yield: split brains now %+v, %d since start; want none now, 1", v.SplitBrains, v.SplitBrainsTotal)
			}

			lb2.nft(t, "delete", "table", "inet", "lvsha_test")
			eventually(t, "lb2 hears lb1's adverts again and follows it", 10*time.Second, func() bool {
				b, _ := lb2.instance()
				return b.YieldedTo == "" && b.State == "BACKUP"
			})
			time.Sleep(2 * time.Second)
			a3, _ := lb1.instance()
			b3, _ := lb2.instance()
			if a3.Transitions != a.Transitions || b3.Transitions != b.Transitions || a3.State != "MASTER" || b3.State != "BACKUP" || b3.Yields != 1 {
				t.Errorf("2 s after VRRP flows again: lb1 %+v, lb2 %+v; want lb1 master, lb2 backup, no transition since the yield, 1 yield", a3, b3)
			}
			if !lb1.holdsVIP(t) || lb2.holdsVIP(t) {
				t.Errorf("VIP on lb1 %t, on lb2 %t; want on lb1 only", lb1.holdsVIP(t), lb2.holdsVIP(t))
			}
		})
	}
}
