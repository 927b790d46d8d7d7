/*
 * push_int.h - internals shared by push/'s files. Not for use outside push/.
 */
#ifndef WEFT_PUSH_INT_H
#define WEFT_PUSH_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "push/push_types.h"

/* TLS (policy, PEM into the SSL_CTX, the peer's SPIFFE ID) and the content hash go through
 * lib/tls (tls/tls.h). */

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

/* push_doc_canonical of a document already parsed (a JSON object). */
struct json_t;
int push__doc_canonical_json(const struct json_t *doc, char **canon_out,
                             char hash_out[PUSH_HASH_LEN + 1]) WUR;

/* Wall clock in Unix milliseconds. */
int64_t push__now_unix_ms(void);

#endif
