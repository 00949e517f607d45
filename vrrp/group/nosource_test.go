package group

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// setFail makes the opens of name fail with err (nil: succeed).
func (o *opener) setFail(name string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail == nil {
		o.fail = map[string]error{}
	}
	o.fail[name] = err
}

func (o *opener) triesOf(name string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.tries[name]
}

// statusOf is the named instance's status in g's.
func statusOf(t *testing.T, g *Group, name string) instance.Status {
	t.Helper()
	for _, st := range g.Status() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no status of %s", name)
	return instance.Status{}
}

// An instance whose interface has no address to send adverts from
// (instance.ErrNoSource: an IPv6 link-local address not there yet) does
// not stop the director: it is in FAULT, with the reason, and keeps the
// rest of its sync group from master; its open is retried, at most a
// second apart, and once the address appears it starts and joins the
// election. The other instances run meanwhile.
func TestNoSourceWaitsInFault(t *testing.T) {
	noLL := fmt.Errorf("vrrp_instance a: %w: eth0 has no IPv6 link-local address", instance.ErrNoSource)
	tests := []struct {
		name string
		// sync puts a and b in a sync group.
		sync bool
		// reload: a starts normally, and loses its address at a reload
		// that rebuilds it (router_id changed).
		reload bool
	}{
		{name: "at start"},
		{name: "at start, in a sync group", sync: true},
		{name: "rebuilt by a reload", reload: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100), vi("b", 2, 100)}}
				if tc.sync {
					cfg.SyncGroups = []conf.SyncGroup{{Name: "g", Instances: []string{"a", "b"}}}
				}
				o := &opener{}
				if !tc.reload {
					o.setFail("a", noLL)
				}
				h := start(t, cfg, o)
				defer h.stop()
				b := o.named("b")[0]
				if tc.reload {
					o.setFail("a", noLL)
					next := &conf.Config{VRRPInstances: slices.Clone(cfg.VRRPInstances)}
					next.VRRPInstances[0].RouterID = 9
					if err := h.group.Reload(next); err != nil {
						t.Fatal(err)
					}
					synctest.Wait()
					if !o.named("a")[0].ran {
						t.Fatal("a's old instance still runs")
					}
				}
				opened := len(o.named("a"))
				if !b.running {
					t.Error("b does not run while a waits")
				}
				tries := o.triesOf("a")
				time.Sleep(10 * time.Second)
				synctest.Wait()
				st := statusOf(t, h.group, "a")
				if st.State != "FAULT" || !strings.Contains(st.Fault, "has no IPv6 link-local address") || len(st.VIPs) != 1 {
					t.Errorf("a's status while it waits: %s, fault %q, VIPs %v; want FAULT with the reason and its VIPs", st.State, st.Fault, st.VIPs)
				}
				// 100 ms doubling to 1 s: 0.1+0.2+0.4+0.8 then every second.
				if n := o.triesOf("a") - tries; n < 10 || n > 15 {
					t.Errorf("a's open tried %d times in 10 s, want a retry at most a second apart", n)
				}
				if plan := h.group.Plan(cfg); len(plan) != 1 || plan[0].Instance != "a" || plan[0].Why != "still waiting for an address to send adverts from" {
					t.Errorf("Plan of the same configuration: %+v, want a rebuilt, still waiting", plan)
				}
				if tc.sync {
					b.take()
					b.setWants(vrrp.Master)
					synctest.Wait()
					if got := b.take(); got != "" {
						t.Errorf("b, wanting master beside a in FAULT, was told %q; want nothing (kept from master)", got)
					}
				}

				o.setFail("a", nil)
				time.Sleep(sourceRetryMax)
				synctest.Wait()
				if got := len(o.named("a")); got != opened+1 {
					t.Fatalf("a opened %d times once its address appeared, want %d", got, opened+1)
				}
				if a := o.named("a")[opened]; !a.running {
					t.Error("a does not run once its address appeared")
				}
				if st := statusOf(t, h.group, "a"); st.State != "BACKUP" || st.Fault != "" {
					t.Errorf("a's status once it runs: %s, fault %q; want BACKUP, none", st.State, st.Fault)
				}
				if tc.sync {
					a := o.named("a")[opened]
					a.setWants(vrrp.Master)
					synctest.Wait()
					if got := b.take(); !strings.HasSuffix(got, "gate true") {
						t.Errorf("b was told %q once a runs and both want master; want gate true", got)
					}
				}
			})
		})
	}
}

// A reload or a stop ends the wait: the waiting member is replaced (a
// change that rebuilds it) or dropped (removed), and nothing of it is
// left running.
func TestNoSourceWaitEnds(t *testing.T) {
	noLL := fmt.Errorf("%w: eth0 has no IPv6 link-local address", instance.ErrNoSource)
	tests := []struct {
		name string
		next []conf.VRRPInstance
		// want is a's status after the reload, "" if gone.
		want string
	}{
		{"removed", []conf.VRRPInstance{vi("b", 2, 100)}, ""},
		{"rebuilt, and its new interface has an address", []conf.VRRPInstance{func() conf.VRRPInstance {
			c := vi("a", 1, 100)
			c.Interface = "eth1"
			return c
		}(), vi("b", 2, 100)}, "BACKUP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := &opener{}
				o.setFail("a", noLL)
				h := start(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100), vi("b", 2, 100)}}, o)
				defer h.stop()
				time.Sleep(time.Second)
				o.setFail("a", nil)
				if err := h.group.Reload(&conf.Config{VRRPInstances: tc.next}); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				tries := o.triesOf("a")
				time.Sleep(5 * time.Second)
				synctest.Wait()
				var got string
				for _, st := range h.group.Status() {
					if st.Name == "a" {
						got = st.State
					}
				}
				if got != tc.want {
					t.Errorf("a after the reload: %q, want %q", got, tc.want)
				}
				if n := len(o.named("a")); tc.want != "" && n != 1 || tc.want == "" && n != 0 {
					t.Errorf("a opened %d times", n)
				}
				if n := o.triesOf("a") - tries; n != 0 {
					t.Errorf("a's open tried %d times more after the reload, want none (the old wait ended)", n)
				}
			})
		})
	}
}

// A waiting instance whose open then fails otherwise (its interface
// gone) is not retried, and its status says why it stays in FAULT.
func TestNoSourceThenOtherError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &opener{}
		o.setFail("a", fmt.Errorf("%w: eth0 has no IPv6 link-local address", instance.ErrNoSource))
		h := start(t, &conf.Config{VRRPInstances: []conf.VRRPInstance{vi("a", 1, 100)}}, o)
		defer h.stop()
		o.setFail("a", errors.New("interface eth0: no such network interface"))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		tries := o.triesOf("a")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := o.triesOf("a") - tries; n != 0 {
			t.Errorf("a's open tried %d times more, want none", n)
		}
		if st := statusOf(t, h.group, "a"); st.State != "FAULT" || !strings.Contains(st.Fault, "no such network interface") {
			t.Errorf("a's status: %s, fault %q; want FAULT saying why", st.State, st.Fault)
		}
	})
}
