package vip

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"

	"github.com/lvsha/lvsha/rawsock"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A refresh pass renews every held VIP's lifetime with the same
// RTM_NEWADDR an AddrReplace sends, but many to a write: one request at a
// time cost a write, a read of its acknowledgement and the library's
// getsockname for each, a quarter of a 100-instance master's CPU at two
// refreshes a second per VIP (issue #21). The kernel handles the requests
// of one write in order and acknowledges each.

// batchMax bounds the requests of one write, so that their errors (each
// quotes its request) fit the socket's receive buffer many times over:
// a lost answer is a write whose requests are made again alone.
const batchMax = 64

// batchTimeout bounds the wait for a write's acknowledgements; the kernel
// sends them before the write returns, so only a lost one waits this long.
const batchTimeout = time.Second

// replaceReq is one AddrReplace of a batch.
type replaceReq struct {
	link netlink.Link
	addr *netlink.Addr
}

// errNotBatched says a request was not made in a batch (one the batch
// cannot express, or whose acknowledgement did not come): the caller
// makes it alone.
var errNotBatched = errors.New("not made in a batch")

// multiReplacer makes many AddrReplace requests at once
// (*netlinkWorker, with a batch socket).
type multiReplacer interface {
	replaceAll(reqs []replaceReq) []error
}

// batchSocket is the netlink socket a batch is written to and its
// acknowledgements read from (*nl.NetlinkSocket).
type batchSocket interface {
	GetFd() int
	Receive() ([]syscall.NetlinkMessage, *unix.SockaddrNetlink, error)
}

// replaceAll makes reqs on s, batchMax to a write, and returns each one's
// result: nil when the kernel acknowledged it, the kernel's error, or
// errNotBatched.
func replaceAll(s batchSocket, reqs []replaceReq) []error {
	errs := make([]error, len(reqs))
	for start := 0; start < len(reqs); start += batchMax {
		chunk := reqs[start:min(start+batchMax, len(reqs))]
		writeBatch(s, chunk, errs[start:start+len(chunk)])
	}
	return errs
}

// writeBatch makes the requests of one write; errs, as long as reqs,
// takes their results. Only the last request asks for an acknowledgement:
// the kernel answers the others only if they fail, in order, so the last
// one's acknowledgement says every one before it is done, without a read
// per request.
func writeBatch(s batchSocket, reqs []replaceReq, errs []error) {
	var made []*nl.NetlinkRequest
	bySeq := make(map[uint32]int, len(reqs))
	for i, r := range reqs {
		errs[i] = errNotBatched // until done
		if req, ok := replaceRequest(r.link, r.addr); ok {
			bySeq[req.Seq] = i
			made = append(made, req)
		}
	}
	if len(made) == 0 {
		return
	}
	last := made[len(made)-1]
	last.Flags |= unix.NLM_F_ACK
	var buf []byte
	for _, req := range made {
		buf = append(buf, req.Serialize()...)
	}
	// Raw, non-blocking system calls: the runtime's ordinary path wakes
	// its monitor thread from deep sleep on each call, in case it blocks,
	// and that wakeup and its short sleeps after cost more than the write
	// (rawsock.Sendmsg). The kernel handles a netlink request inside the
	// write and queues its answer before returning, so the answers are
	// there to read at once; only if one is not is the read a blocking one.
	kernel := unix.RawSockaddrNetlink{Family: unix.AF_NETLINK}
	if err := rawsock.Sendmsg(s.GetFd(), buf, nil, unsafe.Pointer(&kernel), unix.SizeofSockaddrNetlink); err != nil {
		return // every one made alone
	}
	failed := map[int]error{}
	rbuf := make([]byte, 8192)
	for {
		msgs, err := receiveNow(s.GetFd(), rbuf)
		if errors.Is(err, unix.EAGAIN) {
			msgs, _, err = s.Receive()
		}
		if err != nil {
			return // a timeout or a lost acknowledgement: every one alone
		}
		for _, m := range msgs {
			i, ok := bySeq[m.Header.Seq]
			if !ok || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue // another write's, or not an answer
			}
			if code := int32(nl.NativeEndian().Uint32(m.Data[:4])); code != 0 {
				failed[i] = syscall.Errno(-code)
			}
			if m.Header.Seq != last.Seq {
				continue
			}
			for _, i := range bySeq {
				errs[i] = failed[i] // nil: done
			}
			return
		}
	}
}

// receiveNow reads the netlink messages of one datagram waiting on fd,
// without blocking: EAGAIN when none waits.
func receiveNow(fd int, buf []byte) ([]syscall.NetlinkMessage, error) {
	var from unix.RawSockaddrAny
	n, _, errno := rawsock.Recvmsg(fd, buf, nil, &from)
	if errno != 0 {
		return nil, errno
	}
	if n < unix.NLMSG_HDRLEN {
		return nil, fmt.Errorf("short netlink datagram: %d bytes", n)
	}
	return syscall.ParseNetlinkMessage(buf[:n])
}

// replaceRequest is the RTM_NEWADDR that netlink's AddrReplace(link,
// addr) sends, built as its addrHandle builds it, for the addresses a
// Manager adds: ok is false for one that has a peer address or a link
// without an index, which the batch leaves to AddrReplace.
func replaceRequest(link netlink.Link, addr *netlink.Addr) (*nl.NetlinkRequest, bool) {
	if addr.Peer != nil || addr.IPNet == nil || link == nil || link.Attrs().Index == 0 {
		return nil, false
	}
	family := nl.GetIPFamily(addr.IP)
	local := addr.IP.To16()
	if family == netlink.FAMILY_V4 {
		local = addr.IP.To4()
	}
	prefixlen, masklen := addr.Mask.Size()
	if local == nil || masklen != 8*len(local) {
		return nil, false
	}
	// AddrReplace asks for an acknowledgement too; writeBatch asks for
	// the last one's only.
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	msg := nl.NewIfAddrmsg(family)
	msg.Scope = uint8(addr.Scope)
	msg.Index = uint32(link.Attrs().Index)
	msg.Prefixlen = uint8(prefixlen)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, local))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, local))
	if addr.Flags != 0 {
		if addr.Flags <= 0xff {
			msg.Flags = uint8(addr.Flags)
		} else {
			b := make([]byte, 4)
			nl.NativeEndian().PutUint32(b, uint32(addr.Flags))
			req.AddData(nl.NewRtAttr(unix.IFA_FLAGS, b))
		}
	}
	if family == netlink.FAMILY_V4 {
		brd := addr.Broadcast
		if brd == nil && prefixlen < 31 {
			brd = make(net.IP, 4)
			for i := range local {
				brd[i] = local[i] | ^addr.Mask[i]
			}
		}
		if brd != nil && !net.IPv4zero.Equal(brd) {
			req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, brd))
		}
		if addr.Label != "" {
			req.AddData(nl.NewRtAttr(unix.IFA_LABEL, nl.ZeroTerminated(addr.Label)))
		}
	}
	if addr.ValidLft > 0 || addr.PreferedLft > 0 {
		ci := nl.IfaCacheInfo{IfaCacheinfo: unix.IfaCacheinfo{Valid: uint32(addr.ValidLft), Prefered: uint32(addr.PreferedLft)}}
		req.AddData(nl.NewRtAttr(unix.IFA_CACHEINFO, ci.Serialize()))
	}
	return req, true
}

// openBatchSocket opens the netlink socket of a Host's batches in the
// network namespace of the calling thread.
func openBatchSocket() (*nl.NetlinkSocket, error) {
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket for batches: %w", err)
	}
	tv := unix.NsecToTimeval(int64(batchTimeout))
	if err := s.SetReceiveTimeout(&tv); err != nil {
		s.Close()
		return nil, fmt.Errorf("netlink socket for batches: %w", err)
	}
	return s, nil
}
