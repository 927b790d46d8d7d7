/*
 * proto.c - a minimal, bounds-checked protobuf wire reader and a table-driven decoder from the
 * Kubernetes protobuf encoding of API objects to their JSON form.
 *
 * Each message type is a descriptor: a table mapping field numbers to JSON names, a value type
 * and how Go's encoding/json treats the field (omitempty, pointer, value struct). The tables
 * follow the field numbers of k8s.io/api and k8s.io/apimachinery generated.proto and the json
 * tags of their types.go. Only the kinds listed in the kind table at the end are accepted.
 *
 * The body is untrusted: every read is checked against the end of its enclosing message, all
 * lengths are 64-bit and compared with what is left before any pointer arithmetic, and nesting
 * never goes deeper than the (non-recursive) descriptor tables; unknown fields are skipped by
 * wire type, never descended into.
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

/* Report what went wrong with a field named "a.b" (or just "a" when b is NULL). */
static int pr_fail_name(const struct pr *r, size_t off, const char *pre, const char *a,
                        const char *b, const char *post) WUR;

static int pr_fail_name(const struct pr *r, size_t off, const char *pre, const char *a,
                        const char *b, const char *post)
{
    msg_set(r->msg, r->msglen, "proto: %s%s%s%s%s at byte %zu", pre, a, b ? "." : "", b ? b : "",
            post, off);
    return ERR_PARSE;
}

static int pr_want(const struct pr *r, const struct pr_field *f, unsigned wt, const char *a,
                   const char *b)
{
    char what[48];

    if (f->wt == wt)
        return 0;
    snprintf(what, sizeof(what), "wrong wire type %u for ", f->wt);
    return pr_fail_name(r, f->off, what, a, b, "");
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
static int pr_string(const struct pr *r, const struct pr_field *f, const char *a, const char *b,
                     json_t **out)
{
    json_t *s;
    int rc = pr_want(r, f, WT_LEN, a, b);

    if (rc < 0)
        return rc;
    if (!utf8_valid(f->data, f->len))
        return pr_fail_name(r, f->off, "invalid UTF-8 in ", a, b, "");
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

/* ---- descriptors ---- */

/* Value types. T_MSG and T_INLINE name their descriptor; the rest are the special messages. */
enum pd_type {
    T_STRING,
    T_BYTES, /* base64 in JSON */
    T_BOOL,
    T_INT32, /* varint, truncated to 32 bits as Go does */
    T_INT64,
    T_MSG,
    T_INLINE,    /* an embedded Go struct: its fields land in the enclosing JSON object */
    T_TIME,      /* metav1.Time {1 seconds, 2 nanos}: RFC 3339, seconds only */
    T_MICROTIME, /* metav1.MicroTime: RFC 3339 with microseconds */
    T_DURATION,  /* metav1.Duration {1 duration ns}: Go's time.Duration.String() */
    T_QUANTITY,  /* resource.Quantity {1 string} */
    T_INTORSTR,  /* intstr.IntOrString {1 type, 2 intVal, 3 strVal} */
    T_RAWEXT,    /* runtime.RawExtension {1 raw}: the embedded JSON */
};

enum {
    F_REP = 1, /* repeated: a JSON array, one element per occurrence */
    F_MAP = 2, /* map<string, type>: a JSON object */
    F_PTR = 4, /* a Go pointer: emitted whenever present, even when zero */
    F_REQ = 8, /* a Go value without omitempty, or a struct: emitted even when absent */
};

/*
 * A scalar without F_PTR or F_REQ is omitempty: left out when zero. A message (T_MSG) without
 * F_REQ is a pointer: emitted only when present. Repeated fields and maps are emitted when they
 * have an element (a nil slice is null or absent in Go's JSON; both mean the same to the API).
 */
struct pd_field {
    uint32_t num;
    uint8_t type;
    uint8_t flags;
    const char *json;
    const struct pd_msg *msg;
};

struct pd_msg {
    const char *name;
    const struct pd_field *f;
    size_t n;
};

#define FD(n, t, fl, j, m)                                                                         \
    {                                                                                              \
        (n), (t), (fl), (j), (m)                                                                   \
    }
#define STR(n, j) FD(n, T_STRING, 0, j, NULL)
#define STR_R(n, j) FD(n, T_STRING, F_REQ, j, NULL)
#define STR_P(n, j) FD(n, T_STRING, F_PTR, j, NULL)
#define STRS(n, j) FD(n, T_STRING, F_REP, j, NULL)
#define BOOL(n, j) FD(n, T_BOOL, 0, j, NULL)
#define BOOL_R(n, j) FD(n, T_BOOL, F_REQ, j, NULL)
#define BOOL_P(n, j) FD(n, T_BOOL, F_PTR, j, NULL)
#define I32(n, j) FD(n, T_INT32, 0, j, NULL)
#define I32_R(n, j) FD(n, T_INT32, F_REQ, j, NULL)
#define I32_P(n, j) FD(n, T_INT32, F_PTR, j, NULL)
#define I64(n, j) FD(n, T_INT64, 0, j, NULL)
#define I64_R(n, j) FD(n, T_INT64, F_REQ, j, NULL)
#define I64_P(n, j) FD(n, T_INT64, F_PTR, j, NULL)
#define MSG(n, j, m) FD(n, T_MSG, 0, j, &D_##m)
#define MSG_R(n, j, m) FD(n, T_MSG, F_REQ, j, &D_##m)
#define MSGS(n, j, m) FD(n, T_MSG, F_REP, j, &D_##m)
#define INLINE(n, m) FD(n, T_INLINE, 0, #m, &D_##m)
#define MAP_S(n, j) FD(n, T_STRING, F_MAP, j, NULL)
#define MAP_B(n, j) FD(n, T_BYTES, F_MAP, j, NULL)
#define MAP_Q(n, j) FD(n, T_QUANTITY, F_MAP, j, NULL)
#define MAP_T(n, j) FD(n, T_TIME, F_MAP, j, NULL)
#define TIME(n, j) FD(n, T_TIME, 0, j, NULL)
#define MTIME(n, j) FD(n, T_MICROTIME, 0, j, NULL)
#define QTY(n, j) FD(n, T_QUANTITY, F_PTR, j, NULL)
#define QTY_R(n, j) FD(n, T_QUANTITY, F_REQ, j, NULL)
#define IOS(n, j) FD(n, T_INTORSTR, F_PTR, j, NULL)
#define IOS_R(n, j) FD(n, T_INTORSTR, F_REQ, j, NULL)
#define RAW_R(n, j) FD(n, T_RAWEXT, F_REQ, j, NULL)
#define DESC(m) static const struct pd_msg D_##m = {#m, F_##m, ARRAY_LEN(F_##m)}

/* ---- the special messages ---- */

#define NS_PER_SEC 1000000000LL
#define TIME_MIN (-62167219200LL)     /* 0000-01-01T00:00:00Z */
#define TIME_MAX 253402300799LL       /* 9999-12-31T23:59:59Z */
#define TIME_GO_ZERO (-62135596800LL) /* 0001-01-01T00:00:00Z, Go's zero time (JSON null) */

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
 * Time or MicroTime {1 seconds int64, 2 nanos int32} to RFC 3339 in *out, or NULL for the zero
 * time (an empty message, or Go's zero instant), which Go writes as null. Like metav1.Time's
 * Unmarshal, Time drops the nanoseconds; MicroTime truncates them to microseconds and
 * normalises like time.Unix. Years outside 0..9999 have no RFC 3339 form and are an error.
 */
static int time_decode(const struct pr *r, const struct pr_field *f, bool micro, const char *a,
                       const char *b, json_t **out)
{
    const char *tn = micro ? "MicroTime" : "Time";
    struct pr s;
    struct pr_field e;
    int64_t sec = 0, nsec = 0, days, sod, year;
    unsigned mon, day;
    char txt[64];
    int rc = pr_want(r, f, WT_LEN, a, b);

    if (rc < 0)
        return rc;
    *out = NULL;
    if (f->len == 0)
        return 0;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        if (e.num == 1 || e.num == 2) {
            rc = pr_want(&s, &e, WT_VARINT, tn, e.num == 1 ? "seconds" : "nanos");
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
    nsec = micro ? nsec - nsec % 1000 : 0;
    /* nanos is an int32, so normalising moves seconds by at most 3 either way. */
    if (sec < TIME_MIN - 3 || sec > TIME_MAX + 3)
        goto range;
    sec += nsec / NS_PER_SEC;
    nsec %= NS_PER_SEC;
    if (nsec < 0) {
        nsec += NS_PER_SEC;
        sec--;
    }
    if (sec == TIME_GO_ZERO && nsec == 0)
        return 0;
    if (sec < TIME_MIN || sec > TIME_MAX)
        goto range;
    days = sec / 86400 - (sec % 86400 < 0);
    sod = sec - days * 86400;
    civil_from_days(days, &year, &mon, &day);
    snprintf(txt, sizeof(txt), "%04u-%02u-%02uT%02u:%02u:%02u", (unsigned)year % 10000, mon % 13,
             day % 32, (unsigned)(sod / 3600) % 24, (unsigned)(sod / 60 % 60),
             (unsigned)(sod % 60));
    if (micro)
        snprintf(txt + 19, sizeof(txt) - 19, ".%06uZ", (unsigned)(nsec / 1000) % 1000000);
    else
        snprintf(txt + 19, sizeof(txt) - 19, "Z");
    *out = json_string(txt);
    return *out ? 0 : -ENOMEM;
range:
    return pr_fail_name(r, f->off, "", a, b, " out of range");
}

/* Write v in decimal backwards, ending just before buf[w]; returns the new start. */
static size_t dur_int(char *buf, size_t w, uint64_t v)
{
    if (v == 0) {
        buf[--w] = '0';
        return w;
    }
    while (v > 0) {
        buf[--w] = (char)('0' + v % 10);
        v /= 10;
    }
    return w;
}

/* The fraction v / 10^prec without trailing zeros (and no '.' when it is 0); v's integer part
 * is returned through *v. */
static size_t dur_frac(char *buf, size_t w, uint64_t *v, int prec)
{
    bool print = false;

    for (int i = 0; i < prec; i++) {
        unsigned digit = (unsigned)(*v % 10);

        print = print || digit != 0;
        if (print)
            buf[--w] = (char)('0' + digit);
        *v /= 10;
    }
    if (print)
        buf[--w] = '.';
    return w;
}

void proto__duration_format(int64_t ns, char *out)
{
    char buf[PROTO_DURATION_MAX];
    size_t w = sizeof(buf);
    uint64_t u = ns < 0 ? 0 - (uint64_t)ns : (uint64_t)ns;

    buf[--w] = '\0';
    if (u == 0) {
        memcpy(out, "0s", 3);
        return;
    }
    buf[--w] = 's';
    if (u < (uint64_t)NS_PER_SEC) {
        /* Below a second: the largest of ns, µs, ms that keeps an integer part. */
        int prec;

        if (u < 1000) {
            prec = 0;
            buf[--w] = 'n';
        } else if (u < 1000000) {
            prec = 3;
            buf[--w] = '\xb5'; /* U+00B5 MICRO SIGN, as Go writes it */
            buf[--w] = '\xc2';
        } else {
            prec = 6;
            buf[--w] = 'm';
        }
        w = dur_frac(buf, w, &u, prec);
        w = dur_int(buf, w, u);
    } else {
        w = dur_frac(buf, w, &u, 9);
        w = dur_int(buf, w, u % 60);
        u /= 60;
        if (u > 0) {
            buf[--w] = 'm';
            w = dur_int(buf, w, u % 60);
            u /= 60;
            if (u > 0) {
                buf[--w] = 'h';
                w = dur_int(buf, w, u);
            }
        }
    }
    if (ns < 0)
        buf[--w] = '-';
    memcpy(out, buf + w, sizeof(buf) - w);
}

/* Duration {1 duration int64 nanoseconds} to Go's duration string. */
static int duration_decode(const struct pr *r, const struct pr_field *f, const char *a,
                           const char *b, json_t **out)
{
    struct pr s;
    struct pr_field e;
    int64_t ns = 0;
    char txt[PROTO_DURATION_MAX];
    int rc = pr_want(r, f, WT_LEN, a, b);

    if (rc < 0)
        return rc;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        if (e.num == 1) {
            rc = pr_want(&s, &e, WT_VARINT, "Duration", "duration");
            if (rc < 0)
                return rc;
            ns = (int64_t)e.u;
        }
    }
    if (rc < 0)
        return rc;
    proto__duration_format(ns, txt);
    *out = json_string(txt);
    return *out ? 0 : -ENOMEM;
}

/* Quantity {1 string}: the string as given (kubectl sends the canonical form); "0" if absent. */
static int quantity_decode(const struct pr *r, const struct pr_field *f, const char *a,
                           const char *b, json_t **out)
{
    struct pr s;
    struct pr_field e;
    json_t *v = NULL;
    int rc = pr_want(r, f, WT_LEN, a, b);

    if (rc < 0)
        return rc;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        if (e.num == 1 && (rc = pr_string(&s, &e, "Quantity", "string", &v)) < 0)
            break;
    }
    if (rc == 0 && (!v || json_string_length(v) == 0)) {
        json_decref(v);
        v = json_string("0");
        rc = v ? 0 : -ENOMEM;
    }
    if (rc < 0) {
        json_decref(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* IntOrString {1 type (0 int, 1 string), 2 intVal int32, 3 strVal}: a JSON number or string. */
static int intorstr_decode(const struct pr *r, const struct pr_field *f, const char *a,
                           const char *b, json_t **out)
{
    struct pr s;
    struct pr_field e;
    json_t *str = NULL;
    uint64_t type = 0;
    int32_t ival = 0;
    int rc = pr_want(r, f, WT_LEN, a, b);

    if (rc < 0)
        return rc;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        if (e.num == 1 || e.num == 2) {
            rc = pr_want(&s, &e, WT_VARINT, "IntOrString", e.num == 1 ? "type" : "intVal");
            if (rc < 0)
                break;
            if (e.num == 1)
                type = e.u;
            else
                ival = (int32_t)(uint32_t)e.u;
        } else if (e.num == 3 && (rc = pr_string(&s, &e, "IntOrString", "strVal", &str)) < 0) {
            break;
        }
    }
    if (rc < 0)
        goto out;
    if (type > 1) {
        rc = pr_fail_name(r, f->off, "invalid IntOrString type in ", a, b, "");
        goto out;
    }
    if (type == 0) {
        *out = json_integer(ival);
    } else {
        *out = str ? str : json_string("");
        str = NULL;
    }
    rc = *out ? 0 : -ENOMEM;
out:
    json_decref(str);
    return rc;
}

/* RawExtension {1 raw bytes}: the JSON it carries, or NULL (Go's null) when empty. */
static int rawext_decode(const struct pr *r, const struct pr_field *f, const char *a, const char *b,
                         json_t **out)
{
    struct pr s;
    struct pr_field e;
    const uint8_t *raw = NULL;
    size_t rawlen = 0;
    json_error_t jerr;
    int rc = pr_want(r, f, WT_LEN, a, b);

    if (rc < 0)
        return rc;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        if (e.num == 1) {
            rc = pr_want(&s, &e, WT_LEN, "RawExtension", "raw");
            if (rc < 0)
                return rc;
            raw = e.data;
            rawlen = e.len;
        }
    }
    if (rc < 0)
        return rc;
    *out = NULL;
    if (!rawlen)
        return 0;
    *out = json_loadb((const char *)raw, rawlen, JSON_DECODE_ANY, &jerr);
    if (!*out)
        return pr_fail_name(r, f->off, "invalid JSON in ", a, b, "");
    return 0;
}

/* ---- the generic decoder ---- */

static int msg_decode(const struct pr *r, const struct pd_msg *d, json_t *obj) WUR;

/*
 * One value of type t (m for T_MSG) from field f into *out, named a.b in errors. *out is NULL
 * afterwards for a value Go writes as null (a zero Time, an empty RawExtension).
 */
static int value_decode(const struct pr *r, const struct pr_field *f, unsigned t,
                        const struct pd_msg *m, const char *a, const char *b, json_t **out)
{
    struct pr s;
    json_t *v = NULL;
    int rc;

    switch (t) {
    case T_STRING:
        return pr_string(r, f, a, b, out);
    case T_BYTES:
        rc = pr_want(r, f, WT_LEN, a, b);
        if (rc < 0)
            return rc;
        *out = base64_json(f->data, f->len);
        return *out ? 0 : -ENOMEM;
    case T_BOOL:
    case T_INT32:
    case T_INT64:
        rc = pr_want(r, f, WT_VARINT, a, b);
        if (rc < 0)
            return rc;
        if (t == T_BOOL)
            *out = json_boolean(f->u != 0);
        else if (t == T_INT32)
            *out = json_integer((int32_t)(uint32_t)f->u);
        else
            *out = json_integer((json_int_t)(int64_t)f->u);
        return *out ? 0 : -ENOMEM;
    case T_MSG:
        rc = pr_want(r, f, WT_LEN, a, b);
        if (rc < 0)
            return rc;
        if (!(v = json_object()))
            return -ENOMEM;
        s = pr_sub(r, f);
        rc = msg_decode(&s, m, v);
        if (rc < 0) {
            json_decref(v);
            return rc;
        }
        *out = v;
        return 0;
    case T_TIME:
    case T_MICROTIME:
        return time_decode(r, f, t == T_MICROTIME, a, b, out);
    case T_DURATION:
        return duration_decode(r, f, a, b, out);
    case T_QUANTITY:
        return quantity_decode(r, f, a, b, out);
    case T_INTORSTR:
        return intorstr_decode(r, f, a, b, out);
    case T_RAWEXT:
        return rawext_decode(r, f, a, b, out);
    default:
        return -EINVAL;
    }
}

/* The zero value of type t, as Go writes a field that was never set. */
static int zero_decode(const struct pr *r, unsigned t, const struct pd_msg *m, const char *a,
                       const char *b, json_t **out)
{
    struct pr_field z;

    memset(&z, 0, sizeof(z));
    z.wt = (t == T_BOOL || t == T_INT32 || t == T_INT64) ? WT_VARINT : WT_LEN;
    z.data = r->p;
    z.off = pr_off(r);
    return value_decode(r, &z, t, m, a, b, out);
}

static bool json_zero(const json_t *v)
{
    return (json_is_string(v) && json_string_length(v) == 0) || json_is_false(v) ||
           (json_is_integer(v) && json_integer_value(v) == 0);
}

/* The JSON child key of obj, created as an empty object or array if missing or of another type. */
static json_t *child(json_t *obj, const char *key, bool array)
{
    json_t *c = json_object_get(obj, key);

    if (array ? json_is_array(c) : json_is_object(c))
        return c;
    c = array ? json_array() : json_object();
    if (!c || json_object_set_new(obj, key, c))
        return NULL;
    return c;
}

/*
 * One map entry {1: key string, 2: value} added to the object obj[fd->json] (a repeated key
 * replaces the earlier value, as Go's map assignment does). An absent key or value is the zero
 * value, as in Go.
 */
static int map_entry_decode(const struct pr *r, const struct pr_field *f, const struct pd_msg *d,
                            const struct pd_field *fd, json_t *obj)
{
    struct pr s;
    struct pr_field e;
    json_t *key = NULL, *val = NULL, *map;
    bool have_val = false;
    int rc = pr_want(r, f, WT_LEN, d->name, fd->json);

    if (rc < 0)
        return rc;
    s = pr_sub(r, f);
    while ((rc = pr_next(&s, &e)) > 0) {
        if (e.num == 1) {
            rc = pr_string(&s, &e, "map key", NULL, &key);
        } else if (e.num == 2) {
            json_decref(val);
            val = NULL;
            rc = value_decode(&s, &e, fd->type, fd->msg, "map value", NULL, &val);
            have_val = true;
        }
        if (rc < 0)
            goto out;
    }
    if (rc < 0)
        goto out;
    if (!key && !(key = json_string("")))
        goto nomem;
    if (!have_val && (rc = zero_decode(&s, fd->type, fd->msg, "map value", NULL, &val)) < 0)
        goto out;
    if (!val)
        val = json_null();
    if (!(map = child(obj, fd->json, false)))
        goto nomem;
    rc = json_object_setn_new(map, json_string_value(key), json_string_length(key), val) ? -ENOMEM
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

/* One occurrence of field fd of message d into obj. */
static int field_decode(const struct pr *r, const struct pr_field *f, const struct pd_msg *d,
                        const struct pd_field *fd, json_t *obj)
{
    struct pr s;
    json_t *v = NULL, *c;
    int rc;

    if (fd->flags & F_MAP)
        return map_entry_decode(r, f, d, fd, obj);
    if (fd->type == T_INLINE || (fd->type == T_MSG && !(fd->flags & F_REP))) {
        /* A singular message merges with earlier occurrences, as protobuf specifies. */
        rc = pr_want(r, f, WT_LEN, d->name, fd->json);
        if (rc < 0)
            return rc;
        if (fd->type == T_INLINE)
            c = obj;
        else if (!(c = child(obj, fd->json, false)))
            return -ENOMEM;
        s = pr_sub(r, f);
        return msg_decode(&s, fd->msg, c);
    }
    rc = value_decode(r, f, fd->type, fd->msg, d->name, fd->json, &v);
    if (rc < 0)
        return rc;
    if (fd->flags & F_REP) {
        if (!(c = child(obj, fd->json, true))) {
            json_decref(v);
            return -ENOMEM;
        }
        return json_array_append_new(c, v ? v : json_null()) ? -ENOMEM : 0;
    }
    /* The last occurrence wins; a zero omitempty scalar or a null special leaves the key out. */
    if (!v || (fd->type <= T_INT64 && !(fd->flags & (F_PTR | F_REQ)) && json_zero(v))) {
        json_decref(v);
        json_object_del(obj, fd->json);
        return 0;
    }
    return json_object_set_new(obj, fd->json, v) ? -ENOMEM : 0;
}

/*
 * After each occurrence of message d in obj: add the zero values of absent F_REQ fields and put
 * d's keys in Go's field order (keys d does not know, such as apiVersion, stay first).
 */
static int msg_finish(const struct pr *r, const struct pd_msg *d, json_t *obj)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct pd_field *fd = &d->f[i];
        json_t *v;
        int rc;

        if (fd->type == T_INLINE) {
            rc = msg_finish(r, fd->msg, obj);
            if (rc < 0)
                return rc;
            continue;
        }
        v = json_object_get(obj, fd->json);
        if (v) {
            json_incref(v);
            json_object_del(obj, fd->json);
        } else if ((fd->flags & F_REQ) && !(fd->flags & (F_REP | F_MAP))) {
            rc = zero_decode(r, fd->type, fd->msg, d->name, fd->json, &v);
            if (rc < 0)
                return rc;
        }
        if (v && json_object_set_new(obj, fd->json, v))
            return -ENOMEM;
    }
    return 0;
}

static const struct pd_field *pd_lookup(const struct pd_msg *d, uint32_t num)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->f[i].num == num)
            return &d->f[i];
    }
    return NULL;
}

/* Every field of the message in r into obj, by descriptor d; unknown fields are skipped. */
static int msg_decode(const struct pr *r, const struct pd_msg *d, json_t *obj)
{
    struct pr s = *r;
    struct pr_field f;
    int rc;

    while ((rc = pr_next(&s, &f)) > 0) {
        const struct pd_field *fd = pd_lookup(d, f.num);

        if (fd && (rc = field_decode(&s, &f, d, fd, obj)) < 0)
            return rc;
    }
    if (rc < 0)
        return rc;
    return msg_finish(&s, d, obj);
}

/* ---- meta/v1 ---- */

static const struct pd_field F_OwnerReference[] = {
    STR_R(5, "apiVersion"), STR_R(1, "kind"),        STR_R(3, "name"),
    STR_R(4, "uid"),        BOOL_P(6, "controller"), BOOL_P(7, "blockOwnerDeletion"),
};
DESC(OwnerReference);

/* selfLink (4) is deprecated and ignored; managedFields (17) are the server's to write. */
static const struct pd_field F_ObjectMeta[] = {
    STR(1, "name"),
    STR(2, "generateName"),
    STR(3, "namespace"),
    STR(5, "uid"),
    STR(6, "resourceVersion"),
    I64(7, "generation"),
    TIME(8, "creationTimestamp"),
    TIME(9, "deletionTimestamp"),
    I64_P(10, "deletionGracePeriodSeconds"),
    MAP_S(11, "labels"),
    MAP_S(12, "annotations"),
    MSGS(13, "ownerReferences", OwnerReference),
    STRS(14, "finalizers"),
};
DESC(ObjectMeta);

static const struct pd_field F_LabelSelectorRequirement[] = {
    STR_R(1, "key"),
    STR_R(2, "operator"),
    STRS(3, "values"),
};
DESC(LabelSelectorRequirement);

static const struct pd_field F_FieldSelectorRequirement[] = {
    STR_R(1, "key"),
    STR_R(2, "operator"),
    STRS(3, "values"),
};
DESC(FieldSelectorRequirement);

static const struct pd_field F_LabelSelector[] = {
    MAP_S(1, "matchLabels"),
    MSGS(2, "matchExpressions", LabelSelectorRequirement),
};
DESC(LabelSelector);

static const struct pd_field F_Condition[] = {
    STR_R(1, "type"),
    STR_R(2, "status"),
    I64(3, "observedGeneration"),
    TIME(4, "lastTransitionTime"),
    STR_R(5, "reason"),
    STR_R(6, "message"),
};
DESC(Condition);

/* ---- core/v1 ---- */

static const struct pd_field F_ObjectReference[] = {
    STR(1, "kind"),       STR(2, "namespace"),       STR(3, "name"),      STR(4, "uid"),
    STR(5, "apiVersion"), STR(6, "resourceVersion"), STR(7, "fieldPath"),
};
DESC(ObjectReference);

static const struct pd_field F_LocalObjectReference[] = {
    STR(1, "name"),
};
DESC(LocalObjectReference);

static const struct pd_field F_TypedLocalObjectReference[] = {
    STR_P(1, "apiGroup"),
    STR_R(2, "kind"),
    STR_R(3, "name"),
};
DESC(TypedLocalObjectReference);

static const struct pd_field F_ServiceAccount[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSGS(2, "secrets", ObjectReference),
    MSGS(3, "imagePullSecrets", LocalObjectReference),
    BOOL_P(4, "automountServiceAccountToken"),
};
DESC(ServiceAccount);

static const struct pd_field F_NamespaceSpec[] = {
    STRS(1, "finalizers"),
};
DESC(NamespaceSpec);

static const struct pd_field F_NamespaceCondition[] = {
    STR_R(1, "type"), STR_R(2, "status"), TIME(4, "lastTransitionTime"),
    STR(5, "reason"), STR(6, "message"),
};
DESC(NamespaceCondition);

static const struct pd_field F_NamespaceStatus[] = {
    STR(1, "phase"),
    MSGS(2, "conditions", NamespaceCondition),
};
DESC(NamespaceStatus);

static const struct pd_field F_Namespace[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", NamespaceSpec),
    MSG_R(3, "status", NamespaceStatus),
};
DESC(Namespace);

static const struct pd_field F_ClientIPConfig[] = {
    I32_P(1, "timeoutSeconds"),
};
DESC(ClientIPConfig);

static const struct pd_field F_SessionAffinityConfig[] = {
    MSG(1, "clientIP", ClientIPConfig),
};
DESC(SessionAffinityConfig);

static const struct pd_field F_ServicePort[] = {
    STR(1, "name"),   STR(2, "protocol"),     STR_P(6, "appProtocol"),
    I32_R(3, "port"), IOS_R(4, "targetPort"), I32(5, "nodePort"),
};
DESC(ServicePort);

static const struct pd_field F_ServiceSpec[] = {
    MSGS(1, "ports", ServicePort),
    MAP_S(2, "selector"),
    STR(3, "clusterIP"),
    STRS(18, "clusterIPs"),
    STR(4, "type"),
    STRS(5, "externalIPs"),
    STR(7, "sessionAffinity"),
    STR(8, "loadBalancerIP"),
    STRS(9, "loadBalancerSourceRanges"),
    STR(10, "externalName"),
    STR(11, "externalTrafficPolicy"),
    I32(12, "healthCheckNodePort"),
    BOOL(13, "publishNotReadyAddresses"),
    MSG(14, "sessionAffinityConfig", SessionAffinityConfig),
    STRS(19, "ipFamilies"),
    STR_P(17, "ipFamilyPolicy"),
    BOOL_P(20, "allocateLoadBalancerNodePorts"),
    STR_P(21, "loadBalancerClass"),
    STR_P(22, "internalTrafficPolicy"),
    STR_P(23, "trafficDistribution"),
};
DESC(ServiceSpec);

static const struct pd_field F_PortStatus[] = {
    I32_R(1, "port"),
    STR_R(2, "protocol"),
    STR_P(3, "error"),
};
DESC(PortStatus);

static const struct pd_field F_LoadBalancerIngress[] = {
    STR(1, "ip"),
    STR(2, "hostname"),
    STR_P(3, "ipMode"),
    MSGS(4, "ports", PortStatus),
};
DESC(LoadBalancerIngress);

static const struct pd_field F_LoadBalancerStatus[] = {
    MSGS(1, "ingress", LoadBalancerIngress),
};
DESC(LoadBalancerStatus);

static const struct pd_field F_ServiceStatus[] = {
    MSG_R(1, "loadBalancer", LoadBalancerStatus),
    MSGS(2, "conditions", Condition),
};
DESC(ServiceStatus);

static const struct pd_field F_Service[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", ServiceSpec),
    MSG_R(3, "status", ServiceStatus),
};
DESC(Service);

static const struct pd_field F_Secret[] = {
    MSG_R(1, "metadata", ObjectMeta), BOOL_P(5, "immutable"), MAP_B(2, "data"),
    MAP_S(4, "stringData"),           STR(3, "type"),
};
DESC(Secret);

static const struct pd_field F_ConfigMap[] = {
    MSG_R(1, "metadata", ObjectMeta),
    BOOL_P(4, "immutable"),
    MAP_S(2, "data"),
    MAP_B(3, "binaryData"),
};
DESC(ConfigMap);

static const struct pd_field F_ScopedResourceSelectorRequirement[] = {
    STR_R(1, "scopeName"),
    STR_R(2, "operator"),
    STRS(3, "values"),
};
DESC(ScopedResourceSelectorRequirement);

static const struct pd_field F_ScopeSelector[] = {
    MSGS(1, "matchExpressions", ScopedResourceSelectorRequirement),
};
DESC(ScopeSelector);

static const struct pd_field F_ResourceQuotaSpec[] = {
    MAP_Q(1, "hard"),
    STRS(2, "scopes"),
    MSG(3, "scopeSelector", ScopeSelector),
};
DESC(ResourceQuotaSpec);

static const struct pd_field F_ResourceQuotaStatus[] = {
    MAP_Q(1, "hard"),
    MAP_Q(2, "used"),
};
DESC(ResourceQuotaStatus);

static const struct pd_field F_ResourceQuota[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", ResourceQuotaSpec),
    MSG_R(3, "status", ResourceQuotaStatus),
};
DESC(ResourceQuota);

static const struct pd_field F_ContainerPort[] = {
    STR(1, "name"),     I32(2, "hostPort"), I32_R(3, "containerPort"),
    STR(4, "protocol"), STR(5, "hostIP"),
};
DESC(ContainerPort);

static const struct pd_field F_ObjectFieldSelector[] = {
    STR(1, "apiVersion"),
    STR_R(2, "fieldPath"),
};
DESC(ObjectFieldSelector);

static const struct pd_field F_ResourceFieldSelector[] = {
    STR(1, "containerName"),
    STR_R(2, "resource"),
    QTY_R(3, "divisor"),
};
DESC(ResourceFieldSelector);

static const struct pd_field F_ConfigMapKeySelector[] = {
    INLINE(1, LocalObjectReference),
    STR_R(2, "key"),
    BOOL_P(3, "optional"),
};
DESC(ConfigMapKeySelector);

static const struct pd_field F_SecretKeySelector[] = {
    INLINE(1, LocalObjectReference),
    STR_R(2, "key"),
    BOOL_P(3, "optional"),
};
DESC(SecretKeySelector);

static const struct pd_field F_EnvVarSource[] = {
    MSG(1, "fieldRef", ObjectFieldSelector),
    MSG(2, "resourceFieldRef", ResourceFieldSelector),
    MSG(3, "configMapKeyRef", ConfigMapKeySelector),
    MSG(4, "secretKeyRef", SecretKeySelector),
};
DESC(EnvVarSource);

static const struct pd_field F_EnvVar[] = {
    STR_R(1, "name"),
    STR(2, "value"),
    MSG(3, "valueFrom", EnvVarSource),
};
DESC(EnvVar);

static const struct pd_field F_ConfigMapEnvSource[] = {
    INLINE(1, LocalObjectReference),
    BOOL_P(2, "optional"),
};
DESC(ConfigMapEnvSource);

static const struct pd_field F_SecretEnvSource[] = {
    INLINE(1, LocalObjectReference),
    BOOL_P(2, "optional"),
};
DESC(SecretEnvSource);

static const struct pd_field F_EnvFromSource[] = {
    STR(1, "prefix"),
    MSG(2, "configMapRef", ConfigMapEnvSource),
    MSG(3, "secretRef", SecretEnvSource),
};
DESC(EnvFromSource);

static const struct pd_field F_ResourceClaim[] = {
    STR_R(1, "name"),
    STR(2, "request"),
};
DESC(ResourceClaim);

static const struct pd_field F_ResourceRequirements[] = {
    MAP_Q(1, "limits"),
    MAP_Q(2, "requests"),
    MSGS(3, "claims", ResourceClaim),
};
DESC(ResourceRequirements);

static const struct pd_field F_ContainerResizePolicy[] = {
    STR_R(1, "resourceName"),
    STR_R(2, "restartPolicy"),
};
DESC(ContainerResizePolicy);

static const struct pd_field F_VolumeMount[] = {
    STR_R(1, "name"),      BOOL(2, "readOnly"),         STR_P(7, "recursiveReadOnly"),
    STR_R(3, "mountPath"), STR(4, "subPath"),           STR_P(5, "mountPropagation"),
    STR(6, "subPathExpr"), STRS(8, "bindMountOptions"),
};
DESC(VolumeMount);

/* Probes, lifecycle hooks, volume devices and securityContext are not decoded (skipped). */
static const struct pd_field F_Container[] = {
    STR_R(1, "name"),
    STR(2, "image"),
    STRS(3, "command"),
    STRS(4, "args"),
    STR(5, "workingDir"),
    MSGS(6, "ports", ContainerPort),
    MSGS(19, "envFrom", EnvFromSource),
    MSGS(7, "env", EnvVar),
    MSG_R(8, "resources", ResourceRequirements),
    MSGS(23, "resizePolicy", ContainerResizePolicy),
    STR_P(24, "restartPolicy"),
    MSGS(9, "volumeMounts", VolumeMount),
    STR(13, "terminationMessagePath"),
    STR(20, "terminationMessagePolicy"),
    STR(14, "imagePullPolicy"),
    BOOL(16, "stdin"),
    BOOL(17, "stdinOnce"),
    BOOL(18, "tty"),
};
DESC(Container);

static const struct pd_field F_Toleration[] = {
    STR(1, "key"),
    STR(2, "operator"),
    STR(3, "value"),
    STR(4, "effect"),
    I64_P(5, "tolerationSeconds"),
};
DESC(Toleration);

static const struct pd_field F_HostAlias[] = {
    STR_R(1, "ip"),
    STRS(2, "hostnames"),
};
DESC(HostAlias);

static const struct pd_field F_PodDNSConfigOption[] = {
    STR(1, "name"),
    STR_P(2, "value"),
};
DESC(PodDNSConfigOption);

static const struct pd_field F_PodDNSConfig[] = {
    STRS(1, "nameservers"),
    STRS(2, "searches"),
    MSGS(3, "options", PodDNSConfigOption),
};
DESC(PodDNSConfig);

/* Volumes, affinity, securityContext, topology spread, ephemeral containers and the other
 * deeper structures are not decoded (skipped): kubectl's create commands never send them. */
static const struct pd_field F_PodSpec[] = {
    MSGS(20, "initContainers", Container),
    MSGS(2, "containers", Container),
    STR(3, "restartPolicy"),
    I64_P(4, "terminationGracePeriodSeconds"),
    I64_P(5, "activeDeadlineSeconds"),
    STR(6, "dnsPolicy"),
    MAP_S(7, "nodeSelector"),
    STR(8, "serviceAccountName"),
    STR(9, "serviceAccount"),
    BOOL_P(21, "automountServiceAccountToken"),
    STR(10, "nodeName"),
    BOOL(11, "hostNetwork"),
    BOOL(12, "hostPID"),
    BOOL(13, "hostIPC"),
    BOOL_P(27, "shareProcessNamespace"),
    MSGS(15, "imagePullSecrets", LocalObjectReference),
    STR(16, "hostname"),
    STR(17, "subdomain"),
    STR(19, "schedulerName"),
    MSGS(22, "tolerations", Toleration),
    MSGS(23, "hostAliases", HostAlias),
    STR(24, "priorityClassName"),
    I32_P(25, "priority"),
    MSG(26, "dnsConfig", PodDNSConfig),
    STR_P(29, "runtimeClassName"),
    BOOL_P(30, "enableServiceLinks"),
    STR_P(31, "preemptionPolicy"),
    MAP_Q(32, "overhead"),
    BOOL_P(35, "setHostnameAsFQDN"),
    BOOL_P(37, "hostUsers"),
    MSG(40, "resources", ResourceRequirements),
};
DESC(PodSpec);

static const struct pd_field F_PodTemplateSpec[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", PodSpec),
};
DESC(PodTemplateSpec);

/* ---- apps/v1 ---- */

static const struct pd_field F_RollingUpdateDeployment[] = {
    IOS(1, "maxUnavailable"),
    IOS(2, "maxSurge"),
};
DESC(RollingUpdateDeployment);

static const struct pd_field F_DeploymentStrategy[] = {
    STR(1, "type"),
    MSG(2, "rollingUpdate", RollingUpdateDeployment),
};
DESC(DeploymentStrategy);

static const struct pd_field F_DeploymentSpec[] = {
    I32_P(1, "replicas"),
    MSG(2, "selector", LabelSelector),
    MSG_R(3, "template", PodTemplateSpec),
    MSG_R(4, "strategy", DeploymentStrategy),
    I32(5, "minReadySeconds"),
    I32_P(6, "revisionHistoryLimit"),
    BOOL(7, "paused"),
    I32_P(9, "progressDeadlineSeconds"),
};
DESC(DeploymentSpec);

static const struct pd_field F_DeploymentCondition[] = {
    STR_R(1, "type"), STR_R(2, "status"), TIME(6, "lastUpdateTime"), TIME(7, "lastTransitionTime"),
    STR(4, "reason"), STR(5, "message"),
};
DESC(DeploymentCondition);

static const struct pd_field F_DeploymentStatus[] = {
    I64(1, "observedGeneration"),    I32(2, "replicas"),
    I32(3, "updatedReplicas"),       I32(7, "readyReplicas"),
    I32(4, "availableReplicas"),     I32(5, "unavailableReplicas"),
    I32_P(9, "terminatingReplicas"), MSGS(6, "conditions", DeploymentCondition),
    I32_P(8, "collisionCount"),
};
DESC(DeploymentStatus);

static const struct pd_field F_Deployment[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", DeploymentSpec),
    MSG_R(3, "status", DeploymentStatus),
};
DESC(Deployment);

static const struct pd_field F_ControllerRevision[] = {
    MSG_R(1, "metadata", ObjectMeta),
    RAW_R(2, "data"),
    I64_R(3, "revision"),
};
DESC(ControllerRevision);

/* ---- batch/v1 ---- */

/* podFailurePolicy, successPolicy and scheduling are not decoded (skipped). */
static const struct pd_field F_JobSpec[] = {
    I32_P(1, "parallelism"),
    I32_P(2, "completions"),
    I64_P(3, "activeDeadlineSeconds"),
    I32_P(7, "backoffLimit"),
    I32_P(12, "backoffLimitPerIndex"),
    I32_P(13, "maxFailedIndexes"),
    MSG(4, "selector", LabelSelector),
    BOOL_P(5, "manualSelector"),
    MSG_R(6, "template", PodTemplateSpec),
    I32_P(8, "ttlSecondsAfterFinished"),
    STR_P(9, "completionMode"),
    BOOL_P(10, "suspend"),
    STR_P(14, "podReplacementPolicy"),
    STR_P(15, "managedBy"),
};
DESC(JobSpec);

static const struct pd_field F_JobCondition[] = {
    STR_R(1, "type"), STR_R(2, "status"), TIME(3, "lastProbeTime"), TIME(4, "lastTransitionTime"),
    STR(5, "reason"), STR(6, "message"),
};
DESC(JobCondition);

static const struct pd_field F_UncountedTerminatedPods[] = {
    STRS(1, "succeeded"),
    STRS(2, "failed"),
};
DESC(UncountedTerminatedPods);

static const struct pd_field F_JobStatus[] = {
    MSGS(1, "conditions", JobCondition),
    TIME(2, "startTime"),
    TIME(3, "completionTime"),
    I32(4, "active"),
    I32(5, "succeeded"),
    I32(6, "failed"),
    I32_P(11, "terminating"),
    STR(7, "completedIndexes"),
    STR_P(10, "failedIndexes"),
    MSG(8, "uncountedTerminatedPods", UncountedTerminatedPods),
    I32_P(9, "ready"),
};
DESC(JobStatus);

static const struct pd_field F_Job[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", JobSpec),
    MSG_R(3, "status", JobStatus),
};
DESC(Job);

static const struct pd_field F_JobTemplateSpec[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", JobSpec),
};
DESC(JobTemplateSpec);

static const struct pd_field F_CronJobSpec[] = {
    STR_R(1, "schedule"),
    STR_P(8, "timeZone"),
    I64_P(2, "startingDeadlineSeconds"),
    STR(3, "concurrencyPolicy"),
    BOOL_P(4, "suspend"),
    MSG_R(5, "jobTemplate", JobTemplateSpec),
    I32_P(6, "successfulJobsHistoryLimit"),
    I32_P(7, "failedJobsHistoryLimit"),
};
DESC(CronJobSpec);

static const struct pd_field F_CronJobStatus[] = {
    MSGS(1, "active", ObjectReference),
    TIME(4, "lastScheduleTime"),
    TIME(5, "lastSuccessfulTime"),
};
DESC(CronJobStatus);

static const struct pd_field F_CronJob[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", CronJobSpec),
    MSG_R(3, "status", CronJobStatus),
};
DESC(CronJob);

/* ---- rbac.authorization.k8s.io/v1 ---- */

static const struct pd_field F_PolicyRule[] = {
    STRS(1, "verbs"),         STRS(2, "apiGroups"),       STRS(3, "resources"),
    STRS(4, "resourceNames"), STRS(5, "nonResourceURLs"),
};
DESC(PolicyRule);

static const struct pd_field F_AggregationRule[] = {
    MSGS(1, "clusterRoleSelectors", LabelSelector),
};
DESC(AggregationRule);

static const struct pd_field F_Role[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSGS(2, "rules", PolicyRule),
};
DESC(Role);

static const struct pd_field F_ClusterRole[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSGS(2, "rules", PolicyRule),
    MSG(3, "aggregationRule", AggregationRule),
};
DESC(ClusterRole);

static const struct pd_field F_Subject[] = {
    STR_R(1, "kind"),
    STR(2, "apiGroup"),
    STR_R(3, "name"),
    STR(4, "namespace"),
};
DESC(Subject);

static const struct pd_field F_RoleRef[] = {
    STR_R(1, "apiGroup"),
    STR_R(2, "kind"),
    STR_R(3, "name"),
};
DESC(RoleRef);

/* RoleBinding and ClusterRoleBinding share one shape. */
static const struct pd_field F_RoleBinding[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSGS(2, "subjects", Subject),
    MSG_R(3, "roleRef", RoleRef),
};
DESC(RoleBinding);

/* ---- networking.k8s.io/v1 ---- */

static const struct pd_field F_ServiceBackendPort[] = {
    STR(1, "name"),
    I32(2, "number"),
};
DESC(ServiceBackendPort);

static const struct pd_field F_IngressServiceBackend[] = {
    STR_R(1, "name"),
    MSG_R(2, "port", ServiceBackendPort),
};
DESC(IngressServiceBackend);

static const struct pd_field F_IngressBackend[] = {
    MSG(4, "service", IngressServiceBackend),
    MSG(3, "resource", TypedLocalObjectReference),
};
DESC(IngressBackend);

static const struct pd_field F_HTTPIngressPath[] = {
    STR(1, "path"),
    STR_P(3, "pathType"),
    MSG_R(2, "backend", IngressBackend),
};
DESC(HTTPIngressPath);

static const struct pd_field F_HTTPIngressRuleValue[] = {
    MSGS(1, "paths", HTTPIngressPath),
};
DESC(HTTPIngressRuleValue);

static const struct pd_field F_IngressRuleValue[] = {
    MSG(1, "http", HTTPIngressRuleValue),
};
DESC(IngressRuleValue);

static const struct pd_field F_IngressRule[] = {
    STR(1, "host"),
    INLINE(2, IngressRuleValue),
};
DESC(IngressRule);

static const struct pd_field F_IngressTLS[] = {
    STRS(1, "hosts"),
    STR(2, "secretName"),
};
DESC(IngressTLS);

static const struct pd_field F_IngressSpec[] = {
    STR_P(4, "ingressClassName"),
    MSG(1, "defaultBackend", IngressBackend),
    MSGS(2, "tls", IngressTLS),
    MSGS(3, "rules", IngressRule),
};
DESC(IngressSpec);

static const struct pd_field F_IngressPortStatus[] = {
    I32_R(1, "port"),
    STR_R(2, "protocol"),
    STR_P(3, "error"),
};
DESC(IngressPortStatus);

static const struct pd_field F_IngressLoadBalancerIngress[] = {
    STR(1, "ip"),
    STR(2, "hostname"),
    MSGS(4, "ports", IngressPortStatus),
};
DESC(IngressLoadBalancerIngress);

static const struct pd_field F_IngressLoadBalancerStatus[] = {
    MSGS(1, "ingress", IngressLoadBalancerIngress),
};
DESC(IngressLoadBalancerStatus);

static const struct pd_field F_IngressStatus[] = {
    MSG_R(1, "loadBalancer", IngressLoadBalancerStatus),
};
DESC(IngressStatus);

static const struct pd_field F_Ingress[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", IngressSpec),
    MSG_R(3, "status", IngressStatus),
};
DESC(Ingress);

/* ---- policy/v1 ---- */

static const struct pd_field F_PodDisruptionBudgetSpec[] = {
    IOS(1, "minAvailable"),
    MSG(2, "selector", LabelSelector),
    IOS(3, "maxUnavailable"),
    STR_P(4, "unhealthyPodEvictionPolicy"),
};
DESC(PodDisruptionBudgetSpec);

static const struct pd_field F_PodDisruptionBudgetStatus[] = {
    I64(1, "observedGeneration"),     MAP_T(2, "disruptedPods"),  I32_R(3, "disruptionsAllowed"),
    I32_R(4, "currentHealthy"),       I32_R(5, "desiredHealthy"), I32_R(6, "expectedPods"),
    MSGS(7, "conditions", Condition),
};
DESC(PodDisruptionBudgetStatus);

static const struct pd_field F_PodDisruptionBudget[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", PodDisruptionBudgetSpec),
    MSG_R(3, "status", PodDisruptionBudgetStatus),
};
DESC(PodDisruptionBudget);

/* ---- scheduling.k8s.io/v1 ---- */

static const struct pd_field F_PriorityClass[] = {
    MSG_R(1, "metadata", ObjectMeta), I32_R(2, "value"),
    BOOL(3, "globalDefault"),         STR(4, "description"),
    STR_P(5, "preemptionPolicy"),
};
DESC(PriorityClass);

/* ---- authentication.k8s.io/v1 ---- */

static const struct pd_field F_BoundObjectReference[] = {
    STR(1, "kind"),
    STR(2, "apiVersion"),
    STR(3, "name"),
    STR(4, "uid"),
};
DESC(BoundObjectReference);

/* attestations (5) is not decoded (skipped). */
static const struct pd_field F_TokenRequestSpec[] = {
    STRS(1, "audiences"),
    I64_P(4, "expirationSeconds"),
    MSG(3, "boundObjectRef", BoundObjectReference),
};
DESC(TokenRequestSpec);

static const struct pd_field F_TokenRequestStatus[] = {
    STR_R(1, "token"),
    TIME(2, "expirationTimestamp"),
};
DESC(TokenRequestStatus);

static const struct pd_field F_TokenRequest[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", TokenRequestSpec),
    MSG_R(3, "status", TokenRequestStatus),
};
DESC(TokenRequest);

/* extra (4, map<string, ExtraValue>) is not decoded (skipped). */
static const struct pd_field F_UserInfo[] = {
    STR(1, "username"),
    STR(2, "uid"),
    STRS(3, "groups"),
};
DESC(UserInfo);

static const struct pd_field F_SelfSubjectReviewStatus[] = {
    MSG_R(1, "userInfo", UserInfo),
};
DESC(SelfSubjectReviewStatus);

static const struct pd_field F_SelfSubjectReview[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "status", SelfSubjectReviewStatus),
};
DESC(SelfSubjectReview);

/* ---- authorization.k8s.io/v1 ---- */

static const struct pd_field F_FieldSelectorAttributes[] = {
    STR(1, "rawSelector"),
    MSGS(2, "requirements", FieldSelectorRequirement),
};
DESC(FieldSelectorAttributes);

static const struct pd_field F_LabelSelectorAttributes[] = {
    STR(1, "rawSelector"),
    MSGS(2, "requirements", LabelSelectorRequirement),
};
DESC(LabelSelectorAttributes);

static const struct pd_field F_ResourceAttributes[] = {
    STR(1, "namespace"),
    STR(2, "verb"),
    STR(3, "group"),
    STR(4, "version"),
    STR(5, "resource"),
    STR(6, "subresource"),
    STR(7, "name"),
    MSG(8, "fieldSelector", FieldSelectorAttributes),
    MSG(9, "labelSelector", LabelSelectorAttributes),
};
DESC(ResourceAttributes);

static const struct pd_field F_NonResourceAttributes[] = {
    STR(1, "path"),
    STR(2, "verb"),
};
DESC(NonResourceAttributes);

static const struct pd_field F_SelfSubjectAccessReviewSpec[] = {
    MSG(1, "resourceAttributes", ResourceAttributes),
    MSG(2, "nonResourceAttributes", NonResourceAttributes),
};
DESC(SelfSubjectAccessReviewSpec);

static const struct pd_field F_SubjectAccessReviewStatus[] = {
    BOOL_R(1, "allowed"),
    BOOL(4, "denied"),
    STR(2, "reason"),
    STR(3, "evaluationError"),
};
DESC(SubjectAccessReviewStatus);

static const struct pd_field F_SelfSubjectAccessReview[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", SelfSubjectAccessReviewSpec),
    MSG_R(3, "status", SubjectAccessReviewStatus),
};
DESC(SelfSubjectAccessReview);

static const struct pd_field F_SelfSubjectRulesReviewSpec[] = {
    STR(1, "namespace"),
};
DESC(SelfSubjectRulesReviewSpec);

static const struct pd_field F_ResourceRule[] = {
    STRS(1, "verbs"),
    STRS(2, "apiGroups"),
    STRS(3, "resources"),
    STRS(4, "resourceNames"),
};
DESC(ResourceRule);

static const struct pd_field F_NonResourceRule[] = {
    STRS(1, "verbs"),
    STRS(2, "nonResourceURLs"),
};
DESC(NonResourceRule);

static const struct pd_field F_SubjectRulesReviewStatus[] = {
    MSGS(1, "resourceRules", ResourceRule),
    MSGS(2, "nonResourceRules", NonResourceRule),
    BOOL_R(3, "incomplete"),
    STR(4, "evaluationError"),
};
DESC(SubjectRulesReviewStatus);

static const struct pd_field F_SelfSubjectRulesReview[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", SelfSubjectRulesReviewSpec),
    MSG_R(3, "status", SubjectRulesReviewStatus),
};
DESC(SelfSubjectRulesReview);

/* ---- autoscaling/v2 and v1 ---- */

static const struct pd_field F_CrossVersionObjectReference[] = {
    STR_R(1, "kind"),
    STR_R(2, "name"),
    STR(3, "apiVersion"),
};
DESC(CrossVersionObjectReference);

static const struct pd_field F_MetricTarget[] = {
    STR_R(1, "type"),
    QTY(2, "value"),
    QTY(3, "averageValue"),
    I32_P(4, "averageUtilization"),
};
DESC(MetricTarget);

static const struct pd_field F_ResourceMetricSource[] = {
    STR_R(1, "name"),
    MSG_R(2, "target", MetricTarget),
};
DESC(ResourceMetricSource);

static const struct pd_field F_ContainerResourceMetricSource[] = {
    STR_R(1, "name"),
    MSG_R(2, "target", MetricTarget),
    STR_R(3, "container"),
};
DESC(ContainerResourceMetricSource);

/* object, pods and external metric sources are not decoded (skipped). */
static const struct pd_field F_MetricSpec[] = {
    STR_R(1, "type"),
    MSG(4, "resource", ResourceMetricSource),
    MSG(7, "containerResource", ContainerResourceMetricSource),
};
DESC(MetricSpec);

static const struct pd_field F_HPAScalingPolicy[] = {
    STR_R(1, "type"),
    I32_R(2, "value"),
    I32_R(3, "periodSeconds"),
};
DESC(HPAScalingPolicy);

static const struct pd_field F_HPAScalingRules[] = {
    I32_P(3, "stabilizationWindowSeconds"),
    STR_P(1, "selectPolicy"),
    MSGS(2, "policies", HPAScalingPolicy),
    QTY(4, "tolerance"),
};
DESC(HPAScalingRules);

static const struct pd_field F_HorizontalPodAutoscalerBehavior[] = {
    MSG(1, "scaleUp", HPAScalingRules),
    MSG(2, "scaleDown", HPAScalingRules),
};
DESC(HorizontalPodAutoscalerBehavior);

static const struct pd_field F_HPASpecV2[] = {
    MSG_R(1, "scaleTargetRef", CrossVersionObjectReference),
    I32_P(2, "minReplicas"),
    I32_R(3, "maxReplicas"),
    MSGS(4, "metrics", MetricSpec),
    MSG(5, "behavior", HorizontalPodAutoscalerBehavior),
};
DESC(HPASpecV2);

/* currentMetrics and conditions are not decoded (skipped). */
static const struct pd_field F_HPAStatusV2[] = {
    I64_P(1, "observedGeneration"),
    TIME(2, "lastScaleTime"),
    I32(3, "currentReplicas"),
    I32_R(4, "desiredReplicas"),
};
DESC(HPAStatusV2);

static const struct pd_field F_HorizontalPodAutoscalerV2[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", HPASpecV2),
    MSG_R(3, "status", HPAStatusV2),
};
DESC(HorizontalPodAutoscalerV2);

static const struct pd_field F_HPASpecV1[] = {
    MSG_R(1, "scaleTargetRef", CrossVersionObjectReference),
    I32_P(2, "minReplicas"),
    I32_R(3, "maxReplicas"),
    I32_P(4, "targetCPUUtilizationPercentage"),
};
DESC(HPASpecV1);

static const struct pd_field F_HPAStatusV1[] = {
    I64_P(1, "observedGeneration"),
    TIME(2, "lastScaleTime"),
    I32_R(3, "currentReplicas"),
    I32_R(4, "desiredReplicas"),
    I32_P(5, "currentCPUUtilizationPercentage"),
};
DESC(HPAStatusV1);

static const struct pd_field F_HorizontalPodAutoscalerV1[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", HPASpecV1),
    MSG_R(3, "status", HPAStatusV1),
};
DESC(HorizontalPodAutoscalerV1);

/* ---- coordination.k8s.io/v1 ---- */

static const struct pd_field F_LeaseSpec[] = {
    STR_P(1, "holderIdentity"),  I32_P(2, "leaseDurationSeconds"), MTIME(3, "acquireTime"),
    MTIME(4, "renewTime"),       I32_P(5, "leaseTransitions"),     STR_P(6, "strategy"),
    STR_P(7, "preferredHolder"),
};
DESC(LeaseSpec);

static const struct pd_field F_Lease[] = {
    MSG_R(1, "metadata", ObjectMeta),
    MSG_R(2, "spec", LeaseSpec),
};
DESC(Lease);

/* The objects proto_decode accepts, by the envelope's apiVersion and kind. */
static const struct {
    const char *api_version;
    const char *kind;
    const struct pd_msg *msg;
} pd_kinds[] = {
    {"v1", "Secret", &D_Secret},
    {"v1", "ConfigMap", &D_ConfigMap},
    {"v1", "ServiceAccount", &D_ServiceAccount},
    {"v1", "Namespace", &D_Namespace},
    {"v1", "Service", &D_Service},
    {"v1", "ResourceQuota", &D_ResourceQuota},
    {"authentication.k8s.io/v1", "TokenRequest", &D_TokenRequest},
    {"authentication.k8s.io/v1", "SelfSubjectReview", &D_SelfSubjectReview},
    {"authentication.k8s.io/v1beta1", "SelfSubjectReview", &D_SelfSubjectReview},
    {"authentication.k8s.io/v1alpha1", "SelfSubjectReview", &D_SelfSubjectReview},
    {"authorization.k8s.io/v1", "SelfSubjectAccessReview", &D_SelfSubjectAccessReview},
    {"authorization.k8s.io/v1", "SelfSubjectRulesReview", &D_SelfSubjectRulesReview},
    {"apps/v1", "Deployment", &D_Deployment},
    {"apps/v1", "ControllerRevision", &D_ControllerRevision},
    {"batch/v1", "Job", &D_Job},
    {"batch/v1", "CronJob", &D_CronJob},
    {"rbac.authorization.k8s.io/v1", "Role", &D_Role},
    {"rbac.authorization.k8s.io/v1", "ClusterRole", &D_ClusterRole},
    {"rbac.authorization.k8s.io/v1", "RoleBinding", &D_RoleBinding},
    {"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", &D_RoleBinding},
    {"networking.k8s.io/v1", "Ingress", &D_Ingress},
    {"policy/v1", "PodDisruptionBudget", &D_PodDisruptionBudget},
    {"scheduling.k8s.io/v1", "PriorityClass", &D_PriorityClass},
    {"autoscaling/v2", "HorizontalPodAutoscaler", &D_HorizontalPodAutoscalerV2},
    {"autoscaling/v1", "HorizontalPodAutoscaler", &D_HorizontalPodAutoscalerV1},
    {"coordination.k8s.io/v1", "Lease", &D_Lease},
};

int proto_decode(const uint8_t *body, size_t len, json_t **out, char *msg, size_t msglen)
{
    struct pr r = {body, body, body, msg, msglen};
    struct pr_field f;
    json_t *apiv = NULL, *kind = NULL, *enc = NULL, *ctype = NULL, *obj = NULL;
    const struct pd_msg *d = NULL;
    const uint8_t *raw = NULL;
    size_t rawlen = 0;
    int rc;

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

            rc = pr_want(&r, &f, WT_LEN, "Unknown", "typeMeta");
            if (rc < 0)
                goto out;
            s = pr_sub(&r, &f);
            while ((rc = pr_next(&s, &e)) > 0) {
                if (e.num == 1)
                    rc = pr_string(&s, &e, "TypeMeta", "apiVersion", &apiv);
                else if (e.num == 2)
                    rc = pr_string(&s, &e, "TypeMeta", "kind", &kind);
                if (rc < 0)
                    break;
            }
        } else if (f.num == 2) {
            rc = pr_want(&r, &f, WT_LEN, "Unknown", "raw");
            raw = f.data;
            rawlen = f.len;
        } else if (f.num == 3) {
            rc = pr_string(&r, &f, "Unknown", "contentEncoding", &enc);
        } else if (f.num == 4) {
            rc = pr_string(&r, &f, "Unknown", "contentType", &ctype);
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
    for (size_t i = 0; apiv && kind && i < ARRAY_LEN(pd_kinds); i++) {
        if (strcmp(json_string_value(apiv), pd_kinds[i].api_version) == 0 &&
            strcmp(json_string_value(kind), pd_kinds[i].kind) == 0) {
            d = pd_kinds[i].msg;
            break;
        }
    }
    if (!d) {
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
        /* No raw field at all is an empty object. */
        struct pr s = {body, raw ? raw : r.p, raw ? raw + rawlen : r.p, msg, msglen};

        rc = msg_decode(&s, d, obj);
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
