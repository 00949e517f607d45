package ipvs

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultVersionLine is the first line of ipvsadm -Ln on current kernels.
// The real one comes from the kernel (IPVS_INFO version and connection
// table size, also the first line of /proc/net/ip_vs), which moby cannot
// query; pass the real one in TableOptions.VersionLine when it matters.
const DefaultVersionLine = "IP Virtual Server version 1.2.1 (size=4096)"

// TableOptions select what WriteTable prints around the entries.
type TableOptions struct {
	// VersionLine is printed first when not empty.
	VersionLine string
	// Title prints ipvsadm's two column title lines.
	Title bool
	// Stats selects the layout of ipvsadm -Ln --stats instead of -Ln.
	Stats bool
}

// Format renders desired or read-back services exactly as `ipvsadm -Ln`
// prints them, with DefaultVersionLine, titles, and zero connection
// counts.
func Format(services []Service) string {
	st := make([]ServiceStatus, 0, len(services))
	for _, s := range services {
		ss := ServiceStatus{Service: s}
		ss.Service.Destinations = nil
		for _, d := range s.Destinations {
			ss.Destinations = append(ss.Destinations, DestinationStatus{Destination: d})
		}
		st = append(st, ss)
	}
	var b strings.Builder
	_ = WriteTable(&b, st, TableOptions{VersionLine: DefaultVersionLine, Title: true})
	return b.String()
}

// WriteTable writes services in the layout of `ipvsadm -Ln` (or
// `ipvsadm -Ln --stats`), byte for byte, trailing spaces included; see
// print_title and print_service_entry in ipvsadm.c (v1.31). Like ipvsadm
// it sorts services and destinations first (a sorted copy; services is not
// modified).
func WriteTable(w io.Writer, services []ServiceStatus, opt TableOptions) error {
	bw := bufio.NewWriter(w)
	if opt.VersionLine != "" {
		fmt.Fprintln(bw, opt.VersionLine)
	}
	if opt.Title {
		if opt.Stats {
			fmt.Fprintf(bw, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
				"Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
		} else {
			fmt.Fprint(bw, "Prot LocalAddress:Port Scheduler Flags\n"+
				"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
		}
	}
	sorted := slices.Clone(services)
	SortServices(sorted)
	for _, ss := range sorted {
		writeService(bw, ss, opt.Stats)
	}
	return bw.Flush()
}

// Options renders the service options ipvsadm -Ln prints after the
// scheduler, each with a leading space: " (sh-port) persistent 300 mask
// 255.255.255.0 ops"; empty when there are none.
func (s Service) Options() string {
	var b strings.Builder
	if s.Flags&flagsSched != 0 {
		fmt.Fprintf(&b, " (%s)", schedFlagNames(s.Scheduler, s.Flags))
	}
	if s.Flags&FlagPersistent != 0 {
		fmt.Fprintf(&b, " persistent %d", s.Timeout)
		if s.Family == unix.AF_INET6 {
			if s.Netmask != 128 {
				fmt.Fprintf(&b, " mask %d", s.Netmask)
			}
		} else if s.Netmask != 0xffffffff {
			fmt.Fprintf(&b, " mask %s", netmask4Addr(s.Netmask))
		}
	}
	if s.Flags&FlagOnePacket != 0 {
		b.WriteString(" ops")
	}
	return b.String()
}

func writeService(w io.Writer, ss ServiceStatus, stats bool) {
	s := ss.Service
	name := s.Key().String()
	if s.FWMark == 0 && s.Family != unix.AF_INET6 && len(name) > 33 {
		name = name[:33] // ipvsadm: svc_name[33] = '\0'
	}
	if stats {
		fmt.Fprintf(w, "%-33s", name)
		writeLargeNums(w, ss.Stats)
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "%s %s%s", name, s.Scheduler, s.Options())
		fmt.Fprintln(w)
	}
	for _, ds := range ss.Destinations {
		d := ds.Destination
		name := d.String()
		if !d.Address.Unmap().Is6() && len(name) > 28 {
			name = name[:28] // ipvsadm: dname[28] = '\0'
		}
		if stats {
			fmt.Fprintf(w, "  -> %-28s", name)
			writeLargeNums(w, ds.Stats)
			fmt.Fprintln(w)
			continue
		}
		fmt.Fprintf(w, "  -> %-28s %-7s %-6d %-10d %-10d\n", name, d.Forwarding, d.Weight, ds.ActiveConns, ds.InactConns)
	}
}

func writeLargeNums(w io.Writer, s Stats) {
	for _, v := range []uint64{s.Conns, s.InPkts, s.OutPkts, s.InBytes, s.OutBytes} {
		fmt.Fprint(w, largeNum(v))
	}
}

// largeNum is ipvsadm's print_largenum without --exact.
func largeNum(i uint64) string {
	switch {
	case i < 100_000_000:
		return fmt.Sprintf("%9d", i)
	case i < 1_000_000_000:
		return fmt.Sprintf("%8dK", i/1_000)
	case i < 100_000_000_000:
		return fmt.Sprintf("%8dM", i/1_000_000)
	case i < 100_000_000_000_000:
		return fmt.Sprintf("%8dG", i/1_000_000_000)
	}
	return fmt.Sprintf("%8dT", i/1_000_000_000_000)
}

// SortServices sorts services, and each one's destinations, in the order
// ipvsadm lists them (it sorts unless --nosort; ipvs_cmp_services and
// ipvs_cmp_dests in libipvs). Those comparators subtract 32-bit values
// into an int, so they wrap: 10.0.0.1 sorts after 192.168.0.1 because
// 0x0a000001-0xc0a80001 is positive as an int32. The same arithmetic is
// reproduced here so the output matches ipvsadm's.
func SortServices(services []ServiceStatus) {
	for i := range services {
		services[i].Destinations = slices.Clone(services[i].Destinations)
		slices.SortStableFunc(services[i].Destinations, func(a, b DestinationStatus) int {
			return cmpDest(a.Destination, b.Destination)
		})
	}
	slices.SortStableFunc(services, func(a, b ServiceStatus) int { return cmpService(a.Service, b.Service) })
}

func cmpService(a, b Service) int {
	if r := int32(a.FWMark - b.FWMark); r != 0 {
		return int(r)
	}
	if r := int(a.Family) - int(b.Family); r != 0 {
		return r
	}
	if r := int(a.Protocol) - int(b.Protocol); r != 0 {
		return r
	}
	if r := cmpAddr(a.Address, b.Address, a.Family == unix.AF_INET6); r != 0 {
		return r
	}
	return int(a.Port) - int(b.Port)
}

func cmpDest(a, b Destination) int {
	if r := cmpAddr(a.Address, b.Address, a.Address.Unmap().Is6()); r != 0 {
		return r
	}
	return int(a.Port) - int(b.Port)
}

func cmpAddr(a, b netip.Addr, v6 bool) int {
	if v6 {
		x, y := a.As16(), b.As16()
		for i := 0; i < 16; i += 4 {
			if r := int32(binary.BigEndian.Uint32(x[i:]) - binary.BigEndian.Uint32(y[i:])); r != 0 {
				return int(r)
			}
		}
		return 0
	}
	x, y := addr4(a), addr4(b)
	return int(int32(x - y))
}

func addr4(a netip.Addr) uint32 {
	a = a.Unmap()
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}
