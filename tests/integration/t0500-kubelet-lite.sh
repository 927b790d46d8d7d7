#!/usr/bin/env bash
# t0500-kubelet-lite.sh - kubelet-lite runs kubelite's pods as processes in network namespaces.
#
# Starts kubelite and kubelet-lite (root only: network namespaces, veth, a bridge, iptables),
# then drives it with kubectl 1.33:
#   node         the Node registers Ready with the pod CIDR
#   init-netns   an init container installs an iptables rule in the pod's netns (NET_ADMIN), the
#                testapp container starts, gets an IP, becomes Ready, joins its EndpointSlice,
#                answers through its ClusterIP from the host and from another pod
#   sidecar      a native sidecar (init container, restartPolicy Always) with a startup probe
#                is running before the next init container starts, and keeps running
#   deployment   3 replicas behind a Service: requests to the ClusterIP reach all three
#   readiness    a failing readiness probe takes a pod out of the EndpointSlice and traffic
#   volumes-env  env (fieldRef, configMapKeyRef, secretKeyRef, $(VAR)), runAsUser, configMap,
#                secret, downwardAPI, emptyDir and a projected ServiceAccount token at their
#                mountPaths; the token passes TokenReview for its audience
#   jobs         restartPolicy Never: exit 0 -> Succeeded, exit 3 -> Failed (exitCode 3)
#   restarts     a crashing container restarts with backoff (CrashLoopBackOff)
#   bad-image    an image not in the map waits with ErrImagePull
#   delete       deleting pods kills their processes, removes their netns and endpoints
#   shutdown     SIGTERM: kubelet-lite exits 0 leaving no netns, link, chain or process
# Env: BUILD (build), KUBELITE, KUBELET_LITE ($BUILD/bin/kubelet-lite), TESTAPP
# ($BUILD/bin/testapp), KUBECTL_DIR.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

abs() { case $1 in /*) echo "$1" ;; *) echo "$KL_REPO/$1" ;; esac }
KUBELET_LITE=$(abs "${KUBELET_LITE:-$BUILD/bin/kubelet-lite}")
TESTAPP=$(abs "${TESTAPP:-$BUILD/bin/testapp}")
K="$KUBECTL_DIR/kubectl.1.33"
KLT_LOG=$KL_TMP/kubelet-lite.log
KLT_ROOT=$KL_TMP/kubelet-root
KLT_PID=

if [ "$(id -u)" != 0 ]; then
    t_begin kubelet-lite
    t_skip "needs root (network namespaces, veth links, a bridge and iptables rules)"
    t_summary
fi

t_begin prerequisites
for bin in "$KUBELITE" "$KUBELET_LITE" "$TESTAPP" "$K" /usr/sbin/ip /usr/sbin/iptables; do
    [ -x "$bin" ] || t_fail "$bin is not an executable (make; or set KUBELITE/KUBELET_LITE/TESTAPP)"
done
if ip link show kl0 >/dev/null 2>&1 || ip netns list | grep -q '^kl-'; then
    t_fail "a kubelet-lite is running or left kl0/kl-* behind (kubelet-lite --cleanup)"
fi
t_failed && t_summary
t_pass

. "$(dirname "$0")/kubelet-lib.sh"
trap final_cleanup EXIT

t_begin start
kl_start || { t_fail "kubelite did not start"; t_summary; }
cat >"$KL_TMP/images" <<EOF
# image[:tag-pattern] program [args...]
weft/testapp $TESTAPP
weft/shell /bin/sh
EOF
"$KUBELET_LITE" --kubeconfig "$KUBECONFIG" --images "$KL_TMP/images" --node-name kl-node \
    --root "$KLT_ROOT" --shutdown-grace 5 --log-level debug >"$KLT_LOG" 2>&1 &
KLT_PID=$!
bg_track "$KLT_PID"
node_ready() {
    [ "$("$K" get node kl-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' \
        2>/dev/null)" = True ]
}
wait_for 10 node_ready || fail "node kl-node not Ready after 10 s"
t_failed || t_pass

# jp OBJ JSONPATH: print a field (empty on error).
jp() { "$K" get "$1" -o "jsonpath=$2" 2>/dev/null; }
uid8() { jp "pod/$1" '{.metadata.uid}' | tr -d - | cut -c1-8; }
pod_ready() { [ "$(jp "pod/$1" '{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
# in_pod POD: the command prefix that runs a command in the pod's network namespace.
in_pod() { echo ip netns exec "kl-$(uid8 "$1")"; }

# --- node ---------------------------------------------------------------------------------
t_begin node
okv "get node" "$K" get node kl-node -o jsonpath='{.spec.podCIDR} {.status.addresses[0].address}'
assert_eq "$OUT" "10.244.0.0/24 10.244.0.1" "podCIDR and InternalIP"
t_pass

# --- init container with iptables, service, ClusterIP -------------------------------------
t_begin init-netns
cat >"$KL_TMP/web.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  initContainers:
  - name: redirect
    image: weft/shell
    command: ["/bin/sh", "-c", "iptables -t nat -A OUTPUT -p tcp --dport 9999 -j REDIRECT --to-ports 8080"]
    securityContext: {capabilities: {add: [NET_ADMIN]}}
  containers:
  - name: app
    image: weft/testapp:1.0
    env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - {name: app, image: weft/testapp, env: [{name: PORT, value: "8081"}]}
EOF
ok "apply" "$K" apply -f "$KL_TMP/web.yaml" &&
    ok "wait Ready" "$K" wait --for=condition=Ready pod/web pod/client --timeout=20s || fail "pods not Ready"
if ! t_failed; then
    IP=$(jp pod/web '{.status.podIP}')
    assert_match "$IP" '^10\.244\.0\.[0-9]+$' "podIP"
    assert_eq "$(jp pod/web '{.status.hostIP} {.status.phase} {.spec.nodeName}')" \
        "10.244.0.1 Running kl-node" "hostIP, phase, nodeName"
    assert_eq "$(jp pod/web '{.status.initContainerStatuses[0].state.terminated.reason} {.status.initContainerStatuses[0].state.terminated.exitCode}')" \
        "Completed 0" "init container status"
    assert_eq "$(jp pod/web '{.status.containerStatuses[0].ready} {.status.containerStatuses[0].started} {.status.containerStatuses[0].restartCount}')" \
        "true true 0" "container status"
    runo $(in_pod web) iptables -t nat -S OUTPUT
    assert_contains "$OUT" "--dport 9999 -j REDIRECT --to-ports 8080" "rule in the pod netns"
    runo iptables -t nat -S OUTPUT
    assert_not_contains "$OUT" "--dport 9999" "rule must not be on the host"
    runo $(in_pod web) "$TESTAPP" get http://127.0.0.1:9999/
    assert_eq "$OUT" "200 web" "redirected port inside the pod"
    slice_has() { jp endpointslice/web-kl '{range .endpoints[*]}{.addresses[0]}={.conditions.ready} {end}' | grep -q "$1=true"; }
    wait_for 5 slice_has "$IP" || fail "$IP not ready in EndpointSlice web-kl"
    CIP=$(jp svc/web '{.spec.clusterIP}')
    wait_for 5 "$TESTAPP" get "http://$CIP/" || fail "ClusterIP $CIP unreachable from the host"
    runo "$TESTAPP" get "http://$CIP/" -n 3
    assert_eq "$OUT" $'200 web\n200 web\n200 web' "ClusterIP from the host"
    runo $(in_pod client) "$TESTAPP" get "http://$CIP:80/" -n 3
    assert_eq "$OUT" $'200 web\n200 web\n200 web' "ClusterIP from another pod"
    runo $(in_pod web) "$TESTAPP" get "http://$CIP:80/"
    assert_eq "$OUT" "200 web" "ClusterIP from the backing pod itself (hairpin)"
    runo $(in_pod client) "$TESTAPP" get "http://$IP:8080/echo"
    assert_match "$OUT" '^Host: 10\.244\.0\.[0-9]+:8080' "pod-to-pod by pod IP"
    # kl0 has its own MAC address: a bridge without one takes its lowest port's and changes as
    # pods attach, and a pod that resolved the gateway before lost the node for 15-45 s
    assert_eq "$(cat /sys/class/net/kl0/address)" "02:6b:0a:f4:00:01" "kl0's MAC address is set (02:6b + the gateway)"
    runo $(in_pod client) ip neigh show 10.244.0.1
    assert_contains "$OUT" "lladdr 02:6b:0a:f4:00:01" "the client pod reaches the gateway at kl0's address"
fi
t_pass

# --- native sidecar ------------------------------------------------------------------------
t_begin sidecar
cat >"$KL_TMP/sidecar.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: meshed}
spec:
  initContainers:
  - name: proxy
    image: weft/testapp
    restartPolicy: Always
    env: [{name: PORT, value: "15020"}, {name: POD_NAME, value: sidecar}]
    startupProbe: {httpGet: {path: /healthz, port: 15020}, periodSeconds: 1}
  - name: check
    image: weft/testapp
    args: ["get", "http://127.0.0.1:15020/"]
  containers:
  - name: app
    image: weft/testapp
EOF
ok "apply" "$K" apply -f "$KL_TMP/sidecar.yaml" &&
    ok "wait Ready" "$K" wait --for=condition=Ready pod/meshed --timeout=20s || fail "pod meshed not Ready"
if ! t_failed; then
    assert_eq "$(jp pod/meshed '{.status.initContainerStatuses[0].name} {.status.initContainerStatuses[0].started} {.status.initContainerStatuses[0].ready}')" \
        "proxy true true" "sidecar running and started"
    assert_eq "$(jp pod/meshed '{.status.initContainerStatuses[1].state.terminated.exitCode}')" \
        "0" "init container after the sidecar reached it"
    assert_eq "$(jp pod/meshed '{.status.initContainerStatuses[0].state.running.startedAt}' | grep -c .)" \
        "1" "sidecar state running"
fi
t_pass

# --- deployment ----------------------------------------------------------------------------
t_begin deployment
cat >"$KL_TMP/echo.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: app
        image: weft/testapp
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 8080, targetPort: http}]
EOF
ok "apply" "$K" apply -f "$KL_TMP/echo.yaml" &&
    ok "rollout" "$K" rollout status deploy/echo --timeout=30s || fail "rollout"
if ! t_failed; then
    ECIP=$(jp svc/echo '{.spec.clusterIP}')
    PODS=$(jp pods '{range .items[?(@.metadata.labels.app=="echo")]}{.metadata.name}{"\n"}{end}' | sort)
    assert_eq "$(echo "$PODS" | grep -c .)" 3 "three pods"
    eps_ready() { [ "$(jp endpointslice/echo-kl '{range .endpoints[?(@.conditions.ready==true)]}x{end}')" = xxx ]; }
    wait_for 5 eps_ready || fail "three ready endpoints"
    runo "$TESTAPP" get "http://$ECIP:8080/" -n 90
    assert_eq "$(echo "$OUT" | grep -c '^200 ')" 90 "every request answered"
    assert_eq "$(echo "$OUT" | sed 's/^200 //' | sort -u)" "$PODS" "requests reach all three pods"
fi
t_pass

# --- readiness -----------------------------------------------------------------------------
t_begin readiness
P1=$(echo "${PODS:-}" | head -1)
P1IP=$(jp "pod/$P1" '{.status.podIP}')
ok "make unhealthy" "$TESTAPP" get "http://$P1IP:8080/sethealth?code=503"
not_ready() { jp endpointslice/echo-kl '{range .endpoints[*]}{.addresses[0]}={.conditions.ready} {end}' | grep -q "$P1IP=false"; }
wait_for 6 not_ready || fail "$P1IP still ready in the EndpointSlice"
if ! t_failed; then
    assert_eq "$(jp "pod/$P1" '{.status.conditions[?(@.type=="Ready")].status} {.status.containerStatuses[0].ready}')" \
        "False false" "pod Ready condition"
    sleep 0.5 # the rules follow the slice within one poll period
    runo "$TESTAPP" get "http://$ECIP:8080/" -n 40
    assert_eq "$(echo "$OUT" | grep -c "$P1")" 0 "no request reaches the unready pod"
    assert_eq "$(echo "$OUT" | grep -c '^200 ')" 40 "the others answer"
    ok "make healthy" "$TESTAPP" get "http://$P1IP:8080/sethealth?code=200"
    wait_for 6 eps_ready || fail "pod did not come back"
fi
t_pass

# --- volumes and env -----------------------------------------------------------------------
t_begin volumes-env
cat >"$KL_TMP/vol.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: vols, labels: {tier: t1}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: weft/shell
    command: ["/bin/sh", "-c"]
    args:
    - |
      set -e
      echo "host=$(hostname) uid=$(id -u) gid=$(id -g) ns=$MY_NS sa=$MY_SA node=$MY_NODE ip=$MY_IP"
      echo "greet=$GREET pw=$PW x=$X"
      echo "cfg=$(cat /etc/kl-test/cfg/greeting) sec=$(cat /etc/kl-test/sec/password)"
      echo "labels=$(cat /etc/kl-test/info/labels) name=$(cat /etc/kl-test/info/name)"
      echo scratch > /etc/kl-test/scratch/f && echo "scratch=$(cat /etc/kl-test/scratch/f)"
      echo "ro=$( (echo x > /etc/kl-test/sec/new) 2>&1 | grep -c 'Read-only file system')"
      cp /etc/kl-test/tok/token /etc/kl-test/scratch/token.copy
      echo in-memory > /etc/kl-test/mem/f && echo "mem=$(stat -f -c %T /etc/kl-test/mem) $(cat /etc/kl-test/mem/f)"
    env:
    - {name: MY_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: MY_SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: MY_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: GREET, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
    - {name: PW, valueFrom: {secretKeyRef: {name: sec, key: password}}}
    - {name: X, value: "$(GREET)-$(NOPE)-$$(GREET)"}
    securityContext: {runAsUser: 1000, runAsGroup: 1000}
    volumeMounts:
    - {name: cfg, mountPath: /etc/kl-test/cfg}
    - {name: sec, mountPath: /etc/kl-test/sec, readOnly: true}
    - {name: info, mountPath: /etc/kl-test/info}
    - {name: tok, mountPath: /etc/kl-test/tok}
    - {name: scratch, mountPath: /etc/kl-test/scratch}
    - {name: mem, mountPath: /etc/kl-test/mem}
  volumes:
  - {name: cfg, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: sec}}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
  - name: tok
    projected:
      sources: [{serviceAccountToken: {path: token, audience: weft-test, expirationSeconds: 3600}}]
  - {name: scratch, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory}}
EOF
ok "apply" "$K" apply -f "$KL_TMP/vol.yaml"
succeeded() { [ "$(jp "pod/$1" '{.status.phase}')" = Succeeded ]; }
wait_for 15 succeeded vols || fail "pod vols did not succeed: $(jp pod/vols '{.status}')"
if ! t_failed; then
    VUID=$(jp pod/vols '{.metadata.uid}')
    VIP=$(jp pod/vols '{.status.podIP}')
    LOG=$(cat "$KLT_ROOT/pods/$VUID/logs/main.log")
    assert_eq "$LOG" "host=vols uid=1000 gid=1000 ns=default sa=default node=kl-node ip=$VIP
greet=hello pw=s3cret x=hello-\$(NOPE)-\$(GREET)
cfg=hello sec=s3cret
labels=tier=\"t1\" name=vols
scratch=scratch
ro=1
mem=tmpfs in-memory" "container output"
    [ -e /etc/kl-test/cfg/greeting ] && t_fail "volume files leaked onto the host mountpoint"
    TOKEN=$(cat "$KLT_ROOT/pods/$VUID/volumes/scratch/token.copy")
    cat >"$KL_TMP/tr.json" <<EOF
{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"$TOKEN","audiences":["weft-test"]}}
EOF
    okv "TokenReview" "$K" create -f "$KL_TMP/tr.json" -o jsonpath='{.status.authenticated} {.status.user.username} {.status.user.extra.authentication\.kubernetes\.io/pod-name[0]}'
    assert_eq "$OUT" "true system:serviceaccount:default:default vols" "projected token review"
fi
t_pass

# --- jobs ----------------------------------------------------------------------------------
t_begin jobs
cat >"$KL_TMP/jobs.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: job-ok}
spec:
  restartPolicy: Never
  containers: [{name: main, image: weft/shell, command: ["/bin/sh", "-c", "sleep 0.2; exit 0"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: job-fail}
spec:
  restartPolicy: Never
  containers: [{name: main, image: weft/shell, command: ["/bin/sh", "-c", "exit 3"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers: [{name: main, image: weft/shell, command: ["/bin/sh", "-c", "exit 1"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: noimage}
spec:
  containers: [{name: main, image: example.com/not-mapped:1}]
EOF
ok "apply" "$K" apply -f "$KL_TMP/jobs.yaml"
failed_phase() { [ "$(jp pod/job-fail '{.status.phase}')" = Failed ]; }
wait_for 10 succeeded job-ok || fail "job-ok not Succeeded: $(jp pod/job-ok '{.status.phase}')"
wait_for 10 failed_phase || fail "job-fail not Failed: $(jp pod/job-fail '{.status.phase}')"
if ! t_failed; then
    assert_eq "$(jp pod/job-ok '{.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason}')" \
        "0 Completed" "job-ok container"
    assert_eq "$(jp pod/job-fail '{.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].restartCount}')" \
        "3 Error 0" "job-fail container"
fi
t_pass

t_begin restarts
restarted() { [ "$(jp pod/crasher '{.status.containerStatuses[0].restartCount}')" -ge 2 ] 2>/dev/null; }
wait_for 10 restarted || fail "crasher restartCount: $(jp pod/crasher '{.status.containerStatuses[0].restartCount}')"
t_failed || assert_eq "$(jp pod/crasher '{.status.containerStatuses[0].lastState.terminated.exitCode}')" \
    1 "lastState exit code"
crashloop() { [ "$(jp pod/crasher '{.status.containerStatuses[0].state.waiting.reason}')" = CrashLoopBackOff ]; }
t_failed || wait_for 5 crashloop || fail "no CrashLoopBackOff"
t_pass

t_begin bad-image
errimage() { jp pod/noimage '{.status.containerStatuses[0].state.waiting.reason}' | grep -Eq '^(ErrImagePull|ImagePullBackOff)$'; }
wait_for 5 errimage || fail "noimage: $(jp pod/noimage '{.status.containerStatuses[0].state}')"
t_failed || assert_contains "$(jp pod/noimage '{.status.containerStatuses[0].state.waiting.message}')" \
    'example.com/not-mapped:1' "message names the image"
t_pass

# --- deletion ------------------------------------------------------------------------------
t_begin delete
WEB_NS=kl-$(uid8 web)
WEB_IP=$(jp pod/web '{.status.podIP}')
WEB_PID=$(jp pod/web '{.status.containerStatuses[0].containerID}' | sed 's/.*-//')
ok "delete" "$K" delete pod web vols job-ok job-fail crasher noimage --wait=false
netns_gone() { ! ip netns list | grep -q "^$WEB_NS"; }
wait_for 10 netns_gone || fail "netns $WEB_NS still there"
if ! t_failed; then
    assert_match "$WEB_PID" '^[0-9]+$' "container pid from the containerID"
    kill -0 "$WEB_PID" 2>/dev/null && t_fail "process $WEB_PID of pod web still runs"
    no_web_ep() { ! jp endpointslice/web-kl '{.endpoints}' | grep -q "$WEB_IP"; }
    wait_for 5 no_web_ep || fail "web still in its EndpointSlice"
    ok "scale to 1" "$K" scale deploy/echo --replicas=1
    two_gone() { [ "$(ip netns list | grep -c '^kl-')" = 3 ]; } # client, meshed, echo
    wait_for 10 two_gone || fail "netns left after the scale-down: $(ip netns list)"
    vols_unmounted() { ! grep -q " $KLT_ROOT/pods/$VUID/" /proc/mounts; }
    wait_for 10 vols_unmounted || fail "pod vols' memory-backed emptyDir still mounted: $(grep " $KLT_ROOT/" /proc/mounts)"
fi
t_pass

# --- shutdown ------------------------------------------------------------------------------
t_begin shutdown
stop_kubelet
assert_eq "$KLT_EXIT" 0 "kubelet-lite exit status"
assert_eq "$(ip netns list | grep -c '^kl-')" 0 "kl-* network namespaces left"
assert_eq "$(pgrep -fc "^$TESTAPP" || true)" 0 "testapp processes left"
assert_eq "$(ip -o link show | grep -Ec ': (kl0|klv[0-9a-f]+)[@:]')" 0 "links left"
assert_eq "$(iptables-save | grep -c 'KL-')" 0 "iptables rules or chains left"
assert_eq "$(ls "$KLT_ROOT/pods" 2>/dev/null | grep -c .)" 0 "pod directories left"
assert_eq "$(grep -c " $KLT_ROOT/" /proc/mounts)" 0 "mounts left under the root"
[ -e /etc/kl-test ] && t_fail "mountpoint /etc/kl-test left on the host"
t_pass

t_summary
