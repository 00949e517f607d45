package keepalived

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestConvertGolden")

// corpusParams are the --config-id values a corpus file is converted with.
var corpusParams = map[string][]string{
	"09-params.conf":       {"lb1"},
	"36-eq-vrrp-pair.conf": {"lb2"},
}

// convertFile parses and converts one corpus file and renders everything
// an operator would see: the TOML, then every warning and the error.
func convertFile(t *testing.T, file string) (toml, report string, conv *Conversion, err error) {
	t.Helper()
	root, warns, err := ParseFile(file, Options{Params: corpusParams[file]})
	var b strings.Builder
	if err == nil {
		conv, err = Convert(root, "lvsha.toml")
		if conv != nil {
			warns = append(warns, conv.Warnings...)
			toml = string(conv.TOML)
		}
	}
	for _, w := range warns {
		fmt.Fprintln(&b, w)
	}
	if err != nil {
		fmt.Fprintf(&b, "error:\n%v\n", err)
		toml = ""
	}
	return toml, b.String(), conv, err
}

// TestConvertGolden converts every file of testdata/corpus and compares
// the TOML and the warnings with testdata/golden. Run with -update after a
// deliberate change and review the diff.
func TestConvertGolden(t *testing.T) {
	golden, err := filepath.Abs("testdata/golden")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir("testdata/corpus")
	files, err := filepath.Glob("*.conf")
	if err != nil || len(files) < 30 {
		t.Fatalf("corpus: %d files, %v; want at least 30", len(files), err)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			toml, report, _, _ := convertFile(t, f)
			base := strings.TrimSuffix(f, ".conf")
			for _, g := range []struct{ ext, got string }{{".toml", toml}, {".warnings", report}} {
				path := filepath.Join(golden, base+g.ext)
				if *update {
					if g.got == "" {
						os.Remove(path)
						continue
					}
					if err := os.WriteFile(path, []byte(g.got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				if string(want) != g.got {
					t.Errorf("%s differs from %s (run go test -run TestConvertGolden -update and review):\n--- got\n%s\n--- want\n%s", f, path, g.got, want)
				}
			}
		})
	}
}
