package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// trackExecState is the state `lvsha status -o json` reports for the
// named track_exec, or "" if the daemon does not answer or lacks it.
func (d *director) trackExecState(name string) string {
	out, err := exec.Command(os.Getenv(envLvsha), "status", "-s", d.sock, "-o", "json").Output()
	if err != nil {
		return ""
	}
	var rep struct {
		TrackExecs []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"track_execs"`
	}
	if json.Unmarshal(out, &rep) != nil {
		return ""
	}
	for _, x := range rep.TrackExecs {
		if x.Name == name {
			return x.State
		}
	}
	return ""
}

// priority is the instance's effective priority from `lvsha status`, or
// -1.
func (d *director) priority() int {
	out, err := exec.Command(os.Getenv(envLvsha), "status", "-s", d.sock, "-o", "json").Output()
	if err != nil {
		return -1
	}
	var rep struct {
		VRRP []struct {
			Name     string `json:"name"`
			Priority int    `json:"priority"`
		} `json:"vrrp_instances"`
	}
	if json.Unmarshal(out, &rep) != nil {
		return -1
	}
	for _, v := range rep.VRRP {
		if v.Name == "vi" {
			return v.Priority
		}
	}
	return -1
}

// TestTrackExec: a master tracking a command that starts failing gives up
// mastership to the backup, and takes it back (preempt) when the command
// succeeds again. With weight 0 the master goes to FAULT; with a weight
// its priority drops below the backup's and it stays BACKUP. Each
// director's command tests for a file of its own.
func TestTrackExec(t *testing.T) {
	for _, tc := range []struct {
		name   string
		weight int
		// lb1's state and priority while its command fails.
		failState string
		failPrio  int
	}{
		{"weight 0 faults", 0, "FAULT", 150},
		{"weight lowers priority below the backup", 60, "BACKUP", 90},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const vip = "10.79.0.100"
			dirs := []string{t.TempDir(), t.TempDir()}
			extra := func(i int) string {
				return fmt.Sprintf(`[[vrrp_instance.track_exec]]
name = "chk"
weight = %d

[[track_exec]]
name = "chk"
command = ["/bin/sh", "-c", "test ! -e %s"]
interval = "1s"
rise = 1
fall = 1
`, tc.weight, filepath.Join(dirs[i], "fail"))
			}
			_, ds := newDirectors(t, vip+"/24", extra, 150, 100)
			lb1, lb2 := ds[0], ds[1]
			lb1.start(t)
			lb2.start(t)
			eventually(t, "lb1 master, lb2 backup", 20*time.Second, func() bool { return lb1.state() == "MASTER" && lb2.state() == "BACKUP" })
			eventually(t, "only lb1 holds the VIP", 5*time.Second, func() bool { return lb1.holdsVIP(t, vip) && !lb2.holdsVIP(t, vip) })
			if s := lb1.trackExecState("chk"); s != "ok" {
				t.Fatalf("lb1's track_exec state %q, want ok", s)
			}

			failFile := filepath.Join(dirs[0], "fail")
			if err := os.WriteFile(failFile, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			took := eventually(t, "lb2 takes over when lb1's track_exec fails", 10*time.Second, func() bool {
				return lb2.state() == "MASTER" && lb1.state() == tc.failState
			})
			t.Logf("lb1's track_exec failing (weight %d): lb2 master after %v, lb1 %s", tc.weight, took.Round(time.Millisecond), tc.failState)
			eventually(t, "only lb2 holds the VIP", 5*time.Second, func() bool { return lb2.holdsVIP(t, vip) && !lb1.holdsVIP(t, vip) })
			if s, p := lb1.trackExecState("chk"), lb1.priority(); s != "failing" || p != tc.failPrio {
				t.Errorf("lb1: track_exec %q, priority %d; want failing, %d", s, p, tc.failPrio)
			}
			// Stable: lb1 does not come back while the command still fails.
			for i := range 5 {
				if a, b := lb1.state(), lb2.state(); a != tc.failState || b != "MASTER" {
					t.Fatalf("sample %d while failing: lb1 %s, lb2 %s", i, a, b)
				}
				time.Sleep(200 * time.Millisecond)
			}

			if err := os.Remove(failFile); err != nil {
				t.Fatal(err)
			}
			took = eventually(t, "lb1 preempts when its track_exec succeeds again", 20*time.Second, func() bool {
				return lb1.state() == "MASTER" && lb2.state() == "BACKUP"
			})
			t.Logf("lb1's track_exec ok again: lb1 master after %v", took.Round(time.Millisecond))
			eventually(t, "only lb1 holds the VIP again", 5*time.Second, func() bool { return lb1.holdsVIP(t, vip) && !lb2.holdsVIP(t, vip) })
			if p := lb1.priority(); p != 150 {
				t.Errorf("lb1's priority %d after recovery, want 150", p)
			}
		})
	}
}
