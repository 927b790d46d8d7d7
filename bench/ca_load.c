/*
 * ca_load.c - load generator for weftd's POST /v1/certificates (and, for comparison, for the
 * API server's TokenReview), driven by bench/ca_load.sh.
 *
 *   ca_load --addr HOST:PORT --cacert FILE --tokens FILE [--kind certs|tokenreview|handshake]
 *           [--requests N] [--concurrency C] [--keepalive] [--csrs K] [--admin-token FILE]
 *           [--cpu NAME=PID]...
 *
 * One thread, one epoll set, non-blocking OpenSSL clients. C connections run at once; together
 * they send N requests (N >= C), each connection sending its next request when the previous
 * answer has arrived (closed loop). With N == C that is a burst: C requests at the same instant.
 *
 *   certs        POST /v1/certificates: a PEM CSR (K distinct P-256 keys made with ca_csr_new,
 *                as the agent does, used round-robin) and `Authorization: Bearer <token i>`,
 *                tokens taken round-robin from --tokens (one per line).
 *   tokenreview  POST /apis/authentication.k8s.io/v1/tokenreviews with the admin bearer token
 *                (--admin-token) and token i in the body: what weftd asks the API server.
 *   handshake    TCP connect and TLS handshake only, then close.
 *
 * Without --keepalive every request opens a new TCP+TLS connection, and its latency runs from
 * connect() to the last byte of the answer. With --keepalive the C connections are opened and
 * their handshakes finished before the clock starts, and latency runs from the first byte of
 * the request to the last byte of the answer. Every answer must be 200 with the expected
 * content (a certificateChain, an authenticated TokenReview); anything else is counted as an
 * error by status. The server's certificate is verified against --cacert (IP 127.0.0.1).
 *
 * Prints one line of key=value pairs: ok, errors (by status), wall seconds, rate, latency
 * p50/p90/p99/max in ms, and the CPU seconds this client used (it shares the machine with the
 * servers, so that figure says how much of the machine the client itself took). Each --cpu
 * NAME=PID adds NAME_us_per_req: the CPU time (user + system, /proc/PID/stat) that process
 * spent between the start of the clock and the last answer, per request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"

enum kind { KIND_CERTS, KIND_TOKENREVIEW, KIND_HANDSHAKE };
enum state { ST_CONNECTING, ST_HANDSHAKE, ST_IDLE, ST_WRITING, ST_READING };

struct conn {
    int fd;
    SSL *ssl;
    enum state st;
    char *req; /* current request bytes */
    size_t req_len, req_off;
    char *in;
    size_t in_len, in_cap;
    double t0; /* start of the current measurement */
    unsigned events;
    bool used; /* this TCP connection carried a request already */
};

static struct {
    enum kind kind;
    struct sockaddr_in addr;
    SSL_CTX *ctx;
    char **tokens;
    size_t ntokens;
    char **csrs;
    size_t ncsrs;
    char *admin_token;
    long requests, concurrency;
    bool keepalive, warming;
    long started, finished, ok;
    long errors_by_status[600];
    long errors_other;
    double *lat;
    int ep;
    const char *cpu_name[8];
    int cpu_pid[8];
    double cpu_start[8];
    int ncpu;
} g;

/* CPU seconds (user + system) of another process, or -1. */
static double cpu_of(int pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void cpu_mark(void)
{
    for (int i = 0; i < g.ncpu; i++)
        g.cpu_start[i] = cpu_of(g.cpu_pid[i]);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "ca_load: %s\n", what);
    exit(1);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *s;
    long n;

    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

static void read_tokens(const char *path)
{
    char *all = slurp(path), *save = NULL, *line;

    if (!all)
        die("cannot read --tokens");
    for (line = strtok_r(all, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        g.tokens = realloc(g.tokens, (g.ntokens + 1) * sizeof(*g.tokens));
        if (!g.tokens || !(g.tokens[g.ntokens++] = strdup(line)))
            die("out of memory");
    }
    free(all);
    if (!g.ntokens)
        die("no tokens");
}

/* The request number i as HTTP/1.1 bytes. */
static char *build_request(long i, size_t *len)
{
    const char *tok = g.tokens[(size_t)i % g.ntokens];
    char *body = NULL, *req = NULL;
    int n;

    if (g.kind == KIND_CERTS) {
        const char *csr = g.csrs[(size_t)i % g.ncsrs];

        n = asprintf(&req,
                     "POST /v1/certificates HTTP/1.1\r\nHost: weftd\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/pkcs10\r\nContent-Length: %zu\r\n\r\n%s",
                     tok, strlen(csr), csr);
    } else {
        if (asprintf(&body,
                     "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\","
                     "\"spec\":{\"token\":\"%s\",\"audiences\":[\"weft\"]}}",
                     tok) < 0)
            die("out of memory");
        n = asprintf(&req,
                     "POST /apis/authentication.k8s.io/v1/tokenreviews HTTP/1.1\r\nHost: kube\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     g.admin_token, strlen(body), body);
        free(body);
    }
    if (n < 0)
        die("out of memory");
    *len = (size_t)n;
    return req;
}

static void watch(struct conn *c, unsigned ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};

    if (c->events == ev)
        return;
    if (epoll_ctl(g.ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) < 0)
        die("epoll_ctl");
    c->events = ev;
}

static void conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        die("socket (raise ulimit -n)");
    c->events = 0;
    c->used = false;
    c->st = ST_CONNECTING;
    c->t0 = now_s();
    if (connect(c->fd, (struct sockaddr *)&g.addr, sizeof(g.addr)) < 0 && errno != EINPROGRESS)
        die("connect");
    watch(c, EPOLLOUT);
}

static void conn_close(struct conn *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->events = 0;
}

static void record(struct conn *c, int status, bool content_ok)
{
    double lat = now_s() - c->t0;

    if (status == 200 && content_ok)
        g.lat[g.ok++] = lat;
    else if (status > 0 && status < 600)
        g.errors_by_status[status]++;
    else
        g.errors_other++;
    g.finished++;
}

/* Start the next request on c, or close it when all were started. */
static void next_request(struct conn *c)
{
    if (g.started >= g.requests || g.kind == KIND_HANDSHAKE) {
        conn_close(c);
        return;
    }
    if (!g.keepalive && c->used) {
        conn_close(c);
        conn_open(c); /* request number is taken when the handshake is done */
        return;
    }
    c->used = true;
    free(c->req);
    c->req = build_request(g.started++, &c->req_len);
    c->req_off = 0;
    c->in_len = 0;
    if (g.keepalive)
        c->t0 = now_s();
    c->st = ST_WRITING;
}

/* Parse a complete answer in c->in; returns 1 done, 0 need more, -1 bad. */
static int answer_complete(struct conn *c, int *status)
{
    char *end, *cl;
    size_t head, body;

    if (c->in_len < 12)
        return 0;
    c->in[c->in_len] = '\0';
    end = strstr(c->in, "\r\n\r\n");
    if (!end)
        return 0;
    *status = atoi(c->in + 9);
    head = (size_t)(end - c->in) + 4;
    cl = strcasestr(c->in, "\r\ncontent-length:");
    if (!cl || cl > end)
        return -1;
    body = (size_t)strtoul(cl + 17, NULL, 10);
    return c->in_len >= head + body ? 1 : 0;
}

static void drive(struct conn *c)
{
    for (;;) {
        int r, err, status = 0;

        switch (c->st) {
        case ST_CONNECTING: {
            socklen_t l = sizeof(err);
            int one = 1;

            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
                record(c, 0, false);
                conn_close(c);
                return;
            }
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            c->ssl = SSL_new(g.ctx);
            if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
                die("SSL_new");
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1");
            SSL_set_connect_state(c->ssl);
            c->st = ST_HANDSHAKE;
            break;
        }
        case ST_HANDSHAKE:
            r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                if (g.kind == KIND_HANDSHAKE) {
                    record(c, 200, true);
                    conn_close(c);
                    return;
                }
                c->st = ST_IDLE;
                if (g.warming)
                    return; /* the clock starts when every connection is ready */
                next_request(c);
                if (c->st != ST_WRITING)
                    return;
                break;
            }
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ) {
                watch(c, EPOLLIN);
                return;
            }
            if (err == SSL_ERROR_WANT_WRITE) {
                watch(c, EPOLLOUT);
                return;
            }
            ERR_clear_error();
            record(c, 0, false);
            conn_close(c);
            return;
        case ST_IDLE:
            return;
        case ST_WRITING:
            r = SSL_write(c->ssl, c->req + c->req_off, (int)(c->req_len - c->req_off));
            if (r > 0) {
                c->req_off += (size_t)r;
                if (c->req_off == c->req_len)
                    c->st = ST_READING;
                break;
            }
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                watch(c, err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
                return;
            }
            ERR_clear_error();
            record(c, 0, false);
            conn_close(c);
            return;
        case ST_READING:
            if (c->in_cap - c->in_len < 16385) {
                c->in_cap = c->in_cap * 2 + 32768;
                c->in = realloc(c->in, c->in_cap);
                if (!c->in)
                    die("out of memory");
            }
            r = SSL_read(c->ssl, c->in + c->in_len, 16384);
            if (r > 0) {
                c->in_len += (size_t)r;
                r = answer_complete(c, &status);
                if (r == 0)
                    break;
                if (r < 0) {
                    record(c, 0, false);
                    conn_close(c);
                    return;
                }
                /* TokenReview is a create: 201 */
                if (g.kind == KIND_TOKENREVIEW && status == 201)
                    status = 200;
                record(c, status,
                       g.kind == KIND_CERTS ? strstr(c->in, "\"certificateChain\"") != NULL
                                            : strstr(c->in, "\"authenticated\":true") != NULL);
                next_request(c);
                if (c->fd < 0 || c->st == ST_CONNECTING)
                    return;
                break;
            }
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                watch(c, err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
                return;
            }
            ERR_clear_error();
            record(c, 0, false);
            conn_close(c);
            return;
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    size_t i = (size_t)(p * (double)g.ok);

    if (i >= (size_t)g.ok)
        i = (size_t)g.ok - 1;
    return g.lat[i] * 1e3;
}

static double cpu_self(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static _Noreturn void usage(void)
{
    fprintf(stderr, "usage: ca_load --addr HOST:PORT --cacert FILE --tokens FILE "
                    "[--kind certs|tokenreview|handshake] [--requests N] [--concurrency C] "
                    "[--keepalive] [--csrs K] [--admin-token FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *cacert = NULL, *tokens = NULL, *admin = NULL;
    struct epoll_event ev[256];
    struct conn *conns;
    struct rlimit rl;
    long ncsrs = 100;
    double t0, wall, cpu0;
    char host[64];
    int port = 0;

    g.requests = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "--keepalive")) {
            g.keepalive = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--addr"))
            addr = v;
        else if (!strcmp(a, "--cacert"))
            cacert = v;
        else if (!strcmp(a, "--tokens"))
            tokens = v;
        else if (!strcmp(a, "--admin-token"))
            admin = v;
        else if (!strcmp(a, "--requests"))
            g.requests = atol(v);
        else if (!strcmp(a, "--concurrency"))
            g.concurrency = atol(v);
        else if (!strcmp(a, "--csrs"))
            ncsrs = atol(v);
        else if (!strcmp(a, "--cpu") && strchr(v, '=') && g.ncpu < 8) {
            g.cpu_name[g.ncpu] = v;
            g.cpu_pid[g.ncpu++] = atoi(strchr(v, '=') + 1);
        } else if (!strcmp(a, "--kind"))
            g.kind = !strcmp(v, "certs")         ? KIND_CERTS
                     : !strcmp(v, "tokenreview") ? KIND_TOKENREVIEW
                     : !strcmp(v, "handshake")   ? KIND_HANDSHAKE
                                                 : (usage(), KIND_CERTS);
        else
            usage();
    }
    if (!addr || !cacert || (!tokens && g.kind != KIND_HANDSHAKE) || g.requests < 1 || ncsrs < 1 ||
        sscanf(addr, "%63[^:]:%d", host, &port) != 2)
        usage();
    if (g.concurrency <= 0 || g.concurrency > g.requests)
        g.concurrency = g.requests;
    if (g.kind == KIND_HANDSHAKE)
        g.requests = g.concurrency;
    if (g.kind == KIND_TOKENREVIEW) {
        if (!admin || !(g.admin_token = slurp(admin)))
            die("--kind tokenreview needs --admin-token FILE");
        g.admin_token[strcspn(g.admin_token, "\r\n")] = '\0';
    }
    if (tokens)
        read_tokens(tokens);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    memset(&g.addr, 0, sizeof(g.addr));
    g.addr.sin_family = AF_INET;
    g.addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &g.addr.sin_addr) != 1)
        die("--addr must be an IPv4 address and port");

    g.ctx = SSL_CTX_new(TLS_client_method());
    if (!g.ctx || SSL_CTX_load_verify_locations(g.ctx, cacert, NULL) != 1)
        die("cannot load --cacert");
    SSL_CTX_set_verify(g.ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_OFF); /* full handshakes */
    if (g.kind == KIND_CERTS) {
        g.ncsrs = (size_t)ncsrs;
        g.csrs = calloc(g.ncsrs, sizeof(*g.csrs));
        if (!g.csrs)
            die("out of memory");
        for (size_t i = 0; i < g.ncsrs; i++) {
            char *key = NULL;

            if (ca_csr_new(CA_KEY_EC_P256, &key, &g.csrs[i]) != 0)
                die("ca_csr_new");
            ca_key_pem_free(key);
        }
    }
    g.lat = calloc((size_t)g.requests, sizeof(*g.lat));
    conns = calloc((size_t)g.concurrency, sizeof(*conns));
    g.ep = epoll_create1(0);
    if (!g.lat || !conns || g.ep < 0)
        die("setup");

    /* keep-alive: open and handshake every connection first, untimed */
    t0 = now_s();
    cpu0 = cpu_self();
    cpu_mark();
    for (long i = 0; i < g.concurrency; i++)
        conn_open(&conns[i]);
    g.warming = g.keepalive;
    if (g.keepalive) {
        long idle;

        do {
            int n = epoll_wait(g.ep, ev, 256, 10000);

            if (n <= 0)
                die("timeout while connecting");
            for (int i = 0; i < n; i++)
                drive(ev[i].data.ptr);
            idle = 0;
            for (long i = 0; i < g.concurrency; i++)
                idle += conns[i].st == ST_IDLE;
            if (g.errors_other)
                die("connection failed during warm-up");
        } while (idle < g.concurrency);
        g.warming = false;
        t0 = now_s();
        cpu0 = cpu_self();
        cpu_mark();
        for (long i = 0; i < g.concurrency; i++) {
            next_request(&conns[i]);
            drive(&conns[i]);
        }
    }
    while (g.finished < g.requests) {
        int n = epoll_wait(g.ep, ev, 256, 30000);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "ca_load: no progress for 30 s (%ld of %ld answered)\n", g.finished,
                    g.requests);
            break;
        }
        for (int i = 0; i < n; i++)
            drive(ev[i].data.ptr);
    }
    wall = now_s() - t0;
    qsort(g.lat, (size_t)g.ok, sizeof(double), cmp_double);
    printf("kind=%s keepalive=%d requests=%ld concurrency=%ld ok=%ld",
           g.kind == KIND_CERTS         ? "certs"
           : g.kind == KIND_TOKENREVIEW ? "tokenreview"
                                        : "handshake",
           g.keepalive, g.requests, g.concurrency, g.ok);
    for (int s = 0; s < 600; s++)
        if (g.errors_by_status[s])
            printf(" err_%d=%ld", s, g.errors_by_status[s]);
    if (g.errors_other)
        printf(" err_conn=%ld", g.errors_other);
    printf(" wall_s=%.3f rate=%.0f", wall, (double)g.ok / wall);
    if (g.ok)
        printf(" p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f", pct(0.50), pct(0.90), pct(0.99),
               g.lat[g.ok - 1] * 1e3);
    printf(" client_us_per_req=%.0f", (cpu_self() - cpu0) / (double)g.requests * 1e6);
    for (int i = 0; i < g.ncpu; i++)
        printf(" %.*s_us_per_req=%.0f", (int)(strchr(g.cpu_name[i], '=') - g.cpu_name[i]),
               g.cpu_name[i], (cpu_of(g.cpu_pid[i]) - g.cpu_start[i]) / (double)g.requests * 1e6);
    printf("\n");

    for (long i = 0; i < g.concurrency; i++) {
        conn_close(&conns[i]);
        free(conns[i].req);
        free(conns[i].in);
    }
    for (size_t i = 0; i < g.ntokens; i++)
        free(g.tokens[i]);
    for (size_t i = 0; i < g.ncsrs; i++)
        free(g.csrs[i]);
    free(g.tokens);
    free(g.csrs);
    free(g.admin_token);
    free(g.lat);
    free(conns);
    close(g.ep);
    SSL_CTX_free(g.ctx);
    return g.ok == g.requests ? 0 : 1;
}
