package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
)

func newFlagSet(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\n%s\n\nFlags:\n", synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// cmdCheck implements `lvsha check`: validate, then print the table the
// config describes with every real server up, as `ipvsadm -Ln` would show it.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "lvsha check [-q] [--host | --diff [-s SOCKET]] [-c] FILE",
		"Validate FILE and print the IPVS table it describes (all real servers up) in ipvsadm -Ln layout,\n"+
			"then its VRRP instances. Exit status 0 when valid, 1 with every error listed when not.\n"+
			"Touches neither the kernel nor the network, except with --host, which then checks this host for what\n"+
			"FILE needs: its interfaces, its commands' programs, IPVS, the capabilities; exit status 1 lists every one missing.", stderr)
	path := fs.String("c", "/etc/lvsha/lvsha.toml", "configuration `file` (or give it as the argument)")
	quiet := fs.Bool("q", false, "print nothing when the configuration is valid")
	diff := fs.Bool("diff", false, "ask the running daemon what a reload to FILE would change (kernel writes, probes, VRRP instances), changing nothing")
	sock := fs.String("s", "", "with --diff: the daemon's control `socket` (default: FILE's director.control_socket)")
	hostCheck := fs.Bool("host", false, "also check this host: each VRRP interface exists, each command's program is executable, IPVS answers, this process has the capabilities the daemon needs")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2}
	}
	if err := fileArg(fs, "c", path); err != nil {
		return &exitError{code: 2, err: err}
	}
	if *diff && *hostCheck {
		// --diff asks the daemon, which runs on the host already.
		return &exitError{code: 2, err: errors.New("--diff and --host: choose one")}
	}
	cfg, err := conf.Load(*path)
	if err != nil {
		return &exitError{code: 1, err: configError(*path, err)}
	}
	if *diff {
		return checkDiff(ctx, stdout, *path, cmp.Or(*sock, cfg.Director.ControlSocket))
	}
	if *quiet {
		// Still say where a real server cannot be probed: it would be
		// reported down whatever its health.
		if err := writeSelfProbeFindings(stderr, cfg, true); err != nil || !*hostCheck {
			return err
		}
		return writeHostFindings(stderr, checkHost(cfg, realHost{}), true)
	}
	allUp := func(string, netip.AddrPort) bool { return true }
	fmt.Fprintf(stdout, "%s: valid, %d virtual servers\n", *path, len(cfg.VirtualServers))
	if _, err := io.WriteString(stdout, ipvs.Format(ipvs.Desired(cfg, allUp))); err != nil {
		return err
	}
	if err := writeVRRPPlan(stdout, cfg); err != nil {
		return err
	}
	if err := writeSelfProbeFindings(stdout, cfg, false); err != nil || !*hostCheck {
		return err
	}
	return writeHostFindings(stdout, checkHost(cfg, realHost{}), false)
}

// checkDiff prints what the daemon on socket says a reload to path would
// do. The daemon reads the file itself, as a reload would.
func checkDiff(ctx context.Context, stdout io.Writer, path, socket string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	rep, err := askReload(ctx, socket, abs)
	if err != nil {
		return err
	}
	if err := rep.write(stdout, true); err != nil {
		return err
	}
	if rep.Refused {
		return &exitError{code: 1}
	}
	return nil
}

// cmdReload implements `lvsha reload`.
func cmdReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reload", "lvsha reload [-s SOCKET | -c FILE] [-o text|json]",
		"Ask the running daemon to reload its configuration file, wait, and print what changed: kernel writes,\n"+
			"probes started, stopped or restarted, VRRP instances reconfigured or rebuilt. Exit status 1 when the\n"+
			"daemon refused the file (it keeps running the previous one; every error is printed) or the kernel\n"+
			"refused part of the table.", stderr)
	client := addClientFlags(fs, "text", "json")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2}
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	socket, err := client.socket()
	if err != nil {
		return err
	}
	rep, err := askReload(ctx, socket, "")
	if err != nil {
		return err
	}
	if *client.out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.write(stdout, false)
	}
	if err != nil {
		return err
	}
	if len(rep.Errors) > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// clientFlags are the flags of the commands that talk to a running daemon:
// -s or -c name its control socket, -o the output format.
type clientFlags struct {
	sock, path, out *string
	formats         []string
}

// addClientFlags declares -s, -c and -o (formats, the first the default).
func addClientFlags(fs *flag.FlagSet, formats ...string) clientFlags {
	return clientFlags{
		sock:    fs.String("s", "", "control `socket` of the daemon (default: from -c, else "+conf.DefaultControlSocket+")"),
		path:    fs.String("c", "", "read the control socket's path from this configuration `file`"),
		out:     fs.String("o", formats[0], "output `format`: "+strings.Join(formats, ", ")),
		formats: formats,
	}
}

// socket checks -o and resolves the daemon's socket.
func (c clientFlags) socket() (string, error) {
	if !slices.Contains(c.formats, *c.out) {
		return "", &exitError{code: 2, err: fmt.Errorf("-o %q: want %s", *c.out, strings.Join(c.formats, ", "))}
	}
	return controlSocket(*c.sock, *c.path)
}

// controlSocket is the socket named by -s, else by the file of -c, else
// the default.
func controlSocket(sock, path string) (string, error) {
	if sock != "" {
		return sock, nil
	}
	if path != "" {
		cfg, err := conf.Load(path)
		if err != nil {
			return "", &exitError{code: 1, err: configError(path, err)}
		}
		return cfg.Director.ControlSocket, nil
	}
	return conf.DefaultControlSocket, nil
}

// fileArg lets a command take its configuration file as its one argument
// (`lvsha check FILE`) as well as with -flag; any other argument is an
// error, so a typo is not silently ignored.
func fileArg(fs *flag.FlagSet, flagName string, path *string) error {
	switch args := fs.Args(); {
	case len(args) == 0:
		return nil
	case len(args) > 1:
		return fmt.Errorf("unexpected arguments %q: give one configuration file", args[1:])
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == flagName })
	if set {
		return fmt.Errorf("configuration file given twice: -%s %s and %s", flagName, *path, fs.Arg(0))
	}
	*path = fs.Arg(0)
	return nil
}

// cmdStatus implements `lvsha status`.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "lvsha status [-s SOCKET | -c FILE] [-o text|wide|json] [--stats | --rate | --cluster] [VIRTUAL_SERVER...]",
		"Show the running daemon's table: each real server's weight, health and last probe, with the kernel's\n"+
			"connection counts (--stats: totals; --rate: per second, as ipvsadm). Names limit it to those virtual servers.\n"+
			"Text fits 120 columns, cutting the health and probe columns; -o wide prints them whole.", stderr)
	client := addClientFlags(fs, "text", "wide", "json")
	stats := fs.Bool("stats", false, "show total connections, packets and bytes (ipvsadm --stats)")
	rate := fs.Bool("rate", false, "show connections, packets and bytes per second (ipvsadm --rate)")
	clusterView := fs.Bool("cluster", false, "show every director of the cluster side by side: VRRP states, config digest and drift, and each real server as each director sees it")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2}
	}
	view := statusView{wide: *client.out == "wide", width: defaultWidth}
	switch {
	case *stats && *rate:
		return &exitError{code: 2, err: errors.New("--stats and --rate: choose one")}
	case *stats:
		view.counters = "stats"
	case *rate:
		view.counters = "rate"
	}
	socket, err := client.socket()
	if err != nil {
		return err
	}
	rep, err := fetchStatus(ctx, socket)
	if err != nil {
		return err
	}
	if err := rep.only(fs.Args()); err != nil {
		return &exitError{code: 1, err: err}
	}
	if *clusterView {
		if rep.Cluster == nil {
			return &exitError{code: 1, err: errors.New("this director runs without [cluster]: no cluster to show")}
		}
		if *client.out == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep.Cluster)
		}
		return writeClusterView(stdout, rep.Cluster)
	}
	if *client.out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return writeReportView(stdout, rep, time.Now(), view)
}
