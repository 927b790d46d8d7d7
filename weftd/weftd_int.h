/*
 * weftd_int.h - the weftd binary's shared state, for the files of weftd/ only.
 *
 * weftd wires the modules together on one libuv loop: the Kubernetes client and informers
 * (lib/kube), the mesh model and compiler (controller/), the CA (ca/) with its certificate
 * endpoint, the injection webhook (webhook/), and the admin endpoint. HTTP servers are lib/http
 * servers embedded in the loop (weftd_http_attach). Every replica watches and compiles; only
 * the Lease holder writes (custom resource status, the CA root Secret, trust-bundle ConfigMaps,
 * the webhook configuration).
 */
#ifndef WEFTD_INT_H
#define WEFTD_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ca/ca.h"
#include "controller/controller.h"
#include "core/err.h"
#include "http/http.h"
#include "kube/kube.h"
#include "webhook/webhook.h"

struct weftd_opts {
    const char *kubeconfig;      /* NULL: in-cluster, then $KUBECONFIG */
    const char *namespace;       /* weftd's own namespace (weft-system) */
    const char *identity;        /* leader-election identity (pod name or hostname) */
    const char *admin_listen;    /* "0.0.0.0:15014": metrics, healthz, readyz, debug */
    const char *webhook_listen;  /* "0.0.0.0:9443": POST /inject */
    const char *certs_listen;    /* "0.0.0.0:15012": POST /v1/certificates */
    const char *webhook_url;     /* out of cluster: register weft-injector with this URL */
    const char *webhook_service; /* in cluster: Service name of the webhook (weft-webhook) */
    long webhook_max_inflight;   /* reviews queued or running before 503s (1024) */
    const char *trust_domain;    /* "cluster.local" */
    enum mesh_mode mode;
    const char *ca_secret;      /* Secret holding Weft's own root: "weft-ca" */
    const char *user_ca_secret; /* operator-supplied root or intermediate (NULL: none) */
    long cert_ttl;              /* leaf lifetime, seconds (86400) */
};

/*
 * A Prometheus histogram of durations in seconds over fixed bucket bounds (weftd_hist_bounds:
 * 100 us to 10 s). counts[i] counts observations in (bound[i-1], bound[i]], the last one those
 * above the largest bound (+Inf); /metrics prints them cumulatively.
 */
#define WEFTD_HIST_BOUNDS 16
extern const double weftd_hist_bounds[WEFTD_HIST_BOUNDS];
struct weftd_hist {
    uint64_t counts[WEFTD_HIST_BOUNDS + 1];
    uint64_t count;
    double sum;
};
/* Count one observation of seconds (admin.c). */
void weftd_hist_observe(struct weftd_hist *h, double seconds);

/* Outcomes of a status evaluation, the label of weft_status_writes_total (admin.c names). */
enum weftd_status_result {
    WEFTD_STATUS_WRITTEN,   /* conditions written */
    WEFTD_STATUS_UNCHANGED, /* the stored conditions already said it: no write */
    WEFTD_STATUS_NOT_FOUND, /* the object was gone */
    WEFTD_STATUS_CONFLICT,  /* still conflicting after the retries: tried again later */
    WEFTD_STATUS_ERROR,     /* any other failure: tried again later */
    WEFTD_STATUS_NRESULTS
};

/* Counters for /metrics (Prometheus text). */
#define WEFTD_REFUSED_AUTH 15
struct weftd_metrics {
    uint64_t reconciles; /* errors are counted per watch (struct weftd_watch) */
    struct weftd_hist reconcile_seconds;
    uint64_t compiles, compiles_changed;
    struct weftd_hist compile_seconds;      /* one proxy document */
    struct weftd_hist compile_pass_seconds; /* one pass over the dirty proxies */
    uint64_t status[WEFTD_STATUS_NRESULTS];
    uint64_t certs_issued;
    uint64_t certs_refused[16]; /* by enum ca_refusal; [WEFTD_REFUSED_AUTH]: token refused */
    double issue_seconds_sum;
    uint64_t webhook_reviews, webhook_errors;
    uint64_t webhook_outcomes[6];  /* by enum webhook_outcome */
    uint64_t webhook_inflight;     /* reviews queued or running (gauge) */
    uint64_t webhook_shed_full;    /* refused at once: max in flight reached */
    uint64_t webhook_shed_expired; /* dropped: waited past the API server's timeout */
    uint64_t webhook_shed_log_ns;  /* last shed warning, for rate limiting */
    struct weftd_hist webhook_seconds;
};

struct weftd;

/* One watched resource: its informer and how its keys reach the work queue. */
struct weftd_watch {
    struct weftd *d;
    const char *kind; /* model kind ("Pod", "TrafficSplit.split.smi-spec.io") */
    struct kube_resource res;
    struct kube_informer *inf;
    bool optional;             /* SMI: absent CRD is fine */
    uint64_t reconcile_errors; /* weft_reconcile_errors_total{resource} */
};

#define WEFTD_MAX_WATCHES 16

struct weftd {
    uv_loop_t *loop;
    struct weftd_opts opts;
    struct kube_config *kcfg;
    struct kube_client *kube;
    struct kube_leader *leader;
    bool leading;

    struct mesh_model *model;
    struct wq *queue;
    struct weftd_watch watches[WEFTD_MAX_WATCHES];
    size_t nwatches;
    json_t *docs;           /* "ns/name" -> last compiled document (for /debug/config and push) */
    json_t *status_pending; /* keys of custom resources whose status needs a write */
    void *sync;             /* sync.c's private state */

    struct ca *ca;                      /* NULL until the root is loaded */
    char *bundle_pem;                   /* trust bundle PEM, NULL until loaded */
    struct inject_config inject;        /* POST /inject: the namespace is selected */
    struct inject_config inject_opt_in; /* POST /inject/opt-in: only pods that ask */

    struct http_server *admin, *webhook, *certs;
    struct weftd_http *attached[4];
    struct weftd_metrics m;
    uv_signal_t sigterm, sigint;
    bool stopping;
    /* added by ca/webhook */
    void *ca_srv;      /* ca_server.c's private state */
    void *webhook_srv; /* webhook_server.c's private state */
};

/* --- lib/http servers on the libuv loop (httpuv.c) --- */
/* Drive s from d's loop until weftd_http_detach; s stays owned by the caller. */
int weftd_http_attach(struct weftd *d, struct http_server *s) WUR;
/* Stop driving s; the libuv handles close asynchronously (let the loop run once more). */
void weftd_http_detach(struct weftd *d, struct http_server *s);
/* After answering a deferred request from a non-HTTP callback: write it out now. */
void weftd_http_kick(struct weftd *d, struct http_server *s);

/* --- sync: informers -> model -> documents and status (sync.c) --- */
int weftd_sync_start(struct weftd *d) WUR;
void weftd_sync_stop(struct weftd *d);
bool weftd_synced(const struct weftd *d);
void weftd_sync_leading(struct weftd *d); /* became leader: write pending status */
/* Counters of the Events emitted for condition changes (zeros before the start). */
void weftd_sync_event_stats(const struct weftd *d, struct kube_recorder_stats *out);

/* --- CA: root bootstrap, certificate endpoint, trust bundle (ca_server.c) --- */
int weftd_ca_start(struct weftd *d) WUR;
void weftd_ca_stop(struct weftd *d);
void weftd_ca_leading(struct weftd *d);
/* A namespace was seen (or changed): publish the trust bundle there if it is meshed. */
void weftd_ca_namespace(struct weftd *d, const json_t *ns);

/* --- injection webhook server and its configuration (webhook_server.c) --- */
int weftd_webhook_start(struct weftd *d) WUR;
void weftd_webhook_stop(struct weftd *d);
void weftd_webhook_leading(struct weftd *d);
/* The CA became ready (or rotated): (re)issue the serving cert, refresh the caBundle. */
void weftd_webhook_ca_ready(struct weftd *d);

/* --- admin endpoint (admin.c) --- */
int weftd_admin_start(struct weftd *d) WUR;
void weftd_admin_stop(struct weftd *d);

/* added by ca/webhook: helpers defined in ca_server.c, shared with webhook_server.c */
/*
 * A TLS server context whose certificate is issued from d->ca for the given names (copied) and
 * re-issued at half-life and on weftd_tls_refresh (CA ready or rotated). Until the first
 * certificate arrives the context has none, so handshakes fail. Issuance (key generation) runs
 * on a libuv worker; on_issued(arg) runs on the loop after each new certificate is installed.
 * The context is valid until weftd_tls_free; free the http_server that borrows it first.
 */
struct weftd_tls;
typedef void weftd_tls_fn(void *arg);
int weftd_tls_new(struct weftd *d, const char *const *dns, size_t ndns, const char *const *ips,
                  size_t nips, weftd_tls_fn *on_issued, void *arg, struct weftd_tls **out) WUR;
SSL_CTX *weftd_tls_ctx(const struct weftd_tls *t);
bool weftd_tls_ready(const struct weftd_tls *t);
void weftd_tls_refresh(struct weftd_tls *t);
void weftd_tls_free(struct weftd_tls *t);

#endif
