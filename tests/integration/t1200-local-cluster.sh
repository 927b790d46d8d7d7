#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# tools/cluster: Weft installed by the real helm on kubelite + kubelet-lite, weftd as a pod (root
# only; run under flock /tmp/weft-netns.lock like every kubelet-lite suite):
#   up               tools/cluster up: helm list shows the release deployed; weftd's pod Running
#                    and Ready; `export KUBECONFIG=` printed
#   second-up        a second `up` (or a `down`) with another --dir fails, names the directory
#                    that is up, and leaves the running cluster alone
#   in-cluster       weftd's process sees KUBERNETES_SERVICE_HOST/PORT = the kubernetes Service,
#                    and the ServiceAccount token, ca.crt and namespace at
#                    /var/run/secrets/kubernetes.io/serviceaccount; it is not given a kubeconfig
#   injected         a pod created in a labelled namespace arrives injected (the API server
#                    called weftd through the weft-webhook Service's endpoint)
#   builtin-images   weft/testapp runs build/bin/testapp without an image map
#   service-env      a pod gets {SVC}_SERVICE_HOST/PORT (+ link variables) for its namespace's
#                    Services; enableServiceLinks: false leaves only KUBERNETES_*
#   dns              inside a pod: /etc/resolv.conf names the bridge address and the search path
#                    <ns>.svc.cluster.local svc.cluster.local cluster.local; backend,
#                    backend.plain, backend.plain.svc.cluster.local resolve to the ClusterIP; a
#                    headless Service to its ready pod; unknown names fail at once; /etc/hosts
#                    names the pod
#   dns-live         a new Service resolves within a second of its creation; a deleted one stops
#   logs             kubectl logs [-c C] [--tail N] [-f] [--previous] through kubelite's
#                    pods/log: the output, the last lines, a follow that sees new lines and ends
#                    when the container exits, the previous run after a restart, the errors
#   probes           a readiness probe's requests come from the node (10.244.0.1, seen by the
#                    app) and pass the pod's nat PREROUTING (a probe of a port only a REDIRECT
#                    rule there leads to the app passes once the rule exists)
#   post-start       a postStart hook that sleeps 2 s delays the next container by 2 s
#   pre-stop         on deletion the preStop hook runs first; SIGTERM comes after it ends
#   debug-service    weftd's admin port through the weftd Service, from inside pods: a pod whose
#                    ServiceAccount is granted get on /debug/config and /debug/proxies (a
#                    ClusterRole on the non-resource URLs) gets 200 with its own mounted token, a
#                    pod whose ServiceAccount is not gets 403, no token 401; /metrics, /healthz and
#                    /readyz answer 200 without one
#   port-forward     kubectl port-forward through kubelite's pods/portforward: 1.33 (SPDY in
#                    WebSocket) and 1.27 (SPDY) reach the app (20 and 10 concurrent connections,
#                    whole answers), a listener on the pod's 127.0.0.1 only, a closed port gives
#                    kubectl's error and ends it, RBAC needs create on pods/portforward, weftd's
#                    admin port through deploy/weftd (/debug/ with a granted token 200, without
#                    401), a meshed pod's app on its 127.0.0.1
#   native-sidecar   an injected pod starts with weft-proxy as a native sidecar (node v1.33):
#                    the app starts after the proxy was ready (the agent's own log of its
#                    certificate, first configuration and HAProxy's health, against
#                    kubelet-lite's log of the app's start, in milliseconds); Ready 2/2
#   down             tools/cluster down leaves no process, netns, link, iptables chain or mount
#   classic-sidecar  a second cluster whose node reports v1.28.0: the chart injects classic
#                    sidecars, the node ignores init containers' restartPolicy, and the
#                    postStart hook `weft-agent wait` holds the app until the proxy is ready
#                    (measured as for native-sidecar); down leaves nothing
# The sidecars are the real ones (weft/init = build/bin/weft-init, weft/proxy =
# build/bin/weft-agent with HAProxy); what they do on the wire is tests/e2e/t1300-mesh-cluster.sh.
# Env: BUILD, KUBECTL_DIR, HELM.
set -u
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=SCRIPTDIR/lib.sh
. tests/integration/lib.sh
# shellcheck source=../../tools/cluster-lib.sh
. tools/cluster-lib.sh

K="$KUBECTL_DIR/kubectl.1.33"
export KUBECTL=$K HELM
CDIR=$KL_TMP/cluster

if [ "$(id -u)" != 0 ]; then
    t_begin cluster
    t_skip "needs root: kubelet-lite runs pods in network namespaces (veth, bridge, iptables)"
    t_summary
fi

t_begin prerequisites
for bin in "$BUILD/bin/kubelite" "$BUILD/bin/kubelet-lite" "$BUILD/bin/weftd" "$BUILD/bin/testapp" \
    "$K" "$HELM"; do
    [ -x "$bin" ] || t_fail "$bin is not an executable"
done
if other=$(cluster_active); then
    t_fail "a cluster is up in $other"
fi
t_failed && t_summary
t_pass

final() {
    cluster_down "$KL_TMP/classic" >/dev/null 2>&1
    cluster_down "$CDIR" >/dev/null 2>&1
    kl_cleanup
}
trap final EXIT
chmod 0755 "$KL_TMP" # pods run as other users and read their volumes under it
mkdir -p "$KL_TMP/hooks"
chmod 0755 "$KL_TMP/hooks"

export KUBECONFIG=$CDIR/kubeconfig
k() { "$K" "$@"; }
# pid_of NS POD [CONTAINER-INDEX]: the container's process (from its containerID)
pid_of() {
    k get pod -n "$1" "$2" -o "jsonpath={.status.containerStatuses[${3:-0}].containerID}" |
        sed -E 's#.*-([0-9]+)$#\1#'
}
running() { [ "$(k get pod -n "$1" "$2" -o 'jsonpath={.status.phase}')" = Running ]; }
envof() { tr '\0' '\n' <"/proc/$1/environ"; }
cluster_fail() {
    t_fail "$1"
    echo "    --- kubelet-lite log"
    tail -20 "$CDIR/kubelet-lite.log" 2>/dev/null | sed 's/^/    | /'
    return 1
}

case_up() {
    run tools/cluster up --dir "$CDIR" -- --set replicas=1
    [ "$RC" = 0 ] || { cluster_fail "tools/cluster up: exit $RC: $OUT"; return 1; }
    assert_contains "$OUT" "export KUBECONFIG=$CDIR/kubeconfig" "up's output" || return 1
    okv "helm list" env KUBECONFIG="$CDIR/kubeconfig" "$HELM" list -n weft-system -o json || return 1
    assert_eq "$(echo "$OUT" | jq -r '.[] | "\(.name) \(.status)"')" "weft deployed" "helm release" ||
        return 1
    okv "weftd pods" "$K" get pods -n weft-system -l app.kubernetes.io/name=weftd \
        -o 'jsonpath={range .items[*]}{.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' ||
        return 1
    assert_eq "$OUT" "Running True" "weftd pod phase and readiness"
}

case_second_up() {
    run tools/cluster up --dir "$KL_TMP/other"
    assert_ne "$RC" 0 "second up's exit status" || return 1
    assert_contains "$OUT" "a cluster is already up in $CDIR" "second up's error" || return 1
    run tools/cluster down --dir "$KL_TMP/other"
    assert_ne "$RC" 0 "down of another directory" || return 1
    assert_contains "$OUT" "the cluster that is up is in $CDIR" "down of another directory" ||
        return 1
    okv "status" tools/cluster status || return 1
    assert_contains "$OUT" "up: $CDIR" "status" || return 1
    ip link show kl0 >/dev/null 2>&1 || t_fail "the bridge is gone after the refused up/down"
}

case_in_cluster() {
    local pod pid sa=/var/run/secrets/kubernetes.io/serviceaccount e
    pod=$(k get pods -n weft-system -l app.kubernetes.io/name=weftd -o 'jsonpath={.items[0].metadata.name}')
    pid=$(pid_of weft-system "$pod")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || { t_fail "weftd's process ($pid) not found"; return 1; }
    e=$(envof "$pid")
    assert_contains "$e" "KUBERNETES_SERVICE_HOST=10.96.0.1" "weftd's environment" || return 1
    assert_contains "$e" "KUBERNETES_SERVICE_PORT=443" "weftd's environment" || return 1
    assert_contains "$e" "WEFTD_PORT_15012_TCP_ADDR=" "weftd's environment (service links)" ||
        return 1
    assert_not_contains "$e" "KUBECONFIG=" "weftd's environment" || return 1
    assert_not_contains "$(tr '\0' ' ' <"/proc/$pid/cmdline")" "--kubeconfig" "weftd's arguments" ||
        return 1
    okv "namespace file" nsenter -t "$pid" -m cat "$sa/namespace" || return 1
    assert_eq "$OUT" weft-system "the mounted namespace" || return 1
    okv "ca.crt" nsenter -t "$pid" -m cat "$sa/ca.crt" || return 1
    assert_eq "$OUT" "$(k get cm -n weft-system kube-root-ca.crt -o 'jsonpath={.data.ca\.crt}')" \
        "the mounted ca.crt" || return 1
    okv "token" nsenter -t "$pid" -m cat "$sa/token" || return 1
    okv "TokenReview of the mounted token" "$K" create -o json -f - <<<"{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":\"$OUT\"}}" ||
        return 1
    assert_eq "$(echo "$OUT" | jq -r .status.user.username)" "system:serviceaccount:weft-system:weftd" \
        "the token's user" || return 1
    # The mount is private to the pod: the host does not see the token there.
    [ ! -e "$sa/token" ] || { t_fail "$sa/token is visible on the host"; return 1; }
    # weftd talks to the API server through the Service (its endpoint is the bridge address).
    okv "kubernetes endpoints" "$K" get endpointslice -n default kubernetes \
        -o 'jsonpath={.endpoints[0].addresses[0]}' || return 1
    assert_eq "$OUT" 10.244.0.1 "the kubernetes Service's endpoint"
}

case_injected() {
    local ep
    ok "namespace" "$K" create namespace demo || return 1
    ok "label" "$K" label namespace demo weft.dev/inject=enabled || return 1
    ok "pod" "$K" run -n demo app --image=weft/testapp || return 1
    okv "pod containers" "$K" get pod -n demo app \
        -o 'jsonpath={.spec.initContainers[*].name}/{.spec.containers[*].name}' || return 1
    assert_eq "$OUT" "weft-init weft-proxy/app" "the injected pod's containers" || return 1
    ep=$(k get endpointslices -n weft-system -l kubernetes.io/service-name=weft-webhook \
        -o 'jsonpath={.items[0].endpoints[0].addresses[0]}')
    assert_match "$ep" '^10\.244\.0\.[0-9]+$' "the webhook Service's endpoint is weftd's pod" ||
        return 1
    ok "delete" "$K" delete pod -n demo app --wait=false
}

case_builtin_images() {
    ok "namespace" "$K" create namespace plain || return 1
    ok "service" "$K" create service clusterip backend -n plain --tcp=80:8080 || return 1
    ok "pod" "$K" run -n plain web --image=weft/testapp:v9 --labels=app=web || return 1
    wait_for 30 running plain web || { cluster_fail "pod plain/web is not Running"; return 1; }
    okv "image id" "$K" get pod -n plain web -o 'jsonpath={.status.containerStatuses[0].imageID}' ||
        return 1
    assert_eq "$OUT" "kubelet-lite://$KL_REPO/$BUILD/bin/testapp" "the program behind weft/testapp"
}

case_service_env() {
    local e ip
    e=$(envof "$(pid_of plain web)")
    ip=$(k get svc -n plain backend -o 'jsonpath={.spec.clusterIP}')
    assert_contains "$e" "BACKEND_SERVICE_HOST=$ip" "service host" || return 1
    assert_contains "$e" "BACKEND_SERVICE_PORT=80" "service port" || return 1
    assert_contains "$e" "BACKEND_SERVICE_PORT_80_8080=80" "named service port" || return 1
    assert_contains "$e" "BACKEND_PORT=tcp://$ip:80" "link variable" || return 1
    assert_contains "$e" "BACKEND_PORT_80_TCP_ADDR=$ip" "link address" || return 1
    assert_contains "$e" "KUBERNETES_SERVICE_HOST=10.96.0.1" "kubernetes service" || return 1
    assert_not_contains "$e" "WEFTD_SERVICE_HOST" "another namespace's service" || return 1
    ok "pod without links" "$K" run -n plain nolinks --image=weft/testapp \
        --overrides='{"spec":{"enableServiceLinks":false}}' || return 1
    wait_for 30 running plain nolinks || { cluster_fail "pod plain/nolinks is not Running"; return 1; }
    e=$(envof "$(pid_of plain nolinks)")
    assert_not_contains "$e" "BACKEND_" "enableServiceLinks false" || return 1
    assert_contains "$e" "KUBERNETES_SERVICE_HOST=10.96.0.1" "kubernetes service without links"
}

# in_pod NS POD CMD...: run CMD in the pod's network and mount namespaces
in_pod() {
    local pid
    pid=$(pid_of "$1" "$2")
    shift 2
    nsenter -t "$pid" -n -m "$@"
}

case_dns() {
    local ip webip
    ip=$(k get svc -n plain backend -o 'jsonpath={.spec.clusterIP}')
    webip=$(k get pod -n plain web -o 'jsonpath={.status.podIP}')
    WEB=(nsenter -t "$(pid_of plain web)" -n -m)
    okv "resolv.conf" "${WEB[@]}" cat /etc/resolv.conf || return 1
    assert_contains "$OUT" "nameserver 10.244.0.1" "resolv.conf" || return 1
    assert_contains "$OUT" "search plain.svc.cluster.local svc.cluster.local cluster.local" \
        "resolv.conf" || return 1
    assert_contains "$OUT" "options ndots:5" "resolv.conf" || return 1
    for n in backend backend.plain backend.plain.svc backend.plain.svc.cluster.local; do
        okv "resolve $n" "${WEB[@]}" getent hosts "$n" || return 1
        assert_eq "$(echo "$OUT" | awk '{print $1}')" "$ip" "address of $n" || return 1
    done
    ok "headless service" "$K" create -n plain -f - <<<'{"apiVersion":"v1","kind":"Service","metadata":{"name":"db"},"spec":{"clusterIP":"None","selector":{"app":"web"},"ports":[{"port":5432}]}}' ||
        return 1
    wait_for 5 in_pod plain web getent hosts db || { t_fail "headless db does not resolve"; return 1; }
    okv "resolve db" "${WEB[@]}" getent hosts db.plain.svc.cluster.local || return 1
    assert_eq "$(echo "$OUT" | awk '{print $1}')" "$webip" "the headless Service's address" ||
        return 1
    fails "unknown name" "${WEB[@]}" getent hosts nosuch || return 1
    fails "a name outside the cluster" "${WEB[@]}" getent hosts www.example.com || return 1
    okv "hosts" "${WEB[@]}" getent hosts web || return 1
    assert_eq "$(echo "$OUT" | awk '{print $1}')" "$webip" "the pod's own name" || return 1
    # The host's own files are untouched.
    assert_not_contains "$(cat /etc/resolv.conf)" "10.244.0.1" "the host's resolv.conf"
}

case_dns_live() {
    local t0 t1 ms
    t0=$(date +%s%N)
    ok "new service" "$K" create service clusterip fresh -n plain --tcp=81:8080 || return 1
    t1=$(date +%s%N)
    wait_for 5 in_pod plain web getent hosts fresh || { t_fail "fresh does not resolve"; return 1; }
    ms=$((($(date +%s%N) - t1) / 1000000))
    echo "    fresh resolved ${ms} ms after kubectl create returned ($(((t1 - t0) / 1000000)) ms)"
    [ "$ms" -lt 1000 ] || { t_fail "a new Service took ${ms} ms to resolve"; return 1; }
    ok "delete service" "$K" delete service fresh -n plain || return 1
    wait_for 5 sh -c "! nsenter -t $(pid_of plain web) -n -m getent hosts fresh" ||
        t_fail "a deleted Service still resolves"
}

case_logs() {
    local n
    ok "talker" "$K" create -n plain -f - <<'YAML' || return 1
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"talker"},"spec":{
 "containers":[
  {"name":"main","image":"weft/testapp","command":["/bin/sh","-c","i=0; while :; do echo line $i; i=$((i+1)); sleep 0.1; done"]},
  {"name":"quiet","image":"weft/testapp","command":["/bin/sh","-c","echo hello from quiet; exec sleep 600"]}]}}
YAML
    ok "crasher" "$K" create -n plain -f - <<'YAML' || return 1
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"crasher"},"spec":{"restartPolicy":"Always",
 "containers":[{"name":"c","image":"weft/testapp","command":["/bin/sh","-c","echo run $(date +%s%N); sleep 0.5; exit 3"]}]}}
YAML
    wait_for 30 running plain talker || { cluster_fail "talker is not Running"; return 1; }
    sleep 0.5
    # kubectl picks the first container itself; the API's own answer without a container:
    fails "pods/log without a container" "$K" get --raw /api/v1/namespaces/plain/pods/talker/log ||
        return 1
    assert_contains "$OUT" "a container name must be specified for pod talker, choose one of: [main quiet]" \
        "pods/log without a container" || return 1
    okv "logs -c quiet" "$K" logs -n plain talker -c quiet || return 1
    assert_eq "$OUT" "hello from quiet" "quiet's output" || return 1
    okv "logs -c main" "$K" logs -n plain talker -c main || return 1
    assert_match "$OUT" '^line 0$' "main's output" || return 1
    okv "logs --tail 2" "$K" logs -n plain talker -c main --tail 2 || return 1
    assert_eq "$(echo "$OUT" | wc -l)" 2 "lines of --tail 2" || return 1
    n=$(echo "$OUT" | tail -1 | awk '{print $2}')
    # -f: the lines written while following arrive (later numbers than when it started).
    runo timeout 2 "$K" logs -n plain talker -c main -f --tail 1
    assert_gt "$(echo "$OUT" | tail -1 | awk '{print $2}')" "$((n + 5))" "the last line seen by -f" ||
        return 1
    fails "--previous before a restart" "$K" logs -n plain talker -c main --previous || return 1
    assert_contains "$OUT" 'previous terminated container "main" in pod "talker" not found' \
        "--previous before a restart" || return 1
    fails "unknown container" "$K" logs -n plain talker -c nosuch || return 1
    assert_contains "$OUT" "container nosuch is not valid for pod talker" "unknown container" ||
        return 1
    # --previous: the run before the current one.
    wait_for 30 sh -c "[ \"\$($K get pod -n plain crasher -o 'jsonpath={.status.containerStatuses[0].restartCount}')\" -ge 2 ]" ||
        { cluster_fail "crasher did not restart"; return 1; }
    okv "logs --previous" "$K" logs -n plain crasher --previous || return 1
    assert_match "$OUT" '^run [0-9]+$' "the previous run's output" || return 1
    local prev=$OUT
    okv "logs" "$K" logs -n plain crasher || return 1
    assert_match "$OUT" '^run [0-9]+$' "the current run's output" || return 1
    assert_ne "$OUT" "$prev" "the current run's output" || return 1
    # A follow ends when the container exits.
    ok "finite" "$K" create -n plain -f - <<'YAML' || return 1
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"finite"},"spec":{"restartPolicy":"Never",
 "containers":[{"name":"c","image":"weft/testapp","command":["/bin/sh","-c","sleep 1; for i in 1 2 3; do echo step $i; sleep 0.3; done"]}]}}
YAML
    wait_for 30 running plain finite || { cluster_fail "finite is not Running"; return 1; }
    okv "logs -f until the exit" "$K" logs -n plain finite -f || return 1
    assert_eq "$(echo "$OUT" | tr '\n' ' ')" "step 1 step 2 step 3 " "a follow to the container's exit"
}

# started NS POD CONTAINER [init]: the container's startedAt in seconds since the epoch
started() {
    local f=containerStatuses
    [ -n "${4:-}" ] && f=initContainerStatuses
    date -d "$(k get pod -n "$1" "$2" -o "jsonpath={.status.$f[?(@.name==\"$3\")].state.running.startedAt}")" +%s
}
ready() { [ "$(k get pod -n "$1" "$2" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }

case_probes() {
    local netns
    # The probe asks for 8081, where nothing listens: it can pass only through a nat PREROUTING
    # rule of the pod that redirects 8081 to the app's 8080 (as weft-init's inbound rules do).
    ok "probed" "$K" create -n plain -f - <<'YAML' || return 1
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"probed"},"spec":{"containers":[
 {"name":"app","image":"weft/testapp","readinessProbe":{"httpGet":{"path":"/healthz","port":8081},"periodSeconds":1,"failureThreshold":1}}]}}
YAML
    wait_for 30 running plain probed || { cluster_fail "probed is not Running"; return 1; }
    sleep 2
    ready plain probed && { t_fail "probed is Ready without the redirect"; return 1; }
    netns=kl-$(k get pod -n plain probed -o 'jsonpath={.metadata.uid}' | tr -d - | cut -c1-8)
    ok "redirect rule" ip netns exec "$netns" iptables -t nat -A PREROUTING -p tcp --dport 8081 \
        -j REDIRECT --to-ports 8080 || return 1
    wait_for 10 ready plain probed || { cluster_fail "probed is not Ready through the redirect"; return 1; }
    okv "logs" "$K" logs -n plain probed || return 1
    assert_match "$OUT" ' 10\.244\.0\.1:[0-9]+ "GET /healthz' "a probe request from the node" ||
        return 1
    assert_not_contains "$OUT" "127.0.0.1:" "a probe from inside the pod"
}

# debug_from POD TOKEN PATH: GET weftd's admin port through its Service from the pod's network;
# CODE gets the status, BODY the answer
debug_from() {
    local ip auth=()
    ip=$(k get svc -n weft-system weftd -o 'jsonpath={.spec.clusterIP}')
    [ -n "$2" ] && auth=(-H "Authorization: Bearer $2")
    CODE=$(nsenter -t "$(pid_of plain "$1")" -n curl -s -m 10 -o "$KL_TMP/debug.out" \
        -w '%{http_code}' "${auth[@]}" "http://$ip:15014$3")
    BODY=$(cat "$KL_TMP/debug.out" 2>/dev/null)
}

case_debug_service() {
    local sa=/var/run/secrets/kubernetes.io/serviceaccount tok_dbg tok_web p
    ok "serviceaccount" "$K" create serviceaccount -n plain debugger || return 1
    ok "clusterrole" "$K" create clusterrole weft-debug --verb=get \
        --non-resource-url=/debug/config --non-resource-url=/debug/proxies || return 1
    ok "binding" "$K" create clusterrolebinding plain-debugger --clusterrole=weft-debug \
        --serviceaccount=plain:debugger || return 1
    ok "pod dbg" "$K" run -n plain dbg --image=weft/testapp \
        --overrides='{"spec":{"serviceAccountName":"debugger"}}' || return 1
    ok "meshed pod" "$K" run -n demo target --image=weft/testapp || return 1
    wait_for 30 running plain dbg || { cluster_fail "pod plain/dbg is not Running"; return 1; }
    okv "dbg's token" nsenter -t "$(pid_of plain dbg)" -m cat "$sa/token" || return 1
    tok_dbg=$OUT
    okv "web's token" nsenter -t "$(pid_of plain web)" -m cat "$sa/token" || return 1
    tok_web=$OUT
    # allowed: weftd compiles demo/target's document shortly after the pod is created
    for _ in $(seq 50); do
        debug_from dbg "$tok_dbg" /debug/config/demo/target
        [ "$CODE" = 200 ] && break
        sleep 0.2
    done
    assert_eq "$CODE" 200 "/debug/config with a granted ServiceAccount's token: $BODY" || return 1
    assert_eq "$(echo "$BODY" | jq -r 'type')" object "the compiled document" || return 1
    debug_from dbg "$tok_dbg" /debug/proxies
    assert_eq "$CODE" 200 "/debug/proxies with a granted token: $BODY" || return 1
    debug_from web "$tok_web" /debug/config/demo/target
    assert_eq "$CODE" 403 "/debug/config with plain:default's token" || return 1
    assert_contains "$BODY" "system:serviceaccount:plain:default" "403 names the user" || return 1
    debug_from web "" /debug/config/demo/target
    assert_eq "$CODE" 401 "/debug/config without a token" || return 1
    debug_from dbg "$tok_web.x" /debug/config/demo/target
    assert_eq "$CODE" 401 "/debug/config with a token the API server does not authenticate" ||
        return 1
    for p in /metrics /healthz /readyz; do
        debug_from web "" "$p"
        assert_eq "$CODE" 200 "$p without a token" || return 1
    done
    ok "delete" "$K" delete pod -n demo target --wait=false
}

case_port_forward() {
    local sa=/var/run/secrets/kubernetes.io/serviceaccount old="$KUBECTL_DIR/kubectl.1.27" i n tok
    # kubectl 1.33 speaks SPDY tunneled in WebSocket; the app answers with its pod's name
    pf_start ws "$K" -n plain pod/web :8080 || return 1
    okv "GET / through port-forward" curl -s -m 10 "http://127.0.0.1:$PF_PORT/" || return 1
    assert_eq "$OUT" web "the app's answer through kubectl 1.33's port-forward" || return 1
    assert_eq "$(pf_protocol "$CDIR/kubelite.log")" websocket "kubectl 1.33's protocol" || return 1
    # 20 connections at once, each 16 KiB of answer, plus the request echoed back
    seq 20 | xargs -P 20 -I{} curl -s -m 20 -o "$KL_TMP/pf-bytes.{}" \
        "http://127.0.0.1:$PF_PORT/bytes?n=16384"
    n=0
    for i in $(seq 20); do
        [ "$(tr -d x <"$KL_TMP/pf-bytes.$i" | wc -c)" = 0 ] &&
            [ "$(wc -c <"$KL_TMP/pf-bytes.$i")" = 16384 ] && n=$((n + 1))
    done
    assert_eq "$n" 20 "whole 16 KiB answers of 20 concurrent connections" || return 1
    okv "echo" curl -s -m 10 -H "X-Pf-Check: $(head -c 3000 /dev/zero | tr '\0' y)" \
        "http://127.0.0.1:$PF_PORT/echo" || return 1
    assert_contains "$OUT" "$(head -c 3000 /dev/zero | tr '\0' y)" "a 3 KB header echoed" || return 1
    pf_stop
    # kubectl 1.27 speaks plain SPDY/3.1
    pf_start spdy "$old" -n plain pod/web :8080 || return 1
    okv "GET / through 1.27's port-forward" curl -s -m 10 "http://127.0.0.1:$PF_PORT/" || return 1
    assert_eq "$OUT" web "the app's answer through kubectl 1.27's port-forward" || return 1
    assert_eq "$(pf_protocol "$CDIR/kubelite.log")" spdy "kubectl 1.27's protocol" || return 1
    seq 10 | xargs -P 10 -I{} curl -s -m 20 -o "$KL_TMP/pf-old.{}" "http://127.0.0.1:$PF_PORT/"
    assert_eq "$(cat "$KL_TMP"/pf-old.* | sort | uniq -c | awk '{print $1, $2}')" "10 web" \
        "10 concurrent answers through 1.27" || return 1
    pf_stop
    # delivered to 127.0.0.1 inside the pod: a listener on the pod's loopback only is reached
    mkdir -p "$KL_TMP/lo-only"
    echo "only on the pod's loopback" >"$KL_TMP/lo-only/hello"
    ok "loopback-only pod" "$K" create -n plain -f - <<YAML || return 1
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"lo-only"},"spec":{"containers":[{"name":"c",
 "image":"weft/testapp","command":["/usr/bin/python3","-m","http.server","--bind","127.0.0.1","8099"],
 "workingDir":"$KL_TMP/lo-only"}]}}
YAML
    wait_for 30 running plain lo-only || { cluster_fail "lo-only is not Running"; return 1; }
    pf_start lo "$K" -n plain pod/lo-only :8099 || return 1
    for _ in $(seq 30); do
        OUT=$(curl -s -m 5 "http://127.0.0.1:$PF_PORT/hello")
        [ -n "$OUT" ] && break
        sleep 0.2
    done
    assert_eq "$OUT" "only on the pod's loopback" "a listener on the pod's 127.0.0.1 through port-forward" ||
        return 1
    # ... which the pod's address does not reach
    fails "the pod's IP" curl -s -m 3 "http://$(k get pod -n plain lo-only -o 'jsonpath={.status.podIP}'):8099/hello" ||
        return 1
    pf_stop
    # a port nobody listens on: kubectl prints the error the error stream carried, and ends
    for kc in "$K" "$old"; do
        pf_start refused "$kc" -n plain pod/web :9 || return 1
        curl -s -m 10 -o /dev/null "http://127.0.0.1:$PF_PORT/"
        for _ in $(seq 50); do
            kill -0 "$PF_PID" 2>/dev/null || break
            sleep 0.1
        done
        OUT=$(cat "$KL_TMP/pf-refused.log")
        assert_contains "$OUT" "an error occurred forwarding $PF_PORT -> 9: error forwarding port 9 to pod plain/web" \
            "$(basename "$kc")'s error for a closed port" || return 1
        assert_contains "$OUT" "dial tcp4 127.0.0.1:9: connect: connection refused" \
            "$(basename "$kc")'s error names the refusal" || return 1
        assert_contains "$OUT" "lost connection to pod" "$(basename "$kc") ends" || return 1
        pf_stop
    done
    # RBAC: pods/portforward needs create (get on pods is not enough)
    ok "serviceaccount" "$K" create serviceaccount -n plain forwarder || return 1
    ok "reader role" "$K" create role -n plain pod-reader --verb=get,list --resource=pods || return 1
    ok "reader binding" "$K" create rolebinding -n plain forwarder-reads --role=pod-reader \
        --serviceaccount=plain:forwarder || return 1
    tok=$("$K" create token -n plain forwarder)
    fails "port-forward without create on pods/portforward" "$K" --token="$tok" port-forward \
        -n plain pod/web :8080 || return 1
    assert_contains "$OUT" 'cannot create resource "pods/portforward" in API group "" in the namespace "plain"' \
        "the Forbidden message" || return 1
    ok "forward role" "$K" create role -n plain forward --verb=create --resource=pods/portforward ||
        return 1
    ok "forward binding" "$K" create rolebinding -n plain forwarder-forwards --role=forward \
        --serviceaccount=plain:forwarder || return 1
    pf_start granted "$K" --token="$tok" -n plain pod/web :8080 || return 1
    okv "GET / with create on pods/portforward" curl -s -m 10 "http://127.0.0.1:$PF_PORT/" || return 1
    assert_eq "$OUT" web "the answer with the grant" || return 1
    pf_stop
    # docs/operations.md: weftd's admin port through `kubectl port-forward deploy/weftd`
    pf_start weftd "$K" -n weft-system deploy/weftd :15014 || return 1
    okv "dbg's token" nsenter -t "$(pid_of plain dbg)" -m cat "$sa/token" || return 1
    tok=$OUT
    CODE=$(curl -s -m 10 -o "$KL_TMP/pf-debug.out" -w '%{http_code}' \
        -H "Authorization: Bearer $tok" "http://127.0.0.1:$PF_PORT/debug/proxies")
    assert_eq "$CODE" 200 "/debug/proxies with a granted token through port-forward: $(cat "$KL_TMP/pf-debug.out")" ||
        return 1
    CODE=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PF_PORT/debug/proxies")
    assert_eq "$CODE" 401 "/debug/proxies without a token through port-forward" || return 1
    CODE=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PF_PORT/metrics")
    assert_eq "$CODE" 200 "/metrics through port-forward" || return 1
    pf_stop
    # a meshed pod: 127.0.0.1:8080 inside it is the app (weft-init's rules leave loopback alone)
    ok "meshed pod" "$K" run -n demo pfm --image=weft/testapp || return 1
    wait_for 60 ready demo pfm || { cluster_fail "demo/pfm is not Ready"; return 1; }
    pf_start meshed "$K" -n demo pod/pfm :8080 || return 1
    okv "GET / of a meshed pod" curl -s -m 10 "http://127.0.0.1:$PF_PORT/" || return 1
    assert_eq "$OUT" pfm "the meshed app's answer through port-forward" || return 1
    pf_stop
    ok "delete" "$K" delete pod -n plain lo-only --wait=false || return 1
    ok "delete" "$K" delete pod -n demo pfm --wait=false
}

case_post_start() {
    local a b
    ok "hooked" "$K" create -n plain -f - <<'YAML' || return 1
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hooked"},"spec":{"containers":[
 {"name":"first","image":"weft/testapp","env":[{"name":"PORT","value":"8081"}],
  "lifecycle":{"postStart":{"exec":{"command":["/bin/sh","-c","sleep 2"]}}}},
 {"name":"second","image":"weft/testapp","env":[{"name":"PORT","value":"8082"}],
  "lifecycle":{"postStart":{"exec":{"command":["testapp","get","http://127.0.0.1:8082/"]}}}}]}}
YAML
    sleep 1
    okv "status during the hook" "$K" get pod -n plain hooked \
        -o 'jsonpath={.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[1].state.waiting.reason}' ||
        return 1
    assert_eq "$OUT" "ContainerCreating ContainerCreating" "both containers while first's hook runs" ||
        return 1
    wait_for 30 ready plain hooked || { cluster_fail "hooked is not Ready"; return 1; }
    a=$(started plain hooked first)
    b=$(started plain hooked second)
    echo "    first started at $a, second at $b"
    [ $((b - a)) -ge 2 ] || { t_fail "second started $((b - a)) s after first, want >= 2"; return 1; }
}

case_pre_stop() {
    local pre term
    ok "stopper" "$K" create -n plain -f - <<YAML || return 1
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"stopper"},"spec":{
 "volumes":[{"name":"hooks","hostPath":{"path":"$KL_TMP/hooks"}}],
 "containers":[{"name":"c","image":"weft/testapp","volumeMounts":[{"name":"hooks","mountPath":"/hooks"}],
  "command":["/bin/sh","-c","trap 'date +%s%N >/hooks/term; exit 0' TERM; while :; do sleep 0.1; done"],
  "lifecycle":{"preStop":{"exec":{"command":["/bin/sh","-c","date +%s%N >/hooks/prestop; sleep 1"]}}}}]}}
YAML
    wait_for 30 running plain stopper || { cluster_fail "stopper is not Running"; return 1; }
    ok "delete" "$K" delete pod -n plain stopper --timeout=30s || return 1
    pre=$(cat "$KL_TMP/hooks/prestop" 2>/dev/null)
    term=$(cat "$KL_TMP/hooks/term" 2>/dev/null)
    [ -n "$pre" ] && [ -n "$term" ] || { t_fail "preStop ($pre) or SIGTERM ($term) not seen"; return 1; }
    echo "    SIGTERM $(((term - pre) / 1000000)) ms after the preStop hook began"
    [ $((term - pre)) -ge 1000000000 ] || t_fail "SIGTERM came before the preStop hook ended"
}

# injected_pod NS NAME: create a meshed testapp pod and wait until it is Ready
injected_pod() {
    ok "namespace $1" "$K" create namespace "$1" || return 1
    ok "label" "$K" label namespace "$1" weft.dev/inject=enabled || return 1
    ok "pod" "$K" run -n "$1" "$2" --image=weft/testapp || return 1
    wait_for 60 ready "$1" "$2" || { cluster_fail "$1/$2 is not Ready"; return 1; }
}

# ms_of TIMESTAMP: 2026-12-07T14:05:53.726Z in milliseconds since the epoch
ms_of() { date -d "$1" +%s%3N; }

# proxy_before_app DIR NS POD: the agent was ready (its certificate installed, its first
# configuration applied and HAProxy healthy: what /healthz/ready requires) before kubelet-lite
# started the app container
proxy_before_app() {
    local log ready=0 t app m
    log=$("$K" logs -n "$2" "$3" -c weft-proxy) || { t_fail "no weft-proxy log"; return 1; }
    for m in 'msg="certificate installed"' 'msg="configuration applied (ACK)"' \
        'msg="HAProxy health changed" healthy=yes'; do
        t=$(printf '%s\n' "$log" | grep -F "$m" | head -1 | sed -E 's/^ts=([^ ]+) .*/\1/')
        [ -n "$t" ] || { t_fail "the agent never logged $m: $(printf '%s' "$log" | tail -5)"; return 1; }
        t=$(ms_of "$t")
        [ "$t" -gt "$ready" ] && ready=$t
    done
    t=$(grep -F "msg=\"container started\" pod=$2/$3 container=app " "$1/kubelet-lite.log" | head -1 |
        sed -E 's/^ts=([^ ]+) .*/\1/')
    [ -n "$t" ] || { t_fail "kubelet-lite did not log the app's start"; return 1; }
    app=$(ms_of "$t")
    echo "    the proxy was ready $((app - ready)) ms before the app started"
    [ "$app" -ge "$ready" ] || { t_fail "the app started $((ready - app)) ms before the proxy was ready"; return 1; }
}

case_native_sidecar() {
    local proxy app
    injected_pod mesh app || return 1
    okv "layout" "$K" get pod -n mesh app \
        -o 'jsonpath={.spec.initContainers[*].name}/{.spec.initContainers[1].restartPolicy}/{.spec.containers[*].name}' ||
        return 1
    assert_eq "$OUT" "weft-init weft-proxy/Always/app" "a native sidecar" || return 1
    proxy=$(started mesh app weft-proxy init)
    app=$(started mesh app app)
    [ "$app" -ge "$proxy" ] || { t_fail "the app started before the proxy"; return 1; }
    proxy_before_app "$CDIR" mesh app || return 1
    okv "ready containers" "$K" get pod -n mesh app -o 'jsonpath={.status.initContainerStatuses[1].ready} {.status.containerStatuses[0].ready}' ||
        return 1
    assert_eq "$OUT" "true true" "the proxy and the app ready"
}

case_classic_sidecar() {
    local c2=$KL_TMP/classic
    run tools/cluster up --dir "$c2" --kubelet-version v1.28.0 -- --set replicas=1
    [ "$RC" = 0 ] || { t_fail "up with a v1.28 node: exit $RC: $OUT"; return 1; }
    export KUBECONFIG=$c2/kubeconfig
    okv "node version" "$K" get node weft-node -o 'jsonpath={.status.nodeInfo.kubeletVersion}' ||
        return 1
    assert_eq "$OUT" v1.28.0 "the node's kubelet version" || return 1
    injected_pod mesh app || return 1
    okv "layout" "$K" get pod -n mesh app \
        -o 'jsonpath={.spec.initContainers[*].name}/{.spec.containers[*].name}/{.spec.containers[0].lifecycle.postStart.exec.command}' ||
        return 1
    assert_eq "$OUT" 'weft-init/weft-proxy app/["weft-agent","wait"]' "classic sidecars" || return 1
    proxy_before_app "$c2" mesh app || return 1
    run tools/cluster down --dir "$c2"
    [ "$RC" = 0 ] || { t_fail "down: exit $RC: $OUT"; return 1; }
    export KUBECONFIG=$CDIR/kubeconfig
}

case_down() {
    run tools/cluster down --dir "$CDIR"
    [ "$RC" = 0 ] || { t_fail "tools/cluster down: exit $RC: $OUT"; return 1; }
    assert_eq "$(cluster_leftovers "$CDIR")" "" "what down left behind" || return 1
    fails "status after down" tools/cluster status
}

failed0=$T_FAILED
t_run up case_up
if [ "$T_FAILED" = "$failed0" ]; then
    t_run second-up case_second_up
    t_run in-cluster case_in_cluster
    t_run injected case_injected
    t_run builtin-images case_builtin_images
    t_run service-env case_service_env
    t_run dns case_dns
    t_run dns-live case_dns_live
    t_run logs case_logs
    t_run probes case_probes
    t_run post-start case_post_start
    t_run pre-stop case_pre_stop
    t_run debug-service case_debug_service
    t_run port-forward case_port_forward
    t_run native-sidecar case_native_sidecar
fi
t_run down case_down
[ "$T_FAILED" = "$failed0" ] && t_run classic-sidecar case_classic_sidecar
t_summary
