package integration

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// killLvsha SIGKILLs the seed's daemon: no handover, no cleanup.
func (s *seed) killLvsha(t *testing.T) {
	t.Helper()
	if err := s.lvsha.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	s.lvsha.Wait()
}

// lvshaCmd runs an lvsha subcommand against the seed's daemon and returns
// its output and exit status.
func (s *seed) lvshaCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(lvshaBin(t), append([]string{args[0], "-s", s.sock}, args[1:]...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestDrainByHand is issue #17's drain on kernel IPVS with traffic: a
// drained server gets no new client but keeps the connection it has; it
// stays drained across a reload and a SIGKILL and restart; maintenance
// takes it out of the table; undrain gives it back. Then a restart with a
// dead real server sends it no request.
func TestDrainByHand(t *testing.T) {
	s := newSeed(t, defaultSeedCheck())
	// A state file of this test's own: the VM runs many daemons.
	cfg := strings.Replace(mustRead(t, s.cfg), "resync_interval", "state_file = \""+filepath.Join(s.dir, "state.json")+"\"\nresync_interval", 1)
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s.startWeb(t, "web1")
	s.startWeb(t, "web2")
	s.waitWebs(t)
	s.startLvsha(t)
	const web1, web2 = "192.168.164.10:80", "192.168.164.11:80"
	eventually(t, "both at weight 1", 10*time.Second, func() bool { return s.weight(t, web1) == "1" && s.weight(t, web2) == "1" })

	// A client holds a connection to one of them; that one is drained.
	stdin, out, first := s.holdClient(t)
	held := strings.TrimSpace(strings.TrimPrefix(first, "first "))
	drained, other := web1, web2
	if held == "web2" {
		drained, other = web2, web1
	}
	otherName := map[string]string{web1: "web1", web2: "web2"}[other]
	text, code := s.lvshaCmd(t, "drain", "web", drained)
	if code != 0 || !strings.Contains(text, "DRAINED by hand") {
		t.Fatalf("lvsha drain web %s: exit %d\n%s", drained, code, text)
	}
	t.Logf("lvsha drain web %s (the server the held connection uses):\n%s", drained, text)
	if w := s.weight(t, drained); w != "0" {
		t.Fatalf("drained server at kernel weight %s, want 0", w)
	}
	for i := 0; i < 4; i++ {
		if body, err := s.get(t); err != nil || body != otherName {
			t.Fatalf("new request %d after the drain: %q, %v; want %s", i, body, err, otherName)
		}
	}
	io.WriteString(stdin, "go\n")
	second, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(second, "second "+held) || !strings.Contains(second, "reused=true") {
		t.Fatalf("the held connection after the drain: %q %v; want %s again on the same connection", second, err, held)
	}
	t.Logf("new requests all went to %s; the held connection still reached %s: %s", otherName, held, strings.TrimSpace(second))

	// A reload, then a SIGKILL and a restart: still drained.
	if text, code := s.lvshaCmd(t, "reload"); code != 0 {
		t.Fatalf("lvsha reload: exit %d\n%s", code, text)
	}
	s.killLvsha(t)
	s.startLvsha(t)
	eventually(t, "the restarted daemon answers", 10*time.Second, func() bool { _, code := s.lvshaCmd(t, "status"); return code == 0 })
	time.Sleep(2 * seedInterval * seedRise) // long enough for a probe to have restored it, were it not drained
	if w := s.weight(t, drained); w != "0" {
		t.Fatalf("after a reload and a SIGKILL and restart the drained server is at weight %s", w)
	}
	if text, _ := s.lvshaCmd(t, "status"); !strings.Contains(text, "DRAINED by hand") {
		t.Errorf("status after the restart does not show the drain:\n%s", text)
	}

	// Maintenance takes it out of the table; undrain gives it back.
	if text, code := s.lvshaCmd(t, "maint", "web", drained); code != 0 || strings.Contains(ipvsadmTable(t, s.lb), drained) {
		t.Fatalf("lvsha maint: exit %d\n%s\ntable:\n%s", code, text, ipvsadmTable(t, s.lb))
	}
	if text, code := s.lvshaCmd(t, "undrain", "web", drained); code != 0 {
		t.Fatalf("lvsha undrain: exit %d\n%s", code, text)
	}
	if w := s.weight(t, drained); w != "1" {
		t.Fatalf("undrained server at weight %s, want 1", w)
	}
	t.Logf("maint removed %s from the table; undrain put it back at weight 1", drained)

	// web2 dies and is drained for it; the daemon is killed and restarted:
	// no request may reach web2 (today's keepalived would give it its
	// weight back until fall probes fail).
	s.stopWeb("web2")
	eventually(t, "web2 drained for its health", seedInterval*seedFall+seedTimeout+tcgSlack, func() bool { return s.weight(t, web2) == "0" })
	s.killLvsha(t)
	s.startLvsha(t)
	deadline := time.Now().Add(2 * seedInterval * seedFall)
	for n := 0; time.Now().Before(deadline); n++ {
		if w := s.weight(t, web2); w != "0" {
			t.Fatalf("after the restart the dead web2 got weight %s", w)
		}
		if body, err := s.get(t); err != nil || body != "web1" {
			t.Fatalf("request %d after the restart: %q, %v; want web1", n, body, err)
		}
	}
	t.Logf("after a restart with web2 dead, every request went to web1 and web2 stayed at weight 0")
}
