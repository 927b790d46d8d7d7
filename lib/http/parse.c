/*
 * parse.c - HTTP/1.1 request parsing (RFC 9112), pure: bytes in, a struct http_request or a
 * reason out. See http_int.h for how the server drives it.
 *
 * Framing is strict and unambiguous (request smuggling): one Content-Length of digits only, or
 * Transfer-Encoding exactly "chunked", never both; chunk sizes are 1 to 15 hex digits; every line
 * is bounded. A declared body over the limit is refused as soon as the head is complete, before
 * any of it is buffered.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http_int.h"

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decode src[0..n) into out (NUL-terminated, truncated to outlen). plus: '+' -> ' '. */
static void pct_decode(const char *src, size_t n, char *out, size_t outlen, bool plus)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outlen; i++) {
        if (src[i] == '%' && i + 2 < n && hexval(src[i + 1]) >= 0 && hexval(src[i + 2]) >= 0) {
            out[o++] = (char)(hexval(src[i + 1]) * 16 + hexval(src[i + 2]));
            i += 2;
        } else if (plus && src[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = src[i];
        }
    }
    out[o] = '\0';
}

const char *http_req_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nhdrs; i++)
        if (strcmp(req->hdr_names[i], name) == 0)
            return req->hdr_values[i];
    return NULL;
}

bool http_query_get(const struct http_request *req, const char *name, char *out, size_t outlen)
{
    const char *q = req->query;
    size_t nl = strlen(name);

    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t seglen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', seglen);
        size_t klen = eq ? (size_t)(eq - q) : seglen;
        char key[128];

        pct_decode(q, klen, key, sizeof(key), true);
        if (strlen(key) == nl && memcmp(key, name, nl) == 0) {
            if (eq)
                pct_decode(eq + 1, seglen - klen - 1, out, outlen, true);
            else if (outlen)
                out[0] = '\0';
            return true;
        }
        q = amp ? amp + 1 : NULL;
    }
    return false;
}

static void request_release(struct http_request *r)
{
    free(r->method);
    free(r->target);
    free(r->path);
    free(r->body);
    for (size_t i = 0; i < r->nhdrs; i++) {
        free(r->hdr_names[i]);
        free(r->hdr_values[i]);
    }
    free(r->hdr_names);
    free(r->hdr_values);
    memset(r, 0, sizeof(*r));
}

struct http_request *http_request_dup(const struct http_request *r)
{
    struct http_request *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->method = strdup(r->method ? r->method : "");
    d->target = strdup(r->target ? r->target : "");
    d->path = strdup(r->path ? r->path : "");
    d->body = malloc(r->body_len + 1);
    d->hdr_names = calloc(r->nhdrs + 1, sizeof(char *));
    d->hdr_values = calloc(r->nhdrs + 1, sizeof(char *));
    if (!d->method || !d->target || !d->path || !d->body || !d->hdr_names || !d->hdr_values)
        goto oom;
    if (r->body_len)
        memcpy(d->body, r->body, r->body_len);
    d->body[r->body_len] = '\0';
    d->body_len = r->body_len;
    {
        const char *q = strchr(d->target, '?');
        d->query = q ? (char *)q + 1 : d->target + strlen(d->target);
    }
    for (size_t i = 0; i < r->nhdrs; i++) {
        d->hdr_names[i] = strdup(r->hdr_names[i]);
        d->hdr_values[i] = strdup(r->hdr_values[i]);
        d->nhdrs = i + 1;
        if (!d->hdr_names[i] || !d->hdr_values[i])
            goto oom;
    }
    return d;
oom:
    http_request_free(d);
    return NULL;
}

void http_request_free(struct http_request *r)
{
    if (!r)
        return;
    request_release(r);
    free(r);
}

void http__parser_init(struct http_parser *p)
{
    memset(p, 0, sizeof(*p));
    buf_init(&p->body);
}

void http__parser_reset(struct http_parser *p)
{
    request_release(&p->req);
    buf_release(&p->body);
    http__parser_init(p);
}

size_t http__parser_held(const struct http_parser *p)
{
    return p->body.len;
}

static int fail(struct http_parser *p, int status, const char *error)
{
    p->status = status;
    p->error = error;
    return HTTP_PARSE_FAIL;
}

static int too_large(struct http_parser *p, size_t max_body)
{
    snprintf(p->errbuf, sizeof(p->errbuf), "Request entity too large: limit is %zu", max_body);
    return fail(p, 413, p->errbuf);
}

/* Append one header field line [line, eol) to req. Returns false on a malformed line or ENOMEM. */
static bool add_header(struct http_request *req, const char *line, const char *eol)
{
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    char **nn, **nv, *name, *value;

    if (!colon)
        return false;
    nn = realloc(req->hdr_names, (req->nhdrs + 1) * sizeof(char *));
    if (!nn)
        return false;
    req->hdr_names = nn;
    nv = realloc(req->hdr_values, (req->nhdrs + 1) * sizeof(char *));
    if (!nv)
        return false;
    req->hdr_values = nv;
    name = strndup(line, (size_t)(colon - line));
    if (!name)
        return false;
    for (size_t i = 0; name[i]; i++)
        name[i] = (char)tolower((unsigned char)name[i]);
    colon++;
    while (colon < eol && (*colon == ' ' || *colon == '\t'))
        colon++;
    value = strndup(colon, (size_t)(eol - colon));
    if (!value) {
        free(name);
        return false;
    }
    req->hdr_names[req->nhdrs] = name;
    req->hdr_values[req->nhdrs] = value;
    req->nhdrs++;
    return true;
}

/* The head [in, in + head_len) into p->req and the framing fields. */
static int parse_head(struct http_parser *p, const char *in, size_t head_len, size_t max_body)
{
    const char *head_end = in + head_len - 4, *line = in, *sp;
    struct http_request *req = &p->req;
    const char *cl, *te, *crlf;
    size_t ncl = 0, nte = 0;

    /* request line: method SP target SP version */
    sp = memchr(line, ' ', head_len);
    if (!sp)
        return fail(p, 400, "malformed HTTP request");
    req->method = strndup(line, (size_t)(sp - line));
    line = sp + 1;
    sp = memchr(line, ' ', head_len - (size_t)(line - in));
    if (!sp || !req->method)
        return fail(p, 400, "malformed HTTP request");
    req->target = strndup(line, (size_t)(sp - line));
    if (!req->target)
        return fail(p, 400, "malformed HTTP request");
    crlf = memmem(sp, head_len - (size_t)(sp - in), "\r\n", 2);
    line = crlf + 2; /* the head ends in CRLF CRLF, so there is one */

    while (line < head_end + 2) {
        const char *eol = memmem(line, (size_t)(head_end + 2 - line), "\r\n", 2);
        if (!eol || eol == line)
            break;
        if (!add_header(req, line, eol))
            return fail(p, 400, "malformed HTTP request");
        line = eol + 2;
    }

    cl = http_req_header(req, "content-length");
    te = http_req_header(req, "transfer-encoding");
    for (size_t i = 0; i < req->nhdrs; i++) {
        ncl += strcmp(req->hdr_names[i], "content-length") == 0;
        nte += strcmp(req->hdr_names[i], "transfer-encoding") == 0;
    }
    if (ncl > 1 || nte > 1 || (cl && te))
        return fail(p, 400,
                    "ambiguous framing: repeated or both Content-Length and Transfer-Encoding");
    if (te && strcasecmp(te, "chunked") != 0)
        return fail(p, 501, "only Transfer-Encoding: chunked is supported");
    p->chunked = te != NULL;
    if (cl) {
        unsigned long long n;
        char *end;

        /* digits only: strtoull alone would take blanks, a sign and overflow */
        if (!*cl || strspn(cl, "0123456789") != strlen(cl) || strlen(cl) > 18)
            return fail(p, 400, "malformed HTTP request");
        n = strtoull(cl, &end, 10);
        if (*end || end == cl)
            return fail(p, 400, "malformed HTTP request");
        if (n > max_body)
            return too_large(p, max_body);
        p->content_length = (size_t)n;
    }
    {
        const char *qm = strchr(req->target, '?');
        size_t plen = qm ? (size_t)(qm - req->target) : strlen(req->target);

        req->query = qm ? (char *)qm + 1 : req->target + plen;
        req->path = malloc(plen + 1);
        if (!req->path)
            return fail(p, 400, "malformed HTTP request");
        pct_decode(req->target, plen, req->path, plen + 1, false);
    }
    p->head_len = head_len;
    p->have_head = true;
    return HTTP_PARSE_MORE;
}

/*
 * Decode a chunked body (RFC 9112 section 7.1) from body[0..len), resuming at p->pos. Returns
 * DONE (p->pos is then the body's length on the wire), MORE or FAIL. chunk-size is 1 to 15 hex
 * digits (no sign, "0x" or blanks in front), optionally followed by blanks and a ";" chunk
 * extension; every chunk's data ends in CRLF; each trailer line is a field line (has a ':'); a
 * line longer than 4 KiB is an error.
 */
static int parse_chunked(struct http_parser *p, const char *body, size_t len, size_t max_body)
{
    for (;;) {
        const char *q = body + p->pos;
        const char *eol = memmem(q, len - p->pos, "\r\n", 2);
        unsigned long long sz = 0;
        int ndig = 0, v;

        if (!eol)
            return len - p->pos > 4096 ? fail(p, 400, "malformed HTTP request") : HTTP_PARSE_MORE;
        if ((size_t)(eol - q) > 4096)
            return fail(p, 400, "malformed HTTP request");
        if (p->in_trailer) {
            /* trailer field lines until an empty line */
            if (eol == q) {
                p->pos += 2;
                return HTTP_PARSE_DONE;
            }
            if (!memchr(q, ':', (size_t)(eol - q)))
                return fail(p, 400, "malformed HTTP request");
            p->pos = (size_t)(eol - body) + 2;
            continue;
        }
        for (; q < eol && (v = hexval((unsigned char)*q)) >= 0; q++) {
            if (++ndig > 15)
                return fail(p, 400, "malformed HTTP request");
            sz = sz * 16 + (unsigned)v;
        }
        while (q < eol && (*q == ' ' || *q == '\t'))
            q++;
        if (!ndig || (q < eol && *q != ';'))
            return fail(p, 400, "malformed HTTP request");
        if (sz == 0) {
            p->in_trailer = true;
            p->pos = (size_t)(eol - body) + 2;
            continue;
        }
        if (sz > max_body || p->body.len + sz > max_body)
            return too_large(p, max_body);
        {
            size_t data = (size_t)(eol - body) + 2;

            if (len - data < sz + 2)
                return HTTP_PARSE_MORE; /* the size line is read again with the data */
            if (body[data + sz] != '\r' || body[data + sz + 1] != '\n')
                return fail(p, 400, "malformed HTTP request");
            if (buf_append(&p->body, body + data, (size_t)sz))
                return fail(p, 400, "malformed HTTP request");
            p->pos = data + (size_t)sz + 2;
        }
    }
}

int http__parse(struct http_parser *p, const char *in, size_t len, size_t max_body,
                size_t *consumed)
{
    struct buf body;
    int rc;

    if (!p->have_head) {
        size_t from = p->scanned > 3 ? p->scanned - 3 : 0;
        const char *end = len > from ? memmem(in + from, len - from, "\r\n\r\n", 4) : NULL;
        size_t head_len;

        if (!end) {
            p->scanned = len;
            if (len > HTTP_MAX_HEAD)
                return fail(p, 400, "request header too large");
            return HTTP_PARSE_MORE;
        }
        head_len = (size_t)(end - in) + 4;
        /* the same limit whether the head arrived at once or slowly */
        if (head_len > HTTP_MAX_HEAD)
            return fail(p, 400, "request header too large");
        rc = parse_head(p, in, head_len, max_body);
        if (rc != HTTP_PARSE_MORE)
            return rc;
    }
    if (p->chunked) {
        rc = parse_chunked(p, in + p->head_len, len - p->head_len, max_body);
        if (rc != HTTP_PARSE_DONE)
            return rc;
        *consumed = p->head_len + p->pos;
        body = p->body;
        buf_init(&p->body);
    } else {
        if (len - p->head_len < p->content_length)
            return HTTP_PARSE_MORE;
        buf_init(&body);
        if (buf_append(&body, in + p->head_len, p->content_length))
            return fail(p, 400, "malformed HTTP request");
        *consumed = p->head_len + p->content_length;
    }
    p->req.body_len = body.len;
    p->req.body = buf_take(&body);
    if (!p->req.body)
        return fail(p, 400, "malformed HTTP request");
    return HTTP_PARSE_DONE;
}
