package conf

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// vrrp builds the track_exec commands, the VRRP instances and the sync
// groups. It runs after the virtual servers, whose names the instances may
// track.
func (b *builder) vrrp(rc rawConfig, c *Config) {
	vsNames := map[string]bool{}
	for _, vs := range c.VirtualServers {
		vsNames[vs.Name] = true
	}
	execNames := b.trackExecs(rc, c)
	names := map[string]string{}   // instance name → key of its first use
	routers := map[string]string{} // interface/vrid/family → instance key
	firstSync := ""                // key of the first lvs_sync table
	for _, rv := range rc.vrrps {
		b.uniqueName("vrrp_instance", rv.key, rv.name, "a name for the instance", names)
		if s := rv.lvsSync; s != nil && firstSync != "" {
			b.add(s.key, "a second lvs_sync (the first is %s at line %d; want one: the kernel runs one master and one backup sync daemon per network namespace)",
				firstSync, b.lines.line(firstSync))
		} else if s != nil {
			firstSync = s.key
		}
		inst := b.vrrpInstance(rv, vsNames, execNames)
		if v := rv.splitBrain; v.valid() && v.v == "resolve" && c.Cluster == nil {
			b.add(v.key(), `needs a [cluster] table (got "resolve": split brain is seen through gossip; want "report" or a [cluster])`)
		}
		c.VRRPInstances = append(c.VRRPInstances, inst)
		if inst.Interface != "" && inst.RouterID != 0 && len(inst.VirtualIPs) > 0 {
			id := fmt.Sprintf("%s/%d/%s", inst.Interface, inst.RouterID, familyOf(inst.VirtualIPs[0].Addr()))
			if first, dup := routers[id]; dup {
				b.add(rv.routerID.key(), "router_id %d is already used on interface %s for %s VIPs by %s at line %d (want a different router_id per virtual router on a link)",
					inst.RouterID, inst.Interface, familyOf(inst.VirtualIPs[0].Addr()), first, b.lines.line(first))
			} else {
				routers[id] = rv.key
			}
		}
	}
	grouped := map[string]string{}    // instance name → its sync group
	groupNames := map[string]string{} // group name → key of its first use
	for _, rg := range rc.groups {
		g := SyncGroup{Name: rg.name.or(""), Instances: rg.instances.or(nil)}
		b.uniqueName("vrrp_sync_group", rg.key, rg.name, "a name for the sync group", groupNames)
		if !rg.instances.set {
			b.add(rg.key+".instances", "missing (want the names of at least one vrrp_instance)")
		} else if rg.instances.ok && len(g.Instances) == 0 {
			b.add(rg.instances.key(), "empty (want the names of at least one vrrp_instance)")
		}
		for i, n := range g.Instances {
			key := indexKey(rg.instances.key(), i)
			switch first, dup := grouped[n]; {
			case !known(names, n):
				b.add(key, "unknown vrrp_instance %q", n)
			case dup:
				b.add(key, "vrrp_instance %q is already in sync group %q (an instance belongs to one group at most)", n, first)
			default:
				grouped[n] = g.Name
			}
		}
		c.SyncGroups = append(c.SyncGroups, g)
	}
}

// vrrpInstance builds one instance; vsNames and execNames are what its
// track tables may refer to.
func (b *builder) vrrpInstance(rv rawVRRP, vsNames map[string]bool, execNames map[string]string) VRRPInstance {
	inst := VRRPInstance{
		Name:         rv.name.or(""),
		Interface:    rv.iface.or(""),
		RouterID:     int(rv.routerID.or(0)),
		Priority:     int(rv.priority.or(defaultVRRPPriority)),
		Version:      int(rv.version.or(defaultVRRPVersion)),
		Preempt:      rv.preempt.or(true),
		PreemptDelay: rv.preemptDelay.or(0),
		Accept:       rv.accept.or(true),
		VIPHolder:    rv.holder.or(defaultVIPHolder),
		GARPRepeat:   int(rv.garp.or(defaultGARPRepeat)),
		GARPInterval: rv.garpInterval.or(0),
		GARPRefresh:  rv.refresh.or(0),
		AuthPass:     rv.auth.or(""),
		Notify: Notify{
			Master: rv.notifyMaster.or(nil), Backup: rv.notifyBackup.or(nil),
			Fault: rv.notifyFault.or(nil), Stop: rv.notifyStop.or(nil), Any: rv.notifyAny.or(nil),
			Timeout: rv.timeout.or(defaultNotifyTimeout),
		},
		TrackInterfaces:   rv.trackIfaces.or(nil),
		TrackOwnInterface: rv.trackOwn.or(true),
		SplitBrain:        rv.splitBrain.or(defaultSplitBrain),
	}
	for _, req := range []struct {
		set  bool
		key  string
		want string
	}{
		{rv.iface.set, "interface", "the interface adverts go out on"},
		{rv.routerID.set, "router_id", "the VRID, 1..255, shared by every director of the group"},
		{rv.vips.set, "virtual_ips", `the VIPs, e.g. ["192.0.2.10/24"]`},
	} {
		if !req.set {
			b.add(rv.key+"."+req.key, "missing (want %s)", req.want)
		}
	}
	if v := rv.iface; v.valid() {
		b.ifname(v.key(), v.v)
	}
	for i, n := range inst.TrackInterfaces {
		b.ifname(indexKey(rv.trackIfaces.key(), i), n)
	}

	// Advert interval: v3 counts centiseconds in 12 bits, v2 whole seconds
	// in 8 bits (RFC 5798 5.2.7, RFC 3768 5.3.7).
	inst.AdvertInterval = defaultAdvertV3
	if inst.Version == 2 {
		inst.AdvertInterval = defaultAdvertV2
	}
	if v := rv.advert; v.valid() {
		inst.AdvertInterval = v.v
		switch {
		case inst.Version == 3 && (v.v%(10*time.Millisecond) != 0 || v.v < 10*time.Millisecond || v.v > 40950*time.Millisecond):
			b.add(v.key(), "invalid for VRRP version 3 (got %s, want a multiple of 10ms from 10ms to 40.95s)", v.v)
		case inst.Version == 2 && (v.v%time.Second != 0 || v.v < time.Second || v.v > 255*time.Second):
			b.add(v.key(), "invalid for VRRP version 2 (got %s, want whole seconds from 1s to 255s)", v.v)
		}
	}
	if !rv.bfd.off {
		bfd := DefaultBFD()
		if v := rv.bfd.interval; v.valid() {
			bfd.Interval = v.v
			if v.v < minBFDInterval || v.v > maxBFDInterval {
				b.add(v.key(), "out of range (got %s, want %s..%s)", v.v, minBFDInterval, maxBFDInterval)
			}
		}
		bfd.Multiplier = int(rv.bfd.multiplier.or(int64(bfd.Multiplier)))
		inst.BFD = &bfd
	}
	if v := rv.preemptDelay; v.valid() && v.v > maxPreemptDelay {
		b.add(v.key(), "too long (got %s, want at most %s)", v.v, maxPreemptDelay)
	}
	if v := rv.garpInterval; v.valid() && v.v > maxGARPInterval {
		b.add(v.key(), "too long (got %s, want at most %s between two announcements)", v.v, maxGARPInterval)
	}
	if v := rv.timeout; v.valid() && v.v == 0 {
		b.add(v.key(), "must be positive (got 0s)")
	}
	for _, n := range []val[[]string]{rv.notifyMaster, rv.notifyBackup, rv.notifyFault, rv.notifyStop, rv.notifyAny} {
		if n.valid() && (len(n.v) == 0 || n.v[0] == "") {
			b.add(n.key(), `empty command (want an argv such as ["/etc/lvsha/notify.sh", "arg"])`)
		}
	}

	family := ""
	for i, s := range rv.vips.or(nil) {
		key := indexKey(rv.vips.key(), i)
		p, msg := parseVIPPrefix(s)
		if msg != "" {
			b.add(key, "%s", msg)
			continue
		}
		if family == "" {
			family = familyOf(p.Addr())
		} else if f := familyOf(p.Addr()); f != family {
			b.add(key, "mixes address families (got %s, want %s like the first VIP: use one instance per family)", familyWord(f)+" VIP", familyWord(family)+" one")
			continue
		}
		for _, q := range inst.VirtualIPs {
			if q.Addr() == p.Addr() {
				b.add(key, "duplicate VIP %s", p.Addr())
			}
		}
		inst.VirtualIPs = append(inst.VirtualIPs, p)
	}
	if rv.vips.valid() && len(rv.vips.v) == 0 {
		b.add(rv.vips.key(), "empty (want at least one VIP)")
	}
	if family == "inet6" && inst.Version == 2 {
		b.add(rv.version.key(), "VRRP version 2 carries IPv4 only (got version 2 with IPv6 VIPs, want version 3)")
	}
	if v := rv.auth; v.valid() {
		switch {
		case inst.Version != 2:
			b.add(v.key(), "applies only to VRRP version 2 (version 3 has no authentication, RFC 5798 9)")
		case len(v.v) > maxAuthPass:
			b.add(v.key(), "too long (got %d bytes, want at most %d: VRRPv2 carries 8)", len(v.v), maxAuthPass)
		}
	}
	addr := func(key, s string) netip.Addr {
		a, err := netip.ParseAddr(s)
		if err != nil {
			b.add(key, "invalid IP address (got %q)", s)
			return netip.Addr{}
		}
		if msg := ipProblem(a, s); msg != "" {
			b.add(key, "%s", msg)
			return netip.Addr{}
		}
		if family != "" && familyOf(a) != family {
			b.add(key, "not of the VIPs' family (got %s, want %s address)", s, familyWord(family))
		}
		return a
	}
	if v := rv.unicastSrc; v.valid() {
		inst.UnicastSrc = addr(v.key(), v.v)
		if !rv.peers.set {
			b.add(v.key(), "needs unicast_peers (want the other directors' addresses)")
		}
	}
	for i, s := range rv.peers.or(nil) {
		if a := addr(indexKey(rv.peers.key(), i), s); a.IsValid() {
			inst.UnicastPeers = append(inst.UnicastPeers, a)
		}
	}
	for _, rt := range rv.trackVS {
		tv := TrackVirtualServer{Name: rt.name.or(""), Weight: int(rt.weight.or(defaultTrackWeight))}
		switch {
		case !rt.name.set:
			b.add(rt.key+".name", "missing (want a virtual_server name)")
		case rt.name.ok && !vsNames[tv.Name]:
			b.add(rt.name.key(), "unknown virtual_server %q", tv.Name)
		}
		inst.TrackVirtualServers = append(inst.TrackVirtualServers, tv)
	}
	for _, rt := range rv.trackIfaceWeights {
		ti := TrackInterface{Name: rt.name.or(""), Weight: int(rt.weight.or(0))}
		switch {
		case !rt.name.set:
			b.add(rt.key+".name", "missing (want an interface name)")
		case rt.name.ok:
			b.ifname(rt.name.key(), ti.Name)
			for _, f := range inst.TrackInterfaces {
				if f == ti.Name {
					b.add(rt.name.key(), "interface %s is already in track_interfaces (a fault there; want one or the other)", ti.Name)
				}
			}
		}
		if !rt.weight.set {
			b.add(rt.key+".weight", "missing (want 1..254, subtracted from the priority while the interface is down)")
		}
		inst.TrackInterfaceWeights = append(inst.TrackInterfaceWeights, ti)
	}
	seen := map[string]bool{}
	for _, rt := range rv.trackExec {
		te := TrackExecRef{Name: rt.name.or(""), Weight: int(rt.weight.or(defaultTrackExecWeight))}
		switch {
		case !rt.name.set:
			b.add(rt.key+".name", "missing (want a track_exec name)")
		case rt.name.ok && !known(execNames, te.Name):
			b.add(rt.name.key(), "unknown track_exec %q", te.Name)
		case rt.name.ok && seen[te.Name]:
			b.add(rt.name.key(), "track_exec %q is already tracked by this instance", te.Name)
		}
		seen[te.Name] = true
		inst.TrackExecs = append(inst.TrackExecs, te)
	}
	if rv.lvsSync != nil {
		inst.LVSSync = b.lvsSync(*rv.lvsSync, inst.RouterID)
	}
	return inst
}

// lvsSync builds an instance's sync daemon; the sync id defaults to the
// instance's router_id, as keepalived's does to its virtual_router_id.
func (b *builder) lvsSync(rs rawLVSSync, routerID int) *LVSSync {
	s := &LVSSync{
		Interface: rs.iface.or(""),
		SyncID:    int(rs.syncID.or(int64(routerID))),
		MaxLen:    int(rs.maxLen.or(0)),
		Group:     defaultSyncGroup(),
		Port:      int(rs.port.or(defaultSyncPort)),
		TTL:       int(rs.ttl.or(defaultSyncTTL)),
	}
	switch v := rs.iface; {
	case !v.set:
		b.add(rs.key+".interface", "missing (want the interface the sync messages go out and come in on)")
	case v.ok:
		b.ifname(v.key(), v.v)
	}
	if v := rs.group; v.valid() {
		a, err := netip.ParseAddr(v.v)
		switch {
		case err != nil:
			b.add(v.key(), `invalid IP address (got %q, want a multicast group such as "224.0.0.81" or "ff02::81")`, v.v)
		case a.Zone() != "":
			b.add(v.key(), "IPv6 zones are not supported (got %q, want a group without %%zone: the interface names the link)", v.v)
		case a.Is4In6():
			b.add(v.key(), "IPv4-mapped IPv6 address (got %q, want the plain IPv4 form %s)", v.v, a.Unmap())
		case !a.IsMulticast():
			b.add(v.key(), "not a multicast address (got %s, want an IPv4 group in 224.0.0.0/4 or an IPv6 one in ff00::/8)", v.v)
		default:
			s.Group = a
		}
	}
	switch v := rs.refresh; {
	case !v.valid():
	case v.v < time.Second || v.v > maxSyncRefresh || v.v%time.Second != 0:
		b.add(v.key(), "out of range (got %s, want whole seconds in 1s..%s: the kernel's sync_refresh_period counts seconds)", v.v, maxSyncRefresh)
	default:
		s.RefreshPeriod = v.v
		s.PreemptHold = v.v + preemptHoldMargin
	}
	switch v := rs.hold; {
	case !v.valid():
	case v.v > maxPreemptHold:
		b.add(v.key(), "too long (got %s, want at most %s)", v.v, maxPreemptHold)
	case v.v > 0 && !rs.refresh.set:
		b.add(v.key(), "needs refresh_period (got %s without it: the master announces a connection once, so a returning director would wait in vain for the ones made while it was away)", v.v)
	default:
		s.PreemptHold = v.v
	}
	if v := rs.maxLen; v.valid() && s.Group.Is6() && v.v > maxSyncLen6 {
		b.add(v.key(), "out of range for an IPv6 group (got %d, want 1..%d: a UDP datagram less the IPv6 and UDP headers)", v.v, maxSyncLen6)
	}
	return s
}

// trackExecs builds the top-level track_exec commands and returns their
// names, each with the key of the table that defines it.
func (b *builder) trackExecs(rc rawConfig, c *Config) map[string]string {
	names := map[string]string{}
	for _, re := range rc.execs {
		b.uniqueName("track_exec", re.key, re.name, "a name that vrrp_instance track_exec tables refer to", names)
		te := TrackExec{
			Name: re.name.or(""), Command: re.command.or(nil),
			Interval: re.interval.or(defaultCheckInterval),
			Rise:     int(re.rise.or(defaultTrackExecRise)), Fall: int(re.fall.or(defaultTrackExecFall)),
			InitFail: re.initFail.or(false),
		}
		switch {
		case !re.command.set:
			b.add(re.key+".command", `missing (want an argv such as ["/usr/local/bin/check", "arg"])`)
		case re.command.ok && (len(te.Command) == 0 || te.Command[0] == ""):
			b.add(re.command.key(), `empty command (want an argv such as ["/usr/local/bin/check", "arg"])`)
		}
		if v := re.interval; v.valid() && v.v < minCheckInterval {
			b.add(v.key(), "too short (got %s, want at least %s)", v.v, minCheckInterval)
		}
		te.Timeout = re.timeout.or(te.Interval)
		if v := re.timeout; v.valid() && (v.v <= 0 || v.v > te.Interval) {
			b.add(v.key(), "out of range (got %s, want more than 0s and at most the interval %s)", v.v, te.Interval)
		}
		c.TrackExecs = append(c.TrackExecs, te)
	}
	return names
}

// uniqueName checks the name of a table that others refer to by it: a
// vrrp_instance, vrrp_sync_group or track_exec must have one, not empty and
// not used by another table of its kind. first maps each name to the key
// of the table that defined it; references are resolved against it.
func (b *builder) uniqueName(kind, table string, v val[string], want string, first map[string]string) {
	switch prev, dup := first[v.v]; {
	case !v.set:
		b.add(table+".name", "missing (want %s)", want)
	case !v.ok:
		// The wrong type, reported as such when it was read.
	case v.v == "":
		b.add(v.key(), `must not be empty (got "")`)
	case dup:
		b.add(v.key(), "duplicate %s name %q (first used by %s at line %d)", kind, v.v, prev, b.lines.line(prev))
	default:
		first[v.v] = table
	}
}

func known(names map[string]string, n string) bool {
	_, ok := names[n]
	return ok
}

func (b *builder) ifname(key, n string) {
	switch {
	case n == "":
		b.add(key, `must not be empty (got "")`)
	case len(n) > maxInterfaceNameLength:
		b.add(key, "too long for an interface name (got %d bytes, want at most %d)", len(n), maxInterfaceNameLength)
	case strings.ContainsAny(n, "/ \t\n:"):
		b.add(key, "invalid interface name (got %q)", n)
	}
}

// parseVIPPrefix parses "IP" or "IP/prefix"; the prefix is the VIP's subnet
// on the interface, as keepalived's virtual_ipaddress takes it.
func parseVIPPrefix(s string) (netip.Prefix, string) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Sprintf(`invalid VIP (got %q, want "IP" or "IP/prefix" such as "192.0.2.10/24")`, s)
		}
		if msg := ipProblem(a, s); msg != "" {
			return netip.Prefix{}, msg
		}
		return netip.PrefixFrom(a, a.BitLen()), ""
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf(`invalid VIP (got %q, want "IP" or "IP/prefix" such as "192.0.2.10/24")`, s)
	}
	if msg := ipProblem(p.Addr(), s); msg != "" {
		return netip.Prefix{}, msg
	}
	return p, ""
}
