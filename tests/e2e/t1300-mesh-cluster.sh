#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions are called through t_run
# t1300-mesh-cluster.sh - the real sidecar in injected pods on the local cluster (tools/cluster
# up: kubelite, kubelet-lite, Weft by helm; weft/init = build/bin/weft-init, weft/proxy =
# build/bin/weft-agent driving HAProxy; root, under flock /tmp/weft-netns.lock). Observed on the
# wire and from other pods, not from the agent's own word:
#
#   workloads     namespace mesh (labelled): Deployments alpha and beta (weft/testapp, readiness
#                 and liveness httpGet probes) behind Services alpha and beta; a pod "loner"
#                 whose app listens on 127.0.0.1:9090 only (Service loner:90); namespace plain
#                 (not labelled): a client pod "outsider" and a plaintext server "web"
#   sidecar       every meshed pod runs weft-init, then the real weft-agent (image id
#                 build/bin/weft-agent) as a native sidecar, then the app; the agent holds the
#                 config stream through the weftd Service's 15013 (an established connection
#                 from the pod to the ClusterIP); HAProxy runs under it as UID 1337; the key is
#                 in the agent's own 0700 directory inside the root-owned 0777 emptyDir; the
#                 app started after the proxy's startup probe passed
#   by-name       alpha's app calls http://beta/ and beta's app http://alpha/ (cluster DNS, the
#                 Service name): 200 from the other workload's pod
#   capture       tcpdump on the pod bridge kl0 during those calls: the meshed requests' paths
#                 and answers are not in clear, TLS records go between the two pods' IPs; the
#                 positive control (outsider -> web, plaintext) is seen in clear on the same
#                 capture
#   s-client      openssl s_client from outsider to beta's pod IP:8080: the certificate's URI
#                 SAN is beta's SPIFFE ID (spiffe://cluster.local/ns/mesh/sa/default), issued by
#                 the root in weft-root-ca; an HTTP request without a client certificate gets no
#                 answer (handshake refused); plaintext from outsider is refused
#   self-call     beta calls its own Service (one replica: the endpoint is itself): 200, and
#                 beta's inbound listener logged the call with beta's own certificate subject
#                 (beta has weft.dev/access-log: all; alpha the default, decisions)
#   loopback-app  the app of loner answers on 127.0.0.1:9090 inside its pod, but alpha's call
#                 to loner:90 gets no 200 (the inbound listener forwards to the pod's IP)
#   uid-1337      kubectl apply of a pod whose app runs as UID 1337 in mesh is refused with the
#                 webhook's message
#   probes        beta's probes were rewritten to /app-health/app/{readyz,livez} on 15020; the
#                 pod is Ready, never restarted, and the app logged the forwarded probe requests
#                 (port 8080 itself only takes mutual TLS: a direct probe would fail)
#   grpc          Deployment rpc (2 replicas of tests/e2e/grpcapp.py) behind Service rpc, port
#                 name grpc: 400 calls from alpha's app on one channel (one connection to its
#                 sidecar) are balanced per call over both pods (h2 between the sidecars, h2c to
#                 the app); 30 calls answered NOT_FOUND reach the client as such; alpha's sidecar
#                 counts them outbound and the rpc pods' sidecars inbound, code by code, exactly
#   grpc-split    a TrafficSplit of rpc, 80/20 over Services selecting one rpc pod each: 1,000
#                 calls on one channel land 800 +-30 / 200; patched to 0/100, kubectl wait
#                 --for=condition=Programmed, then every call goes to the second
#   long-lived    a WebSocket (Service ws, an http port) and a TCP stream (Service echo) from
#                 alpha's app to pod wsecho, echoing every 100 ms, stay open and lose no echo
#                 while changes reload both sidecars (two new Services: every caller reloads;
#                 an Audit AccessPolicy on ws: wsecho's sidecar reloads)
#   permissive    helm upgrade --set mesh.defaultMode=permissive: weftd rolls, every proxy gets
#                 the new document; then plaintext from outsider to beta:8080 answers 200, the
#                 meshed calls still do and stay TLS, s_client without a certificate is still
#                 refused; a server-first protocol (a banner) on an undeclared port reaches a
#                 plaintext client after the 1 s inspect delay, a mesh client at once (ports
#                 declared server-first skip the detection: t0450); an Allow AccessPolicy on alpha closes alpha's port to plaintext
#                 (its default becomes deny) while beta, which it names, still calls alpha and
#                 beta still takes plaintext; alpha's access log (default: decisions) has the
#                 refused plaintext connection but not beta's 200s before it, beta's (all) has them
#   scale         beta scaled to 2: alpha's proxy adds the new pod through the runtime API, and 40
#                 calls from alpha reach the new pod over a pooled connection, not one each
# Env: BUILD, KUBECTL_DIR, HELM.
set -u
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=../integration/lib.sh
. tests/integration/lib.sh
# shellcheck source=../../tools/cluster-lib.sh
. tools/cluster-lib.sh

K="$KUBECTL_DIR/kubectl.1.33"
export KUBECTL=$K HELM
CDIR=$KL_TMP/cluster
TESTAPP=$KL_REPO/$BUILD/bin/testapp

if [ "$(id -u)" != 0 ]; then
    t_begin cluster
    t_skip "needs root: kubelet-lite runs pods in network namespaces (veth, bridge, iptables)"
    t_summary
fi

t_begin prerequisites
for bin in "$BUILD/bin/kubelite" "$BUILD/bin/kubelet-lite" "$BUILD/bin/weftd" "$TESTAPP" \
    "$BUILD/bin/weft-agent" "$BUILD/bin/weft-init" "$K" "$HELM"; do
    [ -x "$bin" ] || t_fail "$bin is not an executable"
done
for tool in haproxy tcpdump openssl /usr/bin/python3; do
    command -v $tool >/dev/null || t_fail "$tool is not installed"
done
if other=$(cluster_active); then
    t_fail "a cluster is up in $other"
fi
t_failed && t_summary
t_pass

CAP_PID='' BG_WS='' BG_TCP=''
final() {
    [ -n "$CAP_PID" ] && kill "$CAP_PID" 2>/dev/null
    [ -n "$BG_WS" ] && kill "$BG_WS" 2>/dev/null
    [ -n "$BG_TCP" ] && kill "$BG_TCP" 2>/dev/null
    cluster_down "$CDIR" >/dev/null 2>&1
    kl_cleanup
}
trap final EXIT
chmod 0755 "$KL_TMP" # pods run as other users and read their volumes under it

export KUBECONFIG=$CDIR/kubeconfig
k() { "$K" "$@"; }
cluster_fail() {
    t_fail "$1"
    echo "    --- kubelet-lite log"
    tail -20 "$CDIR/kubelet-lite.log" 2>/dev/null | sed 's/^/    | /'
    return 1
}
# pod_of NS LABEL: the first pod's name
pod_of() { k get pods -n "$1" -l "$2" -o 'jsonpath={.items[0].metadata.name}'; }
ip_of() { k get pod -n "$1" "$2" -o 'jsonpath={.status.podIP}'; }
# pid_of NS POD CONTAINER: the container's process (from its containerID)
pid_of() {
    local f
    for f in containerStatuses initContainerStatuses; do
        k get pod -n "$1" "$2" -o "jsonpath={.status.${f}[?(@.name==\"$3\")].containerID}"
    done | sed -E 's#.*-([0-9]+)$#\1#'
}
# in_pod NS POD: IN=(a command prefix that runs in the app container's network and mount
# namespaces, as root); AS=(the same as the app's user, UID 1000: redirected like the app)
in_pod() {
    local pid
    pid=$(pid_of "$1" "$2" app)
    IN=(nsenter -t "$pid" -n -m)
    AS=("${IN[@]}" setpriv --reuid 1000 --regid 1000 --clear-groups)
}
ready() { [ "$(k get pod -n "$1" "$2" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
proxy_log() { k logs -n "$1" "$2" -c weft-proxy 2>/dev/null; }

ALPHA='' BETA='' LONER='' OUTSIDER='' WEB=''

case_up() {
    run tools/cluster up --dir "$CDIR" -- --set replicas=1
    [ "$RC" = 0 ] || { cluster_fail "tools/cluster up: exit $RC: $OUT"; return 1; }
}

# workload NAME: a Deployment of testapp with httpGet probes, and its Service (port 80 -> 8080)
workload() { # NAME [ANNOTATION]
    cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: mesh}
spec: {selector: {app: $1}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: mesh}
spec:
  replicas: 1
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}${2:+, annotations: {$2\}}}
    spec:
      containers:
      - name: app
        image: weft/testapp
        securityContext: {runAsUser: 1000, runAsGroup: 1000}
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
        livenessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 3}
EOF
}

# The protocol cases' servers: Deployment rpc (gRPC, 2 replicas), pod wsecho (a WebSocket echo
# on 8090 and a line echo that greets first on 2526), their Services
protocol_workloads() {
    cat <<EOF
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: rpc, namespace: mesh}
spec:
  replicas: 2
  selector: {matchLabels: {app: rpc}}
  template:
    metadata: {labels: {app: rpc}}
    spec:
      containers:
      - name: app
        image: weft/testapp
        securityContext: {runAsUser: 1000, runAsGroup: 1000}
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        command: [/usr/bin/python3, $KL_REPO/tests/e2e/grpcapp.py, serve, "0.0.0.0:9000", "\$(POD_NAME)"]
        ports: [{name: grpc, containerPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: rpc, namespace: mesh}
spec: {selector: {app: rpc}, ports: [{name: grpc, port: 9000, targetPort: 9000}]}
---
apiVersion: v1
kind: Pod
metadata: {name: wsecho, namespace: mesh, labels: {app: wsecho}}
spec:
  containers:
  - name: app
    image: weft/testapp
    securityContext: {runAsUser: 1000, runAsGroup: 1000}
    command: [/usr/bin/python3, $KL_REPO/tests/e2e/protoapp.py, ws, 0.0.0.0, "8090", wsecho]
    ports: [{name: http, containerPort: 8090}]
  - name: echo
    image: weft/testapp
    securityContext: {runAsUser: 1000, runAsGroup: 1000}
    command: [/usr/bin/python3, $KL_REPO/tests/e2e/protoapp.py, banner, 0.0.0.0, "2526", wsecho]
    ports: [{name: tcp-echo, containerPort: 2526}]
---
apiVersion: v1
kind: Service
metadata: {name: ws, namespace: mesh}
spec: {selector: {app: wsecho}, ports: [{name: http, port: 80, targetPort: 8090}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: mesh}
spec: {selector: {app: wsecho}, ports: [{name: tcp-echo, port: 26, targetPort: 2526}]}
EOF
}

case_workloads() {
    {
        cat <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: mesh, labels: {weft.dev/inject: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: Pod
metadata: {name: loner, namespace: mesh, labels: {app: loner}}
spec:
  containers:
  - name: app
    image: weft/testapp
    securityContext: {runAsUser: 1000, runAsGroup: 1000}
    command: [/usr/bin/python3, -m, http.server, "9090", --bind, 127.0.0.1, --directory, /]
    ports: [{name: http, containerPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: loner, namespace: mesh}
spec: {selector: {app: loner}, ports: [{name: http, port: 90, targetPort: 9090}]}
---
apiVersion: v1
kind: Pod
metadata: {name: banner, namespace: mesh, labels: {app: banner}}
spec:
  containers:
  - name: app
    image: weft/testapp
    securityContext: {runAsUser: 1000, runAsGroup: 1000}
    command: [/usr/bin/python3, -c, "import socket; s = socket.create_server(('', 2525)); [(c.sendall(b'220 banner\\n'), c.close()) for c, _ in iter(s.accept, None)]"]
    ports: [{name: tcp-banner, containerPort: 2525}]
---
apiVersion: v1
kind: Service
metadata: {name: banner, namespace: mesh}
spec: {selector: {app: banner}, ports: [{name: tcp-banner, port: 25, targetPort: 2525}]}
---
apiVersion: v1
kind: Pod
metadata: {name: outsider, namespace: plain}
spec:
  containers:
  - {name: app, image: weft/testapp, env: [{name: PORT, value: "8081"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: plain, labels: {app: web}}
spec:
  containers:
  - {name: app, image: weft/testapp, env: [{name: POD_NAME, value: web}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: plain}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
EOF
        workload alpha
        workload beta '"weft.dev/access-log": "all"'
        protocol_workloads
    } >"$KL_TMP/workloads.yaml"
    ok "apply" "$K" apply -f "$KL_TMP/workloads.yaml" || return 1
    local p
    for p in alpha beta; do
        wait_for 90 sh -c "[ -n \"\$($K get pods -n mesh -l app=$p -o name)\" ]" ||
            { cluster_fail "no pod for $p"; return 1; }
    done
    ALPHA=$(pod_of mesh app=alpha)
    BETA=$(pod_of mesh app=beta)
    LONER=loner OUTSIDER=outsider WEB=web
    for p in "mesh $ALPHA" "mesh $BETA" "mesh $LONER" "mesh banner" "mesh wsecho" "plain $OUTSIDER" "plain $WEB"; do
        # shellcheck disable=SC2086
        wait_for 90 ready $p || {
            # shellcheck disable=SC2086
            cluster_fail "$p is not Ready: $(k get pod -n $p -o wide 2>&1 | tail -1); proxy: $(proxy_log $p | tail -5)"
            return 1
        }
    done
}

# started NS POD CONTAINER [init]: the container's startedAt (RFC 3339)
started() {
    local f=containerStatuses
    [ -n "${4:-}" ] && f=initContainerStatuses
    k get pod -n "$1" "$2" -o "jsonpath={.status.${f}[?(@.name==\"$3\")].state.running.startedAt}"
}

case_sidecar() {
    local pod weftd_ip pid est
    weftd_ip=$(k get svc -n weft-system weftd -o 'jsonpath={.spec.clusterIP}')
    for pod in "$ALPHA" "$BETA" "$LONER"; do
        okv "$pod layout" "$K" get pod -n mesh "$pod" \
            -o 'jsonpath={.spec.initContainers[*].name}/{.spec.initContainers[1].restartPolicy}/{.spec.containers[*].name}' ||
            return 1
        assert_eq "$OUT" "weft-init weft-proxy/Always/app" "$pod: native sidecar layout" || return 1
        okv "$pod image ids" "$K" get pod -n mesh "$pod" \
            -o 'jsonpath={.status.initContainerStatuses[*].imageID}' || return 1
        assert_eq "$OUT" "kubelet-lite://$KL_REPO/$BUILD/bin/weft-init kubelet-lite://$KL_REPO/$BUILD/bin/weft-agent" \
            "$pod: the real weft-init and weft-agent" || return 1
        okv "$pod proxy state" "$K" get pod -n mesh "$pod" \
            -o 'jsonpath={.status.initContainerStatuses[1].started} {.status.initContainerStatuses[1].ready} {.status.initContainerStatuses[1].restartCount}' ||
            return 1
        assert_eq "$OUT" "true true 0" "$pod: weft-proxy started, ready, never restarted" || return 1
        # the config stream: an established connection from the agent to the weftd Service's
        # 15013 (the ClusterIP: kubelet-lite's service rules take it to weftd's pod)
        pid=$(pid_of mesh "$pod" weft-proxy)
        est=$(nsenter -t "$pid" -n ss -Htnp state established dst "$weftd_ip:15013")
        assert_contains "$est" "weft-agent" "$pod: the agent's connection to weftd:15013" || return 1
        # the key's directory: the emptyDir is root's (0777), the agent's own subdirectory is not
        okv "$pod run directory" nsenter -t "$pid" -m stat -c '%u %a %n' /var/lib/weft \
            /var/lib/weft/proxy /var/lib/weft/proxy/pod.pem || return 1
        assert_eq "$(printf "%s" "$OUT" | tr "\n" " ")" "0 777 /var/lib/weft 1337 700 /var/lib/weft/proxy 1337 600 /var/lib/weft/proxy/pod.pem" \
            "$pod: owners and modes of the run directory and the key" || return 1
        # HAProxy runs, as the agent's child, as UID 1337
        okv "$pod haproxy" ps -o user=,comm= --ppid "$pid" || return 1
        assert_match "$OUT" '^1337 +haproxy$' "$pod: HAProxy under the agent" || return 1
        # the app started after the proxy (its startup probe gates the next container)
        [[ "$(started mesh "$pod" app)" > "$(started mesh "$pod" weft-proxy init)" ]] ||
            [ "$(started mesh "$pod" app)" = "$(started mesh "$pod" weft-proxy init)" ] || {
            t_fail "$pod: app started at $(started mesh "$pod" app), before the proxy"
            return 1
        }
    done
    proxy_log mesh "$BETA" >"$KL_TMP/beta-proxy.log"
    assert_contains "$(cat "$KL_TMP/beta-proxy.log")" "certificate" "beta's agent log" || return 1
    sed -n '1,12p' "$KL_TMP/beta-proxy.log" | sed 's/^/    | /'
}

# call FROM-NS FROM-POD URL [COUNT]: the app's client through its sidecar; OUT: the answers
call() {
    in_pod "$1" "$2"
    okv "$2 -> $3" "${AS[@]}" "$TESTAPP" get "$3" -n "${4:-1}" -t 5000
}

# routed NS POD SERVICE PORT: the pod's proxy routes the Service's ClusterIP:PORT (its rendered
# outbound.map names it) to a backend with a ready endpoint (weight > 0 in the rendered config)
routed() {
    local pid ip be
    pid=$(pid_of "$1" "$2" weft-proxy)
    ip=$(k get svc -n mesh "$3" -o 'jsonpath={.spec.clusterIP}')
    be=$(nsenter -t "$pid" -m awk -v k="$ip:$4" '$1 == k {print $2}' /var/lib/weft/proxy/outbound.map)
    [ -n "$be" ] && nsenter -t "$pid" -m awk -v b="backend $be" \
        '$0 == b {on = 1; next} /^backend / {on = 0} on && / weight [1-9]/ {found = 1} END {exit !found}' \
        /var/lib/weft/proxy/haproxy.cfg
}

case_by_name() {
    # the documents name each other's Service with a ready endpoint before any call, so no
    # call below can take the plaintext passthrough
    wait_for 30 routed mesh "$ALPHA" beta 80 && wait_for 30 routed mesh "$BETA" alpha 80 &&
        wait_for 30 routed mesh "$ALPHA" alpha 80 && wait_for 30 routed mesh "$ALPHA" loner 90 &&
        wait_for 30 routed mesh "$ALPHA" banner 25 || {
        t_fail "the proxies' documents do not route the Services: $(proxy_log mesh "$ALPHA" | tail -5)"
        return 1
    }
    CAP_LOG=$KL_TMP/cap.pcap
    tcpdump -Z root --immediate-mode -i kl0 -U -s 0 -w "$CAP_LOG" tcp >"$KL_TMP/tcpdump.log" 2>&1 &
    CAP_PID=$!
    wait_for 10 grep -q "listening on" "$KL_TMP/tcpdump.log" || { t_fail "tcpdump did not start"; return 1; }
    call mesh "$ALPHA" "http://beta/meshed-secret-a" 3 || return 1
    assert_eq "$OUT" "$(printf '200 %s\n200 %s\n200 %s' "$BETA" "$BETA" "$BETA")" "alpha -> beta by name" ||
        return 1
    call mesh "$BETA" "http://alpha.mesh/meshed-secret-b" 3 || return 1
    assert_eq "$OUT" "$(printf '200 %s\n200 %s\n200 %s' "$ALPHA" "$ALPHA" "$ALPHA")" "beta -> alpha.mesh" ||
        return 1
    # positive control on the same capture: an unmeshed plaintext call across the bridge
    in_pod plain "$OUTSIDER"
    okv "control" "${IN[@]}" "$TESTAPP" get "http://web.plain:80/plaintext-control" -t 5000 ||
        return 1
}

case_capture() {
    local cap a b n16 n17
    sleep 0.5
    kill "$CAP_PID" 2>/dev/null
    wait "$CAP_PID" 2>/dev/null
    CAP_PID=
    okv "read capture" tcpdump -r "$CAP_LOG" -nn -A || return 1
    cap=$OUT
    assert_contains "$cap" "GET /plaintext-control" "the control's request seen in clear" || return 1
    assert_contains "$cap" "HTTP/1.1 200" "the control's answer seen in clear" || return 1
    assert_not_contains "$cap" "meshed-secret" "the meshed requests' paths in clear" || return 1
    assert_not_contains "$cap" "$BETA" "beta's answer (its pod name) in clear" || return 1
    a=$(ip_of mesh "$ALPHA")
    b=$(ip_of mesh "$BETA")
    # TLS records (content type 0x16 handshake, 0x17 application data, version 3.3) between the
    # two pods, on the app's port
    okv "TLS records alpha -> beta" tcpdump -r "$CAP_LOG" -nn \
        "src host $a and dst host $b and dst port 8080 and tcp[((tcp[12:1] & 0xf0) >> 2):1] = 0x17 and tcp[((tcp[12:1] & 0xf0) >> 2)+1:2] = 0x0303" ||
        return 1
    n17=$(printf '%s\n' "$OUT" | grep -c .)
    assert_gt "$n17" 0 "TLS application data records alpha -> beta:8080" || return 1
    okv "TLS handshakes beta -> alpha" tcpdump -r "$CAP_LOG" -nn \
        "src host $b and dst host $a and dst port 8080 and tcp[((tcp[12:1] & 0xf0) >> 2):1] = 0x16" ||
        return 1
    n16=$(printf '%s\n' "$OUT" | grep -c .)
    assert_gt "$n16" 0 "TLS handshake records beta -> alpha:8080" || return 1
    # nothing between the two meshed pods is HTTP in clear
    okv "between alpha and beta" tcpdump -r "$CAP_LOG" -nn -A "host $a and host $b" || return 1
    assert_not_contains "$OUT" "HTTP/1." "plaintext HTTP between the meshed pods" || return 1
    echo "    $(printf '%s\n' "$OUT" | grep -c ' IP ') packets between alpha and beta, $n17 segments starting an application-data record alpha -> beta:8080, $n16 starting a handshake record beta -> alpha:8080"
    # and nothing of it goes to the Service addresses: the sidecar dials the endpoint itself
    okv "to cluster IPs" tcpdump -r "$CAP_LOG" -nn "net 10.96.0.0/12 and port 80" || return 1
    assert_eq "$OUT" "" "packets to ClusterIPs on the bridge"
}

case_s_client() {
    local b cert chain
    b=$(ip_of mesh "$BETA")
    in_pod plain "$OUTSIDER"
    runo "${IN[@]}" openssl s_client -connect "$b:8080" -showcerts </dev/null
    chain=$(printf '%s\n' "$OUT" | sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p')
    cert=$(printf '%s\n' "$chain" | sed '/END CERTIFICATE/q')
    [ -n "$cert" ] || { t_fail "s_client saw no certificate: $OUT $ERR"; return 1; }
    okv "SAN" openssl x509 -noout -ext subjectAltName <<<"$cert" || return 1
    assert_contains "$OUT" "URI:spiffe://cluster.local/ns/mesh/sa/default" "the certificate's URI SAN" ||
        return 1
    k get configmap -n mesh weft-root-ca -o 'jsonpath={.data.ca\.crt}' >"$KL_TMP/root.pem"
    printf '%s\n' "$cert" >"$KL_TMP/beta.pem"
    printf '%s\n' "$chain" >"$KL_TMP/chain.pem"
    okv "verify against weft-root-ca" openssl verify -CAfile "$KL_TMP/root.pem" \
        -untrusted "$KL_TMP/chain.pem" "$KL_TMP/beta.pem" || return 1
    # an HTTP request without a client certificate: no answer
    runo "${IN[@]}" sh -c "printf 'GET / HTTP/1.1\r\nHost: beta\r\n\r\n' | timeout 5 openssl s_client -connect $b:8080 -quiet -ign_eof"
    assert_not_contains "$OUT" "HTTP/1.1" "an answer without a client certificate" || return 1
    assert_match "$ERR" "alert|error" "s_client's report of the refused handshake" || return 1
    # plaintext from an unmeshed pod: refused (default mode all-authenticated)
    runo "${IN[@]}" "$TESTAPP" get "http://$b:8080/plaintext" -t 3000
    assert_match "$OUT" '^ERR' "plaintext to a meshed pod" || return 1
    okv "direct to the unmeshed web" "${IN[@]}" "$TESTAPP" get "http://$(ip_of plain "$WEB"):8080/" ||
        return 1
    assert_eq "$OUT" "200 web" "plaintext to an unmeshed pod (control)"
}

case_self_call() {
    local subj
    # beta: its sidecar logs every request (weft.dev/access-log: all), so the log shows who called
    call mesh "$BETA" "http://beta/self-call" 2 || return 1
    assert_eq "$OUT" "$(printf '200 %s\n200 %s' "$BETA" "$BETA")" "beta -> its own Service" || return 1
    # through beta's inbound listener, which saw beta's own certificate
    subj="/O=cluster.local/OU=mesh/CN=default.mesh.cluster.local"
    wait_for 5 sh -c "$K logs -n mesh $BETA -c weft-proxy | grep -F '$subj port=8080' | grep -q ' 200 '" || {
        t_fail "beta's inbound log has no call from $subj: $(proxy_log mesh "$BETA" | tail -5)"
        return 1
    }
}

case_loopback_app() {
    in_pod mesh "$LONER"
    okv "inside loner" "${IN[@]}" "$TESTAPP" get http://127.0.0.1:9090/etc/hostname -t 3000 ||
        return 1
    assert_match "$OUT" '^200 ' "the app answers on loopback inside its pod" || return 1
    in_pod mesh "$ALPHA"
    runo "${AS[@]}" "$TESTAPP" get http://loner:90/etc/hostname -t 5000
    echo "    alpha -> loner:90: $OUT"
    # over mTLS to loner's sidecar (alpha routes loner:90, see by-name), whose connection to
    # the app on the pod's IP is refused: HAProxy's 503
    assert_match "$OUT" '^503 ' "alpha -> loner:90 (the app is bound to 127.0.0.1)" || return 1
}

case_uid_1337() {
    cat >"$KL_TMP/as1337.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: as1337, namespace: mesh}
spec:
  containers:
  - {name: app, image: weft/testapp, securityContext: {runAsUser: 1337}}
EOF
    fails "apply a pod running as 1337" "$K" apply -f "$KL_TMP/as1337.yaml" || return 1
    assert_contains "$OUT" 'container "app" runs as UID 1337 (spec.containers[0].securityContext.runAsUser), the UID reserved for the weft-proxy sidecar' \
        "kubectl apply's message" || return 1
    fails "not created" "$K" get pod -n mesh as1337
}

case_probes() {
    local n
    okv "probes" "$K" get pod -n mesh "$BETA" \
        -o 'jsonpath={.spec.containers[0].readinessProbe.httpGet.port} {.spec.containers[0].readinessProbe.httpGet.path} {.spec.containers[0].livenessProbe.httpGet.path}' ||
        return 1
    assert_eq "$OUT" "15020 /app-health/app/readyz /app-health/app/livez" "beta's rewritten probes" ||
        return 1
    ready mesh "$BETA" || { t_fail "beta is not Ready"; return 1; }
    okv "restarts" "$K" get pod -n mesh "$BETA" -o 'jsonpath={.status.containerStatuses[0].restartCount}' ||
        return 1
    assert_eq "$OUT" 0 "beta's app restarts (liveness every second)" || return 1
    n=$(k logs -n mesh "$BETA" -c app | grep -c 'GET /healthz')
    assert_gt "$n" 4 "probe requests the app received" || return 1
}

# python3 -c "$BANNER_CLIENT" HOST PORT: "<first line from the server> <ms it took>", or exit 1
# when the connection closes without one
BANNER_CLIENT='import socket, sys, time
t = time.time()
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
c.settimeout(5)
d = c.recv(100)
sys.exit("closed without a banner") if not d else print(d.decode().strip(), int((time.time() - t) * 1000))'

svc_ip() { k get svc -n mesh "$1" -o 'jsonpath={.spec.clusterIP}'; }
# agent_metric NS POD SERIES: one sample of the pod's agent metrics on 15020 (0 when absent)
agent_metric() {
    nsenter -t "$(pid_of "$1" "$2" app)" -n curl -s -m 5 http://127.0.0.1:15020/stats/prometheus |
        awk -v s="$3" '$1 == s {v = $2} END {print v + 0}'
}
grpc_series() { echo "weft_agent_grpc_responses_total{direction=\"$1\",service=\"mesh/rpc\",code=\"$2\"}"; }
# grpc_counts DIRECTION POD...: "<code 0> <code 5>" summed over the pods' sidecars
grpc_counts() {
    local dir=$1 n0=0 n5=0 p
    shift
    for p in "$@"; do
        n0=$((n0 + $(agent_metric mesh "$p" "$(grpc_series "$dir" 0)")))
        n5=$((n5 + $(agent_metric mesh "$p" "$(grpc_series "$dir" 5)")))
    done
    echo "$n0 $n5"
}
# frontend_conns NS POD FRONTEND: connections the pod's HAProxy frontend (weft_inbound,
# weft_outbound) has accepted (its own count, read from inside the pod on 15090)
frontend_conns() {
    nsenter -t "$(pid_of "$1" "$2" app)" -n curl -s -m 5 "http://$(ip_of "$1" "$2"):15090/metrics" |
        awk -v s="haproxy_frontend_connections_total{proxy=\"$3\"}" '$1 == s {print $2}'
}
# grpc_call ARGS...: grpcapp.py's client as alpha's app (in_pod mesh $ALPHA first)
grpc_call() { okv "grpc call $*" "${AS[@]}" /usr/bin/python3 "$KL_REPO/tests/e2e/grpcapp.py" call "$@"; }
# sub "A B" "C D": "A-C B-D"
sub() { read -r a1 a2 <<<"$1"; read -r b1 b2 <<<"$2"; echo "$((a1 - b1)) $((a2 - b2))"; }

case_grpc() {
    local ip rpcs r c0 c1 out0 in0 n
    ip=$(svc_ip rpc)
    rpcs=$(k get pods -n mesh -l app=rpc -o 'jsonpath={.items[*].metadata.name}')
    wait_for 60 routed mesh "$ALPHA" rpc 9000 ||
        { cluster_fail "alpha's proxy does not route rpc: $(proxy_log mesh "$ALPHA" | tail -3)"; return 1; }
    in_pod mesh "$ALPHA"
    # both servers answer (their apps listen a moment after the pods start)
    wait_for 60 sh -c "${AS[*]} /usr/bin/python3 $KL_REPO/tests/e2e/grpcapp.py call $ip:9000 -n 20 | grep -c ' OK ' | grep -qx 2" ||
        { t_fail "rpc's two pods never both answered: $("${AS[@]}" /usr/bin/python3 "$KL_REPO/tests/e2e/grpcapp.py" call "$ip:9000" -n 20 2>&1 | tail -3)"; return 1; }
    out0=$(grpc_counts outbound "$ALPHA")
    # shellcheck disable=SC2086
    in0=$(grpc_counts inbound $rpcs)
    c0=$(frontend_conns mesh "$ALPHA" weft_outbound)
    grpc_call "$ip:9000" -n 400 || return 1
    c1=$(frontend_conns mesh "$ALPHA" weft_outbound)
    echo "    $(printf '%s' "$OUT" | tr '\n' ';') over $((c1 - c0)) connection(s) from alpha's app"
    assert_eq "$(printf '%s\n' "$OUT" | head -1)" "calls 400" "calls made" || return 1
    assert_eq "$((c1 - c0))" 1 "connections alpha's sidecar accepted for them" || return 1
    for r in $rpcs; do
        n=$(printf '%s\n' "$OUT" | awk -v r="$r" '$2 == "OK" && $3 == r {print $1}')
        [ "${n:-0}" -ge 160 ] && [ "${n:-0}" -le 240 ] ||
            { t_fail "per call 50/50 within 40: $r answered ${n:-0} of 400"; return 1; }
    done
    grpc_call "$ip:9000" -n 30 --code 5 || return 1
    assert_eq "$(printf '%s\n' "$OUT" | sed 1d | awk '{s[$2] += $1} END {for (k in s) print s[k], k}')" \
        "30 NOT_FOUND" "what the client saw" || return 1
    # the counts travel in log lines to the agents: a moment after the answers
    counted() { [ "$(sub "$(grpc_counts "$1" "${@:3}")" "$2")" = "400 30" ]; }
    # shellcheck disable=SC2086
    wait_for 10 counted outbound "$out0" "$ALPHA" && wait_for 10 counted inbound "$in0" $rpcs
    assert_eq "$(sub "$(grpc_counts outbound "$ALPHA")" "$out0")" "400 30" \
        "codes 0 and 5 counted by alpha's sidecar (outbound)" || return 1
    # shellcheck disable=SC2086
    assert_eq "$(sub "$(grpc_counts inbound $rpcs)" "$in0")" "400 30" \
        "codes 0 and 5 counted by the rpc pods' sidecars (inbound)" || return 1
}

# A TrafficSplit of a grpc Service splits the calls of one channel per call: rpc's two pods are
# labelled half=a and half=b, Services rpc-a and rpc-b select one each
case_grpc_split() {
    local ip rpcs pa pb na nb
    ip=$(svc_ip rpc)
    rpcs=$(k get pods -n mesh -l app=rpc -o 'jsonpath={.items[*].metadata.name}')
    read -r pa pb <<<"$rpcs"
    ok "label" "$K" label pod -n mesh "$pa" half=a --overwrite || return 1
    ok "label" "$K" label pod -n mesh "$pb" half=b --overwrite || return 1
    ok "split 80/20" "$K" apply -f - <<'EOF' || return 1
apiVersion: v1
kind: Service
metadata: {name: rpc-a, namespace: mesh}
spec: {selector: {app: rpc, half: a}, ports: [{name: grpc, port: 9000, targetPort: 9000}]}
---
apiVersion: v1
kind: Service
metadata: {name: rpc-b, namespace: mesh}
spec: {selector: {app: rpc, half: b}, ports: [{name: grpc, port: 9000, targetPort: 9000}]}
---
apiVersion: mesh.weft.dev/v1alpha1
kind: TrafficSplit
metadata: {name: rpc, namespace: mesh}
spec:
  service: rpc
  backends: [{service: rpc-a, weight: 80}, {service: rpc-b, weight: 20}]
EOF
    ok "Programmed" "$K" wait -n mesh --for=condition=Programmed trafficsplit/rpc --timeout=60s || return 1
    in_pod mesh "$ALPHA"
    grpc_call "$ip:9000" -n 1000 || return 1
    na=$(printf '%s\n' "$OUT" | awk -v r="$pa" '$2 == "OK" && $3 == r {print $1}')
    nb=$(printf '%s\n' "$OUT" | awk -v r="$pb" '$2 == "OK" && $3 == r {print $1}')
    echo "    80/20, 1,000 calls on one channel: rpc-a ($pa) ${na:-0}, rpc-b ($pb) ${nb:-0}"
    assert_eq "$((${na:-0} + ${nb:-0}))" 1000 "calls answered OK" || return 1
    [ "${na:-0}" -ge 770 ] && [ "${na:-0}" -le 830 ] ||
        { t_fail "rpc-a's share: ${na:-0} of 1000 (want 800 within 30)"; return 1; }
    ok "split 0/100" "$K" patch trafficsplit rpc -n mesh --type=merge \
        -p '{"spec":{"backends":[{"service":"rpc-a","weight":0},{"service":"rpc-b","weight":100}]}}' || return 1
    ok "Programmed" "$K" wait -n mesh --for=condition=Programmed trafficsplit/rpc --timeout=60s || return 1
    grpc_call "$ip:9000" -n 200 || return 1
    assert_eq "$(printf '%s\n' "$OUT" | sed 1d)" "200 OK $pb" "0/100: every call to rpc-b" || return 1
    ok "cleanup" "$K" delete -n mesh trafficsplit/rpc service/rpc-a service/rpc-b
}

# reloads NS POD: configurations the pod's agent applied by a reload
reloads() { proxy_log "$1" "$2" | grep -c 'msg="configuration applied (ACK)".* how=reload'; }
reloads_above() { [ "$(reloads "$1" "$2")" -gt "$3" ]; }

case_long_lived() {
    local a0 w0 i out held sent echoed err
    in_pod mesh "$ALPHA"
    "${AS[@]}" /usr/bin/python3 "$KL_REPO/tests/e2e/protoapp.py" ws-hold "$(svc_ip ws)" 80 /chat 30 >"$KL_TMP/ws.out" 2>&1 &
    BG_WS=$!
    "${AS[@]}" /usr/bin/python3 "$KL_REPO/tests/e2e/protoapp.py" hold "$(svc_ip echo)" 26 30 >"$KL_TMP/tcp.out" 2>&1 &
    BG_TCP=$!
    sleep 2
    assert_eq "$(head -1 "$KL_TMP/ws.out")" "upgrade 101 -" "the WebSocket's upgrade through both sidecars" || return 1
    a0=$(reloads mesh "$ALPHA") w0=$(reloads mesh wsecho)
    # two new Services (every caller reloads), an Audit policy on ws (wsecho's sidecar reloads)
    for i in 1 2; do
        ok "Service extra-$i" "$K" apply -f - <<EOF || return 1
apiVersion: v1
kind: Service
metadata: {name: extra-$i, namespace: mesh}
spec: {selector: {app: beta}, ports: [{name: http, port: 80, targetPort: 8080}]}
EOF
        wait_for 30 reloads_above mesh "$ALPHA" $((a0 + i - 1)) ||
            { t_fail "alpha's sidecar did not reload for extra-$i"; return 1; }
    done
    wait_for 30 reloads_above mesh wsecho $((w0 + 1)) ||
        { t_fail "wsecho's sidecar did not reload for the new Services"; return 1; }
    ok "Audit on ws" "$K" apply -f - <<'EOF' || return 1
apiVersion: mesh.weft.dev/v1alpha1
kind: AccessPolicy
metadata: {name: ws-audit, namespace: mesh}
spec:
  targetRef: {kind: Service, name: ws}
  action: Audit
  from:
  - serviceAccount: {name: default, namespace: mesh}
EOF
    wait_for 30 reloads_above mesh wsecho $((w0 + 2)) ||
        { t_fail "wsecho's sidecar did not reload for the policy ($(reloads mesh wsecho) reloads, $w0 before)"; return 1; }
    echo "    while both streams were open: alpha's sidecar reloaded $(($(reloads mesh "$ALPHA") - a0)) times, wsecho's $(($(reloads mesh wsecho) - w0))"
    wait "$BG_WS" "$BG_TCP"
    BG_WS='' BG_TCP=''
    for out in ws tcp; do
        echo "    $out: $(tail -1 "$KL_TMP/$out.out")"
        read -r _ held _ sent _ echoed _ err <<<"$(tail -1 "$KL_TMP/$out.out")"
        assert_eq "$err" none "$out: the stream's error" || return 1
        assert_match "$held" '^(29\.[5-9]|3[01]\.[0-9])$' "$out: seconds held (of 30)" || return 1
        assert_eq "$echoed" "$sent" "$out: echoes of the messages sent" || return 1
        assert_gt "$sent" 250 "$out: messages sent in 30 s (one every 100 ms)" || return 1
    done
    ok "cleanup" "$K" delete -n mesh service/extra-1 service/extra-2 accesspolicy/ws-audit
}

case_permissive() {
    local a b t0 n
    b=$(ip_of mesh "$BETA")
    t0=$SECONDS
    ok "helm upgrade" env KUBECONFIG="$CDIR/kubeconfig" "$HELM" upgrade weft "$KL_REPO/charts/weft" \
        -n weft-system --reuse-values --set mesh.defaultMode=permissive || return 1
    in_pod plain "$OUTSIDER"
    wait_for 120 sh -c "${IN[*]} $TESTAPP get http://$b:8080/permissive -t 2000 | grep -q '^200 '" ||
        { cluster_fail "plaintext to beta never answered after the upgrade: $(proxy_log mesh "$BETA" | tail -5)"; return 1; }
    echo "    plaintext admitted $((SECONDS - t0)) s after helm upgrade"
    okv "plaintext" "${IN[@]}" "$TESTAPP" get "http://$b:8080/permissive" -n 3 -t 3000 ||
        return 1
    assert_eq "$OUT" "$(printf '200 %s\n200 %s\n200 %s' "$BETA" "$BETA" "$BETA")" "plaintext in permissive mode" ||
        return 1
    call mesh "$ALPHA" "http://beta/still-meshed" 3 || return 1
    assert_eq "$OUT" "$(printf '200 %s\n200 %s\n200 %s' "$BETA" "$BETA" "$BETA")" "alpha -> beta in permissive mode" ||
        return 1
    wait_for 5 sh -c "$K logs -n mesh $BETA -c weft-proxy | grep -F 'OU=mesh/CN=default.mesh.cluster.local port=8080' | grep -q 'GET /still-meshed\| 200 '" ||
        { t_fail "beta's TLS frontend did not log alpha's call"; return 1; }
    runo "${IN[@]}" sh -c "printf 'GET / HTTP/1.1\r\nHost: beta\r\n\r\n' | timeout 5 openssl s_client -connect $b:8080 -quiet -ign_eof"
    assert_not_contains "$OUT" "HTTP/1.1" "TLS without a client certificate in permissive mode" || return 1
    proxy_log mesh "$BETA" | grep -F "plaintext port=8080" | tail -1 | sed 's/^/    | /'
    # A server-first protocol (the server speaks first) on a port not declared so (named
    # tcp-banner, not smtp: that name declares server-first, mutual TLS only in permissive mode):
    # a plaintext client gets the banner after the inspect delay; a mesh client at once (its
    # sidecar sends a ClientHello)
    wait_for 30 "${IN[@]}" /usr/bin/python3 -c "$BANNER_CLIENT" "$(ip_of mesh banner)" 2525 ||
        { t_fail "banner's proxy never admitted plaintext"; return 1; }
    okv "banner, plaintext" "${IN[@]}" /usr/bin/python3 -c "$BANNER_CLIENT" "$(ip_of mesh banner)" 2525 ||
        return 1
    echo "    server-first, plaintext client in permissive mode: $OUT"
    assert_match "$OUT" '^220 banner [0-9]+$' "the banner through the permissive port" || return 1
    assert_gt "${OUT##* }" 900 "ms to the banner for a plaintext client (the inspect delay)" || return 1
    in_pod mesh "$ALPHA"
    okv "banner, meshed" "${AS[@]}" /usr/bin/python3 -c "$BANNER_CLIENT" banner 25 || return 1
    echo "    server-first, mesh client: $OUT"
    assert_match "$OUT" '^220 banner [0-9]+$' "the banner through the mesh" || return 1
    assert_gt 900 "${OUT##* }" "ms to the banner for a mesh client" || return 1
    in_pod plain "$OUTSIDER"
    # An Allow on alpha makes its port's default deny: no plaintext there, mesh peers it names
    # still pass (beta runs as the ServiceAccount default too)
    a=$(ip_of mesh "$ALPHA")
    okv "plaintext to alpha before the policy" "${IN[@]}" "$TESTAPP" get "http://$a:8080/" -t 3000 ||
        return 1
    assert_eq "$OUT" "200 $ALPHA" "plaintext to alpha without a policy" || return 1
    ok "AccessPolicy" "$K" apply -f - <<'EOF' || return 1
apiVersion: mesh.weft.dev/v1alpha1
kind: AccessPolicy
metadata: {name: alpha-from-mesh, namespace: mesh}
spec:
  targetRef: {kind: Service, name: alpha}
  action: Allow
  from:
  - serviceAccount: {name: default, namespace: mesh}
EOF
    wait_for 30 sh -c "! ${IN[*]} $TESTAPP get http://$a:8080/ -t 2000 | grep -q '^200 '" ||
        { t_fail "plaintext to alpha still answered 30 s after the Allow"; return 1; }
    runo "${IN[@]}" "$TESTAPP" get "http://$a:8080/" -t 3000
    assert_match "$OUT" '^ERR' "plaintext to alpha under an Allow" || return 1
    call mesh "$BETA" "http://alpha/allowed" 2 || return 1
    assert_eq "$OUT" "$(printf '200 %s\n200 %s' "$ALPHA" "$ALPHA")" "beta -> alpha under the Allow" ||
        return 1
    # The access log: alpha has the default (decisions and errors), beta weft.dev/access-log:
    # all. Both calls are in beta's outbound log; alpha's inbound logs a later refused plaintext
    # connection but not the two 200s before it.
    n=$(proxy_log mesh "$ALPHA" | grep -c 'plaintext port=8080')
    runo "${IN[@]}" "$TESTAPP" get "http://$a:8080/after-allowed" -t 3000
    wait_for 10 sh -c "[ \$($K logs -n mesh $ALPHA -c weft-proxy | grep -c 'plaintext port=8080') -gt $n ]" ||
        { t_fail "alpha's proxy did not log the refused plaintext connection"; return 1; }
    assert_eq "$(proxy_log mesh "$ALPHA" | grep -c 'CN=default.mesh.cluster.local port=8080 in_8080 200')" 0 \
        "allowed requests in alpha's access log (default: decisions)" || return 1
    assert_gt "$(proxy_log mesh "$BETA" | grep -c -e '-> [0-9.]*:80 oh_mesh_alpha_80/.* 200 ')" 1 \
        "beta's calls to alpha in beta's access log (weft.dev/access-log: all)" || return 1
    okv "plaintext to beta" "${IN[@]}" "$TESTAPP" get "http://$b:8080/" -t 3000 || return 1
    assert_eq "$OUT" "200 $BETA" "plaintext to beta (no policy) still admitted"
}


# A scale-up adds the new endpoint to the callers' HAProxy through the runtime API; the added
# server keeps its connections to the new pod's sidecar pooled like a configured one (HAProxy
# 2.6 gives an added server no idle pool unless told: agent/haproxy.c, RUNTIME_SERVER_POOL)
case_scale() {
    local new nip pid n0 c0 c1 n_new
    pid=$(pid_of mesh "$ALPHA" weft-proxy)
    n0=$(proxy_log mesh "$ALPHA" | grep -c 'applied through the runtime API" servers_added=[1-9]')
    ok "scale beta to 2" "$K" scale deploy beta -n mesh --replicas=2 || return 1
    wait_for 90 sh -c "[ \$($K get pods -n mesh -l app=beta -o 'jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}' | wc -w) = 2 ] && ! $K get pods -n mesh -l app=beta -o 'jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}' | grep -q False" ||
        { t_fail "beta's second pod not ready: $($K get pods -n mesh -l app=beta 2>&1)"; return 1; }
    new=$(k get pods -n mesh -l app=beta -o 'jsonpath={.items[*].metadata.name}' | tr ' ' '\n' | grep -vx "$BETA")
    nip=$(ip_of mesh "$new")
    wait_for 30 sh -c "nsenter -t $pid -m grep -q ' server ${nip}_8080_[0-9a-f]* ${nip}:8080 weight [1-9]' /var/lib/weft/proxy/haproxy.cfg" ||
        { t_fail "alpha's proxy does not route to $new ($nip): $(proxy_log mesh "$ALPHA" | tail -3)"; return 1; }
    assert_gt "$(proxy_log mesh "$ALPHA" | grep -c 'applied through the runtime API" servers_added=[1-9]')" "$n0" \
        "alpha's applications adding a server through the runtime API" || return 1
    c0=$(frontend_conns mesh "$new" weft_inbound)
    call mesh "$ALPHA" "http://beta/pooled" 40 || return 1
    n_new=$(printf '%s\n' "$OUT" | grep -cx "200 $new")
    c1=$(frontend_conns mesh "$new" weft_inbound)
    echo "    40 calls from alpha: $n_new answered by $new, which accepted $((c1 - c0)) connections for them"
    assert_eq "$(printf '%s\n' "$OUT" | grep -cv '^200 ')" 0 "failed calls" || return 1
    assert_gt "$n_new" 9 "calls answered by the new pod" || return 1
    # one call at a time: one pooled connection serves them (before the fix: about one per call)
    assert_gt 4 "$((c1 - c0))" "connections the new pod accepted for $n_new calls" || return 1
}

case_down() {
    run tools/cluster down --dir "$CDIR"
    [ "$RC" = 0 ] || { t_fail "tools/cluster down: exit $RC: $OUT"; return 1; }
    assert_eq "$(cluster_leftovers "$CDIR")" "" "what down left behind"
}

failed0=$T_FAILED
t_run up case_up
[ "$T_FAILED" = "$failed0" ] && t_run workloads case_workloads
if [ "$T_FAILED" = "$failed0" ]; then
    t_run sidecar case_sidecar
    t_run by-name case_by_name
    t_run capture case_capture
    t_run s-client case_s_client
    t_run self-call case_self_call
    t_run loopback-app case_loopback_app
    t_run uid-1337 case_uid_1337
    t_run probes case_probes
    t_run grpc case_grpc
    t_run grpc-split case_grpc_split
    t_run long-lived case_long_lived
    t_run permissive case_permissive
    t_run scale case_scale
fi
t_run down case_down
t_summary
