#!/usr/bin/env python3
"""Writes IPv6 datagrams with next header 112 (VRRP) seen on IFACE to DIR/v6-N.bin (Ethernet
header stripped), up to COUNT of each distinct (source, priority): used by `FAMILY=6 capture.sh`."""
import os
import socket
import sys

iface, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
s.bind((iface, 0))
seen = {}
n = 0
while True:
    frame = s.recv(65535)
    ip = frame[14:]
    if len(ip) < 48 or ip[6] != 112:
        continue
    key = (ip[8:24], ip[42])
    if seen.get(key, 0) >= count:
        continue
    seen[key] = seen.get(key, 0) + 1
    with open(os.path.join(out, f"v6-{n}.bin"), "wb") as f:
        f.write(ip)
    print(f"v6-{n}.bin src={socket.inet_ntop(socket.AF_INET6, ip[8:24])} prio={ip[42]}", flush=True)
    n += 1
