#!/usr/bin/env bash
# t0400-watch-harness.sh - kubelite WATCH / LIST semantics under concurrent writers.
#
# Runs watchcheck (tests/integration/watchcheck.c) against fresh kubelite servers:
#   stress  (twice, different seeds and writer counts): concurrent writers create, update,
#           relabel and delete ConfigMaps in three namespaces while 22 watchers start at
#           different moments under every resourceVersion mode (unset, "0", rv from a LIST,
#           sendInitialEvents, informer-style paginated LIST + WATCH), with and without label
#           and field selectors, namespaced and across namespaces. Every stream is compared
#           with the committed writes; every LIST with the state at its resourceVersion.
#   expire  --watch-history 32: WATCH from a compacted rv gets HTTP 200 + ERROR 410 Expired,
#           an expired continue token and an Exact LIST get HTTP 410, the retained window's
#           boundary is exact, and a reflector recovers by relisting.
# Prints PASS/FAIL per check and "N passed, N failed".
# Env: BUILD (build), KUBELITE ($BUILD/bin/kubelite), WATCHCHECK ($BUILD/tests/watchcheck).
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
KUBELITE=${KUBELITE:-$BUILD/bin/kubelite}
WATCHCHECK=${WATCHCHECK:-$BUILD/tests/watchcheck}
pass=0
fail=0
pids=()
tmp=$(mktemp -d "${TMPDIR:-/tmp}/t0400.XXXXXX")

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

result() { # status name [detail]
    if [ "$1" = 0 ]; then
        echo "PASS $2"
        pass=$((pass + 1))
    else
        echo "FAIL $2${3:+: $3}"
        fail=$((fail + 1))
    fi
}

finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

for bin in "$KUBELITE" "$WATCHCHECK"; do
    if [ ! -x "$bin" ]; then
        result 1 "prerequisites" "$bin not built (make; or set KUBELITE / WATCHCHECK)"
        finish
    fi
done

# start_kubelite DIR ARGS...: sets SERVER and KPID; fails when no kubeconfig appears in 10 s.
start_kubelite() {
    local dir=$1
    shift
    mkdir -p "$dir"
    "$KUBELITE" --listen 127.0.0.1:0 --kubeconfig-out "$dir/kc" --insecure \
        --openapi-dir "$PWD/tests/kubelite/openapi" "$@" >"$dir/log" 2>&1 &
    KPID=$!
    pids+=("$KPID")
    for _ in $(seq 200); do
        [ -s "$dir/kc" ] && break
        kill -0 "$KPID" 2>/dev/null || break
        sleep 0.05
    done
    SERVER=$(sed -n 's/^ *server: *//p' "$dir/kc" 2>/dev/null)
    [ -n "$SERVER" ]
}

# scenario NAME "KUBELITE ARGS" WATCHCHECK ARGS...
scenario() {
    local name=$1 kargs=$2 dir=$tmp/$1 out rc line
    shift 2
    # shellcheck disable=SC2086 # kargs is a word list
    if ! start_kubelite "$dir" $kargs; then
        result 1 "$name: kubelite starts" "$(tail -5 "$dir/log" 2>/dev/null)"
        return
    fi
    out=$dir/watchcheck.out
    timeout 50 "$WATCHCHECK" "$@" --server "$SERVER" >"$out" 2>&1
    rc=$?
    while IFS= read -r line; do
        case $line in
        "PASS "*)
            echo "PASS $name: ${line#PASS }"
            pass=$((pass + 1))
            ;;
        "FAIL "*)
            echo "FAIL $name: ${line#FAIL }"
            fail=$((fail + 1))
            ;;
        *) echo "    $line" ;;
        esac
    done <"$out"
    if ! grep -q '^watchcheck: [0-9]* passed' "$out"; then
        result 1 "$name: watchcheck completes" "exit $rc (timeout or crash)"
    fi
    if kill -0 "$KPID" 2>/dev/null; then
        result 0 "$name: kubelite still serving"
        kill "$KPID" 2>/dev/null
        wait "$KPID" 2>/dev/null
    else
        result 1 "$name: kubelite still serving" "$(tail -5 "$dir/log")"
    fi
}

scenario stress1 "--bookmark-interval 1" stress --writers 4 --ops 400 --seed 1
scenario stress2 "--bookmark-interval 0.5" stress --writers 6 --ops 200 --seed 2
scenario expire "--watch-history 32" expire --history 32
finish
