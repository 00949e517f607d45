package cluster

import (
	"slices"
	"strings"
	"testing"
)

func TestSendQueue(t *testing.T) {
	type op struct {
		put    string // name=msg to queue, or "" to take
		want   []string
		queued int
	}
	const overhead, roomy = 2, 1 << 10
	tests := []struct {
		name  string
		nodes int
		limit int
		ops   []op
	}{{
		// memberlist#263: a queue of one whose message is replaced, then
		// another message of the same length. memberlist's queue kept one
		// of the two; here both go out.
		name: "replaced then another of one length", nodes: 3, limit: roomy,
		ops: []op{
			{put: "a=a1"}, {want: []string{"a1"}, queued: 1},
			{put: "a=a2"}, {put: "b=b1"},
			{want: []string{"b1", "a2"}, queued: 2},
		},
	}, {
		name: "fewest sent first, newest first among them", nodes: 3, limit: roomy,
		ops: []op{
			{put: "a=a1"}, {want: []string{"a1"}, queued: 1},
			{put: "b=b1"}, {put: "c=c1"},
			{want: []string{"c1", "b1", "a1"}, queued: 3},
		},
	}, {
		name: "what does not fit waits, a smaller one behind it goes", nodes: 3, limit: 2*overhead + 6,
		ops: []op{
			{put: "s=s1"}, {put: "big=big-one"}, {put: "t=t1"},
			// newest first: t1 (4), big-one does not fit, s1 does.
			{want: []string{"t1", "s1"}, queued: 3},
			{want: []string{"big-one"}, queued: 3},
		},
	}, {
		// 8 × ⌈log10(2+1)⌉ = 8 sends with two directors, 16 with ten.
		name: "leaves after its number of sends", nodes: 2, limit: roomy,
		ops: append(append([]op{{put: "a=a1"}}, slices.Repeat([]op{{want: []string{"a1"}, queued: 1}}, 7)...),
			op{want: []string{"a1"}, queued: 0}, op{want: nil, queued: 0}),
	}, {
		name: "a replacement starts its sends over", nodes: 2, limit: roomy,
		ops: append(append(append([]op{{put: "a=a1"}}, slices.Repeat([]op{{want: []string{"a1"}, queued: 1}}, 7)...),
			op{put: "a=a2"}), slices.Repeat([]op{{want: []string{"a2"}, queued: 1}}, 7)...),
	}, {
		name: "ten directors: sixteen sends", nodes: 10, limit: roomy,
		ops: append(append([]op{{put: "a=a1"}}, slices.Repeat([]op{{want: []string{"a1"}, queued: 1}}, 15)...),
			op{want: []string{"a1"}, queued: 0}),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newSendQueue(8, func() int { return tt.nodes })
			for i, o := range tt.ops {
				if o.put != "" {
					name, msg, _ := strings.Cut(o.put, "=")
					q.put(name, []byte(msg))
					continue
				}
				var got []string
				for _, b := range q.take(overhead, tt.limit) {
					got = append(got, string(b))
				}
				if !slices.Equal(got, o.want) {
					t.Fatalf("op %d: take = %q, want %q", i, got, o.want)
				}
				if q.len() != o.queued {
					t.Fatalf("op %d: %d queued after take, want %d", i, q.len(), o.queued)
				}
			}
		})
	}
}

func TestSendQueueClear(t *testing.T) {
	q := newSendQueue(8, func() int { return 3 })
	q.put("a", []byte("a1"))
	q.put("b", []byte("b1"))
	q.clear()
	if q.len() != 0 || q.take(2, 1024) != nil {
		t.Fatalf("after clear: %d queued", q.len())
	}
	q.put("a", []byte("a2"))
	if got := q.take(2, 1024); len(got) != 1 || string(got[0]) != "a2" {
		t.Fatalf("after clear and put: take = %q", got)
	}
}
