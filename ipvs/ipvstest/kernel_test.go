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

// TestKernelRules checks the errno of each rule the fake enforces, as
// ip_vs_ctl.c returns it. Each step runs on a kernel holding service
// 10.0.0.1:80 with destination 10.0.1.1:80.
func TestKernelRules(t *testing.T) {
	s := svc("10.0.0.1", 80)
	missing := svc("10.0.0.9", 80)
	tests := []struct {
		name string
		op   func(k *ipvstest.Kernel) error
		want error
	}{
		{"duplicate service", func(k *ipvstest.Kernel) error { return k.NewService(svc("10.0.0.1", 80)) }, unix.EEXIST},
		{"unknown scheduler", func(k *ipvstest.Kernel) error {
			n := svc("10.0.0.2", 80)
			n.SchedName = "nosuch"
			return k.NewService(n)
		}, unix.ENOENT},
		{"IPv6 netmask 0", func(k *ipvstest.Kernel) error {
			return k.NewService(&moby.Service{AddressFamily: unix.AF_INET6, Protocol: unix.IPPROTO_TCP, Address: net.ParseIP("2001:db8::1"), Port: 80, SchedName: "rr"})
		}, unix.EINVAL},
		{"bad protocol", func(k *ipvstest.Kernel) error {
			n := svc("10.0.0.2", 80)
			n.Protocol = 99
			return k.NewService(n)
		}, unix.EPROTONOSUPPORT},
		{"update missing service", func(k *ipvstest.Kernel) error { return k.UpdateService(missing) }, unix.ESRCH},
		{"delete missing service", func(k *ipvstest.Kernel) error { return k.DelService(missing) }, unix.ESRCH},
		{"destination on missing service", func(k *ipvstest.Kernel) error { return k.NewDestination(missing, dst("10.0.1.2", 80, 1)) }, unix.ESRCH},
		{"duplicate destination", func(k *ipvstest.Kernel) error { return k.NewDestination(s, dst("10.0.1.1", 80, 5)) }, unix.EEXIST},
		{"update missing destination", func(k *ipvstest.Kernel) error { return k.UpdateDestination(s, dst("10.0.1.2", 80, 1)) }, unix.ENOENT},
		{"delete missing destination", func(k *ipvstest.Kernel) error { return k.DelDestination(s, dst("10.0.1.2", 80, 1)) }, unix.ENOENT},
		{"negative weight", func(k *ipvstest.Kernel) error { return k.NewDestination(s, dst("10.0.1.2", 80, -1)) }, unix.ERANGE},
		{"lower threshold above upper", func(k *ipvstest.Kernel) error {
			d := dst("10.0.1.2", 80, 1)
			d.LowerThreshold = 1
			return k.NewDestination(s, d)
		}, unix.ERANGE},
		{"IPv6 destination in IPv4 service over NAT", func(k *ipvstest.Kernel) error {
			return k.NewDestination(s, dst("2001:db8::2", 80, 1))
		}, unix.EINVAL},
		{"valid destination", func(k *ipvstest.Kernel) error { return k.NewDestination(s, dst("10.0.1.2", 80, 1)) }, nil},
		{"valid mixed-family tunnel destination", func(k *ipvstest.Kernel) error {
			d := dst("2001:db8::2", 80, 1)
			d.ConnectionFlags = moby.ConnectionFlagTunnel
			return k.NewDestination(s, d)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := &ipvstest.Kernel{}
			if err := k.NewService(s); err != nil {
				t.Fatal(err)
			}
			if err := k.NewDestination(s, dst("10.0.1.1", 80, 1)); err != nil {
				t.Fatal(err)
			}
			before := k.Writes()
			err := tc.op(k)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
			if k.Writes() != before+1 {
				t.Errorf("write not counted: %d -> %d", before, k.Writes())
			}
		})
	}
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
