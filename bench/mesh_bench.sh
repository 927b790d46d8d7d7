#!/usr/bin/env bash
# bench/mesh_bench.sh - the sidecar's cost on the wire (BENCHMARKS.md, "Sidecar"): latency added
# per hop with mutual TLS at a fixed rate of 1 KB answers, against direct calls and against a
# hand-written HAProxy mTLS pair measured in the same run; CPU per 1,000 requests of HAProxy and
# weft-agent; PSS of the sidecar (agent + HAProxy master + worker), idle and under load, with a
# small document and with one of 1,000 outbound services.
#
#   bench/mesh_bench.sh [--rate 1000] [--seconds 10] [--rounds 3] [--services 1000]
#
# Needs root (network namespaces, iptables), haproxy, and a build (make all). Holds
# /tmp/weft-netns.lock while it runs. Two "pods" as network namespaces wfb-c (client,
# 10.251.9.1) and wfb-s (server, 10.251.9.2) joined by a veth; kubelite and weftd run in wfb-s
# (weftd issues both sidecars' certificates); each pod gets weft-init's rules and weft-agent
# (UID 1337) with a --config-file document. Paths measured, each with the same load generator
# (bench/mesh_load.c, open loop) from wfb-c and the same app (testapp /bytes, 1,024 bytes):
#   direct  client -> 10.251.9.2:8081 (plaintext; the client runs as UID 1337, not captured)
#   pair    client -> 127.0.0.1:18001 HAProxy (hand-written) -> mTLS -> HAProxy :18443 -> app
#   mesh    client -> Service 10.96.251.2:80 (REDIRECT to A's 15001) -> mTLS -> B's 15006 -> app
# Rounds interleave the three paths (direct, pair, mesh, direct, ...); the medians are printed.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
BUILD=${BUILD:-build}
RATE=1000 SECONDS_=10 ROUNDS=3 SERVICES=1000 WARMUP=2 CONNS=16
while [ $# -gt 0 ]; do
    case $1 in
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --services) SERVICES=$2; shift 2 ;;
    *) echo "usage: bench/mesh_bench.sh [--rate N] [--seconds S] [--rounds N] [--services N]" >&2; exit 2 ;;
    esac
done
LOAD=$REPO/$BUILD/bench/mesh_load
AGENT=$REPO/$BUILD/bin/weft-agent
INIT=$REPO/$BUILD/bin/weft-init
TESTAPP=$REPO/$BUILD/bin/testapp
KUBELITE=$REPO/$BUILD/bin/kubelite
WEFTD=$REPO/$BUILD/bin/weftd
K=${KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}/kubectl.1.33
for b in "$LOAD" "$AGENT" "$INIT" "$TESTAPP" "$KUBELITE" "$WEFTD" "$K"; do
    [ -x "$b" ] || { echo "mesh_bench: $b is missing (make all)" >&2; exit 1; }
done
command -v haproxy >/dev/null || { echo "mesh_bench: haproxy is not installed" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "mesh_bench: needs root (network namespaces, iptables)" >&2; exit 1; }
if [ -z "${WEFT_NETNS_LOCKED:-}" ]; then
    exec env WEFT_NETNS_LOCKED=1 flock /tmp/weft-netns.lock bash "$REPO/bench/mesh_bench.sh" --rate "$RATE" --seconds "$SECONDS_" \
        --rounds "$ROUNDS" --services "$SERVICES"
fi

C=wfb-c S=wfb-s CA=10.251.9.1 SA=10.251.9.2 SVC=10.96.251.2 CP_NAME=weftd.weft-system.svc
T=$(mktemp -d /tmp/weft-mesh-bench.XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    ip netns pids $C 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns pids $S 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del $C 2>/dev/null
    ip netns del $S 2>/dev/null
    rm -rf "$T" /etc/netns/$C /etc/netns/$S
}
trap cleanup EXIT
trap 'exit 1' INT TERM
die() {
    local f
    echo "mesh_bench: $*" >&2
    for f in "$T"/log.*; do
        [ -s "$f" ] || continue
        echo "--- $f ($(head -c 300 "$T/cmd.${f##*.}" 2>/dev/null))" >&2
        tail -n 8 "$f" | cut -c1-300 >&2
    done
    exit 1
}
bg() { # NS CMD...: in the background, output in $T/log.<n>
    local ns=$1
    shift
    echo "$ns $*" >"$T/cmd.${#PIDS[@]}"
    ip netns exec "$ns" "$@" >"$T/log.${#PIDS[@]}" 2>&1 &
    PIDS+=($!)
    BG=$!
}
as1337() { setpriv --reuid 1337 --regid 1337 --clear-groups "$@"; }
wait_port() { # NS PORT
    local i
    for i in $(seq 100); do
        ip netns exec "$1" ss -ltn | grep -q ":$2 " && return 0
        sleep 0.1
    done
    return 1
}

# --- pods -----------------------------------------------------------------------------------
ip netns del $C 2>/dev/null
ip netns del $S 2>/dev/null
ip netns add $C && ip netns add $S || die "namespaces"
# weftd's serving certificate names weftd.weft-system.svc: that name resolves to wfb-s in both
# pods (ip netns exec mounts /etc/netns/<ns>/hosts over /etc/hosts)
for ns in $C $S; do
    mkdir -p /etc/netns/$ns && printf '127.0.0.1 localhost\n%s %s\n' $SA $CP_NAME >/etc/netns/$ns/hosts
done
ip link add wfbc0 netns $C type veth peer name wfbs0 netns $S || die "veth"
ip -n $C addr add $CA/24 dev wfbc0 && ip -n $S addr add $SA/24 dev wfbs0 &&
    ip -n $C link set wfbc0 up && ip -n $S link set wfbs0 up &&
    ip -n $C link set lo up && ip -n $S link set lo up &&
    ip -n $C route add default dev wfbc0 && ip -n $S route add default dev wfbs0 || die "links"
BODY=1024
bg $S env PORT=8080 POD_NAME=app "$TESTAPP"
bg $S env PORT=8081 POD_NAME=app "$TESTAPP"
wait_port $S 8080 && wait_port $S 8081 || die "testapp"

# --- control plane in wfb-s: kubelite, weftd (certificates) ---------------------------------
bg $S "$KUBELITE" --listen 127.0.0.1:0 --kubeconfig-out "$T/kubeconfig" \
    --openapi-dir "$REPO/tests/kubelite/openapi"
for _ in $(seq 100); do [ -s "$T/kubeconfig" ] && break; sleep 0.1; done
[ -s "$T/kubeconfig" ] || die "kubelite did not start"
kc() { ip netns exec $S env KUBECONFIG="$T/kubeconfig" "$K" "$@"; }
kc create namespace weft-system >/dev/null && kc create namespace bench >/dev/null &&
    kc create serviceaccount -n bench client >/dev/null &&
    kc create serviceaccount -n bench app >/dev/null || die "namespaces and service accounts"
bg $S "$WEFTD" --kubeconfig "$T/kubeconfig" --namespace weft-system --identity bench \
    --admin-listen 127.0.0.1:18090 --certs-listen "$SA:15012" --stream-listen 127.0.0.1:18013 \
    --webhook-listen 127.0.0.1:18444 --cert-ttl 3600
for _ in $(seq 200); do
    ip netns exec $S curl -s http://127.0.0.1:18090/readyz 2>/dev/null | grep -q '^ca loaded: yes' && break
    sleep 0.1
done
kc get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$T/root.pem" ||
    die "no root"
for sa in client app; do
    kc create token -n bench $sa --audience weft --duration 1h >"$T/$sa.token" || die "token"
done

# --- documents (docs/proxy-config.md) -------------------------------------------------------
doc() { # POD IP SA OUTBOUND INBOUND
    cat <<EOF
{"schemaVersion": 1,
 "proxy": {"namespace": "bench", "pod": "$1", "ip": "$2"},
 "identity": {"spiffeID": "spiffe://cluster.local/ns/bench/sa/$3", "serviceAccount": "$3",
              "trustDomain": "cluster.local",
              "subject": "/O=cluster.local/OU=bench/CN=$3.bench.cluster.local"},
 "trustBundle": {"configMap": "weft-root-ca", "namespace": "bench", "key": "ca.crt"},
 "mode": "all-authenticated", "inbound": $5, "outbound": $4}
EOF
}
svc() { # NAME CLUSTERIP ENDPOINT-IP
    printf '{"service": "%s", "namespace": "bench", "clusterIP": "%s", "ports": [{"port": 80, "name": "http", "protocol": "http", "routes": [{"backends": [{"service": "%s", "requestedPpm": 1000000, "achievedPpm": 1000000, "endpoints": [{"ip": "%s", "port": 8080, "identity": "spiffe://cluster.local/ns/bench/sa/app", "ready": true, "weight": 1}]}]}]}]}' "$1" "$2" "$1" "$3"
}
ALLOW='{"policy": "allow-client", "peers": {"ids": ["spiffe://cluster.local/ns/bench/sa/client"], "prefixes": []}}'
IN_APP='[{"port": 8080, "protocol": "http", "services": ["app"], "default": "deny", "deny": [], "audit": [], "allow": ['$ALLOW']}]'
mkdir -p "$T/c" "$T/s"
doc client $CA client "[$(svc app $SVC $SA)]" '[]' >"$T/c/small.json"
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
doc client $CA client "$(cat "$T/c/outbound-big.json")" '[]' >"$T/c/big.json"
doc app $SA app '[]' "$IN_APP" >"$T/s/doc.json"
cp "$T/c/small.json" "$T/c/doc.json"
chown -R 1337:1337 "$T/c" "$T/s"
chmod 644 "$T"/*.token "$T/root.pem"

# --- sidecars -------------------------------------------------------------------------------
ip netns exec $C "$INIT" >/dev/null || die "weft-init in $C"
ip netns exec $S "$INIT" --include-inbound-ports 8080 >/dev/null || die "weft-init in $S"
sidecar() { # NS DIR SA IP
    bg "$1" env POD_IP="$4" setpriv --reuid 1337 --regid 1337 --clear-groups "$AGENT" \
        --control-plane "$CP_NAME:15012" --token-file "$T/$3.token" --ca-file "$T/root.pem" \
        --run-dir "$2/run" --config-file "$2/doc.json" --health-listen 127.0.0.1:15020
}
sidecar $C "$T/c" client $CA
AGENT_C=$BG
sidecar $S "$T/s" app $SA
AGENT_S=$BG
ready() { ip netns exec "$1" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15020/healthz/ready; }
for _ in $(seq 200); do
    [ "$(ready $C)" = 200 ] && [ "$(ready $S)" = 200 ] && break
    sleep 0.1
done
[ "$(ready $C)" = 200 ] && [ "$(ready $S)" = 200 ] ||
    die "sidecars not ready (client $(ready $C), server $(ready $S))"

# --- the hand-written pair (same certificates' kind: ECDSA P-256 from weftd's root) ---------
for side in pc ps; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$side.key" \
        -subj /CN=$side -out "$T/$side.csr" 2>/dev/null || die "CSR"
    tok=client
    [ $side = ps ] && tok=app
    ip netns exec $S curl -sS --cacert "$T/root.pem" -H "Authorization: Bearer $(cat "$T/$tok.token")" \
        -H "Content-Type: application/pkcs10" --data-binary "@$T/$side.csr" \
        "https://$CP_NAME:15012/v1/certificates" | python3 -c 'import json,sys; print(json.load(sys.stdin)["certificateChain"], end="")' >"$T/$side.pem" ||
        die "pair certificate"
    cat "$T/$side.key" >>"$T/$side.pem"
done
chmod 644 "$T"/p?.pem
PAIR_GLOBAL="global
    nbthread 1
    maxconn 4096
    tune.ssl.cachesize 1000
    ssl-server-verify required
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s"
cat >"$T/pc.cfg" <<EOF
$PAIR_GLOBAL
frontend out
    bind 127.0.0.1:18001
    default_backend app
backend app
    http-reuse always
    server s $SA:18443 ssl crt $T/pc.pem ca-file $T/root.pem verify required sni str(app.bench.cluster.local) verifyhost app.bench.cluster.local
EOF
cat >"$T/ps.cfg" <<EOF
$PAIR_GLOBAL
frontend in
    bind :18443 ssl crt $T/ps.pem ca-file $T/root.pem verify required
    default_backend app
backend app
    http-reuse always
    server app 127.0.0.1:8081
EOF
# the pair's server cert must carry the name the client checks: weftd names it by identity
grep -q . "$T/ps.pem" || die "pair certificate"
bg $C setpriv --reuid 1337 --regid 1337 --clear-groups haproxy -f "$T/pc.cfg"
PAIR_C=$BG
bg $S setpriv --reuid 1337 --regid 1337 --clear-groups haproxy -f "$T/ps.cfg"
PAIR_S=$BG
wait_port $C 18001 && wait_port $S 18443 && kill -0 "$PAIR_C" && kill -0 "$PAIR_S" ||
    die "the hand-written pair did not start"

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
ticks() { # PIDS...: utime+stime in clock ticks
    local p s=0 v
    for p in "$@"; do
        v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null)
        s=$((s + ${v:-0}))
    done
    echo $s
}
HZ=$(getconf CLK_TCK)
run_load() { # PATH-NAME: one measurement, "p50 p90 p99 errors sent"
    local out
    case $1 in
    direct) out=$(ip netns exec $C setpriv --reuid 1337 --regid 1337 --clear-groups "$LOAD" --addr $SA --port 8081 \
        --rate "$RATE" --seconds "$SECONDS_" --warmup $WARMUP --conns $CONNS --path "/bytes?n=$BODY") ;;
    pair) out=$(ip netns exec $C "$LOAD" --addr 127.0.0.1 --port 18001 \
        --rate "$RATE" --seconds "$SECONDS_" --warmup $WARMUP --conns $CONNS --path "/bytes?n=$BODY") ;;
    mesh) out=$(ip netns exec $C "$LOAD" --addr $SVC --port 80 \
        --rate "$RATE" --seconds "$SECONDS_" --warmup $WARMUP --conns $CONNS --path "/bytes?n=$BODY") ;;
    esac
    echo "$out" >>"$T/load.log"
    echo "$out" | sed -E 's/.*sent=([0-9]+).*errors=([0-9]+).*p50_us=([0-9]+) p90_us=([0-9]+) p99_us=([0-9]+).*body_bytes=([0-9]+).*/\3 \4 \5 \2 \1 \6/'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }

echo "== sidecar ($(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)): $RATE req/s of $BODY B, ${SECONDS_} s (+${WARMUP} s warm-up) per measurement, $CONNS connections, $ROUNDS rounds"
sleep 2
mapfile -t SC < <(procs "$AGENT_C")
mapfile -t SS < <(procs "$AGENT_S")
IDLE_C=$(pss_kb "${SC[@]}")
IDLE_S=$(pss_kb "${SS[@]}")
: >"$T/direct" && : >"$T/pair" && : >"$T/mesh"
CPU_HP=0 CPU_AG=0 REQS=0 LOAD_C=0 LOAD_S=0 ERRS=0 CPU_PAIR=0 REQS_PAIR=0
for _ in $(seq "$ROUNDS"); do
    for p in direct pair mesh; do
        [ $p = pair ] && pp0=$(ticks "$PAIR_C" "$PAIR_S")
        if [ $p = mesh ]; then
            hp0=$(ticks "${SC[@]:1}" "${SS[@]:1}")
            ag0=$(ticks "$AGENT_C" "$AGENT_S")
            ( sleep $((WARMUP + SECONDS_ / 2)); echo "$(pss_kb "${SC[@]}") $(pss_kb "${SS[@]}")" >"$T/pss.load" ) &
            SAMPLER=$!
        fi
        res=$(run_load $p)
        echo "$res" >>"$T/$p"
        # shellcheck disable=SC2086 # the fields of one result line
        set -- $res
        ERRS=$((ERRS + $4))
        if [ $p = pair ]; then
            CPU_PAIR=$((CPU_PAIR + $(ticks "$PAIR_C" "$PAIR_S") - pp0))
            REQS_PAIR=$((REQS_PAIR + $5))
        fi
        if [ $p = mesh ]; then
            wait "$SAMPLER"
            CPU_HP=$((CPU_HP + $(ticks "${SC[@]:1}" "${SS[@]:1}") - hp0))
            CPU_AG=$((CPU_AG + $(ticks "$AGENT_C" "$AGENT_S") - ag0))
            REQS=$((REQS + $5))
            read -r a b <"$T/pss.load"
            [ "$a" -gt "$LOAD_C" ] && LOAD_C=$a
            [ "$b" -gt "$LOAD_S" ] && LOAD_S=$b
        fi
    done
done
col() { awk -v c="$2" '{print $c}' "$T/$1" | median; }
D50=$(col direct 1) D90=$(col direct 2) D99=$(col direct 3)
P50=$(col pair 1) P90=$(col pair 2) P99=$(col pair 3)
M50=$(col mesh 1) M90=$(col mesh 2) M99=$(col mesh 3)
ratio() { awk -v m="$1" -v p="$2" 'BEGIN { if (p <= 0) print "n/a"; else printf "%.2f", m / p }'; }
hop() { awk -v a="$1" -v d="$2" 'BEGIN { printf "%d", (a - d) / 2 }'; }
printf '%-34s %8s %8s %8s\n' "latency (median of rounds, us)" p50 p90 p99
printf '%-34s %8s %8s %8s\n' "direct (baseline)" "$D50" "$D90" "$D99"
printf '%-34s %8s %8s %8s\n' "hand-written HAProxy mTLS pair" "$P50" "$P90" "$P99"
printf '%-34s %8s %8s %8s\n' "Weft sidecars (agent + HAProxy)" "$M50" "$M90" "$M99"
printf '%-34s %8s %8s %8s\n' "added per hop, pair" "$(hop "$P50" "$D50")" "$(hop "$P90" "$D90")" "$(hop "$P99" "$D99")"
printf '%-34s %8s %8s %8s\n' "added per hop, Weft" "$(hop "$M50" "$D50")" "$(hop "$M90" "$D90")" "$(hop "$M99" "$D99")"
printf '%-34s %8s %8s %8s\n' "Weft / pair, added per hop" \
    "$(ratio "$(hop "$M50" "$D50")" "$(hop "$P50" "$D50")")" "$(ratio "$(hop "$M90" "$D90")" "$(hop "$P90" "$D90")")" \
    "$(ratio "$(hop "$M99" "$D99")" "$(hop "$P99" "$D99")")"
printf '%-34s %8s %8s %8s\n' "Weft / pair, end to end" "$(ratio "$M50" "$P50")" "$(ratio "$M90" "$P90")" "$(ratio "$M99" "$P99")"
echo "per round (p50 p90 p99 errors sent body): direct $(tr '\n' ';' <"$T/direct") pair $(tr '\n' ';' <"$T/pair") mesh $(tr '\n' ';' <"$T/mesh")"
awk -v t="$CPU_HP" -v a="$CPU_AG" -v n="$REQS" -v pt="$CPU_PAIR" -v pn="$REQS_PAIR" -v hz="$HZ" 'BEGIN {
    printf "CPU per 1,000 requests (mesh runs, %d requests): HAProxy %.1f ms per sidecar, weft-agent %.2f ms per sidecar; hand-written pair (%d requests): HAProxy %.1f ms per side; ratio %.2f\n",
        n, t * 1000 / hz / (n / 1000) / 2, a * 1000 / hz / (n / 1000) / 2,
        pn, pt * 1000 / hz / (pn / 1000) / 2, (t / n) / (pt / pn) }'
echo "PSS of a sidecar (agent + HAProxy master + worker), small document: client side idle $((IDLE_C / 1024)).$(((IDLE_C % 1024) * 10 / 1024)) MB, under load $((LOAD_C / 1024)).$(((LOAD_C % 1024) * 10 / 1024)) MB; server side idle $((IDLE_S / 1024)).$(((IDLE_S % 1024) * 10 / 1024)) MB, under load $((LOAD_S / 1024)).$(((LOAD_S % 1024) * 10 / 1024)) MB"
for p in "${SC[@]}"; do echo "  client sidecar pid $p $(tr '\0' ' ' </proc/$p/cmdline | cut -c1-60): PSS $(pss_kb "$p") kB"; done

# --- 1,000 outbound services ----------------------------------------------------------------
n0=$(grep -c 'msg="configuration applied"' "$T/log.$(for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$AGENT_C" ] && echo "$i"; done)")
cp "$T/c/big.json" "$T/c/doc.json"
kill -HUP "$AGENT_C"
LOGC=$T/log.$(for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$AGENT_C" ] && echo "$i"; done)
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
echo "with $SERVICES outbound services: mesh p50 $1 p90 $2 p99 $3 us ($4 errors); client sidecar PSS idle $((BIG_IDLE / 1024)).$(((BIG_IDLE % 1024) * 10 / 1024)) MB, under load $((BIG_LOAD / 1024)).$(((BIG_LOAD % 1024) * 10 / 1024)) MB"
echo "failed requests in all runs: $ERRS"
[ "$ERRS" -eq 0 ]
