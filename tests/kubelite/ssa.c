/*
 * ssa.c - server-side apply and managedFields, after sigs.k8s.io/structured-merge-diff v4.
 *
 * Field sets are JSON trees in the FieldsV1 shape, except that membership is always spelled
 * with a "." child: the leaf "f:a": {} is held as "f:a": {".": {}}. set_decode()/set_encode()
 * convert at the edges, and set_clean() drops nodes with neither "." nor children, so an
 * empty root object is the empty set.
 *
 * The algorithms are structured-merge-diff's (merge/update.go, typed/):
 *  - to_fieldset: scalars, atomic maps and lists, list items, map entries that are not
 *    declared struct fields, and null or {} values are members of the set.
 *  - Apply: merged = live merged with config; the applier's set becomes the config's set;
 *    fields of its previous set that no manager owns any more are pruned; compare(live,
 *    merged) gives Added, Modified, Removed; other managers' fields in Added or Modified
 *    conflict (or move to the applier with force); Removed fields leave every set.
 *  - Update: compare(old, new); Added and Modified fields leave every set and join the
 *    manager's Update entry; Removed fields leave every set.
 * Fields kube never tracks (apiVersion, kind, identity and server-set metadata, status or,
 * for the status subresource, everything but status) are stripped from every set.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/openapi.h"
#include "tests/kubelite/ssa.h"

#define SSA_MAX_DEPTH 128
#define SSA_MAX_KEYS 8

enum { T_DEDUCED, T_SCALAR, T_MAP, T_LIST };

/* How a schema node merges: scalar, map (granular or atomic), list (atomic, set or keyed). */
struct ssa_type {
    int kind;
    bool atomic;
    bool set;
    size_t nkeys;
    const char *keys[SSA_MAX_KEYS];
    const json_t *wrap; /* schema as referenced: may carry default and extensions */
    const json_t *s;    /* after $ref */
};

struct ssa_path {
    size_t n;
    char *el[SSA_MAX_DEPTH];
};

struct ssa_ctx {
    const struct openapi *oa;
    json_t *empty;      /* stands in for absent non-pointer structs (schema default {}) */
    const json_t *meta; /* ObjectMeta, for schemas whose metadata is a bare object (CRDs) */
    json_t *meta_own;
    struct ssa_path path;
    char *msg;
    size_t msglen;
};

struct ssa_cmp {
    json_t *added, *modified, *removed;
};

/* One managedFields entry; strings are borrowed from the input objects or arguments. */
struct ssa_entry {
    const char *manager, *operation, *api_version, *time, *subresource;
    json_t *set;
};

struct ssa_managers {
    struct ssa_entry *e;
    size_t n, cap;
};

struct ssa_items {
    size_t n;
    char **pe;
};

/* What kube's ObjectMeta says about merging, for when oa has no ObjectMeta. */
static const char ssa_object_meta[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\"},\"namespace\":{\"type\":\"string\"},"
    "\"generateName\":{\"type\":\"string\"},"
    "\"labels\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
    "\"annotations\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
    "\"finalizers\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
    "\"x-kubernetes-list-type\":\"set\"},"
    "\"ownerReferences\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
    "\"properties\":{\"uid\":{\"type\":\"string\"}}},\"x-kubernetes-list-type\":\"map\","
    "\"x-kubernetes-list-map-keys\":[\"uid\"]}}}";

static const char *const ssa_untracked_meta[] = {
    "f:name",        "f:namespace",  "f:creationTimestamp", "f:selfLink",        "f:uid",
    "f:clusterName", "f:generation", "f:managedFields",     "f:resourceVersion",
};

/* ---- paths ---- */

static char *str_cat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);

    if (!s)
        return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

/* Takes el, even on failure. */
static int path_push_own(struct ssa_path *p, char *el)
{
    if (!el)
        return -ENOMEM;
    if (p->n == SSA_MAX_DEPTH) {
        free(el);
        return ERR_INVALID;
    }
    p->el[p->n++] = el;
    return 0;
}

static int path_push(struct ssa_path *p, const char *prefix, const char *s)
{
    return path_push_own(p, str_cat(prefix, s));
}

static void path_pop(struct ssa_path *p)
{
    FREE_AND_NULL(p->el[p->n - 1]);
    p->n--;
}

static void path_release(struct ssa_path *p)
{
    while (p->n)
        path_pop(p);
}

/* Appends one path element as kube prints it: ".name", "[k=\"v\",n=1]", "[=\"v\"]", "[0]". */
static int el_format(struct buf *b, const char *el)
{
    json_t *keys = NULL;
    const char *k;
    json_t *v;
    int rc = 0, first = 1;

    if (strncmp(el, "f:", 2) == 0)
        return buf_printf(b, ".%s", el + 2);
    if (strncmp(el, "v:", 2) == 0)
        return buf_printf(b, "[=%s]", el + 2);
    if (strncmp(el, "i:", 2) == 0)
        return buf_printf(b, "[%s]", el + 2);
    if (strncmp(el, "k:", 2) != 0)
        return buf_puts(b, el);
    keys = json_loads(el + 2, JSON_DECODE_ANY, NULL);
    if (!json_is_object(keys)) {
        rc = buf_printf(b, "[%s]", el + 2);
        goto out;
    }
    rc = buf_puts(b, "[");
    json_object_foreach(keys, k, v)
    {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

        if (!s) {
            rc = -ENOMEM;
            goto out;
        }
        if (!rc)
            rc = buf_printf(b, "%s%s=%s", first ? "" : ",", k, s);
        free(s);
        first = 0;
    }
    if (!rc)
        rc = buf_puts(b, "]");
out:
    json_decref(keys);
    return rc;
}

static int ssa_invalid(struct ssa_ctx *c, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Records "<path>: <why>" in the caller's message buffer; returns ERR_INVALID. */
static int ssa_invalid(struct ssa_ctx *c, const char *fmt, ...)
{
    struct buf b;
    va_list ap;
    char why[256];
    size_t room;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (!c->msg || !c->msglen)
        return ERR_INVALID;
    buf_init(&b);
    for (size_t i = 0; i < c->path.n; i++)
        if (el_format(&b, c->path.el[i]) < 0)
            break;
    /* A path too long for the buffer loses its beginning, never the reason. */
    room = c->msglen > strlen(why) + 6 ? c->msglen - strlen(why) - 6 : 0;
    if (b.len > room)
        snprintf(c->msg, c->msglen, "...%s: %s", b.p + b.len - room, why);
    else
        snprintf(c->msg, c->msglen, "%s%s%s", b.p ? b.p : "", b.len ? ": " : "", why);
    buf_release(&b);
    return ERR_INVALID;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "map";
    case JSON_ARRAY:
        return "list";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    default:
        return "null";
    }
}

/* ---- field sets ---- */

static bool set_member(const json_t *node)
{
    return node && json_object_get(node, ".") != NULL;
}

static int set_mark(json_t *node)
{
    if (json_object_get(node, "."))
        return 0;
    return json_object_set_new(node, ".", json_object()) ? -ENOMEM : 0;
}

/* The child node for el, created when missing; NULL only on -ENOMEM. */
static json_t *set_child(json_t *node, const char *el)
{
    json_t *c = json_object_get(node, el);

    if (c)
        return c;
    c = json_object();
    if (!c || json_object_set_new(node, el, c))
        return NULL;
    return c;
}

static int set_insert(json_t *root, const struct ssa_path *p)
{
    json_t *node = root;

    if (p->n == 0)
        return 0;
    for (size_t i = 0; i < p->n; i++) {
        node = set_child(node, p->el[i]);
        if (!node)
            return -ENOMEM;
    }
    return set_mark(node);
}

/* Drops nodes that are neither members nor parents of members. */
static void set_clean(json_t *node)
{
    const char *k;
    json_t *v;
    void *tmp;

    json_object_foreach_safe(node, tmp, k, v)
    {
        if (strcmp(k, ".") == 0)
            continue;
        set_clean(v);
        if (json_object_size(v) == 0)
            json_object_del(node, k);
    }
}

static bool set_empty(const json_t *set)
{
    return json_object_size(set) == 0;
}

static int set_union(json_t *dst, const json_t *src)
{
    const char *k;
    json_t *v;
    int rc;

    json_object_foreach((json_t *)src, k, v)
    {
        json_t *d;

        if (strcmp(k, ".") == 0) {
            rc = set_mark(dst);
        } else {
            d = set_child(dst, k);
            rc = d ? set_union(d, v) : -ENOMEM;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Removes the members of src from dst (not their descendants); cleans dst. */
static void set_subtract_raw(json_t *dst, const json_t *src)
{
    const char *k;
    json_t *v, *d;

    json_object_foreach((json_t *)src, k, v)
    {
        if (strcmp(k, ".") == 0)
            json_object_del(dst, ".");
        else if ((d = json_object_get(dst, k)))
            set_subtract_raw(d, v);
    }
}

static void set_subtract(json_t *dst, const json_t *src)
{
    set_subtract_raw(dst, src);
    set_clean(dst);
}

static int set_intersect(const json_t *a, const json_t *b, json_t **out)
{
    json_t *o = json_object(), *bv, *child = NULL;
    const char *k;
    json_t *av;
    int rc = 0;

    if (!o)
        return -ENOMEM;
    json_object_foreach((json_t *)a, k, av)
    {
        bv = json_object_get(b, k);
        if (!bv)
            continue;
        if (strcmp(k, ".") == 0) {
            rc = set_mark(o);
        } else {
            child = NULL;
            rc = set_intersect(av, bv, &child);
            if (!rc && json_object_size(child))
                rc = json_object_set(o, k, child) ? -ENOMEM : 0;
            json_decref(child);
        }
        if (rc)
            break;
    }
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* FieldsV1 -> internal. Anything that is not an object is an empty set. */
static int set_decode_node(const json_t *f, json_t *node)
{
    const char *k;
    json_t *v, *child;
    int rc;

    if (json_object_size(f) == 0)
        return set_mark(node);
    json_object_foreach((json_t *)f, k, v)
    {
        if (strcmp(k, ".") == 0) {
            rc = set_mark(node);
        } else if (json_is_object(v)) {
            child = set_child(node, k);
            rc = child ? set_decode_node(v, child) : -ENOMEM;
        } else {
            rc = 0;
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int set_decode(const json_t *fields, json_t **out)
{
    json_t *s = json_object();
    int rc;

    if (!s)
        return -ENOMEM;
    rc = json_is_object(fields) ? set_decode_node(fields, s) : 0;
    if (rc) {
        json_decref(s);
        return rc;
    }
    json_object_del(s, ".");
    set_clean(s);
    *out = s;
    return 0;
}

/* Element order as kube serializes: ".", then fields, keys, values, indexes. */
static int el_rank(const char *k)
{
    if (strcmp(k, ".") == 0)
        return -1;
    switch (k[0]) {
    case 'f':
        return 0;
    case 'k':
        return 1;
    case 'v':
        return 2;
    case 'i':
        return 3;
    default:
        return 4;
    }
}

static int el_cmp(const void *pa, const void *pb)
{
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    int ra = el_rank(a), rb = el_rank(b);

    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (ra == 3) {
        long ia = strtol(a + 2, NULL, 10), ib = strtol(b + 2, NULL, 10);
        if (ia != ib)
            return ia < ib ? -1 : 1;
    }
    return strcmp(a, b);
}

/* The keys of o in el_cmp order; caller frees *out (NULL when o is empty). */
static int keys_sorted(const json_t *o, const char ***out, size_t *n)
{
    const char **keys = NULL;
    const char *k;
    json_t *v;
    size_t i = 0;

    *out = NULL;
    *n = json_object_size(o);
    if (*n == 0)
        return 0;
    keys = malloc(*n * sizeof(*keys));
    if (!keys)
        return -ENOMEM;
    json_object_foreach((json_t *)o, k, v)
    {
        (void)v;
        keys[i++] = k;
    }
    qsort(keys, *n, sizeof(*keys), el_cmp);
    *out = keys;
    return 0;
}

/* Internal -> FieldsV1, children sorted. */
static int set_encode(const json_t *node, json_t **out)
{
    const char **keys = NULL;
    json_t *o = json_object(), *child = NULL;
    size_t n = 0;
    int rc;

    if (!o)
        return -ENOMEM;
    rc = keys_sorted(node, &keys, &n);
    for (size_t i = 0; !rc && i < n; i++) {
        if (strcmp(keys[i], ".") == 0) {
            if (n > 1)
                rc = json_object_set_new(o, ".", json_object()) ? -ENOMEM : 0;
            continue;
        }
        rc = set_encode(json_object_get(node, keys[i]), &child);
        if (!rc)
            rc = json_object_set_new(o, keys[i], child) ? -ENOMEM : 0;
    }
    free(keys);
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* Appends the printed path of every member under node to arr (sorted). */
static int set_paths(const json_t *node, struct buf *b, json_t *arr)
{
    const char **keys = NULL;
    size_t n = 0;
    int rc = keys_sorted(node, &keys, &n);

    for (size_t i = 0; !rc && i < n; i++) {
        const json_t *child = json_object_get(node, keys[i]);
        size_t mark = b->len;

        if (strcmp(keys[i], ".") == 0)
            continue;
        rc = el_format(b, keys[i]);
        if (!rc && set_member(child))
            rc = json_array_append_new(arr, json_string(b->p)) ? -ENOMEM : 0;
        if (!rc)
            rc = set_paths(child, b, arr);
        b->len = mark;
        b->p[mark] = '\0';
    }
    free(keys);
    return rc;
}

/* Removes what kube never tracks; status_only keeps nothing but status. */
static void set_strip(json_t *set, bool status_only)
{
    const char *k;
    json_t *v, *meta;
    void *tmp;

    json_object_del(set, "f:apiVersion");
    json_object_del(set, "f:kind");
    if (status_only) {
        json_object_foreach_safe(set, tmp, k, v)
        {
            if (strcmp(k, "f:status") != 0)
                json_object_del(set, k);
        }
    } else {
        json_object_del(set, "f:status");
    }
    meta = json_object_get(set, "f:metadata");
    if (meta) {
        json_object_del(meta, ".");
        for (size_t i = 0; i < ARRAY_LEN(ssa_untracked_meta); i++)
            json_object_del(meta, ssa_untracked_meta[i]);
    }
    set_clean(set);
}

/* ---- schema ---- */

static const json_t *type_ext(const struct ssa_type *t, const char *name)
{
    const json_t *v = json_object_get(t->wrap, name);
    return v ? v : json_object_get(t->s, name);
}

static void type_of(const struct ssa_ctx *c, const json_t *wrap, struct ssa_type *t)
{
    const char *ty, *lt, *ps, *mk, *mt;
    const json_t *keys;

    memset(t, 0, sizeof(*t));
    t->wrap = wrap;
    t->s = wrap ? openapi_resolve(c->oa, wrap) : NULL;
    if (!t->s) {
        t->kind = T_DEDUCED;
        return;
    }
    ty = json_string_value(type_ext(t, "type"));
    if (json_is_true(type_ext(t, "x-kubernetes-int-or-string"))) {
        t->kind = T_SCALAR;
    } else if ((ty && strcmp(ty, "array") == 0) || json_object_get(t->s, "items")) {
        t->kind = T_LIST;
        lt = json_string_value(type_ext(t, "x-kubernetes-list-type"));
        ps = json_string_value(type_ext(t, "x-kubernetes-patch-strategy"));
        mk = json_string_value(type_ext(t, "x-kubernetes-patch-merge-key"));
        if (lt && strcmp(lt, "set") == 0) {
            t->set = true;
        } else if (lt && strcmp(lt, "map") == 0) {
            keys = type_ext(t, "x-kubernetes-list-map-keys");
            for (size_t i = 0; i < json_array_size(keys) && t->nkeys < SSA_MAX_KEYS; i++)
                if (json_string_value(json_array_get(keys, i)))
                    t->keys[t->nkeys++] = json_string_value(json_array_get(keys, i));
            t->atomic = t->nkeys == 0;
        } else if (lt) {
            t->atomic = true;
        } else if (ps && strstr(ps, "merge")) {
            /* Built-ins without list-type: the strategic-merge key, as kube's schemaconv. */
            if (mk)
                t->keys[t->nkeys++] = mk;
            else
                t->set = true;
        } else {
            t->atomic = true;
        }
    } else if ((ty && strcmp(ty, "object") == 0) || json_object_get(t->s, "properties") ||
               json_object_get(t->s, "additionalProperties")) {
        t->kind = T_MAP;
        mt = json_string_value(type_ext(t, "x-kubernetes-map-type"));
        t->atomic = mt && strcmp(mt, "atomic") == 0;
    } else if (ty) {
        t->kind = T_SCALAR;
    } else {
        t->kind = T_DEDUCED;
    }
}

/* The shape walkers use for v: deduced types take v's (maps granular, lists atomic). */
static int type_shape(const struct ssa_type *t, const json_t *v, bool *atomic)
{
    *atomic = t->atomic;
    if (t->kind != T_DEDUCED)
        return t->kind;
    if (json_is_object(v)) {
        *atomic = false;
        return T_MAP;
    }
    if (json_is_array(v)) {
        *atomic = true;
        return T_LIST;
    }
    return T_SCALAR;
}

/* Whether v (present, not null) has the JSON shape sh wants. */
static bool shape_fits(int sh, const json_t *v)
{
    if (sh == T_MAP)
        return json_is_object(v);
    if (sh == T_LIST)
        return json_is_array(v);
    return !json_is_object(v) && !json_is_array(v);
}

/* Schema of member key in a map; *named says it is a declared struct field. */
static const json_t *field_schema(const struct ssa_type *t, const char *key, bool *named)
{
    const json_t *fs = json_object_get(json_object_get(t->s, "properties"), key), *ap;

    *named = fs != NULL;
    if (fs)
        return fs;
    ap = json_object_get(t->s, "additionalProperties");
    return json_is_object(ap) ? ap : NULL;
}

/* As field_schema; at the root, a bare "metadata" object schema becomes ObjectMeta. */
static const json_t *field_schema_at(const struct ssa_ctx *c, const struct ssa_type *t,
                                     const char *key, bool *named, bool root)
{
    const json_t *fs = field_schema(t, key, named);

    if (root && strcmp(key, "metadata") == 0 &&
        !json_object_get(openapi_resolve(c->oa, fs), "properties")) {
        *named = true;
        return c->meta;
    }
    return fs;
}

/* The path element of a list item: "k:{...}" for keyed lists, "v:<json>" for sets. */
static int item_pe(const struct ssa_type *t, const struct ssa_type *it, const json_t *item,
                   char **out, const char **why)
{
    json_t *k = NULL;
    char *s = NULL;
    int rc = 0;

    if (t->set) {
        if (json_is_object(item) || json_is_array(item) || json_is_null(item)) {
            *why = "elements of a set list must be scalars";
            return ERR_INVALID;
        }
        s = json_dumps(item, JSON_ENCODE_ANY | JSON_COMPACT);
        *out = s ? str_cat("v:", s) : NULL;
        rc = *out ? 0 : -ENOMEM;
        goto out;
    }
    if (!json_is_object(item)) {
        *why = "associative list with keys may not have non-map elements";
        return ERR_INVALID;
    }
    k = json_object();
    if (!k)
        return -ENOMEM;
    for (size_t i = 0; i < t->nkeys; i++) {
        const json_t *v = json_object_get(item, t->keys[i]);

        /* An absent key field takes its schema default (protocol: TCP), else stays absent. */
        if (!v)
            v = json_object_get(json_object_get(json_object_get(it->s, "properties"), t->keys[i]),
                                "default");
        if (!v || json_is_null(v))
            continue;
        if (json_is_object(v) || json_is_array(v)) {
            *why = "associative list keys must be scalars";
            rc = ERR_INVALID;
            goto out;
        }
        if (json_object_set(k, t->keys[i], (json_t *)v)) {
            rc = -ENOMEM;
            goto out;
        }
    }
    s = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
    *out = s ? str_cat("k:", s) : NULL;
    rc = *out ? 0 : -ENOMEM;
out:
    free(s);
    json_decref(k);
    return rc;
}

static void items_free(struct ssa_items *it)
{
    for (size_t i = 0; i < it->n; i++)
        free(it->pe[i]);
    FREE_AND_NULL(it->pe);
    it->n = 0;
}

/* Path elements of every item of arr; on ERR_INVALID *bad is the failing index. */
static int items_index(const struct ssa_type *t, const struct ssa_type *it, const json_t *arr,
                       struct ssa_items *out, size_t *bad, const char **why)
{
    size_t n = json_array_size(arr);
    int rc = 0;

    out->n = 0;
    out->pe = calloc(n ? n : 1, sizeof(*out->pe));
    if (!out->pe)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        rc = item_pe(t, it, json_array_get(arr, i), &out->pe[i], why);
        if (rc) {
            *bad = i;
            break;
        }
        out->n++;
    }
    if (rc)
        items_free(out);
    return rc;
}

static long items_find(const struct ssa_items *it, const char *pe)
{
    for (size_t i = 0; i < it->n; i++)
        if (strcmp(it->pe[i], pe) == 0)
            return (long)i;
    return -1;
}

/* ---- to_fieldset: the set an applied configuration claims (validates it too) ---- */

static int to_fieldset(struct ssa_ctx *c, const json_t *wrap, const json_t *v, json_t *set);

static int to_fieldset_map(struct ssa_ctx *c, const struct ssa_type *t, const json_t *v,
                           json_t *set)
{
    const char *k;
    json_t *cv;
    int rc;

    json_object_foreach((json_t *)v, k, cv)
    {
        bool named;
        const json_t *cs = field_schema_at(c, t, k, &named, c->path.n == 0);

        rc = path_push(&c->path, "f:", k);
        if (rc == ERR_INVALID)
            return ssa_invalid(c, "object nesting is too deep");
        if (rc)
            return rc;
        rc = to_fieldset(c, cs, cv, set);
        if (!rc && (!named || json_is_null(cv) || (json_is_object(cv) && !json_object_size(cv))))
            rc = set_insert(set, &c->path);
        path_pop(&c->path);
        if (rc)
            return rc;
    }
    return 0;
}

static int to_fieldset_list(struct ssa_ctx *c, const struct ssa_type *t, const json_t *v,
                            json_t *set)
{
    const json_t *iw = json_object_get(t->s, "items");
    struct ssa_type it;
    struct ssa_items idx = {0};
    const char *why = "";
    size_t bad = 0;
    int rc;

    type_of(c, iw, &it);
    rc = items_index(t, &it, v, &idx, &bad, &why);
    if (rc == ERR_INVALID)
        return ssa_invalid(c, "element %zu: %s", bad, why);
    if (rc)
        return rc;
    for (size_t i = 0; !rc && i < idx.n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(idx.pe[i], idx.pe[j]) == 0) {
                struct buf b;

                buf_init(&b);
                rc = el_format(&b, idx.pe[i]);
                rc = rc ? rc : ssa_invalid(c, "duplicate entries for key %s", b.p);
                buf_release(&b);
                goto out;
            }
        }
        rc = path_push(&c->path, "", idx.pe[i]);
        if (rc == ERR_INVALID)
            rc = ssa_invalid(c, "object nesting is too deep");
        if (rc)
            goto out;
        rc = to_fieldset(c, iw, json_array_get(v, i), set);
        if (!rc)
            rc = set_insert(set, &c->path);
        path_pop(&c->path);
    }
out:
    items_free(&idx);
    return rc;
}

static int to_fieldset(struct ssa_ctx *c, const json_t *wrap, const json_t *v, json_t *set)
{
    struct ssa_type t;
    bool atomic;
    int sh;

    type_of(c, wrap, &t);
    sh = type_shape(&t, v, &atomic);
    if (json_is_null(v))
        return 0;
    if (!shape_fits(sh, v))
        return ssa_invalid(c, "expected %s, got %s",
                           sh == T_MAP    ? "map"
                           : sh == T_LIST ? "list"
                                          : "scalar",
                           json_kind(v));
    if (sh == T_SCALAR || atomic)
        return set_insert(set, &c->path);
    if (sh == T_MAP)
        return to_fieldset_map(c, &t, v, set);
    return to_fieldset_list(c, &t, v, set);
}

/* ---- merge: the applied configuration over the live object ---- */

static int merge(struct ssa_ctx *c, const json_t *wrap, json_t **dst, const json_t *rhs);

static int merge_replace(json_t **dst, const json_t *rhs)
{
    json_t *n = json_deep_copy(rhs);

    if (!n)
        return -ENOMEM;
    json_decref(*dst);
    *dst = n;
    return 0;
}

static int merge_map(struct ssa_ctx *c, const struct ssa_type *t, json_t *dst, const json_t *rhs)
{
    const char *k;
    json_t *rv;
    int rc = 0;

    json_object_foreach((json_t *)rhs, k, rv)
    {
        bool named;
        const json_t *cs = field_schema_at(c, t, k, &named, c->path.n == 0);
        json_t *d = json_incref(json_object_get(dst, k));

        /* merge() descends only below SSA_MAX_DEPTH, so the push fails only on -ENOMEM. */
        rc = path_push(&c->path, "f:", k);
        if (!rc) {
            rc = merge(c, cs, &d, rv);
            path_pop(&c->path);
        }
        if (!rc)
            rc = json_object_set(dst, k, d) ? -ENOMEM : 0;
        json_decref(d);
        if (rc)
            return rc;
    }
    return 0;
}

/* Merges one item: lhs (borrowed, may be NULL) under rhs, appended to out. */
static int merge_item(struct ssa_ctx *c, const json_t *iw, const char *pe, json_t *lhs,
                      const json_t *rhs, json_t *out)
{
    json_t *d = json_incref(lhs);
    int rc = path_push(&c->path, "", pe);

    if (!rc) {
        rc = merge(c, iw, &d, rhs);
        path_pop(&c->path);
    }
    if (!rc)
        rc = json_array_append(out, d) ? -ENOMEM : 0;
    json_decref(d);
    return rc;
}

/*
 * Keyed and set lists: live items keep their places, applied items keep their relative order;
 * an applied item not yet emitted goes out just before the live item it matches.
 */
static int merge_list(struct ssa_ctx *c, const struct ssa_type *t, json_t **dst, const json_t *rhs)
{
    const json_t *iw = json_object_get(t->s, "items");
    struct ssa_items li = {0}, ri = {0};
    struct ssa_type it;
    json_t *out = NULL;
    bool *done = NULL;
    const char *why = "";
    size_t bad = 0, next = 0, rn = json_array_size(rhs);
    int rc;

    type_of(c, iw, &it);
    rc = items_index(t, &it, rhs, &ri, &bad, &why);
    if (!rc)
        rc = items_index(t, &it, *dst, &li, &bad, &why);
    if (rc == ERR_INVALID) {
        /* Live (or config) items cannot be keyed: replace the list as a whole. */
        rc = merge_replace(dst, rhs);
        goto out;
    }
    if (rc)
        goto out;
    out = json_array();
    done = calloc(rn ? rn : 1, sizeof(*done));
    if (!out || !done) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; !rc && i < li.n; i++) {
        long j = items_find(&ri, li.pe[i]);

        if (j < 0) {
            rc = json_array_append(out, json_array_get(*dst, i)) ? -ENOMEM : 0;
            continue;
        }
        for (; !rc && next <= (size_t)j; next++) {
            long l;

            if (done[next])
                continue;
            done[next] = true;
            l = items_find(&li, ri.pe[next]);
            rc = merge_item(c, iw, ri.pe[next], l < 0 ? NULL : json_array_get(*dst, (size_t)l),
                            json_array_get(rhs, next), out);
        }
    }
    for (size_t k = 0; !rc && k < rn; k++) {
        long l;

        if (done[k])
            continue;
        done[k] = true;
        l = items_find(&li, ri.pe[k]);
        rc = merge_item(c, iw, ri.pe[k], l < 0 ? NULL : json_array_get(*dst, (size_t)l),
                        json_array_get(rhs, k), out);
    }
    if (!rc) {
        json_decref(*dst);
        *dst = out;
        out = NULL;
    }
out:
    items_free(&li);
    items_free(&ri);
    free(done);
    json_decref(out);
    return rc;
}

/* Merges rhs into *dst (owned, may be NULL; replaced or changed in place). */
static int merge(struct ssa_ctx *c, const json_t *wrap, json_t **dst, const json_t *rhs)
{
    struct ssa_type t;
    bool atomic;
    int sh;

    type_of(c, wrap, &t);
    sh = type_shape(&t, rhs, &atomic);
    if (!*dst || json_is_null(rhs) || sh == T_SCALAR || atomic || !shape_fits(sh, rhs) ||
        !shape_fits(sh, *dst) || c->path.n + 1 >= SSA_MAX_DEPTH)
        return merge_replace(dst, rhs);
    if (sh == T_MAP)
        return merge_map(c, &t, *dst, rhs);
    return merge_list(c, &t, dst, rhs);
}

/* Drops null members left by "field: null" in the configuration (kube stores no nulls). */
static void drop_nulls(json_t *v)
{
    const char *k;
    json_t *cv;
    void *tmp;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach_safe(v, tmp, k, cv)
        {
            if (json_is_null(cv))
                json_object_del(v, k);
            else
                drop_nulls(cv);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, cv) drop_nulls(cv);
    }
}

/* ---- prune: what the applier owned last time and nobody owns now ---- */

static int prune(struct ssa_ctx *c, const json_t *wrap, json_t *v, const json_t *last,
                 const json_t *owned, bool root);

static bool has_children(const json_t *node)
{
    return json_object_size(node) > (set_member(node) ? 1u : 0u);
}

static int prune_map(struct ssa_ctx *c, const struct ssa_type *t, json_t *v, const json_t *last,
                     const json_t *owned, bool root)
{
    const char *k;
    json_t *cv;
    void *tmp;
    int rc = 0;

    json_object_foreach_safe(v, tmp, k, cv)
    {
        bool named, keep, drop;
        const json_t *cs = field_schema_at(c, t, k, &named, root), *lc, *oc;
        char *el = str_cat("f:", k);

        if (!el)
            return -ENOMEM;
        lc = json_object_get(last, el);
        oc = json_object_get(owned, el);
        free(el);
        if (!lc)
            continue;
        /* Identity lives here: the configuration always names the object. */
        keep = root && (strcmp(k, "metadata") == 0 || strcmp(k, "apiVersion") == 0 ||
                        strcmp(k, "kind") == 0);
        /* Declared fields count as owned while anything below them is (kube's
         * EnsureNamedFieldsAreMembers); map entries only when owned themselves. */
        drop = !keep && (named ? !oc : (set_member(lc) && !set_member(oc)));
        if (drop) {
            json_object_del(v, k);
        } else if (has_children(lc)) {
            rc = prune(c, cs, cv, lc, oc, false);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int prune_list(struct ssa_ctx *c, const struct ssa_type *t, json_t *v, const json_t *last,
                      const json_t *owned)
{
    const json_t *iw = json_object_get(t->s, "items");
    struct ssa_items idx = {0};
    struct ssa_type it;
    const char *why = "";
    size_t bad = 0;
    int rc;

    type_of(c, iw, &it);
    rc = items_index(t, &it, v, &idx, &bad, &why);
    if (rc == ERR_INVALID)
        return 0;
    for (size_t i = idx.n; !rc && i-- > 0;) {
        const json_t *lc = json_object_get(last, idx.pe[i]);
        const json_t *oc = json_object_get(owned, idx.pe[i]);

        if (!lc)
            continue;
        if (set_member(lc) && !set_member(oc))
            rc = json_array_remove(v, i) ? -ENOMEM : 0;
        else if (has_children(lc))
            rc = prune(c, iw, json_array_get(v, i), lc, oc, false);
    }
    items_free(&idx);
    return rc;
}

static int prune(struct ssa_ctx *c, const json_t *wrap, json_t *v, const json_t *last,
                 const json_t *owned, bool root)
{
    struct ssa_type t;
    bool atomic;
    int sh;

    type_of(c, wrap, &t);
    sh = type_shape(&t, v, &atomic);
    if (sh == T_SCALAR || atomic || !shape_fits(sh, v))
        return 0;
    if (sh == T_MAP)
        return prune_map(c, &t, v, last, owned, root);
    return prune_list(c, &t, v, last, owned);
}

/* ---- compare: Added, Modified, Removed between two objects ---- */

static bool emptyish(const json_t *v)
{
    return !v || json_is_null(v) || (json_is_object(v) && !json_object_size(v)) ||
           (json_is_array(v) && !json_array_size(v));
}

static int compare(struct ssa_ctx *c, const json_t *wrap, bool field, const json_t *lhs,
                   const json_t *rhs, struct ssa_cmp *cmp);

static int compare_child(struct ssa_ctx *c, const json_t *wrap, bool field, char *el,
                         const json_t *lhs, const json_t *rhs, struct ssa_cmp *cmp)
{
    int rc = path_push_own(&c->path, el);

    if (rc)
        return rc;
    rc = compare(c, wrap, field, lhs, rhs, cmp);
    path_pop(&c->path);
    return rc;
}

static int compare_map(struct ssa_ctx *c, const struct ssa_type *t, const json_t *lhs,
                       const json_t *rhs, struct ssa_cmp *cmp)
{
    const char *k;
    json_t *v;
    bool named;
    int rc;

    json_object_foreach((json_t *)lhs, k, v)
    {
        const json_t *cs = field_schema_at(c, t, k, &named, c->path.n == 0);

        rc = compare_child(c, cs, named, str_cat("f:", k), v, json_object_get(rhs, k), cmp);
        if (rc)
            return rc;
    }
    json_object_foreach((json_t *)rhs, k, v)
    {
        const json_t *cs = field_schema_at(c, t, k, &named, c->path.n == 0);

        if (json_object_get(lhs, k))
            continue;
        rc = compare_child(c, cs, named, str_cat("f:", k), NULL, v, cmp);
        if (rc)
            return rc;
    }
    return 0;
}

/* Returns ERR_INVALID when items cannot be keyed (the caller compares the lists whole). */
static int compare_list(struct ssa_ctx *c, const struct ssa_type *t, const json_t *lhs,
                        const json_t *rhs, struct ssa_cmp *cmp)
{
    const json_t *iw = json_object_get(t->s, "items");
    struct ssa_items li = {0}, ri = {0};
    struct ssa_type it;
    const char *why = "";
    size_t bad = 0;
    int rc;

    type_of(c, iw, &it);
    rc = items_index(t, &it, lhs, &li, &bad, &why);
    if (!rc)
        rc = items_index(t, &it, rhs, &ri, &bad, &why);
    for (size_t i = 0; !rc && i < li.n; i++) {
        long j = items_find(&ri, li.pe[i]);

        if (items_find(&li, li.pe[i]) != (long)i)
            continue; /* duplicates: the first one speaks for the key */
        rc = compare_child(c, iw, false, strdup(li.pe[i]), json_array_get(lhs, i),
                           j < 0 ? NULL : json_array_get(rhs, (size_t)j), cmp);
    }
    for (size_t j = 0; !rc && j < ri.n; j++) {
        if (items_find(&li, ri.pe[j]) >= 0 || items_find(&ri, ri.pe[j]) != (long)j)
            continue;
        rc = compare_child(c, iw, false, strdup(ri.pe[j]), NULL, json_array_get(rhs, j), cmp);
    }
    items_free(&li);
    items_free(&ri);
    return rc;
}

static int compare(struct ssa_ctx *c, const json_t *wrap, bool field, const json_t *lhs,
                   const json_t *rhs, struct ssa_cmp *cmp)
{
    struct ssa_type t;
    bool atomic, leaf;
    int sh, rc = 0;

    /* A non-pointer struct (schema default {}) always exists in a typed Go object, so kube
     * never reports it as added: "f:spec" gets no "." on create, "f:labels" does. */
    if (!lhs && field && json_is_object(rhs) && json_is_object(json_object_get(wrap, "default")))
        lhs = c->empty;
    type_of(c, wrap, &t);
    sh = type_shape(&t, rhs ? rhs : lhs, &atomic);
    leaf = sh == T_SCALAR || atomic || c->path.n + 1 >= SSA_MAX_DEPTH;
    if (!leaf && ((lhs && !json_is_null(lhs) && !shape_fits(sh, lhs)) ||
                  (rhs && !json_is_null(rhs) && !shape_fits(sh, rhs))))
        leaf = true;
    if (!leaf && emptyish(lhs) && emptyish(rhs))
        leaf = true;
    if (!leaf) {
        rc = sh == T_MAP ? compare_map(c, &t, lhs, rhs, cmp) : compare_list(c, &t, lhs, rhs, cmp);
        if (rc == ERR_INVALID)
            leaf = true;
        else if (rc)
            return rc;
    }
    if (leaf) {
        if (!lhs)
            return set_insert(cmp->added, &c->path);
        if (!rhs)
            return set_insert(cmp->removed, &c->path);
        if (!json_equal((json_t *)lhs, (json_t *)rhs))
            return set_insert(cmp->modified, &c->path);
        return 0;
    }
    if (!lhs)
        return set_insert(cmp->added, &c->path);
    if (!rhs)
        return set_insert(cmp->removed, &c->path);
    return 0;
}

static void cmp_release(struct ssa_cmp *cmp)
{
    json_decref(cmp->added);
    json_decref(cmp->modified);
    json_decref(cmp->removed);
}

/* Compares lhs (NULL: nothing) with rhs; strips untracked fields. *changed = Added | Modified. */
static int cmp_run(struct ssa_ctx *c, const json_t *schema, const json_t *lhs, const json_t *rhs,
                   bool status_only, struct ssa_cmp *cmp, json_t **changed)
{
    int rc;

    cmp->added = json_object();
    cmp->modified = json_object();
    cmp->removed = json_object();
    *changed = json_object();
    if (!cmp->added || !cmp->modified || !cmp->removed || !*changed)
        return -ENOMEM;
    rc = compare(c, schema, false, lhs ? lhs : c->empty, rhs, cmp);
    path_release(&c->path);
    if (rc)
        return rc;
    set_clean(cmp->added);
    set_clean(cmp->modified);
    set_clean(cmp->removed);
    set_strip(cmp->added, status_only);
    set_strip(cmp->modified, status_only);
    set_strip(cmp->removed, status_only);
    rc = set_union(*changed, cmp->added);
    return rc ? rc : set_union(*changed, cmp->modified);
}

/* ---- managedFields ---- */

static void managers_release(struct ssa_managers *m)
{
    for (size_t i = 0; i < m->n; i++)
        json_decref(m->e[i].set);
    FREE_AND_NULL(m->e);
    m->n = m->cap = 0;
}

/* Appends an entry; consumes set, even on failure. */
static int managers_add(struct ssa_managers *m, const struct ssa_entry *e)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4;
        struct ssa_entry *ne = realloc(m->e, cap * sizeof(*ne));

        if (!ne) {
            json_decref(e->set);
            return -ENOMEM;
        }
        m->e = ne;
        m->cap = cap;
    }
    m->e[m->n++] = *e;
    return 0;
}

/* Entries of a managedFields list; malformed entries are dropped. */
static int managers_decode(const json_t *mf, struct ssa_managers *m)
{
    const json_t *ent;
    size_t i;
    int rc;

    json_array_foreach((json_t *)mf, i, ent)
    {
        struct ssa_entry e = {0};
        const char *op = jstr(ent, "operation");

        e.manager = jstr(ent, "manager");
        if (!e.manager || !op || (strcmp(op, "Apply") != 0 && strcmp(op, "Update") != 0))
            continue;
        e.operation = op;
        e.api_version = jstr_or(ent, "apiVersion", "");
        e.time = jstr(ent, "time");
        e.subresource = jstr_or(ent, "subresource", "");
        rc = set_decode(json_object_get(ent, "fieldsV1"), &e.set);
        if (!rc)
            rc = managers_add(m, &e);
        if (rc)
            return rc;
    }
    return 0;
}

static struct ssa_entry *managers_find(struct ssa_managers *m, const char *manager, bool apply,
                                       const char *api_version, const char *subresource)
{
    for (size_t i = 0; i < m->n; i++) {
        struct ssa_entry *e = &m->e[i];

        if (strcmp(e->manager, manager) != 0 || strcmp(e->subresource, subresource) != 0 ||
            (strcmp(e->operation, "Apply") == 0) != apply)
            continue;
        /* Appliers are one entry whatever version they use; updaters one per version. */
        if (apply || strcmp(e->api_version, api_version) == 0)
            return e;
    }
    return NULL;
}

static int strcmp_null(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

/* kube's sortEncodedManagedFields: operation, time (seconds), manager, apiVersion, subres. */
static int entry_cmp(const struct ssa_entry *a, const struct ssa_entry *b)
{
    int r = strcmp(a->operation, b->operation);

    if (r)
        return r;
    r = strncmp(a->time ? a->time : "", b->time ? b->time : "", 19);
    if (r)
        return r;
    r = strcmp(a->manager, b->manager);
    if (r)
        return r;
    r = strcmp_null(a->api_version, b->api_version);
    return r ? r : strcmp_null(a->subresource, b->subresource);
}

static int entry_encode(const struct ssa_entry *e, json_t **out)
{
    json_t *o = json_object(), *f = NULL;
    int rc = set_encode(e->set, &f);

    if (!rc && !o)
        rc = -ENOMEM;
    if (rc)
        goto out;
    /* Keys in kube's order; f is set without stealing so a short-circuit cannot leak it. */
    if (json_object_set_new(o, "manager", json_string(e->manager)) ||
        json_object_set_new(o, "operation", json_string(e->operation)) ||
        json_object_set_new(o, "apiVersion", json_string(e->api_version)) ||
        (e->time && json_object_set_new(o, "time", json_string(e->time))) ||
        json_object_set_new(o, "fieldsType", json_string("FieldsV1")) ||
        json_object_set(o, "fieldsV1", f) ||
        (e->subresource[0] && json_object_set_new(o, "subresource", json_string(e->subresource)))) {
        rc = -ENOMEM;
        goto out;
    }
    *out = o;
    o = NULL;
out:
    json_decref(o);
    json_decref(f);
    return rc;
}

/* The managedFields list (empty entries dropped, kube's order). */
static int managers_encode(struct ssa_managers *m, json_t **out)
{
    json_t *arr = json_array(), *ent = NULL;
    int rc = 0;

    if (!arr)
        return -ENOMEM;
    /* Insertion sort: stable, and the list is short. */
    for (size_t i = 1; i < m->n; i++) {
        struct ssa_entry e = m->e[i];
        size_t j = i;

        for (; j > 0 && entry_cmp(&m->e[j - 1], &e) > 0; j--)
            m->e[j] = m->e[j - 1];
        m->e[j] = e;
    }
    for (size_t i = 0; !rc && i < m->n; i++) {
        if (set_empty(m->e[i].set))
            continue;
        rc = entry_encode(&m->e[i], &ent);
        if (!rc)
            rc = json_array_append_new(arr, ent) ? -ENOMEM : 0;
    }
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

/* Sets obj.metadata.managedFields to mf (consumed, even on failure); absent when empty. */
static int set_managed_fields(json_t *obj, json_t *mf)
{
    json_t *meta = json_object_get(obj, "metadata");
    int rc = 0;

    if (!json_array_size(mf)) {
        json_object_del(meta, "managedFields");
        goto out;
    }
    if (!json_is_object(meta)) {
        meta = json_object();
        if (!meta || json_object_set_new(obj, "metadata", meta)) {
            rc = -ENOMEM;
            goto out;
        }
    }
    rc = json_object_set(meta, "managedFields", mf) ? -ENOMEM : 0;
out:
    json_decref(mf);
    return rc;
}

static int ctx_init(struct ssa_ctx *c, const struct openapi *oa, char *msg, size_t msglen)
{
    memset(c, 0, sizeof(*c));
    c->oa = oa;
    c->msg = msg;
    c->msglen = msglen;
    c->empty = json_object();
    c->meta = openapi_schema(oa, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    if (!c->meta)
        c->meta = c->meta_own = json_loads(ssa_object_meta, 0, NULL);
    return c->empty && c->meta ? 0 : -ENOMEM;
}

static void ctx_release(struct ssa_ctx *c)
{
    path_release(&c->path);
    json_decref(c->empty);
    json_decref(c->meta_own);
}

/* ---- apply ---- */

/* "conflict with \"m\"" plus, for updaters, the subresource and version, as kube prints. */
static int conflict_who(const struct ssa_entry *e, struct buf *b)
{
    int rc = buf_printf(b, "conflict with \"%s\"", e->manager);

    if (!rc && e->subresource[0])
        rc = buf_printf(b, " with subresource \"%s\"", e->subresource);
    if (!rc && strcmp(e->operation, "Update") == 0)
        rc = buf_printf(b, " using %s", e->api_version);
    return rc;
}

/* Appends {reason, message, field} for each of e's conflicting fields to all. */
static int conflicts_add(const struct ssa_entry *e, const json_t *conf, json_t *all)
{
    struct buf who, path;
    json_t *paths = json_array(), *p;
    size_t i;
    int rc;

    buf_init(&who);
    buf_init(&path);
    rc = paths ? conflict_who(e, &who) : -ENOMEM;
    if (!rc)
        rc = buf_puts(&path, "");
    if (!rc)
        rc = set_paths(conf, &path, paths);
    json_array_foreach(paths, i, p)
    {
        if (rc)
            break;
        rc = json_array_append_new(all,
                                   json_pack("{s:s, s:s, s:s}", "reason", "FieldManagerConflict",
                                             "message", who.p, "field", json_string_value(p)))
                 ? -ENOMEM
                 : 0;
    }
    json_decref(paths);
    buf_release(&who);
    buf_release(&path);
    return rc;
}

/* kube's getConflictMessage: one conflict inline, several grouped by manager. */
static int conflicts_summary(const json_t *all, struct buf *b)
{
    const char *prev = NULL, *who;
    size_t n = json_array_size(all), i, skip = strlen("conflict with ");
    json_t *cv;
    int rc;

    if (n == 1)
        return buf_printf(b, "Apply failed with 1 conflict: %s: %s",
                          jstr(json_array_get(all, 0), "message"),
                          jstr(json_array_get(all, 0), "field"));
    rc = buf_printf(b, "Apply failed with %zu conflicts: ", n);
    json_array_foreach((json_t *)all, i, cv)
    {
        who = jstr(cv, "message");
        if (!rc && (!prev || strcmp(prev, who) != 0))
            rc = buf_printf(b, "%sconflicts with %s:", prev ? "\n" : "", who + skip);
        if (!rc)
            rc = buf_printf(b, "\n- %s", jstr(cv, "field"));
        prev = who;
    }
    return rc;
}

static int check_resource_version(const json_t *live, const json_t *applied, char *msg,
                                  size_t msglen)
{
    const char *want = json_string_value(jget2(applied, "metadata", "resourceVersion"));
    const char *have = json_string_value(jget2(live, "metadata", "resourceVersion"));

    if (!want || !want[0] || (have && strcmp(want, have) == 0))
        return 0;
    if (msg && msglen)
        snprintf(msg, msglen,
                 "the object has been modified; please apply your changes to the latest "
                 "version and try again");
    return ERR_CONFLICT;
}

/* The configuration as merged: server-owned metadata in it is ignored. */
static int config_copy(const json_t *applied, json_t **out)
{
    static const char *const drop[] = {"managedFields", "resourceVersion",   "uid",
                                       "generation",    "creationTimestamp", "selfLink"};
    json_t *cfg = json_deep_copy(applied), *meta;

    if (!cfg)
        return -ENOMEM;
    meta = json_object_get(cfg, "metadata");
    for (size_t i = 0; json_is_object(meta) && i < ARRAY_LEN(drop); i++)
        json_object_del(meta, drop[i]);
    *out = cfg;
    return 0;
}

int ssa_apply(const json_t *live, const json_t *applied, const char *manager, bool force,
              const struct openapi *oa, const json_t *schema, const char *now, json_t **out,
              json_t *conflicts, char *msg, size_t msglen)
{
    struct ssa_ctx c;
    struct ssa_managers m = {0};
    struct ssa_cmp cmp = {0};
    struct ssa_entry *me;
    struct buf summary;
    json_t *cfg = NULL, *base = NULL, *merged = NULL, *newset = NULL, *last = NULL;
    json_t *owned = NULL, *changed = NULL, *mf = NULL, *all = NULL;
    bool fresh = false;
    int rc;

    buf_init(&summary);
    if (msg && msglen)
        msg[0] = '\0';
    rc = ctx_init(&c, oa, msg, msglen);
    if (rc)
        goto out;
    if (!json_is_object(applied)) {
        rc = ssa_invalid(&c, "the applied configuration must be a JSON object, not %s",
                         applied ? json_kind(applied) : "nothing");
        goto out;
    }
    if (live && !json_is_object(live)) {
        rc = ssa_invalid(&c, "the live object must be a JSON object, not %s", json_kind(live));
        goto out;
    }
    rc = check_resource_version(live, applied, msg, msglen);
    if (rc)
        goto out;
    rc = config_copy(applied, &cfg);
    if (rc)
        goto out;
    newset = json_object();
    owned = json_object();
    all = json_array();
    if (!newset || !owned || !all) {
        rc = -ENOMEM;
        goto out;
    }
    rc = to_fieldset(&c, schema, cfg, newset);
    path_release(&c.path);
    if (rc)
        goto out;
    set_clean(newset);
    set_strip(newset, false);

    /* base: live without its managedFields; merged: base with the configuration over it. */
    if (live) {
        base = json_deep_copy(live);
        if (!base) {
            rc = -ENOMEM;
            goto out;
        }
        json_object_del(json_object_get(base, "metadata"), "managedFields");
        merged = json_deep_copy(base);
        if (!merged) {
            rc = -ENOMEM;
            goto out;
        }
    }
    rc = merge(&c, schema, &merged, cfg);
    path_release(&c.path);
    if (rc)
        goto out;

    rc = managers_decode(jget2(live, "metadata", "managedFields"), &m);
    if (rc)
        goto out;
    me = managers_find(&m, manager, true, "", "");
    if (me) {
        last = me->set;
        me->set = newset;
    } else {
        struct ssa_entry e = {manager, "Apply", "", NULL, "", newset};

        fresh = true;
        rc = managers_add(&m, &e);
        if (rc) {
            newset = NULL;
            goto out;
        }
    }
    newset = NULL;
    me = managers_find(&m, manager, true, "", "");
    me->api_version = jstr_or(applied, "apiVersion", "");

    if (last && !set_empty(last)) {
        for (size_t i = 0; !rc && i < m.n; i++)
            rc = set_union(owned, m.e[i].set);
        if (!rc)
            rc = prune(&c, schema, merged, last, owned, true);
        path_release(&c.path);
        if (rc)
            goto out;
    }

    rc = cmp_run(&c, schema, base, merged, false, &cmp, &changed);
    if (rc)
        goto out;
    for (size_t i = 0; i < m.n; i++) {
        json_t *conf = NULL;

        if (&m.e[i] == me)
            continue;
        rc = set_intersect(m.e[i].set, changed, &conf);
        if (!rc && !force && !set_empty(conf))
            rc = conflicts_add(&m.e[i], conf, all);
        json_decref(conf);
        if (rc)
            goto out;
    }
    if (json_array_size(all)) {
        rc = conflicts_summary(all, &summary);
        if (!rc && conflicts)
            rc = json_array_extend(conflicts, all) ? -ENOMEM : 0;
        if (rc)
            goto out;
        if (msg && msglen)
            snprintf(msg, msglen, "%s", summary.p);
        rc = ERR_CONFLICT;
        goto out;
    }
    for (size_t i = 0; i < m.n; i++) {
        if (&m.e[i] == me)
            continue;
        set_subtract(m.e[i].set, changed);
        set_subtract(m.e[i].set, cmp.removed);
    }

    drop_nulls(merged);
    /* kube stamps the applier only when the object changed (a no-op keeps its time). */
    if (fresh || !me->time || !json_equal(base, merged))
        me->time = now;
    rc = managers_encode(&m, &mf);
    if (!rc)
        rc = set_managed_fields(merged, mf);
    if (rc)
        goto out;
    *out = merged;
    merged = NULL;
out:
    managers_release(&m);
    cmp_release(&cmp);
    buf_release(&summary);
    json_decref(cfg);
    json_decref(base);
    json_decref(merged);
    json_decref(newset);
    json_decref(last);
    json_decref(owned);
    json_decref(changed);
    json_decref(all);
    ctx_release(&c);
    return rc;
}

/* ---- update ---- */

/* kube's decodeLiveOrNew: a main-resource write may set managedFields itself ([{}] resets). */
static int update_base_managers(const json_t *old, const json_t *newobj, bool subresource,
                                struct ssa_managers *m)
{
    const json_t *nm = jget2(newobj, "metadata", "managedFields");
    int rc;

    if (!subresource && json_array_size(nm) == 1 && json_is_object(json_array_get(nm, 0)) &&
        json_object_size(json_array_get(nm, 0)) == 0)
        return 0;
    if (!subresource && json_array_size(nm)) {
        rc = managers_decode(nm, m);
        if (rc || m->n)
            return rc;
    }
    return managers_decode(jget2(old, "metadata", "managedFields"), m);
}

int ssa_update(const json_t *old, json_t *newobj, const char *manager, const char *subresource,
               const struct openapi *oa, const json_t *schema, const char *now)
{
    struct ssa_ctx c;
    struct ssa_managers m = {0};
    struct ssa_cmp cmp = {0};
    struct ssa_entry *me;
    json_t *changed = NULL, *mf = NULL;
    bool status_only = subresource && strcmp(subresource, "status") == 0;
    const char *sub = subresource ? subresource : "";
    const char *av = jstr_or(newobj, "apiVersion", "");
    int rc;

    rc = ctx_init(&c, oa, NULL, 0);
    if (rc)
        goto out;
    if (!json_is_object(newobj) || (old && !json_is_object(old)))
        goto out; /* nothing typed to track */
    rc = update_base_managers(old, newobj, sub[0] != '\0', &m);
    if (rc)
        goto out;
    rc = cmp_run(&c, schema, old, newobj, status_only, &cmp, &changed);
    if (rc)
        goto out;
    for (size_t i = 0; i < m.n; i++) {
        set_subtract(m.e[i].set, changed);
        set_subtract(m.e[i].set, cmp.removed);
    }
    if (!set_empty(changed)) {
        me = managers_find(&m, manager, false, av, sub);
        if (!me) {
            struct ssa_entry e = {manager, "Update", av, NULL, sub, json_object()};

            if (!e.set) {
                rc = -ENOMEM;
                goto out;
            }
            rc = managers_add(&m, &e);
            if (rc)
                goto out;
            me = &m.e[m.n - 1];
        }
        rc = set_union(me->set, changed);
        if (rc)
            goto out;
        me->time = now;
    }
    /* Strings in m may point into newobj's managedFields: encode before replacing it. */
    rc = managers_encode(&m, &mf);
    managers_release(&m);
    if (!rc)
        rc = set_managed_fields(newobj, mf);
out:
    managers_release(&m);
    cmp_release(&cmp);
    json_decref(changed);
    ctx_release(&c);
    return rc;
}
