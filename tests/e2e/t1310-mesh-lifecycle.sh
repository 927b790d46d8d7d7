#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# t1310-mesh-lifecycle.sh - the real sidecar's lifecycle and resilience on the local cluster
# (tools/cluster up: kubelite, kubelet-lite, Weft by helm; the real weft-init, weft-agent and
# HAProxy in every meshed pod; root, under flock /tmp/weft-netns.lock):
#
# classic cluster (the node reports v1.28.0: the chart injects classic sidecars)
#   classic-start   a pod whose app's first act is a call through the mesh: that first call
#                   answers 200 (the postStart `weft-agent wait` held the app until the proxy
#                   was ready; without it the call would hit a closed 15001)
#   classic-job     a Job calling the server through the mesh completes: Complete, its pod
#                   Succeeded, app and weft-proxy exited 0 (the agent left on appsExited)
#   classic-sigterm a pod deleted while its app keeps calling through the mesh for 3 s after
#                   SIGTERM: every one of those calls answers 200; the proxy then leaves by
#                   itself (appsExited) and the pod is gone long before its 30 s grace period
# native cluster (v1.33: native sidecars), weftd with 60 s certificates (ca.certTTL=60)
#   native-start    as classic-start, with the kubelet's startup-probe gate
#   native-job      as classic-job; the kubelet stops the sidecar after the app
#   traffic         a client pod calls the server's Service through the mesh every 100 ms for
#                   the rest of the suite; every request is counted (ERR or non-200: failed)
#   renewals        every proxy installs at least 3 renewed certificates under that traffic,
#                   with no failed request
#   weftd-away      certificates lengthened to 600 s (helm upgrade, weftd rolled under traffic),
#                   then weftd scaled to 0 for 60 s: no failed request; back: every running
#                   proxy synced again on weftd's /debug/proxies
#   haproxy-kill    HAProxy (master and worker) SIGKILL'd in the server pod, then in the client
#                   pod: the client is served again within 1.5 s of the kill (a request in
#                   flight at the kill may fail: its connection is gone). A request reaching
#                   the client's proxy while the server's listener is gone is refused and
#                   retried after HAProxy's turn-around of min(timeout connect, 1 s); that
#                   retry serves it only if the agent restarted HAProxy within the turn-around
#                   (else a second retry: over 2 s)
# Env: BUILD, KUBECTL_DIR, HELM; T1310_PHASES (default "classic native": which clusters to run).
set -u
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=../integration/lib.sh
. tests/integration/lib.sh
# shellcheck source=../../tools/cluster-lib.sh
. tools/cluster-lib.sh

K="$KUBECTL_DIR/kubectl.1.33"
export KUBECTL=$K HELM
NS=lc

if [ "$(id -u)" != 0 ]; then
    t_begin cluster
    t_skip "needs root: kubelet-lite runs pods in network namespaces (veth, bridge, iptables)"
    t_summary
fi

t_begin prerequisites
for bin in "$BUILD/bin/kubelite" "$BUILD/bin/kubelet-lite" "$BUILD/bin/weftd" "$BUILD/bin/testapp" \
    "$BUILD/bin/weft-agent" "$BUILD/bin/weft-init" "$K" "$HELM"; do
    [ -x "$bin" ] || t_fail "$bin is not an executable"
done
command -v haproxy >/dev/null || t_fail "haproxy is not installed"
if other=$(cluster_active); then
    t_fail "a cluster is up in $other"
fi
t_failed && t_summary
t_pass

CDIR= UP=
final() {
    [ -n "$CDIR" ] && cluster_down "$CDIR" >/dev/null 2>&1
    kl_cleanup
}
trap final EXIT
chmod 0755 "$KL_TMP" # pods run as other users and read their volumes under it

k() { "$K" "$@"; }
TESTAPP=$KL_REPO/$BUILD/bin/testapp
now_ms() { date +%s%3N; }
cluster_fail() {
    t_fail "$1"
    echo "    --- kubelet-lite log"
    tail -20 "$CDIR/kubelet-lite.log" 2>/dev/null | sed 's/^/    | /'
    return 1
}
phase() { k get pod -n "$NS" "$1" -o 'jsonpath={.status.phase}' 2>/dev/null; }
ready() { [ "$(k get pod -n "$NS" "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
gone() { ! k get pod -n "$NS" "$1" >/dev/null 2>&1; }
pods_of() { k get pods -n "$NS" -l "$1" -o 'jsonpath={.items[*].metadata.name}'; }
proxy_log() { k logs -n "$NS" "$1" -c weft-proxy 2>/dev/null; }

# up NAME [tools/cluster up args]: a cluster in $KL_TMP/NAME; KUBECONFIG and CDIR follow it
up() {
    CDIR=$KL_TMP/$1
    shift
    run tools/cluster up --dir "$CDIR" "$@"
    [ "$RC" = 0 ] || { t_fail "tools/cluster up: exit $RC: $OUT"; return 1; }
    export KUBECONFIG=$CDIR/kubeconfig
    UP=1
}

down() {
    run tools/cluster down --dir "$CDIR"
    [ "$RC" = 0 ] || { t_fail "tools/cluster down: exit $RC: $OUT"; return 1; }
    CDIR=
    UP=
}

# The meshed namespace and its server: a Deployment of testapp (1 replica) behind Service server.
mesh_server() {
    k apply -f - >/dev/null <<EOF || { t_fail "cannot create the server"; return 1; }
apiVersion: v1
kind: Namespace
metadata: {name: $NS, labels: {weft.dev/inject: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: $NS}
spec: {selector: {app: server}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: server, namespace: $NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: server}}
  template:
    metadata: {labels: {app: server}}
    spec:
      containers:
      - name: app
        image: weft/testapp
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
EOF
    wait_for 90 server_ready || { cluster_fail "the meshed server is not Ready"; return 1; }
    SERVER=$(pods_of app=server)
}
server_ready() {
    local p
    p=$(pods_of app=server)
    [ -n "$p" ] && [ "${p#* }" = "$p" ] && ready "$p"
}

# first_call: a pod whose app calls the server through the mesh as its very first act
case_start() {
    k apply -f - >/dev/null <<EOF || { t_fail "cannot create the pod"; return 1; }
apiVersion: v1
kind: Pod
metadata: {name: first-$1, namespace: $NS}
spec:
  containers:
  - name: app
    image: weft/testapp
    command: [/bin/sh, -c, "$TESTAPP get http://server.$NS/ -n 1 -t 3000 -s; sleep 3600"]
EOF
    wait_for 60 ready "first-$1" || { cluster_fail "first-$1 is not Ready"; return 1; }
    wait_for 10 sh -c "$K logs -n $NS first-$1 -c app | grep -q ." || { t_fail "first-$1 printed nothing"; return 1; }
    assert_match "$(k logs -n "$NS" "first-$1" -c app)" "^[0-9]+ [0-9]+ 200 $SERVER\$" "the app's first call, through the mesh" || return 1
    assert_contains "$(proxy_log "first-$1")" 'msg="configuration applied' "the proxy was configured" || return 1
    ok "delete" "$K" delete pod -n "$NS" "first-$1" --wait=false
}

# case_job MODE: a Job whose app calls the server three times through the mesh and fails unless
# every answer is 200
case_job() {
    local pod t0 st
    t0=$(now_ms)
    k apply -f - >/dev/null <<EOF || { t_fail "cannot create the Job"; return 1; }
apiVersion: batch/v1
kind: Job
metadata: {name: batch-$1, namespace: $NS}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {job: batch-$1}}
    spec:
      restartPolicy: Never
      containers:
      - name: app
        image: weft/testapp
        command: [/bin/sh, -c, "out=\$($TESTAPP get http://server.$NS/ -n 3 -t 3000); echo \"\$out\"; [ \"\$(echo \"\$out\" | grep -c '^200 ')\" = 3 ]"]
EOF
    k wait -n "$NS" --for=condition=complete "job/batch-$1" --timeout=90s >/dev/null 2>&1 || {
        pod=$(pods_of "job=batch-$1")
        cluster_fail "batch-$1 is not complete: $(k get job -n "$NS" "batch-$1" -o 'jsonpath={.status}'); pod $pod: $(k get pod -n "$NS" "$pod" -o 'jsonpath={.status.phase} {.status.containerStatuses}' 2>&1); proxy: $(proxy_log "$pod" | grep -v level=debug | tail -5)"
        return 1
    }
    echo "    $1 mode: the Job completed $(($(now_ms) - t0)) ms after its creation"
    pod=$(pods_of "job=batch-$1")
    echo "    containers (name restarts started finished): $(k get pod -n "$NS" "$pod" -o 'jsonpath={range .status.initContainerStatuses[*]}{.name} {.restartCount} {.state.terminated.startedAt} {.state.terminated.finishedAt}; {end}{range .status.containerStatuses[*]}{.name} {.restartCount} {.state.terminated.startedAt} {.state.terminated.finishedAt}; {end}') created $(k get pod -n "$NS" "$pod" -o 'jsonpath={.metadata.creationTimestamp}')"
    assert_eq "$(phase "$pod")" Succeeded "the Job's pod" || return 1
    assert_eq "$(k logs -n "$NS" "$pod" -c app | grep -c '^200 ')" 3 "the app's calls through the mesh" || return 1
    st=$(k get pod -n "$NS" "$pod" -o 'jsonpath={range .status.containerStatuses[*]}{.name}={.state.terminated.exitCode} {end}{range .status.initContainerStatuses[*]}{.name}={.state.terminated.exitCode} {end}')
    assert_contains "$st" "app=0" "the app's exit" || return 1
    assert_contains "$st" "weft-proxy=0" "the proxy's exit" || return 1
    if [ "$1" = classic ]; then
        assert_contains "$(proxy_log "$pod")" 'why=WEFT_EXIT_ON_COMPLETION' "the agent left on weftd's appsExited" || return 1
    fi
}

# A pod whose app, once SIGTERM'd, goes on calling the server through the mesh 20 times (about
# 3 s) before it exits. The kubelet signals the container's main process (the shell) only.
case_sigterm() {
    local t0 t1 after n_ok
    k apply -f - >/dev/null <<EOF || { t_fail "cannot create the pod"; return 1; }
apiVersion: v1
kind: Pod
metadata: {name: leaver, namespace: $NS}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: weft/testapp
    command:
    - /bin/sh
    - -c
    - |
      term=0; trap 'term=1; echo TERM' TERM
      call() { $TESTAPP get http://server.$NS/ -n 1 -t 2000 -s; }
      while [ \$term = 0 ]; do call; sleep 0.2; done
      i=0; while [ \$i -lt 20 ]; do call; i=\$((i + 1)); sleep 0.1; done
      echo bye
EOF
    wait_for 60 ready leaver || { cluster_fail "leaver is not Ready"; return 1; }
    k logs -f -n "$NS" leaver -c app >"$KL_TMP/leaver.app" 2>&1 &
    bg_track $!
    k logs -f -n "$NS" leaver -c weft-proxy >"$KL_TMP/leaver.proxy" 2>&1 &
    bg_track $!
    sleep 1
    t0=$(now_ms)
    ok "delete" "$K" delete pod -n "$NS" leaver --wait=false || return 1
    wait_for 40 gone leaver || { cluster_fail "leaver is still there"; return 1; }
    t1=$(now_ms)
    after=$(sed -n '/^TERM$/,$p' "$KL_TMP/leaver.app" | grep -E '^[0-9]+ ')
    n_ok=$(printf '%s\n' "$after" | grep -c '^[0-9]* [0-9]* 200 ')
    echo "    after SIGTERM: $(printf '%s\n' "$after" | grep -c .) calls, $n_ok answered 200; pod gone $((t1 - t0)) ms after the delete"
    grep -q '^bye$' "$KL_TMP/leaver.app" || { t_fail "the app did not finish: $(tail -3 "$KL_TMP/leaver.app")"; return 1; }
    assert_eq "$(printf '%s\n' "$after" | grep -c .)" 20 "calls after SIGTERM" || return 1
    assert_eq "$n_ok" 20 "calls after SIGTERM answered 200 through the mesh: $(printf '%s\n' "$after" | grep -v ' 200 ' | head -3)" || return 1
    assert_contains "$(cat "$KL_TMP/leaver.proxy")" 'msg="SIGTERM: serving on until the app containers have exited' "the proxy held on" || return 1
    assert_contains "$(cat "$KL_TMP/leaver.proxy")" 'reason="app exited 0; the pod is being deleted" why=SIGTERM' "the proxy left on appsExited" || return 1
    [ $((t1 - t0)) -lt 20000 ] || { t_fail "the pod took $((t1 - t0)) ms to go: the proxy waited for the grace period"; return 1; }
}

# --- traffic -------------------------------------------------------------------------------------

TRAFFIC=$KL_TMP/traffic.log
traffic_start() {
    k apply -f - >/dev/null <<EOF || { t_fail "cannot create the client"; return 1; }
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $NS, labels: {app: client}}
spec:
  containers:
  - name: app
    image: weft/testapp
    command: [$TESTAPP, get, "http://server.$NS/", -n, "100000", -i, "100", -t, "3000", -s]
EOF
    wait_for 60 ready client || { cluster_fail "the client is not Ready"; return 1; }
    k logs -f -n "$NS" client -c app >"$TRAFFIC" 2>&1 &
    bg_track $!
    wait_for 10 sh -c "grep -q ' 200 ' '$TRAFFIC'" || { t_fail "no answer yet: $(tail -3 "$TRAFFIC")"; return 1; }
    echo "    first answer: $(grep -m1 ' 200 ' "$TRAFFIC")"
}

# The client's lines: "<start ms> <duration ms> <status> <body>" (testapp get -s).
# counts FROM_MS [TO_MS]: "<requests> <failed>" started in [FROM, TO)
counts() {
    awk -v a="$1" -v b="${2:-99999999999999}" '$1 ~ /^[0-9]+$/ && $1 >= a && $1 < b { n++; if ($3 != "200") f++ } END { printf "%d %d\n", n, f }' "$TRAFFIC"
}
failures() { # FROM TO: the failed lines
    awk -v a="$1" -v b="${2:-99999999999999}" '$1 ~ /^[0-9]+$/ && $1 >= a && $1 < b && $3 != "200"' "$TRAFFIC" | head -5
}
no_failures() { # WHAT FROM TO
    local c
    c=$(counts "$2" "$3")
    echo "    $1: ${c% *} requests, ${c#* } failed"
    [ "${c% *}" -gt 0 ] || { t_fail "$1: no requests counted"; return 1; }
    [ "${c#* }" = 0 ] || { t_fail "$1: ${c#* } failed requests: $(failures "$2" "$3")"; return 1; }
}

installs() { proxy_log "$1" | grep -c 'msg="certificate installed"'; }
renewed3() {
    local p
    for p in "$SERVER" client; do
        [ "$(installs "$p")" -ge 4 ] || return 1
    done
}

case_renewals() {
    local t0 t1 p
    t0=$(now_ms)
    wait_for 240 renewed3 || { t_fail "not 3 renewals in every proxy: $SERVER $(installs "$SERVER"), client $(installs client)"; return 1; }
    t1=$(now_ms)
    for p in "$SERVER" client; do
        echo "    $p: $(proxy_log "$p" | grep 'msg="certificate installed"' | sed -E 's/.*(expires_in_s=[0-9]+ renew_in_ms=[0-9]+).*/\1/' | tr '\n' ';')"
    done
    no_failures "under renewals ($(((t1 - t0) / 1000)) s)" "$t0" "$t1"
}

# weftd's admin endpoint, with the kubeconfig's token
wd_debug() {
    local ip tok
    ip=$(k get pods -n weft-system -l app.kubernetes.io/name=weftd -o 'jsonpath={.items[0].status.podIP}')
    tok=$(sed -n 's/^ *token: *//p' "$KUBECONFIG" | head -1)
    curl -sf --max-time 5 -H "Authorization: Bearer $tok" "http://$ip:15014$1"
}
all_synced() {
    local p s
    for p in "$SERVER" client; do
        s=$(wd_debug "/debug/proxies/$NS/$p" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sync"])' 2>/dev/null)
        [ "$s" = synced ] || return 1
    done
}
long_certs() { # every proxy's last certificate lives about 600 s
    local p e
    for p in "$SERVER" client; do
        e=$(proxy_log "$p" | grep 'msg="certificate installed"' | tail -1 | sed -E 's/.*expires_in_s=([0-9]+).*/\1/')
        [ "${e:-0}" -gt 300 ] || return 1
    done
}
weftd_pods() { k get pods -n weft-system -l app.kubernetes.io/name=weftd -o 'jsonpath={.items[*].metadata.name}'; }

case_weftd_away() {
    local t0 t1 t2
    t0=$(now_ms)
    run env KUBECONFIG="$KUBECONFIG" "$HELM" upgrade weft charts/weft -n weft-system --reuse-values --set ca.certTTL=600
    [ "$RC" = 0 ] || { t_fail "helm upgrade: $OUT"; return 1; }
    wait_for 60 _cluster_weftd_ready "$K" "$CDIR" || { cluster_fail "weftd not ready after the upgrade"; return 1; }
    wait_for 60 long_certs || { t_fail "the proxies did not get 600 s certificates"; return 1; }
    wait_for 30 all_synced || { t_fail "not synced after the upgrade: $(wd_debug /debug/proxies)"; return 1; }
    t1=$(now_ms)
    no_failures "helm upgrade (weftd rolled) and the first 600 s certificates" "$t0" "$t1" || return 1
    ok "weftd to 0" "$K" scale deploy weftd -n weft-system --replicas=0 || return 1
    wait_for 30 sh -c "[ -z \"\$($K get pods -n weft-system -l app.kubernetes.io/name=weftd -o name)\" ]" ||
        { t_fail "weftd's pod did not go"; return 1; }
    t1=$(now_ms)
    sleep 60
    assert_eq "$(weftd_pods)" "" "no weftd for 60 s" || return 1
    ok "weftd back" "$K" scale deploy weftd -n weft-system --replicas=1 || return 1
    wait_for 60 _cluster_weftd_ready "$K" "$CDIR" || { cluster_fail "weftd not ready again"; return 1; }
    # while nothing listens an agent retries every 1-2 s (an attempt without a TCP connection
    # does not climb to the 30 s cap, docs/config-stream.md), so once weftd is ready the agents
    # are back within seconds (7 s measured, weftd's start included): 20 s bounds it
    wait_for 20 all_synced || { t_fail "not every proxy synced again: $(wd_debug /debug/proxies)"; return 1; }
    t2=$(now_ms)
    echo "    every proxy synced $(((t2 - t1) / 1000 - 60)) s after weftd's return was ordered"
    no_failures "weftd away 60 s, then back" "$t1" "$t2"
}

# haproxy_kill POD: SIGKILL the HAProxy master and worker of POD's weft-proxy; prints the time
haproxy_kill() {
    local agent ns master workers
    ns=$(k get pod -n "$NS" "$1" -o 'jsonpath={.status.podIP}')
    for agent in $(pgrep -x weft-agent); do
        # the agent whose network namespace holds the pod's IP
        nsenter -t "$agent" -n ip -4 -o addr show 2>/dev/null | grep -q " $ns/" || continue
        master=$(pgrep -P "$agent" -x haproxy)
        [ -n "$master" ] || continue
        workers=$(pgrep -P "$master" -x haproxy | tr '\n' ' ')
        now_ms
        # shellcheck disable=SC2086
        kill -KILL "$master" $workers
        return 0
    done
    return 1
}

# After a kill at T0: the first request started after it that answered 200, as "<start> <end>"
# (its end is when service was observed again; a request can wait in the client's proxy)
back_after() {
    awk -v a="$1" '$1 ~ /^[0-9]+$/ && $1 >= a && $3 == "200" { printf "%.0f %.0f\n", $1, $1 + $2; exit }' "$TRAFFIC"
}

case_haproxy_kill() {
    local p t0 back n slow
    for p in "$SERVER" client; do
        sleep 2
        t0=$(haproxy_kill "$p") || { t_fail "no HAProxy found in $p"; return 1; }
        wait_for 10 sh -c "[ -n \"\$(awk -v a=$t0 '\$1 >= a && \$3 == \"200\"' '$TRAFFIC')\" ]" ||
            { t_fail "$p: no answer after the kill: $(tail -3 "$TRAFFIC")"; return 1; }
        back=$(back_after "$t0")
        n=$(counts "$t0" "${back% *}")
        slow=$(awk -v a="$((t0 - 1000))" -v b="$((t0 + 2000))" '$1 ~ /^[0-9]+$/ && $1 >= a && $1 < b && $2 > m { m = $2 } END { print m + 0 }' "$TRAFFIC")
        echo "    HAProxy killed in $p: a request started $((${back% *} - t0)) ms after the kill answered 200 at +$((${back#* } - t0)) ms (requests started before it: ${n% *}, failed: ${n#* }; slowest request from 1 s before to 2 s after: $slow ms)"
        # 1 s: the client proxy's retry turn-around, which a request started in the outage waits
        [ $((${back#* } - t0)) -lt 1500 ] || { t_fail "$p: $((${back#* } - t0)) ms until the client was served again"; return 1; }
        assert_contains "$(proxy_log "$p")" "HAProxy restarted with the last good configuration" "$p's agent restarted it" || return 1
    done
}

traffic_total() {
    local c
    c=$(counts 0)
    echo "    traffic in all: ${c% *} requests, ${c#* } failed (the HAProxy kills included)"
}

PHASES=" ${T1310_PHASES:-classic native} "
[[ $PHASES == *" classic "* ]] && t_run classic-up up classic --kubelet-version v1.28.0 -- --set replicas=1
if [ -n "$UP" ]; then
    t_run classic-server mesh_server
    t_run classic-start case_start classic
    t_run classic-job case_job classic
    t_run classic-sigterm case_sigterm
    t_run classic-down down
fi
[ -n "$CDIR" ] && cluster_down "$CDIR" >/dev/null 2>&1 && CDIR= UP=
if [ -z "$CDIR" ] && [[ $PHASES == *" native "* ]]; then
    t_run native-up up native -- --set replicas=1 --set ca.certTTL=60
fi
if [ -n "$UP" ]; then
    t_run native-server mesh_server
    t_run native-start case_start native
    t_run native-job case_job native
    t_run traffic traffic_start
    t_run renewals case_renewals
    t_run weftd-away case_weftd_away
    t_run haproxy-kill case_haproxy_kill
    traffic_total
    t_run native-down down
fi
t_summary
