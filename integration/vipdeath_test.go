package integration

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvsha/lvsha/vrrp/vip"
)

// TestVIPDiesWithDaemon: with vip_holder = "tun", VIPs held on lvsha's tun
// device serve clients through the real interface (IPv4 via the kernel's
// ARP, IPv6 via lvsha's neighbour responder) and vanish by themselves when
// the holding process is SIGKILLed, so no second holder is left. With
// vip_holder = "interface" (keepalived's placement) they sit on the
// interface and outlive the process until their lifetime, no longer
// renewed, runs out: the documented trade-off.
func TestVIPDiesWithDaemon(t *testing.T) {
	for _, holder := range []string{"tun", "interface"} {
		t.Run(holder, func(t *testing.T) { testVIPHolder(t, holder) })
	}
}

func testVIPHolder(t *testing.T, holderMode string) {
	lb, client := newNetns(t, "dlb"), newNetns(t, "dcl")
	for _, ns := range []string{lb, client} {
		inNS(t, ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	}
	veth(t, lb, "10.78.0.1/24", client, "10.78.0.2/24")
	ifLB, ifCl := lastVeth(t, lb), lastVeth(t, client)
	sh(t, "ip", "-n", lb, "addr", "add", "2001:db8:78::1/64", "dev", ifLB, "nodad")
	sh(t, "ip", "-n", client, "addr", "add", "2001:db8:78::2/64", "dev", ifCl, "nodad")
	startIn(t, lb, []string{envRole + "=web", "LVSHA_NAME=lb", "LVSHA_LISTEN=:80"}, self(t))

	holder := exec.Command("ip", "netns", "exec", lb, self(t))
	holder.Env = append(os.Environ(), envRole+"=vipholder", "LVSHA_IFACE="+ifLB, "LVSHA_HOLDER="+holderMode, "LVSHA_VIPS=10.78.0.100/24 2001:db8:78::100/64")
	holder.Stderr = os.Stderr
	out, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProc(holder) })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("vip holder: %q %v", line, err)
	}
	dev, want4, want6 := "lvsha-vip0", "10.78.0.100/32", "2001:db8:78::100/128"
	if holderMode == "interface" {
		dev, want4, want6 = ifLB, "10.78.0.100/24", "2001:db8:78::100/64"
	}
	addrs := inNS(t, lb, "ip", "addr", "show", "dev", dev)
	if !strings.Contains(addrs, want4) || !strings.Contains(addrs, want6) {
		t.Fatalf("VIPs not on %s as %s and %s:\n%s", dev, want4, want6, addrs)
	}
	get := func(url string) (string, error) { return httpGet(t, client, url) }
	for _, url := range []string{"http://10.78.0.100/", "http://[2001:db8:78::100]/"} {
		if body, err := get(url); err != nil || body != "lb" {
			t.Fatalf("client GET %s through the real interface: %q %v", url, body, err)
		}
	}

	holder.Process.Signal(syscall.SIGKILL)
	holder.Wait()
	if holderMode == "interface" {
		// Renewed every Lifetime/4, so at least 3/4 of it is left.
		if a := inNS(t, lb, "ip", "addr"); !strings.Contains(a, "10.78.0.100") || !strings.Contains(a, "2001:db8:78::100") {
			t.Errorf("vip_holder = interface: VIPs gone at once after SIGKILL; the documented behaviour is that they stay until their lifetime runs out:\n%s", a)
		}
		life := vip.Lifetime(0)
		gone := eventually(t, "interface VIPs expired after SIGKILL", life+5*time.Second, func() bool {
			a := inNS(t, lb, "ip", "addr")
			return !strings.Contains(a, "10.78.0.100") && !strings.Contains(a, "2001:db8:78::100")
		})
		t.Logf("interface VIPs expired %v after SIGKILL of their holder (lifetime %v)", gone.Round(time.Millisecond), life)
		return
	}
	gone := eventually(t, "VIPs gone after SIGKILL", 5*time.Second, func() bool {
		a := inNS(t, lb, "ip", "addr")
		return !strings.Contains(a, "10.78.0.100") && !strings.Contains(a, "2001:db8:78::100")
	})
	t.Logf("VIPs removed by the kernel %v after SIGKILL of their holder", gone.Round(time.Millisecond))
	for _, url := range []string{"http://10.78.0.100/", "http://[2001:db8:78::100]/"} {
		if body, err := get(url); err == nil {
			t.Errorf("client still reaches %s after the holder died (got %q)", url, body)
		}
	}
}
