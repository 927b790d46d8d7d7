/*
 * kubelite_int.h - kubelite internals shared between its files (never included elsewhere).
 *
 * One struct kl holds the whole server: the resource registry (built-in kinds and every CRD
 * version), the store (objects per group/resource, one global resourceVersion counter, a
 * bounded event history), the watchers, and the OpenAPI documents. Everything runs on the
 * HTTP loop thread. Stored objects are immutable once committed: a write builds a new json_t
 * and swaps it in, so the event history and watchers can keep references to old versions.
 */
#ifndef KUBELITE_INT_H
#define KUBELITE_INT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/buf.h"
#include "core/err.h"
#include "http/http.h"

struct openapi;
struct selector;

/* Storage for one group/resource, shared by all versions of it. */
struct rstore {
    char *id;     /* "apps/deployments", "/pods" */
    json_t *objs; /* "ns/name" -> object */
    uint64_t rv;  /* highest rv committed to this store */
    int refs;     /* rtypes pointing at it */
};

enum verb_bits {
    V_GET = 1 << 0,
    V_LIST = 1 << 1,
    V_WATCH = 1 << 2,
    V_CREATE = 1 << 3,
    V_UPDATE = 1 << 4,
    V_PATCH = 1 << 5,
    V_DELETE = 1 << 6,
    V_DELETECOLLECTION = 1 << 7,
    V_ALL = 0xff,
    V_CREATE_ONLY = V_CREATE,
};

struct rtype {
    char *group, *version, *kind, *plural, *singular, *list_kind;
    json_t *short_names; /* array of strings */
    json_t *categories;  /* array of strings */
    bool namespaced;
    bool has_status;
    bool has_scale;
    bool generation;   /* metadata.generation tracks spec changes */
    bool virtual_only; /* tokenreviews and the like: create answers, nothing stored */
    unsigned verbs;
    int name_kind;           /* enum validate_name_kind */
    bool crd;                /* defined by a CustomResourceDefinition */
    bool preferred;          /* preferred version of its group */
    json_t *schema;          /* CRD version's openAPIV3Schema (owned), NULL for built-ins */
    json_t *printer_columns; /* CRD additionalPrinterColumns (owned) */
    struct rstore *store;
};

struct event {
    uint64_t rv;
    int type; /* EV_ADDED, EV_MODIFIED, EV_DELETED */
    struct rstore *store;
    json_t *obj; /* new state (for DELETED: the final state) */
    json_t *old; /* previous state, NULL for ADDED */
};

enum { EV_ADDED, EV_MODIFIED, EV_DELETED };

struct watcher {
    struct kl *kl;
    struct http_conn *conn;
    struct rstore *store;
    const struct rtype *rt; /* version the client asked for (apiVersion of sent objects) */
    char *ns;               /* NULL = all namespaces */
    struct selector *labels, *fields;
    bool bookmarks;
    uint64_t sent_rv; /* highest rv delivered or passed over */
    double deadline;  /* monotonic seconds; 0 = none */
    double next_bookmark;
    bool table; /* send Table rows (kubectl get -w) */
    char *include_object;
    struct watcher *prev, *next;
};

/*
 * Fault injection for tests (--fault-* flags, PUT /kubelite/faults). Every decision draws from
 * one generator seeded by --fault-seed, so a run is reproducible given the seed and the same
 * sequence of requests; a fault whose probability is 0 draws nothing. Probabilities in [0, 1].
 */
struct kl_faults {
    uint64_t seed, rng;
    double drop_watch; /* per watch event about to be sent: end the stream instead */
    double expire;     /* per WATCH resuming from a resourceVersion: ERROR 410 Expired */
    double error;      /* per resource request: 500 InternalError or 429 TooManyRequests */
    uint64_t drops, expires, errors; /* injected so far */
};

/* port-forward sessions run on threads of their own: what they share with the loop */
struct kl_pf {
    atomic_uint sessions; /* running */
    atomic_bool stop;     /* kubelite is stopping: sessions end */
    double idle_timeout;  /* seconds without traffic before a session ends (0: 4 h) */
};

struct kl {
    struct http_server *http;
    struct openapi *oa;
    struct rtype **types;
    size_t ntypes, types_cap;
    struct rstore **store_list;
    size_t nstores, stores_cap;
    uint64_t rv;                          /* global resourceVersion counter */
    struct event *hist;                   /* ring buffer */
    size_t hist_cap, hist_len, hist_head; /* head = index of oldest */
    uint64_t compacted_rv;                /* events with rv <= this are no longer in the history */
    struct watcher *watchers;
    size_t nwatchers;
    char *admin_token;
    struct evp_pkey_st *sa_key; /* signs ServiceAccount tokens */
    char *data_dir;
    FILE *wal;
    double bookmark_interval;
    uint64_t controllers_seen[8]; /* each controller's inputs when it last ran */
    uint64_t writes_done;         /* staged writes finished (committed or refused) */
    bool gc_pending;              /* a deletion or an ownership change since the last GC */
    json_t *cur_user;             /* user of the request being handled (borrowed) */
    void *curlm;                  /* libcurl multi handle for webhook calls */
    struct kl_write *inflight;    /* writes waiting for admission webhooks */
    unsigned long long uid_counter;
    struct kl_faults faults;
    /* --advertise-address: this kubelite serves a cluster with nodes. It publishes the
     * `kubernetes` Service in default (ClusterIP KL_KUBERNETES_IP, endpoint advertise:port), the
     * kube-root-ca.crt ConfigMap (ca_pem) in every namespace, and adds the kube-api-access
     * volume to pods as the ServiceAccount admission plugin does. NULL: none of that. */
    const char *advertise;
    int advertise_port;
    const char *ca_pem;
    struct kl_log_follower *log_followers; /* `kubectl logs -f` streams (podlog.c) */
    size_t nlog_followers;
    struct kl_pf pf; /* `kubectl port-forward` sessions (portforward.c) */
};

/* The `kubernetes` Service's ClusterIP: the first address of the service CIDR 10.96.0.0/12. */
#define KL_KUBERNETES_IP "10.96.0.1"

/* --- time and ids --- */
double kl_monotonic(void);
void kl_now_rfc3339(char *out, size_t outlen);
void kl_now_micro(char *out, size_t outlen);
void kl_new_uid(struct kl *kl, char out[37]);

/* --- registry (registry.c) --- */
int kl_registry_init(struct kl *kl) WUR;
struct rtype *kl_rtype_find(const struct kl *kl, const char *group, const char *version,
                            const char *plural);
/* Lookup by kind within group/version; NULL if none. */
struct rtype *kl_rtype_by_kind(const struct kl *kl, const char *group, const char *version,
                               const char *kind);
int kl_rtype_add(struct kl *kl, struct rtype *rt) WUR; /* consumes rt */
void kl_rtype_remove(struct kl *kl, struct rtype *rt);
void kl_rtype_free(struct rtype *rt);
struct rstore *kl_store_get(struct kl *kl, const char *group, const char *plural, bool create);
/* "apps/v1" or "v1" */
void kl_api_version(const struct rtype *rt, char *out, size_t outlen);

/* --- store (store.c) --- */
/* Key "ns/name" ("/name" for cluster-scoped). */
void kl_key(const char *ns, const char *name, char *out, size_t outlen);
json_t *kl_store_lookup(struct rstore *st, const char *key);
/*
 * Commit a new state for key: obj (consumed) is the new object (NULL = delete). Sets
 * metadata.resourceVersion, appends to history, persists, and fans out to watchers. On return
 * *committed (if not NULL) is a borrowed reference to the stored object.
 */
int kl_commit(struct kl *kl, struct rstore *st, const char *key, json_t *obj,
              json_t **committed) WUR;
/* Objects of st as they were at rv (rv >= compacted_rv), sorted by key. Returns a new array
 * of borrowed-then-increfed objects, or NULL with *gone when rv is too old. */
json_t *kl_store_snapshot(struct kl *kl, struct rstore *st, uint64_t rv, bool *gone);
int kl_persist_open(struct kl *kl) WUR;
/* Convert a stored object to the apiVersion of rt (CRD versions share storage). New ref. */
json_t *kl_obj_for_version(const struct rtype *rt, json_t *obj);

/* --- watch (watch.c) --- */
void kl_watch_fanout(struct kl *kl, const struct event *ev);
void kl_watch_tick(struct kl *kl);
void kl_watch_remove_store(struct kl *kl, struct rstore *st);
void kl_watch_remove_rtype(struct kl *kl, const struct rtype *rt);
/* Kubernetes version priority order: negative when a sorts first (v1 < v1beta1 < v1alpha1). */
int kl_version_cmp(const char *a, const char *b);

/* --- api (api.c) --- */
void kl_handle(void *arg, struct http_conn *c, const struct http_request *req);
/* Parse a request body by Content-Type (JSON, YAML, protobuf); responds on failure. */
int kl_parse_body(struct http_conn *c, const struct http_request *req, json_t **out) WUR;
/* Append a StatusCause; like the real server's, the message does not repeat the field. */
void kl_cause_add(json_t *causes, const char *reason, const char *field, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
/* Status error body (caller frees). */
char *kl_status_json(int code, const char *reason, const char *message, const char *kind,
                     const char *name, const char *group, json_t *causes);
void kl_respond_json(struct http_conn *c, int code, json_t *body, const char *extra_headers);
void kl_respond_status(struct http_conn *c, int code, const char *reason, const char *message,
                       const char *kind, const char *name, const char *group, json_t *causes);

/* --- fault injection (api.c) --- */
void kl_faults_init(struct kl_faults *f, uint64_t seed);
/* True with probability p (no draw when p <= 0). */
bool kl_fault_roll(struct kl *kl, double p);

/* --- discovery (discovery.c) --- */
void kl_discovery_handle(struct kl *kl, struct http_conn *c, const struct http_request *req,
                         char **segs, int nseg);

/* --- CRDs (crd.c) --- */
/* Called when a CRD object is about to be stored; fills status, registers types. */
int kl_crd_prepare(struct kl *kl, json_t *crd, json_t *causes) WUR;
int kl_crd_activate(struct kl *kl, const json_t *crd) WUR;
void kl_crd_deactivate(struct kl *kl, const json_t *crd);

/* --- watch request (watch.c) --- */
void kl_watch_start(struct kl *kl, struct http_conn *c, const struct http_request *req,
                    const struct rtype *rt, const char *ns);

/* --- writes that wait for admission webhooks (api.c, admission.c) --- */
struct kl_write;
typedef void (*kl_write_fn)(struct kl_write *w);
struct kl_write {
    struct kl *kl;
    struct http_conn *c;            /* NULL for controller writes, or once the client went away */
    struct http_request *req;       /* owned copy */
    char *group, *version, *plural; /* the rtype, looked up again after waiting */
    char *ns, *name, *key;
    json_t *old, *obj, *user;
    char subresource[32];
    bool track_fields;
    bool create;
    struct buf hdrs;              /* extra response headers (warnings) */
    void *pending;                /* admission state while webhooks are called */
    struct kl_write *prev, *next; /* kl->inflight */
};
const struct rtype *kl_write_rtype(const struct kl_write *w);
void kl_write_free(struct kl_write *w);
/*
 * Run the mutating (or validating) admission webhooks that match w, then next(w). With no
 * matching webhook next runs at once; otherwise the client's connection waits. On a denial or
 * a failed call (under failurePolicy Fail) the client gets the error and w is freed instead.
 */
void kl_admit(struct kl_write *w, bool mutating, kl_write_fn next);
int kl_admission_init(struct kl *kl) WUR;
void kl_admission_release(struct kl *kl);

/* --- controllers (controllers.c) --- */
/* Reconcile every controller if anything was written since the last run. */
void kl_controllers_run(struct kl *kl);
/*
 * POST/GET pods/<name>/portforward (portforward.c): `kubectl port-forward` over SPDY/3.1 or
 * SPDY tunneled in WebSocket, to 127.0.0.1:<port> in the pod's network namespace. Takes the
 * connection over on success.
 */
void kl_pod_portforward(struct kl *kl, struct http_conn *c, const struct http_request *req,
                        const char *ns, const char *name);
/* Ask running sessions to end and wait for them (at most 2 s). */
void kl_portforward_shutdown(struct kl *kl);

/* GET pods/<name>/log (podlog.c): a container's output from its kubelet-lite node's files. */
void kl_pod_log(struct kl *kl, struct http_conn *c, const struct http_request *req, const char *ns,
                const char *name);
/* Send followed logs their new output; end the streams whose container is done. */
void kl_pod_log_tick(struct kl *kl);
/* --advertise-address: create or correct the `kubernetes` Service and its EndpointSlice. */
void kl_publish_kubernetes_service(struct kl *kl);
/*
 * Create an object on a controller's behalf, through admission like any client's create
 * (the result may land later, after webhooks answer). obj consumed.
 */
void kl_create_internal(struct kl *kl, const char *group, const char *version, const char *plural,
                        const char *ns, json_t *obj, const char *user);
/* Creates in flight (waiting for webhooks) of objects owned by owner_uid. */
int kl_inflight_owned(const struct kl *kl, const char *plural, const char *owner_uid);

/* --- authorization (rbac.c) --- */
struct kl_authz {
    const char *user;
    const json_t *groups; /* array of strings */
    const char *verb;     /* get, list, watch, create, update, patch, delete, deletecollection */
    const char *group, *resource, *subresource, *ns, *name;
    const char *path; /* a non-resource request (SubjectAccessReview nonResourceAttributes) */
};
/* True when RBAC allows the request; otherwise msg gets kube-apiserver's Forbidden text. */
bool kl_authorize(struct kl *kl, const struct kl_authz *a, char *msg, size_t msglen);

/* --- ServiceAccount tokens (tokens.c) --- */
int kl_tokens_init(struct kl *kl) WUR;
/* TokenReview status for token against audiences (NULL/empty: the API audience). New ref. */
json_t *kl_token_review(struct kl *kl, const char *token, const json_t *audiences);
void kl_token_request(struct kl *kl, struct http_conn *c, const struct http_request *req,
                      const char *ns, const char *sa_name);

/* --- kind-specific behaviour (hooks.c) --- */
/* Server-side defaults for a new or updated object (in place). */
int kl_hooks_defaults(struct kl *kl, const struct rtype *rt, const json_t *old, json_t *obj) WUR;
/* Kind-specific validation; appends causes and returns ERR_INVALID, or -ENOMEM. */
int kl_hooks_validate(struct kl *kl, const struct rtype *rt, const json_t *old, json_t *obj,
                      json_t *causes) WUR;
int kl_hooks_before_commit(struct kl *kl, const struct rtype *rt, const json_t *old,
                           json_t *obj) WUR;
void kl_hooks_after_commit(struct kl *kl, const struct rtype *rt, const json_t *old,
                           const json_t *obj);
void kl_hooks_after_delete(struct kl *kl, const struct rtype *rt, const json_t *obj);
/* True when deleting obj must wait: a namespace (Terminating), a pod on a node (graceful). */
bool kl_hooks_delete_pending(struct kl *kl, const struct rtype *rt, const json_t *obj, long grace);
bool kl_type_keeps_status_on_create(const struct rtype *rt);
bool kl_type_creates_on_update(const struct rtype *rt);
void kl_hooks_tick(struct kl *kl);
/* tokenreviews, access reviews: answered, not stored. */
void kl_virtual_create(struct kl *kl, struct http_conn *c, const struct http_request *req,
                       const struct rtype *rt, json_t *obj);
/* Authenticate a bearer token other than the admin token (ServiceAccount tokens). */
bool kl_auth_token(struct kl *kl, const char *token, char *user, size_t userlen);
bool kl_subresource_known(const struct rtype *rt, const char *sub);
void kl_subresource_handle(struct kl *kl, struct http_conn *c, const struct http_request *req,
                           const struct rtype *rt, const char *ns, const char *name,
                           const char *sub);
void kl_openapi_handle(struct kl *kl, struct http_conn *c, const struct http_request *req,
                       char **segs, int nseg);
json_t *kl_delete_object(struct kl *kl, const struct rtype *rt, const char *key, json_t *old,
                         bool dry_run, long grace, int *rcp);

#endif
