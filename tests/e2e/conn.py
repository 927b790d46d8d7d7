#!/usr/bin/python3
"""conn.py - long-lived connections for the e2e tests (tests/e2e/t0440-access.sh, t0300).

  conn.py echo ADDR:PORT            a TCP line echo server: every line received is sent back;
                                    logs "conn PEER" and "line PEER TEXT" to stdout (the app's
                                    own record of what reached it).
  conn.py tcp ADDR PORT N INTERVAL  one TCP connection: "local PORT", then N lines "ping I"
                                    INTERVAL seconds apart, each answer printed as "echo I";
                                    "closed after I" when the peer closes, "ERR <reason>" on an
                                    error. Exit 0 when all N came back on the one connection.
  conn.py http URL N INTERVAL       one HTTP/1.1 keep-alive connection (never reopened): N GETs
                                    INTERVAL seconds apart, one line per answer "PORT STATUS"
                                    (PORT: the connection's local port), "closed after I" or
                                    "ERR <reason>". Exit 0 when all N were answered on it.
  conn.py hold ADDR PORT N SECONDS  a hostile peer: N TCP connections that never send a byte.
                                    After 1 s prints "open K of N" (K: those the server has not
                                    closed), keeps them SECONDS more (or until stdin closes),
                                    prints "open K of N" again and closes them all.
"""
import socket
import sys
import threading
import time
import urllib.parse


def echo(where):
    addr, _, port = where.rpartition(":")
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(64)
    print("listening", flush=True)

    def one(c, peer):
        print("conn %s:%d" % peer, flush=True)
        f = c.makefile("rb")
        try:
            for line in f:
                print("line %s:%d %s" % (peer[0], peer[1], line.decode(errors="replace").rstrip()), flush=True)
                c.sendall(line)
        except OSError:
            pass
        c.close()

    while True:
        c, peer = srv.accept()
        threading.Thread(target=one, args=(c, peer), daemon=True).start()


def tcp(addr, port, n, interval):
    try:
        s = socket.create_connection((addr, int(port)), timeout=5)
    except OSError as e:
        print("ERR connect: %s" % e)
        return 1
    print("local %d" % s.getsockname()[1], flush=True)
    f = s.makefile("rb")
    for i in range(int(n)):
        if i:
            time.sleep(float(interval))
        try:
            s.sendall(b"ping %d\n" % i)
            line = f.readline()
        except OSError as e:
            print("ERR %d: %s" % (i, e), flush=True)
            return 1
        if not line:
            print("closed after %d" % i, flush=True)
            return 1
        print("echo %s" % line.decode().split()[-1], flush=True)
    return 0


def http(url, n, interval):
    u = urllib.parse.urlsplit(url)
    try:
        s = socket.create_connection((u.hostname, u.port or 80), timeout=5)
    except OSError as e:
        print("ERR connect: %s" % e)
        return 1
    port = s.getsockname()[1]
    f = s.makefile("rb")
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (u.path or "/", u.netloc)).encode()
    for i in range(int(n)):
        if i:
            time.sleep(float(interval))
        try:
            s.sendall(req)
            status = f.readline()
            if not status:
                print("closed after %d" % i, flush=True)
                return 1
            length, close = 0, False
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode().partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
                elif k.strip().lower() == "connection" and v.strip().lower() == "close":
                    close = True
            f.read(length)
        except OSError as e:
            print("ERR %d: %s" % (i, e), flush=True)
            return 1
        print("%d %s" % (port, status.decode().split()[1]), flush=True)
        if close:
            print("closed after %d" % (i + 1), flush=True)
            return 1
    return 0


def hold(addr, port, n, seconds):
    import select

    socks = []
    for _ in range(int(n)):
        try:
            socks.append(socket.create_connection((addr, int(port)), timeout=5))
        except (ConnectionResetError, ConnectionAbortedError):
            pass  # closed by the server as soon as it was accepted: not kept
        except OSError as e:
            print("ERR connect %d: %s" % (len(socks), e), flush=True)
            break

    def still_open():
        k = 0
        for s in socks:
            r, _, _ = select.select([s], [], [], 0)
            if not r:
                k += 1
                continue
            try:
                if s.recv(1, socket.MSG_PEEK):
                    k += 1
            except OSError:
                pass
        return k

    time.sleep(1)
    print("open %d of %s" % (still_open(), n), flush=True)
    select.select([sys.stdin], [], [], float(seconds))
    print("open %d of %s" % (still_open(), n), flush=True)
    for s in socks:
        s.close()
    return 0


def main():
    a = sys.argv[1:]
    if a[:1] == ["echo"] and len(a) == 2:
        echo(a[1])
    elif a[:1] == ["tcp"] and len(a) == 5:
        sys.exit(tcp(*a[1:]))
    elif a[:1] == ["http"] and len(a) == 4:
        sys.exit(http(*a[1:]))
    elif a[:1] == ["hold"] and len(a) == 5:
        sys.exit(hold(*a[1:]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
