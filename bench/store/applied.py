#!/usr/bin/env python3
"""Joins the writer's acknowledgements with a kawaii log: for each acknowledged revision, the
time from the acknowledgement (0 when the log shows it applied before the client had the
answer) and from the request's start until the log says its last driver applied that revision
or a later one.

  applied.py ACKS LOG  -> count, then p50/p99/max from the ack and from the request (ms)
"""
import re, sys
from datetime import datetime

ansi = re.compile(r"\x1b\[[0-9;]*m")
acks = []
for line in open(sys.argv[1]):
    rev, t, sent = line.split()
    acks.append((int(rev), float(t), float(sent)))
applied = []  # (epoch, revision) of every "applied" line
drivers = set()
for line in open(sys.argv[2], errors="replace"):
    line = ansi.sub("", line)
    if " applied" not in line or "revision=" not in line:
        continue
    m = re.search(r"driver=(\S+)", line)
    r = re.search(r"revision=(\d+)", line)
    ts = line.split()[0]
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        continue
    if m and r:
        drivers.add(m.group(1))
        applied.append((t, int(r.group(1)), m.group(1)))
last = "ipsec" if "ipsec" in drivers else sorted(drivers)[-1]
done = sorted((t, r) for t, r, d in applied if d == last)
lat = []
full = []
slow = []
for rev, t, sent in acks:
    seen = next((ta for ta, ra in done if ra >= rev and ta >= sent), None)
    if seen is not None:
        lat.append(max(0.0, seen - t) * 1000)
        full.append((seen - sent) * 1000)
        slow.append((lat[-1], rev))
lat.sort()
full.sort()
if len(sys.argv) > 3:
    print(sorted(slow)[-10:], file=sys.stderr)
if not lat:
    print("no applied revisions found")
    sys.exit(1)
pick = lambda v, q: v[min(len(v) - 1, int(q * len(v)))]
print("n=%d  from ack: p50=%.1f p99=%.1f max=%.1f ms  from request: p50=%.1f p99=%.1f max=%.1f ms%s" % (
    len(lat), pick(lat, 0.5), pick(lat, 0.99), lat[-1], pick(full, 0.5), pick(full, 0.99), full[-1],
    "" if len(lat) == len(acks) else "  (missing %d)" % (len(acks) - len(lat))))
