#!/usr/bin/env python3
"""Joins the writer's acknowledgements with a kawaii log: for each acknowledged revision, the
time until the log says its last driver applied it (that revision or a later one).

  applied.py ACKS LOG  -> prints count, p50, p99, max (ms)
"""
import re, sys
from datetime import datetime

ansi = re.compile(r"\x1b\[[0-9;]*m")
acks = []
for line in open(sys.argv[1]):
    rev, t = line.split()
    acks.append((int(rev), float(t)))
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
for rev, t in acks:
    seen = next((ta for ta, ra in done if ra >= rev and ta >= t - 5), None)
    if seen is not None:
        lat.append(max(0.0, seen - t) * 1000)
lat.sort()
if not lat:
    print("no applied revisions found")
    sys.exit(1)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print("n=%d p50=%.1f ms p99=%.1f ms max=%.1f ms (missing %d)" % (len(lat), pick(0.5), pick(0.99), lat[-1], len(acks) - len(lat)))
