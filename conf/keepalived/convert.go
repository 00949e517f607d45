package keepalived

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// Conversion is the result of Convert: lvsha TOML that conf accepts, and
// what keepalived's file said that the TOML does not carry.
type Conversion struct {
	// TOML is the lvsha configuration, grouped like the keepalived file
	// and commented where a value changed meaning.
	TOML []byte
	// Warnings name every directive that was not carried, or carried only
	// in part, with its file:line and the reason. Parse's warnings come
	// first.
	Warnings []Warning
	// Config is TOML parsed by conf.Parse, proof that lvsha accepts it.
	Config *conf.Config
}

// Convert maps a keepalived configuration tree, as Parse returns it, to
// lvsha's TOML. name is the TOML's file name used in conf's messages.
//
// A directive lvsha cannot carry becomes a Warning, never a silent drop;
// the error is for input that keepalived itself would reject or skip in a
// way that leaves nothing sensible to write (a virtual_server with a bad
// address, an unknown virtual_server_group), and for TOML that conf
// rejects, which the error then explains.
func Convert(root *Node, name string) (*Conversion, error) {
	c := &converter{
		vsGroups: map[string]*Node{},
		scripts:  map[string]*vrrpScript{},
		garp:     -1,
		version:  2,
	}
	c.collect(root)
	doc := c.document()
	out := &Conversion{TOML: []byte(doc), Warnings: dedupWarnings(c.warns)}
	if len(c.errs) > 0 {
		return out, errors.Join(c.errs...)
	}
	cfg, err := conf.Parse(name, out.TOML)
	if err != nil {
		return out, fmt.Errorf("the converted configuration is not valid lvsha configuration (a converter bug, or a value lvsha cannot express):\n%w", err)
	}
	out.Config = cfg
	return out, nil
}

// dedupWarnings drops repeats, which a virtual_server_group produces by
// rendering one block several times, and orders the rest by position.
func dedupWarnings(ws []Warning) []Warning {
	seen := map[Warning]bool{}
	var out []Warning
	for _, w := range ws {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	return out
}

// converter walks the tree once to collect what the top level defines,
// then renders the TOML in lvsha's order: director, virtual servers,
// track_exec commands, VRRP instances and sync groups.
type converter struct {
	warns []Warning
	errs  []error

	directorName *Node
	// rtPriority and nice are the strongest of keepalived's VRRP and
	// checker processes' (vrrp_rt_priority, checker_rt_priority;
	// vrrp_priority, checker_priority): lvsha is one process. Their nodes
	// say where they came from.
	rtPriority, nice   int
	rtNodes, niceNodes []*Node
	vsGroups           map[string]*Node
	vss                []*Node
	scripts            map[string]*vrrpScript
	scriptOrder        []string
	instances          []*Node
	syncGroups         []*Node

	// VRRP defaults from global_defs.
	version     int           // vrrp_version; keepalived's default is 2
	garp        int           // vrrp_garp_master_repeat; -1 when unset
	garpRefresh time.Duration // vrrp_garp_master_refresh
	garpNode    *Node
	refreshNode *Node
	// vrrp_garp_interval and vrrp_gna_interval: the gap in the bursts of
	// IPv4 and of IPv6 instances.
	garpInterval, gnaInterval *Node

	// usedScripts are the vrrp_script names some instance tracks;
	// skippedScripts were tracked in a way lvsha cannot carry.
	usedScripts, skippedScripts map[string]bool
	// converted names the vrrp_instances that were rendered: a sync
	// group carries only those.
	converted map[string]bool

	// syncd is the IPVS sync daemon: the first lvs_sync_daemon or
	// lvs_sync_daemon_interface in file order, as keepalived keeps the
	// first; syncRendered says its instance's table carries it.
	syncd        *syncDaemon
	syncRendered bool
}

func (c *converter) warn(n *Node, format string, args ...any) {
	c.warns = append(c.warns, Warning{File: n.File, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func (c *converter) errorf(n *Node, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: n.File, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// notCarried warns that a directive has no lvsha equivalent.
func (c *converter) notCarried(n *Node, why string) {
	c.warn(n, "%s: not carried: %s", n.Name, why)
}

// dropped warns about a directive of block where that lvsha does not
// carry: with its reason when reasons has one, else as unknown.
func (c *converter) dropped(n *Node, reasons map[string]string, where string) {
	if why, ok := reasons[n.Name]; ok {
		c.notCarried(n, why)
		return
	}
	c.unknown(n, where)
}

// unknown warns about a directive this converter does not know at all.
func (c *converter) unknown(n *Node, where string) {
	c.warn(n, "%s: not carried: not a %s directive lvsha convert knows", n.Name, where)
}

func (c *converter) collect(root *Node) {
	for _, n := range root.Children {
		switch n.Name {
		case "global_defs":
			c.globalDefs(n)
		case "virtual_server_group":
			if len(n.Args) != 1 {
				c.errorf(n, "virtual_server_group: want one name (got %d words)", len(n.Args))
				continue
			}
			c.vsGroups[n.Args[0]] = n
		case "virtual_server":
			c.vss = append(c.vss, n)
		case "vrrp_script":
			c.vrrpScript(n)
		case "vrrp_instance":
			c.instances = append(c.instances, n)
			// Read here, not with the rest of the instance, so that the
			// first of it and global_defs' lvs_sync_daemon wins.
			for _, d := range n.Children {
				if d.Name == "lvs_sync_daemon_interface" {
					c.lvsSyncInterface(n, d)
				}
			}
		case "vrrp_sync_group":
			c.syncGroups = append(c.syncGroups, n)
		case "real_server":
			c.warn(n, "real_server: not carried: outside any virtual_server (keepalived ignores it too)")
		default:
			c.dropped(n, topLevelReasons, "top-level")
		}
	}
}

var topLevelReasons = map[string]string{
	"static_ipaddress":     "lvsha manages only the VIPs of its VRRP instances; configure static addresses with the system's network configuration",
	"static_routes":        "lvsha manages no routes; configure them with the system's network configuration",
	"static_rules":         "lvsha manages no policy rules; configure them with the system's network configuration",
	"vrrp_track_process":   "lvsha has no process tracker; a [[track_exec]] such as [\"/usr/bin/pgrep\", \"-x\", \"name\"] does the same",
	"vrrp_track_file":      "lvsha has no file tracker; a [[track_exec]] that reads the file does the same",
	"track_file":           "lvsha has no file tracker; a [[track_exec]] that reads the file does the same",
	"garp_group":           "lvsha has no GARP interface groups; each instance announces on its own interface",
	"linkbeat_interfaces":  "lvsha watches links through netlink only",
	"bfd_instance":         "lvsha runs BFD with its VRRP peers by itself (bfd in [[vrrp_instance]], on by default); sessions to other peers are not carried",
	"SSL":                  "lvsha's https checks present no client certificate",
	"net_namespace":        "run lvsha inside the namespace instead (ip netns exec)",
	"net_namespace_ipvs":   "run lvsha inside the namespace instead (ip netns exec)",
	"instance":             "run one lvsha per configuration instead",
	"use_pid_dir":          "lvsha keeps no pid files",
	"linkbeat_use_polling": "lvsha watches links through netlink only",
}

// globalReasons explain the global_defs keys lvsha has no use for.
var globalReasons = map[string]string{
	"notification_email":       "lvsha sends no mail; use VRRP notify hooks or `lvsha status -o json`",
	"notification_email_from":  "lvsha sends no mail",
	"smtp_server":              "lvsha sends no mail",
	"smtp_helo_name":           "lvsha sends no mail",
	"smtp_connect_timeout":     "lvsha sends no mail",
	"smtp_alert":               "lvsha sends no mail",
	"smtp_alert_vrrp":          "lvsha sends no mail",
	"smtp_alert_checker":       "lvsha sends no mail",
	"lvs_flush":                "lvsha never flushes the IPVS table: it adopts what is there and changes only the difference",
	"lvs_flush_onstop":         "lvsha leaves the table in place on stop so connections survive a restart; `lvsha run --cleanup` removes its services",
	"lvs_timeouts":             "set IPVS timeouts with `ipvsadm --set` at boot",
	"enable_script_security":   "lvsha runs every command as its own user, without a shell",
	"script_user":              "lvsha runs every command as its own user",
	"vrrp_strict":              "lvsha follows RFC 5798 without keepalived's strict-mode restrictions (no iptables rules)",
	"vrrp_iptables":            "lvsha installs no firewall rules",
	"vrrp_ipsets":              "lvsha installs no firewall rules",
	"nftables":                 "lvsha installs no firewall rules",
	"vrrp_skip_check_adv_addr": "lvsha compares the advertised addresses only to count mismatches; it never drops for them",
	"vrrp_garp_master_delay":   "lvsha announces once on becoming master, repeated garp_repeat times",
	"vrrp_mcast_group4":        "lvsha uses the RFC groups 224.0.0.18 and ff02::12",
	"vrrp_mcast_group6":        "lvsha uses the RFC groups 224.0.0.18 and ff02::12",
	"vrrp_no_swap":             "lvsha does not lock its memory",
	"checker_no_swap":          "lvsha does not lock its memory",
	"dynamic_interfaces":       "lvsha waits for a missing interface by putting the instance in fault",
	"max_auto_priority":        "lvsha takes no priority on its own: set director.rt_priority",
	"snmp_socket":              "lvsha has no SNMP agent; use `lvsha status -o json`",
	"enable_snmp_vrrp":         "lvsha has no SNMP agent; use `lvsha status -o json`",
	"enable_snmp_checker":      "lvsha has no SNMP agent; use `lvsha status -o json`",
	"enable_snmp_rfc":          "lvsha has no SNMP agent; use `lvsha status -o json`",
	"enable_snmp_keepalived":   "lvsha has no SNMP agent; use `lvsha status -o json`",
	"enable_dbus":              "lvsha has no D-Bus interface; use `lvsha status -o json`",
	"vrrp_notify_fifo":         "lvsha has no notify FIFO; use notify hooks",
	"notify_fifo":              "lvsha has no notify FIFO; use notify hooks",
	"lvs_notify_fifo":          "lvsha has no notify FIFO",
	"vrrp_notify_fifo_script":  "lvsha has no notify FIFO; use notify hooks",
	"notify_fifo_script":       "lvsha has no notify FIFO; use notify hooks",
	"script_security":          "lvsha runs every command as its own user, without a shell",
}

func (c *converter) globalDefs(g *Node) {
	for _, n := range g.Children {
		switch n.Name {
		case "router_id":
			if len(n.Args) != 1 {
				c.warn(n, "router_id: not carried: want one name (got %d words)", len(n.Args))
				continue
			}
			c.directorName = n
		case "vrrp_version":
			c.intInto(&c.version, n, 2, 3)
		case "vrrp_rt_priority", "checker_rt_priority":
			if v, ok := c.intArg(n, 1, 99); ok {
				c.rtPriority, c.rtNodes = max(c.rtPriority, v), append(c.rtNodes, n)
			}
		case "vrrp_priority", "checker_priority":
			v, ok := c.intArg(n, -20, 19)
			switch {
			case ok && v > 0:
				c.warn(n, "%s: not carried: lvsha runs VRRP and checks in one process, and a positive nice would slow its adverts too (got %d)", n.Name, v)
			case ok && v < 0:
				c.nice, c.niceNodes = min(c.nice, v), append(c.niceNodes, n)
			}
		case "vrrp_garp_master_repeat":
			if v, ok := c.intArg(n, 1, 100); ok {
				c.garp, c.garpNode = v, n
			}
		case "vrrp_garp_master_refresh":
			if d, ok := c.secondsArg(n); ok {
				c.garpRefresh, c.refreshNode = d, n
			}
		case "lvs_sync_daemon":
			c.lvsSyncDaemon(n)
		case "vrrp_garp_interval", "vrrp_gna_interval":
			if d, ok := c.secondsArg(n); ok {
				if d > time.Second {
					c.warn(n, "%s: not carried: lvsha allows at most 1s between two announcements (got %s)", n.Name, d)
				} else if n.Name == "vrrp_garp_interval" {
					c.garpInterval = n
				} else {
					c.gnaInterval = n
				}
			}
		default:
			c.dropped(n, globalReasons, "global_defs")
		}
	}
}

// intArg reads the one integer argument of n within lo..hi, warning
// otherwise.
func (c *converter) intArg(n *Node, lo, hi int) (int, bool) {
	if len(n.Args) < 1 {
		c.warn(n, "%s: not carried: missing value (want an integer %d..%d)", n.Name, lo, hi)
		return 0, false
	}
	var v int
	if _, err := fmt.Sscanf(n.Args[0], "%d", &v); err != nil || fmt.Sprint(v) != n.Args[0] || v < lo || v > hi {
		c.warn(n, "%s: not carried: invalid value (got %q, want an integer %d..%d)", n.Name, n.Args[0], lo, hi)
		return 0, false
	}
	c.extraArgs(n, 1)
	return v, true
}

// intInto stores the one integer argument of n in dst when it is within
// lo..hi, and leaves dst as it was, with a warning, otherwise.
func (c *converter) intInto(dst *int, n *Node, lo, hi int) {
	if v, ok := c.intArg(n, lo, hi); ok {
		*dst = v
	}
}

// secondsArg reads a keepalived time value: seconds, possibly with a
// decimal fraction down to microseconds.
func (c *converter) secondsArg(n *Node) (time.Duration, bool) {
	if len(n.Args) < 1 {
		c.warn(n, "%s: not carried: missing value (want seconds)", n.Name)
		return 0, false
	}
	d, ok := parseSeconds(n.Args[0])
	if !ok {
		c.warn(n, "%s: not carried: invalid value (got %q, want seconds such as 3 or 0.5)", n.Name, n.Args[0])
		return 0, false
	}
	c.extraArgs(n, 1)
	return d, true
}

func (c *converter) extraArgs(n *Node, want int) {
	if len(n.Args) > want {
		c.warn(n, "%s: extra words not carried: %s", n.Name, strings.Join(n.Args[want:], " "))
	}
}

// parseSeconds parses "3", "0.1", "1.25" as keepalived's read_decimal_unsigned
// does, to microseconds.
func parseSeconds(s string) (time.Duration, bool) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" || len(frac) > 6 {
		return 0, false
	}
	var d time.Duration
	for _, r := range whole {
		if r < '0' || r > '9' {
			return 0, false
		}
		d = d*10 + time.Duration(r-'0')
		if d > 1<<20 {
			return 0, false
		}
	}
	d *= time.Second
	unit := 100 * time.Millisecond
	for _, r := range frac {
		if r < '0' || r > '9' {
			return 0, false
		}
		d += time.Duration(r-'0') * unit
		unit /= 10
	}
	return d, true
}

// document renders the TOML.
func (c *converter) document() string {
	w := &tomlWriter{}
	w.comment("lvsha configuration converted from keepalived by `lvsha convert`.")
	w.comment("Comments name the keepalived file:line each part came from and say where")
	w.comment("a value changed meaning; `lvsha convert` lists what was not carried.")
	if c.directorName != nil || len(c.rtNodes) > 0 || len(c.niceNodes) > 0 {
		w.blank()
		w.table("director")
	}
	if c.directorName != nil {
		w.kv("name", str(c.directorName.Args[0]), at(c.directorName, "router_id"))
	}
	// One process runs what keepalived splits in two: the stronger of
	// the two settings, for both.
	from := func(ns []*Node) string {
		var s []string
		for _, n := range ns {
			s = append(s, at(n, n.Name))
		}
		return strings.Join(s, ", ")
	}
	if c.rtPriority > 0 {
		w.kv("rt_priority", fmt.Sprint(c.rtPriority), from(c.rtNodes)+"; the whole daemon, checks included")
	}
	if c.nice != 0 {
		w.kv("nice", fmt.Sprint(c.nice), from(c.niceNodes)+"; the whole daemon, checks included")
	}
	for _, n := range c.vss {
		c.virtualServer(w, n)
	}
	// The instances decide which vrrp_scripts are written, and lvsha's
	// track_exec tables come before its instances; each instance is
	// rendered apart, before the scripts, so that the report keeps the
	// order of reading.
	c.usedScripts, c.skippedScripts, c.converted = map[string]bool{}, map[string]bool{}, map[string]bool{}
	var instances []*tomlWriter
	for _, n := range c.instances {
		iw := &tomlWriter{}
		errs := len(c.errs)
		if vi, ok := c.parseInstance(n); ok {
			c.renderInstance(iw, vi)
		}
		if len(c.errs) == errs && len(n.Args) == 1 {
			c.converted[n.Args[0]] = true
		}
		instances = append(instances, iw)
	}
	c.checkSyncInstance()
	c.renderScripts(w)
	for _, iw := range instances {
		w.b.WriteString(iw.b.String())
	}
	for _, n := range c.syncGroups {
		c.syncGroup(w, n)
	}
	return w.b.String()
}

// at renders "file:line keyword" for a comment.
func at(n *Node, what string) string {
	return fmt.Sprintf("%s:%d %s", n.File, n.Line, what)
}

// tomlWriter writes TOML by hand so that the output keeps keepalived's
// grouping and carries comments; conf.Parse checks the result.
type tomlWriter struct {
	b      strings.Builder
	indent string
}

func (w *tomlWriter) blank() { w.b.WriteString("\n") }

func (w *tomlWriter) comment(s string) {
	for _, l := range strings.Split(s, "\n") {
		w.b.WriteString(w.indent + "# " + l + "\n")
	}
}

func (w *tomlWriter) table(name string) { w.b.WriteString(w.indent + "[" + name + "]\n") }
func (w *tomlWriter) array(name string) { w.b.WriteString(w.indent + "[[" + name + "]]\n") }

// kv writes key = value, with a trailing comment when note is set.
func (w *tomlWriter) kv(key, value, note string) {
	w.b.WriteString(w.indent + key + " = " + value)
	if note != "" {
		w.b.WriteString("  # " + strings.ReplaceAll(note, "\n", " "))
	}
	w.b.WriteString("\n")
}

// str quotes s as a TOML basic string.
func str(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func strs(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = str(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// dur renders a duration the way a person would write it.
func dur(d time.Duration) string {
	switch {
	case d == 0:
		return `"0s"`
	case d%time.Second == 0:
		return fmt.Sprintf(`"%ds"`, d/time.Second)
	case d%time.Millisecond == 0:
		return fmt.Sprintf(`"%dms"`, d/time.Millisecond)
	default:
		return fmt.Sprintf(`"%dus"`, d/time.Microsecond)
	}
}

// splitCommand splits a keepalived script line into argv the way
// keepalived does before execve: on blanks, with single or double quotes
// grouping words and a backslash escaping the next character. ok is false
// when the line needs a shell (it uses shell syntax), in which case the
// caller runs it through /bin/sh -c.
func splitCommand(s string) (argv []string, ok bool) {
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				argv = append(argv, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune("|&;<>()$`*?[~", r):
			return nil, false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, false
	}
	if inWord {
		argv = append(argv, cur.String())
	}
	return argv, len(argv) > 0
}

// command turns a keepalived script string into an lvsha argv, and says
// when it had to add a shell.
func command(s string) (argv []string, viaShell bool) {
	if a, ok := splitCommand(s); ok {
		return a, false
	}
	return []string{"/bin/sh", "-c", s}, true
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(e string) bool { return strings.EqualFold(e, s) })
}
