# shellcheck shell=bash
# bench/lib.sh - the setup bench/mesh_bench.sh and bench/h2_bench.sh share (sourced, not run):
# "pods" as network namespaces joined by veths, kubelite and weftd issuing certificates, weft-init's
# rules and weft-agent (UID 1337) with a --config-file document in each meshed pod.
#
#   . "$REPO/bench/lib.sh"
#   bench_start NAME LOCK SCRIPT ARGS...   checks (root, the build), re-runs SCRIPT ARGS under
#                                          flock LOCK (once), makes $T, cleans up on exit
#   bench_netns NS                         a fresh namespace (lo up), removed on exit
#   bench_link NS1 ADDR1 VETH1 NS2 ADDR2 VETH2    a veth pair, /24 addresses, default routes
#   bench_hosts NS...                      weftd's name (weftd.weft-system.svc) -> $BENCH_CP_ADDR
#   bench_bg NS CMD...                     a background process in NS ($BG; output $T/log.<n>)
#   bench_wait_port NS PORT                until something listens on PORT in NS (10 s)
#   bench_control_plane NS ADDR            kubelite and weftd in NS (weftd's certificates on
#                                          ADDR:15012); $T/root.pem, $T/client.token, $T/app.token
#   bench_doc POD IP SA OUTBOUND INBOUND   a configuration document (docs/proxy-config.md)
#   bench_sidecar NS DIR SA IP             weft-agent as UID 1337 with DIR/doc.json ($BG)
#   bench_wait_ready NS...                 until every sidecar's /healthz/ready answers 200
#   bench_die MESSAGE                      the message, the tail of every log, exit 1
#   bench_median / bench_ratio A B / bench_hop PATH DIRECT
#
# Names: namespaces wfb-*, veths wfb*, addresses 10.251.0.0/16 and Service addresses 10.96.251.x,
# each bench its own (mesh_bench: wfb-c, wfb-s, wfb-pc, wfb-ps, 10.251.9.x and 10.251.11.x;
# h2_bench: wfb-hc, wfb-hs, 10.251.10.x; flip_bench.sh, on tests/e2e/lib.sh: wfb-f*, 10.251.20.x);
# kubelet-lite (kl-*, kl0) and the e2e suites (wfe-*, 10.250.x) use none of them, so a bench
# needs its own lock only, not /tmp/weft-netns.lock.
BENCH_CP_NAME=weftd.weft-system.svc
BENCH_K=${KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}/kubectl.1.33
BENCH_AGENT=$REPO/$BUILD/bin/weft-agent
BENCH_INIT=$REPO/$BUILD/bin/weft-init
BENCH_KUBELITE=$REPO/$BUILD/bin/kubelite
BENCH_WEFTD=$REPO/$BUILD/bin/weftd
BENCH_NS=()
PIDS=()

bench_start() { # NAME LOCK SCRIPT ARGS...
    local b
    BENCH_NAME=$1
    for b in "$BENCH_AGENT" "$BENCH_INIT" "$BENCH_KUBELITE" "$BENCH_WEFTD" "$BENCH_K"; do
        [ -x "$b" ] || { echo "$BENCH_NAME: $b is missing (make all)" >&2; exit 1; }
    done
    command -v haproxy >/dev/null || { echo "$BENCH_NAME: haproxy is not installed (make deps)" >&2; exit 1; }
    [ "$(id -u)" = 0 ] || { echo "$BENCH_NAME: needs root (network namespaces, iptables)" >&2; exit 1; }
    if [ -z "${WEFT_BENCH_LOCKED:-}" ]; then
        exec env WEFT_BENCH_LOCKED=1 flock "$2" bash "${@:3}"
    fi
    T=$(mktemp -d "/tmp/weft-$BENCH_NAME.XXXXXX")
    chmod 755 "$T"
    trap bench_cleanup EXIT
    trap 'exit 1' INT TERM
}

bench_cleanup() {
    local p ns
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for ns in "${BENCH_NS[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$ns" 2>/dev/null
        rm -rf "/etc/netns/$ns"
    done
    rm -rf "$T"
}

bench_die() {
    local f
    echo "$BENCH_NAME: $*" >&2
    for f in "$T"/log.*; do
        [ -s "$f" ] || continue
        echo "--- $f ($(head -c 300 "$T/cmd.${f##*.}" 2>/dev/null))" >&2
        tail -n 8 "$f" | cut -c1-300 >&2
    done
    exit 1
}

bench_netns() { # NS
    case $1 in
    wfb-*) ;;
    *) bench_die "bench_netns $1: bench namespaces are named wfb-*" ;;
    esac
    ip netns del "$1" 2>/dev/null
    ip netns add "$1" || bench_die "namespace $1"
    BENCH_NS+=("$1")
    ip -n "$1" link set lo up
}

bench_link() { # NS1 ADDR1 VETH1 NS2 ADDR2 VETH2
    ip link add "$3" netns "$1" type veth peer name "$6" netns "$4" || bench_die "veth $3"
    ip -n "$1" addr add "$2/24" dev "$3" && ip -n "$4" addr add "$5/24" dev "$6" &&
        ip -n "$1" link set "$3" up && ip -n "$4" link set "$6" up &&
        ip -n "$1" route add default dev "$3" && ip -n "$4" route add default dev "$6" ||
        bench_die "links $3-$6"
}

# weftd's serving certificate names weftd.weft-system.svc: that name resolves to the control
# plane's pod (ip netns exec mounts /etc/netns/<ns>/hosts over /etc/hosts)
bench_hosts() { # NS...
    local ns
    for ns in "$@"; do
        mkdir -p "/etc/netns/$ns" &&
            printf '127.0.0.1 localhost\n%s %s\n' "$BENCH_CP_ADDR" $BENCH_CP_NAME >"/etc/netns/$ns/hosts"
    done
}

bench_bg() { # NS CMD...
    local ns=$1
    shift
    echo "$ns $*" >"$T/cmd.${#PIDS[@]}"
    ip netns exec "$ns" "$@" >"$T/log.${#PIDS[@]}" 2>&1 &
    PIDS+=($!)
    BG=$!
}

bench_wait_port() { # NS PORT
    local i
    for i in $(seq 100); do
        ip netns exec "$1" ss -ltn | grep -q ":$2 " && return 0
        sleep 0.1
    done
    return 1
}

bench_kc() { ip netns exec "$BENCH_CP_NS" env KUBECONFIG="$T/kubeconfig" "$BENCH_K" "$@"; }

bench_control_plane() { # NS ADDR
    local sa
    BENCH_CP_NS=$1
    bench_bg "$1" "$BENCH_KUBELITE" --listen 127.0.0.1:0 --kubeconfig-out "$T/kubeconfig" \
        --openapi-dir "$REPO/tests/kubelite/openapi"
    for _ in $(seq 100); do [ -s "$T/kubeconfig" ] && break; sleep 0.1; done
    [ -s "$T/kubeconfig" ] || bench_die "kubelite did not start"
    bench_kc create namespace weft-system >/dev/null && bench_kc create namespace bench >/dev/null &&
        bench_kc create serviceaccount -n bench client >/dev/null &&
        bench_kc create serviceaccount -n bench app >/dev/null || bench_die "namespaces and service accounts"
    bench_bg "$1" "$BENCH_WEFTD" --kubeconfig "$T/kubeconfig" --namespace weft-system --identity bench \
        --admin-listen 127.0.0.1:18090 --certs-listen "$2:15012" --stream-listen 127.0.0.1:18013 \
        --webhook-listen 127.0.0.1:18444 --cert-ttl 3600
    for _ in $(seq 200); do
        ip netns exec "$1" curl -s http://127.0.0.1:18090/readyz 2>/dev/null | grep -q '^ca loaded: yes' && break
        sleep 0.1
    done
    bench_kc get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$T/root.pem" ||
        bench_die "no root"
    for sa in client app; do
        bench_kc create token -n bench $sa --audience weft --duration 1h >"$T/$sa.token" || bench_die "token"
    done
    chmod 644 "$T"/*.token "$T/root.pem"
}

bench_doc() { # POD IP SA OUTBOUND INBOUND
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

bench_sidecar() { # NS DIR SA IP
    bench_bg "$1" env POD_IP="$4" setpriv --reuid 1337 --regid 1337 --clear-groups "$BENCH_AGENT" \
        --control-plane "$BENCH_CP_NAME:15012" --token-file "$T/$3.token" --ca-file "$T/root.pem" \
        --run-dir "$2/run" --config-file "$2/doc.json" --health-listen 127.0.0.1:15020
}

bench_ready() { ip netns exec "$1" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15020/healthz/ready; }

bench_wait_ready() { # NS...
    local ns ok
    for _ in $(seq 200); do
        ok=1
        for ns in "$@"; do [ "$(bench_ready "$ns")" = 200 ] || ok=0; done
        [ $ok = 1 ] && return 0
        sleep 0.1
    done
    for ns in "$@"; do echo "$ns: $(bench_ready "$ns")"; done | tr '\n' ' ' >"$T/not-ready"
    bench_die "sidecars not ready: $(cat "$T/not-ready")"
}

bench_median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# A / B; n/a where either is not above 0 (an added latency below direct's has no ratio)
bench_ratio() { awk -v m="$1" -v p="$2" 'BEGIN { if (p <= 0 || m < 0) print "n/a"; else printf "%.2f", m / p }'; }
# added per hop: two proxies on each path
bench_hop() { awk -v a="$1" -v d="$2" 'BEGIN { printf "%d", (a - d) / 2 }'; }
