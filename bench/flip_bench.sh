#!/usr/bin/env bash
# bench/flip_bench.sh - a TrafficSplit flip, from `kubectl apply` returning to the moment every
# client of a 50-pod local mesh observes it (issue 15, "Performance"; BENCHMARKS.md, "Split flip:
# apply to every client observing"), against the floor: the time kubelite takes to deliver the
# same change to a plain watch client, measured in the same run for the same applies.
#
#   bench/flip_bench.sh [--pods 50] [--flips 30] [--interval-ms 10] [--per-flip]
#
# FLIP_HOLD=S keeps the mesh up S seconds after a failure, for a look at it (kill the sleep to
# end it early); FLIP_KEEP=DIR copies the agents' and weftd's logs to DIR at the end.
#
# Needs root (network namespaces, iptables), haproxy and a build (make all). Holds
# /tmp/weft-e2e-flip.lock while it runs; its names cannot collide with kubelet-lite's (kl-*, kl0),
# the e2e suites' (wfe-*, 10.250.x) or the other benches' (wfb-c, wfb-s, wfb-h*, 10.251.9-10.x):
# a hub namespace wfb-fh (bridge wfbr0, 10.251.20.254) runs kubelite, weftd (default options) and
# the backends (testapp, not meshed: flip-a on 10.251.20.201 behind Service web-a, flip-b on .202
# behind web-b, "apex" on .203 behind web itself, which no answer may come from); the pods
# wfb-f1..wfb-fN (10.251.20.1..N, Pods c1..cN in namespace flip) are set up with tests/e2e/lib.sh's
# mesh_* functions: weft-init's rules and weft-agent (UID 1337) with HAProxy on weftd's config
# stream. bench/flip_driver.py then runs bench/flip_client in every pod (GET http://web/ through
# the sidecar every INTERVAL ms on one keep-alive connection) and flips the split web between
# 100/0 and 0/100 with the real kubectl (kubectl.1.33 from KUBECTL_DIR, as the tests use).
# Everything is removed on exit. Exit 1 (with the reason) when a request fails, an answer comes
# from neither side, or a client does not observe a flip within 10 s.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
BUILD=${BUILD:-build}
PODS=50 FLIPS=30 INTERVAL=10 PER_FLIP=
ARGS=("$@")
while [ $# -gt 0 ]; do
    case $1 in
    --pods) PODS=$2; shift 2 ;;
    --flips) FLIPS=$2; shift 2 ;;
    --interval-ms) INTERVAL=$2; shift 2 ;;
    --per-flip) PER_FLIP=--per-flip; shift ;;
    *) echo "usage: bench/flip_bench.sh [--pods N] [--flips N] [--interval-ms MS] [--per-flip]" >&2; exit 2 ;;
    esac
done
case $PODS in
[1-9] | [1-9][0-9] | 1[0-9][0-9] | 200) ;;
*) echo "flip_bench: --pods $PODS: 1 to 200" >&2; exit 2 ;;
esac
KUBECTL=${KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}/kubectl.1.33
for b in "$BUILD/bench/flip_client" "$BUILD/bin/testapp" "$BUILD/bin/weft-agent" "$BUILD/bin/weft-init" \
    "$BUILD/bin/weftd" "$BUILD/bin/kubelite" "$KUBECTL"; do
    [ -x "$b" ] || { echo "flip_bench: $b is missing (make all)" >&2; exit 1; }
done
command -v haproxy >/dev/null || { echo "flip_bench: haproxy is not installed (make deps)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "flip_bench: needs root (network namespaces, iptables)" >&2; exit 1; }
if [ -z "${WEFT_FLIP_LOCKED:-}" ]; then
    exec env WEFT_FLIP_LOCKED=1 flock /tmp/weft-e2e-flip.lock bash "$REPO/bench/flip_bench.sh" "${ARGS[@]}"
fi

export E2E_PREFIX=wfb
# shellcheck source=../tests/e2e/lib.sh
. "$REPO/tests/e2e/lib.sh"
MESH_D=$KL_TMP/flip
HUB=wfb-fh HUB_IP=10.251.20.254 NS=flip SVC=10.96.251.20

flip_cleanup() {
    [ -n "${FLIP_KEEP:-}" ] && mkdir -p "$FLIP_KEEP" && cp "$MESH_D"/*.log "${MESH_WEFTD_LOG:-/dev/null}" "$FLIP_KEEP"/ 2>/dev/null
    local ns p
    exec 2>/dev/null # bash's notes on the jobs killed below
    # the sidecars' HAProxies and anything else still running in our namespaces
    for ns in "${E2E_NS[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
    done
    for _ in $(seq 30); do
        for ns in "${E2E_NS[@]}"; do
            [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && break
        done
        [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] || break
        sleep 0.1
    done
    for ns in "${E2E_NS[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    done
    e2e_cleanup
}
trap flip_cleanup EXIT
die() {
    echo "flip_bench: $*" >&2
    # FLIP_HOLD=S: keep the mesh up S seconds for a look (logs in $MESH_D) before removing it
    [ -n "${FLIP_HOLD:-}" ] && echo "flip_bench: holding $FLIP_HOLD s (logs: $MESH_D)" >&2 && sleep "$FLIP_HOLD"
    exit 1
}

echo "== split flip ($(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)): $PODS meshed pods, $FLIPS flips, a request every $INTERVAL ms per client"
t_setup=$SECONDS
mesh_hub $HUB $HUB_IP || die "$MESH_ERR"
mesh_control_plane $HUB $HUB_IP || die "$MESH_ERR"
for b in flip-a:201 flip-b:202 apex:203; do
    ip -n $HUB addr add "10.251.20.${b##*:}/24" dev wfbr0 || die "address 10.251.20.${b##*:}"
    e2e_bg $HUB env PORT=8080 ADDR="10.251.20.${b##*:}" POD_NAME="${b%%:*}" "$REPO/$BUILD/bin/testapp"
    wait_for 10 grep -q listening "$E2E_BG_LOG" || die "backend ${b%%:*}: $(cat "$E2E_BG_LOG")"
done
{
    mesh_ns_yaml $NS client
    for s in web:20:203 web-a:21:201 web-b:22:202; do
        IFS=: read -r name ip ep <<<"$s"
        printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\nspec: {clusterIP: 10.96.251.%s, ports: [{port: 80, name: http, targetPort: 8080}]}\n' \
            "$name" $NS "$ip"
        printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: %s-x, namespace: %s, labels: {kubernetes.io/service-name: %s}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints: [{addresses: [10.251.20.%s], conditions: {ready: true}}]\n' \
            "$name" $NS "$name" "$ep"
    done
    printf -- '---\napiVersion: mesh.weft.dev/v1alpha1\nkind: TrafficSplit\nmetadata: {name: web, namespace: %s}\nspec: {service: web, backends: [{service: web-a, weight: 100}, {service: web-b, weight: 0}]}\n' $NS
    for i in $(seq "$PODS"); do
        mesh_pod_yaml "c$i" $NS client "{app: client}"
    done
} >"$MESH_D/app.yaml"
run "${MESH_K[@]}" apply -f "$MESH_D/app.yaml"
[ "$RC" = 0 ] || die "objects: $OUT"
pods=() nss=() synced=()
for i in $(seq "$PODS"); do
    e2e_netns "wfb-f$i" && mesh_attach "wfb-f$i" "10.251.20.$i" && mesh_pod_up "c$i" $NS "10.251.20.$i" &&
        mesh_agent "wfb-f$i" "c$i" "10.251.20.$i" -- ${FLIP_AGENT_OPTS:-} || die "pod c$i: $MESH_ERR"
    pods+=("wfb-f$i:c$i") nss+=("wfb-f$i") synced+=("$NS/c$i")
done
mesh_ready 180 "${nss[@]}" || die "$MESH_ERR"
mesh_synced 60 "${synced[@]}" || die "$MESH_ERR"
echo "  setup: $((SECONDS - t_setup)) s; every sidecar ready and synced; memory used $(free -m | awk '/^Mem:/ {print $3}') MB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
ip netns exec $HUB "$E2E_PY" "$REPO/bench/flip_driver.py" --kubeconfig "$MESH_D/kubeconfig" \
    --kubectl "$KUBECTL" --client "$REPO/$BUILD/bench/flip_client" --svc $SVC \
    --pods "$(IFS=,; echo "${pods[*]}")" --agent-logs "$MESH_D" --namespace $NS --hub $HUB --flips "$FLIPS" \
    --interval-ms "$INTERVAL" $PER_FLIP | tee "$MESH_D/driver.out"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || die "the driver failed (exit $rc)"
