package ipvs

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Changes counts the kernel writes one Apply made successfully.
type Changes struct {
	ServicesCreated     int
	ServicesUpdated     int
	ServicesDeleted     int
	DestinationsCreated int
	DestinationsUpdated int
	DestinationsDeleted int
}

// Total is the number of successful writes.
func (c Changes) Total() int {
	return c.ServicesCreated + c.ServicesUpdated + c.ServicesDeleted +
		c.DestinationsCreated + c.DestinationsUpdated + c.DestinationsDeleted
}

// Reconciler is the one owner of a Kernel: moby's handle is not safe for
// concurrent use, so every method takes the same mutex.
//
// It remembers which services it manages (created, or adopted because the
// desired table described them) so that a service dropped from the
// configuration is deleted, while services it never managed are left
// alone.
type Reconciler struct {
	mu     sync.Mutex
	k      Kernel
	log    *slog.Logger
	owned  map[ServiceKey]string // managed service -> virtual server name
	logged map[ServiceKey]bool   // foreign services already reported
}

// NewReconciler returns a Reconciler writing to k; log may be nil.
func NewReconciler(k Kernel, log *slog.Logger) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{k: k, log: log, owned: map[ServiceKey]string{}, logged: map[ServiceKey]bool{}}
}

// Apply reads the kernel table and writes only the difference from
// desired:
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
// the others: Apply returns all failures joined, each naming its object.
func (r *Reconciler) Apply(desired []Service) (Changes, error) {
	r.mu.Lock()
	defer r.mu.Unlock()

	var ch Changes
	kernel, err := r.k.GetServices()
	if err != nil {
		return ch, fmt.Errorf("list IPVS services: %w", err)
	}
	inKernel := make(map[ServiceKey]*moby.Service, len(kernel))
	for _, ms := range kernel {
		inKernel[serviceFromMoby(ms).Key()] = ms
	}

	var errs []error
	want := make(map[ServiceKey]bool, len(desired))
	for _, s := range desired {
		key := s.Key()
		if want[key] {
			errs = append(errs, fmt.Errorf("service %s: listed twice in the desired table", s))
			continue
		}
		want[key] = true
		delete(r.logged, key)

		var current []*moby.Destination
		if ms, ok := inKernel[key]; !ok {
			if err := r.k.NewService(s.toMoby()); err != nil {
				errs = append(errs, fmt.Errorf("create service %s: %w", s, err))
				continue
			}
			ch.ServicesCreated++
			r.owned[key] = s.Name
			r.log.Info("service created", "op", "create", "vs", s.Name, "service", s.String())
		} else {
			if _, ok := r.owned[key]; !ok {
				r.log.Info("service adopted", "op", "adopt", "vs", s.Name, "service", s.String())
			}
			r.owned[key] = s.Name
			if have := serviceFromMoby(ms); !settingsEqual(have, s) {
				if err := r.k.UpdateService(s.toMoby()); err != nil {
					errs = append(errs, fmt.Errorf("update service %s: %w", s, err))
				} else {
					ch.ServicesUpdated++
					r.log.Info("service updated", "op", "update", "vs", s.Name, "service", s.String(), "was", settingsString(have))
				}
			}
			current, err = r.k.GetDestinations(ms)
			if err != nil {
				errs = append(errs, fmt.Errorf("list destinations of %s: %w", s, err))
				continue
			}
		}
		errs = append(errs, r.applyDestinations(s, current, &ch)...)
	}

	for key, name := range r.owned {
		if want[key] {
			continue
		}
		ms, ok := inKernel[key]
		if !ok {
			delete(r.owned, key) // someone else removed it already
			continue
		}
		if err := r.k.DelService(ms); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete service %s: %w", key, err))
			continue
		}
		delete(r.owned, key)
		delete(inKernel, key) // gone: not a foreign service to report
		ch.ServicesDeleted++
		r.log.Info("service deleted", "op", "delete", "vs", name, "service", key.String())
	}

	for key := range r.logged {
		if _, ok := inKernel[key]; !ok {
			delete(r.logged, key) // forget it so a comeback is reported again
		}
	}
	for key := range inKernel {
		if _, owned := r.owned[key]; !want[key] && !owned && !r.logged[key] {
			r.logged[key] = true
			r.log.Info("leaving IPVS service not in configuration alone", "op", "ignore", "service", key.String())
		}
	}
	return ch, errors.Join(errs...)
}

// applyDestinations makes the kernel's destinations of s (current) match
// s.Destinations. Additions and updates go first and deletions last, so a
// service switching from its sorry server back to real servers never has
// an empty moment.
func (r *Reconciler) applyDestinations(s Service, current []*moby.Destination, ch *Changes) []error {
	var errs []error
	ms := s.toMoby()
	have := make(map[netip.AddrPort]Destination, len(current))
	for _, md := range current {
		d := destinationFromMoby(md)
		have[d.Key()] = d
	}
	want := make(map[netip.AddrPort]bool, len(s.Destinations))
	for _, d := range s.Destinations {
		key := d.Key()
		if want[key] {
			errs = append(errs, fmt.Errorf("destination %s of %s: listed twice", d, s))
			continue
		}
		want[key] = true
		old, ok := have[key]
		switch {
		case !ok:
			if err := r.k.NewDestination(ms, d.toMoby()); err != nil {
				errs = append(errs, fmt.Errorf("add destination %s to %s: %w", d, s, err))
				continue
			}
			ch.DestinationsCreated++
			r.log.Info("destination added", "op", "create", "vs", s.Name, "rs", d.String(), "weight", d.Weight, "sorry", d.Sorry)
		case !destinationEqual(old, d):
			if err := r.k.UpdateDestination(ms, d.toMoby()); err != nil {
				errs = append(errs, fmt.Errorf("update destination %s of %s: %w", d, s, err))
				continue
			}
			ch.DestinationsUpdated++
			r.log.Info("destination updated", "op", "update", "vs", s.Name, "rs", d.String(), "weight", d.Weight, "was_weight", old.Weight)
		}
	}
	for key, old := range have {
		if want[key] {
			continue
		}
		if err := r.k.DelDestination(ms, old.toMoby()); err != nil {
			errs = append(errs, fmt.Errorf("delete destination %s from %s: %w", old, s, err))
			continue
		}
		ch.DestinationsDeleted++
		r.log.Info("destination deleted", "op", "delete", "vs", s.Name, "rs", old.String())
	}
	return errs
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
