#!/usr/bin/env python3
"""Opens N keep-alive connections through a proxy (one small request each, then idle) and prints
the proxy's RSS growth per connection in bytes. Loopback only."""
import argparse, socket, ssl, sys, time

def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total

def one(host, port, tls, ctx):
    s = socket.create_connection((host, port), timeout=10)
    if tls:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        body += s.recv(4096)
    return s

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--pid", type=int, action="append", required=True)
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Warm up allocator pools with a few connections, then measure.
    warm = [one("127.0.0.1", a.port, a.tls, ctx) for _ in range(50)]
    for s in warm:
        s.close()
    time.sleep(1)
    before = rss_kib(a.pid)
    socks = []
    failed = 0
    for _ in range(a.n):
        try:
            socks.append(one("127.0.0.1", a.port, a.tls, ctx))
        except OSError:
            failed += 1
    time.sleep(2)
    after = rss_kib(a.pid)
    ok = len(socks)
    per = (after - before) * 1024 / max(ok, 1)
    print(f"{per:.0f} {ok} {failed}")
    for s in socks:
        s.close()

if __name__ == "__main__":
    sys.exit(main())
