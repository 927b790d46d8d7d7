#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# kubelite --data-dir: objects (built-in and custom), their identity and resourceVersions, the
# CRDs' served resources and the kubeconfig's credentials survive a SIGTERM and restart.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

K=${KUBECTL:-$KUBECTL_DIR/kubectl.1.33}
DATA=$KL_TMP/data
M=$KL_TMP/manifests
NS=persist
mkdir -p "$M"

cat >"$M/objects.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm1
  namespace: $NS
  labels: {app: demo}
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: s1
  namespace: $NS
type: Opaque
data:
  password: c2VrcmV0 # sekret
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: $NS
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: main, image: nginx:1.25}
EOF
cp "$KL_REPO/tests/fixtures/charts/kl-demo/crds/widgets.yaml" "$M/crd.yaml"
cat >"$M/widget.yaml" <<EOF
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: $NS
spec:
  size: 4
EOF

# snapshot: "kind/name uid rv" for every object we made, plus the CRD (one a line).
snapshot() {
    okv "snapshot" "$K" get -n "$NS" cm/cm1 cm/cm-ssa secret/s1 deploy/web widget/w1 \
        -o 'jsonpath={range .items[*]}{.kind}/{.metadata.name} {.metadata.uid} {.metadata.resourceVersion} {.metadata.creationTimestamp}{"\n"}{end}' ||
        return
    SNAP=$OUT
    okv "snapshot crd" "$K" get crd widgets.example.com \
        -o 'jsonpath={.kind}/{.metadata.name} {.metadata.uid} {.metadata.resourceVersion} {.metadata.creationTimestamp}' ||
        return
    SNAP="$SNAP
$OUT"
    okv "snapshot ns" "$K" get ns "$NS" \
        -o 'jsonpath={.kind}/{.metadata.name} {.metadata.uid} {.metadata.resourceVersion} {.metadata.creationTimestamp}' ||
        return
    SNAP="$SNAP
$OUT"
}

# max_rv: the highest resourceVersion in $SNAP.
max_rv() {
    printf '%s\n' "$SNAP" | awk '{ if ($3 + 0 > m) m = $3 + 0 } END { print m + 0 }'
}

case_populate() {
    ok "apply objects" "$K" apply -f "$M/objects.yaml" || return
    ok "apply crd" "$K" apply -f "$M/crd.yaml" || return
    ok "crd established" "$K" wait --for=condition=Established --timeout=20s \
        crd/widgets.example.com || return
    ok "apply widget" "$K" apply -f "$M/widget.yaml" || return
    ok "status of widget" "$K" patch -n "$NS" widget w1 --subresource=status --type=merge \
        -p '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}' || return
    ok "server-side apply" "$K" apply --server-side --field-manager=persist-test -f - \
        <<<"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm-ssa\",\"namespace\":\"$NS\"},\"data\":{\"ssa\":\"yes\"}}" ||
        return
    ok "create then delete" "$K" create -n "$NS" configmap doomed --from-literal=a=b || return
    ok "delete" "$K" delete -n "$NS" configmap doomed || return
    snapshot || return
    BEFORE=$SNAP
    [ "$(printf '%s\n' "$BEFORE" | wc -l)" = 7 ] || t_fail "snapshot: $BEFORE" || return
    KUBECONFIG_BEFORE=$(cat "$KUBECONFIG")
}

case_restart() {
    kl_stop
    assert_eq "$KL_EXIT" 0 "kubelite exit status after SIGTERM" || return
    kl_start --data-dir "$DATA" || {
        t_fail "restart on the same data dir failed"
        return 1
    }
}

case_objects_survive() {
    snapshot || return
    assert_eq "$SNAP" "$BEFORE" "kind/name uid resourceVersion creationTimestamp after restart" ||
        return
    okv "cm1" "$K" get -n "$NS" cm cm1 -o 'jsonpath={.data.greeting} {.metadata.labels.app}' ||
        return
    assert_eq "$OUT" "hello demo" "cm1 data after restart" || return
    okv "cm-ssa" "$K" get -n "$NS" cm cm-ssa -o 'jsonpath={.data.ssa}' || return
    assert_eq "$OUT" "yes" "cm-ssa data after restart" || return
    okv "secret" "$K" get -n "$NS" secret s1 -o 'jsonpath={.data.password}' || return
    assert_eq "$OUT" "$(printf sekret | base64)" "secret data after restart" || return
    okv "deploy" "$K" get -n "$NS" deploy web -o 'jsonpath={.spec.replicas} {.metadata.generation}' ||
        return
    assert_eq "$OUT" "2 1" "deployment after restart" || return
    okv "widget" "$K" get -n "$NS" widget w1 \
        -o 'jsonpath={.spec.size} {.spec.color} {.status.conditions[0].type}' || return
    assert_eq "$OUT" "4 red Ready" "widget spec and status after restart" || return
    run "$K" get -n "$NS" cm doomed -o name
    assert_contains "$OUT" NotFound "deleted object stays deleted" || return
    okv "managedFields" "$K" get -n "$NS" cm cm-ssa -o json --show-managed-fields || return
    assert_match "$OUT" '"manager": "persist-test"' "managedFields after restart" || return
    okv "ns" "$K" get ns -o name || return
    assert_contains "$OUT" "namespace/default" "default namespace" || return
    assert_contains "$OUT" "namespace/$NS" "our namespace" || return
    assert_eq "$(printf '%s\n' "$OUT" | grep -c '^namespace/default$')" 1 "default namespace once" ||
        return
}

case_crd_served() {
    okv "api-resources" "$K" api-resources --api-group=example.com || return
    assert_match "$OUT" '^widgets +wd +example\.com/v1 +true +Widget$' "widgets in discovery" || return
    okv "raw list" "$K" get --raw "/apis/example.com/v1/namespaces/$NS/widgets" || return
    assert_contains "$OUT" '"name":"w1"' "widgets served" || return
    okv "crd conditions" "$K" get crd widgets.example.com \
        -o 'jsonpath={range .status.conditions[*]}{.type}={.status};{end}' || return
    assert_contains "$OUT" "Established=True" "CRD still established" || return
    # Validation and defaulting from the CRD's schema still apply.
    fails "schema violation" "$K" apply -f - <<<"{\"apiVersion\":\"example.com/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"w2\",\"namespace\":\"$NS\"},\"spec\":{\"size\":11}}" ||
        return
    assert_contains "$OUT" "spec.size" "schema still enforced" || return
    ok "create widget" "$K" apply -f - <<<"{\"apiVersion\":\"example.com/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"w2\",\"namespace\":\"$NS\"},\"spec\":{\"size\":1}}" ||
        return
    okv "w2" "$K" get -n "$NS" wd w2 -o 'jsonpath={.spec.color}' || return
    assert_eq "$OUT" red "defaulting after restart" || return
}

case_credentials() {
    # The kubeconfig written before the restart (certificate and token) still works.
    printf '%s\n' "$KUBECONFIG_BEFORE" >"$KL_TMP/old-kubeconfig"
    local port_now port_then
    port_then=$(sed -n 's/^ *server: https:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$KL_TMP/old-kubeconfig")
    port_now=$(sed -n 's/^ *server: https:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$KUBECONFIG")
    [ -n "$port_then" ] && [ -n "$port_now" ] ||
        t_fail "kubeconfig server lines: $(grep server: "$KUBECONFIG")" || return
    # Same identity, new port: point the old file at the new port.
    sed -i "s/127\.0\.0\.1:$port_then\$/127.0.0.1:$port_now/" "$KL_TMP/old-kubeconfig"
    okv "old kubeconfig" "$K" --kubeconfig "$KL_TMP/old-kubeconfig" get -n "$NS" cm cm1 -o name ||
        return
    assert_eq "$OUT" "configmap/cm1" "get with the pre-restart credentials" || return
    assert_eq "$(grep -E 'certificate-authority-data|token' "$KUBECONFIG")" \
        "$(grep -E 'certificate-authority-data|token' "$KL_TMP/old-kubeconfig")" \
        "CA and token unchanged across restart" || return
    # And a wrong token is refused.
    sed 's/^\( *token:\).*/\1 0000wrong/' "$KUBECONFIG" >"$KL_TMP/bad-kubeconfig"
    fails "wrong token" "$K" --kubeconfig "$KL_TMP/bad-kubeconfig" get -n "$NS" cm cm1 -o name ||
        return
    assert_contains "$OUT" "Unauthorized" "wrong token refused" || return
}

case_rv_increases() {
    local before_max rv
    SNAP=$BEFORE
    before_max=$(max_rv)
    ok "label" "$K" label -n "$NS" cm cm1 after=restart || return
    okv "rv" "$K" get -n "$NS" cm cm1 -o 'jsonpath={.metadata.resourceVersion}' || return
    assert_gt "$OUT" "$before_max" "resourceVersion of a write after restart" || return
    rv=$OUT
    ok "create" "$K" create -n "$NS" configmap fresh --from-literal=a=b || return
    okv "rv" "$K" get -n "$NS" cm fresh -o 'jsonpath={.metadata.resourceVersion}' || return
    assert_gt "$OUT" "$rv" "resourceVersion of the next write" || return
    okv "list rv" "$K" get --raw "/api/v1/namespaces/$NS/configmaps" || return
    rv=$(printf '%s' "$OUT" | sed -n 's/.*"metadata":{"resourceVersion":"\([0-9]*\)".*/\1/p' | head -1)
    [ -n "$rv" ] || rv=$(printf '%s' "$OUT" | grep -o '"resourceVersion":"[0-9]*"' | head -1 | tr -dc 0-9)
    assert_gt "${rv:-0}" "$before_max" "list resourceVersion after restart" || return
}

case_second_restart() {
    # Writes made after the first restart persist too, and so does the WAL's order.
    local want
    okv "rv" "$K" get -n "$NS" cm fresh cm1 \
        -o 'jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {.metadata.labels.after};{end}' ||
        return
    want=$OUT
    kl_stop
    assert_eq "$KL_EXIT" 0 "exit status after the second SIGTERM" || return
    kl_start --data-dir "$DATA" || {
        t_fail "second restart failed"
        return 1
    }
    okv "rv" "$K" get -n "$NS" cm fresh cm1 \
        -o 'jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {.metadata.labels.after};{end}' ||
        return
    assert_eq "$OUT" "$want" "objects after the second restart" || return
    ok "delete ns" "$K" delete ns "$NS" --timeout=30s || return
    kl_stop
    kl_start --data-dir "$DATA" || {
        t_fail "third restart failed"
        return 1
    }
    run "$K" get ns "$NS" -o name
    assert_contains "$OUT" NotFound "deleted namespace stays deleted" || return
    okv "widgets" "$K" get widgets -A -o name || return
    assert_eq "$OUT" "" "namespace contents stay deleted" || return
}

t_begin start
if [ ! -x "$K" ]; then
    t_skip "$K not found"
    t_summary
fi
if ! kl_start --data-dir "$DATA"; then
    t_fail "kubelite did not start"
    t_summary
fi
t_pass
t_run populate case_populate
t_run restart case_restart
t_run objects-survive case_objects_survive
t_run crd-served case_crd_served
t_run credentials case_credentials
t_run resource-version-increases case_rv_increases
t_run second-restart case_second_restart
kl_stop
t_summary
