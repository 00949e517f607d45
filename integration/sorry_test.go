package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSorryServerAndCleanup: with every real server down, the sorry server
// serves the VIP and leaves once a real server is back; on_down = "remove"
// takes a failed server out of the kernel; `lvsha run --cleanup` removes
// lvsha's service on SIGTERM and leaves a foreign one alone.
func TestSorryServerAndCleanup(t *testing.T) {
	s := newSeed(t, defaultSeedCheck())
	cfg := mustRead(t, s.cfg)
	cfg = strings.Replace(cfg, `forwarding = "nat"`, "forwarding = \"nat\"\non_down = \"remove\"\nsorry_server = \"192.168.164.10:8080\"", 1)
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s.startWeb(t, "web1")
	s.startWeb(t, "web2")
	startIn(t, s.web1, []string{envRole + "=web", "LVSHA_NAME=sorry", "LVSHA_LISTEN=:8080"}, self(t))
	s.waitWebs(t)
	inNS(t, s.lb, "ipvsadm", "-A", "-u", "10.9.9.9:53", "-s", "rr") // not lvsha's

	bin := lvshaBin(t)
	lv := startIn(t, s.lb, nil, bin, "run", "--cleanup", "-c", s.cfg)
	eventually(t, "table programmed", 10*time.Second, func() bool { return s.weight(t, "192.168.164.11:80") == "1" })

	s.stopWeb("web2")
	eventually(t, "web2 removed (on_down = remove)", 10*time.Second, func() bool { return s.weight(t, "192.168.164.11:80") == "absent" })
	if w := s.weight(t, "192.168.164.10:8080"); w != "absent" {
		t.Fatalf("sorry server in the table while web1 is up (weight %s)", w)
	}
	s.stopWeb("web1")
	eventually(t, "sorry server added", 10*time.Second, func() bool { return s.weight(t, "192.168.164.10:8080") == "1" })
	if body, err := s.get(t); err != nil || body != "sorry" {
		t.Fatalf("with every real server down the client got %q, %v; want the sorry server", body, err)
	}
	t.Logf("all real servers down: the sorry server answers\n%s", inNS(t, s.lb, "ipvsadm", "-Ln"))
	s.startWeb(t, "web2")
	eventually(t, "sorry server removed", 10*time.Second, func() bool { return s.weight(t, "192.168.164.10:8080") == "absent" })
	if body, err := s.get(t); err != nil || body != "web2" {
		t.Fatalf("after web2 recovered the client got %q, %v; want web2", body, err)
	}

	stopProc(lv)
	got := ipvsadmTable(t, s.lb)
	if strings.Contains(got, seedVIP) || !strings.Contains(got, "UDP  10.9.9.9:53 rr") {
		t.Fatalf("after --cleanup want only the foreign service left:\n%s", got)
	}
}

// TestRunErrors: lvsha explains what is wrong instead of failing obscurely.
func TestRunErrors(t *testing.T) {
	bin := lvshaBin(t)
	// The unprivileged run must be able to read its config: t.TempDir's
	// parents are private to root.
	dir, err := os.MkdirTemp("/tmp", "lvsha-errors-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cfg := filepath.Join(dir, "lvsha.toml")
	os.WriteFile(cfg, []byte("[director]\ncontrol_socket = \""+filepath.Join(dir, "s.sock")+"\"\n[[virtual_server]]\naddress = \"10.0.0.1:80\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.2:80\"\n"), 0o644)
	tests := []struct {
		name string
		args []string
		uid  uint32
		want string
	}{
		{"missing config", []string{"run", "-c", filepath.Join(dir, "absent.toml")}, 0, "does not exist"},
		{"not root", []string{"run", "-c", cfg}, 65534, "CAP_NET_ADMIN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			if tc.uid != 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tc.uid, Gid: tc.uid}}
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(stderr.String(), tc.want) {
					t.Errorf("lvsha %v: err %v, stderr %q; want failure mentioning %q", tc.args, err, stderr.String(), tc.want)
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("lvsha %v did not exit", tc.args)
			}
		})
	}
}
