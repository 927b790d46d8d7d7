#!/usr/bin/env python3
"""flip_driver.py - the measuring half of bench/flip_bench.sh (BENCHMARKS.md, "Split flip: apply
to every client observing"). Run it inside the control plane's network namespace (kubelite on
127.0.0.1 there, weftd's admin on 127.0.0.1:18090) once the meshed pods are up:

  flip_driver.py --kubeconfig FILE --kubectl BIN --client BIN --svc IP --pods NETNS:POD,...
                 --agent-logs DIR [--flips 30] [--interval-ms 5] [--namespace flip]

It starts one bench/flip_client in each pod's network namespace (requests to Service web through
the pod's sidecar, one keep-alive connection, every INTERVAL ms), and a plain watch client of the
TrafficSplits (this script with "watch": an HTTPS watch on kubelite, nothing else on the path).
Then, FLIPS times, it `kubectl apply`s the TrafficSplit web at 0/100 or 100/0 (web-a answers
flip-a, web-b flip-b) and waits until every client got an answer from the new side and the
watcher got the event. Every timestamp is CLOCK_MONOTONIC (one clock in every network namespace):
  end to end  the last client's first answer from the new side, minus kubectl apply's return
  floor       the watch client's event, minus the same return (kubelite's delivery)
  above       end to end minus floor, per flip
p50 and p99 are nearest-rank over the flips (with 30 flips, p99 is the largest). Where the time
goes: the agents' "configuration applied (ACK)" log lines (wall clock, ms) per flip against
apply's return, and weftd's histograms (compile pass; document to ACK) before and after.

A client has observed a flip at the first answer from the new side after its last answer from
the old side: the sidecar raises one weight before it lowers the other (so that no request finds
every weight at 0), and a request in between may still go to the old side; such answers are
counted. Fails (exit 1, with the reason) when a request fails, a client answers from an
unexpected backend, or a flip is not observed within 10 s by every client (on the new side after
a quiet gap of 0.6-1 s) and by the watch client.
"""
import argparse
import base64
import datetime
import http.client
import json
import math
import os
import random
import re
import selectors
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

FLIP_TIMEOUT_S = 10


def mono_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def kubeconfig(path):
    text = open(path).read()
    server = re.search(r"^\s*server:\s*(\S+)", text, re.M).group(1)
    ca = re.search(r"^\s*certificate-authority-data:\s*(\S+)", text, re.M).group(1)
    token = re.search(r"^\s*token:\s*(\S+)", text, re.M).group(1)
    return server, base64.b64decode(ca).decode(), token


def watch(kc_path, namespace):
    """Prints "EV <mono_ns> <type> <rv> <weights>" for each TrafficSplit event, stamped when
    its line arrives; follows on from the last resourceVersion when kubelite ends the watch."""
    server, ca, token = kubeconfig(kc_path)
    host, port = server.split("//", 1)[1].rsplit(":", 1)
    ctx = ssl.create_default_context(cadata=ca)
    rv = ""
    while True:
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=3600)
        path = "/apis/mesh.weft.dev/v1alpha1/namespaces/%s/trafficsplits?watch=true%s" % (
            namespace, "&resourceVersion=" + rv if rv else "")
        conn.request("GET", path, headers={"Authorization": "Bearer " + token})
        resp = conn.getresponse()
        if resp.status != 200:
            print("WATCHERR %d %s" % (resp.status, resp.read()[:200]), flush=True)
            sys.exit(1)
        while True:
            line = resp.readline()
            t = mono_ns()
            if not line:
                break
            if not line.strip():
                continue
            ev = json.loads(line)
            obj = ev.get("object", {})
            rv = obj.get("metadata", {}).get("resourceVersion", rv)
            w = "/".join(str(b.get("weight")) for b in obj.get("spec", {}).get("backends", []))
            print("EV %d %s %s %s" % (t, ev.get("type"), rv, w), flush=True)
        conn.close()


def pct(values, p):
    s = sorted(values)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def fmt(values):
    return "p50 %6.1f  p99 %6.1f  max %6.1f  min %6.1f" % (
        pct(values, 50), pct(values, 99), max(values), min(values))


def metrics(url):
    out = {}
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
    return out


def hist(before, after, name):
    """count, mean (ms) and the p99 bucket's upper bound (ms) of a histogram between two scrapes"""
    count = after.get(name + "_count", 0) - before.get(name + "_count", 0)
    total = after.get(name + "_sum", 0) - before.get(name + "_sum", 0)
    buckets = []
    for k, v in after.items():
        m = re.match(re.escape(name) + r'_bucket\{le="([^"]+)"\}$', k)
        if m:
            buckets.append((float(m.group(1)), v - before.get(k, 0)))
    buckets.sort()
    p99 = None
    for le, cum in buckets:
        if count and cum >= 0.99 * count:
            p99 = le
            break
    return count, (1000 * total / count if count else 0), (1000 * p99 if p99 is not None else None)


def cpu_ticks(netns_list):
    """user+system clock ticks of the processes in those network namespaces, by command name"""
    out = {}
    for ns in netns_list:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                stat = open("/proc/%s/stat" % pid).read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            f = stat[stat.rindex(")") + 2:].split()
            out[comm] = out.get(comm, 0) + int(f[11]) + int(f[12])
    return out


def cpu_ms_per_s(a, b, seconds):
    hz = os.sysconf("SC_CLK_TCK")
    return {k: 1000.0 * (b.get(k, 0) - a.get(k, 0)) / hz / seconds for k in set(a) | set(b)}


def log_ts_ns(line):
    m = re.match(r"ts=(\S+?)(?:\.(\d{3}))?Z ", line)
    if not m:
        return None
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    return int(t.timestamp()) * 10**9 + int(m.group(2) or 0) * 10**6


class Fail(Exception):
    pass


class Driver:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        self.procs = []
        self.clients = {}  # pod -> {"last": name, "end": line}
        self.flip = None  # the flip in progress: {"target", "t0", "seen": {pod: ns}}
        self.events = []  # watcher (mono_ns, weights)
        self.kenv = dict(os.environ, KUBECONFIG=a.kubeconfig)

    def spawn(self, tag, argv):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        os.set_blocking(p.stdout.fileno(), False)
        self.sel.register(p.stdout, selectors.EVENT_READ, [tag, b""])
        self.procs.append((tag, p))
        return p

    def pump(self, seconds):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            for key, _ in self.sel.select(max(0, left)):
                tag, buf = key.data
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    self.sel.unregister(key.fileobj)
                    if tag != "watch" and "end" not in self.clients.get(tag, {}):
                        raise Fail("%s's client exited without END: %s" % (tag, buf.decode()))
                    continue
                buf += data
                *lines, key.data[1] = buf.split(b"\n")
                for line in lines:
                    self.line(tag, line.decode(errors="replace"))
            if left <= 0:
                return

    def line(self, tag, line):
        f = line.split(" ", 3)
        if tag == "watch":
            if f[0] != "EV":
                raise Fail("watch client: " + line)
            self.events.append((int(f[1]), line.split(" ")[4] if len(line.split(" ")) > 4 else ""))
            return
        c = self.clients[tag]
        if f[0] == "ERR":
            raise Fail("%s: a request failed: %s" % (tag, line))
        if f[0] == "END":
            c["end"] = line
            return
        if f[0] != "OBS" or len(f) != 4:
            raise Fail("%s: unexpected output: %s" % (tag, line))
        got, name = int(f[1]), f[3]
        if name not in ("flip-a", "flip-b"):
            raise Fail("%s: answered by %r, neither web-a nor web-b" % (tag, name))
        c["last"] = name
        fl = self.flip
        if fl is None:
            return
        if got < fl["t0"]:
            # read after this flip began, but an answer from before it: a change of side after
            # the previous flip had been observed by every client and had been quiet for its gap
            raise Fail("%s: answered from %s %.1f ms before flip %d's apply, after every client "
                       "had been on the other side since flip %d" % (
                           tag, name, (fl["t0"] - got) / 1e6, fl["i"], fl["i"] - 1))
        if name == fl["target"]:
            fl["seen"].setdefault(tag, got)
        elif tag in fl["seen"]:
            # an answer from the old side after one from the new: the sidecar sets the raised
            # weight before the lowered one (never both at 0), and a request in between may go
            # either way. The client has observed the flip at the start of its last run of
            # answers from the new side.
            del fl["seen"][tag]
            fl["flaps"] += 1

    def apply(self, path):
        r = subprocess.run([self.a.kubectl, "apply", "-f", path], env=self.kenv,
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise Fail("kubectl apply: " + (r.stdout + r.stderr).strip())

    def run(self):
        a = self.a
        pods = [p.split(":") for p in a.pods.split(",")]
        docs = {}
        tmp = tempfile.mkdtemp(prefix="flip-", dir=os.path.dirname(a.kubeconfig))
        for target, w in (("flip-a", (100, 0)), ("flip-b", (0, 100))):
            docs[target] = os.path.join(tmp, target + ".json")
            with open(docs[target], "w") as f:
                json.dump({"apiVersion": "mesh.weft.dev/v1alpha1", "kind": "TrafficSplit",
                           "metadata": {"name": "web", "namespace": a.namespace},
                           "spec": {"service": "web", "backends": [
                               {"service": "web-a", "weight": w[0]},
                               {"service": "web-b", "weight": w[1]}]}}, f)
        self.spawn("watch", [sys.executable, os.path.abspath(__file__), "watch", a.kubeconfig,
                             a.namespace])
        for netns, pod in pods:
            self.clients[pod] = {"last": None}
            self.spawn(pod, ["ip", "netns", "exec", netns, a.client, "--addr", a.svc, "--port",
                             "80", "--interval-ms", str(a.interval_ms)])
        # every client answered (the split starts at 100/0), the watcher has the object
        end = time.monotonic() + 60
        while (any(c["last"] != "flip-a" for c in self.clients.values()) or not self.events):
            if time.monotonic() > end:
                raise Fail("warm-up: clients not on flip-a after 60 s: %s" % ", ".join(
                    "%s=%s" % (p, c["last"]) for p, c in self.clients.items()
                    if c["last"] != "flip-a"))
            self.pump(0.1)
        self.pump(1.0)
        # CPU with the clients running and nothing changing, then during the flips: the
        # difference is what the flips cost
        nets = [n for n, _ in pods] + [a.hub]
        c0, q0 = cpu_ticks(nets), time.monotonic()
        self.pump(5.0)
        c1, q1 = cpu_ticks(nets), time.monotonic()
        murl = "http://127.0.0.1:18090/metrics"
        m0 = metrics(murl)
        load0 = open("/proc/loadavg").read().split()[:3]
        flips = []
        for i in range(1, a.flips + 1):
            target = "flip-b" if i % 2 else "flip-a"
            n_ev = len(self.events)
            self.flip = {"i": i, "target": target, "t0": mono_ns(), "seen": {}, "flaps": 0}
            w0 = time.time_ns()
            self.apply(docs[target])
            t_ret, w_ret = mono_ns(), time.time_ns()
            want_w = "0/100" if target == "flip-b" else "100/0"
            deadline = time.monotonic() + FLIP_TIMEOUT_S
            watched = None
            gap = random.uniform(0.6, 1.0)
            while True:
                for t, w in self.events[n_ev:]:
                    if w == want_w and watched is None:
                        watched = t
                if watched is not None and len(self.flip["seen"]) == len(self.clients):
                    # a quiet gap (well past weftd's 100 ms stream debounce) with the clients
                    # running: every one must still be on the new side after it
                    if gap is None:
                        break
                    self.pump(gap)
                    gap = None
                    continue
                if time.monotonic() > deadline:
                    missing = sorted(set(self.clients) - set(self.flip["seen"]))
                    raise Fail("flip %d to %s: not observed within %d s by %s%s" % (
                        i, target, FLIP_TIMEOUT_S, ", ".join(missing) or "no client",
                        "" if watched is not None else " (nor by the watch client)"))
                self.pump(0.005)
            seen = self.flip["seen"]
            flips.append({"i": i, "target": target, "w0": w0, "w_ret": w_ret,
                          "apply_ms": (t_ret - self.flip["t0"]) / 1e6,
                          "e2e_ms": (max(seen.values()) - t_ret) / 1e6,
                          "first_ms": (min(seen.values()) - t_ret) / 1e6,
                          "floor_ms": (watched - t_ret) / 1e6,
                          "flaps": self.flip["flaps"],
                          "clients_ms": [(v - t_ret) / 1e6 for v in seen.values()]})
        self.flip = None
        c2, q2 = cpu_ticks(nets), time.monotonic()
        quiet = cpu_ms_per_s(c0, c1, q1 - q0)
        busy = cpu_ms_per_s(c1, c2, q2 - q1)
        self.cpu = {k: (busy[k] - quiet[k]) * (q2 - q1) / len(flips) for k in busy}
        self.cpu_quiet = quiet
        m1 = metrics(murl)
        load1 = open("/proc/loadavg").read().split()[:3]
        for tag, p in self.procs:
            p.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        while any("end" not in c for c in self.clients.values()) and time.monotonic() < end:
            self.pump(0.1)
        for tag, p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        requests = 0
        gaps = []
        for pod, c in self.clients.items():
            if "end" not in c:
                raise Fail("%s: no END from its client" % pod)
            kv = dict(x.split("=") for x in c["end"].split()[1:])
            if kv["errors"] != "0":
                raise Fail("%s: %s" % (pod, c["end"]))
            requests += int(kv["requests"])
            gaps.append(int(kv["max_gap_us"]) / 1000)
        self.report(flips, m0, m1, load0, load1, requests, gaps)

    def report(self, flips, m0, m1, load0, load1, requests, gaps):
        a = self.a
        e2e = [f["e2e_ms"] for f in flips]
        floor = [f["floor_ms"] for f in flips]
        above = [f["e2e_ms"] - f["floor_ms"] for f in flips]
        every = [x for f in flips for x in f["clients_ms"]]
        print("flips=%d pods=%d interval_ms=%d requests=%d (all answered 200 by web-a or web-b), "
              "longest gap between two answers of a client %.1f ms" % (
                  len(flips), len(self.clients), a.interval_ms, requests, max(gaps)))
        print("load average before %s, after %s" % (" ".join(load0), " ".join(load1)))
        print("milliseconds from kubectl apply's return (kubectl apply itself: %s):" %
              fmt([f["apply_ms"] for f in flips]))
        print("  end to end (last of %d clients)  %s" % (len(self.clients), fmt(e2e)))
        print("  the same from apply's start       %s" % fmt([f["e2e_ms"] + f["apply_ms"]
                                                              for f in flips]))
        print("  floor (plain watch client)        %s" % fmt(floor))
        print("  above the floor (per flip)        %s" % fmt(above))
        print("  first client                      %s" % fmt([f["first_ms"] for f in flips]))
        print("  every client's observation        %s  (%d)" % (fmt(every), len(every)))
        print("  answers from the old side after one from the new (the sidecar between its two "
              "weight commands): %d in %d flips" % (sum(f["flaps"] for f in flips),
                                                    sum(1 for f in flips if f["flaps"])))
        # the agents' ACKs per flip (their log: wall clock, ms), against apply's return
        acks = {f["i"]: [] for f in flips}
        bounds = [(f["i"], f["w0"]) for f in flips] + [(None, time.time_ns())]
        for pod in self.clients:
            for line in open(os.path.join(a.agent_logs, pod + ".log"), errors="replace"):
                if 'msg="configuration applied (ACK)"' not in line:
                    continue
                t = log_ts_ns(line)
                if t is None:
                    continue
                for (i, lo), (_, hi) in zip(bounds, bounds[1:]):
                    if lo <= t < hi:
                        acks[i].append(t)
        last_ack, first_ack, after_ack = [], [], []
        for f in flips:
            ts = acks[f["i"]]
            if len(ts) != len(self.clients):
                print("  flip %d: %d ACKs logged for %d agents" % (f["i"], len(ts),
                                                                   len(self.clients)))
                continue
            last_ack.append((max(ts) - f["w_ret"]) / 1e6)
            first_ack.append((min(ts) - f["w_ret"]) / 1e6)
            after_ack.append(f["e2e_ms"] - last_ack[-1])
        if last_ack:
            print("where the time goes (agent logs: ms resolution, wall clock):")
            print("  first agent's ACK                 %s" % fmt(first_ack))
            print("  last agent's ACK                  %s" % fmt(last_ack))
            print("  last client after the last ACK    %s" % fmt(after_ack))
        # the processes on the change's path (HAProxy, the clients and the backends carry the
        # traffic: their rate moves more than a flip costs)
        print("CPU per flip above the quiet rate, all processes of each (ms; the quiet rate with "
              "the clients running, ms/s): %s" % ", ".join(
                  "%s %.1f (%.0f)" % (k, self.cpu.get(k, 0), self.cpu_quiet.get(k, 0))
                  for k in ("weft-agent", "weftd", "kubelite")))
        n, mean, p99 = hist(m0, m1, "weft_compile_pass_duration_seconds")
        print("weftd: %d compile passes, mean %.1f ms, p99 bucket <= %s ms" % (
            n, mean, "%g" % p99 if p99 is not None else "?"))
        n, mean, p99 = hist(m0, m1, "weft_config_stream_convergence_seconds")
        print("weftd: %d documents from hand-over to the stream to the proxy's ACK, mean %.1f ms, "
              "p99 bucket <= %s ms" % (n, mean, "%g" % p99 if p99 is not None else "?"))
        ch = {k.split('"')[1]: m1[k] - m0.get(k, 0) for k in m1
              if k.startswith("weft_config_stream_changes_total{")}
        print("weftd: stream changes %s" % " ".join("%s=%d" % kv for kv in sorted(ch.items())))
        ok1 = pct(e2e, 99) < 200
        ok2 = pct(above, 99) < 50
        print("targets: p99 end to end %.1f ms < 200 ms: %s; p99 above the floor %.1f ms < 50 ms: "
              "%s" % (pct(e2e, 99), "met" if ok1 else "MISSED", pct(above, 99),
                      "met" if ok2 else "MISSED"))
        if a.per_flip:
            for f in flips:
                print("  flip %2d -> %s: apply %.1f, floor %.1f, first %.1f, last %.1f ms, "
                      "flaps %d" % (f["i"], f["target"], f["apply_ms"], f["floor_ms"],
                                    f["first_ms"], f["e2e_ms"], f["flaps"]))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "watch":
        watch(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--svc", required=True)
    ap.add_argument("--pods", required=True, help="NETNS:POD,...")
    ap.add_argument("--agent-logs", required=True, help="DIR with <pod>.log")
    ap.add_argument("--namespace", default="flip")
    ap.add_argument("--hub", required=True, help="the control plane's network namespace")
    ap.add_argument("--flips", type=int, default=30)
    ap.add_argument("--interval-ms", type=int, default=5)
    ap.add_argument("--per-flip", action="store_true")
    d = Driver(ap.parse_args())
    try:
        d.run()
        return 0
    except Fail as e:
        print("flip_bench: FAILED: %s" % e, flush=True)
        # the sidecars named: their last words, and weftd's view of them
        _, _, token = kubeconfig(d.a.kubeconfig)
        for pod in sorted(set(re.findall(r"\b(c\d+)\b", str(e))), key=lambda x: int(x[1:]))[:3]:
            path = os.path.join(d.a.agent_logs, pod + ".log")
            if os.path.exists(path):
                print("--- %s's agent log (%s):" % (pod, path))
                print("".join(open(path, errors="replace").readlines()[-12:]), end="", flush=True)
            try:
                req = urllib.request.Request(
                    "http://127.0.0.1:18090/debug/proxies/%s/%s" % (d.a.namespace, pod),
                    headers={"Authorization": "Bearer " + token})
                with urllib.request.urlopen(req, timeout=5) as r:
                    print("--- weftd's /debug/proxies/%s/%s: %s" % (d.a.namespace, pod,
                                                                    r.read().decode()[:1500]))
            except OSError as x:
                print("--- weftd's /debug/proxies/%s/%s: %s" % (d.a.namespace, pod, x))
        try:
            m = metrics("http://127.0.0.1:18090/metrics")
            print("--- weftd: %s" % " ".join("%s=%g" % (k, v) for k, v in sorted(m.items())
                                            if k.startswith("weft_config_stream_")
                                            and "_bucket" not in k))
        except OSError as x:
            print("--- weftd's metrics: %s" % x)
        return 1
    finally:
        for _, p in d.procs:
            if p.poll() is None:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
