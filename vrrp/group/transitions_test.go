package group

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// Transitions has a value after any instance's transition, its state
// already in Status, including an instance a reload started; several
// transitions not yet taken are one value, and none is lost.
func TestTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100), vi("b", 2, 100)}}, nil)
		defer h.stop()
		ch := h.group.Transitions()
		pending := func() bool {
			select {
			case <-ch:
				return true
			default:
				return false
			}
		}
		if pending() {
			t.Fatal("a value before any transition")
		}
		a := h.open.named("a")[0]
		a.setMaster(true)
		if !pending() {
			t.Fatal("no value after a's transition")
		}
		if st := h.group.Status(); st[0].State != "MASTER" {
			t.Errorf("after the value Status says %s, want MASTER", st[0].State)
		}
		a.setMaster(false)
		h.open.named("b")[0].setMaster(true)
		if !pending() || pending() {
			t.Error("two transitions not taken: want exactly one value")
		}

		if err := h.group.Reload(&conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100), vi("c", 3, 100)}}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		pending()
		h.open.named("c")[0].setMaster(true)
		if !pending() {
			t.Error("no value after the transition of an instance a reload added")
		}
	})
}

// HoldPreempt reaches the named instance as a vrrp.HoldPreempt, and
// says so when no instance of that name runs.
func TestHoldPreempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100), vi("b", 2, 100)}}, nil)
		defer h.stop()
		for _, f := range h.open.opened {
			f.take()
		}
		until := time.Now().Add(13 * time.Second)
		if err := h.group.HoldPreempt(t.Context(), "b", until); err != nil {
			t.Fatal(err)
		}
		if got, want := h.open.named("b")[0].take(), fmt.Sprintf("hold until %s", until.Format(time.RFC3339)); got != want {
			t.Errorf("b was told %q, want %q", got, want)
		}
		if got := h.open.named("a")[0].take(); got != "" {
			t.Errorf("a was told %q, want nothing", got)
		}
		if err := h.group.HoldPreempt(t.Context(), "nosuch", until); err == nil || !strings.Contains(err.Error(), "vrrp_instance nosuch: not running") {
			t.Errorf("hold of an unknown instance: %v", err)
		}
	})
}

// Yield reaches the named instance as a vrrp.Yield, its lift too, and
// says so when no instance of that name runs.
func TestYield(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100), vi("b", 2, 100)}}, nil)
		defer h.stop()
		for _, f := range h.open.opened {
			f.take()
		}
		tests := []struct {
			to   netip.Addr
			want string
		}{
			{netip.MustParseAddr("10.0.0.9"), "yield to 10.0.0.9"},
			{netip.Addr{}, "yield to invalid IP"},
		}
		for _, tt := range tests {
			if err := h.group.Yield(t.Context(), "b", tt.to); err != nil {
				t.Fatal(err)
			}
			if got := h.open.named("b")[0].take(); got != tt.want {
				t.Errorf("b was told %q, want %q", got, tt.want)
			}
			if got := h.open.named("a")[0].take(); got != "" {
				t.Errorf("a was told %q, want nothing", got)
			}
		}
		if err := h.group.Yield(t.Context(), "nosuch", netip.Addr{}); err == nil || !strings.Contains(err.Error(), "yield master of vrrp_instance nosuch: not running") {
			t.Errorf("yield of an unknown instance: %v", err)
		}
	})
}
