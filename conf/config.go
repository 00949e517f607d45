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

	Director       Director
	VirtualServers []VirtualServer
}

// Director holds settings for this lvsha process.
type Director struct {
	// Name identifies this director (key "name"; default: the hostname,
	// filled in by Load; Parse leaves it empty when the key is absent).
	Name string
	// ControlSocket is the unix socket `lvsha status` talks to
	// (key "control_socket"; default DefaultControlSocket).
	ControlSocket string
	// Resync is how often the kernel table is re-read and repaired even when
	// nothing changed, so hand edits with ipvsadm are undone
	// (key "resync_interval"; default 10s).
	Resync time.Duration
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
	// Quorum is the summed weight of up real servers below which the sorry
	// server takes over (key "quorum"; default 1: the sorry server serves
	// only when none is up).
	Quorum int
	// Hysteresis: once below quorum, the up weight must reach
	// Quorum+Hysteresis before the real servers take back over
	// (key "hysteresis"; default 0).
	Hysteresis int
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
	// Type is "tcp", "http", "https" or "exec" (key "type"), or "none" to
	// disable an inherited check on one real server (then Load sets the real
	// server's Check to nil).
	Type string
	// Interval between probes (key "interval"; default 1s).
	Interval time.Duration
	// Timeout of one probe; must be shorter than Interval
	// (key "timeout"; default: half of the interval).
	Timeout time.Duration
	// Rise consecutive successes mark a down server up; Fall consecutive
	// failures mark an up server down (keys "rise", "fall"; 1..100,
	// default 2 and 2).
	Rise int
	Fall int
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
	TLSVerify  bool   // key "tls_verify"; default false (keepalived parity)
	SNI        string // key "sni"; default: Host, else none

	// Exec: argv of the command (key "command"); exit status 0 means up.
	Command []string
}

// DefaultControlSocket is where the daemon serves `lvsha status`.
const DefaultControlSocket = "/run/lvsha/lvsha.sock"
