/*
 * validate.c - OpenAPI v3 schema validation with kube-apiserver's wording.
 *
 * Three passes over the object, in the order the real server runs them for custom resources:
 * unknown-field detection and pruning (structural pruning, apiextensions), defaulting
 * (structural defaulting) and validation (kube-openapi's SchemaValidator, whose errors
 * apiextensions turns into field errors in kubeOpenAPIResultToFieldErrors). The validator keeps
 * kube-openapi's order of checks per node (type, anyOf/oneOf/allOf/not, string, format, number,
 * array, enum, object) and its message formats, so the causes read as a real server's do.
 */
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/openapi.h"
#include "tests/kubelite/validate.h"

/* Deeper data than this is reported, not walked (jansson's own parser stops at 2048). */
#define VALIDATE_MAX_DEPTH 512
#define ANNOTATIONS_MAX_BYTES 262144

/* ---- string building with a sticky error ------------------------------------------------- */

struct sb {
    struct buf b;
    int err;
};

static void sb_init(struct sb *s)
{
    buf_init(&s->b);
    s->err = 0;
}

static void sb_add(struct sb *s, const char *p, size_t n)
{
    if (!s->err && buf_append(&s->b, p, n))
        s->err = -ENOMEM;
}

static void sb_puts(struct sb *s, const char *p)
{
    sb_add(s, p, strlen(p));
}

static void sb_printf(struct sb *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void sb_printf(struct sb *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (s->err)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(&s->b, (size_t)n)) {
        s->err = -ENOMEM;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(s->b.p + s->b.len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->b.len += (size_t)n;
}

static const char *sb_str(const struct sb *s)
{
    return s->b.p ? s->b.p : "";
}

static void sb_truncate(struct sb *s, size_t len)
{
    if (s->b.p && len <= s->b.len) {
        s->b.len = len;
        s->b.p[len] = '\0';
    }
}

/* ---- Go-compatible value formatting ------------------------------------------------------ */

/* Decode one UTF-8 sequence at p (n bytes left); returns its length, or 0 when invalid. */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    size_t len, i;
    uint32_t c;

    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if ((p[0] & 0xE0) == 0xC0) {
        len = 2;
        c = p[0] & 0x1F;
    } else if ((p[0] & 0xF0) == 0xE0) {
        len = 3;
        c = p[0] & 0x0F;
    } else if ((p[0] & 0xF8) == 0xF0) {
        len = 4;
        c = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
        c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

/* Number of runes as Go's utf8.RuneCountInString counts them (a bad byte is one rune). */
static size_t utf8_runes(const char *s, size_t n)
{
    size_t i = 0, count = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        i += l ? l : 1;
        count++;
    }
    return count;
}

/* strconv.Quote: Go's %q of a string. */
static void fmt_go_quote(struct sb *s, const char *str, size_t n)
{
    size_t i = 0;

    sb_add(s, "\"", 1);
    while (i < n) {
        const unsigned char *p = (const unsigned char *)str + i;
        uint32_t cp;
        size_t l = utf8_decode(p, n - i, &cp);

        if (!l) {
            sb_printf(s, "\\x%02x", p[0]);
            i++;
            continue;
        }
        i += l;
        switch (cp) {
        case '"':
            sb_puts(s, "\\\"");
            continue;
        case '\\':
            sb_puts(s, "\\\\");
            continue;
        case '\a':
            sb_puts(s, "\\a");
            continue;
        case '\b':
            sb_puts(s, "\\b");
            continue;
        case '\f':
            sb_puts(s, "\\f");
            continue;
        case '\n':
            sb_puts(s, "\\n");
            continue;
        case '\r':
            sb_puts(s, "\\r");
            continue;
        case '\t':
            sb_puts(s, "\\t");
            continue;
        case '\v':
            sb_puts(s, "\\v");
            continue;
        default:
            break;
        }
        if (cp < 0x20 || cp == 0x7F)
            sb_printf(s, "\\x%02x", (unsigned)cp);
        else if ((cp >= 0x80 && cp < 0xA0) || cp == 0xAD || cp == 0x2028 || cp == 0x2029 ||
                 cp == 0xFEFF)
            sb_printf(s, "\\u%04x", (unsigned)cp);
        else
            sb_add(s, (const char *)p, l);
    }
    sb_add(s, "\"", 1);
}

static void fmt_go_quote_str(struct sb *s, const char *str)
{
    fmt_go_quote(s, str, strlen(str));
}

/* Go's %v of a float64: shortest round-trip digits, %e form when exp < -4 or exp >= 6. */
static void fmt_go_float(struct sb *s, double d)
{
    char tmp[64], digits[32];
    int prec, exp, nd = 0;
    const char *p;

    if (isnan(d)) {
        sb_puts(s, "NaN");
        return;
    }
    if (isinf(d)) {
        sb_puts(s, d > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (d == 0) {
        sb_puts(s, "0");
        return;
    }
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    p = tmp;
    if (*p == '-') {
        sb_add(s, "-", 1);
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < (int)sizeof(digits) - 1)
            digits[nd++] = *p;
    digits[nd] = '\0';
    while (nd > 1 && digits[nd - 1] == '0')
        digits[--nd] = '\0';
    exp = *p == 'e' ? atoi(p + 1) : 0;
    if (exp < -4 || exp >= 6) {
        sb_add(s, digits, 1);
        if (nd > 1) {
            sb_add(s, ".", 1);
            sb_add(s, digits + 1, (size_t)nd - 1);
        }
        sb_printf(s, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp >= 0) {
        for (int i = 0; i <= exp || i < nd; i++) {
            if (i == exp + 1)
                sb_add(s, ".", 1);
            sb_add(s, i < nd ? &digits[i] : "0", 1);
        }
    } else {
        sb_puts(s, "0.");
        for (int i = 0; i < -exp - 1; i++)
            sb_add(s, "0", 1);
        sb_add(s, digits, (size_t)nd);
    }
}

/* encoding/json's rendering of a float64 (enum values in "supported values"). */
static void fmt_json_float(struct sb *s, double d)
{
    if (d == trunc(d) && fabs(d) < 1e21)
        sb_printf(s, "%.0f", d);
    else
        fmt_go_float(s, d);
}

/* Go's %#v of an unstructured value (maps sort their keys). */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void fmt_go_sharp(struct sb *s, const json_t *v, int depth)
{
    size_t i, n;
    const char *key;
    json_t *e;

    if (depth > 32) {
        sb_puts(s, "...");
        return;
    }
    switch (json_typeof(v)) {
    case JSON_STRING:
        fmt_go_quote(s, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        sb_printf(s, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        fmt_go_float(s, json_real_value(v));
        break;
    case JSON_TRUE:
        sb_puts(s, "true");
        break;
    case JSON_FALSE:
        sb_puts(s, "false");
        break;
    case JSON_NULL:
        sb_puts(s, "interface {}(nil)");
        break;
    case JSON_ARRAY:
        sb_puts(s, "[]interface {}{");
        json_array_foreach(v, i, e)
        {
            if (i)
                sb_puts(s, ", ");
            fmt_go_sharp(s, e, depth + 1);
        }
        sb_puts(s, "}");
        break;
    case JSON_OBJECT: {
        const char **keys;
        n = json_object_size(v);
        keys = calloc(n ? n : 1, sizeof(*keys));
        if (!keys) {
            s->err = -ENOMEM;
            return;
        }
        i = 0;
        json_object_foreach((json_t *)v, key, e)
        {
            keys[i++] = key;
        }
        qsort(keys, n, sizeof(*keys), cmp_str);
        sb_puts(s, "map[string]interface {}{");
        for (i = 0; i < n; i++) {
            if (i)
                sb_puts(s, ", ");
            fmt_go_quote_str(s, keys[i]);
            sb_puts(s, ":");
            fmt_go_sharp(s, json_object_get(v, keys[i]), depth + 1);
        }
        sb_puts(s, "}");
        free(keys);
        break;
    }
    }
}

/* field.Error's rendering of a bad value (ErrorBody). */
static void fmt_bad_value(struct sb *s, const json_t *v)
{
    if (!v || json_is_null(v))
        sb_puts(s, "\"null\"");
    else
        fmt_go_sharp(s, v, 0);
}

/* ---- context and causes ------------------------------------------------------------------ */

struct re_entry {
    char *pattern;
    regex_t re;
    int ok;
};

struct vctx {
    const struct openapi *oa;
    json_t *errs;    /* causes found so far */
    json_t *unknown; /* caller's, may be NULL */
    struct re_entry *res;
    size_t nres, capres;
    int rc; /* first hard error (-ENOMEM) */
};

static void ctx_release(struct vctx *c)
{
    for (size_t i = 0; i < c->nres; i++) {
        free(c->res[i].pattern);
        if (c->res[i].ok)
            regfree(&c->res[i].re);
    }
    free(c->res);
    json_decref(c->errs);
}

static json_t *str_new(const char *s)
{
    return json_string_nocheck(s);
}

static void cause_append(json_t *errs, const char *reason, const char *field, const char *msg,
                         int *rc)
{
    json_t *o = json_object();

    if (!o) {
        *rc = -ENOMEM;
        return;
    }
    if (json_object_set_new(o, "reason", str_new(reason)) ||
        json_object_set_new(o, "message", str_new(msg)) ||
        json_object_set_new(o, "field", str_new(field))) {
        json_decref(o);
        *rc = -ENOMEM;
        return;
    }
    if (json_array_append_new(errs, o))
        *rc = -ENOMEM;
}

enum cause_kind { C_INVALID, C_TYPE, C_REQUIRED, C_NOTSUPPORTED, C_TOOLONG, C_TOOMANY };

static const char *const cause_reason[] = {
    "FieldValueInvalid",      "FieldValueTypeInvalid", "FieldValueRequired",
    "FieldValueNotSupported", "FieldValueTooLong",     "FieldValueTooMany",
};
static const char *const cause_word[] = {
    "Invalid value", "Invalid value", "Required value", "Unsupported value", "Too long", "Too many",
};

/*
 * Append a cause for kube-openapi error name (its path): the field is the name without a leading
 * "."; an empty name is the nil root path, which field.Path prints as "<nil>". value is the
 * rendered bad value (NULL: omitted), detail follows it.
 */
static void emit(struct vctx *c, json_t *errs, enum cause_kind kind, const char *name,
                 const char *value, const char *detail)
{
    struct sb msg;
    const char *field = name;

    if (c->rc)
        return;
    if (field[0] == '.')
        field++;
    if (!field[0])
        field = "<nil>";
    sb_init(&msg);
    sb_puts(&msg, cause_word[kind]);
    if (value) {
        sb_puts(&msg, ": ");
        sb_puts(&msg, value);
    }
    if (detail && detail[0]) {
        sb_puts(&msg, ": ");
        sb_puts(&msg, detail);
    }
    if (msg.err)
        c->rc = msg.err;
    else
        cause_append(errs, cause_reason[kind], field, sb_str(&msg), &c->rc);
    buf_release(&msg.b);
}

/* An error kube-openapi reports with a value (Validation.Value) and a message. */
static void emit_v(struct vctx *c, json_t *errs, enum cause_kind kind, const char *name,
                   const json_t *value, const char *fmt, ...) PRINTF_LIKE(6, 7);
static void emit_v(struct vctx *c, json_t *errs, enum cause_kind kind, const char *name,
                   const json_t *value, const char *fmt, ...)
{
    struct sb v, d;
    va_list ap;
    int n;

    sb_init(&v);
    sb_init(&d);
    fmt_bad_value(&v, value);
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(&d.b, (size_t)n)) {
        d.err = -ENOMEM;
    } else {
        va_start(ap, fmt);
        vsnprintf(d.b.p, (size_t)n + 1, fmt, ap);
        va_end(ap);
        d.b.len = (size_t)n;
    }
    if (v.err || d.err)
        c->rc = -ENOMEM;
    else
        emit(c, errs, kind, name, sb_str(&v), sb_str(&d));
    buf_release(&v.b);
    buf_release(&d.b);
}

/* errors.InvalidType: 'NAME in body must be of type T: "ACTUAL"', bad value ACTUAL. */
static void emit_type(struct vctx *c, json_t *errs, const char *name, const char *want,
                      const char *actual)
{
    struct sb q, d;

    sb_init(&q);
    sb_init(&d);
    fmt_go_quote_str(&q, actual);
    sb_printf(&d, "%s in body must be of type %s: %s", name, want, sb_str(&q));
    if (q.err || d.err)
        c->rc = -ENOMEM;
    else
        emit(c, errs, C_TYPE, name, sb_str(&q), sb_str(&d));
    buf_release(&q.b);
    buf_release(&d.b);
}

/* anyOf/oneOf/allOf/not failures are plain errors: apiextensions reports them at the root. */
static void emit_composite(struct vctx *c, json_t *errs, const char *name, const char *what,
                           const char *tail)
{
    struct sb d;

    sb_init(&d);
    fmt_go_quote_str(&d, name);
    sb_printf(&d, " %s%s", what, tail);
    if (d.err)
        c->rc = -ENOMEM;
    else
        emit(c, errs, C_INVALID, "", "\"\"", sb_str(&d));
    buf_release(&d.b);
}

static void errs_extend(struct vctx *c, json_t *dst, json_t *src)
{
    if (!c->rc && json_array_extend(dst, src))
        c->rc = -ENOMEM;
}

/* ---- paths ------------------------------------------------------------------------------- */

/* kube-openapi's child paths: "a.b" (no leading dot at the root), "a[0]", map/required "a.k". */
static char *path_join(struct vctx *c, const char *base, const char *sep, const char *key)
{
    size_t bl = strlen(base), sl = strlen(sep), kl = strlen(key);
    char *p = malloc(bl + sl + kl + 1);

    if (!p) {
        c->rc = -ENOMEM;
        return NULL;
    }
    memcpy(p, base, bl);
    memcpy(p + bl, sep, sl);
    memcpy(p + bl + sl, key, kl + 1);
    return p;
}

static char *path_prop(struct vctx *c, const char *base, const char *key)
{
    return path_join(c, base, base[0] ? "." : "", key);
}

static char *path_item(struct vctx *c, const char *base, size_t i)
{
    char idx[32];
    snprintf(idx, sizeof(idx), "[%zu]", i);
    return path_join(c, base, "", idx);
}

/* ---- schema helpers ---------------------------------------------------------------------- */

static const json_t *resolve(const struct vctx *c, const json_t *raw)
{
    return json_is_object(raw) ? openapi_resolve(c->oa, raw) : NULL;
}

/* A keyword on the wrapper ({"allOf":[{"$ref"}], "default": ...}) wins over the target's. */
static const json_t *kw(const json_t *raw, const json_t *s, const char *key)
{
    const json_t *v = json_object_get(raw, key);
    return v ? v : json_object_get(s, key);
}

static bool is_nullable(const struct vctx *c, const json_t *raw)
{
    return json_is_true(kw(raw, resolve(c, raw), "nullable"));
}

static const json_t *obj_or_null(const json_t *v)
{
    return json_is_object(v) ? v : NULL;
}

static bool is_top_key(const char *k)
{
    return !strcmp(k, "apiVersion") || !strcmp(k, "kind") || !strcmp(k, "metadata");
}

static bool is_int_or_string(const json_t *s)
{
    const char *f = jstr(s, "format");
    return json_is_true(json_object_get(s, "x-kubernetes-int-or-string")) ||
           (f && !strcmp(f, "int-or-string"));
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        break;
    }
    return "null";
}

/* Numeric equality across integer/real (reflect conversion in kube-openapi's enum check). */
static bool value_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    return json_equal(a, b);
}

/* ---- patterns: ECMA-262 subset to POSIX ERE ---------------------------------------------- */

static bool ere_special(int ch)
{
    return ch && strchr(".[]{}()*+?|^$\\", ch) != NULL;
}

static void add_utf8(struct sb *s, uint32_t cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    }
    sb_add(s, u, n);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* A literal escape (\n, \x41, \u00e9, \.): its code point, or -1 when not a literal. */
static long re_escape_literal(const char *p, size_t *used)
{
    int a, b, c4, d;

    *used = 2;
    switch (p[1]) {
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'r':
        return '\r';
    case 'f':
        return '\f';
    case 'v':
        return '\v';
    case 'x':
        a = hexval(p[2]);
        b = a < 0 ? -1 : hexval(p[3]);
        if (a < 0 || b < 0)
            return -1;
        *used = 4;
        return a * 16 + b;
    case 'u':
        a = hexval(p[2]);
        b = a < 0 ? -1 : hexval(p[3]);
        c4 = b < 0 ? -1 : hexval(p[4]);
        d = c4 < 0 ? -1 : hexval(p[5]);
        if (a < 0 || b < 0 || c4 < 0 || d < 0)
            return -1;
        *used = 6;
        return ((a * 16 + b) * 16 + c4) * 16 + d;
    default:
        break;
    }
    if (p[1] && !((p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z') ||
                  (p[1] >= '0' && p[1] <= '9')))
        return (unsigned char)p[1];
    return -1;
}

/* Translate a bracket expression starting after '['; *pp ends after ']'. */
static int re_class(const char **pp, struct sb *out)
{
    const char *p = *pp;
    struct sb items;
    bool neg = false, rbracket = false, dash = false, caret = false;
    int rc = 0;

    sb_init(&items);
    if (*p == '^') {
        neg = true;
        p++;
    }
    while (*p && *p != ']') {
        long lo;
        size_t used = 1;

        if (*p == '\\') {
            const char *cls = NULL;
            switch (p[1]) {
            case 'd':
                cls = "0-9";
                break;
            case 'w':
                cls = "A-Za-z0-9_";
                break;
            case 's':
                cls = "[:space:]";
                break;
            default:
                break;
            }
            if (cls) {
                sb_puts(&items, cls);
                p += 2;
                continue;
            }
            lo = re_escape_literal(p, &used);
            if (lo < 0) {
                rc = -1;
                goto out;
            }
        } else if (*p == '[' && p[1] == ':') {
            rc = -1; /* ECMA has no POSIX classes; a literal "[:" would turn into one */
            goto out;
        } else {
            lo = (unsigned char)*p;
        }
        p += used;
        if (*p == '-' && p[1] && p[1] != ']') {
            long hi;
            p++;
            used = 1;
            if (*p == '\\') {
                hi = re_escape_literal(p, &used);
                if (hi < 0) {
                    rc = -1;
                    goto out;
                }
            } else {
                hi = (unsigned char)*p;
            }
            p += used;
            if (hi < lo || lo == ']' || hi == ']' || lo == '[' || hi == '[' || lo > 0x7F ||
                hi > 0x7F) {
                rc = -1;
                goto out;
            }
            sb_printf(&items, "%c-%c", (int)lo, (int)hi);
            continue;
        }
        if (lo == ']')
            rbracket = true;
        else if (lo == '-')
            dash = true;
        else if (lo == '^')
            caret = true;
        else if (lo > 0x7F)
            add_utf8(&items, (uint32_t)lo);
        else if (lo == '[' && p[0] == ':') {
            rc = -1;
            goto out;
        } else {
            char ch = (char)lo;
            sb_add(&items, &ch, 1);
        }
    }
    if (*p != ']') {
        rc = -1;
        goto out;
    }
    p++;
    if (!neg && !rbracket && !items.b.len && caret && !dash) {
        sb_puts(out, "\\^");
    } else if (!rbracket && !items.b.len && !caret && !dash) {
        rc = -1; /* [] or [^] */
        goto out;
    } else {
        sb_puts(out, neg ? "[^" : "[");
        if (rbracket)
            sb_add(out, "]", 1);
        if (dash && !rbracket && !items.b.len) {
            sb_add(out, "-", 1); /* "-^" keeps ^ off the first position */
            dash = false;
        }
        sb_puts(out, sb_str(&items));
        if (caret)
            sb_add(out, "^", 1);
        if (dash)
            sb_add(out, "-", 1);
        sb_add(out, "]", 1);
    }
    *pp = p;
out:
    buf_release(&items.b);
    if (items.err)
        return items.err;
    return rc;
}

/* Returns 0, -1 for a construct POSIX cannot express, or -ENOMEM. */
static int re_translate(const char *p, struct sb *out)
{
    while (*p) {
        bool quant = false;

        switch (*p) {
        case '\\': {
            const char *cls = NULL;
            size_t used;
            long lit;

            switch (p[1]) {
            case 'd':
                cls = "[0-9]";
                break;
            case 'D':
                cls = "[^0-9]";
                break;
            case 'w':
                cls = "[A-Za-z0-9_]";
                break;
            case 'W':
                cls = "[^A-Za-z0-9_]";
                break;
            case 's':
                cls = "[[:space:]]";
                break;
            case 'S':
                cls = "[^[:space:]]";
                break;
            case 'b':
                cls = "\\b";
                break;
            case 'B':
                cls = "\\B";
                break;
            default:
                break;
            }
            if (cls) {
                sb_puts(out, cls);
                p += 2;
                break;
            }
            lit = re_escape_literal(p, &used);
            if (lit < 0)
                return -1;
            if (lit < 0x80 && ere_special((int)lit)) {
                char e[2] = {'\\', (char)lit};
                sb_add(out, e, 2);
            } else {
                add_utf8(out, (uint32_t)lit);
            }
            p += used;
            break;
        }
        case '[': {
            int rc;
            p++;
            rc = re_class(&p, out);
            if (rc)
                return rc;
            break;
        }
        case '(':
            if (p[1] == '?') {
                if (p[2] == ':') {
                    p += 3;
                } else if ((p[2] == 'P' && p[3] == '<') ||
                           (p[2] == '<' && p[3] != '=' && p[3] != '!')) {
                    const char *gt = strchr(p, '>');
                    if (!gt)
                        return -1;
                    p = gt + 1; /* named group: a plain group for matching */
                } else {
                    return -1; /* lookaround, flags */
                }
            } else {
                p++;
            }
            sb_add(out, "(", 1);
            break;
        case '{':
            if (p[1] >= '0' && p[1] <= '9') {
                const char *end = strchr(p, '}');
                if (!end)
                    return -1;
                sb_add(out, p, (size_t)(end - p) + 1);
                p = end + 1;
                quant = true;
            } else {
                sb_puts(out, "\\{");
                p++;
            }
            break;
        case '}':
            sb_puts(out, "\\}");
            p++;
            break;
        case '*':
        case '+':
        case '?':
            sb_add(out, p, 1);
            p++;
            quant = true;
            break;
        default:
            sb_add(out, p, 1);
            p++;
            break;
        }
        if (quant && *p == '?')
            p++; /* lazy quantifiers match the same strings */
    }
    return out->err;
}

/* The compiled pattern, or NULL when it cannot be expressed (then it is not enforced). */
static const regex_t *re_get(struct vctx *c, const char *pattern)
{
    struct re_entry *e;
    struct sb ere;
    int rc;

    for (size_t i = 0; i < c->nres; i++)
        if (!strcmp(c->res[i].pattern, pattern))
            return c->res[i].ok ? &c->res[i].re : NULL;
    if (c->nres == c->capres) {
        size_t ncap = c->capres ? c->capres * 2 : 8;
        struct re_entry *n = realloc(c->res, ncap * sizeof(*n));
        if (!n) {
            c->rc = -ENOMEM;
            return NULL;
        }
        c->res = n;
        c->capres = ncap;
    }
    e = &c->res[c->nres];
    e->pattern = strdup(pattern);
    if (!e->pattern) {
        c->rc = -ENOMEM;
        return NULL;
    }
    e->ok = 0;
    c->nres++;
    sb_init(&ere);
    rc = re_translate(pattern, &ere);
    if (rc == -ENOMEM)
        c->rc = rc;
    else if (rc == 0 && regcomp(&e->re, sb_str(&ere), REG_EXTENDED | REG_NOSUB) == 0)
        e->ok = 1;
    buf_release(&ere.b);
    return e->ok ? &e->re : NULL;
}

/* ---- formats ----------------------------------------------------------------------------- */

static bool digits_at(const char *s, int n, int *val)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *val = v;
    return true;
}

static bool is_date(const char *s)
{
    int y, m, d;
    return digits_at(s, 4, &y) && s[4] == '-' && digits_at(s + 5, 2, &m) && s[7] == '-' &&
           digits_at(s + 8, 2, &d) && m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

/* RFC 3339 date-time, as strfmt.IsDateTime accepts it. */
static bool is_date_time(const char *s)
{
    int h, mi, se, oh, om;

    if (strlen(s) < 20 || !is_date(s) || (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
        return false;
    s += 11;
    if (!digits_at(s, 2, &h) || s[2] != ':' || !digits_at(s + 3, 2, &mi) || s[5] != ':' ||
        !digits_at(s + 6, 2, &se) || h > 23 || mi > 59 || se > 60)
        return false;
    s += 8;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if ((*s == 'Z' || *s == 'z') && !s[1])
        return true;
    return (*s == '+' || *s == '-') && digits_at(s + 1, 2, &oh) && s[3] == ':' &&
           digits_at(s + 4, 2, &om) && !s[6] && oh < 24 && om < 60;
}

/* base64.StdEncoding (what format "byte" means), newlines ignored as Go's decoder does. */
static bool is_base64(const char *s)
{
    size_t n = 0, pad = 0;

    for (; *s; s++) {
        char ch = *s;
        if (ch == '\r' || ch == '\n')
            continue;
        if (ch == '=') {
            pad++;
        } else if (pad || !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                            (ch >= '0' && ch <= '9') || ch == '+' || ch == '/')) {
            return false;
        }
        n++;
    }
    return n % 4 == 0 && pad <= 2;
}

/* ---- pass 1: unknown fields and pruning -------------------------------------------------- */

static void walk_prune(struct vctx *c, const json_t *raw, json_t *data, struct sb *path, int depth,
                       bool root, bool remove);

static void walk_prune_child(struct vctx *c, const json_t *raw, json_t *v, struct sb *path,
                             const char *sep, const char *key, int depth, bool remove)
{
    size_t len = path->b.len;
    sb_puts(path, sep);
    sb_puts(path, key);
    walk_prune(c, raw, v, path, depth + 1, false, remove);
    sb_truncate(path, len);
}

static void walk_prune(struct vctx *c, const json_t *raw, json_t *data, struct sb *path, int depth,
                       bool root, bool remove)
{
    const json_t *s = resolve(c, raw);

    if (!s || c->rc || depth > VALIDATE_MAX_DEPTH)
        return;
    if (path->err) {
        c->rc = path->err;
        return;
    }
    if (json_is_object(data)) {
        const json_t *props = obj_or_null(json_object_get(s, "properties"));
        const json_t *addl = json_object_get(s, "additionalProperties");
        bool preserve = json_is_true(json_object_get(s, "x-kubernetes-preserve-unknown-fields"));
        bool embedded = json_is_true(json_object_get(s, "x-kubernetes-embedded-resource"));
        const char *key;
        json_t *v;
        void *tmp;

        json_object_foreach_safe(data, tmp, key, v)
        {
            const json_t *ps = json_object_get(props, key);

            if (root && is_top_key(key)) {
                /* The caller owns the top level's metadata; only report its unknown fields. */
                if (ps && !strcmp(key, "metadata"))
                    walk_prune_child(c, ps, v, path, ".", key, depth, false);
                continue;
            }
            if (ps) {
                if (remove && json_is_null(v) && !is_nullable(c, ps) &&
                    !kw(ps, resolve(c, ps), "default")) {
                    /* structural defaulting prunes non-nullable nulls without a default */
                    json_object_del(data, key);
                    continue;
                }
                walk_prune_child(c, ps, v, path, ".", key, depth, remove);
            } else if (json_is_object(addl)) {
                walk_prune_child(c, addl, v, path, ".", key, depth, remove);
            } else if (json_is_true(addl) || preserve || !props || (embedded && is_top_key(key))) {
                continue;
            } else {
                size_t len = path->b.len;
                sb_puts(path, ".");
                sb_puts(path, key);
                if (path->err) {
                    c->rc = path->err;
                    return;
                }
                if (c->unknown && json_array_append_new(c->unknown, str_new(sb_str(path)))) {
                    c->rc = -ENOMEM;
                    return;
                }
                sb_truncate(path, len);
                if (remove)
                    json_object_del(data, key);
            }
        }
    } else if (json_is_array(data)) {
        const json_t *items = json_object_get(s, "items");
        size_t i;
        json_t *v;

        if (!json_is_object(items))
            return;
        json_array_foreach(data, i, v)
        {
            char idx[32];
            snprintf(idx, sizeof(idx), "[%zu]", i);
            walk_prune_child(c, items, v, path, "", idx, depth, remove);
        }
    }
}

/* ---- pass 2: defaults -------------------------------------------------------------------- */

static void walk_defaults(struct vctx *c, const json_t *raw, json_t *data, int depth, bool root)
{
    const json_t *s = resolve(c, raw);

    if (!s || c->rc || depth > VALIDATE_MAX_DEPTH)
        return;
    if (json_is_object(data)) {
        const json_t *props = obj_or_null(json_object_get(s, "properties"));
        const json_t *addl = json_object_get(s, "additionalProperties");
        const char *key;
        json_t *ps, *v;

        json_object_foreach((json_t *)props, key, ps)
        {
            const json_t *d = kw(ps, resolve(c, ps), "default");
            if (!d || (root && is_top_key(key)))
                continue;
            v = json_object_get(data, key);
            if (!v || (json_is_null(v) && !is_nullable(c, ps))) {
                if (json_object_set_new(data, key, json_deep_copy(d))) {
                    c->rc = -ENOMEM;
                    return;
                }
            }
        }
        json_object_foreach(data, key, v)
        {
            const json_t *p = json_object_get(props, key);
            if (root && is_top_key(key))
                continue;
            if (p)
                walk_defaults(c, p, v, depth + 1, false);
            else if (json_is_object(addl))
                walk_defaults(c, addl, v, depth + 1, false);
        }
    } else if (json_is_array(data)) {
        const json_t *items = json_object_get(s, "items");
        const json_t *d = json_is_object(items) ? kw(items, resolve(c, items), "default") : NULL;
        size_t i;
        json_t *v;

        if (!json_is_object(items))
            return;
        for (i = 0; i < json_array_size(data); i++) {
            v = json_array_get(data, i);
            if (d && json_is_null(v) && !is_nullable(c, items)) {
                if (json_array_set_new(data, i, json_deep_copy(d))) {
                    c->rc = -ENOMEM;
                    return;
                }
                v = json_array_get(data, i);
            }
            walk_defaults(c, items, v, depth + 1, false);
        }
    }
}

/* ---- pass 3: validation ------------------------------------------------------------------ */

static void vnode(struct vctx *c, const json_t *raw, const json_t *data, const char *path,
                  json_t *errs, int depth, bool root);

/* Validate data against sub into a fresh list (for anyOf/oneOf/allOf/not). */
static json_t *vsub(struct vctx *c, const json_t *sub, const json_t *data, const char *path,
                    int depth, bool root)
{
    json_t *tmp = json_array();
    if (!tmp) {
        c->rc = -ENOMEM;
        return NULL;
    }
    vnode(c, sub, data, path, tmp, depth + 1, root);
    return tmp;
}

static void v_composite(struct vctx *c, const json_t *s, const json_t *data, const char *path,
                        json_t *errs, int depth, bool root)
{
    const json_t *any = json_object_get(s, "anyOf"), *one = json_object_get(s, "oneOf");
    const json_t *all = json_object_get(s, "allOf"), *not = json_object_get(s, "not");
    size_t i;
    json_t *sub;

    if (json_array_size(any)) {
        json_t *best = NULL;
        bool ok = false;

        json_array_foreach(any, i, sub)
        {
            json_t *r = vsub(c, sub, data, path, depth, root);
            if (!r)
                break;
            if (!json_array_size(r)) {
                ok = true;
                json_decref(r);
                break;
            }
            if (!best || json_array_size(r) < json_array_size(best)) {
                json_decref(best);
                best = r;
            } else {
                json_decref(r);
            }
        }
        if (!ok) {
            emit_composite(c, errs, path, "must validate at least one schema (anyOf)", "");
            if (best)
                errs_extend(c, errs, best);
        }
        json_decref(best);
    }
    if (json_array_size(one)) {
        json_t *best = NULL;
        int valid = 0;

        json_array_foreach(one, i, sub)
        {
            json_t *r = vsub(c, sub, data, path, depth, root);
            if (!r)
                break;
            if (!json_array_size(r)) {
                valid++;
                json_decref(best);
                best = NULL;
            } else if (!valid && (!best || json_array_size(r) < json_array_size(best))) {
                json_decref(best);
                best = json_incref(r);
            }
            json_decref(r);
        }
        if (valid != 1) {
            char tail[64];
            if (valid == 0)
                snprintf(tail, sizeof(tail), ". Found none valid");
            else
                snprintf(tail, sizeof(tail), ". Found %d valid alternatives", valid);
            emit_composite(c, errs, path, "must validate one and only one schema (oneOf)", tail);
            if (best)
                errs_extend(c, errs, best);
        }
        json_decref(best);
    }
    if (json_array_size(all)) {
        size_t valid = 0;

        json_array_foreach(all, i, sub)
        {
            json_t *r = vsub(c, sub, data, path, depth, root);
            if (!r)
                break;
            if (!json_array_size(r))
                valid++;
            errs_extend(c, errs, r);
            json_decref(r);
        }
        if (valid != json_array_size(all))
            emit_composite(c, errs, path, "must validate all the schemas (allOf)",
                           valid ? "" : ". None validated");
    }
    if (json_is_object(not )) {
        json_t *r = vsub(c, not, data, path, depth, root);
        if (r && !json_array_size(r))
            emit_composite(c, errs, path, "must not validate the schema (not)", "");
        json_decref(r);
    }
}

/* typeValidator.Validate, including its quirks with "format". */
static void v_type(struct vctx *c, const json_t *raw, const json_t *s, const json_t *data,
                   const char *path, json_t *errs)
{
    const char *types[4];
    size_t ntypes = 0;
    const json_t *t = json_object_get(s, "type");
    const char *format = jstr_or(s, "format", "");
    const char *st = json_type_name(data);
    const char *df = json_is_integer(data) ? "int64" : json_is_real(data) ? "float64" : "";
    bool has_int = false, has_num = false, contains = false, float_int, int_float;
    char joined[128] = "";

    if (is_int_or_string(s)) {
        types[ntypes++] = "integer";
        types[ntypes++] = "string";
        if (!strcmp(format, "int-or-string"))
            format = "";
    } else if (json_is_string(t)) {
        types[ntypes++] = json_string_value(t);
    } else if (json_is_array(t)) {
        size_t i;
        json_t *e;
        json_array_foreach(t, i, e)
        {
            if (json_is_string(e) && ntypes < ARRAY_LEN(types))
                types[ntypes++] = json_string_value(e);
        }
    }
    if (!ntypes && !format[0])
        return;
    for (size_t i = 0; i < ntypes; i++) {
        has_int |= !strcmp(types[i], "integer");
        has_num |= !strcmp(types[i], "number");
        contains |= !strcmp(types[i], st);
        if (i)
            strncat(joined, ",", sizeof(joined) - strlen(joined) - 1);
        strncat(joined, types[i], sizeof(joined) - strlen(joined) - 1);
    }
    if (json_is_null(data)) {
        if (ntypes && !contains && !is_nullable(c, raw))
            emit_type(c, errs, path, joined, "null");
        return;
    }
    float_int = json_is_real(data) && has_int && isfinite(json_real_value(data)) &&
                json_real_value(data) == trunc(json_real_value(data)) &&
                fabs(json_real_value(data)) <= 9007199254740992.0;
    int_float = json_is_integer(data) && has_num;
    if (!json_is_string(data) && !json_is_array(data) && format[0] &&
        !(contains || !strcmp(df, format) || float_int || int_float)) {
        emit_type(c, errs, path, format, df);
        return;
    }
    if (!(has_num || has_int) && format[0] && (json_is_string(data) || json_is_array(data)))
        return;
    if (!(contains || float_int || int_float))
        emit_type(c, errs, path, joined, st);
}

static void v_string(struct vctx *c, const json_t *s, const json_t *data, const char *path,
                     json_t *errs)
{
    const char *str = json_string_value(data);
    size_t runes = utf8_runes(str, json_string_length(data));
    const json_t *maxl = json_object_get(s, "maxLength"), *minl = json_object_get(s, "minLength");
    const char *pattern = jstr(s, "pattern");

    if (json_is_integer(maxl) && (json_int_t)runes > json_integer_value(maxl)) {
        char d[96];
        json_int_t m = json_integer_value(maxl);
        snprintf(d, sizeof(d), "may not be more than %lld %s", (long long)m,
                 m == 1 ? "byte" : "bytes");
        emit(c, errs, C_TOOLONG, path, NULL, d);
        return;
    }
    if (json_is_integer(minl) && (json_int_t)runes < json_integer_value(minl)) {
        emit_v(c, errs, C_INVALID, path, data, "%s in body should be at least %lld chars long",
               path, (long long)json_integer_value(minl));
        return;
    }
    if (pattern) {
        const regex_t *re = re_get(c, pattern);
        if (re && regexec(re, str, 0, NULL, 0) != 0)
            emit_v(c, errs, C_INVALID, path, data, "%s in body should match '%s'", path, pattern);
    }
}

static void v_format(struct vctx *c, const json_t *s, const json_t *data, const char *path,
                     json_t *errs)
{
    const char *format = jstr(s, "format"), *str = json_string_value(data);
    bool ok = true;

    if (!format)
        return;
    if (!strcmp(format, "date-time") || !strcmp(format, "datetime"))
        ok = is_date_time(str);
    else if (!strcmp(format, "date"))
        ok = strlen(str) == 10 && is_date(str);
    else if (!strcmp(format, "byte"))
        ok = is_base64(str);
    if (!ok) {
        struct sb q;
        sb_init(&q);
        fmt_go_quote_str(&q, str);
        if (q.err)
            c->rc = q.err;
        else
            emit_v(c, errs, C_TYPE, path, data, "%s in body must be of type %s: %s", path, format,
                   sb_str(&q));
        buf_release(&q.b);
    }
}

/* numberValidator: multipleOf, minimum, maximum, with kube-openapi's int/float split. */
static void v_number(struct vctx *c, const json_t *s, const json_t *data, const char *path,
                     json_t *errs)
{
    const json_t *mul = json_object_get(s, "multipleOf");
    const json_t *min = json_object_get(s, "minimum"), *max = json_object_get(s, "maximum");
    bool xmin = json_is_true(json_object_get(s, "exclusiveMinimum"));
    bool xmax = json_is_true(json_object_get(s, "exclusiveMaximum"));
    bool isint = json_is_integer(data);
    long long iv = isint ? (long long)json_integer_value(data) : 0;
    double fv = json_number_value(data);
    struct sb lim;

    sb_init(&lim);
    if (json_is_number(mul) && json_number_value(mul) > 0) {
        double f = json_number_value(mul);
        bool bad;
        sb_truncate(&lim, 0);
        if (isint && (long long)f != 0) {
            bad = iv % (long long)f != 0;
            sb_printf(&lim, "%lld", (long long)f);
        } else {
            double m = f < 1 ? 1 / f * fv : fv / f;
            bad = !(isfinite(m) && m == trunc(m));
            fmt_go_float(&lim, f);
        }
        if (bad && !lim.err)
            emit_v(c, errs, C_INVALID, path, data, "%s in body should be a multiple of %s", path,
                   sb_str(&lim));
    }
    if (json_is_number(min)) {
        double m = json_number_value(min);
        bool bad;
        sb_truncate(&lim, 0);
        if (isint) {
            long long im = (long long)m;
            bad = xmin ? iv <= im : iv < im;
            sb_printf(&lim, "%lld", im);
        } else {
            bad = xmin ? fv <= m : fv < m;
            fmt_go_float(&lim, m);
        }
        if (bad && !lim.err)
            emit_v(c, errs, C_INVALID, path, data, "%s in body should be greater than %s%s", path,
                   xmin ? "" : "or equal to ", sb_str(&lim));
    }
    if (json_is_number(max)) {
        double m = json_number_value(max);
        bool bad;
        sb_truncate(&lim, 0);
        if (isint) {
            long long im = (long long)m;
            bad = xmax ? iv >= im : iv > im;
            sb_printf(&lim, "%lld", im);
        } else {
            bad = xmax ? fv >= m : fv > m;
            fmt_go_float(&lim, m);
        }
        if (bad && !lim.err)
            emit_v(c, errs, C_INVALID, path, data, "%s in body should be less than %s%s", path,
                   xmax ? "" : "or equal to ", sb_str(&lim));
    }
    /* int32 fields: the typed decoder of a real server refuses what does not fit */
    if (isint && !strcmp(jstr_or(s, "format", ""), "int32")) {
        if (iv > INT32_MAX)
            emit_v(c, errs, C_INVALID, path, data,
                   "%s in body should be less than or equal to 2147483647", path);
        else if (iv < INT32_MIN)
            emit_v(c, errs, C_INVALID, path, data,
                   "%s in body should be greater than or equal to -2147483648", path);
    }
    if (lim.err)
        c->rc = lim.err;
    buf_release(&lim.b);
}

static void v_array(struct vctx *c, const json_t *s, const json_t *data, const char *path,
                    json_t *errs, int depth)
{
    const json_t *items = json_object_get(s, "items");
    const json_t *mini = json_object_get(s, "minItems"), *maxi = json_object_get(s, "maxItems");
    size_t n = json_array_size(data), i;
    json_t *v;

    if (json_is_object(items)) {
        json_array_foreach(data, i, v)
        {
            char *p = path_item(c, path, i);
            if (!p)
                return;
            vnode(c, items, v, p, errs, depth + 1, false);
            free(p);
            if (c->rc)
                return;
        }
    }
    if (json_is_integer(mini) && (json_int_t)n < json_integer_value(mini)) {
        json_t *cnt = json_integer((json_int_t)n);
        emit_v(c, errs, C_INVALID, path, cnt, "%s in body should have at least %lld items", path,
               (long long)json_integer_value(mini));
        json_decref(cnt);
    }
    if (json_is_integer(maxi) && (json_int_t)n > json_integer_value(maxi)) {
        char cnt[32], d[64];
        json_int_t m = json_integer_value(maxi);
        snprintf(cnt, sizeof(cnt), "%zu", n);
        snprintf(d, sizeof(d), "must have at most %lld %s", (long long)m,
                 m == 1 ? "item" : "items");
        emit(c, errs, C_TOOMANY, path, cnt, d);
    }
    if (json_is_true(json_object_get(s, "uniqueItems"))) {
        bool dup = false;
        for (i = 0; i < n && !dup; i++)
            for (size_t j = 0; j < i && !dup; j++)
                dup = json_equal(json_array_get(data, i), json_array_get(data, j));
        if (dup) {
            json_t *empty = json_string("");
            emit_v(c, errs, C_INVALID, path, empty, "%s in body shouldn't contain duplicates",
                   path);
            json_decref(empty);
        }
    }
}

/* basicCommonValidator: enum, reported as NotSupported with the allowed values listed. */
static void v_enum(struct vctx *c, const json_t *s, const json_t *data, const char *path,
                   json_t *errs)
{
    const json_t *en = json_object_get(s, "enum");
    struct sb val, d;
    size_t i;
    json_t *e;

    if (!json_array_size(en))
        return;
    if (!json_is_null(data)) {
        json_array_foreach(en, i, e)
        {
            if (value_equal(data, e))
                return;
        }
    }
    sb_init(&val);
    sb_init(&d);
    fmt_bad_value(&val, data);
    sb_puts(&d, "supported values: ");
    json_array_foreach(en, i, e)
    {
        if (i)
            sb_puts(&d, ", ");
        if (json_is_string(e)) {
            fmt_go_quote(&d, json_string_value(e), json_string_length(e));
        } else {
            struct sb js;
            sb_init(&js);
            if (json_is_real(e)) {
                fmt_json_float(&js, json_real_value(e));
            } else {
                char *dump = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
                if (dump)
                    sb_puts(&js, dump);
                else
                    js.err = -ENOMEM;
                free(dump);
            }
            fmt_go_quote_str(&d, sb_str(&js));
            if (js.err)
                d.err = js.err;
            buf_release(&js.b);
        }
    }
    if (val.err || d.err)
        c->rc = -ENOMEM;
    else
        emit(c, errs, C_NOTSUPPORTED, path, sb_str(&val), sb_str(&d));
    buf_release(&val.b);
    buf_release(&d.b);
}

static void v_object(struct vctx *c, const json_t *s, const json_t *data, const char *path,
                     json_t *errs, int depth, bool root)
{
    const json_t *props = obj_or_null(json_object_get(s, "properties"));
    const json_t *addl = json_object_get(s, "additionalProperties");
    const json_t *req = json_object_get(s, "required");
    const json_t *minp = json_object_get(s, "minProperties");
    const json_t *maxp = json_object_get(s, "maxProperties");
    size_t n = json_object_size(data), i;
    const char *key;
    json_t *v, *ps;

    if (json_is_integer(minp) && (json_int_t)n < json_integer_value(minp)) {
        json_t *cnt = json_integer((json_int_t)n);
        emit_v(c, errs, C_INVALID, path, cnt, "%s in body should have at least %lld properties",
               path, (long long)json_integer_value(minp));
        json_decref(cnt);
        return;
    }
    if (json_is_integer(maxp) && (json_int_t)n > json_integer_value(maxp)) {
        char cnt[32], d[64];
        json_int_t m = json_integer_value(maxp);
        snprintf(cnt, sizeof(cnt), "%zu", n);
        snprintf(d, sizeof(d), "must have at most %lld %s", (long long)m,
                 m == 1 ? "item" : "items");
        emit(c, errs, C_TOOMANY, path, cnt, d);
        return;
    }
    json_object_foreach((json_t *)data, key, v)
    {
        if (json_object_get(props, key) || (root && is_top_key(key)))
            continue;
        if (json_is_false(addl)) {
            json_t *k = json_string(key);
            emit_v(c, errs, C_INVALID, path, k, "%s.%s in body is a forbidden property", path, key);
            json_decref(k);
        } else if (json_is_object(addl)) {
            char *p = path_join(c, path, ".", key);
            if (!p)
                return;
            vnode(c, addl, v, p, errs, depth + 1, false);
            free(p);
        }
        if (c->rc)
            return;
    }
    json_object_foreach((json_t *)props, key, ps)
    {
        char *p;
        if (root && is_top_key(key))
            continue;
        v = json_object_get(data, key);
        if (!v)
            continue;
        p = path_prop(c, path, key);
        if (!p)
            return;
        vnode(c, ps, v, p, errs, depth + 1, false);
        free(p);
        if (c->rc)
            return;
    }
    json_array_foreach(req, i, v)
    {
        const char *k = json_string_value(v);
        char *p;
        if (!k || json_object_get(data, k) || (root && is_top_key(k)))
            continue;
        p = path_join(c, path, ".", k);
        if (!p)
            return;
        emit(c, errs, C_REQUIRED, p, NULL, NULL);
        free(p);
    }
    if (json_is_true(json_object_get(s, "x-kubernetes-embedded-resource"))) {
        static const char *const need[] = {"apiVersion", "kind"};
        for (i = 0; i < ARRAY_LEN(need); i++) {
            char *p;
            if (json_object_get(data, need[i]))
                continue;
            p = path_prop(c, path, need[i]);
            if (!p)
                return;
            emit(c, errs, C_REQUIRED, p, NULL, "must not be empty");
            free(p);
        }
    }
}

static void vnode(struct vctx *c, const json_t *raw, const json_t *data, const char *path,
                  json_t *errs, int depth, bool root)
{
    const json_t *s;

    if (c->rc)
        return;
    if (depth > VALIDATE_MAX_DEPTH) {
        char d[64];
        snprintf(d, sizeof(d), "exceeded max depth of %d", VALIDATE_MAX_DEPTH);
        emit(c, errs, C_INVALID, path, "\"\"", d);
        return;
    }
    s = resolve(c, raw);
    if (!s)
        return; /* unresolvable $ref: nothing to check against */
    v_type(c, raw, s, data, path, errs);
    if (json_is_null(data)) {
        v_enum(c, s, data, path, errs);
        return;
    }
    /* the official IntOrString's oneOf only restates the type check above */
    if (strcmp(jstr_or(s, "format", ""), "int-or-string") != 0)
        v_composite(c, s, data, path, errs, depth, root);
    if (json_is_string(data)) {
        v_string(c, s, data, path, errs);
        v_format(c, s, data, path, errs);
    }
    if (json_is_number(data))
        v_number(c, s, data, path, errs);
    if (json_is_array(data))
        v_array(c, s, data, path, errs, depth);
    v_enum(c, s, data, path, errs);
    if (json_is_object(data))
        v_object(c, s, data, path, errs, depth, root);
}

int validate_object(const struct openapi *oa, const json_t *schema, json_t *obj, unsigned flags,
                    json_t *causes, json_t *unknown)
{
    struct vctx c = {.oa = oa, .unknown = unknown};
    struct sb path;
    int rc = 0;

    sb_init(&path);
    if (!obj)
        return -EINVAL;
    c.errs = json_array();
    if (!c.errs) {
        rc = -ENOMEM;
        goto out;
    }
    if (!schema)
        goto out;
    walk_prune(&c, schema, obj, &path, 0, true, (flags & VALIDATE_PRUNE) != 0);
    if (!c.rc && (flags & VALIDATE_DEFAULTS))
        walk_defaults(&c, schema, obj, 0, true);
    if (!c.rc)
        vnode(&c, schema, obj, "", c.errs, 0, true);
    if (c.rc) {
        rc = c.rc;
        goto out;
    }
    if (json_array_size(c.errs)) {
        if (causes && json_array_extend(causes, c.errs)) {
            rc = -ENOMEM;
            goto out;
        }
        rc = ERR_INVALID;
    }
out:
    buf_release(&path.b);
    ctx_release(&c);
    return rc;
}

/* ---- names, labels, annotations ---------------------------------------------------------- */

#define DNS1123_LABEL_FMT "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
#define DNS1123_SUBDOMAIN_FMT DNS1123_LABEL_FMT "(\\." DNS1123_LABEL_FMT ")*"
#define QNAME_FMT "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
#define QNAME_ERR                                                                                  \
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "    \
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "         \
    "validation is '" QNAME_FMT "')"
#define SUBDOMAIN_ERR                                                                              \
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "   \
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "  \
    "for validation is '" DNS1123_SUBDOMAIN_FMT "')"
#define LABEL_ERR                                                                                  \
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "   \
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "     \
    "used for validation is '" DNS1123_LABEL_FMT "')"
#define LABEL_VALUE_ERR                                                                            \
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "    \
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "             \
    "'my_value',  or '12345', regex used for validation is '(" QNAME_FMT ")?')"

static bool is_lower_alnum(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static bool is_alnum(char ch)
{
    return is_lower_alnum(ch) || (ch >= 'A' && ch <= 'Z');
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])? over s[0..n) */
static bool match_label(const char *s, size_t n)
{
    if (!n || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}

static bool match_subdomain(const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!match_label(s + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9] */
static bool match_qname(const char *s, size_t n)
{
    if (!n || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

/* Messages go to a callback so names and metadata keys share the wording. */
typedef void msg_fn(void *arg, const char *msg);

static int subdomain_msgs(const char *v, size_t n, const char *prefix, msg_fn *fn, void *arg)
{
    char m[512];
    int count = 0;
    if (n > 253) {
        snprintf(m, sizeof(m), "%smust be no more than 253 characters", prefix);
        fn(arg, m);
        count++;
    }
    if (!match_subdomain(v, n)) {
        snprintf(m, sizeof(m), "%s%s", prefix, SUBDOMAIN_ERR);
        fn(arg, m);
        count++;
    }
    return count;
}

/* validation.IsQualifiedName */
static int qname_msgs(const char *v, msg_fn *fn, void *arg)
{
    const char *slash = strchr(v, '/'), *name = v;
    int count = 0;

    if (slash && strchr(slash + 1, '/')) {
        fn(arg, "a qualified name " QNAME_ERR " with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')");
        return 1;
    }
    if (slash) {
        if (slash == v) {
            fn(arg, "prefix part must be non-empty");
            count++;
        } else {
            count += subdomain_msgs(v, (size_t)(slash - v), "prefix part ", fn, arg);
        }
        name = slash + 1;
    }
    if (!name[0]) {
        fn(arg, "name part must be non-empty");
        count++;
    } else if (strlen(name) > 63) {
        fn(arg, "name part must be no more than 63 characters");
        count++;
    }
    if (!match_qname(name, strlen(name))) {
        fn(arg, "name part " QNAME_ERR);
        count++;
    }
    return count;
}

/* validation.IsValidLabelValue */
static int label_value_msgs(const char *v, msg_fn *fn, void *arg)
{
    size_t n = strlen(v);
    int count = 0;
    if (n > 63) {
        fn(arg, "must be no more than 63 characters");
        count++;
    }
    if (n && !match_qname(v, n)) {
        fn(arg, LABEL_VALUE_ERR);
        count++;
    }
    return count;
}

struct msg_out {
    char *msg;
    size_t len, used;
};

static void msg_collect(void *arg, const char *m)
{
    struct msg_out *o = arg;
    int n;

    if (!o->msg || !o->len || o->used >= o->len - 1)
        return;
    n = snprintf(o->msg + o->used, o->len - o->used, "%s%s", o->used ? "; " : "", m);
    if (n > 0)
        o->used += (size_t)n < o->len - o->used ? (size_t)n : o->len - o->used - 1;
}

bool validate_name(const char *name, enum validate_name_kind kind, char *msg, size_t msglen)
{
    struct msg_out o = {msg, msglen, 0};
    size_t n = name ? strlen(name) : 0;
    int count = 0;

    if (msg && msglen)
        msg[0] = '\0';
    if (!name)
        name = "";
    switch (kind) {
    case VALIDATE_NAME_SUBDOMAIN:
        count = subdomain_msgs(name, n, "", msg_collect, &o);
        break;
    case VALIDATE_NAME_LABEL:
        if (n > 63) {
            msg_collect(&o, "must be no more than 63 characters");
            count++;
        }
        if (!match_label(name, n)) {
            msg_collect(&o, match_subdomain(name, n) ? "must not contain dots" : LABEL_ERR);
            count++;
        }
        break;
    case VALIDATE_NAME_PATH:
        if (!strcmp(name, ".") || !strcmp(name, "..")) {
            char m[32];
            snprintf(m, sizeof(m), "may not be '%s'", name);
            msg_collect(&o, m);
            count++;
            break;
        }
        if (strchr(name, '/')) {
            msg_collect(&o, "may not contain '/'");
            count++;
        }
        if (strchr(name, '%')) {
            msg_collect(&o, "may not contain '%'");
            count++;
        }
        break;
    }
    return count == 0;
}

struct meta_ctx {
    json_t *causes;
    const char *field;
    const char *value; /* the bad value shown for the next messages */
};

static void meta_emit(void *arg, const char *m)
{
    struct meta_ctx *mc = arg;
    struct sb body;
    int rc = 0;

    sb_init(&body);
    sb_puts(&body, "Invalid value: ");
    fmt_go_quote_str(&body, mc->value);
    sb_puts(&body, ": ");
    sb_puts(&body, m);
    if (!body.err)
        cause_append(mc->causes, "FieldValueInvalid", mc->field, sb_str(&body), &rc);
    buf_release(&body.b);
}

void validate_metadata_maps(const json_t *metadata, json_t *causes)
{
    const json_t *labels = json_object_get(metadata, "labels");
    const json_t *annotations = json_object_get(metadata, "annotations");
    struct meta_ctx mc = {.causes = causes};
    const char *key;
    json_t *v;
    size_t total = 0;

    if (!causes)
        return;
    mc.field = "metadata.labels";
    json_object_foreach((json_t *)labels, key, v)
    {
        mc.value = key;
        qname_msgs(key, meta_emit, &mc);
        if (json_is_string(v)) {
            mc.value = json_string_value(v);
            label_value_msgs(mc.value, meta_emit, &mc);
        }
    }
    mc.field = "metadata.annotations";
    json_object_foreach((json_t *)annotations, key, v)
    {
        /* annotation keys are qualified names, case-insensitively */
        char *lower = strdup(key);
        if (!lower)
            return;
        for (char *p = lower; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        mc.value = key;
        qname_msgs(lower, meta_emit, &mc);
        free(lower);
        total += strlen(key) + json_string_length(v);
    }
    if (total > ANNOTATIONS_MAX_BYTES) {
        int rc = 0;
        char m[96];
        snprintf(m, sizeof(m), "Too long: must have at most %d bytes", ANNOTATIONS_MAX_BYTES);
        cause_append(causes, "FieldValueTooLong", "metadata.annotations", m, &rc);
    }
}
