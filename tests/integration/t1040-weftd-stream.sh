#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# t1040-weftd-stream.sh - weftd's config stream against kubelite, with an agent-side client
# (tests/integration/streamclient.c: push/'s client library) holding a real workload certificate
# that weftd's CSR endpoint issued for the pod's bound token.
#
#   setup          CRDs, a meshed namespace, a TrafficSplit, pods a and b (same ServiceAccount),
#                  each with a certificate from POST /v1/certificates for its pod-bound token
#   document       the client receives pod a's document (equal to /debug/config, hash = SHA-256
#                  of its canonical JSON) and ACKs; /debug/proxies: synced with that hash; the
#                  weft_proxy_config_sync and weft_config_stream_* series
#   change         a kubectl patch of the TrafficSplit reaches the client as config 2; after a quiet
#                  period it went out at once (weftd's counters: immediate, nothing deferred)
#   burst          changes inside one debounce window (--stream-debounce-ms 3000) are deferred
#                  and coalesced: the counters move, the client gets one config for them
#   nack           a NACK shows on /debug/proxies (rejected, with its reason) and in the metrics;
#                  the next ACKed document makes it synced again, the NACK stays on record
#   other-pod      pod a's certificate asking for pod b's document (same ServiceAccount): refused
#                  (IdentityMismatch naming both pods); with pod a's uid too; a certificate of a
#                  token bound to no pod: refused; pod b recreated under its name, its old
#                  certificate (old uid): UnknownPod
#   no-cert        no client certificate, or one from another CA: the TLS handshake fails, no
#                  hello reaches weftd
#   debug-auth     /debug/proxies without a token: 401 (authenticated like /debug/config)
#   apps-exited    classic-mode pods (weft-proxy among the containers): a Job's pod (restartPolicy
#                  Never) whose app is running gets nothing; once its status says the app
#                  terminated, the stream carries appsExited naming it (/debug/proxies, metric); a
#                  new stream hears it again after its hello, before its document; OnFailure:
#                  nothing after an exit 1, appsExited after an exit 0; a pod with
#                  restartPolicy Always whose app terminated gets nothing (the kubelet restarts
#                  it) until the pod is being deleted (deletionTimestamp, held by a finalizer)
#   restart        weftd restarted on the same ports: the client reconnects and is synced again
#                  (its hello's lastHash is the current hash: nothing resent)
#   skew           version skew (protocol v2, docs/config-stream.md): the default client speaks
#                  v2, one offering only v1 gets v1 from the same weftd; both converge to
#                  /debug/config's documents, also after a change; pod b's document over v1 and
#                  over v2 is the same text and hash; the metrics count streams by protocol and
#                  v2's blocks; weftd restarted with --stream-protocol 1 (v1 only): the v2 client
#                  falls back to v1, stays synced without a resend and takes the next change
#   caps           weftd with --max-connections-per-address 3: pod a's stream and two more
#                  connections from 127.0.0.1 are held, the next one is closed at accept
#                  (weft_config_stream_refused_total)
#   rotation       (last) a root rotation through the CA Secret: a certificate from the new root is
#                  accepted once the root is in the bundle (the stream follows the bundle), the
#                  stream's serving certificate follows the signer switch, and once the old root
#                  is removed a certificate from it is refused while the open stream continues
# Env: BUILD, KUBELITE, WEFTD ($BUILD/bin/weftd), KUBECTL_DIR.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/weftd-lib.sh

NS=app

if [ ! -x "$WEFTD" ] || [ ! -x "$SC" ]; then
    t_begin weftd
    t_skip "$WEFTD or $SC not built"
    t_summary
fi

proxy() { # POD EXPR: EXPR over /debug/proxies/<ns>/<pod> (j)
    wd_get a "/debug/proxies/$NS/$1"
    [ "$CODE" = 200 ] || return 1
    printf '%s' "$BODY" | pyjson "$2"
}

proxy_is() { # POD EXPR WANT
    [ "$(proxy "$1" "$2")" = "$3" ]
}

canonical() { # the canonical JSON of stdin's document (docs/config-stream.md)
    python3 -c 'import json,sys; sys.stdout.write(json.dumps(json.load(sys.stdin), sort_keys=True, separators=(",", ":"), ensure_ascii=False))'
}

series() { wd_metric a "$1"; }

t_begin start
if kl_start; then
    ws_start a --stream-debounce-ms 100 || t_fail "weftd did not start"
else
    t_fail "kubelite did not start"
fi
t_pass
[ "$T_FAILED" -eq 0 ] || t_summary

case_setup() {
    ok "weft-system" "$K" create namespace weft-system || return
    ok "CRDs" "$K" apply -f crds/ || return
    wait_for 30 curl -sf "http://127.0.0.1:${WD_ADMIN[a]}/readyz" || t_fail "weftd not ready" || return
    wait_for 20 stream_listening a || t_fail "the stream never listened: $(grep -v level=debug "${WD_LOG[a]}" | tail -5)" || return
    assert_match "$(grep 'msg=listening what=stream' "${WD_LOG[a]}")" \
        "address=127.0.0.1:${WD_STREAM[a]} port=${WD_STREAM[a]} max_connections=[0-9]+ max_connections_per_address=[0-9]+ handshake_timeout_s=5 debounce_ms=100" \
        "the stream's bounds, logged" || return
    cat >"$KL_TMP/app.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $NS, labels: {weft.dev/inject: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: $NS}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NS}
spec: {selector: {app: web}, ports: [{port: 80, name: http, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v1, namespace: $NS}
spec: {selector: {app: web, v: v1}, ports: [{port: 80, name: http, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: $NS}
spec: {selector: {app: web, v: v2}, ports: [{port: 80, name: http, targetPort: 8080}]}
---
apiVersion: mesh.weft.dev/v1alpha1
kind: TrafficSplit
metadata: {name: web, namespace: $NS}
spec:
  service: web
  backends: [{service: web-v1, weight: 90}, {service: web-v2, weight: 10}]
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: $NS, labels: {app: client}}
spec:
  serviceAccountName: client
  containers:
  - {name: app, image: app:1, ports: [{containerPort: 9000}]}
  - {name: weft-proxy, image: weft/proxy:dev}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: $NS, labels: {app: client}}
spec:
  serviceAccountName: client
  containers:
  - {name: app, image: app:1, ports: [{containerPort: 9000}]}
  - {name: weft-proxy, image: weft/proxy:dev}
EOF
    ok "apply" "$K" apply -f "$KL_TMP/app.yaml" || return
    cert_for a a || return
    cert_for b b || return
    cert_for unbound || return
    wait_for 20 sh -c "curl -sf -H 'Authorization: Bearer $(wd_token)' http://127.0.0.1:${WD_ADMIN[a]}/debug/config/$NS/a >/dev/null" ||
        t_fail "no document for $NS/a" || return
}

case_document() {
    local hash
    cl_start a a a
    wait_for 20 has_event a '^ack 1$' || t_fail "no config ACKed: $(events a)" || return
    assert_eq "$(head -2 "$KL_TMP/cl-a/events" | tr '\n' ' ')" \
        "connected config 1 $(cat "$KL_TMP/cl-a/hash") " "first events" || return
    wd_get a "/debug/config/$NS/a"
    assert_eq "$CODE" 200 "/debug/config" || return
    assert_eq "$(cat "$KL_TMP/cl-a/config.json")" "$(printf '%s' "$BODY" | canonical)" \
        "the document received is /debug/config's, canonical" || return
    hash=$(sha256sum <"$KL_TMP/cl-a/config.json" | cut -d' ' -f1)
    assert_eq "$(cat "$KL_TMP/cl-a/hash")" "$hash" "hash = SHA-256 of the canonical text" || return
    wait_for 10 proxy_is a 'j["sync"]' synced || t_fail "not synced: $(proxy a j)" || return
    assert_eq "$(proxy a '[j["pod"], j["connected"], j["spiffeId"], j["desiredHash"], j["sent"], j["acked"], j["lastNack"]]')" \
        "[\"$NS/a\", true, \"spiffe://cluster.local/ns/$NS/sa/client\", \"$hash\", {\"version\": 1, \"hash\": \"$hash\"}, {\"version\": 1, \"hash\": \"$hash\"}, null]" \
        "/debug/proxies/$NS/a" || return
    assert_match "$(proxy a 'j["connectedSince"]')" '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z$' "connectedSince" || return
    # the ACK came within the last seconds; nothing waits to be written
    assert_eq "$(proxy a '[j["sendBuffered"], 0 <= j["idleMs"] < 10000]')" "[false, true]" \
        "sendBuffered, idleMs" || return
    wd_get a /debug/proxies
    assert_eq "$(printf '%s' "$BODY" | pyjson '[[p["pod"], p["sync"]] for p in j]')" \
        "[[\"$NS/a\", \"synced\"], [\"$NS/b\", \"disconnected\"]]" "/debug/proxies: every proxy" || return
    assert_eq "$(series 'weft_proxy_config_sync{state="synced"}')" 1 "synced proxies" || return
    assert_eq "$(series 'weft_proxy_config_sync{state="disconnected"}')" 1 "disconnected proxies" || return
    assert_eq "$(series 'weft_config_stream_streams')" 1 "open streams" || return
    assert_eq "$(series 'weft_config_stream_hellos_total{result="accepted"}')" 1 "hellos accepted" || return
    assert_eq "$(series 'weft_config_stream_replies_total{type="ack"}')" 1 "ACKs" || return
}

ppm_of_client() { # the web split's requestedPpm of web-v2 in the client's last document
    pyjson "[b['requestedPpm'] for o in j['outbound'] if o['service'] == 'web' for p in o['ports'] for r in p['routes'] if r.get('split') for b in r['backends'] if b['service'] == 'web-v2'][0]" <"$KL_TMP/cl-a/config.json"
}

case_change() {
    local imm def
    imm=$(series 'weft_config_stream_changes_total{release="immediate"}')
    def=$(series 'weft_config_stream_changes_total{release="deferred"}')
    sleep 0.3 # quiet: longer than the 100 ms window since the last change
    ok "reweight" "$K" patch ts/web -n "$NS" --type=json \
        -p '[{"op":"replace","path":"/spec/backends/0/weight","value":1},{"op":"replace","path":"/spec/backends/1/weight","value":3}]' || return
    wait_for 20 has_event a '^ack 2$' || t_fail "the change did not arrive: $(events a)" || return
    assert_eq "$(ppm_of_client)" 750000 "the new split in the document received" || return
    wd_get a "/debug/config/$NS/a"
    assert_eq "$(cat "$KL_TMP/cl-a/config.json")" "$(printf '%s' "$BODY" | canonical)" "still /debug/config's" || return
    wait_for 10 proxy_is a '[j["sync"], j["acked"]["version"], j["acked"]["hash"]]' "[\"synced\", 2, \"$(cat "$KL_TMP/cl-a/hash")\"]" ||
        t_fail "not synced on config 2: $(proxy a j)" || return
    # after a quiet period the change went out at once: released immediately (pods a and b),
    # nothing held for the window
    assert_gt "$(series 'weft_config_stream_changes_total{release="immediate"}')" "$imm" "changes released at once" || return
    assert_eq "$(series 'weft_config_stream_changes_total{release="deferred"}')" "$def" "changes deferred" || return
}

case_burst() {
    # A weftd with a 3 s window: the second and third change follow the first inside it.
    local imm def sup n
    wd_stop a
    ws_start a --stream-debounce-ms 3000 || return
    wait_for 20 stream_listening a 2 || t_fail "the stream did not listen again" || return
    wait_for 20 proxy_is a 'j["sync"]' synced || t_fail "client not synced after the restart" || return
    imm=$(series 'weft_config_stream_changes_total{release="immediate"}')
    def=$(series 'weft_config_stream_changes_total{release="deferred"}')
    sup=$(series 'weft_config_stream_changes_total{release="superseded"}')
    n=$(count_ev a '^ack ')
    sleep 3.2 # quiet: a whole window since the documents went out at the start
    ok "weight 1" "$K" patch ts/web -n "$NS" --type=json -p '[{"op":"replace","path":"/spec/backends/1/weight","value":5}]' || return
    wait_for 10 count_ge a '^ack ' $((n + 1)) || t_fail "the first change was held: $(events a)" || return
    ok "weight 2" "$K" patch ts/web -n "$NS" --type=json -p '[{"op":"replace","path":"/spec/backends/1/weight","value":7}]' || return
    ok "weight 3" "$K" patch ts/web -n "$NS" --type=json -p '[{"op":"replace","path":"/spec/backends/1/weight","value":9}]' || return
    wait_for 20 count_ge a '^ack ' $((n + 2)) || t_fail "the burst did not arrive: $(events a)" || return
    sleep 3.5 # a whole window: nothing more comes
    assert_eq "$(count_ev a '^ack ')" $((n + 2)) "configs: the first change, then one for the burst" || return
    assert_eq "$(ppm_of_client)" 900000 "the newest weights (1:9)" || return
    # per proxy (a and b): the first change at once, the second deferred, the third superseded
    echo "    changes before: immediate $imm deferred $def superseded $sup; after: $(series 'weft_config_stream_changes_total{release="immediate"}') $(series 'weft_config_stream_changes_total{release="deferred"}') $(series 'weft_config_stream_changes_total{release="superseded"}')"
    assert_eq "$(series 'weft_config_stream_changes_total{release="immediate"}')" $((imm + 2)) "immediate" || return
    assert_eq "$(series 'weft_config_stream_changes_total{release="deferred"}')" $((def + 2)) "deferred" || return
    assert_eq "$(series 'weft_config_stream_changes_total{release="superseded"}')" $((sup + 2)) "superseded" || return
    wd_stop a
    ws_start a --stream-debounce-ms 100 || return
    wait_for 20 stream_listening a 3 || t_fail "the stream did not listen again" || return
    wait_for 20 proxy_is a 'j["sync"]' synced || t_fail "client not synced after the second restart"
}

case_nack() {
    local n reason="haproxy -c: [ALERT] parsing [weft.cfg:12]: unknown keyword 'bogus'"
    n=$(count_ev a '^ack ')
    printf '%s\n' "$reason" >"$KL_TMP/cl-a/nack"
    ok "reweight" "$K" patch ts/web -n "$NS" --type=json -p '[{"op":"replace","path":"/spec/backends/1/weight","value":2}]' || return
    wait_for 20 has_event a "^nack [0-9]+ " || t_fail "no NACK: $(events a)" || return
    wait_for 10 proxy_is a 'j["sync"]' rejected || t_fail "not rejected: $(proxy a j)" || return
    assert_eq "$(proxy a '[j["lastNack"]["reason"], j["lastNack"]["hash"] == j["desiredHash"], j["lastNack"]["version"] == j["sent"]["version"]]')" \
        "[\"$reason\", true, true]" "the NACK on /debug/proxies" || return
    assert_match "$(proxy a 'j["lastNack"]["time"]')" '^20[0-9]{2}-' "the NACK's time" || return
    assert_eq "$(series 'weft_proxy_config_sync{state="rejected"}')" 1 "rejected proxies" || return
    assert_eq "$(series 'weft_config_stream_replies_total{type="nack"}')" 1 "NACKs" || return
    grep "msg=\"config rejected by agent\" proxy=$NS/a " "${WD_LOG[a]}" | grep -qF "reason=\"$reason\"" ||
        t_fail "the NACK is not in weftd's log" || return
    rm -f "$KL_TMP/cl-a/nack"
    sleep 0.3
    ok "reweight" "$K" patch ts/web -n "$NS" --type=json -p '[{"op":"replace","path":"/spec/backends/1/weight","value":3}]' || return
    wait_for 20 count_ge a '^ack ' $((n + 1)) || t_fail "no ACK after the NACK: $(events a)" || return
    wait_for 10 proxy_is a 'j["sync"]' synced || t_fail "not synced again: $(proxy a j)" || return
    assert_eq "$(proxy a 'j["lastNack"]["reason"]')" "$reason" "the last NACK stays on record" || return
}

case_other_pod() {
    local uid_a uid_b
    uid_a=$(uid_of a)
    uid_b=$(uid_of b)
    cl_start ab a b
    wait_for 20 has_event ab '^rejected ' || t_fail "pod a's certificate was not refused pod b: $(events ab)" || return
    assert_eq "$(grep -m1 '^rejected' "$KL_TMP/cl-ab/events")" \
        "rejected IdentityMismatch the certificate was issued to pod $NS/a, the hello asks for pod $NS/b" "the refusal" || return
    has_event ab '^config' && { t_fail "pod b's document reached pod a's certificate"; return; }
    cl_stop ab
    # pod b's name with pod a's uid: refused all the same
    cl_start ab2 a b "$uid_a"
    wait_for 20 has_event ab2 '^rejected IdentityMismatch ' || t_fail "not refused: $(events ab2)" || return
    cl_stop ab2
    # pod a's name with pod b's uid
    cl_start ab3 a a "$uid_b"
    wait_for 20 has_event ab3 '^rejected IdentityMismatch ' || t_fail "not refused: $(events ab3)" || return
    cl_stop ab3
    # a certificate that names no pod
    cl_start nb unbound a
    wait_for 20 has_event nb '^rejected IdentityMismatch the client certificate names no pod' || t_fail "not refused: $(events nb)" || return
    has_event nb '^config' && { t_fail "a document reached a certificate naming no pod"; return; }
    cl_stop nb
    # pod b's own certificate gets pod b's document
    cl_start b b b
    wait_for 20 has_event b '^ack 1$' || t_fail "pod b's own certificate: $(events b)" || return
    cl_stop b
    assert_gt "$(series 'weft_config_stream_hellos_total{result="IdentityMismatch"}')" 3 "IdentityMismatch hellos" || return
    # pod b deleted and created again under the same name: its old certificate names the old uid
    ok "delete b" "$K" delete pod -n "$NS" b --wait=false || return
    wait_for 20 sh -c "! \"\$0\" get pod -n $NS b >/dev/null 2>&1" "$K" || t_fail "pod b not gone" || return
    ok "recreate b" "$K" apply -f "$KL_TMP/app.yaml" || return
    cl_start b-old b b "$uid_b"
    wait_for 20 has_event b-old '^rejected UnknownPod ' || t_fail "the old pod's certificate: $(events b-old)" || return
    assert_eq "$(grep -m1 '^rejected' "$KL_TMP/cl-b-old/events")" "rejected UnknownPod no pod $NS/b with uid $uid_b" "the refusal" || return
    cl_stop b-old
    assert_eq "$(series 'weft_config_stream_hellos_total{result="UnknownPod"}')" 1 "UnknownPod hellos" || return
    # pod a's stream was never replaced by these
    proxy_is a 'j["connected"]' True || t_fail "pod a's stream was disturbed: $(proxy a j)"
}

case_no_cert() {
    local before
    before=$(series 'weft_config_stream_hellos_total{result="accepted"}')
    # no client certificate: the handshake fails (TLS 1.3: weftd's alert after the client's Finished)
    run sh -c "printf 'GET /v1/stream HTTP/1.1\r\nHost: weftd\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: weft-config-v1\r\n\r\n' | openssl s_client -connect 127.0.0.1:${WD_STREAM[a]} -servername weftd.weft-system.svc -CAfile $KL_TMP/bundle.pem -quiet 2>&1"
    assert_contains "$OUT" "alert" "no certificate: a TLS alert" || return
    assert_not_contains "$OUT" "101 Switching Protocols" "no certificate: no upgrade" || return
    # a certificate from another CA (same SPIFFE ID, same pod)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$KL_TMP/evil.key" \
        -subj /CN=evil -addext "subjectAltName=URI:spiffe://cluster.local/ns/$NS/sa/client" \
        -days 1 -out "$KL_TMP/evil.crt" 2>/dev/null || return
    cl_start evil evil a
    wait_for 10 has_event evil '^disconnected' || t_fail "no failure seen: $(events evil)" || return
    sleep 1
    has_event evil '^(connected|config)' && { t_fail "another CA's certificate got a stream: $(events evil)"; return; }
    cl_stop evil
    assert_eq "$(series 'weft_config_stream_hellos_total{result="accepted"}')" "$before" "no hello accepted" || return
}

case_debug_auth() {
    run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${WD_ADMIN[a]}/debug/proxies"
    assert_eq "$OUT" 401 "/debug/proxies without a token" || return
    run curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(wd_token)" "http://127.0.0.1:${WD_ADMIN[a]}/debug/proxies/$NS/nosuch"
    assert_eq "$OUT" 404 "/debug/proxies of an unknown pod" || return
}

# hold_conns N: open N TCP connections to the stream port one after another and print, for each,
# 1 when weftd closed it within 1.5 s (before any TLS: refused at accept), else 0
hold_conns() {
    python3 - "${WD_STREAM[a]}" "$1" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    conns.append(s)
    time.sleep(0.2)
time.sleep(1.0)
out = []
for s in conns:
    s.setblocking(False)
    try:
        out.append("1" if s.recv(1) == b"" else "0")
    except BlockingIOError:
        out.append("0")
    except OSError:
        out.append("1")
print(" ".join(out))
PY
}

case_caps() {
    wd_stop a
    ws_start a --max-connections-per-address 3 || return
    wait_for 20 proxy_is a '[j["sync"], j["connected"]]' '["synced", true]' || t_fail "pod a not back: $(events a)" || return
    assert_match "$(grep 'msg=listening what=stream' "${WD_LOG[a]}" | tail -1)" "max_connections_per_address=3 " "the cap, logged" || return
    OUT=$(hold_conns 3)
    assert_eq "$OUT" "0 0 1" "pod a's stream, two more held, the third closed at accept" || return
    assert_eq "$(series 'weft_config_stream_refused_total{cap="max_connections_per_address"}')" 1 "refused by the per-address cap" || return
    proxy_is a 'j["connected"]' True || t_fail "pod a's stream was cut: $(proxy a j)" || return
    wd_stop a
    ws_start a --stream-debounce-ms 100 || return
    wait_for 20 proxy_is a '[j["sync"], j["connected"]]' '["synced", true]' || t_fail "pod a not back: $(events a)"
}

stream_verifies() { # CAFILE CERT: the stream's serving certificate verifies with CAFILE (TLS
    # with client certificate CERT)
    printf '' | openssl s_client -connect "127.0.0.1:${WD_STREAM[a]}" -servername weftd.weft-system.svc \
        -CAfile "$1" -cert "$KL_TMP/$2.crt" -key "$KL_TMP/$2.key" 2>&1 | grep -q 'Verify return code: 0 (ok)'
}

case_rotation() {
    local root1 n
    root1=$(cat "$KL_TMP/bundle.pem")
    printf '%s\n' "$root1" >"$KL_TMP/root1.pem"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/O=weft/CN=weft root 2" -keyout "$KL_TMP/root2.key" -out "$KL_TMP/root2.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return
    ok "step 1: add the new root" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"ca.crt\":\"$(cat "$KL_TMP/root1.pem" "$KL_TMP/root2.pem" | base64 -w0)\"}}" || return
    wait_for 15 grep -q 'msg="trust bundle changed"' "${WD_LOG[a]}" || t_fail "the bundle did not change" || return
    ok "step 2: switch the signer" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"tls.crt\":\"$(base64 -w0 <"$KL_TMP/root2.pem")\",\"tls.key\":\"$(base64 -w0 <"$KL_TMP/root2.key")\"}}" || return
    wait_for 15 grep -q 'CA signer switched' "${WD_LOG[a]}" || t_fail "signer not switched" || return
    cert_for b2 b || return # the certificate endpoint's answer: the new leaf, both roots
    okv "new leaf from the new root" openssl verify -CAfile "$KL_TMP/root2.pem" "$KL_TMP/b2.crt" || return
    # the stream's serving certificate follows the signer (re-issued from root 2)
    wait_for 15 stream_verifies "$KL_TMP/root2.pem" b2 || t_fail "the stream's serving certificate is not from the new root" || return
    # a client with the new certificate: verified against the bundle weftd now holds
    cl_start b2 b2 b
    wait_for 20 has_event b2 '^ack 1$' || t_fail "a certificate from the new root: $(events b2)" || return
    cl_stop b2
    n=$(count_ev a '^disconnected')
    ok "step 3: remove the old root" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"ca.crt\":\"$(base64 -w0 <"$KL_TMP/root2.pem")\"}}" || return
    wait_for 15 grep -q 'root removed from the trust bundle' "${WD_LOG[a]}" || t_fail "old root not removed" || return
    # a new connection with the old root's certificate fails the handshake
    cl_start old b b
    wait_for 10 has_event old '^disconnected' || t_fail "the old root's certificate: $(events old)" || return
    sleep 1
    has_event old '^(connected|config)' && { t_fail "the removed root's certificate got a stream: $(events old)"; return; }
    cl_stop old
    # pod a's stream, opened with the old root's certificate, continues
    assert_eq "$(count_ev a '^disconnected')" "$n" "pod a's open stream was not cut" || return
    proxy_is a '[j["sync"], j["connected"]]' '["synced", true]' || t_fail "pod a: $(proxy a j)"
}

# app_status POD STATE: the status of POD's containers, weft-proxy running and app in STATE (a
# containerStatuses state object, e.g. '{"running":{}}')
app_status() {
    ok "status of $1" "$K" patch pod "$1" -n "$NS" --subresource=status --type=merge -p \
        "{\"status\":{\"phase\":\"Running\",\"containerStatuses\":[{\"name\":\"weft-proxy\",\"image\":\"weft/proxy:dev\",\"imageID\":\"\",\"ready\":true,\"restartCount\":0,\"state\":{\"running\":{}}},{\"name\":\"app\",\"image\":\"app:1\",\"imageID\":\"\",\"ready\":false,\"restartCount\":0,\"state\":$2}]}}"
}

case_apps_exited() {
    local term='{"terminated":{"exitCode":0,"reason":"Completed"}}' sent
    cat >"$KL_TMP/apps.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: $NS, labels: {app: job}}
spec:
  serviceAccountName: client
  restartPolicy: Never
  containers:
  - {name: weft-proxy, image: weft/proxy:dev}
  - {name: app, image: app:1}
---
apiVersion: v1
kind: Pod
metadata: {name: retry, namespace: $NS, labels: {app: retry}}
spec:
  serviceAccountName: client
  restartPolicy: OnFailure
  containers:
  - {name: weft-proxy, image: weft/proxy:dev}
  - {name: app, image: app:1}
---
apiVersion: v1
kind: Pod
metadata: {name: svc, namespace: $NS, labels: {app: svc}, finalizers: [test.weft.dev/hold]}
spec:
  serviceAccountName: client
  containers:
  - {name: weft-proxy, image: weft/proxy:dev}
  - {name: app, image: app:1}
EOF
    ok "pods" "$K" apply -f "$KL_TMP/apps.yaml" || return
    cert_for job job || return
    cert_for svc svc || return
    cert_for retry retry || return
    sent=$(series weft_config_stream_apps_exited_sent_total)
    app_status job '{"running":{}}' || return
    cl_start job job job
    wait_for 20 has_event job '^ack 1$' || t_fail "pod job: no document: $(events job)" || return
    assert_eq "$(proxy job 'j["appsExited"]')" None "running app: nothing said" || return
    app_status job "$term" || return
    wait_for 10 has_event job '^appsExited ' || t_fail "no appsExited: $(events job)" || return
    assert_eq "$(grep '^appsExited' "$KL_TMP/cl-job/events")" "appsExited app exited 0; restartPolicy Never" \
        "the message names the app and why it will not run again" || return
    assert_eq "$(proxy job '[j["appsExited"], j["sync"]]')" '["app exited 0; restartPolicy Never", "synced"]' \
        "/debug/proxies" || return
    assert_eq "$(series weft_config_stream_apps_exited_sent_total)" $((sent + 1)) "frames sent" || return
    # a new stream (the agent restarted): told after its hello, before its document
    cl_stop job
    cl_start job2 job job
    wait_for 20 has_event job2 '^ack 1$' || t_fail "pod job, second stream: $(events job2)" || return
    assert_eq "$(head -3 "$KL_TMP/cl-job2/events" | cut -d' ' -f1 | tr '\n' ' ')" "connected appsExited config " \
        "appsExited first on a new stream" || return
    cl_stop job2
    # restartPolicy OnFailure: a failed app is restarted; one that exited 0 is done
    cl_start retry retry retry
    wait_for 20 has_event retry '^ack 1$' || t_fail "pod retry: no document: $(events retry)" || return
    app_status retry '{"terminated":{"exitCode":1,"reason":"Error"}}' || return
    sleep 1
    has_event retry '^appsExited' && { t_fail "OnFailure, exit 1: $(events retry)"; return; }
    app_status retry "$term" || return
    wait_for 10 has_event retry '^appsExited ' || t_fail "OnFailure, exit 0: no appsExited: $(events retry)" || return
    assert_eq "$(grep '^appsExited' "$KL_TMP/cl-retry/events")" "appsExited app exited 0; restartPolicy OnFailure" \
        "OnFailure" || return
    cl_stop retry
    # restartPolicy Always: a terminated app is restarted by the kubelet; only deletion ends it
    cl_start svc svc svc
    wait_for 20 has_event svc '^ack 1$' || t_fail "pod svc: no document: $(events svc)" || return
    app_status svc "$term" || return
    sleep 1
    has_event svc '^appsExited' && { t_fail "restartPolicy Always, not deleted: $(events svc)"; return; }
    ok "delete svc" "$K" delete pod svc -n "$NS" --wait=false || return
    wait_for 10 has_event svc '^appsExited ' || t_fail "no appsExited after deletion: $(events svc)" || return
    assert_eq "$(grep '^appsExited' "$KL_TMP/cl-svc/events")" "appsExited app exited 0; the pod is being deleted" \
        "deletion" || return
    cl_stop svc
    ok "release svc" "$K" patch pod svc -n "$NS" --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]' || return
    ok "delete job" "$K" delete pod job -n "$NS" --wait=false
}

case_restart() {
    local hash n
    hash=$(cat "$KL_TMP/cl-a/hash")
    n=$(count_ev a '^config')
    wd_stop a
    wait_for 10 has_event a '^disconnected' || t_fail "the client did not see weftd go" || return
    ws_start a --stream-debounce-ms 100 || return
    wait_for 30 proxy_is a '[j["sync"], j["connected"], j["acked"]["hash"]]' "[\"synced\", true, \"$hash\"]" ||
        t_fail "not synced after the restart: $(proxy a j) $(events a)" || return
    assert_eq "$(count_ev a '^config')" "$n" "nothing resent: the hello's lastHash was current" || return
    assert_eq "$(tail -1 "$KL_TMP/cl-a/events")" connected "reconnected" || return
}

is_debug_config() { # NAME POD: the client's last document is /debug/config's for POD
    wd_get a "/debug/config/$NS/$2"
    [ "$CODE" = 200 ] && [ "$(cat "$KL_TMP/cl-$1/config.json")" = "$(printf '%s' "$BODY" | canonical)" ]
}

case_skew() {
    local na nb hash blocks
    assert_eq "$(cat "$KL_TMP/cl-a/protocol")" 2 "the default client negotiated v2" || return
    is_debug_config a a || t_fail "pod a's v2 document is not /debug/config's" || return
    blocks=$(series 'weft_config_stream_blocks_sent_total')
    cert_for bnow b || return # pod b was recreated by other-pod: a certificate for this one
    cl_start b1 bnow b "" 1
    wait_for 20 has_event b1 '^ack 1$' || t_fail "the v1 client got nothing: $(events b1)" || return
    assert_eq "$(cat "$KL_TMP/cl-b1/protocol")" 1 "a client offering v1 only gets v1" || return
    is_debug_config b1 b || t_fail "pod b's v1 document is not /debug/config's" || return
    assert_eq "$(series 'weft_config_stream_protocol_streams{protocol="v1"}')" 1 "v1 streams" || return
    assert_eq "$(series 'weft_config_stream_protocol_streams{protocol="v2"}')" 1 "v2 streams" || return
    # a change reaches both, each as /debug/config says
    na=$(count_ev a '^ack')
    nb=$(count_ev b1 '^ack')
    ok "reweight" "$K" patch ts/web -n "$NS" --type=json \
        -p '[{"op":"replace","path":"/spec/backends/0/weight","value":2},{"op":"replace","path":"/spec/backends/1/weight","value":3}]' || return
    wait_for 20 count_ge a '^ack' $((na + 1)) || t_fail "the v2 client missed the change: $(events a)" || return
    wait_for 20 count_ge b1 '^ack' $((nb + 1)) || t_fail "the v1 client missed the change: $(events b1)" || return
    assert_eq "$(ppm_of_client)" 600000 "the new split over v2" || return
    wait_for 10 is_debug_config a a || t_fail "pod a's v2 document after the change" || return
    wait_for 10 is_debug_config b1 b || t_fail "pod b's v1 document after the change" || return
    assert_gt "$(series 'weft_config_stream_blocks_sent_total')" "$blocks" "the change went out as blocks over v2" || return
    # pod b's document over v2: the same text and hash as over v1
    cl_stop b1
    cl_start b2 bnow b "" 2
    wait_for 20 has_event b2 '^ack 1$' || t_fail "the v2 client of pod b got nothing: $(events b2)" || return
    assert_eq "$(cat "$KL_TMP/cl-b2/protocol")" 2 "pod b over v2" || return
    cmp -s "$KL_TMP/cl-b1/config.json" "$KL_TMP/cl-b2/config.json" || t_fail "pod b's document differs between v1 and v2" || return
    assert_eq "$(cat "$KL_TMP/cl-b2/hash")" "$(cat "$KL_TMP/cl-b1/hash")" "the same hash over v1 and v2" || return
    cl_stop b2
    # a weftd that serves v1 only (an older one): the v2 client falls back
    hash=$(cat "$KL_TMP/cl-a/hash")
    na=$(count_ev a '^config')
    wd_stop a
    wait_for 10 has_event a '^disconnected' || t_fail "the client did not see weftd go" || return
    ws_start a --stream-debounce-ms 100 --stream-protocol 1 || return
    wait_for 30 proxy_is a '[j["sync"], j["connected"], j["acked"]["hash"]]' "[\"synced\", true, \"$hash\"]" ||
        t_fail "not synced on a v1-only weftd: $(proxy a j) $(events a)" || return
    assert_eq "$(cat "$KL_TMP/cl-a/protocol")" 1 "fell back to v1" || return
    assert_eq "$(count_ev a '^config')" "$na" "nothing resent: the hello's lastHash was current" || return
    na=$(count_ev a '^ack')
    sleep 0.3
    ok "reweight" "$K" patch ts/web -n "$NS" --type=json \
        -p '[{"op":"replace","path":"/spec/backends/0/weight","value":1},{"op":"replace","path":"/spec/backends/1/weight","value":3}]' || return
    wait_for 20 count_ge a '^ack' $((na + 1)) || t_fail "the change did not arrive over v1: $(events a)" || return
    assert_eq "$(ppm_of_client)" 750000 "the change over the fallback" || return
    wait_for 10 is_debug_config a a || t_fail "pod a's v1 document after the change" || return
    assert_eq "$(series 'weft_config_stream_protocol_streams{protocol="v2"}')" 0 "no v2 stream on a v1-only weftd" || return
    wd_stop a
    ws_start a --stream-debounce-ms 100 || return
    wait_for 20 proxy_is a '[j["sync"], j["connected"]]' '["synced", true]' || t_fail "pod a not back: $(events a)" || return
    wait_for 10 sh -c "[ \"\$(cat '$KL_TMP/cl-a/protocol')\" = 2 ]" || t_fail "v2 again with v2 served" || return
}

t_run setup case_setup
t_run document case_document
t_run change case_change
t_run burst case_burst
t_run nack case_nack
t_run other-pod case_other_pod
t_run no-cert case_no_cert
t_run debug-auth case_debug_auth
t_run apps-exited case_apps_exited
t_run restart case_restart
t_run skew case_skew
t_run caps case_caps
t_run rotation case_rotation
cl_stop a
t_summary
