#!/usr/bin/env python3
"""stream_bench.py - weftd's config stream at scale (issue 17), against a baseline in the same run.

    bench/stream_bench.py [--agents N] [--rounds R] [--stalled-every K] [--skip-restart]
                          [--protocol 1|2] [--no-v1-compare]

Starts kubelite (HTTPS) and weftd, writes a mesh of N meshed pods, issues every pod a workload
certificate through weftd's POST /v1/certificates, and drives build/bench/stream_load (N agents
in one process, see bench/stream_load.c). Mesh: namespaces ns-0..ns-9, each with 10 Services
app-0..app-9 (N/100 pods each, selector-less, their EndpointSlices written here), an AccessPolicy
that lets only the namespace's own workloads call its Services, and a TrafficSplit app-0 ->
app-1/app-2; namespace "shared" has the Service "common" (a TrafficSplit apex over common-a and
common-b, one pod each) that every pod may call. weftd runs with --outbound-scope admitted (the
scaling option, docs/proxy-config.md), so each document lists only those 11 Services: a weight
change of ns-0's split touches the 10% of proxies in ns-0, one of the shared split touches all.

Measured, each with the same measurement against stream_load --serve (a trivial TLS WebSocket
server sending the same document bytes to the same agents) in the same run:
  - time until all agents are synced after connecting at once;
  - change applied (the PATCH sent to the API server) -> last ACK, p50/p99, and bytes per
    change, for the 10% change and the all-proxies change (R rounds each);
  - weftd's CPU time per pushed config;
  - a client reconnect storm (every agent drops its stream and reconnects at once) and a weftd
    restart with all agents connected: time until every agent is back in sync, configs re-sent;
  - weftd's RSS per connected proxy: (RSS with N streams - RSS with none) / N;
  - with --protocol 2 (the default: agents offer protocol v2), the same two changes again with
    the agents offering v1 only, against the same weftd: bytes and latency of v1 and v2.
BUILD selects the build directory, WEFTD the weftd binary. Method and figures: BENCHMARKS.md.
"""
import argparse
import base64
import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
WEFTD = os.environ.get("WEFTD", os.path.join(BUILD, "bin", "weftd"))
KUBELITE = os.path.join(BUILD, "bin", "kubelite")
LOAD = os.path.join(BUILD, "bench", "stream_load")
KUBECTL = os.environ.get("KUBECTL", "/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
NGROUPS, NSVC = 10, 10
STATUS_WRITES = 'weft_status_writes_total{result="written"}'
PROCS = []


def die(msg):
    print("stream_bench: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


class Api:
    """Keep-alive HTTPS client for kubelite (one per thread)."""

    def __init__(self, addr, cafile, token):
        host, port = addr.rsplit(":", 1)
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False  # verified against the CA; kubelite's certificate names 127.0.0.1
        self.conn = http.client.HTTPSConnection(host, int(port), context=ctx)
        self.auth = "Bearer " + token

    def call(self, method, path, body=None, ctype="application/json", ok=(200, 201)):
        data = json.dumps(body) if body is not None and not isinstance(body, (bytes, str)) else body
        for attempt in (0, 1):  # kubelite closes an idle keep-alive connection: open another
            try:
                self.conn.request(method, path, data, {"Authorization": self.auth,
                                                       "Content-Type": ctype})
                r = self.conn.getresponse()
                out = r.read()
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                if attempt:
                    raise
        if r.status not in ok:
            die("%s %s: %d %s" % (method, path, r.status, out[:300]))
        return json.loads(out) if out else None


def parallel(n, fn, items):
    """fn(thread_index, item) over items in n threads; returns results in order."""
    res = [None] * len(items)

    def run(k):
        for i in range(k, len(items), n):
            res[i] = fn(k, items[i])

    ts = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return res


class Proc:
    """A line-oriented child (stream_load): commands on stdin, one answer line each."""

    def __init__(self, argv, log):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(log, "w"), text=True, bufsize=1)
        PROCS.append(self.p)
        self.expect("ready", 120)

    def line(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            die("no answer from %s within %s s" % (self.p.args[0], timeout))
        s = self.p.stdout.readline()
        if not s:
            die("%s exited" % self.p.args[0])
        return s.strip()

    def expect(self, prefix, timeout=30):
        s = self.line(timeout)
        if not s.startswith(prefix):
            die("unexpected answer: " + s)
        return s

    def cmd(self, c, timeout=30, prefix="ok"):
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        return self.expect(prefix, timeout)


def kv(line):
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", line)}


class Bench:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix="stream-bench.")
        self.wd = None
        self.rows = []

    # --- cluster ------------------------------------------------------------------------------
    def start_kubelite(self):
        kc = os.path.join(self.tmp, "kubeconfig")
        p = subprocess.Popen([KUBELITE, "--listen", "127.0.0.1:0", "--kubeconfig-out", kc,
                              "--openapi-dir", os.path.join(ROOT, "tests/kubelite/openapi"),
                              "--data-dir", os.path.join(self.tmp, "data"), "--log-level", "warn"],
                             stdout=open(os.path.join(self.tmp, "kubelite.log"), "w"),
                             stderr=subprocess.STDOUT)
        PROCS.append(p)
        self.kl = p
        for _ in range(200):
            if os.path.exists(kc) and os.path.getsize(kc) > 0:
                break
            time.sleep(0.05)
        else:
            die("kubelite did not start")
        text = open(kc).read()
        self.kc = kc
        self.kl_addr = re.search(r"server: https://(\S+)", text).group(1)
        self.kube_ca = os.path.join(self.tmp, "kube-ca.pem")
        with open(self.kube_ca, "wb") as f:
            f.write(base64.b64decode(re.search(r"certificate-authority-data: (\S+)", text).group(1)))
        self.admin = re.search(r"token: (\S+)", text).group(1)
        os.environ["KUBECONFIG"] = kc

    def api(self):
        return Api(self.kl_addr, self.kube_ca, self.admin)

    def mesh(self):
        n = self.a.agents
        per_ns = n // NGROUPS
        api = self.api()
        subprocess.run([KUBECTL, "apply", "-f", os.path.join(ROOT, "crds")], check=True,
                       stdout=subprocess.DEVNULL)
        for ns in ["weft-system", "shared"] + ["ns-%d" % g for g in range(NGROUPS)]:
            api.call("POST", "/api/v1/namespaces",
                     {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        pods = []  # (ns, name, sa, service, ip)
        for g in range(NGROUPS):
            for i in range(per_ns):
                s = i % NSVC
                pods.append(("ns-%d" % g, "app-%d-%d" % (s, i // NSVC), "app-%d" % s, "app-%d" % s,
                             "10.%d.%d.%d" % (64 + g, (i // 250) % 256, i % 250 + 1)))
        pods.append(("shared", "common-a-0", "common", "common-a", "10.90.0.1"))
        pods.append(("shared", "common-b-0", "common", "common-b", "10.90.0.2"))
        svcs = {}
        for p in pods:
            svcs.setdefault((p[0], p[3]), []).append(p)
        sas = sorted({(p[0], p[2]) for p in pods})
        for ns, sa in sas:
            api.call("POST", "/api/v1/namespaces/%s/serviceaccounts" % ns,
                     {"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": sa, "namespace": ns}})
        k = 0
        for (ns, svc), members in sorted(svcs.items()):
            k += 1
            self.service(api, ns, svc, "10.200.%d.%d" % (k // 250, k % 250 + 1), members)
        self.service(api, "shared", "common", "10.200.250.1", [])
        for g in range(NGROUPS):
            ns = "ns-%d" % g
            api.call("POST", "/apis/mesh.weft.dev/v1alpha1/namespaces/%s/accesspolicies" % ns,
                     {"apiVersion": "mesh.weft.dev/v1alpha1", "kind": "AccessPolicy",
                      "metadata": {"name": "own-namespace", "namespace": ns},
                      "spec": {"targetRef": {"kind": "Namespace"}, "action": "Allow",
                               "from": [{"namespace": ns}]}})
            self.split(api, ns, "split", "app-0", "app-1", "app-2", 90)
        self.split(api, "shared", "common", "common", "common-a", "common-b", 90)

        def mkpod(t, p):
            a = apis[t]
            ns, name, sa, svc, ip = p
            o = a.call("POST", "/api/v1/namespaces/%s/pods" % ns, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": {"app": svc}},
                "spec": {"serviceAccountName": sa, "containers": [
                    {"name": "app", "image": "registry.example/app:1.0",
                     "ports": [{"containerPort": 8080, "name": "http"}]},
                    {"name": "weft-proxy", "image": "weft/agent:1"}]}})
            a.call("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (ns, name),
                   {"status": {"phase": "Running", "podIP": ip,
                               "conditions": [{"type": "Ready", "status": "True"}]}},
                   ctype="application/merge-patch+json")
            return o["metadata"]["uid"]

        apis = [self.api() for _ in range(4)]
        uids = parallel(4, mkpod, pods)
        self.pods = [(p[0], p[1], p[2], u) for p, u in zip(pods, uids)]

    def service(self, api, ns, name, cip, members):
        api.call("POST", "/api/v1/namespaces/%s/services" % ns, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": cip, "ports": [{"name": "http", "port": 8080,
                                                  "targetPort": 8080}]}})
        if not members:
            return
        api.call("POST", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % ns, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [m[4]], "conditions": {"ready": True},
                           "targetRef": {"kind": "Pod", "name": m[1], "namespace": ns}}
                          for m in members]})

    def split(self, api, ns, name, apex, b1, b2, w):
        api.call("POST", "/apis/mesh.weft.dev/v1alpha1/namespaces/%s/trafficsplits" % ns, {
            "apiVersion": "mesh.weft.dev/v1alpha1", "kind": "TrafficSplit",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"service": apex, "backends": [{"service": b1, "weight": w},
                                                   {"service": b2, "weight": 100 - w}]}})

    # --- weftd --------------------------------------------------------------------------------
    def start_weftd(self):
        if not hasattr(self, "ports"):
            self.ports = {k: free_port() for k in ("admin", "certs", "stream", "webhook")}
        p = self.ports
        log = open(os.path.join(self.tmp, "weftd.log"), "a")
        self.wd = subprocess.Popen(
            [WEFTD, "--kubeconfig", self.kc, "--namespace", "weft-system", "--identity", "bench",
             "--admin-listen", "127.0.0.1:%d" % p["admin"],
             "--certs-listen", "127.0.0.1:%d" % p["certs"],
             "--stream-listen", "127.0.0.1:%d" % p["stream"],
             "--webhook-listen", "127.0.0.1:%d" % p["webhook"], "--log-level", "warn",
             # the scaling option: each document lists what the pod may call (docstring)
             "--outbound-scope", "admitted",
             # With this machine's 20,000 descriptors weftd's default caps share 3/4 of them
             # over its four listeners, about 6,800 for the stream: every agent must fit.
             "--max-connections", str(len(self.pods) + 200)],
            stdout=log, stderr=subprocess.STDOUT)
        PROCS.append(self.wd)
        self.wd_start = time.monotonic()

    def metrics(self):
        c = http.client.HTTPConnection("127.0.0.1", self.ports["admin"], timeout=10)
        c.request("GET", "/metrics")
        out = c.getresponse().read().decode()
        m = {}
        for line in out.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    m[k] = float(v)
                except ValueError:
                    pass
        return m

    def stream_open(self):
        """Whether weftd's stream listener accepts connections."""
        try:
            socket.create_connection(("127.0.0.1", self.ports["stream"]), 0.5).close()
            return True
        except OSError:
            return False

    def wait_stream(self, t=180):
        end = time.monotonic() + t
        while time.monotonic() < end:
            if self.wd.poll() is not None:
                die("weftd exited (see %s/weftd.log)" % self.tmp)
            if self.stream_open():
                return
            time.sleep(0.05)
        die("weftd's stream listener did not open within %d s" % t)

    def certificates(self):
        """One P-256 key and CSR; a pod-bound token and a certificate from weftd per pod."""
        key, csr = os.path.join(self.tmp, "agent.key"), os.path.join(self.tmp, "agent.csr")
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", "/CN=agent",
                        "-out", csr], check=True, stderr=subprocess.DEVNULL)
        csr_pem = open(csr, "rb").read()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the chain is checked by the agents' handshakes
        kapis = [self.api() for _ in range(4)]
        wconns = [http.client.HTTPSConnection("127.0.0.1", self.ports["certs"], context=ctx)
                  for _ in range(4)]

        def issue(t, p):
            ns, name, sa, uid = p
            tr = kapis[t].call("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (ns, sa), {
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": ["weft"], "expirationSeconds": 7200,
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name,
                                            "uid": uid}}})
            c = wconns[t]
            for attempt in range(50):
                c.request("POST", "/v1/certificates", csr_pem,
                          {"Authorization": "Bearer " + tr["status"]["token"],
                           "Content-Type": "application/pkcs10"})
                r = c.getresponse()
                body = r.read()
                if r.status == 200:
                    break
                if r.status not in (429, 503):
                    die("certificate for %s/%s: %d %s" % (ns, name, r.status, body[:300]))
                time.sleep(0.1)
            else:
                die("certificate for %s/%s: still %d" % (ns, name, r.status))
            j = json.loads(body)
            return j["certificateChain"], j["trustBundle"]

        t0 = time.monotonic()
        res = parallel(4, issue, self.pods)
        self.issue_s = time.monotonic() - t0
        self.key = key
        self.bundle = os.path.join(self.tmp, "bundle.pem")
        with open(self.bundle, "w") as f:
            f.write(res[0][1])
        self.agents_file = os.path.join(self.tmp, "agents")
        with open(self.agents_file, "w") as f:
            for (ns, name, _, uid), (chain, _) in zip(self.pods, res):
                f.write("%s %s %s %s\n" % (ns, name, uid,
                                            base64.b64encode(chain.encode()).decode()))

    def baseline_identity(self):
        """A serving pair for the baseline server under its own root, and a trust file with
        both roots for the agents."""
        d = self.tmp
        run = lambda *a: subprocess.run(list(a), check=True, stderr=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", d + "/bl-ca.key", "-out", d + "/bl-ca.pem", "-subj", "/CN=bl-root",
            "-days", "2")
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", d + "/bl.key", "-out", d + "/bl.csr", "-subj", "/CN=weftd")
        with open(d + "/bl.ext", "w") as f:
            f.write("subjectAltName=DNS:weftd.weft-system.svc\n")
        run("openssl", "x509", "-req", "-in", d + "/bl.csr", "-CA", d + "/bl-ca.pem", "-CAkey",
            d + "/bl-ca.key", "-CAcreateserial", "-out", d + "/bl.pem", "-days", "2", "-extfile",
            d + "/bl.ext")
        self.trust_all = d + "/trust-all.pem"
        with open(self.trust_all, "w") as f:
            f.write(open(self.bundle).read() + open(d + "/bl-ca.pem").read())

    # --- measurements -------------------------------------------------------------------------
    def load(self, port, tag, proto=None):
        return Proc([LOAD, "--agents", self.agents_file, "--key", self.key, "--trust",
                     self.trust_all, "--port", str(port), "--stalled-every",
                     str(self.a.stalled_every), "--protocol", str(proto or self.a.protocol)],
                    os.path.join(self.tmp, "load-%s.log" % tag))

    def change(self, ld, scope, write, pid, timeout):
        """One change: write() makes it; returns the wait's answer and the server's CPU."""
        ld.cmd("mark")
        c0, a0 = cpu_s(pid), cpu_s(ld.p.pid)
        on_weftd = pid == self.wd.pid
        st0 = self.metrics().get(STATUS_WRITES, 0) if on_weftd else 0
        t0 = time.monotonic()
        write()
        r = kv(ld.cmd("wait %s %d %.9f" % (scope, timeout, t0), timeout + 30, "done"))
        r["cpu_s"] = cpu_s(pid) - c0
        r["agents_cpu_s"] = cpu_s(ld.p.pid) - a0
        if on_weftd:
            if scope == "*" and not self.a.stalled_every:
                # every agent ACKs: the shared split's Programmed turns True for this generation
                r["programmed_ms"] = "%.0f" % ((self.programmed_at() - t0) * 1e3)
            # the leader evaluates Programmed at most once a second after ACKs: wait for the
            # last one, then count every status write this change made (all resources)
            time.sleep(1.5)
            r["status_writes"] = int(self.metrics().get(STATUS_WRITES, 0) - st0)
        print("  %s: %s" % (scope, " ".join("%s=%s" % i for i in sorted(r.items()))),
              file=sys.stderr, flush=True)
        return r

    def programmed_at(self, timeout=20):
        """When (monotonic) the shared split's Programmed condition says True for its generation."""
        api, end = self.api(), time.monotonic() + timeout
        while time.monotonic() < end:
            o = api.call("GET", "/apis/mesh.weft.dev/v1alpha1/namespaces/shared/trafficsplits/common")
            c = [c for c in o.get("status", {}).get("conditions", []) if c["type"] == "Programmed"]
            if c and c[0]["status"] == "True" and \
                    c[0].get("observedGeneration") == o["metadata"]["generation"]:
                return time.monotonic()
            time.sleep(0.02)
        return float("nan")

    def run(self):
        a = self.a
        print("== config stream at scale (%s, %s, %d CPUs, load %s)" % (
            subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True).stdout.strip(),
            time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), os.cpu_count(),
            open("/proc/loadavg").read().split()[0]), flush=True)
        t = time.monotonic()
        self.start_kubelite()
        self.mesh()
        print("mesh: %d meshed pods (%d namespaces x %d Services + shared), written in %.1f s" % (
            len(self.pods), NGROUPS, NSVC, time.monotonic() - t), flush=True)
        self.start_weftd()
        self.wait_stream()
        print("weftd: stream listening %.2f s after start" % (time.monotonic() - self.wd_start),
              flush=True)
        self.certificates()
        print("certificates: %d issued by weftd (pod-bound tokens, one shared key) in %.1f s" % (
            len(self.pods), self.issue_s), flush=True)
        self.baseline_identity()
        n = len(self.pods)
        stalled = n // a.stalled_every if a.stalled_every else 0
        res = {}

        # --- weftd
        time.sleep(1)
        rss0 = rss_kb(self.wd.pid)
        ld = self.load(self.ports["stream"], "weftd")
        t0 = time.monotonic()
        ld.cmd("connect")
        res["w_connect"] = kv(ld.cmd("synced 300", 330, "synced"))
        res["w_connect"]["secs"] = "%.3f" % (time.monotonic() - t0)
        time.sleep(1)
        rss1 = rss_kb(self.wd.pid)
        res["w_rss"] = (rss0, rss1)
        ld.cmd("dump ns-0 " + self.tmp + "/doc-ns-0.json")
        ld.cmd("dump shared " + self.tmp + "/doc-shared.json")
        api = self.api()
        w = {}

        def patch(ns, name):
            def f():  # weights of this split alternate 90/10 and 89/11
                w[ns] = 89 if w.get(ns, 90) == 90 else 90
                api.call("PATCH", "/apis/mesh.weft.dev/v1alpha1/namespaces/%s/trafficsplits/%s" %
                         (ns, name), {"spec": {"backends": [
                             {"service": "app-1" if ns != "shared" else "common-a", "weight": w[ns]},
                             {"service": "app-2" if ns != "shared" else "common-b",
                              "weight": 100 - w[ns]}]}},
                         ctype="application/merge-patch+json")
            return f

        res["w_10"], res["w_all"] = [], []
        if a.profile:
            # perf over the whole machine during the 10% changes (report per process: --comm)
            perf = subprocess.Popen(["perf", "record", "-a", "-F", "499", "-o", a.profile],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            for r in range(a.rounds):
                time.sleep(0.3)
                res["w_10"].append(self.change(ld, "ns-0", patch("ns-0", "split"), self.wd.pid, 60))
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
            m = self.metrics()
            print("profile: %s; weftd convergence mean %.1f ms over %d changes" % (
                a.profile, 1e3 * m.get("weft_config_stream_convergence_seconds_sum", 0) /
                max(m.get("weft_config_stream_convergence_seconds_count", 1), 1),
                m.get("weft_config_stream_convergence_seconds_count", 0)))
            for r in res["w_10"]:
                print("  " + " ".join("%s=%s" % i for i in sorted(r.items())))
            return
        for r in range(a.rounds):
            time.sleep(0.3)
            res["w_10"].append(self.change(ld, "ns-0", patch("ns-0", "split"), self.wd.pid, 60))
        for r in range(a.rounds):
            time.sleep(0.3)
            res["w_all"].append(self.change(ld, "*", patch("shared", "common"), self.wd.pid, 120))
        m0 = self.metrics()
        res["w_conv"] = (m0.get("weft_config_stream_convergence_seconds_sum"),
                         m0.get("weft_config_stream_convergence_seconds_count"))
        time.sleep(0.3)
        ld.cmd("mark")
        t0 = time.monotonic()
        ld.cmd("reconnect")
        res["w_storm"] = self.wait_synced(ld, m0, t0, n, n - stalled, 120)
        if not a.skip_restart:
            time.sleep(0.5)
            ld.cmd("mark")
            t0 = time.monotonic()
            self.wd.send_signal(signal.SIGTERM)
            self.wd.wait(30)
            self.start_weftd()
            res["w_restart"] = self.wait_synced(ld, None, t0, n, n - stalled, 180)
            res["w_restart"]["listen_s"] = "?"
            res["w_restart"]["rss_kb"] = rss_kb(self.wd.pid)
        ld.p.stdin.write("quit\n")
        ld.p.stdin.flush()
        ld.p.wait(30)

        # --- the same weftd, agents offering protocol v1 only
        if a.protocol == 2 and not a.no_v1_compare:
            time.sleep(1)
            ld = self.load(self.ports["stream"], "weftd-v1", 1)
            t0 = time.monotonic()
            ld.cmd("connect")
            res["v1_connect"] = kv(ld.cmd("synced 300", 330, "synced"))
            res["v1_connect"]["secs"] = "%.3f" % (time.monotonic() - t0)
            res["v1_10"], res["v1_all"] = [], []
            for r in range(a.rounds):
                time.sleep(0.3)
                res["v1_10"].append(self.change(ld, "ns-0", patch("ns-0", "split"), self.wd.pid, 60))
            for r in range(a.rounds):
                time.sleep(0.3)
                res["v1_all"].append(self.change(ld, "*", patch("shared", "common"), self.wd.pid, 120))
            ld.p.stdin.write("quit\n")
            ld.p.stdin.flush()
            ld.p.wait(30)

        # --- baseline: the same agents against a trivial TLS WebSocket server
        bport = free_port()
        srv = Proc([LOAD, "--serve", "--cert", self.tmp + "/bl.pem", "--key", self.tmp + "/bl.key",
                    "--trust", self.trust_all, "--port", str(bport), "--doc",
                    self.tmp + "/doc-ns-0.json"], os.path.join(self.tmp, "baseline.log"))
        time.sleep(0.5)
        brss0 = rss_kb(srv.p.pid)
        ld = self.load(bport, "baseline")
        t0 = time.monotonic()
        ld.cmd("connect")
        res["b_connect"] = kv(ld.cmd("synced 300", 330, "synced"))
        res["b_connect"]["secs"] = "%.3f" % (time.monotonic() - t0)
        time.sleep(1)
        res["b_rss"] = (brss0, rss_kb(srv.p.pid))
        push = lambda scope: (lambda: srv.cmd("push " + scope))
        res["b_10"] = [self.change(ld, "ns-0", push("ns-0"), srv.p.pid, 60)
                       for _ in range(a.rounds)]
        res["b_all"] = [self.change(ld, "*", push("*"), srv.p.pid, 120) for _ in range(a.rounds)]
        ld.cmd("mark")
        t0 = time.monotonic()
        ld.cmd("reconnect")
        res["b_storm"] = kv(ld.cmd("synced 120", 150, "synced"))
        res["b_storm"]["secs"] = "%.3f" % (time.monotonic() - t0)
        res["b_storm"]["stats"] = kv(ld.cmd("stats", 10, "stats"))
        self.report(res, n, stalled)

    def wait_synced(self, ld, m0, t0, n, want, timeout):
        """After a storm: weftd accepted n hellos since (every agent is back) and counts want
        proxies synced (the slow readers, which stop reading at once after their hello, are
        pending when their document changed while they stalled)."""
        h0 = m0.get('weft_config_stream_hellos_total{result="accepted"}', 0) if m0 else 0
        rk = 'weft_config_stream_refused_total{cap="handshakes"}'
        pk = 'weft_config_stream_accept_paused_seconds_total'
        r0 = m0.get(rk, 0) if m0 else 0
        p0 = m0.get(pk, 0) if m0 else 0
        c0 = cpu_s(self.wd.pid) if m0 else 0.0  # after a restart: since its start
        end = t0 + timeout
        opened = None
        last = time.monotonic()
        while time.monotonic() < end:
            if opened is None and self.stream_open():
                opened = time.monotonic()
            try:
                m = self.metrics()
            except OSError:
                time.sleep(0.05)
                continue
            h = m.get('weft_config_stream_hellos_total{result="accepted"}', 0)
            s = m.get('weft_proxy_config_sync{state="synced"}', 0)
            if h - h0 >= n and s >= want:
                break
            if time.monotonic() - last > 5:
                last = time.monotonic()
                print("  waiting: hellos=%d synced=%d refused=%s" % (
                    h - h0, s, m.get('weft_config_stream_refused_total{cap="max_connections_per_address"}')),
                    file=sys.stderr, flush=True)
            time.sleep(0.02)
        secs = time.monotonic() - t0
        st = kv(ld.cmd("stats", 10, "stats"))
        o = kv(ld.cmd("open 1", 10, "open"))
        return {"secs": "%.3f" % secs, "synced": int(s), "hellos": int(h - h0),
                "resent": o.get("configs"), "opened_s": "%.3f" % ((opened or t0) - t0),
                "closes": st.get("closes"), "connects": st.get("connects"),
                "refused_handshakes": int(m.get(rk, 0) - r0), "stats": st,
                "paused_s": "%.1f" % (m.get(pk, 0) - p0),
                "cpu_s": "%.1f" % (cpu_s(self.wd.pid) - c0)}

    def storm_detail(self, who, r):
        """Where a storm's time went, from the agents' side (stream_load's counters since the
        mark) and weftd's (connections closed at accept by the handshake cap)."""
        st = r.get("stats", r)
        print("%s: attempts %s (at most %s per agent), failed: %s refused by the kernel, %s in "
              "the TLS handshake, %s later (%s at the agent's deadline); weftd closed %s at "
              "accept (handshake cap); backoff per agent mean %s ms, max %s ms; connect to open "
              "mean %s ms, max %s ms; weftd not accepting (handshake cap) %s s, weftd CPU %s s" % (
                  who, st.get("attempts"), st.get("attempts_max"), st.get("fail_refused"),
                  st.get("fail_tls"), st.get("fail_open"), st.get("fail_timeout"),
                  r.get("refused_handshakes", "-"),
                  st.get("backoff_mean_ms"), st.get("backoff_max_ms"), st.get("open_mean_ms"),
                  st.get("open_max_ms"), r.get("paused_s", "-"), r.get("cpu_s", "-")))

    def report(self, res, n, stalled):
        def agg(rs):
            p50 = sorted(float(r["p50_ms"]) for r in rs)[len(rs) // 2]
            p99 = sorted(float(r["p99_ms"]) for r in rs)[len(rs) // 2]
            worst = max(float(r["p99_ms"]) for r in rs)
            byts = sum(int(r["wire_bytes"]) for r in rs) / len(rs)
            pay = sum(int(r["payload_bytes"]) for r in rs) / len(rs)
            cfg = sum(int(r["configs"]) for r in rs) / len(rs)
            cpu = sum(r["cpu_s"] for r in rs) / len(rs)
            ok = all(r["n"] == r["want"] and r["hash_errors"] == "0" for r in rs)
            acpu = sum(r["agents_cpu_s"] for r in rs) / len(rs)
            return p50, p99, worst, byts, pay, cfg, cpu, ok, rs[0]["want"], max(
                int(r["others"]) for r in rs), acpu

        print("agents: %d (every %d-th a slow reader: %d), rounds per change: %d" % (
            n, self.a.stalled_every, stalled, self.a.rounds))
        wc, bc = res["w_connect"], res["b_connect"]
        print("%-44s %14s %14s %8s" % ("measure", "weftd", "baseline", "ratio"))
        print("%-44s %13ss %13ss %7.2fx" % ("connect all, until every agent ACKed", wc["secs"],
                                           bc["secs"], float(wc["secs"]) / float(bc["secs"])))
        for key, label in (("10", "10%% change (ns-0, %s proxies)"), ("all", "all-proxies change (%s)")):
            w, b = agg(res["w_" + key]), agg(res["b_" + key])
            lab = label % w[8]
            print("%-44s %12.1fms %12.1fms %7.2fx" % (lab + ": p50", w[0], b[0], w[0] / max(b[0], 1e-3)))
            print("%-44s %12.1fms %12.1fms %7.2fx" % ("  p99 (median of rounds)", w[1], b[1],
                                                      w[1] / max(b[1], 1e-3)))
            print("%-44s %12.1fms %12.1fms" % ("  p99 (worst round)", w[2], b[2]))
            print("%-44s %13.0fK %13.0fK %7.2fx" % ("  bytes per change (read by the agents)",
                                                   w[3] / 1e3, b[3] / 1e3, w[3] / max(b[3], 1)))
            print("%-44s %14.0f %14.0f" % ("  configs per change", w[5], b[5]))
            sw = [r["status_writes"] for r in res["w_" + key] if "status_writes" in r]
            if sw:
                print("%-44s %14s %14s" % ("  status writes per change (min-max)",
                                           "%d-%d" % (min(sw), max(sw)), "-"))
            pm = sorted(float(r["programmed_ms"]) for r in res["w_" + key] if "programmed_ms" in r)
            if pm:
                print("%-44s %12.0fms %14s" % ("  change -> Programmed=True (median)",
                                              pm[len(pm) // 2], "-"))
            wcpu, bcpu = w[6] / max(w[5], 1), b[6] / max(b[5], 1)
            print("%-44s %12.1fus %12.1fus %8s" % (
                "  server CPU per config pushed", wcpu * 1e6, bcpu * 1e6,
                # /proc counts 10 ms ticks: no ratio below a few ticks of baseline CPU
                "%7.2fx" % (wcpu / bcpu) if b[6] >= 0.05 else "n/a"))
            print("%-44s %14s %14s" % ("  all ACKed, hashes verified; others touched",
                                       "%s; %d" % ("yes" if w[7] else "NO", w[9]),
                                       "%s; %d" % ("yes" if b[7] else "NO", b[9])))
        if "v1_10" in res:
            print("same weftd, agents offering v1 only (weftd column: v2 agents, baseline: v1)")
            for key, label in (("10", "10%% change (ns-0, %s proxies)"), ("all", "all-proxies change (%s)")):
                w, v = agg(res["w_" + key]), agg(res["v1_" + key])
                lab = label % w[8]
                print("%-44s %12.1fms %12.1fms %7.2fx" % (lab + ": p50", w[0], v[0], w[0] / max(v[0], 1e-3)))
                print("%-44s %12.1fms %12.1fms %7.2fx" % ("  p99 (median of rounds)", w[1], v[1],
                                                          w[1] / max(v[1], 1e-3)))
                print("%-44s %12.1fms %12.1fms" % ("  p99 (worst round)", w[2], v[2]))
                print("%-44s %13.0fK %13.0fK %7.3fx" % ("  bytes per change (read by the agents)",
                                                       w[3] / 1e3, v[3] / 1e3, w[3] / max(v[3], 1)))
                print("%-44s %13.0fK %13.0fK %7.3fx" % ("  payload bytes per change",
                                                       w[4] / 1e3, v[4] / 1e3, w[4] / max(v[4], 1)))
                wcpu, vcpu = w[6] / max(w[5], 1), v[6] / max(v[5], 1)
                print("%-44s %12.1fus %12.1fus %7.2fx" % ("  weftd CPU per config pushed", wcpu * 1e6,
                                                         vcpu * 1e6, wcpu / max(vcpu, 1e-9)))
                print("%-44s %12.1fus %12.1fus" % ("  agents' CPU per config (stream_load)",
                                                  w[10] / max(w[5], 1) * 1e6,
                                                  v[10] / max(v[5], 1) * 1e6))
                print("%-44s %14s %14s" % ("  all ACKed, hashes verified; others touched",
                                           "%s; %d" % ("yes" if w[7] else "NO", w[9]),
                                           "%s; %d" % ("yes" if v[7] else "NO", v[9])))
        cs, cn = res["w_conv"]
        if cn:
            print("%-44s %12.1fms %14s" % ("weftd's convergence metric, mean (all changes)",
                                          cs / cn * 1e3, "-"))
        ws, bs = res["w_storm"], res["b_storm"]
        print("%-44s %13ss %13ss %7.2fx" % ("reconnect storm: all back in sync", ws["secs"],
                                           bs["secs"], float(ws["secs"]) / float(bs["secs"])))
        print("%-44s %14s %14s" % ("  configs re-sent", ws["resent"], bs["configs"]))
        self.storm_detail("  weftd", ws)
        self.storm_detail("  baseline", bs)
        if "w_restart" in res:
            r = res["w_restart"]
            print("%-44s %13ss %14s" % ("weftd restart: all back in sync", r["secs"], "-"))
            print("%-44s %13ss" % ("  listener open after", r["opened_s"]))
            print("%-44s %14s" % ("  configs re-sent / hellos accepted", "%s / %s" % (r["resent"], r["hellos"])))
            self.storm_detail("  weftd", r)
        w0, w1 = res["w_rss"]
        b0, b1 = res["b_rss"]
        wp, bp = (w1 - w0) / n, (b1 - b0) / n
        print("%-44s %12.1fKB %12.1fKB %7.2fx" % ("RSS per connected proxy", wp, bp, wp / max(bp, 1e-3)))
        print("%-44s %12.0fMB %12.0fMB" % ("  RSS without / with the agents", w0 / 1024, w1 / 1024))
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stalled-every", type=int, default=100)
    ap.add_argument("--skip-restart", action="store_true")
    ap.add_argument("--protocol", type=int, choices=(1, 2), default=2,
                    help="newest protocol the agents offer")
    ap.add_argument("--no-v1-compare", action="store_true",
                    help="with --protocol 2: skip the changes measured again with v1 agents")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--profile", metavar="FILE",
                    help="only connect and make the 10%% changes, under perf record -a into FILE")
    a = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # one descriptor per agent, both ends
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for b in (WEFTD, KUBELITE, LOAD):
        if not os.access(b, os.X_OK):
            die("%s is not built (run make first)" % b)
    b = Bench(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the children are stopped below
    try:
        b.run()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.terminate()
        for p in PROCS:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if a.keep:
            print("kept " + b.tmp)
        else:
            shutil.rmtree(b.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
