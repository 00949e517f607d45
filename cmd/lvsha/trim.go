package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Start-up reads much of lvsha's own binary once and never again: the
// runtime's checks of its function table, every package's init, the
// config parser, the first netlink dumps. The kernel maps each page
// touched, and 64 KiB around it when the file is in the page cache
// (fault-around), so a started director had 14.8 of its 17.7 MiB RSS in
// file pages of its executable, where its steady state uses about 1.4
// (measured by paging them out once: docs/benchmarks.md). The daemon
// lets go of those mappings once started and after each reload
// (releaseStartupPages). The pages stay in the page cache, shared with
// every other lvsha process; a page used again comes back with a minor
// fault.

// execMapping is one read-only mapping of the running executable.
type execMapping struct {
	start, end uint64
}

// execMappings lists the running executable's mappings that are not
// writable (its code and read-only data), from maps (/proc/self/maps):
// those of the executable's device and inode, or of its path (on
// overlayfs, a container's root, maps shows the device and inode of the
// file underneath, stat those of the overlay).
func execMappings(maps io.Reader, dev, ino uint64, path string) ([]execMapping, error) {
	var out []execMapping
	sc := bufio.NewScanner(maps)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// 00400000-00c6f000 r-xp 00000000 00:2b 1234 /usr/sbin/lvsha
		f := strings.Fields(sc.Text())
		if len(f) < 6 || len(f[1]) != 4 || strings.Contains(f[1], "w") || f[1][3] != 'p' {
			continue
		}
		mj, mn, okDev := hexPair(f[3], ":")
		in, err := strconv.ParseUint(f[4], 10, 64)
		sameFile := okDev && err == nil && unix.Mkdev(uint32(mj), uint32(mn)) == dev && in == ino
		if !sameFile && (path == "" || mapsPath(sc.Text()) != path) {
			continue
		}
		s, e, ok := hexPair(f[0], "-")
		if !ok || e <= s {
			continue
		}
		out = append(out, execMapping{s, e})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read memory maps: %w", err)
	}
	return out, nil
}

// hexPair parses the two hexadecimal numbers of s on either side of sep
// ("00400000-00c6f000", "fd:01").
func hexPair(s, sep string) (a, b uint64, ok bool) {
	x, y, ok := strings.Cut(s, sep)
	if !ok {
		return 0, 0, false
	}
	a, err1 := strconv.ParseUint(x, 16, 64)
	b, err2 := strconv.ParseUint(y, 16, 64)
	return a, b, err1 == nil && err2 == nil
}

// mapsPath is the path a /proc/PID/maps line ends with, spaces and a
// " (deleted)" of a replaced file included, as readlink of
// /proc/PID/exe gives it.
func mapsPath(line string) string {
	rest := line
	for range 5 { // range, perms, offset, device, inode
		rest = strings.TrimLeft(rest, " ")
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			return ""
		}
		rest = rest[i:]
	}
	return strings.TrimLeft(rest, " ")
}

// Flags of a /proc/self/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
const (
	pagePresent = 1 << 63
	pageFile    = 1 << 61 // file page or shared anonymous
)

// releasable splits one mapping into the runs of pages that can be let
// go: all but the present anonymous ones. An anonymous page in a
// read-only file mapping is a private copy, a debugger's breakpoint or a
// uprobe written into the code, and dropping it would undo that.
func releasable(m execMapping, pagemap io.ReaderAt, pageSize uint64) ([]execMapping, error) {
	n := (m.end - m.start) / pageSize
	buf := make([]byte, 8*n)
	if _, err := pagemap.ReadAt(buf, int64(m.start/pageSize*8)); err != nil {
		return nil, fmt.Errorf("read pagemap of %#x-%#x: %w", m.start, m.end, err)
	}
	var out []execMapping
	runStart := m.start
	for i := range n {
		e := binary.NativeEndian.Uint64(buf[8*i:])
		if e&pagePresent == 0 || e&pageFile != 0 {
			continue
		}
		addr := m.start + i*pageSize
		if addr > runStart {
			out = append(out, execMapping{runStart, addr})
		}
		runStart = addr + pageSize
	}
	if m.end > runStart {
		out = append(out, execMapping{runStart, m.end})
	}
	return out, nil
}

// releaseStartupPages drops the running executable's read-only file
// pages from this process's mappings (MADV_DONTNEED: nothing is written
// back or read again from disk) and reports the file-backed RSS before
// and after, in KiB.
func releaseStartupPages() (before, after int, err error) {
	// Start-up's garbage too (the config's parse, the first netlink
	// dumps): collected, and the heap it held handed back to the kernel,
	// which the runtime's background scavenger does only slowly.
	debug.FreeOSMemory()
	before, _ = rssFileKiB()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return before, before, fmt.Errorf("stat own executable: %w", err)
	}
	exe, _ := os.Readlink("/proc/self/exe")
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		return before, before, fmt.Errorf("open memory maps: %w", err)
	}
	ms, err := execMappings(maps, st.Dev, st.Ino, exe)
	maps.Close()
	if err != nil {
		return before, before, err
	}
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return before, before, fmt.Errorf("open pagemap: %w", err)
	}
	defer pm.Close()
	page := uint64(os.Getpagesize())
	for _, m := range ms {
		runs, err := releasable(m, pm, page)
		if err != nil {
			return before, before, err
		}
		for _, r := range runs {
			if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(r.start), uintptr(r.end-r.start), unix.MADV_DONTNEED); e != 0 {
				return before, before, fmt.Errorf("madvise %#x-%#x: %w", r.start, r.end, e)
			}
		}
	}
	after, _ = rssFileKiB()
	return before, after, nil
}

// rssFileKiB is RssFile of /proc/self/status.
func rssFileKiB() (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("no RssFile in /proc/self/status")
}
