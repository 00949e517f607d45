package instance

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/lvsha/lvsha/conf"
)

// cfgHolder records the configs its Reconfigure is given.
type cfgHolder struct {
	fakeHolder
	cfgs []conf.VRRPInstance
}

func (h *cfgHolder) Reconfigure(_ context.Context, cfg conf.VRRPInstance, _ bool) error {
	h.cfgs = append(h.cfgs, cfg)
	return nil
}

// A reload's new VIPs reach the holder through the VIP worker as the reload gave
// them, each request with its own config even when a second reload is
// queued behind the first.
func TestReloadReachesHolder(t *testing.T) {
	h := &cfgHolder{}
	i := newTestInstance(t, h)
	var want [][]netip.Prefix
	for _, vip := range []string{"10.0.0.101/24", "10.0.0.102/24"} {
		cfg := testConfig()
		cfg.VirtualIPs = []netip.Prefix{netip.MustParsePrefix(vip)}
		want = append(want, cfg.VirtualIPs)
		if err := i.reconfigure(cfg); err != nil {
			t.Fatal(err)
		}
	}
	for len(i.vipOps) > 0 {
		i.doVIP(context.Background(), <-i.vipOps, nil)
	}
	if len(h.cfgs) != len(want) {
		t.Fatalf("holder reconfigured %d times, want %d", len(h.cfgs), len(want))
	}
	for n, cfg := range h.cfgs {
		if !slices.Equal(cfg.VirtualIPs, want[n]) {
			t.Errorf("reload %d reached the holder with VIPs %v, want %v", n, cfg.VirtualIPs, want[n])
		}
	}
}
