package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// logWatch keeps the lines a daemon writes to stdout and stderr, each
// with the time this process read it, so a bench can time the line that
// says an operation is done.
type logWatch struct {
	mu    sync.Mutex
	lines []string
	at    []time.Time
	more  chan struct{} // closed and replaced on every new line
	done  chan struct{} // closed at EOF
}

// watchOutput points cmd's stdout and stderr at a pipe that a logWatch
// reads; call started after cmd.Start.
func watchOutput(cmd *exec.Cmd) (w *logWatch, started func()) {
	w = &logWatch{more: make(chan struct{}), done: make(chan struct{})}
	r, pw, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	return w, func() {
		pw.Close() // the child has its own
		go func() {
			defer close(w.done)
			defer r.Close()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				now := time.Now()
				w.mu.Lock()
				w.lines, w.at = append(w.lines, sc.Text()), append(w.at, now)
				close(w.more)
				w.more = make(chan struct{})
				w.mu.Unlock()
			}
			io.Copy(io.Discard, r)
		}()
	}
}

// mark is the number of lines read so far: wait(mark, ...) looks at the
// lines after it.
func (w *logWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// wait returns the time the first line after from containing substr was
// read and its index, or an error when none comes within limit or the
// output ends.
func (w *logWatch) wait(from int, substr string, limit time.Duration) (time.Time, int, error) {
	deadline := time.After(limit)
	for i := from; ; {
		w.mu.Lock()
		for ; i < len(w.lines); i++ {
			if strings.Contains(w.lines[i], substr) {
				at := w.at[i]
				w.mu.Unlock()
				return at, i, nil
			}
		}
		more := w.more
		w.mu.Unlock()
		select {
		case <-more:
		case <-w.done:
			w.mu.Lock()
			n := len(w.lines)
			w.mu.Unlock()
			if i == n {
				return time.Time{}, 0, fmt.Errorf("output ended before %q", substr)
			}
		case <-deadline:
			return time.Time{}, 0, fmt.Errorf("no %q within %v", substr, limit)
		}
	}
}

// tail is the last n lines read.
func (w *logWatch) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines[max(0, len(w.lines)-n):], "\n")
}

// ipvsWriteFuncs are the kernel functions an IPVS write goes through:
// the entry points of the two interfaces (generic netlink commands and
// the older setsockopt), then the table operations they call, by which
// writes are broken down. ip_vs_del_service is inlined into its callers
// in Debian's 6.12 kernel; a function the kernel cannot trace is left out
// of the breakdown, never out of the entry points.
var (
	ipvsWriteEntries = []string{"ip_vs_genl_set_cmd", "do_ip_vs_set_ctl"}
	ipvsWriteOps     = []string{"ip_vs_add_service", "ip_vs_edit_service", "ip_vs_del_service",
		"ip_vs_add_dest", "ip_vs_edit_dest", "ip_vs_del_dest", "ip_vs_flush", "ip_vs_zero_all"}
)

// ipvsWriteTrace counts IPVS writes on the kernel's side with ftrace's
// function tracer, filtered to ipvsWriteEntries and ipvsWriteOps: every
// command that changes IPVS state (a table entry, the timeouts, a sync
// daemon) enters the kernel through one of the two entry points, whoever
// sends it and however it is encoded, and reads (ipvsadm -Sn, a
// daemon's resync) never do. Tracing is global, not per namespace: a
// bench counts only while one daemon runs. The code is patched once,
// when the tracer is set up; start and stop only switch the ring buffer.
type ipvsWriteTrace struct {
	dir   string
	funcs []string // those the kernel accepted in the filter
}

// ipvsWrites is what the kernel's IPVS write functions saw in a window.
type ipvsWrites struct {
	Commands int            // calls of the entry points: IPVS set commands received
	Ops      map[string]int // calls of each table operation traced
	Tasks    map[string]int // commands by the sending thread's name (comm)
}

func (w ipvsWrites) String() string {
	s := fmt.Sprintf("%d IPVS set commands", w.Commands)
	if len(w.Ops) > 0 {
		var ops []string
		for _, f := range slices.Sorted(maps.Keys(w.Ops)) {
			ops = append(ops, fmt.Sprintf("%s %d", strings.TrimPrefix(f, "ip_vs_"), w.Ops[f]))
		}
		s += " (" + strings.Join(ops, ", ") + ")"
	}
	if len(w.Tasks) > 0 {
		var ts []string
		for _, t := range slices.Sorted(maps.Keys(w.Tasks)) {
			ts = append(ts, fmt.Sprintf("%s %d", t, w.Tasks[t]))
		}
		s += " from " + strings.Join(ts, ", ")
	}
	return s
}

// traceIPVSWrites sets the function tracer up (tracefs mounted if it is
// not), switched off; it is put back to nop at cleanup.
func traceIPVSWrites(t testing.TB) *ipvsWriteTrace {
	t.Helper()
	dir := "/sys/kernel/tracing"
	if _, err := os.Stat(filepath.Join(dir, "trace")); err != nil {
		if err := unix.Mount("nodev", dir, "tracefs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			t.Fatalf("mount tracefs on %s: %v (the bench counts kernel writes with ftrace)", dir, err)
		}
	}
	tr := &ipvsWriteTrace{dir: dir}
	tr.write(t, "tracing_on", "0")
	tr.write(t, "current_tracer", "nop")
	tr.truncate(t, "set_ftrace_filter")
	for _, f := range append(slices.Clone(ipvsWriteEntries), ipvsWriteOps...) {
		// One name a write: the kernel refuses a write naming a function
		// it cannot trace, and the others must still go in.
		fd, err := os.OpenFile(filepath.Join(dir, "set_ftrace_filter"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fd.WriteString(f + "\n")
		if cerr := fd.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			tr.funcs = append(tr.funcs, f)
		}
	}
	if !slices.Contains(tr.funcs, ipvsWriteEntries[0]) {
		t.Fatalf("ftrace cannot trace %s (filter took %v): no kernel-side count of IPVS writes", ipvsWriteEntries[0], tr.funcs)
	}
	tr.write(t, "buffer_size_kb", "8192")
	tr.write(t, "current_tracer", "function")
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dir, "tracing_on"), []byte("0"), 0)
		os.WriteFile(filepath.Join(dir, "current_tracer"), []byte("nop"), 0)
		if f, err := os.OpenFile(filepath.Join(dir, "set_ftrace_filter"), os.O_WRONLY|os.O_TRUNC, 0); err == nil {
			f.Close()
		}
		os.WriteFile(filepath.Join(dir, "tracing_on"), []byte("1"), 0)
	})
	return tr
}

func (tr *ipvsWriteTrace) write(t testing.TB, file, v string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(tr.dir, file), []byte(v), 0); err != nil {
		t.Fatalf("ftrace: write %q to %s: %v", v, file, err)
	}
}

func (tr *ipvsWriteTrace) truncate(t testing.TB, file string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(tr.dir, file), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatalf("ftrace: clear %s: %v", file, err)
	}
	f.Close()
}

// start clears the buffer and starts recording.
func (tr *ipvsWriteTrace) start(t testing.TB) {
	t.Helper()
	tr.truncate(t, "trace")
	tr.write(t, "tracing_on", "1")
}

// traceLine is one function tracer line:
// "      lvsha-1234    [001] ..... 123.456789: ip_vs_add_dest <-ip_vs_genl_set_cmd"
var traceLine = regexp.MustCompile(`^\s*(.+)-(\d+)\s+\[\d+\].*\s[\d.]+: ([\w.]+) <-`)

// stop stops recording and counts what was recorded. A ring buffer that
// overflowed is an error: the count would be short.
func (tr *ipvsWriteTrace) stop(t testing.TB) ipvsWrites {
	t.Helper()
	tr.write(t, "tracing_on", "0")
	data, err := os.ReadFile(filepath.Join(tr.dir, "trace"))
	if err != nil {
		t.Fatalf("ftrace: read trace: %v", err)
	}
	w := ipvsWrites{Ops: map[string]int{}, Tasks: map[string]int{}}
	for _, l := range strings.Split(string(data), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		m := traceLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("ftrace: unparsed trace line %q", l)
			continue
		}
		if slices.Contains(ipvsWriteEntries, m[3]) {
			w.Commands++
			w.Tasks[strings.TrimSpace(m[1])]++
		} else {
			w.Ops[m[3]]++
		}
	}
	cpus, _ := filepath.Glob(filepath.Join(tr.dir, "per_cpu", "cpu*", "stats"))
	for _, f := range cpus {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "overrun: "); ok {
				if n, _ := strconv.Atoi(strings.TrimSpace(v)); n > 0 {
					t.Errorf("ftrace: %s: %d events lost, the write count is short", f, n)
				}
			}
		}
	}
	return w
}
