package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lvsha/lvsha/vrrp/track"
)

// `lvsha status` shows each track_exec's verdict, its last result and
// what it does to each instance tracking it, in text and JSON.
func TestReportTrackExecs(t *testing.T) {
	now := time.Now()
	rep := &Report{Director: "lb1", TrackExecs: []TrackExecReport{{
		ExecStatus: track.ExecStatus{Name: "haproxy", Command: []string{"/bin/pidof", "haproxy"}, State: "failing",
			Since: now.Add(-2 * time.Second), Transitions: 1, Runs: 7, LastRun: now.Add(-time.Second), LastResult: "exit 1", LastDuration: 1.5},
		TrackedBy: []TrackedBy{{Instance: "vi", Weight: 0}, {Instance: "vi2", Weight: 20}},
	}}}
	var text bytes.Buffer
	if err := writeReport(&text, rep, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"track_exec", "haproxy", "FAILING", "exit 1 1.5ms", "vi (fault), vi2 (-20)", "/bin/pidof haproxy"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text status lacks %q:\n%s", want, text.String())
		}
	}
	// The daemon encodes the report and `lvsha status` decodes and
	// re-encodes it: both sides must keep every field.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(&back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(js, b) {
		t.Errorf("JSON changed in a round trip:\n%s\n%s", b, js)
	}
	for _, want := range []string{`"track_execs":[{"name":"haproxy"`, `"state":"failing"`, `"last_result":"exit 1"`,
		`"tracked_by":[{"vrrp_instance":"vi","weight":0},{"vrrp_instance":"vi2","weight":20}]`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON status lacks %s:\n%s", want, js)
		}
	}
}
