package health

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/lvsha/lvsha/conf"
)

// identityBase is a check with every field set, so that a changed field
// always differs from a value the base has; every slice has one element to
// change.
func identityBase(typ string) *conf.Check {
	return &conf.Check{
		Type: typ, Interval: time.Second, RetryInterval: time.Second, Timeout: time.Second / 2,
		Rise: 2, Fall: 2, StartDown: true,
		ConnectAddress: netip.MustParseAddr("192.0.2.7"), ConnectPort: 8080,
		Method: "GET", Path: "/", Host: "svc.test", Status: []int{200},
		Body: "ok", BodyRegexp: "o+", BodyMD5: "b1946ac92492d2347c6235b4d2611184",
		TLSVerify: true, SNI: "svc.test",
		URLs: []conf.URL{{Path: "/ready", Status: []int{200}, Body: "ok", BodyRegexp: "o+",
			BodyMD5: "b1946ac92492d2347c6235b4d2611184"}},
		HeloName: "lb.test", PayloadHex: "00", ReplyHex: "01", RequireReply: true,
		DNSType: "A", DNSName: "svc.test.",
		Command: []string{"/bin/true", "arg"}, DynamicWeight: true,
	}
}

// mutation changes one leaf, named by its path, of a value of some type.
type mutation struct {
	path  string
	apply func(v reflect.Value)
}

// mutations lists a change of every leaf of typ: each field of a struct,
// each element kind of a slice (changing the first element, and adding
// one). A kind it does not know fails the test, so a new kind of field
// cannot slip past.
func mutations(t *testing.T, path string, typ reflect.Type) []mutation {
	t.Helper()
	if typ == reflect.TypeFor[netip.Addr]() {
		return []mutation{{path, func(v reflect.Value) {
			a := v.Interface().(netip.Addr)
			v.Set(reflect.ValueOf(a.Next()))
		}}}
	}
	switch typ.Kind() {
	case reflect.Struct:
		var ms []mutation
		for i := range typ.NumField() {
			f := typ.Field(i)
			for _, m := range mutations(t, path+"."+f.Name, f.Type) {
				ms = append(ms, mutation{m.path, func(v reflect.Value) { m.apply(v.Field(i)) }})
			}
		}
		return ms
	case reflect.Slice:
		ms := []mutation{{path + "+", func(v reflect.Value) { v.Set(reflect.Append(v, v.Index(0))) }}}
		for _, m := range mutations(t, path+"[0]", typ.Elem()) {
			ms = append(ms, mutation{m.path, func(v reflect.Value) { m.apply(v.Index(0)) }})
		}
		return ms
	case reflect.String:
		return []mutation{{path, func(v reflect.Value) { v.SetString(v.String() + "x") }}}
	case reflect.Bool:
		return []mutation{{path, func(v reflect.Value) { v.SetBool(!v.Bool()) }}}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return []mutation{{path, func(v reflect.Value) { v.SetInt(v.Int() + 1) }}}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return []mutation{{path, func(v reflect.Value) { v.SetUint(v.Uint() + 1) }}}
	}
	t.Fatalf("%s: no mutation for kind %s; teach mutations and identity about it", path, typ.Kind())
	return nil
}

// TestIdentityCoversEveryField: probes are shared between keys whose
// identity is equal, so a field of conf.Check that identity ignores would
// merge two different checks into one probe. Every field, of every check
// type, must change the identity. No field is exempt.
func TestIdentityCoversEveryField(t *testing.T) {
	rs := netip.MustParseAddrPort("192.0.2.1:80")
	ms := mutations(t, "Check", reflect.TypeFor[conf.Check]())
	if len(ms) < reflect.TypeFor[conf.Check]().NumField() {
		t.Fatalf("%d mutations for %d fields", len(ms), reflect.TypeFor[conf.Check]().NumField())
	}
	for _, typ := range []string{"tcp", "http", "https", "dns", "smtp", "icmp", "udp", "exec"} {
		base := identity("vs", rs, identityBase(typ))
		if again := identity("vs", rs, identityBase(typ)); again != base {
			t.Fatalf("%s: equal checks, different identities:\n%s\n%s", typ, base, again)
		}
		for _, m := range ms {
			t.Run(typ+"/"+m.path, func(t *testing.T) {
				c := identityBase(typ)
				m.apply(reflect.ValueOf(c).Elem())
				if reflect.DeepEqual(c, identityBase(typ)) {
					t.Fatal("the mutation changed nothing")
				}
				if identity("vs", rs, c) == base {
					t.Errorf("identity ignores %s: two different checks would share one probe", m.path)
				}
			})
		}
	}
}

// TestIdentityOfThePair: the same check on another virtual server is the
// same probe, except for exec, whose environment names both; another real
// server is another probe unless connect_address and connect_port point
// both at the same target.
func TestIdentityOfThePair(t *testing.T) {
	rs := netip.MustParseAddrPort("192.0.2.1:80")
	other := netip.MustParseAddrPort("192.0.2.2:80")
	tests := []struct {
		name      string
		c         *conf.Check
		vs2       string
		rs2       netip.AddrPort
		wantEqual bool
	}{
		{"tcp, other virtual server", &conf.Check{Type: "tcp"}, "vs2", rs, true},
		{"tcp, other real server", &conf.Check{Type: "tcp"}, "vs", other, false},
		{"tcp, other real server, same connect target",
			&conf.Check{Type: "tcp", ConnectAddress: netip.MustParseAddr("192.0.2.9"), ConnectPort: 81}, "vs", other, true},
		{"exec, other virtual server", &conf.Check{Type: "exec", Command: []string{"true"}}, "vs2", rs, false},
		{"exec, other real server, same connect target",
			&conf.Check{Type: "exec", Command: []string{"true"}, ConnectAddress: netip.MustParseAddr("192.0.2.9"), ConnectPort: 81},
			"vs", other, false},
		{"no port to probe: per pair", &conf.Check{Type: "tcp"}, "vs2", netip.AddrPortFrom(rs.Addr(), 0), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := identity("vs", rs, tc.c), identity(tc.vs2, tc.rs2, tc.c)
			if tc.rs2.Port() == 0 {
				a = identity("vs", tc.rs2, tc.c)
			}
			if (a == b) != tc.wantEqual {
				t.Errorf("identities equal = %v, want %v:\n%s\n%s", a == b, tc.wantEqual, a, b)
			}
		})
	}
}
