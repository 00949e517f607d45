package integration

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/ndp"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/transport"
	"github.com/lvsha/lvsha/vrrp/vip"
)

// breakableHolder is a real VIP holder whose Serve (and Run) the test can
// make fail once per send on breaks: the neighbour responder stops reading, as when
// its socket fails, and Run returns an error.
type breakableHolder struct {
	*vip.Holder
	breaks chan struct{}
}

// Serve is the instance's way in (vip.Holder serves without a goroutine
// of the caller's): the real holder's Serve, which a send on breaks
// stops, as when the responder's socket fails, and reports failed.
func (h *breakableHolder) Serve(failed func(error)) (stop func()) {
	var once sync.Once
	leave := h.Holder.Serve(failed)
	inner := func() { once.Do(leave) }
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-h.breaks:
			inner()
			failed(errors.New("neighbour responder made to fail"))
		case <-quit:
		}
	}()
	return func() {
		close(quit)
		<-done
		inner()
	}
}

func (h *breakableHolder) Run(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- h.Holder.Run(rctx) }()
	select {
	case err := <-errc:
		return err
	case <-h.breaks:
		cancel()
		<-errc
		return errors.New("neighbour responder made to fail")
	}
}

// TestHolderFault: a master whose IPv6 VIP is on a tun device answers the
// client's neighbour solicitations through its responder; when the
// holder's Run fails, the master does not stay master unreachable: it goes
// to FAULT, removes the VIP and counts the failure; the holder is run
// again, the fault clears, and the instance is master and answering once
// more. The instance runs in this process on real sockets, a real tun
// device and a real responder; only the failure is injected, at the
// holder's Run.
func TestHolderFault(t *testing.T) {
	hosts, ifs := lan(t, 2)
	lb, client := hosts[0], hosts[1]
	vipAddr := "2001:db8:79::100"
	cfg := conf.VRRPInstance{Name: "vi6", Interface: ifs[0], RouterID: 61, Priority: 150, Version: 3,
		AdvertInterval: 100 * time.Millisecond, Preempt: true, VIPHolder: "tun", GARPRepeat: 2,
		VirtualIPs: []netip.Prefix{netip.MustParsePrefix(vipAddr + "/64")}}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	const tun = "lvshahf-6"

	var inst *instance.Instance
	h := &breakableHolder{breaks: make(chan struct{})}
	inNetns(t, lb, func() {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			t.Fatal(err)
		}
		var src netip.Addr
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsLinkLocalUnicast() {
				src = p.Addr()
			}
		}
		conn, err := transport.Listen(transport.Config{Interface: ifi, IPv6: true, Source: src})
		if err != nil {
			t.Fatal(err)
		}
		if h.Holder, err = vip.OpenHolder(log, cfg, tun); err != nil {
			conn.Close()
			t.Fatal(err)
		}
		if inst, err = instance.New(log, cfg, src, conn, h); err != nil {
			conn.Close()
			h.Close()
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- inst.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	reachable := func() bool { return solicit(t, client, ifs[1], netip.MustParseAddr(vipAddr)) }
	onTun := func() bool {
		out, _ := exec.Command("ip", "-n", lb, "-6", "addr", "show", "dev", tun).CombinedOutput()
		return strings.Contains(string(out), vipAddr)
	}

	eventually(t, "master", 20*time.Second, func() bool { return inst.Status().State == "MASTER" })
	eventually(t, "the client reaches the VIP", 10*time.Second, reachable)

	h.breaks <- struct{}{}
	eventually(t, "FAULT after the holder failed", 5*time.Second, func() bool { return inst.Status().State == "FAULT" })
	s := inst.Status()
	if !s.HolderFault || s.HolderFailures != 1 || !strings.Contains(s.HolderError, "made to fail") {
		t.Errorf("status after the failure: holder fault %v, failures %d, error %q; want true, 1, the failure",
			s.HolderFault, s.HolderFailures, s.HolderError)
	}
	eventually(t, "the VIP off the tun device", 5*time.Second, func() bool { return !onTun() })
	if reachable() {
		t.Error("the client still reaches the VIP of an instance in fault")
	}

	// Retried after 100 ms, running after 1 s more: the fault clears and,
	// alone on the link, the instance is master again.
	eventually(t, "master again after the holder runs again", 20*time.Second, func() bool { return inst.Status().State == "MASTER" })
	if s := inst.Status(); s.HolderFault || s.HolderFailures != 1 {
		t.Errorf("status after recovery: holder fault %v, failures %d; want false, 1", s.HolderFault, s.HolderFailures)
	}
	eventually(t, "the client reaches the VIP again", 10*time.Second, reachable)
}

// solicit sends a neighbour solicitation for target from ns's interface
// ifc and reports whether an advertisement for it came back within a
// second: what a client's kernel needs before it can reach target.
func solicit(t *testing.T, ns, ifc string, target netip.Addr) bool {
	t.Helper()
	answered := false
	inNetns(t, ns, func() {
		ifi, err := net.InterfaceByName(ifc)
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		snm, err := ndp.SolicitedNodeMulticast(target)
		if err != nil {
			t.Fatal(err)
		}
		ns := &ndp.NeighborSolicitation{TargetAddress: target,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
		if err := c.WriteTo(ns, nil, snm); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			msg, _, _, err := c.ReadFrom()
			if err != nil {
				return
			}
			if na, ok := msg.(*ndp.NeighborAdvertisement); ok && na.TargetAddress == target {
				answered = true
				return
			}
		}
	})
	return answered
}
