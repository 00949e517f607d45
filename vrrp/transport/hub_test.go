package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/vrrp"
)

// fakeWire is a link's sockets: datagrams pushed on in are read, fail
// ends reading with an error, and what the link does is counted.
type fakeWire struct {
	name    string
	in      chan Datagram
	fail    chan error
	closed  chan struct{}
	joinErr error
	// mu orders receive and receiveNow as the real wire's lock does.
	mu sync.Mutex
	// unread are datagrams in the socket that the reader has not been
	// woken for (a stalled process): only receiveNow, or receive's next
	// pass, hands them on. Guarded by mu.
	unread []Datagram

	// lazy is as the Hub last set it (setLazy): receive then leaves in
	// unread every datagram but those of priority 0. Guarded by mu, as is
	// setLazies, every setLazy call in order.
	lazy      bool
	setLazies []bool

	// Set by the Hub's calls, which it makes with its lock held, and read
	// by the test once they are done.
	joins, leaves, closes int
	sent                  []netip.Addr
}

func (f *fakeWire) setLazy(lazy bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lazy = lazy
	f.setLazies = append(f.setLazies, lazy)
	return nil
}

func (f *fakeWire) lazyCalls() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.setLazies)
}

func (f *fakeWire) kernelDrops() uint64 { return 0 }

func (f *fakeWire) receive(each func(Datagram)) error {
	for {
		select {
		case d := <-f.in:
			f.mu.Lock()
			if f.lazy && (len(d.Payload) < 3 || d.Payload[2] != 0) {
				f.unread = append(f.unread, d)
			} else {
				f.handUnread(each)
				each(d)
			}
			f.mu.Unlock()
		case err := <-f.fail:
			return err
		case <-f.closed:
			return fmt.Errorf("read VRRP on %s: %w", f.name, net.ErrClosed)
		}
	}
}

// handUnread hands on what the test left unread; f.mu is held.
func (f *fakeWire) handUnread(each func(Datagram)) {
	for _, d := range f.unread {
		each(d)
	}
	f.unread = nil
}

func (f *fakeWire) receiveNow(each func(Datagram)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handUnread(each)
	for {
		select {
		case d := <-f.in:
			each(d)
		default:
			return nil
		}
	}
}

func (f *fakeWire) writeTo(payload, oob []byte, dst netip.Addr) error {
	f.sent = append(f.sent, dst)
	return nil
}

func (f *fakeWire) join() error {
	if f.joinErr != nil {
		return f.joinErr
	}
	f.joins++
	return nil
}

func (f *fakeWire) leave() error { f.leaves++; return nil }

func (f *fakeWire) close() error {
	f.closes++
	close(f.closed)
	return nil
}

// fakeHub is a Hub whose links are fakeWires, every one it opened kept in
// wires.
type fakeHub struct {
	*Hub
	wires   []*fakeWire
	joinErr error
}

func newFakeHub() *fakeHub {
	fh := &fakeHub{}
	fh.Hub = &Hub{links: map[linkKey]*link{}, open: func(ifi *net.Interface, v6 bool) (wire, error) {
		f := &fakeWire{name: ifi.Name, in: make(chan Datagram, 64), fail: make(chan error, 1), closed: make(chan struct{}), joinErr: fh.joinErr}
		fh.wires = append(fh.wires, f)
		return f, nil
	}}
	return fh
}

var (
	eth0 = &net.Interface{Index: 2, Name: "eth0"}
	eth1 = &net.Interface{Index: 3, Name: "eth1"}
	self = netip.MustParseAddr("10.0.0.1")
	peer = netip.MustParseAddr("10.0.0.2")
)

// advert is a valid VRRPv3 advert of VRID vrid from src, as the hub
// routes it; body, its address's last byte (the payload's last),
// tells adverts apart.
func advert(vrid uint8, src netip.Addr, body byte) Datagram {
	a := &vrrp.Advert{Version: 3, VRID: vrid, Priority: 100, Interval: time.Second,
		Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, body})}}
	b, err := vrrp.Marshal(a, src, Group(false))
	if err != nil {
		panic(err)
	}
	return Datagram{Payload: b, Src: src, Dst: Group(false), HopLimit: 255}
}

func listen(t *testing.T, h *fakeHub, cfg Config) *Endpoint {
	t.Helper()
	if cfg.Interface == nil {
		cfg.Interface = eth0
	}
	if !cfg.Source.IsValid() {
		cfg.Source = self
	}
	e, err := h.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// wireAdvert is a valid VRRPv3 advert of VRID vrid from src to dst, as
// the hub accepts it (vrrp.Parse checks the checksum over both).
func wireAdvert(t *testing.T, vrid uint8, src, dst netip.Addr) []byte {
	t.Helper()
	vip := netip.MustParseAddr("10.0.0.100")
	if src.Is6() {
		vip = netip.MustParseAddr("fd00::100")
	}
	b, err := vrrp.Marshal(&vrrp.Advert{Version: 3, VRID: vrid, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip}}, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ttl1 is d as if it had crossed a router.
func ttl1(d Datagram) Datagram { d.HopLimit = 1; return d }

// queued takes what e's queue holds without waiting.
func queued(e *Endpoint) []Datagram {
	var out []Datagram
	for {
		select {
		case d := <-e.queue:
			out = append(out, d)
		default:
			return out
		}
	}
}

// The link's reader hands each advert to the endpoint of its VRID and to
// no other; what no endpoint may have is counted on the link, what one
// endpoint filters out is counted on that endpoint, and neither disturbs
// the others.
func TestHubRoutes(t *testing.T) {
	stranger := netip.MustParseAddr("10.0.0.66")
	type counts struct{ short, unknown, own, notPeer, invalid uint64 }
	tests := []struct {
		name string
		in   []Datagram
		// want is what each endpoint (by VRID) gets, by body byte.
		want map[uint8][]byte
		counts
	}{
		{"each to its VRID", []Datagram{advert(1, peer, 'a'), advert(2, peer, 'b'), advert(1, peer, 'c')},
			map[uint8][]byte{1: []byte("ac"), 2: []byte("b")}, counts{}},
		{"unknown VRID counted", []Datagram{advert(9, peer, 'x'), advert(2, peer, 'b')},
			map[uint8][]byte{2: []byte("b")}, counts{unknown: 1}},
		{"short datagram counted", []Datagram{{Payload: []byte{0x31}, Src: peer}, {Src: peer}, advert(1, peer, 'a')},
			map[uint8][]byte{1: []byte("a")}, counts{short: 2}},
		{"our own advert skipped", []Datagram{advert(1, self, 'x'), advert(1, peer, 'a')},
			map[uint8][]byte{1: []byte("a")}, counts{own: 1}},
		{"unicast endpoint drops strangers", []Datagram{advert(3, stranger, 'x'), advert(3, peer, 'c')},
			map[uint8][]byte{3: []byte("c")}, counts{notPeer: 1}},
		{"multicast endpoint takes anyone", []Datagram{advert(2, stranger, 'b')},
			map[uint8][]byte{2: []byte("b")}, counts{}},
		// Invalid VRRP is counted for its VRID's endpoint, under
		// vrrp.Parse's reason, and queued nowhere: a flood of it must not
		// take the places of the master's adverts in the queue.
		{"a malformed advert is counted for its VRID only", []Datagram{{Payload: []byte{0xff, 1, 0, 0, 0, 0, 0, 0, 'x'}, Src: peer}, advert(2, peer, 'b')},
			map[uint8][]byte{2: []byte("b")}, counts{invalid: 1}},
		{"a forged advert with TTL 1 is counted, not queued", []Datagram{ttl1(advert(1, peer, 'x')), advert(1, peer, 'a')},
			map[uint8][]byte{1: []byte("a")}, counts{invalid: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newFakeHub()
				eps := map[uint8]*Endpoint{
					1: listen(t, h, Config{VRID: 1}),
					2: listen(t, h, Config{VRID: 2}),
					3: listen(t, h, Config{VRID: 3, Peers: []netip.Addr{peer}}),
				}
				defer func() {
					for _, e := range eps {
						e.Close()
					}
				}()
				if len(h.wires) != 1 {
					t.Fatalf("%d links opened for one interface and family, want 1", len(h.wires))
				}
				for _, d := range tt.in {
					h.wires[0].in <- d
				}
				synctest.Wait()
				for vrid, e := range eps {
					var got []byte
					for _, d := range queued(e) {
						got = append(got, d.Payload[len(d.Payload)-1])
					}
					if !bytes.Equal(got, tt.want[vrid]) {
						t.Errorf("VRID %d got %q, want %q", vrid, got, tt.want[vrid])
					}
				}
				var own, notPeer, invalid uint64
				for _, e := range eps {
					own += e.Own.Load()
					notPeer += e.NotPeer.Load()
					for r, n := range e.Drops() {
						if r != "queue_full" && r != "not_peer" {
							invalid += n
						}
					}
				}
				st := h.Stats()
				got := counts{short: st[0].Short, unknown: st[0].UnknownVRID, own: own, notPeer: notPeer, invalid: invalid}
				if got != tt.counts {
					t.Errorf("counted %+v, want %+v", got, tt.counts)
				}
			})
		})
	}
}

// An instance that does not read loses its own adverts beyond its queue,
// counted; the reader goes on delivering to the others.
func TestHubFullQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHub()
		slow := listen(t, h, Config{VRID: 1})
		defer slow.Close()
		other := listen(t, h, Config{VRID: 2})
		defer other.Close()
		const extra = 3
		for i := range queueLen + extra {
			h.wires[0].in <- advert(1, peer, byte(i))
		}
		h.wires[0].in <- advert(2, peer, 'b')
		synctest.Wait()
		if n := slow.Drops()["queue_full"]; n != extra {
			t.Errorf("slow endpoint dropped %d, want %d", n, extra)
		}
		if d := other.Drops(); len(d) != 0 {
			t.Errorf("other endpoint dropped %v, want nothing", d)
		}
		buf := make([]byte, 1500)
		d, err := other.Read(buf)
		if err != nil || d.Payload[len(d.Payload)-1] != 'b' {
			t.Errorf("other endpoint read %x, %v; want its advert", d.Payload, err)
		}
		// The first ones are kept, in order.
		for i := range queueLen {
			d, err := slow.Read(buf)
			if err != nil || d.Payload[len(d.Payload)-1] != byte(i) {
				t.Fatalf("slow endpoint's read %d: %x, %v", i, d.Payload, err)
			}
		}
	})
}

// The first endpoint of an interface and family opens its link, the
// last one's Close closes it; the multicast group is joined while any
// endpoint on the link uses it.
func TestHubRefcount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHub()
		type want struct {
			opened, open                 int // links opened so far, links open
			joins, leaves, closesOfFirst int
		}
		check := func(step string, w want) {
			t.Helper()
			open := 0
			for _, f := range h.wires {
				if f.closes == 0 {
					open++
				}
			}
			first := h.wires[0]
			got := want{len(h.wires), open, first.joins, first.leaves, first.closes}
			if got != w {
				t.Errorf("after %s: %+v, want %+v", step, got, w)
			}
		}
		v6src := netip.MustParseAddr("fe80::1")
		mc := listen(t, h, Config{VRID: 1})
		check("a multicast endpoint", want{opened: 1, open: 1, joins: 1})
		uc := listen(t, h, Config{VRID: 2, Peers: []netip.Addr{peer}})
		check("a unicast endpoint on the same link", want{opened: 1, open: 1, joins: 1})
		mc2 := listen(t, h, Config{VRID: 3})
		check("a second multicast endpoint", want{opened: 1, open: 1, joins: 1})
		other := listen(t, h, Config{VRID: 1, Interface: eth1})
		check("another interface", want{opened: 2, open: 2, joins: 1})
		v6 := listen(t, h, Config{VRID: 1, IPv6: true, Source: v6src})
		check("another family", want{opened: 3, open: 3, joins: 1})
		for _, e := range []*Endpoint{other, v6} {
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
		}
		check("closing the others", want{opened: 3, open: 1, joins: 1})
		mc.Close()
		check("closing one multicast endpoint", want{opened: 3, open: 1, joins: 1})
		mc2.Close()
		check("closing the last multicast endpoint", want{opened: 3, open: 1, joins: 1, leaves: 1})
		if err := uc.Close(); err != nil {
			t.Fatal(err)
		}
		check("closing the last endpoint", want{opened: 3, open: 0, joins: 1, leaves: 1, closesOfFirst: 1})
		again := listen(t, h, Config{VRID: 1})
		check("a new endpoint", want{opened: 4, open: 1, joins: 1, leaves: 1, closesOfFirst: 1})
		again.Close()
		if len(h.links) != 0 {
			t.Errorf("%d links left in the hub", len(h.links))
		}
	})
}

// Close ends a blocked Read at once, as an instance's reader relies on;
// a closed endpoint refuses to read, send or close again, and the
// link's other endpoints go on.
func TestEndpointClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHub()
		e := listen(t, h, Config{VRID: 1})
		stays := listen(t, h, Config{VRID: 2})
		defer stays.Close()
		done := make(chan error, 1)
		go func() {
			_, err := e.Read(make([]byte, 1500))
			done <- err
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Read returned before Close: %v", err)
		default:
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked Read after Close: %v, want net.ErrClosed", err)
		}
		if _, err := e.Read(make([]byte, 1500)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v, want net.ErrClosed", err)
		}
		if err := e.WriteTo([]byte{1}, Group(false)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("WriteTo after Close: %v, want net.ErrClosed", err)
		}
		if err := e.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("second Close: %v, want net.ErrClosed", err)
		}
		if err := stays.WriteTo([]byte{1}, Group(false)); err != nil {
			t.Errorf("the other endpoint's WriteTo: %v", err)
		}
		h.wires[0].in <- advert(2, peer, 'b')
		if d, err := stays.Read(make([]byte, 1500)); err != nil || d.Payload[1] != 2 {
			t.Errorf("the other endpoint read %x, %v", d.Payload, err)
		}
		if !slices.Equal(h.wires[0].sent, []netip.Addr{Group(false)}) {
			t.Errorf("sent to %v, want the other endpoint's one advert", h.wires[0].sent)
		}
	})
}

// When reading the link fails, each of its endpoints' Read reports why,
// as do Failed and Err to a loop that takes its Queue instead, and a new
// endpoint opens a new link rather than join the dead one.
func TestHubReadFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHub()
		a := listen(t, h, Config{VRID: 1})
		b := listen(t, h, Config{VRID: 2})
		h.wires[0].in <- advert(1, peer, 'a')
		select {
		case d := <-a.Queue():
			if d.Payload[11] != 'a' {
				t.Errorf("Queue delivered %x, want the advert", d.Payload)
			}
		case <-a.Failed():
			t.Fatal("Failed closed before reading failed")
		}
		if err := a.Err(); err != nil {
			t.Errorf("Err before reading failed: %v", err)
		}
		boom := errors.New("read VRRP on eth0: boom")
		h.wires[0].fail <- boom
		for _, e := range []*Endpoint{a, b} {
			if _, err := e.Read(make([]byte, 1500)); !errors.Is(err, boom) {
				t.Errorf("Read: %v, want %v", err, boom)
			}
			<-e.Failed()
			if err := e.Err(); !errors.Is(err, boom) {
				t.Errorf("Err: %v, want %v", err, boom)
			}
		}
		c := listen(t, h, Config{VRID: 3})
		if len(h.wires) != 2 {
			t.Errorf("%d links opened, want a second one after the first failed", len(h.wires))
		}
		for _, e := range []*Endpoint{a, b, c} {
			if err := e.Close(); err != nil {
				t.Error(err)
			}
		}
		for i, f := range h.wires {
			if f.closes != 1 {
				t.Errorf("link %d closed %d times, want 1", i, f.closes)
			}
		}
	})
}

// A first endpoint that cannot join the group leaves no link open; a
// Listen of an invalid config opens nothing.
func TestHubListenFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHub()
		h.joinErr = errors.New("join 224.0.0.18: no such device")
		if _, err := h.Listen(Config{Interface: eth0, Source: self, VRID: 1}); !errors.Is(err, h.joinErr) {
			t.Errorf("Listen: %v, want %v", err, h.joinErr)
		}
		if len(h.wires) != 1 || h.wires[0].closes != 1 || len(h.links) != 0 {
			t.Errorf("%d links opened, the first closed %d times, %d left; want 1, 1, 0", len(h.wires), h.wires[0].closes, len(h.links))
		}
		for _, cfg := range []Config{{Interface: eth0, Source: self}, {Interface: eth0, VRID: 1}} {
			if e, err := h.Listen(cfg); err == nil {
				e.Close()
				t.Errorf("Listen(%+v) succeeded", cfg)
			}
		}
		if len(h.wires) != 1 {
			t.Errorf("invalid configs opened %d links", len(h.wires)-1)
		}
	})
}

// Two endpoints of one VRID on a link (a reload's new instance while the
// old one hands over) both get its adverts; closing one leaves the other.
func TestHubSameVRID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHub()
		old := listen(t, h, Config{VRID: 7})
		nu := listen(t, h, Config{VRID: 7})
		defer nu.Close()
		h.wires[0].in <- advert(7, peer, 'a')
		synctest.Wait()
		if len(queued(old)) != 1 || len(queued(nu)) != 1 {
			t.Fatal("both endpoints of the VRID should have the advert")
		}
		old.Close()
		h.wires[0].in <- advert(7, peer, 'b')
		if d, err := nu.Read(make([]byte, 1500)); err != nil || d.Payload[len(d.Payload)-1] != 'b' {
			t.Errorf("read %x, %v", d.Payload, err)
		}
	})
}

// Two directors' hubs on loopback, in a namespace of the test's own: an
// advert reaches the peer's endpoint of its VRID with its source,
// destination, hop limit 255 and the kernel's receive time, and no other
// endpoint; an advert of a VRID the peer lacks is counted on its link;
// each hub's link sees its own adverts too (all of lo is local), which
// its endpoints skip.
func TestHubLoopback(t *testing.T) {
	tests := []struct {
		name string
		a, b netip.Addr
	}{
		{"IPv4", netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")},
		{"IPv6", netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha, hb := NewHub(), NewHub()
			eps := map[string]*Endpoint{}
			inPrivateNetns(t, func() {
				if tt.a.Is6() {
					addToLo(t, tt.a, tt.b)
				}
				lo, err := net.InterfaceByName("lo")
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range []struct {
					name     string
					h        *Hub
					vrid     uint8
					src, dst netip.Addr
				}{{"a1", ha, 1, tt.a, tt.b}, {"a9", ha, 9, tt.a, tt.b}, {"b1", hb, 1, tt.b, tt.a}, {"b2", hb, 2, tt.b, tt.a}} {
					e, err := x.h.Listen(Config{Interface: lo, IPv6: tt.a.Is6(), Source: x.src, Peers: []netip.Addr{x.dst}, VRID: x.vrid})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { e.Close() })
					eps[x.name] = e
				}
			})
			vrid := func(v uint8) []byte { return wireAdvert(t, v, tt.a, tt.b) }
			if err := eps["a9"].WriteTo(vrid(9), tt.b); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			if err := eps["a1"].WriteTo(vrid(1), tt.b); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			d, err := eps["b1"].Read(buf)
			readAt := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			if d.Src != tt.a || d.Dst != tt.b || d.HopLimit != 255 || !bytes.Equal(d.Payload, vrid(1)) {
				t.Errorf("b1 read %x from %s to %s, hop limit %d; want %x from %s to %s, 255", d.Payload, d.Src, d.Dst, d.HopLimit, vrid(1), tt.a, tt.b)
			}
			if d.At.Before(sent.Round(0)) || d.At.After(readAt.Round(0)) {
				t.Errorf("receive time %v, want the kernel's, between the send %v and the read %v", d.At, sent, readAt)
			}
			// The link delivers in order and to every endpoint of a
			// datagram before the next: by now the VRID 9 advert was
			// counted and nothing went to b2.
			if n := len(eps["b2"].queue); n != 0 {
				t.Errorf("b2 has %d adverts of another VRID", n)
			}
			if st := hb.Stats(); len(st) != 1 || st[0].UnknownVRID != 1 || st[0].Endpoints != 2 {
				t.Errorf("b's links: %+v, want one of 2 endpoints with 1 advert of an unknown VRID", st)
			}
			// b's reply reaches a1 after a's link has seen a's own two
			// adverts: a1 skipped its own, a9 its own.
			if err := eps["b1"].WriteTo(wireAdvert(t, 1, tt.b, tt.a), tt.a); err != nil {
				t.Fatal(err)
			}
			if d, err := eps["a1"].Read(buf); err != nil || d.Src != tt.b {
				t.Fatalf("a1 read from %s, %v; want from %s", d.Src, err, tt.b)
			}
			if a1, a9 := eps["a1"].Own.Load(), eps["a9"].Own.Load(); a1 != 1 || a9 != 1 {
				t.Errorf("a1 and a9 skipped %d and %d of their own, want 1 each", a1, a9)
			}
		})
	}
}

// inVethPair runs openA in a new network namespace and openB in another,
// joined by a veth pair, vrrpa (10.9.0.1/24) to vrrpb (10.9.0.2/24),
// both up: multicast, which loopback does not carry, between two hosts.
func inVethPair(t *testing.T, openA, openB func(ifi *net.Interface)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and a veth pair")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("back to the original network namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	nsB, err := netns.New()
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	defer nsB.Close()
	nsA, err := netns.New()
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	defer nsA.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vrrpa"}, PeerName: "vrrpb", PeerNamespace: netlink.NsFd(nsB)}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	up := func(name, addr string) *net.Interface {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr(addr)
		if err := netlink.AddrAdd(l, a); err != nil {
			t.Fatalf("address %s on %s: %v", addr, name, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatalf("%s up: %v", name, err)
		}
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return ifi
	}
	openA(up("vrrpa", "10.9.0.1/24"))
	if err := netns.Set(nsB); err != nil {
		t.Fatal(err)
	}
	openB(up("vrrpb", "10.9.0.2/24"))
}

// A link is a member of VRRP's multicast group exactly while one of its
// endpoints uses multicast: before, multicast adverts never reach it;
// after the last multicast endpoint closes, they stop reaching it, while
// a unicast endpoint keeps the link open.
func TestHubMulticastMembership(t *testing.T) {
	a4, b4 := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	ha, hb := NewHub(), NewHub()
	var sender, unicast *Endpoint
	var ifB *net.Interface
	var nsB netns.NsHandle
	inVethPair(t, func(ifi *net.Interface) {
		var err error
		if sender, err = ha.Listen(Config{Interface: ifi, Source: a4, VRID: 1}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sender.Close() })
	}, func(ifi *net.Interface) {
		var err error
		if unicast, err = hb.Listen(Config{Interface: ifi, Source: b4, Peers: []netip.Addr{a4}, VRID: 2}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unicast.Close() })
		ifB = ifi
		if nsB, err = netns.Get(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nsB.Close() })
	})
	buf := make([]byte, 1500)
	// multicastSeen sends a multicast advert of VRID 1, then a unicast one
	// of VRID 2 behind it on the same link: once the second is read, the
	// first has arrived or never will.
	multicastSeen := func() bool {
		t.Helper()
		before := hb.Stats()[0].UnknownVRID
		if err := sender.WriteTo(wireAdvert(t, 1, a4, Group(false)), Group(false)); err != nil {
			t.Fatal(err)
		}
		if err := sender.WriteTo(wireAdvert(t, 2, a4, b4), b4); err != nil {
			t.Fatal(err)
		}
		if _, err := unicast.Read(buf); err != nil {
			t.Fatal(err)
		}
		return hb.Stats()[0].UnknownVRID > before
	}
	if multicastSeen() {
		t.Error("multicast advert received with only a unicast endpoint on the link")
	}
	// The endpoint opens in b's namespace, on a thread of its own.
	var m *Endpoint
	opened := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // ends with the goroutine, in b's namespace
		if err := netns.Set(nsB); err != nil {
			opened <- err
			return
		}
		var err error
		m, err = hb.Listen(Config{Interface: ifB, Source: b4, VRID: 3})
		opened <- err
	}()
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	if !multicastSeen() {
		t.Error("multicast advert not received with a multicast endpoint on the link")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if multicastSeen() {
		t.Error("multicast advert received after the last multicast endpoint closed")
	}
}

// Drain hands an endpoint, before it returns, the adverts waiting in the
// link's socket that the reader has not read (it was not woken: a
// stalled process), routed as the reader would route them, in order;
// on a link whose reading failed it does nothing.
func TestHubDrain(t *testing.T) {
	h := newFakeHub()
	e1 := listen(t, h, Config{Interface: eth0, Source: self, VRID: 1})
	e2 := listen(t, h, Config{Interface: eth0, Source: self, VRID: 2})
	w := h.wires[0]
	w.mu.Lock()
	w.unread = []Datagram{advert(1, peer, 1), advert(2, peer, 2), advert(1, peer, 3), advert(9, peer, 4), advert(1, self, 5)}
	w.mu.Unlock()
	e1.Drain()
	var got []byte
	for len(e1.Queue()) > 0 {
		d := <-e1.Queue()
		got = append(got, d.Payload[len(d.Payload)-1])
	}
	if !bytes.Equal(got, []byte{1, 3}) {
		t.Errorf("VRID 1 after Drain: adverts %v, want [1 3]", got)
	}
	if n := len(e2.Queue()); n != 1 {
		t.Errorf("VRID 2 after VRID 1's Drain: %d adverts queued, want 1", n)
	}
	l := e1.link
	if l.unknown.Load() != 1 || e1.Own.Load() != 1 {
		t.Errorf("unknown VRID %d, own %d; want 1 and 1", l.unknown.Load(), e1.Own.Load())
	}
	w.fail <- errors.New("boom")
	<-e1.Failed()
	w.mu.Lock()
	w.unread = []Datagram{advert(1, peer, 6)}
	w.mu.Unlock()
	e1.Drain()
	if n := len(e1.Queue()); n != 0 {
		t.Errorf("Drain on a failed link queued %d adverts", n)
	}
}

// The real wire: receiveNow hands on, in order, what waits in the socket
// and returns at once when nothing does; receive, started after it, still
// wakes for the next datagram (the poller is edge-triggered: a pass that
// stopped short of EAGAIN would sleep through it) and fails once the wire
// closes.
func TestSocketsReceiveNow(t *testing.T) {
	recv, src := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	w, snd := loWire(t, recv, src)
	var got []byte
	collect := func(d Datagram) { got = append(got, d.Payload[len(d.Payload)-1]) }
	for b := range byte(3) {
		sendBody(t, snd, recv, b, 100)
	}
	for try := 0; len(got) < 3 && try < 100; try++ {
		if err := w.receiveNow(collect); err != nil {
			t.Fatal(err)
		}
		if len(got) < 3 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !bytes.Equal(got, []byte{0, 1, 2}) {
		t.Fatalf("receiveNow: %v, want [0 1 2]", got)
	}
	if err := w.receiveNow(collect); err != nil || len(got) != 3 {
		t.Fatalf("receiveNow with nothing waiting: %v, %d datagrams", err, len(got))
	}
	// receive, started after it, wakes for the next datagram, and
	// returns net.ErrClosed once the wire closes (receiving's cleanup).
	next := receiving(t, w, src)
	sendBody(t, snd, recv, 7, 100)
	expectRead(t, next, "receive after a receiveNow", 7)
}

// An endpoint with a handler gets its valid adverts on the reader, parsed,
// and nothing in its queue; invalid ones and its own are still counted
// and never reach the handler; other endpoints keep their queues; nil
// goes back to the queue.
func TestHubHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHub()
		inline := listen(t, h, Config{VRID: 1})
		defer inline.Close()
		queuedEp := listen(t, h, Config{VRID: 2})
		defer queuedEp.Close()
		var got []Datagram
		inline.SetHandler(func(d Datagram) { got = append(got, d) })
		h.wires[0].in <- advert(1, peer, 'a')
		h.wires[0].in <- ttl1(advert(1, peer, 'x'))
		h.wires[0].in <- advert(1, self, 'o')
		h.wires[0].in <- advert(2, peer, 'b')
		synctest.Wait()
		if len(got) != 1 || got[0].Advert == nil || got[0].Advert.VRID != 1 || got[0].Advert.Addrs[0] != netip.AddrFrom4([4]byte{10, 0, 0, 'a'}) {
			t.Fatalf("handler got %+v; want the one valid advert of VRID 1, parsed", got)
		}
		if q := queued(inline); len(q) != 0 {
			t.Errorf("an endpoint with a handler queued %d adverts", len(q))
		}
		if d := inline.Drops(); d["ttl"] != 1 {
			t.Errorf("drops %v; want the TTL 1 advert counted", d)
		}
		if inline.Own.Load() != 1 {
			t.Errorf("own adverts %d; want 1", inline.Own.Load())
		}
		if q := queued(queuedEp); len(q) != 1 {
			t.Errorf("the other endpoint queued %d adverts, want its 1", len(q))
		}
		inline.SetHandler(nil)
		h.wires[0].in <- advert(1, peer, 'c')
		synctest.Wait()
		if q := queued(inline); len(q) != 1 || len(got) != 1 {
			t.Errorf("after SetHandler(nil): queued %d, handler calls %d; want 1 queued, no new call", len(q), len(got))
		}
	})
}

// A link is lazy while every endpoint on it is: one eager endpoint, a new
// one included, makes it eager, and the last eager one to go lazy or
// close makes it lazy. Lazy, an advert waits for a Drain (or Stats),
// unless its priority is 0.
func TestHubLazy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHub()
		e1 := listen(t, h, Config{VRID: 1})
		defer e1.Close()
		e2 := listen(t, h, Config{VRID: 2})
		defer e2.Close()
		w := h.wires[0]
		e1.SetLazy(true)
		if got := w.lazyCalls(); !slices.Equal(got, []bool{false}) {
			t.Fatalf("one endpoint of two lazy: the wire was set %v, want only eager (at the first Listen)", got)
		}
		e2.SetLazy(true)
		e2.SetLazy(true)
		if got := w.lazyCalls(); !slices.Equal(got, []bool{false, true}) {
			t.Fatalf("both lazy: the wire was set %v, want eager then lazy", got)
		}

		w.in <- advert(1, peer, 'a')
		synctest.Wait()
		if q := queued(e1); len(q) != 0 {
			t.Fatalf("a lazy link handed on %d adverts before any drain", len(q))
		}
		e2.Drain()
		if q := queued(e1); len(q) != 1 {
			t.Fatalf("after another endpoint's Drain, %d adverts queued, want 1", len(q))
		}
		w.in <- advert(1, peer, 'b')
		synctest.Wait()
		h.Stats()
		if q := queued(e1); len(q) != 1 {
			t.Fatalf("after Stats, %d adverts queued, want 1", len(q))
		}
		resign := advert(1, peer, 'c')
		resign.Payload[2] = 0 // priority 0; Parse then fails the checksum, which is not what is tested
		w.in <- advert(1, peer, 'd')
		w.in <- resign
		synctest.Wait()
		if q, d := queued(e1), e1.Drops(); len(q) != 1 || d["checksum"] != 1 {
			t.Fatalf("priority 0 on a lazy link: %d queued, drops %v; want the waiting advert and the resignation at once", len(q), d)
		}

		e3 := listen(t, h, Config{VRID: 3})
		if got := w.lazyCalls(); !slices.Equal(got, []bool{false, true, false}) {
			t.Fatalf("a new endpoint: the wire was set %v, want eager again", got)
		}
		e3.Close()
		if got := w.lazyCalls(); !slices.Equal(got, []bool{false, true, false, true}) {
			t.Fatalf("the eager endpoint closed: the wire was set %v, want lazy again", got)
		}
		e1.SetLazy(false)
		e1.Close()
		if got := w.lazyCalls(); !slices.Equal(got, []bool{false, true, false, true, false, true}) {
			t.Fatalf("eager, then closed: the wire was set %v", got)
		}
		e1.SetLazy(false) // closed: changes nothing
		if got := w.lazyCalls(); len(got) != 6 {
			t.Fatalf("SetLazy after Close set the wire: %v", got)
		}
	})
}

// loWire opens a link's real wire on lo, in a namespace of the test's
// own, and a transport that sends to recv from snd; the wire and the
// transport close when the test ends.
func loWire(t *testing.T, recv, snd netip.Addr) (*sockets, *Conn) {
	t.Helper()
	var (
		w wire
		c *Conn
	)
	inPrivateNetns(t, func() {
		if recv.Is6() {
			addToLo(t, recv, snd)
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if w, err = openWire(lo, recv.Is6()); err != nil {
			t.Fatal(err)
		}
		if c, err = Listen(Config{Interface: lo, IPv6: snd.Is6(), Source: snd, Peers: []netip.Addr{recv}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { c.Close(); w.close() })
	return w.(*sockets), c
}

// sendBody sends the test payload with priority prio and last byte body.
func sendBody(t *testing.T, c *Conn, to netip.Addr, body, prio byte) {
	t.Helper()
	p := slices.Clone(payload)
	p[2], p[len(p)-1] = prio, body
	if err := c.WriteTo(p, to); err != nil {
		t.Fatal(err)
	}
}

// receiving runs w's reader until the test ends, putting the last byte
// of each datagram from src on the channel it returns.
func receiving(t *testing.T, w *sockets, src netip.Addr) chan byte {
	got := make(chan byte, 16)
	done := make(chan error, 1)
	go func() {
		done <- w.receive(func(d Datagram) {
			if d.Src == src {
				got <- d.Payload[len(d.Payload)-1]
			}
		})
	}()
	t.Cleanup(func() {
		w.close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("receive after close: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("receive did not return after close")
		}
	})
	return got
}

// expectRead takes want from got in order, each within 5 s.
func expectRead(t *testing.T, got <-chan byte, what string, want ...byte) {
	t.Helper()
	for _, b := range want {
		select {
		case g := <-got:
			if g != b {
				t.Fatalf("%s: read %d, want %d", what, g, b)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: %d not read within 5 s", what, b)
		}
	}
}

// A lazy link's reader waits only for adverts of priority 0; the rest
// wait in the data socket, in order, for receiveNow or for the next
// priority 0; going eager reads what waits at once, without a further
// packet. On lo in a namespace of the test's own, both families (the
// bell's filter reads the priority at a different offset in each).
func TestSocketsLazy(t *testing.T) {
	for _, fam := range []struct {
		name      string
		recv, snd netip.Addr
	}{
		{"IPv4", netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")},
		{"IPv6", netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")},
	} {
		t.Run(fam.name, func(t *testing.T) {
			w, snd := loWire(t, fam.recv, fam.snd)
			got := receiving(t, w, fam.snd)
			send := func(body, prio byte) { t.Helper(); sendBody(t, snd, fam.recv, body, prio) }
			// Nothing read: a lazy link must not wake for it. (A slow
			// host can only make this pass, never fail.)
			quiet := func(what string) {
				t.Helper()
				select {
				case g := <-got:
					t.Fatalf("%s: read %d, want nothing until drained", what, g)
				case <-time.After(300 * time.Millisecond):
				}
			}

			// The pass that handed a datagram on goes on reading the
			// socket until it is empty, and may so read one sent just
			// after, lazy or not: the link's lazy once that pass ends.
			passDone := func() {
				w.mu.Lock()
				//lint:ignore SA2001 the empty section waits for the drain, which holds mu
				w.mu.Unlock()
			}
			send(1, 100)
			expectRead(t, got, "eager", 1)
			passDone()
			if err := w.setLazy(true); err != nil {
				t.Fatal(err)
			}
			send(2, 100)
			quiet("lazy, priority 100")
			send(3, 0)
			expectRead(t, got, "lazy, then priority 0", 2, 3)
			passDone()
			send(4, 255)
			quiet("lazy, priority 255")
			if err := w.receiveNow(func(d Datagram) {
				if d.Src == fam.snd {
					got <- d.Payload[len(d.Payload)-1]
				}
			}); err != nil {
				t.Fatal(err)
			}
			expectRead(t, got, "receiveNow", 4)
			send(5, 100)
			quiet("lazy again")
			if err := w.setLazy(false); err != nil {
				t.Fatal(err)
			}
			expectRead(t, got, "eager again, with nothing more sent", 5)
			send(6, 100)
			expectRead(t, got, "eager", 6)
			if n := w.kernelDrops(); n != 0 {
				t.Errorf("kernel drops %d, want 0", n)
			}
		})
	}
}

// A lazy link whose socket overflows counts the kernel's drops and reads
// eagerly from then on, whatever its endpoints ask: lazy reading must
// never be why adverts are lost.
func TestSocketsOverflow(t *testing.T) {
	recv, src := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	w, snd := loWire(t, recv, src)
	// The smallest buffer the kernel allows holds a few packets.
	if err := unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.setLazy(true); err != nil {
		t.Fatal(err)
	}
	const sent = 100
	for range sent {
		sendBody(t, snd, recv, 0, 100)
	}
	var read int
	count := func(Datagram) { read++ }
	if err := w.receiveNow(count); err != nil {
		t.Fatal(err)
	}
	// The kernel tells of its drops with the next packet it queues.
	sendBody(t, snd, recv, 0, 100)
	if err := w.receiveNow(count); err != nil {
		t.Fatal(err)
	}
	drops := w.kernelDrops()
	if read < 2 || drops == 0 || uint64(read)+drops != sent+1 {
		t.Fatalf("read %d, kernel dropped %d; want some of each, %d in all", read, drops, sent+1)
	}
	if err := w.setLazy(true); err != nil {
		t.Fatal(err)
	}
	w.modeMu.Lock()
	lazy := w.lazy
	w.modeMu.Unlock()
	if lazy {
		t.Error("the link went lazy again after it overflowed")
	}
}

// Every datagram is read as it comes on an eager link, each one alone
// (the reader sleeps between them): the bell must never ring before the
// data socket holds what it rings for, or the reader drains too early
// and sleeps with the datagram unread (see openWire).
func TestSocketsRing(t *testing.T) {
	recv, src := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	w, snd := loWire(t, recv, src)
	got := receiving(t, w, src)
	const n = 2000
	for i := range n {
		sendBody(t, snd, recv, byte(i), 100)
		expectRead(t, got, fmt.Sprintf("datagram %d of %d", i, n), byte(i))
	}
}

// A ring that finds the data socket empty reads it again shortly after,
// in case the kernel rang before it queued (see receive): here the data
// socket drops the first datagram, whose ring comes, and takes the
// second, which does not ring.
func TestSocketsRecheck(t *testing.T) {
	recv, src := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	w, snd := loWire(t, recv, src)
	w.recheckAfter = 500 * time.Millisecond
	dropAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	if err := attachFilter(w.fd, dropAll); err != nil {
		t.Fatal(err)
	}
	got := receiving(t, w, src)
	sendBody(t, snd, recv, 1, 100)
	time.Sleep(100 * time.Millisecond) // the ring read, the data socket found empty
	var err error
	if cerr := w.bellRC.Control(func(fd uintptr) { err = attachFilter(int(fd), dropAll) }); cerr != nil || err != nil {
		t.Fatal(cerr, err)
	}
	passAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff}}
	if err := attachFilter(w.fd, passAll); err != nil {
		t.Fatal(err)
	}
	sendBody(t, snd, recv, 2, 100)
	expectRead(t, got, "a datagram queued after an empty ring", 2)
}
