# shellcheck shell=bash
# Shared helpers for the e2e suites (sourced, not run): "pods" as network namespaces on this
# machine, joined by veth pairs, with real weft-init rules and real listeners. Builds on the
# integration library (cases, assertions, background processes, $KL_TMP).
#
#   . "$(dirname "$0")/lib.sh"
#   e2e_require_root || t_summary     skip the whole suite where namespaces cannot be made
#   e2e_netns NAME                    a fresh namespace (names must start with wfe-), lo up
#   e2e_link NS1 ADDR1 NS2 ADDR2 ...  a veth pair between two namespaces, addresses CIDR-style
#   e2e_bg NS CMD...                  a background process inside NS, killed on exit
#   e2e_hosts NS "ADDR NAME"...       /etc/hosts entries inside NS
#   e2e_in NS CMD...                  run CMD inside NS
#   e2e_as1337 NS CMD...              run CMD inside NS as UID/GID 1337 (the proxy's UID);
#                                     "${E2E_1337[@]}" is the same as a command prefix
#
# Meshed pods (the mesh_* functions below): kubelite and weftd in one namespace, pods that are
# namespaces with weft-init's rules and weft-agent on weftd's config stream.
#
# Everything made here (namespaces, and the veths with them) is removed on exit. Run e2e suites
# under the shared lock: flock /tmp/weft-netns.lock bash tests/run.sh e2e.

# shellcheck source=../integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

E2E_DIR=$KL_REPO/tests/e2e
E2E_PY=${E2E_PY:-/usr/bin/python3}
E2E_NS=()
E2E_MOUNTS=()

e2e_cleanup() {
    local ns m
    for m in "${E2E_MOUNTS[@]}"; do
        umount -l "$m" 2>/dev/null
    done
    kl_cleanup
    for ns in "${E2E_NS[@]}"; do
        ip netns del "$ns" 2>/dev/null
        rm -rf "/etc/netns/$ns"
    done
}
trap e2e_cleanup EXIT

e2e_require_root() {
    t_begin "e2e prerequisites"
    if [ "$(id -u)" -ne 0 ]; then
        t_skip "needs root (network namespaces, iptables)"
        return 1
    fi
    if ! command -v ip >/dev/null || ! command -v setpriv >/dev/null || [ ! -x "$E2E_PY" ]; then
        t_skip "needs ip (iproute2), setpriv (util-linux) and $E2E_PY"
        return 1
    fi
    t_pass
}

# E2E_PREFIX (wfe by default) names the namespaces: a benchmark sets its own (wfb) so that it can
# run beside the e2e suites.
E2E_PREFIX=${E2E_PREFIX:-wfe}
e2e_netns() {
    case $1 in
    "$E2E_PREFIX"-*) ;;
    *)
        echo "e2e_netns: $1: e2e namespaces must be named $E2E_PREFIX-*" >&2
        return 1
        ;;
    esac
    ip netns del "$1" 2>/dev/null
    ip netns add "$1" || return 1
    E2E_NS+=("$1")
    ip -n "$1" link set lo up
}

# e2e_link NS1 ADDR1 NS2 ADDR2 [ADDR1' ADDR2' ...]: veth wfe<n>a (NS1) <-> wfe<n>b (NS2).
E2E_LINKS=0
e2e_link() {
    local n1=$1 a1=$2 n2=$3 a2=$4 va vb
    shift 4
    E2E_LINKS=$((E2E_LINKS + 1))
    va=wfe$$l${E2E_LINKS}a
    vb=wfe$$l${E2E_LINKS}b
    va=${va:0:15} vb=${vb:0:15}
    ip link add "$va" netns "$n1" type veth peer name "$vb" netns "$n2" || return 1
    ip -n "$n1" addr add "$a1" dev "$va" nodad 2>/dev/null || ip -n "$n1" addr add "$a1" dev "$va"
    ip -n "$n2" addr add "$a2" dev "$vb" nodad 2>/dev/null || ip -n "$n2" addr add "$a2" dev "$vb"
    while [ $# -ge 2 ]; do
        ip -n "$n1" addr add "$1" dev "$va" nodad 2>/dev/null || ip -n "$n1" addr add "$1" dev "$va"
        ip -n "$n2" addr add "$2" dev "$vb" nodad 2>/dev/null || ip -n "$n2" addr add "$2" dev "$vb"
        shift 2
    done
    ip -n "$n1" link set "$va" up && ip -n "$n2" link set "$vb" up
    E2E_LINK_A=$va E2E_LINK_B=$vb
}

# e2e_hosts NS "ADDR NAME"...: /etc/hosts inside NS (ip netns exec mounts /etc/netns/NS/hosts);
# removed with the namespace.
e2e_hosts() {
    local ns=$1
    shift
    mkdir -p "/etc/netns/$ns" && printf '127.0.0.1 localhost\n' >"/etc/netns/$ns/hosts" &&
        printf '%s\n' "$@" >>"/etc/netns/$ns/hosts"
}

e2e_in() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# As a command prefix (for run/ok/okv, which cannot call functions):
#   ok "what" ip netns exec NS "${E2E_1337[@]}" CMD...
E2E_1337=(setpriv --reuid 1337 --regid 1337 --clear-groups)

e2e_as1337() {
    local ns=$1
    shift
    ip netns exec "$ns" "${E2E_1337[@]}" "$@"
}

# e2e_bg NS CMD...: start CMD inside NS in the background (output to $KL_TMP/bg.<pid>.log).
e2e_bg() {
    local ns=$1 log
    shift
    log=$KL_TMP/bg.$RANDOM.log
    ip netns exec "$ns" "$@" >"$log" 2>&1 &
    E2E_BG_PID=$!
    E2E_BG_LOG=$log
    bg_track "$E2E_BG_PID"
}

# e2e_serve NS SPEC...: origdst.py listeners in NS (see origdst.py); waits until they listen.
e2e_serve() {
    local ns=$1
    shift
    e2e_bg "$ns" "$E2E_PY" "$E2E_DIR/origdst.py" serve "$@"
    wait_for 10 grep -q '^ready' "$E2E_BG_LOG" || {
        echo "e2e_serve: listeners in $ns did not start: $(cat "$E2E_BG_LOG")" >&2
        return 1
    }
}

# e2e_dial NS ADDR PORT [--src A]: one connection from NS (as root); OUT = the line received
# (or "ERR <reason>"). Always returns 0: the caller compares OUT.
e2e_dial() {
    local ns=$1
    shift
    OUT=$(ip netns exec "$ns" timeout 10 "$E2E_PY" "$E2E_DIR/origdst.py" connect "$@" 2>&1)
    return 0
}

# e2e_dial1337 NS ADDR PORT [--src A]: the same as UID 1337.
e2e_dial1337() {
    local ns=$1
    shift
    OUT=$(e2e_as1337 "$ns" timeout 10 "$E2E_PY" "$E2E_DIR/origdst.py" connect "$@" 2>&1)
    return 0
}

# nat_rules NS BACKEND [ip6]: the nat table as iptables-BACKEND-save prints it (BACKEND nft or
# legacy), without comments and counters.
nat_rules() {
    local tool=iptables-$2-save
    [ "${3:-}" = ip6 ] && tool=ip6tables-$2-save
    ip netns exec "$1" "$tool" -t nat 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'
}

# --- meshed pods ---------------------------------------------------------------------------
# kubelite and weftd run in one namespace (the control plane's: a pod's, or a hub's with a
# bridge the pods join); each meshed pod is a namespace that reaches weftd's address under
# weftd.weft-system.svc (the name its serving certificate carries), with weft-init's rules and
# weft-agent (UID 1337) on weftd's config stream. Files live in $MESH_D ($KL_TMP/mesh unless set
# before the first call). A step that fails fails the current case (t_fail) and leaves its
# reason in MESH_ERR (for scripts that run no cases).
#
#   mesh_control_plane NS IP [weftd options...]
#                                kubelite in NS, weft-system and the CRDs, then weftd: certificates
#                                on IP:15012, stream on IP:15013, admin 127.0.0.1:18090 in NS
#                                (MESH_WEFTD_PID, MESH_WEFTD_LOG); the root in $MESH_D/root.pem.
#                                Both are servers whose exit status t_summary checks
#                                (daemon_track): bg_stop MESH_WEFTD_PID stops weftd
#   "${MESH_K[@]}" ARGS / mesh_k ARGS
#                                kubectl 1.33 against that kubelite (run inside NS)
#   mesh_weftd [weftd options...] weftd alone (a restart with other options)
#   mesh_hub NS IP               a hub namespace with bridge wfbr0 (IP/24) for mesh_attach
#   mesh_attach NS IP            a veth from namespace NS (IP/24, default route) to the hub
#   mesh_ns_yaml NS [SA...]      a meshed namespace (weft.dev/inject: enabled) and those
#                                ServiceAccounts in it on stdout (for kubectl apply)
#   mesh_pod_yaml NAME NS SA LABELS [PORTS]
#                                a meshed Pod (app and weft-proxy containers) on stdout; LABELS and
#                                PORTS in YAML flow style: "{app: web}", "[{containerPort: 8080}]"
#   mesh_pod_up NAME NS IP       the pod Running and Ready at IP; its uid in $MESH_D/NAME.uid, a
#                                token bound to it in $MESH_D/NAME.token
#   mesh_agent NETNS NAME IP [weft-init options...] [-- weft-agent options...]
#                                weft-init's rules in NETNS, then weft-agent as UID 1337 for pod
#                                NAME (log $MESH_D/NAME.log, run dir $MESH_D/NAME/run on a tmpfs,
#                                MESH_AGENT_PID)
#   mesh_ready SECONDS NETNS...  until every one of those sidecars answers /healthz/ready with 200
#   mesh_acks NAME               how many documents pod NAME's agent has ACKed
#   mesh_synced SECONDS NS/NAME...
#                                until weftd reports each of those pods' proxies synced (ACKed its
#                                current document: /debug/proxies)
MESH_CP=weftd.weft-system.svc
MESH_K=()
MESH_ERR=

mesh_fail() { # REASON: fail the case, keep the reason
    MESH_ERR=$1
    t_fail "$1"
    return 1
}

mesh_k() { "${MESH_K[@]}" "$@"; }

mesh_dir() {
    MESH_D=${MESH_D:-$KL_TMP/mesh}
    mkdir -p "$MESH_D" && chmod 755 "$KL_TMP" "$MESH_D"
}

mesh_control_plane() {
    local ns=$1 ip=$2
    shift 2
    mesh_dir || return
    MESH_CP_NS=$ns MESH_CP_IP=$ip
    MESH_K=(ip netns exec "$ns" env KUBECONFIG="$MESH_D/kubeconfig" "$KUBECTL_DIR/kubectl.1.33")
    e2e_bg "$ns" "$KUBELITE" --listen 127.0.0.1:0 --kubeconfig-out "$MESH_D/kubeconfig" \
        --openapi-dir "$KL_REPO/tests/kubelite/openapi"
    MESH_KUBELITE_LOG=$E2E_BG_LOG
    daemon_track "$E2E_BG_PID" kubelite # ip netns exec execs it: this is kubelite's PID
    wait_for 10 test -s "$MESH_D/kubeconfig" || mesh_fail "kubelite did not start: $(tail -5 "$E2E_BG_LOG")" || return
    run "${MESH_K[@]}" create namespace weft-system
    [ "$RC" = 0 ] || mesh_fail "namespace weft-system: $OUT" || return
    run "${MESH_K[@]}" apply -f "$KL_REPO/crds/"
    [ "$RC" = 0 ] || mesh_fail "CRDs: $OUT" || return
    mesh_weftd "$@" || return
    mesh_k get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$MESH_D/root.pem" &&
        [ -s "$MESH_D/root.pem" ] || mesh_fail "no root in the Secret weft-ca" || return
    chmod 644 "$MESH_D/root.pem"
}

mesh_weftd() {
    e2e_bg "$MESH_CP_NS" "$KL_REPO/$BUILD/bin/weftd" --kubeconfig "$MESH_D/kubeconfig" --namespace weft-system \
        --identity a --admin-listen 127.0.0.1:18090 --certs-listen "$MESH_CP_IP:15012" \
        --stream-listen "$MESH_CP_IP:15013" --webhook-listen 127.0.0.1:18444 "$@"
    MESH_WEFTD_PID=$E2E_BG_PID MESH_WEFTD_LOG=$E2E_BG_LOG
    daemon_track "$MESH_WEFTD_PID" weftd
    wait_for 30 grep -q 'msg=listening what=stream' "$MESH_WEFTD_LOG" ||
        mesh_fail "weftd: $(tail -5 "$MESH_WEFTD_LOG")"
}

# The bridge's MAC address is set (from IP): a bridge without one takes the lowest of its ports'
# and changes whenever a port with a lower one is attached; the pods attached before keep the old
# one for IP in their neighbour tables, and their frames to it are dropped (not the bridge's
# address, not the port they came in on). Their TCP connections to IP stalled for 15-45 s, until
# the entry failed and was resolved again: the flip benchmark's lost config changes.
mesh_hub() {
    local ns=$1 ip=$2 mac
    mac=$(printf '02:77:%02x:%02x:%02x:%02x' ${ip//./ })
    e2e_netns "$ns" && ip -n "$ns" link add wfbr0 address "$mac" type bridge && ip -n "$ns" addr add "$ip/24" dev wfbr0 &&
        ip -n "$ns" link set wfbr0 up || mesh_fail "hub $ns" || return
    MESH_HUB=$ns
}

MESH_LINKS=0
mesh_attach() {
    local ns=$1 ip=$2 va vb
    MESH_LINKS=$((MESH_LINKS + 1))
    va=${E2E_PREFIX}$$h${MESH_LINKS}a vb=${E2E_PREFIX}$$h${MESH_LINKS}b
    va=${va:0:15} vb=${vb:0:15}
    ip link add "$va" netns "$ns" type veth peer name "$vb" netns "$MESH_HUB" &&
        ip -n "$ns" addr add "$ip/24" dev "$va" && ip -n "$ns" link set "$va" up &&
        ip -n "$MESH_HUB" link set "$vb" master wfbr0 && ip -n "$MESH_HUB" link set "$vb" up &&
        ip -n "$ns" route add default dev "$va" || mesh_fail "$ns: no link to the hub $MESH_HUB"
}

mesh_ns_yaml() {
    local ns=$1 sa
    shift
    printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {weft.dev/inject: enabled}}\n' "$ns"
    for sa in "$@"; do
        printf -- '---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s}\n' "$sa" "$ns"
    done
}

mesh_pod_yaml() {
    printf -- '---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s, labels: %s}\nspec:\n  serviceAccountName: %s\n  containers:\n  - {name: app, image: app:1%s}\n  - {name: weft-proxy, image: weft/proxy:dev}\n' \
        "$1" "$2" "$4" "$3" "${5:+, ports: $5}"
}

mesh_pod_up() {
    local name=$1 ns=$2 ip=$3 uid sa
    run "${MESH_K[@]}" patch pod -n "$ns" "$name" --subresource=status --type=merge \
        -p "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$ip\",\"podIPs\":[{\"ip\":\"$ip\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}"
    [ "$RC" = 0 ] || mesh_fail "pod $ns/$name: status: $OUT" || return
    mesh_k get pod -n "$ns" "$name" -o 'jsonpath={.metadata.uid} {.spec.serviceAccountName}' >"$MESH_D/$name.uid" ||
        mesh_fail "pod $ns/$name: no uid" || return
    read -r uid sa <"$MESH_D/$name.uid"
    printf '%s' "$uid" >"$MESH_D/$name.uid"
    mesh_k create token -n "$ns" "$sa" --audience weft --duration 1h --bound-object-kind Pod \
        --bound-object-name "$name" --bound-object-uid "$uid" >"$MESH_D/$name.token" ||
        mesh_fail "pod $ns/$name: no token for $sa" || return
    chmod 644 "$MESH_D/$name.token"
}

mesh_agent() {
    local netns=$1 name=$2 ip=$3 init=() hosts=/etc/netns/$1/hosts
    shift 3
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        init+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    if [ -f "$hosts" ]; then
        grep -q " $MESH_CP\$" "$hosts" || echo "$MESH_CP_IP $MESH_CP" >>"$hosts"
    else
        e2e_hosts "$netns" "$MESH_CP_IP $MESH_CP"
    fi
    run ip netns exec "$netns" "$KL_REPO/$BUILD/bin/weft-init" "${init[@]}"
    [ "$RC" = 0 ] || mesh_fail "$name: weft-init: $OUT" || return
    # the run dir on a tmpfs, as the injected pod's weft-data volume (emptyDir, medium Memory):
    # the agent writes HAProxy's configuration there on every change, and a disk under load
    # made that write most of an apply (2-9 ms measured on ext4 while CI compiled)
    mkdir -p "$MESH_D/$name/run" && chown 1337:1337 "$MESH_D/$name" || return
    if ! mountpoint -q "$MESH_D/$name/run"; then # a restarted agent keeps it, as a container does
        mount -t tmpfs -o size=64m,mode=0700,uid=1337,gid=1337 "weft-data-$name" "$MESH_D/$name/run" ||
            mesh_fail "$name: cannot mount a tmpfs on $MESH_D/$name/run" || return
        E2E_MOUNTS+=("$MESH_D/$name/run")
    fi
    ip netns exec "$netns" env POD_IP="$ip" "${E2E_1337[@]}" "$KL_REPO/$BUILD/bin/weft-agent" \
        --control-plane "$MESH_CP:15012" --stream-port 15013 --stream-server-name "$MESH_CP" \
        --token-file "$MESH_D/$name.token" --ca-file "$MESH_D/root.pem" --run-dir "$MESH_D/$name/run" \
        "$@" >"$MESH_D/$name.log" 2>&1 &
    MESH_AGENT_PID=$!
    bg_track "$MESH_AGENT_PID"
}

mesh_ready_code() { # NETNS: the sidecar's /healthz/ready status (000: no answer)
    ip netns exec "$1" curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:15020/healthz/ready
}

# mesh_each SECONDS TEST ITEM...: until TEST ITEM succeeds for every ITEM (each tried again
# every 0.2 s while it fails); MESH_LEFT: the items that never did
mesh_each() {
    local end=$((SECONDS + $1)) t=$2 i
    shift 2
    while :; do
        MESH_LEFT=()
        for i in "$@"; do
            "$t" "$i" || MESH_LEFT+=("$i")
        done
        [ ${#MESH_LEFT[@]} -eq 0 ] && return 0
        [ $SECONDS -ge $end ] && return 1
        set -- "${MESH_LEFT[@]}"
        sleep 0.2
    done
}

mesh_is_ready() { [ "$(mesh_ready_code "$1")" = 200 ]; }

mesh_ready() {
    local t=$1 ns
    shift
    mesh_each "$t" mesh_is_ready "$@" ||
        mesh_fail "sidecars not ready: $(for ns in "${MESH_LEFT[@]}"; do printf '%s (%s) ' "$ns" "$(mesh_ready_code "$ns")"; done)"
}

mesh_acks() {
    grep -c 'msg="configuration applied (ACK)"' "$MESH_D/$1.log"
}

mesh_is_synced() { # NS/NAME
    ip netns exec "$MESH_CP_NS" curl -s -m 2 -H "Authorization: Bearer $MESH_TOKEN" \
        "http://127.0.0.1:18090/debug/proxies/$1" |
        "$E2E_PY" -c 'import json, sys; sys.exit(json.load(sys.stdin).get("sync") != "synced")' 2>/dev/null
}

mesh_synced() {
    local t=$1
    shift
    MESH_TOKEN=$(sed -n 's/^ *token: *//p' "$MESH_D/kubeconfig" | head -1)
    mesh_each "$t" mesh_is_synced "$@" || mesh_fail "proxies not synced: ${MESH_LEFT[*]}"
}
