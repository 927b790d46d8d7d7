/*
 * httpuv.c - lib/http servers driven by weftd's libuv loop: a uv_poll_t on the server's epoll
 * descriptor runs a non-blocking round when anything is ready, and a uv_timer_t runs one when
 * the server's own timers (ticks, deadlines) are due.
 */
#include <stdlib.h>

#include "weftd/weftd_int.h"

struct weftd_http {
    struct http_server *s;
    uv_poll_t poll;
    uv_timer_t timer;
    int closed;
};

static void on_timer(uv_timer_t *t);

static void round_(struct weftd_http *h)
{
    int t;
    if (http_server_step(h->s, 0))
        return;
    t = http_server_next_timeout(h->s);
    uv_timer_start(&h->timer, on_timer, (uint64_t)(t < 0 ? 1000 : t), 0);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    round_(p->data);
}

static void on_timer(uv_timer_t *t)
{
    round_(t->data);
}

static void on_closed(uv_handle_t *hd)
{
    struct weftd_http *h = hd->data;
    if (++h->closed == 2)
        free(h);
}

int weftd_http_attach(struct weftd *d, struct http_server *s)
{
    struct weftd_http *h;
    size_t slot;
    int rc;

    for (slot = 0; slot < ARRAY_LEN(d->attached) && d->attached[slot]; slot++)
        ;
    if (slot == ARRAY_LEN(d->attached))
        return -ENOSPC;
    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->s = s;
    rc = uv_poll_init(d->loop, &h->poll, http_server_fd(s));
    if (rc) {
        free(h);
        return rc;
    }
    h->poll.data = h;
    uv_timer_init(d->loop, &h->timer);
    h->timer.data = h;
    rc = uv_poll_start(&h->poll, UV_READABLE, on_poll);
    if (rc) {
        uv_close((uv_handle_t *)&h->poll, on_closed);
        uv_close((uv_handle_t *)&h->timer, on_closed);
        return rc;
    }
    d->attached[slot] = h;
    round_(h);
    return 0;
}

void weftd_http_detach(struct weftd *d, struct http_server *s)
{
    for (size_t i = 0; i < ARRAY_LEN(d->attached); i++) {
        struct weftd_http *h = d->attached[i];
        if (!h || h->s != s)
            continue;
        d->attached[i] = NULL;
        uv_close((uv_handle_t *)&h->poll, on_closed);
        uv_close((uv_handle_t *)&h->timer, on_closed);
    }
}

void weftd_http_kick(struct weftd *d, struct http_server *s)
{
    for (size_t i = 0; i < ARRAY_LEN(d->attached); i++) {
        if (d->attached[i] && d->attached[i]->s == s)
            round_(d->attached[i]);
    }
}
