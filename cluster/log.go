package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// gossipLog is memberlist's logger: memberlist logs through a *log.Logger
// with a "[LEVEL] memberlist: " prefix in each line, and gossipLog writes
// each line to l at that level, so its lines join lvsha's structured log
// (MetalLB's speakerlist/log.go does the same for go-kit).
//
// memberlist logs one error line for every packet it refuses (a wrong
// label, one that does not decrypt with the key, a bad checksum, one it
// cannot decode) and for every stream it cannot read: anyone who can
// reach the gossip port could fill the log and the disk with them (issue
// #20: 10,000 packets a second of garbage made as many lines). So
// warnings and errors are counted by kind (Node.GossipErrors, and the metric
// lvsha_cluster_gossip_errors_total), and of each kind the first
// logBurst lines of a logWindow are logged; the rest are summed up in
// one line when the window ends, with the last of them as a sample.
// Information and debug lines come from the members' own events and pass
// as they are.
type gossipLog struct {
	l      *slog.Logger
	window time.Duration
	burst  int

	mu    sync.Mutex
	kinds map[string]*logKind
}

// logKind is one kind of line's window and count.
type logKind struct {
	total      uint64
	start      time.Time // of the current window
	logged     int       // lines logged in it
	suppressed int       // lines not logged in it
	sample     string    // the last of them
	level      slog.Level
	timer      *time.Timer // the summary at the window's end
}

// Defaults of the rate limit: a few lines of each kind every ten seconds
// say what is wrong; more say nothing new.
const (
	logWindow = 10 * time.Second
	logBurst  = 5
)

func newGossipLog(l *slog.Logger) *gossipLog {
	return &gossipLog{l: l, window: logWindow, burst: logBurst, kinds: map[string]*logKind{}}
}

// std is the *log.Logger memberlist takes.
func (g *gossipLog) std() *log.Logger { return log.New(g, "", 0) }

func (g *gossipLog) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		level, msg := parseMemberlistLine(strings.TrimRight(string(line), "\n"))
		if msg == "" {
			continue
		}
		if level < slog.LevelWarn || g.admit(level, msg, time.Now()) {
			g.l.Log(context.Background(), level, msg, "component", "memberlist")
		}
	}
	return len(p), nil
}

// admit counts a warning or error line and says whether to log it.
func (g *gossipLog) admit(level slog.Level, msg string, now time.Time) bool {
	name := lineKind(msg)
	g.mu.Lock()
	defer g.mu.Unlock()
	k := g.kinds[name]
	if k == nil {
		k = &logKind{}
		g.kinds[name] = k
	}
	k.total++
	if now.Sub(k.start) >= g.window && k.timer == nil {
		k.start, k.logged = now, 0
	}
	if k.logged < g.burst {
		k.logged++
		return true
	}
	k.suppressed++
	k.sample, k.level = msg, max(k.level, level)
	if k.timer == nil {
		k.timer = time.AfterFunc(k.start.Add(g.window).Sub(now), func() { g.summary(name) })
	}
	return false
}

// summary logs how many lines of a kind its window suppressed, and
// starts the next window.
func (g *gossipLog) summary(name string) {
	g.mu.Lock()
	k := g.kinds[name]
	n, sample, level := k.suppressed, k.sample, k.level
	k.suppressed, k.sample, k.level, k.timer = 0, "", 0, nil
	k.start, k.logged = time.Now(), 0
	g.mu.Unlock()
	g.l.Log(context.Background(), level, "memberlist lines not logged (rate limit)", "component", "memberlist",
		"kind", name, "lines", n, "within", g.window.String(), "last", sample)
}

// stop cancels pending summaries (the node is closing).
func (g *gossipLog) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range g.kinds {
		if k.timer != nil {
			k.timer.Stop()
			k.timer = nil
		}
	}
}

// counts is memberlist's warnings and errors by kind, every kind of
// GossipErrorKinds present.
func (g *gossipLog) counts() map[string]uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]uint64, len(GossipErrorKinds))
	for _, name := range GossipErrorKinds {
		out[name] = 0
	}
	for name, k := range g.kinds {
		out[name] = k.total
	}
	return out
}

// GossipErrorKinds are the kinds lineKind sorts memberlist's warnings and
// errors into.
var GossipErrorKinds = []string{"label", "decrypt", "checksum", "stream", "decode", "other"}

// lineKind sorts a warning or error by what it says; the kinds are a
// fixed set, whatever a sender puts in the packets the lines quote.
//
//	label:    a packet or stream without lvsha's label, or with another
//	decrypt:  not encrypted with our key (or not encrypted at all)
//	checksum: a bad CRC
//	stream:   a TCP stream that could not be read
//	decode:   a message that does not decode, or of an unknown type
//	other:    everything else (failed probes, push/pulls, sends)
func lineKind(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "label"):
		return "label"
	case strings.Contains(m, "crypt"):
		return "decrypt"
	case strings.Contains(m, "checksum"):
		return "checksum"
	case strings.Contains(m, "failed to receive") || strings.Contains(m, "remote state"):
		return "stream"
	case strings.Contains(m, "decode") || strings.Contains(m, "not supported") || strings.Contains(m, "msgtype") ||
		strings.Contains(m, "message type") || strings.Contains(m, "truncated") || strings.Contains(m, "decompress"):
		return "decode"
	}
	return "other"
}

// parseMemberlistLine splits "[WARN] memberlist: msg" into its level and
// message. A line without a known level is logged at info: dropping it
// could hide the one line that explains a failure.
func parseMemberlistLine(s string) (slog.Level, string) {
	level := slog.LevelInfo
	if rest, ok := strings.CutPrefix(s, "["); ok {
		if tag, msg, ok := strings.Cut(rest, "] "); ok {
			switch tag {
			case "DEBUG", "TRACE":
				level, s = slog.LevelDebug, msg
			case "INFO":
				level, s = slog.LevelInfo, msg
			case "WARN":
				level, s = slog.LevelWarn, msg
			case "ERR", "ERROR":
				level, s = slog.LevelError, msg
			}
		}
	}
	return level, strings.TrimPrefix(s, "memberlist: ")
}
