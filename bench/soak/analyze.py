#!/usr/bin/env python3
"""Soak verdict from the sampler's CSV (t,rss_kib,fds,...).

  analyze.py SAMPLES.csv WARMUP_PERCENT TOLERANCE_PERCENT

Warm-up is the first WARMUP_PERCENT of the load window (by time). Over the samples after it,
a least-squares line is fitted to RSS and to the fd count; its rise over that span, relative to
the mean, is the drift. A series is flat when |drift| <= TOLERANCE_PERCENT; the spread
(min, max around the mean) is printed with it. Exit status 1 when either series is not flat.
"""
import csv
import sys


def fit(ts, ys):
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    slope = 0.0 if var == 0 else sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var
    return slope, my


def main():
    path, warm, tol = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    rows = [r for r in csv.DictReader(open(path)) if r["phase"] == "load"]
    if len(rows) < 4:
        print("FAIL: only %d samples under load; run longer" % len(rows))
        return 1
    t_end = float(rows[-1]["t"])
    t_warm = t_end * warm / 100
    after = [r for r in rows if float(r["t"]) >= t_warm]
    if len(after) < 3:
        print("FAIL: only %d samples after warm-up; run longer" % len(after))
        return 1
    ok = True
    parts = []
    for key, unit in (("rss_kib", "KiB"), ("fds", "")):
        ts = [float(r["t"]) for r in after]
        ys = [float(r[key]) for r in after]
        slope, mean = fit(ts, ys)
        span = ts[-1] - ts[0]
        drift = 100 * slope * span / mean if mean else 0.0
        lo, hi = min(ys), max(ys)
        flat = abs(drift) <= tol
        ok &= flat
        name = "RSS" if key == "rss_kib" else "fds"
        parts.append("%s %s: mean %.0f%s, min %.0f (%+.1f %%), max %.0f (%+.1f %%), drift %+.2f %% over %.0f s"
                     % (name, "flat" if flat else "NOT flat", mean, unit and " " + unit, lo,
                        100 * (lo - mean) / mean, hi, 100 * (hi - mean) / mean, drift, span))
    print("%s: after warm-up (t >= %.0f s of %.0f s, %d samples), tolerance +-%g %%"
          % ("PASS" if ok else "FAIL", t_warm, t_end, len(after), tol))
    for p in parts:
        print("  " + p)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
