/*
 * webhook_server.c - the injection webhook inside weftd: POST /inject (pods of meshed namespaces)
 * and POST /inject/opt-in (pods elsewhere, injected only when they ask) over HTTPS, and the
 * MutatingWebhookConfiguration weft-injector that points the API server at them.
 *
 * The serving certificate comes from weftd's own CA (struct weftd_serving_cert, serving_cert.c) for
 * <webhook-service>.<ns>.svc, <webhook-service>.<ns>.svc.cluster.local, localhost, 127.0.0.1 and
 * the host of --webhook-url; it is re-issued at half-life and whenever the CA's signer changes.
 * Until the CA is ready the port is bound but has no certificate, so handshakes fail and the API
 * server applies the configuration's failurePolicy.
 *
 * weft-injector is written by the leader only, by server-side apply (field manager weftd,
 * force), once the trust bundle and this replica's serving certificate exist, and again when
 * the bundle changes, when this replica becomes leader, and when someone else changes the
 * configuration's clientConfig (an informer on that one object). Its caBundle is the whole
 * trust bundle, so a serving certificate from a new root verifies during a rotation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/log.h"
#include "weftd/weftd_int.h"

#define WEBHOOK_CONFIG "weft-injector"
#define WEBHOOK_NAME "inject.weft.dev"
#define WEBHOOK_OPT_IN_NAME "opt-in.inject.weft.dev"
#define WEBHOOK_OPT_IN_SUFFIX "/opt-in" /* of the path and of --webhook-url */
#define REGISTER_RETRY_MS 2000

static const struct kube_resource res_mwc = {"admissionregistration.k8s.io", "v1",
                                             "mutatingwebhookconfigurations", false};

struct weftd_webhook {
    struct weftd *d;
    struct weftd_serving_cert *tls;
    uv_timer_t timer;
    struct kube_informer *inf;
    struct kube_call *kc; /* the apply in flight */
    bool dirty;           /* weft-injector needs writing */
    int main_idx;         /* where inject.weft.dev was in the last weft-injector seen (0) */
    int opt_in_idx;       /* where opt-in.inject.weft.dev was, -1: not there */
    char *applied_bundle; /* caBundle of the last successful write */
    char url_host[256];   /* host of --webhook-url ("" when none) */
};

/* ---- POST /inject ------------------------------------------------------------------------- */

/*
 * Reviews run on libuv's worker pool, so injection uses every core while the loop keeps serving
 * TLS, watches and the other endpoints. webhook_review() is thread-safe (the configuration is
 * read-only once weftd runs). A job refers to struct weftd, which outlives every job (main()
 * drains the loop before returning), never to the server, which may be gone when it finishes.
 * The job keeps itself through core/hold.h: the request's reference goes when it is answered or
 * the client goes away (hold_gone: nothing is answered then), the worker's in review_done.
 */
struct review_job {
    struct hold hold;
    uv_work_t work;
    struct weftd *d;
    const struct inject_config *cfg; /* d->inject or d->inject_opt_in */
    struct http_conn *c;             /* valid while !hold_gone(&hold) */
    char *body;
    size_t len;
    char *resp;
    int status;
    int rc;
    struct webhook_review_info info;
    bool inline_; /* reviewed inside the handler: the server's own round writes the answer */
    bool expired; /* waited in the queue past the API server's deadline: not reviewed */
    uint64_t t0, deadline; /* uv_hrtime() at arrival and when the API server gives up */
};

static void review_gone(void *arg, struct http_conn *c)
{
    struct review_job *j = arg;
    (void)c;
    j->c = NULL;
    hold_drop(&j->hold);
}

static void review_release(void *obj)
{
    struct review_job *j = obj;

    free(j->resp);
    free(j->body);
    free(j);
}

static void review_work(uv_work_t *req)
{
    struct review_job *j = req->data;

    /* The API server has given up on this one: answering it would only delay the others. */
    if (uv_hrtime() >= j->deadline) {
        j->expired = true;
        return;
    }
    j->rc = webhook_review_explain(j->cfg, j->body, j->len, &j->resp, &j->status, &j->info);
}

/* At most one warning a second about shed reviews (they come in floods). */
static void shed_warn(struct weftd *d, const char *reason, const char *what)
{
    uint64_t now = uv_hrtime();

    if (d->m.webhook_shed_log_ns && now - d->m.webhook_shed_log_ns < 1000000000ull)
        return;
    d->m.webhook_shed_log_ns = now;
    log_warn("msg=\"webhook overloaded: reviews shed\" reason=%s detail=\"%s\" inflight=%llu "
             "max=%ld queue_full=%llu expired=%llu",
             reason, what, (unsigned long long)d->m.webhook_inflight, d->opts.webhook_max_inflight,
             (unsigned long long)d->m.webhook_shed_full,
             (unsigned long long)d->m.webhook_shed_expired);
}

/*
 * The API server's deadline for this call in ms: it sends ?timeout=<Go duration> (the
 * configuration's timeoutSeconds, "10s"). 10 s when absent or unreadable; at most 30 s.
 */
static uint64_t review_timeout_ms(const char *query)
{
    const char *p = query ? strstr(query, "timeout=") : NULL;
    double ms = 0;
    char *end;

    if (!p || (p != query && p[-1] != '&'))
        return 10000;
    p += 8;
    while (*p && *p != '&') {
        double v = strtod(p, &end);
        static const struct {
            const char *unit;
            double ms;
        } units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"ms", 1},
                     {"s", 1000},  {"m", 60000}, {"h", 3600000}};
        size_t i;

        if (end == p || !(v >= 0 && v <= 1e9)) /* also NaN */
            return 10000;
        for (i = 0; i < ARRAY_LEN(units); i++)
            if (!strncmp(end, units[i].unit, strlen(units[i].unit)) &&
                (i != 4 || end[1] != 's')) /* "m" but not "ms" */
                break;
        if (i == ARRAY_LEN(units))
            return 10000;
        ms += v * units[i].ms;
        p = end + strlen(units[i].unit);
    }
    return ms > 30000 ? 30000 : (uint64_t)ms;
}

/* s for a quoted logfmt value: double quotes become single ones, control bytes spaces. */
static const char *log_safe(const char *s, char *out, size_t n)
{
    size_t i = 0;

    for (; s[i] && i + 1 < n; i++)
        out[i] = s[i] == '"' ? '\'' : (unsigned char)s[i] < 0x20 ? ' ' : s[i];
    out[i] = '\0';
    return out;
}

static void review_done(uv_work_t *req, int cancelled)
{
    struct review_job *j = req->data;
    struct weftd *d = j->d;
    char why[sizeof(j->info.reason)], who[sizeof(j->info.pod)];

    d->m.webhook_inflight--;
    if (j->expired) {
        d->m.webhook_shed_expired++;
        shed_warn(d, "expired", "a review waited in the queue past the API server's timeout");
        if (j->c)
            http_respond(j->c, 503, "text/plain", "review expired in the queue\n", 28,
                         "Retry-After: 1\r\n");
    } else if (cancelled || j->rc) {
        d->m.webhook_errors++;
        if (j->c)
            http_respond(j->c, 500, "text/plain", "out of memory\n", 14, NULL);
    } else {
        if (j->status != 200)
            d->m.webhook_errors++;
        if ((unsigned)j->info.outcome < ARRAY_LEN(d->m.webhook_outcomes))
            d->m.webhook_outcomes[j->info.outcome]++;
        /*
         * Every decision is visible: injections at info, refusals at warn, skips (the opt-in
         * webhook sees every pod in the cluster) and pass-throughs at debug.
         */
        switch (j->info.outcome) {
        case WEBHOOK_OUTCOME_INJECTED:
            log_info("msg=\"pod injected\" pod=\"%s\" path=%s",
                     log_safe(j->info.pod, who, sizeof(who)),
                     j->cfg->opt_in_only ? "opt-in" : "namespace");
            break;
        case WEBHOOK_OUTCOME_DENIED:
        case WEBHOOK_OUTCOME_BAD_REQUEST:
            log_warn("msg=\"review refused\" outcome=%s pod=\"%s\" reason=\"%s\"",
                     webhook_outcome_name(j->info.outcome), log_safe(j->info.pod, who, sizeof(who)),
                     log_safe(j->info.reason, why, sizeof(why)));
            break;
        default:
            /* the common case on the opt-in path: no copying when debug lines are off */
            if (!log_enabled(LOG_DEBUG))
                break;
            log_debug("msg=\"pod not injected\" outcome=%s pod=\"%s\" reason=\"%s\"",
                      webhook_outcome_name(j->info.outcome),
                      log_safe(j->info.pod, who, sizeof(who)),
                      log_safe(j->info.reason, why, sizeof(why)));
        }
        if (j->c)
            http_respond(j->c, j->status, "application/json", j->resp, strlen(j->resp), NULL);
    }
    weftd_hist_observe(&d->m.webhook_seconds, (double)(uv_hrtime() - j->t0) / 1e9);
    if (!hold_gone(&j->hold)) {
        if (d->webhook && !j->inline_)
            weftd_http_kick(d, d->webhook);
        hold_drop(&j->hold); /* answered */
    }
    hold_put(&j->hold); /* the worker's */
}

static void handle(void *arg, struct http_conn *c, const struct http_request *req)
{
    struct weftd_webhook *w = arg;
    struct weftd *d = w->d;
    struct review_job *j;
    const struct inject_config *cfg;

    /* /inject: pods of selected namespaces; /inject/opt-in: pods elsewhere that may ask */
    if (strcmp(req->path, "/inject") == 0)
        cfg = &d->inject;
    else if (strcmp(req->path, "/inject" WEBHOOK_OPT_IN_SUFFIX) == 0)
        cfg = &d->inject_opt_in;
    else
        cfg = NULL;
    if (!cfg) {
        http_respond(c, 404, "text/plain", "not found\n", 10, NULL);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        http_respond(c, 405, "text/plain", "use POST\n", 9, "Allow: POST\r\n");
        return;
    }
    d->m.webhook_reviews++;
    /*
     * Overloaded: fail fast, so that the API server applies failurePolicy now (and the
     * controllers back off) instead of every call waiting out its timeout in our queue.
     */
    if (d->m.webhook_inflight >= (uint64_t)d->opts.webhook_max_inflight) {
        d->m.webhook_shed_full++;
        shed_warn(d, "queue_full", "max in flight reached; answering 503");
        http_respond(c, 503, "text/plain", "too many reviews in flight\n", 27,
                     "Retry-After: 1\r\n");
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j)
        j->body = malloc(req->body_len + 1);
    if (!j || !j->body) {
        free(j);
        d->m.webhook_errors++;
        http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL);
        return;
    }
    memcpy(j->body, req->body, req->body_len);
    j->body[req->body_len] = '\0';
    j->len = req->body_len;
    hold_init(&j->hold, j, review_release);
    hold_get(&j->hold); /* the worker's, put by review_done */
    j->d = d;
    j->cfg = cfg;
    j->c = c;
    j->t0 = uv_hrtime();
    j->deadline = j->t0 + review_timeout_ms(req->query) * 1000000ull;
    d->m.webhook_inflight++;
    j->work.data = j;
    http_defer(c, review_gone, j);
    if (uv_queue_work(d->loop, &j->work, review_work, review_done)) {
        /* no worker: review on the loop thread */
        j->inline_ = true;
        review_work(&j->work);
        review_done(&j->work, 0);
    }
}

/* ---- weft-injector ------------------------------------------------------------------------ */

/* Out of cluster: the URL the API server calls for one webhook. */
static void hook_url(const struct weftd *d, bool opt_in, char *out, size_t n)
{
    snprintf(out, n, "%s%s", d->opts.webhook_url, opt_in ? WEBHOOK_OPT_IN_SUFFIX : "");
}

/* clientConfig of one webhook: the URL (out of cluster) or the Service. */
static json_t *client_config(const struct weftd_webhook *w, bool opt_in, const char *ca_bundle_b64)
{
    const struct weftd *d = w->d;
    char target[1200];

    if (d->opts.webhook_url) {
        hook_url(d, opt_in, target, sizeof(target));
        return json_pack("{s:s,s:s}", "url", target, "caBundle", ca_bundle_b64);
    }
    snprintf(target, sizeof(target), "/inject%s", opt_in ? WEBHOOK_OPT_IN_SUFFIX : "");
    return json_pack("{s:{s:s,s:s,s:s,s:i},s:s}", "service", "namespace", d->opts.namespace, "name",
                     d->opts.webhook_service, "path", target, "port", 443, "caBundle",
                     ca_bundle_b64);
}

/*
 * One webhook of weft-injector: pods only, on CREATE; pods labelled weft.dev/inject=false are
 * never sent (they then start even while the webhook is down). Everything else (annotations,
 * hostNetwork, system namespaces, pods already injected, opting in) is decided by the library.
 */
static json_t *webhook_entry(const char *name, json_t *cc, json_t *ns_selector,
                             const char *failure_policy, int timeout)
{
    return json_pack("{s:s,s:o,s:[{s:[s],s:[s],s:[s],s:[s],s:s}],s:o,"
                     "s:{s:[{s:s,s:s,s:[s]}]},s:s,s:s,s:s,s:i,s:s,s:[s]}",
                     "name", name, "clientConfig", cc, "rules", "operations", "CREATE", "apiGroups",
                     "", "apiVersions", "v1", "resources", "pods", "scope", "Namespaced",
                     "namespaceSelector", ns_selector, "objectSelector", "matchExpressions", "key",
                     "weft.dev/inject", "operator", "NotIn", "values", "false", "failurePolicy",
                     failure_policy, "matchPolicy", "Equivalent", "sideEffects", "None",
                     "timeoutSeconds", timeout, "reinvocationPolicy", "IfNeeded",
                     "admissionReviewVersions", "v1");
}

/*
 * The configuration weftd wants, for the current bundle (out of cluster; in cluster the chart
 * writes the same two webhooks from its values):
 *   inject.weft.dev         namespaces labelled weft.dev/inject=enabled; failurePolicy Fail
 *   opt-in.inject.weft.dev  every other namespace except weft.dev/inject=disabled, weftd's own
 *                           and kube-system, for pods that opt in; failurePolicy Ignore, so that
 *                           pods outside the mesh never wait for weftd
 */
static json_t *desired_config(const struct weftd_webhook *w, const char *ca_bundle_b64)
{
    const struct weftd *d = w->d;
    json_t *main_hook, *opt_in;

    main_hook = webhook_entry(WEBHOOK_NAME, client_config(w, false, ca_bundle_b64),
                              json_pack("{s:{s:s}}", "matchLabels", "weft.dev/inject", "enabled"),
                              "Fail", 10);
    opt_in =
        webhook_entry(WEBHOOK_OPT_IN_NAME, client_config(w, true, ca_bundle_b64),
                      json_pack("{s:[{s:s,s:s,s:[s,s]},{s:s,s:s,s:[s,s]}]}", "matchExpressions",
                                "key", "weft.dev/inject", "operator", "NotIn", "values", "enabled",
                                "disabled", "key", "kubernetes.io/metadata.name", "operator",
                                "NotIn", "values", d->opts.namespace, "kube-system"),
                      "Ignore", 5);
    if (!main_hook || !opt_in) {
        json_decref(main_hook);
        json_decref(opt_in);
        return NULL;
    }
    return json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:[o,o]}", "apiVersion",
                     "admissionregistration.k8s.io/v1", "kind", "MutatingWebhookConfiguration",
                     "metadata", "name", WEBHOOK_CONFIG, "labels", "app.kubernetes.io/managed-by",
                     "weftd", "webhooks", main_hook, opt_in);
}

/* JSON patch ops: test that webhook idx is `name`, then set its caBundle. */
static int bundle_ops(json_t *ops, int idx, const char *name, const char *b64)
{
    char np[64], bp[64];

    snprintf(np, sizeof(np), "/webhooks/%d/name", idx);
    snprintf(bp, sizeof(bp), "/webhooks/%d/clientConfig/caBundle", idx);
    if (json_array_append_new(
            ops, json_pack("{s:s,s:s,s:s}", "op", "test", "path", np, "value", name)) < 0 ||
        json_array_append_new(
            ops, json_pack("{s:s,s:s,s:s}", "op", "add", "path", bp, "value", b64)) < 0)
        return -ENOMEM;
    return 0;
}

static void register_now(struct weftd_webhook *w);

static void applied(void *arg, int err, long status, json_t *body)
{
    struct weftd_webhook *w = arg;
    int rc = kube_result_err(err, status, body);

    w->kc = NULL;
    if (rc) {
        log_warn("msg=\"cannot write the webhook configuration\" name=" WEBHOOK_CONFIG
                 " error=%s message=\"%s\"",
                 err_str(rc), kube_status_message(body));
        FREE_AND_NULL(w->applied_bundle);
        w->dirty = true;
        return;
    }
    log_info("msg=\"webhook configuration written\" name=" WEBHOOK_CONFIG " target=%s",
             w->d->opts.webhook_url ? w->d->opts.webhook_url : w->d->opts.webhook_service);
    if (w->dirty)
        register_now(w);
}

/* Write weft-injector if this replica may and something changed. */
static void register_now(struct weftd_webhook *w)
{
    struct weftd *d = w->d;
    char path[512];
    char *b64 = NULL;
    json_t *cfg = NULL;
    int rc;

    if (!d->leading || !d->bundle_pem || !weftd_serving_cert_ready(w->tls) || w->kc)
        return;
    if (!w->dirty && w->applied_bundle && strcmp(w->applied_bundle, d->bundle_pem) == 0)
        return;
    b64 = base64_encode(d->bundle_pem, strlen(d->bundle_pem));
    rc = b64 ? kube_path(&res_mwc, NULL, WEBHOOK_CONFIG, NULL, path, sizeof(path)) : -ENOMEM;
    if (!rc && d->opts.webhook_url) {
        /* Out of cluster weftd owns the whole configuration (tests, the demo). */
        cfg = desired_config(w, b64);
        rc = cfg && strlen(path) + 40 < sizeof(path) ? 0 : -ENOMEM;
        if (!rc) {
            strcat(path, "?fieldManager=weftd&force=true");
            rc = kube_request(d->kube, "PATCH", path, cfg, "application/apply-patch+yaml", applied,
                              w, &w->kc);
        }
    } else if (!rc) {
        /*
         * In cluster the Helm chart owns weft-injector; weftd only keeps its caBundle in step.
         * A JSON patch never creates the object (a missing configuration stays missing, so an
         * uninstall is never undone) and the test op makes sure the first webhook is ours.
         */
        cfg = json_array();
        rc = cfg ? bundle_ops(cfg, w->main_idx, WEBHOOK_NAME, b64) : -ENOMEM;
        if (!rc && w->opt_in_idx >= 0)
            rc = bundle_ops(cfg, w->opt_in_idx, WEBHOOK_OPT_IN_NAME, b64);
        if (!rc)
            rc = kube_request(d->kube, "PATCH", path, cfg, "application/json-patch+json", applied,
                              w, &w->kc);
    }
    if (!rc) {
        free(w->applied_bundle);
        w->applied_bundle = strdup(d->bundle_pem);
        w->dirty = !w->applied_bundle;
    } else {
        log_warn("msg=\"cannot write the webhook configuration\" error=%s", err_str(rc));
        w->dirty = true;
    }
    free(b64);
    json_decref(cfg);
}

/* Someone changed or deleted weft-injector: write it back if its target or trust differ. */
static void on_config_event(void *arg, enum kube_event_type type, const char *key,
                            const json_t *obj)
{
    struct weftd_webhook *w = arg;
    const json_t *hooks = json_object_get(obj, "webhooks");
    char *want = NULL;
    bool stale = type == KUBE_EVENT_DELETED;
    int ours = 0;

    (void)key;
    if (!w->d->bundle_pem)
        return;
    want = base64_encode(w->d->bundle_pem, strlen(w->d->bundle_pem));
    if (!want) {
        w->dirty = true; /* the timer retries */
        return;
    }
    w->main_idx = 0;
    w->opt_in_idx = -1;
    for (size_t i = 0; type != KUBE_EVENT_DELETED && i < json_array_size(hooks); i++) {
        const json_t *cc = json_object_get(json_array_get(hooks, i), "clientConfig");
        const char *name = json_string_value(json_object_get(json_array_get(hooks, i), "name"));
        const char *bundle = json_string_value(json_object_get(cc, "caBundle"));
        const char *url = json_string_value(json_object_get(cc, "url"));
        bool opt_in = name && strcmp(name, WEBHOOK_OPT_IN_NAME) == 0;
        char want_url[1200];

        if (!name || (!opt_in && strcmp(name, WEBHOOK_NAME) != 0))
            continue;
        ours++;
        if (opt_in)
            w->opt_in_idx = (int)i;
        else
            w->main_idx = (int)i;
        if (!bundle || strcmp(bundle, want) != 0)
            stale = true;
        if (w->d->opts.webhook_url) {
            hook_url(w->d, opt_in, want_url, sizeof(want_url));
            if (!url || strcmp(url, want_url) != 0)
                stale = true;
        }
    }
    /* out of cluster weftd owns the whole configuration: exactly its two webhooks */
    if (w->d->opts.webhook_url && (ours != 2 || json_array_size(hooks) != 2))
        stale = true;
    /* in cluster a missing configuration stays missing: the chart owns it */
    if (!w->d->opts.webhook_url && type == KUBE_EVENT_DELETED)
        stale = false;
    if (stale) {
        w->dirty = true;
        register_now(w);
    }
    free(want);
}

static void on_tick(uv_timer_t *h)
{
    struct weftd_webhook *w = h->data;
    if (w->dirty)
        register_now(w);
}

static void tls_issued(void *arg, const char *chain_pem, const char *key_pem)
{
    (void)chain_pem;
    (void)key_pem;
    register_now(arg);
}

void weftd_webhook_leading(struct weftd *d)
{
    struct weftd_webhook *w = d->webhook_srv;
    if (!w)
        return;
    w->dirty = true; /* a new leader writes once, whatever it believes was written */
    register_now(w);
}

void weftd_webhook_ca_ready(struct weftd *d)
{
    struct weftd_webhook *w = d->webhook_srv;
    if (!w)
        return;
    /* The serving certificate follows a signer change; the caBundle follows the bundle. Both
     * are cheap to redo, and the certificate's issuance calls register_now when it lands. */
    weftd_serving_cert_refresh(w->tls);
    register_now(w);
}

/* ---- start and stop ----------------------------------------------------------------------- */

/* The host part of an https:// URL ("[::1]" -> "::1"), or "" when it has none. */
static void url_host(const char *url, char *out, size_t outlen)
{
    const char *p = url ? strstr(url, "://") : NULL, *e;
    out[0] = '\0';
    if (!p)
        return;
    p += 3;
    if (*p == '[') {
        e = strchr(++p, ']');
    } else {
        e = p + strcspn(p, ":/?#");
    }
    if (e && e > p && (size_t)(e - p) < outlen) {
        memcpy(out, p, (size_t)(e - p));
        out[e - p] = '\0';
    }
}

static bool is_ip(const char *h)
{
    return h[0] && (strspn(h, "0123456789.") == strlen(h) || strchr(h, ':'));
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

int weftd_webhook_start(struct weftd *d)
{
    struct weftd_webhook *w = calloc(1, sizeof(*w));
    struct kube_informer_handlers h = {0};
    struct kube_informer_opts o = {0};
    char dns0[300], dns1[320];
    const char *dns[4] = {dns0, dns1, "localhost", NULL};
    const char *ips[2] = {"127.0.0.1", NULL};
    size_t ndns = 3, nips = 1;
    int rc;

    if (!w)
        return -ENOMEM;
    w->d = d;
    w->opt_in_idx = -1;
    uv_timer_init(d->loop, &w->timer);
    w->timer.data = w;
    d->webhook_srv = w;
    snprintf(dns0, sizeof(dns0), "%s.%s.svc", d->opts.webhook_service, d->opts.namespace);
    snprintf(dns1, sizeof(dns1), "%s.%s.svc.cluster.local", d->opts.webhook_service,
             d->opts.namespace);
    url_host(d->opts.webhook_url, w->url_host, sizeof(w->url_host));
    if (w->url_host[0] && strcmp(w->url_host, "127.0.0.1") != 0 &&
        strcmp(w->url_host, "localhost") != 0 && strcmp(w->url_host, dns0) != 0 &&
        strcmp(w->url_host, dns1) != 0) {
        if (is_ip(w->url_host))
            ips[nips++] = w->url_host;
        else
            dns[ndns++] = w->url_host;
    }
    rc = weftd_serving_cert_new(d, dns, ndns, ips, nips, tls_issued, w, &w->tls);
    if (rc)
        goto out;
    rc = weftd_http_listen(d, WEFTD_LISTENER_WEBHOOK, d->opts.webhook_listen,
                           weftd_serving_cert_ctx(w->tls), handle, w, &d->webhook);
    if (rc)
        goto out;
    h.on_event = on_config_event;
    h.arg = w;
    o.field_selector = "metadata.name=" WEBHOOK_CONFIG;
    rc = kube_informer_new(d->kube, &res_mwc, NULL, NULL, &h, &o, &w->inf);
    if (rc)
        goto out;
    uv_timer_start(&w->timer, on_tick, REGISTER_RETRY_MS, REGISTER_RETRY_MS);
    log_info("msg=\"webhook listening\" addr=%s port=%d", d->opts.webhook_listen,
             http_server_port(d->webhook));
    /* the CA may have been loaded before we started */
    if (d->ca)
        weftd_webhook_ca_ready(d);
out:
    return rc; /* on failure main calls weftd_webhook_stop */
}

void weftd_webhook_stop(struct weftd *d)
{
    struct weftd_webhook *w = d->webhook_srv;

    if (!w)
        return;
    d->webhook_srv = NULL;
    if (d->webhook) {
        weftd_http_detach(d, d->webhook);
        http_server_free(d->webhook);
        d->webhook = NULL;
    }
    kube_informer_free(w->inf);
    if (w->kc)
        kube_call_cancel(w->kc);
    weftd_serving_cert_free(w->tls);
    free(w->applied_bundle);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, timer_closed);
}
