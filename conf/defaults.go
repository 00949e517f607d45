package conf

import (
	"net/netip"
	"time"
)

// The defaults for every key a file may leave unset, kept in this one place
// and mirrored in docs/configuration.md. The director name, whose default is
// the hostname, is filled in by Load so that Parse stays deterministic.
const (
	defaultResync           = 10 * time.Second
	defaultMaxProcs         = 1
	defaultProtocol         = "tcp"
	defaultScheduler        = "wlc"
	defaultForwarding       = "nat"
	defaultOnDown           = "weight0"
	defaultFamily           = "inet" // for fwmark services
	defaultWeight           = 1
	defaultSorryWeight      = 1
	defaultQuorum           = 1
	defaultHysteresis       = 0
	defaultPersistenceMask4 = 32
	defaultPersistenceMask6 = 128
	defaultCheckInterval    = time.Second
	defaultCheckRise        = 2
	defaultCheckFall        = 2
	defaultHTTPMethod       = "GET"
	defaultHTTPPath         = "/"
	defaultHTTPStatus       = 200
	defaultDNSType          = "SOA" // keepalived's
	defaultDNSName          = "."
	defaultHeloName         = "lvsha-check.invalid" // .invalid: reserved, never a real host
	minCheckInterval        = time.Millisecond
	maxUnixSocketPath       = 107 // sun_path is 108 bytes including the NUL
	defaultTimeoutDivisor   = 2   // timeout defaults to interval / 2
	maxWeight               = 65535
	maxRiseFall             = 100
	minHTTPStatus           = 100
	maxHTTPStatus           = 599

	defaultVRRPPriority    = 100
	defaultVRRPVersion     = 3
	defaultAdvertV3        = 100 * time.Millisecond
	defaultAdvertV2        = time.Second
	defaultVIPHolder       = "tun"
	defaultGARPRepeat      = 5
	defaultTrackWeight     = 50
	defaultTrackExecWeight = 0 // keepalived's: a failing script means fault
	defaultTrackExecRise   = 1
	defaultTrackExecFall   = 1
	defaultNotifyTimeout   = 10 * time.Second
	maxPreemptDelay        = 1000 * time.Second
	maxGARPInterval        = time.Second
	maxAuthPass            = 8
	maxInterfaceNameLength = 15

	// The kernel's sync daemon defaults and bounds (start_sync_thread in
	// net/netfilter/ipvs/ip_vs_sync.c): a message is at most a UDP
	// datagram (65535 bytes) less the IPv4 (20) or IPv6 (40) and UDP (8)
	// headers; the kernel clamps anything above to that.
	defaultSyncPort = 8848 // IP_VS_SYNC_PORT
	defaultSyncTTL  = 1
	maxSyncLen4     = 65535 - 20 - 8
	maxSyncLen6     = 65535 - 40 - 8

	// maxSyncRefresh bounds lvs_sync refresh_period, maxPreemptHold its
	// preempt_hold: a returning director follows a lower-priority master
	// for at most that long.
	maxSyncRefresh = 10 * time.Minute
	maxPreemptHold = 15 * time.Minute
	// preemptHoldMargin is preempt_hold's default beyond refresh_period:
	// the kernel's master thread sends a sync buffer that is not full
	// after IPVS_SYNC_FLUSH_TIME (2 s), and a connection is announced
	// again only at its first packet once the period has passed, so one
	// that exchanges at least once a second is announced within
	// refresh_period + 3 s of the backup daemon's start.
	preemptHoldMargin = 3 * time.Second
)

// defaultSyncGroup is the kernel's sync group, IP_VS_SYNC_GROUP.
func defaultSyncGroup() netip.Addr { return netip.AddrFrom4([4]byte{224, 0, 0, 81}) }

func vipHolders() []string { return []string{"tun", "interface"} }

// Schedulers returns the IPVS scheduler names lvsha accepts: the kernel's
// (one module net/netfilter/ipvs/ip_vs_<name>.c each), moby's six plus the
// ones it lacks. This is the one list: package ipvs and the keepalived
// converter take theirs from here. A fresh slice each call, so no caller
// can change what the others see.
func Schedulers() []string {
	return []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
}

// SchedulerFlagNames returns the accepted "scheduler_flags" values. The
// "sh-" flags apply only to scheduler "sh", the "mh-" ones only to "mh".
func SchedulerFlagNames() []string {
	return []string{"sh-fallback", "sh-port", "mh-fallback", "mh-port"}
}

func protocols() []string   { return []string{"tcp", "udp", "sctp"} }
func forwardings() []string { return []string{"nat", "dr", "tun"} }
func onDowns() []string     { return []string{"weight0", "remove"} }
func families() []string    { return []string{"inet", "inet6"} }
func checkTypes() []string {
	return []string{"tcp", "http", "https", "dns", "smtp", "icmp", "udp", "exec", "none"}
}

// DNSTypes maps the accepted "dns_type" names to their RR type numbers:
// those keepalived's DNS_CHECK knows.
func DNSTypes() map[string]uint16 {
	return map[string]uint16{"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28, "RRSIG": 46, "DNSKEY": 48}
}
