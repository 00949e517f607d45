package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lvsha/lvsha/conf/keepalived"
)

// Exit statuses of `lvsha convert`.
const (
	convertCarried = 0 // everything was carried
	convertFailed  = 1 // nothing written: an error, or a warning under --strict
	convertWarned  = 3 // written, with warnings about what was not carried
)

// cmdConvert implements `lvsha convert`: keepalived.conf in, lvsha TOML out.
func cmdConvert(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("convert", "lvsha convert [-o OUT.toml] [--strict] [-i ID] keepalived.conf",
		"Convert a keepalived configuration (includes, $VARIABLES and @id lines resolved) to lvsha TOML.\n"+
			"Every directive that is not carried is listed as file:line with the reason.\n"+
			"Exit status 0 when everything was carried, 3 when something was only warned about,\n"+
			"1 on error (and under --strict on any warning); nothing is written on status 1.", stderr)
	out := fs.String("o", "", "write the TOML to this `file` instead of standard output")
	strict := fs.Bool("strict", false, "treat every warning as an error")
	id := fs.String("i", "", "keepalived --config-id: the `id` that @id lines match")
	// Flags may follow the file name too, as operators type them.
	var files []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return &exitError{code: 2}
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 1 {
		fs.Usage()
		return &exitError{code: 2, err: fmt.Errorf("want one keepalived configuration file (got %d)", len(files))}
	}
	src := files[0]
	var opts keepalived.Options
	if *id != "" {
		opts.Params = []string{*id}
	}
	root, warns, err := keepalived.ParseFile(src, opts)
	if err != nil {
		return &exitError{code: convertFailed, err: fmt.Errorf("%s: not converted:\n%w", src, err)}
	}
	name := *out
	if name == "" {
		name = "lvsha.toml"
	}
	conv, err := keepalived.Convert(root, name)
	if conv != nil {
		warns = append(warns, conv.Warnings...)
	}
	for _, w := range warns {
		fmt.Fprintf(stderr, "%s: warning: %s\n", w.Location(), w.Msg)
	}
	if err != nil {
		return &exitError{code: convertFailed, err: fmt.Errorf("%s: not converted:\n%w", src, err)}
	}
	if *strict && len(warns) > 0 {
		return &exitError{code: convertFailed, err: fmt.Errorf("%s: not converted: %d directives not carried (--strict)", src, len(warns))}
	}
	if *out == "" {
		if _, err := stdout.Write(conv.TOML); err != nil {
			return fmt.Errorf("write TOML: %w", err)
		}
	} else if err := writeFileAtomic(*out, conv.TOML); err != nil {
		return &exitError{code: convertFailed, err: err}
	}
	fmt.Fprintf(stderr, "%s: %d virtual servers, %d VRRP instances converted; %d directives not carried\n",
		src, len(conv.Config.VirtualServers), len(conv.Config.VRRPInstances), len(warns))
	if len(warns) > 0 {
		return &exitError{code: convertWarned}
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so a failed write never leaves half a configuration behind.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".lvsha-convert-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
