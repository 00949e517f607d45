package keepalived

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Limits keep hostile or broken input from exhausting memory or time.
// keepalived has none of these, but no real configuration comes near them.
const (
	maxIncludeDepth = 32      // nested include levels below the root file
	maxFilesOpened  = 10000   // files spliced in total, include loops aside
	maxLines        = 1 << 18 // logical lines processed, expansions included
	maxLineLen      = 1 << 16 // bytes of one line after expansion
	maxSubsts       = 1000    // $NAME substitutions within one line
	maxExpanded     = 1 << 26 // bytes produced by substitutions in total
	maxDefLen       = 1 << 20 // bytes of one multi-line definition
	maxBlockDepth   = 100     // nested '{' blocks
	maxErrors       = 100     // errors kept; beyond that only a count
)

// srcFile is one file on the include stack.
type srcFile struct {
	name  string
	dir   string
	lines []string
	next  int // index of the next line to read

	// siblings are the files the same include matched after this one,
	// opened when it ends; from is that include line.
	siblings []string
	from     line
}

// line is one logical line ready for the tree builder, or a line waiting to
// be processed (a multi-line expansion or the rest of a split line).
type line struct {
	text  string
	file  string
	line  int
	brace byte // '{' or '}' when the line is only that brace, else 0
}

type definition struct {
	value     string // lines separated by '\n' when multiline
	multiline bool
	std       string // name of a predefined definition not yet overridden
}

type parser struct {
	opts Options

	files   []*srcFile
	pending []line // lines to process before reading more; next is last
	defs    map[string]*definition
	inDef   *definition // multi-line definition being collected

	opened   int
	lines    int
	expanded int
	stop     bool // a limit was hit: stop producing lines

	warnings []Warning
	seenWarn map[Warning]bool
	errs     []error
	seenErr  map[Error]bool
	dropped  int
}

func newParser(opts Options) *parser {
	p := &parser{
		opts:     opts,
		defs:     map[string]*definition{},
		seenWarn: map[Warning]bool{},
		seenErr:  map[Error]bool{},
	}
	// keepalived's predefined definitions; _PWD and _INSTANCE depend on
	// where and how the line is read, _RANDOM on when keepalived starts.
	for _, n := range []string{"_PWD", "_INSTANCE", "_RANDOM"} {
		p.defs[n] = &definition{std: n}
	}
	p.defs["_HASH"] = &definition{value: "#"}
	p.defs["_BANG"] = &definition{value: "!"}
	return p
}

func (p *parser) warnf(file string, ln int, format string, args ...any) {
	w := Warning{File: file, Line: ln, Msg: fmt.Sprintf(format, args...)}
	if p.seenWarn[w] || len(p.warnings) >= maxErrors {
		return
	}
	p.seenWarn[w] = true
	p.warnings = append(p.warnings, w)
}

func (p *parser) errorf(file string, ln int, format string, args ...any) {
	e := Error{File: file, Line: ln, Msg: fmt.Sprintf(format, args...)}
	if p.seenErr[e] {
		return
	}
	p.seenErr[e] = true
	if len(p.errs) >= maxErrors {
		p.dropped++
		return
	}
	p.errs = append(p.errs, &e)
}

func (p *parser) err() error {
	errs := p.errs
	if p.dropped > 0 {
		errs = append(slices.Clip(errs), fmt.Errorf("%d more errors not shown", p.dropped))
	}
	return errors.Join(errs...)
}

// pushFile puts a file's lines on top of the include stack.
func (p *parser) pushFile(name string, data []byte) {
	text := string(data)
	lines := strings.Split(text, "\n")
	if strings.HasSuffix(text, "\n") {
		lines = lines[:len(lines)-1]
	}
	p.opened++
	p.files = append(p.files, &srcFile{name: name, dir: filepath.Dir(name), lines: lines})
}

// physical returns the next non-empty decommented line of the innermost open
// file, closing files at their end, and collects multi-line definitions.
func (p *parser) physical() (line, bool) {
	for len(p.files) > 0 {
		f := p.files[len(p.files)-1]
		if f.next >= len(f.lines) {
			p.files = p.files[:len(p.files)-1]
			if len(f.siblings) > 0 && !p.stop {
				p.open(f.from, f.siblings)
			}
			continue
		}
		raw := f.lines[f.next]
		f.next++
		n := f.next
		// fgets and strlen stop at a NUL; CR and LF are line ends.
		if i := strings.IndexByte(raw, 0); i >= 0 {
			raw = raw[:i]
		}
		raw = strings.TrimRight(raw, "\r")
		if raw == "" {
			// An empty line ends a multi-line definition even
			// without its closing line.
			if p.inDef != nil {
				p.endDef()
			}
			continue
		}
		text, unterminated := decomment(raw)
		if unterminated {
			p.errorf(f.name, n, "unterminated quote")
		}
		if text == "" {
			continue
		}
		return line{text: text, file: f.name, line: n}, true
	}
	return line{}, false
}

func (p *parser) endDef() {
	if p.inDef.value == "" {
		p.inDef.multiline = false
	}
	p.inDef = nil
}

func (p *parser) current() *srcFile {
	if len(p.files) == 0 {
		return nil
	}
	return p.files[len(p.files)-1]
}

// next returns the next line for the tree builder: one directive's words,
// or a lone brace. It mirrors keepalived's read_line.
func (p *parser) next() (line, bool) {
	for !p.stop {
		var l line
		if n := len(p.pending); n > 0 {
			l = p.pending[n-1]
			p.pending = p.pending[:n-1]
		} else {
			var ok bool
			if l, ok = p.physical(); !ok {
				return line{}, false
			}
		}
		p.lines++
		if p.lines > maxLines {
			p.errorf(l.file, l.line, "more than %d lines after includes and expansions; giving up", maxLines)
			p.stop = true
			return line{}, false
		}
		if l.brace != 0 {
			return l, true
		}
		if p.inDef != nil {
			p.addDefLine(l)
			continue
		}
		text := p.process(l)
		if text == "" {
			continue
		}
		if p.include(l, text) {
			continue
		}
		return p.split(l, text), true
	}
	return line{}, false
}

// process applies conditionals, definitions and expansions to a line,
// returning what is left of it ("" when nothing).
func (p *parser) process(l line) string {
	text := l.text
	substs := 0
	for {
		if text[0] == '@' {
			var ok bool
			if text, ok = p.conditional(text); !ok {
				return ""
			}
			if text == "" {
				return ""
			}
		}
		if text[0] == '$' && p.define(l, text) {
			return ""
		}
		if strings.HasPrefix(text, "~SEQ") || strings.HasPrefix(text, "~LST") {
			p.warnf(l.file, l.line, "%s is not supported; line ignored", text[:4])
			return ""
		}
		if text[0] == '~' || !strings.Contains(text, "$") {
			return text
		}
		expanded, changed := p.expand(l, text, &substs)
		if !changed {
			return text
		}
		if expanded == "" {
			return ""
		}
		var unterminated bool
		text, unterminated = decomment(expanded)
		if unterminated {
			p.errorf(l.file, l.line, "unterminated quote")
		}
		if text == "" {
			return ""
		}
		// keepalived looks again when the expansion produced a
		// conditional or more parameters.
		if text[0] != '@' && !strings.Contains(text, "$") {
			return text
		}
	}
}

// conditional handles "@id rest" and "@^id rest": it returns rest and true
// when the line applies.
func (p *parser) conditional(text string) (string, bool) {
	ofs := 1
	negate := len(text) > 1 && text[1] == '^'
	if negate {
		ofs = 2
	}
	sp := strings.IndexAny(text[ofs:], " \t")
	if sp < 0 {
		return "", false
	}
	id := text[ofs : ofs+sp]
	if slices.Contains(p.opts.Params, id) == negate {
		return "", false
	}
	return strings.TrimLeft(text[ofs+sp:], " \t"), true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isNameStart(c byte) bool {
	return isAlpha(c) || c == '_'
}
func isNameChar(c byte) bool { return isNameStart(c) || isDigit(c) }

// define handles "$NAME=value"; it reports whether the line was one.
func (p *parser) define(l line, text string) bool {
	if len(text) < 2 || !isNameStart(text[1]) {
		return false
	}
	eq := 2
	for eq < len(text) && text[eq] != '=' {
		if !isNameChar(text[eq]) {
			return false
		}
		eq++
	}
	if eq == len(text) {
		return false
	}
	name := text[1:eq]
	value := strings.TrimLeft(text[eq+1:], " \t")
	d := p.defs[name]
	if d == nil {
		d = &definition{}
		p.defs[name] = d
	}
	d.std = ""
	d.multiline = strings.HasSuffix(value, `\`)
	if d.multiline {
		value = strings.TrimRight(value[:len(value)-1], " \t")
		if value != "" {
			value += "\n"
		}
		p.inDef = d
	}
	d.value = value
	return true
}

// addDefLine adds a line to the multi-line definition being collected.
func (p *parser) addDefLine(l line) {
	text := l.text
	d := p.inDef
	more := strings.HasSuffix(text, `\`)
	if more {
		text = strings.TrimRight(text[:len(text)-1], " \t") + "\n"
	} else {
		p.endDef()
	}
	// A line holding only '\' adds nothing.
	if len(text) >= 2 || (text != "" && !more) {
		if len(d.value)+len(text) > maxDefLen {
			p.errorf(l.file, l.line, "multi-line definition longer than %d bytes", maxDefLen)
			return
		}
		d.value += text
	}
}

// ref is a parameter reference after a '$'.
type ref struct {
	name   string
	n      int    // bytes after the '$'
	params bool   // ${_RANDOM 1 10}
	args   string // "1 10"
	atEnd  bool   // nothing follows on the line
}

// parseRef reads "NAME" or "{NAME}" at the start of s, with keepalived's
// rules: a bare name must be followed by a blank, ',', ')' or the end.
func parseRef(s string) (ref, bool) {
	braces := s[0] == '{'
	i := 0
	if braces {
		i = 1
	}
	if i >= len(s) || !isNameStart(s[i]) {
		return ref{}, false
	}
	start := i
	for i < len(s) && isNameChar(s[i]) {
		i++
	}
	r := ref{name: s[start:i]}
	if !braces {
		if i < len(s) && !strings.ContainsRune(" \t,)", rune(s[i])) {
			return ref{}, false
		}
		r.n = i
		r.atEnd = i == len(s)
		return r, true
	}
	// keepalived allows numeric arguments after the name, for
	// ${_RANDOM MIN MAX}, but not a blank before the '}'.
	j, last := i, -1
	for j < len(s) && (s[j] == ' ' || isDigit(s[j])) {
		if s[j] != ' ' {
			last = j
		}
		j++
	}
	if last >= 0 && last+1 != j {
		return ref{}, false
	}
	if j >= len(s) || s[j] != '}' {
		return ref{}, false
	}
	r.params = last >= 0
	r.args = s[i:j]
	r.n = j + 1
	r.atEnd = j == i && r.n == len(s)
	return r, true
}

// expand substitutes the parameters of text as keepalived's replace_param
// does: the substituted value is scanned again, so values may refer to
// other parameters. The first line of a multi-line value replaces the
// reference and the other lines follow as lines of their own.
func (p *parser) expand(l line, text string, substs *int) (string, bool) {
	changed := false
	var rest []string // remaining lines of multi-line values, in order
	i := 0
	for {
		j := strings.IndexByte(text[i:], '$')
		if j < 0 {
			break
		}
		i += j
		if i+1 >= len(text) {
			break
		}
		r, ok := parseRef(text[i+1:])
		if !ok {
			i++
			continue
		}
		d := p.defs[r.name]
		value, ok := p.value(l, r, d)
		if !ok {
			i++
			continue
		}
		*substs++
		if *substs > maxSubsts {
			p.errorf(l.file, l.line, "more than %d parameter substitutions; recursive definition?", maxSubsts)
			return "", true
		}
		repl := value
		if d.multiline {
			lines := strings.Split(value, "\n")
			repl = lines[0]
			// Lines of a nested expansion come before the rest of
			// the enclosing one.
			rest = append(lines[1:len(lines):len(lines)], rest...)
		}
		if len(text)-(1+r.n)+len(repl) > maxLineLen {
			p.errorf(l.file, l.line, "line longer than %d bytes after parameter substitution", maxLineLen)
			return "", true
		}
		p.expanded += len(text) - (1 + r.n) + len(repl)
		if p.expanded > maxExpanded {
			p.errorf(l.file, l.line, "parameter substitutions produced more than %d bytes; giving up", maxExpanded)
			p.stop = true
			return "", true
		}
		text = text[:i] + repl + text[i+1+r.n:]
		changed = true
		if strings.HasPrefix(strings.TrimLeft(value, " \t"), "~") {
			break
		}
	}
	if len(p.pending)+len(rest) > maxLines {
		p.errorf(l.file, l.line, "more than %d lines after includes and expansions; giving up", maxLines)
		p.stop = true
		return "", true
	}
	if len(rest) > 0 {
		for k := len(rest) - 1; k >= 0; k-- {
			if rest[k] != "" {
				p.pending = append(p.pending, line{text: rest[k], file: l.file, line: l.line})
			}
		}
	}
	return text, changed
}

// value returns what a reference expands to, or false when keepalived would
// leave it as written.
func (p *parser) value(l line, r ref, d *definition) (string, bool) {
	if d == nil {
		p.warnf(l.file, l.line, "parameter $%s is not defined; left as written", r.name)
		return "", false
	}
	if d.multiline && !r.atEnd {
		p.warnf(l.file, l.line, "multi-line parameter $%s is only expanded at the end of a line; left as written", r.name)
		return "", false
	}
	if r.params && d.std != "_RANDOM" {
		return "", false
	}
	switch d.std {
	case "_PWD":
		if f := p.current(); f != nil {
			return f.dir, true
		}
		return ".", true
	case "_INSTANCE":
		if len(p.opts.Params) == 0 {
			p.warnf(l.file, l.line, "${_INSTANCE} needs a config id (Options.Params); left as written")
			return "", false
		}
		return p.opts.Params[0], true
	case "_RANDOM":
		// keepalived draws a number when it reads the line; the
		// lower bound keeps the result valid and reproducible.
		lo := "0"
		if r.params {
			lo = strings.Fields(r.args)[0]
		}
		p.warnf(l.file, l.line, "${_RANDOM} is random in keepalived; using its minimum %s", lo)
		return lo, true
	}
	return d.value, true
}

// split returns the part of text before its first brace outside quotes, or
// the brace alone when it comes first; the rest waits in p.pending.
func (p *parser) split(l line, text string) line {
	b := braceIndex(text)
	out := line{file: l.file, line: l.line}
	if b < 0 {
		out.text = text
		return out
	}
	var rest string
	if b == 0 {
		out.brace = text[0]
		rest = strings.TrimLeft(text[1:], " \t")
	} else {
		out.text = strings.TrimRight(text[:b], " \t")
		rest = text[b:]
	}
	rest = strings.TrimRight(rest, " \t")
	if rest != "" {
		p.pending = append(p.pending, line{text: rest, file: l.file, line: l.line})
	}
	return out
}

// braceIndex finds the first '{' or '}' outside double quotes, or -1. An
// unterminated quote hides every brace after it.
func braceIndex(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{', '}':
			return i
		case '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return -1
			}
			i += j + 1
		}
	}
	return -1
}

// decomment strips leading blanks, a comment ('#' or '!' outside quotes),
// the escaping of "\#" and "\!" outside quotes, and trailing blanks. A
// trailing '\' is kept, right after the last non-blank, as keepalived 2.2
// does even after a comment. It reports an unterminated quote.
func decomment(s string) (string, bool) {
	s = strings.TrimLeft(s, " \t")
	b := []byte(s)
	quote, cont := false, false
	skip := -1
scan:
	for i := 0; i < len(b); {
		switch b[i] {
		case '"':
			if skip < 0 {
				quote = !quote
			}
			i++
		case '\\':
			if i+1 == len(b) {
				b = b[:i]
				cont = true
				break scan
			}
			if !quote && (b[i+1] == '#' || b[i+1] == '!') {
				b = append(b[:i], b[i+1:]...)
				i++
			} else {
				i += 2
			}
		case '#', '!':
			if !quote && skip < 0 {
				skip = i
			}
			i++
		default:
			i++
		}
	}
	if skip >= 0 {
		b = b[:skip]
	}
	out := strings.TrimRight(string(b), " \t")
	if cont {
		out += `\`
	}
	return out, quote
}

// words splits a line as keepalived's alloc_strvec does: blanks separate
// words, a word starting with '"' runs to the next '"' and a '"' ends an
// unquoted word. An unterminated quote drops the rest of the line and is
// reported by ok false.
func words(s string) (out []string, ok bool) {
	const white = " \t\f\n\r\v"
	i := 0
	for {
		for i < len(s) && strings.IndexByte(white, s[i]) >= 0 {
			i++
		}
		if i == len(s) {
			return out, true
		}
		if s[i] == '"' {
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return out, false
			}
			out = append(out, s[i+1:i+1+j])
			i += j + 2
			continue
		}
		j := i
		for j < len(s) && s[j] != '"' && strings.IndexByte(white, s[j]) < 0 {
			j++
		}
		out = append(out, s[i:j])
		i = j
	}
}
