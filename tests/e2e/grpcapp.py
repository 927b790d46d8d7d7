#!/usr/bin/python3
"""grpcapp.py: a gRPC server and client for the protocol tests (tests/e2e/t0450-protocols.sh),
on Debian's python3-grpcio, without generated code (raw bytes in and out).

  grpcapp.py serve ADDR:PORT NAME
      serves /weft.Test/Call: the request "code=N" answers with status N (0: OK with the body
      NAME; else the error with the details "NAME", before any message: a Trailers-Only
      answer, grpc-status in the headers); and /weft.Test/Stream: "code=N count=K" answers K
      messages NAME, then status N (grpc-status in the trailers, after the messages); prints
      "ready" once listening.
  grpcapp.py call TARGET [-n COUNT] [--code N] [--stream K] [--deadline S]
      COUNT unary calls on one channel (one HTTP/2 connection, each call a stream), at most 16
      outstanding (with --stream K: COUNT server-streaming calls of K messages each, one at a
      time); prints "calls N", then one line per distinct outcome, "<count> OK <body>" or
      "<count> <STATUS_NAME> <details>", most frequent first (a stream's messages are checked:
      K of them, each the server's NAME, or the outcome is "BADSTREAM <what>").
"""
import argparse
import collections
import concurrent.futures
import sys

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
        for _ in range(int(args.get(b"count", b"0"))):
            yield name
        code = int(args.get(b"code", b"0"))
        if code:
            context.abort(CODES[code], name.decode())

    handler = grpc.method_handlers_generic_handler(
        "weft.Test", {"Call": grpc.unary_unary_rpc_method_handler(call),
                      "Stream": grpc.unary_stream_rpc_method_handler(stream)})
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(addr) == 0:
        sys.exit("cannot listen on " + addr)
    server.start()
    print("ready", flush=True)
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
    a = p.parse_args()
    serve(a) if a.cmd == "serve" else call(a)


if __name__ == "__main__":
    main()
