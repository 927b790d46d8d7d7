#!/usr/bin/env bash
# kubelite's pods/portforward without a cluster: a Node whose pod directory kubelite reads (the
# annotation kubelet-lite writes) and a Pod whose netns file names kubelite's own network
# namespace, so every forwarded connection goes to this host's 127.0.0.1 (kubelite enters no
# namespace: the pod's is its own). The real kubectl (1.33: SPDY in WebSocket; 1.27 and 1.33 with
# KUBECTL_PORT_FORWARD_WEBSOCKETS=false: SPDY), the API's errors, and the bounds through a raw
# SPDY client (tests/integration/pfclient.py):
#   kubectl-websocket  1.33 reaches testapp; 20 concurrent connections get whole answers;
#                      kubelite logged protocol=websocket
#   kubectl-spdy       1.27, and 1.33 told not to use WebSockets: the same over SPDY
#   every-kubectl      each installed kubectl 1.27-1.33 reaches testapp: 1.27-1.30 over SPDY,
#                      1.31-1.33 over WebSocket
#   two-ports          one kubectl port-forward for two ports (one session); svc/NAME :80 to the
#                      Service's targetPort
#   errors             unknown pod 404, a pod without a node 400, missing upgrade headers 400,
#                      a pod whose netns file is missing 404 "pod not found", a node without the
#                      annotation 400
#   streams            70 forwarded connections on one connection: 64 answered and forwarded,
#                      the other 6 pairs (12 streams) refused with RST_STREAM REFUSED_STREAM
#   frame              a frame of 2 MiB announced: GOAWAY PROTOCOL_ERROR, connection closed
#   idle               --stream-idle-timeout 2: GOAWAY and close after 2 s without traffic
#   sessions           66 upgrades held at once: 64 get 101, 2 get 429
#   flood              200 MiB sent to a socket nobody reads: kubelite stops reading the client
#                      (TCP pushes back) and its resident memory grows by less than 8 MiB
. "$(dirname "$0")/lib.sh"

NODE=pf-node
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
K="$KUBECTL_DIR/kubectl.1.33"
PF=/api/v1/namespaces/default/pods/app/portforward

# forward_checks WHAT: GET / and 20 concurrent /bytes through the port-forward at PF_PORT
forward_checks() {
    local n=0 i
    okv "$1: GET /" curl -s -m 10 "http://127.0.0.1:$PF_PORT/" || return 1
    assert_eq "$OUT" app "$1: testapp's answer" || return 1
    seq 20 | xargs -P 20 -I{} curl -s -m 20 -o "$KL_TMP/bytes.{}" \
        "http://127.0.0.1:$PF_PORT/bytes?n=16384"
    for i in $(seq 20); do
        [ "$(tr -d x <"$KL_TMP/bytes.$i" | wc -c)" = 0 ] &&
            [ "$(wc -c <"$KL_TMP/bytes.$i")" = 16384 ] && n=$((n + 1))
        rm -f "$KL_TMP/bytes.$i"
    done
    assert_eq "$n" 20 "$1: whole answers of 20 concurrent connections"
}

case_kubectl_websocket() {
    pf_start ws "$KUBECTL_DIR/kubectl.1.33" pod/app ":$APP_PORT" || return 1
    forward_checks "kubectl 1.33" || return 1
    assert_eq "$(pf_protocol "$KL_LOG")" websocket "kubectl 1.33's protocol" || return 1
    pf_stop
}

case_kubectl_spdy() {
    pf_start old "$KUBECTL_DIR/kubectl.1.27" pod/app ":$APP_PORT" || return 1
    forward_checks "kubectl 1.27" || return 1
    assert_eq "$(pf_protocol "$KL_LOG")" spdy "kubectl 1.27's protocol" || return 1
    pf_stop
    KUBECTL_PORT_FORWARD_WEBSOCKETS=false pf_start nows "$KUBECTL_DIR/kubectl.1.33" pod/app \
        ":$APP_PORT" || return 1
    forward_checks "kubectl 1.33 without WebSockets" || return 1
    assert_eq "$(pf_protocol "$KL_LOG")" spdy "kubectl 1.33's protocol without WebSockets" || return 1
    pf_stop
}

case_every_kubectl() {
    local v want
    for v in 27 28 29 30 31 32 33; do
        [ -x "$KUBECTL_DIR/kubectl.1.$v" ] || { t_fail "kubectl.1.$v is not installed"; return 1; }
        pf_start "v$v" "$KUBECTL_DIR/kubectl.1.$v" pod/app ":$APP_PORT" || return 1
        okv "kubectl 1.$v: GET /" curl -s -m 10 "http://127.0.0.1:$PF_PORT/" || return 1
        assert_eq "$OUT" app "kubectl 1.$v: testapp's answer" || return 1
        want=spdy
        [ "$v" -ge 31 ] && want=websocket
        assert_eq "$(pf_protocol "$KL_LOG")" "$want" "kubectl 1.$v's protocol" || return 1
        echo "    kubectl 1.$v: $want"
        pf_stop
    done
}

# two ports on one port-forward (one connection, streams for both), and svc/NAME resolved by
# kubectl to a pod of the Service and its targetPort
case_two_ports() {
    local p2
    pf_start two "$K" pod/app ":$APP_PORT" ":$ECHO_PORT" || return 1
    p2=$(sed -nE 's/^Forwarding from 127\.0\.0\.1:([0-9]+) -> '"$ECHO_PORT"'$/\1/p' "$KL_TMP/pf-two.log")
    okv "first port" curl -s -m 10 "http://127.0.0.1:$PF_PORT/" || return 1
    assert_eq "$OUT" app "the first port's answer" || return 1
    okv "second port" python3 -c '
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
c.sendall(b"echo through port-forward"); c.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = c.recv(4096)
    if not d: break
    got += d
print(got.decode())' "$p2" || return 1
    assert_eq "$OUT" "echo through port-forward" "the second port's echo" || return 1
    assert_eq "$(grep -c 'msg="port-forward session"' "$KL_LOG")" "$(($(cat "$KL_TMP/sessions0") + 1))" \
        "one session for both ports" || return 1
    pf_stop
    ok "service" "$K" create -f - <<EOF || return 1
{"apiVersion":"v1","kind":"Service","metadata":{"name":"appsvc","namespace":"default"},
 "spec":{"selector":{"app":"app"},"ports":[{"port":80,"targetPort":$APP_PORT}]}}
EOF
    pf_start svc "$K" svc/appsvc :80 || return 1
    okv "svc/appsvc :80" curl -s -m 10 "http://127.0.0.1:$PF_PORT/" || return 1
    assert_eq "$OUT" app "the answer through svc/appsvc" || return 1
    pf_stop
}

# upgrade PATH [HEADER...]: a POST to PATH; CODE and OUT (the body)
upgrade() {
    local p=$1 h=()
    shift
    for x in "$@"; do h+=(-H "$x"); done
    CODE=$(curl -s -m 10 -o "$KL_TMP/up.out" -w '%{http_code}' -X POST "${h[@]}" "$SERVER$p")
    OUT=$(cat "$KL_TMP/up.out")
}

case_errors() {
    local spdy=("Connection: Upgrade" "Upgrade: SPDY/3.1" "X-Stream-Protocol-Version: portforward.k8s.io")
    upgrade /api/v1/namespaces/default/pods/nope/portforward "${spdy[@]}"
    assert_eq "$CODE" 404 "unknown pod" || return 1
    assert_contains "$OUT" 'pods \"nope\" not found' "unknown pod's message" || return 1
    upgrade /api/v1/namespaces/default/pods/unbound/portforward "${spdy[@]}"
    assert_eq "$CODE" 400 "pod without a node" || return 1
    assert_contains "$OUT" "pod unbound does not have a host assigned" "unbound's message" ||
        return 1
    upgrade "$PF"
    assert_eq "$CODE" 400 "no upgrade headers" || return 1
    assert_contains "$OUT" "unable to upgrade: missing upgrade headers in request" \
        "no upgrade headers' message" || return 1
    upgrade /api/v1/namespaces/default/pods/nonet/portforward "${spdy[@]}"
    assert_eq "$CODE" 404 "pod without a netns file" || return 1
    assert_contains "$OUT" 'pod not found (\"nonet_default\")' "the kubelet's words" || return 1
    upgrade /api/v1/namespaces/default/pods/elsewhere/portforward "${spdy[@]}"
    assert_eq "$CODE" 400 "a node that names no pod directory" || return 1
    assert_contains "$OUT" "node other cannot forward ports" "its message" || return 1
    fails "kubectl to a pod without a node" "$KUBECTL_DIR/kubectl.1.33" port-forward pod/nonet \
        :1 || return 1
    assert_contains "$OUT" 'pod not found ("nonet_default")' "kubectl's error" || return 1
}

case_streams() {
    okv "70 pairs" timeout 60 python3 tests/integration/pfclient.py "$SERVER" "$PF" streams 70 \
        "$ECHO_PORT" || return 1
    assert_eq "$OUT" "replied 128 refused 12 forwarded 64" "streams answered, refused, forwarded"
}

case_frame() {
    okv "2 MiB frame" timeout 30 python3 tests/integration/pfclient.py "$SERVER" "$PF" frame ||
        return 1
    assert_eq "$OUT" "goaway 1 closed True" "an oversized frame"
}

case_idle() {
    okv "idle" timeout 30 python3 tests/integration/pfclient.py "$SERVER" "$PF" idle || return 1
    echo "    $OUT"
    assert_match "$OUT" '^goaway_after 2\.[0-4] closed_after 2\.[0-4] closed True$' \
        "GOAWAY and close after the 2 s idle timeout"
}

case_sessions() {
    okv "66 sessions" timeout 60 python3 tests/integration/pfclient.py "$SERVER" "$PF" sessions 66 ||
        return 1
    assert_eq "$OUT" "101:64 429:2" "upgrades answered and refused"
}

case_flood() {
    local before after
    before=$(awk '/VmRSS/ {print $2}' "/proc/$KL_PID/status")
    okv "flood" timeout 60 python3 tests/integration/pfclient.py "$SERVER" "$PF" flood \
        "$SINK_PORT" 200 || return 1
    after=$(awk '/VmRSS/ {print $2}' "/proc/$KL_PID/status")
    echo "    $OUT bytes before the client was held back; kubelite ${before} kB -> ${after} kB resident"
    [ "$(echo "$OUT" | awk '{print $2}')" -lt $((64 << 20)) ] ||
        { t_fail "kubelite took $OUT of 200 MiB sent to a socket nobody reads"; return 1; }
    [ $((after - before)) -lt 8192 ] ||
        { t_fail "kubelite grew by $((after - before)) kB under the flood"; return 1; }
}

t_begin start
if ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
    t_skip "needs curl and python3"
    t_summary
fi
if ! kl_start --insecure --stream-idle-timeout 2; then
    t_fail "kubelite did not start"
    t_summary
fi
SERVER=$(sed -n 's/^ *server: *//p' "$KUBECONFIG")
APP_PORT=$(free_port)
PORT=$APP_PORT POD_NAME=app "$BUILD/bin/testapp" >"$KL_TMP/testapp.log" 2>&1 &
bg_track $!
ECHO_PORT=$(free_port)
python3 -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(128)
def echo(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
' "$ECHO_PORT" >"$KL_TMP/echo.log" 2>&1 &
bg_track $!
SINK_PORT=$(free_port) # accepts one connection and never reads it
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
c, _ = s.accept(); time.sleep(600)
' "$SINK_PORT" >"$KL_TMP/sink.log" 2>&1 &
bg_track $!
mkdir -p "$KL_TMP/pods"
ok "node" "$K" create -f - <<EOF || t_summary
{"apiVersion":"v1","kind":"Node","metadata":{"name":"$NODE",
 "annotations":{"kubelet-lite.weft.dev/pod-log-dir":"$KL_TMP/pods"}}}
EOF
ok "other node" "$K" create -f - <<EOF || t_summary
{"apiVersion":"v1","kind":"Node","metadata":{"name":"other"}}
EOF
for p in app:$NODE nonet:$NODE unbound: elsewhere:other; do
    ok "pod ${p%%:*}" "$K" create -f - <<EOF || t_summary
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"${p%%:*}","namespace":"default",
 "labels":{"app":"${p%%:*}"}},
 "spec":{"nodeName":"${p#*:}","containers":[{"name":"c","image":"weft/testapp"}]}}
EOF
done
for p in app nonet elsewhere; do
    ok "status $p" "$K" patch pod "$p" --subresource=status --type=merge \
        -p '{"status":{"phase":"Running"}}' || t_summary
done
uid=$("$K" get pod app -o 'jsonpath={.metadata.uid}')
mkdir -p "$KL_TMP/pods/$uid"
echo /proc/self/ns/net >"$KL_TMP/pods/$uid/netns"
for _ in $(seq 50); do
    curl -s -m 1 -o /dev/null "http://127.0.0.1:$APP_PORT/" && break
    sleep 0.1
done
t_pass

t_run kubectl-websocket case_kubectl_websocket
t_run kubectl-spdy case_kubectl_spdy
t_run every-kubectl case_every_kubectl
grep -c 'msg="port-forward session"' "$KL_LOG" >"$KL_TMP/sessions0"
t_run two-ports case_two_ports
t_run errors case_errors
t_run streams case_streams
t_run frame case_frame
t_run idle case_idle
t_run sessions case_sessions
t_run flood case_flood
t_summary
