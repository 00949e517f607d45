package ipvs_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// TestSchedulersReachTheKernel programs a service with every scheduler a
// configuration may name, from the TOML through Desired to the fake kernel,
// whose own list stands for the kernel's: a name added to conf's list that
// the kernel lacks fails here, before it fails on a director.
func TestSchedulersReachTheKernel(t *testing.T) {
	if got, want := ipvs.Schedulers(), conf.Schedulers(); !slices.Equal(got, want) {
		t.Fatalf("ipvs.Schedulers() = %v, conf.Schedulers() = %v; want the one list", got, want)
	}
	for _, sched := range ipvs.Schedulers() {
		t.Run(sched, func(t *testing.T) {
			text := fmt.Sprintf("[[virtual_server]]\naddress = \"10.0.0.1:80\"\nscheduler = %q\n"+
				"[[virtual_server.real_server]]\naddress = \"10.0.1.1:80\"\n", sched)
			c, err := conf.Parse("s.toml", []byte(text))
			if err != nil {
				t.Fatalf("conf rejects scheduler %s: %v", sched, err)
			}
			k := &ipvstest.Kernel{}
			apply(t, ipvs.NewReconciler(k, nil), ipvs.Desired(c, nil))
			svcs, err := k.GetServices()
			if err != nil {
				t.Fatal(err)
			}
			if len(svcs) != 1 || svcs[0].SchedName != sched {
				t.Errorf("kernel holds %d services, first %+v; want one with scheduler %s", len(svcs), svcs, sched)
			}
		})
	}
	for _, sched := range ipvstest.Schedulers() {
		if !slices.Contains(ipvs.Schedulers(), sched) {
			t.Errorf("the kernel has scheduler %s, which conf does not accept", sched)
		}
	}
}
