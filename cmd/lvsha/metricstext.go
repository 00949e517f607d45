package main

import (
	"bufio"
	"compress/gzip"
	"io"
	"log"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// The text path of /metrics. At 10,000 real servers a scrape is about
// 260,000 series, nearly all of them the real servers'. Through
// client_golang each is a const metric whose labels are checked, turned
// into a dto.Metric, checked again for consistency, sorted and encoded:
// over a second of CPU per scrape. Here the registry gathers only the
// daemon's and the VRRP instances' few families (and Go's and the
// process's), and the virtual and real servers' families are written
// straight from the snapshot in the text exposition format, in the
// place and order the registry would give them, so the bytes are the
// same (TestMetricsTextPathEqualsRegistry holds the two paths to that).

// metricsEndpoint serves /metrics: the text exposition (what Prometheus
// gets unless it asks for protobuf) by the text path, any other format
// through promhttp and the whole collector.
type metricsEndpoint struct {
	c        *metricsCollector
	base     prometheus.Gatherer // the Go runtime's and process's collectors
	errorLog *log.Logger
	// generic serves the formats the text path does not write.
	generic http.Handler
}

func newMetricsEndpoint(lg *slog.Logger, c *metricsCollector, base prometheus.Gatherer) *metricsEndpoint {
	errorLog := slog.NewLogLogger(lg.Handler(), slog.LevelWarn)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return &metricsEndpoint{
		c: c, base: base, errorLog: errorLog,
		generic: promhttp.HandlerFor(prometheus.Gatherers{base, reg}, promhttp.HandlerOpts{
			// A scrape that fails in part (the kernel table unreadable)
			// still serves the rest, and says why in the log.
			ErrorHandling: promhttp.ContinueOnError,
			ErrorLog:      errorLog,
		}),
	}
}

func (e *metricsEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format := expfmt.Negotiate(r.Header)
	if format.FormatType() != expfmt.TypeTextPlain {
		e.generic.ServeHTTP(w, r)
		return
	}
	snap := e.c.snapshot()
	// A registry per scrape, since its collector holds the snapshot the
	// real servers' families are written from: one reading of the
	// daemon for the whole scrape.
	reg := prometheus.NewRegistry()
	reg.MustRegister(daemonCollector{c: e.c, snap: snap})
	mfs, err := prometheus.Gatherers{e.base, reg}.Gather()
	if err != nil {
		// As promhttp's ContinueOnError: serve what was gathered.
		e.errorLog.Println("error gathering metrics:", err)
		if len(mfs) == 0 {
			http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", string(format))
	out := io.Writer(w)
	if acceptsGzip(r) {
		// The fastest level: at 10,000 real servers (32 MB) gzip's
		// default took 400 ms, BestSpeed 60 ms for 8% more bytes.
		gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // cannot fail: a valid level
		defer gz.Close()
		w.Header().Set("Content-Encoding", "gzip")
		out = gz
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	err = e.c.writeText(bw, expfmt.NewEncoder(bw, format), mfs, snap)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// The client went away; the answer is begun, so no error status.
		e.errorLog.Println("error encoding and sending metric family:", err)
	}
}

// acceptsGzip is whether r's Accept-Encoding prefers gzip to identity,
// as promhttp negotiates: the highest q wins, identity on a tie, and
// neither at q=0.
func acceptsGzip(r *http.Request) bool {
	best, bestQ := "identity", -1.0
	specs := acceptEncodings(r.Header.Values("Accept-Encoding"))
	for _, offer := range []string{"identity", "gzip"} {
		for _, s := range specs {
			if s.q > bestQ && (s.value == "*" || s.value == offer) {
				best, bestQ = offer, s.q
			}
		}
	}
	return best == "gzip" && bestQ > 0
}

type encodingSpec struct {
	value string
	q     float64
}

// acceptEncodings parses Accept-Encoding header values: codings with an
// optional q (1 by default); one with a q that does not parse is left
// out.
func acceptEncodings(values []string) []encodingSpec {
	var specs []encodingSpec
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			value, params, _ := strings.Cut(part, ";")
			s := encodingSpec{value: strings.ToLower(strings.TrimSpace(value)), q: 1}
			if s.value == "" {
				continue
			}
			ok := true
			for p := range strings.SplitSeq(params, ";") {
				k, qv, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "q") {
					q, err := strconv.ParseFloat(strings.TrimSpace(qv), 64)
					s.q, ok = q, err == nil && q >= 0 && q <= 1
				}
			}
			if ok {
				specs = append(specs, s)
			}
		}
	}
	return specs
}

// textFamily is how the text path writes one family.
type textFamily struct {
	name string
	// write writes the family of snap's rows; nothing when it has no
	// series, as the registry leaves out a family without metrics.
	write func(t *textWriter, snap *metricsSnapshot)
}

// initText prepares the text path: the families' writers sorted by
// name, the causes' order and the buckets' le values.
func (c *metricsCollector) initText() {
	c.text = nil
	for _, f := range c.vs {
		c.text = append(c.text, textFamily{name: f.name, write: func(t *textWriter, snap *metricsSnapshot) {
			writeRows(t, f, snap.vs, func(v *vsRow) []byte { return v.text })
		}})
	}
	for _, f := range c.rs {
		c.text = append(c.text, textFamily{name: f.name, write: func(t *textWriter, snap *metricsSnapshot) {
			writeRows(t, f, snap.rs, func(r *rsRow) []byte { return r.text })
		}})
	}
	c.text = append(c.text,
		textFamily{name: c.rsProbeDuration.name, write: c.writeProbeDuration},
		textFamily{name: c.rsFailures.name, write: c.writeFailures})
	slices.SortFunc(c.text, func(a, b textFamily) int { return strings.Compare(a.name, b.name) })

	c.causeOrder = make([]int, len(c.stats.causes))
	for i := range c.causeOrder {
		c.causeOrder[i] = i
	}
	slices.SortFunc(c.causeOrder, func(a, b int) int { return strings.Compare(c.stats.causes[a], c.stats.causes[b]) })
	c.le = make([][]byte, len(c.stats.bounds))
	for i, le := range c.stats.bounds {
		c.le[i] = appendFloat(nil, le)
	}
}

// writeText writes mfs, sorted by name as the registry gathers them,
// with snap's virtual and real server families in their place by name
// among them.
func (c *metricsCollector) writeText(bw *bufio.Writer, enc expfmt.Encoder, mfs []*dto.MetricFamily, snap *metricsSnapshot) error {
	t := &textWriter{w: bw}
	next := 0
	for _, mf := range mfs {
		for ; next < len(c.text) && c.text[next].name < mf.GetName(); next++ {
			c.text[next].write(t, snap)
		}
		if t.err != nil {
			return t.err
		}
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	for ; next < len(c.text); next++ {
		c.text[next].write(t, snap)
	}
	return t.err
}

// writeRows writes a family of one sample per row.
func writeRows[R any](t *textWriter, f seriesFamily[R], rows []R, labels func(*R) []byte) {
	typ := "gauge"
	if f.typ == prometheus.CounterValue {
		typ = "counter"
	}
	header := false
	for i := range rows {
		v, ok := f.value(&rows[i])
		if !ok {
			continue
		}
		if !header {
			t.header(f.name, f.help, typ)
			header = true
		}
		t.sample(f.name, "", nil, labels(&rows[i]), nil, v)
	}
}

// writeProbeDuration writes the probe duration histograms of the real
// servers probed.
func (c *metricsCollector) writeProbeDuration(t *textWriter, snap *metricsSnapshot) {
	f := c.rsProbeDuration
	header := false
	for _, row := range snap.rs {
		pc := row.probe
		if pc == nil {
			continue
		}
		if !header {
			t.header(f.name, f.help, "histogram")
			header = true
		}
		var cum uint64
		for j, le := range c.le {
			cum += pc.in[j]
			t.sample(f.name, "_bucket", nil, row.text, le, float64(cum))
		}
		t.sample(f.name, "_bucket", nil, row.text, []byte("+Inf"), float64(pc.count))
		t.sample(f.name, "_sum", nil, row.text, nil, pc.sum)
		t.sample(f.name, "_count", nil, row.text, nil, float64(pc.count))
	}
}

// writeFailures writes the probe failures by cause of the real servers
// probed: every cause, zero or not, so that no series appears at a real
// server's first failure of a cause. The label cause sorts first, so the
// series go cause by cause.
func (c *metricsCollector) writeFailures(t *textWriter, snap *metricsSnapshot) {
	f := c.rsFailures
	header := false
	var cause []byte
	for _, ci := range c.causeOrder {
		cause = appendLabel(cause[:0], "cause", c.stats.causes[ci])
		cause = append(cause, ',')
		for _, row := range snap.rs {
			if row.probe == nil {
				continue
			}
			if !header {
				t.header(f.name, f.help, "counter")
				header = true
			}
			t.sample(f.name, "", cause, row.text, nil, float64(row.probe.failures[ci]))
		}
	}
}

// textWriter writes lines of the text exposition, each formatted in the
// bufio.Writer's free space (no copy when it fits); the first error
// stops it.
type textWriter struct {
	w   *bufio.Writer
	err error
}

func (t *textWriter) write(b []byte) {
	if t.err == nil {
		_, t.err = t.w.Write(b)
	}
}

// header writes a family's HELP and TYPE lines.
func (t *textWriter) header(name, help, typ string) {
	b := t.w.AvailableBuffer()
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = appendEscaped(b, help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	b = append(b, '\n')
	t.write(b)
}

// sample writes name+suffix{pre labels,le="le"} v: pre is labels sorting
// before the row's (with their comma), le a histogram bucket's bound.
func (t *textWriter) sample(name, suffix string, pre, labels, le []byte, v float64) {
	b := t.w.AvailableBuffer()
	b = append(b, name...)
	b = append(b, suffix...)
	b = append(b, '{')
	b = append(b, pre...)
	b = append(b, labels...)
	if le != nil {
		b = append(b, `,le="`...)
		b = append(b, le...)
		b = append(b, '"')
	}
	b = append(b, "} "...)
	b = appendFloat(b, v)
	b = append(b, '\n')
	t.write(b)
}

// appendLabel appends name="value", value escaped.
func appendLabel(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, `="`...)
	b = appendEscaped(b, value, true)
	return append(b, '"')
}

// appendEscaped escapes s as the text format does: backslash and newline,
// and double quotes in a label value.
func appendEscaped(b []byte, s string, quoted bool) []byte {
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '\\':
			b = append(b, `\\`...)
		case ch == '\n':
			b = append(b, `\n`...)
		case ch == '"' && quoted:
			b = append(b, `\"`...)
		default:
			b = append(b, ch)
		}
	}
	return b
}

// appendFloat formats v as expfmt does: the shortest 'g', so 1e6 is
// "1e+06", and NaN, +Inf and -Inf so named. Most values are small whole
// numbers (counts, flags, weights), which 'g' writes as integers: those
// take strconv's integer path, a third of the time.
func appendFloat(b []byte, v float64) []byte {
	if v >= 0 && v < 1e6 && !math.Signbit(v) {
		if u := uint64(v); float64(u) == v {
			return strconv.AppendUint(b, u, 10)
		}
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
