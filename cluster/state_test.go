package cluster

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var cmpAddrs = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
var cmpAddrPorts = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

func sampleState(rs int) *State {
	s := &State{
		Name: "lb1", Version: "1.2.3", Epoch: 1_700_000_000_000_000_000, Seq: 42,
		Digests: Digests{Config: sha256.Sum256([]byte("c")),
			VirtualServers: map[string]Short{"web": {1, 2, 3, 4, 5, 6, 7, 8}, "dns": {9}},
			Instances:      map[string]Short{"vi1": {7}}},
		Instances: []Instance{
			{Name: "vi1", VRID: 51, State: StateMaster, Priority: 150, Addr: netip.MustParseAddr("192.0.2.1")},
			{Name: "vi6", VRID: 51, IPv6: true, State: StateBackup, Priority: 100, Addr: netip.MustParseAddr("fe80::1")},
			{Name: "vi7", VRID: 52, State: StateFault},
		},
		Health: map[RealServer]Health{},
	}
	for i := range rs {
		vs := fmt.Sprintf("vs%d", i/100)
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		s.Health[RealServer{vs, netip.AddrPortFrom(a, 80)}] = Health(1 + i%2)
	}
	s.Health[RealServer{"v6", netip.MustParseAddrPort("[2001:db8::10]:443")}] = HealthUnknown
	return s
}

func TestStateRoundTrip(t *testing.T) {
	want := sampleState(250)
	got, err := decodeState(encodeState(want))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got, cmpAddrs, cmpAddrPorts); d != "" {
		t.Errorf("state round trip (-want +got):\n%s", d)
	}
}

// TestStateSize measures the push/pull payload at 10,000 real servers
// (issue #19: well under memberlist's 20 MiB cap). It is also the size of
// every push/pull swap, so it is bounded tighter than the cap demands.
func TestStateSize(t *testing.T) {
	b := encodeState(sampleState(10_000))
	t.Logf("state of 10,000 real servers in 100 virtual servers: %d bytes (%.1f per real server)", len(b), float64(len(b))/10_000)
	if len(b) > 100_000 {
		t.Errorf("state of 10,000 real servers is %d bytes, want at most 100,000 (memberlist caps it at 20 MiB)", len(b))
	}
}

// TestDecodeRejectsTruncated checks every cut of a valid message fails
// instead of decoding a partial state as if whole.
func TestDecodeRejectsTruncated(t *testing.T) {
	full := encodeState(sampleState(3))
	for i := range len(full) {
		if _, err := decodeState(full[:i]); err == nil {
			t.Fatalf("decodeState of the first %d of %d bytes succeeded", i, len(full))
		}
	}
	d := encodeDelta(delta{origin: "lb1", epoch: 1, seq: 2, kind: kindHealth, rs: RealServer{"web", netip.MustParseAddrPort("192.0.2.10:80")}, health: HealthDown})
	for i := range len(d) {
		if _, err := decodeDelta(d[:i]); err == nil {
			t.Fatalf("decodeDelta of the first %d of %d bytes succeeded", i, len(d))
		}
	}
}

// TestDecodeForgedLength checks a length beyond the message is refused
// before anything is allocated for it.
func TestDecodeForgedLength(t *testing.T) {
	b := []byte{kindState, 0x80, 0x80, 0x80, 0x80, 0x08} // name of 2^31 bytes
	if _, err := decodeState(b); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("decodeState of a forged length: %v, want an error saying it exceeds the message", err)
	}
}

func TestDeltaRoundTrip(t *testing.T) {
	for _, x := range []delta{
		{origin: "lb2", epoch: 5, seq: 9, kind: kindHealth, rs: RealServer{"web", netip.MustParseAddrPort("[2001:db8::1]:80")}, health: HealthUp},
		{origin: "lb2", epoch: 5, seq: 10, kind: kindVRRP, inst: Instance{Name: "vi1", VRID: 255, IPv6: true, State: StateFault, Priority: 1, Addr: netip.MustParseAddr("2001:db8::2")}},
	} {
		got, err := decodeDelta(encodeDelta(x))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(x, got, cmp.AllowUnexported(delta{}), cmpAddrs, cmpAddrPorts); d != "" {
			t.Errorf("delta round trip (-want +got):\n%s", d)
		}
	}
}

// TestMetaFits checks the node meta stays within memberlist's 512 bytes
// however many instances there are, keeping as many as fit and saying
// when it dropped some.
func TestMetaFits(t *testing.T) {
	tests := []struct {
		name      string
		instances int
		wantKept  int
		wantTrunc bool
	}{
		{"none", 0, 0, false},
		{"a few", 3, 3, false},
		// 104 bytes of kind, name, version and digest, 2 of flags and
		// count, 10 per instance "viNNN".
		{"as many as fit", 40, 40, false},
		{"one too many", 41, 40, true},
		{"too many", 300, 40, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Meta{Name: strings.Repeat("n", 100), Version: "v1.2.3", ConfigDigest: sha256.Sum256([]byte("x"))}
			for i := range tt.instances {
				m.Instances = append(m.Instances, Instance{Name: fmt.Sprintf("vi%03d", i), VRID: uint8(i), State: StateMaster, Priority: 100, Addr: netip.MustParseAddr("192.0.2.1")})
			}
			b := encodeMeta(m, 512)
			if len(b) > 512 {
				t.Fatalf("meta of %d bytes, want at most 512", len(b))
			}
			got, err := decodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Instances) != tt.wantKept || got.Truncated != tt.wantTrunc {
				t.Errorf("kept %d instances, truncated %t; want %d, %t", len(got.Instances), got.Truncated, tt.wantKept, tt.wantTrunc)
			}
			if got.Name != m.Name[:maxMetaName] || got.ConfigDigest != m.ConfigDigest {
				t.Errorf("meta name %q digest %x, want %q %x", got.Name, got.ConfigDigest, m.Name[:maxMetaName], m.ConfigDigest)
			}
			if tt.wantKept > 0 && (got.Instances[0].Name != "vi000" || got.Instances[0].Priority != 100 || got.Instances[0].State != StateMaster || got.Instances[0].Addr.IsValid()) {
				t.Errorf("first instance %+v, want vi000 MASTER at 100 without an address", got.Instances[0])
			}
		})
	}
}

func TestParseMemberlistLine(t *testing.T) {
	tests := []struct {
		in        string
		wantLevel slog.Level
		wantMsg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[WARN] memberlist: Was able to connect to lb2 over TCP but UDP probes failed", slog.LevelWarn, "Was able to connect to lb2 over TCP but UDP probes failed"},
		{"[ERR] memberlist: Failed to receive: No installed keys could decrypt the message", slog.LevelError, "Failed to receive: No installed keys could decrypt the message"},
		{"[INFO] memberlist: Marking lb3 as failed", slog.LevelInfo, "Marking lb3 as failed"},
		{"no level at all", slog.LevelInfo, "no level at all"},
		{"[NOTALEVEL] x", slog.LevelInfo, "[NOTALEVEL] x"},
	}
	for _, tt := range tests {
		level, msg := parseMemberlistLine(tt.in)
		if level != tt.wantLevel || msg != tt.wantMsg {
			t.Errorf("parseMemberlistLine(%q) = %v %q, want %v %q", tt.in, level, msg, tt.wantLevel, tt.wantMsg)
		}
	}
}

// TestPeerMerge checks the order rules: a late broadcast never undoes a
// newer value, a full state drops what its director forgot, and a
// restarted director's old state is gone.
func TestPeerMerge(t *testing.T) {
	rsA := RealServer{"web", netip.MustParseAddrPort("192.0.2.10:80")}
	rsB := RealServer{"web", netip.MustParseAddrPort("192.0.2.11:80")}
	h := func(epoch int64, seq uint64, rs RealServer, v Health) delta {
		return delta{origin: "lb2", epoch: epoch, seq: seq, kind: kindHealth, rs: rs, health: v}
	}
	full := func(epoch int64, seq uint64, m map[RealServer]Health) *State {
		return &State{Name: "lb2", Epoch: epoch, Seq: seq, Health: m}
	}
	type step struct {
		d *delta
		s *State
	}
	tests := []struct {
		name  string
		steps []step
		want  map[RealServer]Health
	}{
		{"deltas in order", []step{{d: ptr(h(1, 1, rsA, HealthUp))}, {d: ptr(h(1, 2, rsA, HealthDown))}}, map[RealServer]Health{rsA: HealthDown}},
		{"a late delta is ignored", []step{{d: ptr(h(1, 2, rsA, HealthDown))}, {d: ptr(h(1, 1, rsA, HealthUp))}}, map[RealServer]Health{rsA: HealthDown}},
		{"an older full state keeps a newer delta", []step{{d: ptr(h(1, 5, rsA, HealthDown))}, {s: full(1, 4, map[RealServer]Health{rsA: HealthUp, rsB: HealthUp})}},
			map[RealServer]Health{rsA: HealthDown, rsB: HealthUp}},
		{"a newer full state drops what it no longer holds", []step{{d: ptr(h(1, 1, rsA, HealthUp))}, {d: ptr(h(1, 2, rsB, HealthUp))}, {s: full(1, 3, map[RealServer]Health{rsB: HealthDown})}},
			map[RealServer]Health{rsB: HealthDown}},
		{"an older full state does not drop a newer delta's server", []step{{d: ptr(h(1, 7, rsA, HealthUp))}, {s: full(1, 6, map[RealServer]Health{})}},
			map[RealServer]Health{rsA: HealthUp}},
		{"a restart starts over", []step{{d: ptr(h(1, 9, rsA, HealthDown))}, {s: full(2, 1, map[RealServer]Health{rsB: HealthUp})}},
			map[RealServer]Health{rsB: HealthUp}},
		{"the old life's messages are ignored after a restart", []step{{s: full(2, 1, map[RealServer]Health{rsB: HealthUp})}, {d: ptr(h(1, 9, rsA, HealthDown))}},
			map[RealServer]Health{rsB: HealthUp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPeer("lb2")
			for _, s := range tt.steps {
				if s.d != nil {
					p.applyDelta(*s.d)
				} else {
					p.mergeState(s.s)
				}
			}
			if d := cmp.Diff(tt.want, p.state.Health, cmpAddrPorts); d != "" {
				t.Errorf("health (-want +got):\n%s", d)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
