package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

type fixedStatus struct{}

func (fixedStatus) Status() (*Report, error) { return &Report{Director: "lb1"}, nil }

// dialAs connects to the unix socket at path as uid, from a thread of
// its own: the kernel records that thread's credentials (SO_PEERCRED),
// and the thread, never unlocked, ends with its goroutine, so no other
// goroutine runs with the changed uid.
func dialAs(t *testing.T, uid int, path string) net.Conn {
	t.Helper()
	return dialAsGroups(t, uid, uid, nil, path)
}

// dialAsGroups is dialAs with the primary group gid and the
// supplementary groups.
func dialAsGroups(t *testing.T, uid, gid int, groups []uint32, path string) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Raw: the libc and Go wrappers change every thread.
		var list uintptr
		if len(groups) > 0 {
			list = uintptr(unsafe.Pointer(&groups[0]))
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), list, 0); e != 0 {
			ch <- result{err: e}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
			ch <- result{err: e}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), 0); e != 0 {
			ch <- result{err: e}
			return
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			unix.Close(fd)
			ch <- result{err: err}
			return
		}
		f := os.NewFile(uintptr(fd), "control")
		defer f.Close()
		c, err := net.FileConn(f)
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("connect to %s as uid %d: %v", path, uid, r.err)
	}
	return r.c
}

// getStatus sends GET /status over c and returns the answer's status
// code and body.
func getStatus(t *testing.T, c net.Conn) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return c, nil },
	}}
	resp, err := client.Get("http://lvsha/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestControlSocketRefusesNonRoot: the control socket serves root and
// refuses any other uid by the kernel's record of who connected, even
// when the socket file's mode would let that user connect; the refusal
// is answered with a line that says why, logged and counted.
func TestControlSocketRefusesNonRoot(t *testing.T) {
	path := sharedSocketPath(t)
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	g := newPeerGuard(log, "", 0)
	ln, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m&0o117 != 0 {
		t.Errorf("control socket mode %o, want 0660 or tighter", m)
	}
	// What a careless operator might do; the credentials check holds.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveControl(ctx, g.listener(ln), fixedStatus{}, log) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, tc := range []struct {
		name     string
		uid      int
		wantCode int
		wantBody string
	}{
		{"root served", 0, http.StatusOK, `"director": "lb1"`},
		{"nobody refused", 65534, http.StatusForbidden, "control socket: uid 65534 refused: only root (uid 0) may use lvsha's control socket"},
		{"another uid refused", 1000, http.StatusForbidden, "uid 1000 refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := getStatus(t, dialAs(t, tc.uid, path))
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("uid %d: %d %q; want %d with %q", tc.uid, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
	if n := g.Refused(); n != 2 {
		t.Errorf("refusals counted: %d, want 2", n)
	}
	// Rate-limited: the first refusal is logged, the second, within
	// refusalLogEvery, only counted.
	if n := strings.Count(logBuf.String(), "client refused"); n != 1 {
		t.Errorf("refusals logged %d times, want 1:\n%s", n, logBuf.String())
	}
	if !strings.Contains(logBuf.String(), "uid=65534") {
		t.Errorf("the refusal's log line lacks the uid:\n%s", logBuf.String())
	}
}

// With director.control_socket_group, the group's members are served
// too, by their primary group or a supplementary one; others still are
// refused, and told who may.
func TestControlSocketGroup(t *testing.T) {
	path := sharedSocketPath(t)
	const gid = 4242
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := newPeerGuard(log, "ops", gid)
	ln, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := shareControl(path, gid); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != gid {
		t.Errorf("control socket mode %o group %d, want 0660 of group %d", fi.Mode().Perm(), st.Gid, gid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveControl(ctx, g.listener(ln), fixedStatus{}, log) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, tc := range []struct {
		name     string
		uid, gid int
		groups   []uint32
		loosen   bool // the socket's mode made 0666 first, so the credentials alone decide
		wantCode int
		wantBody string
	}{
		{"root", 0, 0, nil, false, http.StatusOK, `"director": "lb1"`},
		{"primary group", 1000, gid, nil, false, http.StatusOK, `"director": "lb1"`},
		{"supplementary group", 1000, 1000, []uint32{27, gid}, false, http.StatusOK, `"director": "lb1"`},
		{"not a member", 1000, 1000, []uint32{27}, true, http.StatusForbidden, "uid 1000 refused: only root (uid 0) and members of group ops (gid 4242) may use lvsha's control socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.loosen {
				if err := os.Chmod(path, 0o666); err != nil {
					t.Fatal(err)
				}
			}
			code, body := getStatus(t, dialAsGroups(t, tc.uid, tc.gid, tc.groups, path))
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("%d: %q; want %d with %q", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
	if n := g.Refused(); n != 1 {
		t.Errorf("refusals counted: %d, want 1", n)
	}
}

// sharedSocketPath is a control socket's path in a directory any user
// may enter, so the socket's mode and the credentials check alone decide
// who may connect (t.TempDir's parent is root's alone); connecting as
// another uid needs root.
func sharedSocketPath(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another uid")
	}
	dir, err := os.MkdirTemp("", "lvsha-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "lvsha.sock")
}
