package keepalived

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// FuzzConvert converts arbitrary keepalived text. Convert must not panic
// or hang, and whenever it succeeds its TOML must be accepted by conf and
// every warning must point at a line of the input.
func FuzzConvert(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/corpus/*.conf")
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(string(data))
		}
	}
	f.Add("virtual_server_group G {\n 10.0.0.1-255 80\n 10.0.0.0/24 0\n fwmark 1 inet6\n}\nvirtual_server group G {\n real_server 10.0.0.9 80 {\n }\n}\n")
	f.Add("vrrp_script s {\n script \"a | b\"\n weight 254\n}\nvrrp_instance v {\n interface e\n virtual_router_id 1\n priority 254\n track_script {\n s\n }\n virtual_ipaddress {\n 1.2.3.4\n }\n}\n")
	f.Fuzz(func(t *testing.T, data string) {
		files := memFS{"k.conf": data}
		root, _, err := Parse("k.conf", []byte(data), files.opts())
		if err != nil {
			return
		}
		start := time.Now()
		c, err := Convert(root, "out.toml")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Convert took %v", d)
		}
		if c == nil {
			t.Fatalf("nil conversion, err %v", err)
		}
		for _, w := range c.Warnings {
			if w.File != "k.conf" || w.Line < 1 {
				t.Fatalf("warning at unknown position: %v", w)
			}
		}
		if err == nil {
			if _, perr := conf.Parse("out.toml", c.TOML); perr != nil {
				t.Fatalf("Convert succeeded but conf rejects its TOML: %v\n%s", perr, c.TOML)
			}
		}
	})
}
