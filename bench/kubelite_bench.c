/*
 * kubelite_bench.c - kubelite performance: startup, LIST throughput, watch fan-out.
 *
 *   kubelite_bench [--kubelite PATH] [--openapi-dir DIR] [--pods N] [--watchers N]
 *                  [--updates N] [--runs N] [--seconds S]
 *
 * Every figure comes with a baseline measured in the same run on the same machine, so results
 * from noisy or differently sized machines compare through the ratio:
 *
 *   startup   exec to kubeconfig-exists, median of --runs. Baselines: the same exec-to-file
 *             measurement for `sh -c ': > FILE'` (process start floor), and parsing the same
 *             OpenAPI documents with jansson in this process (the input kubelite must read).
 *   LIST      --pods pods created by POST, then full LISTs and limit=500 paginated LISTs for
 *             --seconds each. Baselines: a trivial in-process HTTP server answering with the
 *             same bytes (loopback + HTTP floor), and jansson serializing the same list.
 *   fan-out   --watchers concurrent WATCH connections on the pods while one writer PATCHes
 *             --updates pods back to back. Every watcher must get every event in order; the
 *             lag of an event is receive time minus the time its PATCH was sent. Baseline: a
 *             trivial server writing the same event bytes to the same number of connections.
 *
 * Plain HTTP (kubelite --insecure), blocking sockets for requests, epoll for the watchers.
 * Exit status 0 when every measurement completed and no watcher missed an event.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>

#include "core/buf.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NS "bench"

/* ------------------------------------------------------------------ helpers */

/* The bench and the harness cannot measure anything meaningful without memory: stop. */
static void out_of_memory(void)
{
    fprintf(stderr, "out of memory\n");
    exit(1);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void sleep_us(long us)
{
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), dbl_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t meta_rv(const json_t *obj)
{
    const char *s =
        json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    return s ? strtoull(s, NULL, 10) : 0;
}

/* Percent-encode a query value (continue tokens are base64: '+', '/', '='). */
static void url_encode(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < outlen; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int tcp_connect(const struct sockaddr_in *sa)
{
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* ------------------------------------------------------------------ HTTP client */

struct hconn {
    int fd;
    struct sockaddr_in sa;
    struct buf in;
};

static int hconn_fill(struct hconn *h, int timeout_ms)
{
    char tmp[262144];
    struct pollfd p = {.fd = h->fd, .events = POLLIN};
    ssize_t n;
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return r == 0 ? -ETIMEDOUT : -errno;
    n = recv(h->fd, tmp, sizeof(tmp), 0);
    if (n <= 0)
        return n == 0 ? -ECONNRESET : -errno;
    return buf_append(&h->in, tmp, (size_t)n);
}

/*
 * One request; the body is read (Content-Length only, which is what kubelite sends for
 * non-streaming answers). *body (may be NULL) receives it; *nbytes its length.
 */
static int http_req(struct hconn *h, const char *method, const char *path, const char *ctype,
                    const char *reqbody, int *status, struct buf *body, size_t *nbytes)
{
    char head[2048];
    char *end = NULL, *cl;
    size_t hlen;
    long clen;
    int rc;

    if (h->fd < 0) {
        h->fd = tcp_connect(&h->sa);
        if (h->fd < 0)
            return h->fd;
    }
    snprintf(head, sizeof(head),
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
             "User-Agent: kubelite-bench\r\n%s%s%sContent-Length: %zu\r\n\r\n",
             method, path, ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
             reqbody ? strlen(reqbody) : 0);
    rc = send_all(h->fd, head, strlen(head));
    if (!rc && reqbody)
        rc = send_all(h->fd, reqbody, strlen(reqbody));
    while (!rc && !(h->in.p && (end = strstr(h->in.p, "\r\n\r\n"))))
        rc = hconn_fill(h, 30000);
    if (rc)
        return rc;
    *status = atoi(h->in.p + 9);
    *end = '\0';
    cl = strcasestr(h->in.p, "\r\ncontent-length:");
    clen = cl ? atol(cl + 17) : 0;
    hlen = (size_t)(end + 4 - h->in.p);
    while (h->in.len < hlen + (size_t)clen)
        if ((rc = hconn_fill(h, 30000)))
            return rc;
    if (body) {
        body->len = 0;
        rc = buf_append(body, h->in.p + hlen, (size_t)clen);
    }
    if (nbytes)
        *nbytes = (size_t)clen;
    buf_consume(&h->in, hlen + (size_t)clen);
    return rc;
}

static void hconn_init(struct hconn *h, const struct sockaddr_in *sa)
{
    memset(h, 0, sizeof(*h));
    h->fd = -1;
    h->sa = *sa;
}

static void hconn_release(struct hconn *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
    buf_release(&h->in);
}

/* ------------------------------------------------------------------ processes */

static int wait_file(const char *path, pid_t pid, double timeout_s, double *elapsed, double t0)
{
    struct stat st;
    for (;;) {
        if (stat(path, &st) == 0 && st.st_size > 0) {
            *elapsed = now_s() - t0;
            return 0;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -ECHILD;
        if (now_s() - t0 > timeout_s)
            return -ETIMEDOUT;
        sleep_us(200);
    }
}

/* Start argv, wait until path exists (non-empty); *elapsed from fork. Returns the pid or <0. */
static pid_t spawn_until_file(const char *const argv[], const char *path, double *elapsed)
{
    double t0 = now_s();
    pid_t pid;
    int rc;

    unlink(path);
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    rc = wait_file(path, pid, 30, elapsed, t0);
    if (rc) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return rc;
    }
    return pid;
}

static void stop_child(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        sleep_us(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

struct opts {
    const char *kubelite, *openapi_dir;
    int pods, watchers, updates, runs;
    double seconds;
    char tmpdir[256];
};

static pid_t kubelite_start(const struct opts *o, const char *kc, double *elapsed)
{
    const char *argv[] = {o->kubelite,  "--listen",      "127.0.0.1:0",  "--kubeconfig-out", kc,
                          "--insecure", "--openapi-dir", o->openapi_dir, "--log-level",      "warn",
                          NULL};
    return spawn_until_file(argv, kc, elapsed);
}

static int kubeconfig_server(const char *kc, struct sockaddr_in *sa)
{
    FILE *f = fopen(kc, "r");
    char line[512];
    int port = 0;
    if (!f)
        return -errno;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, " server: http://127.0.0.1:%d", &port) == 1)
            break;
    fclose(f);
    if (!port)
        return -EINVAL;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return 0;
}

/* ------------------------------------------------------------------ results */

struct results {
    double start_ms, start_sh_ms, openapi_parse_ms;
    double create_rate;
    double list_rate, list_mb, list_trivial_rate, list_dump_rate;
    double page_rate, page_list_rate;
    double watch_setup_s;
    double fan_rate, fan_max_lag_ms, fan_p50_ms, fan_p99_ms;
    int fan_complete, fan_missing;
    double base_fan_rate, base_max_lag_ms, base_p99_ms;
    double fan_dump_rate; /* jansson serializations of the same event per second */
    int base_complete;
    bool ok;
};

/* ------------------------------------------------------------------ startup */

static double parse_openapi_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    double t0 = now_s();
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        char path[4096];
        json_error_t jerr;
        json_t *j;
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        j = json_load_file(path, 0, &jerr);
        json_decref(j);
    }
    closedir(d);
    return now_s() - t0;
}

static int bench_startup(const struct opts *o, struct results *r)
{
    double *k = calloc((size_t)o->runs, sizeof(double));
    double *sh = calloc((size_t)o->runs, sizeof(double));
    double *pa = calloc((size_t)o->runs, sizeof(double));
    char kc[512], marker[512];
    int rc = 0;

    snprintf(kc, sizeof(kc), "%s/startup.kc", o->tmpdir);
    snprintf(marker, sizeof(marker), "%s/startup.sh", o->tmpdir);
    for (int i = 0; i < o->runs && !rc; i++) {
        const char *argv[] = {"/bin/sh", "-c", "echo x > \"$0\"", marker, NULL};
        pid_t pid = kubelite_start(o, kc, &k[i]);
        if (pid < 0) {
            rc = (int)pid;
            break;
        }
        stop_child(pid);
        pid = spawn_until_file(argv, marker, &sh[i]);
        if (pid < 0) {
            rc = (int)pid;
            break;
        }
        waitpid(pid, NULL, 0);
        pa[i] = parse_openapi_dir(o->openapi_dir);
    }
    if (!rc) {
        r->start_ms = median(k, (size_t)o->runs) * 1e3;
        r->start_sh_ms = median(sh, (size_t)o->runs) * 1e3;
        r->openapi_parse_ms = median(pa, (size_t)o->runs) * 1e3;
    }
    free(k);
    free(sh);
    free(pa);
    return rc;
}

/* ------------------------------------------------------------------ pods */

struct creator {
    struct sockaddr_in sa;
    int first, count;
    int failed;
};

static void *creator_main(void *arg)
{
    struct creator *c = arg;
    struct hconn h;
    char body[1024];
    hconn_init(&h, &c->sa);
    for (int i = c->first; i < c->first + c->count; i++) {
        int status = 0;
        snprintf(body, sizeof(body),
                 "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"pod-%05d\","
                 "\"labels\":{\"app\":\"bench\",\"shard\":\"%d\"}},\"spec\":{\"containers\":[{"
                 "\"name\":\"app\",\"image\":\"registry.example/app:1.0\",\"ports\":[{"
                 "\"containerPort\":8080}],\"resources\":{\"requests\":{\"cpu\":\"100m\","
                 "\"memory\":\"64Mi\"}}}]}}",
                 i, i % 16);
        if (http_req(&h, "POST", "/api/v1/namespaces/" BENCH_NS "/pods", "application/json", body,
                     &status, NULL, NULL) ||
            status != 201)
            c->failed++;
    }
    hconn_release(&h);
    return NULL;
}

static int create_pods(const struct sockaddr_in *sa, int n, double *rate)
{
    struct creator c[4];
    struct hconn h;
    int status = 0, failed = 0;
    double t0;

    hconn_init(&h, sa);
    if (http_req(&h, "POST", "/api/v1/namespaces", "application/json",
                 "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"" BENCH_NS
                 "\"}}",
                 &status, NULL, NULL) ||
        (status != 201 && status != 409)) {
        hconn_release(&h);
        return -EPROTO;
    }
    hconn_release(&h);
    t0 = now_s();
    for (int i = 0; i < 4; i++) {
        c[i].sa = *sa;
        c[i].first = i * (n / 4);
        c[i].count = i == 3 ? n - 3 * (n / 4) : n / 4;
        c[i].failed = 0;
    }
    {
        pthread_t th[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&th[i], NULL, creator_main, &c[i]);
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            failed += c[i].failed;
        }
    }
    *rate = n / (now_s() - t0);
    return failed ? -EPROTO : 0;
}

/* ------------------------------------------------------------------ LIST */

/* Full LISTs (or paginated ones when limit > 0) for `seconds`; lists/s, pages/s, bytes. */
static int list_rate(const struct sockaddr_in *sa, const char *path, int limit, double seconds,
                     double *lists_per_s, double *pages_per_s, size_t *bytes, int want_items)
{
    struct hconn h;
    struct buf body = {0};
    double t0 = now_s();
    long lists = 0, pages = 0;
    int rc = 0;

    hconn_init(&h, sa);
    while (!rc && (now_s() - t0 < seconds || lists < 2)) {
        char cont[4096] = "", enc[4096], p2[8192];
        size_t total = 0;
        int items = 0;
        do {
            int status = 0;
            size_t n = 0;
            url_encode(cont, enc, sizeof(enc));
            if (limit)
                snprintf(p2, sizeof(p2), "%s?limit=%d%s%s", path, limit,
                         cont[0] ? "&continue=" : "", enc);
            else
                snprintf(p2, sizeof(p2), "%s", path);
            /* the first pass is parsed to count the items; later ones only read the bytes
             * (pages are scanned for their continue token) */
            rc = http_req(&h, "GET", p2, NULL, NULL, &status, (limit || lists == 0) ? &body : NULL,
                          &n);
            if (!rc && status != 200)
                rc = -EPROTO;
            if (rc)
                break;
            total += n;
            pages++;
            cont[0] = '\0';
            if (limit && lists > 0) {
                const char *c = memmem(body.p, body.len, "\"continue\":\"", 12);
                if (c)
                    snprintf(cont, sizeof(cont), "%.*s", (int)strcspn(c + 12, "\""), c + 12);
            } else if (lists == 0) {
                json_error_t jerr;
                json_t *j = json_loadb(body.p, body.len, 0, &jerr);
                const char *c =
                    json_string_value(json_object_get(json_object_get(j, "metadata"), "continue"));
                items += (int)json_array_size(json_object_get(j, "items"));
                if (c)
                    snprintf(cont, sizeof(cont), "%s", c);
                json_decref(j);
            }
        } while (cont[0]);
        if (!rc && lists == 0 && want_items >= 0 && items != want_items) {
            fprintf(stderr, "kubelite_bench: LIST %s returned %d items, want %d\n", path, items,
                    want_items);
            rc = -EPROTO;
        }
        *bytes = total;
        lists++;
    }
    *lists_per_s = lists / (now_s() - t0);
    if (pages_per_s)
        *pages_per_s = pages / (now_s() - t0);
    hconn_release(&h);
    buf_release(&body);
    return rc;
}

/* ------------------------------------------------------------------ trivial server */

struct trivial {
    int lfd;
    struct sockaddr_in sa;
    const char *resp; /* LIST mode: the canned answer */
    size_t resp_len;
    /* fan-out mode */
    int watchers, events;
    const char *event_pre, *event_post; /* one event line, split where its rv goes */
    _Atomic int64_t *send_ns;
    pthread_t th;
};

static int trivial_listen(struct trivial *t)
{
    socklen_t len = sizeof(t->sa);
    int one = 1;
    t->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (t->lfd < 0)
        return -errno;
    setsockopt(t->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&t->sa, 0, sizeof(t->sa));
    t->sa.sin_family = AF_INET;
    t->sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(t->lfd, (struct sockaddr *)&t->sa, sizeof(t->sa)) < 0 || listen(t->lfd, 4096) < 0 ||
        getsockname(t->lfd, (struct sockaddr *)&t->sa, &len) < 0) {
        int rc = -errno;
        close(t->lfd);
        return rc;
    }
    return 0;
}

/* Read one request head from fd (blocking). 0, or <0 at EOF/error. */
static int read_head(int fd, struct buf *in)
{
    char tmp[4096];
    char *end;
    while (!(in->p && (end = strstr(in->p, "\r\n\r\n")))) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            return -1;
        if (buf_append(in, tmp, (size_t)n))
            out_of_memory();
    }
    buf_consume(in, (size_t)(end + 4 - in->p));
    return 0;
}

static void *trivial_list_main(void *arg)
{
    struct trivial *t = arg;
    struct buf in = {0};
    int fd = accept(t->lfd, NULL, NULL);
    while (fd >= 0 && read_head(fd, &in) == 0)
        if (send_all(fd, t->resp, t->resp_len))
            break;
    if (fd >= 0)
        close(fd);
    buf_release(&in);
    return NULL;
}

static void *trivial_fanout_main(void *arg)
{
    struct trivial *t = arg;
    int *fds = calloc((size_t)t->watchers, sizeof(int));
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    char line[8192], chunk[8300];
    int nfd = 0;

    for (; nfd < t->watchers; nfd++) {
        struct buf in = {0};
        fds[nfd] = accept(t->lfd, NULL, NULL);
        if (fds[nfd] < 0 || read_head(fds[nfd], &in) ||
            send_all(fds[nfd], head, sizeof(head) - 1)) {
            buf_release(&in);
            break;
        }
        buf_release(&in);
    }
    for (int k = 0; k < t->events && nfd == t->watchers; k++) {
        int n = snprintf(line, sizeof(line), "%s%llu%s", t->event_pre, (unsigned long long)(k + 1),
                         t->event_post);
        int c = snprintf(chunk, sizeof(chunk), "%x\r\n%s\r\n", n, line);
        atomic_store_explicit(&t->send_ns[k], now_ns(), memory_order_release);
        for (int i = 0; i < nfd; i++)
            send_all(fds[i], chunk, (size_t)c);
    }
    for (int i = 0; i < nfd; i++) {
        send_all(fds[i], "0\r\n\r\n", 5);
        close(fds[i]);
    }
    free(fds);
    return NULL;
}

/* ------------------------------------------------------------------ watch fan-out */

struct fw {
    int fd;
    struct buf in, line;
    bool head;
    int count;
    uint64_t last_rv;
    uint64_t acc; /* sum of rv * (index + 1): order and content fingerprint */
    bool bad;
};

struct fanout {
    int watchers, events;
    _Atomic int64_t *send_ns;
    uint64_t *rv; /* rv of event k (writer's view), filled by the writer */
    float *lags;  /* ms, watchers * events */
    size_t nlags;
    double t_first, t_last, t_heads;
};

static void fw_line(struct fanout *f, struct fw *w, const char *line, int64_t t)
{
    const char *p = strstr(line, "\"resourceVersion\":\"");
    uint64_t rv = p ? strtoull(p + 19, NULL, 10) : 0;
    if (!rv || rv <= w->last_rv || w->count >= f->events) {
        w->bad = true;
        return;
    }
    w->last_rv = rv;
    w->acc += rv * (uint64_t)(w->count + 1);
    f->lags[f->nlags++] =
        (float)((double)(t - atomic_load_explicit(&f->send_ns[w->count], memory_order_acquire)) /
                1e6);
    w->count++;
}

/* Consume what arrived on w: response head, then chunks, each holding whole event lines. */
static void fw_parse(struct fanout *f, struct fw *w, int64_t t)
{
    if (!w->head) {
        char *end = w->in.p ? strstr(w->in.p, "\r\n\r\n") : NULL;
        if (!end)
            return;
        if (strncmp(w->in.p + 9, "200", 3) != 0)
            w->bad = true;
        buf_consume(&w->in, (size_t)(end + 4 - w->in.p));
        w->head = true;
    }
    for (;;) {
        char *crlf = w->in.len ? memmem(w->in.p, w->in.len, "\r\n", 2) : NULL, *nl;
        unsigned long size;
        size_t hl;
        if (!crlf)
            break;
        size = strtoul(w->in.p, NULL, 16);
        hl = (size_t)(crlf + 2 - w->in.p);
        if (w->in.len < hl + size + 2)
            break;
        if (buf_append(&w->line, w->in.p + hl, size))
            out_of_memory();
        buf_consume(&w->in, hl + size + 2);
        while (w->line.len && (nl = memchr(w->line.p, '\n', w->line.len))) {
            *nl = '\0';
            fw_line(f, w, w->line.p, t);
            buf_consume(&w->line, (size_t)(nl - w->line.p) + 1);
        }
        if (!size)
            break;
    }
}

/* Open `watchers` streams on path (sa), returning their fds (heads still unread). */
static int fanout_open(const struct sockaddr_in *sa, const char *path, struct fw *ws, int n)
{
    char req[1024];
    int len = snprintf(req, sizeof(req),
                       "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
                       "User-Agent: kubelite-bench\r\n\r\n",
                       path);
    for (int i = 0; i < n; i++) {
        memset(&ws[i], 0, sizeof(ws[i]));
        ws[i].fd = tcp_connect(sa);
        if (ws[i].fd < 0 || send_all(ws[i].fd, req, (size_t)len))
            return -EIO;
    }
    return 0;
}

/*
 * Read every stream until each has f->events events or `deadline` (monotonic s) passes.
 * `started` becomes true once the streams' heads have all arrived (the writer waits on it).
 */
static void fanout_run(struct fanout *f, struct fw *ws, double deadline, atomic_bool *heads_in)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), done = 0, heads = 0;
    struct epoll_event evs[256];
    char tmp[65536];

    for (int i = 0; i < f->watchers; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        fcntl(ws[i].fd, F_SETFL, fcntl(ws[i].fd, F_GETFL) | O_NONBLOCK);
        epoll_ctl(ep, EPOLL_CTL_ADD, ws[i].fd, &e);
    }
    f->t_first = f->t_last = 0;
    while (done < f->watchers && now_s() < deadline) {
        int n = epoll_wait(ep, evs, 256, 100);
        int64_t t = now_ns();
        for (int k = 0; k < n; k++) {
            struct fw *w = &ws[evs[k].data.u32];
            bool had_head = w->head;
            int before = w->count;
            ssize_t r;
            while ((r = recv(w->fd, tmp, sizeof(tmp), 0)) > 0)
                if (buf_append(&w->in, tmp, (size_t)r))
                    out_of_memory();
            fw_parse(f, w, t);
            if (!had_head && w->head && ++heads == f->watchers) {
                f->t_heads = (double)t / 1e9;
                if (heads_in)
                    atomic_store(heads_in, true);
            }
            if (w->count != before) {
                if (!f->t_first)
                    f->t_first = (double)t / 1e9;
                f->t_last = (double)t / 1e9;
                if (w->count == f->events)
                    done++;
            }
            if (r == 0 || w->bad) {
                epoll_ctl(ep, EPOLL_CTL_DEL, w->fd, NULL);
                if (w->count != f->events)
                    done++; /* gave up on this one: counted as incomplete below */
            }
        }
    }
    close(ep);
}

static int float_cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static void fanout_stats(struct fanout *f, struct fw *ws, const uint64_t *want_acc, int *complete,
                         int *missing, double *maxlag, double *p50, double *p99)
{
    *complete = 0;
    *missing = 0;
    for (int i = 0; i < f->watchers; i++) {
        bool ok = ws[i].count == f->events && !ws[i].bad && (!want_acc || ws[i].acc == *want_acc);
        *complete += ok;
        *missing += f->events - ws[i].count;
    }
    qsort(f->lags, f->nlags, sizeof(float), float_cmp);
    *maxlag = f->nlags ? f->lags[f->nlags - 1] : 0;
    *p50 = f->nlags ? f->lags[f->nlags / 2] : 0;
    *p99 = f->nlags ? f->lags[(size_t)((double)f->nlags * 0.99)] : 0;
}

static void fanout_release(struct fw *ws, int n)
{
    for (int i = 0; i < n; i++) {
        if (ws[i].fd >= 0)
            close(ws[i].fd);
        buf_release(&ws[i].in);
        buf_release(&ws[i].line);
    }
}

struct writer {
    struct sockaddr_in sa;
    struct fanout *f;
    atomic_bool *heads_in;
    int pods;
    int failed;
};

static void *writer_main(void *arg)
{
    struct writer *wr = arg;
    struct hconn h;
    struct buf body = {0};
    double t0 = now_s();

    while (!atomic_load(wr->heads_in) && now_s() - t0 < 60)
        sleep_us(1000);
    hconn_init(&h, &wr->sa);
    for (int k = 0; k < wr->f->events; k++) {
        char path[256], patch[256];
        json_error_t jerr;
        json_t *j;
        int status = 0;
        snprintf(path, sizeof(path), "/api/v1/namespaces/" BENCH_NS "/pods/pod-%05d",
                 (k * 7919) % wr->pods);
        snprintf(patch, sizeof(patch), "{\"metadata\":{\"annotations\":{\"bench/seq\":\"%d\"}}}",
                 k);
        atomic_store_explicit(&wr->f->send_ns[k], now_ns(), memory_order_release);
        if (http_req(&h, "PATCH", path, "application/merge-patch+json", patch, &status, &body,
                     NULL) ||
            status != 200) {
            wr->failed++;
            break;
        }
        j = json_loadb(body.p, body.len, 0, &jerr);
        wr->f->rv[k] = meta_rv(j);
        json_decref(j);
    }
    hconn_release(&h);
    buf_release(&body);
    return NULL;
}

static int fanout_alloc(struct fanout *f, int watchers, int events)
{
    memset(f, 0, sizeof(*f));
    f->watchers = watchers;
    f->events = events;
    f->send_ns = calloc((size_t)events, sizeof(*f->send_ns));
    f->rv = calloc((size_t)events, sizeof(*f->rv));
    f->lags = calloc((size_t)watchers * (size_t)events + 1, sizeof(float));
    return f->send_ns && f->rv && f->lags ? 0 : -ENOMEM;
}

static void fanout_free(struct fanout *f)
{
    free((void *)f->send_ns);
    free(f->rv);
    free(f->lags);
}

static int bench_fanout(const struct opts *o, const struct sockaddr_in *sa, struct results *r)
{
    struct fanout f;
    struct fw *ws = calloc((size_t)o->watchers, sizeof(*ws));
    struct hconn h;
    struct buf body = {0};
    char path[512];
    uint64_t list_rv, acc = 0;
    atomic_bool heads_in = false;
    struct writer wr;
    pthread_t th;
    double t0;
    int status = 0, rc;

    if (!ws || fanout_alloc(&f, o->watchers, o->updates)) {
        free(ws);
        return -ENOMEM;
    }
    hconn_init(&h, sa);
    rc = http_req(&h, "GET", "/api/v1/namespaces/" BENCH_NS "/pods?limit=1", NULL, NULL, &status,
                  &body, NULL);
    hconn_release(&h);
    if (rc || status != 200) {
        buf_release(&body);
        fanout_free(&f);
        free(ws);
        return rc ? rc : -EPROTO;
    }
    {
        json_error_t jerr;
        json_t *j = json_loadb(body.p, body.len, 0, &jerr);
        list_rv = meta_rv(j);
        json_decref(j);
    }
    buf_release(&body);
    snprintf(path, sizeof(path),
             "/api/v1/namespaces/" BENCH_NS "/pods?watch=1&resourceVersion=%llu",
             (unsigned long long)list_rv);
    t0 = now_s();
    rc = fanout_open(sa, path, ws, o->watchers);
    wr.sa = *sa;
    wr.f = &f;
    wr.heads_in = &heads_in;
    wr.pods = o->pods;
    wr.failed = 0;
    if (!rc) {
        /* time to establish every watch: measured until the writer may start */
        pthread_create(&th, NULL, writer_main, &wr);
        fanout_run(&f, ws, now_s() + 120, &heads_in);
        pthread_join(th, NULL);
        r->watch_setup_s = f.t_heads - t0;
    }
    for (int k = 0; k < f.events; k++)
        acc += f.rv[k] * (uint64_t)(k + 1);
    if (!rc) {
        r->fan_rate = (double)f.nlags / (f.t_last - (double)f.send_ns[0] / 1e9);
        fanout_stats(&f, ws, &acc, &r->fan_complete, &r->fan_missing, &r->fan_max_lag_ms,
                     &r->fan_p50_ms, &r->fan_p99_ms);
        if (wr.failed)
            rc = -EPROTO;
    }
    fanout_release(ws, o->watchers);
    fanout_free(&f);
    free(ws);
    return rc;
}

/* The trivial server writes the same event bytes to as many connections. */
static int bench_fanout_baseline(const struct opts *o, const char *pod_json, struct results *r)
{
    struct trivial t;
    struct fanout f;
    struct fw *ws = calloc((size_t)o->watchers, sizeof(*ws));
    struct buf pre = {0}, post = {0};
    const char *rvp = strstr(pod_json, "\"resourceVersion\":\"");
    int rc, missing;

    if (!ws || !rvp || fanout_alloc(&f, o->watchers, o->updates)) {
        free(ws);
        return -ENOMEM;
    }
    /* {"type":"MODIFIED","object":<the pod, its resourceVersion replaced>}\n */
    if (buf_append(&pre, "{\"type\":\"MODIFIED\",\"object\":", 28))
        out_of_memory();
    if (buf_append(&pre, pod_json, (size_t)(rvp + 19 - pod_json)))
        out_of_memory();
    rvp += 19 + strcspn(rvp + 19, "\"");
    if (buf_append(&post, rvp, strlen(rvp)))
        out_of_memory();
    if (buf_append(&post, "}\n", 2))
        out_of_memory();
    {
        /* CPU floor: serializing the event once per watcher, which a server must do at least
         * once per event (kubelite does it per watcher) */
        json_error_t jerr;
        json_t *ev =
            json_pack("{s:s,s:o}", "type", "MODIFIED", "object", json_loads(pod_json, 0, &jerr));
        double t0 = now_s();
        long n = 0;
        while (ev && (now_s() - t0 < o->seconds || n < 2)) {
            for (int i = 0; i < 100; i++)
                free(json_dumps(ev, JSON_COMPACT));
            n += 100;
        }
        r->fan_dump_rate = n / (now_s() - t0);
        json_decref(ev);
    }
    memset(&t, 0, sizeof(t));
    t.watchers = o->watchers;
    t.events = o->updates;
    t.event_pre = pre.p;
    t.event_post = post.p;
    t.send_ns = f.send_ns;
    rc = trivial_listen(&t);
    if (!rc) {
        pthread_create(&t.th, NULL, trivial_fanout_main, &t);
        rc = fanout_open(&t.sa, "/watch", ws, o->watchers);
        if (!rc)
            fanout_run(&f, ws, now_s() + 60, NULL);
        fanout_release(ws, o->watchers); /* unblocks the server if it is still writing */
        pthread_join(t.th, NULL);
        close(t.lfd);
        r->base_fan_rate = (double)f.nlags / (f.t_last - (double)f.send_ns[0] / 1e9);
        {
            double p50;
            fanout_stats(&f, ws, NULL, &r->base_complete, &missing, &r->base_max_lag_ms, &p50,
                         &r->base_p99_ms);
        }
    }
    buf_release(&pre);
    buf_release(&post);
    fanout_free(&f);
    free(ws);
    return rc;
}

/* Trivial HTTP server answering with the same LIST bytes; jansson serializing the list. */
static int bench_list_baselines(const struct opts *o, const struct buf *list_body,
                                struct results *r)
{
    struct trivial t;
    struct buf resp = {0};
    char head[256];
    double pages, t0;
    size_t bytes = 0;
    json_error_t jerr;
    json_t *j;
    long dumps = 0;
    int rc, n;

    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 list_body->len);
    if (buf_append(&resp, head, (size_t)n))
        out_of_memory();
    if (buf_append(&resp, list_body->p, list_body->len))
        out_of_memory();
    memset(&t, 0, sizeof(t));
    t.resp = resp.p;
    t.resp_len = resp.len;
    rc = trivial_listen(&t);
    if (!rc) {
        pthread_create(&t.th, NULL, trivial_list_main, &t);
        rc = list_rate(&t.sa, "/list", 0, o->seconds, &r->list_trivial_rate, &pages, &bytes,
                       o->pods);
        shutdown(t.lfd, SHUT_RDWR);
        pthread_join(t.th, NULL);
        close(t.lfd);
    }
    buf_release(&resp);
    j = json_loadb(list_body->p, list_body->len, 0, &jerr);
    if (!j)
        return -EPROTO;
    t0 = now_s();
    while (now_s() - t0 < o->seconds || dumps < 2) {
        char *s = json_dumps(j, JSON_COMPACT);
        free(s);
        dumps++;
    }
    r->list_dump_rate = dumps / (now_s() - t0);
    json_decref(j);
    return rc;
}

static void print_results(const struct opts *o, const struct results *r)
{
    char a[64], b[64], label[64];
    printf("\nkubelite bench: %d pods, %d watchers x %d updates, %ld CPUs\n", o->pods, o->watchers,
           o->updates, sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-40s %-24s %-38s %s\n", "measurement", "kubelite", "baseline (same run)", "ratio");
    snprintf(a, sizeof(a), "%.1f ms", r->start_ms);
    snprintf(b, sizeof(b), "sh exec-to-file %.1f ms", r->start_sh_ms);
    printf("%-40s %-24s %-38s %.1fx\n", "startup: exec to kubeconfig (median)", a, b,
           r->start_ms / r->start_sh_ms);
    snprintf(b, sizeof(b), "jansson parse of OpenAPI %.1f ms", r->openapi_parse_ms);
    printf("%-40s %-24s %-38s %.2fx\n", "", "", b, r->start_ms / r->openapi_parse_ms);
    snprintf(a, sizeof(a), "%.0f /s", r->create_rate);
    printf("%-40s %-24s\n", "pod create (POST, 4 connections)", a);
    snprintf(a, sizeof(a), "%.2f /s (%.0f MB/s)", r->list_rate, r->list_rate * r->list_mb);
    snprintf(b, sizeof(b), "trivial HTTP, same bytes %.1f /s", r->list_trivial_rate);
    snprintf(label, sizeof(label), "LIST all %d pods (%.1f MB)", o->pods, r->list_mb);
    printf("%-40s %-24s %-38s %.3f\n", label, a, b, r->list_rate / r->list_trivial_rate);
    snprintf(b, sizeof(b), "jansson dump, same list %.2f /s", r->list_dump_rate);
    printf("%-40s %-24s %-38s %.3f\n", "", "", b, r->list_rate / r->list_dump_rate);
    snprintf(a, sizeof(a), "%.2f /s (%.0f pages/s)", r->page_list_rate, r->page_rate);
    printf("%-40s %-24s %-38s %.3f\n", "LIST all pods, limit=500 pages", a, "(vs unpaginated LIST)",
           r->page_list_rate / r->list_rate);
    snprintf(a, sizeof(a), "%.2f s", r->watch_setup_s);
    printf("%-40s %-24s\n", "watch setup (all streams answering)", a);
    snprintf(a, sizeof(a), "%.0f events/s", r->fan_rate);
    snprintf(b, sizeof(b), "trivial fan-out %.0f events/s", r->base_fan_rate);
    printf("%-40s %-24s %-38s %.3f\n", "watch fan-out: delivered", a, b,
           r->fan_rate / r->base_fan_rate);
    snprintf(b, sizeof(b), "jansson dump of the event %.0f /s", r->fan_dump_rate);
    printf("%-40s %-24s %-38s %.3f\n", "", "", b, r->fan_rate / r->fan_dump_rate);
    snprintf(a, sizeof(a), "%.0f / %.0f / %.0f ms", r->fan_max_lag_ms, r->fan_p99_ms,
             r->fan_p50_ms);
    snprintf(b, sizeof(b), "trivial %.0f / %.0f ms (max / p99)", r->base_max_lag_ms,
             r->base_p99_ms);
    printf("%-40s %-24s %-38s\n", "watch fan-out: lag max / p99 / p50", a, b);
    snprintf(a, sizeof(a), "%d / %d (%d missing)", r->fan_complete, o->watchers, r->fan_missing);
    snprintf(b, sizeof(b), "trivial %d / %d", r->base_complete, o->watchers);
    printf("%-40s %-24s %-38s\n", "watchers that got every event in order", a, b);
    printf("result: %s\n", r->ok ? "ok" : "FAILED (see messages above)");
}

static void usage(void)
{
    fprintf(stderr, "usage: kubelite_bench [--kubelite PATH] [--openapi-dir DIR] [--pods N] "
                    "[--watchers N] [--updates N] [--runs N] [--seconds S]\n");
}

int main(int argc, char **argv)
{
    struct opts o = {"build/bin/kubelite", "tests/kubelite/openapi", 10000, 1000, 200, 7, 3.0, ""};
    struct results r;
    struct rlimit rl;
    struct sockaddr_in sa;
    struct buf list_body = {0};
    char kc[512];
    pid_t pid = -1;
    double t_all = now_s(), el;
    int rc;

    memset(&r, 0, sizeof(r));
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        if (strcmp(argv[i], "--kubelite") == 0)
            o.kubelite = v;
        else if (strcmp(argv[i], "--openapi-dir") == 0)
            o.openapi_dir = v;
        else if (strcmp(argv[i], "--pods") == 0)
            o.pods = atoi(v);
        else if (strcmp(argv[i], "--watchers") == 0)
            o.watchers = atoi(v);
        else if (strcmp(argv[i], "--updates") == 0)
            o.updates = atoi(v);
        else if (strcmp(argv[i], "--runs") == 0)
            o.runs = atoi(v);
        else if (strcmp(argv[i], "--seconds") == 0)
            o.seconds = atof(v);
        else {
            usage();
            return 2;
        }
    }
    if (o.pods < 4 || o.watchers < 1 || o.updates < 1 || o.runs < 1 || o.seconds <= 0) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* two sockets per watcher in the baseline (both ends in this process) */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.watchers * 2 + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    snprintf(o.tmpdir, sizeof(o.tmpdir), "%s/kubelite-bench.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(o.tmpdir)) {
        perror("kubelite_bench: mkdtemp");
        return 1;
    }
    r.ok = true;

    fprintf(stderr, "startup (%d runs)...\n", o.runs);
    rc = bench_startup(&o, &r);
    if (rc) {
        fprintf(stderr, "kubelite_bench: startup: %s\n", strerror(-rc));
        r.ok = false;
        goto out;
    }
    snprintf(kc, sizeof(kc), "%s/kc", o.tmpdir);
    pid = kubelite_start(&o, kc, &el);
    if (pid < 0 || kubeconfig_server(kc, &sa)) {
        fprintf(stderr, "kubelite_bench: cannot start %s\n", o.kubelite);
        r.ok = false;
        goto out;
    }
    fprintf(stderr, "creating %d pods...\n", o.pods);
    if ((rc = create_pods(&sa, o.pods, &r.create_rate))) {
        fprintf(stderr, "kubelite_bench: pod creation failed\n");
        r.ok = false;
        goto out;
    }
    fprintf(stderr, "LIST...\n");
    {
        struct hconn h;
        int status = 0;
        size_t bytes = 0;
        double pages;
        hconn_init(&h, &sa);
        rc = http_req(&h, "GET", "/api/v1/namespaces/" BENCH_NS "/pods", NULL, NULL, &status,
                      &list_body, NULL);
        hconn_release(&h);
        if (!rc && status == 200)
            rc = list_rate(&sa, "/api/v1/namespaces/" BENCH_NS "/pods", 0, o.seconds, &r.list_rate,
                           &pages, &bytes, o.pods);
        else
            rc = -EPROTO;
        r.list_mb = (double)bytes / 1e6;
        if (!rc)
            rc = list_rate(&sa, "/api/v1/namespaces/" BENCH_NS "/pods", 500, o.seconds,
                           &r.page_list_rate, &r.page_rate, &bytes, o.pods);
        if (!rc)
            rc = bench_list_baselines(&o, &list_body, &r);
        if (rc) {
            fprintf(stderr, "kubelite_bench: LIST failed: %s\n", strerror(-rc));
            r.ok = false;
            goto out;
        }
    }
    fprintf(stderr, "watch fan-out (%d watchers x %d updates)...\n", o.watchers, o.updates);
    rc = bench_fanout(&o, &sa, &r);
    if (rc || r.fan_complete != o.watchers) {
        fprintf(stderr, "kubelite_bench: fan-out: %s, %d of %d watchers complete\n",
                rc ? strerror(-rc) : "ok", r.fan_complete, o.watchers);
        r.ok = false;
    }
    {
        /* the same event bytes the kubelite watchers received: one pod as a MODIFIED event */
        struct hconn h;
        struct buf pod = {0};
        int status = 0;
        hconn_init(&h, &sa);
        rc = http_req(&h, "GET", "/api/v1/namespaces/" BENCH_NS "/pods/pod-00000", NULL, NULL,
                      &status, &pod, NULL);
        hconn_release(&h);
        if (!rc && status == 200)
            rc = bench_fanout_baseline(&o, pod.p, &r);
        buf_release(&pod);
        if (rc || r.base_complete != o.watchers) {
            fprintf(stderr, "kubelite_bench: baseline fan-out failed\n");
            r.ok = false;
        }
    }
out:
    stop_child(pid);
    buf_release(&list_body);
    {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", o.tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "kubelite_bench: cannot remove %s\n", o.tmpdir);
    }
    print_results(&o, &r);
    printf("total bench time %.0f s\n", now_s() - t_all);
    return r.ok ? 0 : 1;
}
