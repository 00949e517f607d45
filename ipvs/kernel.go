package ipvs

import (
	"errors"
	"fmt"

	moby "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Kernel is the part of *moby.Handle the Reconciler uses. Errors from the
// kernel are syscall.Errno values (moby returns the netlink error as is),
// so match them with errors.Is(err, unix.EEXIST) and friends.
type Kernel interface {
	GetServices() ([]*moby.Service, error)
	GetDestinations(*moby.Service) ([]*moby.Destination, error)
	NewService(*moby.Service) error
	UpdateService(*moby.Service) error
	DelService(*moby.Service) error
	NewDestination(*moby.Service, *moby.Destination) error
	UpdateDestination(*moby.Service, *moby.Destination) error
	DelDestination(*moby.Service, *moby.Destination) error
}

var _ Kernel = (*moby.Handle)(nil)

// Errors Open wraps, so callers can tell the two usual setup problems apart
// with errors.Is; the underlying errno stays in the chain.
var (
	ErrUnavailable = errors.New("IPVS is not available in this kernel (try: modprobe ip_vs)")
	ErrPermission  = errors.New("need CAP_NET_ADMIN (run as root)")
)

// Open returns a working IPVS handle in the network namespace at netnsPath
// ("" means the caller's). Close it with Close when done.
//
// moby.New alone proves nothing: when the kernel has no IPVS it logs an
// error, returns a handle anyway, and that handle's requests go to generic
// netlink family 0, which the kernel acknowledges without doing anything —
// GetServices returns an empty table and NewService returns nil (observed
// on a kernel without IPVS). Worse, moby caches the failed family lookup
// for the life of the process. So Open first resolves the "IPVS" generic
// netlink family itself and calls moby.New only once that succeeds; then
// it probes with GetServices, which needs CAP_NET_ADMIN (GENL_ADMIN_PERM)
// like every IPVS command.
func Open(netnsPath string) (*moby.Handle, error) {
	if err := probeFamily(netnsPath); err != nil {
		return nil, err
	}
	h, err := moby.New(netnsPath)
	if err != nil {
		return nil, classify(fmt.Errorf("open IPVS netlink socket%s: %w", inNetns(netnsPath), err))
	}
	if _, err := h.GetServices(); err != nil {
		h.Close()
		return nil, classify(fmt.Errorf("list IPVS services%s: %w", inNetns(netnsPath), err))
	}
	return h, nil
}

func probeFamily(netnsPath string) error {
	ns := netns.None()
	if netnsPath != "" {
		var err error
		ns, err = netns.GetFromPath(netnsPath)
		if err != nil {
			return classify(fmt.Errorf("open network namespace %s: %w", netnsPath, err))
		}
		defer ns.Close()
	}
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_GENERIC)
	if err != nil {
		return classify(fmt.Errorf("open generic netlink socket%s: %w", inNetns(netnsPath), err))
	}
	defer nh.Close()
	if _, err := nh.GenlFamilyGet("IPVS"); err != nil {
		// The generic netlink controller answers ENOENT for a family
		// nobody registered: the ip_vs module is not loaded (or built).
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return classify(fmt.Errorf("look up generic netlink family IPVS%s: %w", inNetns(netnsPath), err))
	}
	return nil
}

// classify puts ErrPermission in front of permission errors so the fix is
// the first thing the operator reads.
func classify(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %w", ErrPermission, err)
	}
	return err
}

func inNetns(path string) string {
	if path == "" {
		return ""
	}
	return " in network namespace " + path
}
