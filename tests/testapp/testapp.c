/*
 * testapp.c - the test workload behind the image weft/testapp (see docs/kubelet-lite.md).
 *
 * Server (default mode, or `testapp serve`): HTTP/1.1 on $PORT (default 8080), all addresses
 * (IPv6 dual-stack socket, IPv4 fallback) or only $ADDR, one thread per connection, keep-alive
 * honoured.
 *   GET /                  200, body "<pod name>\n" ($POD_NAME, else the hostname)
 *   ?fail=N / FAIL_PERCENT exactly N of every 100 requests (counted per process) answer 503;
 *                          with FAIL_SEED set, each request fails with probability N/100
 *                          instead, drawn from a generator seeded with FAIL_SEED (random, not
 *                          spread evenly: a retry may fail again)
 *   DELAY_MS               every answer but /healthz waits this long (a hanging endpoint)
 *   /healthz               200 "ok\n", or the code set with /sethealth?code=N
 *   /sethealth?code=N      sets the /healthz answer (readiness tests); 200 "healthz=N\n"
 *   /sleep?ms=N            answers after N milliseconds
 *   /echo                  200, body: the request line and headers as received
 *   /bytes?n=N             200, body: N bytes "x" (0..16384, default 1024; bench/mesh_bench.sh)
 * Every request logs one line to stdout. SIGTERM or SIGINT: close the listener, exit 0.
 *
 * Client: `testapp get URL [-n COUNT] [-t TIMEOUT_MS] [-i INTERVAL_MS] [-s] [-H 'Name: value']...`
 * sends COUNT requests (a new connection each, so per-connection load balancing shows), INTERVAL_MS
 * apart (start to start; default 0), and prints one line per request: "<status> <body without
 * trailing newline>" or "ERR <reason>", with -s prefixed by the Unix time in milliseconds at which
 * the request started and the milliseconds it took (traffic tests time outages from them). Exit
 * status 0 when
 * every request got an HTTP response, 1 otherwise, 2 on usage errors. Only http:// URLs with a
 * literal IPv4 address or a name getaddrinfo resolves.
 *
 * Load: `testapp load URL [-n COUNT] [-d SECONDS] [-r RATE] [-c CONNS] [-t TIMEOUT_MS]
 * [-X METHOD] [-H 'Name: value']...` sends requests over CONNS keep-alive connections (1) at
 * RATE requests per second in all (0: as fast as answers come), until COUNT requests were sent
 * or SECONDS passed (or SIGTERM/SIGINT), reconnecting after a failure or a `Connection: close`.
 * It prints "requests N ok N failed N" (ok: an HTTP answer with status < 500; failed: no HTTP
 * answer, or 5xx), then one line per distinct answer, "<count> <status> <body's first line>"
 * (or "<count> ERR <reason>"), most frequent first. Exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define REQ_MAX 16384

struct app {
    char name[256];
    int fail_percent;
    int fail_random; /* FAIL_SEED set: failures drawn at random */
    uint64_t rng;    /* xorshift64* state, under log_lock */
    long delay_ms;   /* DELAY_MS */
    atomic_uint counter;
    atomic_int health_code;
    pthread_mutex_t log_lock;
};

struct conn {
    struct app *app;
    int fd;
    char peer[INET6_ADDRSTRLEN + 8];
};

/* Exactly n of every 100 consecutive requests fail (Bresenham spread), n in 0..100; with
 * FAIL_SEED, each fails with probability n/100 from the seeded generator. */
static int should_fail(struct app *app, int n)
{
    unsigned k;

    if (n <= 0)
        return 0;
    if (n >= 100)
        return 1;
    if (app->fail_random) {
        uint64_t x;

        pthread_mutex_lock(&app->log_lock);
        app->rng ^= app->rng >> 12;
        app->rng ^= app->rng << 25;
        app->rng ^= app->rng >> 27;
        x = app->rng * 2685821657736338717ull;
        pthread_mutex_unlock(&app->log_lock);
        return (x >> 11) % 10000 < (uint64_t)n * 100;
    }
    k = atomic_fetch_add(&app->counter, 1) % 100;
    return (k * (unsigned)n) / 100 != ((k + 1) * (unsigned)n) / 100;
}

/* Value of query parameter key in q ("a=1&b=2"), as an int; def when absent. */
static long query_int(const char *q, const char *key, long def)
{
    size_t kl = strlen(key);

    while (q && *q) {
        if (strncmp(q, key, kl) == 0 && q[kl] == '=')
            return strtol(q + kl + 1, NULL, 10);
        q = strchr(q, '&');
        if (q)
            q++;
    }
    return def;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void log_line(struct app *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(struct app *app, const char *fmt, ...)
{
    char ts[64];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    pthread_mutex_lock(&app->log_lock);
    printf("%s.%03ldZ ", ts, (long)(tv.tv_usec / 1000));
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&app->log_lock);
}

static const char *reason_of(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

/* Handle one parsed request; returns -1 when the connection must close. */
static int handle(struct conn *c, char *req, size_t head_len, int keep)
{
    char method[16] = "", target[2048] = "", body[REQ_MAX + 512], resp[REQ_MAX + 1024];
    char *path, *q = NULL;
    int code = 200, n;
    size_t blen;

    if (sscanf(req, "%15s %2047s", method, target) != 2) {
        code = 400;
        snprintf(body, sizeof(body), "bad request line\n");
        keep = 0;
        goto send;
    }
    path = target;
    q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    if (strcmp(path, "/healthz") == 0) {
        code = atomic_load(&c->app->health_code);
        snprintf(body, sizeof(body), "%s\n", code == 200 ? "ok" : "unhealthy");
    } else if (strcmp(path, "/sethealth") == 0) {
        long v = query_int(q, "code", 200);
        if (v < 100 || v > 599) {
            code = 400;
            snprintf(body, sizeof(body), "code must be 100..599\n");
        } else {
            atomic_store(&c->app->health_code, (int)v);
            snprintf(body, sizeof(body), "healthz=%ld\n", v);
        }
    } else if (strcmp(path, "/bytes") == 0) {
        long v = query_int(q, "n", 1024);
        if (v < 0 || v > REQ_MAX) {
            code = 400;
            snprintf(body, sizeof(body), "n must be 0..%d\n", REQ_MAX);
        } else {
            memset(body, 'x', (size_t)v);
            body[v] = '\0';
        }
    } else if (strcmp(path, "/echo") == 0) {
        size_t l = head_len < sizeof(body) - 1 ? head_len : sizeof(body) - 1;
        memcpy(body, req, l);
        body[l] = '\0';
    } else {
        if (c->app->delay_ms > 0) {
            struct timespec ts = {c->app->delay_ms / 1000, (c->app->delay_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) && errno == EINTR)
                ;
        }
        if (strcmp(path, "/sleep") == 0) {
            long ms = query_int(q, "ms", 0);
            if (ms > 0) {
                struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
                while (nanosleep(&ts, &ts) && errno == EINTR)
                    ;
            }
        }
        if (should_fail(c->app, (int)query_int(q, "fail", c->app->fail_percent))) {
            code = 503;
            snprintf(body, sizeof(body), "fail %s\n", c->app->name);
        } else {
            snprintf(body, sizeof(body), "%s\n", c->app->name);
        }
    }
send:
    blen = strlen(body);
    n = snprintf(resp, sizeof(resp),
                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                 "Connection: %s\r\n\r\n",
                 code, reason_of(code), blen, keep ? "keep-alive" : "close");
    if (n < 0 || (size_t)n + blen > sizeof(resp))
        return -1;
    memcpy(resp + n, body, blen);
    log_line(c->app, "%s \"%s %s%s%s\" %d %zu", c->peer, method, target, q ? "?" : "", q ? q : "",
             code, blen);
    if (write_all(c->fd, resp, (size_t)n + blen))
        return -1;
    return keep ? 0 : -1;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    char buf[REQ_MAX + 1];
    size_t have = 0;

    for (;;) {
        char *end = NULL, *cl;
        size_t head_len, body_len = 0;
        int keep;

        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (!end) {
            ssize_t r;
            if (have >= REQ_MAX)
                break;
            r = recv(c->fd, buf + have, REQ_MAX - have, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            have += (size_t)r;
            continue;
        }
        head_len = (size_t)(end - buf) + 4;
        end[2] = '\0'; /* keep the last header's CRLF for /echo */
        cl = strcasestr(buf, "\r\ncontent-length:");
        if (cl)
            body_len = (size_t)strtoul(cl + 17, NULL, 10);
        {
            /* HTTP/1.1 keeps the connection unless the client asks to close it. */
            char *eol = strstr(buf, "\r\n"), *ver = strstr(buf, " HTTP/1.1");
            keep = ver && eol && ver < eol && !strcasestr(buf, "\r\nconnection: close");
        }
        if (handle(c, buf, head_len - 2, keep))
            break;
        /* Discard the request body, then keep what follows (pipelined requests). */
        while (have < head_len + body_len && body_len <= REQ_MAX) {
            ssize_t r = recv(c->fd, buf + have, REQ_MAX - have, 0);
            if (r <= 0)
                goto done;
            have += (size_t)r;
        }
        if (body_len > REQ_MAX)
            break;
        memmove(buf, buf + head_len + body_len, have - head_len - body_len);
        have -= head_len + body_len;
    }
done:
    close(c->fd);
    free(c);
    return NULL;
}

static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;

    sigwait(set, &sig);
    printf("testapp: signal %d, exiting\n", sig);
    fflush(stdout);
    _exit(0);
    return NULL;
}

static int listen_on(int port)
{
    int fd, one = 1, zero = 0;
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    const char *only = getenv("ADDR");

    if (only && *only) {
        struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE,
                                 .ai_socktype = SOCK_STREAM},
                        *res = NULL;
        char ps[8];

        snprintf(ps, sizeof(ps), "%d", port);
        if (getaddrinfo(only, ps, &hints, &res) || !res)
            return -1;
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 128)) {
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(res);
        return fd;
    }

    fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        memset(&a6, 0, sizeof(a6));
        a6.sin6_family = AF_INET6;
        a6.sin6_addr = in6addr_any;
        a6.sin6_port = htons((unsigned short)port);
        if (bind(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0 && listen(fd, 128) == 0)
            return fd;
        close(fd);
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a4, 0, sizeof(a4));
    a4.sin_family = AF_INET;
    a4.sin_addr.s_addr = htonl(INADDR_ANY);
    a4.sin_port = htons((unsigned short)port);
    if (bind(fd, (struct sockaddr *)&a4, sizeof(a4)) || listen(fd, 128)) {
        close(fd);
        return -1;
    }
    return fd;
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], host, sizeof(host));
        else
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    }
    snprintf(out, n, "%s:%d", host, port);
}

static int serve(void)
{
    static struct app app; /* lives for the process; threads hold pointers to it */
    const char *s;
    sigset_t set;
    pthread_t th;
    pthread_attr_t attr;
    int lfd, port = 8080;

    pthread_mutex_init(&app.log_lock, NULL);
    atomic_store(&app.health_code, 200);
    s = getenv("POD_NAME");
    if (s && *s)
        snprintf(app.name, sizeof(app.name), "%s", s);
    else if (gethostname(app.name, sizeof(app.name) - 1))
        snprintf(app.name, sizeof(app.name), "testapp");
    s = getenv("FAIL_PERCENT");
    app.fail_percent = s ? atoi(s) : 0;
    s = getenv("FAIL_SEED");
    if (s && *s) {
        app.fail_random = 1;
        app.rng = strtoull(s, NULL, 10) * 0x9E3779B97F4A7C15ull + 1; /* never 0 */
    }
    s = getenv("DELAY_MS");
    app.delay_ms = s ? atol(s) : 0;
    s = getenv("PORT");
    if (s && *s)
        port = atoi(s);
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "testapp: bad PORT %s\n", s ? s : "");
        return 2;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    lfd = listen_on(port);
    if (lfd < 0) {
        fprintf(stderr, "testapp: cannot listen on port %d: %s\n", port, strerror(errno));
        return 1;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, signal_main, &set)) {
        fprintf(stderr, "testapp: cannot start the signal thread\n");
        return 1;
    }
    printf("testapp: %s listening on port %d (fail %d%%%s, delay %ld ms)\n", app.name, port,
           app.fail_percent, app.fail_random ? " at random" : "", app.delay_ms);
    fflush(stdout);
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        struct conn *c;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
                continue;
            fprintf(stderr, "testapp: accept: %s\n", strerror(errno));
            return 1;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->app = &app;
        c->fd = fd;
        peer_name(&ss, c->peer, sizeof(c->peer));
        if (pthread_create(&th, &attr, conn_main, c)) {
            close(fd);
            free(c);
        }
    }
}

/* ------------------------------------------------------------------ client */

struct url {
    char host[256];
    char port[8];
    char path[2048];
};

static int url_parse(const char *s, struct url *u)
{
    const char *h, *slash, *colon;
    size_t hl;

    if (strncmp(s, "http://", 7) != 0)
        return -1;
    h = s + 7;
    slash = strchr(h, '/');
    hl = slash ? (size_t)(slash - h) : strlen(h);
    colon = memchr(h, ':', hl);
    if (colon) {
        if ((size_t)(colon - h) >= sizeof(u->host) ||
            hl - (size_t)(colon - h) - 1 >= sizeof(u->port))
            return -1;
        memcpy(u->host, h, (size_t)(colon - h));
        u->host[colon - h] = '\0';
        memcpy(u->port, colon + 1, hl - (size_t)(colon - h) - 1);
        u->port[hl - (size_t)(colon - h) - 1] = '\0';
    } else {
        if (hl >= sizeof(u->host))
            return -1;
        memcpy(u->host, h, hl);
        u->host[hl] = '\0';
        snprintf(u->port, sizeof(u->port), "80");
    }
    snprintf(u->path, sizeof(u->path), "%s", slash ? slash : "/");
    return u->host[0] ? 0 : -1;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short ev, int ms)
{
    struct pollfd p = {fd, ev, 0};
    int r;
    do {
        r = poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    return r > 0 ? 0 : -1;
}

/* The client's result line, after "<start ms> <elapsed ms> " with -s. */
static bool say_stamp;
static long long say_t0;

static long long now_ms(void);

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    va_list ap;

    if (say_stamp)
        printf("%lld %lld ", say_t0, now_ms() - say_t0);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

/* One request on a new connection. Prints the result line; returns 0 on an HTTP response. */
static int get_once(const struct url *u, const char *hdrs, int timeout_ms)
{
    struct addrinfo hints, *res = NULL;
    char req[4096], buf[65536];
    size_t have = 0;
    int fd = -1, rc = -1, code, err;
    socklen_t el = sizeof(err);
    char *body;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(u->host, u->port, &hints, &res) || !res) {
        say("ERR cannot resolve %s\n", u->host);
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        say("ERR socket: %s\n", strerror(errno));
        goto out;
    }
    if (connect(fd, res->ai_addr, res->ai_addrlen) && errno != EINPROGRESS) {
        say("ERR connect: %s\n", strerror(errno));
        goto out;
    }
    if (wait_fd(fd, POLLOUT, timeout_ms)) {
        say("ERR connect: timeout\n");
        goto out;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) || err) {
        say("ERR connect: %s\n", strerror(err));
        goto out;
    }
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: testapp\r\n%s"
             "Connection: close\r\n\r\n",
             u->path, u->host, u->port, hdrs);
    if (write_all(fd, req, strlen(req))) {
        say("ERR send: %s\n", strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t r;
        if (have >= sizeof(buf) - 1)
            break;
        if (wait_fd(fd, POLLIN, timeout_ms)) {
            say("ERR read: timeout\n");
            goto out;
        }
        r = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0) {
            say("ERR read: %s\n", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        have += (size_t)r;
    }
    buf[have] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1) {
        say("ERR bad response\n");
        goto out;
    }
    body = strstr(buf, "\r\n\r\n");
    body = body ? body + 4 : buf + have;
    while (have && (buf[have - 1] == '\n' || buf[have - 1] == '\r') && buf + have > body)
        buf[--have] = '\0';
    say("%d %s\n", code, body);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    fflush(stdout);
    return rc;
}

static int client(int argc, char **argv)
{
    struct url u;
    char hdrs[2048] = "";
    int count = 1, timeout_ms = 2000, interval_ms = 0, i, failed = 0;
    bool stamp = false;
    size_t hl = 0;
    const char *url = NULL;

    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            count = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            timeout_ms = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-i") == 0 && i + 1 < argc) {
            interval_ms = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-s") == 0) {
            stamp = true;
        } else if (strcmp(argv[i], "-H") == 0 && i + 1 < argc) {
            int n = snprintf(hdrs + hl, sizeof(hdrs) - hl, "%s\r\n", argv[++i]);
            if (n < 0 || (size_t)n >= sizeof(hdrs) - hl) {
                fprintf(stderr, "testapp: headers too long\n");
                return 2;
            }
            hl += (size_t)n;
        } else if (!url && argv[i][0] != '-') {
            url = argv[i];
        } else {
            url = NULL;
            break;
        }
    }
    if (!url || count < 1 || timeout_ms < 1 || interval_ms < 0 || url_parse(url, &u)) {
        fprintf(stderr, "usage: testapp get http://HOST[:PORT]/PATH [-n COUNT] [-t TIMEOUT_MS] "
                        "[-i INTERVAL_MS] [-s] [-H 'Name: value']...\n");
        return 2;
    }
    for (i = 0; i < count; i++) {
        long long t0 = now_ms(), left;

        say_stamp = stamp;
        say_t0 = t0;
        failed |= get_once(&u, hdrs, timeout_ms) != 0;
        left = t0 + interval_ms - now_ms();
        if (i + 1 < count && left > 0)
            nanosleep(&(struct timespec){left / 1000, (left % 1000) * 1000000L}, NULL);
    }
    return failed ? 1 : 0;
}

/* ------------------------------------------------------------------ load */

#define LOAD_KINDS 64

struct load {
    struct url u;
    char req[4096];
    long count;      /* 0: no limit */
    double deadline; /* monotonic seconds; 0: none */
    double interval; /* seconds between one connection's requests; 0: back to back */
    int timeout_ms;
    atomic_long sent;
    pthread_mutex_t lock;
    long total, ok, failed;
    struct {
        char key[160];
        long n;
    } kinds[LOAD_KINDS];
    int nkinds;
};

static volatile sig_atomic_t load_stop;

static void on_stop(int sig)
{
    (void)sig;
    load_stop = 1;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void load_count(struct load *l, const char *key, int ok)
{
    int i;

    pthread_mutex_lock(&l->lock);
    l->total++;
    if (ok)
        l->ok++;
    else
        l->failed++;
    for (i = 0; i < l->nkinds; i++)
        if (strcmp(l->kinds[i].key, key) == 0)
            break;
    if (i == l->nkinds && l->nkinds < LOAD_KINDS)
        snprintf(l->kinds[l->nkinds++].key, sizeof(l->kinds[0].key), "%s", key);
    if (i < l->nkinds)
        l->kinds[i].n++;
    pthread_mutex_unlock(&l->lock);
}

static int load_connect(struct load *l)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int fd, err = 0;
    socklen_t el = sizeof(err);

    if (getaddrinfo(l->u.host, l->u.port, &hints, &res) || !res)
        return -1;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) && errno != EINPROGRESS) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0 && (wait_fd(fd, POLLOUT, l->timeout_ms) ||
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) || err)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* One request on fd; the answer's status and first body line in key. 1 keep the connection,
 * 0 close it, -1 failed (key says why). */
static int load_once(struct load *l, int fd, char *key, size_t klen, int *status)
{
    char buf[65536];
    size_t have = 0;
    long clen = -1;
    char *end = NULL;

    if (write_all(fd, l->req, strlen(l->req))) {
        snprintf(key, klen, "ERR send: %s", strerror(errno));
        return -1;
    }
    for (;;) {
        ssize_t r;

        if (end && clen >= 0 && have >= (size_t)(end - buf) + 4 + (size_t)clen)
            break;
        if (have >= sizeof(buf) - 1) {
            snprintf(key, klen, "ERR answer too large");
            return -1;
        }
        if (wait_fd(fd, POLLIN, l->timeout_ms)) {
            snprintf(key, klen, "ERR read: timeout");
            return -1;
        }
        r = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0) {
            snprintf(key, klen, "ERR read: %s", r ? strerror(errno) : "connection closed");
            return -1;
        }
        have += (size_t)r;
        buf[have] = '\0';
        if (!end && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            char *cl = strcasestr(buf, "\r\ncontent-length:");
            if (!cl || cl > end) {
                snprintf(key, klen, "ERR answer without Content-Length");
                return -1;
            }
            clen = strtol(cl + 17, NULL, 10);
        }
    }
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
        snprintf(key, klen, "ERR bad response");
        return -1;
    }
    {
        char *body = end + 4, *nl;
        size_t n;

        body[clen] = '\0';
        nl = strpbrk(body, "\r\n");
        n = nl ? (size_t)(nl - body) : strlen(body);
        snprintf(key, klen, "%d %.*s", *status, (int)(n > 100 ? 100 : n), body);
        *end = '\0';
        return strcasestr(buf, "\r\nconnection: close") ? 0 : 1;
    }
}

static void *load_main(void *arg)
{
    struct load *l = arg;
    double next = now_s();
    int fd = -1;

    while (!load_stop) {
        char key[200];
        int st = 0, rc;
        long n = atomic_fetch_add(&l->sent, 1);

        if ((l->count && n >= l->count) || (l->deadline > 0 && now_s() >= l->deadline))
            break;
        if (l->interval > 0) {
            double d = next - now_s();
            if (d > 0) {
                struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
                nanosleep(&ts, NULL);
            }
            next += l->interval;
        }
        if (fd < 0 && (fd = load_connect(l)) < 0) {
            load_count(l, "ERR connect", 0);
            continue;
        }
        rc = load_once(l, fd, key, sizeof(key), &st);
        load_count(l, key, rc >= 0 && st < 500);
        if (rc <= 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

struct load_rank {
    long n;
    int i;
};

/* Most frequent first. */
static int load_cmp(const void *a, const void *b)
{
    long na = ((const struct load_rank *)a)->n, nb = ((const struct load_rank *)b)->n;

    return na < nb ? 1 : na > nb ? -1 : 0;
}

static int load_run(int argc, char **argv)
{
    static struct load l;
    char hdrs[2048] = "", method[16] = "GET";
    const char *url = NULL;
    double rate = 0, secs = 0;
    int conns = 1, i;
    size_t hl = 0;
    pthread_t th[256];
    struct load_rank order[LOAD_KINDS];

    l.timeout_ms = 5000;
    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            l.count = atol(argv[++i]);
        else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            rate = atof(argv[++i]);
        else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            conns = atoi(argv[++i]);
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            l.timeout_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "-X") == 0 && i + 1 < argc)
            snprintf(method, sizeof(method), "%s", argv[++i]);
        else if (strcmp(argv[i], "-H") == 0 && i + 1 < argc) {
            int n = snprintf(hdrs + hl, sizeof(hdrs) - hl, "%s\r\n", argv[++i]);
            if (n < 0 || (size_t)n >= sizeof(hdrs) - hl) {
                fprintf(stderr, "testapp: headers too long\n");
                return 2;
            }
            hl += (size_t)n;
        } else if (!url && argv[i][0] != '-')
            url = argv[i];
        else {
            url = NULL;
            break;
        }
    }
    if (!url || url_parse(url, &l.u) || conns < 1 || conns > 256 || l.timeout_ms < 1 || rate < 0 ||
        (!l.count && secs <= 0)) {
        fprintf(stderr, "usage: testapp load http://HOST[:PORT]/PATH [-n COUNT] [-d SECONDS] "
                        "[-r RATE] [-c CONNS] [-t TIMEOUT_MS] [-X METHOD] [-H 'Name: value']...\n");
        return 2;
    }
    snprintf(l.req, sizeof(l.req),
             "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: testapp-load\r\n%s%s\r\n", method,
             l.u.path, l.u.host, l.u.port, hdrs,
             strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ? "Content-Length: 0\r\n"
                                                                       : "");
    pthread_mutex_init(&l.lock, NULL);
    if (secs > 0)
        l.deadline = now_s() + secs;
    if (rate > 0)
        l.interval = (double)conns / rate;
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    signal(SIGPIPE, SIG_IGN);
    for (i = 0; i < conns; i++)
        if (pthread_create(&th[i], NULL, load_main, &l)) {
            fprintf(stderr, "testapp: cannot start a thread\n");
            return 1;
        }
    for (i = 0; i < conns; i++)
        pthread_join(th[i], NULL);
    printf("requests %ld ok %ld failed %ld\n", l.total, l.ok, l.failed);
    for (i = 0; i < l.nkinds; i++) {
        order[i].n = l.kinds[i].n;
        order[i].i = i;
    }
    qsort(order, (size_t)l.nkinds, sizeof(order[0]), load_cmp);
    for (i = 0; i < l.nkinds; i++)
        printf("%ld %s\n", order[i].n, l.kinds[order[i].i].key);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "get") == 0)
        return client(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "load") == 0)
        return load_run(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "serve") != 0) {
        fprintf(stderr,
                "usage: testapp [serve] | testapp get URL [-n COUNT] [-t MS] [-H H] | testapp load "
                "URL [-n COUNT] [-d S] [-r RATE] [-c CONNS] [-t MS] [-X M] [-H H]\n");
        return 2;
    }
    return serve();
}
