/*
 * event.c - core v1 Events with client-go's correlation (the event recorder).
 *
 * Every distinct event (source, involved object with its uid, type, reason, message) seen
 * within window_ms is remembered in a fixed table of cache_size entries. The first occurrence
 * is POSTed as a new Event named "<object>.<hex nanoseconds>"; a repeat within the window is a
 * merge PATCH of that Event's count and lastTimestamp. One request per entry is in flight at a
 * time: repeats that arrive meanwhile are folded into one PATCH sent when it completes. A PATCH
 * answered 404 (the Event expired on the server) re-creates it under a new name with the count
 * reached so far. When the table is full the least recently used entry without a request in
 * flight is forgotten.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "kube/kube_int.h"

static const struct kube_resource event_res = {"", "v1", "events", true};

struct kube_recorder;

struct rec_entry {
    struct kube_recorder *r;
    char *key;        /* correlation key; NULL: free slot */
    char *ns;         /* the Event's namespace */
    char *name;       /* the Event's name, once created */
    json_t *event;    /* the Event as created (to re-create it after a 404) */
    unsigned count;   /* occurrences so far */
    char last[32];    /* lastTimestamp of the latest occurrence */
    uint64_t last_ms; /* loop time of the latest occurrence */
    bool created;     /* the server has it (as far as we know) */
    bool dirty;       /* occurrences not yet written */
    struct kube_call *call;
};

struct kube_recorder {
    struct kube_client *c;
    char *component, *instance;
    unsigned window_ms;
    size_t n;
    struct rec_entry *e;
    uint64_t seq;
    struct kube_recorder_stats st;
};

static void entry_clear(struct rec_entry *e)
{
    free(e->key);
    free(e->ns);
    free(e->name);
    json_decref(e->event);
    e->key = e->ns = e->name = NULL;
    e->event = NULL;
    e->count = 0;
    e->created = e->dirty = false;
}

static void time_now(char *out, size_t outlen)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Set obj[name] to the string val unless val is NULL or empty. Returns 0 or -ENOMEM. */
static int set_opt(json_t *obj, const char *name, const char *val)
{
    if (!val || !*val)
        return 0;
    return json_object_set_new(obj, name, json_string(val)) ? -ENOMEM : 0;
}

static uint64_t loop_ms(const struct kube_recorder *r)
{
    return uv_now(kube_client_loop(r->c));
}

int kube_recorder_new(struct kube_client *c, const struct kube_recorder_opts *opts,
                      struct kube_recorder **out)
{
    struct kube_recorder *r;

    if (!c || !opts || !opts->component || !*opts->component)
        return -EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->c = c;
    r->n = opts->cache_size ? opts->cache_size : 256;
    r->window_ms = opts->window_ms ? opts->window_ms : 600000;
    r->component = strdup(opts->component);
    r->instance = opts->instance ? strdup(opts->instance) : NULL;
    r->e = calloc(r->n, sizeof(*r->e));
    if (!r->component || (opts->instance && !r->instance) || !r->e) {
        free(r->component);
        free(r->instance);
        free(r->e);
        free(r);
        return -ENOMEM;
    }
    for (size_t i = 0; i < r->n; i++)
        r->e[i].r = r;
    *out = r;
    return 0;
}

void kube_recorder_free(struct kube_recorder *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        kube_call_cancel(r->e[i].call);
        entry_clear(&r->e[i]);
    }
    free(r->e);
    free(r->component);
    free(r->instance);
    free(r);
}

void kube_recorder_stats(const struct kube_recorder *r, struct kube_recorder_stats *out)
{
    *out = r->st;
}

static int entry_write(struct rec_entry *e);

static void on_sent(void *arg, int err, long status, json_t *body)
{
    struct rec_entry *e = arg;
    struct kube_recorder *r = e->r;
    bool patch = e->created;
    int rc = kube_result_err(err, status, body);

    e->call = NULL;
    if (!rc) {
        if (patch)
            r->st.patched++;
        else
            r->st.created++;
        e->created = true;
    } else if (patch && rc == ERR_NOTFOUND) {
        /* Expired or deleted on the server: create it again, with the count so far. */
        e->created = false;
        e->dirty = true;
    } else {
        r->st.failed++;
        log_warn("msg=\"cannot %s event\" namespace=%s name=%s reason=\"%s\" error=\"%s\"",
                 patch ? "update" : "create", e->ns, e->name,
                 json_string_value(json_object_get(e->event, "reason")),
                 kube_status_message(body)[0] ? kube_status_message(body) : err_str(rc));
        /* A repeat creates a new Event, whatever became of this one. */
        if (!patch) {
            entry_clear(e);
            return;
        }
    }
    if (e->dirty)
        IGNORE_RESULT(entry_write(e)); /* a failure is counted and logged there */
}

/*
 * Write e's state: POST the Event when the server does not have it, else PATCH its count.
 * Returns 0, or the error that kept the request from starting (then e is forgotten).
 */
static int entry_write(struct rec_entry *e)
{
    struct kube_recorder *r = e->r;
    char path[1024];
    json_t *body;
    int rc;

    e->dirty = false;
    if (!e->created) {
        struct timespec ts;
        char name[300];
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(
            name, sizeof(name), "%s.%llx",
            json_string_value(json_object_get(json_object_get(e->event, "involvedObject"), "name")),
            (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec +
                r->seq++);
        free(e->name);
        e->name = strdup(name);
        if (!e->name ||
            json_object_set_new(json_object_get(e->event, "metadata"), "name", json_string(name)) ||
            json_object_set_new(e->event, "count", json_integer(e->count)) ||
            json_object_set_new(e->event, "lastTimestamp", json_string(e->last))) {
            rc = -ENOMEM;
            goto fail;
        }
        rc = kube_path(&event_res, e->ns, NULL, NULL, path, sizeof(path));
        if (!rc)
            rc = kube_request(r->c, "POST", path, e->event, NULL, on_sent, e, &e->call);
        if (rc)
            goto fail;
        return 0;
    }
    body = json_pack("{s:I,s:s}", "count", (json_int_t)e->count, "lastTimestamp", e->last);
    rc = body ? kube_path(&event_res, e->ns, e->name, NULL, path, sizeof(path)) : -ENOMEM;
    if (!rc)
        rc = kube_request(r->c, "PATCH", path, body, "application/merge-patch+json", on_sent, e,
                          &e->call);
    json_decref(body);
    if (!rc)
        return 0;
fail:
    r->st.failed++;
    log_warn("msg=\"cannot send event\" namespace=%s error=\"%s\"", e->ns, err_str(rc));
    entry_clear(e);
    return rc;
}

/* The slot for key: its entry when remembered within the window, else a free or reusable one. */
static struct rec_entry *slot_for(struct kube_recorder *r, const char *key, uint64_t now,
                                  bool *found)
{
    struct rec_entry *victim = NULL;

    *found = false;
    for (size_t i = 0; i < r->n; i++) {
        struct rec_entry *e = &r->e[i];
        if (e->key && strcmp(e->key, key) == 0) {
            if (now - e->last_ms < r->window_ms) {
                *found = true;
                return e;
            }
            if (e->call)
                return NULL; /* expired, but still being written: give up this one */
            entry_clear(e);
            return e;
        }
    }
    for (size_t i = 0; i < r->n; i++) {
        struct rec_entry *e = &r->e[i];
        if (!e->key)
            return e;
        if (!e->call && (!victim || e->last_ms < victim->last_ms))
            victim = e;
    }
    if (victim)
        entry_clear(victim);
    return victim;
}

int kube_recorder_emit(struct kube_recorder *r, const struct kube_object_ref *ref,
                       enum kube_event_level level, const char *reason, const char *message)
{
    const char *type = level == KUBE_EVENT_WARNING ? "Warning" : "Normal";
    const char *ns;
    char *key = NULL;
    struct rec_entry *e;
    uint64_t now;
    bool found;
    int rc = 0;

    if (!r || !ref || !ref->kind || !*ref->kind || !ref->name || !*ref->name || !reason ||
        !*reason || !message)
        return -EINVAL;
    ns = ref->ns && *ref->ns ? ref->ns : "default";
    if (asprintf(&key, "%s\037%s\037%s\037%s\037%s\037%s\037%s\037%s\037%s\037%s", r->component,
                 r->instance ? r->instance : "", ref->api_version ? ref->api_version : "",
                 ref->kind, ns, ref->name, ref->uid ? ref->uid : "", type, reason, message) < 0)
        return -ENOMEM;
    now = loop_ms(r);
    e = slot_for(r, key, now, &found);
    if (!e) {
        r->st.dropped++;
        rc = -EBUSY;
        goto out;
    }
    e->last_ms = now;
    time_now(e->last, sizeof(e->last));
    if (found) {
        e->count++;
        e->dirty = true;
        if (!e->call)
            rc = entry_write(e);
        goto out;
    }
    e->ns = strdup(ns);
    e->event = json_pack("{s:s,s:s,s:{s:s},s:{s:s,s:s},s:s,s:s,s:s,s:{s:s},s:s,s:s}", "apiVersion",
                         "v1", "kind", "Event", "metadata", "namespace", ns, "involvedObject",
                         "kind", ref->kind, "name", ref->name, "reason", reason, "message", message,
                         "type", type, "source", "component", r->component, "firstTimestamp",
                         e->last, "reportingComponent", r->component);
    if (!e->ns || !e->event ||
        set_opt(json_object_get(e->event, "involvedObject"), "apiVersion", ref->api_version) ||
        set_opt(json_object_get(e->event, "involvedObject"), "namespace", ref->ns) ||
        set_opt(json_object_get(e->event, "involvedObject"), "uid", ref->uid) ||
        set_opt(json_object_get(e->event, "involvedObject"), "resourceVersion",
                ref->resource_version) ||
        set_opt(e->event, "reportingInstance", r->instance)) {
        entry_clear(e);
        rc = -ENOMEM;
        goto out;
    }
    e->key = key;
    key = NULL;
    e->count = 1;
    rc = entry_write(e);
out:
    free(key);
    return rc;
}

int kube_object_ref_of(const json_t *obj, const char *api_version, const char *kind,
                       struct kube_object_ref *out)
{
    const json_t *md = json_object_get(obj, "metadata");
    struct kube_object_ref ref;

    memset(&ref, 0, sizeof(ref));
    ref.api_version =
        api_version ? api_version : json_string_value(json_object_get(obj, "apiVersion"));
    ref.kind = kind ? kind : json_string_value(json_object_get(obj, "kind"));
    ref.name = json_string_value(json_object_get(md, "name"));
    ref.ns = json_string_value(json_object_get(md, "namespace"));
    ref.uid = json_string_value(json_object_get(md, "uid"));
    ref.resource_version = json_string_value(json_object_get(md, "resourceVersion"));
    if (!ref.api_version || !ref.kind || !ref.name || !*ref.name)
        return ERR_INVALID;
    *out = ref;
    return 0;
}
