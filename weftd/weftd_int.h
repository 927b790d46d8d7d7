/*
 * weftd_int.h - the weftd binary's shared state, for the files of weftd/ only.
 *
 * weftd wires the modules together on one libuv loop: the Kubernetes client and informers
 * (lib/kube, sync.c), the mesh model and compiler (controller/, sync.c), the CA (ca/: signer and
 * trust bundle in ca_roots.c, POST /v1/certificates in cert_endpoint.c, serving certificates in
 * serving_cert.c), the injection webhook (webhook/, webhook_server.c), the config stream to
 * every agent (push/, stream.c), and the admin endpoint (admin.c, with metrics.c). HTTP servers
 * are lib/http servers embedded in the loop (weftd_http_attach). Every replica watches and
 * compiles; only the Lease holder writes (custom resource status, the CA root Secret, trust-bundle
 * ConfigMaps, the webhook configuration).
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
#include "core/hold.h"
#include "core/log.h"
#include "http/http.h"
#include "kube/kube.h"
#include "webhook/webhook.h"

/* weftd's settings from the command line: defaults, flags and --help come from options.c's
 * table. The strings point into argv or into that table. */
struct weftd_opts {
    const char *kubeconfig;      /* NULL: in-cluster, then $KUBECONFIG */
    const char *namespace;       /* weftd's own namespace (weft-system) */
    const char *identity;        /* leader-election identity (pod name or hostname) */
    const char *admin_listen;    /* "0.0.0.0:15014": metrics, healthz, readyz, debug */
    const char *webhook_listen;  /* "0.0.0.0:9443": POST /inject */
    const char *certs_listen;    /* "0.0.0.0:15012": POST /v1/certificates */
    const char *stream_listen;   /* "0.0.0.0:15013": the config stream (wss) */
    long stream_protocol;        /* newest config stream protocol served (2; 1: v1 only) */
    long stream_debounce_ms;     /* coalescing window of a burst of changes to one proxy (100) */
    long disconnected_grace_s;   /* a proxy on no stream stops blocking Programmed after (30) */
    const char *webhook_url;     /* out of cluster: register weft-injector with this URL */
    const char *webhook_service; /* in cluster: Service name of the webhook (weft-webhook) */
    long webhook_max_inflight;   /* reviews queued or running before 503s (1024) */
    const char *trust_domain;    /* "cluster.local" */
    enum mesh_mode mode;
    enum mesh_outbound_scope outbound_scope; /* which Services a document lists (mesh) */
    const char *ca_secret;                   /* Secret holding Weft's own root: "weft-ca" */
    const char *user_ca_secret; /* operator-supplied root or intermediate (NULL: none) */
    long cert_ttl;              /* leaf lifetime, seconds (86400) */
    enum log_level log_level;   /* weftd's own (info) */
    /* overrides of every listener's bounds (0: the listener's own, weftd_listener_bounds) */
    long request_timeout_ms;     /* --request-timeout-ms */
    long max_connections;        /* --max-connections */
    long max_connections_per_ip; /* --max-connections-per-address */
    long max_request_bytes;      /* --max-buffered-request-bytes */
    long request_bytes_per_s;    /* --max-request-bytes-per-second-per-address */
};

/* --- metrics (metrics.c) --- */
/*
 * A Prometheus histogram of durations in seconds over fixed bucket bounds (100 us to 10 s).
 * counts[i] counts observations in (bound[i-1], bound[i]], the last one those above the
 * largest bound (+Inf); /metrics prints them cumulatively.
 */
#define WEFTD_HIST_BOUNDS 16
struct weftd_hist {
    uint64_t counts[WEFTD_HIST_BOUNDS + 1];
    uint64_t count;
    double sum;
};
/* Count one observation of seconds. */
void weftd_hist_observe(struct weftd_hist *h, double seconds);
struct buf;
/* Append h to b as the Prometheus histogram name (HELP, TYPE, cumulative _bucket, _sum,
 * _count). 0 or -ENOMEM. */
int weftd_hist_print(struct buf *b, const char *name, const char *help,
                     const struct weftd_hist *h) WUR;

/* Outcomes of a status evaluation, the label of weft_status_writes_total (admin.c names). */
enum weftd_status_result {
    WEFTD_STATUS_WRITTEN,   /* conditions written */
    WEFTD_STATUS_UNCHANGED, /* the stored conditions already said it: no write */
    WEFTD_STATUS_NOT_FOUND, /* the object was gone */
    WEFTD_STATUS_CONFLICT,  /* still conflicting after the retries: tried again later */
    WEFTD_STATUS_ERROR,     /* any other failure: tried again later */
    WEFTD_STATUS_NRESULTS
};

/* Counters for /metrics (Prometheus text). certs_refused counts by enum ca_refusal, and one
 * more for tokens refused (WEFTD_REFUSED_AUTH). */
#define WEFTD_REFUSED_AUTH CA_REFUSAL_NREASONS
struct weftd_metrics {
    uint64_t reconciles; /* errors are counted per watch (struct weftd_watch) */
    struct weftd_hist reconcile_seconds;
    uint64_t compiles, compiles_changed;
    struct weftd_hist compile_seconds;      /* one proxy document */
    struct weftd_hist compile_pass_seconds; /* one pass over the dirty proxies */
    uint64_t status[WEFTD_STATUS_NRESULTS];
    uint64_t certs_issued;
    uint64_t certs_refused[WEFTD_REFUSED_AUTH + 1]; /* by enum ca_refusal; then tokens refused */
    double issue_seconds_sum;
    uint64_t webhook_reviews, webhook_errors;
    uint64_t webhook_outcomes[WEBHOOK_OUTCOME_NOUTCOMES]; /* by enum webhook_outcome */
    uint64_t webhook_inflight;                            /* reviews queued or running (gauge) */
    uint64_t webhook_shed_full;    /* refused at once: max in flight reached */
    uint64_t webhook_shed_expired; /* dropped: waited past the API server's timeout */
    uint64_t webhook_shed_log_ns;  /* last shed warning, for rate limiting */
    struct weftd_hist webhook_seconds;
    /* config stream hellos refused by weftd's checks (stream.c), by code */
    uint64_t stream_unknown_pod, stream_identity_mismatch;
    struct weftd_hist stream_convergence_seconds; /* document changed -> the proxy's ACK */
    /* /debug/ requests (debug_auth.c), by outcome */
    uint64_t debug_allowed, debug_unauthenticated, debug_forbidden, debug_unavailable;
};

struct weftd;
/* Each file's private state, defined in that file only. */
struct weftd_sync;         /* sync.c */
struct weftd_ca_roots;     /* ca_roots.c */
struct weftd_certs;        /* cert_endpoint.c */
struct weftd_webhook;      /* webhook_server.c */
struct weftd_serving_cert; /* serving_cert.c */
struct weftd_stream;       /* stream.c */
struct weftd_programmed;   /* programmed.c */

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
    struct weftd_sync *sync;

    struct ca *ca;               /* NULL until the root is loaded (ca_roots.c) */
    struct hold *ca_hold;        /* keeps ca for the worker jobs issuing with it (core/hold.h) */
    char *bundle_pem;            /* trust bundle PEM, NULL until loaded */
    struct inject_config inject; /* POST /inject: the namespace is selected */
    struct inject_config inject_opt_in; /* POST /inject/opt-in: only pods that ask */

    struct weftd_ca_roots *ca_roots;
    struct weftd_certs *certs_srv;
    struct weftd_webhook *webhook_srv;
    struct weftd_stream *stream;
    struct weftd_programmed *programmed;

    struct http_server *admin, *webhook, *certs;
    int debug_reviews; /* /debug/ requests being authorized (debug_auth.c) */
    struct {
        struct http_server *s; /* NULL: a free slot */
        struct http_uv *uv;
    } attached[4];
    struct weftd_metrics m;
    uv_signal_t sigterm, sigint;
    bool stopping;
};

/* --- the command line (options.c) --- */
/* Fill d (which is overwritten) with the defaults, then the options of argv. Returns 0; 1 after
 * printing --help to stdout; 2 after printing a usage error to stderr. */
int weftd_opts_parse(int argc, char **argv, struct weftd *d) WUR;

/* --- lib/http servers on the libuv loop (httpuv.c) --- */
/* weftd's listeners; each has its own bounds on clients (weftd_listener_bounds). */
enum weftd_listener {
    WEFTD_LISTENER_ADMIN,   /* metrics, health, debug */
    WEFTD_LISTENER_WEBHOOK, /* AdmissionReviews from the API server */
    WEFTD_LISTENER_CERTS,   /* CSRs from every agent */
    WEFTD_LISTENER_STREAM,  /* the config stream to every agent (push/, stream.c) */
    WEFTD_NLISTENERS
};
extern const char *const weftd_listener_names[WEFTD_NLISTENERS];
/*
 * The bounds of listener l, sized for 10,000 agents (docs/operations.md), with the overrides in
 * o: the request body limit and struct http_limits.
 */
void weftd_listener_bounds(const struct weftd_opts *o, enum weftd_listener l, size_t *max_body,
                           struct http_limits *lim);
/*
 * Listen on addr for listener l (ssl_ctx NULL: plain HTTP) with its bounds, and drive the
 * server from d's loop: *out is then owned by the caller (weftd_http_detach, then
 * http_server_free). Logs what failed.
 */
int weftd_http_listen(struct weftd *d, enum weftd_listener l, const char *addr, SSL_CTX *ssl_ctx,
                      http_handler_fn handler, void *arg, struct http_server **out) WUR;
struct buf;
/* Append each listener's counters and gauges to b in Prometheus text format. */
int weftd_http_metrics(const struct weftd *d, struct buf *b) WUR;
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
/* Nothing queued to reconcile and no compile pass pending: d->docs reflect the model. */
bool weftd_sync_idle(const struct weftd *d);
void weftd_sync_leading(struct weftd *d); /* became leader: write pending status */
/* Counters of the Events emitted for condition changes (zeros before the start). */
void weftd_sync_event_stats(const struct weftd *d, struct kube_recorder_stats *out);

/* Evaluate every custom resource's status now (leader): written where it changed. */
void weftd_sync_status_all(struct weftd *d);

/* --- CA: the signer and the trust bundle (ca_roots.c) --- */
int weftd_ca_start(struct weftd *d) WUR;
void weftd_ca_stop(struct weftd *d);
void weftd_ca_leading(struct weftd *d);
/* A namespace was seen (or changed): publish the trust bundle there if it is meshed. */
void weftd_ca_namespace(struct weftd *d, const json_t *ns);

/*
 * Worker jobs that issue with d->ca follow core/hold.h: ca_free() must not run while a worker
 * issues (ca.h), so a job takes hold_get(d->ca_hold) on the loop thread before it is queued
 * (only while d->ca is set), issues with the CA it copied, and hold_put()s in its after-work
 * callback. weftd_ca_stop drops d->ca_hold: the CA is freed at once, or by the last job.
 */

/* --- POST /v1/certificates (cert_endpoint.c) --- */
int weftd_certs_start(struct weftd *d) WUR;
void weftd_certs_stop(struct weftd *d);
/* The CA became ready or its signer changed: re-issue the endpoint's serving certificate. */
void weftd_certs_ca_ready(struct weftd *d);

/* --- the config stream (stream.c): push/'s server on --stream-listen --- */
/* Start the listener's state; the listener itself opens once the CA is ready and the serving
 * certificate arrived (weftd_stream_identity). 0 or a negative code. */
int weftd_stream_start(struct weftd *d) WUR;
void weftd_stream_stop(struct weftd *d);
/* A serving certificate for weftd's names was issued (borrowed PEMs): listen, or rotate. */
void weftd_stream_identity(struct weftd *d, const char *chain_pem, const char *key_pem);
/* The trust bundle (d->bundle_pem) changed: client certificates verify against the new one. */
void weftd_stream_bundle(struct weftd *d);
/* A proxy's document was compiled (changed or not) / its pod is gone or no longer meshed. */
void weftd_stream_doc(struct weftd *d, const char *key, const json_t *doc);
void weftd_stream_forget(struct weftd *d, const char *key);
/* A Pod changed (pod: the informer's object, NULL when gone): a classic-mode pod whose app
 * containers have exited for good is told so on its stream (`appsExited`). */
void weftd_stream_pod(struct weftd *d, const char *key, const json_t *pod);
/* GET /debug/proxies[/<ns>/<pod>] (admin.c, once authorized). */
void weftd_stream_debug(struct weftd *d, struct http_conn *c, const struct http_request *req);
/* Append the stream's series to b (Prometheus text). 0 or -ENOMEM. */
int weftd_stream_metrics(struct weftd *d, struct buf *b) WUR;

/* The stream's server once it listens and the model is loaded, else NULL. */
struct push_server *weftd_stream_server(struct weftd *d);

/* --- Programmed from the proxies' acknowledgements (programmed.c) --- */
int weftd_programmed_start(struct weftd *d) WUR;
void weftd_programmed_stop(struct weftd *d);
/* A compile pass begins (sync.c). */
void weftd_programmed_pass(struct weftd *d);
/* Proxy key's current document has this canonical hash (NULL: its compile failed, no document
 * is current) / its pod is gone. */
void weftd_programmed_doc(struct weftd *d, const char *key, const char *hash);
void weftd_programmed_forget(struct weftd *d, const char *key);
/* A custom resource of watch was reconciled (obj NULL: deleted): note a new generation. */
void weftd_programmed_resource(struct weftd *d, size_t watch, const char *key, const json_t *obj);
/* A stream's acknowledgement state moved (hello, ack, nack, close): publish and evaluate soon. */
void weftd_programmed_changed(struct weftd *d);
/* The leader can judge: the stream listens and the peers' publications are listed. */
bool weftd_programmed_ready(const struct weftd *d);
/*
 * Replace the Programmed condition in conds (mesh_model_status's, for kind/ns/name of watch)
 * when the model says True (Compiled) by the proxies' acknowledgements: True Programmed, False
 * Pending or False Rejected. prev: the stored conditions. 0 or -ENOMEM.
 */
int weftd_programmed_overlay(struct weftd *d, size_t watch, const char *kind, const char *ns,
                             const char *name, const json_t *prev, const char *now,
                             json_t *conds) WUR;
/* Delete publications of replicas gone long ago (leader). */
void weftd_programmed_gc(struct weftd *d);
int weftd_programmed_metrics(struct weftd *d, struct buf *b) WUR;

/* --- injection webhook server and its configuration (webhook_server.c) --- */
int weftd_webhook_start(struct weftd *d) WUR;
void weftd_webhook_stop(struct weftd *d);
void weftd_webhook_leading(struct weftd *d);
/* The CA became ready (or rotated): (re)issue the serving cert, refresh the caBundle. */
void weftd_webhook_ca_ready(struct weftd *d);

/* --- admin endpoint (admin.c) and who may use its /debug/ (debug_auth.c) --- */
typedef void weftd_debug_fn(struct weftd *d, struct http_conn *c, const struct http_request *req);
/*
 * Answer a /debug/ request with serve(d, c, req) once its bearer token is authenticated
 * (TokenReview) and authorized for get on the non-resource URL /debug/<endpoint>
 * (SubjectAccessReview); else 401, 403, 429 or 503. serve may run later, from the loop, with a
 * copy of req.
 */
void weftd_debug_authorize(struct weftd *d, struct http_conn *c, const struct http_request *req,
                           weftd_debug_fn *serve);
int weftd_admin_start(struct weftd *d) WUR;
void weftd_admin_stop(struct weftd *d);

/* --- bearer tokens (token_review.c), for cert_endpoint.c and debug_auth.c --- */
/* The token of req's "Authorization: Bearer <token>" (borrowed from req), or NULL when there
 * is no such header. */
const char *weftd_bearer_token(const struct http_request *req);
/* RFC 6750 b64token of at most 16 KiB: what a bearer token may look like. */
bool weftd_token_plausible(const char *t);
/* POST a TokenReview of token (for audience, or NULL: the API server's own); done(arg, ...)
 * gets the answer on the loop, *call is the call in flight (kube_call_cancel). The token's copy
 * in the request is wiped. 0 or a negative code (then nothing was sent and done never runs). */
int weftd_token_review(struct weftd *d, const char *token, const char *audience,
                       kube_response_fn *done, void *arg, struct kube_call **call) WUR;

/* --- serving certificates (serving_cert.c), for cert_endpoint.c and webhook_server.c --- */
/*
 * A TLS server context (Weft's TLS policy) whose certificate is issued from d->ca for the given
 * names (copied) and re-issued at half-life and on weftd_serving_cert_refresh (CA ready or
 * signer changed). Until the first certificate arrives the context has none, so handshakes
 * fail. Issuance (key generation) runs on a libuv worker; on_issued(arg, chain, key) runs on
 * the loop after each new certificate is installed (the PEMs are borrowed for the call; the key
 * is wiped after it). The context is valid until weftd_serving_cert_free;
 * free the http_server that borrows it first.
 */
typedef void weftd_serving_cert_fn(void *arg, const char *chain_pem, const char *key_pem);
int weftd_serving_cert_new(struct weftd *d, const char *const *dns, size_t ndns,
                           const char *const *ips, size_t nips, weftd_serving_cert_fn *on_issued,
                           void *arg, struct weftd_serving_cert **out) WUR;
SSL_CTX *weftd_serving_cert_ctx(const struct weftd_serving_cert *t);
bool weftd_serving_cert_ready(const struct weftd_serving_cert *t);
void weftd_serving_cert_refresh(struct weftd_serving_cert *t);
void weftd_serving_cert_free(struct weftd_serving_cert *t);

#endif
