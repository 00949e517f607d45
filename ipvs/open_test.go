package ipvs_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/ipvs"
)

// TestOpen runs against the real kernel. Which outcome is right depends on
// the host, and the test decides that independently of Open: the ip_vs
// module creates /proc/net/ip_vs in every network namespace.
func TestOpen(t *testing.T) {
	_, statErr := os.Stat("/proc/net/ip_vs")
	ipvsLoaded := statErr == nil

	for _, path := range []string{"", "/proc/self/ns/net"} {
		h, err := ipvs.Open(path)
		switch {
		case !ipvsLoaded:
			if h != nil || !errors.Is(err, ipvs.ErrUnavailable) || !errors.Is(err, unix.ENOENT) {
				t.Fatalf("Open(%q) without IPVS = %v, %v; want ErrUnavailable wrapping ENOENT", path, h, err)
			}
			const want = "IPVS is not available in this kernel (try: modprobe ip_vs): no such file or directory"
			if err.Error() != want {
				t.Errorf("Open(%q) error %q, want %q", path, err, want)
			}
		case os.Geteuid() != 0:
			if !errors.Is(err, ipvs.ErrPermission) || !strings.HasPrefix(err.Error(), "need CAP_NET_ADMIN (run as root): ") {
				t.Errorf("Open(%q) as non-root = %v; want ErrPermission first", path, err)
			}
		default:
			if err != nil {
				t.Fatalf("Open(%q) with IPVS loaded, as root: %v", path, err)
			}
			h.Close()
		}
	}
}

func TestOpenMissingNetns(t *testing.T) {
	const path = "/nonexistent/netns/x"
	h, err := ipvs.Open(path)
	if h != nil || err == nil {
		t.Fatalf("Open(%q) = %v, %v; want an error", path, h, err)
	}
	// ENOENT here is about the path, not about IPVS.
	if errors.Is(err, ipvs.ErrUnavailable) || !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open(%q) error = %v; want ENOENT naming the path, not ErrUnavailable", path, err)
	}
}
