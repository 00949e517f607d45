package conf

import (
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// builder applies defaults and cross-field rules to the raw values, turning
// them into a Config. It records problems instead of stopping at the first.
type builder struct {
	*errorList
}

func (b *builder) config(rc rawConfig, source string) *Config {
	c := &Config{Source: source, Director: b.director(rc.director), Metrics: b.metrics(rc.metrics), Cluster: b.cluster(rc.cluster)}

	type first struct {
		i        int
		explicit bool
	}
	names := map[string]first{}
	idents := map[string]int{}
	for i, rv := range rc.vss {
		vs := b.virtualServer(rv)
		c.VirtualServers = append(c.VirtualServers, vs)
		if v := rv.consensus; v.valid() && v.v != "local" && c.Cluster == nil {
			b.add(v.key(), "needs a [cluster] table (got %q, want \"local\" for a director without peers)", v.v)
		}

		ident := ""
		switch {
		case vs.Address.IsValid():
			ident = fmt.Sprintf("%s/%s", vs.Address, vs.Protocol)
		case vs.FWMark != 0 && vs.Family != "":
			ident = fmt.Sprintf("fwmark %d/%s", vs.FWMark, vs.Family)
		}
		if ident != "" {
			if j, dup := idents[ident]; dup {
				key := rv.address.key()
				if vs.FWMark != 0 {
					key = rv.fwmark.key()
				}
				b.add(key, "duplicate virtual server %s (first defined by %s at line %d)",
					ident, rc.vss[j].key, b.lines.line(rc.vss[j].key))
			} else {
				idents[ident] = i
			}
		}

		if vs.Name == "" {
			continue // unknown: its address was invalid, already reported
		}
		explicit := rv.name.set
		f, dup := names[vs.Name]
		switch {
		case !dup:
			names[vs.Name] = first{i, explicit}
		case explicit || f.explicit:
			// Two default names only collide when their addresses or
			// fwmarks do, which is reported above.
			key := rv.key
			if explicit {
				key = rv.name.key()
			}
			b.add(key, "duplicate virtual server name %q (first used by %s at line %d)",
				vs.Name, rc.vss[f.i].key, b.lines.line(rc.vss[f.i].key))
		}
	}
	b.vrrp(rc, c)
	return c
}

func (b *builder) director(rd rawDirector) Director {
	d := Director{
		ControlSocket: rd.controlSocket.or(DefaultControlSocket),
		StateFile:     rd.stateFile.or(DefaultStateFile),
		Resync:        rd.resync.or(defaultResync),
		MaxProcs:      int(rd.maxProcs.or(defaultMaxProcs)),
		RTPriority:    int(rd.rtPriority.or(0)),
		Nice:          int(rd.nice.or(0)),
	}
	if rd.name.valid() {
		if rd.name.v == "" {
			b.add(rd.name.key(), `must not be empty (got "", want a name, or no name key to use the hostname)`)
		}
		d.Name = rd.name.v
	}
	if v := rd.controlSocket; v.valid() {
		switch {
		case !filepath.IsAbs(v.v):
			b.add(v.key(), "must be an absolute path (got %q)", v.v)
		case len(v.v) > maxUnixSocketPath:
			b.add(v.key(), "too long for a unix socket path (got %d bytes, want at most %d)", len(v.v), maxUnixSocketPath)
		}
	}
	if v := rd.controlSocketGroup; v.valid() {
		if !validGroup(v.v) {
			b.add(v.key(), "invalid group (got %q, want a group name such as \"lvsha-ops\" or a number such as \"4242\")", v.v)
		} else {
			d.ControlSocketGroup = v.v
		}
	}
	if v := rd.stateFile; v.valid() && !filepath.IsAbs(v.v) {
		b.add(v.key(), "must be an absolute path (got %q)", v.v)
	}
	if v := rd.resync; v.valid() && v.v == 0 {
		b.add(v.key(), "must be positive (got 0s, want > 0s)")
	}
	return d
}

// metrics checks metrics.listen: an IP literal (or nothing, for every
// address) and a port, so the listener binds where the file says without
// a name lookup at start.
func (b *builder) metrics(listen val[string]) Metrics {
	if !listen.valid() || listen.v == "" {
		// "" is off, as an absent key is: a template can leave it empty.
		return Metrics{}
	}
	const want = `want "IP:port" such as "127.0.0.1:9650", "[::1]:9650" or ":9650" for every address`
	host, port, err := net.SplitHostPort(listen.v)
	if err != nil {
		b.add(listen.key(), "invalid listen address (got %q, %s)", listen.v, want)
		return Metrics{}
	}
	bad := false
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			b.add(listen.key(), "host must be an IP address, not a name (got %q, %s)", host, want)
			bad = true
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		b.add(listen.key(), "invalid port (got %q, want 1..65535)", port)
		bad = true
	}
	if bad {
		return Metrics{}
	}
	return Metrics{Listen: listen.v}
}

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return "inet"
	}
	return "inet6"
}

func familyWord(family string) string {
	if family == "inet" {
		return "an IPv4"
	}
	return "an IPv6"
}

// ipProblem says what makes a an unusable IPVS address, or "".
func ipProblem(a netip.Addr, s string) string {
	switch {
	case a.Zone() != "":
		return fmt.Sprintf("IPv6 zones are not supported (got %q, want an address without %%zone)", s)
	case a.Is4In6():
		return fmt.Sprintf("IPv4-mapped IPv6 address (got %q, want the plain IPv4 form %s)", s, a.Unmap())
	case a.IsUnspecified():
		return fmt.Sprintf("unspecified address (got %q, want a specific IP)", s)
	case a.IsMulticast():
		return fmt.Sprintf("multicast address (got %q, want a unicast IP)", s)
	}
	return ""
}

// parseVIP parses a virtual server address, which needs a port.
func parseVIP(s string) (netip.AddrPort, string) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		if a, err := netip.ParseAddr(s); err == nil {
			if a.Is4() {
				return ap, fmt.Sprintf("missing port (got %q, want IP:port such as \"%s:80\")", s, a)
			}
			return ap, fmt.Sprintf("missing port (got %q, want [IPv6]:port such as \"[%s]:80\")", s, a)
		}
		return ap, fmt.Sprintf(`invalid address (got %q, want IP:port such as "192.0.2.1:80" or "[2001:db8::1]:80")`, s)
	}
	return ap, ipProblem(ap.Addr(), s)
}

// parseBackend parses a real or sorry server address, whose port is
// optional ("IP" or "IP:port"); the port is then 0.
func parseBackend(s string) (netip.AddrPort, string) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return ap, fmt.Sprintf(`invalid address (got %q, want IP or IP:port such as "192.0.2.10:80" or "[2001:db8::10]:80")`, s)
		}
		ap = netip.AddrPortFrom(a, 0)
	}
	return ap, ipProblem(ap.Addr(), s)
}

// backend validates a real or sorry server address against its virtual
// server: same family, a port when NAT needs one, and no port change with
// DR or TUN, which cannot rewrite ports.
func (b *builder) backend(v val[string], vs *VirtualServer, fwd string) (netip.AddrPort, bool) {
	ap, msg := parseBackend(v.v)
	if msg != "" {
		b.add(v.key(), "%s", msg)
		return ap, false
	}
	if vs.Family != "" && familyOf(ap.Addr()) != vs.Family {
		b.add(v.key(), "address family %s does not match the virtual server's %s (got %q, want %s address)",
			familyOf(ap.Addr()), vs.Family, v.v, familyWord(vs.Family))
		return ap, false
	}
	if !vs.Address.IsValid() || fwd == "" {
		return ap, true
	}
	vport := vs.Address.Port()
	switch {
	case fwd == "nat" && ap.Port() == 0 && vport != 0:
		b.add(v.key(), "missing port (got %q, want IP:port: nat forwarding needs the server's port)", v.v)
		return ap, false
	case fwd != "nat" && ap.Port() != 0 && ap.Port() != vport:
		b.add(v.key(), "%s forwarding cannot change the port (got %d, want %d or no port)", fwd, ap.Port(), vport)
		return ap, false
	case fwd != "nat" && ap.Port() == 0:
		// The server listens on the virtual server's port (DR and TUN
		// cannot rewrite it): that is the port to check and to show.
		ap = netip.AddrPortFrom(ap.Addr(), vport)
	}
	return ap, true
}

func (b *builder) virtualServer(rv rawVirtualServer) VirtualServer {
	vs := VirtualServer{
		Protocol:     rv.protocol.or(defaultProtocol),
		Scheduler:    rv.scheduler.or(defaultScheduler),
		Forwarding:   rv.forwarding.or(defaultForwarding),
		Persistence:  rv.persistence.or(0),
		OnePacket:    rv.onePacket.or(false),
		OnDown:       rv.onDown.or(defaultOnDown),
		SorryWeight:  int(rv.sorryWeight.or(defaultSorryWeight)),
		SorryInhibit: rv.sorryInhibit.or(false),
		Quorum:       int(rv.quorum.or(defaultQuorum)),
		Hysteresis:   int(rv.hysteresis.or(defaultHysteresis)),

		HealthConsensus: rv.consensus.or(defaultConsensus),
	}
	familyBad := rv.family.set && !rv.family.ok
	switch {
	case rv.address.set && rv.fwmark.set:
		b.add(rv.key, "address and fwmark are mutually exclusive (got both, want one)")
	case !rv.address.set && !rv.fwmark.set:
		b.add(rv.key, "missing address or fwmark (got neither, want one)")
	case rv.address.valid():
		ap, msg := parseVIP(rv.address.v)
		if msg != "" {
			b.add(rv.address.key(), "%s", msg)
			break
		}
		vs.Address = ap
		vs.Family = familyOf(ap.Addr())
		if rv.family.valid() && rv.family.v != vs.Family {
			b.add(rv.family.key(), "does not match the address (got %s, want %s for %s)", rv.family.v, vs.Family, ap)
		}
		if p := rv.persistence; ap.Port() == 0 && (!p.set || p.ok) && vs.Persistence == 0 {
			b.add(rv.address.key(), "port 0 (all ports) needs persistence (got persistence 0s, want > 0s)")
		}
	case rv.fwmark.valid() && !familyBad:
		vs.FWMark = uint32(rv.fwmark.v)
		vs.Family = rv.family.or(defaultFamily)
	}

	switch {
	case rv.name.valid():
		if rv.name.v == "" {
			b.add(rv.name.key(), `must not be empty (got "", want a name, or no name key for a default one)`)
		}
		vs.Name = rv.name.v
	case rv.name.set: // wrong type, reported
	case vs.Address.IsValid():
		vs.Name = vs.Address.String()
		if vs.Protocol != defaultProtocol {
			vs.Name += "/" + vs.Protocol
		}
	case vs.FWMark != 0:
		vs.Name = fmt.Sprintf("fwmark:%d", vs.FWMark)
		if vs.Family == "inet6" {
			vs.Name += "/inet6"
		}
	}

	if p := rv.persistence; p.valid() {
		switch {
		case p.v%time.Second != 0:
			b.add(p.key(), "must be a whole number of seconds (got %s)", p.v)
		case p.v/time.Second > math.MaxUint32:
			b.add(p.key(), "too long (got %s, want at most %s)", p.v, time.Duration(math.MaxUint32)*time.Second)
		}
	}

	if f := rv.schedulerFlags; f.valid() {
		known := SchedulerFlagNames()
		for i, flag := range f.v {
			key := indexKey(f.key(), i)
			sched, _, _ := strings.Cut(flag, "-")
			switch {
			case !slices.Contains(known, flag):
				b.add(key, "unknown scheduler flag (got %q, want one of %s)", flag, strings.Join(known, ", "))
			case slices.Index(f.v, flag) < i:
				b.add(key, "scheduler flag %q listed twice", flag)
			case rv.scheduler.set && !rv.scheduler.ok:
			case sched != vs.Scheduler:
				b.add(key, "%s applies only to scheduler %s (got scheduler %s)", flag, sched, vs.Scheduler)
			}
		}
		if len(f.v) > 0 {
			vs.SchedulerFlags = slices.Clone(f.v)
		}
	}

	switch vs.Family {
	case "inet6":
		vs.PersistenceNetmask = defaultPersistenceMask6
	default:
		vs.PersistenceNetmask = defaultPersistenceMask4
	}
	if m := rv.persistenceNetmask; m.valid() {
		vs.PersistenceNetmask = int(m.v)
		if vs.Family == "inet" && m.v > 32 {
			b.add(m.key(), "out of range for inet (got %d, want 1..32)", m.v)
		}
	}

	fwdOK := !rv.forwarding.set || rv.forwarding.ok
	if v := rv.sorryInhibit; v.valid() && !rv.sorryServer.set {
		b.add(v.key(), "needs sorry_server (want a sorry_server to keep at weight 0)")
	}
	if s := rv.sorryServer; s.valid() {
		fwd := ""
		if fwdOK {
			fwd = vs.Forwarding
		}
		if ap, ok := b.backend(s, &vs, fwd); ok {
			vs.SorryServer = ap
		}
	}

	if rv.check != nil {
		vs.Check = b.check(*rv.check)
	}
	vs.NotifyQuorumUp, vs.NotifyQuorumDown = b.hook(rv.notifyQuorumUp), b.hook(rv.notifyQuorumDown)

	// Sized up front, as a file may hold 10,000 real servers (issue #17);
	// an empty list stays nil, as Equal and the tests compare it.
	seen := make(map[netip.AddrPort]string, len(rv.realServers))
	if len(rv.realServers) > 0 {
		vs.RealServers = make([]RealServer, 0, len(rv.realServers))
	}
	for _, rr := range rv.realServers {
		rs := RealServer{
			Weight:         int(rr.weight.or(defaultWeight)),
			Forwarding:     rr.forwarding.or(vs.Forwarding),
			OnDown:         rr.onDown.or(vs.OnDown),
			UpperThreshold: uint32(rr.upper.or(0)),
			LowerThreshold: uint32(rr.lower.or(0)),
			NotifyUp:       b.hook(rr.notifyUp),
			NotifyDown:     b.hook(rr.notifyDown),
		}
		switch {
		case !rr.address.set:
			b.add(rr.key, `missing address (want IP:port such as "192.0.2.10:80")`)
		case rr.address.ok:
			fwd := rs.Forwarding
			if rr.forwarding.set && !rr.forwarding.ok || !rr.forwarding.set && !fwdOK {
				fwd = ""
			}
			ap, ok := b.backend(rr.address, &vs, fwd)
			if !ok {
				break
			}
			rs.Address = ap
			if k, dup := seen[ap]; dup {
				b.add(rr.address.key(), "duplicate real server %s (first defined by %s at line %d)", ap, k, b.lines.line(k))
			} else {
				seen[ap] = rr.key
			}
		}
		if lo := rr.lower; lo.valid() && lo.v > 0 {
			switch up := rr.upper; {
			case !up.set:
				b.add(lo.key(), "needs upper_threshold (got lower_threshold %d, want upper_threshold >= %d too)", lo.v, lo.v)
			case up.ok && up.v > 0 && lo.v > up.v:
				b.add(lo.key(), "must not exceed upper_threshold (got %d, want <= %d)", lo.v, up.v)
			case up.ok && up.v == 0:
				b.add(lo.key(), "needs upper_threshold (got lower_threshold %d with upper_threshold 0, want upper_threshold >= %d)", lo.v, lo.v)
			}
		}
		if rr.check == nil {
			rs.Check = cloneCheck(vs.Check)
		} else {
			rs.Check = b.check(mergeCheck(rv.check, rr.check))
		}
		vs.RealServers = append(vs.RealServers, rs)
	}
	return vs
}

func cloneCheck(c *Check) *Check {
	if c == nil {
		return nil
	}
	cc := *c
	cc.Status = slices.Clone(c.Status)
	cc.Command = slices.Clone(c.Command)
	return &cc
}

func inherit[T any](dst *val[T], src val[T]) {
	if !dst.set {
		*dst = src
	}
}

// url resolves one entry of a check's "url" array.
func (b *builder) url(u rawURL) URL {
	out := URL{Path: u.path.or(""), Status: slices.Clone(u.status.or([]int{defaultHTTPStatus})),
		Body: u.body.or(""), BodyRegexp: u.regexp.or(""), BodyMD5: strings.ToLower(u.bodyMD5.or(""))}
	switch v := u.path; {
	case !v.set:
		b.add(u.key+".path", `missing (want the URL's path, e.g. "/status")`)
	case !v.ok:
	case !strings.HasPrefix(v.v, "/"):
		b.add(v.key(), "must start with / (got %q)", v.v)
	case hasSpaceOrControl(v.v):
		b.add(v.key(), "must not contain spaces or control characters (got %q)", v.v)
	}
	if v := u.status; v.valid() && len(v.v) == 0 {
		b.add(v.key(), "must list at least one status code (got [], want e.g. [200])")
	}
	if v := u.regexp; v.valid() {
		if _, err := regexp.Compile(v.v); err != nil {
			b.add(v.key(), "does not compile (got %q, want a Go regexp): %v", v.v, err)
		}
	}
	if v := u.bodyMD5; v.valid() && !isMD5Hex(v.v) {
		b.add(v.key(), "invalid MD5 digest (got %q, want 32 hexadecimal digits, as md5sum prints)", v.v)
	}
	return out
}

// hook checks an argv key; nil when unset or invalid.
func (b *builder) hook(v val[[]string]) []string {
	if !v.valid() {
		return nil
	}
	if len(v.v) == 0 || v.v[0] == "" {
		b.add(v.key(), `empty command (want an argv such as ["/usr/local/bin/alert", "arg"])`)
		return nil
	}
	return v.v
}

func isMD5Hex(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

func isHTTP(t string) bool { return t == "http" || t == "https" }

// mergeCheck lays a real server's check table over its virtual server's,
// field by field. Fields that only mean something for one check type are
// inherited only when the types agree (http and https share their HTTP
// fields), so switching a real server to another type starts those afresh.
func mergeCheck(base, own *rawCheck) rawCheck {
	m := *own
	if base == nil {
		return m
	}
	inherit(&m.typ, base.typ)
	inherit(&m.interval, base.interval)
	inherit(&m.retryInterval, base.retryInterval)
	inherit(&m.timeout, base.timeout)
	inherit(&m.rise, base.rise)
	inherit(&m.fall, base.fall)
	inherit(&m.startDown, base.startDown)
	inherit(&m.connectAddress, base.connectAddress)
	inherit(&m.connectPort, base.connectPort)

	typesKnown := own.typ.ok && base.typ.ok
	same := !own.typ.set || typesKnown && own.typ.v == base.typ.v
	if same || typesKnown && isHTTP(own.typ.v) && isHTTP(base.typ.v) {
		inherit(&m.method, base.method)
		inherit(&m.path, base.path)
		inherit(&m.host, base.host)
		inherit(&m.status, base.status)
		inherit(&m.body, base.body)
		inherit(&m.regexp, base.regexp)
		inherit(&m.bodyMD5, base.bodyMD5)
		if m.urls == nil {
			m.urls = base.urls
		}
	}
	if same {
		inherit(&m.dnsType, base.dnsType)
		inherit(&m.dnsName, base.dnsName)
		inherit(&m.heloName, base.heloName)
		inherit(&m.payloadHex, base.payloadHex)
		inherit(&m.replyHex, base.replyHex)
		inherit(&m.requireReply, base.requireReply)
		inherit(&m.tlsVerify, base.tlsVerify)
		inherit(&m.sni, base.sni)
		inherit(&m.command, base.command)
		inherit(&m.dynamicWeight, base.dynamicWeight)
	}
	return m
}

// check resolves a (possibly merged) check table into a Check with every
// default applied; nil for type "none" or when the type is unusable.
func (b *builder) check(rc rawCheck) *Check {
	if !rc.typ.set {
		b.add(rc.key, "missing type (want one of %s)", strings.Join(checkTypes(), ", "))
		return nil
	}
	if !rc.typ.ok || rc.typ.v == "none" {
		return nil
	}
	t := rc.typ.v
	c := &Check{
		Type:      t,
		Interval:  rc.interval.or(defaultCheckInterval),
		Rise:      int(rc.rise.or(defaultCheckRise)),
		Fall:      int(rc.fall.or(defaultCheckFall)),
		StartDown: rc.startDown.or(false),
	}
	intervalOK := !rc.interval.set || rc.interval.ok
	if iv := rc.interval; iv.valid() && iv.v < minCheckInterval {
		b.add(iv.key(), "too short (got %s, want at least %s)", iv.v, minCheckInterval)
		intervalOK = false
	}
	c.RetryInterval = rc.retryInterval.or(c.Interval)
	if v := rc.retryInterval; v.valid() && v.v < minCheckInterval {
		b.add(v.key(), "too short (got %s, want at least %s)", v.v, minCheckInterval)
	}
	c.Timeout = rc.timeout.or(c.Interval / defaultTimeoutDivisor)
	if to := rc.timeout; to.valid() {
		iv := rc.interval
		switch {
		case to.v == 0:
			b.add(to.key(), "must be positive (got 0s, want > 0s)")
		case !intervalOK || to.v < c.Interval:
		case iv.set && isUnder(iv.key(), rc.key) && !isUnder(to.key(), rc.key):
			// The real server shortened the interval below an inherited
			// timeout: point at what it changed.
			b.add(iv.key(), "must be longer than the timeout %s set at %s (got %s)", to.v, to.key(), iv.v)
		default:
			b.add(to.key(), "must be shorter than interval (got %s, want less than %s)", to.v, c.Interval)
		}
	}

	if a := rc.connectAddress; a.valid() {
		ip, err := netip.ParseAddr(a.v)
		switch {
		case err != nil:
			b.add(a.key(), "invalid IP address (got %q)", a.v)
		case ip.IsUnspecified() || ip.IsMulticast():
			b.add(a.key(), "not a unicast address (got %q, want a specific IP)", a.v)
		default:
			c.ConnectAddress = ip
		}
	}
	c.ConnectPort = uint16(rc.connectPort.or(0))

	httpT, https, exec := isHTTP(t), t == "https", t == "exec"
	b.only(rc.method.set, rc.method.key(), httpT, "http and https", t)
	b.only(rc.path.set, rc.path.key(), httpT, "http and https", t)
	b.only(rc.host.set, rc.host.key(), httpT, "http and https", t)
	b.only(rc.status.set, rc.status.key(), httpT, "http and https", t)
	b.only(rc.body.set, rc.body.key(), httpT, "http and https", t)
	b.only(rc.regexp.set, rc.regexp.key(), httpT, "http and https", t)
	b.only(rc.bodyMD5.set, rc.bodyMD5.key(), httpT, "http and https", t)
	if rc.urls != nil && !httpT {
		b.add(rc.key+".url", "applies only to http and https checks (got type %s)", t)
	}
	b.only(rc.tlsVerify.set, rc.tlsVerify.key(), https, "https", t)
	b.only(rc.sni.set, rc.sni.key(), https, "https", t)
	b.only(rc.command.set, rc.command.key(), exec, "exec", t)
	b.only(rc.dynamicWeight.set, rc.dynamicWeight.key(), exec, "exec", t)
	if exec {
		c.DynamicWeight = rc.dynamicWeight.or(false)
	}
	b.only(rc.dnsType.set, rc.dnsType.key(), t == "dns", "dns", t)
	b.only(rc.dnsName.set, rc.dnsName.key(), t == "dns", "dns", t)
	b.only(rc.heloName.set, rc.heloName.key(), t == "smtp", "smtp", t)
	b.only(rc.payloadHex.set, rc.payloadHex.key(), t == "udp", "udp", t)
	b.only(rc.replyHex.set, rc.replyHex.key(), t == "udp", "udp", t)
	b.only(rc.requireReply.set, rc.requireReply.key(), t == "udp", "udp", t)
	if t == "udp" {
		c.PayloadHex, c.ReplyHex = strings.ToLower(rc.payloadHex.or("")), strings.ToLower(rc.replyHex.or(""))
		c.RequireReply = rc.requireReply.or(false) || c.ReplyHex != ""
		for _, v := range []val[string]{rc.payloadHex, rc.replyHex} {
			if _, err := hex.DecodeString(v.v); v.valid() && err != nil {
				b.add(v.key(), "invalid hex (got %q, want pairs of hex digits such as \"0d0a\")", v.v)
			}
		}
	}
	if t == "smtp" {
		c.HeloName = rc.heloName.or(defaultHeloName)
		if v := rc.heloName; v.valid() && (v.v == "" || hasSpaceOrControl(v.v)) {
			b.add(v.key(), "invalid HELO name (got %q, want a host name such as \"lb1.example.com\")", v.v)
		}
	}
	if t == "dns" {
		c.DNSType = strings.ToUpper(rc.dnsType.or(defaultDNSType))
		c.DNSName = rc.dnsName.or(defaultDNSName)
		if v := rc.dnsType; v.valid() {
			if _, ok := DNSTypes()[c.DNSType]; !ok {
				names := slices.Sorted(maps.Keys(DNSTypes()))
				b.add(v.key(), "unknown DNS type (got %q, want one of %s)", v.v, strings.Join(names, ", "))
			}
		}
		if v := rc.dnsName; v.valid() && (v.v == "" || len(v.v) > 253 || hasSpaceOrControl(v.v)) {
			b.add(v.key(), "invalid DNS name (got %q, want a domain name such as \"example.com\" or \".\")", v.v)
		}
	}

	if httpT {
		c.Method = rc.method.or(defaultHTTPMethod)
		c.Path = rc.path.or(defaultHTTPPath)
		c.Host = rc.host.or("")
		c.Status = slices.Clone(rc.status.or([]int{defaultHTTPStatus}))
		c.Body = rc.body.or("")
		c.BodyRegexp = rc.regexp.or("")
		c.BodyMD5 = strings.ToLower(rc.bodyMD5.or(""))
		if v := rc.bodyMD5; v.valid() && !isMD5Hex(v.v) {
			b.add(v.key(), "invalid MD5 digest (got %q, want 32 hexadecimal digits, as md5sum prints)", v.v)
		}
		if rc.urls != nil {
			for _, u := range *rc.urls {
				c.URLs = append(c.URLs, b.url(u))
			}
		}
		if v := rc.method; v.valid() && !isToken(v.v) {
			b.add(v.key(), "invalid HTTP method (got %q, want a token such as GET or HEAD)", v.v)
		}
		if v := rc.path; v.valid() {
			switch {
			case !strings.HasPrefix(v.v, "/"):
				b.add(v.key(), "must start with / (got %q)", v.v)
			case hasSpaceOrControl(v.v):
				b.add(v.key(), "must not contain spaces or control characters (got %q)", v.v)
			}
		}
		if v := rc.host; v.valid() && hasSpaceOrControl(v.v) {
			b.add(v.key(), "must not contain spaces or control characters (got %q)", v.v)
		}
		if v := rc.status; v.valid() && len(v.v) == 0 {
			b.add(v.key(), "must list at least one status code (got [], want e.g. [200])")
		}
		if v := rc.regexp; v.valid() {
			if _, err := regexp.Compile(v.v); err != nil {
				b.add(v.key(), "does not compile (got %q, want a Go regexp): %v", v.v, err)
			}
		}
	}
	if https {
		c.TLSVerify = rc.tlsVerify.or(false)
		c.SNI = rc.sni.or(hostOnly(c.Host))
		if v := rc.sni; v.valid() && hasSpaceOrControl(v.v) {
			b.add(v.key(), "must not contain spaces or control characters (got %q)", v.v)
		}
	}
	if exec {
		switch v := rc.command; {
		case !v.set:
			b.add(rc.key, `exec check needs a command (want command = ["/path/to/program", "arg", ...])`)
		case !v.ok:
		case len(v.v) == 0:
			b.add(v.key(), `must not be empty (got [], want ["/path/to/program", "arg", ...])`)
		case v.v[0] == "":
			b.add(indexKey(v.key(), 0), `program must not be empty (got "", want a program path)`)
		default:
			c.Command = slices.Clone(v.v)
		}
	}
	return c
}

// only reports a key set on a check of a type it does not apply to.
func (b *builder) only(set bool, key string, applies bool, types, t string) {
	if set && !applies {
		b.add(key, "applies only to %s checks (got type %s)", types, t)
	}
}

// hostOnly strips a port from a Host header value, for the SNI default.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

func hasSpaceOrControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// isToken reports whether s is an RFC 9110 token, the syntax of a method.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validGroup says whether s can name a group: a number below 2^32-1, or
// a name as useradd(8) accepts one (letters, digits, _, -, . and a final
// $, not starting with a digit or -).
func validGroup(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return n < 1<<32-1
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case (r >= '0' && r <= '9') || r == '-' || r == '.':
			if i == 0 {
				return false
			}
		case r == '$' && i == len(s)-1 && i > 0:
		default:
			return false
		}
	}
	return true
}
