package track

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The address notifications a director's kernel sends are mostly its own
// VIPs' lifetimes being renewed: two a second per VIP, each an
// RTM_NEWADDR to every address listener (issue #21). A watch needs only
// the interfaces its names are on, so its socket carries a classic BPF
// filter that drops every notification for another interface in the
// kernel, before it wakes the watch: 100 VIPs on a tun device cost the
// source-address watch 200 reads, parses and channel hand-offs a second.

// ifindexesOf are the interfaces of names (AddrName's), or nil if one is
// not such a name: then nothing is filtered.
func ifindexesOf(names []string) []int {
	var idx []int
	for _, n := range names {
		i := strings.LastIndexByte(n, '%')
		v, err := strconv.Atoi(n[i+1:])
		if i < 0 || err != nil || v <= 0 {
			return nil
		}
		idx = append(idx, v)
	}
	return idx
}

// ifindexFilter accepts the address messages (an nlmsghdr, then an
// ifaddrmsg whose ifa_index is at byte 20) of the interfaces ifindexes.
// A load reads in network order, so each index is compared as its native
// bytes read that way.
func ifindexFilter(ifindexes []int) []unix.SockFilter {
	const idxOffset = unix.SizeofNlMsghdr + int(unsafe.Offsetof(unix.IfAddrmsg{}.Index))
	n := len(ifindexes)
	prog := []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: uint32(idxOffset)}}
	for i, idx := range ifindexes {
		var b [4]byte
		nl.NativeEndian().PutUint32(b[:], uint32(idx))
		// Jt skips to the accepting return: past the compares left and
		// the dropping return.
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: binary.BigEndian.Uint32(b[:]), Jt: uint8(n - i)})
	}
	return append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff})
}

// maxFiltered bounds the interfaces one filter compares (a jump's
// offset is a byte); a watch of more is not filtered.
const maxFiltered = 200

// addrSubscribe sends the address notifications of the interfaces
// ifindexes (all, if nil) in at (nil: here) on ch until done closes,
// then closes ch; a failed read ends it too, lost saying why.
func addrSubscribe(at *netns.NsHandle, ifindexes []int, ch chan<- netlink.AddrUpdate, done <-chan struct{}, lost *lostError) error {
	ns := netns.None()
	if at != nil {
		ns = *at
	}
	s, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR)
	if err != nil {
		return err
	}
	if len(ifindexes) > 0 && len(ifindexes) <= maxFiltered {
		prog := ifindexFilter(ifindexes)
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if err := unix.SetsockoptSockFprog(s.GetFd(), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
			s.Close()
			return fmt.Errorf("filter address notifications: %w", err)
		}
	}
	go func() {
		<-done
		s.Close()
	}()
	go func() {
		defer close(ch)
		for {
			msgs, from, err := s.Receive()
			if err != nil {
				lost.set(fmt.Errorf("receive address notifications: %w", err))
				return
			}
			if from.Pid != nl.PidKernel {
				continue
			}
			for _, m := range msgs {
				u, ok := parseAddrUpdate(m)
				if !ok {
					continue
				}
				select {
				case ch <- u:
				case <-done:
					return
				}
			}
		}
	}()
	return nil
}

// parseAddrUpdate reads an RTM_NEWADDR or RTM_DELADDR as netlink's own
// subscription does: the address is IFA_LOCAL when there is one (IFA_ADDRESS
// is then the peer's, but for an IPv4 address equal to it), else
// IFA_ADDRESS; its flags IFA_FLAGS when there is one, else the header's.
func parseAddrUpdate(m syscall.NetlinkMessage) (netlink.AddrUpdate, bool) {
	if (m.Header.Type != unix.RTM_NEWADDR && m.Header.Type != unix.RTM_DELADDR) || len(m.Data) < unix.SizeofIfAddrmsg {
		return netlink.AddrUpdate{}, false
	}
	msg := nl.DeserializeIfAddrmsg(m.Data)
	attrs, err := nl.ParseRouteAttr(m.Data[unix.SizeofIfAddrmsg:])
	if err != nil {
		return netlink.AddrUpdate{}, false
	}
	var local, dst []byte
	flags := int(msg.Flags)
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.IFA_ADDRESS:
			dst = a.Value
		case unix.IFA_LOCAL:
			local = a.Value
		case unix.IFA_FLAGS:
			if len(a.Value) >= 4 {
				flags = int(nl.NativeEndian().Uint32(a.Value[:4]))
			}
		}
	}
	ip := dst
	if local != nil {
		ip = local
	}
	if ip == nil {
		return netlink.AddrUpdate{}, false
	}
	return netlink.AddrUpdate{
		LinkAddress: net.IPNet{IP: net.IP(ip), Mask: net.CIDRMask(int(msg.Prefixlen), 8*len(ip))},
		LinkIndex:   int(msg.Index),
		NewAddr:     m.Header.Type == unix.RTM_NEWADDR,
		Flags:       flags,
		Scope:       int(msg.Scope),
	}, true
}
