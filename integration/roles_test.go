package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp/vip"
	"golang.org/x/net/dns/dnsmessage"
)

// runRole makes this test binary a helper process inside a network
// namespace (started with `ip netns exec NS <self>`), so the tests need no
// other program in the VM:
//
//	web:  HTTP servers on $LVSHA_LISTEN (addresses separated by blanks;
//	      "tls:ADDR" serves HTTPS with a fresh self-signed certificate,
//	      "dns:ADDR" answers DNS queries over UDP with NOERROR,
//	      "smtp:ADDR" greets and answers HELO)
//	      answering "$LVSHA_NAME\n"
//	get:  one GET of $LVSHA_URL, body to stdout, exit 1 on failure
//	hold: GET $LVSHA_URL, print "first BODY", wait for a line on stdin,
//	      GET again on the same connection, print "second BODY reused=BOOL"
//	race: start a GET of $LVSHA_URL every 10 ms for $LVSHA_DURATION, each
//	      on its own connection, and print when the first answer from
//	      $LVSHA_NAME arrived (unix ms), or 0; then the last advert at
//	      priority $LVSHA_PRIO and the first gratuitous ARP from $LVSHA_MAC
//	      after it (unix µs, or 0)
//	bfdflood: TestBFDFlood's invalid BFD packets at $LVSHA_DST, forged
//	      from $LVSHA_PEER and naming discriminator $LVSHA_DISCR, $LVSHA_RATE
//	      a second for $LVSHA_DURATION; prints how many it sent
//	gossipflood: TestGossipFlood's garbage at the gossip port $LVSHA_DST,
//	      UDP $LVSHA_RATE a second and TCP, for $LVSHA_DURATION; prints
//	      what it sent
//	vipholder: hold $LVSHA_VIPS (prefixes) for $LVSHA_IFACE the way
//	      vip_holder = $LVSHA_HOLDER does, print "ready", wait
//	hcserve: every real server of BenchmarkHealthChecks, timing the
//	      SYNs that arrive on $LVSHA_IFACE (hcServe)
func runRole(role string) int {
	switch role {
	case "web":
		return web(os.Getenv("LVSHA_NAME"), strings.Fields(os.Getenv("LVSHA_LISTEN")))
	case "get":
		client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(os.Getenv("LVSHA_URL"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "get:", err)
			return 1
		}
		defer resp.Body.Close()
		io.Copy(os.Stdout, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return 1
		}
		return 0
	case "hold":
		return hold(os.Getenv("LVSHA_URL"))
	case "flood":
		return flood(os.Getenv("LVSHA_SRC"), os.Getenv("LVSHA_RATE"), os.Getenv("LVSHA_DURATION"))
	case "bfdflood":
		return bfdFlood(os.Getenv("LVSHA_PEER"), os.Getenv("LVSHA_DST"), os.Getenv("LVSHA_DISCR"), os.Getenv("LVSHA_RATE"), os.Getenv("LVSHA_DURATION"))
	case "bfdacceptflood":
		return bfdAcceptFlood(os.Getenv("LVSHA_DST"), os.Getenv("LVSHA_SRC"), os.Getenv("LVSHA_COUNT"), os.Getenv("LVSHA_RATE"), os.Getenv("LVSHA_DURATION"))
	case "gossipflood":
		return gossipFlood(os.Getenv("LVSHA_DST"), os.Getenv("LVSHA_RATE"), os.Getenv("LVSHA_DURATION"))
	case "poll":
		return poll(os.Getenv("LVSHA_URL"), os.Getenv("LVSHA_DURATION"))
	case "race":
		prio, _ := strconv.Atoi(os.Getenv("LVSHA_PRIO"))
		return race(os.Getenv("LVSHA_URL"), os.Getenv("LVSHA_DURATION"), os.Getenv("LVSHA_NAME"), os.Getenv("LVSHA_MAC"), prio)
	case "killer":
		prio, _ := strconv.Atoi(os.Getenv("LVSHA_PRIO"))
		k, err := parseKillPlan(os.Getenv("LVSHA_KILL"))
		limit, err2 := time.ParseDuration(os.Getenv("LVSHA_DURATION"))
		if err != nil || err2 != nil || k.pgid == 0 {
			fmt.Fprintln(os.Stderr, "killer: bad LVSHA_KILL or LVSHA_DURATION:", err, err2)
			return 2
		}
		return killer(k, prio, limit)
	case "vipholder":
		return vipHolder(os.Getenv("LVSHA_IFACE"), strings.Fields(os.Getenv("LVSHA_VIPS")))
	case "hcserve":
		return hcServe(os.Getenv("LVSHA_IFACE"), os.Getenv("LVSHA_INTERVAL"))
	case "hcfloor":
		n, _ := strconv.Atoi(os.Getenv("LVSHA_N"))
		return hcFloor(n, os.Getenv("LVSHA_FIN") == "true")
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

func web(name string, listen []string) int {
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name+"\n") })
	var cert *tls.Certificate
	errc := make(chan error, len(listen))
	var servers []*http.Server
	for _, addr := range listen {
		srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		if a, ok := strings.CutPrefix(addr, "dns:"); ok {
			pc, err := net.ListenPacket("udp", a)
			if err != nil {
				fmt.Fprintln(os.Stderr, "web:", err)
				return 1
			}
			defer pc.Close()
			go serveDNS(pc)
			continue
		}
		if a, ok := strings.CutPrefix(addr, "smtp:"); ok {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				fmt.Fprintln(os.Stderr, "web:", err)
				return 1
			}
			defer ln.Close()
			go serveSMTP(ln, name)
			continue
		}
		if a, ok := strings.CutPrefix(addr, "tls:"); ok {
			if cert == nil {
				c, err := selfSigned()
				if err != nil {
					fmt.Fprintln(os.Stderr, "web:", err)
					return 1
				}
				cert = &c
			}
			srv.Addr = a
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
			go func() { errc <- srv.ListenAndServeTLS("", "") }()
			continue
		}
		go func() { errc <- srv.ListenAndServe() }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
		for _, srv := range servers {
			srv.Close()
		}
		return 0
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "web:", err)
		return 1
	}
}

// serveDNS answers every query with NOERROR and no answer, which is all
// a DNS_CHECK or an lvsha dns check asks of a server.
func serveDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var q dnsmessage.Message
		if q.Unpack(buf[:n]) != nil {
			continue
		}
		r := dnsmessage.Message{Header: dnsmessage.Header{ID: q.Header.ID, Response: true, RecursionDesired: q.Header.RecursionDesired},
			Questions: q.Questions}
		if b, err := r.Pack(); err == nil {
			pc.WriteTo(b, from)
		}
	}
}

// serveSMTP greets, answers HELO and QUIT: enough for SMTP_CHECK and an
// lvsha smtp check.
func serveSMTP(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "220 %s ESMTP\r\n", name)
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				cmd := strings.ToUpper(strings.TrimSpace(sc.Text()))
				switch {
				case strings.HasPrefix(cmd, "HELO"), strings.HasPrefix(cmd, "EHLO"):
					fmt.Fprintf(c, "250 %s\r\n", name)
				case cmd == "QUIT":
					fmt.Fprint(c, "221 bye\r\n")
					return
				default:
					fmt.Fprint(c, "502 not here\r\n")
				}
			}
		}()
	}
}

// selfSigned makes a throwaway certificate: checks (keepalived's SSL_GET,
// lvsha's https) do not verify it.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lvsha-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func hold(url string) int {
	tr := &http.Transport{MaxConnsPerHost: 1, IdleConnTimeout: 10 * time.Minute}
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	get := func() (string, bool, error) {
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
		if err != nil {
			return "", false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", false, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), reused, err
	}
	body, _, err := get()
	if err != nil {
		fmt.Println("first error", err)
		return 1
	}
	fmt.Printf("first %s", body)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Println("stdin", err)
		return 1
	}
	body, reused, err := get()
	if err != nil {
		fmt.Println("second error", err)
		return 1
	}
	fmt.Printf("second %s reused=%v\n", trimNL(body), reused)
	return 0
}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}

func vipHolder(iface string, vips []string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "vipholder:", err); return 1 }
	in := conf.VRRPInstance{Name: "t", Interface: iface, VIPHolder: os.Getenv("LVSHA_HOLDER"), GARPRepeat: 2}
	for _, v := range vips {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return fail(err)
		}
		in.VirtualIPs = append(in.VirtualIPs, p)
	}
	h, err := vip.OpenHolder(slog.New(slog.NewTextHandler(os.Stderr, nil)), in, "lvsha-vip0")
	if err != nil {
		return fail(err)
	}
	if err := h.Acquire(context.Background()); err != nil {
		return fail(err)
	}
	fmt.Println("ready")
	// Renewed as a master renews them: their lifetime is what outlives
	// this process when it is killed.
	go func() {
		for range time.Tick(vip.Lifetime(in.AdvertInterval) / 4) {
			h.Refresh()
		}
	}()
	if err := h.Run(context.Background()); err != nil {
		return fail(err)
	}
	return 0
}
