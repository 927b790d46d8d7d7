#!/usr/bin/env bash
# Checks that the Helm chart's copies of the CRDs are the repository's CRDs, byte for byte.
#   tools/check-chart.sh          exit 1 (naming each difference) if they are not
#   tools/check-chart.sh --fix    copy crds/ into the chart, then check
#
# crds/ (and crds/optional/) is the one source of truth. The chart cannot refer to files outside
# its directory, and symlinks are not used (helm v4 follows them but logs a line for each on every
# command, and a chart directory copied on its own would lose them), so charts/weft keeps copies:
#   crds/*.yaml                          -> charts/weft/crds/*.yaml (helm installs crds/ first)
#   crds/optional/smi-trafficsplits.yaml -> charts/weft/files/smi-trafficsplits.yaml (templated
#                                           when smi.enabled)
set -u
cd "$(dirname "$0")/.." || exit 2
CHART=${CHART:-charts/weft}
fix=0
case ${1:-} in
--fix) fix=1 ;;
"") ;;
*)
    echo "usage: tools/check-chart.sh [--fix]" >&2
    exit 2
    ;;
esac

# pairs: "source copy", one a line
pairs() {
    local f
    for f in crds/*.yaml; do
        echo "$f $CHART/crds/$(basename "$f")"
    done
    echo "crds/optional/smi-trafficsplits.yaml $CHART/files/smi-trafficsplits.yaml"
}

bad=0
if [ $fix = 1 ]; then
    mkdir -p "$CHART/crds" "$CHART/files"
    for f in "$CHART"/crds/*.yaml; do
        [ -e "$f" ] || continue
        [ -e "crds/$(basename "$f")" ] || rm -f "$f"
    done
    while read -r src dst; do
        cp "$src" "$dst"
    done < <(pairs)
fi
while read -r src dst; do
    if [ ! -f "$dst" ]; then
        echo "check-chart: $dst is missing (copy of $src; run tools/check-chart.sh --fix)"
        bad=1
    elif ! cmp -s "$src" "$dst"; then
        echo "check-chart: $dst differs from $src (run tools/check-chart.sh --fix)"
        bad=1
    fi
done < <(pairs)
for f in "$CHART"/crds/*; do
    [ -e "$f" ] || continue
    if [ ! -f "crds/$(basename "$f")" ]; then
        echo "check-chart: $f has no source in crds/ (remove it, or run tools/check-chart.sh --fix)"
        bad=1
    fi
done
[ $bad = 0 ] && echo "check-chart: chart CRDs match crds/"
exit $bad
