/*
 * admin.c - weftd's admin endpoint (plain HTTP, 15014 by default): Prometheus metrics, liveness,
 * readiness (informers synced and the CA loaded), open to all; and the compiled document of any
 * proxy under /debug/, for bearer tokens allowed to get /debug/config (debug_auth.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/log.h"
#include "weftd/weftd_int.h"

static const char *const status_results[WEFTD_STATUS_NRESULTS] = {
    [WEFTD_STATUS_WRITTEN] = "written",     [WEFTD_STATUS_UNCHANGED] = "unchanged",
    [WEFTD_STATUS_NOT_FOUND] = "not_found", [WEFTD_STATUS_CONFLICT] = "conflict",
    [WEFTD_STATUS_ERROR] = "error",
};

static void respond_text(struct http_conn *c, int code, const char *text)
{
    http_respond(c, code, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

static int metrics(struct weftd *d, struct buf *b)
{
    const struct weftd_metrics *m = &d->m;
    json_t *stats = mesh_model_stats(d->model);
    struct kube_recorder_stats ev;
    const char *k;
    json_t *v;
    int rc = 0;

#define COUNTER(name, help, val)                                                                   \
    rc = rc ? rc                                                                                   \
            : buf_printf(b, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n",  \
                         (unsigned long long)(val))
#define SUM(name, help, val)                                                                       \
    rc = rc ? rc                                                                                   \
            : buf_printf(b, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %.6f\n",  \
                         (double)(val))
    COUNTER("weft_reconciles_total", "Keys reconciled.", m->reconciles);
    if (!rc)
        rc = buf_printf(b, "# HELP weft_reconcile_errors_total Reconciles that failed, by "
                           "resource.\n# TYPE weft_reconcile_errors_total counter\n");
    for (size_t i = 0; i < d->nwatches && !rc; i++) {
        const struct kube_resource *r = &d->watches[i].res;
        rc = buf_printf(b, "weft_reconcile_errors_total{resource=\"%s%s%s\"} %llu\n", r->plural,
                        *r->group ? "." : "", r->group,
                        (unsigned long long)d->watches[i].reconcile_errors);
    }
    if (!rc)
        rc = weftd_hist_print(b, "weft_reconcile_duration_seconds", "Time to reconcile one key.",
                              &m->reconcile_seconds);
    COUNTER("weft_proxy_compiles_total", "Proxy documents compiled.", m->compiles);
    COUNTER("weft_proxy_compiles_changed_total", "Compiles that changed a document.",
            m->compiles_changed);
    COUNTER("weft_proxy_compile_failures_total",
            "Compiles that failed (out of memory); the proxy keeps its last good document.",
            mesh_model_compile_failures(d->model));
    if (!rc)
        rc = weftd_hist_print(b, "weft_proxy_compile_duration_seconds",
                              "Time to compile one proxy document.", &m->compile_seconds);
    if (!rc)
        rc = weftd_hist_print(b, "weft_compile_pass_duration_seconds",
                              "Time to compile every changed proxy after a batch of reconciles.",
                              &m->compile_pass_seconds);
    if (!rc)
        rc = buf_printf(b, "# HELP weft_status_writes_total Status evaluations of custom "
                           "resources (leader only), by result.\n# TYPE weft_status_writes_total "
                           "counter\n");
    for (size_t i = 0; i < WEFTD_STATUS_NRESULTS && !rc; i++)
        rc = buf_printf(b, "weft_status_writes_total{result=\"%s\"} %llu\n", status_results[i],
                        (unsigned long long)m->status[i]);
    weftd_sync_event_stats(d, &ev);
    if (!rc)
        rc = buf_printf(b,
                        "# HELP weft_events_total Kubernetes Events for condition changes, by "
                        "result.\n# TYPE weft_events_total counter\n"
                        "weft_events_total{result=\"created\"} %u\n"
                        "weft_events_total{result=\"aggregated\"} %u\n"
                        "weft_events_total{result=\"failed\"} %u\n"
                        "weft_events_total{result=\"dropped\"} %u\n",
                        ev.created, ev.patched, ev.failed, ev.dropped);
    COUNTER("weft_certificates_issued_total", "Workload certificates issued.", m->certs_issued);
    SUM("weft_certificate_issue_seconds_total", "Time spent issuing.", m->issue_seconds_sum);
    COUNTER("weft_webhook_reviews_total", "AdmissionReviews answered.", m->webhook_reviews);
    COUNTER("weft_webhook_errors_total",
            "AdmissionReviews answered with an error (400 malformed, 500 out of memory).",
            m->webhook_errors);
    if (!rc)
        rc = buf_printf(b, "# HELP weft_webhook_decisions_total AdmissionReviews by what the "
                           "webhook decided.\n# TYPE weft_webhook_decisions_total counter\n");
    for (int o = WEBHOOK_OUTCOME_INJECTED; o < WEBHOOK_OUTCOME_NOUTCOMES && !rc; o++)
        rc = buf_printf(b, "weft_webhook_decisions_total{outcome=\"%s\"} %llu\n",
                        webhook_outcome_name((enum webhook_outcome)o),
                        (unsigned long long)m->webhook_outcomes[o]);
    if (!rc)
        rc = buf_printf(b,
                        "# HELP weft_webhook_inflight AdmissionReviews queued or being answered.\n"
                        "# TYPE weft_webhook_inflight gauge\nweft_webhook_inflight %llu\n"
                        "# HELP weft_webhook_shed_total AdmissionReviews not answered, by reason: "
                        "queue_full (503 at once), expired (waited past the API server's "
                        "timeout).\n# TYPE weft_webhook_shed_total counter\n"
                        "weft_webhook_shed_total{reason=\"queue_full\"} %llu\n"
                        "weft_webhook_shed_total{reason=\"expired\"} %llu\n",
                        (unsigned long long)m->webhook_inflight,
                        (unsigned long long)m->webhook_shed_full,
                        (unsigned long long)m->webhook_shed_expired);
    if (!rc)
        rc = weftd_hist_print(b, "weft_webhook_review_duration_seconds",
                              "Time from a review's arrival to its answer being queued.",
                              &m->webhook_seconds);
    if (!rc)
        rc = buf_printf(b, "# HELP weft_certificates_refused_total Certificate requests "
                           "refused, by reason.\n# TYPE weft_certificates_refused_total "
                           "counter\n");
    for (size_t i = 0; i < ARRAY_LEN(m->certs_refused) && !rc; i++) {
        if (m->certs_refused[i])
            rc = buf_printf(b, "weft_certificates_refused_total{reason=\"%s\"} %llu\n",
                            i == WEFTD_REFUSED_AUTH ? "Unauthenticated"
                                                    : ca_refusal_str((enum ca_refusal)i),
                            (unsigned long long)m->certs_refused[i]);
    }
    if (!rc)
        rc = buf_printf(b, "# HELP weft_model_objects Objects held by the mesh model.\n"
                           "# TYPE weft_model_objects gauge\n");
    json_object_foreach(stats, k, v)
    {
        if (!rc)
            rc = buf_printf(b, "weft_model_objects{kind=\"%s\"} %lld\n", k,
                            (long long)json_integer_value(v));
    }
    if (!rc)
        rc = buf_printf(b,
                        "# HELP weft_proxies Meshed proxies with a compiled document.\n"
                        "# TYPE weft_proxies gauge\nweft_proxies %zu\n",
                        json_object_size(d->docs));
    if (!rc)
        rc = buf_printf(b,
                        "# HELP weft_queue_depth Keys waiting in the work queue.\n"
                        "# TYPE weft_queue_depth gauge\nweft_queue_depth %zu\n",
                        d->queue ? wq_len(d->queue) : 0);
    for (size_t i = 0; i < d->nwatches && !rc; i++) {
        if (i == 0)
            rc = buf_printf(b, "# HELP weft_cache_objects Objects in each informer's cache.\n"
                               "# TYPE weft_cache_objects gauge\n");
        if (!rc)
            rc = buf_printf(b, "weft_cache_objects{group=\"%s\",resource=\"%s\"} %zu\n",
                            d->watches[i].res.group, d->watches[i].res.plural,
                            json_object_size(kube_informer_cache(d->watches[i].inf)));
    }
    if (!rc && d->ca)
        rc = buf_printf(b,
                        "# HELP weft_ca_root_expiry_seconds Seconds until the signing root "
                        "(or intermediate) expires.\n# TYPE weft_ca_root_expiry_seconds "
                        "gauge\nweft_ca_root_expiry_seconds %lld\n",
                        (long long)(ca_signer_not_after(ca_signer_get(d->ca)) - time(NULL)));
    if (!rc)
        rc = weftd_http_metrics(d, b);
    if (!rc)
        rc = weftd_stream_metrics(d, b);
    if (!rc)
        rc = weftd_programmed_metrics(d, b);
    if (!rc)
        rc = buf_printf(
            b,
            "# HELP weft_debug_requests_total /debug/ requests by outcome (a bearer "
            "token authorized for get on /debug/<endpoint>).\n"
            "# TYPE weft_debug_requests_total counter\n"
            "weft_debug_requests_total{result=\"allowed\"} %llu\n"
            "weft_debug_requests_total{result=\"unauthenticated\"} %llu\n"
            "weft_debug_requests_total{result=\"forbidden\"} %llu\n"
            "weft_debug_requests_total{result=\"unavailable\"} %llu\n",
            (unsigned long long)m->debug_allowed, (unsigned long long)m->debug_unauthenticated,
            (unsigned long long)m->debug_forbidden, (unsigned long long)m->debug_unavailable);
    if (!rc)
        rc = buf_printf(b,
                        "# HELP weft_leader Whether this replica holds the lease.\n"
                        "# TYPE weft_leader gauge\nweft_leader %d\n",
                        d->leading ? 1 : 0);
#undef COUNTER
#undef SUM
    json_decref(stats);
    return rc;
}

/* /debug/ once authorized (debug_auth.c): the compiled document of one proxy. */
static void serve_debug(struct weftd *d, struct http_conn *c, const struct http_request *req)
{
    if (strncmp(req->path, "/debug/config/", 14) == 0) {
        const char *key = req->path + 14;
        json_t *doc = json_object_get(d->docs, key);
        char *s;
        if (!strchr(key, '/')) {
            respond_text(c, 400, "use /debug/config/<namespace>/<pod>\n");
            return;
        }
        if (!doc) {
            char msg[700];
            snprintf(msg, sizeof(msg),
                     "no compiled configuration for pod %s (not found, or not meshed)\n", key);
            respond_text(c, 404, msg);
            return;
        }
        s = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!s) {
            respond_text(c, 500, "out of memory\n");
            return;
        }
        http_respond(c, 200, "application/json", s, strlen(s), NULL);
        free(s);
    } else if (strcmp(req->path, "/debug/proxies") == 0 ||
               strncmp(req->path, "/debug/proxies/", 15) == 0) {
        weftd_stream_debug(d, c, req);
    } else {
        respond_text(c, 404, "not found\n");
    }
}

static void handle(void *arg, struct http_conn *c, const struct http_request *req)
{
    struct weftd *d = arg;

    if (strcmp(req->method, "GET") != 0) {
        respond_text(c, 405, "method not allowed\n");
        return;
    }
    if (strcmp(req->path, "/healthz") == 0) {
        respond_text(c, 200, "ok\n");
    } else if (strcmp(req->path, "/readyz") == 0) {
        bool synced = weftd_synced(d), ca = d->ca != NULL;
        char msg[256];
        snprintf(msg, sizeof(msg), "%s\ninformers synced: %s\nca loaded: %s\n",
                 synced && ca ? "ok" : "not ready", synced ? "yes" : "no", ca ? "yes" : "no");
        respond_text(c, synced && ca ? 200 : 503, msg);
    } else if (strcmp(req->path, "/metrics") == 0) {
        struct buf b;
        buf_init(&b);
        if (metrics(d, &b))
            respond_text(c, 500, "out of memory\n");
        else
            http_respond(c, 200, "text/plain; version=0.0.4", b.p, b.len, NULL);
        buf_release(&b);
    } else if (strncmp(req->path, "/debug/", 7) == 0) {
        weftd_debug_authorize(d, c, req, serve_debug);
    } else {
        respond_text(c, 404, "not found\n");
    }
}

int weftd_admin_start(struct weftd *d)
{
    return weftd_http_listen(d, WEFTD_LISTENER_ADMIN, d->opts.admin_listen, NULL, handle, d,
                             &d->admin);
}

void weftd_admin_stop(struct weftd *d)
{
    if (!d->admin)
        return;
    weftd_http_detach(d, d->admin);
    http_server_free(d->admin);
    d->admin = NULL;
}
