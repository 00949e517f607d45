package integration

import (
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// TestKernelRules runs the rule table the fake kernel is tested with
// (ipvstest.Rules) on the real kernel, each rule in a fresh namespace
// through a moby handle, so every errno and read-back the fake gives is
// the kernel's.
func TestKernelRules(t *testing.T) {
	for _, r := range ipvstest.Rules() {
		t.Run(r.Name, func(t *testing.T) {
			ns := newNetns(t, "rules")
			h, err := ipvs.Open("/var/run/netns/" + ns)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if err := ipvstest.Base(h); err != nil {
				t.Fatal(err)
			}
			if err := r.Run(h); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestKernelSchedulers checks the fake's scheduler list against the
// kernel's scheduler modules: every ip_vs_*.ko in modules.order except the
// core, the application helpers and the persistence engines. (Each one
// also takes a service in TestKernelRules.)
func TestKernelSchedulers(t *testing.T) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	order, err := os.ReadFile("/lib/modules/" + unix.ByteSliceToString(uts.Release[:]) + "/modules.order")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Fields(string(order)) {
		if !strings.Contains(line, "/netfilter/ipvs/") {
			continue
		}
		name, ok := strings.CutPrefix(strings.TrimSuffix(path.Base(line), ".ko"), "ip_vs_")
		if !ok || name == "ftp" || strings.HasPrefix(name, "pe_") {
			continue
		}
		got = append(got, name)
	}
	want := ipvstest.Schedulers()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kernel's schedulers %v, ipvstest.Schedulers() %v", got, want)
	}
}
