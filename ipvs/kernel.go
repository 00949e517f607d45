package ipvs

import (
	"errors"
	"fmt"

	moby "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Kernel is what the Reconciler and the sync daemon control use: the
// table methods of *moby.Handle, and the sync daemon commands (Daemons)
// moby numbers but does not implement. Handle is the real one and
// ipvstest.Kernel a fake. Errors from the kernel are syscall.Errno values
// (moby returns the netlink error as is; Handle's daemon methods wrap it
// with what failed), so match them with errors.Is(err, unix.EEXIST) and
// friends.
type Kernel interface {
	GetServices() ([]*moby.Service, error)
	GetDestinations(*moby.Service) ([]*moby.Destination, error)
	NewService(*moby.Service) error
	UpdateService(*moby.Service) error
	DelService(*moby.Service) error
	NewDestination(*moby.Service, *moby.Destination) error
	UpdateDestination(*moby.Service, *moby.Destination) error
	DelDestination(*moby.Service, *moby.Destination) error
	Daemons
}

var _ Kernel = (*Handle)(nil)

// Handle is an open IPVS handle in one network namespace: moby's for the
// table, not safe for concurrent use (the Reconciler holds it under its
// mutex), and a generic netlink socket of its own for the sync daemons,
// whose methods are safe for concurrent use with anything (the socket
// takes one request at a time). A daemon is the kernel's, not the
// socket's: it keeps running after Close.
type Handle struct {
	*moby.Handle
	daemons *nl.SocketHandle
	family  uint16 // the IPVS generic netlink family's id
}

// Close closes both sockets.
func (h *Handle) Close() {
	h.Handle.Close()
	h.daemons.Close()
}

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
func Open(netnsPath string) (*Handle, error) {
	ns := netns.None()
	if netnsPath != "" {
		var err error
		ns, err = netns.GetFromPath(netnsPath)
		if err != nil {
			return nil, classify(fmt.Errorf("open network namespace %s: %w", netnsPath, err))
		}
		defer ns.Close()
	}
	family, err := probeFamily(ns, netnsPath)
	if err != nil {
		return nil, err
	}
	daemons, err := openGenl(ns, netnsPath)
	if err != nil {
		return nil, err
	}
	h, err := moby.New(netnsPath)
	if err != nil {
		daemons.Close()
		return nil, classify(fmt.Errorf("open IPVS netlink socket%s: %w", inNetns(netnsPath), err))
	}
	if _, err := h.GetServices(); err != nil {
		h.Close()
		daemons.Close()
		return nil, classify(fmt.Errorf("list IPVS services%s: %w", inNetns(netnsPath), err))
	}
	return &Handle{Handle: h, daemons: daemons, family: family}, nil
}

// openGenl opens the generic netlink socket the sync daemon commands go
// over, in network namespace ns.
func openGenl(ns netns.NsHandle, netnsPath string) (*nl.SocketHandle, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_GENERIC)
	if err != nil {
		return nil, classify(fmt.Errorf("open generic netlink socket%s: %w", inNetns(netnsPath), err))
	}
	// Bounded, so a dump the kernel never finishes fails instead of
	// hanging its caller (commands do not wait: see Handle.command);
	// extended acks make the kernel say which attribute its policy
	// refused.
	tv := nl.SocketTimeoutTv
	if err := errors.Join(s.SetSendTimeout(&tv), s.SetReceiveTimeout(&tv)); err != nil {
		s.Close()
		return nil, fmt.Errorf("set timeouts on generic netlink socket%s: %w", inNetns(netnsPath), err)
	}
	_ = s.SetExtAck(true) // only richer messages; kernels before 4.12 lack it
	return &nl.SocketHandle{Socket: s}, nil
}

// probeFamily resolves the IPVS generic netlink family in ns.
func probeFamily(ns netns.NsHandle, netnsPath string) (uint16, error) {
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_GENERIC)
	if err != nil {
		return 0, classify(fmt.Errorf("open generic netlink socket%s: %w", inNetns(netnsPath), err))
	}
	defer nh.Close()
	f, err := nh.GenlFamilyGet("IPVS")
	if err != nil {
		// The generic netlink controller answers ENOENT for a family
		// nobody registered: the ip_vs module is not loaded (or built).
		if errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return 0, classify(fmt.Errorf("look up generic netlink family IPVS%s: %w", inNetns(netnsPath), err))
	}
	return f.ID, nil
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
