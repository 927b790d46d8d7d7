/*
 * patch.c - JSON Patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes strategic merge
 * patch, as kube-apiserver applies them on PATCH.
 *
 * Every entry point deep-copies the document and edits only that copy; the patch is only read.
 * The strategic merge patch follows k8s.io/apimachinery/pkg/util/strategicpatch (mergeMap with
 * MergeParallelList and IgnoreUnmatchedNulls, as the API server calls it), with the patch
 * metadata read from the OpenAPI v3 x-kubernetes-patch-* extensions instead of Go struct tags.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kubelite/openapi.h"
#include "tests/kubelite/patch.h"

#define DIRECTIVE "$patch"
#define RETAIN_KEYS "$retainKeys"
#define SET_ORDER "$setElementOrder"
#define DELETE_PRIMITIVE "$deleteFromPrimitiveList"

static int fail(char *msg, size_t msglen, int rc, const char *fmt, ...) PRINTF_LIKE(4, 5);

static int fail(char *msg, size_t msglen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (msg && msglen) {
        va_start(ap, fmt);
        vsnprintf(msg, msglen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Compact JSON of v for an error message, cut to fit out (never fails). */
static const char *dump_short(const json_t *v, char *out, size_t n)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

    if (!s) {
        snprintf(out, n, "?");
        return out;
    }
    if (strlen(s) >= n && n > 4)
        snprintf(out, n, "%.*s...", (int)(n - 4), s);
    else
        snprintf(out, n, "%s", s);
    free(s);
    return out;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
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

/* JSON equality; numbers compare by value (1 == 1.0), as decoded into Go's float64. */
static int val_eq(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return a == b;
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return !(json_number_value(a) < json_number_value(b)) &&
               !(json_number_value(a) > json_number_value(b));
    }
    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;

        if (json_object_size(a) != json_object_size(b))
            return 0;
        json_object_foreach((json_t *)a, k, v)
        {
            if (!val_eq(v, json_object_get(b, k)))
                return 0;
        }
        return 1;
    }
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!val_eq(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    default:
        return 1;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* RFC 6902 JSON Patch                                                                      */
/* ---------------------------------------------------------------------------------------- */

struct jptr {
    char **tok;
    size_t n;
};

static void jptr_release(struct jptr *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->tok[i]);
    free(p->tok);
    p->tok = NULL;
    p->n = 0;
}

/* Split an RFC 6901 pointer into unescaped tokens. Returns 0, ERR_INVALID or -ENOMEM. */
static int jptr_parse(const char *s, struct jptr *p)
{
    size_t n = 0;
    int rc = 0;

    p->tok = NULL;
    p->n = 0;
    if (!*s)
        return 0;
    if (*s != '/')
        return ERR_INVALID;
    for (const char *c = s; *c; c++)
        n += *c == '/';
    p->tok = calloc(n, sizeof(*p->tok));
    if (!p->tok)
        return -ENOMEM;
    s++;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(s, "/"), o = 0;
        char *t = malloc(len + 1);

        if (!t) {
            rc = -ENOMEM;
            goto out;
        }
        p->tok[p->n++] = t;
        for (size_t j = 0; j < len; j++) {
            if (s[j] != '~') {
                t[o++] = s[j];
            } else if (j + 1 < len && (s[j + 1] == '0' || s[j + 1] == '1')) {
                t[o++] = s[j + 1] == '0' ? '~' : '/';
                j++;
            } else {
                rc = ERR_INVALID;
                goto out;
            }
        }
        t[o] = '\0';
        s += len + (s[len] == '/');
    }
out:
    if (rc)
        jptr_release(p);
    return rc;
}

/* A decimal array index without leading zeros. */
static int parse_index(const char *t, size_t *out)
{
    size_t v = 0;

    if (!*t || (t[0] == '0' && t[1]))
        return -1;
    for (; *t; t++) {
        if (*t < '0' || *t > '9' || v > (SIZE_MAX - 9) / 10)
            return -1;
        v = v * 10 + (size_t)(*t - '0');
    }
    *out = v;
    return 0;
}

/* The value at the first n tokens of p, or NULL. */
static json_t *jptr_get(json_t *doc, const struct jptr *p, size_t n)
{
    for (size_t i = 0; i < n && doc; i++) {
        size_t ix;

        if (json_is_object(doc))
            doc = json_object_get(doc, p->tok[i]);
        else if (json_is_array(doc) && parse_index(p->tok[i], &ix) == 0)
            doc = json_array_get(doc, ix);
        else
            doc = NULL;
    }
    return doc;
}

enum jp_res { JP_OK, JP_MISSING, JP_BADINDEX, JP_ROOT, JP_NOMEM };

/* Add value (consumed) at p. */
static enum jp_res jp_add(json_t **docp, const struct jptr *p, json_t *value)
{
    json_t *parent;
    const char *last;
    size_t ix;

    if (p->n == 0) {
        json_decref(*docp);
        *docp = value;
        return JP_OK;
    }
    parent = jptr_get(*docp, p, p->n - 1);
    last = p->tok[p->n - 1];
    if (json_is_object(parent))
        return json_object_set_new(parent, last, value) ? JP_NOMEM : JP_OK;
    if (json_is_array(parent)) {
        if (strcmp(last, "-") == 0)
            return json_array_append_new(parent, value) ? JP_NOMEM : JP_OK;
        if (parse_index(last, &ix) || ix > json_array_size(parent)) {
            json_decref(value);
            return JP_BADINDEX;
        }
        return json_array_insert_new(parent, ix, value) ? JP_NOMEM : JP_OK;
    }
    json_decref(value);
    return JP_MISSING;
}

/* Remove the value at p; *removed (optional) gets a reference to it. */
static enum jp_res jp_remove(json_t *doc, const struct jptr *p, json_t **removed)
{
    json_t *parent, *v = NULL;
    const char *last;
    size_t ix;

    if (p->n == 0)
        return JP_ROOT;
    parent = jptr_get(doc, p, p->n - 1);
    last = p->tok[p->n - 1];
    if (json_is_object(parent)) {
        v = json_object_get(parent, last);
        if (!v)
            return JP_MISSING;
        json_incref(v);
        json_object_del(parent, last);
    } else if (json_is_array(parent)) {
        if (parse_index(last, &ix) || ix >= json_array_size(parent))
            return JP_BADINDEX;
        v = json_incref(json_array_get(parent, ix));
        json_array_remove(parent, ix);
    } else {
        return JP_MISSING;
    }
    if (removed)
        *removed = v;
    else
        json_decref(v);
    return JP_OK;
}

/* Replace the existing value at p with value (consumed). */
static enum jp_res jp_replace(json_t **docp, const struct jptr *p, json_t *value)
{
    json_t *parent;
    const char *last;
    size_t ix;
    enum jp_res r = JP_MISSING;

    if (p->n == 0) {
        json_decref(*docp);
        *docp = value;
        return JP_OK;
    }
    parent = jptr_get(*docp, p, p->n - 1);
    last = p->tok[p->n - 1];
    if (json_is_object(parent) && json_object_get(parent, last))
        return json_object_set_new(parent, last, value) ? JP_NOMEM : JP_OK;
    if (json_is_array(parent)) {
        if (parse_index(last, &ix) == 0 && ix < json_array_size(parent))
            return json_array_set_new(parent, ix, value) ? JP_NOMEM : JP_OK;
        r = JP_BADINDEX;
    }
    json_decref(value);
    return r;
}

enum jp_op { OP_ADD, OP_REMOVE, OP_REPLACE, OP_MOVE, OP_COPY, OP_TEST };

static const char *const jp_op_names[] = {"add", "remove", "replace", "move", "copy", "test"};

/* Message for a failed pointer operation of op on path (what names the pointer's role). */
static int jp_fail(char *msg, size_t msglen, const char *op, enum jp_res r, const char *what,
                   const char *path)
{
    switch (r) {
    case JP_NOMEM:
        return fail(msg, msglen, -ENOMEM, "jsonpatch %s operation: out of memory", op);
    case JP_BADINDEX:
        return fail(msg, msglen, ERR_INVALID,
                    "jsonpatch %s operation does not apply: unable to access invalid index: %s", op,
                    path);
    case JP_ROOT:
        return fail(msg, msglen, ERR_INVALID,
                    "jsonpatch %s operation does not apply: cannot remove the document root", op);
    default:
        return fail(msg, msglen, ERR_INVALID, "jsonpatch %s operation does not apply: %s: %s", op,
                    what, path);
    }
}

static int jp_apply_one(json_t **docp, const json_t *op, size_t idx, char *msg, size_t msglen)
{
    const char *name = json_string_value(json_object_get(op, "op"));
    const char *path = json_string_value(json_object_get(op, "path"));
    const char *from = json_string_value(json_object_get(op, "from"));
    const json_t *value = json_object_get(op, "value");
    struct jptr p = {NULL, 0}, f = {NULL, 0};
    enum jp_op kind = OP_ADD;
    enum jp_res r = JP_OK;
    json_t *v = NULL;
    char vbuf[160];
    int rc = 0;

    if (!json_is_object(op))
        return fail(msg, msglen, ERR_INVALID, "jsonpatch: operation %zu is not an object", idx);
    if (!name)
        return fail(msg, msglen, ERR_INVALID, "jsonpatch: operation %zu has no \"op\"", idx);
    while (kind <= OP_TEST && strcmp(name, jp_op_names[kind]) != 0)
        kind++;
    if (kind > OP_TEST)
        return fail(msg, msglen, ERR_INVALID, "jsonpatch: unexpected op \"%s\" in operation %zu",
                    name, idx);
    if (!path)
        return fail(msg, msglen, ERR_INVALID, "jsonpatch %s operation %zu has no \"path\"", name,
                    idx);
    if ((kind == OP_ADD || kind == OP_REPLACE || kind == OP_TEST) && !value)
        return fail(msg, msglen, ERR_INVALID, "jsonpatch %s operation %zu has no \"value\"", name,
                    idx);
    if ((kind == OP_MOVE || kind == OP_COPY) && !from)
        return fail(msg, msglen, ERR_INVALID, "jsonpatch %s operation %zu has no \"from\"", name,
                    idx);
    rc = jptr_parse(path, &p);
    if (rc == 0 && (kind == OP_MOVE || kind == OP_COPY)) {
        rc = jptr_parse(from, &f);
        if (rc == ERR_INVALID)
            path = from;
    }
    if (rc == -ENOMEM) {
        rc = fail(msg, msglen, rc, "out of memory");
        goto out;
    }
    if (rc) {
        rc = fail(msg, msglen, rc,
                  "jsonpatch %s operation does not apply: invalid JSON pointer \"%s\"", name, path);
        goto out;
    }

    switch (kind) {
    case OP_ADD:
        v = json_deep_copy(value);
        r = v ? jp_add(docp, &p, v) : JP_NOMEM;
        v = NULL;
        if (r)
            rc = jp_fail(msg, msglen, name, r, "doc is missing path", path);
        break;
    case OP_REMOVE:
        r = jp_remove(*docp, &p, NULL);
        if (r)
            rc = jp_fail(msg, msglen, name, r, "doc is missing path", path);
        break;
    case OP_REPLACE:
        v = json_deep_copy(value);
        r = v ? jp_replace(docp, &p, v) : JP_NOMEM;
        v = NULL;
        if (r)
            rc = jp_fail(msg, msglen, name, r, "doc is missing key", path);
        break;
    case OP_MOVE: {
        size_t fl = strlen(from);

        if (!jptr_get(*docp, &f, f.n)) {
            rc = jp_fail(msg, msglen, name, JP_MISSING, "doc is missing from path", from);
            break;
        }
        if (strcmp(from, path) == 0)
            break;
        if (strncmp(path, from, fl) == 0 && path[fl] == '/') {
            rc = fail(msg, msglen, ERR_INVALID,
                      "jsonpatch move operation does not apply: cannot move %s into its own "
                      "child %s",
                      from, path);
            break;
        }
        r = jp_remove(*docp, &f, &v);
        if (r) {
            rc = jp_fail(msg, msglen, name, r, "doc is missing from path", from);
            break;
        }
        r = jp_add(docp, &p, v);
        v = NULL;
        if (r)
            rc = jp_fail(msg, msglen, name, r, "doc is missing path", path);
        break;
    }
    case OP_COPY: {
        json_t *src = jptr_get(*docp, &f, f.n);

        if (!src) {
            rc = jp_fail(msg, msglen, name, JP_MISSING, "doc is missing from path", from);
            break;
        }
        v = json_deep_copy(src);
        r = v ? jp_add(docp, &p, v) : JP_NOMEM;
        v = NULL;
        if (r)
            rc = jp_fail(msg, msglen, name, r, "doc is missing path", path);
        break;
    }
    case OP_TEST: {
        json_t *cur = jptr_get(*docp, &p, p.n);

        if (!cur)
            rc = jp_fail(msg, msglen, name, JP_MISSING, "doc is missing path", path);
        else if (!val_eq(cur, value))
            rc = fail(msg, msglen, ERR_INVALID,
                      "jsonpatch test operation does not apply: testing value %s failed: is %s",
                      path, dump_short(cur, vbuf, sizeof(vbuf)));
        break;
    }
    }
out:
    json_decref(v);
    jptr_release(&p);
    jptr_release(&f);
    return rc;
}

int patch_json(const json_t *doc, const json_t *ops, json_t **out, char *msg, size_t msglen)
{
    json_t *work = NULL;
    const json_t *op;
    size_t i;
    int rc = 0;

    if (!json_is_array(ops)) {
        rc = fail(msg, msglen, ERR_INVALID,
                  "jsonpatch: the patch must be a JSON array of operations, not %s",
                  ops ? type_name(ops) : "empty");
        goto out;
    }
    work = doc ? json_deep_copy(doc) : json_null();
    if (!work) {
        rc = fail(msg, msglen, -ENOMEM, "out of memory");
        goto out;
    }
    json_array_foreach(ops, i, op)
    {
        rc = jp_apply_one(&work, op, i, msg, msglen);
        if (rc)
            goto out;
    }
    *out = work;
    work = NULL;
out:
    json_decref(work);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* RFC 7386 JSON merge patch                                                                */
/* ---------------------------------------------------------------------------------------- */

/* Merge object patch into object target (ours). */
static int mp_apply(json_t *target, const json_t *patch)
{
    const char *k;
    json_t *pv;

    json_object_foreach((json_t *)patch, k, pv)
    {
        if (json_is_null(pv)) {
            json_object_del(target, k);
        } else if (json_is_object(pv)) {
            json_t *t = json_object_get(target, k);
            int rc;

            if (!json_is_object(t)) {
                t = json_object();
                if (!t || json_object_set_new(target, k, t))
                    return -ENOMEM;
            }
            rc = mp_apply(t, pv);
            if (rc)
                return rc;
        } else if (json_object_set_new(target, k, json_deep_copy(pv))) {
            return -ENOMEM;
        }
    }
    return 0;
}

int patch_merge(const json_t *doc, const json_t *patch, json_t **out, char *msg, size_t msglen)
{
    json_t *work = NULL;
    int rc = 0;

    if (!patch) {
        rc = fail(msg, msglen, ERR_INVALID, "merge patch: empty patch");
        goto out;
    }
    if (!json_is_object(patch)) {
        /* RFC 7386: a patch that is not an object replaces the whole target. */
        work = json_deep_copy(patch);
    } else {
        work = json_is_object(doc) ? json_deep_copy(doc) : json_object();
        if (work)
            rc = mp_apply(work, patch);
    }
    if (!work || rc) {
        rc = fail(msg, msglen, -ENOMEM, "out of memory");
        goto out;
    }
    *out = work;
    work = NULL;
out:
    json_decref(work);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Kubernetes strategic merge patch                                                         */
/* ---------------------------------------------------------------------------------------- */

struct smp {
    const struct openapi *oa;
    char *msg;
    size_t msglen;
};

enum smp_strategy { SMP_NONE, SMP_MERGE, SMP_REPLACE };

/* Patch metadata of one field, from the property schema that describes it. */
struct smp_field {
    const json_t *schema; /* resolved schema of the value (for maps), or NULL */
    const json_t *items;  /* resolved schema of list items, or NULL */
    enum smp_strategy strategy;
    const char *merge_key;
};

/* An ordered set of keys (merge-key values, or the items of a primitive list). */
struct smp_keys {
    json_t **v; /* entries may be NULL (an item without the merge key) */
    size_t n;
    int owned; /* entries hold references */
};

static void smp_keys_release(struct smp_keys *k)
{
    if (k->owned)
        for (size_t i = 0; i < k->n; i++)
            json_decref(k->v[i]);
    free(k->v);
    k->v = NULL;
    k->n = 0;
}

static int smp_nomem(struct smp *s)
{
    return fail(s->msg, s->msglen, -ENOMEM, "out of memory");
}

static int smp_no_merge_key(struct smp *s, const json_t *m, const char *mk)
{
    char buf[200];

    return fail(s->msg, s->msglen, ERR_INVALID, "map: %s does not contain declared merge key: %s",
                dump_short(m, buf, sizeof(buf)), mk);
}

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void smp_field_lookup(const struct smp *s, const json_t *schema, const char *key,
                             struct smp_field *f)
{
    const json_t *prop, *r;
    const char *strat, *mk;

    memset(f, 0, sizeof(*f));
    if (!schema)
        return;
    prop = json_object_get(json_object_get(schema, "properties"), key);
    if (!prop && json_is_object(json_object_get(schema, "additionalProperties")))
        prop = json_object_get(schema, "additionalProperties");
    if (!prop)
        return;
    r = openapi_resolve(s->oa, prop);
    strat = json_string_value(json_object_get(prop, "x-kubernetes-patch-strategy"));
    if (!strat)
        strat = json_string_value(json_object_get(r, "x-kubernetes-patch-strategy"));
    mk = json_string_value(json_object_get(prop, "x-kubernetes-patch-merge-key"));
    if (!mk)
        mk = json_string_value(json_object_get(r, "x-kubernetes-patch-merge-key"));
    /* "merge,retainKeys": retainKeys only matters to the patch's author (it sends $retainKeys). */
    while (strat && *strat) {
        size_t len = strcspn(strat, ",");

        if (len == 5 && strncmp(strat, "merge", 5) == 0)
            f->strategy = SMP_MERGE;
        else if (len == 7 && strncmp(strat, "replace", 7) == 0)
            f->strategy = SMP_REPLACE;
        strat += len + (strat[len] == ',');
    }
    f->merge_key = mk;
    f->schema = r;
    /* A list's items; a struct used as a list (strategicpatch's own tests do) is its own item. */
    f->items =
        json_object_get(r, "items") ? openapi_resolve(s->oa, json_object_get(r, "items")) : r;
}

/* Index of key in keys (NULL matches NULL, as Go compares a missing merge key), or -1. */
static long smp_keys_index(const struct smp_keys *keys, const json_t *key)
{
    for (size_t i = 0; i < keys->n; i++)
        if (keys->v[i] == key || val_eq(keys->v[i], key))
            return (long)i;
    return -1;
}

/* The key of a list item: its merge-key value, or the item itself for primitive lists. */
static json_t *smp_item_key(const json_t *item, const char *mk)
{
    return mk ? json_object_get(item, mk) : (json_t *)item;
}

/* Collect the keys of list; owned keys take references (the list's items may change later). */
static int smp_keys_of(const json_t *list, const char *mk, int owned, struct smp_keys *k)
{
    size_t n = json_array_size(list);

    k->v = calloc(n ? n : 1, sizeof(*k->v));
    k->n = 0;
    k->owned = owned;
    if (!k->v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *v = smp_item_key(json_array_get(list, i), mk);

        k->v[k->n++] = owned ? json_incref(v) : v;
    }
    return 0;
}

/* A merged item with its key's positions in the patch order and in the live order. */
struct smp_ranked {
    json_t *item;
    long p, s; /* -1: absent */
};

/* Stable insertion sort by rank (p or s); absent ranks go last. Lists are short. */
static void smp_sort_ranked(struct smp_ranked *r, size_t n, int by_patch, long absent)
{
    for (size_t i = 1; i < n; i++) {
        struct smp_ranked it = r[i];
        long ix = by_patch ? it.p : it.s;
        size_t j = i;

        ix = ix < 0 ? absent : ix;
        while (j > 0) {
            long jx = by_patch ? r[j - 1].p : r[j - 1].s;
            if ((jx < 0 ? absent : jx) <= ix)
                break;
            r[j] = r[j - 1];
            j--;
        }
        r[j] = it;
    }
}

/*
 * strategicpatch's normalizeElementOrder: the merged items named by porder come in porder's
 * order, the others (server-only) in sorder's order, and the two runs are interleaved so that
 * a server-only item stays before a patch item it preceded in the live list (sorder).
 */
static int smp_normalize(struct smp *s, const json_t *merged, const char *mk,
                         const struct smp_keys *porder, const struct smp_keys *sorder, json_t **out)
{
    size_t n = json_array_size(merged), np = 0, ns = 0, i = 0, j = 0;
    struct smp_ranked *pitems = NULL, *sitems = NULL;
    json_t *res = NULL;
    int rc = 0;

    pitems = calloc(n ? n : 1, sizeof(*pitems));
    sitems = calloc(n ? n : 1, sizeof(*sitems));
    res = json_array();
    if (!pitems || !sitems || !res) {
        rc = smp_nomem(s);
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        json_t *it = json_array_get(merged, k), *key = smp_item_key(it, mk);
        struct smp_ranked r = {it, smp_keys_index(porder, key), smp_keys_index(sorder, key)};

        if (mk && !key) {
            rc = smp_no_merge_key(s, it, mk);
            goto out;
        }
        if (r.p >= 0)
            pitems[np++] = r;
        else
            sitems[ns++] = r;
    }
    smp_sort_ranked(pitems, np, 1, (long)porder->n);
    smp_sort_ranked(sitems, ns, 0, (long)sorder->n);
    while (i < ns || j < np) {
        json_t *next;

        if (j >= np)
            next = sitems[i++].item;
        else if (i >= ns)
            next = pitems[j++].item;
        else if (sitems[i].s >= 0 && pitems[j].s >= 0 && sitems[i].s < pitems[j].s)
            next = sitems[i++].item;
        else
            next = pitems[j++].item;
        if (json_array_append(res, next)) {
            rc = smp_nomem(s);
            goto out;
        }
    }
    *out = res;
    res = NULL;
out:
    free(pitems);
    free(sitems);
    json_decref(res);
    return rc;
}

static int smp_map(struct smp *s, json_t *orig, const json_t *patch, const json_t *schema,
                   json_t **out);
static int smp_new_value(struct smp *s, const json_t *pv, const struct smp_field *f,
                         const char *key, json_t **out);

enum smp_kind { K_NONE, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_BOOL, K_NULL };

static enum smp_kind smp_kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return K_OBJECT;
    case JSON_ARRAY:
        return K_ARRAY;
    case JSON_STRING:
        return K_STRING;
    case JSON_INTEGER:
    case JSON_REAL:
        return K_NUMBER;
    case JSON_TRUE:
    case JSON_FALSE:
        return K_BOOL;
    default:
        return K_NULL;
    }
}

/* The common element kind of two lists (sliceElementType). */
static int smp_elem_kind(struct smp *s, const json_t *a, const json_t *b, const char *key,
                         enum smp_kind *kind)
{
    const json_t *lists[2] = {a, b};

    *kind = K_NONE;
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < json_array_size(lists[l]); i++) {
            enum smp_kind k = smp_kind_of(json_array_get(lists[l], i));

            if (k == K_ARRAY)
                return fail(s->msg, s->msglen, ERR_INVALID,
                            "lists of lists are not supported (field %s)", key);
            if (*kind != K_NONE && k != *kind)
                return fail(s->msg, s->msglen, ERR_INVALID,
                            "list element types are not identical in field %s", key);
            *kind = k;
        }
    }
    return 0;
}

/* A list of primitives: set union, or (is_delete) the $deleteFromPrimitiveList removal. */
static int smp_list_scalars(struct smp *s, const json_t *orig, const json_t *patch, int is_delete,
                            json_t **out)
{
    struct smp_keys porder = {NULL, 0, 0}, sorder = {NULL, 0, 0};
    json_t *merged = json_array();
    const json_t *v;
    size_t i;
    int rc = 0;

    if (!merged)
        return smp_nomem(s);
    json_array_foreach(orig, i, v)
    {
        int drop = 0;

        if (is_delete) {
            for (size_t j = 0; j < json_array_size(patch) && !drop; j++)
                drop = val_eq(v, json_array_get(patch, j));
        } else {
            for (size_t j = 0; j < json_array_size(merged) && !drop; j++)
                drop = val_eq(v, json_array_get(merged, j));
        }
        if (!drop && json_array_append(merged, (json_t *)v)) {
            rc = -ENOMEM;
            goto out;
        }
    }
    if (is_delete) {
        *out = merged;
        merged = NULL;
        goto out;
    }
    json_array_foreach(patch, i, v)
    {
        int dup = 0;

        for (size_t j = 0; j < json_array_size(merged) && !dup; j++)
            dup = val_eq(v, json_array_get(merged, j));
        if (!dup && json_array_append_new(merged, json_deep_copy(v))) {
            rc = -ENOMEM;
            goto out;
        }
    }
    if (smp_keys_of(patch, NULL, 0, &porder) || smp_keys_of(orig, NULL, 0, &sorder)) {
        rc = -ENOMEM;
        goto out;
    }
    rc = smp_normalize(s, merged, NULL, &porder, &sorder, out);
out:
    if (rc == -ENOMEM)
        rc = smp_nomem(s);
    smp_keys_release(&porder);
    smp_keys_release(&sorder);
    json_decref(merged);
    return rc;
}

/*
 * A list of maps merged by merge key (mergeSlice for maps).
 *
 * view (optional) holds the keys of orig's items and receives the order strategicpatch uses
 * for the live list when it then applies $setElementOrder: there the Go code deletes items
 * from, and appends new items to, a slice that shares its backing array with the live list,
 * so that list reads as the survivors, then the first appended items, then stale entries.
 * kubectl's output depends on it, so it is reproduced: deletions shift view left, appends
 * fill it while it has room.
 */
static int smp_list_maps(struct smp *s, const json_t *orig, const json_t *patch,
                         const struct smp_field *f, const char *key, json_t **view, json_t **out)
{
    size_t vlen = json_array_size(orig), vn = vlen;
    const char *mk = f->merge_key;
    size_t np = json_array_size(patch), nrest = 0, i;
    const json_t **rest = NULL, *pv;
    struct smp_keys porder = {NULL, 0, 0}, sorder = {NULL, 0, 0};
    json_t *base = NULL, *res = NULL;
    int replace = 0, rc = 0;
    char buf[200];

    if (!mk)
        return fail(s->msg, s->msglen, ERR_INVALID, "cannot merge lists without merge key for %s",
                    key);
    rest = calloc(np ? np : 1, sizeof(*rest));
    base = json_copy((json_t *)orig);
    if (!rest || !base) {
        rc = -ENOMEM;
        goto out;
    }

    /* Special elements first: {"$patch":"delete",mk:v} and {"$patch":"replace"}. */
    json_array_foreach(patch, i, pv)
    {
        const json_t *d = json_object_get(pv, DIRECTIVE);
        const char *ds = json_string_value(d);

        if (!d) {
            rest[nrest++] = pv;
        } else if (ds && strcmp(ds, "delete") == 0) {
            const json_t *mv = json_object_get(pv, mk);

            if (!mv) {
                rc = smp_no_merge_key(s, pv, mk);
                goto out;
            }
            for (size_t j = json_array_size(base); j-- > 0;) {
                const json_t *ov = json_object_get(json_array_get(base, j), mk);
                if (ov && val_eq(ov, mv))
                    json_array_remove(base, j);
            }
            for (size_t j = 0; view && j < vn;) {
                if (view[j] && val_eq(view[j], mv)) {
                    memmove(view + j, view + j + 1, (vn - j - 1) * sizeof(*view));
                    vn--;
                } else {
                    j++;
                }
            }
        } else if (ds && strcmp(ds, "replace") == 0) {
            replace = 1;
        } else if (ds && strcmp(ds, "merge") == 0) {
            rc = fail(s->msg, s->msglen, ERR_INVALID,
                      "merging lists cannot yet be specified in the patch");
            goto out;
        } else {
            rc = fail(s->msg, s->msglen, ERR_INVALID, "unknown patch type: %s in map: %s",
                      ds ? ds : type_name(d), dump_short(pv, buf, sizeof(buf)));
            goto out;
        }
    }
    if (replace)
        json_array_clear(base);
    /* The live order after deletions, by value: merging may replace the key objects. */
    if (smp_keys_of(base, mk, 1, &sorder)) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < nrest; i++) {
        const json_t *mv = json_object_get(rest[i], mk);
        json_t *m = NULL;
        size_t j, nb = json_array_size(base);

        if (!mv) {
            rc = smp_no_merge_key(s, rest[i], mk);
            goto out;
        }
        for (j = 0; j < nb; j++) {
            const json_t *ov = json_object_get(json_array_get(base, j), mk);
            if (ov && val_eq(ov, mv))
                break;
        }
        if (j < nb) {
            rc = smp_map(s, json_incref(json_array_get(base, j)), rest[i], f->items, &m);
            if (rc)
                goto out;
            if (json_array_set_new(base, j, m)) {
                rc = -ENOMEM;
                goto out;
            }
        } else {
            json_t *empty = json_object();

            if (!empty) {
                rc = -ENOMEM;
                goto out;
            }
            rc = smp_map(s, empty, rest[i], f->items, &m);
            if (rc)
                goto out;
            if (json_array_append_new(base, m)) {
                rc = -ENOMEM;
                goto out;
            }
            if (view && !replace && vn < vlen)
                view[vn] = (json_t *)mv;
            vn++;
        }
    }
    if (replace) {
        /* The list is exactly the other elements, in the patch's order. */
        *out = base;
        base = NULL;
        goto out;
    }
    porder.v = calloc(nrest ? nrest : 1, sizeof(*porder.v));
    if (!porder.v) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < nrest; i++)
        porder.v[porder.n++] = json_object_get(rest[i], mk);
    rc = smp_normalize(s, base, mk, &porder, &sorder, &res);
    if (rc)
        goto out;
    *out = res;
    res = NULL;
out:
    if (rc == -ENOMEM)
        rc = smp_nomem(s);
    free(rest);
    smp_keys_release(&porder);
    smp_keys_release(&sorder);
    json_decref(base);
    json_decref(res);
    return rc;
}

/*
 * Merge list patch into list orig (mergeSliceHandler). orig's items may be merged in place;
 * *out is a new list. is_delete: patch is a $deleteFromPrimitiveList list. view: see
 * smp_list_maps (may be NULL).
 */
static int smp_list(struct smp *s, const json_t *orig, const json_t *patch,
                    const struct smp_field *f, const char *key, int is_delete, json_t **view,
                    json_t **out)
{
    enum smp_kind kind;
    int rc;

    if (f->strategy != SMP_MERGE && !is_delete) {
        *out = json_deep_copy(patch);
        return *out ? 0 : smp_nomem(s);
    }
    rc = smp_elem_kind(s, orig, patch, key, &kind);
    if (rc)
        return rc;
    if (kind == K_NONE) {
        *out = json_array();
        return *out ? 0 : smp_nomem(s);
    }
    if (kind != K_OBJECT || is_delete)
        return smp_list_scalars(s, orig, patch, is_delete, out);
    return smp_list_maps(s, orig, patch, f, key, view, out);
}

/* validatePatchWithSetOrderList: the patch list must follow the $setElementOrder order. */
static int smp_check_order(struct smp *s, const json_t *plist, const json_t *order, const char *mk)
{
    size_t pi = 0, si = 0, np = json_array_size(plist), no = json_array_size(order);
    char b1[200], b2[200];

    while (pi < np && si < no) {
        const json_t *pv = json_array_get(plist, pi), *ov = json_array_get(order, si);
        const char *d = json_string_value(json_object_get(pv, DIRECTIVE));
        int eq;

        if (mk && d && strcmp(d, "delete") == 0) {
            pi++;
            continue;
        }
        if (json_object_get(pv, DIRECTIVE)) {
            pi++;
            continue;
        }
        if (mk) {
            if (!json_object_get(pv, mk))
                return smp_no_merge_key(s, pv, mk);
            if (!json_object_get(ov, mk))
                return smp_no_merge_key(s, ov, mk);
            eq = val_eq(json_object_get(pv, mk), json_object_get(ov, mk));
        } else {
            eq = val_eq(pv, ov);
        }
        pi += eq;
        si++;
    }
    while (pi < np && mk) {
        const char *d = json_string_value(json_object_get(json_array_get(plist, pi), DIRECTIVE));
        if (!d)
            break;
        pi++;
    }
    if (pi < np && no > 0)
        return fail(s->msg, s->msglen, ERR_INVALID,
                    "the order in patch list %s doesn't match $setElementOrder list %s",
                    dump_short(plist, b1, sizeof(b1)), dump_short(order, b2, sizeof(b2)));
    return 0;
}

/* Process "$setElementOrder/<field>" (mergePatchIntoOriginal); marks <field> done. */
static int smp_set_order(struct smp *s, json_t *orig, const json_t *patch, const json_t *schema,
                         const char *dkey, const json_t *order, json_t *done)
{
    const char *field = dkey + strlen(SET_ORDER) + 1;
    json_t *ol, *merged = NULL, *res = NULL;
    const json_t *pl;
    struct smp_keys porder = {NULL, 0, 0}, sorder = {NULL, 0, 0}, view = {NULL, 0, 0};
    struct smp_field f;
    enum smp_kind kind;
    const char *mk;
    int rc = 0;

    if (dkey[strlen(SET_ORDER)] != '/' || !json_is_array(order))
        return fail(s->msg, s->msglen, ERR_INVALID,
                    "invalid patch format of setElementOrder list: %s", dkey);
    ol = json_object_get(orig, field);
    pl = json_object_get(patch, field);
    if ((ol && !json_is_array(ol)) || (pl && !json_is_array(pl)))
        return fail(s->msg, s->msglen, ERR_INVALID,
                    "invalid patch format of setElementOrder list: %s is not a list", field);
    if (json_object_set_new(done, field, json_true()))
        return smp_nomem(s);
    smp_field_lookup(s, schema, field, &f);
    mk = f.strategy == SMP_MERGE ? f.merge_key : NULL;
    if (pl) {
        rc = smp_check_order(s, pl, order, mk);
        if (rc)
            return rc;
    }
    if (!ol && !pl)
        return 0;
    rc = smp_elem_kind(s, ol, pl, field, &kind);
    if (rc)
        return rc;
    /*
     * Keep the live order by value (owned: merging may replace the key objects); view is the
     * order the merge leaves behind (smp_list_maps), borrowing from sorder and the patch.
     */
    if (kind == K_OBJECT && !mk)
        mk = f.merge_key;
    if (ol && !(kind == K_OBJECT && !mk)) {
        if (smp_keys_of(ol, kind == K_OBJECT ? mk : NULL, 1, &sorder) ||
            !(view.v = calloc(sorder.n + 1, sizeof(*view.v)))) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(view.v, sorder.v, sorder.n * sizeof(*view.v));
        view.n = sorder.n;
    }
    if (ol && pl) {
        rc = smp_list(s, ol, pl, &f, field, 0, view.v, &merged);
    } else if (pl) {
        rc = smp_new_value(s, pl, &f, field, &merged);
    } else {
        merged = json_copy(ol);
        if (!merged) {
            rc = -ENOMEM;
            goto out;
        }
    }
    if (rc)
        goto out;
    if (kind == K_NONE || (kind == K_OBJECT && !mk) || !json_is_array(merged)) {
        /* Nothing to order, or items that cannot be identified: keep the merge result. */
        res = merged;
        merged = NULL;
    } else {
        porder.v = calloc(json_array_size(order) + 1, sizeof(*porder.v));
        if (!porder.v) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < json_array_size(order); i++) {
            const json_t *ov = json_array_get(order, i);
            json_t *kv = smp_item_key(ov, kind == K_OBJECT ? mk : NULL);

            if (!kv) {
                rc = smp_no_merge_key(s, ov, mk);
                goto out;
            }
            porder.v[porder.n++] = kv;
        }
        rc = smp_normalize(s, merged, kind == K_OBJECT ? mk : NULL, &porder, &view, &res);
        if (rc)
            goto out;
    }
    if (json_object_set_new(orig, field, res)) {
        res = NULL;
        rc = -ENOMEM;
        goto out;
    }
    res = NULL;
out:
    if (rc == -ENOMEM)
        rc = smp_nomem(s);
    smp_keys_release(&porder);
    smp_keys_release(&view);
    smp_keys_release(&sorder);
    json_decref(merged);
    json_decref(res);
    return rc;
}

/*
 * A patch value for a field the document lacks (or holds with another type): merged into an
 * empty value so that directives and nulls do not end up in the object. *out NULL: drop it.
 */
static int smp_new_value(struct smp *s, const json_t *pv, const struct smp_field *f,
                         const char *key, json_t **out)
{
    json_t *empty = NULL;
    const char *d;

    *out = NULL;
    if (json_is_object(pv)) {
        d = json_string_value(json_object_get(pv, DIRECTIVE));
        if (d && strcmp(d, "delete") == 0)
            return 0;
        if (f->strategy == SMP_REPLACE) {
            *out = json_deep_copy(pv);
            return *out ? 0 : smp_nomem(s);
        }
        empty = json_object();
        if (!empty)
            return smp_nomem(s);
        return smp_map(s, empty, pv, f->schema, out);
    }
    if (json_is_array(pv)) {
        int rc;

        empty = json_array();
        if (!empty)
            return smp_nomem(s);
        rc = smp_list(s, empty, pv, f, key, 0, NULL, out);
        json_decref(empty);
        return rc;
    }
    *out = json_deep_copy(pv);
    return *out ? 0 : smp_nomem(s);
}

/* Merge patch value pv into orig[k]. */
static int smp_field_merge(struct smp *s, json_t *orig, const char *k, const json_t *pv,
                           const json_t *schema)
{
    json_t *ov = json_object_get(orig, k), *nv = NULL;
    struct smp_field f;
    int rc = 0;

    if (json_is_null(pv)) {
        json_object_del(orig, k);
        return 0;
    }
    smp_field_lookup(s, schema, k, &f);
    if (!ov || (json_is_object(ov) != json_is_object(pv)) ||
        (json_is_array(ov) != json_is_array(pv))) {
        rc = smp_new_value(s, pv, &f, k, &nv);
        if (rc)
            return rc;
        if (!nv) {
            json_object_del(orig, k);
            return 0;
        }
    } else if (json_is_object(pv)) {
        if (f.strategy == SMP_REPLACE) {
            nv = json_deep_copy(pv);
        } else {
            rc = smp_map(s, json_incref(ov), pv, f.schema, &nv);
            if (rc)
                return rc;
        }
    } else if (json_is_array(pv)) {
        rc = smp_list(s, ov, pv, &f, k, 0, NULL, &nv);
        if (rc)
            return rc;
    } else {
        nv = json_deep_copy(pv);
    }
    if (!nv || json_object_set_new(orig, k, nv))
        return smp_nomem(s);
    return 0;
}

/* $retainKeys: the patch may only name retained keys; the others leave orig. */
static int smp_retain_keys(struct smp *s, json_t *orig, const json_t *patch, const json_t *rk)
{
    const char *k;
    json_t *v;
    void *tmp;

    if (!json_is_array(rk))
        return fail(s->msg, s->msglen, ERR_INVALID, "invalid patch format of retainKeys");
    json_object_foreach((json_t *)patch, k, v)
    {
        int found = 0;

        if (json_is_null(v) || has_prefix(k, DELETE_PRIMITIVE) || has_prefix(k, SET_ORDER) ||
            strcmp(k, RETAIN_KEYS) == 0 || strcmp(k, DIRECTIVE) == 0)
            continue;
        for (size_t i = 0; i < json_array_size(rk) && !found; i++)
            found = json_is_string(json_array_get(rk, i)) &&
                    strcmp(json_string_value(json_array_get(rk, i)), k) == 0;
        if (!found)
            return fail(s->msg, s->msglen, ERR_INVALID,
                        "invalid patch format of retainKeys: %s is not in the $retainKeys list", k);
    }
    json_object_foreach_safe(orig, tmp, k, v)
    {
        int found = 0;

        for (size_t i = 0; i < json_array_size(rk) && !found; i++)
            found = json_is_string(json_array_get(rk, i)) &&
                    strcmp(json_string_value(json_array_get(rk, i)), k) == 0;
        if (!found)
            json_object_del(orig, k);
    }
    return 0;
}

/* Merge object patch into orig (consumed, even on failure); *out gets the result (mergeMap). */
static int smp_map(struct smp *s, json_t *orig, const json_t *patch, const json_t *schema,
                   json_t **out)
{
    const json_t *d = json_object_get(patch, DIRECTIVE), *rk;
    json_t *done = NULL, *pv;
    const char *k;
    char buf[200];
    int rc = 0;

    if (d) {
        const char *ds = json_string_value(d);

        if (ds && strcmp(ds, "delete") == 0) {
            /* The whole map goes: an empty map, as strategicpatch returns. */
            json_decref(orig);
            orig = json_object();
            if (!orig)
                return smp_nomem(s);
            *out = orig;
            return 0;
        } else if (ds && strcmp(ds, "replace") == 0) {
            json_decref(orig);
            orig = json_object();
            if (!orig)
                return smp_nomem(s);
        } else if (!ds || strcmp(ds, "merge") != 0) {
            rc = fail(s->msg, s->msglen, ERR_INVALID, "unknown patch type: %s in map: %s",
                      ds ? ds : type_name(d), dump_short(patch, buf, sizeof(buf)));
            goto out;
        }
    }
    rk = json_object_get(patch, RETAIN_KEYS);
    if (rk) {
        rc = smp_retain_keys(s, orig, patch, rk);
        if (rc)
            goto out;
    }
    done = json_object();
    if (!done) {
        rc = smp_nomem(s);
        goto out;
    }
    json_object_foreach((json_t *)patch, k, pv)
    {
        if (!has_prefix(k, SET_ORDER))
            continue;
        rc = smp_set_order(s, orig, patch, schema, k, pv, done);
        if (rc)
            goto out;
    }
    json_object_foreach((json_t *)patch, k, pv)
    {
        if (strcmp(k, DIRECTIVE) == 0 || strcmp(k, RETAIN_KEYS) == 0 || has_prefix(k, SET_ORDER) ||
            has_prefix(k, DELETE_PRIMITIVE) || json_object_get(done, k))
            continue;
        rc = smp_field_merge(s, orig, k, pv, schema);
        if (rc)
            goto out;
    }
    /* Parallel deletion lists last, so a list merged above loses the values as well. */
    json_object_foreach((json_t *)patch, k, pv)
    {
        const char *field = k + strlen(DELETE_PRIMITIVE) + 1;
        json_t *ov, *nv = NULL;
        struct smp_field f;

        if (!has_prefix(k, DELETE_PRIMITIVE))
            continue;
        if (k[strlen(DELETE_PRIMITIVE)] != '/' || !(json_is_array(pv) || json_is_null(pv))) {
            rc = fail(s->msg, s->msglen, ERR_INVALID, "invalid patch format of primitive list: %s",
                      k);
            goto out;
        }
        ov = json_object_get(orig, field);
        if (json_is_null(pv)) {
            json_object_del(orig, field);
            continue;
        }
        if (!json_is_array(ov))
            continue;
        smp_field_lookup(s, schema, field, &f);
        rc = smp_list(s, ov, pv, &f, field, 1, NULL, &nv);
        if (rc)
            goto out;
        if (json_object_set_new(orig, field, nv)) {
            rc = smp_nomem(s);
            goto out;
        }
    }
    *out = orig;
    orig = NULL;
out:
    json_decref(done);
    json_decref(orig);
    return rc;
}

int patch_strategic(const json_t *doc, const json_t *patch, const struct openapi *oa,
                    const json_t *schema, json_t **out, char *msg, size_t msglen)
{
    struct smp s = {oa, msg, msglen};
    json_t *work = NULL, *res = NULL;
    int rc = 0;

    if (!json_is_object(patch))
        return fail(msg, msglen, ERR_INVALID, "strategic merge patch must be a JSON object, not %s",
                    patch ? type_name(patch) : "empty");
    if (doc && !json_is_object(doc))
        return fail(msg, msglen, ERR_INVALID, "invalid JSON document: %s is not an object",
                    type_name(doc));
    work = doc ? json_deep_copy(doc) : json_object();
    if (!work)
        return fail(msg, msglen, -ENOMEM, "out of memory");
    rc = smp_map(&s, work, patch, openapi_resolve(oa, schema), &res);
    if (rc == 0)
        *out = res;
    return rc;
}
