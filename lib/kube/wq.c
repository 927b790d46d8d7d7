/*
 * wq.c - rate-limited, de-duplicating work queue (client-go's workqueue semantics).
 *
 * State: one map (core/map.h) from key to its item: `dirty` (needs processing: queued, or
 * re-added while processing), `processing`, `waiting` with the key's earliest due time, and
 * `failures`; an item goes when all four are clear. A FIFO of ready keys (borrowed from the map:
 * a key is in the FIFO exactly while it is dirty and not processing) and a min-heap of delayed
 * keys (owned copies; entries whose time no longer matches the item's are stale and skipped).
 * Rate limiting is the max of a per-key exponential backoff and a token bucket whose tokens may
 * go negative (golang.org/x/time/rate reservations), as in client-go's default controller
 * rate limiter.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/map.h"
#include "kube/kube_int.h"

struct delayed {
    uint64_t at;
    uint64_t seq;
    char *key;
};

struct item {
    bool dirty, processing, waiting;
    uint64_t wait_at; /* when waiting */
    unsigned failures;
};

struct wq {
    struct wq_opts o;
    const char **fifo; /* keys borrowed from items */
    size_t head, len, cap;
    struct map items; /* key -> struct item */
    struct delayed *heap;
    size_t nheap, capheap;
    uint64_t seq;
    double tokens;
    uint64_t last_refill;
    /* loop driver */
    uv_loop_t *loop;
    uv_idle_t idle;
    uv_timer_t timer;
    unsigned open_handles;
    bool closing;
    wq_reconcile_fn *reconcile;
    void *arg;
};

static uint64_t now_ms(const struct wq *q)
{
    return q->o.clock.ops->now_ms(q->o.clock.ctx);
}

int wq_new(const struct wq_opts *opts, struct wq **out)
{
    struct wq *q = calloc(1, sizeof(*q));

    if (!q)
        return -ENOMEM;
    if (opts)
        q->o = *opts;
    if (!q->o.clock.ops)
        q->o.clock = kube_clock_monotonic;
    if (!q->o.base_ms)
        q->o.base_ms = 5;
    if (!q->o.max_ms)
        q->o.max_ms = 1000000;
    if (q->o.qps <= 0)
        q->o.qps = 10;
    if (!q->o.burst)
        q->o.burst = 100;
    q->tokens = q->o.burst;
    q->last_refill = now_ms(q);
    *out = q;
    return 0;
}

static void wq_release(struct wq *q)
{
    free(q->fifo);
    for (size_t i = 0; i < q->nheap; i++)
        free(q->heap[i].key);
    free(q->heap);
    MAP_FOREACH(&q->items, slot)
    free(slot->val);
    map_release(&q->items);
    free(q);
}

static void on_closed(uv_handle_t *h)
{
    struct wq *q = h->data;
    if (--q->open_handles == 0)
        wq_release(q);
}

void wq_free(struct wq *q)
{
    if (!q)
        return;
    if (!q->loop) {
        wq_release(q);
        return;
    }
    q->closing = true;
    uv_idle_stop(&q->idle);
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->idle, on_closed);
    uv_close((uv_handle_t *)&q->timer, on_closed);
}

/* ---- items, FIFO and heap --------------------------------------------------------------- */

/* key's item, created (all clear) when absent and create is set; NULL when absent or -ENOMEM. */
static struct item *item_get(struct wq *q, const char *key, bool create)
{
    struct item *it = map_get(&q->items, key);

    if (it || !create)
        return it;
    it = calloc(1, sizeof(*it));
    if (it && map_put(&q->items, key, it) < 0)
        FREE_AND_NULL(it);
    return it;
}

/* Drop key's item once nothing refers to it any more (frees the map's copy of key). */
static void item_gc(struct wq *q, const char *key)
{
    struct item *it = map_get(&q->items, key);

    if (it && !it->dirty && !it->processing && !it->waiting && !it->failures)
        free(map_del(&q->items, key));
}

/* Append key (the map's copy: stable while the item is dirty) to the FIFO. */
static int fifo_push(struct wq *q, const char *key)
{
    if (q->len == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 16;
        const char **n = malloc(ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        for (size_t i = 0; i < q->len; i++)
            n[i] = q->fifo[(q->head + i) % q->cap];
        free(q->fifo);
        q->fifo = n;
        q->cap = ncap;
        q->head = 0;
    }
    q->fifo[(q->head + q->len) % q->cap] = key;
    q->len++;
    return 0;
}

static const char *fifo_pop(struct wq *q)
{
    const char *k;
    if (!q->len)
        return NULL;
    k = q->fifo[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return k;
}

static bool heap_less(const struct delayed *a, const struct delayed *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int heap_push(struct wq *q, uint64_t at, const char *key)
{
    struct delayed d;
    size_t i;

    if (q->nheap == q->capheap) {
        size_t ncap = q->capheap ? q->capheap * 2 : 16;
        struct delayed *n = realloc(q->heap, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        q->heap = n;
        q->capheap = ncap;
    }
    d.at = at;
    d.seq = q->seq++;
    d.key = strdup(key);
    if (!d.key)
        return -ENOMEM;
    i = q->nheap++;
    while (i > 0 && heap_less(&d, &q->heap[(i - 1) / 2])) {
        q->heap[i] = q->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->heap[i] = d;
    return 0;
}

static struct delayed heap_pop(struct wq *q)
{
    struct delayed top = q->heap[0], last = q->heap[--q->nheap];
    size_t i = 0;

    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct delayed *mv = &last;
        if (l < q->nheap && heap_less(&q->heap[l], mv)) {
            m = l;
            mv = &q->heap[l];
        }
        if (r < q->nheap && heap_less(&q->heap[r], mv))
            m = r;
        if (m == i)
            break;
        q->heap[i] = q->heap[m];
        i = m;
    }
    if (q->nheap)
        q->heap[i] = last;
    return top;
}

/* ---- queue operations ------------------------------------------------------------------- */

static void kick(struct wq *q);

/* Mark key dirty and queue it (unless in flight); the caller runs item_gc. */
static int add_now(struct wq *q, const char *key)
{
    struct item *it = item_get(q, key, true);
    int rc;

    if (!it)
        return -ENOMEM;
    if (it->dirty)
        return 0;
    it->dirty = true;
    /* A key being processed goes back on the queue at wq_done. */
    if (it->processing)
        return 0;
    rc = fifo_push(q, map_key(&q->items, key));
    if (rc)
        it->dirty = false;
    return rc;
}

int wq_add(struct wq *q, const char *key)
{
    int rc = add_now(q, key);
    item_gc(q, key);
    kick(q);
    return rc;
}

/* Queue key after delay_ms (an earlier pending time wins); the caller runs item_gc. */
static int add_after(struct wq *q, const char *key, uint64_t delay_ms)
{
    struct item *it;
    uint64_t at;

    if (!delay_ms)
        return add_now(q, key);
    at = now_ms(q) + delay_ms;
    it = item_get(q, key, true);
    if (!it)
        return -ENOMEM;
    if (it->waiting && it->wait_at <= at)
        return 0;
    if (heap_push(q, at, key))
        return -ENOMEM; /* an older, later entry (if any) still stands */
    it->waiting = true;
    it->wait_at = at;
    return 0;
}

int wq_add_after(struct wq *q, const char *key, uint64_t delay_ms)
{
    int rc = add_after(q, key, delay_ms);
    item_gc(q, key);
    kick(q);
    return rc;
}

/* The delay for one more failure of key (client-go MaxOf(ItemExponential, Bucket)). */
static uint64_t when(struct wq *q, const char *key, int *rc)
{
    struct item *it = item_get(q, key, true);
    unsigned n = it ? it->failures : 0;
    uint64_t now = now_ms(q), exp = q->o.base_ms, bucket = 0;

    for (unsigned i = 0; i < n && exp < q->o.max_ms; i++)
        exp *= 2;
    if (exp > q->o.max_ms)
        exp = q->o.max_ms;
    *rc = it ? 0 : -ENOMEM;
    if (it)
        it->failures = n + 1;
    q->tokens += (double)(now - q->last_refill) * q->o.qps / 1000.0;
    if (q->tokens > q->o.burst)
        q->tokens = q->o.burst;
    q->last_refill = now;
    q->tokens -= 1;
    if (q->tokens < 0)
        bucket = (uint64_t)ceil(-q->tokens * 1000.0 / q->o.qps - 1e-9);
    return exp > bucket ? exp : bucket;
}

int wq_add_rate_limited(struct wq *q, const char *key)
{
    int rc2, rc;
    uint64_t d = when(q, key, &rc2);
    rc = add_after(q, key, d);
    item_gc(q, key);
    kick(q);
    return rc ? rc : rc2;
}

void wq_forget(struct wq *q, const char *key)
{
    struct item *it = map_get(&q->items, key);

    if (it) {
        it->failures = 0;
        item_gc(q, key);
    }
}

unsigned wq_requeues(const struct wq *q, const char *key)
{
    const struct item *it = map_get(&q->items, key);

    return it ? it->failures : 0;
}

/* Move delayed keys that are due onto the queue; returns ms until the next one (or MAX). */
static uint64_t promote(struct wq *q)
{
    uint64_t now = now_ms(q);

    while (q->nheap) {
        struct item *it;
        if (q->heap[0].at > now)
            return q->heap[0].at - now;
        struct delayed d = heap_pop(q);
        it = map_get(&q->items, d.key);
        if (it && it->waiting && it->wait_at == d.at) {
            it->waiting = false;
            if (add_now(q, d.key)) {
                /* Out of memory: put it back a little later rather than lose it. */
                if (heap_push(q, now + q->o.base_ms, d.key) == 0) {
                    it->waiting = true;
                    it->wait_at = now + q->o.base_ms;
                }
                item_gc(q, d.key);
                free(d.key);
                return q->o.base_ms;
            }
        }
        free(d.key);
    }
    return UINT64_MAX;
}

size_t wq_len(struct wq *q)
{
    promote(q);
    return q->len;
}

int wq_get(struct wq *q, const char **key, uint64_t *next_ms)
{
    uint64_t next = promote(q);
    struct item *it;
    const char *k;

    if (!q->len) {
        if (next_ms)
            *next_ms = next;
        return -EAGAIN;
    }
    k = fifo_pop(q);
    it = map_get(&q->items, k);
    it->dirty = false;
    it->processing = true;
    *key = k; /* the map's copy: kept while processing */
    return 0;
}

void wq_done(struct wq *q, const char *key)
{
    struct item *it = map_get(&q->items, key);

    if (!it || !it->processing)
        return;
    it->processing = false;
    if (it->dirty && fifo_push(q, map_key(&q->items, key)))
        it->dirty = false;
    item_gc(q, key); /* key may be the map's copy: not used after this */
    kick(q);
}

/* ---- loop driver ------------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t);

static void on_idle(uv_idle_t *h)
{
    struct wq *q = h->data;
    const char *key;
    char *k;
    struct wq_result r;

    if (wq_get(q, &key, NULL) != 0) {
        kick(q);
        return;
    }
    k = strdup(key);
    if (!k) {
        wq_done(q, key);
        return;
    }
    r = q->reconcile(q->arg, k);
    wq_done(q, k);
    switch (r.outcome) {
    case WQ_ERROR:
        IGNORE_RESULT(wq_add_rate_limited(q, k));
        break;
    case WQ_REQUEUE_AFTER:
        wq_forget(q, k);
        IGNORE_RESULT(wq_add_after(q, k, r.after_ms));
        break;
    default:
        wq_forget(q, k);
        break;
    }
    free(k);
    kick(q);
}

static void on_timer(uv_timer_t *t)
{
    kick(t->data);
}

static void kick(struct wq *q)
{
    uint64_t next;

    if (!q->loop || q->closing)
        return;
    next = promote(q);
    if (q->len) {
        uv_idle_start(&q->idle, on_idle);
        return;
    }
    uv_idle_stop(&q->idle);
    if (next == UINT64_MAX)
        uv_timer_stop(&q->timer);
    else
        uv_timer_start(&q->timer, on_timer, next, 0);
}

int wq_run(struct wq *q, uv_loop_t *loop, wq_reconcile_fn *reconcile, void *arg)
{
    int rc;

    if (q->loop || !loop || !reconcile)
        return -EINVAL;
    rc = uv_idle_init(loop, &q->idle);
    if (rc)
        return rc;
    rc = uv_timer_init(loop, &q->timer);
    if (rc) {
        uv_close((uv_handle_t *)&q->idle, NULL);
        return rc;
    }
    q->idle.data = q;
    q->timer.data = q;
    q->open_handles = 2;
    q->loop = loop;
    q->reconcile = reconcile;
    q->arg = arg;
    kick(q);
    return 0;
}
