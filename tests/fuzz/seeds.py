#!/usr/bin/env python3
# Regenerates the committed seed corpora under tests/fuzz/corpus/ (docs/fuzzing.md). Run by hand
# from the repository root after changing a fixture: python3 tests/fuzz/seeds.py
# Needs PyYAML (python3-yaml) and the openssl command. Only files named seed-* are rewritten;
# reproducers of fixed bugs (crash-*, repro-*) in the same directories are left alone.
import base64
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def clear(target):
    for p in glob.glob(os.path.join(CORPUS, target, "seed-*")):
        os.remove(p)


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


# ---- fuzz_json: repository JSON plus edge cases ------------------------------------------------
def seeds_json():
    clear("fuzz_json")
    # one compiled proxy document per mesh scenario (they are much alike), all proto fixtures
    files = [sorted(glob.glob(os.path.join(d, "*.json")))[0]
             for d in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/mesh/*/expected")))
             if glob.glob(os.path.join(d, "*.json"))]
    files += sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/proto/*.json")))
    for p in files:
        data = open(p, "rb").read()
        if len(data) > 16384:
            continue
        name = os.path.relpath(p, os.path.join(ROOT, "tests/fixtures")).replace("/", "_")
        out("fuzz_json", name, data)
    edge = {
        "numbers": '[0,-0,1,-1,9223372036854775807,-9223372036854775808,0.5,-0.0,1e10,1E-5,'
                   '2.5e+300,1.7976931348623157e308,5e-324,123456789012345678]',
        "bigint": "[9223372036854775808]",
        "overflow": "[1e400]",
        "escapes": r'["\"\\\/\b\f\n\r\t","\u0041\u00e9\u4e2d\ud83d\ude00","\u001f"]',
        "utf8": '["\u00e9\u4e2d\U0001f600"]',
        "badutf8": b'["\xc0\xaf","\xed\xa0\x80","\xf4\x90\x80\x80"]',
        "nul-after-number": b"[1\x00]",
        "nul-escape": r'["a\u0000b"]',
        "lone-surrogate": r'["\ud800"]',
        "dupkeys": '{"a":1,"a":2,"b":{"a":[],"a":{}}}',
        "empty": '{"":{},"x":[],"y":[[]],"z":null,"t":true,"f":false}',
        "whitespace": ' \t\r\n{ "a" : [ 1 , 2 ] }\n ',
        "trailing": '{"a":1} x',
        "deep": "[" * 2048 + "]" * 2048,
        "too-deep": "[" * 2049 + "]" * 2049,
        "control": b'["a\x01b"]',
    }
    for k, v in edge.items():
        out("fuzz_json", "edge-" + k + ".json", v)


# ---- fuzz_review: AdmissionReviews around the injection fixtures -------------------------------
def review(obj, uid="00000000-0000-4000-8000-000000000001", op="CREATE", ns="shop",
           dry=False, sub=None, kind="Pod", group=""):
    req = {
        "uid": uid,
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": "pods"},
        "namespace": ns,
        "operation": op,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": obj,
        "oldObject": None,
        "dryRun": dry,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    if sub:
        req["subResource"] = sub
    return compact({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
                    "request": req})


def bench_review():
    src = open(os.path.join(ROOT, "bench/webhook_bench.c")).read()
    body = src.split("review_parts[] = {", 1)[1].split("NULL,", 1)[0]
    text = ""
    for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', body):
        text += lit.encode().decode("unicode_escape")
    json.loads(text)
    return text


def seeds_review():
    clear("fuzz_review")
    pods = {}
    for p in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/inject/*.yaml"))):
        if p.endswith(".golden.yaml"):
            continue
        name = os.path.basename(p)[:-5]
        pods[name] = yaml.safe_load(open(p))
        out("fuzz_review", name + ".json", review(pods[name]))
    out("fuzz_review", "bench.json", bench_review())
    simple = pods["simple"]
    out("fuzz_review", "update.json", review(simple, op="UPDATE"))
    out("fuzz_review", "dryrun.json", review(simple, dry=True))
    out("fuzz_review", "subresource.json", review(simple, sub="ephemeralcontainers"))
    out("fuzz_review", "other-kind.json", review({"metadata": {"name": "x"}}, kind="Deployment",
                                                  group="apps"))
    out("fuzz_review", "kube-system.json", review(simple, ns="kube-system"))
    bad = json.loads(json.dumps(simple))
    bad["metadata"]["annotations"] = {"traffic.weft.dev/exclude-outbound-ports": "80,x",
                                      "weft.dev/proxy-cpu": "lots"}
    out("fuzz_review", "bad-annotation.json", review(bad))
    host = json.loads(json.dumps(simple))
    host["spec"]["hostNetwork"] = True
    out("fuzz_review", "hostnetwork.json", review(host))
    out("fuzz_review", "no-uid.json", review(simple, uid=""))
    out("fuzz_review", "not-review.json", '{"kind":"Status","apiVersion":"v1"}')


# ---- fuzz_yaml: YAML from the repository and the features the reader handles -------------------
def seeds_yaml():
    clear("fuzz_yaml")
    files = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/inject/*.yaml")))
    files += sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/charts/*/values.yaml")))
    files += sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/mesh/*/*.yaml")))[:12]
    for p in files:
        data = open(p, "rb").read()
        if len(data) > 16384:
            continue
        name = os.path.relpath(p, os.path.join(ROOT, "tests/fixtures")).replace("/", "_")
        out("fuzz_yaml", name, data)
    edge = {
        "scalars": "a: ~\nb: null\nc: yes\nd: Off\ne: 0x1F\nf: 0o17\ng: 0b101\nh: 1_000\n"
                   "i: -12\nj: 1.5e3\nk: .5\nl: .inf\nm: -.Inf\nn: .nan\no: '007'\n"
                   "p: \"true\"\nq: 18446744073709551615\nr: 9223372036854775808\ns: 2001-12-14\n",
        "anchors": "base: &b {x: 1, y: [1, 2]}\nd1:\n  <<: *b\n  y: 3\nd2:\n  <<: [*b, {z: 4}]\n"
                   "list: &l [a, b]\ncopy: *l\n",
        "multidoc": "---\na: 1\n---\n---\n- x\n- y\n...\n--- plain\n",
        "block": "lit: |\n  line 1\n   line 2\n\nfold: >-\n  folded\n  text\nkeep: |+\n  k\n\n",
        "tags": "a: !!str 1\nb: !!int \"2\"\nc: !!float 3\nd: !!bool yes\ne: !custom x\n"
                "f: !!binary aGVsbG8=\ng: !!null ''\n",
        "keys": "1: int\n2.5: float\ntrue: bool\n? [complex]\n: v\n\"quoted\": q\n",
        "flow": "{a: [1, {b: c}], 'd': \"e\\u00e9\\n\", f: [ ]}\n",
        "dupkey": "a: 1\nb: 2\na: 3\n",
        "bomb": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
                "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
        "recursive": "a: &a\n  b: *a\n",
        "bad-indent": "a:\n  b: 1\n c: 2\n",
        "strings": "- \"a\\0b\"\n- \"\\x7f\\u2028\\u0085\"\n- ' lead'\n- 'trail '\n- '#c'\n"
                   "- \"<<\"\n- '- x'\n- \"multi\\nline\\n\"\n- \"  indented\\nfirst\"\n",
        "bom": b"\xef\xbb\xbfa: 1\n",
        "utf16": "a: 1\n".encode("utf-16"),
    }
    for k, v in edge.items():
        out("fuzz_yaml", "edge-" + k + ".yaml", v)


# ---- fuzz_csr: real CSRs from openssl, as PEM and as 'D' + DER ---------------------------------
def openssl(*args, **kw):
    return subprocess.run(["openssl"] + list(args), check=True, capture_output=True, **kw).stdout


def seeds_csr():
    clear("fuzz_csr")
    kinds = {
        "ec-p256-sha256": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha256"),
        "ec-p384-sha384": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], "-sha384"),
        "ec-p256-sha512": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha512"),
        "rsa2048-sha256": (["-newkey", "rsa:2048"], "-sha256"),
        "rsa3072-sha384": (["-newkey", "rsa:3072"], "-sha384"),
        # refused: weak, unsupported curve or algorithm
        "rsa1024-sha256": (["-newkey", "rsa:1024"], "-sha256"),
        "ec-p521-sha256": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"], "-sha256"),
        "ec-p256-sha1": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha1"),
        "ed25519": (["-newkey", "ed25519"], None),
    }
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "key.pem")
        for name, (newkey, md) in kinds.items():
            args = ["req", "-new", "-nodes", "-keyout", key, "-subj", "/CN=fuzz/O=weft"] + newkey
            if md:
                args.append(md)
            if name == "ec-p256-sha256":
                args += ["-addext", "subjectAltName=URI:spiffe://cluster.local/ns/a/sa/b"]
            pem = openssl(*args)
            der = openssl("req", "-outform", "DER", input=pem)
            out("fuzz_csr", name + ".pem", pem)
            out("fuzz_csr", name + ".der", b"D" + der)
        out("fuzz_csr", "new-label.pem",
            pem.replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"))
        out("fuzz_csr", "cert.pem", openssl("req", "-x509", "-new", "-nodes", "-keyout", key,
                                            "-subj", "/CN=not-a-csr", "-newkey", "ec",
                                            "-pkeyopt", "ec_paramgen_curve:P-256"))


# ---- fuzz_push_msg: one frame of each type -----------------------------------------------------
def seeds_push_msg():
    clear("fuzz_push_msg")
    h = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    h2 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
    frames = {
        "hello": {"type": "hello", "pod": {"namespace": "shop", "name": "web-0", "uid": "u-1"},
                  "agent": "0.1.0"},
        "hello-lasthash": {"type": "hello", "pod": {"namespace": "shop", "name": "web-0",
                                                    "uid": "u-1"}, "lastHash": h},
        "ack": {"type": "ack", "version": 7, "hash": h},
        "nack": {"type": "nack", "version": 7, "hash": h, "reason": "haproxy -c failed: line 3"},
        "config": {"type": "config", "version": 1, "hash": h,
                   "config": {"listeners": [{"port": 15001, "weight": 0.25, "tls": True}],
                              "b": None, "a": {"z": "\u00e9", "y": [1, -2, 3.5e-3]}}},
        "error": {"type": "error", "code": "IdentityMismatch", "reason": "spiffe id differs"},
        "config-v2": {"type": "config", "version": 2, "hash": h,
                      "skeleton": {"mode": "deny", "proxy": {"pod": "web-0", "ip": None}},
                      "refs": {"outbound": [h, h2], "inbound": []},
                      "blocks": {h2: {"service": "api", "port": 80, "w": 0.5}}},
        "need": {"type": "need", "version": 2, "blocks": [h, h2]},
        "blocks": {"type": "blocks", "version": 2, "blocks": {h: {"a": [1, {"b": "\u00e9"}]}},
                   "missing": [h2]},
        "unknown": {"type": "bye", "version": 1},
    }
    for k, v in frames.items():
        out("fuzz_push_msg", k + ".json", compact(v))
    out("fuzz_push_msg", "dup.json", '{"type":"ack","version":1,"version":2,"hash":"%s"}' % h)


# ---- fuzz_kubeconfig ------------------------------------------------------------------------
def seeds_kubeconfig():
    clear("fuzz_kubeconfig")
    b64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    b64 = b64.decode()
    out("fuzz_kubeconfig", "token.yaml", f"""apiVersion: v1
kind: Config
clusters:
- name: kubelite
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: {b64}
contexts:
- name: kubelite
  context:
    cluster: kubelite
    user: admin
    namespace: shop
current-context: kubelite
users:
- name: admin
  user:
    token: abc.def
""")
    out("fuzz_kubeconfig", "certs.yaml", f"""apiVersion: v1
kind: Config
current-context: b
contexts:
- {{name: a, context: {{cluster: c1, user: u1}}}}
- {{name: b, context: {{cluster: c2, user: u2}}}}
clusters:
- {{name: c1, cluster: {{server: "http://localhost:8080"}}}}
- {{name: c2, cluster: {{server: "https://k8s.example:443", certificate-authority: ca.crt,
                       insecure-skip-tls-verify: false}}}}
users:
- {{name: u1, user: {{tokenFile: /var/run/token}}}}
- {{name: u2, user: {{client-certificate-data: {b64}, client-key: /etc/key.pem}}}}
""")
    out("fuzz_kubeconfig", "exec.yaml", """apiVersion: v1
kind: Config
current-context: x
contexts: [{name: x, context: {cluster: x, user: x}}]
clusters: [{name: x, cluster: {server: "https://x"}}]
users: [{name: x, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}}]
""")
    out("fuzz_kubeconfig", "json.json", compact({
        "current-context": "j", "contexts": [{"name": "j", "context": {"cluster": "j"}}],
        "clusters": [{"name": "j", "cluster": {"server": "https://j:1", "insecure-skip-tls-verify":
                                               True}}]}))
    out("fuzz_kubeconfig", "bad-b64.yaml", """current-context: a
contexts: [{name: a, context: {cluster: a, user: a}}]
clusters: [{name: a, cluster: {server: "https://a", certificate-authority-data: "!!notb64"}}]
users: [{name: a, user: {client-certificate-data: "QQ=="}}]
""")


# ---- fuzz_http --------------------------------------------------------------------------------
def seeds_http():
    clear("fuzz_http")
    reqs = {
        "get": "GET /api/v1/namespaces?watch=1&labelSelector=a%3Db HTTP/1.1\r\nHost: x\r\n"
               "Accept: application/json\r\n\r\n",
        "post": "POST /inject?timeout=10s HTTP/1.1\r\nHost: weftd\r\nContent-Type: "
                "application/json\r\nContent-Length: 13\r\n\r\n{\"kind\":\"x\"}\n",
        "chunked": "POST /csr HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                   "6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
        "pipelined": "GET /a HTTP/1.1\r\n\r\nGET /b%20c?x=%41+b HTTP/1.1\r\nConnection: close\r\n"
                     "\r\nGET /never HTTP/1.1\r\n\r\n",
        "too-large": "PUT /x HTTP/1.1\r\nContent-Length: 999999\r\n\r\nabc",
        "bad": "GARBAGE\r\n\r\n",
        "bad-cl": "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
        "noanswer": "NOANSWER / HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n",
        "partial": "GET /partial HTTP/1.1\r\nHost: x\r\n",
    }
    for k, v in reqs.items():
        out("fuzz_http", k + ".txt", v)


# ---- fuzz_portforward -------------------------------------------------------------------------
# The SPDY/3 header dictionary (draft 3, 2.6.10.1), as kubectl's spdystream primes its zlib
# streams: each word after its length (4 bytes, big-endian), then the tail. Its Adler-32 is the
# dictionary id every kubectl header block names.
SPDY_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match if-modified-since "
    "if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status "
    "200_OK version HTTP/1.1 url public set-cookie keep-alive origin").split()
SPDY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, "
    "Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,"
    "sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def spdy_dictionary():
    import struct
    import zlib
    d = b"".join(struct.pack(">I", len(w)) + w.replace("_", " ").encode() for w in SPDY_WORDS)
    d += SPDY_TAIL.encode()
    assert zlib.adler32(d) == 0xE3C6A7C2, hex(zlib.adler32(d))
    return d


def seeds_portforward():
    """A kubectl-shaped session (an error and a data stream per forwarded connection, the error
    stream's FIN, data, a PING, a refused port, RST_STREAM, WINDOW_UPDATE, GOAWAY), bare and in
    WebSocket messages (masked, a ping, a close after the data), with and without the
    dictionary; and a frame over the size limit. The first byte picks the tunnel (bit 0) and the
    split of the rest into two reads."""
    import struct
    import zlib
    clear("fuzz_portforward")

    def session(zdict):
        z = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, zdict) \
            if zdict else zlib.compressobj(9)

        def syn(sid, port, req, typ):
            h = [(b"port", port), (b"requestid", req), (b"streamtype", typ)]
            nv = struct.pack(">I", len(h))
            for k, v in h:
                nv += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
            blk = z.compress(nv) + z.flush(zlib.Z_SYNC_FLUSH)
            body = struct.pack(">IIBB", sid, 0, 0, 0) + blk
            return struct.pack(">HHI", 0x8003, 1, len(body)) + body

        def data(sid, p, fin=False):
            return struct.pack(">II", sid, (1 if fin else 0) << 24 | len(p)) + p

        return [syn(1, b"8080", b"0", b"error"), data(1, b"", True),
                syn(3, b"8080", b"0", b"data"), data(3, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                struct.pack(">HHII", 0x8003, 6, 4, 1),
                syn(5, b"9", b"1", b"error"), syn(7, b"9", b"1", b"data"), data(3, b"", True),
                struct.pack(">HHIII", 0x8003, 3, 8, 7, 5),
                struct.pack(">HHIII", 0x8003, 9, 8, 3, 65536),
                struct.pack(">HHIII", 0x8003, 7, 8, 7, 0)]

    def ws(frames):
        mask = b"\x11\x22\x33\x44"
        o = b""
        for f in frames:
            n = len(f)
            h = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0xFE]) + struct.pack(">H", n)
            o += h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(f))
        o += bytes([0x89, 0x82]) + mask + bytes([ord("h") ^ 0x11, ord("i") ^ 0x22])
        o += bytes([0x88, 0x82]) + mask + bytes([0x03 ^ 0x11, 0xE8 ^ 0x22])
        return o

    d = spdy_dictionary()
    out("fuzz_portforward", "spdy-kubectl.bin", bytes([0x80]) + b"".join(session(d)))
    out("fuzz_portforward", "spdy-nodict.bin", bytes([0x40]) + b"".join(session(None)))
    out("fuzz_portforward", "ws-kubectl.bin", bytes([0x81]) + ws(session(d)))
    out("fuzz_portforward", "spdy-toolarge.bin",
        bytes([0x00]) + struct.pack(">II", 1, 0x200000) + b"x" * 32)


if __name__ == "__main__":
    os.chdir(ROOT)
    for fn in (seeds_json, seeds_review, seeds_yaml, seeds_csr, seeds_push_msg, seeds_kubeconfig,
               seeds_http, seeds_portforward):
        fn()
    for d in sorted(os.listdir(CORPUS)):
        print(d, len(os.listdir(os.path.join(CORPUS, d))), file=sys.stderr)
