package conf

import (
	"os"
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"
)

// fastCases are files in fastDecode's subset (in) and just outside it
// (out), where it must leave the file to BurntSushi/toml.
var fastCases = []struct {
	src string
	in  bool
}{
	{"", true},
	{"# only a comment\n\n", true},
	{everySection, false}, // dotted keys, inline tables, multi-line values
	{"[director]\nname = \"lb1\" # c\nresync_interval='1s'\n", true},
	{"a = [1, \"x\", true, -3, 'y', ]\nb = []\nc = [ ]\nd = -0\ne = 0\n", true},
	{"[[a]]\nx = 1\n[a.b]\ny = 2\n[[a.c]]\n[[a.c]]\n[[a]]\n[a.b]\n", true},
	{"[a.b]\n[[a.c]]\n", true},
	{"[a.b]\n[a]\n", false},              // TOML allows it; left to the full parser
	{"[a]\n[a]\n", false},                // defined twice
	{"[a]\nb = 1\n[a.b]\n", false},       // b is a value
	{"a = [1]\n[[a]]\n", false},          // a static array
	{"[a]\n[[a]]\n", false},              // a table
	{"[[a]]\n[a]\n", false},              // an array of tables
	{"a = 1\na = 2\n", false},            // duplicate key
	{"a.b = 1\n", false},                 // dotted key
	{"\"a\" = 1\n", false},               // quoted key
	{"[ a ]\n", false},                   // blanks in a header
	{"a = \"\\u00e9\"\n", false},         // an escape
	{"a = \"é\"\n", false},               // not ASCII
	{"a = 1\r\n", false},                 // CRLF
	{"a = \"\"\"x\"\"\"\n", false},       // multi-line string
	{"a = '''x'''\n", false},             // multi-line literal
	{"a = \"\"\n", true},                 // empty string
	{"a = 1.5\n", false},                 // float
	{"a = 1e3\n", false},                 // float
	{"a = 1_000\n", false},               // underscore
	{"a = 01\n", false},                  // leading zero: invalid TOML
	{"a = +1\n", false},                  // sign
	{"a = 0x10\n", false},                // hex
	{"a = 9223372036854775808\n", false}, // overflow
	{"a = 1979-05-27\n", false},          // date
	{"a = truex\n", false},
	{"a = { b = 1 }\n", false},  // inline table
	{"a = [[1], [2]]\n", false}, // nested array
	{"a = [\n1]\n", false},      // multi-line array
	{"a = \"x\" y\n", false},
	{"a =\n", false},
	{"a\n", false},
	{"[a\n", false},
	{"[[a]\n", false},
	{"[a]]\n", false},
	{"[a.]\n", false},
}

// fastDecode must give toml.Decode's very tree, and fall back outside
// its subset.
func TestFastDecode(t *testing.T) {
	sketch, err := os.ReadFile("testdata/sketch.toml")
	if err != nil {
		t.Fatal(err)
	}
	cases := append(fastCases[:len(fastCases):len(fastCases)],
		struct {
			src string
			in  bool
		}{string(sketch), false}, // check = { type = "tcp" }
		struct {
			src string
			in  bool
		}{bigTOML(3, 4), true})
	for _, tt := range cases {
		got, ok := fastDecode(tt.src)
		if ok != tt.in {
			t.Errorf("fastDecode(%q) in the subset = %t, want %t", tt.src, ok, tt.in)
		}
		if ok {
			sameAsTOML(t, tt.src, got)
		}
	}
}

// FuzzFastDecode: whatever fastDecode accepts, toml.Decode accepts, with
// the same tree.
func FuzzFastDecode(f *testing.F) {
	for _, tt := range fastCases {
		f.Add(tt.src)
	}
	f.Add(bigTOML(2, 2))
	f.Fuzz(func(t *testing.T, src string) {
		if got, ok := fastDecode(src); ok {
			sameAsTOML(t, src, got)
		}
	})
}

func sameAsTOML(t *testing.T, src string, got map[string]any) {
	t.Helper()
	var want map[string]any
	if _, err := toml.Decode(src, &want); err != nil {
		t.Fatalf("fastDecode accepted %q, which toml.Decode refuses: %v", src, err)
	}
	if want == nil {
		want = map[string]any{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fastDecode(%q) = %#v, toml.Decode gives %#v", src, got, want)
	}
}
