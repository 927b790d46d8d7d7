#!/usr/bin/env python3
"""A raw SPDY/3.1 port-forward client for kubelite's pods/portforward bounds (t0170).

  pfclient.py SERVER_URL PATH CHECK [ARGS...]

SERVER_URL is kubelite's plain-HTTP address (--insecure). CHECK is one of:
  streams N PORT      open N forwarded connections (error + data stream each) to PORT and keep
                      them; print how many were answered (SYN_REPLY) and how many refused
                      (RST_STREAM REFUSED_STREAM), then "forwarded M" (M connections carried
                      bytes both ways)
  frame               send a DATA frame announcing 2 MiB; print the GOAWAY status and whether the
                      connection closed
  idle                send nothing; print the seconds until GOAWAY and the close
  sessions N          open N upgraded connections and hold them; print the status codes
  flood PORT MB       one forwarded connection to PORT (which never reads), send MB megabytes;
                      print how many bytes the connection took before it stopped taking more
Header blocks are compressed without the SPDY dictionary (a zlib stream without FDICT is valid:
the server only needs the dictionary when the stream asks for it).
"""
import socket
import struct
import sys
import time
import zlib
from urllib.parse import urlparse


def upgrade(server, path):
    u = urlparse(server)
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    s.sendall((f"POST {path} HTTP/1.1\r\nHost: {u.hostname}\r\nConnection: Upgrade\r\n"
               "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n"
               "Content-Length: 0\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        if not d:
            break
        head += d
    code = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return s, code


class Spdy:
    def __init__(self, sock):
        self.s = sock
        self.z = zlib.compressobj(9)
        self.buf = b""
        self.next_id = 1

    def syn(self, headers, fin=False):
        nv = struct.pack(">I", len(headers))
        for k, v in headers.items():
            nv += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        block = self.z.compress(nv) + self.z.flush(zlib.Z_SYNC_FLUSH)
        sid = self.next_id
        self.next_id += 2
        body = struct.pack(">IIBB", sid, 0, 0, 0) + block
        self.s.sendall(struct.pack(">HHI", 0x8003, 1, (1 if fin else 0) << 24 | len(body)) + body)
        return sid

    def data(self, sid, payload, fin=False):
        self.s.sendall(struct.pack(">II", sid, (1 if fin else 0) << 24 | len(payload)) + payload)

    def frame(self, timeout=5):
        """(control, type_or_stream, flags, body), or None at the end."""
        self.s.settimeout(timeout)
        while True:
            if len(self.buf) >= 8:
                w0, w1 = struct.unpack(">II", self.buf[:8])
                n = w1 & 0xFFFFFF
                if len(self.buf) >= 8 + n:
                    body = self.buf[8:8 + n]
                    self.buf = self.buf[8 + n:]
                    if w0 & 0x80000000:
                        return True, w0 & 0xFFFF, w1 >> 24, body
                    return False, w0 & 0x7FFFFFFF, w1 >> 24, body
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return "timeout"
            except OSError:
                return None
            if not d:
                return None
            self.buf += d


def check_streams(server, path, n, port):
    s, code = upgrade(server, path)
    assert code == 101, code
    c = Spdy(s)
    pairs = []
    for i in range(n):
        e = c.syn({"streamtype": "error", "port": port, "requestid": str(i)})
        d = c.syn({"streamtype": "data", "port": port, "requestid": str(i)})
        pairs.append((e, d))
    replied, refused = set(), set()
    got = {}
    deadline = time.time() + 10
    while time.time() < deadline and len(replied) + len(refused) < 2 * n:
        f = c.frame(2)
        if f in (None, "timeout"):
            break
        ctl, t, flags, body = f
        if ctl and t == 2:
            replied.add(struct.unpack(">I", body[:4])[0] & 0x7FFFFFFF)
        elif ctl and t == 3:
            sid, st = struct.unpack(">II", body[:8])
            if st == 3:
                refused.add(sid)
    for e, d in pairs:
        if d in replied:
            c.data(d, b"ping\n")
    deadline = time.time() + 10
    while time.time() < deadline:
        f = c.frame(1)
        if f in (None, "timeout"):
            break
        ctl, t, flags, body = f
        if not ctl and body:
            got[t] = got.get(t, b"") + body
    forwarded = sum(1 for e, d in pairs if got.get(d, b"").startswith(b"ping"))
    print(f"replied {len(replied)} refused {len(refused)} forwarded {forwarded}")


def check_frame(server, path):
    s, code = upgrade(server, path)
    assert code == 101, code
    c = Spdy(s)
    s.sendall(struct.pack(">II", 1, 2 << 20) + b"x" * 100)
    f = c.frame(5)
    status = None
    while f not in (None, "timeout"):
        ctl, t, flags, body = f
        if ctl and t == 7:
            status = struct.unpack(">II", body[:8])[1]
        f = c.frame(5)
    print(f"goaway {status} closed {f is None}")


def check_idle(server, path):
    s, code = upgrade(server, path)
    assert code == 101, code
    c = Spdy(s)
    t0 = time.time()
    f = c.frame(30)
    goaway = None
    while f not in (None, "timeout"):
        if f[0] and f[1] == 7:
            goaway = time.time() - t0
        f = c.frame(30)
    print(f"goaway_after {goaway:.1f} closed_after {time.time() - t0:.1f} closed {f is None}")


def check_sessions(server, path, n):
    held, codes = [], {}
    for _ in range(n):
        s, code = upgrade(server, path)
        codes[code] = codes.get(code, 0) + 1
        held.append(s)
    print(" ".join(f"{k}:{v}" for k, v in sorted(codes.items())))


def check_flood(server, path, port, mb):
    s, code = upgrade(server, path)
    assert code == 101, code
    c = Spdy(s)
    c.syn({"streamtype": "error", "port": port, "requestid": "0"})
    d = c.syn({"streamtype": "data", "port": port, "requestid": "0"})
    chunk = b"y" * 32768
    sent = 0
    s.settimeout(1)
    try:
        while sent < mb << 20:
            c.data(d, chunk)
            sent += len(chunk)
    except OSError:  # a timeout: the server stopped taking bytes
        pass
    print(f"taken {sent}")


def main():
    server, path, check = sys.argv[1:4]
    a = sys.argv[4:]
    if check == "streams":
        check_streams(server, path, int(a[0]), a[1])
    elif check == "frame":
        check_frame(server, path)
    elif check == "idle":
        check_idle(server, path)
    elif check == "sessions":
        check_sessions(server, path, int(a[0]))
    elif check == "flood":
        check_flood(server, path, a[0], int(a[1]))
    else:
        sys.exit(f"unknown check {check}")


if __name__ == "__main__":
    main()
