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
				v, err := strconv.Atoi(d.Args[0])
				if err != nil || v < -254 || v > 254 {
					c.warn(d, "weight: not carried: want -254..254 (got %q)", d.Args[0])
					break
				}
				s.weight = v
				if len(d.Args) > 1 && d.Args[1] == "reverse" {
					s.reverse = true
				}
			}
		case "rise":
			if v, ok := c.intArg(d, 1, 100); ok {
				s.rise = v
			}
		case "fall":
			if v, ok := c.intArg(d, 1, 100); ok {
				s.fall = v
			}
		case "init_fail":
			s.initFail = true
		case "user":
			c.notCarried(d, "lvsha runs commands as its own user")
		default:
			c.unknown(d, "vrrp_script")
		}
	}
	if s.argv == nil {
		c.errorf(n, "vrrp_script %s: missing script", n.Args[0])
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

// trackedScript is one track_script entry of an instance.
type trackedScript struct {
	name   string
	weight int
	node   *Node
}

func (c *converter) vrrpInstance(w *tomlWriter, n *Node) {
	if len(n.Args) != 1 {
		c.errorf(n, "vrrp_instance: want one name (got %d words)", len(n.Args))
		return
	}
	var (
		iface, state               *Node
		vrid, prio                 = 0, 100
		version                    = 0
		advert                     = time.Second
		advertSet                  bool
		preempt                    = true
		preemptDelay               time.Duration
		accept                     *bool
		unicastSrc                 string
		peers                      []string
		authPass                   string
		authType                   string
		authNode                   *Node
		vips                       []netip.Prefix
		vipNodes                   []*Node
		srcNode, peerNode          *Node
		trackIfaces                []string
		weightedIfaces             []trackedScript // keepalived track_interface with a weight
		tracked                    []trackedScript
		notify                     = map[string][]string{}
		garp                       = c.garp
		garpRefresh                = c.garpRefresh
		garpNote, refreshNote, pri string
	)
	if c.garpNode != nil {
		garpNote = at(c.garpNode, "vrrp_garp_master_repeat")
	}
	if c.refreshNode != nil {
		refreshNote = at(c.refreshNode, "vrrp_garp_master_refresh")
	}
	for _, d := range n.Children {
		switch d.Name {
		case "state":
			state = d
		case "interface":
			if len(d.Args) > 0 {
				iface = d
			}
		case "virtual_router_id":
			if v, ok := c.intArg(d, 1, 255); ok {
				vrid = v
			}
		case "priority":
			if v, ok := c.intArg(d, 1, 255); ok {
				prio = v
			}
		case "version":
			if v, ok := c.intArg(d, 2, 3); ok {
				version = v
			}
		case "advert_int":
			if v, ok := c.secondsArg(d); ok && v > 0 {
				advert, advertSet = v, true
			}
		case "nopreempt":
			preempt = false
		case "preempt":
			preempt = true
		case "preempt_delay":
			if v, ok := c.secondsArg(d); ok {
				preemptDelay = v
			}
		case "accept":
			b := true
			accept = &b
		case "no_accept":
			b := false
			accept = &b
		case "unicast_src_ip":
			if len(d.Args) > 0 {
				unicastSrc, srcNode = d.Args[0], d
			}
		case "unicast_peer":
			peerNode = d
			for _, p := range d.Children {
				peers = append(peers, p.Name)
				if len(p.Args) > 0 {
					c.warn(p, "unicast_peer %s: options not carried: %s", p.Name, strings.Join(p.Args, " "))
				}
			}
		case "authentication":
			authNode = d
			for _, a := range d.Children {
				switch a.Name {
				case "auth_type":
					if len(a.Args) > 0 {
						authType = strings.ToUpper(a.Args[0])
					}
				case "auth_pass":
					if len(a.Args) > 0 {
						authPass = a.Args[0]
					}
				default:
					c.unknown(a, "authentication")
				}
			}
		case "virtual_ipaddress":
			for _, v := range d.Children {
				if p, ok := c.vip(v, iface); ok {
					vips = append(vips, p)
					vipNodes = append(vipNodes, v)
				}
			}
		case "track_interface":
			for _, t := range d.Children {
				w := 0
				if len(t.Args) >= 2 && t.Args[0] == "weight" {
					v, err := strconv.Atoi(t.Args[1])
					if err != nil || v < -254 || v > 254 {
						c.warn(t, "track_interface %s: weight not carried: want -254..254 (got %q); a fault instead", t.Name, t.Args[1])
					} else {
						w = v
					}
					if len(t.Args) > 2 {
						c.warn(t, "track_interface %s: options not carried: %s", t.Name, strings.Join(t.Args[2:], " "))
					}
				} else if len(t.Args) > 0 {
					c.warn(t, "track_interface %s: options not carried: %s", t.Name, strings.Join(t.Args, " "))
				}
				if w == 0 {
					trackIfaces = append(trackIfaces, t.Name)
				} else {
					weightedIfaces = append(weightedIfaces, trackedScript{name: t.Name, weight: w, node: t})
				}
			}
		case "track_script":
			for _, t := range d.Children {
				ts := trackedScript{name: t.Name, node: t}
				s, ok := c.scripts[t.Name]
				if !ok {
					c.warn(t, "track_script %s: not carried: no vrrp_script of that name", t.Name)
					continue
				}
				ts.weight = s.weight
				rev := s.reverse
				if len(t.Args) >= 2 && t.Args[0] == "weight" {
					v, err := strconv.Atoi(t.Args[1])
					if err != nil || v < -254 || v > 254 {
						c.warn(t, "track_script %s: weight not carried: want -254..254 (got %q)", t.Name, t.Args[1])
					} else {
						ts.weight = v
						rev = len(t.Args) > 2 && t.Args[2] == "reverse"
					}
				}
				if rev {
					c.warn(t, "track_script %s: reverse not carried: lvsha changes the priority only while the command fails", t.Name)
					c.skippedScripts[t.Name] = true
					continue
				}
				tracked = append(tracked, ts)
				c.usedScripts[t.Name] = true
			}
		case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
			if len(d.Args) == 0 {
				c.warn(d, "%s: not carried: missing command", d.Name)
				continue
			}
			argv, _ := command(d.Args[0])
			notify[d.Name] = argv
			if len(d.Args) > 1 {
				c.warn(d, "%s: user and group not carried (lvsha runs hooks as its own user): %s", d.Name, strings.Join(d.Args[1:], " "))
			}
		case "garp_master_repeat":
			if v, ok := c.intArg(d, 1, 100); ok {
				garp, garpNote = v, ""
			}
		case "garp_master_refresh":
			if v, ok := c.secondsArg(d); ok {
				garpRefresh, refreshNote = v, ""
			}
		case "native_ipv6":
			// lvsha uses VRRPv3 over IPv6 for IPv6 VIPs anyway.
		default:
			c.dropped(d, vrrpReasons, "vrrp_instance")
		}
	}

	name := n.Args[0]
	w.blank()
	w.array("vrrp_instance")
	w.comment(at(n, "vrrp_instance "+name))
	w.kv("name", str(name), "")
	if iface == nil {
		c.errorf(n, "vrrp_instance %s: missing interface", name)
		return
	}
	w.kv("interface", str(iface.Args[0]), "")
	if vrid == 0 {
		c.errorf(n, "vrrp_instance %s: missing virtual_router_id", name)
		return
	}
	w.kv("router_id", strconv.Itoa(vrid), "virtual_router_id")
	if state != nil {
		w.comment(fmt.Sprintf("state %s (%s:%d): lvsha has no initial state; priority elects the master, as it soon does in keepalived", strings.Join(state.Args, " "), state.File, state.Line))
	}

	v6 := len(vips) > 0 && vips[0].Addr().Is6()
	verNote := ""
	switch {
	case version != 0:
	case v6:
		version, verNote = 3, "keepalived uses VRRPv3 for IPv6"
	default:
		version, verNote = c.version, "keepalived's vrrp_version"
		if c.version == 2 {
			verNote = "keepalived's default; lvsha's is 3"
		}
	}
	if v6 && version == 2 {
		c.warn(n, "version 2: not carried: VRRPv2 carries IPv4 only, so lvsha uses version 3 for IPv6 VIPs as keepalived does")
		version = 3
	}

	// keepalived's positive script weights raise the priority while the
	// script succeeds; lvsha's weights lower it while the command fails.
	// Starting from priority + the positive weights gives the same
	// priority in every state.
	raise := 0
	for _, ts := range append(slices.Clone(tracked), weightedIfaces...) {
		if ts.weight > 0 {
			raise += ts.weight
		}
	}
	if raise > 0 {
		p := prio + raise
		if p > 254 && prio < 255 {
			c.warn(n, "priority: %d + tracking weights %d exceeds 254: keepalived caps the effective priority at 254, lvsha's base priority is capped at 254 so a failure lowers it from there", prio, raise)
			p = 254
		}
		pri = fmt.Sprintf("keepalived: priority %d, +%d while the positive-weight scripts and interfaces are fine; lvsha lowers from %d while they fail", prio, raise, p)
		prio = p
	}
	w.kv("priority", strconv.Itoa(prio), pri)
	w.kv("version", strconv.Itoa(version), verNote)
	anote := ""
	if !advertSet {
		anote = "keepalived's default; lvsha's is 100ms for version 3"
	}
	if version == 2 && advert%time.Second != 0 {
		c.warn(n, "advert_int %s: VRRPv2 counts whole seconds; rounded up", strings.Trim(dur(advert), `"`))
		advert = advert.Truncate(time.Second) + time.Second
	}
	if version == 3 && advert%(10*time.Millisecond) != 0 {
		advert = advert.Truncate(10 * time.Millisecond)
		if advert == 0 {
			advert = 10 * time.Millisecond
		}
		anote = "VRRPv3 counts centiseconds"
	}
	w.kv("advert_interval", dur(advert), anote)
	if !preempt {
		w.kv("preempt", "false", "nopreempt")
	}
	if preemptDelay > 0 {
		w.kv("preempt_delay", dur(preemptDelay), "")
	}
	if accept != nil && !*accept {
		w.kv("accept", "false", "no_accept")
	}
	switch {
	case unicastSrc != "" && len(peers) > 0:
		w.kv("unicast_src", str(unicastSrc), "unicast_src_ip")
		w.kv("unicast_peers", strs(peers), "unicast_peer")
	case len(peers) > 0:
		c.warn(peerNode, "unicast_peer: not carried: lvsha needs unicast_src_ip too, so adverts stay multicast")
	case unicastSrc != "":
		c.warn(srcNode, "unicast_src_ip: not carried: no unicast_peer, so adverts stay multicast")
	}
	if len(vips) == 0 {
		c.errorf(n, "vrrp_instance %s: no virtual_ipaddress lvsha can carry", name)
		return
	}
	var vs []string
	fam := vips[0].Addr().Is4()
	for i, p := range vips {
		if p.Addr().Is4() != fam {
			c.warn(vipNodes[i], "%s: not carried: an lvsha instance holds VIPs of one family; put it in a second instance", p)
			continue
		}
		if p.Bits() == p.Addr().BitLen() {
			vs = append(vs, p.Addr().String())
		} else {
			vs = append(vs, p.String())
		}
	}
	w.kv("virtual_ips", strs(vs), "virtual_ipaddress")
	w.comment(fmt.Sprintf("keepalived put the VIPs on %s; lvsha holds them on a device that goes with its\nprocess, so a killed master leaves none behind. vip_holder = \"interface\" keeps keepalived's placement.", iface.Args[0]))
	if garp >= 0 {
		w.kv("garp_repeat", strconv.Itoa(garp), garpNote)
	}
	gap := c.gnaInterval
	if fam {
		gap = c.garpInterval
	}
	if gap != nil {
		if d, _ := parseSeconds(gap.Args[0]); d > 0 {
			w.kv("garp_interval", dur(d), at(gap, gap.Name))
		}
	}
	if garpRefresh > 0 {
		w.kv("garp_refresh", dur(garpRefresh), refreshNote)
	}
	if len(trackIfaces) > 0 {
		w.kv("track_interfaces", strs(trackIfaces), "track_interface")
	}
	if authNode != nil {
		switch {
		case version != 2:
			c.warn(authNode, "authentication: not carried: VRRPv3 has no authentication (keepalived ignores it for version 3 too)")
		case authType == "AH":
			c.warn(authNode, "authentication: auth_type AH not carried: lvsha supports PASS only")
		case authPass == "":
			c.warn(authNode, "authentication: not carried: missing auth_pass")
		default:
			if len(authPass) > 8 {
				w.comment("keepalived sends the first 8 bytes of auth_pass")
				authPass = authPass[:8]
			}
			w.kv("auth_pass", str(authPass), "authentication { auth_type PASS }")
		}
	}
	hooks := false
	for _, k := range []string{"notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"} {
		if argv, ok := notify[k]; ok {
			if !hooks {
				w.comment("lvsha appends INSTANCE, the name, the state and the priority to every hook's\narguments (keepalived does so only for notify) and sets LVSHA_VRRP_* variables")
				hooks = true
			}
			w.kv(k, strs(argv), "")
		}
	}
	for _, ti := range weightedIfaces {
		w.blank()
		w.indent = "  "
		w.array("vrrp_instance.track_interface")
		w.comment(at(ti.node, "track_interface "+ti.name))
		w.kv("name", str(ti.name), "")
		if ti.weight < 0 {
			w.kv("weight", strconv.Itoa(-ti.weight), fmt.Sprintf("keepalived weight %d", ti.weight))
		} else {
			w.kv("weight", strconv.Itoa(ti.weight), fmt.Sprintf("keepalived weight +%d, see priority", ti.weight))
		}
		w.indent = ""
	}
	for _, ts := range tracked {
		w.blank()
		w.indent = "  "
		w.array("vrrp_instance.track_exec")
		w.comment(at(ts.node, "track_script "+ts.name))
		w.kv("name", str(ts.name), "")
		switch {
		case ts.weight == 0:
			w.kv("weight", "0", "weight 0: fault while the command fails, as in keepalived")
		case ts.weight < 0:
			w.kv("weight", strconv.Itoa(-ts.weight), fmt.Sprintf("keepalived weight %d", ts.weight))
		default:
			w.kv("weight", strconv.Itoa(ts.weight), fmt.Sprintf("keepalived weight +%d, see priority", ts.weight))
		}
		w.indent = ""
	}
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
	var members []string
	for _, d := range n.Children {
		switch d.Name {
		case "group":
			for _, m := range d.Children {
				members = append(members, m.Name)
			}
		default:
			c.dropped(d, syncGroupReasons, "vrrp_sync_group")
		}
	}
	w.blank()
	w.array("vrrp_sync_group")
	w.comment(at(n, "vrrp_sync_group "+n.Args[0]))
	w.kv("name", str(n.Args[0]), "")
	w.kv("instances", strs(members), "")
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
	"dont_track_primary":         "lvsha always puts an instance in fault while its interface is down",
	"track_file":                 "lvsha tracks interfaces, its own virtual servers and track_exec commands; a [[track_exec]] can test a file or a process",
	"track_process":              "lvsha tracks interfaces, its own virtual servers and track_exec commands; a [[track_exec]] can test a file or a process",
	"track_bfd":                  "lvsha tracks interfaces, its own virtual servers and track_exec commands; a [[track_exec]] can test a file or a process",
	"smtp_alert":                 "lvsha sends no mail",
	"strict_mode":                "lvsha follows RFC 5798 without keepalived's strict-mode restrictions",
	"lvs_sync_daemon_interface":  "lvsha does not drive the IPVS connection sync daemon",
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
