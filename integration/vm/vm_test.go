package vm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestModuleClosure(t *testing.T) {
	root := t.TempDir()
	k := &Kernel{Release: "6.12.0-test", Root: root}
	dir := filepath.Join(root, "lib/modules", k.Release)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dep := `kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/ipvs/ip_vs_rr.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nf_conntrack.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/drivers/net/veth.ko.xz:
kernel/net/sctp/sctp.ko: kernel/lib/libcrc32c.ko
`
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		mods  []string
		files []string
	}{
		{"dependencies included once", []string{"ip_vs_rr", "ip_vs"}, []string{
			"kernel/lib/libcrc32c.ko", "kernel/net/netfilter/ipvs/ip_vs.ko", "kernel/net/netfilter/ipvs/ip_vs_rr.ko", "kernel/net/netfilter/nf_conntrack.ko"}},
		{"compressed name matched", []string{"veth"}, []string{"kernel/drivers/net/veth.ko.xz"}},
		{"built in or absent skipped", []string{"bridge", "ip_vs_twos"}, []string{}},
		{"no prefix matches", []string{"ip_vs_r"}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := moduleClosure(k, tc.mods)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.files, got); diff != "" {
				t.Errorf("moduleClosure(%v) (-want +got):\n%s", tc.mods, diff)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"a"}, "'a'"},
		{[]string{"-test.run", "Test(A|B)$"}, "'-test.run' 'Test(A|B)$'"},
		{[]string{"it's"}, `'it'\''s'`},
		{[]string{""}, "''"},
	} {
		if got := Quote(tc.argv...); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.argv, got, tc.want)
		}
	}
}

func TestStripEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"\x1bc\x1b[?7l\x1b[2JLVSHA-VM-START 2.5": "LVSHA-VM-START 2.5",
		"plain":                                  "plain",
		"\x1b[0mSeaBIOS\x1b[1;31m":               "SeaBIOS",
	} {
		if got := stripEscapes(in); got != want {
			t.Errorf("stripEscapes(%q) = %q, want %q", in, got, want)
		}
	}
}

// The init script is the contract with the guest: every module loaded up
// front, IPVS verified before the command, the command's status reported.
func TestInitScript(t *testing.T) {
	s := initScript(Spec{Command: "run-tests -x", Env: []string{"A=1", "B=it's"}})
	for _, want := range []string{
		"modprobe -a " + strings.Join(Modules(), " "),
		"[ ! -e /proc/net/ip_vs ]",
		"echo \"" + noIPVSMarker + "\"",
		"export A='1'\n",
		`export B='it'\''s'` + "\n",
		"run-tests -x\n",
		"echo \"" + exitMarker + "$?\"",
		"poweroff -f",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q:\n%s", want, s)
		}
	}
	if strings.Index(s, startMarker+" $up") > strings.Index(s, "/bin/bash /tmp/cmd.sh") {
		t.Errorf("start marker after the command:\n%s", s)
	}
}

// bootKernel prepares the kernel the tests in package integration use;
// these tests fail, never skip, without qemu or the package index.
func bootKernel(t *testing.T, ctx context.Context) *Kernel {
	t.Helper()
	k, err := PrepareKernel(ctx, CacheDir(), KernelPackage())
	if err != nil {
		t.Fatalf("prepare kernel: %v", err)
	}
	return k
}

// TestRunReportsStatusAndOutput boots the VM once: files and environment
// reach the command, its output comes back without the firmware noise, its
// exit status is the result, and IPVS with every scheduler is loaded.
func TestRunReportsStatusAndOutput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k := bootKernel(t, ctx)
	data := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(data, []byte("payload from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Run(ctx, k, Spec{
		Files:   map[string]string{"/data/in": data},
		Env:     []string{"GREETING=it's here"},
		Command: `cat /data/in; echo "env: $GREETING"; echo "sh: $(readlink /bin/sh)"; grep -o '^ip_vs[a-z_]*' /proc/modules | sort | tr '\n' ' '; echo; exit 7`,
		Output:  &out,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if res.ExitCode != 7 {
		t.Errorf("exit code %d, want 7\n%s", res.ExitCode, out.String())
	}
	got := out.String()
	var mods []string
	for _, m := range Modules() {
		if strings.HasPrefix(m, "ip_vs") {
			mods = append(mods, m)
		}
	}
	for _, want := range []string{"payload from the host\n", "env: it's here\n", "sh: /bin/bash\n", strings.Join(slices.Sorted(slices.Values(mods)), " ") + " \n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, noise := range []string{"SeaBIOS", startMarker, exitMarker, "reboot: Power down", "\x1b"} {
		if strings.Contains(got, noise) {
			t.Errorf("output contains %q:\n%s", noise, got)
		}
	}
	if res.Boot <= 0 || res.Uptime <= 0 || res.Total < res.Boot {
		t.Errorf("timings not measured: %+v", res)
	}
	t.Logf("kernel %s: boot to init %v (guest uptime %v), whole run %v", k.Release, res.Boot, res.Uptime, res.Total)
}

// lineWatch calls fn once, the first time a written line equals want.
type lineWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	fn   func()
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.fn != nil && strings.Contains(w.buf.String(), w.want+"\n") {
		w.fn()
		w.fn = nil
	}
	return len(p), nil
}

// TestRunCancel: a command that never ends is stopped by the context, and
// Run returns promptly with the context's error rather than a status.
func TestRunCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k := bootKernel(t, ctx)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stopped time.Time
	w := &lineWatch{want: "started", fn: func() { stopped = time.Now(); stop() }}
	res, err := Run(runCtx, k, Spec{Command: "echo started; sleep 3600", Output: w})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run of a command that never ends, cancelled: result %+v, err %v; want context.Canceled\n%s", res, err, w.buf.String())
	}
	if stopped.IsZero() {
		t.Fatalf("command never started:\n%s", w.buf.String())
	}
	if d := time.Since(stopped); d > 10*time.Second {
		t.Errorf("Run returned %v after cancel, want promptly", d)
	}
}
