/*
 * push_int.h - internals shared by push/'s files. Not for use outside push/.
 */
#ifndef WEFT_PUSH_INT_H
#define WEFT_PUSH_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/*
 * TLS material on a libwebsockets-made SSL_CTX (passed as void * so callers need no OpenSSL
 * headers). push/ keeps its OpenSSL use to PEM/X509 parsing, SSL_CTX configuration and X509
 * SAN accessors; no crypto primitives (those belong to ca/).
 */

/* Check that cert_pem (leaf first, then chain) and key_pem parse and match. 0 or ERR_INVALID. */
int push__tls_check_identity(const char *cert_pem, const char *key_pem) WUR;
/* Check that trust_pem holds at least one certificate. 0 or ERR_INVALID. */
int push__tls_check_trust(const char *trust_pem) WUR;
/* Install leaf + chain + key on ssl_ctx. 0, ERR_INVALID or -ENOMEM; unchanged on failure. */
int push__tls_set_identity(void *ssl_ctx, const char *cert_pem, const char *key_pem) WUR;
/* Replace ssl_ctx's verification store with the certificates in trust_pem. */
int push__tls_set_trust(void *ssl_ctx, const char *trust_pem) WUR;
/*
 * A bare client SSL_CTX for a server-only lws context: lws 4.1 otherwise makes one (loading the
 * system CA store) that it leaks once a connection has been served. Free with push__tls_ctx_free.
 */
void *push__tls_client_ctx_new(void);
void push__tls_ctx_free(void *ssl_ctx);

/*
 * Copy the first URI SAN starting "spiffe://" of the peer certificate of ssl (an SSL *) into out
 * (size n). 0, ERR_NOTFOUND (no certificate or no such SAN) or -ENAMETOOLONG.
 */
int push__tls_peer_spiffe_id(void *ssl, char *out, size_t n) WUR;

/*
 * Call destroy(ctx) (lws_context_destroy) and park every descriptor number it freed on a
 * placeholder until push__fdguard_release (call it when the context is finalized). Returns the
 * guard, or NULL when none was needed or /proc/self/fd is unreadable (destroy still ran).
 */
struct push__fdguard;
struct push__fdguard *push__fdguard_destroy_ctx(void (*destroy)(void *), void *ctx);
void push__fdguard_release(struct push__fdguard *g);

/*
 * From a WRITEABLE callback: send a close frame with status and reason (at most 123 bytes used)
 * and return -1 for the callback to return (lws then drops the connection).
 */
struct lws;
int push__ws_close(struct lws *wsi, int status, const char *reason);

/* Route libwebsockets' own log (errors and warnings; the setting is process-wide in lws) to
 * core/log. */
void push__lws_log_init(void);

/* Copy src into dst of size n; -ENAMETOOLONG if it does not fit (dst then ""). */
int push__strlcpy(char *dst, const char *src, size_t n) WUR;

/* 1 if s is PUSH_HASH_LEN lowercase hex digits. */
int push__is_hash(const char *s);

/* Wall clock in Unix milliseconds. */
int64_t push__now_unix_ms(void);

#endif
