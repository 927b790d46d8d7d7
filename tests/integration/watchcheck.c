/*
 * watchcheck.c - checks kubelite's WATCH, LIST and pagination semantics under concurrent writes.
 *
 *   watchcheck stress --server http://127.0.0.1:PORT [--writers N] [--ops N] [--seed N]
 *   watchcheck expire --server http://127.0.0.1:PORT [--history N]
 *
 * stress: writer threads create, update, relabel and delete ConfigMaps in three namespaces
 * while watcher threads start at different moments under every resourceVersion mode (unset,
 * "0", an rv from a LIST, sendInitialEvents streaming lists, informer-style paginated LIST then
 * WATCH), with and without label and field selectors, namespaced and across namespaces. The
 * ground truth is the sequence of committed writes: each create/update response carries the new
 * object and its resourceVersion; a DELETE runs while no other write is in flight (writers hold
 * a shared lock, a delete the exclusive one), so its resourceVersion is the highest committed
 * one plus one. Afterwards every watcher's stream is compared event by event with what the
 * ground truth says it should have seen (type, key, resourceVersion and the exact object; a
 * DELETED sent because an object left the selector must carry the last matching state with the
 * event's resourceVersion, as kube-apiserver does), every LIST with the state at its
 * resourceVersion, and every watcher's reconstructed cache (its LIST plus events, or its events
 * alone) with a fresh LIST.
 *
 * expire: run against a server started with --watch-history N (small). Checks 410 Expired for a
 * WATCH from a compacted resourceVersion (HTTP 200 + ERROR event), for a LIST continue token and
 * an Exact LIST older than the history, the exact boundary of the retained window, and that a
 * reflector recovers by relisting.
 *
 * Prints "PASS name" or "FAIL name: detail" per check, then "watchcheck: N passed, N failed".
 * Exit status 0 when every check passed. Needs only jansson and pthreads (plain HTTP/1.1 over
 * blocking sockets; kubelite must run with --insecure). WATCHCHECK_DEBUG=1 dumps the write log.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/pct.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WC_NS_COUNT 3
#define WC_NAMES_PER_WRITER 8
#define WC_MAX_TERMS 8

static const char *const wc_namespaces[WC_NS_COUNT] = {"wc-a", "wc-b", "wc-c"};

/* ------------------------------------------------------------------ small helpers */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static const char *meta_str(const json_t *obj, const char *k)
{
    const char *s = jstr(json_object_get(obj, "metadata"), k);
    return s ? s : "";
}

static uint64_t obj_rv(const json_t *obj)
{
    return strtoull(meta_str(obj, "resourceVersion"), NULL, 10);
}

static void obj_key(const json_t *obj, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", meta_str(obj, "namespace"), meta_str(obj, "name"));
}

static void obj_set_rv(json_t *obj, uint64_t rv)
{
    char s[32];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)rv);
    json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion", json_string(s));
}

/* Percent-encode a query value (core/pct.h); "" when it does not fit or memory ran out. */
static void url_encode(const char *s, char *out, size_t outlen)
{
    struct buf b;

    buf_init(&b);
    if (pct_encode_buf(&b, s, NULL) == 0 && b.len < outlen)
        memcpy(out, b.p, b.len + 1);
    else
        out[0] = '\0';
    buf_release(&b);
}

/* ------------------------------------------------------------------ HTTP/1.1 client */

struct hconn {
    int fd;
    struct sockaddr_in sa;
    struct buf in; /* received and not yet consumed */
};

struct hresp {
    int status;
    bool chunked;
    long clen;
    bool close;
};

static void hconn_close(struct hconn *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
    buf_release(&h->in);
}

static int hconn_open(struct hconn *h, const struct sockaddr_in *sa)
{
    int one = 1;
    memset(h, 0, sizeof(*h));
    h->sa = *sa;
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->fd < 0)
        return -errno;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(h->fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        int rc = -errno;
        hconn_close(h);
        return rc;
    }
    return 0;
}

/* Read more bytes into h->in. 0, -ETIMEDOUT, -ECONNRESET (peer closed) or -errno. */
static int hconn_fill(struct hconn *h, int timeout_ms)
{
    char tmp[65536];
    struct pollfd p = {.fd = h->fd, .events = POLLIN};
    ssize_t n;
    int r = poll(&p, 1, timeout_ms);
    if (r < 0)
        return errno == EINTR ? -ETIMEDOUT : -errno;
    if (r == 0)
        return -ETIMEDOUT;
    n = recv(h->fd, tmp, sizeof(tmp), 0);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -errno;
    if (n == 0)
        return -ECONNRESET;
    return buf_append(&h->in, tmp, (size_t)n);
}

static int hconn_send(struct hconn *h, const char *method, const char *path, const char *ctype,
                      const char *body)
{
    struct buf req = {0};
    char head[4096];
    size_t off = 0;
    int rc = 0;

    snprintf(head, sizeof(head),
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: watchcheck\r\n"
             "Accept: application/json\r\n%s%s%sContent-Length: %zu\r\n\r\n",
             method, path, ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
             body ? strlen(body) : 0);
    if (buf_append(&req, head, strlen(head)) || (body && buf_append(&req, body, strlen(body)))) {
        buf_release(&req);
        return -ENOMEM;
    }
    while (off < req.len) {
        ssize_t n = send(h->fd, req.p + off, req.len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        off += (size_t)n;
    }
    buf_release(&req);
    return rc;
}

static int hconn_read_head(struct hconn *h, struct hresp *r, int timeout_ms)
{
    char *end, *line;
    int rc;

    memset(r, 0, sizeof(*r));
    r->clen = -1;
    while (!h->in.p || !(end = strstr(h->in.p, "\r\n\r\n"))) {
        rc = hconn_fill(h, timeout_ms);
        if (rc)
            return rc;
    }
    if (sscanf(h->in.p, "HTTP/1.%*d %d", &r->status) != 1)
        return -EPROTO;
    for (line = strstr(h->in.p, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "content-length:", 15) == 0)
            r->clen = atol(line + 15);
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strstr(line, "chunked"))
            r->chunked = true;
        else if (strncasecmp(line, "connection:", 11) == 0 &&
                 strncasecmp(line + 11 + strspn(line + 11, " "), "close", 5) == 0)
            r->close = true;
    }
    buf_consume(&h->in, (size_t)(end + 4 - h->in.p));
    return 0;
}

/* Take one chunk into out: 1 taken, 2 terminating chunk, 0 need more input, <0 malformed. */
static int hconn_take_chunk(struct hconn *h, struct buf *out)
{
    char *crlf, *endp;
    unsigned long size;
    size_t hdrlen;

    if (!h->in.len)
        return 0;
    crlf = memmem(h->in.p, h->in.len, "\r\n", 2);
    if (!crlf)
        return 0;
    size = strtoul(h->in.p, &endp, 16);
    if (endp == h->in.p)
        return -EPROTO;
    hdrlen = (size_t)(crlf + 2 - h->in.p);
    if (h->in.len < hdrlen + size + 2)
        return 0;
    if (size == 0) {
        buf_consume(&h->in, hdrlen + 2);
        return 2;
    }
    if (buf_append(out, h->in.p + hdrlen, size))
        return -ENOMEM;
    buf_consume(&h->in, hdrlen + size + 2);
    return 1;
}

static int hconn_read_body(struct hconn *h, const struct hresp *r, struct buf *out, int timeout_ms)
{
    int rc;
    if (r->chunked) {
        for (;;) {
            rc = hconn_take_chunk(h, out);
            if (rc == 2)
                return 0;
            if (rc < 0)
                return rc;
            if (rc == 0 && (rc = hconn_fill(h, timeout_ms)))
                return rc;
        }
    }
    if (r->clen < 0)
        return -EPROTO;
    while (h->in.len < (size_t)r->clen) {
        rc = hconn_fill(h, timeout_ms);
        if (rc)
            return rc;
    }
    rc = buf_append(out, h->in.p ? h->in.p : "", (size_t)r->clen);
    buf_consume(&h->in, (size_t)r->clen);
    return rc;
}

/*
 * One request on a keep-alive connection (reopened when the server closed it). *out is the
 * parsed JSON body (NULL when it is not JSON); *status the HTTP status.
 */
static int http_call(struct hconn *h, const char *method, const char *path, const char *ctype,
                     const char *body, int *status, json_t **out)
{
    struct hresp r;
    struct buf b = {0};
    json_error_t jerr;
    int rc;

    *out = NULL;
    if (h->fd < 0 && (rc = hconn_open(h, &h->sa)))
        return rc;
    rc = hconn_send(h, method, path, ctype, body);
    if (!rc)
        rc = hconn_read_head(h, &r, 10000);
    if (!rc)
        rc = hconn_read_body(h, &r, &b, 10000);
    if (rc) {
        buf_release(&b);
        hconn_close(h);
        return rc;
    }
    *status = r.status;
    *out = b.len ? json_loadb(b.p, b.len, 0, &jerr) : NULL;
    buf_release(&b);
    if (r.close)
        hconn_close(h);
    return 0;
}

static int http_json(struct hconn *h, const char *method, const char *path, const char *ctype,
                     json_t *body, int *status, json_t **out)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    int rc;
    if (body && !s)
        return -ENOMEM;
    rc = http_call(h, method, path, ctype, s, status, out);
    free(s);
    return rc;
}

/* A WATCH response being read: events arrive as chunks, each a JSON line. */
struct wstream {
    struct hconn h;
    struct hresp r;
    struct buf lines;
    bool eof;
};

static int wstream_open(struct wstream *w, const struct sockaddr_in *sa, const char *path)
{
    int rc;
    memset(w, 0, sizeof(*w));
    rc = hconn_open(&w->h, sa);
    if (!rc)
        rc = hconn_send(&w->h, "GET", path, NULL, NULL);
    if (!rc)
        rc = hconn_read_head(&w->h, &w->r, 10000);
    if (!rc && !w->r.chunked) {
        /* An error answered at once (400, 422, ...): keep its body as the only "line". */
        rc = hconn_read_body(&w->h, &w->r, &w->lines, 10000);
        w->eof = true;
    }
    return rc;
}

static void wstream_close(struct wstream *w)
{
    hconn_close(&w->h);
    buf_release(&w->lines);
}

/* Next event: 1 with *ev (new ref), 0 when nothing arrived in timeout_ms, -1 at end/error. */
static int wstream_next(struct wstream *w, int timeout_ms, json_t **ev)
{
    json_error_t jerr;
    for (;;) {
        char *nl = w->lines.len ? memchr(w->lines.p, '\n', w->lines.len) : NULL;
        int rc;
        if (nl) {
            *ev = json_loadb(w->lines.p, (size_t)(nl - w->lines.p), 0, &jerr);
            buf_consume(&w->lines, (size_t)(nl - w->lines.p) + 1);
            if (!*ev)
                return -1;
            return 1;
        }
        if (w->eof)
            return -1;
        rc = hconn_take_chunk(&w->h, &w->lines);
        if (rc == 1)
            continue;
        if (rc == 2 || rc < 0) {
            w->eof = true;
            continue;
        }
        rc = hconn_fill(&w->h, timeout_ms);
        if (rc == -ETIMEDOUT)
            return 0;
        if (rc)
            w->eof = true;
    }
}

/* ------------------------------------------------------------------ selectors */

enum { OP_EQ, OP_NE, OP_IN, OP_NOTIN, OP_EXISTS, OP_NOTEXISTS };

struct term {
    char key[64];
    int op;
    char vals[4][64];
    int nvals;
    bool field;
};

/* What a watcher or list asks for: namespace, label and field selector. */
struct filter {
    const char *ns; /* NULL = all namespaces */
    const char *labels, *fields;
    struct term t[WC_MAX_TERMS];
    int n;
};

static void trim(char *s)
{
    size_t n = strlen(s), i = 0;
    while (n && s[n - 1] == ' ')
        s[--n] = '\0';
    while (s[i] == ' ')
        i++;
    memmove(s, s + i, n - i + 1);
}

/* Parse the small selector language this harness uses (a subset of Kubernetes'). */
static int filter_parse_part(struct filter *f, const char *sel, bool field)
{
    char buf[512], *p, *save = NULL;
    int depth = 0;

    if (!sel)
        return 0;
    snprintf(buf, sizeof(buf), "%s", sel);
    /* commas inside "in (a,b)" become '|' so the terms split cleanly */
    for (p = buf; *p; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')')
            depth--;
        else if (*p == ',' && depth)
            *p = '|';
    }
    for (p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        struct term *t;
        char *op, *v;
        if (f->n == WC_MAX_TERMS)
            return -E2BIG;
        t = &f->t[f->n++];
        memset(t, 0, sizeof(*t));
        t->field = field;
        trim(p);
        if ((op = strstr(p, "!="))) {
            t->op = OP_NE;
            v = op + 2;
        } else if ((op = strstr(p, "=="))) {
            t->op = OP_EQ;
            v = op + 2;
        } else if ((op = strchr(p, '='))) {
            t->op = OP_EQ;
            v = op + 1;
        } else if ((op = strstr(p, " notin "))) {
            t->op = OP_NOTIN;
            v = op + 7;
        } else if ((op = strstr(p, " in "))) {
            t->op = OP_IN;
            v = op + 4;
        } else if (p[0] == '!') {
            t->op = OP_NOTEXISTS;
            snprintf(t->key, sizeof(t->key), "%s", p + 1);
            continue;
        } else {
            t->op = OP_EXISTS;
            snprintf(t->key, sizeof(t->key), "%s", p);
            continue;
        }
        *op = '\0';
        snprintf(t->key, sizeof(t->key), "%s", p);
        trim(t->key);
        if (t->op == OP_IN || t->op == OP_NOTIN) {
            char *s2 = NULL, *x;
            v += strspn(v, " (");
            v[strcspn(v, ")")] = '\0';
            for (x = strtok_r(v, "|", &s2); x && t->nvals < 4; x = strtok_r(NULL, "|", &s2)) {
                snprintf(t->vals[t->nvals], sizeof(t->vals[0]), "%s", x);
                trim(t->vals[t->nvals++]);
            }
        } else {
            snprintf(t->vals[0], sizeof(t->vals[0]), "%s", v);
            trim(t->vals[0]);
            t->nvals = 1;
        }
    }
    return 0;
}

static int filter_init(struct filter *f, const char *ns, const char *labels, const char *fields)
{
    int rc;
    memset(f, 0, sizeof(*f));
    f->ns = ns;
    f->labels = labels;
    f->fields = fields;
    rc = filter_parse_part(f, labels, false);
    if (!rc)
        rc = filter_parse_part(f, fields, true);
    return rc;
}

static bool filter_match(const struct filter *f, const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const json_t *labels = json_object_get(md, "labels");

    if (!obj)
        return false;
    if (f->ns && strcmp(meta_str(obj, "namespace"), f->ns) != 0)
        return false;
    for (int i = 0; i < f->n; i++) {
        const struct term *t = &f->t[i];
        const char *v;
        bool in = false;
        if (t->field)
            v = strcmp(t->key, "metadata.name") == 0 ? meta_str(obj, "name")
                                                     : meta_str(obj, "namespace");
        else
            v = jstr(labels, t->key);
        for (int j = 0; v && j < t->nvals; j++)
            in = in || strcmp(v, t->vals[j]) == 0;
        switch (t->op) {
        case OP_EQ:
        case OP_IN:
            if (!in)
                return false;
            break;
        case OP_NE:
        case OP_NOTIN:
            if (in)
                return false;
            break;
        case OP_EXISTS:
            if (!v)
                return false;
            break;
        default:
            if (v)
                return false;
            break;
        }
    }
    return true;
}

/* Collection path with query: "/api/v1[/namespaces/NS]/configmaps?<selectors>&<extra>". */
static void filter_path(const struct filter *f, const char *extra, char *out, size_t outlen)
{
    char l[1024] = "", fl[1024] = "", el[1100] = "", ef[1100] = "";
    if (f->labels) {
        url_encode(f->labels, l, sizeof(l));
        snprintf(el, sizeof(el), "&labelSelector=%s", l);
    }
    if (f->fields) {
        url_encode(f->fields, fl, sizeof(fl));
        snprintf(ef, sizeof(ef), "&fieldSelector=%s", fl);
    }
    snprintf(out, outlen, "/api/v1%s%s/configmaps?x=1%s%s%s%s", f->ns ? "/namespaces/" : "",
             f->ns ? f->ns : "", el, ef, extra && extra[0] ? "&" : "", extra ? extra : "");
}

/* ------------------------------------------------------------------ reporting */

struct report {
    int pass, fail;
};

__attribute__((format(printf, 4, 5))) static void check(struct report *r, bool ok, const char *name,
                                                        const char *fmt, ...)
{
    va_list ap;
    if (ok) {
        r->pass++;
        printf("PASS %s\n", name);
    } else {
        r->fail++;
        printf("FAIL %s: ", name);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------ ground truth */

enum { T_ADD, T_MOD, T_DEL };

/* One committed write. */
struct trec {
    uint64_t rv;
    int type;
    char key[160];
    json_t *obj; /* committed state; for T_DEL the final state with the deletion's rv */
    json_t *old; /* state before (filled in when the log is sorted) */
};

struct truth {
    uint64_t start_rv, end_rv;
    json_t *initial; /* key -> object at start_rv */
    struct trec *recs;
    size_t n, cap;
};

static int truth_add(struct truth *t, uint64_t rv, int type, const json_t *obj)
{
    struct trec *r;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        struct trec *p = realloc(t->recs, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        t->recs = p;
        t->cap = cap;
    }
    r = &t->recs[t->n++];
    memset(r, 0, sizeof(*r));
    r->rv = rv;
    r->type = type;
    obj_key(obj, r->key, sizeof(r->key));
    r->obj = json_deep_copy(obj);
    if (type == T_DEL)
        obj_set_rv(r->obj, rv);
    return 0;
}

static int trec_cmp(const void *a, const void *b)
{
    const struct trec *x = a, *y = b;
    return x->rv < y->rv ? -1 : x->rv > y->rv;
}

/* Sort the log, fill in old states; returns an error text or NULL. */
static const char *truth_finish(struct truth *t, char *msg, size_t msglen)
{
    json_t *state = json_deep_copy(t->initial);
    const char *err = NULL;

    qsort(t->recs, t->n, sizeof(*t->recs), trec_cmp);
    if (getenv("WATCHCHECK_DEBUG")) /* the write log, for diagnosing a failure by hand */
        for (size_t i = 0; i < t->n; i++)
            fprintf(stderr, "rec %llu %d %s\n", (unsigned long long)t->recs[i].rv, t->recs[i].type,
                    t->recs[i].key);
    for (size_t i = 0; i < t->n && !err; i++) {
        struct trec *r = &t->recs[i];
        json_t *old = json_object_get(state, r->key);
        if (r->rv != t->start_rv + 1 + i) {
            snprintf(msg, msglen,
                     "write #%zu has rv %llu, expected %llu (a commit not made by "
                     "the writers, or a duplicate rv)",
                     i, (unsigned long long)r->rv, (unsigned long long)(t->start_rv + 1 + i));
            err = msg;
        } else if ((r->type == T_ADD) != (old == NULL)) {
            snprintf(msg, msglen, "rv %llu: %s of %s but the object %s", (unsigned long long)r->rv,
                     r->type == T_ADD ? "create" : "update/delete", r->key,
                     old ? "existed" : "did not exist");
            err = msg;
        }
        r->old = json_incref(old);
        if (r->type == T_DEL)
            json_object_del(state, r->key);
        else
            json_object_set(state, r->key, r->obj);
    }
    json_decref(state);
    t->end_rv = t->start_rv + t->n;
    return err;
}

/* State at rv (new object key -> object). */
static json_t *truth_state(const struct truth *t, uint64_t rv)
{
    json_t *state = json_copy(t->initial);
    for (size_t i = 0; i < t->n && t->recs[i].rv <= rv; i++) {
        if (t->recs[i].type == T_DEL)
            json_object_del(state, t->recs[i].key);
        else
            json_object_set(state, t->recs[i].key, t->recs[i].obj);
    }
    return state;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Objects of state matching f, as an array sorted by key (new ref). */
static json_t *state_filtered(const json_t *state, const struct filter *f)
{
    const char **keys = malloc((json_object_size(state) + 1) * sizeof(*keys));
    json_t *out = json_array(), *v;
    const char *k;
    size_t n = 0;

    if (!keys || !out) {
        free(keys);
        json_decref(out);
        return NULL;
    }
    json_object_foreach((json_t *)state, k, v)
    {
        if (filter_match(f, v))
            keys[n++] = k;
    }
    qsort(keys, n, sizeof(*keys), key_cmp);
    for (size_t i = 0; i < n; i++)
        json_array_append(out, json_object_get(state, keys[i]));
    free(keys);
    return out;
}

/* What a watcher with filter f should see for record r: type string or NULL. */
static const char *expected_type(const struct filter *f, const struct trec *r, bool *exit)
{
    bool was = r->old && filter_match(f, r->old), is = r->type != T_DEL && filter_match(f, r->obj);
    *exit = false;
    if (r->type == T_DEL)
        return was ? "DELETED" : NULL;
    if (was && is)
        return "MODIFIED";
    if (is)
        return "ADDED";
    if (was) {
        *exit = true;
        return "DELETED";
    }
    return NULL;
}

/* Compare two item arrays (sorted by key). NULL when equal, else a description in msg. */
static const char *items_diff(const json_t *got, const json_t *want, char *msg, size_t msglen)
{
    size_t n =
        json_array_size(got) > json_array_size(want) ? json_array_size(got) : json_array_size(want);
    for (size_t i = 0; i < n; i++) {
        const json_t *g = json_array_get(got, i), *w = json_array_get(want, i);
        char gk[160] = "(none)", wk[160] = "(none)";
        if (g)
            obj_key(g, gk, sizeof(gk));
        if (w)
            obj_key(w, wk, sizeof(wk));
        if (!g || !w || strcmp(gk, wk) != 0) {
            snprintf(msg, msglen, "item %zu: got %s, want %s (%zu items, want %zu)", i, gk, wk,
                     json_array_size(got), json_array_size(want));
            return msg;
        }
        if (!json_equal((json_t *)g, (json_t *)w)) {
            snprintf(msg, msglen, "item %zu %s: got rv %s, want rv %s (content differs)", i, gk,
                     meta_str(g, "resourceVersion"), meta_str(w, "resourceVersion"));
            return msg;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ stress scenario */

enum wmode { WM_UNSET, WM_ZERO, WM_LISTRV, WM_INITIAL, WM_INITIAL_RV, WM_INFORMER };

static const char *const wmode_names[] = {
    "rv-unset", "rv-0", "rv-from-list", "initial-events", "initial-events-rv", "informer"};

struct wspec {
    enum wmode mode;
    const char *ns, *labels, *fields;
    bool bookmarks;
    double start;    /* fraction of the writes done before the watcher starts */
    double watch_at; /* WM_LISTRV: fraction at which the watch starts after the list (0: at once) */
    int limit;       /* page size for the list (0: no pagination) */
};

/* clang-format off */
static const struct wspec wc_specs[] = {
    {WM_UNSET, NULL, NULL, NULL, false, 0.00, 0, 0},
    {WM_UNSET, "wc-a", "tier=hot", NULL, false, 0.30, 0, 0},
    {WM_UNSET, NULL, "tier=cold", NULL, true, 0.80, 0, 0},
    {WM_ZERO, NULL, "tier=hot", NULL, false, 0.15, 0, 0},
    {WM_ZERO, "wc-b", NULL, NULL, true, 0.50, 0, 0},
    {WM_LISTRV, NULL, NULL, NULL, false, 0.10, 0, 0},
    {WM_LISTRV, "wc-a", NULL, NULL, true, 0.40, 0, 0},
    {WM_LISTRV, NULL, "tier=hot", NULL, false, 0.20, 0, 0},
    {WM_LISTRV, "wc-c", "tier!=hot", NULL, false, 0.25, 0, 0},
    {WM_LISTRV, NULL, NULL, "metadata.namespace=wc-b", false, 0.60, 0, 0},
    {WM_LISTRV, NULL, "tier in (hot),app=wc", "metadata.namespace!=wc-c", true, 0.70, 0, 0},
    {WM_LISTRV, NULL, "tier=hot", NULL, false, 0.20, 0.60, 0},
    {WM_LISTRV, "wc-b", NULL, "metadata.name!=w1-1", false, 0.05, 0.50, 3},
    {WM_INITIAL, NULL, NULL, NULL, true, 0.05, 0, 0},
    {WM_INITIAL, "wc-b", "tier=hot", NULL, true, 0.35, 0, 0},
    {WM_INITIAL, NULL, "tier=cold", "metadata.name!=w0-1", true, 0.55, 0, 0},
    {WM_INITIAL_RV, "wc-a", NULL, NULL, true, 0.45, 0, 0},
    {WM_INFORMER, NULL, NULL, NULL, true, 0.10, 0, 3},
    {WM_INFORMER, "wc-a", "tier=hot", NULL, true, 0.30, 0, 2},
    {WM_INFORMER, NULL, NULL, "metadata.namespace=wc-c", true, 0.50, 0, 4},
    {WM_INFORMER, NULL, "tier notin (cold)", NULL, false, 0.75, 0, 5},
    {WM_INFORMER, "wc-c", NULL, NULL, true, 0.00, 0, 1},
};
/* clang-format on */
#define WC_NSPECS (sizeof(wc_specs) / sizeof(wc_specs[0]))

/* DELETED events sent because an object left a watcher's selector, and how many carried an
 * object other than the last matching state (what kube-apiserver sends). */
struct exitstat {
    int total, bad;
    char example[512];
};

struct stress;

struct watcher {
    struct stress *s;
    const struct wspec *spec;
    int idx;
    char name[256];
    struct filter f;
    pthread_t th;
    uint64_t list_rv;
    json_t *list_items; /* concatenated pages */
    int pages;
    int rem_pages;     /* pages whose remainingItemCount was checked */
    char rem_err[512]; /* remainingItemCount wrong on some page */
    char err[512];
    json_t *events; /* every event received, bookmarks included */
};

struct writer {
    struct stress *s;
    int idx;
    pthread_t th;
    unsigned seed;
    json_t *objs[WC_NAMES_PER_WRITER];
    char err[512];
};

struct stress {
    struct sockaddr_in sa;
    int nwriters, ops;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_rwlock_t del_lock;
    uint64_t max_rv;
    long ops_done, ops_total;
    bool done;
    double done_at;
    uint64_t end_rv;
    struct truth truth;
    struct exitstat xs;
};

static void stress_progress(struct stress *s)
{
    pthread_mutex_lock(&s->mu);
    s->ops_done++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static json_t *cm_new(const char *ns, const char *name, const char *tier, int writer, long v)
{
    char w[16], vs[32];
    snprintf(w, sizeof(w), "w%d", writer);
    snprintf(vs, sizeof(vs), "%ld", v);
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s,s:s}},s:{s:s}}", "apiVersion", "v1", "kind",
                     "ConfigMap", "metadata", "name", name, "namespace", ns, "labels", "app", "wc",
                     "tier", tier, "writer", w, "data", "v", vs);
}

/* One write by writer wr on its object j. Returns 0 or -1 with wr->err set. */
static int writer_step(struct writer *wr, struct hconn *h, int j, long counter)
{
    struct stress *s = wr->s;
    const char *ns = wc_namespaces[j % WC_NS_COUNT];
    char name[64], path[256], vs[32];
    json_t *cur = wr->objs[j], *body = NULL, *resp = NULL;
    int status = 0, rc, type, want = 200, r = (int)(rand_r(&wr->seed) % 100);
    const char *method, *ctype = "application/json";
    bool del = false;
    uint64_t rv;

    snprintf(name, sizeof(name), "w%d-%d", wr->idx, j);
    snprintf(vs, sizeof(vs), "%ld", counter);
    if (!cur) {
        type = T_ADD;
        method = "POST";
        want = 201;
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", ns);
        body = cm_new(ns, name, rand_r(&wr->seed) % 2 ? "hot" : "cold", wr->idx, counter);
    } else {
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", ns, name);
        type = T_MOD;
        if (r < 40) {
            /* full update with the resourceVersion precondition */
            method = "PUT";
            body = json_deep_copy(cur);
            json_object_set_new(json_object_get(body, "data"), "v", json_string(vs));
        } else if (r < 60) {
            method = "PATCH";
            ctype = "application/merge-patch+json";
            body = json_pack("{s:{s:s}}", "data", "v", vs);
        } else if (r < 84) {
            /* move the object in or out of the tier=hot / tier=cold selectors */
            const char *tier =
                jstr(json_object_get(json_object_get(cur, "metadata"), "labels"), "tier");
            method = "PATCH";
            ctype = "application/merge-patch+json";
            body = json_pack("{s:{s:{s:s}},s:{s:s}}", "metadata", "labels", "tier",
                             tier && strcmp(tier, "hot") == 0 ? "cold" : "hot", "data", "v", vs);
        } else {
            type = T_DEL;
            method = "DELETE";
            del = true;
        }
    }
    if (del)
        pthread_rwlock_wrlock(&s->del_lock);
    else
        pthread_rwlock_rdlock(&s->del_lock);
    rc = http_json(h, method, path, body ? ctype : NULL, body, &status, &resp);
    if (!rc && status == want && del) {
        /* No other write was in flight: the deletion took the next resourceVersion. */
        pthread_mutex_lock(&s->mu);
        rv = s->max_rv + 1;
        pthread_mutex_unlock(&s->mu);
    } else {
        rv = resp ? obj_rv(resp) : 0;
    }
    if (!rc && status == want && rv) {
        /* recorded before the shared lock is released, so a delete sees every earlier rv */
        pthread_mutex_lock(&s->mu);
        rc = truth_add(&s->truth, rv, type, resp);
        if (rv > s->max_rv)
            s->max_rv = rv;
        pthread_mutex_unlock(&s->mu);
    }
    pthread_rwlock_unlock(&s->del_lock);
    json_decref(body);
    if (rc || status != want || !rv) {
        char *txt = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
        snprintf(wr->err, sizeof(wr->err), "%s %s: rc=%d status=%d want %d: %.300s", method, path,
                 rc, status, want, txt ? txt : "");
        free(txt);
        json_decref(resp);
        return -1;
    }
    json_decref(wr->objs[j]);
    wr->objs[j] = del ? NULL : resp;
    if (del)
        json_decref(resp);
    stress_progress(s);
    return 0;
}

static void *writer_main(void *arg)
{
    struct writer *wr = arg;
    struct hconn h;
    long counter = (long)wr->idx * 1000000;

    if (hconn_open(&h, &wr->s->sa)) {
        snprintf(wr->err, sizeof(wr->err), "cannot connect");
        return NULL;
    }
    for (int i = 0; i < wr->s->ops; i++) {
        int j = (int)(rand_r(&wr->seed) % WC_NAMES_PER_WRITER);
        if (writer_step(wr, &h, j, ++counter))
            break;
        if (i % 8 == 7)
            sleep_ms(1); /* spread the writes so watchers start in between */
    }
    hconn_close(&h);
    return NULL;
}

static void stress_wait_progress(struct stress *s, double frac)
{
    long target = (long)(frac * (double)s->ops_total);
    pthread_mutex_lock(&s->mu);
    while (s->ops_done < target && !s->done)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* LIST with the watcher's filter, paginated when limit > 0; fills list_rv and list_items. */
static int watcher_list(struct watcher *w, int limit, bool pause)
{
    struct hconn h;
    char path[4096], extra[2400], enc[2048];
    json_t *resp = NULL;
    char cont[2048] = "";
    int status, rc;

    w->list_items = json_array();
    if (hconn_open(&h, &w->s->sa)) {
        snprintf(w->err, sizeof(w->err), "cannot connect");
        return -1;
    }
    size_t seen[256];
    json_int_t remaining[256];
    int np = 0;

    do {
        const char *c;
        uint64_t rv;
        json_t *rem;
        url_encode(cont, enc, sizeof(enc));
        snprintf(extra, sizeof(extra), "limit=%d%s%s", limit, cont[0] ? "&continue=" : "", enc);
        filter_path(&w->f, limit ? extra : NULL, path, sizeof(path));
        rc = http_call(&h, "GET", path, NULL, NULL, &status, &resp);
        if (rc || status != 200 || !resp) {
            snprintf(w->err, sizeof(w->err), "LIST %.300s: rc=%d status=%d", path, rc, status);
            json_decref(resp);
            hconn_close(&h);
            return -1;
        }
        rv = strtoull(meta_str(resp, "resourceVersion"), NULL, 10);
        if (!w->pages)
            w->list_rv = rv;
        else if (rv != w->list_rv)
            snprintf(w->err, sizeof(w->err), "page %d has resourceVersion %llu, first page %llu",
                     w->pages + 1, (unsigned long long)rv, (unsigned long long)w->list_rv);
        w->pages++;
        json_array_extend(w->list_items, json_object_get(resp, "items"));
        rem = json_object_get(json_object_get(resp, "metadata"), "remainingItemCount");
        if (np < 256) {
            seen[np] = json_array_size(w->list_items);
            remaining[np++] = json_is_integer(rem) ? json_integer_value(rem) : -1;
        }
        c = meta_str(resp, "continue");
        snprintf(cont, sizeof(cont), "%s", c);
        json_decref(resp);
        if (cont[0] && pause)
            sleep_ms(15); /* let writes land between pages */
    } while (cont[0]);
    hconn_close(&h);
    /* remainingItemCount: what later pages hold; absent on the last page and with selectors */
    for (int i = 0; limit && i < np && !w->rem_err[0]; i++) {
        json_int_t want =
            i == np - 1 || w->f.n ? -1 : (json_int_t)(json_array_size(w->list_items) - seen[i]);
        if (remaining[i] != want)
            snprintf(w->rem_err, sizeof(w->rem_err),
                     "%.200s: page %d of %d: remainingItemCount %lld, want %lld (-1 = absent)",
                     w->name, i + 1, np, (long long)remaining[i], (long long)want);
        w->rem_pages++;
    }
    return w->err[0] ? -1 : 0;
}

static void *watcher_main(void *arg)
{
    struct watcher *w = arg;
    struct stress *s = w->s;
    const struct wspec *sp = w->spec;
    struct wstream ws;
    char path[4096], extra[512];
    double last_data = 0, deadline = 0;
    bool opened = false;

    w->events = json_array();
    stress_wait_progress(s, sp->start);
    if (sp->mode == WM_LISTRV || sp->mode == WM_INFORMER || sp->mode == WM_INITIAL_RV) {
        if (watcher_list(w, sp->limit, sp->mode == WM_INFORMER || sp->limit))
            return NULL;
        if (sp->watch_at > 0)
            stress_wait_progress(s, sp->watch_at);
    }
    switch (sp->mode) {
    case WM_UNSET:
        snprintf(extra, sizeof(extra), "watch=1");
        break;
    case WM_ZERO:
        snprintf(extra, sizeof(extra), "watch=1&resourceVersion=0");
        break;
    case WM_INITIAL:
        snprintf(extra, sizeof(extra),
                 "watch=1&sendInitialEvents=true&resourceVersionMatch="
                 "NotOlderThan");
        break;
    case WM_INITIAL_RV:
        snprintf(extra, sizeof(extra),
                 "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&"
                 "resourceVersion=%llu",
                 (unsigned long long)w->list_rv);
        break;
    default:
        snprintf(extra, sizeof(extra), "watch=1&resourceVersion=%llu",
                 (unsigned long long)w->list_rv);
        break;
    }
    if (sp->bookmarks || sp->mode == WM_INITIAL || sp->mode == WM_INITIAL_RV)
        strcat(extra, "&allowWatchBookmarks=true");
    filter_path(&w->f, extra, path, sizeof(path));
    if (wstream_open(&ws, &s->sa, path)) {
        snprintf(w->err, sizeof(w->err), "WATCH %.300s: cannot open", path);
        wstream_close(&ws);
        return NULL;
    }
    opened = true;
    if (ws.r.status != 200) {
        snprintf(w->err, sizeof(w->err), "WATCH %.250s: status %d: %.200s", path, ws.r.status,
                 ws.lines.p ? ws.lines.p : "");
        wstream_close(&ws);
        return NULL;
    }
    for (;;) {
        json_t *ev = NULL;
        int rc = wstream_next(&ws, 100, &ev);
        bool done;
        uint64_t end_rv;
        double done_at;
        if (rc < 0) {
            snprintf(w->err, sizeof(w->err), "stream ended early after %zu events",
                     json_array_size(w->events));
            break;
        }
        pthread_mutex_lock(&s->mu);
        done = s->done;
        end_rv = s->end_rv;
        done_at = s->done_at;
        pthread_mutex_unlock(&s->mu);
        if (rc == 1) {
            const char *type = jstr(ev, "type");
            last_data = now_s();
            json_array_append_new(w->events, ev);
            if (done && type && strcmp(type, "BOOKMARK") == 0 &&
                obj_rv(json_object_get(ev, "object")) >= end_rv)
                break;
            continue;
        }
        if (!done)
            continue;
        /* Writers finished: the server queued every event already; drain what is in flight. */
        if (!deadline)
            deadline = done_at + 15;
        if (now_s() - (last_data > done_at ? last_data : done_at) > 1.0 || now_s() > deadline)
            break;
    }
    if (opened)
        wstream_close(&ws);
    return NULL;
}

/* One event received by a watcher, decoded. */
struct gev {
    const char *type;
    char key[160];
    uint64_t rv;
    json_t *obj;
};

/*
 * Compare got[from..] (bookmarks removed) with what the ground truth says a watcher with filter
 * f sees after rv. Returns true on a match; else msg says where the streams diverge.
 */
static bool seq_match(const struct truth *t, struct exitstat *xs, const struct filter *f,
                      uint64_t after, const struct gev *got, size_t ngot, size_t from, char *msg,
                      size_t msglen)
{
    size_t i = from, r = 0;

    while (r < t->n && t->recs[r].rv <= after)
        r++;
    for (; r < t->n; r++) {
        const struct trec *rec = &t->recs[r];
        bool exit;
        const char *type = expected_type(f, rec, &exit);
        if (!type)
            continue;
        if (i >= ngot) {
            snprintf(msg, msglen, "missing events from #%zu: want %s %s rv %llu (got %zu events)",
                     i, type, rec->key, (unsigned long long)rec->rv, ngot);
            return false;
        }
        if (strcmp(got[i].type, type) != 0 || strcmp(got[i].key, rec->key) != 0 ||
            got[i].rv != rec->rv) {
            snprintf(msg, msglen, "event #%zu: got %s %s rv %llu, want %s %s rv %llu", i,
                     got[i].type, got[i].key, (unsigned long long)got[i].rv, type, rec->key,
                     (unsigned long long)rec->rv);
            return false;
        }
        if (exit) {
            /* Kubernetes sends the last state that matched, with the event's resourceVersion. */
            json_t *want = json_deep_copy(rec->old);
            obj_set_rv(want, rec->rv);
            if (xs) {
                xs->total++;
                if (!json_equal(want, got[i].obj)) {
                    if (!xs->bad++) {
                        json_t *gm = json_object_get(got[i].obj, "metadata");
                        char *g = json_dumps(json_object_get(gm, "labels"), JSON_COMPACT);
                        char *o = json_dumps(
                            json_object_get(json_object_get(rec->old, "metadata"), "labels"),
                            JSON_COMPACT);
                        snprintf(xs->example, sizeof(xs->example),
                                 "%s rv %llu left selector \"%s\": DELETED object has labels "
                                 "%.120s rv %s; want the previous state (labels %.120s) with rv "
                                 "%llu",
                                 rec->key, (unsigned long long)rec->rv, f->labels ? f->labels : "",
                                 g ? g : "", meta_str(got[i].obj, "resourceVersion"), o ? o : "",
                                 (unsigned long long)rec->rv);
                        free(g);
                        free(o);
                    }
                }
            }
            json_decref(want);
        } else if (!json_equal(got[i].obj, rec->obj)) {
            snprintf(msg, msglen,
                     "event #%zu %s %s rv %llu: object differs from the committed "
                     "one",
                     i, type, rec->key, (unsigned long long)rec->rv);
            return false;
        }
        i++;
    }
    if (i < ngot) {
        snprintf(msg, msglen, "%zu unexpected extra events, first: #%zu %s %s rv %llu", ngot - i, i,
                 got[i].type, got[i].key, (unsigned long long)got[i].rv);
        return false;
    }
    return true;
}

/* Whether got[0..n) are ADDED events for exactly the objects of want (any order). */
static bool initial_match(const struct gev *got, size_t n, const json_t *want, char *msg,
                          size_t msglen)
{
    json_t *seen = json_object();
    bool ok = true;
    if (n != json_array_size(want)) {
        snprintf(msg, msglen, "%zu initial events, want %zu", n, json_array_size(want));
        ok = false;
    }
    for (size_t i = 0; ok && i < n; i++) {
        if (strcmp(got[i].type, "ADDED") != 0 || json_object_get(seen, got[i].key)) {
            snprintf(msg, msglen, "initial event #%zu: %s %s (want one ADDED per object)", i,
                     got[i].type, got[i].key);
            ok = false;
        }
        json_object_set(seen, got[i].key, got[i].obj);
    }
    for (size_t i = 0; ok && i < json_array_size(want); i++) {
        const json_t *w = json_array_get(want, i);
        char k[160];
        obj_key(w, k, sizeof(k));
        if (!json_equal(json_object_get(seen, k), (json_t *)w)) {
            snprintf(msg, msglen, "initial state: %s %s", k,
                     json_object_get(seen, k) ? "differs" : "missing");
            ok = false;
        }
    }
    json_decref(seen);
    return ok;
}

static void check_watcher(struct stress *s, struct watcher *w, struct report *rep)
{
    const struct wspec *sp = w->spec;
    const struct truth *t = &s->truth;
    size_t n = json_array_size(w->events), ng = 0, nb = 0;
    struct gev *got = calloc(n + 1, sizeof(*got));
    char msg[1024] = "", name[320];
    bool ok = true;
    long initial_end = -1; /* index in got[] where live events begin */
    uint64_t init_rv = 0, last_event_rv = 0;

    if (w->err[0]) {
        check(rep, false, w->name, "%s", w->err);
        free(got);
        return;
    }
    /* Decode; check bookmarks: a bookmark at rv B promises every event up to B was sent. */
    for (size_t i = 0; i < n && ok; i++) {
        json_t *ev = json_array_get(w->events, i), *o = json_object_get(ev, "object");
        const char *type = jstr(ev, "type");
        if (!type || !o) {
            snprintf(msg, sizeof(msg), "event #%zu malformed", i);
            ok = false;
        } else if (strcmp(type, "BOOKMARK") == 0) {
            uint64_t brv = obj_rv(o);
            const char *ie = jstr(json_object_get(json_object_get(o, "metadata"), "annotations"),
                                  "k8s.io/initial-events-end");
            if (!sp->bookmarks && sp->mode != WM_INITIAL && sp->mode != WM_INITIAL_RV) {
                snprintf(msg, sizeof(msg), "BOOKMARK without allowWatchBookmarks");
                ok = false;
            } else if (brv < last_event_rv) {
                snprintf(msg, sizeof(msg), "BOOKMARK rv %llu after an event with rv %llu",
                         (unsigned long long)brv, (unsigned long long)last_event_rv);
                ok = false;
            } else if (ie && strcmp(ie, "true") == 0) {
                if (initial_end >= 0) {
                    snprintf(msg, sizeof(msg), "second initial-events-end bookmark");
                    ok = false;
                }
                initial_end = (long)ng;
                init_rv = brv;
            }
            last_event_rv = brv > last_event_rv ? brv : last_event_rv;
            nb++;
        } else {
            got[ng].type = type;
            got[ng].obj = o;
            got[ng].rv = obj_rv(o);
            obj_key(o, got[ng].key, sizeof(got[ng].key));
            if (strcmp(type, "ERROR") == 0) {
                snprintf(msg, sizeof(msg), "ERROR event: %.200s", jstr(o, "message"));
                ok = false;
            } else if (got[ng].rv <= last_event_rv &&
                       (initial_end >= 0 || (sp->mode != WM_INITIAL && sp->mode != WM_INITIAL_RV &&
                                             sp->mode != WM_UNSET && sp->mode != WM_ZERO))) {
                snprintf(msg, sizeof(msg), "event #%zu %s %s rv %llu not after rv %llu", ng, type,
                         got[ng].key, (unsigned long long)got[ng].rv,
                         (unsigned long long)last_event_rv);
                ok = false;
            }
            if (initial_end >= 0 || sp->mode == WM_LISTRV || sp->mode == WM_INFORMER)
                last_event_rv = got[ng].rv;
            ng++;
        }
    }
    if (ok && (sp->mode == WM_LISTRV || sp->mode == WM_INFORMER || sp->mode == WM_INITIAL_RV)) {
        /* the LIST itself: the consistent state at its resourceVersion */
        json_t *st = truth_state(t, w->list_rv), *want = state_filtered(st, &w->f);
        if (w->list_rv < t->start_rv || w->list_rv > t->end_rv) {
            snprintf(msg, sizeof(msg), "LIST rv %llu outside [%llu, %llu]",
                     (unsigned long long)w->list_rv, (unsigned long long)t->start_rv,
                     (unsigned long long)t->end_rv);
            ok = false;
        } else if (items_diff(w->list_items, want, msg, sizeof(msg))) {
            char m2[1024];
            snprintf(m2, sizeof(m2), "LIST at rv %llu (%d pages): %.900s",
                     (unsigned long long)w->list_rv, w->pages, msg);
            snprintf(msg, sizeof(msg), "%s", m2);
            ok = false;
        }
        json_decref(want);
        json_decref(st);
    }
    if (ok) {
        switch (sp->mode) {
        case WM_LISTRV:
        case WM_INFORMER:
            ok = seq_match(t, &s->xs, &w->f, w->list_rv, got, ng, 0, msg, sizeof(msg));
            break;
        case WM_INITIAL:
        case WM_INITIAL_RV: {
            json_t *st, *want;
            if (initial_end < 0) {
                snprintf(msg, sizeof(msg), "no BOOKMARK with k8s.io/initial-events-end");
                ok = false;
                break;
            }
            if (sp->mode == WM_INITIAL_RV && init_rv < w->list_rv) {
                snprintf(msg, sizeof(msg), "initial-events-end rv %llu older than requested %llu",
                         (unsigned long long)init_rv, (unsigned long long)w->list_rv);
                ok = false;
                break;
            }
            st = truth_state(t, init_rv);
            want = state_filtered(st, &w->f);
            ok = initial_match(got, (size_t)initial_end, want, msg, sizeof(msg)) &&
                 seq_match(t, &s->xs, &w->f, init_rv, got, ng, (size_t)initial_end, msg,
                           sizeof(msg));
            json_decref(want);
            json_decref(st);
            break;
        }
        default: {
            /* rv unset or "0": synthetic ADDED for the state at some rv S, then events after S.
             * Find an S for which the stream is exactly that. */
            bool found = false;
            for (uint64_t S = t->start_rv; S <= t->end_rv && !found; S++) {
                json_t *st = truth_state(t, S), *want = state_filtered(st, &w->f);
                size_t k = json_array_size(want);
                char m1[512];
                if (k <= ng && initial_match(got, k, want, m1, sizeof(m1)) &&
                    seq_match(t, NULL, &w->f, S, got, ng, k, m1, sizeof(m1))) {
                    found = true;
                    seq_match(t, &s->xs, &w->f, S, got, ng, k, m1, sizeof(m1));
                }
                json_decref(want);
                json_decref(st);
            }
            if (!found) {
                snprintf(msg, sizeof(msg),
                         "no resourceVersion S makes the %zu events equal to "
                         "ADDED(state at S) + events after S",
                         ng);
                ok = false;
            }
            break;
        }
        }
    }
    snprintf(name, sizeof(name), "%s (%zu events, %zu bookmarks)", w->name, ng, nb);
    check(rep, ok, name, "%s", msg);
    free(got);
}

/*
 * The watcher's reconstructed cache must equal a fresh LIST with the same filter: the LIST's
 * items plus the events for list-then-watch modes, the events alone (their synthetic or
 * initial ADDED events being the list) for the others.
 */
static void check_cache(struct stress *s, struct watcher *w, struct report *rep)
{
    json_t *cache = json_object(), *items, *resp = NULL, *fresh_items, *tstate, *twant;
    struct hconn h;
    char path[4096], msg[1024] = "", name[320], k[160];
    size_t i;
    json_t *o;
    int status = 0;
    bool ok = true;

    snprintf(name, sizeof(name), "%.200s: reconstructed cache equals a fresh LIST", w->name);
    if (w->err[0]) {
        check(rep, false, name, "%s", w->err);
        json_decref(cache);
        return;
    }
    if (w->spec->mode == WM_LISTRV || w->spec->mode == WM_INFORMER) {
        json_array_foreach(w->list_items, i, o)
        {
            obj_key(o, k, sizeof(k));
            json_object_set(cache, k, o);
        }
    }
    json_array_foreach(w->events, i, o)
    {
        const char *type = jstr(o, "type");
        json_t *obj = json_object_get(o, "object");
        obj_key(obj, k, sizeof(k));
        if (!type)
            continue;
        if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0)
            json_object_set(cache, k, obj);
        else if (strcmp(type, "DELETED") == 0)
            json_object_del(cache, k);
    }
    items = state_filtered(cache, &w->f);
    filter_path(&w->f, NULL, path, sizeof(path));
    if (hconn_open(&h, &s->sa) || http_call(&h, "GET", path, NULL, NULL, &status, &resp) ||
        status != 200) {
        snprintf(msg, sizeof(msg), "fresh LIST %.300s failed (status %d)", path, status);
        ok = false;
    }
    hconn_close(&h);
    fresh_items = json_object_get(resp, "items");
    tstate = truth_state(&s->truth, s->truth.end_rv);
    twant = state_filtered(tstate, &w->f);
    if (ok && items_diff(items, fresh_items, msg, sizeof(msg)))
        ok = false;
    else if (ok && items_diff(items, twant, msg, sizeof(msg)))
        ok = false;
    check(rep, ok, name, "%s", msg);
    json_decref(twant);
    json_decref(tstate);
    json_decref(resp);
    json_decref(items);
    json_decref(cache);
}

/* LIST resourceVersion=X&resourceVersionMatch=Exact of past states, paginated or not. */
static void check_exact_lists(struct stress *s, struct report *rep)
{
    const struct truth *t = &s->truth;
    static const struct {
        const char *ns, *labels;
        int limit;
    } cases[] = {{NULL, NULL, 0},
                 {"wc-b", NULL, 0},
                 {NULL, "tier=hot", 0},
                 {NULL, NULL, 4},
                 {"wc-a", "tier=cold", 2}};
    struct hconn h;

    if (hconn_open(&h, &s->sa)) {
        check(rep, false, "LIST Exact", "cannot connect");
        return;
    }
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char msg[1024] = "", name[256], rvs[128] = "";
        struct filter f;
        bool ok = filter_init(&f, cases[c].ns, cases[c].labels, NULL) == 0;
        int pages = 0;

        for (int k = 0; k < 3 && ok; k++) {
            uint64_t span = t->end_rv - t->start_rv;
            uint64_t rv = t->start_rv + span * (uint64_t)(k * 2 + 1) / 6 + c;
            json_t *items = json_array(), *st, *want, *resp = NULL;
            char path[4096], extra[2600], cont[2048] = "", enc[2048];
            int status = 0;

            if (rv > t->end_rv)
                rv = t->end_rv;
            snprintf(rvs + strlen(rvs), sizeof(rvs) - strlen(rvs), "%s%llu", k ? "," : "",
                     (unsigned long long)rv);
            do {
                url_encode(cont, enc, sizeof(enc));
                snprintf(extra, sizeof(extra),
                         "resourceVersion=%llu&resourceVersionMatch=Exact&limit=%d%s%s",
                         (unsigned long long)rv, cases[c].limit, cont[0] ? "&continue=" : "", enc);
                filter_path(&f, extra, path, sizeof(path));
                if (http_call(&h, "GET", path, NULL, NULL, &status, &resp) || status != 200 ||
                    !resp) {
                    snprintf(msg, sizeof(msg), "GET %.300s: status %d", path, status);
                    ok = false;
                    break;
                }
                if (strtoull(meta_str(resp, "resourceVersion"), NULL, 10) != rv) {
                    snprintf(msg, sizeof(msg), "rv %llu: list resourceVersion %s",
                             (unsigned long long)rv, meta_str(resp, "resourceVersion"));
                    ok = false;
                }
                json_array_extend(items, json_object_get(resp, "items"));
                snprintf(cont, sizeof(cont), "%s", meta_str(resp, "continue"));
                json_decref(resp);
                resp = NULL;
                pages++;
            } while (cont[0] && ok);
            st = truth_state(t, rv);
            want = state_filtered(st, &f);
            if (ok && items_diff(items, want, msg, sizeof(msg))) {
                char m2[1100];
                snprintf(m2, sizeof(m2), "rv %llu: %s", (unsigned long long)rv, msg);
                snprintf(msg, sizeof(msg), "%.900s", m2);
                ok = false;
            }
            json_decref(want);
            json_decref(st);
            json_decref(items);
        }
        snprintf(name, sizeof(name), "LIST Exact rv=%s ns=%s labels=%s limit=%d (%d pages)", rvs,
                 cases[c].ns ? cases[c].ns : "*", cases[c].labels ? cases[c].labels : "-",
                 cases[c].limit, pages);
        check(rep, ok, name, "%s", msg);
    }
    hconn_close(&h);
}

static int ensure_namespace(struct hconn *h, const char *ns)
{
    json_t *body = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                             "metadata", "name", ns);
    json_t *resp = NULL;
    int status = 0,
        rc = http_json(h, "POST", "/api/v1/namespaces", "application/json", body, &status, &resp);
    json_decref(body);
    json_decref(resp);
    if (rc)
        return rc;
    return status == 201 || status == 409 ? 0 : -EPROTO;
}

/*
 * Wait until the server's resourceVersion stops moving: kubelite's controllers react to new
 * namespaces on their next tick (default ServiceAccounts), and those commits must land before
 * the ground truth starts.
 */
static int settle(struct hconn *h)
{
    uint64_t prev = 0;
    for (int stable = 0, i = 0; stable < 3 && i < 100; i++) {
        json_t *resp = NULL;
        int status = 0, rc = http_call(h, "GET", "/api/v1/namespaces/default/configmaps?limit=1",
                                       NULL, NULL, &status, &resp);
        uint64_t rv = resp ? obj_rv(resp) : 0;
        json_decref(resp);
        if (rc || status != 200)
            return rc ? rc : -EPROTO;
        stable = rv == prev ? stable + 1 : 0;
        prev = rv;
        sleep_ms(150);
    }
    return 0;
}

/* LIST every ConfigMap: the initial state (key -> object) and its resourceVersion. */
static int list_all(struct hconn *h, const char *path, json_t **state, uint64_t *rv)
{
    json_t *resp = NULL, *o;
    int status = 0, rc = http_call(h, "GET", path, NULL, NULL, &status, &resp);
    size_t i;
    char k[160];

    if (rc || status != 200 || !resp) {
        json_decref(resp);
        return rc ? rc : -EPROTO;
    }
    *state = json_object();
    json_array_foreach(json_object_get(resp, "items"), i, o)
    {
        obj_key(o, k, sizeof(k));
        json_object_set(*state, k, o);
    }
    *rv = strtoull(meta_str(resp, "resourceVersion"), NULL, 10);
    json_decref(resp);
    return 0;
}

static void truth_release(struct truth *t)
{
    for (size_t i = 0; i < t->n; i++) {
        json_decref(t->recs[i].obj);
        json_decref(t->recs[i].old);
    }
    free(t->recs);
    json_decref(t->initial);
    memset(t, 0, sizeof(*t));
}

static int run_stress(const struct sockaddr_in *sa, int nwriters, int ops, unsigned seed,
                      struct report *rep)
{
    struct stress s;
    struct writer *wr = calloc((size_t)nwriters, sizeof(*wr));
    struct watcher *wa = calloc(WC_NSPECS, sizeof(*wa));
    pthread_rwlockattr_t ra;
    struct hconn h;
    char msg[1024] = "";
    const char *terr;
    bool writers_ok = true;
    double t0 = now_s();

    memset(&s, 0, sizeof(s));
    s.sa = *sa;
    s.nwriters = nwriters;
    s.ops = ops;
    s.ops_total = (long)nwriters * ops;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pthread_rwlockattr_init(&ra);
    /* deletes must not starve behind a steady stream of shared holders */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s.del_lock, &ra);
    pthread_rwlockattr_destroy(&ra);

    if (!wr || !wa || hconn_open(&h, sa)) {
        check(rep, false, "setup", "cannot connect or out of memory");
        free(wr);
        free(wa);
        return -1;
    }
    for (int i = 0; i < WC_NS_COUNT; i++) {
        if (ensure_namespace(&h, wc_namespaces[i])) {
            check(rep, false, "setup", "cannot create namespace %s", wc_namespaces[i]);
            hconn_close(&h);
            free(wr);
            free(wa);
            return -1;
        }
    }
    if (settle(&h) || list_all(&h, "/api/v1/configmaps", &s.truth.initial, &s.truth.start_rv)) {
        check(rep, false, "setup", "cannot list configmaps");
        hconn_close(&h);
        free(wr);
        free(wa);
        return -1;
    }
    hconn_close(&h);
    s.max_rv = s.truth.start_rv;

    for (size_t i = 0; i < WC_NSPECS; i++) {
        const struct wspec *sp = &wc_specs[i];
        wa[i].s = &s;
        wa[i].spec = sp;
        wa[i].idx = (int)i;
        snprintf(wa[i].name, sizeof(wa[i].name),
                 "watcher %02zu %s ns=%s labels=%s fields=%s%s%s start=%.2f", i,
                 wmode_names[sp->mode], sp->ns ? sp->ns : "*", sp->labels ? sp->labels : "-",
                 sp->fields ? sp->fields : "-", sp->bookmarks ? " bookmarks" : "",
                 sp->limit ? " paginated" : "", sp->start);
        if (sp->watch_at > 0)
            snprintf(wa[i].name + strlen(wa[i].name), sizeof(wa[i].name) - strlen(wa[i].name),
                     " watch=%.2f", sp->watch_at);
        if (filter_init(&wa[i].f, sp->ns, sp->labels, sp->fields))
            snprintf(wa[i].err, sizeof(wa[i].err), "bad selector in the harness");
        pthread_create(&wa[i].th, NULL, watcher_main, &wa[i]);
    }
    for (int i = 0; i < nwriters; i++) {
        wr[i].s = &s;
        wr[i].idx = i;
        wr[i].seed = seed * 7919u + (unsigned)i;
        pthread_create(&wr[i].th, NULL, writer_main, &wr[i]);
    }
    for (int i = 0; i < nwriters; i++) {
        pthread_join(wr[i].th, NULL);
        if (wr[i].err[0]) {
            check(rep, false, "writer", "writer %d: %s", i, wr[i].err);
            writers_ok = false;
        }
        for (int j = 0; j < WC_NAMES_PER_WRITER; j++)
            json_decref(wr[i].objs[j]);
    }
    pthread_mutex_lock(&s.mu);
    s.done = true;
    s.done_at = now_s();
    s.end_rv = s.max_rv;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    for (size_t i = 0; i < WC_NSPECS; i++)
        pthread_join(wa[i].th, NULL);

    terr = truth_finish(&s.truth, msg, sizeof(msg));
    {
        char name[160];
        snprintf(name, sizeof(name),
                 "ground truth: %zu writes, rv %llu..%llu, dense and consistent", s.truth.n,
                 (unsigned long long)s.truth.start_rv + 1, (unsigned long long)s.truth.end_rv);
        check(rep, writers_ok && !terr, name, "%s", terr ? terr : "a writer failed");
    }
    if (writers_ok && !terr) {
        json_t *final = NULL, *want = NULL, *got = NULL, *tstate;
        struct filter all;
        uint64_t frv = 0;

        for (size_t i = 0; i < WC_NSPECS; i++)
            check_watcher(&s, &wa[i], rep);
        for (size_t i = 0; i < WC_NSPECS; i++)
            check_cache(&s, &wa[i], rep);
        check_exact_lists(&s, rep);
        {
            const char *bad = NULL;
            int pages = 0;
            for (size_t i = 0; i < WC_NSPECS; i++) {
                pages += wa[i].rem_pages;
                if (!bad && wa[i].rem_err[0])
                    bad = wa[i].rem_err;
            }
            snprintf(msg, sizeof(msg), "paginated LISTs: remainingItemCount (%d pages)", pages);
            check(rep, !bad && pages > 0, msg, "%s", bad ? bad : "no paginated list ran");
        }

        filter_init(&all, NULL, NULL, NULL);
        if (hconn_open(&h, sa) || list_all(&h, "/api/v1/configmaps", &final, &frv)) {
            check(rep, false, "final LIST equals the ground truth", "LIST failed");
        } else {
            tstate = truth_state(&s.truth, s.truth.end_rv);
            want = state_filtered(tstate, &all);
            got = state_filtered(final, &all);
            json_decref(tstate);
            if (frv != s.truth.end_rv)
                check(rep, false, "final LIST equals the ground truth",
                      "list resourceVersion %llu, last write %llu", (unsigned long long)frv,
                      (unsigned long long)s.truth.end_rv);
            else
                check(rep, !items_diff(got, want, msg, sizeof(msg)),
                      "final LIST equals the ground truth", "%s", msg);
        }
        hconn_close(&h);
        json_decref(final);
        json_decref(want);
        json_decref(got);
        {
            char name[200];
            snprintf(name, sizeof(name),
                     "selector-exit DELETED carries the last matching state with the event rv "
                     "(%d exits)",
                     s.xs.total);
            check(rep, s.xs.total > 0 && s.xs.bad == 0, name, "%d of %d differ; first: %s",
                  s.xs.bad, s.xs.total, s.xs.example);
        }
    }
    printf("# stress: %d writers x %d ops, %zu watchers, %.1f s\n", nwriters, ops, WC_NSPECS,
           now_s() - t0);
    for (size_t i = 0; i < WC_NSPECS; i++) {
        json_decref(wa[i].events);
        json_decref(wa[i].list_items);
    }
    truth_release(&s.truth);
    pthread_rwlock_destroy(&s.del_lock);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    free(wr);
    free(wa);
    return 0;
}

/* ------------------------------------------------------------------ expire scenario */

struct expire {
    struct sockaddr_in sa;
    struct hconn h;
    int history;
    struct truth truth; /* writes to namespace "ex", sequential */
    json_t *cur;        /* key -> current object */
    uint64_t last_rv;
    long counter;
    struct filter f;
};

/* op 'c' create, 'u' update, 'l' relabel, 'd' delete ex/c<j>. 0 or -1. */
static int ex_write(struct expire *x, char op, int j)
{
    char name[32], path[256], key[64], vs[32];
    json_t *body = NULL, *resp = NULL, *cur;
    const char *method = "PUT", *ctype = "application/json";
    int status = 0, want = 200, type = T_MOD, rc;
    uint64_t rv;

    snprintf(name, sizeof(name), "c%d", j);
    snprintf(key, sizeof(key), "ex/%s", name);
    snprintf(vs, sizeof(vs), "%ld", ++x->counter);
    snprintf(path, sizeof(path), "/api/v1/namespaces/ex/configmaps/%s", name);
    cur = json_object_get(x->cur, key);
    if (op == 'c') {
        snprintf(path, sizeof(path), "/api/v1/namespaces/ex/configmaps");
        method = "POST";
        want = 201;
        type = T_ADD;
        body = cm_new("ex", name, "hot", 9, x->counter);
    } else if (op == 'u') {
        body = json_deep_copy(cur);
        json_object_set_new(json_object_get(body, "data"), "v", json_string(vs));
    } else if (op == 'l') {
        method = "PATCH";
        ctype = "application/merge-patch+json";
        body = json_pack("{s:{s:{s:s}}}", "metadata", "labels", "tier", "cold");
    } else {
        method = "DELETE";
        type = T_DEL;
    }
    if (op != 'c' && !cur)
        return -1;
    rc = http_json(&x->h, method, path, body ? ctype : NULL, body, &status, &resp);
    json_decref(body);
    if (rc || status != want || !resp) {
        json_decref(resp);
        return -1;
    }
    rv = type == T_DEL ? x->last_rv + 1 : obj_rv(resp);
    if (truth_add(&x->truth, rv, type, resp)) {
        json_decref(resp);
        return -1;
    }
    x->truth.recs[x->truth.n - 1].old = json_incref(cur); /* the log is built in order */
    x->truth.end_rv = rv;
    x->last_rv = rv;
    if (type == T_DEL)
        json_object_del(x->cur, key);
    else
        json_object_set(x->cur, key, resp);
    json_decref(resp);
    return 0;
}

static int ex_updates(struct expire *x, int n)
{
    for (int i = 0; i < n; i++)
        if (ex_write(x, 'u', i % 6))
            return -1;
    return 0;
}

/* GET path; *status, *resp (new ref, may be NULL). */
static int ex_get(struct expire *x, const char *path, int *status, json_t **resp)
{
    return http_call(&x->h, "GET", path, NULL, NULL, status, resp);
}

static bool is_expired_status(const json_t *st, char *msg, size_t msglen)
{
    const char *kind = jstr(st, "kind"), *reason = jstr(st, "reason");
    json_int_t code = json_integer_value(json_object_get(st, "code"));
    if (kind && strcmp(kind, "Status") == 0 && reason && strcmp(reason, "Expired") == 0 &&
        code == 410)
        return true;
    snprintf(msg, msglen, "want Status reason Expired code 410, got kind=%s reason=%s code=%lld",
             kind ? kind : "-", reason ? reason : "-", (long long)code);
    return false;
}

/* Open a watch from rv and read its first event (within 3 s). */
static int ex_watch_first(struct expire *x, uint64_t rv, struct wstream *ws, json_t **ev)
{
    char path[256];
    snprintf(path, sizeof(path),
             "/api/v1/namespaces/ex/configmaps?watch=1&allowWatchBookmarks=true&"
             "resourceVersion=%llu",
             (unsigned long long)rv);
    *ev = NULL;
    if (wstream_open(ws, &x->sa, path) || ws->r.status != 200)
        return -1;
    for (double end = now_s() + 3; now_s() < end;) {
        int rc = wstream_next(ws, 100, ev);
        if (rc < 0)
            return -1;
        if (rc == 1 && strcmp(jstr(*ev, "type"), "BOOKMARK") == 0) {
            json_decref(*ev);
            *ev = NULL;
            continue;
        }
        if (rc == 1)
            return 0;
    }
    return -1;
}

/* Read non-bookmark events until n arrived (3 s at most), then 200 ms more for extras. */
static json_t *ex_read_events(struct wstream *ws, size_t n)
{
    json_t *out = json_array(), *ev;
    double end = now_s() + 3, quiet = 0;
    while (now_s() < end) {
        int rc = wstream_next(ws, 50, &ev);
        if (rc < 0)
            break;
        if (rc == 1) {
            if (strcmp(jstr(ev, "type"), "BOOKMARK") == 0)
                json_decref(ev);
            else
                json_array_append_new(out, ev);
            continue;
        }
        if (json_array_size(out) >= n) {
            if (!quiet)
                quiet = now_s();
            else if (now_s() - quiet > 0.2)
                break;
        }
    }
    return out;
}

/* Events (array) against the truth after rv: exactly the writes to "ex". */
static bool ex_events_match(struct expire *x, const json_t *events, uint64_t after, char *msg,
                            size_t msglen)
{
    size_t n = json_array_size(events);
    struct gev *got = calloc(n + 1, sizeof(*got));
    bool ok;
    for (size_t i = 0; i < n; i++) {
        json_t *ev = json_array_get(events, i);
        got[i].type = jstr(ev, "type") ? jstr(ev, "type") : "";
        got[i].obj = json_object_get(ev, "object");
        got[i].rv = obj_rv(got[i].obj);
        obj_key(got[i].obj, got[i].key, sizeof(got[i].key));
    }
    ok = seq_match(&x->truth, NULL, &x->f, after, got, n, 0, msg, msglen);
    free(got);
    return ok;
}

/* Paginated LIST of "ex" (limit 2): every page at one rv. Items (new ref) and rv. */
static int ex_list(struct expire *x, int limit, json_t **items, uint64_t *rv, int *status)
{
    char path[4096], cont[2048] = "", enc[2048];
    json_t *resp = NULL;
    *items = json_array();
    *rv = 0;
    do {
        uint64_t prv;
        url_encode(cont, enc, sizeof(enc));
        snprintf(path, sizeof(path), "/api/v1/namespaces/ex/configmaps?limit=%d%s%s", limit,
                 cont[0] ? "&continue=" : "", enc);
        if (ex_get(x, path, status, &resp) || *status != 200 || !resp) {
            json_decref(resp);
            return -1;
        }
        prv = obj_rv(resp);
        if (*rv && prv != *rv) {
            json_decref(resp);
            return -1;
        }
        *rv = prv;
        json_array_extend(*items, json_object_get(resp, "items"));
        snprintf(cont, sizeof(cont), "%s", meta_str(resp, "continue"));
        json_decref(resp);
        resp = NULL;
    } while (cont[0]);
    return 0;
}

static bool ex_state_equal(struct expire *x, const json_t *items, uint64_t rv, char *msg,
                           size_t msglen)
{
    json_t *st = truth_state(&x->truth, rv), *want = state_filtered(st, &x->f);
    bool ok = !items_diff(items, want, msg, msglen);
    json_decref(st);
    json_decref(want);
    return ok;
}

/* Apply watch events to a cache built from items; compare with a fresh LIST. */
static bool ex_cache_matches(struct expire *x, const json_t *items, const json_t *events, char *msg,
                             size_t msglen)
{
    json_t *cache = json_object(), *o, *sorted, *fresh = NULL;
    size_t i;
    char k[160];
    uint64_t rv;
    int status = 0;
    bool ok;

    json_array_foreach(items, i, o)
    {
        obj_key(o, k, sizeof(k));
        json_object_set(cache, k, o);
    }
    json_array_foreach(events, i, o)
    {
        json_t *obj = json_object_get(o, "object");
        obj_key(obj, k, sizeof(k));
        if (strcmp(jstr(o, "type"), "DELETED") == 0)
            json_object_del(cache, k);
        else
            json_object_set(cache, k, obj);
    }
    sorted = state_filtered(cache, &x->f);
    ok = ex_list(x, 0, &fresh, &rv, &status) == 0;
    if (!ok)
        snprintf(msg, msglen, "fresh LIST failed (status %d)", status);
    else
        ok = !items_diff(sorted, fresh, msg, msglen);
    json_decref(fresh);
    json_decref(sorted);
    json_decref(cache);
    return ok;
}

static int run_expire(const struct sockaddr_in *sa, int history, struct report *rep)
{
    struct expire x;
    json_t *resp = NULL, *ev = NULL, *items = NULL, *events = NULL, *state = NULL;
    struct wstream ws;
    char path[4096], tok[2048] = "", enc[2048], msg[1024] = "", name[256];
    uint64_t r0, xrv, lrv;
    int status = 0, H = history;
    bool ok;

    memset(&x, 0, sizeof(x));
    x.sa = *sa;
    x.history = history;
    x.cur = json_object();
    filter_init(&x.f, "ex", NULL, NULL);
    memset(&ws, 0, sizeof(ws));
    ws.h.fd = -1;
    if (hconn_open(&x.h, sa) || ensure_namespace(&x.h, "ex") || settle(&x.h) ||
        list_all(&x.h, "/api/v1/namespaces/ex/configmaps", &x.truth.initial, &x.truth.start_rv)) {
        check(rep, false, "expire setup", "cannot reach the server");
        goto out;
    }
    x.last_rv = x.truth.start_rv;
    for (int j = 0; j < 6; j++) {
        if (ex_write(&x, 'c', j)) {
            check(rep, false, "expire setup", "create ex/c%d failed", j);
            goto out;
        }
    }
    /* A first page and its continue token, then enough writes to push it out of the history. */
    if (ex_get(&x, "/api/v1/namespaces/ex/configmaps?limit=2", &status, &resp) || status != 200) {
        check(rep, false, "expire setup", "LIST limit=2: status %d", status);
        goto out;
    }
    snprintf(tok, sizeof(tok), "%s", meta_str(resp, "continue"));
    r0 = obj_rv(resp);
    json_decref(resp);
    resp = NULL;
    if (!tok[0] || ex_updates(&x, H + 8)) {
        check(rep, false, "expire setup", "no continue token or updates failed");
        goto out;
    }
    xrv = x.last_rv;
    check(rep, xrv == r0 + (uint64_t)H + 8, "expire setup: writes are the only commits",
          "rv %llu after %d writes from %llu", (unsigned long long)xrv, H + 8,
          (unsigned long long)r0);

    /* continue token older than the history */
    url_encode(tok, enc, sizeof(enc));
    snprintf(path, sizeof(path), "/api/v1/namespaces/ex/configmaps?limit=2&continue=%s", enc);
    if (ex_get(&x, path, &status, &resp))
        status = 0;
    ok = status == 410 && is_expired_status(resp, msg, sizeof(msg));
    check(rep, ok, "LIST with an expired continue token -> HTTP 410 Expired", "status %d %s",
          status, msg);
    json_decref(resp);
    resp = NULL;

    /* LIST Exact: the oldest retained rv works, one before it is gone */
    snprintf(path, sizeof(path),
             "/api/v1/namespaces/ex/configmaps?resourceVersion=%llu&resourceVersionMatch=Exact",
             (unsigned long long)(xrv - (uint64_t)H));
    ok = ex_get(&x, path, &status, &resp) == 0 && status == 200 && resp;
    ok = ok &&
         ex_state_equal(&x, json_object_get(resp, "items"), xrv - (uint64_t)H, msg, sizeof(msg));
    snprintf(name, sizeof(name), "LIST Exact at the oldest retained rv (%llu) succeeds",
             (unsigned long long)(xrv - (uint64_t)H));
    check(rep, ok, name, "status %d %s", status, msg);
    json_decref(resp);
    resp = NULL;
    snprintf(path, sizeof(path),
             "/api/v1/namespaces/ex/configmaps?resourceVersion=%llu&resourceVersionMatch=Exact",
             (unsigned long long)(xrv - (uint64_t)H - 1));
    msg[0] = '\0';
    ok = ex_get(&x, path, &status, &resp) == 0 && status == 410 &&
         is_expired_status(resp, msg, sizeof(msg));
    snprintf(name, sizeof(name), "LIST Exact one before the retained window (%llu) -> 410",
             (unsigned long long)(xrv - (uint64_t)H - 1));
    check(rep, ok, name, "status %d %s", status, msg);
    json_decref(resp);
    resp = NULL;

    /* WATCH from the first page's rv: HTTP 200, an ERROR event, then the stream ends */
    msg[0] = '\0';
    ok = ex_watch_first(&x, r0, &ws, &ev) == 0 && ev && strcmp(jstr(ev, "type"), "ERROR") == 0 &&
         is_expired_status(json_object_get(ev, "object"), msg, sizeof(msg));
    if (ok) {
        json_t *more = NULL;
        int rc;
        double end = now_s() + 3;
        while ((rc = wstream_next(&ws, 100, &more)) == 0 && now_s() < end)
            ;
        if (rc != -1) {
            snprintf(msg, sizeof(msg), "stream did not end after the ERROR event");
            ok = false;
        }
        json_decref(more);
    }
    snprintf(name, sizeof(name), "WATCH from compacted rv %llu -> 200 + ERROR 410 Expired",
             (unsigned long long)r0);
    check(rep, ok, name, "%s %s", ev ? jstr(ev, "type") : "no event", msg);
    json_decref(ev);
    ev = NULL;
    wstream_close(&ws);

    /* the boundary of the retained window */
    msg[0] = '\0';
    ok = ex_watch_first(&x, xrv - (uint64_t)H - 1, &ws, &ev) == 0 && ev &&
         strcmp(jstr(ev, "type"), "ERROR") == 0 &&
         is_expired_status(json_object_get(ev, "object"), msg, sizeof(msg));
    snprintf(name, sizeof(name), "WATCH one before the retained window (%llu) -> ERROR 410",
             (unsigned long long)(xrv - (uint64_t)H - 1));
    check(rep, ok, name, "%s %s", ev ? jstr(ev, "type") : "no event", msg);
    json_decref(ev);
    ev = NULL;
    wstream_close(&ws);
    {
        char p2[256];
        snprintf(p2, sizeof(p2), "/api/v1/namespaces/ex/configmaps?watch=1&resourceVersion=%llu",
                 (unsigned long long)(xrv - (uint64_t)H));
        msg[0] = '\0';
        ok = wstream_open(&ws, sa, p2) == 0 && ws.r.status == 200;
        events = ok ? ex_read_events(&ws, (size_t)H) : NULL;
        ok = ok && ex_events_match(&x, events, xrv - (uint64_t)H, msg, sizeof(msg));
        snprintf(name, sizeof(name),
                 "WATCH from the oldest retained rv (%llu) replays the %d retained events",
                 (unsigned long long)(xrv - (uint64_t)H), H);
        check(rep, ok, name, "%s", msg);
        json_decref(events);
        events = NULL;
        wstream_close(&ws);
    }

    /* Reflector: a paginated list whose continue token expires mid-way, then a relist. */
    if (ex_get(&x, "/api/v1/namespaces/ex/configmaps?limit=2", &status, &resp) || status != 200 ||
        ex_updates(&x, H + 8)) {
        check(rep, false, "reflector setup", "status %d", status);
        goto out;
    }
    snprintf(tok, sizeof(tok), "%s", meta_str(resp, "continue"));
    json_decref(resp);
    resp = NULL;
    url_encode(tok, enc, sizeof(enc));
    snprintf(path, sizeof(path), "/api/v1/namespaces/ex/configmaps?limit=2&continue=%s", enc);
    ok = ex_get(&x, path, &status, &resp) == 0 && status == 410;
    json_decref(resp);
    resp = NULL;
    msg[0] = '\0';
    if (ok && ex_list(&x, 2, &items, &lrv, &status) == 0) {
        ok = ex_state_equal(&x, items, lrv, msg, sizeof(msg));
    } else {
        snprintf(msg, sizeof(msg), "expired continue gave %d; relist status %d", status, status);
        ok = false;
    }
    check(rep, ok, "reflector: continue expired mid-list -> 410 -> paginated relist is consistent",
          "%s", msg);
    if (!ok)
        goto out;
    {
        char p2[256];
        snprintf(p2, sizeof(p2),
                 "/api/v1/namespaces/ex/configmaps?watch=1&allowWatchBookmarks=true&"
                 "resourceVersion=%llu",
                 (unsigned long long)lrv);
        ok = wstream_open(&ws, sa, p2) == 0 && ws.r.status == 200;
        ok = ok && !ex_write(&x, 'u', 1) && !ex_write(&x, 'd', 2) && !ex_write(&x, 'c', 2) &&
             !ex_write(&x, 'l', 3) && !ex_write(&x, 'c', 6);
        events = ok ? ex_read_events(&ws, 5) : NULL;
        msg[0] = '\0';
        ok = ok && ex_events_match(&x, events, lrv, msg, sizeof(msg)) &&
             ex_cache_matches(&x, items, events, msg, sizeof(msg));
        check(rep, ok, "reflector: watch from the relist rv, cache equals a fresh LIST", "%s", msg);
        wstream_close(&ws);
    }
    /* Reflector: a watch resumed from an rv that fell out of the history -> relist. */
    lrv = x.last_rv;
    json_decref(events);
    events = NULL;
    json_decref(items);
    items = NULL;
    msg[0] = '\0';
    ok = ex_updates(&x, H + 8) == 0 && ex_watch_first(&x, lrv, &ws, &ev) == 0 && ev &&
         strcmp(jstr(ev, "type"), "ERROR") == 0 &&
         is_expired_status(json_object_get(ev, "object"), msg, sizeof(msg));
    wstream_close(&ws);
    json_decref(ev);
    ev = NULL;
    if (ok && ex_list(&x, 0, &items, &lrv, &status) == 0) {
        char p2[256];
        ok = ex_state_equal(&x, items, lrv, msg, sizeof(msg));
        snprintf(p2, sizeof(p2), "/api/v1/namespaces/ex/configmaps?watch=1&resourceVersion=%llu",
                 (unsigned long long)lrv);
        ok = ok && wstream_open(&ws, sa, p2) == 0 && ws.r.status == 200;
        ok = ok && !ex_write(&x, 'u', 4) && !ex_write(&x, 'd', 5);
        events = ok ? ex_read_events(&ws, 2) : NULL;
        ok = ok && ex_events_match(&x, events, lrv, msg, sizeof(msg)) &&
             ex_cache_matches(&x, items, events, msg, sizeof(msg));
        wstream_close(&ws);
    } else if (ok) {
        snprintf(msg, sizeof(msg), "relist failed with status %d", status);
        ok = false;
    }
    check(rep, ok, "reflector: resumed watch gets ERROR 410 -> relist -> watch, cache consistent",
          "%s", msg);
out:
    json_decref(events);
    json_decref(items);
    json_decref(state);
    json_decref(resp);
    json_decref(x.cur);
    hconn_close(&x.h);
    truth_release(&x.truth);
    return 0;
}

/* ------------------------------------------------------------------ main */

static int parse_server(const char *url, struct sockaddr_in *sa)
{
    char host[64];
    int port;
    if (sscanf(url, "http://%63[^:]:%d", host, &port) != 2)
        return -EINVAL;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

static void usage(void)
{
    fprintf(stderr, "usage: watchcheck stress --server URL [--writers N] [--ops N] [--seed N]\n"
                    "       watchcheck expire --server URL [--history N]\n");
}

int main(int argc, char **argv)
{
    const char *server = NULL;
    int writers = 4, ops = 300, history = 32;
    unsigned seed = 1;
    struct sockaddr_in sa;
    struct report rep = {0, 0};

    if (argc < 2) {
        usage();
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--server") == 0)
            server = argv[i + 1];
        else if (strcmp(argv[i], "--writers") == 0)
            writers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--ops") == 0)
            ops = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--history") == 0)
            history = atoi(argv[i + 1]);
        else {
            usage();
            return 2;
        }
    }
    if (!server || parse_server(server, &sa) || writers < 1 || ops < 1 || history < 1) {
        usage();
        return 2;
    }
    if (strcmp(argv[1], "stress") == 0)
        run_stress(&sa, writers, ops, seed, &rep);
    else if (strcmp(argv[1], "expire") == 0)
        run_expire(&sa, history, &rep);
    else {
        usage();
        return 2;
    }
    printf("watchcheck: %d passed, %d failed\n", rep.pass, rep.fail);
    return rep.fail ? 1 : 0;
}
