/*
 * fuzz_http.c - lib/http's request parser (lib/http/parse.c): the bytes a client sends to weftd's
 * webhook, certificate and admin endpoints (and to kubelite).
 *
 * The parser is pure (http_int.h), so this target drives it as the server does after each read:
 * input bytes are appended to one buffer and requests are taken off its front until the parser
 * needs more input or refuses the bytes. Each request taken, and the refusal, is recorded as a
 * line of output.
 *
 * Invariants, for any bytes:
 *   - every request handed over is well formed: method, target, path, query and body are
 *     strings, the body is NUL-terminated after body_len bytes and within the limit, query
 *     points into target, header names are lower case without ':' and header lines hold no
 *     CR LF; the request copies with http_request_dup to an equal request;
 *   - a refusal names a status of 400, 413 or 501 and a reason;
 *   - the outcome does not depend on how the bytes arrive: feeding the input in two reads (split
 *     at a point chosen from the input) produces exactly the same output as one read, though the
 *     parser resumes from the progress it kept after the first read.
 */
#include <string.h>

#include "http/http_int.h"
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

/* Record what the parser saw, so that the output records the parse. */
static void record(const struct http_request *req, struct buf *out)
{
    check_request(req);
    FUZZ_ASSERT(buf_printf(out, "method=%s target=%s path=%s query=%s headers=%zu body=%zu\n",
                           req->method, req->target, req->path, req->query, req->nhdrs,
                           req->body_len) == 0);
    for (size_t i = 0; i < req->nhdrs; i++)
        FUZZ_ASSERT(buf_printf(out, "%s: %s\n", req->hdr_names[i], req->hdr_values[i]) == 0);
    FUZZ_ASSERT(buf_append(out, req->body, req->body_len) == 0);
}

struct conn {
    struct http_parser p;
    struct buf in;
    bool failed;
};

/* What the server does with newly read bytes. */
static void feed(struct conn *c, const uint8_t *data, size_t n, struct buf *out)
{
    if (c->failed || !n)
        return;
    FUZZ_ASSERT(buf_append(&c->in, data, n) == 0);
    for (;;) {
        size_t consumed = 0;
        int rc = http__parse(&c->p, c->in.p, c->in.len, FUZZ_MAX_BODY, &consumed);

        if (rc == HTTP_PARSE_MORE)
            return;
        if (rc == HTTP_PARSE_FAIL) {
            FUZZ_ASSERTF(c->p.status == 400 || c->p.status == 413 || c->p.status == 501,
                         "status %d", c->p.status);
            FUZZ_ASSERT(c->p.error && *c->p.error);
            FUZZ_ASSERT(buf_printf(out, "refused %d %s\n", c->p.status, c->p.error) == 0);
            c->failed = true;
            return;
        }
        FUZZ_ASSERT(consumed > 0 && consumed <= c->in.len);
        record(&c->p.req, out);
        buf_consume(&c->in, consumed);
        http__parser_reset(&c->p);
    }
}

/* Run one connection over data delivered in two reads split at split; output into out. */
static void run(const uint8_t *data, size_t size, size_t split, struct buf *out)
{
    struct conn c;

    http__parser_init(&c.p);
    buf_init(&c.in);
    c.failed = false;
    feed(&c, data, split, out);
    feed(&c, data + split, size - split, out);
    http__parser_reset(&c.p);
    buf_release(&c.in);
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
    FUZZ_ASSERTF(whole.len == parts.len && (!whole.len || memcmp(whole.p, parts.p, whole.len) == 0),
                 "one read and two reads (split at %zu) give different answers:\n"
                 "---- one read\n%.2000s\n---- two reads\n%.2000s",
                 split, whole.p, parts.p);
    buf_release(&whole);
    buf_release(&parts);
    return 0;
}
