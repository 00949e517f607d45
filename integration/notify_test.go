package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNotifyHooks: a real lvsha runs its notify hook on every transition,
// with the instance, state and priority as arguments, STOP included when
// it is stopped.
func TestNotifyHooks(t *testing.T) {
	log := filepath.Join(t.TempDir(), "hooks.log")
	extra := func(int) string {
		return `notify = ["/bin/sh", "-c", "echo \"$@\" >> ` + log + `", "hook"]` + "\n"
	}
	_, ds := newDirectors(t, "10.79.0.100/24", extra, 100)
	lb := ds[0]
	lb.start(t)
	eventually(t, "master", 20*time.Second, func() bool { return lb.state() == "MASTER" })
	stopProc(lb.cmd)
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := "INSTANCE vi BACKUP 100\nINSTANCE vi MASTER 100\nINSTANCE vi STOP 100\n"
	if got := string(b); got != want {
		t.Errorf("hook log:\n%s\nwant:\n%s", got, want)
	}
	t.Logf("notify hook calls:\n%s", strings.TrimSpace(string(b)))
}
