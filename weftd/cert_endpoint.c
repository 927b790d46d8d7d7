/*
 * cert_endpoint.c - POST /v1/certificates: workload certificates from weftd's CA.
 *
 * On --certs-listen (TLS, a serving certificate for weftd.<ns>.svc from serving_cert.c): the
 * bearer token goes to TokenReview (audience weft); the authenticated
 * system:serviceaccount:<ns>:<sa> is the only identity the leaf may carry, and the pod a bound
 * token names (the review's extra pod-name/pod-uid) goes into the leaf's pod extension, so a
 * certificate proves a pod (the config stream relies on it, stream.c). At most
 * REVIEW_WINDOW reviews are in flight (the rest wait in a FIFO), so a burst reuses a few warm
 * connections to the API server; the CSR check and signing then run on libuv's worker pool
 * (struct ca allows issuing from any thread; each job holds the CA and its request through
 * core/hold.h),
 * so every core issues. Tokens are wiped once sent and never logged.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "weftd/weftd_int.h"

#define CERTS_AUDIENCE "weft"
/* TokenReviews in flight at once. More requests wait in a FIFO: a burst of N requests then
 * costs at most REVIEW_WINDOW connections (TLS handshakes) to the API server instead of N,
 * and they stay open for reuse (see docs/ca.md, "Load"). */
#ifndef REVIEW_WINDOW
#define REVIEW_WINDOW 32
#endif
/* Requests waiting for a review slot beyond this are answered 503 with Retry-After. */
#define REVIEW_QUEUE_MAX 10000

struct cert_req;

/*
 * Issuance on libuv's worker pool. CSR verification (an ECDSA verify, about three signs) and
 * signing run on workers so that every core issues while the loop thread keeps serving TLS
 * and HTTP.
 */
struct issue_job {
    uv_work_t w;
    struct cert_req *r;
    struct ca *ca;
    struct hold *ca_hold;
    struct ca_identity id;
    char ns[256], sa[256];
    char pod_name[CA_POD_NAME_MAX + 1], pod_uid[CA_POD_UID_MAX + 1]; /* "": not bound to a pod */
    long ttl;
    int rc;
    struct diag diag;
    struct ca_leaf leaf;
};

/* A certificate request: waiting for a TokenReview slot, reviewing, or issuing. */
struct cert_req {
    struct weftd_certs *s;
    struct hold hold;       /* the request's own (dropped when answered or gone), the job's */
    struct http_conn *conn; /* NULL once the peer went away (the job still holds r) */
    struct kube_call *kc;   /* TokenReview in flight */
    struct issue_job *job;  /* issuance in flight */
    struct cert_req *next;  /* in the review queue */
    bool queued;
    char *token; /* wiped when freed */
    char *csr;
    size_t csr_len;
    uint64_t t0; /* uv_hrtime at arrival */
};

struct weftd_certs {
    struct weftd *d;
    struct weftd_serving_cert *tls;
    int reviews;                      /* TokenReviews in flight, at most REVIEW_WINDOW */
    struct cert_req *queue, **q_tail; /* requests waiting for a review slot, FIFO */
    size_t queued;
    bool stopping;
};

static void respond_json(struct http_conn *c, int status, json_t *obj, const char *extra)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (s)
        http_respond(c, status, "application/json", s, strlen(s), extra);
    else
        http_respond(c, 500, "application/json", "{\"error\":\"out of memory\"}", 25, NULL);
    free(s);
    json_decref(obj);
}

static void respond_error(struct http_conn *c, int status, const char *reason, const char *msg)
{
    respond_json(c, status, json_pack("{s:s,s:s}", "error", msg, "reason", reason),
                 status == 503 ? "Retry-After: 5\r\n" : NULL);
}

static void cert_req_free(struct cert_req *r)
{
    if (r->token) {
        OPENSSL_cleanse(r->token, strlen(r->token));
        free(r->token);
    }
    free(r->csr);
    free(r);
}

static void cert_req_release(void *obj)
{
    cert_req_free(obj);
}

static void review_pump(struct weftd_certs *s);

/* The peer went away (or the server stops): drop the request wherever it is. */
static void cert_req_closed(void *arg, struct http_conn *c)
{
    struct cert_req *r = arg;
    struct weftd_certs *s = r->s;
    (void)c;
    r->conn = NULL;
    if (r->queued) {
        struct cert_req **pp = &s->queue;
        while (*pp != r)
            pp = &(*pp)->next;
        *pp = r->next;
        if (s->q_tail == &r->next)
            s->q_tail = pp;
        s->queued--;
    }
    if (r->kc) {
        kube_call_cancel(r->kc);
        s->reviews--;
        review_pump(s);
    }
    hold_drop(&r->hold); /* freed now, or by issue_after when a worker still uses r */
}

/* "system:serviceaccount:<ns>:<sa>" -> ns, sa. */
static bool parse_sa_user(const char *user, char *ns, size_t nslen, char *sa, size_t salen)
{
    static const char prefix[] = "system:serviceaccount:";
    const char *p, *colon;

    if (!user || strncmp(user, prefix, sizeof(prefix) - 1) != 0)
        return false;
    p = user + sizeof(prefix) - 1;
    colon = strchr(p, ':');
    if (!colon || colon == p || !colon[1] || strchr(colon + 1, ':') ||
        (size_t)(colon - p) >= nslen || strlen(colon + 1) >= salen)
        return false;
    memcpy(ns, p, (size_t)(colon - p));
    ns[colon - p] = '\0';
    strcpy(sa, colon + 1);
    return true;
}

static bool audience_ok(const json_t *status)
{
    const json_t *auds = json_object_get(status, "audiences"), *a;
    size_t i;
    json_array_foreach(auds, i, a)
    {
        if (json_string_value(a) && strcmp(json_string_value(a), CERTS_AUDIENCE) == 0)
            return true;
    }
    return false;
}

/* Answer an issuance (loop thread). */
static void issue_respond(struct weftd *d, struct cert_req *r, struct issue_job *j)
{
    struct http_conn *c = r->conn;
    char msg[1200], na[32];
    struct tm tm;

    if (j->rc == ERR_INVALID) {
        if ((size_t)j->diag.code < CA_REFUSAL_NREASONS)
            d->m.certs_refused[j->diag.code]++;
        log_info("msg=\"certificate refused\" reason=%s namespace=%s serviceaccount=%s "
                 "detail=\"%s\"",
                 ca_refusal_str(j->diag.code), j->ns, j->sa, j->diag.text);
        respond_error(c, 400, ca_refusal_str(j->diag.code), j->diag.text);
        return;
    }
    if (j->rc == -EINVAL) {
        d->m.certs_refused[WEFTD_REFUSED_AUTH]++;
        if (j->pod_name[0])
            snprintf(msg, sizeof(msg),
                     "\"system:serviceaccount:%s:%s\" of pod %s (uid %s) is not a valid workload "
                     "identity",
                     j->ns, j->sa, j->pod_name, j->pod_uid);
        else
            snprintf(msg, sizeof(msg),
                     "\"system:serviceaccount:%s:%s\" is not a valid workload identity", j->ns,
                     j->sa);
        respond_error(c, 403, "Forbidden", msg);
        return;
    }
    if (j->rc) {
        log_error("msg=\"cannot issue\" error=%s", err_str(j->rc));
        snprintf(msg, sizeof(msg), "cannot issue: %s", err_str(j->rc));
        respond_error(c, j->rc == -EKEYEXPIRED ? 503 : 500,
                      j->rc == -EKEYEXPIRED ? "Unavailable" : "InternalError", msg);
        return;
    }
    gmtime_r(&j->leaf.not_after, &tm);
    strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
    d->m.certs_issued++;
    d->m.issue_seconds_sum += (double)(uv_hrtime() - r->t0) / 1e9;
    log_debug("msg=\"certificate issued\" namespace=%s serviceaccount=%s notAfter=%s "
              "fingerprint=%s",
              j->ns, j->sa, na, j->leaf.fingerprint);
    respond_json(c, 200,
                 json_pack("{s:s,s:s,s:s}", "certificateChain", j->leaf.chain_pem, "trustBundle",
                           d->bundle_pem, "notAfter", na),
                 NULL);
}

/* Worker thread: CSR checks (signature verify) and signing. */
static void issue_work(uv_work_t *w)
{
    struct issue_job *j = w->data;

    j->rc = ca_issue(j->ca, j->r->csr, j->r->csr_len, &j->id, j->ttl, &j->leaf, &j->diag);
}

static void issue_after(uv_work_t *w, int status)
{
    struct issue_job *j = w->data;
    struct cert_req *r = j->r;

    hold_put(j->ca_hold);
    r->job = NULL;
    if (!hold_gone(&r->hold)) { /* else the peer went away, or the endpoint stopped */
        struct weftd *d = r->s->d;
        if (status) {
            j->rc = -EIO;
            log_error("msg=\"issuance job failed\" error=%s", uv_strerror(status));
        }
        issue_respond(d, r, j);
        weftd_http_kick(d, d->certs);
        hold_drop(&r->hold); /* answered */
    }
    ca_leaf_release(&j->leaf);
    free(j);
    hold_put(&r->hold);
}

/*
 * The pod a bound token names: TokenReview's user.extra "authentication.kubernetes.io/pod-name"
 * and "pod-uid" (one value each). Returns 0 (none: both ""), 1 (found) or -1 (present but not
 * exactly one string each, or too long: refused rather than issued without the pod).
 */
static int token_pod(const json_t *user, char *name, size_t nlen, char *uid, size_t ulen)
{
    const json_t *extra = json_object_get(user, "extra");
    const json_t *n = json_object_get(extra, "authentication.kubernetes.io/pod-name");
    const json_t *u = json_object_get(extra, "authentication.kubernetes.io/pod-uid");
    const char *ns, *us;

    name[0] = uid[0] = '\0';
    if (!n && !u)
        return 0;
    ns = json_string_value(json_array_get(n, 0));
    us = json_string_value(json_array_get(u, 0));
    if (json_array_size(n) != 1 || json_array_size(u) != 1 || !ns || !us || strlen(ns) >= nlen ||
        strlen(us) >= ulen)
        return -1;
    strcpy(name, ns);
    strcpy(uid, us);
    return 1;
}

/* Hand an authenticated request to a worker. Returns 0 or a negative code (r untouched). */
static int issue_start(struct weftd_certs *s, struct cert_req *r, const char *ns, const char *sa,
                       const char *pod_name, const char *pod_uid)
{
    struct weftd *d = s->d;
    struct issue_job *j = calloc(1, sizeof(*j));
    int rc;

    if (!j)
        return -ENOMEM;
    snprintf(j->ns, sizeof(j->ns), "%s", ns);
    snprintf(j->sa, sizeof(j->sa), "%s", sa);
    j->id.trust_domain = d->opts.trust_domain;
    j->id.namespace_ = j->ns;
    j->id.serviceaccount = j->sa;
    if (pod_name[0]) {
        snprintf(j->pod_name, sizeof(j->pod_name), "%s", pod_name);
        snprintf(j->pod_uid, sizeof(j->pod_uid), "%s", pod_uid);
        j->id.pod_name = j->pod_name;
        j->id.pod_uid = j->pod_uid;
    }
    j->ttl = d->opts.cert_ttl;
    j->ca = d->ca;
    j->ca_hold = hold_get(d->ca_hold);
    j->r = r;
    j->w.data = j;
    rc = uv_queue_work(d->loop, &j->w, issue_work, issue_after);
    if (rc) {
        hold_put(j->ca_hold);
        free(j);
        return rc;
    }
    r->job = j;
    hold_get(&r->hold);
    return 0;
}

/* The TokenReview answered: issue for exactly the authenticated ServiceAccount, or refuse. */
static void token_reviewed(void *arg, int err, long status, json_t *body)
{
    struct cert_req *r = arg;
    struct weftd_certs *s = r->s;
    struct weftd *d = s->d;
    struct http_conn *c = r->conn;
    const json_t *st = json_object_get(body, "status");
    const char *user = json_string_value(json_object_get(json_object_get(st, "user"), "username"));
    char ns[256], sa[256], msg[512];
    char pod_name[CA_POD_NAME_MAX + 1], pod_uid[CA_POD_UID_MAX + 1];
    int rc;

    r->kc = NULL;
    s->reviews--;
    review_pump(s);
    if (err || status < 200 || status > 299) {
        snprintf(msg, sizeof(msg), "cannot review the token: %s",
                 err ? err_str(err) : kube_status_message(body));
        log_warn("msg=\"TokenReview failed\" error=%s status=%ld message=\"%s\"", err_str(err),
                 status, kube_status_message(body));
        respond_error(c, 503, "Unavailable", msg);
        goto out;
    }
    if (!json_is_true(json_object_get(st, "authenticated"))) {
        const char *e = json_string_value(json_object_get(st, "error"));
        d->m.certs_refused[WEFTD_REFUSED_AUTH]++;
        log_info("msg=\"certificate refused\" reason=Unauthenticated error=\"%s\"",
                 e ? e : "not authenticated");
        respond_error(c, 401, "Unauthenticated", e && *e ? e : "token not authenticated");
        goto out;
    }
    if (!audience_ok(st)) {
        d->m.certs_refused[WEFTD_REFUSED_AUTH]++;
        respond_error(c, 401, "Unauthenticated",
                      "the token review did not confirm audience \"" CERTS_AUDIENCE "\"");
        goto out;
    }
    if (!parse_sa_user(user, ns, sizeof(ns), sa, sizeof(sa))) {
        d->m.certs_refused[WEFTD_REFUSED_AUTH]++;
        snprintf(msg, sizeof(msg), "user \"%s\" is not a ServiceAccount", user ? user : "");
        log_info("msg=\"certificate refused\" reason=Forbidden user=\"%s\"", user ? user : "");
        respond_error(c, 403, "Forbidden", msg);
        goto out;
    }
    if (token_pod(json_object_get(st, "user"), pod_name, sizeof(pod_name), pod_uid,
                  sizeof(pod_uid)) < 0) {
        d->m.certs_refused[WEFTD_REFUSED_AUTH]++;
        log_info("msg=\"certificate refused\" reason=Forbidden user=\"%s\" "
                 "detail=\"malformed pod-name/pod-uid in the token review\"",
                 user);
        respond_error(c, 403, "Forbidden",
                      "the token review names a pod, but not as one pod-name and one pod-uid");
        goto out;
    }
    if (!d->ca) {
        respond_error(c, 503, "Unavailable", "the CA is not ready");
        goto out;
    }
    rc = issue_start(s, r, ns, sa, pod_name, pod_uid);
    if (rc == 0)
        return; /* answered by issue_after */
    snprintf(msg, sizeof(msg), "cannot issue: %s", err_str(rc));
    respond_error(c, 500, "InternalError", msg);
out:
    weftd_http_kick(d, d->certs);
    hold_drop(&r->hold); /* answered */
}

/* Send the request's TokenReview. Returns 0 or a negative code (then nothing was sent). */
static int review_start(struct weftd_certs *s, struct cert_req *r)
{
    int rc = weftd_token_review(s->d, r->token, CERTS_AUDIENCE, token_reviewed, r, &r->kc);

    if (rc == 0)
        s->reviews++;
    return rc;
}

/* Start queued reviews while the window has room. */
static void review_pump(struct weftd_certs *s)
{
    bool answered = false;

    while (!s->stopping && s->queue && s->reviews < REVIEW_WINDOW) {
        struct cert_req *r = s->queue;
        int rc;

        s->queue = r->next;
        if (!s->queue)
            s->q_tail = &s->queue;
        s->queued--;
        r->queued = false;
        r->next = NULL;
        rc = review_start(s, r);
        if (rc) {
            char msg[128];
            snprintf(msg, sizeof(msg), "cannot review the token: %s", err_str(rc));
            respond_error(r->conn, 503, "Unavailable", msg);
            hold_drop(&r->hold); /* answered */
            answered = true;
        }
    }
    if (answered)
        weftd_http_kick(s->d, s->d->certs);
}

static bool content_type_ok(const char *ct)
{
    static const char *const ok[] = {"application/pkcs10", "application/x-pem-file"};
    size_t n;
    if (!ct)
        return false;
    n = strcspn(ct, "; \t");
    for (size_t i = 0; i < ARRAY_LEN(ok); i++)
        if (n == strlen(ok[i]) && strncasecmp(ct, ok[i], n) == 0)
            return true;
    return false;
}

static void certs_handle(void *arg, struct http_conn *c, const struct http_request *req)
{
    struct weftd_certs *s = arg;
    struct weftd *d = s->d;
    const char *token = weftd_bearer_token(req);
    struct cert_req *r = NULL;
    int rc;

    if (strcmp(req->path, "/v1/certificates") != 0) {
        respond_error(c, 404, "NotFound", "not found");
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        respond_error(c, 405, "MethodNotAllowed", "use POST");
        return;
    }
    if (!d->ca) {
        respond_error(c, 503, "Unavailable", "the CA is not ready");
        return;
    }
    if (!token) {
        d->m.certs_refused[WEFTD_REFUSED_AUTH]++;
        respond_error(c, 401, "Unauthenticated",
                      "missing bearer token (Authorization: Bearer <ServiceAccount token, "
                      "audience " CERTS_AUDIENCE ">)");
        return;
    }
    if (!weftd_token_plausible(token)) {
        d->m.certs_refused[WEFTD_REFUSED_AUTH]++;
        respond_error(c, 401, "Unauthenticated", "malformed bearer token");
        return;
    }
    if (!content_type_ok(http_req_header(req, "content-type"))) {
        respond_error(c, 415, "UnsupportedMediaType",
                      "the body must be a PEM PKCS#10 request with Content-Type "
                      "application/pkcs10");
        return;
    }
    if (s->queued >= REVIEW_QUEUE_MAX) {
        respond_error(c, 503, "Unavailable", "too many certificate requests waiting");
        return;
    }
    r = calloc(1, sizeof(*r));
    if (!r || !(r->csr = malloc(req->body_len + 1)) || !(r->token = strdup(token))) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(r->csr, req->body, req->body_len);
    r->csr[req->body_len] = '\0';
    r->csr_len = req->body_len;
    hold_init(&r->hold, r, cert_req_release);
    r->s = s;
    r->conn = c;
    r->t0 = uv_hrtime();
    if (s->reviews < REVIEW_WINDOW && !s->queue) {
        rc = review_start(s, r);
    } else {
        r->queued = true;
        *s->q_tail = r;
        s->q_tail = &r->next;
        s->queued++;
        rc = 0;
    }
    if (!rc) {
        http_defer(c, cert_req_closed, r);
        r = NULL;
    }
out:
    if (rc) {
        char msg[128];
        snprintf(msg, sizeof(msg), "cannot review the token: %s", err_str(rc));
        respond_error(c, 503, "Unavailable", msg);
    }
    if (r)
        cert_req_free(r);
}

/* ---- start and stop ----------------------------------------------------------------------- */

static void serving_issued(void *arg, const char *chain_pem, const char *key_pem)
{
    weftd_stream_identity(arg, chain_pem, key_pem);
}

int weftd_certs_start(struct weftd *d)
{
    struct weftd_certs *s = calloc(1, sizeof(*s));
    char dns0[300], dns1[320];
    const char *dns[] = {dns0, dns1, "localhost"};
    const char *ips[] = {"127.0.0.1"};
    bool user = d->opts.user_ca_secret != NULL; /* the signer's Secret, as ca_roots.c reads it */
    int rc;

    if (!s)
        return -ENOMEM;
    s->d = d;
    s->q_tail = &s->queue;
    d->certs_srv = s;
    snprintf(dns0, sizeof(dns0), "weftd.%s.svc", d->opts.namespace);
    snprintf(dns1, sizeof(dns1), "weftd.%s.svc.cluster.local", d->opts.namespace);
    /* the config stream (stream.c) serves with the same certificate: same names */
    rc = weftd_serving_cert_new(d, dns, ARRAY_LEN(dns), ips, ARRAY_LEN(ips), serving_issued, d,
                                &s->tls);
    if (rc)
        return rc;
    rc = weftd_http_listen(d, WEFTD_LISTENER_CERTS, d->opts.certs_listen,
                           weftd_serving_cert_ctx(s->tls), certs_handle, s, &d->certs);
    if (rc)
        return rc;
    /* the CA may be ready already */
    weftd_serving_cert_refresh(s->tls);
    log_info("msg=\"certificate endpoint listening\" addr=%s port=%d signer=%s%s/%s",
             d->opts.certs_listen, http_server_port(d->certs), user ? "user:" : "",
             d->opts.namespace, user ? d->opts.user_ca_secret : d->opts.ca_secret);
    return 0; /* on failure main calls weftd_certs_stop, which releases what was made */
}

void weftd_certs_ca_ready(struct weftd *d)
{
    if (d->certs_srv)
        weftd_serving_cert_refresh(d->certs_srv->tls);
}

void weftd_certs_stop(struct weftd *d)
{
    struct weftd_certs *s = d->certs_srv;

    if (!s)
        return;
    d->certs_srv = NULL;
    s->stopping = true; /* queued requests are dropped, not started, as their conns close */
    if (d->certs) {
        weftd_http_detach(d, d->certs);
        http_server_free(d->certs); /* deferred requests hear the close and cancel */
        d->certs = NULL;
    }
    weftd_serving_cert_free(s->tls);
    free(s);
}
