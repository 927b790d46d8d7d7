#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# weft-agent holding weftd's config stream (push/'s client) with the real HAProxy: the pod's
# certificate from a token bound to the pod, the hello naming the pod its certificate proves,
# the document rendered and applied before the ACK (weftd's /debug/proxies: synced with that
# hash), readiness; a document the agent refuses (the pod's IP gone): NACK, the last good
# configuration serves; an AccessPolicy on the pod stays Programmed (its generation runs), its
# next generation is Programmed=False Rejected with the agent's reason; weftd stopped: HAProxy keeps serving and the agent stays
# ready; weftd back: the agent reconnects and is synced again. Lifecycle: SIGTERM stops a native-mode agent at
# once; a classic-mode one (WEFT_SIDECAR_MODE=classic) keeps serving, not ready, until weftd
# says on the stream that the app containers exited for good (the pod deleted), then exits 0;
# a Job's (WEFT_EXIT_ON_COMPLETION=true) exits 0 once its app completed, without SIGTERM.
# Agent and HAProxy on loopback with free ports.
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
    STREAM_AGENT=$AGENT_PID
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
# ap_programmed: the Programmed condition of AccessPolicy web-callers, "status|reason|message"
ap_programmed() {
    "$K" get ap web-callers -n "$NS" -o 'jsonpath={.status.conditions[?(@.type=="Programmed")].status}|{.status.conditions[?(@.type=="Programmed")].reason}|{.status.conditions[?(@.type=="Programmed")].message}'
}

ap_rejected() { [ "$(ap_programmed | cut -d'|' -f2)" = Rejected ]; }

case_nack() {
    local rc
    # a policy on the pod: Programmed once the agent runs it
    cat >"$D/ap.yaml" <<EOF
apiVersion: mesh.weft.dev/v1alpha1
kind: AccessPolicy
metadata: {name: web-callers, namespace: $NS}
spec:
  selector: {matchLabels: {app: web}}
  action: Allow
  from: [{serviceAccount: {name: web}}]
EOF
    ok "policy" "$K" apply -f "$D/ap.yaml" || return
    ok "Programmed" "$K" wait -n "$NS" --for=condition=Programmed ap/web-callers --timeout=30s || return
    assert_eq "$(ap_programmed)" "True|Programmed|acknowledged by all 1 proxies it affects" "the policy runs" || return
    ok "pod IP gone" "$K" patch pod -n "$NS" a --subresource=status --type=merge \
        -p '{"status":{"podIP":null,"podIPs":null}}' || return
    wait_for 20 sh -c "[ \"\$(curl -s -H 'Authorization: Bearer $(wd_token)' http://127.0.0.1:${WD_ADMIN[a]}/debug/proxies/$NS/a | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"sync\"])')\" = rejected ]" ||
        { t_fail "no NACK: $(proxy 'j' 2>&1); $(grep -v level=debug "$D/agent.log" | tail -3)"; return 1; }
    assert_contains "$(proxy 'j["lastNack"]["reason"]')" "proxy.ip" "the NACK's reason (the renderer's message)" || return
    assert_contains "$(handshake)" "CN = web.$NS.cluster.local" "the last good configuration serves" || return
    assert_eq "$(ready_code)" 200 "still ready" || return
    nack_policy
    rc=$?
    ok "pod IP back" "$K" patch pod -n "$NS" a --subresource=status --type=merge \
        -p '{"status":{"podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}' || return
    wait_for 20 synced || { t_fail "not synced after the NACK: $(proxy 'j' 2>&1)"; return 1; }
    [ "$rc" = 0 ] || return
    ok "Programmed again" "$K" wait -n "$NS" --for=condition=Programmed ap/web-callers --timeout=20s || return
    ok "policy removed" "$K" delete ap web-callers -n "$NS" || return
    wait_for 20 synced || { t_fail "not synced after the policy's removal: $(proxy 'j' 2>&1)"; return 1; }
}

# While the agent refuses the pod's documents: the policy's current generation is still in
# effect (the refused change was the IP's), so it stays Programmed; a new generation of it
# cannot reach the proxy: Rejected, with the agent's reason.
nack_policy() {
    assert_eq "$(ap_programmed | cut -d'|' -f1)" True "the policy's generation 1 still runs" || return
    ok "policy generation 2" "$K" patch ap web-callers -n "$NS" --type=merge \
        -p '{"spec":{"from":[{"serviceAccount":{"name":"web"}},{"namespace":"monitoring"}]}}' || return
    wait_for 10 ap_rejected || { t_fail "not Rejected: $(ap_programmed)"; return 1; }
    assert_match "$(ap_programmed)" "^False\|Rejected\|1 of 1 proxies refused their configuration: $NS/a: .*proxy\.ip" "the condition names the pod and the reason" || return
    assert_eq "$(wd_metric a 'weft_proxy_config_sync{state="rejected"}')" 1 "weft_proxy_config_sync{rejected}"
}

# agent_start LOGNAME TOKENFILE [ENV=VALUE...]: an agent for the pod of TOKENFILE on fresh ports
# (IN_PORT, HEALTH_PORT), not daemon-tracked (these cases check how it exits themselves)
agent_start() {
    local log=$1 token=$2
    shift 2
    IN_PORT=$(free_port)
    HEALTH_PORT=$(free_port)
    env POD_IP=127.0.0.1 "$@" "$AGENT" --log-level debug --control-plane "127.0.0.1:${WD_CERTS[a]}" \
        --stream-port "${WD_STREAM[a]}" --stream-server-name weftd.weft-system.svc \
        --token-file "$token" --ca-file "$D/bundle.pem" --run-dir "$D/run-$log" \
        --health-listen "127.0.0.1:$HEALTH_PORT" --inbound-port "$IN_PORT" \
        --outbound-port "$(free_port)" --metrics-port "$(free_port)" >"$D/$log.log" 2>&1 &
    AGENT_PID=$!
    bg_track "$AGENT_PID"
}

# app_state POD STATE: POD's status says its app container is in STATE (a containerStatuses state)
app_state() {
    ok "$1: app $2" "$K" patch pod -n "$NS" "$1" --subresource=status --type=merge -p \
        "{\"status\":{\"containerStatuses\":[{\"name\":\"app\",\"image\":\"app:1\",\"imageID\":\"\",\"ready\":false,\"restartCount\":0,\"state\":$2},{\"name\":\"weft-proxy\",\"image\":\"weft/proxy:dev\",\"imageID\":\"\",\"ready\":true,\"restartCount\":0,\"state\":{\"running\":{}}}]}}"
}

alive() { kill -0 "$1" 2>/dev/null; }
gone() { ! kill -0 "$1" 2>/dev/null; }

# the exit status of a finished background agent
exit_of() {
    wait "$1" 2>/dev/null
    echo $?
}

# exits_clean LOGNAME T0 EVENT LOGLINE: AGENT_PID exits within 10 s (time since T0 printed), status
# 0, its log has LOGLINE, and HAProxy no longer serves
exits_clean() {
    local ms
    wait_for 10 gone "$AGENT_PID" || { t_fail "$1: the agent still runs: $(grep -v level=debug "$D/$1.log" | tail -3)"; return 1; }
    ms=$((($(date +%s%N) - $2) / 1000000))
    echo "    $1: the agent exited ${ms} ms after $3"
    assert_eq "$(exit_of "$AGENT_PID")" 0 "$1: exit status" || return
    assert_contains "$(cat "$D/$1.log")" "$4" "$1: why it stopped" || return
    [ -z "$(handshake)" ] || { t_fail "$1: HAProxy still serves after the agent exited"; return 1; }
}

# Native mode (no WEFT_SIDECAR_MODE): the kubelet sends SIGTERM after the apps exited, so the
# agent stops at once. Classic mode: SIGTERM comes with the apps' own; the proxy keeps serving
# (readiness 503) until weftd says the apps have exited for good, then exits 0 with HAProxy.
case_classic_sigterm() {
    local t0 ms
    daemon_killed "$STREAM_AGENT" # its exit is checked here
    t0=$(date +%s%N)
    kill -TERM "$STREAM_AGENT"
    wait_for 5 gone "$STREAM_AGENT" || { t_fail "native mode: the agent did not stop on SIGTERM"; return 1; }
    ms=$((($(date +%s%N) - t0) / 1000000))
    echo "    native mode: stopped ${ms} ms after SIGTERM"
    assert_eq "$(exit_of "$STREAM_AGENT")" 0 "native mode: exit status" || return
    app_state a '{"running":{"startedAt":"2026-01-01T00:00:00Z"}}' || return
    agent_start classic "$D/token" WEFT_SIDECAR_MODE=classic
    wait_for 20 synced || { t_fail "classic agent not synced: $(grep -v level=debug "$D/classic.log" | tail -5)"; return 1; }
    wait_for 10 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HEALTH_PORT/healthz/ready)\" = 200 ]" ||
        { t_fail "classic agent not ready"; return 1; }
    assert_contains "$(cat "$D/classic.log")" "sidecar_mode=classic exit_on_completion=no" "mode logged" || return
    kill -TERM "$AGENT_PID"
    sleep 2
    alive "$AGENT_PID" || { t_fail "classic mode: the agent stopped on SIGTERM while the app runs: $(tail -3 "$D/classic.log")"; return 1; }
    assert_contains "$(handshake)" "CN = web.$NS.cluster.local" "classic mode, SIGTERM'd: still serving" || return
    assert_eq "$(ready_code)" 503 "readiness after SIGTERM" || return
    assert_contains "$(curl -s "http://127.0.0.1:$HEALTH_PORT/healthz/ready")" "pod stopping: serving until the app containers have exited" "why not ready" || return
    # the app terminated but would be restarted (restartPolicy Always, pod not deleted)
    app_state a '{"terminated":{"exitCode":0,"reason":"Completed"}}' || return
    sleep 1.5
    alive "$AGENT_PID" || { t_fail "stopped although the kubelet restarts the app"; return 1; }
    assert_contains "$(handshake)" "CN = web.$NS.cluster.local" "still serving" || return
    # the pod is deleted (a finalizer keeps it listed): the apps are gone for good
    ok "hold" "$K" patch pod -n "$NS" a --type=merge -p '{"metadata":{"finalizers":["test.weft.dev/hold"]}}' || return
    t0=$(date +%s%N)
    ok "delete" "$K" delete pod -n "$NS" a --wait=false || return
    exits_clean classic "$t0" "the pod's deletion (appsExited on the stream)" \
        'msg="stopping: the app containers have exited" reason="app exited 0; the pod is being deleted" why=SIGTERM' || return
    ok "release" "$K" patch pod -n "$NS" a --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]'
}

# A Job's pod in classic mode (WEFT_EXIT_ON_COMPLETION=true): once its app terminated with
# restartPolicy Never, the agent exits 0 on its own (no SIGTERM), so the pod can complete.
case_job_completion() {
    local t0
    cat >"$D/job.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: j, namespace: $NS, labels: {app: job}}
spec:
  serviceAccountName: web
  restartPolicy: Never
  containers:
  - {name: weft-proxy, image: weft/proxy:dev}
  - {name: app, image: app:1}
EOF
    ok "job pod" "$K" apply -f "$D/job.yaml" || return
    ok "pod IP" "$K" patch pod -n "$NS" j --subresource=status --type=merge \
        -p '{"status":{"phase":"Running","podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}' || return
    app_state j '{"running":{"startedAt":"2026-01-01T00:00:00Z"}}' || return
    okv "uid" "$K" get pod -n "$NS" j -o 'jsonpath={.metadata.uid}' || return
    okv "token bound to j" "$K" create token -n "$NS" web --audience weft --duration 1h \
        --bound-object-kind Pod --bound-object-name j --bound-object-uid "$OUT" || return
    printf '%s\n' "$OUT" >"$D/token-j"
    agent_start job "$D/token-j" WEFT_SIDECAR_MODE=classic WEFT_EXIT_ON_COMPLETION=true
    wait_for 20 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HEALTH_PORT/healthz/ready)\" = 200 ]" ||
        { t_fail "job agent not ready: $(grep -v level=debug "$D/job.log" | tail -5)"; return 1; }
    sleep 1
    alive "$AGENT_PID" || { t_fail "the job's agent left while the app runs"; return 1; }
    t0=$(date +%s%N)
    app_state j '{"terminated":{"exitCode":0,"reason":"Completed"}}' || return
    exits_clean job "$t0" "the app's termination was reported" \
        'reason="app exited 0; restartPolicy Never" why=WEFT_EXIT_ON_COMPLETION' || return
}

# a root rotation in weftd (docs/ca.md: add the new root, switch the signer, remove the old
# root) reaches the agent on the stream (`trust`) within seconds, without waiting for a renewal
# (certificates here live an hour) and without restarting HAProxy's master; mutual-TLS
# handshakes to the inbound listener run throughout: none fails, a peer with a certificate from
# the new root is accepted once the bundle holds it, and one from the old root is refused once
# the old root is gone.
new_client() { # OUT_FILE: a mesh client certificate issued by weftd now
    local tok
    tok=$("$K" create token -n "$NS" web --audience weft) || return 1
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
        -subj /CN=x -out "$1.csr" 2>/dev/null || return 1
    curl -sS --cacert "$D/roots.pem" -H "Authorization: Bearer $tok" \
        -H "Content-Type: application/pkcs10" --data-binary "@$1.csr" \
        "https://127.0.0.1:${WD_CERTS[a]}/v1/certificates" | pyjson 'j["certificateChain"]' >"$1.tmp" || return 1
    cat "$1.key" >>"$1.tmp" && mv "$1.tmp" "$1"
}
hs_with() { # CLIENT_PEM: "ok" when the inbound listener accepts that client certificate
    python3 - "$IN_PORT" "$1" "$D/roots.pem" <<'PY'
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False
ctx.load_verify_locations(sys.argv[3]); ctx.load_cert_chain(sys.argv[2])
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s, ctx.wrap_socket(s) as t:
        t.settimeout(2)
        try:
            t.sendall(b"GET / HTTP/1.0\r\n\r\n"); t.recv(1)
        except ssl.SSLError:
            raise
        except OSError:
            pass
    print("ok")
except (OSError, ssl.SSLError) as e:
    print("refused", e)
PY
}
master_cmd() { python3 tests/e2e/hacli.py "$D/run/master.sock" "$1"; }
trust_installs() { grep -c 'msg="trust bundle installed"' "$D/agent.log"; }
case_rotation() {
    local m0 n0 t0 t1 new old2 total fails
    m0=$(master_cmd "show proc" | awk '$2 == "master" {print $1; exit}')
    assert_match "$m0" '^[0-9]+$' "HAProxy master PID" || return
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/O=weft/CN=weft root 2" -keyout "$D/root2.key" -out "$D/root2.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return
    cat "$D/bundle.pem" "$D/root2.pem" >"$D/roots.pem"
    cp "$D/client.pem" "$D/traffic.pem"
    rm -f "$D/hs.stop"
    python3 tests/e2e/hs_loop.py 127.0.0.1 "$IN_PORT" "$D/traffic.pem" "$D/roots.pem" "$D/hs.stop" "$D/hs.log" &
    bg_track $!
    sleep 1
    n0=$(trust_installs)
    # step 1: the new root joins the bundle
    new=$(cat "$D/bundle.pem" "$D/root2.pem" | base64 -w0)
    t0=$(date +%s%N)
    ok "step 1: add the new root" "$K" patch secret -n weft-system weft-ca --type merge -p "{\"data\":{\"ca.crt\":\"$new\"}}" || return
    wait_for 15 sh -c "[ \$(grep -c 'msg=\"trust bundle installed\" roots=2' '$D/agent.log') -ge 1 ]" ||
        { t_fail "the agent did not install the two-root bundle: $(grep -v level=debug "$D/agent.log" | tail -5)"; return 1; }
    t1=$(date +%s%N)
    echo "    two-root bundle installed by the agent $(((t1 - t0) / 1000000)) ms after the Secret changed"
    assert_eq "$(grep -c 'msg="certificate installed"' "$D/agent.log")" 1 "no renewal was needed" || return
    # step 2: the signer switches; a peer with a certificate from the new root is accepted
    ok "step 2: switch the signer" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"tls.crt\":\"$(base64 -w0 <"$D/root2.pem")\",\"tls.key\":\"$(base64 -w0 <"$D/root2.key")\"}}" || return
    wait_for 15 grep -q 'CA signer switched' "${WD_LOG[a]}" || { t_fail "signer not switched"; return 1; }
    new_client "$D/client2.pem" || { t_fail "no certificate from the new root"; return 1; }
    okv "the new client chains to the new root" openssl verify -CAfile "$D/root2.pem" "$D/client2.pem" || return
    assert_eq "$(hs_with "$D/client2.pem")" ok "a peer from the new root, accepted" || return
    cp "$D/client2.pem" "$D/traffic.pem.tmp" && mv "$D/traffic.pem.tmp" "$D/traffic.pem"
    sleep 1
    # step 3: the old root leaves the bundle
    ok "step 3: remove the old root" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"ca.crt\":\"$(base64 -w0 <"$D/root2.pem")\"}}" || return
    wait_for 15 sh -c "[ \$(grep -c 'msg=\"trust bundle installed\" roots=1' '$D/agent.log') -ge 1 ]" ||
        { t_fail "the agent did not drop the old root: $(grep -v level=debug "$D/agent.log" | tail -5)"; return 1; }
    assert_contains "$(hs_with "$D/client.pem")" "refused" "a peer from the old root, once it left the bundle" || return
    assert_eq "$(hs_with "$D/client2.pem")" ok "a peer from the new root" || return
    sleep 1
    touch "$D/hs.stop"
    sleep 1
    old2=$(master_cmd "show proc" | awk '$2 == "master" {print $1; exit}')
    assert_eq "$old2" "$m0" "HAProxy's master across the rotation (no restart)" || return
    assert_eq "$(($(trust_installs) - n0))" 2 "bundles installed (two changes)" || return
    total=$(wc -l <"$D/hs.log")
    fails=$(grep -c '^fail' "$D/hs.log")
    echo "    $total handshakes during the rotation, $fails failed; $(grep -c '^ok' "$D/hs.log") ok"
    [ "$total" -ge 50 ] || { t_fail "too few handshakes ($total)"; return 1; }
    assert_eq "$fails" 0 "failed handshakes during the rotation: $(grep '^fail' "$D/hs.log" | head -3)" || return
    assert_not_contains "$(cat "$D/agent.log")" "HAProxy's master exited" "HAProxy crashed" || return
    # what the cluster mounts from now on (the ConfigMap follows the Secret), and a current client
    cp "$D/root2.pem" "$D/bundle.pem" && cp "$D/client2.pem" "$D/client.pem"
}

t_run "setup: weftd with its stream, a meshed pod with an IP, a token bound to it" case_setup
t_run "the agent holds the stream: document rendered, applied, ACKed; ready" case_stream
t_run "a document the agent cannot run: NACK with the reason, the last good one serves, the policy's Programmed names it" case_nack
t_run "weftd stopped: HAProxy serves, the agent stays ready; back: synced again" case_weftd_away
t_run "a root rotation reaches the agent on the stream; handshakes never fail" case_rotation
t_run "SIGTERM: native mode stops at once; classic mode serves until weftd says the apps exited" case_classic_sigterm
t_run "a Job's pod in classic mode: the agent exits 0 once the app completed" case_job_completion
t_summary
