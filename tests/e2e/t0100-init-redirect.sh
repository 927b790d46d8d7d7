#!/usr/bin/env bash
# weft-init's nat rules observed on the wire, with both iptables backends where installed.
#
# Two "pods": wfe-ia (10.250.14.1, fd57:7765:14::1) gets weft-init with the arguments the webhook
# writes (taken from `weftctl inject`); wfe-ib (10.250.14.2 and 10.250.15.2, fd57:7765:14::2) is
# the peer. Listeners on wfe-ia's 15001/15006 report the original destination (SO_ORIGINAL_DST),
# so each connection shows where the rules sent it.
. "$(dirname "$0")/lib.sh"

e2e_require_root || t_summary

WEFT_INIT=$KL_REPO/$BUILD/bin/weft-init
WEFTCTL=$KL_REPO/$BUILD/bin/weftctl
A4=10.250.14.1 B4=10.250.14.2 X4=10.250.15.2
A6=fd57:7765:14::1 B6=fd57:7765:14::2
NA=wfe-ia NB=wfe-ib NC=wfe-ic

# The webhook's arguments for a pod excluding inbound 7777, outbound 5432 and 10.250.15.0/24.
t_begin "webhook arguments"
cat >"$KL_TMP/pod.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: default
  annotations:
    traffic.weft.dev/exclude-inbound-ports: "7777"
    traffic.weft.dev/exclude-outbound-ports: "5432"
    traffic.weft.dev/exclude-outbound-ip-ranges: "10.250.15.0/24"
spec:
  containers:
  - {name: app, image: weft/testapp}
EOF
okv "weftctl inject" "$WEFTCTL" inject -f "$KL_TMP/pod.yaml" -o json
mapfile -t INIT_ARGS < <(printf '%s' "$OUT" | jq -r '.spec.initContainers[] | select(.name == "weft-init") | .args[]')
assert_eq "${INIT_ARGS[*]}" "--proxy-uid 1337 --outbound-port 15001 --inbound-port 15006 --include-inbound-ports * --exclude-inbound-ports 7777,15020,15090 --exclude-outbound-ports 5432 --include-outbound-ip-ranges * --exclude-outbound-ip-ranges 10.250.15.0/24" "weft-init args" &&
    t_pass

# pods BACKEND: fresh namespaces with the listeners, a foreign nat rule in wfe-ia, no weft rules.
pods() {
    e2e_netns $NA && e2e_netns $NB || return 1
    e2e_link $NA $A4/24 $NB $B4/24 $A6/64 $B6/64 || return 1
    ip -n $NB addr add $X4/24 dev "$E2E_LINK_B" || return 1
    ip -n $NA route add 10.250.15.0/24 dev "$E2E_LINK_A" || return 1
    # a rule of someone else's (a CNI's), which weft-init must keep
    e2e_in $NA "iptables-$1" -t nat -N CNI_TEST && e2e_in $NA "iptables-$1" -t nat -A OUTPUT -d 192.0.2.1/32 -j CNI_TEST || return 1
    e2e_serve $NA out@0.0.0.0:15001 out6@[::]:15001 in@0.0.0.0:15006 in6@[::]:15006 \
        app@0.0.0.0:8080 app6@[::]:8080 health@0.0.0.0:15020 app7777@0.0.0.0:7777 || return 1
    e2e_serve $NB remote@0.0.0.0:8080 remote6@[::]:8080 remote@0.0.0.0:5432 udp:dns@0.0.0.0:53 || return 1
}

# expect WHAT WANT: OUT (from e2e_dial*) must be WANT.
expect() {
    assert_eq "$OUT" "$2" "$1"
}

suite() {
    local b=$1 before after
    t_begin "[$b] namespaces and listeners"
    pods "$b" && t_pass || return

    t_begin "[$b] weft-init applies the webhook's rules"
    ok "weft-init" ip netns exec $NA "$WEFT_INIT" "${INIT_ARGS[@]}" --iptables-backend "$b" &&
        assert_contains "$OUT" "nat redirection installed with iptables-$b" "weft-init output" &&
        assert_match "$(nat_rules $NA "$b")" '^-A WEFT_OUTPUT -j WEFT_REDIRECT$' "IPv4 rules" &&
        assert_match "$(nat_rules $NA "$b" ip6)" '^-A WEFT_OUTPUT -j WEFT_REDIRECT$' "IPv6 rules" &&
        t_pass

    t_begin "[$b] app outbound to another pod goes to 15001 with its original destination"
    e2e_dial $NA $B4 8080 && expect "app -> B:8080" "out $B4:8080 $A4" &&
        e2e_dial $NA $B6 8080 && expect "app -> [B6]:8080" "out6 [$B6]:8080 $A6" && t_pass

    t_begin "[$b] UID 1337 outbound is not captured"
    e2e_dial1337 $NA $B4 8080 && expect "1337 -> B:8080" "remote $B4:8080 $A4" &&
        e2e_dial1337 $NA $B6 8080 && expect "1337 -> [B6]:8080" "remote6 [$B6]:8080 $A6" && t_pass

    t_begin "[$b] inbound goes to 15006 with its original destination"
    e2e_dial $NB $A4 8080 && expect "B -> A:8080" "in $A4:8080 $B4" &&
        e2e_dial $NB $A6 8080 && expect "B -> [A6]:8080" "in6 [$A6]:8080 $B6" &&
        e2e_dial $NB $A4 15001 && expect "B -> A:15001 (the outbound listener is not reachable from outside)" "in $A4:15001 $B4" &&
        t_pass

    t_begin "[$b] excluded inbound ports (15020 always, 7777 by annotation) are not captured"
    e2e_dial $NB $A4 15020 && expect "B -> A:15020" "health $A4:15020 $B4" &&
        e2e_dial $NB $A4 7777 && expect "B -> A:7777" "app7777 $A4:7777 $B4" && t_pass

    t_begin "[$b] loopback is not captured"
    e2e_dial $NA 127.0.0.1 8080 && expect "app -> 127.0.0.1:8080" "app 127.0.0.1:8080 127.0.0.1" &&
        e2e_dial $NA $A4 8080 && expect "app -> own pod IP" "app $A4:8080 $A4" &&
        e2e_dial1337 $NA 127.0.0.1 8080 && expect "1337 -> 127.0.0.1:8080" "app 127.0.0.1:8080 127.0.0.1" &&
        t_pass

    t_begin "[$b] excluded CIDRs and outbound ports are not captured"
    e2e_dial $NA $X4 8080 && expect "app -> 10.250.15.2:8080" "remote $X4:8080 $A4" &&
        e2e_dial $NA $B4 5432 && expect "app -> B:5432" "remote $B4:5432 $A4" && t_pass

    t_begin "[$b] self-call: UID 1337 to the pod's own IP lands on 15006"
    e2e_dial1337 $NA $A4 8080 && expect "1337 -> own IP:8080" "in $A4:8080 $A4" &&
        e2e_dial1337 $NA $A6 8080 && expect "1337 -> own [A6]:8080" "in6 [$A6]:8080 $A6" &&
        e2e_dial1337 $NA $A4 7777 && expect "1337 -> own IP:7777 (excluded inbound)" "app7777 $A4:7777 $A4" &&
        t_pass

    t_begin "[$b] the inbound listener's forward to the app (from 127.0.0.6 / ::6) is not captured"
    e2e_dial1337 $NA $A4 8080 --src 127.0.0.6 && expect "1337 from 127.0.0.6" "app $A4:8080 127.0.0.6" &&
        e2e_dial1337 $NA $A6 8080 --src ::6 && expect "1337 from ::6" "app6 [$A6]:8080 ::6" && t_pass

    t_begin "[$b] DNS (UDP) is not redirected"
    OUT=$(e2e_in $NA timeout 10 "$E2E_PY" "$E2E_DIR/origdst.py" udp $B4 53 2>&1)
    expect "UDP to B:53" "udp:dns $A4" && t_pass

    t_begin "[$b] a rerun is idempotent and keeps others' rules"
    before=$(nat_rules $NA "$b")$'\n'$(nat_rules $NA "$b" ip6)
    ok "weft-init again" ip netns exec $NA "$WEFT_INIT" "${INIT_ARGS[@]}" --iptables-backend "$b" &&
        after=$(nat_rules $NA "$b")$'\n'$(nat_rules $NA "$b" ip6) &&
        assert_eq "$after" "$before" "iptables-save after a rerun" &&
        assert_eq "$(printf '%s\n' "$after" | grep -c -- '-A PREROUTING -p tcp -j WEFT_INBOUND')" 2 "PREROUTING jumps (IPv4 + IPv6)" &&
        assert_match "$after" '^-A OUTPUT -d 192.0.2.1/32 -j CNI_TEST$' "the foreign rule" &&
        t_pass

    t_begin "[$b] auto picks the backend that holds the rules"
    ok "weft-init auto" ip netns exec $NA "$WEFT_INIT" "${INIT_ARGS[@]}" &&
        assert_contains "$OUT" "installed with iptables-$b" "backend chosen" &&
        assert_eq "$(nat_rules $NA "$b")"$'\n'"$(nat_rules $NA "$b" ip6)" "$before" "rules after auto" && t_pass

    t_begin "[$b] narrower arguments replace the rules (include lists)"
    ok "weft-init narrow" ip netns exec $NA "$WEFT_INIT" --include-inbound-ports 8080 \
        --exclude-inbound-ports 15020,15090 --include-outbound-ip-ranges 10.250.14.0/24 --iptables-backend "$b" &&
        e2e_dial $NB $A4 8080 && expect "B -> A:8080" "in $A4:8080 $B4" &&
        e2e_dial $NB $A4 7777 && expect "B -> A:7777 (not included)" "app7777 $A4:7777 $B4" &&
        e2e_dial $NA $B4 8080 && expect "app -> B:8080 (included range)" "out $B4:8080 $A4" &&
        e2e_dial $NA $X4 8080 && expect "app -> 10.250.15.2 (not included)" "remote $X4:8080 $A4" &&
        e2e_dial $NA $B6 8080 && expect "app -> [B6] (no IPv6 range included)" "remote6 [$B6]:8080 $A6" &&
        assert_not_contains "$(nat_rules $NA "$b")" "--dport 15020 -j RETURN" "old rules left" && t_pass

    t_begin "[$b] --dry-run prints the rules and changes nothing"
    e2e_netns $NC
    before=$(nat_rules $NC "$b")
    okv "dry run" ip netns exec $NC "$WEFT_INIT" "${INIT_ARGS[@]}" --dry-run &&
        assert_match "$OUT" '^-A WEFT_OUTPUT -d 10.250.15.0/24 -j RETURN$' "printed rules" &&
        assert_match "$OUT" '^-A WEFT_INBOUND -p tcp -m tcp --dport 7777 -j RETURN$' "printed rules" &&
        assert_eq "$(nat_rules $NC "$b")" "$before" "nat table after --dry-run" && t_pass

    t_begin "[$b] without CAP_NET_ADMIN: a one-line error, nothing changed"
    runo ip netns exec $NC capsh --drop=cap_net_admin -- -c 'exec "$0" "$@"' "$WEFT_INIT" "${INIT_ARGS[@]}" --iptables-backend "$b"
    assert_eq "$RC" 1 "exit status" &&
        assert_eq "$(printf '%s\n' "$ERR" | wc -l)" 1 "stderr lines" &&
        assert_contains "$ERR" "CAP_NET_ADMIN is missing" "message" &&
        assert_eq "$(nat_rules $NC "$b")" "$before" "nat table" && t_pass
}

backends=()
for b in nft legacy; do
    if command -v "iptables-$b-restore" >/dev/null && command -v "ip6tables-$b-restore" >/dev/null; then
        backends+=("$b")
    fi
done
t_begin "iptables backends"
if [ ${#backends[@]} -eq 0 ]; then
    t_skip "neither iptables-nft nor iptables-legacy is installed"
    t_summary
fi
t_pass
for b in "${backends[@]}"; do
    suite "$b"
done

if [ ${#backends[@]} -eq 2 ]; then
    t_begin "auto: an empty namespace gets nft; one holding legacy rules gets legacy"
    e2e_netns $NC
    ok "weft-init auto (empty)" ip netns exec $NC "$WEFT_INIT" "${INIT_ARGS[@]}" &&
        assert_contains "$OUT" "installed with iptables-nft" "empty namespace" || true
    if ! t_failed; then
        e2e_netns $NC
        e2e_in $NC iptables-legacy -t filter -A INPUT -p tcp --dport 9 -j ACCEPT
        ok "weft-init auto (legacy rules)" ip netns exec $NC "$WEFT_INIT" "${INIT_ARGS[@]}" &&
            assert_contains "$OUT" "installed with iptables-legacy" "legacy namespace" &&
            assert_match "$(nat_rules $NC legacy)" '^-A WEFT_OUTPUT -j WEFT_REDIRECT$' "legacy rules" &&
            assert_not_contains "$(nat_rules $NC nft)" "WEFT_" "nothing in nft" && t_pass
    fi
fi

t_begin "usage errors name the option"
run "$WEFT_INIT" --dry-run --exclude-outbound-ip-ranges 10.0.0.1
assert_eq "$RC" 2 "exit status" &&
    assert_eq "$OUT" 'weft-init: --exclude-outbound-ip-ranges: invalid item "10.0.0.1" (want comma-separated CIDRs such as 10.0.0.0/8 or fd00::/8)' "message" &&
    t_pass

t_summary
