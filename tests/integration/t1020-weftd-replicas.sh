#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# t1020-weftd-replicas.sh - two weftd replicas against one kubelite: one leader writes status;
# killing it hands the Lease over.
#
#   one-leader     a (started first) holds Lease weft-system/weftd-leader; weft_leader is 1 on a,
#                  0 on b; b never logged "leading"
#   leader-writes  a new TrafficSplit gets its status from the leader only: managedFields show
#                  manager "weft" on the status subresource, weft_status_writes_total
#                  {result="written"} grows on a and every result stays 0 on b (which still
#                  compiles: same document on both)
#   events         a conflicting split's Warning Conflicted event comes from a (its
#                  reportingInstance), once; b creates none
#   handover       b, a follower all along, wrote no status and created no Event (checked again
#                  long after the first checks); kill -9 a, change the split at once; b takes
#                  the Lease, and its acquireTime is at least the lease duration after a's last
#                  renewTime (never early: order, not speed; the handover time is printed)
#   new-leader     b writes the status of the change made after the kill (observedGeneration 2)
#                  and, leading now, emits the Normal Accepted and Programmed events when the
#                  conflict ends (Programmed once the agent-less client pod's 3 s
#                  --disconnected-grace-s is over)
#   from-scratch   a fresh weftd c compiles, for every meshed pod, the same document as b, which
#                  has lived through the handover and every change
# Env: BUILD, KUBELITE, WEFTD ($BUILD/bin/weftd), KUBECTL_DIR.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/weftd-lib.sh

LEASE_SECONDS=15
RETRY_SECONDS=2

if [ ! -x "$WEFTD" ]; then
    t_begin replicas
    t_skip "$WEFTD not built"
    t_summary
fi

holder() {
    "$K" get lease -n weft-system weftd-leader -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null
}

holder_is() {
    [ "$(holder)" = "$1" ]
}

t_begin start
if kl_start && ok "CRDs" "$K" apply -f crds/ && ok "weft-system" "$K" create namespace weft-system &&
    ok "established" "$K" wait --for=condition=Established --timeout=20s crd --all; then
    cat >"$KL_TMP/r1.yaml" <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: r1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: r1}
spec: {selector: {app: web}, ports: [{port: 80, name: http, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v1, namespace: r1}
spec: {selector: {app: web, v: v1}, ports: [{port: 80, name: http, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: r1}
spec: {selector: {app: web, v: v2}, ports: [{port: 80, name: http, targetPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: r1}
spec:
  containers:
  - {name: app, image: app:1}
  - {name: weft-proxy, image: weft/proxy:dev}
EOF
    ok "r1" "$K" apply -f "$KL_TMP/r1.yaml"
    ok "podIP" "$K" patch pod client -n r1 --subresource=status --type=merge \
        -p '{"status":{"podIP":"10.1.0.7","podIPs":[{"ip":"10.1.0.7"}]}}'
    # a first, and leading, before b starts: which replica leads is then known.
    { wd_start a --disconnected-grace-s 3 && wait_for 20 holder_is a; } || t_fail "a did not take the Lease"
    { wd_start b --disconnected-grace-s 3 && wait_for 30 wd_synced b; } || t_fail "b did not start"
    wait_for 30 wd_synced a || t_fail "a did not sync"
else
    t_fail "kubelite did not start"
fi
t_pass
[ "$T_FAILED" -eq 0 ] || t_summary

case_one_leader() {
    assert_eq "$(holder)" a "Lease holder" || return 1
    assert_eq "$(wd_metric a weft_leader)" 1 "weft_leader on a" || return 1
    assert_eq "$(wd_metric b weft_leader)" 0 "weft_leader on b" || return 1
    if grep -q 'msg="leading"' "${WD_LOG[b]}"; then
        t_fail "b logged leading: $(grep 'msg="leading"' "${WD_LOG[b]}")"
    fi
}

case_leader_writes() {
    local wa r
    cat >"$KL_TMP/split.yaml" <<'EOF'
apiVersion: mesh.weft.dev/v1alpha1
kind: TrafficSplit
metadata: {name: web, namespace: r1}
spec:
  service: web
  backends: [{service: web-v1, weight: 3}, {service: web-v2, weight: 1}]
EOF
    ok "split" "$K" apply -f "$KL_TMP/split.yaml" || return 1
    ok "Accepted" "$K" wait -n r1 --for=condition=Accepted ts/web --timeout=20s || return 1
    okv "managedFields" "$K" get ts/web -n r1 --show-managed-fields -o json || return 1
    assert_eq "$(printf '%s' "$OUT" | pyjson '[(m["manager"], m["operation"], m.get("subresource")) for m in j["metadata"]["managedFields"] if "f:status" in m["fieldsV1"]]')" \
        '[["weft", "Update", "status"]]' "status writers" || return 1
    # b has compiled the split (its document shows the weights): had it evaluated the split's
    # status, it would have done so by now.
    wait_for 20 sh -c "curl -s -H 'Authorization: Bearer $(wd_token)' http://127.0.0.1:${WD_ADMIN[b]}/debug/config/r1/client | grep -q '\"requestedPpm\": 750000'" ||
        t_fail "b did not compile the split" || return 1
    wa=$(wd_metric a 'weft_status_writes_total{result="written"}')
    assert_gt "$wa" 0 "status writes by a" || return 1
    for r in written unchanged not_found conflict error; do
        assert_eq "$(wd_metric b "weft_status_writes_total{result=\"$r\"}")" 0 \
            "status evaluations by b ($r)" || return 1
    done
    echo "    status writes: a $wa, b 0"
    # b is a follower but compiles: the same document on both.
    wd_get a /debug/config/r1/client
    local da=$BODY
    wd_get b /debug/config/r1/client
    assert_eq "$CODE" 200 "b's document" && assert_eq "$BODY" "$da" "b's document equals a's"
}

b_has_two_splits() {
    [ "$(wd_metric b 'weft_model_objects{kind="TrafficSplit"}')" = 2 ]
}

case_events() {
    cat >"$KL_TMP/late.yaml" <<'EOF'
apiVersion: mesh.weft.dev/v1alpha1
kind: TrafficSplit
metadata: {name: late, namespace: r1}
spec:
  service: web
  backends: [{service: web-v1, weight: 1}]
EOF
    # late must be younger than web: creationTimestamp has whole seconds (a tie goes by name,
    # and "late" sorts first), so wait until the clock has left web's second.
    okv "web's creationTimestamp" "$K" get ts/web -n r1 -o 'jsonpath={.metadata.creationTimestamp}' ||
        return 1
    wait_for 5 sh -c "[ \"\$(date -u +%Y-%m-%dT%H:%M:%SZ)\" \> '$OUT' ]" ||
        t_fail "the clock did not pass $OUT" || return 1
    ok "late" "$K" apply -f "$KL_TMP/late.yaml" || return 1
    ok "Conflicted" "$K" wait -n r1 --for=condition=Accepted=False ts/late --timeout=20s || return 1
    wait_for 10 sh -c "\"\$0\" get events -n r1 --field-selector involvedObject.name=late -o name | grep -q ." "$K"
    # b holds late in its model (so it has seen the conflict); whatever it would wrongly emit
    # is also caught by the handover's check and new-leader's complete list of late's events.
    wait_for 20 b_has_two_splits || t_fail "b did not see the split late" || return 1
    okv "events" "$K" get events -n r1 --field-selector involvedObject.name=late -o json || return 1
    assert_eq "$(printf '%s' "$OUT" | pyjson '[(e["type"], e["reason"], e["count"], e["reportingInstance"]) for e in j["items"]]')" \
        '[["Warning", "Conflicted", 1, "a"]]' "late's events" || return 1
    assert_eq "$(wd_metric b 'weft_events_total{result="created"}')" 0 "events created by b"
}

case_handover() {
    local t0 t1 renew acquire transitions gap r
    # b was a follower through every case above: nothing it wrote could still be on its way.
    for r in written unchanged not_found conflict error; do
        assert_eq "$(wd_metric b "weft_status_writes_total{result=\"$r\"}")" 0 \
            "status evaluations by b before the handover ($r)" || return 1
    done
    assert_eq "$(wd_metric b 'weft_events_total{result="created"}')" 0 "events created by b before the handover" ||
        return 1
    renew=$("$K" get lease -n weft-system weftd-leader -o 'jsonpath={.spec.renewTime}')
    wd_kill a
    t0=$(now_ms)
    # A change right after the kill: only the next leader can write its status.
    ok "reweight" "$K" patch ts/web -n r1 --type=json \
        -p '[{"op":"replace","path":"/spec/backends/1/weight","value":3}]' || return 1
    # A generous deadline: how fast is printed below, not asserted (a slow machine is no failure).
    while [ $(($(now_ms) - t0)) -lt $(((4 * LEASE_SECONDS) * 1000)) ]; do
        holder_is b && break
        sleep 0.1
    done
    t1=$(now_ms)
    assert_eq "$(holder)" b "Lease holder after the kill" || return 1
    okv "lease" "$K" get lease -n weft-system weftd-leader \
        -o 'jsonpath={.spec.acquireTime}|{.spec.renewTime}|{.spec.leaseTransitions}' || return 1
    IFS='|' read -r acquire _ transitions <<<"$OUT"
    HANDOVER_MS=$((t1 - t0))
    gap=$(python3 -c "from datetime import datetime as D; f=lambda s: D.strptime(s, '%Y-%m-%dT%H:%M:%S.%fZ'); print(round((f('$acquire') - f('$renew')).total_seconds() * 1000))")
    echo "    handover: $HANDOVER_MS ms after kill -9 (lease ${LEASE_SECONDS} s); a's last renewTime $renew, b's acquireTime $acquire ($gap ms later)"
    # Safety (one host, one clock): b saw a's last renewal after a stamped it, and waited a
    # whole lease from then. (a may have renewed once more after $renew was read: later still.)
    [ "$gap" -ge $((LEASE_SECONDS * 1000)) ] ||
        t_fail "b took the Lease $gap ms after a's renewTime $renew (< ${LEASE_SECONDS} s)"
    assert_eq "$transitions" 1 "leaseTransitions"
}

case_new_leader() {
    local og
    wait_for 10 sh -c "[ \"\$(curl -s http://127.0.0.1:${WD_ADMIN[b]}/metrics | awk '\$1 == \"weft_leader\" {print \$2}')\" = 1 ]"
    assert_eq "$(wd_metric b weft_leader)" 1 "weft_leader on b" || return 1
    ok "status of generation 2" "$K" wait -n r1 --timeout=15s ts/web \
        '--for=jsonpath={.status.conditions[?(@.type=="Accepted")].observedGeneration}=2' || return 1
    og=$("$K" get ts/web -n r1 -o 'jsonpath={.metadata.generation} {.status.conditions[*].observedGeneration}')
    assert_eq "$og" "2 2 2 2" "generation and observedGenerations" || return 1
    assert_gt "$(wd_metric b 'weft_status_writes_total{result="written"}')" 0 "status writes by b" ||
        return 1
    grep -q 'msg="leading" identity=b' "${WD_LOG[b]}" || t_fail "b did not log leading"
    # The conflict ends: the new leader reports it.
    ok "delete the winner" "$K" delete ts/web -n r1 || return 1
    ok "late Accepted" "$K" wait -n r1 --for=condition=Accepted=True ts/late --timeout=20s || return 1
    # Programmed: the client pod has no agent; once the 3 s grace is over it is not waited for.
    wait_for 20 sh -c "\"\$0\" get events -n r1 --field-selector involvedObject.name=late -o jsonpath='{.items[*].reason}' | grep -qw Programmed" "$K"
    okv "events" "$K" get events -n r1 --field-selector involvedObject.name=late -o json || return 1
    assert_eq "$(printf '%s' "$OUT" | pyjson '[(e["type"], e["reason"], e["message"], e["count"], e["reportingInstance"]) for e in sorted(j["items"], key=lambda e: e["metadata"]["name"])]')" \
        '[["Warning", "Conflicted", "TrafficSplit r1/web (mesh.weft.dev) already splits Service web and takes precedence (older creationTimestamp, then name); delete one of them or give them different ports", 1, "a"], ["Normal", "Accepted", "the split is valid", 1, "b"], ["Normal", "Programmed", "acknowledged by 0 of the 1 proxies it affects; 1 disconnected for more than 3s, not waited for: r1/client", 1, "b"]]' \
        "late's events after the handover"
}

# A weftd started now compiles every meshed pod's document from the cluster as it is: b's, after
# the handover and every change, must be the same.
docs_equal() {
    wd_docs b "$KL_TMP/docs-b" "$KL_TMP/meshed.txt" && wd_docs c "$KL_TMP/docs-c" "$KL_TMP/meshed.txt" &&
        diff -r "$KL_TMP/docs-b" "$KL_TMP/docs-c" >"$KL_TMP/docs.diff"
}

case_from_scratch() {
    local n
    wd_meshed "$KL_TMP/meshed.txt" || t_fail "cannot list the meshed pods" || return 1
    n=$(grep -c . "$KL_TMP/meshed.txt")
    assert_gt "$n" 0 "meshed pods" || return 1
    { wd_start c && wait_for 30 wd_synced c; } || t_fail "c did not start" || return 1
    wait_for 20 docs_equal ||
        t_fail "documents of b and c differ: $(head -c 3000 "$KL_TMP/docs.diff")" || return 1
    assert_eq "$(wd_metric b weft_proxies)" "$n" "documents on b" || return 1
    assert_eq "$(wd_metric c weft_proxies)" "$n" "documents on c" || return 1
    echo "    $n documents equal on b and a fresh c"
}

t_run one-leader case_one_leader
t_run leader-writes case_leader_writes
t_run events case_events
t_run handover case_handover
t_run new-leader case_new_leader
t_run from-scratch case_from_scratch
t_summary
