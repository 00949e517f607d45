package cluster

import (
	"net/netip"
	"testing"
)

// FuzzDecode feeds the decoders what any host that has the key could
// send: they must fail cleanly, never panic or allocate past the input.
func FuzzDecode(f *testing.F) {
	f.Add(encodeState(sampleState(3)))
	f.Add(encodeDelta(delta{origin: "lb1", epoch: 1, seq: 2, kind: kindHealth, rs: RealServer{"web", netip.MustParseAddrPort("192.0.2.10:80")}, health: HealthDown}))
	f.Add(encodeDelta(delta{origin: "lb1", epoch: 1, seq: 3, kind: kindVRRP, inst: Instance{Name: "vi1", VRID: 9, State: StateMaster}}))
	f.Add(encodeMeta(Meta{Name: "lb1", Instances: []Instance{{Name: "vi1"}}}, 512))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := decodeState(b); err == nil {
			if _, err := decodeState(encodeState(s)); err != nil {
				t.Errorf("re-encoded state does not decode: %v", err)
			}
		}
		_, _ = decodeDelta(b)
		_, _ = decodeMeta(b)
	})
}
