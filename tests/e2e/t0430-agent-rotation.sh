#!/usr/bin/env bash
# shellcheck disable=SC2317 # case functions run through t_run
# A root rotation under continuous traffic between two meshed pods. Pods "client"
# (10.250.43.1) and "app" (10.250.43.2) are network namespaces joined by a veth, each with
# weft-init's rules and weft-agent (UID 1337) holding weftd's config stream; kubelite and weftd
# (60 s certificates) run in the app's namespace. The client's app calls the Service app
# (10.96.43.2:80) at 200 requests/s through both sidecars (mutual TLS) while weftd's root is
# rotated as docs/ca.md says (add the new root, switch the signer, remove the old root).
# Observed: no failed request; each bundle change reaches both agents on the stream within
# seconds; after the switch and a renewal, both sidecars present certificates that chain to the
# new root only, and the app's sidecar refuses a client from the removed root.
. "$(dirname "$0")/lib.sh"

e2e_require_root || t_summary

AGENT=$KL_REPO/$BUILD/bin/weft-agent
INIT=$KL_REPO/$BUILD/bin/weft-init
TESTAPP=$KL_REPO/$BUILD/bin/testapp
LOAD=$KL_REPO/$BUILD/bench/mesh_load
CA=10.250.43.1 SA=10.250.43.2 SVC=10.96.43.2 NSC=wfe-rc NSS=wfe-rs NS=rot
CP=weftd.weft-system.svc
D=$KL_TMP/rot

t_begin "tools"
command -v haproxy >/dev/null || { t_skip "haproxy is not installed"; t_summary; }
for b in "$KL_REPO/$BUILD/bin/weftd" "$AGENT" "$INIT" "$TESTAPP" "$LOAD" "$KL_REPO/$BUILD/bin/kubelite"; do
    have_tool "$b" || t_summary
done
t_pass

installs() { grep -c "msg=\"$2\"" "$D/$1.log"; }
presented_by() { # NS ADDR CLIENT_PEM CA_PEM: the certificate the inbound listener at ADDR presents
    # (as UID 1337: the pod's own outbound capture refuses connections to a proxy port)
    echo | ip netns exec "$1" "${E2E_1337[@]}" timeout 5 openssl s_client -connect "$2:15006" -cert "$3" -key "$3" \
        -CAfile "$4" 2>/dev/null | openssl x509 2>/dev/null
}
new_client() { # SA OUT: a certificate from weftd for ServiceAccount SA (asked as UID 1337: not captured)
    local tok
    tok=$(mesh_k create token -n $NS "$1" --audience weft) || return 1
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$2.key" \
        -subj /CN=x -out "$2.csr" 2>/dev/null || return 1
    ip netns exec $NSS "${E2E_1337[@]}" curl -sS --cacert "$D/roots.pem" -H "Authorization: Bearer $tok" \
        -H "Content-Type: application/pkcs10" --data-binary "@$2.csr" "https://$CP:15012/v1/certificates" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["certificateChain"], end="")' >"$2" || return 1
    cat "$2.key" >>"$2"
}

case_setup() {
    MESH_D=$D
    e2e_netns $NSC && e2e_netns $NSS && e2e_link $NSC $CA/24 $NSS $SA/24 || return
    ip -n $NSC route add default dev "$E2E_LINK_A" && ip -n $NSS route add default dev "$E2E_LINK_B" || return
    e2e_bg $NSS env PORT=8080 POD_NAME=app "$TESTAPP"
    # kubelite and weftd (60 s certificates) in the app's namespace
    mesh_control_plane $NSS $SA --cert-ttl 60 || return
    WEFTD_LOG=$MESH_WEFTD_LOG
    cp "$D/root.pem" "$D/roots.pem"
    {
        mesh_ns_yaml $NS client app
        cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: $NS}
spec: {clusterIP: $SVC, selector: {app: app}, ports: [{port: 80, name: http, targetPort: 8080}]}
EOF
        mesh_pod_yaml client $NS client "{app: client}"
        mesh_pod_yaml app $NS app "{app: app}" "[{containerPort: 8080, name: http}]"
    } >"$D/app.yaml"
    ok "objects" "${MESH_K[@]}" apply -f "$D/app.yaml" || return
    mesh_pod_up client $NS $CA && mesh_pod_up app $NS $SA || return
    cat >"$D/slice.yaml" <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-1, namespace: $NS, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
endpoints:
- addresses: [$SA]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: app, namespace: $NS, uid: $(cat "$D/app.uid")}
ports: [{name: http, port: 8080, protocol: TCP}]
EOF
    ok "endpoints" "${MESH_K[@]}" apply -f "$D/slice.yaml" || return
    mesh_agent $NSC client $CA && mesh_agent $NSS app $SA --include-inbound-ports 8080 || return
    mesh_ready 30 $NSC $NSS || return
    okv "a meshed call" ip netns exec $NSC "$TESTAPP" get "http://$SVC:80/" || return
    assert_eq "$OUT" "200 app" "the answer through both sidecars" || return
}

case_rotation() {
    local t0 new m_c m_s n_c n_s name ip ns p
    m_c=$(python3 "$E2E_DIR/hacli.py" "$D/client/run/master.sock" "show proc" | awk '$2 == "master" {print $1}')
    m_s=$(python3 "$E2E_DIR/hacli.py" "$D/app/run/master.sock" "show proc" | awk '$2 == "master" {print $1}')
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/O=weft/CN=weft root 2" -keyout "$D/root2.key" -out "$D/root2.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return
    cat "$D/root.pem" "$D/root2.pem" >"$D/roots.pem"
    # 200 requests/s for 100 s from the client's app through both sidecars, every request counted
    ip netns exec $NSC "$LOAD" --addr $SVC --port 80 --rate 200 --seconds 100 --warmup 0 --conns 4 \
        >"$D/load.out" 2>&1 &
    LOAD_PID=$!
    bg_track $LOAD_PID
    sleep 3
    n_c=$(installs client "trust bundle installed")
    n_s=$(installs app "trust bundle installed")
    t0=$(date +%s%N)
    new=$(base64 -w0 <"$D/roots.pem")
    ok "step 1: add the new root" "${MESH_K[@]}" patch secret -n weft-system weft-ca --type merge -p "{\"data\":{\"ca.crt\":\"$new\"}}" || return
    wait_for 15 sh -c "cmp -s '$D/client/run/bundle.pem' '$D/roots.pem' && cmp -s '$D/app/run/bundle.pem' '$D/roots.pem'" ||
        { t_fail "the two-root bundle did not reach both sidecars: $(grep -v level=debug "$D/client.log" | tail -3)"; return 1; }
    echo "    two-root bundle in both sidecars $((($(date +%s%N) - t0) / 1000000)) ms after the Secret changed"
    new_client client "$D/client1.pem" || { t_fail "no client certificate from the old root"; return 1; }
    sleep 3
    ok "step 2: switch the signer" "${MESH_K[@]}" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"tls.crt\":\"$(base64 -w0 <"$D/root2.pem")\",\"tls.key\":\"$(base64 -w0 <"$D/root2.key")\"}}" || return
    wait_for 15 grep -q 'CA signer switched' "$WEFTD_LOG" || { t_fail "signer not switched"; return 1; }
    # both sidecars renew (60 s certificates: within 30 s) from the new root
    wait_for 45 sh -c "openssl verify -CAfile '$D/root2.pem' '$D/client/run/pod.pem' >/dev/null 2>&1 && openssl verify -CAfile '$D/root2.pem' '$D/app/run/pod.pem' >/dev/null 2>&1" ||
        { t_fail "the sidecars did not renew from the new root"; return 1; }
    sleep 2
    new_client client "$D/client2.pem" || { t_fail "no client certificate from the new root"; return 1; }
    # step 3: the old root leaves the bundle
    ok "step 3: remove the old root" "${MESH_K[@]}" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"ca.crt\":\"$(base64 -w0 <"$D/root2.pem")\"}}" || return
    t0=$(date +%s%N)
    wait_for 15 sh -c "cmp -s '$D/client/run/bundle.pem' '$D/root2.pem' && cmp -s '$D/app/run/bundle.pem' '$D/root2.pem'" ||
        { t_fail "the old root did not leave both sidecars' bundles"; return 1; }
    echo "    one-root bundle in both sidecars $((($(date +%s%N) - t0) / 1000000)) ms after the Secret changed"
    # new handshakes chain to the new root only: the certificate each inbound listener presents
    for p in app:$SA:$NSC client:$CA:$NSS; do
        IFS=: read -r name ip ns <<<"$p"
        presented_by "$ns" "$ip" "$D/client2.pem" "$D/root2.pem" >"$D/$name.presented"
        okv "$name presents a certificate from the new root" openssl verify -CAfile "$D/root2.pem" "$D/$name.presented" || return
        fails "$name's certificate does not chain to the old root" openssl verify -CAfile "$D/root.pem" "$D/$name.presented" || return
    done
    run sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | ip netns exec $NSC ${E2E_1337[*]} timeout 5 openssl s_client -connect $SA:15006 -cert $D/client1.pem -key $D/client1.pem -CAfile $D/root2.pem -ign_eof"
    assert_contains "$OUT" "alert unknown ca" "the app's sidecar refuses a client from the removed root" || return
    assert_eq "$(python3 "$E2E_DIR/hacli.py" "$D/client/run/master.sock" "show proc" | awk '$2 == "master" {print $1}')" "$m_c" "client's HAProxy master (no restart)" || return
    assert_eq "$(python3 "$E2E_DIR/hacli.py" "$D/app/run/master.sock" "show proc" | awk '$2 == "master" {print $1}')" "$m_s" "app's HAProxy master (no restart)" || return
    echo "    bundles installed from the stream: client $(($(installs client "trust bundle installed") - n_c)), app $(($(installs app "trust bundle installed") - n_s)) (the rest came with a renewal)"
    wait "$LOAD_PID"
    echo "    traffic during the rotation: $(cat "$D/load.out")"
    assert_match "$(cat "$D/load.out")" ' errors=0 ' "failed requests during the rotation" || return
    assert_match "$(cat "$D/load.out")" 'ok=(1[89][0-9]{3}|20000) ' "requests answered (of 20,000)" || return
}

t_run "two meshed pods, weftd in the app's namespace, both sidecars ready, a meshed call" case_setup
[ "$T_FAILED" -eq 0 ] || t_summary # nothing below can work without the pods
t_run "a root rotation under 200 requests/s: no failed request, new handshakes chain to the new root" case_rotation
t_summary
