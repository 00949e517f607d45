package keepalived

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// keepalived's checker defaults (check_data.c, check_api.c, check_http.c,
// check_misc.c of 2.2.7).
const (
	kaDelayLoop        = 60 * time.Second
	kaConnectTimeout   = 5 * time.Second
	kaRetry            = 1 // retries after the first failure, for every checker but MISC_CHECK
	kaMiscRetry        = 0
	kaDNSRetry         = 3
	kaDelayBeforeRetry = time.Second
	kaHTTPDelayRetry   = 3 * time.Second
	kaPersistDefault   = 360 // seconds, for a port-0 service without persistence_timeout
)

// timing holds the check settings that keepalived inherits from the
// virtual server to the real server to the checker; nil means unset.
type timing struct {
	delayLoop, connectTimeout, delayBeforeRetry, warmup *time.Duration
	retry                                               *int
	alpha, inhibit                                      *bool
	virtualhost                                         *string
}

// timingDirective reads one of the inherited settings; false when n is
// not one.
func (c *converter) timingDirective(n *Node, t *timing) bool {
	switch n.Name {
	case "delay_loop":
		if d, ok := c.secondsArg(n); ok {
			t.delayLoop = &d
		}
	case "connect_timeout":
		if d, ok := c.secondsArg(n); ok {
			t.connectTimeout = &d
		}
	case "delay_before_retry":
		if d, ok := c.secondsArg(n); ok {
			t.delayBeforeRetry = &d
		}
	case "warmup":
		if d, ok := c.secondsArg(n); ok {
			t.warmup = &d
		}
	case "retry", "nb_get_retry":
		if v, ok := c.intArg(n, 0, 99); ok {
			t.retry = &v
		}
	case "alpha":
		b := boolArg(n)
		t.alpha = &b
	case "inhibit_on_failure":
		b := boolArg(n)
		t.inhibit = &b
	case "virtualhost":
		if len(n.Args) > 0 {
			t.virtualhost = &n.Args[0]
		}
	default:
		return false
	}
	return true
}

// boolArg reads keepalived's optional boolean argument: a bare keyword
// means true.
func boolArg(n *Node) bool {
	if len(n.Args) == 0 {
		return true
	}
	switch strings.ToLower(n.Args[0]) {
	case "false", "off", "no", "0":
		return false
	}
	return true
}

// service is one IPVS service a virtual_server block stands for; a
// virtual_server_group expands to several.
type service struct {
	addr   netip.AddrPort // invalid for fwmark
	fwmark uint32
	family string // for fwmark: "inet", "inet6" or "" (unknown)
	origin string // comment naming the group entry, when from a group
}

// vsSettings is what a virtual_server block says, before rendering.
type vsSettings struct {
	node         *Node
	protocol     string
	scheduler    string
	schedFlags   []string
	forwarding   string
	persistence  int
	netmask      int
	onePacket    bool
	quorum       int
	hysteresis   int
	quorumSet    bool
	sorry        *Node
	sorryFwd     string
	sorryInhibit bool
	quorumUp     []string
	quorumDown   []string
	family       string // ip_family
	rsWeight     int
	onDown       string // as rendered for the service
	timing       timing
	reals        []*Node
}

func (c *converter) virtualServer(w *tomlWriter, n *Node) {
	svcs, ok := c.services(n)
	if !ok {
		return
	}
	vs := vsSettings{node: n, quorum: 1, rsWeight: 1}
	for _, d := range n.Children {
		if d.Name == "inhibit_on_failure" {
			// keepalived ignores an argument at this level: always on.
			on := true
			vs.timing.inhibit = &on
			continue
		}
		if c.timingDirective(d, &vs.timing) {
			continue
		}
		switch d.Name {
		case "lb_algo", "lvs_sched":
			// keepalived knows the same kernel schedulers as lvsha.
			if scheds := conf.Schedulers(); len(d.Args) == 1 && containsFold(scheds, d.Args[0]) {
				vs.scheduler = strings.ToLower(d.Args[0])
			} else {
				c.errorf(d, "%s: unknown scheduler %q (want one of %s)", d.Name, strings.Join(d.Args, " "), strings.Join(scheds, " "))
			}
		case "lb_kind", "lvs_method":
			if f, ok := c.forwarding(d); ok {
				vs.forwarding = f
			}
		case "protocol":
			if len(d.Args) == 1 && containsFold([]string{"TCP", "UDP", "SCTP"}, d.Args[0]) {
				vs.protocol = strings.ToLower(d.Args[0])
			} else {
				c.errorf(d, "protocol: want TCP, UDP or SCTP (got %q)", strings.Join(d.Args, " "))
			}
		case "persistence_timeout":
			if len(d.Args) == 0 {
				vs.persistence = kaPersistDefault
			} else if v, ok := c.intArg(d, 1, 1<<31-1); ok {
				vs.persistence = v
			}
		case "persistence_granularity":
			vs.netmask = c.granularity(d)
		case "ops":
			vs.onePacket = true
		case "sh-port", "mh-port", "sh-fallback", "mh-fallback":
			vs.schedFlags = append(vs.schedFlags, d.Name)
		case "flag-1", "flag-2":
			vs.schedFlags = append(vs.schedFlags, d.Name) // resolved once the scheduler is known
		case "quorum":
			if v, ok := c.intArg(d, 1, 1<<31-1); ok {
				vs.quorum, vs.quorumSet = v, true
			}
		case "hysteresis":
			if v, ok := c.intArg(d, 0, 1<<31-1); ok {
				vs.hysteresis = v
			}
		case "sorry_server":
			vs.sorry = d
		case "sorry_server_lvs_method":
			if f, ok := c.forwarding(d); ok {
				vs.sorryFwd = f
			}
		case "ip_family":
			if len(d.Args) == 1 && (d.Args[0] == "inet" || d.Args[0] == "inet6") {
				vs.family = d.Args[0]
			} else {
				c.warn(d, "ip_family: not carried: want inet or inet6 (got %q)", strings.Join(d.Args, " "))
			}
		case "weight":
			if v, ok := c.intArg(d, 0, 65535); ok {
				vs.rsWeight = v
			}
		case "real_server":
			vs.reals = append(vs.reals, d)
		case "quorum_up", "quorum_down":
			if argv, ok := c.scriptArg(d); ok {
				if d.Name == "quorum_up" {
					vs.quorumUp = argv
				} else {
					vs.quorumDown = argv
				}
			}
		case "sorry_server_inhibit":
			vs.sorryInhibit = true
		default:
			c.dropped(d, vsReasons, "virtual_server")
		}
	}
	if vs.scheduler == "" {
		vs.scheduler = "wlc"
	}
	if vs.forwarding == "" {
		vs.forwarding = "nat"
	}
	if vs.sorryFwd != "" && vs.sorryFwd != vs.forwarding {
		c.warn(n, "sorry_server_lvs_method: not carried: lvsha forwards to the sorry server with the virtual server's method (%s)", vs.forwarding)
	}
	var flags []string
	for _, f := range vs.schedFlags {
		switch {
		case f == "flag-1" && (vs.scheduler == "sh" || vs.scheduler == "mh"):
			flags = append(flags, vs.scheduler+"-fallback")
		case f == "flag-2" && (vs.scheduler == "sh" || vs.scheduler == "mh"):
			flags = append(flags, vs.scheduler+"-port")
		case strings.HasPrefix(f, vs.scheduler+"-"):
			flags = append(flags, f)
		default:
			c.warn(n, "%s: not carried: the flag means nothing to scheduler %s", f, vs.scheduler)
		}
	}
	vs.schedFlags = flags
	rsFamily := c.realFamily(&vs)
	for _, svc := range svcs {
		if svc.fwmark == 0 && len(vs.reals) > 0 && familyOfAddr(svc.addr.Addr()) != rsFamily {
			c.warn(n, "%s: not carried: its real servers are %s and IPVS forwards within one family (keepalived refuses the mix too)", svc.addr, rsFamily)
			continue
		}
		c.renderService(w, &vs, svc)
	}
}

// services reads the virtual_server header: IP PORT, fwmark N or group NAME.
func (c *converter) services(n *Node) ([]service, bool) {
	switch {
	case len(n.Args) == 2 && n.Args[0] == "fwmark":
		m, err := strconv.ParseUint(n.Args[1], 10, 32)
		if err != nil || m == 0 {
			c.errorf(n, "virtual_server fwmark: want a mark 1..4294967295 (got %q)", n.Args[1])
			return nil, false
		}
		return []service{{fwmark: uint32(m)}}, true
	case len(n.Args) == 2 && n.Args[0] == "group":
		g, ok := c.vsGroups[n.Args[1]]
		if !ok {
			c.errorf(n, "virtual_server group: unknown virtual_server_group %q", n.Args[1])
			return nil, false
		}
		return c.groupEntries(g), true
	case len(n.Args) == 1 || len(n.Args) == 2:
		port := "0"
		if len(n.Args) == 2 {
			port = n.Args[1]
		}
		ap, ok := parseAddrPort(n.Args[0], port)
		if !ok {
			c.errorf(n, "virtual_server: invalid address or port (got %q)", strings.Join(n.Args, " "))
			return nil, false
		}
		return []service{{addr: ap}}, true
	default:
		c.errorf(n, "virtual_server: want IP PORT, fwmark MARK or group NAME (got %q)", strings.Join(n.Args, " "))
		return nil, false
	}
}

func parseAddrPort(ip, port string) (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(strings.Trim(ip, "[]"))
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(p)), true
}

// maxGroupExpansion bounds how many services one group entry may expand
// to; keepalived allows a range within one octet or hextet at most.
const maxGroupExpansion = 256

// groupEntries expands a virtual_server_group into services: "IP PORT",
// "IP-LAST PORT" and "IP/LEN PORT" ranges in the last octet (IPv4) or
// hextet (IPv6), and "fwmark N [inet|inet6]".
func (c *converter) groupEntries(g *Node) []service {
	var out []service
	for _, e := range g.Children {
		origin := fmt.Sprintf("from virtual_server_group %s, %s:%d", g.Args[0], e.File, e.Line)
		if e.Name == "fwmark" {
			if len(e.Args) < 1 {
				c.warn(e, "fwmark: not carried: missing mark")
				continue
			}
			m, err := strconv.ParseUint(e.Args[0], 10, 32)
			if err != nil || m == 0 {
				c.warn(e, "fwmark: not carried: invalid mark %q", e.Args[0])
				continue
			}
			svc := service{fwmark: uint32(m), origin: origin}
			if len(e.Args) > 1 {
				if e.Args[1] != "inet" && e.Args[1] != "inet6" {
					c.warn(e, "fwmark: family not carried: want inet or inet6 (got %q)", e.Args[1])
				} else {
					svc.family = e.Args[1]
				}
				c.extraArgs(e, 2)
			}
			out = append(out, svc)
			continue
		}
		port := "0"
		if len(e.Args) > 0 {
			port = e.Args[0]
		}
		c.extraArgs(e, 1)
		addrs, ok := expandRange(e.Name)
		if !ok {
			c.warn(e, "%s: not carried: want IP, IP-LAST or IP/LEN within the last octet or hextet", e.Name)
			continue
		}
		for _, a := range addrs {
			ap, ok := parseAddrPort(a.String(), port)
			if !ok {
				c.warn(e, "%s: not carried: invalid port %q", e.Name, port)
				break
			}
			out = append(out, service{addr: ap, origin: origin})
		}
	}
	return out
}

// expandRange expands keepalived's group address forms.
func expandRange(s string) ([]netip.Addr, bool) {
	if base, last, ok := strings.Cut(s, "-"); ok {
		a, err := netip.ParseAddr(base)
		if err != nil {
			return nil, false
		}
		b := a.As16()
		var first, end uint64
		if a.Is4() {
			first = uint64(a.As4()[3])
			v, err := strconv.ParseUint(last, 10, 8)
			if err != nil {
				return nil, false
			}
			end = v
		} else {
			first = uint64(b[14])<<8 | uint64(b[15])
			v, err := strconv.ParseUint(last, 16, 16)
			if err != nil {
				return nil, false
			}
			end = v
		}
		if end < first || end-first >= maxGroupExpansion {
			return nil, false
		}
		var out []netip.Addr
		for i := first; i <= end; i++ {
			out = append(out, withLast(a, i))
		}
		return out, true
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Masked() != p {
			return nil, false
		}
		hostBits := p.Addr().BitLen() - p.Bits()
		if hostBits > 8 || p.Bits() == 0 {
			return nil, false
		}
		var out []netip.Addr
		a := p.Addr()
		for i := 0; i < 1<<hostBits; i++ {
			out = append(out, a)
			a = a.Next()
		}
		return out, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, false
	}
	return []netip.Addr{a}, true
}

func withLast(a netip.Addr, v uint64) netip.Addr {
	if a.Is4() {
		b := a.As4()
		b[3] = byte(v)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	b[14], b[15] = byte(v>>8), byte(v)
	return netip.AddrFrom16(b)
}

func (c *converter) forwarding(d *Node) (string, bool) {
	if len(d.Args) >= 1 {
		switch strings.ToUpper(d.Args[0]) {
		case "NAT":
			return "nat", true
		case "DR":
			return "dr", true
		case "TUN":
			if len(d.Args) > 1 {
				c.warn(d, "%s: tunnel options not carried (lvsha uses IPIP): %s", d.Name, strings.Join(d.Args[1:], " "))
			}
			return "tun", true
		}
	}
	c.errorf(d, "%s: want NAT, DR or TUN (got %q)", d.Name, strings.Join(d.Args, " "))
	return "", false
}

// granularity maps persistence_granularity (an IPv4 netmask or an IPv6
// prefix length) to a prefix length; 0 when invalid.
func (c *converter) granularity(d *Node) int {
	if len(d.Args) != 1 {
		c.warn(d, "persistence_granularity: not carried: want a netmask")
		return 0
	}
	if a, err := netip.ParseAddr(d.Args[0]); err == nil && a.Is4() {
		b := a.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		ones := 0
		for v&(1<<31) != 0 {
			ones++
			v <<= 1
		}
		if v != 0 || ones == 0 {
			c.warn(d, "persistence_granularity: not carried: %s is not a contiguous netmask", d.Args[0])
			return 0
		}
		return ones
	}
	if v, err := strconv.Atoi(d.Args[0]); err == nil && v >= 1 && v <= 128 {
		return v
	}
	c.warn(d, "persistence_granularity: not carried: want an IPv4 netmask or an IPv6 prefix length (got %q)", d.Args[0])
	return 0
}

// renderService writes one service of a virtual_server block; a group
// renders the block once per service, so the warnings repeat and are
// deduplicated.
func (c *converter) renderService(w *tomlWriter, vs *vsSettings, svc service) {
	n := vs.node
	w.blank()
	w.array("virtual_server")
	what := "virtual_server " + strings.Join(n.Args, " ")
	w.comment(at(n, what))
	if svc.origin != "" {
		w.comment(svc.origin)
	}
	family := "inet"
	if svc.fwmark != 0 {
		w.kv("fwmark", strconv.FormatUint(uint64(svc.fwmark), 10), "")
		switch {
		case svc.family != "":
			family = svc.family
		case vs.family != "":
			family = vs.family
		default:
			family = c.realFamily(vs)
		}
		if family == "inet6" {
			w.kv("family", str("inet6"), "")
		}
		if vs.protocol != "" {
			c.warn(n, "protocol: not carried: a fwmark service has no protocol (keepalived ignores it too)")
		}
	} else {
		w.kv("address", str(svc.addr.String()), "")
		if svc.addr.Addr().Is6() {
			family = "inet6"
		}
		if vs.protocol == "" {
			w.kv("protocol", str("udp"), "keepalived uses UDP when a virtual_server sets no protocol")
		} else {
			w.kv("protocol", str(vs.protocol), "")
		}
	}
	w.kv("scheduler", str(vs.scheduler), "")
	if len(vs.schedFlags) > 0 {
		w.kv("scheduler_flags", strs(vs.schedFlags), "")
	}
	w.kv("forwarding", str(vs.forwarding), "")
	persistence := vs.persistence
	if persistence == 0 && svc.fwmark == 0 && svc.addr.Port() == 0 {
		persistence = kaPersistDefault
		w.comment("keepalived makes a port-0 service persistent for 360s")
	}
	if persistence > 0 {
		w.kv("persistence", dur(time.Duration(persistence)*time.Second), "")
	}
	if vs.netmask > 0 {
		if family == "inet" && vs.netmask > 32 {
			c.warn(n, "persistence_granularity: not carried: /%d is not an IPv4 prefix length", vs.netmask)
		} else {
			w.kv("persistence_netmask", strconv.Itoa(vs.netmask), "")
		}
	}
	if vs.onePacket {
		w.kv("one_packet", "true", "")
	}

	onDown := c.onDown(vs)
	vs.onDown = onDown
	if onDown == "remove" {
		w.kv("on_down", str("remove"), "keepalived removes a failed real server unless inhibit_on_failure is set")
	} else {
		w.kv("on_down", str("weight0"), "inhibit_on_failure")
	}
	if vs.sorry != nil {
		c.renderSorry(w, vs, svc)
	}
	if vs.quorumSet || vs.hysteresis > 0 {
		q, h := vs.quorum, vs.hysteresis
		if h >= q {
			h = q - 1 // keepalived lowers it the same way
		}
		if h > 0 {
			w.comment(fmt.Sprintf("keepalived: quorum %d, hysteresis %d (up at >= %d, down below %d);\nlvsha's band starts at quorum, so quorum %d and hysteresis %d give the same thresholds", q, h, q+h, q-h, q-h, 2*h))
			w.kv("quorum", strconv.Itoa(q-h), "")
			w.kv("hysteresis", strconv.Itoa(2*h), "")
		} else {
			w.kv("quorum", strconv.Itoa(q), "")
		}
	}
	if vs.quorumUp != nil {
		w.kv("notify_quorum_up", strs(vs.quorumUp), "quorum_up")
	}
	if vs.quorumDown != nil {
		w.kv("notify_quorum_down", strs(vs.quorumDown), "quorum_down")
	}
	for _, rs := range vs.reals {
		c.realServer(w, vs, svc, rs)
	}
}

// realFamily guesses a fwmark service's family from its real servers, as
// keepalived does when ip_family is not set.
func (c *converter) realFamily(vs *vsSettings) string {
	for _, rs := range vs.reals {
		if len(rs.Args) > 0 {
			if a, err := netip.ParseAddr(strings.Trim(rs.Args[0], "[]")); err == nil && a.Is6() {
				return "inet6"
			}
		}
	}
	return "inet"
}

func familyOfAddr(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "inet"
	}
	return "inet6"
}

// scriptArg reads a keepalived script directive ("script" [user [group]])
// into argv; the user and group are warned about.
func (c *converter) scriptArg(d *Node) ([]string, bool) {
	if len(d.Args) == 0 {
		c.warn(d, "%s: not carried: missing command", d.Name)
		return nil, false
	}
	if len(d.Args) > 1 {
		c.warn(d, "%s: user and group not carried (lvsha runs commands as its own user): %s", d.Name, strings.Join(d.Args[1:], " "))
	}
	argv, _ := command(d.Args[0])
	return argv, true
}

// onDown decides lvsha's per-service on_down from keepalived's
// inhibit_on_failure: the service's own setting, else the first real
// server's; real servers that differ get their own on_down.
func (c *converter) onDown(vs *vsSettings) string {
	if vs.timing.inhibit != nil && *vs.timing.inhibit || vs.timing.inhibit == nil && len(vs.reals) > 0 && rsInhibit(vs.reals[0], false) {
		return "weight0"
	}
	return "remove"
}

// rsInhibit is a real server's inhibit_on_failure, def when it has none.
func rsInhibit(rs *Node, def bool) bool {
	for _, d := range rs.Children {
		if d.Name == "inhibit_on_failure" {
			def = boolArg(d)
		}
	}
	return def
}

// renderSorry writes the sorry server, which keepalived's address rules
// for destinations apply to as to a real server.
func (c *converter) renderSorry(w *tomlWriter, vs *vsSettings, svc service) {
	d := vs.sorry
	port := "0"
	if len(d.Args) >= 2 {
		port = d.Args[1]
	}
	if len(d.Args) < 1 {
		c.warn(d, "sorry_server: not carried: want IP [PORT]")
		return
	}
	ap, ok := parseAddrPort(d.Args[0], port)
	if !ok {
		c.warn(d, "sorry_server: not carried: invalid address %q", strings.Join(d.Args, " "))
		return
	}
	c.extraArgs(d, 2)
	w.kv("sorry_server", str(c.destAddr(vs.forwarding, svc, ap)), "")
	if vs.sorryInhibit {
		w.kv("sorry_inhibit", "true", "sorry_server_inhibit")
	}
}

// destAddr writes a destination's address as lvsha wants it: keepalived
// gives NAT destinations of an address service the service's port when
// none is set, and forces DR/TUN destinations to the service's port (or
// none for fwmark).
func (c *converter) destAddr(fwd string, svc service, ap netip.AddrPort) string {
	switch {
	case svc.fwmark != 0 && fwd != "nat":
		return ap.Addr().String()
	case svc.fwmark != 0:
		return ap.String()
	case fwd == "nat" && ap.Port() == 0:
		return netip.AddrPortFrom(ap.Addr(), svc.addr.Port()).String()
	case fwd != "nat":
		return netip.AddrPortFrom(ap.Addr(), svc.addr.Port()).String()
	}
	return ap.String()
}

// realServer writes a real_server table with its check. The block's own
// timing directives override those it inherits for its checker.
func (c *converter) realServer(w *tomlWriter, vs *vsSettings, svc service, n *Node) {
	if len(n.Args) < 1 || len(n.Args) > 2 {
		c.errorf(n, "real_server: want IP [PORT] (got %q)", strings.Join(n.Args, " "))
		return
	}
	port := "0"
	if len(n.Args) == 2 {
		port = n.Args[1]
	}
	ap, ok := parseAddrPort(n.Args[0], port)
	if !ok {
		c.errorf(n, "real_server: invalid address or port (got %q)", strings.Join(n.Args, " "))
		return
	}
	weight := vs.rsWeight
	fwd := ""
	var upper, lower int
	var notifyUp, notifyDown []string
	t := vs.timing
	var checks []*Node
	for _, d := range n.Children {
		if c.timingDirective(d, &t) {
			continue
		}
		if checkType(d.Name) != "" {
			checks = append(checks, d)
			continue
		}
		switch d.Name {
		case "weight":
			if v, ok := c.intArg(d, 0, 65535); ok {
				weight = v
			}
		case "lvs_method", "lb_kind":
			if f, ok := c.forwarding(d); ok {
				fwd = f
			}
		case "uthreshold":
			if v, ok := c.intArg(d, 0, 1<<31-1); ok {
				upper = v
			}
		case "lthreshold":
			if v, ok := c.intArg(d, 0, 1<<31-1); ok {
				lower = v
			}
		case "FILE_CHECK", "BFD_CHECK":
			c.warn(d, "%s: not carried: lvsha has no %s; a MISC_CHECK-like exec check can do it", d.Name, strings.ToLower(strings.TrimSuffix(d.Name, "_CHECK"))+" check")
		case "notify_up":
			notifyUp, _ = c.scriptArg(d)
		case "notify_down":
			notifyDown, _ = c.scriptArg(d)
		default:
			c.dropped(d, rsReasons, "real_server")
		}
	}
	effFwd := vs.forwarding
	if fwd != "" {
		effFwd = fwd
	}
	w.blank()
	w.indent = "  "
	w.array("virtual_server.real_server")
	w.comment(at(n, "real_server "+strings.Join(n.Args, " ")))
	addr := c.destAddr(effFwd, svc, ap)
	note := ""
	if svc.fwmark == 0 && effFwd != "nat" && ap.Port() != 0 && ap.Port() != svc.addr.Port() {
		note = fmt.Sprintf("keepalived resets a %s real server's port %d to the service's", effFwd, ap.Port())
	}
	w.kv("address", str(addr), note)
	w.kv("weight", strconv.Itoa(weight), "")
	if fwd != "" && fwd != vs.forwarding {
		w.kv("forwarding", str(fwd), "")
	}
	inhibit := t.inhibit != nil && *t.inhibit
	if own := map[bool]string{true: "weight0", false: "remove"}[inhibit]; own != vs.onDown {
		w.kv("on_down", str(own), map[bool]string{true: "inhibit_on_failure", false: "no inhibit_on_failure"}[inhibit])
	}
	if upper > 0 {
		w.kv("upper_threshold", strconv.Itoa(upper), "")
	}
	if notifyUp != nil {
		w.kv("notify_up", strs(notifyUp), "")
	}
	if notifyDown != nil {
		w.kv("notify_down", strs(notifyDown), "")
	}
	if lower > 0 {
		w.kv("lower_threshold", strconv.Itoa(lower), "")
	}
	if len(checks) == 0 {
		w.comment("no checker: always up, as in keepalived")
	}
	for i, ck := range checks {
		if i > 0 {
			c.warn(ck, "%s: not carried: lvsha runs one check per real server; the first one (%s at line %d) is kept", ck.Name, checks[0].Name, checks[0].Line)
			continue
		}
		c.renderCheck(w, c.parseCheck(ck, t))
	}
	w.indent = ""
}

// checkType is lvsha's check type for a keepalived checker keyword, ""
// for a keyword that names no checker lvsha has.
func checkType(checker string) string {
	switch checker {
	case "HTTP_GET":
		return "http"
	case "SSL_GET":
		return "https"
	case "TCP_CHECK":
		return "tcp"
	case "MISC_CHECK":
		return "exec"
	case "DNS_CHECK":
		return "dns"
	case "SMTP_CHECK":
		return "smtp"
	case "PING_CHECK":
		return "icmp"
	case "UDP_CHECK":
		return "udp"
	}
	return ""
}

// kaCheck is what one checker block says, with the timing its real and
// virtual server pass down. Values lvsha cannot carry were reported at
// their file:line while parsing and are left out.
type kaCheck struct {
	node         *Node
	typ          string // lvsha's check type
	timing       timing
	connectIP    string // "" when unset or invalid
	connectPort  string // "" when unset or invalid
	hasURLBlocks bool   // url blocks were given, whether or not any has a path
	urls         []kaURL
	host         string // the Host of every request: the first url's, else virtualhost
	miscPath     *Node
	miscTimeout  *time.Duration
	sni          string
	dnsType      string
	dnsName      string
	heloName     string
	payload      string // hex
	reply        string // hex
	requireReply bool
	dynamic      bool
}

// parseCheck reads a checker block. Its warnings come in the order of
// the file, then those about the block as a whole.
func (c *converter) parseCheck(n *Node, inherited timing) *kaCheck {
	k := &kaCheck{node: n, typ: checkType(n.Name), timing: inherited}
	var urls []*Node
	for _, d := range n.Children {
		switch {
		case c.timingDirective(d, &k.timing):
		case c.checkDirective(k, d):
		case d.Name == "url" && isHTTP(k.typ):
			urls = append(urls, d)
		case c.typedCheckDirective(k, d):
		default:
			// Also a directive of another checker type: keepalived does
			// not know it here either.
			c.dropped(d, checkReasons, n.Name)
		}
	}
	c.checkConnect(k)
	c.parseURLs(k, urls)
	return k
}

func isHTTP(typ string) bool { return typ == "http" || typ == "https" }

// checkDirective reads a directive every checker type takes; false when d
// is not one.
func (c *converter) checkDirective(k *kaCheck, d *Node) bool {
	switch d.Name {
	case "connect_ip":
		if len(d.Args) > 0 {
			k.connectIP = strings.Trim(d.Args[0], "[]")
		}
	case "connect_port":
		if len(d.Args) > 0 {
			k.connectPort = d.Args[0]
		}
	case "misc_timeout":
		if v, ok := c.secondsArg(d); ok {
			k.miscTimeout = &v
		}
	case "misc_dynamic":
		k.dynamic = boolArg(d)
	case "enable_sni":
		// lvsha sends sni, else the host, as keepalived does with
		// enable_sni; only sni needs carrying.
	case "sni_name":
		if len(d.Args) > 0 {
			k.sni = d.Args[0]
		}
	default:
		return false
	}
	return true
}

// typedCheckDirective reads a directive only k's checker type takes,
// other than url; false when d is not one, or lacks its value.
func (c *converter) typedCheckDirective(k *kaCheck, d *Node) bool {
	switch k.typ {
	case "exec":
		if d.Name == "misc_path" {
			k.miscPath = d
			return true
		}
	case "udp":
		return c.udpDirective(k, d)
	case "smtp":
		switch {
		case d.Name == "helo_name" && len(d.Args) > 0:
			k.heloName = d.Args[0]
			return true
		case d.Name == "host":
			c.notCarried(d, "lvsha checks one address per real server (connect_ip, connect_port); the other hosts are not checked")
			return true
		}
	case "dns":
		switch {
		case d.Name == "type" && len(d.Args) > 0:
			k.dnsType = strings.ToUpper(d.Args[0])
			return true
		case d.Name == "name" && len(d.Args) > 0:
			k.dnsName = d.Args[0]
			return true
		}
	}
	return false
}

func (c *converter) udpDirective(k *kaCheck, d *Node) bool {
	switch d.Name {
	case "payload", "require_reply":
		h := ""
		if len(d.Args) > 0 {
			h = strings.ToLower(d.Args[0])
			if _, err := hex.DecodeString(h); err != nil {
				c.warn(d, "%s: not carried: lvsha takes plain hex bytes, without masks (got %q)", d.Name, d.Args[0])
				return true
			}
		}
		if d.Name == "payload" {
			k.payload = h
		} else {
			k.requireReply, k.reply = true, h
		}
	case "min_reply_length", "max_reply_length":
		c.notCarried(d, "lvsha checks how a reply starts, not its length")
	default:
		return false
	}
	return true
}

// checkConnect drops an invalid connect_ip or connect_port, which
// keepalived reports without the directive's line.
func (c *converter) checkConnect(k *kaCheck) {
	if k.connectIP != "" {
		if _, err := netip.ParseAddr(k.connectIP); err != nil {
			c.warn(k.node, "connect_ip: not carried: invalid address %q", k.connectIP)
			k.connectIP = ""
		}
	}
	if k.connectPort != "" {
		if p, err := strconv.ParseUint(k.connectPort, 10, 16); err != nil || p == 0 {
			c.warn(k.node, "connect_port: not carried: invalid port %q", k.connectPort)
			k.connectPort = ""
		}
	}
}

// parseURLs reads the url blocks, keeping those with a path. lvsha sends
// one Host per check, so a later url's own virtualhost is dropped.
func (c *converter) parseURLs(k *kaCheck, urls []*Node) {
	k.hasURLBlocks = len(urls) > 0
	for _, u := range urls {
		ku := c.parseURL(u)
		if ku.path == "" {
			c.warn(u, "url: not carried: it has no path (keepalived ignores it too)")
			continue
		}
		k.urls = append(k.urls, ku)
	}
	if len(k.urls) == 0 {
		return
	}
	k.host = k.urls[0].host
	if k.host == "" && k.timing.virtualhost != nil {
		k.host = *k.timing.virtualhost
	}
	for _, ku := range k.urls[1:] {
		if ku.host != "" && ku.host != k.host {
			c.warn(ku.node, "url: virtualhost %s not carried: lvsha sends one Host per check (%q)", ku.host, k.host)
		}
	}
}

// checkSchedule is when a check probes and how soon it gives up, after
// keepalived's defaults.
type checkSchedule struct {
	interval, timeout, retryInterval time.Duration
	retry                            int // failures tolerated before down
}

// schedule applies keepalived's defaults, which differ per checker type.
func (k *kaCheck) schedule() checkSchedule {
	t := k.timing
	s := checkSchedule{interval: kaDelayLoop, timeout: kaConnectTimeout, retry: kaRetry, retryInterval: kaDelayBeforeRetry}
	if t.delayLoop != nil {
		s.interval = *t.delayLoop
	}
	if t.connectTimeout != nil {
		s.timeout = *t.connectTimeout
	}
	switch k.typ {
	case "dns":
		s.retry, s.retryInterval = kaDNSRetry, s.interval
	case "exec":
		s.retry, s.timeout = kaMiscRetry, s.interval
		if k.miscTimeout != nil && *k.miscTimeout > 0 {
			s.timeout = *k.miscTimeout
		}
	case "http", "https":
		s.retryInterval = kaHTTPDelayRetry
	}
	if t.retry != nil {
		s.retry = *t.retry
	}
	if t.delayBeforeRetry != nil {
		s.retryInterval = *t.delayBeforeRetry
	}
	return s
}

// renderCheck writes the real server's check table.
func (c *converter) renderCheck(w *tomlWriter, k *kaCheck) {
	w.indent = "    "
	defer func() { w.indent = "  " }()
	w.table("virtual_server.real_server.check")
	w.comment(at(k.node, k.node.Name))
	w.kv("type", str(k.typ), "")
	renderSchedule(w, k)
	if k.connectIP != "" {
		w.kv("connect_address", str(k.connectIP), "")
	}
	if k.connectPort != "" {
		w.kv("connect_port", k.connectPort, "")
	}
	switch k.typ {
	case "http", "https":
		c.renderHTTP(w, k)
	case "udp":
		renderUDP(w, k)
	case "smtp":
		if k.heloName != "" {
			w.kv("helo_name", str(k.heloName), "")
		}
	case "dns":
		c.renderDNS(w, k)
	case "exec":
		c.renderExec(w, k)
	}
	if len(k.urls) > 1 {
		renderMoreURLs(w, k.urls[1:])
	}
}

// renderSchedule writes the timing keys. lvsha counts failures in a row
// where keepalived counts retries, and wants a timeout shorter than the
// interval.
func renderSchedule(w *tomlWriter, k *kaCheck) {
	s := k.schedule()
	w.kv("interval", dur(s.interval), "delay_loop")
	timeoutKey := "connect_timeout"
	if k.typ == "exec" {
		timeoutKey = "misc_timeout"
	}
	if s.timeout >= s.interval {
		adj := s.interval * 9 / 10
		w.kv("timeout", dur(adj.Truncate(time.Millisecond)), fmt.Sprintf("keepalived's %s %s is not shorter than delay_loop; lvsha needs it shorter", timeoutKey, strings.Trim(dur(s.timeout), `"`)))
	} else {
		w.kv("timeout", dur(s.timeout), timeoutKey)
	}
	w.kv("rise", "1", "keepalived marks a server up on its first success")
	w.kv("fall", strconv.Itoa(s.retry+1), fmt.Sprintf("retry %d: down after %d failures in a row", s.retry, s.retry+1))
	if s.retry > 0 && s.retryInterval != s.interval {
		w.kv("retry_interval", dur(s.retryInterval), "delay_before_retry")
	}
	if t := k.timing; t.alpha != nil && *t.alpha {
		w.kv("start_down", "true", "alpha")
	}
	if t := k.timing; t.warmup != nil {
		w.comment(fmt.Sprintf("warmup %s: lvsha spreads every first probe at random within the interval instead", strings.Trim(dur(*t.warmup), `"`)))
	}
}

// renderHTTP carries the first url with a path as the check's own path
// and answer; the others become url tables after the check's keys.
func (c *converter) renderHTTP(w *tomlWriter, k *kaCheck) {
	if len(k.urls) == 0 {
		if !k.hasURLBlocks {
			c.warn(k.node, "%s: has no url: keepalived checks nothing then; lvsha checks GET / for a 2xx status", k.node.Name)
		}
		w.kv("status", `["200-299"]`, "")
	} else {
		first := k.urls[0]
		w.kv("path", str(first.path), "")
		if k.host != "" {
			w.kv("host", str(k.host), "virtualhost")
		}
		w.kv("status", statusList(first.status), statusNote(first.status))
		renderBodyMatch(w, first)
	}
	if k.typ == "https" && k.sni != "" {
		w.kv("sni", str(k.sni), "")
	}
}

func renderUDP(w *tomlWriter, k *kaCheck) {
	if k.payload != "" {
		w.kv("payload_hex", str(k.payload), "payload")
	}
	switch {
	case k.reply != "":
		w.kv("reply_hex", str(k.reply), "require_reply")
	case k.requireReply:
		w.kv("require_reply", "true", "")
	}
}

func (c *converter) renderDNS(w *tomlWriter, k *kaCheck) {
	if k.dnsType != "" {
		if _, ok := conf.DNSTypes()[k.dnsType]; ok {
			w.kv("dns_type", str(k.dnsType), "")
		} else {
			c.warn(k.node, "type %s: not carried: lvsha queries A, AAAA, CNAME, MX, NS, SOA, TXT, RRSIG or DNSKEY; SOA is used", k.dnsType)
		}
	}
	if k.dnsName != "" {
		w.kv("dns_name", str(k.dnsName), "")
	}
}

// renderExec writes a MISC_CHECK's command, which lvsha cannot do without.
func (c *converter) renderExec(w *tomlWriter, k *kaCheck) {
	if k.miscPath == nil || len(k.miscPath.Args) == 0 {
		c.errorf(k.node, "MISC_CHECK: missing misc_path")
		return
	}
	argv, shell := command(strings.Join(k.miscPath.Args, " "))
	note := ""
	if shell {
		note = "run through a shell: the line uses shell syntax"
	}
	w.kv("command", strs(argv), note)
	c.extraArgs(k.miscPath, 1)
	if k.dynamic {
		w.kv("dynamic_weight", "true", "misc_dynamic")
	}
}

// kaURL is what one url block of an HTTP_GET or SSL_GET says.
type kaURL struct {
	node                    *Node
	path, host, md5, regexp string
	status                  []string
}

// parseURL reads a url block, warning about what lvsha cannot check.
func (c *converter) parseURL(u *Node) kaURL {
	out := kaURL{node: u}
	for _, d := range u.Children {
		switch d.Name {
		case "path":
			if len(d.Args) > 0 {
				out.path = d.Args[0]
			}
		case "status_code":
			for _, a := range d.Args {
				if validStatus(a) {
					out.status = append(out.status, a)
				} else {
					c.warn(d, "status_code: %q not carried: want a code or LO-HI range within 100..599", a)
				}
			}
		case "virtualhost":
			if len(d.Args) > 0 {
				out.host = d.Args[0]
			}
		case "digest":
			if len(d.Args) == 1 && len(d.Args[0]) == 32 && strings.Trim(strings.ToLower(d.Args[0]), "0123456789abcdef") == "" {
				out.md5 = strings.ToLower(d.Args[0])
			} else {
				c.warn(d, "digest: not carried: want 32 hexadecimal digits (got %q)", strings.Join(d.Args, " "))
			}
		case "regex":
			if len(d.Args) > 0 {
				out.regexp = d.Args[0]
			}
		default:
			c.dropped(d, urlReasons, "url")
		}
	}
	return out
}

// statusList renders status codes and ranges; keepalived's default when
// none is given.
func statusList(status []string) string {
	if len(status) == 0 {
		return `["200-299"]`
	}
	var parts []string
	for _, s := range status {
		if strings.Contains(s, "-") {
			parts = append(parts, str(s))
		} else {
			parts = append(parts, s)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// statusNote says where an empty status list comes from.
func statusNote(status []string) string {
	if len(status) == 0 {
		return "keepalived's default"
	}
	return ""
}

// renderBodyMatch writes what a url's body must match.
func renderBodyMatch(w *tomlWriter, u kaURL) {
	if u.md5 != "" {
		w.kv("body_md5", str(u.md5), "digest")
	}
	if u.regexp != "" {
		w.kv("body_regexp", str(u.regexp), "regex")
	}
}

// renderMoreURLs writes the url tables of a check.
func renderMoreURLs(w *tomlWriter, more []kaURL) {
	for _, u := range more {
		w.blank()
		w.array("virtual_server.real_server.check.url")
		w.comment(at(u.node, "url"))
		w.kv("path", str(u.path), "")
		w.kv("status", statusList(u.status), statusNote(u.status))
		renderBodyMatch(w, u)
	}
}

func validStatus(s string) bool {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 100 || a > 599 {
		return false
	}
	if !isRange {
		return true
	}
	b, err := strconv.Atoi(hi)
	return err == nil && b >= a && b <= 599
}

// vsReasons explain the virtual_server directives lvsha does not carry.
var vsReasons = map[string]string{
	"ha_suspend":         "lvsha keeps every director's table programmed and checked whatever its VRRP state, so a new master forwards at once",
	"omega":              "lvsha runs no quorum_down command when a virtual server is removed",
	"persistence_engine": "lvsha sets no IPVS persistence engine",
	"hashed":             "the hashed flag is internal to the kernel",
	"flag-3":             "lvsha sets only the sh/mh scheduler flags",
	"smtp_alert":         "lvsha sends no mail",
	"snmp_name":          "lvsha has no SNMP agent",
}

// rsReasons explain the real_server directives lvsha does not carry.
var rsReasons = map[string]string{
	"smtp_alert": "lvsha sends no mail",
	"snmp_name":  "lvsha has no SNMP agent",
}

// checkReasons explain the checker directives lvsha does not carry.
var checkReasons = map[string]string{
	"user":             "lvsha runs checks as its own user",
	"bindto":           "lvsha's probes leave from the address the routing table picks",
	"bind_port":        "lvsha's probes leave from the address the routing table picks",
	"bind_if":          "lvsha's probes leave from the address the routing table picks",
	"fwmark":           "lvsha's probes carry no firewall mark",
	"http_protocol":    "lvsha's http checks speak HTTP/1.1",
	"fast_recovery":    "lvsha probes a down server at the same interval as an up one",
	"tls_compliant":    "lvsha always closes TLS properly",
	"log_all_failures": "lvsha logs every state change, not every failure",
}

// urlReasons explain the url directives lvsha does not carry.
var urlReasons = map[string]string{
	"regex_no_match":   "lvsha has no negative body match",
	"regex_options":    "lvsha matches Go regular expressions against the whole body",
	"regex_min_offset": "lvsha matches Go regular expressions against the whole body",
	"regex_max_offset": "lvsha matches Go regular expressions against the whole body",
	"regex_stack":      "lvsha matches Go regular expressions against the whole body",
	"tls_compliant":    "lvsha always closes TLS properly",
}
