#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# The Helm chart charts/weft with the real helm v4 and kubectl 1.33 against kubelite:
#   - its CRD copies match crds/ (tools/check-chart.sh), and the check catches a drift;
#   - helm lint (and the values schema) for good and bad values;
#   - helm template for several value combinations; every rendered object passes
#     `kubectl apply --dry-run=server --validate=strict` (the official schemas);
#   - every flag the chart passes to weftd is one weftd accepts (build/bin/weftd if built, else
#     the option table in weftd/options.c), with values weftd accepts;
#   - helm install (no wait: weftd's pods are stored, never run) creates exactly the expected
#     objects; RBAC checked as weftd's own ServiceAccount; the webhook's failurePolicy and
#     selectors as the API server applies them; helm upgrade (args change, caBundle and the CA
#     Secret kept); nativeSidecars=auto looking at the nodes; helm uninstall (CRDs and the CA
#     Secret stay); the optional SMI CRD.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

CHART=$KL_REPO/charts/weft
K=${KUBECTL:-$KUBECTL_DIR/kubectl.1.33}
NS=weft-system
REL=weft
# weftd's binary for the flag check (WEFTD overrides; when absent, weftd/options.c's table).
WEFTD_BIN=${WEFTD:-$BUILD/bin/weftd}
case $WEFTD_BIN in
/*) ;;
*) WEFTD_BIN=$KL_REPO/$WEFTD_BIN ;;
esac

# The objects of the chart with default values, as `kubectl apply -o name` prints them.
EXPECTED_OBJECTS="clusterrole.rbac.authorization.k8s.io/weftd
clusterrolebinding.rbac.authorization.k8s.io/weftd
deployment.apps/weftd
mutatingwebhookconfiguration.admissionregistration.k8s.io/weft-injector
poddisruptionbudget.policy/weftd
role.rbac.authorization.k8s.io/weftd
rolebinding.rbac.authorization.k8s.io/weftd
service/weft-webhook
service/weftd
serviceaccount/weftd"

EXPECTED_CRDS="accesspolicies.mesh.weft.dev
retrypolicies.mesh.weft.dev
trafficsplits.mesh.weft.dev"

# Every Deployment args list rendered by any case, one list a line (for the flag check).
ALL_ARGS=$KL_TMP/all-args

# render NAME [helm args...]: helm template into $KL_TMP/NAME.yaml (fails the case on error).
render() {
    local name=$1
    shift
    runo "$HELM" template "$REL" "$CHART" -n "$NS" "$@"
    if [ "$RC" -ne 0 ]; then
        t_fail "helm template $*: exit $RC: $(printf '%s' "$ERR" | head -c 1500)"
        return 1
    fi
    printf '%s\n' "$OUT" >"$KL_TMP/$name.yaml"
}

# dry NAME: every object of $KL_TMP/NAME.yaml through server-side validation; OUT = sorted names.
dry() {
    okv "kubectl apply --dry-run=server ($1)" "$K" apply --dry-run=server --validate=strict \
        -f "$KL_TMP/$1.yaml" -o name || return
    OUT=$(printf '%s\n' "$OUT" | sort)
}

# args_of NAME: weftd's args in the Deployment of $KL_TMP/NAME.yaml, one a line, into OUT (and
# appended to ALL_ARGS as one tab-separated line).
args_of() {
    local f=$KL_TMP/$1.yaml.deploy
    awk '/^# Source: weft\/templates\/deployment.yaml/{p=1; next} /^---/{p=0} p' \
        "$KL_TMP/$1.yaml" >"$f"
    okv "args of $1" "$K" create --dry-run=client -f "$f" \
        -o 'jsonpath={range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}' || return
    [ -n "$OUT" ] || t_fail "$1: no weftd args found" || return
    printf '%s\n' "$OUT" | paste -sd '\t' >>"$ALL_ARGS"
}

# jpf NAME KIND OBJNAME JSONPATH: a field of one rendered object (parsed by kubectl), into OUT.
# JSONPATH is the inside of one {...}; "} {" in it joins several fields.
jpf() {
    okv "jsonpath $2/$3 of $1" "$K" create --dry-run=client -f "$KL_TMP/$1.yaml" \
        -o "jsonpath={.kind}{\"\t\"}{.metadata.name}{\"\t\"}{$4}{\"\n\"}" || return
    OUT=$(printf '%s\n' "$OUT" | awk -F '\t' -v k="$2" -v n="$3" \
        '$1 == k && $2 == n { sub(/^[^\t]*\t[^\t]*\t/, ""); print }')
}

# --- CRD copies ---------------------------------------------------------------------------------

case_crds_in_sync() {
    ok "tools/check-chart.sh" "$KL_REPO/tools/check-chart.sh" || return
    assert_eq "$OUT" "check-chart: chart CRDs match crds/" "check-chart output" || return
    # A scratch tree shaped like the repository: the check must notice each kind of drift.
    local r=$KL_TMP/repo
    mkdir -p "$r/tools" "$r/charts"
    cp "$KL_REPO/tools/check-chart.sh" "$r/tools/"
    cp -r "$KL_REPO/crds" "$r/crds"
    cp -r "$CHART" "$r/charts/weft"
    ok "check in the scratch tree" bash "$r/tools/check-chart.sh" || return
    printf '# drift\n' >>"$r/crds/retrypolicies.yaml"
    fails "check after crds/ changed" bash "$r/tools/check-chart.sh" || return
    assert_eq "$OUT" "check-chart: charts/weft/crds/retrypolicies.yaml differs from crds/retrypolicies.yaml (run tools/check-chart.sh --fix)" \
        "drift message" || return
    printf '# drift\n' >>"$r/crds/optional/smi-trafficsplits.yaml"
    rm "$r/charts/weft/crds/accesspolicies.yaml"
    cp "$r/crds/trafficsplits.yaml" "$r/charts/weft/crds/stale.yaml"
    fails "check with three problems" bash "$r/tools/check-chart.sh" || return
    assert_contains "$OUT" "charts/weft/crds/accesspolicies.yaml is missing" "missing copy" || return
    assert_contains "$OUT" "charts/weft/files/smi-trafficsplits.yaml differs from crds/optional/smi-trafficsplits.yaml" \
        "optional CRD drift" || return
    assert_contains "$OUT" "charts/weft/crds/stale.yaml has no source in crds/" "stray copy" || return
    ok "check --fix" bash "$r/tools/check-chart.sh" --fix || return
    ok "check after --fix" bash "$r/tools/check-chart.sh" || return
    cmp -s "$r/crds/retrypolicies.yaml" "$r/charts/weft/crds/retrypolicies.yaml" ||
        t_fail "--fix did not copy retrypolicies.yaml" || return
    [ ! -e "$r/charts/weft/crds/stale.yaml" ] || t_fail "--fix kept the stray copy" || return
    fails "unknown option" bash "$r/tools/check-chart.sh" --frobnicate || return
    assert_eq "$RC" 2 "usage error status" || return
}

# --- lint and schema ----------------------------------------------------------------------------

case_lint() {
    ok "helm lint (defaults)" "$HELM" lint --strict "$CHART" || return
    assert_contains "$OUT" "1 chart(s) linted, 0 chart(s) failed" "lint summary" || return
    ok "helm lint (other values)" "$HELM" lint --strict "$CHART" --set nativeSidecars=false \
        --set mesh.defaultMode=deny --set mesh.outboundScope=admitted --set smi.enabled=true \
        --set ca.userCASecret=my-ca --set replicas=1 --set webhook.failurePolicy=Ignore || return
    fails "lint with bad values" "$HELM" lint "$CHART" --set mesh.defaultMode=strict \
        --set ca.certTTL=59 --set webhook.failurePolicy=Maybe --set webhook.timeoutSeconds=31 \
        --set nativeSidecars=maybe --set logLevel=trace --set replica=3 \
        --set mesh.trustDomain=Bad.Domain --set mesh.outboundScope=callers || return
    assert_contains "$OUT" "at '/mesh/defaultMode': value must be one of 'all-authenticated', 'deny', 'permissive'" \
        "defaultMode refused" || return
    assert_contains "$OUT" "at '/mesh/outboundScope': value must be one of 'mesh', 'admitted'" \
        "outboundScope refused" || return
    assert_contains "$OUT" "at '/ca/certTTL': minimum: got 59, want 60" "certTTL refused" || return
    assert_contains "$OUT" "at '/webhook/failurePolicy'" "failurePolicy refused" || return
    assert_contains "$OUT" "at '/webhook/timeoutSeconds': maximum: got 31, want 30" "timeout refused" ||
        return
    assert_contains "$OUT" "at '/nativeSidecars'" "nativeSidecars refused" || return
    assert_contains "$OUT" "at '/logLevel'" "logLevel refused" || return
    assert_contains "$OUT" "additional properties 'replica' not allowed" "typo refused" || return
    assert_contains "$OUT" "at '/mesh/trustDomain'" "trust domain refused" || return
    fails "template with userCASecret = secretName" "$HELM" template "$REL" "$CHART" -n "$NS" \
        --set ca.userCASecret=weft-ca || return
    assert_contains "$OUT" 'ca.userCASecret "weft-ca" must differ from ca.secretName' \
        "userCASecret clash message" || return
    fails "template for Kubernetes 1.28" "$HELM" template "$REL" "$CHART" -n "$NS" \
        --kube-version 1.28.9 || return
    assert_contains "$OUT" "chart requires kubeVersion: >=1.29.0-0 which is incompatible with Kubernetes v1.28.9" \
        "kubeVersion refused" || return
}

# --- rendering ----------------------------------------------------------------------------------

case_render_default() {
    render default || return
    dry default || return
    assert_eq "$OUT" "$EXPECTED_OBJECTS" "objects of the default rendering" || return
    args_of default || return
    assert_eq "$OUT" "--namespace=weft-system
--webhook-service=weft-webhook
--trust-domain=cluster.local
--default-mode=all-authenticated
--outbound-scope=mesh
--ca-secret=weft-ca
--cert-ttl=86400
--proxy-image=weft/proxy:0.1.0
--init-image=weft/init:0.1.0
--proxy-cpu-request=100m
--proxy-memory-request=128Mi
--proxy-cpu-limit=2
--proxy-memory-limit=1Gi
--proxy-log-level=info
--control-plane-addr=weftd.weft-system.svc:15012
--native-sidecars
--log-level=info" "default weftd args (auto: helm template's Kubernetes is >= 1.29)" || return
    # With the CRDs: they validate too (apiextensions schema, structural schemas).
    render with-crds --include-crds || return
    dry with-crds || return
    assert_eq "$OUT" "$(printf '%s\n' "$EXPECTED_OBJECTS" \
        "$(printf '%s\n' "$EXPECTED_CRDS" | sed 's|^|customresourcedefinition.apiextensions.k8s.io/|')" |
        sort)" "objects with --include-crds" || return

    jpf default Deployment weftd '.spec.replicas} {.spec.template.spec.serviceAccountName} {.spec.template.spec.automountServiceAccountToken' ||
        return
    assert_eq "$OUT" "2 weftd true" "replicas, ServiceAccount, token" || return
    jpf default Deployment weftd '.spec.template.spec.containers[0].ports[*].name}={.spec.template.spec.containers[0].ports[*].containerPort' ||
        return
    assert_eq "$OUT" "certs stream webhook admin=15012 15013 9443 15014" "named ports (the config stream on 15013)" || return
    jpf default Deployment weftd '.spec.template.spec.containers[0].readinessProbe.httpGet.path} {.spec.template.spec.containers[0].readinessProbe.httpGet.port} {.spec.template.spec.containers[0].livenessProbe.httpGet.path} {.spec.template.spec.containers[0].livenessProbe.httpGet.port' ||
        return
    assert_eq "$OUT" "/readyz admin /healthz admin" "probes" || return
    jpf default Deployment weftd '.spec.template.spec.containers[0].env[?(@.name=="POD_NAME")].valueFrom.fieldRef.fieldPath' ||
        return
    assert_eq "$OUT" "metadata.name" "POD_NAME from the downward API" || return
    jpf default Deployment weftd '.spec.template.spec.containers[0].securityContext.runAsNonRoot} {.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem} {.spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation} {.spec.template.spec.containers[0].securityContext.capabilities.drop' ||
        return
    assert_eq "$OUT" 'true true false ["ALL"]' "container securityContext" || return
    jpf default Deployment weftd '.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey' ||
        return
    assert_eq "$OUT" "kubernetes.io/hostname" "anti-affinity across nodes" || return
    jpf default Service weft-webhook '.spec.ports[0].port}>{.spec.ports[0].targetPort' || return
    assert_eq "$OUT" "443>webhook" "webhook Service port" || return
    jpf default Service weftd '.spec.ports[*].port' || return
    assert_eq "$OUT" "15012 15013 15014" "weftd Service ports" || return
    jpf default PodDisruptionBudget weftd '.spec.minAvailable' || return
    assert_eq "$OUT" "1" "PDB minAvailable" || return
    jpf default MutatingWebhookConfiguration weft-injector '.webhooks[0].name} {.webhooks[0].clientConfig.service.name}/{.webhooks[0].clientConfig.service.namespace}:{.webhooks[0].clientConfig.service.port}{.webhooks[0].clientConfig.service.path} {.webhooks[0].failurePolicy} {.webhooks[0].timeoutSeconds} {.webhooks[0].sideEffects} {.webhooks[0].reinvocationPolicy} {.webhooks[0].admissionReviewVersions} {.webhooks[0].rules[0].operations} {.webhooks[0].rules[0].resources' ||
        return
    assert_eq "$OUT" 'inject.weft.dev weft-webhook/weft-system:443/inject Fail 10 None IfNeeded ["v1"] ["CREATE"] ["pods"]' \
        "webhook configuration" || return
    jpf default MutatingWebhookConfiguration weft-injector '.webhooks[0].clientConfig' || return
    assert_eq "$OUT" '{"service":{"name":"weft-webhook","namespace":"weft-system","path":"/inject","port":443}}' \
        "clientConfig without caBundle (weftd fills it)" || return
    jpf default MutatingWebhookConfiguration weft-injector '.webhooks[0].namespaceSelector' || return
    assert_eq "$OUT" '{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["weft-system","kube-system"]}],"matchLabels":{"weft.dev/inject":"enabled"}}' \
        "namespaceSelector" || return
    jpf default MutatingWebhookConfiguration weft-injector '.webhooks[1].name} {.webhooks[1].clientConfig.service.name}/{.webhooks[1].clientConfig.service.namespace}:{.webhooks[1].clientConfig.service.port}{.webhooks[1].clientConfig.service.path} {.webhooks[1].failurePolicy} {.webhooks[1].timeoutSeconds} {.webhooks[1].sideEffects} {.webhooks[1].reinvocationPolicy} {.webhooks[1].rules[0].operations} {.webhooks[1].objectSelector.matchExpressions[0].values' ||
        return
    assert_eq "$OUT" 'opt-in.inject.weft.dev weft-webhook/weft-system:443/inject/opt-in Ignore 5 None IfNeeded ["CREATE"] ["false"]' \
        "opt-in webhook" || return
    jpf default MutatingWebhookConfiguration weft-injector '.webhooks[1].namespaceSelector' || return
    assert_eq "$OUT" '{"matchExpressions":[{"key":"weft.dev/inject","operator":"NotIn","values":["enabled","disabled"]},{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["weft-system","kube-system"]}]}' \
        "opt-in namespaceSelector" || return
}

case_render_values() {
    render native-false --set nativeSidecars=false || return
    args_of native-false || return
    assert_not_contains "$OUT" "--native-sidecars" "nativeSidecars=false" || return
    render native-true --set nativeSidecars=true || return
    args_of native-true || return
    assert_contains "$OUT" "--native-sidecars" "nativeSidecars=true" || return

    render deny --set mesh.defaultMode=deny --set mesh.trustDomain=prod.example.com \
        --set ca.certTTL=3600 --set logLevel=debug --set mesh.outboundScope=admitted || return
    dry deny || return
    assert_eq "$OUT" "$EXPECTED_OBJECTS" "objects (defaultMode deny)" || return
    args_of deny || return
    assert_match "$OUT" '^--default-mode=deny$' "default mode arg" || return
    assert_match "$OUT" '^--outbound-scope=admitted$' "outbound scope arg" || return
    assert_match "$OUT" '^--trust-domain=prod\.example\.com$' "trust domain arg" || return
    assert_match "$OUT" '^--cert-ttl=3600$' "cert TTL arg" || return
    assert_match "$OUT" '^--log-level=debug$' "log level arg" || return

    render usercasecret --set ca.userCASecret=my-ca || return
    dry usercasecret || return
    args_of usercasecret || return
    assert_match "$OUT" '^--user-ca-secret=my-ca$' "user CA arg" || return
    jpf usercasecret Role weftd '.rules[?(@.resourceNames[0]=="my-ca")].verbs' || return
    assert_eq "$OUT" '["get","list","watch"]' "the user CA Secret is read only" || return

    render smi --set smi.enabled=true || return
    dry smi || return
    assert_eq "$OUT" "$(printf '%s\n' "$EXPECTED_OBJECTS" \
        customresourcedefinition.apiextensions.k8s.io/trafficsplits.split.smi-spec.io | sort)" \
        "objects with smi.enabled" || return
    jpf smi CustomResourceDefinition trafficsplits.split.smi-spec.io \
        '.metadata.annotations.helm\.sh/resource-policy' || return
    assert_eq "$OUT" keep "SMI CRD kept on uninstall" || return
    # The templated CRD is the file in crds/optional/, as the server sees them.
    local want
    okv "SMI CRD from crds/optional" "$K" create --dry-run=server \
        -f "$KL_REPO/crds/optional/smi-trafficsplits.yaml" -o 'jsonpath={.spec}' || return
    want=$OUT
    awk '/^# Source: weft\/templates\/smi-crd.yaml/{p=1; next} /^---/{p=0} p' "$KL_TMP/smi.yaml" \
        >"$KL_TMP/smi-crd.yaml"
    okv "SMI CRD from the chart" "$K" create --dry-run=server -f "$KL_TMP/smi-crd.yaml" \
        -o 'jsonpath={.spec}' || return
    [ ${#want} -gt 1000 ] || t_fail "SMI CRD spec too short: $want" || return
    assert_eq "$OUT" "$want" "templated SMI CRD spec" || return

    render single --set replicas=1 --set webhook.failurePolicy=Ignore \
        --set webhook.timeoutSeconds=3 --set "image.digest=sha256:$(printf '%064d' 7)" \
        --set proxy.image.tag=1.2.3 --set init.image.repository=registry.example/weft-init \
        --set webhook.optIn.enabled=false --set proxy.resources.limits.cpu= \
        --set proxy.resources.requests.memory=64Mi --set proxy.logLevel=debug || return
    dry single || return
    assert_eq "$OUT" "$(printf '%s\n' "$EXPECTED_OBJECTS" | grep -v poddisruptionbudget)" \
        "one replica: no PodDisruptionBudget" || return
    jpf single MutatingWebhookConfiguration weft-injector '.webhooks[0].failurePolicy} {.webhooks[0].timeoutSeconds' ||
        return
    assert_eq "$OUT" "Ignore 3" "failurePolicy and timeout from values" || return
    jpf single MutatingWebhookConfiguration weft-injector '.webhooks[*].name' || return
    assert_eq "$OUT" "inject.weft.dev" "webhook.optIn.enabled=false: no opt-in webhook" || return
    jpf single Deployment weftd '.spec.template.spec.containers[0].image' || return
    assert_eq "$OUT" "weft/weftd@sha256:$(printf '%064d' 7)" "image by digest" || return
    args_of single || return
    assert_match "$OUT" '^--proxy-image=weft/proxy:1\.2\.3$' "proxy image arg" || return
    assert_match "$OUT" '^--init-image=registry\.example/weft-init:0\.1\.0$' "init image arg" ||
        return
    assert_match "$OUT" '^--proxy-cpu-limit=$' "an empty quantity is passed as empty (left out)" || return
    assert_match "$OUT" '^--proxy-memory-request=64Mi$' "proxy memory request arg" || return
    assert_match "$OUT" '^--proxy-log-level=debug$' "proxy log level arg" || return

    # Another release namespace: it is the one left out of injection, and the one RBAC names.
    runo "$HELM" template "$REL" "$CHART" -n mesh-ctl
    [ "$RC" -eq 0 ] || t_fail "template -n mesh-ctl: $ERR" || return
    printf '%s\n' "$OUT" >"$KL_TMP/otherns.yaml"
    jpf otherns MutatingWebhookConfiguration weft-injector '.webhooks[0].namespaceSelector.matchExpressions[0].values} {.webhooks[0].clientConfig.service.namespace' ||
        return
    assert_eq "$OUT" '["mesh-ctl","kube-system"] mesh-ctl' "webhook in another namespace" || return
    jpf otherns MutatingWebhookConfiguration weft-injector '.webhooks[1].namespaceSelector.matchExpressions[1].values' ||
        return
    assert_eq "$OUT" '["mesh-ctl","kube-system"]' "opt-in webhook in another namespace" || return
    args_of otherns || return
    assert_match "$OUT" '^--control-plane-addr=weftd\.mesh-ctl\.svc:15012$' "control plane in another namespace" || return
    jpf otherns ClusterRoleBinding weftd '.subjects[0].namespace' || return
    assert_eq "$OUT" mesh-ctl "ClusterRoleBinding subject namespace" || return
    run "$HELM" install "$REL" "$CHART" -n mesh-ctl --dry-run=client
    assert_contains "$OUT" "WARNING: Weft expects the namespace weft-system" "NOTES warning" || return
}

# --- weftd flags --------------------------------------------------------------------------------

# weftd's usage text into OUT: from the binary when it is built, else from weftd/options.c.
weftd_usage() {
    if [ -x "$WEFTD_BIN" ]; then
        run "$WEFTD_BIN" --help
        [ "$RC" -eq 0 ] || t_fail "weftd --help: exit $RC: $OUT" || return
        USAGE_FROM=binary
        return 0
    fi
    # the option table of weftd/options.c, laid out as --help does: "--flag ARG help (default)",
    # the default on a line of its own when the line would pass 81 columns
    OUT=$(awk '/^static const struct opt opts\[\] = \{/{p=1; next} p && /^\};/{exit} p' \
        "$KL_REPO/weftd/options.c" | tr -d '\n' | sed -E 's/\}, */}\n/g' |
        sed -nE 's/^ *\{"([a-z0-9-]+)", *(NULL|"([^"]*)"), *O\([^)]*\), *&t_[a-z_]+, *(NULL|"([^"]*)"), *"(([^"\\]|\\.)*)".*/\1\t\3\t\5\t\6/p' |
        awk -F'\t' '{ f = "--" $1 ($2 != "" ? " " $2 : ""); l = sprintf("  %-24s %s", f, $4)
            if ($3 != "" && length(l) + length($3) + 3 <= 81) l = l " (" $3 ")"
            else if ($3 != "") l = l "\n" sprintf("%27s(%s)", "", $3)
            print l }')
    USAGE_FROM=source
    [ -n "$OUT" ] || t_fail "no option table found in weftd/options.c"
}

# check_args USAGE ARGS...: every arg is --flag=value for a flag that takes a value, or --flag
# for one that does not; prints the offending args (empty output: all fine).
check_args() {
    local usage=$1 a name line
    shift
    for a in "$@"; do
        case $a in
        --*=*)
            name=${a%%=*}
            line=$(printf '%s\n' "$usage" | grep -E -- "^ *$name( |$)" | head -1)
            [[ $line =~ ^\ *--[a-z0-9-]+\ [A-Z]+ ]] || echo "$a"
            ;;
        --*)
            line=$(printf '%s\n' "$usage" | grep -E -- "^ *$a( |$)" | head -1)
            if [ -z "$line" ] || [[ $line =~ ^\ *--[a-z0-9-]+\ [A-Z]+ ]]; then
                echo "$a"
            fi
            ;;
        *) echo "$a" ;;
        esac
    done
}

case_weftd_flags() {
    local usage bad n=0 line args
    weftd_usage || return
    usage=$OUT
    assert_contains "$usage" "--namespace NS" "usage text ($USAGE_FROM) looks like weftd's" || return
    # The checker itself must refuse what weftd would refuse.
    bad=$(check_args "$usage" --no-such-flag=1 --native-sidecars=yes --trust-domain stray)
    assert_eq "$bad" "--no-such-flag=1
--native-sidecars=yes
--trust-domain
stray" "checker refuses unknown flags, missing and unexpected values" || return
    [ -s "$ALL_ARGS" ] || t_fail "no rendered args collected (render cases failed?)" || return
    while IFS= read -r line; do
        IFS=$'\t' read -r -a args <<<"$line"
        bad=$(check_args "$usage" "${args[@]}")
        assert_eq "$bad" "" "args weftd ($USAGE_FROM) does not accept" || return
        n=$((n + 1))
        if [ -x "$WEFTD_BIN" ]; then
            # weftd parses (and checks) every option before --help stops it.
            run "$WEFTD_BIN" "${args[@]}" --help
            assert_eq "$RC" 0 "weftd ${args[*]} --help" || return
        fi
    done <"$ALL_ARGS"
    assert_gt "$n" 5 "rendered arg lists checked" || return
    # The containerPorts are weftd's default listen ports (the chart passes no --*-listen).
    assert_match "$usage" '^ *--admin-listen ADDR .*\(0\.0\.0\.0:15014\)' "admin port" || return
    assert_match "$usage" '^ *--webhook-listen ADDR .*\(0\.0\.0\.0:9443\)' "webhook port" || return
    assert_match "$usage" '^ *--certs-listen ADDR .*\(0\.0\.0\.0:15012\)' "certs port" || return
    assert_match "$usage" '^ *--stream-listen ADDR .*\(0\.0\.0\.0:15013\)' "config stream port" || return
    # The schema offers exactly the modes and levels weftd documents.
    assert_match "$usage" '^ *--default-mode MODE +all-authenticated \| deny \| permissive$' \
        "weftd's modes" || return
    assert_contains "$(tr -d ' \n' <"$CHART/values.schema.json")" \
        '"defaultMode":{"enum":["all-authenticated","deny","permissive"]}' "schema's modes" || return
    assert_match "$usage" '^ *--outbound-scope SCOPE +mesh \| admitted: ' "weftd's outbound scopes" ||
        return
    assert_contains "$(tr -d ' \n' <"$CHART/values.schema.json")" \
        '"outboundScope":{"enum":["mesh","admitted"]}' "schema's outbound scopes" || return
    assert_match "$usage" '^ *--log-level LEVEL +debug, info, warn, error' "weftd's levels" || return
    assert_contains "$(tr -d ' \n' <"$CHART/values.schema.json")" \
        '"logLevel":{"enum":["debug","info","warn","error"]}' "schema's levels" || return
    assert_match "$usage" '^ *--cert-ttl SECONDS ' "cert TTL in seconds" || return
}

# --- install, RBAC, webhook, upgrade, uninstall -------------------------------------------------
# (helm upgrade without values reuses the last release's: --reset-values returns to the defaults.)

# installed_objects: the release's objects in the cluster (sorted names) into OUT.
installed_objects() {
    local a b
    okv "namespaced objects" "$K" get -n "$NS" sa,svc,deploy,pdb,role,rolebinding,cm,secret \
        -l "app.kubernetes.io/instance=$REL" -o name || return
    a=$OUT
    okv "cluster objects" "$K" get clusterrole,clusterrolebinding,mutatingwebhookconfiguration \
        -l "app.kubernetes.io/instance=$REL" -o name || return
    b=$OUT
    OUT=$(printf '%s\n%s\n' "$a" "$b" | grep -v '^$' | sort)
}

case_install() {
    ok "helm install" "$HELM" install "$REL" "$CHART" -n "$NS" --create-namespace \
        --timeout 60s || return
    assert_match "$OUT" '^STATUS: deployed$' "install status" || return
    assert_contains "$OUT" "kubectl label namespace <ns> weft.dev/inject=enabled" "NOTES: label" ||
        return
    assert_contains "$OUT" "kubectl -n <ns> get ts" "NOTES: get ts" || return
    assert_contains "$OUT" "kind: TrafficSplit" "NOTES: a TrafficSplit" || return
    assert_not_contains "$OUT" "WARNING" "no namespace warning in weft-system" || return
    installed_objects || return
    assert_eq "$OUT" "$EXPECTED_OBJECTS" "installed objects" || return
    okv "CRDs" "$K" get crd -l app.kubernetes.io/part-of=weft -o name || return
    assert_eq "$OUT" "$(printf '%s\n' "$EXPECTED_CRDS" | sed 's|^|customresourcedefinition.apiextensions.k8s.io/|')" \
        "CRDs from crds/" || return
    okv "CRD established" "$K" get crd trafficsplits.mesh.weft.dev \
        -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' || return
    assert_eq "$OUT" True "TrafficSplit CRD established" || return
    okv "no SMI CRD" "$K" get crd -o name || return
    assert_not_contains "$OUT" "smi-spec.io" "SMI CRD without smi.enabled" || return
    okv "deployment args" "$K" get deploy weftd -n "$NS" \
        -o 'jsonpath={.spec.template.spec.containers[0].args}' || return
    assert_eq "$OUT" '["--namespace=weft-system","--webhook-service=weft-webhook","--trust-domain=cluster.local","--default-mode=all-authenticated","--outbound-scope=mesh","--ca-secret=weft-ca","--cert-ttl=86400","--proxy-image=weft/proxy:0.1.0","--init-image=weft/init:0.1.0","--proxy-cpu-request=100m","--proxy-memory-request=128Mi","--proxy-cpu-limit=2","--proxy-memory-limit=1Gi","--proxy-log-level=info","--control-plane-addr=weftd.weft-system.svc:15012","--native-sidecars","--log-level=info"]' \
        "installed args (auto: kubelite is 1.33, no old node)" || return
    # kubelite's controllers create weftd's pods (never run): the webhook, failurePolicy Fail and
    # no endpoint yet, must not stand in the way in the release namespace.
    if ! wait_for 10 bash -c "[ \"\$('$K' get pods -n '$NS' -l app.kubernetes.io/name=weftd -o name | wc -l)\" = 2 ]"; then
        t_fail "weftd's 2 pods were not created in $NS" || return
    fi
}

# can TOKEN VERB GROUP RESOURCE SUBRESOURCE NAMESPACE NAME: a SelfSubjectAccessReview as the
# token's user; OUT = true|false.
can() {
    local body
    body=$(printf '{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"%s","group":"%s","resource":"%s","subresource":"%s","namespace":"%s","name":"%s"}}}' \
        "$2" "$3" "$4" "$5" "$6" "$7")
    okv "access review $2 $3/$4/$5 $6/$7" "$K" --token="$1" create --validate=false -f - \
        -o 'jsonpath={.status.allowed}' <<<"$body" || return
    [ -n "$OUT" ] || OUT=false
}

case_rbac() {
    local tok line verb group res sub ns name want
    okv "token for weftd" "$K" create token weftd -n "$NS" || return
    tok=$OUT
    # verb group resource subresource namespace name -> allowed? ('-' = empty)
    while read -r want verb group res sub ns name; do
        [ "$group" = - ] && group=
        [ "$sub" = - ] && sub=
        [ "$ns" = - ] && ns=
        [ "$name" = - ] && name=
        can "$tok" "$verb" "$group" "$res" "$sub" "$ns" "$name" || return
        assert_eq "$OUT" "$want" "weftd may $verb $group/$res/$sub in '$ns' name '$name'" || return
    done <<'EOF'
true  list  - pods - - -
true  watch - pods - - -
true  watch - namespaces - - -
true  watch - services - - -
true  watch - serviceaccounts - - -
true  watch discovery.k8s.io endpointslices - - -
true  watch mesh.weft.dev trafficsplits - - -
true  watch mesh.weft.dev accesspolicies - - -
true  watch mesh.weft.dev retrypolicies - - -
true  get    mesh.weft.dev trafficsplits status shop ts1
true  update mesh.weft.dev accesspolicies status shop ap1
true  patch  mesh.weft.dev retrypolicies status shop rp1
false update mesh.weft.dev trafficsplits - shop ts1
false delete mesh.weft.dev trafficsplits - shop ts1
true  watch split.smi-spec.io trafficsplits - - -
true  update split.smi-spec.io trafficsplits status shop t
false update split.smi-spec.io trafficsplits - shop t
true  list specs.smi-spec.io httproutegroups - - -
true  create authentication.k8s.io tokenreviews - - -
true  create authorization.k8s.io subjectaccessreviews - - -
true  get   admissionregistration.k8s.io mutatingwebhookconfigurations - - weft-injector
true  patch admissionregistration.k8s.io mutatingwebhookconfigurations - - weft-injector
true  update admissionregistration.k8s.io mutatingwebhookconfigurations - - weft-injector
false patch admissionregistration.k8s.io mutatingwebhookconfigurations - - other-hook
false create admissionregistration.k8s.io mutatingwebhookconfigurations - - -
false delete admissionregistration.k8s.io mutatingwebhookconfigurations - - weft-injector
true  create - configmaps - shop -
true  update - configmaps - shop weft-root-ca
true  get    - configmaps - shop weft-root-ca
false update - configmaps - shop app-config
false get    - configmaps - shop app-config
false list   - configmaps - shop -
true  update - configmaps - weft-system weftd-acks-weftd-test-0
true  list   - configmaps - weft-system -
true  watch  - configmaps - weft-system -
true  delete - configmaps - weft-system weftd-acks-gone
true  get    - secrets - weft-system weft-ca
true  update - secrets - weft-system weft-ca
true  create - secrets - weft-system -
true  list   - secrets - weft-system weft-ca
true  watch  - secrets - weft-system weft-ca
false list   - secrets - weft-system -
false watch  - secrets - weft-system -
false get    - secrets - weft-system sh.helm.release.v1.weft.v1
false list   - secrets - weft-system sh.helm.release.v1.weft.v1
false update - secrets - weft-system sh.helm.release.v1.weft.v1
false get    - secrets - shop db-password
false list   - secrets - shop -
false create - secrets - shop -
true  get    coordination.k8s.io leases - weft-system weftd-leader
true  update coordination.k8s.io leases - weft-system weftd-leader
true  create coordination.k8s.io leases - weft-system -
false update coordination.k8s.io leases - weft-system other-lease
false create coordination.k8s.io leases - shop -
true  create - events - weft-system -
true  create events.k8s.io events - weft-system -
true  create - events - shop -
true  patch  - events - shop -
true  list   coordination.k8s.io leases - weft-system weftd-leader
true  watch  coordination.k8s.io leases - weft-system weftd-leader
false list   coordination.k8s.io leases - weft-system -
false create - pods - shop -
false delete - pods - shop p
false update - services - shop s
EOF
    # And for real, with the same token: weftd's own list of its CA Secret (by name, as its
    # informer asks), but not the namespace's other Secrets (Helm's release Secrets).
    ok "weftd lists its CA Secret by name" "$K" --token="$tok" get secrets -n "$NS" \
        --field-selector metadata.name=weft-ca || return
    run "$K" --token="$tok" get secrets -n "$NS"
    assert_contains "$OUT" 'cannot list resource "secrets"' "the namespace's Secrets are not listed" || return
    run "$K" --token="$tok" get secrets -n default
    assert_contains "$OUT" 'User "system:serviceaccount:weft-system:weftd" cannot list resource "secrets"' \
        "secrets outside the release namespace are forbidden" || return
    ok "weftd lists pods everywhere" "$K" --token="$tok" get pods -A -o name || return
    assert_contains "$OUT" "pod/weftd-" "weftd's own pods listed" || return
}

case_webhook_policy() {
    ok "meshed namespace" "$K" create ns shop || return
    ok "label it" "$K" label ns shop weft.dev/inject=enabled || return
    # failurePolicy Fail and weftd not ready (no endpoint): pods are refused.
    fails "pod in a meshed namespace" "$K" run p1 -n shop --image=app:1 --restart=Never || return
    assert_contains "$OUT" 'failed calling webhook "inject.weft.dev"' "refusal names the webhook" ||
        return
    assert_contains "$OUT" 'no endpoints available for service "weft-webhook"' "refusal reason" ||
        return
    # Opted out by label: never sent to the webhook (objectSelector).
    ok "opted-out pod" "$K" run p2 -n shop --image=app:1 --restart=Never \
        -l weft.dev/inject=false || return
    # Not meshed, and kube-system: not sent either.
    ok "plain namespace" "$K" create ns plain || return
    ok "pod in a plain namespace" "$K" run p3 -n plain --image=app:1 --restart=Never || return
    ok "kube-system labelled by mistake" "$K" label ns kube-system weft.dev/inject=enabled || return
    ok "pod in kube-system" "$K" run p4 -n kube-system --image=app:1 --restart=Never || return
    ok "unlabel kube-system" "$K" label ns kube-system weft.dev/inject- || return
    ok "weft-system labelled by mistake" "$K" label ns "$NS" weft.dev/inject=enabled || return
    ok "pod in weft-system" "$K" run p5 -n "$NS" --image=app:1 --restart=Never || return
    ok "unlabel weft-system" "$K" label ns "$NS" weft.dev/inject- || return
    ok "cleanup" "$K" delete pod p5 -n "$NS" --wait=false || return
}

case_upgrade() {
    local tok bundle
    okv "token for weftd" "$K" create token weftd -n "$NS" || return
    tok=$OUT
    # Do what weftd's leader does at start: fill caBundle, create the CA Secret.
    bundle=$(printf -- '-----BEGIN CERTIFICATE-----\nZmFrZQ==\n-----END CERTIFICATE-----\n' |
        base64 | tr -d '\n')
    ok "weftd fills caBundle" "$K" --token="$tok" patch mutatingwebhookconfiguration \
        weft-injector --type=json \
        -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$bundle\"}]" ||
        return
    ok "weftd creates its CA Secret" "$K" --token="$tok" create secret generic weft-ca -n "$NS" \
        --from-literal=tls.crt=root --from-literal=tls.key=key || return

    ok "helm upgrade" "$HELM" upgrade "$REL" "$CHART" -n "$NS" --set mesh.defaultMode=deny \
        --set webhook.failurePolicy=Ignore --set webhook.timeoutSeconds=5 || return
    assert_match "$OUT" '^REVISION: 2$' "upgrade revision" || return
    okv "deployment args" "$K" get deploy weftd -n "$NS" \
        -o 'jsonpath={.spec.template.spec.containers[0].args}' || return
    assert_contains "$OUT" '"--default-mode=deny"' "args after upgrade" || return
    assert_not_contains "$OUT" 'all-authenticated' "old mode gone" || return
    okv "webhook" "$K" get mutatingwebhookconfiguration weft-injector \
        -o 'jsonpath={.webhooks[0].failurePolicy} {.webhooks[0].timeoutSeconds} {.webhooks[0].clientConfig.caBundle}' ||
        return
    assert_eq "$OUT" "Ignore 5 $bundle" "webhook after upgrade (caBundle kept)" || return
    okv "CA Secret" "$K" get secret weft-ca -n "$NS" -o 'jsonpath={.data.tls\.key}' || return
    assert_eq "$OUT" "$(printf key | base64)" "CA Secret kept across upgrade" || return
    # failurePolicy Ignore: the meshed namespace accepts pods again (without a sidecar).
    ok "pod in a meshed namespace (Ignore)" "$K" run p6 -n shop --image=app:1 --restart=Never ||
        return

    # A client-side apply upgrade (helm's 3-way merge) keeps caBundle as well.
    ok "helm upgrade --server-side=false" "$HELM" upgrade "$REL" "$CHART" -n "$NS" \
        --server-side=false --reset-values || return
    okv "webhook" "$K" get mutatingwebhookconfiguration weft-injector \
        -o 'jsonpath={.webhooks[0].failurePolicy} {.webhooks[0].timeoutSeconds} {.webhooks[0].clientConfig.caBundle}' ||
        return
    assert_eq "$OUT" "Fail 10 $bundle" "webhook after a client-side upgrade to defaults" || return
    okv "deployment args" "$K" get deploy weftd -n "$NS" \
        -o 'jsonpath={.spec.template.spec.containers[0].args}' || return
    assert_contains "$OUT" '"--default-mode=all-authenticated"' "args back to defaults" || return
}

case_native_auto() {
    # A node whose kubelet is older than 1.29: auto must fall back to classic sidecars.
    printf 'apiVersion: v1\nkind: Node\nmetadata:\n  name: old-node\n' >"$KL_TMP/node.yaml"
    ok "create node" "$K" apply -f "$KL_TMP/node.yaml" || return
    ok "old kubelet" "$K" patch node old-node --subresource=status --type=merge \
        -p '{"status":{"nodeInfo":{"kubeletVersion":"v1.28.7-eks-1a2b3c"}}}' || return
    ok "helm upgrade (auto, old node)" "$HELM" upgrade "$REL" "$CHART" -n "$NS" --reset-values ||
        return
    assert_contains "$OUT" "Sidecars: classic." "NOTES report classic sidecars" || return
    okv "deployment args" "$K" get deploy weftd -n "$NS" \
        -o 'jsonpath={.spec.template.spec.containers[0].args}' || return
    assert_not_contains "$OUT" "--native-sidecars" "auto with a 1.28 kubelet" || return
    ok "helm upgrade (forced true)" "$HELM" upgrade "$REL" "$CHART" -n "$NS" \
        --set nativeSidecars=true || return
    okv "deployment args" "$K" get deploy weftd -n "$NS" \
        -o 'jsonpath={.spec.template.spec.containers[0].args}' || return
    assert_contains "$OUT" "--native-sidecars" "nativeSidecars=true overrides the lookup" || return
    ok "kubelet upgraded" "$K" patch node old-node --subresource=status --type=merge \
        -p '{"status":{"nodeInfo":{"kubeletVersion":"v1.30.2"}}}' || return
    ok "helm upgrade (auto, new node)" "$HELM" upgrade "$REL" "$CHART" -n "$NS" --reset-values ||
        return
    assert_contains "$OUT" "Sidecars: native." "NOTES report native sidecars" || return
    okv "deployment args" "$K" get deploy weftd -n "$NS" \
        -o 'jsonpath={.spec.template.spec.containers[0].args}' || return
    assert_contains "$OUT" "--native-sidecars" "auto with a 1.30 kubelet" || return
    ok "delete node" "$K" delete node old-node || return
}

case_uninstall() {
    ok "helm uninstall" "$HELM" uninstall "$REL" -n "$NS" --timeout 60s || return
    assert_contains "$OUT" "release \"$REL\" uninstalled" "uninstall output" || return
    installed_objects || return
    assert_eq "$OUT" "" "release objects left" || return
    okv "webhook gone" "$K" get mutatingwebhookconfiguration -o name || return
    assert_eq "$OUT" "" "no webhook configuration left" || return
    okv "CRDs stay" "$K" get crd -l app.kubernetes.io/part-of=weft -o name || return
    assert_eq "$OUT" "$(printf '%s\n' "$EXPECTED_CRDS" | sed 's|^|customresourcedefinition.apiextensions.k8s.io/|')" \
        "CRDs kept" || return
    okv "CA Secret stays" "$K" get secret -n "$NS" -o name || return
    assert_eq "$OUT" "secret/weft-ca" "only the CA Secret is left in $NS" || return
    okv "helm list" "$HELM" list -n "$NS" -q || return
    assert_eq "$OUT" "" "no release" || return
    # With the webhook gone, the meshed namespace accepts pods whatever the policy was.
    ok "pod in a meshed namespace after uninstall" "$K" run p7 -n shop --image=app:1 \
        --restart=Never || return
}

case_smi() {
    ok "helm install smi.enabled" "$HELM" install "$REL" "$CHART" -n "$NS" \
        --set smi.enabled=true || return
    assert_contains "$OUT" "trafficsplits.split.smi-spec.io" "NOTES mention SMI" || return
    okv "SMI CRD" "$K" get crd trafficsplits.split.smi-spec.io \
        -o 'jsonpath={.status.conditions[?(@.type=="Established")].status} {.metadata.annotations.meta\.helm\.sh/release-name}' ||
        return
    assert_eq "$OUT" "True $REL" "SMI CRD established and owned by the release" || return
    ok "SMI TrafficSplits validate" "$K" apply --dry-run=server --validate=strict \
        -f "$KL_REPO/examples/smi-trafficsplit.yaml" || return
    # RBAC on the now-known SMI resource, through kubectl's own discovery.
    okv "token for weftd" "$K" create token weftd -n "$NS" || return
    okv "can-i" "$K" --token="$OUT" auth can-i watch trafficsplits.split.smi-spec.io -A || return
    assert_eq "$OUT" yes "weftd may watch SMI TrafficSplits" || return
    ok "helm uninstall" "$HELM" uninstall "$REL" -n "$NS" || return
    assert_contains "$OUT" "[CustomResourceDefinition] trafficsplits.split.smi-spec.io" \
        "helm reports the kept CRD" || return
    okv "SMI CRD kept" "$K" get crd trafficsplits.split.smi-spec.io -o name || return
    assert_eq "$OUT" "customresourcedefinition.apiextensions.k8s.io/trafficsplits.split.smi-spec.io" \
        "SMI CRD after uninstall" || return
    # Reinstalling adopts the kept CRD (same release name and namespace).
    ok "reinstall smi.enabled" "$HELM" install "$REL" "$CHART" -n "$NS" --set smi.enabled=true ||
        return
    ok "final uninstall" "$HELM" uninstall "$REL" -n "$NS" || return
}

# --- the chart with the real weftd --------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WD_PID=
WD_LOG=$KL_TMP/weftd.log

# The release as weftd in its pod would meet it: the Deployment's own args, the ServiceAccount's
# token (so RBAC is the chart's), loopback ports instead of the pod's.
case_with_weftd() {
    local kc=$KL_TMP/weftd.kubeconfig admin tok args=() a
    if [ ! -x "$WEFTD_BIN" ]; then
        t_skip "$WEFTD_BIN is not built"
        return 0
    fi
    # A fresh start: the CA Secret left by earlier cases holds no real key.
    ok "delete the old CA Secret" "$K" delete secret weft-ca -n "$NS" --ignore-not-found || return
    ok "helm install" "$HELM" install "$REL" "$CHART" -n "$NS" || return
    okv "token for weftd" "$K" create token weftd -n "$NS" --duration 1h || return
    tok=$OUT
    cp "$KUBECONFIG" "$kc"
    ok "weftd credentials" "$K" --kubeconfig "$kc" config set-credentials weftd --token="$tok" ||
        return
    ok "weftd context" "$K" --kubeconfig "$kc" config set-context --current --user=weftd || return
    okv "deployment args" "$K" get deploy weftd -n "$NS" \
        -o 'jsonpath={range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}' || return
    while IFS= read -r a; do
        args+=("$a")
    done <<<"$OUT"
    admin=$(free_port)
    POD_NAME=weftd-test-0 "$WEFTD_BIN" --kubeconfig "$kc" "${args[@]}" \
        --admin-listen "127.0.0.1:$admin" --certs-listen "127.0.0.1:$(free_port)" --stream-listen "127.0.0.1:$(free_port)" \
        --webhook-listen "127.0.0.1:$(free_port)" >"$WD_LOG" 2>&1 &
    WD_PID=$!
    daemon_track "$WD_PID" weftd
    if ! wait_for 20 curl -sf "http://127.0.0.1:$admin/readyz"; then
        t_fail "weftd (chart args, chart RBAC) not ready in 20 s: $(tail -15 "$WD_LOG")" || return
    fi
    okv "CA Secret" "$K" get secret weft-ca -n "$NS" -o 'jsonpath={.type}' || return
    assert_eq "$OUT" kubernetes.io/tls "weftd created its CA Secret" || return
    okv "lease" "$K" get lease weftd-leader -n "$NS" -o 'jsonpath={.spec.holderIdentity}' || return
    assert_eq "$OUT" weftd-test-0 "leader identity from POD_NAME" || return
    if ! wait_for 10 "$K" get configmap weft-root-ca -n shop; then
        t_fail "no trust bundle published in the meshed namespace shop" || return
    fi
    if ! wait_for 10 bash -c "[ -n \"\$('$K' get mutatingwebhookconfiguration weft-injector -o 'jsonpath={.webhooks[0].clientConfig.caBundle}')\" ]"; then
        t_fail "weftd did not fill weft-injector's caBundle" || return
    fi
    okv "caBundle" "$K" get mutatingwebhookconfiguration weft-injector \
        -o 'jsonpath={.webhooks[0].clientConfig.caBundle}' || return
    local bundle=$OUT
    if ! wait_for 10 bash -c "[ \"\$('$K' get mutatingwebhookconfiguration weft-injector -o 'jsonpath={.webhooks[1].clientConfig.caBundle}')\" = '$bundle' ]"; then
        t_fail "weftd did not fill the opt-in webhook's caBundle" || return
    fi
    # Everything weftd tried was allowed. kubelite (unlike kube-apiserver) does not match a
    # list/watch by fieldSelector=metadata.name against resourceNames: those refusals are
    # kubelite's, reported and left out here.
    local refused
    refused=$(grep 'status=403' "$WD_LOG")
    if run "$K" --token="$tok" get configmaps -A --field-selector metadata.name=weft-root-ca &&
        [ "$RC" -ne 0 ]; then
        echo "NOTE: kubelite refuses list by fieldSelector metadata.name under resourceNames; ignoring those 403s"
        refused=$(printf '%s\n' "$refused" | grep -Ev 'informer list failed" resource=(configmaps|mutatingwebhookconfigurations) status=403' |
            grep -v '^$')
    fi
    assert_eq "$refused" "" "requests of weftd refused by the chart's RBAC" || return

    # The chart owns weft-injector, weftd only its caBundle: upgrades apply cleanly and their
    # values stay, whatever weftd does meanwhile.
    ok "helm upgrade with weftd running" "$HELM" upgrade "$REL" "$CHART" -n "$NS" \
        --set webhook.failurePolicy=Ignore --set webhook.timeoutSeconds=7 || return
    okv "caBundle after upgrade" "$K" get mutatingwebhookconfiguration weft-injector \
        -o 'jsonpath={.webhooks[0].clientConfig.caBundle}' || return
    assert_eq "$OUT" "$bundle" "caBundle kept by the upgrade" || return
    # weftd has handled the upgraded configuration once it has repaired a later change to it
    # (one watch, in order): spoil the caBundle and wait until weftd puts it back.
    ok "spoil the caBundle" "$K" patch mutatingwebhookconfiguration weft-injector --type=json \
        -p '[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"anVuaw=="}]' ||
        return
    wait_for 20 bash -c "[ \"\$('$K' get mutatingwebhookconfiguration weft-injector -o 'jsonpath={.webhooks[0].clientConfig.caBundle}')\" = '$bundle' ]" ||
        t_fail "weftd did not restore the spoiled caBundle" || return
    okv "webhook after upgrade" "$K" get mutatingwebhookconfiguration weft-injector \
        -o 'jsonpath={.webhooks[0].failurePolicy} {.webhooks[0].timeoutSeconds} {.webhooks[0].namespaceSelector.matchExpressions[0].values} {.metadata.labels.app\.kubernetes\.io/managed-by}' ||
        return
    assert_eq "$OUT" 'Ignore 7 ["weft-system","kube-system"] Helm' "chart values kept next to weftd" ||
        return

    # Uninstall while weftd still runs (as it does during a real uninstall): no webhook
    # configuration may come back, or pods in meshed namespaces could not be created.
    local before
    before=$(grep -c 'msg="lost leadership"' "$WD_LOG")
    ok "helm uninstall with weftd running" "$HELM" uninstall "$REL" -n "$NS" || return
    # Only the leader writes weft-injector. The uninstall deletes weftd's ServiceAccount and
    # RBAC with the rest, so weftd's next lease renewal fails and it stops leading: from then on
    # it writes nothing, and what is stored is what stays.
    wait_for 30 bash -c "[ \$(grep -c 'msg=\"lost leadership\"' '$WD_LOG') -gt $before ]" ||
        t_fail "weftd still leads after the uninstall: $(tail -5 "$WD_LOG")" || return
    okv "webhook configurations" "$K" get mutatingwebhookconfiguration -o name || return
    assert_eq "$OUT" "" "weft-injector after uninstall" || return
}

# Stop weftd and remove the release whatever case_with_weftd got to.
with_weftd_cleanup() {
    [ -n "$WD_PID" ] && bg_stop "$WD_PID"
    WD_PID=
    "$HELM" uninstall "$REL" -n "$NS" >/dev/null 2>&1
    "$K" delete mutatingwebhookconfiguration weft-injector --ignore-not-found >/dev/null 2>&1
    return 0
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
# The namespace must exist for server-side dry runs of the rendered objects.
ok "create $NS" "$K" create ns "$NS" && t_pass
: >"$ALL_ARGS"
t_run chart-crds-in-sync case_crds_in_sync
t_run chart-lint case_lint
t_run chart-render-default case_render_default
t_run chart-render-values case_render_values
t_run chart-weftd-flags case_weftd_flags
t_run chart-install case_install
t_run chart-rbac case_rbac
t_run chart-webhook-policy case_webhook_policy
t_run chart-upgrade case_upgrade
t_run chart-native-sidecars-auto case_native_auto
t_run chart-uninstall case_uninstall
t_run chart-smi case_smi
t_run chart-with-weftd case_with_weftd
with_weftd_cleanup
kl_stop
t_begin clean-shutdown
assert_eq "$KL_EXIT" 0 "kubelite exit status after SIGTERM" && t_pass
t_summary
