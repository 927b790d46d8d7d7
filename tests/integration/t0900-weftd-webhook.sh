#!/usr/bin/env bash
# weftd's injection webhook through kubelite's admission call-out, with real kubectl: weft-injector
# registered with --webhook-url and the CA's bundle (two webhooks: labelled namespaces, and opt-in
# elsewhere), pods injected in a labelled namespace, `kubectl apply --dry-run=server -o yaml`
# showing the pod injected exactly as the real create (and storing nothing), pods opting in
# elsewhere, the opt-outs, the configuration kept in step, failurePolicy Fail (meshed namespaces) and Ignore (opt-in) while
# weftd is down, and bad injection settings refused at start-up.
. "$(dirname "$0")/lib.sh"

K="$KUBECTL_DIR/kubectl.1.33"
WEFTD=${WEFTD:-$BUILD/bin/weftd}
case $WEFTD in
/*) ;;
*) WEFTD=$KL_REPO/$WEFTD ;;
esac
NS=meshed
WD_PID=
WD_LOG=
WP=
AP=

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wd_start() {
    WD_LOG=$KL_TMP/weftd.log
    "$WEFTD" --kubeconfig "$KUBECONFIG" --namespace weft-system --identity wd \
        --admin-listen "127.0.0.1:$AP" --certs-listen "127.0.0.1:$(free_port)" --stream-listen "127.0.0.1:$(free_port)" \
        --webhook-listen "127.0.0.1:$WP" --webhook-url "https://127.0.0.1:$WP/inject" \
        --log-level debug >>"$WD_LOG" 2>&1 &
    WD_PID=$!
    daemon_track "$WD_PID" weftd
}

ca_loaded() {
    curl -s "http://127.0.0.1:$AP/readyz" | grep -q '^ca loaded: yes'
}

mwc() { # JSONPATH: from weft-injector into OUT
    okv "get weft-injector" "$K" get mutatingwebhookconfiguration weft-injector -o "jsonpath=$1"
}

bundle_matches() { # both webhooks' caBundle is the Secret's ca.crt
    local got got1 want
    got=$("$K" get mutatingwebhookconfiguration weft-injector -o 'jsonpath={.webhooks[0].clientConfig.caBundle}' 2>/dev/null | base64 -d 2>/dev/null)
    got1=$("$K" get mutatingwebhookconfiguration weft-injector -o 'jsonpath={.webhooks[1].clientConfig.caBundle}' 2>/dev/null | base64 -d 2>/dev/null)
    want=$("$K" get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' 2>/dev/null | base64 -d 2>/dev/null)
    [ -n "$want" ] && [ "$got" = "$want" ] && [ "$got1" = "$want" ]
}

containers_of() { # NAMESPACE POD: "init: ... | containers: ..." into OUT
    okv "get pod" "$K" get pod -n "$1" "$2" -o 'jsonpath=init:{.spec.initContainers[*].name} | containers:{.spec.containers[*].name}'
}

case_registered() {
    ok "namespace" "$K" create namespace weft-system || return
    WP=$(free_port)
    AP=$(free_port)
    wd_start
    wait_for 20 ca_loaded || { t_fail "CA not loaded: $(tail -5 "$WD_LOG")"; return 1; }
    wait_for 20 bundle_matches || { t_fail "weft-injector missing or its caBundle is not the root: $(tail -5 "$WD_LOG")"; return 1; }
    mwc '{.webhooks[0].clientConfig.url}' || return
    assert_eq "$OUT" "https://127.0.0.1:$WP/inject" "clientConfig.url" || return
    mwc '{.webhooks[0].failurePolicy} {.webhooks[0].sideEffects} {.webhooks[0].timeoutSeconds} {.webhooks[0].reinvocationPolicy} {.webhooks[0].admissionReviewVersions}' || return
    assert_eq "$OUT" 'Fail None 10 IfNeeded ["v1"]' "policy fields" || return
    mwc '{.webhooks[0].rules[0].operations} {.webhooks[0].rules[0].apiGroups} {.webhooks[0].rules[0].resources} {.webhooks[0].namespaceSelector.matchLabels}' || return
    assert_eq "$OUT" '["CREATE"] [""] ["pods"] {"weft.dev/inject":"enabled"}' "rules and namespaceSelector" || return
    mwc '{.webhooks[1].name} {.webhooks[1].clientConfig.url} {.webhooks[1].failurePolicy} {.webhooks[1].timeoutSeconds} {.webhooks[1].objectSelector.matchExpressions[0].operator}' || return
    assert_eq "$OUT" "opt-in.inject.weft.dev https://127.0.0.1:$WP/inject/opt-in Ignore 5 NotIn" "opt-in webhook" || return
    mwc '{.webhooks[1].namespaceSelector.matchExpressions[*].values}' || return
    assert_eq "$OUT" '["enabled","disabled"] ["weft-system","kube-system"]' "opt-in namespaceSelector" || return
    mwc '{.metadata.managedFields[*].manager}' || return
    assert_eq "$OUT" weftd "field manager" || return
    # the serving certificate verifies against the bundle, for 127.0.0.1
    "$K" get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$KL_TMP/bundle.pem"
    okv "bad review" curl -sS --cacert "$KL_TMP/bundle.pem" -H 'Content-Type: application/json' \
        -d '{"kind":"AdmissionReview"}' -w ' %{http_code}' "https://127.0.0.1:$WP/inject" || return
    assert_contains "$OUT" '"kind":"Status"' "malformed review answered with a Status" || return
    assert_match "$OUT" ' 400$' "malformed review is 400" || return
    # a review that waited past the API server's timeout (?timeout=) is dropped, with a 503
    local rev='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","operation":"UPDATE","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"x","object":{}}}'
    okv "review in time" curl -sS --cacert "$KL_TMP/bundle.pem" -H 'Content-Type: application/json' \
        -d "$rev" -w ' %{http_code}' "https://127.0.0.1:$WP/inject?timeout=10s" || return
    assert_match "$OUT" '"allowed":true.* 200$' "review with ?timeout=10s answered" || return
    okv "expired review" curl -sS --cacert "$KL_TMP/bundle.pem" -H 'Content-Type: application/json' \
        -d "$rev" -D - -w ' %{http_code}' "https://127.0.0.1:$WP/inject?timeout=0s" || return
    assert_match "$OUT" ' 503$' "expired review is 503" || return
    assert_contains "$OUT" 'Retry-After: 1' "with Retry-After" || return
    okv "shed metric" curl -s "http://127.0.0.1:$AP/metrics" || return
    assert_match "$OUT" '^weft_webhook_shed_total\{reason="expired"\} 1$' "expired review counted" || return
    assert_match "$OUT" '^weft_webhook_inflight 0$' "nothing left in flight" || return
    okv "log" cat "$WD_LOG" || return
    assert_contains "$OUT" 'msg="webhook overloaded: reviews shed" reason=expired' "shedding logged" || return
    okv "GET" curl -sS --cacert "$KL_TMP/bundle.pem" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$WP/inject" || return
    assert_eq "$OUT" 405 "GET /inject" || return
    okv "other path" curl -sS --cacert "$KL_TMP/bundle.pem" -o /dev/null -w '%{http_code}' -d x "https://127.0.0.1:$WP/other" || return
    assert_eq "$OUT" 404 "POST /other" || return
}

case_injected() {
    ok "meshed namespace" "$K" create namespace "$NS" || return
    ok "label" "$K" label namespace "$NS" weft.dev/inject=enabled || return
    ok "pod" "$K" run -n "$NS" web --image=weft/testapp --restart=Never --port 8080 || return
    containers_of "$NS" web || return
    assert_eq "$OUT" "init:weft-init | containers:weft-proxy web" "containers" || return
    okv "status" "$K" get pod -n "$NS" web -o 'jsonpath={.metadata.annotations.weft\.dev/status}' || return
    assert_contains "$OUT" '"containers":["weft-proxy"]' "weft.dev/status" || return
    assert_contains "$OUT" '"initContainers":["weft-init"]' "weft.dev/status init" || return
    okv "default container" "$K" get pod -n "$NS" web -o 'jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/default-container}' || return
    assert_eq "$OUT" web "default-container" || return
    okv "volumes" "$K" get pod -n "$NS" web -o 'jsonpath={.spec.volumes[*].name}' || return
    assert_contains "$OUT" "weft-token weft-ca" "token and trust volumes" || return
    # the settings weftd was started with (defaults here): images, resources, control plane
    okv "proxy" "$K" get pod -n "$NS" web -o 'jsonpath={.spec.containers[0].image} {.spec.initContainers[0].image} {.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.limits.memory} {.spec.containers[0].env[?(@.name=="WEFT_CONTROL_PLANE")].value}' || return
    assert_eq "$OUT" "weft/proxy:dev weft/init:dev 100m 1Gi weftd.weft-system.svc:15012" "proxy settings" || return
    okv "reviews metric" curl -s "http://127.0.0.1:$AP/metrics" || return
    assert_match "$OUT" '^weft_webhook_reviews_total [1-9]' "reviews counted" || return
}

# The same pod through a server-side dry run and a real create: the dry run shows it injected,
# exactly as stored by the create (names, uid and times aside), and stores nothing.
case_dry_run() {
    local dry real strip='del(.metadata.uid, .metadata.creationTimestamp, .metadata.resourceVersion, .metadata.managedFields, .metadata.generation, .status)'
    cat >"$KL_TMP/dry.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: dry, namespace: $NS}
spec:
  containers: [{name: app, image: weft/testapp, ports: [{containerPort: 8080}]}]
EOF
    okv "apply --dry-run=server" "$K" apply --dry-run=server -o json -f "$KL_TMP/dry.yaml" || return
    dry=$(printf '%s' "$OUT" | jq -S "$strip") || { t_fail "dry run output is not JSON: $OUT"; return 1; }
    assert_eq "$(printf '%s' "$dry" | jq -r '[.spec.initContainers[].name, .spec.containers[].name] | join(" ")')" \
        "weft-init weft-proxy app" "containers of the dry run" || return
    fails "the dry run stored nothing" "$K" get pod -n "$NS" dry || return
    ok "apply" "$K" apply -f "$KL_TMP/dry.yaml" || return
    okv "the stored pod" "$K" get pod -n "$NS" dry -o json || return
    real=$(printf '%s' "$OUT" | jq -S "$strip")
    assert_eq "$dry" "$real" "dry run = real create" || return
    ok "delete" "$K" delete pod -n "$NS" dry --wait=false || return
}

case_not_injected() {
    ok "plain namespace" "$K" create namespace plain || return
    ok "pod" "$K" run -n plain web --image=weft/testapp --restart=Never || return
    containers_of plain web || return
    assert_eq "$OUT" "init: | containers:web" "unlabelled namespace" || return
    ok "annotated pod" "$K" run -n "$NS" optout --image=weft/testapp --restart=Never \
        --annotations=weft.dev/inject=false || return
    containers_of "$NS" optout || return
    assert_eq "$OUT" "init: | containers:optout" "annotation weft.dev/inject: false" || return
    ok "labelled pod" "$K" run -n "$NS" optout-label --image=weft/testapp --restart=Never \
        --labels=weft.dev/inject=false || return
    containers_of "$NS" optout-label || return
    assert_eq "$OUT" "init: | containers:optout-label" "label weft.dev/inject=false" || return
    fails "malformed annotation is denied" "$K" run -n "$NS" bad --image=weft/testapp --restart=Never \
        --annotations=weft.dev/inject=maybe || return
    assert_contains "$OUT" 'denied the request' "denial surfaces" || return
    assert_contains "$OUT" 'weft.dev/inject' "denial names the annotation" || return
}

case_opt_in() {
    ok "annotated pod in an unlabelled namespace" "$K" run -n plain asks --image=weft/testapp \
        --restart=Never --annotations=weft.dev/inject=true || return
    containers_of plain asks || return
    assert_eq "$OUT" "init:weft-init | containers:weft-proxy asks" "opt-in by annotation" || return
    ok "labelled pod in an unlabelled namespace" "$K" run -n plain asks-label --image=weft/testapp \
        --restart=Never --labels=weft.dev/inject=true || return
    containers_of plain asks-label || return
    assert_eq "$OUT" "init:weft-init | containers:weft-proxy asks-label" "opt-in by label" || return
    ok "disabled namespace" "$K" create namespace closed || return
    ok "label disabled" "$K" label namespace closed weft.dev/inject=disabled || return
    ok "annotated pod in a disabled namespace" "$K" run -n closed asks --image=weft/testapp \
        --restart=Never --annotations=weft.dev/inject=true || return
    containers_of closed asks || return
    assert_eq "$OUT" "init: | containers:asks" "weft.dev/inject=disabled namespaces are never sent" || return
    fails "malformed annotation is denied there too" "$K" run -n plain bad --image=weft/testapp \
        --restart=Never --annotations=weft.dev/inject=enabled || return
    assert_contains "$OUT" 'weft.dev/inject' "denial names the annotation" || return
    # every decision is visible: in weftd's log with the pod and the reason, and in the metrics
    okv "log" cat "$WD_LOG" || return
    assert_contains "$OUT" 'msg="pod injected" pod="plain/asks" path=opt-in' "injection logged" || return
    assert_contains "$OUT" "msg=\"pod not injected\" outcome=skipped pod=\"plain/web\" reason=\"namespace not selected for injection and the pod does not opt in (weft.dev/inject: 'true')\"" \
        "skip logged with its reason" || return
    assert_contains "$OUT" 'msg="review refused" outcome=denied pod="plain/bad" reason="annotation weft.dev/inject:' \
        "denial logged" || return
    okv "metrics" curl -s "http://127.0.0.1:$AP/metrics" || return
    assert_match "$OUT" '^weft_webhook_decisions_total\{outcome="injected"\} [3-9]' "injections counted" || return
    assert_match "$OUT" '^weft_webhook_decisions_total\{outcome="skipped"\} [1-9]' "skips counted" || return
    assert_match "$OUT" '^weft_webhook_decisions_total\{outcome="denied"\} 2$' "denials counted" || return
    assert_match "$OUT" '^weft_webhook_review_duration_seconds_count [1-9]' "latency histogram" || return
}

# An app container running as the proxy's UID would bypass the redirection: refused, named.
case_proxy_uid() {
    cat >"$KL_TMP/as1337.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: as1337, namespace: $NS}
spec:
  securityContext: {runAsUser: 1337}
  containers:
  - {name: web, image: weft/testapp, securityContext: {runAsUser: 1000}}
  - {name: worker, image: weft/testapp}
EOF
    fails "pod with a container as UID 1337" "$K" create -f "$KL_TMP/as1337.yaml" || return
    assert_contains "$OUT" 'denied the request: container "worker" runs as UID 1337 (spec.securityContext.runAsUser), the UID reserved for the weft-proxy sidecar' \
        "denial names the container and the field" || return
    fails "not created" "$K" get pod -n "$NS" as1337 || return
    sed -i 's|{name: worker, image: weft/testapp}|{name: worker, image: weft/testapp, securityContext: {runAsUser: 2000}}|' "$KL_TMP/as1337.yaml"
    ok "the same pod with another UID" "$K" create -f "$KL_TMP/as1337.yaml" || return
    containers_of "$NS" as1337 || return
    assert_eq "$OUT" "init:weft-init | containers:weft-proxy web worker" "injected" || return
}

case_bad_settings() {
    okv "weftd with a bad --webhook-max-inflight" sh -c "'$WEFTD' --kubeconfig '$KUBECONFIG' --webhook-max-inflight 0 2>&1; echo rc=\$?" || return
    assert_contains "$OUT" '--webhook-max-inflight: "0" is not a number from 1 to 1000000' "names the flag" || return
    okv "weftd with a bad --outbound-scope" sh -c "'$WEFTD' --kubeconfig '$KUBECONFIG' --outbound-scope callers 2>&1; echo rc=\$?" || return
    assert_contains "$OUT" '--outbound-scope: "callers" is not mesh or admitted' "names the flag and the choices" || return
    assert_contains "$OUT" 'rc=2' "exit status 2" || return
    okv "weftd with a bad quantity" sh -c "'$WEFTD' --kubeconfig '$KUBECONFIG' --proxy-memory-limit 1Gx 2>&1; echo rc=\$?" || return
    assert_contains "$OUT" 'proxy memory limit: "1Gx" is not a Kubernetes quantity' "names the setting" || return
    assert_contains "$OUT" 'rc=2' "exit status 2" || return
    okv "weftd with a request above the limit" sh -c "'$WEFTD' --kubeconfig '$KUBECONFIG' --proxy-memory-request 2Gi 2>&1; echo rc=\$?" || return
    assert_contains "$OUT" 'proxy memory request 2Gi is above the proxy memory limit 1Gi' "request above limit" || return
}

case_kept_in_step() {
    ok "tamper caBundle" "$K" patch mutatingwebhookconfiguration weft-injector --type json \
        -p '[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"Zm9v"}]' || return
    wait_for 15 bundle_matches || { t_fail "caBundle not restored"; return 1; }
    ok "tamper the opt-in caBundle" "$K" patch mutatingwebhookconfiguration weft-injector --type json \
        -p '[{"op":"replace","path":"/webhooks/1/clientConfig/caBundle","value":"Zm9v"}]' || return
    wait_for 15 bundle_matches || { t_fail "opt-in caBundle not restored"; return 1; }
    ok "drop the opt-in webhook" "$K" patch mutatingwebhookconfiguration weft-injector --type json \
        -p '[{"op":"remove","path":"/webhooks/1"}]' || return
    wait_for 15 bundle_matches || { t_fail "opt-in webhook not restored"; return 1; }
    ok "delete" "$K" delete mutatingwebhookconfiguration weft-injector || return
    wait_for 15 bundle_matches || { t_fail "weft-injector not recreated"; return 1; }
    ok "pod after restore" "$K" run -n "$NS" again --image=weft/testapp --restart=Never || return
    containers_of "$NS" again || return
    assert_eq "$OUT" "init:weft-init | containers:weft-proxy again" "injected after the restore" || return
}

case_webhook_down() {
    bg_stop "$WD_PID"
    fails "pod creation while weftd is down" "$K" run -n "$NS" down --image=weft/testapp --restart=Never || return
    assert_contains "$OUT" "failed calling webhook" "failurePolicy Fail" || return
    fails "no pod" "$K" get pod -n "$NS" down || return
    ok "unlabelled namespaces are unaffected" "$K" run -n plain down --image=weft/testapp --restart=Never || return
    ok "an opted-in pod there starts without a sidecar (failurePolicy Ignore)" "$K" run -n plain \
        down-asks --image=weft/testapp --restart=Never --annotations=weft.dev/inject=true || return
    containers_of plain down-asks || return
    assert_eq "$OUT" "init: | containers:down-asks" "opt-in webhook down: Ignore" || return
    ok "pods that opt out by label are unaffected" "$K" run -n "$NS" down-optout --image=weft/testapp \
        --restart=Never --labels=weft.dev/inject=false || return
    wd_start
    wait_for 20 ca_loaded || { t_fail "CA not loaded after restart"; return 1; }
    wait_for 20 "$K" run -n "$NS" back --image=weft/testapp --restart=Never ||
        { t_fail "pods not admitted after weftd came back: $(tail -5 "$WD_LOG")"; return 1; }
    containers_of "$NS" back || return
    assert_eq "$OUT" "init:weft-init | containers:weft-proxy back" "injected after the restart" || return
}

t_begin start
for tool in openssl curl python3; do
    command -v "$tool" >/dev/null || { t_skip "needs $tool"; t_summary; }
done
if [ ! -x "$WEFTD" ]; then
    t_skip "$WEFTD not built"
    t_summary
fi
if ! kl_start; then
    t_fail "kubelite did not start"
    t_summary
fi
t_pass
t_run registered case_registered
t_run injected case_injected
t_run dry-run case_dry_run
t_run not-injected case_not_injected
t_run opt-in case_opt_in
t_run proxy-uid case_proxy_uid
t_run bad-settings case_bad_settings
t_run kept-in-step case_kept_in_step
t_run webhook-down case_webhook_down
t_summary
