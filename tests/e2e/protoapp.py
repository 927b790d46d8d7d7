#!/usr/bin/python3
"""protoapp.py: server-first TCP, long-lived TCP streams and WebSockets for the protocol tests
(tests/e2e/t0450-protocols.sh). Standard library only; the WebSocket side is RFC 6455's
handshake and unfragmented frames, enough to echo text messages.

Servers (print "ready" once listening; one thread per connection):
  protoapp.py banner ADDR PORT NAME    the server speaks first: "220 NAME ready\\r\\n" on accept,
                                       then echoes every line
  protoapp.py ws ADDR PORT NAME        HTTP/1.1: an Upgrade to websocket on any path is accepted
                                       (101) and every text message echoed; a plain GET answers
                                       200 "NAME\\n"
Clients:
  protoapp.py first-bytes ADDR PORT [SECONDS]
                                       connects and reads without sending anything (for at most
                                       SECONDS, default 10): prints "<ms to connect> <ms to the
                                       first line> <first line>", or "ERR <reason> <ms>"
  protoapp.py hold ADDR PORT SECONDS   a long-lived stream: after the banner, one line every
                                       100 ms, each echo checked; appends progress to stdout as
                                       "t=<s> sent=<n> echoed=<n>" once a second and ends with
                                       "held <s> sent <n> echoed <n> error <reason|none>"
  protoapp.py ws-hold ADDR PORT PATH SECONDS
                                       the same over a WebSocket (PATH for the Upgrade); first
                                       prints "upgrade <status> <x-weft-denied or ->"; a refused
                                       upgrade ends there
"""
import base64
import hashlib
import os
import socket
import struct
import sys
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def listen(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    s.listen(64)
    print("ready", flush=True)
    return s


def serve(s, handler, *extra):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,) + extra, daemon=True).start()


def banner_conn(c, name):
    try:
        c.sendall(b"220 " + name.encode() + b" ready\r\n")
        f = c.makefile("rb")
        for line in f:
            c.sendall(line)
    except OSError:
        pass
    finally:
        c.close()


def read_head(f):
    lines = []
    while True:
        line = f.readline(8192)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.decode("latin-1").rstrip("\r\n"))


def frame(payload, mask):
    b = bytearray([0x81])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        b.append(mbit | n)
    elif n < 65536:
        b.append(mbit | 126)
        b += struct.pack("!H", n)
    else:
        b.append(mbit | 127)
        b += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        b += key
        payload = bytes(x ^ key[i % 4] for i, x in enumerate(payload))
    return bytes(b) + payload


def read_frame(f):
    h = f.read(2)
    if len(h) < 2:
        return None, None
    op, n = h[0] & 0x0F, h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", f.read(8))[0]
    key = f.read(4) if h[1] & 0x80 else None
    data = f.read(n)
    if key:
        data = bytes(x ^ key[i % 4] for i, x in enumerate(data))
    return op, data


def ws_conn(c, name):
    try:
        f = c.makefile("rb")
        head = read_head(f)
        if not head:
            return
        hdr = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            hdr[k.strip().lower()] = v.strip()
        if hdr.get("upgrade", "").lower() != "websocket":
            body = (name + "\n").encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                      % len(body) + body)
            return
        acc = base64.b64encode(hashlib.sha1(hdr["sec-websocket-key"].encode() + GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        while True:
            op, data = read_frame(f)
            if op is None or op == 8:
                return
            if op == 1:
                c.sendall(frame(data, False))
    except OSError:
        pass
    finally:
        c.close()


def now_ms(t0):
    return (time.monotonic() - t0) * 1000


def first_bytes(addr, port, seconds):
    t0 = time.monotonic()
    try:
        s = socket.create_connection((addr, int(port)), timeout=float(seconds))
        tc = now_ms(t0)
        line = s.makefile("rb").readline(200)
        if not line:
            print("ERR closed %.1f" % now_ms(t0))
            return
        print("%.1f %.1f %s" % (tc, now_ms(t0), line.decode("latin-1").rstrip()))
    except OSError as e:
        print("ERR %s %.1f" % (type(e).__name__, now_ms(t0)))


def hold_loop(send, recv, seconds, t0):
    sent = echoed = 0
    err = "none"
    last = 0
    try:
        while time.monotonic() - t0 < seconds:
            msg = "seq %d" % sent
            send(msg)
            sent += 1
            got = recv()
            if got != msg:
                err = "mismatch:%r" % (got,)
                break
            echoed += 1
            if int(time.monotonic() - t0) != last:
                last = int(time.monotonic() - t0)
                print("t=%d sent=%d echoed=%d" % (last, sent, echoed), flush=True)
            time.sleep(0.1)
    except (OSError, ValueError) as e:
        err = type(e).__name__
    print("held %.1f sent %d echoed %d error %s" % (time.monotonic() - t0, sent, echoed, err),
          flush=True)


def hold(addr, port, seconds):
    t0 = time.monotonic()
    s = socket.create_connection((addr, int(port)), timeout=10)
    f = s.makefile("rb")
    f.readline()  # the banner

    def recv():
        line = f.readline()
        if not line:
            raise ValueError("closed")
        return line.decode().rstrip("\r\n")

    hold_loop(lambda m: s.sendall(m.encode() + b"\n"), recv, float(seconds), t0)


def ws_hold(addr, port, path, seconds):
    t0 = time.monotonic()
    s = socket.create_connection((addr, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (path, addr, key)).encode())
    f = s.makefile("rb")
    head = read_head(f) or ["- 000"]
    status = head[0].split(" ")[1]
    denied = "-"
    for line in head[1:]:
        if line.lower().startswith("x-weft-denied:"):
            denied = line.split(":", 1)[1].strip()
    print("upgrade %s %s" % (status, denied), flush=True)
    if status != "101":
        return

    def recv():
        op, data = read_frame(f)
        if op != 1:
            raise ValueError("closed")
        return data.decode()

    hold_loop(lambda m: s.sendall(frame(m.encode(), True)), recv, float(seconds), t0)


def main():
    a = sys.argv[1:]
    if a[0] == "banner":
        serve(listen(a[1], a[2]), banner_conn, a[3])
    elif a[0] == "ws":
        serve(listen(a[1], a[2]), ws_conn, a[3])
    elif a[0] == "first-bytes":
        first_bytes(a[1], a[2], a[3] if len(a) > 3 else 10)
    elif a[0] == "hold":
        hold(a[1], a[2], a[3])
    elif a[0] == "ws-hold":
        ws_hold(a[1], a[2], a[3], a[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
