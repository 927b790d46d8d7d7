#!/usr/bin/env python3
"""hostile.py - the clients an attacker inside the cluster would point at weftd's listeners.

    hostile.py KIND --port P [--tls] [--src 127.0.0.2] [-n N] [options]

Kinds:
  slow-body  N connections each send a request head (Content-Length --length), --prefix bytes of
             the body, then one byte every --interval seconds: a silence timeout would never
             fire. Each ends when weftd closes it.
  slow-head  N connections each send a request line and then one header byte every --interval
             seconds (the head never ends).
  no-hello   N TCP connections that never start the TLS handshake (or, plain, never send).
  idle       N connections (TLS handshake done) that send nothing, held --hold seconds; the
             answer weftd gives at once (503 beyond a cap) is recorded.
  fill       N plain TCP connections held --hold seconds (descriptor exhaustion: weftd's
             accept fails with EMFILE once its limit is reached).
  buffered   N connections each send a head (Content-Length --length) and --prefix bytes of
             body, then wait for weftd to answer or close.

When everything has ended it prints one JSON line: for each connection the seconds from its
connect to its close ("closed_after", null when still open at the end), the bytes it sent, and
the status line weftd answered with ("" when none); slow-body also counts the bytes trickled. Connections are opened from --src, so that
weftd's per-address cap sees one attacker apart from the API server and the test (--srcs N:
N attackers, 127.0.0.2 onwards).
"""
import argparse
import json
import select
import socket
import ssl
import sys
import time


def connect(a, i):
    src = a.src
    if a.srcs > 1:  # spread over 127.0.0.2, 127.0.0.3, ... (several pods)
        src = "127.0.0.%d" % (2 + i % a.srcs)
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10, source_address=(src, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def wrap(a, s):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(s, server_hostname="weftd")


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.start = time.monotonic()
        self.closed_after = None
        self.sent = 0
        self.trickled = 0
        self.got = b""

    def report(self):
        line = self.got.split(b"\r\n", 1)[0].decode("latin-1")
        return {"closed_after": self.closed_after, "sent": self.sent, "trickled": self.trickled,
                "status": line}

    def poll_closed(self):
        """Read what weftd sent; True once it has closed."""
        if self.closed_after is not None:
            return True
        try:
            self.sock.setblocking(False)
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.got += data
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            pass
        self.closed_after = round(time.monotonic() - self.start, 3)
        return True

    def send(self, data):
        try:
            self.sock.setblocking(True)
            self.sock.sendall(data)
            self.sent += len(data)
            return True
        except OSError:
            self.poll_closed()
            return False


def head(a):
    return ("POST /inject HTTP/1.1\r\nHost: weftd\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % a.length).encode()


def open_conns(a, tls, hello=True):
    conns = []
    for i in range(a.n):
        try:
            s = connect(a, i)
            if tls and hello:
                s = wrap(a, s)
        except (OSError, ssl.SSLError):
            c = Conn(None)
            c.closed_after = 0.0
            conns.append(c)
            continue
        conns.append(Conn(s))
    return conns


def wait_closed(conns, until):
    while time.monotonic() < until and not all([c.poll_closed() for c in conns]):
        socks = [c.sock for c in conns if c.closed_after is None]
        select.select(socks, [], [], 0.1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["slow-body", "slow-head", "no-hello", "idle", "fill",
                                    "buffered"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--src", default="127.0.0.2")
    p.add_argument("--srcs", type=int, default=1,
                   help="spread the connections over this many addresses from 127.0.0.2")
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--length", type=int, default=1 << 20)
    p.add_argument("--prefix", type=int, default=65536)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--hold", type=float, default=5)
    p.add_argument("--max", type=float, default=60, help="give up after this many seconds")
    p.add_argument("--ready", help="touch this file once every connection is open")
    a = p.parse_args()
    end = time.monotonic() + a.max

    conns = open_conns(a, a.tls, hello=a.kind not in ("no-hello", "fill"))
    if a.kind in ("slow-body", "buffered"):
        for c in conns:
            if c.closed_after is None:
                c.send(head(a) + b"x" * a.prefix)
    elif a.kind == "slow-head":
        for c in conns:
            if c.closed_after is None:
                c.send(b"POST /inject HTTP/1.1\r\nHost: weftd\r\nX-Slow: ")
    if a.ready:
        open(a.ready, "w").close()
    if a.kind in ("slow-body", "slow-head"):
        while time.monotonic() < end:
            live = [c for c in conns if not c.poll_closed()]
            if not live:
                break
            for c in live:
                if c.send(b"x"):
                    c.trickled += 1
            time.sleep(a.interval)
    elif a.kind in ("idle", "fill"):
        stop = min(end, time.monotonic() + a.hold)
        wait_closed(conns, stop)
    else:
        wait_closed(conns, end)
    for c in conns:
        c.poll_closed()
    print(json.dumps([c.report() for c in conns]))
    for c in conns:
        if c.sock:
            c.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
