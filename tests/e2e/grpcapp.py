#!/usr/bin/python3
"""grpcapp.py: a gRPC server and client for the protocol tests (tests/e2e/t0450-protocols.sh),
on Debian's python3-grpcio, without generated code (raw bytes in and out).

  grpcapp.py serve ADDR:PORT NAME
      serves /weft.Test/Call: the request "code=N" answers with status N (0: OK with the body
      NAME; else the error with the details "NAME", before any message: a Trailers-Only
      answer, grpc-status in the headers); and /weft.Test/Stream: "code=N count=K [size=B]
      [pause=MS]" answers K messages NAME (padded with '.' to B bytes), then, MS milliseconds
      later, status N (grpc-status in the trailers, after the messages); prints "ready PORT"
      once listening (ADDR's port 0: any free one).
  grpcapp.py call TARGET [-n COUNT] [--code N] [--stream K] [--deadline S]
      COUNT unary calls on one channel (one HTTP/2 connection, each call a stream), at most 16
      outstanding (with --stream K: COUNT server-streaming calls of K messages each, one at a
      time); prints "calls N", then one line per distinct outcome, "<count> OK <body>" or
      "<count> <STATUS_NAME> <details>", most frequent first (a stream's messages are checked:
      K of them, each the server's NAME, or the outcome is "BADSTREAM <what>").
  grpcapp.py held ADDR REQUEST HOLD
      one call of /weft.Test/Stream over h2c (ADDR: HOST:PORT, or the path of a unix socket), written by hand (no library: it must control
      HTTP/2 flow control), that lets no DATA in for HOLD seconds (initial window 0), then opens
      the windows and reads the answer to its end; prints "headers <n> data <bytes> trailers <n>
      end <yes|no>" (frames of each kind; end: the stream ended with END_STREAM, not reset). The
      status is not decoded (HPACK): the proxy's log tells it.
"""
import argparse
import collections
import concurrent.futures
import socket
import struct
import sys
import time

import grpc

METHOD = "/weft.Test/Call"
STREAM = "/weft.Test/Stream"
CODES = {c.value[0]: c for c in grpc.StatusCode}


def serve(args):
    addr, name = args.addr, args.name.encode()

    def call(request, context):
        code = 0
        if request.startswith(b"code="):
            code = int(request[5:])
        if code:
            context.abort(CODES[code], name.decode())
        return name

    def stream(request, context):
        args = dict(kv.split(b"=", 1) for kv in request.split())
        msg = name.ljust(int(args.get(b"size", b"0")), b".")
        for _ in range(int(args.get(b"count", b"0"))):
            yield msg
        time.sleep(int(args.get(b"pause", b"0")) / 1000)
        code = int(args.get(b"code", b"0"))
        if code:
            context.abort(CODES[code], name.decode())

    handler = grpc.method_handlers_generic_handler(
        "weft.Test", {"Call": grpc.unary_unary_rpc_method_handler(call),
                      "Stream": grpc.unary_stream_rpc_method_handler(stream)})
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(addr)
    if port == 0:
        sys.exit("cannot listen on " + addr)
    server.start()
    print("ready %d" % port, flush=True)
    server.wait_for_termination()


def call(args):
    outcomes = collections.Counter()
    with grpc.insecure_channel(args.target) as ch:
        stub = ch.unary_unary(METHOD)
        req = ("code=%d" % args.code).encode()
        futs = collections.deque()

        def settle(f):
            try:
                outcomes["OK " + f.result().decode()] += 1
            except grpc.RpcError as e:
                outcomes["%s %s" % (e.code().name, e.details())] += 1

        if args.stream is not None:
            calls = ch.unary_stream(STREAM)
            req = ("code=%d count=%d" % (args.code, args.stream)).encode()
            for _ in range(args.n):
                got = []
                try:
                    for m in calls(req, timeout=args.deadline):
                        got.append(m.decode())
                    outcome = "OK " + (got[0] if got else "-")
                except grpc.RpcError as e:
                    outcome = "%s %s" % (e.code().name, e.details())
                got = [m.rstrip(".") for m in got]
                if len(got) != args.stream or len(set(got)) > 1:
                    outcome = "BADSTREAM %d messages from %s" % (len(got), ",".join(sorted(set(got))))
                outcomes[outcome] += 1
            args.n, n = 0, args.n
        else:
            n = args.n
        for _ in range(args.n):
            futs.append(stub.future(req, timeout=args.deadline))
            if len(futs) >= 16:
                settle(futs.popleft())
        while futs:
            settle(futs.popleft())
    print("calls %d" % n)
    for k, v in outcomes.most_common():
        print(v, k)


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def held(args):
    """One call whose answer's DATA waits HOLD seconds behind a closed window (see the top)."""
    DATA, HEADERS, RST, SETTINGS, GOAWAY, WINDOW = 0, 1, 3, 4, 7, 8
    END_STREAM, ACK = 1, 1

    def lit(name, value):  # HPACK: literal without indexing, new name, no Huffman
        name, value = name.encode(), value.encode()
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

    hdrs = (lit(":method", "POST") + lit(":scheme", "http") + lit(":path", "/weft.Test/Stream") +
            lit(":authority", "weft.test") + lit("content-type", "application/grpc") + lit("te", "trailers"))
    req = args.request.encode()
    if args.addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(args.addr)
    else:
        host, port = args.addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=10)
    # SETTINGS_INITIAL_WINDOW_SIZE (4) = 0: no DATA on any stream until a WINDOW_UPDATE
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0)) +
              frame(HEADERS, 4, 1, hdrs) +  # END_HEADERS
              frame(DATA, END_STREAM, 1, b"\x00" + struct.pack(">I", len(req)) + req))
    buf, seen, data, end, opened = b"", collections.Counter(), 0, False, False
    start = time.monotonic()
    while not end:
        if not opened and time.monotonic() - start >= args.hold:
            # the stream's window from 0 to 2^30, the connection's from 65535 to 2^30 too
            s.sendall(frame(WINDOW, 0, 1, struct.pack(">I", 1 << 30)) +
                      frame(WINDOW, 0, 0, struct.pack(">I", (1 << 30) - 65535)))
            opened = True
        s.settimeout(max(0.01, args.hold - (time.monotonic() - start)) if not opened else 10)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            if opened:
                break
            continue
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            n = struct.unpack(">I", b"\x00" + buf[:3])[0]
            if len(buf) < 9 + n:
                break
            kind, flags, stream = buf[3], buf[4], struct.unpack(">I", buf[5:9])[0] & 0x7fffffff
            buf = buf[9 + n:]
            if kind == SETTINGS and not flags & ACK:
                s.sendall(frame(SETTINGS, ACK, 0))
            if stream != 1:
                if kind == GOAWAY:
                    end = None
                continue
            if kind == DATA:
                data += n
                if not opened:
                    sys.exit("DATA arrived through a closed window")
            elif kind == HEADERS:
                seen["headers" if not seen["headers"] else "trailers"] += 1
            elif kind == RST:
                end = None
                break
            if flags & END_STREAM and kind in (DATA, HEADERS):
                end = True
        if end is None:
            break
    s.close()
    print("headers %d data %d trailers %d end %s" % (seen["headers"], data, seen["trailers"], "yes" if end else "no"))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("addr")
    s.add_argument("name")
    c = sub.add_parser("call")
    c.add_argument("target")
    c.add_argument("-n", type=int, default=1)
    c.add_argument("--code", type=int, default=0)
    c.add_argument("--stream", type=int, default=None)
    c.add_argument("--deadline", type=float, default=10.0)
    h = sub.add_parser("held")
    h.add_argument("addr")
    h.add_argument("request")
    h.add_argument("hold", type=float)
    a = p.parse_args()
    {"serve": serve, "call": call, "held": held}[a.cmd](a)


if __name__ == "__main__":
    main()
