#!/usr/bin/env bash
# Two sidecars on the wire: pods A (10.250.30.1) and B (10.250.30.2) as network namespaces joined
# by a veth, each with weft-init's rules and HAProxy (as UID 1337) running the configuration the
# renderer makes from a hand-written document, with certificates issued by Weft's CA
# (ca_issue(), through wfe-tool). B's app is testapp on 8080 (and one bound to 127.0.0.1:9090);
# Service "b" is 10.96.30.2:80 -> B:8080 and :90 -> B:9090.
#
# Observed: A's app -> A's outbound -> mTLS -> B's inbound -> B's app: 200; a capture on B's
# veth holds TLS records and no plaintext HTTP (with a positive control: a plaintext request
# on the same veth is seen); a client without a certificate is refused; peers B does not allow
# get 403 with x-weft-denied; B calling its own Service goes through its inbound listener; an
# app bound to loopback is not reachable; direct connections to the listeners do not loop; a
# peer holding silent connections is capped at 512 (8 on the metrics port) while another peer
# is served.
. "$(dirname "$0")/lib.sh"

e2e_require_root || t_summary

WEFT_INIT=$KL_REPO/$BUILD/bin/weft-init
WFE_TOOL=$KL_REPO/$BUILD/tests/wfe-tool
TESTAPP=$KL_REPO/$BUILD/bin/testapp
A=10.250.30.1 B=10.250.30.2 SVC=10.96.30.2
NA=wfe-wa NB=wfe-wb
D=$KL_TMP/wire

t_begin "tools"
for tool in haproxy tcpdump curl; do
    command -v $tool >/dev/null || { t_skip "$tool is not installed"; t_summary; }
done
have_tool "$WFE_TOOL" && have_tool "$TESTAPP" && have_tool "$WEFT_INIT" || t_summary
t_pass

# doc POD IP OUTBOUND-JSON INBOUND-JSON: a configuration document (docs/proxy-config.md)
doc() {
    cat <<EOF
{"schemaVersion": 1,
 "proxy": {"namespace": "default", "pod": "$1", "ip": "$2"},
 "identity": {"spiffeID": "spiffe://cluster.local/ns/default/sa/$1", "serviceAccount": "$1",
              "trustDomain": "cluster.local",
              "subject": "/O=cluster.local/OU=default/CN=$1.default.cluster.local"},
 "trustBundle": {"configMap": "weft-root-ca", "namespace": "default", "key": "ca.crt"},
 "mode": "all-authenticated",
 "inbound": $4,
 "outbound": $3}
EOF
}

SVC_B='[{"service": "b", "namespace": "default", "clusterIP": "'$SVC'",
  "ports": [
   {"port": 80, "name": "http", "protocol": "http",
    "routes": [{"backends": [{"service": "b", "requestedPpm": 1000000, "achievedPpm": 1000000,
      "endpoints": [{"ip": "'$B'", "port": 8080, "identity": "spiffe://cluster.local/ns/default/sa/b",
                     "ready": true, "weight": 1}]}]}]},
   {"port": 90, "name": "http-local", "protocol": "http",
    "routes": [{"backends": [{"service": "b", "requestedPpm": 1000000, "achievedPpm": 1000000,
      "endpoints": [{"ip": "'$B'", "port": 9090, "identity": "spiffe://cluster.local/ns/default/sa/b",
                     "ready": true, "weight": 1}]}]}]}]}]'
ALLOW='{"policy": "b-allow", "peers": {"ids": ["spiffe://cluster.local/ns/default/sa/a",
        "spiffe://cluster.local/ns/default/sa/b"], "prefixes": []}}'
DENY='{"policy": "deny-intruder", "peers": {"ids": ["spiffe://cluster.local/ns/default/sa/intruder"], "prefixes": []}}'
IN_B='[{"port": 8080, "protocol": "http", "services": ["b"], "default": "deny",
        "deny": ['$DENY'], "audit": [], "allow": ['$ALLOW']},
       {"port": 9090, "protocol": "http", "services": ["b"], "default": "deny",
        "deny": [], "audit": [], "allow": ['$ALLOW']}]'

# sidecar NS POD IP: weft-init, certificate, rendered configuration, HAProxy as UID 1337
sidecar() {
    local ns=$1 pod=$2 ip=$3 run=$D/$2 args=()
    mkdir -p "$run"
    ok "$pod: certificate" "$WFE_TOOL" leaf "$D" cluster.local default "$pod" "$run/pod.pem" || return 1
    cp "$D/root.crt" "$run/bundle.pem"
    # every request in the access log: the checks below read the peer's subject from it
    ok "$pod: render" "$WFE_TOOL" render "$run/doc.json" "$run" "$run/pod.pem" "$run/bundle.pem" \
        --access-log-all || return 1
    chown -R 1337:1337 "$run"
    [ "$pod" = b ] && args=(--exclude-inbound-ports 7070,15020,15090)
    ok "$pod: weft-init" ip netns exec "$ns" "$WEFT_INIT" "${args[@]}" || return 1
    e2e_bg "$ns" setpriv --reuid 1337 --regid 1337 --clear-groups \
        haproxy -W -S "$run/master.sock" -f "$run/haproxy.cfg"
    eval "HAPROXY_PID_$pod=$E2E_BG_PID HAPROXY_LOG_$pod=$E2E_BG_LOG"
    wait_for 10 sh -c "ip netns exec $ns ss -ltn | grep -q ':15006 '" || {
        t_fail "$pod: HAProxy did not start: $(tail -5 "$E2E_BG_LOG")"
        return 1
    }
}

t_begin "pods, certificates from Weft's CA, weft-init, HAProxy with rendered configurations"
mkdir -p "$D"
chmod 0755 "$KL_TMP" "$D" # HAProxy and the UID-1337 clients read their files here
e2e_netns $NA && e2e_netns $NB && e2e_link $NA $A/24 $NB $B/24 &&
    ip -n $NA route add default dev "$E2E_LINK_A" && ip -n $NB route add default dev "$E2E_LINK_B" ||
    t_fail "namespaces"
VETH_B=$E2E_LINK_B
if ! t_failed; then
    ok "root" "$WFE_TOOL" ca "$D" &&
        ok "intruder certificate" "$WFE_TOOL" leaf "$D" cluster.local default intruder "$D/intruder.pem" &&
        ok "other certificate" "$WFE_TOOL" leaf "$D" cluster.local other c "$D/other.pem" &&
        mkdir -p "$D/a" "$D/b" &&
        doc a $A "$SVC_B" '[]' >"$D/a/doc.json" && doc b $B "$SVC_B" "$IN_B" >"$D/b/doc.json" &&
        sidecar $NA a $A && sidecar $NB b $B &&
        e2e_bg $NB env PORT=8080 POD_NAME=b "$TESTAPP" &&
        e2e_bg $NB env PORT=7070 POD_NAME=b-plain "$TESTAPP" &&
        wait_for 10 sh -c "ip netns exec $NB ss -ltn | grep -q ':8080 '" &&
        e2e_serve $NB local@127.0.0.1:9090 && t_pass
fi
[ "$T_FAILED" -eq 0 ] || t_summary # nothing below can work without the pods

t_begin "A's app -> A's outbound -> mTLS -> B's inbound -> B's app: 200, and only TLS on the wire"
e2e_bg $NB tcpdump -Z root --immediate-mode -i "$VETH_B" -U -s 0 -w "$D/cap.pcap" tcp
CAP_PID=$E2E_BG_PID
wait_for 10 grep -q "listening on" "$E2E_BG_LOG"
okv "meshed request" ip netns exec $NA "$TESTAPP" get "http://$SVC:80/meshed-secret" -n 3 &&
    assert_eq "$OUT" $'200 b\n200 b\n200 b' "answers" &&
    # positive control: plaintext on the same veth (UID 1337 bypasses A's capture; B excludes 7070)
    okv "plaintext control" ip netns exec $NA "${E2E_1337[@]}" "$TESTAPP" get "http://$B:7070/plaintext-control" &&
    assert_eq "$OUT" "200 b-plain" "control answer"
sleep 0.5
bg_stop "$CAP_PID"
if ! t_failed; then
    okv "read capture" tcpdump -r "$D/cap.pcap" -nn -A 2>/dev/null
    CAP=$OUT
    assert_contains "$CAP" "GET /plaintext-control" "the control's plaintext is seen on the veth" &&
        assert_contains "$CAP" "HTTP/1.1 200" "the control's plaintext answer is seen" &&
        assert_not_contains "$CAP" "meshed-secret" "the meshed request's path in clear" &&
        okv "meshed connection" tcpdump -r "$D/cap.pcap" -nn -A "tcp port 8080" &&
        assert_match "$OUT" "> $B.8080: Flags" "the meshed connection is in the capture" &&
        assert_not_contains "$OUT" "HTTP/1." "plaintext HTTP on the meshed connection"
    # TLS records on the meshed connection: handshake (0x16 0x03) then application data (0x17 0x03)
    okv "tls records" tcpdump -r "$D/cap.pcap" -nn -x "tcp port 8080 and (tcp[((tcp[12] & 0xf0) >> 2)] = 0x17) and (tcp[((tcp[12] & 0xf0) >> 2) + 1] = 0x03)" 2>/dev/null
    n_app=$(printf '%s\n' "$OUT" | grep -c '^[0-9]')
    okv "tls handshakes" tcpdump -r "$D/cap.pcap" -nn "tcp port 8080 and (tcp[((tcp[12] & 0xf0) >> 2)] = 0x16)" 2>/dev/null
    n_hs=$(printf '%s\n' "$OUT" | grep -c .)
    echo "    capture: $(printf '%s\n' "$CAP" | grep -c ' IP ') packets, $n_hs TLS handshake records, $n_app TLS application-data packets on port 8080"
    assert_gt "$n_hs" 0 "TLS handshake records" && assert_gt "$n_app" 1 "TLS application data" && t_pass
fi

t_begin "B's inbound saw A's certificate (the peer's subject in its log)"
wait_for 5 grep -q "OU=default/CN=a.default.cluster.local port=8080 in_8080 200" "$HAPROXY_LOG_b" &&
    t_pass || t_fail "no log line with A's subject: $(tail -3 "$HAPROXY_LOG_b")"

t_begin "a client without a certificate is refused"
runo ip netns exec $NA "${E2E_1337[@]}" curl -sk --max-time 5 -o /dev/null -w '%{http_code}' "https://$B:8080/"
assert_ne "$RC" 0 "curl without a certificate" && assert_eq "$OUT" "000" "HTTP status" &&
    runo ip netns exec $NA "${E2E_1337[@]}" "$TESTAPP" get "http://$B:8080/" &&
    assert_match "$OUT" '^ERR' "plaintext to B:8080 (redirected into the TLS listener)" && t_pass

t_begin "a denied identity gets 403 with x-weft-denied"
chmod 0644 "$D/intruder.pem" "$D/other.pem"
runo ip netns exec $NA "${E2E_1337[@]}" curl -sk --max-time 5 --cert "$D/intruder.pem" -D - "https://$B:8080/"
assert_eq "$RC" 0 "curl" &&
    assert_match "$OUT" '^HTTP/1.1 403' "status" &&
    assert_match "$OUT" '^x-weft-denied: default/deny-intruder' "header names the policy" &&
    assert_match "$OUT" '^denied by the mesh: default/deny-intruder$' "one-line body" &&
    runo ip netns exec $NA "${E2E_1337[@]}" curl -sk --max-time 5 --cert "$D/other.pem" -D - "https://$B:8080/" &&
    assert_match "$OUT" '^HTTP/1.1 403' "status (not allowed)" &&
    assert_match "$OUT" '^x-weft-denied: default/default' "header names the default" &&
    runo ip netns exec $NA "${E2E_1337[@]}" curl -sk --max-time 5 --cert "$D/a/pod.pem" "https://$B:8080/" &&
    assert_eq "$OUT" "b" "A's own certificate is allowed" && t_pass

t_begin "B calling its own Service goes through its inbound listener"
okv "self-call" ip netns exec $NB "$TESTAPP" get "http://$SVC:80/self" &&
    assert_eq "$OUT" "200 b" "answer" &&
    wait_for 5 grep -q "OU=default/CN=b.default.cluster.local port=8080 in_8080 200" "$HAPROXY_LOG_b" &&
    t_pass || t_fail "no inbound log line with B's own subject: $(tail -3 "$HAPROXY_LOG_b")"

t_begin "an app bound to 127.0.0.1 is not reachable from another pod"
runo ip netns exec $NA "$TESTAPP" get "http://$SVC:90/" -t 20000
assert_match "$OUT" '^503 ' "through the mesh to B:9090 (the app listens on 127.0.0.1 only)" &&
    OUT=$(ip netns exec $NB timeout 5 "$E2E_PY" "$E2E_DIR/origdst.py" connect 127.0.0.1 9090) &&
    assert_match "$OUT" '^local ' "the app itself answers on loopback" && t_pass

t_begin "direct connections to the listeners do not loop"
for target in "127.0.0.1 15001" "$A 15001" "$A 15006"; do
    # shellcheck disable=SC2086
    runo ip netns exec $NA timeout 5 "$E2E_PY" "$E2E_DIR/origdst.py" connect $target --timeout 3
    assert_match "$OUT" '^ERR' "A's app -> $target is closed, not forwarded" || break
done
if ! t_failed; then
    runo ip netns exec $NA "${E2E_1337[@]}" timeout 5 "$E2E_PY" "$E2E_DIR/origdst.py" connect $B 15001 --timeout 3
    assert_match "$OUT" '^ERR' "A -> B:15001 (lands on B's TLS listener)" &&
        kill -0 "$HAPROXY_PID_a" && kill -0 "$HAPROXY_PID_b" &&
        okv "still serving" ip netns exec $NA "$TESTAPP" get "http://$SVC:80/after" &&
        assert_eq "$OUT" "200 b" "answer after the direct connections" && t_pass
fi

# hold_start NAME PORT N: A as a hostile peer (UID 1337: past A's capture, straight to B) opens
# N connections to B:PORT and never sends a byte, until hold_stop; HOLD_OUT has conn.py's
# "open K of N" lines, the first one second after connecting
hold_start() {
    HOLD_OUT=$D/$1.out
    mkfifo "$D/$1.in"
    ip netns exec $NA "${E2E_1337[@]}" "$E2E_PY" "$E2E_DIR/conn.py" hold $B "$2" "$3" 60 \
        <"$D/$1.in" >"$HOLD_OUT" 2>&1 &
    HOLD_PID=$!
    exec 7>"$D/$1.in"
    wait_for 20 grep -q '^open' "$HOLD_OUT" || t_fail "the hostile peer: $(cat "$HOLD_OUT")"
}
hold_stop() {
    exec 7>&-
    wait "$HOLD_PID"
}

t_begin "a peer holding 600 silent connections keeps 512, the rest closed at once; others served"
# HAProxy 2.6 bounds a TLS handshake only by timeout client (an hour): the inbound listener counts
# connections per peer address before the handshake (agent/render.c, inbound_bounds)
if hold_start hold 8080 600; then
    kept=$(sed -n 's/^open \([0-9]*\) of 600$/\1/p' "$HOLD_OUT" | head -1)
    # A's own sidecar may hold pooled connections to B from the cases above: they count too
    n_ab=$(ip netns exec $NB ss -Htn state established "( sport = :15006 )" dst $A | wc -l)
    echo "    the hostile peer kept $kept of 600; connections from A at B's inbound: $n_ab"
    assert_match "$kept" '^[0-9]+$' "connections kept: $(cat "$HOLD_OUT")" &&
        assert_gt "$kept" 479 "connections kept (512 less A's pooled ones)" &&
        assert_gt 513 "$kept" "connections kept (at most 512)" &&
        assert_gt 513 "$n_ab" "connections from A's address at B's inbound" &&
        okv "another peer (B's self-call)" ip netns exec $NB "$TESTAPP" get "http://$SVC:80/during-flood" &&
        assert_eq "$OUT" "200 b" "B's self-call while A is at its bound"
fi
hold_stop
if ! t_failed; then
    assert_match "$(tail -1 "$HOLD_OUT")" "^open $kept of 600$" "still held after the other calls" &&
        wait_for 10 sh -c "ip netns exec $NA $TESTAPP get http://$SVC:80/after-flood | grep -q '^200 b$'" &&
        t_pass || t_fail "A's meshed call after the hostile connections closed: $(ip netns exec $NA "$TESTAPP" get "http://$SVC:80/after-flood" 2>&1)"
fi

t_begin "the metrics port: a peer holding 20 connections keeps 8; a scrape from another peer works"
hold_start hold-metrics 15090 20 &&
    assert_eq "$(head -1 "$HOLD_OUT")" "open 8 of 20" "the hostile peer's connections to B:15090" &&
    runo ip netns exec $NB curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://$B:15090/metrics" &&
    assert_eq "$OUT" 200 "B's metrics scraped from B's address while A holds 8"
hold_stop
t_failed || t_pass

t_summary
