# shellcheck shell=bash
# Helpers shared by the suites that run kubelet-lite (sourced after lib.sh): its log on failure,
# stopping it, and a cleanup that leaves no kubelet-lite state behind. Expects KLT_PID, KLT_LOG,
# KLT_ROOT and KUBELET_LITE from the suite.

# On a failed case, show kubelet-lite's log too.
klt_tail() {
    echo "    --- last 25 lines of the kubelet-lite log"
    tail -25 "$KLT_LOG" 2>/dev/null | sed 's/^/    | /'
}
fail() {
    t_fail "$1"
    klt_tail
    return 1
}

stop_kubelet() { # sets KLT_EXIT
    local _
    KLT_EXIT=
    [ -n "$KLT_PID" ] || return 0
    kill -TERM "$KLT_PID" 2>/dev/null
    for _ in $(seq 200); do
        kill -0 "$KLT_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$KLT_PID" 2>/dev/null && kill -KILL "$KLT_PID"
    wait "$KLT_PID"
    KLT_EXIT=$?
    bg_stop "$KLT_PID"
    KLT_PID=
}

# Whatever happens, leave no kubelet-lite state behind.
final_cleanup() {
    stop_kubelet
    if ip link show kl0 >/dev/null 2>&1 || ip netns list | grep -q '^kl-'; then
        "$KUBELET_LITE" --cleanup --root "$KLT_ROOT" >/dev/null 2>&1
    fi
    kl_cleanup
}
