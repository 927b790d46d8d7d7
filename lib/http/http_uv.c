/*
 * http_uv.c - a lib/http server driven by a libuv loop (http.h): a uv_poll_t on the server's
 * epoll descriptor runs a non-blocking round when anything is ready, and a uv_timer_t runs one
 * when the server's own timers (ticks, deadlines) are due.
 */
#include <stdlib.h>
#include <uv.h>

#include "http/http.h"

struct http_uv {
    struct http_server *s;
    uv_poll_t poll;
    uv_timer_t timer;
    int closed; /* handles closed so far: h is freed at 2 */
};

static void on_timer(uv_timer_t *t);

static void round_(struct http_uv *h)
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
    struct http_uv *h = hd->data;

    if (++h->closed == 2)
        free(h);
}

int http_uv_attach(uv_loop_t *loop, struct http_server *s, struct http_uv **out)
{
    struct http_uv *h = calloc(1, sizeof(*h));
    int rc;

    if (!h)
        return -ENOMEM;
    h->s = s;
    rc = uv_poll_init(loop, &h->poll, http_server_fd(s));
    if (rc) {
        free(h);
        return rc;
    }
    h->poll.data = h;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    rc = uv_poll_start(&h->poll, UV_READABLE, on_poll);
    if (rc) {
        http_uv_detach(h);
        return rc;
    }
    round_(h);
    *out = h;
    return 0;
}

void http_uv_kick(struct http_uv *h)
{
    round_(h);
}

void http_uv_detach(struct http_uv *h)
{
    if (!h)
        return;
    uv_close((uv_handle_t *)&h->poll, on_closed);
    uv_close((uv_handle_t *)&h->timer, on_closed);
}
