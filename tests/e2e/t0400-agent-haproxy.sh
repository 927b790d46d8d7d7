#!/usr/bin/env bash
# weft-agent with the real HAProxy and a real weftd (kubelite's TokenReview) for its
# certificate: the key made in memory and the certificate from POST /v1/certificates with a
# ServiceAccount token, readiness on the health port flipping once HAProxy serves a first
# configuration, 60 s certificates renewed through the runtime API with the HAProxy worker's PID
# unchanged and new handshakes presenting the new serial, and HAProxy's master SIGKILL'd:
# serving again within a second. The agent runs on this machine's loopback with free ports (no
# network namespace: nothing here needs traffic capture).
. "$(dirname "$0")/lib.sh"

K="$KUBECTL_DIR/kubectl.1.33"
WEFTD=$KL_REPO/$BUILD/bin/weftd
AGENT=${AGENT:-$KL_REPO/$BUILD/bin/weft-agent}
WFE_TOOL=$KL_REPO/$BUILD/tests/wfe-tool
HAPROXY=${HAPROXY:-haproxy}
DOC=$KL_REPO/tests/fixtures/mesh/split-uneven/expected/default.productpage-1.json
D=$KL_TMP/agent

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# master_cmd CMD: one command on HAProxy's master socket
master_cmd() {
    python3 - "$D/run/master.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n"); s.shutdown(socket.SHUT_WR)
d = b""
while True:
    x = s.recv(65536)
    if not x: break
    d += x
print(d.decode(), end="")
PY
}
worker_pid() { master_cmd "show proc" | awk '$2 == "worker" {print $1; exit}'; }
master_pid() { master_cmd "show proc" | awk '$2 == "master" {print $1; exit}'; }

# serial_seen: the serial of the certificate the inbound listener presents (a client certificate
# from the same CA: the listener requires one)
serial_seen() {
    echo | timeout 5 openssl s_client -connect "127.0.0.1:$IN_PORT" -cert "$D/client.pem" \
        -key "$D/client.pem" -CAfile "$D/root.pem" -verify_return_error 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}
ready_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HEALTH_PORT/healthz/ready"; }
installs() { grep -c 'msg="certificate installed"' "$D/agent.log"; }

t_begin "tools"
if ! command -v "$HAPROXY" >/dev/null; then
    t_skip "haproxy is not installed"
    t_summary
fi
have_tool "$AGENT" && have_tool "$WFE_TOOL" || t_summary
mkdir -p "$D" && t_pass

case_start() {
    kl_start || return
    ok "namespace" "$K" create namespace weft-system || return
    CERTS_PORT=$(free_port)
    WD_ADMIN=$(free_port)
    "$WEFTD" --kubeconfig "$KUBECONFIG" --namespace weft-system --identity a \
        --admin-listen "127.0.0.1:$WD_ADMIN" --certs-listen "127.0.0.1:$CERTS_PORT" \
        --webhook-listen "127.0.0.1:$(free_port)" --cert-ttl 60 >"$D/weftd.log" 2>&1 &
    WD_PID=$!
    daemon_track "$WD_PID" "weftd"
    wait_for 20 sh -c "curl -s http://127.0.0.1:$WD_ADMIN/readyz | grep -q '^ca loaded: yes'" ||
        { t_fail "weftd: CA not loaded: $(tail -5 "$D/weftd.log")"; return 1; }
    okv "root" "$K" get secret -n weft-system weft-ca -o 'jsonpath={.data.ca\.crt}' || return
    printf '%s' "$OUT" | base64 -d >"$D/root.pem"
    ok "service account" "$K" create serviceaccount -n default productpage || return
    okv "token" "$K" create token -n default productpage --audience weft --duration 1h || return
    printf '%s\n' "$OUT" >"$D/token"
    # a client of the mesh: a certificate from the same CA, through the same endpoint
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/client.key" \
        -subj /CN=client -out "$D/client.csr" 2>/dev/null || { t_fail "client CSR"; return 1; }
    BODY=$(curl -sS --cacert "$D/root.pem" -H "Authorization: Bearer $(cat "$D/token")" \
        -H "Content-Type: application/pkcs10" --data-binary "@$D/client.csr" \
        "https://127.0.0.1:$CERTS_PORT/v1/certificates") || { t_fail "client certificate"; return 1; }
    printf '%s' "$BODY" | jq -r .certificateChain >"$D/client.pem"
    cat "$D/client.key" >>"$D/client.pem"
    # the pod at 127.0.0.1: the inbound listener forwards to the app there
    jq '.proxy.ip = "127.0.0.1"' "$DOC" >"$D/doc.json"
    IN_PORT=$(free_port)
    OUT_PORT=$(free_port)
    MET_PORT=$(free_port)
    HEALTH_PORT=$(free_port)
    # the app: an HTTP server with /ok; a probe to a port where nothing listens
    APP_PORT=$(free_port)
    DEAD_PORT=$(free_port)
    mkdir -p "$D/www" && echo ok >"$D/www/ok"
    (cd "$D/www" && exec python3 -m http.server --bind 127.0.0.1 "$APP_PORT" >/dev/null 2>&1) &
    bg_track $!
    PROBES="{\"/app-health/app/livez\": {\"httpGet\": {\"scheme\": \"HTTP\", \"port\": $APP_PORT, \"path\": \"/ok\", \"httpHeaders\": [{\"name\": \"X-Probe\", \"value\": \"kubelet\"}]}, \"timeoutSeconds\": 1}, \"/app-health/app/startupz\": {\"httpGet\": {\"port\": $APP_PORT, \"path\": \"/missing\"}, \"timeoutSeconds\": 1}, \"/app-health/app/readyz\": {\"tcpSocket\": {\"port\": $DEAD_PORT}, \"timeoutSeconds\": 1}, \"/app-health/db/readyz\": {\"tcpSocket\": {\"port\": $APP_PORT}, \"timeoutSeconds\": 1}}"
    WEFT_APP_PROBES=$PROBES POD_IP=127.0.0.1 "$AGENT" --log-level debug --control-plane "127.0.0.1:$CERTS_PORT" \
        --token-file "$D/token" --ca-file "$D/root.pem" --run-dir "$D/run" \
        --config-file "$D/doc.json" --health-listen "127.0.0.1:$HEALTH_PORT" \
        --inbound-port "$IN_PORT" --outbound-port "$OUT_PORT" --metrics-port "$MET_PORT" \
        >"$D/agent.log" 2>&1 &
    AGENT_PID=$!
    daemon_track "$AGENT_PID" "weft-agent"
    # the classic-mode postStart hook: holds until the agent is ready
    "$AGENT" --health-listen "127.0.0.1:$HEALTH_PORT" wait >"$D/wait.log" 2>&1 &
    WAIT_PID=$!
    bg_track "$WAIT_PID"
    kill -0 "$WAIT_PID" 2>/dev/null || { t_fail "weft-agent wait returned before the agent was ready: $(cat "$D/wait.log")"; return 1; }
    wait_for 20 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HEALTH_PORT/healthz/ready)\" = 200 ]" ||
        { t_fail "not ready within 20 s: $(curl -s "http://127.0.0.1:$HEALTH_PORT/healthz/ready"); $(tail -5 "$D/agent.log")"; return 1; }
    assert_contains "$(cat "$D/agent.log")" 'msg="configuration applied" how=start' "first configuration" || return
    wait_for 5 sh -c "! kill -0 $WAIT_PID 2>/dev/null" || { t_fail "weft-agent wait still waits with the agent ready"; return 1; }
    wait "$WAIT_PID"
    assert_eq "$?" 0 "weft-agent wait's exit status" || return
    assert_contains "$(cat "$D/agent.log")" 'spiffe_id=spiffe://cluster.local/ns/default/sa/productpage' "the identity the token names" || return
    assert_not_contains "$(cat "$D/agent.log" "$D/weftd.log")" "PRIVATE KEY" "key material in the logs" || return
    okv "run dir" stat -c '%a' "$D/run" "$D/run/pod.pem" || return
    assert_eq "$(printf '%s' "$OUT" | tr "\n" " " | sed "s/ $//")" "700 600" "modes of the run directory and the key file" || return
}

# 60 s certificates: renewed at about half-life through the runtime API; the worker stays the
# same process and new handshakes present the new certificate.
case_renewal() {
    local pid0 s0 s1 n0
    pid0=$(worker_pid)
    assert_match "$pid0" '^[0-9]+$' "worker PID" || return
    s0=$(serial_seen)
    assert_match "$s0" '^[0-9A-F]+$' "serial presented on the inbound port (a client with a mesh certificate)" || return
    n0=$(installs)
    # renewal is due 24-30 s after issuance; two renewals within 70 s
    wait_for 70 sh -c "[ \$(grep -c 'msg=\"certificate installed\"' '$D/agent.log') -ge $((n0 + 2)) ]" ||
        { t_fail "fewer than two renewals in 70 s: $(grep certificate "$D/agent.log" | tail -3)"; return 1; }
    s1=$(serial_seen)
    assert_match "$s1" '^[0-9A-F]+$' "serial after renewal" || return
    assert_ne "$s1" "$s0" "the serial new handshakes see" || return
    assert_eq "$(worker_pid)" "$pid0" "HAProxy worker PID across renewals (no reload)" ||
        { grep -v 'level=debug' "$D/agent.log" | tail -20; return 1; }
    assert_eq "$(master_cmd "show proc" | awk '$2 == "master" {print $3}')" 0 "master reloads" || return
    okv "leaf" sh -c "echo | openssl s_client -connect 127.0.0.1:$IN_PORT -cert $D/client.pem -key $D/client.pem -CAfile $D/root.pem 2>/dev/null | openssl x509 -noout -enddate" || return
    echo "    serials $s0 -> $s1, worker $pid0 unchanged; $OUT"
    # without a client certificate the handshake is refused (TLS 1.3: the alert comes with the
    # first read)
    run sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 openssl s_client -connect 127.0.0.1:$IN_PORT -CAfile $D/root.pem -ign_eof"
    assert_contains "$OUT" "alert certificate required" "openssl s_client without a client certificate" || return
}

# HAProxy's master SIGKILL'd (its worker follows it): the agent starts it again with the last
# good configuration, and the inbound listener serves within a second.
case_sigkill() {
    local m0 t0 t1 ms i served=0
    m0=$(master_pid)
    assert_match "$m0" '^[0-9]+$' "master PID" || return
    w0=$(worker_pid)
    t0=$(date +%s%N)
    kill -KILL "$m0" "$w0"
    for i in $(seq 200); do
        if [ -n "$(serial_seen)" ]; then
            served=1
            break
        fi
        sleep 0.01
    done
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    [ "$served" = 1 ] || { t_fail "not serving 2 s after SIGKILL: $(tail -5 "$D/agent.log")"; return 1; }
    echo "    serving again ${ms} ms after SIGKILL"
    [ "$ms" -lt 1000 ] || { t_fail "serving again after ${ms} ms (want < 1000)"; return 1; }
    assert_ne "$(master_pid)" "$m0" "a new master" || return
    assert_contains "$(cat "$D/agent.log")" "msg=\"HAProxy restarted with the last good configuration\"" "agent log" || return
    wait_for 5 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HEALTH_PORT/healthz/ready)\" = 200 ]" ||
        { t_fail "not ready again"; return 1; }
}

# readiness follows HAProxy: stopped (SIGSTOP on the worker: it answers nothing), not ready
case_readiness() {
    local w
    w=$(worker_pid)
    kill -STOP "$w"
    wait_for 15 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HEALTH_PORT/healthz/ready)\" = 503 ]"
    local rc=$? why
    why=$(curl -s "http://127.0.0.1:$HEALTH_PORT/healthz/ready")
    kill -CONT "$w"
    [ $rc -eq 0 ] || { t_fail "still ready with HAProxy's worker stopped"; return 1; }
    assert_contains "$why" "HAProxy does not answer" "why" || return
    wait_for 15 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HEALTH_PORT/healthz/ready)\" = 200 ]" ||
        { t_fail "not ready again"; return 1; }
}

# the kubelet's rewritten probes (docs/injection.md): the original check run over loopback
case_probes() {
    probe() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HEALTH_PORT$1"; }
    wait_for 10 sh -c "curl -sf http://127.0.0.1:$APP_PORT/ok >/dev/null" || { t_fail "the app did not start"; return 1; }
    assert_eq "$(probe /app-health/app/livez)" 200 "httpGet to the app's /ok" || return
    assert_eq "$(probe /app-health/app/startupz)" 503 "httpGet answered 404" || return
    assert_contains "$(curl -s "http://127.0.0.1:$HEALTH_PORT/app-health/app/startupz")" "HTTP 404" "why" || return
    assert_eq "$(probe /app-health/app/readyz)" 503 "tcpSocket to a closed port" || return
    assert_eq "$(probe /app-health/db/readyz)" 200 "tcpSocket to an open port" || return
    assert_eq "$(probe /app-health/nope/livez)" 404 "a probe the webhook did not write" || return
}

# /quitquitquit: POST only; from the pod itself (here loopback) it stops HAProxy and the agent
case_quit() {
    local m
    m=$(master_pid)
    assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HEALTH_PORT/quitquitquit")" 405 "GET" || return
    assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$HEALTH_PORT/quitquitquit")" 200 "POST from loopback" || return
    wait_for 10 sh -c "! kill -0 $AGENT_PID 2>/dev/null" || { t_fail "the agent still runs"; return 1; }
    wait "$AGENT_PID"
    assert_eq "$?" 0 "the agent's exit status" || return
    daemon_killed "$AGENT_PID"
    ! kill -0 "$m" 2>/dev/null || { t_fail "HAProxy's master $m still runs"; return 1; }
}

t_run "agent: certificate from weftd, HAProxy started, ready" case_start
t_run "60 s certificates renewed without a reload; new handshakes see the new serial" case_renewal
t_run "HAProxy SIGKILL'd: serving again within a second" case_sigkill
t_run "readiness reflects HAProxy's health" case_readiness
t_run "app probes forwarded over loopback" case_probes
t_run "/quitquitquit from the pod stops HAProxy and the agent" case_quit
t_summary
