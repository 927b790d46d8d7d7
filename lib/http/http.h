/*
 * http.h - Weft's HTTP/1.1 server: keep-alive, chunked streaming responses (watches), optional
 * TLS through OpenSSL, on an epoll set. It runs its own loop (http_server_run, kubelite) or is
 * embedded in another loop (weftd's libuv loop): poll http_server_fd() for readability and call
 * http_server_step(s, 0), and call it again within http_server_next_timeout() milliseconds.
 *
 * A request is handed to the handler once its head and body are complete. The handler answers
 * at once with http_respond(), or starts a stream with http_stream_begin() and writes chunks
 * later (from any callback on the loop thread) until http_stream_end() or the peer closes
 * (the close callback fires; the conn is invalid after it returns). Request bodies are capped
 * (http_server_new's max_body); larger ones get 413 without reaching the handler.
 */
#ifndef WEFT_HTTP_H
#define WEFT_HTTP_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

struct http_server;
struct http_conn;

struct http_request {
    char *method;
    char *target; /* path + query as sent */
    char *path;   /* percent-decoded path */
    char *query;  /* raw query string without '?', "" when absent */
    char *body;   /* NUL-terminated copy, body_len bytes */
    size_t body_len;
    char **hdr_names; /* lower-cased */
    char **hdr_values;
    size_t nhdrs;
};

/* A deep copy (for requests that outlive their handler call); NULL on -ENOMEM. */
struct http_request *http_request_dup(const struct http_request *r);
void http_request_free(struct http_request *r);

typedef void (*http_handler_fn)(void *arg, struct http_conn *c, const struct http_request *req);
typedef void (*http_close_fn)(void *arg, struct http_conn *c);
typedef void (*http_tick_fn)(void *arg);

/* ssl_ctx may be NULL (plain HTTP); it is borrowed for the server's lifetime and gets Weft's TLS
 * policy (tls_policy_apply, tls/tls.h): a server never speaks a weaker TLS than that. Returns 0,
 * -EINVAL (listen_addr), -EIO (the policy), or a negative errno from the socket calls. */
int http_server_new(const char *listen_addr, SSL_CTX *ssl_ctx, size_t max_body,
                    http_handler_fn handler, void *arg, struct http_server **out) WUR;
void http_server_free(struct http_server *s);
/* The port actually bound (useful with port 0). */
int http_server_port(const struct http_server *s);
/* Call fn every interval_ms from the loop. */
void http_server_set_tick(struct http_server *s, unsigned interval_ms, http_tick_fn fn, void *arg);
/*
 * Embedding: the epoll descriptor to watch for readability, one non-blocking (timeout_ms 0) or
 * bounded round of work, the longest the owner may wait before the next round, and writing out
 * what callbacks outside a round queued (answers to deferred requests).
 */
int http_server_fd(const struct http_server *s);
int http_server_step(struct http_server *s, int timeout_ms) WUR;
int http_server_next_timeout(const struct http_server *s);
void http_server_flush(struct http_server *s);

/* Run the loop until http_server_stop(); returns 0 or a negative errno. */
int http_server_run(struct http_server *s) WUR;
void http_server_stop(struct http_server *s);

/* Header value (name lower-case) or NULL. */
const char *http_req_header(const struct http_request *req, const char *name);
/* Decoded query parameter value (first occurrence) into out; returns false when absent. */
bool http_query_get(const struct http_request *req, const char *name, char *out, size_t outlen);

/*
 * Answer the request: status line, headers (extra_headers is "" or CRLF-terminated lines),
 * Content-Length body. The connection then serves its next request.
 */
void http_respond(struct http_conn *c, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_headers);

/*
 * Answer later: the connection waits (reading no further requests) until http_respond() is
 * called from another callback. on_close fires if the peer goes away first; the conn is then
 * invalid and must not be answered.
 */
void http_defer(struct http_conn *c, http_close_fn on_close, void *arg);

/* Extra descriptors on the loop (libcurl's sockets). events are EPOLLIN/EPOLLOUT bits. */
struct http_fdwatch;
typedef void (*http_fd_fn)(void *arg, int fd, unsigned events);
int http_fd_watch(struct http_server *s, int fd, unsigned events, http_fd_fn cb, void *arg,
                  struct http_fdwatch **out) WUR;
void http_fd_modify(struct http_fdwatch *w, unsigned events);
/* Safe from inside the watch's own callback. */
void http_fd_unwatch(struct http_fdwatch *w);
/* One timer: fn once after ms milliseconds; ms < 0 cancels it. */
void http_server_set_timer(struct http_server *s, long ms, http_tick_fn fn, void *arg);

/* Start a chunked response. on_close fires if the peer goes away before http_stream_end. */
void http_stream_begin(struct http_conn *c, int status, const char *content_type,
                       http_close_fn on_close, void *arg);
/* Queue one chunk. Returns -EPIPE when the output backlog is too large (slow consumer). */
int http_stream_write(struct http_conn *c, const char *data, size_t len) WUR;
/* Finish the stream (terminating chunk); the connection serves its next request after it. */
void http_stream_end(struct http_conn *c);
/* Bytes queued and not yet written. */
size_t http_conn_backlog(const struct http_conn *c);

#endif
