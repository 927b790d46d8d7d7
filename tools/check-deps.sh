#!/usr/bin/env bash
# Enforces, from #include "..." lines:
#  1. STYLE.md's module table: which module may include which (docs/architecture.md, "Modules").
#  2. No include cycles between files. Every tracked .c and .h is a node; `#include "x"` in file f
#     is an edge to the first of dir(f)/x, x, lib/x that exists (the compiler's own search for a
#     quoted include with -I. -Ilib); includes that resolve to no tracked file (system headers)
#     are ignored. A file that reaches itself through such edges is refused, whatever guards its
#     headers have: a cycle means neither file can be read (or reused) without the other. Each
#     cycle is printed once as the path a -> b -> ... -> a. One grep and one awk pass: fast.
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
  [agent]="core conf tls http ca agent push push_types"
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

# --- 2. include cycles ---------------------------------------------------------------------------
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.c' -o -name '*.h' | sed 's|^\./||')
cycles=$(
  # shellcheck disable=SC2086
  { printf '%s\n' $files | sed 's/^/F\t/'; grep -H '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' $files |
    sed -E 's/^([^:]+):[^"]*"([^"]+)".*/E\t\1\t\2/'; } |
  awk -F'\t' '
    $1 == "F" { known[$2] = 1; next }
    {
      f = $2; inc = $3; dir = f; sub(/[^\/]*$/, "", dir)
      if ((dir inc) in known) to = dir inc
      else if (inc in known) to = inc
      else if (("lib/" inc) in known) to = "lib/" inc
      else next
      n = ++nout[f]; out[f, n] = to
    }
    function visit(v,    i, w, k, path) {
      state[v] = 1; stack[++depth] = v
      for (i = 1; i <= nout[v]; i++) {
        w = out[v, i]
        if (state[w] == 1) {
          path = w
          for (k = depth; k >= 1 && stack[k] != w; k--) ;
          for (k = k + 1; k <= depth; k++) path = path " -> " stack[k]
          print path " -> " w
        } else if (!state[w]) {
          visit(w)
        }
      }
      depth--; state[v] = 2
    }
    END { for (f in known) if (!state[f]) visit(f) }'
)
if [ -n "$cycles" ]; then
  while IFS= read -r c; do
    echo "check-deps: include cycle: $c"
  done <<<"$cycles"
  bad=1
fi

[ $bad -eq 0 ] && echo "check-deps: ok"
exit $bad
