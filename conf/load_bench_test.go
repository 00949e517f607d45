package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bigTOML is the shape of integration's reload bench (issue #17): n
// virtual servers × m real servers, wlc over NAT, weights 1..m, with a
// director section naming a control socket and state file. At 100 × 100
// it is about 730 KB, as the file the VM reloads.
func bigTOML(n, m int) string {
	var b strings.Builder
	b.WriteString("[director]\nname = \"bench\"\ncontrol_socket = \"/tmp/bench/lvsha.sock\"\nstate_file = \"/tmp/bench/state.json\"\nresync_interval = \"1h\"\n")
	for i := range n {
		fmt.Fprintf(&b, "[[virtual_server]]\naddress = \"10.%d.%d.1:80\"\nscheduler = \"wlc\"\n", 100+i/250, i%250)
		for j := range m {
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.200.%d.%d:8080\"\nweight = %d\n", i%250, j+1, j+1)
		}
	}
	return b.String()
}

// BenchmarkLoad10k is conf.Load of a 10,000-real-server file, the whole of
// a changed reload's parsing (issue #17).
//
//	go test ./conf -run '^$' -bench Load10k -benchmem -count 5
func BenchmarkLoad10k(b *testing.B) {
	src := bigTOML(100, 100)
	path := filepath.Join(b.TempDir(), "lvsha.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := Load(path)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(c.VirtualServers); n != 100 {
			b.Fatalf("%d virtual servers, want 100", n)
		}
	}
}
