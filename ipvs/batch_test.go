package ipvs

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"syscall"
	"testing"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// What Update remembers of a destination it wrote is what a read would
// return of it.
func TestAsReadIsTheReadBack(t *testing.T) {
	for _, d := range []Destination{
		{Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Weight: 3, Forwarding: ForwardDirectRoute, UpperThreshold: 9, LowerThreshold: 2},
		{Address: netip.MustParseAddr("::ffff:10.0.0.2"), Port: 8080, Weight: 0, Sorry: true, Standby: true},
		{Address: netip.MustParseAddr("2001:db8::7"), Port: 443, Weight: 100, Forwarding: ForwardTunnel | 0x100},
	} {
		if got, want := d.asRead(), destinationFromMoby(d.toMoby()); got != want {
			t.Errorf("%v: asRead %+v, read back %+v", d, got, want)
		}
	}
}

// A batch's messages carry what moby sends for a destination command:
// the service's key, and the destination (only its address and port for
// a deletion), in the kernel's byte orders. The kernel's own reading of
// them is integration.TestReconcilerOnKernel's.
func TestDestMessages(t *testing.T) {
	svc := Service{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Scheduler: "wlc"}
	fwm := Service{Family: unix.AF_INET6, FWMark: 7, Scheduler: "rr"}
	dst := Destination{Address: netip.MustParseAddr("10.0.1.2"), Port: 8080, Weight: 5, Forwarding: ForwardDirectRoute, UpperThreshold: 10, LowerThreshold: 1}
	dst6 := Destination{Address: netip.MustParseAddr("2001:db8::2"), Port: 443, Weight: 1}
	var buf []byte
	ws := []DestinationWrite{
		{Op: OpCreateDestination, Service: svc.toMoby(), Destination: dst.toMoby()},
		{Op: OpUpdateDestination, Service: fwm.toMoby(), Destination: dst6.toMoby()},
		{Op: OpDeleteDestination, Service: svc.toMoby(), Destination: dst.toMoby()},
	}
	for i, w := range ws {
		buf = appendDestMessage(buf, 0x1234, uint32(100+i), w)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	u16 := func(b []byte) uint16 { return binary.NativeEndian.Uint16(b) }
	u32 := func(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }
	for i, m := range msgs {
		h := m.Header
		if h.Type != 0x1234 || h.Flags != unix.NLM_F_REQUEST|unix.NLM_F_ACK || h.Seq != uint32(100+i) || int(h.Len) != unix.SizeofNlMsghdr+len(m.Data) {
			t.Errorf("message %d: header %+v", i, h)
		}
		if want := []byte{byte([]genlHeader{cmdNewDest, cmdSetDest, cmdDelDest}[i]), genlVersion, 0, 0}; string(m.Data[:4]) != string(want) {
			t.Errorf("message %d: generic netlink header % x, want % x", i, m.Data[:4], want)
		}
		top, err := parseAttrs(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		s, err := parseAttrs(top[cmdAttrService])
		if err != nil {
			t.Fatal(err)
		}
		d, err := parseAttrs(top[cmdAttrDest])
		if err != nil {
			t.Fatal(err)
		}
		w := ws[i]
		if u16(s[svcAttrAF]) != w.Service.AddressFamily {
			t.Errorf("message %d: family %d", i, u16(s[svcAttrAF]))
		}
		if w.Service.FWMark != 0 {
			if u32(s[svcAttrFWMark]) != w.Service.FWMark || s[svcAttrAddr] != nil {
				t.Errorf("message %d: fwmark service %v", i, s)
			}
		} else if u16(s[svcAttrProtocol]) != unix.IPPROTO_TCP || string(s[svcAttrAddr]) != string([]byte{10, 0, 0, 1}) || binary.BigEndian.Uint16(s[svcAttrPort]) != 80 {
			t.Errorf("message %d: service %v", i, s)
		}
		if string(d[destAttrAddr]) != string(ipBytes(w.Destination.Address)) || binary.BigEndian.Uint16(d[destAttrPort]) != w.Destination.Port {
			t.Errorf("message %d: destination %v", i, d)
		}
		if w.Op == OpDeleteDestination {
			if len(d) != 2 {
				t.Errorf("message %d: a deletion carries %d attributes, want address and port", i, len(d))
			}
			continue
		}
		if u32(d[destAttrFwd]) != w.Destination.ConnectionFlags&moby.ConnectionFlagFwdMask || int(u32(d[destAttrWeight])) != w.Destination.Weight ||
			u32(d[destAttrUThresh]) != w.Destination.UpperThreshold || u32(d[destAttrLThresh]) != w.Destination.LowerThreshold {
			t.Errorf("message %d: destination %v", i, d)
		}
	}
}

// sameService compares every field of Service: one added to Service
// must be added there too, or Update would keep a service whose new
// field changed.
func TestSameServiceCoversEveryField(t *testing.T) {
	if n := reflect.TypeFor[Service]().NumField(); n != 11 {
		t.Errorf("Service has %d fields, sameService compares 11: compare the new one too, then change this count", n)
	}
	a := Service{Name: "a", Destinations: []Destination{{Port: 1}}}
	b := a
	b.Destinations = []Destination{{Port: 1}}
	if !sameService(a, b) {
		t.Error("equal services differ")
	}
	b.Destinations = []Destination{{Port: 1, Weight: 2}}
	if sameService(a, b) {
		t.Error("a weight change goes unseen")
	}
}
