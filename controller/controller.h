/*
 * controller.h - the mesh model and the per-proxy compiler of weftd.
 *
 * The model holds the cluster objects that shape proxy configuration (Namespaces, Services,
 * EndpointSlices, Pods, ServiceAccounts, mesh.weft.dev TrafficSplit/AccessPolicy/RetryPolicy,
 * SMI split.smi-spec.io TrafficSplit v1alpha1..v1alpha4 and specs.smi-spec.io HTTPRouteGroup)
 * and compiles one JSON document per meshed pod (docs/proxy-config.md describes it). A pod is
 * meshed when it has a container, or a native-sidecar init container (restartPolicy Always),
 * named "weft-proxy" and it has not terminated.
 *
 * Incremental use (what weftd's reconcilers do):
 *   mesh_model_upsert()/mesh_model_delete() for every informer event, then
 *   mesh_model_dirty_proxies() for the pods whose document may have changed, then
 *   mesh_compile_pod_ex() for each; info.changed is false when the document is byte-identical
 *   to the one this model compiled last for that pod (kept as a 128-bit hash, not a copy).
 * Dependencies are tracked per object: a weight change dirties only the pods that may call the
 * apex Service (all meshed pods in the outbound scope "mesh"), an AccessPolicy change only the
 * pods its target selects (and, in the scope "admitted", the callers whose reachability it
 * changes), a Pod status change that moves no compiled field dirties nothing.
 *
 * Ownership: upserted objects are borrowed for the call (the model copies what it needs).
 * Documents returned are new references the caller releases with json_decref(); they share
 * immutable sub-objects with the model, so callers must not modify them (json_deep_copy first).
 *
 * Threading: a model is not thread-safe; use it from one thread (weftd's loop or a worker).
 */
#ifndef WEFT_CONTROLLER_H
#define WEFT_CONTROLLER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"

struct mesh_model;

/* What a workload with no Allow policy accepts (Helm value mesh.defaultMode). */
enum mesh_mode {
    MESH_MODE_ALL_AUTHENTICATED = 0, /* any peer with a mesh certificate */
    MESH_MODE_DENY,                  /* nothing but what an Allow policy admits */
    MESH_MODE_PERMISSIVE,            /* anything, plaintext included */
};

/*
 * Which Services a proxy's document lists in "outbound" (Helm value mesh.outboundScope, weftd
 * --outbound-scope; docs/proxy-config.md). Access is enforced by the target's sidecar either way.
 */
enum mesh_outbound_scope {
    /* every Service in the mesh, whatever the AccessPolicies and the mode: a caller no Allow
     * admits still originates mutual TLS and the target's sidecar answers 403 (tcp: closes) */
    MESH_OUTBOUND_MESH = 0,
    /* only the Services the caller's identity may call (the Allow policies that apply to each,
     * or the mode): documents and HAProxy memory scale with what a proxy may call; a refused
     * caller's connection passes through as plaintext and is refused in the TLS handshake */
    MESH_OUTBOUND_ADMITTED,
};

struct mesh_config {
    const char *trust_domain;                /* NULL: "cluster.local" */
    enum mesh_mode mode;                     /* default MESH_MODE_ALL_AUTHENTICATED (0) */
    enum mesh_outbound_scope outbound_scope; /* default MESH_OUTBOUND_MESH (0) */
    const char *trust_bundle_cm;  /* ConfigMap in each meshed namespace; NULL: "weft-root-ca" */
    const char *trust_bundle_key; /* key in that ConfigMap; NULL: "ca.crt" */
};

/* Proxy document schema version written as "schemaVersion" (docs/proxy-config.md). */
#define MESH_SCHEMA_VERSION 1

/* Parse "all-authenticated" | "deny" | "permissive". Returns 0 or -EINVAL. */
int mesh_mode_parse(const char *s, enum mesh_mode *out) WUR;
/* The canonical name of a mode; never NULL. */
const char *mesh_mode_name(enum mesh_mode mode);
/* Parse "mesh" | "admitted". Returns 0 or -EINVAL. */
int mesh_outbound_scope_parse(const char *s, enum mesh_outbound_scope *out) WUR;
/* The canonical name of an outbound scope; never NULL. */
const char *mesh_outbound_scope_name(enum mesh_outbound_scope scope);

/* A new empty model. cfg may be NULL (all defaults); it is copied. Returns 0, -ENOMEM. */
int mesh_model_new(const struct mesh_config *cfg, struct mesh_model **out) WUR;
void mesh_model_free(struct mesh_model *m);

/*
 * Add or replace one object, recognised by apiVersion and kind (see the header comment).
 * Returns 0; ERR_UNSUPPORTED for a kind the model does not hold; ERR_INVALID when the object
 * lacks metadata.name (or metadata.namespace for a namespaced kind); -ENOMEM. A custom
 * resource whose spec is invalid is still stored (its status says why it is not accepted).
 */
int mesh_model_upsert(struct mesh_model *m, const json_t *obj) WUR;

/*
 * Remove one object. kind is the Kind ("Pod", "Service", "TrafficSplit", ...), optionally
 * qualified by its group as "Kind.group": "TrafficSplit" means mesh.weft.dev,
 * "TrafficSplit.split.smi-spec.io" the SMI one. ns is ignored for Namespace. Returns 0,
 * ERR_NOTFOUND when absent, ERR_UNSUPPORTED for an unknown kind, -ENOMEM.
 */
int mesh_model_delete(struct mesh_model *m, const char *kind, const char *ns, const char *name) WUR;

/*
 * The meshed pods whose documents may have changed since the previous call, as a new JSON
 * array of "namespace/name" strings in sorted order; the set is then cleared. It includes pods
 * deleted or no longer meshed since: mesh_compile_pod() answers ERR_NOTFOUND for those and the
 * caller drops their documents. Returns 0, -ENOMEM.
 */
int mesh_model_dirty_proxies(struct mesh_model *m, json_t **out) WUR;

struct mesh_compile_info {
    bool changed;     /* document differs from the last one compiled for this pod */
    uint64_t hash[2]; /* 128-bit digest of the document's compact serialization */
};

/*
 * Compile the document of the meshed pod ns/name into *doc (a new reference). Returns 0,
 * ERR_NOTFOUND when the pod is unknown or not meshed, -ENOMEM. info may be NULL; when given,
 * it is filled and the model remembers the hash for the next comparison.
 * A compile either yields the whole document or fails: every part is built through a
 * first-error builder (conf/jbuild.h), so a failed allocation never drops a field silently. On
 * failure *doc and info are untouched, the remembered hash stays that of the last good
 * document (the caller keeps serving that one), the pod stays dirty for the next pass, and
 * mesh_model_compile_failures() counts one more.
 */
int mesh_compile_pod_ex(struct mesh_model *m, const char *ns, const char *name, json_t **doc,
                        struct mesh_compile_info *info) WUR;
/* mesh_compile_pod_ex() with info NULL: the remembered hash is updated all the same. */
int mesh_compile_pod(struct mesh_model *m, const char *ns, const char *name, json_t **doc) WUR;
/* How many compiles failed (any error but ERR_NOTFOUND) since the model was made. */
uint64_t mesh_model_compile_failures(const struct mesh_model *m);

/*
 * The desired status.conditions of a custom resource (kind as in mesh_model_delete():
 * "TrafficSplit", "AccessPolicy", "RetryPolicy", "TrafficSplit.split.smi-spec.io"): a new JSON
 * array of Accepted, ResolvedRefs and Programmed conditions, each with observedGeneration and
 * lastTransitionTime. prev is the object's current status.conditions (may be NULL): a
 * condition whose status did not flip keeps its lastTransitionTime; now is the RFC 3339 time
 * used otherwise. Returns 0, ERR_NOTFOUND, ERR_UNSUPPORTED, -ENOMEM.
 */
int mesh_model_status(struct mesh_model *m, const char *kind, const char *ns, const char *name,
                      const json_t *prev, const char *now, json_t **out) WUR;

/*
 * The meshed pods whose documents a custom resource (kind as in mesh_model_status) shapes: for
 * a TrafficSplit the pods whose documents list its apex Service, for a RetryPolicy those whose
 * documents list its Service (every meshed pod in the outbound scope "mesh"), for an
 * AccessPolicy the meshed pods it targets. fn(arg, "ns/name") is called once
 * per pod, in no particular order; a nonzero return stops the walk and is returned. Returns 0,
 * ERR_NOTFOUND, ERR_UNSUPPORTED, -ENOMEM or fn's code.
 */
typedef int mesh_proxy_visit_fn(void *arg, const char *key);
int mesh_model_affected_proxies(struct mesh_model *m, const char *kind, const char *ns,
                                const char *name, mesh_proxy_visit_fn *fn, void *arg) WUR;

/*
 * The summary of a Weft TrafficSplit that weftd writes into status.split (kubectl's SPLIT
 * column): each backend with its requested share of the weights, "web-v1 80%, web-v2 20%".
 * When the ready endpoints make the shares the proxies achieve differ (weights per endpoint are
 * whole numbers up to 256; a backend without ready endpoints gets nothing), each share is
 * followed by "(achieved N%)"; with no ready endpoint behind any backend, the summary ends with
 * " (no ready endpoints)". Shares are taken on the split's port, else the apex's first port.
 * Returns 0, ERR_NOTFOUND, -ENOSPC (out too small), -ENOMEM.
 */
int mesh_model_split_summary(struct mesh_model *m, const char *ns, const char *name, char *out,
                             size_t outlen) WUR;

/* Counts for metrics: objects held per kind, as a new JSON object {"Pod": n, ...}. */
json_t *mesh_model_stats(const struct mesh_model *m);

#endif
