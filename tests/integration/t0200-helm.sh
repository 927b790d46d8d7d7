#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# Real helm v4 against kubelite: install --wait of tests/fixtures/charts/kl-demo, list/status,
# upgrade, rollback, history, uninstall, and installs that must fail cleanly.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

CHART=$KL_REPO/tests/fixtures/charts/kl-demo
K=${KUBECTL:-$KUBECTL_DIR/kubectl.1.33}
REL=demo
NS=default
H_TIMEOUT=45s

# jp KIND NAME JSONPATH: a field of a stored object in $NS (into OUT).
jp() {
    okv "get $1/$2" "$K" get -n "$NS" "$1" "$2" -o "jsonpath=$3"
}

# release_secrets REL: names of the release's Secrets (sorted, one a line) into OUT.
release_secrets() {
    okv "list release secrets" "$K" get -n "$NS" secrets -l "owner=helm,name=$1" \
        -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}'
}

case_install() {
    ok "helm install" "$HELM" install "$REL" "$CHART" -n "$NS" --wait --timeout "$H_TIMEOUT" || return
    assert_match "$OUT" '^STATUS: deployed$' "install output status" || return
    assert_match "$OUT" '^REVISION: 1$' "install output revision" || return
    # The CRD from crds/, established.
    okv "get crd" "$K" get crd widgets.example.com \
        -o 'jsonpath={range .status.conditions[*]}{.type}={.status};{end}' || return
    assert_contains "$OUT" "Established=True" "CRD established" || return
    assert_contains "$OUT" "NamesAccepted=True" "CRD names accepted" || return
    jp widget "$REL-widget" '{.spec.size} {.spec.color}' || return
    assert_eq "$OUT" "3 red" "widget spec (size from values, color defaulted)" || return
    jp configmap "$REL-config" '{.data.greeting} {.metadata.labels.app\.kubernetes\.io/instance}' ||
        return
    assert_eq "$OUT" "hello $REL" "configmap data and labels" || return
    jp configmap "$REL-config" '{.metadata.labels.app\.kubernetes\.io/managed-by} {.metadata.annotations.meta\.helm\.sh/release-name}' ||
        return
    assert_eq "$OUT" "Helm $REL" "helm ownership metadata" || return
    jp service "$REL-svc" '{.spec.type} {.spec.clusterIP} {.spec.ports[0].port} {.spec.ports[0].targetPort}' ||
        return
    assert_match "$OUT" '^ClusterIP 10\.[0-9]+\.[0-9]+\.[0-9]+ 8080 http$' "service" || return
}

case_list_status() {
    okv "helm list" "$HELM" list -n "$NS" -o json || return
    assert_contains "$OUT" "\"name\":\"$REL\"" "list name" || return
    assert_contains "$OUT" '"revision":"1"' "list revision" || return
    assert_contains "$OUT" '"status":"deployed"' "list status" || return
    assert_contains "$OUT" '"chart":"kl-demo-0.1.0"' "list chart" || return
    okv "helm status" "$HELM" status "$REL" -n "$NS" || return
    assert_match "$OUT" '^STATUS: deployed$' "status" || return
    assert_match "$OUT" '^REVISION: 1$' "status revision" || return
    assert_contains "$OUT" "$REL-config" "status lists the configmap" || return
    assert_contains "$OUT" "$REL-svc" "status lists the service" || return
    assert_contains "$OUT" "$REL-widget" "status lists the widget" || return
    release_secrets "$REL" || return
    assert_eq "$OUT" "sh.helm.release.v1.$REL.v1" "release secrets" || return
    okv "release secret" "$K" get -n "$NS" secret "sh.helm.release.v1.$REL.v1" \
        -o 'jsonpath={.type} {.metadata.labels.owner} {.metadata.labels.status} {.metadata.labels.name} {.metadata.labels.version}' ||
        return
    assert_eq "$OUT" "helm.sh/release.v1 helm deployed $REL 1" "release secret type and labels" ||
        return
    okv "release data" "$K" get -n "$NS" secret "sh.helm.release.v1.$REL.v1" \
        -o 'jsonpath={.data.release}' || return
    [ ${#OUT} -gt 100 ] || t_fail "release secret data too short: '$OUT'" || return
}

case_upgrade() {
    ok "helm upgrade" "$HELM" upgrade "$REL" "$CHART" -n "$NS" --set greeting=bonjour --wait \
        --timeout "$H_TIMEOUT" || return
    assert_match "$OUT" '^REVISION: 2$' "upgrade revision" || return
    jp configmap "$REL-config" '{.data.greeting}' || return
    assert_eq "$OUT" bonjour "greeting after upgrade" || return
    okv "helm status" "$HELM" status "$REL" -n "$NS" -o json || return
    assert_contains "$OUT" '"version":2' "status version after upgrade" || return
    okv "label of v1" "$K" get -n "$NS" secret "sh.helm.release.v1.$REL.v1" \
        -o 'jsonpath={.metadata.labels.status}' || return
    assert_eq "$OUT" superseded "revision 1 status label" || return
    okv "label of v2" "$K" get -n "$NS" secret "sh.helm.release.v1.$REL.v2" \
        -o 'jsonpath={.metadata.labels.status}' || return
    assert_eq "$OUT" deployed "revision 2 status label" || return
}

case_rollback() {
    ok "helm rollback" "$HELM" rollback "$REL" 1 -n "$NS" --wait --timeout "$H_TIMEOUT" || return
    jp configmap "$REL-config" '{.data.greeting}' || return
    assert_eq "$OUT" hello "greeting after rollback" || return
    okv "helm list" "$HELM" list -n "$NS" -o json || return
    assert_contains "$OUT" '"revision":"3"' "revision after rollback" || return
    assert_contains "$OUT" '"status":"deployed"' "status after rollback" || return
}

case_history() {
    okv "helm history" "$HELM" history "$REL" -n "$NS" || return
    assert_match "$OUT" '^1 .*superseded.*Install complete' "history revision 1" || return
    assert_match "$OUT" '^2 .*superseded.*Upgrade complete' "history revision 2" || return
    assert_match "$OUT" '^3 .*deployed.*Rollback to 1' "history revision 3" || return
    [ "$(printf '%s\n' "$OUT" | grep -cE '^[0-9]+ ')" = 3 ] ||
        t_fail "history should have 3 revisions: $OUT" || return
    release_secrets "$REL" || return
    assert_eq "$OUT" "sh.helm.release.v1.$REL.v1
sh.helm.release.v1.$REL.v2
sh.helm.release.v1.$REL.v3" "release secrets after rollback" || return
}

case_uninstall() {
    ok "helm uninstall" "$HELM" uninstall "$REL" -n "$NS" --wait --timeout "$H_TIMEOUT" || return
    assert_contains "$OUT" "release \"$REL\" uninstalled" "uninstall output" || return
    okv "list objects" "$K" get -n "$NS" cm,svc,widgets -o name || return
    assert_eq "$OUT" "" "objects left after uninstall" || return
    release_secrets "$REL" || return
    assert_eq "$OUT" "" "release secrets left after uninstall" || return
    okv "helm list" "$HELM" list -n "$NS" -q || return
    assert_eq "$OUT" "" "helm list after uninstall" || return
    okv "crd stays" "$K" get crd widgets.example.com -o name || return
    assert_eq "$OUT" "customresourcedefinition.apiextensions.k8s.io/widgets.example.com" \
        "CRD kept (helm leaves crds/)" || return
}

# nothing_of REL: no objects and no release Secrets of REL are stored.
nothing_of() {
    okv "list objects" "$K" get -n "$NS" cm,svc,widgets,secrets -o name || return
    assert_not_contains "$OUT" "$1-" "objects of release $1" || return
    assert_not_contains "$OUT" "sh.helm.release.v1.$1." "release secrets of $1" || return
}

case_template_error() {
    local c=$KL_TMP/broken-chart
    rm -rf "$c"
    cp -r "$CHART" "$c"
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-broken\ndata:\n  x: {{ .Values.greeting | nosuchfunc }}\n' \
        >"$c/templates/broken.yaml"
    fails "install of a chart with a template error" "$HELM" install broken "$c" -n "$NS" \
        --wait --timeout "$H_TIMEOUT" || return
    assert_contains "$OUT" 'function "nosuchfunc" not defined' "template error message" || return
    assert_contains "$OUT" 'broken.yaml' "template error names the file" || return
    nothing_of broken || return
}

case_invalid_object() {
    # size=42 violates the CRD schema (maximum 10): the server refuses the Widget.
    fails "install with an invalid object" "$HELM" install invalid "$CHART" -n "$NS" \
        --set size=42 --rollback-on-failure --timeout "$H_TIMEOUT" || return
    assert_contains "$OUT" 'invalid-widget' "error names the object" || return
    assert_contains "$OUT" 'spec.size' "error names the field" || return
    assert_contains "$OUT" 'less than or equal to 10' "error gives the rule" || return
    nothing_of invalid || return
    okv "helm list" "$HELM" list -n "$NS" -q || return
    assert_eq "$OUT" "" "no release listed" || return
}

case_invalid_builtin() {
    # A Service port out of range: kube-apiserver refuses it.
    fails "install with an invalid Service" "$HELM" install badport "$CHART" -n "$NS" \
        --set port=99999 --rollback-on-failure --timeout "$H_TIMEOUT" || return
    assert_contains "$OUT" 'spec.ports[0].port' "error names the field" || return
    nothing_of badport || return
}

case_reinstall() {
    # The name is free again after uninstall; the kept CRD is reused.
    ok "helm install again" "$HELM" install "$REL" "$CHART" -n "$NS" --set size=5 --wait \
        --timeout "$H_TIMEOUT" || return
    jp widget "$REL-widget" '{.spec.size}' || return
    assert_eq "$OUT" 5 "widget size on reinstall" || return
    ok "helm uninstall" "$HELM" uninstall "$REL" -n "$NS" --wait --timeout "$H_TIMEOUT" || return
    nothing_of "$REL" || return
}

t_begin setup
if [ ! -x "$HELM" ] || [ ! -x "$K" ]; then
    t_skip "need $HELM (tools/deps.sh) and $K"
    t_summary
fi
if ! kl_start; then # shellcheck disable=SC2119
    t_fail "kubelite did not start"
    t_summary
fi
t_pass
t_run helm-install "case_install"
t_run helm-list-status case_list_status
t_run helm-upgrade case_upgrade
t_run helm-rollback case_rollback
t_run helm-history case_history
t_run helm-uninstall case_uninstall
t_run helm-template-error case_template_error
t_run helm-invalid-object case_invalid_object
t_run helm-invalid-builtin case_invalid_builtin
t_run helm-reinstall case_reinstall
kl_stop
t_begin clean-shutdown
assert_eq "$KL_EXIT" 0 "kubelite exit status after SIGTERM" && t_pass
t_summary
