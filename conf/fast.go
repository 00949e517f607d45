package conf

import (
	"strconv"
	"strings"
)

// fastDecode decodes the plain subset of TOML that lvsha's files are
// almost always written in, to the very tree toml.Decode gives into a
// map[string]any. It reports false for anything outside the subset, and
// Parse then decodes with BurntSushi/toml, so the subset only has to be
// right, never complete. BurntSushi/toml's lexer and parser were over half
// of conf.Load on the reload bench's 10,000-real-server file (issue #17).
//
// The subset, line by line (leading blanks allowed everywhere):
//   - blank lines and comment lines;
//   - [a.b] headers of bare keys naming nothing that exists yet, and
//     [[a.b]] headers of bare keys;
//   - key = value with a bare key not yet in its table, where the value is
//     a one-line basic string without escapes, a one-line literal string,
//     a decimal integer without "+", underscores or leading zeros, true,
//     false, or a one-line array of those;
//   - each optionally followed by a comment.
//
// The whole file must be ASCII without control characters other than tab
// and newline: anything else falls back, so the TOML rules on comments,
// strings and line ends are never in question here.
func fastDecode(src string) (map[string]any, bool) {
	for i := 0; i < len(src); i++ {
		if c := src[i]; c >= 0x7f || c < 0x20 && c != '\t' && c != '\n' {
			return nil, false
		}
	}
	d := fastDecoder{root: map[string]any{}}
	d.cur = d.root
	for line := range strings.SplitSeq(src, "\n") {
		if !d.line(strings.TrimLeft(line, " \t")) {
			return nil, false
		}
	}
	return d.root, true
}

// fastDecoder builds the tree. Every []map[string]any in it comes from
// [[headers]] (inline tables are not in the subset), so a [[header]] may
// always append to one; and a [header] naming anything that exists falls
// back, whether TOML refuses it (a table defined twice) or allows it (a
// table made implicitly by an earlier header), leaving the rules on
// defining tables to the full parser.
type fastDecoder struct {
	root, cur map[string]any
}

func (d *fastDecoder) line(l string) bool {
	switch {
	case l == "" || l[0] == '#':
		return true
	case strings.HasPrefix(l, "[["):
		names, rest, ok := fastHeader(l[2:], "]]")
		return ok && fastEnd(rest) && d.arrayHeader(names)
	case l[0] == '[':
		names, rest, ok := fastHeader(l[1:], "]")
		return ok && fastEnd(rest) && d.tableHeader(names)
	}
	n := bareLen(l)
	if n == 0 {
		return false
	}
	key, rest := l[:n], strings.TrimLeft(l[n:], " \t")
	if rest == "" || rest[0] != '=' {
		return false // a dotted key, or not a key = value line
	}
	if _, dup := d.cur[key]; dup {
		return false
	}
	v, rest, ok := fastValue(strings.TrimLeft(rest[1:], " \t"), true)
	if !ok || !fastEnd(rest) {
		return false
	}
	d.cur[key] = v
	return true
}

// descend walks the header names but the last from the root: into a table,
// into the last element of an array of tables, or creating a table.
func (d *fastDecoder) descend(names []string) (map[string]any, bool) {
	t := d.root
	for _, n := range names[:len(names)-1] {
		v, ok := t[n]
		if !ok {
			m := map[string]any{}
			t[n] = m
			t = m
			continue
		}
		switch v := v.(type) {
		case map[string]any:
			t = v
		case []map[string]any:
			t = v[len(v)-1]
		default:
			return nil, false
		}
	}
	return t, true
}

func (d *fastDecoder) tableHeader(names []string) bool {
	t, ok := d.descend(names)
	last := names[len(names)-1]
	if !ok {
		return false
	}
	if _, exists := t[last]; exists {
		return false
	}
	d.cur = map[string]any{}
	t[last] = d.cur
	return true
}

func (d *fastDecoder) arrayHeader(names []string) bool {
	t, ok := d.descend(names)
	if !ok {
		return false
	}
	last := names[len(names)-1]
	d.cur = map[string]any{}
	switch v := t[last].(type) {
	case nil:
		t[last] = []map[string]any{d.cur}
	case []map[string]any:
		t[last] = append(v, d.cur)
	default:
		return false
	}
	return true
}

// fastHeader reads dotted bare names up to end, with no blanks between.
func fastHeader(s, end string) ([]string, string, bool) {
	var names []string
	for {
		n := bareLen(s)
		if n == 0 {
			return nil, "", false
		}
		names = append(names, s[:n])
		s = s[n:]
		switch {
		case strings.HasPrefix(s, end):
			return names, s[len(end):], true
		case strings.HasPrefix(s, "."):
			s = s[1:]
		default:
			return nil, "", false
		}
	}
}

// fastEnd reports whether s is blank, or blank then a comment.
func fastEnd(s string) bool {
	s = strings.TrimLeft(s, " \t")
	return s == "" || s[0] == '#'
}

func bareLen(s string) int {
	n := 0
	for n < len(s) && isBareChar(s[n]) {
		n++
	}
	return n
}

// fastValue reads one value of the subset at the start of s, an array only
// when array is set (arrays do not nest here).
func fastValue(s string, array bool) (any, string, bool) {
	if s == "" {
		return nil, "", false
	}
	switch c := s[0]; {
	case c == '"' || c == '\'':
		i := strings.IndexByte(s[1:], c)
		if i < 0 || c == '"' && strings.IndexByte(s[1:1+i], '\\') >= 0 {
			return nil, "", false
		}
		if i == 0 && strings.HasPrefix(s, string([]byte{c, c, c})) {
			return nil, "", false // a multi-line string
		}
		return s[1 : 1+i], s[2+i:], true
	case c == '[' && array:
		return fastArray(s[1:])
	case c == 't' && strings.HasPrefix(s, "true"):
		return true, s[4:], fastDelim(s[4:])
	case c == 'f' && strings.HasPrefix(s, "false"):
		return false, s[5:], fastDelim(s[5:])
	case c == '-' || c >= '0' && c <= '9':
		n := 1
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		digits := strings.TrimPrefix(s[:n], "-")
		if digits == "" || len(digits) > 1 && digits[0] == '0' || !fastDelim(s[n:]) {
			return nil, "", false
		}
		v, err := strconv.ParseInt(s[:n], 10, 64)
		if err != nil {
			return nil, "", false
		}
		return v, s[n:], true
	}
	return nil, "", false
}

// fastDelim reports whether a bare value (a number or boolean) ends at the
// start of s: anything else, as in 1.5, 1e3, 1979-05-27 or truex, is not
// in the subset.
func fastDelim(s string) bool {
	return s == "" || strings.IndexByte(" \t,]#", s[0]) >= 0
}

// fastArray reads a one-line array after its "[".
func fastArray(s string) (any, string, bool) {
	out := []any{}
	for {
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, "]") {
			return out, s[1:], true
		}
		v, rest, ok := fastValue(s, false)
		if !ok {
			return nil, "", false
		}
		out = append(out, v)
		s = strings.TrimLeft(rest, " \t")
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "]"):
			return out, s[1:], true
		default:
			return nil, "", false
		}
	}
}
