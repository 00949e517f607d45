package instance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// runHolder is a fakeHolder whose Run serves until its context ends or
// the test fails it through fail; it records each Run's start and end.
type runHolder struct {
	fakeHolder
	fail chan error
	// starts are the times Run was called.
	mu     sync.Mutex
	starts []time.Time
	active int // Runs not returned
}

func newRunHolder(buffered int) *runHolder { return &runHolder{fail: make(chan error, buffered)} }

func (h *runHolder) Run(ctx context.Context) error {
	h.mu.Lock()
	h.starts = append(h.starts, time.Now())
	h.active++
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.active--
		h.mu.Unlock()
	}()
	select {
	case err := <-h.fail:
		return err
	case <-ctx.Done():
		return nil
	}
}

func (h *runHolder) runs() ([]time.Time, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.starts), h.active
}

// wireConn is an advert socket: Read returns what the test queues on in,
// blocking until then or until Close; every advert written is recorded
// by its priority.
type wireConn struct {
	in     chan transport.Datagram
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	sent   []uint8
	// reading counts Reads not returned.
	reading int
}

func newWireConn() *wireConn {
	return &wireConn{in: make(chan transport.Datagram), closed: make(chan struct{})}
}

func (c *wireConn) Read(buf []byte) (transport.Datagram, error) {
	c.mu.Lock()
	c.reading++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reading--
		c.mu.Unlock()
	}()
	select {
	case d := <-c.in:
		d.Payload = append(buf[:0], d.Payload...)
		return d, nil
	case <-c.closed:
		return transport.Datagram{}, errors.New("use of closed connection")
	}
}

func (c *wireConn) Destinations() []netip.Addr { return []netip.Addr{group} }

func (c *wireConn) WriteTo(b []byte, dst netip.Addr) error {
	adv, reason := vrrp.Parse(b, netip.MustParseAddr("10.0.0.2"), dst, 255)
	if reason != vrrp.DropNone {
		return errors.New(reason.String())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, adv.Priority)
	return nil
}

func (c *wireConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *wireConn) priorities() []uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent)
}

func (c *wireConn) readers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reading
}

var group = netip.MustParseAddr("224.0.0.18")

// queueConn is a wireConn as a shared link's endpoint is: the instance
// takes what the test queues on in from Queue, and must not Read; fail
// ends reading with an error.
type queueConn struct {
	*wireConn
	failed chan struct{}
	err    error
}

func newQueueConn() *queueConn {
	return &queueConn{wireConn: newWireConn(), failed: make(chan struct{})}
}

// Drain has nothing to hand on: the test queues on in directly.
func (c *queueConn) Drain() {}

func (c *queueConn) Queue() <-chan transport.Datagram { return c.in }
func (c *queueConn) Failed() <-chan struct{}          { return c.failed }

func (c *queueConn) Err() error {
	select {
	case <-c.failed:
		return c.err
	default:
		return nil
	}
}

func (c *queueConn) fail(err error) {
	c.err = err
	close(c.failed)
}

// handlerConn is a queueConn as a shared link's endpoint with a handler
// is (transport.Endpoint.SetHandler): what the test queues on in is
// handed to the handler on the "reader's" goroutine (a pump of the
// test's), or queued while none is set.
type handlerConn struct {
	*queueConn
	q       chan transport.Datagram
	hmu     sync.Mutex
	handler func(transport.Datagram)
}

func newHandlerConn() *handlerConn {
	c := &handlerConn{queueConn: newQueueConn(), q: make(chan transport.Datagram, 16)}
	go func() {
		for {
			select {
			case d := <-c.in:
				c.deliver(d)
			case <-c.closed:
				return
			}
		}
	}()
	return c
}

func (c *handlerConn) deliver(d transport.Datagram) {
	c.hmu.Lock()
	h := c.handler
	c.hmu.Unlock()
	if h != nil {
		h(d)
		return
	}
	c.q <- d
}

func (c *handlerConn) SetHandler(f func(transport.Datagram)) {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	c.handler = f
}

func (c *handlerConn) Queue() <-chan transport.Datagram { return c.q }

// connKinds are the wires an instance reads: a shared link's endpoint,
// whose queue its loop takes adverts from; one whose reader steps the
// adverts itself through the instance's handler; and a socket of its own
// (transport.Conn), which a goroutine of the instance's reads. Each
// returns the conn and the wireConn the test feeds and watches.
var connKinds = []struct {
	name string
	new  func() (AdvertConn, *wireConn)
}{
	{"queued", func() (AdvertConn, *wireConn) { c := newQueueConn(); return c, c.wireConn }},
	{"handler", func() (AdvertConn, *wireConn) { c := newHandlerConn(); return c, c.wireConn }},
	{"read", func() (AdvertConn, *wireConn) { c := newWireConn(); return c, c }},
}

// startRun runs i until the returned stop is called, which waits for Run
// and returns its error. A test that ends before (t.Fatal) stops it at
// cleanup, inside the bubble: otherwise synctest would panic on the
// goroutines left blocked, hiding the failure and ending the whole run.
func startRun(t *testing.T, i *Instance) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- i.Run(ctx) }()
	stop = sync.OnceValue(func() error {
		cancel()
		return <-errc
	})
	t.Cleanup(func() { stop() })
	return stop
}

// A VIP holder whose Run fails puts the instance in fault (a master
// resigns and releases its VIPs: it must not stay master unreachable),
// is counted and shown in Status, and is run again after a backoff; once
// it runs again its fault clears. The fault is the OR of the holder's and
// tracking's: whichever clears first, the instance stays in fault until
// the other clears too.
func TestHolderFault(t *testing.T) {
	tests := []struct {
		name string
		// trackClearsFirst: tracking's fault (detected before the holder
		// fails) clears before the holder recovers; otherwise after.
		trackClearsFirst bool
	}{
		{"tracking clears first", true},
		{"holder recovers first", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newRunHolder(0)
				conn := newQueueConn()
				i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), conn, h)
				if err != nil {
					t.Fatal(err)
				}
				stop := startRun(t, i)
				state := func(want string) {
					t.Helper()
					synctest.Wait()
					if got := i.Status().State; got != want {
						t.Fatalf("state %s, want %s", got, want)
					}
				}
				// Alone on the link: master after Master_Down_Interval.
				time.Sleep(time.Second)
				state("MASTER")

				i.Send(context.Background(), vrrp.FaultDetected{})
				state("FAULT")
				calls := len(h.got())
				h.fail <- errors.New("read neighbour solicitations: boom")
				synctest.Wait()
				s := i.Status()
				if !s.HolderFault || s.HolderFailures != 1 || !strings.Contains(s.HolderError, "boom") {
					t.Errorf("status after the holder failed: fault %v, failures %d, error %q; want true, 1, boom",
						s.HolderFault, s.HolderFailures, s.HolderError)
				}
				if got := h.got()[calls:]; len(got) != 0 {
					t.Errorf("a second fault source acted on the VIPs: %q", got)
				}

				if tt.trackClearsFirst {
					i.Send(context.Background(), vrrp.FaultCleared{})
					// Tracking's FaultCleared must not clear the holder's
					// fault: still in fault until the holder runs again
					// (retried after holderRetryMin, running after
					// holderSettle more).
					time.Sleep(holderRetryMin + holderSettle - 10*time.Millisecond)
					state("FAULT")
					time.Sleep(20 * time.Millisecond)
					state("BACKUP")
				} else {
					time.Sleep(holderRetryMin + holderSettle + 10*time.Millisecond)
					// The holder runs again, but tracking still says fault.
					if i.Status().HolderFault {
						t.Error("holder fault not cleared after the holder ran again")
					}
					state("FAULT")
					time.Sleep(time.Second)
					state("FAULT")
					i.Send(context.Background(), vrrp.FaultCleared{})
					state("BACKUP")
				}
				time.Sleep(time.Second)
				state("MASTER")
				if s := i.Status(); s.HolderFault || s.HolderFailures != 1 {
					t.Errorf("status after recovery: fault %v, failures %d; want false, 1", s.HolderFault, s.HolderFailures)
				}
				if err := stop(); err != nil {
					t.Errorf("Run: %v", err)
				}
			})
		})
	}
}

// A master whose holder fails resigns (priority 0) and releases its VIPs.
func TestHolderFaultReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newRunHolder(0)
		conn := newQueueConn()
		i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), conn, h)
		if err != nil {
			t.Fatal(err)
		}
		stop := startRun(t, i)
		time.Sleep(time.Second)
		synctest.Wait()
		if got := i.Status().State; got != "MASTER" {
			t.Fatalf("state %s, want MASTER", got)
		}
		calls, sent := len(h.got()), len(conn.priorities())
		h.fail <- errors.New("boom")
		synctest.Wait()
		if got := i.Status().State; got != "FAULT" {
			t.Errorf("state %s after the holder failed, want FAULT", got)
		}
		if got := h.got()[calls:]; !slices.Equal(got, []string{"release"}) {
			t.Errorf("holder calls after its failure: %q, want a release", got)
		}
		if got := conn.priorities()[sent:]; !slices.Equal(got, []uint8{0}) {
			t.Errorf("adverts after the holder's failure: priorities %v, want one resignation (0)", got)
		}
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// A holder that keeps failing is retried with a doubling backoff up to
// holderRetryMax, every failure counted, the instance in fault all along.
func TestHolderRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newRunHolder(100)
		for range 100 {
			h.fail <- errors.New("no socket")
		}
		i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), newQueueConn(), h)
		if err != nil {
			t.Fatal(err)
		}
		stop := startRun(t, i)
		time.Sleep(60 * time.Second)
		synctest.Wait()
		starts, _ := h.runs()
		var gaps []time.Duration
		for n := 1; n < len(starts); n++ {
			gaps = append(gaps, starts[n].Sub(starts[n-1]))
		}
		ms := time.Millisecond
		want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 10 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second}
		if !slices.Equal(gaps, want) {
			t.Errorf("gaps between the holder's runs: %v, want %v", gaps, want)
		}
		s := i.Status()
		if s.State != "FAULT" || !s.HolderFault || s.HolderFailures != len(starts) {
			t.Errorf("status: %s, holder fault %v, %d failures; want FAULT, true, %d", s.State, s.HolderFault, s.HolderFailures, len(starts))
		}
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// Run returns only when every goroutine it started has: the holder's Run
// and the advert reader included, even a reader with adverts still
// coming and nobody left to take them (it once blocked forever on its
// send); synctest fails the test if any goroutine is left blocked. A
// shared link's endpoint is never Read: its queue goes straight to the
// instance's loop, with no reading goroutine.
func TestRunJoinsGoroutines(t *testing.T) {
	for _, kind := range connKinds {
		t.Run(kind.name, func(t *testing.T) { synctest.Test(t, func(t *testing.T) { testRunJoinsGoroutines(t, kind.new) }) })
	}
}

func testRunJoinsGoroutines(t *testing.T, newConn func() (AdvertConn, *wireConn)) {
	h := newRunHolder(0)
	c, conn := newConn()
	_, queued := c.(queuedConn)
	i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), c, h)
	if err != nil {
		t.Fatal(err)
	}
	// A higher-priority master advertises every 10ms, more than the
	// reader's queue holds once the instance stops taking them.
	master := netip.MustParseAddr("10.0.0.1")
	mcfg := i.mcfg
	b, err := vrrp.Marshal(mcfg.Advert(200), master, group)
	if err != nil {
		t.Fatal(err)
	}
	peerStop := make(chan struct{})
	peerDone := make(chan struct{})
	go func() {
		defer close(peerDone)
		for {
			select {
			case conn.in <- transport.Datagram{Payload: b, Src: master, Dst: group, HopLimit: 255}:
			case <-peerStop:
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	stop := startRun(t, i)
	time.Sleep(time.Second)
	synctest.Wait()
	if got := i.Status().State; got != "BACKUP" {
		t.Errorf("state %s beside a priority-200 master, want BACKUP", got)
	}
	if n := i.Status().AdvertsReceived; n < 90 {
		t.Errorf("%d adverts received in 1s from a master advertising every 10ms, want about 100", n)
	}
	if n, want := conn.readers(), map[bool]int{true: 0, false: 1}[queued]; n != want {
		t.Errorf("%d Reads running, want %d (queued: %v)", n, want, queued)
	}
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, active := h.runs(); active != 0 {
		t.Errorf("%d holder Runs still running after Run returned", active)
	}
	if n := conn.readers(); n != 0 {
		t.Errorf("%d Reads still running after Run returned", n)
	}
	// The peer goes on sending to a reader that is gone: nothing
	// takes its adverts now.
	time.Sleep(time.Second)
	close(peerStop)
	<-peerDone
}

// failConn fails its first Read.
type failConn struct{ wireConn }

func (c *failConn) Read([]byte) (transport.Datagram, error) {
	return transport.Datagram{}, errors.New("socket gone")
}

// A read error ends Run with that error, after everything it started:
// a socket of the instance's own that fails to read, or a shared link
// whose reading failed.
func TestRunReadError(t *testing.T) {
	kinds := []struct {
		name string
		conn func() AdvertConn
	}{
		{"queued", func() AdvertConn { c := newQueueConn(); c.fail(errors.New("socket gone")); return c }},
		{"read", func() AdvertConn { return &failConn{wireConn: *newWireConn()} }},
	}
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newRunHolder(0)
				i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), kind.conn(), h)
				if err != nil {
					t.Fatal(err)
				}
				err = i.Run(context.Background())
				if err == nil || !strings.Contains(err.Error(), "vrrp_instance vi: socket gone") {
					t.Errorf("Run: %v, want the read error", err)
				}
				if _, active := h.runs(); active != 0 {
					t.Errorf("%d holder Runs still running after Run returned", active)
				}
			})
		})
	}
}

// servedHolder serves as vip.Holder does (holderServer), with no
// goroutine at all: the test fails the current serve through failNow.
type servedHolder struct {
	fakeHolder
	mu     sync.Mutex
	serves []time.Time
	failed func(error) // the current serve's; nil when stopped
}

func (h *servedHolder) Serve(failed func(error)) (stop func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.serves = append(h.serves, time.Now())
	h.failed = failed
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.failed = nil
	}
}

func (h *servedHolder) failNow(err error) {
	h.mu.Lock()
	f := h.failed
	h.mu.Unlock()
	f(err)
}

func (h *servedHolder) state() (serves int, serving bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.serves), h.failed != nil
}

// A holder that serves without a goroutine (vip.Holder) costs the
// instance none either: an idle master on a shared link runs on Run's
// goroutine alone, its VIP work and holder supervision included. A
// failure faults it; the holder is served again after holderRetryMin,
// the fault clears after holderSettle, and the goroutine count is back
// where it was.
func TestRunServedHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &servedHolder{}
		i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), newQueueConn(), h)
		if err != nil {
			t.Fatal(err)
		}
		stop := startRun(t, i)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if s := i.Status(); s.State != "MASTER" {
			t.Fatalf("state %s, want MASTER", s.State)
		}
		if n := instanceGoroutines(); n != 1 {
			t.Errorf("an idle master runs %d goroutines, want 1 (Run's)", n)
		}
		h.failNow(errors.New("tun gone"))
		synctest.Wait()
		if s := i.Status(); s.State != "FAULT" || !s.HolderFault {
			t.Fatalf("after the failure: %s, holder fault %v; want FAULT, true", s.State, s.HolderFault)
		}
		if serves, serving := h.state(); serves != 1 || serving {
			t.Errorf("after the failure: %d serves, serving %v; want 1, left", serves, serving)
		}
		time.Sleep(holderRetryMin)
		synctest.Wait()
		if serves, serving := h.state(); serves != 2 || !serving {
			t.Errorf("after holderRetryMin: %d serves, serving %v; want 2, serving", serves, serving)
		}
		time.Sleep(holderSettle)
		synctest.Wait()
		if s := i.Status(); s.HolderFault {
			t.Error("holder fault not cleared after the serve settled")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if s := i.Status(); s.State != "MASTER" {
			t.Errorf("state %s after recovery, want MASTER", s.State)
		}
		if n := instanceGoroutines(); n != 1 {
			t.Errorf("after recovery %d goroutines, want 1", n)
		}
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, serving := h.state(); serving {
			t.Error("still served after Run returned")
		}
	})
}

// instanceGoroutines counts the goroutines running this package's code
// other than tests: those an instance started.
func instanceGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "vrrp/instance.(*") {
			n++
		}
	}
	return n
}
