package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// The control socket speaks HTTP/JSON over a unix socket: curl can read it
// (curl --unix-socket /run/lvsha/lvsha.sock http://lvsha/status) and the
// client needs nothing beyond net/http.

// statusSource is what the control server needs from the daemon.
type statusSource interface {
	Status() (*Report, error)
}

// reloader is a statusSource that also reloads and plans reloads, and
// takes real servers out by hand, over POST /reload, /plan and /manual,
// and tells its recent events over GET /events.
type reloader interface {
	handleEvents(w http.ResponseWriter, r *http.Request)
	handleReload(w http.ResponseWriter, r *http.Request)
	handlePlan(w http.ResponseWriter, r *http.Request)
	handleManual(w http.ResponseWriter, r *http.Request)
}

// listenControl opens the control socket at path. A stale socket left by a
// killed daemon is replaced, but a socket some live daemon still answers on
// is not stolen.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another lvsha is already serving on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	// Status carries nothing secret, but only root may change things later
	// over this socket: keep it owner-only from the start.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

// shareControl opens the control socket at path to group gid: mode 0660,
// of that group (director.control_socket_group). The peer check admits
// the group's members too; this lets them connect at all.
func shareControl(path string, gid uint32) error {
	if err := os.Chown(path, -1, int(gid)); err != nil {
		return fmt.Errorf("control socket %s: give it to group %d: %w", path, gid, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	return nil
}

// serveControl serves status on ln until ctx is done, then removes the
// socket file.
func serveControl(ctx context.Context, ln net.Listener, src statusSource, log *slog.Logger) error {
	path := ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		rep, err := src.Status()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, rep)
	})
	if rl, ok := src.(reloader); ok {
		mux.HandleFunc("POST /reload", rl.handleReload)
		mux.HandleFunc("POST /plan", rl.handlePlan)
		mux.HandleFunc("POST /manual", rl.handleManual)
		mux.HandleFunc("GET /events", rl.handleEvents)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
		_ = os.Remove(path)
		return nil
	case err := <-done:
		return fmt.Errorf("control socket %s: %w", path, err)
	}
}

// The waits before the control socket is opened again after a failure.
const (
	minControlRetry = time.Second
	maxControlRetry = 30 * time.Second
)

type backoff struct{ min, max time.Duration }

// superviseControl serves status on ln until ctx is done. A failure of
// the socket is logged at once, and the socket opened again at path
// (listen) after a wait that doubles from b.min to b.max, until it
// holds. Status is how an operator sees the director, so it comes back
// without a restart; the table and VRRP do not depend on it and keep
// running: stopping the daemon for it would move the VIPs for a fault of
// the monitoring channel.
func superviseControl(ctx context.Context, log *slog.Logger, ln net.Listener, path string, src statusSource,
	listen func(path string) (net.Listener, error), b backoff) {
	wait := time.Duration(0)
	for {
		if ln != nil {
			err := serveControl(ctx, ln, src, log)
			if err == nil {
				return
			}
			log.Error("control socket failed; opening it again", "op", "control", "error", err)
			ln = nil
		}
		wait = min(max(2*wait, b.min), b.max)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		var err error
		if ln, err = listen(path); err != nil {
			log.Error("control socket: cannot open it again", "op", "control", "error", err, "retry_in", min(2*wait, b.max))
			continue
		}
		log.Info("control socket open again", "op", "control", "control_socket", path)
		wait = 0
	}
}

// fetchStatus asks the daemon on path for its report.
func fetchStatus(ctx context.Context, path string) (*Report, error) {
	var rep Report
	if err := controlCall(ctx, path, http.MethodGet, "/status", nil, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// controlCall sends one request to the daemon's control socket at socket
// and decodes its JSON answer into out. A reload may wait for the daemon
// loop and for VRRP instances to take their change: the bound is long.
func controlCall(ctx context.Context, socket, method, path string, body io.Reader, out any) error {
	client := &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		},
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://lvsha"+path, body)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("no lvsha daemon is listening on %s (is `lvsha run` running? use -s or -c to name its socket): %w", socket, err)
		case errors.Is(err, os.ErrPermission):
			return fmt.Errorf("control socket %s: permission denied (run as root, or as a member of its control_socket_group): %w", socket, err)
		}
		return fmt.Errorf("query %s: %w", socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read %s from %s: %w", path, socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("daemon on %s: %s: %s", socket, resp.Status, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s from %s: %w", path, socket, err)
	}
	return nil
}
