package ipvs

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// nla lays out one netlink attribute as the kernel does: length, type,
// value, padding to 4 bytes.
func nla(typ uint16, value ...[]byte) []byte {
	var v []byte
	for _, p := range value {
		v = append(v, p...)
	}
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func ne16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// kernelDump is one message of an IPVS_CMD_GET_DAEMON dump as
// ip_vs_genl_fill_daemon writes it: every field, the port in host order
// (nla_put_u16), the group in network order (nla_put_in_addr).
func kernelDump(fields ...[]byte) []byte {
	return append([]byte{byte(cmdNewDaemon), genlVersion, 0, 0}, nla(cmdAttrDaemon, fields...)...)
}

func TestParseDaemon(t *testing.T) {
	full := [][]byte{
		nla(daemonAttrState, ne32(1)),
		nla(daemonAttrMcastIfn, []byte("eth0\x00")),
		nla(daemonAttrSyncID, ne32(51)),
		nla(daemonAttrSyncMaxLen, ne16(1472)),
		nla(daemonAttrMcastPort, ne16(8848)),
		nla(daemonAttrMcastTTL, []byte{1}),
		nla(daemonAttrMcastGroup, []byte{224, 0, 0, 81}),
	}
	g6 := netip.MustParseAddr("ff02::81").As16()
	tests := []struct {
		name    string
		msg     []byte
		want    Daemon
		wantErr string
	}{
		{name: "every field", msg: kernelDump(full...),
			want: Daemon{State: DaemonMaster, Interface: "eth0", SyncID: 51, MaxLen: 1472, Group: DefaultSyncGroup, Port: 8848, TTL: 1}},
		{name: "IPv6 group", msg: kernelDump(nla(daemonAttrState, ne32(2)), nla(daemonAttrMcastIfn, []byte("bond0.100\x00")),
			nla(daemonAttrSyncID, ne32(0)), nla(daemonAttrMcastGroup6, g6[:])),
			want: Daemon{State: DaemonBackup, Interface: "bond0.100", Group: netip.AddrFrom16(g6)}},
		// A kernel before 4.3 sends only the first three.
		{name: "an old kernel's three fields", msg: kernelDump(full[:3]...),
			want: Daemon{State: DaemonMaster, Interface: "eth0", SyncID: 51}},
		{name: "the nested flag is ignored", msg: append([]byte{byte(cmdNewDaemon), genlVersion, 0, 0}, nla(cmdAttrDaemon|0x8000, full[0], full[1])...),
			want: Daemon{State: DaemonMaster, Interface: "eth0"}},
		{name: "shorter than its header", msg: []byte{11, 1}, wantErr: "message of 2 bytes, shorter than its generic netlink header"},
		{name: "no daemon nest", msg: append([]byte{11, 1, 0, 0}, nla(1, ne32(1))...), wantErr: "no IPVS_CMD_ATTR_DAEMON attribute"},
		{name: "no state", msg: kernelDump(full[1]), wantErr: "no IPVS_DAEMON_ATTR_STATE"},
		{name: "a short field", msg: kernelDump(full[0], nla(daemonAttrSyncMaxLen, []byte{1})),
			wantErr: "IPVS_DAEMON_ATTR_SYNC_MAXLEN: 1 bytes, want 2"},
		{name: "an attribute longer than the message", msg: []byte{11, 1, 0, 0, 200, 0, 3, 0}, wantErr: "malformed attributes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDaemon(tt.msg)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseDaemon error %v, want one containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("parseDaemon: %v", err)
			case got != tt.want:
				t.Errorf("parseDaemon = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestDaemonRequest checks what NewDaemon and DelDaemon send: the
// attributes ipvsadm sends, in the kernel's byte orders, the optional
// ones only when set so the kernel applies its defaults.
func TestDaemonRequest(t *testing.T) {
	tests := []struct {
		name string
		d    Daemon
		want []byte
	}{
		{name: "required fields only", d: Daemon{State: DaemonBackup, Interface: "eth1", SyncID: 7},
			want: nla(cmdAttrDaemon, nla(daemonAttrState, ne32(2)), nla(daemonAttrMcastIfn, []byte("eth1\x00")), nla(daemonAttrSyncID, ne32(7)))},
		{name: "every option", d: Daemon{State: DaemonMaster, Interface: "eth0", SyncID: 51, MaxLen: 1000,
			Group: netip.MustParseAddr("239.1.2.3"), Port: 9000, TTL: 5},
			want: nla(cmdAttrDaemon, nla(daemonAttrState, ne32(1)), nla(daemonAttrMcastIfn, []byte("eth0\x00")), nla(daemonAttrSyncID, ne32(51)),
				nla(daemonAttrSyncMaxLen, ne16(1000)), nla(daemonAttrMcastGroup, []byte{239, 1, 2, 3}),
				nla(daemonAttrMcastPort, ne16(9000)), nla(daemonAttrMcastTTL, []byte{5}))},
		{name: "IPv6 group", d: Daemon{State: DaemonMaster, Interface: "eth0", Group: netip.MustParseAddr("ff02::81")},
			want: nla(cmdAttrDaemon, nla(daemonAttrState, ne32(1)), nla(daemonAttrMcastIfn, []byte("eth0\x00")), nla(daemonAttrSyncID, ne32(0)),
				nla(daemonAttrMcastGroup6, netip.MustParseAddr("ff02::81").AsSlice()))},
		{name: "IPv4-mapped group sent as IPv4", d: Daemon{State: DaemonMaster, Interface: "eth0", Group: netip.MustParseAddr("::ffff:239.1.2.3")},
			want: nla(cmdAttrDaemon, nla(daemonAttrState, ne32(1)), nla(daemonAttrMcastIfn, []byte("eth0\x00")), nla(daemonAttrSyncID, ne32(0)),
				nla(daemonAttrMcastGroup, []byte{239, 1, 2, 3}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := daemonRequest(tt.d).Serialize(); string(got) != string(tt.want) {
				t.Errorf("request\n got %x\nwant %x", got, tt.want)
			}
		})
	}
	want := nla(cmdAttrDaemon, nla(daemonAttrState, ne32(1)))
	if got := stateRequest(DaemonMaster).Serialize(); string(got) != string(want) {
		t.Errorf("stop request\n got %x\nwant %x", got, want)
	}
}

func TestDaemonString(t *testing.T) {
	tests := []struct {
		d    Daemon
		want string
	}{
		{Daemon{State: DaemonMaster, Interface: "eth0", SyncID: 51}, "master sync daemon (mcast=eth0, syncid=51)"},
		{Daemon{State: DaemonBackup, Interface: "eth0", SyncID: 1, MaxLen: 1472, Group: DefaultSyncGroup, Port: 8848, TTL: 1},
			"backup sync daemon (mcast=eth0, syncid=1, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"},
		{Daemon{State: 3}, "state-3 sync daemon (mcast=, syncid=0)"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
