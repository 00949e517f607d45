package integration

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// syncLink makes sync0 in ns: one end of a veth pair (MTU 1500), up, with
// an IPv4 and an IPv6 address, which a master daemon needs to reach its
// group. The IPv6 address skips duplicate address detection so that it
// is usable at once.
func syncLink(t *testing.T, ns string) string {
	t.Helper()
	inNS(t, ns, "ip", "link", "add", "sync0", "type", "veth", "peer", "name", "sync1")
	inNS(t, ns, "ip", "addr", "add", "10.0.9.1/24", "dev", "sync0")
	inNS(t, ns, "ip", "-6", "addr", "add", "fd00:9::1/64", "dev", "sync0", "nodad")
	inNS(t, ns, "ip", "link", "set", "sync1", "up")
	inNS(t, ns, "ip", "link", "set", "sync0", "up")
	return "sync0"
}

// ipvsadmDaemons is `ipvsadm -L --daemon` in ns, one line a daemon.
func ipvsadmDaemons(t testing.TB, ns string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(inNS(t, ns, "ipvsadm", "-L", "--daemon"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestIPVSSyncDaemon starts the kernel's connection sync daemons through
// ipvs.Handle, a master and a backup at once with every option set, and
// reads them back through the handle and through ipvsadm as a witness;
// stops them and checks both see none. Then it runs the daemon rules the
// fake is tested with (ipvstest.DaemonRules), so the fake's errnos and
// read-backs are the kernel's.
func TestIPVSSyncDaemon(t *testing.T) {
	ns := newNetns(t, "sync")
	iface := syncLink(t, ns)
	h, err := ipvs.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	t.Run("master and backup", func(t *testing.T) {
		master := ipvs.Daemon{State: ipvs.DaemonMaster, Interface: iface, SyncID: 51,
			MaxLen: 1200, Group: netip.MustParseAddr("239.1.2.3"), Port: 9000, TTL: 3}
		backup := ipvs.Daemon{State: ipvs.DaemonBackup, Interface: iface, SyncID: 52,
			MaxLen: 1300, Group: netip.MustParseAddr("ff02::81"), Port: 9100, TTL: 4}
		if err := h.NewDaemon(master); err != nil {
			t.Fatal(err)
		}
		if err := h.NewDaemon(backup); err != nil {
			t.Fatal(err)
		}
		got, err := h.GetDaemons()
		if err != nil {
			t.Fatal(err)
		}
		if want := []ipvs.Daemon{master, backup}; !slices.Equal(got, want) {
			t.Errorf("GetDaemons:\n got %v\nwant %v", got, want)
		}
		// Written out rather than taken from Daemon.String, so that the
		// witness does not depend on the code under test.
		want := []string{
			"master sync daemon (mcast=sync0, syncid=51, maxlen=1200, group=239.1.2.3, port=9000, ttl=3)",
			"backup sync daemon (mcast=sync0, syncid=52, maxlen=1300, group=ff02::81, port=9100, ttl=4)",
		}
		if got := ipvsadmDaemons(t, ns); !slices.Equal(got, want) {
			t.Errorf("ipvsadm -L --daemon:\n got %q\nwant %q", got, want)
		}
		// A second of either state is refused and changes nothing.
		if err := h.NewDaemon(ipvs.Daemon{State: ipvs.DaemonMaster, Interface: iface, SyncID: 9}); err == nil {
			t.Error("a second master started")
		} else {
			t.Logf("second master: %v", err)
		}
		for _, s := range []ipvs.DaemonState{ipvs.DaemonMaster, ipvs.DaemonBackup} {
			if err := h.DelDaemon(s); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := h.GetDaemons(); err != nil || len(got) != 0 {
			t.Errorf("after stopping both: GetDaemons = %v, %v; want none", got, err)
		}
		if got := ipvsadmDaemons(t, ns); len(got) != 0 {
			t.Errorf("after stopping both: ipvsadm -L --daemon shows %q", got)
		}
		if err := h.DelDaemon(ipvs.DaemonMaster); err == nil {
			t.Error("stopping a stopped master succeeded")
		} else {
			t.Logf("stop again: %v", err)
		}
	})

	// A stop a few milliseconds after the start can find the daemon's
	// thread not yet run; the kernel then stops it but sends no answer
	// (see ipvs.Handle's command). Every stop must still return at once
	// and succeed. Before the fix, about one in ten waited for the
	// socket's 60 s timeout and failed with EAGAIN.
	t.Run("stop right after start", func(t *testing.T) {
		for i := range 20 {
			for _, s := range []ipvs.DaemonState{ipvs.DaemonBackup, ipvs.DaemonMaster} {
				if err := h.NewDaemon(ipvs.Daemon{State: s, Interface: iface, SyncID: uint32(i)}); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				err := h.DelDaemon(s)
				if took := time.Since(start); err != nil || took > 5*time.Second {
					t.Fatalf("round %d: stop %s: %v after %v", i, s, err, took)
				}
			}
			if got, err := h.GetDaemons(); err != nil || len(got) != 0 {
				t.Fatalf("round %d: GetDaemons = %v, %v; want none", i, got, err)
			}
		}
	})

	// ApplySync, what a VRRP transition will call: each state's daemon
	// alone, then none, as ipvsadm sees it.
	t.Run("ApplySync", func(t *testing.T) {
		cfg := conf.LVSSync{Interface: iface, SyncID: 51, MaxLen: 1000, Group: netip.MustParseAddr("239.1.2.3"), Port: 9000, TTL: 2}
		for _, step := range []struct {
			state ipvs.DaemonState
			want  []string
			same  bool // the daemon's kernel thread runs on
		}{
			{ipvs.DaemonBackup, []string{"backup sync daemon (mcast=sync0, syncid=51, maxlen=1024, group=239.1.2.3, port=9000, ttl=2)"}, false},
			{ipvs.DaemonMaster, []string{"master sync daemon (mcast=sync0, syncid=51, maxlen=1000, group=239.1.2.3, port=9000, ttl=2)"}, false},
			{ipvs.DaemonMaster, []string{"master sync daemon (mcast=sync0, syncid=51, maxlen=1000, group=239.1.2.3, port=9000, ttl=2)"}, true},
			{ipvs.DaemonNone, nil, false},
		} {
			before := syncThreads(t)
			if err := ipvs.ApplySync(h, cfg, step.state); err != nil {
				t.Fatalf("ApplySync(%s): %v", step.state, err)
			}
			if got := ipvsadmDaemons(t, ns); !slices.Equal(got, step.want) {
				t.Errorf("after ApplySync(%s), ipvsadm -L --daemon:\n got %q\nwant %q", step.state, got, step.want)
			}
			// A daemon already as wanted is left alone: the same kernel
			// thread runs on.
			if after := syncThreads(t); step.same && (len(before) != 1 || !slices.Equal(before, after)) {
				t.Errorf("ApplySync(%s) on a daemon as wanted: threads %q, then %q; want one, the same", step.state, before, after)
			} else if !step.same && slices.Equal(before, after) {
				t.Errorf("ApplySync(%s): threads %q unchanged", step.state, after)
			}
		}
	})

	t.Run("rules", func(t *testing.T) {
		for _, r := range ipvstest.DaemonRules(iface) {
			t.Run(r.Name, func(t *testing.T) {
				if err := r.Run(h); err != nil {
					t.Error(err)
				}
			})
		}
	})
}

// syncThreads lists the kernel's sync daemon threads ("ipvs-m:GEN:ID" for
// a master, "ipvs-b:..." for a backup) as "comm pid", sorted.
func syncThreads(t *testing.T) []string {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		comm, err := os.ReadFile("/proc/" + d.Name() + "/comm")
		if c := strings.TrimSpace(string(comm)); err == nil && (strings.HasPrefix(c, "ipvs-m:") || strings.HasPrefix(c, "ipvs-b:")) {
			out = append(out, c+" "+d.Name())
		}
	}
	slices.Sort(out)
	return out
}
