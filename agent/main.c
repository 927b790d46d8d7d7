/*
 * main.c - weft-agent (image weft/proxy, the weft-proxy container, UID 1337): the pod's
 * certificate from weftd, HAProxy driven with the rendered configuration, supervision, and the
 * health endpoint on 15020 (docs/agent.md).
 *
 * One libuv loop. Blocking work (key generation and the CSR request, haproxy -c, reloads and
 * runtime API commands, app probes) runs on libuv's worker pool and posts back; the driver
 * serializes what touches HAProxy. The loop owns the state below.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "agent/agent.h"
#include "ca/ca.h"
#include "core/log.h"
#include "http/http.h"
#include "push/push.h"

struct agent {
    uv_loop_t *loop;
    struct agent_render_opts ro;
    struct agent_haproxy_real real;
    struct agent_driver *drv;
    const char *config_file; /* the document, until the config stream is wired in */
    const char *health_addr;
    uint32_t pod_ip; /* network order; 0 unknown */
    json_t *probes;  /* WEFT_APP_PROBES */
    bool stopping;

    /* lifecycle (docs/agent.md, "Lifecycle") */
    bool classic;            /* WEFT_SIDECAR_MODE=classic: a regular container beside the apps */
    bool exit_on_completion; /* WEFT_EXIT_ON_COMPLETION=true: a Job's pod (classic mode) */
    bool draining;           /* SIGTERM in classic mode: serving until the apps have exited */
    bool apps_exited;        /* weftd said so on the stream (appsExited) */
    uv_timer_t stop_timer;   /* stop_all from outside push/'s callback */

    /* identity */
    struct agent_cert_req creq;
    char url[512];
    bool have_cert;
    time_t not_after;
    unsigned attempts;
    uv_timer_t cert_timer;

    struct agent_cert cert; /* the current one: the stream's client certificate */

    /* the config stream */
    struct push_client *stream;
    char stream_host[256];
    int stream_port; /* 0: no stream (--config-file) */
    const char *stream_name;

    /* the trust bundle from the stream (between renewals) */
    char *trust_next; /* waiting to be installed (newest wins) */
    bool trust_busy;
    unsigned long trust_updates;

    /* configuration */
    json_t *doc;     /* the document waiting to be applied (newest wins) */
    bool doc_stream; /* it came from the stream: answer weftd once applied */
    uint64_t doc_version;
    char doc_hash[PUSH_HASH_LEN + 1];
    bool apply_busy; /* an apply runs on a worker */
    bool configured; /* a first configuration runs */
    char last_error[1024];

    /* supervision and health */
    uv_signal_t sig_chld, sig_term, sig_int, sig_hup;
    uv_timer_t health_timer;
    bool health_busy, hp_healthy, restart_busy;

    struct http_server *hs;
    struct http_uv *hs_uv; /* drives hs from the loop */

    /* the inbound listener's decisions: HAProxy's log lines on the log pipe (access_start) */
    struct agent_access *access;
    struct agent_grpc *grpc; /* gRPC status codes from the same lines (grpc ports) */
    int access_fd;           /* the log pipe's read end */
    struct agent_lines access_lines;
    uv_poll_t access_poll;

    /* for /stats/prometheus */
    bool scrape_busy; /* one scrape at a time: a second one is answered 503 */
    unsigned long cert_ok, cert_errors, stream_connects, applied[4], nacks, restarts;
    enum agent_stream_state stream_state;
};

static double rnd01(void)
{
    uint32_t v = 0;

    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = (uint32_t)time(NULL);
    return (double)v / 4294967296.0;
}

/* ---- worker jobs ------------------------------------------------------------------------- */

enum job_kind { JOB_CERT, JOB_APPLY, JOB_RESTART, JOB_HEALTH, JOB_PROBE, JOB_TRUST, JOB_SCRAPE };

/* HAProxy's exporter answer a scrape takes (1,000 services: a few MB), and how long it waits. */
#define SCRAPE_MAX (16u << 20)
#define SCRAPE_TIMEOUT_MS 3000

struct job {
    uv_work_t w;
    struct agent *a;
    enum job_kind kind;
    int rc;
    struct diag diag;
    struct agent_cert cert; /* JOB_CERT */
    json_t *doc;            /* JOB_APPLY */
    bool stream;            /* JOB_APPLY: a document from the stream, answered when done */
    uint64_t version;
    char hash[PUSH_HASH_LEN + 1];
    enum agent_apply_kind applied;
    uint64_t t_queued, t_run, t_done; /* JOB_APPLY: uv_hrtime at submit, start, end (ns) */
    bool healthy;                     /* JOB_HEALTH */
    json_t *spec;                     /* JOB_PROBE */
    struct http_conn *conn;           /* JOB_PROBE: NULL once the kubelet went away */
    char *bundle;           /* JOB_TRUST; JOB_CERT: the bundle to trust too (weftd's newest) */
    bool reloaded;          /* JOB_TRUST */
    struct agent_metrics m; /* JOB_SCRAPE: the agent's numbers, taken on the loop */
    struct buf out;         /* JOB_SCRAPE: the merged answer */
};

static size_t scrape_write(char *p, size_t sz, size_t n, void *arg)
{
    struct buf *b = arg;

    if (b->len + sz * n > SCRAPE_MAX || buf_append(b, p, sz * n))
        return 0; /* too large, or no memory: curl stops */
    return sz * n;
}

/*
 * /stats/prometheus (on a worker): HAProxy's exporter on 127.0.0.1:<metrics port>/metrics,
 * bounded in time and size and checked (agent_metrics_check_haproxy), after the agent's own
 * families. Without HAProxy's part the agent's are served alone, with
 * weft_agent_haproxy_scrape_ok 0.
 */
static int scrape(struct agent *a, struct agent_metrics *m, struct buf *out)
{
    struct buf hp;
    char url[64];
    long status = 0;
    CURL *c = curl_easy_init();
    int rc;

    buf_init(&hp);
    agent_driver_get_stats(a->drv, &m->drv);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", a->ro.metrics_port);
    if (c) {
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)SCRAPE_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, scrape_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &hp);
        m->haproxy_scrape_ok = m->haproxy_up && curl_easy_perform(c) == CURLE_OK &&
                               curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
                               status == 200 &&
                               agent_metrics_check_haproxy(hp.p ? hp.p : "", hp.len) == 0;
        curl_easy_cleanup(c);
    }
    rc = agent_metrics_text(m, out);
    if (!rc && m->haproxy_scrape_ok)
        rc = buf_append(out, hp.p, hp.len);
    buf_release(&hp);
    return rc;
}

static void run_job(uv_work_t *w)
{
    struct job *j = w->data;
    struct agent *a = j->a;

    switch (j->kind) {
    case JOB_CERT: {
        struct agent_cert_req r = a->creq;

        r.trust_pem = j->bundle; /* a copy of the newest bundle from weftd, or NULL */
        j->rc = agent_cert_fetch(&r, &j->cert, &j->diag);
        if (!j->rc)
            j->rc = agent_driver_set_identity(a->drv, j->cert.chain_pem, j->cert.key_pem,
                                              j->cert.bundle_pem, &j->diag);
        break;
    }
    case JOB_APPLY: {
        struct agent_render_out out;

        j->t_run = uv_hrtime();
        j->rc = agent_render(j->doc, &a->ro, &out, &j->diag);
        if (!j->rc) {
            j->rc = agent_driver_apply(a->drv, &out, &j->applied, &j->diag);
            agent_render_out_release(&out);
        }
        j->t_done = uv_hrtime();
        break;
    }
    case JOB_RESTART:
        j->rc = agent_driver_restart(a->drv, &j->diag);
        break;
    case JOB_HEALTH:
        j->healthy = agent_driver_healthy(a->drv);
        agent_driver_sweep(a->drv); /* removed servers whose last connections ended */
        break;
    case JOB_PROBE:
        j->rc = agent_probe_run(j->spec, &j->diag);
        break;
    case JOB_TRUST:
        j->rc = agent_driver_set_trust(a->drv, j->bundle, &j->reloaded, &j->diag);
        break;
    case JOB_SCRAPE:
        j->rc = scrape(a, &j->m, &j->out);
        break;
    }
}

static void after_job(uv_work_t *w, int status);

static struct job *job_new(struct agent *a, enum job_kind kind)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j) {
        j->a = a;
        j->kind = kind;
        j->w.data = j;
    }
    return j;
}

/* Hand a job (its fields set) to the worker pool. Consumes j, even on failure. */
static int submit(struct agent *a, struct job *j)
{
    int rc;

    if (!j)
        return -ENOMEM;
    rc = uv_queue_work(a->loop, &j->w, run_job, after_job);
    if (rc) {
        free(j->bundle);
        free(j);
    }
    return rc;
}

static void apply_next(struct agent *a);
static void cert_due(uv_timer_t *t);

static void stream_start(struct agent *a);

static unsigned count_certs(const char *pem)
{
    unsigned n = 0;

    for (const char *p = pem; (p = strstr(p, "-----BEGIN CERTIFICATE-----")); p++)
        n++;
    return n;
}

static void cert_done(struct agent *a, struct job *j)
{
    time_t now = time(NULL);
    long ms;

    if (a->stopping)
        return;

    if (j->rc) {
        a->cert_errors++;
        ms = agent_retry_delay_ms(a->attempts++, now, a->have_cert ? a->not_after : 0, rnd01());
        log_error("msg=\"no new certificate\" error=\"%s\" have_valid_certificate=%s "
                  "retry_in_ms=%ld",
                  j->diag.text, a->have_cert && a->not_after > now ? "yes" : "no", ms);
    } else {
        a->cert_ok++;
        a->have_cert = true;
        a->not_after = j->cert.not_after;
        a->attempts = 0;
        ms = agent_renew_delay_ms(now, j->cert.not_after, rnd01());
        log_info("msg=\"certificate installed\" spiffe_id=%s fingerprint=%s expires_in_s=%ld "
                 "renew_in_ms=%ld roots=%u haproxy_pid=%d",
                 j->cert.spiffe_id, j->cert.fingerprint, (long)(j->cert.not_after - now), ms,
                 count_certs(j->cert.bundle_pem), agent_driver_pid(a->drv));
        /* the agent keeps the key for the stream's mutual TLS (never written elsewhere) */
        agent_cert_release(&a->cert);
        a->cert = j->cert;
        memset(&j->cert, 0, sizeof(j->cert));
        if (a->stream) {
            int rc = push_client_set_certs(a->stream, a->cert.chain_pem, a->cert.key_pem,
                                           a->cert.bundle_pem);
            if (rc)
                log_error("msg=\"config stream: the new certificate was refused\" error=%s",
                          err_str(rc));
        } else {
            stream_start(a);
        }
        apply_next(a); /* a configuration may have waited for the certificate */
    }
    if (!a->stopping)
        uv_timer_start(&a->cert_timer, cert_due, (uint64_t)ms, 0);
}

static void trust_next(struct agent *a);

static void trust_done(struct agent *a, struct job *j)
{
    a->trust_busy = false;
    if (j->rc) {
        log_error("msg=\"new trust bundle not installed; the last good one stays\" error=\"%s\"",
                  j->diag.text);
    } else if (!a->cert.bundle_pem || strcmp(a->cert.bundle_pem, j->bundle) != 0) {
        /* the bundle the next renewal and the stream's reconnects use until weftd sends one */
        free(a->cert.bundle_pem);
        a->cert.bundle_pem = j->bundle;
        j->bundle = NULL;
        a->trust_updates++;
        log_info("msg=\"trust bundle installed\" roots=%u haproxy_reloaded=%s haproxy_pid=%d",
                 count_certs(a->cert.bundle_pem), j->reloaded ? "yes" : "no",
                 agent_driver_pid(a->drv));
    }
    free(j->bundle);
    trust_next(a);
}

static void after_job(uv_work_t *w, int status)
{
    struct job *j = w->data;
    struct agent *a = j->a;

    (void)status;
    switch (j->kind) {
    case JOB_CERT:
        cert_done(a, j);
        agent_cert_release(&j->cert); /* empty when cert_done took it */
        free(j->bundle);
        break;
    case JOB_APPLY:
        a->apply_busy = false;
        if (j->rc) {
            a->nacks++;
            snprintf(a->last_error, sizeof(a->last_error), "%s", j->diag.text);
            if (j->stream)
                log_error("msg=\"configuration refused (NACK); the last good one keeps serving\" "
                          "version=%llu hash=%s error=\"%s\"",
                          (unsigned long long)j->version, j->hash, j->diag.text);
            else
                log_error("msg=\"configuration refused; the last good one keeps serving\" "
                          "error=\"%s\"",
                          j->diag.text);
        } else {
            a->applied[j->applied]++;
            a->configured = true;
            if (agent_access_doc(a->access, j->doc))
                log_warn("msg=\"the access decision counters could not follow the document\"");
            a->last_error[0] = '\0';
            if (j->stream)
                log_info("msg=\"configuration applied (ACK)\" version=%llu hash=%s how=%s "
                         "haproxy_pid=%d waited_us=%llu took_us=%llu answered_us=%llu",
                         (unsigned long long)j->version, j->hash, agent_apply_kind_name(j->applied),
                         agent_driver_pid(a->drv),
                         (unsigned long long)((j->t_run - j->t_queued) / 1000),
                         (unsigned long long)((j->t_done - j->t_run) / 1000),
                         (unsigned long long)((uv_hrtime() - j->t_done) / 1000));
            else
                log_info("msg=\"configuration applied\" how=%s haproxy_pid=%d",
                         agent_apply_kind_name(j->applied), agent_driver_pid(a->drv));
        }
        if (j->stream && a->stream &&
            push_client_answer(a->stream, j->version, j->hash, j->rc, j->diag.text))
            log_error("msg=\"config stream: the answer could not be queued\" version=%llu",
                      (unsigned long long)j->version);
        json_decref(j->doc);
        apply_next(a);
        break;
    case JOB_RESTART:
        a->restart_busy = false;
        if (j->rc)
            log_error("msg=\"HAProxy could not be restarted\" error=\"%s\"", j->diag.text);
        else
            log_info("msg=\"HAProxy restarted with the last good configuration\" pid=%d",
                     agent_driver_pid(a->drv));
        if (!j->rc)
            a->restarts++;
        break;
    case JOB_HEALTH:
        a->health_busy = false;
        if (a->hp_healthy != j->healthy)
            log_info("msg=\"HAProxy health changed\" healthy=%s", j->healthy ? "yes" : "no");
        a->hp_healthy = j->healthy;
        break;
    case JOB_TRUST:
        trust_done(a, j);
        break;
    case JOB_SCRAPE:
        a->scrape_busy = false;
        if (j->conn) {
            if (j->rc)
                http_respond(j->conn, 503, "text/plain", "out of memory\n", 14, NULL);
            else
                http_respond(j->conn, 200, "text/plain; version=0.0.4; charset=utf-8", j->out.p,
                             j->out.len, NULL);
            http_server_flush(a->hs);
        }
        buf_release(&j->out);
        break;
    case JOB_PROBE:
        if (j->conn) {
            if (j->rc)
                http_respond(j->conn, 503, "text/plain", j->diag.text, strlen(j->diag.text), NULL);
            else
                http_respond(j->conn, 200, "text/plain", "ok\n", 3, NULL);
            http_server_flush(a->hs);
        }
        json_decref(j->spec);
        break;
    }
    free(j);
}

/* ---- the config stream --------------------------------------------------------------------- */

/*
 * A document from weftd: parsed here, then rendered and applied on a worker (a reload's
 * haproxy -c takes up to half a second with 1,000 services, HAPROXY-NOTES.md), and answered
 * from there (push_client_answer), so that the NACK carries HAProxy's own message. The newest
 * document wins: one that arrives while another waits replaces it.
 */
static int on_stream_config(void *arg, uint64_t version, const char *hash, const char *doc,
                            char *reason, size_t reason_size)
{
    struct agent *a = arg;
    json_error_t e;
    json_t *js = json_loads(doc, 0, &e);

    if (!js) {
        snprintf(reason, reason_size, "the document is not JSON: %s", e.text);
        a->nacks++;
        log_error("msg=\"configuration refused (NACK); the last good one keeps serving\" "
                  "version=%llu hash=%s error=\"%s\"",
                  (unsigned long long)version, hash, reason);
        return ERR_PARSE;
    }
    json_decref(a->doc);
    a->doc = js;
    a->doc_stream = true;
    a->doc_version = version;
    snprintf(a->doc_hash, sizeof(a->doc_hash), "%s", hash);
    apply_next(a);
    return PUSH_CONFIG_LATER;
}

static void on_stream_state(void *arg, const struct push_client_event *ev)
{
    struct agent *a = arg;

    a->stream_state = ev->state == PUSH_CLIENT_CONNECTED  ? AGENT_STREAM_CONNECTED
                      : ev->state == PUSH_CLIENT_REJECTED ? AGENT_STREAM_REJECTED
                                                          : AGENT_STREAM_DISCONNECTED;
    if (ev->state == PUSH_CLIENT_CONNECTED) {
        a->stream_connects++;
        log_info("msg=\"config stream connected\"");
    } else if (ev->state == PUSH_CLIENT_REJECTED)
        log_error("msg=\"config stream refused by weftd\" code=%s reason=\"%s\"", ev->code,
                  ev->reason);
    else
        log_warn("msg=\"config stream down; the last good configuration keeps serving\" "
                 "reason=\"%s\" retry_in_ms=%u",
                 ev->reason, ev->retry_ms);
}

static void stop_all(struct agent *a);

static void stop_later(uv_timer_t *t)
{
    stop_all(t->data);
}

/*
 * weftd says every app container of the pod has exited for good. A classic-mode sidecar leaves
 * when its pod is stopping (SIGTERM came) or is a Job's (it would hold the pod forever);
 * otherwise it remembers, and a later SIGTERM stops it at once. Native sidecars are stopped by
 * the kubelet (weftd sends this only for classic pods).
 */
static void on_stream_apps_exited(void *arg, const char *reason)
{
    struct agent *a = arg;

    if (a->stopping || a->apps_exited)
        return;
    a->apps_exited = true;
    if (!a->classic) {
        log_warn("msg=\"weftd says the app containers exited, but this is no classic-mode "
                 "sidecar (WEFT_SIDECAR_MODE); the kubelet stops it\" reason=\"%s\"",
                 reason);
        return;
    }
    if (a->draining || a->exit_on_completion) {
        log_info("msg=\"stopping: the app containers have exited\" reason=\"%s\" why=%s", reason,
                 a->draining ? "SIGTERM" : "WEFT_EXIT_ON_COMPLETION");
        /* push/ is calling us: the stream is freed from the loop, not from here */
        uv_timer_start(&a->stop_timer, stop_later, 0, 0);
        return;
    }
    log_info("msg=\"the app containers have exited; serving on until SIGTERM\" reason=\"%s\"",
             reason);
}

static void trust_next(struct agent *a)
{
    struct job *j;

    if (a->trust_busy || !a->trust_next || a->stopping)
        return;
    j = job_new(a, JOB_TRUST);
    if (!j)
        return;
    j->bundle = a->trust_next;
    a->trust_next = NULL;
    if (submit(a, j)) {
        log_error("msg=\"cannot queue the trust bundle's installation\"");
        return; /* dropped (submit freed it); the next renewal brings the bundle too */
    }
    a->trust_busy = true;
}

/* weftd's roots (push/ checked they hold certificates): installed when they differ. */
static void on_stream_trust(void *arg, const char *bundle_pem)
{
    struct agent *a = arg;
    char *copy;

    if (a->cert.bundle_pem && strcmp(a->cert.bundle_pem, bundle_pem) == 0 && !a->trust_next)
        return;
    copy = strdup(bundle_pem);
    if (!copy) {
        log_error("msg=\"trust bundle dropped: out of memory\"");
        return;
    }
    log_info("msg=\"trust bundle from weftd\" roots=%u", count_certs(bundle_pem));
    free(a->trust_next);
    a->trust_next = copy;
    trust_next(a);
}

static void stream_start(struct agent *a)
{
    static const struct push_client_ops ops = {.on_config = on_stream_config,
                                               .on_state = on_stream_state,
                                               .on_apps_exited = on_stream_apps_exited,
                                               .on_trust = on_stream_trust};
    const char *ns = getenv("POD_NAMESPACE"), *name = getenv("POD_NAME");
    struct push_client_config cfg = {0};
    int rc;

    if (!a->stream_port || a->stream)
        return;
    /* the certificate's pod extension names the pod; the downward API when it has none */
    cfg.pod_ns = a->cert.pod_namespace[0] ? a->cert.pod_namespace : ns;
    cfg.pod_name = a->cert.pod_name[0] ? a->cert.pod_name : name;
    cfg.pod_uid = a->cert.pod_uid;
    if (!cfg.pod_ns || !*cfg.pod_ns || !cfg.pod_name || !*cfg.pod_name || !*cfg.pod_uid) {
        log_error("msg=\"no config stream: the certificate names no pod (a token bound to the "
                  "pod is needed: the webhook's weft-token volume)\"");
        return;
    }
    cfg.host = a->stream_host;
    cfg.port = a->stream_port;
    cfg.server_name = a->stream_name;
    cfg.cert_pem = a->cert.chain_pem;
    cfg.key_pem = a->cert.key_pem;
    cfg.trust_pem = a->cert.bundle_pem;
    cfg.agent_version = "weft-agent";
    rc = push_client_new(a->loop, &cfg, &ops, a, &a->stream);
    if (rc)
        log_error("msg=\"config stream cannot start\" error=%s", err_str(rc));
}

/* ---- identity ---------------------------------------------------------------------------- */

static void cert_due(uv_timer_t *t)
{
    struct agent *a = t->data;
    struct job *j = job_new(a, JOB_CERT);

    /* weftd's serving certificate may come from a root the mounted bundle does not hold yet */
    if (j && a->cert.bundle_pem && !(j->bundle = strdup(a->cert.bundle_pem))) {
        free(j);
        j = NULL;
    }
    if (!j || submit(a, j))
        uv_timer_start(&a->cert_timer, cert_due, 1000, 0);
}

/* ---- configuration ----------------------------------------------------------------------- */

static void apply_next(struct agent *a)
{
    struct job *j;

    if (a->apply_busy || !a->doc || !a->have_cert || a->stopping)
        return;
    j = job_new(a, JOB_APPLY);
    if (!j)
        return;
    j->doc = a->doc;
    j->t_queued = uv_hrtime();
    j->stream = a->doc_stream;
    j->version = a->doc_version;
    memcpy(j->hash, a->doc_hash, sizeof(j->hash));
    if (submit(a, j))
        return; /* the document stays waiting; the next change or certificate retries */
    a->doc = NULL;
    a->apply_busy = true;
}

static void load_config(struct agent *a)
{
    json_error_t e;
    json_t *doc;

    if (!a->config_file)
        return;
    doc = json_load_file(a->config_file, 0, &e);
    if (!doc) {
        log_error("msg=\"configuration document unreadable; the last good one keeps serving\" "
                  "file=%s line=%d error=\"%s\"",
                  a->config_file, e.line, e.text);
        return;
    }
    json_decref(a->doc);
    a->doc = doc;
    a->doc_stream = false;
    apply_next(a);
}

/* ---- supervision --------------------------------------------------------------------------- */

static void on_signal(uv_signal_t *s, int signum)
{
    struct agent *a = s->data;

    if (signum == SIGHUP) {
        load_config(a);
        return;
    }
    if (signum == SIGCHLD) {
        int pid = agent_driver_pid(a->drv), st;

        if (pid <= 0 || waitpid(pid, &st, WNOHANG) != pid)
            return;
        if (a->stopping)
            return;
        log_error("msg=\"HAProxy's master exited; restarting it with the last good "
                  "configuration\" pid=%d status=%s%d",
                  pid, WIFSIGNALED(st) ? "signal " : "exit ",
                  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        a->hp_healthy = false;
        if (!a->restart_busy && submit(a, job_new(a, JOB_RESTART)) == 0)
            a->restart_busy = true;
        return;
    }
    /*
     * Classic mode: the kubelet sends SIGTERM to every container at once, so the apps may still
     * be finishing requests and making calls. The proxy serves on (readiness turns 503) until
     * weftd says the apps have exited, or the kubelet's SIGKILL ends the grace period. Without
     * a config stream nothing would say so: stop now. A second SIGTERM or SIGINT stops now.
     */
    if (signum == SIGTERM && a->classic && a->stream_port && !a->apps_exited && !a->draining &&
        !a->stopping) {
        a->draining = true;
        log_info("msg=\"SIGTERM: serving on until the app containers have exited (weftd tells) "
                 "or the grace period ends\" stream=%s",
                 a->stream ? "open" : "not yet connected");
        return;
    }
    log_info("msg=\"stopping\" signal=%d%s", signum, a->apps_exited ? " apps_exited=yes" : "");
    stop_all(a);
}

static void health_tick(uv_timer_t *t)
{
    struct agent *a = t->data;

    if (!a->health_busy && submit(a, job_new(a, JOB_HEALTH)) == 0)
        a->health_busy = true;
}

/* ---- health on 15020 ----------------------------------------------------------------------- */

static void probe_gone(void *arg, struct http_conn *c)
{
    struct job *j = arg;

    (void)c;
    j->conn = NULL;
}

static bool from_pod(struct agent *a, struct http_conn *c)
{
    uint32_t peer = http_conn_peer_v4(c);

    return (ntohl(peer) >> 24) == 127 || (a->pod_ip && peer == a->pod_ip);
}

static bool is_ready(const struct agent *a)
{
    return a->have_cert && a->configured && a->hp_healthy && !a->stopping && !a->draining;
}

static void metrics_snapshot(struct agent *a, struct agent_metrics *m)
{
    memset(m, 0, sizeof(*m));
    m->ready = is_ready(a);
    m->haproxy_up = a->hp_healthy;
    m->cert_not_after = a->have_cert ? a->not_after : 0;
    m->cert_ok = a->cert_ok;
    m->cert_errors = a->cert_errors;
    m->bundle_roots = a->cert.bundle_pem ? count_certs(a->cert.bundle_pem) : 0;
    m->trust_updates = a->trust_updates;
    m->stream_state = a->stream_state;
    m->stream_connects = a->stream_connects;
    memcpy(m->applied, a->applied, sizeof(m->applied));
    m->nacks = a->nacks;
    m->restarts = a->restarts;
    /* the driver's counters are read on the worker: its lock may be held by a reload */
}

static void health_handle(void *arg, struct http_conn *c, const struct http_request *req)
{
    struct agent *a = arg;
    static const char pfx[] = "/app-health/";

    if (strcmp(req->path, "/healthz/ready") == 0) {
        char why[1200];

        if (is_ready(a)) {
            http_respond(c, 200, "text/plain", "ready\n", 6, NULL);
            return;
        }
        snprintf(why, sizeof(why), "not ready:%s%s%s%s%s\n",
                 a->have_cert ? "" : " no certificate yet;",
                 a->configured ? "" : " no configuration applied yet;",
                 a->hp_healthy ? "" : " HAProxy does not answer;", a->stopping ? " stopping;" : "",
                 a->draining && !a->stopping
                     ? " pod stopping: serving until the app containers have exited;"
                     : "");
        http_respond(c, 503, "text/plain", why, strlen(why), NULL);
        return;
    }
    if (strncmp(req->path, pfx, sizeof(pfx) - 1) == 0) {
        const json_t *spec = json_object_get(a->probes, req->path);
        struct job *j;

        if (!spec) {
            http_respond(c, 404, "text/plain", "no such probe\n", 14, NULL);
            return;
        }
        j = job_new(a, JOB_PROBE);
        if (!j) {
            http_respond(c, 503, "text/plain", "out of memory\n", 14, NULL);
            return;
        }
        j->spec = json_incref((json_t *)spec);
        j->conn = c;
        if (submit(a, j)) {
            json_decref((json_t *)spec);
            http_respond(c, 503, "text/plain", "busy\n", 5, NULL);
            return;
        }
        http_defer(c, probe_gone, j);
        return;
    }
    if (strcmp(req->path, "/stats/prometheus") == 0) {
        struct job *j;

        if (a->scrape_busy) {
            http_respond(c, 503, "text/plain", "a scrape is in progress\n", 24, NULL);
            return;
        }
        j = job_new(a, JOB_SCRAPE);
        if (!j) {
            http_respond(c, 503, "text/plain", "out of memory\n", 14, NULL);
            return;
        }
        metrics_snapshot(a, &j->m);
        buf_init(&j->out);
        if (agent_access_text(a->access, &j->out) || agent_grpc_text(a->grpc, &j->out)) {
            buf_release(&j->out);
            free(j);
            http_respond(c, 503, "text/plain", "out of memory\n", 14, NULL);
            return;
        }
        j->conn = c;
        if (submit(a, j)) {
            http_respond(c, 503, "text/plain", "busy\n", 5, NULL);
            return;
        }
        a->scrape_busy = true;
        http_defer(c, probe_gone, j);
        return;
    }
    if (strcmp(req->path, "/quitquitquit") == 0) {
        if (!from_pod(a, c)) {
            http_respond(c, 403, "text/plain", "only the pod itself may stop its proxy\n", 39,
                         NULL);
            return;
        }
        if (strcmp(req->method, "POST") != 0) {
            http_respond(c, 405, "text/plain", "use POST\n", 9, NULL);
            return;
        }
        http_respond(c, 200, "text/plain", "stopping\n", 9, NULL);
        http_server_flush(a->hs);
        log_info("msg=\"stopping: /quitquitquit\"");
        stop_all(a);
        return;
    }
    http_respond(c, 404, "text/plain", "not found\n", 10, NULL);
}

static int health_start(struct agent *a)
{
    /* probes from the kubelet and /quitquitquit: small, few, quick */
    struct http_limits lim = {.request_ms = 5000,
                              .idle_ms = 30000,
                              .handshake_ms = 5000,
                              .write_ms = 5000,
                              .max_conns = 64,
                              .max_conns_per_addr = 32,
                              .max_buffered = 256u << 10,
                              .handshakes_per_round = 8,
                              .accept_backoff_ms = 100};
    int rc = http_server_new(a->health_addr, NULL, 4096, health_handle, a, &a->hs);

    if (rc)
        return rc;
    http_server_set_limits(a->hs, &lim);
    return http_uv_attach(a->loop, a->hs, &a->hs_uv);
}

/* ---- access decisions ----------------------------------------------------------------------- */

#define ACCESS_READS                                                                               \
    16 /* reads of up to 64 KB per wake-up, so that a flood cannot starve the loop */

static void access_line(void *ctx, const char *line, size_t len)
{
    struct agent *a = ctx;
    bool grpc = agent_grpc_line(a->grpc, line, len);

    if (!agent_access_line(a->access, line, len) && !grpc)
        log_debug("msg=\"log pipe: neither a decision nor a grpc line\" bytes=%zu", len);
}

static void on_access(uv_poll_t *p, int status, int events)
{
    struct agent *a = p->data;
    char chunk[65536];

    (void)status;
    (void)events;
    for (int i = 0; i < ACCESS_READS; i++) {
        ssize_t n = read(a->access_fd, chunk, sizeof(chunk));

        if (n <= 0)
            break; /* EAGAIN: drained (never 0: the agent holds the write end) */
        agent_lines_feed(&a->access_lines, chunk, (size_t)n, access_line, a);
        if ((size_t)n < sizeof(chunk))
            break;
    }
}

/*
 * The log pipe HAProxy's inbound frontend (and the outbound one where the document has a grpc
 * port) logs to (render.c: "log fd@3"): the agent makes it once and every HAProxy it starts
 * inherits the write end as AGENT_LOG_FD (haproxy.c), so every worker, old ones draining after
 * a reload included, writes to it until it exits. Nothing else can write to it (it has no
 * name). Capacity AGENT_LOG_PIPE_SIZE (about 4,000 lines): a line HAProxy cannot write while
 * the agent is not reading is dropped by HAProxy, never blocking a request, and counted in
 * its DroppedLogs (haproxy_process_dropped_logs_total).
 */
static int access_start(struct agent *a)
{
    int fds[2], w, rc;

    a->access_fd = -1;
    a->real.log_fd = -1;
    rc = agent_access_new(&a->access);
    if (!rc)
        rc = agent_grpc_new(&a->grpc);
    if (rc)
        return rc;
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        return -errno;
    if (fcntl(fds[0], F_SETPIPE_SZ, AGENT_LOG_PIPE_SIZE) < 0)
        log_warn("msg=\"log pipe: cannot raise its capacity\" bytes=%d err=\"%s\"",
                 AGENT_LOG_PIPE_SIZE, err_str(-errno));
    /* the write end away from AGENT_LOG_FD (the spawn dup2s it there) */
    w = fcntl(fds[1], F_DUPFD_CLOEXEC, AGENT_LOG_FD + 1);
    rc = w < 0 ? -errno : 0;
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        return rc;
    }
    a->access_fd = fds[0];
    a->real.log_fd = w;
    rc = uv_poll_init(a->loop, &a->access_poll, fds[0]);
    if (rc)
        return rc;
    a->access_poll.data = a;
    return uv_poll_start(&a->access_poll, UV_READABLE, on_access);
}

/* ---- stop -------------------------------------------------------------------------------- */

static void stop_all(struct agent *a)
{
    int pid = agent_driver_pid(a->drv);

    if (a->stopping)
        return;
    a->stopping = true;
    if (pid > 0)
        kill(pid, SIGTERM); /* the master stops its worker */
    /* every handle closed: uv_run returns once the stream's teardown and the jobs on workers
     * are done (main then frees the rest) */
    push_client_free(a->stream);
    a->stream = NULL;
    uv_close((uv_handle_t *)&a->cert_timer, NULL);
    uv_close((uv_handle_t *)&a->stop_timer, NULL);
    uv_close((uv_handle_t *)&a->health_timer, NULL);
    http_uv_detach(a->hs_uv);
    a->hs_uv = NULL;
    uv_close((uv_handle_t *)&a->access_poll, NULL);
    uv_close((uv_handle_t *)&a->sig_chld, NULL);
    uv_close((uv_handle_t *)&a->sig_term, NULL);
    uv_close((uv_handle_t *)&a->sig_int, NULL);
    uv_close((uv_handle_t *)&a->sig_hup, NULL);
}

/* ---- main -------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: weft-agent [--log-level debug|info|warn|error] [--config-file DOC.json]\n"
               "                  [--run-dir /var/lib/weft] [--control-plane HOST:PORT]\n"
               "                  [--token-file PATH] [--ca-file PATH] [--haproxy BIN]\n"
               "                  [--health-listen 0.0.0.0:15020] [--inbound-port 15006]\n"
               "                  [--outbound-port 15001] [--metrics-port 15090]\n"
               "                  [--stream-port 15013] [--stream-server-name NAME]\n"
               "                  [--access-log decisions|all]\n"
               "                  [--hard-stop-after SECONDS] [--max-reloads N]\n"
               "                  [--peer-maxconn N]\n");
}

static size_t discard(char *p, size_t sz, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return sz * n;
}

/*
 * `weft-agent wait`: the classic-mode postStart hook (docs/injection.md). Returns 0 once the
 * running agent's /healthz/ready answers 200 (asked every 200 ms over loopback on the health
 * port), 1 after WAIT_TIMEOUT_S without it.
 */
#define WAIT_TIMEOUT_S 600
static int wait_ready(const char *health_addr)
{
    const char *colon = strrchr(health_addr, ':');
    char url[128];
    time_t end = time(NULL) + WAIT_TIMEOUT_S;
    CURL *c;

    snprintf(url, sizeof(url), "http://127.0.0.1:%s/healthz/ready", colon ? colon + 1 : "15020");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c = curl_easy_init();
    if (!c)
        return 1;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    for (;;) {
        long status = 0;

        if (curl_easy_perform(c) == CURLE_OK &&
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200) {
            curl_easy_cleanup(c);
            return 0;
        }
        if (time(NULL) >= end) {
            fprintf(stderr, "weft-agent wait: %s not ready after %d s\n", url, WAIT_TIMEOUT_S);
            curl_easy_cleanup(c);
            return 1;
        }
        nanosleep(&(struct timespec){0, 200 * 1000000L}, NULL);
    }
}

/* The directory that holds the key, this user's only (0700). A directory of ours is used as
 * it is; one we do not own (the pod's emptyDir, which the kubelet makes root's with mode 0777)
 * gets a private subdirectory "proxy" for everything the agent writes. Returns the path (dir
 * itself or buf), or NULL after saying why. */
static const char *private_run_dir(const char *dir, char *buf, size_t len)
{
    struct stat st;

    for (int i = 0; i < 2; i++) {
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "weft-agent: %s: %s\n", dir, strerror(errno));
            return NULL;
        }
        if (stat(dir, &st) != 0) {
            fprintf(stderr, "weft-agent: %s: %s\n", dir, strerror(errno));
            return NULL;
        }
        if (!S_ISDIR(st.st_mode)) {
            fprintf(stderr, "weft-agent: %s: not a directory\n", dir);
            return NULL;
        }
        if (st.st_uid == geteuid()) {
            if (chmod(dir, 0700) != 0) {
                fprintf(stderr, "weft-agent: %s: %s\n", dir, strerror(errno));
                return NULL;
            }
            return dir;
        }
        if (i == 1 || (size_t)snprintf(buf, len, "%s/proxy", dir) >= len)
            break;
        dir = buf;
    }
    fprintf(stderr, "weft-agent: %s: owned by another user (uid %u), not usable for the key\n", dir,
            (unsigned)st.st_uid);
    return NULL;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"log-level", required_argument, NULL, 'l'},
        {"config-file", required_argument, NULL, 'c'},
        {"run-dir", required_argument, NULL, 'r'},
        {"control-plane", required_argument, NULL, 'p'},
        {"token-file", required_argument, NULL, 't'},
        {"ca-file", required_argument, NULL, 'a'},
        {"haproxy", required_argument, NULL, 'H'},
        {"health-listen", required_argument, NULL, 'h'},
        {"inbound-port", required_argument, NULL, 'i'},
        {"outbound-port", required_argument, NULL, 'o'},
        {"metrics-port", required_argument, NULL, 'm'},
        {"stream-port", required_argument, NULL, 's'},
        {"stream-server-name", required_argument, NULL, 'n'},
        {"access-log", required_argument, NULL, 'A'},
        {"hard-stop-after", required_argument, NULL, 'S'},
        {"max-reloads", required_argument, NULL, 'R'},
        {"peer-maxconn", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, '?'},
        {NULL, 0, NULL, 0},
    };
    struct agent a = {0};
    const char *run_dir = "/var/lib/weft";
    const char *cp = env_or("WEFT_CONTROL_PLANE", NULL);
    char cert_file[600], ca_file[600], run_dir_buf[520];
    const char *probes = getenv("WEFT_APP_PROBES"), *pod_ip = getenv("POD_IP");
    int opt, rc;

    a.loop = uv_default_loop();
    a.creq.token_file = "/var/run/secrets/weft/tokens/token";
    a.creq.ca_file = "/var/run/secrets/weft/ca/ca.crt";
    a.creq.timeout_ms = 10000;
    a.health_addr = "0.0.0.0:15020";
    a.real.timeout_ms = 5000;
    a.real.log_fd = -1;
    agent_render_opts_init(&a.ro);
    while ((opt = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        enum log_level lvl;
        switch (opt) {
        case 'l':
            if (log_level_parse(optarg, &lvl)) {
                fprintf(stderr, "weft-agent: --log-level: unknown level \"%s\"\n", optarg);
                return 2;
            }
            log_set_level(lvl);
            break;
        case 'c':
            a.config_file = optarg;
            break;
        case 'r':
            run_dir = optarg;
            break;
        case 'p':
            cp = optarg;
            break;
        case 't':
            a.creq.token_file = optarg;
            break;
        case 'a':
            a.creq.ca_file = optarg;
            break;
        case 'H':
            a.real.haproxy = optarg;
            break;
        case 'h':
            a.health_addr = optarg;
            break;
        case 'n':
            a.stream_name = optarg;
            break;
        case 'A':
            if (strcmp(optarg, "all") && strcmp(optarg, "decisions")) {
                fprintf(stderr, "weft-agent: --access-log: want decisions or all, not \"%s\"\n",
                        optarg);
                return 2;
            }
            a.ro.access_log_all = strcmp(optarg, "all") == 0;
            break;
        case 'S':
        case 'R': {
            /* how long, and through how many later reloads, an old HAProxy worker may keep
             * serving its connections (docs/operations.md, "Long-lived connections") */
            char *end;
            long v = strtol(optarg, &end, 10), max = opt == 'S' ? 7 * 86400 : 1000;
            if (*end || end == optarg || v < 1 || v > max) {
                fprintf(stderr, "weft-agent: --%s: want %s 1-%ld, not \"%s\"\n",
                        opt == 'S' ? "hard-stop-after" : "max-reloads",
                        opt == 'S' ? "seconds" : "a count", max, optarg);
                return 2;
            }
            *(opt == 'S' ? &a.ro.hard_stop_after_s : &a.ro.max_reloads) = (int)v;
            break;
        }
        case 'P': {
            /* connections one peer address may hold on the inbound listener (render.c,
             * inbound_bounds) */
            char *end;
            long v = strtol(optarg, &end, 10), max = a.ro.maxconn - a.ro.maxconn / 4;
            if (*end || end == optarg || v < 1 || v > max) {
                fprintf(stderr, "weft-agent: --peer-maxconn: want a count 1-%ld, not \"%s\"\n", max,
                        optarg);
                return 2;
            }
            a.ro.peer_maxconn = (int)v;
            break;
        }
        case 's':
        case 'i':
        case 'o':
        case 'm': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 65535) {
                fprintf(stderr, "weft-agent: --%s: want a port 1-65535, not \"%s\"\n",
                        opt == 's'   ? "stream-port"
                        : opt == 'i' ? "inbound-port"
                        : opt == 'o' ? "outbound-port"
                                     : "metrics-port",
                        optarg);
                return 2;
            }
            if (opt == 's') {
                a.stream_port = (int)v;
                break;
            }
            *(opt == 'i'   ? &a.ro.inbound_port
              : opt == 'o' ? &a.ro.outbound_port
                           : &a.ro.metrics_port) = (int)v;
            break;
        }
        default:
            usage(opt == '?' && optopt == 0 ? stdout : stderr);
            return 2;
        }
    }
    if (optind < argc && strcmp(argv[optind], "wait") == 0 && optind + 1 == argc)
        return wait_ready(a.health_addr);
    if (optind < argc) {
        fprintf(stderr, "weft-agent: unexpected argument \"%s\" (the only subcommand is wait)\n",
                argv[optind]);
        return 2;
    }
    if (!cp) {
        fprintf(stderr, "weft-agent: no control plane: set WEFT_CONTROL_PLANE or "
                        "--control-plane HOST:PORT (weftd's certificate endpoint)\n");
        return 2;
    }
    snprintf(a.url, sizeof(a.url), "https://%s/v1/certificates", cp);
    /* the stream: port 15013 of the control plane's host (docs/config-stream.md), unless the
     * document comes from a file */
    {
        const char *colon = strrchr(cp, ':');
        size_t hl = colon ? (size_t)(colon - cp) : strlen(cp);

        if (hl >= sizeof(a.stream_host)) {
            fprintf(stderr, "weft-agent: control plane address too long\n");
            return 2;
        }
        memcpy(a.stream_host, cp, hl);
        a.stream_host[hl] = '\0';
        if (a.config_file)
            a.stream_port = 0;
        else if (!a.stream_port)
            a.stream_port = 15013;
    }
    a.creq.url = a.url;
    run_dir = private_run_dir(run_dir, run_dir_buf, sizeof(run_dir_buf));
    if (!run_dir)
        return 1;
    snprintf(cert_file, sizeof(cert_file), "%s/pod.pem", run_dir);
    snprintf(ca_file, sizeof(ca_file), "%s/bundle.pem", run_dir);
    a.ro.run_dir = run_dir;
    a.ro.cert_file = cert_file;
    a.ro.ca_file = ca_file;
    if (pod_ip && *pod_ip) {
        struct in_addr in;
        if (inet_pton(AF_INET, pod_ip, &in) == 1)
            a.pod_ip = in.s_addr;
        else if (strchr(pod_ip, ':'))
            a.ro.ipv6 = true;
    }
    {
        const char *mode = env_or("WEFT_SIDECAR_MODE", "native"),
                   *eoc = env_or("WEFT_EXIT_ON_COMPLETION", "false");

        if (strcmp(mode, "classic") != 0 && strcmp(mode, "native") != 0) {
            fprintf(stderr, "weft-agent: WEFT_SIDECAR_MODE: want classic or native, not \"%s\"\n",
                    mode);
            return 2;
        }
        if (strcmp(eoc, "true") != 0 && strcmp(eoc, "false") != 0) {
            fprintf(stderr, "weft-agent: WEFT_EXIT_ON_COMPLETION: want true or false, not \"%s\"\n",
                    eoc);
            return 2;
        }
        a.classic = strcmp(mode, "classic") == 0;
        a.exit_on_completion = strcmp(eoc, "true") == 0;
    }
    if (probes && *probes) {
        json_error_t e;
        a.probes = json_loads(probes, 0, &e);
        if (!json_is_object(a.probes)) {
            fprintf(stderr, "weft-agent: WEFT_APP_PROBES: not a JSON object (%s)\n", e.text);
            return 2;
        }
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = agent_driver_new(&agent_haproxy_real_ops, &a.real, &a.ro, &a.drv);
    if (rc) {
        fprintf(stderr, "weft-agent: %s\n", err_str(rc));
        return 1;
    }
    rc = health_start(&a);
    if (rc) {
        fprintf(stderr, "weft-agent: health listener %s: %s\n", a.health_addr, err_str(rc));
        return 1;
    }
    rc = access_start(&a);
    if (rc) {
        fprintf(stderr, "weft-agent: the log pipe: %s\n", err_str(rc));
        return 1;
    }
    uv_timer_init(a.loop, &a.cert_timer);
    a.cert_timer.data = &a;
    uv_timer_init(a.loop, &a.stop_timer);
    a.stop_timer.data = &a;
    uv_timer_init(a.loop, &a.health_timer);
    a.health_timer.data = &a;
    uv_timer_start(&a.health_timer, health_tick, 0, 500);
    uv_signal_init(a.loop, &a.sig_chld);
    uv_signal_init(a.loop, &a.sig_term);
    uv_signal_init(a.loop, &a.sig_int);
    uv_signal_init(a.loop, &a.sig_hup);
    a.sig_chld.data = a.sig_term.data = a.sig_int.data = a.sig_hup.data = &a;
    uv_signal_start(&a.sig_chld, on_signal, SIGCHLD);
    uv_signal_start(&a.sig_term, on_signal, SIGTERM);
    uv_signal_start(&a.sig_int, on_signal, SIGINT);
    uv_signal_start(&a.sig_hup, on_signal, SIGHUP);
    log_info("msg=\"weft-agent starting\" control_plane=%s run_dir=%s health=%s sidecar_mode=%s "
             "exit_on_completion=%s",
             cp, run_dir, a.health_addr, a.classic ? "classic" : "native",
             a.exit_on_completion ? "yes" : "no");
    load_config(&a);
    cert_due(&a.cert_timer);
    uv_run(a.loop, UV_RUN_DEFAULT);
    /* jobs still on workers finish before the process exits */
    {
        int pid = agent_driver_pid(a.drv), st;
        if (pid > 0)
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
    }
    http_server_free(a.hs);
    if (a.access_fd >= 0)
        close(a.access_fd);
    if (a.real.log_fd >= 0)
        close(a.real.log_fd);
    agent_access_free(a.access);
    agent_grpc_free(a.grpc);
    agent_driver_free(a.drv);
    json_decref(a.probes);
    json_decref(a.doc);
    free(a.trust_next);
    agent_cert_release(&a.cert);
    IGNORE_RESULT(uv_loop_close(a.loop));
    curl_global_cleanup();
    log_info("msg=\"weft-agent stopped\"");
    return 0;
}
