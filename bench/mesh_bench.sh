#!/usr/bin/env bash
# bench/mesh_bench.sh - the sidecar's cost on the wire (BENCHMARKS.md, "Sidecar"): latency added
# per hop with mutual TLS at a fixed rate of 1 KB answers, against direct calls and against two
# hand-written HAProxy mTLS pairs measured in the same run; CPU per 1,000 requests of HAProxy and
# weft-agent; PSS of the sidecar (agent + HAProxy master + worker), idle and under load, with a
# small document and with one of 1,000 outbound services.
#
#   bench/mesh_bench.sh [--rate 1000] [--seconds 10] [--rounds 3] [--services 1000] [--dump DIR]
#
# --dump DIR copies the rendered HAProxy configurations and the pairs' into DIR.
# Needs root (network namespaces, iptables), haproxy, and a build (make all). Holds
# /tmp/weft-e2e-meshbench.lock while it runs (its namespaces, veths and addresses are its own:
# bench/lib.sh). Four "pods" as network namespaces, two per veth: wfb-c (client, 10.251.9.1) and
# wfb-s (server, 10.251.9.2) for the direct path, pair A and Weft; wfb-pc (10.251.11.1) and
# wfb-ps (10.251.11.2) for pair B. kubelite and weftd run in wfb-s (weftd issues every
# certificate, ECDSA P-256); wfb-c and wfb-s get weft-init's rules and weft-agent (UID 1337) with
# a --config-file document; wfb-pc and wfb-ps get the same weft-init rules and a hand-written
# HAProxy each (UID 1337) instead of the agent. Paths measured, each with the same load generator
# (bench/mesh_load.c, open loop) from its client pod and the same app (testapp /bytes, 1,024 B):
#   direct  client (UID 1337, not captured) -> 10.251.9.2:8081, plaintext
#   pair A  client -> 127.0.0.1:18001 HAProxy (hand-written) -> mTLS -> HAProxy :18443 -> app
#           (fixed ports: no capture on the path)
#   pair B  client -> 10.96.251.3:80 (REDIRECT to wfb-pc's 15001) -> HAProxy (the same
#           hand-written configuration) -> mTLS to 10.251.11.2:8080 (REDIRECT to wfb-ps's 15006)
#           -> HAProxy -> the app on the pod IP from 127.0.0.6, as the rendered inbound does
#   mesh    client -> Service 10.96.251.2:80 (REDIRECT to wfb-c's 15001) -> mTLS -> wfb-s's 15006
#           -> the app
# Pair B crosses everything Weft's path crosses (the nat REDIRECTs, conntrack, SO_ORIGINAL_DST,
# loopback hops, UID 1337) except the agent's rendered configuration: Weft / pair B is what "the
# agent and the rendering" add; Weft / pair A adds the capture's cost. Rounds interleave the four
# paths (direct, pair A, pair B, mesh, direct, ...), so the machine's drift reaches each path
# alike; the medians over rounds are printed, and per round the Weft / pair B ratio.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
BUILD=${BUILD:-build}
ARGS=("$@")
RATE=1000 SECONDS_=10 ROUNDS=3 SERVICES=1000 WARMUP=2 CONNS=16 DUMP=
while [ $# -gt 0 ]; do
    case $1 in
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --services) SERVICES=$2; shift 2 ;;
    --dump) DUMP=$2; shift 2 ;;
    *) echo "usage: bench/mesh_bench.sh [--rate N] [--seconds S] [--rounds N] [--services N] [--dump DIR]" >&2; exit 2 ;;
    esac
done
# shellcheck source=lib.sh
. "$REPO/bench/lib.sh"
LOAD=$REPO/$BUILD/bench/mesh_load
TESTAPP=$REPO/$BUILD/bin/testapp
for b in "$LOAD" "$TESTAPP"; do
    [ -x "$b" ] || { echo "mesh_bench: $b is missing (make all)" >&2; exit 1; }
done
bench_start mesh_bench /tmp/weft-e2e-meshbench.lock "$REPO/bench/mesh_bench.sh" "${ARGS[@]}"
die() { bench_die "$@"; }

C=wfb-c S=wfb-s CA=10.251.9.1 SA=10.251.9.2 SVC=10.96.251.2
BC=wfb-pc BS=wfb-ps BCA=10.251.11.1 BSA=10.251.11.2 BSVC=10.96.251.3
BENCH_CP_ADDR=$SA

# --- pods -----------------------------------------------------------------------------------
for ns in $C $S $BC $BS; do bench_netns $ns; done
bench_hosts $C $S
bench_link $C $CA wfbc0 $S $SA wfbs0
bench_link $BC $BCA wfbpc0 $BS $BSA wfbps0
BODY=1024
bench_bg $S env PORT=8080 POD_NAME=app "$TESTAPP"
bench_bg $S env PORT=8081 POD_NAME=app "$TESTAPP"
bench_bg $BS env PORT=8080 POD_NAME=app "$TESTAPP"
bench_wait_port $S 8080 && bench_wait_port $S 8081 && bench_wait_port $BS 8080 || die "testapp"

# --- control plane in wfb-s: kubelite, weftd (certificates) ---------------------------------
bench_control_plane $S $SA

# --- documents (docs/proxy-config.md) -------------------------------------------------------
svc() { # NAME CLUSTERIP ENDPOINT-IP
    printf '{"service": "%s", "namespace": "bench", "clusterIP": "%s", "ports": [{"port": 80, "name": "http", "protocol": "http", "routes": [{"backends": [{"service": "%s", "requestedPpm": 1000000, "achievedPpm": 1000000, "endpoints": [{"ip": "%s", "port": 8080, "identity": "spiffe://cluster.local/ns/bench/sa/app", "ready": true, "weight": 1}]}]}]}]}' "$1" "$2" "$1" "$3"
}
ALLOW='{"policy": "allow-client", "peers": {"ids": ["spiffe://cluster.local/ns/bench/sa/client"], "prefixes": []}}'
IN_APP='[{"port": 8080, "protocol": "http", "services": ["app"], "default": "deny", "deny": [], "audit": [], "allow": ['$ALLOW']}]'
mkdir -p "$T/c" "$T/s"
bench_doc client $CA client "[$(svc app $SVC $SA)]" '[]' >"$T/c/small.json"
{
    printf '['
    svc app $SVC $SA
    # the other services: real ClusterIPs, endpoints that exist nowhere (never dialled)
    for i in $(seq 1 $((SERVICES - 1))); do
        printf ',\n'
        svc "svc-$i" "10.97.$((i / 250)).$((i % 250 + 1))" "10.98.$((i / 250)).$((i % 250 + 1))"
    done
    printf ']'
} >"$T/c/outbound-big.json"
bench_doc client $CA client "$(cat "$T/c/outbound-big.json")" '[]' >"$T/c/big.json"
bench_doc app $SA app '[]' "$IN_APP" >"$T/s/doc.json"
cp "$T/c/small.json" "$T/c/doc.json"
chown -R 1337:1337 "$T/c" "$T/s"

# --- sidecars -------------------------------------------------------------------------------
ip netns exec $C "$BENCH_INIT" >/dev/null || die "weft-init in $C"
ip netns exec $S "$BENCH_INIT" --include-inbound-ports 8080 >/dev/null || die "weft-init in $S"
bench_sidecar $C "$T/c" client $CA
AGENT_C=$BG
bench_sidecar $S "$T/s" app $SA
AGENT_S=$BG
bench_wait_ready $C $S

# --- the hand-written pairs (same certificates' kind: ECDSA P-256 from weftd's root) --------
for side in pc ps; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$side.key" \
        -subj /CN=$side -out "$T/$side.csr" 2>/dev/null || die "CSR"
    tok=client
    [ $side = ps ] && tok=app
    ip netns exec $S curl -sS --cacert "$T/root.pem" -H "Authorization: Bearer $(cat "$T/$tok.token")" \
        -H "Content-Type: application/pkcs10" --data-binary "@$T/$side.csr" \
        "https://$BENCH_CP_NAME:15012/v1/certificates" | python3 -c 'import json,sys; print(json.load(sys.stdin)["certificateChain"], end="")' >"$T/$side.pem" ||
        die "pair certificate"
    cat "$T/$side.key" >>"$T/$side.pem"
done
chmod 644 "$T"/p?.pem
# pair_cfg client|server LISTEN UPSTREAM [SERVER-ARGS]: one side of a hand-written pair (the
# same settings as the rendered global section: nbthread 1, tune.ssl.cachesize 1000,
# http-reuse always); A and B differ in their addresses only, and B's server side dials the app
# from 127.0.0.6, which weft-init lets through to the pod IP, as the rendered inbound does
pair_cfg() {
    printf '%s\n' "global" "    nbthread 1" "    maxconn 4096" "    tune.ssl.cachesize 1000" \
        "    ssl-server-verify required" "defaults" "    mode http" "    timeout connect 5s" \
        "    timeout client 60s" "    timeout server 60s" "    timeout http-keep-alive 60s"
    if [ "$1" = client ]; then
        printf '%s\n' "frontend out" "    bind $2" "    default_backend app" "backend app" "    http-reuse always" \
            "    server s $3 ssl crt $T/pc.pem ca-file $T/root.pem verify required sni str(app.bench.cluster.local) verifyhost app.bench.cluster.local"
    else
        printf '%s\n' "frontend in" "    bind $2 ssl crt $T/ps.pem ca-file $T/root.pem verify required" \
            "    default_backend app" "backend app" "    http-reuse always" "    server app $3${4:+ $4}"
    fi
}
pair_cfg client 127.0.0.1:18001 $SA:18443 >"$T/pc.cfg"
pair_cfg server :18443 127.0.0.1:8081 >"$T/ps.cfg"
pair_cfg client 127.0.0.1:15001 $BSA:8080 >"$T/pbc.cfg"
pair_cfg server :15006 $BSA:8080 "source 127.0.0.6" >"$T/pbs.cfg"
ip netns exec $BC "$BENCH_INIT" >/dev/null || die "weft-init in $BC"
ip netns exec $BS "$BENCH_INIT" --include-inbound-ports 8080 >/dev/null || die "weft-init in $BS"
AS1337=(setpriv --reuid 1337 --regid 1337 --clear-groups)
bench_bg $C "${AS1337[@]}" haproxy -f "$T/pc.cfg"
PAIR_C=$BG
bench_bg $S "${AS1337[@]}" haproxy -f "$T/ps.cfg"
PAIR_S=$BG
bench_bg $BC "${AS1337[@]}" haproxy -f "$T/pbc.cfg"
PAIRB_C=$BG
bench_bg $BS "${AS1337[@]}" haproxy -f "$T/pbs.cfg"
PAIRB_S=$BG
bench_wait_port $C 18001 && bench_wait_port $S 18443 && bench_wait_port $BC 15001 && bench_wait_port $BS 15006 &&
    kill -0 "$PAIR_C" && kill -0 "$PAIR_S" && kill -0 "$PAIRB_C" && kill -0 "$PAIRB_S" ||
    die "the hand-written pairs did not start"
if [ -n "$DUMP" ]; then
    mkdir -p "$DUMP" && cp "$T/c/run/haproxy.cfg" "$DUMP/weft-client.cfg" &&
        cp "$T/s/run/haproxy.cfg" "$DUMP/weft-server.cfg" && cp "$T/c/run/outbound.map" "$DUMP/weft-client.map" &&
        cp "$T/pbc.cfg" "$DUMP/pairB-client.cfg" && cp "$T/pbs.cfg" "$DUMP/pairB-server.cfg" || die "--dump $DUMP"
fi

# --- measurements ---------------------------------------------------------------------------
procs() { # AGENT_PID: the agent, HAProxy's master (its child) and the workers
    local m
    echo "$1"
    for m in $(pgrep -P "$1" haproxy); do
        echo "$m"
        pgrep -P "$m"
    done
}
pss_kb() { # PIDS...: summed PSS
    local p s=0 v
    for p in "$@"; do
        v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
        s=$((s + ${v:-0}))
    done
    echo $s
}
mb() { echo "$(($1 / 1024)).$((($1 % 1024) * 10 / 1024))"; }
ticks() { # PIDS...: utime+stime in clock ticks
    local p s=0 v
    for p in "$@"; do
        v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null)
        s=$((s + ${v:-0}))
    done
    echo $s
}
HZ=$(getconf CLK_TCK)
run_load() { # PATH-NAME: one measurement, "p50 p90 p99 errors sent body"
    local out ns=$C who=() addr port
    case $1 in
    direct) who=("${AS1337[@]}") addr=$SA port=8081 ;;
    pairA) addr=127.0.0.1 port=18001 ;;
    pairB) ns=$BC addr=$BSVC port=80 ;;
    mesh) addr=$SVC port=80 ;;
    esac
    out=$(ip netns exec $ns "${who[@]}" "$LOAD" --addr $addr --port $port \
        --rate "$RATE" --seconds "$SECONDS_" --warmup $WARMUP --conns $CONNS --path "/bytes?n=$BODY")
    echo "$1 $out" >>"$T/load.log"
    echo "$out" | sed -E 's/.*sent=([0-9]+).*errors=([0-9]+).*p50_us=([0-9]+) p90_us=([0-9]+) p99_us=([0-9]+).*body_bytes=([0-9]+).*/\3 \4 \5 \2 \1 \6/'
}

PATHS="direct pairA pairB mesh"
echo "== sidecar ($(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)): $RATE req/s of $BODY B, ${SECONDS_} s (+${WARMUP} s warm-up) per measurement, $CONNS connections, $ROUNDS rounds of: $PATHS"
sleep 2
mapfile -t SC < <(procs "$AGENT_C")
mapfile -t SS < <(procs "$AGENT_S")
IDLE_C=$(pss_kb "${SC[@]}")
IDLE_S=$(pss_kb "${SS[@]}")
for p in $PATHS; do : >"$T/$p"; done
CPU_HP=0 CPU_MS=0 CPU_AG=0 REQS=0 LOAD_C=0 LOAD_S=0 ERRS=0 CPU_A=0 REQS_A=0 CPU_B=0 REQS_B=0
for _ in $(seq "$ROUNDS"); do
    for p in $PATHS; do
        case $p in
        pairA) t0=$(ticks "$PAIR_C" "$PAIR_S") ;;
        pairB) t0=$(ticks "$PAIRB_C" "$PAIRB_S") ;;
        mesh)
            hp0=$(ticks "${SC[@]:1}" "${SS[@]:1}")
            ms0=$(ticks "${SC[1]}" "${SS[1]}")
            ag0=$(ticks "$AGENT_C" "$AGENT_S")
            ( sleep $((WARMUP + SECONDS_ / 2)); echo "$(pss_kb "${SC[@]}") $(pss_kb "${SS[@]}")" >"$T/pss.load" ) &
            SAMPLER=$!
            ;;
        esac
        res=$(run_load $p)
        echo "$res" >>"$T/$p"
        # shellcheck disable=SC2086 # the fields of one result line
        set -- $res
        [ $# -eq 6 ] || die "$p: no result: $(tail -1 "$T/load.log")"
        ERRS=$((ERRS + $4))
        case $p in
        pairA) CPU_A=$((CPU_A + $(ticks "$PAIR_C" "$PAIR_S") - t0)) REQS_A=$((REQS_A + $5)) ;;
        pairB) CPU_B=$((CPU_B + $(ticks "$PAIRB_C" "$PAIRB_S") - t0)) REQS_B=$((REQS_B + $5)) ;;
        mesh)
            wait "$SAMPLER"
            CPU_HP=$((CPU_HP + $(ticks "${SC[@]:1}" "${SS[@]:1}") - hp0))
            CPU_MS=$((CPU_MS + $(ticks "${SC[1]}" "${SS[1]}") - ms0))
            CPU_AG=$((CPU_AG + $(ticks "$AGENT_C" "$AGENT_S") - ag0))
            REQS=$((REQS + $5))
            read -r a b <"$T/pss.load"
            [ "$a" -gt "$LOAD_C" ] && LOAD_C=$a
            [ "$b" -gt "$LOAD_S" ] && LOAD_S=$b
            ;;
        esac
    done
done
col() { awk -v c="$2" '{print $c}' "$T/$1" | bench_median; }
for q in 50 90 99; do
    c=$(((q == 50) ? 1 : (q == 90) ? 2 : 3))
    printf -v "D$q" %s "$(col direct $c)"
    printf -v "A$q" %s "$(col pairA $c)"
    printf -v "B$q" %s "$(col pairB $c)"
    printf -v "M$q" %s "$(col mesh $c)"
done
row() { printf '%-52s %8s %8s %8s\n' "$@"; }
hopratio() { # LABEL X Y: (X - direct) / (Y - direct), p50 p90 p99
    local q out=()
    for q in 50 90 99; do
        local x=$2$q y=$3$q d=D$q
        out+=("$(bench_ratio "$(bench_hop "${!x}" "${!d}")" "$(bench_hop "${!y}" "${!d}")")")
    done
    row "$1" "${out[@]}"
}
e2e() { # LABEL X Y: X / Y end to end
    local q out=()
    for q in 50 90 99; do
        local x=$2$q y=$3$q
        out+=("$(bench_ratio "${!x}" "${!y}")")
    done
    row "$1" "${out[@]}"
}
row "latency (median of rounds, us)" p50 p90 p99
row "direct (baseline)" "$D50" "$D90" "$D99"
row "pair A: hand-written HAProxy mTLS, fixed ports" "$A50" "$A90" "$A99"
row "pair B: the same pair behind weft-init's capture" "$B50" "$B90" "$B99"
row "Weft sidecars (agent + rendered HAProxy)" "$M50" "$M90" "$M99"
row "added per hop (us), pair A" "$(bench_hop "$A50" "$D50")" "$(bench_hop "$A90" "$D90")" "$(bench_hop "$A99" "$D99")"
row "added per hop (us), pair B" "$(bench_hop "$B50" "$D50")" "$(bench_hop "$B90" "$D90")" "$(bench_hop "$B99" "$D99")"
row "added per hop (us), Weft" "$(bench_hop "$M50" "$D50")" "$(bench_hop "$M90" "$D90")" "$(bench_hop "$M99" "$D99")"
row "the capture per hop (us), (pair B - pair A) / 2" "$(bench_hop "$B50" "$A50")" "$(bench_hop "$B90" "$A90")" "$(bench_hop "$B99" "$A99")"
hopratio "TARGET <= 1.10: Weft / pair B, added per hop" M B
hopratio "Weft / pair A, added per hop (capture included)" M A
e2e "Weft / pair B, end to end" M B
e2e "Weft / pair A, end to end" M A
echo "(the target: the agent and the rendering add nothing measurable, Weft / pair B within 1.1x;"
echo " n/a: a figure not above direct's, so the ratio has no meaning in this run)"
printf 'Weft / pair B added per hop, each round (p50 p90 p99):'
paste -d' ' "$T/direct" "$T/pairB" "$T/mesh" | while read -r d50 d90 d99 _ _ _ b50 b90 b99 _ _ _ m50 m90 m99 _; do
    printf ' %s/%s/%s;' "$(bench_ratio "$(bench_hop "$m50" "$d50")" "$(bench_hop "$b50" "$d50")")" \
        "$(bench_ratio "$(bench_hop "$m90" "$d90")" "$(bench_hop "$b90" "$d90")")" \
        "$(bench_ratio "$(bench_hop "$m99" "$d99")" "$(bench_hop "$b99" "$d99")")"
done
echo
for p in $PATHS; do echo "per round, $p (p50 p90 p99 errors sent body): $(tr '\n' ';' <"$T/$p")"; done
awk -v t="$CPU_HP" -v ms="$CPU_MS" -v a="$CPU_AG" -v n="$REQS" -v at="$CPU_A" -v an="$REQS_A" -v bt="$CPU_B" -v bn="$REQS_B" -v hz="$HZ" 'BEGIN {
    w = t * 1000 / hz / (n / 1000) / 2; pa = at * 1000 / hz / (an / 1000) / 2; pb = bt * 1000 / hz / (bn / 1000) / 2
    printf "CPU per 1,000 requests, HAProxy, per side: Weft %.1f ms (%d requests; master and worker, of which the master %.1f ms), pair A %.1f ms, pair B %.1f ms; Weft / pair B %.2f, Weft / pair A %.2f\n",
        w, n, ms * 1000 / hz / (n / 1000) / 2, pa, pb, w / pb, w / pa
    printf "CPU per 1,000 requests, weft-agent, per sidecar: %.2f ms\n", a * 1000 / hz / (n / 1000) / 2 }'
echo "PSS of a sidecar (agent + HAProxy master + worker), small document: client side idle $(mb "$IDLE_C") MB, under load $(mb "$LOAD_C") MB; server side idle $(mb "$IDLE_S") MB, under load $(mb "$LOAD_S") MB"
for p in "${SC[@]}"; do echo "  client sidecar pid $p $(tr '\0' ' ' </proc/$p/cmdline | cut -c1-60): PSS $(pss_kb "$p") kB"; done

# --- 1,000 outbound services ----------------------------------------------------------------
LOGC=$T/log.$(for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$AGENT_C" ] && echo "$i"; done)
n0=$(grep -c 'msg="configuration applied"' "$LOGC")
cp "$T/c/big.json" "$T/c/doc.json"
kill -HUP "$AGENT_C"
for _ in $(seq 300); do
    [ "$(grep -c 'msg="configuration applied"' "$LOGC")" -gt "$n0" ] && break
    sleep 0.1
done
[ "$(grep -c 'msg="configuration applied"' "$LOGC")" -gt "$n0" ] || die "the $SERVICES-service document was not applied"
sleep 3 # the old worker leaves after the reload
mapfile -t SC < <(procs "$AGENT_C")
BIG_IDLE=$(pss_kb "${SC[@]}")
( sleep $((WARMUP + SECONDS_ / 2)); pss_kb "${SC[@]}" >"$T/pss.big" ) &
SAMPLER=$!
# shellcheck disable=SC2046 # the fields of one result line
set -- $(run_load mesh)
wait "$SAMPLER"
BIG_LOAD=$(cat "$T/pss.big")
ERRS=$((ERRS + $4))
echo "with $SERVICES outbound services: mesh p50 $1 p90 $2 p99 $3 us ($4 errors); client sidecar PSS idle $(mb "$BIG_IDLE") MB, under load $(mb "$BIG_LOAD") MB"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "failed requests in all runs: $ERRS"
[ "$ERRS" -eq 0 ]
