package ipvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Changes counts the kernel writes one Apply made successfully, and lists
// them in the order they were made.
type Changes struct {
	ServicesCreated     int
	ServicesUpdated     int
	ServicesDeleted     int
	DestinationsCreated int
	DestinationsUpdated int
	DestinationsDeleted int
	// Done is every successful write.
	Done []Change
}

// Total is the number of successful writes.
func (c Changes) Total() int {
	return c.ServicesCreated + c.ServicesUpdated + c.ServicesDeleted +
		c.DestinationsCreated + c.DestinationsUpdated + c.DestinationsDeleted
}

func (c *Changes) count(ch Change) {
	switch ch.Op {
	case OpCreateService:
		c.ServicesCreated++
	case OpUpdateService:
		c.ServicesUpdated++
	case OpDeleteService:
		c.ServicesDeleted++
	case OpCreateDestination:
		c.DestinationsCreated++
	case OpUpdateDestination:
		c.DestinationsUpdated++
	case OpDeleteDestination:
		c.DestinationsDeleted++
	}
	c.Done = append(c.Done, ch)
}

// Op is one kind of kernel write.
type Op string

// The writes Apply makes, one per IPVS command.
const (
	OpCreateService     Op = "create service"
	OpUpdateService     Op = "update service"
	OpDeleteService     Op = "delete service"
	OpCreateDestination Op = "add destination"
	OpUpdateDestination Op = "update destination"
	OpDeleteDestination Op = "delete destination"
)

// Change is one kernel write: planned by Plan, made by Apply.
type Change struct {
	Op Op `json:"op"`
	// VirtualServer names the virtual server it serves ("" for a service
	// lvsha managed under a name no longer configured).
	VirtualServer string `json:"vs"`
	// Service is the service, as ipvsadm -Ln prints it; Destination the
	// real server's address, for the destination ops.
	Service     string `json:"service"`
	Destination string `json:"destination,omitempty"`
	// Was and Now describe an update: the settings or weight before and
	// after. Now is also a new destination's weight.
	Was string `json:"was,omitempty"`
	Now string `json:"now,omitempty"`

	svc  Service       // what to write
	dst  Destination   // for the destination ops
	have *moby.Service // the kernel's service, for deletes and its destinations
	key  ServiceKey    // the service written
}

func (c Change) String() string {
	s := string(c.Op) + " " + c.Service
	if c.Destination != "" {
		s += " -> " + c.Destination
	}
	switch {
	case c.Was != "":
		s += " (" + c.Was + " => " + c.Now + ")"
	case c.Now != "":
		s += " (" + c.Now + ")"
	}
	if c.VirtualServer != "" {
		s += " [" + c.VirtualServer + "]"
	}
	return s
}

// Reconciler is the one owner of a Kernel: moby's handle is not safe for
// concurrent use, so every method takes the same mutex.
//
// It remembers which services it manages (created, or adopted because the
// desired table described them) so that a service dropped from the
// configuration is deleted, while services it never managed are left
// alone.
//
// It also remembers the kernel's table as it last read it, with its own
// writes since (known), so that Update can diff a new desired table
// without reading 10,000 destinations back for every change.
type Reconciler struct {
	mu     sync.Mutex
	k      Kernel
	log    *slog.Logger
	owned  map[ServiceKey]string // managed service -> virtual server name
	logged map[ServiceKey]bool   // foreign services already reported
	// known is the kernel's table as of the last read, with every
	// successful write since applied to it; nil after a failed write or
	// before the first read: the next plan reads the kernel.
	known map[ServiceKey]*knownService
	// applied are the services of the last apply that made every write
	// it planned, so known holds them as they are: a service desired the
	// same again plans nothing, without comparing its destinations one
	// by one. nil whenever known is.
	applied map[ServiceKey]Service
}

// knownService is one service of Reconciler.known: as the kernel
// returned it (or as written), and its destinations by address; dests
// is nil when they were never read (a service nobody asked for).
type knownService struct {
	ms    *moby.Service
	svc   Service
	dests map[netip.AddrPort]Destination
}

// NewReconciler returns a Reconciler writing to k; log may be nil.
func NewReconciler(k Kernel, log *slog.Logger) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{k: k, log: log, owned: map[ServiceKey]string{}, logged: map[ServiceKey]bool{}}
}

// Apply reads the kernel table and writes only the difference from
// desired, as Plan lists it:
//   - a missing service is created with its destinations;
//   - a service whose settings differ (scheduler, flags except HASHED,
//     timeout, netmask) is updated in place, never deleted and re-added;
//   - a missing destination is added, a changed one (weight, forwarding,
//     thresholds) is updated with one write, and one the desired service
//     does not list is deleted;
//   - a service this Reconciler managed that is no longer desired is
//     deleted;
//   - services nobody asked for are left alone and logged once.
//
// The kernel table is never flushed. A failure on one object does not stop
// the others (the destinations of a service that could not be created are
// not tried): Apply returns all failures joined, each naming its object.
//
// Apply reads the whole table, so it also repairs what someone changed by
// hand; it is the periodic resync. Update is the same without the read.
func (r *Reconciler) Apply(desired []Service) (Changes, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.known, r.applied = nil, nil
	return r.apply(desired)
}

// Update writes the difference between desired and the table as the
// Reconciler last read and wrote it, without reading the kernel again:
// a reload or a health change costs the writes it makes, not a dump of
// every destination. The kernel is read only when the Reconciler knows
// nothing reliable (before its first read, or after a write failed), and
// when a write fails (someone changed the table by hand since the last
// read), Update reads the table and applies the rest at once, as Apply
// would. A hand edit that no write trips over waits for the next Apply.
func (r *Reconciler) Update(desired []Service) (Changes, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cached := r.known != nil
	ch, err := r.apply(desired)
	if err == nil || !cached {
		return ch, err
	}
	// r.known was dropped by the failure: this reads the kernel.
	more, err := r.apply(desired)
	for _, c := range more.Done {
		ch.count(c)
	}
	return ch, err
}

// apply plans desired against r.known (reading the kernel when it is
// nil) and makes the writes; r.mu is held.
func (r *Reconciler) apply(desired []Service) (Changes, error) {
	var ch Changes
	p, err := r.plan(desired)
	if err != nil {
		return ch, err
	}
	errs := p.errs
	failed := map[ServiceKey]bool{}
	created := map[ServiceKey]bool{}
	done := func(c Change, err error) {
		if err != nil {
			if c.Op == OpDeleteService && errors.Is(err, unix.ESRCH) {
				// Someone removed it first: what was wanted.
				delete(r.owned, c.key)
				delete(r.known, c.key)
				return
			}
			// The table is not what r.known says: read it next time.
			r.known = nil
			errs = append(errs, fmt.Errorf("%s: %w", c.what(), err))
			if c.Op == OpCreateService {
				failed[c.key] = true
			}
			return
		}
		r.wrote(c)
		ch.count(c)
		switch {
		case c.Op == OpCreateService:
			// One line for the service and the destinations it is
			// created with, each of which is a debug line: a start on an
			// empty table logged 10,000 lines, a fifth of its time in the
			// test VM.
			r.log.Info(c.Op.logMsg(), append(changeAttrs(c), "destinations", len(c.svc.Destinations))...)
		case c.Op == OpCreateDestination && created[c.key]:
			if r.log.Enabled(context.Background(), slog.LevelDebug) {
				r.log.Debug(c.Op.logMsg(), changeAttrs(c)...)
			}
		default:
			r.log.Info(c.Op.logMsg(), changeAttrs(c)...)
		}
		switch c.Op {
		case OpCreateService:
			created[c.key] = true
			r.owned[c.key] = c.VirtualServer
		case OpDeleteService:
			delete(r.owned, c.key)
		}
	}
	batcher, batches := r.k.(DestinationBatcher)
	for i := 0; i < len(p.changes); {
		c := p.changes[i]
		if !batches || !c.Op.destination() {
			if !failed[c.key] {
				done(c, r.write(c))
			}
			i++
			continue
		}
		// A run of destination writes goes in batches; only a service's
		// creation fails a key, so none fails within the run.
		var run []Change
		var ws []DestinationWrite
		var svc *moby.Service // the service of the last write, which the next likely shares
		for ; i < len(p.changes) && p.changes[i].Op.destination(); i++ {
			if c := p.changes[i]; !failed[c.key] {
				if svc == nil || run[len(run)-1].key != c.key {
					svc = c.svc.toMoby()
				}
				run = append(run, c)
				ws = append(ws, DestinationWrite{Op: c.Op, Service: svc, Destination: c.dst.toMoby()})
			}
		}
		for k, err := range batcher.WriteDestinations(ws) {
			done(run[k], err)
		}
	}
	r.applied = nil
	if len(errs) == 0 && r.known != nil {
		r.applied = make(map[ServiceKey]Service, len(desired))
		for _, s := range desired {
			// A copy: the caller may change its table in place.
			s.Destinations = slices.Clone(s.Destinations)
			r.applied[s.Key()] = s
		}
	}
	for _, key := range p.adopted {
		r.log.Info("service adopted", "op", "adopt", "vs", p.names[key], "service", key.String())
	}
	for key, name := range p.names {
		if !failed[key] {
			r.owned[key] = name
		}
	}
	for _, key := range p.gone {
		delete(r.owned, key) // someone else removed it already
	}
	r.noteForeign(p)
	return ch, errors.Join(errs...)
}

// Plan lists the writes Update(desired) would make now, in order, without
// making any: it diffs against the table as the Reconciler knows it,
// reading the kernel only when it knows nothing reliable, as Update
// does. The error is a failure to read the kernel's table, or a desired
// table that lists a service or destination twice (Apply skips those and
// reports them the same way).
func (r *Reconciler) Plan(desired []Service) ([]Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.plan(desired)
	if err != nil {
		return nil, err
	}
	return p.changes, errors.Join(p.errs...)
}

// plan is what Apply or Update will do, computed from r.known (one read
// of the kernel's table, when r.known is nil). r.mu is held; plan writes
// nothing to the kernel and changes nothing in r but r.known's reads.
type plan struct {
	changes []Change
	errs    []error
	// names are the desired services' virtual servers, which r manages
	// from now on; adopted those found in the kernel that r did not
	// manage yet; gone the managed services someone else removed.
	names   map[ServiceKey]string
	adopted []ServiceKey
	gone    []ServiceKey
	// foreign are the kernel's services nobody asked for.
	foreign []ServiceKey
}

func (r *Reconciler) plan(desired []Service) (*plan, error) {
	if r.known == nil {
		r.applied = nil
		if err := r.read(desired); err != nil {
			return nil, err
		}
	}
	p := &plan{names: make(map[ServiceKey]string, len(desired))}
	for _, s := range desired {
		key := s.Key()
		if _, dup := p.names[key]; dup {
			p.errs = append(p.errs, fmt.Errorf("service %s: listed twice in the desired table", s))
			continue
		}
		p.names[key] = s.Name
		if prev, ok := r.applied[key]; ok && sameService(prev, s) {
			continue
		}
		ks, ok := r.known[key]
		if !ok {
			p.changes = append(p.changes, Change{Op: OpCreateService, VirtualServer: s.Name, Service: s.String(), Now: settingsString(s), svc: s, key: key})
			p.destinations(s, key, nil)
			continue
		}
		if _, managed := r.owned[key]; !managed {
			p.adopted = append(p.adopted, key)
		}
		if !settingsEqual(ks.svc, s) {
			p.changes = append(p.changes, Change{Op: OpUpdateService, VirtualServer: s.Name, Service: s.String(),
				Was: settingsString(ks.svc), Now: settingsString(s), svc: s, have: ks.ms, key: key})
		}
		if ks.dests == nil {
			// Not read yet: a service nobody asked for until now.
			current, err := r.k.GetDestinations(ks.ms)
			if err != nil {
				p.errs = append(p.errs, fmt.Errorf("list destinations of %s: %w", s, err))
				continue
			}
			ks.dests = destinationMap(current)
		}
		p.destinations(s, key, ks.dests)
	}
	for key, name := range r.owned {
		if _, want := p.names[key]; want {
			continue
		}
		ks, ok := r.known[key]
		if !ok {
			p.gone = append(p.gone, key)
			continue
		}
		p.changes = append(p.changes, Change{Op: OpDeleteService, VirtualServer: name, Service: key.String(), have: ks.ms, key: key})
	}
	for key := range r.known {
		if _, want := p.names[key]; want {
			continue
		}
		if _, owned := r.owned[key]; !owned {
			p.foreign = append(p.foreign, key)
		}
	}
	return p, nil
}

// sameService reports whether a and b are the same desired service,
// destinations and all, in the same order.
func sameService(a, b Service) bool {
	return a.Name == b.Name && a.Family == b.Family && a.Protocol == b.Protocol && a.Address == b.Address &&
		a.Port == b.Port && a.FWMark == b.FWMark && a.Scheduler == b.Scheduler && a.Flags == b.Flags &&
		a.Timeout == b.Timeout && a.Netmask == b.Netmask && slices.Equal(a.Destinations, b.Destinations)
}

// read sets r.known to the kernel's table: every service, and the
// destinations of those desired (the others are read if they ever are).
// A service whose destinations could not be read keeps them unread: plan
// tries again and reports the error.
func (r *Reconciler) read(desired []Service) error {
	kernel, err := r.k.GetServices()
	if err != nil {
		return fmt.Errorf("list IPVS services: %w", err)
	}
	want := make(map[ServiceKey]bool, len(desired))
	for _, s := range desired {
		want[s.Key()] = true
	}
	known := make(map[ServiceKey]*knownService, len(kernel))
	for _, ms := range kernel {
		svc := serviceFromMoby(ms)
		key := svc.Key()
		ks := &knownService{ms: ms, svc: svc}
		if want[key] {
			if current, err := r.k.GetDestinations(ms); err == nil {
				ks.dests = destinationMap(current)
			}
		}
		known[key] = ks
	}
	r.known = known
	return nil
}

func destinationMap(current []*moby.Destination) map[netip.AddrPort]Destination {
	m := make(map[netip.AddrPort]Destination, len(current))
	for _, md := range current {
		d := destinationFromMoby(md)
		m[d.Key()] = d
	}
	return m
}

// wrote applies a successful write to r.known, as the kernel would
// return it on the next read.
func (r *Reconciler) wrote(c Change) {
	if r.known == nil {
		return
	}
	switch c.Op {
	case OpCreateService, OpUpdateService:
		ms := c.svc.toMoby()
		ks := r.known[c.key]
		if ks == nil {
			ks = &knownService{dests: map[netip.AddrPort]Destination{}}
			r.known[c.key] = ks
		}
		ks.ms, ks.svc = ms, serviceFromMoby(ms)
	case OpDeleteService:
		delete(r.known, c.key)
	case OpCreateDestination, OpUpdateDestination:
		if ks := r.known[c.key]; ks != nil && ks.dests != nil {
			d := c.dst.asRead()
			ks.dests[d.Key()] = d
		}
	case OpDeleteDestination:
		if ks := r.known[c.key]; ks != nil && ks.dests != nil {
			delete(ks.dests, c.dst.Key())
		}
	}
}

// destinations plans making the kernel's destinations of s (have, by
// address) match s.Destinations. Additions and updates go first and
// deletions last, so a service switching from its sorry server back to
// real servers never has an empty moment. Only what changes is
// described (strings built): a service of 100 unchanged destinations
// costs 100 map lookups.
func (p *plan) destinations(s Service, key ServiceKey, have map[netip.AddrPort]Destination) {
	want := make(map[netip.AddrPort]bool, len(s.Destinations))
	var name string // s.String(), built once it is needed
	change := func(op Op, d Destination) Change {
		if name == "" {
			name = s.String()
		}
		return Change{Op: op, VirtualServer: s.Name, Service: name, Destination: d.String(), svc: s, dst: d, key: key}
	}
	for _, d := range s.Destinations {
		dk := d.Key()
		if want[dk] {
			p.errs = append(p.errs, fmt.Errorf("destination %s of %s: listed twice", d, s))
			continue
		}
		want[dk] = true
		old, ok := have[dk]
		switch {
		case !ok:
			c := change(OpCreateDestination, d)
			c.Now = destString(d)
			p.changes = append(p.changes, c)
		case !destinationEqual(old, d):
			c := change(OpUpdateDestination, d)
			c.Was, c.Now = destString(old), destString(d)
			p.changes = append(p.changes, c)
		}
	}
	// Deleted in a stable order, so a plan reads the same twice.
	var gone []Destination
	for dk, old := range have {
		if !want[dk] {
			gone = append(gone, old)
		}
	}
	slices.SortFunc(gone, func(a, b Destination) int { return a.Key().Compare(b.Key()) })
	for _, old := range gone {
		p.changes = append(p.changes, change(OpDeleteDestination, old))
	}
}

// write makes one planned change in the kernel; the error is the
// kernel's (apply names the object with Change.what).
func (r *Reconciler) write(c Change) error {
	switch c.Op {
	case OpCreateService:
		return r.k.NewService(c.svc.toMoby())
	case OpUpdateService:
		return r.k.UpdateService(c.svc.toMoby())
	case OpDeleteService:
		return r.k.DelService(c.have)
	case OpCreateDestination:
		return r.k.NewDestination(c.svc.toMoby(), c.dst.toMoby())
	case OpUpdateDestination:
		return r.k.UpdateDestination(c.svc.toMoby(), c.dst.toMoby())
	case OpDeleteDestination:
		return r.k.DelDestination(c.svc.toMoby(), c.dst.toMoby())
	}
	return fmt.Errorf("unknown write %q", c.Op)
}

// what names a write for its error, as ipvsadm would.
func (c Change) what() string {
	switch c.Op {
	case OpCreateService:
		return "create service " + c.svc.String()
	case OpUpdateService:
		return "update service " + c.svc.String()
	case OpDeleteService:
		return "delete service " + c.key.String()
	case OpCreateDestination:
		return fmt.Sprintf("add destination %s to %s", c.dst, c.svc)
	case OpUpdateDestination:
		return fmt.Sprintf("update destination %s of %s", c.dst, c.svc)
	case OpDeleteDestination:
		return fmt.Sprintf("delete destination %s from %s", c.dst, c.svc)
	}
	return string(c.Op)
}

// destination reports whether o writes a destination.
func (o Op) destination() bool {
	return o == OpCreateDestination || o == OpUpdateDestination || o == OpDeleteDestination
}

// logMsg is the log line of each write.
func (o Op) logMsg() string {
	switch o {
	case OpCreateService:
		return "service created"
	case OpUpdateService:
		return "service updated"
	case OpDeleteService:
		return "service deleted"
	case OpCreateDestination:
		return "destination added"
	case OpUpdateDestination:
		return "destination updated"
	case OpDeleteDestination:
		return "destination deleted"
	}
	return string(o)
}

func changeAttrs(c Change) []any {
	attrs := []any{"op", strings.Fields(string(c.Op))[0], "vs", c.VirtualServer, "service", c.Service}
	if c.Destination != "" {
		attrs = append(attrs, "rs", c.Destination)
	}
	if c.Was != "" {
		attrs = append(attrs, "was", c.Was)
	}
	if c.Now != "" {
		attrs = append(attrs, "now", c.Now)
	}
	return attrs
}

// destString is what a destination write sets: what destinationEqual
// compares.
func destString(d Destination) string {
	s := fmt.Sprintf("weight %d, %s", d.Weight, d.Forwarding&forwardMask)
	if d.UpperThreshold != 0 || d.LowerThreshold != 0 {
		s += fmt.Sprintf(", thresholds %d-%d", d.LowerThreshold, d.UpperThreshold)
	}
	if d.Sorry {
		s += ", sorry server"
	}
	return s
}

// noteForeign logs each service nobody asked for once, until it goes.
func (r *Reconciler) noteForeign(p *plan) {
	foreign := make(map[ServiceKey]bool, len(p.foreign))
	for _, key := range p.foreign {
		foreign[key] = true
		if !r.logged[key] {
			r.logged[key] = true
			r.log.Info("leaving IPVS service not in configuration alone", "op", "ignore", "service", key.String())
		}
	}
	for key := range r.logged {
		if !foreign[key] {
			delete(r.logged, key) // forget it so a comeback is reported again
		}
	}
}

// Remove deletes exactly the given services (lvsha run --cleanup) and
// forgets them. A service already absent is not an error.
func (r *Reconciler) Remove(services []Service) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, s := range services {
		key := s.Key()
		if err := r.k.DelService(s.toMoby()); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete service %s: %w", s, err))
			continue
		}
		delete(r.owned, key)
		delete(r.known, key)
		delete(r.applied, key)
		r.log.Info("service removed", "op", "delete", "vs", s.Name, "service", s.String())
	}
	return errors.Join(errs...)
}

// Stats are IPVS counters. moby v1.1.0 decodes conns and packet counters
// as 32-bit, so with it those wrap at 2^32; the fields are wider so the
// type does not change when that is fixed.
type Stats struct {
	Conns    uint64
	InPkts   uint64
	OutPkts  uint64
	InBytes  uint64
	OutBytes uint64
	CPS      uint64
	InPPS    uint64
	OutPPS   uint64
	InBPS    uint64
	OutBPS   uint64
}

// ServiceStatus is a kernel service with its counters. Service.Destinations
// is left nil: the destinations are in Destinations, with their counters.
type ServiceStatus struct {
	Service      Service
	Stats        Stats
	Destinations []DestinationStatus
}

// DestinationStatus is a kernel destination with its counters.
type DestinationStatus struct {
	Destination Destination
	ActiveConns int
	InactConns  int
	Stats       Stats
}

// Read returns the whole kernel table with counters, in ipvsadm's sort
// order (see SortServices). Services not managed by lvsha are included.
func (r *Reconciler) Read() ([]ServiceStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kernel, err := r.k.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	var errs []error
	out := make([]ServiceStatus, 0, len(kernel))
	for _, ms := range kernel {
		st := ServiceStatus{Service: serviceFromMoby(ms), Stats: statsFromMoby(ms.Stats)}
		dests, err := r.k.GetDestinations(ms)
		if err != nil {
			errs = append(errs, fmt.Errorf("list destinations of %s: %w", st.Service, err))
		}
		for _, md := range dests {
			st.Destinations = append(st.Destinations, DestinationStatus{
				Destination: destinationFromMoby(md),
				ActiveConns: md.ActiveConnections,
				InactConns:  md.InactiveConnections,
				Stats:       statsFromMoby(moby.SvcStats(md.Stats)),
			})
		}
		out = append(out, st)
	}
	SortServices(out)
	return out, errors.Join(errs...)
}

func statsFromMoby(s moby.SvcStats) Stats {
	return Stats{
		Conns: uint64(s.Connections), InPkts: uint64(s.PacketsIn), OutPkts: uint64(s.PacketsOut),
		InBytes: s.BytesIn, OutBytes: s.BytesOut,
		CPS: uint64(s.CPS), InPPS: uint64(s.PPSIn), OutPPS: uint64(s.PPSOut),
		InBPS: uint64(s.BPSIn), OutBPS: uint64(s.BPSOut),
	}
}

// settingsEqual compares what UpdateService can change. HASHED is the
// kernel's bookkeeping and appears on every service it returns.
func settingsEqual(have, want Service) bool {
	return have.Scheduler == want.Scheduler &&
		have.Flags&^FlagHashed == want.Flags&^FlagHashed &&
		have.Timeout == want.Timeout &&
		have.Netmask == want.Netmask
}

func settingsString(s Service) string {
	return fmt.Sprintf("scheduler=%s flags=%#x timeout=%d netmask=%#x", s.Scheduler, uint32(s.Flags&^FlagHashed), s.Timeout, s.Netmask)
}

// destinationEqual compares what UpdateDestination can change; counters
// and connection counts are transient and ignored.
func destinationEqual(have, want Destination) bool {
	return have.Weight == want.Weight &&
		have.Forwarding&forwardMask == want.Forwarding&forwardMask &&
		have.UpperThreshold == want.UpperThreshold &&
		have.LowerThreshold == want.LowerThreshold
}
