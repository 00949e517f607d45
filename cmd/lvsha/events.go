package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lvsha/lvsha/vrrp/group"
)

// Events (`lvsha events`): the daemon keeps its recent state changes in a
// bounded ring and serves them on the control socket's GET /events.
//
// Why the ring is fed by a slog.Handler and not by calls at each change:
// every state change is already one log line with its cause (see
// TestDaemonLogLines), and those lines are written where the change is
// known — the health engine's "real server up/down" with the probe
// result, the VRRP instance's "VRRP transition" with its reason, the
// daemon's reloads, drains, sync failures and quorum changes. A handler
// in front of the daemon's log handler records the lines whose message
// eventKind knows, with their logger's With attributes (the VRRP
// instance's name). No log site calls anything else, no package below
// cmd/lvsha learns about events, and the events cannot disagree with the
// journal. The price is that eventKind names messages written elsewhere:
// TestEvents drives each one through the code that writes it, so a
// renamed message fails there.

// eventsKept bounds the ring: about a day of a busy site's changes, and
// under 1 MB.
const eventsKept = 1000

// eventWait bounds one long poll of GET /events?wait=: below the
// control client's one-minute timeout.
const eventWait = 30 * time.Second

// Event is one state change. Its JSON form is part of the control
// socket's interface.
type Event struct {
	// Seq numbers the events since the daemon started, from 1.
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Subject string    `json:"subject"`
	// Detail is the log line's other attributes, as key=value.
	Detail string `json:"detail"`
	// Attrs are all of the log line's attributes.
	Attrs map[string]string `json:"attrs"`
}

// eventSpec is what eventKind says of one message.
type eventSpec struct {
	kind    string // "": the line's op attribute
	subject []string
}

// eventSpecs are the log lines that are events, by message. Read only.
var eventSpecs = map[string]eventSpec{
	"real server up":                                    {"rs_up", []string{"vs", "rs"}},
	"real server down":                                  {"rs_down", []string{"vs", "rs"}},
	"real server taken by hand":                         {"", []string{"vs", "rs"}},
	"virtual server lost quorum":                        {"quorum_lost", []string{"vs"}},
	"virtual server regained quorum":                    {"quorum_regained", []string{"vs"}},
	"kernel table sync failed":                          {"sync_error", nil},
	"kernel table sync recovered":                       {"sync_ok", nil},
	"configuration reloaded":                            {"reload", []string{"file"}},
	"reload failed, keeping the previous configuration": {"reload_refused", []string{"file"}},
	"VRRP transition":                                   {"vrrp", []string{"vrrp_instance"}},
	group.MsgNoSource:                                   {"vrrp_waiting", []string{"vrrp_instance"}},
	group.MsgSourceGone:                                 {"vrrp_source_gone", []string{"vrrp_instance"}},
}

// eventKind is the kind of event a log line of message msg is, and which
// of its attributes name its subject; "" for a line that is no event.
// The kind of a change by hand is its op (drain, maint, undrain).
func eventKind(msg string, attr func(string) string) (kind string, subject []string) {
	e, ok := eventSpecs[msg]
	if !ok {
		return "", nil
	}
	if e.kind == "" {
		return attr("op"), e.subject
	}
	return e.kind, e.subject
}

// eventLog is the ring of recent events.
type eventLog struct {
	mu     sync.Mutex
	max    int
	events []Event // oldest first
	last   uint64  // Seq of the newest, 0 before the first
	// added is closed, and replaced, when an event is added: how a long
	// poll waits.
	added chan struct{}
}

func newEventLog(max int) *eventLog {
	return &eventLog{max: max, added: make(chan struct{})}
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	e.Seq = l.last
	if len(l.events) == l.max {
		copy(l.events, l.events[1:])
		l.events = l.events[:len(l.events)-1]
	}
	l.events = append(l.events, e)
	close(l.added)
	l.added = make(chan struct{})
}

// since returns the events after seq, the Seq of the newest event, and a
// channel closed when the next is added.
func (l *eventLog) since(seq uint64) (events []Event, last uint64, added <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.events {
		if l.events[i].Seq > seq {
			events = append(events, l.events[i:]...)
			break
		}
	}
	return events, l.last, l.added
}

// wait returns the events after seq, waiting up to d (or until ctx ends)
// for one when there is none yet.
func (l *eventLog) wait(ctx context.Context, seq uint64, d time.Duration) ([]Event, uint64) {
	events, last, added := l.since(seq)
	if len(events) > 0 || d <= 0 || seq > last {
		// seq > last: a cursor from a previous daemon; answer at once so
		// the client starts again from 0.
		return events, last
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-added:
		events, last, _ = l.since(seq)
	case <-t.C:
	case <-ctx.Done():
	}
	return events, last
}

// handler returns a slog.Handler that records into l the events among the
// records it passes on to next.
func (l *eventLog) handler(next slog.Handler) slog.Handler {
	return &eventHandler{next: next, log: l}
}

type eventHandler struct {
	next   slog.Handler
	log    *eventLog
	attrs  []slog.Attr // from WithAttrs, keys qualified by their groups
	prefix string      // the groups of WithGroup, each followed by "."
}

// Enabled is true for every event's level (Info and above) whatever the
// log level, so --log-level error still records events.
func (h *eventHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo || h.next.Enabled(ctx, level)
}

func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	if _, ok := eventSpecs[r.Message]; ok && r.Level >= slog.LevelInfo {
		// Any other line is no event: its attributes are not looked at.
		h.record(r)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// record adds r to the ring if it is an event.
func (h *eventHandler) record(r slog.Record) {
	keys := make([]string, 0, len(h.attrs)+r.NumAttrs())
	vals := make(map[string]string, cap(keys))
	add := func(key string, v slog.Value) {
		if _, dup := vals[key]; !dup {
			keys = append(keys, key)
		}
		vals[key] = v.Resolve().String()
	}
	for _, a := range h.attrs {
		add(a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		flatten(h.prefix, a, add)
		return true
	})
	kind, subject := eventKind(r.Message, func(k string) string { return vals[k] })
	if kind == "" {
		return
	}
	e := Event{Time: r.Time, Kind: kind, Attrs: vals}
	skip := map[string]bool{"op": true}
	var subj []string
	for _, k := range subject {
		if v, ok := vals[k]; ok {
			subj = append(subj, v)
		}
		skip[k] = true
	}
	e.Subject = strings.Join(subj, " ")
	var detail []string
	for _, k := range keys {
		if !skip[k] {
			detail = append(detail, k+"="+logfmtValue(vals[k]))
		}
	}
	e.Detail = strings.Join(detail, " ")
	h.log.add(e)
}

// flatten calls add for a, or for each attribute of group a, with keys
// qualified by prefix as slog's text handler writes them.
func flatten(prefix string, a slog.Attr, add func(string, slog.Value)) {
	v := a.Value.Resolve()
	if v.Kind() != slog.KindGroup {
		if a.Key != "" {
			add(prefix+a.Key, v)
		}
		return
	}
	if a.Key != "" {
		prefix += a.Key + "."
	}
	for _, g := range v.Group() {
		flatten(prefix, g, add)
	}
}

// logfmtValue quotes v when logfmt would.
func logfmtValue(v string) string {
	if v == "" || strings.ContainsAny(v, " =\"\t\n") {
		return strconv.Quote(v)
	}
	return v
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.next = h.next.WithAttrs(as)
	n.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		flatten(h.prefix, a, func(k string, v slog.Value) { n.attrs = append(n.attrs, slog.Attr{Key: k, Value: v}) })
	}
	return &n
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.next = h.next.WithGroup(name)
	n.prefix = h.prefix + name + "."
	return &n
}

// eventsAnswer is GET /events' answer.
type eventsAnswer struct {
	Events []Event `json:"events"`
	// Last is the Seq of the newest event the daemon has: a client's
	// next since. Below the since asked, the daemon is a new one.
	Last uint64 `json:"last"`
}

// handleEvents serves GET /events?since=SEQ&wait=DURATION: the events
// after SEQ (default 0, all kept), waiting up to DURATION (at most
// eventWait) for one when there is none yet.
func (d *daemon) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since uint64
	if s := q.Get("since"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			http.Error(w, fmt.Sprintf("since %q: want an event's seq", s), http.StatusBadRequest)
			return
		}
		since = n
	}
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		n, err := time.ParseDuration(s)
		if err != nil || n < 0 {
			http.Error(w, fmt.Sprintf("wait %q: want a duration such as 30s", s), http.StatusBadRequest)
			return
		}
		wait = min(n, eventWait)
	}
	ans := eventsAnswer{Events: []Event{}}
	if d.events != nil {
		events, last := d.events.wait(r.Context(), since, wait)
		ans.Last = last
		if events != nil {
			ans.Events = events
		}
	}
	writeJSON(w, ans)
}

// cmdEvents implements `lvsha events`.
func cmdEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("events", "lvsha events [-s SOCKET | -c FILE] [-f] [-o text|json]",
		fmt.Sprintf("Print the daemon's recent state changes, oldest first (it keeps the last %d): real servers up and down\n"+
			"with the probe's result, drains by hand, quorum, kernel sync errors, reloads, VRRP transitions.\n"+
			"-f then prints each new one until interrupted. -o json writes one JSON object a line.", eventsKept), stderr)
	client := addClientFlags(fs, "text", "json")
	follow := fs.Bool("f", false, "follow: wait for new events and print them until interrupted")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2}
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	socket, err := client.socket()
	if err != nil {
		return err
	}
	write := writeEventText
	if *client.out == "json" {
		write = writeEventJSON
	}
	var since uint64
	wait := time.Duration(0)
	for {
		var ans eventsAnswer
		q := url.Values{"since": {strconv.FormatUint(since, 10)}}
		if wait > 0 {
			q.Set("wait", wait.String())
		}
		if err := controlCall(ctx, socket, http.MethodGet, "/events?"+q.Encode(), nil, &ans); err != nil {
			if *follow && ctx.Err() != nil {
				return nil // interrupted: how -f ends
			}
			return err
		}
		if ans.Last < since {
			// The daemon restarted: its events start again from 1.
			since = 0
			continue
		}
		for _, e := range ans.Events {
			if err := write(stdout, e); err != nil {
				return err
			}
			since = e.Seq
		}
		if !*follow {
			return nil
		}
		wait = eventWait
	}
}

func writeEventText(w io.Writer, e Event) error {
	subject := e.Subject
	if subject == "" {
		subject = "-"
	}
	_, err := fmt.Fprintf(w, "%s  %-15s  %s  %s\n", e.Time.Local().Format("2006-01-02T15:04:05.000Z07:00"), e.Kind, subject, e.Detail)
	return err
}

func writeEventJSON(w io.Writer, e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
