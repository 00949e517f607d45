package keepalived

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// vrrpScript is a vrrp_script block.
type vrrpScript struct {
	node     *Node
	argv     []string
	shell    bool
	interval time.Duration
	timeout  time.Duration
	weight   int
	reverse  bool
	rise     int
	fall     int
	initFail bool
}

func (c *converter) vrrpScript(n *Node) {
	if len(n.Args) != 1 {
		c.errorf(n, "vrrp_script: want one name (got %d words)", len(n.Args))
		return
	}
	s := &vrrpScript{node: n, interval: time.Second, rise: 1, fall: 1}
	for _, d := range n.Children {
		switch d.Name {
		case "script":
			if len(d.Args) > 0 {
				s.argv, s.shell = command(strings.Join(d.Args, " "))
			}
		case "interval":
			if v, ok := c.secondsArg(d); ok && v > 0 {
				s.interval = v
			}
		case "timeout":
			if v, ok := c.secondsArg(d); ok {
				s.timeout = v
			}
		case "weight":
			if len(d.Args) > 0 {
				v, ok := kaWeight(d.Args[0])
				if !ok {
					c.warn(d, "weight: not carried: want -254..254 (got %q)", d.Args[0])
					break
				}
				s.weight = v
				if len(d.Args) > 1 && d.Args[1] == "reverse" {
					s.reverse = true
				}
			}
		case "rise":
			c.intInto(&s.rise, d, 1, 100)
		case "fall":
			c.intInto(&s.fall, d, 1, 100)
		case "init_fail":
			s.initFail = true
		case "user":
			c.notCarried(d, "lvsha runs commands as its own user")
		default:
			c.unknown(d, "vrrp_script")
		}
	}
	if s.argv == nil {
		// keepalived removes a vrrp_script without a script ("No script
		// set for vrrp_script ... - removing") and ignores the
		// track_script lines naming it; so does the conversion. It
		// happens where every script line is @id-conditional and none
		// matched.
		c.warn(n, "vrrp_script %s: not carried: no script line (keepalived removes it too)", n.Args[0])
		return
	}
	if _, dup := c.scripts[n.Args[0]]; !dup {
		c.scriptOrder = append(c.scriptOrder, n.Args[0])
	}
	c.scripts[n.Args[0]] = s
}

// renderScripts writes the vrrp_scripts some instance tracks as
// [[track_exec]]; it runs after the instances were rendered.
func (c *converter) renderScripts(w *tomlWriter) {
	for _, name := range c.scriptOrder {
		s := c.scripts[name]
		if !c.usedScripts[name] {
			if c.skippedScripts[name] {
				continue
			}
			c.warn(s.node, "vrrp_script %s: not carried: no vrrp_instance tracks it (keepalived does not run it either)", name)
			continue
		}
		w.blank()
		w.array("track_exec")
		w.comment(at(s.node, "vrrp_script "+name))
		w.kv("name", str(name), "")
		note := ""
		if s.shell {
			note = "run through a shell: the line uses shell syntax"
		}
		w.kv("command", strs(s.argv), note)
		w.kv("interval", dur(s.interval), "")
		timeout := s.timeout
		tnote := ""
		if timeout == 0 {
			timeout = s.interval
			tnote = "keepalived's default: the interval"
		} else if timeout > s.interval {
			tnote = fmt.Sprintf("keepalived's timeout %s is longer than the interval; lvsha allows at most the interval", strings.Trim(dur(timeout), `"`))
			timeout = s.interval
		}
		w.kv("timeout", dur(timeout), tnote)
		w.kv("rise", strconv.Itoa(s.rise), "")
		w.kv("fall", strconv.Itoa(s.fall), "")
		if s.initFail {
			w.kv("init_fail", "true", "")
		}
	}
}

// weightedTrack is a track_script, or a track_interface with a weight, of
// an instance. keepalived's weight raises the priority while a positive
// one's target is fine and lowers it while a negative one's fails; 0
// means a fault.
type weightedTrack struct {
	name   string
	weight int
	node   *Node
}

// vipLine is one virtual_ipaddress line that holds a usable address.
type vipLine struct {
	prefix netip.Prefix
	node   *Node
}

// vrrpInstance is what a vrrp_instance block says, with keepalived's
// defaults filled in. It keeps the directives' nodes so that what the TOML
// cannot carry is reported at its file:line.
type vrrpInstance struct {
	node         *Node
	name         string
	iface, state *Node
	vrid         int // 0 when missing
	priority     int
	version      int // 0 when the block sets none
	advert       time.Duration
	advertSet    bool
	preempt      bool
	preemptDelay time.Duration
	noAccept     bool
	// dontTrack is dont_track_primary: no fault while the interface is
	// down.
	dontTrack   bool
	unicastSrc  string // "" when unset, as keepalived takes an empty one
	srcNode     *Node
	peers       []string
	peerNode    *Node
	auth        *Node // the authentication block
	authType    string
	authPass    string
	vips        []vipLine
	trackIfaces []string        // track_interface without a weight: a fault
	weighted    []weightedTrack // track_interface with a weight
	scripts     []weightedTrack // track_script
	notify      map[string][]string
	// garp and garpRefresh start from global_defs; the notes name the
	// global_defs line while the instance does not set its own.
	garp                  int // -1 when unset
	garpRefresh           time.Duration
	garpNote, refreshNote string
}

// parseInstance reads a vrrp_instance block, or reports it as an error
// when it has no single name. It also records which vrrp_scripts the
// instance tracks, which decides the ones renderScripts writes.
func (c *converter) parseInstance(n *Node) (*vrrpInstance, bool) {
	if len(n.Args) != 1 {
		c.errorf(n, "vrrp_instance: want one name (got %d words)", len(n.Args))
		return nil, false
	}
	vi := &vrrpInstance{
		node: n, name: n.Args[0], priority: 100, advert: time.Second, preempt: true,
		notify: map[string][]string{}, garp: c.garp, garpRefresh: c.garpRefresh,
	}
	if c.garpNode != nil {
		vi.garpNote = at(c.garpNode, "vrrp_garp_master_repeat")
	}
	if c.refreshNode != nil {
		vi.refreshNote = at(c.refreshNode, "vrrp_garp_master_refresh")
	}
	for _, d := range n.Children {
		c.instanceDirective(vi, d)
	}
	return vi, true
}

// instanceDirective reads one directive of a vrrp_instance block.
func (c *converter) instanceDirective(vi *vrrpInstance, d *Node) {
	switch d.Name {
	case "state":
		vi.state = d
	case "interface":
		if len(d.Args) > 0 {
			vi.iface = d
		}
	case "virtual_router_id":
		c.intInto(&vi.vrid, d, 1, 255)
	case "priority":
		c.intInto(&vi.priority, d, 1, 255)
	case "version":
		c.intInto(&vi.version, d, 2, 3)
	case "advert_int":
		if v, ok := c.secondsArg(d); ok && v > 0 {
			vi.advert, vi.advertSet = v, true
		}
	case "nopreempt", "preempt":
		vi.preempt = d.Name == "preempt"
	case "preempt_delay":
		if v, ok := c.secondsArg(d); ok {
			vi.preemptDelay = v
		}
	case "accept", "no_accept":
		vi.noAccept = d.Name == "no_accept"
	case "dont_track_primary":
		vi.dontTrack = true
	case "unicast_src_ip":
		if len(d.Args) > 0 {
			vi.unicastSrc, vi.srcNode = d.Args[0], d
		}
	case "unicast_peer":
		c.unicastPeers(vi, d)
	case "authentication":
		c.authentication(vi, d)
	case "virtual_ipaddress":
		for _, v := range d.Children {
			// The dev check sees only an interface named above the block,
			// as keepalived's does.
			p, ok := c.vip(v, vi.iface)
			if !ok {
				continue
			}
			// keepalived's own sample lists an address twice, bare and
			// with a label; lvsha holds an address once.
			if dup := slices.IndexFunc(vi.vips, func(l vipLine) bool { return l.prefix.Addr() == p.Addr() }); dup >= 0 {
				first := vi.vips[dup].node
				c.warn(v, "%s: listed again (first at %s:%d): carried once", p.Addr(), first.File, first.Line)
				continue
			}
			vi.vips = append(vi.vips, vipLine{prefix: p, node: v})
		}
	case "track_interface":
		for _, t := range d.Children {
			c.trackInterface(vi, t)
		}
	case "track_script":
		for _, t := range d.Children {
			c.trackScript(vi, t)
		}
	case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
		c.notifyHook(vi, d)
	case "garp_master_repeat":
		if v, ok := c.intArg(d, 1, 100); ok {
			vi.garp, vi.garpNote = v, ""
		}
	case "garp_master_refresh":
		if v, ok := c.secondsArg(d); ok {
			vi.garpRefresh, vi.refreshNote = v, ""
		}
	case "native_ipv6":
		// lvsha uses VRRPv3 over IPv6 for IPv6 VIPs anyway.
	case "lvs_sync_daemon_interface":
		// Read by collect, in file order with lvs_sync_daemon.
	default:
		c.dropped(d, vrrpReasons, "vrrp_instance")
	}
}

func (c *converter) unicastPeers(vi *vrrpInstance, d *Node) {
	vi.peerNode = d
	for _, p := range d.Children {
		vi.peers = append(vi.peers, p.Name)
		if len(p.Args) > 0 {
			c.warn(p, "unicast_peer %s: options not carried: %s", p.Name, strings.Join(p.Args, " "))
		}
	}
}

func (c *converter) authentication(vi *vrrpInstance, d *Node) {
	vi.auth = d
	for _, a := range d.Children {
		switch a.Name {
		case "auth_type":
			if len(a.Args) > 0 {
				vi.authType = strings.ToUpper(a.Args[0])
			}
		case "auth_pass":
			if len(a.Args) > 0 {
				vi.authPass = a.Args[0]
			}
		default:
			c.unknown(a, "authentication")
		}
	}
}

// trackInterface reads one track_interface line: NAME [weight W]. An
// interface whose weight is 0 or unusable faults the instance, as one
// without a weight does.
func (c *converter) trackInterface(vi *vrrpInstance, t *Node) {
	w := 0
	if len(t.Args) >= 2 && t.Args[0] == "weight" {
		if v, ok := kaWeight(t.Args[1]); ok {
			w = v
		} else {
			c.warn(t, "track_interface %s: weight not carried: want -254..254 (got %q); a fault instead", t.Name, t.Args[1])
		}
		if len(t.Args) > 2 {
			c.warn(t, "track_interface %s: options not carried: %s", t.Name, strings.Join(t.Args[2:], " "))
		}
	} else if len(t.Args) > 0 {
		c.warn(t, "track_interface %s: options not carried: %s", t.Name, strings.Join(t.Args, " "))
	}
	if w == 0 {
		vi.trackIfaces = append(vi.trackIfaces, t.Name)
	} else {
		vi.weighted = append(vi.weighted, weightedTrack{name: t.Name, weight: w, node: t})
	}
}

// trackScript reads one track_script line: NAME [weight W [reverse]],
// whose weight overrides the vrrp_script's.
func (c *converter) trackScript(vi *vrrpInstance, t *Node) {
	s, ok := c.scripts[t.Name]
	if !ok {
		c.warn(t, "track_script %s: not carried: no vrrp_script of that name", t.Name)
		return
	}
	ts := weightedTrack{name: t.Name, weight: s.weight, node: t}
	reverse := s.reverse
	if len(t.Args) >= 2 && t.Args[0] == "weight" {
		if v, ok := kaWeight(t.Args[1]); ok {
			ts.weight = v
			reverse = len(t.Args) > 2 && t.Args[2] == "reverse"
		} else {
			c.warn(t, "track_script %s: weight not carried: want -254..254 (got %q)", t.Name, t.Args[1])
		}
	}
	if reverse {
		c.warn(t, "track_script %s: reverse not carried: lvsha changes the priority only while the command fails", t.Name)
		c.skippedScripts[t.Name] = true
		return
	}
	vi.scripts = append(vi.scripts, ts)
	c.usedScripts[t.Name] = true
}

func (c *converter) notifyHook(vi *vrrpInstance, d *Node) {
	if len(d.Args) == 0 {
		c.warn(d, "%s: not carried: missing command", d.Name)
		return
	}
	argv, _ := command(d.Args[0])
	vi.notify[d.Name] = argv
	if len(d.Args) > 1 {
		c.warn(d, "%s: user and group not carried (lvsha runs hooks as its own user): %s", d.Name, strings.Join(d.Args[1:], " "))
	}
}

// kaWeight parses a tracking weight, which keepalived bounds to -254..254.
func kaWeight(s string) (int, bool) {
	v, err := strconv.Atoi(s)
	return v, err == nil && v >= -254 && v <= 254
}

// renderInstance writes a vrrp_instance table and its track tables. An
// instance without interface, virtual_router_id or a VIP lvsha can carry
// is an error: lvsha would refuse the table.
func (c *converter) renderInstance(w *tomlWriter, vi *vrrpInstance) {
	n := vi.node
	w.blank()
	w.array("vrrp_instance")
	w.comment(at(n, "vrrp_instance "+vi.name))
	w.kv("name", str(vi.name), "")
	if vi.iface == nil {
		c.errorf(n, "vrrp_instance %s: missing interface", vi.name)
		return
	}
	w.kv("interface", str(vi.iface.Args[0]), "")
	if vi.vrid == 0 {
		c.errorf(n, "vrrp_instance %s: missing virtual_router_id", vi.name)
		return
	}
	w.kv("router_id", strconv.Itoa(vi.vrid), "virtual_router_id")
	if s := vi.state; s != nil {
		w.comment(fmt.Sprintf("state %s (%s:%d): lvsha has no initial state; priority elects the master, as it soon does in keepalived", strings.Join(s.Args, " "), s.File, s.Line))
	}
	version, versionNote := c.instanceVersion(vi)
	priority, priorityNote := c.basePriority(vi)
	w.kv("priority", strconv.Itoa(priority), priorityNote)
	w.kv("version", strconv.Itoa(version), versionNote)
	advert, advertNote := c.advertInterval(vi, version)
	w.kv("advert_interval", dur(advert), advertNote)
	if !vi.preempt {
		w.kv("preempt", "false", "nopreempt")
	}
	if vi.preemptDelay > 0 {
		w.kv("preempt_delay", dur(vi.preemptDelay), "")
	}
	if vi.noAccept {
		w.kv("accept", "false", "no_accept")
	}
	c.renderUnicast(w, vi)
	if len(vi.vips) == 0 {
		c.errorf(n, "vrrp_instance %s: no virtual_ipaddress lvsha can carry", vi.name)
		return
	}
	c.renderVIPs(w, vi)
	c.renderGARP(w, vi)
	if len(vi.trackIfaces) > 0 {
		w.kv("track_interfaces", strs(vi.trackIfaces), "track_interface")
	}
	if vi.dontTrack {
		w.kv("track_own_interface", "false", "dont_track_primary")
	}
	c.renderAuth(w, vi, version)
	renderNotify(w, vi.notify)
	if c.renderSync(w, vi) {
		c.syncRendered = true
	}
	renderTracks(w, vi)
}

// instanceVersion picks the VRRP version: the instance's, else 3 for IPv6
// VIPs, else global_defs' vrrp_version, as keepalived does.
func (c *converter) instanceVersion(vi *vrrpInstance) (version int, note string) {
	v6 := len(vi.vips) > 0 && vi.vips[0].prefix.Addr().Is6()
	version = vi.version
	switch {
	case version != 0:
	case v6:
		version, note = 3, "keepalived uses VRRPv3 for IPv6"
	default:
		version, note = c.version, "keepalived's vrrp_version"
		if c.version == 2 {
			note = "keepalived's default; lvsha's is 3"
		}
	}
	if v6 && version == 2 {
		c.warn(vi.node, "version 2: not carried: VRRPv2 carries IPv4 only, so lvsha uses version 3 for IPv6 VIPs as keepalived does")
		version = 3
	}
	return version, note
}

// basePriority is the priority lvsha starts from. keepalived's positive
// weights raise the priority while their target is fine; lvsha's weights
// lower it while the target fails. Starting from the priority plus the
// positive weights gives the same priority in every state.
func (c *converter) basePriority(vi *vrrpInstance) (priority int, note string) {
	raise := 0
	for _, t := range slices.Concat(vi.scripts, vi.weighted) {
		if t.weight > 0 {
			raise += t.weight
		}
	}
	if raise == 0 {
		return vi.priority, ""
	}
	p := vi.priority + raise
	if p > 254 && vi.priority < 255 {
		c.warn(vi.node, "priority: %d + tracking weights %d exceeds 254: keepalived caps the effective priority at 254, lvsha's base priority is capped at 254 so a failure lowers it from there", vi.priority, raise)
		p = 254
	}
	return p, fmt.Sprintf("keepalived: priority %d, +%d while the positive-weight scripts and interfaces are fine; lvsha lowers from %d while they fail", vi.priority, raise, p)
}

// advertInterval fits advert_int to what the version can carry: whole
// seconds for VRRPv2, centiseconds for VRRPv3.
func (c *converter) advertInterval(vi *vrrpInstance, version int) (advert time.Duration, note string) {
	advert = vi.advert
	if !vi.advertSet {
		note = "keepalived's default; lvsha's is 100ms for version 3"
	}
	if version == 2 && advert%time.Second != 0 {
		c.warn(vi.node, "advert_int %s: VRRPv2 counts whole seconds; rounded up", strings.Trim(dur(advert), `"`))
		advert = advert.Truncate(time.Second) + time.Second
	}
	if version == 3 && advert%(10*time.Millisecond) != 0 {
		advert = max(advert.Truncate(10*time.Millisecond), 10*time.Millisecond)
		note = "VRRPv3 counts centiseconds"
	}
	return advert, note
}

// renderUnicast carries unicast adverts, which lvsha sends only with both
// a source and peers.
func (c *converter) renderUnicast(w *tomlWriter, vi *vrrpInstance) {
	switch {
	case vi.unicastSrc != "" && len(vi.peers) > 0:
		w.kv("unicast_src", str(vi.unicastSrc), "unicast_src_ip")
		w.kv("unicast_peers", strs(vi.peers), "unicast_peer")
	case len(vi.peers) > 0:
		c.warn(vi.peerNode, "unicast_peer: not carried: lvsha needs unicast_src_ip too, so adverts stay multicast")
	case vi.unicastSrc != "":
		c.warn(vi.srcNode, "unicast_src_ip: not carried: no unicast_peer, so adverts stay multicast")
	}
}

// renderVIPs writes the VIPs of the first VIP's family; an lvsha instance
// holds one family.
func (c *converter) renderVIPs(w *tomlWriter, vi *vrrpInstance) {
	var vips []string
	v4 := vi.vips[0].prefix.Addr().Is4()
	for _, v := range vi.vips {
		p := v.prefix
		switch {
		case p.Addr().Is4() != v4:
			c.warn(v.node, "%s: not carried: an lvsha instance holds VIPs of one family; put it in a second instance", p)
		case p.Bits() == p.Addr().BitLen():
			vips = append(vips, p.Addr().String())
		default:
			vips = append(vips, p.String())
		}
	}
	w.kv("virtual_ips", strs(vips), "virtual_ipaddress")
	w.comment(fmt.Sprintf("keepalived put the VIPs on %s; lvsha holds them on a device that goes with its\nprocess, so a killed master leaves none behind. vip_holder = \"interface\" keeps keepalived's placement.", vi.iface.Args[0]))
}

// renderGARP writes the gratuitous ARP / unsolicited NA settings; the gap
// within a burst comes from global_defs, per family.
func (c *converter) renderGARP(w *tomlWriter, vi *vrrpInstance) {
	if vi.garp >= 0 {
		w.kv("garp_repeat", strconv.Itoa(vi.garp), vi.garpNote)
	}
	gap := c.gnaInterval
	if vi.vips[0].prefix.Addr().Is4() {
		gap = c.garpInterval
	}
	if gap != nil {
		if d, _ := parseSeconds(gap.Args[0]); d > 0 {
			w.kv("garp_interval", dur(d), at(gap, gap.Name))
		}
	}
	if vi.garpRefresh > 0 {
		w.kv("garp_refresh", dur(vi.garpRefresh), vi.refreshNote)
	}
}

// renderAuth carries VRRPv2 simple-password authentication, the one kind
// lvsha has.
func (c *converter) renderAuth(w *tomlWriter, vi *vrrpInstance, version int) {
	if vi.auth == nil {
		return
	}
	switch {
	case version != 2:
		c.warn(vi.auth, "authentication: not carried: VRRPv3 has no authentication (keepalived ignores it for version 3 too)")
	case vi.authType == "AH":
		c.warn(vi.auth, "authentication: auth_type AH not carried: lvsha supports PASS only")
	case vi.authPass == "":
		c.warn(vi.auth, "authentication: not carried: missing auth_pass")
	default:
		pass := vi.authPass
		if len(pass) > 8 {
			w.comment("keepalived sends the first 8 bytes of auth_pass")
			pass = pass[:8]
		}
		w.kv("auth_pass", str(pass), "authentication { auth_type PASS }")
	}
}

// renderNotify writes the hooks in a fixed order, under one comment on how
// lvsha calls them.
func renderNotify(w *tomlWriter, notify map[string][]string) {
	commented := false
	for _, k := range []string{"notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"} {
		argv, ok := notify[k]
		if !ok {
			continue
		}
		if !commented {
			w.comment("lvsha appends INSTANCE, the name, the state and the priority to every hook's\narguments (keepalived does so only for notify) and sets LVSHA_VRRP_* variables")
			commented = true
		}
		w.kv(k, strs(argv), "")
	}
}

// renderTracks writes the weighted interfaces and the scripts as
// sub-tables. lvsha's weight is what a failure subtracts; a positive
// keepalived weight is already in the base priority.
func renderTracks(w *tomlWriter, vi *vrrpInstance) {
	w.indent = "  "
	defer func() { w.indent = "" }()
	for _, t := range vi.weighted {
		w.blank()
		w.array("vrrp_instance.track_interface")
		w.comment(at(t.node, "track_interface "+t.name))
		w.kv("name", str(t.name), "")
		w.kv("weight", strconv.Itoa(abs(t.weight)), weightNote(t.weight))
	}
	for _, t := range vi.scripts {
		w.blank()
		w.array("vrrp_instance.track_exec")
		w.comment(at(t.node, "track_script "+t.name))
		w.kv("name", str(t.name), "")
		if t.weight == 0 {
			w.kv("weight", "0", "weight 0: fault while the command fails, as in keepalived")
		} else {
			w.kv("weight", strconv.Itoa(abs(t.weight)), weightNote(t.weight))
		}
	}
}

func weightNote(weight int) string {
	if weight < 0 {
		return fmt.Sprintf("keepalived weight %d", weight)
	}
	return fmt.Sprintf("keepalived weight +%d, see priority", weight)
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// vip reads one virtual_ipaddress line: IP[/LEN] [dev X] [label L] ...
func (c *converter) vip(v *Node, iface *Node) (netip.Prefix, bool) {
	s := v.Name
	var p netip.Prefix
	if strings.Contains(s, "/") {
		q, err := netip.ParsePrefix(s)
		if err != nil {
			c.warn(v, "%s: not carried: invalid address", s)
			return p, false
		}
		p = q
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			c.warn(v, "%s: not carried: invalid address", s)
			return p, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	for i := 0; i < len(v.Args); i++ {
		switch v.Args[i] {
		case "dev":
			if i+1 < len(v.Args) && iface != nil && v.Args[i+1] != iface.Args[0] {
				c.warn(v, "%s: dev %s not carried: lvsha holds every VIP of an instance the same way, reachable through %s", s, v.Args[i+1], iface.Args[0])
			}
			i++
		case "label":
			if i+1 < len(v.Args) {
				c.warn(v, "%s: label %s not carried: lvsha gives VIPs no labels", s, v.Args[i+1])
			}
			i++
		default:
			c.warn(v, "%s: option %s not carried", s, strings.Join(v.Args[i:], " "))
			i = len(v.Args)
		}
	}
	return p, true
}

func (c *converter) syncGroup(w *tomlWriter, n *Node) {
	if len(n.Args) != 1 {
		c.errorf(n, "vrrp_sync_group: want one name (got %d words)", len(n.Args))
		return
	}
	var nodes []*Node
	for _, d := range n.Children {
		switch {
		case d.Name == "group":
			nodes = append(nodes, d.Children...)
		case len(d.Args) == 0 && len(d.Children) == 0 && c.isInstance(d.Name):
			// The legacy form, still in keepalived's samples: the
			// instances named directly in the block, without group { }.
			nodes = append(nodes, d)
		default:
			c.dropped(d, syncGroupReasons, "vrrp_sync_group")
		}
	}
	// keepalived ignores a member that names no instance ("doesn't
	// exist - ignoring"); lvsha's check would reject it, and one whose
	// instance was not converted.
	var members []string
	for _, m := range nodes {
		switch {
		case slices.Contains(members, m.Name):
			c.warn(m, "%s: listed again in vrrp_sync_group %s: carried once", m.Name, n.Args[0])
		case c.converted[m.Name]:
			members = append(members, m.Name)
		case c.isInstance(m.Name):
			c.warn(m, "%s: not carried in vrrp_sync_group %s: its vrrp_instance was not converted", m.Name, n.Args[0])
		default:
			c.warn(m, "%s: not carried in vrrp_sync_group %s: no vrrp_instance of that name (keepalived ignores it too)", m.Name, n.Args[0])
		}
	}
	if len(members) == 0 {
		c.warn(n, "vrrp_sync_group %s: not carried: none of its instances is converted", n.Args[0])
		return
	}
	w.blank()
	w.array("vrrp_sync_group")
	w.comment(at(n, "vrrp_sync_group "+n.Args[0]))
	w.kv("name", str(n.Args[0]), "")
	w.kv("instances", strs(members), "")
}

// isInstance reports whether the configuration defines a vrrp_instance
// of that name, converted or not.
func (c *converter) isInstance(name string) bool {
	return slices.ContainsFunc(c.instances, func(n *Node) bool { return len(n.Args) == 1 && n.Args[0] == name })
}

// vrrpReasons explain the vrrp_instance directives lvsha does not carry.
var vrrpReasons = map[string]string{
	"debug":                      "use lvsha run's log level",
	"mcast_src_ip":               "lvsha sends multicast adverts from the interface's primary address",
	"virtual_ipaddress_excluded": "lvsha moves only the advertised VIPs; add these to virtual_ips (they are then advertised too) or to a second instance",
	"virtual_routes":             "lvsha moves no routes or rules with mastership; a notify hook can",
	"virtual_rules":              "lvsha moves no routes or rules with mastership; a notify hook can",
	"use_vmac":                   "lvsha has no virtual MAC; the master announces the VIPs with gratuitous ARP / unsolicited NA from its own MAC",
	"vmac_xmit_base":             "lvsha has no virtual MAC; the master announces the VIPs with gratuitous ARP / unsolicited NA from its own MAC",
	"use_ipvlan":                 "lvsha has no virtual MAC; the master announces the VIPs with gratuitous ARP / unsolicited NA from its own MAC",
	"track_file":                 "lvsha tracks interfaces, its own virtual servers and track_exec commands; a [[track_exec]] can test a file or a process",
	"track_process":              "lvsha tracks interfaces, its own virtual servers and track_exec commands; a [[track_exec]] can test a file or a process",
	"track_bfd":                  "lvsha's backup watches its master with BFD itself (bfd in [[vrrp_instance]], on by default) and takes over when it fails; a session to a third router is not carried",
	"smtp_alert":                 "lvsha sends no mail",
	"strict_mode":                "lvsha follows RFC 5798 without keepalived's strict-mode restrictions",
	"notify_deleted":             "lvsha runs hooks on master, backup, fault and stop only",
	"notify_master_rx_lower_pri": "lvsha runs hooks on master, backup, fault and stop only",
	"notify_priority_changes":    "lvsha runs hooks on master, backup, fault and stop only",
	"garp_master_delay":          "lvsha announces on becoming master (garp_repeat times), on seeing a lower-priority master, and every garp_refresh",
	"garp_lower_prio_delay":      "lvsha announces on becoming master (garp_repeat times), on seeing a lower-priority master, and every garp_refresh",
	"garp_lower_prio_repeat":     "lvsha announces on becoming master (garp_repeat times), on seeing a lower-priority master, and every garp_refresh",
	"garp_master_refresh_repeat": "lvsha announces on becoming master (garp_repeat times), on seeing a lower-priority master, and every garp_refresh",
	"garp_extra_if":              "lvsha announces on becoming master (garp_repeat times), on seeing a lower-priority master, and every garp_refresh",
	"vmac_garp_intvl":            "lvsha announces on becoming master (garp_repeat times), on seeing a lower-priority master, and every garp_refresh",
	"unicast_ttl":                "lvsha follows RFC 5798 here: TTL 255, peers filtered by unicast_peers",
	"check_unicast_src":          "lvsha follows RFC 5798 here: TTL 255, peers filtered by unicast_peers",
	"skip_check_adv_addr":        "lvsha follows RFC 5798 here: TTL 255, peers filtered by unicast_peers",
	"mcast_dst_ip":               "lvsha follows RFC 5798 here: TTL 255, peers filtered by unicast_peers",
	"unicast_fault_no_peer":      "lvsha follows RFC 5798 here: TTL 255, peers filtered by unicast_peers",
	"old_unicast_checksum":       "lvsha follows RFC 5798 here: TTL 255, peers filtered by unicast_peers",
	"v3_checksum_as_v2":          "lvsha follows RFC 5798 here: TTL 255, peers filtered by unicast_peers",
	"track_src_ip":               "lvsha follows RFC 5798 here: TTL 255, peers filtered by unicast_peers",
	"down_timer_adverts":         "lvsha has no equivalent",
	"lower_prio_no_advert":       "lvsha has no equivalent",
	"higher_prio_send_advert":    "lvsha has no equivalent",
	"owner_ignore_adverts":       "lvsha has no equivalent",
	"timer_expired_backup":       "lvsha has no equivalent",
	"thread_timer_expired":       "lvsha has no equivalent",
	"kernel_rx_buf_size":         "lvsha has no equivalent",
	"promote_secondaries":        "lvsha has no equivalent",
	"no_virtual_ipaddress":       "lvsha has no equivalent",
	"linkbeat_use_polling":       "lvsha has no equivalent",
	"vrf":                        "lvsha has no equivalent",
	"interfaces":                 "lvsha has no equivalent",
}

// syncGroupReasons explain the vrrp_sync_group directives lvsha does not carry.
var syncGroupReasons = map[string]string{
	"notify_master":              "lvsha runs hooks per instance; give the hook to one member instance, whose state the group shares",
	"notify_backup":              "lvsha runs hooks per instance; give the hook to one member instance, whose state the group shares",
	"notify_fault":               "lvsha runs hooks per instance; give the hook to one member instance, whose state the group shares",
	"notify_stop":                "lvsha runs hooks per instance; give the hook to one member instance, whose state the group shares",
	"notify":                     "lvsha runs hooks per instance; give the hook to one member instance, whose state the group shares",
	"smtp_alert":                 "lvsha sends no mail",
	"global_tracking":            "lvsha tracks per instance; a member's fault moves the whole group",
	"sync_group_tracking_weight": "lvsha tracks per instance; a member's fault moves the whole group",
	"track_interface":            "lvsha tracks per instance; a member's fault moves the whole group",
	"track_script":               "lvsha tracks per instance; a member's fault moves the whole group",
	"track_file":                 "lvsha tracks per instance; a member's fault moves the whole group",
	"track_process":              "lvsha tracks per instance; a member's fault moves the whole group",
	"track_bfd":                  "lvsha tracks per instance; a member's fault moves the whole group",
}
