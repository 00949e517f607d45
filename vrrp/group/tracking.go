package group

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/track"
)

// sender is what tracking needs of an instance.
type sender interface {
	Send(ctx context.Context, ev vrrp.Event)
}

// tracking combines everything one instance tracks into one fault and
// one effective priority, and sends only their changes. The priority goes
// to the state machine as it is; the fault is tracking's share only, which
// the instance ORs with its VIP holder's own before the machine sees it.
// Links, track_execs and virtual servers change on different goroutines;
// one place deciding keeps a fault from one source from being cleared by
// the recovery of another.
type tracking struct {
	log *slog.Logger
	cfg conf.VRRPInstance
	to  sender
	// execOK reports a track_exec's verdict.
	execOK func(name string) bool

	mu        sync.Mutex
	linksDown []string // tracked interfaces down, sorted
	linkErr   error    // the link state is unknown: no subscription
	vsLowered int      // summed weight of tracked virtual servers down
	// fault and prio are what the instance was last sent (it starts
	// without tracking's fault, at its configured priority); reasons say
	// why fault is set, for status.
	fault   bool
	prio    int
	reasons []string
	// shown is reasons for Status, which must not wait on mu: a push
	// holds it while it waits for room in the instance's queue.
	shown atomic.Pointer[[]string]
}

func newTracking(log *slog.Logger, cfg conf.VRRPInstance, to sender, execOK func(string) bool) *tracking {
	return &tracking{log: log, cfg: cfg, to: to, execOK: execOK, prio: cfg.Priority}
}

// setConfig takes a reload's configuration of the instance: base
// priority, weights, tracked names.
func (t *tracking) setConfig(ctx context.Context, cfg conf.VRRPInstance) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cfg = cfg
	t.push(ctx)
}

// setSender gives a tracking created before its instance opened the
// instance to tell; what was decided meanwhile is sent by the next push.
func (t *tracking) setSender(to sender) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.to = to
}

func (t *tracking) setLinks(ctx context.Context, down []string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.linksDown, t.linkErr = down, err
	t.push(ctx)
}

func (t *tracking) setVirtualServers(ctx context.Context, lowered int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.vsLowered = lowered
	t.push(ctx)
}

// execsChanged re-reads the track_exec verdicts.
func (t *tracking) execsChanged(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.push(ctx)
}

// push sends what changed; t.mu is held, so that two sources never
// interleave their events.
func (t *tracking) push(ctx context.Context) {
	if t.to == nil {
		return
	}
	execFault, execLowered, failing := track.ExecEffect(t.cfg.TrackExecs, t.execOK)
	faulting := track.FaultingLinks(t.cfg)
	linkFault, linkLowered := track.LinkEffect(faulting, t.cfg.TrackInterfaceWeights, t.linksDown)
	// The priority goes first: a fault that clears restarts the instance
	// at whatever priority it has then.
	if p := track.Priority(t.cfg.Priority, t.vsLowered+execLowered+linkLowered); p != t.prio {
		t.log.Info("effective priority changed by tracking", "vrrp_instance", t.cfg.Name, "priority", p, "was", t.prio,
			"virtual_servers_lowered", t.vsLowered, "track_exec_lowered", execLowered, "interfaces_lowered", linkLowered)
		t.prio = p
		t.to.Send(ctx, vrrp.SetPriority{Priority: uint8(p)})
	}
	fault := linkFault || t.linkErr != nil || execFault
	was := t.reasons
	t.reasons = nil
	if fault {
		t.reasons = t.faultReasons(faulting, failing)
	}
	if !slices.Equal(was, t.reasons) {
		r := slices.Clone(t.reasons)
		t.shown.Store(&r)
	}
	if fault == t.fault {
		if fault && !slices.Equal(was, t.reasons) {
			t.log.Warn("tracking fault goes on, for other reasons", "vrrp_instance", t.cfg.Name, "reasons", t.reasons, "was", was)
		}
		return
	}
	t.fault = fault
	if fault {
		t.log.Warn("tracking fault", "vrrp_instance", t.cfg.Name, "reasons", t.reasons, "interfaces_down", t.linksDown,
			"link_watch_error", t.linkErr, "track_exec_failing", failing)
		t.to.Send(ctx, vrrp.FaultDetected{})
	} else {
		t.log.Info("tracking fault cleared", "vrrp_instance", t.cfg.Name)
		t.to.Send(ctx, vrrp.FaultCleared{})
	}
}

// faultReasons says, in status's words, what holds the instance in fault:
// of faulting, the interfaces down (its own first), an unknown link
// state, and of failing, the weight-0 track_execs. t.mu is held.
func (t *tracking) faultReasons(faulting, failing []string) []string {
	var out []string
	for _, n := range faulting {
		if !slices.Contains(t.linksDown, n) {
			continue
		}
		if n == t.cfg.Interface && t.cfg.TrackOwnInterface {
			out = append(out, "interface "+n+" down")
		} else {
			out = append(out, "tracked interface "+n+" down")
		}
	}
	if t.linkErr != nil {
		out = append(out, "link state unknown: "+t.linkErr.Error())
	}
	for _, ref := range t.cfg.TrackExecs {
		if ref.Weight == 0 && slices.Contains(failing, ref.Name) {
			out = append(out, "track_exec "+ref.Name+" failing")
		}
	}
	return out
}

// faults is what holds the instance in fault now; nil when nothing
// tracked does.
func (t *tracking) faults() []string {
	if r := t.shown.Load(); r != nil {
		return slices.Clone(*r)
	}
	return nil
}
