package keepalived

import (
	"errors"
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// memFS serves files from a map, so tests never touch the disk.
type memFS map[string]string

func (m memFS) opts(params ...string) Options {
	return Options{
		ReadFile: func(name string) ([]byte, error) {
			s, ok := m[path.Clean(name)]
			if !ok {
				return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
			}
			return []byte(s), nil
		},
		// Deliberately unsorted, to prove Parse sorts as glob(3).
		Glob: func(pattern string) ([]string, error) {
			if _, err := path.Match(pattern, ""); err != nil {
				return nil, err
			}
			var out []string
			for name := range m {
				if ok, _ := path.Match(pattern, name); ok {
					out = append(out, name)
				}
			}
			slices.Sort(out)
			slices.Reverse(out)
			return out, nil
		},
		Params: params,
	}
}

// render writes a tree compactly: name and args, "{ a; b }" for blocks,
// args with blanks or empty quoted.
func render(nodes []*Node) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		s := quoteWord(n.Name)
		for _, a := range n.Args {
			s += " " + quoteWord(a)
		}
		if n.Block {
			if len(n.Children) == 0 {
				s += " {}"
			} else {
				s += " { " + render(n.Children) + " }"
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func quoteWord(s string) string {
	if s == "" || strings.ContainsAny(s, " \t;{}") {
		return `"` + s + `"`
	}
	return s
}

// positions lists "file:line name" for every node, depth first.
func positions(nodes []*Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.File+":"+itoa(n.Line)+" "+n.Name)
		out = append(out, positions(n.Children)...)
	}
	return out
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// errStrings flattens the joined errors into "file:line: msg" strings,
// failing on anything that is not an *Error.
func errStrings(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []string
	for _, e := range errs {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("error %v is not an *Error", e)
		}
		out = append(out, pe.Error())
	}
	return out
}

func warnStrings(ws []Warning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.String())
	}
	return out
}

// containsAll reports whether every want string is a substring of some got.
func containsAll(got, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
			return false
		}
	}
	return true
}

type parseCase struct {
	name   string
	files  memFS // "k.conf" is parsed
	params []string
	want   string
	warns  []string // substrings, each found in some warning
	errs   []string // substrings, each found in some error
}

func runCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root, warns, err := ParseFile("k.conf", tc.files.opts(tc.params...))
			if root == nil {
				t.Fatalf("no tree, err %v", err)
			}
			if got := render(root.Children); got != tc.want {
				t.Errorf("tree:\n got %s\nwant %s", got, tc.want)
			}
			gotErrs := errStrings(t, err)
			if !containsAll(gotErrs, tc.errs) || (len(tc.errs) == 0) != (len(gotErrs) == 0) {
				t.Errorf("errors %q, want ones containing %q", gotErrs, tc.errs)
			}
			gotWarns := warnStrings(warns)
			if !containsAll(gotWarns, tc.warns) || (len(tc.warns) == 0) != (len(gotWarns) == 0) {
				t.Errorf("warnings %q, want ones containing %q", gotWarns, tc.warns)
			}
		})
	}
}

func TestBlocksAndFormatting(t *testing.T) {
	runCases(t, []parseCase{
		{
			name:  "brace at line end",
			files: memFS{"k.conf": "global_defs {\n  router_id r1\n}\n"},
			want:  "global_defs { router_id r1 }",
		},
		{
			name:  "brace on its own line opens the previous directive",
			files: memFS{"k.conf": "virtual_ipaddress\n{\n192.0.2.1/24\n}\n"},
			want:  "virtual_ipaddress { 192.0.2.1/24 }",
		},
		{
			name:  "brace after blank and comment lines",
			files: memFS{"k.conf": "virtual_ipaddress\n\n# the addresses\n   {\n192.0.2.1/24\n}\n"},
			want:  "virtual_ipaddress { 192.0.2.1/24 }",
		},
		{
			name:  "block on one line",
			files: memFS{"k.conf": "track_interface { eth0 eth1 }\n"},
			want:  "track_interface { eth0 eth1 }",
		},
		{
			name:  "content after the opening brace",
			files: memFS{"k.conf": "vrrp_instance VI_1 { state MASTER\n  priority 100 }\n"},
			want:  "vrrp_instance VI_1 { state MASTER; priority 100 }",
		},
		{
			name:  "closing brace followed by text",
			files: memFS{"k.conf": "a {\n b 1\n} c 2\nd {\n}   e { f }\n"},
			want:  "a { b 1 }; c 2; d {}; e { f }",
		},
		{
			name:  "empty block differs from no block",
			files: memFS{"k.conf": "notify_fifo_script {}\nsmtp_alert\n"},
			want:  "notify_fifo_script {}; smtp_alert",
		},
		{
			name: "nested blocks with brace lines",
			files: memFS{"k.conf": "virtual_server 192.0.2.1 80\n{\n  real_server 10.0.0.1 80\n  {\n" +
				"    HTTP_GET\n    {\n      url { path / }\n    }\n  }\n}\n"},
			want: "virtual_server 192.0.2.1 80 { real_server 10.0.0.1 80 { HTTP_GET { url { path / } } } }",
		},
		{
			name:  "tabs and CRLF",
			files: memFS{"k.conf": "global_defs\t{\r\n\trouter_id\t\tr1\t\r\n\t}\r\n"},
			want:  "global_defs { router_id r1 }",
		},
		{
			name:  "unknown directives are kept",
			files: memFS{"k.conf": "frobnicate 1 2 {\n  whatever x\n}\n"},
			want:  "frobnicate 1 2 { whatever x }",
		},
		{
			name:  "NUL ends a line as in C",
			files: memFS{"k.conf": "a 1\x00junk\nb 2\n"},
			want:  "a 1; b 2",
		},
		{
			name:  "file without final newline",
			files: memFS{"k.conf": "a {\nb 1\n}"},
			want:  "a { b 1 }",
		},
	})
}

func TestCommentsAndQuotes(t *testing.T) {
	runCases(t, []parseCase{
		{
			name:  "hash and bang comments anywhere",
			files: memFS{"k.conf": "# whole line\n! whole line\na 1 # after a value\nb 2! glued\n  c 3 !x\n"},
			want:  "a 1; b 2; c 3",
		},
		{
			name:  "comment after an opening brace",
			files: memFS{"k.conf": "a { # opens\n b 1 ! inside\n} # closes\n"},
			want:  "a { b 1 }",
		},
		{
			name:  "comment characters inside quotes are kept",
			files: memFS{"k.conf": `script "/bin/check #1 !now" # comment` + "\n"},
			want:  `script "/bin/check #1 !now"`,
		},
		{
			name:  "escaped comment characters outside quotes",
			files: memFS{"k.conf": `auth_pass ab\#cd\!e # real` + "\n"},
			want:  `auth_pass ab#cd!e`,
		},
		{
			name:  "quoted words keep blanks and lose quotes",
			files: memFS{"k.conf": `notify "/usr/bin/notify  --state x"  plain` + "\n"},
			want:  `notify "/usr/bin/notify  --state x" plain`,
		},
		{
			name:  "a quote ends an unquoted word",
			files: memFS{"k.conf": `a b"c d"e` + "\n"},
			want:  `a b "c d" e`,
		},
		{
			name:  "empty quoted word",
			files: memFS{"k.conf": `a "" b` + "\n"},
			want:  `a "" b`,
		},
		{
			name:  "braces inside quotes do not split",
			files: memFS{"k.conf": `script "echo {x}" {` + "\n y\n}\n"},
			want:  `script "echo {x}" { y }`,
		},
		{
			name:  "backslashes are not interpreted",
			files: memFS{"k.conf": `script "a\tb\"c"` + "\n"},
			want:  `script a\tb\ c`,
			errs:  []string{"k.conf:1: unterminated quote"},
		},
		{
			name:  "unterminated quote",
			files: memFS{"k.conf": "a 1\nscript \"/bin/x y\nb 2\n"},
			want:  "a 1; script; b 2",
			errs:  []string{"k.conf:2: unterminated quote"},
		},
		{
			name:  "trailing backslash is no continuation outside definitions",
			files: memFS{"k.conf": "a b \\\nc d\n"},
			want:  `a b\; c d`,
			warns: []string{`k.conf:1: keepalived continues lines with '\' only in $NAME= definitions`},
		},
	})
}

func TestBraceErrors(t *testing.T) {
	runCases(t, []parseCase{
		{
			name:  "missing closing brace names the opening line",
			files: memFS{"k.conf": "a {\n b {\n  c\n }\n"},
			want:  "a { b { c } }",
			errs:  []string{"k.conf:1: block a is not closed"},
		},
		{
			name:  "extra closing brace",
			files: memFS{"k.conf": "a {\n}\n}\nb\n"},
			want:  "a {}; b",
			errs:  []string{"k.conf:3: '}' with no open block"},
		},
		{
			name:  "opening brace with no directive",
			files: memFS{"k.conf": "{\n a 1\n}\nb {\n} {\n c\n}\n"},
			want:  "a 1; b {}; c",
			errs:  []string{"k.conf:1: '{' with no directive", "k.conf:5: '{' with no directive"},
		},
		{
			name:  "missing brace in an included file names that file",
			files: memFS{"k.conf": "include i.conf\nz\n", "i.conf": "x\ny {\n"},
			want:  "x; y { z }",
			errs:  []string{"i.conf:2: block y is not closed"},
		},
	})
}

func TestConditionals(t *testing.T) {
	conf := "global_defs {\n  @main router_id main_router\n  @backup\trouter_id backup_router\n}\n" +
		"unicast_peer {\n  @^main 192.0.2.1\n  @^backup 192.0.2.2\n  @^backup2 192.0.2.3\n}\n@main\n"
	runCases(t, []parseCase{
		{
			name:   "main",
			files:  memFS{"k.conf": conf},
			params: []string{"main"},
			want:   "global_defs { router_id main_router }; unicast_peer { 192.0.2.2; 192.0.2.3 }",
		},
		{
			name:   "backup",
			files:  memFS{"k.conf": conf},
			params: []string{"backup"},
			want:   "global_defs { router_id backup_router }; unicast_peer { 192.0.2.1; 192.0.2.3 }",
		},
		{
			name:  "no config id",
			files: memFS{"k.conf": conf},
			want:  "global_defs {}; unicast_peer { 192.0.2.1; 192.0.2.2; 192.0.2.3 }",
		},
		{
			name:   "several ids",
			files:  memFS{"k.conf": conf},
			params: []string{"main", "backup"},
			want:   "global_defs { router_id main_router; router_id backup_router }; unicast_peer { 192.0.2.3 }",
		},
		{
			name:   "conditional block opener",
			files:  memFS{"k.conf": "@main vrrp_script a {\n x\n}\n"},
			params: []string{"main"},
			want:   "vrrp_script a { x }",
		},
	})
}

func TestParameters(t *testing.T) {
	runCases(t, []parseCase{
		{
			name:  "plain and braced",
			files: memFS{"k.conf": "$PRIO=150\n$NET=192.0.2\npriority $PRIO\nvip ${NET}.1/24\n"},
			want:  "priority 150; vip 192.0.2.1/24",
		},
		{
			name:  "value keeps blanks and is split into words at use",
			files: memFS{"k.conf": "$ARGS=  a b   c\nx $ARGS\n"},
			want:  "x a b c",
		},
		{
			name:  "bare name must end at blank, comma, paren or line end",
			files: memFS{"k.conf": "$A=1\nx $A,$A) $Ab ${A}b $A\n"},
			want:  "x 1,1) $Ab 1b 1",
			warns: []string{"parameter $Ab is not defined"},
		},
		{
			name: "expanded at use, not at definition",
			files: memFS{"k.conf": "$ADDRESS_BASE=10.2.${ADDRESS_BASE_SUB}\n$ADDRESS_BASE_SUB=0\n" +
				"a ${ADDRESS_BASE}.100/32\n$ADDRESS_BASE_SUB=10\nb ${ADDRESS_BASE}.100/32\n"},
			want: "a 10.2.0.100/32; b 10.2.10.100/32",
		},
		{
			name:  "undefined parameters are left as written",
			files: memFS{"k.conf": "$X=1\nscript \"kill -HUP $PID ${OTHER} $(cat f) $1\"\n"},
			want:  `script "kill -HUP $PID ${OTHER} $(cat f) $1"`,
			warns: []string{"k.conf:2: parameter $PID is not defined", "k.conf:2: parameter $OTHER is not defined"},
		},
		{
			name:  "a blank before = is no definition",
			files: memFS{"k.conf": "$X =1\n"},
			want:  "$X =1",
			warns: []string{"parameter $X is not defined"},
		},
		{
			name:  "empty value",
			files: memFS{"k.conf": "$E=\na $E b\n$E\n${_HASH} x\n"},
			want:  "a b",
		},
		{
			name:   "conditional definitions",
			files:  memFS{"k.conf": "@main $PRIORITY=240\n@backup $PRIORITY=200\npriority $PRIORITY\n"},
			params: []string{"backup"},
			want:   "priority 200",
		},
		{
			name:   "conditional produced by a parameter",
			files:  memFS{"k.conf": "$IF_MAIN=@main\n$IF_MAIN priority 240\n$IF_MAIN weight 1\n"},
			params: []string{"main"},
			want:   "priority 240; weight 1",
		},
		{
			name:  "conditional produced by a parameter, not matching",
			files: memFS{"k.conf": "$IF_MAIN=@main\n$IF_MAIN priority 240\nx\n"},
			want:  "x",
		},
		{
			name:  "expansion yielding braces opens blocks",
			files: memFS{"k.conf": "$OPEN={\n$CLOSE=}\nblock $OPEN\n a\n$CLOSE\n"},
			want:  "block { a }",
		},
		{
			name:  "predefined hash and bang in quotes",
			files: memFS{"k.conf": "script \"echo ${_HASH}${_BANG}\"\n"},
			want:  `script "echo #!"`,
		},
		{
			name:  "expanded comment character comments out the rest, as keepalived",
			files: memFS{"k.conf": "a b ${_HASH} c\n"},
			want:  "a b",
		},
		{
			name:  "_PWD is the directory of the file being read",
			files: memFS{"k.conf": "include sub/i.conf\nx ${_PWD}\n", "sub/i.conf": "y ${_PWD}/s.sh\n"},
			want:  "y sub/s.sh; x .",
		},
		{
			name:   "_INSTANCE is the first config id",
			files:  memFS{"k.conf": "router_id ${_INSTANCE}\n"},
			params: []string{"lb1", "x"},
			want:   "router_id lb1",
		},
		{
			name:  "_INSTANCE without config id",
			files: memFS{"k.conf": "router_id \"${_INSTANCE}\"\n"},
			want:  `router_id "${_INSTANCE}"`,
			warns: []string{"needs a config id"},
		},
		{
			name:  "an unexpanded braced name is split at its braces, as keepalived",
			files: memFS{"k.conf": "a ${UNDEF}\n"},
			want:  "a $ { UNDEF }",
			warns: []string{"k.conf:1: parameter $UNDEF is not defined"},
		},
		{
			name:  "_RANDOM takes its minimum",
			files: memFS{"k.conf": "delay ${_RANDOM 5 10}\nwait ${_RANDOM}\n"},
			want:  "delay 5; wait 0",
			warns: []string{"k.conf:1: ${_RANDOM} is random in keepalived; using its minimum 5", "k.conf:2: ${_RANDOM}"},
		},
		{
			name:  "predefined names can be redefined",
			files: memFS{"k.conf": "$_PWD=/etc/keepalived\nscript ${_PWD}/x\n"},
			want:  "script /etc/keepalived/x",
		},
		{
			name:  "a line starting with ~ is not expanded",
			files: memFS{"k.conf": "$A=1\n~x $A\n"},
			want:  "~x $A",
		},
		{
			name:  "~SEQ is reported as unsupported",
			files: memFS{"k.conf": "~SEQ(i, 1, 3) a $i\nb\n"},
			want:  "b",
			warns: []string{"k.conf:1: ~SEQ is not supported"},
		},
		{
			name:  "recursive definition is bounded",
			files: memFS{"k.conf": "$A=$A\nx $A\ny\n"},
			want:  "y",
			errs:  []string{"k.conf:2: more than 1000 parameter substitutions"},
		},
		{
			name:  "growing definition is bounded",
			files: memFS{"k.conf": "$A=x${A}\nv $A\ny\n"},
			want:  "y",
			errs:  []string{"k.conf:2: more than 1000 parameter substitutions"},
		},
		{
			name:  "long expansion is bounded",
			files: memFS{"k.conf": "$B=" + strings.Repeat("b", 10000) + "\nv $B $B $B $B $B $B $B\ny\n"},
			want:  "y",
			errs:  []string{"k.conf:2: line longer than 65536 bytes"},
		},
		{
			name: "exponential definition is bounded",
			files: memFS{"k.conf": "$A0=xxxxxxxx\n$A1=${A0}${A0}\n$A2=${A1}${A1}\n$A3=${A2}${A2}\n$A4=${A3}${A3}\n" +
				"$A5=${A4}${A4}\n$A6=${A5}${A5}\n$A7=${A6}${A6}\n$A8=${A7}${A7}\n$A9=${A8}${A8}\n$A10=${A9}${A9}\n" +
				"$A11=${A10}${A10}\n$A12=${A11}${A11}\n$A13=${A12}${A12}\n$A14=${A13}${A13}\nv $A14\ny\n"},
			want: "y",
			errs: []string{"k.conf:16: more than 1000 parameter substitutions"},
		},
	})
}

func TestMultilineDefinitions(t *testing.T) {
	// The example of keepalived.conf(5).
	instance := `$INSTANCE= \
vrrp_instance VI_${NUM} { \
    interface eth0.${NUM} \
    use_vmac vrrp${NUM}.1 \
    virtual_router_id 1 \
    @high priority 130 \
    @low priority 120 \
    advert_int 1 \
    virtual_ipaddress { \
        10.0.${NUM}.254/24 \
    } \
    track_script { \
        offset_instance_${NUM} \
    } \
}

$NUM=0
$INSTANCE

$NUM=1
$INSTANCE
`
	vi := func(n, prio string) string {
		return "vrrp_instance VI_" + n + " { interface eth0." + n + "; use_vmac vrrp" + n + ".1; virtual_router_id 1; " + prio +
			"advert_int 1; virtual_ipaddress { 10.0." + n + ".254/24 }; track_script { offset_instance_" + n + " } }"
	}
	nested := `$RS= \
real_server 10.0.${VS_NUM}.${RS_NUM} 80 { \
    weight 1 \
    MISC_CHECK { \
        misc_path "${P}/vs.sh ${VS_NUM}.${RS_NUM}" \
    } \
    \
}

$VS= \
virtual_server 10.0.${VS_NUM}.4 80 { \
    quorum 2 \
    $RS_NUM=1 \
    $RS \
    $RS_NUM=2 \
    $RS \
}

$P=/s
$VS_NUM=0
$VS
`
	rs := func(vs, r string) string {
		return "real_server 10.0." + vs + "." + r + " 80 { weight 1; MISC_CHECK { misc_path \"/s/vs.sh " + vs + "." + r + "\" } }"
	}
	runCases(t, []parseCase{
		{
			name:   "manual example, high",
			files:  memFS{"k.conf": instance},
			params: []string{"high"},
			want:   vi("0", "priority 130; ") + "; " + vi("1", "priority 130; "),
		},
		{
			name:  "manual example, no id",
			files: memFS{"k.conf": instance},
			want:  vi("0", "") + "; " + vi("1", ""),
		},
		{
			name:  "nested multi-line definitions",
			files: memFS{"k.conf": nested},
			want:  "virtual_server 10.0.0.4 80 { quorum 2; " + rs("0", "1") + "; " + rs("0", "2") + " }",
		},
		{
			name:  "inner expansion lines come before the rest of the outer one",
			files: memFS{"k.conf": "$INNER=i1 \\\ni2\n\n$OUTER=$INNER \\\no2\n\n$OUTER\n"},
			want:  "i1; i2; o2",
		},
		{
			name:  "an empty line ends a definition",
			files: memFS{"k.conf": "$M=a 1 \\\nb 2 \\\n\nc 3\n$M\n"},
			want:  "c 3; a 1; b 2",
		},
		{
			name:  "a comment line does not end a definition",
			files: memFS{"k.conf": "$M=a 1 \\\n# note\nb 2 # why \\\nc 3\nd\n$M\n"},
			want:  "d; a 1; b 2; c 3",
		},
		{
			name:  "multi-line value only expands at the end of a line",
			files: memFS{"k.conf": "$M=a \\\nb\nx $M y\nz ${M}\n"},
			want:  "x $M y; z a; b",
			warns: []string{"k.conf:3: multi-line parameter $M is only expanded at the end of a line"},
		},
		{
			name:  "single-line value of a definition ended by an empty line",
			files: memFS{"k.conf": "$M=\\\n\nx $M y\n"},
			want:  "x y",
		},
	})
}

func TestSelfExpandingDefinitionBounded(t *testing.T) {
	files := memFS{"k.conf": "$M=a \\\n$M\n\n$M\n"}
	root, _, err := ParseFile("k.conf", files.opts())
	got := errStrings(t, err)
	if !containsAll(got, []string{"k.conf:4: more than 262144 lines"}) {
		t.Errorf("errors %q, want the line limit at k.conf:4", got)
	}
	// Each expansion yields one directive and one more expansion.
	if n := len(root.Children); n < maxLines/4 || n > maxLines {
		t.Errorf("%d directives, want about half the line limit %d", n, maxLines)
	}
}

func TestMultilinePositions(t *testing.T) {
	files := memFS{"k.conf": "$M=a 1 { \\\n b 2 \\\n}\n\nx\n$M\n"}
	root, _, err := ParseFile("k.conf", files.opts())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"k.conf:5 x", "k.conf:6 a", "k.conf:6 b"}
	if diff := cmp.Diff(want, positions(root.Children)); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
}

func TestIncludes(t *testing.T) {
	runCases(t, []parseCase{
		{
			name:  "relative to the including file, nested",
			files: memFS{"k.conf": "include conf.d/a.conf\nz\n", "conf.d/a.conf": "a\ninclude sub/b.conf\n", "conf.d/sub/b.conf": "b\n"},
			want:  "a; b; z",
		},
		{
			name:  "absolute path",
			files: memFS{"k.conf": "include /etc/keepalived/x.conf\n", "/etc/keepalived/x.conf": "x 1\n"},
			want:  "x 1",
		},
		{
			name: "glob matches in sorted order",
			files: memFS{"k.conf": "include d/*.conf\n", "d/b.conf": "b\n", "d/a.conf": "a\n", "d/c.conf": "c\n",
				"d/a.txt": "no\n", "d/10.conf": "ten\n"},
			want: "ten; a; b; c",
		},
		{
			name:  "brace alternatives in their order, each sorted",
			files: memFS{"k.conf": "include {y,x/*}.conf\n", "y.conf": "y\n", "x/2.conf": "x2\n", "x/1.conf": "x1\n"},
			want:  "y; x1; x2",
		},
		{
			name:  "blocks may span files",
			files: memFS{"k.conf": "vrrp_instance VI_1 {\ninclude body.conf\n}\n", "body.conf": "state MASTER\nvirtual_ipaddress {\n"},
			want:  "vrrp_instance VI_1 { state MASTER; virtual_ipaddress {} }",
			errs:  []string{"k.conf:1: block vrrp_instance is not closed"},
		},
		{
			name:  "include inside a block",
			files: memFS{"k.conf": "virtual_server 192.0.2.1 80 {\n  include rs/*.conf\n  lb_algo rr\n}\n", "rs/1.conf": "real_server 10.0.0.1 80 {\n weight 1\n}\n"},
			want:  "virtual_server 192.0.2.1 80 { real_server 10.0.0.1 80 { weight 1 }; lb_algo rr }",
		},
		{
			name:  "variants",
			files: memFS{"k.conf": "includer a.conf\nincludea b.conf\nincludem\tc.conf\nincludex d.conf\n", "a.conf": "a\n", "b.conf": "b\n", "c.conf": "c\n"},
			want:  "a; b; c; includex d.conf",
		},
		{
			name:  "missing file is a warning",
			files: memFS{"k.conf": "a\ninclude nothere.conf\nb\n"},
			want:  "a; b",
			warns: []string{`k.conf:2: include "nothere.conf": no file matches`},
		},
		{
			name:  "bad pattern is a warning",
			files: memFS{"k.conf": "include [x\nb\n"},
			want:  "b",
			warns: []string{`k.conf:1: include "[x": syntax error in pattern`},
		},
		{
			name:  "no glob match is a warning",
			files: memFS{"k.conf": "include conf.d/*.conf\nb\n"},
			want:  "b",
			warns: []string{`k.conf:1: include "conf.d/*.conf": no file matches`},
		},
		{
			name:  "definitions cross files and the include line is expanded",
			files: memFS{"k.conf": "$DIR=sub\ninclude ${DIR}/p.conf\nv $V\n", "sub/p.conf": "$V=2\nw $DIR\n"},
			want:  "w sub; v 2",
		},
		{
			name:   "conditional include",
			files:  memFS{"k.conf": "@lb1 include a.conf\n@lb2 include b.conf\n", "a.conf": "a\n", "b.conf": "b\n"},
			params: []string{"lb2"},
			want:   "b",
		},
		{
			name:  "include without a file name",
			files: memFS{"k.conf": "include\nx\n"},
			want:  "include; x",
		},
		{
			name:  "include cycle",
			files: memFS{"k.conf": "a\ninclude b.conf\nc\n", "b.conf": "b\ninclude ./k.conf\n"},
			want:  "a; b; c",
			errs:  []string{"b.conf:2: include k.conf: include cycle"},
		},
		{
			name:  "a file including the whole directory skips itself",
			files: memFS{"k.conf": "include d/*\n", "d/a": "a\ninclude *\n", "d/b": "b\n"},
			want:  "a; b; b",
			errs:  []string{"d/a:2: include d/a: include cycle"},
		},
		{
			name:  "depth limit",
			files: chain(maxIncludeDepth + 5),
			want:  strings.TrimSuffix(strings.Repeat("x; ", maxIncludeDepth+1), "; "),
			errs:  []string{"more than 32 nested includes"},
		},
		{
			name:  "doubling includes are bounded",
			files: doubling(20),
			want:  render(mustParse(t, doubling(20))),
			errs:  []string{"files included; include loop?"},
		},
	})
}

// chain makes k.conf include f1 include f2 ... fn, each with one directive.
func chain(n int) memFS {
	m := memFS{"k.conf": "x\ninclude f1\n"}
	for i := 1; i <= n; i++ {
		m["f"+itoa(i)] = "x\ninclude f" + itoa(i+1) + "\n"
	}
	return m
}

// doubling makes each level include the next level twice: 2^n files.
func doubling(n int) memFS {
	m := memFS{"k.conf": "include f1\ninclude f1\n"}
	for i := 1; i <= n; i++ {
		m["f"+itoa(i)] = "include f" + itoa(i+1) + "\ninclude f" + itoa(i+1) + "\n"
	}
	m["f"+itoa(n+1)] = "x\n"
	return m
}

func mustParse(t *testing.T, m memFS) []*Node {
	t.Helper()
	root, _, _ := ParseFile("k.conf", m.opts())
	if n := len(root.Children); n == 0 || n > maxFilesOpened {
		t.Fatalf("doubling includes gave %d directives, want 1..%d", n, maxFilesOpened)
	}
	return root.Children
}

func TestPositionsAcrossIncludes(t *testing.T) {
	files := memFS{
		"/etc/keepalived/keepalived.conf": "global_defs {\n\trouter_id r1\n}\n\ninclude conf.d/*.conf\nvrrp_instance VI_1 {\n  include vi.inc\n}\n",
		"/etc/keepalived/conf.d/1.conf":   "# first\nvirtual_server 192.0.2.1 80 {\n\n  real_server 10.0.0.1 80 { weight 2 }\n}\n",
		"/etc/keepalived/conf.d/2.conf":   "\n\nvrrp_script chk {\n script true\n}\n",
		"/etc/keepalived/vi.inc":          "state BACKUP\ninclude sub/more.inc\n",
		"/etc/keepalived/sub/more.inc":    "\n\n\npriority 50\n",
	}
	root, warns, err := ParseFile("/etc/keepalived/keepalived.conf", files.opts())
	if err != nil || len(warns) != 0 {
		t.Fatalf("err %v, warnings %v", err, warns)
	}
	want := []string{
		"/etc/keepalived/keepalived.conf:1 global_defs",
		"/etc/keepalived/keepalived.conf:2 router_id",
		"/etc/keepalived/conf.d/1.conf:2 virtual_server",
		"/etc/keepalived/conf.d/1.conf:4 real_server",
		"/etc/keepalived/conf.d/1.conf:4 weight",
		"/etc/keepalived/conf.d/2.conf:3 vrrp_script",
		"/etc/keepalived/conf.d/2.conf:4 script",
		"/etc/keepalived/keepalived.conf:6 vrrp_instance",
		"/etc/keepalived/vi.inc:1 state",
		"/etc/keepalived/sub/more.inc:4 priority",
	}
	if diff := cmp.Diff(want, positions(root.Children)); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
	if root.File != "/etc/keepalived/keepalived.conf" || root.Line != 0 || root.Name != "" {
		t.Errorf("root = %q %q:%d, want the file at line 0", root.Name, root.File, root.Line)
	}
}

func TestParseFileReadError(t *testing.T) {
	_, _, err := ParseFile("missing.conf", memFS{}.opts())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want one wrapping fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("err %q does not name the file", err)
	}
}

func TestExpandBraces(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a.conf", []string{"a.conf"}},
		{"{a,b}.conf", []string{"a.conf", "b.conf"}},
		{"x{a,b{c,d}}y", []string{"xay", "xbcy", "xbdy"}},
		{"{foo/{,cat,dog},bar}", []string{"foo/", "foo/cat", "foo/dog", "bar"}},
		{"{a,b}{1,2}", []string{"a1", "a2", "b1", "b2"}},
		{`\{a,b}`, []string{`\{a,b}`}},
		{"{a,b", []string{"{a,b"}},
		{"a}b{c}", []string{"a}bc"}},
	} {
		if got := expandBraces(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("expandBraces(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if n := len(expandBraces(strings.Repeat("{a,b}", 20))); n != maxAlternatives {
		t.Errorf("2^20 alternatives gave %d, want the bound %d", n, maxAlternatives)
	}
}

func TestDeepNestingBounded(t *testing.T) {
	src := strings.Repeat("a {\n", maxBlockDepth+10) + strings.Repeat("}\n", maxBlockDepth+10)
	root, _, err := Parse("k.conf", []byte(src), memFS{}.opts())
	got := errStrings(t, err)
	if !containsAll(got, []string{"nested more than 100 deep"}) || len(got) != 1 {
		t.Errorf("errors %q, want one about nesting", got)
	}
	blocks := 0
	for n := root; len(n.Children) > 0; n = n.Children[0] {
		if n.Children[0].Block {
			blocks++
		}
	}
	if blocks != maxBlockDepth {
		t.Errorf("%d nested blocks, want %d", blocks, maxBlockDepth)
	}
}

func TestUnreadableIncludeIsSkipped(t *testing.T) {
	files := memFS{"k.conf": "include d*\nz\n", "d2": "b\n"}
	opts := files.opts()
	opts.Glob = func(string) ([]string, error) { return []string{"d2", "d1/"}, nil }
	root, warns, err := ParseFile("k.conf", opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := render(root.Children); got != "b; z" {
		t.Errorf("tree %s, want b; z", got)
	}
	if got := warnStrings(warns); !containsAll(got, []string{"k.conf:1: include d1/: open d1/: file does not exist"}) || len(got) != 1 {
		t.Errorf("warnings %q, want one for d1/", got)
	}
}
