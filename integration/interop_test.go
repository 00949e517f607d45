package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// startKeepalivedVRRP runs a real keepalived as a VRRP peer in ns.
func startKeepalivedVRRP(t testing.TB, ns, iface string, prio int, vip, extra string) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "keepalived.conf")
	text := fmt.Sprintf(`global_defs {
  router_id ka
}
vrrp_instance VI {
  state BACKUP
  interface %s
  virtual_router_id 50
  priority %d
%s
  virtual_ipaddress {
    %s
  }
}
`, iface, prio, extra, vip)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "keepalived", "--dont-fork", "--vrrp", "-f", cfg,
		"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "r.pid"))
	// keepalived forks its VRRP process: a process group lets a test kill
	// them all at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("keepalived: %v", err)
	}
	t.Cleanup(func() { stopProc(cmd) })
	return cmd
}

// TestKeepalivedInterop puts lvsha and a real keepalived in one VRRP group,
// for VRRPv3 and for VRRPv2 with a password: each side follows the other's
// adverts, takes over when the other goes, and exactly one of them holds
// the VIP at every sampled moment once adverts flow.
func TestKeepalivedInterop(t *testing.T) {
	for _, tc := range []struct {
		name       string
		kaExtra    string // keepalived vrrp_instance lines
		lvshaExtra string // lvsha vrrp_instance keys
	}{
		{"v3", "  version 3\n  advert_int 0.1\n", "version = 3\nadvert_interval = \"100ms\"\n"},
		{"v2 password", "  version 2\n  advert_int 1\n  authentication {\n    auth_type PASS\n    auth_pass s3cret\n  }\n",
			"version = 2\nadvert_interval = \"1s\"\nauth_pass = \"s3cret\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const vip = "10.79.0.100"
			url := "http://" + vip + "/"
			// lb1 runs keepalived, lb2 runs lvsha; both answer their name.
			client, ds := newDirectors(t, vip+"/24", func(int) string { return tc.lvshaExtra }, 150, 100)
			ka, lv := ds[0], ds[1]
			holders := func() string { return vipHolders(t, ds, vip) }

			// keepalived (150) master, lvsha (100) backup.
			kaCmd := startKeepalivedVRRP(t, ka.ns, ka.iface, 150, vip+"/24", tc.kaExtra)
			eventually(t, "keepalived master", 20*time.Second, func() bool { return holders() == "lb1" })
			lv.start(t)
			eventually(t, "lvsha backup", 20*time.Second, func() bool { return lv.state() == "BACKUP" })
			for i := 0; i < 5; i++ {
				if h := holders(); h != "lb1" || lv.state() != "BACKUP" {
					t.Fatalf("sample %d: VIP holders %q, lvsha %s; want keepalived alone", i, h, lv.state())
				}
				time.Sleep(300 * time.Millisecond)
			}
			if counts, failed, _, _ := pollVIP(t, client, url, time.Second); failed != 0 || counts["lb1"] == 0 || counts["lb2"] != 0 {
				t.Fatalf("client with keepalived master: %v, %d failed", counts, failed)
			}

			// keepalived goes: lvsha takes over.
			stopProc(kaCmd)
			eventually(t, "lvsha takes over from keepalived", 20*time.Second, func() bool { return lv.state() == "MASTER" && holders() == "lb2" })
			if counts, failed, _, _ := pollVIP(t, client, url, time.Second); failed != 0 || counts["lb2"] == 0 {
				t.Fatalf("client after keepalived stopped: %v, %d failed", counts, failed)
			}

			// The reverse: keepalived returns as backup (priority 50), lvsha
			// stays master; then lvsha is SIGKILLed and keepalived takes over.
			startKeepalivedVRRP(t, ka.ns, ka.iface, 50, vip+"/24", tc.kaExtra)
			time.Sleep(3 * time.Second)
			for i := 0; i < 5; i++ {
				if h := holders(); h != "lb2" || lv.state() != "MASTER" {
					t.Fatalf("sample %d with keepalived backup: VIP holders %q, lvsha %s; want lvsha alone", i, h, lv.state())
				}
				time.Sleep(300 * time.Millisecond)
			}
			syscall.Kill(-lv.cmd.Process.Pid, syscall.SIGKILL)
			lv.cmd.Wait()
			eventually(t, "keepalived takes over from a killed lvsha", 20*time.Second, func() bool { return holders() == "lb1" })
			if counts, failed, _, _ := pollVIP(t, client, url, time.Second); failed != 0 || counts["lb1"] == 0 || counts["lb2"] != 0 {
				t.Fatalf("client after lvsha was killed: %v, %d failed", counts, failed)
			}
		})
	}
}
