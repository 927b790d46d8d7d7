# shellcheck shell=bash disable=SC2120 # kl_start takes optional arguments
# Shared helpers for the kubelite integration suites (sourced, not run).
#
#   . "$(dirname "$0")/lib.sh"
#   kl_start [--data-dir DIR] [--insecure] ...   start kubelite, export KUBECONFIG
#   t_begin NAME; ...assertions...; t_pass        one test case
#   t_summary                                     "N passed, N failed"; exit status
#   daemon_track PID WHAT                         a server (weftd, ...) that must exit 0 on
#                                                 SIGTERM; daemon_killed PID before a kill -9
#
# KUBELITE selects the binary (default $BUILD/bin/kubelite, BUILD defaulting to build), relative
# paths are taken from the repository root. KUBECTL_DIR holds kubectl.1.29 and kubectl.1.33,
# HELM is the helm v4 binary. Every temporary file lives under $KL_TMP, removed on exit with
# kubelite and every background process registered with bg_track.
#
# Shutdown: t_summary stops the servers still running (daemon_track'd ones, then kubelite) with
# SIGTERM and adds a case "clean shutdown": every kubelite and tracked server stopped with
# SIGTERM during the suite exited 0 (a sanitizer build exits nonzero on a leak), and no log
# under $KL_TMP holds a sanitizer report (tests/sanitizer.sh). Keep servers' logs under $KL_TMP.

set -u

KL_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../sanitizer.sh
. "$KL_REPO/tests/sanitizer.sh"
BUILD=${BUILD:-build}
KUBELITE=${KUBELITE:-$BUILD/bin/kubelite}
case $KUBELITE in
/*) ;;
*) KUBELITE=$KL_REPO/$KUBELITE ;;
esac
KUBECTL_DIR=${KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}
HELM=${HELM:-$KL_REPO/tools/bin/helm}
CMD_TIMEOUT=${CMD_TIMEOUT:-40}

KL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kl-it.XXXXXX")
KL_PID=
KL_DIR=
KL_LOG=
KL_EXIT=
KL_BG_PIDS=()
T_NAME=
T_STATE=
T_PASSED=0
T_FAILED=0
T_SKIPPED=0
declare -A T_DAEMON=() # pid -> what it is, for the servers whose exit status is checked
T_STOPPED=0            # servers stopped with SIGTERM and checked
T_BAD_EXITS=()         # "what (pid): exit N after SIGTERM"

# Private caches and configuration for the clients: nothing read from or written to $HOME.
export KUBECACHEDIR=$KL_TMP/kube-cache
export HELM_CACHE_HOME=$KL_TMP/helm/cache HELM_CONFIG_HOME=$KL_TMP/helm/config
export HELM_DATA_HOME=$KL_TMP/helm/data
unset KUBECTL_EXTERNAL_DIFF HELM_NAMESPACE HELM_KUBECONTEXT

kl_cleanup() {
    local p
    for p in "${KL_BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    if [ -n "$KL_PID" ]; then
        kill "$KL_PID" 2>/dev/null
        sleep 0.2
        kill -9 "$KL_PID" 2>/dev/null
    fi
    for p in "${KL_BG_PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    [ -n "$KL_PID" ] && wait "$KL_PID" 2>/dev/null
    rm -rf "$KL_TMP"
}
trap kl_cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM HUP

# Register a background process (by pid) to be killed on exit.
bg_track() {
    KL_BG_PIDS+=("$1")
}

# daemon_track PID WHAT: a server started in the background (also bg_track'd) whose exit status
# counts: stopped with SIGTERM (bg_stop, or t_summary) it must exit 0 within 20 s.
daemon_track() {
    T_DAEMON[$1]=$2
    bg_track "$1"
}

# daemon_killed PID: about to be killed on purpose (kill -9, a crash test): status not checked.
daemon_killed() {
    unset "T_DAEMON[$1]"
}

# daemon_exit WHAT PID STATUS: record a server's exit status after SIGTERM.
daemon_exit() {
    T_STOPPED=$((T_STOPPED + 1))
    [ "$3" -eq 0 ] || T_BAD_EXITS+=("$1 (pid $2): exit $3 after SIGTERM")
}

# Stop a registered background process and reap it (a tracked server: SIGTERM, up to 20 s,
# then SIGKILL, and its exit status recorded).
bg_stop() {
    local keep=() p st _
    kill "$1" 2>/dev/null
    if [ -n "${T_DAEMON[$1]:-}" ]; then
        for _ in $(seq 200); do
            kill -0 "$1" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$1" 2>/dev/null && kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        st=$?
        daemon_exit "${T_DAEMON[$1]}" "$1" "$st"
        unset "T_DAEMON[$1]"
    else
        wait "$1" 2>/dev/null
    fi
    for p in "${KL_BG_PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    KL_BG_PIDS=("${keep[@]}")
    return 0
}

# pf_start NAME KUBECTL ARGS...: `KUBECTL port-forward ARGS` in the background (bg_track'd),
# logging to $KL_TMP/pf-NAME.log; waits up to 10 s for "Forwarding from 127.0.0.1:PORT" and sets
# PF_PORT and PF_PID. pf_stop ends it.
pf_start() {
    local log="$KL_TMP/pf-$1.log" kc=$2
    shift 2
    "$kc" port-forward "$@" >"$log" 2>&1 &
    PF_PID=$!
    bg_track "$PF_PID"
    PF_PORT=
    for _ in $(seq 100); do
        PF_PORT=$(sed -nE 's/^Forwarding from 127\.0\.0\.1:([0-9]+) .*/\1/p' "$log" | head -1)
        [ -n "$PF_PORT" ] && return 0
        kill -0 "$PF_PID" 2>/dev/null || break
        sleep 0.1
    done
    t_fail "kubectl port-forward $* did not start: $(cat "$log")"
    return 1
}
pf_stop() {
    kill "$PF_PID" 2>/dev/null
    wait "$PF_PID" 2>/dev/null
    return 0
}
# pf_protocol LOG: the protocol (spdy, websocket) of the last port-forward session kubelite logged
pf_protocol() {
    grep 'msg="port-forward session"' "$1" | tail -1 | sed -E 's/.*protocol=([a-z]+).*/\1/'
}

# kl_start [kubelite options...]: start kubelite on 127.0.0.1:0 in a fresh directory, wait up to
# 10 s for its kubeconfig, export KUBECONFIG. Returns nonzero (after printing why) on failure.
kl_start() {
    local _
    if [ ! -x "$KUBELITE" ]; then
        echo "kl_start: $KUBELITE is not an executable (set KUBELITE or BUILD)" >&2
        return 1
    fi
    KL_DIR=$(mktemp -d "$KL_TMP/kubelite.XXXXXX")
    KL_LOG=$KL_DIR/kubelite.log
    KL_EXIT=
    "$KUBELITE" --listen 127.0.0.1:0 --kubeconfig-out "$KL_DIR/kubeconfig" \
        --openapi-dir "$KL_REPO/tests/kubelite/openapi" --log-level debug "$@" \
        >"$KL_LOG" 2>&1 &
    KL_PID=$!
    for _ in $(seq 100); do
        if [ -s "$KL_DIR/kubeconfig" ]; then
            export KUBECONFIG=$KL_DIR/kubeconfig
            return 0
        fi
        if ! kill -0 "$KL_PID" 2>/dev/null; then
            wait "$KL_PID"
            KL_EXIT=$?
            echo "kl_start: kubelite exited with status $KL_EXIT:" >&2
            tail -30 "$KL_LOG" >&2
            KL_PID=
            return 1
        fi
        sleep 0.1
    done
    echo "kl_start: no kubeconfig after 10 s:" >&2
    tail -30 "$KL_LOG" >&2
    kl_stop
    return 1
}

# kl_stop: SIGTERM, wait up to 10 s (then SIGKILL). Sets KL_EXIT to kubelite's exit status.
kl_stop() {
    local _
    [ -n "$KL_PID" ] || return 0
    kill -TERM "$KL_PID" 2>/dev/null
    for _ in $(seq 100); do
        kill -0 "$KL_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$KL_PID" 2>/dev/null; then
        echo "kl_stop: kubelite ignored SIGTERM for 10 s; killing it" >&2
        kill -KILL "$KL_PID" 2>/dev/null
    fi
    wait "$KL_PID" 2>/dev/null
    KL_EXIT=$?
    daemon_exit kubelite "$KL_PID" "$KL_EXIT"
    KL_PID=
    return 0
}

# The "clean shutdown" case (from t_summary): stop what still runs, check statuses and logs.
t_shutdown_check() {
    local p reports
    for p in "${!T_DAEMON[@]}"; do
        bg_stop "$p"
    done
    kl_stop
    reports=$(san_reports "$KL_TMP")
    [ "$T_STOPPED" -gt 0 ] || [ -n "$reports" ] || return 0
    t_begin "clean-shutdown ($T_STOPPED stopped)"
    local why=
    [ ${#T_BAD_EXITS[@]} -gt 0 ] && why="$(printf '%s; ' "${T_BAD_EXITS[@]}")"
    [ -n "$reports" ] && why="${why}sanitizer reports in the servers' logs:
$reports"
    if [ -n "$why" ]; then
        t_fail "$why"
    else
        t_pass
    fi
}

# --- test cases ----------------------------------------------------------------------------

# t_begin NAME: start a case. A case left open (neither passed nor failed) fails.
t_begin() {
    if [ "$T_STATE" = open ]; then
        t_fail "case ended without t_pass"
    fi
    T_NAME=$1
    T_STATE=open
}

t_pass() {
    [ "$T_STATE" = open ] || return 0
    echo "PASS $T_NAME"
    T_PASSED=$((T_PASSED + 1))
    T_STATE=closed
}

# t_fail MSG: fail the current case (once; later failures in the same case are ignored).
t_fail() {
    [ "$T_STATE" = open ] || return 1
    echo "FAIL $T_NAME: $1"
    T_FAILED=$((T_FAILED + 1))
    T_STATE=closed
    if [ -n "$KL_LOG" ] && [ -f "$KL_LOG" ]; then
        echo "    --- last 30 lines of the kubelite log ($KL_LOG)"
        tail -30 "$KL_LOG" | sed 's/^/    | /'
    fi
    return 1
}

t_skip() {
    [ "$T_STATE" = open ] || return 0
    echo "SKIP $T_NAME: $1"
    T_SKIPPED=$((T_SKIPPED + 1))
    T_STATE=closed
}

# t_failed: true when the current case has already failed (to skip its remaining steps).
t_failed() {
    [ "$T_STATE" != open ]
}

# t_run NAME FUNCTION [ARGS...]: run a case function; it passes if it returns 0 without a failure.
t_run() {
    local name=$1
    shift
    t_begin "$name"
    if "$@"; then
        t_pass
    else
        t_fail "step failed (exit status $?)"
    fi
}

t_summary() {
    if [ "$T_STATE" = open ]; then
        t_fail "case ended without t_pass"
    fi
    t_shutdown_check
    if [ "$T_SKIPPED" -gt 0 ]; then
        echo "$T_PASSED passed, $T_FAILED failed, $T_SKIPPED skipped"
    else
        echo "$T_PASSED passed, $T_FAILED failed"
    fi
    [ "$T_FAILED" -eq 0 ]
    exit $?
}

# --- running commands --------------------------------------------------------------------

# run CMD...: run a command (with a timeout); OUT gets stdout+stderr, RC the exit status.
run() {
    OUT=$(timeout -k 5 "$CMD_TIMEOUT" "$@" 2>&1)
    RC=$?
    return 0
}

# runo CMD...: like run but OUT gets stdout only; ERR gets stderr.
runo() {
    local ef=$KL_TMP/stderr.$$
    OUT=$(timeout -k 5 "$CMD_TIMEOUT" "$@" 2>"$ef")
    RC=$?
    ERR=$(cat "$ef")
    rm -f "$ef"
    return 0
}

# ok WHAT CMD...: run; fail the case (with the output) unless it exits 0.
ok() {
    local what=$1
    shift
    run "$@"
    [ "$RC" -eq 0 ] && return 0
    t_fail "$what: exit $RC: $(printf '%s' "$OUT" | head -c 1500)"
}

# okv WHAT CMD...: run with stdout only in OUT; fail unless it exits 0.
okv() {
    local what=$1
    shift
    runo "$@"
    [ "$RC" -eq 0 ] && return 0
    t_fail "$what: exit $RC: $(printf '%s' "$OUT$ERR" | head -c 1500)"
}

# fails WHAT CMD...: run; fail the case unless it exits nonzero.
fails() {
    local what=$1
    shift
    run "$@"
    [ "$RC" -ne 0 ] && return 0
    t_fail "$what: expected a failure, got exit 0: $(printf '%s' "$OUT" | head -c 1500)"
}

# --- assertions (each fails the case and returns 1 on a mismatch) ----------------------------

assert_eq() { # GOT WANT WHAT
    [ "$1" = "$2" ] && return 0
    t_fail "$3: got '$1', want '$2'"
}

assert_ne() { # GOT NOTWANT WHAT
    [ "$1" != "$2" ] && return 0
    t_fail "$3: got '$1', want anything else"
}

assert_contains() { # HAYSTACK NEEDLE WHAT
    case $1 in
    *"$2"*) return 0 ;;
    esac
    t_fail "$3: '$2' not found in: $(printf '%s' "$1" | head -c 1500)"
}

assert_not_contains() { # HAYSTACK NEEDLE WHAT
    case $1 in
    *"$2"*) t_fail "$3: '$2' unexpectedly found in: $(printf '%s' "$1" | head -c 1500)" ;;
    *) return 0 ;;
    esac
}

assert_match() { # STRING EXTENDED-REGEX WHAT (matched against each line, like grep -E)
    printf '%s\n' "$1" | grep -Eq -- "$2" && return 0
    t_fail "$3: no line matches /$2/ in: $(printf '%s' "$1" | head -c 1500)"
}

assert_gt() { # A B WHAT: integer A > B
    if [[ $1 =~ ^[0-9]+$ ]] && [[ $2 =~ ^[0-9]+$ ]] && [ "$1" -gt "$2" ]; then
        return 0
    fi
    t_fail "$3: want $1 > $2"
}

# wait_for SECONDS CMD...: retry CMD every 0.1 s until it succeeds or SECONDS pass.
wait_for() {
    local end=$((SECONDS + $1))
    shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ $SECONDS -ge $end ] && return 1
        sleep 0.1
    done
}

# have_tool PATH: true when PATH is executable (else the current case is skipped).
have_tool() {
    [ -x "$1" ] && return 0
    t_skip "$1 not found"
    return 1
}
