package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// counting counts the bytes a node sends, datagrams and streams.
type counting struct {
	memberlist.NodeAwareTransport
	sent *atomic.Int64
}

func (c counting) WriteTo(b []byte, addr string) (time.Time, error) {
	c.sent.Add(int64(len(b)))
	return c.NodeAwareTransport.WriteTo(b, addr)
}

func (c counting) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	c.sent.Add(int64(len(b)))
	return c.NodeAwareTransport.WriteToAddress(b, a)
}

func (c counting) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := c.NodeAwareTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return countingConn{conn, c.sent}, nil
}

func (c counting) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	conn, err := c.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return countingConn{conn, c.sent}, nil
}

// countingConn counts what the dialling side writes; the answering side's
// replies (the other half of a push/pull) are not counted, so stream
// bytes are undercounted by up to half.
type countingConn struct {
	net.Conn
	sent *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.sent.Add(int64(len(b)))
	return c.Conn.Write(b)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGossip10k measures issue #19's gossip load: three directors
// at the [cluster] defaults, 10,000 real servers each (100 virtual
// servers of 100). It reports the bytes sent per director per second in
// steady state (one push/pull interval, 10 s, measured), then per
// iteration a mass failure: every real server of one virtual server goes
// down on lb2, and the time until lb1 sees all 100 down, and back up.
//
//	go test -run '^$' -bench Gossip10k -benchtime 5x ./cluster
func BenchmarkGossip10k(b *testing.B) {
	const vss, perVS = 100, 100
	var sent [3]atomic.Int64
	rsOf := func(vs, i int) RealServer {
		return RealServer{fmt.Sprintf("vs%d", vs), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(vs), byte(i >> 8), byte(i)}), 80)}
	}
	fill := func(n *Node) {
		for v := range vss {
			for i := range perVS {
				n.SetHealth(rsOf(v, i), HealthUp)
			}
		}
		n.SetDigests(digestsFor(1, 1))
	}
	var nodes []*Node
	for i := range 3 {
		edit := func(o *Options) {
			// The [cluster] defaults (conf/cluster.go).
			o.GossipInterval, o.GossipNodes = 100*time.Millisecond, 3
			o.ProbeInterval, o.ProbeTimeout, o.SuspicionMult = 500*time.Millisecond, 200*time.Millisecond, 4
			o.PushPullInterval, o.RejoinInterval = 10*time.Second, 10*time.Second
			seeds(nodes...)(o)
			o.wrapTransport = func(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
				return counting{t, &sent[i]}
			}
		}
		nodes = append(nodes, startNode(b, fmt.Sprintf("lb%d", i+1), byte(61+i), edit, fill))
	}
	lb1, lb2 := nodes[0], nodes[1]
	for _, n := range nodes {
		eventually(b, "three live directors", 10*time.Second, func() bool { return len(live(n)) == 3 })
	}
	eventually(b, "lb1 has lb2's and lb3's 10,000 real servers", 30*time.Second, func() bool {
		ds := lb1.Directors()
		return len(ds[1].Health) == vss*perVS && len(ds[2].Health) == vss*perVS
	})

	total := func() int64 { return sent[0].Load() + sent[1].Load() + sent[2].Load() }
	const window = 10 * time.Second
	bytes0, cpu0 := total(), cpuTime()
	time.Sleep(window)
	steady := float64(total()-bytes0) / 3 / window.Seconds()
	steadyCPU := float64(cpuTime()-cpu0) / 3 / float64(window)
	b.Logf("steady: %.0f bytes/s sent per director, %.2f%% of a core per director (one push/pull interval)", steady, 100*steadyCPU)

	seenAll := func(h Health) bool {
		for i := range perVS {
			v := lb1.Views(rsOf(0, i))
			ok := false
			for _, s := range v {
				ok = ok || s.Director == "lb2" && s.Health == h
			}
			if !ok {
				return false
			}
		}
		return true
	}
	var worst time.Duration
	bytes1 := total()
	b.ResetTimer()
	for range b.N {
		for _, h := range []Health{HealthDown, HealthUp} {
			start := time.Now()
			for i := range perVS {
				lb2.SetHealth(rsOf(0, i), h)
			}
			dumped := false
			for !seenAll(h) {
				if time.Since(start) > time.Second && !dumped {
					dumped = true
					missing := 0
					var ex RealServer
					for i := range perVS {
						ok := false
						for _, s := range lb1.Views(rsOf(0, i)) {
							ok = ok || s.Director == "lb2" && s.Health == h
						}
						if !ok {
							missing++
							ex = rsOf(0, i)
						}
					}
					lb1.mu.Lock()
					p := lb1.peers["lb2"]
					b.Logf("slow: %s, %d still missing (e.g. %v: lb1 has %v seq %d, peer seq %d alive %v); lb2 self seq %d queue %d; lb3 queue %d; lb1 queue %d",
						h, missing, ex, p.state.Health[ex], p.itemSeq[ex], p.state.Seq, p.alive, lb2.self.Seq, lb2.queue.len(), nodes[2].queue.len(), lb1.queue.len())
					lb1.mu.Unlock()
				}
				if time.Since(start) > 10*time.Second {
					b.Fatalf("lb1 did not see 100 real servers %s on lb2 within 10s", h)
				}
				time.Sleep(time.Millisecond)
			}
			worst = max(worst, time.Since(start))
			b.Logf("%s: %s", h, time.Since(start).Round(time.Millisecond))
		}
	}
	b.StopTimer()
	b.ReportMetric(steady, "steady-B/s/director")
	b.ReportMetric(100*steadyCPU, "steady-%core/director")
	b.ReportMetric(float64(total()-bytes1)/float64(b.N), "B/massfailure+recovery")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms/100-changes")
}
