// Package track turns what a VRRP instance tracks into its inputs: the
// effective priority, lowered by tracked virtual servers with no real
// server up and by weighted tracked interfaces and track_execs that are
// down or failing; and fault, from the instance's own interface and the
// tracked interfaces being down, weight-0 track_execs, and a link state
// that is not known (a lost link subscription). It decides from what it is told; vrrp/group gathers
// the sources and feeds them to each instance.
package track

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// Priority is the instance's effective priority: base lowered by the
// summed weights of whatever it tracks that is down or failing
// (keepalived's track_script weight). It never goes below 1: 0 is
// reserved for a master's resignation (RFC 5798 5.2.4). A lowered address
// owner (255) stops being the owner, as in keepalived.
func Priority(base, lowered int) int {
	return max(base-lowered, 1)
}

// VirtualServersLowered is the summed weight of the tracked virtual
// servers that have no real server up: native tracking, no script.
func VirtualServersLowered(tracked []conf.TrackVirtualServer, anyUp func(vs string) bool) int {
	n := 0
	for _, t := range tracked {
		if !anyUp(t.Name) {
			n += t.Weight
		}
	}
	return n
}

// LinkState reports, for each tracked interface, whether it is up.
type LinkState map[string]bool

// AllUp reports whether every tracked interface is up; an instance with a
// tracked interface down is in fault.
func (s LinkState) AllUp() bool {
	for _, up := range s {
		if !up {
			return false
		}
	}
	return true
}

// Down lists the tracked interfaces that are down, sorted.
func (s LinkState) Down() []string {
	var out []string
	for n, up := range s {
		if !up {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Link is one interface as a link subscription reports it.
type Link struct {
	Name string
	Up   bool
}

// LinkUpdate is one event of a link subscription: a link's new state,
// or, as its last event, why the subscription died (Err set).
type LinkUpdate struct {
	Link
	Err error
}

// Subscribe opens a link subscription: it returns every link present now
// and a channel carrying each change after that, which closes when the
// subscription dies (after an update with Err) or ctx is done. The
// subscription's goroutines have ended once the channel is closed.
type Subscribe func(ctx context.Context) (current []Link, updates <-chan LinkUpdate, err error)

// LinkReport is what a link watch reports: the state of every tracked
// interface, or, with Err set, that the state is not known (no
// subscription), which must not leave a master in place.
type LinkReport struct {
	State LinkState // nil when Err is set
	Err   error
	// Lost, on the first report of a new subscription, is why the one
	// before it died.
	Lost error
}

// Backoff bounds the waits between attempts to subscribe.
type Backoff struct{ Min, Max time.Duration }

// The waits start low, as a lost subscription (an overrun receive
// buffer: ENOBUFS) usually comes back at the first try, and stay below a
// typical Master_Down_Interval, so that a lost subscription is retried
// while the state it guards still matters.
const (
	minResubscribe = 100 * time.Millisecond
	maxResubscribe = 2 * time.Second
)

// Links reports the state of the named interfaces now and after every
// change, from the kernel's link notifications in the network namespace
// of the calling thread (a resubscription goes to the same namespace,
// whatever thread it runs on). See Watch.
func Links(ctx context.Context, names []string) <-chan LinkReport {
	ns, err := netns.Get()
	sub := func(ctx context.Context) ([]Link, <-chan LinkUpdate, error) {
		if err != nil {
			return nil, nil, fmt.Errorf("network namespace: %w", err)
		}
		return netlinkSubscribe(ctx, ns)
	}
	return watch(ctx, names, sub, Backoff{Min: minResubscribe, Max: maxResubscribe}, func() {
		if err == nil {
			ns.Close()
		}
	})
}

// WatchLinks is Links without the reports of an unknown state, for a
// caller that only reads states (integration/track_test.go); it never
// fails. Supervision uses Links.
func WatchLinks(ctx context.Context, names []string) (<-chan LinkState, error) {
	reports := Links(ctx, names)
	out := make(chan LinkState, 1)
	go func() {
		defer close(out)
		for r := range reports {
			if r.Err != nil {
				continue
			}
			select {
			case <-out:
			default:
			}
			out <- r.State
		}
	}()
	return out, nil
}

// Watch reports the state of the named interfaces as sub sees them, now
// and after every change, until ctx is done; then it closes the channel,
// its goroutine having ended. A missing interface is down. When the
// subscription dies, Watch subscribes again at once: the new
// subscription's listing gives the state as it is then, and nothing is
// reported in between but why the old one died (Lost), so an overrun
// that resubscribes at once moves no VIP. When subscribing fails, Watch
// reports Err (state unknown: the tracking instance goes to fault) and
// tries again after a wait that grows from b.Min to b.Max, until a
// subscription holds; so does a subscription that dies within b.Max
// of opening.
func Watch(ctx context.Context, names []string, sub Subscribe, b Backoff) <-chan LinkReport {
	return watch(ctx, names, sub, b, nil)
}

// watch is Watch, calling cleanup (if set) when it ends.
func watch(ctx context.Context, names []string, sub Subscribe, b Backoff, cleanup func()) <-chan LinkReport {
	out := make(chan LinkReport, 1)
	go func() {
		defer close(out)
		if cleanup != nil {
			defer cleanup()
		}
		// Only the newest report matters: replace an unread one. This
		// goroutine is the only sender, so the send never blocks.
		report := func(r LinkReport) {
			select {
			case <-out:
			default:
			}
			out <- r
		}
		var last LinkReport
		var lost error
		wait := time.Duration(0)
		for {
			current, updates, err := sub(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				err = fmt.Errorf("watch links %v: %w", names, err)
				if last.Err == nil || last.Err.Error() != err.Error() {
					last = LinkReport{Err: err}
					report(last)
				}
				wait = min(max(2*wait, b.Min), b.Max)
				if !pause(ctx, wait) {
					return
				}
				continue
			}
			opened := time.Now()
			state := LinkState{}
			for _, n := range names {
				state[n] = false
			}
			for _, l := range current {
				if _, tracked := state[l.Name]; tracked {
					state[l.Name] = l.Up
				}
			}
			if last.Err != nil || lost != nil || !maps.Equal(last.State, state) {
				last = LinkReport{State: maps.Clone(state), Lost: lost}
				report(last)
			}
			lost = nil
			for u := range updates {
				if u.Err != nil {
					lost = u.Err
					continue
				}
				if up, tracked := state[u.Name]; tracked && up != u.Up {
					state[u.Name] = u.Up
					last = LinkReport{State: maps.Clone(state)}
					report(last)
				}
			}
			if ctx.Err() != nil {
				return
			}
			if lost == nil {
				lost = errors.New("link subscription closed")
			}
			if time.Since(opened) >= b.Max {
				wait = 0
				continue
			}
			// Dying as soon as it opens: not a passing overrun. Wait
			// as after a failure, the state unknown meanwhile.
			last = LinkReport{Err: fmt.Errorf("watch links %v: %w", names, lost)}
			lost = nil
			report(last)
			wait = min(max(2*wait, b.Min), b.Max)
			if !pause(ctx, wait) {
				return
			}
		}
	}()
	return out
}

// netlinkSubscribe is Subscribe on the kernel's rtnetlink link
// notifications in the network namespace ns.
func netlinkSubscribe(ctx context.Context, ns netns.NsHandle) ([]Link, <-chan LinkUpdate, error) {
	raw := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	var lost lostError
	at := otherNamespace(ns)
	err := netlink.LinkSubscribeWithOptions(raw, done, netlink.LinkSubscribeOptions{
		Namespace: at,
		// Called on the subscription's goroutine; a receive error is the
		// last one before it closes raw.
		ErrorCallback: lost.set,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe to link changes: %w", err)
	}
	// Subscribed first, listed second: a change in between shows in both,
	// and the updates after the listing end at the newest state.
	h, err := routeHandle(at)
	var links []netlink.Link
	if err == nil {
		links, err = h.LinkList()
		h.Close()
	}
	if err != nil {
		close(done)
		for range raw {
		}
		return nil, nil, fmt.Errorf("list links: %w", err)
	}
	var current []Link
	for _, l := range links {
		current = append(current, Link{Name: l.Attrs().Name, Up: linkUp(l)})
	}
	return current, forward(ctx, raw, done, &lost, func(u netlink.LinkUpdate) Link {
		return Link{Name: u.Link.Attrs().Name, Up: linkUp(u.Link) && u.Header.Type != unix.RTM_DELLINK}
	}), nil
}

// otherNamespace is ns for netlink's options, or nil when ns is the
// calling thread's namespace (the daemon's always is): netlink enters a
// namespace it is given, even its own, and entering (setns) needs
// CAP_SYS_ADMIN, which lvsha run drops after start.
func otherNamespace(ns netns.NsHandle) *netns.NsHandle {
	if cur, err := netns.Get(); err == nil {
		same := cur.Equal(ns)
		cur.Close()
		if same {
			return nil
		}
	}
	return &ns
}

// routeHandle is a route netlink handle in at (nil: here).
func routeHandle(at *netns.NsHandle) (*netlink.Handle, error) {
	if at == nil {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	return netlink.NewHandleAt(*at, unix.NETLINK_ROUTE)
}

// lostError is why a netlink subscription died, as its error callback
// says.
type lostError struct {
	mu  sync.Mutex
	err error
}

func (l *lostError) set(err error) { l.mu.Lock(); l.err = err; l.mu.Unlock() }

func (l *lostError) get() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// forward turns a netlink subscription's raw updates into LinkUpdates
// (conv), until ctx is done (it then closes done, ending the
// subscription) or the subscription dies (its last update then says
// why). The channel closes once the subscription has ended.
func forward[U any](ctx context.Context, raw <-chan U, done chan struct{}, lost *lostError, conv func(U) Link) <-chan LinkUpdate {
	out := make(chan LinkUpdate)
	go func() {
		defer close(out)
		stop := ctx.Done()
		for {
			select {
			case <-stop:
				// Closing done closes the socket; raw then closes.
				close(done)
				stop = nil
			case u, ok := <-raw:
				switch {
				case !ok && stop == nil:
					return
				case !ok:
					close(done)
					err := lost.get()
					if err == nil {
						err = errors.New("subscription closed by the kernel")
					}
					select {
					case out <- LinkUpdate{Err: err}:
					case <-ctx.Done():
					}
					return
				case stop == nil:
					// Stopping: drain, so the receiver can end.
					continue
				}
				select {
				case out <- LinkUpdate{Link: conv(u)}:
				case <-stop:
					close(done)
					stop = nil
				}
			}
		}
	}()
	return out
}

// Addrs reports, as Links does for links, whether each named address is
// on its interface and usable as a packet's source (past DAD), from the
// kernel's address notifications in the network namespace of the
// calling thread. A name is AddrName's.
func Addrs(ctx context.Context, names []string) <-chan LinkReport {
	ns, err := netns.Get()
	ifindexes := ifindexesOf(names)
	sub := func(ctx context.Context) ([]Link, <-chan LinkUpdate, error) {
		if err != nil {
			return nil, nil, fmt.Errorf("network namespace: %w", err)
		}
		return netlinkAddrSubscribe(ctx, ns, ifindexes)
	}
	return watch(ctx, names, sub, Backoff{Min: minResubscribe, Max: maxResubscribe}, func() {
		if err == nil {
			ns.Close()
		}
	})
}

// AddrName names address a on the interface of index ifindex for Addrs.
func AddrName(a netip.Addr, ifindex int) string {
	return a.String() + "%" + strconv.Itoa(ifindex)
}

// netlinkAddrSubscribe is Subscribe on the kernel's rtnetlink address
// notifications in the network namespace ns, of the interfaces ifindexes
// (all if nil), each address named by AddrName and up while it is usable.
func netlinkAddrSubscribe(ctx context.Context, ns netns.NsHandle, ifindexes []int) ([]Link, <-chan LinkUpdate, error) {
	raw := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	var lost lostError
	at := otherNamespace(ns)
	err := addrSubscribe(at, ifindexes, raw, done, &lost)
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe to address changes: %w", err)
	}
	h, err := routeHandle(at)
	var addrs []netlink.Addr
	if err == nil {
		addrs, err = h.AddrList(nil, netlink.FAMILY_ALL)
		h.Close()
	}
	if err != nil {
		close(done)
		for range raw {
		}
		return nil, nil, fmt.Errorf("list addresses: %w", err)
	}
	var current []Link
	for _, a := range addrs {
		current = append(current, addrLink(a.IP, a.LinkIndex, a.Flags, true))
	}
	return current, forward(ctx, raw, done, &lost, func(u netlink.AddrUpdate) Link {
		return addrLink(u.LinkAddress.IP, u.LinkIndex, u.Flags, u.NewAddr)
	}), nil
}

// addrLink is an address as Addrs reports it: up while present and
// neither tentative nor failed DAD, which the kernel refuses as a source.
func addrLink(ip net.IP, ifindex, flags int, present bool) Link {
	a, _ := netip.AddrFromSlice(ip)
	return Link{Name: AddrName(a.Unmap(), ifindex), Up: present && flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0}
}

// linkUp is what "up" means for a tracked interface: administratively up
// with carrier. A missing interface is down.
func linkUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.OperState != netlink.OperDown && a.OperState != netlink.OperLowerLayerDown
}

// LinkNames are the interfaces an instance watches: those whose loss is a
// fault (FaultingLinks) and those whose loss lowers its priority.
func LinkNames(in conf.VRRPInstance) []string {
	names := FaultingLinks(in)
	for _, ti := range in.TrackInterfaceWeights {
		if !slices.Contains(names, ti.Name) {
			names = append(names, ti.Name)
		}
	}
	return names
}

// FaultingLinks are the interfaces whose loss puts an instance in fault:
// its own, first, unless TrackOwnInterface is off (adverts cannot go out
// there, and a master that kept its VIPs would be a second holder once
// a backup took over), and track_interfaces.
func FaultingLinks(in conf.VRRPInstance) []string {
	var names []string
	if in.TrackOwnInterface && in.Interface != "" {
		names = append(names, in.Interface)
	}
	for _, n := range in.TrackInterfaces {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// LinkEffect is what the tracked interfaces that are down do to an
// instance: a fault when one of faulting is down, and the summed weights
// of the weighted ones down.
func LinkEffect(faulting []string, weighted []conf.TrackInterface, down []string) (fault bool, lowered int) {
	for _, n := range down {
		if slices.Contains(faulting, n) {
			fault = true
		}
	}
	for _, ti := range weighted {
		if slices.Contains(down, ti.Name) {
			lowered += ti.Weight
		}
	}
	return fault, lowered
}

// pause waits d, or less when ctx ends first; it reports whether ctx is
// still running.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
