package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// caps reads the capability sets (CapEff, CapPrm, ...) of a
// /proc/PID/status.
func caps(status string) map[string]uint64 {
	m := map[string]uint64{}
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.HasPrefix(k, "Cap") {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err == nil {
				m[k] = n
			}
		}
	}
	return m
}

// TestDaemonSecurity checks issue #20's security guarantees on a real
// `lvsha run` (VRRPv2 with a password, a cluster key, metrics, a notify
// hook and a track_exec, in namespaces: no IPVS needed):
//   - once started, the daemon's effective and permitted capabilities are
//     CAP_NET_ADMIN and CAP_NET_RAW alone, and it still works: master,
//     VIP added, a reload that adds a VIP, its hook run;
//   - its commands still run with root's capabilities (they regain them
//     at execve), and get their arguments as argv: shell metacharacters
//     arrive literally and run nothing;
//   - a client that is not root is refused by the control socket, with a
//     line saying why, counted in status;
//   - neither the password nor the key appears in its log, `lvsha status`
//     (text, json, --cluster), /metrics, `lvsha check`, or the warnings of
//     `lvsha convert`.
func TestDaemonSecurity(t *testing.T) {
	const (
		pass    = "Pw7xQ9zK"
		pass2   = "Qz3vN8rL" // after a reload
		vip     = "10.79.0.100"
		vip2    = "10.79.0.101"
		metrics = "127.0.0.1:9477"
	)
	na, nb := newNetns(t, "sec1"), newNetns(t, "sec2")
	veth(t, na, "10.79.0.1/24", nb, "10.79.0.2/24")
	iface := lastVeth(t, na)
	bin := lvshaBin(t)

	// A directory any user may enter, for the socket and a copy of the
	// binary that uid 65534 runs.
	pub, err := os.MkdirTemp("", "lvsha-sec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := filepath.Join(pub, "lvsha.sock")
	cfg := filepath.Join(dir, "lvsha.toml")
	logFile := filepath.Join(dir, "lvsha.log")
	hookLog := filepath.Join(dir, "hook.log")
	trackLog := filepath.Join(dir, "track.log")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	// Each command records its arguments one a line, and its own
	// capabilities. A shell that evaluated an argument would create one
	// of the marker files.
	marker := func(n int) string { return filepath.Join(dir, fmt.Sprintf("pwned%d", n)) }
	hostile := []string{"$(touch " + marker(1) + ")", "; touch " + marker(2), "`touch " + marker(3) + "`", "a && touch " + marker(4) + " | cat"}
	script := func(name, log string) string {
		p := filepath.Join(dir, name)
		body := "#!/bin/sh\n{ printf 'arg:%s\\n' \"$@\"; grep -E '^Cap(Eff|Prm):' /proc/self/status; } >> " + log + "\n"
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hook, track := script("hook.sh", hookLog), script("track.sh", trackLog)
	quoted := func(args []string) string {
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = strconv.Quote(a)
		}
		return strings.Join(q, ", ")
	}
	write := func(vips, authPass string) {
		text := fmt.Sprintf(`[director]
name = "lb1"
control_socket = %q
state_file = %q

[metrics]
listen = %q

[cluster]
bind_address = "10.79.0.1"
seeds = ["10.79.0.1"]
key_file = %q

[[vrrp_instance]]
name = "vi"
interface = %q
router_id = 62
priority = 150
version = 2
auth_pass = %s
advert_interval = "1s"
virtual_ips = [%s]
notify = [%s]

[[vrrp_instance.track_exec]]
name = "chk"

[[track_exec]]
name = "chk"
command = [%s]
interval = "1s"
`, sock, filepath.Join(dir, "state"), metrics, keyFile, iface, authPass, vips, quoted(append([]string{hook}, hostile...)), quoted(append([]string{track}, hostile...)))
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`"`+vip+`/24"`, strconv.Quote(pass))

	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command("ip", "netns", "exec", na, bin, "run", "-c", cfg, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProc(cmd) })
	state := func() (st struct {
		VRRP []struct {
			Name, State string
		} `json:"vrrp_instances"`
		ControlRefused uint64 `json:"control_refused"`
	}) {
		_ = statusJSON(sock, &st)
		return st
	}
	eventually(t, "lb1 master", 20*time.Second, func() bool {
		st := state()
		return len(st.VRRP) == 1 && st.VRRP[0].State == "MASTER"
	})
	holds := func(addr string) bool { return strings.Contains(inNS(t, na, "ip", "addr"), " "+addr+"/") }
	eventually(t, "the VIP on lb1", 5*time.Second, func() bool { return holds(vip) })

	// Capabilities: `ip netns exec` execs lvsha in its own process.
	pid := cmd.Process.Pid
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "lvsha" {
		t.Fatalf("process %d is %q, not lvsha", pid, comm)
	}
	const kept = 1<<12 | 1<<13 // CAP_NET_ADMIN, CAP_NET_RAW
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var bounding uint64
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue // a thread that ended
		}
		c := caps(string(b))
		if c["CapEff"] != kept || c["CapPrm"] != kept {
			t.Errorf("%s: CapEff %#x, CapPrm %#x; want %#x (CAP_NET_ADMIN, CAP_NET_RAW)", task, c["CapEff"], c["CapPrm"], kept)
		}
		bounding = c["CapBnd"]
	}
	t.Logf("lvsha's %d threads: CapEff and CapPrm %#x, CapBnd %#x", len(tasks), uint64(kept), bounding)
	if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), "kept=CAP_NET_ADMIN,CAP_NET_RAW") {
		t.Errorf("the log does not say which capabilities were kept")
	}

	// The daemon still works: a reload that adds a VIP and changes the
	// password; one refused for a password written as a number.
	outputs := map[string]string{}
	write(`"`+vip+`/24", "`+vip2+`/24"`, strconv.Quote(pass2))
	out, err := exec.Command(bin, "reload", "-s", sock).CombinedOutput()
	if err != nil {
		t.Fatalf("lvsha reload: %v\n%s", err, out)
	}
	outputs["reload"] = string(out)
	eventually(t, "the added VIP on lb1", 10*time.Second, func() bool { return holds(vip2) })
	const numeric = "73915824"
	write(`"`+vip+`/24", "`+vip2+`/24"`, numeric)
	out, err = exec.Command(bin, "reload", "-s", sock).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "auth_pass: wrong type") {
		t.Errorf("lvsha reload of a numeric password: %v, want it refused\n%s", err, out)
	}
	outputs["refused reload"] = string(out)
	// Status now says CONFIG STALE with the reload's error; the file is
	// made valid again for `lvsha check` below.
	write(`"`+vip+`/24", "`+vip2+`/24"`, strconv.Quote(pass2))

	// Its commands ran, with root's capabilities, their arguments as
	// given.
	for _, l := range []string{hookLog, trackLog} {
		eventually(t, filepath.Base(l)+" written", 10*time.Second, func() bool {
			b, _ := os.ReadFile(l)
			return bytes.Contains(b, []byte("CapEff"))
		})
		b, _ := os.ReadFile(l)
		for _, a := range hostile {
			if !bytes.Contains(b, []byte("arg:"+a+"\n")) {
				t.Errorf("%s lacks the argument %q as given:\n%s", l, a, b)
			}
		}
		c := caps(string(b))
		if c["CapEff"] != bounding || c["CapPrm"] != bounding {
			t.Errorf("%s: the command ran with CapEff %#x, CapPrm %#x; want root's, the bounding set %#x", l, c["CapEff"], c["CapPrm"], bounding)
		}
	}
	if b, _ := os.ReadFile(hookLog); !bytes.Contains(b, []byte("arg:MASTER\n")) {
		t.Errorf("the notify hook did not run for MASTER:\n%s", b)
	}
	for i := range len(hostile) {
		if _, err := os.Stat(marker(i + 1)); err == nil {
			t.Errorf("%s exists: an argument went through a shell", marker(i+1))
		}
	}

	// A client that is not root: the socket's mode stops it first; with
	// the mode loosened by hand, its credentials do.
	nobodyBin := filepath.Join(pub, "lvsha")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nobodyBin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, nobodyBin, "status", "-s", sock)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := c.CombinedOutput()
		return string(out), err
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm()&0o117 != 0 {
		t.Errorf("control socket: %v, mode %v; want 0660 or tighter", err, fi.Mode().Perm())
	}
	if out, err := asNobody(); err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("lvsha status as uid 65534 with the socket at 0600: %v\n%s", err, out)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	refusal, err := asNobody()
	if err == nil || !strings.Contains(refusal, "403 Forbidden: control socket: uid 65534 refused: only root (uid 0) may use lvsha's control socket") {
		t.Errorf("lvsha status as uid 65534 with the socket at 0666: %v, want the refusal\n%s", err, refusal)
	}
	t.Logf("lvsha status as uid 65534: %s", strings.TrimSpace(refusal))
	if st := state(); st.ControlRefused != 1 {
		t.Errorf("status control_refused %d, want 1", st.ControlRefused)
	}

	// Secrets: everything lvsha prints about this director.
	run := func(name string, args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		var exit *exec.ExitError
		if name == "convert" && errors.As(err, &exit) && exit.ExitCode() == 3 {
			err = nil // converted, with warnings
		}
		if err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
		outputs[name] = string(out)
	}
	run("status", bin, "status", "-s", sock)
	run("status -o json", bin, "status", "-s", sock, "-o", "json")
	run("status -o wide", bin, "status", "-s", sock, "-o", "wide")
	run("status --cluster", bin, "status", "-s", sock, "--cluster")
	run("events", bin, "events", "-s", sock)
	run("check", bin, "check", "-c", cfg)
	run("metrics", "ip", "netns", "exec", na, "curl", "-sf", "http://"+metrics+"/metrics")
	ka := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(ka, []byte(kaWithPasswords(pass)), 0o644); err != nil {
		t.Fatal(err)
	}
	toml := filepath.Join(dir, "converted.toml")
	run("convert", bin, "convert", "-o", toml, ka)
	if !strings.Contains(outputs["status -o json"], "not shown: a secret") {
		t.Errorf("status does not show the refused reload's error, so the test of it tests nothing:\n%s", outputs["status -o json"])
	}
	if converted, _ := os.ReadFile(toml); !strings.Contains(string(converted), `auth_pass = "`+pass+`"`) {
		t.Errorf("convert did not carry the password into the TOML:\n%s", converted)
	}
	if !strings.Contains(outputs["convert"], "not carried") {
		t.Errorf("convert printed no warning, so the test of its warnings tests nothing:\n%s", outputs["convert"])
	}
	stopProc(cmd)
	log, _ := os.ReadFile(logFile)
	outputs["log"] = string(log)
	secrets := map[string]string{
		"auth_pass": pass, "auth_pass after the reload": pass2, "the refused auth_pass": numeric, "the cluster key": string(key), "the cluster key (hex)": hex.EncodeToString(key),
		"the cluster key (base64)": base64.StdEncoding.EncodeToString(key), "the cluster key (Go bytes)": fmt.Sprint(key),
		"the cluster key (%q)": strconv.Quote(string(key)),
	}
	for name, out := range outputs {
		for what, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s shows %s", name, what)
			}
		}
		if out == "" && name != "convert" {
			t.Errorf("%s printed nothing, so the test of it tests nothing", name)
		}
	}
}

// kaWithPasswords is a keepalived configuration whose instances carry
// pass in each way convert treats it: carried (PASS, longer than the 8
// bytes VRRPv2 sends), not carried (AH; version 3), and repeated.
func kaWithPasswords(pass string) string {
	inst := func(name string, id int, extra, auth string) string {
		return fmt.Sprintf(`vrrp_instance %s {
    state BACKUP
    interface eth0
    virtual_router_id %d
    priority 100
    advert_int 1
%s    authentication {
%s    }
    virtual_ipaddress {
        10.0.%d.100/24
    }
}
`, name, id, extra, auth, id)
	}
	return inst("VI_PASS", 51, "", "        auth_type PASS\n        auth_pass "+pass+"tail\n") +
		inst("VI_AH", 52, "", "        auth_type AH\n        auth_pass "+pass+"\n") +
		inst("VI_V3", 53, "    version 3\n", "        auth_type PASS\n        auth_pass "+pass+"\n") +
		inst("VI_ODD", 54, "", "        auth_type PASS\n        auth_pass "+pass+"\n        auth_secret "+pass+"\n")
}
