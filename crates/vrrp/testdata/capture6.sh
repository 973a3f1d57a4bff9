#!/bin/bash
# Captures keepalived VRRPv3-over-IPv6 adverts between two namespaces created here (never the
# root one), with an AF_PACKET socket (no tcpdump needed). Writes the IPv6 datagrams to DIR.
set -u
ID=$$
NA=vrrpcap6-$ID-a
NB=vrrpcap6-$ID-b
DIR=${1:-/tmp/vrrpcap6}/run-$ID
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p $DIR
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 3
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && kill -9 "$p"; done
  ip netns del $NA 2>/dev/null
  ip netns del $NB 2>/dev/null
}
trap cleanup EXIT
ip netns add $NA
ip netns add $NB
ip -n $NA link add va type veth peer name vb netns $NB
# Fixed MACs give fixed EUI-64 link-local sources: fe80::ff:fe00:a and fe80::ff:fe00:b.
ip -n $NA link set va address 02:00:00:00:00:0a
ip -n $NB link set vb address 02:00:00:00:00:0b
ip -n $NA link set lo up; ip -n $NB link set lo up
ip -n $NA link set va up; ip -n $NB link set vb up
sleep 2
mk() { # name iface prio state
cat > $DIR/$1.conf <<CONF
global_defs {
  router_id kawaii-$1
  vrrp_version 3
  enable_script_security
}
vrrp_instance VI_6 {
  state $4
  interface $2
  virtual_router_id 61
  priority $3
  advert_int 0.1
  version 3
  virtual_ipaddress {
    fe80::1/64
    2001:db8:1::1/64
  }
}
CONF
}
mk a va 150 BACKUP
mk b vb 100 BACKUP
ip netns exec $NB python3 "$HERE/sniff6.py" vb $DIR 6 > $DIR/sniff.log 2>&1 &
PIDS+=($!)
sleep 1
ip netns exec $NA keepalived -n -l -D -f $DIR/a.conf -p $DIR/a.pid -r $DIR/a-vrrp.pid > $DIR/ka-a.log 2>&1 &
KA=$!
PIDS+=($KA)
ip netns exec $NB keepalived -n -l -D -f $DIR/b.conf -p $DIR/b.pid -r $DIR/b-vrrp.pid > $DIR/ka-b.log 2>&1 &
PIDS+=($!)
sleep 4
kill $KA   # graceful: master sends priority 0
sleep 1.5
echo "dir=$DIR"
