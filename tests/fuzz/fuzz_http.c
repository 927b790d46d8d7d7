/*
 * fuzz_http.c - lib/http's request parser: the bytes a client sends to weftd's webhook and CA
 * endpoints (and to kubelite).
 *
 * The parser (conn_try_request, parse_chunked, pct_decode) is static inside lib/http/http.c and
 * reached through the public API only from a socket, so this target includes http.c and drives
 * one connection object in memory: no socket, no epoll, no clock in the outcome. Input bytes go
 * into the connection's input buffer and requests are taken off it exactly as conn_read() does
 * after a read; responses are queued to the connection's output buffer, never written.
 *
 * The handler answers every request with a digest of what the parser gave it (method, target,
 * path, query, headers, body), except for method "NOANSWER" (the server answers 500 for it).
 *
 * Invariants, for any bytes:
 *   - every request handed over is well formed: method, target, path, query and body are
 *     strings, the body is NUL-terminated after body_len bytes, query points into target,
 *     header names are lower case without ':' and header lines hold no CR LF; the request
 *     copies with http_request_dup to an equal request;
 *   - the output is a sequence of HTTP/1.1 responses;
 *   - the outcome does not depend on how the bytes arrive: feeding the input in two reads (split
 *     at a point chosen from the input) produces exactly the same output as one read.
 */
#include "lib/http/http.c"

#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_BODY 4096

static bool str_same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void check_request(const struct http_request *req)
{
    struct http_request *dup;
    char val[16];

    FUZZ_ASSERT(req->method && req->target && req->path && req->query && req->body);
    FUZZ_ASSERT(req->body[req->body_len] == '\0');
    FUZZ_ASSERT(req->body_len <= FUZZ_MAX_BODY);
    FUZZ_ASSERT(req->query >= req->target && req->query <= req->target + strlen(req->target));
    FUZZ_ASSERT(strlen(req->path) <= strlen(req->target));
    for (size_t i = 0; i < req->nhdrs; i++) {
        const char *n = req->hdr_names[i], *v = req->hdr_values[i];

        FUZZ_ASSERT(n && v);
        FUZZ_ASSERTF(!strchr(n, ':') && !strstr(n, "\r\n") && !strstr(v, "\r\n"),
                     "header %zu: \"%s\": \"%s\"", i, n, v);
        for (const char *p = n; *p; p++)
            FUZZ_ASSERTF(!(*p >= 'A' && *p <= 'Z'), "header name \"%s\" not lower case", n);
        FUZZ_ASSERT(http_req_header(req, n) != NULL);
    }
    /* queries of any shape; out buffers too small on purpose */
    (void)http_query_get(req, "a", val, sizeof(val));
    (void)http_query_get(req, "", val, 1);

    dup = http_request_dup(req);
    FUZZ_ASSERT(dup != NULL);
    FUZZ_ASSERT(str_same(dup->method, req->method) && str_same(dup->target, req->target) &&
                str_same(dup->path, req->path) && str_same(dup->query, req->query));
    FUZZ_ASSERT(dup->body_len == req->body_len &&
                memcmp(dup->body, req->body, req->body_len + 1) == 0);
    FUZZ_ASSERT(dup->nhdrs == req->nhdrs);
    for (size_t i = 0; i < req->nhdrs; i++)
        FUZZ_ASSERT(str_same(dup->hdr_names[i], req->hdr_names[i]) &&
                    str_same(dup->hdr_values[i], req->hdr_values[i]));
    http_request_free(dup);
}

/* Answer with what the parser saw, so that the output records the parse. */
static void handler(void *arg, struct http_conn *c, const struct http_request *req)
{
    struct buf b;

    (void)arg;
    check_request(req);
    if (strcmp(req->method, "NOANSWER") == 0)
        return;
    buf_init(&b);
    FUZZ_ASSERT(buf_printf(&b, "method=%s target=%s path=%s query=%s headers=%zu body=%zu\n",
                           req->method, req->target, req->path, req->query, req->nhdrs,
                           req->body_len) == 0);
    for (size_t i = 0; i < req->nhdrs; i++)
        FUZZ_ASSERT(buf_printf(&b, "%s: %s\n", req->hdr_names[i], req->hdr_values[i]) == 0);
    FUZZ_ASSERT(buf_append(&b, req->body, req->body_len) == 0);
    http_respond(c, 200, "text/plain", b.p, b.len, NULL);
    buf_release(&b);
}

/* What conn_read() does with newly read bytes. */
static void feed(struct http_conn *c, const uint8_t *data, size_t n)
{
    if (c->dead || c->state != CONN_READING || !n)
        return;
    FUZZ_ASSERT(buf_append(&c->in, data, n) == 0);
    while (c->state == CONN_READING && !c->dead && c->in.len) {
        if (!conn_try_request(c))
            break;
    }
}

/* Run one connection over data delivered in two reads split at split; output into out. */
static void run(const uint8_t *data, size_t size, size_t split, struct buf *out)
{
    struct http_server srv;
    struct http_conn c;

    memset(&srv, 0, sizeof(srv));
    srv.lfd = srv.epfd = -1;
    srv.max_body = FUZZ_MAX_BODY;
    srv.handler = handler;
    memset(&c, 0, sizeof(c));
    c.tag = TAG_CONN;
    c.srv = &srv;
    c.fd = -1;
    c.state = CONN_READING;
    buf_init(&c.in);
    buf_init(&c.out);
    feed(&c, data, split);
    feed(&c, data + split, size - split);
    FUZZ_ASSERT(!c.dead);
    FUZZ_ASSERT(c.out.len == 0 || strncmp(c.out.p, "HTTP/1.1 ", 9) == 0);
    FUZZ_ASSERT(buf_append(out, c.out.p, c.out.len) == 0);
    buf_release(&c.in);
    buf_release(&c.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf whole, parts;
    size_t split = 0;

    for (size_t i = 0; i < size; i++)
        split = split * 31 + data[i];
    split = size ? split % (size + 1) : 0;
    buf_init(&whole);
    buf_init(&parts);
    run(data, size, size, &whole);
    run(data, size, split, &parts);
    FUZZ_ASSERTF(whole.len == parts.len && memcmp(whole.p, parts.p, whole.len) == 0,
                 "one read and two reads (split at %zu) give different answers:\n"
                 "---- one read\n%.2000s\n---- two reads\n%.2000s",
                 split, whole.p, parts.p);
    buf_release(&whole);
    buf_release(&parts);
    return 0;
}
