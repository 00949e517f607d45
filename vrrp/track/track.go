// Package track turns what a VRRP instance tracks into its inputs: the
// effective priority from tracked virtual servers and weighted
// track_execs, and fault from tracked interfaces and weight-0
// track_execs.
package track

import (
	"context"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
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

// linkUp is what "up" means for a tracked interface: administratively up
// with carrier. A missing interface is down.
func linkUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.OperState != netlink.OperDown && a.OperState != netlink.OperLowerLayerDown
}

// WatchLinks sends the state of the named interfaces now and after every
// change, until ctx is done; then it closes the channel. It must be called on a thread in the
// interfaces' network namespace (the subscription is bound to it).
func WatchLinks(ctx context.Context, names []string) (<-chan LinkState, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{ListExisting: true}); err != nil {
		return nil, fmt.Errorf("watch links %v: %w", names, err)
	}
	out := make(chan LinkState, 1)
	go func() {
		defer close(done)
		// Closed at the end, so that a consumer ranging over it ends too.
		defer close(out)
		state := LinkState{}
		for _, n := range names {
			state[n] = false
		}
		send := func() {
			cp := LinkState{}
			for k, v := range state {
				cp[k] = v
			}
			// Only the newest state matters: replace an unread one.
			select {
			case <-out:
			default:
			}
			out <- cp
		}
		send()
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				name := u.Link.Attrs().Name
				if _, tracked := state[name]; !tracked {
					continue
				}
				up := linkUp(u.Link) && u.Header.Type != unix.RTM_DELLINK
				if state[name] != up {
					state[name] = up
					send()
				}
			}
		}
	}()
	return out, nil
}

// LinkNames are the interfaces an instance watches: those whose loss is a
// fault and those whose loss lowers its priority.
func LinkNames(in conf.VRRPInstance) []string {
	names := slices.Clone(in.TrackInterfaces)
	for _, ti := range in.TrackInterfaceWeights {
		if !slices.Contains(names, ti.Name) {
			names = append(names, ti.Name)
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
