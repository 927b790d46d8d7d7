# shellcheck shell=bash disable=SC2034 # K, CODE and BODY are for the suites
# Helpers for the weftd suites (t1000-t1050), sourced after lib.sh.
#
#   wd_start NAME [weftd options...]  start a replica with identity NAME, its own free ports and
#                                     log ($KL_TMP/weftd-NAME.log); waits for its admin endpoint
#   wd_stop NAME / wd_kill NAME       SIGTERM / SIGKILL it, and reap it
#   wd_get NAME PATH                  GET PATH from its admin endpoint: BODY and CODE (with the
#                                     kubeconfig's bearer token, which /debug/ needs)
#   wd_token                          that token (kubelite's admin: system:masters)
#   wd_metric NAME SERIES             the value of one sample of /metrics ("" when absent),
#                                     SERIES exactly as exposed: weft_model_objects{kind="Pod"}
#   wd_synced NAME                    /readyz reports every informer synced
#   wd_meshed FILE                    the meshed pods (with a weft-proxy container), ns/name sorted
#   wd_docs NAME DIR FILE             every document of the pods in FILE from replica NAME into
#                                     DIR/<ns>.<pod>.json; false when one is not 200
#   retry N CMD...                    run CMD until it succeeds, at most N times (kubectl under
#                                     kubelite's --fault-error)
#   pyjson EXPR                       evaluate a Python expression over the JSON on stdin (j)
#   ws_start, cert_for, cl_start, ... the config stream's helpers, described where they are
#
# WEFTD selects the binary (default $BUILD/bin/weftd). K is kubectl 1.33.

K="$KUBECTL_DIR/kubectl.1.33"
WEFTD=${WEFTD:-$BUILD/bin/weftd}
case $WEFTD in
/*) ;;
*) WEFTD=$KL_REPO/$WEFTD ;;
esac
declare -A WD_PID WD_ADMIN WD_LOG

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wd_start() {
    local name=$1
    shift
    WD_ADMIN[$name]=$(free_port)
    WD_LOG[$name]=$KL_TMP/weftd-$name.log
    "$WEFTD" --kubeconfig "$KUBECONFIG" --namespace weft-system --identity "$name" \
        --admin-listen "127.0.0.1:${WD_ADMIN[$name]}" --certs-listen "127.0.0.1:$(free_port)" --stream-listen "127.0.0.1:$(free_port)" \
        --webhook-listen "127.0.0.1:$(free_port)" --log-level debug "$@" \
        >>"${WD_LOG[$name]}" 2>&1 &
    WD_PID[$name]=$!
    daemon_track "${WD_PID[$name]}" "weftd $name"
    if ! wait_for 10 curl -sf "http://127.0.0.1:${WD_ADMIN[$name]}/healthz"; then
        echo "wd_start: weftd $name did not serve /healthz within 10 s:" >&2
        tail -20 "${WD_LOG[$name]}" >&2
        return 1
    fi
}

wd_stop() {
    bg_stop "${WD_PID[$1]}"
}

wd_kill() {
    daemon_killed "${WD_PID[$1]}"
    kill -KILL "${WD_PID[$1]}" 2>/dev/null
    bg_stop "${WD_PID[$1]}"
}

wd_token() {
    sed -n 's/^ *token: *//p' "$KUBECONFIG" | head -1
}

wd_get() { # NAME PATH
    BODY=$(curl -sS --max-time 10 -H "Authorization: Bearer $(wd_token)" -o - -w '\n%{http_code}' \
        "http://127.0.0.1:${WD_ADMIN[$1]}$2" 2>&1)
    CODE=${BODY##*$'\n'}
    BODY=${BODY%$'\n'*}
}

wd_metric() { # NAME SERIES
    curl -s --max-time 10 "http://127.0.0.1:${WD_ADMIN[$1]}/metrics" |
        awk -v s="$2" '$1 == s { print $2; exit }'
}

wd_synced() {
    curl -s --max-time 10 "http://127.0.0.1:${WD_ADMIN[$1]}/readyz" | grep -q '^informers synced: yes'
}

wd_meshed() { # FILE
    "$K" get pods -A -o json | pyjson '"\n".join(sorted(p["metadata"]["namespace"] + "/" + p["metadata"]["name"] for p in j["items"] if any(c["name"] == "weft-proxy" for c in p["spec"]["containers"])))' >"$1"
}

wd_docs() { # NAME DIR FILE
    local p code ok=0
    rm -rf "$2"
    mkdir -p "$2"
    while read -r p; do
        code=$(curl -s -o "$2/${p/\//.}.json" -w '%{http_code}' \
            -H "Authorization: Bearer $(wd_token)" "http://127.0.0.1:${WD_ADMIN[$1]}/debug/config/$p")
        [ "$code" = 200 ] || ok=1
    done <"$3"
    return "$ok"
}

retry() { # N CMD...
    local n=$1 i
    shift
    for ((i = 1; i <= n; i++)); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}

pyjson() { # EXPR over stdin's JSON as j
    python3 -c "import json,sys; j=json.load(sys.stdin); r=($1); print(r if not isinstance(r,(dict,list)) else json.dumps(r))"
}

# now_ms: wall-clock milliseconds (for durations).
now_ms() {
    echo $(($(date +%s%N) / 1000000))
}

# --- the config stream (t1040, t1050): replicas with known ports, workload certificates for
# pods of ServiceAccount "client" in namespace $NS, and stream clients
# (tests/integration/streamclient.c) writing their events into $KL_TMP/cl-NAME/events.
SC=$KL_REPO/$BUILD/tests/streamclient
case $BUILD in /*) SC=$BUILD/tests/streamclient ;; esac
declare -A WD_CERTS WD_STREAM CL_PID

# ws_start NAME [weftd options]: a replica whose certificate and stream ports are known (kept
# across restarts of the same NAME).
ws_start() {
    local name=$1
    shift
    WD_ADMIN[$name]=${WD_ADMIN[$name]:-$(free_port)}
    WD_CERTS[$name]=${WD_CERTS[$name]:-$(free_port)}
    WD_STREAM[$name]=${WD_STREAM[$name]:-$(free_port)}
    WD_LOG[$name]=$KL_TMP/weftd-$name.log
    "$WEFTD" --kubeconfig "$KUBECONFIG" --namespace weft-system --identity "$name" \
        --admin-listen "127.0.0.1:${WD_ADMIN[$name]}" --certs-listen "127.0.0.1:${WD_CERTS[$name]}" \
        --stream-listen "127.0.0.1:${WD_STREAM[$name]}" --webhook-listen "127.0.0.1:$(free_port)" \
        --log-level debug "$@" >>"${WD_LOG[$name]}" 2>&1 &
    WD_PID[$name]=$!
    daemon_track "${WD_PID[$name]}" "weftd $name"
    wait_for 10 curl -sf "http://127.0.0.1:${WD_ADMIN[$name]}/healthz"
}

stream_listening() { # NAME: the stream listener is open (after the CA and its certificate)
    [ "$(grep -c 'msg=listening what=stream' "${WD_LOG[$1]}")" -ge "${2:-1}" ]
}

# csr_post TOKEN CSR: BODY and CODE of POST /v1/certificates on replica a
csr_post() {
    BODY=$(curl -sS --max-time 20 -k -H "Authorization: Bearer $1" -H "Content-Type: application/pkcs10" \
        --data-binary "@$2" -o - -w '\n%{http_code}' "https://127.0.0.1:${WD_CERTS[a]}/v1/certificates" 2>&1)
    CODE=${BODY##*$'\n'}
    BODY=${BODY%$'\n'*}
}

# cert_for NAME [POD]: key and certificate DIR/NAME.{key,crt} for ServiceAccount client, from a
# token bound to POD (none: an unbound token)
cert_for() {
    local name=$1 pod=${2:-} bound=()
    if [ -n "$pod" ]; then
        okv "uid of $pod" "$K" get pod -n "$NS" "$pod" -o 'jsonpath={.metadata.uid}' || return
        bound=(--bound-object-kind Pod --bound-object-name "$pod" --bound-object-uid "$OUT")
    fi
    okv "token $name" "$K" create token -n "$NS" client --audience weft "${bound[@]}" || return
    local tok=$OUT
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$KL_TMP/$name.key" \
        -subj /CN=x -out "$KL_TMP/$name.csr" 2>/dev/null || return
    csr_post "$tok" "$KL_TMP/$name.csr"
    assert_eq "$CODE" 200 "certificate $name: $BODY" || return
    printf '%s' "$BODY" | pyjson 'j["certificateChain"]' >"$KL_TMP/$name.crt"
    printf '%s' "$BODY" | pyjson 'j["trustBundle"]' >"$KL_TMP/bundle.pem"
}

uid_of() { "$K" get pod -n "$NS" "$1" -o 'jsonpath={.metadata.uid}'; }

# cl_start NAME CERT POD [UID [PROTOCOL]]: a stream client for ns/POD/UID (default: POD's uid)
# with CERT, offering protocols up to PROTOCOL (default 2), writing into $KL_TMP/cl-NAME, on the
# stream of replica $CL_REPLICA (default a)
cl_start() {
    local name=$1 cert=$2 pod=$3 uid=${4:-} proto=${5:-2}
    [ -n "$uid" ] || uid=$(uid_of "$pod")
    rm -rf "$KL_TMP/cl-$name"
    mkdir -p "$KL_TMP/cl-$name"
    : >"$KL_TMP/cl-$name/events"
    "$SC" --port "${WD_STREAM[${CL_REPLICA:-a}]}" --cert "$KL_TMP/$cert.crt" --key "$KL_TMP/$cert.key" \
        --trust "$KL_TMP/bundle.pem" --pod "$NS/$pod/$uid" --dir "$KL_TMP/cl-$name" \
        --protocol "$proto" >>"$KL_TMP/cl-$name/log" 2>&1 &
    CL_PID[$name]=$!
    bg_track "${CL_PID[$name]}"
}

cl_stop() { bg_stop "${CL_PID[$1]}"; }

has_event() { # NAME REGEX
    grep -qE -- "$2" "$KL_TMP/cl-$1/events"
}

count_ev() { # NAME REGEX: how many events match
    grep -cE -- "$2" "$KL_TMP/cl-$1/events"
}

count_ge() { # NAME REGEX N: at least N events match
    [ "$(count_ev "$1" "$2")" -ge "$3" ]
}

events() { sed 's/^/      | /' "$KL_TMP/cl-$1/events"; }
