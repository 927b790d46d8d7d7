/*
 * inject.c - sidecar injection and its inverse on a Pod or pod template (JSON).
 *
 * webhook_pod_inject works on a deep copy of the pod and records every change as a JSON Patch
 * operation as it makes it (jpatch.c), so the patch and the mutated pod cannot disagree. Order
 * of changes: probes of the app containers (at their original indices), then init containers,
 * the proxy, volumes, and finally the annotations (the status annotation lists everything).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "webhook/webhook.h"
#include "webhook/webhook_int.h"

static const char *const probe_kinds[] = {"livenessProbe", "readinessProbe", "startupProbe"};
static const char *const probe_paths[] = {"livez", "readyz", "startupz"};

/* Our volumes: base name, then the name actually used (suffixed on a clash). */
enum { VOL_DATA, VOL_TOKEN, VOL_CA, VOL_PODINFO, VOL_N };
static const char *const vol_base[VOL_N] = {"weft-data", "weft-token", "weft-ca", "weft-podinfo"};

struct inj {
    const struct inject_config *cfg;
    json_t *pod;       /* working copy */
    json_t *ops;       /* recorded JSON Patch */
    json_t *warnings;  /* array of strings */
    json_t *added;     /* annotation keys added (besides weft.dev/status) */
    json_t *created;   /* parents we created: metadata, annotations, initContainers, volumes */
    json_t *probes;    /* weft.dev/original-probes value, {container: {kind: httpGet}} */
    json_t *app_probe; /* WEFT_APP_PROBES value, {path: {scheme, port, path, ...}} */
    char vol[VOL_N][32];
    struct buf in_ports, ex_in_ports, ex_out_ports, in_ranges, ex_ranges;
    const char *res[4]; /* cpu request, memory request, cpu limit, memory limit */
    bool rewrite_probes;
    const char *access_log; /* weft.dev/access-log, validated; NULL: the agent's default */
    bool job;
    const char *first; /* name of the first app container, read before any change */
};

void webhook_config_init(struct inject_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->version = "0.1.0";
    cfg->proxy_image = "ghcr.io/weft-mesh/weft-proxy:0.1.0";
    cfg->proxy_cpu_request = "100m";
    cfg->proxy_memory_request = "128Mi";
    cfg->proxy_cpu_limit = "2";
    cfg->proxy_memory_limit = "1Gi";
    cfg->control_plane_addr = "weftd.weft-system.svc:15012";
    cfg->log_level = "info";
    cfg->prometheus_annotations = true;
}

int webhook_config_check(const struct inject_config *cfg, struct diag *diag)
{
    const char *q[4] = {cfg->proxy_cpu_request, cfg->proxy_memory_request, cfg->proxy_cpu_limit,
                        cfg->proxy_memory_limit};
    static const char *const qname[4] = {"proxy CPU request", "proxy memory request",
                                         "proxy CPU limit", "proxy memory limit"};
    double v[4] = {0, 0, 0, 0};
    const char *colon;
    enum log_level level;

    if (!cfg->version || !*cfg->version || !cfg->proxy_image || !*cfg->proxy_image ||
        (cfg->init_image && !*cfg->init_image)) {
        diag_set(diag, "the proxy and init images must not be empty");
        return ERR_INVALID;
    }
    for (int i = 0; i < 4; i++) {
        if (q[i] && webhook__quantity_parse(q[i], &v[i]) < 0) {
            diag_set(diag, "%s: \"%.64s\" is not a Kubernetes quantity (such as 100m, 1, 128Mi)",
                     qname[i], q[i]);
            return ERR_INVALID;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (q[i] && q[i + 2] && v[i] > v[i + 2]) {
            diag_set(diag, "%s %s is above the %s %s", qname[i], q[i], qname[i + 2], q[i + 2]);
            return ERR_INVALID;
        }
    }
    /* weft-agent reads it with the same parser */
    if (!cfg->log_level || log_level_parse(cfg->log_level, &level) < 0) {
        diag_set(diag, "proxy log level: \"%.32s\" is not debug, info, warn or error",
                 cfg->log_level ? cfg->log_level : "");
        return ERR_INVALID;
    }
    colon = cfg->control_plane_addr ? strrchr(cfg->control_plane_addr, ':') : NULL;
    if (!colon || colon == cfg->control_plane_addr || !colon[1] ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) < 1 ||
        atoi(colon + 1) > 65535) {
        diag_set(diag, "control-plane address: \"%.128s\" is not host:port",
                 cfg->control_plane_addr ? cfg->control_plane_addr : "");
        return ERR_INVALID;
    }
    if (cfg->image_pull_policy && strcmp(cfg->image_pull_policy, "Always") != 0 &&
        strcmp(cfg->image_pull_policy, "IfNotPresent") != 0 &&
        strcmp(cfg->image_pull_policy, "Never") != 0) {
        diag_set(diag, "image pull policy: \"%.32s\" is not Always, IfNotPresent or Never",
                 cfg->image_pull_policy);
        return ERR_INVALID;
    }
    return 0;
}

void webhook_result_release(struct webhook_result *res)
{
    if (!res)
        return;
    json_decref(res->pod);
    json_decref(res->patch);
    json_decref(res->warnings);
    memset(res, 0, sizeof(*res));
}

/* ---- reading the input ---- */

static int bad(struct diag *diag, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int bad(struct diag *diag, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    diag_vset(diag, fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

/* Optional member of the given type: 0 with *out (NULL if absent), ERR_INVALID if wrong type. */
static int member(const json_t *obj, const char *key, json_type type, const char *where,
                  json_t **out, struct diag *diag)
{
    static const char *const names[] = {"an object", "a list", "a string", "a number",
                                        "a number",  "a bool", "a bool",   "null"};
    json_t *v = json_object_get(obj, key);

    if (v && json_is_null(v))
        v = NULL;
    if (v && json_typeof(v) != type) {
        diag_set(diag, "%s%s: must be %s", where, key, names[type]);
        return ERR_INVALID;
    }
    *out = v;
    return 0;
}

/* Every element of a list is an object with a string name. */
static int check_named_list(const json_t *list, const char *where, struct diag *diag)
{
    size_t i;
    json_t *it;

    json_array_foreach(list, i, it)
    {
        if (!json_is_object(it) || !json_is_string(json_object_get(it, "name"))) {
            diag_set(diag, "%s[%zu]: must be an object with a name", where, i);
            return ERR_INVALID;
        }
    }
    return 0;
}

static const char *annot(const json_t *pod, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(pod, "metadata"), "annotations"), key));
}

static bool has_named(const json_t *list, const char *name)
{
    size_t i;
    json_t *it;

    json_array_foreach(list, i, it)
    {
        const char *n = json_string_value(json_object_get(it, "name"));
        if (n && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

/* Shape check of everything injection reads or writes. */
static int check_shape(const json_t *pod, struct diag *diag)
{
    json_t *meta = NULL, *spec = NULL, *a = NULL, *l = NULL, *c = NULL, *ic = NULL, *v = NULL;
    const char *key;
    json_t *val;
    int rc;

    if (!json_is_object(pod))
        return bad(diag, "pod: must be an object");
    if ((rc = member(pod, "metadata", JSON_OBJECT, "", &meta, diag)) < 0 ||
        (rc = member(pod, "spec", JSON_OBJECT, "", &spec, diag)) < 0)
        return rc;
    if (meta && ((rc = member(meta, "annotations", JSON_OBJECT, "metadata.", &a, diag)) < 0 ||
                 (rc = member(meta, "labels", JSON_OBJECT, "metadata.", &l, diag)) < 0))
        return rc;
    json_object_foreach(a, key, val)
    {
        if (!json_is_string(val))
            return bad(diag, "metadata.annotations.%s: must be a string", key);
    }
    if (!spec)
        return bad(diag, "spec: missing");
    if ((rc = member(spec, "containers", JSON_ARRAY, "spec.", &c, diag)) < 0 ||
        (rc = member(spec, "initContainers", JSON_ARRAY, "spec.", &ic, diag)) < 0 ||
        (rc = member(spec, "volumes", JSON_ARRAY, "spec.", &v, diag)) < 0)
        return rc;
    if (!c || json_array_size(c) == 0)
        return bad(diag, "spec.containers: missing or empty");
    if ((rc = check_named_list(c, "spec.containers", diag)) < 0 ||
        (rc = check_named_list(ic, "spec.initContainers", diag)) < 0 ||
        (rc = check_named_list(v, "spec.volumes", diag)) < 0)
        return rc;
    return 0;
}

/* Why not to inject, or NULL. */
static const char *skip_reason(const struct inject_config *cfg, const json_t *pod, const char *ns,
                               bool *opt_in)
{
    const json_t *spec = json_object_get(pod, "spec");
    const char *lbl = json_string_value(json_object_get(
        json_object_get(json_object_get(pod, "metadata"), "labels"), WEBHOOK_A_INJECT));

    if (ns && (strcmp(ns, "kube-system") == 0 || strcmp(ns, "weft-system") == 0))
        return "system namespace";
    if (annot(pod, WEBHOOK_A_STATUS) ||
        has_named(json_object_get(spec, "initContainers"), WEBHOOK_INIT_NAME) ||
        has_named(json_object_get(spec, "initContainers"), WEBHOOK_PROXY_NAME) ||
        has_named(json_object_get(spec, "containers"), WEBHOOK_PROXY_NAME))
        return "already injected";
    if (annot(pod, WEBHOOK_A_INJECT) && !*opt_in)
        return "opted out by annotation " WEBHOOK_A_INJECT;
    if (!annot(pod, WEBHOOK_A_INJECT) && lbl && strcmp(lbl, "false") == 0)
        return "opted out by label " WEBHOOK_A_INJECT;
    if (cfg->opt_in_only && !*opt_in &&
        !(!annot(pod, WEBHOOK_A_INJECT) && lbl && strcmp(lbl, "true") == 0))
        return "namespace not selected for injection and the pod does not opt in "
               "(weft.dev/inject: \"true\")";
    if (json_is_true(json_object_get(spec, "hostNetwork")))
        return "hostNetwork pod";
    return NULL;
}

/*
 * weft-init exempts the proxy's UID from outbound redirection, so an app container running as
 * that UID would bypass the proxy: its calls would leave the pod in plaintext, unchecked. Refuse
 * the pod, naming the container and where the UID comes from. Init containers count only with
 * native sidecars: in classic mode they run before weft-init and are not captured anyway.
 */
static int check_proxy_uid(const struct inject_config *cfg, const json_t *pod, struct diag *diag)
{
    const json_t *spec = json_object_get(pod, "spec");
    const json_t *pod_uid = json_object_get(json_object_get(spec, "securityContext"), "runAsUser");
    static const char *const lists[2] = {"containers", "initContainers"};

    for (int l = 0; l < (cfg->native_sidecars ? 2 : 1); l++) {
        size_t i;
        const json_t *ctr;

        json_array_foreach(json_object_get(spec, lists[l]), i, ctr)
        {
            const json_t *uid =
                json_object_get(json_object_get(ctr, "securityContext"), "runAsUser");
            bool from_pod = !uid || json_is_null(uid);
            char where[96];

            if (from_pod)
                uid = pod_uid;
            if (!json_is_integer(uid) || json_integer_value(uid) != WEBHOOK_PROXY_UID)
                continue;
            if (from_pod)
                snprintf(where, sizeof(where), "spec.securityContext.runAsUser");
            else
                snprintf(where, sizeof(where), "spec.%s[%zu].securityContext.runAsUser", lists[l],
                         i);
            diag_set(diag,
                     "%s \"%s\" runs as UID %d (%s), the UID reserved for the weft-proxy "
                     "sidecar: its traffic would bypass the proxy; run it as another user or opt "
                     "the pod out with the annotation weft.dev/inject: \"false\"",
                     l ? "init container" : "container",
                     json_string_value(json_object_get(ctr, "name")), WEBHOOK_PROXY_UID, where);
            return ERR_INVALID;
        }
    }
    return 0;
}

/* ---- settings from annotations ---- */

static int read_settings(struct inj *c, const json_t *pod, struct diag *diag)
{
    static const struct {
        const char *key, *dflt;
        bool cidr, star;
        size_t off;
    } lists[] = {
        {WEBHOOK_A_IN_PORTS, "*", false, true, offsetof(struct inj, in_ports)},
        {WEBHOOK_A_EX_IN_PORTS, "", false, false, offsetof(struct inj, ex_in_ports)},
        {WEBHOOK_A_EX_OUT_PORTS, "", false, false, offsetof(struct inj, ex_out_ports)},
        {WEBHOOK_A_IN_RANGES, "*", true, true, offsetof(struct inj, in_ranges)},
        {WEBHOOK_A_EX_RANGES, "", true, false, offsetof(struct inj, ex_ranges)},
    };
    static const char *const res_keys[4] = {WEBHOOK_A_CPU, WEBHOOK_A_MEM, WEBHOOK_A_CPU_LIMIT,
                                            WEBHOOK_A_MEM_LIMIT};
    const char *v;
    int rc;

    for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
        struct buf *b = (struct buf *)((char *)c + lists[i].off);

        v = annot(pod, lists[i].key);
        if (!v)
            v = lists[i].dflt;
        rc = lists[i].cidr ? webhook__cidrs_parse(lists[i].key, v, lists[i].star, b, diag)
                           : webhook__ports_parse(lists[i].key, v, lists[i].star, b, diag);
        if (rc < 0)
            return rc;
    }
    /* The agent's health and metrics ports must stay reachable by the kubelet and Prometheus. */
    if ((rc = buf_printf(&c->ex_in_ports, "%s%d,%d", c->ex_in_ports.len ? "," : "",
                         WEBHOOK_PORT_HEALTH, WEBHOOK_PORT_METRICS)) < 0)
        return rc;

    c->res[0] = c->cfg->proxy_cpu_request;
    c->res[1] = c->cfg->proxy_memory_request;
    c->res[2] = c->cfg->proxy_cpu_limit;
    c->res[3] = c->cfg->proxy_memory_limit;
    for (int i = 0; i < 4; i++) {
        double q;

        v = annot(pod, res_keys[i]);
        if (!v)
            continue;
        if (webhook__quantity_parse(v, &q) < 0) {
            diag_set(diag,
                     "annotation %s: \"%.64s\" is not a Kubernetes quantity (such as 100m, 1, "
                     "128Mi)",
                     res_keys[i], v);
            return ERR_INVALID;
        }
        c->res[i] = v;
    }
    /* The API server refuses a request above its limit: say which annotation caused it. */
    for (int i = 0; i < 2; i++) {
        double rq, lq;

        if (!c->res[i] || !c->res[i + 2] || webhook__quantity_parse(c->res[i], &rq) < 0 ||
            webhook__quantity_parse(c->res[i + 2], &lq) < 0 || rq <= lq)
            continue;
        diag_set(diag, "annotation %s: proxy %s request %s exceeds its limit %s",
                 annot(pod, res_keys[i]) ? res_keys[i] : res_keys[i + 2], i ? "memory" : "cpu",
                 c->res[i], c->res[i + 2]);
        return ERR_INVALID;
    }

    /* the proxy's access log (docs/agent.md "Access log"): decisions and errors, or all */
    c->access_log = annot(pod, WEBHOOK_A_ACCESS_LOG);
    if (c->access_log && strcmp(c->access_log, "decisions") && strcmp(c->access_log, "all")) {
        diag_set(diag, "annotation %s: \"%.64s\" is not decisions or all", WEBHOOK_A_ACCESS_LOG,
                 c->access_log);
        return ERR_INVALID;
    }

    c->rewrite_probes = true;
    v = annot(pod, WEBHOOK_A_REWRITE);
    if (v && (rc = webhook__bool_parse(WEBHOOK_A_REWRITE, v, &c->rewrite_probes, diag)) < 0)
        return rc;
    return 0;
}

static bool is_job(const json_t *pod)
{
    const char *rp =
        json_string_value(json_object_get(json_object_get(pod, "spec"), "restartPolicy"));
    const json_t *owners = json_object_get(json_object_get(pod, "metadata"), "ownerReferences");
    size_t i;
    json_t *o;

    if (rp && (strcmp(rp, "Never") == 0 || strcmp(rp, "OnFailure") == 0))
        return true;
    json_array_foreach(owners, i, o)
    {
        const char *k = json_string_value(json_object_get(o, "kind"));
        if (k && strcmp(k, "Job") == 0)
            return true;
    }
    return false;
}

static int warn(struct inj *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int warn(struct inj *c, const char *fmt, ...)
{
    char w[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(w, sizeof(w), fmt, ap);
    va_end(ap);
    return json_array_append_new(c->warnings, json_string(w)) < 0 ? -ENOMEM : 0;
}

/* ---- probes ---- */

/* Resolve a probe's port (number or the name of one of the container's ports); 0 if unknown. */
static json_int_t probe_port(const json_t *container, const json_t *port)
{
    size_t i;
    json_t *p;

    if (json_is_integer(port))
        return json_integer_value(port);
    if (!json_is_string(port))
        return 0;
    json_array_foreach(json_object_get(container, "ports"), i, p)
    {
        const char *n = json_string_value(json_object_get(p, "name"));
        if (n && strcmp(n, json_string_value(port)) == 0 &&
            json_is_integer(json_object_get(p, "containerPort")))
            return json_integer_value(json_object_get(p, "containerPort"));
    }
    return 0;
}

/*
 * The probe handlers the kubelet would aim at the pod's IP, where the inbound redirection sends
 * them to the proxy: an httpGet or a gRPC probe would fail the mTLS handshake, and a tcpSocket
 * probe would always succeed (the proxy accepts), even with the app dead. Each is replaced by
 * an httpGet on the agent, which runs the original check over localhost.
 */
static const char *const probe_handlers[] = {"httpGet", "tcpSocket", "grpc"};

/* What the agent needs to run handler h of probe (WEFT_APP_PROBES entry's handler object). */
static json_t *probe_target(const json_t *container, const json_t *hv, int h, json_int_t *port)
{
    const char *path, *scheme, *svc;
    json_t *t;

    *port = h == 2 ? (json_is_integer(json_object_get(hv, "port"))
                          ? json_integer_value(json_object_get(hv, "port"))
                          : 0)
                   : probe_port(container, json_object_get(hv, "port"));
    if (*port <= 0 || *port > 65535)
        return NULL;
    switch (h) {
    case 0:
        path = json_string_value(json_object_get(hv, "path"));
        scheme = json_string_value(json_object_get(hv, "scheme"));
        t = json_pack("{s:s,s:I,s:s}", "scheme", scheme ? scheme : "HTTP", "port", *port, "path",
                      path && *path ? path : "/");
        if (t && json_object_get(hv, "httpHeaders") &&
            json_object_set(t, "httpHeaders", json_object_get(hv, "httpHeaders")) < 0) {
            json_decref(t);
            t = NULL;
        }
        return t;
    case 1:
        return json_pack("{s:I}", "port", *port);
    default:
        svc = json_string_value(json_object_get(hv, "service"));
        t = json_pack("{s:I}", "port", *port);
        if (t && svc && json_object_set_new(t, "service", json_string(svc)) < 0) {
            json_decref(t);
            t = NULL;
        }
        return t;
    }
}

static int rewrite_probe(struct inj *c, json_t *container, size_t idx, int kind)
{
    const char *cname = json_string_value(json_object_get(container, "name"));
    json_t *probe = json_object_get(container, probe_kinds[kind]);
    json_t *hv = NULL, *entry = NULL, *target = NULL, *orig = NULL, *nhg = NULL;
    json_int_t port;
    struct buf ptr, app;
    int rc = 0, h;

    for (h = 0; h < 3; h++)
        if (json_is_object(hv = json_object_get(probe, probe_handlers[h])))
            break;
    if (h == 3)
        return 0; /* exec (runs in the container) or no handler: nothing to fix */
    /* A probe with its own host does not enter the pod's inbound path: nothing to fix. */
    if (h < 2 && json_string_length(json_object_get(hv, "host")) > 0)
        return 0;
    target = probe_target(container, hv, h, &port);
    if (!target && port > 0 && port <= 65535)
        return -ENOMEM;
    if (!target)
        return warn(c, "container %s: %s port cannot be resolved; probe left unchanged", cname,
                    probe_kinds[kind]);
    buf_init(&ptr);
    buf_init(&app);
    if ((rc = buf_printf(&app, "/app-health/%s/%s", cname, probe_paths[kind])) < 0 ||
        (rc = buf_printf(&ptr, "/spec/containers/%zu", idx)) < 0 ||
        (rc = webhook__ptr_append(&ptr, probe_kinds[kind])) < 0)
        goto out;
    entry = json_pack("{s:O,s:o}", probe_handlers[h], target, "timeoutSeconds",
                      json_is_integer(json_object_get(probe, "timeoutSeconds"))
                          ? json_copy(json_object_get(probe, "timeoutSeconds"))
                          : json_integer(1));
    if (!entry) {
        rc = -ENOMEM;
        goto out;
    }
    orig = json_object_get(c->probes, cname);
    if (!orig) {
        orig = json_object();
        if (!orig || json_object_set_new(c->probes, cname, orig) < 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    nhg = json_pack("{s:s,s:i}", "path", app.p, "port", WEBHOOK_PORT_HEALTH);
    if (!nhg ||
        json_object_set_new(orig, probe_kinds[kind], json_pack("{s:O}", probe_handlers[h], hv)) <
            0 ||
        !json_object_get(orig, probe_kinds[kind]) ||
        json_object_set(c->app_probe, app.p, entry) < 0) {
        json_decref(nhg);
        rc = -ENOMEM;
        goto out;
    }
    /* hv stays alive in orig; replacing or removing it in the probe is now safe. */
    if (h == 0) {
        rc = webhook__op_replace(c->ops, probe, ptr.p, "httpGet", nhg);
    } else {
        rc = webhook__op_remove(c->ops, probe, ptr.p, probe_handlers[h]);
        if (rc == 0)
            rc = webhook__op_add(c->ops, probe, ptr.p, "httpGet", nhg);
        else
            json_decref(nhg);
    }
out:
    json_decref(entry);
    json_decref(target);
    buf_release(&ptr);
    buf_release(&app);
    return rc;
}

static int rewrite_probes(struct inj *c)
{
    json_t *containers = json_object_get(json_object_get(c->pod, "spec"), "containers");
    size_t i;
    json_t *ct;
    int rc;

    json_array_foreach(containers, i, ct)
    {
        for (int k = 0; k < 3 && c->rewrite_probes; k++)
            if ((rc = rewrite_probe(c, ct, i, k)) < 0)
                return rc;
        /* An app listening on one of our ports would fight the proxy for it. */
        size_t j;
        json_t *p;
        json_array_foreach(json_object_get(ct, "ports"), j, p)
        {
            json_int_t n = json_integer_value(json_object_get(p, "containerPort"));
            char num[24];

            if (n != WEBHOOK_PORT_OUTBOUND && n != WEBHOOK_PORT_INBOUND &&
                n != WEBHOOK_PORT_HEALTH && n != WEBHOOK_PORT_METRICS)
                continue;
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, n);
            if ((rc = warn(c, "container %s: port %s is reserved for the weft-proxy sidecar",
                           json_string_value(json_object_get(ct, "name")), num)) < 0)
                return rc;
        }
    }
    return 0;
}

/* ---- what we add ---- */

static void pick_volume_names(struct inj *c)
{
    const json_t *vols = json_object_get(json_object_get(c->pod, "spec"), "volumes");

    for (int i = 0; i < VOL_N; i++) {
        snprintf(c->vol[i], sizeof(c->vol[i]), "%s", vol_base[i]);
        for (int n = 1; has_named(vols, c->vol[i]); n++)
            snprintf(c->vol[i], sizeof(c->vol[i]), "%s-%d", vol_base[i], n);
    }
}

static json_t *resources(const struct inj *c, bool init)
{
    const char *const *r =
        init ? (const char *const[]){c->cfg->proxy_cpu_request, c->cfg->proxy_memory_request,
                                     c->cfg->proxy_cpu_limit, c->cfg->proxy_memory_limit}
             : c->res;
    json_t *req = json_pack("{s:s*,s:s*}", "cpu", r[0], "memory", r[1]);
    json_t *lim = json_pack("{s:s*,s:s*}", "cpu", r[2], "memory", r[3]);
    json_t *res = json_object();

    if (!req || !lim || !res ||
        (json_object_size(req) && json_object_set(res, "requests", req) < 0) ||
        (json_object_size(lim) && json_object_set(res, "limits", lim) < 0)) {
        json_decref(res);
        res = NULL;
    }
    json_decref(req);
    json_decref(lim);
    return res;
}

static const char *str(const struct buf *b)
{
    return b->p ? b->p : "";
}

static json_t *init_container(const struct inj *c)
{
    const struct inject_config *cfg = c->cfg;
    json_t *res = resources(c, true);

    if (!res)
        return NULL;
    return json_pack(
        "{s:s,s:s,s:s*,s:[s],s:[s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s],s:o,s:{s:i,s:i,s:b,s:b,s:b,s:b,"
        "s:{s:[s,s],s:[s]}}}",
        "name", WEBHOOK_INIT_NAME, "image", cfg->init_image ? cfg->init_image : cfg->proxy_image,
        "imagePullPolicy", cfg->image_pull_policy, "command", "weft-init", "args", "--proxy-uid",
        "1337", "--outbound-port", "15001", "--inbound-port", "15006", "--include-inbound-ports",
        str(&c->in_ports), "--exclude-inbound-ports", str(&c->ex_in_ports),
        "--exclude-outbound-ports", str(&c->ex_out_ports), "--include-outbound-ip-ranges",
        str(&c->in_ranges), "--exclude-outbound-ip-ranges", str(&c->ex_ranges), "resources", res,
        "securityContext", "runAsUser", 0, "runAsGroup", 0, "runAsNonRoot", 0, "privileged", 0,
        "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem", 0, "capabilities", "add",
        "NET_ADMIN", "NET_RAW", "drop", "ALL");
}

static json_t *env_field(const char *name, const char *path)
{
    return json_pack("{s:s,s:{s:{s:s}}}", "name", name, "valueFrom", "fieldRef", "fieldPath", path);
}

static json_t *proxy_env(const struct inj *c)
{
    json_t *env = json_pack("[o,o,o,o,{s:s,s:s}]", env_field("POD_NAME", "metadata.name"),
                            env_field("POD_NAMESPACE", "metadata.namespace"),
                            env_field("POD_IP", "status.podIP"),
                            env_field("SERVICE_ACCOUNT", "spec.serviceAccountName"), "name",
                            "WEFT_CONTROL_PLANE", "value", c->cfg->control_plane_addr);
    const json_t *containers = json_object_get(json_object_get(c->pod, "spec"), "containers");
    struct buf names;
    size_t i;
    json_t *ct;
    char *probes = NULL;
    int rc = 0;

    buf_init(&names);
    if (!env)
        goto out;
    json_array_foreach(containers, i, ct)
    {
        if ((rc = buf_printf(&names, "%s%s", i ? "," : "",
                             json_string_value(json_object_get(ct, "name")))) < 0)
            goto out;
    }
    /* the agent's SIGTERM handling depends on whether the kubelet stops it after the apps
     * (native) or together with them (classic: docs/agent.md, "Lifecycle") */
    if (json_array_append_new(
            env, json_pack("{s:s,s:s}", "name", "WEFT_APP_CONTAINERS", "value", names.p)) < 0 ||
        json_array_append_new(env, json_pack("{s:s,s:s}", "name", "WEFT_SIDECAR_MODE", "value",
                                             c->cfg->native_sidecars ? "native" : "classic")) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    if (json_object_size(c->app_probe)) {
        probes = json_dumps(c->app_probe, JSON_COMPACT);
        if (!probes || json_array_append_new(env, json_pack("{s:s,s:s}", "name", "WEFT_APP_PROBES",
                                                            "value", probes)) < 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    /* Classic sidecars must leave on their own for a Job to finish; native ones are stopped
     * by the kubelet once the app containers have exited. */
    if (c->job && !c->cfg->native_sidecars &&
        json_array_append_new(
            env, json_pack("{s:s,s:s}", "name", "WEFT_EXIT_ON_COMPLETION", "value", "true")) < 0)
        rc = -ENOMEM;
out:
    free(probes);
    buf_release(&names);
    if (rc < 0) {
        json_decref(env);
        env = NULL;
    }
    return env;
}

static json_t *ready_probe(int period, int failures)
{
    return json_pack("{s:{s:s,s:i},s:i,s:i,s:i}", "httpGet", "path", "/healthz/ready", "port",
                     WEBHOOK_PORT_HEALTH, "periodSeconds", period, "timeoutSeconds", 3,
                     "failureThreshold", failures);
}

static json_t *proxy_container(const struct inj *c)
{
    const struct inject_config *cfg = c->cfg;
    bool native = cfg->native_sidecars;
    json_t *ctr = json_pack(
        "{s:s,s:s,s:s*,s:[s],s:[s,s],s:o,s:[{s:s,s:i,s:s},{s:s,s:i,s:s},{s:s,s:i,s:s},{s:s,s:i,"
        "s:s}],s:o,s:o}",
        "name", WEBHOOK_PROXY_NAME, "image", cfg->proxy_image, "imagePullPolicy",
        cfg->image_pull_policy, "command", "weft-agent", "args", "--log-level",
        cfg->log_level ? cfg->log_level : "info", "env", proxy_env(c), "ports", "name",
        "weft-outbound", "containerPort", WEBHOOK_PORT_OUTBOUND, "protocol", "TCP", "name",
        "weft-inbound", "containerPort", WEBHOOK_PORT_INBOUND, "protocol", "TCP", "name",
        "weft-health", "containerPort", WEBHOOK_PORT_HEALTH, "protocol", "TCP", "name",
        "weft-metrics", "containerPort", WEBHOOK_PORT_METRICS, "protocol", "TCP", "readinessProbe",
        ready_probe(2, 30), "resources", resources(c, false));
    json_t *more = NULL;

    if (!ctr)
        return NULL;
    if (c->access_log) {
        json_t *args = json_object_get(ctr, "args");

        if (json_array_append_new(args, json_string("--access-log")) < 0 ||
            json_array_append_new(args, json_string(c->access_log)) < 0)
            goto fail;
    }
    if (native)
        /* The kubelet starts the next container once this startup probe passes. */
        more =
            json_pack("{s:o,s:s}", "startupProbe", ready_probe(1, 600), "restartPolicy", "Always");
    else
        /* Containers start in order and each waits for the previous postStart hook. */
        more = json_pack("{s:{s:{s:{s:[s,s]}}}}", "lifecycle", "postStart", "exec", "command",
                         "weft-agent", "wait");
    if (!more || json_object_update(ctr, more) < 0)
        goto fail;
    json_decref(more);
    more = json_pack(
        "{s:{s:i,s:i,s:b,s:b,s:b,s:b,s:{s:[s]}},s:[{s:s,s:s},{s:s,s:s,s:b},{s:s,s:s,s:b},"
        "{s:s,s:s,s:b}]}",
        "securityContext", "runAsUser", WEBHOOK_PROXY_UID, "runAsGroup", WEBHOOK_PROXY_UID,
        "runAsNonRoot", 1, "privileged", 0, "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem",
        1, "capabilities", "drop", "ALL", "volumeMounts", "name", c->vol[VOL_DATA], "mountPath",
        "/var/lib/weft", "name", c->vol[VOL_TOKEN], "mountPath", "/var/run/secrets/weft/tokens",
        "readOnly", 1, "name", c->vol[VOL_CA], "mountPath", "/var/run/secrets/weft/ca", "readOnly",
        1, "name", c->vol[VOL_PODINFO], "mountPath", "/etc/weft/pod", "readOnly", 1);
    if (!more || json_object_update(ctr, more) < 0)
        goto fail;
    json_decref(more);
    return ctr;
fail:
    json_decref(more);
    json_decref(ctr);
    return NULL;
}

static json_t *volumes(const struct inj *c)
{
    return json_pack(
        "[{s:s,s:{s:s}},{s:s,s:{s:[{s:{s:s,s:i,s:s}}]}},{s:s,s:{s:s}},{s:s,s:{s:[{s:s,s:{s:s}},"
        "{s:s,s:{s:s}}]}}]",
        "name", c->vol[VOL_DATA], "emptyDir", "medium", "Memory", "name", c->vol[VOL_TOKEN],
        "projected", "sources", "serviceAccountToken", "audience", WEBHOOK_TOKEN_AUDIENCE,
        "expirationSeconds", 3600, "path", "token", "name", c->vol[VOL_CA], "configMap", "name",
        WEBHOOK_CA_CONFIGMAP, "name", c->vol[VOL_PODINFO], "downwardAPI", "items", "path", "labels",
        "fieldRef", "fieldPath", "metadata.labels", "path", "annotations", "fieldRef", "fieldPath",
        "metadata.annotations");
}

/*
 * Remember that we created a parent, so that uninjection removes it again: "key" when it was
 * absent, "key=null" when it was an explicit null (as an empty "annotations:" in YAML gives).
 */
static int note_created(struct inj *c, const char *key, bool was_null)
{
    char s[64];

    snprintf(s, sizeof(s), "%s%s", key, was_null ? "=null" : "");
    return json_array_append_new(c->created, json_string(s)) < 0 ? -ENOMEM : 0;
}

/* Add each element of items to spec[key] (appending, or inserting from index at), or create it. */
static int add_list(struct inj *c, const char *key, json_t *items, size_t at)
{
    json_t *spec = json_object_get(c->pod, "spec");
    json_t *list = json_object_get(spec, key);
    char ptr[64];
    size_t i;
    json_t *it;
    int rc = 0;

    if (!list || json_is_null(list)) {
        rc = note_created(c, key, list != NULL);
        if (rc == 0)
            return webhook__op_add(c->ops, spec, "/spec", key, items);
        json_decref(items);
        return rc;
    }
    snprintf(ptr, sizeof(ptr), "/spec/%s", key);
    json_array_foreach(items, i, it)
    {
        if ((rc = webhook__op_insert(c->ops, list, ptr, at == SIZE_MAX ? SIZE_MAX : at + i,
                                     json_incref(it))) < 0)
            break;
    }
    json_decref(items);
    return rc;
}

static int add_containers(struct inj *c)
{
    json_t *spec = json_object_get(c->pod, "spec");
    json_t *init = init_container(c), *proxy = proxy_container(c);
    int rc;

    if (!init || !proxy) {
        json_decref(init);
        json_decref(proxy);
        return -ENOMEM;
    }
    if (c->cfg->native_sidecars)
        return add_list(c, "initContainers", json_pack("[o,o]", init, proxy), 0);
    rc = add_list(c, "initContainers", json_pack("[o]", init), SIZE_MAX);
    if (rc == 0)
        return webhook__op_insert(c->ops, json_object_get(spec, "containers"), "/spec/containers",
                                  0, proxy);
    json_decref(proxy);
    return rc;
}

static int status_value(struct inj *c, char **out)
{
    bool native = c->cfg->native_sidecars;
    json_t *vols = json_pack("[s,s,s,s]", c->vol[0], c->vol[1], c->vol[2], c->vol[3]);
    json_t *st =
        json_pack("{s:s,s:o,s:o,s:o,s:O,s:O}", "version", c->cfg->version, "initContainers",
                  native ? json_pack("[s,s]", WEBHOOK_INIT_NAME, WEBHOOK_PROXY_NAME)
                         : json_pack("[s]", WEBHOOK_INIT_NAME),
                  "containers", native ? json_array() : json_pack("[s]", WEBHOOK_PROXY_NAME),
                  "volumes", vols, "annotations", c->added, "created", c->created);

    *out = st ? json_dumps(st, JSON_COMPACT) : NULL;
    json_decref(st);
    return *out ? 0 : -ENOMEM;
}

static int add_annotations(struct inj *c, const json_t *orig)
{
    json_t *meta = json_object_get(c->pod, "metadata"),
           *annots = json_object_get(meta, "annotations");
    json_t *add = json_object();
    const char *first = c->first;
    char *probes = NULL, *status = NULL;
    const char *key;
    json_t *val;
    int rc = -ENOMEM;

    if (!add)
        goto out;
    if (!annot(orig, WEBHOOK_A_DEFAULT_CONTAINER) &&
        json_object_set_new(add, WEBHOOK_A_DEFAULT_CONTAINER, json_string(first)) < 0)
        goto out;
    if (c->cfg->prometheus_annotations && !annot(orig, "prometheus.io/scrape") &&
        !annot(orig, "prometheus.io/port") && !annot(orig, "prometheus.io/path") &&
        (json_object_set_new(add, "prometheus.io/scrape", json_string("true")) < 0 ||
         json_object_set_new(add, "prometheus.io/port", json_string("15020")) < 0 ||
         json_object_set_new(add, "prometheus.io/path", json_string("/stats/prometheus")) < 0))
        goto out;
    if (json_object_size(c->probes)) {
        probes = json_dumps(c->probes, JSON_COMPACT);
        if (!probes || json_object_set_new(add, WEBHOOK_A_PROBES, json_string(probes)) < 0)
            goto out;
    }
    json_object_foreach(add, key, val)
    {
        if (json_array_append_new(c->added, json_string(key)) < 0)
            goto out;
    }
    rc = 0;
    if (!meta || json_is_null(meta))
        rc = note_created(c, "metadata", meta != NULL);
    if (rc == 0 && (!annots || json_is_null(annots)))
        rc = note_created(c, "annotations", annots != NULL);
    if (rc < 0 || (rc = status_value(c, &status)) < 0)
        goto out;
    if (json_object_set_new(add, WEBHOOK_A_STATUS, json_string(status)) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    if (!meta || json_is_null(meta)) {
        rc =
            webhook__op_add(c->ops, c->pod, "", "metadata", json_pack("{s:O}", "annotations", add));
    } else if (!annots || json_is_null(annots)) {
        rc = webhook__op_add(c->ops, meta, "/metadata", "annotations", json_incref(add));
    } else {
        rc = 0;
        json_object_foreach(add, key, val)
        {
            if ((rc = webhook__op_add(c->ops, annots, "/metadata/annotations", key,
                                      json_incref(val))) < 0)
                break;
        }
    }
out:
    free(probes);
    free(status);
    json_decref(add);
    return rc;
}

int webhook_pod_inject(const struct inject_config *cfg, const json_t *pod, const char *ns,
                       struct webhook_result *res, struct diag *diag)
{
    json_t *copy = json_deep_copy(pod);
    if (!copy)
        return -ENOMEM;
    return webhook__pod_inject_owned(cfg, copy, ns, res, diag);
}

/*
 * The injection itself, on a pod the caller hands over (it becomes the working copy and, when
 * injected, res->pod): webhook_review parses the review and owns it, so it need not copy the
 * pod. Reads that need the pod as it came in happen before the first change.
 */
int webhook__pod_inject_owned(const struct inject_config *cfg, json_t *pod, const char *ns,
                              struct webhook_result *res, struct diag *diag)
{
    struct inj c;
    const char *why, *inject = NULL;
    bool opt_in = false;
    int rc;

    memset(&c, 0, sizeof(c));
    c.cfg = cfg;
    c.pod = pod;
    c.first = json_string_value(json_object_get(
        json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0), "name"));
    buf_init(&c.in_ports);
    buf_init(&c.ex_in_ports);
    buf_init(&c.ex_out_ports);
    buf_init(&c.in_ranges);
    buf_init(&c.ex_ranges);
    if ((rc = check_shape(pod, diag)) < 0)
        goto out;
    if (!ns || !*ns)
        ns = json_string_value(json_object_get(json_object_get(pod, "metadata"), "namespace"));
    inject = annot(pod, WEBHOOK_A_INJECT);
    if (inject && !(ns && (strcmp(ns, "kube-system") == 0 || strcmp(ns, "weft-system") == 0)) &&
        (rc = webhook__bool_parse(WEBHOOK_A_INJECT, inject, &opt_in, diag)) < 0)
        goto out;
    c.warnings = json_array();
    if (!c.warnings) {
        rc = -ENOMEM;
        goto out;
    }
    why = skip_reason(cfg, pod, ns, &opt_in);
    if (why) {
        memset(res, 0, sizeof(*res));
        res->verdict = WEBHOOK_SKIPPED;
        res->warnings = c.warnings;
        c.warnings = NULL;
        snprintf(res->reason, sizeof(res->reason), "%s", why);
        rc = 0;
        goto out;
    }
    if ((rc = read_settings(&c, pod, diag)) < 0 || (rc = check_proxy_uid(cfg, pod, diag)) < 0)
        goto out;
    c.job = is_job(pod);
    c.ops = json_array();
    c.added = json_array();
    c.created = json_array();
    c.probes = json_object();
    c.app_probe = json_object();
    if (!c.pod || !c.ops || !c.added || !c.created || !c.probes || !c.app_probe) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = rewrite_probes(&c)) < 0)
        goto out;
    pick_volume_names(&c);
    if ((rc = add_containers(&c)) < 0 ||
        (rc = add_list(&c, "volumes", volumes(&c), SIZE_MAX)) < 0 ||
        (rc = add_annotations(&c, pod)) < 0)
        goto out;
    memset(res, 0, sizeof(*res));
    res->verdict = WEBHOOK_INJECTED;
    res->pod = c.pod;
    res->patch = c.ops;
    res->warnings = c.warnings;
    c.pod = c.ops = c.warnings = NULL;
out:
    json_decref(c.pod);
    json_decref(c.ops);
    json_decref(c.warnings);
    json_decref(c.added);
    json_decref(c.created);
    json_decref(c.probes);
    json_decref(c.app_probe);
    buf_release(&c.in_ports);
    buf_release(&c.ex_in_ports);
    buf_release(&c.ex_out_ports);
    buf_release(&c.in_ranges);
    buf_release(&c.ex_ranges);
    return rc;
}

/* ---- uninject ---- */

static bool str_in(const json_t *arr, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

static void remove_named(json_t *list, const json_t *names)
{
    for (size_t i = json_array_size(list); i-- > 0;) {
        const char *n = json_string_value(json_object_get(json_array_get(list, i), "name"));
        if (n && str_in(names, n))
            json_array_remove(list, i);
    }
}

static bool string_list(const json_t *v)
{
    size_t i;
    json_t *s;

    if (!json_is_array(v))
        return false;
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s))
            return false;
    }
    return true;
}

/*
 * Put back each original probe handler recorded in weft.dev/original-probes
 * ({container: {probe kind: {handler: value}}}), in place of the agent's httpGet.
 */
static int restore_probes(json_t *spec, const char *text, struct diag *diag)
{
    json_t *probes = json_loads(text, 0, NULL);
    const char *cname;
    json_t *kinds;
    int rc = 0;

    if (!json_is_object(probes)) {
        rc = bad(diag, "annotation %s: not a JSON object", WEBHOOK_A_PROBES);
        goto out;
    }
    json_object_foreach(probes, cname, kinds)
    {
        size_t i;
        json_t *ct;

        if (!json_is_object(kinds)) {
            rc = bad(diag, "annotation %s: container %.64s: not a JSON object", WEBHOOK_A_PROBES,
                     cname);
            goto out;
        }
        json_array_foreach(json_object_get(spec, "containers"), i, ct)
        {
            const char *n = json_string_value(json_object_get(ct, "name"));
            const char *kind, *handler;
            json_t *orig, *hv;

            if (!n || strcmp(n, cname) != 0)
                continue;
            json_object_foreach(kinds, kind, orig)
            {
                json_t *probe = json_object_get(ct, kind);
                bool known = false;

                handler = json_object_size(orig) == 1 ? json_object_iter_key(json_object_iter(orig))
                                                      : NULL;
                for (int h = 0; handler && h < 3; h++)
                    known |= strcmp(handler, probe_handlers[h]) == 0;
                hv = known ? json_object_get(orig, handler) : NULL;
                if (!json_is_object(hv)) {
                    rc = bad(diag,
                             "annotation %s: container %.64s %.32s: not {\"httpGet\"|"
                             "\"tcpSocket\"|\"grpc\": {...}}",
                             WEBHOOK_A_PROBES, cname, kind);
                    goto out;
                }
                if (!json_is_object(probe))
                    continue;
                json_object_del(probe, "httpGet");
                if (json_object_set(probe, handler, hv) < 0) {
                    rc = -ENOMEM;
                    goto out;
                }
            }
        }
    }
out:
    json_decref(probes);
    return rc;
}

/* The member a "created" entry names: "volumes=null" -> "volumes". */
static const char *base_key(const char *entry)
{
    static const char *const keys[] = {"initContainers", "volumes", "annotations", "metadata"};

    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        if (!strncmp(entry, keys[i], strlen(keys[i])))
            return keys[i];
    return entry;
}

/* Remove (or reset to null) parent's member named by a "created" entry, if empty. */
static int drop_created(json_t *parent, const char *entry, bool empty)
{
    const char *key = base_key(entry);

    if (!empty || !json_is_object(parent))
        return 0;
    if (strstr(entry, "=null"))
        return json_object_set_new(parent, key, json_null()) < 0 ? -ENOMEM : 0;
    json_object_del(parent, key);
    return 0;
}

int webhook_pod_uninject(const json_t *pod, json_t **out, struct diag *diag)
{
    json_t *copy = NULL, *st = NULL, *meta, *annots, *spec;
    const char *text, *k;
    size_t i;
    json_t *v;
    int rc = 0;

    if (!json_is_object(pod))
        return bad(diag, "not an object");
    copy = json_deep_copy(pod);
    if (!copy)
        return -ENOMEM;
    meta = json_object_get(copy, "metadata");
    annots = json_object_get(meta, "annotations");
    spec = json_object_get(copy, "spec");
    text = json_string_value(json_object_get(annots, WEBHOOK_A_STATUS));
    if (!text)
        goto done;
    st = json_loads(text, 0, NULL);
    if (!json_is_object(st) || !string_list(json_object_get(st, "initContainers")) ||
        !string_list(json_object_get(st, "containers")) ||
        !string_list(json_object_get(st, "volumes")) ||
        !string_list(json_object_get(st, "annotations")) ||
        !string_list(json_object_get(st, "created"))) {
        rc = bad(diag, "annotation %s: not what injection writes", WEBHOOK_A_STATUS);
        goto out;
    }
    if (!json_is_object(spec)) {
        rc = bad(diag, "spec: missing");
        goto out;
    }
    remove_named(json_object_get(spec, "initContainers"), json_object_get(st, "initContainers"));
    remove_named(json_object_get(spec, "containers"), json_object_get(st, "containers"));
    remove_named(json_object_get(spec, "volumes"), json_object_get(st, "volumes"));
    if (str_in(json_object_get(st, "annotations"), WEBHOOK_A_PROBES) &&
        json_is_string(json_object_get(annots, WEBHOOK_A_PROBES)) &&
        (rc = restore_probes(spec, json_string_value(json_object_get(annots, WEBHOOK_A_PROBES)),
                             diag)) < 0)
        goto out;
    json_array_foreach(json_object_get(st, "annotations"), i, v)
    {
        json_object_del(annots, json_string_value(v));
    }
    json_object_del(annots, WEBHOOK_A_STATUS);
    /* Parents we created go again once empty; metadata last, as it holds the annotations. */
    json_array_foreach(json_object_get(st, "created"), i, v)
    {
        k = json_string_value(v);
        if (!strncmp(k, "initContainers", 14) || !strncmp(k, "volumes", 7))
            rc = drop_created(spec, k, json_array_size(json_object_get(spec, base_key(k))) == 0);
        else if (!strncmp(k, "annotations", 11))
            rc = drop_created(meta, k, json_object_size(annots) == 0);
        if (rc < 0)
            goto out;
    }
    json_array_foreach(json_object_get(st, "created"), i, v)
    {
        k = json_string_value(v);
        if (!strncmp(k, "metadata", 8) &&
            (rc = drop_created(copy, k, json_object_size(meta) == 0)) < 0)
            goto out;
    }
done:
    *out = copy;
    copy = NULL;
out:
    json_decref(st);
    json_decref(copy);
    return rc;
}
