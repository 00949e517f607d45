package instance

import (
	"log/slog"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// Shared is what the VRRP instances of one director share on the host, so
// that their cost grows with the number of instances, not with its square:
// one receive and one send path per interface and address family (issue
// #21), and the VIP devices. Each shared resource is opened by the first
// instance that needs it and closed with the last one that used it, so no
// one has to close a Shared. Its methods are safe for concurrent use.
type Shared struct {
	// wire holds the links, each instance's conn an endpoint on one.
	wire *transport.Hub
}

// NewShared returns an empty Shared.
func NewShared() *Shared { return &Shared{wire: transport.NewHub()} }

// Open opens an instance of cfg as Open does, on the resources s shares.
// It must run on a thread in the network namespace of cfg.Interface.
func (s *Shared) Open(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Instance, error) {
	return open(log, cfg, tunName, s.listen)
}

func (s *Shared) listen(cfg transport.Config) (AdvertConn, error) {
	e, err := s.wire.Listen(cfg)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Links reports what each shared link dropped before any instance saw it.
func (s *Shared) Links() []transport.LinkStats { return s.wire.Stats() }
