#!/usr/bin/env bash
# The renderer (agent/render.c) against the real HAProxy: every configuration document the
# controller's golden fixtures hold (tests/fixtures/mesh/*/expected/*.json), rendered with
# certificates from Weft's CA, passes `haproxy -c` without a warning, for an IPv4 pod and for
# the same documents with an IPv6 pod address.
. "$(dirname "$0")/lib.sh"

WFE_TOOL=$KL_REPO/$BUILD/tests/wfe-tool
HAPROXY=${HAPROXY:-haproxy}

t_begin "tools"
if ! command -v "$HAPROXY" >/dev/null; then
    t_skip "haproxy is not installed"
    t_summary
fi
have_tool "$WFE_TOOL" || t_summary
D=$KL_TMP/render
mkdir -p "$D"
ok "root" "$WFE_TOOL" ca "$D" &&
    ok "leaf" "$WFE_TOOL" leaf "$D" cluster.local default productpage "$D/pod.pem" &&
    cp "$D/root.crt" "$D/bundle.pem" && t_pass

check_all() { # ipv6|ipv4 [--access-log-all]
    local f n=0 bad=0 doc
    for f in "$KL_REPO"/tests/fixtures/mesh/*/expected/*.json; do
        case $f in */status.json) continue ;; esac
        n=$((n + 1))
        doc=$f
        if [ "$1" = ipv6 ]; then
            doc=$D/doc6.json
            jq '.proxy.ip = "fd00:10::\(.proxy.ip | split(".") | .[3])"' "$f" >"$doc"
        fi
        run "$WFE_TOOL" render "$doc" "$D" "$D/pod.pem" "$D/bundle.pem" $([ "$1" = ipv6 ] && echo --ipv6) ${2:-}
        if [ "$RC" -ne 0 ]; then
            echo "    ${f#"$KL_REPO"/}: render: $OUT"
            bad=$((bad + 1))
            continue
        fi
        run "$HAPROXY" -c -f "$D/haproxy.cfg"
        if [ "$RC" -ne 0 ] || printf '%s\n' "$OUT" | grep -q -e WARNING -e ALERT; then
            echo "    ${f#"$KL_REPO"/}: haproxy -c (exit $RC):"
            printf '%s\n' "$OUT" | grep -e WARNING -e ALERT | head -5 | sed 's/^/      /'
            bad=$((bad + 1))
        fi
    done
    echo "    $n documents checked"
    assert_gt "$n" 19 "documents" && assert_eq "$bad" 0 "documents failing"
}

t_run "every fixture document renders and passes haproxy -c (IPv4 pod)" check_all ipv4
t_run "every fixture document renders and passes haproxy -c (IPv6 pod)" check_all ipv6
t_run "every fixture document renders and passes haproxy -c (access log: every request)" check_all ipv4 --access-log-all
t_summary
