#!/usr/bin/env bash
# Bad input to kubelite over raw HTTP: every malformed request gets the Status error a real API
# server returns, nothing is stored, and the server keeps serving.
. "$(dirname "$0")/lib.sh"

CM=/api/v1/namespaces/default/configmaps

# post PATH CONTENT-TYPE FILE: HTTP code into CODE, body into OUT
post() {
    OUT=$(curl -s -o "$KL_TMP/body" -w '%{http_code}' -H "Content-Type: $2" \
        --data-binary @"$3" "$SERVER$1")
    CODE=$OUT
    OUT=$(cat "$KL_TMP/body")
}

expect() { # CODE REASON MESSAGE-FRAGMENT WHAT
    assert_eq "$CODE" "$1" "$4: HTTP status" || return 1
    assert_contains "$OUT" "\"reason\":\"$2\"" "$4: reason" || return 1
    assert_contains "$OUT" "$3" "$4: message" || return 1
    assert_contains "$OUT" '"kind":"Status"' "$4: a Status object" || return 1
}

case_too_large() {
    python3 -c "import json; print(json.dumps({'apiVersion':'v1','kind':'ConfigMap','metadata':{'name':'big'},'data':{'x':'a'*(3*1024*1024+10)}}))" >"$KL_TMP/big.json"
    post "$CM" application/json "$KL_TMP/big.json"
    expect 413 RequestEntityTooLarge "limit is 3145728" "body over 3 MiB"
}

case_malformed_json() {
    printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"' >"$KL_TMP/bad.json"
    post "$CM" application/json "$KL_TMP/bad.json"
    expect 400 BadRequest "json parse error" "truncated JSON"
}

case_malformed_yaml() {
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n' >"$KL_TMP/bad.yaml"
    post "$CM" application/yaml "$KL_TMP/bad.yaml"
    expect 400 BadRequest "yaml: line" "malformed YAML"
}

case_wrong_api_version() {
    printf '{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}' >"$KL_TMP/av.json"
    post "$CM" application/json "$KL_TMP/av.json"
    expect 400 BadRequest "does not match the expected API version" "wrong apiVersion"
}

case_wrong_kind() {
    printf '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}' >"$KL_TMP/kind.json"
    post "$CM" application/json "$KL_TMP/kind.json"
    expect 400 BadRequest "does not match the expected kind" "wrong kind"
}

case_invalid_name() {
    printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}' >"$KL_TMP/name.json"
    post "$CM" application/json "$KL_TMP/name.json"
    expect 422 Invalid 'metadata.name: Invalid value: \"Not_Valid\"' "invalid name"
}

case_not_an_object() {
    printf '[1,2,3]' >"$KL_TMP/arr.json"
    post "$CM" application/json "$KL_TMP/arr.json"
    assert_eq "$CODE" 400 "array body: HTTP status"
}

case_garbage_protobuf() {
    printf 'k8s\000\012\003garbage' >"$KL_TMP/garbage.pb"
    post "$CM" application/vnd.kubernetes.protobuf "$KL_TMP/garbage.pb"
    assert_eq "$CODE" 400 "garbage protobuf: HTTP status" || return
    assert_contains "$OUT" "proto:" "garbage protobuf: message" || return
}

case_unknown_media_type() {
    printf 'name=x' >"$KL_TMP/form"
    post "$CM" application/x-www-form-urlencoded "$KL_TMP/form"
    expect 415 UnsupportedMediaType "unknown format" "unknown media type"
}

case_nothing_stored() {
    OUT=$(curl -s "$SERVER$CM")
    assert_contains "$OUT" '"items":[]' "no ConfigMap was stored" || return
    OUT=$(curl -s -o /dev/null -w '%{http_code}' "$SERVER/version")
    assert_eq "$OUT" 200 "still serving" || return
}

t_begin start
if ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
    t_skip "needs curl and python3"
    t_summary
fi
if ! kl_start --insecure; then
    t_fail "kubelite did not start"
    t_summary
fi
SERVER=$(sed -n 's/^ *server: *//p' "$KUBECONFIG")
t_pass
t_run too-large case_too_large
t_run malformed-json case_malformed_json
t_run malformed-yaml case_malformed_yaml
t_run wrong-api-version case_wrong_api_version
t_run wrong-kind case_wrong_kind
t_run invalid-name case_invalid_name
t_run not-an-object case_not_an_object
t_run garbage-protobuf case_garbage_protobuf
t_run unknown-media-type case_unknown_media_type
t_run nothing-stored case_nothing_stored
t_summary
