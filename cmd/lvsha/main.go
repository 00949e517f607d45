// Command lvsha is a health-checking high-availability director for Linux
// Virtual Server (IPVS).
//
//	lvsha run -c FILE      run the daemon
//	lvsha check -c FILE    validate a configuration and print its table
//	lvsha reload           reload the daemon and print what changed
//	lvsha status           show the running daemon's table and health
//	lvsha events [-f]      show (and follow) the daemon's recent state changes
//	lvsha convert FILE     convert a keepalived.conf to lvsha TOML
//	lvsha version          print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

const usage = `lvsha — health-checking high-availability director for Linux IPVS

Usage:
  lvsha run     [-c] FILE [--cleanup]  run the director daemon
  lvsha check   [-c] FILE              validate FILE; print the IPVS table and VRRP instances it describes
  lvsha check   --host [-c] FILE       ... and check this host: interfaces, commands, IPVS, capabilities
  lvsha check   --diff [-c] FILE       ask the daemon what a reload to FILE would change
  lvsha reload  [-s SOCKET | -c FILE]  reload the daemon's file; print what changed (exit 1 if refused)
  lvsha drain   VS RS                  weight 0 by hand: established connections go on, no new ones
  lvsha maint   VS RS                  out of the kernel's table by hand (maintenance)
  lvsha undrain VS RS                  back to its health checks
  lvsha status  [-s SOCKET | -c FILE] [-o text|wide|json] [--stats|--rate|--cluster] [VS...]
                                       show the live table, health and counters
  lvsha events  [-s SOCKET | -c FILE] [-f] [-o text|json]
                                       recent state changes: health, drains, quorum, reloads, VRRP
  lvsha convert [-o OUT] [--strict] keepalived.conf
                                       convert a keepalived configuration to lvsha TOML
  lvsha version                        print version information

Run "lvsha COMMAND -h" for the flags of one command.
`

// exitError carries a process exit status through the command functions so
// that main is the only place that calls os.Exit.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(runMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// runMain dispatches a command line and returns the exit status; tests call
// it directly.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "check":
		err = cmdCheck(ctx, args[1:], stdout, stderr)
	case "reload":
		err = cmdReload(ctx, args[1:], stdout, stderr)
	case "drain", "maint", "undrain":
		err = cmdManual(ctx, args[0], args[1:], stdout, stderr)
	case "status":
		err = cmdStatus(ctx, args[1:], stdout, stderr)
	case "events":
		err = cmdEvents(ctx, args[1:], stdout, stderr)
	case "convert":
		err = cmdConvert(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "lvsha: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "lvsha %s: %v\n", args[0], ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "lvsha %s: %v\n", args[0], err)
	return 1
}

// stampedVersion is the version scripts/package stamps in at link time
// (-ldflags -X main.stampedVersion=...), the .deb's version; empty in a
// plain go build, which reports what debug.BuildInfo knows instead. Only
// the linker writes it.
var stampedVersion string

func versionString() string {
	v, rev, dirty := buildVersion()
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		if dirty {
			rev += "+dirty"
		}
		return fmt.Sprintf("lvsha %s (%s) %s", v, rev, runtime.Version())
	}
	return "lvsha " + v + " " + runtime.Version()
}

// buildVersion is the version stamped at link time, else the module
// version ("(devel)" when built from a checkout), and the VCS revision the
// binary was built from, and whether the tree had local changes.
func buildVersion() (version, revision string, dirty bool) {
	version = "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if stampedVersion != "" {
		version = stampedVersion
	}
	return version, revision, dirty
}
