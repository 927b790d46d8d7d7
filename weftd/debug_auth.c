/*
 * debug_auth.c - who may read weftd's /debug/ endpoints on the admin port.
 *
 * /debug/config/<ns>/<pod> shows every pod's identity, policies and routes, and the admin port
 * is reachable by any pod through weftd's Service. So, as the kubelet and the API server do for
 * their own debug handlers, a /debug/ request must carry a bearer token that the API server
 * authenticates (TokenReview, the API server's own audience) and authorizes for the
 * non-resource URL /debug/<endpoint> with verb get (SubjectAccessReview). It works the same
 * through the Service, a port-forward or loopback. /metrics, /healthz and /readyz stay open.
 *
 * At most DEBUG_REVIEWS requests are being authorized at once (each costs the API server two
 * calls); more get 429 at once. Nothing is cached: debug requests are rare and every one is
 * checked against the current RBAC.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "weftd/weftd_int.h"

#define DEBUG_REVIEWS 16

static const struct kube_resource res_sars = {"authorization.k8s.io", "v1", "subjectaccessreviews",
                                              false};

struct debug_req {
    struct weftd *d;
    struct http_conn *conn;   /* NULL once the peer went away */
    struct http_request *req; /* a copy, for serve */
    struct kube_call *kc;     /* the review in flight */
    weftd_debug_fn *serve;
    char *token;    /* wiped when freed */
    char url[64];   /* the non-resource URL authorized: /debug/<endpoint> */
    char user[256]; /* for the log */
};

static void debug_req_free(struct debug_req *r)
{
    if (r->token) {
        OPENSSL_cleanse(r->token, strlen(r->token));
        free(r->token);
    }
    http_request_free(r->req);
    free(r);
}

static void respond_status(struct http_conn *c, int code, const char *reason, const char *msg,
                           const char *extra)
{
    json_t *st =
        json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion", "v1",
                  "metadata", "status", "Failure", "message", msg, "reason", reason, "code", code);
    char *s = st ? json_dumps(st, JSON_COMPACT) : NULL;

    if (s)
        http_respond(c, code, "application/json", s, strlen(s), extra);
    else
        http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL);
    free(s);
    json_decref(st);
}

/* Answer (when the peer is still there), count, free. */
static void finish(struct debug_req *r, int code, const char *reason, const char *msg)
{
    struct weftd *d = r->d;

    d->debug_reviews--;
    if (r->conn) {
        if (code == 200) {
            d->m.debug_allowed++;
            r->serve(d, r->conn, r->req);
        } else {
            if (code == 401)
                d->m.debug_unauthenticated++;
            else if (code == 403)
                d->m.debug_forbidden++;
            else
                d->m.debug_unavailable++;
            respond_status(r->conn, code, reason, msg,
                           code == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL);
        }
        weftd_http_kick(d, d->admin);
    }
    debug_req_free(r);
}

static void req_closed(void *arg, struct http_conn *c)
{
    struct debug_req *r = arg;

    (void)c;
    r->conn = NULL;
    if (r->kc) {
        kube_call_cancel(r->kc);
        r->kc = NULL;
        r->d->debug_reviews--;
        debug_req_free(r);
    }
}

static void sar_done(void *arg, int err, long status, json_t *body)
{
    struct debug_req *r = arg;
    const json_t *st = json_object_get(body, "status");
    char msg[512];

    r->kc = NULL;
    if (err || status < 200 || status > 299) {
        log_warn("msg=\"SubjectAccessReview failed\" error=%s status=%ld message=\"%s\"",
                 err_str(err), status, kube_status_message(body));
        snprintf(msg, sizeof(msg), "cannot authorize the request: %s",
                 err ? err_str(err) : kube_status_message(body));
        finish(r, 503, "ServiceUnavailable", msg);
        return;
    }
    if (!json_is_true(json_object_get(st, "allowed"))) {
        const char *why = json_string_value(json_object_get(st, "reason"));
        log_info("msg=\"debug request forbidden\" user=\"%s\" path=%s", r->user, r->url);
        snprintf(msg, sizeof(msg), "User \"%s\" cannot get path \"%s\"%s%s", r->user, r->url,
                 why && *why ? ": " : "", why && *why ? why : "");
        finish(r, 403, "Forbidden", msg);
        return;
    }
    log_info("msg=\"debug request\" user=\"%s\" path=%s", r->user, r->req->path);
    finish(r, 200, NULL, NULL);
}

/* The token is someone's: may they get the URL? */
static int sar_start(struct debug_req *r, const json_t *user)
{
    json_t *spec, *sar;
    char path[256];
    int rc;

    spec =
        json_pack("{s:s,s:{s:s,s:s}}", "user", json_string_value(json_object_get(user, "username")),
                  "nonResourceAttributes", "path", r->url, "verb", "get");
    if (!spec)
        return -ENOMEM;
    /* groups, uid and extra as the TokenReview gave them: RBAC may grant by group */
    if (json_object_get(user, "groups"))
        json_object_set(spec, "groups", json_object_get(user, "groups"));
    if (json_object_get(user, "uid"))
        json_object_set(spec, "uid", json_object_get(user, "uid"));
    if (json_object_get(user, "extra"))
        json_object_set(spec, "extra", json_object_get(user, "extra"));
    sar = json_pack("{s:s,s:s,s:o}", "apiVersion", "authorization.k8s.io/v1", "kind",
                    "SubjectAccessReview", "spec", spec);
    if (!sar)
        return -ENOMEM;
    rc = kube_path(&res_sars, NULL, NULL, NULL, path, sizeof(path));
    if (!rc)
        rc = kube_request(r->d->kube, "POST", path, sar, NULL, sar_done, r, &r->kc);
    json_decref(sar);
    return rc;
}

static void token_reviewed(void *arg, int err, long status, json_t *body)
{
    struct debug_req *r = arg;
    const json_t *st = json_object_get(body, "status");
    const json_t *user = json_object_get(st, "user");
    const char *name = json_string_value(json_object_get(user, "username"));
    char msg[512];
    int rc;

    r->kc = NULL;
    if (err || status < 200 || status > 299) {
        log_warn("msg=\"TokenReview failed\" error=%s status=%ld message=\"%s\"", err_str(err),
                 status, kube_status_message(body));
        snprintf(msg, sizeof(msg), "cannot review the token: %s",
                 err ? err_str(err) : kube_status_message(body));
        finish(r, 503, "ServiceUnavailable", msg);
        return;
    }
    if (!json_is_true(json_object_get(st, "authenticated")) || !name) {
        const char *e = json_string_value(json_object_get(st, "error"));
        finish(r, 401, "Unauthorized", e && *e ? e : "token not authenticated");
        return;
    }
    snprintf(r->user, sizeof(r->user), "%s", name);
    rc = sar_start(r, user);
    if (rc) {
        snprintf(msg, sizeof(msg), "cannot authorize the request: %s", err_str(rc));
        finish(r, 503, "ServiceUnavailable", msg);
    }
}

static int review_start(struct debug_req *r)
{
    return weftd_token_review(r->d, r->token, NULL, token_reviewed, r, &r->kc);
}

void weftd_debug_authorize(struct weftd *d, struct http_conn *c, const struct http_request *req,
                           weftd_debug_fn *serve)
{
    const char *token = weftd_bearer_token(req), *end;
    struct debug_req *r = NULL;
    size_t n;
    int rc;

    if (!token) {
        d->m.debug_unauthenticated++;
        respond_status(c, 401, "Unauthorized",
                       "/debug/ needs Authorization: Bearer <token> of a user allowed to get the "
                       "non-resource URL (kubectl create token, or your own)",
                       "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if (!weftd_token_plausible(token)) {
        d->m.debug_unauthenticated++;
        respond_status(c, 401, "Unauthorized", "malformed bearer token",
                       "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if (d->debug_reviews >= DEBUG_REVIEWS) {
        d->m.debug_unavailable++;
        respond_status(c, 429, "TooManyRequests", "too many debug requests being authorized",
                       "Retry-After: 1\r\n");
        return;
    }
    r = calloc(1, sizeof(*r));
    if (!r || !(r->token = strdup(token)) || !(r->req = http_request_dup(req))) {
        rc = -ENOMEM;
        goto out;
    }
    r->d = d;
    r->conn = c;
    r->serve = serve;
    /* /debug/<endpoint>[/...] -> /debug/<endpoint> */
    end = strchr(req->path + 7, '/');
    n = end ? (size_t)(end - req->path) : strlen(req->path);
    snprintf(r->url, sizeof(r->url), "%.*s", (int)(n < sizeof(r->url) ? n : sizeof(r->url) - 1),
             req->path);
    rc = review_start(r);
    if (!rc) {
        d->debug_reviews++;
        http_defer(c, req_closed, r);
        return;
    }
out : {
    char msg[128];
    snprintf(msg, sizeof(msg), "cannot review the token: %s", err_str(rc));
    d->m.debug_unavailable++;
    respond_status(c, 503, "ServiceUnavailable", msg, NULL);
}
    if (r)
        debug_req_free(r);
}
