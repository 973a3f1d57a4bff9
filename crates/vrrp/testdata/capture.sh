#!/bin/bash
# Captures keepalived VRRPv3 adverts between two namespaces created here (never the root one).
set -u
ID=$$
NA=vrrpcap-$ID-a
NB=vrrpcap-$ID-b
DIR=${1:-/tmp/vrrpcap}/run-$ID
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
ip -n $NA addr add 192.0.2.1/24 dev va
ip -n $NB addr add 192.0.2.2/24 dev vb
ip -n $NA link set lo up; ip -n $NB link set lo up
ip -n $NA link set va up; ip -n $NB link set vb up
mk() { # name iface prio state
cat > $DIR/$1.conf <<CONF
global_defs {
  router_id kawaii-$1
  vrrp_version 3
  enable_script_security
}
vrrp_instance VI_1 {
  state $4
  interface $2
  virtual_router_id 51
  priority $3
  advert_int 0.1
  version 3
  virtual_ipaddress {
    192.0.2.100/24
    192.0.2.101/24
  }
}
CONF
}
mk a va 150 BACKUP
mk b vb 100 BACKUP
ip netns exec $NB tcpdump -i vb -U -n -w $DIR/cap.pcap 'ip proto 112 or arp' 2>$DIR/tcpdump.log &
PIDS+=($!)
sleep 1
ip netns exec $NA keepalived -n -l -D -f $DIR/a.conf -p $DIR/a.pid -r $DIR/a-vrrp.pid > $DIR/ka-a.log 2>&1 &
KA=$!
PIDS+=($KA)
ip netns exec $NB keepalived -n -l -D -f $DIR/b.conf -p $DIR/b.pid -r $DIR/b-vrrp.pid > $DIR/ka-b.log 2>&1 &
PIDS+=($!)
sleep 3
kill $KA   # graceful: master sends priority 0
sleep 1.5
echo "dir=$DIR"
