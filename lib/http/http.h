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
 *
 * Hostile clients are bounded (struct http_limits): each request must arrive whole within a
 * deadline counted from its first byte (from the accept for a connection's first request, TLS
 * handshake included), not a silence timeout that every byte resets; answers must be taken
 * within a deadline; connections are capped in total and per client address, and request bytes
 * buffered over all connections are capped. At the total cap a new connection takes the place
 * of the oldest one that has not sent a whole request yet (connected at least a second), and at the
 * buffered cap the oldest partial request gives way (both closed); when there is none, or over the
 * per-address cap, the client gets 503 and the connection closes. TLS handshakes have a deadline
 * and a budget of handshake steps per loop round, so a flood of handshakes cannot monopolize the
 * loop. Request bytes read from one client address are limited per second (a token bucket over
 * its connections), so a client streaming bodies as fast as it can is held back by TCP instead
 * of having its bytes decrypted and copied on the loop while others' requests wait; and each round
 * of the loop reads at most 64 KiB from a connection and 256 KiB in all from connections past the
 * first 16 KiB of a request (the rest first in the next round), while the first 16 KiB of every
 * request is read at once. When accept fails for want of descriptors (EMFILE, ENFILE) the listener
 * pauses instead of spinning. `Expect: 100-continue` is answered with 100 when the body will be
 * read, or with 413/503 at once when it would not. struct http_stats counts each of these.
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
/*
 * Bounds on what clients may hold (see the top of this file). 0 turns a cap off; timeouts must
 * be > 0. http_limits_default gives: request 10 s, idle 120 s, handshake 10 s, write 30 s,
 * 16384 connections, no per-address cap, 256 MiB buffered, 32 handshake steps per round,
 * accept back-off 100 ms, no per-address byte rate.
 */
struct http_limits {
    unsigned request_ms;           /* a request (head and body) must arrive whole within this */
    unsigned idle_ms;              /* a keep-alive connection may wait this long for a request */
    unsigned handshake_ms;         /* a TLS handshake must finish within this of the accept */
    unsigned write_ms;             /* an answer must be taken whole within this of being queued */
    unsigned max_conns;            /* open connections served; beyond: 503, close */
    unsigned max_conns_per_addr;   /* of those, from one client IP address */
    size_t max_buffered;           /* request bytes held over all connections; beyond: 503 */
    unsigned handshakes_per_round; /* TLS handshake steps per round of the loop */
    unsigned accept_backoff_ms;    /* accepting pauses this long after EMFILE/ENFILE */
    /*
     * Request bytes read per second from one client address, over all its connections, and of
     * those how many at once (a token bucket; 0: no limit). Past it the address's connections
     * are not read (the kernel's buffers fill and TCP pushes back) until the budget refills, so
     * one address streaming bodies cannot take the loop's time from the others.
     */
    size_t addr_rate;
    size_t addr_burst;
};
void http_limits_default(struct http_limits *l);
/* Replace the server's limits (http_server_new starts with the defaults). Loop thread. */
void http_server_set_limits(struct http_server *s, const struct http_limits *l);

/* What a server counts: gauges (now) and counters (since it started). */
struct http_stats {
    uint64_t conns;           /* gauge: open connections (shed ones being answered included) */
    uint64_t handshaking;     /* gauge: connections in their TLS handshake */
    uint64_t buffered_bytes;  /* gauge: request bytes received and not yet handed over */
    uint64_t accept_paused;   /* gauge: 1 while accepting is paused (out of descriptors) */
    uint64_t throttled_conns; /* gauge: connections waiting for their address's byte budget */
    uint64_t accepted;
    uint64_t shed_conns;       /* 503: over max_conns */
    uint64_t shed_per_addr;    /* 503: over max_conns_per_addr */
    uint64_t shed_buffered;    /* 503: over max_buffered */
    uint64_t shed_closed;      /* closed unanswered: too many being shed at once */
    uint64_t evicted_conns;    /* closed at the connection cap: the oldest without a request */
    uint64_t evicted_buffered; /* closed at the buffered cap: the oldest partial request */
    uint64_t timeouts_handshake, timeouts_request, timeouts_idle, timeouts_write;
    uint64_t too_large;          /* 413 */
    uint64_t bad_requests;       /* 400, 417, 501 */
    uint64_t continues;          /* 100 Continue sent */
    uint64_t handshakes_delayed; /* handshake steps put off to a later round (budget spent) */
    uint64_t accept_errors;      /* accepts failed for want of descriptors or memory */
    uint64_t throttled;          /* reads put off because the address's byte budget was spent */
};
void http_server_stats(const struct http_server *s, struct http_stats *out);

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

/*
 * Embedded in a libuv loop (http_uv.c: weftd's listeners, the agent's health listener): a
 * uv_poll_t on http_server_fd runs a non-blocking round when anything is ready, and a uv_timer_t
 * runs one when the server's own timers (ticks, deadlines) are due. Loop thread only.
 *
 * http_uv_attach drives s from loop, running a first round at once; s stays owned by the caller
 * and must outlive the attachment. Returns 0, -ENOMEM, or a libuv error (negative errno) from
 * uv_poll_init/uv_poll_start. http_uv_kick runs a round now (to write out an answer to a deferred
 * request made from a non-HTTP callback). http_uv_detach stops driving: the handles close
 * asynchronously and h is freed once they have (let the loop run once more); NULL is accepted.
 */
struct http_uv;
struct uv_loop_s;
int http_uv_attach(struct uv_loop_s *loop, struct http_server *s, struct http_uv **out) WUR;
void http_uv_kick(struct http_uv *h);
void http_uv_detach(struct http_uv *h);

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
/* The client's IPv4 address in network order (0 for another family). */
uint32_t http_conn_peer_v4(const struct http_conn *c);
/* Bytes queued and not yet written. */
size_t http_conn_backlog(const struct http_conn *c);

/*
 * Take the connection over (a protocol upgrade: kubelite's pods/portforward). Only from the
 * handler of the request, before answering it. On success the server forgets the connection: the
 * caller owns *fd (non-blocking) and *ssl (NULL for plain HTTP; SSL_free it), and *early (a
 * malloc'd copy of the bytes the client sent after the request, *early_len of them, NULL when
 * none; free it). The caller writes the upgrade answer itself. Returns -EBUSY when an earlier
 * answer is still being written (the request must then be answered normally), -ENOMEM.
 */
int http_conn_takeover(struct http_conn *c, int *fd, SSL **ssl, char **early,
                       size_t *early_len) WUR;

#endif
