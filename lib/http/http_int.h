/*
 * http_int.h - lib/http's internals shared between its files (never included elsewhere but by
 * the module's own tests and fuzz target).
 *
 * The request parser (parse.c) is pure: it reads bytes from a caller's buffer and keeps its
 * progress in a struct http_parser, with no socket, clock or connection in sight. The server
 * (http.c) appends what it reads to one input buffer per connection and calls http__parse()
 * after each read; the parser resumes where it stopped, so a body that arrives in many small
 * reads is examined once, and the outcome never depends on how the bytes were split.
 */
#ifndef WEFT_HTTP_INT_H
#define WEFT_HTTP_INT_H

#include "core/buf.h"
#include "http/http.h"

#define HTTP_MAX_HEAD (64 * 1024)

enum http_parse_rc {
    HTTP_PARSE_FAIL = -1, /* status and error say why; the connection must be closed */
    HTTP_PARSE_MORE = 0,  /* more input needed (have_head says whether the head is complete) */
    HTTP_PARSE_DONE = 1,  /* a whole request is in req; consumed says how much input it took */
};

struct http_parser {
    struct http_request req; /* head fields once have_head; the body too once DONE */
    bool have_head;
    size_t scanned;        /* input searched for the end of the head, without finding it */
    size_t head_len;       /* bytes of the head, blank line included */
    bool chunked;          /* Transfer-Encoding: chunked (else content_length bytes) */
    size_t content_length; /* declared body length (0 without Content-Length) */
    size_t pos;            /* chunked: offset past the head of the next line to decode */
    bool in_trailer;       /* chunked: the last chunk was read, trailer lines follow */
    struct buf body;       /* chunked: decoded so far */
    int status;            /* after FAIL: 400, 413 or 501 */
    const char *error;     /* after FAIL: why, for the answer's message */
    char errbuf[96];
};

void http__parser_init(struct http_parser *p);
/* Free what the parser holds and make it ready for the next request. */
void http__parser_reset(struct http_parser *p);

/*
 * Parse the request at the start of in[0..len). Call again with the same bytes plus more after
 * HTTP_PARSE_MORE; after DONE use p->req (valid until http__parser_reset) and drop *consumed
 * bytes from the input; after FAIL answer p->status with p->error and close.
 */
int http__parse(struct http_parser *p, const char *in, size_t len, size_t max_body,
                size_t *consumed) WUR;

/* Request bytes the parser holds beyond the input buffer (the decoded chunked body). */
size_t http__parser_held(const struct http_parser *p);

#endif
