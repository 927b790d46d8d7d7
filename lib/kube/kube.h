/*
 * kube.h - Weft's Kubernetes client: configuration, asynchronous requests, informers (reflector
 * + cache), a rate-limited work queue and Lease-based leader election.
 *
 * Threading and the loop: everything here runs on one libuv loop, created by the caller and
 * passed in; no function blocks on the network and every callback is invoked from that loop
 * (never from inside the call that registered it). None of it is thread-safe. libcurl's
 * multi-socket API is driven by uv_poll_t/uv_timer_t handles on the loop.
 *
 * Handles are freed with their _free function, which never invokes callbacks. Handles that own
 * libuv handles (client, work queue on a loop) release their memory from uv close callbacks, so
 * after freeing them let the loop run (uv_run(loop, UV_RUN_DEFAULT) returns once nothing is left)
 * before closing the loop.
 *
 * JSON values are jansson values. "Borrowed" means valid for the duration of the callback (or
 * until the next loop iteration for cache objects) and read-only; take a reference with
 * json_incref to keep one, json_deep_copy to mutate one.
 *
 * Errors: 0 or a negative code from core/err.h. Transport failures arrive as negative errno
 * values (-ECONNREFUSED, -ETIMEDOUT, -EIO, ...); API failures come as an HTTP status plus the
 * server's Status object and can be folded into one code with kube_result_err().
 */
#ifndef WEFT_KUBE_H
#define WEFT_KUBE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "core/diag.h"
#include "core/err.h"

/* ---- clock ------------------------------------------------------------------------------ */

/*
 * A monotonic millisecond clock, swappable so tests can drive time. now_ms must never go
 * backwards. kube_clock_monotonic is CLOCK_MONOTONIC.
 */
struct kube_clock_ops {
    uint64_t (*now_ms)(void *ctx);
};

struct kube_clock {
    const struct kube_clock_ops *ops;
    void *ctx;
};

extern const struct kube_clock kube_clock_monotonic;

/* ---- configuration ---------------------------------------------------------------------- */

struct kube_config;

/*
 * Load a kubeconfig. path NULL means: $KUBECONFIG (its first entry) if set; else the in-cluster
 * configuration if KUBERNETES_SERVICE_HOST is set; else ~/.kube/config. The current-context
 * selects cluster (server, certificate-authority[-data], insecure-skip-tls-verify), user (token,
 * tokenFile, client-certificate[-data], client-key[-data]) and namespace ("default" when
 * unset). Relative file names are resolved against the kubeconfig's directory. exec and
 * auth-provider users are refused (ERR_UNSUPPORTED).
 * Returns 0 and *out (free with kube_config_free), ERR_INVALID/ERR_PARSE/ERR_UNSUPPORTED or a
 * negative errno for an unreadable file, with the file and field named in diag (optional).
 */
int kube_config_load(const char *path, struct kube_config **out, struct diag *diag) WUR;

/*
 * In-cluster configuration: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, CA
 * <dir>/ca.crt, bearer token from <dir>/token (re-read by the client whenever the file
 * changes, since projected tokens rotate), namespace from <dir>/namespace. sa_dir NULL means
 * /var/run/secrets/kubernetes.io/serviceaccount. Returns as kube_config_load.
 */
int kube_config_in_cluster(const char *sa_dir, struct kube_config **out, struct diag *diag) WUR;

void kube_config_free(struct kube_config *cfg);
/* The API server URL (no trailing slash) and the default namespace; never NULL. */
const char *kube_config_server(const struct kube_config *cfg);
const char *kube_config_namespace(const struct kube_config *cfg);

/* ---- client and requests ---------------------------------------------------------------- */

struct kube_client;
struct kube_call;

/*
 * Create a client on loop. cfg is copied (it may be freed afterwards). Returns 0, -ENOMEM or
 * -EIO (libcurl could not be set up).
 */
int kube_client_new(uv_loop_t *loop, const struct kube_config *cfg, struct kube_client **out) WUR;

/*
 * Complete every outstanding call with err -ECANCELED (callbacks may not start new requests:
 * they fail with -EINVAL) and release the client. Memory is returned once the loop has run the
 * handle close callbacks. Accepts NULL. Free informers and leader electors first.
 */
void kube_client_free(struct kube_client *c);

uv_loop_t *kube_client_loop(const struct kube_client *c);

/*
 * Completion of a request. err is 0 when an HTTP response arrived (whatever its status) and a
 * negative code when none did (transport failure, -ETIMEDOUT, ...); then status is 0. body is
 * the parsed JSON response (a Status object for API errors), or NULL when there was none or it
 * was not JSON; borrowed for the call.
 */
typedef void kube_response_fn(void *arg, int err, long status, json_t *body);

/*
 * Send method (GET, POST, PUT, PATCH, DELETE) to path (absolute, with its query, already
 * escaped; see kube_path). body NULL sends none; otherwise it is serialized now (borrowed).
 * content_type NULL means application/json. The callback runs exactly once, from the loop,
 * unless the call is cancelled or the client freed first. *call (optional) is valid until the
 * callback starts. Returns 0, -EINVAL or -ENOMEM (then cb is never called).
 */
int kube_request(struct kube_client *c, const char *method, const char *path, const json_t *body,
                 const char *content_type, kube_response_fn *cb, void *arg,
                 struct kube_call **call) WUR;

/* Abort a call; its callback is not invoked. Must not be called from its own callback. */
void kube_call_cancel(struct kube_call *call);

/*
 * Fold a response into one code: err if non-zero; 0 for 2xx; otherwise ERR_NOTFOUND (404),
 * ERR_EXISTS (409 AlreadyExists), ERR_CONFLICT (409 otherwise), ERR_GONE (410),
 * ERR_INVALID (400, 422), -EACCES (401, 403), -ETIMEDOUT (504), ERR_UNSUPPORTED (415), -EIO.
 */
int kube_result_err(int err, long status, const json_t *body);

/* The Status message of an error body, or "" (never NULL). */
const char *kube_status_message(const json_t *body);

/* ---- resources and typed helpers -------------------------------------------------------- */

/* A resource type: group "" for the core group (/api/v1), plural lower-case. */
struct kube_resource {
    const char *group;
    const char *version;
    const char *plural;
    bool namespaced;
};

/*
 * Write the path of a collection (name NULL), an object or an object's subresource (sub, e.g.
 * "status") into out: /api/v1/namespaces/ns/configmaps/x/status, /apis/g/v/plural/x. ns is
 * ignored for cluster-scoped resources and may be NULL (all namespaces) for collections.
 * Segments are percent-escaped. Returns 0, -EINVAL (namespaced object without ns, missing
 * name part) or -ENAMETOOLONG.
 */
int kube_path(const struct kube_resource *res, const char *ns, const char *name, const char *sub,
              char *out, size_t outlen) WUR;

/*
 * Typed helpers; each is kube_request on kube_path(res, ns, name, NULL). They return 0 or the
 * error of kube_path/kube_request; the outcome arrives in cb.
 *   list: query is appended after '?' (already escaped, may be NULL).
 *   create: POST obj to the collection. update: PUT obj (carry metadata.resourceVersion for
 *   optimistic concurrency). delete: DELETE with propagationPolicy Background.
 *   patch: merge (application/merge-patch+json) or JSON patch (application/json-patch+json).
 *   apply: server-side apply of obj (application/apply-patch+yaml, JSON body) with
 *   fieldManager and force.
 */
enum kube_patch_type { KUBE_PATCH_MERGE, KUBE_PATCH_JSON };

int kube_get(struct kube_client *c, const struct kube_resource *res, const char *ns,
             const char *name, kube_response_fn *cb, void *arg) WUR;
int kube_list(struct kube_client *c, const struct kube_resource *res, const char *ns,
              const char *query, kube_response_fn *cb, void *arg) WUR;
int kube_create(struct kube_client *c, const struct kube_resource *res, const char *ns,
                const json_t *obj, kube_response_fn *cb, void *arg) WUR;
int kube_update(struct kube_client *c, const struct kube_resource *res, const char *ns,
                const char *name, const json_t *obj, kube_response_fn *cb, void *arg) WUR;
int kube_patch(struct kube_client *c, const struct kube_resource *res, const char *ns,
               const char *name, enum kube_patch_type type, const json_t *patch,
               kube_response_fn *cb, void *arg) WUR;
int kube_apply(struct kube_client *c, const struct kube_resource *res, const char *ns,
               const char *name, const json_t *obj, const char *field_manager, bool force,
               kube_response_fn *cb, void *arg) WUR;
int kube_delete(struct kube_client *c, const struct kube_resource *res, const char *ns,
                const char *name, kube_response_fn *cb, void *arg) WUR;

/*
 * Mutate a fresh copy of an object (owned by the caller of the function, i.e. this library; the
 * mutator edits it in place). Return 0 to write it, 1 when nothing needs writing (the update
 * finishes with status 200 and the object as read), or a negative code to abort with it.
 */
typedef int kube_mutate_fn(void *arg, json_t *obj);

/*
 * Read-modify-write with conflict retry: GET the object, apply mutate, PUT it (to the "status"
 * subresource when sub is "status", or any sub given), and on 409 Conflict start over, at most
 * 5 attempts. cb gets the last response (err = mutate's negative code when it aborted, with
 * status 0). mutate and arg must stay valid until cb runs.
 */
int kube_update_retry(struct kube_client *c, const struct kube_resource *res, const char *ns,
                      const char *name, const char *sub, kube_mutate_fn *mutate, void *mutate_arg,
                      kube_response_fn *cb, void *arg) WUR;

/* ---- informers -------------------------------------------------------------------------- */

enum kube_event_type { KUBE_EVENT_ADDED, KUBE_EVENT_MODIFIED, KUBE_EVENT_DELETED };

/* "ADDED", "MODIFIED", "DELETED". */
const char *kube_event_type_str(enum kube_event_type t);

/*
 * Informer callbacks, invoked from the loop. on_event gets the cache key ("namespace/name", or
 * "name" for cluster-scoped objects) and the object (borrowed: for DELETED the last state
 * known). Handlers should only enqueue keys; they may call any function here except
 * kube_informer_free on their own informer. on_synced (optional) runs once, after the events
 * of the first complete LIST have been delivered.
 */
struct kube_informer_handlers {
    void (*on_event)(void *arg, enum kube_event_type type, const char *key, const json_t *obj);
    void (*on_synced)(void *arg);
    void *arg;
};

/* Tuning; zero fields take the defaults given. */
struct kube_informer_opts {
    unsigned page_limit;         /* LIST page size (500) */
    unsigned watch_timeout_s;    /* watch timeoutSeconds, randomised in [t, 2t) (300) */
    unsigned backoff_initial_ms; /* first reconnect delay (800), doubling, jittered */
    unsigned backoff_max_ms;     /* reconnect delay cap (30000) */
    const char *field_selector;  /* optional */
};

struct kube_informer;

/*
 * Start a reflector for res in namespace ns (NULL: all namespaces, or cluster-scoped), with an
 * optional label selector: LIST (paginated) then WATCH from the list's resourceVersion with
 * bookmarks; re-WATCH from the last resourceVersion when a stream ends; relist on 410 Gone or
 * an expired continue token (the relist's difference to the cache is delivered as
 * ADDED/MODIFIED/DELETED); reconnect with jittered exponential backoff. handlers and opts are
 * copied. The first request goes out when the loop runs. Returns 0, -EINVAL, -ENOMEM.
 */
int kube_informer_new(struct kube_client *c, const struct kube_resource *res, const char *ns,
                      const char *label_selector, const struct kube_informer_handlers *handlers,
                      const struct kube_informer_opts *opts, struct kube_informer **out) WUR;

/* Stop and free (no callbacks). Accepts NULL. Not from the informer's own handler. */
void kube_informer_free(struct kube_informer *inf);

/* True once the first LIST has been delivered. False for NULL (an informer not started). */
bool kube_informer_synced(const struct kube_informer *inf);

/* The cached object for key, or NULL (also for a NULL informer). Borrowed, read-only. */
const json_t *kube_informer_get(const struct kube_informer *inf, const char *key);

/* The whole cache: a JSON object key -> object (NULL for a NULL informer). Borrowed. */
const json_t *kube_informer_cache(const struct kube_informer *inf);

/* The last resourceVersion seen (list, event or bookmark); "" before the first list. */
const char *kube_informer_resource_version(const struct kube_informer *inf);

/*
 * Stop listing/watching (the cache stays as it is) until kube_informer_resume, which watches
 * again from the last resourceVersion (relisting if the server has compacted it away).
 */
void kube_informer_pause(struct kube_informer *inf);
void kube_informer_resume(struct kube_informer *inf);

/* Counters for metrics and tests. */
struct kube_informer_stats {
    unsigned lists;      /* LIST requests sent (pages count one each) */
    unsigned full_lists; /* complete lists delivered (initial + relists) */
    unsigned watches;    /* WATCH requests sent */
    unsigned gone;       /* 410s seen (watch or continue) */
    unsigned errors;     /* transport or unexpected-status failures */
    unsigned events;     /* watch events applied (not bookmarks) */
    unsigned bookmarks;
};
void kube_informer_stats(const struct kube_informer *inf, struct kube_informer_stats *out);

/* ---- work queue ------------------------------------------------------------------------- */

/*
 * A de-duplicating queue of string keys (client-go's rate-limited workqueue). A key is queued
 * at most once; a key re-added while being processed is queued once more when wq_done is
 * called for it. wq_add_rate_limited delays a key by the larger of its own exponential backoff
 * (base_ms * 2^failures, capped at max_ms) and a global token bucket (qps, burst); wq_forget
 * resets the key's failure count. Time comes from the clock given.
 */
struct wq;

struct wq_opts {
    struct kube_clock clock; /* ops NULL: kube_clock_monotonic */
    uint64_t base_ms;        /* 5 */
    uint64_t max_ms;         /* 1000000 (1000 s) */
    double qps;              /* 10 */
    unsigned burst;          /* 100 */
};

/* opts NULL takes every default. Returns 0 or -ENOMEM. */
int wq_new(const struct wq_opts *opts, struct wq **out) WUR;

/*
 * Free the queue and its keys. If wq_run was used, the memory is released once the loop has run
 * the close callbacks. Accepts NULL. Not from inside the reconcile callback.
 */
void wq_free(struct wq *q);

/* Queue key now (copied). Returns 0 or -ENOMEM. */
int wq_add(struct wq *q, const char *key) WUR;
/* Queue key after delay_ms (the earliest pending time wins). Returns 0 or -ENOMEM. */
int wq_add_after(struct wq *q, const char *key, uint64_t delay_ms) WUR;
/* Queue key after its rate-limited delay, counting one more failure. Returns 0 or -ENOMEM. */
int wq_add_rate_limited(struct wq *q, const char *key) WUR;
/* Reset key's failure count. */
void wq_forget(struct wq *q, const char *key);
/* Failures counted for key since it was last forgotten. */
unsigned wq_requeues(const struct wq *q, const char *key);
/* Keys ready now (not counting delayed ones or the one in progress). */
size_t wq_len(struct wq *q);

/*
 * Take the next ready key (moving delayed keys whose time has come first) into *key (borrowed
 * until wq_done). Returns 0, or -EAGAIN when nothing is ready; *next_ms (optional) then gets the
 * milliseconds until the next delayed key is due, or UINT64_MAX when there is none.
 */
int wq_get(struct wq *q, const char **key, uint64_t *next_ms) WUR;
/* Finish processing key (as returned by wq_get); requeues it if it was re-added meanwhile. */
void wq_done(struct wq *q, const char *key);

enum wq_outcome {
    WQ_DONE,          /* success: forget the key's backoff */
    WQ_ERROR,         /* retry with the key's backoff under the token bucket */
    WQ_REQUEUE_AFTER, /* success, look again after after_ms */
    WQ_TERMINAL,      /* permanent failure (reported elsewhere, e.g. a condition): no retry */
};

struct wq_result {
    enum wq_outcome outcome;
    uint64_t after_ms;
};

/* Reconcile one key; runs on the loop, one key at a time. key is borrowed. */
typedef struct wq_result wq_reconcile_fn(void *arg, const char *key);

/*
 * Process keys from loop: one key per loop iteration (uv_idle) while keys are ready, and a timer
 * for the next delayed key. The outcome is applied as described by enum wq_outcome. Call once.
 * Returns 0, -EINVAL (already running) or a negative libuv error.
 */
int wq_run(struct wq *q, uv_loop_t *loop, wq_reconcile_fn *reconcile, void *arg) WUR;

/* ---- leader election -------------------------------------------------------------------- */

struct kube_leader_opts {
    const char *ns;             /* Lease namespace */
    const char *name;           /* Lease name */
    const char *identity;       /* this candidate, e.g. the pod name */
    unsigned lease_duration_ms; /* 15000; written as leaseDurationSeconds (rounded up) */
    unsigned renew_deadline_ms; /* 10000; stop leading when no renewal succeeded this long */
    unsigned retry_period_ms;   /* 2000; period of acquire and renew attempts */
    bool release_on_stop;       /* kube_leader_free while leading gives the Lease up */
    void (*started_leading)(void *arg);
    void (*stopped_leading)(void *arg);
    void *arg;
};

struct kube_leader;

/*
 * Campaign for the coordination.k8s.io/v1 Lease ns/name: GET, create it when absent, take it
 * over when it is free or its holder has not renewed it for leaseDurationSeconds (measured on
 * this candidate's clock from when the record was first seen to change), renew it by PUT with
 * its resourceVersion every retry period while leading. A candidate also watches the Lease (LIST
 * and WATCH with fieldSelector metadata.name=name, so it needs those verbs), sees each renewal
 * as it happens, and tries again at the moment the observed lease runs out (or after a retry
 * period, whichever is first): a dead leader is replaced leaseDurationSeconds plus one GET and
 * one PUT after its last renewal. Without the watch (forbidden, failing) it falls back to
 * polling every retry period. started_leading/stopped_leading are called from the loop on each
 * transition. Strings in opts are copied. Returns 0, -EINVAL, -ENOMEM.
 */
int kube_leader_new(struct kube_client *c, const struct kube_leader_opts *opts,
                    struct kube_leader **out) WUR;

bool kube_leader_is_leader(const struct kube_leader *le);

/*
 * Stop campaigning. If leading, stopped_leading is NOT called; with release_on_stop the Lease
 * is released (holderIdentity cleared) by a request that completes on the loop: run the loop
 * before freeing the client. Accepts NULL.
 */
void kube_leader_free(struct kube_leader *le);

/* ---- events ---------------------------------------------------------------------------- */

/* The object an Event is about (a core v1 ObjectReference). Strings are borrowed. */
struct kube_object_ref {
    const char *api_version;      /* "mesh.weft.dev/v1alpha1"; optional */
    const char *kind;             /* required */
    const char *ns;               /* NULL or "" for cluster-scoped objects */
    const char *name;             /* required */
    const char *uid;              /* optional (kubectl describe matches on it when set) */
    const char *resource_version; /* optional */
};

/*
 * Fill *out from obj's metadata (name, namespace, uid, resourceVersion; borrowed from obj);
 * api_version and kind NULL take obj's own. Returns 0 or ERR_INVALID (no kind or name).
 */
int kube_object_ref_of(const json_t *obj, const char *api_version, const char *kind,
                       struct kube_object_ref *out) WUR;

enum kube_event_level { KUBE_EVENT_NORMAL, KUBE_EVENT_WARNING };

struct kube_recorder_opts {
    const char *component; /* source.component and reportingComponent ("weftd"); required */
    const char *instance;  /* reportingInstance (the pod name); optional */
    unsigned cache_size;   /* distinct events remembered for aggregation (256) */
    unsigned window_ms;    /* a repeat within this of the previous one is aggregated (600000) */
};

struct kube_recorder_stats {
    unsigned created; /* Events POSTed */
    unsigned patched; /* repeats written as a count/lastTimestamp PATCH */
    unsigned failed;  /* writes that failed (the occurrence is lost; the next one retries) */
    unsigned dropped; /* occurrences not recorded: every remembered event was being written */
};

struct kube_recorder;

/*
 * An event recorder (client-go's EventRecorder with its correlator): kube_recorder_emit writes a
 * core v1 Event in the object's namespace ("default" for cluster-scoped objects) with
 * involvedObject, type Normal or Warning, reason, message, source.component, reportingComponent,
 * reportingInstance, firstTimestamp, lastTimestamp and count. The same event (same source,
 * object uid, type, reason and message) emitted again within window_ms of its previous
 * occurrence is not a new Event: the existing one's count and lastTimestamp are PATCHed (repeats
 * that arrive while a write is in flight are folded into one PATCH). If that Event has gone from
 * the server (404) it is created again with the count so far. At most cache_size events are
 * remembered; the least recently seen is forgotten first. Writes are asynchronous and
 * best-effort (failures are counted and logged, not retried). Needs create and patch on events.
 * Returns 0, -EINVAL, -ENOMEM.
 */
int kube_recorder_new(struct kube_client *c, const struct kube_recorder_opts *opts,
                      struct kube_recorder **out) WUR;

/* Cancel the recorder's requests and free it (before the client). Accepts NULL. */
void kube_recorder_free(struct kube_recorder *r);

/*
 * Record one occurrence (ref, reason and message are copied). Returns 0 once the write is under
 * way, -EINVAL (no kind, name or reason; message NULL), -EBUSY (every remembered event has a
 * write in flight: this occurrence is dropped), -ENOMEM, or the error of the request.
 */
int kube_recorder_emit(struct kube_recorder *r, const struct kube_object_ref *ref,
                       enum kube_event_level level, const char *reason, const char *message) WUR;

void kube_recorder_stats(const struct kube_recorder *r, struct kube_recorder_stats *out);

/* Format a Kubernetes MicroTime: 2024-05-01T12:00:00.123456Z. out needs 28 bytes. */
void kube_microtime_format(const struct timespec *ts, char *out, size_t outlen);

#endif
