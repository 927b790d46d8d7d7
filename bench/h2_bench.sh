#!/usr/bin/env bash
# bench/h2_bench.sh - HTTP/2 through two Weft sidecars against direct, in the same run
# (BENCHMARKS.md, "HTTP/2"): requests per second and latency percentiles of h2load (closed loop:
# CONNS connections, STREAMS concurrent streams each, for SECONDS) against nghttpd answering a
# 1,024-byte file; and the same at a fixed rate (RATE requests/s in all, h2load --rps), where
# latency is the cost of the two hops rather than of saturated CPUs.
#
#   bench/h2_bench.sh [--seconds 10] [--rounds 3] [--conns 4] [--streams 10] [--rate 1000] [--grpc]
#
# --grpc: every nghttpd answers with the trailer "grpc-status: 0", and a third path, mesh-grpc,
# goes through the same two sidecars to a Service port declared "protocol": "grpc" (the gRPC
# status filter and a log line to the agent per request, docs/agent.md "gRPC status codes"):
# mesh-grpc / mesh is that cost, measured in the same rounds; the end compares the agents'
# counts with HAProxy's own.
#
# Needs root (network namespaces, iptables), haproxy, nghttp2-client and nghttp2-server, and a
# build (make all). Holds /tmp/weft-e2e-h2bench.lock while it runs (its namespaces, veths and
# addresses are its own; the setup is bench/lib.sh's, shared with mesh_bench.sh). Two "pods" as
# network namespaces wfb-hc (client, 10.251.10.1) and wfb-hs (server, 10.251.10.2) joined by a
# veth; kubelite and weftd run in wfb-hs (weftd issues both sidecars' certificates); each pod
# gets weft-init's rules and weft-agent (UID 1337) with a --config-file document whose port is
# "protocol": "http2".
# Paths, each driven by the same h2load from wfb-hc against the same nghttpd:
#   direct  h2load (UID 1337, not captured) -> 10.251.10.2:8082, h2c
#   mesh    h2load -> Service 10.96.251.10:80 (REDIRECT to the client's 15001) -> h2 over mutual
#           TLS (ALPN) -> the server's 15006 -> h2c to nghttpd on 10.251.10.2:8081
#   mesh-grpc (--grpc) the same to Service port 81, "protocol": "grpc", nghttpd on 8083
# Rounds interleave the paths (direct, mesh, direct, ...); medians are printed, with the
# mesh/direct ratios. Latency percentiles come from h2load's per-request log (--log-file).
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
BUILD=${BUILD:-build}
ARGS=("$@")
SECONDS_=10 ROUNDS=3 CONNS=4 STREAMS=10 RATE=1000 GRPC=
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) SECONDS_=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --streams) STREAMS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --grpc) GRPC=1; shift ;;
    *) echo "usage: bench/h2_bench.sh [--seconds S] [--rounds N] [--conns N] [--streams N] [--rate N] [--grpc]" >&2; exit 2 ;;
    esac
done
# shellcheck source=lib.sh
. "$REPO/bench/lib.sh"
for b in nghttpd h2load; do
    command -v $b >/dev/null || { echo "h2_bench: $b is not installed (make deps)" >&2; exit 1; }
done
bench_start h2_bench /tmp/weft-e2e-h2bench.lock "$REPO/bench/h2_bench.sh" "${ARGS[@]}"
die() { bench_die "$@"; }

C=wfb-hc S=wfb-hs CA=10.251.10.1 SA=10.251.10.2 SVC=10.96.251.10
BENCH_CP_ADDR=$SA

# --- pods -----------------------------------------------------------------------------------
bench_netns $C
bench_netns $S
bench_hosts $C $S
bench_link $C $CA wfbhc0 $S $SA wfbhs0
mkdir -p "$T/www" && head -c 1024 /dev/zero | tr '\0' x >"$T/www/kb" && chmod -R a+rX "$T/www"
TRAILER=() PATHS=(direct mesh)
[ -n "$GRPC" ] && TRAILER=(--trailer 'grpc-status: 0') PATHS=(direct mesh mesh-grpc)
bench_bg $S nghttpd --no-tls "${TRAILER[@]}" -a $SA -d "$T/www" 8081
bench_bg $S nghttpd --no-tls "${TRAILER[@]}" -a $SA -d "$T/www" 8082
bench_wait_port $S 8081 && bench_wait_port $S 8082 || die "nghttpd"
if [ -n "$GRPC" ]; then
    bench_bg $S nghttpd --no-tls "${TRAILER[@]}" -a $SA -d "$T/www" 8083
    bench_wait_port $S 8083 || die "nghttpd"
fi

# --- control plane in wfb-hs: kubelite, weftd (certificates) ---------------------------------
bench_control_plane $S $SA

# --- documents (docs/proxy-config.md): one http2 port -----------------------------------------
port_doc() { # PORT NAME PROTOCOL TARGET
    echo '{"port": '$1', "name": "'$2'", "protocol": "'$3'", "routes": [{"backends": [{"service": "app", "requestedPpm": 1000000, "achievedPpm": 1000000, "endpoints": [{"ip": "'$SA'", "port": '$4', "identity": "spiffe://cluster.local/ns/bench/sa/app", "ready": true, "weight": 1}]}]}]}'
}
in_doc() { # PORT PROTOCOL
    echo '{"port": '$1', "protocol": "'$2'", "services": ["app"], "default": "allow-authenticated", "deny": [], "audit": [], "allow": []}'
}
if [ -n "$GRPC" ]; then
    OUT='[{"service": "app", "namespace": "bench", "clusterIP": "'$SVC'", "ports": ['$(port_doc 80 h2c http2 8081)', '$(port_doc 81 grpc grpc 8083)']}]'
    IN='['$(in_doc 8081 http2)', '$(in_doc 8083 grpc)']'
else
    OUT='[{"service": "app", "namespace": "bench", "clusterIP": "'$SVC'", "ports": ['$(port_doc 80 h2c http2 8081)']}]'
    IN='['$(in_doc 8081 http2)']'
fi
mkdir -p "$T/c" "$T/s"
bench_doc client $CA client "$OUT" '[]' >"$T/c/doc.json"
bench_doc app $SA app '[]' "$IN" >"$T/s/doc.json"
chown -R 1337:1337 "$T/c" "$T/s"

# --- sidecars -------------------------------------------------------------------------------
ip netns exec $C "$BENCH_INIT" >/dev/null || die "weft-init in $C"
ip netns exec $S "$BENCH_INIT" --include-inbound-ports 8081,8083 >/dev/null || die "weft-init in $S"
bench_sidecar $C "$T/c" client $CA
bench_sidecar $S "$T/s" app $SA
bench_wait_ready $C $S

# --- measurements ---------------------------------------------------------------------------
run_load() { # PATH-NAME [RATE]: one measurement, "req_per_s p50_us p99_us failed total"
    local url pre=() out rps total failed n rate=()
    case $1 in
    direct) url=http://$SA:8082/kb pre=(setpriv --reuid 1337 --regid 1337 --clear-groups) ;;
    mesh) url=http://$SVC/kb ;;
    mesh-grpc) url=http://$SVC:81/kb ;;
    esac
    [ -n "${2:-}" ] && rate=(--rps $(($2 / CONNS)))
    : >"$T/h2.log" && chmod 666 "$T/h2.log" # h2load may run as UID 1337
    out=$(ip netns exec $C "${pre[@]}" h2load -c "$CONNS" -m "$STREAMS" "${rate[@]}" -D "$SECONDS_" --warm-up-time 1 \
        --log-file "$T/h2.log" "$url" 2>&1)
    echo "$out" >>"$T/load.log"
    # "finished in 10.00s, 12345.60 req/s, ..."; "requests: N total, N started, N done, N succeeded, N failed, ..."
    rps=$(printf '%s\n' "$out" | sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p')
    total=$(printf '%s\n' "$out" | sed -n 's/^requests: \([0-9]*\) total.*/\1/p')
    failed=$(printf '%s\n' "$out" | sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p')
    # h2load's log: start time, status, elapsed microseconds, one line per request
    awk '$2 == 200 {print $3}' "$T/h2.log" | sort -n >"$T/lat"
    n=$(wc -l <"$T/lat")
    echo "${rps:-0} $(sed -n "$((n / 2 + 1))p" "$T/lat") $(sed -n "$((n * 99 / 100 + 1))p" "$T/lat") ${failed:-0} ${total:-0}"
}
median() { bench_median; }

echo "== HTTP/2 ($(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)): h2load -c $CONNS -m $STREAMS, ${SECONDS_} s (+1 s warm-up) per measurement, 1,024-byte answers${GRPC:+ with a grpc-status trailer}, $ROUNDS rounds"
ALL=()
for p in "${PATHS[@]}"; do ALL+=("$p"); done
for p in "${PATHS[@]}"; do ALL+=("$p-rate"); done
for p in "${PATHS[@]}"; do # the first connection's handshakes
    [ "$p" = direct ] || ip netns exec $C h2load -n 10 -c 1 "http://$SVC:$([ "$p" = mesh ] && echo 80 || echo 81)/kb" >/dev/null 2>&1
done
for p in "${ALL[@]}"; do : >"$T/$p"; done
FAILED=0
for _ in $(seq "$ROUNDS"); do
    for p in "${ALL[@]}"; do
        case $p in
        *-rate) res=$(run_load "${p%-rate}" "$RATE") ;;
        *) res=$(run_load $p) ;;
        esac
        [ "$(echo "$res" | wc -w)" -eq 5 ] || die "$p: no result: $(tail -5 "$T/load.log")"
        echo "$res" >>"$T/$p"
        # shellcheck disable=SC2086 # the fields of one result line
        set -- $res
        FAILED=$((FAILED + $4))
        [ "$5" -gt 0 ] || die "$p: h2load measured nothing: $(tail -5 "$T/load.log")"
    done
done
col() { awk -v c="$2" '{print $c}' "$T/$1" | median; }
DR=$(col direct 1) D50=$(col direct 2) D99=$(col direct 3)
MR=$(col mesh 1) M50=$(col mesh 2) M99=$(col mesh 3)
ratio() { bench_ratio "$@"; }
printf '%-40s %12s %10s %10s\n' "closed loop, median of rounds" "requests/s" "p50 us" "p99 us"
printf '%-40s %12s %10s %10s\n' "direct h2c (baseline)" "$DR" "$D50" "$D99"
printf '%-40s %12s %10s %10s\n' "through two Weft sidecars (h2, mTLS)" "$MR" "$M50" "$M99"
printf '%-40s %12s %10s %10s\n' "mesh / direct" "$(ratio "$MR" "$DR")" "$(ratio "$M50" "$D50")" "$(ratio "$M99" "$D99")"
if [ -n "$GRPC" ]; then
    GR=$(col mesh-grpc 1) G50=$(col mesh-grpc 2) G99=$(col mesh-grpc 3)
    printf '%-40s %12s %10s %10s\n' "two sidecars, port declared grpc" "$GR" "$G50" "$G99"
    printf '%-40s %12s %10s %10s\n' "grpc port / http2 port" "$(ratio "$GR" "$MR")" "$(ratio "$G50" "$M50")" "$(ratio "$G99" "$M99")"
fi
RDR=$(col direct-rate 1) RD50=$(col direct-rate 2) RD99=$(col direct-rate 3)
RMR=$(col mesh-rate 1) RM50=$(col mesh-rate 2) RM99=$(col mesh-rate 3)
hop() { bench_hop "$@"; }
printf '%-40s %12s %10s %10s\n' "at $RATE requests/s, median of rounds" "requests/s" "p50 us" "p99 us"
printf '%-40s %12s %10s %10s\n' "direct h2c (baseline)" "$RDR" "$RD50" "$RD99"
printf '%-40s %12s %10s %10s\n' "through two Weft sidecars (h2, mTLS)" "$RMR" "$RM50" "$RM99"
printf '%-40s %12s %10s %10s\n' "mesh / direct" "$(ratio "$RMR" "$RDR")" "$(ratio "$RM50" "$RD50")" "$(ratio "$RM99" "$RD99")"
printf '%-40s %12s %10s %10s\n' "added per hop (us)" "" "$(hop "$RM50" "$RD50")" "$(hop "$RM99" "$RD99")"
if [ -n "$GRPC" ]; then
    RGR=$(col mesh-grpc-rate 1) RG50=$(col mesh-grpc-rate 2) RG99=$(col mesh-grpc-rate 3)
    printf '%-40s %12s %10s %10s\n' "two sidecars, port declared grpc" "$RGR" "$RG50" "$RG99"
    printf '%-40s %12s %10s %10s\n' "grpc port / http2 port" "$(ratio "$RGR" "$RMR")" "$(ratio "$RG50" "$RM50")" "$(ratio "$RG99" "$RM99")"
    printf '%-40s %12s %10s %10s\n' "grpc port, added per hop (us)" "" "$(hop "$RG50" "$RD50")" "$(hop "$RG99" "$RD99")"
fi
for p in "${ALL[@]}"; do
    echo "per round, $p (req/s p50 p99 failed total): $(tr '\n' ';' <"$T/$p")"
done
echo "failed requests in all runs: $FAILED"
if [ -n "$GRPC" ]; then
    # the agents' counts against HAProxy's own (its exporter on 15090), after the lines in flight
    sleep 2
    scrape() { ip netns exec "$1" curl -s "http://127.0.0.1:$2" | awk -v s="$3" '$1 == s {v = $2} END {print v + 0}'; }
    for side in "$C outbound oh_bench_app_81" "$S inbound in_8083"; do
        read -r ns dir be <<<"$side"
        counted=$(scrape "$ns" 15020/stats/prometheus "weft_agent_grpc_responses_total{direction=\"$dir\",service=\"bench/app\",code=\"0\"}")
        other=$(ip netns exec "$ns" curl -s http://127.0.0.1:15020/stats/prometheus | awk -v d="direction=\"$dir\"" 'index($1, "weft_agent_grpc_responses_total{") == 1 && index($1, d) && !index($1, "code=\"0\"") {c += $2} END {print c + 0}')
        answered=$(scrape "$ns" 15090/metrics "haproxy_backend_http_responses_total{proxy=\"$be\",code=\"2xx\"}")
        dropped=$(scrape "$ns" 15090/metrics haproxy_process_dropped_logs_total)
        echo "grpc port, $dir ($ns): HAProxy answered $answered (2xx, backend $be); the agent counted $counted with code 0, $other with another code; HAProxy dropped $dropped log lines"
    done
fi
[ "$FAILED" -eq 0 ]
