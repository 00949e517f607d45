package conf

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// val is one decoded value with what Parse needs to validate and merge it.
type val[T any] struct {
	set bool // the key is present in the file
	ok  bool // its value has the right type and is valid on its own
	v   T    // the value, when ok
	// parent and name are the key path where it was set, joined only
	// when an error names it: 90,000 key paths built for a
	// 10,000-real-server file were a tenth of its parsing.
	parent, name string
}

// key is the key path where v was set (parent alone when name is "":
// an array's element, parent its indexed path).
func (v val[T]) key() string {
	if v.name == "" {
		return v.parent
	}
	return joinKey(v.parent, v.name)
}

// valid reports whether the key is present with a usable value.
func (v val[T]) valid() bool { return v.set && v.ok }

// or returns the value when valid, else def.
func (v val[T]) or(def T) T {
	if v.valid() {
		return v.v
	}
	return def
}

// table is a decoded TOML table and its key path.
type table struct {
	key string
	m   map[string]any
}

// reader takes typed values out of the generic tree BurntSushi/toml decodes
// to. Decoding into map[string]any never fails on a type, which lets Parse
// report every wrong type at once, each with its key and line.
type reader struct {
	*errorList
}

// known reports keys of t that are not in names, suggesting the closest
// known name when there is a plausible one.
func (r *reader) known(t table, names ...string) {
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.Contains(names, k) {
			continue
		}
		if s := closest(k, names); s != "" {
			r.add(joinKey(t.key, k), "unknown key (did you mean %q?)", s)
		} else {
			r.add(joinKey(t.key, k), "unknown key (want one of %s)", strings.Join(names, ", "))
		}
	}
}

// closest returns the name within edit distance 2 of k, if any.
func closest(k string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(k, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names a decoded value's TOML type, with the value for scalars.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 60 {
			v = v[:60] + "..."
		}
		return "string " + strconv.Quote(v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return "float " + strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case time.Time:
		return "datetime"
	case map[string]any:
		return "table"
	case []map[string]any:
		return "array of tables"
	case []any:
		return "array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func (r *reader) wrongType(key string, v any, want string) {
	r.add(key, "wrong type (got %s, want %s)", describe(v), want)
}

func (r *reader) str(t table, name string) val[string] { return r.stringIn(t, name, false) }

// secret reads a string that must not be shown: an error names the
// value's type alone, since an operator who wrote the password as a
// number (auth_pass = 12345678) would otherwise find it in `lvsha check`,
// the daemon's log and `lvsha status`.
func (r *reader) secret(t table, name string) val[string] { return r.stringIn(t, name, true) }

// stringIn reads t's string name; a value of another type is an error
// that shows the value, unless secret.
func (r *reader) stringIn(t table, name string, secret bool) val[string] {
	out := val[string]{parent: t.key, name: name}
	raw, ok := t.m[name]
	if !ok {
		return out
	}
	s, ok := raw.(string)
	switch {
	case ok:
	case secret:
		kind, _, _ := strings.Cut(describe(raw), " ")
		r.add(out.key(), "wrong type (got %s, not shown: a secret; want string)", kind)
	default:
		r.wrongType(out.key(), raw, "string")
	}
	out.set, out.ok, out.v = true, ok, s
	return out
}

// enum reads a string that must be one of allowed; what names it in errors.
func (r *reader) enum(t table, name, what string, allowed []string) val[string] {
	v := r.str(t, name)
	if v.valid() && !slices.Contains(allowed, v.v) {
		r.add(v.key(), "unknown %s (got %q, want one of %s)", what, v.v, strings.Join(allowed, ", "))
		v.ok = false
	}
	return v
}

// integer reads an integer in lo..hi.
func (r *reader) integer(t table, name string, lo, hi int64) val[int64] {
	raw, ok := t.m[name]
	if !ok {
		return val[int64]{parent: t.key, name: name}
	}
	return r.intValue(t.key, name, raw, lo, hi)
}

// intValue reads raw, the value at key path parent.name (name may be an
// index, "[2]").
func (r *reader) intValue(parent, name string, raw any, lo, hi int64) val[int64] {
	out := val[int64]{set: true, parent: parent, name: name}
	n, ok := raw.(int64)
	switch {
	case !ok:
		r.wrongType(out.key(), raw, "integer")
	case n < lo || n > hi:
		r.add(out.key(), "out of range (got %d, want %d..%d)", n, lo, hi)
		ok = false
	}
	out.ok, out.v = ok, n
	return out
}

func (r *reader) boolean(t table, name string) val[bool] {
	out := val[bool]{parent: t.key, name: name}
	raw, ok := t.m[name]
	if !ok {
		return out
	}
	b, ok := raw.(bool)
	if !ok {
		r.wrongType(out.key(), raw, "boolean")
	}
	out.set, out.ok, out.v = true, ok, b
	return out
}

// duration reads a non-negative Go duration string such as "1.5s". Bare
// numbers are refused: their unit would be a guess.
func (r *reader) duration(t table, name string) val[time.Duration] {
	out := val[time.Duration]{parent: t.key, name: name}
	raw, ok := t.m[name]
	if !ok {
		return out
	}
	key := out.key()
	out.set = true
	s, ok := raw.(string)
	if !ok {
		r.wrongType(key, raw, `duration string such as "1s" or "500ms"`)
		return out
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		r.add(key, `invalid duration (got %q, want a duration such as "1s" or "500ms")`, s)
	case d < 0:
		r.add(key, "must not be negative (got %s, want >= 0s)", d)
	default:
		out.ok, out.v = true, d
	}
	return out
}

// strs reads an array of strings.
func (r *reader) strs(t table, name string) val[[]string] {
	out := val[[]string]{parent: t.key, name: name}
	raw, ok := t.m[name]
	if !ok {
		return out
	}
	key := out.key()
	out.set = true
	arr, ok := raw.([]any)
	if !ok {
		r.wrongType(key, raw, "array of strings")
		return out
	}
	out.ok = true
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			r.wrongType(indexKey(key, i), e, "string")
			out.ok = false
		}
		out.v = append(out.v, s)
	}
	return out
}

// statuses reads HTTP status codes: integers, or "LO-HI" strings for
// inclusive ranges such as keepalived's default "200-299".
func (r *reader) statuses(t table, name string) val[[]int] {
	out := val[[]int]{parent: t.key, name: name}
	raw, ok := t.m[name]
	if !ok {
		return out
	}
	key := out.key()
	out.set = true
	arr, ok := raw.([]any)
	if !ok {
		r.wrongType(key, raw, `array of status codes (integers or "LO-HI" ranges)`)
		return out
	}
	out.ok = true
	for i, e := range arr {
		ekey := indexKey(key, i)
		s, isStr := e.(string)
		if !isStr {
			n := r.intValue(ekey, "", e, minHTTPStatus, maxHTTPStatus)
			out.ok = out.ok && n.ok
			out.v = append(out.v, int(n.v))
			continue
		}
		lo, hi, found := strings.Cut(s, "-")
		a, errA := strconv.Atoi(strings.TrimSpace(lo))
		b, errB := strconv.Atoi(strings.TrimSpace(hi))
		if !found || errA != nil || errB != nil || a < minHTTPStatus || b > maxHTTPStatus || a > b {
			r.add(ekey, `invalid status range (got %q, want "LO-HI" with %d <= LO <= HI <= %d, e.g. "200-299")`, s, minHTTPStatus, maxHTTPStatus)
			out.ok = false
			continue
		}
		for c := a; c <= b; c++ {
			out.v = append(out.v, c)
		}
	}
	return out
}

// subtable reads a table (a [header] table or an inline one).
func (r *reader) subtable(t table, name string) (table, bool) {
	key := joinKey(t.key, name)
	raw, ok := t.m[name]
	if !ok {
		return table{key: key}, false
	}
	m, ok := raw.(map[string]any)
	if !ok {
		r.wrongType(key, raw, "table")
	}
	return table{key: key, m: m}, ok
}

// tables reads an array of tables, written either as [[name]] sections or
// as an inline array of inline tables.
func (r *reader) tables(t table, name string) []table {
	key := joinKey(t.key, name)
	raw, ok := t.m[name]
	if !ok {
		return nil
	}
	var out []table
	switch arr := raw.(type) {
	case []map[string]any:
		if len(arr) > 0 {
			out = make([]table, 0, len(arr))
		}
		for i, m := range arr {
			out = append(out, table{key: indexKey(key, i), m: m})
		}
	case []any:
		for i, e := range arr {
			m, ok := e.(map[string]any)
			if !ok {
				r.wrongType(indexKey(key, i), e, "table")
				continue
			}
			out = append(out, table{key: indexKey(key, i), m: m})
		}
	case map[string]any:
		h := headerName(key)
		r.add(key, "wrong type (got table, want array of tables: write [[%s]], not [%s])", h, h)
	default:
		r.wrongType(key, raw, "array of tables")
	}
	return out
}

// The raw structs hold what the file says, before defaults and cross-field
// validation.

type rawConfig struct {
	director rawDirector
	metrics  val[string] // metrics.listen
	vss      []rawVirtualServer
	vrrps    []rawVRRP
	groups   []rawSyncGroup
	execs    []rawTrackExec
	cluster  *rawCluster // nil when the file has no [cluster] table
}

type rawTrackExec struct {
	key               string
	name              val[string]
	command           val[[]string]
	interval, timeout val[time.Duration]
	rise, fall        val[int64]
	initFail          val[bool]
}

type rawVRRP struct {
	key                                    string
	name, iface, unicastSrc, holder, auth  val[string]
	routerID, priority, version, garp      val[int64]
	advert, preemptDelay, refresh, timeout val[time.Duration]
	garpInterval                           val[time.Duration]
	preempt, accept, trackOwn              val[bool]
	peers, vips, trackIfaces               val[[]string]
	notifyMaster, notifyBackup             val[[]string]
	notifyFault, notifyStop, notifyAny     val[[]string]
	trackVS                                []rawTrackRef
	trackExec                              []rawTrackRef
	trackIfaceWeights                      []rawTrackRef
	lvsSync                                *rawLVSSync // nil when absent
	bfd                                    rawBFD
	splitBrain                             val[string]
}

// rawBFD is an instance's "bfd": false, true, or a table.
type rawBFD struct {
	set, off   bool // present; false
	key        string
	interval   val[time.Duration]
	multiplier val[int64]
}

// rawLVSSync is an instance's lvs_sync table.
type rawLVSSync struct {
	key                       string
	iface, group              val[string]
	syncID, maxLen, port, ttl val[int64]
	refresh, hold             val[time.Duration]
}

// rawTrackRef is one entry of an instance's track_virtual_server,
// track_interface or track_exec array: the name of what it tracks and the
// weight.
type rawTrackRef struct {
	key    string
	name   val[string]
	weight val[int64]
}

type rawSyncGroup struct {
	key       string
	name      val[string]
	instances val[[]string]
}

type rawDirector struct {
	name, controlSocket, stateFile val[string]
	controlSocketGroup             val[string]
	resync                         val[time.Duration]
	maxProcs, rtPriority, nice     val[int64]
}

type rawVirtualServer struct {
	key                                        string
	name, address, family, protocol, scheduler val[string]
	forwarding, onDown, sorryServer            val[string]
	fwmark, persistenceNetmask, sorryWeight    val[int64]
	quorum, hysteresis                         val[int64]
	schedulerFlags                             val[[]string]
	notifyQuorumUp, notifyQuorumDown           val[[]string]
	persistence                                val[time.Duration]
	onePacket, sorryInhibit                    val[bool]
	consensus                                  val[string]
	check                                      *rawCheck
	realServers                                []rawRealServer
}

type rawRealServer struct {
	key                  string
	address, forwarding  val[string]
	onDown               val[string]
	notifyUp, notifyDown val[[]string]
	weight, upper, lower val[int64]
	check                *rawCheck
}

type rawURL struct {
	key                         string
	path, body, regexp, bodyMD5 val[string]
	status                      val[[]int]
}

type rawCheck struct {
	key                                   string
	typ, method, path, host, body, regexp val[string]
	sni, connectAddress, bodyMD5          val[string]
	dnsType, dnsName, heloName            val[string]
	payloadHex, replyHex                  val[string]
	requireReply                          val[bool]
	urls                                  *[]rawURL // nil when absent
	interval, timeout, retryInterval      val[time.Duration]
	rise, fall, connectPort               val[int64]
	status                                val[[]int]
	tlsVerify, startDown, dynamicWeight   val[bool]
	command                               val[[]string]
}

func (r *reader) config(root map[string]any) rawConfig {
	t := table{m: root}
	r.known(t, "director", "metrics", "cluster", "virtual_server", "vrrp_instance", "vrrp_sync_group", "track_exec")
	var rc rawConfig
	if d, ok := r.subtable(t, "director"); ok {
		r.known(d, "name", "control_socket", "control_socket_group", "state_file", "resync_interval", "max_procs", "rt_priority", "nice")
		rc.director = rawDirector{
			name:               r.str(d, "name"),
			controlSocket:      r.str(d, "control_socket"),
			controlSocketGroup: r.str(d, "control_socket_group"),
			stateFile:          r.str(d, "state_file"),
			resync:             r.duration(d, "resync_interval"),
			maxProcs:           r.integer(d, "max_procs", 0, 1024),
			rtPriority:         r.integer(d, "rt_priority", 0, 99),
			nice:               r.integer(d, "nice", -20, 19),
		}
	}
	if m, ok := r.subtable(t, "metrics"); ok {
		r.known(m, "listen")
		rc.metrics = r.str(m, "listen")
	}
	if ct, ok := r.subtable(t, "cluster"); ok {
		rc.cluster = r.cluster(ct)
	}
	for _, vt := range r.tables(t, "virtual_server") {
		rc.vss = append(rc.vss, r.virtualServer(vt))
	}
	for _, vt := range r.tables(t, "vrrp_instance") {
		rc.vrrps = append(rc.vrrps, r.vrrpInstance(vt))
	}
	for _, et := range r.tables(t, "track_exec") {
		r.known(et, "name", "command", "interval", "timeout", "rise", "fall", "init_fail")
		rc.execs = append(rc.execs, rawTrackExec{
			key: et.key, name: r.str(et, "name"), command: r.strs(et, "command"),
			interval: r.duration(et, "interval"), timeout: r.duration(et, "timeout"),
			rise: r.integer(et, "rise", 1, maxRiseFall), fall: r.integer(et, "fall", 1, maxRiseFall),
			initFail: r.boolean(et, "init_fail"),
		})
	}
	for _, gt := range r.tables(t, "vrrp_sync_group") {
		r.known(gt, "name", "instances")
		rc.groups = append(rc.groups, rawSyncGroup{key: gt.key, name: r.str(gt, "name"), instances: r.strs(gt, "instances")})
	}
	return rc
}

func (r *reader) vrrpInstance(t table) rawVRRP {
	r.known(t, "name", "interface", "router_id", "priority", "version", "advert_interval",
		"preempt", "preempt_delay", "accept", "unicast_src", "unicast_peers", "virtual_ips",
		"vip_holder", "garp_repeat", "garp_interval", "garp_refresh", "track_interfaces", "track_interface", "track_own_interface", "track_virtual_server", "track_exec",
		"notify_master", "notify_backup", "notify_fault", "notify_stop", "notify", "notify_timeout",
		"auth_pass", "lvs_sync", "bfd", "split_brain")
	v := rawVRRP{
		key:          t.key,
		name:         r.str(t, "name"),
		iface:        r.str(t, "interface"),
		routerID:     r.integer(t, "router_id", 1, 255),
		priority:     r.integer(t, "priority", 1, 255),
		version:      r.integer(t, "version", 2, 3),
		advert:       r.duration(t, "advert_interval"),
		preempt:      r.boolean(t, "preempt"),
		preemptDelay: r.duration(t, "preempt_delay"),
		accept:       r.boolean(t, "accept"),
		unicastSrc:   r.str(t, "unicast_src"),
		peers:        r.strs(t, "unicast_peers"),
		vips:         r.strs(t, "virtual_ips"),
		holder:       r.enum(t, "vip_holder", "VIP holder", vipHolders()),
		garp:         r.integer(t, "garp_repeat", 1, 100),
		refresh:      r.duration(t, "garp_refresh"),
		garpInterval: r.duration(t, "garp_interval"),
		trackIfaces:  r.strs(t, "track_interfaces"),
		trackOwn:     r.boolean(t, "track_own_interface"),
		notifyMaster: r.strs(t, "notify_master"),
		notifyBackup: r.strs(t, "notify_backup"),
		notifyFault:  r.strs(t, "notify_fault"),
		notifyStop:   r.strs(t, "notify_stop"),
		notifyAny:    r.strs(t, "notify"),
		timeout:      r.duration(t, "notify_timeout"),
		auth:         r.secret(t, "auth_pass"),
		splitBrain:   r.enum(t, "split_brain", "split_brain action", splitBrainActions()),
	}
	for _, tt := range r.tables(t, "track_virtual_server") {
		r.known(tt, "name", "weight")
		v.trackVS = append(v.trackVS, rawTrackRef{key: tt.key, name: r.str(tt, "name"), weight: r.integer(tt, "weight", 1, 254)})
	}
	for _, tt := range r.tables(t, "track_interface") {
		r.known(tt, "name", "weight")
		v.trackIfaceWeights = append(v.trackIfaceWeights, rawTrackRef{key: tt.key, name: r.str(tt, "name"), weight: r.integer(tt, "weight", 1, 254)})
	}
	for _, tt := range r.tables(t, "track_exec") {
		r.known(tt, "name", "weight")
		v.trackExec = append(v.trackExec, rawTrackRef{key: tt.key, name: r.str(tt, "name"), weight: r.integer(tt, "weight", 0, 254)})
	}
	v.bfd = r.bfd(t)
	if st, ok := r.subtable(t, "lvs_sync"); ok {
		r.known(st, "interface", "sync_id", "max_len", "group", "port", "ttl", "refresh_period", "preempt_hold")
		v.lvsSync = &rawLVSSync{
			key:     st.key,
			iface:   r.str(st, "interface"),
			syncID:  r.integer(st, "sync_id", 0, 255),
			maxLen:  r.integer(st, "max_len", 1, maxSyncLen4),
			group:   r.str(st, "group"),
			port:    r.integer(st, "port", 1, math.MaxUint16),
			ttl:     r.integer(st, "ttl", 1, 255),
			refresh: r.duration(st, "refresh_period"),
			hold:    r.duration(st, "preempt_hold"),
		}
	}
	return v
}

// bfd reads an instance's "bfd": false (off), true (the defaults) or a
// table of parameters.
func (r *reader) bfd(t table) rawBFD {
	key := joinKey(t.key, "bfd")
	out := rawBFD{key: key}
	raw, ok := t.m["bfd"]
	if !ok {
		return out
	}
	out.set = true
	switch v := raw.(type) {
	case bool:
		out.off = !v
	case map[string]any:
		bt := table{key: key, m: v}
		r.known(bt, "interval", "multiplier")
		out.interval = r.duration(bt, "interval")
		out.multiplier = r.integer(bt, "multiplier", minBFDMultiplier, 255)
	default:
		r.wrongType(key, raw, `false, true or a table such as { interval = "10ms", multiplier = 5 }`)
	}
	return out
}

func (r *reader) virtualServer(t table) rawVirtualServer {
	r.known(t, "name", "address", "fwmark", "family", "protocol", "scheduler",
		"scheduler_flags", "forwarding", "persistence", "persistence_netmask",
		"one_packet", "on_down", "sorry_server", "sorry_weight", "sorry_inhibit", "quorum",
		"hysteresis", "notify_quorum_up", "notify_quorum_down", "health_consensus", "check", "real_server")
	vs := rawVirtualServer{
		key:                t.key,
		name:               r.str(t, "name"),
		address:            r.str(t, "address"),
		fwmark:             r.integer(t, "fwmark", 1, math.MaxUint32),
		family:             r.enum(t, "family", "family", families()),
		protocol:           r.enum(t, "protocol", "protocol", protocols()),
		scheduler:          r.enum(t, "scheduler", "scheduler", Schedulers()),
		schedulerFlags:     r.strs(t, "scheduler_flags"),
		forwarding:         r.enum(t, "forwarding", "forwarding method", forwardings()),
		persistence:        r.duration(t, "persistence"),
		persistenceNetmask: r.integer(t, "persistence_netmask", 1, 128),
		onePacket:          r.boolean(t, "one_packet"),
		onDown:             r.enum(t, "on_down", "on_down action", onDowns()),
		sorryServer:        r.str(t, "sorry_server"),
		sorryWeight:        r.integer(t, "sorry_weight", 0, maxWeight),
		sorryInhibit:       r.boolean(t, "sorry_inhibit"),
		quorum:             r.integer(t, "quorum", 0, math.MaxInt32),
		hysteresis:         r.integer(t, "hysteresis", 0, math.MaxInt32),
		notifyQuorumUp:     r.strs(t, "notify_quorum_up"),
		notifyQuorumDown:   r.strs(t, "notify_quorum_down"),
		consensus:          r.enum(t, "health_consensus", "health_consensus", consensusModes()),
	}
	if ct, ok := r.subtable(t, "check"); ok {
		vs.check = r.check(ct)
	}
	// Sized up front: a rawRealServer is some 400 bytes, and growing the
	// slice by appending copied 10,000 of them twice over (issue #17).
	rts := r.tables(t, "real_server")
	if len(rts) > 0 {
		vs.realServers = make([]rawRealServer, 0, len(rts))
	}
	for _, rt := range rts {
		vs.realServers = append(vs.realServers, r.realServer(rt))
	}
	return vs
}

func (r *reader) realServer(t table) rawRealServer {
	r.known(t, "address", "weight", "forwarding", "on_down", "upper_threshold", "lower_threshold", "notify_up", "notify_down", "check")
	rs := rawRealServer{
		key:        t.key,
		address:    r.str(t, "address"),
		weight:     r.integer(t, "weight", 0, maxWeight),
		forwarding: r.enum(t, "forwarding", "forwarding method", forwardings()),
		onDown:     r.enum(t, "on_down", "on_down", onDowns()),
		upper:      r.integer(t, "upper_threshold", 0, math.MaxUint32),
		lower:      r.integer(t, "lower_threshold", 0, math.MaxUint32),
		notifyUp:   r.strs(t, "notify_up"),
		notifyDown: r.strs(t, "notify_down"),
	}
	if ct, ok := r.subtable(t, "check"); ok {
		rs.check = r.check(ct)
	}
	return rs
}

func (r *reader) check(t table) *rawCheck {
	r.known(t, "type", "interval", "retry_interval", "timeout", "rise", "fall", "start_down", "connect_address",
		"connect_port", "method", "path", "host", "status", "body", "body_regexp", "body_md5",
		"tls_verify", "sni", "dns_type", "dns_name", "helo_name", "payload_hex", "reply_hex", "require_reply", "command", "dynamic_weight", "url")
	return &rawCheck{
		key:            t.key,
		typ:            r.enum(t, "type", "check type", checkTypes()),
		interval:       r.duration(t, "interval"),
		retryInterval:  r.duration(t, "retry_interval"),
		startDown:      r.boolean(t, "start_down"),
		timeout:        r.duration(t, "timeout"),
		rise:           r.integer(t, "rise", 1, maxRiseFall),
		fall:           r.integer(t, "fall", 1, maxRiseFall),
		connectAddress: r.str(t, "connect_address"),
		connectPort:    r.integer(t, "connect_port", 1, math.MaxUint16),
		method:         r.str(t, "method"),
		path:           r.str(t, "path"),
		host:           r.str(t, "host"),
		status:         r.statuses(t, "status"),
		body:           r.str(t, "body"),
		regexp:         r.str(t, "body_regexp"),
		bodyMD5:        r.str(t, "body_md5"),
		tlsVerify:      r.boolean(t, "tls_verify"),
		sni:            r.str(t, "sni"),
		command:        r.strs(t, "command"),
		dnsType:        r.str(t, "dns_type"),
		dnsName:        r.str(t, "dns_name"),
		heloName:       r.str(t, "helo_name"),
		payloadHex:     r.str(t, "payload_hex"),
		replyHex:       r.str(t, "reply_hex"),
		requireReply:   r.boolean(t, "require_reply"),
		dynamicWeight:  r.boolean(t, "dynamic_weight"),
		urls:           r.urls(t),
	}
}

// urls reads a check's "url" array of tables; nil when absent.
func (r *reader) urls(t table) *[]rawURL {
	if _, ok := t.m["url"]; !ok {
		return nil
	}
	out := []rawURL{}
	for _, ut := range r.tables(t, "url") {
		r.known(ut, "path", "status", "body", "body_regexp", "body_md5")
		out = append(out, rawURL{key: ut.key, path: r.str(ut, "path"), status: r.statuses(ut, "status"),
			body: r.str(ut, "body"), regexp: r.str(ut, "body_regexp"), bodyMD5: r.str(ut, "body_md5")})
	}
	return &out
}

// headerName turns a key path into the dotted name a TOML table header uses,
// dropping array indices.
func headerName(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		if key[i] == '[' {
			if j := strings.IndexByte(key[i:], ']'); j > 0 && isDigits(key[i+1:i+j]) {
				i += j
				continue
			}
		}
		b.WriteByte(key[i])
	}
	return b.String()
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
