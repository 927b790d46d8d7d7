#!/usr/bin/env bash
# weftd's injection webhook through kubelite's admission call-out, with real kubectl: weft-injector
# registered with --webhook-url and the CA's bundle, pods injected in a labelled namespace only,
# the opt-outs, the configuration kept in step, and failurePolicy Fail while weftd is down.
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
        --admin-listen "127.0.0.1:$AP" --certs-listen "127.0.0.1:$(free_port)" \
        --webhook-listen "127.0.0.1:$WP" --webhook-url "https://127.0.0.1:$WP/inject" \
        --log-level debug >>"$WD_LOG" 2>&1 &
    WD_PID=$!
    bg_track "$WD_PID"
}

ca_loaded() {
    curl -s "http://127.0.0.1:$AP/readyz" | grep -q '^ca loaded: yes'
}

mwc() { # JSONPATH: from weft-injector into OUT
    okv "get weft-injector" "$K" get mutatingwebhookconfiguration weft-injector -o "jsonpath=$1"
}

bundle_matches() { # weft-injector's caBundle is the Secret's ca.crt
    local got want
    got=$("$K" get mutatingwebhookconfiguration weft-injector -o 'jsonpath={.webhooks[0].clientConfig.caBundle}' 2>/dev/null | base64 -d 2>/dev/null)
    want=$("$K" get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' 2>/dev/null | base64 -d 2>/dev/null)
    [ -n "$want" ] && [ "$got" = "$want" ]
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
    mwc '{.metadata.managedFields[*].manager}' || return
    assert_eq "$OUT" weftd "field manager" || return
    # the serving certificate verifies against the bundle, for 127.0.0.1
    "$K" get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$KL_TMP/bundle.pem"
    okv "bad review" curl -sS --cacert "$KL_TMP/bundle.pem" -H 'Content-Type: application/json' \
        -d '{"kind":"AdmissionReview"}' -w ' %{http_code}' "https://127.0.0.1:$WP/inject" || return
    assert_contains "$OUT" '"kind":"Status"' "malformed review answered with a Status" || return
    assert_match "$OUT" ' 400$' "malformed review is 400" || return
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
    okv "reviews metric" curl -s "http://127.0.0.1:$AP/metrics" || return
    assert_match "$OUT" '^weft_webhook_reviews_total [1-9]' "reviews counted" || return
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

case_kept_in_step() {
    ok "tamper caBundle" "$K" patch mutatingwebhookconfiguration weft-injector --type json \
        -p '[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"Zm9v"}]' || return
    wait_for 15 bundle_matches || { t_fail "caBundle not restored"; return 1; }
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
t_run not-injected case_not_injected
t_run kept-in-step case_kept_in_step
t_run webhook-down case_webhook_down
t_summary
