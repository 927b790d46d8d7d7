#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# Admission webhooks on kubelite, driven by the real kubectl 1.33 against build/tests/testwebhook
# over HTTPS with certificates made here with the openssl CLI:
#   patch-url        a url target patches pods of a matching namespace, not of another one; the
#                    AdmissionReview it receives is checked field by field
#   object-selector  objectSelector keeps a labelled pod away from the webhook
#   deny             the exact denial message; nothing stored
#   bad-uid, no-type invalid responses: "failed calling webhook ..." with kube-apiserver's reasons
#   timeout          timeoutSeconds 1 against a webhook sleeping 10 s: Fail refuses with "context
#                    deadline exceeded" before the webhook has answered; Ignore goes on (to the
#                    next webhook) before it has answered too (order, not a duration: the time
#                    taken is printed)
#   webhook-down     a stopped webhook: Fail refuses (connection refused), Ignore proceeds
#   wrong-ca         a caBundle of another CA: the TLS failure is reported, nothing stored
#   service          a `service` target (Service without selector + a hand-made EndpointSlice at
#                    127.0.0.1) with a certificate valid only for <svc>.<ns>.svc; the same
#                    certificate behind a url by IP fails the host name check
#   order-reinvoke   two configurations called in name order, each patch applied before the next
#                    call; reinvocationPolicy IfNeeded calls the first once more
#   validating       a validating webhook sees the mutated object and denies: nothing stored; a
#                    validating webhook returning a patch is an invalid response
#   dry-run          dryRun=All: sideEffects None is called with dryRun true, nothing stored;
#                    sideEffects Unknown refuses the dry run without calling the webhook
#   deployment       pods made by kubelite's ReplicaSet controller go through the webhook too
# Env: BUILD, KUBELITE, TESTWEBHOOK ($BUILD/tests/testwebhook), KUBECTL_DIR.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

abs() { case $1 in /*) echo "$1" ;; *) echo "$KL_REPO/$1" ;; esac }
WH=$(abs "${TESTWEBHOOK:-$BUILD/tests/testwebhook}")
K="$KUBECTL_DIR/kubectl.1.33"
C=$KL_TMP/certs
declare -A PORT PID

# --- certificates, webhooks, configurations ---------------------------------------------------

# leaf NAME CA SAN: a P-256 serving certificate NAME.crt/NAME.key signed by CA (in $C)
leaf() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$C/$1.key" -out "$C/$1.csr" 2>/dev/null &&
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$3" \
            >"$C/$1.ext" &&
        openssl x509 -req -in "$C/$1.csr" -CA "$C/$2.crt" -CAkey "$C/$2.key" -CAcreateserial \
            -days 1 -extfile "$C/$1.ext" -out "$C/$1.crt" 2>/dev/null
}

# ca NAME: a self-signed P-256 CA NAME.crt/NAME.key (in $C)
ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj "/CN=$1" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign -keyout "$C/$1.key" -out "$C/$1.crt" \
        2>/dev/null
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_hook ID MODE CERT [testwebhook options...]: a testwebhook on a free port, its reviews
# logged to $KL_TMP/ID.log; PORT[ID], PID[ID].
start_hook() {
    local id=$1 mode=$2 cert=$3 port
    shift 3
    port=$(free_port)
    "$WH" --listen "127.0.0.1:$port" --cert "$C/$cert.crt" --key "$C/$cert.key" --mode "$mode" \
        --log "$KL_TMP/$id.log" "$@" >"$KL_TMP/$id.out" 2>&1 &
    PID[$id]=$!
    PORT[$id]=$port
    bg_track "${PID[$id]}"
    wait_for 5 port_open "$port"
}

# config KIND NAME then webhook specs, one per line: "HOOKNAME|NAMESPACE|CLIENTCONFIG|EXTRA",
# EXTRA being more YAML flow entries for the webhook (", failurePolicy: Ignore"). Applied with
# kubectl. The defaults (sideEffects None, failurePolicy Fail) come first and EXTRA may not
# repeat a key: SE and FP override them.
config() {
    local kind=$1 name=$2 line hook ns cc extra
    shift 2
    {
        printf 'apiVersion: admissionregistration.k8s.io/v1\nkind: %s\nmetadata: {name: %s}\nwebhooks:\n' \
            "$kind" "$name"
        for line in "$@"; do
            IFS='|' read -r hook ns cc extra <<<"$line"
            printf -- '- {name: %s, admissionReviewVersions: [v1], sideEffects: %s, failurePolicy: %s,\n' \
                "$hook" "${SE:-None}" "${FP:-Fail}"
            printf '   clientConfig: %s,\n' "$cc"
            printf '   rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}],\n'
            printf '   namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: %s}}%s}\n' \
                "$ns" "$extra"
        done
    } >"$KL_TMP/$name.yaml"
    ok "apply $kind $name" "$K" apply -f "$KL_TMP/$name.yaml"
}

# url ID [CA] [PATH]: a url clientConfig for the webhook ID
url() {
    printf '{url: "https://127.0.0.1:%s%s", caBundle: %s}' "${PORT[$1]}" "${3:-/mutate}" \
        "$(base64 -w0 <"$C/${2:-ca}.crt")"
}

# reviews ID [JQ-FILTER]: the reviews webhook ID received (JSON lines), filtered, into OUT
reviews() {
    OUT=$(jq -c "${2:-.}" "$KL_TMP/$1.log" 2>/dev/null)
}

# count_reviews ID NAMESPACE: how many reviews for objects in NAMESPACE webhook ID received
count_reviews() {
    jq -c "select(.request.namespace == \"$2\")" "$KL_TMP/$1.log" 2>/dev/null | grep -c .
}

ns() { ok "namespace $1" "$K" create namespace "$1"; }

# pod NS NAME [LABELS]: kubectl run a pod (not started: no kubelet here)
pod() {
    run "$K" run -n "$1" "$2" --image=weft/testapp --restart=Never ${3:+--labels="$3"}
}

# jpod NS NAME JSONPATH: a field of a stored pod into OUT
jpod() {
    okv "get pod $1/$2" "$K" get pod -n "$1" "$2" -o "jsonpath=$3"
}

absent() { # NS NAME: the pod is not stored
    run "$K" get pod -n "$1" "$2"
    [ "$RC" -ne 0 ] && case $OUT in *NotFound*) return 0 ;; esac
    t_fail "pod $1/$2 was stored: $OUT"
}

ms() { date +%s%3N; }

# --- cases -------------------------------------------------------------------------------------

case_patch_url() {
    ns adm-patch && ns adm-plain || return
    config MutatingWebhookConfiguration patch-url "patch.weft.test|adm-patch|$(url patch)|" || return
    pod adm-patch p1
    assert_eq "$RC" 0 "create in a matching namespace: $OUT" || return
    jpod adm-patch p1 '{.metadata.labels.testwebhook} {.metadata.annotations.testwebhook/calls} {.metadata.labels.run}' || return
    assert_eq "$OUT" "patched 1 p1" "pod patched by the webhook (label, annotation, own label kept)" || return
    # The review: AdmissionReview v1, every field kube-apiserver sends for a create.
    reviews patch 'select(.request.name == "p1") | [.apiVersion, .kind, .request.kind.group, .request.kind.version, .request.kind.kind, .request.resource.resource, .request.requestKind.kind, .request.requestResource.resource, .request.namespace, .request.operation, .request.dryRun, .request.options.kind, .request.options.apiVersion, .request.object.metadata.name, .request.object.metadata.namespace, .request.object.spec.containers[0].image, (.request.oldObject == null), (.request.uid | test("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"))] | join(" ")'
    assert_eq "$OUT" '"admission.k8s.io/v1 AdmissionReview  v1 Pod pods Pod pods adm-patch CREATE false CreateOptions meta.k8s.io/v1 p1 adm-patch weft/testapp true true"' \
        "review fields" || return
    reviews patch 'select(.request.name == "p1") | .request.userInfo.username'
    assert_eq "$OUT" '"kubelite-admin"' "userInfo of the kubectl user" || return
    pod adm-plain p1
    assert_eq "$RC" 0 "create in another namespace: $OUT" || return
    jpod adm-plain p1 '{.metadata.labels}' || return
    assert_eq "$OUT" '{"run":"p1"}' "pod of a non-matching namespace left alone" || return
    assert_eq "$(count_reviews patch adm-plain)" 0 "webhook not called for adm-plain" || return
    assert_eq "$(count_reviews patch adm-patch)" 1 "webhook called once for adm-patch" || return
}

case_object_selector() {
    ns adm-objsel || return
    config MutatingWebhookConfiguration objsel \
        "objsel.weft.test|adm-objsel|$(url patch)|, objectSelector: {matchExpressions: [{key: hook, operator: NotIn, values: [skip]}]}" ||
        return
    pod adm-objsel skipped hook=skip
    assert_eq "$RC" 0 "create skipped: $OUT" || return
    pod adm-objsel taken hook=take
    assert_eq "$RC" 0 "create taken: $OUT" || return
    jpod adm-objsel skipped '{.metadata.labels.testwebhook}' || return
    assert_eq "$OUT" "" "pod outside the objectSelector not patched" || return
    jpod adm-objsel taken '{.metadata.labels.testwebhook}' || return
    assert_eq "$OUT" "patched" "pod inside the objectSelector patched" || return
    reviews patch 'select(.request.namespace == "adm-objsel") | .request.name'
    assert_eq "$OUT" '"taken"' "only the selected pod reviewed" || return
}

case_deny() {
    ns adm-deny || return
    config MutatingWebhookConfiguration deny "deny.weft.test|adm-deny|$(url deny)|" || return
    pod adm-deny d1
    assert_ne "$RC" 0 "create must fail" || return
    assert_eq "$OUT" 'Error from server: admission webhook "deny.weft.test" denied the request: denied by testwebhook' \
        "denial message (the webhook's code 403, no reason)" || return
    absent adm-deny d1 || return
    # The Status itself, through the raw API: code and message as the webhook gave them.
    printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"d2"},"spec":{"containers":[{"name":"c","image":"weft/testapp"}]}}' \
        >"$KL_TMP/d2.json"
    run "$K" create --raw /api/v1/namespaces/adm-deny/pods -f "$KL_TMP/d2.json" -v=6
    assert_ne "$RC" 0 "raw create must fail" || return
    assert_match "$OUT" 'verb="POST" url="https://127\.0\.0\.1:[0-9]+/api/v1/namespaces/adm-deny/pods" status="403 Forbidden"' \
        "HTTP status: the webhook's code" || return
    absent adm-deny d2 || return
}

case_bad_uid() {
    local uid
    ns adm-baduid || return
    config MutatingWebhookConfiguration bad-uid "baduid.weft.test|adm-baduid|$(url baduid)|" || return
    pod adm-baduid u1
    assert_ne "$RC" 0 "create must fail" || return
    local msg=$OUT
    reviews baduid 'select(.request.name == "u1") | .request.uid'
    uid=${OUT//\"/}
    assert_match "$uid" '^[0-9a-f-]{36}$' "the review's uid" || return
    assert_eq "$msg" "Error from server (InternalError): Internal error occurred: failed calling webhook \"baduid.weft.test\": received invalid webhook response: expected response.uid=\"$uid\", got \"not-the-uid\"" \
        "bad uid message" || return
    absent adm-baduid u1 || return
}

case_no_type() {
    ns adm-notype || return
    config MutatingWebhookConfiguration no-type "notype.weft.test|adm-notype|$(url notype)|" || return
    pod adm-notype n1
    assert_ne "$RC" 0 "create must fail" || return
    assert_eq "$OUT" 'Error from server (InternalError): Internal error occurred: failed calling webhook "notype.weft.test": received invalid webhook response: webhook returned response.patch but not response.patchType' \
        "patch without patchType" || return
    absent adm-notype n1 || return
}

# not_answered ID: the webhook ID received one review in adm-slow and has not answered it yet.
not_answered() {
    local uid
    uid=$(jq -r 'select(.request.namespace == "adm-slow") | .request.uid' "$KL_TMP/$1.log" 2>/dev/null | tail -1)
    [ -n "$uid" ] || { t_fail "$1 received no review"; return 1; }
    if grep -q "^answered $uid\$" "$KL_TMP/$1.out"; then
        t_fail "the API server waited for $1's answer instead of timing out"
        return 1
    fi
}

case_timeout() {
    local t0 el
    ns adm-slow || return
    config MutatingWebhookConfiguration slow "slow.weft.test|adm-slow|$(url slow)|, timeoutSeconds: 1" ||
        return
    t0=$(ms)
    pod adm-slow s1
    el=$(($(ms) - t0))
    assert_ne "$RC" 0 "create must fail" || return
    assert_eq "$OUT" "Error from server (InternalError): Internal error occurred: failed calling webhook \"slow.weft.test\": failed to call webhook: Post \"https://127.0.0.1:${PORT[slow]}/mutate?timeout=1s\": context deadline exceeded" \
        "timeout message" || return
    not_answered slow || return
    echo "    Fail: refused after $el ms (timeoutSeconds 1)"
    absent adm-slow s1 || return
    # Ignore (a second slow webhook: the first is still asleep): the failure is skipped after
    # the timeout, and the next webhook still runs.
    FP=Ignore config MutatingWebhookConfiguration slow \
        "slow.weft.test|adm-slow|$(url slow2)|, timeoutSeconds: 1" ||
        return
    config MutatingWebhookConfiguration slow-next "next.weft.test|adm-slow|$(url patch)|" || return
    t0=$(ms)
    pod adm-slow s2
    el=$(($(ms) - t0))
    assert_eq "$RC" 0 "create under Ignore: $OUT" || return
    not_answered slow2 || return
    echo "    Ignore: went on after $el ms (timeoutSeconds 1)"
    jpod adm-slow s2 '{.metadata.labels.testwebhook}' || return
    assert_eq "$OUT" patched "the webhook after the ignored one was called" || return
    assert_eq "$(count_reviews slow adm-slow) $(count_reviews slow2 adm-slow)" "1 1" \
        "each slow webhook received its review" || return
    if ! kill -0 "${PID[slow]}" || ! kill -0 "${PID[slow2]}"; then
        t_fail "a slow webhook died"
        return 1
    fi
}

case_webhook_down() {
    ns adm-down || return
    start_hook down patch ip || { t_fail "webhook did not start"; return 1; }
    config MutatingWebhookConfiguration down "down.weft.test|adm-down|$(url down)|" || return
    pod adm-down up
    assert_eq "$RC" 0 "create while the webhook runs: $OUT" || return
    bg_stop "${PID[down]}"
    pod adm-down x1
    assert_ne "$RC" 0 "Fail: create must fail" || return
    assert_eq "$OUT" "Error from server (InternalError): Internal error occurred: failed calling webhook \"down.weft.test\": failed to call webhook: Post \"https://127.0.0.1:${PORT[down]}/mutate?timeout=10s\": dial tcp 127.0.0.1:${PORT[down]}: connect: connection refused" \
        "connection refused message" || return
    absent adm-down x1 || return
    FP=Ignore config MutatingWebhookConfiguration down "down.weft.test|adm-down|$(url down)|" || return
    pod adm-down x2
    assert_eq "$RC" 0 "Ignore: create proceeds: $OUT" || return
    jpod adm-down x2 '{.metadata.labels.testwebhook}' || return
    assert_eq "$OUT" "" "not patched" || return
}

case_wrong_ca() {
    ns adm-ca || return
    config MutatingWebhookConfiguration wrong-ca "wrongca.weft.test|adm-ca|$(url patch otherca)|" || return
    pod adm-ca w1
    assert_ne "$RC" 0 "create must fail" || return
    assert_eq "$OUT" "Error from server (InternalError): Internal error occurred: failed calling webhook \"wrongca.weft.test\": failed to call webhook: Post \"https://127.0.0.1:${PORT[patch]}/mutate?timeout=10s\": tls: failed to verify certificate: x509: certificate signed by unknown authority" \
        "TLS failure message" || return
    absent adm-ca w1 || return
    assert_eq "$(count_reviews patch adm-ca)" 0 "no review reached the webhook" || return
}

case_service() {
    local cc
    ns hooks && ns adm-svc || return
    cat >"$KL_TMP/svc.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: hooksvc, namespace: hooks}
spec:
  ports: [{name: https, port: 443, targetPort: ${PORT[svc]}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hooksvc-manual
  namespace: hooks
  labels: {kubernetes.io/service-name: hooksvc}
addressType: IPv4
ports: [{name: https, port: ${PORT[svc]}, protocol: TCP}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
EOF
    ok "service and slice" "$K" apply -f "$KL_TMP/svc.yaml" || return
    cc="{service: {name: hooksvc, namespace: hooks, path: /mutate, port: 443}, caBundle: $(base64 -w0 <"$C/ca.crt")}"
    config MutatingWebhookConfiguration svc "svc.weft.test|adm-svc|$cc|" || return
    pod adm-svc v1
    assert_eq "$RC" 0 "create through the service: $OUT" || return
    jpod adm-svc v1 '{.metadata.labels.testwebhook}' || return
    assert_eq "$OUT" patched "patched through the service target" || return
    assert_eq "$(count_reviews svc adm-svc)" 1 "the service's webhook got the review" || return
    # The certificate names only hooksvc.hooks.svc: reached by IP it fails verification.
    config MutatingWebhookConfiguration svc "svc.weft.test|adm-svc|$(url svc)|" || return
    pod adm-svc v2
    assert_ne "$RC" 0 "the service certificate is not valid for 127.0.0.1" || return
    assert_contains "$OUT" "failed calling webhook \"svc.weft.test\": failed to call webhook: Post \"https://127.0.0.1:${PORT[svc]}/mutate?timeout=10s\": tls: failed to verify certificate: x509: " \
        "host name check" || return
    absent adm-svc v2 || return
    # No ready endpoint: the call cannot be made.
    ok "delete slice" "$K" delete endpointslice -n hooks hooksvc-manual || return
    config MutatingWebhookConfiguration svc "svc.weft.test|adm-svc|$cc|" || return
    pod adm-svc v3
    assert_ne "$RC" 0 "no endpoints" || return
    assert_contains "$OUT" 'failed calling webhook "svc.weft.test": failed to call webhook: Post "https://hooksvc.hooks.svc:443/mutate?timeout=10s": no endpoints available for service "hooksvc"' \
        "no endpoints message" || return
}

case_order_reinvoke() {
    local i
    ns adm-order || return
    # Prime the second webhook's call counter so that its annotation differs from the first's.
    for i in 1 2; do
        curl -s --cacert "$C/ca.crt" "https://127.0.0.1:${PORT[second]}/" \
            -d "{\"request\":{\"uid\":\"prime-$i\"}}" >/dev/null || { t_fail "priming"; return 1; }
    done
    # Created in reverse order: calls follow the configuration names, not creation.
    config MutatingWebhookConfiguration b-second "second.weft.test|adm-order|$(url second)|" || return
    config MutatingWebhookConfiguration a-first \
        "first.weft.test|adm-order|$(url first)|, reinvocationPolicy: IfNeeded" || return
    pod adm-order o1
    assert_eq "$RC" 0 "create: $OUT" || return
    reviews first 'select(.request.name == "o1") | [.request.object.metadata.labels.testwebhook // "-", .request.object.metadata.annotations["testwebhook/calls"] // "-"] | join(",")'
    assert_eq "$OUT" $'"-,-"\n"patched,3"' \
        "first: called on the original object, then reinvoked after the second's change" || return
    reviews second 'select(.request.name == "o1") | [.request.object.metadata.labels.testwebhook // "-", .request.object.metadata.annotations["testwebhook/calls"] // "-"] | join(",")'
    assert_eq "$OUT" '"patched,1"' "second: called once, seeing the first's patch" || return
    jpod adm-order o1 '{.metadata.annotations.testwebhook/calls}' || return
    assert_eq "$OUT" 2 "the reinvocation's patch is the last applied" || return
    # Never (the default) on both: no reinvocation.
    config MutatingWebhookConfiguration a-first "first.weft.test|adm-order|$(url first)|" || return
    pod adm-order o2
    assert_eq "$RC" 0 "create: $OUT" || return
    reviews first 'select(.request.name == "o2") | .request.name'
    assert_eq "$OUT" '"o2"' "without IfNeeded the first is called once" || return
}

case_validating() {
    ns adm-val || return
    config MutatingWebhookConfiguration val-mutate "valmut.weft.test|adm-val|$(url patch)|" || return
    config ValidatingWebhookConfiguration val-deny "vdeny.weft.test|adm-val|$(url deny)|" || return
    pod adm-val v1
    assert_ne "$RC" 0 "create must fail" || return
    assert_eq "$OUT" 'Error from server: admission webhook "vdeny.weft.test" denied the request: denied by testwebhook' \
        "validating denial" || return
    absent adm-val v1 || return
    reviews deny 'select(.request.name == "v1") | .request.object.metadata.labels.testwebhook'
    assert_eq "$OUT" '"patched"' "the validating webhook saw the mutated object" || return
    # A validating webhook may not patch.
    config ValidatingWebhookConfiguration val-deny "vpatch.weft.test|adm-val|$(url patch)|" || return
    pod adm-val v2
    assert_ne "$RC" 0 "create must fail" || return
    assert_eq "$OUT" 'Error from server (InternalError): Internal error occurred: failed calling webhook "vpatch.weft.test": received invalid webhook response: validating webhook may not return response.patch' \
        "validating webhook returning a patch" || return
    absent adm-val v2 || return
    ok "delete validating config" "$K" delete validatingwebhookconfiguration val-deny || return
    pod adm-val v3
    assert_eq "$RC" 0 "create without the validating webhook: $OUT" || return
}

case_dry_run() {
    local before
    ns adm-dry || return
    config MutatingWebhookConfiguration dry "dry.weft.test|adm-dry|$(url patch)|" || return
    okv "dry-run create" "$K" run -n adm-dry r1 --image=weft/testapp --restart=Never \
        --dry-run=server -o 'jsonpath={.metadata.labels.testwebhook}' || return
    assert_eq "$OUT" patched "the dry-run answer carries the patch" || return
    absent adm-dry r1 || return
    reviews patch 'select(.request.name == "r1") | [.request.dryRun, .request.options.dryRun[0]] | map(tostring) | join(" ")'
    assert_eq "$OUT" '"true All"' "webhook called with dryRun true" || return
    # sideEffects Unknown: a dry run is refused before any call; a real create still calls it.
    SE=Unknown config MutatingWebhookConfiguration dry "dry.weft.test|adm-dry|$(url patch)|" || return
    before=$(count_reviews patch adm-dry)
    run "$K" run -n adm-dry r2 --image=weft/testapp --restart=Never --dry-run=server
    assert_ne "$RC" 0 "dry run must fail" || return
    assert_eq "$OUT" 'Error from server (BadRequest): admission webhook "dry.weft.test" does not support dry run' \
        "dry run unsupported" || return
    assert_eq "$(count_reviews patch adm-dry)" "$before" "webhook not called" || return
    pod adm-dry r3
    assert_eq "$RC" 0 "a real create: $OUT" || return
    jpod adm-dry r3 '{.metadata.labels.testwebhook}' || return
    assert_eq "$OUT" patched "patched" || return
}

case_deployment() {
    ns adm-deploy || return
    config MutatingWebhookConfiguration deploy "deploy.weft.test|adm-deploy|$(url patch)|" || return
    cat >"$KL_TMP/deploy.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: adm-deploy}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: weft/testapp}]
EOF
    ok "apply deployment" "$K" apply -f "$KL_TMP/deploy.yaml" || return
    two_pods() { [ "$("$K" get pods -n adm-deploy -l app=web -o name | grep -c .)" = 2 ]; }
    wait_for 10 two_pods || { t_fail "no 2 pods: $("$K" get pods -n adm-deploy 2>&1)"; return 1; }
    okv "pods" "$K" get pods -n adm-deploy -l app=web \
        -o 'jsonpath={range .items[*]}{.metadata.labels.testwebhook} {.metadata.ownerReferences[0].kind}{"\n"}{end}' ||
        return
    assert_eq "$OUT" $'patched ReplicaSet\npatched ReplicaSet' "both pods patched, owned by the ReplicaSet" || return
    reviews patch 'select(.request.namespace == "adm-deploy") | [.request.userInfo.username, .request.object.metadata.ownerReferences[0].kind] | join(" ")'
    assert_eq "$OUT" $'"system:serviceaccount:kube-system:replicaset-controller ReplicaSet"\n"system:serviceaccount:kube-system:replicaset-controller ReplicaSet"' \
        "reviews of the controller's creates" || return
}

# --- main --------------------------------------------------------------------------------------

t_begin setup
for tool in openssl python3 jq curl base64; do
    command -v "$tool" >/dev/null || { t_skip "needs $tool"; t_summary; }
done
for bin in "$WH" "$K"; do
    [ -x "$bin" ] || { t_fail "$bin is not an executable (make build/tests/testwebhook)"; t_summary; }
done
mkdir -p "$C"
if ! { ca ca && ca otherca && leaf ip ca "IP:127.0.0.1" && leaf svc ca "DNS:hooksvc.hooks.svc"; }; then
    t_fail "openssl could not make the certificates"
    t_summary
fi
kl_start || { t_fail "kubelite did not start"; t_summary; }
for spec in "patch patch ip" "deny deny ip" "baduid bad-uid ip" "notype no-type ip" \
    "first patch ip" "second patch ip" "svc patch svc"; do
    read -r id mode cert <<<"$spec"
    start_hook "$id" "$mode" "$cert" || { t_fail "testwebhook $id did not start"; t_summary; }
done
for id in slow slow2; do
    start_hook "$id" slow ip --sleep 10 || { t_fail "testwebhook $id did not start"; t_summary; }
done
t_pass

t_run patch-url case_patch_url
t_run object-selector case_object_selector
t_run deny case_deny
t_run bad-uid case_bad_uid
t_run no-type case_no_type
t_run timeout case_timeout
t_run webhook-down case_webhook_down
t_run wrong-ca case_wrong_ca
t_run service case_service
t_run order-reinvoke case_order_reinvoke
t_run validating case_validating
t_run dry-run case_dry_run
t_run deployment case_deployment
t_summary
