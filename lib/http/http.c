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
#define HTTP_LINGER_MS 1000    /* input drained after an error answer, so it is read */
#define HTTP_SWEEP_MS 250      /* deadlines are checked this often: closes come at most this late */
#define HTTP_EVICT_AGE_MS 1000 /* a connection silent this long may be pushed out at the cap */
/* a burst of connections is taken in slices between other work */
#define HTTP_ACCEPTS_PER_ROUND 64
#define HTTP_ADDR_BUCKETS 1024
#define HTTP_WARN_EVERY_MS 10000
#define HTTP_KEEP_BUF (64 * 1024) /* larger buffers are freed between requests */
/*
 * Bytes read from one connection per round: a client streaming megabytes waits for the next
 * round (epoll reports it again) instead of holding the loop while others wait.
 */
#define HTTP_READ_PER_ROUND (64 * 1024)
/*
 * Bytes read per round from connections in the middle of a large request (HTTP_SMALL_REQUEST or
 * more of it already read) or draining after an answer that closes: a round (decrypting and
 * copying) stays well under a millisecond however many clients stream at once; the connections
 * left over are read first in the next round, in the order they were held back. The first
 * HTTP_SMALL_REQUEST bytes of a request (all of a typical review, CSR or probe) come first: they
 * are read whatever the round has read already, so small requests never queue behind uploads.
 */
#define HTTP_READ_ROUND_TOTAL (256 * 1024)
#define HTTP_SMALL_REQUEST (16 * 1024)
/* connections waiting for their address's byte budget are looked at again this often */
#define HTTP_THROTTLE_MS 10

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
    bool want_close;  /* close once out is flushed */
    bool lingering;   /* answered and shut for writing; draining input before the close */
    bool handshaking; /* TLS handshake not finished */
    bool shed;        /* over a cap: answered 503 and closed, not counted as served */
    bool expect_seen; /* the current request's Expect was looked at */
    bool unproven;    /* on srv's unproven list: no request dispatched yet */
    bool evicted;     /* closed to make room for another (counted in srv->nevicting) */
    bool throttled;   /* on srv's throttled list: its address's or the round's budget is spent */
    struct http_conn *uprev, *unext; /* the unproven list, oldest first */
    struct http_conn *tprev, *tnext; /* the throttled list, in the order they were held back */
    uint32_t addr;                   /* client IPv4 address, network order */
    unsigned nreq;                   /* requests dispatched */
    size_t held;                     /* request bytes accounted in srv->st.buffered_bytes */
    struct timespec accepted;
    struct timespec req_start; /* first byte of the current request (the accept for the first) */
    struct timespec out_since; /* when out last went from empty to not */
    struct timespec last;      /* end of the last answer (idle since), or the lingering start */
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
    struct http_limits lim;
    struct http_stats st;
    uint64_t nshed;                             /* conns being shed */
    uint64_t nevicting;                         /* evicted for the connection cap, not yet freed */
    struct http_conn *unproven, *unproven_tail; /* served conns without a request yet */
    struct http_conn *throttled, *throttled_tail; /* not read until there is budget again */
    size_t round_read;                            /* bytes read from clients this round */
    bool round_spent;                             /* a connection waits for the next round */
    unsigned round_handshakes;                    /* handshake steps this round */
    struct addr_count *addrs[HTTP_ADDR_BUCKETS];  /* served connections per client address */
    struct timespec accept_resume;                /* while st.accept_paused */
    struct timespec accept_warned;                /* last warning about accept errors */
    uint64_t accept_unwarned;                     /* errors since that warning */
};

/*
 * One client address (a chained hash table: 10,000s of clients): its served connections and,
 * with lim.addr_rate, its byte budget. An entry lives while the address has connections, and
 * after that while its budget is still refilling (an address cannot reset it by reconnecting).
 */
struct addr_count {
    uint32_t addr;
    unsigned n;
    double tokens;          /* request bytes it may send now; below 0 after a read overshoots */
    struct timespec refill; /* tokens is as of then */
    struct addr_count *next;
};

static struct addr_count **addr_slot(struct http_server *s, uint32_t addr)
{
    struct addr_count **pp = &s->addrs[(addr * 2654435761u) >> 22 & (HTTP_ADDR_BUCKETS - 1)];
    while (*pp && (*pp)->addr != addr)
        pp = &(*pp)->next;
    return pp;
}

static unsigned addr_conns(struct http_server *s, uint32_t addr)
{
    struct addr_count *a = *addr_slot(s, addr);
    return a ? a->n : 0;
}

/* Bring a's byte budget up to now: lim.addr_rate per second, at most lim.addr_burst. */
static void addr_refill(const struct http_server *s, struct addr_count *a,
                        const struct timespec *now)
{
    double sec =
        (double)(now->tv_sec - a->refill.tv_sec) + (double)(now->tv_nsec - a->refill.tv_nsec) / 1e9;

    a->refill = *now;
    if (sec > 0)
        a->tokens += sec * (double)s->lim.addr_rate;
    if (a->tokens > (double)s->lim.addr_burst)
        a->tokens = (double)s->lim.addr_burst;
}

/* addr's entry, made with a full budget when missing (NULL without memory). */
static struct addr_count *addr_get(struct http_server *s, uint32_t addr)
{
    struct addr_count **pp = addr_slot(s, addr);
    if (!*pp) {
        *pp = calloc(1, sizeof(**pp));
        if (!*pp)
            return NULL;
        (*pp)->addr = addr;
        (*pp)->tokens = (double)s->lim.addr_burst;
        clock_gettime(CLOCK_MONOTONIC, &(*pp)->refill);
    }
    return *pp;
}

static int addr_add(struct http_server *s, uint32_t addr)
{
    struct addr_count *a = addr_get(s, addr);
    if (!a)
        return -ENOMEM;
    a->n++;
    return 0;
}

/* Whether a, without connections, may go: nothing of its byte budget is left to refill. */
static bool addr_spare(const struct http_server *s, struct addr_count *a,
                       const struct timespec *now)
{
    if (a->n)
        return false;
    if (!s->lim.addr_rate)
        return true;
    addr_refill(s, a, now);
    return a->tokens >= (double)s->lim.addr_burst;
}

static void addr_remove(struct http_server *s, uint32_t addr)
{
    struct addr_count **pp = addr_slot(s, addr), *a = *pp;
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (a && --a->n == 0 && addr_spare(s, a, &now)) {
        *pp = a->next;
        free(a);
    }
}

/* Free the entries of addresses without connections whose budget has refilled. */
static void addr_sweep(struct http_server *s, const struct timespec *now)
{
    for (size_t i = 0; i < HTTP_ADDR_BUCKETS; i++) {
        struct addr_count **pp = &s->addrs[i];
        while (*pp) {
            struct addr_count *a = *pp;
            if (addr_spare(s, a, now)) {
                *pp = a->next;
                free(a);
            } else {
                pp = &a->next;
            }
        }
    }
}

/*
 * Close c's socket now (its memory goes at the end of the round, when nothing can point at it):
 * a connection closed to make room must give its descriptor back before the next accept.
 */
static void conn_close_now(struct http_conn *c)
{
    epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->dead = true;
}

static void unproven_remove(struct http_conn *c)
{
    struct http_server *s = c->srv;

    if (!c->unproven)
        return;
    c->unproven = false;
    if (c->uprev)
        c->uprev->unext = c->unext;
    else
        s->unproven = c->unext;
    if (c->unext)
        c->unext->uprev = c->uprev;
    else
        s->unproven_tail = c->uprev;
    c->uprev = c->unext = NULL;
}

static void throttled_remove(struct http_conn *c)
{
    struct http_server *s = c->srv;

    if (!c->throttled)
        return;
    c->throttled = false;
    s->st.throttled_conns--;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        s->throttled = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        s->throttled_tail = c->tprev;
    c->tprev = c->tnext = NULL;
}

static void unproven_add(struct http_conn *c)
{
    struct http_server *s = c->srv;

    c->unproven = true;
    c->uprev = s->unproven_tail;
    c->unext = NULL;
    if (s->unproven_tail)
        s->unproven_tail->unext = c;
    else
        s->unproven = c;
    s->unproven_tail = c;
}

void http_limits_default(struct http_limits *l)
{
    memset(l, 0, sizeof(*l));
    l->request_ms = 10000;
    l->idle_ms = 120000;
    l->handshake_ms = 10000;
    l->write_ms = 30000;
    l->max_conns = 16384;
    l->max_buffered = 256u << 20;
    l->handshakes_per_round = 32;
    l->accept_backoff_ms = 100;
}

void http_server_set_limits(struct http_server *s, const struct http_limits *l)
{
    s->lim = *l;
}

void http_server_stats(const struct http_server *s, struct http_stats *out)
{
    *out = s->st;
}

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

static long long ms_between(const struct timespec *from, const struct timespec *to)
{
    return (to->tv_sec - from->tv_sec) * 1000LL + (to->tv_nsec - from->tv_nsec) / 1000000LL;
}

static long long ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return ms_between(t, &now);
}

static void now_plus(struct timespec *t, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

void http_server_set_timer(struct http_server *s, long ms, http_tick_fn fn, void *arg)
{
    if (ms < 0) {
        s->timer_armed = false;
        return;
    }
    now_plus(&s->timer_at, ms);
    s->timer_fn = fn;
    s->timer_arg = arg;
    s->timer_armed = true;
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
    http_limits_default(&s->lim);
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
    if (c->fd >= 0) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    if (c->ssl)
        SSL_free(c->ssl);
    buf_release(&c->in);
    buf_release(&c->out);
    http__parser_reset(&c->parser);
    s->st.buffered_bytes -= c->held;
    s->st.conns--;
    unproven_remove(c);
    throttled_remove(c);
    if (c->evicted)
        s->nevicting--;
    if (c->handshaking)
        s->st.handshaking--;
    if (c->shed)
        s->nshed--;
    else
        addr_remove(s, c->addr);
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
    for (size_t i = 0; i < HTTP_ADDR_BUCKETS; i++) {
        while (s->addrs[i]) {
            struct addr_count *a = s->addrs[i];
            s->addrs[i] = a->next;
            free(a);
        }
    }
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

static bool input_paused(const struct http_conn *c)
{
    return c->state != CONN_READING && !c->lingering && c->in.len >= HTTP_MAX_HEAD;
}

/*
 * Bring srv->st.buffered_bytes up to date with the request bytes c holds (received and not yet
 * handed over; buffers grow by doubling, so memory is at most twice that).
 */
static void conn_account(struct http_conn *c)
{
    size_t held = c->in.len + http__parser_held(&c->parser);
    c->srv->st.buffered_bytes += held - c->held; /* modular: the total stays exact */
    c->held = held;
}

static void conn_update_events(struct http_conn *c)
{
    struct epoll_event ev = {0};
    /*
     * input piling up behind a request being answered, or past the address's byte budget, waits
     * in the kernel, not here
     */
    if (!input_paused(c) && !c->throttled)
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
    if (!c->out.len && c->out.cap > HTTP_KEEP_BUF)
        buf_release(&c->out); /* a big answer's buffer is not kept for the connection's life */
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
    if (!c->out.len)
        clock_gettime(CLOCK_MONOTONIC, &c->out_since);
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
    case 408:
        return "Request Timeout";
    case 413:
        return "Request Entity Too Large";
    case 417:
        return "Expectation Failed";
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
    c->req_start = c->last; /* a request pipelined behind this one starts now */
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

int http_conn_takeover(struct http_conn *c, int *fd, SSL **ssl, char **early, size_t *early_len)
{
    char *copy = NULL;

    if (c->dead || c->out.len || c->tls_want_write || c->fd < 0)
        return -EBUSY;
    if (c->in.len) {
        copy = malloc(c->in.len);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, c->in.p, c->in.len);
    }
    epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    *fd = c->fd;
    *ssl = c->ssl;
    *early = copy;
    *early_len = c->in.len;
    /* conn_free at the end of the round releases only the memory */
    c->fd = -1;
    c->ssl = NULL;
    c->on_close = NULL;
    buf_consume(&c->in, c->in.len);
    c->want_close = true;
    c->state = CONN_CLOSING;
    c->dead = true;
    mark_dirty(c);
    return 0;
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
    c->req_start = c->last;
    queue(c, "0\r\n\r\n", 5);
    c->on_close = NULL;
    c->state = c->want_close ? CONN_CLOSING : CONN_READING;
    mark_dirty(c);
}

uint32_t http_conn_peer_v4(const struct http_conn *c)
{
    return c->addr;
}

size_t http_conn_backlog(const struct http_conn *c)
{
    return c->out.len;
}

static const char *status_reason(int status)
{
    switch (status) {
    case 408:
        return "Timeout";
    case 413:
        return "RequestEntityTooLarge";
    case 417:
        return "ExpectationFailed";
    case 501:
        return "NotImplemented";
    case 503:
        return "ServiceUnavailable";
    default:
        return "BadRequest";
    }
}

/* Answer with a Kubernetes Status and close; counts the answer. */
static void respond_error_close(struct http_conn *c, int status, const char *msg)
{
    struct http_server *s = c->srv;
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
                     "\"Failure\",\"message\":\"%s\",\"reason\":\"%s\",\"code\":%d}",
                     msg, status_reason(status), status);

    if (status == 413)
        s->st.too_large++;
    else if (status == 400 || status == 417 || status == 501)
        s->st.bad_requests++;
    c->want_close = true;
    http_respond(c, status, "application/json", body, (size_t)n,
                 status == 503 ? "Retry-After: 1\r\n" : NULL);
}

/* Over a cap at accept: 503 at once (plain) or once the handshake is done (TLS). */
static void shed_answer(struct http_conn *c)
{
    respond_error_close(c, 503, "server busy: too many connections, retry later");
    mark_dirty(c);
}

/*
 * Look at the Expect header of a request whose head is complete: 417 for anything but
 * 100-continue; for 100-continue, 503 when the body would go over the buffered-bytes cap, else
 * 100 Continue (a body over max_body got 413 from the parser already). Returns false when the
 * request was refused.
 */
static bool expect_check(struct http_conn *c, bool body_here)
{
    struct http_server *s = c->srv;
    const char *ex = http_req_header(&c->parser.req, "expect");

    c->expect_seen = true;
    if (!ex)
        return true;
    if (strcasecmp(ex, "100-continue") != 0) {
        respond_error_close(c, 417, "only Expect: 100-continue is supported");
        return false;
    }
    if (body_here)
        return true;
    if (s->lim.max_buffered &&
        s->st.buffered_bytes + c->parser.content_length > s->lim.max_buffered) {
        s->st.shed_buffered++;
        respond_error_close(c, 503, "server busy: too many request bytes in flight, retry later");
        return false;
    }
    queue(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    s->st.continues++;
    return true;
}

/* Try to parse and dispatch one request from c->in. Returns true if one was dispatched. */
static bool conn_try_request(struct http_conn *c)
{
    struct http_server *s = c->srv;
    size_t consumed = 0;
    const char *conn_hdr;
    int rc = http__parse(&c->parser, c->in.p, c->in.len, s->max_body, &consumed);

    if (rc == HTTP_PARSE_FAIL) {
        respond_error_close(c, c->parser.status, c->parser.error);
        http__parser_reset(&c->parser);
        return false;
    }
    if (c->parser.have_head && !c->expect_seen && !expect_check(c, rc == HTTP_PARSE_DONE)) {
        http__parser_reset(&c->parser);
        return false;
    }
    if (rc == HTTP_PARSE_MORE)
        return false;
    c->expect_seen = false;
    c->nreq++;
    unproven_remove(c);
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
    if (!c->in.len && c->in.cap > HTTP_KEEP_BUF)
        buf_release(&c->in); /* an idle keep-alive connection holds no big buffer */
    conn_account(c);
    return true;
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * At the buffered-bytes cap, the request that has been arriving the longest (older than c's)
 * gives way: it is closed and its bytes freed, so that requests arriving at a normal pace (a
 * review comes whole in a millisecond) are not refused while slow ones hold the memory. Returns
 * false when c's own request is the oldest (c is then refused).
 */
static bool evict_partial(struct http_conn *c)
{
    struct http_server *s = c->srv;
    struct http_conn *v = NULL;

    for (struct http_conn *x = s->conns; x; x = x->next) {
        if (x == c || x->dead || x->state != CONN_READING || !x->held)
            continue;
        if (ts_before(&x->req_start, v ? &v->req_start : &c->req_start))
            v = x;
    }
    if (!v)
        return false;
    s->st.buffered_bytes -= v->held;
    v->held = 0;
    conn_close_now(v);
    s->st.evicted_buffered++;
    return true;
}

static void handshake_done(struct http_conn *c)
{
    c->handshaking = false;
    c->srv->st.handshaking--;
    if (c->shed)
        shed_answer(c);
}

/*
 * c's address has spent its byte budget (or the round has, round_spent): c is not read until it
 * refills (resume_throttled).
 */
static void conn_throttle(struct http_conn *c, bool round_spent)
{
    struct http_server *s = c->srv;

    if (c->throttled)
        return; /* already held: it keeps its place */
    if (round_spent)
        s->round_spent = true;
    else
        s->st.throttled++;
    c->throttled = true;
    c->tprev = s->throttled_tail;
    c->tnext = NULL;
    if (s->throttled_tail)
        s->throttled_tail->tnext = c;
    else
        s->throttled = c;
    s->throttled_tail = c;
    s->st.throttled_conns++;
    conn_update_events(c);
}

static void conn_read(struct http_conn *c)
{
    struct http_server *s = c->srv;
    char tmp[65536];
    size_t got = 0, limit = HTTP_READ_PER_ROUND;
    struct addr_count *a = NULL;

    if (c->handshaking) {
        /* a flood of handshakes must leave the loop to others: the rest wait for a later round */
        if (s->lim.handshakes_per_round && s->round_handshakes >= s->lim.handshakes_per_round) {
            s->st.handshakes_delayed++;
            return;
        }
        s->round_handshakes++;
    }
    if (c->handshaking) {
        /* the handshake's budget applies */
    } else if (c->lingering || c->shed || c->held >= HTTP_SMALL_REQUEST) {
        if (s->round_read >= HTTP_READ_ROUND_TOTAL) {
            conn_throttle(c, true);
            return;
        }
        if (limit > HTTP_READ_ROUND_TOTAL - s->round_read)
            limit = HTTP_READ_ROUND_TOTAL - s->round_read;
    } else {
        limit = HTTP_SMALL_REQUEST - c->held; /* the rest, if any, in its turn */
    }
    if (s->lim.addr_rate) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        a = addr_get(s, c->addr); /* NULL (no memory): not limited */
        if (a)
            addr_refill(s, a, &now);
        if (a && !c->handshaking) {
            if (a->tokens < 1) {
                conn_throttle(c, false);
                return;
            }
            if (a->tokens < (double)limit)
                limit = (size_t)a->tokens;
        }
    }
    for (;;) {
        size_t want = got < limit ? limit - got : sizeof(tmp);
        ssize_t n;
        /* the rest waits in the socket (nothing decrypted is left in OpenSSL's buffers) */
        if (got >= limit && !(c->ssl && SSL_has_pending(c->ssl)))
            break;
        if (want > sizeof(tmp))
            want = sizeof(tmp);
        if (c->ssl) {
            int r;
            ERR_clear_error();
            r = SSL_read(c->ssl, tmp, (int)want);
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
            n = recv(c->fd, tmp, want, 0);
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
        if (c->handshaking)
            handshake_done(c);
        got += (size_t)n;
        s->round_read += (size_t)n;
        if (a)
            a->tokens -= (double)n;
        /* draining after an answer that closes: nothing more is parsed */
        if (c->lingering || (c->want_close && c->state == CONN_CLOSING))
            continue;
        if (!c->in.len && c->nreq)
            clock_gettime(CLOCK_MONOTONIC, &c->req_start);
        while (c->state == CONN_READING && s->lim.max_buffered &&
               s->st.buffered_bytes + (size_t)n > s->lim.max_buffered && evict_partial(c))
            ;
        if (c->state == CONN_READING && s->lim.max_buffered &&
            s->st.buffered_bytes + (size_t)n > s->lim.max_buffered) {
            s->st.shed_buffered++;
            http__parser_reset(&c->parser);
            respond_error_close(c, 503,
                                "server busy: too many request bytes in flight, retry later");
            mark_dirty(c);
            break;
        }
        if (buf_append(&c->in, tmp, (size_t)n)) {
            c->dead = true;
            return;
        }
        conn_account(c);
        if (input_paused(c)) {
            mark_dirty(c); /* stop polling for input until the answer goes out */
            break;
        }
    }
    if (c->handshaking && c->ssl && SSL_is_init_finished(c->ssl))
        handshake_done(c);
    /* the budget is spent (and more is likely waiting): held back until it refills */
    if (a && a->tokens < 1 && !c->handshaking)
        conn_throttle(c, false);
    if (c->lingering)
        return;
    while (c->state == CONN_READING && !c->dead && c->in.len) {
        if (!conn_try_request(c))
            break;
    }
    conn_account(c);
}

/*
 * At the start of a round, before new input: read the connections held back whose address has
 * budget again, in the order they were held, while the round's budget lasts.
 */
static void resume_throttled(struct http_server *s)
{
    struct timespec now;
    struct http_conn *c, *next;

    clock_gettime(CLOCK_MONOTONIC, &now);
    for (c = s->throttled; c && !s->round_spent; c = next) {
        struct addr_count *a = *addr_slot(s, c->addr);

        next = c->tnext;
        if (c->dead)
            continue; /* conn_free takes it off the list */
        if (a) {
            addr_refill(s, a, &now);
            if (a->tokens < 1)
                continue;
        }
        throttled_remove(c);
        conn_update_events(c);
        /* OpenSSL may hold decrypted bytes epoll knows nothing of: read now */
        if (!input_paused(c))
            conn_read(c); /* may put c back at the end of the list, behind next */
    }
}

static void accept_resume(struct http_server *s)
{
    struct epoll_event ev = {0};

    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) == 0)
        s->st.accept_paused = 0;
}

/*
 * Out of descriptors (or memory): the pending connection stays in the backlog and epoll would
 * report it again at once, so the loop would spin. Stop watching the listener for a while and
 * say so, at most every HTTP_WARN_EVERY_MS.
 */
static void accept_pause(struct http_server *s, int err)
{
    s->st.accept_errors++;
    s->accept_unwarned++;
    if (!s->accept_warned.tv_sec || ms_since(&s->accept_warned) >= HTTP_WARN_EVERY_MS) {
        log_warn("msg=\"cannot accept connections, pausing\" port=%d error=\"%s\" pause_ms=%u "
                 "failures=%llu",
                 s->port, strerror(err), s->lim.accept_backoff_ms,
                 (unsigned long long)s->accept_unwarned);
        s->accept_unwarned = 0;
        clock_gettime(CLOCK_MONOTONIC, &s->accept_warned);
    }
    if (epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL) == 0) {
        s->st.accept_paused = 1;
        now_plus(&s->accept_resume, (long)s->lim.accept_backoff_ms);
    }
}

/*
 * At the connection cap, a new connection takes the place of the oldest one that has not sent
 * a whole request yet (a slow or silent client), rather than being refused: clients that work
 * (the API server's keep-alive connections, which have) are never pushed out, and a flood of
 * idle connections cannot lock them out. Returns false when every connection has proven itself.
 */
static bool evict_unproven(struct http_server *s)
{
    struct http_conn *v = s->unproven;

    /*
     * Only one silent for a while: a flood of new connections must not push each other out in
     * a loop (each would be closed before it could even send its request).
     */
    if (!v || ms_since(&v->accepted) < HTTP_EVICT_AGE_MS)
        return false;
    unproven_remove(v);
    conn_close_now(v);
    v->evicted = true;
    s->nevicting++;
    s->st.evicted_conns++;
    return true;
}

/* Why a new connection from addr cannot be served (a counter to bump), or NULL. */
static uint64_t *over_cap(struct http_server *s, uint32_t addr)
{
    if (s->lim.max_conns_per_addr && addr_conns(s, addr) >= s->lim.max_conns_per_addr)
        return &s->st.shed_per_addr;
    if (s->lim.max_conns && s->st.conns - s->nshed - s->nevicting >= s->lim.max_conns &&
        !evict_unproven(s))
        return &s->st.shed_conns;
    return NULL;
}

static void do_accept(struct http_server *s)
{
    /* answering 503 costs a handshake with TLS: only so many at once, the rest just close */
    uint64_t shed_max = 64 + s->lim.max_conns / 16;

    for (int i = 0; i < HTTP_ACCEPTS_PER_ROUND; i++) {
        struct epoll_event ev = {0};
        struct sockaddr_in peer;
        socklen_t plen = sizeof(peer);
        struct http_conn *c;
        uint64_t *shed;
        uint32_t addr;
        int one = 1;
        int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
                accept_pause(s, e);
            return;
        }
        addr = peer.sin_family == AF_INET ? peer.sin_addr.s_addr : 0;
        shed = over_cap(s, addr);
        if (shed && s->nshed >= shed_max) {
            s->st.shed_closed++;
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        if (!c || (!shed && addr_add(s, addr))) {
            free(c);
            close(fd);
            return;
        }
        c->tag = TAG_CONN;
        c->srv = s;
        c->fd = fd;
        c->addr = addr;
        c->shed = shed != NULL;
        clock_gettime(CLOCK_MONOTONIC, &c->accepted);
        c->req_start = c->last = c->accepted;
        buf_init(&c->in);
        buf_init(&c->out);
        http__parser_init(&c->parser);
        s->st.conns++;
        s->st.accepted++;
        if (shed) {
            (*shed)++;
            s->nshed++;
        } else {
            unproven_add(c);
        }
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        if (s->ssl_ctx) {
            c->ssl = SSL_new(s->ssl_ctx);
            if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
                c->dead = true;
                continue;
            }
            /* idle connections give their TLS buffers back (10,000s of agents) */
            SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
            SSL_set_accept_state(c->ssl);
            c->handshaking = true;
            s->st.handshaking++;
        }
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            c->dead = true;
            continue;
        }
        if (c->shed && !c->ssl)
            shed_answer(c);
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

/*
 * Close what is past its deadline (see struct http_limits). A request that did not arrive whole
 * gets a 408, written if the socket takes it at once.
 */
static void conn_check_deadlines(struct http_conn *c, const struct timespec *now)
{
    struct http_server *s = c->srv;

    if (c->lingering) {
        c->dead = ms_between(&c->last, now) >= HTTP_LINGER_MS;
        return;
    }
    if (c->out.len && ms_between(&c->out_since, now) >= s->lim.write_ms) {
        s->st.timeouts_write++;
        c->dead = true;
    } else if (c->handshaking) {
        if (ms_between(&c->accepted, now) >= s->lim.handshake_ms) {
            s->st.timeouts_handshake++;
            c->dead = true;
        }
    } else if (c->state != CONN_READING) {
        /* being answered: the handler's own deadlines apply */
    } else if (c->in.len || !c->nreq) {
        if (ms_between(&c->req_start, now) >= s->lim.request_ms) {
            char msg[128];
            s->st.timeouts_request++;
            snprintf(msg, sizeof(msg), "request timeout: the request did not arrive within %u ms",
                     s->lim.request_ms);
            http__parser_reset(&c->parser);
            respond_error_close(c, 408, msg);
            conn_flush(c);
            c->dead = true;
        }
    } else if (ms_between(&c->last, now) >= s->lim.idle_ms) {
        s->st.timeouts_idle++;
        c->dead = true;
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
    if (s->conns && timeout > HTTP_SWEEP_MS)
        timeout = HTTP_SWEEP_MS; /* deadlines */
    if (s->round_spent)
        return 0; /* connections wait for the next round's budget */
    if (s->throttled && timeout > HTTP_THROTTLE_MS)
        timeout = HTTP_THROTTLE_MS;
    if (s->st.accept_paused && timeout > (int)s->lim.accept_backoff_ms)
        timeout = (int)s->lim.accept_backoff_ms;
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
    s->round_handshakes = 0;
    s->round_read = 0;
    s->round_spent = false;
    if (s->throttled)
        resume_throttled(s);
    if (s->st.accept_paused && ms_since(&s->accept_resume) >= 0)
        accept_resume(s);
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
        if (c->throttled) {
            /* held back (no EPOLLIN asked): only a reset or hang-up is reported, and ends it */
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                c->dead = true;
        } else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
            conn_read(c);
        }
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
    if (ms_since(&s->last_sweep) >= HTTP_SWEEP_MS) {
        clock_gettime(CLOCK_MONOTONIC, &s->last_sweep);
        for (struct http_conn *c = s->conns; c; c = c->next)
            if (!c->dead)
                conn_check_deadlines(c, &s->last_sweep);
        if (s->lim.addr_rate)
            addr_sweep(s, &s->last_sweep);
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
