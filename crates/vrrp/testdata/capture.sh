#!/bin/bash
# Captures keepalived VRRPv3 adverts between two namespaces created here (never the root one).
#   ./capture.sh [DIR]          IPv4: tcpdump writes DIR/run-PID/cap.pcap (then extract.py)
#   FAMILY=6 ./capture.sh [DIR] IPv6: sniff6.py (an AF_PACKET socket, no tcpdump) writes the
#                               IPv6 datagrams to DIR/run-PID/v6-N.bin
set -u
FAMILY=${FAMILY:-4}
ID=$$
NA=vrrpcap$FAMILY-$ID-a
NB=vrrpcap$FAMILY-$ID-b
DIR=${1:-/tmp/vrrpcap$FAMILY}/run-$ID
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
if [ "$FAMILY" = 6 ]; then
  # Fixed MACs give fixed EUI-64 link-local sources: fe80::ff:fe00:a and fe80::ff:fe00:b.
  ip -n $NA link set va address 02:00:00:00:00:0a
  ip -n $NB link set vb address 02:00:00:00:00:0b
  INSTANCE=VI_6 VRID=61 VIPS="fe80::1/64 2001:db8:1::1/64"
else
  ip -n $NA addr add 192.0.2.1/24 dev va
  ip -n $NB addr add 192.0.2.2/24 dev vb
  INSTANCE=VI_1 VRID=51 VIPS="192.0.2.100/24 192.0.2.101/24"
fi
ip -n $NA link set lo up; ip -n $NB link set lo up
ip -n $NA link set va up; ip -n $NB link set vb up
[ "$FAMILY" = 6 ] && sleep 2   # link-local addresses leave duplicate address detection
mk() { # name iface prio state
cat > $DIR/$1.conf <<CONF
global_defs {
  router_id kawaii-$1
  vrrp_version 3
  enable_script_security
}
vrrp_instance $INSTANCE {
  state $4
  interface $2
  virtual_router_id $VRID
  priority $3
  advert_int 0.1
  version 3
  virtual_ipaddress {
$(printf '    %s\n' $VIPS)
  }
}
CONF
}
mk a va 150 BACKUP
mk b vb 100 BACKUP
if [ "$FAMILY" = 6 ]; then
  ip netns exec $NB python3 "$HERE/sniff6.py" vb $DIR 6 > $DIR/sniff.log 2>&1 &
else
  ip netns exec $NB tcpdump -i vb -U -n -w $DIR/cap.pcap 'ip proto 112 or arp' 2>$DIR/tcpdump.log &
fi
PIDS+=($!)
sleep 1
ip netns exec $NA keepalived -n -l -D -f $DIR/a.conf -p $DIR/a.pid -r $DIR/a-vrrp.pid > $DIR/ka-a.log 2>&1 &
KA=$!
PIDS+=($KA)
ip netns exec $NB keepalived -n -l -D -f $DIR/b.conf -p $DIR/b.pid -r $DIR/b-vrrp.pid > $DIR/ka-b.log 2>&1 &
PIDS+=($!)
sleep $((FAMILY == 6 ? 4 : 3))
kill $KA   # graceful: master sends priority 0
sleep 1.5
echo "dir=$DIR"
