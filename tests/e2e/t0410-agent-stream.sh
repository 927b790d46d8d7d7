#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# weft-agent holding weftd's config stream (push/'s client) with the real HAProxy: the pod's
# certificate from a token bound to the pod, the hello naming the pod its certificate proves,
# the document rendered and applied before the ACK (weftd's /debug/proxies: synced with that
# hash), readiness; weftd stopped: HAProxy keeps serving and the agent stays ready; weftd back:
# the agent reconnects and is synced again. Agent and HAProxy on loopback with free ports.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
. tests/integration/weftd-lib.sh

AGENT=${AGENT:-$KL_REPO/$BUILD/bin/weft-agent}
HAPROXY=${HAPROXY:-haproxy}
NS=shop
D=$KL_TMP/agent
declare -A WD_CERTS WD_STREAM

ws_start() { # NAME: weftd with known certificate and stream ports (kept across restarts)
    local name=$1
    WD_ADMIN[$name]=${WD_ADMIN[$name]:-$(free_port)}
    WD_CERTS[$name]=${WD_CERTS[$name]:-$(free_port)}
    WD_STREAM[$name]=${WD_STREAM[$name]:-$(free_port)}
    WD_LOG[$name]=$KL_TMP/weftd-$name.log
    "$WEFTD" --kubeconfig "$KUBECONFIG" --namespace weft-system --identity "$name" \
        --admin-listen "127.0.0.1:${WD_ADMIN[$name]}" --certs-listen "127.0.0.1:${WD_CERTS[$name]}" \
        --stream-listen "127.0.0.1:${WD_STREAM[$name]}" --webhook-listen "127.0.0.1:$(free_port)" \
        --cert-ttl 3600 --log-level debug >>"${WD_LOG[$name]}" 2>&1 &
    WD_PID[$name]=$!
    daemon_track "${WD_PID[$name]}" "weftd $name"
    wait_for 10 curl -sf "http://127.0.0.1:${WD_ADMIN[$name]}/healthz"
}

proxy() { # EXPR over /debug/proxies/<ns>/a (j)
    wd_get a "/debug/proxies/$NS/a"
    [ "$CODE" = 200 ] || return 1
    printf '%s' "$BODY" | pyjson "$1"
}
synced() { [ "$(proxy 'j["sync"]')" = synced ]; }
ready_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HEALTH_PORT/healthz/ready"; }
handshake() { # the inbound listener completes a TLS handshake (it presents the pod's certificate)
    echo | timeout 5 openssl s_client -connect "127.0.0.1:$IN_PORT" -cert "$D/client.pem" \
        -key "$D/client.pem" -CAfile "$D/bundle.pem" 2>/dev/null | openssl x509 -noout -subject 2>/dev/null
}

t_begin "tools"
if ! command -v "$HAPROXY" >/dev/null; then
    t_skip "haproxy is not installed"
    t_summary
fi
have_tool "$AGENT" || t_summary
mkdir -p "$D" && kl_start && t_pass

case_setup() {
    ok "weft-system" "$K" create namespace weft-system || return
    ok "CRDs" "$K" apply -f crds/ || return
    ws_start a || { t_fail "weftd: $(tail -5 "${WD_LOG[a]}")"; return 1; }
    wait_for 30 sh -c "grep -q 'msg=listening what=stream' '${WD_LOG[a]}'" || { t_fail "no stream listener"; return 1; }
    cat >"$D/app.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $NS, labels: {weft.dev/inject: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: $NS}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NS}
spec: {selector: {app: web}, ports: [{port: 80, name: http, targetPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: $NS, labels: {app: web}}
spec:
  serviceAccountName: web
  containers:
  - {name: app, image: app:1, ports: [{containerPort: 8080}]}
  - {name: weft-proxy, image: weft/proxy:dev}
EOF
    ok "apply" "$K" apply -f "$D/app.yaml" || return
    # the pod at 127.0.0.1 (no kubelet here): the inbound listener forwards to the app there
    ok "pod IP" "$K" patch pod -n "$NS" a --subresource=status --type=merge \
        -p '{"status":{"phase":"Running","podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}' || return
    okv "uid" "$K" get pod -n "$NS" a -o 'jsonpath={.metadata.uid}' || return
    printf '%s' "$OUT" >"$D/uid"
    okv "token bound to the pod" "$K" create token -n "$NS" web --audience weft --duration 1h \
        --bound-object-kind Pod --bound-object-name a --bound-object-uid "$OUT" || return
    printf '%s\n' "$OUT" >"$D/token"
    okv "root" "$K" get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' || return
    printf '%s' "$OUT" | base64 -d >"$D/bundle.pem"
    # a mesh client certificate (same ServiceAccount, unbound token) for handshakes
    okv "client token" "$K" create token -n "$NS" web --audience weft || return
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/client.key" \
        -subj /CN=x -out "$D/client.csr" 2>/dev/null || return
    BODY=$(curl -sS --cacert "$D/bundle.pem" -H "Authorization: Bearer $OUT" \
        -H "Content-Type: application/pkcs10" --data-binary "@$D/client.csr" \
        "https://127.0.0.1:${WD_CERTS[a]}/v1/certificates") || return
    printf '%s' "$BODY" | pyjson 'j["certificateChain"]' >"$D/client.pem"
    cat "$D/client.key" >>"$D/client.pem"
    wait_for 20 sh -c "curl -sf -H 'Authorization: Bearer $(wd_token)' http://127.0.0.1:${WD_ADMIN[a]}/debug/config/$NS/a >/dev/null" ||
        { t_fail "no document for $NS/a"; return 1; }
}

case_stream() {
    IN_PORT=$(free_port)
    HEALTH_PORT=$(free_port)
    POD_IP=127.0.0.1 "$AGENT" --log-level debug --control-plane "127.0.0.1:${WD_CERTS[a]}" \
        --stream-port "${WD_STREAM[a]}" --stream-server-name weftd.weft-system.svc \
        --token-file "$D/token" --ca-file "$D/bundle.pem" --run-dir "$D/run" \
        --health-listen "127.0.0.1:$HEALTH_PORT" --inbound-port "$IN_PORT" \
        --outbound-port "$(free_port)" --metrics-port "$(free_port)" >"$D/agent.log" 2>&1 &
    AGENT_PID=$!
    daemon_track "$AGENT_PID" "weft-agent"
    wait_for 20 synced || { t_fail "not synced: $(proxy "j" 2>&1); $(grep -v level=debug "$D/agent.log" | tail -5)"; return 1; }
    wd_get a "/debug/config/$NS/a"
    local hash
    hash=$(printf '%s' "$BODY" | python3 -c 'import json,sys; sys.stdout.write(json.dumps(json.load(sys.stdin), sort_keys=True, separators=(",", ":"), ensure_ascii=False))' | sha256sum | cut -d' ' -f1)
    assert_eq "$(proxy 'j["acked"]["hash"]')" "$hash" "the hash the agent ACKed is the document's" || return
    assert_contains "$(cat "$D/agent.log")" "msg=\"configuration applied (ACK)\" version=1 hash=$hash how=start" "agent log" || return
    wait_for 10 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HEALTH_PORT/healthz/ready)\" = 200 ]" ||
        { t_fail "not ready: $(curl -s "http://127.0.0.1:$HEALTH_PORT/healthz/ready")"; return 1; }
    assert_contains "$(handshake)" "CN = web.$NS.cluster.local" "the inbound listener's certificate" || return
    assert_contains "$(grep 'bind :' "$D/run/haproxy.cfg")" "bind :$IN_PORT ssl crt" "the rendered document runs" || return
}

case_weftd_away() {
    N_ACK=$(grep -c 'msg="configuration applied (ACK)"' "$D/agent.log")
    wd_stop a
    wait_for 10 sh -c "grep -q 'config stream down' '$D/agent.log'" || { t_fail "the agent did not see the stream go"; return 1; }
    assert_contains "$(handshake)" "CN = web.$NS.cluster.local" "serving while weftd is away" || return
    assert_eq "$(ready_code)" 200 "ready while weftd is away" || return
    ws_start a || return
    wait_for 30 synced || { t_fail "not synced again: $(proxy 'j' 2>&1)"; return 1; }
    # what weftd sent after its restart (usually nothing: the hello's lastHash is current; a
    # restarted weftd may first send a document from a model still filling)
    echo "    after weftd's restart: $(sed -n "$((N_ACK + 1)),\$p" <(grep 'msg="configuration applied (ACK)"' "$D/agent.log") | sed 's/.*version=/version=/' | tr '\n' ';')"
    assert_eq "$(proxy 'j["acked"]["hash"]')" "$(proxy 'j["desiredHash"]')" "the agent ACKed weftd's current document" || return
}

# a document the agent cannot run (the pod lost its IP: the renderer refuses it) is NACKed with
# the reason; HAProxy keeps the last good configuration; the next good document is applied
case_nack() {
    ok "pod IP gone" "$K" patch pod -n "$NS" a --subresource=status --type=merge \
        -p '{"status":{"podIP":null,"podIPs":null}}' || return
    wait_for 20 sh -c "[ \"\$(curl -s -H 'Authorization: Bearer $(wd_token)' http://127.0.0.1:${WD_ADMIN[a]}/debug/proxies/$NS/a | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"sync\"])')\" = rejected ]" ||
        { t_fail "no NACK: $(proxy 'j' 2>&1); $(grep -v level=debug "$D/agent.log" | tail -3)"; return 1; }
    assert_contains "$(proxy 'j["lastNack"]["reason"]')" "proxy.ip" "the NACK's reason (the renderer's message)" || return
    assert_contains "$(handshake)" "CN = web.$NS.cluster.local" "the last good configuration serves" || return
    assert_eq "$(ready_code)" 200 "still ready" || return
    ok "pod IP back" "$K" patch pod -n "$NS" a --subresource=status --type=merge \
        -p '{"status":{"podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}' || return
    wait_for 20 synced || { t_fail "not synced after the NACK: $(proxy 'j' 2>&1)"; return 1; }
}

t_run "setup: weftd with its stream, a meshed pod with an IP, a token bound to it" case_setup
t_run "the agent holds the stream: document rendered, applied, ACKed; ready" case_stream
t_run "a document the agent cannot run: NACK with the reason, the last good one serves" case_nack
t_run "weftd stopped: HAProxy serves, the agent stays ready; back: synced again" case_weftd_away
t_summary
