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
# Everything made here (namespaces, and the veths with them) is removed on exit. Run e2e suites
# under the shared lock: flock /tmp/weft-netns.lock bash tests/run.sh e2e.

# shellcheck source=../integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

E2E_DIR=$KL_REPO/tests/e2e
E2E_PY=${E2E_PY:-/usr/bin/python3}
E2E_NS=()

e2e_cleanup() {
    local ns
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

e2e_netns() {
    case $1 in
    wfe-*) ;;
    *)
        echo "e2e_netns: $1: e2e namespaces must be named wfe-*" >&2
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
