#!/usr/bin/env bash
# Runs every test suite and ends with one line "N passed, N failed[, N skipped]".
#   tests/run.sh            all suites
#   tests/run.sh unit       unit runners only
#   tests/run.sh integration [NAME...]
#   tests/run.sh e2e [NAME...]      network-namespace "pods" (root; run under flock /tmp/weft-netns.lock)
#   tests/run.sh fuzz [TARGET...]  libFuzzer targets (make fuzz builds them; docs/fuzzing.md)
# BUILD selects the build directory (build/ by default; build/san for `make sanitize`).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
what=${1:-all}
shift || true
pass=0 fail=0 skip=0
failed_names=()
log_dir=$BUILD/test-logs
mkdir -p "$log_dir"

count() { # file: add the runner's own "N passed, N failed[, N skipped]" line
    local line p f s
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
    if [ -z "$line" ]; then
        return 1
    fi
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
    return 0
}

run_suite() { # name command...
    local name=$1; shift
    local log=$log_dir/$name.log
    echo "=== $name"
    "$@" >"$log" 2>&1
    local rc=$?
    grep -E '^(PASS|FAIL|SKIP|ok|not ok)' "$log" | sed 's/^/    /'
    if ! count "$log"; then
        echo "    $name: no summary line (exit $rc)"; tail -20 "$log" | sed 's/^/      /'
        fail=$((fail + 1)); failed_names+=("$name")
    elif [ $rc -ne 0 ] && ! grep -qE '^[0-9]+ passed, [1-9]' "$log"; then
        echo "    $name: exit $rc with no failed case"; tail -20 "$log" | sed 's/^/      /'
        fail=$((fail + 1)); failed_names+=("$name")
    elif grep -qE '^[0-9]+ passed, [1-9]' "$log"; then
        failed_names+=("$name")
        grep -B2 -A12 '^FAIL' "$log" | head -60 | sed 's/^/      /'
    fi
}

if [ "$what" = all ] || [ "$what" = unit ]; then
    for r in "$BUILD"/tests/unit-*; do
        [ -x "$r" ] || continue
        run_suite "$(basename "$r")" "$r"
    done
fi

if [ "$what" = all ] || [ "$what" = fuzz ]; then
    # seeds plus a bounded, deterministic exploration per target; SKIP when not built
    run_suite fuzz bash tests/fuzz/run.sh "$@"
fi

run_scripts() { # DIR [NAME...]: every DIR/t*.sh, or only the named ones
    local dir=$1 t n
    shift
    for t in "$dir"/t*.sh; do
        [ -f "$t" ] || continue
        n=$(basename "$t" .sh)
        if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$n"; then
            continue
        fi
        run_suite "$n" bash "$t"
    done
}

if [ "$what" = all ] || [ "$what" = integration ]; then
    run_scripts tests/integration "$@"
fi

if [ "$what" = all ] || [ "$what" = e2e ]; then
    run_scripts tests/e2e "$@"
fi

if [ ${#failed_names[@]} -gt 0 ]; then
    echo "failing suites: ${failed_names[*]} (logs in $log_dir/)"
fi
if [ $skip -gt 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ $fail -eq 0 ]
