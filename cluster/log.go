package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// newStdLogger gives memberlist, which logs through a *log.Logger with a
// "[LEVEL] memberlist: " prefix in each line, a logger that writes to l at
// that level, so its lines join lvsha's structured log (MetalLB's
// speakerlist/log.go does the same for go-kit).
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		level, msg := parseMemberlistLine(strings.TrimRight(string(line), "\n"))
		if msg != "" {
			w.l.Log(context.Background(), level, msg, "component", "memberlist")
		}
	}
	return len(p), nil
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
