package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/lvsha/lvsha/cluster"
	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// gossip is what the daemon needs of its cluster member (*cluster.Node):
// publish this director's states, read everyone's. Tests use a map-backed
// fake.
type gossip interface {
	Run(ctx context.Context) error
	Changed() <-chan struct{}
	SetDigests(cluster.Digests)
	SetHealth(cluster.RealServer, cluster.Health)
	SetInstance(cluster.Instance)
	Retain(rs func(cluster.RealServer) bool, inst func(string) bool)
	Views(cluster.RealServer) []cluster.Seen
	Directors() []cluster.Director
	Members() []cluster.Director
	// Ping asks a director for an answer now (Node.Ping): nil if its
	// process lives.
	Ping(name string) error
	// GossipErrors counts memberlist's warnings and errors by kind.
	GossipErrors() map[string]uint64
}

// vrrpControl is what the cluster needs of the VRRP instances
// (*group.Group): their states to publish, and a way to have one give
// master up under split_brain = "resolve".
type vrrpControl interface {
	Status() []instance.Status
	Yield(ctx context.Context, name string, to netip.Addr) error
}

// vrrpPoll is how often the instances' states are read for gossip and
// split brains looked for: the advert interval's order, and a read of a
// few fields per instance.
const vrrpPoll = 100 * time.Millisecond

// clusterLink joins the daemon to the cluster: it publishes health and
// VRRP states, applies health_consensus in each sync and reports drift
// and split brains. A nil *clusterLink is a director without [cluster]:
// every method then does what the daemon did before clusters existed.
type clusterLink struct {
	log  *slog.Logger
	node gossip
	self string

	mu         sync.Mutex
	settings   *conf.Cluster                 // as started; a reload cannot change them
	verdicts   map[health.Key]bool           // consensus up, per real server of a non-local virtual server
	drift      string                        // the drift last logged, "" for none
	splits     map[string]cluster.SplitBrain // by instance name
	splitTotal uint64
	family     map[string]bool // instance name → IPv6, from the config
	resolve    map[string]bool // instance name → split_brain = "resolve"
	// pending is when each split brain this director is to resolve by
	// yielding was first seen; yielded is the master each instance gave
	// master up to, until that one is no longer a live master of it.
	// Both are the run loop's alone.
	pending map[string]time.Time
	yielded map[string]cluster.Claim
	// resolveHold is how long a split brain must last before this
	// director yields (resolveHoldFor).
	resolveHold time.Duration
}

// resolveHoldFor is how long a split brain must last before its losing
// master yields: ten gossip intervals, at least a second. Two masters
// for a moment are no split brain: in a handover (a resignation, a
// takeover by BFD, a preemption) the old master's state reaches the
// others a gossip interval or two after the new master's, and yielding
// then would leave the instance with no master. A dead director's claim
// lasts until the failure detector declares it dead, seconds later;
// that is ruled out by asking it (gossip.Ping) before yielding.
func resolveHoldFor(cl *conf.Cluster) time.Duration {
	if cl == nil {
		return time.Second
	}
	return max(time.Second, 10*cl.GossipInterval)
}

// openCluster starts this director's member of the cluster; nil without
// [cluster].
func openCluster(log *slog.Logger, cfg *conf.Config, version string) (*clusterLink, error) {
	if cfg.Cluster == nil {
		return nil, nil
	}
	n, err := cluster.New(cluster.OptionsFrom(cfg, version, log))
	if err != nil {
		return nil, err
	}
	c := newClusterLink(log, n, cfg)
	log.Info("cluster member started", "op", "cluster", "director", cfg.Director.Name, "addr", n.Addr(), "seeds", len(cfg.Cluster.Seeds))
	return c, nil
}

func newClusterLink(log *slog.Logger, node gossip, cfg *conf.Config) *clusterLink {
	c := &clusterLink{log: log, node: node, self: cfg.Director.Name, settings: cfg.Cluster,
		verdicts: map[health.Key]bool{}, splits: map[string]cluster.SplitBrain{},
		pending: map[string]time.Time{}, yielded: map[string]cluster.Claim{}, resolveHold: resolveHoldFor(cfg.Cluster)}
	c.configure(cfg)
	return c
}

// configure publishes cfg's digests and forgets what it no longer has.
func (c *clusterLink) configure(cfg *conf.Config) {
	rss := map[cluster.RealServer]bool{}
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			rss[cluster.RealServer{VS: vs.Name, RS: rs.Address}] = true
		}
	}
	family, resolve := map[string]bool{}, map[string]bool{}
	for _, in := range cfg.VRRPInstances {
		family[in.Name] = len(in.VirtualIPs) > 0 && in.VirtualIPs[0].Addr().Is6()
		resolve[in.Name] = in.SplitBrain == "resolve"
	}
	c.mu.Lock()
	c.family, c.resolve = family, resolve
	c.mu.Unlock()
	c.node.Retain(func(k cluster.RealServer) bool { return rss[k] }, func(n string) bool { _, ok := family[n]; return ok })
	c.node.SetDigests(cluster.DigestsOf(cfg.Digests()))
}

// reload takes a reloaded configuration. Gossip settings stay as started.
func (c *clusterLink) reload(cfg *conf.Config) {
	if c == nil {
		return
	}
	if !reflect.DeepEqual(c.settings, cfg.Cluster) {
		c.log.Warn("reload: [cluster] changed; it takes effect when lvsha restarts", "op", "reload")
	}
	c.configure(cfg)
	// This director's digests moved, the others' did not: no gossip
	// event would say the drift changed.
	c.observeDrift()
}

// changed is signalled when another director's state changed; nil (never
// ready) without a cluster.
func (c *clusterLink) changed() <-chan struct{} {
	if c == nil {
		return nil
	}
	return c.node.Changed()
}

// run runs the member until ctx ends, publishing the VRRP instances'
// states, looking for split brains and resolving those it is to resolve
// every vrrpPoll.
func (c *clusterLink) run(ctx context.Context, vr vrrpControl) {
	if c == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.node.Run(ctx); err != nil {
			c.log.Error("cluster member stopped", "op", "cluster", "error", err)
		}
	}()
	t := time.NewTicker(vrrpPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case <-t.C:
			c.publishVRRP(vr.Status())
			c.observeSplitBrains()
			c.resolveSplitBrains(ctx, vr, time.Now())
		}
	}
}

func (c *clusterLink) publishVRRP(sts []instance.Status) {
	c.mu.Lock()
	family := c.family
	c.mu.Unlock()
	for _, s := range sts {
		in := cluster.Instance{Name: s.Name, VRID: uint8(s.RouterID), IPv6: family[s.Name], Priority: uint8(min(max(s.Priority, 0), 255))}
		switch s.State {
		case "MASTER":
			in.State = cluster.StateMaster
			// A master's Master is its own advert source: the address
			// VRRP itself breaks ties by.
			if a, err := netip.ParseAddr(s.Master); err == nil {
				in.Addr = a
			}
		case "BACKUP":
			in.State = cluster.StateBackup
		case "FAULT":
			in.State = cluster.StateFault
		}
		c.node.SetInstance(in)
	}
}

// observeSplitBrains logs each split brain as it starts and ends and
// counts them.
func (c *clusterLink) observeSplitBrains() {
	now := map[string]cluster.SplitBrain{}
	for _, sb := range cluster.SplitBrains(c.node.Members()) {
		now[sb.Instance] = sb
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, sb := range now {
		if _, seen := c.splits[name]; !seen {
			c.splitTotal++
			c.log.Error("split brain: more than one master for a VRRP instance", "op", "cluster", "vrrp_instance", name, "vrid", sb.VRID,
				"masters", claims(sb), "keeps_master", sb.Masters[0].Director, "this_director_would_yield", cluster.ShouldYield(sb, c.self))
		}
	}
	for name := range c.splits {
		if _, still := now[name]; !still {
			c.log.Info("split brain over: one master", "op", "cluster", "vrrp_instance", name)
		}
	}
	c.splits = now
}

// resolveSplitBrains is split_brain = "resolve": an instance this
// director is master of, which another live director is master of too
// with a higher effective priority (on a tie, a higher address:
// cluster.ShouldYield), gives master up to it (vrrp.Yield) once the split
// brain has lasted resolveHold and that director answers a ping. The
// instance then waits as backup until it hears adverts again, when
// VRRP's own rules take over; the wait is lifted here when the other
// director is no longer a live master of the instance (it died, left or
// stepped down), and when the instance's split_brain no longer says
// "resolve".
func (c *clusterLink) resolveSplitBrains(ctx context.Context, vr vrrpControl, now time.Time) {
	c.mu.Lock()
	splits, resolve := maps.Clone(c.splits), c.resolve
	c.mu.Unlock()
	if len(c.yielded) > 0 {
		masters := map[[2]string]bool{}
		for _, d := range c.node.Members() {
			for _, in := range d.Instances {
				if d.Alive && in.State == cluster.StateMaster {
					masters[[2]string{d.Name, in.Name}] = true
				}
			}
		}
		for name, to := range c.yielded {
			if resolve[name] && masters[[2]string{to.Director, name}] {
				continue
			}
			delete(c.yielded, name)
			if err := vr.Yield(ctx, name, netip.Addr{}); err != nil {
				c.log.Warn("split brain: lift the yield", "op", "cluster", "vrrp_instance", name, "error", err)
				continue
			}
			c.log.Info("split brain: the master yielded to is no longer master here; VRRP's timers run again", "op", "cluster",
				"vrrp_instance", name, "yielded_to", to.Director)
		}
	}
	for name := range c.pending {
		if _, ok := splits[name]; !ok {
			delete(c.pending, name)
		}
	}
	for name, sb := range splits {
		if !resolve[name] || !cluster.ShouldYield(sb, c.self) {
			delete(c.pending, name)
			continue
		}
		first, ok := c.pending[name]
		if !ok {
			c.pending[name] = now
			continue
		}
		if now.Sub(first) < c.resolveHold {
			continue
		}
		winner := sb.Masters[0]
		if err := c.node.Ping(winner.Director); err != nil {
			// Its claim may be a dead director's, not yet declared dead.
			c.log.Debug("split brain: the master that keeps master does not answer; not yielding to it", "op", "cluster",
				"vrrp_instance", name, "keeps_master", winner.Director, "error", err)
			continue
		}
		if err := vr.Yield(ctx, name, winner.Addr); err != nil {
			c.log.Warn("split brain: yield master", "op", "cluster", "vrrp_instance", name, "error", err)
			continue
		}
		delete(c.pending, name)
		c.yielded[name] = winner
		c.log.Warn(`split brain resolved (split_brain = "resolve"): this director gives master up until it hears adverts again`, "op", "cluster",
			"vrrp_instance", name, "vrid", sb.VRID, "masters", claims(sb), "keeps_master", winner.Director, "after", now.Sub(first).Round(time.Millisecond).String())
	}
}

func claims(sb cluster.SplitBrain) string {
	parts := make([]string, len(sb.Masters))
	for i, m := range sb.Masters {
		parts[i] = fmt.Sprintf("%s(priority %d, %s)", m.Director, m.Priority, m.Addr)
	}
	return strings.Join(parts, " ")
}

// observeDrift logs the directors whose configuration differs when that
// changes.
func (c *clusterLink) observeDrift() {
	if c == nil {
		return
	}
	ms := c.node.Members()
	drift := cluster.DriftOf(ms[0], ms[1:])
	var parts []string
	for _, d := range drift {
		parts = append(parts, describeDrift(d))
	}
	s := strings.Join(parts, "; ")
	c.mu.Lock()
	defer c.mu.Unlock()
	if s == c.drift {
		return
	}
	c.drift = s
	if s == "" {
		c.log.Info("cluster: every live director runs this configuration", "op", "cluster")
		return
	}
	c.log.Warn("cluster: configuration drift", "op", "cluster", "drift", s)
}

func describeDrift(d cluster.Drift) string {
	switch {
	case !d.Named:
		return d.Director + ": differs (which objects: after its next push/pull)"
	case len(d.VirtualServers) == 0 && len(d.Instances) == 0:
		return d.Director + ": differs in track_exec or sync groups"
	}
	var what []string
	if len(d.VirtualServers) > 0 {
		what = append(what, "virtual servers "+strings.Join(d.VirtualServers, ","))
	}
	if len(d.Instances) > 0 {
		what = append(what, "vrrp instances "+strings.Join(d.Instances, ","))
	}
	return d.Director + ": " + strings.Join(what, ", ")
}

// consensusNeeded reports whether a virtual server of cfg takes other
// directors' views: only then does their change call for a sync.
func consensusNeeded(cfg *conf.Config) bool {
	for _, vs := range cfg.VirtualServers {
		if vs.HealthConsensus != cluster.ConsensusLocal {
			return true
		}
	}
	return false
}

// up publishes this director's view of every real server and returns the
// up function the sync applies: this director's own for "local" virtual
// servers, the cluster's consensus for the others. Each consensus change
// is logged with what every director saw.
func (c *clusterLink) up(cfg *conf.Config, local func(string, netip.AddrPort) bool) func(string, netip.AddrPort) bool {
	if c == nil {
		return local
	}
	eff := map[health.Key]bool{}
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			k := cluster.RealServer{VS: vs.Name, RS: rs.Address}
			own := local(vs.Name, rs.Address)
			h := cluster.HealthDown
			if own {
				h = cluster.HealthUp
			}
			c.node.SetHealth(k, h)
			if vs.HealthConsensus == cluster.ConsensusLocal {
				continue
			}
			v := cluster.Consensus(vs.HealthConsensus, c.self, c.node.Views(k))
			hk := health.Key{VirtualServer: vs.Name, RealServer: rs.Address}
			eff[hk] = !v.Down
			c.mu.Lock()
			prev, ok := c.verdicts[hk]
			c.verdicts[hk] = !v.Down
			c.mu.Unlock()
			if !ok {
				prev = own
			}
			if prev != !v.Down {
				c.log.Info("real server "+map[bool]string{true: "down", false: "up"}[v.Down]+" by cluster consensus", "op", "cluster",
					"vs", vs.Name, "rs", rs.Address, "consensus", vs.HealthConsensus, "seen", v.String())
			}
		}
	}
	return func(vs string, rs netip.AddrPort) bool {
		if u, ok := eff[health.Key{VirtualServer: vs, RealServer: rs}]; ok {
			return u
		}
		return local(vs, rs)
	}
}

// ClusterReport is `lvsha status --cluster`: every director side by side.
type ClusterReport struct {
	Self             string              `json:"self"`
	Directors        []ClusterDirector   `json:"directors"`
	SplitBrains      []ClusterSplitBrain `json:"split_brains"`
	SplitBrainsTotal uint64              `json:"split_brains_total"`
	RealServers      []ClusterRealServer `json:"real_servers"`
	// GossipErrors counts memberlist's warnings and errors by kind
	// (cluster.GossipErrorKinds): packets and streams on the gossip port
	// that were refused (another label or key, garbage), and failed
	// probes or syncs. The log shows a few of each kind every 10 s.
	GossipErrors map[string]uint64 `json:"gossip_errors"`
}

// ClusterDirector is one director as this one knows it.
type ClusterDirector struct {
	Name         string            `json:"name"`
	Address      string            `json:"address"`
	Self         bool              `json:"self,omitempty"`
	Alive        bool              `json:"alive"`
	Version      string            `json:"version"`
	ConfigDigest string            `json:"config_digest"` // the first 8 bytes, hex
	Drift        string            `json:"drift,omitempty"`
	Instances    []ClusterInstance `json:"vrrp_instances"`
}

// ClusterInstance is one director's VRRP instance.
type ClusterInstance struct {
	Name     string `json:"name"`
	VRID     int    `json:"vrid"`
	State    string `json:"state"`
	Priority int    `json:"priority"`
}

// ClusterSplitBrain is one instance with more than one master.
type ClusterSplitBrain struct {
	Instance   string   `json:"vrrp_instance"`
	VRID       int      `json:"vrid"`
	Masters    []string `json:"masters"` // the one that keeps master first
	ThisYields bool     `json:"this_director_yields"`
}

// ClusterRealServer is one real server of this director's config as each
// director sees it.
type ClusterRealServer struct {
	VirtualServer string            `json:"virtual_server"`
	Address       string            `json:"address"`
	Consensus     string            `json:"health_consensus"`
	Seen          map[string]string `json:"seen"` // director → up, down
	Up            bool              `json:"up"`   // as this director applies it
}

func (c *clusterLink) report(cfg *conf.Config, local func(string, netip.AddrPort) bool) *ClusterReport {
	if c == nil {
		return nil
	}
	dirs := c.node.Directors()
	rep := &ClusterReport{Self: c.self}
	drift := map[string]string{}
	for _, d := range cluster.DriftOf(dirs[0], dirs[1:]) {
		drift[d.Director] = describeDrift(d)
	}
	for _, d := range dirs {
		cd := ClusterDirector{Name: d.Name, Address: d.Addr.String(), Self: d.Self, Alive: d.Alive, Version: d.Version,
			ConfigDigest: hex.EncodeToString(d.ConfigDigest[:8]), Drift: strings.TrimPrefix(drift[d.Name], d.Name+": ")}
		for _, in := range d.Instances {
			cd.Instances = append(cd.Instances, ClusterInstance{Name: in.Name, VRID: int(in.VRID), State: in.State.String(), Priority: int(in.Priority)})
		}
		rep.Directors = append(rep.Directors, cd)
	}
	c.mu.Lock()
	for _, sb := range c.splits {
		cs := ClusterSplitBrain{Instance: sb.Instance, VRID: int(sb.VRID), ThisYields: cluster.ShouldYield(sb, c.self)}
		for _, m := range sb.Masters {
			cs.Masters = append(cs.Masters, m.Director)
		}
		rep.SplitBrains = append(rep.SplitBrains, cs)
	}
	rep.SplitBrainsTotal = c.splitTotal
	rep.GossipErrors = c.node.GossipErrors()
	verdicts := c.verdicts
	c.mu.Unlock()
	slices.SortFunc(rep.SplitBrains, func(a, b ClusterSplitBrain) int { return strings.Compare(a.Instance, b.Instance) })
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			k := cluster.RealServer{VS: vs.Name, RS: rs.Address}
			r := ClusterRealServer{VirtualServer: vs.Name, Address: rs.Address.String(), Consensus: vs.HealthConsensus, Seen: map[string]string{}}
			for _, d := range dirs {
				if h, ok := d.Health[k]; ok && d.Alive {
					r.Seen[d.Name] = h.String()
				}
			}
			c.mu.Lock()
			u, ok := verdicts[health.Key{VirtualServer: vs.Name, RealServer: rs.Address}]
			c.mu.Unlock()
			if !ok {
				u = local(vs.Name, rs.Address)
			}
			r.Up = u
			rep.RealServers = append(rep.RealServers, r)
		}
	}
	return rep
}

// writeClusterView prints a ClusterReport as tables: the directors, each
// instance's state on each director, and each real server as each
// director sees it.
func writeClusterView(w io.Writer, r *ClusterReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DIRECTOR\tADDRESS\tSTATE\tCONFIG\tVERSION\tDRIFT")
	var names []string
	for _, d := range r.Directors {
		name, state := d.Name, "alive"
		if d.Self {
			name += "*"
		}
		if !d.Alive {
			state = "gone"
		}
		names = append(names, d.Name)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, d.Address, state, d.ConfigDigest, d.Version, cmp.Or(d.Drift, "-"))
	}
	insts := map[string]map[string]string{}
	var instNames []string
	for _, d := range r.Directors {
		for _, in := range d.Instances {
			if insts[in.Name] == nil {
				insts[in.Name] = map[string]string{}
				instNames = append(instNames, in.Name)
			}
			insts[in.Name][d.Name] = in.State + " " + strconv.Itoa(in.Priority)
		}
	}
	slices.Sort(instNames)
	if len(instNames) > 0 {
		fmt.Fprintf(tw, "\nVRRP INSTANCE\t%s\n", strings.Join(names, "\t"))
		for _, n := range instNames {
			row := []string{n}
			for _, d := range names {
				row = append(row, cmp.Or(insts[n][d], "-"))
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	for _, sb := range r.SplitBrains {
		fmt.Fprintf(tw, "\nSPLIT BRAIN %s (vrid %d): masters %s; %s keeps master\n", sb.Instance, sb.VRID, strings.Join(sb.Masters, ", "), sb.Masters[0])
	}
	if len(r.RealServers) > 0 {
		fmt.Fprintf(tw, "\nVIRTUAL SERVER\tREAL SERVER\t%s\tCONSENSUS\tAPPLIED\n", strings.Join(names, "\t"))
		for _, rs := range r.RealServers {
			row := []string{rs.VirtualServer, rs.Address}
			for _, d := range names {
				row = append(row, cmp.Or(rs.Seen[d], "-"))
			}
			row = append(row, rs.Consensus, map[bool]string{true: "up", false: "down"}[rs.Up])
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	fmt.Fprintf(tw, "\nsplit brains since start: %d\n", r.SplitBrainsTotal)
	var errs []string
	for _, kind := range slices.Sorted(maps.Keys(r.GossipErrors)) {
		if n := r.GossipErrors[kind]; n > 0 {
			errs = append(errs, fmt.Sprintf("%d %s", n, kind))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(tw, "gossip errors since start: %s\n", strings.Join(errs, ", "))
	}
	return tw.Flush()
}
