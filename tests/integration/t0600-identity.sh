#!/usr/bin/env bash
# ServiceAccount tokens, TokenReview and RBAC on kubelite, driven by the real kubectl, with an
# expired token forged independently with the openssl CLI from kubelite's signing key.
. "$(dirname "$0")/lib.sh"

K="$KUBECTL_DIR/kubectl.1.33"
NS=idt

review() { # TOKEN AUDIENCES-JSON: TokenReview status into OUT
    printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"%s","audiences":%s}}' \
        "$1" "$2" >"$KL_TMP/tr.json"
    okv "tokenreview" "$K" create --raw /apis/authentication.k8s.io/v1/tokenreviews \
        -f "$KL_TMP/tr.json" || return
    OUT=$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["status"], sort_keys=True))')
}

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# forge KEYFILE PAYLOAD-JSON: an ES256 JWT signed by KEYFILE, into OUT
forge() {
    local h p sig r s
    h=$(printf '{"alg":"ES256","kid":"kubelite"}' | b64url)
    p=$(printf '%s' "$2" | b64url)
    printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$1" -out "$KL_TMP/sig.der" || return 1
    mapfile -t ints < <(openssl asn1parse -inform DER -in "$KL_TMP/sig.der" | sed -n 's/.*INTEGER *:\([0-9A-F]*\).*/\1/p')
    r=$(printf '%064s' "${ints[0]}" | tr ' ' 0)
    s=$(printf '%064s' "${ints[1]}" | tr ' ' 0)
    sig=$(printf '%s%s' "$r" "$s" | xxd -r -p | b64url)
    OUT="$h.$p.$sig"
}

case_setup() {
    ok "namespace" "$K" create namespace "$NS" || return
    ok "serviceaccount" "$K" create serviceaccount -n "$NS" bot || return
    ok "pod" "$K" run -n "$NS" holder --image=weft/testapp --restart=Never || return
}

case_token_valid() {
    okv "create token" "$K" create token -n "$NS" bot --audience weft --duration 20m || return
    TOKEN=$OUT
    review "$TOKEN" '["weft"]' || return
    assert_contains "$OUT" '"authenticated": true' "authenticated" || return
    assert_contains "$OUT" '"username": "system:serviceaccount:idt:bot"' "username" || return
    assert_contains "$OUT" '"system:serviceaccounts:idt"' "namespace group" || return
    assert_contains "$OUT" '"audiences": ["weft"]' "audiences" || return
}

case_token_wrong_audience() {
    review "$TOKEN" '["other"]' || return
    assert_not_contains "$OUT" '"authenticated": true' "not authenticated" || return
    assert_contains "$OUT" 'audiences' "error names the audience" || return
}

case_token_tampered() {
    local h p s forged
    IFS=. read -r h p s <<<"$TOKEN"
    forged=$(printf '%s' "$p" | tr 'A-Za-z' 'B-ZAb-za')
    review "$h.$forged.$s" '["weft"]' || return
    assert_not_contains "$OUT" '"authenticated": true' "tampered token refused" || return
    assert_contains "$OUT" '"error"' "error given" || return
}

case_token_expired() {
    local now uid
    now=$(date +%s)
    okv "sa uid" "$K" get sa -n "$NS" bot -o 'jsonpath={.metadata.uid}' || return
    uid=$OUT
    forge "$KL_TMP/data/sa.key" "{\"aud\":[\"weft\"],\"exp\":$((now - 60)),\"iat\":$((now - 700)),\"nbf\":$((now - 700)),\"iss\":\"https://kubernetes.default.svc.cluster.local\",\"sub\":\"system:serviceaccount:$NS:bot\",\"kubernetes.io\":{\"namespace\":\"$NS\",\"serviceaccount\":{\"name\":\"bot\",\"uid\":\"$uid\"}}}" || return
    local expired=$OUT
    review "$expired" '["weft"]' || return
    assert_contains "$OUT" 'expired' "expired token refused" || return
    # the same forgery, not expired, is accepted: the check above is about expiry alone
    forge "$KL_TMP/data/sa.key" "{\"aud\":[\"weft\"],\"exp\":$((now + 600)),\"iat\":$now,\"nbf\":$now,\"iss\":\"https://kubernetes.default.svc.cluster.local\",\"sub\":\"system:serviceaccount:$NS:bot\",\"kubernetes.io\":{\"namespace\":\"$NS\",\"serviceaccount\":{\"name\":\"bot\",\"uid\":\"$uid\"}}}" || return
    review "$OUT" '["weft"]' || return
    assert_contains "$OUT" '"authenticated": true' "fresh forged-with-the-real-key token accepted" || return
}

case_token_bound_pod() {
    okv "bound token" "$K" create token -n "$NS" bot --audience weft \
        --bound-object-kind Pod --bound-object-name holder || return
    local bound=$OUT
    review "$bound" '["weft"]' || return
    assert_contains "$OUT" '"authentication.kubernetes.io/pod-name": ["holder"]' "pod claim" || return
    ok "delete pod" "$K" delete pod -n "$NS" holder --wait=true || return
    review "$bound" '["weft"]' || return
    assert_not_contains "$OUT" '"authenticated": true' "token of a deleted pod refused" || return
}

case_token_deleted_sa() {
    ok "delete sa" "$K" delete serviceaccount -n "$NS" bot || return
    review "$TOKEN" '["weft"]' || return
    assert_not_contains "$OUT" '"authenticated": true' "token of a deleted SA refused" || return
    assert_contains "$OUT" 'deleted' "reason given" || return
    ok "recreate sa" "$K" create serviceaccount -n "$NS" bot || return
    review "$TOKEN" '["weft"]' || return
    assert_not_contains "$OUT" '"authenticated": true' "a new SA of the same name is another identity" || return
}

case_rbac() {
    local t
    okv "token" "$K" create token -n "$NS" bot || return
    t=$OUT
    fails "list pods without a role" "$K" --token="$t" get pods -n "$NS" || return
    assert_contains "$OUT" 'User "system:serviceaccount:idt:bot" cannot list resource "pods" in API group "" in the namespace "idt"' "forbidden message" || return
    ok "role" "$K" create role -n "$NS" reader --verb=get,list,watch --resource=pods || return
    ok "binding" "$K" create rolebinding -n "$NS" bot-reader --role=reader --serviceaccount="$NS:bot" || return
    ok "list pods with the role" "$K" --token="$t" get pods -n "$NS" || return
    ok "a pod to protect" "$K" run -n "$NS" victim --image=weft/testapp --restart=Never || return
    fails "delete is still forbidden" "$K" --token="$t" delete pod -n "$NS" victim || return
    assert_contains "$OUT" 'cannot delete resource "pods"' "delete forbidden message" || return
    ok "the pod is still there" "$K" get pod -n "$NS" victim || return
    fails "other namespaces stay closed" "$K" --token="$t" get pods -n default || return
    okv "can-i" "$K" --token="$t" auth can-i list pods -n "$NS" || return
    assert_eq "$OUT" yes "can-i list" || return
    runo "$K" --token="$t" auth can-i delete pods -n "$NS"
    assert_eq "$OUT" no "can-i delete" || return
    ok "clusterrole" "$K" create clusterrole secret-reader --verb=get --resource=secrets || return
    ok "clusterrolebinding" "$K" create clusterrolebinding bot-secrets --clusterrole=secret-reader --serviceaccount="$NS:bot" || return
    okv "can-i get secrets anywhere" "$K" --token="$t" auth can-i get secrets -n default || return
    assert_eq "$OUT" yes "clusterrolebinding grants across namespaces" || return
    fails "bad token" "$K" --token="not-a-token" get pods -n "$NS" || return
    assert_contains "$OUT" "Unauthorized" "bad token is 401" || return
}

t_begin start
if ! command -v openssl >/dev/null || ! command -v xxd >/dev/null || ! command -v python3 >/dev/null; then
    t_skip "needs openssl, xxd and python3"
    t_summary
fi
if ! kl_start --data-dir "$KL_TMP/data"; then
    t_fail "kubelite did not start"
    t_summary
fi
t_pass
t_run setup case_setup
t_run token-valid case_token_valid
t_run token-wrong-audience case_token_wrong_audience
t_run token-tampered case_token_tampered
t_run token-expired case_token_expired
t_run token-bound-pod case_token_bound_pod
t_run token-deleted-sa case_token_deleted_sa
t_run rbac case_rbac
t_summary
