#!/usr/bin/env python3
"""Long-lived flows for the connection-sync tests: they must survive a gateway failover on the
same sockets.

  flows.py streams PORT INTERVAL_MS
      TCP server: every accepted connection gets a 32-byte line every INTERVAL_MS (a slow
      download). Prints "listening" once it listens (wait for that line, not for a probe
      connection: a probe that closes with a line unread ends in a reset, which would count as an
      error). On SIGTERM prints {"accepted": N, "errors": N, "open": N} and exits.
  flows.py udp-echo PORT
      Echoes datagrams. On SIGTERM prints {"sources": N} (distinct source address:port seen).
  flows.py client [--tcp HOST:PORT:N] [--udp HOST:PORT:N:FIRST_SOURCE_PORT] [--udp-interval-ms MS]
      Opens N TCP connections and reads them; sends one datagram per UDP flow every MS from
      fixed source ports and reads the echoes. Never reconnects. Prints "ready" once every
      flow has received data. On SIGUSR1 prints a window line
      {"tcp": [stall ms per flow], "udp": [...], "tcp_dead": N, "udp_dead": N} where a flow's
      stall is its longest silence in the window (open silences count up to now), then starts
      a new window. On SIGTERM prints a last window and exits.
"""
import argparse
import json
import selectors
import signal
import socket
import sys
import time

FLAGS = {"usr1": False, "term": False}


def on_signal(name):
    def handler(_sig, _frame):
        FLAGS[name] = True

    return handler


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def listener(port):
    """A TCP listener on `port` for both families where the host has IPv6, else IPv4 only."""
    try:
        lsock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("::", port))
        return lsock
    except OSError:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("0.0.0.0", port))
        return lsock


def streams(port, interval_ms):
    signal.signal(signal.SIGTERM, on_signal("term"))
    sel = selectors.DefaultSelector()
    lsock = listener(port)
    lsock.listen(1024)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ)
    print("listening", flush=True)
    conns = {}
    accepted = errors = 0
    interval = interval_ms / 1000.0
    next_send = time.monotonic()
    seq = 0
    while not FLAGS["term"]:
        timeout = max(0.0, next_send - time.monotonic())
        for key, _ in sel.select(timeout):
            if key.fileobj is lsock:
                try:
                    c, _ = lsock.accept()
                except OSError:
                    continue
                c.setblocking(False)
                conns[c.fileno()] = c
                sel.register(c, selectors.EVENT_READ)
                accepted += 1
            else:
                c = key.fileobj
                try:
                    data = c.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = None
                    errors += 1
                if not data:
                    sel.unregister(c)
                    conns.pop(c.fileno(), None)
                    c.close()
        if time.monotonic() >= next_send:
            seq += 1
            line = f"{seq:031d}\n".encode()
            for fd, c in list(conns.items()):
                try:
                    c.send(line)
                except BlockingIOError:
                    pass
                except OSError:
                    errors += 1
                    sel.unregister(c)
                    conns.pop(fd, None)
                    c.close()
            next_send += interval
            if next_send < time.monotonic():
                next_send = time.monotonic() + interval
    emit({"accepted": accepted, "errors": errors, "open": len(conns)})


def udp_echo(port):
    signal.signal(signal.SIGTERM, on_signal("term"))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.1)
    sources = set()
    while not FLAGS["term"]:
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        except OSError:
            continue
        sources.add(addr)
        try:
            s.sendto(data, addr)
        except OSError:
            pass
    emit({"sources": len(sources)})


class Flow:
    def __init__(self, sock, kind):
        self.sock = sock
        self.kind = kind
        self.last = None
        self.worst = 0.0
        self.dead = False

    def heard(self, now):
        if self.last is not None:
            self.worst = max(self.worst, now - self.last)
        self.last = now

    def window(self, now):
        open_gap = now - self.last if self.last is not None else 0.0
        w = max(self.worst, open_gap)
        self.worst = 0.0
        return round(w * 1000)


def client(args):
    signal.signal(signal.SIGUSR1, on_signal("usr1"))
    signal.signal(signal.SIGTERM, on_signal("term"))
    sel = selectors.DefaultSelector()
    flows = []
    for spec in args.tcp:
        # HOST:PORT:N, HOST an IPv4 or IPv6 address
        host, port, n = spec.rsplit(":", 2)
        for _ in range(int(n)):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.setblocking(False)
            f = Flow(s, "tcp")
            flows.append(f)
            sel.register(s, selectors.EVENT_READ, f)
    udp = []
    for spec in args.udp:
        host, port, n, first = spec.split(":")
        for i in range(int(n)):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", int(first) + i))
            s.connect((host, int(port)))
            s.setblocking(False)
            f = Flow(s, "udp")
            flows.append(f)
            udp.append(f)
            sel.register(s, selectors.EVENT_READ, f)
    interval = args.udp_interval_ms / 1000.0
    next_send = time.monotonic()
    ready = False
    seq = 0
    while True:
        now = time.monotonic()
        if udp and now >= next_send:
            seq += 1
            for f in udp:
                try:
                    f.sock.send(f"{seq}".encode())
                except OSError:
                    pass
            next_send = now + interval
        for key, _ in sel.select(0.02):
            f = key.data
            try:
                data = f.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b"" if f.kind == "tcp" else None
                if f.kind == "udp":
                    # ICMP errors while the path moves: the socket stays, the flow goes on.
                    continue
            if f.kind == "tcp" and not data:
                f.dead = True
                sel.unregister(f.sock)
                continue
            f.heard(time.monotonic())
        if not ready and all(f.last is not None for f in flows):
            ready = True
            sys.stdout.write("ready\n")
            sys.stdout.flush()
        if FLAGS["usr1"] or FLAGS["term"]:
            now = time.monotonic()
            emit(
                {
                    "tcp": [f.window(now) for f in flows if f.kind == "tcp"],
                    "udp": [f.window(now) for f in flows if f.kind == "udp"],
                    "tcp_dead": sum(1 for f in flows if f.kind == "tcp" and f.dead),
                    "udp_dead": sum(1 for f in flows if f.kind == "udp" and f.dead),
                }
            )
            FLAGS["usr1"] = False
            if FLAGS["term"]:
                return


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "streams":
        streams(int(sys.argv[2]), int(sys.argv[3]))
    elif mode == "udp-echo":
        udp_echo(int(sys.argv[2]))
    elif mode == "client":
        p = argparse.ArgumentParser()
        p.add_argument("--tcp", action="append", default=[])
        p.add_argument("--udp", action="append", default=[])
        p.add_argument("--udp-interval-ms", type=int, default=100)
        client(p.parse_args(sys.argv[2:]))
    else:
        sys.exit(f"unknown mode {mode}")
