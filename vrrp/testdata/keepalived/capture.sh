#!/usr/bin/env bash
# Captures VRRP adverts sent by a real keepalived between two namespaces.
# Usage: capture.sh OUTDIR ; writes one pcap per variant.
set -euo pipefail
out=$(realpath "${1:-.}")
mkdir -p "$out"
a=kacapA$$ b=kacapB$$
cleanup() { pkill -f "keepalived.*$a" 2>/dev/null || true; ip netns del $a 2>/dev/null || true; ip netns del $b 2>/dev/null || true; }
trap cleanup EXIT
ip netns add $a; ip netns add $b
ip link add vA netns $a type veth peer name vB netns $b
ip -n $a link set lo up; ip -n $b link set lo up
ip -n $a addr add 10.77.0.1/24 dev vA; ip -n $b addr add 10.77.0.2/24 dev vB
ip -n $a addr add 2001:db8:77::1/64 dev vA nodad; ip -n $b addr add 2001:db8:77::2/64 dev vB nodad
ip -n $a link set vA up; ip -n $b link set vB up
sleep 2 # link-local addresses leave tentative state
run() { # name, vrrp_instance body
  local name=$1 body=$2 dir
  dir=$(mktemp -d)
  cat > $dir/k.conf <<CONF
global_defs {
  router_id $a
}
vrrp_instance VI_1 {
  state MASTER
  interface vA
$body
}
CONF
  ip netns exec $b timeout 8 tcpdump -q -i vB -c 3 -w "$out/$name.pcap" 'ip proto 112 or ip6 proto 112' 2>/dev/null &
  local td=$!
  sleep 1
  ip netns exec $a keepalived --dont-fork --vrrp -f $dir/k.conf -p $dir/p -r $dir/r -i $a >/dev/null 2>&1 &
  local kp=$!
  wait $td || true
  kill $kp 2>/dev/null; wait $kp 2>/dev/null || true
  rm -rf $dir
}
run v2-pass-ipv4 '  version 2
  virtual_router_id 51
  priority 150
  advert_int 1
  authentication {
    auth_type PASS
    auth_pass secret12
  }
  virtual_ipaddress {
    10.77.0.100/24
    10.77.0.101/24
  }'
run v3-ipv4 '  version 3
  virtual_router_id 52
  priority 200
  advert_int 0.1
  virtual_ipaddress {
    10.77.0.102/24
  }'
run v3-ipv6 '  version 3
  virtual_router_id 53
  priority 100
  advert_int 1
  virtual_ipaddress {
    2001:db8:77::100/64
    2001:db8:77::101/64
  }'
run v3-ipv4-unicast '  version 3
  virtual_router_id 54
  priority 120
  advert_int 1
  unicast_src_ip 10.77.0.1
  unicast_peer {
    10.77.0.2
  }
  virtual_ipaddress {
    10.77.0.103/24
  }'
