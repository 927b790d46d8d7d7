/*
 * msg.c - the config stream's frames: JSON decode/encode and the canonical document hash.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "push/push.h"
#include "push/push_int.h"
#include "tls/tls.h"

_Static_assert(PUSH_HASH_LEN == TLS_SHA256_HEX, "the content hash is a hex SHA-256");

static const struct {
    enum push_msg_type type;
    const char *name;
} msg_types[] = {
    {PUSH_MSG_HELLO, "hello"},   {PUSH_MSG_ACK, "ack"},     {PUSH_MSG_NACK, "nack"},
    {PUSH_MSG_CONFIG, "config"}, {PUSH_MSG_ERROR, "error"}, {PUSH_MSG_APPS_EXITED, "appsExited"},
    {PUSH_MSG_TRUST, "trust"},   {PUSH_MSG_NEED, "need"},   {PUSH_MSG_BLOCKS, "blocks"},
};

int push__strlcpy(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);

    if (len >= n) {
        if (n)
            dst[0] = '\0';
        return -ENAMETOOLONG;
    }
    memcpy(dst, src, len + 1);
    return 0;
}

int64_t push__now_unix_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int push__is_hash(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return i == PUSH_HASH_LEN;
}

/* Copy the string field key of o into dst (size n). Missing: ERR_INVALID unless optional. */
static int get_str(json_t *o, const char *key, char *dst, size_t n, int optional)
{
    json_t *v = json_object_get(o, key);

    if (!v)
        return optional ? 0 : ERR_INVALID;
    if (!json_is_string(v) || push__strlcpy(dst, json_string_value(v), n) < 0)
        return ERR_INVALID;
    return 0;
}

static int get_dup(json_t *o, const char *key, char **dst)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_string(v) || strlen(json_string_value(v)) > PUSH_REASON_MAX)
        return ERR_INVALID;
    *dst = strdup(json_string_value(v));
    return *dst ? 0 : -ENOMEM;
}

static int get_version_hash(json_t *o, struct push_msg *m)
{
    json_t *v = json_object_get(o, "version");

    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return ERR_INVALID;
    m->version = (uint64_t)json_integer_value(v);
    if (get_str(o, "hash", m->hash, sizeof(m->hash), 0) < 0 || !push__is_hash(m->hash))
        return ERR_INVALID;
    return 0;
}

static int dump_canonical(const json_t *doc, char **out)
{
    *out = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    return *out ? 0 : -ENOMEM;
}

static int get_hash_array(json_t *a, size_t max, struct push_hash **out, size_t *n)
{
    size_t i, k = json_array_size(a);
    struct push_hash *h;

    if (!json_is_array(a) || k > max)
        return ERR_INVALID;
    if (!k)
        return 0;
    h = calloc(k, sizeof(*h));
    if (!h)
        return -ENOMEM;
    for (i = 0; i < k; i++) {
        json_t *v = json_array_get(a, i);

        if (!json_is_string(v) || push__strlcpy(h[i].h, json_string_value(v), sizeof(h[i].h)) ||
            !push__is_hash(h[i].h)) {
            free(h);
            return ERR_INVALID;
        }
    }
    *out = h;
    *n = k;
    return 0;
}

/*
 * A validating JSON scanner, for the blocks of v2 frames: they are hashed as the bytes they
 * arrive in (weftd writes each block's canonical text), so they need no tree and no dump.
 * Strings: escapes checked, no control characters, well-formed UTF-8. Depth is bounded.
 */
#define SCAN_DEPTH 64

static void scan_ws(const char **p, const char *e)
{
    while (*p < e && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r'))
        (*p)++;
}

static int scan_utf8(const char **p, const char *e)
{
    const unsigned char *s = (const unsigned char *)*p;
    unsigned c = s[0], n, cp;

    if (c < 0xc2 || c > 0xf4)
        return -1;
    n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
    if ((const char *)s + n >= e)
        return -1;
    cp = c & (0x3fu >> n);
    for (unsigned i = 1; i <= n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *p += n + 1;
    return 0;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Bytes a string may hold as they are: printable ASCII but '"' and '\\'. */
static int plain_byte(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

static int scan_string(const char **p, const char *e)
{
    const char *s = *p + 1;

    while (s < e && *s != '"') {
        unsigned char c = (unsigned char)*s;

        if (plain_byte(c)) { /* the common case, in a tight loop */
            do
                s++;
            while (s < e && plain_byte((unsigned char)*s));
            continue;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (++s >= e)
                return -1;
            if (*s == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (s + i >= e || !is_hex(s[i]))
                        return -1;
                s += 5;
            } else if (*s == '"' || *s == '\\' || *s == '/' || *s == 'b' || *s == 'f' ||
                       *s == 'n' || *s == 'r' || *s == 't') {
                s++;
            } else {
                return -1;
            }
        } else if (c >= 0x80) {
            if (scan_utf8(&s, e) < 0)
                return -1;
        } else {
            s++;
        }
    }
    if (s >= e)
        return -1;
    *p = s + 1;
    return 0;
}

static int scan_digits(const char **p, const char *e)
{
    const char *s = *p;

    while (*p < e && **p >= '0' && **p <= '9')
        (*p)++;
    return *p > s ? 0 : -1;
}

static int scan_value(const char **p, const char *e, int depth)
{
    const char *s = *p;

    if (s >= e || depth > SCAN_DEPTH)
        return -1;
    if (*s == '"')
        return scan_string(p, e);
    if (*s == '{' || *s == '[') {
        char close = *s == '{' ? '}' : ']';

        (*p)++;
        scan_ws(p, e);
        if (*p < e && **p == close) {
            (*p)++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                if (*p >= e || **p != '"' || scan_string(p, e) < 0)
                    return -1;
                scan_ws(p, e);
                if (*p >= e || **p != ':')
                    return -1;
                (*p)++;
                scan_ws(p, e);
            }
            if (scan_value(p, e, depth + 1) < 0)
                return -1;
            scan_ws(p, e);
            if (*p < e && **p == ',') {
                (*p)++;
                scan_ws(p, e);
                continue;
            }
            if (*p < e && **p == close) {
                (*p)++;
                return 0;
            }
            return -1;
        }
    }
    if ((size_t)(e - s) >= 4 && (memcmp(s, "true", 4) == 0 || memcmp(s, "null", 4) == 0)) {
        *p += 4;
        return 0;
    }
    if ((size_t)(e - s) >= 5 && memcmp(s, "false", 5) == 0) {
        *p += 5;
        return 0;
    }
    if (*p < e && **p == '-')
        (*p)++;
    if (*p < e && **p == '0')
        (*p)++;
    else if (scan_digits(p, e) < 0)
        return -1;
    if (*p < e && **p == '.') {
        (*p)++;
        if (scan_digits(p, e) < 0)
            return -1;
    }
    if (*p < e && (**p == 'e' || **p == 'E')) {
        (*p)++;
        if (*p < e && (**p == '+' || **p == '-'))
            (*p)++;
        if (scan_digits(p, e) < 0)
            return -1;
    }
    return 0;
}

static int cmp_block(const void *a, const void *b)
{
    return strcmp(((const struct push_block *)a)->hash, ((const struct push_block *)b)->hash);
}

/* The v2 `blocks` object: hash -> JSON object, kept as canonical text, sorted by hash. */
static int get_blocks(json_t *o, struct push_msg *m)
{
    const char *k;
    json_t *v;

    if (!o)
        return 0;
    if (!json_is_object(o) || json_object_size(o) > PUSH_REFS_MAX)
        return ERR_INVALID;
    if (!json_object_size(o))
        return 0;
    m->blocks = calloc(json_object_size(o), sizeof(*m->blocks));
    if (!m->blocks)
        return -ENOMEM;
    json_object_foreach(o, k, v)
    {
        struct push_block *b = &m->blocks[m->nblocks];

        if (push__strlcpy(b->hash, k, sizeof(b->hash)) || !push__is_hash(b->hash) ||
            !json_is_object(v))
            return ERR_INVALID;
        b->text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        if (!b->text)
            return -ENOMEM;
        b->len = strlen(b->text);
        m->nblocks++;
    }
    qsort(m->blocks, m->nblocks, sizeof(*m->blocks), cmp_block);
    return 0;
}

static int cmp_member(const void *a, const void *b)
{
    return strcmp(((const struct push_member *)a)->key, ((const struct push_member *)b)->key);
}

/* A v2 `config`: skeleton (inline members), refs (members made of blocks), blocks. */
static int get_v2_doc(json_t *root, struct push_msg *m)
{
    json_t *skel = json_object_get(root, "skeleton"), *refs = json_object_get(root, "refs"), *v;
    size_t n, total = 0;
    const char *k;
    int rc;

    if (!json_is_object(skel) || (refs && !json_is_object(refs)))
        return ERR_INVALID;
    n = json_object_size(skel) + json_object_size(refs);
    if (n) {
        m->members = calloc(n, sizeof(*m->members));
        if (!m->members)
            return -ENOMEM;
    }
    json_object_foreach(skel, k, v)
    {
        struct push_member *mb = &m->members[m->nmembers++];

        mb->key = strdup(k);
        mb->text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!mb->key || !mb->text)
            return -ENOMEM;
        mb->len = strlen(mb->text);
    }
    json_object_foreach(refs, k, v)
    {
        struct push_member *mb = &m->members[m->nmembers++];

        if (json_object_get(skel, k))
            return ERR_INVALID; /* a member is either inline or made of blocks */
        mb->key = strdup(k);
        if (!mb->key)
            return -ENOMEM;
        rc = get_hash_array(v, PUSH_REFS_MAX - total, &mb->refs, &mb->nrefs);
        if (rc)
            return rc;
        total += mb->nrefs;
    }
    if (m->nmembers)
        qsort(m->members, m->nmembers, sizeof(*m->members), cmp_member);
    return get_blocks(json_object_get(root, "blocks"), m);
}

static void drop_blocks(struct push_msg *m)
{
    for (size_t i = 0; i < m->nblocks; i++)
        free(m->blocks[i].text);
    FREE_AND_NULL(m->blocks);
    m->nblocks = 0;
}

/*
 * The blocks of a v2 frame, `"blocks":{hash:object,...}` at the top level, taken as raw bytes
 * (each block's text as it arrived: weftd writes canonical texts, and the hash names exactly
 * those bytes). The frame without that member goes to jansson (*rest, free()), which then reads
 * a handful of small fields instead of the whole frame. Returns 0 (*rest NULL: no such member,
 * or a frame this scan does not follow: jansson reads it all and judges it), ERR_INVALID for
 * malformed blocks, -ENOMEM.
 */
static int take_raw_blocks(const char *text, size_t len, struct push_msg *m, char **rest)
{
    const char *p = text, *e = text + len, *bv = NULL, *be = NULL;
    struct buf b;
    size_t n = 0;
    int rc = 0;

    *rest = NULL;
    scan_ws(&p, e);
    if (p >= e || *p != '{')
        return 0;
    buf_init(&b);
    p++;
    scan_ws(&p, e);
    while (p < e && *p == '"') {
        const char *k = p, *v;
        size_t klen;

        if (scan_string(&p, e) < 0)
            goto out;
        klen = (size_t)(p - k);
        scan_ws(&p, e);
        if (p >= e || *p++ != ':')
            goto out;
        scan_ws(&p, e);
        v = p;
        if (scan_value(&p, e, 1) < 0)
            goto out;
        if (klen == 8 && memcmp(k, "\"blocks\"", 8) == 0 && *v == '{' && !bv) {
            bv = v;
            be = p;
        } else {
            rc = buf_puts(&b, b.len ? "," : "{");
            if (!rc)
                rc = buf_append(&b, k, (size_t)(p - k));
            if (rc)
                goto out;
        }
        scan_ws(&p, e);
        if (p < e && *p == ',') {
            p++;
            scan_ws(&p, e);
        }
    }
    if (!bv)
        goto out;
    /* count, then take the members of the blocks object (scan_value checked its shape) */
    for (const char *q = bv + 1; q < be; q++) {
        scan_ws(&q, be);
        if (q >= be || *q == '}')
            break;
        if (scan_string(&q, be) < 0)
            goto out;
        scan_ws(&q, be);
        q++; /* ':' */
        scan_ws(&q, be);
        if (scan_value(&q, be, 1) < 0)
            goto out;
        scan_ws(&q, be);
        n++; /* q is at ',' or '}' */
    }
    rc = ERR_INVALID;
    if (n > PUSH_REFS_MAX)
        goto out;
    if (n) {
        rc = -ENOMEM;
        m->blocks = calloc(n, sizeof(*m->blocks));
        if (!m->blocks)
            goto out;
    }
    p = bv + 1;
    for (size_t i = 0; i < n; i++) {
        struct push_block *blk = &m->blocks[m->nblocks];
        const char *k, *v;

        scan_ws(&p, be);
        k = p;
        rc = ERR_INVALID;
        if (scan_string(&p, be) < 0 || p - k != PUSH_HASH_LEN + 2)
            goto out;
        memcpy(blk->hash, k + 1, PUSH_HASH_LEN);
        blk->hash[PUSH_HASH_LEN] = '\0';
        if (!push__is_hash(blk->hash))
            goto out;
        scan_ws(&p, be);
        p++; /* ':' */
        scan_ws(&p, be);
        v = p;
        if (*v != '{' || scan_value(&p, be, 1) < 0)
            goto out;
        rc = -ENOMEM;
        blk->len = (size_t)(p - v);
        blk->text = strndup(v, blk->len);
        if (!blk->text)
            goto out;
        m->nblocks++;
        scan_ws(&p, be);
        p++; /* ',' or '}' */
    }
    if (m->nblocks)
        qsort(m->blocks, m->nblocks, sizeof(*m->blocks), cmp_block);
    rc = ERR_INVALID;
    for (size_t i = 1; i < m->nblocks; i++)
        if (strcmp(m->blocks[i - 1].hash, m->blocks[i].hash) == 0)
            goto out; /* duplicate names, as jansson refuses */
    rc = buf_puts(&b, b.len ? "}" : "{}");
    if (!rc)
        *rest = buf_take(&b);
out:
    if (rc || !*rest)
        drop_blocks(m);
    buf_release(&b);
    return rc;
}

int push_msg_parse(const char *text, size_t len, struct push_msg *out)
{
    struct push_msg m;
    json_t *root = NULL, *pod, *tv;
    const char *type;
    char *rest = NULL;
    int rc = 0, raw;

    memset(&m, 0, sizeof(m));
    memset(out, 0, sizeof(*out));
    rc = take_raw_blocks(text, len, &m, &rest);
    if (rc)
        goto out;
    raw = rest != NULL;
    root = rest ? json_loads(rest, JSON_REJECT_DUPLICATES, NULL)
                : json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    free(rest);
    if (!json_is_object(root)) {
        rc = ERR_PARSE;
        goto out;
    }
    tv = json_object_get(root, "type");
    type = json_is_string(tv) ? json_string_value(tv) : "";
    for (size_t i = 0; i < ARRAY_LEN(msg_types); i++)
        if (strcmp(type, msg_types[i].name) == 0)
            m.type = msg_types[i].type;
    if (raw && json_object_get(root, "blocks")) {
        rc = ERR_INVALID; /* twice, under two spellings of the name: duplicates are refused */
        goto out;
    }
    if (raw && m.type != PUSH_MSG_BLOCKS &&
        (m.type != PUSH_MSG_CONFIG || !json_object_get(root, "skeleton")))
        drop_blocks(&m); /* not a field of this message: ignored, as unknown fields are */
    switch (m.type) {
    case PUSH_MSG_HELLO:
        pod = json_object_get(root, "pod");
        if (!json_is_object(pod) || get_str(pod, "namespace", m.pod.ns, sizeof(m.pod.ns), 0) ||
            get_str(pod, "name", m.pod.name, sizeof(m.pod.name), 0) ||
            get_str(pod, "uid", m.pod.uid, sizeof(m.pod.uid), 0) || !m.pod.ns[0] ||
            !m.pod.name[0] || strchr(m.pod.ns, '/') || strchr(m.pod.name, '/') ||
            get_str(root, "agent", m.agent, sizeof(m.agent), 1) ||
            get_str(root, "lastHash", m.last_hash, sizeof(m.last_hash), 1) ||
            (m.last_hash[0] && !push__is_hash(m.last_hash)))
            rc = ERR_INVALID;
        break;
    case PUSH_MSG_ACK:
        rc = get_version_hash(root, &m);
        break;
    case PUSH_MSG_NACK:
        rc = get_version_hash(root, &m);
        if (!rc)
            rc = get_dup(root, "reason", &m.reason);
        break;
    case PUSH_MSG_CONFIG:
        rc = get_version_hash(root, &m);
        if (rc)
            break;
        if (json_object_get(root, "skeleton")) {
            /* v2: the document as a skeleton and blocks (never both forms) */
            rc = json_object_get(root, "config") ? ERR_INVALID : get_v2_doc(root, &m);
            break;
        }
        if (!json_is_object(json_object_get(root, "config")))
            rc = ERR_INVALID;
        if (!rc)
            rc = dump_canonical(json_object_get(root, "config"), &m.config);
        break;
    case PUSH_MSG_NEED: {
        json_t *v = json_object_get(root, "version");

        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            rc = ERR_INVALID;
            break;
        }
        m.version = (uint64_t)json_integer_value(v);
        rc = get_hash_array(json_object_get(root, "blocks"), PUSH_NEED_MAX, &m.hashes, &m.nhashes);
        if (!rc && !m.nhashes)
            rc = ERR_INVALID;
        break;
    }
    case PUSH_MSG_BLOCKS: {
        json_t *v = json_object_get(root, "version"), *miss = json_object_get(root, "missing");

        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            (!raw && !json_is_object(json_object_get(root, "blocks")))) {
            rc = ERR_INVALID;
            break;
        }
        m.version = (uint64_t)json_integer_value(v);
        rc = get_blocks(json_object_get(root, "blocks"), &m);
        if (!rc && miss)
            rc = get_hash_array(miss, PUSH_REFS_MAX, &m.hashes, &m.nhashes);
        break;
    }
    case PUSH_MSG_ERROR:
        rc = get_str(root, "code", m.code, sizeof(m.code), 0);
        if (!rc && !m.code[0])
            rc = ERR_INVALID;
        if (!rc)
            rc = get_dup(root, "reason", &m.reason);
        break;
    case PUSH_MSG_APPS_EXITED:
        rc = get_dup(root, "reason", &m.reason);
        break;
    case PUSH_MSG_TRUST: {
        json_t *v = json_object_get(root, "bundle");

        if (!json_is_string(v) || !json_string_length(v) ||
            json_string_length(v) > PUSH_BUNDLE_MAX ||
            strlen(json_string_value(v)) != json_string_length(v))
            rc = ERR_INVALID;
        else if (!(m.bundle = strdup(json_string_value(v))))
            rc = -ENOMEM;
        break;
    }
    case PUSH_MSG_NONE:
        rc = ERR_INVALID;
        break;
    }
    if (rc)
        goto out;
    *out = m;
    memset(&m, 0, sizeof(m));
out:
    push_msg_release(&m);
    json_decref(root);
    return rc;
}

/* Append the JSON string for s (a member's name), as jansson writes it in a canonical dump. */
static int put_key(struct buf *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    int rc = t ? buf_puts(b, t) : ERR_INVALID;

    free(t);
    json_decref(j);
    return rc;
}

static int put_hashes(struct buf *b, const struct push_hash *h, size_t n)
{
    int rc = buf_puts(b, "[");

    for (size_t i = 0; !rc && i < n; i++)
        rc = push__is_hash(h[i].h) ? buf_printf(b, "%s\"%s\"", i ? "," : "", h[i].h) : ERR_INVALID;
    return rc ? rc : buf_puts(b, "]");
}

static int put_blocks(struct buf *b, const struct push_block *bl, size_t n)
{
    int rc = buf_puts(b, "{");

    for (size_t i = 0; !rc && i < n; i++) {
        if (!push__is_hash(bl[i].hash) || !bl[i].text || bl[i].text[0] != '{')
            return ERR_INVALID;
        rc = buf_printf(b, "%s\"%s\":", i ? "," : "", bl[i].hash);
        if (!rc)
            rc = buf_append(b, bl[i].text, bl[i].len);
    }
    return rc ? rc : buf_puts(b, "}");
}

/* The members of a v2 document: skeleton, refs and blocks objects (built by hand so that the
 * canonical texts go out byte for byte). */
static int put_v2_doc(struct buf *b, const struct push_msg *m)
{
    int rc = buf_puts(b, ",\"skeleton\":{"), first = 1;

    for (size_t i = 0; !rc && i < m->nmembers; i++) {
        const struct push_member *mb = &m->members[i];

        if (!mb->text)
            continue;
        rc = buf_puts(b, first ? "" : ",");
        if (!rc)
            rc = put_key(b, mb->key);
        if (!rc)
            rc = buf_puts(b, ":");
        if (!rc)
            rc = buf_append(b, mb->text, mb->len);
        first = 0;
    }
    if (!rc)
        rc = buf_puts(b, "},\"refs\":{");
    first = 1;
    for (size_t i = 0; !rc && i < m->nmembers; i++) {
        const struct push_member *mb = &m->members[i];

        if (mb->text)
            continue;
        rc = buf_puts(b, first ? "" : ",");
        if (!rc)
            rc = put_key(b, mb->key);
        if (!rc)
            rc = buf_puts(b, ":");
        if (!rc)
            rc = put_hashes(b, mb->refs, mb->nrefs);
        first = 0;
    }
    if (!rc)
        rc = buf_puts(b, "},\"blocks\":");
    if (!rc)
        rc = put_blocks(b, m->blocks, m->nblocks);
    return rc;
}

int push_msg_encode(const struct push_msg *m, char **out)
{
    json_t *o = NULL;
    struct buf b;
    char *s = NULL;
    int rc = -ENOMEM;

    buf_init(&b);
    if (m->type == PUSH_MSG_CONFIG && !m->config && m->version >= 1 && push__is_hash(m->hash)) {
        rc = buf_printf(&b, "{\"type\":\"config\",\"version\":%llu,\"hash\":\"%s\"",
                        (unsigned long long)m->version, m->hash);
        if (!rc)
            rc = put_v2_doc(&b, m);
        goto v2_done;
    }
    if (m->type == PUSH_MSG_NEED || m->type == PUSH_MSG_BLOCKS) {
        if (m->version < 1 || (m->type == PUSH_MSG_NEED && !m->nhashes)) {
            rc = ERR_INVALID;
            goto out;
        }
        rc = buf_printf(&b, "{\"type\":\"%s\",\"version\":%llu,\"blocks\":",
                        m->type == PUSH_MSG_NEED ? "need" : "blocks",
                        (unsigned long long)m->version);
        if (!rc)
            rc = m->type == PUSH_MSG_NEED ? put_hashes(&b, m->hashes, m->nhashes)
                                          : put_blocks(&b, m->blocks, m->nblocks);
        if (!rc && m->type == PUSH_MSG_BLOCKS && m->nhashes) {
            rc = buf_puts(&b, ",\"missing\":");
            if (!rc)
                rc = put_hashes(&b, m->hashes, m->nhashes);
        }
        goto v2_done;
    }
    if (m->type == PUSH_MSG_CONFIG) {
        /* Built by hand so the canonical document text goes out byte for byte. */
        if (!m->config || m->config[0] != '{' || !push__is_hash(m->hash) || m->version < 1) {
            rc = ERR_INVALID;
            goto out;
        }
        rc = buf_printf(&b, "{\"type\":\"config\",\"version\":%llu,\"hash\":\"%s\",\"config\":",
                        (unsigned long long)m->version, m->hash);
        if (!rc)
            rc = buf_puts(&b, m->config);
        if (!rc)
            rc = buf_puts(&b, "}");
        if (!rc)
            s = buf_take(&b);
        goto done;
    }
    o = json_object();
    if (!o)
        goto out;
    rc = ERR_INVALID;
    for (size_t i = 0; i < ARRAY_LEN(msg_types); i++)
        if (msg_types[i].type == m->type)
            rc = json_object_set_new(o, "type", json_string(msg_types[i].name)) ? -ENOMEM : 0;
    if (rc)
        goto out;
    rc = -ENOMEM;
    switch (m->type) {
    case PUSH_MSG_HELLO: {
        json_t *pod = json_pack("{s:s, s:s, s:s}", "namespace", m->pod.ns, "name", m->pod.name,
                                "uid", m->pod.uid);

        if (!pod || json_object_set_new(o, "pod", pod) ||
            json_object_set_new(o, "agent", json_string(m->agent)))
            goto out;
        if (m->last_hash[0] && json_object_set_new(o, "lastHash", json_string(m->last_hash)))
            goto out;
        break;
    }
    case PUSH_MSG_ACK:
    case PUSH_MSG_NACK:
        if (json_object_set_new(o, "version", json_integer((json_int_t)m->version)) ||
            json_object_set_new(o, "hash", json_string(m->hash)))
            goto out;
        if (m->type == PUSH_MSG_NACK &&
            json_object_set_new(o, "reason", json_string(m->reason ? m->reason : "")))
            goto out;
        break;
    case PUSH_MSG_ERROR:
        if (json_object_set_new(o, "code", json_string(m->code)) ||
            json_object_set_new(o, "reason", json_string(m->reason ? m->reason : "")))
            goto out;
        break;
    case PUSH_MSG_APPS_EXITED:
        if (json_object_set_new(o, "reason", json_string(m->reason ? m->reason : "")))
            goto out;
        break;
    case PUSH_MSG_TRUST:
        if (!m->bundle || !m->bundle[0] || strlen(m->bundle) > PUSH_BUNDLE_MAX) {
            rc = ERR_INVALID;
            goto out;
        }
        if (json_object_set_new(o, "bundle", json_string(m->bundle)))
            goto out;
        break;
    default:
        rc = ERR_INVALID;
        goto out;
    }
    s = json_dumps(o, JSON_COMPACT);
    goto done;
v2_done:
    if (!rc)
        rc = buf_puts(&b, "}");
    if (rc)
        goto out;
    s = buf_take(&b);
done:
    rc = s ? 0 : (rc ? rc : -ENOMEM);
    if (s)
        *out = s;
out:
    buf_release(&b);
    json_decref(o);
    return rc;
}

void push_msg_release(struct push_msg *m)
{
    if (!m)
        return;
    free(m->reason);
    free(m->config);
    free(m->bundle);
    for (size_t i = 0; i < m->nmembers; i++) {
        free(m->members[i].key);
        free(m->members[i].text);
        free(m->members[i].refs);
    }
    free(m->members);
    for (size_t i = 0; i < m->nblocks; i++)
        free(m->blocks[i].text);
    free(m->blocks);
    free(m->hashes);
    memset(m, 0, sizeof(*m));
}

int push__doc_canonical_json(const json_t *doc, char **canon_out, char hash_out[PUSH_HASH_LEN + 1])
{
    char *canon = NULL;
    int rc;

    if (!json_is_object(doc))
        return ERR_INVALID;
    rc = dump_canonical(doc, &canon);
    if (!rc)
        rc = tls_sha256_hex(canon, strlen(canon), hash_out);
    if (rc) {
        free(canon);
        return rc;
    }
    *canon_out = canon;
    return 0;
}

int push_doc_canonical(const char *doc_json, char **canon_out, char hash_out[PUSH_HASH_LEN + 1])
{
    json_t *doc = NULL;
    char *canon = NULL;
    int rc;

    doc = json_loads(doc_json, JSON_REJECT_DUPLICATES, NULL);
    if (!doc) {
        rc = ERR_PARSE;
        goto out;
    }
    if (!json_is_object(doc)) {
        rc = ERR_INVALID;
        goto out;
    }
    rc = dump_canonical(doc, &canon);
    if (rc)
        goto out;
    rc = tls_sha256_hex(canon, strlen(canon), hash_out);
    if (rc)
        goto out;
    *canon_out = canon;
    canon = NULL;
out:
    free(canon);
    json_decref(doc);
    return rc;
}
