package instance

import (
	"log/slog"

	"github.com/lvsha/lvsha/conf"
)

// Shared is what the VRRP instances of one director share on the host, so
// that their cost grows with the number of instances, not with its square:
// (to come, issue #21) one receive and one send path per interface and
// address family, and the VIP devices. Each shared resource is opened by
// the first instance that needs it and closed with the last one that
// used it, so no one has to close a Shared. Its methods are safe for
// concurrent use.
type Shared struct{}

// NewShared returns an empty Shared.
func NewShared() *Shared { return &Shared{} }

// Open opens an instance of cfg as Open does, on the resources s shares.
// It must run on a thread in the network namespace of cfg.Interface.
func (s *Shared) Open(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Instance, error) {
	return Open(log, cfg, tunName)
}
