package group

import (
	"reflect"
	"strings"
	"unicode"

	"github.com/lvsha/lvsha/conf"
	"github.com/lvsha/lvsha/vrrp"
	"github.com/lvsha/lvsha/vrrp/instance"
)

// What Reload does to one instance.
const (
	InstanceAdded        = "added"        // starts, as a backup
	InstanceRemoved      = "removed"      // hands over and stops
	InstanceRebuilt      = "rebuilt"      // hands over, then starts anew
	InstanceReconfigured = "reconfigured" // changed in place: keeps its state
)

// InstanceChange is what a reload does to one VRRP instance.
type InstanceChange struct {
	Instance string `json:"vrrp_instance"`
	Change   string `json:"change"`
	// Why is what changed: the reason an instance is rebuilt, or the
	// settings changed in place.
	Why string `json:"why,omitempty"`
	// MovesVIPs is set when this director is master of the instance now
	// and the change makes it hand its VIPs over (rebuilt or removed).
	MovesVIPs bool `json:"moves_vips,omitempty"`
}

// Plan says what Reload(cfg) would do to each instance now, in the order
// of cfg, then the instances removed; unchanged instances are not listed.
// It changes nothing. A nil Group (a daemon without VRRP) plans nothing.
func (g *Group) Plan(cfg *conf.Config) []InstanceChange {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := map[string]*member{}
	for _, mb := range g.members {
		old[mb.cfg.Name] = mb
	}
	master := func(mb *member) bool {
		return mb.inst != nil && mb.inst.Status().State == vrrp.Master.String()
	}
	var out []InstanceChange
	for _, ic := range cfg.VRRPInstances {
		mb := old[ic.Name]
		delete(old, ic.Name)
		if c, ok := planInstance(mb, ic, master); ok {
			out = append(out, c)
		}
	}
	for _, mb := range g.members {
		if _, gone := old[mb.cfg.Name]; gone {
			out = append(out, InstanceChange{Instance: mb.cfg.Name, Change: InstanceRemoved, MovesVIPs: master(mb)})
		}
	}
	return out
}

// planInstance is what swap does to member mb (nil: none) given ic; ok
// false when it leaves the instance alone.
func planInstance(mb *member, ic conf.VRRPInstance, master func(*member) bool) (InstanceChange, bool) {
	c := InstanceChange{Instance: ic.Name}
	switch {
	case mb == nil:
		c.Change = InstanceAdded
	case mb.inst == nil && mb.fault != "":
		// swap replaces a member still waiting to start again.
		c.Change, c.Why = InstanceRebuilt, "still waiting for an address to send adverts from"
	case mb.inst == nil:
		c.Change, c.Why = InstanceRebuilt, "still restarting"
	case instance.NeedsRestart(mb.cfg, ic) != "":
		c.Change, c.Why, c.MovesVIPs = InstanceRebuilt, instance.NeedsRestart(mb.cfg, ic), master(mb)
	case !reflect.DeepEqual(mb.cfg, ic):
		c.Change, c.Why = InstanceReconfigured, strings.Join(changedKeys(mb.cfg, ic), ", ")
	default:
		return c, false
	}
	return c, true
}

// changedKeys names the settings that differ between a and b, as the
// configuration file's keys (AdvertInterval is advert_interval).
func changedKeys(a, b conf.VRRPInstance) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, snake(va.Type().Field(i).Name))
		}
	}
	return out
}

// snake turns a Go field name into the file's key: a run of capitals is
// one word (VirtualIPs is virtual_ips, GARPRepeat garp_repeat).
func snake(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 {
			prevLower := unicode.IsLower(r[i-1])
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1])
			// "IPs": the s after a run of capitals is the plural, not a word.
			plural := i+1 < len(r) && r[i+1] == 's' && (i+2 == len(r) || unicode.IsUpper(r[i+2]))
			if prevLower || (nextLower && !plural) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
