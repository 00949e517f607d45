package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The kernel's IPVS connection synchronisation (net/netfilter/ipvs/
// ip_vs_sync.c): a master sync daemon multicasts the director's
// connection table and a backup daemon installs what it receives, so
// established connections survive a failover to the backup. A network
// namespace runs at most one master and one backup daemon, at the same
// time if asked. `ipvsadm --start-daemon master|backup` starts them; lvsha
// does it over generic netlink (IPVS_CMD_NEW_DAEMON and friends), which
// moby/ipvs numbers but does not implement.

// DaemonState is the role of a sync daemon.
type DaemonState uint32

// Sync daemon states, values from include/uapi/linux/ip_vs.h.
const (
	DaemonMaster DaemonState = 1 // IP_VS_STATE_MASTER: sends
	DaemonBackup DaemonState = 2 // IP_VS_STATE_BACKUP: receives
)

// String returns the word ipvsadm uses.
func (s DaemonState) String() string {
	switch s {
	case DaemonMaster:
		return "master"
	case DaemonBackup:
		return "backup"
	}
	return "state-" + strconv.FormatUint(uint64(s), 10)
}

// What the kernel uses for a field a daemon is started without
// (start_sync_thread; IP_VS_SYNC_GROUP and IP_VS_SYNC_PORT in
// include/net/ip_vs.h).
var (
	DefaultSyncGroup = netip.AddrFrom4([4]byte{224, 0, 0, 81})
)

// More of the kernel's defaults and bounds for a sync daemon.
const (
	DefaultSyncPort = 8848
	DefaultSyncTTL  = 1

	// MaxSyncLen4 and MaxSyncLen6 are the largest message payload the
	// kernel takes: a UDP datagram's 65535 bytes less the IPv4 (20) or
	// IPv6 (40) and UDP (8) headers. It clamps a larger MaxLen to them,
	// a master's to at least 1 and a backup's to at least
	// MinSyncLenBackup.
	MaxSyncLen4      = 65535 - 20 - 8
	MaxSyncLen6      = 65535 - 40 - 8
	MinSyncLenBackup = 1024

	// MaxDaemonInterface is the longest interface name the kernel takes
	// (IP_VS_IFNAME_MAXLEN 16, with the terminating NUL); a longer one
	// fails the netlink policy with EINVAL.
	MaxDaemonInterface = 15
)

// Daemon is one sync daemon: what IPVS_CMD_NEW_DAEMON takes and
// IPVS_CMD_GET_DAEMON returns. Started with a zero MaxLen, Group, Port or
// TTL, the kernel uses its default, which a read-back shows.
type Daemon struct {
	State DaemonState
	// Interface is where a master sends and a backup listens
	// (IPVS_DAEMON_ATTR_MCAST_IFN; ipvsadm's --mcast-interface).
	Interface string
	// SyncID tags a master's messages; a backup with a non-zero SyncID
	// takes only messages with the same one (IPVS_DAEMON_ATTR_SYNC_ID).
	// The netlink attribute has 32 bits, the messages carry the low 8.
	SyncID uint32
	// MaxLen bounds a message's UDP payload (IPVS_DAEMON_ATTR_SYNC_MAXLEN).
	// Without one the kernel takes 1500 less the headers for a master
	// (1472 over IPv4), and the interface's MTU (at least 1500) less the
	// headers for a backup; one out of MinSyncLenBackup (backup) or 1
	// (master) .. MaxSyncLen4/6 is clamped into it.
	MaxLen uint16
	// Group is the multicast group, IPv4 or IPv6
	// (IPVS_DAEMON_ATTR_MCAST_GROUP, _GROUP6; default DefaultSyncGroup).
	Group netip.Addr
	// Port is the UDP port (IPVS_DAEMON_ATTR_MCAST_PORT; default
	// DefaultSyncPort); with the sync_ports sysctl above 1 the kernel
	// uses that many from Port up.
	Port uint16
	// TTL is the multicast TTL or hop limit (IPVS_DAEMON_ATTR_MCAST_TTL;
	// default DefaultSyncTTL).
	TTL uint8
}

// String describes the daemon the way `ipvsadm -L --daemon` does, leaving
// out the fields that are zero.
func (d Daemon) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s sync daemon (mcast=%s, syncid=%d", d.State, d.Interface, d.SyncID)
	if d.MaxLen != 0 {
		fmt.Fprintf(&b, ", maxlen=%d", d.MaxLen)
	}
	if d.Group.IsValid() {
		fmt.Fprintf(&b, ", group=%s", d.Group)
	}
	if d.Port != 0 {
		fmt.Fprintf(&b, ", port=%d", d.Port)
	}
	if d.TTL != 0 {
		fmt.Fprintf(&b, ", ttl=%d", d.TTL)
	}
	b.WriteString(")")
	return b.String()
}

// Daemons is the part of the kernel interface that drives the sync
// daemons. Like the table's methods, a kernel's refusal is a
// syscall.Errno (wrapped): EEXIST for a second daemon of a state, ESRCH
// to stop one that is not running, ENODEV for an unknown interface,
// EINVAL for a state other than master and backup, an interface name
// longer than MaxDaemonInterface or a group that is not multicast.
type Daemons interface {
	// NewDaemon starts d (IPVS_CMD_NEW_DAEMON).
	NewDaemon(d Daemon) error
	// DelDaemon stops the daemon of state s (IPVS_CMD_DEL_DAEMON).
	DelDaemon(s DaemonState) error
	// GetDaemons returns the running daemons, master first
	// (IPVS_CMD_GET_DAEMON).
	GetDaemons() ([]Daemon, error)
}

// IPVS generic netlink numbers for the sync daemon commands, from
// include/uapi/linux/ip_vs.h.
const (
	genlVersion = 1 // IPVS_GENL_VERSION

	cmdNewDaemon genlHeader = 9  // IPVS_CMD_NEW_DAEMON
	cmdDelDaemon genlHeader = 10 // IPVS_CMD_DEL_DAEMON
	cmdGetDaemon genlHeader = 11 // IPVS_CMD_GET_DAEMON

	cmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON, a nest of the below

	daemonAttrState       = 1 // u32
	daemonAttrMcastIfn    = 2 // NUL-terminated string
	daemonAttrSyncID      = 3 // u32
	daemonAttrSyncMaxLen  = 4 // u16
	daemonAttrMcastGroup  = 5 // IPv4 address, network order
	daemonAttrMcastGroup6 = 6 // IPv6 address
	daemonAttrMcastPort   = 7 // u16, host order (nla_get_u16, not be16)
	daemonAttrMcastTTL    = 8 // u8
)

// daemonRequest is the IPVS_CMD_ATTR_DAEMON nest that starts d: the
// optional attributes only when set, so that the kernel applies its own
// defaults, as ipvsadm and keepalived leave them out.
func daemonRequest(d Daemon) *nl.RtAttr {
	nest := nl.NewRtAttr(cmdAttrDaemon, nil)
	nest.AddRtAttr(daemonAttrState, nl.Uint32Attr(uint32(d.State)))
	nest.AddRtAttr(daemonAttrMcastIfn, nl.ZeroTerminated(d.Interface))
	nest.AddRtAttr(daemonAttrSyncID, nl.Uint32Attr(d.SyncID))
	if d.MaxLen != 0 {
		nest.AddRtAttr(daemonAttrSyncMaxLen, nl.Uint16Attr(d.MaxLen))
	}
	// An IPv4-mapped group is an IPv4 group: sent as IPv6 the kernel
	// would refuse it as not multicast.
	if g := d.Group.Unmap(); g.Is4() {
		a := g.As4()
		nest.AddRtAttr(daemonAttrMcastGroup, a[:])
	} else if g.Is6() {
		a := g.As16()
		nest.AddRtAttr(daemonAttrMcastGroup6, a[:])
	}
	if d.Port != 0 {
		nest.AddRtAttr(daemonAttrMcastPort, nl.Uint16Attr(d.Port))
	}
	if d.TTL != 0 {
		nest.AddRtAttr(daemonAttrMcastTTL, nl.Uint8Attr(d.TTL))
	}
	return nest
}

// stateRequest is the IPVS_CMD_ATTR_DAEMON nest that stops the daemon of
// state s: the kernel reads nothing else.
func stateRequest(s DaemonState) *nl.RtAttr {
	nest := nl.NewRtAttr(cmdAttrDaemon, nil)
	nest.AddRtAttr(daemonAttrState, nl.Uint32Attr(uint32(s)))
	return nest
}

// parseAttrs splits b into netlink attributes by type, the nested and
// byte-order flag bits masked off. A later attribute of a type wins, as
// in the kernel's nla_parse.
func parseAttrs(b []byte) (map[uint16][]byte, error) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return nil, fmt.Errorf("malformed attributes: %w", err)
	}
	out := make(map[uint16][]byte, len(attrs))
	for _, a := range attrs {
		out[a.Attr.Type&nl.NLA_TYPE_MASK] = a.Value
	}
	return out, nil
}

// parseDaemon reads one message of an IPVS_CMD_GET_DAEMON dump: the
// generic netlink header, then the IPVS_CMD_ATTR_DAEMON nest
// (ip_vs_genl_fill_daemon).
func parseDaemon(msg []byte) (Daemon, error) {
	var d Daemon
	if len(msg) < 4 {
		return d, fmt.Errorf("message of %d bytes, shorter than its generic netlink header", len(msg))
	}
	top, err := parseAttrs(msg[4:])
	if err != nil {
		return d, err
	}
	nest, ok := top[cmdAttrDaemon]
	if !ok {
		return d, fmt.Errorf("no IPVS_CMD_ATTR_DAEMON attribute")
	}
	as, err := parseAttrs(nest)
	if err != nil {
		return d, fmt.Errorf("IPVS_CMD_ATTR_DAEMON: %w", err)
	}
	field := func(typ uint16, name string, size int) ([]byte, error) {
		v, ok := as[typ]
		if !ok {
			return nil, nil
		}
		if len(v) < size {
			return nil, fmt.Errorf("%s: %d bytes, want %d", name, len(v), size)
		}
		return v, nil
	}
	// The kernel sends every field, the optional ones since Linux 4.3;
	// one missing reads as zero.
	v, err := field(daemonAttrState, "IPVS_DAEMON_ATTR_STATE", 4)
	if err != nil {
		return d, err
	}
	if v == nil {
		return d, fmt.Errorf("no IPVS_DAEMON_ATTR_STATE")
	}
	d.State = DaemonState(binary.NativeEndian.Uint32(v))
	if v := as[daemonAttrMcastIfn]; v != nil {
		d.Interface, _, _ = strings.Cut(string(v), "\x00")
	}
	if v, err = field(daemonAttrSyncID, "IPVS_DAEMON_ATTR_SYNC_ID", 4); err != nil {
		return d, err
	} else if v != nil {
		d.SyncID = binary.NativeEndian.Uint32(v)
	}
	if v, err = field(daemonAttrSyncMaxLen, "IPVS_DAEMON_ATTR_SYNC_MAXLEN", 2); err != nil {
		return d, err
	} else if v != nil {
		d.MaxLen = binary.NativeEndian.Uint16(v)
	}
	if v, err = field(daemonAttrMcastGroup, "IPVS_DAEMON_ATTR_MCAST_GROUP", 4); err != nil {
		return d, err
	} else if v != nil {
		d.Group = netip.AddrFrom4([4]byte(v[:4]))
	}
	if v, err = field(daemonAttrMcastGroup6, "IPVS_DAEMON_ATTR_MCAST_GROUP6", 16); err != nil {
		return d, err
	} else if v != nil {
		d.Group = netip.AddrFrom16([16]byte(v[:16]))
	}
	if v, err = field(daemonAttrMcastPort, "IPVS_DAEMON_ATTR_MCAST_PORT", 2); err != nil {
		return d, err
	} else if v != nil {
		d.Port = binary.NativeEndian.Uint16(v)
	}
	if v, err = field(daemonAttrMcastTTL, "IPVS_DAEMON_ATTR_MCAST_TTL", 1); err != nil {
		return d, err
	} else if v != nil {
		d.TTL = v[0]
	}
	return d, nil
}

// genlHeader is the generic netlink header of an IPVS request: the
// command, IPVS_GENL_VERSION and two reserved bytes.
type genlHeader uint8

func (h genlHeader) Len() int          { return 4 }
func (h genlHeader) Serialize() []byte { return []byte{byte(h), genlVersion, 0, 0} }

// dump sends one IPVS dump request over the daemon socket and returns the
// payloads of the answers.
func (h *Handle) dump(cmd genlHeader) ([][]byte, error) {
	req := nl.NewNetlinkRequest(int(h.family), unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_GENERIC: h.daemons}
	req.AddData(cmd)
	return req.Execute(unix.NETLINK_GENERIC, h.family)
}

// command sends one IPVS command that changes something and returns the
// kernel's answer: nil, or its errno (with the extended ack's message
// when there is one).
//
// It does not wait for the answer, it reads what is queued: generic
// netlink runs the command in the sender's sendmsg, so the acknowledgment
// is on the socket by the time Send returns. And there may be none:
// netlink_rcv_skb sends no acknowledgment when a command returns -EINTR,
// and IPVS_CMD_DEL_DAEMON does, after stopping the daemon, when the
// daemon's thread had not run yet (kthread_stop returns -EINTR for a
// thread stopped before it started; seen on 6.12 with a stop a few
// milliseconds after the start). Waiting would hang the caller until its
// timeout; no answer is reported as EINTR instead.
func (h *Handle) command(cmd genlHeader, nest *nl.RtAttr) error {
	s := h.daemons.Socket
	s.Lock()
	defer s.Unlock()
	req := nl.NewNetlinkRequest(int(h.family), unix.NLM_F_ACK)
	req.Seq = atomic.AddUint32(&h.daemons.Seq, 1)
	req.AddData(cmd)
	req.AddData(nest)
	if err := s.Send(req); err != nil {
		return err
	}
	pid, err := s.GetPid()
	if err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(s.GetFd(), buf, unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return unix.EINTR
		case err != nil:
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parse the kernel's answer: %w", err)
		}
		for _, m := range msgs {
			// Anything else is left over from an earlier request.
			if m.Header.Seq == req.Seq && m.Header.Pid == pid && m.Header.Type == unix.NLMSG_ERROR {
				return ackError(m)
			}
		}
	}
}

// ackError is the error an NLMSG_ERROR message carries: nil for an
// acknowledgment, else the errno, with the extended ack's message.
func ackError(m syscall.NetlinkMessage) error {
	if len(m.Data) < 4 {
		return fmt.Errorf("netlink error message of %d bytes", len(m.Data))
	}
	errno := int32(binary.NativeEndian.Uint32(m.Data[0:4]))
	if errno == 0 {
		return nil
	}
	err := error(syscall.Errno(-errno))
	// The request echoed back (its header alone when capped), then
	// attributes.
	rest := m.Data[4:]
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 || len(rest) < unix.SizeofNlMsghdr {
		return err
	}
	skip := unix.SizeofNlMsghdr
	if m.Header.Flags&unix.NLM_F_CAPPED == 0 {
		skip = int(binary.NativeEndian.Uint32(rest[0:4]))
	}
	skip = (skip + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
	if skip > len(rest) {
		return err
	}
	if as, perr := parseAttrs(rest[skip:]); perr == nil {
		if msg := as[nl.NLMSGERR_ATTR_MSG]; len(msg) > 0 {
			err = fmt.Errorf("%w (%s)", err, unix.ByteSliceToString(msg))
		}
	}
	return err
}

// NewDaemon starts d. The kernel answers once the daemon's threads run
// and its socket is set up, so an error here (a master's interface
// without a route to the group, say) means no daemon.
func (h *Handle) NewDaemon(d Daemon) error {
	if err := h.command(cmdNewDaemon, daemonRequest(d)); err != nil {
		return fmt.Errorf("start IPVS %s: %w", d, err)
	}
	return nil
}

// DelDaemon stops the daemon of state s; the kernel waits for the
// daemon's threads to end.
func (h *Handle) DelDaemon(s DaemonState) error {
	err := h.command(cmdDelDaemon, stateRequest(s))
	if errors.Is(err, unix.EINTR) {
		// The daemon stopped before its thread ran (see command). The
		// kernel clears the state before it returns, so a read says
		// for sure.
		ds, gerr := h.GetDaemons()
		if gerr != nil {
			return fmt.Errorf("stop IPVS %s sync daemon: no answer from the kernel, and then: %w", s, gerr)
		}
		if !slices.ContainsFunc(ds, func(d Daemon) bool { return d.State == s }) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("stop IPVS %s sync daemon: %w", s, err)
	}
	return nil
}

// GetDaemons returns the running daemons, master first, each with the
// values the kernel applies (its defaults filled in, MaxLen clamped).
func (h *Handle) GetDaemons() ([]Daemon, error) {
	// IPVS_CMD_GET_DAEMON has only a dump handler.
	msgs, err := h.dump(cmdGetDaemon)
	if err != nil {
		return nil, fmt.Errorf("list IPVS sync daemons: %w", err)
	}
	out := make([]Daemon, 0, len(msgs))
	for _, m := range msgs {
		d, err := parseDaemon(m)
		if err != nil {
			return nil, fmt.Errorf("list IPVS sync daemons: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}
