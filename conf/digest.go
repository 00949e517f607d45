package conf

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"slices"
)

// Digest is the SHA-256 of a canonical encoding of part of a Config.
type Digest [sha256.Size]byte

// Digests fingerprint what the directors of one cluster must agree on, so
// gossip can tell which directors drifted apart and name what differs.
type Digests struct {
	// Config covers every virtual server, instance, track_exec and sync
	// group: equal Configs give equal digests on every director.
	Config Digest
	// VirtualServers and Instances are each one's own digest, by name.
	VirtualServers map[string]Digest
	Instances      map[string]Digest
}

// Digests fingerprints c's parsed values, not its text: formatting,
// comments, key order and a default written out or left implicit do not
// change them, nor do real servers listed in another order. Left out is
// what differs between the directors of one healthy cluster: [director],
// [metrics] and [cluster], and of each instance its priority, its
// interface names (interface, track_interfaces, track_interface names,
// lvs_sync's interface: a host's own) and whether the director itself is
// unicast_src or one of unicast_peers (the set of the two is kept).
// Anything else that differs is drift.
func (c *Config) Digests() Digests {
	d := Digests{
		VirtualServers: make(map[string]Digest, len(c.VirtualServers)),
		Instances:      make(map[string]Digest, len(c.VRRPInstances)),
	}
	for _, vs := range c.VirtualServers {
		d.VirtualServers[vs.Name] = vsDigest(vs)
	}
	var key []byte
	if c.Cluster != nil {
		key = c.Cluster.Key
	}
	for _, in := range c.VRRPInstances {
		d.Instances[in.Name] = instanceDigest(in, key)
	}
	h := sha256.New()
	for _, part := range []map[string]Digest{d.VirtualServers, d.Instances} {
		names := make([]string, 0, len(part))
		for n := range part {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			dg := part[n]
			h.Write([]byte(n))
			h.Write([]byte{0})
			h.Write(dg[:])
		}
		h.Write([]byte{1}) // a virtual server and an instance of one name differ
	}
	execs := slices.Clone(c.TrackExecs)
	slices.SortFunc(execs, func(a, b TrackExec) int { return cmp.Compare(a.Name, b.Name) })
	groups := make([]SyncGroup, len(c.SyncGroups))
	for i, g := range c.SyncGroups {
		groups[i] = SyncGroup{Name: g.Name, Instances: slices.Sorted(slices.Values(g.Instances))}
	}
	slices.SortFunc(groups, func(a, b SyncGroup) int { return cmp.Compare(a.Name, b.Name) })
	h.Write(canonical(struct {
		Execs  []TrackExec
		Groups []SyncGroup
	}{execs, groups}))
	copy(d.Config[:], h.Sum(nil))
	return d
}

func vsDigest(vs VirtualServer) Digest {
	vs.RealServers = slices.Clone(vs.RealServers)
	slices.SortStableFunc(vs.RealServers, func(a, b RealServer) int { return a.Address.Compare(b.Address) })
	return sha256.Sum256(canonical(vs))
}

// instanceDigest digests in; key is the cluster key, which the password
// enters the digest under: directors with different passwords still
// differ, but a digest (status shows part of one) is no oracle to try
// the at most 8 bytes of a password against offline, for want of the key.
func instanceDigest(in VRRPInstance, key []byte) Digest {
	if in.AuthPass != "" {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(in.AuthPass))
		in.AuthPass = hex.EncodeToString(m.Sum(nil))
	}
	routers := slices.Clone(in.UnicastPeers)
	if in.UnicastSrc.IsValid() {
		routers = append(routers, in.UnicastSrc)
	}
	slices.SortFunc(routers, netip.Addr.Compare)
	routers = slices.Compact(routers)
	in.Priority, in.UnicastSrc, in.UnicastPeers = 0, netip.Addr{}, nil
	// Interface names are the host's own (eth0 on one director, ens3 on
	// the next): the link is the same. How many are tracked still counts.
	in.Interface = ""
	in.TrackInterfaces = make([]string, len(in.TrackInterfaces))
	in.TrackInterfaceWeights = slices.Clone(in.TrackInterfaceWeights)
	for i := range in.TrackInterfaceWeights {
		in.TrackInterfaceWeights[i].Name = ""
	}
	if in.LVSSync != nil {
		s := *in.LVSSync
		s.Interface = ""
		in.LVSSync = &s
	}
	return sha256.Sum256(canonical(struct {
		Instance VRRPInstance
		Routers  []netip.Addr
	}{in, routers}))
}

// canonical encodes v as JSON: Config holds only exported fields with a
// fixed order (durations as integers, addresses as text), no maps and no
// values that JSON cannot carry, so equal values give equal bytes.
func canonical(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Unreachable for the types above; a panic names the one that
		// broke it in the tests rather than silently hashing nothing.
		panic("conf: digest: " + err.Error())
	}
	return b
}
