package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// kaSamples is where Debian's keepalived package (which scripts/setup
// installs) puts keepalived's own sample configurations.
const kaSamples = "/usr/share/doc/keepalived/samples"

// TestConvertKeepalivedSamples converts every one of keepalived's own
// sample configurations with `lvsha convert`, once without a config id and
// once with each @id the file uses (as `keepalived -i ID` would read it),
// and runs `lvsha check` on each result: convert must never write a file
// that check rejects (issue #18), and may refuse a file only with exit
// status 1 and nothing written. It runs on the host: it needs no kernel,
// only the package's files.
func TestConvertKeepalivedSamples(t *testing.T) {
	bin := lvshaBin(t)
	files, _ := filepath.Glob(filepath.Join(kaSamples, "keepalived.conf.*"))
	// keepalived 2.2.7 ships 25; fewer means the package or its docs are
	// missing (e.g. an image that excludes /usr/share/doc).
	if len(files) < 20 {
		t.Fatalf("%d of keepalived's sample configurations in %s, want at least 20: install keepalived with its documentation (scripts/setup)", len(files), kaSamples)
	}
	idLine := regexp.MustCompile(`(?m)^@(\w+)`)
	dir := t.TempDir()
	converted := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{""}
		for _, m := range idLine.FindAllStringSubmatch(string(src), -1) {
			if !slices.Contains(ids, m[1]) {
				ids = append(ids, m[1])
			}
		}
		for _, id := range ids {
			name := filepath.Base(f)
			args := []string{"convert", "-o", filepath.Join(dir, name+"."+id+".toml")}
			if id != "" {
				name += " -i " + id
				args = append(args, "-i", id)
			}
			out := args[2]
			conv, err := exec.Command(bin, append(args, f)...).CombinedOutput()
			var ee *exec.ExitError
			switch {
			case err == nil:
			case errors.As(err, &ee) && ee.ExitCode() == 3: // carried with warnings
			default:
				t.Errorf("%s: lvsha convert: %v\n%s", name, err, conv)
				if _, serr := os.Stat(out); serr == nil {
					t.Errorf("%s: lvsha convert failed and still wrote %s", name, out)
				}
				continue
			}
			if chk, err := exec.Command(bin, "check", "-c", out).CombinedOutput(); err != nil {
				t.Errorf("%s: lvsha check rejects what lvsha convert wrote: %v\n%s", name, err, chk)
				continue
			}
			converted++
		}
	}
	t.Logf("%d sample files, %d conversions checked", len(files), converted)
}
