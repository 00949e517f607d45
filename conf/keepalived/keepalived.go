// Package keepalived parses the configuration language of keepalived 2.2.x
// into a generic tree of directives with file:line positions.
//
// It knows the language, not the keywords: every directive, known to
// keepalived or not, becomes a Node, and deciding what a directive means is
// left to the caller. The language follows keepalived's lib/parser.c:
//
//   - '#' and '!' start a comment anywhere outside double quotes; "\#" and
//     "\!" outside quotes are a literal '#' and '!'.
//   - A line is split at the first '{' or '}' outside quotes, so braces may
//     sit at the end of a line, on their own line, or share a line with
//     content ("} else_directive", "block { a b }"). A '{' opens a block
//     for the directive before it, wherever that directive was written.
//   - Words are separated by blanks; a double-quoted word keeps its blanks
//     and loses its quotes. Backslash escapes are not interpreted.
//   - "include PATTERN" (and includer, includem, includew, includeb,
//     includea) splices files matching a glob pattern, with csh-style
//     {a,b} alternatives, relative to the including file's directory.
//   - "@id" and "@^id" at the start of a line keep or drop the line
//     depending on Options.Params (keepalived's --config-id).
//   - "$NAME=value" defines a parameter; "$NAME" and "${NAME}" expand it.
//     A value ending in '\' continues on the next lines (multi-line
//     definition) and expands to several lines.
//
// keepalived itself has no line continuation outside definitions: a
// trailing '\' elsewhere stays part of the last word, and Parse warns.
package keepalived

import (
	"fmt"
	"os"
	"path/filepath"
)

// Node is one directive, or the root of a parsed file. The root has an
// empty Name, the root file's name in File and Line 0.
type Node struct {
	Name string
	Args []string
	// Children holds the directives of the block that follows the
	// directive, in order.
	Children []*Node
	// Block is true when the directive was followed by a '{' block, even
	// an empty one, so "virtual_ipaddress {}" and a bare
	// "virtual_ipaddress" can be told apart.
	Block bool
	// File and Line locate the directive: the file it was written in
	// (an included file's own name) and its 1-based line there. A
	// directive produced by expanding a multi-line definition is located
	// at the line that expanded it.
	File string
	Line int
}

// Options adjusts where files come from and which conditional lines apply.
type Options struct {
	// ReadFile reads a configuration file. Nil means os.ReadFile.
	ReadFile func(name string) ([]byte, error)
	// Glob lists the files matching an include pattern (after {a,b}
	// alternatives have been expanded), like filepath.Glob. Nil means
	// filepath.Glob. Parse sorts the result as glob(3) does.
	Glob func(pattern string) ([]string, error)
	// Params are the config ids that "@id" lines match, like
	// keepalived's -i/--config-id (which defaults to the host name's
	// first label there; here nothing matches unless given). Params[0]
	// is also the value of ${_INSTANCE}.
	Params []string
}

// Warning is something keepalived accepts but reports, or that is likely a
// mistake: an include matching no file, an undefined $NAME.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg) }

// Location is "file:line".
func (w Warning) Location() string { return fmt.Sprintf("%s:%d", w.File, w.Line) }

// Error is a configuration error at a position. Parse joins all it found
// with errors.Join; use errors.As to reach them.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ParseFile reads the configuration file at path and parses it with Parse.
func ParseFile(path string, opts Options) (*Node, []Warning, error) {
	read := opts.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	data, err := read(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read keepalived configuration %s: %w", path, err)
	}
	return Parse(path, data, opts)
}

// Parse parses data as the keepalived configuration file name; includes are
// resolved relative to name's directory through opts.
//
// The tree is returned even when there are errors, so that a caller may show
// everything wrong at once; the error joins one *Error per problem.
func Parse(name string, data []byte, opts Options) (*Node, []Warning, error) {
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	if opts.Glob == nil {
		opts.Glob = filepath.Glob
	}
	p := newParser(opts)
	p.pushFile(name, data)
	root := p.build(name)
	return root, p.warnings, p.err()
}
