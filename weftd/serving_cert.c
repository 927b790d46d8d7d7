/*
 * serving_cert.c - weftd's serving certificates (struct weftd_serving_cert): a TLS server
 * context whose certificate weftd's own CA issues for a fixed set of names, renewed at
 * half-life and whenever the signer changes. The certificate endpoint (cert_endpoint.c) and the
 * injection webhook (webhook_server.c) serve with one each.
 *
 * Issuance (a P-256 key generation, then signing) runs on libuv's worker pool with the shared
 * struct ca, which allows issuing from any thread (ca.h). The job holds the CA and this state
 * (core/hold.h): a stop while it runs frees the CA, and this state, only after it. The key never
 * leaves this process: it goes from the worker straight into the SSL_CTX and is wiped.
 */
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "tls/tls.h"
#include "weftd/weftd_int.h"

#define RETRY_S 5 /* a failed issuance is tried again after this long */

struct serving_job;

struct weftd_serving_cert {
    struct weftd *d;
    SSL_CTX *ctx;
    char **dns, **ips;
    size_t ndns, nips;
    weftd_serving_cert_fn *on_issued;
    void *arg;
    uv_timer_t timer;
    struct serving_job *job;
    bool again; /* refresh asked for while a job was running */
    bool ready;
    struct hold hold; /* owner, timer handle, job; gone once freed by the owner */
    time_t renew_at;
};

struct serving_job {
    uv_work_t w;
    struct weftd_serving_cert *t;
    struct ca *ca;
    struct hold *ca_hold;
    long ttl;
    int rc;
    struct ca_leaf leaf;
    char *key_pem;
};

static void cert_release(void *obj)
{
    struct weftd_serving_cert *t = obj;

    for (size_t i = 0; i < t->ndns; i++)
        free(t->dns[i]);
    for (size_t i = 0; i < t->nips; i++)
        free(t->ips[i]);
    free(t->dns);
    free(t->ips);
    SSL_CTX_free(t->ctx);
    free(t);
}

static void timer_closed(uv_handle_t *h)
{
    struct weftd_serving_cert *t = h->data;
    hold_put(&t->hold);
}

static const char *cert_name(const struct weftd_serving_cert *t)
{
    return t->ndns ? t->dns[0] : t->ips[0];
}

/* Worker thread: key and certificate from the shared CA. */
static void serving_work(uv_work_t *w)
{
    struct serving_job *j = w->data;
    struct weftd_serving_cert *t = j->t;

    j->rc = ca_issue_server(j->ca, (const char *const *)t->dns, t->ndns,
                            (const char *const *)t->ips, t->nips, j->ttl, &j->leaf, &j->key_pem);
    /* libuv's pool threads live until exit: release OpenSSL's per-thread state (error queue,
     * DRBGs) now rather than leaving it to thread exit that never comes */
    OPENSSL_thread_stop();
}

static void cert_arm(struct weftd_serving_cert *t, time_t delay_s);

/* Install the new certificate (loop thread). */
static int cert_install(struct weftd_serving_cert *t, const struct serving_job *j)
{
    struct ca_cert_info info;
    char na[32];
    struct tm tm;
    int rc = tls_set_identity(t->ctx, j->leaf.chain_pem, j->key_pem);

    if (!rc)
        rc = ca_cert_info(j->leaf.chain_pem, j->leaf.chain_len, &info);
    if (rc)
        return rc;
    gmtime_r(&info.not_after, &tm);
    strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
    t->ready = true;
    t->renew_at = info.renew_at;
    log_info("msg=\"serving certificate issued\" name=%s notAfter=%s", cert_name(t), na);
    cert_arm(t, info.renew_at - time(NULL));
    if (t->on_issued)
        t->on_issued(t->arg, j->leaf.chain_pem, j->key_pem);
    return 0;
}

static void serving_after(uv_work_t *w, int status)
{
    struct serving_job *j = w->data;
    struct weftd_serving_cert *t = j->t;
    int rc = status ? status : j->rc;

    hold_put(j->ca_hold);
    t->job = NULL;
    if (!hold_gone(&t->hold)) {
        if (!rc)
            rc = cert_install(t, j);
        if (rc) {
            log_error("msg=\"cannot issue serving certificate\" name=%s error=%s", cert_name(t),
                      err_str(rc));
            cert_arm(t, RETRY_S);
        }
    }
    ca_leaf_release(&j->leaf);
    ca_key_pem_free(j->key_pem);
    free(j);
    if (!hold_gone(&t->hold) && t->again) {
        t->again = false;
        weftd_serving_cert_refresh(t);
    }
    hold_put(&t->hold);
}

static void on_timer(uv_timer_t *h)
{
    struct weftd_serving_cert *t = h->data;
    if (!t->ready || time(NULL) >= t->renew_at)
        weftd_serving_cert_refresh(t);
    else
        cert_arm(t, t->renew_at - time(NULL));
}

static void cert_arm(struct weftd_serving_cert *t, time_t delay_s)
{
    if (delay_s < 1)
        delay_s = 1;
    if (delay_s > 3600) /* re-checked hourly: the wall clock may jump */
        delay_s = 3600;
    uv_timer_start(&t->timer, on_timer, (uint64_t)delay_s * 1000, 0);
}

int weftd_serving_cert_new(struct weftd *d, const char *const *dns, size_t ndns,
                           const char *const *ips, size_t nips, weftd_serving_cert_fn *on_issued,
                           void *arg, struct weftd_serving_cert **out)
{
    struct weftd_serving_cert *t;
    int rc = -ENOMEM;

    if (!ndns && !nips)
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    hold_init(&t->hold, t, cert_release);
    t->d = d;
    t->on_issued = on_issued;
    t->arg = arg;
    t->dns = calloc(ndns + 1, sizeof(char *));
    t->ips = calloc(nips + 1, sizeof(char *));
    if (!t->dns || !t->ips || (rc = tls_server_ctx_new(&t->ctx)) != 0)
        goto fail;
    rc = -ENOMEM;
    for (; t->ndns < ndns; t->ndns++)
        if (!(t->dns[t->ndns] = strdup(dns[t->ndns])))
            goto fail;
    for (; t->nips < nips; t->nips++)
        if (!(t->ips[t->nips] = strdup(ips[t->nips])))
            goto fail;
    uv_timer_init(d->loop, &t->timer);
    t->timer.data = t;
    hold_get(&t->hold); /* the timer handle's, put by timer_closed */
    *out = t;
    return 0;
fail:
    hold_put(&t->hold);
    return rc;
}

SSL_CTX *weftd_serving_cert_ctx(const struct weftd_serving_cert *t)
{
    return t->ctx;
}

bool weftd_serving_cert_ready(const struct weftd_serving_cert *t)
{
    return t && t->ready;
}

void weftd_serving_cert_refresh(struct weftd_serving_cert *t)
{
    struct serving_job *j;

    if (!t || hold_gone(&t->hold) || !t->d->ca)
        return;
    if (t->job) {
        t->again = true;
        return;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        cert_arm(t, RETRY_S);
        return;
    }
    j->t = t;
    j->ca = t->d->ca;
    j->ca_hold = hold_get(t->d->ca_hold);
    j->ttl = t->d->opts.cert_ttl;
    j->w.data = j;
    if (uv_queue_work(t->d->loop, &j->w, serving_work, serving_after) != 0) {
        hold_put(j->ca_hold);
        free(j);
        cert_arm(t, RETRY_S);
        return;
    }
    t->job = j;
    hold_get(&t->hold);
}

void weftd_serving_cert_free(struct weftd_serving_cert *t)
{
    if (!t)
        return;
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, timer_closed);
    hold_drop(&t->hold);
}
