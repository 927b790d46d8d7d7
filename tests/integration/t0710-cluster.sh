#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# kubelite + kubelet-lite as a cluster, driven by real helm v4 and kubectl 1.33 (root only):
#   helm-install     helm install --wait of tests/fixtures/charts/kl-app (a Deployment of
#                    weft/testapp, 2 replicas, readiness on /healthz, a Service, a ServiceAccount):
#                    the pods really run (processes, network namespaces) and are Ready
#   rollout-status   kubectl rollout status accepts the Deployment
#   service          the ClusterIP answers from the host, from both pods
#   token            the projected ServiceAccount token passes TokenReview for its audience (and
#                    is what the container sees at its mountPath), not for another
#   helm-upgrade     --set greeting=...: a new ReplicaSet whose pods are Ready with the new env,
#                    the old pods and processes gone
#   gc-background    deleting a Deployment removes its ReplicaSets, pods and processes
#   gc-foreground    --cascade=foreground: the Deployment (and its ReplicaSet) wait with the
#                    foregroundDeletion finalizer until the pods are gone, then go
#   gc-orphan        --cascade=orphan: the Deployment goes, its ReplicaSet and pods keep running
#                    without the ownerReference
#   namespace-delete deleting a namespace removes its pods (processes, netns) and objects
#   job              a Job whose pod exits 0 is Complete (succeeded 1, its pod Succeeded, owned
#                    by the Job, labelled job-name); one whose pods exit 3 with backoffLimit 1 is
#                    Failed (BackoffLimitExceeded) after two pods
#   helm-uninstall   helm uninstall --wait removes the release's processes and netns
#   shutdown         kubelet-lite exits 0; no kl-* netns, testapp or kubelet-lite process left
# Env: BUILD, KUBELITE, KUBELET_LITE, TESTAPP, KUBECTL_DIR, HELM.
set -u
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=SCRIPTDIR/lib.sh
. tests/integration/lib.sh

abs() { case $1 in /*) echo "$1" ;; *) echo "$KL_REPO/$1" ;; esac }
KUBELET_LITE=$(abs "${KUBELET_LITE:-$BUILD/bin/kubelet-lite}")
TESTAPP=$(abs "${TESTAPP:-$BUILD/bin/testapp}")
K="$KUBECTL_DIR/kubectl.1.33"
CHART=$KL_REPO/tests/fixtures/charts/kl-app
KLT_LOG=$KL_TMP/kubelet-lite.log
KLT_ROOT=$KL_TMP/kubelet-root
KLT_PID=
NS=kl-app
REL=app
DEP=$REL-app

if [ "$(id -u)" != 0 ]; then
    t_begin cluster
    t_skip "needs root: kubelet-lite runs pods in network namespaces (veth, bridge, iptables)"
    t_summary
fi

t_begin prerequisites
for bin in "$KUBELITE" "$KUBELET_LITE" "$TESTAPP" "$K" "$HELM" /usr/sbin/ip /usr/sbin/iptables; do
    [ -x "$bin" ] || t_fail "$bin is not an executable (make; or set KUBELITE/KUBELET_LITE/TESTAPP/HELM)"
done
command -v jq >/dev/null || t_fail "needs jq"
if ip link show kl0 >/dev/null 2>&1 || ip netns list | grep -q '^kl-'; then
    t_fail "a kubelet-lite is running or left kl0/kl-* behind (kubelet-lite --cleanup)"
fi
t_failed && t_summary
t_pass

. "$(dirname "$0")/kubelet-lib.sh"
trap final_cleanup EXIT

# --- helpers -----------------------------------------------------------------------------------

# jp NS OBJ JSONPATH: print a field (empty on error)
jp() { "$K" get -n "$1" "$2" -o "jsonpath=$3" 2>/dev/null; }
# pods NS SELECTOR: "name uid pid ready" per pod, sorted (pid from the containerID)
pods() {
    jp "$1" pods "{range .items[?(@.metadata.labels.$2)]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].containerID} {.status.conditions[?(@.type==\"Ready\")].status}{\"\n\"}{end}" |
        sed -E 's#kubelet-lite://[^ ]*-([0-9]+) #\1 #' | sort
}
netns_of() { echo "kl-$(echo "$1" | tr -d - | cut -c1-8)"; } # UID
alive() { kill -0 "$1" 2>/dev/null; }
has_netns() { ip netns list | grep -q "^$1\b"; }
ms() { date +%s%3N; }
secs() { # START-MS: elapsed seconds with one decimal
    local d=$(($(ms) - $1))
    printf '%d.%d' $((d / 1000)) $((d % 1000 / 100))
}
TIMES=()
timing() { TIMES+=("$1=$2s"); }

# all_gone "name uid pid ready" lines: every process dead and every netns removed
all_gone() {
    local _n uid pid _r
    while read -r _n uid pid _r; do
        [ -n "$uid" ] || continue
        alive "$pid" && return 1
        has_netns "$(netns_of "$uid")" && return 1
    done <<<"$1"
    return 0
}

# running "name uid pid ready" lines: each pid a live testapp or sh, each netns present
check_running() {
    local n uid pid r count=0
    while read -r n uid pid r; do
        [ -n "$n" ] || continue
        count=$((count + 1))
        [ "$r" = True ] || { fail "pod $n not Ready ($r)"; return 1; }
        [[ $pid =~ ^[0-9]+$ ]] || { fail "pod $n: no container pid ($pid)"; return 1; }
        alive "$pid" || { fail "pod $n: process $pid not running"; return 1; }
        has_netns "$(netns_of "$uid")" || { fail "pod $n: no netns $(netns_of "$uid")"; return 1; }
    done <<<"$1"
    [ "$count" = "${2:-$count}" ] || { fail "want $2 pods, have $count: $1"; return 1; }
}

# deployment NS NAME REPLICAS IMAGE [SHELL-COMMAND]: apply a Deployment labelled app=NAME
deployment() {
    local cmd=""
    [ -n "${5:-}" ] && cmd="command: [\"/bin/sh\", \"-c\", \"$5\"]"
    cat >"$KL_TMP/$2.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $2, namespace: $1}
spec:
  replicas: $3
  selector: {matchLabels: {app: $2}}
  template:
    metadata: {labels: {app: $2}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: main
        image: $4
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        $cmd
EOF
    ok "apply deployment $2" "$K" apply -f "$KL_TMP/$2.yaml" &&
        ok "rollout $2" "$K" rollout status -n "$1" "deploy/$2" --timeout=30s
}

# --- start ---------------------------------------------------------------------------------------

t_begin start
kl_start || { t_fail "kubelite did not start"; t_summary; }
cat >"$KL_TMP/images" <<EOF
weft/testapp $TESTAPP
weft/shell /bin/sh
EOF
"$KUBELET_LITE" --kubeconfig "$KUBECONFIG" --images "$KL_TMP/images" --node-name kl-node \
    --root "$KLT_ROOT" --shutdown-grace 5 --log-level debug >"$KLT_LOG" 2>&1 &
KLT_PID=$!
bg_track "$KLT_PID"
node_ready() {
    [ "$("$K" get node kl-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' \
        2>/dev/null)" = True ]
}
if ! wait_for 10 node_ready; then
    fail "node kl-node not Ready after 10 s"
    t_summary
fi
t_pass

# --- the chart -----------------------------------------------------------------------------------

case_helm_install() {
    local t0
    t0=$(ms)
    ok "helm install" "$HELM" install "$REL" "$CHART" -n "$NS" --create-namespace --wait \
        --timeout 60s || return
    timing helm-install "$(secs "$t0")"
    assert_match "$OUT" '^STATUS: deployed$' "install status" || return
    APP_PODS=$(pods "$NS" 'app\.kubernetes\.io/instance=="app"')
    check_running "$APP_PODS" 2 || return
    assert_eq "$(jp "$NS" "deploy/$DEP" '{.status.replicas} {.status.updatedReplicas} {.status.readyReplicas} {.status.availableReplicas}')" \
        "2 2 2 2" "deployment status" || return
    local n _u pid _r
    while read -r n _u pid _r; do
        assert_eq "$(tr '\0' ' ' <"/proc/$pid/cmdline")" "$TESTAPP " "pod $n runs the testapp" ||
            return
    done <<<"$APP_PODS"
}

case_rollout_status() {
    okv "rollout status" "$K" rollout status -n "$NS" "deploy/$DEP" --timeout=10s || return
    assert_eq "$OUT" "deployment \"$DEP\" successfully rolled out" "rollout status" || return
}

case_service() {
    local cip names
    cip=$(jp "$NS" "svc/$DEP" '{.spec.clusterIP}')
    assert_match "$cip" '^10\.[0-9]+\.[0-9]+\.[0-9]+$' "ClusterIP" || return
    runo "$TESTAPP" get "http://$cip/" -n 30
    assert_eq "$(echo "$OUT" | grep -c '^200 ')" 30 "every request answered: $OUT" || return
    names=$(echo "$APP_PODS" | cut -d' ' -f1)
    assert_eq "$(echo "$OUT" | sed 's/^200 //' | sort -u)" "$names" "both pods answer" || return
}

case_token() {
    local n uid pid tok
    read -r n uid pid _ <<<"$(echo "$APP_PODS" | head -1)"
    tok=$(cat "$KLT_ROOT/pods/$uid/volumes/token/token" 2>/dev/null)
    assert_match "$tok" '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' "a JWT in the token volume" ||
        return
    if command -v nsenter >/dev/null; then
        assert_eq "$(nsenter -t "$pid" -m cat /var/run/kl-app/token 2>&1)" "$tok" \
            "the container sees the token at its mountPath" || return
    fi
    printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"%s","audiences":["kl-app"]}}' \
        "$tok" >"$KL_TMP/tr.json"
    okv "TokenReview" "$K" create --raw /apis/authentication.k8s.io/v1/tokenreviews -f "$KL_TMP/tr.json" || return
    assert_eq "$(echo "$OUT" | jq -r '[.status.authenticated, .status.user.username, .status.user.extra["authentication.kubernetes.io/pod-name"][0], (.status.audiences | join(","))] | map(tostring) | join(" ")')" \
        "true system:serviceaccount:$NS:$DEP $n kl-app" "review of the projected token" || return
    printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"%s","audiences":["other"]}}' \
        "$tok" >"$KL_TMP/tr.json"
    okv "TokenReview" "$K" create --raw /apis/authentication.k8s.io/v1/tokenreviews -f "$KL_TMP/tr.json" || return
    assert_eq "$(echo "$OUT" | jq -r '.status.authenticated // false')" false "another audience refused" ||
        return
}

case_helm_upgrade() {
    local t0 old_rs new_rs new n _u pid _r cip
    old_rs=$(jp "$NS" rs '{.items[0].metadata.name}')
    t0=$(ms)
    ok "helm upgrade" "$HELM" upgrade "$REL" "$CHART" -n "$NS" --set greeting=hello --wait \
        --timeout 60s || return
    assert_match "$OUT" '^REVISION: 2$' "upgrade revision" || return
    # --wait returns once the new pods are Ready; the old ones may still be terminating.
    old_gone() { all_gone "$APP_PODS"; }
    wait_for 20 old_gone || { fail "old pods still running: $APP_PODS"; return 1; }
    timing helm-upgrade "$(secs "$t0")"
    new=$(pods "$NS" 'app\.kubernetes\.io/instance=="app"')
    check_running "$new" 2 || return
    while read -r n _u pid _r; do
        case $APP_PODS in *"$n "*) t_fail "pod $n survived the upgrade"; return 1 ;; esac
        tr '\0' '\n' <"/proc/$pid/environ" | grep -qx GREETING=hello ||
            { t_fail "pod $n's process (pid $pid) has no GREETING=hello"; return 1; }
    done <<<"$new"
    new_rs=$(jp "$NS" "pod/$(echo "$new" | head -1 | cut -d' ' -f1)" '{.metadata.ownerReferences[0].name}')
    assert_ne "$new_rs" "$old_rs" "a new ReplicaSet" || return
    assert_eq "$(jp "$NS" "rs/$old_rs" '{.spec.replicas} {.status.replicas}')" "0 0" "old ReplicaSet scaled down" ||
        return
    assert_eq "$(jp "$NS" "rs/$new_rs" '{.spec.replicas} {.status.readyReplicas}')" "2 2" "new ReplicaSet" ||
        return
    cip=$(jp "$NS" "svc/$DEP" '{.spec.clusterIP}')
    ready2() { [ "$(jp "$NS" "endpointslice/$DEP-kl" '{range .endpoints[?(@.conditions.ready==true)]}x{end}')" = xx ]; }
    wait_for 5 ready2 || { fail "EndpointSlice not at the two new pods"; return 1; }
    # The rules follow the slice within a poll period: wait until 30 requests reach exactly the
    # new pods (every answer from a new pod, both of them answering).
    want_answers=$(echo "$new" | cut -d' ' -f1)
    new_pods_only() {
        runo "$TESTAPP" get "http://$cip/" -n 30
        [ "$(echo "$OUT" | sed 's/^200 //' | sort -u)" = "$want_answers" ]
    }
    wait_for 10 new_pods_only
    runo "$TESTAPP" get "http://$cip/" -n 30
    assert_eq "$(echo "$OUT" | sed 's/^200 //' | sort -u)" "$want_answers" \
        "the ClusterIP reaches the new pods only" || return
    APP_PODS=$new
}

# --- garbage collection --------------------------------------------------------------------------

case_gc_background() {
    local before t0
    ok "namespace" "$K" create namespace kl-gc || return
    deployment kl-gc bg 2 weft/testapp || return
    before=$(pods kl-gc 'app=="bg"')
    check_running "$before" 2 || return
    run "$K" delete --raw "/apis/apps/v1/namespaces/kl-gc/deployments/bg?propagationPolicy=Sideways"
    assert_eq "$OUT" 'The DeleteOptions "" is invalid: propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", "Background", "Orphan", "nil"' \
        "an unknown propagationPolicy" || return
    t0=$(ms)
    ok "delete deployment" "$K" delete -n kl-gc deploy/bg || return
    assert_eq "$(jp kl-gc deploy/bg '{.metadata.name}')" "" "the Deployment goes at once" || return
    timing gc-background "$(secs "$t0")"
    rs_gone() { [ -z "$(jp kl-gc rs '{.items[?(@.metadata.labels.app=="bg")].metadata.name}')" ]; }
    pods_gone() { [ -z "$(pods kl-gc 'app=="bg"')" ] && all_gone "$before"; }
    wait_for 10 rs_gone || { fail "ReplicaSet of bg left"; return 1; }
    wait_for 15 pods_gone || { fail "pods of bg left: $(pods kl-gc 'app=="bg"')"; return 1; }
    timing gc-background-pods "$(secs "$t0")"
}

case_gc_foreground() {
    local before t0 rs seen_both=0 p d
    # Pods that ignore SIGTERM: each takes its 3 s grace period to die, long enough to watch.
    deployment kl-gc fg 2 weft/shell "trap '' TERM; while :; do sleep 0.2; done" || return
    before=$(pods kl-gc 'app=="fg"')
    check_running "$before" 2 || return
    rs=$(jp kl-gc rs '{.items[?(@.metadata.labels.app=="fg")].metadata.name}')
    t0=$(ms)
    ok "delete --cascade=foreground" "$K" delete -n kl-gc deploy/fg --cascade=foreground --wait=false ||
        return
    assert_eq "$(jp kl-gc deploy/fg '{.metadata.finalizers} {.metadata.deletionGracePeriodSeconds}')" \
        '["foregroundDeletion"] 0' "the Deployment waits for its dependents" || return
    assert_match "$(jp kl-gc deploy/fg '{.metadata.deletionTimestamp}')" '^20[0-9-]+T[0-9:]+Z$' "deletionTimestamp" || return
    rs_waits() { [ "$(jp kl-gc "rs/$rs" '{.metadata.finalizers}')" = '["foregroundDeletion"]' ]; }
    wait_for 5 rs_waits || { fail "ReplicaSet $rs: finalizers $(jp kl-gc "rs/$rs" '{.metadata.finalizers}')"; return 1; }
    # Until the pods are gone the owners stay. The Deployment is read first, then the pods: as
    # no pod comes back, pods seen after the Deployment's read were there at that read too.
    while :; do
        d=$(jp kl-gc deploy/fg '{.metadata.name}')
        p=$(jp kl-gc pods '{range .items[?(@.metadata.labels.app=="fg")]}x{end}')
        if [ -n "$p" ]; then
            [ "$d" = fg ] || { fail "Deployment gone while its pods remain"; return 1; }
            seen_both=1
        fi
        [ -z "$d" ] && break
        [ $(($(ms) - t0)) -gt 20000 ] && { fail "Deployment fg still there after 20 s"; return 1; }
        sleep 0.1
    done
    timing gc-foreground "$(secs "$t0")"
    assert_eq "$seen_both" 1 "the pods were seen terminating under their waiting owner" || return
    [ $(($(ms) - t0)) -ge 2500 ] || { fail "gone after $(secs "$t0") s: the pods' grace was not awaited"; return 1; }
    assert_eq "$(pods kl-gc 'app=="fg"')$(jp kl-gc "rs/$rs" '{.metadata.name}')" "" "pods and ReplicaSet gone first" ||
        return
    all_gone "$before" || { fail "processes or netns of fg left"; return 1; }
}

# gc_pass_after: a full garbage-collector pass has run since now: a ConfigMap owned by another
# one, whose owner is then deleted, is collected. What the collector would wrongly do about an
# earlier deletion it has done by then.
GC_N=0
gc_pass_after() {
    local uid
    GC_N=$((GC_N + 1))
    ok "sentinel owner" "$K" create configmap -n kl-gc "gc-owner-$GC_N" || return
    uid=$(jp kl-gc "configmap/gc-owner-$GC_N" '{.metadata.uid}')
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gc-dep-%s\n  namespace: kl-gc\n  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: gc-owner-%s, uid: "%s"}]\n' \
        "$GC_N" "$GC_N" "$uid" >"$KL_TMP/gc-dep.yaml"
    ok "sentinel dependent" "$K" apply -f "$KL_TMP/gc-dep.yaml" || return
    ok "delete the sentinel owner" "$K" delete configmap -n kl-gc "gc-owner-$GC_N" --wait=false || return
    dep_gone() { [ -z "$(jp kl-gc "configmap/gc-dep-$GC_N" '{.metadata.name}')" ]; }
    wait_for 15 dep_gone || { fail "the garbage collector did not collect the sentinel gc-dep-$GC_N"; return 1; }
}

case_gc_orphan() {
    local before after rs rsuid
    deployment kl-gc orph 2 weft/testapp || return
    before=$(pods kl-gc 'app=="orph"')
    check_running "$before" 2 || return
    rs=$(jp kl-gc rs '{.items[?(@.metadata.labels.app=="orph")].metadata.name}')
    rsuid=$(jp kl-gc "rs/$rs" '{.metadata.uid}')
    ok "delete --cascade=orphan" "$K" delete -n kl-gc deploy/orph --cascade=orphan || return
    run "$K" get -n kl-gc deploy/orph
    assert_contains "$OUT" NotFound "Deployment gone" || return
    gc_pass_after || return # a wrong garbage collector would have struck by now
    assert_eq "$(jp kl-gc "rs/$rs" '{.metadata.uid} {.metadata.ownerReferences} {.spec.replicas}')" \
        "$rsuid  2" "the ReplicaSet stays, without its ownerReference" || return
    after=$(pods kl-gc 'app=="orph"')
    assert_eq "$after" "$before" "the same pods keep running" || return
    check_running "$after" 2 || return
    assert_eq "$(jp kl-gc pods '{range .items[?(@.metadata.labels.app=="orph")]}{.metadata.ownerReferences[0].uid} {end}')" \
        "$rsuid $rsuid " "pods still owned by the ReplicaSet" || return
    # The ReplicaSet orphans its pods in turn: they keep running, owned by nobody.
    ok "delete rs --cascade=orphan" "$K" delete -n kl-gc "rs/$rs" --cascade=orphan || return
    run "$K" get -n kl-gc "rs/$rs"
    assert_contains "$OUT" NotFound "ReplicaSet gone" || return
    gc_pass_after || return
    after=$(pods kl-gc 'app=="orph"')
    assert_eq "$after" "$before" "the same pods still run" || return
    check_running "$after" 2 || return
    assert_eq "$(jp kl-gc pods '{range .items[?(@.metadata.labels.app=="orph")]}[{.metadata.ownerReferences}] {end}')" \
        "[] [] " "pods without ownerReferences" || return
    ok "delete pods" "$K" delete -n kl-gc pods -l app=orph || return
    gone() { [ -z "$(pods kl-gc 'app=="orph"')" ] && all_gone "$before"; }
    wait_for 15 gone || { fail "pods of orph left"; return 1; }
}

case_namespace_delete() {
    local before t0
    ok "namespace" "$K" create namespace kl-ns2 || return
    deployment kl-ns2 web 2 weft/testapp || return
    ok "service" "$K" create service clusterip -n kl-ns2 web --tcp=80:8080 || return
    ok "configmap" "$K" create configmap -n kl-ns2 cfg --from-literal=a=b || return
    before=$(pods kl-ns2 'app=="web"')
    check_running "$before" 2 || return
    t0=$(ms)
    ok "delete namespace" "$K" delete namespace kl-ns2 --timeout=30s || return
    timing namespace-delete "$(secs "$t0")"
    run "$K" get namespace kl-ns2
    assert_contains "$OUT" NotFound "namespace gone" || return
    all_gone "$before" || { fail "processes or netns of kl-ns2 left"; return 1; }
    local kind
    for kind in pods replicasets deployments services endpointslices configmaps serviceaccounts; do
        okv "list $kind" "$K" get "$kind" -A -o jsonpath='{range .items[?(@.metadata.namespace=="kl-ns2")]}{.metadata.name} {end}' ||
            return
        assert_eq "$OUT" "" "$kind left in kl-ns2" || return
    done
}

case_job() {
    ok "namespace" "$K" create namespace kl-job || return
    cat >"$KL_TMP/jobs.yaml" <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: ok, namespace: kl-job}
spec:
  template:
    metadata: {labels: {app: ok}}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: weft/testapp, command: [/bin/sh, -c, "echo done"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: bad, namespace: kl-job}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: weft/testapp, command: [/bin/sh, -c, "exit 3"]}]
EOF
    ok "jobs" "$K" apply -f "$KL_TMP/jobs.yaml" || return
    ok "ok completes" "$K" wait -n kl-job --for=condition=complete job/ok --timeout=30s || return
    assert_eq "$(jp kl-job job/ok '{.status.succeeded}/{.status.failed}/{.status.active}/{.status.conditions[0].reason}')" \
        "1/0/0/Completed" "job ok's status" || return
    assert_eq "$(jp kl-job pod '{range .items[?(@.metadata.labels.job-name=="ok")]}{.status.phase} {.metadata.labels.app} {.metadata.ownerReferences[0].kind}{end}')" \
        "Succeeded ok Job" "job ok's one pod" || return
    assert_ne "$(jp kl-job job/ok '{.status.completionTime}')" "" "completionTime" || return
    ok "bad fails" "$K" wait -n kl-job --for=condition=failed job/bad --timeout=30s || return
    assert_eq "$(jp kl-job job/bad '{.status.failed}/{.status.conditions[0].reason}')" "2/BackoffLimitExceeded" \
        "job bad: backoffLimit 1 allows one retry" || return
    assert_eq "$(jp kl-job pod '{range .items[?(@.metadata.labels.job-name=="bad")]}{.status.phase} {end}')" \
        "Failed Failed " "job bad's pods" || return
    ok "delete" "$K" delete namespace kl-job --wait=false
}

case_helm_uninstall() {
    local t0
    t0=$(ms)
    ok "helm uninstall" "$HELM" uninstall "$REL" -n "$NS" --wait --timeout 60s || return
    gone() { all_gone "$APP_PODS"; }
    wait_for 15 gone || { fail "release processes or netns left: $APP_PODS"; return 1; }
    timing helm-uninstall "$(secs "$t0")"
    okv "left in $NS" "$K" get deploy,rs,pods,svc,sa,secrets -n "$NS" -o name || return
    assert_eq "$(echo "$OUT" | grep -v '^serviceaccount/default$' | grep -c .)" 0 "objects left: $OUT" || return
    ok "delete namespace" "$K" delete namespace "$NS" --timeout=30s || return
    ok "delete namespace" "$K" delete namespace kl-gc --timeout=30s || return
}

t_run helm-install case_helm_install
t_run rollout-status case_rollout_status
t_run service case_service
t_run token case_token
t_run helm-upgrade case_helm_upgrade
t_run gc-background case_gc_background
t_run gc-foreground case_gc_foreground
t_run gc-orphan case_gc_orphan
t_run namespace-delete case_namespace_delete
t_run job case_job
t_run helm-uninstall case_helm_uninstall

t_begin shutdown
stop_kubelet
assert_eq "$KLT_EXIT" 0 "kubelet-lite exit status"
assert_eq "$(ip netns list | grep -c '^kl-')" 0 "kl-* network namespaces left"
assert_eq "$(pgrep -fc "^$TESTAPP" || true)" 0 "testapp processes left"
assert_eq "$(pgrep -xc kubelet-lite || true)" 0 "kubelet-lite processes left"
assert_eq "$(ip -o link show | grep -Ec ': (kl0|klv[0-9a-f]+)[@:]')" 0 "links left"
assert_eq "$(iptables-save | grep -c 'KL-')" 0 "iptables rules or chains left"
t_pass
echo "timings: ${TIMES[*]}"
t_summary
