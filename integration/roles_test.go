package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp/vip"
)

// runRole makes this test binary a helper process inside a network
// namespace (started with `ip netns exec NS <self>`), so the tests need no
// other program in the VM:
//
//	web:  an HTTP server on $LVSHA_LISTEN answering "$LVSHA_NAME\n"
//	get:  one GET of $LVSHA_URL, body to stdout, exit 1 on failure
//	hold: GET $LVSHA_URL, print "first BODY", wait for a line on stdin,
//	      GET again on the same connection, print "second BODY reused=BOOL"
//	vipholder: hold $LVSHA_VIPS (prefixes) for $LVSHA_IFACE the way
//	      vip_holder = $LVSHA_HOLDER does, print "ready", wait
func runRole(role string) int {
	switch role {
	case "web":
		name := os.Getenv("LVSHA_NAME")
		srv := &http.Server{
			Addr: os.Getenv("LVSHA_LISTEN"),
			Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, name+"\n")
			}),
			ReadHeaderTimeout: 5 * time.Second,
		}
		go func() {
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
			<-sig
			srv.Close()
		}()
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			fmt.Fprintln(os.Stderr, "web:", err)
			return 1
		}
		return 0
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
	case "poll":
		return poll(os.Getenv("LVSHA_URL"), os.Getenv("LVSHA_DURATION"))
	case "vipholder":
		return vipHolder(os.Getenv("LVSHA_IFACE"), strings.Fields(os.Getenv("LVSHA_VIPS")))
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
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
	if err := h.Run(context.Background()); err != nil {
		return fail(err)
	}
	return 0
}
