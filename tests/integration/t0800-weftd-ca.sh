#!/usr/bin/env bash
# weftd's CA against kubelite: one root for replicas started together, the trust bundle in
# meshed namespaces, POST /v1/certificates with real ServiceAccount tokens (TokenReview) and CSRs
# made by the openssl CLI, refusals, restart, root rotation through the Secret, and an operator
# intermediate given with --user-ca-secret. Certificates are checked with the openssl CLI only.
. "$(dirname "$0")/lib.sh"

K="$KUBECTL_DIR/kubectl.1.33"
WEFTD=${WEFTD:-$BUILD/bin/weftd}
case $WEFTD in
/*) ;;
*) WEFTD=$KL_REPO/$WEFTD ;;
esac
NS=app
declare -A WD_PID WD_CERTS WD_ADMIN WD_LOG
CURL_EXTRA=()

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wd_start NAME [weftd options...]: start a replica with its own ports and log.
wd_start() {
    local name=$1
    shift
    WD_CERTS[$name]=$(free_port)
    WD_ADMIN[$name]=$(free_port)
    WD_LOG[$name]=$KL_TMP/weftd-$name.log
    "$WEFTD" --kubeconfig "$KUBECONFIG" --namespace weft-system --identity "$name" \
        --admin-listen "127.0.0.1:${WD_ADMIN[$name]}" --certs-listen "127.0.0.1:${WD_CERTS[$name]}" --stream-listen "127.0.0.1:$(free_port)" \
        --webhook-listen "127.0.0.1:$(free_port)" --log-level debug "$@" \
        >>"${WD_LOG[$name]}" 2>&1 &
    WD_PID[$name]=$!
    daemon_track "${WD_PID[$name]}" "weftd $name"
}

wd_stop() {
    bg_stop "${WD_PID[$1]}"
}

ca_loaded() { # NAME: readyz reports the CA loaded
    curl -s "http://127.0.0.1:${WD_ADMIN[$1]}/readyz" | grep -q '^ca loaded: yes'
}

# The root fingerprint a replica reported in its "CA ready" line.
root_of() {
    sed -n 's/.*msg="CA ready".* root=\([0-9a-f]*\).*/\1/p' "${WD_LOG[$1]}" | tail -1
}

# csr_post NAME TOKEN FILE [CONTENT-TYPE] [CAFILE]: POST a CSR; BODY and CODE get the answer.
csr_post() {
    local auth=() ct=${4:-application/pkcs10} cafile=${5:-$KL_TMP/bundle.pem}
    [ -n "$2" ] && auth=(-H "Authorization: Bearer $2")
    BODY=$(curl -sS --max-time 20 --cacert "$cafile" "${auth[@]}" "${CURL_EXTRA[@]}" -H "Content-Type: $ct" \
        --data-binary "@$3" -o - -w '\n%{http_code}' \
        "https://127.0.0.1:${WD_CERTS[$1]}/v1/certificates" 2>&1)
    CODE=${BODY##*$'\n'}
    BODY=${BODY%$'\n'*}
}

jfield() { # FIELD: from $BODY
    printf '%s' "$BODY" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$1',''), end='')"
}

new_csr() { # KEYSPEC OUT [openssl req options]: a CSR for a fresh key
    local spec=$1 out=$2
    shift 2
    openssl req -new -newkey "$spec" -nodes -keyout "$out.key" -subj /CN=whatever -out "$out" \
        "$@" 2>/dev/null
}

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# forge KEYFILE PAYLOAD-JSON: an ES256 JWT signed by KEYFILE (kubelite's SA key), into OUT
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

secret_field() { # NAMESPACE NAME KEY: decoded data field into OUT
    okv "get secret" "$K" get secret -n "$1" "$2" -o "jsonpath={.data.${3//./\\.}}" || return
    OUT=$(printf '%s' "$OUT" | base64 -d)
}

bundle_of() { # NAMESPACE: the published trust bundle into $KL_TMP/bundle.pem
    okv "get configmap" "$K" get configmap -n "$1" weft-root-ca -o 'jsonpath={.data.ca\.crt}' || return
    printf '%s\n' "$OUT" >"$KL_TMP/bundle.pem"
}

ncerts() { grep -c 'BEGIN CERTIFICATE' "$1"; }

cm_has_n_certs() { # NAMESPACE N
    "$K" get configmap -n "$1" weft-root-ca -o 'jsonpath={.data.ca\.crt}' 2>/dev/null |
        grep -c 'BEGIN CERTIFICATE' | grep -qx "$2"
}

serving_verifies() { # CAFILE: replica a's endpoint has a certificate that verifies with CAFILE
    curl -s --cacert "$1" -X POST "https://127.0.0.1:${WD_CERTS[a]}/v1/certificates" | grep -q Unauthenticated
}

cm_has_cert() { # NAMESPACE PEMFILE: the published bundle contains that certificate
    "$K" get configmap -n "$1" weft-root-ca -o 'jsonpath={.data.ca\.crt}' 2>/dev/null |
        grep -qF "$(sed -n 2p "$2")"
}

metric() { # NAME SERIES: the value of one series from /metrics
    curl -s "http://127.0.0.1:${WD_ADMIN[$1]}/metrics" | awk -v s="$2" '$1 == s {print $2}'
}

model_has_all_namespaces() { # NAME: its model counts every namespace of the cluster
    local n
    n=$("$K" get namespaces --no-headers 2>/dev/null | grep -c .)
    [ "$n" -gt 0 ] && [ "$(metric "$1" 'weft_model_objects{kind="Namespace"}')" = "$n" ]
}

case_two_replicas_one_root() {
    ok "namespace" "$K" create namespace weft-system || return
    wd_start a
    wd_start b
    wait_for 20 ca_loaded a || { t_fail "replica a: CA not loaded: $(tail -5 "${WD_LOG[a]}")"; return 1; }
    wait_for 20 ca_loaded b || { t_fail "replica b: CA not loaded: $(tail -5 "${WD_LOG[b]}")"; return 1; }
    okv "secrets" "$K" get secrets -n weft-system -o 'jsonpath={range .items[*]}{.metadata.name} {.type}{"\n"}{end}' || return
    assert_eq "$(printf '%s\n' "$OUT" | grep -c '^weft-ca ')" 1 "one Secret weft-ca" || return
    assert_contains "$OUT" "weft-ca kubernetes.io/tls" "Secret type" || return
    assert_eq "$(cat "${WD_LOG[a]}" "${WD_LOG[b]}" | grep -c 'msg="generated a new root"')" 1 \
        "roots generated by the two replicas" || return
    ROOT=$(root_of a)
    assert_match "$ROOT" '^[0-9a-f]{64}$' "replica a's root fingerprint" || return
    assert_eq "$(root_of b)" "$ROOT" "both replicas use the same root" || return
    secret_field weft-system weft-ca ca.crt || return
    printf '%s\n' "$OUT" >"$KL_TMP/root.pem"
    okv "root fingerprint" openssl x509 -in "$KL_TMP/root.pem" -noout -fingerprint -sha256 || return
    assert_eq "$(printf '%s' "${OUT#*=}" | tr -d ':' | tr 'A-F' 'a-f')" "$ROOT" \
        "ca.crt of the Secret is the root the replicas reported" || return
    okv "root text" openssl x509 -in "$KL_TMP/root.pem" -noout -text || return
    assert_contains "$OUT" "CA:TRUE" "root is a CA" || return
    assert_contains "$OUT" "prime256v1" "root is P-256" || return
    assert_not_contains "$(cat "${WD_LOG[a]}" "${WD_LOG[b]}")" "PRIVATE KEY" "key material in the logs" || return
}

case_bundle_published() {
    ok "meshed namespace" "$K" create namespace "$NS" || return
    ok "label" "$K" label namespace "$NS" weft.dev/inject=enabled || return
    ok "plain namespace" "$K" create namespace plain || return
    wait_for 15 "$K" get configmap -n "$NS" weft-root-ca || { t_fail "no weft-root-ca in $NS"; return 1; }
    bundle_of "$NS" || return
    assert_eq "$(cat "$KL_TMP/bundle.pem")" "$(cat "$KL_TMP/root.pem")" "bundle = the Secret's ca.crt" || return
    okv "managed fields" "$K" get configmap -n "$NS" weft-root-ca -o 'jsonpath={.metadata.managedFields[*].manager}' || return
    assert_eq "$OUT" weftd "field manager" || return
    # Both replicas (whichever leads) have taken plain into their model (the same reconcile
    # decides about the bundle): only then does "no bundle there" mean anything.
    local r
    for r in a b; do
        wait_for 15 model_has_all_namespaces "$r" ||
            t_fail "$r's model does not hold every namespace: $(metric "$r" 'weft_model_objects{kind="Namespace"}')" ||
            return
    done
    fails "no bundle in an unlabelled namespace" "$K" get configmap -n plain weft-root-ca || return
    # kept in step: a deleted or edited ConfigMap comes back
    ok "delete the bundle" "$K" delete configmap -n "$NS" weft-root-ca || return
    wait_for 15 "$K" get configmap -n "$NS" weft-root-ca || { t_fail "weft-root-ca not recreated"; return 1; }
    ok "edit the bundle" "$K" patch configmap -n "$NS" weft-root-ca --type merge -p '{"data":{"ca.crt":"junk"}}' || return
    wait_for 15 cm_has_n_certs "$NS" 1 || { t_fail "edited weft-root-ca not restored"; return 1; }
    # a namespace labelled later gets it too
    ok "label plain" "$K" label namespace plain weft.dev/inject=enabled || return
    wait_for 15 "$K" get configmap -n plain weft-root-ca || { t_fail "no weft-root-ca after labelling"; return 1; }
}

case_issue() {
    ok "serviceaccount" "$K" create serviceaccount -n "$NS" web || return
    okv "token" "$K" create token -n "$NS" web --audience weft || return
    TOKEN=$OUT
    # the CSR asks for another identity: subject and SANs must be ignored
    new_csr ec:<(openssl ecparam -name prime256v1) "$KL_TMP/evil.csr" -subj "/O=cluster.local/OU=kube-system/CN=admin.kube-system.cluster.local" \
        -addext "subjectAltName=URI:spiffe://cluster.local/ns/kube-system/sa/admin,DNS:kubernetes.default" || return
    csr_post a "$TOKEN" "$KL_TMP/evil.csr"
    assert_eq "$CODE" 200 "status: $BODY" || return
    jfield certificateChain >"$KL_TMP/leaf.pem"
    jfield trustBundle >"$KL_TMP/tb.pem"
    local not_after
    not_after=$(jfield notAfter)
    assert_eq "$(cat "$KL_TMP/tb.pem")" "$(cat "$KL_TMP/root.pem")" "trustBundle" || return
    okv "verify" openssl verify -CAfile "$KL_TMP/bundle.pem" "$KL_TMP/leaf.pem" || return
    assert_eq "$OUT" "$KL_TMP/leaf.pem: OK" "openssl verify against the published bundle" || return
    okv "san" openssl x509 -in "$KL_TMP/leaf.pem" -noout -ext subjectAltName || return
    assert_eq "$(printf '%s' "$OUT" | tail -1 | tr -d ' ')" "URI:spiffe://cluster.local/ns/$NS/sa/web" "the only SAN" || return
    okv "subject" openssl x509 -in "$KL_TMP/leaf.pem" -noout -subject -nameopt RFC2253 || return
    assert_eq "$OUT" "subject=CN=web.$NS.cluster.local,OU=$NS,O=cluster.local" "subject" || return
    okv "eku" openssl x509 -in "$KL_TMP/leaf.pem" -noout -ext extendedKeyUsage,basicConstraints || return
    assert_contains "$OUT" "TLS Web Server Authentication, TLS Web Client Authentication" "EKU" || return
    assert_contains "$OUT" "CA:FALSE" "not a CA" || return
    okv "key" openssl x509 -in "$KL_TMP/leaf.pem" -noout -pubkey || return
    assert_eq "$OUT" "$(openssl pkey -in "$KL_TMP/evil.csr.key" -pubout)" "the CSR's key" || return
    local nb na
    nb=$(date -d "$(openssl x509 -in "$KL_TMP/leaf.pem" -noout -startdate | cut -d= -f2)" +%s)
    na=$(date -d "$(openssl x509 -in "$KL_TMP/leaf.pem" -noout -enddate | cut -d= -f2)" +%s)
    assert_eq "$((na - nb))" $((86400 + 60)) "lifetime: 24 h plus the 60 s backdate" || return
    assert_eq "$(date -u -d "@$na" +%Y-%m-%dT%H:%M:%SZ)" "$not_after" "notAfter in the answer" || return
    okv "no pod extension" openssl x509 -in "$KL_TMP/leaf.pem" -noout -text || return
    assert_not_contains "$OUT" "2.25.12132509292569909180439193538005852261" "a token bound to no pod: no pod extension" || return
    # a token bound to a pod: the pod (TokenReview's extra pod-name/pod-uid) is in the leaf
    ok "pod" "$K" apply -f - <<EOF || return
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: $NS}
spec: {serviceAccountName: web, containers: [{name: app, image: app}]}
EOF
    local pod_uid
    okv "pod uid" "$K" get pod -n "$NS" web-0 -o 'jsonpath={.metadata.uid}' || return
    pod_uid=$OUT
    okv "pod token" "$K" create token -n "$NS" web --audience weft --bound-object-kind Pod \
        --bound-object-name web-0 --bound-object-uid "$pod_uid" || return
    csr_post a "$OUT" "$KL_TMP/evil.csr"
    assert_eq "$CODE" 200 "pod-bound token: $BODY" || return
    jfield certificateChain >"$KL_TMP/leaf-pod.pem"
    okv "pod extension" sh -c "openssl asn1parse -in '$KL_TMP/leaf-pod.pem' | grep -A1 ':2.25.12132509292569909180439193538005852261' | tail -1 | sed 's/.*:\([0-9A-F]*\)\$/\1/' | xxd -r -p | openssl asn1parse -inform DER" || return
    assert_eq "$(printf '%s\n' "$OUT" | sed -n 's/.*UTF8STRING *://p' | tr '\n' ' ')" "$NS web-0 $pod_uid " "the pod in the certificate" || return
    okv "pod leaf san" openssl x509 -in "$KL_TMP/leaf-pod.pem" -noout -ext subjectAltName || return
    assert_eq "$(printf '%s' "$OUT" | tail -1 | tr -d ' ')" "URI:spiffe://cluster.local/ns/$NS/sa/web" "one SAN with a pod too" || return
    # the second replica serves too, from the same root; the PEM content type is accepted
    csr_post b "$TOKEN" "$KL_TMP/evil.csr" application/x-pem-file
    assert_eq "$CODE" 200 "replica b: $BODY" || return
    jfield certificateChain >"$KL_TMP/leaf-b.pem"
    okv "verify b" openssl verify -CAfile "$KL_TMP/bundle.pem" "$KL_TMP/leaf-b.pem" || return
    # the endpoint's own certificate: from the CA, for weftd's names
    okv "serving cert" sh -c "openssl s_client -connect 127.0.0.1:${WD_CERTS[a]} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName" || return
    assert_contains "$OUT" "DNS:weftd.weft-system.svc, DNS:weftd.weft-system.svc.cluster.local, DNS:localhost, IP Address:127.0.0.1" "serving SANs" || return
    assert_eq "$(metric a weft_certificates_issued_total)" 2 "issued metric (a token without a pod, one bound to a pod)" || return
}

# Weft's TLS policy (docs/architecture.md) on the certificate endpoint: TLS 1.2 CBC suites are
# refused; ECDHE with AEAD, and TLS 1.3, are spoken.
case_tls_policy() {
    local p=${WD_CERTS[a]} c
    for c in ECDHE-ECDSA-AES128-SHA ECDHE-ECDSA-AES256-SHA384; do
        fails "TLS 1.2 $c" sh -c "openssl s_client -connect 127.0.0.1:$p -tls1_2 -cipher $c </dev/null" || return
    done
    for c in ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-CHACHA20-POLY1305; do
        okv "TLS 1.2 $c" sh -c "openssl s_client -connect 127.0.0.1:$p -tls1_2 -cipher $c </dev/null 2>&1" || return
        assert_contains "$OUT" "Cipher is $c" "negotiated suite" || return
    done
    okv "TLS 1.3" sh -c "openssl s_client -connect 127.0.0.1:$p -tls1_3 </dev/null 2>&1" || return
    assert_contains "$OUT" "TLSv1.3" "protocol" || return
}

case_refusals() {
    local t
    new_csr ec:<(openssl ecparam -name prime256v1) "$KL_TMP/ok.csr" || return
    csr_post a "" "$KL_TMP/ok.csr"
    assert_eq "$CODE" 401 "missing token: $BODY" || return
    assert_eq "$(jfield reason)" Unauthenticated "missing token reason" || return
    csr_post a 'not a token!' "$KL_TMP/ok.csr"
    assert_eq "$CODE" 401 "garbage token: $BODY" || return
    assert_eq "$(jfield error)" "malformed bearer token" "garbage token error" || return
    local h p s
    IFS=. read -r h p s <<<"$TOKEN"
    csr_post a "$h.$(printf '%s' "$p" | tr 'A-Za-z' 'B-ZAb-za').$s" "$KL_TMP/ok.csr"
    assert_eq "$CODE" 401 "tampered token: $BODY" || return
    okv "token for another audience" "$K" create token -n "$NS" web --audience other || return
    csr_post a "$OUT" "$KL_TMP/ok.csr"
    assert_eq "$CODE" 401 "wrong audience: $BODY" || return
    assert_eq "$(jfield reason)" Unauthenticated "wrong audience reason" || return
    assert_contains "$(jfield error)" "audience" "wrong audience error" || return
    local now uid
    now=$(date +%s)
    okv "sa uid" "$K" get sa -n "$NS" web -o 'jsonpath={.metadata.uid}' || return
    uid=$OUT
    forge "$KL_TMP/data/sa.key" "{\"aud\":[\"weft\"],\"exp\":$((now - 60)),\"iat\":$((now - 700)),\"nbf\":$((now - 700)),\"iss\":\"https://kubernetes.default.svc.cluster.local\",\"sub\":\"system:serviceaccount:$NS:web\",\"kubernetes.io\":{\"namespace\":\"$NS\",\"serviceaccount\":{\"name\":\"web\",\"uid\":\"$uid\"}}}" || return
    csr_post a "$OUT" "$KL_TMP/ok.csr"
    assert_eq "$CODE" 401 "expired token: $BODY" || return
    assert_contains "$(jfield error)" "expired" "expired token error" || return
    printf 'garbage\n' >"$KL_TMP/garbage.csr"
    csr_post a "$TOKEN" "$KL_TMP/garbage.csr"
    assert_eq "$CODE" 400 "garbage CSR: $BODY" || return
    assert_eq "$(jfield reason)" NotPEM "garbage CSR reason" || return
    new_csr rsa:1024 "$KL_TMP/rsa1024.csr" || return
    csr_post a "$TOKEN" "$KL_TMP/rsa1024.csr"
    assert_eq "$CODE" 400 "RSA-1024 CSR: $BODY" || return
    assert_eq "$(jfield reason)" WeakKey "RSA-1024 reason" || return
    assert_contains "$(jfield error)" "1024" "RSA-1024 text" || return
    # flip the last byte of the signature: still DER, no longer a valid signature
    openssl req -in "$KL_TMP/ok.csr" -outform DER -out "$KL_TMP/ok.der" || return
    python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); b[-1]^=1; open(sys.argv[1],"wb").write(b)' "$KL_TMP/ok.der"
    { echo '-----BEGIN CERTIFICATE REQUEST-----'; base64 -w64 "$KL_TMP/ok.der"; echo '-----END CERTIFICATE REQUEST-----'; } >"$KL_TMP/badsig.csr"
    csr_post a "$TOKEN" "$KL_TMP/badsig.csr"
    assert_eq "$CODE" 400 "bad signature: $BODY" || return
    assert_eq "$(jfield reason)" BadSignature "bad signature reason" || return
    head -c 1048576 /dev/zero | tr '\0' A >"$KL_TMP/big.csr"
    # The 413 comes right after the head and the connection closes; a client still sending
    # the body may see the reset first, so ask like a careful client does (Expect).
    CURL_EXTRA=(-H 'Expect: 100-continue')
    csr_post a "$TOKEN" "$KL_TMP/big.csr"
    CURL_EXTRA=()
    assert_eq "$CODE" 413 "1 MiB body: $BODY" || return
    assert_contains "$BODY" RequestEntityTooLarge "413 reason" || return
    csr_post a "$TOKEN" "$KL_TMP/ok.csr" text/plain
    assert_eq "$CODE" 415 "wrong content type: $BODY" || return
    # slowloris: idle TCP and TLS connections do not block anyone else
    exec 7<>"/dev/tcp/127.0.0.1/${WD_CERTS[a]}" # connected, never says hello
    ( (printf 'POST /v1/certificates HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n'; sleep 5) |
        openssl s_client -quiet -connect "127.0.0.1:${WD_CERTS[a]}" >/dev/null 2>&1) >/dev/null 2>&1 &
    t=$!
    bg_track "$t"
    # Both misbehaving clients are connected before the valid request (else it proves nothing).
    misbehaving_connected() {
        [ "$(ss -Htn state established "( dport = :${WD_CERTS[a]} )" | grep -c .)" -ge 2 ]
    }
    wait_for 10 misbehaving_connected || t_fail "the idle TCP and TLS clients did not connect" ||
        return
    csr_post a "$TOKEN" "$KL_TMP/ok.csr"
    assert_eq "$CODE" 200 "valid request while others misbehave: $BODY" || return
    exec 7>&-
    bg_stop "$t"
    # the token of a deleted ServiceAccount
    ok "delete sa" "$K" delete serviceaccount -n "$NS" web || return
    csr_post a "$TOKEN" "$KL_TMP/ok.csr"
    assert_eq "$CODE" 401 "deleted ServiceAccount: $BODY" || return
    assert_contains "$(jfield error)" "deleted" "deleted ServiceAccount error" || return
    assert_eq "$(metric a 'weft_certificates_refused_total{reason="WeakKey"}')" 1 "WeakKey metric" || return
    assert_eq "$(metric a 'weft_certificates_refused_total{reason="NotPEM"}')" 1 "NotPEM metric" || return
    assert_eq "$(metric a 'weft_certificates_refused_total{reason="BadSignature"}')" 1 "BadSignature metric" || return
    assert_eq "$(metric a 'weft_certificates_refused_total{reason="Unauthenticated"}')" 6 "Unauthenticated metric" || return
}

case_restart_same_root() {
    local crt
    secret_field weft-system weft-ca tls.crt || return
    crt=$OUT
    wd_stop a
    wd_stop b
    : >"${WD_LOG[a]}"
    wd_start a
    wait_for 20 ca_loaded a || { t_fail "CA not loaded after restart"; return 1; }
    assert_eq "$(root_of a)" "$ROOT" "root after restart" || return
    assert_not_contains "$(cat "${WD_LOG[a]}")" "generated a new root" "no new root" || return
    secret_field weft-system weft-ca tls.crt || return
    assert_eq "$OUT" "$crt" "Secret unchanged" || return
    ok "serviceaccount" "$K" create serviceaccount -n "$NS" web2 || return
    okv "token" "$K" create token -n "$NS" web2 --audience weft || return
    TOKEN=$OUT
    new_csr ec:<(openssl ecparam -name secp384r1) "$KL_TMP/p384.csr" || return
    csr_post a "$TOKEN" "$KL_TMP/p384.csr"
    assert_eq "$CODE" 200 "P-384 CSR after restart: $BODY" || return
    jfield certificateChain >"$KL_TMP/leaf2.pem"
    okv "verify" openssl verify -CAfile "$KL_TMP/root.pem" "$KL_TMP/leaf2.pem" || return
}

# rotation as in docs/ca.md: add the new root to ca.crt, switch the signer, remove the old root
case_rotation() {
    local old new
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/O=weft/CN=weft root 2" -keyout "$KL_TMP/root2.key" -out "$KL_TMP/root2.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return
    old=$(base64 -w0 <"$KL_TMP/root.pem")
    new=$(cat "$KL_TMP/root.pem" "$KL_TMP/root2.pem" | base64 -w0)
    ok "step 1: add the new root" "$K" patch secret -n weft-system weft-ca --type merge -p "{\"data\":{\"ca.crt\":\"$new\"}}" || return
    wait_for 15 cm_has_n_certs "$NS" 2 || { t_fail "bundle did not grow to 2 roots"; return 1; }
    bundle_of "$NS" || return
    csr_post a "$TOKEN" "$KL_TMP/ok.csr"
    assert_eq "$CODE" 200 "issue during step 1: $BODY" || return
    jfield certificateChain >"$KL_TMP/leaf3.pem"
    okv "still the old root" openssl verify -CAfile "$KL_TMP/root.pem" "$KL_TMP/leaf3.pem" || return
    assert_eq "$(jfield trustBundle | grep -c 'BEGIN CERTIFICATE')" 2 "trustBundle has both roots" || return
    ok "step 2: switch the signer" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"tls.crt\":\"$(base64 -w0 <"$KL_TMP/root2.pem")\",\"tls.key\":\"$(base64 -w0 <"$KL_TMP/root2.key")\"}}" || return
    wait_for 15 grep -q 'CA signer switched' "${WD_LOG[a]}" || { t_fail "signer not switched: $(tail -5 "${WD_LOG[a]}")"; return 1; }
    csr_post a "$TOKEN" "$KL_TMP/ok.csr"
    assert_eq "$CODE" 200 "issue after the switch: $BODY" || return
    jfield certificateChain >"$KL_TMP/leaf4.pem"
    okv "new root" openssl verify -CAfile "$KL_TMP/root2.pem" "$KL_TMP/leaf4.pem" || return
    fails "not the old root" openssl verify -CAfile "$KL_TMP/root.pem" "$KL_TMP/leaf4.pem" || return
    # the endpoint's serving certificate follows the signer
    wait_for 15 serving_verifies "$KL_TMP/root2.pem" ||
        { t_fail "serving certificate not re-issued from the new root"; return 1; }
    ok "step 3: remove the old root" "$K" patch secret -n weft-system weft-ca --type merge -p \
        "{\"data\":{\"ca.crt\":\"$(base64 -w0 <"$KL_TMP/root2.pem")\"}}" || return
    wait_for 15 cm_has_n_certs "$NS" 1 || { t_fail "old root not removed from the bundle"; return 1; }
    bundle_of "$NS" || return
    assert_eq "$(cat "$KL_TMP/bundle.pem")" "$(cat "$KL_TMP/root2.pem")" "bundle = the new root" || return
    assert_ne "$old" "" "old root" || return
    assert_contains "$(cat "${WD_LOG[a]}")" "root removed from the trust bundle" "removal logged" || return
}

# an operator's intermediate: refused while its key does not match, used once fixed
case_user_ca() {
    local d=$KL_TMP/corp
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/O=corp/CN=corp root" -keyout "$d/root.key" -out "$d/root.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=corp/CN=corp mesh CA" \
        -keyout "$d/int.key" -out "$d/int.csr" 2>/dev/null || return
    printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$d/ext"
    openssl x509 -req -in "$d/int.csr" -CA "$d/root.pem" -CAkey "$d/root.key" -CAcreateserial -days 365 \
        -extfile "$d/ext" -out "$d/int.pem" 2>/dev/null || return
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$d/wrong.key" 2>/dev/null || return
    wd_stop a
    ok "namespace" "$K" create namespace weft-corp || return
    ok "bad secret" "$K" create secret generic -n weft-corp corp-ca --from-file=tls.crt="$d/int.pem" \
        --from-file=tls.key="$d/wrong.key" --from-file=ca.crt="$d/root.pem" || return
    WD_LOG[c]=$KL_TMP/weftd-c.log
    WD_CERTS[c]=$(free_port)
    WD_ADMIN[c]=$(free_port)
    "$WEFTD" --kubeconfig "$KUBECONFIG" --namespace weft-corp --identity c --user-ca-secret corp-ca \
        --admin-listen "127.0.0.1:${WD_ADMIN[c]}" --certs-listen "127.0.0.1:${WD_CERTS[c]}" --stream-listen "127.0.0.1:$(free_port)" \
        --webhook-listen "127.0.0.1:$(free_port)" --cert-ttl 3600 >"${WD_LOG[c]}" 2>&1 &
    WD_PID[c]=$!
    daemon_track "${WD_PID[c]}" "weftd c"
    wait_for 15 grep -q 'KeyMismatch' "${WD_LOG[c]}" || { t_fail "no KeyMismatch in the log: $(tail -5 "${WD_LOG[c]}")"; return 1; }
    ca_loaded c && { t_fail "CA loaded from a Secret whose key does not match"; return 1; }
    assert_not_contains "$(cat "${WD_LOG[c]}")" "PRIVATE KEY" "key material in the log" || return
    ok "fix the secret" "$K" patch secret -n weft-corp corp-ca --type merge -p "{\"data\":{\"tls.key\":\"$(base64 -w0 <"$d/int.key")\"}}" || return
    wait_for 15 ca_loaded c || { t_fail "CA not loaded after the fix: $(tail -5 "${WD_LOG[c]}")"; return 1; }
    wait_for 15 cm_has_cert "$NS" "$d/root.pem" || { t_fail "bundle is not the corp root"; return 1; }
    assert_eq "$(cm_has_n_certs "$NS" 1 && echo one)" one "one root in the bundle" || return
    ok "serviceaccount" "$K" create serviceaccount -n "$NS" corp || return
    okv "token" "$K" create token -n "$NS" corp --audience weft || return
    csr_post c "$OUT" "$KL_TMP/ok.csr" application/pkcs10 "$d/root.pem"
    assert_eq "$CODE" 200 "issue from the intermediate: $BODY" || return
    jfield certificateChain >"$d/chain.pem"
    assert_eq "$(ncerts "$d/chain.pem")" 2 "chain = leaf + intermediate" || return
    okv "verify" openssl verify -CAfile "$d/root.pem" -untrusted "$d/chain.pem" "$d/chain.pem" || return
    okv "issuer" openssl x509 -in "$d/chain.pem" -noout -issuer -nameopt RFC2253 || return
    assert_eq "$OUT" "issuer=CN=corp mesh CA,O=corp" "issued by the intermediate" || return
    # notBefore is clamped to the young intermediate's: check notAfter against the clock
    local na left
    na=$(date -d "$(openssl x509 -in "$d/chain.pem" -noout -enddate | cut -d= -f2)" +%s)
    left=$((na - $(date +%s)))
    if [ "$left" -lt 3590 ] || [ "$left" -gt 3600 ]; then
        t_fail "--cert-ttl 3600: notAfter is ${left}s away"
        return 1
    fi
    fails "no weft-ca Secret in weft-corp" "$K" get secret -n weft-corp weft-ca || return
}

t_begin start
for tool in openssl curl python3 xxd; do
    command -v "$tool" >/dev/null || { t_skip "needs $tool"; t_summary; }
done
if [ ! -x "$WEFTD" ]; then
    t_skip "$WEFTD not built"
    t_summary
fi
if ! kl_start --data-dir "$KL_TMP/data"; then
    t_fail "kubelite did not start"
    t_summary
fi
t_pass
t_run two-replicas-one-root case_two_replicas_one_root
t_run bundle-published case_bundle_published
t_run issue case_issue
t_run tls-policy case_tls_policy
t_run refusals case_refusals
t_run restart-same-root case_restart_same_root
t_run rotation case_rotation
t_run user-ca case_user_ca
t_summary
