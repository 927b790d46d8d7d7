/*
 * ca_server.c - the CA inside weftd: where the signer comes from, the trust bundle it publishes,
 * and POST /v1/certificates.
 *
 * Signer. With --user-ca-secret the operator's Secret (tls.crt, tls.key, optional ca.crt) is
 * the signer; until it loads, weftd is not ready and says why in the log. Otherwise the signer
 * lives in the Secret --ca-secret (weft-ca): every replica watches it (an informer on that one
 * name); when it is absent, the leader generates a root on a worker and POSTs the Secret; a 409
 * means another replica won, and its Secret is loaded instead. So however many replicas start
 * together, one root exists. If the Secret is deleted while weftd runs, the leader writes it
 * back from memory (rotation, not deletion, replaces a root).
 *
 * The Secret is the source of truth for the trust bundle: its ca.crt holds every root that may
 * have signed a live leaf (rotation: add the new root to ca.crt, then switch tls.crt/tls.key,
 * then remove the old root). Each change is applied to the running struct ca in that order
 * (bundle_add, signer_set, bundle_remove) without a restart, then republished: the ConfigMap
 * weft-root-ca in every namespace labelled weft.dev/inject=enabled (leader only, server-side
 * apply with field manager weftd), the webhook's caBundle, and the serving certificates.
 *
 * Certificates. POST /v1/certificates on --certs-listen (TLS, certificate for weftd.<ns>.svc
 * issued here): the bearer token goes to TokenReview (audience weft); the authenticated
 * system:serviceaccount:<ns>:<sa> is the only identity the leaf may carry. At most REVIEW_WINDOW
 * reviews are in flight (the rest wait in a FIFO), so a burst reuses a few warm connections to
 * the API server; the CSR check and signing then run on libuv's worker pool (struct ca allows
 * issuing from any thread), so every core issues. Key material is never logged; the signer's PEM is
 * copied only to workers that issue serving certificates and is wiped after use.
 */
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/log.h"
#include "tls/tls.h"
#include "weftd/weftd_int.h"

#define CERTS_MAX_BODY (64 * 1024)
#define CERTS_AUDIENCE "weft"
#define BUNDLE_CONFIGMAP "weft-root-ca"
#define INJECT_LABEL "weft.dev/inject"
#define FIELD_MANAGER "weftd"
#define TICK_MS 1000
#define LOG_REPEAT_S 60    /* a persisting problem is logged again after this long */
#define PUBLISH_RETRY_S 10 /* a failed ConfigMap write is retried after this long */
/* TokenReviews in flight at once. More requests wait in a FIFO: a burst of N requests then
 * costs at most REVIEW_WINDOW connections (TLS handshakes) to the API server instead of N,
 * and they stay open for reuse (see docs/ca.md, "Load"). */
#ifndef REVIEW_WINDOW
#define REVIEW_WINDOW 32
#endif
/* Requests waiting for a review slot beyond this are answered 503 with Retry-After. */
#define REVIEW_QUEUE_MAX 10000

static const struct kube_resource res_secrets = {"", "v1", "secrets", true};
static const struct kube_resource res_configmaps = {"", "v1", "configmaps", true};
static const struct kube_resource res_tokenreviews = {"authentication.k8s.io", "v1", "tokenreviews",
                                                      false};

struct ca_srv;

/* An API call in flight, cancelled on stop. */
struct ca_call {
    struct ca_srv *s;
    struct kube_call *kc;
    void (*done)(struct ca_srv *s, const char *ctx, int err, long status, json_t *body);
    struct ca_call *prev, *next;
    char ctx[256]; /* what the call is about (a namespace) */
};

/*
 * Issuance on libuv's worker pool. CSR verification (an ECDSA verify, about three signs) and
 * signing run on workers so that every core issues while the loop thread keeps serving TLS
 * and HTTP; struct ca allows issuing calls from any thread (ca.h). Jobs share this pool
 * record, which outlives the server while jobs are in flight: weftd_ca_stop hands the struct
 * ca to it and the last job frees both.
 */
struct issue_pool {
    struct ca *ca; /* set at stop: the CA to free after the last job */
    int jobs;      /* in flight */
    bool stopped;
};

struct cert_req;

struct issue_job {
    uv_work_t w;
    struct issue_pool *pool;
    struct cert_req *r;
    struct ca *ca;
    struct ca_identity id;
    char ns[256], sa[256];
    long ttl;
    int rc;
    struct ca_diag diag;
    struct ca_leaf leaf;
};

/* A certificate request: waiting for a TokenReview slot, reviewing, or issuing. */
struct cert_req {
    struct ca_srv *s;
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

/* Root generation on a worker. */
struct gen_job {
    uv_work_t w;
    struct ca_srv *s; /* NULL once the server stopped */
    struct ca_signer *signer;
    int rc;
};

struct ca_srv {
    struct weftd *d;
    uv_timer_t timer;
    bool user;               /* signer from --user-ca-secret */
    const char *secret_name; /* the Secret holding the signer */
    char secret_key[512];    /* its informer key "ns/name" */
    struct kube_informer *secret_inf, *cm_inf;
    struct ca_call *calls;
    struct gen_job *gen;
    bool creating;
    bool load_failed;               /* the cached Secret did not load: retry on the tick */
    char *applied_crt, *applied_ca; /* certificates of the Secret state last applied */
    char last_problem[256];
    time_t last_problem_at;
    json_t *meshed;   /* namespace -> {"gen": published generation + 1 (0: publish), "retry": t} */
    json_t *inflight; /* namespaces with a ConfigMap write in flight */
    struct weftd_tls *tls;
    /* POST /v1/certificates */
    struct issue_pool *pool;
    int reviews;                      /* TokenReviews in flight, at most REVIEW_WINDOW */
    struct cert_req *queue, **q_tail; /* requests waiting for a review slot, FIFO */
    size_t queued;
    bool stopping;
};

/* ---- small helpers ------------------------------------------------------------------------ */

/* Wipe and free a string that may hold key material. */
static void free_secret(char *p)
{
    if (p) {
        OPENSSL_cleanse(p, strlen(p));
        free(p);
    }
}

/* The next PEM certificate block at or after *pos in pem: its start and length; advances *pos.
 * Returns false when there is none. */
static bool next_cert_block(const char *pem, size_t *pos, const char **start, size_t *len)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    static const char end[] = "-----END CERTIFICATE-----";
    const char *b, *e;

    if (!pem)
        return false;
    b = strstr(pem + *pos, begin);
    if (!b)
        return false;
    e = strstr(b, end);
    if (!e)
        return false;
    e += sizeof(end) - 1;
    *start = b;
    *len = (size_t)(e - b);
    *pos = (size_t)(e - pem);
    return true;
}

static const char *obj_str(const json_t *obj, const char *a, const char *b)
{
    const json_t *v = json_object_get(obj, a);
    if (b)
        v = json_object_get(v, b);
    return json_string_value(v);
}

/* Log a problem that may persist: once when it appears or changes, then every LOG_REPEAT_S.
 * Waiting (for the leader, for the operator's Secret) is info; an unusable Secret is an error. */
static void problem_at(struct ca_srv *s, enum log_level lvl, const char *text)
{
    time_t now = time(NULL);
    if (strcmp(text, s->last_problem) == 0 && now - s->last_problem_at < LOG_REPEAT_S)
        return;
    snprintf(s->last_problem, sizeof(s->last_problem), "%s", text);
    s->last_problem_at = now;
    log_msg(lvl, "msg=\"%s\" secret=%s/%s problem=\"%s\"",
            s->d->ca ? "CA Secret not applied; the previous signer and bundle stay in use"
                     : "CA not ready",
            s->d->opts.namespace, s->secret_name, text);
}

static void problem(struct ca_srv *s, const char *text)
{
    problem_at(s, LOG_ERROR, text);
}

/* ---- tracked API calls -------------------------------------------------------------------- */

static void call_done(void *arg, int err, long status, json_t *body)
{
    struct ca_call *c = arg;
    struct ca_srv *s = c->s;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->done(s, c->ctx, err, status, body);
    free(c);
}

static int call_start(struct ca_srv *s, const char *method, const char *path, const json_t *body,
                      const char *ctype, const char *ctx,
                      void (*done)(struct ca_srv *, const char *, int, long, json_t *))
{
    struct ca_call *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return -ENOMEM;
    c->s = s;
    c->done = done;
    snprintf(c->ctx, sizeof(c->ctx), "%s", ctx ? ctx : "");
    rc = kube_request(s->d->kube, method, path, body, ctype, call_done, c, &c->kc);
    if (rc) {
        free(c);
        return rc;
    }
    c->next = s->calls;
    if (s->calls)
        s->calls->prev = c;
    s->calls = c;
    return 0;
}

/* ---- serving certificates (struct weftd_tls) ---------------------------------------------- */

struct tls_job;

struct weftd_tls {
    struct weftd *d;
    SSL_CTX *ctx;
    char **dns, **ips;
    size_t ndns, nips;
    weftd_tls_fn *on_issued;
    void *arg;
    uv_timer_t timer;
    struct tls_job *job;
    bool again; /* refresh asked for while a job was running */
    bool ready;
    bool closing;
    int refs; /* owner, timer handle, job */
    time_t renew_at;
};

struct tls_job {
    uv_work_t w;
    struct weftd_tls *t;
    struct ca_signer_pem pem;
    long ttl;
    int rc;
    struct ca_diag diag;
    struct ca_leaf leaf;
    char *key_pem;
};

static void tls_unref(struct weftd_tls *t)
{
    if (--t->refs)
        return;
    for (size_t i = 0; i < t->ndns; i++)
        free(t->dns[i]);
    for (size_t i = 0; i < t->nips; i++)
        free(t->ips[i]);
    free(t->dns);
    free(t->ips);
    SSL_CTX_free(t->ctx);
    free(t);
}

static void tls_timer_closed(uv_handle_t *h)
{
    tls_unref(h->data);
}

/* Worker thread: a private struct ca from the signer's PEM (struct ca is not thread-safe). */
static void tls_work(uv_work_t *w)
{
    struct tls_job *j = w->data;
    struct weftd_tls *t = j->t;
    struct ca_signer_input in = {
        .crt = j->pem.tls_crt,
        .crt_len = strlen(j->pem.tls_crt),
        .key = j->pem.tls_key,
        .key_len = strlen(j->pem.tls_key),
        .ca = j->pem.ca_crt,
        .ca_len = j->pem.ca_crt ? strlen(j->pem.ca_crt) : 0,
    };
    struct ca_signer *signer = NULL;
    struct ca *ca = NULL;

    j->rc = ca_signer_load(&in, time(NULL), &signer, &j->diag);
    ca_signer_pem_release(&j->pem);
    if (!j->rc)
        j->rc = ca_new(signer, &ca);
    if (!j->rc)
        j->rc =
            ca_issue_server(ca, (const char *const *)t->dns, t->ndns, (const char *const *)t->ips,
                            t->nips, j->ttl, &j->leaf, &j->key_pem);
    ca_free(ca);
    /* libuv's pool threads live until exit: release OpenSSL's per-thread state (error queue,
     * DRBGs) now rather than leaving it to thread exit that never comes */
    OPENSSL_thread_stop();
}

static void tls_arm(struct weftd_tls *t, time_t delay_s);

static void tls_after(uv_work_t *w, int status)
{
    struct tls_job *j = w->data;
    struct weftd_tls *t = j->t;
    struct ca_cert_info info;
    int rc = status ? status : j->rc;

    t->job = NULL;
    if (!rc && !t->closing) {
        rc = tls_set_identity(t->ctx, j->leaf.chain_pem, j->key_pem);
        if (!rc)
            rc = ca_cert_info(j->leaf.chain_pem, j->leaf.chain_len, &info);
        if (!rc) {
            char na[32];
            struct tm tm;
            gmtime_r(&info.not_after, &tm);
            strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
            t->ready = true;
            t->renew_at = info.renew_at;
            log_info("msg=\"serving certificate issued\" name=%s notAfter=%s",
                     t->ndns ? t->dns[0] : t->ips[0], na);
            tls_arm(t, info.renew_at - time(NULL));
            if (t->on_issued)
                t->on_issued(t->arg);
        }
    }
    if (rc && !t->closing) {
        log_error("msg=\"cannot issue serving certificate\" name=%s error=%s%s%s",
                  t->ndns ? t->dns[0] : t->ips[0], err_str(rc), j->diag.text[0] ? " detail=" : "",
                  j->diag.text);
        tls_arm(t, 5);
    }
    ca_leaf_release(&j->leaf);
    ca_key_pem_free(j->key_pem);
    free(j);
    if (!t->closing && t->again) {
        t->again = false;
        weftd_tls_refresh(t);
    }
    tls_unref(t);
}

static void tls_on_timer(uv_timer_t *h)
{
    struct weftd_tls *t = h->data;
    if (!t->ready || time(NULL) >= t->renew_at)
        weftd_tls_refresh(t);
    else
        tls_arm(t, t->renew_at - time(NULL));
}

static void tls_arm(struct weftd_tls *t, time_t delay_s)
{
    if (delay_s < 1)
        delay_s = 1;
    if (delay_s > 3600) /* re-checked hourly: the wall clock may jump */
        delay_s = 3600;
    uv_timer_start(&t->timer, tls_on_timer, (uint64_t)delay_s * 1000, 0);
}

int weftd_tls_new(struct weftd *d, const char *const *dns, size_t ndns, const char *const *ips,
                  size_t nips, weftd_tls_fn *on_issued, void *arg, struct weftd_tls **out)
{
    struct weftd_tls *t;

    if (!ndns && !nips)
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->refs = 1;
    t->d = d;
    t->on_issued = on_issued;
    t->arg = arg;
    t->dns = calloc(ndns + 1, sizeof(char *));
    t->ips = calloc(nips + 1, sizeof(char *));
    if (!t->dns || !t->ips || tls_server_ctx_new(&t->ctx) != 0)
        goto oom;
    for (; t->ndns < ndns; t->ndns++)
        if (!(t->dns[t->ndns] = strdup(dns[t->ndns])))
            goto oom;
    for (; t->nips < nips; t->nips++)
        if (!(t->ips[t->nips] = strdup(ips[t->nips])))
            goto oom;
    uv_timer_init(d->loop, &t->timer);
    t->timer.data = t;
    t->refs++;
    *out = t;
    return 0;
oom:
    tls_unref(t);
    return -ENOMEM;
}

SSL_CTX *weftd_tls_ctx(const struct weftd_tls *t)
{
    return t->ctx;
}

bool weftd_tls_ready(const struct weftd_tls *t)
{
    return t && t->ready;
}

void weftd_tls_refresh(struct weftd_tls *t)
{
    struct tls_job *j;
    int rc;

    if (!t || t->closing || !t->d->ca)
        return;
    if (t->job) {
        t->again = true;
        return;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        tls_arm(t, 5);
        return;
    }
    rc = ca_signer_pem_get(ca_signer_get(t->d->ca), &j->pem);
    if (rc) {
        free(j);
        tls_arm(t, 5);
        return;
    }
    j->t = t;
    j->ttl = t->d->opts.cert_ttl;
    j->w.data = j;
    rc = uv_queue_work(t->d->loop, &j->w, tls_work, tls_after);
    if (rc) {
        ca_signer_pem_release(&j->pem);
        free(j);
        tls_arm(t, 5);
        return;
    }
    t->job = j;
    t->refs++;
}

void weftd_tls_free(struct weftd_tls *t)
{
    if (!t)
        return;
    t->closing = true;
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, tls_timer_closed);
    tls_unref(t);
}

/* ---- applying the Secret ------------------------------------------------------------------ */

static void publish_all(struct ca_srv *s);

/* Roots that should be in the bundle: the signer's and every certificate of ca.crt. */
static bool root_wanted(const struct ca_srv *s, const char *fp, const char *ca_pem)
{
    const char *blk;
    size_t pos = 0, len;

    if (strcmp(fp, ca_signer_root_fingerprint(ca_signer_get(s->d->ca))) == 0)
        return true;
    while (next_cert_block(ca_pem, &pos, &blk, &len)) {
        struct ca_cert_info info;
        if (ca_cert_info(blk, len, &info) == 0 && strcmp(info.fingerprint, fp) == 0)
            return true;
    }
    return false;
}

/* Add every root of pem to the bundle; non-roots (intermediates) are skipped. */
static int bundle_add_roots(struct ca *ca, const char *pem)
{
    const char *blk;
    size_t pos = 0, len;

    while (next_cert_block(pem, &pos, &blk, &len)) {
        struct ca_diag diag;
        int rc = ca_bundle_add(ca, blk, len, NULL, &diag);
        if (rc == -ENOMEM)
            return rc;
        if (rc)
            log_debug("msg=\"certificate of ca.crt not added to the bundle\" reason=%s "
                      "detail=\"%s\"",
                      ca_refusal_str(diag.code), diag.text);
    }
    return 0;
}

/* Remove bundle roots the Secret no longer lists. */
static int bundle_prune(struct ca_srv *s, const char *ca_pem)
{
    char *bundle = NULL;
    const char *blk;
    size_t pos = 0, len;
    int rc = ca_bundle_pem(s->d->ca, &bundle, NULL);

    if (rc)
        return rc;
    while (next_cert_block(bundle, &pos, &blk, &len)) {
        struct ca_cert_info info;
        if (ca_cert_info(blk, len, &info) || root_wanted(s, info.fingerprint, ca_pem))
            continue;
        rc = ca_bundle_remove(s->d->ca, info.fingerprint, false);
        if (rc == -EBUSY) {
            log_warn("msg=\"root removed from the Secret while leaves issued under it are "
                     "still valid; removing it anyway\" fingerprint=%s",
                     info.fingerprint);
            rc = ca_bundle_remove(s->d->ca, info.fingerprint, true);
        }
        if (rc && rc != ERR_NOTFOUND)
            log_warn("msg=\"cannot remove root from the bundle\" fingerprint=%s error=%s",
                     info.fingerprint, err_str(rc));
        else
            log_info("msg=\"root removed from the trust bundle\" fingerprint=%s", info.fingerprint);
        rc = 0;
    }
    free(bundle);
    return 0;
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/*
 * Bring the running CA in line with a Secret: first signer load (or a switch), bundle additions
 * before the switch and removals after it. Returns 0 (applied or unchanged), ERR_INVALID (the
 * Secret is unusable; logged), -ENOMEM.
 */
static int apply_secret(struct ca_srv *s, const json_t *secret)
{
    struct weftd *d = s->d;
    const json_t *data = json_object_get(secret, "data");
    const char *crt_b64 = json_string_value(json_object_get(data, "tls.crt"));
    const char *key_b64 = json_string_value(json_object_get(data, "tls.key"));
    const char *ca_b64 = json_string_value(json_object_get(data, "ca.crt"));
    char *crt = NULL, *key = NULL, *ca_pem = NULL, *bundle = NULL;
    size_t crt_len = 0, key_len = 0, ca_len = 0;
    struct ca_signer *signer = NULL;
    struct ca_diag diag;
    char text[256];
    bool first = !d->ca, switched = false;
    int rc;

    memset(&diag, 0, sizeof(diag));
    if (!crt_b64 || !key_b64) {
        problem(s, "the Secret has no tls.crt or no tls.key");
        rc = ERR_INVALID;
        goto out;
    }
    if ((rc = base64_decode(crt_b64, &crt, &crt_len)) ||
        (ca_b64 && (rc = base64_decode(ca_b64, &ca_pem, &ca_len)))) {
        if (rc == -EINVAL)
            problem(s, "tls.crt or ca.crt is not base64");
        goto out;
    }
    if (d->ca && str_eq(crt, s->applied_crt) && str_eq(ca_pem, s->applied_ca)) {
        rc = 0; /* an unrelated change (labels, annotations) */
        goto out;
    }
    if (first || !str_eq(crt, s->applied_crt)) {
        struct ca_signer_input in;
        rc = base64_decode(key_b64, &key, &key_len);
        if (rc) {
            if (rc == -EINVAL)
                problem(s, "tls.key is not base64");
            goto out;
        }
        in.crt = crt;
        in.crt_len = crt_len;
        in.key = key;
        in.key_len = key_len;
        in.ca = ca_pem;
        in.ca_len = ca_len;
        rc = ca_signer_load(&in, time(NULL), &signer, &diag);
        if (rc) {
            if (rc == ERR_INVALID) {
                snprintf(text, sizeof(text), "signer refused: %s: %s", ca_refusal_str(diag.code),
                         diag.text);
                problem(s, text);
            }
            goto out;
        }
    }
    if (first) {
        struct ca *ca = NULL;
        rc = ca_new(signer, &ca);
        signer = NULL;
        if (rc)
            goto out;
        d->ca = ca;
    } else if (signer) {
        /* rotation step 2: the new signer's root must be in the bundle before the switch */
        struct ca_signer_pem sp;
        memset(&sp, 0, sizeof(sp));
        rc = ca_signer_pem_get(signer, &sp);
        if (!rc)
            rc = bundle_add_roots(d->ca, sp.ca_crt);
        ca_signer_pem_release(&sp);
        if (rc)
            goto out;
    }
    rc = bundle_add_roots(d->ca, ca_pem);
    if (rc)
        goto out;
    if (signer) {
        rc = ca_signer_set(d->ca, signer, &diag);
        signer = NULL;
        if (rc) {
            snprintf(text, sizeof(text), "cannot switch to the new signer: %s: %s",
                     ca_refusal_str(diag.code), diag.text);
            problem(s, text);
            goto out;
        }
        switched = true;
    }
    rc = bundle_prune(s, ca_pem);
    if (!rc)
        rc = ca_bundle_pem(d->ca, &bundle, NULL);
    if (rc)
        goto out;
    free(s->applied_crt);
    free(s->applied_ca);
    s->applied_crt = crt;
    s->applied_ca = ca_pem;
    crt = ca_pem = NULL;
    s->last_problem[0] = '\0';
    if (first || switched || !str_eq(bundle, d->bundle_pem)) {
        free(d->bundle_pem);
        d->bundle_pem = bundle;
        bundle = NULL;
        log_info("msg=\"%s\" secret=%s/%s root=%s roots=%zu",
                 first      ? "CA ready"
                 : switched ? "CA signer switched"
                            : "trust bundle changed",
                 d->opts.namespace, s->secret_name,
                 ca_signer_root_fingerprint(ca_signer_get(d->ca)), ca_bundle_count(d->ca));
        if (first || switched)
            weftd_tls_refresh(s->tls);
        weftd_webhook_ca_ready(d);
        publish_all(s);
    }
out:
    ca_signer_free(signer);
    free(crt);
    free(ca_pem);
    free_secret(key);
    free(bundle);
    s->load_failed = rc != 0;
    return rc;
}

/* ---- creating the Secret ------------------------------------------------------------------ */

static void secret_got(struct ca_srv *s, const char *ctx, int err, long status, json_t *body)
{
    (void)ctx;
    if (kube_result_err(err, status, body) == 0)
        IGNORE_RESULT(apply_secret(s, body));
}

static void secret_created(struct ca_srv *s, const char *ctx, int err, long status, json_t *body)
{
    char path[1024];
    int rc = kube_result_err(err, status, body);

    (void)ctx;
    s->creating = false;
    if (rc == 0) {
        log_info("msg=\"CA Secret written\" secret=%s/%s", s->d->opts.namespace, s->secret_name);
        IGNORE_RESULT(apply_secret(s, body));
        return;
    }
    if (rc == ERR_EXISTS) {
        /* another replica won the race: use its root */
        log_info("msg=\"CA Secret created by another replica; loading it\" secret=%s/%s",
                 s->d->opts.namespace, s->secret_name);
        if (kube_path(&res_secrets, s->d->opts.namespace, s->secret_name, NULL, path,
                      sizeof(path)) == 0 &&
            call_start(s, "GET", path, NULL, NULL, NULL, secret_got) == 0)
            return;
        return;
    }
    log_error("msg=\"cannot create the CA Secret\" secret=%s/%s error=%s status=%ld "
              "message=\"%s\"",
              s->d->opts.namespace, s->secret_name, err_str(rc), status, kube_status_message(body));
}

/* POST the Secret holding signer; ca_crt (NULL: the signer's root) becomes ca.crt. */
static void create_secret(struct ca_srv *s, const struct ca_signer *signer, const char *ca_crt)
{
    struct ca_signer_pem pem;
    json_t *body = NULL, *key;
    char path[1024];
    int rc;

    memset(&pem, 0, sizeof(pem));
    rc = ca_signer_pem_get(signer, &pem);
    if (rc)
        goto out;
    body = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:s,s:{s:s,s:s,s:s}}", "apiVersion", "v1",
                     "kind", "Secret", "metadata", "name", s->secret_name, "namespace",
                     s->d->opts.namespace, "labels", "app.kubernetes.io/managed-by", "weftd",
                     "type", "kubernetes.io/tls", "stringData", "tls.crt", pem.tls_crt, "tls.key",
                     pem.tls_key, "ca.crt", ca_crt ? ca_crt : pem.ca_crt);
    rc = body ? kube_path(&res_secrets, s->d->opts.namespace, NULL, NULL, path, sizeof(path))
              : -ENOMEM;
    if (!rc)
        rc = call_start(s, "POST", path, body, NULL, NULL, secret_created);
    if (!rc)
        s->creating = true;
out:
    if (rc)
        log_error("msg=\"cannot create the CA Secret\" error=%s", err_str(rc));
    /* the request body was serialized by kube_request: wipe our copy of the key */
    key = json_object_get(json_object_get(body, "stringData"), "tls.key");
    if (key)
        OPENSSL_cleanse((char *)json_string_value(key), json_string_length(key));
    json_decref(body);
    ca_signer_pem_release(&pem);
}

static void gen_work(uv_work_t *w)
{
    struct gen_job *j = w->data;
    j->rc = ca_signer_generate_root(time(NULL), &j->signer);
    OPENSSL_thread_stop(); /* as in tls_work */
}

static void gen_after(uv_work_t *w, int status)
{
    struct gen_job *j = w->data;
    struct ca_srv *s = j->s;

    if (s) {
        s->gen = NULL;
        if (status || j->rc)
            log_error("msg=\"cannot generate a root\" error=%s", err_str(status ? status : j->rc));
        else if (!s->d->leading)
            log_info("msg=\"lost leadership while generating a root; discarding it\"");
        else if (!s->d->ca) {
            log_info("msg=\"generated a new root\" fingerprint=%s",
                     ca_signer_root_fingerprint(j->signer));
            create_secret(s, j->signer, NULL);
        }
    }
    ca_signer_free(j->signer);
    free(j);
}

static void start_generation(struct ca_srv *s)
{
    struct gen_job *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->s = s;
    j->w.data = j;
    if (uv_queue_work(s->d->loop, &j->w, gen_work, gen_after)) {
        free(j);
        return;
    }
    s->gen = j;
    log_info("msg=\"no CA Secret; generating a root\" secret=%s/%s", s->d->opts.namespace,
             s->secret_name);
}

/* ---- the trust bundle ConfigMaps ---------------------------------------------------------- */

static void publish_done(struct ca_srv *s, const char *ns, int err, long status, json_t *body)
{
    int rc = kube_result_err(err, status, body);
    json_t *st = json_object_get(s->meshed, ns);

    json_object_del(s->inflight, ns);
    if (!st)
        return;
    if (rc == 0) {
        /* what was sent, which a bundle change in flight may have made stale */
        json_object_set(st, "gen", json_object_get(st, "sent"));
        log_debug("msg=\"trust bundle published\" namespace=%s", ns);
    } else if (rc == ERR_NOTFOUND) {
        json_object_del(s->meshed, ns); /* the namespace is gone */
    } else {
        json_object_set_new(st, "retry", json_integer((json_int_t)time(NULL) + PUBLISH_RETRY_S));
        log_warn("msg=\"cannot publish the trust bundle\" namespace=%s error=%s message=\"%s\"", ns,
                 err_str(rc), kube_status_message(body));
    }
}

static void publish_ns(struct ca_srv *s, const char *ns)
{
    json_t *cm;
    char path[1024];
    int rc;

    cm = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap",
                   "metadata", "name", BUNDLE_CONFIGMAP, "namespace", ns, "labels",
                   "app.kubernetes.io/managed-by", "weftd", "data", "ca.crt", s->d->bundle_pem);
    rc = cm ? kube_path(&res_configmaps, ns, BUNDLE_CONFIGMAP, NULL, path, sizeof(path)) : -ENOMEM;
    if (!rc && strlen(path) + 64 < sizeof(path)) {
        strcat(path, "?fieldManager=" FIELD_MANAGER "&force=true");
        rc = call_start(s, "PATCH", path, cm, "application/apply-patch+yaml", ns, publish_done);
    }
    if (!rc) {
        json_object_set_new(s->inflight, ns, json_true());
        json_object_set_new(json_object_get(s->meshed, ns), "sent",
                            json_integer((json_int_t)ca_bundle_generation(s->d->ca) + 1));
    }
    json_decref(cm);
}

static void publish_all(struct ca_srv *s)
{
    json_int_t want, now = (json_int_t)time(NULL);
    const char *ns;
    json_t *st;

    if (!s->d->ca || !s->d->bundle_pem || !s->d->leading)
        return;
    want = (json_int_t)ca_bundle_generation(s->d->ca) + 1;
    json_object_foreach(s->meshed, ns, st)
    {
        if (json_integer_value(json_object_get(st, "gen")) == want ||
            json_object_get(s->inflight, ns) ||
            json_integer_value(json_object_get(st, "retry")) > now)
            continue;
        publish_ns(s, ns);
    }
}

void weftd_ca_namespace(struct weftd *d, const json_t *nsobj)
{
    struct ca_srv *s = d->ca_srv;
    const char *name = obj_str(nsobj, "metadata", "name");
    const char *label = json_string_value(json_object_get(
        json_object_get(json_object_get(nsobj, "metadata"), "labels"), INJECT_LABEL));
    const char *phase = obj_str(nsobj, "status", "phase");
    bool meshed = label && strcmp(label, "enabled") == 0 &&
                  !json_object_get(json_object_get(nsobj, "metadata"), "deletionTimestamp") &&
                  !(phase && strcmp(phase, "Terminating") == 0);

    if (!s || !name)
        return;
    if (!meshed) {
        /* Nothing is deleted: pods of a namespace that leaves the mesh may still mount it. */
        json_object_del(s->meshed, name);
        return;
    }
    if (json_object_get(s->meshed, name))
        return;
    json_object_set_new(s->meshed, name, json_pack("{s:i,s:i}", "gen", 0, "retry", 0));
    publish_all(s);
}

/* Someone else changed or deleted a weft-root-ca ConfigMap: put ours back. */
static void on_cm_event(void *arg, enum kube_event_type type, const char *key, const json_t *obj)
{
    struct ca_srv *s = arg;
    const char *ns = obj_str(obj, "metadata", "namespace");
    const char *have = obj_str(obj, "data", "ca.crt");
    json_t *st;

    (void)key;
    if (!ns || !(st = json_object_get(s->meshed, ns)) || !s->d->bundle_pem)
        return;
    if (type != KUBE_EVENT_DELETED && have && strcmp(have, s->d->bundle_pem) == 0)
        return;
    json_object_set_new(st, "gen", json_integer(0));
    json_object_set_new(st, "retry", json_integer(0));
    publish_all(s);
}

/* ---- bootstrap ---------------------------------------------------------------------------- */

static void reconcile(struct ca_srv *s)
{
    struct weftd *d = s->d;
    const json_t *obj;

    if (!s->secret_inf || !kube_informer_synced(s->secret_inf))
        return;
    obj = kube_informer_get(s->secret_inf, s->secret_key);
    if (!d->ca) {
        if (obj) {
            if (s->load_failed)
                IGNORE_RESULT(apply_secret(s, obj));
        } else if (s->user) {
            problem_at(s, LOG_WARN, "waiting for the Secret given by --user-ca-secret");
        } else if (d->leading && !s->gen && !s->creating) {
            start_generation(s);
        } else if (!d->leading) {
            problem_at(s, LOG_INFO, "waiting for the leader to create the Secret");
        }
        return;
    }
    if (obj && s->load_failed)
        IGNORE_RESULT(apply_secret(s, obj));
    if (!obj && !s->user && d->leading && !s->creating) {
        log_warn("msg=\"CA Secret deleted; writing it back from memory\" secret=%s/%s",
                 d->opts.namespace, s->secret_name);
        create_secret(s, ca_signer_get(d->ca), d->bundle_pem);
    }
    publish_all(s);
}

static void on_tick(uv_timer_t *h)
{
    reconcile(h->data);
}

static void on_secret_event(void *arg, enum kube_event_type type, const char *key,
                            const json_t *obj)
{
    struct ca_srv *s = arg;
    (void)key;
    if (type == KUBE_EVENT_DELETED) {
        if (s->d->ca)
            log_warn("msg=\"CA Secret deleted; keeping the CA in memory\" secret=%s/%s",
                     s->d->opts.namespace, s->secret_name);
        reconcile(s);
        return;
    }
    IGNORE_RESULT(apply_secret(s, obj));
}

static void on_secret_synced(void *arg)
{
    reconcile(arg);
}

void weftd_ca_leading(struct weftd *d)
{
    struct ca_srv *s = d->ca_srv;
    if (!s)
        return;
    /* every ConfigMap is rewritten once by a new leader (the old one may have missed some) */
    {
        const char *ns;
        json_t *st;
        json_object_foreach(s->meshed, ns, st)
        {
            json_object_set_new(st, "gen", json_integer(0));
            json_object_set_new(st, "retry", json_integer(0));
        }
    }
    reconcile(s);
}

/* ---- POST /v1/certificates ---------------------------------------------------------------- */

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

static void review_pump(struct ca_srv *s);

/* The peer went away (or the server stops): drop the request wherever it is. */
static void cert_req_closed(void *arg, struct http_conn *c)
{
    struct cert_req *r = arg;
    struct ca_srv *s = r->s;
    (void)c;
    r->conn = NULL;
    if (r->job)
        return; /* the worker uses r; issue_after frees it */
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
    cert_req_free(r);
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
    char msg[600], na[32];
    struct tm tm;

    if (j->rc == ERR_INVALID) {
        if ((size_t)j->diag.code < ARRAY_LEN(d->m.certs_refused))
            d->m.certs_refused[j->diag.code]++;
        log_info("msg=\"certificate refused\" reason=%s namespace=%s serviceaccount=%s "
                 "detail=\"%s\"",
                 ca_refusal_str(j->diag.code), j->ns, j->sa, j->diag.text);
        respond_error(c, 400, ca_refusal_str(j->diag.code), j->diag.text);
        return;
    }
    if (j->rc == -EINVAL) {
        d->m.certs_refused[WEFTD_REFUSED_AUTH]++;
        snprintf(msg, sizeof(msg),
                 "\"system:serviceaccount:%s:%s\" is not a valid workload identity", j->ns, j->sa);
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
    struct issue_pool *pool = j->pool;
    struct cert_req *r = j->r;

    pool->jobs--;
    r->job = NULL;
    if (pool->stopped) {
        if (pool->jobs == 0) {
            ca_free(pool->ca);
            free(pool);
        }
    } else if (r->conn) {
        struct weftd *d = r->s->d;
        if (status) {
            j->rc = -EIO;
            log_error("msg=\"issuance job failed\" error=%s", uv_strerror(status));
        }
        issue_respond(d, r, j);
        weftd_http_kick(d, d->certs);
    }
    ca_leaf_release(&j->leaf);
    free(j);
    cert_req_free(r);
}

/* Hand an authenticated request to a worker. Returns 0 or a negative code (r untouched). */
static int issue_start(struct ca_srv *s, struct cert_req *r, const char *ns, const char *sa)
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
    j->ttl = d->opts.cert_ttl;
    j->ca = d->ca;
    j->pool = s->pool;
    j->r = r;
    j->w.data = j;
    rc = uv_queue_work(d->loop, &j->w, issue_work, issue_after);
    if (rc) {
        free(j);
        return rc;
    }
    s->pool->jobs++;
    r->job = j;
    return 0;
}

/* The TokenReview answered: issue for exactly the authenticated ServiceAccount, or refuse. */
static void token_reviewed(void *arg, int err, long status, json_t *body)
{
    struct cert_req *r = arg;
    struct ca_srv *s = r->s;
    struct weftd *d = s->d;
    struct http_conn *c = r->conn;
    const json_t *st = json_object_get(body, "status");
    const char *user = obj_str(st, "user", "username");
    char ns[256], sa[256], msg[512];
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
    if (!d->ca) {
        respond_error(c, 503, "Unavailable", "the CA is not ready");
        goto out;
    }
    rc = issue_start(s, r, ns, sa);
    if (rc == 0)
        return; /* answered by issue_after */
    snprintf(msg, sizeof(msg), "cannot issue: %s", err_str(rc));
    respond_error(c, 500, "InternalError", msg);
out:
    weftd_http_kick(d, d->certs);
    cert_req_free(r);
}

/* Send the request's TokenReview. Returns 0 or a negative code (then nothing was sent). */
static int review_start(struct ca_srv *s, struct cert_req *r)
{
    json_t *review;
    char path[256];
    int rc;

    review = json_pack("{s:s,s:s,s:{s:s,s:[s]}}", "apiVersion", "authentication.k8s.io/v1", "kind",
                       "TokenReview", "spec", "token", r->token, "audiences", CERTS_AUDIENCE);
    if (!review)
        return -ENOMEM;
    rc = kube_path(&res_tokenreviews, NULL, NULL, NULL, path, sizeof(path));
    if (!rc)
        rc = kube_request(s->d->kube, "POST", path, review, NULL, token_reviewed, r, &r->kc);
    /* the token in the serialized request is gone; wipe ours */
    {
        json_t *t = json_object_get(json_object_get(review, "spec"), "token");
        OPENSSL_cleanse((char *)json_string_value(t), json_string_length(t));
    }
    json_decref(review);
    if (rc == 0)
        s->reviews++;
    return rc;
}

/* Start queued reviews while the window has room. */
static void review_pump(struct ca_srv *s)
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
            cert_req_free(r);
            answered = true;
        }
    }
    if (answered)
        weftd_http_kick(s->d, s->d->certs);
}

/* RFC 6750 b64token: the only characters a bearer token may have. */
static bool token_plausible(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 16384)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              strchr("-._~+/=", ch)))
            return false;
    }
    return true;
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
    struct ca_srv *s = arg;
    struct weftd *d = s->d;
    const char *auth = http_req_header(req, "authorization");
    const char *token;
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
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) {
        d->m.certs_refused[WEFTD_REFUSED_AUTH]++;
        respond_error(c, 401, "Unauthenticated",
                      "missing bearer token (Authorization: Bearer <ServiceAccount token, "
                      "audience " CERTS_AUDIENCE ">)");
        return;
    }
    token = auth + 7;
    while (*token == ' ')
        token++;
    if (!token_plausible(token)) {
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

static void srv_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

int weftd_ca_start(struct weftd *d)
{
    struct ca_srv *s = calloc(1, sizeof(*s));
    struct kube_informer_handlers sh = {0}, ch = {0};
    struct kube_informer_opts so = {0}, co = {0};
    char dns0[300], dns1[320], sel[300];
    const char *dns[] = {dns0, dns1, "localhost"};
    const char *ips[] = {"127.0.0.1"};
    int rc;

    if (!s)
        return -ENOMEM;
    s->d = d;
    s->user = d->opts.user_ca_secret != NULL;
    s->secret_name = s->user ? d->opts.user_ca_secret : d->opts.ca_secret;
    snprintf(s->secret_key, sizeof(s->secret_key), "%s/%s", d->opts.namespace, s->secret_name);
    s->meshed = json_object();
    s->inflight = json_object();
    s->pool = calloc(1, sizeof(*s->pool));
    s->q_tail = &s->queue;
    uv_timer_init(d->loop, &s->timer);
    s->timer.data = s;
    d->ca_srv = s;
    if (!s->meshed || !s->inflight || !s->pool) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(dns0, sizeof(dns0), "weftd.%s.svc", d->opts.namespace);
    snprintf(dns1, sizeof(dns1), "weftd.%s.svc.cluster.local", d->opts.namespace);
    rc = weftd_tls_new(d, dns, ARRAY_LEN(dns), ips, ARRAY_LEN(ips), NULL, NULL, &s->tls);
    if (rc)
        goto out;
    rc = http_server_new(d->opts.certs_listen, weftd_tls_ctx(s->tls), CERTS_MAX_BODY, certs_handle,
                         s, &d->certs);
    if (rc) {
        log_error("msg=\"cannot listen\" what=certificates addr=%s error=%s", d->opts.certs_listen,
                  err_str(rc));
        goto out;
    }
    rc = weftd_http_attach(d, d->certs);
    if (rc)
        goto out;

    snprintf(sel, sizeof(sel), "metadata.name=%s", s->secret_name);
    sh.on_event = on_secret_event;
    sh.on_synced = on_secret_synced;
    sh.arg = s;
    so.field_selector = sel;
    rc =
        kube_informer_new(d->kube, &res_secrets, d->opts.namespace, NULL, &sh, &so, &s->secret_inf);
    if (rc)
        goto out;
    ch.on_event = on_cm_event;
    ch.arg = s;
    co.field_selector = "metadata.name=" BUNDLE_CONFIGMAP;
    rc = kube_informer_new(d->kube, &res_configmaps, NULL, NULL, &ch, &co, &s->cm_inf);
    if (rc)
        goto out;
    uv_timer_start(&s->timer, on_tick, TICK_MS, TICK_MS);
    log_info("msg=\"certificate endpoint listening\" addr=%s port=%d signer=%s%s/%s",
             d->opts.certs_listen, http_server_port(d->certs), s->user ? "user:" : "",
             d->opts.namespace, s->secret_name);
out:
    return rc; /* on failure main calls weftd_ca_stop, which releases what was made */
}

void weftd_ca_stop(struct weftd *d)
{
    struct ca_srv *s = d->ca_srv;

    if (!s)
        return;
    d->ca_srv = NULL;
    s->stopping = true; /* queued requests are dropped, not started, as their conns close */
    if (d->certs) {
        weftd_http_detach(d, d->certs);
        http_server_free(d->certs); /* deferred requests hear the close and cancel */
        d->certs = NULL;
    }
    kube_informer_free(s->secret_inf);
    kube_informer_free(s->cm_inf);
    while (s->calls) {
        struct ca_call *c = s->calls;
        s->calls = c->next;
        kube_call_cancel(c->kc);
        free(c);
    }
    if (s->gen)
        s->gen->s = NULL; /* the worker's result is dropped when it lands */
    weftd_tls_free(s->tls);
    if (s->pool && s->pool->jobs) {
        /* workers are still issuing with d->ca: the last one frees it */
        s->pool->stopped = true;
        s->pool->ca = d->ca;
    } else {
        ca_free(d->ca);
        free(s->pool);
    }
    d->ca = NULL;
    FREE_AND_NULL(d->bundle_pem);
    free(s->applied_crt);
    free(s->applied_ca);
    json_decref(s->meshed);
    json_decref(s->inflight);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, srv_timer_closed);
}
