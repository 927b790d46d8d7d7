#!/usr/bin/env bash
# Enforces STYLE.md's module table from #include lines: which module may include which.
set -u
cd "$(dirname "$0")/.."
declare -A allow=(
  [lib/core]="core"
  [lib/conf]="core conf"
  [lib/tls]="core tls"
  [lib/http]="core tls http"
  [weftd]="core conf tls http kube ca controller push webhook weftd"
  [lib/kube]="core kube conf"
  [ca]="core ca"
  [controller]="core kube conf ca push controller"
  [push]="core tls push"
  [cli]="core kube conf cli webhook"
  [webhook]="core conf ca webhook"
  [agent]="core conf tls ca agent push_types"
  [agent/init]="core conf tls ca agent push_types"
  [tests/kubelite]="core conf tls http kubelite"
)
bad=0
for mod in "${!allow[@]}"; do
  [ -d "$mod" ] || continue
  while IFS= read -r line; do
    file=${line%%:*}
    inc=$(echo "$line" | sed -E 's/.*#include "([^"]+)".*/\1/')
    case "$inc" in
      core/*) dep=core ;;
      conf/*) dep=conf ;;
      kube/*) dep=kube ;;
      http/*) dep=http ;;
      tls/*) dep=tls ;;
      push/push_types.h) dep=push_types ;;
      tests/kubelite/*) dep=kubelite ;;
      */*) dep=${inc%%/*} ;;
      *) continue ;;
    esac
    ok=0
    for a in ${allow[$mod]}; do
      [ "$a" = "$dep" ] && ok=1
      [ "$a" = push ] && [ "$dep" = push_types ] && ok=1
    done
    if [ $ok -eq 0 ]; then
      echo "check-deps: $file includes \"$inc\" ($mod may use: ${allow[$mod]})"
      bad=1
    fi
  done < <(grep -Hn '#include "' "$mod"/*.c "$mod"/*.h 2>/dev/null)
done
[ $bad -eq 0 ] && echo "check-deps: ok"
exit $bad
