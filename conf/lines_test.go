package conf

import (
	"os"
	"sort"
	"sync"
	"testing"
)

// everySection is a valid file using every section and most forms of key:
// header tables, arrays of tables, dotted keys, inline tables, and arrays
// and strings spread over lines. (Quoted keys are left to the fuzz corpus:
// a valid file has none, as every key lvsha knows is bare.)
const everySection = `# every section
[director]
name = "lb1"
control_socket = "/run/lvsha/lvsha.sock"
state_file = "/var/lib/lvsha/state.json"
resync_interval = "10s"

[metrics]
listen = "127.0.0.1:9650"

[[virtual_server]]
name = "web"
address = "192.0.2.1:80"
scheduler = "wlc"
notify_quorum_up = ["/bin/true"]
  [virtual_server.check]
  type = "http"
  status = [
    200,
    "300-302",
  ]
  [[virtual_server.check.url]]
  path = "/a"
  [[virtual_server.check.url]]
  path = "/b"
  body = """
multi
line"""
  [[virtual_server.real_server]]
  address = "192.0.2.10:80"
  weight = 2
  check.type = "tcp"
  check.interval = "2s"
  [[virtual_server.real_server]]
  address = "192.0.2.11:80"
  check = { type = "exec", command = ["/bin/check", "x"] }

[[virtual_server]]
fwmark = 7
family = "inet6"
real_server = [
  { address = "[2001:db8::1]:80" },
  { address = "[2001:db8::2]:80", weight = 3 },
]

[[vrrp_instance]]
name = "vi1"
interface = "eth0"
router_id = 51
virtual_ips = ["192.0.2.100/24"]
  [[vrrp_instance.track_virtual_server]]
  name = "web"
  weight = 20
  [[vrrp_instance.track_interface]]
  name = "eth2"
  weight = 40
  [[vrrp_instance.track_exec]]
  name = "disk"
  [vrrp_instance.lvs_sync]
  interface = "eth0"
  sync_id = 51

[[vrrp_instance]]
name = "vi2"
interface = "eth0"
router_id = 52
virtual_ips = ["192.0.2.101/24"]

[[vrrp_sync_group]]
name = "g"
instances = ["vi1", "vi2"]

[[track_exec]]
name = "disk"
command = ["/usr/local/bin/disk-ok"]
`

// Config.Line builds its index on first use; its answers must be those
// of the index Parse used to build before every Load, for every key the
// file holds, keys it does not (answered by an enclosing table), and from
// goroutines racing to be first.
func TestLineLazy(t *testing.T) {
	sketch, err := os.ReadFile("testdata/sketch.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"everySection": everySection, "sketch": string(sketch), "bench": bigTOML(3, 4)} {
		t.Run(name, func(t *testing.T) {
			eager := indexLines(src)
			keys := make([]string, 0, len(eager)*2)
			for k := range eager {
				keys = append(keys, k, k+".not_in_file", k+"[9]")
			}
			keys = append(keys, "", "absent", "virtual_server[99].weight")
			sort.Strings(keys)
			if len(eager) < 10 {
				t.Fatalf("index of %d keys; the scanner found too few", len(eager))
			}
			c, err := Parse(name+".toml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if c.lines == nil || c.lines.ix != nil {
				t.Fatal("a valid file was indexed before anyone asked for a line")
			}
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for _, k := range keys {
						if got, want := c.Line(k), eager.line(k); got != want {
							t.Errorf("Line(%q) = %d, want %d", k, got, want)
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
