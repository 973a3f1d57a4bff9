#!/usr/bin/env python3
"""Small services for Kawaii's test hosts and lab.

  svc.py http NAME PORT      -> HTTP 200 "hello from NAME, you are IP:PORT"
  svc.py tcp-echo PORT       -> echoes TCP streams
  svc.py udp-echo NAME PORT  -> answers each datagram with "NAME got <data> from IP:PORT"
"""
import http.server
import socket
import socketserver
import sys
import threading


def http_server(name, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = f"hello from {name}, you are {self.client_address[0]}:{self.client_address[1]}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            sys.stderr.write(f"{self.client_address[0]} {fmt % args}\n")
            sys.stderr.flush()

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    Server(("0.0.0.0", port), Handler).serve_forever()


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
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, addr = s.recvfrom(65535)
        s.sendto(f"{name} got {data.decode(errors='replace').strip()} from {addr[0]}:{addr[1]}\n".encode(), addr)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "http":
        http_server(sys.argv[2], int(sys.argv[3]))
    elif mode == "tcp-echo":
        tcp_echo(int(sys.argv[2]))
    elif mode == "udp-echo":
        udp_echo(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {mode}")
