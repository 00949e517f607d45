package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/health"
)

// What an operator did to a real server by hand (lvsha drain, maint).
const (
	manualDrain = "drain" // weight 0: no new connections, established ones go on
	manualMaint = "maint" // out of the kernel's table altogether
)

// manualEntry is one real server taken out by hand.
type manualEntry struct {
	VirtualServer string         `json:"vs"`
	RealServer    netip.AddrPort `json:"rs"`
	Mode          string         `json:"mode"`
	Since         time.Time      `json:"since"`
}

func (m manualEntry) key() health.Key {
	return health.Key{VirtualServer: m.VirtualServer, RealServer: m.RealServer}
}

// savedState is the state file: what must outlive the daemon.
type savedState struct {
	Version int           `json:"version"`
	Manual  []manualEntry `json:"manual"`
	// Down are the real servers that were down when it was written.
	Down []health.Key `json:"down"`
}

// stateVersion is savedState's Version; a file of another is ignored.
const stateVersion = 1

// stateStore keeps savedState in one file, written atomically (a
// temporary file in the same directory, synced, renamed over it, the
// directory synced), so a crash leaves the old file or the new one, never
// half of one. The daemon holds an exclusive lock on a file beside it
// while it runs: a second daemon given the same path keeps no state rather
// than overwrite the first's.
type stateStore struct {
	path string
	lock *os.File
	last []byte // what the file holds: an identical state is not written again
}

// openState locks and reads the state file at path. A state file that
// cannot be used is never fatal: with a nil store the daemon runs as
// before and keeps nothing; a missing, unreadable or corrupt file gives
// an empty state. Every such case is logged with what to do.
func openState(log *slog.Logger, path string) (*stateStore, savedState) {
	var empty savedState
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Error("state file: cannot create its directory; drain state and health will not survive a restart", "op", "state", "file", path, "error", err)
		return nil, empty
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		log.Error("state file: cannot open its lock; drain state and health will not survive a restart", "op", "state", "file", path, "error", err)
		return nil, empty
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		log.Error("state file is held by another running lvsha: this daemon keeps no state (set [director] state_file to a path of its own)", "op", "state", "file", path, "error", err)
		return nil, empty
	}
	s := &stateStore{path: path, lock: lock}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, empty
	case err != nil:
		log.Error("state file unreadable, ignored: every real server starts as its check says", "op", "state", "file", path, "error", err)
		return s, empty
	}
	var st savedState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil || st.Version != stateVersion {
		if err == nil {
			err = fmt.Errorf("version %d, want %d", st.Version, stateVersion)
		}
		log.Error("state file corrupt, ignored: every real server starts as its check says; it is rewritten at the next change", "op", "state", "file", path, "error", err)
		return s, empty
	}
	s.last = data
	return s, st
}

// save writes st unless the file already holds it.
func (s *stateStore) save(st savedState) error {
	if s == nil {
		return nil
	}
	st.Version = stateVersion
	st.Manual = sortedManual(st.Manual)
	slices.SortFunc(st.Down, compareKeys)
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	data = append(data, '\n')
	if bytes.Equal(data, s.last) {
		return nil
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".*")
	if err != nil {
		return fmt.Errorf("write state file %s: %w", s.path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Chmod(0o600), tmp.Sync(), tmp.Close())
	if err != nil {
		return fmt.Errorf("write state file %s: %w", s.path, err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("write state file %s: %w", s.path, err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync %s after writing the state file: %w", dir, err)
		}
	}
	s.last = data
	return nil
}

// close releases the lock; the file stays for the next daemon.
func (s *stateStore) close() {
	if s != nil {
		s.lock.Close()
	}
}

func sortedManual(m []manualEntry) []manualEntry {
	out := slices.Clone(m)
	slices.SortFunc(out, func(a, b manualEntry) int { return compareKeys(a.key(), b.key()) })
	return out
}

func compareKeys(a, b health.Key) int {
	if c := strings.Compare(a.VirtualServer, b.VirtualServer); c != 0 {
		return c
	}
	return a.RealServer.Compare(b.RealServer)
}
