package keepalived

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// syncDaemon is keepalived's IPVS connection sync daemon: global_defs'
// `lvs_sync_daemon IFACE INSTANCE [id ID] [maxlen N] [port P] [ttl T]
// [group IP]`, or the deprecated `lvs_sync_daemon_interface IFACE` of a
// vrrp_instance. keepalived runs one, following one instance; lvsha's is
// that instance's [vrrp_instance.lvs_sync] table. A zero option is unset:
// the kernel's default applies, as lvsha's do.
type syncDaemon struct {
	node     *Node
	iface    string
	instance string
	id       int // -1: the instance's virtual_router_id
	maxLen   int
	port     int
	ttl      int
	group    netip.Addr
}

// Bounds keepalived (global_parser.c lvs_syncd_handler) and the kernel
// (IP_VS_IFNAME_MAXLEN, start_sync_thread) put on the sync daemon.
const (
	maxSyncIfname = 15 // IP_VS_IFNAME_MAXLEN less the NUL
	maxSyncLen4   = 65535 - 20 - 8
	maxSyncLen6   = 65535 - 40 - 8
)

// lvsSyncDaemon reads global_defs' lvs_sync_daemon as keepalived does: a
// second one is ignored, a bad option is dropped with a warning and the
// rest is kept, and a bare number after the instance is the sync id of
// keepalived before the "id" keyword.
func (c *converter) lvsSyncDaemon(n *Node) {
	if c.syncd != nil {
		c.warn(n, "lvs_sync_daemon: not carried: keepalived runs one sync daemon and ignores this one; the first is at %s:%d", c.syncd.node.File, c.syncd.node.Line)
		return
	}
	if len(n.Args) < 2 {
		c.warn(n, "lvs_sync_daemon: not carried: want an interface and a vrrp_instance name (got %d words)", len(n.Args))
		return
	}
	if !c.syncIfname(n, n.Args[0]) {
		return
	}
	if len(n.Args[1]) > maxSyncIfname {
		// keepalived's own limit on the instance name.
		c.warn(n, "lvs_sync_daemon: not carried: keepalived ignores a vrrp_instance name longer than %d bytes (got %q)", maxSyncIfname, n.Args[1])
		return
	}
	s := &syncDaemon{node: n, iface: n.Args[0], instance: n.Args[1], id: -1}
	args := n.Args[2:]
	if len(args) > 0 && args[0] != "" && args[0][0] >= '0' && args[0][0] <= '9' {
		if v, ok := syncNumber(args[0], 0, 255); ok {
			s.id = v
		} else {
			c.warn(n, "lvs_sync_daemon: sync id %q not carried: want 0..255; keepalived uses the virtual_router_id", args[0])
		}
		args = args[1:]
	}
	for i := 0; i < len(args); i++ {
		opt := args[i]
		switch opt {
		case "id", "maxlen", "port", "ttl", "group":
		default:
			c.warn(n, "lvs_sync_daemon: option %s not carried: keepalived knows id, maxlen, port, ttl and group", opt)
			continue
		}
		if i+1 == len(args) {
			c.warn(n, "lvs_sync_daemon: %s not carried: no value", opt)
			continue
		}
		i++
		val := args[i]
		// A bad value leaves the option as it was, as in keepalived.
		num := func(dst *int, hi int) bool {
			v, ok := syncNumber(val, 0, hi)
			if ok {
				*dst = v
			}
			return ok
		}
		var ok bool
		switch opt {
		case "id":
			ok = num(&s.id, 255)
		case "maxlen":
			ok = num(&s.maxLen, maxSyncLen4)
		case "port":
			ok = num(&s.port, 65535)
		case "ttl":
			ok = num(&s.ttl, 255)
		case "group":
			a, err := netip.ParseAddr(val)
			if ok = err == nil && a.Zone() == "" && !a.Is4In6() && a.IsMulticast(); ok {
				s.group = a
			}
		}
		if !ok {
			c.warn(n, "lvs_sync_daemon: %s %s not carried: %s", opt, val, syncWant(opt))
		}
	}
	c.syncd = s
}

// lvsSyncInterface reads a vrrp_instance's lvs_sync_daemon_interface,
// keepalived's form before lvs_sync_daemon: the daemon follows that
// instance, with its virtual_router_id as the sync id.
func (c *converter) lvsSyncInterface(inst, n *Node) {
	if c.syncd != nil {
		c.warn(n, "lvs_sync_daemon_interface: not carried: keepalived runs one sync daemon and ignores this one; the first is at %s:%d", c.syncd.node.File, c.syncd.node.Line)
		return
	}
	if len(n.Args) != 1 {
		c.warn(n, "lvs_sync_daemon_interface: not carried: want one interface (got %d words)", len(n.Args))
		return
	}
	if len(inst.Args) != 1 || !c.syncIfname(n, n.Args[0]) {
		return
	}
	c.syncd = &syncDaemon{node: n, iface: n.Args[0], instance: inst.Args[0], id: -1}
}

// syncIfname checks an interface name as the kernel and lvsha take it.
func (c *converter) syncIfname(n *Node, name string) bool {
	switch {
	case len(name) > maxSyncIfname:
		c.warn(n, "%s: not carried: interface name %q longer than %d bytes (keepalived ignores it too)", n.Name, name, maxSyncIfname)
	case name == "" || strings.ContainsAny(name, "/ \t\n:"):
		c.warn(n, "%s: not carried: invalid interface name %q (the kernel has no such device)", n.Name, name)
	default:
		return true
	}
	return false
}

// syncNumber parses a decimal option value within lo..hi.
func syncNumber(s string, lo, hi int) (int, bool) {
	v, err := strconv.Atoi(s)
	return v, err == nil && strconv.Itoa(v) == s && v >= lo && v <= hi
}

func syncWant(opt string) string {
	switch opt {
	case "id":
		return "want 0..255; keepalived uses the virtual_router_id"
	case "maxlen":
		return fmt.Sprintf("want 0..%d; keepalived ignores it", maxSyncLen4)
	case "port":
		return "want 0..65535; keepalived ignores it"
	case "ttl":
		return "want 0..255; keepalived ignores it"
	}
	return "want an IPv4 or IPv6 multicast address; keepalived ignores it"
}

// checkSyncInstance warns, once the instances are rendered, when the sync
// daemon's instance did not take it: keepalived runs no daemon without
// its instance, and lvsha has no table to put it in.
func (c *converter) checkSyncInstance() {
	s := c.syncd
	if s == nil || c.syncRendered {
		return
	}
	for _, n := range c.instances {
		if len(n.Args) == 1 && n.Args[0] == s.instance {
			c.warn(s.node, "%s: not carried: its vrrp_instance %s was not converted", s.node.Name, s.instance)
			return
		}
	}
	c.warn(s.node, "%s: not carried: no vrrp_instance %s to follow (keepalived runs no sync daemon either)", s.node.Name, s.instance)
}

// renderSync writes the instance's [vrrp_instance.lvs_sync] table when the
// sync daemon follows it, and reports whether it did.
func (c *converter) renderSync(w *tomlWriter, vi *vrrpInstance) bool {
	s := c.syncd
	if s == nil || s.instance != vi.name {
		return false
	}
	w.indent = "  "
	defer func() { w.indent = "" }()
	w.blank()
	w.table("vrrp_instance.lvs_sync")
	w.comment(at(s.node, strings.Join(append([]string{s.node.Name}, s.node.Args...), " ")))
	if s.node.Name == "lvs_sync_daemon_interface" {
		w.comment("keepalived's deprecated form of global_defs' lvs_sync_daemon")
	}
	w.kv("interface", str(s.iface), "")
	if s.id >= 0 {
		w.kv("sync_id", strconv.Itoa(s.id), "")
	} else {
		w.comment("sync_id: the router_id, keepalived's default too")
	}
	if s.maxLen > 0 {
		switch {
		case s.group.Is6() && s.maxLen > maxSyncLen6:
			w.kv("max_len", strconv.Itoa(maxSyncLen6), fmt.Sprintf("keepalived's maxlen %d; the kernel clamps it to %d over IPv6", s.maxLen, maxSyncLen6))
		default:
			w.kv("max_len", strconv.Itoa(s.maxLen), "maxlen")
		}
	}
	if s.group.IsValid() {
		w.kv("group", str(s.group.String()), "")
	}
	if s.port > 0 {
		w.kv("port", strconv.Itoa(s.port), "")
	}
	if s.ttl > 0 {
		w.kv("ttl", strconv.Itoa(s.ttl), "")
	}
	return true
}
