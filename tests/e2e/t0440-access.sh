#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# AccessPolicy on the wire, as clients observe it. Three meshed pods as network namespaces, each
# with weft-init's rules and the real weft-agent (UID 1337) holding weftd's config stream:
#   app   (wfe-as, 10.250.44.2, namespace acc, ServiceAccount app): testapp on 8080 (Service app
#         port 80, name http) and a TCP line echo on 9000 (Service port 9000, name echo: tcp);
#         kubelite and weftd run here too;
#   front (wfe-af, 10.250.44.1, namespace acc, ServiceAccount front);
#   guest (wfe-ag, 10.250.45.1, namespace guest, ServiceAccount guest).
# The clients' apps call Service app (10.96.44.2) through their sidecars and the app's sidecar
# decides. Observed: the status, x-weft-denied and the body a client gets; whether the app's own
# request log (or the echo server's) saw the request; the app sidecar's log line and its
# counters on 15020; connections that stay open across policy changes; weftd restarted with
# --default-mode deny, and with --outbound-scope admitted.
#
# weftd's default outbound scope ("mesh", proxy-config.md) lists every Service in every caller's
# document, so a caller that no Allow admits (or any caller in mode deny) still reaches the app's
# sidecar over mutual TLS and gets 403 x-weft-denied: acc/default. With --outbound-scope admitted
# such a caller does not get the Service in its document: its sidecar passes the connection
# through to the ClusterIP unchanged. Here (no kube-proxy) that address leads nowhere, so the
# caller observes a connection that is never answered; in a cluster kube-proxy sends it to the
# pod, whose sidecar refuses the plaintext in the TLS handshake. Either way the app never sees it.
. "$(dirname "$0")/lib.sh"

e2e_require_root || t_summary

WEFTD=$KL_REPO/$BUILD/bin/weftd
AGENT=$KL_REPO/$BUILD/bin/weft-agent
INIT=$KL_REPO/$BUILD/bin/weft-init
TESTAPP=$KL_REPO/$BUILD/bin/testapp
F=10.250.44.1 S=10.250.44.2 G=10.250.45.1 SVC=10.96.44.2
NSS=wfe-as NSF=wfe-af NSG=wfe-ag NS=acc
D=$KL_TMP/acc

t_begin "tools"
command -v haproxy >/dev/null || { t_skip "haproxy is not installed"; t_summary; }
for b in "$WEFTD" "$AGENT" "$INIT" "$TESTAPP" "$KL_REPO/$BUILD/bin/kubelite"; do
    have_tool "$b" || t_summary
done
t_pass

kcs() { mesh_k "$@"; } # kubectl in the app's namespace
hacli() { python3 "$E2E_DIR/hacli.py" "$D/app/run/master.sock" "$1"; }
worker_pid() { hacli "show proc" | awk '$2 == "worker" {print $1; exit}'; }
master_pid() { hacli "show proc" | awk '$2 == "master" {print $1; exit}'; }
acks() { grep -c 'msg="configuration applied (ACK)"' "$D/app.log"; }
# counter ACTION POLICY: weft_agent_access_decisions_total of the app's sidecar (0 when absent)
counter() {
    ip netns exec $NSS curl -s http://127.0.0.1:15020/stats/prometheus |
        awk -v s="weft_agent_access_decisions_total{action=\"$1\",policy=\"$2\"}" '$1 == s {v = $2} END {print v + 0}'
}

pod_of() { case $1 in "$NSF") echo front ;; "$NSG") echo guest ;; *) echo "$1" ;; esac; }
MARK=0 AGENT_PIDS=()
# call NS METHOD PATH [HEADER...]: one request from the pod NS's app to Service app through its
# sidecar, with a unique mark in the query. CODE (000: no answer), DENIED (x-weft-denied), BODY,
# M (the mark, to look for in the app's log).
call() {
    local ns=$1 method=$2 path=$3 h=()
    shift 3
    for x in "$@"; do h+=(-H "$x"); done
    MARK=$((MARK + 1))
    M="m$MARK-$$"
    CODE=$(ip netns exec "$ns" curl -s -m 3 -X "$method" "${h[@]}" -D "$D/hdr" -o "$D/body" \
        -w '%{http_code}' "http://$SVC:80$path?mark=$M")
    DENIED=$(tr -d '\r' <"$D/hdr" 2>/dev/null | awk -F': ' 'tolower($1) == "x-weft-denied" {print $2}')
    BODY=$(cat "$D/body" 2>/dev/null)
    rm -f "$D/hdr" "$D/body"
}
# until_code SECONDS CODE NS METHOD PATH [HEADER...]: call until the answer is CODE
until_code() {
    local t=$1 want=$2 i
    shift 2
    for ((i = 0; i < t * 4; i++)); do
        call "$@"
        [ "$CODE" = "$want" ] && return 0
        sleep 0.25
    done
    t_fail "$2 $3 from $(pod_of "$1"): $CODE (want $want) after ${t}s"
    return 1
}
app_saw() { grep -q "mark=$1" "$APP_LOG"; }
# expect CODE DENIED NS METHOD PATH [HEADER...]: one call; its status, x-weft-denied (- for
# none), and that the app saw it exactly when the status is 200
expect() {
    local code=$1 denied=$2 what
    shift 2
    call "$@"
    what="$2 $3 from $(pod_of "$1")${4:+ ($4)}"
    assert_eq "$CODE" "$code" "$what: status" || return 1
    if [ "$denied" = - ]; then
        assert_eq "$DENIED" "" "$what: x-weft-denied" || return 1
    else
        assert_eq "$DENIED" "$denied" "$what: x-weft-denied" &&
            assert_eq "$BODY" "denied by the mesh: $denied" "$what: body" || return 1
    fi
    sleep 0.1 # the app logs after it answers
    if [ "$code" = 200 ]; then
        app_saw "$M" || { t_fail "$what: the app did not log mark=$M"; return 1; }
    else
        ! app_saw "$M" || { t_fail "$what: the app saw the refused request (mark=$M)"; return 1; }
    fi
    echo "    $what: $CODE${DENIED:+ x-weft-denied: $DENIED}"
}
# echo_call NS: one line through Service app port 9000 from the pod NS's app; OUT its output
echo_call() {
    OUT=$(ip netns exec "$1" timeout 10 "$E2E_PY" "$E2E_DIR/conn.py" tcp $SVC 9000 1 0 2>&1)
}
# until_echo SECONDS NS yes|no: until a line comes back (yes) or the connection is closed (no)
until_echo() {
    local i
    for ((i = 0; i < $1 * 2; i++)); do
        echo_call "$2"
        case $3:$OUT in yes:*"echo 0"* | no:*"closed after 0"*) return 0 ;; esac
        sleep 0.5
    done
    t_fail "port 9000 from $(pod_of "$2"): $OUT (want $([ "$3" = yes ] && echo an echo || echo closed))"
    return 1
}
# policy NAME ACTION FROM-JSON|- [RULES-JSON|-] [PORTS-JSON]: an AccessPolicy on Service app
policy() {
    local from="" rules="" ports=""
    [ "$3" != - ] && from=", \"from\": $3"
    [ -n "${4:-}" ] && [ "$4" != - ] && rules=", \"rules\": $4"
    [ -n "${5:-}" ] && ports=", \"ports\": $5"
    printf '{"apiVersion": "mesh.weft.dev/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": "%s", "namespace": "%s"}, "spec": {"targetRef": {"kind": "Service", "name": "app"}, "action": "%s"%s%s%s}}\n' \
        "$1" "$NS" "$2" "$from" "$rules" "$ports" | kcs apply -f - >/dev/null || { t_fail "AccessPolicy $1"; return 1; }
}
no_policies() { kcs delete accesspolicies -n $NS --all >/dev/null; }
SA_FRONT='[{"serviceAccount": {"name": "front"}}]'
SA_GUEST='[{"serviceAccount": {"name": "guest", "namespace": "guest"}}]'

weftd_start() { # [weftd options...]: weftd (again) in the app's namespace
    mesh_weftd "$@" || return
    WEFTD_PID=$MESH_WEFTD_PID WEFTD_LOG=$MESH_WEFTD_LOG
}

case_setup() {
    local p name ns ip
    MESH_D=$D
    e2e_netns $NSS && e2e_netns $NSF && e2e_netns $NSG || return
    e2e_link $NSF $F/24 $NSS $S/24 && ip -n $NSF route add default dev "$E2E_LINK_A" || return
    e2e_link $NSG $G/24 $NSS 10.250.45.2/24 && ip -n $NSG route add default dev "$E2E_LINK_A" || return
    e2e_bg $NSS env PORT=8080 POD_NAME=app "$TESTAPP"
    APP_LOG=$E2E_BG_LOG
    e2e_bg $NSS "$E2E_PY" "$E2E_DIR/conn.py" echo 0.0.0.0:9000
    ECHO_LOG=$E2E_BG_LOG
    # kubelite and weftd in the app's namespace
    mesh_control_plane $NSS $S || return
    WEFTD_PID=$MESH_WEFTD_PID WEFTD_LOG=$MESH_WEFTD_LOG
    wait_for 10 grep -q listening "$ECHO_LOG" || { t_fail "echo server: $(cat "$ECHO_LOG")"; return 1; }
    {
        mesh_ns_yaml $NS front app
        mesh_ns_yaml guest guest
        cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: $NS}
spec:
  clusterIP: $SVC
  selector: {app: app}
  ports:
  - {port: 80, name: http, targetPort: 8080}
  - {port: 9000, name: echo, targetPort: 9000}
EOF
        mesh_pod_yaml front $NS front "{app: front}"
        mesh_pod_yaml guest guest guest "{app: guest}"
        mesh_pod_yaml app $NS app "{app: app}" "[{containerPort: 8080, name: http}, {containerPort: 9000, name: echo}]"
    } >"$D/app.yaml"
    ok "objects" "${MESH_K[@]}" apply -f "$D/app.yaml" || return
    for p in front:$NS:$F app:$NS:$S guest:guest:$G; do
        IFS=: read -r name ns ip <<<"$p"
        mesh_pod_up "$name" "$ns" "$ip" || return
    done
    cat >"$D/slice.yaml" <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-1, namespace: $NS, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
endpoints:
- addresses: [$S]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: app, namespace: $NS, uid: $(cat "$D/app.uid")}
ports: [{name: http, port: 8080, protocol: TCP}, {name: echo, port: 9000, protocol: TCP}]
EOF
    ok "endpoints" "${MESH_K[@]}" apply -f "$D/slice.yaml" || return
    for p in front:$NSF:$F guest:$NSG:$G app:$NSS:$S; do
        IFS=: read -r name ns ip <<<"$p"
        mesh_agent "$ns" "$name" "$ip" $([ "$name" = app ] && echo --include-inbound-ports 8080,9000) || return
        AGENT_PIDS+=("$MESH_AGENT_PID")
    done
    mesh_ready 30 $NSF $NSG $NSS || return
    until_code 20 200 $NSF GET / && until_code 20 200 $NSG GET / || return
    until_echo 10 $NSF yes || return
}

# Deny by ServiceAccount: front gets 200, guest 403 naming the policy; the app never sees it;
# on the tcp port the same Deny closes guest's connection while front's line comes back
case_identity() {
    local n0 d0
    policy deny-guest Deny "$SA_GUEST" || return
    until_code 20 403 $NSG GET / || return
    d0=$(counter deny acc/deny-guest)
    expect 200 - $NSF GET /hello || return
    expect 403 acc/deny-guest $NSG GET /hello || return
    expect 403 acc/deny-guest $NSG POST /hello || return
    assert_eq "$(($(counter deny acc/deny-guest) - d0))" 2 "weft_agent_access_decisions_total{action=deny,policy=acc/deny-guest}" || return
    # the log line of a denied request names the peer, the status and the policy
    wait_for 5 grep -q "OU=guest/CN=guest.*port=8080 .* 403 .*denied=acc/deny-guest" "$D/app.log" ||
        { t_fail "no log line for guest's 403: $(grep 'port=8080' "$D/app.log" | tail -3)"; return 1; }
    echo "    log: $(grep "OU=guest/CN=guest.*port=8080 .* 403 " "$D/app.log" | tail -1)"
    n0=$(grep -c '^conn ' "$ECHO_LOG")
    until_echo 10 $NSG no || return
    echo "    port 9000 (tcp) from guest: $(printf '%s' "$OUT" | tr '\n' ' ')"
    until_echo 10 $NSF yes || return
    echo "    port 9000 (tcp) from front: $(printf '%s' "$OUT" | tr '\n' ' ')"
    assert_eq "$(grep -c '^conn ' "$ECHO_LOG")" "$((n0 + 1))" "connections the echo server saw (front's only)" || return
    wait_for 5 grep -q "OU=guest/CN=guest.*port=9000 .*denied=acc/deny-guest" "$D/app.log" ||
        { t_fail "no log line for guest's closed connection: $(grep 'port=9000' "$D/app.log" | tail -3)"; return 1; }
    echo "    log: $(grep "OU=guest/CN=guest.*port=9000 .*denied=acc/deny-guest" "$D/app.log" | tail -1)"
}

# an Allow for front only: guest, admitted by no Allow, gets 403 naming acc/default from the
# app's sidecar (its own sidecar still routes the Service: outbound scope "mesh"), counted and
# logged there; the app never sees the request; on the tcp port guest's connection is closed
case_allow_only() {
    local d0 n0
    no_policies && policy allow-front Allow "$SA_FRONT" || return
    until_code 20 403 $NSG GET / || return
    d0=$(counter deny acc/default)
    expect 200 - $NSF GET /hello || return
    expect 403 acc/default $NSG GET /hello || return
    expect 403 acc/default $NSG POST /hello || return
    assert_eq "$(($(counter deny acc/default) - d0))" 2 "weft_agent_access_decisions_total{action=deny,policy=acc/default}" || return
    wait_for 5 grep -q "OU=guest/CN=guest.*port=8080 .* 403 .*denied=acc/default" "$D/app.log" ||
        { t_fail "no log line for guest's 403: $(grep 'port=8080' "$D/app.log" | tail -3)"; return 1; }
    n0=$(grep -c '^conn ' "$ECHO_LOG")
    until_echo 10 $NSG no || return
    echo "    port 9000 (tcp) from guest: $(printf '%s' "$OUT" | tr '\n' ' ')"
    until_echo 10 $NSF yes || return
    assert_eq "$(grep -c '^conn ' "$ECHO_LOG")" "$((n0 + 1))" "connections the echo server saw (front's only)" || return
}

# L7 rules: guest may GET /public and send x-team: blue; POST /admin is denied to everyone
# (Deny beats Allow); what no Allow admits gets the default 403; the tcp port admits front only
case_l7() {
    no_policies && policy allow-front Allow "$SA_FRONT" &&
        policy allow-guest Allow "$SA_GUEST" '[{"methods": ["GET"], "paths": [{"type": "PathPrefix", "value": "/public"}]}, {"headers": [{"name": "x-team", "value": "blue"}]}]' &&
        policy deny-admin Deny - '[{"methods": ["POST"], "paths": [{"type": "Exact", "value": "/admin"}]}]' '[80]' || return
    until_code 20 200 $NSG GET /public || return
    until_code 20 403 $NSF POST /admin || return
    expect 200 - $NSG GET /public || return
    expect 200 - $NSG GET /public/x || return
    expect 403 acc/default $NSG GET /publicity || return
    expect 403 acc/default $NSG POST /public || return
    expect 403 acc/default $NSG GET /private || return
    expect 200 - $NSG GET /private "x-team: blue" || return
    expect 403 acc/default $NSG GET /private "x-team: red" || return
    expect 403 acc/deny-admin $NSF POST /admin || return
    expect 403 acc/deny-admin $NSG POST /admin "x-team: blue" || return
    expect 200 - $NSF GET /admin || return
    expect 200 - $NSF POST /admin/x || return
    # port 9000: an Allow with rules admits nothing on a tcp port; deny-admin is for port 80
    until_echo 10 $NSG no || return
    echo "    port 9000 (tcp) from guest (only an Allow with L7 rules): $(printf '%s' "$OUT" | tr '\n' ' ')"
    until_echo 10 $NSF yes || return
}

# Audit: served, logged with the policy, counted under its name
case_audit() {
    local a0 i
    no_policies && policy audit-guest Audit "$SA_GUEST" || return
    until_code 20 200 $NSG GET /private || return
    wait_for 20 sh -c "ip netns exec $NSS curl -s http://127.0.0.1:15020/stats/prometheus | grep -q 'weft_agent_access_decisions_total{action=\"audit\",policy=\"acc/audit-guest\"}'" ||
        { t_fail "no audit counter for acc/audit-guest: $(ip netns exec $NSS curl -s http://127.0.0.1:15020/stats/prometheus | grep access)"; return 1; }
    a0=$(counter audit acc/audit-guest)
    for i in 1 2 3 4 5; do
        expect 200 - $NSG GET /audited || return
    done
    expect 200 - $NSF GET /not-audited || return
    wait_for 5 sh -c "[ \$(grep -c 'OU=guest/CN=guest.* 200 .*audit=acc/audit-guest' '$D/app.log') -ge 5 ]" ||
        { t_fail "guest's requests not logged with the policy: $(grep 'port=8080' "$D/app.log" | tail -3)"; return 1; }
    echo "    log: $(grep 'audit=acc/audit-guest' "$D/app.log" | tail -1)"
    assert_eq "$(($(counter audit acc/audit-guest) - a0))" 5 "weft_agent_access_decisions_total{action=audit,policy=acc/audit-guest}" || return
    # tcp: the connection is served and counted too
    echo_call $NSG
    assert_contains "$OUT" "echo 0" "port 9000 from guest (audited)" || return
    wait_for 5 sh -c "[ \$(($(counter audit acc/audit-guest) - a0)) -eq 6 ]" 2>/dev/null
    assert_eq "$(($(counter audit acc/audit-guest) - a0))" 6 "audited requests and connections" || return
}

# namespaceSelector: guest's namespace gains and loses the label, the decision follows without
# restarting anything (403 <-> 200 on GET /team; the GET /public Allow keeps guest a caller even
# under --outbound-scope admitted)
case_ns_selector() {
    local m0 t0 i
    no_policies && policy allow-front Allow "$SA_FRONT" &&
        policy allow-guest-public Allow "$SA_GUEST" '[{"methods": ["GET"], "paths": [{"type": "PathPrefix", "value": "/public"}]}]' &&
        policy allow-blue Allow '[{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]' || return
    until_code 20 200 $NSG GET /public && until_code 20 403 $NSG GET /team || return
    expect 403 acc/default $NSG GET /team || return
    m0=$(master_pid)
    for i in 1 2; do
        t0=$(date +%s%N)
        ok "label guest team=blue" "${MESH_K[@]}" label ns guest team=blue --overwrite || return
        until_code 20 200 $NSG GET /team || return
        echo "    namespace guest labelled team=blue: 200 after $((($(date +%s%N) - t0) / 1000000)) ms"
        expect 200 - $NSG GET /team || return
        t0=$(date +%s%N)
        ok "label guest team=red" "${MESH_K[@]}" label ns guest team=red --overwrite || return
        until_code 20 403 $NSG GET /team || return
        echo "    namespace guest relabelled team=red: 403 after $((($(date +%s%N) - t0) / 1000000)) ms"
        expect 403 acc/default $NSG GET /team || return
        ok "unlabel" "${MESH_K[@]}" label ns guest team- || return
    done
    assert_eq "$(master_pid)" "$m0" "the app sidecar's HAProxy master (not restarted)" || return
    for p in "${AGENT_PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || { t_fail "agent $p is gone"; return 1; }
    done
    kill -0 "$WEFTD_PID" 2>/dev/null || { t_fail "weftd is gone"; return 1; }
    assert_eq "$(grep -c 'msg=listening what=stream' "$WEFTD_LOG")" 1 "weftd started once" || return
}

# a policy change while front holds a keep-alive HTTP connection and a TCP connection through
# its sidecar: both carry on (same local port, every answer), the echo app sees one connection
case_keepalive() {
    local w0 m0 n e0 hp tp lp
    no_policies && policy allow-front Allow "$SA_FRONT" || return
    until_code 20 200 $NSF GET / && until_echo 10 $NSF yes || return
    sleep 1
    w0=$(worker_pid) m0=$(master_pid) n=$(acks) e0=$(grep -c '^conn ' "$ECHO_LOG")
    ip netns exec $NSF "$E2E_PY" "$E2E_DIR/conn.py" http "http://$SVC:80/keep" 40 0.15 >"$D/ka-http.out" 2>&1 &
    hp=$!
    ip netns exec $NSF "$E2E_PY" "$E2E_DIR/conn.py" tcp $SVC 9000 40 0.15 >"$D/ka-tcp.out" 2>&1 &
    tp=$!
    # and one held longer (45 s; the old worker keeps it within hard-stop-after): measured, not
    # asserted
    ip netns exec $NSF "$E2E_PY" "$E2E_DIR/conn.py" tcp $SVC 9000 45 1 >"$D/ka-long.out" 2>&1 &
    lp=$!
    bg_track $hp
    bg_track $tp
    bg_track $lp
    sleep 1.5
    # front stays allowed; the app sidecar's document changes (a Deny for guest on /admin)
    policy deny-guest-admin Deny "$SA_GUEST" '[{"paths": [{"type": "PathPrefix", "value": "/admin"}]}]' || return
    wait_for 20 sh -c "[ \$(grep -c 'msg=\"configuration applied (ACK)\"' '$D/app.log') -gt $n ]" ||
        { t_fail "the app sidecar applied no new document"; return 1; }
    echo "    app sidecar: $(grep 'msg="configuration applied (ACK)"' "$D/app.log" | tail -1 | grep -o 'how=[a-z]*')"
    wait $hp || { t_fail "the HTTP connection: $(tr '\n' ' ' <"$D/ka-http.out")"; return 1; }
    wait $tp || { t_fail "the TCP connection: $(tr '\n' ' ' <"$D/ka-tcp.out")"; return 1; }
    assert_eq "$(awk '$2 == 200 {print $1}' "$D/ka-http.out" | sort -u | wc -l)" 1 "local ports of the HTTP answers" || return
    assert_eq "$(grep -c ' 200$' "$D/ka-http.out")" 40 "HTTP answers (200) on the one connection" || return
    assert_eq "$(grep -c '^echo ' "$D/ka-tcp.out")" 40 "TCP echoes on the one connection" || return
    assert_eq "$(($(grep -c '^conn ' "$ECHO_LOG") - e0))" 2 "connections the echo app saw (the two TCP clients')" || return
    echo "    HTTP: 40 x 200 from local port $(head -1 "$D/ka-http.out" | cut -d' ' -f1); TCP: $(head -1 "$D/ka-tcp.out"), 40 echoes"
    echo "    app sidecar's HAProxy: worker $w0 -> $(worker_pid) (a reload: access rules are configuration), master $m0 -> $(master_pid)"
    assert_eq "$(master_pid)" "$m0" "the HAProxy master" || return
    wait $lp
    echo "    a TCP connection held on after the change, one line a second: $(grep -c '^echo ' "$D/ka-long.out") echoes, then: $(grep -v '^echo\|^local' "$D/ka-long.out" | tr '\n' ' ')(on the old worker, within hard-stop-after)"
}

# weftd restarted with --default-mode deny, no policy: nothing reaches the app. Both clients'
# sidecars still route the Service (outbound scope "mesh") and get 403 acc/default; their tcp
# connections are closed; a peer presenting its mesh certificate directly gets the same.
case_mode_deny() {
    local d0 e0 out
    no_policies || return
    bg_stop "$WEFTD_PID" # SIGTERM; its exit status is checked at the end
    weftd_start --default-mode deny || return
    until_code 30 403 $NSF GET / || return
    d0=$(counter deny acc/default) e0=$(grep -c '^conn ' "$ECHO_LOG")
    expect 403 acc/default $NSF GET /x || return
    expect 403 acc/default $NSG GET /x || return
    until_echo 10 $NSF no || return
    until_echo 10 $NSG no || return
    assert_eq "$(grep -c '^conn ' "$ECHO_LOG")" "$e0" "connections the echo app saw" || return
    assert_eq "$(($(counter deny acc/default) - d0))" 4 "weft_agent_access_decisions_total{action=deny,policy=acc/default}" || return
    echo "    mode deny: front and guest through their sidecars: 403 acc/default; tcp closed; counted 4"
    d0=$(counter deny acc/default)
    MARK=$((MARK + 1)) M="m$MARK-$$"
    out=$(ip netns exec $NSF "${E2E_1337[@]}" curl -sk -m 5 --cert "$D/front/run/pod.pem" -D - -o /dev/null \
        "https://$S:8080/direct?mark=$M" | tr -d '\r')
    assert_match "$out" '^HTTP/1.1 403' "front's certificate, directly: status" || return
    assert_contains "$out" "x-weft-denied: acc/default" "front's certificate, directly: x-weft-denied" || return
    sleep 0.1
    ! app_saw "$M" || { t_fail "the app saw the refused request"; return 1; }
    out=$( (echo ping; sleep 1) | ip netns exec $NSF "${E2E_1337[@]}" timeout 5 openssl s_client -quiet \
        -connect "$S:9000" -cert "$D/front/run/pod.pem" 2>&1)
    assert_not_contains "$out" "ping" "port 9000 with front's certificate: no echo" || return
    assert_eq "$(grep -c '^conn ' "$ECHO_LOG")" "$e0" "connections the echo app saw" || return
    assert_eq "$(($(counter deny acc/default) - d0))" 2 "weft_agent_access_decisions_total{action=deny,policy=acc/default}" || return
    echo "    mode deny: front's certificate directly: 403 acc/default, tcp closed; counted 2"
    # an Allow opens it for front only
    policy allow-front Allow "$SA_FRONT" || return
    until_code 30 200 $NSF GET / || return
    expect 200 - $NSF GET /after || return
    expect 403 acc/default $NSG GET /after || return
    until_echo 10 $NSF yes || return
    until_echo 10 $NSG no || return
}

# weftd restarted with --outbound-scope admitted (still mode deny, allow-front in place): guest's
# document no longer lists Service app, so its sidecar passes the connection through to the
# ClusterIP, which leads nowhere here: no answer (000) where the scope "mesh" gave 403; the app
# never sees it. front, admitted, still gets 200.
case_admitted_scope() {
    policy allow-front Allow "$SA_FRONT" || return
    bg_stop "$WEFTD_PID" # SIGTERM; its exit status is checked at the end
    weftd_start --default-mode deny --outbound-scope admitted || return
    until_code 30 000 $NSG GET / || return
    expect 000 - $NSG GET /scoped || return
    expect 200 - $NSF GET /scoped || return
    echo "    --outbound-scope admitted: guest is not routed by its own sidecar (no answer, no 403), front 200"
}

t_run "three meshed pods, weftd in the app's namespace, every sidecar ready" case_setup
[ "$T_FAILED" -eq 0 ] || t_summary # nothing below can work without the pods
t_run "Deny by ServiceAccount: 200 for front, 403 naming the policy for guest; tcp closed" case_identity
t_run "Allow for front only: guest gets 403 acc/default, the app never sees it; tcp closed" case_allow_only
t_run "L7 rules: GET /public, headers, POST /admin denied; an Allow with rules on tcp" case_l7
t_run "Audit: served, logged and counted under the policy's name" case_audit
t_run "namespaceSelector follows the namespace's labels live" case_ns_selector
t_run "a policy change keeps front's keep-alive HTTP and TCP connections" case_keepalive
t_run "--default-mode deny without an Allow: 403 acc/default for both; an Allow opens it" case_mode_deny
t_run "--outbound-scope admitted: a caller no Allow admits is not routed (no 403)" case_admitted_scope
if [ "$T_FAILED" -ne 0 ] && [ -n "${T0440_KEEP:-}" ]; then # debugging: keep the logs
    mkdir -p "$T0440_KEEP" && cp -r "$D"/*.log "$D"/*/run/haproxy.cfg "$KL_TMP"/bg.*.log "$T0440_KEEP" 2>/dev/null
fi
t_summary
