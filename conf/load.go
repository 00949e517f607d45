package conf

import (
	"errors"
	"fmt"
	"os"
	"reflect"

	"github.com/BurntSushi/toml"
)

// Load reads and validates the configuration file at path. Director.Name
// defaults to the hostname here (Parse leaves it empty).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if c.Director.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("%s: director.name is not set and the hostname is unknown: %w", path, err)
		}
		c.Director.Name = h
	}
	return c, nil
}

// Parse validates a configuration held in memory; filename is used in error
// messages and as Config.Source. It reads no files and resolves no names, so
// the same input always gives the same result; in particular Director.Name
// stays empty when the file does not set it (Load fills in the hostname).
//
// On failure the error is an errors.Join of one *Error per problem found,
// sorted by line; a TOML syntax error stops parsing and is reported alone.
func Parse(filename string, data []byte) (*Config, error) {
	var root map[string]any
	if _, err := toml.Decode(string(data), &root); err != nil {
		e := &Error{File: filename, Msg: "syntax error: " + err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line, e.Msg = pe.Position.Line, "syntax error: "+pe.Message
		}
		return nil, errors.Join(e)
	}
	el := &errorList{file: filename, lines: indexLines(string(data))}
	raw := (&reader{el}).config(root)
	c := (&builder{el}).config(raw, filename)
	if err := el.err(); err != nil {
		return nil, err
	}
	c.lines = el.lines
	return c, nil
}

// Equal reports whether c and o configure the same behaviour, so a reload
// that changes nothing can be skipped. Source is not compared: the same
// settings read from another path are still the same configuration.
func (c *Config) Equal(o *Config) bool {
	if c == nil || o == nil {
		return c == o
	}
	a, b := *c, *o
	// Where keys stand in the file changes no behaviour.
	a.Source, b.Source = "", ""
	a.lines, b.lines = nil, nil
	return reflect.DeepEqual(a, b)
}
