package instance

import (
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"testing"
)

// droppingConn is a wire that drops adverts before the instance reads
// them, as a shared link's endpoint does.
type droppingConn struct {
	fakeConn
	drops map[string]uint64
}

func (c *droppingConn) Drops() map[string]uint64 { return c.drops }

// An instance's status shows what its wire dropped before it could read,
// beside what it dropped itself; a wire of its own has nothing to add.
func TestStatusWireDrops(t *testing.T) {
	tests := []struct {
		name string
		conn AdvertConn
		want map[string]uint64
	}{
		{"own wire", &fakeConn{}, map[string]uint64{}},
		{"shared link", &droppingConn{drops: map[string]uint64{"not_peer": 2, "queue_full": 1}},
			map[string]uint64{"not_peer": 2, "queue_full": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), testConfig(), netip.MustParseAddr("10.0.0.2"), tt.conn, &fakeHolder{})
			if err != nil {
				t.Fatal(err)
			}
			defer i.Close()
			if got := i.Status().Dropped; !maps.Equal(got, tt.want) {
				t.Errorf("Dropped = %v, want %v", got, tt.want)
			}
		})
	}
}
