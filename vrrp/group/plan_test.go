package group

import "testing"

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"Priority": "priority", "AdvertInterval": "advert_interval", "VirtualIPs": "virtual_ips",
		"GARPRepeat": "garp_repeat", "UnicastSrc": "unicast_src", "VIPHolder": "vip_holder",
		"TrackInterfaceWeights": "track_interface_weights", "RouterID": "router_id",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%s) = %s, want %s", in, got, want)
		}
	}
}
