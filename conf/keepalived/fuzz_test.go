package keepalived

import (
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary text as the main file and as files it may
// include, itself among them, so include loops and runaway expansions are
// explored too. Parse must not panic, must finish quickly, and every node
// must point at a real line of a real file.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"global_defs {\n router_id a # c\n}\n",
		"a { b { c } } d\n}\n{\n",
		"$A=${A}${A}\nx $A\n",
		"$M=a \\\n$M \\\nb\n\n$M\n",
		"include *.conf\ninclude k.conf\ninclude d/{a,b}.conf\n",
		"@x $A=1\n@^y v $A\n\"unterminated\n",
		"$A=~x\ny ${A} $A ${_RANDOM 1 2} ${_PWD} ${_HASH}\n",
		"a\\\n\\#b\\!c \"q#\\\"\" ${X }\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		files := memFS{"k.conf": data, "inc.conf": data, "d/a.conf": data, "d/b.conf": "x {\n" + data + "\n}\n"}
		start := time.Now()
		root, warns, err := Parse("k.conf", []byte(data), files.opts("x"))
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Parse took %v", d)
		}
		if root == nil {
			t.Fatalf("nil tree, err %v", err)
		}
		lines := map[string]int{}
		for name, s := range files {
			lines[name] = strings.Count(s, "\n") + 1
		}
		var walk func(n *Node, depth int)
		walk = func(n *Node, depth int) {
			if depth > maxBlockDepth+1 {
				t.Fatalf("tree deeper than %d", maxBlockDepth)
			}
			for _, c := range n.Children {
				if max, ok := lines[c.File]; !ok || c.Line < 1 || c.Line > max {
					t.Fatalf("node %q at %s:%d outside the files", c.Name, c.File, c.Line)
				}
				if !c.Block && len(c.Children) > 0 {
					t.Fatalf("node %q has children but no block", c.Name)
				}
				walk(c, depth+1)
			}
		}
		walk(root, 0)
		for _, w := range warns {
			if _, ok := lines[w.File]; !ok || w.Line < 1 {
				t.Fatalf("warning at unknown position: %v", w)
			}
		}
		errStrings(t, err)
	})
}
