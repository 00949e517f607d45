package ipvs

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// DestinationWrite is one destination command of a batch: Op is
// OpCreateDestination, OpUpdateDestination or OpDeleteDestination.
type DestinationWrite struct {
	Op          Op
	Service     *moby.Service
	Destination *moby.Destination
}

// DestinationBatcher is a Kernel that takes many destination commands in
// one request. Handle is one: netlink carries several messages in one
// sendmsg, and the kernel runs each in turn and answers each. Programming
// 10,000 real servers one request at a time (a send, then a receive, per
// real server, as moby does) was a third of a start's CPU in the test VM.
type DestinationBatcher interface {
	// WriteDestinations makes the writes in order and returns one error
	// per write (nil when it succeeded), each the kernel's errno.
	WriteDestinations(ws []DestinationWrite) []error
}

var _ DestinationBatcher = (*Handle)(nil)

// maxBatch bounds the messages of one sendmsg: the kernel queues every
// answer on the socket before sendmsg returns, and answers that do not
// fit its receive buffer (212,992 bytes by default; each answer takes
// about a kilobyte of it) would be dropped.
const maxBatch = 64

// IPVS generic netlink numbers for the destination commands
// (include/uapi/linux/ip_vs.h), which moby numbers but does not export.
const (
	cmdNewDest genlHeader = 5 // IPVS_CMD_NEW_DEST
	cmdSetDest genlHeader = 6 // IPVS_CMD_SET_DEST
	cmdDelDest genlHeader = 7 // IPVS_CMD_DEL_DEST

	cmdAttrService = 1 // IPVS_CMD_ATTR_SERVICE
	cmdAttrDest    = 2 // IPVS_CMD_ATTR_DEST

	svcAttrAF       = 1 // u16
	svcAttrProtocol = 2 // u16
	svcAttrAddr     = 3 // 4 or 16 bytes
	svcAttrPort     = 4 // be16
	svcAttrFWMark   = 5 // u32

	destAttrAddr    = 1 // 4 or 16 bytes
	destAttrPort    = 2 // be16
	destAttrFwd     = 3 // u32
	destAttrWeight  = 4 // u32
	destAttrUThresh = 5 // u32
	destAttrLThresh = 6 // u32
)

// WriteDestinations sends ws in requests of up to maxBatch messages over
// the generic netlink socket the sync daemon commands use. The service is
// named by its key alone, which is all the kernel reads of it for a
// destination command; the destination carries what moby sends.
func (h *Handle) WriteDestinations(ws []DestinationWrite) []error {
	errs := make([]error, len(ws))
	for start := 0; start < len(ws); start += maxBatch {
		end := min(start+maxBatch, len(ws))
		h.writeBatch(ws[start:end], errs[start:end])
	}
	return errs
}

func (h *Handle) writeBatch(ws []DestinationWrite, errs []error) {
	s := h.daemons.Socket
	s.Lock()
	defer s.Unlock()
	var buf []byte
	first := atomic.AddUint32(&h.daemons.Seq, uint32(len(ws))) - uint32(len(ws)) + 1
	for i, w := range ws {
		buf = appendDestMessage(buf, h.family, first+uint32(i), w)
	}
	if err := unix.Sendto(s.GetFd(), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return
	}
	pid, err := s.GetPid()
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return
	}
	answered := make([]bool, len(ws))
	left := len(ws)
	rb := make([]byte, 1<<16)
	for left > 0 {
		n, _, err := unix.Recvfrom(s.GetFd(), rb, unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// EAGAIN: the kernel answered no more (see command); else
			// the socket failed (ENOBUFS: answers were dropped).
			if err == unix.EAGAIN {
				err = unix.EINTR
			}
			for i := range errs {
				if !answered[i] {
					errs[i] = fmt.Errorf("no answer from the kernel: %w", err)
				}
			}
			return
		}
		msgs, err := syscall.ParseNetlinkMessage(rb[:n])
		if err != nil {
			for i := range errs {
				if !answered[i] {
					errs[i] = fmt.Errorf("parse the kernel's answer: %w", err)
				}
			}
			return
		}
		for _, m := range msgs {
			i := int(m.Header.Seq - first)
			if m.Header.Pid != pid || m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq < first || i >= len(ws) || answered[i] {
				continue // left over from an earlier request
			}
			answered[i], errs[i] = true, ackError(m)
			left--
		}
	}
}

// appendDestMessage appends one destination command to b: the netlink
// header, the generic netlink header, and the service and destination
// nests.
func appendDestMessage(b []byte, family uint16, seq uint32, w DestinationWrite) []byte {
	start := len(b)
	var cmd genlHeader
	switch w.Op {
	case OpCreateDestination:
		cmd = cmdNewDest
	case OpUpdateDestination:
		cmd = cmdSetDest
	default:
		cmd = cmdDelDest
	}
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set below
	b = binary.NativeEndian.AppendUint16(b, family)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // pid: the kernel's
	b = append(b, cmd.Serialize()...)

	s := w.Service
	nest := len(b)
	b = appendAttr(b, cmdAttrService, nil)
	b = appendAttr(b, svcAttrAF, binary.NativeEndian.AppendUint16(nil, s.AddressFamily))
	if s.FWMark != 0 {
		b = appendAttr(b, svcAttrFWMark, binary.NativeEndian.AppendUint32(nil, s.FWMark))
	} else {
		b = appendAttr(b, svcAttrProtocol, binary.NativeEndian.AppendUint16(nil, s.Protocol))
		b = appendAttr(b, svcAttrAddr, ipBytes(s.Address))
		b = appendAttr(b, svcAttrPort, binary.BigEndian.AppendUint16(nil, s.Port))
	}
	binary.NativeEndian.PutUint16(b[nest:], uint16(len(b)-nest))

	d := w.Destination
	nest = len(b)
	b = appendAttr(b, cmdAttrDest, nil)
	b = appendAttr(b, destAttrAddr, ipBytes(d.Address))
	b = appendAttr(b, destAttrPort, binary.BigEndian.AppendUint16(nil, d.Port))
	if w.Op != OpDeleteDestination {
		b = appendAttr(b, destAttrFwd, binary.NativeEndian.AppendUint32(nil, d.ConnectionFlags&moby.ConnectionFlagFwdMask))
		b = appendAttr(b, destAttrWeight, binary.NativeEndian.AppendUint32(nil, uint32(d.Weight)))
		b = appendAttr(b, destAttrUThresh, binary.NativeEndian.AppendUint32(nil, d.UpperThreshold))
		b = appendAttr(b, destAttrLThresh, binary.NativeEndian.AppendUint32(nil, d.LowerThreshold))
	}
	binary.NativeEndian.PutUint16(b[nest:], uint16(len(b)-nest))

	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// appendAttr appends one netlink attribute, padded to 4 bytes; with nil
// data it is a nest's header, whose length the caller sets.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofNlAttr+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// ipBytes is an address as moby sends it: 4 bytes for IPv4.
func ipBytes(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}
