#!/usr/bin/env python3
"""Soak verdict from the sampler's CSV (phase,t,rss_kib,fds,...; phases idle, load, after).

  analyze.py SAMPLES.csv WARMUP_PERCENT TOLERANCE_PERCENT

Warm-up is the first WARMUP_PERCENT of the load window (by time). Over the load samples after
it, a least-squares line is fitted to RSS and to the fd count; its rise over that span,
relative to the mean, is the drift.
  - RSS is flat when |drift| <= TOLERANCE_PERCENT.
  - fds: under load the count is mostly the connections in flight at the instant of the sample,
    so its drift is printed but the verdict compares the idle count after the load (phase
    "after") with the idle count before it (phase "idle"): flat within TOLERANCE_PERCENT.
    Without those samples the drift decides.
Exit status 1 when either is not flat.
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
    all_rows = list(csv.DictReader(open(path)))
    rows = [r for r in all_rows if r["phase"] == "load"]
    idle = [r for r in all_rows if r["phase"] == "idle"]
    after = [r for r in all_rows if r["phase"] == "after"]
    if len(rows) < 4:
        print("FAIL: only %d samples under load; run longer" % len(rows))
        return 1
    t_end = float(rows[-1]["t"])
    t_warm = t_end * warm / 100
    window = [r for r in rows if float(r["t"]) >= t_warm]
    if len(window) < 3:
        print("FAIL: only %d samples after warm-up; run longer" % len(window))
        return 1
    ok = True
    parts = []
    for key, name, unit in (("rss_kib", "RSS", " KiB"), ("fds", "fds", "")):
        ts = [float(r["t"]) for r in window]
        ys = [float(r[key]) for r in window]
        slope, mean = fit(ts, ys)
        span = ts[-1] - ts[0]
        drift = 100 * slope * span / mean if mean else 0.0
        lo, hi = min(ys), max(ys)
        line = "under load: mean %.0f%s, min %.0f (%+.1f %%), max %.0f (%+.1f %%), drift %+.2f %% over %.0f s" % (
            mean, unit, lo, 100 * (lo - mean) / mean, hi, 100 * (hi - mean) / mean, drift, span)
        if key == "fds" and idle and after:
            before, end = float(idle[0][key]), float(after[-1][key])
            flat = abs(end - before) <= before * tol / 100
            line = "idle after the load %.0f, before %.0f (%+.1f %%); %s" % (
                end, before, 100 * (end - before) / before, line)
        else:
            flat = abs(drift) <= tol
        ok &= flat
        parts.append("%s %s: %s" % (name, "flat" if flat else "NOT flat", line))
    print("%s: after warm-up (t >= %.0f s of %.0f s, %d samples), tolerance +-%g %%"
          % ("PASS" if ok else "FAIL", t_warm, t_end, len(window), tol))
    for p in parts:
        print("  " + p)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
