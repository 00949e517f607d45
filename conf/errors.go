package conf

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Error is one problem found in a configuration file. Parse and Load return
// every problem they find at once, as an errors.Join of *Error values; use
// errors.As for the first one or the Unwrap() []error method of the joined
// error for all of them.
//
// Key is the TOML key path of the offending value: table and key names joined
// by dots, with the 0-based position of an array element (including an
// [[array of tables]] entry, counted in file order) in brackets, for example
// "virtual_server[1].real_server[0].weight" or
// "virtual_server[0].check.status[2]". Names that are not bare TOML keys are
// written quoted. Key is empty for syntax errors.
type Error struct {
	File string // file name as given to Parse or Load
	Line int    // 1-based line of the offending key or table; 0 when unknown
	Key  string // key path, see above
	Msg  string // what is wrong, usually ending in "(got X, want Y)"
}

// Error formats the problem as "file:line: key: msg", leaving out the line
// when it is unknown and the key when it is empty.
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	if e.Key != "" {
		s += ": " + e.Key
	}
	return s + ": " + e.Msg
}

// errorList collects problems while a file is validated, so that one run
// reports all of them.
type errorList struct {
	file  string
	lines *lazyLines
	errs  []*Error
}

// add records a problem with the value at key; its line is the line of key,
// or of the nearest enclosing table or array element found in the file.
func (l *errorList) add(key, format string, args ...any) {
	l.errs = append(l.errs, &Error{
		File: l.file,
		Line: l.lines.line(key),
		Key:  key,
		Msg:  fmt.Sprintf(format, args...),
	})
}

// err returns the problems sorted by line and key, without duplicates (an
// invalid value in a virtual server's check is seen again through every real
// server that inherits it), or nil when there are none.
func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	seen := make(map[Error]bool, len(l.errs))
	var errs []*Error
	for _, e := range l.errs {
		if !seen[*e] {
			seen[*e] = true
			errs = append(errs, e)
		}
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Key, b.Key))
	})
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}
