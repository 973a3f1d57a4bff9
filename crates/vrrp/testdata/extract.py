#!/usr/bin/env python3
"""Extracts the test vectors from a capture made by capture.sh.

usage: extract.py CAP.pcap OUTDIR
"""
import struct
import sys

cap, out = sys.argv[1], sys.argv[2]
data = open(cap, "rb").read()
assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4, "little-endian pcap, microseconds"
assert struct.unpack("<I", data[20:24])[0] == 1, "Ethernet link type"
off, first_vrrp, first_arp = 24, {}, None
while off < len(data):
    _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
    frame = data[off + 16:off + 16 + incl]
    off += 16 + incl
    if frame[12:14] == b"\x08\x06":
        first_arp = first_arp or frame
        continue
    ip = frame[14:]
    ip = ip[:struct.unpack(">H", ip[2:4])[0]]
    src, dst, payload = ip[12:16], ip[16:20], ip[(ip[0] & 15) * 4:]
    first_vrrp.setdefault((src[3], payload[2]), (ip, src + dst + payload))

ip, vector = first_vrrp[(1, 150)]
open(f"{out}/keepalived-v3-ip.bin", "wb").write(ip)
open(f"{out}/keepalived-v3.bin", "wb").write(vector)
open(f"{out}/keepalived-v3-prio0.bin", "wb").write(first_vrrp[(1, 0)][1])
open(f"{out}/keepalived-v3-backup.bin", "wb").write(first_vrrp[(2, 100)][1])
open(f"{out}/keepalived-garp.bin", "wb").write(first_arp)
