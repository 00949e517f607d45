package conf

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// FuzzParse checks that no input panics, that failures are only *Error
// values with plausible lines, and that accepted files keep the invariants
// consumers rely on.
func FuzzParse(f *testing.F) {
	if sketch, err := os.ReadFile("testdata/sketch.toml"); err == nil {
		f.Add(sketch)
	}
	f.Add([]byte(vsHead + "check = { type = \"http\", status = [200] }\nreal_server = [{ address = \"192.0.2.10:80\" }]\n"))
	f.Add([]byte("[[virtual_server]]\nfwmark = 1\nfamily = \"inet6\"\n[[virtual_server.real_server]]\naddress = \"2001:db8::1\"\ncheck.type = \"exec\"\ncheck.command = [\"/bin/true\"]\n"))
	f.Add([]byte("\"a.b\" = '''\n[[x]]'''\n[a.\"\\u00e9\"]\nb = [\n1,\n{c=\"\"\"\n\"\"\"}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err != nil {
			if c != nil {
				t.Fatalf("Config returned with error %v", err)
			}
			lines := bytes.Count(data, []byte("\n")) + 1
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("error %T is not a joined list", err)
			}
			for _, e := range joined.Unwrap() {
				var ce *Error
				if !errors.As(e, &ce) || ce.File != "f.toml" || ce.Line < 0 || ce.Line > lines || ce.Msg == "" {
					t.Fatalf("bad error %#v in %v", e, err)
				}
			}
			return
		}
		for _, vs := range c.VirtualServers {
			if vs.Name == "" || (vs.Family != "inet" && vs.Family != "inet6") {
				t.Fatalf("virtual server %+v lacks a name or family", vs)
			}
			for _, rs := range vs.RealServers {
				if rs.Forwarding == "" {
					t.Fatalf("real server %+v has no forwarding", rs)
				}
				if ch := rs.Check; ch != nil && (ch.Interval <= 0 || ch.Timeout <= 0 || ch.Timeout >= ch.Interval || ch.Type == "none") {
					t.Fatalf("real server check %+v is not resolved", ch)
				}
			}
		}
		again, err := Parse("f.toml", data)
		if err != nil || !c.Equal(again) {
			t.Fatalf("Parse is not deterministic: %v", err)
		}
	})
}
