package instance

import (
	"log/slog"

	"github.com/lvsha/lvsha/alarm"
	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp/transport"
	"github.com/lvsha/lvsha/vrrp/vip"
)

// Shared is what the VRRP instances of one director share on the host, so
// that their cost grows with the number of instances, not with its square
// (issue #21): one receive and one send path per interface and address
// family, and the VIP device with its announcing sockets. Each shared
// resource is opened by the first instance that needs it and closed with
// the last one that used it, so no one has to close a Shared. Its methods
// are safe for concurrent use.
type Shared struct {
	// wire holds the links, each instance's conn an endpoint on one.
	wire *transport.Hub
	// vips holds the VIPs of every instance: one tun device per name,
	// and per interface one announcing socket per family.
	vips *vip.Host
	// clock wakes every instance at its deadlines from one timerfd.
	clock *alarm.Clock
	// follow is the running instances, for BFD fast takeover.
	follow *followers
}

// NewShared returns an empty Shared.
func NewShared() *Shared {
	return &Shared{wire: transport.NewHub(), vips: vip.NewHost(), clock: &alarm.Clock{}, follow: newFollowers()}
}

// Open opens an instance of cfg as Open does, on the resources s shares.
// It must run on a thread in the network namespace of cfg.Interface.
// Instances opened with the same tunName keep their VIPs on one device.
func (s *Shared) Open(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*Instance, error) {
	return s.open(log, cfg, tunName)
}

// openHolder opens cfg's VIP holder on the devices and sockets s shares.
func (s *Shared) openHolder(log *slog.Logger, cfg conf.VRRPInstance, tunName string) (*vip.Holder, error) {
	return s.vips.Open(log, cfg, tunName)
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
