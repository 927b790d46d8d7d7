/*
 * yamljson.c - YAML to JSON with the typing Kubernetes gets from sigs.k8s.io/yaml (go-yaml v2,
 * YAML 1.1 resolution rules), and JSON back to YAML that reads back as the same JSON.
 *
 * yaml_to_json is driven by libyaml's event parser and builds jansson values bottom-up on an
 * explicit stack (no recursion on input depth). An alias takes a reference to its anchor's
 * value rather than a copy, so memory stays linear; the expanded size and depth of every value
 * are tracked so alias bombs are refused before anything is expanded. A document that shares
 * values through aliases or merges is deep-copied once at its end so callers may mutate it.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "conf/yamljson.h"
#include "core/buf.h"

#define YJ_MAX_NODES 1000000
#define YJ_MAX_DEPTH 1000
#define YJ_TOO_LARGE "yaml: document too large"

#define TAG_PREFIX "tag:yaml.org,2002:"

/* ---- scalar resolution (go-yaml v2 resolve.go) ---- */

enum sk { SK_NULL, SK_BOOL, SK_INT, SK_UINT, SK_FLOAT, SK_STR };

struct scalar {
    enum sk kind;
    bool b;
    int64_t i;
    uint64_t u;
    double d;
};

static bool word_in(const char *s, size_t n, const char *const *words, size_t nwords)
{
    for (size_t i = 0; i < nwords; i++)
        if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0)
            return true;
    return false;
}

static int digit_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    return 99;
}

/* strconv.ParseUint(s, 0, 64): 0 ok, -1 syntax error, -2 out of range. */
static int go_parse_uint(const char *s, size_t n, uint64_t *out)
{
    unsigned base = 10;
    uint64_t v = 0;

    if (n == 0)
        return -1;
    if (s[0] == '0') {
        char p = n >= 3 ? (char)(s[1] | 0x20) : 0;

        base = p == 'b' ? 2 : p == 'o' ? 8 : p == 'x' ? 16 : 8;
        s += (p == 'b' || p == 'o' || p == 'x') ? 2 : 1;
        n -= (p == 'b' || p == 'o' || p == 'x') ? 2 : 1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)digit_val(s[i]);

        if (d >= base)
            return -1;
        if (v > (UINT64_MAX - d) / base)
            return -2;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

/* strconv.ParseInt(s, 0, 64). */
static int go_parse_int(const char *s, size_t n, int64_t *out)
{
    bool neg = false;
    uint64_t u;
    int rc;

    if (n && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        s++;
        n--;
    }
    rc = go_parse_uint(s, n, &u);
    if (rc < 0)
        return rc;
    if (!neg && u > (uint64_t)INT64_MAX)
        return -2;
    if (neg && u > (uint64_t)INT64_MAX + 1)
        return -2;
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

/* ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$ */
static bool yaml_style_float(const char *s, size_t n)
{
    size_t i = 0, d;

    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (i < n && s[i] == '.') {
        i++;
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (i == d)
            return false;
    } else {
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (i == d)
            return false;
        if (i < n && s[i] == '.')
            for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
                ;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (i == d)
            return false;
    }
    return i == n;
}

/* strconv.ParseFloat on text already matching yaml_style_float; false when out of range. */
static bool parse_float(const char *s, size_t n, double *out)
{
    char stackbuf[64], *p = n < sizeof(stackbuf) ? stackbuf : malloc(n + 1);
    double d;

    if (!p)
        return false; /* read as a string; the caller cannot fail here */
    memcpy(p, s, n);
    p[n] = '\0';
    d = strtod(p, NULL);
    if (p != stackbuf)
        free(p);
    if (isinf(d))
        return false;
    *out = d;
    return true;
}

/*
 * Resolve a plain (unquoted, untagged) scalar. Returns -ENOMEM or 0 with *sv filled; a string
 * result leaves the text to the caller.
 */
static int resolve_plain(const char *s, size_t n, struct scalar *sv)
{
    static const char *const nulls[] = {"~", "null", "Null", "NULL"};
    static const char *const trues[] = {"y",    "Y",    "yes", "Yes", "YES", "true",
                                        "True", "TRUE", "on",  "On",  "ON"};
    static const char *const falses[] = {"n",     "N",     "no",  "No",  "NO", "false",
                                         "False", "FALSE", "off", "Off", "OFF"};
    static const char *const pinf[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"};
    static const char *const ninf[] = {"-.inf", "-.Inf", "-.INF"};
    static const char *const nans[] = {".nan", ".NaN", ".NAN"};
    char hint;

    memset(sv, 0, sizeof(*sv));
    sv->kind = SK_STR;
    if (n == 0) {
        sv->kind = SK_NULL;
        return 0;
    }
    hint = strchr("yYnNtTfFoO~", s[0]) && s[0] ? 'M'
           : s[0] == '+' || s[0] == '-'        ? 'S'
           : s[0] >= '0' && s[0] <= '9'        ? 'D'
           : s[0] == '.'                       ? '.'
                                               : 0;
    if (!hint)
        return 0;
    if (word_in(s, n, nulls, ARRAY_LEN(nulls))) {
        sv->kind = SK_NULL;
    } else if (word_in(s, n, trues, ARRAY_LEN(trues))) {
        sv->kind = SK_BOOL;
        sv->b = true;
    } else if (word_in(s, n, falses, ARRAY_LEN(falses))) {
        sv->kind = SK_BOOL;
    } else if (word_in(s, n, pinf, ARRAY_LEN(pinf))) {
        sv->kind = SK_FLOAT;
        sv->d = INFINITY;
    } else if (word_in(s, n, ninf, ARRAY_LEN(ninf))) {
        sv->kind = SK_FLOAT;
        sv->d = -INFINITY;
    } else if (word_in(s, n, nans, ARRAY_LEN(nans))) {
        sv->kind = SK_FLOAT;
        sv->d = NAN;
    } else if (hint == '.') {
        if (yaml_style_float(s, n) && parse_float(s, n, &sv->d))
            sv->kind = SK_FLOAT;
    } else if (hint == 'S' || hint == 'D') {
        /* Underscores are dropped before the number parsers see the text. */
        char stackbuf[64], *p = n < sizeof(stackbuf) ? stackbuf : malloc(n + 1);
        size_t m = 0;

        if (!p)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            if (s[i] != '_')
                p[m++] = s[i];
        if (go_parse_int(p, m, &sv->i) == 0)
            sv->kind = SK_INT;
        else if (go_parse_uint(p, m, &sv->u) == 0)
            sv->kind = SK_UINT;
        else if (yaml_style_float(p, m) && parse_float(p, m, &sv->d))
            sv->kind = SK_FLOAT;
        if (p != stackbuf)
            free(p);
    }
    return 0;
}

/* ---- the event-driven builder ---- */

struct anchor {
    json_t *v; /* NULL while the anchored node is still open */
    size_t nodes;
    int height;
};

struct frame {
    json_t *v;     /* the object or array under construction */
    json_t *seen;  /* objects: key -> line it was set on, or 0 when it came from a merge */
    char *anchor;  /* registered when the node ends */
    json_t *key;   /* objects: the pending key (a string) */
    bool have_key; /* a key (or a merge key) awaits its value */
    bool merge;    /* the pending key is "<<" */
    int key_line;
    int line;     /* where the node starts */
    size_t nodes; /* expanded size, this node included */
    int height;   /* 1 for a leaf */
};

struct yj {
    yaml_parser_t parser;
    struct frame *st;
    size_t depth, cap;
    json_t *docs;
    json_t *root;
    bool root_empty;
    bool shared;        /* the current document shares values (aliases, merges) */
    json_t *anchor_idx; /* name -> index into anchors */
    struct anchor *anchors;
    size_t nanchors, capanchors;
    size_t nodes; /* expanded nodes across all documents */
    struct diag *diag;
};

static int yj_fail(struct yj *c, int line, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Record "yaml: line N: <problem>" (no line when line <= 0) and return ERR_PARSE. */
static int yj_fail(struct yj *c, int line, const char *fmt, ...)
{
    char problem[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    if (line > 0)
        diag_set(c->diag, "yaml: line %d: %s", line, problem);
    else
        diag_set(c->diag, "yaml: %s", problem);
    return ERR_PARSE;
}

static int too_large(struct yj *c)
{
    diag_set(c->diag, "%s", YJ_TOO_LARGE);
    return ERR_PARSE;
}

static void anchors_reset(struct yj *c)
{
    for (size_t i = 0; i < c->nanchors; i++)
        json_decref(c->anchors[i].v);
    c->nanchors = 0;
    json_object_clear(c->anchor_idx);
}

/* Define (or redefine) an anchor; v NULL marks it as open. v is borrowed. */
static int anchor_set(struct yj *c, const char *name, json_t *v, size_t nodes, int height)
{
    json_t *idx = json_object_get(c->anchor_idx, name);
    struct anchor *a;

    if (!idx) {
        if (c->nanchors == c->capanchors) {
            size_t ncap = c->capanchors ? c->capanchors * 2 : 16;
            struct anchor *na = realloc(c->anchors, ncap * sizeof(*na));

            if (!na)
                return -ENOMEM;
            c->anchors = na;
            c->capanchors = ncap;
        }
        if (json_object_set_new(c->anchor_idx, name, json_integer((json_int_t)c->nanchors)))
            return -ENOMEM;
        a = &c->anchors[c->nanchors++];
        a->v = NULL;
    } else {
        a = &c->anchors[json_integer_value(idx)];
    }
    json_decref(a->v);
    a->v = json_incref(v);
    a->nodes = nodes;
    a->height = height;
    return 0;
}

static char *fmt_key_float(double d, char *out, size_t n)
{
    float f = (float)d;
    char e[48];
    int p, exp;

    /* strconv.FormatFloat(d, 'g', -1, 32), with sigs.k8s.io/yaml's names for the specials. */
    if (isnan(d)) {
        snprintf(out, n, ".nan");
        return out;
    }
    if (isinf(f)) {
        snprintf(out, n, "%s", f > 0 ? ".inf" : "-.inf");
        return out;
    }
    for (p = 1; p < 9; p++) {
        snprintf(e, sizeof(e), "%.*e", p - 1, (double)f);
        if ((float)strtod(e, NULL) == f)
            break;
    }
    snprintf(e, sizeof(e), "%.*e", p - 1, (double)f);
    exp = atoi(strchr(e, 'e') + 1);
    if (exp < -4 || exp >= 6)
        snprintf(out, n, "%s", e);
    else
        snprintf(out, n, "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, (double)f);
    return out;
}

/* A resolved scalar as a map key (sigs.k8s.io/yaml turns non-string keys into their text). */
static int scalar_key(struct yj *c, const struct scalar *sv, const char *text, size_t len, int line,
                      json_t **out)
{
    char tmp[64];

    switch (sv->kind) {
    case SK_STR:
        *out = json_stringn(text, len);
        break;
    case SK_NULL:
        return yj_fail(c, line, "unsupported map key: null");
    case SK_BOOL:
        *out = json_string(sv->b ? "true" : "false");
        break;
    case SK_INT:
        snprintf(tmp, sizeof(tmp), "%lld", (long long)sv->i);
        *out = json_string(tmp);
        break;
    case SK_UINT:
        snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)sv->u);
        *out = json_string(tmp);
        break;
    case SK_FLOAT:
        *out = json_string(fmt_key_float(sv->d, tmp, sizeof(tmp)));
        break;
    }
    return *out ? 0 : -ENOMEM;
}

/* A finished value (from an alias) as a map key. */
static int value_key(struct yj *c, const json_t *v, int line, json_t **out)
{
    struct scalar sv = {SK_STR, false, 0, 0, 0};

    switch (json_typeof(v)) {
    case JSON_STRING:
        *out = json_stringn(json_string_value(v), json_string_length(v));
        return *out ? 0 : -ENOMEM;
    case JSON_INTEGER:
        sv.kind = SK_INT;
        sv.i = json_integer_value(v);
        break;
    case JSON_REAL:
        sv.kind = SK_FLOAT;
        sv.d = json_real_value(v);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        sv.kind = SK_BOOL;
        sv.b = json_is_true(v);
        break;
    case JSON_NULL:
        sv.kind = SK_NULL;
        break;
    default:
        return yj_fail(c, line, "invalid map key");
    }
    return scalar_key(c, &sv, NULL, 0, line, out);
}

static int merge_one(struct yj *c, struct frame *f, json_t *src)
{
    for (void *it = json_object_iter(src); it; it = json_object_iter_next(src, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);

        /* Keys set explicitly, or by an earlier merge, take precedence. */
        if (json_object_getn(f->seen, k, kl))
            continue;
        if (json_object_setn_new(f->v, k, kl, json_incref(json_object_iter_value(it))) ||
            json_object_setn_new(f->seen, k, kl, json_integer(0)))
            return -ENOMEM;
    }
    (void)c;
    return 0;
}

/* "<<: value" into the open mapping f. */
static int merge(struct yj *c, struct frame *f, json_t *v, int line)
{
    size_t i;
    json_t *e;

    c->shared = true;
    if (json_is_object(v))
        return merge_one(c, f, v);
    if (!json_is_array(v))
        goto bad;
    json_array_foreach(v, i, e)
    {
        if (!json_is_object(e))
            goto bad;
    }
    json_array_foreach(v, i, e)
    {
        int rc = merge_one(c, f, e);

        if (rc < 0)
            return rc;
    }
    return 0;
bad:
    return yj_fail(c, line, "map merge requires map or sequence of maps as the value");
}

/* Set the pending key of f to v (consumed), refusing a key defined earlier in this mapping. */
static int set_member(struct yj *c, struct frame *f, json_t *v)
{
    const char *k = json_string_value(f->key);
    size_t kl = json_string_length(f->key);
    json_t *prev = json_object_getn(f->seen, k, kl);
    int rc = 0;

    if (prev && json_integer_value(prev) > 0) {
        rc = yj_fail(c, f->key_line, "mapping key \"%.*s\" already defined at line %d",
                     kl > 100 ? 100 : (int)kl, k, (int)json_integer_value(prev));
        json_decref(v);
        return rc;
    }
    if (json_object_setn_new(f->v, k, kl, v) ||
        json_object_setn_new(f->seen, k, kl, json_integer(f->key_line)))
        rc = -ENOMEM;
    return rc;
}

/* Hand a finished value (consumed, even on failure) to the open node or the document. */
static int deliver(struct yj *c, json_t *v, size_t nodes, int height, int line)
{
    struct frame *f;
    int rc = 0;

    if (!v)
        return -ENOMEM;
    if (c->depth + (size_t)height > YJ_MAX_DEPTH) {
        json_decref(v);
        return too_large(c);
    }
    if (c->depth == 0) {
        json_decref(c->root);
        c->root = v;
        return 0;
    }
    f = &c->st[c->depth - 1];
    f->nodes += nodes;
    if (height + 1 > f->height)
        f->height = height + 1;
    if (json_is_array(f->v))
        return json_array_append_new(f->v, v) ? -ENOMEM : 0;
    if (!f->have_key) {
        rc = value_key(c, v, line, &f->key);
        json_decref(v);
        f->have_key = rc == 0;
        f->merge = false;
        f->key_line = line;
        return rc;
    }
    if (f->merge) {
        rc = merge(c, f, v, line);
        json_decref(v);
    } else {
        rc = set_member(c, f, v);
    }
    json_decref(f->key);
    f->key = NULL;
    f->have_key = false;
    f->merge = false;
    return rc;
}

static int count_node(struct yj *c, size_t n)
{
    if (n > YJ_MAX_NODES || c->nodes + n > YJ_MAX_NODES)
        return too_large(c);
    c->nodes += n;
    return 0;
}

static const char *short_tag(const char *tag, char *buf, size_t n)
{
    if (strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0)
        snprintf(buf, n, "!!%s", tag + strlen(TAG_PREFIX));
    else
        snprintf(buf, n, "%s", tag);
    return buf;
}

/* A resolved scalar as a JSON value in *out. */
static int scalar_value(struct yj *c, const struct scalar *sv, const char *text, size_t len,
                        int line, json_t **out)
{
    json_t *v = NULL;

    switch (sv->kind) {
    case SK_NULL:
        v = json_null();
        break;
    case SK_BOOL:
        v = json_boolean(sv->b);
        break;
    case SK_INT:
        v = json_integer((json_int_t)sv->i);
        break;
    case SK_UINT:
        v = json_real((double)sv->u);
        break;
    case SK_FLOAT:
        if (!isfinite(sv->d))
            return yj_fail(c, line, "json: unsupported value: %.*s", len > 64 ? 64 : (int)len,
                           text);
        /* encoding/json writes integral floats without a fraction; they read back as ints. */
        if (sv->d == floor(sv->d) && fabs(sv->d) < 9.2e18)
            v = json_integer((json_int_t)sv->d);
        else
            v = json_real(sv->d);
        break;
    case SK_STR:
        v = json_stringn(text, len);
        break;
    }
    if (!v)
        return -ENOMEM;
    *out = v;
    return 0;
}

static int on_scalar(struct yj *c, const yaml_event_t *ev)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *anchor = (const char *)ev->data.scalar.anchor;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    int line = (int)ev->start_mark.line + 1;
    struct frame *f = c->depth ? &c->st[c->depth - 1] : NULL;
    struct scalar sv = {SK_STR, false, 0, 0, 0};
    bool is_merge = false;
    json_t *v = NULL;
    int rc = count_node(c, 1);

    if (rc < 0)
        return rc;
    if (!tag) {
        if (plain)
            rc = resolve_plain(text, len, &sv);
        is_merge = plain && len == 2 && memcmp(text, "<<", 2) == 0;
    } else if (strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0) {
        const char *t = tag + strlen(TAG_PREFIX);
        bool ok = true;

        if (!strcmp(t, "null") || !strcmp(t, "bool") || !strcmp(t, "int") || !strcmp(t, "float")) {
            rc = resolve_plain(text, len, &sv);
            if (!strcmp(t, "null"))
                ok = sv.kind == SK_NULL;
            else if (!strcmp(t, "bool"))
                ok = sv.kind == SK_BOOL;
            else if (!strcmp(t, "int"))
                ok = sv.kind == SK_INT || sv.kind == SK_UINT;
            else if (sv.kind == SK_INT || sv.kind == SK_UINT) { /* !!float takes integers */
                sv.d = sv.kind == SK_INT ? (double)sv.i : (double)sv.u;
                sv.kind = SK_FLOAT;
            } else {
                ok = sv.kind == SK_FLOAT;
            }
        } else if (!strcmp(t, "merge")) {
            is_merge = len == 2 && memcmp(text, "<<", 2) == 0;
            ok = is_merge;
        }
        if (rc == 0 && !ok) {
            static const char *const names[] = {"!!null", "!!bool",  "!!int",
                                                "!!int",  "!!float", "!!str"};
            char b[64];

            return yj_fail(c, line, "cannot decode %s `%.*s` as a %s", names[sv.kind],
                           len > 64 ? 64 : (int)len, text, short_tag(tag, b, sizeof(b)));
        }
        /* !!str, !!binary, !!timestamp and anything else: the text. */
    }
    /* A "!" tag or a local tag ("!foo") leaves the text as a string, as go-yaml does. */
    if (rc < 0)
        return rc;

    if (f && json_is_object(f->v) && !f->have_key) {
        f->nodes += 1;
        if (f->height < 2)
            f->height = 2;
        f->key_line = line;
        f->merge = is_merge;
        f->have_key = true;
        if (is_merge)
            return 0;
        rc = scalar_key(c, &sv, text, len, line, &f->key);
        if (rc == 0 && anchor) {
            /* An alias of it elsewhere gets the value; a non-finite float, the key text. */
            json_t *av = NULL;

            if (scalar_value(c, &sv, text, len, line, &av) < 0)
                av = json_incref(f->key);
            rc = anchor_set(c, anchor, av, 1, 1);
            json_decref(av);
        }
        return rc;
    }

    rc = scalar_value(c, &sv, text, len, line, &v);
    if (rc < 0)
        return rc;
    if (!f)
        c->root_empty = plain && !tag && !anchor && len == 0;
    if (anchor && (rc = anchor_set(c, anchor, v, 1, 1)) < 0) {
        json_decref(v);
        return rc;
    }
    return deliver(c, v, 1, 1, line);
}

static int on_alias(struct yj *c, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    int line = (int)ev->start_mark.line + 1;
    json_t *idx = json_object_get(c->anchor_idx, name);
    struct anchor *a;
    int rc;

    if (!idx)
        return yj_fail(c, line, "unknown anchor '%s' referenced", name);
    a = &c->anchors[json_integer_value(idx)];
    if (!a->v)
        return yj_fail(c, line, "anchor '%s' value contains itself", name);
    rc = count_node(c, a->nodes);
    if (rc < 0)
        return rc;
    c->shared = true;
    if (!c->depth)
        c->root_empty = false;
    return deliver(c, json_incref(a->v), a->nodes, a->height, line);
}

static int on_start(struct yj *c, const yaml_event_t *ev, bool map)
{
    const yaml_char_t *anchor =
        map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    struct frame *f;
    int rc = count_node(c, 1);

    if (rc < 0)
        return rc;
    if (c->depth >= YJ_MAX_DEPTH)
        return too_large(c);
    if (c->depth == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        struct frame *ns = realloc(c->st, ncap * sizeof(*ns));

        if (!ns)
            return -ENOMEM;
        c->st = ns;
        c->cap = ncap;
    }
    f = &c->st[c->depth];
    memset(f, 0, sizeof(*f));
    f->nodes = 1;
    f->height = 1;
    f->line = (int)ev->start_mark.line + 1;
    f->v = map ? json_object() : json_array();
    if (!f->v)
        return -ENOMEM;
    if (map && !(f->seen = json_object())) {
        json_decref(f->v);
        return -ENOMEM;
    }
    c->depth++;
    if (anchor) {
        f->anchor = strdup((const char *)anchor);
        if (!f->anchor)
            return -ENOMEM;
        rc = anchor_set(c, f->anchor, NULL, 0, 0);
    }
    return rc;
}

static void frame_release(struct frame *f)
{
    json_decref(f->v);
    json_decref(f->seen);
    json_decref(f->key);
    free(f->anchor);
}

static int on_end(struct yj *c, const yaml_event_t *ev)
{
    struct frame f;
    int rc = 0;

    if (!c->depth)
        return yj_fail(c, (int)ev->start_mark.line + 1, "unbalanced collection end");
    f = c->st[--c->depth];
    if (f.anchor)
        rc = anchor_set(c, f.anchor, f.v, f.nodes, f.height);
    if (rc == 0) {
        rc = deliver(c, f.v, f.nodes, f.height, f.line);
        f.v = NULL;
    }
    frame_release(&f);
    return rc;
}

static int on_document_end(struct yj *c)
{
    json_t *doc = c->root;
    int rc = 0;

    c->root = NULL;
    if (doc && !c->root_empty) {
        if (c->shared) {
            json_t *copy = json_deep_copy(doc);

            json_decref(doc);
            doc = copy;
            if (!doc)
                return -ENOMEM;
        }
        rc = json_array_append(c->docs, doc) ? -ENOMEM : 0;
    }
    json_decref(doc);
    anchors_reset(c);
    return rc;
}

static int parser_error(struct yj *c)
{
    const yaml_parser_t *p = &c->parser;
    const char *problem = p->problem ? p->problem : "unknown problem parsing YAML content";

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return -ENOMEM;
    case YAML_READER_ERROR:
        return yj_fail(c, 0, "%s", problem);
    default:
        return yj_fail(c, (int)p->problem_mark.line + 1, "%s", problem);
    }
}

int yaml_to_json(const char *text, size_t len, json_t **out, struct diag *diag)
{
    struct yj c;
    yaml_event_t ev;
    bool done = false;
    int rc = 0;

    memset(&c, 0, sizeof(c));
    c.diag = diag;
    if (!yaml_parser_initialize(&c.parser))
        return -ENOMEM;
    c.docs = json_array();
    c.anchor_idx = json_object();
    if (!c.docs || !c.anchor_idx) {
        rc = -ENOMEM;
        goto out;
    }
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)(text ? text : ""),
                                 text ? len : 0);
    while (!done && rc == 0) {
        if (!yaml_parser_parse(&c.parser, &ev)) {
            rc = parser_error(&c);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            c.shared = false;
            c.root_empty = false;
            break;
        case YAML_DOCUMENT_END_EVENT:
            rc = on_document_end(&c);
            break;
        case YAML_ALIAS_EVENT:
            rc = on_alias(&c, &ev);
            break;
        case YAML_SCALAR_EVENT:
            rc = on_scalar(&c, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = on_start(&c, &ev, false);
            break;
        case YAML_MAPPING_START_EVENT:
            rc = on_start(&c, &ev, true);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            rc = on_end(&c, &ev);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    if (rc == 0) {
        *out = c.docs;
        c.docs = NULL;
    }
out:
    while (c.depth)
        frame_release(&c.st[--c.depth]);
    free(c.st);
    json_decref(c.root);
    json_decref(c.docs);
    if (c.anchor_idx)
        anchors_reset(&c);
    json_decref(c.anchor_idx);
    free(c.anchors);
    yaml_parser_delete(&c.parser);
    return rc;
}

/* ---- JSON to YAML ---- */

#define YJ_EMIT_MAX_DEPTH 4096

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
    return buf_append(data, buffer, size) == 0;
}

static int emit(yaml_emitter_t *em, yaml_event_t *ev)
{
    return yaml_emitter_emit(em, ev) ? 0 : -1;
}

/* A string needs quotes when, plain, it would read back as something else. */
static yaml_scalar_style_t string_style(const char *s, size_t n, bool key)
{
    struct scalar sv;

    if (resolve_plain(s, n, &sv) < 0 || sv.kind != SK_STR || (n == 2 && memcmp(s, "<<", 2) == 0))
        return YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    /* libyaml falls back to quoting when a literal block cannot hold the text exactly. */
    if (!key && memchr(s, '\n', n))
        return YAML_LITERAL_SCALAR_STYLE;
    return YAML_ANY_SCALAR_STYLE;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, size_t n, yaml_scalar_style_t style)
{
    yaml_event_t ev;

    if (n > INT32_MAX)
        return -1;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n, 1, 1, style))
        return -1;
    return emit(em, &ev);
}

/* Shortest text that strtod reads back as d, always recognisable as a float. */
static void fmt_real(double d, char *out, size_t n)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(out, n, "%.*g", p, d);
        if (strtod(out, NULL) == d)
            break;
    }
    if (!strpbrk(out, ".e"))
        strncat(out, ".0", n - strlen(out) - 1);
}

static int emit_value(yaml_emitter_t *em, const json_t *v, int depth)
{
    yaml_event_t ev;
    char num[64];

    if (depth > YJ_EMIT_MAX_DEPTH)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            emit(em, &ev) < 0)
            return -1;
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            const char *k = json_object_iter_key(it);
            size_t kl = json_object_iter_key_len(it);

            if (emit_scalar(em, k, kl, string_style(k, kl, true)) < 0 ||
                emit_value(em, json_object_iter_value(it), depth + 1) < 0)
                return -1;
        }
        if (!yaml_mapping_end_event_initialize(&ev))
            return -1;
        return emit(em, &ev);
    case JSON_ARRAY:
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
            emit(em, &ev) < 0)
            return -1;
        for (size_t i = 0; i < json_array_size(v); i++)
            if (emit_value(em, json_array_get(v, i), depth + 1) < 0)
                return -1;
        if (!yaml_sequence_end_event_initialize(&ev))
            return -1;
        return emit(em, &ev);
    case JSON_STRING:
        return emit_scalar(em, json_string_value(v), json_string_length(v),
                           string_style(json_string_value(v), json_string_length(v), false));
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return emit_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
    case JSON_REAL:
        fmt_real(json_real_value(v), num, sizeof(num));
        return emit_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
    case JSON_TRUE:
        return emit_scalar(em, "true", 4, YAML_PLAIN_SCALAR_STYLE);
    case JSON_FALSE:
        return emit_scalar(em, "false", 5, YAML_PLAIN_SCALAR_STYLE);
    case JSON_NULL:
        return emit_scalar(em, "null", 4, YAML_PLAIN_SCALAR_STYLE);
    }
    return -1;
}

char *json_to_yaml(const json_t *value)
{
    yaml_emitter_t em;
    yaml_event_t ev;
    struct buf b;
    char *res = NULL;

    if (!value)
        return NULL;
    buf_init(&b);
    if (!yaml_emitter_initialize(&em))
        return NULL;
    yaml_emitter_set_output(&em, write_handler, &b);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    yaml_emitter_set_indent(&em, 2);
    if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) || emit(&em, &ev) < 0)
        goto out;
    if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) || emit(&em, &ev) < 0)
        goto out;
    if (emit_value(&em, value, 0) < 0)
        goto out;
    if (!yaml_document_end_event_initialize(&ev, 1) || emit(&em, &ev) < 0)
        goto out;
    if (!yaml_stream_end_event_initialize(&ev) || emit(&em, &ev) < 0)
        goto out;
    if (!yaml_emitter_flush(&em))
        goto out;
    res = buf_take(&b);
out:
    yaml_emitter_delete(&em);
    buf_release(&b);
    return res;
}
