#!/usr/bin/env bash
# Runs the libFuzzer targets (docs/fuzzing.md). Called by tests/run.sh as the "fuzz" suite.
#   tests/fuzz/run.sh                    every target: its seed corpus, then a bounded exploration
#   tests/fuzz/run.sh fuzz_json ...      only these targets
#   tests/fuzz/run.sh --long T SECONDS   one target for SECONDS (make fuzz-long T=... S=...)
# One line per target (PASS/FAIL/SKIP) and a closing "N passed, N failed[, N skipped]".
# Inputs found during a run go to a scratch directory, never into tests/fuzz/corpus/. A crash
# leaves its reproducer in $BUILD/fuzz/artifacts/ and the FAIL line names it.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}

# target  max_len  runs (the exploration after the seeds: about 10-20 s each on 2 cores)
targets() {
    cat <<'TABLE'
fuzz_json        16384  200000
fuzz_review      65536  70000
fuzz_yaml        16384  120000
fuzz_csr         16400  400000
fuzz_push_msg    16384  2000000
fuzz_kubeconfig  16384  200000
fuzz_http        16384  300000
fuzz_portforward 16384  200000
TABLE
}

setting() { # target column
    targets | awk -v t="$1" -v c="$2" '$1 == t { print $c }'
}

artifacts=$BUILD/fuzz/artifacts
mkdir -p "$artifacts"

# Common options: the same exploration every time, bounded memory and time per input.
common_opts() { # target
    local t=$1 opts
    opts=(-seed=1 -max_len="$(setting "$t" 2)" -rss_limit_mb=2048 -timeout=30
        -artifact_prefix="$artifacts/$t-" -print_final_stats=1)
    if [ -f "tests/fuzz/dict/$t.dict" ]; then
        opts+=(-dict="tests/fuzz/dict/$t.dict")
    fi
    printf '%s\n' "${opts[@]}"
}

if [ "${1:-}" = --long ]; then
    t=${2:?target}
    secs=${3:-600}
    bin=$BUILD/fuzz/$t
    [ -x "$bin" ] || { echo "$bin: not built (make fuzz)"; exit 2; }
    [ -n "$(setting "$t" 2)" ] || { echo "unknown target $t"; exit 2; }
    # a working corpus that grows across long runs; the committed seeds are only read
    work=$BUILD/fuzz/corpus/$t
    mkdir -p "$work"
    mapfile -t opts < <(common_opts "$t")
    opts=("${opts[@]/-seed=1/-seed=0}")
    exec "$bin" "${opts[@]}" -max_total_time="$secs" "$work" "tests/fuzz/corpus/$t"
fi

pass=0 fail=0 skip=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
log_dir=$BUILD/test-logs/fuzz
mkdir -p "$log_dir"

run_target() { # target
    local t=$1
    local bin=$BUILD/fuzz/$t log=$log_dir/$t.log out rc crash start secs
    local -a opts
    if [ ! -x "$bin" ]; then
        echo "SKIP $t: $bin not built (make fuzz)"
        skip=$((skip + 1))
        return
    fi
    mapfile -t opts < <(common_opts "$t")
    out=$scratch/$t
    mkdir -p "$out"
    rm -f "$artifacts/$t-"*
    start=$(date +%s)
    "$bin" "${opts[@]}" -runs="$(setting "$t" 3)" "$out" "tests/fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    crash=$(find "$artifacts" -maxdepth 1 -name "$t-*" | head -1)
    if [ $rc -eq 0 ] && [ -z "$crash" ]; then
        echo "PASS $t ($(grep -o 'Done [0-9]* runs' "$log" | tail -1 | cut -d' ' -f2) inputs," \
            "${secs}s, $(find "tests/fuzz/corpus/$t" -type f | wc -l) corpus files)"
        pass=$((pass + 1))
    else
        echo "FAIL $t (exit $rc): reproducer ${crash:-(none written)}; log $log"
        grep -m1 -E 'FUZZ_ASSERT|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' \
            "$log" | sed 's/^/    /'
        echo "    rerun: $bin ${crash:-<input>}"
        fail=$((fail + 1))
    fi
}

if [ $# -gt 0 ]; then
    names=("$@")
else
    mapfile -t names < <(targets | awk '{ print $1 }')
fi
for t in "${names[@]}"; do
    if [ -z "$(setting "$t" 2)" ]; then
        echo "FAIL $t: unknown target (not in tests/fuzz/run.sh's table)"
        fail=$((fail + 1))
        continue
    fi
    run_target "$t"
done
# every target source must be in the table
for src in tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    if [ -z "$(setting "$t" 2)" ]; then
        echo "FAIL $t: tests/fuzz/$t.c has no line in tests/fuzz/run.sh's table"
        fail=$((fail + 1))
    fi
done

if [ $skip -gt 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ $fail -eq 0 ]
