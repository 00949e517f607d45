package ipvs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultSysctlDir holds the IPVS sysctls of the network namespace the
// process runs in; they exist while ip_vs is loaded.
const DefaultSysctlDir = "/proc/sys/net/ipv4/vs"

// SyncSysctls are the IPVS sync sysctls in Dir (DefaultSysctlDir; a
// test's directory).
type SyncSysctls struct{ Dir string }

// SetRefresh makes the master sync daemon announce every established
// connection again, at its next packet, once period has passed since its
// last announcement (Documentation/networking/ipvs-sysctl.rst): it sets
// sync_refresh_period to period in seconds and the period of
// sync_threshold to 0, keeping its threshold. The kernel syncs only the
// packets where pkts % period equals the threshold (every 50th by
// default) whenever that period is not 0, refresh or not, so a slow
// connection would wait for its 50th packet. It writes only what differs
// and says whether it wrote.
func (s SyncSysctls) SetRefresh(period time.Duration) (changed bool, err error) {
	secs := int64(period / time.Second)
	if secs < 1 || period%time.Second != 0 {
		return false, fmt.Errorf("set IPVS sync refresh period %s: want whole seconds, at least 1s", period)
	}
	thr, err := s.read("sync_threshold")
	if err != nil {
		return false, err
	}
	f := strings.Fields(thr)
	if len(f) != 2 {
		return false, fmt.Errorf("read %s: %q is not two integers", filepath.Join(s.Dir, "sync_threshold"), thr)
	}
	if f[1] != "0" {
		if err := s.write("sync_threshold", f[0]+" 0"); err != nil {
			return false, err
		}
		changed = true
	}
	cur, err := s.read("sync_refresh_period")
	if err != nil {
		return changed, err
	}
	if want := strconv.FormatInt(secs, 10); cur != want {
		if err := s.write("sync_refresh_period", want); err != nil {
			return changed, err
		}
		changed = true
	}
	return changed, nil
}

func (s SyncSysctls) read(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, name))
	if err != nil {
		return "", fmt.Errorf("read IPVS sysctl: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (s SyncSysctls) write(name, v string) error {
	// O_TRUNC without O_CREATE: a missing sysctl is an error, not a file.
	f, err := os.OpenFile(filepath.Join(s.Dir, name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("set IPVS sysctl %s to %q: %w", name, v, err)
	}
	_, err = f.WriteString(v + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("set IPVS sysctl %s to %q: %w", name, v, err)
	}
	return nil
}
