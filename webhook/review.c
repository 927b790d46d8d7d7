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

#include "conf/jsonio.h"
#include "core/base64.h"
#include "core/buf.h"
#include "core/utf8.h"
#include "webhook/webhook.h"
#include "webhook/webhook_int.h"

/*
 * Messages quote request fields with a precision ("%.64s") and end at their buffer's size, both
 * of which can cut a UTF-8 character; jansson refuses such a string, and the answer would fail
 * as if memory had run out. utf8_scrub drops the cut bytes.
 */
static int status_400(struct webhook_review_info *info, char **out, int *http_status,
                      const char *fmt, ...) PRINTF_LIKE(4, 5);
static int status_400(struct webhook_review_info *info, char **out, int *http_status,
                      const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    json_t *st;
    struct buf b;
    int rc = -ENOMEM;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    utf8_scrub(msg);
    info->outcome = WEBHOOK_OUTCOME_BAD_REQUEST;
    snprintf(info->reason, sizeof(info->reason), "%s", msg);
    buf_init(&b);
    st = json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion", "v1",
                   "metadata", "status", "Failure", "message", msg, "reason", "BadRequest", "code",
                   400);
    if (st && (rc = conf_json_dump(st, &b)) == 0) {
        *out = buf_take(&b);
        *http_status = 400;
    }
    json_decref(st);
    buf_release(&b);
    return rc;
}

/*
 * Answers are written straight into one buffer: the envelope is constant, and the patch (the
 * bulk of an answer) is serialised once and base64-encoded in place, never copied into a JSON
 * string to be escaped again.
 */
static int answer_begin(struct buf *b, const json_t *uid)
{
    static const char head[] = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":"
                               "\"AdmissionReview\",\"response\":{\"uid\":";
    int rc = buf_append(b, head, sizeof(head) - 1);

    return rc < 0 ? rc : conf_json_dump(uid, b);
}

static int answer_end(struct buf *b, int rc, char **out, int *http_status)
{
    if (rc == 0)
        rc = buf_append(b, "}}", 2);
    if (rc == 0) {
        *out = buf_take(b);
        *http_status = 200;
    }
    buf_release(b);
    /* our own values always serialise; only memory can run out */
    return rc < 0 ? -ENOMEM : 0;
}

static int allow(const json_t *uid, char **out, int *http_status)
{
    struct buf b;
    int rc;

    buf_init(&b);
    rc = answer_begin(&b, uid);
    if (rc == 0)
        rc = buf_puts(&b, ",\"allowed\":true");
    return answer_end(&b, rc, out, http_status);
}

static int deny(const json_t *uid, const char *msg, char **out, int *http_status)
{
    json_t *st = json_pack("{s:s,s:s,s:s,s:i}", "status", "Failure", "message", msg, "reason",
                           "BadRequest", "code", 400);
    struct buf b;
    int rc;

    buf_init(&b);
    rc = st ? answer_begin(&b, uid) : -ENOMEM;
    if (rc == 0)
        rc = buf_puts(&b, ",\"allowed\":false,\"status\":");
    if (rc == 0)
        rc = conf_json_dump(st, &b);
    json_decref(st);
    return answer_end(&b, rc, out, http_status);
}

static int patched(const json_t *uid, const struct webhook_result *res, char **out,
                   int *http_status)
{
    struct buf b, ops;
    int rc;

    buf_init(&b);
    buf_init(&ops);
    rc = conf_json_dump(res->patch, &ops);
    if (rc == 0)
        rc = answer_begin(&b, uid);
    if (rc == 0)
        rc = buf_puts(&b, ",\"allowed\":true,\"patchType\":\"JSONPatch\",\"patch\":\"");
    if (rc == 0)
        rc = base64_encode_buf(ops.p, ops.len, &b);
    if (rc == 0)
        rc = buf_append(&b, "\"", 1);
    if (rc == 0 && json_array_size(res->warnings)) {
        rc = buf_puts(&b, ",\"warnings\":");
        if (rc == 0)
            rc = conf_json_dump(res->warnings, &b);
    }
    buf_release(&ops);
    return answer_end(&b, rc, out, http_status);
}

static const char *str_at(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

const char *webhook_outcome_name(enum webhook_outcome o)
{
    switch (o) {
    case WEBHOOK_OUTCOME_INJECTED:
        return "injected";
    case WEBHOOK_OUTCOME_SKIPPED:
        return "skipped";
    case WEBHOOK_OUTCOME_PASSED:
        return "passed";
    case WEBHOOK_OUTCOME_DENIED:
        return "denied";
    case WEBHOOK_OUTCOME_BAD_REQUEST:
        return "bad_request";
    case WEBHOOK_OUTCOME_NOUTCOMES:
        break;
    }
    return "unknown";
}

/* "namespace/name" of the admitted pod, or its generateName with a '*'. */
static void pod_label(struct webhook_review_info *info, const json_t *req, const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *ns = str_at(req, "namespace"), *name = str_at(req, "name");

    if (!ns || !*ns)
        ns = str_at(md, "namespace");
    if (!name || !*name)
        name = str_at(md, "name");
    if (name && *name)
        snprintf(info->pod, sizeof(info->pod), "%.100s/%.200s", ns ? ns : "", name);
    else if ((name = str_at(md, "generateName")) != NULL)
        snprintf(info->pod, sizeof(info->pod), "%.100s/%.200s*", ns ? ns : "", name);
    utf8_scrub(info->pod);
}

int webhook_review(const struct inject_config *cfg, const char *body, size_t len,
                   char **response_json, int *http_status)
{
    struct webhook_review_info info;

    return webhook_review_explain(cfg, body, len, response_json, http_status, &info);
}

int webhook_review_explain(const struct inject_config *cfg, const char *body, size_t len,
                           char **response_json, int *http_status, struct webhook_review_info *info)
{
    struct webhook_result res = {0};
    json_error_t jerr;
    json_t *doc = NULL, *req, *kind, *obj, *juid;
    const char *uid, *op, *v, *sub;
    struct diag wd = {0, ""};
    int rc;

    memset(info, 0, sizeof(*info));
    if (!body || !len) {
        rc = status_400(info, response_json, http_status, "malformed AdmissionReview: empty body");
        goto out;
    }
    doc = conf_json_loadb(body, len, &jerr);
    if (!doc && json_error_code(&jerr) == json_error_out_of_memory) {
        rc = -ENOMEM;
        goto out;
    }
    if (!doc) {
        rc = status_400(info, response_json, http_status,
                        "malformed AdmissionReview: %s at line %d, column %d (byte %d)", jerr.text,
                        jerr.line, jerr.column, jerr.position);
        goto out;
    }
    if (!json_is_object(doc)) {
        rc = status_400(info, response_json, http_status,
                        "malformed AdmissionReview: not an object");
        goto out;
    }
    v = str_at(doc, "apiVersion");
    if (!v || strcmp(v, "admission.k8s.io/v1") != 0) {
        rc = status_400(info, response_json, http_status,
                        "unsupported AdmissionReview apiVersion \"%.64s\" (want "
                        "admission.k8s.io/v1)",
                        v ? v : "");
        goto out;
    }
    v = str_at(doc, "kind");
    if (!v || strcmp(v, "AdmissionReview") != 0) {
        rc = status_400(info, response_json, http_status,
                        "unexpected kind \"%.64s\" (want AdmissionReview)", v ? v : "");
        goto out;
    }
    req = json_object_get(doc, "request");
    if (!json_is_object(req)) {
        rc = status_400(info, response_json, http_status, "AdmissionReview has no request");
        goto out;
    }
    juid = json_object_get(req, "uid");
    uid = json_string_value(juid);
    if (!uid || !*uid) {
        rc = status_400(info, response_json, http_status, "AdmissionReview request has no uid");
        goto out;
    }
    op = str_at(req, "operation");
    kind = json_object_get(req, "kind");
    if (!op || !json_is_object(kind) || !str_at(kind, "kind")) {
        rc = status_400(info, response_json, http_status,
                        "AdmissionReview request %.64s lacks operation or kind", uid);
        goto out;
    }
    sub = str_at(req, "subResource");
    v = str_at(kind, "group");
    obj = json_object_get(req, "object");
    pod_label(info, req, obj);
    if (strcmp(op, "CREATE") != 0 || strcmp(str_at(kind, "kind"), "Pod") != 0 || (v && *v) ||
        (sub && *sub)) {
        info->outcome = WEBHOOK_OUTCOME_PASSED;
        snprintf(info->reason, sizeof(info->reason), "%.16s of %.64s%s%.64s%s%.64s%s", op,
                 str_at(kind, "kind"), v && *v ? " (" : "", v && *v ? v : "", v && *v ? ")" : "",
                 sub && *sub ? "/" : "", sub && *sub ? sub : "");
        if (json_is_true(json_object_get(req, "dryRun")))
            strncat(info->reason, ", dry run", sizeof(info->reason) - strlen(info->reason) - 1);
        utf8_scrub(info->reason);
        rc = allow(juid, response_json, http_status);
        goto out;
    }
    if (!json_is_object(obj)) {
        rc = status_400(info, response_json, http_status,
                        "AdmissionReview request %.64s has no object to admit", uid);
        goto out;
    }
    /* the review is ours: inject into its pod instead of a copy */
    rc = webhook__pod_inject_owned(cfg, json_incref(obj), str_at(req, "namespace"), &res, &wd);
    if (rc == ERR_INVALID) {
        utf8_scrub(wd.text);
        info->outcome = WEBHOOK_OUTCOME_DENIED;
        snprintf(info->reason, sizeof(info->reason), "%s", wd.text);
        rc = deny(juid, wd.text, response_json, http_status);
    } else if (rc == 0 && res.verdict == WEBHOOK_INJECTED) {
        info->outcome = WEBHOOK_OUTCOME_INJECTED;
        rc = patched(juid, &res, response_json, http_status);
    } else if (rc == 0) {
        info->outcome = WEBHOOK_OUTCOME_SKIPPED;
        snprintf(info->reason, sizeof(info->reason), "%s", res.reason);
        utf8_scrub(info->reason);
        rc = allow(juid, response_json, http_status);
    }
out:
    webhook_result_release(&res);
    json_decref(doc);
    return rc;
}
