package keepalived

import (
	"strings"
	"testing"

	"github.com/lvsha/lvsha/conf"
)

// TestConvertSchedPriority: keepalived's VRRP and checker processes
// each have a real-time priority and a nice value; lvsha is one
// process and takes the stronger of each, or reports what it cannot
// carry.
func TestConvertSchedPriority(t *testing.T) {
	global := func(lines ...string) string {
		return "global_defs {\n    " + strings.Join(lines, "\n    ") + "\n}\n"
	}
	for _, tc := range []struct {
		name       string
		in         string
		rt, nice   int
		warns      []string
		tomlSubstr string
	}{
		{name: "none", in: global("router_id lb1")},
		{name: "vrrp_rt_priority", in: global("vrrp_rt_priority 30"), rt: 30,
			tomlSubstr: "[director]\nrt_priority = 30  # k.conf:2 vrrp_rt_priority; the whole daemon, checks included\n"},
		{name: "the higher of the two real-time priorities", in: global("vrrp_rt_priority 30", "checker_rt_priority 50"), rt: 50},
		{name: "the lower of the two nice values", in: global("vrrp_priority -5", "checker_priority -10"), nice: -10},
		{name: "a positive nice is not carried", in: global("router_id lb1", "checker_priority 5"),
			warns: []string{"3: checker_priority: not carried: lvsha runs VRRP and checks in one process, and a positive nice would slow its adverts too (got 5)"}},
		{name: "out of range", in: global("vrrp_rt_priority 100", "vrrp_priority -21"),
			warns: []string{`2: vrrp_rt_priority: not carried: invalid value (got "100", want an integer 1..99)`,
				`3: vrrp_priority: not carried: invalid value (got "-21", want an integer -20..19)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, _, err := Parse("k.conf", []byte(tc.in), Options{})
			if err != nil {
				t.Fatal(err)
			}
			c, err := Convert(root, "lvsha.toml")
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := conf.Parse("lvsha.toml", c.TOML)
			if err != nil {
				t.Fatalf("the TOML does not parse: %v\n%s", err, c.TOML)
			}
			if cfg.Director.RTPriority != tc.rt || cfg.Director.Nice != tc.nice {
				t.Errorf("rt_priority %d, nice %d; want %d, %d\n%s", cfg.Director.RTPriority, cfg.Director.Nice, tc.rt, tc.nice, c.TOML)
			}
			var warns []string
			for _, w := range c.Warnings {
				warns = append(warns, w.String())
			}
			if strings.Join(warns, "\n") != strings.Join(prefixed(tc.warns), "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warns, "\n"), strings.Join(prefixed(tc.warns), "\n"))
			}
			if tc.tomlSubstr != "" && !strings.Contains(string(c.TOML), tc.tomlSubstr) {
				t.Errorf("the TOML lacks %q:\n%s", tc.tomlSubstr, c.TOML)
			}
		})
	}
}

// prefixed puts the file name before each "line: message".
func prefixed(ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = "k.conf:" + w
	}
	return out
}
