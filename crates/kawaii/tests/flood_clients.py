"""Test clients for the flood tests (crates/kawaii/tests/flood.rs); each prints one JSON line.

  legit HOST PORT COUNT INTERVAL   sequential HTTP GETs, one new connection each
  burst HOST PORT COUNT TIMEOUT    new connections as fast as possible, each closed at once
  hold HOST PORT COUNT SECONDS     COUNT concurrent connections to an echo service, held open
  chat HOST PORT SECONDS           one connection to an echo service, a line every 50 ms
  egress URL SECONDS               new HTTP requests to URL (private egress), one every 100 ms
  churn HOST PORT NAME COUNT CONCURRENCY DEADLINE BUDGET
                                   COUNT short HTTP/1.0 GETs (Host: NAME), one new connection
                                   each, CONCURRENCY at a time; one that has not read its whole
                                   answer DEADLINE seconds after its connect started fails; no
                                   new connection starts after BUDGET seconds
"""
import errno
import json
import selectors
import socket
import sys
import time
import urllib.request


def legit(host, port, count, interval):
    ok, connect_ms, errors = 0, [], {}
    for _ in range(count):
        t0 = time.monotonic()
        try:
            s = socket.create_connection((host, port), timeout=2)
            connect_ms.append((time.monotonic() - t0) * 1000)
            s.settimeout(2)
            s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            got = b""
            while True:
                part = s.recv(4096)
                if not part:
                    break
                got += part
            s.close()
            if b"hello from" in got:
                ok += 1
            else:
                errors["short reply"] = errors.get("short reply", 0) + 1
        except OSError as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    connect_ms.sort()
    p99 = connect_ms[min(len(connect_ms) - 1, int(len(connect_ms) * 0.99))] if connect_ms else None
    print(json.dumps({"ok": ok, "count": count, "p99_ms": p99, "errors": errors}), flush=True)


def burst(host, port, count, timeout):
    ok = 0
    for _ in range(count):
        try:
            s = socket.create_connection((host, port), timeout=timeout)
            s.close()
            ok += 1
        except OSError:
            pass
    print(json.dumps({"ok": ok, "count": count}), flush=True)


def hold(host, port, count, seconds):
    socks = []
    for _ in range(count):
        try:
            socks.append(socket.create_connection((host, port), timeout=2))
        except OSError:
            pass
    ok = 0
    for s in socks:
        try:
            s.settimeout(3)
            s.sendall(b"ping\n")
            if s.recv(16).startswith(b"ping"):
                ok += 1
        except OSError:
            pass
    time.sleep(seconds)
    print(json.dumps({"ok": ok, "count": count}), flush=True)
    for s in socks:
        s.close()


def chat(host, port, seconds):
    ok, fail = 0, 0
    s = socket.create_connection((host, port), timeout=2)
    s.settimeout(1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s.sendall(b"line\n")
            if s.recv(16).startswith(b"line"):
                ok += 1
            else:
                fail += 1
        except OSError:
            fail += 1
        time.sleep(0.05)
    print(json.dumps({"ok": ok, "fail": fail}), flush=True)


def egress(url, seconds):
    ok, fail = 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
            ok += 1
        except OSError:
            fail += 1
        time.sleep(0.1)
    print(json.dumps({"ok": ok, "fail": fail}), flush=True)


def churn(host, port, name, count, concurrency, deadline, budget):
    """Non-blocking: a stalled connection does not hold the others back. Counts the local ports
    used more than once (the reuse the test wants) and the slowest connection."""
    sel = selectors.DefaultSelector()
    request = f"GET / HTTP/1.0\r\nHost: {name}\r\n\r\n".encode()
    started, ok, errors, slowest, stalled = 0, 0, {}, 0.0, []
    ports, reused = set(), 0

    def fail(kind):
        errors[kind] = errors.get(kind, 0) + 1

    def start():
        nonlocal started, reused
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        started += 1
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            fail(errno.errorcode.get(err, str(err)))
            s.close()
            return
        local = s.getsockname()[1]
        reused += local in ports
        ports.add(local)
        sel.register(s, selectors.EVENT_WRITE, {"t0": time.monotonic(), "got": b"", "port": local})

    def finish(key, kind=None):
        nonlocal ok, slowest
        st = key.data
        sel.unregister(key.fileobj)
        key.fileobj.close()
        took = time.monotonic() - st["t0"]
        if kind is None and b"hello from" in st["got"]:
            ok += 1
            slowest = max(slowest, took)
        else:
            fail(kind or "short reply")
            if len(stalled) < 10:
                stalled.append({"port": st["port"], "after_ms": round(took * 1000), "got": len(st["got"])})

    t_begin = time.monotonic()
    while (started < count and time.monotonic() - t_begin < budget) or sel.get_map():
        while (started < count and time.monotonic() - t_begin < budget
               and len(sel.get_map()) < concurrency):
            start()
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            if now - key.data["t0"] > deadline:
                finish(key, "stalled")
        for key, mask in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                if mask & selectors.EVENT_WRITE:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        finish(key, errno.errorcode.get(err, str(err)))
                        continue
                    s.sendall(request)
                    sel.modify(s, selectors.EVENT_READ, key.data)
                    continue
                part = s.recv(4096)
                if part:
                    key.data["got"] += part
                else:
                    finish(key)
            except OSError as e:
                finish(key, type(e).__name__)
    elapsed = time.monotonic() - t_begin
    print(json.dumps({
        "ok": ok, "count": count, "started": started, "errors": errors, "reused_ports": reused,
        "distinct_ports": len(ports), "slowest_ms": round(slowest * 1000),
        "per_second": round(started / elapsed), "stalled": stalled,
    }), flush=True)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "legit":
        legit(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif mode == "burst":
        burst(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif mode == "hold":
        hold(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif mode == "chat":
        chat(args[0], int(args[1]), float(args[2]))
    elif mode == "egress":
        egress(args[0], float(args[1]))
    elif mode == "churn":
        churn(args[0], int(args[1]), args[2], int(args[3]), int(args[4]), float(args[5]),
              float(args[6]))
