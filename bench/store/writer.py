#!/usr/bin/env python3
"""Runs inside a gateway namespace: timed writes through the local kawaii API.

  writer.py latency TOKEN N GAP_MS   -> per acknowledged write: "<revision> <ack epoch> <sent epoch>"
  writer.py rate TOKEN SECONDS CONC  -> "<acknowledged writes> <seconds>"

Each write adds or removes one ingress rule, so the document stays small.
"""
import json, sys, threading, time, urllib.request

API = "http://127.0.0.1:7780"


def call(token, method, path, body=None):
    req = urllib.request.Request(API + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("ETag", "").strip('"'), r.read()
    except urllib.error.HTTPError as e:
        return e.code, "", e.read()


def write(token, port):
    """Adds the rule for `port`, or removes it if present; returns (status, revision)."""
    st, rev, body = call(token, "POST", "/v1/ingress-rules", {"protocol": "tcp", "ports": str(port)})
    if st == 201:
        rule = json.loads(body)
        call(token, "DELETE", "/v1/ingress-rules/" + rule["id"])
    return st, rev


def latency(token, n, gap_ms):
    for i in range(n):
        t0 = time.time()
        st, rev, body = call(token, "POST", "/v1/ingress-rules", {"protocol": "tcp", "ports": str(20000 + i)})
        t = time.time()
        if st != 201:
            print("error", st, body.decode(errors="replace"), file=sys.stderr)
            continue
        print(rev, "%.6f" % t, "%.6f" % t0, flush=True)
        time.sleep(gap_ms / 1000)
        rule = json.loads(body)
        t0 = time.time()
        st, rev, _ = call(token, "DELETE", "/v1/ingress-rules/" + rule["id"])
        t = time.time()
        if st in (200, 204):
            print(rev, "%.6f" % t, "%.6f" % t0, flush=True)
        time.sleep(gap_ms / 1000)


def rate(token, seconds, conc):
    done = [0] * conc
    stop = time.time() + seconds

    def worker(k):
        port = 30000 + 1000 * k
        while time.time() < stop:
            st, _, body = call(token, "POST", "/v1/ingress-rules", {"protocol": "tcp", "ports": str(port)})
            if st == 201:
                done[k] += 1
                st, _, _ = call(token, "DELETE", "/v1/ingress-rules/" + json.loads(body)["id"])
                if st in (200, 204):
                    done[k] += 1
            port += 1

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(sum(done), "%.3f" % (time.time() - t0))


if __name__ == "__main__":
    mode, token = sys.argv[1], sys.argv[2]
    if mode == "latency":
        latency(token, int(sys.argv[3]), int(sys.argv[4]))
    else:
        rate(token, float(sys.argv[3]), int(sys.argv[4]))
