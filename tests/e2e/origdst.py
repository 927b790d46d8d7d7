#!/usr/bin/python3
"""origdst.py - tiny TCP/UDP endpoints for the e2e tests (tests/e2e/).

  origdst.py serve NAME@ADDR:PORT ...   listen on each (ADDR may be 0.0.0.0 or ::); every TCP
                                        connection gets one line "NAME ORIGDST PEER" and is closed.
                                        ORIGDST is SO_ORIGINAL_DST (the address before a REDIRECT;
                                        the socket's own address when none). A "udp:" prefix on
                                        NAME makes a UDP listener that records datagrams instead
                                        (answered with the same line).
  origdst.py connect ADDR PORT [--src ADDR] [--timeout S]
                                        prints the line the server sent, or "ERR <reason>"
                                        (exit 1).
  origdst.py udp ADDR PORT              sends one datagram, prints the answer or "ERR timeout".
"""
import select
import socket
import struct
import sys

SO_ORIGINAL_DST = 80
SOL_IPV6 = 41


def orig_dst(conn, family):
    try:
        if family == socket.AF_INET:
            raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port, = struct.unpack("!H", raw[2:4])
            return "%s:%d" % (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
        raw = conn.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
        port, = struct.unpack("!H", raw[2:4])
        return "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port)
    except OSError:
        host, port = conn.getsockname()[:2]
        return ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (host, port)


def serve(specs):
    socks = {}
    for spec in specs:
        name, _, where = spec.partition("@")
        addr, _, port = where.rpartition(":")
        addr = addr.strip("[]")
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        udp = name.startswith("udp:")
        s = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, int(port)))
        if not udp:
            s.listen(64)
        socks[s] = (name, family, udp)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select(list(socks), [], [])
        for s in ready:
            name, family, udp = socks[s]
            if udp:
                data, peer = s.recvfrom(2048)
                s.sendto(("%s %s\n" % (name, peer[0])).encode(), peer)
                continue
            try:
                conn, peer = s.accept()
            except OSError:
                continue
            try:
                line = "%s %s %s\n" % (name, orig_dst(conn, family), peer[0])
                conn.sendall(line.encode())
            except OSError:
                pass
            conn.close()


def connect(args):
    addr, port = args[0], int(args[1])
    src, timeout = None, 3.0
    i = 2
    while i < len(args):
        if args[i] == "--src":
            src = args[i + 1]
        elif args[i] == "--timeout":
            timeout = float(args[i + 1])
        i += 2
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if src:
            s.bind((src, 0))
        s.connect((addr, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(512)
            if not chunk:
                break
            data += chunk
        if not data:
            print("ERR closed")
            return 1
        sys.stdout.write(data.decode())
        return 0
    except OSError as e:
        print("ERR %s" % (e.strerror or e))
        return 1


def udp(args):
    addr, port = args[0], int(args[1])
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.sendto(b"ping", (addr, port))
    r, _, _ = select.select([s], [], [], 3)
    if not r:
        print("ERR timeout")
        return 1
    sys.stdout.write(s.recv(2048).decode())
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "serve":
        serve(rest)
    elif cmd == "connect":
        sys.exit(connect(rest))
    elif cmd == "udp":
        sys.exit(udp(rest))
    else:
        sys.exit(__doc__)
