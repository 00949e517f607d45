package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	moby "github.com/moby/ipvs"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/health"
	"github.com/lvsha/lvsha/ipvs"
	"github.com/lvsha/lvsha/ipvs/ipvstest"
	"github.com/lvsha/lvsha/vrrp/group"
	"github.com/lvsha/lvsha/vrrp/instance"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// uniqueKeys is a slog.Handler that fails the test when a record, with
// its logger's With attributes, names a key twice: slog writes both
// silently, and a reader (or a JSON parser) sees one.
type uniqueKeys struct {
	errorf func(format string, args ...any) // t.Errorf
	next   slog.Handler
	keys   []string
	prefix string
}

// Enabled is true at every level: lines below the log level are checked
// too.
func (h *uniqueKeys) Enabled(context.Context, slog.Level) bool { return true }

func (h *uniqueKeys) Handle(ctx context.Context, r slog.Record) error {
	seen := map[string]bool{}
	check := func(k string, _ slog.Value) {
		if seen[k] {
			h.errorf("log line %q repeats key %q", r.Message, k)
		}
		seen[k] = true
	}
	for _, k := range h.keys {
		check(k, slog.Value{})
	}
	r.Attrs(func(a slog.Attr) bool { flatten(h.prefix, a, check); return true })
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *uniqueKeys) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.next = h.next.WithAttrs(as)
	n.keys = slices.Clone(h.keys)
	for _, a := range as {
		flatten(h.prefix, a, func(k string, _ slog.Value) { n.keys = append(n.keys, k) })
	}
	return &n
}

func (h *uniqueKeys) WithGroup(name string) slog.Handler {
	n := *h
	n.next = h.next.WithGroup(name)
	n.prefix += name + "."
	return &n
}

// The key check itself: a key repeated through With, or within the
// record, fails; the same key in different groups does not.
func TestUniqueKeys(t *testing.T) {
	tests := []struct {
		name string
		log  func(*slog.Logger)
		dup  bool
	}{
		{"distinct", func(l *slog.Logger) { l.Info("m", "a", 1, "b", 2) }, false},
		{"within the record", func(l *slog.Logger) { l.Info("m", "a", 1, "a", 2) }, true},
		{"through With", func(l *slog.Logger) { l.With("a", 1).Info("m", "a", 2) }, true},
		{"in another group", func(l *slog.Logger) { l.With("a", 1).WithGroup("g").Info("m", "a", 2) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			found := false
			tt.log(slog.New(&uniqueKeys{errorf: func(string, ...any) { found = true }, next: slog.DiscardHandler}))
			if found != tt.dup {
				t.Errorf("repeated key found: %v, want %v", found, tt.dup)
			}
		})
	}
}

// eventWant is one event a step of TestEvents expects.
type eventWant struct {
	kind, subject string
	detail        []string // substrings of its detail
}

// TestEvents runs the daemon through its state changes — real servers
// down and up, quorum lost and regained with the sorry server, drain,
// maint, undrain, a refused and an accepted reload, a kernel that refuses
// writes and recovers — on loopback backends, the real health engine and
// the fake kernel, and checks the events each records, in order, and
// nothing more. Every log line along the way must name each key once
// (uniqueKeys). Then `lvsha events` prints them, and -f follows a new one.
func TestEvents(t *testing.T) {
	web1 := startBackend(t, "127.0.0.1:0")
	web2 := startBackend(t, "127.0.0.1:0")
	dir := t.TempDir()
	sock := filepath.Join(dir, "lvsha.sock")
	path := filepath.Join(dir, "lvsha.toml")
	good := fmt.Sprintf(`
[director]
name = "test"
control_socket = %q
resync_interval = "100ms"

[[virtual_server]]
name = "web"
address = "10.1.2.3:80"
scheduler = "rr"
quorum = 4
sorry_server = "10.9.9.9:80"
  [virtual_server.check]
  type = "http"
  interval = "30ms"
  timeout = "25ms"
  rise = 2
  fall = 2
  [[virtual_server.real_server]]
  address = %q
  weight = 3
  [[virtual_server.real_server]]
  address = %q
  weight = 2
  notify_down = ["/bin/true"]
`, sock, web1.addr, web2.addr)
	writeConfig(t, path, good)
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{w: &bytes.Buffer{}}
	events := newEventLog(eventsKept)
	log := slog.New(&uniqueKeys{errorf: t.Errorf, next: events.handler(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	k := &ipvstest.Kernel{}
	d := newDaemon(log, path, cfg, ipvs.NewReconciler(k, log), health.NewEngine(log))
	d.events = events
	hup := make(chan os.Signal, 1)
	runDaemon(t, d, logs, sock, hup)
	ctx := context.Background()
	svc := "TCP  10.1.2.3:80"
	waitFor(t, logs, "initial table", 5*time.Second, func() bool {
		w := kernelWeights(t, k)
		return w[svc+" "+web1.addr] == 3 && w[svc+" "+web2.addr] == 2
	})
	manual := func(cmd, rs string) func() {
		return func() {
			if code := runMain(ctx, []string{cmd, "-s", sock, "web", rs}, io.Discard, io.Discard); code != 0 {
				t.Errorf("lvsha %s web %s: exit %d", cmd, rs, code)
			}
		}
	}
	reload := func(text string) func() {
		return func() { writeConfig(t, path, text); hup <- os.Interrupt }
	}
	refuse := errors.New("kernel says no")
	rs1, rs2 := "web "+web1.addr, "web "+web2.addr
	steps := []struct {
		name string
		do   func()
		want []eventWant
	}{
		{"web2 fails: down with the probe's result, quorum lost (3 < 4), the sorry server serves", web2.stop, []eventWant{
			{"rs_down", rs2, []string{"probe=", "result="}},
			{"quorum_lost", "web", []string{"up_weight=3", "quorum=4", "sorry_server=10.9.9.9:80", "sorry_server_state=serving"}}}},
		{"web2 recovers", web2.start, []eventWant{
			{"rs_up", rs2, []string{"probe="}},
			{"quorum_regained", "web", []string{"up_weight=5", "sorry_server_state=off"}}}},
		{"drain web1: its weight no longer counts", manual("drain", web1.addr), []eventWant{
			{"drain", rs1, nil}, {"quorum_lost", "web", []string{"up_weight=2"}}}},
		{"maint web1 (from drain)", manual("maint", web1.addr), []eventWant{{"maint", rs1, nil}}},
		{"undrain web1", manual("undrain", web1.addr), []eventWant{
			{"undrain", rs1, nil}, {"quorum_regained", "web", []string{"up_weight=5"}}}},
		{"a bad file is refused, with the error", reload(strings.Replace(good, `weight = 3`, `weight = -1`, 1)), []eventWant{
			{"reload_refused", path, []string{"weight"}}}},
		{"a good file on a kernel refusing writes: reloaded, then one sync error however often it retries", func() {
			k.SetFail(func(string, *moby.Service, *moby.Destination) error { return refuse })
			reload(strings.Replace(good, `weight = 3`, `weight = 5`, 1))()
		}, []eventWant{{"reload", path, []string{"virtual_servers=1"}}, {"sync_error", "", []string{refuse.Error()}}}},
		{"the kernel takes writes again", func() { k.SetFail(nil) }, []eventWant{{"sync_ok", "", []string{refuse.Error()}}}},
	}
	var cursor uint64
	for _, st := range steps {
		st.do()
		var got []Event
		waitFor(t, logs, st.name, 5*time.Second, func() bool {
			got, _, _ = events.since(cursor)
			return len(got) >= len(st.want)
		})
		cursor = got[len(got)-1].Seq
		if len(got) != len(st.want) {
			t.Errorf("%s: %d events, want %d: %+v", st.name, len(got), len(st.want), got)
			continue
		}
		for i, w := range st.want {
			e := got[i]
			if e.Kind != w.kind || e.Subject != w.subject {
				t.Errorf("%s: event %d is %s %q, want %s %q", st.name, i, e.Kind, e.Subject, w.kind, w.subject)
			}
			for _, s := range w.detail {
				if !strings.Contains(e.Detail, s) {
					t.Errorf("%s: %s detail %q lacks %q", st.name, e.Kind, e.Detail, s)
				}
			}
		}
	}
	if t.Failed() {
		return
	}
	// The retries of the failing sync recorded nothing more: the sync_ok
	// followed the sync_error directly.
	all, last, _ := events.since(0)
	if n := len(all); n == 0 || all[n-1].Kind != "sync_ok" || all[n-2].Kind != "sync_error" || all[n-1].Seq != last {
		t.Errorf("events end %+v", all[max(0, n-2):])
	}

	t.Run("lvsha events", func(t *testing.T) {
		var out bytes.Buffer
		if code := runMain(ctx, []string{"events", "-s", sock}, &out, io.Discard); code != 0 {
			t.Fatalf("exit %d", code)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != len(all) {
			t.Fatalf("%d lines for %d events:\n%s", len(lines), len(all), out.String())
		}
		for i, e := range all {
			// time, kind, subject, detail: newest last.
			if f := strings.Fields(lines[i]); len(f) < 3 || f[1] != e.Kind || !strings.Contains(lines[i], e.Subject) {
				t.Errorf("line %d %q, want the %s of %q", i, lines[i], e.Kind, e.Subject)
			}
		}
	})
	t.Run("lvsha events -f -o json", func(t *testing.T) {
		fctx, stop := context.WithTimeout(ctx, 10*time.Second)
		defer stop()
		out := &syncWriter{w: &bytes.Buffer{}}
		done := make(chan int, 1)
		go func() { done <- runMain(fctx, []string{"events", "-s", sock, "-f", "-o", "json"}, out, io.Discard) }()
		lines := func() []Event {
			var evs []Event
			sc := bufio.NewScanner(strings.NewReader(out.String()))
			for sc.Scan() {
				var e Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
				}
				evs = append(evs, e)
			}
			return evs
		}
		waitFor(t, out, "the kept events", 5*time.Second, func() bool { return len(lines()) == len(all) })
		manual("drain", web2.addr)()
		waitFor(t, out, "the drain followed", 5*time.Second, func() bool { return len(lines()) > len(all) })
		evs := lines()
		if e := evs[len(all)]; e.Kind != "drain" || e.Subject != rs2 || e.Seq != last+1 || e.Attrs["rs"] != web2.addr {
			t.Errorf("followed %+v, want the drain of %s, seq %d", e, rs2, last+1)
		}
		stop()
		if code := <-done; code != 0 {
			t.Errorf("interrupted -f exits %d, want 0", code)
		}
	})
}

// The ring keeps the newest events, numbered on; a cursor from a
// previous daemon (beyond the newest) is answered at once.
func TestEventLogRing(t *testing.T) {
	l := newEventLog(3)
	for i := range 5 {
		l.add(Event{Kind: fmt.Sprint(i)})
	}
	tests := []struct {
		since    uint64
		wantSeqs []uint64
	}{
		{0, []uint64{3, 4, 5}},
		{1, []uint64{3, 4, 5}},
		{4, []uint64{5}},
		{5, nil},
	}
	for _, tt := range tests {
		evs, last, _ := l.since(tt.since)
		var seqs []uint64
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
		}
		if !slices.Equal(seqs, tt.wantSeqs) || last != 5 {
			t.Errorf("since(%d) = %v, last %d; want %v, 5", tt.since, seqs, last, tt.wantSeqs)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if evs, last := l.wait(ctx, 9, time.Minute); len(evs) != 0 || last != 5 || ctx.Err() != nil {
		t.Errorf("wait past the newest: %v, %d, waited %v", evs, last, ctx.Err())
	}
	go l.add(Event{Kind: "new"})
	if evs, _ := l.wait(ctx, 5, time.Minute); len(evs) != 1 || evs[0].Kind != "new" || evs[0].Seq != 6 {
		t.Errorf("wait for the next: %+v", evs)
	}
}

// fakeConn is an advert connection on which nothing arrives.
type fakeConn struct{ closed chan struct{} }

func (c *fakeConn) Read([]byte) (transport.Datagram, error) {
	<-c.closed
	return transport.Datagram{}, errors.New("closed")
}
func (*fakeConn) Destinations() []netip.Addr       { return nil }
func (*fakeConn) WriteTo([]byte, netip.Addr) error { return nil }
func (c *fakeConn) Close() error                   { close(c.closed); return nil }

// fakeHolder holds VIPs nowhere.
type fakeHolder struct{}

func (fakeHolder) Take() error                                                { return nil }
func (fakeHolder) FollowUp(context.Context) error                             { return nil }
func (fakeHolder) Acquire(context.Context) error                              { return nil }
func (fakeHolder) Announce(context.Context)                                   {}
func (fakeHolder) Refresh()                                                   {}
func (fakeHolder) Release() error                                             { return nil }
func (fakeHolder) Reconfigure(context.Context, conf.VRRPInstance, bool) error { return nil }
func (fakeHolder) Run(ctx context.Context) error                              { <-ctx.Done(); return nil }
func (fakeHolder) Close() error                                               { return nil }

// A real VRRP instance's transitions are events, named by the instance
// (its logger's With attribute), with from, to and reason; keys once.
func TestEventsVRRPTransition(t *testing.T) {
	events := newEventLog(eventsKept)
	log := slog.New(&uniqueKeys{errorf: t.Errorf, next: events.handler(slog.DiscardHandler)})
	ic := conf.VRRPInstance{Name: "vi_1", Interface: "eth0", RouterID: 7, Priority: 100, Version: 3,
		AdvertInterval: time.Second, VirtualIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}}
	inst, err := instance.New(log, ic, netip.MustParseAddr("10.0.0.2"), &fakeConn{closed: make(chan struct{})}, fakeHolder{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- inst.Run(ctx) }()
	wctx, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	evs, _ := events.wait(wctx, 0, 5*time.Second)
	cancel()
	<-done
	if len(evs) == 0 {
		t.Fatal("no event from the instance's start")
	}
	e := evs[0]
	for _, want := range []string{"from=INIT", "state=BACKUP", "reason=startup", "vrid=7"} {
		if e.Kind != "vrrp" || e.Subject != "vi_1" || !strings.Contains(e.Detail, want) {
			t.Errorf("event %+v, want a vrrp event of vi_1 whose detail has %s", e, want)
		}
	}
}

// An instance that waits in FAULT for its interface's address (an IPv6
// link-local one) is an event, written where the group opens it.
func TestEventsVRRPWaiting(t *testing.T) {
	events := newEventLog(eventsKept)
	log := slog.New(&uniqueKeys{errorf: t.Errorf, next: events.handler(slog.DiscardHandler)})
	ic := conf.VRRPInstance{Name: "vi_6", Interface: "eth0", RouterID: 7, Priority: 100, Version: 3,
		AdvertInterval: time.Second, VirtualIPs: []netip.Prefix{netip.MustParsePrefix("2001:db8::1/64")}}
	open := func(*slog.Logger, conf.VRRPInstance, string) (group.Instance, error) {
		return nil, fmt.Errorf("vrrp_instance vi_6: %w: eth0 has no IPv6 link-local address", instance.ErrNoSource)
	}
	if _, err := group.Open(group.Options{Log: log, Open: open}, &conf.Config{VRRPInstances: []conf.VRRPInstance{ic}}); err != nil {
		t.Fatalf("Open: %v, want the instance to wait", err)
	}
	evs, _, _ := events.since(0)
	if len(evs) != 1 {
		t.Fatalf("events %+v, want one", evs)
	}
	e := evs[0]
	for _, want := range []string{"interface=eth0", "has no IPv6 link-local address"} {
		if e.Kind != "vrrp_waiting" || e.Subject != "vi_6" || !strings.Contains(e.Detail, want) {
			t.Errorf("event %+v, want a vrrp_waiting event of vi_6 whose detail has %s", e, want)
		}
	}
}
