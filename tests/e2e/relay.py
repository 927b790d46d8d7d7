#!/usr/bin/env python3
"""relay.py - carry TCP connections from one network namespace to another through a Unix socket
(the filesystem is shared between namespaces, the loopback is not). Used by the e2e suites to
let an agent inside a test namespace reach weftd on this machine's loopback.

  relay.py unix-to-tcp SOCK HOST:PORT   listen on SOCK; each connection is relayed to HOST:PORT
                                        (run where HOST:PORT is reachable)
  relay.py tcp-to-unix HOST:PORT SOCK   listen on HOST:PORT; each connection is relayed to SOCK
                                        (run in the namespace whose clients dial HOST:PORT)

Prints "ready" once listening. Bytes are copied both ways unchanged (TLS passes through); at most
256 connections at once, each closed when either side closes.
"""
import asyncio
import os
import sys

MAX_CONNS = 256
active = 0


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


def handler(connect):
    async def handle(reader, writer):
        global active
        if active >= MAX_CONNS:
            writer.close()
            return
        active += 1
        try:
            r2, w2 = await asyncio.wait_for(connect(), 5)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            active -= 1
            return
        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))
        active -= 1

    return handle


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


async def main(argv):
    if len(argv) != 4 or argv[1] not in ("unix-to-tcp", "tcp-to-unix"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "unix-to-tcp":
        sock, (host, port) = argv[2], hostport(argv[3])
        if os.path.exists(sock):
            os.unlink(sock)
        server = await asyncio.start_unix_server(
            handler(lambda: asyncio.open_connection(host, port)), path=sock)
        os.chmod(sock, 0o666)
    else:
        (host, port), sock = hostport(argv[2]), argv[3]
        server = await asyncio.start_server(
            handler(lambda: asyncio.open_unix_connection(sock)), host, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
