#!/usr/bin/python3
"""grpcapp.py: a gRPC server and client for the protocol tests (tests/e2e/t0450-protocols.sh),
on Debian's python3-grpcio, without generated code (raw bytes in and out).

  grpcapp.py serve ADDR:PORT NAME
      serves /weft.Test/Call: the request "code=N" answers with status N (0: OK with the body
      NAME; else the error with the details "NAME"); prints "ready" once listening.
  grpcapp.py call TARGET [-n COUNT] [--code N] [--deadline S]
      COUNT unary calls on one channel (one HTTP/2 connection, each call a stream), at most 16
      outstanding; prints "calls N", then one line per distinct outcome, "<count>
      OK <body>" or "<count> <STATUS_NAME> <details>", most frequent first.
"""
import argparse
import collections
import concurrent.futures
import sys

import grpc

METHOD = "/weft.Test/Call"
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

    handler = grpc.method_handlers_generic_handler(
        "weft.Test", {"Call": grpc.unary_unary_rpc_method_handler(call)})
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

        for _ in range(args.n):
            futs.append(stub.future(req, timeout=args.deadline))
            if len(futs) >= 16:
                settle(futs.popleft())
        while futs:
            settle(futs.popleft())
    print("calls %d" % args.n)
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
    c.add_argument("--deadline", type=float, default=10.0)
    a = p.parse_args()
    serve(a) if a.cmd == "serve" else call(a)


if __name__ == "__main__":
    main()
