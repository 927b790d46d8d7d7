#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# t1050-weftd-programmed.sh - the Programmed condition from the proxies' acknowledgements, with
# two weftd replicas each serving part of the agents (docs/config-stream.md, "Programmed").
# Agents are tests/integration/streamclient.c with real workload certificates: p1 and p2 on
# replica a (the leader), p3 on replica b. Both replicas run --disconnected-grace-s 4.
#
#   setup          a meshed namespace with a TrafficSplit (web), a RetryPolicy (web), an
#                  AccessPolicy (the clients' pods) and an SMI TrafficSplit (api), three client
#                  pods with certificates, their agents on both replicas
#   programmed     every resource turns Programmed=True once the three proxies ACKed (kubectl
#                  wait), message "acknowledged by all 3 proxies it affects", observedGeneration
#   spread         the streams are spread (a serves p1 and p2, b serves p3): each replica's
#                  ConfigMap weftd-acks-<identity> lists its own; b wrote no status
#   kubectl-wait   p3 (on b) frozen (SIGSTOP): a split change leaves Programmed False, Pending,
#                  naming app/p3 with the new observedGeneration, and kubectl wait times out;
#                  p3 resumed: kubectl wait returns, and by then every proxy holds the new
#                  weights (the change is live); status writes for the change counted
#   nack           p2 (on a) and then p3 (on b) refuse their document: False, Rejected, naming
#                  the proxy and its reason, on the leader for both (b's NACK comes through b's
#                  publication); /debug/proxies on the replica serving it shows the reason, the
#                  metrics count it; once the agents ACK again, True
#   disconnected   p3's agent stopped, then a change: Pending "(disconnected)" while the grace
#                  period runs, then True naming app/p3 as not waited for; the agent back: all 3
#   coalescing     a burst of 20 changes to the split (up to 60 ACKs): at most one write per
#                  generation plus one per second of the burst, not one per ACK; the resources
#                  the burst does not change are not written at all (p3's ACKs reach the leader
#                  through b's publication, a second or more late: the leader must still
#                  recognise the documents they name)
#   failover       kill -9 a; the agents of a move to b; b takes the Lease and writes
#                  Programmed=True for a change made after the kill
# Env: BUILD, KUBELITE, WEFTD ($BUILD/bin/weftd), KUBECTL_DIR.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/weftd-lib.sh

NS=app
GRACE=4

if [ ! -x "$WEFTD" ] || [ ! -x "$SC" ]; then
    t_begin programmed
    t_skip "$WEFTD or $SC not built"
    t_summary
fi

holder() {
    "$K" get lease -n weft-system weftd-leader -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null
}

holder_is() { [ "$(holder)" = "$1" ]; }

# cond KIND/NAME FIELD: a field of the Programmed condition
cond() {
    "$K" get -n "$NS" "$1" -o "jsonpath={.status.conditions[?(@.type==\"Programmed\")].$2}" 2>/dev/null
}

cond_is() { # KIND/NAME STATUS REASON
    [ "$(cond "$1" status)/$(cond "$1" reason)" = "$2/$3" ]
}

# synced_on REPLICA POD: the replica's /debug/proxies says the proxy ACKed its current document
synced_on() {
    wd_get "$1" "/debug/proxies/$NS/$2"
    [ "$CODE" = 200 ] && [ "$(printf '%s' "$BODY" | pyjson 'j["sync"]')" = synced ]
}

ppm_v2() { # CLIENT: requestedPpm of web-v2 in the client's last document
    pyjson "[b['requestedPpm'] for o in j['outbound'] if o['service'] == 'web' for p in o['ports'] for r in p['routes'] if r.get('split') for b in r['backends'] if b['service'] == 'web-v2'][0]" <"$KL_TMP/cl-$1/config.json"
}

writes() { wd_metric a 'weft_status_writes_total{result="written"}'; }

RES=(trafficsplit.mesh.weft.dev/web retrypolicy/web accesspolicy/clients trafficsplit.split.smi-spec.io/api)

t_begin start
if kl_start && ok "CRDs" "$K" apply -f crds/ -f crds/optional/ &&
    ok "weft-system" "$K" create namespace weft-system &&
    ok "established" "$K" wait --for=condition=Established --timeout=20s crd --all; then
    { ws_start a --disconnected-grace-s $GRACE && wait_for 20 holder_is a; } || t_fail "a did not lead"
    ws_start b --disconnected-grace-s $GRACE || t_fail "b did not start"
else
    t_fail "kubelite did not start"
fi
t_pass
[ "$T_FAILED" -eq 0 ] || t_summary

case_setup() {
    local p
    cat >"$KL_TMP/app.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $NS, labels: {weft.dev/inject: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: $NS}
EOF
    for p in web web-v1 web-v2 api api-v1 api-v2; do
        cat >>"$KL_TMP/app.yaml" <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: $p, namespace: $NS}
spec: {selector: {app: $p}, ports: [{port: 80, name: http, targetPort: 8080}]}
EOF
    done
    for p in p1 p2 p3; do
        cat >>"$KL_TMP/app.yaml" <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: $p, namespace: $NS, labels: {app: client}}
spec:
  serviceAccountName: client
  containers:
  - {name: app, image: app:1, ports: [{containerPort: 9000}]}
  - {name: weft-proxy, image: weft/proxy:dev}
EOF
    done
    cat >>"$KL_TMP/app.yaml" <<EOF
---
apiVersion: mesh.weft.dev/v1alpha1
kind: TrafficSplit
metadata: {name: web, namespace: $NS}
spec:
  service: web
  backends: [{service: web-v1, weight: 90}, {service: web-v2, weight: 10}]
---
apiVersion: mesh.weft.dev/v1alpha1
kind: RetryPolicy
metadata: {name: web, namespace: $NS}
spec:
  targetRef: {kind: Service, name: web}
  attempts: 2
  retryOn: ["503"]
---
apiVersion: mesh.weft.dev/v1alpha1
kind: AccessPolicy
metadata: {name: clients, namespace: $NS}
spec:
  selector: {matchLabels: {app: client}}
  action: Allow
  from: [{serviceAccount: {name: client}}]
---
apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: api, namespace: $NS}
spec:
  service: api
  backends: [{service: api-v1, weight: 50}, {service: api-v2, weight: 50}]
EOF
    ok "apply" "$K" apply -f "$KL_TMP/app.yaml" || return
    wait_for 30 stream_listening a || t_fail "a's stream never listened" || return
    wait_for 30 stream_listening b || t_fail "b's stream never listened" || return
    for p in p1 p2 p3; do
        cert_for "$p" "$p" || return
    done
    # Without agents, every resource waits for its three proxies.
    wait_for 20 cond_is ts/web False Pending || t_fail "ts/web: $(cond ts/web message)" || return
    assert_match "$(cond ts/web message)" "^3 of 3 proxies have not acknowledged a configuration with generation 1 yet: app/p1 \(disconnected\), app/p2 \(disconnected\), app/p3 \(disconnected\)$" "Pending without agents" || return
    CL_REPLICA=a cl_start p1 p1 p1
    CL_REPLICA=a cl_start p2 p2 p2
    CL_REPLICA=b cl_start p3 p3 p3
    for p in p1 p2 p3; do
        wait_for 20 has_event "$p" '^ack 1$' || t_fail "$p did not ACK: $(events "$p")" || return
    done
}

case_programmed() {
    local r
    for r in "${RES[@]}"; do
        ok "wait $r" "$K" wait -n "$NS" --for=condition=Programmed "$r" --timeout=20s || return
        assert_eq "$(cond "$r" reason) $(cond "$r" observedGeneration)" "Programmed 1" "$r" || return
        assert_eq "$(cond "$r" message)" "acknowledged by all 3 proxies it affects" "$r message" || return
    done
    wait_for 10 metric_is a 'weft_programmed_resources{state="programmed"}' 4 ||
        t_fail "weft_programmed_resources{programmed} on a: $(wd_metric a 'weft_programmed_resources{state="programmed"}')"
}

case_spread() {
    local r
    okv "a's publication" "$K" get configmap -n weft-system weftd-acks-a -o 'jsonpath={.data.proxies}' || return
    assert_eq "$(printf '%s' "$OUT" | pyjson '[[k, v[1]] for k, v in sorted(j.items()) if v[1]]')" \
        '[["app/p1", true], ["app/p2", true]]' "streams open on a" || return
    okv "b's publication" "$K" get configmap -n weft-system weftd-acks-b -o 'jsonpath={.data.proxies}' || return
    assert_eq "$(printf '%s' "$OUT" | pyjson '[[k, v[1]] for k, v in sorted(j.items()) if v[1]]')" \
        '[["app/p3", true]]' "streams open on b" || return
    # b's entry carries the acked hash prefix: the first 16 digits of p3's document hash
    assert_eq "$(printf '%s' "$OUT" | pyjson 'j["app/p3"][0]')" "$(head -c 16 "$KL_TMP/cl-p3/hash")" "p3's acked prefix" || return
    for r in written unchanged not_found conflict error; do
        assert_eq "$(wd_metric b "weft_status_writes_total{result=\"$r\"}")" 0 "b's status writes ($r)" || return
    done
    assert_eq "$(wd_metric a 'weft_ack_peers{state="fresh"}')" 1 "a sees b's publication" || return
}

msg_is() { # KIND/NAME MESSAGE
    [ "$(cond "$1" message)" = "$2" ]
}

msg_has() { # KIND/NAME TEXT
    cond "$1" message | grep -qF -- "$2"
}

metric_is() { # REPLICA SERIES VALUE
    [ "$(wd_metric "$1" "$2")" = "$3" ]
}

# While p3 is frozen: the change is on p1 and p2 only.
frozen_checks() {
    local p
    ok "reweight" "$K" patch ts/web -n "$NS" --type=merge \
        -p '{"spec":{"backends":[{"service":"web-v1","weight":50},{"service":"web-v2","weight":50}]}}' || return
    for p in p1 p2; do
        wait_for 20 has_event "$p" '^ack 2$' || t_fail "$p did not get the change: $(events "$p")" || return
    done
    wait_for 10 msg_is ts/web "1 of 3 proxies have not acknowledged a configuration with generation 2 yet: app/p3" ||
        t_fail "p3 not named alone: $(cond ts/web message)" || return
    assert_eq "$(cond ts/web status)/$(cond ts/web reason)/$(cond ts/web observedGeneration)" False/Pending/2 "with p3 frozen" || return
    if "$K" wait -n "$NS" --for=condition=Programmed ts/web --timeout=3s >/dev/null 2>&1; then
        t_fail "kubectl wait returned while p3 had not the change" || return
    fi
    # The retry policy did not change: p3's older document holds its current generation.
    assert_eq "$(cond rp/web status)" True "rp/web stays Programmed"
}

case_kubectl_wait() {
    local w0 t0 t1 rc p
    w0=$(writes)
    kill -STOP "${CL_PID[p3]}"
    frozen_checks
    rc=$?
    t0=$(now_ms)
    kill -CONT "${CL_PID[p3]}"
    [ "$rc" = 0 ] || return
    "$K" wait -n "$NS" --for=condition=Programmed ts/web --timeout=20s >/dev/null
    rc=$?
    t1=$(now_ms)
    assert_eq "$rc" 0 "kubectl wait after p3 resumed" || return
    for p in p1 p2 p3; do
        assert_eq "$(ppm_v2 "$p")" 500000 "$p holds the new weights when kubectl wait returns" || return
    done
    echo "    kubectl wait returned $((t1 - t0)) ms after p3 resumed; status writes for the change: $(($(writes) - w0))"
}

case_nack() {
    local reason="haproxy -c: [ALERT] parsing [weft.cfg:12]: unknown keyword 'bogus'" n2 n3
    n2=$(count_ev p2 '^ack ')
    printf '%s\n' "$reason" >"$KL_TMP/cl-p2/nack"
    ok "reweight" "$K" patch ts/web -n "$NS" --type=merge \
        -p '{"spec":{"backends":[{"service":"web-v1","weight":30},{"service":"web-v2","weight":70}]}}' || return
    wait_for 20 msg_is ts/web "1 of 3 proxies refused their configuration: app/p2: $reason" ||
        t_fail "the reason not in the condition: $(cond ts/web message)" || return
    assert_eq "$(cond ts/web status)/$(cond ts/web reason)" False/Rejected "p2 refused" || return
    wd_get a "/debug/proxies/$NS/p2"
    assert_eq "$(printf '%s' "$BODY" | pyjson '[j["sync"], j["lastNack"]["reason"]]')" "[\"rejected\", \"$reason\"]" "/debug/proxies on a" || return
    assert_eq "$(wd_metric a 'weft_proxy_config_sync{state="rejected"}')" 1 "rejected proxies on a" || return
    wait_for 5 metric_is a 'weft_programmed_resources{state="rejected"}' 1 ||
        t_fail "weft_programmed_resources{rejected}: $(wd_metric a 'weft_programmed_resources{state="rejected"}')" || return
    # p3 on b refuses too: the leader learns it from b's publication
    n3=$(count_ev p3 '^ack ')
    printf '%s\n' "render: bad port" >"$KL_TMP/cl-p3/nack"
    rm -f "$KL_TMP/cl-p2/nack"
    ok "reweight" "$K" patch ts/web -n "$NS" --type=merge \
        -p '{"spec":{"backends":[{"service":"web-v1","weight":20},{"service":"web-v2","weight":80}]}}' || return
    wait_for 20 msg_is ts/web "1 of 3 proxies refused their configuration: app/p3: render: bad port" ||
        t_fail "p3's NACK not in the condition: $(cond ts/web message)" || return
    wd_get b "/debug/proxies/$NS/p3"
    assert_eq "$(printf '%s' "$BODY" | pyjson '[j["sync"], j["lastNack"]["reason"]]')" '["rejected", "render: bad port"]' "/debug/proxies on b" || return
    assert_eq "$(wd_metric b 'weft_proxy_config_sync{state="rejected"}')" 1 "rejected proxies on b" || return
    assert_gt "$(count_ev p2 '^ack ')" "$n2" "p2 ACKs again" || return
    rm -f "$KL_TMP/cl-p3/nack"
    ok "reweight" "$K" patch ts/web -n "$NS" --type=merge \
        -p '{"spec":{"backends":[{"service":"web-v1","weight":10},{"service":"web-v2","weight":90}]}}' || return
    ok "Programmed again" "$K" wait -n "$NS" --for=condition=Programmed ts/web --timeout=20s || return
    assert_gt "$(count_ev p3 '^ack ')" "$n3" "p3 ACKs again" || return
}

case_disconnected() {
    local t0 t1
    cl_stop p3
    ok "reweight" "$K" patch ts/web -n "$NS" --type=merge \
        -p '{"spec":{"backends":[{"service":"web-v1","weight":60},{"service":"web-v2","weight":40}]}}' || return
    t0=$(now_ms)
    wait_for 10 msg_has ts/web 'app/p3 (disconnected)' ||
        t_fail "not Pending on the disconnected p3: $(cond ts/web message)" || return
    assert_eq "$(cond ts/web reason)" Pending "reason while the grace period runs" || return
    ok "Programmed after the grace period" "$K" wait -n "$NS" --for=condition=Programmed ts/web --timeout=20s || return
    t1=$(now_ms)
    assert_eq "$(cond ts/web message)" "acknowledged by 2 of the 3 proxies it affects; 1 disconnected for more than ${GRACE}s, not waited for: app/p3" "p3 reported, not waited for" || return
    [ $((t1 - t0)) -ge $((GRACE * 1000 - 1500)) ] || t_fail "True after $((t1 - t0)) ms, before the ${GRACE} s grace" || return
    echo "    True $((t1 - t0)) ms after the change (grace ${GRACE} s)"
    CL_REPLICA=b cl_start p3 p3 p3
    wait_for 20 has_event p3 '^ack 1$' || t_fail "p3 did not come back: $(events p3)" || return
    wait_for 10 msg_is ts/web "acknowledged by all 3 proxies it affects" ||
        t_fail "p3 back, still: $(cond ts/web message)"
}

# rv KIND/NAME: the resource's resourceVersion
rv() { "$K" get -n "$NS" "$1" -o 'jsonpath={.metadata.resourceVersion}'; }

case_coalescing() {
    local w0 w1 i acks0 acks1 t0 secs r
    local -A rv0
    wait_for 10 cond_is ts/web True Programmed || return
    sleep 1.5
    for r in "${RES[@]:1}"; do
        rv0[$r]=$(rv "$r")
    done
    w0=$(writes)
    acks0=$(($(count_ev p1 '^ack ') + $(count_ev p2 '^ack ') + $(count_ev p3 '^ack ')))
    t0=$(now_ms)
    for i in $(seq 1 20); do
        "$K" patch ts/web -n "$NS" --type=merge \
            -p "{\"spec\":{\"backends\":[{\"service\":\"web-v1\",\"weight\":$i},{\"service\":\"web-v2\",\"weight\":100}]}}" >/dev/null || t_fail "patch $i" || return
    done
    ok "Programmed" "$K" wait -n "$NS" --for=condition=Programmed ts/web --timeout=20s || return
    sleep 2
    w1=$(writes)
    secs=$((($(now_ms) - t0 + 999) / 1000))
    acks1=$(($(count_ev p1 '^ack ') + $(count_ev p2 '^ack ') + $(count_ev p3 '^ack ')))
    echo "    20 changes, $((acks1 - acks0)) ACKs in ${secs} s: $((w1 - w0)) status writes in all"
    for r in "${RES[@]:1}"; do
        [ "$(rv "$r")" = "${rv0[$r]}" ] ||
            t_fail "$r written during a burst that does not change it: $(cond "$r" reason): $(cond "$r" message); $("$K" get events -n "$NS" --no-headers 2>&1 | grep -i " ${r%%[./]*}/${r#*/} " | tail -3)" || return
    done
    # Each new generation is written once at once (its conditions' observedGeneration), and the
    # ACKs add at most one write a second (per-ACK writes would add one per ACK: up to 60 here).
    [ $((w1 - w0)) -le $((20 + secs + 1)) ] ||
        t_fail "$((w1 - w0)) status writes for 20 generations in ${secs} s" || return
    assert_eq "$(cond ts/web observedGeneration)" "$("$K" get ts/web -n "$NS" -o 'jsonpath={.metadata.generation}')" "observedGeneration" || return
}

case_failover() {
    local t0
    wd_kill a
    cl_stop p1
    cl_stop p2
    CL_REPLICA=b cl_start p1 p1 p1
    CL_REPLICA=b cl_start p2 p2 p2
    for p in p1 p2; do
        wait_for 20 has_event "$p" '^ack 1$' || t_fail "$p did not connect to b: $(events "$p")" || return
    done
    t0=$(now_ms)
    wait_for 40 holder_is b || t_fail "b did not take the Lease" || return
    echo "    b leads $(($(now_ms) - t0)) ms after the agents moved"
    ok "reweight" "$K" patch ts/web -n "$NS" --type=merge \
        -p '{"spec":{"backends":[{"service":"web-v1","weight":1},{"service":"web-v2","weight":1}]}}' || return
    ok "Programmed by b" "$K" wait -n "$NS" --for=condition=Programmed ts/web --timeout=20s || return
    assert_eq "$(cond ts/web message)" "acknowledged by all 3 proxies it affects" "b's message" || return
    assert_gt "$(wd_metric b 'weft_status_writes_total{result="written"}')" 0 "b writes status now" || return
    for p in p1 p2 p3; do
        assert_eq "$(ppm_v2 "$p")" 500000 "$p holds the change" || return
    done
}

t_run setup case_setup
t_run programmed case_programmed
t_run spread case_spread
t_run kubectl-wait case_kubectl_wait
t_run nack case_nack
t_run disconnected case_disconnected
t_run coalescing case_coalescing
t_run failover case_failover
t_summary
