// Package rawsock makes the system calls of lvsha's packet paths (VRRP
// adverts, BFD control packets) as raw, non-blocking system calls, for
// callers that wait for readiness in the runtime's poller
// (syscall.RawConn's Read and Write).
package rawsock

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Addr is the address in sa, or the zero Addr if it holds none.
func Addr(sa *unix.RawSockaddrAny) netip.Addr { return AddrPort(sa).Addr() }

// AddrPort is the address and port in sa (an IPv4-mapped address
// unmapped, no zone), or the zero AddrPort if it holds none.
func AddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), port(s.Port))
	case unix.AF_INET6:
		s := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(s.Addr).Unmap(), port(s.Port))
	}
	return netip.AddrPort{}
}

// port reads a sockaddr's port, stored in network byte order.
func port(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// Recvmsg is a non-blocking recvmsg(2) made as a raw system call, the
// sender's address into from (see Sendmsg for why raw).
func Recvmsg(fd int, p, oob []byte, from *unix.RawSockaddrAny) (n, oobn int, errno syscall.Errno) {
	if len(p) == 0 {
		return 0, 0, unix.EINVAL
	}
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	msg := unix.Msghdr{Name: (*byte)(unsafe.Pointer(from)), Namelen: unix.SizeofSockaddrAny, Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
	if e != 0 {
		return 0, 0, e
	}
	return int(r), int(msg.Controllen), 0
}

// Sendmsg is a non-blocking sendmsg(2) made as a raw system call. The
// runtime's ordinary system-call path wakes its monitor thread from deep
// sleep on every call, in case the call blocks; at one advert per 100 ms
// that wakeup and the thread handoffs after it cost more than the send
// (measured: 8 context switches per advert instead of 5 in a minimal
// program). MSG_DONTWAIT means the call cannot block, which is what a raw
// system call requires.
func Sendmsg(fd int, p, oob []byte, to unsafe.Pointer, tolen uint32) error {
	if len(p) == 0 {
		return errors.New("empty message")
	}
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	msg := unix.Msghdr{Name: (*byte)(to), Namelen: tolen, Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	_, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
	if errno != 0 {
		return errno
	}
	return nil
}

// Control is what a datagram's control messages say.
type Control struct {
	At       time.Time  // SO_TIMESTAMPNS (wall clock); zero if absent
	HopLimit int        // IP_TTL or IPV6_HOPLIMIT; 0 if absent
	Dst      netip.Addr // the header's destination, from IP(V6)_PKTINFO
	// Dropped is SO_RXQ_OVFL's count: how many datagrams the socket had
	// dropped, for a full receive buffer, when this one was queued; 0 if
	// absent (the kernel sends it only once it is not 0).
	Dropped uint32
}

// ParseControl walks the control messages in place: x/net's and x/sys's
// parsers allocate a slice of messages and an address per datagram, at
// 1,000 adverts a second a tenth of a backup's CPU with the garbage
// collection they cause. Malformed or truncated data ends the walk.
func ParseControl(oob []byte) Control {
	var c Control
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		n := int(h.Len)
		if n < hdr || n > len(oob) {
			break
		}
		data := oob[cmsgAlign(hdr):n]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= 16:
			// struct timespec: two 64-bit words on 64-bit Linux.
			c.At = time.Unix(int64(binary.NativeEndian.Uint64(data[0:8])), int64(binary.NativeEndian.Uint64(data[8:16])))
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			c.Dropped = binary.NativeEndian.Uint32(data[0:4])
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_TTL && len(data) >= 4,
			h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_HOPLIMIT && len(data) >= 4:
			c.HopLimit = int(int32(binary.NativeEndian.Uint32(data[0:4])))
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= 12:
			// struct in_pktinfo: ifindex, spec_dst, then the header's
			// destination.
			c.Dst = netip.AddrFrom4([4]byte(data[8:12]))
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= 16:
			// struct in6_pktinfo: the address, then ifindex.
			c.Dst = netip.AddrFrom16([16]byte(data[0:16])).Unmap()
		}
		if a := cmsgAlign(n); a < len(oob) {
			oob = oob[a:]
		} else {
			break
		}
	}
	return c
}

// cmsgAlign rounds n up to the alignment of control messages.
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}
