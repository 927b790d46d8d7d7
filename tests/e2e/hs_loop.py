#!/usr/bin/env python3
"""Continuous mutual-TLS handshakes to HOST:PORT until STOP exists (tests/e2e, t0410).

hs_loop.py HOST PORT CLIENT_PEM CA_PEM STOP OUT
Every handshake presents CLIENT_PEM (re-read each time, so the test can swap it), verifies the
server against CA_PEM (re-read too) and records one line in OUT: "ok <issuer CN>" or
"fail <reason>". The listener is the agent's inbound port: a completed handshake is the request
(nothing routes on this port without iptables' original destination).
"""
import socket
import ssl
import sys
import os
import time

host, port, client, ca, stop, out = sys.argv[1], int(sys.argv[2]), *sys.argv[3:7]
with open(out, "w", buffering=1) as f:
    while not os.path.exists(stop):
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.load_verify_locations(ca)
            ctx.load_cert_chain(client)
            with socket.create_connection((host, port), timeout=5) as s:
                with ctx.wrap_socket(s) as t:
                    cert = t.getpeercert()
                    # TLS 1.3: a refused client certificate shows as an alert at the first
                    # read; an accepted one gets a close or a reset (nothing is routed here)
                    t.settimeout(2)
                    try:
                        t.sendall(b"GET / HTTP/1.0\r\n\r\n")
                        t.recv(1)
                    except ssl.SSLError:
                        raise
                    except OSError:
                        pass
                    issuer = dict(x[0] for x in cert["issuer"]).get("commonName", "?")
                    f.write("ok %s\n" % issuer)
        except (OSError, ssl.SSLError) as e:
            f.write("fail %s\n" % str(e).replace("\n", " "))
        time.sleep(0.02)
