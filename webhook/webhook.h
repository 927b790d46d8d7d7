/*
 * webhook.h - Weft's sidecar injection: the pure logic shared by the admission webhook (weftd,
 * POST /inject) and `weftctl inject`.
 *
 * Everything here is a pure function of its inputs: no I/O, no global state, no clock. Inputs
 * are borrowed and never modified; results are new objects the caller owns. Any thread may call
 * these functions concurrently as long as each call has its own outputs.
 *
 * What injection adds to a pod (see docs/injection.md for the full reference):
 *   - init container weft-init (iptables redirection, NET_ADMIN/NET_RAW, runs as root),
 *   - the weft-proxy sidecar (weft-agent + HAProxy, UID 1337) - a native sidecar (init container
 *     with restartPolicy: Always, right after weft-init) when cfg->native_sidecars, otherwise
 *     first in spec.containers with a postStart hold so the application starts after it,
 *   - volumes weft-data, weft-token (projected ServiceAccount token, audience "weft"), weft-ca
 *     (ConfigMap weft-root-ca), weft-podinfo (downward API labels/annotations); a name already
 *     used by the pod gets a numeric suffix (weft-token-1, ...),
 *   - application httpGet, tcpSocket and grpc probes rewritten to go through the agent on 15020
 *     (/app-health/<container>/<livez|readyz|startupz>), originals in weft.dev/original-probes,
 *   - annotations weft.dev/status, kubectl.kubernetes.io/default-container and the prometheus.io
 *     scrape annotations (these two only when the pod has none of its own).
 * Invariant: webhook_pod_uninject(webhook_pod_inject(p)) equals p (as JSON values).
 */
#ifndef WEFT_WEBHOOK_H
#define WEFT_WEBHOOK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/diag.h"
#include "core/err.h"

/* The containers injection adds (weftd recognises a meshed pod's sidecar by its name). */
#define WEBHOOK_INIT_NAME "weft-init"
#define WEBHOOK_PROXY_NAME "weft-proxy"

/* Injection settings: loaded once (Helm values, flags) and passed const. Strings borrowed. */
struct inject_config {
    const char *version;           /* recorded in weft.dev/status; never NULL */
    const char *proxy_image;       /* weft-proxy image; never NULL */
    const char *init_image;        /* weft-init image; NULL: proxy_image */
    const char *image_pull_policy; /* NULL: field omitted (cluster default) */
    const char *proxy_cpu_request; /* Kubernetes quantities; NULL: omitted */
    const char *proxy_memory_request;
    const char *proxy_cpu_limit;
    const char *proxy_memory_limit;
    const char *control_plane_addr; /* host:port of weftd's config stream, env WEFT_CONTROL_PLANE */
    const char *log_level;          /* weft-agent --log-level */
    bool native_sidecars;           /* the cluster runs native sidecars (Kubernetes >= 1.29) */
    bool prometheus_annotations;    /* add prometheus.io scrape annotations if none */
    bool opt_in_only; /* the pod's namespace is not selected for injection (the webhook's opt-in
                         path): inject only a pod that asks with weft.dev/inject: "true", as an
                         annotation or, without the annotation, a label */
};

/* Fill cfg with the defaults documented in docs/injection.md (classic sidecar mode). */
void webhook_config_init(struct inject_config *cfg);

/*
 * Check settings that come from flags or Helm values before serving with them, so that a bad
 * value stops weftd at start-up instead of making every injected pod fail: images non-empty,
 * quantities that Kubernetes accepts, each request no larger than its limit, a known log level,
 * a host:port control-plane address, a known image pull policy. Returns 0, or ERR_INVALID with
 * diag naming the setting (by the field names of struct inject_config's documentation: "proxy
 * CPU request", ...) and the value.
 */
int webhook_config_check(const struct inject_config *cfg, struct diag *diag) WUR;

enum webhook_verdict {
    WEBHOOK_INJECTED = 1, /* pod and patch are set */
    WEBHOOK_SKIPPED = 2,  /* nothing to do; reason says why (opted out, hostNetwork, ...) */
};

/* The outcome of webhook_pod_inject, in caller storage; webhook_result_release frees it. */
struct webhook_result {
    enum webhook_verdict verdict;
    json_t *pod;      /* INJECTED: the mutated copy of the input */
    json_t *patch;    /* INJECTED: RFC 6902 JSON Patch turning the input into pod */
    json_t *warnings; /* array of strings (possibly empty); never NULL after success */
    char reason[256]; /* SKIPPED: human-readable reason */
};

/* Free what a result holds and zero it; accepts a zeroed or already released result. */
void webhook_result_release(struct webhook_result *res);

/*
 * Decide whether to inject pod, and do it. pod is a Pod object or a pod template (an object with
 * optional metadata and a spec). ns is the namespace the pod is created in (NULL or "" when
 * unknown: then metadata.namespace is used). The caller has already selected the pod by
 * namespace (the webhook's namespaceSelector); here the pod's own opt-out, hostNetwork, an
 * earlier injection and the system namespaces (kube-system, weft-system) lead to SKIPPED.
 *
 * Returns 0 and fills *res; ERR_INVALID when the pod asks for something impossible (a malformed
 * weft.dev/... or traffic.weft.dev/... annotation, a field of the wrong JSON type): diag gets a
 * one-line reason naming the annotation or field, *res is untouched; -ENOMEM.
 */
int webhook_pod_inject(const struct inject_config *cfg, const json_t *pod, const char *ns,
                       struct webhook_result *res, struct diag *diag) WUR;

/*
 * Undo an injection using the weft.dev/status annotation: removes exactly the containers,
 * volumes and annotations recorded there and restores the original probes. A pod without the
 * annotation comes back as an unchanged copy. Returns 0 and a new object in *out;
 * ERR_INVALID (diag says why) when the status annotation is not what injection writes; -ENOMEM.
 */
int webhook_pod_uninject(const json_t *pod, json_t **out, struct diag *diag) WUR;

/*
 * Answer one AdmissionReview (admission.k8s.io/v1) request body of len bytes.
 *
 * Always produces a response body in *response_json (caller frees with free()) and the HTTP
 * status to send in *http_status:
 *   200 with an AdmissionReview response echoing request.uid: for a pod CREATE, allowed with
 *       patchType JSONPatch and a base64 patch (plus warnings) when injected, allowed without a
 *       patch when skipped, or allowed: false with status {code 400, message} when the pod's
 *       annotations are malformed. UPDATE, DELETE, CONNECT, other resources and subresources
 *       are allowed without a patch. A dryRun CREATE is answered exactly as a real one (the
 *       webhook has no side effects), so `kubectl apply --dry-run=server` shows the sidecar.
 *   400 with a Status body {"kind":"Status",...,"message"} for a body that is not JSON, not an
 *       AdmissionReview v1, or lacks request/request.uid/request.object.
 * Returns 0, or -ENOMEM (outputs untouched; the server should answer 500).
 */
int webhook_review(const struct inject_config *cfg, const char *body, size_t len,
                   char **response_json, int *http_status) WUR;

/* What webhook_review_explain decided, for logs and metrics. */
enum webhook_outcome {
    WEBHOOK_OUTCOME_INJECTED = 1,    /* a pod CREATE answered with a patch */
    WEBHOOK_OUTCOME_SKIPPED = 2,     /* a pod CREATE allowed untouched; reason says why */
    WEBHOOK_OUTCOME_PASSED = 3,      /* not ours to mutate (UPDATE, subresource, dryRun, ...) */
    WEBHOOK_OUTCOME_DENIED = 4,      /* allowed: false; reason is the message sent */
    WEBHOOK_OUTCOME_BAD_REQUEST = 5, /* HTTP 400; reason is the message sent */
    WEBHOOK_OUTCOME_NOUTCOMES        /* one past the last (sizes counters); not an outcome */
};

struct webhook_review_info {
    enum webhook_outcome outcome;
    char pod[320];    /* "namespace/name", "namespace/generateName*", or "" when unknown */
    char reason[512]; /* why, for every outcome but INJECTED */
};

/* Name of an outcome as a metric label value: "injected", "skipped", ... */
const char *webhook_outcome_name(enum webhook_outcome o);

/* webhook_review, also saying what it decided in *info (filled whenever it returns 0). */
int webhook_review_explain(const struct inject_config *cfg, const char *body, size_t len,
                           char **response_json, int *http_status,
                           struct webhook_review_info *info) WUR;

#endif
