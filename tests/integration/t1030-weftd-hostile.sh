#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# t1030-weftd-hostile.sh - hostile in-cluster clients cannot take weftd down (issue 12).
#
# weftd runs against kubelite with a small request deadline (--request-timeout-ms 3000) and a
# per-address cap of 40; the attacker (tests/integration/hostile.py) connects from 127.0.0.2,
# kubelite's webhook calls and the test's own requests come from 127.0.0.1. Nothing is timed
# from outside: the attacker reports when each of its connections was closed and what it had
# sent, and weftd's own gauges and counters say why.
#
#   slow-body    20 TLS connections trickle a 1 MiB review body one byte every 200 ms: each is
#                closed at the deadline (not before: closed_after >= 3 s, and the trickle kept
#                going past the point where a silence timeout would have been reset); /readyz and
#                real reviews (kubectl run in a meshed namespace) are answered meanwhile
#   no-hello     20 connections that never start TLS are closed at the handshake deadline
#   per-address  45 TLS connections from one address: 40 held, 5 answered 503, and reviews from
#                the API server's address still go through while the 40 are held
#   buffered     request bytes held over all connections stay under the cap (4 MiB here): the
#                oldest partial requests are closed to make room (or get 503); reviews work after
#   tls-policy   a client offering only CBC suites (or TLS 1.1) is refused at the handshake on the
#                webhook port, and the refused handshakes do not linger; ECDHE with AEAD works
#   expect       Expect: 100-continue is answered 100 (body accepted) or 413 at once
#   fd-caps      weftd at 256 descriptors and default caps: 400 connections to the certificate
#                port are held to the caps (scaled to the descriptor limit: the newest push out
#                the oldest silent ones, or are refused) before descriptors run out, and /readyz and reviews are answered during the attack
#   emfile       weftd at 256 descriptors with caps above that (--max-connections 1000): accept
#                fails with EMFILE, and weftd pauses accepting instead of spinning (its CPU time
#                over the attack, from /proc, stays far below the attack's length), warns at most
#                once per 10 s, and serves again once descriptors are free
#   debug-auth   the admin port's /debug/ needs a bearer token the API server authenticates
#                (TokenReview) and authorizes for get on the non-resource URL /debug/config
#                (SubjectAccessReview): none or a bad one 401, a ServiceAccount without the grant
#                403, with a ClusterRole granting it 200; /metrics, /healthz, /readyz stay open
#   nothing-lost every pod created during the attacks exists and was injected
. "$(dirname "$0")/lib.sh"

K="$KUBECTL_DIR/kubectl.1.33"
WEFTD=${WEFTD:-$BUILD/bin/weftd}
case $WEFTD in
/*) ;;
*) WEFTD=$KL_REPO/$WEFTD ;;
esac
HOSTILE="python3 $KL_REPO/tests/integration/hostile.py"
NS=meshed
DEADLINE_MS=3000
WD_PID=
WD_LOG=
WP=
CP=
AP=
PODS=()

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wd_start [NOFILE] [weftd options...]: weftd with its descriptor limit at NOFILE ("-": as is).
wd_start() {
    local nofile=$1
    shift
    WP=$(free_port)
    CP=$(free_port)
    AP=$(free_port)
    WD_LOG=$KL_TMP/weftd-$WP.log
    (
        [ "$nofile" = - ] || ulimit -n "$nofile"
        exec "$WEFTD" --kubeconfig "$KUBECONFIG" --namespace weft-system --identity wd \
            --admin-listen "127.0.0.1:$AP" --certs-listen "127.0.0.1:$CP" --stream-listen "127.0.0.1:$(free_port)" \
            --webhook-listen "127.0.0.1:$WP" --webhook-url "https://127.0.0.1:$WP/inject" \
            --request-timeout-ms "$DEADLINE_MS" --max-connections-per-address 40 \
            --log-level debug "$@"
    ) >>"$WD_LOG" 2>&1 &
    WD_PID=$!
    daemon_track "$WD_PID" weftd
    wait_for 30 ready || { t_fail "weftd not ready: $(tail -5 "$WD_LOG")"; return 1; }
    # the API server (kubelite) sends reviews to this weftd's URL
    wait_for 20 registered || { t_fail "weft-injector not pointing at port $WP"; return 1; }
}

wd_stop() {
    bg_stop "$WD_PID"
}

ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$AP/readyz")" = 200 ]
}

registered() {
    [ "$("$K" get mutatingwebhookconfiguration weft-injector -o 'jsonpath={.webhooks[0].clientConfig.url}' 2>/dev/null)" = "https://127.0.0.1:$WP/inject" ]
}

metric() { # SERIES: one sample of /metrics, exactly as exposed
    curl -s --max-time 10 "http://127.0.0.1:$AP/metrics" | awk -v s="$1" '$1 == s { print $2; exit }'
}

# a real review: a pod created in the meshed namespace comes back injected
pod_injected() { # NAME
    PODS+=("$1")
    ok "pod $1" "$K" run -n "$NS" "$1" --image=weft/testapp --restart=Never || return
    okv "containers of $1" "$K" get pod -n "$NS" "$1" -o 'jsonpath={.spec.containers[*].name}' || return
    assert_eq "$OUT" "weft-proxy $1" "pod $1 injected" || return
}

# check_report FILE PYTHON-EXPR WHAT: the expression over the attacker's report (r) is true
check_report() {
    okv "$3" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2])
print("ok" if ok else "NOT: " + json.dumps(r)[:1500])
sys.exit(0 if ok else 1)' "$1" "$2" || return
}

attack() { # NAME hostile.py arguments...: start the attacker, wait until its connections are open
    local name=$1
    shift
    rm -f "$KL_TMP/$name.ready"
    $HOSTILE "$@" --ready "$KL_TMP/$name.ready" >"$KL_TMP/$name.json" 2>"$KL_TMP/$name.err" &
    ATTACKER=$!
    bg_track "$ATTACKER"
    wait_for 30 test -e "$KL_TMP/$name.ready" || { t_fail "attacker $name did not start: $(cat "$KL_TMP/$name.err")"; return 1; }
}

attack_wait() {
    wait "$ATTACKER"
}

case_start() {
    kl_start || { t_fail "kubelite did not start"; return 1; }
    ok "CRDs" "$K" apply -f "$KL_REPO/crds/" -f "$KL_REPO/crds/optional/" || return
    ok "established" "$K" wait --for=condition=Established --timeout=20s crd --all || return
    ok "weft-system" "$K" create namespace weft-system || return
    ok "meshed namespace" "$K" create namespace "$NS" || return
    ok "label" "$K" label namespace "$NS" weft.dev/inject=enabled || return
    wd_start - --max-buffered-request-bytes 4194304 || return
    pod_injected before || return
}

case_slow_body() {
    local kept
    attack slow "slow-body" --tls --port "$WP" -n 20 --length 1048576 --prefix 65536 --interval 0.2 || return
    # while the attack is on: health and real reviews
    kept=$(metric 'weft_http_connections{listener="webhook"}')
    assert_gt "${kept:-0}" 19 "the 20 slow connections are held" || return
    ready || { t_fail "/readyz not answered 200 during the attack"; return 1; }
    pod_injected during-slow || return
    kept=$(metric 'weft_http_connections{listener="webhook"}')
    assert_gt "${kept:-0}" 19 "still held after the review (the review ran during the attack)" || return
    attack_wait
    check_report "$KL_TMP/slow.json" 'len(r) == 20 and all(c["closed_after"] is not None for c in r)' \
        "every slow connection was closed" || return
    check_report "$KL_TMP/slow.json" "all(c['closed_after'] >= $DEADLINE_MS / 1000 for c in r)" \
        "none before the deadline" || return
    # a silence timeout would have been reset by every byte: they kept sending and were still cut
    check_report "$KL_TMP/slow.json" 'all(c["trickled"] >= 5 and c["sent"] < 1048576 for c in r)' \
        "each kept trickling (a byte every 200 ms) and never finished" || return
    check_report "$KL_TMP/slow.json" 'all(c["status"] in ("", "HTTP/1.1 408 Request Timeout") for c in r)' \
        "closed with 408 (when the answer got through)" || return
    assert_eq "$(metric 'weft_http_timeouts_total{listener="webhook",phase="request"}')" 20 "20 request deadlines counted" || return
    assert_eq "$(metric 'weft_http_buffered_request_bytes{listener="webhook"}')" 0 "nothing buffered after" || return
}

case_no_hello() {
    attack nohello no-hello --port "$CP" -n 20 || return
    ready || { t_fail "/readyz not answered 200 during the attack"; return 1; }
    attack_wait
    check_report "$KL_TMP/nohello.json" "len(r) == 20 and all(c['closed_after'] is not None and c['closed_after'] >= $DEADLINE_MS / 1000 for c in r)" \
        "closed at the handshake deadline, not before" || return
    assert_eq "$(metric 'weft_http_timeouts_total{listener="certs",phase="handshake"}')" 20 "20 handshake deadlines counted" || return
    assert_eq "$(metric 'weft_http_tls_handshakes{listener="certs"}')" 0 "no handshake left" || return
}

case_per_address() {
    local held
    attack idle idle --tls --port "$WP" -n 45 --hold 2.5 || return
    pod_injected during-caps || return
    held=$(metric 'weft_http_connections{listener="webhook"}')
    assert_gt "${held:-0}" 39 "the 40 allowed connections were held during the review" || return
    attack_wait
    check_report "$KL_TMP/idle.json" 'sum(c["status"].startswith("HTTP/1.1 503") for c in r) == 5' \
        "5 connections over the per-address cap answered 503" || return
    assert_eq "$(metric 'weft_http_shed_total{listener="webhook",reason="per_address"}')" 5 "5 shed counted" || return
}

case_buffered() {
    local held freed
    attack buf buffered --tls --port "$WP" -n 8 --length 1048576 --prefix 700000 || return
    held=$(metric 'weft_http_buffered_request_bytes{listener="webhook"}')
    assert_gt 4194305 "${held:-0}" "buffered request bytes stay under the cap" || return
    assert_gt "${held:-0}" 2000000 "the attack's bytes are held" || return
    attack_wait
    # the oldest partial requests gave way (closed) to the newer ones, or, the oldest, got 503
    check_report "$KL_TMP/buf.json" 'sum(c["closed_after"] is not None and c["closed_after"] < 2.5 for c in r) >= 1' \
        "connections over the cap closed before the deadline" || return
    freed=$(($(metric 'weft_http_evicted_total{listener="webhook",reason="buffered_bytes"}') + $(metric 'weft_http_shed_total{listener="webhook",reason="buffered_bytes"}')))
    assert_gt "$freed" 0 "the cap enforced (evicted or 503): $freed" || return
    assert_eq "$(metric 'weft_http_buffered_request_bytes{listener="webhook"}')" 0 "nothing buffered after the deadline" || return
    pod_injected after-buffered || return
}

no_handshakes() {
    [ "$(metric 'weft_http_tls_handshakes{listener="webhook"}')" = 0 ]
}

case_tls_policy() {
    local c
    for c in ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:AES128-SHA:AES256-SHA256; do
        fails "TLS 1.2 with CBC suites only" sh -c "openssl s_client -connect 127.0.0.1:$WP -tls1_2 -cipher $c </dev/null" || return
    done
    fails "TLS 1.1" sh -c "openssl s_client -connect 127.0.0.1:$WP -tls1_1 </dev/null" || return
    okv "TLS 1.2 AEAD" sh -c "openssl s_client -connect 127.0.0.1:$WP -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256 </dev/null 2>&1" || return
    assert_contains "$OUT" "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" "AEAD suite negotiated" || return
    wait_for 5 no_handshakes ||
        { t_fail "refused handshakes linger: $(metric 'weft_http_tls_handshakes{listener="webhook"}')"; return 1; }
}

case_expect() {
    "$K" get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$KL_TMP/bundle.pem"
    local rev='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","operation":"UPDATE","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"x","object":{}}}'
    okv "review with Expect" curl -sS -v --stderr - --cacert "$KL_TMP/bundle.pem" -H 'Content-Type: application/json' \
        -H 'Expect: 100-continue' -d "$rev" "https://127.0.0.1:$WP/inject" || return
    assert_contains "$OUT" "< HTTP/1.1 100 Continue" "100 Continue" || return
    assert_contains "$OUT" '"allowed":true' "then answered" || return
    head -c 5000000 /dev/zero | tr '\0' x >"$KL_TMP/big.json"
    okv "5 MB review with Expect" curl -sS -v --stderr - --cacert "$KL_TMP/bundle.pem" -H 'Content-Type: application/json' \
        -H 'Expect: 100-continue' --data-binary "@$KL_TMP/big.json" "https://127.0.0.1:$WP/inject" || return
    assert_contains "$OUT" "< HTTP/1.1 413" "413 before the body" || return
    assert_not_contains "$OUT" "100 Continue" "no 100 for a body over the limit" || return
    assert_gt "$(metric 'weft_http_continues_total{listener="webhook"}')" 0 "100 counted" || return
}

cpu_ticks() { # PID: utime + stime
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

case_fd_caps() {
    local cap shed held
    wd_stop
    wd_start 256 --max-connections-per-address 1000 || return
    cap=$(grep -o 'what=certs address=[^ ]* port=[0-9]* max_body=[0-9]* max_connections=[0-9]*' "$WD_LOG" | tail -1 | sed 's/.*max_connections=//')
    assert_gt 200 "${cap:-999}" "the certificate port's cap is scaled to 256 descriptors" || return
    attack fill fill --port "$CP" -n 400 --hold 2.5 || return
    ready || { t_fail "/readyz not answered 200 during the attack"; return 1; }
    pod_injected during-fd || return
    held=$(metric 'weft_http_connections{listener="certs"}')
    assert_gt $((cap + 64 + cap / 16 + 1)) "${held:-99999}" "certs connections within the cap and the 503s in progress ($held)" || return
    attack_wait
    shed=$(($(metric 'weft_http_shed_total{listener="certs",reason="connections"}') + $(metric 'weft_http_shed_total{listener="certs",reason="overflow"}') + $(metric 'weft_http_evicted_total{listener="certs",reason="connections"}')))
    assert_gt "$shed" 0 "connections over the cap refused or pushed out ($shed)" || return
    assert_eq "$(metric 'weft_http_accept_errors_total{listener="certs"}')" 0 "descriptors never ran out" || return
}

case_emfile() {
    local before after hz secs warnings
    wd_stop
    wd_start 256 --max-connections 1000 --max-connections-per-address 1000 || return
    hz=$(getconf CLK_TCK)
    before=$(cpu_ticks "$WD_PID")
    secs=4
    attack emfile fill --port "$CP" -n 400 --hold "$secs" || return
    attack_wait
    after=$(cpu_ticks "$WD_PID")
    echo "    weftd CPU over the ${secs} s attack: $(((after - before) * 1000 / hz)) ms"
    # a spinning loop would use the whole attack's length
    assert_gt "$((hz * secs / 4))" "$((after - before))" "weftd did not spin (CPU < a quarter of the attack)" || return
    wait_for 10 ready || { t_fail "/readyz not answered 200 after the attack"; return 1; }
    assert_gt "$(metric 'weft_http_accept_errors_total{listener="certs"}')" 0 "accept errors counted" || return
    warnings=$(grep -c 'cannot accept connections, pausing' "$WD_LOG")
    assert_gt 4 "$warnings" "warned at most once per 10 s per listener ($warnings)" || return
    assert_gt "$warnings" 0 "warned" || return
    pod_injected after-emfile || return
}

debug_get() { # TOKEN PATH: CODE and BODY
    BODY=$(curl -s --max-time 10 ${1:+-H "Authorization: Bearer $1"} -w '\n%{http_code}' \
        "http://127.0.0.1:$AP$2")
    CODE=${BODY##*$'\n'}
    BODY=${BODY%$'\n'*}
}

case_debug_auth() {
    local tok
    debug_get "" /debug/config/$NS/before
    assert_eq "$CODE" 401 "no token: $BODY" || return
    assert_contains "$BODY" "Authorization: Bearer" "the 401 says what is needed" || return
    debug_get 'not a token!' /debug/config/$NS/before
    assert_eq "$CODE" 401 "malformed token: $BODY" || return
    debug_get "eyJhbGciOiJub25lIn0.e30.forged" /debug/config/$NS/before
    assert_eq "$CODE" 401 "token the API server does not know: $BODY" || return
    ok "ServiceAccount" "$K" create serviceaccount -n "$NS" peeker || return
    okv "its token" "$K" create token peeker -n "$NS" || return
    tok=$OUT
    debug_get "$tok" /debug/config/$NS/before
    assert_eq "$CODE" 403 "no grant: $BODY" || return
    assert_contains "$BODY" "system:serviceaccount:$NS:peeker" "403 names the user" || return
    assert_contains "$BODY" 'cannot get path \"/debug/config\"' "403 names the path" || return
    ok "ClusterRole" "$K" create clusterrole weft-debug --verb=get --non-resource-url=/debug/config || return
    ok "binding" "$K" create clusterrolebinding peeker-debug --clusterrole=weft-debug --serviceaccount="$NS:peeker" || return
    debug_get "$tok" /debug/config/$NS/before
    assert_eq "$CODE" 200 "granted: $BODY" || return
    echo "    ${BODY:0:200}" | tr -d '\n'; echo
    assert_contains "$BODY" "spiffe://cluster.local/ns/$NS/sa/default" "the pod's document" || return
    debug_get "$tok" /debug/other
    assert_eq "$CODE" 403 "the grant is for /debug/config only: $BODY" || return
    for p in /metrics /healthz /readyz; do
        debug_get "" "$p"
        assert_eq "$CODE" 200 "$p open" || return
    done
    assert_gt "$(metric 'weft_debug_requests_total{result="forbidden"}')" 1 "forbidden counted" || return
    assert_gt "$(metric 'weft_debug_requests_total{result="allowed"}')" 0 "allowed counted" || return
}

case_nothing_lost() {
    local p
    for p in "${PODS[@]}"; do
        okv "pod $p" "$K" get pod -n "$NS" "$p" -o 'jsonpath={.spec.containers[*].name}' || return
        assert_eq "$OUT" "weft-proxy $p" "pod $p still there, injected" || return
    done
}

t_run start case_start
[ "$T_FAILED" -eq 0 ] || t_summary
t_run slow-body case_slow_body
t_run no-hello case_no_hello
t_run per-address case_per_address
t_run buffered case_buffered
t_run tls-policy case_tls_policy
t_run expect case_expect
t_run fd-caps case_fd_caps
t_run emfile case_emfile
t_run debug-auth case_debug_auth
t_run nothing-lost case_nothing_lost
t_summary
