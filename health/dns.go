package health

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/lvsha/lvsha/conf"
)

// dnsChecker sends one recursive query over UDP and passes when a reply
// to it comes back with RCODE 0 (NOERROR), as keepalived's DNS_CHECK does:
// the answer section is not inspected, so an empty NOERROR reply passes.
type dnsChecker struct {
	addr    string
	qtype   dnsmessage.Type
	qname   dnsmessage.Name
	timeout time.Duration
}

func newDNSChecker(rs netip.AddrPort, c *conf.Check) (*dnsChecker, error) {
	addr, err := probeAddr(rs, c)
	if err != nil {
		return nil, err
	}
	qt, ok := conf.DNSTypes()[c.DNSType]
	if !ok {
		return nil, fmt.Errorf("dns_type %q: unknown", c.DNSType)
	}
	name := c.DNSName
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	qn, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, fmt.Errorf("dns_name %q: %w", c.DNSName, err)
	}
	return &dnsChecker{addr: addr, qtype: dnsmessage.Type(qt), qname: qn, timeout: c.Timeout}, nil
}

func (c *dnsChecker) String() string {
	return fmt.Sprintf("dns %s %s %s", c.addr, c.qtype, c.qname)
}

func (c *dnsChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	r := Result{At: time.Now()}
	var idb [2]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return failure(r, ctx, c.timeout, fmt.Errorf("query id: %w", err))
	}
	id := binary.BigEndian.Uint16(idb[:])
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: c.qname, Type: c.qtype, Class: dnsmessage.ClassINET}},
	}
	packed, err := q.Pack()
	if err != nil {
		return failure(r, ctx, c.timeout, fmt.Errorf("build query: %w", err))
	}
	conn, err := sendDatagram(ctx, c.addr, packed)
	if err != nil {
		r.Latency = time.Since(r.At)
		return failure(r, ctx, c.timeout, err)
	}
	defer conn.Close()
	// One buffer for every datagram: a server flooding the probe costs it
	// time, bounded by the timeout, and no memory.
	buf := make([]byte, 1500)
	ignored := 0
	for {
		n, err := conn.Read(buf)
		if err != nil {
			r.Latency = time.Since(r.At)
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			err = fmt.Errorf("read reply: %w", err)
			if ignored > 0 {
				// A timeout alone would hide that the server did answer.
				err = fmt.Errorf("%w (%d datagrams that were not a reply to the query)", err, ignored)
			}
			return failure(r, ctx, c.timeout, err)
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil || !h.Response || h.ID != id {
			ignored++
			continue // not a reply to this query: keep waiting until the timeout
		}
		r.Latency = time.Since(r.At)
		r.Code = int(h.RCode)
		r.Message = "DNS " + strings.TrimPrefix(h.RCode.String(), "RCode")
		if h.RCode != dnsmessage.RCodeSuccess {
			return failure(r, ctx, c.timeout, withCause(CauseStatus, fmt.Errorf("reply %s", r.Message)))
		}
		r.OK = true
		return r
	}
}
