#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# The injection corpus (../shared/inject-corpus/, 94 real workload manifests written for another
# mesh's injector tests) through `weftctl inject -f FILE` and kubelite's server-side validation
# with the real kubectl 1.33 (`apply --dry-run=server`), every file before and after injection,
# in both sidecar modes (classic, and --native-sidecars: weft-proxy an init container with
# restartPolicy Always):
#   - weftctl exits 0 on every file but one, pinned: an Istio-injected Deployment whose
#     istio-proxy container runs as UID 1337 is refused (it would bypass the redirection);
#   - every document the API server accepts as written is accepted after injection; documents
#     it rejects as written (input problems, e.g. a capital letter in a name, or a kind kubelite
#     does not serve such as OpenShift's DeploymentConfig) are rejected after injection with the
#     same message. The set of rejected inputs is pinned below, so a kubelite that rejected
#     everything cannot pass;
#   - every workload pod template (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
#     ReplicationController, Job, CronJob, also inside Lists) comes out injected: exactly one
#     weft-init init container, exactly one weft-proxy, the weft.dev/status annotation naming
#     them and the volumes it lists present; checked on weftctl's output for every document, and
#     on the object the API server returns for every accepted one (the application containers
#     and user init containers are still there, in order);
#   - hostNetwork pods come out unchanged: the server's dry-run result is the same before and
#     after injection (uid and creationTimestamp aside), and so is every non-workload object.
# One PASS line per group of files (alphabetical chunks), then the pinned totals.
# Env: BUILD, KUBELITE, WEFTCTL ($BUILD/bin/weftctl), KUBECTL_DIR, INJECT_CORPUS.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

abs() { case $1 in /*) echo "$1" ;; *) echo "$KL_REPO/$1" ;; esac }
K="$KUBECTL_DIR/kubectl.1.33"
WEFTCTL=$(abs "${WEFTCTL:-$BUILD/bin/weftctl}")
CORPUS=${INJECT_CORPUS:-$KL_REPO/../shared/inject-corpus}
W=$KL_TMP/corpus
CHUNK=12
MODES=(classic native) # weftctl's default, and --native-sidecars

# What the corpus holds, pinned: a change in the corpus, in weftctl or in kubelite's validation
# shows up here rather than passing silently.
WANT_FILES=94
WANT_DOCS=97      # objects after Lists are flattened, refused files aside: 94 workloads, 2 Services,
                  # 1 DeploymentConfig
WANT_INJECTED=92  # workload pod templates injected by weftctl
WANT_HOSTNET=2    # hostNetwork templates left alone
WANT_OTHER=3      # objects without a pod template weftctl knows (Services, the DeploymentConfig)
WANT_VERIFIED=89  # injected templates also checked in the API server's answer (all but the
                  # three "statusPort" Deployments, which the server rejects as written)
# Files whose original is rejected by the API server, and why (input problems, not ours).
declare -A WANT_REJECTED=(
    [deploymentconfig-multi.yaml]='no matches for kind "DeploymentConfig" in version "apps.openshift.io/v1"'
    [status_annotations.yaml]='metadata.name: Invalid value: "statusPort": a lowercase RFC 1123 subdomain'
    [status_annotations_zeroport.yaml]='metadata.name: Invalid value: "statusPort": a lowercase RFC 1123 subdomain'
    [status_params.yaml]='metadata.name: Invalid value: "statusPort": a lowercase RFC 1123 subdomain'
)

# jq definitions shared by the checks. verdict prints one word per document: injected,
# hostnet (a hostNetwork template without any trace of Weft), other (no pod template), or
# "BAD: why".
# shellcheck disable=SC2016 # jq, not shell, expands these
JQ_DEFS='
def docs: if (.kind | type) == "string" and (.kind == "List" or
    ((.kind | endswith("List")) and (.items | type) == "array")) then .items[] else . end;
def tmpl: if .kind == "Pod" then .
    elif (.kind | IN("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
        "ReplicationController", "Job")) then .spec.template
    elif .kind == "CronJob" then .spec.jobTemplate.spec.template
    else null end;
def id: "\(.kind)/\(.metadata.name // .metadata.generateName // "?")";
def inits: [(.spec.initContainers // [])[].name];
def ctrs: [(.spec.containers // [])[].name];
def weft: . == "weft-init" or . == "weft-proxy";
def status: (.metadata.annotations // {})["weft.dev/status"];
def injected_why:
    (inits) as $i | (ctrs) as $c | ($i + $c) as $all |
    if ([$i[] | select(. == "weft-init")] | length) != 1 then "weft-init init containers: \($i)"
    elif ([$all[] | select(. == "weft-proxy")] | length) != 1 then "weft-proxy count in \($all)"
    elif ($c | map(select(weft | not)) | length) == 0 then "no application container left: \($c)"
    elif ([(.spec.initContainers // [])[] | select(.name == "weft-proxy" and
        .restartPolicy != "Always")] | length) > 0 then "weft-proxy init container without restartPolicy Always"
    elif status == null then "no weft.dev/status annotation"
    else (try (status | fromjson) catch null) as $s |
        if ($s | type) != "object" then "weft.dev/status is not a JSON object: \(status)"
        elif (($s.initContainers // []) + ($s.containers // []) | sort) != ["weft-init", "weft-proxy"]
            then "weft.dev/status lists \($s.initContainers) \($s.containers)"
        elif ([(.spec.volumes // [])[].name] | contains($s.volumes // ["?"]) | not)
            then "volumes \($s.volumes) of weft.dev/status missing from \([(.spec.volumes // [])[].name])"
        else null end
    end;
def verdict: tmpl as $t |
    if $t == null then "other"
    elif ($t.spec.hostNetwork // false) == true then
        (if ((($t | inits) + ($t | ctrs)) | any(weft)) or ($t | status) != null
         then "BAD: hostNetwork template was injected" else "hostnet" end)
    else ($t | injected_why) as $why | if $why == null then "injected" else "BAD: \($why)" end
    end;
def norm: del(.metadata.uid, .metadata.creationTimestamp);
'

# Files weftctl refuses to inject, and why: an already-injected Istio Deployment whose
# istio-proxy container runs as UID 1337, which would bypass Weft's redirection.
declare -A WANT_REFUSED=(
    [merge-probers.yaml]='Deployment/hello: container "istio-proxy" runs as UID 1337 (spec.containers[0].securityContext.runAsUser)'
)
# weftctl's output, YAML (what is applied) and JSON (what is checked), in both sidecar modes,
# into $W/NAME.MODE.{yaml,json}; the refused files checked and left out of CHECKED.
inject_all() {
    local f n m flag
    mkdir -p "$W"
    CHECKED=()
    for f in "${FILES[@]}"; do
        n=$(basename "$f")
        [ -n "${WANT_REFUSED[$n]-}" ] || CHECKED+=("$f")
        for m in "${MODES[@]}"; do
            flag=()
            [ "$m" = native ] && flag=(--native-sidecars)
            if [ -n "${WANT_REFUSED[$n]-}" ]; then
                if "$WEFTCTL" inject "${flag[@]}" -f "$f" >/dev/null 2>"$W/$n.$m.warn"; then
                    t_fail "weftctl inject ${flag[*]} -f $n: expected a refusal (${WANT_REFUSED[$n]})"
                    return 1
                fi
                if ! grep -qF -- "${WANT_REFUSED[$n]}" "$W/$n.$m.warn"; then
                    t_fail "weftctl inject ${flag[*]} -f $n: refused for another reason than pinned: $(head -c 800 "$W/$n.$m.warn")"
                    return 1
                fi
                continue
            fi
            if ! "$WEFTCTL" inject "${flag[@]}" -f "$f" >"$W/$n.$m.yaml" 2>"$W/$n.$m.warn"; then
                t_fail "weftctl inject ${flag[*]} -f $n: $(head -c 800 "$W/$n.$m.warn")"
                return 1
            fi
            if ! "$WEFTCTL" inject "${flag[@]}" -o json -f "$f" >"$W/$n.$m.json" 2>/dev/null; then
                t_fail "weftctl inject ${flag[*]} -o json -f $n failed"
                return 1
            fi
        done
    done
}

# The namespaces the manifests name must exist for the dry runs.
make_namespaces() {
    local ns
    for ns in $(cat "$W"/*.classic.json | jq -r "$JQ_DEFS"' docs | .metadata.namespace // empty' | sort -u); do
        run "$K" get namespace "$ns"
        [ "$RC" -eq 0 ] && continue
        ok "create namespace $ns" "$K" create namespace "$ns" || return 1
    done
}

# dryrun IN OUTPREFIX: apply --dry-run=server; OUTPREFIX.{json,err,rc} and, when the apply
# failed (kubectl then prints no JSON at all), OUTPREFIX.names from a second -o name run.
dryrun() {
    timeout -k 5 "$CMD_TIMEOUT" "$K" apply --dry-run=server -o json -f "$1" >"$2.json" 2>"$2.err"
    echo $? >"$2.rc"
    if [ "$(cat "$2.rc")" -ne 0 ]; then
        timeout -k 5 "$CMD_TIMEOUT" "$K" apply --dry-run=server -o name -f "$1" >"$2.names" 2>/dev/null
    fi
}

# check_file FILE: all the checks for one manifest, in both sidecar modes; prints why and returns
# 1 on the first problem. Appends the per-document verdicts to $W/verdicts ("FILE MODE
# KIND/NAME VERDICT") and the rejected originals to $W/rejected.
check_file() {
    local f=$1 n b rb want m
    n=$(basename "$f")
    b=$W/$n.before
    dryrun "$f" "$b"
    rb=$(cat "$b.rc")
    sed -i "s|$f|FILE|g" "$b.err" # kubectl names the file in some messages
    want=${WANT_REJECTED[$n]-}
    if [ "$rb" -ne 0 ]; then
        if [ -z "$want" ]; then
            echo "$n: the original is rejected by the API server (not an expected input problem): $(head -c 600 "$b.err")"
            return 1
        fi
        if ! grep -qF -- "$want" "$b.err"; then
            echo "$n: the original is rejected for another reason than pinned ($want): $(head -c 600 "$b.err")"
            return 1
        fi
        printf '%s\t%s\n' "$n" "$(tr '\n' ' ' <"$b.err")" >>"$W/rejected"
    elif [ -n "$want" ]; then
        echo "$n: pinned as rejected ($want) but the API server accepts the original"
        return 1
    fi
    for m in "${MODES[@]}"; do
        check_mode "$f" "$m" || return 1
    done
}

# check_mode FILE MODE: weftctl's output in MODE (classic, native) against the original's verdict.
check_mode() {
    local f=$1 m=$2 n b a v ra
    n=$(basename "$f")
    b=$W/$n.before
    a=$W/$n.$m.after
    dryrun "$W/$n.$m.yaml" "$a"
    ra=$(cat "$a.rc")
    sed -i "s|$W/$n.$m.yaml|FILE|g" "$a.err"
    # weftctl's output, every document
    v=$(jq -r "$JQ_DEFS"' docs | "\(id) \(verdict)"' "$W/$n.$m.json") || {
        echo "$n ($m): weftctl -o json output is not JSON"
        return 1
    }
    [ -n "$v" ] || { echo "$n ($m): weftctl printed no document"; return 1; }
    if grep -q ' BAD: ' <<<"$v"; then
        echo "$n ($m): weftctl output: $(grep ' BAD: ' <<<"$v" | head -3 | tr '\n' ';')"
        return 1
    fi
    awk -v f="$n $m" '{ print f " " $0 }' <<<"$v" >>"$W/verdicts"
    # the API server: same verdict before and after
    if [ "$(cat "$b.rc")" -ne 0 ]; then
        if [ "$ra" -eq 0 ] || ! cmp -s "$b.err" "$a.err"; then
            echo "$n ($m): rejected before injection, but after it: exit $ra: $(head -c 600 "$a.err")"
            return 1
        fi
        if ! cmp -s "$b.names" "$a.names"; then
            echo "$n ($m): documents accepted before ($(tr '\n' ' ' <"$b.names")) differ from after ($(tr '\n' ' ' <"$a.names"))"
            return 1
        fi
        return 0
    fi
    if [ "$ra" -ne 0 ]; then
        echo "$n ($m): accepted as written, REJECTED after injection: $(head -c 1200 "$a.err")"
        return 1
    fi
    # the objects the server returned, pairwise (same order before and after)
    v=$(jq -rn --slurpfile b "$b.json" --slurpfile a "$a.json" "$JQ_DEFS"'
        [$b[] | docs] as $B | [$a[] | docs] as $A |
        if ($B | length) != ($A | length) then "BAD: \($B | length) objects before, \($A | length) after"
        else range(0; $A | length) as $k | $B[$k] as $o | $A[$k] as $x |
            "\($x | id) " + (
            if ($o | id) != ($x | id) then "BAD: \($o | id) before, \($x | id) after"
            else ($x | verdict) as $v |
                if $v == "injected" then
                    if ([$x | tmpl | inits[], ctrs[] | select(weft | not)]) !=
                       [$o | tmpl | inits[], ctrs[]]
                    then "BAD: application containers \([$o | tmpl | inits[], ctrs[]]) became \([$x | tmpl | inits[], ctrs[]])"
                    else "server-injected" end
                elif ($v | startswith("BAD")) then $v
                elif ($o | norm) != ($x | norm) then "BAD: \($v) object changed by injection"
                else "server-\($v)" end
            end)
        end')
    if [ -z "$v" ] || grep -q 'BAD: ' <<<"$v"; then
        echo "$n ($m): API server result: $(grep 'BAD: ' <<<"$v" | head -3 | tr '\n' ';')"
        return 1
    fi
    awk -v f="$n $m" '{ print f " " $0 }' <<<"$v" >>"$W/verdicts"
    return 0
}

# case_chunk FIRST LAST: files FIRST..LAST (0-based indices into CHECKED)
case_chunk() {
    local i why bad=0
    for ((i = $1; i <= $2; i++)); do
        why=$(check_file "${CHECKED[$i]}")
        if [ -n "$why" ]; then
            echo "    $why"
            bad=$((bad + 1))
            FAILED_FILES+=("$(basename "${CHECKED[$i]}")")
        fi
    done
    [ "$bad" -eq 0 ] || t_fail "$bad of $(($2 - $1 + 1)) files failed: ${FAILED_FILES[*]}"
}

count_verdict() { # MODE WORD: documents with that verdict in MODE
    awk -v m="$1" -v w="$2" '$2 == m && $4 == w' "$W/verdicts" | wc -l
}

case_totals() {
    local m docs inj host other ver hostsrv
    assert_eq "${#FILES[@]}" "$WANT_FILES" "corpus files" || return
    for m in "${MODES[@]}"; do
        inj=$(count_verdict "$m" injected)
        host=$(count_verdict "$m" hostnet)
        other=$(count_verdict "$m" other)
        docs=$((inj + host + other))
        ver=$(count_verdict "$m" server-injected)
        hostsrv=$(count_verdict "$m" server-hostnet)
        echo "    $m sidecars: documents $docs: injected $inj (checked in the API server's answer:" \
            "$ver), hostNetwork unchanged $host (checked there: $hostsrv), without a pod template $other"
        assert_eq "$docs" "$WANT_DOCS" "$m: documents" || return
        assert_eq "$inj" "$WANT_INJECTED" "$m: injected templates" || return
        assert_eq "$host" "$WANT_HOSTNET" "$m: hostNetwork templates" || return
        assert_eq "$hostsrv" "$WANT_HOSTNET" "$m: hostNetwork templates unchanged in the server's answer" || return
        assert_eq "$other" "$WANT_OTHER" "$m: objects without a pod template" || return
        assert_eq "$ver" "$WANT_VERIFIED" "$m: injected templates verified in the server's answer" || return
    done
}

case_rejected_inputs() {
    local n why got
    got=$(cut -f1 "$W/rejected" 2>/dev/null | sort | tr '\n' ' ')
    assert_eq "$got" "$(printf '%s\n' "${!WANT_REJECTED[@]}" | sort | tr '\n' ' ')" \
        "files rejected as written" || return
    while IFS=$'\t' read -r n why; do
        echo "    input problem (rejected before and after, same message): $n: $why"
    done <"$W/rejected"
}

t_begin start
if [ ! -d "$CORPUS" ]; then
    t_skip "no injection corpus at $CORPUS (the shared ../shared/inject-corpus/ directory)"
    t_summary
fi
for tool in jq "$K" "$WEFTCTL"; do
    command -v "$tool" >/dev/null || { t_skip "needs $tool"; t_summary; }
done
FILES=("$CORPUS"/*.yaml)
FAILED_FILES=()
inject_all || t_summary
kl_start || { t_fail "kubelite did not start"; t_summary; }
make_namespaces || t_summary
t_pass
for ((c = 0; c < ${#CHECKED[@]}; c += CHUNK)); do
    last=$((c + CHUNK - 1))
    [ "$last" -lt "${#CHECKED[@]}" ] || last=$((${#CHECKED[@]} - 1))
    t_run "files $((c + 1))-$((last + 1)) ($(basename "${CHECKED[$c]}") .. $(basename "${CHECKED[$last]}"))" \
        case_chunk "$c" "$last"
done
t_run "totals" case_totals
t_run "rejected-inputs (${#WANT_REJECTED[@]} files rejected as written and after injection, same reason)" \
    case_rejected_inputs
t_summary
