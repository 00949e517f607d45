// Package packaging holds the systemd unit, the default configuration, the
// man pages' sources and the bash completion that scripts/package puts in
// lvsha's .deb; its test builds that package and checks it as dpkg,
// systemd, lintian and bash see it.
package packaging

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// version is what the test stamps the package with.
const version = "1.2.3~test"

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// TestDeb builds the .deb with scripts/package, then checks what it holds,
// installs it into a throwaway root (dpkg --root), checks the installed
// binary, unit, configuration, man pages and completion there, removes and
// purges it, and runs lintian on it.
func TestDeb(t *testing.T) {
	// scripts/setup installs each tool. A missing one fails the test: CI
	// must not pass by checking nothing.
	for _, tool := range []string{"dpkg-deb", "dpkg", "lintian", "go-md2man", "systemd-analyze", "bash", "setpriv", "man"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/setup installs it): %v", tool, err)
		}
	}
	out := t.TempDir()
	deb := strings.TrimSpace(run(t, []string{"LVSHA_VERSION=" + version}, "../scripts/package", out))
	if want := filepath.Join(out, "lvsha_"+version+"_"+strings.TrimSpace(run(t, nil, "dpkg", "--print-architecture"))+".deb"); deb != want {
		t.Fatalf("scripts/package built %q, want %q", deb, want)
	}

	t.Run("contents", func(t *testing.T) {
		listing := run(t, nil, "dpkg-deb", "--contents", deb)
		for _, want := range []struct{ mode, path string }{
			{"-rwxr-xr-x", "./usr/sbin/lvsha"},
			{"-rw-r--r--", "./lib/systemd/system/lvsha.service"},
			{"-rw-r-----", "./etc/lvsha/lvsha.toml"},
			{"-rw-r--r--", "./usr/share/man/man8/lvsha.8.gz"},
			{"-rw-r--r--", "./usr/share/man/man5/lvsha.toml.5.gz"},
			{"-rw-r--r--", "./usr/share/bash-completion/completions/lvsha"},
			{"-rw-r--r--", "./usr/share/doc/lvsha/copyright"},
			{"-rw-r--r--", "./usr/share/doc/lvsha/changelog.gz"},
			{"-rw-r--r--", "./usr/share/doc/lvsha/operations.md"},
			// operations.md links to these three.
			{"-rw-r--r--", "./usr/share/doc/lvsha/metrics.md"},
			{"-rw-r--r--", "./usr/share/doc/lvsha/lvsha-alerts.yml"},
			{"-rw-r--r--", "./usr/share/doc/lvsha/lvsha-dashboard.json"},
			{"-rw-r--r--", "./usr/share/doc/lvsha/examples/nat.toml"},
		} {
			re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want.mode) + ` root/root +\d+ \S+ \S+ ` + regexp.QuoteMeta(want.path) + `$`)
			if !re.MatchString(listing) {
				t.Errorf("the package lacks %s %s root/root:\n%s", want.mode, want.path, listing)
			}
		}
		if got := run(t, nil, "dpkg-deb", "--info", deb, "conffiles"); got != "/etc/lvsha/lvsha.toml\n" {
			t.Errorf("conffiles = %q, want the configuration alone", got)
		}
		if got := run(t, nil, "dpkg-deb", "--field", deb, "Version"); got != version+"\n" {
			t.Errorf("Version = %q, want %q", got, version)
		}
	})

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A machine that excludes man pages or docs (Docker images do) must
	// still install them here.
	run(t, nil, "dpkg", "--root="+root, "--path-include=*", "--install", deb)
	if st := run(t, nil, "dpkg", "--root="+root, "--status", "lvsha"); !strings.Contains(st, "Status: install ok installed") {
		t.Fatalf("after dpkg --install:\n%s", st)
	}
	bin := filepath.Join(root, "usr/sbin/lvsha")

	t.Run("binary", func(t *testing.T) {
		if got := run(t, nil, bin, "version"); !strings.HasPrefix(got, "lvsha "+version+" go") {
			t.Errorf("lvsha version = %q, want the package's version stamped in", got)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
			t.Errorf("lvsha links %v (%v), want a static binary", libs, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("lvsha has a program interpreter, want a static binary")
			}
		}
		if f.Section(".symtab") != nil {
			t.Error("lvsha is not stripped")
		}
	})

	t.Run("configuration", func(t *testing.T) {
		conffile := filepath.Join(root, "etc/lvsha/lvsha.toml")
		if got := run(t, nil, bin, "check", conffile); !strings.Contains(got, "valid, 0 virtual servers") {
			t.Errorf("lvsha check of the default configuration:\n%s", got)
		}
		// Its commented-out settings form a valid file: the example is
		// one an operator can start from.
		text, err := os.ReadFile(conffile)
		if err != nil {
			t.Fatal(err)
		}
		example := regexp.MustCompile(`(?m)^#([^ #\n]|  [^ ])`).ReplaceAllString(string(text), "$1")
		path := filepath.Join(t.TempDir(), "example.toml")
		if err := os.WriteFile(path, []byte(example), 0o644); err != nil {
			t.Fatal(err)
		}
		got := run(t, nil, bin, "check", path)
		for _, want := range []string{"valid, 1 virtual servers", "TCP  192.0.2.100:80 rr", "-> 10.0.0.11:80                 Masq", "vi_1: eth0 vrid 51", "tracks virtual_server web"} {
			if !strings.Contains(got, want) {
				t.Errorf("lvsha check of the uncommented example lacks %q:\n%s", want, got)
			}
		}
	})

	t.Run("capabilities", func(t *testing.T) {
		// The unit's bounding set without its two capabilities: lvsha run
		// says which are missing before touching anything.
		dir := t.TempDir()
		cfg := filepath.Join(dir, "vrrp.toml")
		text := fmt.Sprintf("[director]\ncontrol_socket = %q\nstate_file = %q\n\n[[vrrp_instance]]\nname = \"vi_1\"\ninterface = \"lo\"\nrouter_id = 5\nvirtual_ips = [\"192.0.2.1\"]\n",
			filepath.Join(dir, "lvsha.sock"), filepath.Join(dir, "state.json"))
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("setpriv", "--bounding-set=-net_admin,-net_raw", bin, "run", "-c", cfg)
		out, err := cmd.CombinedOutput()
		want := `lvsha run: missing capabilities: CAP_NET_ADMIN (to program IPVS and the VRRP addresses), CAP_NET_RAW (for the raw sockets of vrrp_instance "vi_1")`
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), want) {
			t.Errorf("lvsha run without CAP_NET_ADMIN and CAP_NET_RAW: %v\n%s\nwant exit 1 and %q", err, out, want)
		}
		if _, err := os.Stat(filepath.Join(dir, "lvsha.sock")); err == nil {
			t.Error("lvsha run opened its control socket before the capability check")
		}
	})

	t.Run("systemd", func(t *testing.T) {
		unit := filepath.Join(root, "lib/systemd/system/lvsha.service")
		settings := unitSettings(t, unit)
		for _, want := range []struct{ key, value string }{
			{"Type", "notify"},
			{"ExecStart", "/usr/sbin/lvsha run -c /etc/lvsha/lvsha.toml"},
			{"ExecReload", "/usr/sbin/lvsha reload"},
			{"WatchdogSec", "30s"},
			{"KillMode", "mixed"},
			{"Restart", "on-failure"},
			{"RuntimeDirectory", "lvsha"},
			{"StateDirectory", "lvsha"},
			{"CapabilityBoundingSet", "CAP_NET_ADMIN CAP_NET_RAW"},
			{"AmbientCapabilities", "CAP_NET_ADMIN CAP_NET_RAW"},
			{"NoNewPrivileges", "yes"},
			{"ProtectSystem", "strict"},
		} {
			if got := settings[want.key]; !slices.Equal(got, []string{want.value}) {
				t.Errorf("%s=%q, want %q", want.key, got, want.value)
			}
		}
		// systemd-analyze verify checks the unit as systemd would load it
		// in the installed root: every key known and valid, ExecStart and
		// ExecReload executable, the man pages of Documentation= there.
		// It exits 0 on unknown keys, so any output fails the test too.
		// The targets lvsha.service orders after are the host's.
		if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
			t.Fatal(err)
		}
		run(t, nil, "cp", "-a", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/"))
		cmd := exec.Command("systemd-analyze", "verify", "--root="+root, "--man=yes", "lvsha.service")
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(root, "usr/share/man"))
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify lvsha.service: %v\n%s", err, out)
		}
	})

	t.Run("man", func(t *testing.T) {
		// groff's warnings about layout, not content.
		typographic := regexp.MustCompile(`table wider than line width|cannot adjust line|can't break line|^warning: file '<standard input>', around line \d+:$`)
		for _, page := range []struct{ file, want string }{
			{"usr/share/man/man8/lvsha.8.gz", "lvsha - health-checking high-availability director for Linux IPVS"},
			{"usr/share/man/man5/lvsha.toml.5.gz", "resync_interval"},
		} {
			cmd := exec.Command("man", "--warnings", "-l", filepath.Join(root, page.file))
			cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0", "PAGER=cat")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			// Errors only: configuration.md's tables are wider than 80
			// columns, which groff says without harm to the text.
			var warnings []string
			for _, l := range strings.Split(stderr.String(), "\n") {
				if l != "" && !typographic.MatchString(l) {
					warnings = append(warnings, l)
				}
			}
			if err != nil || len(warnings) > 0 || !strings.Contains(string(out), page.want) {
				t.Errorf("man %s: %v, warnings %q; want it to say %q", page.file, err, warnings, page.want)
			}
		}
	})

	t.Run("completion", func(t *testing.T) {
		completion := filepath.Join(root, "usr/share/bash-completion/completions/lvsha")
		complete := func(words ...string) []string {
			t.Helper()
			script := fmt.Sprintf("source %q; COMP_WORDS=(%s); COMP_CWORD=%d; _lvsha; printf '%%s\\n' \"${COMPREPLY[@]}\"",
				completion, quoteAll(words), len(words)-1)
			return strings.Fields(run(t, nil, "bash", "--norc", "-c", script))
		}
		commands := []string{"run", "check", "reload", "drain", "maint", "undrain", "events", "status", "convert", "version"}
		got := complete("lvsha", "")
		for _, c := range commands {
			if !slices.Contains(got, c) {
				t.Errorf("lvsha <TAB> offers %v, lacking %s", got, c)
			}
		}
		// Each subcommand's flags, as its own -h lists them.
		for _, c := range commands {
			want := flagsOf(t, bin, c)
			got := complete("lvsha", c, "-")
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("lvsha %s -<TAB> offers %v, want %v (lvsha %s -h)", c, got, want, c)
			}
		}
		for _, tc := range []struct {
			words []string
			want  []string
		}{
			{[]string{"lvsha", "status", "-o", ""}, []string{"text", "wide", "json"}},
			{[]string{"lvsha", "reload", "--o", ""}, []string{"text", "json"}},
			{[]string{"lvsha", "run", "--log-level", ""}, []string{"debug", "info", "warn", "error"}},
			{[]string{"lvsha", "run", "-log-format", "j"}, []string{"json"}},
			{[]string{"lvsha", "ch"}, []string{"check"}},
		} {
			if got := complete(tc.words...); !slices.Equal(got, tc.want) {
				t.Errorf("%q <TAB> offers %v, want %v", tc.words, got, tc.want)
			}
		}
	})

	t.Run("remove", func(t *testing.T) {
		run(t, nil, "dpkg", "--root="+root, "--remove", "lvsha")
		if _, err := os.Stat(bin); err == nil {
			t.Error("the binary is still there after dpkg --remove")
		}
		if _, err := os.Stat(filepath.Join(root, "etc/lvsha/lvsha.toml")); err != nil {
			t.Errorf("dpkg --remove removed the conffile, which only --purge may: %v", err)
		}
		run(t, nil, "dpkg", "--root="+root, "--purge", "lvsha")
		if _, err := os.Stat(filepath.Join(root, "etc/lvsha/lvsha.toml")); err == nil {
			t.Error("the conffile is still there after dpkg --purge")
		}
		out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "--status", "lvsha").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "package 'lvsha' is not installed") {
			t.Errorf("after dpkg --purge dpkg-query --status says (%v):\n%s", err, out)
		}
	})

	t.Run("lintian", func(t *testing.T) {
		// lintian exits non-zero on errors; every tag it printed is
		// logged, and an error (E:) fails the test.
		cmd := exec.Command("lintian", "--allow-root", "--display-info", deb)
		out, err := cmd.CombinedOutput()
		t.Logf("lintian:\n%s", out)
		if err != nil || regexp.MustCompile(`(?m)^E: `).Match(out) {
			t.Errorf("lintian found errors: %v", err)
		}
	})
}

// unitSettings reads a unit file's Key=value lines; a key may repeat.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(text), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// flagsOf lists the flags lvsha's subcommand cmd declares, from its -h, as
// the completion should offer them: one dash for one letter, two for more.
func flagsOf(t *testing.T, bin, cmd string) []string {
	t.Helper()
	out, _ := exec.Command(bin, cmd, "-h").CombinedOutput()
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)`).FindAllStringSubmatch(string(out), -1) {
		if len(m[1]) == 1 {
			flags = append(flags, "-"+m[1])
		} else {
			flags = append(flags, "--"+m[1])
		}
	}
	slices.Sort(flags)
	return flags
}

// quoteAll quotes words for a bash array.
func quoteAll(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
