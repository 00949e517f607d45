package integration

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/ipvs"
)

// kernelHas reports whether the running kernel offers a scheduler module
// (ip_vs_twos only exists from Linux 6.2).
func kernelHas(sched string) bool {
	_, err := os.Stat("/sys/module/ip_vs_" + sched)
	return err == nil
}

// ipvsadmTable returns `ipvsadm -Ln` in ns without its version line.
func ipvsadmTable(t testing.TB, ns string) string {
	t.Helper()
	out := inNS(t, ns, "ipvsadm", "-Ln")
	_, rest, _ := strings.Cut(out, "\n")
	return rest
}

// withoutVersion drops the first line of an ipvs.Format table.
func withoutVersion(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return rest
}

func allUp(string, netip.AddrPort) bool { return true }

// TestReconcilerOnKernel programs every protocol, family, forwarding method
// and scheduler the kernel offers through lvsha's reconciler, and checks the
// result with the real ipvsadm: byte for byte the table lvsha meant. Then:
// a second Apply writes nothing, one weight change is one write, a hand
// edit is repaired, and Remove leaves the namespace empty.
func TestReconcilerOnKernel(t *testing.T) {
	ns := newNetns(t, "k")
	h, err := ipvs.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec := ipvs.NewReconciler(h, log)

	var text strings.Builder
	text.WriteString("[director]\nname = \"k\"\n")
	port := 1000
	add := func(s string) { text.WriteString(s) }
	var absent []string
	for _, sched := range ipvs.Schedulers() {
		if !kernelHas(sched) {
			absent = append(absent, sched)
			continue
		}
		for _, fam := range []struct{ vip, rs1, rs2 string }{
			{"10.9.0.1", "10.9.1.1", "10.9.1.2"},
			{"[2001:db8:9::1]", "[2001:db8:9:1::1]", "[2001:db8:9:1::2]"},
		} {
			for _, proto := range []string{"tcp", "udp", "sctp"} {
				port++
				fwd := []string{"nat", "dr", "tun"}[port%3]
				flags := ""
				if sched == "sh" || sched == "mh" {
					flags = `scheduler_flags = ["` + sched + `-port"]` + "\n"
				}
				persist := ""
				if port%4 == 0 {
					persist = "persistence = \"300s\"\npersistence_netmask = " + map[bool]string{true: "24", false: "64"}[fam.vip[0] != '['] + "\n"
				}
				add("[[virtual_server]]\naddress = \"" + fam.vip + ":" + strconv.Itoa(port) + "\"\nprotocol = \"" + proto +
					"\"\nscheduler = \"" + sched + "\"\nforwarding = \"" + fwd + "\"\n" + flags + persist +
					"[[virtual_server.real_server]]\naddress = \"" + fam.rs1 + ":" + strconv.Itoa(port) + "\"\nweight = 3\nupper_threshold = 100\nlower_threshold = 10\n" +
					"[[virtual_server.real_server]]\naddress = \"" + fam.rs2 + ":" + strconv.Itoa(port) + "\"\nweight = 1\n")
			}
		}
	}
	add("[[virtual_server]]\nfwmark = 7\nscheduler = \"wlc\"\nforwarding = \"dr\"\n[[virtual_server.real_server]]\naddress = \"10.9.1.1\"\n")
	add("[[virtual_server]]\nfwmark = 8\nfamily = \"inet6\"\nscheduler = \"rr\"\n[[virtual_server.real_server]]\naddress = \"[2001:db8:9:1::1]:80\"\n")
	cfg, err := conf.Parse("kernel.toml", []byte(text.String()))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	desired := ipvs.Desired(cfg, allUp)
	ch, err := rec.Apply(desired)
	if err != nil {
		t.Fatalf("apply %d services: %v", len(desired), err)
	}
	if ch.ServicesCreated != len(desired) {
		t.Errorf("created %d services, want %d", ch.ServicesCreated, len(desired))
	}
	if got, want := ipvsadmTable(t, ns), withoutVersion(ipvs.Format(desired)); got != want {
		t.Fatalf("ipvsadm -Ln differs from the table lvsha programmed\n--- ipvsadm\n%s\n--- lvsha\n%s", got, want)
	}
	t.Logf("%d services programmed, ipvsadm -Ln matches byte for byte; schedulers this kernel lacks: %v", len(desired), absent)

	// A scheduler the kernel lacks is refused with the kernel's errno and
	// named; the rest of the table is unaffected.
	for _, sched := range absent {
		bad := ipvs.Service{Name: "absent", Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: netip.MustParseAddr("10.9.0.2"), Port: 9, Scheduler: sched, Netmask: 0xffffffff}
		_, err := ipvs.NewReconciler(h, log).Apply([]ipvs.Service{bad})
		if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), sched) {
			t.Errorf("scheduler %s absent from the kernel: Apply error = %v, want ENOENT naming it", sched, err)
		}
		ipvs.NewReconciler(h, log).Remove([]ipvs.Service{bad})
	}

	// Idempotent: nothing to write.
	if ch, err := rec.Apply(desired); err != nil || ch.Total() != 0 {
		t.Errorf("second Apply: changes %+v, err %v; want none", ch, err)
	}

	// One weight change is one UpdateDestination.
	desired[0].Destinations[0].Weight = 9
	if ch, err := rec.Apply(desired); err != nil || ch.Total() != 1 || ch.DestinationsUpdated != 1 {
		t.Errorf("weight change: changes %+v, err %v; want exactly one destination update", ch, err)
	}
	if got := ipvsadmTable(t, ns); !strings.Contains(got, "Route   9") && !strings.Contains(got, "Masq    9") && !strings.Contains(got, "Tunnel  9") {
		t.Errorf("ipvsadm does not show weight 9:\n%s", got)
	}

	// Someone edits the table by hand; the next Apply puts it back.
	svc := desired[1]
	first := svc.Destinations[0]
	vip := svc.Key().String()
	flag := map[uint16]string{unix.IPPROTO_TCP: "-t", unix.IPPROTO_UDP: "-u", unix.IPPROTO_SCTP: "--sctp-service"}[svc.Protocol]
	inNS(t, ns, "ipvsadm", "-e", flag, strings.TrimSpace(vip[4:]), "-r", first.String(), "-w", "42", fwdFlag(first.Forwarding))
	inNS(t, ns, "ipvsadm", "-E", flag, strings.TrimSpace(vip[4:]), "-s", "wlc")
	ch, err = rec.Apply(desired)
	if err != nil || ch.ServicesUpdated != 1 || ch.DestinationsUpdated != 1 {
		t.Errorf("drift repair: changes %+v, err %v; want one service and one destination update", ch, err)
	}
	if got, want := ipvsadmTable(t, ns), withoutVersion(ipvs.Format(desired)); got != want {
		t.Errorf("after repair ipvsadm differs\n--- ipvsadm\n%s\n--- lvsha\n%s", got, want)
	}

	// Update trusts the table as it last read and wrote it: a
	// destination deleted by hand that it then changes fails in its
	// batch with the kernel's ENOENT, and Update reads the table and
	// adds it back.
	third := desired[2]
	vip3 := third.Key().String()
	flag3 := map[uint16]string{unix.IPPROTO_TCP: "-t", unix.IPPROTO_UDP: "-u", unix.IPPROTO_SCTP: "--sctp-service"}[third.Protocol]
	inNS(t, ns, "ipvsadm", "-d", flag3, strings.TrimSpace(vip3[4:]), "-r", third.Destinations[0].String())
	desired[2].Destinations[0].Weight = 5
	desired[2].Destinations[1].Weight = 6
	ch, err = rec.Update(desired)
	if err != nil || ch.DestinationsCreated != 1 || ch.DestinationsUpdated != 1 || ch.Total() != 2 {
		t.Errorf("update over a hand deletion: changes %+v, err %v; want the deleted one added and the other updated", counts(ch), err)
	}
	if got, want := ipvsadmTable(t, ns), withoutVersion(ipvs.Format(desired)); got != want {
		t.Errorf("after the update ipvsadm differs\n--- ipvsadm\n%s\n--- lvsha\n%s", got, want)
	}

	// A foreign service is left alone by Apply and by Remove.
	inNS(t, ns, "ipvsadm", "-A", "-t", "10.9.9.9:1", "-s", "rr")
	if err := rec.Remove(desired); err != nil {
		t.Fatal(err)
	}
	if got := ipvsadmTable(t, ns); !strings.Contains(got, "TCP  10.9.9.9:1 rr") || strings.Count(got, "\n") != 3 {
		t.Errorf("after Remove want only the foreign service left:\n%s", got)
	}
}

func fwdFlag(f ipvs.Forwarding) string {
	switch f {
	case ipvs.ForwardDirectRoute:
		return "-g"
	case ipvs.ForwardTunnel:
		return "-i"
	}
	return "-m"
}

// counts is a Changes without its list.
func counts(c ipvs.Changes) ipvs.Changes {
	c.Done = nil
	return c
}
