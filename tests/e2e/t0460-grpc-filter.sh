#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# The gRPC status filter (agent/grpc.c, the Lua text weft-agent writes to <run_dir>/grpc.lua)
# in the real HAProxy, where the end of an answer does not sit at the last block position: the
# filter's search for the end-of-trailers block (tail_pos's probing) must find it.
#
# HAProxy numbers the blocks of a buffer from its head; the head is 0 unless blocks at the
# front were sent while the rest waited. Here a hand-written h2c client (grpcapp.py held)
# opens its call with a flow-control window of 0: the answer's headers go out (HEADERS frames
# are not flow-controlled) and leave the buffer, its messages wait there, and the server sends
# its status 300 ms later (grpcapp.py's pause=), so the trailers join a buffer whose head is
# past the headers' blocks. A test-only Lua filter after weft-grpc ("witness") records, at the
# same moment (http_end), where the blocks are (head, the end-of-trailers position, the probes
# tail_pos needs); the log line carries both. Loopback only: the gRPC server on 127.0.0.1, HAProxy
# on a unix socket.
#
#   - through a held window: every call ends normally for the client, the witness saw head > 0
#     and the end-of-trailers block off the last position (probes >= 1, and >= 2 for some), and
#     the filter read each call's exact code;
#   - the control: the same calls with a copy of the filter whose probing is cut off are not
#     read (grpc=-): the case above depends on the probing;
#   - without a hold, the same answers sit at position 0 (the first check) and are read.
. "$(dirname "$0")/lib.sh"

WFE_TOOL=$KL_REPO/$BUILD/tests/wfe-tool
GRPC=$KL_REPO/tests/e2e/grpcapp.py
D=$KL_TMP/gf
mkdir -p "$D"

t_begin "tools"
command -v haproxy >/dev/null || { t_skip "haproxy is not installed"; t_summary; }
have_tool "$WFE_TOOL" || t_summary
"$E2E_PY" -c 'import grpc' 2>/dev/null || { t_skip "python3-grpcio is not installed (make deps)"; t_summary; }
t_pass

# the witness: test-only, never in a rendered configuration
cat >"$D/witness.lua" <<'EOF'
local W = {id = "witness", flags = filter.FLT_CFG_FL_HTX}
W.__index = W
function W:new() return setmetatable({}, W) end
function W:start_analyze(txn, chn)
    if chn:is_resp() then filter.register_data_filter(self, chn) end
end
function W:http_payload(txn, msg) end
-- at the answer's end: nbblks, the head's and the EOT's positions (a linear scan), and the
-- probes tail_pos needs when the EOT is not at nbblks - 1 (the multiple of nbblks in
-- [head, tail] is ceil(head / nbblks) * nbblks)
function W:http_end(txn, msg)
    if not msg:is_resp() then return end
    local f = txn.f
    local n, head, eot = f:internal_htx_nbblks(), -1, -1
    for p = 0, f:internal_htx_size() // 8 do
        local t = f:internal_htx_blk_type(tostring(p))
        if t ~= "HTX_BLK_UNUSED" and head < 0 then head = p end
        if t == "HTX_BLK_EOT" then eot = p; break end
    end
    local probes = 0
    if eot >= 0 and eot ~= n - 1 then probes = (head + n - 1) // n end
    txn:set_var("txn.w", string.format("n=%d head=%d eot=%d probes=%d", n, head, eot, probes))
end
core.register_filter("witness", W, function(f, args) return f end)
EOF

# haproxy_up NAME LUA: HAProxy with that copy of the filter, on $D/NAME.sock, logging to
# $D/NAME.log; the backend as render.c writes a grpc port's (agent/render.c, emit_grpc_backend)
haproxy_up() {
    cat >"$D/$1.cfg" <<EOF
global
    lua-load $2
    lua-load $D/witness.lua
    log stdout format raw local0 info
defaults
    mode http
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind $D/$1.sock mode 600 proto h2
    # %B, as in the rendered frontends' formats: the line waits for the end of the answer (a
    # format without a field of the end is written at the response's headers, before http_end)
    log-format "grpc=%[var(txn.weft_grpc)] %[var(txn.w)] status=%ST %B"
    default_backend be
backend be
    http-request set-var(txn.weft_gsvc) str(test/grpc)
    http-response set-var(txn.weft_grpc) res.fhdr(grpc-status) if { res.fhdr(grpc-status) -m found } !{ res.fhdr(grpc-status) -m str 0 }
    filter lua.weft-grpc
    filter lua.witness
    # a server connection per call: on a reused one HAProxy 2.6 often took the status in only
    # once the client had opened its window (the buffer empty again by then, head 0)
    http-reuse never
    server app 127.0.0.1:$GRPC_PORT proto h2
EOF
    haproxy -c -q -f "$D/$1.cfg" || return
    haproxy -f "$D/$1.cfg" >"$D/$1.log" 2>&1 &
    bg_track $!
    wait_for 10 test -S "$D/$1.sock"
}

case_setup() {
    # the filter as weft-agent writes it (wfe-tool render writes grpc.lua next to haproxy.cfg)
    ok "render a document with grpc ports" "$WFE_TOOL" ca "$D" &&
        ok "leaf" "$WFE_TOOL" leaf "$D" cluster.local proto api "$D/pod.pem" &&
        cp "$D/root.crt" "$D/bundle.pem" &&
        ok "render" "$WFE_TOOL" render "$KL_REPO/tests/fixtures/mesh/protocols/expected/proto.api-1.json" "$D" "$D/pod.pem" "$D/bundle.pem" || return
    [ -s "$D/grpc.lua" ] || { t_fail "no grpc.lua written"; return 1; }
    # the control: the probing cut off (no probe past the first check)
    sed 's|for k = 1, size // BLK // n do|for k = 1, 0 do|' "$D/grpc.lua" >"$D/grpc-noprobe.lua"
    cmp -s "$D/grpc.lua" "$D/grpc-noprobe.lua" && { t_fail "the control copy did not change: the probing loop's line is not in grpc.lua"; return 1; }
    "$E2E_PY" "$GRPC" serve 127.0.0.1:0 srv >"$D/grpc.out" 2>&1 &
    bg_track $!
    wait_for 20 grep -q '^ready' "$D/grpc.out" || { t_fail "the gRPC server did not start: $(cat "$D/grpc.out")"; return 1; }
    GRPC_PORT=$(awk '/^ready/ {print $2}' "$D/grpc.out")
    haproxy_up real "$D/grpc.lua" && haproxy_up noprobe "$D/grpc-noprobe.lua" ||
        { t_fail "HAProxy did not start: $(cat "$D"/*.log)"; return 1; }
}

# the calls: "code messages size" (each message of size bytes, then the status 300 ms later;
# one message: HAProxy receives the headers and the message together)
CALLS=("0 1 3000" "0 1 10" "9 1 3000" "14 1 100" "5 1 8000")

# held_calls NAME HOLD: every call of CALLS through HAProxy NAME, each one's log line in LINES
held_calls() {
    local c code k size want n0
    LINES=()
    for c in "${CALLS[@]}"; do
        read -r code k size <<<"$c"
        n0=$(wc -l <"$D/$1.log")
        okv "code $code after $k message(s) of $size bytes, held $2 s" "$E2E_PY" "$GRPC" held "$D/$1.sock" "code=$code count=$k size=$size pause=300" "$2" || return
        want="headers 1 data $((k * (size + 5))) trailers 1 end yes"
        assert_eq "$OUT" "$want" "what the client received" || return
        wait_for 5 sh -c "[ \$(wc -l <'$D/$1.log') -gt $n0 ]"
        LINES+=("$code $(tail -n +$((n0 + 1)) "$D/$1.log" | head -1)")
        echo "    code $code, $k x $size bytes: ${LINES[-1]#* }"
    done
}

case_held() {
    local l code max=0 p
    held_calls real 1 || return
    for l in "${LINES[@]}"; do
        code=${l%% *}
        assert_match "${l#* }" "^grpc=$code n=[0-9]+ head=[1-9][0-9]* eot=[0-9]+ probes=[1-9][0-9]* status=200 [0-9]+\$" \
            "the code read, with the end-of-trailers block off the last position" || return
        p=$(printf '%s' "$l" | sed 's/.*probes=\([0-9]*\).*/\1/')
        [ "$p" -gt "$max" ] && max=$p
    done
    echo "    most probes a call needed: $max"
    assert_gt "$max" 1 "probes of the calls that needed the most" || return
}

case_control() {
    local l
    held_calls noprobe 1 || return
    for l in "${LINES[@]}"; do
        assert_match "${l#* }" '^grpc=- n=[0-9]+ head=[1-9][0-9]* eot=[0-9]+ probes=[1-9][0-9]* status=200 [0-9]+$' \
            "without the probing the code is not read" || return
    done
}

case_unheld() {
    local l code
    held_calls real 0 || return
    for l in "${LINES[@]}"; do
        code=${l%% *}
        assert_match "${l#* }" "^grpc=$code n=[0-9]+ head=0 eot=[0-9]+ probes=0 status=200 [0-9]+\$" "the code read at the first check" || return
    done
}

t_run "the filter and a gRPC server behind HAProxy 2.6 (the filter as weft-agent writes it)" case_setup
[ "$T_FAILED" -eq 0 ] || t_summary
t_run "answers held by a closed window: head > 0, the end-of-trailers block found by probing, every code read" case_held
t_run "the control: the same answers with the probing cut off are not read" case_control
t_run "answers not held: the end-of-trailers block at the last position, every code read" case_unheld
t_summary
