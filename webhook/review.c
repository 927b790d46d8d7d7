/*
 * review.c - AdmissionReview v1 in, AdmissionReview v1 (or a 400 Status) out.
 *
 * Only a pod CREATE on the main resource can be mutated; anything else the API server sends us
 * (UPDATE, DELETE, CONNECT, another kind, a subresource such as pods/ephemeralcontainers or
 * pods/binding, a dry run) is allowed untouched so that a too-broad webhook rule never blocks
 * the cluster. Requests that are not AdmissionReview v1 at all get a 400 with the reason.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "webhook/webhook.h"
#include "webhook/webhook_int.h"

static int status_400(char **out, int *http_status, const char *fmt, ...) PRINTF_LIKE(3, 4);
static int status_400(char **out, int *http_status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    json_t *st;
    char *s;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    st = json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion", "v1",
                   "metadata", "status", "Failure", "message", msg, "reason", "BadRequest", "code",
                   400);
    s = st ? json_dumps(st, JSON_COMPACT) : NULL;
    json_decref(st);
    if (!s)
        return -ENOMEM;
    *out = s;
    *http_status = 400;
    return 0;
}

/* Wrap response (consumed) in an AdmissionReview and serialise it. */
static int answer(json_t *response, char **out, int *http_status)
{
    json_t *rev = json_pack("{s:s,s:s,s:o}", "apiVersion", "admission.k8s.io/v1", "kind",
                            "AdmissionReview", "response", response);
    char *s = rev ? json_dumps(rev, JSON_COMPACT) : NULL;

    json_decref(rev);
    if (!s)
        return -ENOMEM;
    *out = s;
    *http_status = 200;
    return 0;
}

static int allow(const char *uid, char **out, int *http_status)
{
    return answer(json_pack("{s:s,s:b}", "uid", uid, "allowed", 1), out, http_status);
}

static int deny(const char *uid, const char *msg, char **out, int *http_status)
{
    return answer(json_pack("{s:s,s:b,s:{s:s,s:s,s:s,s:i}}", "uid", uid, "allowed", 0, "status",
                            "status", "Failure", "message", msg, "reason", "BadRequest", "code",
                            400),
                  out, http_status);
}

static int patched(const char *uid, const struct webhook_result *res, char **out, int *http_status)
{
    char *ops = json_dumps(res->patch, JSON_COMPACT), *b64 = NULL;
    json_t *resp = NULL;
    int rc = -ENOMEM;

    if (!ops)
        goto out;
    b64 = base64_encode(ops, strlen(ops));
    if (!b64)
        goto out;
    resp = json_pack("{s:s,s:b,s:s,s:s}", "uid", uid, "allowed", 1, "patchType", "JSONPatch",
                     "patch", b64);
    if (!resp ||
        (json_array_size(res->warnings) && json_object_set(resp, "warnings", res->warnings) < 0))
        goto out;
    rc = answer(resp, out, http_status);
    resp = NULL;
out:
    json_decref(resp);
    free(ops);
    free(b64);
    return rc;
}

static const char *str_at(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

int webhook_review(const struct inject_config *cfg, const char *body, size_t len,
                   char **response_json, int *http_status)
{
    struct webhook_result res = {0};
    json_error_t jerr;
    json_t *doc = NULL, *req, *kind, *obj;
    const char *uid, *op, *v, *sub;
    char msg[512] = "";
    int rc;

    doc = body ? json_loadb(body, len, 0, &jerr) : NULL;
    if (!doc) {
        rc = status_400(response_json, http_status, "malformed AdmissionReview: %s at line %d",
                        body ? jerr.text : "empty body", body ? jerr.line : 0);
        goto out;
    }
    if (!json_is_object(doc)) {
        rc = status_400(response_json, http_status, "malformed AdmissionReview: not an object");
        goto out;
    }
    v = str_at(doc, "apiVersion");
    if (!v || strcmp(v, "admission.k8s.io/v1") != 0) {
        rc = status_400(response_json, http_status,
                        "unsupported AdmissionReview apiVersion \"%.64s\" (want "
                        "admission.k8s.io/v1)",
                        v ? v : "");
        goto out;
    }
    v = str_at(doc, "kind");
    if (!v || strcmp(v, "AdmissionReview") != 0) {
        rc = status_400(response_json, http_status,
                        "unexpected kind \"%.64s\" (want AdmissionReview)", v ? v : "");
        goto out;
    }
    req = json_object_get(doc, "request");
    if (!json_is_object(req)) {
        rc = status_400(response_json, http_status, "AdmissionReview has no request");
        goto out;
    }
    uid = str_at(req, "uid");
    if (!uid || !*uid) {
        rc = status_400(response_json, http_status, "AdmissionReview request has no uid");
        goto out;
    }
    op = str_at(req, "operation");
    kind = json_object_get(req, "kind");
    if (!op || !json_is_object(kind) || !str_at(kind, "kind")) {
        rc = status_400(response_json, http_status,
                        "AdmissionReview request %.64s lacks operation or kind", uid);
        goto out;
    }
    sub = str_at(req, "subResource");
    v = str_at(kind, "group");
    if (strcmp(op, "CREATE") != 0 || strcmp(str_at(kind, "kind"), "Pod") != 0 || (v && *v) ||
        (sub && *sub) || (json_is_true(json_object_get(req, "dryRun")) && !cfg->inject_dry_run)) {
        rc = allow(uid, response_json, http_status);
        goto out;
    }
    obj = json_object_get(req, "object");
    if (!json_is_object(obj)) {
        rc = status_400(response_json, http_status,
                        "AdmissionReview request %.64s has no object to admit", uid);
        goto out;
    }
    /* the review is ours: inject into its pod instead of a copy */
    rc = webhook__pod_inject_owned(cfg, json_incref(obj), str_at(req, "namespace"), &res, msg,
                                   sizeof(msg));
    if (rc == ERR_INVALID)
        rc = deny(uid, msg, response_json, http_status);
    else if (rc == 0 && res.verdict == WEBHOOK_INJECTED)
        rc = patched(uid, &res, response_json, http_status);
    else if (rc == 0)
        rc = allow(uid, response_json, http_status);
out:
    webhook_result_release(&res);
    json_decref(doc);
    return rc;
}
