#!/usr/bin/env bash
# The demo: runs Weft's local embedded cluster. For now that is kubelite, the project's own
# Kubernetes API server; it prints how to point kubectl and helm at it and serves until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${WEFT_DEMO_DIR:-$PWD/build/demo}
mkdir -p "$dir"
rm -f "$dir/kubeconfig"
build/bin/kubelite --listen 127.0.0.1:${WEFT_DEMO_PORT:-6443} --kubeconfig-out "$dir/kubeconfig" \
    --data-dir "$dir/data" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM
for _ in $(seq 100); do [ -f "$dir/kubeconfig" ] && break; sleep 0.1; done
if [ ! -f "$dir/kubeconfig" ]; then
    echo "demo: kubelite did not start" >&2
    exit 1
fi
cat <<TXT

kubelite is serving (objects persist in $dir/data).
In another terminal:

    export KUBECONFIG=$dir/kubeconfig
    kubectl get namespaces
    kubectl apply -f tests/fixtures/charts/kl-demo/crds/widgets.yaml
    $PWD/tools/bin/helm install demo tests/fixtures/charts/kl-demo --wait

Ctrl-C stops it.
TXT
wait $pid
