package integration

import (
	"syscall"
	"testing"
	"time"
)

// TestHungMaster: a master whose daemon hangs (SIGSTOP: process alive, tun
// device open, no adverts) loses its VIP when the VIP's lifetime runs out,
// so at most one director holds it for long; the backup takes over. When
// the daemon resumes it takes the VIP back (higher priority).
func TestHungMaster(t *testing.T) {
	const vip = "10.79.0.100"
	_, ds := newDirectors(t, vip+"/24", func(int) string { return "" }, 150, 100)
	lb1, lb2 := ds[0], ds[1]
	lb1.start(t)
	lb2.start(t)
	eventually(t, "lb1 master", 20*time.Second, func() bool { return lb1.holdsVIP(t, vip) && !lb2.holdsVIP(t, vip) })
	syscall.Kill(-lb1.cmd.Process.Pid, syscall.SIGSTOP)
	defer syscall.Kill(-lb1.cmd.Process.Pid, syscall.SIGCONT)
	took := eventually(t, "lb2 takes over from a hung master", 10*time.Second, func() bool { return lb2.state() == "MASTER" && lb2.holdsVIP(t, vip) })
	gone := eventually(t, "the hung master's VIP expires", 10*time.Second, func() bool { return !lb1.holdsVIP(t, vip) })
	t.Logf("lb1 hung (SIGSTOP): lb2 master after %v; lb1's VIP expired %v later", took.Round(time.Millisecond), gone.Round(time.Millisecond))
	syscall.Kill(-lb1.cmd.Process.Pid, syscall.SIGCONT)
	eventually(t, "lb1 resumes as master", 20*time.Second, func() bool {
		return lb1.state() == "MASTER" && lb2.state() == "BACKUP" && lb1.holdsVIP(t, vip) && !lb2.holdsVIP(t, vip)
	})
}

// TestNoPreempt: with preempt = false, a returning higher-priority director
// stays backup while the current master lives.
func TestNoPreempt(t *testing.T) {
	const vip = "10.79.0.100"
	_, ds := newDirectors(t, vip+"/24", func(int) string { return "preempt = false\n" }, 150, 100)
	lb1, lb2 := ds[0], ds[1]
	lb2.start(t)
	eventually(t, "lb2 master alone", 20*time.Second, func() bool { return lb2.state() == "MASTER" })
	lb1.start(t)
	eventually(t, "lb1 backup", 20*time.Second, func() bool { return lb1.state() == "BACKUP" })
	for i := 0; i < 10; i++ {
		if a, b := lb1.state(), lb2.state(); a != "BACKUP" || b != "MASTER" {
			t.Fatalf("sample %d: lb1 %s, lb2 %s; want lb2 to stay master (nopreempt)", i, a, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !lb2.holdsVIP(t, vip) || lb1.holdsVIP(t, vip) {
		t.Errorf("VIP holders: lb1 %v lb2 %v; want lb2", lb1.holdsVIP(t, vip), lb2.holdsVIP(t, vip))
	}
}
