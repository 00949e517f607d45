package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConvertCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	full := write("full.conf", "virtual_server 192.0.2.1 80 {\n  lb_algo rr\n  protocol TCP\n  real_server 10.0.0.1 80 {\n    weight 2\n    TCP_CHECK {\n      connect_timeout 2\n    }\n  }\n}\n")
	partial := write("partial.conf", "global_defs {\n  notification_email {\n    a@example.com\n  }\n}\n"+
		"virtual_server 192.0.2.2 80 {\n  protocol TCP\n  real_server 10.0.0.2 80 {\n  }\n}\n")
	broken := write("broken.conf", "virtual_server 192.0.2.3 80 {\n  lb_algo nope\n}\n")
	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    string // substring; "" means must be empty
		stderr    string // substring
		writesOut bool
	}{
		{"everything carried", []string{full}, 0, `address = "192.0.2.1:80"`, "1 virtual servers, 0 VRRP instances converted; 0 directives not carried", false},
		{"warnings exit 3", []string{partial}, 3, `address = "192.0.2.2:80"`, "partial.conf:2: warning: notification_email: not carried", false},
		{"strict refuses warnings", []string{"--strict", partial}, 1, "", "1 directives not carried (--strict)", false},
		{"error exit 1", []string{broken}, 1, "", `broken.conf:2: lb_algo: unknown scheduler "nope"`, false},
		{"-o after the file", []string{full, "-o", filepath.Join(dir, "out.toml")}, 0, "", "converted", true},
		{"no file", nil, 2, "", "want one keepalived configuration file", false},
		{"missing file", []string{filepath.Join(dir, "nope.conf")}, 1, "", "no such file", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(filepath.Join(dir, "out.toml"))
			var out, errb bytes.Buffer
			code := runMain(context.Background(), append([]string{"convert"}, tc.args...), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errb.String())
			}
			if tc.stdout == "" && out.Len() > 0 {
				t.Errorf("stdout not empty:\n%s", out.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, out.String())
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errb.String())
			}
			_, err := os.Stat(filepath.Join(dir, "out.toml"))
			if tc.writesOut != (err == nil) {
				t.Errorf("out.toml written = %v, want %v", err == nil, tc.writesOut)
			}
		})
	}
}

// Every corpus file that converts gives TOML `lvsha check` accepts.
func TestConvertedCorpusPassesCheck(t *testing.T) {
	files, err := filepath.Glob("../../conf/keepalived/testdata/corpus/*.conf")
	if err != nil || len(files) < 30 {
		t.Fatalf("corpus: %d files (%v), want at least 30", len(files), err)
	}
	converted := 0
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "lvsha.toml")
			var so, se bytes.Buffer
			code := runMain(context.Background(), []string{"convert", "-i", "lb1", "-o", out, f}, &so, &se)
			if code == 1 {
				if _, err := os.Stat(out); err == nil {
					t.Errorf("exit 1 but %s was written", out)
				}
				return
			}
			if code != 0 && code != 3 {
				t.Fatalf("convert: exit %d\n%s", code, se.String())
			}
			converted++
			if code := runMain(context.Background(), []string{"check", "-q", "-c", out}, &so, &se); code != 0 {
				t.Fatalf("lvsha check rejects the converted file: exit %d\n%s", code, se.String())
			}
		})
	}
	if converted < 25 {
		t.Errorf("only %d corpus files converted", converted)
	}
}
