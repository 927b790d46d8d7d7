#!/usr/bin/env python3
"""hacli.py SOCKET COMMAND: one command on a HAProxy CLI socket (stats or master), the answer
on stdout (tests/e2e: t0400, t0410)."""
import socket
import sys

s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
s.shutdown(socket.SHUT_WR)
d = b""
while True:
    x = s.recv(65536)
    if not x:
        break
    d += x
print(d.decode(), end="")
