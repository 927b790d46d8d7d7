/*
 * httpuv.c - lib/http servers driven by weftd's libuv loop (http_uv_attach, http/http.h), with
 * the bounds every listener puts on its clients, and their metrics.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/buf.h"
#include "core/log.h"
#include "weftd/weftd_int.h"

const char *const weftd_listener_names[WEFTD_NLISTENERS] = {
    [WEFTD_LISTENER_ADMIN] = "admin",
    [WEFTD_LISTENER_WEBHOOK] = "webhook",
    [WEFTD_LISTENER_CERTS] = "certs",
    [WEFTD_LISTENER_STREAM] = "stream",
};

/*
 * Sized for 10,000 agents (docs/operations.md has the reasoning). Memory for requests being
 * received is at most about twice max_buffered per listener; every connection also costs a
 * descriptor and, with TLS, some 10 KiB of OpenSSL state.
 */
static const struct {
    size_t max_body;
    struct http_limits lim;
} bounds[WEFTD_NLISTENERS] = {
    /* GETs from Prometheus, probes and operators */
    [WEFTD_LISTENER_ADMIN] = {4096,
                              {.request_ms = 10000,
                               .idle_ms = 60000,
                               .handshake_ms = 5000,
                               .write_ms = 10000,
                               .max_conns = 256,
                               .max_conns_per_addr = 64,
                               .max_buffered = 1u << 20,
                               .handshakes_per_round = 16,
                               .accept_backoff_ms = 100,
                               .addr_rate = 256u << 10,
                               .addr_burst = 64u << 10}},
    /*
     * The API server sends at most 3 MiB and waits 10 s by default; it opens one connection
     * per concurrent call (HTTP/1.1), up to its mutating in-flight limit (200) per replica.
     * 4 MiB/s from one address is some 400 reviews/s of a 10 KiB pod (one API server); a whole
     * 3 MiB review passes at once (4 MiB). Every byte costs the loop thread some 3 ns to
     * decrypt and copy: 4 MiB/s from each of a few hostile pods stays a small share of it.
     */
    [WEFTD_LISTENER_WEBHOOK] = {4u << 20,
                                {.request_ms = 10000,
                                 .idle_ms = 90000,
                                 .handshake_ms = 5000,
                                 .write_ms = 10000,
                                 .max_conns = 2048,
                                 .max_conns_per_addr = 256,
                                 .max_buffered = 64u << 20,
                                 .handshakes_per_round = 16,
                                 .accept_backoff_ms = 100,
                                 .addr_rate = 4u << 20,
                                 .addr_burst = 4u << 20}},
    /* one CSR (< 4 KiB) per agent per renewal; a rollout renews them all at once */
    [WEFTD_LISTENER_CERTS] = {CA_CSR_MAX_PEM,
                              {.request_ms = 10000,
                               .idle_ms = 60000,
                               .handshake_ms = 5000,
                               .write_ms = 10000,
                               .max_conns = 12288,
                               .max_conns_per_addr = 64,
                               .max_buffered = 32u << 20,
                               .handshakes_per_round = 16,
                               .accept_backoff_ms = 100,
                               .addr_rate = 1u << 20,
                               .addr_burst = 1u << 20}},
    /* a long-lived stream per agent; agents send only small messages */
    [WEFTD_LISTENER_STREAM] = {64u << 10,
                               {.request_ms = 10000,
                                .idle_ms = 60000,
                                .handshake_ms = 5000,
                                .write_ms = 30000,
                                .max_conns = 12288,
                                .max_conns_per_addr = 64,
                                .max_buffered = 64u << 20,
                                .handshakes_per_round = 16,
                                .accept_backoff_ms = 100}},
};

/*
 * Connections the listeners may hold in all, from the descriptor limit: three quarters of it
 * (the rest is for the API client, answering 503 to those over a cap, and files), or 0 when
 * unlimited.
 */
static unsigned long conn_budget(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > 100000000)
        return 0;
    return rl.rlim_cur * 3 / 4 > 32 ? (unsigned long)(rl.rlim_cur * 3 / 4 - 32) : 8;
}

void weftd_listener_bounds(const struct weftd_opts *o, enum weftd_listener l, size_t *max_body,
                           struct http_limits *lim)
{
    unsigned long budget = conn_budget(), sum = 0;

    *max_body = bounds[l].max_body;
    *lim = bounds[l].lim;
    if (o->request_timeout_ms > 0) {
        lim->request_ms = (unsigned)o->request_timeout_ms;
        if (lim->handshake_ms > lim->request_ms)
            lim->handshake_ms = lim->request_ms;
    }
    /*
     * Hostile clients are refused by the caps before descriptors run out (EMFILE would stop
     * every listener accepting): with a low descriptor limit each listener's default cap
     * shrinks in proportion.
     */
    for (int i = 0; i < WEFTD_NLISTENERS; i++)
        sum += bounds[i].lim.max_conns;
    if (budget && sum > budget) {
        unsigned long share = (unsigned long)lim->max_conns * budget / sum;
        lim->max_conns = share > 32 ? (unsigned)share : 32;
        /* one address (one pod) must not take a scaled-down listener whole */
        if (lim->max_conns_per_addr > lim->max_conns / 4)
            lim->max_conns_per_addr = lim->max_conns / 4 > 8 ? lim->max_conns / 4 : 8;
    }
    if (o->max_connections > 0)
        lim->max_conns = (unsigned)o->max_connections;
    if (o->max_connections_per_ip > 0)
        lim->max_conns_per_addr = (unsigned)o->max_connections_per_ip;
    if (o->max_request_bytes > 0)
        lim->max_buffered = (size_t)o->max_request_bytes;
    if (o->request_bytes_per_s > 0) {
        lim->addr_rate = (size_t)o->request_bytes_per_s;
        if (lim->addr_burst < lim->addr_rate)
            lim->addr_burst = lim->addr_rate; /* at least a second's worth at once */
    }
}

int weftd_http_attach(struct weftd *d, struct http_server *s)
{
    size_t slot;
    int rc;

    for (slot = 0; slot < ARRAY_LEN(d->attached) && d->attached[slot].s; slot++)
        ;
    if (slot == ARRAY_LEN(d->attached))
        return -ENOSPC;
    rc = http_uv_attach(d->loop, s, &d->attached[slot].uv);
    if (rc)
        return rc;
    d->attached[slot].s = s;
    return 0;
}

void weftd_http_detach(struct weftd *d, struct http_server *s)
{
    for (size_t i = 0; i < ARRAY_LEN(d->attached); i++) {
        if (!d->attached[i].s || d->attached[i].s != s)
            continue;
        http_uv_detach(d->attached[i].uv);
        d->attached[i].s = NULL;
        d->attached[i].uv = NULL;
    }
}

int weftd_http_listen(struct weftd *d, enum weftd_listener l, const char *addr, SSL_CTX *ssl_ctx,
                      http_handler_fn handler, void *arg, struct http_server **out)
{
    struct http_server *s = NULL;
    struct http_limits lim;
    size_t max_body;
    int rc;

    weftd_listener_bounds(&d->opts, l, &max_body, &lim);
    rc = http_server_new(addr, ssl_ctx, max_body, handler, arg, &s);
    if (rc) {
        log_error("msg=\"cannot listen\" what=%s address=%s error=\"%s\"", weftd_listener_names[l],
                  addr, err_str(rc));
        return rc;
    }
    http_server_set_limits(s, &lim);
    rc = weftd_http_attach(d, s);
    if (rc) {
        http_server_free(s);
        return rc;
    }
    log_info("msg=listening what=%s address=%s port=%d max_body=%zu max_connections=%u "
             "max_connections_per_address=%u request_timeout_ms=%u "
             "request_bytes_per_second_per_address=%zu",
             weftd_listener_names[l], addr, http_server_port(s), max_body, lim.max_conns,
             lim.max_conns_per_addr, lim.request_ms, lim.addr_rate);
    *out = s;
    return 0;
}

int weftd_http_metrics(const struct weftd *d, struct buf *b)
{
    const struct {
        enum weftd_listener l;
        const struct http_server *s;
    } srv[] = {
        {WEFTD_LISTENER_ADMIN, d->admin},
        {WEFTD_LISTENER_WEBHOOK, d->webhook},
        {WEFTD_LISTENER_CERTS, d->certs},
    };
    struct http_stats st[ARRAY_LEN(srv)];
    int rc = 0;

    for (size_t i = 0; i < ARRAY_LEN(srv); i++) {
        memset(&st[i], 0, sizeof(st[i]));
        if (srv[i].s)
            http_server_stats(srv[i].s, &st[i]);
    }
#define SERIES(name, type, help, field)                                                            \
    do {                                                                                           \
        if (!rc)                                                                                   \
            rc = buf_printf(b, "# HELP " name " " help "\n# TYPE " name " " type "\n");            \
        for (size_t i = 0; i < ARRAY_LEN(srv) && !rc; i++)                                         \
            rc = buf_printf(b, name "{listener=\"%s\"} %llu\n", weftd_listener_names[srv[i].l],    \
                            (unsigned long long)st[i].field);                                      \
    } while (0)
#define SERIES2(name, type, help, label, v1, f1, v2, f2, v3, f3, v4, f4)                           \
    do {                                                                                           \
        if (!rc)                                                                                   \
            rc = buf_printf(b, "# HELP " name " " help "\n# TYPE " name " " type "\n");            \
        for (size_t i = 0; i < ARRAY_LEN(srv) && !rc; i++)                                         \
            rc = buf_printf(b,                                                                     \
                            name "{listener=\"%s\"," label "=\"" v1 "\"} %llu\n" name              \
                                 "{listener=\"%s\"," label "=\"" v2 "\"} %llu\n" name              \
                                 "{listener=\"%s\"," label "=\"" v3 "\"} %llu\n" name              \
                                 "{listener=\"%s\"," label "=\"" v4 "\"} %llu\n",                  \
                            weftd_listener_names[srv[i].l], (unsigned long long)st[i].f1,          \
                            weftd_listener_names[srv[i].l], (unsigned long long)st[i].f2,          \
                            weftd_listener_names[srv[i].l], (unsigned long long)st[i].f3,          \
                            weftd_listener_names[srv[i].l], (unsigned long long)st[i].f4);         \
    } while (0)
    SERIES("weft_http_connections", "gauge", "Open client connections.", conns);
    SERIES("weft_http_tls_handshakes", "gauge", "Connections in their TLS handshake.", handshaking);
    SERIES("weft_http_buffered_request_bytes", "gauge",
           "Request bytes received and not yet handed over.", buffered_bytes);
    SERIES("weft_http_accept_paused", "gauge",
           "1 while accepting is paused for want of descriptors.", accept_paused);
    SERIES("weft_http_throttled_connections", "gauge",
           "Connections not read until their client address's byte budget refills.",
           throttled_conns);
    SERIES("weft_http_connections_accepted_total", "counter", "Connections accepted.", accepted);
    SERIES2("weft_http_shed_total", "counter",
            "Clients refused for a cap: 503 (connections, per_address, buffered_bytes) or "
            "closed unanswered (overflow).",
            "reason", "connections", shed_conns, "per_address", shed_per_addr, "buffered_bytes",
            shed_buffered, "overflow", shed_closed);
    if (!rc)
        rc = buf_printf(b, "# HELP weft_http_evicted_total Connections closed to make room: at the "
                           "connection cap the oldest without a request, at the buffered-bytes "
                           "cap the oldest partial request.\n"
                           "# TYPE weft_http_evicted_total counter\n");
    for (size_t i = 0; i < ARRAY_LEN(srv) && !rc; i++)
        rc = buf_printf(b,
                        "weft_http_evicted_total{listener=\"%s\",reason=\"connections\"} %llu\n"
                        "weft_http_evicted_total{listener=\"%s\",reason=\"buffered_bytes\"} "
                        "%llu\n",
                        weftd_listener_names[srv[i].l], (unsigned long long)st[i].evicted_conns,
                        weftd_listener_names[srv[i].l], (unsigned long long)st[i].evicted_buffered);
    SERIES2("weft_http_timeouts_total", "counter",
            "Connections closed at a deadline: TLS handshake, whole request, keep-alive idle, "
            "answer not taken.",
            "phase", "handshake", timeouts_handshake, "request", timeouts_request, "idle",
            timeouts_idle, "write", timeouts_write);
    SERIES("weft_http_requests_too_large_total", "counter", "Requests refused with 413.",
           too_large);
    SERIES("weft_http_bad_requests_total", "counter", "Requests refused with 400, 417 or 501.",
           bad_requests);
    SERIES("weft_http_continues_total", "counter", "100 Continue answers.", continues);
    SERIES("weft_http_handshakes_delayed_total", "counter",
           "TLS handshake steps put off to a later loop round (per-round budget spent).",
           handshakes_delayed);
    SERIES("weft_http_accept_errors_total", "counter",
           "Accepts that failed for want of descriptors or memory.", accept_errors);
    SERIES("weft_http_throttled_total", "counter",
           "Reads put off because the client address had spent its byte budget.", throttled);
#undef SERIES
#undef SERIES2
    return rc;
}

void weftd_http_kick(struct weftd *d, struct http_server *s)
{
    for (size_t i = 0; i < ARRAY_LEN(d->attached); i++) {
        if (d->attached[i].s && d->attached[i].s == s)
            http_uv_kick(d->attached[i].uv);
    }
}
