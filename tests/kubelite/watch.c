/*
 * watch.c - WATCH streams: start (initial events, replay from a resourceVersion, 410), live
 * fan-out with selector transitions, bookmarks, timeouts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"
#include "tests/kubelite/selector.h"
#include "tests/kubelite/table.h"

static void watcher_free(struct watcher *w)
{
    if (!w)
        return;
    free(w->ns);
    free(w->include_object);
    selector_free(w->labels);
    selector_free(w->fields);
    free(w);
}

static void watcher_unlink(struct kl *kl, struct watcher *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        kl->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    kl->nwatchers--;
}

static void on_conn_close(void *arg, struct http_conn *c)
{
    struct watcher *w = arg;
    (void)c;
    watcher_unlink(w->kl, w);
    watcher_free(w);
}

/* End a watch from the server side (timeout, backlog). */
static void watcher_end(struct watcher *w)
{
    struct kl *kl = w->kl;
    http_stream_end(w->conn);
    watcher_unlink(kl, w);
    watcher_free(w);
}

static bool ns_ok(const struct watcher *w, const json_t *obj)
{
    if (!w->ns)
        return true;
    return strcmp(jstr_or(json_object_get(obj, "metadata"), "namespace", ""), w->ns) == 0;
}

static bool matches(const struct watcher *w, const json_t *obj)
{
    return obj && ns_ok(w, obj) && selector_match(w->labels, obj) && selector_match(w->fields, obj);
}

/* Serialize one event for w. Returns a malloc'd line ending in "\n". */
static char *event_line(struct watcher *w, const char *type, json_t *obj)
{
    json_t *ver = kl_obj_for_version(w->rt, obj), *ev, *payload;
    char *line = NULL;
    struct buf b;

    if (!ver)
        return NULL;
    if (w->table) {
        json_t *items = json_array();
        json_array_append(items, ver);
        payload = table_build(w->rt->group, w->rt->plural, w->rt->printer_columns, items, NULL,
                              w->include_object, time(NULL));
        json_decref(items);
        json_decref(ver);
        if (!payload)
            return NULL;
    } else {
        payload = ver;
    }
    ev = json_pack("{s:s,s:o}", "type", type, "object", payload);
    if (!ev)
        return NULL;
    buf_init(&b);
    line = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (line) {
        if (buf_puts(&b, line) || buf_puts(&b, "\n")) {
            free(line);
            buf_release(&b);
            return NULL;
        }
        free(line);
        return buf_take(&b);
    }
    return NULL;
}

static int send_event(struct watcher *w, const char *type, json_t *obj)
{
    char *line = event_line(w, type, obj);
    int rc;
    if (!line)
        return -ENOMEM;
    rc = http_stream_write(w->conn, line, strlen(line));
    free(line);
    return rc;
}

static int send_bookmark(struct watcher *w, uint64_t rv, bool initial_end)
{
    char av[300], rvs[32];
    json_t *obj;
    int rc;
    char *line;
    struct buf b;

    kl_api_version(w->rt, av, sizeof(av));
    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
    obj = json_pack("{s:s,s:s,s:{s:s}}", "kind", w->rt->kind, "apiVersion", av, "metadata",
                    "resourceVersion", rvs);
    if (!obj)
        return -ENOMEM;
    if (initial_end)
        json_object_set_new(json_object_get(obj, "metadata"), "annotations",
                            json_pack("{s:s}", "k8s.io/initial-events-end", "true"));
    {
        json_t *ev = json_pack("{s:s,s:o}", "type", "BOOKMARK", "object", obj);
        line = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
        json_decref(ev);
    }
    if (!line)
        return -ENOMEM;
    buf_init(&b);
    rc = buf_puts(&b, line);
    if (!rc)
        rc = buf_puts(&b, "\n");
    free(line);
    if (!rc)
        rc = http_stream_write(w->conn, b.p, b.len);
    buf_release(&b);
    return rc;
}

/*
 * One event's fan-out: the serialized line is built once per (version, type, object) and shared
 * by every watcher that gets it; the object for "left the selector" is built once too.
 */
#define FAN_CACHE 8
struct fan {
    const struct event *ev;
    json_t *exit_obj; /* ev->old at ev->rv, for DELETED on leaving a selector */
    struct {
        const struct rtype *rt;
        const char *type;
        const json_t *obj;
        char *line;
    } c[FAN_CACHE];
    int n;
};

static void fan_release(struct fan *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->c[i].line);
    json_decref(f->exit_obj);
}

static int fan_send(struct watcher *w, struct fan *f, const char *type, json_t *obj)
{
    char *line;
    int rc;

    if (w->table)
        return send_event(w, type, obj);
    for (int i = 0; i < f->n; i++) {
        if (f->c[i].rt == w->rt && f->c[i].type == type && f->c[i].obj == obj)
            return http_stream_write(w->conn, f->c[i].line, strlen(f->c[i].line));
    }
    line = event_line(w, type, obj);
    if (!line)
        return -ENOMEM;
    rc = http_stream_write(w->conn, line, strlen(line));
    if (f->n < FAN_CACHE) {
        f->c[f->n].rt = w->rt;
        f->c[f->n].type = type;
        f->c[f->n].obj = obj;
        f->c[f->n].line = line;
        f->n++;
    } else {
        free(line);
    }
    return rc;
}

/* The drop-watch fault: end w's stream instead of sending it an event. True when it did. */
static bool fault_drop(struct watcher *w)
{
    struct kl *kl = w->kl;
    if (!kl_fault_roll(kl, kl->faults.drop_watch))
        return false;
    kl->faults.drops++;
    log_debug("msg=\"injected fault\" fault=drop-watch resource=%s", w->rt->plural);
    watcher_end(w);
    return true;
}

/*
 * Send ev to w if it concerns w, translating selector transitions into ADDED/DELETED. Returns
 * false when a drop-watch fault ended w (w is freed).
 */
static bool deliver(struct watcher *w, struct fan *f)
{
    const struct event *ev = f->ev;
    const char *type = NULL;
    json_t *obj = ev->obj;

    if (w->store != ev->store || ev->rv <= w->sent_rv)
        return true;
    w->sent_rv = ev->rv;
    switch (ev->type) {
    case EV_ADDED:
        if (matches(w, ev->obj))
            type = "ADDED";
        break;
    case EV_MODIFIED: {
        bool was = matches(w, ev->old), is = matches(w, ev->obj);
        if (was && is) {
            type = "MODIFIED";
        } else if (was) {
            /* Like the watch cache: the last state the watcher saw, at the event's rv. */
            type = "DELETED";
            if (!f->exit_obj) {
                char rv[32];
                f->exit_obj = json_deep_copy(ev->old);
                snprintf(rv, sizeof(rv), "%llu", (unsigned long long)ev->rv);
                if (f->exit_obj)
                    json_object_set_new(json_object_get(f->exit_obj, "metadata"), "resourceVersion",
                                        json_string(rv));
            }
            obj = f->exit_obj ? f->exit_obj : ev->obj;
        } else if (is) {
            type = "ADDED";
        }
        break;
    }
    default:
        if (matches(w, ev->obj))
            type = "DELETED";
        break;
    }
    if (!type)
        return true;
    if (fault_drop(w))
        return false;
    /* A failed write means the connection is closing; its on_close frees w. */
    IGNORE_RESULT(fan_send(w, f, type, obj));
    return true;
}

void kl_watch_fanout(struct kl *kl, const struct event *ev)
{
    struct watcher *w, *next;
    struct fan f;

    memset(&f, 0, sizeof(f));
    f.ev = ev;
    for (w = kl->watchers; w; w = next) {
        next = w->next;
        IGNORE_RESULT(deliver(w, &f));
    }
    fan_release(&f);
}

void kl_watch_tick(struct kl *kl)
{
    double now = kl_monotonic();
    struct watcher *w, *next;

    for (w = kl->watchers; w; w = next) {
        next = w->next;
        if (w->deadline && now >= w->deadline) {
            watcher_end(w);
            continue;
        }
        if (w->bookmarks && now >= w->next_bookmark) {
            w->next_bookmark = now + kl->bookmark_interval;
            if (send_bookmark(w, kl->rv, false) < 0)
                continue;
        }
    }
}

void kl_watch_remove_store(struct kl *kl, struct rstore *st)
{
    struct watcher *w, *next;
    for (w = kl->watchers; w; w = next) {
        next = w->next;
        if (w->store == st)
            watcher_end(w);
    }
}

void kl_watch_remove_rtype(struct kl *kl, const struct rtype *rt)
{
    struct watcher *w, *next;
    for (w = kl->watchers; w; w = next) {
        next = w->next;
        if (w->rt == rt)
            watcher_end(w);
    }
}

static bool qbool(const struct http_request *req, const char *name)
{
    char v[16];
    return http_query_get(req, name, v, sizeof(v)) &&
           (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

void kl_watch_start(struct kl *kl, struct http_conn *c, const struct http_request *req,
                    const struct rtype *rt, const char *ns)
{
    char rvq[64] = "", sel[4096], msg[512], tmo[32];
    const char *accept = http_req_header(req, "accept");
    struct watcher *w = calloc(1, sizeof(*w));
    bool send_initial, have_rv;
    uint64_t from = 0;
    int rc;

    if (!w) {
        kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
        return;
    }
    w->kl = kl;
    w->conn = c;
    w->rt = rt;
    w->store = rt->store;
    if (ns && !(w->ns = strdup(ns)))
        goto oom;
    if (http_query_get(req, "labelSelector", sel, sizeof(sel)) && sel[0]) {
        rc = selector_parse_labels(sel, &w->labels, msg, sizeof(msg));
        if (rc) {
            kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
            watcher_free(w);
            return;
        }
    }
    if (http_query_get(req, "fieldSelector", sel, sizeof(sel)) && sel[0]) {
        rc = selector_parse_fields(sel, rt->plural, &w->fields, msg, sizeof(msg));
        if (rc) {
            kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
            watcher_free(w);
            return;
        }
    }
    w->bookmarks = qbool(req, "allowWatchBookmarks");
    send_initial = qbool(req, "sendInitialEvents");
    have_rv = http_query_get(req, "resourceVersion", rvq, sizeof(rvq)) && rvq[0];
    if (send_initial && !w->bookmarks) {
        kl_respond_status(c, 422, "Invalid",
                          "sendInitialEvents is forbidden for watch unless allowWatchBookmarks is "
                          "true",
                          NULL, NULL, NULL, NULL);
        watcher_free(w);
        return;
    }
    if (have_rv && strcmp(rvq, "0") != 0) {
        char *end;
        unsigned long long v = strtoull(rvq, &end, 10);
        if (*end) {
            snprintf(msg, sizeof(msg),
                     "resourceVersion: Invalid value: \"%s\": must be a "
                     "non-negative integer",
                     rvq);
            kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
            watcher_free(w);
            return;
        }
        from = v;
    }
    if (accept && strstr(accept, "as=Table")) {
        char io[32];
        w->table = true;
        if (http_query_get(req, "includeObject", io, sizeof(io)) &&
            !(w->include_object = strdup(io)))
            goto oom;
    }
    if (http_query_get(req, "timeoutSeconds", tmo, sizeof(tmo)) && atoi(tmo) > 0)
        w->deadline = kl_monotonic() + atoi(tmo);
    else
        w->deadline = kl_monotonic() + 1800 + (double)(rand() % 1800);
    w->next_bookmark = kl_monotonic() + kl->bookmark_interval;

    http_stream_begin(
        c, 200, w->table ? "application/json;as=Table;v=v1;g=meta.k8s.io" : "application/json",
        on_conn_close, w);
    w->next = kl->watchers;
    if (kl->watchers)
        kl->watchers->prev = w;
    kl->watchers = w;
    kl->nwatchers++;

    if (!have_rv || from == 0 || send_initial) {
        /* Current state as synthetic ADDED events (sorted by key, like a list). */
        bool gone;
        json_t *items = kl_store_snapshot(kl, rt->store, 0, &gone);
        size_t i;
        json_t *o;
        json_array_foreach(items, i, o)
        {
            if (!matches(w, o))
                continue;
            if (fault_drop(w)) {
                json_decref(items);
                return;
            }
            if (send_event(w, "ADDED", o) < 0)
                break;
        }
        json_decref(items);
        w->sent_rv = kl->rv;
        if (send_initial)
            IGNORE_RESULT(send_bookmark(w, kl->rv, true));
        return;
    }
    if (from < kl->compacted_rv || kl_fault_roll(kl, kl->faults.expire)) {
        uint64_t oldest = from < kl->compacted_rv ? kl->compacted_rv + 1 : from + 1;
        json_t *st = json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion",
                               "v1", "metadata", "status", "Failure", "message", "", "reason",
                               "Expired", "code", 410);
        if (from >= kl->compacted_rv) {
            kl->faults.expires++;
            log_debug("msg=\"injected fault\" fault=expire resource=%s rv=%llu", rt->plural,
                      (unsigned long long)from);
        }
        snprintf(msg, sizeof(msg), "too old resource version: %llu (%llu)",
                 (unsigned long long)from, (unsigned long long)oldest);
        json_object_set_new(st, "message", json_string(msg));
        {
            json_t *ev = json_pack("{s:s,s:o}", "type", "ERROR", "object", st);
            char *line = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
            json_decref(ev);
            if (line) {
                struct buf b;
                buf_init(&b);
                if (!buf_puts(&b, line) && !buf_puts(&b, "\n"))
                    IGNORE_RESULT(http_stream_write(c, b.p, b.len));
                buf_release(&b);
                free(line);
            }
        }
        watcher_end(w);
        return;
    }
    /* Replay what happened after `from`. */
    w->sent_rv = from;
    for (size_t i = 0; i < kl->hist_len; i++) {
        struct event *ev = &kl->hist[(kl->hist_head + i) % kl->hist_cap];
        if (ev->rv > from && ev->store == w->store) {
            struct fan f;
            memset(&f, 0, sizeof(f));
            f.ev = ev;
            if (!deliver(w, &f)) {
                fan_release(&f);
                return;
            }
            fan_release(&f);
        }
    }
    if (w->sent_rv < kl->rv)
        w->sent_rv = kl->rv;
    return;
oom:
    watcher_free(w);
    kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
}
