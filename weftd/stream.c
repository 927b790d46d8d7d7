/*
 * stream.c - the config stream: push/'s server on --stream-listen (docs/config-stream.md).
 *
 * The listener opens once every informer has synced and the compile pass after it has run (a
 * document compiled from a partly loaded model, after a restart, would take routes away from
 * running proxies; a hello could not be checked against pods not yet listed), the CA is ready
 * and the certificate endpoint's serving certificate (names weftd.<ns>.svc, …) was issued: the
 * stream serves with the same certificate and follows it when it is renewed, and verifies agents'
 * certificates against the trust bundle, which it follows too (a root rotation needs no restart).
 * Every compiled document (sync.c) is handed to push/, which sends it to the pod's stream.
 *
 * A `hello` is accepted only when the agent's certificate proves the pod it asks for: the
 * certificate's pod extension (cert_endpoint.c puts the pod of a bound token there) must name
 * exactly the hello's namespace, name and uid; that pod must exist with that uid; and the
 * certificate's SPIFFE ID must be the pod's ServiceAccount identity. So an agent holding pod
 * A's certificate cannot receive pod B's document, even under the same ServiceAccount.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/log.h"
#include "push/push.h"
#include "weftd/weftd_int.h"

#define RETRY_S 5 /* a listener that could not open is tried again after this long */

struct weftd_stream {
    struct weftd *d;
    struct push_server *srv;
    char *listen_addr; /* NULL: all IPv4 addresses */
    int port;
    char *cert_pem, *key_pem; /* the newest serving pair, until the listener opens */
    uv_timer_t retry;         /* the listener again after a failure; until then, the model poll */
    bool model_loaded;        /* informers synced, nothing left to reconcile or compile */
};

static void pem_free(char **p)
{
    if (*p) {
        memset(*p, 0, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

/* "host:port" -> listen address (NULL for 0.0.0.0) and port. 0 or -EINVAL. */
static int parse_addr(const char *addr, char **host, int *port)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    struct in_addr in;
    char *end;
    long p;

    if (!colon || colon == addr)
        return -EINVAL;
    p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535)
        return -EINVAL;
    *port = (int)p;
    *host = NULL;
    if ((size_t)(colon - addr) == 7 && strncmp(addr, "0.0.0.0", 7) == 0)
        return 0;
    *host = strndup(addr, (size_t)(colon - addr));
    if (!*host)
        return -ENOMEM;
    if (inet_pton(AF_INET, *host, &in) != 1) {
        FREE_AND_NULL(*host);
        return -EINVAL;
    }
    return 0;
}

static const json_t *pod_get(struct weftd *d, const char *key)
{
    for (size_t i = 0; i < d->nwatches; i++)
        if (strcmp(d->watches[i].kind, "Pod") == 0)
            return kube_informer_get(d->watches[i].inf, key);
    return NULL;
}

/* Fill rej (the reason is cut at its size) and return -1. */
__attribute__((format(printf, 3, 4))) static int reject(struct push_reject *rej, const char *code,
                                                        const char *fmt, ...)
{
    va_list ap;

    snprintf(rej->code, sizeof(rej->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(rej->reason, sizeof(rej->reason), fmt, ap);
    va_end(ap);
    return -1;
}

/* push/ asks: may this certificate have this pod's document? */
static int on_hello(void *arg, const struct push_peer *peer, struct push_reject *rej)
{
    struct weftd *d = arg;
    struct ca_cert_info info;
    char key[PUSH_NS_MAX + PUSH_NAME_MAX + 2], want[CA_SPIFFE_ID_MAX + 1], cert_pod[320];
    const json_t *pod, *meta;
    const char *uid, *sa;
    struct ca_identity id;

    snprintf(key, sizeof(key), "%s/%s", peer->ns, peer->name);
    if (!peer->cert_pem[0] || ca_cert_info(peer->cert_pem, strlen(peer->cert_pem), &info) != 0 ||
        !info.pod_uid[0]) {
        d->m.stream_identity_mismatch++;
        return reject(rej, "IdentityMismatch",
                      "the client certificate names no pod (request it with the pod's projected "
                      "token)");
    }
    snprintf(cert_pod, sizeof(cert_pod), "%s/%s", info.pod_namespace, info.pod_name);
    if (strcmp(info.pod_namespace, peer->ns) != 0 || strcmp(info.pod_name, peer->name) != 0 ||
        strcmp(info.pod_uid, peer->uid) != 0) {
        d->m.stream_identity_mismatch++;
        return reject(rej, "IdentityMismatch",
                      "the certificate was issued to pod %s, the hello asks for pod %s", cert_pod,
                      key);
    }
    pod = pod_get(d, key);
    meta = json_object_get(pod, "metadata");
    uid = json_string_value(json_object_get(meta, "uid"));
    if (!pod || !uid || strcmp(uid, peer->uid) != 0) {
        d->m.stream_unknown_pod++;
        return reject(rej, "UnknownPod", "no pod %s with uid %s", key, peer->uid);
    }
    sa = json_string_value(json_object_get(json_object_get(pod, "spec"), "serviceAccountName"));
    memset(&id, 0, sizeof(id));
    id.trust_domain = d->opts.trust_domain;
    id.namespace_ = peer->ns;
    id.serviceaccount = sa && *sa ? sa : "default";
    if (ca_identity_spiffe_id(&id, want) != 0 || strcmp(want, peer->spiffe_id) != 0) {
        d->m.stream_identity_mismatch++;
        return reject(rej, "IdentityMismatch", "pod runs as %s, the certificate says %s", want,
                      peer->spiffe_id[0] ? peer->spiffe_id : "nothing");
    }
    return 0;
}

static void on_converged(void *arg, const char *key, double seconds)
{
    struct weftd *d = arg;

    (void)key;
    weftd_hist_observe(&d->m.stream_convergence_seconds, seconds);
}

/* Any change of a stream's acknowledgement state: programmed.c publishes and evaluates. */
static int on_hello_acked(void *arg, const struct push_peer *peer, struct push_reject *rej)
{
    int rc = on_hello(arg, peer, rej);

    if (rc == 0)
        weftd_programmed_changed(arg);
    return rc;
}

static void on_ack(void *arg, const char *key, uint64_t version, const char *hash)
{
    (void)key;
    (void)version;
    (void)hash;
    weftd_programmed_changed(arg);
}

static void on_nack(void *arg, const char *key, uint64_t version, const char *hash,
                    const char *reason)
{
    (void)key;
    (void)version;
    (void)hash;
    (void)reason; /* push/ logs it */
    weftd_programmed_changed(arg);
}

static void on_disconnect(void *arg, const char *key)
{
    (void)key;
    weftd_programmed_changed(arg);
}

static const struct push_server_ops ops = {.on_hello = on_hello_acked,
                                           .on_ack = on_ack,
                                           .on_nack = on_nack,
                                           .on_disconnect = on_disconnect,
                                           .on_converged = on_converged};

static void note_hash(void *arg, const struct push_proxy_state *ps)
{
    weftd_programmed_doc(arg, ps->key, ps->desired_hash);
}

static void send_doc(struct weftd_stream *st, const char *key, const json_t *doc)
{
    int rc = push_server_send_json(st->srv, key, doc);

    if (rc)
        log_error("msg=\"cannot queue the proxy's configuration\" pod=%s error=%s", key,
                  err_str(rc));
    else if (push_server_proxy_state(st->srv, key, note_hash, st->d) != 0)
        log_error("msg=\"no stream state for a document just queued\" pod=%s", key);
}

/*
 * Whether every app container of a classic-mode meshed pod (weft-proxy among spec.containers)
 * has exited for good: each has a terminated state in status.containerStatuses, and none will
 * start again because the pod is being deleted, its restartPolicy is Never, or it is OnFailure
 * and all of them exited 0. why (size n) then says which and why. Native sidecars are stopped
 * by the kubelet once the apps are done, so they get no such message.
 */
static bool apps_exited(const json_t *pod, char *why, size_t n)
{
    const json_t *spec = json_object_get(pod, "spec"), *status = json_object_get(pod, "status");
    const json_t *meta = json_object_get(pod, "metadata"), *c, *cs;
    const char *rp = json_string_value(json_object_get(spec, "restartPolicy"));
    bool classic = false, deleting = json_object_get(meta, "deletionTimestamp") != NULL;
    bool all_ok = true;
    size_t i, j, apps = 0, len = 0;

    json_array_foreach(json_object_get(spec, "containers"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const json_t *term = NULL;
        json_int_t code;

        if (!name)
            return false;
        if (strcmp(name, WEBHOOK_PROXY_NAME) == 0) {
            classic = true;
            continue;
        }
        json_array_foreach(json_object_get(status, "containerStatuses"), j, cs)
        {
            const char *sn = json_string_value(json_object_get(cs, "name"));

            if (sn && strcmp(sn, name) == 0)
                term = json_object_get(json_object_get(cs, "state"), "terminated");
        }
        if (!json_is_object(term))
            return false;
        code = json_integer_value(json_object_get(term, "exitCode"));
        all_ok = all_ok && code == 0;
        apps++;
        if (len < n)
            len += (size_t)snprintf(why + len, n - len, "%s%s exited %lld", apps > 1 ? ", " : "",
                                    name, (long long)code);
    }
    if (!classic || !apps)
        return false;
    if (!rp)
        rp = "Always";
    if (!deleting && strcmp(rp, "Never") != 0 && !(strcmp(rp, "OnFailure") == 0 && all_ok))
        return false; /* the kubelet restarts them */
    if (len < n)
        snprintf(why + len, n - len, "; %s",
                 deleting       ? "the pod is being deleted"
                 : rp[0] == 'N' ? "restartPolicy Never"
                                : "restartPolicy OnFailure");
    return true;
}

static void send_pod(struct weftd_stream *st, const char *key, const json_t *pod)
{
    char why[PUSH_REASON_MAX + 1];
    int rc;

    if (!apps_exited(pod, why, sizeof(why)))
        return;
    rc = push_server_apps_exited(st->srv, key, why);
    if (rc)
        log_error("msg=\"cannot tell the proxy its apps exited\" pod=%s error=%s", key,
                  err_str(rc));
}

static void retry_cb(uv_timer_t *t);

/* Open the listener with the newest serving pair and the bundle, then queue every document. */
static void try_listen(struct weftd_stream *st)
{
    struct weftd *d = st->d;
    struct push_server_config cfg;
    struct http_limits lim;
    size_t max_body;
    const char *key;
    json_t *doc;
    int rc;

    if (st->srv || !st->cert_pem || !d->bundle_pem || !st->model_loaded || d->stopping)
        return;
    weftd_listener_bounds(&d->opts, WEFTD_LISTENER_STREAM, &max_body, &lim);
    memset(&cfg, 0, sizeof(cfg));
    cfg.listen_addr = st->listen_addr;
    cfg.port = st->port;
    cfg.cert_pem = st->cert_pem;
    cfg.key_pem = st->key_pem;
    cfg.trust_pem = d->bundle_pem;
    cfg.debounce_ms = (unsigned)d->opts.stream_debounce_ms;
    cfg.max_protocol = (unsigned)d->opts.stream_protocol;
    cfg.max_conns = lim.max_conns;
    cfg.max_conns_per_addr = lim.max_conns_per_addr;
    cfg.handshake_timeout_s = (lim.handshake_ms + 999) / 1000;
    rc = push_server_new(d->loop, &cfg, &ops, d, &st->srv);
    if (rc) {
        log_error("msg=\"cannot listen\" what=stream address=%s error=\"%s\" retry_s=%d",
                  d->opts.stream_listen, err_str(rc), RETRY_S);
        uv_timer_start(&st->retry, retry_cb, RETRY_S * 1000, 0);
        return;
    }
    pem_free(&st->key_pem);
    pem_free(&st->cert_pem);
    log_info("msg=listening what=stream address=%s port=%d max_connections=%u "
             "max_connections_per_address=%u handshake_timeout_s=%u debounce_ms=%u",
             d->opts.stream_listen, push_server_port(st->srv), cfg.max_conns,
             cfg.max_conns_per_addr, cfg.handshake_timeout_s, cfg.debounce_ms);
    json_object_foreach(d->docs, key, doc) send_doc(st, key, doc);
    for (size_t i = 0; i < d->nwatches; i++)
        if (strcmp(d->watches[i].kind, "Pod") == 0)
            json_object_foreach((json_t *)kube_informer_cache(d->watches[i].inf), key, doc)
                send_pod(st, key, doc);
}

static void retry_cb(uv_timer_t *t)
{
    try_listen(t->data);
}

#define MODEL_POLL_MS 100

/* Until the model is loaded: whether it is now (then the listener may open). */
static void model_poll(uv_timer_t *t)
{
    struct weftd_stream *st = t->data;
    struct weftd *d = st->d;

    if (!weftd_synced(d) || !weftd_sync_idle(d))
        return;
    st->model_loaded = true;
    uv_timer_stop(t);
    log_info("msg=\"model loaded: the config stream may open\" documents=%zu",
             json_object_size(d->docs));
    try_listen(st);
}

int weftd_stream_start(struct weftd *d)
{
    struct weftd_stream *st = calloc(1, sizeof(*st));
    int rc;

    if (!st)
        return -ENOMEM;
    st->d = d;
    rc = parse_addr(d->opts.stream_listen, &st->listen_addr, &st->port);
    if (rc) {
        log_error("msg=\"bad --stream-listen, want IPv4:PORT\" address=\"%s\"",
                  d->opts.stream_listen ? d->opts.stream_listen : "");
        free(st);
        return rc;
    }
    uv_timer_init(d->loop, &st->retry);
    st->retry.data = st;
    uv_timer_start(&st->retry, model_poll, MODEL_POLL_MS, MODEL_POLL_MS);
    d->stream = st;
    return 0;
}

static void retry_closed(uv_handle_t *h)
{
    free(h->data);
}

void weftd_stream_stop(struct weftd *d)
{
    struct weftd_stream *st = d->stream;

    if (!st)
        return;
    d->stream = NULL;
    push_server_free(st->srv); /* closes the streams (1001); memory over the next loop turns */
    pem_free(&st->key_pem);
    pem_free(&st->cert_pem);
    free(st->listen_addr);
    uv_timer_stop(&st->retry);
    uv_close((uv_handle_t *)&st->retry, retry_closed);
}

void weftd_stream_identity(struct weftd *d, const char *chain_pem, const char *key_pem)
{
    struct weftd_stream *st = d->stream;
    int rc;

    if (!st)
        return;
    if (st->srv) {
        rc = push_server_set_certs(st->srv, chain_pem, key_pem);
        if (rc)
            log_error("msg=\"cannot install the config stream's serving certificate\" error=%s",
                      err_str(rc));
        return;
    }
    pem_free(&st->key_pem);
    pem_free(&st->cert_pem);
    st->cert_pem = strdup(chain_pem);
    st->key_pem = strdup(key_pem);
    if (!st->cert_pem || !st->key_pem) {
        log_error("msg=\"cannot keep the config stream's serving certificate: out of memory\"");
        pem_free(&st->key_pem);
        pem_free(&st->cert_pem);
        return;
    }
    try_listen(st);
}

void weftd_stream_bundle(struct weftd *d)
{
    struct weftd_stream *st = d->stream;
    int rc;

    if (!st || !d->bundle_pem)
        return;
    if (!st->srv) {
        try_listen(st);
        return;
    }
    rc = push_server_set_trust(st->srv, d->bundle_pem);
    if (rc)
        log_error("msg=\"cannot install the trust bundle on the config stream\" error=%s",
                  err_str(rc));
}

void weftd_stream_doc(struct weftd *d, const char *key, const json_t *doc)
{
    if (d->stream && d->stream->srv && d->stream->model_loaded)
        send_doc(d->stream, key, doc);
}

void weftd_stream_pod(struct weftd *d, const char *key, const json_t *pod)
{
    if (d->stream && d->stream->srv && pod)
        send_pod(d->stream, key, pod);
}

void weftd_stream_forget(struct weftd *d, const char *key)
{
    weftd_programmed_forget(d, key);
    if (d->stream && d->stream->srv)
        push_server_forget(d->stream->srv, key);
}

struct push_server *weftd_stream_server(struct weftd *d)
{
    return d->stream && d->stream->model_loaded ? d->stream->srv : NULL;
}

/* --- /debug/proxies and metrics ------------------------------------------------------------ */

static const char *const sync_names[] = {"disconnected", "pending", "synced", "rejected"};

static json_t *ms_time(int64_t ms)
{
    char s[40];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0)
        return json_null();
    gmtime_r(&t, &tm);
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(s + strlen(s), sizeof(s) - strlen(s), ".%03dZ", (int)(ms % 1000));
    return json_string(s);
}

static json_t *or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

/* One proxy's state as JSON (docs/operations.md, "The config stream"). */
static void add_state(void *arg, const struct push_proxy_state *ps)
{
    json_t *arr = arg;
    json_t *o =
        json_pack("{s:s,s:s,s:b,s:o,s:o,s:o,s:{s:I,s:o},s:{s:I,s:o}}", "pod", ps->key, "sync",
                  sync_names[ps->sync], "connected", ps->connected, "connectedSince",
                  ms_time(ps->connected_ms), "spiffeId", or_null(ps->spiffe_id), "desiredHash",
                  or_null(ps->desired_hash), "sent", "version", (json_int_t)ps->sent_version,
                  "hash", or_null(ps->sent_hash), "acked", "version", (json_int_t)ps->acked_version,
                  "hash", or_null(ps->acked_hash));

    if (o) {
        json_object_set_new(o, "inFlight", json_boolean(ps->in_flight));
        json_object_set_new(o, "sendBuffered", json_boolean(ps->send_buffered));
        if (ps->idle_ms >= 0)
            json_object_set_new(o, "idleMs", json_integer(ps->idle_ms));
        json_object_set_new(o, "appsExited", or_null(ps->apps_exited));
    }
    if (o && ps->nack_reason[0])
        json_object_set_new(o, "lastNack",
                            json_pack("{s:I,s:o,s:s,s:o}", "version", (json_int_t)ps->nack_version,
                                      "hash", or_null(ps->nack_hash), "reason", ps->nack_reason,
                                      "time", ms_time(ps->nack_time_ms)));
    else if (o)
        json_object_set_new(o, "lastNack", json_null());
    if (o)
        json_array_append_new(arr, o);
}

static int by_pod(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;

    return strcmp(json_string_value(json_object_get(x, "pod")),
                  json_string_value(json_object_get(y, "pod")));
}

static void respond(struct http_conn *c, int status, const char *type, const char *body)
{
    http_respond(c, status, type, body, strlen(body), NULL);
}

void weftd_stream_debug(struct weftd *d, struct http_conn *c, const struct http_request *req)
{
    struct push_server *srv = d->stream ? d->stream->srv : NULL;
    json_t *arr = json_array(), *out = NULL;
    char *s = NULL;

    if (!arr)
        goto oom;
    if (!srv) {
        json_decref(arr);
        respond(c, 503, "text/plain",
                "the config stream is not listening yet (waiting for the CA and its serving "
                "certificate)\n");
        return;
    }
    if (req->path[14] == '/') {
        const char *key = req->path + 15;

        if (!strchr(key, '/')) {
            json_decref(arr);
            respond(c, 400, "text/plain",
                    "use /debug/proxies or /debug/proxies/<namespace>/<pod>\n");
            return;
        }
        if (push_server_proxy_state(srv, key, add_state, arr) != 0) {
            char msg[700];

            json_decref(arr);
            snprintf(msg, sizeof(msg),
                     "no config stream state for pod %s (no document and no stream)\n", key);
            respond(c, 404, "text/plain", msg);
            return;
        }
        out = json_incref(json_array_get(arr, 0));
    } else {
        size_t n;
        json_t **v;

        push_server_sync_state(srv, add_state, arr);
        n = json_array_size(arr);
        v = calloc(n ? n : 1, sizeof(*v));
        if (!v)
            goto oom;
        for (size_t i = 0; i < n; i++)
            v[i] = json_incref(json_array_get(arr, i));
        qsort(v, n, sizeof(*v), by_pod);
        out = json_array();
        for (size_t i = 0; i < n; i++)
            if (!out || json_array_append_new(out, v[i]))
                json_decref(v[i]);
        free(v);
    }
    s = out ? json_dumps(out, JSON_INDENT(2)) : NULL;
    if (!s)
        goto oom;
    http_respond(c, 200, "application/json", s, strlen(s), NULL);
    free(s);
    json_decref(out);
    json_decref(arr);
    return;
oom:
    json_decref(out);
    json_decref(arr);
    respond(c, 500, "text/plain", "out of memory\n");
}

static void count_state(void *arg, const struct push_proxy_state *ps)
{
    uint64_t *n = arg;

    n[ps->sync]++;
}

int weftd_stream_metrics(struct weftd *d, struct buf *b)
{
    struct push_server *srv = d->stream ? d->stream->srv : NULL;
    struct push_server_stats st;
    uint64_t n[4] = {0, 0, 0, 0};
    int rc;

    memset(&st, 0, sizeof(st));
    if (srv) {
        push_server_stats(srv, &st);
        push_server_sync_state(srv, count_state, n);
    }
    rc = buf_printf(b, "# HELP weft_proxy_config_sync Proxies by config stream state.\n"
                       "# TYPE weft_proxy_config_sync gauge\n");
    for (int i = 0; !rc && i < 4; i++)
        rc = buf_printf(b, "weft_proxy_config_sync{state=\"%s\"} %llu\n", sync_names[i],
                        (unsigned long long)n[i]);
    if (!rc)
        rc = buf_printf(
            b,
            "# HELP weft_config_stream_changes_total Changed proxy documents: released at once "
            "(after a quiet period), held to the end of a debounce window, or replaced inside "
            "one.\n# TYPE weft_config_stream_changes_total counter\n"
            "weft_config_stream_changes_total{release=\"immediate\"} %llu\n"
            "weft_config_stream_changes_total{release=\"deferred\"} %llu\n"
            "weft_config_stream_changes_total{release=\"superseded\"} %llu\n"
            "# HELP weft_config_stream_configs_sent_total config frames written.\n"
            "# TYPE weft_config_stream_configs_sent_total counter\n"
            "weft_config_stream_configs_sent_total %llu\n"
            "# HELP weft_config_stream_apps_exited_sent_total appsExited frames written (a "
            "classic-mode pod's app containers exited for good).\n"
            "# TYPE weft_config_stream_apps_exited_sent_total counter\n"
            "weft_config_stream_apps_exited_sent_total %llu\n"
            "# HELP weft_config_stream_replies_total Agents' ack and nack messages.\n"
            "# TYPE weft_config_stream_replies_total counter\n"
            "weft_config_stream_replies_total{type=\"ack\"} %llu\n"
            "weft_config_stream_replies_total{type=\"nack\"} %llu\n"
            "# HELP weft_config_stream_hellos_total Hellos by outcome.\n"
            "# TYPE weft_config_stream_hellos_total counter\n"
            "weft_config_stream_hellos_total{result=\"accepted\"} %llu\n"
            "weft_config_stream_hellos_total{result=\"UnknownPod\"} %llu\n"
            "weft_config_stream_hellos_total{result=\"IdentityMismatch\"} %llu\n"
            "# HELP weft_config_stream_refused_total Connections closed at accept by a cap.\n"
            "# TYPE weft_config_stream_refused_total counter\n"
            "weft_config_stream_refused_total{cap=\"max_connections\"} %llu\n"
            "weft_config_stream_refused_total{cap=\"max_connections_per_address\"} %llu\n"
            "weft_config_stream_refused_total{cap=\"handshakes\"} %llu\n"
            "# HELP weft_config_stream_accept_pauses_total Times the listener stopped accepting "
            "because the handshake cap was reached (connections wait in the listen backlog).\n"
            "# TYPE weft_config_stream_accept_pauses_total counter\n"
            "weft_config_stream_accept_pauses_total %llu\n"
            "# HELP weft_config_stream_accept_paused_seconds_total Time the listener was not "
            "accepting (handshake cap reached).\n"
            "# TYPE weft_config_stream_accept_paused_seconds_total counter\n"
            "weft_config_stream_accept_paused_seconds_total %.3f\n"
            "# HELP weft_config_stream_connections Connections open (handshakes included).\n"
            "# TYPE weft_config_stream_connections gauge\nweft_config_stream_connections %u\n"
            "# HELP weft_config_stream_streams Accepted streams open.\n"
            "# TYPE weft_config_stream_streams gauge\nweft_config_stream_streams %u\n"
            "# HELP weft_config_stream_protocol_streams Accepted streams open by protocol.\n"
            "# TYPE weft_config_stream_protocol_streams gauge\n"
            "weft_config_stream_protocol_streams{protocol=\"v1\"} %u\n"
            "weft_config_stream_protocol_streams{protocol=\"v2\"} %u\n"
            "# HELP weft_config_stream_sent_bytes_total Payload bytes of config frames (whole "
            "documents in v1, skeletons with new blocks in v2) and of v2 blocks answers.\n"
            "# TYPE weft_config_stream_sent_bytes_total counter\n"
            "weft_config_stream_sent_bytes_total{frame=\"config\"} %llu\n"
            "weft_config_stream_sent_bytes_total{frame=\"blocks\"} %llu\n"
            "# HELP weft_config_stream_blocks_sent_total v2 blocks written, inline in a config "
            "or in a blocks answer.\n"
            "# TYPE weft_config_stream_blocks_sent_total counter\n"
            "weft_config_stream_blocks_sent_total %llu\n"
            "# HELP weft_config_stream_needs_total v2 need messages (agents asking for blocks "
            "they lack).\n"
            "# TYPE weft_config_stream_needs_total counter\nweft_config_stream_needs_total %llu\n"
            "# HELP weft_config_stream_blocks Distinct blocks held for current and last-sent "
            "documents.\n"
            "# TYPE weft_config_stream_blocks gauge\nweft_config_stream_blocks %zu\n"
            "# HELP weft_config_stream_block_bytes Bytes of those blocks.\n"
            "# TYPE weft_config_stream_block_bytes gauge\nweft_config_stream_block_bytes %zu\n",
            (unsigned long long)st.changes_immediate, (unsigned long long)st.changes_deferred,
            (unsigned long long)st.changes_superseded, (unsigned long long)st.configs_sent,
            (unsigned long long)st.apps_exited_sent, (unsigned long long)st.acks,
            (unsigned long long)st.nacks, (unsigned long long)st.hellos_accepted,
            (unsigned long long)d->m.stream_unknown_pod,
            (unsigned long long)d->m.stream_identity_mismatch,
            (unsigned long long)st.refused_max_conns, (unsigned long long)st.refused_per_addr,
            (unsigned long long)st.refused_handshakes, (unsigned long long)st.accept_pauses,
            (double)st.accept_paused_ms / 1000.0, st.conns, st.streams, st.streams - st.streams_v2,
            st.streams_v2, (unsigned long long)st.config_bytes, (unsigned long long)st.blocks_bytes,
            (unsigned long long)st.blocks_sent, (unsigned long long)st.needs, st.blocks_held,
            st.block_bytes_held);
    if (!rc)
        rc = weftd_hist_print(b, "weft_config_stream_convergence_seconds",
                              "From a change of a proxy's document (compiled and handed to the "
                              "stream) to the proxy's ACK of it.",
                              &d->m.stream_convergence_seconds);
    return rc;
}
