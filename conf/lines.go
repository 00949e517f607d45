package conf

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// BurntSushi/toml's MetaData records which keys exist but not where, so
// lineIndex recovers lines with a light scan of the source. It only runs on
// text the TOML parser has already accepted, and falls back to the nearest
// enclosing table when a key is not found, so an imperfect scan costs
// precision of a line number, never correctness.

// lazyLines is the line index of one source, built the first time a line is
// asked for. Indexing every key of a 10,000-real-server file took a quarter
// of conf.Load, yet a valid file needs no line until something reports on
// it (an error, or Config.Line for cmd/lvsha's findings), which most
// reloads never do. A Config is shared between goroutines, hence the Once.
type lazyLines struct {
	once sync.Once
	src  string // the source until it is indexed, then ""
	ix   lineIndex
}

func newLazyLines(src string) *lazyLines { return &lazyLines{src: src} }

// line is lineIndex.line on the source's index; 0 for a nil lazyLines.
func (l *lazyLines) line(key string) int {
	if l == nil {
		return 0
	}
	l.once.Do(func() {
		l.ix = indexLines(l.src)
		l.src = ""
	})
	return l.ix.line(key)
}

// lineIndex maps a key path (see Error.Key) to the 1-based line where the key,
// table header or array element starts.
type lineIndex map[string]int

// line returns the line of key, or of its nearest ancestor that was found,
// or 0.
func (ix lineIndex) line(key string) int {
	for key != "" {
		if n, ok := ix[key]; ok {
			return n
		}
		key = parentKey(key)
	}
	return 0
}

// joinKey appends the table or key name to the key path parent.
func joinKey(parent, name string) string {
	if !isBareKey(name) {
		name = strconv.Quote(name)
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// indexKey appends an array index to the key path parent.
func indexKey(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// parentKey strips the last name or index from a key path built by joinKey
// and indexKey.
func parentKey(key string) string {
	n := len(key)
	if n == 0 {
		return ""
	}
	switch key[n-1] {
	case ']': // an index: quoted names end in '"', bare ones cannot hold ']'
		if i := strings.LastIndexByte(key, '['); i >= 0 {
			return key[:i]
		}
		return ""
	case '"': // a quoted name: find its opening quote, the first unescaped one
		for i := n - 2; i >= 0; i-- {
			if key[i] != '"' {
				continue
			}
			bs := 0
			for j := i - 1; j >= 0 && key[j] == '\\'; j-- {
				bs++
			}
			if bs%2 == 0 {
				return strings.TrimSuffix(key[:i], ".")
			}
		}
		return ""
	default:
		if i := strings.LastIndexByte(key, '.'); i >= 0 {
			return key[:i]
		}
		return ""
	}
}

// isUnder reports whether key is prefix itself or lies inside it.
func isUnder(key, prefix string) bool {
	return key == prefix || strings.HasPrefix(key, prefix+".") || strings.HasPrefix(key, prefix+"[")
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBareChar(s[i]) {
			return false
		}
	}
	return true
}

func isBareChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// scanner walks TOML source recording the line of every key path. Each loop
// makes progress on every iteration, so it terminates on any input.
type scanner struct {
	src  string
	pos  int
	line int
	ix   lineIndex
	aot  map[string]int // array-of-tables key path -> elements seen so far
}

func indexLines(src string) lineIndex {
	s := &scanner{src: src, line: 1, ix: lineIndex{}, aot: map[string]int{}}
	s.document()
	return s.ix
}

func (s *scanner) record(key string) {
	if _, ok := s.ix[key]; !ok {
		s.ix[key] = s.line
	}
}

func (s *scanner) peek() byte {
	if s.pos < len(s.src) {
		return s.src[s.pos]
	}
	return 0
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

// skip skips blanks and, when lines is set, also line breaks and comments.
func (s *scanner) skip(lines bool) {
	for !s.eof() {
		switch c := s.src[s.pos]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.pos++
		case lines && c == '\n':
			s.pos++
			s.line++
		case lines && c == '#':
			s.skipLine()
		default:
			return
		}
	}
}

// skipLine moves to the end of the line, leaving the newline for skip to
// count.
func (s *scanner) skipLine() {
	if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
		s.pos += i
	} else {
		s.pos = len(s.src)
	}
}

func (s *scanner) document() {
	table := ""
	for {
		s.skip(true)
		if s.eof() {
			return
		}
		start := s.pos
		if s.peek() == '[' {
			s.pos++
			array := s.peek() == '['
			if array {
				s.pos++
			}
			if names, ok := s.keyParts(); ok {
				table = s.header(names, array)
			}
		} else {
			s.keyValue(table)
		}
		s.skipLine()
		if s.pos == start {
			s.pos++
		}
	}
}

// header resolves a [table] or [[array]] header to a key path: names that
// are arrays of tables so far refer to their last element, and an [[array]]
// header adds a new element.
func (s *scanner) header(names []string, array bool) string {
	p := ""
	for i, n := range names {
		p = joinKey(p, n)
		if array && i == len(names)-1 {
			s.record(p)
			k := s.aot[p]
			s.aot[p] = k + 1
			p = indexKey(p, k)
		} else if k, ok := s.aot[p]; ok {
			p = indexKey(p, k-1)
		}
		s.record(p)
	}
	return p
}

// keyParts reads a possibly dotted key.
func (s *scanner) keyParts() ([]string, bool) {
	var parts []string
	for {
		s.skip(false)
		part, ok := s.keyPart()
		if !ok {
			return nil, false
		}
		parts = append(parts, part)
		s.skip(false)
		if s.peek() != '.' {
			return parts, true
		}
		s.pos++
	}
}

func (s *scanner) keyPart() (string, bool) {
	switch s.peek() {
	case '"':
		start := s.pos + 1
		s.str()
		end := max(s.pos-1, start)
		return unescapeBasic(s.src[start:end]), true
	case '\'':
		start := s.pos + 1
		s.str()
		end := max(s.pos-1, start)
		return s.src[start:end], true
	}
	start := s.pos
	for !s.eof() && isBareChar(s.src[s.pos]) {
		s.pos++
	}
	return s.src[start:s.pos], s.pos > start
}

func (s *scanner) keyValue(table string) {
	parts, ok := s.keyParts()
	if !ok {
		return
	}
	p := table
	for _, n := range parts {
		p = joinKey(p, n)
		s.record(p)
	}
	s.skip(false)
	if s.peek() != '=' {
		return
	}
	s.pos++
	s.skip(false)
	s.value(p)
}

func (s *scanner) value(p string) {
	switch s.peek() {
	case '"', '\'':
		s.str()
	case '[':
		s.pos++
		for i := 0; ; {
			s.skip(true)
			switch s.peek() {
			case 0:
				return
			case ']':
				s.pos++
				return
			case ',':
				s.pos++
				continue
			}
			e := indexKey(p, i)
			s.record(e)
			before := s.pos
			s.value(e)
			if s.pos == before {
				s.pos++
			}
			i++
		}
	case '{':
		s.pos++
		for {
			s.skip(true)
			switch s.peek() {
			case 0:
				return
			case '}':
				s.pos++
				return
			case ',':
				s.pos++
				continue
			}
			before := s.pos
			s.keyValue(p)
			if s.pos == before {
				s.pos++
			}
		}
	default: // number, boolean or datetime (which may contain a space)
		for !s.eof() && !strings.ContainsRune(",]}#\n", rune(s.src[s.pos])) {
			s.pos++
		}
	}
}

// str skips a basic or literal string, single- or multi-line, starting at
// its opening quote.
func (s *scanner) str() {
	q := s.src[s.pos]
	delim := strings.Repeat(string(q), 3)
	if strings.HasPrefix(s.src[s.pos:], delim) {
		s.pos += 3
		for !s.eof() {
			switch c := s.src[s.pos]; {
			case c == '\\' && q == '"':
				s.pos++
				if s.peek() == '\n' {
					s.line++
				}
				s.pos++
			case c == '\n':
				s.line++
				s.pos++
			case strings.HasPrefix(s.src[s.pos:], delim):
				s.pos += 3
				// Up to two more quotes are content ending the string.
				for k := 0; k < 2 && s.peek() == q; k++ {
					s.pos++
				}
				return
			default:
				s.pos++
			}
		}
		s.pos = min(s.pos, len(s.src))
		return
	}
	s.pos++
	for !s.eof() {
		switch c := s.src[s.pos]; {
		case c == '\\' && q == '"':
			s.pos += 2
		case c == q:
			s.pos++
			return
		case c == '\n':
			return
		default:
			s.pos++
		}
	}
	s.pos = min(s.pos, len(s.src))
}

// unescapeBasic decodes the escapes of a TOML basic string, for quoted keys.
func unescapeBasic(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'b':
			b.WriteByte('\b')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'e':
			b.WriteByte(0x1b)
		case 'x', 'u', 'U':
			n := 2
			switch c {
			case 'u':
				n = 4
			case 'U':
				n = 8
			}
			if i+1+n > len(s) {
				b.WriteString(s[i:])
				return b.String()
			}
			r, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil || !utf8.ValidRune(rune(r)) {
				b.WriteString(s[i : i+1+n])
			} else {
				b.WriteRune(rune(r))
			}
			i += n
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
