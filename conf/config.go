// Package conf parses and validates lvsha's TOML configuration into one
// immutable Config. It imports none of lvsha's other packages: every other
// package consumes a Config, none produces one.
package conf

import (
	"net/netip"
	"time"
)

// Config is one validated configuration file. Treat it as immutable once
// Load returns it: reloads build a new Config and swap it in whole.
type Config struct {
	// Source is the path the configuration was read from.
	Source string
	// loaded is the file Load read, hostnamed whether Director.Name came
	// from the hostname (see Unchanged). The bytes, not a hash of them:
	// comparing 734 KB costs less than hashing them, which took tens of
	// milliseconds in the emulated test VM.
	loaded    []byte
	hostnamed bool

	Director Director
	// Metrics is the optional Prometheus listener (table "metrics").
	Metrics Metrics
	// Cluster joins this director to its peers over gossip (table
	// "cluster"); nil when the file has none, and the director runs alone.
	Cluster        *Cluster
	VirtualServers []VirtualServer
	// VRRPInstances elect the director that holds each set of VIPs
	// (array of tables "vrrp_instance").
	VRRPInstances []VRRPInstance
	// SyncGroups make instances change state together (array of tables
	// "vrrp_sync_group").
	SyncGroups []SyncGroup
	// TrackExecs are commands whose exit status VRRP instances track
	// (array of tables "track_exec"), keepalived's vrrp_script.
	TrackExecs []TrackExec

	// lines locates the keys of the file this Config was parsed from, for
	// messages about it that come after validation (Line). It is built on
	// the first call, so a Config nobody asks about never indexes its file.
	lines *lazyLines
}

// Line is the 1-based line of key in the file c was parsed from, as an
// Error's Key names it (e.g. "virtual_server[0].real_server[1]"), or of
// its nearest enclosing table found; 0 when c was not parsed from a file.
func (c *Config) Line(key string) int {
	return c.lines.line(key)
}

// TrackExec is a command run periodically; exit status 0 is success. Its
// state changes only after Rise successes or Fall failures in a row.
// Each command runs once per Interval however many instances track it.
type TrackExec struct {
	Name     string        // key "name"; required, unique
	Command  []string      // key "command": argv, run without a shell
	Interval time.Duration // key "interval"; default 1s
	// Timeout kills a run that takes longer; it counts as a failure
	// (key "timeout"; default: the interval, at most the interval).
	Timeout time.Duration
	Rise    int // key "rise"; 1..100, default 1
	Fall    int // key "fall"; 1..100, default 1
	// InitFail starts the command as failing until it first succeeds
	// Rise times; by default it starts as succeeding, as keepalived's
	// vrrp_script does (key "init_fail"; default false).
	InitFail bool
}

// VRRPInstance is one virtual router: the directors sharing a set of VIPs
// elect one master that holds them (RFC 5798; RFC 3768 for version 2).
type VRRPInstance struct {
	// Name is unique within the file (key "name"; required).
	Name string
	// Interface carries the adverts and, by default, the clients' traffic
	// (key "interface"; required).
	Interface string
	// RouterID is the VRID, 1..255 (key "router_id"; required). Every
	// director of the group, keepalived's virtual_router_id included, uses
	// the same one.
	RouterID int
	// Priority is 1..255; 255 means this director owns the VIPs
	// (key "priority"; default 100).
	Priority int
	// Version is 3 (RFC 5798) or 2 (RFC 3768, IPv4 only)
	// (key "version"; default 3).
	Version int
	// AdvertInterval is the master's advert period: for version 3 a
	// multiple of 10ms in 10ms..40.95s, for version 2 whole seconds in
	// 1s..255s (key "advert_interval"; default 100ms for version 3, 1s for
	// version 2).
	AdvertInterval time.Duration
	// Preempt lets a higher-priority backup take over from a lower master
	// (key "preempt"; default true); PreemptDelay holds that back after
	// this director starts (key "preempt_delay"; default 0s).
	Preempt      bool
	PreemptDelay time.Duration
	// Accept makes a non-owner master accept packets for the VIPs; IPVS
	// needs it to serve them (key "accept"; default true).
	Accept bool
	// UnicastSrc and UnicastPeers switch from multicast to unicast adverts
	// (keys "unicast_src", "unicast_peers"); adverts from any address not
	// listed are dropped and counted.
	UnicastSrc   netip.Addr
	UnicastPeers []netip.Addr
	// VirtualIPs are the addresses that move with mastership, all of one
	// family (key "virtual_ips": "IP" or "IP/prefix"; a bare IP means
	// /32 or /128).
	VirtualIPs []netip.Prefix
	// VIPHolder says where the master keeps its VIPs: "tun" (a private
	// device that the kernel removes when lvsha exits, however it exits, so
	// a killed daemon never leaves a second holder) or "interface" (on
	// Interface itself, as keepalived does) (key "vip_holder"; default
	// "tun").
	VIPHolder string
	// GARPRepeat is how many gratuitous ARPs / unsolicited neighbour
	// advertisements announce each VIP on becoming master (key
	// "garp_repeat"; default 5), GARPInterval the pause between them, 0
	// for back to back as keepalived sends them (key "garp_interval";
	// default 0s, at most 1s); GARPRefresh repeats one every period while
	// master, 0 for never (key "garp_refresh"; default 0s).
	GARPRepeat   int
	GARPInterval time.Duration
	GARPRefresh  time.Duration
	// TrackInterfaces put the instance in fault while any of them is down
	// (key "track_interfaces").
	TrackInterfaces []string
	// TrackOwnInterface puts the instance in fault while Interface is
	// down, as keepalived does unless dont_track_primary is set: adverts
	// cannot go out there, and a master that kept its VIPs would be a
	// second holder once the backup took over (key
	// "track_own_interface"; default true).
	TrackOwnInterface bool
	// TrackInterfaceWeights lower the priority by Weight while the named
	// interface is down, instead of a fault (array of tables
	// "track_interface": keepalived's track_interface with a weight).
	TrackInterfaceWeights []TrackInterface
	// TrackVirtualServers lower the priority by Weight while the named
	// virtual server has no real server up (array of tables
	// "track_virtual_server").
	TrackVirtualServers []TrackVirtualServer
	// TrackExecs lower the priority by Weight while the named track_exec
	// fails, or, with Weight 0, put the instance in fault (array of tables
	// "track_exec" inside the instance).
	TrackExecs []TrackExecRef
	// Notify holds the commands run on transitions.
	Notify Notify
	// AuthPass is VRRPv2's simple-text password, at most 8 bytes
	// (key "auth_pass"; version 2 only; default none).
	AuthPass string
	// SplitBrain is what this director does when gossip shows another
	// master for this instance: "report" (log, count, show) or "resolve"
	// (also give up master when this director should lose; key
	// "split_brain"; default "report"; "resolve" needs [cluster]).
	SplitBrain string
	// LVSSync is the kernel's IPVS connection sync daemon that follows
	// this instance, so that a backup director already holds the
	// connections when it takes over (table "lvs_sync": keepalived's
	// lvs_sync_daemon); nil when absent. One instance at most has it: the
	// kernel runs one master and one backup daemon per network namespace.
	LVSSync *LVSSync
	// BFD makes a backup watch its master with BFD and take over as soon
	// as that session fails, in tens of milliseconds instead of
	// Master_Down_Interval (draft-ietf-rtgwg-vrrp-bfd-p2p); a master
	// answers its backups' sessions. Key "bfd": a table { interval,
	// multiplier }, true for the defaults, false for off; default on with
	// DefaultBFD. nil when off.
	BFD *BFD
}

// BFD is an instance's BFD session parameters.
type BFD struct {
	// Interval is the transmit and receive interval once the session is
	// Up (key "interval"; 1ms..1s; default 10ms).
	Interval time.Duration
	// Multiplier is how many intervals without a packet declare the
	// peer down (key "multiplier"; 2..255; default 5).
	Multiplier int
}

// DetectionTime is how long after the peer's last packet the session
// goes Down (RFC 5880 6.8.4, both sides running these parameters).
func (b BFD) DetectionTime() time.Duration { return time.Duration(b.Multiplier) * b.Interval }

// LVSSync configures an IPVS connection sync daemon, what `ipvsadm
// --start-daemon master|backup` starts. Every field holds its effective
// value but MaxLen, whose default depends on the daemon's state.
type LVSSync struct {
	// Interface is where a master sends the sync messages and a backup
	// listens for them (key "interface"; required).
	Interface string
	// SyncID tags a master's messages; a backup takes only those with
	// its own, or every one with 0 (key "sync_id"; 0..255; default: the
	// instance's router_id).
	SyncID int
	// MaxLen bounds a sync message's UDP payload in bytes: at most a UDP
	// datagram less the headers, 65507 (65487 with an IPv6 group) (key
	// "max_len"; default 0: the kernel's, 1500 less the headers on a
	// master and the interface's MTU less them on a backup). The kernel
	// raises a backup's below 1024 to 1024.
	MaxLen int
	// Group is the multicast group, IPv4 or IPv6 (key "group"; default
	// 224.0.0.81, the kernel's).
	Group netip.Addr
	// Port is the UDP port (key "port"; 1..65535; default 8848, the
	// kernel's).
	Port int
	// TTL is the multicast TTL or hop limit (key "ttl"; 1..255; default
	// 1, the kernel's).
	TTL int
	// RefreshPeriod makes the master daemon announce every established
	// connection again once this long has passed since its last
	// announcement, at its next packet (key "refresh_period"; whole
	// seconds, 1s..10m; default 0: the kernel's sysctls are left alone).
	// lvsha sets net.ipv4.vs.sync_refresh_period to it and the period of
	// net.ipv4.vs.sync_threshold to 0, without which the refresh waits
	// for every 50th packet.
	RefreshPeriod time.Duration
	// PreemptHold is how long after its backup daemon starts a director
	// does not preempt a lower-priority master, so that it has heard
	// every connection announced again before it takes the VIPs back
	// (key "preempt_hold"; 0s..15m; default RefreshPeriod + 3s with
	// refresh_period, 0 without; it needs refresh_period). It never
	// delays a takeover from a master that dies or resigns.
	PreemptHold time.Duration
}

// TrackVirtualServer ties an instance's priority to a virtual server.
type TrackVirtualServer struct {
	Name   string // key "name": a virtual_server's name
	Weight int    // key "weight": 1..254 subtracted while it is down; default 50
}

// TrackInterface ties an instance's priority to a link.
type TrackInterface struct {
	Name   string // key "name": an interface
	Weight int    // key "weight": 1..254 subtracted while it is down; required
}

// TrackExecRef ties an instance to a track_exec.
type TrackExecRef struct {
	Name   string // key "name": a track_exec's name
	Weight int    // key "weight": 0..254 subtracted while it fails, 0 for fault; default 0
}

// Notify holds argv commands run on state transitions with the instance
// name, state and priority as arguments and environment. Each runs with
// Timeout (key "notify_timeout"; default 10s).
type Notify struct {
	Master  []string // key "notify_master"
	Backup  []string // key "notify_backup"
	Fault   []string // key "notify_fault"
	Stop    []string // key "notify_stop"
	Any     []string // key "notify": every transition
	Timeout time.Duration
}

// SyncGroup is a set of instances that are master or backup together.
type SyncGroup struct {
	Name      string   // key "name"; required, unique
	Instances []string // key "instances": vrrp_instance names, each in one group at most
}

// Metrics configures the HTTP listener serving /metrics (Prometheus
// exposition), /healthz and /readyz.
type Metrics struct {
	// Listen is the "IP:port" (or ":port" for every address) to serve on
	// (key "listen"; default "": no listener). No host names: the daemon
	// must start without DNS.
	Listen string
}

// Director holds settings for this lvsha process.
type Director struct {
	// Name identifies this director (key "name"; default: the hostname,
	// filled in by Load; Parse leaves it empty when the key is absent).
	Name string
	// ControlSocket is the unix socket `lvsha status` talks to
	// (key "control_socket"; default DefaultControlSocket).
	ControlSocket string
	// ControlSocketGroup is a group (name or number) whose members may
	// use the control socket besides root: the socket is then mode 0660,
	// of this group (key "control_socket_group"; default "": root
	// alone). Load resolves it into ControlSocketGID; both are read at
	// start, as the socket is.
	ControlSocketGroup string
	ControlSocketGID   uint32
	// StateFile keeps what must outlive the daemon: real servers drained
	// or in maintenance by hand, and which real servers were down, so a
	// restart neither undrains them nor sends traffic to dead servers
	// (key "state_file"; default DefaultStateFile).
	StateFile string
	// Resync is how often the kernel table is re-read and repaired even when
	// nothing changed, so hand edits with ipvsadm are undone
	// (key "resync_interval"; default 10s).
	Resync time.Duration
	// MaxProcs is how many CPUs run lvsha's Go code at once (GOMAXPROCS;
	// key "max_procs"; 0: every CPU; default 1; the environment's
	// GOMAXPROCS, when set, wins). lvsha spends its life waiting: for
	// adverts, timers, probes, netlink. With more than one, each hand-off
	// between goroutines wakes a second thread to look for work, which
	// finds none: measured at one VRRP instance, a third of an idle
	// director's CPU (docs/benchmarks.md). Raise it for thousands of
	// probes a second, TLS ones above all.
	MaxProcs int
	// RTPriority, 1 to 99, runs every thread of the daemon under the
	// real-time policy SCHED_RR at that priority (key "rt_priority";
	// keepalived's vrrp_rt_priority): a process that spins at a higher
	// priority than lvsha's then cannot starve its adverts into a false
	// takeover. 0 (the default) keeps the policy lvsha was started with.
	RTPriority int
	// Nice, -20 to 19, is every thread's nice value (key "nice";
	// keepalived's vrrp_priority). 0 (the default) keeps the one lvsha
	// was started with. Commands lvsha runs (checks, hooks, track_exec)
	// run at normal policy and never below nice 0 either way.
	Nice int
}

// VirtualServer is one IPVS virtual service and its real servers.
type VirtualServer struct {
	// Name is unique within the file (key "name"; default: the address as
	// written by netip.AddrPort.String, plus "/udp" or "/sctp" for those
	// protocols, or "fwmark:N", plus "/inet6" for an inet6 fwmark service).
	Name string
	// Address is the VIP:port (key "address"). Zero when FWMark is set.
	Address netip.AddrPort
	// FWMark selects a firewall-mark service (key "fwmark") instead of an
	// address; Family then says which address family it serves.
	FWMark uint32
	// Family is "inet" or "inet6" (key "family"; derived from Address, and
	// required to be consistent with it; default "inet" for fwmark services).
	Family string
	// Protocol is "tcp", "udp" or "sctp" (key "protocol"; default "tcp").
	Protocol string
	// Scheduler is one of Schedulers() (key "scheduler"; default "wlc").
	Scheduler string
	// SchedulerFlags are from SchedulerFlagNames(): "sh-fallback",
	// "sh-port", "mh-fallback", "mh-port" (key "scheduler_flags"; nil when
	// none). The sh- flags require scheduler "sh", the mh- ones "mh".
	SchedulerFlags []string
	// Forwarding is "nat", "dr" or "tun" (key "forwarding"; default "nat");
	// real servers inherit it unless they set their own.
	Forwarding string
	// Persistence is the persistence timeout, whole seconds; 0 disables it
	// (key "persistence"; default "0s").
	Persistence time.Duration
	// PersistenceNetmask is the prefix length that groups clients for
	// persistence (key "persistence_netmask"; default 32 for inet, 128 for
	// inet6).
	PersistenceNetmask int
	// OnePacket enables one-packet scheduling, for UDP
	// (key "one_packet"; default false).
	OnePacket bool
	// OnDown is "weight0" (drain: established connections continue) or
	// "remove" (key "on_down"; default "weight0").
	OnDown string
	// SorryServer serves when no real server is up (key "sorry_server";
	// "IP" or "IP:port", same rules as a real server's address, forwarded
	// with the virtual server's Forwarding). Invalid (zero) when unset.
	SorryServer netip.AddrPort
	// SorryWeight is the sorry server's weight (key "sorry_weight"; default 1).
	SorryWeight int
	// SorryInhibit keeps the sorry server in the table at weight 0 while it
	// is not serving, instead of removing it (key "sorry_inhibit"; default
	// false): keepalived's sorry_server_inhibit.
	SorryInhibit bool
	// Quorum is the summed weight of up real servers below which the sorry
	// server takes over (key "quorum"; default 1: the sorry server serves
	// only when none is up).
	Quorum int
	// Hysteresis: once below quorum, the up weight must reach
	// Quorum+Hysteresis before the real servers take back over
	// (key "hysteresis"; default 0).
	Hysteresis int
	// NotifyQuorumUp and NotifyQuorumDown are argv commands run when the
	// up weight regains or loses quorum, with the same hysteresis as the
	// sorry server (keys "notify_quorum_up", "notify_quorum_down"):
	// keepalived's quorum_up and quorum_down.
	NotifyQuorumUp, NotifyQuorumDown []string
	// HealthConsensus says whose checks drain a real server when the
	// director is in a cluster: "local" (this director's own, as without
	// a cluster), "any" (any live director seeing it down) or "quorum" (a
	// majority of the live directors that check it) (key
	// "health_consensus"; default "local"; the others need [cluster]).
	HealthConsensus string
	// Check is the health check applied to every real server that does not
	// override it (table "check"). Nil means real servers are always up.
	Check *Check
	// RealServers are the backends (array of tables "real_server").
	RealServers []RealServer
}

// RealServer is one backend of a VirtualServer.
type RealServer struct {
	// Address is IP:port (key "address"). The port may be omitted for
	// fwmark services and DR/TUN, where it is ignored; it is then 0.
	Address netip.AddrPort
	// Weight is the configured weight, 0..65535 (key "weight"; default 1).
	Weight int
	// Forwarding overrides the virtual server's forwarding method
	// (key "forwarding"); always filled in after Load.
	Forwarding string
	// NotifyUp and NotifyDown are argv commands run when the real server
	// goes up or down (keys "notify_up", "notify_down"): keepalived's.
	NotifyUp, NotifyDown []string
	// OnDown overrides the virtual server's on_down for this real server
	// (key "on_down"); always filled in after Load.
	OnDown string
	// UpperThreshold and LowerThreshold are IPVS connection thresholds;
	// 0 means none (keys "upper_threshold", "lower_threshold").
	UpperThreshold uint32
	LowerThreshold uint32
	// Check is the effective check for this real server after merging its
	// own "check" table over the virtual server's. Nil means always up.
	Check *Check
}

// Check describes one health probe. After Load every field holds its
// effective value (defaults applied), so consumers never apply defaults.
type Check struct {
	// Type is "tcp", "http", "https", "dns", "smtp", "icmp", "udp" or "exec" (key "type"), or "none" to
	// disable an inherited check on one real server (then Load sets the real
	// server's Check to nil).
	Type string
	// Interval between probes (key "interval"; default 1s).
	Interval time.Duration
	// RetryInterval replaces Interval after a failure of an up server, until
	// it is marked down or succeeds again: keepalived's delay_before_retry
	// (key "retry_interval"; default: the interval).
	RetryInterval time.Duration
	// Timeout of one probe; must be shorter than Interval
	// (key "timeout"; default: half of the interval).
	Timeout time.Duration
	// Rise consecutive successes mark a down server up; Fall consecutive
	// failures mark an up server down (keys "rise", "fall"; 1..100,
	// default 2 and 2).
	Rise int
	Fall int
	// StartDown starts the real server down, until Rise successes, when
	// lvsha starts or the check is added; by default it starts up so a
	// restart drains nothing (key "start_down"; default false):
	// keepalived's alpha.
	StartDown bool
	// ConnectAddress and ConnectPort probe a different endpoint than the
	// real server's own address (keys "connect_address", "connect_port").
	// Zero values mean "the real server's".
	ConnectAddress netip.Addr
	ConnectPort    uint16

	// HTTP and HTTPS.
	Method     string // key "method"; default "GET"
	Path       string // key "path"; default "/"
	Host       string // key "host": Host header; default none
	Status     []int  // key "status"; default [200]
	Body       string // key "body": substring the body must contain
	BodyRegexp string // key "body_regexp": regexp the body must match
	// BodyMD5 is the MD5 digest, in lowercase hex, the whole body must have:
	// keepalived's url digest (key "body_md5"; at most MaxDigestBody bytes
	// are hashed).
	BodyMD5   string
	TLSVerify bool   // key "tls_verify"; default false (keepalived parity)
	SNI       string // key "sni"; default: Host, else none

	// URLs are more URLs an http or https check fetches after Path; the
	// check passes only when every one does (array of tables "url":
	// keepalived's several url blocks). Each has its own path (required),
	// status, body, body_regexp and body_md5, defaulting to [200] and none.
	URLs []URL

	// SMTP: the greeting must be 220 and the answer to HELO HeloName 250
	// (keepalived's SMTP_CHECK; key "helo_name"; default
	// "lvsha-check.invalid").
	HeloName string

	// UDP: one datagram of PayloadHex (key "payload_hex"; hex; default
	// empty). Without a reply required the server passes unless an ICMP
	// error comes back within the timeout; RequireReply (key
	// "require_reply"; default false, true when ReplyHex is set) wants a
	// reply starting with ReplyHex (key "reply_hex"): keepalived's
	// UDP_CHECK.
	PayloadHex   string
	ReplyHex     string
	RequireReply bool

	// DNS: one recursive UDP query; the check passes on a reply with
	// RCODE 0 (keepalived's DNS_CHECK).
	DNSType string // key "dns_type": one of DNSTypes(); default "SOA"
	DNSName string // key "dns_name"; default "." (the root)

	// Exec: argv of the command (key "command"); exit status 0 means up.
	Command []string
	// DynamicWeight lets an exec check set the weight through its exit
	// status: 0 is up at the configured weight, 2..255 up at weight
	// status-2, anything else down (key "dynamic_weight"; exec only;
	// default false): keepalived's misc_dynamic.
	DynamicWeight bool
}

// URL is one more URL of an http or https check.
type URL struct {
	Path       string
	Status     []int
	Body       string
	BodyRegexp string
	BodyMD5    string
}

// MaxDigestBody bounds how much of a response body_md5 hashes; a longer
// body fails the check.
const MaxDigestBody = 16 << 20

// DefaultControlSocket is where the daemon serves `lvsha status`.
const DefaultControlSocket = "/run/lvsha/lvsha.sock"

// DefaultStateFile is where the daemon keeps its state across restarts.
const DefaultStateFile = "/var/lib/lvsha/state.json"
