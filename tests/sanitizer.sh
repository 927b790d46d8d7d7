# shellcheck shell=bash
# Sanitizer reports in logs (sourced by tests/run.sh and tests/integration/lib.sh): ASan and
# LeakSanitizer errors, UBSan's "file:line:col: runtime error:" lines and any sanitizer SUMMARY.

SAN_REPORT_RE='^==[0-9]+==ERROR: [A-Za-z]+Sanitizer|^SUMMARY: [A-Za-z]+Sanitizer|:[0-9]+:[0-9]+: runtime error: '

# san_reports FILE|DIR...: print "file: line" for the first report lines found; status 0 when any.
san_reports() {
    grep -rHEs -m3 -- "$SAN_REPORT_RE" "$@" | head -12 | grep .
}

# san_built BINARY: true when BINARY was built with AddressSanitizer or UBSan.
san_built() {
    grep -qaE '__asan_init|__ubsan_handle' "$1" 2>/dev/null
}
