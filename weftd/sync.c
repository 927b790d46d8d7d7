/*
 * sync.c - from the cluster to compiled documents and status.
 *
 * One informer per watched resource; its handler only enqueues "<watch>|<key>". The reconcile
 * of a key reads the informer's cache (level-based: the latest state, whatever events led
 * there) and upserts or deletes it in the mesh model, then schedules a compile pass (coalesced:
 * one pass per loop turn however many keys were processed). The compile pass compiles the
 * proxies the model reports dirty and keeps their documents. Custom resources whose status may
 * have changed are remembered; the leader writes their conditions through /status, only when
 * they differ from what is stored, and after a successful write emits an Event for each
 * condition that changed (see condition_events).
 *
 * Optional resources (the SMI TrafficSplit CRD) are watched only while the API server serves
 * them: discovery (GET /apis/<group>/<version>) is asked every OPTIONAL_PROBE_MS, the informer
 * starts when the resource appears and stops (its objects leave the model) when it goes; each
 * change is logged once. weftd's own namespace missing is reported once, clearly: without it
 * there is no leader Lease and no CA Secret.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "weftd/weftd_int.h"

struct watch_def {
    const char *kind; /* as mesh_model_delete names it */
    const char *api_version;
    const char *obj_kind;
    struct kube_resource res;
    bool optional;
    bool has_status; /* a Weft custom resource whose conditions weftd owns */
};

/* clang-format off */
static const struct watch_def defs[] = {
    {"Namespace", "v1", "Namespace", {"", "v1", "namespaces", false}, false, false},
    {"Service", "v1", "Service", {"", "v1", "services", true}, false, false},
    {"EndpointSlice", "discovery.k8s.io/v1", "EndpointSlice",
     {"discovery.k8s.io", "v1", "endpointslices", true}, false, false},
    {"Pod", "v1", "Pod", {"", "v1", "pods", true}, false, false},
    {"ServiceAccount", "v1", "ServiceAccount", {"", "v1", "serviceaccounts", true}, false, false},
    {"TrafficSplit", "mesh.weft.dev/v1alpha1", "TrafficSplit",
     {"mesh.weft.dev", "v1alpha1", "trafficsplits", true}, false, true},
    {"AccessPolicy", "mesh.weft.dev/v1alpha1", "AccessPolicy",
     {"mesh.weft.dev", "v1alpha1", "accesspolicies", true}, false, true},
    {"RetryPolicy", "mesh.weft.dev/v1alpha1", "RetryPolicy",
     {"mesh.weft.dev", "v1alpha1", "retrypolicies", true}, false, true},
    {"TrafficSplit.split.smi-spec.io", "split.smi-spec.io/v1alpha4", "TrafficSplit",
     {"split.smi-spec.io", "v1alpha4", "trafficsplits", true}, true, true},
};
/* clang-format on */

struct status_call {
    struct weftd *d;
    size_t watch;
    char *ns, *name;
    json_t *events; /* [[warning, reason, message], ...] for the conditions being written */
};

#define OPTIONAL_PROBE_MS 5000

/* sync.c's state beside struct weftd (d->sync), defined here only. */
struct weftd_sync {
    uv_idle_t compile;
    uint64_t compile_wanted_ms; /* uv_now when the pending compile pass was asked for, 0 none */
    uv_timer_t retry; /* failed status writes (and failed compiles) are tried again after 1 s */
    bool recompile;   /* a compile failed: the retry runs a compile pass */
    uv_timer_t probe; /* optional resources: is each served? */
    struct kube_call *probes[WEFTD_MAX_WATCHES];
    bool absent_logged[WEFTD_MAX_WATCHES]; /* "not served" said once per absence */
    bool ns_missing;                       /* weftd's namespace reported missing */
    struct kube_recorder *events;
    int closed;
    bool started;
};

static void status_retry_later(struct weftd *d, size_t watch, const char *ns, const char *name);

static void on_event(void *arg, enum kube_event_type type, const char *key, const json_t *obj)
{
    struct weftd_watch *w = arg;
    char qkey[1024];
    (void)type;
    (void)obj;
    snprintf(qkey, sizeof(qkey), "%zu|%s", (size_t)(w - w->d->watches), key);
    if (wq_add(w->d->queue, qkey))
        log_error("msg=\"cannot queue\" key=%s", qkey);
}

static void split_key(const char *key, char *ns, size_t nslen, char *name, size_t namelen)
{
    const char *slash = strchr(key, '/');
    if (slash) {
        snprintf(ns, nslen, "%.*s", (int)(slash - key), key);
        snprintf(name, namelen, "%s", slash + 1);
    } else {
        ns[0] = '\0';
        snprintf(name, namelen, "%s", key);
    }
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- status */

/*
 * The Events that writing conditions next over prev calls for, as a new array of
 * [warning, reason, message]: a condition whose status or reason changed (Warning when it is
 * now False, Normal when True), or which stays False with another message. A resource's first
 * conditions only report what is not True. Programmed False NotAccepted is left out: it only
 * repeats the Accepted condition's event. NULL when out of memory.
 */
static json_t *condition_events(const json_t *prev, const json_t *next)
{
    json_t *out = json_array(), *c, *p;
    size_t i, j;

    if (!out)
        return NULL;
    json_array_foreach(next, i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));
        const char *st = json_string_value(json_object_get(c, "status"));
        const char *reason = json_string_value(json_object_get(c, "reason"));
        const char *msg = json_string_value(json_object_get(c, "message"));
        const json_t *old = NULL;
        bool ok, emit;

        if (!type || !st || !reason || !*reason)
            continue;
        ok = strcmp(st, "True") == 0;
        if (!ok && strcmp(type, "Programmed") == 0 &&
            (strcmp(reason, "NotAccepted") == 0 || strcmp(reason, "Pending") == 0))
            continue;
        json_array_foreach(prev, j, p)
        {
            const char *pt = json_string_value(json_object_get(p, "type"));
            if (pt && strcmp(pt, type) == 0)
                old = p;
        }
        if (!old) {
            emit = !ok;
        } else {
            const char *os = json_string_value(json_object_get(old, "status"));
            const char *orr = json_string_value(json_object_get(old, "reason"));
            const char *om = json_string_value(json_object_get(old, "message"));
            emit = !os || strcmp(os, st) != 0 || !orr || strcmp(orr, reason) != 0 ||
                   (!ok && (!om || !msg || strcmp(om, msg) != 0));
        }
        if (emit && json_array_append_new(out, json_pack("[b,s,s]", !ok, reason, msg ? msg : "")))
            goto oom;
    }
    return out;
oom:
    json_decref(out);
    return NULL;
}

/*
 * status.split of a Weft TrafficSplit (kubectl's SPLIT column): a new JSON string, or NULL for
 * other kinds and when the model has no such split.
 */
static json_t *split_summary(struct weftd *d, size_t watch, const char *ns, const char *name)
{
    char buf[4096];
    int rc;

    if (strcmp(defs[watch].kind, "TrafficSplit") != 0)
        return NULL;
    rc = mesh_model_split_summary(d->model, ns, name, buf, sizeof(buf));
    if (rc == -ENOSPC)
        snprintf(buf, sizeof(buf), "(too many backends to list)");
    else if (rc)
        return NULL;
    return json_string(buf);
}

/*
 * The conditions weftd wants on the resource: the model's, with Programmed judged by the
 * proxies' acknowledgements (programmed.c). prev: the stored conditions. 0 or a negative code.
 */
static int desired_conditions(struct weftd *d, size_t watch, const char *ns, const char *name,
                              const json_t *prev, const char *now, json_t **out)
{
    json_t *conds = NULL;
    int rc = mesh_model_status(d->model, defs[watch].kind, ns, name, prev, now, &conds);

    if (!rc)
        rc = weftd_programmed_overlay(d, watch, defs[watch].kind, ns, name, prev, now, conds);
    if (rc) {
        json_decref(conds);
        return rc;
    }
    *out = conds;
    return 0;
}

/* Whether status st already holds conds and (when not NULL) the split summary. */
static bool status_holds(const json_t *st, const json_t *conds, const json_t *summary)
{
    return json_equal(conds, json_object_get(st, "conditions")) &&
           (!summary || json_equal(summary, json_object_get(st, "split")));
}

static int mutate_status(void *arg, json_t *obj)
{
    struct status_call *sc = arg;
    json_t *st = json_object_get(obj, "status"), *conds = NULL, *summary;
    char now[40];
    time_t t = time(NULL);
    struct tm tm;
    int rc;

    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    rc = desired_conditions(sc->d, sc->watch, sc->ns, sc->name, json_object_get(st, "conditions"),
                            now, &conds);
    if (rc)
        return rc;
    summary = split_summary(sc->d, sc->watch, sc->ns, sc->name);
    if (status_holds(st, conds, summary)) {
        json_decref(conds);
        json_decref(summary);
        return ERR_EXISTS; /* nothing to write */
    }
    json_decref(sc->events);
    sc->events = condition_events(json_object_get(st, "conditions"), conds);
    if (!sc->events) {
        json_decref(conds);
        json_decref(summary);
        return -ENOMEM;
    }
    if (!json_is_object(st)) {
        st = json_object();
        json_object_set_new(obj, "status", st);
    }
    json_object_set_new(st, "conditions", conds);
    if (summary)
        json_object_set_new(st, "split", summary);
    return 0;
}

/* Emit the Events of sc's conditions, about obj (the object as written). */
static void emit_events(struct status_call *sc, const json_t *obj)
{
    struct weftd_sync *st = sc->d->sync;
    const struct watch_def *def = &defs[sc->watch];
    struct kube_object_ref ref;
    json_t *ev;
    size_t i;

    if (!st || !st->events || !json_array_size(sc->events) ||
        kube_object_ref_of(obj, def->api_version, def->obj_kind, &ref))
        return;
    json_array_foreach(sc->events, i, ev)
    {
        bool warning = json_is_true(json_array_get(ev, 0));
        const char *reason = json_string_value(json_array_get(ev, 1));
        const char *msg = json_string_value(json_array_get(ev, 2));
        int rc = kube_recorder_emit(st->events, &ref,
                                    warning ? KUBE_EVENT_WARNING : KUBE_EVENT_NORMAL, reason, msg);
        if (rc)
            log_warn("msg=\"cannot emit event\" kind=%s namespace=%s name=%s reason=%s "
                     "error=\"%s\"",
                     def->kind, sc->ns, sc->name, reason, err_str(rc));
        else
            log_info("msg=event kind=%s namespace=%s name=%s type=%s reason=%s", def->kind, sc->ns,
                     sc->name, warning ? "Warning" : "Normal", reason);
    }
}

static void status_done(void *arg, int err, long status, json_t *body)
{
    struct status_call *sc = arg;
    int rc = kube_result_err(err, status, body);
    if (!rc) {
        sc->d->m.status[WEFTD_STATUS_WRITTEN]++;
        emit_events(sc, body);
    } else if (rc == ERR_EXISTS) {
        sc->d->m.status[WEFTD_STATUS_UNCHANGED]++;
    } else if (rc == ERR_NOTFOUND) {
        sc->d->m.status[WEFTD_STATUS_NOT_FOUND]++;
    } else {
        sc->d->m.status[rc == ERR_CONFLICT ? WEFTD_STATUS_CONFLICT : WEFTD_STATUS_ERROR]++;
        log_warn("msg=\"status write failed, will retry\" kind=%s namespace=%s name=%s "
                 "error=\"%s\"",
                 defs[sc->watch].kind, sc->ns, sc->name,
                 kube_status_message(body)[0] ? kube_status_message(body) : err_str(rc));
        status_retry_later(sc->d, sc->watch, sc->ns, sc->name);
    }
    json_decref(sc->events);
    free(sc->ns);
    free(sc->name);
    free(sc);
}

static void write_status(struct weftd *d, size_t watch, const char *ns, const char *name)
{
    struct status_call *sc = calloc(1, sizeof(*sc));
    const json_t *cur, *cur_st;
    char key[600], now[40];
    json_t *conds = NULL, *summary = NULL;
    time_t t = time(NULL);
    struct tm tm;

    if (!sc)
        return;
    /* Skip the request when the stored status already says it. */
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    cur = kube_informer_get(d->watches[watch].inf, key);
    cur_st = json_object_get(cur, "status");
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (cur &&
        desired_conditions(d, watch, ns, name, json_object_get(cur_st, "conditions"), now,
                           &conds) == 0 &&
        status_holds(cur_st, conds, summary = split_summary(d, watch, ns, name))) {
        json_decref(conds);
        json_decref(summary);
        free(sc);
        d->m.status[WEFTD_STATUS_UNCHANGED]++;
        return;
    }
    json_decref(conds);
    json_decref(summary);
    sc->d = d;
    sc->watch = watch;
    sc->ns = strdup(ns);
    sc->name = strdup(name);
    if (!sc->ns || !sc->name ||
        kube_update_retry(d->kube, &defs[watch].res, ns, name, "status", mutate_status, sc,
                          status_done, sc)) {
        free(sc->ns);
        free(sc->name);
        free(sc);
    }
}

static void flush_status(struct weftd *d)
{
    const char *k;
    json_t *v, *done = json_array();
    size_t i;

    if (!d->leading) {
        json_decref(done);
        return;
    }
    json_object_foreach(d->status_pending, k, v)
    {
        char ns[300], name[300];
        size_t watch = (size_t)json_integer_value(v);
        split_key(k + strcspn(k, "|") + 1, ns, sizeof(ns), name, sizeof(name));
        write_status(d, watch, ns, name);
        json_array_append_new(done, json_string(k));
    }
    json_array_foreach(done, i, v) json_object_del(d->status_pending, json_string_value(v));
    json_decref(done);
}

void weftd_sync_leading(struct weftd *d)
{
    /* A new leader owns every resource's status: look at all of them once. */
    weftd_sync_status_all(d);
}

void weftd_sync_status_all(struct weftd *d)
{
    for (size_t i = 0; i < d->nwatches; i++) {
        const char *k;
        const json_t *o;
        if (!defs[i].has_status || !d->watches[i].inf)
            continue;
        json_object_foreach((json_t *)kube_informer_cache(d->watches[i].inf), k, o)
        {
            char qk[700];
            snprintf(qk, sizeof(qk), "%zu|%s", i, k);
            json_object_set_new(d->status_pending, qk, json_integer((json_int_t)i));
        }
    }
    flush_status(d);
}

/* ---------------------------------------------------------------- compile */

static void on_retry(uv_timer_t *t);

static void compile_pass(struct weftd *d)
{
    json_t *dirty = NULL, *k;
    size_t i;
    double t0 = now_s();
    bool failed = false;

    if (mesh_model_dirty_proxies(d->model, &dirty)) {
        log_error("msg=\"cannot list dirty proxies: out of memory\"");
        return;
    }
    weftd_programmed_pass(d);
    json_array_foreach(dirty, i, k)
    {
        const char *key = json_string_value(k);
        char ns[300], name[300];
        json_t *doc = NULL;
        struct mesh_compile_info info;
        int rc;

        double t1 = now_s();

        split_key(key, ns, sizeof(ns), name, sizeof(name));
        rc = mesh_compile_pod_ex(d->model, ns, name, &doc, &info);
        d->m.compiles++;
        weftd_hist_observe(&d->m.compile_seconds, now_s() - t1);
        if (rc == ERR_NOTFOUND) {
            json_object_del(d->docs, key);
            weftd_stream_forget(d, key);
            continue;
        }
        if (rc) {
            /* nothing partial: the last good document (if any) stays; the pod stays dirty */
            log_error("msg=\"compile failed\" pod=%s error=\"%s\" kept=%s", key, err_str(rc),
                      json_object_get(d->docs, key) ? "last-good" : "none");
            weftd_programmed_doc(d, key, NULL); /* the last good one is no longer current */
            failed = true;
            continue;
        }
        if (info.changed) {
            d->m.compiles_changed++;
            log_debug("msg=\"proxy config changed\" pod=%s", key);
        }
        json_object_set_new(d->docs, key, doc);
        weftd_stream_doc(d, key, doc);
    }
    if (json_array_size(dirty))
        weftd_hist_observe(&d->m.compile_pass_seconds, now_s() - t0);
    json_decref(dirty);
    if (failed && d->sync) {
        d->sync->recompile = true;
        if (!uv_is_active((uv_handle_t *)&d->sync->retry))
            uv_timer_start(&d->sync->retry, on_retry, 1000, 0);
    }
    flush_status(d);
}

/*
 * A compile pass runs once the work queue is empty, or when it has waited this long behind a
 * queue that keeps filling (before the informers have synced the stream is closed and documents
 * only need to be right at the end, so the wait is longer). Compiling after every reconcile
 * instead recompiles the same callers once per endpoint: with 10,000 pods, 1,000 to a
 * namespace, a start-up compiled some ten million documents.
 */
#define COMPILE_DEFER_MS 50
#define COMPILE_DEFER_UNSYNCED_MS 1000

static void on_compile(uv_idle_t *h)
{
    struct weftd *d = h->data;
    uint64_t now = uv_now(d->loop);
    uint64_t bound = weftd_synced(d) ? COMPILE_DEFER_MS : COMPILE_DEFER_UNSYNCED_MS;

    if (wq_len(d->queue) > 0 && now - d->sync->compile_wanted_ms < bound)
        return; /* the idle handle stays active: asked again after the next reconcile */
    uv_idle_stop(h);
    d->sync->compile_wanted_ms = 0;
    compile_pass(d);
}

static void compile_soon(struct weftd *d)
{
    if (!d->sync->compile_wanted_ms)
        d->sync->compile_wanted_ms = uv_now(d->loop);
    uv_idle_start(&d->sync->compile, on_compile);
}

static void on_retry(uv_timer_t *t)
{
    struct weftd *d = t->data;

    if (d->sync->recompile) {
        d->sync->recompile = false;
        compile_pass(d); /* flushes the status too */
        return;
    }
    flush_status(d);
}

static void status_retry_later(struct weftd *d, size_t watch, const char *ns, const char *name)
{
    char qk[700];
    struct weftd_sync *st = d->sync;
    snprintf(qk, sizeof(qk), "%zu|%s/%s", watch, ns, name);
    json_object_set_new(d->status_pending, qk, json_integer((json_int_t)watch));
    if (st && !uv_is_active((uv_handle_t *)&st->retry))
        uv_timer_start(&st->retry, on_retry, 1000, 0);
}

/* ---------------------------------------------------------------- reconcile */

/* weftd's namespace does not exist (or was deleted): say so once. */
static void namespace_missing(struct weftd *d)
{
    struct weftd_sync *st = d->sync;
    if (st->ns_missing)
        return;
    st->ns_missing = true;
    log_error("msg=\"namespace does not exist: no leader Lease, no CA Secret and no certificates "
              "until it is created (kubectl create namespace %s); waiting for it\" namespace=%s",
              d->opts.namespace, d->opts.namespace);
}

static void on_namespaces_synced(void *arg)
{
    struct weftd_watch *w = arg;
    if (!kube_informer_get(w->inf, w->d->opts.namespace))
        namespace_missing(w->d);
}

static struct wq_result reconcile(void *arg, const char *qkey)
{
    struct weftd *d = arg;
    struct wq_result res = {WQ_DONE, 0};
    char *end;
    size_t wi = strtoul(qkey, &end, 10);
    const char *key = *end == '|' ? end + 1 : NULL;
    const struct watch_def *def;
    const json_t *obj;
    double t0 = now_s();
    int rc = 0;

    if (!key || wi >= d->nwatches) {
        res.outcome = WQ_TERMINAL;
        return res;
    }
    def = &defs[wi];
    d->m.reconciles++;
    obj = kube_informer_get(d->watches[wi].inf, key);
    if (obj) {
        /* Listed objects carry no apiVersion/kind: the model recognises objects by them. */
        json_t *o = json_copy((json_t *)obj);
        if (!o) {
            d->watches[wi].reconcile_errors++;
            res.outcome = WQ_ERROR;
            return res;
        }
        json_object_set_new(o, "apiVersion", json_string(def->api_version));
        json_object_set_new(o, "kind", json_string(def->obj_kind));
        rc = mesh_model_upsert(d->model, o);
        if (strcmp(def->kind, "Namespace") == 0) {
            weftd_ca_namespace(d, o);
            if (strcmp(key, d->opts.namespace) == 0 && d->sync->ns_missing) {
                d->sync->ns_missing = false;
                log_info("msg=\"namespace created; going on\" namespace=%s", d->opts.namespace);
            }
        }
        json_decref(o);
        if (strcmp(def->kind, "Pod") == 0)
            weftd_stream_pod(d, key, obj);
        if (def->has_status && rc == 0)
            weftd_programmed_resource(d, wi, key, obj);
    } else {
        char ns[300], name[300];
        split_key(key, ns, sizeof(ns), name, sizeof(name));
        if (strcmp(def->kind, "Namespace") == 0 && strcmp(key, d->opts.namespace) == 0)
            namespace_missing(d);
        rc = mesh_model_delete(d->model, def->kind, ns, name);
        if (rc == ERR_NOTFOUND)
            rc = 0;
        if (def->has_status)
            weftd_programmed_resource(d, wi, key, NULL);
    }
    if (rc == -ENOMEM) {
        d->watches[wi].reconcile_errors++;
        res.outcome = WQ_ERROR;
    } else if (rc && rc != ERR_UNSUPPORTED) {
        d->watches[wi].reconcile_errors++;
        log_warn("msg=\"object not taken into the model\" kind=%s key=%s error=\"%s\"", def->kind,
                 key, err_str(rc));
        res.outcome = WQ_TERMINAL;
    }
    /* Any change may move any custom resource's references: their status is re-evaluated. */
    for (size_t i = 0; i < d->nwatches; i++) {
        const char *k;
        const json_t *cr;
        if (!defs[i].has_status || !d->watches[i].inf)
            continue;
        if (i == wi && obj) {
            char qk[700];
            snprintf(qk, sizeof(qk), "%zu|%s", i, key);
            json_object_set_new(d->status_pending, qk, json_integer((json_int_t)i));
            continue;
        }
        if (i == wi || !defs[wi].has_status) {
            /* cluster objects change references: recheck all custom resources, cheaply */
            json_object_foreach((json_t *)kube_informer_cache(d->watches[i].inf), k, cr)
            {
                char qk[700];
                snprintf(qk, sizeof(qk), "%zu|%s", i, k);
                json_object_set_new(d->status_pending, qk, json_integer((json_int_t)i));
            }
        }
    }
    weftd_hist_observe(&d->m.reconcile_seconds, now_s() - t0);
    compile_soon(d);
    return res;
}

/* ---------------------------------------------------------------- optional resources */

static int watch_start(struct weftd *d, size_t i)
{
    struct weftd_watch *w = &d->watches[i];
    struct kube_informer_handlers h = {on_event, NULL, w};

    if (i == 0) /* Namespace */
        h.on_synced = on_namespaces_synced;
    return kube_informer_new(d->kube, &defs[i].res, NULL, NULL, &h, NULL, &w->inf);
}

/* The optional resource stopped being served: stop watching; its objects leave the model. */
static void watch_stop(struct weftd *d, size_t i)
{
    struct weftd_watch *w = &d->watches[i];
    json_t *keys = json_array();
    const char *k;
    const json_t *o;
    size_t j;
    json_t *v;

    json_object_foreach((json_t *)kube_informer_cache(w->inf), k, o)
    {
        if (keys)
            json_array_append_new(keys, json_string(k));
    }
    kube_informer_free(w->inf);
    w->inf = NULL;
    /* Reconciled with no informer, each key reads as deleted. */
    json_array_foreach(keys, j, v)
    {
        char qkey[1024];
        snprintf(qkey, sizeof(qkey), "%zu|%s", i, json_string_value(v));
        if (wq_add(d->queue, qkey))
            log_error("msg=\"cannot queue\" key=%s", qkey);
    }
    json_decref(keys);
}

/* Is the resource in the discovery document? */
static bool served(long status, const json_t *body, const char *plural)
{
    const json_t *r;
    size_t i;

    if (status != 200)
        return false;
    json_array_foreach(json_object_get(body, "resources"), i, r)
    {
        const char *name = json_string_value(json_object_get(r, "name"));
        if (name && strcmp(name, plural) == 0)
            return true;
    }
    return false;
}

static void on_probe(void *arg, int err, long status, json_t *body)
{
    struct weftd_watch *w = arg;
    struct weftd *d = w->d;
    struct weftd_sync *st = d->sync;
    size_t i = (size_t)(w - d->watches);
    const struct kube_resource *r = &defs[i].res;

    st->probes[i] = NULL;
    if (err || (status != 200 && status != 404))
        return; /* unknown: ask again at the next probe */
    if (served(status, body, r->plural)) {
        st->absent_logged[i] = false;
        if (w->inf)
            return;
        if (watch_start(d, i)) {
            log_error("msg=\"cannot watch\" resource=%s.%s", r->plural, r->group);
            return;
        }
        log_info("msg=\"optional resource served: watching it\" resource=%s.%s", r->plural,
                 r->group);
        return;
    }
    if (w->inf) {
        log_warn("msg=\"optional resource no longer served: its objects leave the model\" "
                 "resource=%s.%s",
                 r->plural, r->group);
        watch_stop(d, i);
    }
    if (!st->absent_logged[i]) {
        st->absent_logged[i] = true;
        log_info("msg=\"optional resource not served: its objects are ignored until its CRD "
                 "is installed\" resource=%s.%s version=%s",
                 r->plural, r->group, r->version);
    }
}

static void on_probe_tick(uv_timer_t *h)
{
    struct weftd *d = h->data;
    struct weftd_sync *st = d->sync;

    for (size_t i = 0; i < d->nwatches; i++) {
        char path[300];
        if (!defs[i].optional || st->probes[i])
            continue;
        snprintf(path, sizeof(path), "/apis/%s/%s", defs[i].res.group, defs[i].res.version);
        if (kube_request(d->kube, "GET", path, NULL, NULL, on_probe, &d->watches[i],
                         &st->probes[i]))
            st->probes[i] = NULL;
    }
}

bool weftd_sync_idle(const struct weftd *d)
{
    return d->sync && wq_len(d->queue) == 0 && !uv_is_active((uv_handle_t *)&d->sync->compile);
}

bool weftd_synced(const struct weftd *d)
{
    if (!d->nwatches)
        return false;
    for (size_t i = 0; i < d->nwatches; i++)
        if (!defs[i].optional && !kube_informer_synced(d->watches[i].inf))
            return false;
    return true;
}

void weftd_sync_event_stats(const struct weftd *d, struct kube_recorder_stats *out)
{
    const struct weftd_sync *st = d->sync;
    if (st && st->events)
        kube_recorder_stats(st->events, out);
    else
        memset(out, 0, sizeof(*out));
}

int weftd_sync_start(struct weftd *d)
{
    struct weftd_sync *st = calloc(1, sizeof(*st));
    struct kube_recorder_opts ro;
    int rc;

    if (!st)
        return -ENOMEM;
    d->sync = st;
    uv_idle_init(d->loop, &st->compile);
    st->compile.data = d;
    uv_timer_init(d->loop, &st->retry);
    st->retry.data = d;
    uv_timer_init(d->loop, &st->probe);
    st->probe.data = d;
    memset(&ro, 0, sizeof(ro));
    ro.component = "weftd";
    ro.instance = d->opts.identity;
    rc = kube_recorder_new(d->kube, &ro, &st->events);
    if (rc)
        return rc;
    rc = wq_new(NULL, &d->queue);
    if (rc)
        return rc;
    rc = wq_run(d->queue, d->loop, reconcile, d);
    if (rc)
        return rc;
    for (size_t i = 0; i < ARRAY_LEN(defs); i++) {
        struct weftd_watch *w = &d->watches[i];
        w->d = d;
        w->kind = defs[i].kind;
        w->res = defs[i].res;
        w->optional = defs[i].optional;
        d->nwatches = i + 1;
        if (w->optional)
            continue; /* on_probe_tick starts it once the resource is served */
        rc = watch_start(d, i);
        if (rc)
            return rc;
    }
    uv_timer_start(&st->probe, on_probe_tick, 0, OPTIONAL_PROBE_MS);
    st->started = true;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct weftd_sync *st = h->data;
    if (++st->closed == 3)
        free(st);
}

void weftd_sync_stop(struct weftd *d)
{
    struct weftd_sync *st = d->sync;
    for (size_t i = 0; i < d->nwatches; i++) {
        kube_informer_free(d->watches[i].inf);
        d->watches[i].inf = NULL;
    }
    d->nwatches = 0;
    wq_free(d->queue);
    d->queue = NULL;
    if (st) {
        for (size_t i = 0; i < ARRAY_LEN(st->probes); i++) {
            kube_call_cancel(st->probes[i]);
            st->probes[i] = NULL;
        }
        kube_recorder_free(st->events);
        st->events = NULL;
        uv_idle_stop(&st->compile);
        uv_timer_stop(&st->retry);
        uv_timer_stop(&st->probe);
        st->compile.data = st;
        st->retry.data = st;
        st->probe.data = st;
        uv_close((uv_handle_t *)&st->compile, on_closed);
        uv_close((uv_handle_t *)&st->retry, on_closed);
        uv_close((uv_handle_t *)&st->probe, on_closed);
        d->sync = NULL;
    }
}
