/*
 * api.c - routing and the resource verbs: get, list, watch, create, update, patch, delete,
 * deletecollection, with the status subresource, dry runs and Status errors as
 * kube-apiserver words them.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/yamljson.h"
#include "core/base64.h"
#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"
#include "tests/kubelite/openapi.h"
#include "tests/kubelite/patch.h"
#include "tests/kubelite/proto.h"
#include "tests/kubelite/selector.h"
#include "tests/kubelite/ssa.h"
#include "tests/kubelite/table.h"
#include "tests/kubelite/validate.h"

#define MAX_SEGS 12

char *kl_status_json(int code, const char *reason, const char *message, const char *kind,
                     const char *name, const char *group, json_t *causes)
{
    json_t *st = json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion", "v1",
                           "metadata", "status", code < 400 ? "Success" : "Failure", "message",
                           message ? message : "", "reason", reason ? reason : "", "code", code);
    char *out;
    if (!st)
        return NULL;
    if (kind || name || group || causes) {
        json_t *d = json_object();
        if (name)
            json_object_set_new(d, "name", json_string(name));
        if (group && group[0])
            json_object_set_new(d, "group", json_string(group));
        if (kind)
            json_object_set_new(d, "kind", json_string(kind));
        if (causes && json_array_size(causes))
            json_object_set(d, "causes", causes);
        json_object_set_new(st, "details", d);
    }
    out = json_dumps(st, JSON_COMPACT);
    json_decref(st);
    return out;
}

void kl_respond_status(struct http_conn *c, int code, const char *reason, const char *message,
                       const char *kind, const char *name, const char *group, json_t *causes)
{
    char *body;
    if (!c)
        return;
    body = kl_status_json(code, reason, message, kind, name, group, causes);
    if (!body) {
        http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL);
        return;
    }
    http_respond(c, code, "application/json", body, strlen(body), NULL);
    free(body);
}

void kl_respond_json(struct http_conn *c, int code, json_t *body, const char *extra_headers)
{
    char *s;
    if (!c)
        return;
    s = json_dumps(body, JSON_COMPACT);
    if (!s) {
        http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL);
        return;
    }
    http_respond(c, code, "application/json", s, strlen(s), extra_headers);
    free(s);
}

/* ---------------------------------------------------------------- helpers */

static bool accept_table(const struct http_request *req)
{
    const char *a = http_req_header(req, "accept");
    return a && strstr(a, "as=Table") && strstr(a, "g=meta.k8s.io");
}

static void manager_name(const struct http_request *req, char *out, size_t outlen)
{
    const char *ua;
    if (http_query_get(req, "fieldManager", out, outlen) && out[0])
        return;
    ua = http_req_header(req, "user-agent");
    if (ua && *ua) {
        size_t n = strcspn(ua, "/");
        snprintf(out, outlen, "%.*s", (int)n, ua);
        return;
    }
    snprintf(out, outlen, "unknown");
}

static bool is_dry_run(const struct http_request *req)
{
    char v[16];
    return http_query_get(req, "dryRun", v, sizeof(v)) && strcmp(v, "All") == 0;
}

/* The "kind" in error details is the resource (plural), as kube-apiserver reports it. */
static void respond_notfound(struct http_conn *c, const struct rtype *rt, const char *name)
{
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s%s%s \"%s\" not found", rt->plural, rt->group[0] ? "." : "",
             rt->group, name);
    kl_respond_status(c, 404, "NotFound", msg, rt->plural, name, rt->group, NULL);
}

static void respond_ns_notfound(struct http_conn *c, const char *ns)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "namespaces \"%s\" not found", ns);
    kl_respond_status(c, 404, "NotFound", msg, "namespaces", ns, "", NULL);
}

static void respond_conflict(struct http_conn *c, const struct rtype *rt, const char *name)
{
    char msg[1024];
    snprintf(msg, sizeof(msg),
             "Operation cannot be fulfilled on %s%s%s \"%s\": the object has been modified; "
             "please apply your changes to the latest version and try again",
             rt->plural, rt->group[0] ? "." : "", rt->group, name);
    kl_respond_status(c, 409, "Conflict", msg, rt->plural, name, rt->group, NULL);
}

/* 422 Invalid: 'Kind.group "name" is invalid: cause' or '...: [c1, c2]'. */
static void respond_invalid(struct http_conn *c, const struct rtype *rt, const char *name,
                            json_t *causes)
{
    struct buf b;
    size_t i, n = json_array_size(causes);
    json_t *cause;

    buf_init(&b);
    if (buf_printf(&b, "%s%s%s \"%s\" is invalid: %s", rt->kind, rt->group[0] ? "." : "", rt->group,
                   name ? name : "", n > 1 ? "[" : "")) {
        buf_release(&b);
        return;
    }
    json_array_foreach(causes, i, cause)
    {
        const char *m = jstr_or(cause, "message", "");
        const char *f = jstr(cause, "field");
        if (f ? buf_printf(&b, "%s%s: %s", i ? ", " : "", f, m)
              : buf_printf(&b, "%s%s", i ? ", " : "", m))
            break;
    }
    if (n > 1 && buf_puts(&b, "]")) {
        buf_release(&b);
        return;
    }
    kl_respond_status(c, 422, "Invalid", b.p, rt->kind, name, rt->group, causes);
    buf_release(&b);
}

void kl_cause_add(json_t *causes, const char *reason, const char *field, const char *fmt, ...)
{
    char msg[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(
        causes, json_pack("{s:s,s:s,s:s}", "reason", reason, "message", msg, "field", field));
}

/* Parse a request body by Content-Type into an object. */
int kl_parse_body(struct http_conn *c, const struct http_request *req, json_t **out)
{
    const char *ct = http_req_header(req, "content-type");
    char msg[512];
    json_t *v = NULL;

    if (!req->body_len) {
        kl_respond_status(c, 400, "BadRequest", "the request body is empty", NULL, NULL, NULL,
                          NULL);
        return ERR_PARSE;
    }
    if (ct && strncmp(ct, "application/vnd.kubernetes.protobuf", 35) == 0) {
        int rc = proto_decode((const uint8_t *)req->body, req->body_len, &v, msg, sizeof(msg));
        if (rc == ERR_UNSUPPORTED) {
            kl_respond_status(c, 415, "UnsupportedMediaType", msg, NULL, NULL, NULL, NULL);
            return rc;
        }
        if (rc) {
            kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
            return rc;
        }
    } else if (ct && (strncmp(ct, "application/yaml", 16) == 0 ||
                      strncmp(ct, "application/apply-patch+yaml", 28) == 0)) {
        json_error_t jerr;
        /* apply bodies are usually JSON; YAML is the general case. */
        v = json_loadb(req->body, req->body_len, 0, &jerr);
        if (!v) {
            json_t *docs = NULL;
            struct diag yd = {0, ""};
            int rc = yaml_to_json(req->body, req->body_len, &docs, &yd);
            if (rc || json_array_size(docs) != 1) {
                json_decref(docs);
                kl_respond_status(c, 400, "BadRequest",
                                  rc ? yd.text : "the body must hold exactly one YAML document",
                                  NULL, NULL, NULL, NULL);
                return ERR_PARSE;
            }
            v = json_incref(json_array_get(docs, 0));
            json_decref(docs);
        }
    } else if (!ct || strncmp(ct, "application/json", 16) == 0 ||
               strncmp(ct, "application/merge-patch+json", 28) == 0 ||
               strncmp(ct, "application/strategic-merge-patch+json", 38) == 0 ||
               strncmp(ct, "application/json-patch+json", 27) == 0 || strncmp(ct, "*/*", 3) == 0) {
        json_error_t jerr;
        v = json_loadb(req->body, req->body_len, 0, &jerr);
        if (!v) {
            snprintf(msg, sizeof(msg),
                     "couldn't get version/kind; json parse error: %s (line %d, column %d)",
                     jerr.text, jerr.line, jerr.column);
            kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
            return ERR_PARSE;
        }
    } else {
        snprintf(msg, sizeof(msg),
                 "the body of the request was in an unknown format - accepted media types "
                 "include: application/json, application/yaml, "
                 "application/vnd.kubernetes.protobuf");
        kl_respond_status(c, 415, "UnsupportedMediaType", msg, NULL, NULL, NULL, NULL);
        return ERR_UNSUPPORTED;
    }
    *out = v;
    return 0;
}

static void strip_rv(json_t *o)
{
    json_object_del(json_object_get(o, "metadata"), "resourceVersion");
}

static json_t *spec_part(const json_t *obj)
{
    json_t *c = json_copy((json_t *)obj);
    if (c) {
        json_object_del(c, "metadata");
        json_object_del(c, "status");
        json_object_del(c, "apiVersion");
        json_object_del(c, "kind");
    }
    return c;
}

static void warning_header(json_t *unknown, struct buf *hdrs)
{
    size_t i;
    json_t *u;
    json_array_foreach(unknown, i, u)
    {
        const char *p = json_string_value(u);
        if (p && *p == '.')
            p++;
        if (buf_printf(hdrs, "Warning: 299 - \"unknown field \\\"%s\\\"\"\r\n", p ? p : ""))
            return;
    }
}

/*
 * Validation shared by every write: schema (pruning, defaulting for CRs), unknown fields per
 * fieldValidation, names, metadata maps. Responds and returns nonzero on failure; warnings for
 * fieldValidation=Warn go to hdrs.
 */
static int check_object(struct kl *kl, struct http_conn *c, const struct http_request *req,
                        const struct rtype *rt, json_t *obj, struct buf *hdrs)
{
    json_t *causes = json_array(), *unknown = json_array();
    const json_t *schema;
    const json_t *md = json_object_get(obj, "metadata");
    const char *name = jstr(md, "name");
    char fv[16] = "Warn", msg[1024];
    unsigned flags = VALIDATE_PRUNE;
    int rc = 0;

    http_query_get(req, "fieldValidation", fv, sizeof(fv));
    if (rt->crd) {
        schema = json_object_get(rt->schema, "openAPIV3Schema");
        flags |= VALIDATE_DEFAULTS;
    } else {
        schema = openapi_gvk_schema(kl->oa, rt->group, rt->version, rt->kind);
    }
    if (schema) {
        /* metadata is the server's; validate the rest */
        rc = validate_object(rt->crd ? NULL : kl->oa, schema, obj, flags, causes, unknown);
        if (rc == -ENOMEM)
            goto oom;
    }
    if (name && !validate_name(name, (enum validate_name_kind)rt->name_kind, msg, sizeof(msg)))
        kl_cause_add(causes, "FieldValueInvalid", "metadata.name", "Invalid value: \"%s\": %s",
                     name, msg);
    validate_metadata_maps(md, causes);

    if (json_array_size(unknown) && strcmp(fv, "Strict") == 0) {
        struct buf b;
        size_t i;
        json_t *u;
        buf_init(&b);
        json_array_foreach(unknown, i, u)
        {
            const char *p = json_string_value(u);
            if (p && *p == '.')
                p++;
            if (buf_printf(&b, "%sunknown field \"%s\"", i ? ", " : "", p ? p : ""))
                break;
        }
        snprintf(msg, sizeof(msg),
                 "%s in version \"%s\" cannot be handled as a %s: strict decoding error: %s",
                 rt->kind, rt->version, rt->kind, b.p ? b.p : "");
        buf_release(&b);
        kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
        rc = ERR_INVALID;
        goto out;
    }
    if (json_array_size(unknown) && strcmp(fv, "Warn") == 0)
        warning_header(unknown, hdrs);
    if (json_array_size(causes)) {
        respond_invalid(c, rt, name, causes);
        rc = ERR_INVALID;
        goto out;
    }
    rc = 0;
    goto out;
oom:
    kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
out:
    json_decref(causes);
    json_decref(unknown);
    return rc;
}

static void gen_name(char *out, size_t outlen, const char *prefix)
{
    static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
    char suffix[6];
    for (int i = 0; i < 5; i++)
        suffix[i] = alphabet[rand() % (int)(sizeof(alphabet) - 1)];
    suffix[5] = '\0';
    snprintf(out, outlen, "%s%s", prefix, suffix);
}

static bool ns_exists(struct kl *kl, const char *ns, bool *terminating)
{
    struct rstore *st = kl_store_get(kl, "", "namespaces", false);
    char key[300];
    json_t *o;
    kl_key(NULL, ns, key, sizeof(key));
    o = st ? kl_store_lookup(st, key) : NULL;
    if (terminating)
        *terminating = o && json_object_get(json_object_get(o, "metadata"), "deletionTimestamp");
    return o != NULL;
}

static void send_object(struct kl *kl, struct http_conn *c, const struct http_request *req,
                        const struct rtype *rt, int code, json_t *obj, const char *hdrs)
{
    json_t *v = kl_obj_for_version(rt, obj);
    (void)kl;
    if (accept_table(req)) {
        json_t *items = json_array(), *t;
        char io[32] = "";
        json_array_append(items, v);
        http_query_get(req, "includeObject", io, sizeof(io));
        t = table_build(rt->group, rt->plural, rt->printer_columns, items, NULL, io[0] ? io : NULL,
                        time(NULL));
        json_decref(items);
        if (t) {
            kl_respond_json(c, code, t, hdrs);
            json_decref(t);
            json_decref(v);
            return;
        }
    }
    kl_respond_json(c, code, v, hdrs);
    json_decref(v);
}

/* ---------------------------------------------------------------- verbs */

static void do_get(struct kl *kl, struct http_conn *c, const struct http_request *req,
                   const struct rtype *rt, const char *ns, const char *name)
{
    char key[1024];
    json_t *o;
    kl_key(ns, name, key, sizeof(key));
    o = kl_store_lookup(rt->store, key);
    if (!o) {
        respond_notfound(c, rt, name);
        return;
    }
    send_object(kl, c, req, rt, 200, o, NULL);
}

static char *encode_continue(uint64_t rv, const char *start)
{
    json_t *t =
        json_pack("{s:s,s:I,s:s}", "v", "meta.k8s.io/v1", "rv", (json_int_t)rv, "start", start);
    char *raw = t ? json_dumps(t, JSON_COMPACT) : NULL;
    char *out = raw ? base64_encode(raw, strlen(raw)) : NULL;
    json_decref(t);
    free(raw);
    return out;
}

static int decode_continue(const char *tok, uint64_t *rv, char *start, size_t startlen)
{
    char *raw = NULL;
    size_t n;
    json_t *t;
    json_error_t jerr;
    int rc = base64_decode(tok, &raw, &n);

    if (rc)
        return rc == -ENOMEM ? rc : ERR_INVALID;
    rc = ERR_INVALID;
    t = json_loadb(raw, n, 0, &jerr);
    if (t && json_is_integer(json_object_get(t, "rv")) && jstr(t, "start")) {
        *rv = (uint64_t)json_integer_value(json_object_get(t, "rv"));
        snprintf(start, startlen, "%s", jstr(t, "start"));
        rc = 0;
    }
    json_decref(t);
    free(raw);
    return rc;
}

static int parse_selectors(struct http_conn *c, const struct http_request *req,
                           const struct rtype *rt, struct selector **labels,
                           struct selector **fields)
{
    char sel[4096], msg[512];
    *labels = *fields = NULL;
    if (http_query_get(req, "labelSelector", sel, sizeof(sel)) && sel[0] &&
        selector_parse_labels(sel, labels, msg, sizeof(msg))) {
        kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
        return ERR_INVALID;
    }
    if (http_query_get(req, "fieldSelector", sel, sizeof(sel)) && sel[0] &&
        selector_parse_fields(sel, rt->plural, fields, msg, sizeof(msg))) {
        selector_free(*labels);
        *labels = NULL;
        kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
        return ERR_INVALID;
    }
    return 0;
}

static void do_list(struct kl *kl, struct http_conn *c, const struct http_request *req,
                    const struct rtype *rt, const char *ns)
{
    char lim[32], cont[2048], rvq[64] = "", rvm[32] = "", start[1024] = "", av[300];
    struct selector *labels = NULL, *fields = NULL;
    uint64_t snap_rv = 0;
    long limit = 0;
    bool gone = false;
    json_t *all = NULL, *items = NULL, *list = NULL, *md;
    size_t i, taken = 0, remaining = 0;
    json_t *o;
    char *next_tok = NULL;
    const char *last_key = NULL;
    char nsprefix[300];

    if (parse_selectors(c, req, rt, &labels, &fields))
        return;
    if (http_query_get(req, "limit", lim, sizeof(lim)))
        limit = atol(lim);
    http_query_get(req, "resourceVersion", rvq, sizeof(rvq));
    http_query_get(req, "resourceVersionMatch", rvm, sizeof(rvm));
    if (http_query_get(req, "continue", cont, sizeof(cont)) && cont[0]) {
        if (decode_continue(cont, &snap_rv, start, sizeof(start))) {
            kl_respond_status(c, 400, "BadRequest", "continue key is not valid: invalid token",
                              NULL, NULL, NULL, NULL);
            goto out;
        }
        if (snap_rv < kl->compacted_rv) {
            char *tok = NULL;
            char msg[1024];
            snprintf(msg, sizeof(msg),
                     "The provided continue parameter is too old to display a consistent list "
                     "result. You can start a new list without the continue parameter, or use "
                     "the continue token in this response to retrieve the remainder of the "
                     "results. Continuing with the provided token results in an inconsistent "
                     "list - objects that were created, modified, or deleted between the time "
                     "the first chunk was returned and now may show up in the list.");
            (void)tok;
            kl_respond_status(c, 410, "Expired", msg, NULL, NULL, NULL, NULL);
            goto out;
        }
    } else if (rvq[0] && strcmp(rvq, "0") != 0 && strcmp(rvm, "Exact") == 0) {
        snap_rv = strtoull(rvq, NULL, 10);
        if (snap_rv > kl->rv) {
            kl_respond_status(c, 504, "Timeout", "Too large resource version", NULL, NULL, NULL,
                              NULL);
            goto out;
        }
        if (snap_rv < kl->compacted_rv) {
            char msg[256];
            snprintf(msg, sizeof(msg), "too old resource version: %llu (%llu)",
                     (unsigned long long)snap_rv, (unsigned long long)kl->compacted_rv + 1);
            kl_respond_status(c, 410, "Expired", msg, NULL, NULL, NULL, NULL);
            goto out;
        }
    }
    if (!snap_rv)
        snap_rv = kl->rv;
    all = kl_store_snapshot(kl, rt->store, snap_rv, &gone);
    if (!all) {
        kl_respond_status(c, gone ? 410 : 500, gone ? "Expired" : "InternalError",
                          gone ? "too old resource version" : "out of memory", NULL, NULL, NULL,
                          NULL);
        goto out;
    }
    items = json_array();
    snprintf(nsprefix, sizeof(nsprefix), "%s/", ns ? ns : "");
    json_array_foreach(all, i, o)
    {
        json_t *omd = json_object_get(o, "metadata");
        char key[1024];
        kl_key(jstr(omd, "namespace"), jstr_or(omd, "name", ""), key, sizeof(key));
        if (ns && strncmp(key, nsprefix, strlen(nsprefix)) != 0)
            continue;
        if (start[0] && strcmp(key, start) <= 0)
            continue;
        if (!selector_match(labels, o) || !selector_match(fields, o))
            continue;
        if (limit > 0 && (long)taken >= limit) {
            remaining++;
            continue;
        }
        json_array_append_new(items, kl_obj_for_version(rt, o));
        taken++;
        last_key = jstr(omd, "name");
        if (limit > 0 && (long)taken == limit) {
            char *k = strdup(key);
            free(next_tok);
            next_tok = k;
        }
    }
    (void)last_key;
    kl_api_version(rt, av, sizeof(av));
    md = json_object();
    {
        char rvs[32];
        snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)snap_rv);
        json_object_set_new(md, "resourceVersion", json_string(rvs));
    }
    if (remaining && next_tok) {
        char *tok = encode_continue(snap_rv, next_tok);
        if (tok) {
            json_object_set_new(md, "continue", json_string(tok));
            free(tok);
        }
        if (!labels && !fields)
            json_object_set_new(md, "remainingItemCount", json_integer((json_int_t)remaining));
    }
    if (accept_table(req)) {
        char io[32] = "";
        http_query_get(req, "includeObject", io, sizeof(io));
        list = table_build(rt->group, rt->plural, rt->printer_columns, items, md, io[0] ? io : NULL,
                           time(NULL));
        json_decref(md);
    } else {
        list = json_pack("{s:s,s:s,s:o,s:O}", "kind", rt->list_kind, "apiVersion", av, "metadata",
                         md, "items", items);
    }
    if (!list) {
        kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
        goto out;
    }
    kl_respond_json(c, 200, list, NULL);
out:
    free(next_tok);
    json_decref(list);
    json_decref(items);
    json_decref(all);
    selector_free(labels);
    selector_free(fields);
}

/*
 * Finish a write: kind-specific hooks, managed fields, no-op detection, commit (or not, for a
 * dry run) and the response. new_obj is consumed. old may be NULL (create).
 */
static void finish_write(struct kl *kl, struct http_conn *c, const struct http_request *req,
                         const struct rtype *rt, const char *key, json_t *old, json_t *new_obj,
                         int code, const char *subresource, bool track_fields, struct buf *hdrs)
{
    char now[40], mgr[256];
    json_t *committed = NULL;
    int rc;

    kl_now_rfc3339(now, sizeof(now));
    manager_name(req, mgr, sizeof(mgr));
    if (track_fields) {
        const json_t *schema = rt->crd
                                   ? json_object_get(rt->schema, "openAPIV3Schema")
                                   : openapi_gvk_schema(kl->oa, rt->group, rt->version, rt->kind);
        rc = ssa_update(old, new_obj, mgr, subresource, rt->crd ? NULL : kl->oa, schema, now);
        if (rc) {
            json_decref(new_obj);
            kl_respond_status(c, 500, "InternalError", err_str(rc), NULL, NULL, NULL, NULL);
            return;
        }
    }
    if (old) {
        /* A write that changes nothing keeps the resourceVersion. */
        json_t *a = json_deep_copy(old), *b = json_deep_copy(new_obj);
        bool same;
        strip_rv(a);
        strip_rv(b);
        same = a && b && json_equal(a, b);
        json_decref(a);
        json_decref(b);
        if (same) {
            json_decref(new_obj);
            send_object(kl, c, req, rt, 200, old, hdrs->p);
            return;
        }
    }
    rc = kl_hooks_before_commit(kl, rt, old, new_obj);
    if (rc) {
        json_decref(new_obj);
        kl_respond_status(c, 500, "InternalError", err_str(rc), NULL, NULL, NULL, NULL);
        return;
    }
    if (is_dry_run(req)) {
        if (!old) {
            /* a dry-run create has no resourceVersion */
            strip_rv(new_obj);
        }
        send_object(kl, c, req, rt, code, new_obj, hdrs->p);
        json_decref(new_obj);
        return;
    }
    /* An object marked for deletion whose last finalizer went away is deleted now, unless a
     * grace period is still running (a pod's kubelet deletes it with grace 0 once stopped). */
    if (old && json_object_get(json_object_get(new_obj, "metadata"), "deletionTimestamp") &&
        json_array_size(jget2(new_obj, "metadata", "finalizers")) == 0 &&
        json_integer_value(jget2(old, "metadata", "deletionGracePeriodSeconds")) == 0) {
        json_t *keep = json_incref(new_obj);
        json_decref(new_obj);
        rc = kl_commit(kl, rt->store, key, NULL, NULL);
        if (!rc)
            kl_hooks_after_delete(kl, rt, keep);
        send_object(kl, c, req, rt, 200, keep, hdrs->p);
        json_decref(keep);
        return;
    }
    rc = kl_commit(kl, rt->store, key, new_obj, &committed);
    if (rc || !committed) {
        kl_respond_status(c, 500, "InternalError", err_str(rc), NULL, NULL, NULL, NULL);
        return;
    }
    json_incref(committed);
    kl_hooks_after_commit(kl, rt, old, committed);
    send_object(kl, c, req, rt, code, committed, hdrs->p);
    json_decref(committed);
}

/* Identity checks of a body against the request: apiVersion, kind, namespace, name. */
static int check_identity(struct http_conn *c, const struct rtype *rt, json_t *obj, const char *ns,
                          const char *name)
{
    char av[300], msg[700];
    const char *bav = jstr(obj, "apiVersion"), *bkind = jstr(obj, "kind");
    json_t *md;

    if (!json_is_object(obj)) {
        kl_respond_status(c, 400, "BadRequest", "the body must be a JSON object", NULL, NULL, NULL,
                          NULL);
        return ERR_INVALID;
    }
    kl_api_version(rt, av, sizeof(av));
    if (bav && strcmp(bav, av) != 0) {
        snprintf(msg, sizeof(msg),
                 "the API version in the data (%s) does not match the expected API version (%s)",
                 bav, av);
        kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
        return ERR_INVALID;
    }
    if (bkind && strcmp(bkind, rt->kind) != 0) {
        snprintf(msg, sizeof(msg),
                 "the kind in the data (%s) does not match the expected kind (%s)", bkind,
                 rt->kind);
        kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
        return ERR_INVALID;
    }
    json_object_set_new(obj, "apiVersion", json_string(av));
    json_object_set_new(obj, "kind", json_string(rt->kind));
    md = json_object_get(obj, "metadata");
    if (!md) {
        md = json_object();
        json_object_set_new(obj, "metadata", md);
    }
    if (!json_is_object(md)) {
        kl_respond_status(c, 400, "BadRequest", "metadata must be an object", NULL, NULL, NULL,
                          NULL);
        return ERR_INVALID;
    }
    if (rt->namespaced) {
        const char *bns = jstr(md, "namespace");
        if (bns && ns && strcmp(bns, ns) != 0) {
            kl_respond_status(c, 400, "BadRequest",
                              "the namespace of the provided object does not match the namespace "
                              "sent on the request",
                              NULL, NULL, NULL, NULL);
            return ERR_INVALID;
        }
        if (ns)
            json_object_set_new(md, "namespace", json_string(ns));
    } else {
        json_object_del(md, "namespace");
    }
    if (name) {
        const char *bname = jstr(md, "name");
        if (bname && strcmp(bname, name) != 0) {
            snprintf(msg, sizeof(msg),
                     "the name of the object (%s) does not match the name on the URL (%s)", bname,
                     name);
            kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
            return ERR_INVALID;
        }
        json_object_set_new(md, "name", json_string(name));
    }
    return 0;
}

/* Create path shared by POST and apply-to-absent. obj is consumed. */
/* ---------------------------------------------------------------- staged writes */

static struct kl_write *write_new(struct kl *kl, struct http_conn *c,
                                  const struct http_request *req, const struct rtype *rt,
                                  const char *ns, const char *name, json_t *old, json_t *obj,
                                  const char *subresource, bool track_fields, bool create)
{
    struct kl_write *w = calloc(1, sizeof(*w));
    char key[1024];
    if (!w)
        return NULL;
    kl_key(ns, name, key, sizeof(key));
    w->kl = kl;
    w->c = c;
    w->req = http_request_dup(req);
    w->group = strdup(rt->group);
    w->version = strdup(rt->version);
    w->plural = strdup(rt->plural);
    w->ns = ns ? strdup(ns) : NULL;
    w->name = strdup(name);
    w->key = strdup(key);
    w->old = json_incref(old);
    w->obj = json_incref(obj);
    w->user = json_incref(kl->cur_user);
    snprintf(w->subresource, sizeof(w->subresource), "%s", subresource);
    w->track_fields = track_fields;
    w->create = create;
    buf_init(&w->hdrs);
    w->next = kl->inflight;
    if (kl->inflight)
        kl->inflight->prev = w;
    kl->inflight = w;
    if (!w->req || !w->group || !w->version || !w->plural || (ns && !w->ns) || !w->name ||
        !w->key) {
        kl_write_free(w);
        return NULL;
    }
    return w;
}

void kl_write_free(struct kl_write *w)
{
    if (!w)
        return;
    w->kl->writes_done++; /* a controller waiting on its in-flight creates looks again */
    if (w->prev)
        w->prev->next = w->next;
    else if (w->kl->inflight == w)
        w->kl->inflight = w->next;
    if (w->next)
        w->next->prev = w->prev;
    http_request_free(w->req);
    free(w->group);
    free(w->version);
    free(w->plural);
    free(w->ns);
    free(w->name);
    free(w->key);
    json_decref(w->old);
    json_decref(w->obj);
    json_decref(w->user);
    buf_release(&w->hdrs);
    free(w);
}

const struct rtype *kl_write_rtype(const struct kl_write *w)
{
    return kl_rtype_find(w->kl, w->group, w->version, w->plural);
}

/* The type may be gone after waiting on webhooks (its CRD deleted). */
static const struct rtype *write_rtype_or_respond(struct kl_write *w)
{
    const struct rtype *rt = kl_write_rtype(w);
    if (!rt)
        kl_respond_status(w->c, 404, "NotFound", "the server could not find the requested resource",
                          NULL, NULL, NULL, NULL);
    return rt;
}

/* The kind's own validation (kl_hooks_validate) of w->obj; answers and returns nonzero. */
static int kind_checks(struct kl *kl, struct kl_write *w, const struct rtype *rt)
{
    json_t *causes = json_array();
    int rc = kl_hooks_validate(kl, rt, w->old, w->obj, causes);

    if (rc) {
        if (json_array_size(causes))
            respond_invalid(w->c, rt, w->name, causes);
        else
            kl_respond_status(w->c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
    }
    json_decref(causes);
    return rc;
}

static void create_validated(struct kl_write *w)
{
    const struct rtype *rt = write_rtype_or_respond(w);
    json_t *obj = w->obj;
    if (rt) {
        w->obj = NULL;
        finish_write(w->kl, w->c, w->req, rt, w->key, NULL, obj, 201, "", w->track_fields,
                     &w->hdrs);
    }
    kl_write_free(w);
}

static void create_mutated(struct kl_write *w)
{
    struct kl *kl = w->kl;
    const struct rtype *rt = write_rtype_or_respond(w);

    if (!rt)
        goto fail;
    if (kl_store_lookup(rt->store, w->key)) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s%s%s \"%s\" already exists", rt->plural,
                 rt->group[0] ? "." : "", rt->group, w->name);
        kl_respond_status(w->c, 409, "AlreadyExists", msg, rt->plural, w->name, rt->group, NULL);
        goto fail;
    }
    if (check_object(kl, w->c, w->req, rt, w->obj, &w->hdrs))
        goto fail;
    if (kind_checks(kl, w, rt))
        goto fail;
    kl_admit(w, false, create_validated);
    return;
fail:
    kl_write_free(w);
}

/* Create path shared by POST, apply-to-absent and controllers. obj is consumed. */
static void create_object(struct kl *kl, struct http_conn *c, const struct http_request *req,
                          const struct rtype *rt, const char *ns, json_t *obj, bool track_fields)
{
    json_t *md = json_object_get(obj, "metadata");
    const char *name = jstr(md, "name"), *gen = jstr(md, "generateName");
    char key[1024], uid[37], now[40], gname[300];
    struct kl_write *w;
    json_t *causes;
    bool terminating = false;

    if ((!name || !*name) && gen && *gen) {
        for (int tries = 0; tries < 8; tries++) {
            gen_name(gname, sizeof(gname), gen);
            kl_key(ns, gname, key, sizeof(key));
            if (!kl_store_lookup(rt->store, key))
                break;
        }
        json_object_set_new(md, "name", json_string(gname));
        name = jstr(md, "name");
    }
    if (!name || !*name) {
        causes = json_array();
        kl_cause_add(causes, "FieldValueRequired", "metadata.name",
                     "Required value: name or generateName is required");
        respond_invalid(c, rt, "", causes);
        json_decref(causes);
        goto out;
    }
    if (rt->namespaced && !ns_exists(kl, ns, &terminating)) {
        respond_ns_notfound(c, ns);
        goto out;
    }
    if (terminating) {
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "%s \"%s\" is forbidden: unable to create new content in namespace %s because "
                 "it is being terminated",
                 rt->plural, name, ns);
        kl_respond_status(c, 403, "Forbidden", msg, rt->plural, name, rt->group, NULL);
        goto out;
    }
    kl_key(ns, name, key, sizeof(key));
    if (kl_store_lookup(rt->store, key)) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s%s%s \"%s\" already exists", rt->plural,
                 rt->group[0] ? "." : "", rt->group, name);
        kl_respond_status(c, 409, "AlreadyExists", msg, rt->plural, name, rt->group, NULL);
        goto out;
    }
    /* System-owned metadata. */
    kl_new_uid(kl, uid);
    kl_now_rfc3339(now, sizeof(now));
    json_object_set_new(md, "uid", json_string(uid));
    json_object_set_new(md, "creationTimestamp", json_string(now));
    json_object_del(md, "resourceVersion");
    json_object_del(md, "deletionTimestamp");
    json_object_del(md, "deletionGracePeriodSeconds");
    json_object_del(md, "selfLink");
    if (rt->generation || rt->crd)
        json_object_set_new(md, "generation", json_integer(1));
    else
        json_object_del(md, "generation");
    if (rt->has_status && !kl_type_keeps_status_on_create(rt))
        json_object_del(obj, "status");
    if (kl_hooks_defaults(kl, rt, NULL, obj))
        goto oom;
    w = write_new(kl, c, req, rt, ns, name, NULL, obj, "", track_fields, true);
    if (!w)
        goto oom;
    json_decref(obj);
    kl_admit(w, true, create_mutated);
    return;
oom:
    kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
out:
    json_decref(obj);
}

void kl_create_internal(struct kl *kl, const char *group, const char *version, const char *plural,
                        const char *ns, json_t *obj, const char *user)
{
    struct rtype *rt = kl_rtype_find(kl, group, version, plural);
    struct http_request req;
    char *names[] = {(char *)"user-agent"}, *values[] = {(char *)user};
    json_t *u = json_pack("{s:s,s:[s,s]}", "username", user, "groups", "system:serviceaccounts",
                          "system:authenticated");

    if (!rt || !u) {
        json_decref(obj);
        json_decref(u);
        return;
    }
    memset(&req, 0, sizeof(req));
    req.method = (char *)"POST";
    req.target = (char *)"/";
    req.path = (char *)"/";
    req.query = (char *)"";
    req.body = (char *)"";
    req.hdr_names = names;
    req.hdr_values = values;
    req.nhdrs = 1;
    kl->cur_user = u;
    create_object(kl, NULL, &req, rt, ns, obj, true);
    kl->cur_user = NULL;
    json_decref(u);
}

int kl_inflight_owned(const struct kl *kl, const char *plural, const char *owner_uid)
{
    int n = 0;
    for (const struct kl_write *w = kl->inflight; w; w = w->next) {
        size_t i;
        json_t *r;
        if (!w->create || strcmp(w->plural, plural) != 0)
            continue;
        json_array_foreach(jget2(w->obj, "metadata", "ownerReferences"), i, r)
        {
            if (strcmp(jstr_or(r, "uid", ""), owner_uid) == 0)
                n++;
        }
    }
    return n;
}

static void do_create(struct kl *kl, struct http_conn *c, const struct http_request *req,
                      const struct rtype *rt, const char *ns)
{
    json_t *obj = NULL;
    if (kl_parse_body(c, req, &obj))
        return;
    if (check_identity(c, rt, obj, ns, NULL)) {
        json_decref(obj);
        return;
    }
    if (rt->virtual_only) {
        kl_virtual_create(kl, c, req, rt, obj);
        json_decref(obj);
        return;
    }
    create_object(kl, c, req, rt, ns, obj, true);
}

/*
 * Update path shared by PUT and the patch verbs: body is the full desired object (consumed).
 * subresource "" or "status". check_rv: a stale metadata.resourceVersion is a conflict.
 */
static void update_validated(struct kl_write *w)
{
    const struct rtype *rt = write_rtype_or_respond(w);
    json_t *obj = w->obj;
    if (rt) {
        w->obj = NULL;
        finish_write(w->kl, w->c, w->req, rt, w->key, w->old, obj, 200, w->subresource,
                     w->track_fields, &w->hdrs);
    }
    kl_write_free(w);
}

static void update_mutated(struct kl_write *w)
{
    struct kl *kl = w->kl;
    const struct rtype *rt = write_rtype_or_respond(w);
    json_t *omd = json_object_get(w->old, "metadata");
    json_t *cur;

    if (!rt)
        goto fail;
    /* Someone else may have written while the webhooks ran. */
    cur = kl_store_lookup(rt->store, w->key);
    if (!cur) {
        respond_notfound(w->c, rt, w->name);
        goto fail;
    }
    if (!json_equal(jget2(cur, "metadata", "resourceVersion"),
                    json_object_get(omd, "resourceVersion"))) {
        respond_conflict(w->c, rt, w->name);
        goto fail;
    }
    if (strcmp(w->subresource, "status") != 0) {
        if (check_object(kl, w->c, w->req, rt, w->obj, &w->hdrs))
            goto fail;
        if (json_object_get(omd, "generation")) {
            json_t *a = spec_part(w->old), *b = spec_part(w->obj);
            json_int_t g = json_integer_value(json_object_get(omd, "generation"));
            if (!json_equal(a, b))
                g++;
            json_object_set_new(json_object_get(w->obj, "metadata"), "generation", json_integer(g));
            json_decref(a);
            json_decref(b);
        }
    }
    if (kind_checks(kl, w, rt))
        goto fail;
    kl_admit(w, false, update_validated);
    return;
fail:
    kl_write_free(w);
}

/*
 * Update path shared by PUT and the patch verbs: body is the full desired object (consumed).
 * subresource "" or "status". A stale metadata.resourceVersion is a conflict.
 */
static void update_object(struct kl *kl, struct http_conn *c, const struct http_request *req,
                          const struct rtype *rt, const char *ns, const char *name, json_t *old,
                          json_t *body, const char *subresource, bool track_fields)
{
    json_t *md = json_object_get(body, "metadata"), *omd = json_object_get(old, "metadata");
    const char *brv = jstr(md, "resourceVersion"), *orv = jstr(omd, "resourceVersion");
    json_t *newo = NULL, *causes = NULL;
    struct kl_write *w;
    static const char *const sysmeta[] = {"uid", "creationTimestamp", "deletionTimestamp",
                                          "deletionGracePeriodSeconds", "generation"};

    if (brv && *brv && orv && strcmp(brv, orv) != 0) {
        respond_conflict(c, rt, name);
        goto out;
    }
    if ((!brv || !*brv) && rt->crd && !subresource[0] && strcmp(req->method, "PUT") == 0) {
        causes = json_array();
        kl_cause_add(causes, "FieldValueInvalid", "metadata.resourceVersion",
                     "Invalid value: 0x0: must be specified for an update");
        respond_invalid(c, rt, name, causes);
        goto out;
    }
    if (strcmp(subresource, "status") == 0) {
        /* Only status changes through /status. */
        newo = json_deep_copy(old);
        if (!newo)
            goto oom;
        if (json_object_get(body, "status"))
            json_object_set(newo, "status", json_object_get(body, "status"));
        else
            json_object_del(newo, "status");
    } else {
        newo = json_incref(body);
        /* System metadata comes from the stored object. */
        for (size_t i = 0; i < ARRAY_LEN(sysmeta); i++) {
            json_t *v = json_object_get(omd, sysmeta[i]);
            if (v)
                json_object_set(md, sysmeta[i], v);
            else
                json_object_del(md, sysmeta[i]);
        }
        if (rt->has_status) {
            json_t *st = json_object_get(old, "status");
            if (st)
                json_object_set(newo, "status", st);
            else
                json_object_del(newo, "status");
        }
        if (kl_hooks_defaults(kl, rt, old, newo))
            goto oom;
    }
    json_object_set_new(json_object_get(newo, "metadata"), "resourceVersion",
                        json_string(orv ? orv : ""));
    w = write_new(kl, c, req, rt, ns, name, old, newo, subresource, track_fields, false);
    if (!w)
        goto oom;
    kl_admit(w, true, update_mutated);
    goto out;
oom:
    kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
out:
    json_decref(causes);
    json_decref(newo);
    json_decref(body);
}

static void do_update(struct kl *kl, struct http_conn *c, const struct http_request *req,
                      const struct rtype *rt, const char *ns, const char *name,
                      const char *subresource)
{
    json_t *obj = NULL, *old;
    char key[1024];

    if (kl_parse_body(c, req, &obj))
        return;
    if (check_identity(c, rt, obj, ns, name)) {
        json_decref(obj);
        return;
    }
    kl_key(ns, name, key, sizeof(key));
    old = kl_store_lookup(rt->store, key);
    if (!old) {
        if (kl_type_creates_on_update(rt) && !subresource[0]) {
            create_object(kl, c, req, rt, ns, obj, true);
            return;
        }
        json_decref(obj);
        respond_notfound(c, rt, name);
        return;
    }
    json_incref(old);
    update_object(kl, c, req, rt, ns, name, old, obj, subresource, true);
    json_decref(old);
}

static void do_patch(struct kl *kl, struct http_conn *c, const struct http_request *req,
                     const struct rtype *rt, const char *ns, const char *name,
                     const char *subresource)
{
    const char *ct = http_req_header(req, "content-type");
    json_t *patch = NULL, *old, *cur = NULL, *result = NULL;
    char key[1024], msg[1024];
    int rc = 0;

    if (!ct) {
        kl_respond_status(c, 415, "UnsupportedMediaType",
                          "the body of the request was in an unknown format - accepted media "
                          "types include: application/json-patch+json, "
                          "application/merge-patch+json, application/apply-patch+yaml",
                          NULL, NULL, NULL, NULL);
        return;
    }
    if (strncmp(ct, "application/strategic-merge-patch+json", 38) == 0 && rt->crd) {
        kl_respond_status(c, 415, "UnsupportedMediaType",
                          "the body of the request was in an unknown format - accepted media "
                          "types include: application/json-patch+json, "
                          "application/merge-patch+json, application/apply-patch+yaml",
                          NULL, NULL, NULL, NULL);
        return;
    }
    if (strncmp(ct, "application/json-patch+json", 27) != 0 &&
        strncmp(ct, "application/merge-patch+json", 28) != 0 &&
        strncmp(ct, "application/strategic-merge-patch+json", 38) != 0 &&
        strncmp(ct, "application/apply-patch+yaml", 28) != 0) {
        snprintf(msg, sizeof(msg),
                 "the body of the request was in an unknown format - accepted media types "
                 "include: application/json-patch+json, application/merge-patch+json, "
                 "application/apply-patch+yaml%s",
                 rt->crd ? "" : ", application/strategic-merge-patch+json");
        kl_respond_status(c, 415, "UnsupportedMediaType", msg, NULL, NULL, NULL, NULL);
        return;
    }
    if (kl_parse_body(c, req, &patch))
        return;
    kl_key(ns, name, key, sizeof(key));
    old = kl_store_lookup(rt->store, key);

    if (strncmp(ct, "application/apply-patch+yaml", 28) == 0) {
        char mgr[256], force[16] = "", now[40];
        json_t *conflicts = json_array();
        const json_t *schema = rt->crd
                                   ? json_object_get(rt->schema, "openAPIV3Schema")
                                   : openapi_gvk_schema(kl->oa, rt->group, rt->version, rt->kind);
        if (!http_query_get(req, "fieldManager", mgr, sizeof(mgr)) || !mgr[0]) {
            kl_respond_status(c, 400, "BadRequest",
                              "PATCH, application/apply-patch+yaml requests must set the "
                              "fieldManager query parameter",
                              NULL, NULL, NULL, NULL);
            json_decref(conflicts);
            goto out;
        }
        if (check_identity(c, rt, patch, ns, name)) {
            json_decref(conflicts);
            goto out;
        }
        http_query_get(req, "force", force, sizeof(force));
        kl_now_rfc3339(now, sizeof(now));
        cur = old ? kl_obj_for_version(rt, old) : NULL;
        rc = ssa_apply(cur, patch, mgr, strcmp(force, "true") == 0, rt->crd ? NULL : kl->oa, schema,
                       now, &result, conflicts, msg, sizeof(msg));
        if (rc == ERR_CONFLICT) {
            if (json_array_size(conflicts)) {
                /* ssa_apply words the summary as kube-apiserver does */
                kl_respond_status(c, 409, "Conflict", msg, rt->plural, name, rt->group, conflicts);
            } else {
                respond_conflict(c, rt, name);
            }
            json_decref(conflicts);
            goto out;
        }
        json_decref(conflicts);
        if (rc == ERR_INVALID) {
            kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
            goto out;
        }
        if (rc) {
            kl_respond_status(c, 500, "InternalError", err_str(rc), NULL, NULL, NULL, NULL);
            goto out;
        }
        if (!old) {
            create_object(kl, c, req, rt, ns, result, false);
            result = NULL;
            goto out;
        }
        update_object(kl, c, req, rt, ns, name, json_incref(old), result, subresource, false);
        json_decref(old);
        result = NULL;
        goto out;
    }

    if (!old) {
        respond_notfound(c, rt, name);
        goto out;
    }
    cur = kl_obj_for_version(rt, old);
    if (strncmp(ct, "application/json-patch+json", 27) == 0) {
        rc = patch_json(cur, patch, &result, msg, sizeof(msg));
    } else if (strncmp(ct, "application/merge-patch+json", 28) == 0) {
        rc = patch_merge(cur, patch, &result, msg, sizeof(msg));
    } else {
        rc = patch_strategic(cur, patch, kl->oa,
                             openapi_gvk_schema(kl->oa, rt->group, rt->version, rt->kind), &result,
                             msg, sizeof(msg));
    }
    if (rc) {
        if (rc == -ENOMEM)
            kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
        else
            kl_respond_status(c, 422, "Invalid", msg, rt->kind, name, rt->group, NULL);
        goto out;
    }
    if (check_identity(c, rt, result, ns, name))
        goto out;
    update_object(kl, c, req, rt, ns, name, json_incref(old), result, subresource, true);
    json_decref(old);
    result = NULL;
out:
    json_decref(result);
    json_decref(cur);
    json_decref(patch);
}

/*
 * Delete one stored object, honouring finalizers and graceful pod deletion. grace is the
 * DeleteOptions gracePeriodSeconds (-1: the pod's terminationGracePeriodSeconds). A pod bound to a
 * node is only marked (deletionTimestamp, deletionGracePeriodSeconds): its kubelet stops it and
 * deletes it with grace 0. Returns the state to report (new ref).
 */
json_t *kl_delete_object(struct kl *kl, const struct rtype *rt, const char *key, json_t *old,
                         bool dry_run, long grace, int *rcp)
{
    json_t *md = json_object_get(old, "metadata");
    bool finalizers = json_array_size(json_object_get(md, "finalizers")) > 0;
    bool graceful = kl_hooks_delete_pending(kl, rt, old, grace);
    int rc = 0;

    *rcp = 0;
    if (finalizers || graceful) {
        json_t *n;
        char now[40];
        long period =
            grace >= 0
                ? grace
                : (long)json_integer_value(jget2(old, "spec", "terminationGracePeriodSeconds"));
        if (grace < 0 && !json_is_integer(jget2(old, "spec", "terminationGracePeriodSeconds")))
            period = 30;
        if (!graceful)
            period = 0;
        if (json_object_get(md, "deletionTimestamp")) {
            /* A delete with grace 0 of an object kept by finalizers: gone once they are. */
            if (grace != 0 || !finalizers || dry_run ||
                json_integer_value(json_object_get(md, "deletionGracePeriodSeconds")) == 0)
                return json_incref(old);
            n = json_deep_copy(old);
            if (!n) {
                *rcp = -ENOMEM;
                return NULL;
            }
            json_object_set_new(json_object_get(n, "metadata"), "deletionGracePeriodSeconds",
                                json_integer(0));
            *rcp = kl_commit(kl, rt->store, key, json_incref(n), NULL);
            return n;
        }
        n = json_deep_copy(old);
        if (!n) {
            *rcp = -ENOMEM;
            return NULL;
        }
        kl_now_rfc3339(now, sizeof(now));
        json_object_set_new(json_object_get(n, "metadata"), "deletionTimestamp", json_string(now));
        json_object_set_new(json_object_get(n, "metadata"), "deletionGracePeriodSeconds",
                            json_integer(period));
        if (dry_run)
            return n;
        rc = kl_commit(kl, rt->store, key, json_incref(n), NULL);
        *rcp = rc;
        kl_hooks_after_commit(kl, rt, old, n);
        return n;
    }
    json_incref(old);
    if (!dry_run) {
        rc = kl_commit(kl, rt->store, key, NULL, NULL);
        *rcp = rc;
        if (!rc)
            kl_hooks_after_delete(kl, rt, old);
    }
    return old;
}

/*
 * DeleteOptions propagationPolicy (query or body; orphanDependents: true is Orphan): Foreground
 * and Orphan hand the object to the garbage collector through the foregroundDeletion and orphan
 * finalizers (controllers.c). Background (the default) leaves dependents to it once the owner is
 * gone. Returns the finalizer to add ("" for none), or NULL after answering a bad value.
 */
static const char *propagation_finalizer(struct http_conn *c, const struct http_request *req,
                                         const json_t *opts)
{
    char q[32] = "", msg[400], cause[300];
    const char *p = jstr(opts, "propagationPolicy");
    json_t *causes;

    if (!p && http_query_get(req, "propagationPolicy", q, sizeof(q)) && q[0])
        p = q;
    if (!p && json_is_true(json_object_get(opts, "orphanDependents")))
        p = "Orphan";
    if (!p || strcmp(p, "Background") == 0)
        return "";
    if (strcmp(p, "Foreground") == 0)
        return "foregroundDeletion";
    if (strcmp(p, "Orphan") == 0)
        return "orphan";
    snprintf(cause, sizeof(cause),
             "Unsupported value: \"%.100s\": supported values: \"Foreground\", \"Background\", "
             "\"Orphan\", \"nil\"",
             p);
    snprintf(msg, sizeof(msg), "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: %s",
             cause);
    causes = json_pack("[{s:s,s:s,s:s}]", "reason", "FieldValueNotSupported", "message", cause,
                       "field", "propagationPolicy");
    kl_respond_status(c, 422, "Invalid", msg, "DeleteOptions", "", "meta.k8s.io", causes);
    json_decref(causes);
    return NULL;
}

static void do_delete(struct kl *kl, struct http_conn *c, const struct http_request *req,
                      const struct rtype *rt, const char *ns, const char *name)
{
    const char *fin;
    char key[1024];
    json_t *old, *res, *opts = NULL;
    long grace = -1;
    int rc;

    kl_key(ns, name, key, sizeof(key));
    old = kl_store_lookup(rt->store, key);
    if (!old) {
        respond_notfound(c, rt, name);
        return;
    }
    {
        char g[32];
        if (http_query_get(req, "gracePeriodSeconds", g, sizeof(g)) && g[0])
            grace = atol(g);
    }
    if (req->body_len) {
        json_error_t jerr;
        opts = json_loadb(req->body, req->body_len, 0, &jerr);
        if (json_is_integer(json_object_get(opts, "gracePeriodSeconds")))
            grace = (long)json_integer_value(json_object_get(opts, "gracePeriodSeconds"));
        if (opts) {
            json_t *pre = json_object_get(opts, "preconditions");
            const char *puid = jstr(pre, "uid"), *prv = jstr(pre, "resourceVersion");
            json_t *md = json_object_get(old, "metadata");
            if ((puid && strcmp(puid, jstr_or(md, "uid", "")) != 0) ||
                (prv && strcmp(prv, jstr_or(md, "resourceVersion", "")) != 0)) {
                char msg[1024];
                snprintf(msg, sizeof(msg),
                         "Operation cannot be fulfilled on %s%s%s \"%s\": Precondition failed: "
                         "%s in precondition: %s, %s in object meta: %s",
                         rt->plural, rt->group[0] ? "." : "", rt->group, name,
                         puid ? "UID" : "ResourceVersion", puid ? puid : prv,
                         puid ? "UID" : "ResourceVersion",
                         jstr_or(md, puid ? "uid" : "resourceVersion", ""));
                kl_respond_status(c, 409, "Conflict", msg, rt->plural, name, rt->group, NULL);
                json_decref(opts);
                return;
            }
        }
    }
    fin = propagation_finalizer(c, req, opts);
    if (!fin) {
        json_decref(opts);
        return;
    }
    if (*fin && strcmp(rt->plural, "namespaces") != 0 &&
        !json_object_get(json_object_get(old, "metadata"), "deletionTimestamp")) {
        /* The garbage collector's finalizer, added as the deletion starts. */
        json_t *fins;
        old = json_deep_copy(old);
        fins = json_object_get(json_object_get(old, "metadata"), "finalizers");
        if (!json_is_array(fins)) {
            fins = json_array();
            json_object_set_new(json_object_get(old, "metadata"), "finalizers", fins);
        }
        json_array_append_new(fins, json_string(fin));
    } else {
        json_incref(old);
    }
    res = kl_delete_object(kl, rt, key, old, is_dry_run(req), grace, &rc);
    json_decref(old);
    if (!res || rc) {
        kl_respond_status(c, 500, "InternalError", err_str(rc), NULL, NULL, NULL, NULL);
    } else {
        send_object(kl, c, req, rt, 200, res, NULL);
    }
    json_decref(res);
    json_decref(opts);
}

static void do_deletecollection(struct kl *kl, struct http_conn *c, const struct http_request *req,
                                const struct rtype *rt, const char *ns)
{
    struct selector *labels = NULL, *fields = NULL;
    bool gone;
    json_t *all, *deleted = json_array(), *o, *list;
    size_t i;
    char av[300], rvs[32];

    if (parse_selectors(c, req, rt, &labels, &fields)) {
        json_decref(deleted);
        return;
    }
    all = kl_store_snapshot(kl, rt->store, 0, &gone);
    json_array_foreach(all, i, o)
    {
        json_t *md = json_object_get(o, "metadata"), *res;
        char key[1024];
        int rc;
        if (ns && strcmp(jstr_or(md, "namespace", ""), ns) != 0)
            continue;
        if (!selector_match(labels, o) || !selector_match(fields, o))
            continue;
        kl_key(jstr(md, "namespace"), jstr_or(md, "name", ""), key, sizeof(key));
        res = kl_delete_object(kl, rt, key, o, is_dry_run(req), -1, &rc);
        if (res)
            json_array_append_new(deleted, kl_obj_for_version(rt, res));
        json_decref(res);
    }
    kl_api_version(rt, av, sizeof(av));
    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)kl->rv);
    list = json_pack("{s:s,s:s,s:{s:s},s:o}", "kind", rt->list_kind, "apiVersion", av, "metadata",
                     "resourceVersion", rvs, "items", deleted);
    kl_respond_json(c, 200, list, NULL);
    json_decref(list);
    json_decref(all);
    selector_free(labels);
    selector_free(fields);
}

/* ---------------------------------------------------------------- routing */

static int split_path(char *path, char **segs, int max)
{
    int n = 0;
    char *save = NULL, *tok;
    for (tok = strtok_r(path, "/", &save); tok && n < max; tok = strtok_r(NULL, "/", &save))
        segs[n++] = tok;
    return tok ? -1 : n;
}

static void handle_version(struct http_conn *c)
{
    static const char body[] =
        "{\"major\":\"1\",\"minor\":\"33\",\"emulationMajor\":\"1\",\"emulationMinor\":\"33\","
        "\"minCompatibilityMajor\":\"1\",\"minCompatibilityMinor\":\"32\","
        "\"gitVersion\":\"v1.33.0\",\"gitCommit\":\"kubelite\",\"gitTreeState\":\"clean\","
        "\"buildDate\":\"2025-04-23T00:00:00Z\",\"goVersion\":\"go1.24.2\",\"compiler\":\"gc\","
        "\"platform\":\"linux/amd64\"}";
    http_respond(c, 200, "application/json", body, sizeof(body) - 1, NULL);
}

/* ---------------------------------------------------------------- fault injection */

void kl_faults_init(struct kl_faults *f, uint64_t seed)
{
    memset(f, 0, sizeof(*f));
    f->seed = seed;
    f->rng = seed;
}

/* splitmix64: small, and the same sequence on every platform for a given seed. */
static uint64_t fault_next(struct kl_faults *f)
{
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

bool kl_fault_roll(struct kl *kl, double p)
{
    if (p <= 0)
        return false;
    return (double)(fault_next(&kl->faults) >> 11) * 0x1.0p-53 < p;
}

/*
 * The error fault: answer a resource request the way an overloaded or failing kube-apiserver
 * does, without serving it. True when it answered.
 */
static bool fault_error(struct kl *kl, struct http_conn *c, const struct http_request *req)
{
    json_t *st;

    if (!kl_fault_roll(kl, kl->faults.error))
        return false;
    kl->faults.errors++;
    if (kl_fault_roll(kl, 0.5)) {
        log_debug("msg=\"injected fault\" fault=error code=429 method=%s target=\"%s\"",
                  req->method, req->target);
        st = json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:{s:i},s:i}", "kind", "Status", "apiVersion",
                       "v1", "metadata", "status", "Failure", "message",
                       "Too many requests, please try again later.", "reason", "TooManyRequests",
                       "details", "retryAfterSeconds", 1, "code", 429);
        if (st)
            kl_respond_json(c, 429, st, "Retry-After: 1\r\n");
        else
            http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL);
        json_decref(st);
    } else {
        log_debug("msg=\"injected fault\" fault=error code=500 method=%s target=\"%s\"",
                  req->method, req->target);
        kl_respond_status(c, 500, "InternalError",
                          "Internal error occurred: injected fault (kubelite --fault-error)", NULL,
                          NULL, NULL, NULL);
    }
    return true;
}

static bool is_admin(const json_t *user)
{
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(user, "groups"), i, g)
    {
        if (strcmp(json_string_value(g) ? json_string_value(g) : "", "system:masters") == 0)
            return true;
    }
    return false;
}

/* Read a probability member of body into *p; false (and *msg) when present and not in [0, 1]. */
static bool fault_prob(const json_t *body, const char *name, double *p, char *msg, size_t msglen)
{
    const json_t *v = json_object_get(body, name);
    if (!v)
        return true;
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1) {
        snprintf(msg, msglen, "%s: must be a number from 0 to 1", name);
        return false;
    }
    *p = json_number_value(v);
    return true;
}

/*
 * /kubelite/faults (admin only, never faulted itself): GET shows the settings and what was
 * injected so far; PUT with a JSON object holding any of dropWatch, expire, error sets those
 * probabilities ({"dropWatch":0,"expire":0,"error":0} switches every fault off).
 */
static void faults_handle(struct kl *kl, struct http_conn *c, const struct http_request *req,
                          const json_t *user)
{
    struct kl_faults *f = &kl->faults;
    json_t *out;
    char *body;

    if (!is_admin(user)) {
        kl_respond_status(c, 403, "Forbidden", "only the admin may change faults", NULL, NULL, NULL,
                          NULL);
        return;
    }
    if (strcmp(req->method, "PUT") == 0) {
        json_error_t jerr;
        json_t *in = json_loadb(req->body, req->body_len, 0, &jerr);
        double drop = f->drop_watch, expire = f->expire, error = f->error;
        char msg[200];

        if (!json_is_object(in)) {
            kl_respond_status(c, 400, "BadRequest", "the body must be a JSON object", NULL, NULL,
                              NULL, NULL);
            json_decref(in);
            return;
        }
        if (!fault_prob(in, "dropWatch", &drop, msg, sizeof(msg)) ||
            !fault_prob(in, "expire", &expire, msg, sizeof(msg)) ||
            !fault_prob(in, "error", &error, msg, sizeof(msg))) {
            kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
            json_decref(in);
            return;
        }
        json_decref(in);
        f->drop_watch = drop;
        f->expire = expire;
        f->error = error;
        log_info("msg=\"faults set\" drop_watch=%g expire=%g error=%g", drop, expire, error);
    } else if (strcmp(req->method, "GET") != 0) {
        kl_respond_status(c, 405, "MethodNotAllowed", "use GET or PUT", NULL, NULL, NULL, NULL);
        return;
    }
    out = json_pack("{s:I,s:f,s:f,s:f,s:{s:I,s:I,s:I}}", "seed", (json_int_t)f->seed, "dropWatch",
                    f->drop_watch, "expire", f->expire, "error", f->error, "injected", "watchDrops",
                    (json_int_t)f->drops, "expires", (json_int_t)f->expires, "errors",
                    (json_int_t)f->errors);
    /* Probabilities as given ("0.2", not jansson's default "0.20000000000000001"). */
    body = out ? json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(out);
    if (!body) {
        http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL);
        return;
    }
    http_respond(c, 200, "application/json", body, strlen(body), NULL);
    free(body);
}

/*
 * Who is asking: the admin token (system:masters), a ServiceAccount token, or anyone over
 * plain HTTP (kubelite --insecure). Returns a TokenReview-style user object (new ref) or NULL.
 */
static json_t *authenticate(struct kl *kl, const struct http_request *req)
{
    const char *auth = http_req_header(req, "authorization");
    json_t *st, *user;

    if (!kl->admin_token ||
        (auth && strncmp(auth, "Bearer ", 7) == 0 && strcmp(auth + 7, kl->admin_token) == 0))
        return json_pack("{s:s,s:[s,s]}", "username", "kubelite-admin", "groups", "system:masters",
                         "system:authenticated");
    if (!auth || strncmp(auth, "Bearer ", 7) != 0)
        return NULL;
    st = kl_token_review(kl, auth + 7, NULL);
    user = json_is_true(json_object_get(st, "authenticated"))
               ? json_incref(json_object_get(st, "user"))
               : NULL;
    json_decref(st);
    return user;
}

static const char *verb_of(const char *method, bool named, bool watch)
{
    if (strcmp(method, "GET") == 0)
        return watch ? "watch" : named ? "get" : "list";
    if (strcmp(method, "POST") == 0)
        return "create";
    if (strcmp(method, "PUT") == 0)
        return "update";
    if (strcmp(method, "PATCH") == 0)
        return "patch";
    if (strcmp(method, "DELETE") == 0)
        return named ? "delete" : "deletecollection";
    return "unknown";
}

void kl_handle(void *arg, struct http_conn *c, const struct http_request *req)
{
    struct kl *kl = arg;
    char pathbuf[4096];
    json_t *user = NULL;
    char *segs[MAX_SEGS];
    int n, i = 0;
    const char *group, *version, *ns = NULL, *plural, *name = NULL, *sub = "";
    bool watch_prefix = false;
    struct rtype *rt;
    const char *m = req->method;

    log_debug("msg=request method=%s target=\"%s\"", req->method, req->target);
    if (strcmp(req->path, "/healthz") == 0 || strcmp(req->path, "/livez") == 0 ||
        strcmp(req->path, "/readyz") == 0) {
        http_respond(c, 200, "text/plain", "ok", 2, NULL);
        return;
    }
    user = authenticate(kl, req);
    if (!user) {
        kl_respond_status(c, 401, "Unauthorized", "Unauthorized", NULL, NULL, NULL, NULL);
        return;
    }
    kl->cur_user = user;
    if (strcmp(req->path, "/kubelite/faults") == 0) {
        faults_handle(kl, c, req, user);
        goto done;
    }
    snprintf(pathbuf, sizeof(pathbuf), "%s", req->path);
    n = split_path(pathbuf, segs, MAX_SEGS);
    if (n < 0) {
        kl_respond_status(c, 404, "NotFound", "the server could not find the requested resource",
                          NULL, NULL, NULL, NULL);
        goto done;
    }
    if (n == 1 && strcmp(segs[0], "version") == 0) {
        handle_version(c);
        goto done;
    }
    if (n >= 1 && strcmp(segs[0], "openapi") == 0) {
        kl_openapi_handle(kl, c, req, segs, n);
        goto done;
    }
    if (n == 0 || (strcmp(segs[0], "api") != 0 && strcmp(segs[0], "apis") != 0)) {
        kl_respond_status(c, 404, "NotFound", "the server could not find the requested resource",
                          NULL, NULL, NULL, NULL);
        goto done;
    }
    /* discovery: /api, /api/v1, /apis, /apis/g, /apis/g/v */
    if ((strcmp(segs[0], "api") == 0 && n <= 2) || (strcmp(segs[0], "apis") == 0 && n <= 3)) {
        kl_discovery_handle(kl, c, req, segs, n);
        goto done;
    }
    if (strcmp(segs[0], "api") == 0) {
        group = "";
        version = segs[1];
        i = 2;
    } else {
        group = segs[1];
        version = segs[2];
        i = 3;
    }
    if (i < n && strcmp(segs[i], "watch") == 0) {
        watch_prefix = true;
        i++;
    }
    if (i >= n)
        goto notfound;
    if (strcmp(segs[i], "namespaces") == 0 && n - i >= 3 &&
        (rt = kl_rtype_find(kl, group, version, segs[i + 2])) && rt->namespaced) {
        ns = segs[i + 1];
        plural = segs[i + 2];
        if (n - i >= 4)
            name = segs[i + 3];
        if (n - i >= 5)
            sub = segs[i + 4];
        if (n - i > 5)
            goto notfound;
    } else {
        plural = segs[i];
        if (n - i >= 2)
            name = segs[i + 1];
        if (n - i >= 3)
            sub = segs[i + 2];
        if (n - i > 3)
            goto notfound;
    }
    rt = kl_rtype_find(kl, group, version, plural);
    if (!rt || (ns && !rt->namespaced))
        goto notfound;
    /* Namespaced objects are addressed inside their namespace; only reads span all of them. */
    if (rt->namespaced && !ns && (name || strcmp(m, "GET") != 0))
        goto notfound;
    if (sub[0] && !kl_subresource_known(rt, sub))
        goto notfound;
    {
        char w[16], msg[1200];
        bool watch =
            watch_prefix || (strcmp(m, "GET") == 0 && http_query_get(req, "watch", w, sizeof(w)) &&
                             (strcmp(w, "true") == 0 || strcmp(w, "1") == 0));
        struct kl_authz az = {jstr_or(user, "username", ""),
                              json_object_get(user, "groups"),
                              verb_of(m, name != NULL, watch),
                              group,
                              plural,
                              sub,
                              ns,
                              name,
                              NULL};
        char fs[512], one[512];
        /*
         * Like kube-apiserver: a list or watch narrowed to one object by
         * fieldSelector=metadata.name=X is authorized as a request for the name X, so
         * resourceNames rules apply to it.
         */
        if (!name && http_query_get(req, "fieldSelector", fs, sizeof(fs)) &&
            strncmp(fs, "metadata.name=", 14) == 0 && !strchr(fs + 14, ',') && fs[14] != '=') {
            snprintf(one, sizeof(one), "%s", fs + 14);
            az.name = one;
        }
        if (!kl_authorize(kl, &az, msg, sizeof(msg))) {
            kl_respond_status(c, 403, "Forbidden", msg, plural, name, group, NULL);
            goto done;
        }
        /*
         * kube-apiserver (AuthorizePodWebsocketUpgradeCreatePermission, on from 1.31): the
         * WebSocket upgrade of pods/portforward, exec and attach is a GET, and needs `create`
         * on the subresource as well as `get`, as the SPDY upgrade (a POST) does.
         */
        if (strcmp(sub, "portforward") == 0 && strcmp(m, "GET") == 0) {
            az.verb = "create";
            if (!kl_authorize(kl, &az, msg, sizeof(msg))) {
                kl_respond_status(c, 403, "Forbidden", msg, plural, name, group, NULL);
                goto done;
            }
        }
    }
    if (fault_error(kl, c, req))
        goto done;
    if (sub[0] && strcmp(sub, "status") != 0) {
        kl_subresource_handle(kl, c, req, rt, ns, name, sub);
        goto done;
    }
    if (watch_prefix && strcmp(m, "GET") != 0)
        goto notfound;
    if (strcmp(m, "GET") == 0) {
        char w[16];
        bool watch = watch_prefix || (http_query_get(req, "watch", w, sizeof(w)) &&
                                      (strcmp(w, "true") == 0 || strcmp(w, "1") == 0));
        if (!(rt->verbs & V_GET))
            goto notallowed;
        if (name && !watch) {
            do_get(kl, c, req, rt, ns, name);
        } else if (watch) {
            if (name) {
                /* /watch/.../name: a watch with a field selector on the name */
                kl_watch_start(kl, c, req, rt, ns);
            } else {
                kl_watch_start(kl, c, req, rt, ns);
            }
        } else {
            do_list(kl, c, req, rt, ns);
        }
    } else if (strcmp(m, "POST") == 0) {
        if (name || !(rt->verbs & V_CREATE))
            goto notallowed;
        do_create(kl, c, req, rt, ns);
    } else if (strcmp(m, "PUT") == 0) {
        if (!name || !(rt->verbs & V_UPDATE))
            goto notallowed;
        do_update(kl, c, req, rt, ns, name, sub);
    } else if (strcmp(m, "PATCH") == 0) {
        if (!name || !(rt->verbs & V_PATCH))
            goto notallowed;
        do_patch(kl, c, req, rt, ns, name, sub);
    } else if (strcmp(m, "DELETE") == 0) {
        if (!(rt->verbs & V_DELETE))
            goto notallowed;
        if (name)
            do_delete(kl, c, req, rt, ns, name);
        else
            do_deletecollection(kl, c, req, rt, ns);
    } else {
        goto notallowed;
    }
    goto done;
notfound:
    kl_respond_status(c, 404, "NotFound", "the server could not find the requested resource", NULL,
                      NULL, NULL, NULL);
    goto done;
notallowed:
    kl_respond_status(c, 405, "MethodNotAllowed",
                      "the server does not allow this method on the requested resource", NULL, NULL,
                      NULL, NULL);
done:
    kl->cur_user = NULL;
    json_decref(user);
}
