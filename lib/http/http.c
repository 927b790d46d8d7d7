#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "http/http_int.h"
#include "tls/tls.h"

#define HTTP_MAX_BACKLOG (256u * 1024 * 1024)
#define HTTP_HEAD_TIMEOUT_MS 10000  /* a request must arrive whole within this (slowloris) */
#define HTTP_IDLE_TIMEOUT_MS 120000 /* keep-alive connections idle longer are closed */
#define HTTP_LINGER_MS 1000         /* input drained after an error answer, so it is read */

enum conn_state { CONN_READING, CONN_STREAMING, CONN_CLOSING, CONN_DEFERRED };

/* epoll's data.ptr points at one of these, told apart by the leading tag. */
enum { TAG_CONN = 1, TAG_FD = 2 };

struct http_fdwatch {
    int tag;
    int fd;
    bool dead;
    struct http_server *srv;
    http_fd_fn cb;
    void *arg;
    struct http_fdwatch *next;
};

struct http_conn {
    int tag;
    struct http_server *srv;
    int fd;
    SSL *ssl;
    enum conn_state state;
    struct buf in;
    struct http_parser parser; /* the request arriving in in */
    struct buf out;
    bool want_close;      /* close once out is flushed */
    bool lingering;       /* answered and shut for writing; draining input before the close */
    struct timespec last; /* last input, or the end of the last answer */
    bool dead;
    bool dirty;
    bool tls_want_write;
    http_close_fn on_close;
    void *close_arg;
    struct http_conn *next_dirty;
    struct http_conn *prev, *next;
};

struct http_server {
    int lfd, epfd, port;
    SSL_CTX *ssl_ctx;
    size_t max_body;
    http_handler_fn handler;
    void *arg;
    http_tick_fn tick;
    void *tick_arg;
    unsigned tick_ms;
    struct timespec last_tick;
    bool stop;
    struct http_conn *conns;
    struct http_conn *dirty;
    struct http_fdwatch *fdwatches;
    http_tick_fn timer_fn;
    void *timer_arg;
    struct timespec timer_at;
    bool timer_armed;
    struct timespec last_sweep;
};

int http_fd_watch(struct http_server *s, int fd, unsigned events, http_fd_fn cb, void *arg,
                  struct http_fdwatch **out)
{
    struct http_fdwatch *w = calloc(1, sizeof(*w));
    struct epoll_event ev = {0};
    if (!w)
        return -ENOMEM;
    w->tag = TAG_FD;
    w->fd = fd;
    w->srv = s;
    w->cb = cb;
    w->arg = arg;
    ev.events = events;
    ev.data.ptr = w;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int rc = -errno;
        free(w);
        return rc;
    }
    w->next = s->fdwatches;
    s->fdwatches = w;
    *out = w;
    return 0;
}

void http_fd_modify(struct http_fdwatch *w, unsigned events)
{
    struct epoll_event ev = {0};
    ev.events = events;
    ev.data.ptr = w;
    epoll_ctl(w->srv->epfd, EPOLL_CTL_MOD, w->fd, &ev);
}

void http_fd_unwatch(struct http_fdwatch *w)
{
    if (!w || w->dead)
        return;
    epoll_ctl(w->srv->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->dead = true; /* freed after the current batch of events */
}

static void reap_fdwatches(struct http_server *s)
{
    struct http_fdwatch **pp = &s->fdwatches;
    while (*pp) {
        struct http_fdwatch *w = *pp;
        if (w->dead) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

void http_server_set_timer(struct http_server *s, long ms, http_tick_fn fn, void *arg)
{
    if (ms < 0) {
        s->timer_armed = false;
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &s->timer_at);
    s->timer_at.tv_sec += ms / 1000;
    s->timer_at.tv_nsec += (ms % 1000) * 1000000L;
    if (s->timer_at.tv_nsec >= 1000000000L) {
        s->timer_at.tv_sec++;
        s->timer_at.tv_nsec -= 1000000000L;
    }
    s->timer_fn = fn;
    s->timer_arg = arg;
    s->timer_armed = true;
}

static long long ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000LL + (now.tv_nsec - t->tv_nsec) / 1000000LL;
}

static int parse_listen(const char *addr, struct sockaddr_in *sa)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof(host))
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(colon + 1));
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return -EINVAL;
    return 0;
}

int http_server_new(const char *listen_addr, SSL_CTX *ssl_ctx, size_t max_body,
                    http_handler_fn handler, void *arg, struct http_server **out)
{
    struct http_server *s = NULL;
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    struct epoll_event ev = {0};
    int one = 1, rc = 0;

    rc = parse_listen(listen_addr, &sa);
    if (!rc && ssl_ctx)
        rc = tls_policy_apply(ssl_ctx); /* every lib/http server speaks Weft's TLS policy */
    if (rc)
        return rc;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->lfd = s->epfd = -1;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0) {
        rc = -errno;
        goto out;
    }
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->lfd, 4096) < 0) {
        rc = -errno;
        goto out;
    }
    getsockname(s->lfd, (struct sockaddr *)&sa, &salen);
    s->port = ntohs(sa.sin_port);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        rc = -errno;
        goto out;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) < 0) {
        rc = -errno;
        goto out;
    }
    s->ssl_ctx = ssl_ctx;
    s->max_body = max_body;
    s->handler = handler;
    s->arg = arg;
    clock_gettime(CLOCK_MONOTONIC, &s->last_tick);
out:
    if (rc) {
        http_server_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void conn_free(struct http_conn *c)
{
    struct http_server *s = c->srv;

    if (c->on_close) {
        http_close_fn fn = c->on_close;
        c->on_close = NULL;
        fn(c->close_arg, c);
    }
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl)
        SSL_free(c->ssl);
    close(c->fd);
    buf_release(&c->in);
    buf_release(&c->out);
    http__parser_reset(&c->parser);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

void http_server_free(struct http_server *s)
{
    if (!s)
        return;
    /* Owners of streams and deferred requests hear about the close, so they can free state. */
    while (s->conns)
        conn_free(s->conns);
    while (s->fdwatches) {
        struct http_fdwatch *w = s->fdwatches;
        s->fdwatches = w->next;
        free(w);
    }
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->epfd >= 0)
        close(s->epfd);
    free(s);
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_server_set_tick(struct http_server *s, unsigned interval_ms, http_tick_fn fn, void *arg)
{
    s->tick_ms = interval_ms;
    s->tick = fn;
    s->tick_arg = arg;
}

void http_server_stop(struct http_server *s)
{
    s->stop = true;
}

static void mark_dirty(struct http_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->next_dirty = c->srv->dirty;
    c->srv->dirty = c;
}

static void conn_update_events(struct http_conn *c)
{
    struct epoll_event ev = {0};
    ev.events = EPOLLIN | EPOLLRDHUP;
    if (c->out.len || c->tls_want_write)
        ev.events |= EPOLLOUT;
    ev.data.ptr = c;
    epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write as much of c->out as the socket takes. Marks the conn dead on error. */
static void conn_flush(struct http_conn *c)
{
    c->tls_want_write = false;
    while (c->out.len && !c->dead) {
        ssize_t n;
        if (c->ssl) {
            int r;
            ERR_clear_error();
            r = SSL_write(c->ssl, c->out.p,
                          (int)(c->out.len > (1u << 30) ? (1u << 30) : c->out.len));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    c->tls_want_write = (e == SSL_ERROR_WANT_WRITE);
                    break;
                }
                c->dead = true;
                break;
            }
            n = r;
        } else {
            n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                c->dead = true;
                break;
            }
        }
        buf_consume(&c->out, (size_t)n);
    }
    if (!c->out.len && c->want_close && !c->lingering && !c->dead) {
        /*
         * Close gracefully: a client still sending a body we refused (413) would get a reset
         * instead of our answer if we closed now. Shut the write side and drain for a while.
         */
        if (c->ssl)
            SSL_shutdown(c->ssl);
        shutdown(c->fd, SHUT_WR);
        c->lingering = true;
        clock_gettime(CLOCK_MONOTONIC, &c->last);
    }
    if (!c->dead)
        conn_update_events(c);
}

static void queue(struct http_conn *c, const char *data, size_t len)
{
    if (c->dead)
        return;
    if (buf_append(&c->out, data, len)) {
        c->dead = true;
        return;
    }
    mark_dirty(c);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Request Entity Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

static void respond_head(struct http_conn *c, int status, const char *ctype, const char *extra,
                         long long content_length)
{
    char head[1024];
    struct buf b;

    buf_init(&b);
    snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n", status, status_text(status));
    if (buf_puts(&b, head) || (ctype && buf_printf(&b, "Content-Type: %s\r\n", ctype)) ||
        buf_puts(&b, "Cache-Control: no-cache, private\r\n") ||
        (content_length >= 0 ? buf_printf(&b, "Content-Length: %lld\r\n", content_length)
                             : buf_puts(&b, "Transfer-Encoding: chunked\r\n")) ||
        (c->want_close && buf_puts(&b, "Connection: close\r\n")) ||
        (extra && buf_puts(&b, extra)) || buf_puts(&b, "\r\n")) {
        c->dead = true;
        buf_release(&b);
        return;
    }
    queue(c, b.p, b.len);
    buf_release(&b);
}

void http_respond(struct http_conn *c, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_headers)
{
    c->on_close = NULL;
    clock_gettime(CLOCK_MONOTONIC, &c->last);
    respond_head(c, status, content_type, extra_headers, (long long)len);
    if (len)
        queue(c, body, len);
    c->state = c->want_close ? CONN_CLOSING : CONN_READING;
}

void http_defer(struct http_conn *c, http_close_fn on_close, void *arg)
{
    c->state = CONN_DEFERRED;
    c->on_close = on_close;
    c->close_arg = arg;
}

void http_stream_begin(struct http_conn *c, int status, const char *content_type,
                       http_close_fn on_close, void *arg)
{
    respond_head(c, status, content_type, NULL, -1);
    c->state = CONN_STREAMING;
    c->on_close = on_close;
    c->close_arg = arg;
}

int http_stream_write(struct http_conn *c, const char *data, size_t len)
{
    char hdr[32];
    int n;

    if (c->dead)
        return -EPIPE;
    if (c->out.len > HTTP_MAX_BACKLOG) {
        log_warn("msg=\"closing slow stream consumer\" backlog=%zu", c->out.len);
        c->dead = true;
        mark_dirty(c);
        return -EPIPE;
    }
    if (!len)
        return 0;
    n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
    queue(c, hdr, (size_t)n);
    queue(c, data, len);
    queue(c, "\r\n", 2);
    return c->dead ? -EPIPE : 0;
}

void http_stream_end(struct http_conn *c)
{
    clock_gettime(CLOCK_MONOTONIC, &c->last);
    queue(c, "0\r\n\r\n", 5);
    c->on_close = NULL;
    c->state = c->want_close ? CONN_CLOSING : CONN_READING;
    mark_dirty(c);
}

size_t http_conn_backlog(const struct http_conn *c)
{
    return c->out.len;
}

static void respond_error_close(struct http_conn *c, int status, const char *msg)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
                     "\"Failure\",\"message\":\"%s\",\"reason\":\"%s\",\"code\":%d}",
                     msg,
                     status == 413   ? "RequestEntityTooLarge"
                     : status == 501 ? "NotImplemented"
                                     : "BadRequest",
                     status);
    c->want_close = true;
    http_respond(c, status, "application/json", body, (size_t)n, NULL);
}

/* Try to parse and dispatch one request from c->in. Returns true if one was dispatched. */
static bool conn_try_request(struct http_conn *c)
{
    struct http_server *s = c->srv;
    size_t consumed = 0;
    const char *conn_hdr;
    int rc = http__parse(&c->parser, c->in.p, c->in.len, s->max_body, &consumed);

    if (rc == HTTP_PARSE_MORE)
        return false;
    if (rc == HTTP_PARSE_FAIL) {
        respond_error_close(c, c->parser.status, c->parser.error);
        http__parser_reset(&c->parser);
        return false;
    }
    conn_hdr = http_req_header(&c->parser.req, "connection");
    if (conn_hdr && strcasecmp(conn_hdr, "close") == 0)
        c->want_close = true;
    buf_consume(&c->in, consumed);
    c->state = CONN_CLOSING; /* the handler moves it on */
    s->handler(s->arg, c, &c->parser.req);
    if (c->state == CONN_CLOSING && !c->want_close) {
        /* handler did not answer: answer for it */
        http_respond(c, 500, "text/plain", "no response\n", 12, NULL);
    }
    http__parser_reset(&c->parser);
    return true;
}

static void conn_read(struct http_conn *c)
{
    char tmp[65536];

    for (;;) {
        ssize_t n;
        if (c->ssl) {
            int r;
            ERR_clear_error();
            r = SSL_read(c->ssl, tmp, sizeof(tmp));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    c->tls_want_write = true;
                    mark_dirty(c);
                    break;
                }
                c->dead = true;
                return;
            }
            n = r;
        } else {
            n = recv(c->fd, tmp, sizeof(tmp), 0);
            if (n == 0) {
                c->dead = true;
                return;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                c->dead = true;
                return;
            }
        }
        if (c->lingering)
            continue; /* draining */
        clock_gettime(CLOCK_MONOTONIC, &c->last);
        if (buf_append(&c->in, tmp, (size_t)n)) {
            c->dead = true;
            return;
        }
        if (c->in.len > c->srv->max_body + HTTP_MAX_HEAD + 65536 && c->state != CONN_READING)
            break;
    }
    if (c->lingering)
        return;
    while (c->state == CONN_READING && !c->dead && c->in.len) {
        if (!conn_try_request(c))
            break;
    }
}

static void do_accept(struct http_server *s)
{
    for (;;) {
        struct epoll_event ev = {0};
        struct http_conn *c;
        int one = 1;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0)
            return;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            return;
        }
        c->tag = TAG_CONN;
        c->srv = s;
        c->fd = fd;
        clock_gettime(CLOCK_MONOTONIC, &c->last);
        buf_init(&c->in);
        buf_init(&c->out);
        http__parser_init(&c->parser);
        if (s->ssl_ctx) {
            c->ssl = SSL_new(s->ssl_ctx);
            if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
                if (c->ssl)
                    SSL_free(c->ssl);
                close(fd);
                free(c);
                continue;
            }
            SSL_set_accept_state(c->ssl);
        }
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void flush_dirty(struct http_server *s)
{
    /* Flushing never dispatches requests, so the list cannot grow while we walk it. */
    while (s->dirty) {
        struct http_conn *c = s->dirty;
        s->dirty = c->next_dirty;
        c->dirty = false;
        c->next_dirty = NULL;
        if (!c->dead)
            conn_flush(c);
    }
}

static void reap_dead(struct http_server *s)
{
    struct http_conn *c = s->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->dead) {
            if (c->dirty) {
                /* unlink from the dirty list */
                struct http_conn **pp = &s->dirty;
                while (*pp && *pp != c)
                    pp = &(*pp)->next_dirty;
                if (*pp)
                    *pp = c->next_dirty;
            }
            conn_free(c);
        }
    }
}

int http_server_fd(const struct http_server *s)
{
    return s->epfd;
}

int http_server_next_timeout(const struct http_server *s)
{
    int timeout = s->tick ? (int)s->tick_ms : 1000;
    if (s->dirty)
        return 0;
    if (s->timer_armed) {
        struct timespec now;
        long long left;
        clock_gettime(CLOCK_MONOTONIC, &now);
        left = (s->timer_at.tv_sec - now.tv_sec) * 1000LL +
               (s->timer_at.tv_nsec - now.tv_nsec) / 1000000LL;
        if (left < 0)
            left = 0;
        if (left < timeout)
            timeout = (int)left;
    }
    return timeout;
}

void http_server_flush(struct http_server *s)
{
    flush_dirty(s);
}

int http_server_step(struct http_server *s, int timeout_ms)
{
    struct epoll_event evs[256];
    int n;
    bool any_dead = false;

    n = epoll_wait(s->epfd, evs, (int)ARRAY_LEN(evs), timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        return -errno;
    }
    for (int i = 0; i < n; i++) {
        struct http_conn *c = evs[i].data.ptr;
        if (!c) {
            do_accept(s);
            continue;
        }
        if (c->tag == TAG_FD) {
            struct http_fdwatch *w = (struct http_fdwatch *)(void *)c;
            if (!w->dead)
                w->cb(w->arg, w->fd, evs[i].events);
            continue;
        }
        if (c->dead)
            continue;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
            conn_read(c);
        if (!c->dead && (evs[i].events & EPOLLOUT))
            mark_dirty(c);
    }
    if (s->timer_armed) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > s->timer_at.tv_sec ||
            (now.tv_sec == s->timer_at.tv_sec && now.tv_nsec >= s->timer_at.tv_nsec)) {
            s->timer_armed = false;
            s->timer_fn(s->timer_arg);
        }
    }
    reap_fdwatches(s);
    if (s->tick && ms_since(&s->last_tick) >= (long long)s->tick_ms) {
        clock_gettime(CLOCK_MONOTONIC, &s->last_tick);
        s->tick(s->tick_arg);
    }
    flush_dirty(s);
    /* Requests pipelined behind a finished stream or response. */
    for (struct http_conn *c = s->conns; c; c = c->next) {
        if (!c->dead && c->state == CONN_READING && c->in.len &&
            memmem(c->in.p, c->in.len, "\r\n\r\n", 4) != NULL) {
            while (c->state == CONN_READING && !c->dead && c->in.len && conn_try_request(c))
                ;
            mark_dirty(c);
        }
    }
    flush_dirty(s);
    if (ms_since(&s->last_sweep) >= 250) {
        /* Timeouts: slow or stalled requests, idle keep-alives, finished lingering closes. */
        clock_gettime(CLOCK_MONOTONIC, &s->last_sweep);
        for (struct http_conn *c = s->conns; c; c = c->next) {
            long long idle = ms_since(&c->last);
            if (c->dead)
                continue;
            if (c->lingering
                    ? idle >= HTTP_LINGER_MS
                    : c->state == CONN_READING &&
                          (c->in.len ? idle >= HTTP_HEAD_TIMEOUT_MS : idle >= HTTP_IDLE_TIMEOUT_MS))
                c->dead = true;
        }
    }
    for (struct http_conn *c = s->conns; c && !any_dead; c = c->next)
        any_dead = c->dead;
    if (any_dead)
        reap_dead(s);
    return 0;
}

int http_server_run(struct http_server *s)
{
    while (!s->stop) {
        int rc = http_server_step(s, http_server_next_timeout(s));
        if (rc)
            return rc;
    }
    return 0;
}
