#!/usr/bin/env bash
# The demo: Weft's control plane on a local embedded cluster.
#
# Starts kubelite (the project's own Kubernetes API server) and weftd, installs Weft's CRDs,
# applies examples/demo.yaml (a frontend, a backend split 80/20 between two versions, an access
# policy, retries), and shows what Weft did: pods injected by the webhook, resources accepted
# with their conditions, a workload certificate, and the configuration compiled for a proxy.
# Then it keeps serving so you can use kubectl against it; Ctrl-C stops everything.
#
# Pods are stored but not run here: the data plane (weft-agent and HAProxy) is not written yet.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${WEFT_DEMO_DIR:-$PWD/build/demo}
port=${WEFT_DEMO_PORT:-6443}
KUBECTL=$(command -v kubectl || echo "$PWD/tools/bin/kubectl")
mkdir -p "$dir"
rm -f "$dir/kubeconfig"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

build/bin/kubelite --listen "127.0.0.1:$port" --kubeconfig-out "$dir/kubeconfig" \
    --data-dir "$dir/data" >"$dir/kubelite.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -f "$dir/kubeconfig" ] && break; sleep 0.1; done
if [ ! -f "$dir/kubeconfig" ]; then
    echo "demo: kubelite did not start (is port $port free? set WEFT_DEMO_PORT):" >&2
    tail -5 "$dir/kubelite.log" >&2
    exit 1
fi
export KUBECONFIG=$dir/kubeconfig
k() { "$KUBECTL" "$@"; }

echo "== Weft's CRDs and namespace"
k apply -f crds/ >/dev/null
k wait --for=condition=Established crd --all --timeout=30s >/dev/null
k create namespace weft-system --dry-run=client -o yaml | k apply -f - >/dev/null

echo "== weftd (webhook https://127.0.0.1:9443/inject, admin http://127.0.0.1:15014)"
build/bin/weftd --kubeconfig "$KUBECONFIG" --namespace weft-system --identity demo \
    --admin-listen 127.0.0.1:15014 --webhook-listen 127.0.0.1:9443 \
    --certs-listen 127.0.0.1:15012 --stream-listen 127.0.0.1:15013 --webhook-url https://127.0.0.1:9443/inject \
    >"$dir/weftd.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do
    curl -sf http://127.0.0.1:15014/readyz >/dev/null 2>&1 && break
    sleep 0.2
done
curl -s http://127.0.0.1:15014/readyz | sed 's/^/   /'
for _ in $(seq 50); do
    k get mutatingwebhookconfiguration weft-injector >/dev/null 2>&1 && break
    sleep 0.2
done

echo "== the application (examples/demo.yaml)"
k apply -f examples/demo.yaml
for _ in $(seq 50); do
    [ "$(k get pods -n demo --no-headers 2>/dev/null | wc -l)" -ge 4 ] && break
    sleep 0.2
done
echo
echo "== pods, injected by weftd's webhook"
k get pods -n demo -o custom-columns='POD:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name'
echo
echo "== traffic rules, with the conditions weftd wrote"
k wait --for=condition=Accepted trafficsplit/backend -n demo --timeout=20s >/dev/null || true
k get trafficsplits,accesspolicies,retrypolicies -n demo
echo
echo "== a workload certificate for demo/frontend from Weft's CA"
token=$(k create token frontend -n demo --audience weft)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key.pem" \
    -subj /CN=ignored -out "$dir/csr.pem" 2>/dev/null
curl -sk -H "Authorization: Bearer $token" -H "Content-Type: application/pkcs10" \
    --data-binary @"$dir/csr.pem" https://127.0.0.1:15012/v1/certificates |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["certificateChain"])' >"$dir/cert.pem"
openssl x509 -in "$dir/cert.pem" -noout -subject -ext subjectAltName -enddate | sed 's/^/   /'
echo
pod=$(k get pods -n demo -l app=frontend -o jsonpath='{.items[0].metadata.name}')
echo "== the configuration compiled for proxy demo/$pod (first lines)"
# /debug/ needs a bearer token the API server accepts for get on /debug/config (the kubeconfig's)
tok=$(sed -n 's/^ *token: *//p' "$dir/kubeconfig" | head -1)
curl -s -H "Authorization: Bearer $tok" "http://127.0.0.1:15014/debug/config/demo/$pod" | head -40
cat <<TXT
   ...

Weft's control plane is running. In another terminal:

    export KUBECONFIG=$dir/kubeconfig
    kubectl get pods,trafficsplits -n demo
    kubectl describe trafficsplit backend -n demo
    kubectl patch trafficsplit backend -n demo --type=merge \\
        -p '{"spec":{"backends":[{"service":"backend-v1","weight":50},{"service":"backend-v2","weight":50}]}}'
    curl -s -H "Authorization: Bearer $tok" http://127.0.0.1:15014/debug/config/demo/$pod
    curl -s http://127.0.0.1:15014/metrics | grep ^weft_

Logs: $dir/kubelite.log, $dir/weftd.log. Ctrl-C stops everything.
TXT
wait "${pids[0]}"
