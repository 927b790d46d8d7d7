#!/usr/bin/env bash
# bench/h2_bench.sh - HTTP/2 through two Weft sidecars against direct, in the same run
# (BENCHMARKS.md, "HTTP/2"): requests per second and latency percentiles of h2load (closed loop:
# CONNS connections, STREAMS concurrent streams each, for SECONDS) against nghttpd answering a
# 1,024-byte file; and the same at a fixed rate (RATE requests/s in all, h2load --rps), where
# latency is the cost of the two hops rather than of saturated CPUs.
#
#   bench/h2_bench.sh [--seconds 10] [--rounds 3] [--conns 4] [--streams 10] [--rate 1000]
#
# Needs root (network namespaces, iptables), haproxy, nghttp2-client and nghttp2-server, and a
# build (make all). Holds /tmp/weft-netns.lock while it runs. Two "pods" as network namespaces
# wfb-hc (client, 10.251.10.1) and wfb-hs (server, 10.251.10.2) joined by a veth; kubelite and
# weftd run in wfb-hs (weftd issues both sidecars' certificates); each pod gets weft-init's rules
# and weft-agent (UID 1337) with a --config-file document whose port is "protocol": "http2".
# Paths, each driven by the same h2load from wfb-hc against the same nghttpd:
#   direct  h2load (UID 1337, not captured) -> 10.251.10.2:8082, h2c
#   mesh    h2load -> Service 10.96.251.10:80 (REDIRECT to the client's 15001) -> h2 over mutual
#           TLS (ALPN) -> the server's 15006 -> h2c to nghttpd on 10.251.10.2:8081
# Rounds interleave the paths (direct, mesh, direct, ...); medians are printed, with the
# mesh/direct ratios. Latency percentiles come from h2load's per-request log (--log-file).
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
BUILD=${BUILD:-build}
SECONDS_=10 ROUNDS=3 CONNS=4 STREAMS=10 RATE=1000
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) SECONDS_=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --streams) STREAMS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    *) echo "usage: bench/h2_bench.sh [--seconds S] [--rounds N] [--conns N] [--streams N] [--rate N]" >&2; exit 2 ;;
    esac
done
AGENT=$REPO/$BUILD/bin/weft-agent
INIT=$REPO/$BUILD/bin/weft-init
KUBELITE=$REPO/$BUILD/bin/kubelite
WEFTD=$REPO/$BUILD/bin/weftd
K=${KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}/kubectl.1.33
for b in "$AGENT" "$INIT" "$KUBELITE" "$WEFTD" "$K"; do
    [ -x "$b" ] || { echo "h2_bench: $b is missing (make all)" >&2; exit 1; }
done
for b in haproxy nghttpd h2load; do
    command -v $b >/dev/null || { echo "h2_bench: $b is not installed (make deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "h2_bench: needs root (network namespaces, iptables)" >&2; exit 1; }
if [ -z "${WEFT_NETNS_LOCKED:-}" ]; then
    exec env WEFT_NETNS_LOCKED=1 flock /tmp/weft-netns.lock bash "$REPO/bench/h2_bench.sh" --seconds "$SECONDS_" \
        --rounds "$ROUNDS" --conns "$CONNS" --streams "$STREAMS" --rate "$RATE"
fi

C=wfb-hc S=wfb-hs CA=10.251.10.1 SA=10.251.10.2 SVC=10.96.251.10 CP_NAME=weftd.weft-system.svc
T=$(mktemp -d /tmp/weft-h2-bench.XXXXXX)
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
    echo "h2_bench: $*" >&2
    for f in "$T"/log.*; do
        [ -s "$f" ] || continue
        echo "--- $f" >&2
        tail -n 8 "$f" | cut -c1-300 >&2
    done
    exit 1
}
bg() { # NS CMD...: in the background, output in $T/log.<n>
    local ns=$1
    shift
    ip netns exec "$ns" "$@" >"$T/log.${#PIDS[@]}" 2>&1 &
    PIDS+=($!)
}
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
for ns in $C $S; do
    mkdir -p /etc/netns/$ns && printf '127.0.0.1 localhost\n%s %s\n' $SA $CP_NAME >/etc/netns/$ns/hosts
done
ip link add wfbhc0 netns $C type veth peer name wfbhs0 netns $S || die "veth"
ip -n $C addr add $CA/24 dev wfbhc0 && ip -n $S addr add $SA/24 dev wfbhs0 &&
    ip -n $C link set wfbhc0 up && ip -n $S link set wfbhs0 up &&
    ip -n $C link set lo up && ip -n $S link set lo up &&
    ip -n $C route add default dev wfbhc0 && ip -n $S route add default dev wfbhs0 || die "links"
mkdir -p "$T/www" && head -c 1024 /dev/zero | tr '\0' x >"$T/www/kb" && chmod -R a+rX "$T/www"
bg $S nghttpd --no-tls -a $SA -d "$T/www" 8081
bg $S nghttpd --no-tls -a $SA -d "$T/www" 8082
wait_port $S 8081 && wait_port $S 8082 || die "nghttpd"

# --- control plane in wfb-hs: kubelite, weftd (certificates) ---------------------------------
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

# --- documents (docs/proxy-config.md): one http2 port -----------------------------------------
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
OUT='[{"service": "app", "namespace": "bench", "clusterIP": "'$SVC'", "ports": [{"port": 80, "name": "h2c", "protocol": "http2", "routes": [{"backends": [{"service": "app", "requestedPpm": 1000000, "achievedPpm": 1000000, "endpoints": [{"ip": "'$SA'", "port": 8081, "identity": "spiffe://cluster.local/ns/bench/sa/app", "ready": true, "weight": 1}]}]}]}]}]'
IN='[{"port": 8081, "protocol": "http2", "services": ["app"], "default": "allow-authenticated", "deny": [], "audit": [], "allow": []}]'
mkdir -p "$T/c" "$T/s"
doc client $CA client "$OUT" '[]' >"$T/c/doc.json"
doc app $SA app '[]' "$IN" >"$T/s/doc.json"
chown -R 1337:1337 "$T/c" "$T/s"
chmod 644 "$T"/*.token "$T/root.pem"

# --- sidecars -------------------------------------------------------------------------------
ip netns exec $C "$INIT" >/dev/null || die "weft-init in $C"
ip netns exec $S "$INIT" --include-inbound-ports 8081 >/dev/null || die "weft-init in $S"
sidecar() { # NS DIR SA IP
    bg "$1" env POD_IP="$4" setpriv --reuid 1337 --regid 1337 --clear-groups "$AGENT" \
        --control-plane "$CP_NAME:15012" --token-file "$T/$3.token" --ca-file "$T/root.pem" \
        --run-dir "$2/run" --config-file "$2/doc.json" --health-listen 127.0.0.1:15020
}
sidecar $C "$T/c" client $CA
sidecar $S "$T/s" app $SA
ready() { ip netns exec "$1" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15020/healthz/ready; }
for _ in $(seq 200); do
    [ "$(ready $C)" = 200 ] && [ "$(ready $S)" = 200 ] && break
    sleep 0.1
done
[ "$(ready $C)" = 200 ] && [ "$(ready $S)" = 200 ] ||
    die "sidecars not ready (client $(ready $C), server $(ready $S))"

# --- measurements ---------------------------------------------------------------------------
run_load() { # PATH-NAME [RATE]: one measurement, "req_per_s p50_us p99_us failed total"
    local url pre=() out rps total failed n rate=()
    case $1 in
    direct) url=http://$SA:8082/kb pre=(setpriv --reuid 1337 --regid 1337 --clear-groups) ;;
    mesh) url=http://$SVC/kb ;;
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
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "== HTTP/2 ($(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)): h2load -c $CONNS -m $STREAMS, ${SECONDS_} s (+1 s warm-up) per measurement, 1,024-byte answers, $ROUNDS rounds"
h2load -n 10 -c 1 "http://$SVC/kb" >/dev/null 2>&1 # the first connection's handshakes
: >"$T/direct" && : >"$T/mesh" && : >"$T/direct-rate" && : >"$T/mesh-rate"
FAILED=0
for _ in $(seq "$ROUNDS"); do
    for p in direct mesh direct-rate mesh-rate; do
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
ratio() { awk -v m="$1" -v p="$2" 'BEGIN { if (p <= 0) print "n/a"; else printf "%.2f", m / p }'; }
printf '%-40s %12s %10s %10s\n' "closed loop, median of rounds" "requests/s" "p50 us" "p99 us"
printf '%-40s %12s %10s %10s\n' "direct h2c (baseline)" "$DR" "$D50" "$D99"
printf '%-40s %12s %10s %10s\n' "through two Weft sidecars (h2, mTLS)" "$MR" "$M50" "$M99"
printf '%-40s %12s %10s %10s\n' "mesh / direct" "$(ratio "$MR" "$DR")" "$(ratio "$M50" "$D50")" "$(ratio "$M99" "$D99")"
RDR=$(col direct-rate 1) RD50=$(col direct-rate 2) RD99=$(col direct-rate 3)
RMR=$(col mesh-rate 1) RM50=$(col mesh-rate 2) RM99=$(col mesh-rate 3)
hop() { awk -v a="$1" -v d="$2" 'BEGIN { printf "%d", (a - d) / 2 }'; }
printf '%-40s %12s %10s %10s\n' "at $RATE requests/s, median of rounds" "requests/s" "p50 us" "p99 us"
printf '%-40s %12s %10s %10s\n' "direct h2c (baseline)" "$RDR" "$RD50" "$RD99"
printf '%-40s %12s %10s %10s\n' "through two Weft sidecars (h2, mTLS)" "$RMR" "$RM50" "$RM99"
printf '%-40s %12s %10s %10s\n' "mesh / direct" "$(ratio "$RMR" "$RDR")" "$(ratio "$RM50" "$RD50")" "$(ratio "$RM99" "$RD99")"
printf '%-40s %12s %10s %10s\n' "added per hop (us)" "" "$(hop "$RM50" "$RD50")" "$(hop "$RM99" "$RD99")"
for p in direct mesh direct-rate mesh-rate; do
    echo "per round, $p (req/s p50 p99 failed total): $(tr '\n' ';' <"$T/$p")"
done
echo "failed requests in all runs: $FAILED"
[ "$FAILED" -eq 0 ]
