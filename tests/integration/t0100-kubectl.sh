#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# Real kubectl (1.29 and 1.33) against kubelite: apply (client- and server-side), get in all its
# forms, watch, wait, delete, discovery, explain, error reporting, create/replace/patch/label/
# annotate/scale. Each version gets a fresh kubelite; case names end in the kubectl version.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

M=$KL_TMP/manifests
mkdir -p "$M"
NS=it

# --- manifests -----------------------------------------------------------------------------
cat >"$M/ns.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
EOF
cat >"$M/cm.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm1
  namespace: $NS
  labels: {app: demo}
data:
  greeting: hello
EOF
sed 's/greeting: hello/greeting: bonjour/' "$M/cm.yaml" >"$M/cm-changed.yaml"
cat >"$M/svc.yaml" <<EOF
apiVersion: v1
kind: Service
metadata:
  name: svc1
  namespace: $NS
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
EOF
cat >"$M/deploy.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: $NS
  labels: {app: demo}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: nginx:1.25
      - name: side
        image: busybox:1.36
EOF
sed 's/replicas: 2/replicas: 3/' "$M/deploy.yaml" >"$M/deploy-spec.yaml"
sed 's/replicas: 2/replicas: 3/; s/labels: {app: demo}/labels: {app: demo, tier: front}/' \
    "$M/deploy.yaml" >"$M/deploy-label.yaml"
cp "$KL_REPO/tests/fixtures/charts/kl-demo/crds/widgets.yaml" "$M/crd.yaml"
cat >"$M/widget.yaml" <<EOF
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: $NS
spec:
  size: 3
EOF
sed 's/size: 3/size: 7/' "$M/widget.yaml" >"$M/widget-changed.yaml"
cat >"$M/ssa.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa1
  namespace: $NS
data:
  a: one
  b: keep
EOF
sed 's/a: one/a: two/' "$M/ssa.yaml" >"$M/ssa-2.yaml"
cat >"$M/ssa-other.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa1
  namespace: $NS
data:
  a: three
EOF
cat >"$M/create.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: created1
  namespace: $NS
data:
  a: b
EOF
# Invalid inputs: each must be refused with an error naming the problem, storing nothing.
cat >"$M/bad-schema.yaml" <<EOF
apiVersion: example.com/v1
kind: Widget
metadata:
  name: bad-schema
  namespace: $NS
spec:
  size: 42
EOF
cat >"$M/bad-enum.yaml" <<EOF
apiVersion: example.com/v1
kind: Widget
metadata:
  name: bad-enum
  namespace: $NS
spec:
  size: 2
  color: green
EOF
cat >"$M/bad-unknown.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad-unknown
  namespace: $NS
spec:
  replicas: 1
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers:
      - name: c
        image: x
        imagePullPolicyy: Always
EOF
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad-yaml\n   namespace: %s\ndata: {a: [\n' \
    "$NS" >"$M/bad-yaml.yaml"
cat >"$M/bad-apiversion.yaml" <<EOF
apiVersion: apps/v9
kind: Deployment
metadata:
  name: bad-apiversion
  namespace: $NS
spec:
  replicas: 1
EOF
cat >"$M/bad-name.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: BadName
  namespace: $NS
data: {a: b}
EOF

cat >"$M/bad-svc-port.yaml" <<EOF
apiVersion: v1
kind: Service
metadata:
  name: bad-svc-port
  namespace: $NS
spec:
  ports:
  - port: 99999
EOF
cat >"$M/bad-selector.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad-selector
  namespace: $NS
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: b}}
    spec:
      containers:
      - {name: c, image: x}
EOF

cat >"$M/secret.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: sec1
  namespace: $NS
type: Opaque
data:
  user: YWRtaW4=
stringData:
  password: sekret
EOF
sed 's/name: sec1/name: sec2/; /^type:/d; /^data:/d; /user:/d' "$M/secret.yaml" >"$M/secret2.yaml"

# --- helpers ------------------------------------------------------------------------------

# jp RESOURCE NAME JSONPATH: value of a field of a stored object in $NS (into OUT).
jp() {
    okv "get $1/$2" "$K" get -n "$NS" "$1" "$2" -o "jsonpath=$3"
}

# absent RESOURCE NAME: the object must not exist (NotFound).
absent() {
    run "$K" get -n "$NS" "$1" "$2" -o name
    if [ "$RC" -ne 0 ] && [[ $OUT == *NotFound* ]]; then
        return 0
    fi
    t_fail "$1/$2 should not exist: exit $RC: $OUT"
}

# --- cases --------------------------------------------------------------------------------

case_apply_create() {
    ok "apply ns" "$K" apply -f "$M/ns.yaml" || return
    assert_eq "$OUT" "namespace/$NS created" "apply ns output" || return
    ok "apply cm" "$K" apply -f "$M/cm.yaml" || return
    assert_eq "$OUT" "configmap/cm1 created" "apply cm output" || return
    ok "apply svc" "$K" apply -f "$M/svc.yaml" || return
    assert_eq "$OUT" "service/svc1 created" "apply svc output" || return
    ok "apply deploy" "$K" apply -f "$M/deploy.yaml" || return
    assert_eq "$OUT" "deployment.apps/web created" "apply deploy output" || return
    ok "apply crd" "$K" apply -f "$M/crd.yaml" || return
    assert_eq "$OUT" "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created" \
        "apply crd output" || return
    ok "wait established" "$K" wait --for=condition=Established --timeout=20s \
        crd/widgets.example.com || return
    ok "apply widget" "$K" apply -f "$M/widget.yaml" || return
    assert_eq "$OUT" "widget.example.com/w1 created" "apply widget output" || return
    # What is stored.
    okv "get ns" "$K" get ns "$NS" -o 'jsonpath={.status.phase}' || return
    assert_eq "$OUT" Active "namespace phase" || return
    jp configmap cm1 '{.data.greeting}' || return
    assert_eq "$OUT" hello "cm1 data" || return
    jp configmap cm1 '{.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}' ||
        return
    assert_contains "$OUT" '"greeting":"hello"' "last-applied-configuration" || return
    jp service svc1 '{.spec.clusterIP} {.spec.ports[0].port} {.spec.ports[0].protocol}' || return
    assert_match "$OUT" '^10\.[0-9]+\.[0-9]+\.[0-9]+ 80 TCP$' "svc1 clusterIP/port" || return
    jp deployment web '{.spec.replicas} {.metadata.generation} {.spec.template.spec.containers[1].image}' ||
        return
    assert_eq "$OUT" "2 1 busybox:1.36" "web replicas/generation/image" || return
    jp widget w1 '{.spec.size} {.spec.color} {.metadata.generation}' || return
    assert_eq "$OUT" "3 red 1" "w1 size, defaulted color, generation" || return
    jp widget w1 '{.metadata.uid}' || return
    assert_match "$OUT" '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' "w1 uid" ||
        return
}

case_apply_unchanged() {
    local rv
    jp configmap cm1 '{.metadata.resourceVersion}' || return
    rv=$OUT
    ok "re-apply cm" "$K" apply -f "$M/cm.yaml" || return
    assert_eq "$OUT" "configmap/cm1 unchanged" "re-apply output" || return
    ok "re-apply deploy" "$K" apply -f "$M/deploy.yaml" || return
    assert_eq "$OUT" "deployment.apps/web unchanged" "re-apply deploy output" || return
    jp configmap cm1 '{.metadata.resourceVersion}' || return
    assert_eq "$OUT" "$rv" "resourceVersion after applying the same file" || return
}

case_apply_changed() {
    local rv uid
    jp configmap cm1 '{.metadata.resourceVersion} {.metadata.uid}' || return
    rv=${OUT% *} uid=${OUT#* }
    ok "apply changed cm" "$K" apply -f "$M/cm-changed.yaml" || return
    assert_eq "$OUT" "configmap/cm1 configured" "apply output" || return
    jp configmap cm1 '{.data.greeting} {.metadata.uid}' || return
    assert_eq "$OUT" "bonjour $uid" "cm1 data and uid after the change" || return
    jp configmap cm1 '{.metadata.resourceVersion}' || return
    assert_gt "$OUT" "$rv" "resourceVersion after a change" || return
    ok "apply changed widget" "$K" apply -f "$M/widget-changed.yaml" || return
    assert_eq "$OUT" "widget.example.com/w1 configured" "apply widget output" || return
    jp widget w1 '{.spec.size} {.metadata.generation}' || return
    assert_eq "$OUT" "7 2" "w1 size and generation after the change" || return
}

case_apply_generation() {
    ok "apply deploy spec change" "$K" apply -f "$M/deploy-spec.yaml" || return
    assert_eq "$OUT" "deployment.apps/web configured" "apply output" || return
    jp deployment web '{.spec.replicas} {.metadata.generation}' || return
    assert_eq "$OUT" "3 2" "replicas and generation after a spec change" || return
    ok "apply deploy label change" "$K" apply -f "$M/deploy-label.yaml" || return
    assert_eq "$OUT" "deployment.apps/web configured" "apply output" || return
    jp deployment web '{.metadata.labels.tier} {.metadata.generation}' || return
    assert_eq "$OUT" "front 2" "label and generation after a label-only change" || return
}

case_server_side_apply() {
    local rv
    ok "ssa create" "$K" apply --server-side -f "$M/ssa.yaml" || return
    assert_eq "$OUT" "configmap/ssa1 serverside-applied" "ssa create output" || return
    ok "ssa update" "$K" apply --server-side -f "$M/ssa-2.yaml" || return
    assert_eq "$OUT" "configmap/ssa1 serverside-applied" "ssa update output" || return
    jp configmap ssa1 '{.data.a} {.data.b} {.metadata.resourceVersion}' || return
    assert_eq "${OUT% *}" "two keep" "ssa1 data after the update" || return
    rv=${OUT##* }
    ok "ssa same again" "$K" apply --server-side -f "$M/ssa-2.yaml" || return
    jp configmap ssa1 '{.metadata.resourceVersion}' || return
    assert_eq "$OUT" "$rv" "resourceVersion after a no-op server-side apply" || return
    # A second manager wanting a different value for .data.a.
    fails "conflicting apply" "$K" apply --server-side --field-manager=other -f "$M/ssa-other.yaml" ||
        return
    assert_contains "$OUT" "conflict" "conflict error" || return
    assert_contains "$OUT" '.data.a' "conflict error names the field" || return
    assert_contains "$OUT" '"kubectl"' "conflict error names the other manager" || return
    jp configmap ssa1 '{.data.a}' || return
    assert_eq "$OUT" two "ssa1 data.a after the refused apply" || return
    ok "forced apply" "$K" apply --server-side --field-manager=other --force-conflicts \
        -f "$M/ssa-other.yaml" || return
    jp configmap ssa1 '{.data.a} {.data.b}' || return
    assert_eq "$OUT" "three keep" "ssa1 data after --force-conflicts" || return
}

case_managed_fields() {
    okv "get -o json --show-managed-fields" "$K" get -n "$NS" cm ssa1 -o json --show-managed-fields ||
        return
    assert_contains "$OUT" '"managedFields"' "managedFields shown" || return
    assert_match "$OUT" '"manager": "other"' "manager other" || return
    assert_match "$OUT" '"operation": "Apply"' "operation Apply" || return
    assert_match "$OUT" '"fieldsType": "FieldsV1"' "fieldsType" || return
    assert_match "$OUT" '"f:a": \{\}' "f:a owned" || return
    okv "get managedFields of cm1" "$K" get -n "$NS" cm cm1 -o json --show-managed-fields || return
    assert_match "$OUT" '"manager": "kubectl-client-side-apply"' "client-side apply manager" ||
        return
    assert_match "$OUT" '"operation": "Update"' "client-side apply operation" || return
    okv "get -o json" "$K" get -n "$NS" cm ssa1 -o json || return
    assert_not_contains "$OUT" managedFields "managedFields hidden by default" || return
}

case_get_table() {
    okv "get deploy" "$K" get -n "$NS" deploy || return
    assert_match "$OUT" '^NAME +READY +UP-TO-DATE +AVAILABLE +AGE$' "deployments header" || return
    assert_match "$OUT" '^web +[0-9]+/3 +[0-9]+ +[0-9]+ +[0-9]+[smhdy]' "deployments row" || return
    okv "get svc" "$K" get -n "$NS" svc || return
    assert_match "$OUT" '^NAME +TYPE +CLUSTER-IP +EXTERNAL-IP +PORT\(S\) +AGE$' "services header" ||
        return
    assert_match "$OUT" '^svc1 +ClusterIP +10\.[0-9.]+ +<none> +80/TCP +[0-9]+[smhdy]' "services row" ||
        return
    okv "get widgets" "$K" get -n "$NS" widgets || return
    assert_match "$OUT" '^NAME +SIZE$' "widgets header (printer columns only, as kube-apiserver)" || return
    assert_match "$OUT" '^w1 +7$' "widgets row" || return
    okv "get cm" "$K" get -n "$NS" cm cm1 || return
    assert_match "$OUT" '^NAME +DATA +AGE$' "configmaps header" || return
    assert_match "$OUT" '^cm1 +1 +[0-9]+[smhdy]' "configmaps row" || return
    okv "get ns" "$K" get ns "$NS" || return
    assert_match "$OUT" '^NAME +STATUS +AGE$' "namespaces header" || return
    assert_match "$OUT" "^$NS +Active +[0-9]+[smhdy]" "namespaces row" || return
    okv "get wd (short name) -A" "$K" get wd -A || return
    assert_match "$OUT" '^NAMESPACE +NAME +SIZE$' "widgets -A header" || return
    assert_match "$OUT" "^$NS +w1 +7$" "widgets -A row" || return
}

case_get_output() {
    okv "get -o yaml" "$K" get -n "$NS" cm cm1 -o yaml || return
    assert_match "$OUT" '^kind: ConfigMap$' "yaml kind" || return
    assert_match "$OUT" '^  greeting: bonjour$' "yaml data" || return
    assert_match "$OUT" '^  name: cm1$' "yaml name" || return
    okv "get -o jsonpath" "$K" get -n "$NS" deploy web \
        -o 'jsonpath={range .spec.template.spec.containers[*]}{.name}={.image};{end}' || return
    assert_eq "$OUT" "main=nginx:1.25;side=busybox:1.36;" "jsonpath over containers" || return
    okv "get -l" "$K" get -n "$NS" cm -l app=demo -o name || return
    assert_eq "$OUT" "configmap/cm1" "label selector app=demo" || return
    okv "get -l !app" "$K" get -n "$NS" cm -l '!app' -o name || return
    assert_eq "$OUT" "configmap/ssa1" "label selector !app" || return
    okv "get --field-selector" "$K" get -n "$NS" cm --field-selector metadata.name=ssa1 -o name ||
        return
    assert_eq "$OUT" "configmap/ssa1" "field selector metadata.name=ssa1" || return
    okv "get --field-selector !=" "$K" get -n "$NS" cm --field-selector 'metadata.name!=ssa1' \
        -o name || return
    assert_eq "$OUT" "configmap/cm1" "field selector metadata.name!=ssa1" || return
    okv "get deploy,svc -o name" "$K" get -n "$NS" deploy,svc -o name || return
    assert_eq "$OUT" "deployment.apps/web
service/svc1" "two kinds at once" || return
}

case_watch() {
    local wf=$KL_TMP/watch.out pid
    : >"$wf"
    "$K" get -n "$NS" cm -w --output-watch-events -o json >"$wf" 2>&1 &
    pid=$!
    bg_track "$pid"
    if ! wait_for 20 grep -q '"name": *"ssa1"' "$wf"; then
        bg_stop "$pid"
        t_fail "watch printed no initial list: $(head -c 800 "$wf")"
        return 1
    fi
    ok "label cm1" "$K" label -n "$NS" cm cm1 watched=yes || return
    ok "create cm" "$K" create -n "$NS" cm watched-new --from-literal=x=1 || return
    ok "delete cm" "$K" delete -n "$NS" cm watched-new || return
    wait_for 20 grep -q '"type": *"DELETED"' "$wf"
    bg_stop "$pid"
    assert_match "$(cat "$wf")" '"type": *"MODIFIED"' "MODIFIED event printed" || return
    assert_match "$(cat "$wf")" '"watched": *"yes"' "the change is in the event" || return
    assert_match "$(tr -d ' \n' <"$wf")" '"type":"ADDED","object":\{[^}]*"data":\{"x":"1"\}' \
        "ADDED event for the new ConfigMap" || return
    assert_match "$(cat "$wf")" '"type": *"DELETED"' "DELETED event printed" || return
}

case_wait() {
    local wf=$KL_TMP/wait.out pid rc
    "$K" wait -n "$NS" widget/w1 --for=condition=Ready --timeout=30s >"$wf" 2>&1 &
    pid=$!
    bg_track "$pid"
    ok "patch status" "$K" patch -n "$NS" widget w1 --subresource=status --type=merge \
        -p '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Test"}]}}' || return
    wait "$pid"
    rc=$?
    bg_stop "$pid"
    assert_eq "$rc" 0 "kubectl wait exit status ($(cat "$wf"))" || return
    assert_contains "$(cat "$wf")" "widget.example.com/w1 condition met" "wait output" || return
    jp widget w1 '{.spec.size} {.status.conditions[0].type}' || return
    assert_eq "$OUT" "7 Ready" "spec untouched, status stored" || return
    ok "wait when already met" "$K" wait -n "$NS" widget/w1 --for=condition=Ready --timeout=10s ||
        return
    # A spec change through the main resource must not touch status (and vice versa).
    ok "patch spec with status" "$K" patch -n "$NS" widget w1 --type=merge \
        -p '{"status":{"conditions":[]}}' || return
    jp widget w1 '{.status.conditions[0].type}' || return
    assert_eq "$OUT" Ready "status unchanged by a write to the main resource" || return
    local t0=$SECONDS
    fails "wait for a condition that never comes" "$K" wait -n "$NS" widget/w1 \
        --for=condition=Missing --timeout=2s || return
    assert_contains "$OUT" "timed out" "wait timeout message" || return
    [ $((SECONDS - t0)) -le 20 ] || t_fail "wait --timeout=2s took $((SECONDS - t0)) s" || return
}

case_api_resources() {
    okv "api-resources" "$K" api-resources || return
    assert_match "$OUT" '^widgets +wd +example\.com/v1 +true +Widget$' "widgets row" || return
    assert_match "$OUT" '^configmaps +cm +v1 +true +ConfigMap$' "configmaps row" || return
    assert_match "$OUT" '^namespaces +ns +v1 +false +Namespace$' "namespaces row" || return
    assert_match "$OUT" '^services +svc +v1 +true +Service$' "services row" || return
    assert_match "$OUT" '^secrets +v1 +true +Secret$' "secrets row" || return
    assert_match "$OUT" '^deployments +deploy +apps/v1 +true +Deployment$' "deployments row" || return
    assert_match "$OUT" \
        '^customresourcedefinitions +crd,crds +apiextensions\.k8s\.io/v1 +false +CustomResourceDefinition$' \
        "crd row" || return
    okv "api-resources --api-group" "$K" api-resources --api-group=example.com -o name || return
    assert_eq "$OUT" "widgets.example.com" "api-resources for example.com" || return
    okv "api-versions" "$K" api-versions || return
    assert_match "$OUT" '^example\.com/v1$' "api-versions lists example.com/v1" || return
    assert_match "$OUT" '^apps/v1$' "api-versions lists apps/v1" || return
}

case_explain() {
    okv "explain deployment.spec.replicas" "$K" explain deployment.spec.replicas || return
    assert_match "$OUT" '^KIND: +Deployment$' "explain kind" || return
    assert_match "$OUT" 'replicas.*<integer>' "explain field type" || return
    assert_contains "$OUT" "Number of desired pods" "explain description" || return
    okv "explain widget.spec" "$K" explain widget.spec || return
    assert_match "$OUT" '^GROUP: +example\.com$' "explain widget group" || return
    assert_match "$OUT" 'size.*<integer>.*-required-' "explain widget size field" || return
    assert_match "$OUT" 'color.*<string>' "explain widget color field" || return
}

# bad FILE NEEDLE... : apply --validate=strict must fail, mention every NEEDLE, store nothing.
bad() {
    local file=$1 n
    shift
    fails "apply $file" "$K" apply --validate=strict -f "$M/$file.yaml" || return
    for n in "$@"; do
        assert_contains "$OUT" "$n" "error for $file" || return
    done
}

case_error_schema() {
    bad bad-schema 'spec.size' 'less than or equal to 10' || return
    absent widget bad-schema || return
    bad bad-enum 'spec.color' 'green' || return
    absent widget bad-enum || return
    # The same rules hold for server-side apply.
    fails "ssa schema violation" "$K" apply --server-side -f "$M/bad-schema.yaml" || return
    assert_contains "$OUT" 'spec.size' "ssa schema error" || return
    absent widget bad-schema || return
}

case_error_unknown_field() {
    bad bad-unknown 'unknown field' 'imagePullPolicyy' || return
    absent deployment bad-unknown || return
    fails "create unknown field" "$K" create --validate=strict -f "$M/bad-unknown.yaml" || return
    assert_contains "$OUT" 'imagePullPolicyy' "create unknown field error" || return
    absent deployment bad-unknown || return
}

case_error_malformed_yaml() {
    bad bad-yaml 'yaml' 'line 5' || return
    absent configmap bad-yaml || return
}

case_error_apiversion() {
    bad bad-apiversion 'apps/v9' || return
    absent deployment bad-apiversion || return
}

case_error_name() {
    bad bad-name 'BadName' 'RFC 1123' || return
    okv "list configmaps" "$K" get -n "$NS" cm -o name || return
    assert_not_contains "$OUT" "badname" "no ConfigMap stored for BadName" || return
}

# Semantic validation of built-in kinds, as kube-apiserver does it.
case_error_builtin_semantics() {
    bad bad-svc-port 'spec.ports[0].port' '65535' || return
    absent service bad-svc-port || return
    bad bad-selector 'selector' 'does not match template' || return
    absent deployment bad-selector || return
}

# A Secret's stringData is write-only: merged into data (base64) on every write, never stored.
case_secret_string_data() {
    ok "apply secret" "$K" apply -f "$M/secret.yaml" || return
    okv "get secret" "$K" get -n "$NS" secret sec1 -o json || return
    assert_match "$OUT" '"password": "c2VrcmV0"' "stringData merged into data" || return
    assert_match "$OUT" '"user": "YWRtaW4="' "data kept" || return
    # (the last-applied annotation still quotes the manifest, as on a real cluster)
    jp secret sec1 '{.stringData}' || return
    assert_eq "$OUT" "" "stringData not stored" || return
    ok "create secret" "$K" create -f "$M/secret2.yaml" || return
    okv "get secret" "$K" get -n "$NS" secret sec2 -o 'jsonpath={.data.password} {.type}' || return
    assert_eq "$OUT" "c2VrcmV0 Opaque" "secret created with stringData only" || return
}

case_create_replace() {
    ok "create" "$K" create -f "$M/create.yaml" || return
    assert_eq "$OUT" "configmap/created1 created" "create output" || return
    fails "create again" "$K" create -f "$M/create.yaml" || return
    assert_contains "$OUT" "AlreadyExists" "second create reason" || return
    assert_contains "$OUT" 'configmaps "created1" already exists' "second create message" || return
    okv "get -o yaml" "$K" get -n "$NS" cm created1 -o yaml || return
    printf '%s\n' "$OUT" | sed 's/^  a: b$/  a: stale/' >"$M/stale.yaml"
    ok "label (moves resourceVersion on)" "$K" label -n "$NS" cm created1 x=y || return
    fails "replace with a stale resourceVersion" "$K" replace -f "$M/stale.yaml" || return
    assert_contains "$OUT" "Conflict" "stale replace reason" || return
    assert_contains "$OUT" "the object has been modified" "stale replace message" || return
    jp configmap created1 '{.data.a} {.metadata.labels.x}' || return
    assert_eq "$OUT" "b y" "object after the refused replace" || return
    okv "get -o yaml" "$K" get -n "$NS" cm created1 -o yaml || return
    printf '%s\n' "$OUT" | sed 's/^  a: b$/  a: fresh/' >"$M/fresh.yaml"
    ok "replace with the current resourceVersion" "$K" replace -f "$M/fresh.yaml" || return
    assert_eq "$OUT" "configmap/created1 replaced" "replace output" || return
    jp configmap created1 '{.data.a}' || return
    assert_eq "$OUT" fresh "data after replace" || return
}

case_patch() {
    ok "json patch" "$K" patch -n "$NS" deploy web --type=json \
        -p '[{"op":"replace","path":"/spec/replicas","value":4}]' || return
    assert_eq "$OUT" "deployment.apps/web patched" "json patch output" || return
    ok "merge patch" "$K" patch -n "$NS" deploy web --type=merge \
        -p '{"metadata":{"labels":{"merged":"yes"}}}' || return
    ok "strategic patch" "$K" patch -n "$NS" deploy web \
        -p '{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"nginx:1.27"}]}}}}' ||
        return
    jp deployment web '{.spec.replicas} {.metadata.labels.merged} {.metadata.labels.app} {range .spec.template.spec.containers[*]}{.name}={.image} {end}' ||
        return
    assert_eq "$OUT" "4 yes demo main=nginx:1.27 side=busybox:1.36 " \
        "deployment after json, merge and strategic patches" || return
    fails "json patch test op failing" "$K" patch -n "$NS" deploy web --type=json \
        -p '[{"op":"test","path":"/spec/replicas","value":99},{"op":"replace","path":"/spec/replicas","value":9}]' ||
        return
    jp deployment web '{.spec.replicas}' || return
    assert_eq "$OUT" 4 "replicas after a failed json patch test" || return
    ok "merge patch on a custom resource" "$K" patch -n "$NS" widget w1 --type=merge \
        -p '{"spec":{"color":"blue"}}' || return
    jp widget w1 '{.spec.color} {.spec.size}' || return
    assert_eq "$OUT" "blue 7" "widget after merge patch" || return
}

case_label_annotate_scale() {
    ok "label" "$K" label -n "$NS" cm cm1 env=test || return
    assert_eq "$OUT" "configmap/cm1 labeled" "label output" || return
    ok "annotate" "$K" annotate -n "$NS" cm cm1 note=hello || return
    assert_eq "$OUT" "configmap/cm1 annotated" "annotate output" || return
    jp configmap cm1 '{.metadata.labels.env} {.metadata.annotations.note}' || return
    assert_eq "$OUT" "test hello" "label and annotation stored" || return
    ok "label removal" "$K" label -n "$NS" cm cm1 env- || return
    jp configmap cm1 '{.metadata.labels}' || return
    assert_not_contains "$OUT" '"env"' "label removed" || return
    local before
    before=$(grep -c 'deployments/web/scale' "$KL_LOG")
    ok "scale" "$K" scale -n "$NS" deploy web --replicas=5 || return
    assert_eq "$OUT" "deployment.apps/web scaled" "scale output" || return
    jp deployment web '{.spec.replicas}' || return
    assert_eq "$OUT" 5 "replicas after scale" || return
    assert_gt "$(grep -c 'deployments/web/scale' "$KL_LOG")" "$before" \
        "scale went through the scale subresource" || return
    okv "get scale subresource" "$K" get --raw "/apis/apps/v1/namespaces/$NS/deployments/web/scale" ||
        return
    assert_contains "$OUT" '"kind":"Scale"' "Scale object" || return
    assert_contains "$OUT" '"replicas":5' "Scale spec.replicas" || return
}

# kubectl's generators (create namespace/deployment/service/secret/...); kubectl 1.33 sends their
# bodies as protobuf.
case_create_subcommands() {
    local failed=() c
    for c in "namespace gen" "deployment -n gen gd --image=nginx --replicas=2" \
        "service clusterip -n gen gs --tcp=80:8080" "secret generic -n gen gsec --from-literal=k=v" \
        "configmap -n gen gcm --from-literal=k=v" "serviceaccount -n gen gsa"; do
        # shellcheck disable=SC2086
        run "$K" create $c
        [ "$RC" -eq 0 ] || failed+=("create $c: $OUT")
    done
    if [ ${#failed[@]} -gt 0 ]; then
        t_fail "$(printf '%s; ' "${failed[@]}")"
        return 1
    fi
    okv "get them" "$K" get -n gen deploy,svc,secret,cm,sa -o name || return
    assert_contains "$OUT" "deployment.apps/gd" "generated deployment" || return
    assert_contains "$OUT" "service/gs" "generated service" || return
    assert_contains "$OUT" "secret/gsec" "generated secret" || return
    assert_contains "$OUT" "configmap/gcm" "generated configmap" || return
    assert_contains "$OUT" "serviceaccount/gsa" "generated serviceaccount" || return
    okv "get secret" "$K" get -n gen secret gsec -o 'jsonpath={.data.k}' || return
    assert_eq "$OUT" "dg==" "secret data (base64 of v)" || return
    jp_gen='{.spec.replicas} {.spec.template.spec.containers[0].image}'
    okv "get deployment" "$K" get -n gen deploy gd -o "jsonpath=$jp_gen" || return
    assert_eq "$OUT" "2 nginx" "generated deployment spec" || return
}

case_delete() {
    ok "delete cm" "$K" delete -n "$NS" cm created1 || return
    assert_eq "$OUT" 'configmap "created1" deleted' "delete output" || return
    absent configmap created1 || return
    ok "delete -f" "$K" delete -f "$M/svc.yaml" || return
    absent service svc1 || return
    fails "delete missing" "$K" delete -n "$NS" cm created1 || return
    assert_contains "$OUT" 'NotFound' "delete of a missing object" || return
    ok "delete ns" "$K" delete ns "$NS" --timeout=30s || return
    run "$K" get ns "$NS" -o name
    assert_contains "$OUT" "NotFound" "namespace gone" || return
    okv "list after delete ns" "$K" get -n "$NS" cm,deploy,widgets,svc -o name || return
    assert_eq "$OUT" "" "objects left in the deleted namespace" || return
    okv "list all namespaces" "$K" get cm,deploy,widgets -A -o name || return
    assert_not_contains "$OUT" "cm1" "cm1 gone everywhere" || return
    assert_not_contains "$OUT" "web" "deployment gone everywhere" || return
    assert_not_contains "$OUT" "w1" "widget gone everywhere" || return
    ok "delete crd" "$K" delete crd widgets.example.com || return
    run "$K" get --raw /apis/example.com/v1
    assert_contains "$OUT" "NotFound" "example.com/v1 no longer served" || return
}

for v in 1.29 1.33; do
    K=$KUBECTL_DIR/kubectl.$v
    if [ ! -x "$K" ]; then
        t_begin "kubectl-$v"
        t_skip "$K not found"
        continue
    fi
    if ! kl_start; then # shellcheck disable=SC2119
        t_begin "start-kubelite-$v"
        t_fail "kubelite did not start"
        continue
    fi
    t_run "apply-create-$v" case_apply_create
    t_run "apply-unchanged-$v" case_apply_unchanged
    t_run "apply-changed-$v" case_apply_changed
    t_run "apply-generation-$v" case_apply_generation
    t_run "server-side-apply-$v" case_server_side_apply
    t_run "managed-fields-$v" case_managed_fields
    t_run "get-table-$v" case_get_table
    t_run "get-output-$v" case_get_output
    t_run "watch-$v" case_watch
    t_run "wait-$v" case_wait
    t_run "api-resources-$v" case_api_resources
    t_run "explain-$v" case_explain
    t_run "error-schema-$v" case_error_schema
    t_run "error-unknown-field-$v" case_error_unknown_field
    t_run "error-malformed-yaml-$v" case_error_malformed_yaml
    t_run "error-apiversion-$v" case_error_apiversion
    t_run "error-name-$v" case_error_name
    t_run "error-builtin-semantics-$v" case_error_builtin_semantics
    t_run "secret-string-data-$v" case_secret_string_data
    t_run "create-replace-$v" case_create_replace
    t_run "patch-$v" case_patch
    t_run "label-annotate-scale-$v" case_label_annotate_scale
    t_run "create-subcommands-$v" case_create_subcommands
    t_run "delete-$v" case_delete
    kl_stop
    t_begin "clean-shutdown-$v"
    assert_eq "$KL_EXIT" 0 "kubelite exit status after SIGTERM" && t_pass
done
t_summary
