/*
 * informer.c - reflector (LIST + WATCH with client-go semantics) and the per-informer cache.
 *
 * States: LISTING (pages accumulate in list_items until the last page, then the cache is
 * replaced and the differences delivered), WATCHING (a stream of JSON lines, split without
 * relying on chunk boundaries), WAITING (backoff timer, then the pending action), PAUSED.
 * Exactly one of call/timer is active outside PAUSED. Recovery:
 *   stream ended normally            -> WATCH again from the last resourceVersion
 *   410 / ERROR event Expired|Gone   -> relist at once
 *   expired continue token           -> relist at once without pagination (client-go's pager)
 *   transport error, other status    -> jittered exponential backoff, then retry the same step
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/jsonio.h"
#include "core/log.h"
#include "core/pct.h"
#include "kube/kube_int.h"

#define MAX_LINE (32u * 1024 * 1024)
#define MIN_HEALTHY_WATCH_MS 1000

enum step { STEP_LIST, STEP_WATCH };

struct kube_informer {
    struct kube_client *c;
    uv_timer_t timer;
    char *group, *version, *plural, *ns, *labels, *fields;
    struct kube_resource res;
    struct kube_informer_handlers h;
    struct kube_informer_opts o;
    json_t *cache;
    char rv[64];
    bool synced, paused;
    /* list in progress */
    json_t *list_items;
    char *cont;
    bool unpaginated;
    /* watch in progress */
    struct kube_call *call;
    struct kube__lines lines;
    uint64_t watch_started;
    unsigned watch_seen;
    bool stop_feed;
    enum step retry_step;
    unsigned attempt;
    uint64_t rng;
    struct kube_informer_stats st;
};

/* ---- pure parts (exposed in kube_int.h for tests) ---------------------------------------- */

void kube__lines_init(struct kube__lines *l, size_t max_line)
{
    buf_init(&l->pending);
    l->max_line = max_line;
}

void kube__lines_release(struct kube__lines *l)
{
    buf_release(&l->pending);
}

void kube__lines_reset(struct kube__lines *l)
{
    buf_reset(&l->pending);
}

static int emit_line(const char *p, size_t n, kube__line_fn *fn, void *arg)
{
    if (n && p[n - 1] == '\r')
        n--;
    if (!n)
        return 0;
    return fn(arg, p, n);
}

int kube__lines_feed(struct kube__lines *l, const char *data, size_t len, kube__line_fn *fn,
                     void *arg)
{
    const char *end = data + len, *nl;
    int rc;

    while (data < end) {
        nl = memchr(data, '\n', (size_t)(end - data));
        if (!nl) {
            if (l->pending.len + (size_t)(end - data) > l->max_line)
                return -E2BIG;
            return buf_append(&l->pending, data, (size_t)(end - data));
        }
        if (l->pending.len) {
            /* Complete the line started in an earlier chunk. */
            if (l->pending.len + (size_t)(nl - data) > l->max_line)
                return -E2BIG;
            rc = buf_append(&l->pending, data, (size_t)(nl - data));
            if (rc)
                return rc;
            rc = emit_line(l->pending.p, l->pending.len, fn, arg);
            buf_reset(&l->pending);
        } else {
            if ((size_t)(nl - data) > l->max_line)
                return -E2BIG;
            rc = emit_line(data, (size_t)(nl - data), fn, arg);
        }
        if (rc)
            return rc;
        data = nl + 1;
    }
    return 0;
}

int kube__watch_event_parse(const json_t *ev, const char **type, json_t **obj)
{
    const char *t = json_string_value(json_object_get(ev, "type"));
    json_t *o = json_object_get(ev, "object");
    if (!t || !json_is_object(o))
        return ERR_PARSE;
    *type = t;
    *obj = o;
    return 0;
}

bool kube__status_is_gone(long http_status, const json_t *st)
{
    const char *reason = json_string_value(json_object_get(st, "reason"));
    if (http_status == 410 || json_integer_value(json_object_get(st, "code")) == 410)
        return true;
    return reason && (strcmp(reason, "Expired") == 0 || strcmp(reason, "Gone") == 0);
}

int kube__object_key(const json_t *obj, char *out, size_t outlen)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *name = json_string_value(json_object_get(md, "name"));
    const char *ns = json_string_value(json_object_get(md, "namespace"));
    int n;

    if (!name || !*name)
        return ERR_INVALID;
    if (ns && *ns)
        n = snprintf(out, outlen, "%s/%s", ns, name);
    else
        n = snprintf(out, outlen, "%s", name);
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

static const char *obj_rv(const json_t *obj)
{
    const char *rv =
        json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    return rv ? rv : "";
}

int kube__cache_replace(json_t *cache, const json_t *items, kube__emit_fn *emit, void *arg)
{
    json_t *fresh = json_object(), *changes = json_array(), *item, *ch;
    const char *key;
    char k[512];
    size_t i;
    void *tmp;
    int rc = -ENOMEM;

    if (!fresh || !changes)
        goto out;
    json_array_foreach(items, i, item)
    {
        if (kube__object_key(item, k, sizeof(k)) != 0) {
            log_warn("msg=\"list item without a usable name ignored\"");
            continue;
        }
        if (json_object_set(fresh, k, item))
            goto out;
    }
    json_object_foreach(fresh, key, item)
    {
        json_t *old = json_object_get(cache, key);
        if (!old)
            ch = json_pack("[i,s,O]", (int)KUBE_EVENT_ADDED, key, item);
        else if (strcmp(obj_rv(old), obj_rv(item)) != 0)
            ch = json_pack("[i,s,O]", (int)KUBE_EVENT_MODIFIED, key, item);
        else
            continue;
        if (!ch || json_array_append_new(changes, ch))
            goto out;
    }
    json_object_foreach_safe(cache, tmp, key, item)
    {
        if (json_object_get(fresh, key))
            continue;
        ch = json_pack("[i,s,O]", (int)KUBE_EVENT_DELETED, key, item);
        if (!ch || json_array_append_new(changes, ch))
            goto out;
    }
    /* The cache holds the new state before handlers run (they may read it). */
    if (json_object_clear(cache) || json_object_update(cache, fresh))
        goto out;
    json_array_foreach(changes, i, ch)
    {
        emit(arg, (enum kube_event_type)json_integer_value(json_array_get(ch, 0)),
             json_string_value(json_array_get(ch, 1)), json_array_get(ch, 2));
    }
    rc = 0;
out:
    json_decref(fresh);
    json_decref(changes);
    return rc;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

uint64_t kube__backoff_jitter(uint64_t base_ms, unsigned attempt, uint64_t cap_ms, uint64_t *rng)
{
    uint64_t d = base_ms;
    for (unsigned i = 0; i < attempt && d < cap_ms; i++)
        d *= 2;
    if (d > cap_ms)
        d = cap_ms;
    if (d < 2)
        return d;
    return d / 2 + xorshift(rng) % (d - d / 2);
}

const char *kube_event_type_str(enum kube_event_type t)
{
    switch (t) {
    case KUBE_EVENT_ADDED:
        return "ADDED";
    case KUBE_EVENT_MODIFIED:
        return "MODIFIED";
    default:
        return "DELETED";
    }
}

/* ---- reflector -------------------------------------------------------------------------- */

static void start_list(struct kube_informer *inf);
static void start_watch(struct kube_informer *inf);

static int put_query(struct buf *b, const char *name, const char *value)
{
    int rc = buf_printf(b, "%c%s=", strchr(b->p, '?') ? '&' : '?', name);

    return rc ? rc : pct_encode_buf(b, value, NULL);
}

static int base_path(struct kube_informer *inf, struct buf *b)
{
    char path[2048];
    int rc = kube_path(&inf->res, inf->ns, NULL, NULL, path, sizeof(path));
    if (!rc)
        rc = buf_puts(b, path);
    if (!rc && inf->labels)
        rc = put_query(b, "labelSelector", inf->labels);
    if (!rc && inf->fields)
        rc = put_query(b, "fieldSelector", inf->fields);
    return rc;
}

static void on_timer(uv_timer_t *t)
{
    struct kube_informer *inf = t->data;
    if (inf->retry_step == STEP_LIST)
        start_list(inf);
    else
        start_watch(inf);
}

static void retry_later(struct kube_informer *inf, enum step step)
{
    uint64_t d = kube__backoff_jitter(inf->o.backoff_initial_ms, inf->attempt,
                                      inf->o.backoff_max_ms, &inf->rng);
    if (inf->attempt < 64)
        inf->attempt++;
    if (step == STEP_WATCH && !inf->rv[0])
        step = STEP_LIST;
    inf->retry_step = step;
    log_debug("msg=\"informer retry\" resource=%s step=%s delay_ms=%llu", inf->plural,
              step == STEP_LIST ? "list" : "watch", (unsigned long long)d);
    uv_timer_start(&inf->timer, on_timer, d, 0);
}

static void reset_list(struct kube_informer *inf)
{
    json_array_clear(inf->list_items);
    FREE_AND_NULL(inf->cont);
}

static void emit(void *arg, enum kube_event_type type, const char *key, const json_t *obj)
{
    struct kube_informer *inf = arg;
    if (inf->h.on_event)
        inf->h.on_event(inf->h.arg, type, key, obj);
}

static void set_rv(struct kube_informer *inf, const char *rv)
{
    if (rv && *rv)
        snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
}

static void on_list(void *arg, int err, long status, json_t *body)
{
    struct kube_informer *inf = arg;
    const json_t *md, *items;
    const char *cont;

    inf->call = NULL;
    if (err) {
        inf->st.errors++;
        reset_list(inf);
        retry_later(inf, STEP_LIST);
        return;
    }
    if (status != 200 && kube__status_is_gone(status, body)) {
        inf->st.gone++;
        if (inf->cont) {
            /* The continue token expired: start over in one piece (client-go's pager). */
            reset_list(inf);
            inf->unpaginated = true;
            start_list(inf);
        } else {
            reset_list(inf);
            retry_later(inf, STEP_LIST);
        }
        return;
    }
    items = json_object_get(body, "items");
    md = json_object_get(body, "metadata");
    if (status != 200 || !json_is_object(md) || (items && !json_is_array(items))) {
        inf->st.errors++;
        log_warn("msg=\"informer list failed\" resource=%s status=%ld message=\"%s\"", inf->plural,
                 status, kube_status_message(body));
        reset_list(inf);
        retry_later(inf, STEP_LIST);
        return;
    }
    if (items && json_array_extend(inf->list_items, (json_t *)items)) {
        inf->st.errors++;
        reset_list(inf);
        retry_later(inf, STEP_LIST);
        return;
    }
    cont = json_string_value(json_object_get(md, "continue"));
    if (cont && *cont) {
        char *c = strdup(cont);
        if (!c) {
            inf->st.errors++;
            reset_list(inf);
            retry_later(inf, STEP_LIST);
            return;
        }
        free(inf->cont);
        inf->cont = c;
        start_list(inf);
        return;
    }
    if (kube__cache_replace(inf->cache, inf->list_items, emit, inf)) {
        inf->st.errors++;
        reset_list(inf);
        retry_later(inf, STEP_LIST);
        return;
    }
    inf->st.full_lists++;
    inf->unpaginated = false;
    inf->attempt = 0;
    reset_list(inf);
    set_rv(inf, json_string_value(json_object_get(md, "resourceVersion")));
    if (!inf->synced) {
        inf->synced = true;
        if (inf->h.on_synced)
            inf->h.on_synced(inf->h.arg);
    }
    /* A handler may have paused us. */
    if (!inf->paused && !inf->call && !uv_is_active((uv_handle_t *)&inf->timer))
        start_watch(inf);
}

static void start_list(struct kube_informer *inf)
{
    struct buf b;
    int rc;

    if (inf->paused)
        return;
    buf_init(&b);
    rc = base_path(inf, &b);
    if (!rc && inf->o.page_limit && !inf->unpaginated)
        rc = buf_printf(&b, "%climit=%u", strchr(b.p, '?') ? '&' : '?', inf->o.page_limit);
    if (!rc && inf->cont)
        rc = put_query(&b, "continue", inf->cont);
    if (!rc)
        rc = kube_request(inf->c, "GET", b.p, NULL, NULL, on_list, inf, &inf->call);
    buf_release(&b);
    if (rc) {
        inf->st.errors++;
        reset_list(inf);
        retry_later(inf, STEP_LIST);
        return;
    }
    inf->st.lists++;
}

/* Stop the current watch from inside its data callback and decide what comes next. */
static void watch_abort(struct kube_informer *inf, bool relist)
{
    inf->stop_feed = true;
    kube_call_cancel(inf->call);
    inf->call = NULL;
    if (relist)
        start_list(inf);
    else
        retry_later(inf, STEP_WATCH);
}

static int on_line(void *arg, const char *line, size_t len)
{
    struct kube_informer *inf = arg;
    json_error_t jerr;
    json_t *ev = conf_json_loadb(line, len, &jerr), *obj;
    const char *type;
    char key[512];
    int rc = 0;

    if (!ev || kube__watch_event_parse(ev, &type, &obj) != 0) {
        log_warn("msg=\"informer: bad watch line\" resource=%s reason=\"%s\" byte=%d", inf->plural,
                 ev ? "not a watch event" : jerr.text, ev ? 0 : jerr.position);
        inf->st.errors++;
        watch_abort(inf, false);
        rc = 1;
        goto out;
    }
    inf->watch_seen++;
    if (strcmp(type, "BOOKMARK") == 0) {
        inf->st.bookmarks++;
        set_rv(inf, obj_rv(obj));
        goto out;
    }
    if (strcmp(type, "ERROR") == 0) {
        bool gone = kube__status_is_gone(0, obj);
        log_info("msg=\"informer watch error\" resource=%s gone=%d message=\"%s\"", inf->plural,
                 gone, kube_status_message(obj));
        if (gone)
            inf->st.gone++;
        else
            inf->st.errors++;
        watch_abort(inf, gone);
        rc = 1;
        goto out;
    }
    if (kube__object_key(obj, key, sizeof(key)) != 0) {
        inf->st.errors++;
        goto out;
    }
    inf->st.events++;
    set_rv(inf, obj_rv(obj));
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0) {
        bool existed = json_object_get(inf->cache, key) != NULL;
        if (json_object_set(inf->cache, key, obj)) {
            /* Out of memory: the cache would be wrong from here on; relist later. */
            inf->st.errors++;
            inf->rv[0] = '\0';
            watch_abort(inf, false);
            rc = 1;
            goto out;
        }
        emit(inf, existed ? KUBE_EVENT_MODIFIED : KUBE_EVENT_ADDED, key, obj);
    } else if (strcmp(type, "DELETED") == 0) {
        if (json_object_get(inf->cache, key)) {
            json_object_del(inf->cache, key);
            emit(inf, KUBE_EVENT_DELETED, key, obj);
        }
    } else {
        inf->st.errors++;
    }
out:
    json_decref(ev);
    /* A handler may have paused the informer (which cancelled this watch). */
    if (!rc && (inf->paused || inf->stop_feed))
        rc = 1;
    return rc;
}

static void on_watch_data(void *arg, const char *data, size_t len)
{
    struct kube_informer *inf = arg;
    int rc;

    inf->attempt = 0; /* the server answered 200: the connection is healthy */
    inf->stop_feed = false;
    rc = kube__lines_feed(&inf->lines, data, len, on_line, inf);
    if (rc < 0 && !inf->stop_feed && inf->call) {
        inf->st.errors++;
        watch_abort(inf, false);
    }
}

static void on_watch_done(void *arg, int err, long status, json_t *body)
{
    struct kube_informer *inf = arg;
    uint64_t ran = uv_now(kube_client_loop(inf->c)) - inf->watch_started;

    inf->call = NULL;
    if (err) {
        inf->st.errors++;
        retry_later(inf, STEP_WATCH);
        return;
    }
    if (status != 200 && kube__status_is_gone(status, body)) {
        inf->st.gone++;
        start_list(inf);
        return;
    }
    if (status != 200) {
        inf->st.errors++;
        log_warn("msg=\"informer watch failed\" resource=%s status=%ld message=\"%s\"", inf->plural,
                 status, kube_status_message(body));
        retry_later(inf, STEP_WATCH);
        return;
    }
    /* Normal end (timeoutSeconds). A stream that ends at once with nothing in it is suspect. */
    if (inf->watch_seen == 0 && ran < MIN_HEALTHY_WATCH_MS)
        retry_later(inf, STEP_WATCH);
    else
        start_watch(inf);
}

static void start_watch(struct kube_informer *inf)
{
    struct buf b;
    unsigned timeout;
    int rc;

    if (inf->paused)
        return;
    if (!inf->rv[0]) {
        start_list(inf);
        return;
    }
    timeout = inf->o.watch_timeout_s + (unsigned)(xorshift(&inf->rng) % inf->o.watch_timeout_s);
    buf_init(&b);
    rc = base_path(inf, &b);
    if (!rc)
        rc = buf_printf(&b, "%cwatch=true&allowWatchBookmarks=true&timeoutSeconds=%u",
                        strchr(b.p, '?') ? '&' : '?', timeout);
    if (!rc)
        rc = put_query(&b, "resourceVersion", inf->rv);
    kube__lines_reset(&inf->lines);
    inf->watch_seen = 0;
    inf->watch_started = uv_now(kube_client_loop(inf->c));
    if (!rc)
        rc = kube__request_stream(inf->c, b.p, (long)timeout + 60, on_watch_data, on_watch_done,
                                  inf, &inf->call);
    buf_release(&b);
    if (rc) {
        inf->st.errors++;
        retry_later(inf, STEP_WATCH);
        return;
    }
    inf->st.watches++;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static void inf_release(struct kube_informer *inf)
{
    free(inf->group);
    free(inf->version);
    free(inf->plural);
    free(inf->ns);
    free(inf->labels);
    free(inf->fields);
    json_decref(inf->cache);
    json_decref(inf->list_items);
    free(inf->cont);
    kube__lines_release(&inf->lines);
    free(inf);
}

static void on_timer_closed(uv_handle_t *h)
{
    inf_release(h->data);
}

static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (!s || !*s)
        return 0;
    *out = strdup(s);
    return *out ? 0 : -ENOMEM;
}

int kube_informer_new(struct kube_client *c, const struct kube_resource *res, const char *ns,
                      const char *label_selector, const struct kube_informer_handlers *handlers,
                      const struct kube_informer_opts *opts, struct kube_informer **out)
{
    struct kube_informer *inf;
    char probe[2048];
    int rc;

    if (!c || !res || !handlers || kube_path(res, ns, NULL, NULL, probe, sizeof(probe)) != 0)
        return -EINVAL;
    inf = calloc(1, sizeof(*inf));
    if (!inf)
        return -ENOMEM;
    kube__lines_init(&inf->lines, MAX_LINE);
    inf->c = c;
    inf->h = *handlers;
    if (opts)
        inf->o = *opts;
    if (!inf->o.page_limit)
        inf->o.page_limit = 500;
    if (!inf->o.watch_timeout_s)
        inf->o.watch_timeout_s = 300;
    if (!inf->o.backoff_initial_ms)
        inf->o.backoff_initial_ms = 800;
    if (!inf->o.backoff_max_ms)
        inf->o.backoff_max_ms = 30000;
    inf->rng = (uint64_t)(uintptr_t)inf ^ uv_hrtime() ^ 0x9E3779B97F4A7C15ull;
    if (!inf->rng)
        inf->rng = 1;
    rc = -ENOMEM;
    inf->cache = json_object();
    inf->list_items = json_array();
    if (!inf->cache || !inf->list_items || dup_opt(res->group, &inf->group) ||
        dup_opt(res->version, &inf->version) || dup_opt(res->plural, &inf->plural) ||
        (res->namespaced && dup_opt(ns, &inf->ns)) || dup_opt(label_selector, &inf->labels) ||
        dup_opt(inf->o.field_selector, &inf->fields)) {
        inf_release(inf);
        return rc;
    }
    inf->o.field_selector = NULL;
    inf->res.group = inf->group;
    inf->res.version = inf->version;
    inf->res.plural = inf->plural;
    inf->res.namespaced = res->namespaced;
    rc = uv_timer_init(kube_client_loop(c), &inf->timer);
    if (rc) {
        inf_release(inf);
        return rc;
    }
    inf->timer.data = inf;
    *out = inf;
    start_list(inf);
    return 0;
}

void kube_informer_free(struct kube_informer *inf)
{
    if (!inf)
        return;
    kube_call_cancel(inf->call);
    inf->call = NULL;
    inf->paused = true;
    uv_timer_stop(&inf->timer);
    uv_close((uv_handle_t *)&inf->timer, on_timer_closed);
}

bool kube_informer_synced(const struct kube_informer *inf)
{
    return inf && inf->synced;
}

const json_t *kube_informer_get(const struct kube_informer *inf, const char *key)
{
    return inf ? json_object_get(inf->cache, key) : NULL;
}

const json_t *kube_informer_cache(const struct kube_informer *inf)
{
    return inf ? inf->cache : NULL;
}

const char *kube_informer_resource_version(const struct kube_informer *inf)
{
    return inf->rv;
}

void kube_informer_pause(struct kube_informer *inf)
{
    if (inf->paused)
        return;
    inf->paused = true;
    inf->stop_feed = true;
    kube_call_cancel(inf->call);
    inf->call = NULL;
    uv_timer_stop(&inf->timer);
    reset_list(inf);
}

void kube_informer_resume(struct kube_informer *inf)
{
    if (!inf->paused)
        return;
    inf->paused = false;
    inf->attempt = 0;
    if (inf->synced && inf->rv[0])
        start_watch(inf);
    else
        start_list(inf);
}

void kube_informer_stats(const struct kube_informer *inf, struct kube_informer_stats *out)
{
    *out = inf->st;
}
