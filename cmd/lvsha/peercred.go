package main

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The control socket's file mode (0600, root's; 0660 of
// control_socket_group) is the first gate; the kernel's record of who
// connected (SO_PEERCRED) is the second, so that a socket file left with
// a looser mode, a directory another user can write, or the window
// between bind and chmod admits nobody else.

// refusalLogEvery bounds the refusal lines: a local user looping on
// connect must not fill the log; the counter has every one.
const refusalLogEvery = 10 * time.Second

// maxRefusing bounds the refused clients answered at once; past it a
// refused connection is closed without an answer, so a flood of them
// costs no more than that many goroutines.
const maxRefusing = 16

// peerGuard admits control-socket clients by their credentials: uid 0,
// and with director.control_socket_group the members of that group. It
// counts and logs those it refuses.
type peerGuard struct {
	log *slog.Logger
	// group names the group admitted besides root, gid its number; ""
	// admits root alone.
	group    string
	gid      uint32
	refused  atomic.Uint64
	refusing chan struct{}

	mu       sync.Mutex
	lastLog  time.Time
	unlogged uint64 // refusals since the last line
}

func newPeerGuard(log *slog.Logger, group string, gid uint32) *peerGuard {
	return &peerGuard{log: log, group: group, gid: gid, refusing: make(chan struct{}, maxRefusing)}
}

// Refused is how many clients the guard turned away; nil guard, none.
func (g *peerGuard) Refused() uint64 {
	if g == nil {
		return 0
	}
	return g.refused.Load()
}

// listener wraps ln so that Accept returns only the connections g
// admits.
func (g *peerGuard) listener(ln net.Listener) net.Listener {
	return guardedListener{Listener: ln, g: g}
}

type guardedListener struct {
	net.Listener
	g *peerGuard
}

func (l guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err == nil && l.g.admits(c, cred) {
			return c, nil
		}
		l.g.refuse(c, cred, err)
	}
}

// onDescriptor runs f on c's socket descriptor.
func onDescriptor(c net.Conn, f func(fd uintptr)) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("control socket: %T has no descriptor", c)
	}
	raw, err := sc.SyscallConn()
	if err == nil {
		err = raw.Control(f)
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// peerCred is what the kernel recorded of the process that connected c:
// its credentials at connect(2), which it cannot forge.
func peerCred(c net.Conn) (*unix.Ucred, error) {
	var (
		cred *unix.Ucred
		gerr error
	)
	if err := onDescriptor(c, func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if gerr != nil {
		return nil, fmt.Errorf("control socket: read the peer's credentials (SO_PEERCRED): %w", gerr)
	}
	return cred, nil
}

// admits says whether the client of c, cred, may use the socket: root,
// or a member of the group by its primary group or, as the kernel
// recorded them at connect too (SO_PEERGROUPS), its supplementary ones.
func (g *peerGuard) admits(c net.Conn, cred *unix.Ucred) bool {
	if cred.Uid == 0 {
		return true
	}
	if g.group == "" {
		return false
	}
	if cred.Gid == g.gid {
		return true
	}
	groups, err := peerGroups(c)
	return err == nil && slices.Contains(groups, g.gid)
}

// peerGroups is the supplementary groups of the process that connected
// c, as the kernel recorded them at connect(2) (Linux 4.13).
func peerGroups(c net.Conn) ([]uint32, error) {
	// NGROUPS_MAX is 65536; a client in more groups than this buffer
	// holds is told ERANGE, and refused unless its primary group admits
	// it.
	groups := make([]uint32, 1024)
	size := uint32(len(groups) * 4)
	var errno syscall.Errno
	if err := onDescriptor(c, func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&groups[0])), uintptr(unsafe.Pointer(&size)), 0)
	}); err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, fmt.Errorf("control socket: read the peer's groups (SO_PEERGROUPS): %w", errno)
	}
	return groups[:size/4], nil
}

// refuse answers c with one HTTP error that `lvsha status` prints as is,
// then closes it; cred is nil when it could not be read (err says why).
func (g *peerGuard) refuse(c net.Conn, cred *unix.Ucred, err error) {
	g.refused.Add(1)
	reason := "only root (uid 0) may use lvsha's control socket"
	if g.group != "" {
		reason = fmt.Sprintf("only root (uid 0) and members of group %s (gid %d) may use lvsha's control socket", g.group, g.gid)
	}
	who := []any{"op", "control"}
	if cred != nil {
		reason = fmt.Sprintf("uid %d refused: %s", cred.Uid, reason)
		who = append(who, "uid", cred.Uid, "gid", cred.Gid, "pid", cred.Pid)
	} else {
		reason = "peer credentials unknown: " + reason
		who = append(who, "error", err)
	}
	g.logRefusal(who)
	select {
	case g.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-g.refusing }()
		defer c.Close()
		// The request is read first: closing with it unread could make
		// the client's write fail before it reads the answer.
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		body := "control socket: " + reason + "\n"
		_, _ = fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	}()
}

// logRefusal logs the first refusal at once, then at most one line each
// refusalLogEvery, which says how many went unlogged in between.
func (g *peerGuard) logRefusal(who []any) {
	g.mu.Lock()
	now := time.Now()
	if !g.lastLog.IsZero() && now.Sub(g.lastLog) < refusalLogEvery {
		g.unlogged++
		g.mu.Unlock()
		return
	}
	skipped := g.unlogged
	g.lastLog, g.unlogged = now, 0
	g.mu.Unlock()
	if skipped > 0 {
		who = append(who, "not_logged_since_last", skipped)
	}
	g.log.Warn("control socket: client refused, not root nor of control_socket_group", who...)
}
