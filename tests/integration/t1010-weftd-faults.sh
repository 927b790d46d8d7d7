#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# t1010-weftd-faults.sh - weftd's documents survive a hostile API server.
#
# kubelite runs with --fault-drop-watch 0.02 --fault-expire 0.2 --fault-error 0.05
# --watch-history 200: watches are cut, resumptions answered 410 Expired, and requests (weftd's
# LISTs, WATCHes, Lease and status writes, and the generator's writes) fail with 500 or 429.
# meshgen ($BUILD/tests/meshgen) makes thousands of seeded changes (Services, EndpointSlices with
# pod IPs, meshed Pods, TrafficSplits with changing weights, AccessPolicies, RetryPolicies,
# ServiceAccounts, namespace labels) in 35 s while weftd "a" watches. Then the faults are switched
# off (PUT /kubelite/faults), a fresh weftd "b" starts against the same cluster, and:
#
#   generator    every change was made (meshgen exit 0)
#   faults       kubelite injected watch drops, expiries and errors (GET /kubelite/faults)
#   documents    for every meshed pod, a's /debug/config equals b's (from-scratch) document;
#                both have a document for exactly the meshed pods; within 30 s of faults off
#   status       every custom resource's conditions carry its current generation
# Env: BUILD, KUBELITE, WEFTD ($BUILD/bin/weftd), MESHGEN ($BUILD/tests/meshgen), KUBECTL_DIR,
# MESHGEN_SEED (7), MESHGEN_CHANGES (4000), MESHGEN_SECONDS (35).
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/weftd-lib.sh

MESHGEN=${MESHGEN:-$BUILD/tests/meshgen}
SEED=${MESHGEN_SEED:-7}
for b in "$WEFTD" "$MESHGEN"; do
    if [ ! -x "$b" ]; then
        t_begin faults
        t_skip "$b not built"
        t_summary
    fi
done

t_begin start
if kl_start --fault-seed "$SEED" --fault-drop-watch 0.02 --fault-expire 0.2 --fault-error 0.05 \
    --watch-history 200; then
    # kubectl sees the injected errors too: everything here is retried.
    retry 20 "$K" apply -f crds/ -f crds/optional/ >/dev/null 2>&1 ||
        t_fail "cannot apply the CRDs"
    retry 20 "$K" wait --for=condition=Established --timeout=20s crd --all >/dev/null 2>&1 ||
        t_fail "CRDs not established"
    retry 20 "$K" create namespace weft-system >/dev/null 2>&1 || t_fail "cannot create weft-system"
    wd_start a || t_fail "weftd a did not start"
    wait_for 30 wd_synced a || t_fail "weftd a did not sync"
else
    t_fail "kubelite did not start"
fi
t_pass
[ "$T_FAILED" -eq 0 ] || t_summary

case_generator() {
    local out want=${MESHGEN_CHANGES:-4000}
    out=$(timeout -k 5 300 "$MESHGEN" --kubeconfig "$KUBECONFIG" --seed "$SEED" \
        --changes "$want" --duration "${MESHGEN_SECONDS:-35}" 2>&1)
    local rc=$?
    echo "    $out" | head -5
    [ "$rc" -eq 0 ] || t_fail "meshgen exit $rc" || return 1
    assert_match "$out" "^meshgen: changes=$want " "meshgen made every change"
}

case_faults() {
    local d e x
    echo '{"dropWatch": 0, "expire": 0, "error": 0}' >"$KL_TMP/faults-off.json"
    okv "faults off" "$K" replace --raw /kubelite/faults -f "$KL_TMP/faults-off.json" || return 1
    FAULTS_OFF=$(now_ms)
    d=$(printf '%s' "$OUT" | pyjson 'j["injected"]["watchDrops"]')
    e=$(printf '%s' "$OUT" | pyjson 'j["injected"]["expires"]')
    x=$(printf '%s' "$OUT" | pyjson 'j["injected"]["errors"]')
    echo "    injected: $d watch drops, $e expiries, $x errors"
    assert_gt "$d" 0 "watch drops" && assert_gt "$e" 0 "expiries" && assert_gt "$x" 0 "errors" ||
        return 1
    assert_eq "$(printf '%s' "$OUT" | pyjson '[j["dropWatch"], j["expire"], j["error"]]')" \
        '[0.0, 0.0, 0.0]' "faults after PUT"
}

case_documents() {
    local n end t tries=0
    wd_meshed "$KL_TMP/meshed.txt" || t_fail "cannot list the meshed pods" || return 1
    n=$(wc -l <"$KL_TMP/meshed.txt")
    assert_gt "$n" 20 "meshed pods in the final state" || return 1
    wd_start b || return 1
    wait_for 30 wd_synced b || t_fail "weftd b did not sync" || return 1
    echo "    weftd b synced $(($(now_ms) - FAULTS_OFF)) ms after the faults stopped"
    end=$((SECONDS + 30))
    while :; do
        tries=$((tries + 1))
        if wd_docs b "$KL_TMP/docs-b" "$KL_TMP/meshed.txt" &&
            wd_docs a "$KL_TMP/docs-a" "$KL_TMP/meshed.txt" &&
            diff -r "$KL_TMP/docs-a" "$KL_TMP/docs-b" >"$KL_TMP/docs.diff" &&
            [ "$(wd_metric a weft_proxies)" = "$n" ] && [ "$(wd_metric b weft_proxies)" = "$n" ]; then
            break
        fi
        if [ "$SECONDS" -ge "$end" ]; then
            t_fail "documents differ 30 s after the faults stopped (a: $(wd_metric a weft_proxies), b: $(wd_metric b weft_proxies) documents, $n meshed pods): $(head -c 3000 "$KL_TMP/docs.diff")"
            return 1
        fi
        sleep 0.5
    done
    t=$(($(now_ms) - FAULTS_OFF))
    echo "    $n documents equal ($(cat "$KL_TMP"/docs-a/*.json | wc -c) bytes, $(grep -ho '"requestedPpm"' "$KL_TMP"/docs-a/*.json | wc -l) weighted backends), $t ms after the faults stopped (comparison $tries)"
    echo "    weftd a: reconciles $(wd_metric a weft_reconciles_total), compiles $(wd_metric a weft_proxy_compiles_total), status writes $(wd_metric a 'weft_status_writes_total{result="written"}') ($(wd_metric a 'weft_status_writes_total{result="error"}') failed, $(wd_metric a 'weft_status_writes_total{result="conflict"}') conflicted)"
}

# lagging: the custom resources whose conditions do not all carry their generation, into LAG;
# how many were listed into LISTED. A failed query sets LAG_ERR (and returns 1): it never reads
# as "nothing lags".
lagging() {
    local r line
    LAG= LAG_ERR= LISTED=0
    for r in trafficsplits.mesh.weft.dev accesspolicies retrypolicies; do
        runo "$K" get "$r" -A -o json
        if [ "$RC" -ne 0 ]; then
            LAG_ERR="kubectl get $r: exit $RC: $ERR"
            return 1
        fi
        if ! line=$(printf '%s' "$OUT" | pyjson 'str(len(j["items"])) + "".join(" " + o["metadata"]["namespace"] + "/" + o["metadata"]["name"] for o in j["items"] if sorted(set(c.get("observedGeneration") for c in o.get("status", {}).get("conditions", []))) != [o["metadata"]["generation"]])'); then
            LAG_ERR="kubectl get $r: not a list: $(printf '%s' "$OUT" | head -c 300)"
            return 1
        fi
        LISTED=$((LISTED + ${line%% *}))
        [ "$line" = "${line%% *}" ] || LAG+=" ${line#* }"
    done
    [ -z "$LAG" ]
}

case_status() {
    wait_for 10 lagging
    lagging
    [ -z "$LAG_ERR" ] || t_fail "$LAG_ERR" || return 1
    assert_gt "$LISTED" 5 "custom resources listed" || return 1
    echo "    $LISTED custom resources, every condition at its generation"
    assert_eq "$LAG" "" "custom resources whose status lags their generation"
}

t_run generator case_generator
t_run faults case_faults
t_run documents case_documents
t_run status case_status
t_summary
