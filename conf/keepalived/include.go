package keepalived

import (
	"path/filepath"
	"slices"
	"strings"
)

// maxAlternatives bounds csh-style {a,b} expansion, which multiplies.
const maxAlternatives = 1024

func isSpace(c byte) bool { return strings.IndexByte(" \t\n\v\f\r", c) >= 0 }

// include handles an include line; it reports whether text was one. As in
// keepalived, the pattern is the rest of the line, quotes and blanks
// included, and the keyword is recognised after conditionals and
// parameter substitution.
func (p *parser) include(l line, text string) bool {
	if len(text) < 8 || !strings.HasPrefix(text, "include") {
		return false
	}
	var rest string
	switch c := text[7]; {
	case isSpace(c):
		rest = text[8:]
	case strings.IndexByte("rmwba", c) >= 0 && len(text) > 8 && isSpace(text[8]):
		rest = text[9:]
	default:
		return false
	}
	pattern := strings.TrimLeft(rest, " \t")
	if pattern == "" {
		p.warnf(l.file, l.line, "%s without a file name; ignored", text)
		return true
	}
	cur := p.current()
	if !filepath.IsAbs(pattern) && cur != nil {
		// keepalived changes to the directory of each file it opens.
		pattern = filepath.Join(cur.dir, pattern)
	}
	var matches []string
	for _, alt := range expandBraces(pattern) {
		m, err := p.opts.Glob(alt)
		if err != nil {
			p.warnf(l.file, l.line, "include %q: %v; skipped", alt, err)
			continue
		}
		// glob(3) sorts the matches of each alternative.
		slices.Sort(m)
		matches = append(matches, m...)
	}
	if len(matches) == 0 {
		p.warnf(l.file, l.line, "include %q: no file matches; skipped", pattern)
		return true
	}
	p.open(l, matches)
	return true
}

// open pushes the first readable file of names on the include stack; the
// others are read after it, at the same depth.
func (p *parser) open(l line, names []string) {
	for i, name := range names {
		if len(p.files) > maxIncludeDepth {
			p.errorf(l.file, l.line, "include %s: more than %d nested includes", name, maxIncludeDepth)
			return
		}
		if p.opened >= maxFilesOpened {
			p.errorf(l.file, l.line, "include %s: more than %d files included; include loop?", name, maxFilesOpened)
			p.stop = true
			return
		}
		clean := filepath.Clean(name)
		if slices.ContainsFunc(p.files, func(f *srcFile) bool { return filepath.Clean(f.name) == clean }) {
			p.errorf(l.file, l.line, "include %s: include cycle, the file is already being read", name)
			continue
		}
		data, err := p.opts.ReadFile(name)
		if err != nil {
			p.warnf(l.file, l.line, "include %s: %v; skipped", name, err)
			continue
		}
		p.pushFile(name, data)
		f := p.current()
		f.siblings = names[i+1:]
		f.from = l
		return
	}
}

// expandBraces expands csh-style alternatives as glob(3) with GLOB_BRACE
// does: "a{b,c{d,e}}f" gives abf, acdf, acef, in that order. A '\' escapes
// the next character; an unbalanced '{' is taken literally.
func expandBraces(pattern string) []string {
	out := []string{}
	var rec func(s string)
	rec = func(s string) {
		if len(out) >= maxAlternatives {
			return
		}
		open, close, commas := braceGroup(s)
		if open < 0 {
			out = append(out, s)
			return
		}
		prefix, suffix := s[:open], s[close+1:]
		start := open + 1
		for _, c := range append(commas, close) {
			rec(prefix + s[start:c] + suffix)
			start = c + 1
		}
	}
	rec(pattern)
	return out
}

// braceGroup finds the first balanced {...} of s and its top-level commas;
// open is -1 when there is none.
func braceGroup(s string) (open, close int, commas []int) {
	open = -1
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '{':
			if depth == 0 && open < 0 {
				open = i
			}
			depth++
		case ',':
			if depth == 1 {
				commas = append(commas, i)
			}
		case '}':
			if depth == 0 {
				continue
			}
			depth--
			if depth == 0 {
				return open, i, commas
			}
		}
	}
	return -1, -1, nil
}
