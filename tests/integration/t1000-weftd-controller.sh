#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# t1000-weftd-controller.sh - weftd's controller against kubelite, driven by kubectl 1.33.
#
#   namespace      started before its namespace exists: weftd says so once, as an error naming
#                  it and the command that creates it; once created, "going on", and it leads
#   not-ready      started before the CRDs exist, /readyz is 503 "informers synced: no"; the
#                  optional SMI CRD's absence is said once (no informer failing on it)
#   crds           crd-check.sh: CRDs established, examples accepted (bookinfo-mesh.yaml applied),
#                  every file of tests/fixtures/mesh/crd-invalid rejected with its field named;
#                  weftd starts watching SMI TrafficSplits once their CRD appears
#   ready          /readyz turns 200 (informers synced, CA loaded) once the CRDs exist
#   invalid        a real apply of a negative weight fails with the schema's exact message
#   accepted       every Weft resource of examples/ gets Accepted=True (kubectl wait)
#   columns        kubectl get trafficsplits: SERVICE SPLIT ACCEPTED columns, SPLIT the summary
#                  weftd writes into status (every backend's share; achieved shares when the
#                  ready endpoints make them differ; hand-computed expectations)
#   resolved-refs  a split with a missing backend Service: ResolvedRefs=False naming it, True
#                  once the Service exists
#   conflict       a second split on the same apex: Accepted=False, Conflicted, naming the winner
#   events         the condition changes above as Events: kubectl get events --field-selector
#                  involvedObject.name=..., every field of the Warning Conflicted event, and the
#                  Events section of kubectl describe trafficsplit; t1/web's ResolvedRefs False
#                  RefNotFound (Warning) then True (Normal); weft_events_total
#   debug-config   a meshed pod's /debug/config document; a weight change shows (the time it took
#                  is printed)
#   metrics        reconcile counts, per-resource errors, histograms (cumulative buckets,
#                  _count), status writes by result, model and cache sizes equal to what
#                  kubectl counts
#   smi-removed    the SMI CRD deleted: weftd says so and its splits leave the model
# Env: BUILD, KUBELITE, WEFTD ($BUILD/bin/weftd), KUBECTL_DIR.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/weftd-lib.sh

if [ ! -x "$WEFTD" ]; then
    t_begin weftd
    t_skip "$WEFTD not built"
    t_summary
fi
t_begin start
if kl_start; then
    wd_start a || t_fail "weftd did not start"
else
    t_fail "kubelite did not start"
fi
t_pass
[ "$T_FAILED" -eq 0 ] || t_summary

logged() { # PATTERN: how many lines of a's log match (grep -E)
    grep -cE -- "$1" "${WD_LOG[a]}"
}

case_namespace() {
    local missing='level=error msg="namespace does not exist: no leader Lease, no CA Secret and no certificates until it is created \(kubectl create namespace weft-system\); waiting for it" namespace=weft-system'
    wait_for 10 grep -qE -- "$missing" "${WD_LOG[a]}" ||
        t_fail "no error about the missing namespace: $(grep -v level=debug "${WD_LOG[a]}" | tail -5)" ||
        return 1
    ok "create weft-system" "$K" create namespace weft-system || return 1
    wait_for 10 grep -q 'msg="namespace created; going on" namespace=weft-system' "${WD_LOG[a]}" ||
        t_fail "weftd did not notice its namespace" || return 1
    wait_for 20 sh -c "[ \"\$(\"\$0\" get lease -n weft-system weftd-leader -o 'jsonpath={.spec.holderIdentity}')\" = a ]" "$K" ||
        t_fail "no leader Lease after the namespace was created" || return 1
    # Said once, however long weftd waited.
    assert_eq "$(logged "$missing")" 1 "errors about the missing namespace"
}

case_smi_absent() {
    assert_eq "$(logged 'msg="optional resource not served: its objects are ignored until its CRD is installed" resource=trafficsplits.split.smi-spec.io')" \
        1 "notes that the SMI CRD is absent" || return 1
    assert_eq "$(logged 'resource=trafficsplits.split.smi-spec.io')" 1 \
        "log lines about the SMI resource before its CRD exists"
}

case_not_ready() {
    wd_get a /readyz
    assert_eq "$CODE" 503 "/readyz status before the CRDs exist" &&
        assert_contains "$BODY" "informers synced: no" "/readyz body"
}

case_crds() {
    run bash tests/fixtures/mesh/crd-check.sh "$K"
    [ "$RC" -eq 0 ] || t_fail "crd-check.sh: $OUT"
    assert_eq "$OUT" "crd-check: ok" "crd-check.sh output" || return 1
    wait_for 20 grep -q 'msg="optional resource served: watching it" resource=trafficsplits.split.smi-spec.io' "${WD_LOG[a]}" ||
        t_fail "weftd did not start watching SMI TrafficSplits after their CRD appeared"
}

case_ready() {
    # The mesh informers retry with backoff after the 404s from before the CRDs.
    wait_for 30 curl -sf "http://127.0.0.1:${WD_ADMIN[a]}/readyz"
    wd_get a /readyz
    assert_eq "$CODE" 200 "/readyz status" &&
        assert_eq "$BODY" $'ok\ninformers synced: yes\nca loaded: yes\n' "/readyz body"
}

case_invalid() {
    cat >"$KL_TMP/bad.yaml" <<'EOF'
apiVersion: mesh.weft.dev/v1alpha1
kind: TrafficSplit
metadata: {name: bad, namespace: default}
spec:
  service: web
  backends: [{service: web-v1, weight: -1}]
EOF
    fails "negative weight" "$K" apply -f "$KL_TMP/bad.yaml" || return 1
    assert_eq "$OUT" 'The TrafficSplit "bad" is invalid: spec.backends[0].weight: Invalid value: -1: spec.backends[0].weight in body should be greater than or equal to 0' \
        "rejection message" || return 1
    fails "the rejected split is not stored" "$K" get trafficsplit.mesh.weft.dev bad
}

case_accepted() {
    local f r ns res
    for f in trafficsplit accesspolicy retrypolicy smi-trafficsplit; do
        ok "apply examples/$f.yaml" "$K" apply -f "examples/$f.yaml" || return 1
    done
    # Every Weft resource of examples/ (SMI TrafficSplits carry no Weft status).
    for r in "default trafficsplit.mesh.weft.dev/reviews-canary" \
        "default accesspolicy/reviews-callers" "default retrypolicy/ratings-retries" \
        "bookinfo trafficsplit.mesh.weft.dev/reviews" \
        "bookinfo accesspolicy/details-and-reviews-from-productpage" \
        "bookinfo accesspolicy/ratings-from-reviews" \
        "bookinfo accesspolicy/productpage-no-sandbox" \
        "bookinfo accesspolicy/audit-other-namespaces" "bookinfo retrypolicy/ratings"; do
        read -r ns res <<<"$r"
        ok "wait Accepted $ns/$res" "$K" wait -n "$ns" --for=condition=Accepted "$res" --timeout=20s ||
            return 1
    done
    # bookinfo-mesh.yaml defines the versioned Services; the apex comes with Bookinfo itself.
    runo "$K" get trafficsplit.mesh.weft.dev reviews -n bookinfo -o json
    assert_eq "$(printf '%s' "$OUT" | pyjson '[(c["type"], c["status"], c["reason"], c["message"], c["observedGeneration"]) for c in j["status"]["conditions"]]')" \
        '[["Accepted", "True", "Accepted", "the split is valid", 1], ["ResolvedRefs", "False", "RefNotFound", "Service bookinfo/reviews (the apex) not found", 1], ["Programmed", "False", "ApexNotFound", "no proxy routes to Service bookinfo/reviews: it does not exist", 1]]' \
        "bookinfo/reviews conditions"
}

# Services a, b, c, d (apexes) and their backends X-v1, X-v2 in namespace sc, without
# selectors: their EndpointSlices are written here, one endpoint each (ready as given).
split_fixture() {
    local x v ready ip=0
    printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: sc}\n'
    for x in a b c d; do
        for v in "" -v1 -v2; do
            printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: sc}\nspec: {ports: [{name: http, port: 80, targetPort: 8080}]}\n' "$x$v"
        done
    done
    for x in a-v1 a-v2 b-v1 b-v2 c-v1 c-v2; do
        ready=true
        [ "$x" = b-v2 ] && ready=false
        ip=$((ip + 1))
        printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: %s-1, namespace: sc, labels: {kubernetes.io/service-name: %s}}\naddressType: IPv4\nendpoints: [{addresses: [10.9.0.%d], conditions: {ready: %s}}]\nports: [{name: http, port: 8080, protocol: TCP}]\n' "$x" "$x" "$ip" "$ready"
    done
    for x in "even a 80 20" "down b 50 50" "tiny c 1 999" "idle d 90 10"; do
        read -r n a w1 w2 <<<"$x"
        printf -- '---\napiVersion: mesh.weft.dev/v1alpha1\nkind: TrafficSplit\nmetadata: {name: %s, namespace: sc}\nspec:\n  service: %s\n  backends: [{service: %s-v1, weight: %s}, {service: %s-v2, weight: %s}]\n' "$n" "$a" "$a" "$w1" "$a" "$w2"
    done
}

split_is() { # NAME WANT: status.split of sc/NAME is WANT
    [ "$("$K" get ts -n sc "$1" -o 'jsonpath={.status.split}' 2>/dev/null)" = "$2" ]
}

# kubectl get trafficsplits with the real kubectl: the SPLIT column is the summary weftd writes
# into status, every backend with its share; the shares the endpoints achieve where they differ
# (expected values computed by hand: tiny's 1:999 cannot be met with per-endpoint weights of at
# most 256, so it gets 1:256 = 0.4%/99.6%; down's b-v2 has no ready endpoint, so b-v1 gets all).
case_columns() {
    local row want
    okv "get trafficsplits" "$K" get trafficsplits.mesh.weft.dev -n bookinfo || return 1
    assert_match "$(printf '%s' "$OUT" | head -1)" '^NAME +SERVICE +SPLIT +ACCEPTED +AGE$' \
        "header" || return 1
    # The apex does not exist: the requested shares only.
    assert_match "$OUT" '^reviews +reviews +reviews-v1 50%, reviews-v2 25%, reviews-v3 25% +True +[0-9]+s$' \
        "row of bookinfo/reviews" || return 1
    split_fixture >"$KL_TMP/sc.yaml"
    ok "apply the split fixture" "$K" apply -f "$KL_TMP/sc.yaml" || return 1
    for row in "even|a-v1 80%, a-v2 20%" \
        "down|b-v1 50% (achieved 100%), b-v2 50% (achieved 0%)" \
        "tiny|c-v1 0.1% (achieved 0.4%), c-v2 99.9% (achieved 99.6%)" \
        "idle|d-v1 90%, d-v2 10% (no ready endpoints)"; do
        want=${row#*|}
        wait_for 20 split_is "${row%%|*}" "$want" ||
            t_fail "status.split of sc/${row%%|*}: got '$("$K" get ts -n sc "${row%%|*}" -o 'jsonpath={.status.split}')', want '$want'" ||
            return 1
    done
    okv "get trafficsplits -n sc" "$K" get trafficsplits.mesh.weft.dev -n sc || return 1
    printf '%s\n' "$OUT" | sed 's/^/    | /'
    assert_match "$OUT" '^down +b +b-v1 50% \(achieved 100%\), b-v2 50% \(achieved 0%\) +True +[0-9]+s$' "row down" &&
        assert_match "$OUT" '^even +a +a-v1 80%, a-v2 20% +True +[0-9]+s$' "row even" &&
        assert_match "$OUT" '^idle +d +d-v1 90%, d-v2 10% \(no ready endpoints\) +True +[0-9]+s$' "row idle" &&
        assert_match "$OUT" '^tiny +c +c-v1 0\.1% \(achieved 0\.4%\), c-v2 99\.9% \(achieved 99\.6%\) +True +[0-9]+s$' "row tiny" ||
        return 1
    # b-v2's endpoint turns ready: the achieved shares are the requested ones again.
    ok "b-v2 ready" "$K" patch endpointslice -n sc b-v2-1 --type=json \
        -p '[{"op":"replace","path":"/endpoints/0/conditions/ready","value":true}]' || return 1
    wait_for 20 split_is down "b-v1 50%, b-v2 50%" ||
        t_fail "status.split of sc/down after b-v2 became ready: $("$K" get ts -n sc down -o 'jsonpath={.status.split}')"
}

case_resolved_refs() {
    local t0
    cat >"$KL_TMP/t1.yaml" <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: t1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: t1}
spec: {selector: {app: web}, ports: [{port: 80, name: http, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v1, namespace: t1}
spec: {selector: {app: web, v: v1}, ports: [{port: 80, name: http, targetPort: 8080}]}
---
apiVersion: mesh.weft.dev/v1alpha1
kind: TrafficSplit
metadata: {name: web, namespace: t1}
spec:
  service: web
  backends: [{service: web-v1, weight: 90}, {service: web-v2, weight: 10}]
EOF
    ok "apply t1" "$K" apply -f "$KL_TMP/t1.yaml" || return 1
    ok "ResolvedRefs=False" "$K" wait -n t1 --for=condition=ResolvedRefs=False ts/web --timeout=20s ||
        return 1
    okv "message" "$K" get ts/web -n t1 -o 'jsonpath={.status.conditions[?(@.type=="ResolvedRefs")].message}' ||
        return 1
    assert_eq "$OUT" "Service t1/web-v2 (backend) not found" "ResolvedRefs message" || return 1
    okv "Accepted" "$K" get ts/web -n t1 -o 'jsonpath={.status.conditions[?(@.type=="Accepted")].status}'
    assert_eq "$OUT" True "Accepted with a missing backend" || return 1
    t0=$(now_ms)
    ok "create web-v2" "$K" create service clusterip web-v2 -n t1 --tcp=80:8080 || return 1
    ok "ResolvedRefs=True" "$K" wait -n t1 --for=condition=ResolvedRefs=True ts/web --timeout=20s ||
        return 1
    echo "    ResolvedRefs True $(($(now_ms) - t0)) ms after kubectl create service"
    okv "message" "$K" get ts/web -n t1 -o 'jsonpath={.status.conditions[?(@.type=="ResolvedRefs")].message}'
    assert_eq "$OUT" "all referenced objects exist" "ResolvedRefs message"
}

case_conflict() {
    cat >"$KL_TMP/late.yaml" <<'EOF'
apiVersion: mesh.weft.dev/v1alpha1
kind: TrafficSplit
metadata: {name: web-late, namespace: t1}
spec:
  service: web
  backends: [{service: web-v1, weight: 1}]
EOF
    # Created after ts/web and named after it: it loses by both creationTimestamp and name.
    ok "apply web-late" "$K" apply -f "$KL_TMP/late.yaml" || return 1
    ok "Accepted=False" "$K" wait -n t1 --for=condition=Accepted=False ts/web-late --timeout=20s ||
        return 1
    okv "reason" "$K" get ts/web-late -n t1 -o 'jsonpath={.status.conditions[?(@.type=="Accepted")].reason}|{.status.conditions[?(@.type=="Accepted")].message}'
    assert_eq "${OUT%%|*}" Conflicted "reason" || return 1
    assert_contains "${OUT#*|}" "TrafficSplit t1/web (mesh.weft.dev) already splits Service web" \
        "message names the winner" || return 1
    okv "winner" "$K" get ts/web -n t1 -o 'jsonpath={.status.conditions[?(@.type=="Accepted")].status}'
    assert_eq "$OUT" True "the older split stays Accepted"
}

# events NAME: the Events about TrafficSplit t1/NAME, oldest first, one per line:
# type|reason|message|count (names end in hexadecimal nanoseconds: sorted by name is by time)
events() {
    "$K" get events -n t1 --field-selector "involvedObject.name=$1,involvedObject.kind=TrafficSplit" \
        -o json | pyjson "'\n'.join('%s|%s|%s|%s' % (e['type'], e['reason'], e['message'], e['count']) for e in sorted(j['items'], key=lambda e: e['metadata']['name']))"
}

case_events() {
    local uid want
    # Events are written after the status: wait for the last one of each object.
    wait_for 10 sh -c "\"\$0\" get events -n t1 --field-selector involvedObject.name=web-late -o name | grep -q ." "$K"
    okv "web-late events" "$K" get events -n t1 --field-selector involvedObject.name=web-late -o json ||
        return 1
    uid=$("$K" get ts/web-late -n t1 -o 'jsonpath={.metadata.uid}')
    assert_eq "$(printf '%s' "$OUT" | pyjson '[(e["type"], e["reason"], e["message"], e["count"], e["source"]["component"], e["reportingComponent"], e["reportingInstance"], e["involvedObject"]["apiVersion"], e["involvedObject"]["kind"], e["involvedObject"]["namespace"], e["involvedObject"]["name"], e["involvedObject"]["uid"], e["firstTimestamp"] == e["lastTimestamp"]) for e in j["items"]]')" \
        "[[\"Warning\", \"Conflicted\", \"TrafficSplit t1/web (mesh.weft.dev) already splits Service web and takes precedence (older creationTimestamp, then name); delete one of them or give them different ports\", 1, \"weftd\", \"weftd\", \"a\", \"mesh.weft.dev/v1alpha1\", \"TrafficSplit\", \"t1\", \"web-late\", \"$uid\", true]]" \
        "web-late's event" || return 1
    okv "describe" "$K" describe trafficsplit.mesh.weft.dev web-late -n t1 || return 1
    assert_match "$OUT" '^Events:$' "describe has an Events section" || return 1
    assert_match "$OUT" '^  Warning +Conflicted +[0-9]+s +weftd +TrafficSplit t1/web \(mesh\.weft\.dev\) already splits Service web and takes precedence' \
        "describe's Conflicted row" || return 1
    # t1/web: ResolvedRefs False while web-v2 was missing, then True (selected by reason too).
    wait_for 10 sh -c "\"\$0\" get events -n t1 --field-selector involvedObject.name=web,reason=ResolvedRefs,type=Normal -o name | grep -q ." "$K"
    want=$'Warning|RefNotFound|Service t1/web-v2 (backend) not found|1\nNormal|ResolvedRefs|all referenced objects exist|1'
    assert_eq "$(events web)" "$want" "t1/web's events" || return 1
    # The leader's counters: web-late's and web's events, and none failed.
    assert_gt "$(wd_metric a 'weft_events_total{result="created"}')" 2 "events created" || return 1
    assert_eq "$(wd_metric a 'weft_events_total{result="failed"}')" 0 "events failed"
}

# ppm SERVICE: requestedPpm of each backend of the split route to SERVICE in the client's document
ppm() {
    printf '%s' "$BODY" | pyjson "{b['service']: b['requestedPpm'] for o in j['outbound'] if o['service'] == '$1' for p in o['ports'] for r in p['routes'] if r.get('split') for b in r['backends']}"
}

case_debug_config() {
    local t0 t1 want got
    cat >"$KL_TMP/client.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: t1, labels: {app: client}}
spec:
  serviceAccountName: default
  containers:
  - {name: app, image: app:1, ports: [{containerPort: 9000}]}
  - {name: weft-proxy, image: weft/proxy:dev}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: t1, labels: {app: plain}}
spec:
  containers:
  - {name: app, image: app:1}
EOF
    ok "create pods" "$K" apply -f "$KL_TMP/client.yaml" || return 1
    ok "podIP" "$K" patch pod client -n t1 --subresource=status --type=merge \
        -p '{"status":{"podIP":"10.1.0.5","podIPs":[{"ip":"10.1.0.5"}]}}' || return 1
    wait_for 10 sh -c "curl -s -H 'Authorization: Bearer $(wd_token)' http://127.0.0.1:${WD_ADMIN[a]}/debug/config/t1/client | grep -q 10.1.0.5"
    wd_get a /debug/config/t1/client
    assert_eq "$CODE" 200 "document status" || return 1
    assert_eq "$(printf '%s' "$BODY" | pyjson '[j["schemaVersion"], j["proxy"], j["identity"]["spiffeID"], [l["port"] for l in j["inbound"]]]')" \
        '[1, {"ip": "10.1.0.5", "namespace": "t1", "pod": "client"}, "spiffe://cluster.local/ns/t1/sa/default", [9000]]' \
        "document head" || return 1
    assert_eq "$(ppm web)" '{"web-v1": 900000, "web-v2": 100000}' "requested split" || return 1
    wd_get a /debug/config/t1/plain
    assert_eq "$CODE" 404 "a pod without weft-proxy has no document" || return 1
    wd_get a /debug/config/t1/nosuch
    assert_eq "$CODE" 404 "a missing pod" || return 1

    ok "reweight" "$K" patch ts/web -n t1 --type=json \
        -p '[{"op":"replace","path":"/spec/backends/0/weight","value":1},{"op":"replace","path":"/spec/backends/1/weight","value":3}]' ||
        return 1
    tok=$(wd_token)
    t0=$(now_ms)
    want='{"web-v1": 250000, "web-v2": 750000}'
    got=
    # Poll with curl alone (cheap); the document is then checked exactly. How long it took is
    # printed, not asserted (a slow machine is no failure): that it changed, to the new weights.
    while [ $(($(now_ms) - t0)) -lt 20000 ]; do
        curl -s -H "Authorization: Bearer $tok" "http://127.0.0.1:${WD_ADMIN[a]}/debug/config/t1/client" |
            grep -q '"requestedPpm": 750000' && break
        sleep 0.01
    done
    t1=$(now_ms)
    wd_get a /debug/config/t1/client
    got=$(ppm web)
    assert_eq "$got" "$want" "split after the weight change" || return 1
    echo "    weight change visible in /debug/config $((t1 - t0)) ms after kubectl patch returned"
}

case_metrics() {
    local n s m
    for s in weft_reconciles_total 'weft_status_writes_total{result="written"}' \
        'weft_status_writes_total{result="unchanged"}'; do
        assert_gt "$(wd_metric a "$s")" 0 "$s" || return 1
    done
    # (not_found is not checked: crd-check.sh deletes what it creates, maybe before its write)
    for s in conflict error; do
        assert_eq "$(wd_metric a "weft_status_writes_total{result=\"$s\"}")" 0 "status writes $s" ||
            return 1
    done
    wd_get a /metrics
    m=$BODY
    assert_eq "$(printf '%s\n' "$m" | grep '^weft_reconcile_errors_total' | tr '\n' ' ')" \
        'weft_reconcile_errors_total{resource="namespaces"} 0 weft_reconcile_errors_total{resource="services"} 0 weft_reconcile_errors_total{resource="endpointslices.discovery.k8s.io"} 0 weft_reconcile_errors_total{resource="pods"} 0 weft_reconcile_errors_total{resource="serviceaccounts"} 0 weft_reconcile_errors_total{resource="trafficsplits.mesh.weft.dev"} 0 weft_reconcile_errors_total{resource="accesspolicies.mesh.weft.dev"} 0 weft_reconcile_errors_total{resource="retrypolicies.mesh.weft.dev"} 0 weft_reconcile_errors_total{resource="trafficsplits.split.smi-spec.io"} 0 ' \
        "reconcile errors by resource" || return 1
    # Histograms (one scrape): le bounds, cumulative counts, +Inf = _count = the matching counter.
    for s in weft_reconcile_duration_seconds:weft_reconciles_total \
        weft_proxy_compile_duration_seconds:weft_proxy_compiles_total \
        weft_compile_pass_duration_seconds:; do
        assert_eq "$(printf '%s\n' "$m" | python3 -c '
import sys, re
name, counter = sys.argv[1].split(":")
lines = sys.stdin.read().splitlines()
assert "# TYPE %s histogram" % name in lines, "no TYPE line"
b = [(re.match(r".*le=\"([^\"]+)\"", l).group(1), int(l.split()[1])) for l in lines if l.startswith(name + "_bucket{")]
les = " ".join(le for le, _ in b)
assert les == "0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf", les
assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), "not cumulative"
val = lambda s: float([l for l in lines if l.split() and l.split()[0] == s][0].split()[1])
count = int(val(name + "_count"))
assert b[-1][1] == count, "+Inf %d != _count %d" % (b[-1][1], count)
assert count > 0 and val(name + "_sum") > 0, "empty"
assert not counter or count == int(val(counter)), "_count %d != %s" % (count, counter)
print("ok")' "$s" 2>&1 | tail -1)" ok "histogram ${s%%:*}" || return 1
    done
    assert_eq "$(wd_metric a weft_leader)" 1 "weft_leader" || return 1
    assert_eq "$(wd_metric a weft_proxies)" 1 "weft_proxies" || return 1
    assert_match "$(wd_metric a weft_queue_depth)" '^[0-9]+$' "weft_queue_depth" || return 1
    n=$("$K" get trafficsplits.mesh.weft.dev -A --no-headers | wc -l)
    assert_eq "$n" 8 "TrafficSplits in the cluster (4 from examples/, 4 from the columns case)" || return 1
    assert_eq "$(wd_metric a 'weft_model_objects{kind="TrafficSplit"}')" "$n" "model TrafficSplits" ||
        return 1
    assert_eq "$(wd_metric a 'weft_model_objects{kind="SMITrafficSplit"}')" 2 "model SMI splits" ||
        return 1
    n=$("$K" get accesspolicies -A --no-headers | wc -l)
    assert_eq "$(wd_metric a 'weft_model_objects{kind="AccessPolicy"}')" "$n" "model AccessPolicies" ||
        return 1
    assert_eq "$(wd_metric a 'weft_cache_objects{group="",resource="pods"}')" 2 "pods cache" || return 1
    n=$("$K" get services -A --no-headers | wc -l)
    assert_eq "$(wd_metric a 'weft_cache_objects{group="",resource="services"}')" "$n" "services cache" ||
        return 1
    n=$("$K" get namespaces --no-headers | wc -l)
    assert_eq "$(wd_metric a 'weft_cache_objects{group="",resource="namespaces"}')" "$n" "namespaces cache"
}

smi_splits_gone() {
    [ "$(wd_metric a 'weft_model_objects{kind="SMITrafficSplit"}')" = 0 ]
}

case_smi_removed() {
    assert_eq "$(wd_metric a 'weft_model_objects{kind="SMITrafficSplit"}')" 2 "model SMI splits before" ||
        return 1
    ok "delete the SMI CRD" "$K" delete -f crds/optional/ || return 1
    wait_for 20 grep -q 'msg="optional resource no longer served: its objects leave the model" resource=trafficsplits.split.smi-spec.io' "${WD_LOG[a]}" ||
        t_fail "weftd did not notice the SMI CRD going" || return 1
    wait_for 10 smi_splits_gone ||
        t_fail "SMI splits still in the model: $(wd_metric a 'weft_model_objects{kind="SMITrafficSplit"}')"
}

t_run namespace case_namespace
t_run not-ready case_not_ready
t_run smi-absent case_smi_absent
t_run crds case_crds
t_run ready case_ready
t_run invalid case_invalid
t_run accepted case_accepted
t_run columns case_columns
t_run resolved-refs case_resolved_refs
t_run conflict case_conflict
t_run events case_events
t_run debug-config case_debug_config
t_run metrics case_metrics
t_run smi-removed case_smi_removed
t_summary
