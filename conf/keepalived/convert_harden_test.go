package keepalived

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConvertHardening converts what keepalived's own sample
// configurations hold and lvsha check would reject if carried as
// written: a VIP listed twice, a sync group in the legacy form without
// group { }, sync group members that name no instance or one not
// converted (and a group left with none), and a vrrp_script whose script
// lines are all @id-conditional. Each converted file passes conf's
// validation (Convert parses it); each is reported at its line.
func TestConvertHardening(t *testing.T) {
	instance := func(name string, vrid int, extra string) string {
		return "vrrp_instance " + name + " {\n    interface eth0\n    virtual_router_id " + strconv.Itoa(vrid) + "\n" + extra +
			"    virtual_ipaddress {\n        192.0.2." + strconv.Itoa(vrid) + "\n    }\n}\n"
	}
	// broken is an instance lvsha cannot convert: it has no VIP.
	broken := "vrrp_instance VI_X {\n    interface eth0\n    virtual_router_id 60\n}\n"
	tests := []struct {
		name   string
		in     string
		params []string
		// vips and groups are the converted instances' VIPs and the sync
		// groups' members, by name.
		vips   map[string][]string
		groups map[string][]string
		// warns are the warnings this case is about, "line: message", in
		// the order of lines.
		warns []string
		// errs must appear in Convert's error; nil: none.
		errs []string
	}{
		{name: "a VIP bare and with a label is carried once",
			in: "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    virtual_ipaddress {\n        192.0.2.18\n" +
				"        192.0.2.19\n        192.0.2.18 label eth0:1\n    }\n}\n",
			vips:  map[string][]string{"VI_1": {"192.0.2.18", "192.0.2.19"}},
			warns: []string{"7: 192.0.2.18: listed again (first at k.conf:5): carried once"}},
		{name: "the same VIP with another prefix length is carried once",
			in:    "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    virtual_ipaddress {\n        192.0.2.18/24\n        192.0.2.18/32\n    }\n}\n",
			vips:  map[string][]string{"VI_1": {"192.0.2.18/24"}},
			warns: []string{"6: 192.0.2.18: listed again (first at k.conf:5): carried once"}},
		{name: "legacy sync group: instance names without group { }",
			in:     "vrrp_sync_group VG1 {\n  VI_2\n  VI_3\n}\n" + instance("VI_2", 52, "") + instance("VI_3", 53, ""),
			groups: map[string][]string{"VG1": {"VI_2", "VI_3"}}},
		{name: "sync group: a member that names no instance is dropped",
			in:     "vrrp_sync_group VG1 {\n  group {\n    VI_2\n    VI_9\n  }\n}\n" + instance("VI_2", 52, ""),
			groups: map[string][]string{"VG1": {"VI_2"}},
			warns:  []string{"4: VI_9: not carried in vrrp_sync_group VG1: no vrrp_instance of that name (keepalived ignores it too)"}},
		{name: "sync group: a member listed twice is carried once",
			in:     "vrrp_sync_group VG1 {\n  group {\n    VI_2\n    VI_2\n  }\n}\n" + instance("VI_2", 52, ""),
			groups: map[string][]string{"VG1": {"VI_2"}},
			warns:  []string{"4: VI_2: listed again in vrrp_sync_group VG1: carried once"}},
		{name: "sync group left with no instance is dropped",
			in:     "vrrp_sync_group VG1 {\n  group {\n    VI_X\n  }\n}\n" + instance("VI_2", 52, "") + broken,
			groups: map[string][]string{},
			warns: []string{"1: vrrp_sync_group VG1: not carried: none of its instances is converted",
				"3: VI_X: not carried in vrrp_sync_group VG1: its vrrp_instance was not converted"},
			errs: []string{"vrrp_instance VI_X: no virtual_ipaddress lvsha can carry"}},
		{name: "vrrp_script whose script lines all have another @id",
			in: "vrrp_script chk {\n@high script /bin/true\n@low script /bin/false\n  interval 1\n}\n" +
				instance("VI_1", 51, "    track_script {\n        chk\n    }\n"),
			vips: map[string][]string{"VI_1": {"192.0.2.51"}},
			warns: []string{"1: vrrp_script chk: not carried: no script line (keepalived removes it too)",
				"10: track_script chk: not carried: no vrrp_script of that name"}},
		{name: "vrrp_script with its @id selected",
			in: "vrrp_script chk {\n@high script /bin/true\n@low script /bin/false\n  interval 1\n}\n" +
				instance("VI_1", 51, "    track_script {\n        chk\n    }\n"),
			params: []string{"high"},
			vips:   map[string][]string{"VI_1": {"192.0.2.51"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, pw, err := Parse("k.conf", []byte(tt.in), Options{Params: tt.params})
			if err != nil || len(pw) > 0 {
				t.Fatalf("parse: %v %v", pw, err)
			}
			conv, err := Convert(root, "lvsha.toml")
			if len(tt.errs) == 0 && err != nil {
				t.Fatalf("convert: %v\n%s", err, conv.TOML)
			}
			for _, e := range tt.errs {
				if err == nil || !strings.Contains(err.Error(), e) {
					t.Errorf("convert error %v, want %q", err, e)
				}
			}
			if tt.vips != nil && conv.Config != nil {
				got := map[string][]string{}
				for _, inst := range conv.Config.VRRPInstances {
					for _, v := range inst.VirtualIPs {
						s := v.String()
						if v.IsSingleIP() {
							s = v.Addr().String()
						}
						got[inst.Name] = append(got[inst.Name], s)
					}
				}
				if d := cmp.Diff(tt.vips, got); d != "" {
					t.Errorf("VIPs (-want +got):\n%s\n%s", d, conv.TOML)
				}
			}
			if tt.groups != nil && conv.Config != nil {
				got := map[string][]string{}
				for _, g := range conv.Config.SyncGroups {
					got[g.Name] = g.Instances
				}
				if d := cmp.Diff(tt.groups, got); d != "" {
					t.Errorf("sync groups (-want +got):\n%s\n%s", d, conv.TOML)
				}
			}
			var warns []string
			for _, w := range conv.Warnings {
				for _, want := range tt.warns {
					if strings.HasSuffix(want, w.Msg) {
						warns = append(warns, strconv.Itoa(w.Line)+": "+w.Msg)
					}
				}
			}
			if d := cmp.Diff(tt.warns, warns); d != "" {
				t.Errorf("warnings (-want +got):\n%s\nall: %v", d, conv.Warnings)
			}
		})
	}
}
