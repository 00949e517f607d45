package instance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// fakeHolder records which of its methods were called, in order.
type fakeHolder struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeHolder) rec(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeHolder) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeHolder) Take() error                    { f.rec("take"); return nil }
func (f *fakeHolder) FollowUp(context.Context) error { f.rec("follow-up"); return nil }
func (f *fakeHolder) Acquire(context.Context) error  { f.rec("acquire"); return nil }
func (f *fakeHolder) Announce(context.Context)       { f.rec("announce") }
func (f *fakeHolder) Refresh()                       { f.rec("refresh") }
func (f *fakeHolder) Release() error                 { f.rec("release"); return nil }
func (f *fakeHolder) Run(ctx context.Context) error  { <-ctx.Done(); return nil }
func (f *fakeHolder) Close() error                   { return nil }
func (f *fakeHolder) Reconfigure(context.Context, conf.VRRPInstance, bool) error {
	f.rec("reconfigure")
	return nil
}

// fakeConn counts the adverts sent.
type fakeConn struct{ sent int }

func (c *fakeConn) Read([]byte) (transport.Datagram, error) { return transport.Datagram{}, io.EOF }
func (c *fakeConn) Destinations() []netip.Addr {
	return []netip.Addr{netip.MustParseAddr("224.0.0.18")}
}
func (c *fakeConn) WriteTo([]byte, netip.Addr) error { c.sent++; return nil }
func (c *fakeConn) Close() error                     { return nil }

func testConfig() conf.VRRPInstance {
	return conf.VRRPInstance{Name: "vi", Interface: "eth0", RouterID: 50, Priority: 100, Version: 3,
		AdvertInterval: 100 * time.Millisecond, Preempt: true, Accept: true, VIPHolder: "tun", GARPRepeat: 5,
		VirtualIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.100/24")}}
}

func newTestInstance(t *testing.T, h VIPHolder) *Instance {
	t.Helper()
	i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), &fakeConn{}, h)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestTakeoverFastPath: a backup whose master went silent takes its VIPs
// on the state machine's goroutine, before its step returns, when no VIP
// change is queued or running: the clients' wait ends with that first
// announcement. The advert sent with the transition must not queue a
// lifetime refresh ahead of it (that once pushed every takeover off this
// path). With a VIP change still queued, the acquisition waits its turn
// instead, so the changes stay in order.
func TestTakeoverFastPath(t *testing.T) {
	tests := []struct {
		name       string
		busy       bool // an announcement is queued when the master goes silent
		wantAtStep []string
		wantQueued []vipReq
		wantAfter  []string
	}{
		{"idle: taken at once", false, []string{"take"}, []vipReq{{op: opAcquire, taken: true}}, []string{"take", "follow-up"}},
		{"busy: in turn", true, nil, []vipReq{{op: opAnnounce}, {op: opAcquire}}, []string{"acquire"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHolder{}
			i := newTestInstance(t, h)
			t0 := time.Now()
			i.perform(t0, i.fsm.Step(t0, vrrp.Start{}), false)
			if i.fsm.State() != vrrp.Backup {
				t.Fatalf("after start: %v, want backup", i.fsm.State())
			}
			if tt.busy {
				i.queueVIP(vipReq{op: opAnnounce})
			}
			// The master's adverts stop: the backup's timer fires.
			t1 := t0.Add(time.Second)
			acts := i.fsm.Step(t1, vrrp.TimerFired{})
			if !slices.ContainsFunc(acts, func(a vrrp.Action) bool { _, ok := a.(vrrp.AddVIPs); return ok }) {
				t.Fatalf("the machine did not ask for the VIPs: %v", acts)
			}
			i.perform(t1, acts, false)
			if got := h.got(); !slices.Equal(got, tt.wantAtStep) {
				t.Errorf("holder calls when the step returned: %q, want %q", got, tt.wantAtStep)
			}
			var queued []vipReq
			for len(i.vipOps) > 0 {
				req := <-i.vipOps
				queued = append(queued, req)
				i.doVIP(context.Background(), req, nil)
			}
			if got, want := opNames(queued), opNames(tt.wantQueued); !slices.Equal(got, want) {
				t.Errorf("queued VIP ops %q, want %q", got, want)
			}
			if got := h.got(); !slices.Equal(got, tt.wantAfter) {
				t.Errorf("holder calls after the queue ran: %q, want %q", got, tt.wantAfter)
			}
			if c := i.conn.(*fakeConn); c.sent == 0 {
				t.Error("no advert sent on becoming master")
			}
		})
	}
}

// opNames names each request's op and whether its VIPs were taken.
func opNames(reqs []vipReq) []string {
	var names []string
	for _, r := range reqs {
		names = append(names, fmt.Sprintf("op %d taken %v", r.op, r.taken))
	}
	return names
}
