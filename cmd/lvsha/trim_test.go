package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExecMappings(t *testing.T) {
	const maps = `00400000-00c6f000 r-xp 00000000 00:2b 1234 /usr/sbin/lvsha
00c6f000-01550000 r--p 0086f000 00:2b 1234 /usr/sbin/lvsha
01550000-015c9000 rw-p 01150000 00:2b 1234 /usr/sbin/lvsha
015c9000-0360f000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 00:2b 99 /usr/lib/other.so
7f0000002000-7f0000003000 r--p 00000000 08:01 1234 /other/device/same/inode
7f0000004000-7f0000005000 r--s 00000000 00:2b 1234 /usr/sbin/lvsha
garbage line
7f0000006000-7f0000005000 r--p 00000000 00:2b 1234 /usr/sbin/lvsha
`
	tests := []struct {
		name string
		dev  uint64
		ino  uint64
		path string
	}{
		{"by device and inode", unix.Mkdev(0, 0x2b), 1234, ""},
		{"by path (overlayfs: stat's device is the overlay's)", unix.Mkdev(0, 0x99), 1234, "/usr/sbin/lvsha"},
	}
	for _, tt := range tests {
		got, err := execMappings(strings.NewReader(maps), tt.dev, tt.ino, tt.path)
		if err != nil {
			t.Fatal(err)
		}
		want := []execMapping{{0x400000, 0xc6f000}, {0xc6f000, 0x1550000}}
		if !slices.Equal(got, want) {
			t.Errorf("%s: execMappings = %x, want %x (code and read-only data of this file; not writable, shared, other files or nonsense)", tt.name, got, want)
		}
	}
	if got, _ := execMappings(strings.NewReader(maps), unix.Mkdev(0, 0x99), 1234, "/usr/sbin/other"); got != nil {
		t.Errorf("another device and path: %x, want none", got)
	}
}

func TestMapsPath(t *testing.T) {
	for line, want := range map[string]string{
		"00400000-00c6f000 r-xp 00000000 00:2b 1234 /usr/sbin/lvsha":                     "/usr/sbin/lvsha",
		"00400000-00c6f000 r-xp 00000000 00:2b 1234                   /opt/my dir/lvsha": "/opt/my dir/lvsha",
		"00400000-00c6f000 r-xp 00000000 00:2b 1234 /usr/sbin/lvsha (deleted)":           "/usr/sbin/lvsha (deleted)",
		"015c9000-0360f000 rw-p 00000000 00:00 0 ":                                       "",
		"015c9000-0360f000 rw-p 00000000 00:00 0":                                        "",
	} {
		if got := mapsPath(line); got != want {
			t.Errorf("mapsPath(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestReleasable(t *testing.T) {
	const page = 0x1000
	const (
		absent = 0
		file   = pagePresent | pageFile
		anon   = pagePresent
	)
	tests := []struct {
		name  string
		pages []uint64
		want  []execMapping
	}{
		{"all file", []uint64{file, file, absent, file}, []execMapping{{0x10000, 0x14000}}},
		{"anonymous in the middle", []uint64{file, anon, file, file}, []execMapping{{0x10000, 0x11000}, {0x12000, 0x14000}}},
		{"anonymous at both ends", []uint64{anon, file, anon}, []execMapping{{0x11000, 0x12000}}},
		{"only anonymous", []uint64{anon, anon}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The mapping starts at page 0x10; pagemap has 8 bytes a page.
			pm := make([]byte, 8*(0x10+len(tt.pages)))
			for i, e := range tt.pages {
				binary.NativeEndian.PutUint64(pm[8*(0x10+i):], e)
			}
			got, err := releasable(execMapping{0x10000, 0x10000 + uint64(len(tt.pages))*page}, bytes.NewReader(pm), page)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("releasable = %x, want %x", got, tt.want)
			}
		})
	}
}

// TestReleaseStartupPages lets go of this test binary's start-up pages:
// its file-backed RSS falls, the code goes on running, and a page of its
// read-only data that holds a private copy (as a debugger's breakpoint
// or a uprobe would) keeps it.
func TestReleaseStartupPages(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := execMappings(maps, st.Dev, st.Ino, "")
	maps.Close()
	if err != nil || len(ms) == 0 {
		t.Fatalf("execMappings of this test binary: %v, %v", ms, err)
	}

	// A private copy of one page of the last read-only mapping, made as a
	// debugger makes one: written through /proc/self/mem (the kernel
	// copies a read-only private page on such a write), with what it holds.
	page := uint64(os.Getpagesize())
	last := ms[len(ms)-1]
	addr := last.start + (last.end-last.start)/page/2*page
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var b [1]byte
	if _, err := mem.ReadAt(b[:], int64(addr)); err != nil {
		t.Fatalf("read own memory: %v", err)
	}
	if _, err := mem.WriteAt(b[:], int64(addr)); err != nil {
		t.Fatalf("write own memory: %v", err)
	}
	if f := pageFlags(t, addr); f&pagePresent == 0 || f&pageFile != 0 {
		t.Fatalf("the written page is not a private copy: flags %#x", f)
	}

	before, after, err := releaseStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RssFile %d → %d KiB", before, after)
	if before < 1024 || after > before/2 {
		t.Errorf("RssFile %d → %d KiB: want at least half let go of at least 1 MiB", before, after)
	}
	if f := pageFlags(t, addr); f&pagePresent == 0 || f&pageFile != 0 {
		t.Errorf("the private copy was dropped: flags %#x", f)
	}
	// The code runs on: fault pages back in.
	if again, _, err := releaseStartupPages(); err != nil || again <= 0 {
		t.Errorf("second release: RssFile %d KiB before, %v", again, err)
	}
}

func pageFlags(t *testing.T, addr uint64) uint64 {
	t.Helper()
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	var b [8]byte
	if _, err := pm.ReadAt(b[:], int64(addr/uint64(os.Getpagesize())*8)); err != nil {
		t.Fatal(err)
	}
	return binary.NativeEndian.Uint64(b[:])
}
