package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os/exec"
	"slices"
	"strconv"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
)

// `lvsha check --host`: a valid file can still fail on the machine it is
// for (an interface named wrong, a notify script not executable, a kernel
// without IPVS, a unit without the capabilities). The daemon finds each
// one only when it needs it, some of them (a notify script) only at the
// first failover. The host check finds them all before the start.

// host is what `lvsha check --host` reads of the machine; tests fake it.
type host interface {
	// Interface is nil when the network interface name exists in this
	// network namespace, else why not.
	Interface(name string) error
	// LookPath resolves a command's program as the daemon runs it (see
	// proc.Cmd: exec.Command's lookup): a name with a slash as it is, a
	// bare name in PATH; an error when it is missing or not executable.
	LookPath(file string) (string, error)
	// IPVS is nil when the kernel's IPVS answers this process.
	IPVS() error
	// Caps is this process's effective capability set (bit n for CAP_*
	// number n).
	Caps() (uint64, error)
}

// realHost is this machine.
type realHost struct{}

func (realHost) Interface(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		// net's "route ip+net: " prefix says nothing to an operator.
		if oe := (*net.OpError)(nil); errors.As(err, &oe) {
			return oe.Err
		}
		return err
	}
	return nil
}

func (realHost) LookPath(file string) (string, error) { return exec.LookPath(file) }

func (realHost) IPVS() error {
	h, err := ipvs.Open("")
	if err != nil {
		return err
	}
	h.Close()
	return nil
}

func (realHost) Caps() (uint64, error) { return effectiveCaps() }

// hostFinding is one line of `lvsha check --host`: an item of the host the
// file needs, where the file asks for it (Key and Line; none for IPVS and
// the capabilities, which every file needs), and whether it is there.
type hostFinding struct {
	File, Key string
	Line      int
	Missing   bool
	Msg       string
}

func (f hostFinding) String() string {
	s := "host"
	if f.Key != "" {
		s = f.File
		if f.Line > 0 {
			s += ":" + strconv.Itoa(f.Line)
		}
		s += ": " + f.Key
	}
	status := "ok"
	if f.Missing {
		status = "missing"
	}
	return s + ": " + status + ": " + f.Msg
}

// hostCommand is one operator command of a configuration and the key
// that gives it.
type hostCommand struct {
	key  string
	argv []string
}

// hostCommands lists every command cfg makes the daemon run: exec
// checks, real-server and quorum hooks, VRRP notify hooks and track_exec
// commands (checkHost puts them in the file's order).
func hostCommands(cfg *conf.Config) []hostCommand {
	var out []hostCommand
	add := func(key string, argv []string) {
		if len(argv) > 0 {
			out = append(out, hostCommand{key: key, argv: argv})
		}
	}
	for i, vs := range cfg.VirtualServers {
		vsKey := "virtual_server[" + strconv.Itoa(i) + "]"
		// A real server's check is its virtual server's merged with its
		// own: a command it inherits is listed once, at the virtual
		// server's check, and only when some real server runs it.
		inherited := false
		for j, rs := range vs.RealServers {
			rsKey := vsKey + ".real_server[" + strconv.Itoa(j) + "]"
			if c := rs.Check; c != nil && c.Type == "exec" {
				if vc := vs.Check; vc != nil && vc.Type == "exec" && slices.Equal(vc.Command, c.Command) {
					if !inherited {
						add(vsKey+".check.command", c.Command)
						inherited = true
					}
				} else {
					add(rsKey+".check.command", c.Command)
				}
			}
			add(rsKey+".notify_up", rs.NotifyUp)
			add(rsKey+".notify_down", rs.NotifyDown)
		}
		add(vsKey+".notify_quorum_up", vs.NotifyQuorumUp)
		add(vsKey+".notify_quorum_down", vs.NotifyQuorumDown)
	}
	for i, ic := range cfg.VRRPInstances {
		key := "vrrp_instance[" + strconv.Itoa(i) + "]"
		add(key+".notify_master", ic.Notify.Master)
		add(key+".notify_backup", ic.Notify.Backup)
		add(key+".notify_fault", ic.Notify.Fault)
		add(key+".notify_stop", ic.Notify.Stop)
		add(key+".notify", ic.Notify.Any)
	}
	for i, te := range cfg.TrackExecs {
		add("track_exec["+strconv.Itoa(i)+"].command", te.Command)
	}
	return out
}

// hostInterface is one network interface of a configuration and the key
// that names it.
type hostInterface struct {
	key, name string
}

// hostInterfaces lists the interfaces cfg's VRRP instances use: each
// one's own, then those it tracks.
func hostInterfaces(cfg *conf.Config) []hostInterface {
	var out []hostInterface
	for i, ic := range cfg.VRRPInstances {
		key := "vrrp_instance[" + strconv.Itoa(i) + "]"
		out = append(out, hostInterface{key + ".interface", ic.Interface})
		for j, name := range ic.TrackInterfaces {
			out = append(out, hostInterface{key + ".track_interfaces[" + strconv.Itoa(j) + "]", name})
		}
		for j, ti := range ic.TrackInterfaceWeights {
			out = append(out, hostInterface{key + ".track_interface[" + strconv.Itoa(j) + "].name", ti.Name})
		}
	}
	return out
}

// checkHost checks h for everything cfg needs of it: each interface, each
// command's program, IPVS, and the capabilities `lvsha run` would ask for
// (neededCaps). Every item is checked, whatever an earlier one said, so
// one run lists every problem.
func checkHost(cfg *conf.Config, h host) []hostFinding {
	var out []hostFinding
	at := func(key string) hostFinding {
		return hostFinding{File: cfg.Source, Key: key, Line: cfg.Line(key)}
	}
	for _, it := range hostInterfaces(cfg) {
		f := at(it.key)
		if err := h.Interface(it.name); err != nil {
			f.Missing, f.Msg = true, fmt.Sprintf("interface %s: %v", it.name, err)
		} else {
			f.Msg = "interface " + it.name + " exists"
		}
		out = append(out, f)
	}
	for _, c := range hostCommands(cfg) {
		f := at(c.key)
		if path, err := h.LookPath(c.argv[0]); err != nil {
			f.Missing, f.Msg = true, lookPathProblem(c.argv[0], err)
		} else if path != c.argv[0] {
			f.Msg = c.argv[0] + " is " + path + ", executable"
		} else {
			f.Msg = path + " is executable"
		}
		out = append(out, f)
	}
	// In the file's order, so the lines read along the file; an
	// interface and a command of one line keep this order.
	slices.SortStableFunc(out, func(a, b hostFinding) int { return cmp.Compare(a.Line, b.Line) })
	ipvsFinding := hostFinding{Msg: "IPVS reachable"}
	if err := h.IPVS(); err != nil {
		ipvsFinding.Missing, ipvsFinding.Msg = true, fmt.Sprintf("IPVS not reachable: %v", err)
	}
	out = append(out, ipvsFinding)
	eff, err := h.Caps()
	if err != nil {
		return append(out, hostFinding{Missing: true, Msg: "capabilities: " + err.Error()})
	}
	for _, n := range neededCaps(cfg, false) {
		f := hostFinding{Msg: "capability " + n.String()}
		if !n.in(eff) {
			f.Missing = true
			f.Msg += ": this process lacks it (run as root, or grant it: systemd AmbientCapabilities= and CapabilityBoundingSet=)"
		}
		out = append(out, f)
	}
	return out
}

// lookPathProblem says why file cannot run. exec.Error's own text
// quotes the name after "exec:", which reads as a Go error, not a
// finding.
func lookPathProblem(file string, err error) string {
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	// A *fs.PathError repeats the path (and says "stat").
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return file + ": not found in PATH"
	case errors.Is(err, exec.ErrDot):
		return file + ": found only relative to the current directory (in PATH as \".\")"
	}
	return file + ": " + err.Error()
}

// writeHostFindings prints the findings, only the missing ones when
// missingOnly, and returns an exit error saying how many are missing.
func writeHostFindings(w io.Writer, findings []hostFinding, missingOnly bool) error {
	missing := 0
	for _, f := range findings {
		if f.Missing {
			missing++
		} else if missingOnly {
			continue
		}
		if _, err := fmt.Fprintln(w, f); err != nil {
			return err
		}
	}
	if missing > 0 {
		return &exitError{code: 1, err: fmt.Errorf("host check: %d missing of %d", missing, len(findings))}
	}
	return nil
}
