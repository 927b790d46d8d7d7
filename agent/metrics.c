/*
 * metrics.c - weft-agent's own Prometheus metrics and the merge with HAProxy's exporter
 * (docs/agent.md, "Metrics on 15020").
 *
 * Pure text building: main.c gathers the numbers on its loop and fetches HAProxy's exporter
 * output on a worker; these functions only print and check.
 */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"

static const char *stream_state_names[] = {"none", "connected", "disconnected", "rejected"};

static int head(struct buf *b, const char *name, const char *type, const char *help)
{
    return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One family with a single unlabelled sample. */
static int one(struct buf *b, const char *name, const char *type, const char *help,
               unsigned long long v)
{
    int rc = head(b, name, type, help);

    return rc ? rc : buf_printf(b, "%s %llu\n", name, v);
}

int agent_metrics_text(const struct agent_metrics *m, struct buf *b)
{
    static const char *how[] = {"none", "start", "runtime", "reload"};
    int rc = 0;

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if (!rc)                                                                                   \
            rc = (x);                                                                              \
    } while (0)
    TRY(one(b, "weft_agent_ready", "gauge", "1 when /healthz/ready answers 200.", m->ready));
    TRY(one(b, "weft_agent_certificate_expiry_timestamp_seconds", "gauge",
            "notAfter of the pod's certificate (Unix seconds); 0 before the first.",
            m->cert_not_after > 0 ? (unsigned long long)m->cert_not_after : 0));
    TRY(head(b, "weft_agent_certificate_requests_total", "counter",
             "Certificate requests to weftd, by result."));
    TRY(buf_printf(b,
                   "weft_agent_certificate_requests_total{result=\"ok\"} %lu\n"
                   "weft_agent_certificate_requests_total{result=\"error\"} %lu\n",
                   m->cert_ok, m->cert_errors));
    TRY(one(b, "weft_agent_trust_bundle_roots", "gauge",
            "Certificates in the trust bundle HAProxy verifies peers with.", m->bundle_roots));
    TRY(one(b, "weft_agent_trust_bundle_updates_total", "counter",
            "Trust bundles from the config stream installed between renewals.", m->trust_updates));
    TRY(head(b, "weft_agent_config_stream_state", "gauge",
             "1 for the config stream's current state (none: no stream, as with --config-file)."));
    for (size_t i = 0; i < ARRAY_LEN(stream_state_names); i++)
        TRY(buf_printf(b, "weft_agent_config_stream_state{state=\"%s\"} %d\n",
                       stream_state_names[i], (size_t)m->stream_state == i));
    TRY(one(b, "weft_agent_config_stream_connects_total", "counter",
            "Config streams opened (hello sent).", m->stream_connects));
    TRY(head(b, "weft_agent_config_applied_total", "counter",
             "Configurations applied, by how (none: identical to the running one)."));
    for (size_t i = 0; i < ARRAY_LEN(how); i++)
        TRY(buf_printf(b, "weft_agent_config_applied_total{how=\"%s\"} %lu\n", how[i],
                       m->applied[i]));
    TRY(one(b, "weft_agent_config_nacks_total", "counter",
            "Configurations refused (NACKed on the stream, or a --config-file document refused).",
            m->nacks));
    TRY(one(b, "weft_agent_haproxy_up", "gauge", "1 when HAProxy answers on its stats socket.",
            m->haproxy_up));
    TRY(head(b, "weft_agent_haproxy_reloads_total", "counter",
             "Seamless master-worker reloads, by result and reason (bundle: a new trust bundle)."));
    TRY(buf_printf(b,
                   "weft_agent_haproxy_reloads_total{result=\"ok\",reason=\"config\"} %lu\n"
                   "weft_agent_haproxy_reloads_total{result=\"ok\",reason=\"bundle\"} %lu\n"
                   "weft_agent_haproxy_reloads_total{result=\"error\",reason=\"any\"} %lu\n",
                   m->drv.reloads - m->drv.bundle_reloads, m->drv.bundle_reloads,
                   m->drv.reload_failures));
    TRY(one(b, "weft_agent_haproxy_cert_swaps_total", "counter",
            "Certificates committed through HAProxy's runtime API.", m->drv.cert_swaps));
    TRY(one(b, "weft_agent_haproxy_restarts_total", "counter",
            "HAProxy masters started again after they exited.", m->restarts));
    TRY(one(b, "weft_agent_haproxy_scrape_ok", "gauge",
            "1 when HAProxy's own exporter answered this scrape (its haproxy_* samples follow).",
            m->haproxy_scrape_ok));
#undef TRY
    return rc;
}

int agent_metrics_check_haproxy(const char *text, size_t len)
{
    const char *p = text, *end = text + len;

    if (memchr(text, '\0', len))
        return ERR_INVALID;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);

        if (!eol)
            return ERR_INVALID; /* cut short */
        /* comments, blank lines, and samples of HAProxy's own families only */
        if (n && p[0] != '#' && strncmp(p, "haproxy_", 8) != 0)
            return ERR_INVALID;
        p += n + 1;
    }
    return 0;
}
