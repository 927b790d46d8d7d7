#!/usr/bin/env bash
# bench/run.sh - run the benchmarks and print their results (make bench).
#   bench/run.sh [kubelite_bench options...]   e.g. --pods 2000 --watchers 200 for a quick run
# BUILD selects the build directory (build/ by default). Method and recorded figures:
# BENCHMARKS.md. Takes about 6 minutes on 2 cores with the defaults (the webhook part about
# 25 s, weftd under hostile clients about 90 s, the sidecar about 2.5 minutes plus the wait for
# /tmp/weft-e2e-meshbench.lock, the config stream with 1,000 agents about 70 s, the split flip
# over 50 meshed pods about 70 s; STREAM_AGENTS=10000 runs the config stream with 10,000).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
KUBELITE_BENCH=${KUBELITE_BENCH:-$BUILD/bench/kubelite_bench}
KUBELITE=${KUBELITE:-$BUILD/bin/kubelite}
for bin in "$KUBELITE_BENCH" "$KUBELITE"; do
    if [ ! -x "$bin" ]; then
        echo "bench/run.sh: $bin is not built (run make first)" >&2
        exit 1
    fi
done
# 1,000 watchers need about 2,100 descriptors in the bench (both ends of the baseline)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== kubelite ($(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ))"
"$KUBELITE_BENCH" --kubelite "$KUBELITE" --openapi-dir tests/kubelite/openapi "$@"
rc=$?
if [ -x "$BUILD/bench/ca_bench" ]; then
    echo "== ca"
    "$BUILD/bench/ca_bench" --seconds 2 || rc=1
fi
if [ -x "$BUILD/bench/push_bench" ]; then
    echo "== push (config stream)"
    "$BUILD/bench/push_bench" || rc=1
fi
if [ -x "$BUILD/bench/stream_load" ] && [ -x "$BUILD/bin/weftd" ]; then
    # STREAM_AGENTS=10000 for the full size (about 10 minutes); see BENCHMARKS.md
    BUILD=$BUILD python3 bench/stream_bench.py --agents "${STREAM_AGENTS:-1000}" || rc=1
fi
if [ -x "$BUILD/bench/webhook_bench" ]; then
    echo "== webhook (sidecar injection over HTTPS)"
    "$BUILD/bench/webhook_bench" || rc=1
fi
if [ -x "$BUILD/bench/webhook_bench" ] && [ -x "$BUILD/bin/weftd" ]; then
    echo "== weftd under hostile clients"
    BUILD=$BUILD bash bench/hostile_bench.sh || rc=1
fi
if [ "$(id -u)" = 0 ] && command -v haproxy >/dev/null; then
    # network namespaces of its own: mesh_bench.sh takes /tmp/weft-e2e-meshbench.lock itself
    BUILD=$BUILD bash bench/mesh_bench.sh || rc=1
else
    echo "== sidecar: skipped (needs root and haproxy: bench/mesh_bench.sh)"
fi
if [ "$(id -u)" = 0 ] && command -v haproxy >/dev/null && [ -x "$BUILD/bench/flip_client" ]; then
    # 50 meshed pods on weftd's stream; flip_bench.sh takes /tmp/weft-e2e-flip.lock itself
    BUILD=$BUILD bash bench/flip_bench.sh || rc=1
else
    echo "== split flip: skipped (needs root, haproxy and the build: bench/flip_bench.sh)"
fi
if [ "$(id -u)" = 0 ] && command -v haproxy >/dev/null && command -v h2load >/dev/null; then
    # network namespaces of its own: h2_bench.sh takes /tmp/weft-e2e-h2bench.lock itself
    BUILD=$BUILD bash bench/h2_bench.sh || rc=1
else
    echo "== HTTP/2: skipped (needs root, haproxy and nghttp2: bench/h2_bench.sh)"
fi
exit $rc
