/*
 * jsonio.c - a JSON reader and writer over jansson values, several times faster than jansson's.
 *
 * Why they are faster: the reader works on the whole buffer at once (jansson reads through a
 * per-character stream with a one-character look-ahead and copies every token into a growing
 * buffer), scans plain ASCII runs in strings with a table, and builds keys and strings straight
 * from the input when they have no escapes. The writer appends to one buffer and detects cycles
 * with a depth limit (jansson keeps a hash table of every container on the path).
 *
 * The rules are jansson's; see jsonio.h. tests/unit/conf_json compares both directions with
 * jansson on many documents.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/jsonio.h"
#include "core/utf8.h"

#define JSONIO_MAX_DEPTH 2048

/* ---- reader ------------------------------------------------------------------------------- */

struct rd {
    const unsigned char *start, *p, *end;
    json_error_t *err;
    int depth;
    struct buf scratch; /* decoded text of strings with escapes */
    bool failed;
};

static void rd_fail(struct rd *r, const unsigned char *at, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Record the first error with its line, column and byte offset. */
static void rd_fail(struct rd *r, const unsigned char *at, const char *fmt, ...)
{
    va_list ap;
    int line = 1, col = 1;

    if (r->failed)
        return;
    r->failed = true;
    if (!r->err)
        return;
    for (const unsigned char *q = r->start; q < at; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    memset(r->err, 0, sizeof(*r->err));
    va_start(ap, fmt);
    vsnprintf(r->err->text, sizeof(r->err->text) - 1, fmt, ap);
    va_end(ap);
    r->err->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_invalid_syntax;
    r->err->line = line;
    r->err->column = col;
    r->err->position = (int)(at - r->start);
    snprintf(r->err->source, sizeof(r->err->source), "<buffer>");
}

static void rd_oom(struct rd *r)
{
    bool first = !r->failed;

    rd_fail(r, r->p, "out of memory");
    /* where jansson keeps the code json_error_code() reads */
    if (first && r->err)
        r->err->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_out_of_memory;
}

static inline void skip_ws(struct rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

/* 1 for bytes that may appear unescaped in a string and need no further check. */
/* clang-format off */
static const unsigned char plain[256] = {
#define P16 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
    /* 0x20 */ [0x20] = 1, 1, 0 /* " */, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 0x30 */ P16,
    /* 0x40 */ P16,
    /* 0x50 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 /* \ */, 1, 1, 1,
    /* 0x60 */ P16,
    /* 0x70 */ P16,
#undef P16
};
/* clang-format on */

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    unsigned v = 0;

    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static int put_utf8(struct buf *b, unsigned cp)
{
    char s[4];
    size_t n;

    if (cp < 0x80) {
        s[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (char)(0xC0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (char)(0xE0 | (cp >> 12));
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        s[0] = (char)(0xF0 | (cp >> 18));
        s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        s[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_append(b, s, n);
}

/*
 * Read the string whose opening quote is at r->p. On success (s, n) is its decoded text: either
 * a span of the input (no escapes) or r->scratch's contents, valid until the next call.
 */
static int read_string(struct rd *r, const char **s, size_t *n)
{
    const unsigned char *q = r->p + 1, *run;
    bool escaped = false;

    for (;;) {
        run = q;
        while (q < r->end && plain[*q])
            q++;
        if (escaped && q > run && buf_append(&r->scratch, run, (size_t)(q - run)) < 0)
            goto oom;
        if (q >= r->end) {
            rd_fail(r, q, "unterminated string");
            return -1;
        }
        if (*q == '"')
            break;
        if (*q >= 0x80) {
            size_t len = utf8_seq_len(q, r->end);

            if (!len) {
                rd_fail(r, q, "invalid UTF-8 byte 0x%02x in a string", *q);
                return -1;
            }
            if (escaped && buf_append(&r->scratch, q, len) < 0)
                goto oom;
            q += len;
            continue;
        }
        if (*q < 0x20) {
            rd_fail(r, q, "control character 0x%02x in a string (it must be escaped)", *q);
            return -1;
        }
        /* a backslash: switch to decoding into scratch */
        if (!escaped) {
            escaped = true;
            buf_reset(&r->scratch);
            if (buf_append(&r->scratch, r->p + 1, (size_t)(q - (r->p + 1))) < 0)
                goto oom;
        }
        if (q + 1 >= r->end) {
            rd_fail(r, q, "unterminated string");
            return -1;
        }
        unsigned char e = q[1];
        char c = 0;
        unsigned cp, lo;

        switch (e) {
        case '"':
        case '\\':
        case '/':
            c = (char)e;
            break;
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'n':
            c = '\n';
            break;
        case 'r':
            c = '\r';
            break;
        case 't':
            c = '\t';
            break;
        case 'u':
            if (hex4(q + 2, r->end, &cp) < 0) {
                rd_fail(r, q, "invalid \\u escape (four hex digits expected)");
                return -1;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (r->end - (q + 6) < 2 || q[6] != '\\' || q[7] != 'u' ||
                    hex4(q + 8, r->end, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    rd_fail(r, q, "unpaired UTF-16 surrogate \\u%04X", cp);
                    return -1;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                q += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                rd_fail(r, q, "unpaired UTF-16 surrogate \\u%04X", cp);
                return -1;
            } else if (cp == 0) {
                rd_fail(r, q, "\\u0000 is not allowed in a string");
                return -1;
            }
            if (put_utf8(&r->scratch, cp) < 0)
                goto oom;
            q += 6;
            continue;
        default:
            rd_fail(r, q, "invalid escape \\%c", e >= 0x20 && e < 0x7F ? e : '?');
            return -1;
        }
        if (buf_append(&r->scratch, &c, 1) < 0)
            goto oom;
        q += 2;
    }
    if (escaped) {
        *s = r->scratch.p;
        *n = r->scratch.len;
    } else {
        *s = (const char *)r->p + 1;
        *n = (size_t)(q - (r->p + 1));
    }
    r->p = q + 1;
    return 0;
oom:
    rd_oom(r);
    return -1;
}

static json_t *read_number(struct rd *r)
{
    const unsigned char *s = r->p, *q = r->p;
    bool neg = false, real = false;
    json_t *v;

    if (*q == '-') {
        neg = true;
        q++;
    }
    if (q >= r->end || *q < '0' || *q > '9') {
        rd_fail(r, s, "invalid number");
        return NULL;
    }
    if (*q == '0') {
        q++;
        if (q < r->end && *q >= '0' && *q <= '9') {
            rd_fail(r, s, "invalid number (leading zero)");
            return NULL;
        }
    } else {
        while (q < r->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < r->end && *q == '.') {
        real = true;
        q++;
        if (q >= r->end || *q < '0' || *q > '9') {
            rd_fail(r, s, "invalid number (digits expected after '.')");
            return NULL;
        }
        while (q < r->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < r->end && (*q == 'e' || *q == 'E')) {
        real = true;
        q++;
        if (q < r->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= r->end || *q < '0' || *q > '9') {
            rd_fail(r, s, "invalid number (digits expected in the exponent)");
            return NULL;
        }
        while (q < r->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (!real) {
        /* magnitude up to 2^63 for a negative number, 2^63 - 1 otherwise */
        uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, m = 0;

        for (const unsigned char *d = s + neg; d < q; d++) {
            unsigned dig = (unsigned)(*d - '0');

            if (m > (lim - dig) / 10) {
                rd_fail(r, s, "integer %s", neg ? "too small" : "too big");
                return NULL;
            }
            m = m * 10 + dig;
        }
        v = json_integer(neg ? (json_int_t)(0 - m) : (json_int_t)m);
    } else {
        char small[64], *t = small;
        size_t len = (size_t)(q - s);
        double d;

        if (len >= sizeof(small) && !(t = malloc(len + 1))) {
            rd_oom(r);
            return NULL;
        }
        memcpy(t, s, len);
        t[len] = '\0';
        errno = 0;
        d = strtod(t, NULL);
        if (t != small)
            free(t);
        if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL)) {
            rd_fail(r, s, "real number overflow");
            return NULL;
        }
        v = json_real(d);
    }
    if (!v)
        rd_oom(r);
    r->p = q;
    return v;
}

static json_t *read_value(struct rd *r);

static json_t *read_object(struct rd *r)
{
    json_t *obj = json_object(), *v;
    const char *key;
    size_t klen;
    char *kcopy;

    if (!obj) {
        rd_oom(r);
        return NULL;
    }
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return obj;
    }
    for (;;) {
        if (r->p >= r->end || *r->p != '"') {
            rd_fail(r, r->p,
                    r->p >= r->end ? "premature end of input in an object"
                                   : "string expected as an object key");
            goto fail;
        }
        if (read_string(r, &key, &klen) < 0)
            goto fail;
        /* the key may live in scratch, which the value's strings reuse */
        kcopy = NULL;
        if (key == r->scratch.p) {
            kcopy = malloc(klen + 1);
            if (!kcopy) {
                rd_oom(r);
                goto fail;
            }
            memcpy(kcopy, key, klen);
            kcopy[klen] = '\0';
            key = kcopy;
        }
        skip_ws(r);
        if (r->p >= r->end || *r->p != ':') {
            rd_fail(r, r->p, "':' expected after an object key");
            free(kcopy);
            goto fail;
        }
        r->p++;
        skip_ws(r);
        v = read_value(r);
        if (!v) {
            free(kcopy);
            goto fail;
        }
        if (json_object_setn_new_nocheck(obj, key, klen, v) < 0) {
            free(kcopy);
            rd_oom(r);
            goto fail;
        }
        free(kcopy);
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            skip_ws(r);
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            return obj;
        }
        rd_fail(r, r->p,
                r->p >= r->end ? "premature end of input in an object"
                               : "',' or '}' expected after an object member");
        goto fail;
    }
fail:
    json_decref(obj);
    return NULL;
}

static json_t *read_array(struct rd *r)
{
    json_t *arr = json_array(), *v;

    if (!arr) {
        rd_oom(r);
        return NULL;
    }
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return arr;
    }
    for (;;) {
        v = read_value(r);
        if (!v)
            goto fail;
        if (json_array_append_new(arr, v) < 0) {
            rd_oom(r);
            goto fail;
        }
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            skip_ws(r);
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return arr;
        }
        rd_fail(r, r->p,
                r->p >= r->end ? "premature end of input in an array"
                               : "',' or ']' expected after an array element");
        goto fail;
    }
fail:
    json_decref(arr);
    return NULL;
}

static json_t *read_literal(struct rd *r, const char *word, json_t *v)
{
    size_t n = strlen(word);

    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) {
        rd_fail(r, r->p, "invalid token");
        return NULL;
    }
    r->p += n;
    return v;
}

/* The value at r->p (whitespace already skipped). */
static json_t *read_value(struct rd *r)
{
    const char *s;
    size_t n;
    json_t *v;

    if (r->p >= r->end) {
        rd_fail(r, r->p, "premature end of input (a value expected)");
        return NULL;
    }
    switch (*r->p) {
    case '{':
    case '[':
        if (++r->depth > JSONIO_MAX_DEPTH) {
            rd_fail(r, r->p, "maximum nesting depth (%d) exceeded", JSONIO_MAX_DEPTH);
            return NULL;
        }
        v = *r->p == '{' ? read_object(r) : read_array(r);
        r->depth--;
        return v;
    case '"':
        if (read_string(r, &s, &n) < 0)
            return NULL;
        v = json_stringn_nocheck(s, n);
        if (!v)
            rd_oom(r);
        return v;
    case 't':
        return read_literal(r, "true", json_true());
    case 'f':
        return read_literal(r, "false", json_false());
    case 'n':
        return read_literal(r, "null", json_null());
    default:
        if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
            return read_number(r);
        if (*r->p >= 0x20 && *r->p < 0x7F)
            rd_fail(r, r->p, "invalid token '%c'", *r->p);
        else
            rd_fail(r, r->p, "invalid byte 0x%02x", *r->p);
        return NULL;
    }
}

json_t *conf_json_loadb(const char *text, size_t len, json_error_t *err)
{
    struct rd r = {0};
    json_t *v = NULL;

    r.start = r.p = (const unsigned char *)(text ? text : "");
    r.end = r.start + (text ? len : 0);
    r.err = err;
    buf_init(&r.scratch);
    skip_ws(&r);
    if (r.p >= r.end || (*r.p != '{' && *r.p != '[')) {
        rd_fail(&r, r.p, "'[' or '{' expected");
        goto out;
    }
    v = read_value(&r);
    if (!v)
        goto out;
    skip_ws(&r);
    if (r.p < r.end) {
        rd_fail(&r, r.p, "end of input expected after the top-level value");
        json_decref(v);
        v = NULL;
    }
out:
    buf_release(&r.scratch);
    return v;
}

/* ---- writer ------------------------------------------------------------------------------- */

/* Escape sequences for the bytes that need one; 0 means the byte is copied. */
static const char *const esc_short[0x20] = {
    ['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t",
};

static int dump_string(const char *str, size_t len, struct buf *out)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len, *run;
    int rc;

    /* most strings need no escapes: room for all of it at once */
    if ((rc = buf_reserve(out, len + 2)) < 0 || (rc = buf_append(out, "\"", 1)) < 0)
        return rc;
    while (s < end) {
        run = s;
        while (s < end && plain[*s])
            s++;
        if (s > run && (rc = buf_append(out, run, (size_t)(s - run))) < 0)
            return rc;
        if (s >= end)
            break;
        if (*s >= 0x80) {
            size_t n = utf8_seq_len(s, end);

            if (!n)
                return ERR_INVALID;
            if ((rc = buf_append(out, s, n)) < 0)
                return rc;
            s += n;
            continue;
        }
        if (*s == '"' || *s == '\\') {
            char e[2] = {'\\', (char)*s};

            rc = buf_append(out, e, 2);
        } else if (esc_short[*s]) {
            rc = buf_append(out, esc_short[*s], 2);
        } else {
            char e[7];

            snprintf(e, sizeof(e), "\\u%04X", *s);
            rc = buf_append(out, e, 6);
        }
        if (rc < 0)
            return rc;
        s++;
    }
    return buf_append(out, "\"", 1);
}

static int dump_real(double d, struct buf *out)
{
    char s[64], *e, *digits, *nz;
    int n = snprintf(s, sizeof(s), "%.17g", d);

    if (n < 0 || (size_t)n >= sizeof(s) - 3 || !isfinite(d))
        return ERR_INVALID;
    /* as jansson: keep it a real when read back, and no "+" or leading zeros in the exponent */
    if (!strchr(s, '.') && !strchr(s, 'e')) {
        memcpy(s + n, ".0", 3);
        n += 2;
    }
    e = strchr(s, 'e');
    if (e) {
        digits = e + 1;
        nz = digits + 1;
        if (*digits == '-')
            digits++;
        while (*nz == '0')
            nz++;
        if (nz != digits) {
            memmove(digits, nz, strlen(nz) + 1);
            n = (int)strlen(s);
        }
    }
    return buf_append(out, s, (size_t)n);
}

static int dump_value(const json_t *v, struct buf *out, int depth)
{
    char num[24];
    int rc, n;

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        bool first = true;

        if (depth >= JSONIO_MAX_DEPTH)
            return ERR_INVALID;
        if ((rc = buf_append(out, "{", 1)) < 0)
            return rc;
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            key = json_object_iter_key(it);
            val = json_object_iter_value(it);
            if (!first && (rc = buf_append(out, ",", 1)) < 0)
                return rc;
            first = false;
            if ((rc = dump_string(key, json_object_iter_key_len(it), out)) < 0 ||
                (rc = buf_append(out, ":", 1)) < 0 || (rc = dump_value(val, out, depth + 1)) < 0)
                return rc;
        }
        return buf_append(out, "}", 1);
    }
    case JSON_ARRAY: {
        size_t len = json_array_size(v);

        if (depth >= JSONIO_MAX_DEPTH)
            return ERR_INVALID;
        if ((rc = buf_append(out, "[", 1)) < 0)
            return rc;
        for (size_t i = 0; i < len; i++) {
            if (i && (rc = buf_append(out, ",", 1)) < 0)
                return rc;
            if ((rc = dump_value(json_array_get(v, i), out, depth + 1)) < 0)
                return rc;
        }
        return buf_append(out, "]", 1);
    }
    case JSON_STRING:
        return dump_string(json_string_value(v), json_string_length(v), out);
    case JSON_INTEGER:
        n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf_append(out, num, (size_t)n);
    case JSON_REAL:
        return dump_real(json_real_value(v), out);
    case JSON_TRUE:
        return buf_append(out, "true", 4);
    case JSON_FALSE:
        return buf_append(out, "false", 5);
    case JSON_NULL:
        return buf_append(out, "null", 4);
    }
    return ERR_INVALID;
}

int conf_json_dump(const json_t *v, struct buf *out)
{
    if (!v)
        return ERR_INVALID;
    return dump_value(v, out, 0);
}

int conf_json_equal(const json_t *a, const json_t *b)
{
    const char *k;
    size_t kl, i;
    json_t *v;

    if (!a || !b)
        return a == b;
    if (json_typeof(a) != json_typeof(b))
        return 0;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (i = 0; i < json_array_size(a); i++)
            if (!conf_json_equal(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        json_object_keylen_foreach((json_t *)a, k, kl, v)
        {
            if (!conf_json_equal(v, json_object_getn(b, k, kl)))
                return 0;
        }
        return 1;
    }
    return json_equal((json_t *)a, (json_t *)b); /* scalars: length-aware for strings */
}
