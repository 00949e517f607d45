package instance

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/transport"
)

// TestFollowerMasterDown: a running instance reports the master it
// follows (for BFD to watch) and tells its Shared's watcher when that
// changes; a MasterDown of that master makes it master at once, far
// inside Master_Down_Interval; one of another address does nothing; and
// when the master's adverts go on (BFD lost, master alive) it hands
// master back at the next advert and counts the event.
func TestFollowerMasterDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn := newQueueConn()
		cfg := testConfig()
		i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), cfg, netip.MustParseAddr("10.0.0.2"), conn, &fakeHolder{})
		if err != nil {
			t.Fatal(err)
		}
		fl := newFollowers()
		i.follow = fl
		master, other := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.3")
		b, err := vrrp.Marshal(i.mcfg.Advert(200), master, group)
		if err != nil {
			t.Fatal(err)
		}
		peerStop, peerDone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(peerDone)
			for {
				select {
				case conn.in <- transport.Datagram{Payload: b, Src: master, Dst: group, HopLimit: 255}:
				case <-peerStop:
					return
				}
				time.Sleep(cfg.AdvertInterval)
			}
		}()
		stop := startRun(t, i)
		time.Sleep(250 * time.Millisecond)
		synctest.Wait()
		check := func(state string, follows netip.Addr, takeovers, alive int) {
			t.Helper()
			s, f := i.Status(), i.Follower()
			if s.State != state || f.Master != follows || s.BFDTakeovers != takeovers || s.BFDMasterAlive != alive {
				t.Fatalf("state %s following %v, %d BFD takeovers, %d master alive; want %s, %v, %d, %d",
					s.State, f.Master, s.BFDTakeovers, s.BFDMasterAlive, state, follows, takeovers, alive)
			}
		}
		check("BACKUP", master, 0, 0)
		select {
		case <-fl.changed:
		default:
			t.Fatal("the watcher was not told of the master")
		}
		if f := i.Follower(); f.Local != netip.MustParseAddr("10.0.0.2") || f.Interface != "eth0" || f.Send == nil {
			t.Fatalf("follower %+v", f)
		}

		i.Send(context.Background(), vrrp.MasterDown{Peer: other})
		synctest.Wait()
		check("BACKUP", master, 0, 0)

		// The master is alive: BFD was wrong. Master at once, back to
		// backup by the master's next advert, within an advert interval.
		i.Send(context.Background(), vrrp.MasterDown{Peer: master})
		synctest.Wait()
		check("MASTER", netip.Addr{}, 1, 0)
		time.Sleep(cfg.AdvertInterval)
		synctest.Wait()
		check("BACKUP", master, 1, 1)

		// The master dies: BFD says so long before Master_Down_Interval.
		close(peerStop)
		<-peerDone
		i.Send(context.Background(), vrrp.MasterDown{Peer: master})
		synctest.Wait()
		check("MASTER", netip.Addr{}, 2, 1)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		check("MASTER", netip.Addr{}, 2, 1)
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		fl.mu.Lock()
		n := len(fl.set)
		fl.mu.Unlock()
		if n != 0 {
			t.Errorf("%d instances still in the Shared's set after Run returned", n)
		}
	})
}
