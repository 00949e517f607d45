package ipvstest_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// TestDaemonRules runs the sync daemons' rules (the table
// integration.TestIPVSSyncDaemon runs on the kernel) on the fake, each on
// a fresh one and then all in a row on one, since Run leaves no daemon
// behind.
func TestDaemonRules(t *testing.T) {
	const iface = "sync0"
	shared := &ipvstest.Kernel{}
	shared.SetInterface(iface, 1500)
	for _, r := range ipvstest.DaemonRules(iface) {
		t.Run(r.Name, func(t *testing.T) {
			k := &ipvstest.Kernel{}
			k.SetInterface(iface, 1500)
			if err := r.Run(k); err != nil {
				t.Error(err)
			}
			if err := r.Run(shared); err != nil {
				t.Errorf("after the other rules: %v", err)
			}
		})
	}
}

// TestDaemonMaxLenByMTU checks the defaults and bounds that depend on the
// interface: a backup's default message is its MTU (at least 1500, at
// most 65535) less the headers, a master's is 1500 less them whatever the
// MTU.
func TestDaemonMaxLenByMTU(t *testing.T) {
	v6 := netip.MustParseAddr("ff02::81")
	tests := []struct {
		name  string
		mtu   int
		d     ipvs.Daemon
		want  uint16
		iface string // "" for "link"
	}{
		{name: "backup on a jumbo link", mtu: 9000, d: ipvs.Daemon{State: ipvs.DaemonBackup}, want: 9000 - 28},
		{name: "backup on a jumbo link, IPv6 group", mtu: 9000, d: ipvs.Daemon{State: ipvs.DaemonBackup, Group: v6}, want: 9000 - 48},
		{name: "backup on a small link takes 1500", mtu: 1280, d: ipvs.Daemon{State: ipvs.DaemonBackup}, want: 1472},
		{name: "master on a jumbo link stays at 1500", mtu: 9000, d: ipvs.Daemon{State: ipvs.DaemonMaster}, want: 1472},
		{name: "backup on lo", d: ipvs.Daemon{State: ipvs.DaemonBackup}, iface: "lo", want: ipvs.MaxSyncLen4},
		{name: "a backup's max length above its MTU is kept", mtu: 1500, d: ipvs.Daemon{State: ipvs.DaemonBackup, MaxLen: 9000}, want: 9000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &ipvstest.Kernel{}
			tt.d.Interface = tt.iface
			if tt.iface == "" {
				tt.d.Interface = "link"
				k.SetInterface("link", tt.mtu)
			}
			if err := k.NewDaemon(tt.d); err != nil {
				t.Fatal(err)
			}
			ds, _ := k.GetDaemons()
			if len(ds) != 1 || ds[0].MaxLen != tt.want {
				t.Errorf("daemons %v, want one with maxlen %d", ds, tt.want)
			}
		})
	}
}

// TestDaemonWrites checks that the daemon commands count as writes, that
// a FailFunc sees them by operation and fails them without a change, and
// that reads are not writes.
func TestDaemonWrites(t *testing.T) {
	k := &ipvstest.Kernel{}
	k.SetInterface("eth0", 1500)
	boom := errors.New("boom")
	k.SetFail(func(op string, s *moby.Service, d *moby.Destination) error {
		if op == ipvstest.OpNewDaemon && s == nil && d == nil {
			return boom
		}
		return nil
	})
	m := ipvs.Daemon{State: ipvs.DaemonMaster, Interface: "eth0", SyncID: 1}
	if err := k.NewDaemon(m); !errors.Is(err, boom) {
		t.Fatalf("NewDaemon with a failing FailFunc = %v, want boom", err)
	}
	if ds, _ := k.GetDaemons(); len(ds) != 0 {
		t.Fatalf("a failed start left %v", ds)
	}
	k.SetFail(nil)
	if err := k.NewDaemon(m); err != nil {
		t.Fatal(err)
	}
	if err := k.DelDaemon(ipvs.DaemonBackup); !errors.Is(err, unix.ESRCH) {
		t.Fatalf("DelDaemon(backup) = %v, want ESRCH", err)
	}
	if _, err := k.GetDaemons(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ipvstest.OpNewDaemon: 2, ipvstest.OpDelDaemon: 1}
	if d := cmp.Diff(want, k.WritesByOp()); d != "" {
		t.Errorf("writes (-want +got):\n%s", d)
	}
}
