package cluster

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The decisions every director takes from what gossip told it. They are
// pure functions of their inputs, sorted before use, so every director
// that sees the same states decides the same (MetalLB's
// sortL2Candidates rule for member-set functions).

// Consensus modes, as conf's health_consensus takes them.
const (
	ConsensusLocal  = "local"
	ConsensusAny    = "any"
	ConsensusQuorum = "quorum"
)

// Seen is one director's view of a real server.
type Seen struct {
	Director string
	Health   Health
}

// Verdict is a consensus decision with what it was taken from, for the
// log line of each transition.
type Verdict struct {
	Down bool
	// Downs and Voters count the directors that see the real server down
	// and that have a view of it at all.
	Downs, Voters int
	Seen          []Seen // sorted by director
}

// String is the log line's detail: "2 of 3 see it down (lb1=down
// lb2=down lb3=up)".
func (v Verdict) String() string {
	parts := make([]string, len(v.Seen))
	for i, s := range v.Seen {
		parts[i] = s.Director + "=" + s.Health.String()
	}
	return fmt.Sprintf("%d of %d see it down (%s)", v.Downs, v.Voters, strings.Join(parts, " "))
}

// Consensus decides whether a real server is down. seen holds the views
// of the live directors (this one, self, among them); directors without
// a view (HealthUnknown: not in their config, or no verdict yet) do not
// vote.
//
//   - local: this director's own view, as without a cluster.
//   - any: down as soon as one director sees it down.
//   - quorum: down when more than half of the voters see it down. With
//     two directors that is both: one director's broken path never
//     drains a server the other reaches.
//
// An unknown mode decides as local: conf validated it, and of the three
// local is the one that changes nothing.
func Consensus(mode, self string, seen []Seen) Verdict {
	v := Verdict{Seen: slices.Clone(seen)}
	slices.SortFunc(v.Seen, func(a, b Seen) int { return cmp.Compare(a.Director, b.Director) })
	own := HealthUnknown
	for _, s := range v.Seen {
		if s.Director == self {
			own = s.Health
		}
		switch s.Health {
		case HealthDown:
			v.Downs++
			v.Voters++
		case HealthUp:
			v.Voters++
		}
	}
	switch mode {
	case ConsensusAny:
		v.Down = v.Downs > 0
	case ConsensusQuorum:
		v.Down = 2*v.Downs > v.Voters
	default:
		v.Down = own == HealthDown
	}
	return v
}

// Drift is one director whose configuration differs from this one's.
type Drift struct {
	Director string
	// VirtualServers and Instances name what differs: different digests,
	// or present on one side only. Both empty with Named false when the
	// director's per-object digests of its current config have not
	// arrived yet (they come with a push/pull, its config digest at once
	// with the node meta); both empty with Named true when what differs is
	// neither (a track_exec or a sync group).
	VirtualServers []string
	Instances      []string
	Named          bool
}

// DriftOf compares this director's digests with every other live
// director's; it lists those that differ, by name.
func DriftOf(self Director, others []Director) []Drift {
	var out []Drift
	for _, o := range others {
		if !o.Alive || o.Self || o.ConfigDigest == self.ConfigDigest || o.ConfigDigest == ([32]byte{}) {
			continue
		}
		d := Drift{Director: o.Name}
		// The meta's config digest is fresher than the per-object ones
		// of the last push/pull: names from an older config would mislead.
		if o.Digests.Config == o.ConfigDigest && o.Digests.VirtualServers != nil && o.Digests.Instances != nil {
			d.Named = true
			d.VirtualServers = differing(self.Digests.VirtualServers, o.Digests.VirtualServers)
			d.Instances = differing(self.Digests.Instances, o.Digests.Instances)
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Drift) int { return cmp.Compare(a.Director, b.Director) })
	return out
}

func differing(a, b map[string]Short) []string {
	var out []string
	for n, d := range a {
		if e, ok := b[n]; !ok || e != d {
			out = append(out, n)
		}
	}
	for n := range b {
		if _, ok := a[n]; !ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Claim is one director claiming master of an instance.
type Claim struct {
	Director string
	Priority uint8
	Addr     netip.Addr
}

// SplitBrain is one instance with more than one master.
type SplitBrain struct {
	Instance string
	VRID     uint8
	IPv6     bool
	// Masters, the one that keeps master first: the highest effective
	// priority, on a tie the highest address, as VRRP itself breaks ties
	// (RFC 5798 6.4.3), then the name so the order is total.
	Masters []Claim
}

// SplitBrains finds the instances that more than one live director is
// master of. An instance is matched by name, VRID and family together:
// directors of one cluster share their instances' names, and a VRID alone
// may be reused on another link. A claim's address is the instance's
// advert source, or the director's gossip address when it sent none.
func SplitBrains(dirs []Director) []SplitBrain {
	type key struct {
		name string
		vrid uint8
		ipv6 bool
	}
	masters := map[key][]Claim{}
	for _, d := range dirs {
		if !d.Alive {
			continue
		}
		for _, in := range d.Instances {
			if in.State != StateMaster {
				continue
			}
			a := in.Addr
			if !a.IsValid() {
				a = d.Addr.Addr()
			}
			k := key{in.Name, in.VRID, in.IPv6}
			masters[k] = append(masters[k], Claim{Director: d.Name, Priority: in.Priority, Addr: a})
		}
	}
	var out []SplitBrain
	for k, cs := range masters {
		if len(cs) < 2 {
			continue
		}
		slices.SortFunc(cs, func(a, b Claim) int {
			return cmp.Or(cmp.Compare(b.Priority, a.Priority), b.Addr.Compare(a.Addr), cmp.Compare(a.Director, b.Director))
		})
		out = append(out, SplitBrain{Instance: k.name, VRID: k.vrid, IPv6: k.ipv6, Masters: cs})
	}
	slices.SortFunc(out, func(a, b SplitBrain) int {
		return cmp.Or(cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.VRID, b.VRID))
	})
	return out
}

// ShouldYield reports whether director self, one of sb's masters, is one
// that gives up master under split_brain = "resolve": every master but
// the first.
func ShouldYield(sb SplitBrain, self string) bool {
	for i, c := range sb.Masters {
		if c.Director == self {
			return i > 0
		}
	}
	return false
}
