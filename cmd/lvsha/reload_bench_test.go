package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
)

// reload10k is integration.BenchmarkReload10k's table on the host: 100
// virtual servers × 100 real servers (10.100.<i>.1:80 → 10.200.<i>.<j>:8080,
// wlc over NAT, weights 1..100), no health check. changed is the 1%
// change: 50 weights changed, 25 real servers removed and 25 added, each
// in a virtual server of its own.
func reload10k(dir string, changed bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[director]\nname = \"bench\"\ncontrol_socket = %q\nstate_file = %q\nresync_interval = \"1h\"\n",
		filepath.Join(dir, "lvsha.sock"), filepath.Join(dir, "state.json"))
	for i := range 100 {
		fmt.Fprintf(&b, "[[virtual_server]]\naddress = \"10.100.%d.1:80\"\nscheduler = \"wlc\"\n", i)
		for j := range 100 {
			w := j + 1
			switch {
			case changed && i < 50 && j == i:
				w += 100
			case changed && i >= 50 && i < 75 && j == i-50:
				continue
			}
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.200.%d.%d:8080\"\nweight = %d\n", i, j+1, w)
		}
		if changed && i >= 75 {
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.201.%d.%d:8080\"\nweight = 1\n", i, i-74)
		}
	}
	return b.String()
}

// reloadDaemon is a daemon as cmdRun builds one (the health engine
// behind the self prober, a state file, the events' recorder), on a
// fake kernel, logging nowhere. Its loop runs until the benchmark ends.
func reloadDaemon(b testing.TB, dir string, k *ipvstest.Kernel) (d *daemon, path string, started chan struct{}) {
	b.Helper()
	path = filepath.Join(dir, "lvsha.toml")
	if err := os.WriteFile(path, []byte(reload10k(dir, false)), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := conf.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	events := newEventLog(eventsKept)
	log := slog.New(events.handler(slog.NewTextHandler(io.Discard, nil)))
	engine := health.NewEngine(log)
	noLocal := func() (func(netip.Addr) bool, error) { return func(netip.Addr) bool { return false }, nil }
	d = newDaemon(log, path, cfg, ipvs.NewReconciler(k, log), newSelfProber(log, engine, noLocal))
	d.events = events
	d.state, _ = openState(log, cfg.Director.StateFile)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.loop(ctx, nil) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		d.state.close()
	})
	// The loop answers its first request after its first sync.
	started = make(chan struct{})
	go func() {
		reply := make(chan *ReloadReport, 1)
		d.reloads <- reply
		<-reply
		close(started)
	}()
	return d, path, started
}

// reloadOnce asks the loop for a reload, as POST /reload does.
func reloadOnce(d *daemon) *ReloadReport {
	reply := make(chan *ReloadReport, 1)
	d.reloads <- reply
	return <-reply
}

// A reload at 10,000 real servers costs its changes (issue #17): the 1%
// change is its 100 kernel writes and no dump of the kernel's table, an
// unchanged file neither writes nor reads, and the way back is 100 writes
// again; the periodic resync alone reads the table.
func TestReload10kCostsTheChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 real servers")
	}
	k := &ipvstest.Kernel{}
	dir := t.TempDir()
	d, path, started := reloadDaemon(t, dir, k)
	<-started
	for _, step := range []struct {
		name      string
		file      string
		writes    int
		unchanged bool
	}{
		{"1% changed", reload10k(dir, true), 100, false},
		{"unchanged", reload10k(dir, true), 0, true},
		{"back", reload10k(dir, false), 100, false},
	} {
		writeFileB(t, path, step.file)
		k.ResetWrites()
		reads := k.Reads()
		rep := reloadOnce(d)
		if rep.Unchanged != step.unchanged || len(rep.Errors) > 0 || len(rep.Kernel) != step.writes || k.Writes() != step.writes || k.Reads() != reads {
			t.Errorf("%s: unchanged %v, errors %v, %d writes reported, %d made (want %d), %d kernel reads (want 0)",
				step.name, rep.Unchanged, rep.Errors, len(rep.Kernel), k.Writes(), step.writes, k.Reads()-reads)
		}
	}
}

// BenchmarkReload10k is a reload of 10,000 real servers on the fake
// kernel, the daemon's part of integration.BenchmarkReload10k without
// the VM: unchanged (no kernel write), and the 1% change (100 kernel
// writes) and back. The kernel's reads are reported per reload.
//
//	go test ./cmd/lvsha -run '^$' -bench Reload10k -benchtime 10x
func BenchmarkReload10k(b *testing.B) {
	b.Run("unchanged", func(b *testing.B) {
		k := &ipvstest.Kernel{}
		d, _, started := reloadDaemon(b, b.TempDir(), k)
		<-started
		k.ResetWrites()
		for b.Loop() {
			if rep := reloadOnce(d); !rep.Unchanged || len(rep.Errors) > 0 {
				b.Fatalf("unchanged reload: %+v", rep)
			}
		}
		if n := k.Writes(); n != 0 {
			b.Fatalf("unchanged reloads made %d kernel writes", n)
		}
	})
	b.Run("changed", func(b *testing.B) {
		k := &ipvstest.Kernel{}
		dir := b.TempDir()
		d, path, started := reloadDaemon(b, dir, k)
		<-started
		base, changed := reload10k(dir, false), reload10k(dir, true)
		var reads int
		for b.Loop() {
			b.StopTimer()
			writeFileB(b, path, changed)
			k.ResetWrites()
			r0 := k.Reads()
			b.StartTimer()
			rep := reloadOnce(d)
			b.StopTimer()
			reads += k.Reads() - r0
			if !rep.Applied || len(rep.Errors) > 0 || len(rep.Kernel) != 100 || k.Writes() != 100 {
				b.Fatalf("1%% change: %d kernel writes (%d reported), errors %v", k.Writes(), len(rep.Kernel), rep.Errors)
			}
			writeFileB(b, path, base)
			if rep := reloadOnce(d); len(rep.Kernel) != 100 {
				b.Fatalf("back: %d kernel writes, errors %v", len(rep.Kernel), rep.Errors)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(reads)/float64(b.N), "kernel-reads/reload")
	})
}

// BenchmarkStart10k is a daemon's start on an empty fake kernel, until
// its first sync has programmed 10,000 real servers.
//
//	go test ./cmd/lvsha -run '^$' -bench Start10k -benchtime 5x
func BenchmarkStart10k(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		k := &ipvstest.Kernel{}
		dir := b.TempDir()
		b.StartTimer()
		_, _, started := reloadDaemon(b, dir, k)
		<-started
		b.StopTimer()
		if k.Writes() != 10100 {
			b.Fatalf("%d kernel writes, want 10,100", k.Writes())
		}
		b.StartTimer()
	}
}

func writeFileB(b testing.TB, path, text string) {
	b.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
}
