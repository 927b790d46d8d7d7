#!/usr/bin/env bash
# Runs every test suite and ends with one line "N passed, N failed[, N skipped]".
#   tests/run.sh            all suites
#   tests/run.sh unit       unit runners only
#   tests/run.sh integration [NAME...]
#   tests/run.sh e2e [NAME...]      network-namespace "pods" (root; run under flock /tmp/weft-netns.lock)
#   tests/run.sh fuzz [TARGET...]  libFuzzer targets (make fuzz builds them; docs/fuzzing.md)
#   tests/run.sh unit,integration  several kinds (`make sanitize`: its build has no fuzz targets)
# BUILD selects the build directory (build/ by default; build/san for `make sanitize`).
# E2E_LOCK_DIR=DIR: each e2e suite runs holding DIR/weft-e2e-<tNNNN>.lock, the lock a developer
# takes to run that suite by hand (`flock /tmp/weft-e2e-t0450.lock bash tests/run.sh e2e ...`):
# two checkouts on one machine then never run the same suite (its ports) at once.
#
# What makes a run fail, besides a failed case:
#   - a suite with no summary line, or one that exits nonzero with no failed case;
#   - a suite that runs longer than its time limit (suite_limit below; SUITE_TIME_SCALE
#     multiplies it, 4 by default for a sanitizer build; SUITE_TIMEOUT=S sets every limit);
#   - an expected unit runner (UNIT_RUNNERS) that is not built, a unit directory not listed in
#     UNIT_RUNNERS, or a built runner nobody expects;
#   - a sanitizer report (tests/sanitizer.sh) anywhere in a suite's output;
#   - a skipped case that is not on tests/skip-allow.txt ("SUITE CASE reason"): CI runs as root
#     with every tool installed, where nothing should skip.
# Golden files are never regenerated here: WEFT_UPDATE_GOLDEN and UPDATE_GOLDEN are cleared.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/sanitizer.sh
BUILD=${BUILD:-build}
export BUILD
unset WEFT_UPDATE_GOLDEN UPDATE_GOLDEN
what=${1:-all}
shift || true
pass=0 fail=0 skip=0
failed_names=()
unallowed_skips=()
log_dir=$BUILD/test-logs
mkdir -p "$log_dir"
allow_file=tests/skip-allow.txt

# Every unit runner a build makes: one per tests/unit/<dir>, plus kubelet-lite's own
# (tests/kubelite/kubelet/test). A new unit directory must be added here.
UNIT_RUNNERS=(agent agent_driver ca conf_json conf_yaml controller core http kl_patch kl_proto kl_selector
    kl_ssa kl_table kl_validate kube kubelet push tls webhook)

scale=${SUITE_TIME_SCALE:-}
if [ -z "$scale" ]; then
    scale=1
    san_built "$BUILD/bin/kubelite" && scale=4
fi

suite_limit() { # name: seconds
    local s
    if [ -n "${SUITE_TIMEOUT:-}" ]; then
        echo "$SUITE_TIMEOUT"
        return
    fi
    case $1 in
    unit-*) s=180 ;;
    fuzz) s=1200 ;;
    t0400-watch-harness | t0710-cluster | t0910-inject-corpus | t1010-weftd-faults | t1310-mesh-lifecycle) s=900 ;;
    *) s=600 ;;
    esac
    echo $((s * scale))
}

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

allowed_skip() { # suite case
    [ -f "$allow_file" ] && grep -v '^#' "$allow_file" | awk -v s="$1" -v c="$2" \
        '$1 == s && $2 == c { found = 1 } END { exit !found }'
}

suite_failed() { # name why: count one failure for the suite itself
    echo "    $1: $2"
    fail=$((fail + 1))
    failed_names+=("$1")
}

run_suite() { # name command...
    local name=$1; shift
    local log=$log_dir/$name.log limit rc reports c
    limit=$(suite_limit "$name")
    echo "=== $name"
    timeout -k 10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    grep -E '^(PASS|FAIL|SKIP|ok|not ok)' "$log" | sed 's/^/    /'
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        suite_failed "$name" "killed after its time limit of $limit s (exit $rc)"
        tail -20 "$log" | sed 's/^/      /'
        count "$log"
        return
    fi
    if ! count "$log"; then
        suite_failed "$name" "no summary line (exit $rc)"
        tail -20 "$log" | sed 's/^/      /'
    elif [ $rc -ne 0 ] && ! grep -qE '^[0-9]+ passed, [1-9]' "$log"; then
        suite_failed "$name" "exit $rc with no failed case"
        tail -20 "$log" | sed 's/^/      /'
    elif grep -qE '^[0-9]+ passed, [1-9]' "$log"; then
        failed_names+=("$name")
        grep -B2 -A12 '^FAIL' "$log" | head -60 | sed 's/^/      /'
    fi
    if reports=$(san_reports "$log"); then
        suite_failed "$name" "sanitizer report in its output:"
        echo "$reports" | sed 's/^/      /'
    fi
    while read -r c; do
        allowed_skip "$name" "$c" || unallowed_skips+=("$name $c")
    done < <(sed -nE 's/^SKIP ([^: ]+).*/\1/p' "$log")
}

want() { # kind: asked for on the command line
    case ",$what," in
    *,all,* | *,"$1",*) return 0 ;;
    esac
    return 1
}

if want unit; then
    for d in tests/unit/*/; do
        d=$(basename "$d")
        if ! printf '%s\n' "${UNIT_RUNNERS[@]}" | grep -qx "$d"; then
            echo "=== unit-$d"
            suite_failed "unit-$d" "tests/unit/$d is not in tests/run.sh's UNIT_RUNNERS"
        fi
    done
    for r in "$BUILD"/tests/unit-*; do
        [ -e "$r" ] || continue
        d=${r##*/unit-}
        [ -d "tests/unit/$d" ] && continue # reported above when not listed
        if ! printf '%s\n' "${UNIT_RUNNERS[@]}" | grep -qx "$d"; then
            echo "=== unit-$d"
            suite_failed "unit-$d" "$r is built but not in tests/run.sh's UNIT_RUNNERS"
        fi
    done
    for d in "${UNIT_RUNNERS[@]}"; do
        r=$BUILD/tests/unit-$d
        if [ ! -x "$r" ]; then
            echo "=== unit-$d"
            suite_failed "unit-$d" "$r is not built (see make's output)"
            continue
        fi
        run_suite "unit-$d" "$r"
    done
fi

if want fuzz; then
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
        if [ "$dir" = tests/e2e ] && [ -n "${E2E_LOCK_DIR:-}" ]; then
            run_suite "$n" flock "$E2E_LOCK_DIR/weft-e2e-${n%%-*}.lock" bash "$t"
        else
            run_suite "$n" bash "$t"
        fi
    done
}

if want integration; then
    run_scripts tests/integration "$@"
fi

if want e2e; then
    run_scripts tests/e2e "$@"
fi

if [ ${#unallowed_skips[@]} -gt 0 ]; then
    echo "skipped cases not on $allow_file (each counts as a failure):"
    printf '    %s\n' "${unallowed_skips[@]}"
    fail=$((fail + ${#unallowed_skips[@]}))
fi
if [ ${#failed_names[@]} -gt 0 ]; then
    echo "failing suites: $(printf '%s\n' "${failed_names[@]}" | sort -u | tr '\n' ' ')(logs in $log_dir/)"
fi
if [ $skip -gt 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ $fail -eq 0 ]
