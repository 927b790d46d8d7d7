#!/usr/bin/env bash
# bench/ca_load.sh - weftd's POST /v1/certificates under load, TokenReview by kubelite included.
#
#   bench/ca_load.sh            (after make; BUILD selects the build directory, WEFTD the binary;
#                                N_SA, N_TOKENS and BURST the sizes: 100, 1000, 1000)
#
# Starts kubelite (HTTPS, as in a cluster: TokenReview needs authenticated requests) and one
# weftd, creates $N_SA ServiceAccounts in namespace "load" and $N_TOKENS tokens for them
# (audience weft, through the TokenRequest API that `kubectl create token` uses), then runs
# build/bench/ca_load (see bench/ca_load.c) against weftd's certificate port and, for the
# breakdown, against kubelite's TokenReview. The baseline is `openssl speed -seconds 3
# ecdsap256`, measured in the same run. For every run it prints the client's line, with the CPU
# time weftd and kubelite spent during it (from /proc) per request. Method and recorded
# figures: BENCHMARKS.md ("ca") and docs/ca.md ("Load").
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
KUBECTL=${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}
N_SA=${N_SA:-100}
N_TOKENS=${N_TOKENS:-1000}
BURST=${BURST:-1000}
LOAD=$BUILD/bench/ca_load
WEFTD=${WEFTD:-$BUILD/bin/weftd}
for bin in "$BUILD/bin/kubelite" "$WEFTD" "$LOAD"; do
    [ -x "$bin" ] || { echo "ca_load.sh: $bin is not built (run make first)" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "ca_load.sh: needs python3" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ca-load.XXXXXX")
KL_PID= WD_PID=
cleanup() {
    [ -n "$WD_PID" ] && kill "$WD_PID" 2>/dev/null
    [ -n "$KL_PID" ] && kill "$KL_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

"$BUILD/bin/kubelite" --listen 127.0.0.1:0 --kubeconfig-out "$TMP/kubeconfig" \
    --openapi-dir tests/kubelite/openapi --data-dir "$TMP/data" --log-level warn >"$TMP/kubelite.log" 2>&1 &
KL_PID=$!
for _ in $(seq 100); do [ -s "$TMP/kubeconfig" ] && break; sleep 0.1; done
[ -s "$TMP/kubeconfig" ] || { echo "kubelite did not start" >&2; tail "$TMP/kubelite.log" >&2; exit 1; }
export KUBECONFIG=$TMP/kubeconfig
KL_ADDR=$(sed -n 's|^ *server: https://||p' "$KUBECONFIG")
sed -n 's/^ *certificate-authority-data: //p' "$KUBECONFIG" | base64 -d >"$TMP/kube-ca.pem"
sed -n 's/^ *token: //p' "$KUBECONFIG" >"$TMP/admin.token"

"$KUBECTL" create namespace weft-system >/dev/null || exit 1
"$KUBECTL" create namespace load >/dev/null || exit 1
CERTS_PORT=$(free_port)
ADMIN_PORT=$(free_port)
"$WEFTD" --kubeconfig "$KUBECONFIG" --namespace weft-system --identity load \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --certs-listen "127.0.0.1:$CERTS_PORT" --stream-listen "127.0.0.1:$(free_port)" \
    --webhook-listen "127.0.0.1:$(free_port)" --log-level warn >"$TMP/weftd.log" 2>&1 &
WD_PID=$!
for _ in $(seq 200); do
    curl -s "http://127.0.0.1:$ADMIN_PORT/readyz" | grep -q '^ca loaded: yes' && break
    sleep 0.1
done
curl -s "http://127.0.0.1:$ADMIN_PORT/readyz" | grep -q '^ca loaded: yes' ||
    { echo "weftd's CA did not load" >&2; tail "$TMP/weftd.log" >&2; exit 1; }
"$KUBECTL" get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$TMP/bundle.pem"
# the serving certificate is issued on a worker after the CA loads
for _ in $(seq 100); do
    curl -s --cacert "$TMP/bundle.pem" -X POST "https://127.0.0.1:$CERTS_PORT/v1/certificates" |
        grep -q Unauthenticated && break
    sleep 0.1
done

# ServiceAccounts (one apply) and tokens (TokenRequest, one keep-alive connection)
python3 - "$N_SA" >"$TMP/sas.json" <<'EOF'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa-%d" % i, "namespace": "load"}}
    for i in range(n)]}))
EOF
"$KUBECTL" apply -f "$TMP/sas.json" >/dev/null || exit 1
python3 - "$KL_ADDR" "$TMP/kube-ca.pem" "$TMP/admin.token" "$N_SA" "$N_TOKENS" >"$TMP/tokens" <<'EOF'
import http.client, json, ssl, sys
addr, cafile, tokfile, n_sa, n_tok = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
host, port = addr.rsplit(":", 1)
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False  # verified against the CA; kubelite's certificate names 127.0.0.1
conn = http.client.HTTPSConnection(host, int(port), context=ctx)
admin = open(tokfile).read().strip()
body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"audiences": ["weft"], "expirationSeconds": 3600}})
for i in range(n_tok):
    conn.request("POST", "/api/v1/namespaces/load/serviceaccounts/sa-%d/token" % (i % n_sa), body,
                 {"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 201 and r.status != 200:
        sys.exit("TokenRequest: %d %s" % (r.status, data[:200]))
    print(json.loads(data)["status"]["token"])
EOF
[ "$(wc -l <"$TMP/tokens")" -eq "$N_TOKENS" ] || { echo "token creation failed" >&2; exit 1; }

metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v s="$1" '$1 == s {print $2}'; }

# run LABEL ca_load-options...: one measurement; the client reports weftd's and kubelite's CPU
# time per request, and weftd's own mean issuance time (arrival to answer) comes from /metrics
run() {
    local label=$1 n0 s0 n1 s1 line
    shift
    n0=$(metric weft_certificates_issued_total)
    s0=$(metric weft_certificate_issue_seconds_total)
    line=$("$LOAD" --cpu "weftd=$WD_PID" --cpu "kubelite=$KL_PID" "$@")
    n1=$(metric weft_certificates_issued_total)
    s1=$(metric weft_certificate_issue_seconds_total)
    printf '%s\n  %s' "$label" "$line"
    awk -v i0="${n0:-0}" -v i1="${n1:-0}" -v t0="${s0:-0}" -v t1="${s1:-0}" 'BEGIN {
        if (i1 > i0) printf " weftd_mean_ms=%.2f", (t1 - t0) / (i1 - i0) * 1e3
        printf "\n" }'
}

echo "== ca load ($(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "ServiceAccounts: $N_SA, distinct tokens: $N_TOKENS, CSRs: 100 distinct P-256 keys"
openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256/ {printf "baseline: openssl speed ecdsap256: %s signs/s, %s verifies/s (per core)\n", $(NF-1), $NF}'
C=(--addr "127.0.0.1:$CERTS_PORT" --cacert "$TMP/bundle.pem" --tokens "$TMP/tokens")
T=(--addr "$KL_ADDR" --cacert "$TMP/kube-ca.pem" --tokens "$TMP/tokens" --admin-token "$TMP/admin.token" --kind tokenreview)
run "warm-up (100 issued)" "${C[@]}" --requests 100 --concurrency 10 --keepalive >/dev/null
run "TLS handshakes only, burst" "${C[@]}" --kind handshake --concurrency "$BURST"
run "TokenReview at kubelite, burst" "${T[@]}" --requests "$BURST"
run "TokenReview at kubelite, ka" "${T[@]}" --requests "$BURST" --keepalive
run "issue, new conns, burst" "${C[@]}" --requests "$BURST"
run "issue, keep-alive, burst" "${C[@]}" --requests "$BURST" --keepalive
for c in 1 4 16 64; do
    run "issue, keep-alive, concurrency $c" "${C[@]}" --requests 2000 --concurrency "$c" --keepalive
done
