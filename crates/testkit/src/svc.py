#!/usr/bin/env python3
"""Small services for Kawaii's test hosts and lab.

  svc.py http NAME PORT      -> HTTP 200 "hello from NAME, you are IP:PORT"
  svc.py tcp-echo PORT       -> echoes TCP streams
  svc.py udp-echo NAME PORT  -> answers each datagram with "NAME got <data> from IP:PORT"
  svc.py stream HOST PORT STOPFILE -> streams through an echo server until STOPFILE exists,
                               checking every byte; prints "ok <bytes>" or "error <why>"
  svc.py scan HOST PROTO PORTS -> prints the ports that answer (TCP: accept or RST; UDP: a reply
                               or ICMP port unreachable), one per line
  svc.py digest PORT         -> reads each TCP stream to EOF, answers "<sha256 hex> <bytes>"
  svc.py load HOST PORT N SIZE -> N parallel connections each send SIZE random bytes and check
                               the digest server's answer; prints "ok N <seconds>" or the errors
"""
import hashlib
import os
import selectors
import time
import http.server
import socket
import socketserver
import sys
import threading


def _peer(addr):
    """A client's address as itself: an IPv4 client of a dual-stack socket without ::ffff:."""
    return addr[0].removeprefix("::ffff:")


def _dual(server_class):
    """`server_class` listening on both families where the host has IPv6, else IPv4 only."""

    class Dual(server_class):
        address_family = socket.AF_INET6

        def server_bind(self):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    def make(port, handler):
        try:
            return Dual(("::", port), handler)
        except OSError:
            return server_class(("0.0.0.0", port), handler)

    return make


def _dual_udp(port):
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
    except OSError:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
    return s


def http_server(name, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = f"hello from {name}, you are {_peer(self.client_address)}:{self.client_address[1]}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            sys.stderr.write(f"{_peer(self.client_address)} {fmt % args}\n")
            sys.stderr.flush()

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        # socketserver's default backlog is 5: a burst of short connections overflowed it (the
        # final ACK dropped, the client waiting for the SYN-ACK's retransmission).
        request_queue_size = 128

    _dual(Server)(port, Handler).serve_forever()


def tcp_echo(port):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(data)

    class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True

    Server(("0.0.0.0", port), Handler).serve_forever()


def udp_echo(name, port):
    s = _dual_udp(port)
    v6 = s.family == socket.AF_INET6
    if v6:
        # Answer from the address asked (a host with several IPv6 addresses would otherwise
        # pick its own source, which a connected client ignores).
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    while True:
        data, anc, _, addr = s.recvmsg(65535, socket.CMSG_SPACE(20))
        reply = f"{name} got {data.decode(errors='replace').strip()} from {_peer(addr)}:{addr[1]}\n".encode()
        info = [
            (level, kind, value)
            for level, kind, value in anc
            if v6 and level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO
        ]
        if addr[0].startswith("::ffff:"):
            info = []
        s.sendmsg([reply], info, 0, addr)


def stream(host, port, stopfile):
    total = 0
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.settimeout(5)
        chunk = os.urandom(4096)
        while not os.path.exists(stopfile):
            s.sendall(chunk)
            got = b""
            while len(got) < len(chunk):
                part = s.recv(len(chunk) - len(got))
                if not part:
                    raise OSError("connection closed by peer")
                got += part
            if got != chunk:
                raise OSError("echoed bytes differ")
            total += len(chunk)
            time.sleep(0.002)
        s.close()
        print(f"ok {total}", flush=True)
    except OSError as e:
        print(f"error after {total} bytes: {e}", flush=True)


def _poll(pending, event, timeout, reachable):
    """Waits up to `timeout` s for `event` on each socket of `pending` (socket -> port); the
    ports whose socket `reachable(sock)` accepts are returned. Every socket is closed."""
    found = []
    sel = selectors.DefaultSelector()
    for s in pending:
        sel.register(s, event)
    deadline = time.time() + timeout
    while pending and time.time() < deadline:
        for key, _ in sel.select(max(0, deadline - time.time())):
            s = key.fileobj
            sel.unregister(s)
            p = pending.pop(s)
            if reachable(s):
                found.append(p)
            s.close()
    for s in pending:
        s.close()
    return found


def _tcp_reachable(s):
    # Connected, refused (RST), or reset right after the handshake (a SYN proxy answers for a
    # port nothing listens on): the port is reachable.
    return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (0, 104, 111)


def _udp_reachable(s):
    try:
        s.recv(65535)
        return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def scan(host, proto, ports, timeout=1.5):
    pending = {}
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for p in ports:
        if proto == "tcp":
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, p))
        else:
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.connect((host, p))
            s.setblocking(False)
            s.send(b"probe")
        pending[s] = p
    if proto == "tcp":
        found = _poll(pending, selectors.EVENT_WRITE, timeout, _tcp_reachable)
    else:
        found = _poll(pending, selectors.EVENT_READ, timeout, _udp_reachable)
    for p in sorted(found):
        print(p)


def digest_server(port):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            h = hashlib.sha256()
            n = 0
            while True:
                data = self.request.recv(1 << 20)
                if not data:
                    break
                h.update(data)
                n += len(data)
            self.request.sendall(f"{h.hexdigest()} {n}\n".encode())

    class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 256

    Server(("0.0.0.0", port), Handler).serve_forever()


def load(host, port, count, size):
    errors = []
    start = time.time()

    def one(i):
        try:
            data = os.urandom(size)
            want = f"{hashlib.sha256(data).hexdigest()} {size}"
            s = socket.create_connection((host, port), timeout=60)
            s.settimeout(120)
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                part = s.recv(4096)
                if not part:
                    break
                got += part
            s.close()
            if got.decode().strip() != want:
                errors.append(f"connection {i}: digest {got.decode().strip()!r} != {want!r}")
        except OSError as e:
            errors.append(f"connection {i}: {e}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors[:10]), flush=True)
        sys.exit(1)
    print(f"ok {count} {time.time() - start:.1f}", flush=True)


def port_list(spec):
    out = []
    for item in spec.split(","):
        lo, _, hi = item.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(set(out))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "http":
        http_server(sys.argv[2], int(sys.argv[3]))
    elif mode == "tcp-echo":
        tcp_echo(int(sys.argv[2]))
    elif mode == "udp-echo":
        udp_echo(sys.argv[2], int(sys.argv[3]))
    elif mode == "stream":
        stream(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif mode == "digest":
        digest_server(int(sys.argv[2]))
    elif mode == "load":
        load(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "scan":
        scan(sys.argv[2], sys.argv[3], port_list(sys.argv[4]))
    else:
        sys.exit(f"unknown mode {mode}")
