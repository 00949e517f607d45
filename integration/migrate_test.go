package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRollingMigration follows docs/migrating-from-keepalived.md on a
// two-director pair that shares one keepalived.conf (corpus file 36, @lb1
// and @lb2 lines): both run keepalived; the backup (lb2) is replaced by
// lvsha with `lvsha convert -i lb2`'s output; the master's keepalived
// stops and lvsha takes over; lb1 comes back as lvsha and preempts. At
// every sample exactly one director holds the VIP once the group formed,
// and the client always reaches it.
func TestRollingMigration(t *testing.T) {
	const vip = "10.79.0.100"
	corpus := t.TempDir()
	if err := copyTree(corpus, corpusDir()); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(corpus, "36-eq-vrrp-pair.conf")
	hosts, ifs := lan(t, 3)
	client := hosts[2]
	ds := make([]*director, 2)
	for i := range ds {
		// The shared file names eth0, as both directors of a real pair do.
		ns := hosts[i]
		sh(t, "ip", "-n", ns, "link", "set", ifs[i], "down")
		sh(t, "ip", "-n", ns, "link", "set", ifs[i], "name", "eth0")
		sh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		ds[i] = &director{name: []string{"lb1", "lb2"}[i], ns: ns, iface: "eth0"}
		startIn(t, ns, []string{envRole + "=web", "LVSHA_NAME=" + ds[i].name, "LVSHA_LISTEN=:80"}, self(t))
	}
	holders := func() string { return vipHolders(t, ds, vip) }
	// steady samples the holders for d and requires exactly want each
	// time, and the client to be answered by want.
	steady := func(stage, want string, d time.Duration) {
		t.Helper()
		for begin := time.Now(); time.Since(begin) < d; time.Sleep(200 * time.Millisecond) {
			if h := holders(); h != want {
				t.Fatalf("%s: VIP holders %q, want %q", stage, h, want)
			}
		}
		if body, err := httpGet(t, client, "http://"+vip+"/"); err != nil || body != want {
			t.Fatalf("%s: client got %q, %v; want %q", stage, body, err, want)
		}
	}
	startLvsha := func(d *director, id string) {
		t.Helper()
		d.cfg = convertForTest(t, src, "-i", id)
		d.sock = socketOf(t, d.cfg)
		d.start(t)
	}

	// Both on keepalived: lb1 (priority 150) is master.
	ka1 := runKeepalived(t, ds[0].ns, src, "--vrrp", "-i", "lb1")
	ka2 := runKeepalived(t, ds[1].ns, src, "--vrrp", "-i", "lb2")
	eventually(t, "keepalived lb1 master", 20*time.Second, func() bool { return holders() == "lb1" })
	steady("keepalived pair", "lb1", 2*time.Second)

	// Replace the backup.
	ka2.stop()
	startLvsha(ds[1], "lb2")
	eventually(t, "lvsha lb2 backup", 20*time.Second, func() bool { return ds[1].states()["VI_MIG"] == "BACKUP" })
	steady("keepalived lb1 + lvsha lb2", "lb1", 4*time.Second)

	// The master's keepalived stops: lvsha takes over.
	ka1.stop()
	eventually(t, "lvsha lb2 takes over", 20*time.Second, func() bool { return ds[1].states()["VI_MIG"] == "MASTER" && holders() == "lb2" })
	steady("lvsha lb2 alone", "lb2", time.Second)

	// lb1 returns as lvsha and preempts with its priority 150.
	startLvsha(ds[0], "lb1")
	eventually(t, "lvsha lb1 preempts", 20*time.Second, func() bool {
		return ds[0].states()["VI_MIG"] == "MASTER" && ds[1].states()["VI_MIG"] == "BACKUP" && holders() == "lb1"
	})
	steady("lvsha pair", "lb1", 2*time.Second)
}

// socketOf reads the control_socket that convertForTest wrote.
func socketOf(t *testing.T, cfg string) string {
	t.Helper()
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "control_socket = "); ok {
			return strings.Trim(v, `"`)
		}
	}
	t.Fatalf("%s has no control_socket", cfg)
	return ""
}
