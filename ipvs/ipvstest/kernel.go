// Package ipvstest provides a stateful in-memory IPVS kernel for tests.
//
// Kernel enforces the rules of net/netfilter/ipvs/ip_vs_ctl.c that a
// reconciler can trip over, with the errno the kernel returns, and returns
// read-backs shaped the way moby parses real dumps (HASHED set, no
// protocol/address/port on firewall-mark services). Rules lists those
// rules as a table, and the same table runs against the fake (this
// package's tests) and against the kernel through moby in a VM
// (integration.TestKernelRules), so each answer is the kernel's, not a
// reading of its source. Tests should assert the resulting table, not the
// sequence of calls; Writes and WritesByOp are for asserting how much was
// written.
package ipvstest

import (
	"net"
	"net/netip"
	"slices"
	"sync"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/ipvs"
)

// Write operations, as passed to a FailFunc and counted by WritesByOp.
const (
	OpNewService        = "NewService"
	OpUpdateService     = "UpdateService"
	OpDelService        = "DelService"
	OpNewDestination    = "NewDestination"
	OpUpdateDestination = "UpdateDestination"
	OpDelDestination    = "DelDestination"
	OpNewDaemon         = "NewDaemon"
	OpDelDaemon         = "DelDaemon"
)

// FailFunc decides, before a write is applied, whether it fails; a non-nil
// error is returned as the kernel's answer and nothing changes. d is nil
// for service operations, s and d for the sync daemon ones.
type FailFunc func(op string, s *moby.Service, d *moby.Destination) error

// Kernel is a fake IPVS kernel table. The zero value is an empty table and
// ready to use; it is safe for concurrent use.
type Kernel struct {
	mu       sync.Mutex
	services []*service
	writes   map[string]int
	reads    int
	fail     FailFunc

	// The sync daemons (daemon.go): the master's and the backup's, nil
	// when not running, and the interfaces they may use besides lo.
	master, backup *ipvs.Daemon
	links          map[string]int // name -> MTU
}

var _ ipvs.Kernel = (*Kernel)(nil)

type service struct {
	s     moby.Service
	dests []*moby.Destination
}

type svcKey struct {
	af, proto uint16
	addr      netip.Addr
	port      uint16
	fwmark    uint32
}

type dstKey struct {
	addr netip.Addr
	port uint16
}

// SetFail installs f (nil removes it).
func (k *Kernel) SetFail(f FailFunc) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail = f
}

// Writes returns how many write calls were made, failed ones included:
// each is one netlink request to a real kernel.
func (k *Kernel) Writes() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.writes {
		n += c
	}
	return n
}

// WritesByOp returns the write calls per operation.
func (k *Kernel) WritesByOp() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(k.writes))
	for op, c := range k.writes {
		out[op] = c
	}
	return out
}

// ResetWrites zeroes the write counters.
func (k *Kernel) ResetWrites() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes = nil
}

// Reads returns how many dumps were asked for (GetServices, and
// GetDestinations of one service): each is one netlink dump of a real
// kernel.
func (k *Kernel) Reads() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reads
}

// SetConns sets the connection counts of destination d of service s, as
// traffic would.
func (k *Kernel) SetConns(s *moby.Service, d *moby.Destination, active, inactive int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	sv, err := k.findExisting(s)
	if err != nil {
		return err
	}
	i := sv.findDest(d)
	if i < 0 {
		return unix.ENOENT
	}
	sv.dests[i].ActiveConnections, sv.dests[i].InactiveConnections = active, inactive
	return nil
}

// SetStats sets the counters of service s, and of its destination d when d
// is not nil.
func (k *Kernel) SetStats(s *moby.Service, d *moby.Destination, st moby.SvcStats) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	sv, err := k.findExisting(s)
	if err != nil {
		return err
	}
	if d == nil {
		sv.s.Stats = st
		return nil
	}
	i := sv.findDest(d)
	if i < 0 {
		return unix.ENOENT
	}
	sv.dests[i].Stats = moby.DstStats(st)
	return nil
}

// GetServices returns copies of all services, as a dump would.
func (k *Kernel) GetServices() ([]*moby.Service, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reads++
	out := make([]*moby.Service, 0, len(k.services))
	for _, sv := range k.services {
		out = append(out, readBackService(&sv.s))
	}
	return out, nil
}

// GetDestinations returns copies of the destinations of s. Like the
// kernel's dump (ip_vs_genl_dump_dests), a missing service yields an empty
// list, not an error.
func (k *Kernel) GetDestinations(s *moby.Service) ([]*moby.Destination, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reads++
	sv, _ := k.find(s) // the dump ignores a request it cannot parse
	if sv == nil {
		return nil, nil
	}
	out := make([]*moby.Destination, 0, len(sv.dests))
	for _, d := range sv.dests {
		c := *d
		c.Address = slices.Clone(d.Address)
		out = append(out, &c)
	}
	return out, nil
}

// NewService adds s: EEXIST if present, ENOENT for an unknown scheduler,
// EINVAL for an IPv6 netmask outside 1..128, EAFNOSUPPORT for a family
// other than inet and inet6. Like the kernel over netlink, it takes any
// protocol number.
func (k *Kernel) NewService(s *moby.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write(OpNewService, s, nil); err != nil {
		return err
	}
	sv, err := k.find(s)
	if err != nil {
		return err
	}
	if sv != nil {
		return unix.EEXIST
	}
	if err := validService(s); err != nil {
		return err
	}
	sv = &service{s: *readBackService(s)}
	sv.s.Stats = moby.SvcStats{}
	k.services = append(k.services, sv)
	return nil
}

// UpdateService changes the scheduler, flags, timeout and netmask of s:
// ESRCH if absent.
func (k *Kernel) UpdateService(s *moby.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write(OpUpdateService, s, nil); err != nil {
		return err
	}
	sv, err := k.findExisting(s)
	if err != nil {
		return err
	}
	if err := validService(s); err != nil {
		return err
	}
	sv.s.SchedName = s.SchedName
	sv.s.Flags = s.Flags | uint32(ipvs.FlagHashed)
	sv.s.Timeout = s.Timeout
	sv.s.Netmask = s.Netmask
	return nil
}

// DelService removes s with its destinations: ESRCH if absent.
func (k *Kernel) DelService(s *moby.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write(OpDelService, s, nil); err != nil {
		return err
	}
	sv, err := k.findExisting(s)
	if err != nil {
		return err
	}
	k.services = slices.DeleteFunc(k.services, func(x *service) bool { return x == sv })
	return nil
}

// NewDestination adds d to s: ESRCH without the service, ERANGE for a
// negative weight or a lower threshold above the upper (even when the
// upper is 0, "none"), EEXIST if present, EINVAL for an address that is
// not unicast (ip_vs_new_dest: multicast, 255.255.255.255, 0.0.0.0, ::,
// IPv6 link-local). The fake holds no routes, so unlike the kernel it
// takes an address its namespace routes as broadcast (the broadcast
// address of a local subnet) and refuses a link-local one that is local.
func (k *Kernel) NewDestination(s *moby.Service, d *moby.Destination) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write(OpNewDestination, s, d); err != nil {
		return err
	}
	sv, err := k.findExisting(s)
	if err != nil {
		return err
	}
	if err := validDest(d); err != nil {
		return err
	}
	if sv.findDest(d) >= 0 {
		return unix.EEXIST
	}
	a := wireAddr(d.Address, sv.s.AddressFamily)
	if !unicast(a) {
		return unix.EINVAL
	}
	nd := &moby.Destination{
		Address:         net.IP(a.AsSlice()),
		Port:            d.Port,
		Weight:          d.Weight,
		ConnectionFlags: d.ConnectionFlags & moby.ConnectionFlagFwdMask,
		AddressFamily:   sv.s.AddressFamily,
		UpperThreshold:  d.UpperThreshold,
		LowerThreshold:  d.LowerThreshold,
	}
	sv.dests = append(sv.dests, nd)
	return nil
}

// UpdateDestination changes weight, forwarding and thresholds of d in s:
// ESRCH without the service, ERANGE as for NewDestination, ENOENT without
// the destination.
func (k *Kernel) UpdateDestination(s *moby.Service, d *moby.Destination) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write(OpUpdateDestination, s, d); err != nil {
		return err
	}
	sv, err := k.findExisting(s)
	if err != nil {
		return err
	}
	if err := validDest(d); err != nil {
		return err // ip_vs_edit_dest checks before looking up
	}
	i := sv.findDest(d)
	if i < 0 {
		return unix.ENOENT
	}
	cur := sv.dests[i]
	cur.Weight = d.Weight
	cur.ConnectionFlags = d.ConnectionFlags & moby.ConnectionFlagFwdMask
	cur.UpperThreshold, cur.LowerThreshold = d.UpperThreshold, d.LowerThreshold
	return nil
}

// DelDestination removes d from s: ESRCH without the service, ENOENT
// without the destination.
func (k *Kernel) DelDestination(s *moby.Service, d *moby.Destination) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write(OpDelDestination, s, d); err != nil {
		return err
	}
	sv, err := k.findExisting(s)
	if err != nil {
		return err
	}
	i := sv.findDest(d)
	if i < 0 {
		return unix.ENOENT
	}
	sv.dests = slices.Delete(sv.dests, i, i+1)
	return nil
}

// write counts the call and consults the FailFunc; k.mu is held.
func (k *Kernel) write(op string, s *moby.Service, d *moby.Destination) error {
	if k.writes == nil {
		k.writes = map[string]int{}
	}
	k.writes[op]++
	if k.fail != nil {
		return k.fail(op, s, d)
	}
	return nil
}

// find returns the service s names, nil if there is none; the error is
// the kernel's for a request it cannot parse (ip_vs_genl_parse_service).
func (k *Kernel) find(s *moby.Service) (*service, error) {
	key, err := keyOf(s)
	if err != nil {
		return nil, err
	}
	for _, sv := range k.services {
		if k2, _ := keyOf(&sv.s); k2 == key {
			return sv, nil
		}
	}
	return nil, nil
}

// findExisting is find for every command but NewService: a missing service
// is ESRCH.
func (k *Kernel) findExisting(s *moby.Service) (*service, error) {
	sv, err := k.find(s)
	if err == nil && sv == nil {
		err = unix.ESRCH
	}
	return sv, err
}

// findDest looks d up the way the kernel does: its address read in the
// service's family (moby sends no destination family), and its port.
func (sv *service) findDest(d *moby.Destination) int {
	want := dstKey{wireAddr(d.Address, sv.s.AddressFamily), d.Port}
	for i, cur := range sv.dests {
		if (dstKey{wireAddr(cur.Address, sv.s.AddressFamily), cur.Port}) == want {
			return i
		}
	}
	return -1
}

// keyOf is the kernel's lookup: __ip_vs_svc_fwm_find for a firewall mark,
// else __ip_vs_service_find by family, protocol, address and port.
func keyOf(s *moby.Service) (svcKey, error) {
	if s.AddressFamily != unix.AF_INET && s.AddressFamily != unix.AF_INET6 {
		return svcKey{}, unix.EAFNOSUPPORT
	}
	if s.FWMark != 0 {
		return svcKey{af: s.AddressFamily, fwmark: s.FWMark}, nil
	}
	return svcKey{af: s.AddressFamily, proto: s.Protocol, addr: wireAddr(s.Address, s.AddressFamily), port: s.Port}, nil
}

// wireAddr is the address the kernel reads from ip as moby sends it: moby
// sends four bytes for an IPv4 (or IPv4-mapped) address and sixteen
// otherwise, and the kernel copies what it got into a zeroed union read
// in the request's family. So an IPv6 address in an IPv4 request becomes
// its first four bytes, and an IPv4 one in an IPv6 request those four
// bytes followed by zeros (seen on Linux 6.12).
func wireAddr(ip net.IP, af uint16) netip.Addr {
	b := []byte(ip.To4())
	if b == nil {
		b = ip.To16()
	}
	if af == unix.AF_INET {
		var a [4]byte
		copy(a[:], b)
		return netip.AddrFrom4(a)
	}
	var a [16]byte
	copy(a[:], b)
	return netip.AddrFrom16(a)
}

// readBackService returns s as a dump shows it: HASHED set, the address as
// the kernel read it, and for a firewall-mark service no protocol, address
// or port.
func readBackService(s *moby.Service) *moby.Service {
	c := *s
	c.Flags |= uint32(ipvs.FlagHashed)
	c.PEName = "" // moby v1.1.0 does not parse it back
	if c.FWMark != 0 {
		c.Protocol, c.Address, c.Port = 0, nil, 0
	} else {
		c.Address = net.IP(wireAddr(s.Address, s.AddressFamily).AsSlice())
	}
	return &c
}

// validService checks what ip_vs_add_service and ip_vs_edit_service check;
// the family was checked by the lookup.
func validService(s *moby.Service) error {
	if !slices.Contains(Schedulers(), s.SchedName) {
		return unix.ENOENT // "Scheduler module ip_vs_%s not found"
	}
	if s.AddressFamily == unix.AF_INET6 && (s.Netmask < 1 || s.Netmask > 128) {
		return unix.EINVAL
	}
	return nil
}

// validDest checks what ip_vs_add_dest and ip_vs_edit_dest check first.
func validDest(d *moby.Destination) error {
	if d.Weight < 0 || d.LowerThreshold > d.UpperThreshold {
		return unix.ERANGE
	}
	return nil
}

// unicast is ip_vs_new_dest's address check for a namespace without
// routes: inet_addr_type must say RTN_UNICAST (or RTN_LOCAL), and
// ipv6_addr_type unicast and not link-local.
func unicast(a netip.Addr) bool {
	if a.Is4() {
		return !a.IsMulticast() && !a.IsUnspecified() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return !a.IsMulticast() && !a.IsUnspecified() && !a.IsLinkLocalUnicast()
}

var _ ipvs.DestinationBatcher = (*Kernel)(nil)

// WriteDestinations makes the writes one at a time, as the kernel runs a
// batch's messages, so that the reconciler's batched path is what these
// tests exercise; each counts as one write.
func (k *Kernel) WriteDestinations(ws []ipvs.DestinationWrite) []error {
	errs := make([]error, len(ws))
	for i, w := range ws {
		switch w.Op {
		case ipvs.OpCreateDestination:
			errs[i] = k.NewDestination(w.Service, w.Destination)
		case ipvs.OpUpdateDestination:
			errs[i] = k.UpdateDestination(w.Service, w.Destination)
		default:
			errs[i] = k.DelDestination(w.Service, w.Destination)
		}
	}
	return errs
}
