package integration

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Service flags as the kernel defines them (include/uapi/linux/ip_vs.h).
const (
	svcPersistent = 0x0001
	svcHashed     = 0x0002 // set by the kernel on every service it holds
	svcOnePacket  = 0x0004
	svcSched1     = 0x0008 // sh-fallback, mh-fallback
	svcSched2     = 0x0010 // sh-port, mh-port
)

// allSchedulers are the fourteen IPVS schedulers, named here rather than
// taken from package ipvs so that this test does not trust what it checks.
func allSchedulers() []string {
	return []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
}

// rtService is one service programmed through moby/ipvs, with the lines
// `ipvsadm -Sn` must print for it and the thresholds `ipvsadm -Ln
// --thresholds` must show.
type rtService struct {
	svc   moby.Service
	dests []moby.Destination
	save  []string
}

// rtView is what the kernel reports back, normalised for comparison:
// counters dropped, the HASHED flag masked.
type rtView struct {
	Family, Protocol, Port uint16
	Address                string
	FWMark                 uint32
	Scheduler, PE          string
	Flags, Timeout, Mask   uint32
	Dests                  []rtDest
}

type rtDest struct {
	Address        string
	Port           uint16
	Family         uint16
	Weight         int
	Forwarding     uint32
	Upper, Lower   uint32
	ActiveInactive [2]int
}

func viewOf(s *moby.Service, ds []*moby.Destination) rtView {
	v := rtView{
		Family: s.AddressFamily, Protocol: s.Protocol, Port: s.Port, FWMark: s.FWMark,
		Scheduler: s.SchedName, PE: s.PEName, Flags: s.Flags &^ svcHashed, Timeout: s.Timeout, Mask: s.Netmask,
	}
	if s.FWMark == 0 {
		v.Address = s.Address.String()
	}
	for _, d := range ds {
		v.Dests = append(v.Dests, rtDest{
			Address: d.Address.String(), Port: d.Port, Family: d.AddressFamily, Weight: d.Weight,
			Forwarding: d.ConnectionFlags & moby.ConnectionFlagFwdMask, Upper: d.UpperThreshold, Lower: d.LowerThreshold,
			ActiveInactive: [2]int{d.ActiveConnections, d.InactiveConnections},
		})
	}
	sort.Slice(v.Dests, func(i, j int) bool { return v.Dests[i].Address < v.Dests[j].Address })
	return v
}

func (v rtView) key() string {
	return fmt.Sprintf("%d/%d/%s/%d/%d", v.Family, v.Protocol, v.Address, v.Port, v.FWMark)
}

// rtTable builds the services the round trip programs: every scheduler
// for every protocol and family, forwarding methods, persistence, one
// packet scheduling and scheduler flags spread over them, plus fwmark
// services of both families.
func rtTable() []rtService {
	protos := []struct {
		num  uint16
		flag string
	}{{unix.IPPROTO_TCP, "-t"}, {unix.IPPROTO_UDP, "-u"}, {unix.IPPROTO_SCTP, "--sctp-service"}}
	fwds := []struct {
		flags uint32
		flag  string
	}{{moby.ConnectionFlagMasq, "-m"}, {moby.ConnectionFlagDirectRoute, "-g"}, {moby.ConnectionFlagTunnel, "-i"}}
	var out []rtService
	n := 0
	for _, fam := range []uint16{unix.AF_INET, unix.AF_INET6} {
		for _, p := range protos {
			for _, sched := range allSchedulers() {
				n++
				port := uint16(1000 + n)
				vip, rs := netip.MustParseAddr("10.9.0.1"), []netip.Addr{netip.MustParseAddr("10.9.1.1"), netip.MustParseAddr("10.9.1.2")}
				mask, maskFlag := uint32(0xffffffff), ""
				if fam == unix.AF_INET6 {
					vip, rs = netip.MustParseAddr("2001:db8:9::1"), []netip.Addr{netip.MustParseAddr("2001:db8:9:1::1"), netip.MustParseAddr("2001:db8:9:1::2")}
					mask = 128
				}
				svc := moby.Service{AddressFamily: fam, Protocol: p.num, Address: net.IP(vip.AsSlice()), Port: port, SchedName: sched, Netmask: mask}
				save := "-A " + p.flag + " " + netip.AddrPortFrom(vip, port).String() + " -s " + sched
				if n%4 == 0 {
					svc.Flags |= svcPersistent
					svc.Timeout = uint32(60 * n)
					// The kernel wants the IPv4 mask in network byte order in
					// a native-endian attribute, the IPv6 one as a prefix length.
					svc.Netmask, maskFlag = binary.NativeEndian.Uint32(net.CIDRMask(24, 32)), "255.255.255.0"
					if fam == unix.AF_INET6 {
						svc.Netmask, maskFlag = 64, "64"
					}
					save += fmt.Sprintf(" -p %d -M %s", svc.Timeout, maskFlag)
				}
				if p.num == unix.IPPROTO_UDP && n%3 == 0 {
					svc.Flags |= svcOnePacket
					save += " -o"
				}
				if sched == "sh" || sched == "mh" {
					var names []string
					if n%2 == 0 {
						svc.Flags |= svcSched1
						names = append(names, sched+"-fallback")
					}
					svc.Flags |= svcSched2
					names = append(names, sched+"-port")
					save += " -b " + strings.Join(names, ",")
				}
				s := rtService{svc: svc, save: []string{save}}
				for i, addr := range rs {
					fwd := fwds[(n+i)%len(fwds)]
					d := moby.Destination{AddressFamily: fam, Address: net.IP(addr.AsSlice()), Port: port, Weight: 3 - 3*i, ConnectionFlags: fwd.flags}
					if i == 0 {
						d.UpperThreshold, d.LowerThreshold = uint32(100+n), uint32(n)
					}
					s.dests = append(s.dests, d)
					line := fmt.Sprintf("-a %s %s -r %s %s -w %d", p.flag, netip.AddrPortFrom(vip, port), netip.AddrPortFrom(addr, port), fwd.flag, d.Weight)
					if fwd.flags == moby.ConnectionFlagTunnel {
						// ipvsadm names the tunnel type; ipip is the kernel default
						// (moby/ipvs cannot set another).
						line += " --tun-type ipip"
					}
					s.save = append(s.save, line)
				}
				out = append(out, s)
			}
		}
	}
	out = append(out,
		rtService{
			svc:   moby.Service{AddressFamily: unix.AF_INET, FWMark: 7, SchedName: "wlc", Netmask: 0xffffffff},
			dests: []moby.Destination{{AddressFamily: unix.AF_INET, Address: net.ParseIP("10.9.1.1").To4(), Weight: 2, ConnectionFlags: moby.ConnectionFlagDirectRoute}},
			save:  []string{"-A -f 7 -s wlc", "-a -f 7 -r 10.9.1.1:0 -g -w 2"},
		},
		rtService{
			svc:   moby.Service{AddressFamily: unix.AF_INET6, FWMark: 8, SchedName: "rr", Netmask: 128, Flags: svcPersistent, Timeout: 30},
			dests: []moby.Destination{{AddressFamily: unix.AF_INET6, Address: net.ParseIP("2001:db8:9:1::1"), Weight: 1, ConnectionFlags: moby.ConnectionFlagMasq}},
			save:  []string{"-A -f 8 -6 -s rr -p 30", "-a -f 8 -6 -r [2001:db8:9:1::1]:0 -m -w 1"},
		},
	)
	return out
}

// expectedView is what the kernel should report for a programmed service.
func expectedView(s rtService) rtView {
	ds := make([]*moby.Destination, len(s.dests))
	for i := range s.dests {
		ds[i] = &s.dests[i]
	}
	return viewOf(&s.svc, ds)
}

// kernelViews reads the whole table back through moby/ipvs.
func kernelViews(t *testing.T, h *moby.Handle) map[string]rtView {
	t.Helper()
	svcs, err := h.GetServices()
	if err != nil {
		t.Fatalf("GetServices: %v", err)
	}
	out := map[string]rtView{}
	for _, s := range svcs {
		ds, err := h.GetDestinations(s)
		if err != nil {
			t.Fatalf("GetDestinations of %s %v:%d fwmark %d: %v", s.SchedName, s.Address, s.Port, s.FWMark, err)
		}
		v := viewOf(s, ds)
		out[v.key()] = v
	}
	return out
}

// ipvsadmSave is `ipvsadm -Sn` in ns as a sorted set of lines.
func ipvsadmSave(t testing.TB, ns string) []string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(inNS(t, ns, "ipvsadm", "-Sn"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

// ipvsadmThresholds maps "service destination" (as ipvsadm -Ln prints
// them, e.g. "TCP 10.9.0.1:1001 10.9.1.1:1001") to "upper lower".
func ipvsadmThresholds(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	svc := ""
	for _, l := range strings.Split(inNS(t, ns, "ipvsadm", "-Ln", "--thresholds"), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && f[0] == "->":
			out[svc+" "+f[1]] = f[2] + " " + f[3]
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP" || f[0] == "FWM"):
			svc = f[0] + " " + f[1]
		}
	}
	return out
}

func thresholdKey(s rtService, d moby.Destination) string {
	if s.svc.FWMark != 0 {
		return fmt.Sprintf("FWM %d %s", s.svc.FWMark, netip.AddrPortFrom(addrOf(d.Address), 0))
	}
	proto := map[uint16]string{unix.IPPROTO_TCP: "TCP", unix.IPPROTO_UDP: "UDP", unix.IPPROTO_SCTP: "SCTP"}[s.svc.Protocol]
	return fmt.Sprintf("%s %s %s", proto, netip.AddrPortFrom(addrOf(s.svc.Address), s.svc.Port), netip.AddrPortFrom(addrOf(d.Address), d.Port))
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// TestKernelIPVSRoundTrip is what package ipvs relies on: moby/ipvs against
// the real kernel, every scheduler x tcp/udp/sctp x IPv4/IPv6 plus fwmark
// services, with persistence, one-packet scheduling, scheduler flags,
// thresholds and all three forwarding methods. What is programmed must
// read back identically through GetServices/GetDestinations (HASHED
// masked) and through the real ipvsadm; updates must show; deletes must
// leave the namespace empty.
func TestKernelIPVSRoundTrip(t *testing.T) {
	ns := newNetns(t, "rt")
	h, err := moby.New("/var/run/netns/" + ns)
	if err != nil {
		t.Fatalf("open IPVS in %s: %v", ns, err)
	}
	defer h.Close()
	if svcs, err := h.GetServices(); err != nil || len(svcs) != 0 {
		t.Fatalf("fresh namespace: %d services, err %v; want none", len(svcs), err)
	}

	table := rtTable()
	want := map[string]rtView{}
	var wantSave []string
	for i := range table {
		s := &table[i]
		if err := h.NewService(&s.svc); err != nil {
			t.Fatalf("NewService %s %v:%d fwmark %d: %v", s.svc.SchedName, s.svc.Address, s.svc.Port, s.svc.FWMark, err)
		}
		for j := range s.dests {
			if err := h.NewDestination(&s.svc, &s.dests[j]); err != nil {
				t.Fatalf("NewDestination %v:%d to %s %v:%d: %v", s.dests[j].Address, s.dests[j].Port, s.svc.SchedName, s.svc.Address, s.svc.Port, err)
			}
		}
		v := expectedView(*s)
		want[v.key()] = v
		wantSave = append(wantSave, s.save...)
	}
	sort.Strings(wantSave)
	if len(want) != len(table) {
		t.Fatalf("table has %d services but %d distinct keys", len(table), len(want))
	}

	check := func(stage string) {
		t.Helper()
		if diff := cmp.Diff(want, kernelViews(t, h)); diff != "" {
			t.Errorf("%s: GetServices/GetDestinations differ from what was programmed (-programmed +kernel):\n%s", stage, diff)
		}
		if diff := cmp.Diff(wantSave, ipvsadmSave(t, ns)); diff != "" {
			t.Errorf("%s: ipvsadm -Sn differs from what was programmed (-programmed +ipvsadm):\n%s", stage, diff)
		}
		thr := ipvsadmThresholds(t, ns)
		n := 0
		for _, s := range table {
			for _, d := range s.dests {
				n++
				k := thresholdKey(s, d)
				if got, w := thr[k], fmt.Sprintf("%d %d", d.UpperThreshold, d.LowerThreshold); got != w {
					t.Errorf("%s: ipvsadm -Ln --thresholds for %s = %q, want %q", stage, k, got, w)
				}
			}
		}
		if len(thr) != n {
			t.Errorf("%s: ipvsadm -Ln --thresholds lists %d destinations, want %d", stage, len(thr), n)
		}
	}
	check("created")
	t.Logf("%d services, %d ipvsadm -Sn lines: kernel, moby/ipvs and ipvsadm agree", len(table), len(wantSave))

	// Updates in place: a scheduler change on a service and a weight and
	// threshold change on a destination; both must show everywhere.
	s := &table[0]
	old := s.save[0]
	s.svc.SchedName = "wlc"
	if err := h.UpdateService(&s.svc); err != nil {
		t.Fatalf("UpdateService: %v", err)
	}
	d := &s.dests[0]
	d.Weight, d.UpperThreshold, d.LowerThreshold = 7, 50, 5
	if err := h.UpdateDestination(&s.svc, d); err != nil {
		t.Fatalf("UpdateDestination: %v", err)
	}
	want[expectedView(*s).key()] = expectedView(*s)
	oldDest := s.save[1]
	s.save[0] = strings.Replace(old, " -s rr", " -s wlc", 1)
	s.save[1] = strings.Replace(oldDest, " -w 3", " -w 7", 1)
	if s.save[0] == old || s.save[1] == oldDest {
		t.Fatalf("test table changed shape: %q %q", old, oldDest)
	}
	wantSave = wantSave[:0]
	for _, s := range table {
		wantSave = append(wantSave, s.save...)
	}
	sort.Strings(wantSave)
	check("updated")

	// Deletes: a destination, then every service.
	if err := h.DelDestination(&s.svc, &s.dests[1]); err != nil {
		t.Fatalf("DelDestination: %v", err)
	}
	if ds, err := h.GetDestinations(&s.svc); err != nil || len(ds) != 1 {
		t.Fatalf("after DelDestination: %d destinations, err %v; want 1", len(ds), err)
	}
	for i := range table {
		if err := h.DelService(&table[i].svc); err != nil {
			t.Fatalf("DelService %s %v:%d fwmark %d: %v", table[i].svc.SchedName, table[i].svc.Address, table[i].svc.Port, table[i].svc.FWMark, err)
		}
	}
	if svcs, err := h.GetServices(); err != nil || len(svcs) != 0 {
		t.Errorf("after deleting every service: %d left, err %v", len(svcs), err)
	}
	if got := ipvsadmSave(t, ns); len(got) != 0 {
		t.Errorf("after deleting every service ipvsadm -Sn still shows:\n%s", strings.Join(got, "\n"))
	}
}
