package ipvstest_test

import (
	"errors"
	"net"
	"testing"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

func svc(addr string, port uint16) *moby.Service {
	return &moby.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: net.ParseIP(addr).To4(), Port: port, SchedName: "rr", Netmask: 0xffffffff}
}

func dst(addr string, port uint16, w int) *moby.Destination {
	return &moby.Destination{Address: net.ParseIP(addr), Port: port, Weight: w}
}

// TestKernelRules runs the kernel's rules (the same table
// integration.TestKernelRules runs on the real kernel) on the fake, and
// checks that the fake counts every write made through the interface,
// failed ones included.
func TestKernelRules(t *testing.T) {
	for _, r := range ipvstest.Rules() {
		t.Run(r.Name, func(t *testing.T) {
			k := &ipvstest.Kernel{}
			if err := ipvstest.Base(k); err != nil {
				t.Fatal(err)
			}
			before := k.Writes()
			c := &countingKernel{Kernel: k}
			if err := r.Run(c); err != nil {
				t.Error(err)
			}
			if got := k.Writes() - before; got != c.writes {
				t.Errorf("fake counted %d writes, the rule made %d", got, c.writes)
			}
		})
	}
}

// countingKernel counts the writes made through the interface.
type countingKernel struct {
	ipvs.Kernel
	writes int
}

func (c *countingKernel) NewService(s *moby.Service) error {
	c.writes++
	return c.Kernel.NewService(s)
}

func (c *countingKernel) UpdateService(s *moby.Service) error {
	c.writes++
	return c.Kernel.UpdateService(s)
}

func (c *countingKernel) DelService(s *moby.Service) error {
	c.writes++
	return c.Kernel.DelService(s)
}

func (c *countingKernel) NewDestination(s *moby.Service, d *moby.Destination) error {
	c.writes++
	return c.Kernel.NewDestination(s, d)
}

func (c *countingKernel) UpdateDestination(s *moby.Service, d *moby.Destination) error {
	c.writes++
	return c.Kernel.UpdateDestination(s, d)
}

func (c *countingKernel) DelDestination(s *moby.Service, d *moby.Destination) error {
	c.writes++
	return c.Kernel.DelDestination(s, d)
}

func TestKernelReadBack(t *testing.T) {
	k := &ipvstest.Kernel{}
	s := svc("10.0.0.1", 80)
	s.Flags = uint32(ipvs.FlagPersistent)
	fwm := &moby.Service{AddressFamily: unix.AF_INET, FWMark: 3, Protocol: unix.IPPROTO_TCP, Address: net.ParseIP("10.0.0.1"), Port: 80, SchedName: "wlc", Netmask: 0xffffffff}
	for _, n := range []*moby.Service{s, fwm} {
		if err := k.NewService(n); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := k.GetServices()
	if len(got) != 2 {
		t.Fatalf("%d services, want 2", len(got))
	}
	for _, g := range got {
		if g.Flags&uint32(ipvs.FlagHashed) == 0 {
			t.Errorf("service %v read back without HASHED", g)
		}
		if g.FWMark != 0 && (g.Protocol != 0 || g.Address != nil || g.Port != 0) {
			t.Errorf("fwmark service read back with protocol/address/port: %+v", g)
		}
	}
	if got[0].Flags&^uint32(ipvs.FlagHashed) != uint32(ipvs.FlagPersistent) {
		t.Errorf("flags = %#x, want PERSISTENT|HASHED", got[0].Flags)
	}
	// The read-back identifies the service for later calls, as with moby.
	if err := k.NewDestination(got[1], dst("10.0.1.1", 0, 1)); err != nil {
		t.Errorf("destination on read-back fwmark service: %v", err)
	}
	// Copies: changing a result does not change the table.
	got[0].SchedName = "wrr"
	again, _ := k.GetServices()
	if again[0].SchedName != "rr" {
		t.Error("GetServices returned the fake's own object")
	}
	// A dump of destinations of a missing service is empty, not an error.
	if d, err := k.GetDestinations(svc("10.9.9.9", 1)); err != nil || len(d) != 0 {
		t.Errorf("GetDestinations(missing) = %v, %v; want empty, nil", d, err)
	}
}

func TestFailFuncLeavesTableUnchanged(t *testing.T) {
	k := &ipvstest.Kernel{}
	k.SetFail(func(op string, _ *moby.Service, _ *moby.Destination) error {
		if op == ipvstest.OpNewService {
			return unix.ENOMEM
		}
		return nil
	})
	if err := k.NewService(svc("10.0.0.1", 80)); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("NewService = %v, want ENOMEM", err)
	}
	if got, _ := k.GetServices(); len(got) != 0 {
		t.Errorf("failed NewService left %d services", len(got))
	}
	if k.WritesByOp()[ipvstest.OpNewService] != 1 {
		t.Errorf("failed write not counted: %v", k.WritesByOp())
	}
}
