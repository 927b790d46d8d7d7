# shellcheck shell=bash
# The local cluster as functions, for tools/cluster and for test scripts (sourced, not run):
#
#   . tools/cluster-lib.sh
#   DIR=$(cluster_tmpdir)     # a new directory under ${TMPDIR:-/tmp} that pods can read
#   cluster_up DIR [--kubelet-version vX.Y.Z] [--images MAPFILE] [-- HELM-INSTALL-ARGS...]
#   export KUBECONFIG=DIR/kubeconfig; ...
#   cluster_down DIR          # stops everything; fails when anything was left behind
#
# cluster_up starts kubelite (listening on every address, advertising the node's bridge address
# 10.244.0.1 so pods reach it through the `kubernetes` Service), kubelet-lite (node state under
# DIR/node), installs charts/weft with the real helm into weft-system, and waits until every
# weftd pod is Ready and the weft-injector webhook has its caBundle. Logs: DIR/kubelite.log,
# DIR/kubelet-lite.log, DIR/helm.log. Needs root. One cluster per machine (kubelet-lite owns the
# bridge kl0): a second cluster_up fails and names the directory that is up.
# Both return 0, or print "cluster: ..." on stderr and return 1 (cluster_up: something was
# started, cluster_down cleans it up) or 2 (refused before anything was touched). Env: CLUSTER_TIMEOUT (seconds
# to wait for each step, default 120), BUILD (build directory, default build), HELM, KUBECTL.

CLUSTER_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_MARK=/run/weft-cluster.dir
CLUSTER_BRIDGE_IP=10.244.0.1
CLUSTER_NS=weft-system

_cluster_bin() {
    local b=${BUILD:-build}
    case $b in /*) ;; *) b=$CLUSTER_REPO/$b ;; esac
    echo "$b/bin"
}
_cluster_helm() {
    if [ -n "${HELM:-}" ]; then echo "$HELM"; elif [ -x "$CLUSTER_REPO/tools/bin/helm" ]; then
        echo "$CLUSTER_REPO/tools/bin/helm"
    else command -v helm; fi
}
_cluster_kubectl() {
    if [ -n "${KUBECTL:-}" ]; then echo "$KUBECTL"; elif command -v kubectl >/dev/null; then
        command -v kubectl
    else echo "$CLUSTER_REPO/tools/bin/kubectl"; fi
}
_cluster_err() { echo "cluster: $*" >&2; }
_cluster_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# A new directory for cluster_up (mode 0755: pods run as other users and read their volumes
# under it; its parents must be searchable too, as /tmp is).
cluster_tmpdir() {
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/weft-cluster.XXXXXX") && chmod 0755 "$d" && echo "$d"
}

# The directory of the cluster that is up, if any.
cluster_active() {
    local d
    d=$(cat "$CLUSTER_MARK" 2>/dev/null) || return 1
    [ -n "$d" ] || return 1
    if _cluster_alive "$(cat "$d/kubelite.pid" 2>/dev/null)" ||
        _cluster_alive "$(cat "$d/kubelet-lite.pid" 2>/dev/null)"; then
        echo "$d"
        return 0
    fi
    return 1
}

# _cluster_wait SECONDS WHAT CMD...: retry CMD every 0.2 s.
_cluster_wait() {
    local end=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $end ]; then
            _cluster_err "timed out after ${end}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

cluster_up() {
    local dir=${1:?cluster_up DIR}
    shift
    local kv="" images="" helm_args=() bin helm k t=${CLUSTER_TIMEOUT:-120} other p
    while [ $# -gt 0 ]; do
        case $1 in
        --kubelet-version) kv=${2:?--kubelet-version vX.Y.Z}; shift 2 ;;
        --images) images=${2:?--images MAPFILE}; shift 2 ;;
        --) shift; helm_args=("$@"); break ;;
        *) _cluster_err "unknown option $1"; return 2 ;;
        esac
    done
    bin=$(_cluster_bin)
    helm=$(_cluster_helm)
    k=$(_cluster_kubectl)
    if [ "$(id -u)" != 0 ]; then
        _cluster_err "must run as root (kubelet-lite creates network namespaces, a bridge, iptables rules)"
        return 2
    fi
    for b in "$bin/kubelite" "$bin/kubelet-lite" "$bin/weftd" "$helm" "$k"; do
        [ -x "$b" ] || { _cluster_err "$b is missing (make; bash tools/deps.sh)"; return 2; }
    done
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 2
    if other=$(cluster_active); then
        _cluster_err "a cluster is already up in $other; only one runs per machine (tools/cluster down --dir $other)"
        return 2
    fi
    if ip link show kl0 >/dev/null 2>&1 || ip netns list 2>/dev/null | grep -q '^kl-'; then
        _cluster_err "another kubelet-lite runs, or one left kl0/kl-* behind (build/bin/kubelet-lite --cleanup)"
        return 2
    fi
    # Pods run as other users (weftd as 65532) and read their volumes under DIR/node.
    chmod 0755 "$dir"
    p=$(dirname "$dir")
    while [ "$p" != / ]; do
        if [ "$(( $(stat -c '%#a' "$p") & 1 ))" = 0 ]; then
            _cluster_err "$p is not searchable by other users, and pods run as other users (weftd as 65532) read their volumes under $dir: chmod o+x $p or choose another --dir"
            return 2
        fi
        p=$(dirname "$p")
    done
    rm -rf "$dir/data" "$dir/node" "$dir/kubeconfig" "$dir"/*.pid "$dir"/*.log
    echo "$dir" >"$CLUSTER_MARK"
    setsid "$bin/kubelite" --listen 0.0.0.0:0 --advertise-address "$CLUSTER_BRIDGE_IP" \
        --kubeconfig-out "$dir/kubeconfig" --data-dir "$dir/data" \
        </dev/null >"$dir/kubelite.log" 2>&1 &
    echo $! >"$dir/kubelite.pid"
    _cluster_wait 20 "kubelite (see $dir/kubelite.log)" test -s "$dir/kubeconfig" || return 1
    setsid "$bin/kubelet-lite" --kubeconfig "$dir/kubeconfig" --root "$dir/node" \
        --node-name weft-node ${kv:+--kubelet-version "$kv"} ${images:+--images "$images"} \
        </dev/null >"$dir/kubelet-lite.log" 2>&1 &
    echo $! >"$dir/kubelet-lite.pid"
    _cluster_wait "$t" "the node weft-node to be Ready (see $dir/kubelet-lite.log)" \
        "$k" --kubeconfig "$dir/kubeconfig" wait --for=condition=Ready node/weft-node --timeout=1s ||
        return 1
    if ! KUBECONFIG=$dir/kubeconfig "$helm" install weft "$CLUSTER_REPO/charts/weft" \
        -n "$CLUSTER_NS" --create-namespace "${helm_args[@]}" >"$dir/helm.log" 2>&1; then
        _cluster_err "helm install failed:"
        sed 's/^/  /' "$dir/helm.log" >&2
        return 1
    fi
    _cluster_wait "$t" "the weftd Deployment to be available" _cluster_weftd_ready "$k" "$dir" || {
        "$k" --kubeconfig "$dir/kubeconfig" get pods -n "$CLUSTER_NS" -o wide >&2
        return 1
    }
    _cluster_wait "$t" "the weft-injector webhook's caBundle" _cluster_webhook_ready "$k" "$dir"
}

# Every replica of the Deployment Ready.
_cluster_weftd_ready() {
    local want ready
    want=$("$1" --kubeconfig "$2/kubeconfig" get deploy weftd -n "$CLUSTER_NS" -o 'jsonpath={.spec.replicas}')
    ready=$("$1" --kubeconfig "$2/kubeconfig" get pods -n "$CLUSTER_NS" -l app.kubernetes.io/name=weftd \
        -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
        grep -c '^True$')
    [ -n "$want" ] && [ "$ready" -ge "$want" ]
}

_cluster_webhook_ready() {
    local ca
    ca=$("$1" --kubeconfig "$2/kubeconfig" get mutatingwebhookconfiguration weft-injector \
        -o 'jsonpath={.webhooks[0].clientConfig.caBundle}')
    [ -n "$ca" ]
}

# What a cluster could leave behind, one line each (empty: nothing).
cluster_leftovers() {
    local dir=$1 p
    for p in kubelite kubelet-lite; do
        if _cluster_alive "$(cat "$dir/$p.pid" 2>/dev/null)"; then
            echo "process $p ($(cat "$dir/$p.pid")) is running"
        fi
    done
    ip netns list 2>/dev/null | grep '^kl-' | sed 's/^/network namespace /'
    ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^(kl0|klv)/ {print "link " $2}'
    for t in nat filter; do
        iptables -t "$t" -S 2>/dev/null | grep -E '(-N|-j) KL-' | sed "s/^/iptables ($t): /"
    done
    grep -F " $dir/" /proc/mounts | sed 's/^/mount /'
    pgrep -f "^$dir/" | sed 's/^/process /'
}

cluster_down() {
    local dir=${1:?cluster_down DIR} pid left bin other killed=()
    [ -d "$dir" ] && dir=$(cd "$dir" && pwd)
    bin=$(_cluster_bin)
    if other=$(cluster_active) && [ "$other" != "$dir" ]; then
        _cluster_err "the cluster that is up is in $other, not in $dir (tools/cluster down --dir $other)"
        return 2
    fi
    # kubelet-lite first: it stops the pods (their grace periods, capped), then removes the
    # namespaces, links, chains and its directories.
    pid=$(cat "$dir/kubelet-lite.pid" 2>/dev/null)
    if _cluster_alive "$pid"; then
        kill -TERM "$pid"
        for _ in $(seq 300); do _cluster_alive "$pid" || break; sleep 0.1; done
        if _cluster_alive "$pid"; then
            kill -KILL "$pid"
            killed+=("kubelet-lite ignored SIGTERM for 30 s and was killed")
        fi
    fi
    if ip link show kl0 >/dev/null 2>&1 || ip netns list 2>/dev/null | grep -q '^kl-'; then
        "$bin/kubelet-lite" --cleanup --root "$dir/node" >/dev/null 2>&1
    fi
    pid=$(cat "$dir/kubelite.pid" 2>/dev/null)
    if _cluster_alive "$pid"; then
        kill -TERM "$pid"
        for _ in $(seq 100); do _cluster_alive "$pid" || break; sleep 0.1; done
        if _cluster_alive "$pid"; then
            kill -KILL "$pid"
            killed+=("kubelite ignored SIGTERM for 10 s and was killed")
        fi
    fi
    if [ "$(cat "$CLUSTER_MARK" 2>/dev/null)" = "$dir" ]; then
        rm -f "$CLUSTER_MARK"
    fi
    left=$(cluster_leftovers "$dir")
    [ ${#killed[@]} -gt 0 ] && left=$(printf '%s\n' "${killed[@]}" "$left")
    if [ -n "$left" ]; then
        _cluster_err "down was not clean; left behind:"
        echo "$left" | sed 's/^/  /' >&2
        return 1
    fi
    rm -f "$dir"/*.pid
    return 0
}
