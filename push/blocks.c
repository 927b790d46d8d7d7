/*
 * blocks.c - protocol v2 of the config stream: documents as a skeleton and content-addressed
 * blocks (docs/config-stream.md, "Protocol v2").
 *
 * weftd's side: a block store shared by every proxy (a block lives while a current document or
 * the last document sent on a stream refers to it) and documents split into members and blocks,
 * from which both the v1 text and the v2 frames are built.
 *
 * The agent's side: a cache of blocks and the assembly of the document a `config` describes. A
 * block is pinned while the last assembled document or the one being assembled refers to it;
 * unpinned blocks stay, least recently unpinned first out, within a byte budget.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/map.h"
#include "push/push.h"
#include "push/push_int.h"
#include "tls/tls.h"

/* --- weftd: the block store ---------------------------------------------------------------- */

struct push__block {
    struct push_block pb; /* hash, text (points at data), len */
    unsigned refs;
    json_t *ident; /* the newest JSON value it was made from (held), for identity hits */
    char data[];
};

void push__store_init(struct push__store *st)
{
    memset(st, 0, sizeof(*st));
}

static void ident_key(const json_t *v, char out[32])
{
    snprintf(out, 32, "%p", (const void *)v);
}

static void block_unref(struct push__store *st, struct push__block *b)
{
    char k[32];

    if (!b || --b->refs)
        return;
    map_del(&st->by_hash, b->pb.hash);
    if (b->ident) {
        ident_key(b->ident, k);
        map_del(&st->by_ident, k);
        json_decref(b->ident);
    }
    st->nblocks--;
    st->bytes -= b->pb.len;
    free(b);
}

/* Point the block's identity at v (the compiler hands out the same object to every proxy). */
static void block_ident(struct push__store *st, struct push__block *b, json_t *v)
{
    char k[32];

    if (b->ident == v)
        return;
    if (b->ident) {
        ident_key(b->ident, k);
        map_del(&st->by_ident, k);
        json_decref(b->ident);
        b->ident = NULL;
    }
    ident_key(v, k);
    if (map_put(&st->by_ident, k, b) == 0)
        b->ident = json_incref(v);
}

/*
 * A reference to the block for the JSON object v: by identity (v was seen before: no
 * serialization), else by content. Returns 0, 1 when v's text is over PUSH_BLOCK_MAX (nothing
 * taken), or -ENOMEM.
 */
static int block_get(struct push__store *st, json_t *v, struct push__block **out)
{
    char k[32], hash[PUSH_HASH_LEN + 1];
    struct push__block *b;
    char *text = NULL;
    size_t len;
    int rc;

    ident_key(v, k);
    b = map_get(&st->by_ident, k);
    if (b) {
        b->refs++;
        *out = b;
        return 0;
    }
    text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return -ENOMEM;
    len = strlen(text);
    if (len > PUSH_BLOCK_MAX) {
        free(text);
        return 1;
    }
    rc = tls_sha256_hex(text, len, hash);
    if (rc < 0)
        goto out;
    b = map_get(&st->by_hash, hash);
    if (!b) {
        rc = -ENOMEM;
        b = malloc(sizeof(*b) + len + 1);
        if (!b)
            goto out;
        memset(b, 0, sizeof(*b));
        memcpy(b->data, text, len + 1);
        memcpy(b->pb.hash, hash, sizeof(b->pb.hash));
        b->pb.text = b->data;
        b->pb.len = len;
        if (map_put(&st->by_hash, hash, b) < 0) {
            free(b);
            goto out;
        }
        st->nblocks++;
        st->bytes += len;
    }
    b->refs++;
    block_ident(st, b, v);
    *out = b;
    rc = 0;
out:
    free(text);
    return rc;
}

void push__store_release(struct push__store *st)
{
    /* every document was released first: nothing is left but maps */
    map_release(&st->by_hash);
    map_release(&st->by_ident);
}

/* --- weftd: documents ---------------------------------------------------------------------- */

void push__doc_unref(struct push__store *st, struct push__doc *d)
{
    if (!d || --d->refs)
        return;
    for (size_t i = 0; i < d->nmembers; i++) {
        free(d->members[i].key);
        free(d->members[i].text);
        free(d->members[i].refs);
    }
    for (size_t i = 0; i < d->nblocks; i++)
        block_unref(st, d->blocks[i]);
    free(d->members);
    free(d->blocks);
    free(d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether v is sent as blocks: a non-empty array of objects. */
static int splittable(const json_t *v)
{
    size_t i;
    json_t *e;

    if (!json_is_array(v) || !json_array_size(v))
        return 0;
    json_array_foreach(v, i, e) if (!json_is_object(e)) return 0;
    return 1;
}

/* Split member value v into blocks appended to d (all or none). 0, 1 (keep it inline), -ENOMEM. */
static int split_member(struct push__store *st, struct push__doc *d, struct push_member *mb,
                        json_t *v, size_t cap)
{
    size_t i, first = d->nblocks, n = json_array_size(v);
    json_t *e;
    int rc = 0;

    if (d->nblocks + n > cap)
        return 1;
    mb->refs = calloc(n, sizeof(*mb->refs));
    if (!mb->refs)
        return -ENOMEM;
    json_array_foreach(v, i, e)
    {
        struct push__block *b = NULL;

        rc = block_get(st, e, &b);
        if (rc)
            break;
        d->blocks[d->nblocks++] = b;
        memcpy(mb->refs[i].h, b->pb.hash, sizeof(mb->refs[i].h));
    }
    if (rc) {
        while (d->nblocks > first)
            block_unref(st, d->blocks[--d->nblocks]);
        FREE_AND_NULL(mb->refs);
        return rc;
    }
    mb->nrefs = n;
    return 0;
}

int push__doc_from_json(struct push__store *st, const json_t *doc, struct push__doc **out)
{
    const char **keys = NULL, *k;
    struct push__doc *d = NULL;
    size_t n, i, cap = 0;
    struct buf b;
    json_t *v;
    int rc = -ENOMEM;

    buf_init(&b);
    if (!json_is_object(doc))
        return ERR_INVALID;
    n = json_object_size(doc);
    d = calloc(1, sizeof(*d));
    keys = calloc(n ? n : 1, sizeof(*keys));
    if (!d || !keys)
        goto out;
    d->refs = 1;
    i = 0;
    json_object_foreach((json_t *)(uintptr_t)doc, k, v)
    {
        keys[i++] = k;
        if (splittable(v))
            cap += json_array_size(v);
    }
    qsort(keys, n, sizeof(*keys), cmp_str);
    if (cap > PUSH_REFS_MAX)
        cap = PUSH_REFS_MAX;
    d->members = calloc(n ? n : 1, sizeof(*d->members));
    d->blocks = calloc(cap ? cap : 1, sizeof(*d->blocks));
    if (!d->members || !d->blocks)
        goto out;
    for (i = 0; i < n; i++) {
        struct push_member *mb = &d->members[d->nmembers++];

        v = json_object_get(doc, keys[i]);
        mb->key = strdup(keys[i]);
        if (!mb->key)
            goto out;
        rc = splittable(v) ? split_member(st, d, mb, v, cap) : 1;
        if (rc < 0)
            goto out;
        if (rc == 1) {
            mb->text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
            rc = -ENOMEM;
            if (!mb->text)
                goto out;
            mb->len = strlen(mb->text);
        }
    }
    rc = push__doc_text(d, &b);
    if (!rc)
        rc = tls_sha256_hex(b.p, b.len, d->hash);
    if (rc)
        goto out;
    d->len = b.len;
    *out = d;
    d = NULL;
out:
    buf_release(&b);
    free(keys);
    push__doc_unref(st, d);
    return rc;
}

/* Append a member's JSON name; jansson writes names and strings alike. */
static int put_name(struct buf *b, const char *key)
{
    json_t *j = json_string(key);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    int rc = t ? buf_puts(b, t) : -ENOMEM;

    free(t);
    json_decref(j);
    return rc;
}

/*
 * The canonical text of a document from its members (sorted by name) and, for members made of
 * blocks, the blocks' texts in order (text(arg, i) gives the i-th of the document's blocks).
 */
static int doc_join(const struct push_member *m, size_t n,
                    const struct push_block *(*text)(const void *arg, size_t i), const void *arg,
                    struct buf *b)
{
    size_t bi = 0;
    int rc = buf_puts(b, "{");

    for (size_t i = 0; !rc && i < n; i++) {
        rc = buf_puts(b, i ? "," : "");
        if (!rc)
            rc = put_name(b, m[i].key);
        if (!rc)
            rc = buf_puts(b, ":");
        if (rc)
            break;
        if (m[i].text) {
            rc = buf_append(b, m[i].text, m[i].len);
            continue;
        }
        rc = buf_puts(b, "[");
        for (size_t j = 0; !rc && j < m[i].nrefs; j++) {
            const struct push_block *blk = text(arg, bi++);

            rc = buf_puts(b, j ? "," : "");
            if (!rc)
                rc = buf_append(b, blk->text, blk->len);
        }
        if (!rc)
            rc = buf_puts(b, "]");
    }
    return rc ? rc : buf_puts(b, "}");
}

static const struct push_block *doc_block(const void *arg, size_t i)
{
    return &((const struct push__doc *)arg)->blocks[i]->pb;
}

int push__doc_text(const struct push__doc *d, struct buf *b)
{
    int rc = buf_reserve(b, d->len);

    return rc ? rc : doc_join(d->members, d->nmembers, doc_block, d, b);
}

/* Whether the document holds block b (a linear walk: documents have few blocks). */
static int doc_has(const struct push__doc *d, const struct push__block *b)
{
    for (size_t i = 0; d && i < d->nblocks; i++)
        if (d->blocks[i] == b)
            return 1;
    return 0;
}

int push__doc_frame_v2(const struct push__doc *d, uint64_t version, const struct push__doc *have,
                       int all, char **out, size_t *nblocks_out)
{
    struct push_block *inl = NULL;
    struct push_msg m;
    size_t n = 0;
    int rc;

    memset(&m, 0, sizeof(m));
    if ((have || all) && d->nblocks) {
        /* inline what the previous document on this stream did not hold; each block once */
        inl = calloc(d->nblocks, sizeof(*inl));
        if (!inl)
            return -ENOMEM;
        for (size_t i = 0; i < d->nblocks; i++) {
            const struct push__block *b = d->blocks[i];
            size_t j;

            if (!all && doc_has(have, b))
                continue;
            for (j = 0; j < n && strcmp(inl[j].hash, b->pb.hash); j++)
                ;
            if (j == n)
                inl[n++] = b->pb;
        }
    }
    m.type = PUSH_MSG_CONFIG;
    m.version = version;
    memcpy(m.hash, d->hash, sizeof(m.hash));
    m.members = d->members;
    m.nmembers = d->nmembers;
    m.blocks = inl;
    m.nblocks = n;
    rc = push_msg_encode(&m, out);
    if (!rc && nblocks_out)
        *nblocks_out = n;
    free(inl);
    return rc;
}

int push__doc_frame_v1(const struct push__doc *d, uint64_t version, char **out)
{
    struct push_msg m;
    struct buf b;
    int rc;

    buf_init(&b);
    memset(&m, 0, sizeof(m));
    rc = push__doc_text(d, &b);
    if (rc)
        goto out;
    m.type = PUSH_MSG_CONFIG;
    m.version = version;
    memcpy(m.hash, d->hash, sizeof(m.hash));
    m.config = b.p;
    rc = push_msg_encode(&m, out);
out:
    buf_release(&b);
    return rc;
}

int push__doc_find(const struct push__store *st, const struct push__doc *d, const char *hash)
{
    const struct push__block *b = map_get(&st->by_hash, hash);

    /* a pointer walk: an agent's `need` costs no string compares per block */
    for (size_t i = 0; b && d && i < d->nblocks; i++)
        if (d->blocks[i] == b)
            return (int)i;
    return -1;
}

const struct push_block *push__doc_block(const struct push__doc *d, size_t i)
{
    return &d->blocks[i]->pb;
}

/* --- the agent: the block cache ------------------------------------------------------------ */

struct cblock {
    struct cblock *lprev, *lnext; /* the spare list (pins 0), least recently unpinned first */
    unsigned pins;
    struct push_block pb; /* text points at data */
    char data[];
};

struct push__cache {
    struct map m; /* hash -> struct cblock */
    size_t spare_max, spare_bytes, bytes;
    struct cblock *lhead, *ltail;
    struct cblock **cur; /* the blocks of the last document assembled (pinned) */
    size_t ncur;
    /* the document being assembled */
    int active;
    uint64_t version;
    char hash[PUSH_HASH_LEN + 1];
    struct push_member *members; /* taken from its `config` */
    size_t nmembers;
    struct cblock **asmb; /* per reference, in document order; NULL: missing */
    unsigned char *asked; /* per reference: asked for in a `need` */
    const char **refh;    /* per reference: its hash (in members) */
    size_t asm_bytes;     /* the blocks found so far, counted at every reference */
    size_t nrefs;
};

int push__cache_new(size_t spare_max, struct push__cache **out)
{
    struct push__cache *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->spare_max = spare_max;
    *out = c;
    return 0;
}

static void spare_unlink(struct push__cache *c, struct cblock *b)
{
    if (b->lprev)
        b->lprev->lnext = b->lnext;
    else
        c->lhead = b->lnext;
    if (b->lnext)
        b->lnext->lprev = b->lprev;
    else
        c->ltail = b->lprev;
    b->lprev = b->lnext = NULL;
    c->spare_bytes -= b->pb.len;
}

static void spare_append(struct push__cache *c, struct cblock *b)
{
    b->lprev = c->ltail;
    b->lnext = NULL;
    if (c->ltail)
        c->ltail->lnext = b;
    else
        c->lhead = b;
    c->ltail = b;
    c->spare_bytes += b->pb.len;
}

static void cblock_drop(struct push__cache *c, struct cblock *b)
{
    spare_unlink(c, b);
    map_del(&c->m, b->pb.hash);
    c->bytes -= b->pb.len;
    free(b);
}

/* Evict unpinned blocks, least recently unpinned first, down to the budget. */
static void spare_trim(struct push__cache *c)
{
    while (c->spare_bytes > c->spare_max && c->lhead)
        cblock_drop(c, c->lhead);
}

static void pin(struct push__cache *c, struct cblock *b)
{
    if (b->pins++ == 0)
        spare_unlink(c, b);
}

static void unpin(struct push__cache *c, struct cblock *b)
{
    if (b && --b->pins == 0)
        spare_append(c, b);
}

/* The cached block for pb (already verified), inserted unpinned if new. NULL: out of memory. */
static struct cblock *cache_put(struct push__cache *c, const struct push_block *pb)
{
    struct cblock *b = map_get(&c->m, pb->hash);

    if (b)
        return b;
    b = malloc(sizeof(*b) + pb->len + 1);
    if (!b)
        return NULL;
    memset(b, 0, sizeof(*b));
    memcpy(b->data, pb->text, pb->len + 1);
    memcpy(b->pb.hash, pb->hash, sizeof(b->pb.hash));
    b->pb.text = b->data;
    b->pb.len = pb->len;
    if (map_put(&c->m, pb->hash, b) < 0) {
        free(b);
        return NULL;
    }
    c->bytes += pb->len;
    spare_append(c, b);
    return b;
}

static void asm_clear(struct push__cache *c)
{
    for (size_t i = 0; i < c->nrefs; i++)
        unpin(c, c->asmb[i]);
    for (size_t i = 0; i < c->nmembers; i++) {
        free(c->members[i].key);
        free(c->members[i].text);
        free(c->members[i].refs);
    }
    FREE_AND_NULL(c->members);
    FREE_AND_NULL(c->asmb);
    FREE_AND_NULL(c->asked);
    FREE_AND_NULL(c->refh);
    c->nmembers = c->nrefs = c->asm_bytes = 0;
    c->active = 0;
}

void push__cache_free(struct push__cache *c)
{
    if (!c)
        return;
    asm_clear(c);
    for (size_t i = 0; i < c->ncur; i++)
        unpin(c, c->cur[i]);
    free(c->cur);
    while (c->lhead)
        cblock_drop(c, c->lhead);
    map_release(&c->m);
    free(c);
}

void push__cache_stats(const struct push__cache *c, size_t *nblocks, size_t *bytes)
{
    *nblocks = map_len(&c->m);
    *bytes = c->bytes;
}

static void short_hash(const char *h, char out[13])
{
    snprintf(out, 13, "%.12s", h);
}

__attribute__((format(printf, 3, 4))) static int fail(struct push__cache *c,
                                                      struct push__asm_out *o, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(o->reason, sizeof(o->reason), fmt, ap);
    va_end(ap);
    asm_clear(c);
    spare_trim(c);
    return PUSH__ASM_FAIL;
}

/* Check blocks carried by a frame: size, and that each hashes to its name. 0 or a failure. */
static int check_blocks(struct push__cache *c, const struct push_block *bl, size_t n,
                        struct push__asm_out *o)
{
    char h[PUSH_HASH_LEN + 1], s[13];

    for (size_t i = 0; i < n; i++) {
        short_hash(bl[i].hash, s);
        if (bl[i].len > PUSH_BLOCK_MAX)
            return fail(c, o, "BlockTooLarge: block %s is %zu bytes, over the limit of %d", s,
                        bl[i].len, PUSH_BLOCK_MAX);
        if (map_get(&c->m, bl[i].hash))
            continue; /* equal name, and cached blocks were checked: the same content */
        if (tls_sha256_hex(bl[i].text, bl[i].len, h) < 0)
            return fail(c, o, "OutOfMemory: cannot hash block %s", s);
        if (strcmp(h, bl[i].hash) != 0)
            return fail(c, o, "BadBlock: block %s is not named by the SHA-256 of its content", s);
    }
    return 0;
}

static const struct push_block *asm_block(const void *arg, size_t i)
{
    return &((const struct push__cache *)arg)->asmb[i]->pb;
}

/* Every block is there: join, check the document's hash, hand it out. */
static int finish(struct push__cache *c, struct push__asm_out *o)
{
    char h[PUSH_HASH_LEN + 1], s[13];
    size_t total = 2;
    struct buf b;
    int rc;

    for (size_t i = 0; i < c->nmembers; i++)
        total += strlen(c->members[i].key) + 4 + c->members[i].len + c->members[i].nrefs;
    for (size_t i = 0; i < c->nrefs; i++)
        total += c->asmb[i]->pb.len;
    if (total > PUSH_DOC_MAX)
        return fail(c, o, "DocumentTooLarge: the document would be %zu bytes, over the limit of %d",
                    total, PUSH_DOC_MAX);
    buf_init(&b);
    rc = buf_reserve(&b, total);
    if (!rc)
        rc = doc_join(c->members, c->nmembers, asm_block, c, &b);
    if (!rc)
        rc = tls_sha256_hex(b.p, b.len, h);
    if (rc) {
        buf_release(&b);
        return fail(c, o, "OutOfMemory: cannot assemble the document");
    }
    if (strcmp(h, c->hash) != 0) {
        short_hash(h, s);
        buf_release(&b);
        return fail(c, o, "HashMismatch: the assembled document hashes to %s…, not %.12s…", s,
                    c->hash);
    }
    o->len = b.len;
    o->doc = buf_take(&b);
    /* the blocks of this document stay pinned until the next one is assembled */
    for (size_t i = 0; i < c->ncur; i++)
        unpin(c, c->cur[i]);
    free(c->cur);
    c->cur = c->asmb;
    c->ncur = c->nrefs;
    c->asmb = NULL;
    c->nrefs = 0;
    asm_clear(c);
    spare_trim(c);
    return PUSH__ASM_DONE;
}

/* Ask for up to PUSH_NEED_MAX missing blocks not asked for yet; 0 when none is left. */
static int ask(struct push__cache *c, struct push__asm_out *o)
{
    o->need = calloc(PUSH_NEED_MAX, sizeof(*o->need));
    if (!o->need)
        return fail(c, o, "OutOfMemory: cannot ask for blocks");
    for (size_t i = 0; i < c->nrefs && o->nneed < PUSH_NEED_MAX; i++) {
        size_t j;

        if (c->asmb[i] || c->asked[i])
            continue;
        c->asked[i] = 1;
        /* the same block at several places is asked for once */
        for (j = 0; j < o->nneed; j++)
            if (strcmp(o->need[j].h, c->refh[i]) == 0)
                break;
        if (j == o->nneed)
            memcpy(o->need[o->nneed++].h, c->refh[i], PUSH_HASH_LEN + 1);
    }
    if (!o->nneed) {
        FREE_AND_NULL(o->need);
        return 0;
    }
    return PUSH__ASM_NEED;
}

/* Fill the references at which block b is missing; returns how many. */
static size_t asm_fill(struct push__cache *c, struct cblock *b)
{
    size_t n = 0;

    for (size_t i = 0; i < c->nrefs; i++) {
        if (c->asmb[i] || strcmp(c->refh[i], b->pb.hash) != 0)
            continue;
        pin(c, b);
        c->asmb[i] = b;
        c->asm_bytes += b->pb.len;
        n++;
    }
    return n;
}

/* Blocks already held for a document over the limit are dropped at once (a peer cannot make
 * the agent pin more than one document's worth while it assembles). */
static int over_limit(struct push__cache *c, struct push__asm_out *o)
{
    if (c->asm_bytes <= PUSH_DOC_MAX)
        return 0;
    return fail(c, o, "DocumentTooLarge: its blocks alone are %zu bytes, over the limit of %d",
                c->asm_bytes, PUSH_DOC_MAX);
}

int push__cache_config(struct push__cache *c, struct push_msg *m, struct push__asm_out *o)
{
    struct cblock **prev = c->asmb;
    size_t nprev = c->nrefs, nrefs = 0, k = 0;
    int rc;

    memset(o, 0, sizeof(*o));
    if (m->type != PUSH_MSG_CONFIG || m->config)
        return fail(c, o, "ProtocolError: not a v2 config");
    rc = check_blocks(c, m->blocks, m->nblocks, o);
    if (rc)
        return rc;
    for (size_t i = 0; i < m->nmembers; i++)
        nrefs += m->members[i].nrefs;
    /* the previous assembly's pins are dropped only after this one pinned what it shares */
    c->asmb = NULL;
    c->nrefs = 0;
    asm_clear(c);
    c->asmb = calloc(nrefs ? nrefs : 1, sizeof(*c->asmb));
    c->asked = calloc(nrefs ? nrefs : 1, 1);
    c->refh = calloc(nrefs ? nrefs : 1, sizeof(*c->refh));
    if (!c->asmb || !c->asked || !c->refh) {
        rc = fail(c, o, "OutOfMemory: cannot assemble the document");
        goto out;
    }
    c->active = 1;
    c->version = m->version;
    memcpy(c->hash, m->hash, sizeof(c->hash));
    c->members = m->members;
    c->nmembers = m->nmembers;
    m->members = NULL;
    m->nmembers = 0;
    c->nrefs = nrefs;
    for (size_t i = 0; i < c->nmembers; i++)
        for (size_t j = 0; j < c->members[i].nrefs; j++)
            c->refh[k++] = c->members[i].refs[j].h;
    for (size_t i = 0; i < m->nblocks; i++) {
        struct cblock *b = cache_put(c, &m->blocks[i]);

        if (!b) {
            rc = fail(c, o, "OutOfMemory: cannot keep block %.12s", m->blocks[i].hash);
            goto out;
        }
        asm_fill(c, b);
    }
    for (size_t i = 0; i < c->nrefs; i++) {
        struct cblock *b;

        if (c->asmb[i])
            continue;
        b = map_get(&c->m, c->refh[i]);
        if (b)
            asm_fill(c, b);
    }
    rc = over_limit(c, o);
    if (rc)
        goto out;
    rc = ask(c, o);
    if (rc == 0)
        rc = finish(c, o);
out:
    for (size_t i = 0; i < nprev; i++)
        unpin(c, prev[i]);
    free(prev);
    spare_trim(c);
    return rc;
}

int push__cache_blocks(struct push__cache *c, const struct push_msg *m, struct push__asm_out *o)
{
    int rc;

    memset(o, 0, sizeof(*o));
    if (!c->active || m->version != c->version)
        return PUSH__ASM_IGNORE; /* for a document since replaced */
    rc = check_blocks(c, m->blocks, m->nblocks, o);
    if (rc)
        return rc;
    for (size_t i = 0; i < m->nblocks; i++) {
        struct cblock *b = map_get(&c->m, m->blocks[i].hash);
        size_t j;

        /* only blocks the document refers to are kept */
        for (j = 0; j < c->nrefs && strcmp(c->refh[j], m->blocks[i].hash); j++)
            ;
        if (j == c->nrefs)
            continue;
        if (!b)
            b = cache_put(c, &m->blocks[i]);
        if (!b)
            return fail(c, o, "OutOfMemory: cannot keep block %.12s", m->blocks[i].hash);
        asm_fill(c, b);
        rc = over_limit(c, o);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < m->nhashes; i++)
        for (size_t j = 0; j < c->nrefs; j++)
            if (!c->asmb[j] && strcmp(c->refh[j], m->hashes[i].h) == 0)
                return fail(c, o, "UnknownBlock: weftd does not hold block %.12s… of version %llu",
                            m->hashes[i].h, (unsigned long long)m->version);
    for (size_t i = 0; i < c->nrefs; i++)
        if (!c->asmb[i] && c->asked[i])
            return fail(c, o, "UnknownBlock: weftd's answer lacks block %.12s… of version %llu",
                        c->refh[i], (unsigned long long)m->version);
    rc = ask(c, o);
    if (rc == 0)
        rc = finish(c, o);
    spare_trim(c);
    return rc;
}
