package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/conf"
)

// notifier tells systemd (Type=notify) what the daemon is doing, over
// the datagram socket systemd names in NOTIFY_SOCKET: ready once the
// kernel table is first synced, reloading and ready again around each
// reload, stopping at shutdown, and a watchdog ping from the daemon loop
// itself, so that a loop stuck in the kernel or a deadlock stops the pings
// and systemd restarts the daemon. A nil notifier (not under systemd, or
// in tests) does nothing.
type notifier struct {
	log *slog.Logger
	// every is how often the loop pings the watchdog: half of
	// WATCHDOG_USEC, as sd_watchdog_enabled(3) advises; 0 without one.
	every time.Duration
}

// newNotifier reads NOTIFY_SOCKET and WATCHDOG_USEC; nil when systemd
// does not supervise this process. The variables stay set: only the main
// process may notify (NotifyAccess=main), so the hooks that inherit them
// cannot confuse systemd, and go-systemd reads NOTIFY_SOCKET at each send.
func newNotifier(log *slog.Logger) *notifier {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil
	}
	n := &notifier{log: log}
	wd, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		log.Error("systemd watchdog: ignoring WATCHDOG_USEC", "op", "start", "error", err)
	}
	n.every = wd / 2
	return n
}

// send writes one notification; a failure is logged, never fatal: the
// daemon serves traffic whether or not systemd hears of it.
func (n *notifier) send(state string) {
	if n == nil {
		return
	}
	if _, err := sd.SdNotify(false, state); err != nil {
		n.log.Error("systemd notify failed", "op", "notify", "state", strings.ReplaceAll(state, "\n", " "), "error", err)
	}
}

// ready says the daemon serves cfg: the first kernel sync is done and
// VRRP runs.
func (n *notifier) ready(cfg *conf.Config) {
	n.send(sd.SdNotifyReady + "\nSTATUS=" + running(cfg))
}

// running is what STATUS= says about the configuration in force.
func running(cfg *conf.Config) string {
	return fmt.Sprintf("running %d virtual servers, %d VRRP instances", len(cfg.VirtualServers), len(cfg.VRRPInstances))
}

// reloading starts a reload; MONOTONIC_USEC (CLOCK_MONOTONIC) lets
// systemd tell this reload from an earlier one, as systemd.service(5)
// requires with RELOADING=1.
func (n *notifier) reloading() {
	if n == nil {
		return
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		n.log.Error("systemd notify: read CLOCK_MONOTONIC", "op", "notify", "error", err)
		return
	}
	n.send(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", sd.SdNotifyReloading, ts.Nano()/1000))
}

// reloaded ends a reload with READY=1, and STATUS= says what it did: a
// refused file keeps the previous configuration running, which systemctl
// status should show until a reload succeeds.
func (n *notifier) reloaded(rep *ReloadReport, now *conf.Config) {
	if n == nil {
		return
	}
	status := running(now)
	switch {
	case rep.Refused:
		status = "reload failed: " + strings.Join(rep.Errors, "; ") + "; " + status + " (previous configuration)"
	case len(rep.Errors) > 0:
		status = "reload applied, the kernel refused part of the table: " + strings.Join(rep.Errors, "; ") + "; " + status
	}
	n.send(sd.SdNotifyReady + "\nSTATUS=" + status)
}

// stopping says the daemon is shutting down (VRRP handing over).
func (n *notifier) stopping() {
	n.send(sd.SdNotifyStopping + "\nSTATUS=stopping, kernel table left in place")
}

// watchdogTicks is the channel the loop pings the watchdog on; nil (never
// ready) without a watchdog. stop releases the ticker.
func (n *notifier) watchdogTicks() (ticks <-chan time.Time, stop func()) {
	if n == nil || n.every <= 0 {
		return nil, func() {}
	}
	t := time.NewTicker(n.every)
	return t.C, t.Stop
}

// watchdog pings systemd's watchdog.
func (n *notifier) watchdog() { n.send(sd.SdNotifyWatchdog) }
