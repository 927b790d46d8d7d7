/*
 * proto.c - a minimal, bounds-checked protobuf wire reader and the decoders for the few
 * Kubernetes objects helm sends as protobuf (v1 Secret, v1 ConfigMap).
 *
 * The body is untrusted: every read is checked against the end of its enclosing message, all
 * lengths are 64-bit and compared with what is left before any pointer arithmetic, and nothing
 * recurses deeper than the fixed schema (unknown fields are skipped, never descended into).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kubelite/proto.h"

enum {
    WT_VARINT = 0,
    WT_FIXED64 = 1,
    WT_LEN = 2,
    WT_SGROUP = 3,
    WT_EGROUP = 4,
    WT_FIXED32 = 5,
};

/* A reader over one message: [p, end) of a body that starts at base (for offsets in errors). */
struct pr {
    const uint8_t *base;
    const uint8_t *p;
    const uint8_t *end;
    char *msg;
    size_t msglen;
};

/* One decoded field. For WT_LEN, data/len is the payload; for WT_VARINT, u is the value. */
struct pr_field {
    uint32_t num;
    unsigned wt;
    uint64_t u;
    const uint8_t *data;
    size_t len;
    size_t off; /* offset of the tag in the body */
};

static void msg_set(char *msg, size_t msglen, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void msg_set(char *msg, size_t msglen, const char *fmt, ...)
{
    va_list ap;

    if (!msg || !msglen)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
}

static int pr_fail(const struct pr *r, size_t off, const char *what) WUR;

static int pr_fail(const struct pr *r, size_t off, const char *what)
{
    msg_set(r->msg, r->msglen, "proto: %s at byte %zu", what, off);
    return ERR_PARSE;
}

static size_t pr_off(const struct pr *r)
{
    return (size_t)(r->p - r->base);
}

static int pr_varint(struct pr *r, uint64_t *out)
{
    uint64_t v = 0;
    size_t start = pr_off(r);

    for (unsigned i = 0; i < 10; i++) {
        uint8_t b;

        if (r->p >= r->end)
            return pr_fail(r, start, "truncated varint");
        b = *r->p++;
        /* The tenth byte may only carry the 64th bit. */
        if (i == 9 && b > 1)
            return pr_fail(r, start, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return pr_fail(r, start, "varint overflows 64 bits");
}

/* Read the next field of r. Returns 1 with *f filled, 0 at the end of the message, or ERR_PARSE. */
static int pr_next(struct pr *r, struct pr_field *f)
{
    uint64_t tag, n;
    size_t off = pr_off(r);
    int rc;

    if (r->p >= r->end)
        return 0;
    rc = pr_varint(r, &tag);
    if (rc < 0)
        return rc;
    if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return pr_fail(r, off, "illegal field number");
    memset(f, 0, sizeof(*f));
    f->num = (uint32_t)(tag >> 3);
    f->wt = (unsigned)(tag & 7);
    f->off = off;
    switch (f->wt) {
    case WT_VARINT:
        return pr_varint(r, &f->u) < 0 ? ERR_PARSE : 1;
    case WT_FIXED64:
    case WT_FIXED32:
        n = f->wt == WT_FIXED64 ? 8 : 4;
        if ((uint64_t)(r->end - r->p) < n)
            return pr_fail(r, off, "truncated fixed-width field");
        r->p += n;
        return 1;
    case WT_LEN:
        rc = pr_varint(r, &n);
        if (rc < 0)
            return rc;
        if (n > (uint64_t)(r->end - r->p))
            return pr_fail(r, off, "length past end of message");
        f->data = r->p;
        f->len = (size_t)n;
        r->p += n;
        return 1;
    case WT_SGROUP:
    case WT_EGROUP:
        return pr_fail(r, off, "groups are not supported");
    default:
        return pr_fail(r, off, "invalid wire type");
    }
}

static int pr_want(const struct pr *r, const struct pr_field *f, unsigned wt, const char *name)
{
    char what[96];

    if (f->wt == wt)
        return 0;
    snprintf(what, sizeof(what), "wrong wire type %u for %s", f->wt, name);
    return pr_fail(r, f->off, what);
}

static struct pr pr_sub(const struct pr *r, const struct pr_field *f)
{
    struct pr s = {r->base, f->data, f->data + f->len, r->msg, r->msglen};
    return s;
}

/* Strict UTF-8 check (no overlongs, surrogates or code points above U+10FFFF). */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i - 1 < k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* A string field as a JSON string in *out (replacing any previous value). */
static int pr_string(const struct pr *r, const struct pr_field *f, const char *name, json_t **out)
{
    json_t *s;
    int rc = pr_want(r, f, WT_LEN, name);

    if (rc < 0)
        return rc;
    if (!utf8_valid(f->data, f->len)) {
        char what[96];

        snprintf(what, sizeof(what), "invalid UTF-8 in %s", name);
        return pr_fail(r, f->off, what);
    }
    s = json_stringn((const char *)f->data, f->len);
    if (!s)
        return -ENOMEM;
    json_decref(*out);
    *out = s;
    return 0;
}

/* Standard base64 with padding, as encoding/json writes []byte. */
static json_t *base64_json(const uint8_t *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t outlen = (n + 2) / 3 * 4, o = 0, i = 0;
    char *s = malloc(outlen + 1);
    json_t *j;

    if (!s)
        return NULL;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        s[o++] = tbl[v >> 18];
        s[o++] = tbl[(v >> 12) & 63];
        s[o++] = tbl[(v >> 6) & 63];
        s[o++] = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        s[o++] = tbl[v >> 18];
        s[o++] = tbl[(v >> 12) & 63];
        s[o++] = '=';
        s[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        s[o++] = tbl[v >> 18];
        s[o++] = tbl[(v >> 12) & 63];
        s[o++] = tbl[(v >> 6) & 63];
        s[o++] = '=';
    }
    s[o] = '\0';
    j = json_stringn_nocheck(s, o);
    free(s);
    return j;
}

/*
 * One map entry {1: key string, 2: value} added to *obj (created on first use; a repeated key
 * replaces the earlier value, as Go's map assignment does). bytes_value base64-encodes the value.
 */
static int pr_map_entry(const struct pr *r, const struct pr_field *f, const char *name,
                        bool bytes_value, json_t **obj)
{
    struct pr s;
    struct pr_field e;
    json_t *key = NULL, *val = NULL;
    int rc = pr_want(r, f, WT_LEN, name);

    if (rc < 0)
        return rc;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        if (e.num == 1) {
            rc = pr_string(&s, &e, "map key", &key);
        } else if (e.num == 2 && bytes_value) {
            rc = pr_want(&s, &e, WT_LEN, "map value");
            if (rc == 0) {
                json_decref(val);
                val = base64_json(e.data, e.len);
                rc = val ? 0 : -ENOMEM;
            }
        } else if (e.num == 2) {
            rc = pr_string(&s, &e, "map value", &val);
        }
        if (rc < 0)
            goto out;
    }
    if (rc < 0)
        goto out;
    /* Absent key or value means the zero value, as in Go. */
    if (!key && !(key = json_string("")))
        goto nomem;
    if (!val && !(val = json_string("")))
        goto nomem;
    if (!*obj && !(*obj = json_object()))
        goto nomem;
    rc = json_object_setn_new(*obj, json_string_value(key), json_string_length(key), val) ? -ENOMEM
                                                                                          : 0;
    val = NULL;
    goto out;
nomem:
    rc = -ENOMEM;
out:
    json_decref(key);
    json_decref(val);
    return rc;
}

static int pr_bool(const struct pr *r, const struct pr_field *f, const char *name, json_t **out)
{
    int rc = pr_want(r, f, WT_VARINT, name);

    if (rc < 0)
        return rc;
    json_decref(*out);
    *out = json_boolean(f->u != 0);
    return 0;
}

/* Days since 1970-01-01 to a civil date (H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era, yy;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    yy = (int64_t)yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

/*
 * Time {1 seconds int64, 2 nanos int32} to RFC 3339 in *out, or NULL for the zero time. Like
 * metav1.Time, sub-second precision is dropped and years outside 0..9999 are an error.
 */
static int pr_time(const struct pr *r, const struct pr_field *f, json_t **out)
{
    struct pr s;
    struct pr_field e;
    int64_t sec = 0, nsec = 0, days, sod, year;
    unsigned mon, day;
    char txt[64];
    int rc = pr_want(r, f, WT_LEN, "ObjectMeta.creationTimestamp");

    if (rc < 0)
        return rc;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        if (e.num == 1 || e.num == 2) {
            rc = pr_want(&s, &e, WT_VARINT, e.num == 1 ? "Time.seconds" : "Time.nanos");
            if (rc < 0)
                return rc;
            if (e.num == 1)
                sec = (int64_t)e.u;
            else
                nsec = (int32_t)(uint32_t)e.u;
        }
    }
    if (rc < 0)
        return rc;
    json_decref(*out);
    *out = NULL;
    if (sec == 0 && nsec == 0)
        return 0;
    /* 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z; checked before and after time.Unix's
     * normalisation of nanoseconds outside [0, 1e9) (at most 3 s either way) into seconds. */
    if (sec < -62167219200LL - 3 || sec > 253402300799LL + 3)
        return pr_fail(r, f->off, "creationTimestamp out of range");
    sec += nsec / 1000000000 - (nsec % 1000000000 < 0);
    if (sec < -62167219200LL || sec > 253402300799LL)
        return pr_fail(r, f->off, "creationTimestamp out of range");
    days = sec / 86400 - (sec % 86400 < 0);
    sod = sec - days * 86400;
    civil_from_days(days, &year, &mon, &day);
    snprintf(txt, sizeof(txt), "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)year % 10000, mon % 13,
             day % 32, (unsigned)(sod / 3600) % 24, (unsigned)(sod / 60 % 60),
             (unsigned)(sod % 60));
    *out = json_string(txt);
    return *out ? 0 : -ENOMEM;
}

/* Set key to v (consumed) when v is non-NULL. */
static int put(json_t *obj, const char *key, json_t *v)
{
    if (!v)
        return 0;
    return json_object_set_new(obj, key, v) ? -ENOMEM : 0;
}

/* A string member, left out when empty (the Go fields are omitempty). Consumes v. */
static int put_str(json_t *obj, const char *key, json_t *v)
{
    if (v && json_string_length(v) == 0) {
        json_decref(v);
        return 0;
    }
    return put(obj, key, v);
}

static int pr_owner_ref(const struct pr *r, const struct pr_field *f, json_t **arr)
{
    enum { OR_APIVERSION, OR_KIND, OR_NAME, OR_UID, OR_CONTROLLER, OR_BOD, OR_N };
    static const char *const keys[OR_N] = {"apiVersion", "kind",       "name",
                                           "uid",        "controller", "blockOwnerDeletion"};
    json_t *v[OR_N] = {NULL}, *o = NULL;
    struct pr s;
    struct pr_field e;
    int rc = pr_want(r, f, WT_LEN, "ObjectMeta.ownerReferences");

    if (rc < 0)
        return rc;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        switch (e.num) {
        case 1:
            rc = pr_string(&s, &e, "OwnerReference.kind", &v[OR_KIND]);
            break;
        case 3:
            rc = pr_string(&s, &e, "OwnerReference.name", &v[OR_NAME]);
            break;
        case 4:
            rc = pr_string(&s, &e, "OwnerReference.uid", &v[OR_UID]);
            break;
        case 5:
            rc = pr_string(&s, &e, "OwnerReference.apiVersion", &v[OR_APIVERSION]);
            break;
        case 6:
            rc = pr_bool(&s, &e, "OwnerReference.controller", &v[OR_CONTROLLER]);
            break;
        case 7:
            rc = pr_bool(&s, &e, "OwnerReference.blockOwnerDeletion", &v[OR_BOD]);
            break;
        default:
            break;
        }
        if (rc < 0)
            goto out;
    }
    if (rc < 0)
        goto out;
    if (!(o = json_object()) || (!*arr && !(*arr = json_array())))
        goto nomem;
    for (int i = 0; i < OR_N; i++) {
        /* apiVersion, kind, name and uid are not omitempty in Go. */
        if (!v[i] && i <= OR_UID && !(v[i] = json_string("")))
            goto nomem;
        rc = put(o, keys[i], v[i]);
        v[i] = NULL;
        if (rc < 0)
            goto out;
    }
    rc = json_array_append_new(*arr, o) ? -ENOMEM : 0;
    o = NULL;
    goto out;
nomem:
    rc = -ENOMEM;
out:
    for (int i = 0; i < OR_N; i++)
        json_decref(v[i]);
    json_decref(o);
    return rc;
}

enum {
    M_NAME,
    M_GENERATENAME,
    M_NAMESPACE,
    M_UID,
    M_RESOURCEVERSION,
    M_GENERATION,
    M_CREATION,
    M_LABELS,
    M_ANNOTATIONS,
    M_OWNERREFS,
    M_FINALIZERS,
    M_N
};

/* ObjectMeta fields gathered across (possibly repeated, hence merged) occurrences. */
struct meta {
    json_t *v[M_N];
};

static int pr_meta(const struct pr *r, const struct pr_field *f, struct meta *m)
{
    struct pr s;
    struct pr_field e;
    json_t *fin = NULL;
    int rc = pr_want(r, f, WT_LEN, "metadata");

    if (rc < 0)
        return rc;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        switch (e.num) {
        case 1:
            rc = pr_string(&s, &e, "ObjectMeta.name", &m->v[M_NAME]);
            break;
        case 2:
            rc = pr_string(&s, &e, "ObjectMeta.generateName", &m->v[M_GENERATENAME]);
            break;
        case 3:
            rc = pr_string(&s, &e, "ObjectMeta.namespace", &m->v[M_NAMESPACE]);
            break;
        case 5:
            rc = pr_string(&s, &e, "ObjectMeta.uid", &m->v[M_UID]);
            break;
        case 6:
            rc = pr_string(&s, &e, "ObjectMeta.resourceVersion", &m->v[M_RESOURCEVERSION]);
            break;
        case 7:
            rc = pr_want(&s, &e, WT_VARINT, "ObjectMeta.generation");
            if (rc == 0) {
                json_decref(m->v[M_GENERATION]);
                m->v[M_GENERATION] = json_integer((json_int_t)(int64_t)e.u);
                rc = m->v[M_GENERATION] ? 0 : -ENOMEM;
            }
            break;
        case 8:
            rc = pr_time(&s, &e, &m->v[M_CREATION]);
            break;
        case 11:
            rc = pr_map_entry(&s, &e, "ObjectMeta.labels", false, &m->v[M_LABELS]);
            break;
        case 12:
            rc = pr_map_entry(&s, &e, "ObjectMeta.annotations", false, &m->v[M_ANNOTATIONS]);
            break;
        case 13:
            rc = pr_owner_ref(&s, &e, &m->v[M_OWNERREFS]);
            break;
        case 14:
            rc = pr_string(&s, &e, "ObjectMeta.finalizers", &fin);
            if (rc == 0 && !m->v[M_FINALIZERS] && !(m->v[M_FINALIZERS] = json_array()))
                rc = -ENOMEM;
            if (rc == 0) {
                rc = json_array_append_new(m->v[M_FINALIZERS], fin) ? -ENOMEM : 0;
                fin = NULL;
            }
            break;
        default:
            break;
        }
        if (rc < 0)
            break;
    }
    json_decref(fin);
    return rc;
}

/* The metadata object in Go's field order; consumes m's values, even on failure. */
static int meta_json(struct meta *m, json_t **out)
{
    static const char *const keys[M_N] = {
        "name",       "generateName",      "namespace", "uid",         "resourceVersion",
        "generation", "creationTimestamp", "labels",    "annotations", "ownerReferences",
        "finalizers"};
    json_t *o = json_object();
    int rc = o ? 0 : -ENOMEM;

    for (int i = 0; i < M_N; i++) {
        json_t *v = m->v[i];

        m->v[i] = NULL;
        if (rc < 0) {
            json_decref(v);
            continue;
        }
        if (i == M_GENERATION && v && json_integer_value(v) == 0) {
            json_decref(v);
            continue;
        }
        rc = i <= M_RESOURCEVERSION ? put_str(o, keys[i], v) : put(o, keys[i], v);
    }
    if (rc < 0) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}

static void meta_release(struct meta *m)
{
    for (int i = 0; i < M_N; i++)
        json_decref(m->v[i]);
}

enum { K_SECRET, K_CONFIGMAP };

/*
 * Secret {1 metadata, 2 data map<string,bytes>, 3 type, 4 stringData, 5 immutable} or
 * ConfigMap {1 metadata, 2 data map<string,string>, 3 binaryData map<string,bytes>, 4 immutable}
 * into obj (which already has apiVersion and kind).
 */
static int decode_object(struct pr *r, int kind, json_t *obj)
{
    struct meta m = {{NULL}};
    json_t *meta = NULL, *immutable = NULL, *type = NULL, *m1 = NULL, *m2 = NULL;
    struct pr_field f;
    bool secret = kind == K_SECRET;
    int rc;

    while ((rc = pr_next(r, &f)) > 0) {
        if (f.num == 1)
            rc = pr_meta(r, &f, &m);
        else if (f.num == 2)
            rc = pr_map_entry(r, &f, "data", secret, &m1);
        else if (f.num == 3 && secret)
            rc = pr_string(r, &f, "Secret.type", &type);
        else if (f.num == 3)
            rc = pr_map_entry(r, &f, "binaryData", true, &m2);
        else if (f.num == 4 && secret)
            rc = pr_map_entry(r, &f, "stringData", false, &m2);
        else if ((f.num == 4 && !secret) || (f.num == 5 && secret))
            rc = pr_bool(r, &f, "immutable", &immutable);
        if (rc < 0)
            goto out;
    }
    if (rc < 0)
        goto out;
    rc = meta_json(&m, &meta);
    if (rc < 0)
        goto out;
    rc = put(obj, "metadata", meta);
    meta = NULL;
    if (rc == 0)
        rc = put(obj, "immutable", immutable);
    immutable = NULL;
    if (rc == 0)
        rc = put_str(obj, "type", type);
    type = NULL;
    if (rc == 0)
        rc = put(obj, "data", m1);
    m1 = NULL;
    if (rc == 0)
        rc = put(obj, secret ? "stringData" : "binaryData", m2);
    m2 = NULL;
out:
    meta_release(&m);
    json_decref(meta);
    json_decref(immutable);
    json_decref(type);
    json_decref(m1);
    json_decref(m2);
    return rc;
}

int proto_decode(const uint8_t *body, size_t len, json_t **out, char *msg, size_t msglen)
{
    struct pr r = {body, body, body, msg, msglen};
    struct pr_field f;
    json_t *apiv = NULL, *kind = NULL, *enc = NULL, *ctype = NULL, *obj = NULL;
    const uint8_t *raw = NULL;
    size_t rawlen = 0;
    int rc, k;

    if (!body || len < 4 || memcmp(body, "k8s\0", 4) != 0) {
        msg_set(msg, msglen, "proto: missing k8s protobuf magic");
        return ERR_PARSE;
    }
    r.p += 4;
    r.end = body + len;
    /* runtime.Unknown */
    while ((rc = pr_next(&r, &f)) > 0) {
        if (f.num == 1) {
            struct pr s;
            struct pr_field e;

            rc = pr_want(&r, &f, WT_LEN, "Unknown.typeMeta");
            if (rc < 0)
                goto out;
            s = pr_sub(&r, &f);
            while ((rc = pr_next(&s, &e)) > 0) {
                if (e.num == 1)
                    rc = pr_string(&s, &e, "TypeMeta.apiVersion", &apiv);
                else if (e.num == 2)
                    rc = pr_string(&s, &e, "TypeMeta.kind", &kind);
                if (rc < 0)
                    break;
            }
        } else if (f.num == 2) {
            rc = pr_want(&r, &f, WT_LEN, "Unknown.raw");
            raw = f.data;
            rawlen = f.len;
        } else if (f.num == 3) {
            rc = pr_string(&r, &f, "Unknown.contentEncoding", &enc);
        } else if (f.num == 4) {
            rc = pr_string(&r, &f, "Unknown.contentType", &ctype);
        }
        if (rc < 0)
            goto out;
    }
    if (rc < 0)
        goto out;
    if (enc && json_string_length(enc) > 0) {
        msg_set(msg, msglen, "proto: unsupported content encoding \"%s\"", json_string_value(enc));
        rc = ERR_UNSUPPORTED;
        goto out;
    }
    if (kind && apiv && strcmp(json_string_value(apiv), "v1") == 0 &&
        strcmp(json_string_value(kind), "Secret") == 0) {
        k = K_SECRET;
    } else if (kind && apiv && strcmp(json_string_value(apiv), "v1") == 0 &&
               strcmp(json_string_value(kind), "ConfigMap") == 0) {
        k = K_CONFIGMAP;
    } else {
        msg_set(msg, msglen, "proto: unsupported kind \"%s\" (apiVersion \"%s\")",
                kind ? json_string_value(kind) : "", apiv ? json_string_value(apiv) : "");
        rc = ERR_UNSUPPORTED;
        goto out;
    }
    obj = json_object();
    if (!obj || json_object_set(obj, "apiVersion", apiv) || json_object_set(obj, "kind", kind)) {
        rc = -ENOMEM;
        goto out;
    }
    {
        struct pr s = {body, raw ? raw : body, raw ? raw + rawlen : body, msg, msglen};

        rc = decode_object(&s, k, obj);
    }
    if (rc < 0)
        goto out;
    *out = obj;
    obj = NULL;
out:
    json_decref(apiv);
    json_decref(kind);
    json_decref(enc);
    json_decref(ctype);
    json_decref(obj);
    return rc;
}
