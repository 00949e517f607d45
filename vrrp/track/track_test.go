package track

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// Every goroutine the package starts has ended when its tests have: the
// execs' loops and the link watches are owned by their callers.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPriority(t *testing.T) {
	tracked := []conf.TrackVirtualServer{{Name: "web", Weight: 30}, {Name: "dns", Weight: 80}}
	tests := []struct {
		name string
		base int
		down []string
		want int
	}{
		{"all up", 100, nil, 100},
		{"one down", 100, []string{"web"}, 70},
		{"both down", 100, []string{"web", "dns"}, 1}, // 100-110 floors at 1, never 0
		{"owner lowered", 255, []string{"web"}, 225},
		{"untracked down changes nothing", 100, []string{"other"}, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := func(vs string) bool {
				for _, d := range tc.down {
					if d == vs {
						return false
					}
				}
				return true
			}
			if got := Priority(tc.base, VirtualServersLowered(tracked, up)); got != tc.want {
				t.Errorf("Priority = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestLinkState(t *testing.T) {
	s := LinkState{"eth0": true, "eth1": false}
	if s.AllUp() || len(s.Down()) != 1 || s.Down()[0] != "eth1" {
		t.Errorf("AllUp %v Down %v", s.AllUp(), s.Down())
	}
	if !(LinkState{"eth0": true}).AllUp() || !(LinkState{}).AllUp() {
		t.Error("all-up states reported down")
	}
}

func TestLinkEffect(t *testing.T) {
	weighted := []conf.TrackInterface{{Name: "eth1", Weight: 20}, {Name: "eth2", Weight: 30}}
	tests := []struct {
		name        string
		down        []string
		wantFault   bool
		wantLowered int
	}{
		{"all up", nil, false, 0},
		{"a faulting link down", []string{"eth0"}, true, 0},
		{"one weighted link down", []string{"eth2"}, false, 30},
		{"both weighted down", []string{"eth1", "eth2"}, false, 50},
		{"everything down", []string{"eth0", "eth1", "eth2"}, true, 50},
		{"an untracked link down", []string{"eth9"}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fault, lowered := LinkEffect([]string{"eth0"}, weighted, tc.down)
			if fault != tc.wantFault || lowered != tc.wantLowered {
				t.Errorf("LinkEffect(%v) = %v, %d; want %v, %d", tc.down, fault, lowered, tc.wantFault, tc.wantLowered)
			}
		})
	}
	for _, tc := range []struct {
		name           string
		in             conf.VRRPInstance
		faulting, want []string
	}{
		{"tracked", conf.VRRPInstance{Interface: "eth9", TrackInterfaces: []string{"eth0", "eth1"}, TrackInterfaceWeights: weighted},
			[]string{"eth0", "eth1"}, []string{"eth0", "eth1", "eth2"}},
		{"its own first", conf.VRRPInstance{Interface: "eth9", TrackOwnInterface: true, TrackInterfaces: []string{"eth0"}, TrackInterfaceWeights: weighted},
			[]string{"eth9", "eth0"}, []string{"eth9", "eth0", "eth1", "eth2"}},
		{"its own, also tracked, once", conf.VRRPInstance{Interface: "eth0", TrackOwnInterface: true, TrackInterfaces: []string{"eth0"}},
			[]string{"eth0"}, []string{"eth0"}},
		{"its own, also weighted: a fault", conf.VRRPInstance{Interface: "eth1", TrackOwnInterface: true, TrackInterfaceWeights: weighted},
			[]string{"eth1"}, []string{"eth1", "eth2"}},
		{"nothing", conf.VRRPInstance{Interface: "eth0"}, nil, nil},
	} {
		if got := FaultingLinks(tc.in); !slices.Equal(got, tc.faulting) {
			t.Errorf("%s: FaultingLinks = %v, want %v", tc.name, got, tc.faulting)
		}
		if got := LinkNames(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%s: LinkNames = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fakeSub is a link subscription the test drives: each Subscribe call
// waits for the test's answer, and the links answered stay subscribed
// until the test closes their channel (the subscription dies) or ctx
// ends.
type fakeSub struct{ calls chan subCall }

type subCall struct {
	at    time.Time
	reply chan subReply
}

type subReply struct {
	current []Link
	updates chan LinkUpdate // the test's end; nil with err
	err     error
}

func (f fakeSub) subscribe(ctx context.Context) ([]Link, <-chan LinkUpdate, error) {
	c := subCall{at: time.Now(), reply: make(chan subReply)}
	select {
	case f.calls <- c:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	r := <-c.reply
	if r.err != nil {
		return nil, nil, r.err
	}
	out := make(chan LinkUpdate)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-r.updates:
				if !ok {
					return
				}
				select {
				case out <- u:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return r.current, out, nil
}

// answer answers the next Subscribe call (err, or current links) and
// returns when it came, and the channel that feeds (and by closing, kills)
// the subscription.
func (f fakeSub) answer(t *testing.T, err error, current ...Link) (time.Time, chan LinkUpdate) {
	t.Helper()
	c := <-f.calls
	var ups chan LinkUpdate
	if err == nil {
		ups = make(chan LinkUpdate)
	}
	c.reply <- subReply{current: current, updates: ups, err: err}
	return c.at, ups
}

// describe renders a report as the tests compare it.
func describe(r LinkReport) string {
	var s []string
	if r.Lost != nil {
		s = append(s, "lost: "+r.Lost.Error())
	}
	if r.Err != nil {
		s = append(s, "unknown: "+r.Err.Error())
	}
	if r.State != nil {
		s = append(s, fmt.Sprintf("down %v", r.State.Down()))
	}
	return strings.Join(s, "; ")
}

// noReport asserts that nothing is reported once every goroutine waits.
func noReport(t *testing.T, reports <-chan LinkReport) {
	t.Helper()
	synctest.Wait()
	select {
	case r := <-reports:
		t.Fatalf("unexpected report %q", describe(r))
	default:
	}
}

func TestWatchResubscribes(t *testing.T) {
	names := []string{"eth0", "eth1"}
	bo := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	refused := errors.New("netlink refused")
	tests := []struct {
		name string
		run  func(t *testing.T, f fakeSub, reports <-chan LinkReport)
	}{
		{"changes of tracked links only", func(t *testing.T, f fakeSub, reports <-chan LinkReport) {
			_, ups := f.answer(t, nil, Link{"eth0", true}, Link{"lo", true})
			want(t, reports, "down [eth1]") // eth1 missing: down
			ups <- LinkUpdate{Link: Link{"eth1", true}}
			want(t, reports, "down []")
			ups <- LinkUpdate{Link: Link{"lo", false}}
			ups <- LinkUpdate{Link: Link{"eth1", true}}
			noReport(t, reports)
			ups <- LinkUpdate{Link: Link{"eth0", false}}
			want(t, reports, "down [eth0]")
		}},
		{"a subscription lost comes back at once, with the state as it is then", func(t *testing.T, f fakeSub, reports <-chan LinkReport) {
			_, ups := f.answer(t, nil, Link{"eth0", true}, Link{"eth1", true})
			want(t, reports, "down []")
			time.Sleep(bo.Max) // a subscription that held
			ups <- LinkUpdate{Err: errors.New("ENOBUFS")}
			close(ups)
			lostAt := time.Now()
			at, _ := f.answer(t, nil, Link{"eth0", true})
			if at != lostAt {
				t.Errorf("resubscribed %v after the loss, want at once", at.Sub(lostAt))
			}
			// eth1 went away while unsubscribed: the listing says so.
			want(t, reports, "lost: ENOBUFS; down [eth1]")
		}},
		{"no subscription: unknown until one holds", func(t *testing.T, f fakeSub, reports <-chan LinkReport) {
			start := time.Now()
			f.answer(t, refused)
			want(t, reports, "unknown: watch links [eth0 eth1]: netlink refused")
			var waits []time.Duration
			last := start
			for range 5 {
				at, _ := f.answer(t, refused)
				waits = append(waits, at.Sub(last))
				last = at
			}
			// The same error is not reported again.
			noReport(t, reports)
			if w := fmt.Sprint(waits); w != "[100ms 200ms 400ms 800ms 1s]" {
				t.Errorf("waits between attempts %s, want doubling from 100ms to 1s", w)
			}
			f.answer(t, nil, Link{"eth0", true}, Link{"eth1", true})
			want(t, reports, "down []")
		}},
		{"a lost subscription that cannot come back is unknown", func(t *testing.T, f fakeSub, reports <-chan LinkReport) {
			_, ups := f.answer(t, nil, Link{"eth0", true}, Link{"eth1", true})
			want(t, reports, "down []")
			time.Sleep(bo.Max)
			close(ups)
			f.answer(t, refused)
			want(t, reports, "unknown: watch links [eth0 eth1]: netlink refused")
			f.answer(t, nil, Link{"eth0", true}, Link{"eth1", true})
			want(t, reports, "lost: link subscription closed; down []")
		}},
		{"a subscription that dies as it opens is unknown, and waited for", func(t *testing.T, f fakeSub, reports <-chan LinkReport) {
			_, ups := f.answer(t, nil, Link{"eth0", true}, Link{"eth1", true})
			want(t, reports, "down []")
			close(ups)
			want(t, reports, "unknown: watch links [eth0 eth1]: link subscription closed")
			diedAt := time.Now()
			at, _ := f.answer(t, nil, Link{"eth0", true}, Link{"eth1", true})
			if at.Sub(diedAt) != bo.Min {
				t.Errorf("resubscribed %v after dying, want %v", at.Sub(diedAt), bo.Min)
			}
			want(t, reports, "down []")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				f := fakeSub{calls: make(chan subCall)}
				reports := Watch(ctx, names, f.subscribe, bo)
				tc.run(t, f, reports)
				cancel()
				for r := range reports {
					t.Errorf("report after the end: %q", describe(r))
				}
			})
		})
	}
}

func want(t *testing.T, reports <-chan LinkReport, w string) {
	t.Helper()
	if got := describe(<-reports); got != w {
		t.Fatalf("report %q, want %q", got, w)
	}
}

// An address is a usable source while present, past DAD: tentative or
// failed, the kernel refuses it as a packet's source.
func TestAddrLink(t *testing.T) {
	ll := net.ParseIP("fe80::1")
	for _, tc := range []struct {
		name    string
		ip      net.IP
		flags   int
		present bool
		want    Link
	}{
		{"present", ll, unix.IFA_F_PERMANENT, true, Link{Name: "fe80::1%3", Up: true}},
		{"tentative", ll, unix.IFA_F_TENTATIVE, true, Link{Name: "fe80::1%3"}},
		{"DAD failed", ll, unix.IFA_F_DADFAILED, true, Link{Name: "fe80::1%3"}},
		{"deleted", ll, 0, false, Link{Name: "fe80::1%3"}},
		{"IPv4, as netlink gives it", net.ParseIP("10.0.0.2"), 0, true, Link{Name: "10.0.0.2%3", Up: true}},
	} {
		if got := addrLink(tc.ip, 3, tc.flags, tc.present); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if got := AddrName(netip.MustParseAddr("10.0.0.2"), 3); got != "10.0.0.2%3" {
		t.Errorf("AddrName = %q", got)
	}
}
