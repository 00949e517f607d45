package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
)

// fakeHost is a host as a test sets it up.
type fakeHost struct {
	ifaces  []string         // the interfaces that exist
	badProg map[string]error // what LookPath says of a program that cannot run
	ipvs    error
	caps    uint64
}

func (h fakeHost) Interface(name string) error {
	if !slices.Contains(h.ifaces, name) {
		return errors.New("no such network interface")
	}
	return nil
}

func (h fakeHost) LookPath(file string) (string, error) {
	if err := h.badProg[file]; err != nil {
		return "", &exec.Error{Name: file, Err: err}
	}
	if !strings.Contains(file, "/") {
		return "/usr/bin/" + file, nil
	}
	return file, nil
}

func (h fakeHost) IPVS() error           { return h.ipvs }
func (h fakeHost) Caps() (uint64, error) { return h.caps, nil }

// hostTestConfig has every kind of command and interface a host check
// looks at. web's two first real servers inherit its exec check (one
// line for both); the third has its own.
const hostTestConfig = `[[virtual_server]]
name = "web"
address = "10.0.0.1:80"
notify_quorum_up = ["/etc/lvsha/quorum-up.sh"]
notify_quorum_down = ["/etc/lvsha/quorum-down.sh"]
check = { type = "exec", command = ["/usr/local/bin/check-web", "--fast"] }
  [[virtual_server.real_server]]
  address = "10.0.0.2:80"
  notify_up = ["/etc/lvsha/rs-up.sh"]
  notify_down = ["/etc/lvsha/rs-down.sh"]
  [[virtual_server.real_server]]
  address = "10.0.0.3:80"
  [[virtual_server.real_server]]
  address = "10.0.0.4:80"
  check = { type = "exec", command = ["check-other"] }

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
router_id = 51
virtual_ips = ["10.0.0.100/24"]
track_interfaces = ["eth1"]
notify_master = ["/etc/lvsha/master.sh"]
notify_backup = ["/etc/lvsha/backup.sh"]
notify_fault = ["/etc/lvsha/fault.sh"]
notify_stop = ["/etc/lvsha/stop.sh"]
notify = ["/etc/lvsha/any.sh"]
  [[vrrp_instance.track_interface]]
  name = "bond0"
  weight = 20
  [[vrrp_instance.track_exec]]
  name = "chk"

[[track_exec]]
name = "chk"
command = ["/usr/local/bin/chk-haproxy"]
`

// checkHost reports every item a file needs of the host, at the file's
// line, and every one missing at once.
func TestCheckHost(t *testing.T) {
	cfg, err := conf.Parse("h.toml", []byte(hostTestConfig))
	if err != nil {
		t.Fatal(err)
	}
	const (
		admin = uint64(1) << unix.CAP_NET_ADMIN
		raw   = uint64(1) << unix.CAP_NET_RAW
	)
	fine := fakeHost{ifaces: []string{"eth0", "eth1", "bond0"}, caps: admin | raw}
	// Every item of a fine host, in the file's order.
	allOK := []string{
		"h.toml:4: virtual_server[0].notify_quorum_up: ok: /etc/lvsha/quorum-up.sh is executable",
		"h.toml:5: virtual_server[0].notify_quorum_down: ok: /etc/lvsha/quorum-down.sh is executable",
		"h.toml:6: virtual_server[0].check.command: ok: /usr/local/bin/check-web is executable",
		"h.toml:9: virtual_server[0].real_server[0].notify_up: ok: /etc/lvsha/rs-up.sh is executable",
		"h.toml:10: virtual_server[0].real_server[0].notify_down: ok: /etc/lvsha/rs-down.sh is executable",
		"h.toml:15: virtual_server[0].real_server[2].check.command: ok: check-other is /usr/bin/check-other, executable",
		"h.toml:19: vrrp_instance[0].interface: ok: interface eth0 exists",
		"h.toml:22: vrrp_instance[0].track_interfaces[0]: ok: interface eth1 exists",
		"h.toml:23: vrrp_instance[0].notify_master: ok: /etc/lvsha/master.sh is executable",
		"h.toml:24: vrrp_instance[0].notify_backup: ok: /etc/lvsha/backup.sh is executable",
		"h.toml:25: vrrp_instance[0].notify_fault: ok: /etc/lvsha/fault.sh is executable",
		"h.toml:26: vrrp_instance[0].notify_stop: ok: /etc/lvsha/stop.sh is executable",
		"h.toml:27: vrrp_instance[0].notify: ok: /etc/lvsha/any.sh is executable",
		"h.toml:29: vrrp_instance[0].track_interface[0].name: ok: interface bond0 exists",
		"h.toml:36: track_exec[0].command: ok: /usr/local/bin/chk-haproxy is executable",
		"host: ok: IPVS reachable",
		`host: ok: capability CAP_NET_ADMIN (to program IPVS and the VRRP addresses)`,
		`host: ok: capability CAP_NET_RAW (for the raw sockets of vrrp_instance "VI_1")`,
	}
	with := func(f func(h *fakeHost)) fakeHost {
		h := fine
		f(&h)
		return h
	}
	for _, tc := range []struct {
		name    string
		host    fakeHost
		missing []string // every line missing, in order
	}{
		{name: "all fine", host: fine},
		{name: "missing interface", host: with(func(h *fakeHost) { h.ifaces = []string{"eth0", "bond0"} }),
			missing: []string{"h.toml:22: vrrp_instance[0].track_interfaces[0]: missing: interface eth1: no such network interface"}},
		{name: "non-executable script and a program not in PATH", host: with(func(h *fakeHost) {
			h.badProg = map[string]error{"/etc/lvsha/master.sh": fs.ErrPermission, "check-other": exec.ErrNotFound,
				"/usr/local/bin/chk-haproxy": &fs.PathError{Op: "stat", Path: "/usr/local/bin/chk-haproxy", Err: syscall.ENOENT}}
		}), missing: []string{
			"h.toml:15: virtual_server[0].real_server[2].check.command: missing: check-other: not found in PATH",
			"h.toml:23: vrrp_instance[0].notify_master: missing: /etc/lvsha/master.sh: permission denied",
			"h.toml:36: track_exec[0].command: missing: /usr/local/bin/chk-haproxy: no such file or directory",
		}},
		{name: "missing IPVS", host: with(func(h *fakeHost) {
			h.ipvs = errors.New("IPVS is not available in this kernel (try: modprobe ip_vs)")
		}), missing: []string{"host: missing: IPVS not reachable: IPVS is not available in this kernel (try: modprobe ip_vs)"}},
		{name: "missing capability", host: with(func(h *fakeHost) { h.caps = admin }),
			missing: []string{`host: missing: capability CAP_NET_RAW (for the raw sockets of vrrp_instance "VI_1"): this process lacks it`}},
		{name: "everything missing at once", host: fakeHost{badProg: map[string]error{"/etc/lvsha/any.sh": fs.ErrPermission}, ipvs: errors.New("no")},
			missing: []string{
				"h.toml:19: vrrp_instance[0].interface: missing: interface eth0",
				"h.toml:22: vrrp_instance[0].track_interfaces[0]: missing: interface eth1",
				"h.toml:27: vrrp_instance[0].notify: missing: /etc/lvsha/any.sh: permission denied",
				"h.toml:29: vrrp_instance[0].track_interface[0].name: missing: interface bond0",
				"host: missing: IPVS not reachable: no",
				"host: missing: capability CAP_NET_ADMIN",
				"host: missing: capability CAP_NET_RAW",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			findings := checkHost(cfg, tc.host)
			if len(findings) != len(allOK) {
				t.Fatalf("%d findings, want one per item, %d:\n%s", len(findings), len(allOK), joinFindings(findings))
			}
			var missing []string
			for i, f := range findings {
				if f.Missing {
					missing = append(missing, f.String())
				} else if got := f.String(); got != allOK[i] {
					t.Errorf("finding %d = %q, want %q", i, got, allOK[i])
				}
			}
			if len(missing) != len(tc.missing) {
				t.Fatalf("missing:\n%s\nwant:\n%s", strings.Join(missing, "\n"), strings.Join(tc.missing, "\n"))
			}
			for i, want := range tc.missing {
				if !strings.HasPrefix(missing[i], want) {
					t.Errorf("missing[%d] = %q, want it to start %q", i, missing[i], want)
				}
			}
			var out bytes.Buffer
			err := writeHostFindings(&out, findings, true)
			if n := strings.Count(out.String(), "\n"); n != len(tc.missing) {
				t.Errorf("missing only: %d lines, want %d:\n%s", n, len(tc.missing), out.String())
			}
			var ee *exitError
			switch {
			case len(tc.missing) == 0 && err != nil:
				t.Errorf("writeHostFindings: %v, want nil", err)
			case len(tc.missing) > 0 && (!errors.As(err, &ee) || ee.code != 1):
				t.Errorf("writeHostFindings: %v, want exit status 1", err)
			}
		})
	}
}

func joinFindings(fs []hostFinding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// `lvsha check --host` on this machine: a valid file whose interface does
// not exist exits 1 naming it, and says whether IPVS answers, with the
// kernel's reason when not (this build host's kernel has no IPVS; a
// host that has it must say so).
func TestCheckHostReal(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	lo, err := net.InterfaceByIndex(1) // loopback: the one interface every namespace has
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "lvsha.toml")
	cfg := `[[vrrp_instance]]
name = "VI_1"
interface = "` + lo.Name + `"
router_id = 51
virtual_ips = ["10.0.0.100/24"]
track_interfaces = ["lvsha-nope0"]
notify_master = ["` + script + `"]
`
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := runMain(context.Background(), []string{"check", "--host", file}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	want := []string{
		file + ": valid, 0 virtual servers",
		file + ":3: vrrp_instance[0].interface: ok: interface " + lo.Name + " exists",
		file + ":6: vrrp_instance[0].track_interfaces[0]: missing: interface lvsha-nope0: no such network interface",
		file + ":7: vrrp_instance[0].notify_master: ok: " + script + " is executable",
	}
	if h, err := ipvs.Open(""); err != nil {
		want = append(want, "host: missing: IPVS not reachable: "+err.Error())
	} else {
		h.Close()
		want = append(want, "host: ok: IPVS reachable")
	}
	for _, w := range want {
		if !strings.Contains(stdout.String(), w+"\n") {
			t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "lvsha check: host check: ") {
		t.Errorf("stderr does not say the host check failed:\n%s", stderr.String())
	}

	// -q prints the missing items alone, on stderr.
	stdout.Reset()
	stderr.Reset()
	if code := runMain(context.Background(), []string{"check", "-q", "--host", file}, &stdout, &stderr); code != 1 {
		t.Errorf("-q: exit %d, want 1", code)
	}
	if stdout.Len() != 0 || strings.Contains(stderr.String(), ": ok: ") || !strings.Contains(stderr.String(), "lvsha-nope0") {
		t.Errorf("-q: stdout %q, stderr:\n%s\nwant the missing items alone, on stderr", stdout.String(), stderr.String())
	}

	if code := runMain(context.Background(), []string{"check", "--host", "--diff", file}, &stdout, &stderr); code != 2 {
		t.Errorf("--host --diff: exit %d, want 2 (usage)", code)
	}
}
