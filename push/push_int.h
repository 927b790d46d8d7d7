/*
 * push_int.h - internals shared by push/'s files. Not for use outside push/.
 */
#ifndef WEFT_PUSH_INT_H
#define WEFT_PUSH_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/map.h"
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

/* --- protocol v2 (blocks.c) --- */

struct buf;
struct push__block;

/* weftd's block store: every block of every document it holds, once. */
struct push__store {
    struct map by_hash;  /* hash -> struct push__block */
    struct map by_ident; /* "%p" of the JSON value a block was last made from -> block */
    size_t nblocks, bytes;
};

/*
 * A document split for the stream: its top-level members sorted by name, those whose value is
 * a non-empty array of objects as references to blocks (up to PUSH_REFS_MAX blocks; a block
 * over PUSH_BLOCK_MAX keeps its member inline). Reference-counted; immutable once made.
 */
struct push__doc {
    unsigned refs;
    char hash[PUSH_HASH_LEN + 1]; /* of the canonical text (what v1 sends) */
    size_t len;                   /* of the canonical text */
    struct push_member *members;
    size_t nmembers;
    struct push__block **blocks; /* every reference, in document order (each holds one ref) */
    size_t nblocks;
};

void push__store_init(struct push__store *st);
/* After every document made from it was released. */
void push__store_release(struct push__store *st);

/*
 * Split doc (a JSON object, borrowed) into *out (refs 1). The arrays' objects are remembered
 * by identity while a document refers to them, so the caller must not modify them afterwards
 * (the compiler replaces blocks, never edits them). 0, ERR_INVALID (not an object), -ENOMEM.
 */
int push__doc_from_json(struct push__store *st, const struct json_t *doc,
                        struct push__doc **out) WUR;
void push__doc_unref(struct push__store *st, struct push__doc *d);
/* Append the document's canonical text to b. */
int push__doc_text(const struct push__doc *d, struct buf *b) WUR;
/* A v1 `config` frame. */
int push__doc_frame_v1(const struct push__doc *d, uint64_t version, char **out) WUR;
/* A v2 `config` frame carrying every block (all), or those that `have` (the previous document
 * sent on the stream; NULL: none, the agent asks) does not hold; *nblocks: how many. */
int push__doc_frame_v2(const struct push__doc *d, uint64_t version, const struct push__doc *have,
                       int all, char **out, size_t *nblocks) WUR;
/* Index of the first reference to block hash in d (made from st), or -1. */
int push__doc_find(const struct push__store *st, const struct push__doc *d, const char *hash);
const struct push_block *push__doc_block(const struct push__doc *d, size_t i);

/* The agent's block cache and assembly. */
struct push__cache;

enum push__asm {
    PUSH__ASM_DONE = 1, /* doc holds the document, its hash checked */
    PUSH__ASM_NEED,     /* send a `need` for need[0..nneed) */
    PUSH__ASM_FAIL,     /* NACK the version with reason; the assembly is dropped */
    PUSH__ASM_IGNORE,   /* a `blocks` for a document since replaced */
};

struct push__asm_out {
    char *doc; /* DONE: canonical text (free()) */
    size_t len;
    struct push_hash *need; /* NEED (free()) */
    size_t nneed;
    char reason[256]; /* FAIL */
};

/* spare_max: bytes of blocks no document pins that are kept (least recently unpinned go first). */
int push__cache_new(size_t spare_max, struct push__cache **out) WUR;
void push__cache_free(struct push__cache *c);
/*
 * A v2 `config` (m's members are taken). Blocks it carries are checked (size, hash) before
 * anything is kept; the last assembled document's blocks stay pinned whatever happens. Returns
 * an enum push__asm.
 */
int push__cache_config(struct push__cache *c, struct push_msg *m, struct push__asm_out *o);
/* A `blocks` answer. Returns an enum push__asm. */
int push__cache_blocks(struct push__cache *c, const struct push_msg *m, struct push__asm_out *o);
void push__cache_stats(const struct push__cache *c, size_t *nblocks, size_t *bytes);

/* Wall clock in Unix milliseconds. */
int64_t push__now_unix_ms(void);

#endif
