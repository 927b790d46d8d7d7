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
master_cmd() { python3 "$KL_REPO/tests/e2e/hacli.py" "$D/run/master.sock" "$1"; }
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

# A root rotation with 60 s certificates: each renewal brings weftd's bundle. A changed bundle
# is loaded by a checked seamless reload (never `commit ssl ca-file`: in HAProxy 2.6.12 the
# certificate commits after one answer Success but new handshakes keep the old certificate, and
# the next one crashes the worker, docs/agent.md); renewals with an unchanged bundle stay on the
# runtime API. Observed: the master is never restarted, every renewal's certificate is the one
# new handshakes see (with `commit ssl ca-file` this failed at the first renewal after the
# bundle changed), and the bundle HAProxy uses follows each step.
serial_with() { # CLIENT_PEM CA_PEM: the serial the inbound listener presents to that client
    echo | timeout 5 openssl s_client -connect "127.0.0.1:$IN_PORT" -cert "$1" -key "$1" \
        -CAfile "$2" -verify_return_error 2>/dev/null | openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}
leaf_serial() { openssl x509 -in "$D/run/pod.pem" -noout -serial | sed 's/^serial=//'; }
next_install() { # N: wait for install number N+1
    wait_for 45 sh -c "[ \$(grep -c 'msg=\"certificate installed\"' '$D/agent.log') -gt $1 ]" ||
        { t_fail "no renewal within 45 s: $(grep -v level=debug "$D/agent.log" | tail -3)"; return 1; }
    sleep 0.5
}
master_reloads() { master_cmd "show proc" | awk '$2 == "master" {print $3}'; }
case_rotation() {
    local m0 r0 n s_before s round
    m0=$(master_pid)
    r0=$(master_reloads)
    assert_match "$r0" '^[0-9]+$' "master reload counter" || return
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/O=weft/CN=weft root 2" -keyout "$D/root2.key" -out "$D/root2.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return
    cat "$D/root.pem" "$D/root2.pem" >"$D/roots.pem"
    # step 1: the new root joins the bundle; the next renewal brings it: one reload
    ok "step 1: add the new root" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"ca.crt\":\"$(base64 -w0 <"$D/roots.pem")\"}}" || return
    wait_for 15 sh -c "grep -q 'trust bundle changed' '$D/weftd.log'" || { t_fail "weftd did not take the new root"; return 1; }
    n=$(installs)
    next_install "$n" || return
    assert_contains "$(grep 'msg="certificate installed"' "$D/agent.log" | tail -1)" "roots=2" "renewal with the two-root bundle" || return
    assert_eq "$(serial_with "$D/client.pem" "$D/roots.pem")" "$(leaf_serial)" "the renewal that changed the bundle is presented" || return
    assert_eq "$(master_reloads)" "$((r0 + 1))" "master reloads after the bundle change" || return
    assert_eq "$(cmp -s "$D/run/bundle.pem" "$D/roots.pem" && echo same)" same "bundle.pem holds both roots" || return
    # step 2: the signer switches; renewals from the new root go through the runtime API
    ok "step 2: switch the signer" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"tls.crt\":\"$(base64 -w0 <"$D/root2.pem")\",\"tls.key\":\"$(base64 -w0 <"$D/root2.key")\"}}" || return
    wait_for 15 sh -c "grep -q 'CA signer switched' '$D/weftd.log'" || { t_fail "signer not switched"; return 1; }
    for round in 1 2; do
        n=$(installs)
        s_before=$(serial_with "$D/client.pem" "$D/roots.pem")
        next_install "$n" || return
        s=$(serial_with "$D/client.pem" "$D/roots.pem")
        assert_ne "$s" "$s_before" "renewal $round after the bundle change: new handshakes see a new serial" || return
        assert_eq "$s" "$(leaf_serial)" "renewal $round: the presented certificate is pod.pem's" || return
    done
    okv "the presented leaf chains to the new root" sh -c "echo | timeout 5 openssl s_client -connect 127.0.0.1:$IN_PORT -cert $D/client.pem -key $D/client.pem -CAfile $D/root2.pem -verify_return_error 2>&1 | grep -c 'Verify return code: 0'" || return
    assert_eq "$(master_reloads)" "$((r0 + 1))" "no reload for renewals with an unchanged bundle" || return
    # a mesh client from the new root (the token's ServiceAccount, through the endpoint)
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/client2.key" \
        -subj /CN=client2 -out "$D/client2.csr" 2>/dev/null || { t_fail "client CSR"; return 1; }
    curl -sS --cacert "$D/roots.pem" -H "Authorization: Bearer $(cat "$D/token")" \
        -H "Content-Type: application/pkcs10" --data-binary "@$D/client2.csr" \
        "https://127.0.0.1:$CERTS_PORT/v1/certificates" | jq -r .certificateChain >"$D/client2.pem" || { t_fail "client certificate"; return 1; }
    cat "$D/client2.key" >>"$D/client2.pem"
    assert_eq "$(serial_with "$D/client2.pem" "$D/roots.pem")" "$(leaf_serial)" "a client from the new root is accepted" || return
    # step 3: the old root leaves; the next renewal brings the one-root bundle: one more reload
    ok "step 3: remove the old root" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"ca.crt\":\"$(base64 -w0 <"$D/root2.pem")\"}}" || return
    wait_for 15 sh -c "grep -q 'root removed from the trust bundle' '$D/weftd.log'" || { t_fail "weftd kept the old root"; return 1; }
    n=$(installs)
    next_install "$n" || return
    assert_contains "$(grep 'msg="certificate installed"' "$D/agent.log" | tail -1)" "roots=1" "renewal with the one-root bundle" || return
    assert_eq "$(serial_with "$D/client2.pem" "$D/root2.pem")" "$(leaf_serial)" "after the second bundle change, the renewal is presented" || return
    run sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 openssl s_client -connect 127.0.0.1:$IN_PORT -cert $D/client.pem -key $D/client.pem -CAfile $D/root2.pem -ign_eof"
    assert_contains "$OUT" "alert unknown ca" "a client from the removed root, refused" || return
    n=$(installs)
    next_install "$n" || return
    assert_eq "$(serial_with "$D/client2.pem" "$D/root2.pem")" "$(leaf_serial)" "the renewal after it, presented" || return
    assert_eq "$(master_reloads)" "$((r0 + 2))" "master reloads after the second bundle change" || return
    assert_eq "$(master_pid)" "$m0" "HAProxy's master across the rotation (never restarted)" || return
    assert_not_contains "$(cat "$D/agent.log")" "HAProxy's master exited" "HAProxy crashed" || return
    echo "    5 renewals, 2 bundle changes: $(($(master_reloads) - r0)) reloads, master $m0 throughout, every renewal presented"
    # the cases below talk to the inbound listener as a mesh client of the current root
    cp "$D/client2.pem" "$D/client.pem" && cp "$D/root2.pem" "$D/root.pem"
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

# Merged metrics where the webhook's annotations point Prometheus (prometheus.io/port 15020,
# path /stats/prometheus): the agent's own families, then HAProxy's exporter output (15090),
# in valid text format with every family declared once.
case_metrics() {
    local body na fams
    okv "scrape" curl -sf -o "$D/scrape.txt" -w '%{content_type}' "http://127.0.0.1:$HEALTH_PORT/stats/prometheus" || return
    assert_contains "$OUT" "text/plain; version=0.0.4" "content type" || return
    body=$(cat "$D/scrape.txt")
    na=$(date -d "$(openssl x509 -in "$D/run/pod.pem" -noout -enddate | sed 's/notAfter=//')" +%s)
    assert_contains "$body" "weft_agent_certificate_expiry_timestamp_seconds $na" "certificate expiry = pod.pem's notAfter" || return
    assert_contains "$body" "weft_agent_ready 1" "ready" || return
    assert_contains "$body" "weft_agent_config_applied_total{how=\"start\"} 1" "first configuration" || return
    assert_contains "$body" 'weft_agent_config_stream_state{state="none"} 1' "no stream (--config-file)" || return
    assert_contains "$body" "weft_agent_haproxy_reloads_total{result=\"ok\",reason=\"bundle\"} 2" "the rotation's two bundle reloads" || return
    assert_contains "$body" "weft_agent_haproxy_scrape_ok 1" "HAProxy's exporter answered" || return
    # HAProxy's part: the same families its exporter serves on the metrics port
    curl -sf "http://127.0.0.1:$MET_PORT/metrics" | awk '$1 == "#" && $2 == "TYPE" {print $3}' | sort >"$D/hp.fams"
    awk '$1 == "#" && $2 == "TYPE" && $3 ~ /^haproxy_/ {print $3}' "$D/scrape.txt" | sort >"$D/merged.fams"
    [ -s "$D/hp.fams" ] || { t_fail "HAProxy's exporter served nothing"; return 1; }
    assert_eq "$(cat "$D/merged.fams")" "$(cat "$D/hp.fams")" "HAProxy's families in the merged scrape" || return
    # the text format: samples of declared families, each family declared once
    run python3 - "$D/scrape.txt" <<'PY'
import re, sys
fams, cur, n = set(), None, 0
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$')
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if not line or line.startswith("# HELP"):
        continue
    if line.startswith("# TYPE "):
        cur = line.split()[2]
        assert cur not in fams, "declared twice: " + cur
        fams.add(cur)
        continue
    m = sample.match(line)
    assert m, "not a sample: " + line
    name = m.group(1)
    assert cur and (name == cur or name.startswith(cur + "_")), "sample outside its family: " + line
    n += 1
print(len(fams), "families,", n, "samples")
PY
    assert_eq "$RC" 0 "text format: $OUT" || return
    echo "    merged scrape: $OUT ($(wc -c <"$D/scrape.txt") bytes)"
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
t_run "a root rotation: bundle changes reload, every renewal is presented, no crash" case_rotation
t_run "HAProxy SIGKILL'd: serving again within a second" case_sigkill
t_run "readiness reflects HAProxy's health" case_readiness
t_run "app probes forwarded over loopback" case_probes
t_run "merged metrics on the health port: the agent's and HAProxy's" case_metrics
t_run "/quitquitquit from the pod stops HAProxy and the agent" case_quit
t_summary
