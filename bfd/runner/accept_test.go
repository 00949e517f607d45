package runner

import (
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsha/lvsha/bfd"
	"github.com/lvsha/lvsha/bfd/transport"
)

// forged is the packet a forger on the link sends from each address it
// makes up, as a peer opening a session would: State Down, Your
// Discriminator zero, so RFC 5880 6.8.6 matches it by source address.
func forged(myDiscr uint32) []byte {
	return (&bfd.Packet{State: bfd.Down, DetectMult: 3, MyDiscr: myDiscr, DesiredMinTx: time.Second, RequiredMinRx: time.Second}).Marshal()
}

// forgedSrc is the forger's i-th source address (i < 254): on lo, as a
// neighbour's would be on a LAN, and nobody's.
func forgedSrc(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 141, 0, byte(i + 1)}) }

// inject hands r a packet from src as its reader does: the sockets are
// real, the packet's source address is not (a forger's).
func inject(r *Runner, b []byte, src netip.Addr) {
	r.smu.Lock()
	defer r.smu.Unlock()
	r.receive(received{payload: b, src: src})
}

// answered is r's sessions nobody added, by peer.
func answered(r *Runner) map[netip.Addr]Status {
	out := map[netip.Addr]Status{}
	for _, st := range r.Statuses() {
		if !st.Added {
			out[st.Peer] = st
		}
	}
	return out
}

// TestAcceptBounded: packets from three times MaxAccepted forged sources,
// each sent twice, at a runner that answers peers (Config.Accept) open
// sessions for the first MaxAccepted and no more; the packets of the rest
// are each counted as accept_limit, and nothing else is dropped. The
// configured peer's packets still find its session at the limit. A runner
// that answers no peers counts every one as no_session. The sessions
// answered are let go acceptIdle after their peers' last packet, except
// one that is Up, and the places freed answer new peers again. The
// runner's clock is driven by hand (expire), not waited for.
func TestAcceptBounded(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	// Addresses of their own: the packages' tests run in parallel.
	local, peer := netip.MustParseAddr("127.0.0.141"), netip.MustParseAddr("127.0.0.142")
	timers := Peer{DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 20 * time.Millisecond, DetectMult: 3}
	const n = 3 * MaxAccepted
	for _, tc := range []struct {
		name         string
		accept       bool
		wantAnswered int
		wantDrops    map[bfd.DropReason]uint64
	}{
		{"without Accept", false, 0, map[bfd.DropReason]uint64{bfd.DropNoSession: 2 * n}},
		{"with Accept", true, MaxAccepted, map[bfd.DropReason]uint64{bfd.DropAcceptLimit: 2 * (n - MaxAccepted)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			configured := timers
			configured.Addr = peer
			cfg := Config{Config: transport.Config{Interface: lo, Local: local}, Peers: []Peer{configured},
				Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
			if tc.accept {
				accept := timers
				cfg.Accept = &accept
			}
			r, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for range 2 {
				for i := range n {
					inject(r, forged(uint32(i+1)), forgedSrc(i))
				}
			}
			got := answered(r)
			if len(got) != tc.wantAnswered {
				t.Fatalf("%d sessions answered, want %d", len(got), tc.wantAnswered)
			}
			for i := range tc.wantAnswered {
				if _, ok := got[forgedSrc(i)]; !ok {
					t.Errorf("no session answers %s, one of the first %d sources", forgedSrc(i), tc.wantAnswered)
				}
			}
			if d := r.Drops(); !maps.Equal(d, tc.wantDrops) {
				t.Errorf("drops %v, want %v", d, tc.wantDrops)
			}
			inject(r, forged(0xfeed), peer)
			if st, ok := r.Status(peer); !ok || !st.Added || st.RemoteDiscr != 0xfeed {
				t.Errorf("the configured peer's packet did not reach its session: %+v (found %v)", st, ok)
			}
			if d := r.Drops(); !maps.Equal(d, tc.wantDrops) {
				t.Errorf("drops %v after the configured peer's packet, want %v", d, tc.wantDrops)
			}
			if !tc.accept {
				return
			}

			// One forged peer answers and brings its session Up; with a
			// Detection Time of 255 s it stays Up past acceptIdle.
			up := forgedSrc(0)
			st, _ := r.Status(up)
			inject(r, (&bfd.Packet{State: bfd.Up, DetectMult: 255, MyDiscr: 1, YourDiscr: st.LocalDiscr,
				DesiredMinTx: time.Second, RequiredMinRx: time.Second}).Marshal(), up)
			if st, _ := r.Status(up); st.State != bfd.Up {
				t.Fatalf("the session with %s is %s, want Up", up, st.State)
			}
			r.smu.Lock()
			r.expire(time.Now().Add(acceptIdle + time.Second))
			r.smu.Unlock()
			left := r.Statuses()
			if len(left) != 2 || left[0].Peer != peer || left[1].Peer != up || left[1].State != bfd.Up {
				t.Fatalf("after acceptIdle: sessions %+v, want the configured peer's and the Up one with %s", left, up)
			}
			// The places freed answer new peers, without a drop.
			for i := n; i < n+MaxAccepted-1; i++ {
				inject(r, forged(uint32(i+1)), forgedSrc(i))
			}
			if got := len(answered(r)); got != MaxAccepted {
				t.Errorf("%d sessions answered after the idle ones were let go and new peers came, want %d", got, MaxAccepted)
			}
			if d := r.Drops(); !maps.Equal(d, tc.wantDrops) {
				t.Errorf("drops %v after the idle sessions were let go, want %v", d, tc.wantDrops)
			}
		})
	}
}

// TestAcceptFloodKeepsPeer: a runner whose session with its configured
// peer is Up takes packets from three times MaxAccepted forged sources:
// it answers at most MaxAccepted of them, counts the rest as
// accept_limit, and the session with the peer stays Up on both sides,
// with no Down.
func TestAcceptFloodKeepsPeer(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("127.0.0.143"), netip.MustParseAddr("127.0.0.144")
	// Detection in 500 ms, as TestAddRemoveAccept's: the Down this test
	// is after is the flood's, not a stall of the shared host's.
	timers := Peer{DesiredMinTx: 20 * time.Millisecond, RequiredMinRx: 20 * time.Millisecond, DetectMult: 25}
	open := func(local, remote netip.Addr, accept bool) *Runner {
		p := timers
		p.Addr = remote
		cfg := Config{Config: transport.Config{Interface: lo, Local: local}, Peers: []Peer{p},
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("side", local)}
		if accept {
			acc := timers
			cfg.Accept = &acc
		}
		r, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := open(a, b, true), open(b, a, false)
	for _, r := range []*Runner{ra, rb} {
		ctx, stop := t.Context(), make(chan struct{})
		go func() { r.Run(ctx); close(stop) }()
		t.Cleanup(func() { <-stop })
	}
	waitState(t, ra.Changes(), bfd.Up, 10*time.Second)
	waitState(t, rb.Changes(), bfd.Up, 10*time.Second)

	const n = 3 * MaxAccepted
	for range 2 {
		for i := range n {
			inject(ra, forged(uint32(i+1)), forgedSrc(i))
		}
	}
	// Several round trips at the fast rate.
	time.Sleep(300 * time.Millisecond)
	got := len(answered(ra))
	d := ra.Drops()
	t.Logf("answered %d forged peers, drops %v", got, d)
	if got == 0 || got > MaxAccepted {
		t.Errorf("%d forged peers answered, want 1 to %d", got, MaxAccepted)
	}
	if d[bfd.DropAcceptLimit] == 0 || d[bfd.DropAcceptLimit] > 2*(n-MaxAccepted) || len(d) != 1 {
		t.Errorf("drops %v, want accept_limit only, at most %d", d, 2*(n-MaxAccepted))
	}
	for _, x := range []struct {
		r    *Runner
		peer netip.Addr
	}{{ra, b}, {rb, a}} {
		if st, ok := x.r.Status(x.peer); !ok || st.State != bfd.Up || !st.Added {
			t.Errorf("session with %s: %+v (found %v), want Up", x.peer, st, ok)
		}
		for _, c := range downs(x.r.Changes()) {
			if c.Peer == x.peer {
				t.Errorf("session with %s went Down under the flood: %+v", x.peer, c)
			}
		}
	}
}
