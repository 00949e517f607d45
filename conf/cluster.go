package conf

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// Cluster joins this director to the other directors of its site over
// gossip (hashicorp/memberlist): they share what each sees of the real
// servers and of the VRRP instances, and notice configs that drifted
// apart and two masters for one instance. Every duration and count holds
// its effective value after Parse; Key is filled in by Load.
type Cluster struct {
	// BindAddress and BindPort are where gossip listens, UDP and TCP
	// (keys "bind_address", "bind_port"; default 0.0.0.0 and 7946,
	// memberlist's port).
	BindAddress netip.Addr
	BindPort    int
	// AdvertiseAddress and AdvertisePort are what the other directors
	// reach this one at (keys "advertise_address", "advertise_port";
	// default: the bind address when it is a specific one, else the
	// address memberlist picks, the first private IPv4 address; the bind
	// port).
	AdvertiseAddress netip.Addr
	AdvertisePort    int
	// Seeds are the other directors' gossip addresses, joined at start
	// and again every RejoinInterval while one is not a live member, so
	// that a partition heals (key "seeds": "IP" or "IP:port", the port
	// defaulting to the bind port; this director's own address may be
	// listed, so every director can share one list).
	Seeds []netip.AddrPort
	// KeyFile holds the 32-byte AES-256-GCM key every gossip message is
	// encrypted and authenticated with, used as given (key "key_file";
	// required: a cluster never gossips in plaintext). Load reads it into
	// Key; a missing, unreadable or wrongly sized file fails the load.
	KeyFile string
	Key     []byte
	// GossipInterval is how often changes are gossiped to GossipNodes
	// random directors (keys "gossip_interval", "gossip_nodes"; default
	// 100ms and 3: with 2 to 5 directors nearly every one hears every
	// change in the first round, memberlist's LAN default is 200ms).
	GossipInterval time.Duration
	GossipNodes    int
	// ProbeInterval and ProbeTimeout pace the failure detector; a
	// director that misses a probe is suspected, and declared dead when
	// no one refutes it within SuspicionMult probe intervals (keys
	// "probe_interval", "probe_timeout", "suspicion_mult"; default 500ms,
	// 200ms and 4: about 2 s to declare a director dead on a LAN where a
	// probe's round trip takes well under a millisecond).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// PushPullInterval is how often a director swaps its full state with
	// a random other, repairing whatever gossip lost (key
	// "push_pull_interval"; default 10s: 70 kB per swap at 10,000 real
	// servers).
	PushPullInterval time.Duration
	// RejoinInterval is how often seeds that are not live members are
	// joined again (key "rejoin_interval"; default 10s). memberlist stops
	// talking to directors it declared dead, so without it a healed
	// partition stays two clusters.
	RejoinInterval time.Duration
}

// ClusterKeySize is the size of a cluster key: AES-256.
const ClusterKeySize = 32

const (
	defaultClusterPort     = 7946
	defaultGossipInterval  = 100 * time.Millisecond
	defaultGossipNodes     = 3
	defaultProbeInterval   = 500 * time.Millisecond
	defaultProbeTimeout    = 200 * time.Millisecond
	defaultSuspicionMult   = 4
	defaultPushPull        = 10 * time.Second
	defaultRejoin          = 10 * time.Second
	maxGossipNodes         = 16
	maxSuspicionMult       = 20
	defaultConsensus       = "local"
	defaultSplitBrain      = "report"
	minClusterIntervalUnit = time.Millisecond
)

func consensusModes() []string    { return []string{"local", "any", "quorum"} }
func splitBrainActions() []string { return []string{"report", "resolve"} }

type rawCluster struct {
	key                           string
	bindAddress, advertiseAddress val[string]
	keyFile                       val[string]
	bindPort, advertisePort       val[int64]
	gossipNodes, suspicionMult    val[int64]
	seeds                         val[[]string]
	gossip, probe, probeTimeout   val[time.Duration]
	pushPull, rejoin              val[time.Duration]
}

func (r *reader) cluster(t table) *rawCluster {
	r.known(t, "bind_address", "bind_port", "advertise_address", "advertise_port", "seeds", "key_file",
		"gossip_interval", "gossip_nodes", "probe_interval", "probe_timeout", "suspicion_mult",
		"push_pull_interval", "rejoin_interval")
	return &rawCluster{
		key:              t.key,
		bindAddress:      r.str(t, "bind_address"),
		bindPort:         r.integer(t, "bind_port", 1, math.MaxUint16),
		advertiseAddress: r.str(t, "advertise_address"),
		advertisePort:    r.integer(t, "advertise_port", 1, math.MaxUint16),
		seeds:            r.strs(t, "seeds"),
		keyFile:          r.str(t, "key_file"),
		gossip:           r.duration(t, "gossip_interval"),
		gossipNodes:      r.integer(t, "gossip_nodes", 1, maxGossipNodes),
		probe:            r.duration(t, "probe_interval"),
		probeTimeout:     r.duration(t, "probe_timeout"),
		suspicionMult:    r.integer(t, "suspicion_mult", 1, maxSuspicionMult),
		pushPull:         r.duration(t, "push_pull_interval"),
		rejoin:           r.duration(t, "rejoin_interval"),
	}
}

// cluster builds the [cluster] table; nil when the file has none.
func (b *builder) cluster(rc *rawCluster) *Cluster {
	if rc == nil {
		return nil
	}
	c := &Cluster{
		BindAddress:      netip.IPv4Unspecified(),
		BindPort:         int(rc.bindPort.or(defaultClusterPort)),
		KeyFile:          rc.keyFile.or(""),
		GossipInterval:   rc.gossip.or(defaultGossipInterval),
		GossipNodes:      int(rc.gossipNodes.or(defaultGossipNodes)),
		ProbeInterval:    rc.probe.or(defaultProbeInterval),
		ProbeTimeout:     rc.probeTimeout.or(defaultProbeTimeout),
		SuspicionMult:    int(rc.suspicionMult.or(defaultSuspicionMult)),
		PushPullInterval: rc.pushPull.or(defaultPushPull),
		RejoinInterval:   rc.rejoin.or(defaultRejoin),
	}
	c.AdvertisePort = int(rc.advertisePort.or(int64(c.BindPort)))
	addr := func(v val[string]) netip.Addr {
		a, err := netip.ParseAddr(v.v)
		switch {
		case err != nil:
			b.add(v.key(), `invalid IP address (got %q, want an address such as "192.0.2.1"; no host names: gossip starts without DNS)`, v.v)
		case a.Zone() != "":
			b.add(v.key(), "IPv6 zones are not supported (got %q)", v.v)
		case a.Is4In6():
			b.add(v.key(), "IPv4-mapped IPv6 address (got %q, want the plain IPv4 form %s)", v.v, a.Unmap())
		case a.IsMulticast():
			b.add(v.key(), "multicast address (got %s, want a unicast address of this director)", a)
		default:
			return a
		}
		return netip.Addr{}
	}
	if v := rc.bindAddress; v.valid() {
		c.BindAddress = addr(v)
	}
	if v := rc.advertiseAddress; v.valid() {
		if a := addr(v); a.IsValid() && a.IsUnspecified() {
			b.add(v.key(), "unspecified address (got %s, want the address the other directors reach this one at)", a)
		} else {
			c.AdvertiseAddress = a
		}
	} else if c.BindAddress.IsValid() && !c.BindAddress.IsUnspecified() {
		c.AdvertiseAddress = c.BindAddress
	}

	seen := map[netip.AddrPort]string{}
	for i, s := range rc.seeds.or(nil) {
		key := indexKey(rc.seeds.key(), i)
		ap, ok := parseSeed(s, c.BindPort)
		if !ok {
			b.add(key, `invalid seed (got %q, want "IP" or "IP:port" such as "192.0.2.2" or "[2001:db8::2]:7946"; no host names)`, s)
			continue
		}
		if first, dup := seen[ap]; dup {
			b.add(key, "duplicate seed %s (first listed as %s)", ap, first)
			continue
		}
		seen[ap] = key
		c.Seeds = append(c.Seeds, ap)
	}

	switch v := rc.keyFile; {
	case !v.set:
		b.add(rc.key+".key_file", "missing (want the path of a file holding 32 random bytes, e.g. from head -c 32 /dev/urandom: gossip is never sent in plaintext)")
	case v.ok && !filepath.IsAbs(v.v):
		b.add(v.key(), "must be an absolute path (got %q)", v.v)
	}

	for _, d := range []val[time.Duration]{rc.gossip, rc.probe, rc.probeTimeout, rc.pushPull, rc.rejoin} {
		if d.valid() && d.v < minClusterIntervalUnit {
			b.add(d.key(), "too short (got %s, want at least %s)", d.v, minClusterIntervalUnit)
		}
	}
	if v := rc.probeTimeout; (v.valid() || rc.probe.valid()) && c.ProbeTimeout >= c.ProbeInterval {
		key := v.key()
		if !v.set {
			key = rc.probe.key()
		}
		b.add(key, "probe_timeout must be shorter than probe_interval (got probe_timeout %s, probe_interval %s)", c.ProbeTimeout, c.ProbeInterval)
	}
	return c
}

// parseSeed parses "IP" or "IP:port", the port defaulting to port.
func parseSeed(s string, port int) (netip.AddrPort, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// loadClusterKey reads c.Cluster.KeyFile into c.Cluster.Key. A file that
// is missing, unreadable or not exactly ClusterKeySize bytes is an error:
// falling back to plaintext gossip would publish the real servers' health
// and let anyone on the LAN forge it.
func loadClusterKey(c *Config) error {
	cl := c.Cluster
	if cl == nil {
		return nil
	}
	const key = "cluster.key_file"
	fail := func(format string, args ...any) error {
		return errors.Join(&Error{File: c.Source, Line: c.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	data, err := os.ReadFile(cl.KeyFile)
	if err != nil {
		return fail("cannot read the cluster key (%v; want a readable file of %d random bytes, e.g. from head -c %d /dev/urandom)", err, ClusterKeySize, ClusterKeySize)
	}
	if len(data) != ClusterKeySize {
		return fail("wrong size for the cluster key (got %d bytes in %s, want exactly %d, used as given: write it with head -c %d /dev/urandom, no newline, no encoding)",
			len(data), cl.KeyFile, ClusterKeySize, ClusterKeySize)
	}
	cl.Key = data
	return nil
}
