package vip

import (
	"bytes"
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
)

// goid is the calling goroutine's number, from its stack trace's header.
func goid() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(buf, []byte("goroutine ")), []byte(" "))
	return string(id)
}

// recordingHandle records the goroutine of every request it serves.
type recordingHandle struct {
	mu     sync.Mutex
	on     map[string]int
	closed bool
	err    error
}

func (r *recordingHandle) rec() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on[goid()]++
}

func (r *recordingHandle) LinkByName(string) (netlink.Link, error) {
	r.rec()
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "d0", Index: 7}}, r.err
}
func (r *recordingHandle) AddrReplace(netlink.Link, *netlink.Addr) error { r.rec(); return r.err }
func (r *recordingHandle) AddrDel(netlink.Link, *netlink.Addr) error     { r.rec(); return r.err }
func (r *recordingHandle) AddrList(netlink.Link, int) ([]netlink.Addr, error) {
	r.rec()
	return make([]netlink.Addr, 2), r.err
}
func (r *recordingHandle) Close() { r.closed = true }

// Every request of a Host's instances, from whatever goroutine, is made
// on the worker's one goroutine (the 64 KiB reply buffer on the stack
// grows that goroutine's alone), with its results and errors returned to
// the caller; Close joins the worker (goleak checks) and closes the
// handle.
func TestNetlinkWorker(t *testing.T) {
	boom := errors.New("boom")
	for _, tt := range []struct {
		name string
		err  error
	}{{"results", nil}, {"errors", boom}} {
		t.Run(tt.name, func(t *testing.T) {
			h := &recordingHandle{on: map[string]int{}, err: tt.err}
			w := newNetlinkWorker(h, nil)
			callers := map[string]bool{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					mu.Lock()
					callers[goid()] = true
					mu.Unlock()
					l, err := w.LinkByName("d0")
					if !errors.Is(err, tt.err) || l.Attrs().Index != 7 {
						t.Errorf("LinkByName: %v, %v", l, err)
					}
					if err := w.AddrReplace(l, &netlink.Addr{}); !errors.Is(err, tt.err) {
						t.Errorf("AddrReplace: %v, want %v", err, tt.err)
					}
					if err := w.AddrDel(l, &netlink.Addr{}); !errors.Is(err, tt.err) {
						t.Errorf("AddrDel: %v, want %v", err, tt.err)
					}
					if as, err := w.AddrList(l, 0); !errors.Is(err, tt.err) || len(as) != 2 {
						t.Errorf("AddrList: %d addresses, %v", len(as), err)
					}
				})
			}
			wg.Wait()
			w.Close()
			if len(h.on) != 1 {
				t.Fatalf("requests made on %d goroutines, want 1: %v", len(h.on), h.on)
			}
			for id, n := range h.on {
				if callers[id] || n != 32 {
					t.Errorf("goroutine %s (a caller: %v) made %d requests, want the worker making all 32", id, callers[id], n)
				}
			}
			if !h.closed {
				t.Error("Close left the handle open")
			}
		})
	}
}
