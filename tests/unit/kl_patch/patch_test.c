/*
 * patch_test.c - JSON Patch, JSON merge patch and strategic merge patch (tests/kubelite/patch.c).
 *
 * Every call goes through apply(), which also checks that the inputs were not modified (deep
 * comparison with a saved copy, refcounts unchanged), that *out is left alone on failure, and
 * that the result shares nothing with the inputs (the inputs are freed before it is inspected).
 */
#include <jansson.h>

#include "tests/kubelite/openapi.h"
#include "tests/kubelite/patch.h"
#include "tests/unit/unit.h"

enum kind { JP, MP, SMP };

static json_t *jparse(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &e);

    if (!j) {
        fprintf(stderr, "  bad test JSON (%s): %s\n", e.text, s);
        exit(1);
    }
    return j;
}

static char *jdump(const json_t *j)
{
    return j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("(null)");
}

static void check_json_at(const char *file, int line, const json_t *got, const json_t *want)
{
    if (!got || !json_equal(got, want)) {
        char *g = jdump(got), *w = jdump(want);
        fprintf(stderr, "  %s:%d: JSON differs:\n    got  %s\n    want %s\n", file, line, g, w);
        free(g);
        free(w);
        unit__failures++;
    }
}

static void check_json_str_at(const char *file, int line, const json_t *got, const char *want)
{
    json_t *w = jparse(want);
    check_json_at(file, line, got, w);
    json_decref(w);
}

#define CHECK_JSON(got, want) check_json_str_at(__FILE__, __LINE__, (got), (want))
#define CHECK_JSONV(got, want) check_json_at(__FILE__, __LINE__, (got), (want))

/* Run one patch; doc may be NULL. Checks the purity contract. */
static int apply(enum kind k, const char *doc, const char *patch, const struct openapi *oa,
                 const json_t *schema, json_t **out, char *msg, size_t msglen)
{
    json_t *d = doc ? jparse(doc) : NULL, *p = jparse(patch);
    json_t *d0 = d ? json_deep_copy(d) : NULL, *p0 = json_deep_copy(p);
    json_t *sentinel = json_string("untouched"), *o = sentinel;
    int rc = 0;

    msg[0] = '\0';
    switch (k) {
    case JP:
        rc = patch_json(d, p, &o, msg, msglen);
        break;
    case MP:
        rc = patch_merge(d, p, &o, msg, msglen);
        break;
    case SMP:
        rc = patch_strategic(d, p, oa, schema, &o, msg, msglen);
        break;
    }
    /* null, true and false are static singletons without a count */
    if (d) {
        CHECK(json_equal(d, d0));
        if (!json_is_null(d) && !json_is_boolean(d))
            CHECK_INT(d->refcount, 1);
    }
    CHECK(json_equal(p, p0));
    if (!json_is_null(p) && !json_is_boolean(p))
        CHECK_INT(p->refcount, 1);
    if (rc) {
        CHECK(o == sentinel);
        CHECK(msg[0] != '\0');
        o = NULL;
    } else {
        CHECK(o != NULL && o != sentinel);
        if (!json_is_null(o) && !json_is_boolean(o))
            CHECK(o != d && o != p);
    }
    json_decref(d);
    json_decref(d0);
    json_decref(p);
    json_decref(p0);
    json_decref(sentinel);
    *out = o;
    return rc;
}

#define APPLY_OK(k, doc, patch, oa, schema, want)                                                  \
    do {                                                                                           \
        json_t *o_ = NULL;                                                                         \
        char m_[512];                                                                              \
        int rc_ = apply(k, doc, patch, oa, schema, &o_, m_, sizeof(m_));                           \
        if (rc_)                                                                                   \
            fprintf(stderr, "  %s:%d: unexpected error: %s\n", __FILE__, __LINE__, m_);            \
        CHECK_INT(rc_, 0);                                                                         \
        CHECK_JSON(o_, want);                                                                      \
        json_decref(o_);                                                                           \
    } while (0)

#define APPLY_ERR(k, doc, patch, oa, schema, want_rc, want_msg)                                    \
    do {                                                                                           \
        json_t *o_ = NULL;                                                                         \
        char m_[512];                                                                              \
        int rc_ = apply(k, doc, patch, oa, schema, &o_, m_, sizeof(m_));                           \
        CHECK_INT(rc_, want_rc);                                                                   \
        CHECK_STR(m_, want_msg);                                                                   \
        json_decref(o_);                                                                           \
    } while (0)

#define JP_OK(doc, ops, want) APPLY_OK(JP, doc, ops, NULL, NULL, want)
#define JP_ERR(doc, ops, m) APPLY_ERR(JP, doc, ops, NULL, NULL, ERR_INVALID, m)
#define MP_OK(doc, p, want) APPLY_OK(MP, doc, p, NULL, NULL, want)

/* Walk "/a/0/b" (no escapes) in a test document. */
static json_t *tget(json_t *root, const char *path)
{
    char buf[256], *save = NULL, *t;

    snprintf(buf, sizeof(buf), "%s", path);
    for (t = strtok_r(buf, "/", &save); t && root; t = strtok_r(NULL, "/", &save))
        root =
            json_is_array(root) ? json_array_get(root, (size_t)atoi(t)) : json_object_get(root, t);
    return root;
}

/* Set (or with value NULL delete) the member/element at path in a test document. */
static void tset(json_t *root, const char *path, const char *value)
{
    char parent[256];
    const char *last = strrchr(path, '/') + 1;
    json_t *par;

    snprintf(parent, sizeof(parent), "%.*s", (int)(last - 1 - path), path);
    par = tget(root, parent);
    REQUIRE(par != NULL);
    if (json_is_array(par)) {
        if (value && (size_t)atoi(last) == json_array_size(par))
            REQUIRE(json_array_append_new(par, jparse(value)) == 0);
        else if (value)
            REQUIRE(json_array_set_new(par, (size_t)atoi(last), jparse(value)) == 0);
        else
            REQUIRE(json_array_remove(par, (size_t)atoi(last)) == 0);
    } else {
        if (value)
            REQUIRE(json_object_set_new(par, last, jparse(value)) == 0);
        else
            REQUIRE(json_object_del(par, last) == 0);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* JSON Patch                                                                               */
/* ---------------------------------------------------------------------------------------- */

static void t_jp_rfc_add_remove_replace(void)
{
    /* RFC 6902 appendix A.1-A.5, A.10, A.11, A.16 */
    JP_OK("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
          "{\"baz\":\"qux\",\"foo\":\"bar\"}");
    JP_OK("{\"foo\":[\"bar\",\"baz\"]}", "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
          "{\"foo\":[\"bar\",\"qux\",\"baz\"]}");
    JP_OK("{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]",
          "{\"foo\":\"bar\"}");
    JP_OK("{\"foo\":[\"bar\",\"qux\",\"baz\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
          "{\"foo\":[\"bar\",\"baz\"]}");
    JP_OK("{\"baz\":\"qux\",\"foo\":\"bar\"}",
          "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
          "{\"baz\":\"boo\",\"foo\":\"bar\"}");
    JP_OK("{\"foo\":\"bar\"}",
          "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\":{}}}]",
          "{\"foo\":\"bar\",\"child\":{\"grandchild\":{}}}");
    JP_OK("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\",\"xyz\":123}]",
          "{\"foo\":\"bar\",\"baz\":\"qux\"}");
    JP_OK("{\"foo\":[\"bar\"]}",
          "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\",\"def\"]}]",
          "{\"foo\":[\"bar\",[\"abc\",\"def\"]]}");
    /* add at index == length appends; add over an existing member replaces it */
    JP_OK("{\"a\":[1,2]}", "[{\"op\":\"add\",\"path\":\"/a/2\",\"value\":3}]", "{\"a\":[1,2,3]}");
    JP_OK("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":{\"b\":null}}]",
          "{\"a\":{\"b\":null}}");
    /* whole document */
    JP_OK("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"\",\"value\":[1]}]", "[1]");
    JP_OK("{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"\",\"value\":{\"b\":2}}]", "{\"b\":2}");
    JP_OK("{\"a\":1}", "[]", "{\"a\":1}");
    /* replace an array element; value null is a value */
    JP_OK("{\"a\":[1,2,3]}", "[{\"op\":\"replace\",\"path\":\"/a/2\",\"value\":null}]",
          "{\"a\":[1,2,null]}");
}

static void t_jp_move_copy(void)
{
    /* RFC 6902 A.6, A.7 */
    JP_OK("{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{\"corge\":\"grault\"}}",
          "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/thud\"}]",
          "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\",\"thud\":\"fred\"}}");
    JP_OK("{\"foo\":[\"all\",\"grass\",\"cows\",\"eat\"]}",
          "[{\"op\":\"move\",\"from\":\"/foo/1\",\"path\":\"/foo/3\"}]",
          "{\"foo\":[\"all\",\"cows\",\"eat\",\"grass\"]}");
    JP_OK("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a\"}]", "{\"a\":1}");
    /* copy is deep: changing the copy leaves the source alone */
    JP_OK("{\"a\":{\"b\":1}}",
          "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/c\"},"
          "{\"op\":\"replace\",\"path\":\"/c/b\",\"value\":2}]",
          "{\"a\":{\"b\":1},\"c\":{\"b\":2}}");
    JP_OK("{\"l\":[1,2]}", "[{\"op\":\"copy\",\"from\":\"/l/0\",\"path\":\"/l/-\"}]",
          "{\"l\":[1,2,1]}");
    JP_ERR("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b/c\"}]",
           "jsonpatch move operation does not apply: cannot move /a into its own child /a/b/c");
    JP_ERR("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/nope\",\"path\":\"/b\"}]",
           "jsonpatch move operation does not apply: doc is missing from path: /nope");
    JP_ERR("{\"a\":1}", "[{\"op\":\"copy\",\"from\":\"/nope\",\"path\":\"/b\"}]",
           "jsonpatch copy operation does not apply: doc is missing from path: /nope");
    JP_ERR("{\"a\":1}", "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/x/y\"}]",
           "jsonpatch copy operation does not apply: doc is missing path: /x/y");
}

static void t_jp_test_op(void)
{
    /* RFC 6902 A.8, A.9, A.14, A.15 */
    JP_OK("{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}",
          "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"},"
          "{\"op\":\"test\",\"path\":\"/foo/1\",\"value\":2}]",
          "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}");
    JP_ERR("{\"baz\":\"qux\"}", "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"bar\"}]",
           "jsonpatch test operation does not apply: testing value /baz failed: is \"qux\"");
    JP_OK("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]",
          "{\"/\":9,\"~1\":10}");
    JP_ERR("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":\"10\"}]",
           "jsonpatch test operation does not apply: testing value /~01 failed: is 10");
    /* numbers by value, objects unordered, arrays ordered, whole document */
    JP_OK("{\"n\":1}", "[{\"op\":\"test\",\"path\":\"/n\",\"value\":1.0}]", "{\"n\":1}");
    JP_OK("{\"o\":{\"a\":1,\"b\":[1,2]}}",
          "[{\"op\":\"test\",\"path\":\"/o\",\"value\":{\"b\":[1,2],\"a\":1}}]",
          "{\"o\":{\"a\":1,\"b\":[1,2]}}");
    JP_ERR("{\"o\":{\"b\":[1,2]}}", "[{\"op\":\"test\",\"path\":\"/o/b\",\"value\":[2,1]}]",
           "jsonpatch test operation does not apply: testing value /o/b failed: is [1,2]");
    JP_OK("{\"a\":1}", "[{\"op\":\"test\",\"path\":\"\",\"value\":{\"a\":1}}]", "{\"a\":1}");
    JP_ERR("{\"a\":1}", "[{\"op\":\"test\",\"path\":\"/b\",\"value\":null}]",
           "jsonpatch test operation does not apply: doc is missing path: /b");
    /* test then change: the kubectl/controller optimistic-lock idiom */
    JP_OK("{\"metadata\":{\"resourceVersion\":\"5\"},\"spec\":{\"replicas\":1}}",
          "[{\"op\":\"test\",\"path\":\"/metadata/resourceVersion\",\"value\":\"5\"},"
          "{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}]",
          "{\"metadata\":{\"resourceVersion\":\"5\"},\"spec\":{\"replicas\":3}}");
}

static void t_jp_pointer_escapes(void)
{
    JP_OK("{\"metadata\":{\"labels\":{}}}",
          "[{\"op\":\"add\",\"path\":\"/metadata/labels/app.kubernetes.io~1name\",\"value\":\"x\"},"
          "{\"op\":\"add\",\"path\":\"/metadata/labels/a~0b\",\"value\":\"y\"}]",
          "{\"metadata\":{\"labels\":{\"app.kubernetes.io/name\":\"x\",\"a~b\":\"y\"}}}");
    /* "~01" is "~1", not "/" */
    JP_OK("{\"~1\":1,\"/\":2}", "[{\"op\":\"remove\",\"path\":\"/~01\"}]", "{\"/\":2}");
    JP_OK("{\"\":1}", "[{\"op\":\"replace\",\"path\":\"/\",\"value\":2}]", "{\"\":2}");
    JP_ERR("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a~2\",\"value\":1}]",
           "jsonpatch add operation does not apply: invalid JSON pointer \"/a~2\"");
    JP_ERR("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a~\",\"value\":1}]",
           "jsonpatch add operation does not apply: invalid JSON pointer \"/a~\"");
    JP_ERR("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"a/b\",\"value\":1}]",
           "jsonpatch add operation does not apply: invalid JSON pointer \"a/b\"");
    JP_ERR("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"a\",\"path\":\"/b\"}]",
           "jsonpatch move operation does not apply: invalid JSON pointer \"a\"");
}

static void t_jp_array_bounds(void)
{
    JP_ERR("{\"foo\":[\"a\"]}", "[{\"op\":\"add\",\"path\":\"/foo/2\",\"value\":1}]",
           "jsonpatch add operation does not apply: unable to access invalid index: /foo/2");
    JP_ERR("{\"foo\":[\"a\",\"b\"]}", "[{\"op\":\"add\",\"path\":\"/foo/01\",\"value\":1}]",
           "jsonpatch add operation does not apply: unable to access invalid index: /foo/01");
    JP_ERR("{\"foo\":[\"a\"]}", "[{\"op\":\"add\",\"path\":\"/foo/-1\",\"value\":1}]",
           "jsonpatch add operation does not apply: unable to access invalid index: /foo/-1");
    JP_ERR("{\"foo\":[\"a\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
           "jsonpatch remove operation does not apply: unable to access invalid index: /foo/1");
    JP_ERR("{\"foo\":[\"a\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/-\"}]",
           "jsonpatch remove operation does not apply: unable to access invalid index: /foo/-");
    JP_ERR("{\"foo\":[\"a\"]}", "[{\"op\":\"replace\",\"path\":\"/foo/1\",\"value\":1}]",
           "jsonpatch replace operation does not apply: unable to access invalid index: /foo/1");
    JP_ERR("{\"foo\":[\"a\"]}",
           "[{\"op\":\"add\",\"path\":\"/foo/99999999999999999999999\",\"value\":1}]",
           "jsonpatch add operation does not apply: unable to access invalid index: "
           "/foo/99999999999999999999999");
    JP_OK("{\"foo\":[\"a\"]}", "[{\"op\":\"add\",\"path\":\"/foo/0\",\"value\":\"z\"}]",
          "{\"foo\":[\"z\",\"a\"]}");
    /* a pointer through a missing index or a scalar does not exist */
    JP_ERR("{\"foo\":[{\"a\":1}]}", "[{\"op\":\"add\",\"path\":\"/foo/3/a\",\"value\":1}]",
           "jsonpatch add operation does not apply: doc is missing path: /foo/3/a");
    JP_ERR("{\"foo\":\"s\"}", "[{\"op\":\"add\",\"path\":\"/foo/a\",\"value\":1}]",
           "jsonpatch add operation does not apply: doc is missing path: /foo/a");
}

static void t_jp_missing_targets(void)
{
    /* RFC 6902 A.12 */
    JP_ERR("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz/bat\",\"value\":\"qux\"}]",
           "jsonpatch add operation does not apply: doc is missing path: /baz/bat");
    JP_ERR("{\"spec\":{}}", "[{\"op\":\"replace\",\"path\":\"/spec/foo\",\"value\":1}]",
           "jsonpatch replace operation does not apply: doc is missing key: /spec/foo");
    JP_ERR("{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"/x\"}]",
           "jsonpatch remove operation does not apply: doc is missing path: /x");
    JP_ERR("{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"\"}]",
           "jsonpatch remove operation does not apply: cannot remove the document root");
}

static void t_jp_malformed(void)
{
    JP_ERR("{}", "{\"op\":\"add\"}",
           "jsonpatch: the patch must be a JSON array of operations, not object");
    JP_ERR("{}", "[1]", "jsonpatch: operation 0 is not an object");
    JP_ERR("{}", "[{\"op\":\"test\",\"path\":\"\",\"value\":{}},{\"op\":\"frob\",\"path\":\"/a\"}]",
           "jsonpatch: unexpected op \"frob\" in operation 1");
    JP_ERR("{}", "[{\"path\":\"/a\"}]", "jsonpatch: operation 0 has no \"op\"");
    JP_ERR("{}", "[{\"op\":7,\"path\":\"/a\"}]", "jsonpatch: operation 0 has no \"op\"");
    JP_ERR("{}", "[{\"op\":\"add\",\"value\":1}]", "jsonpatch add operation 0 has no \"path\"");
    JP_ERR("{}", "[{\"op\":\"add\",\"path\":\"/a\"}]",
           "jsonpatch add operation 0 has no \"value\"");
    JP_ERR("{}", "[{\"op\":\"replace\",\"path\":\"/a\"}]",
           "jsonpatch replace operation 0 has no \"value\"");
    JP_ERR("{}", "[{\"op\":\"test\",\"path\":\"/a\"}]",
           "jsonpatch test operation 0 has no \"value\"");
    JP_ERR("{\"a\":1}", "[{\"op\":\"move\",\"path\":\"/b\"}]",
           "jsonpatch move operation 0 has no \"from\"");
    JP_ERR("{\"a\":1}", "[{\"op\":\"copy\",\"path\":\"/b\",\"from\":5}]",
           "jsonpatch copy operation 0 has no \"from\"");
    /* a stray "from" on an op that does not use it is ignored */
    JP_OK("{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"/a\",\"from\":\"bad\"}]", "{}");
}

static void t_jp_atomic(void)
{
    /* the first op applied to the copy; the failing second leaves doc and *out alone */
    JP_ERR("{\"a\":1,\"l\":[1]}",
           "[{\"op\":\"replace\",\"path\":\"/a\",\"value\":2},"
           "{\"op\":\"add\",\"path\":\"/l/0\",\"value\":0},"
           "{\"op\":\"remove\",\"path\":\"/missing\"}]",
           "jsonpatch remove operation does not apply: doc is missing path: /missing");
}

static void t_jp_null_args(void)
{
    json_t *out = NULL, *ops = jparse("[{\"op\":\"add\",\"path\":\"\",\"value\":{\"a\":1}}]");
    json_t *bad = jparse("{\"op\":\"add\"}");
    char msg[128] = "";

    /* a NULL document is the JSON null document */
    CHECK_INT(patch_json(NULL, ops, &out, msg, sizeof(msg)), 0);
    CHECK_JSON(out, "{\"a\":1}");
    json_decref(out);
    out = NULL;
    CHECK_INT(patch_json(ops, NULL, &out, msg, sizeof(msg)), ERR_INVALID);
    CHECK_STR(msg, "jsonpatch: the patch must be a JSON array of operations, not empty");
    CHECK(out == NULL);
    /* msg may be NULL; a short buffer is truncated, not overrun */
    CHECK_INT(patch_json(ops, bad, &out, NULL, 0), ERR_INVALID);
    CHECK_INT(patch_json(ops, bad, &out, msg, 10), ERR_INVALID);
    CHECK_STR(msg, "jsonpatch");
    CHECK(out == NULL);
    json_decref(ops);
    json_decref(bad);
}

/* ---------------------------------------------------------------------------------------- */
/* Merge patch                                                                              */
/* ---------------------------------------------------------------------------------------- */

static void t_mp_rfc7386(void)
{
    /* RFC 7386 appendix A, all of it */
    MP_OK("{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    MP_OK("{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}");
    MP_OK("{\"a\":\"b\"}", "{\"a\":null}", "{}");
    MP_OK("{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}");
    MP_OK("{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    MP_OK("{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}");
    MP_OK("{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}");
    MP_OK("{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}");
    MP_OK("[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]");
    MP_OK("{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]");
    MP_OK("{\"a\":\"foo\"}", "null", "null");
    MP_OK("{\"a\":\"foo\"}", "\"bar\"", "\"bar\"");
    MP_OK("{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}");
    MP_OK("[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}");
    MP_OK("{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}");
}

static void t_mp_kube(void)
{
    /* labels: null deletes one, others merge; lists are replaced whole; nulls inside arrays stay */
    MP_OK("{\"metadata\":{\"labels\":{\"a\":\"1\",\"b\":\"2\"}},\"spec\":{\"l\":[1,2,3]}}",
          "{\"metadata\":{\"labels\":{\"a\":null,\"c\":\"3\"}},\"spec\":{\"l\":[{\"x\":null}]}}",
          "{\"metadata\":{\"labels\":{\"b\":\"2\",\"c\":\"3\"}},\"spec\":{\"l\":[{\"x\":null}]}}");
    /* deleting a missing key is fine; an object replaces a scalar */
    MP_OK("{\"a\":1}", "{\"zz\":null,\"a\":{\"b\":{\"c\":1}}}", "{\"a\":{\"b\":{\"c\":1}}}");
    MP_OK(NULL, "{\"a\":1}", "{\"a\":1}");
    MP_OK("{\"a\":1}", "{}", "{\"a\":1}");
    /* strategic directives mean nothing to a merge patch */
    MP_OK("{\"l\":[1]}", "{\"$patch\":\"replace\",\"l\":[2]}",
          "{\"l\":[2],\"$patch\":\"replace\"}");
}

/* ---------------------------------------------------------------------------------------- */
/* Strategic merge patch: synthetic schema (test vectors of strategicpatch's own tests)      */
/* ---------------------------------------------------------------------------------------- */

static const char *const TEST_DOC =
    "{\"components\":{\"schemas\":{"
    "\"test.Obj\":{\"type\":\"object\","
    " \"x-kubernetes-group-version-kind\":[{\"group\":\"test\",\"version\":\"v1\",\"kind\":\"Obj\"}"
    "],"
    " \"properties\":{"
    "  \"mergingList\":{\"type\":\"array\",\"items\":{\"allOf\":[{\"$ref\":\"#/components/schemas/"
    "test.Item\"}],\"default\":{}},\"x-kubernetes-patch-strategy\":\"merge\","
    "\"x-kubernetes-patch-merge-key\":\"name\"},"
    "  \"mergingIntList\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},"
    "\"x-kubernetes-patch-strategy\":\"merge\"},"
    "  "
    "\"nonMergingList\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/components/schemas/"
    "test.Item\"}},"
    "  \"noKeyList\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/components/schemas/test.Item\"},"
    "\"x-kubernetes-patch-strategy\":\"merge\"},"
    "  \"simpleMap\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
    "  \"itemMap\":{\"type\":\"object\",\"additionalProperties\":{\"$ref\":\"#/components/schemas/"
    "test.Item\"}},"
    "  \"replaceMap\":{\"type\":\"object\",\"x-kubernetes-patch-strategy\":\"replace\","
    "\"additionalProperties\":{\"type\":\"string\"}},"
    "  \"retainKeysMap\":{\"allOf\":[{\"$ref\":\"#/components/schemas/test.Item\"}],"
    "\"x-kubernetes-patch-strategy\":\"retainKeys\"},"
    "  \"itemPtr\":{\"allOf\":[{\"$ref\":\"#/components/schemas/test.Item\"}],"
    "\"x-kubernetes-patch-strategy\":\"merge\",\"x-kubernetes-patch-merge-key\":\"name\"}"
    " }},"
    "\"test.Item\":{\"type\":\"object\",\"properties\":{"
    "  \"name\":{\"type\":\"string\"},\"value\":{\"type\":\"string\"},"
    "  \"other\":{\"type\":\"string\"},"
    "  \"nested\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/components/schemas/test.Item\"},"
    "\"x-kubernetes-patch-strategy\":\"merge\",\"x-kubernetes-patch-merge-key\":\"name\"}"
    "}}}}}";

static struct openapi *test_oa(const json_t **schema)
{
    struct openapi *oa = openapi_new();

    REQUIRE(oa != NULL);
    REQUIRE(openapi_set_doc(oa, "apis/test/v1", jparse(TEST_DOC)) == 0);
    *schema = openapi_gvk_schema(oa, "test", "v1", "Obj");
    REQUIRE(*schema != NULL);
    return oa;
}

#define T_OK(doc, p, want) APPLY_OK(SMP, doc, p, oa, schema, want)
#define T_ERR(doc, p, m) APPLY_ERR(SMP, doc, p, oa, schema, ERR_INVALID, m)

static void t_smp_list_order(void)
{
    const json_t *schema;
    struct openapi *oa = test_oa(&schema);

    /* "preserve the order from the patch in a merging list" (1 and 2) */
    T_OK("{\"mergingList\":[{\"name\":1},{\"name\":2,\"value\":\"b\"},{\"name\":3}]}",
         "{\"mergingList\":[{\"name\":3,\"value\":\"c\"},{\"name\":1,\"value\":\"a\"},"
         "{\"name\":2,\"other\":\"x\"}]}",
         "{\"mergingList\":[{\"name\":3,\"value\":\"c\"},{\"name\":1,\"value\":\"a\"},"
         "{\"name\":2,\"value\":\"b\",\"other\":\"x\"}]}");
    T_OK("{\"mergingList\":[{\"name\":1},{\"name\":2,\"value\":\"b\"},{\"name\":3}]}",
         "{\"mergingList\":[{\"name\":3,\"value\":\"c\"},{\"name\":1,\"value\":\"a\"}]}",
         "{\"mergingList\":[{\"name\":2,\"value\":\"b\"},{\"name\":3,\"value\":\"c\"},"
         "{\"name\":1,\"value\":\"a\"}]}");
    /* int lists: union, patch order wins, server-only items keep their place */
    T_OK("{\"mergingIntList\":[1,2,3]}", "{\"mergingIntList\":[3,1,2]}",
         "{\"mergingIntList\":[3,1,2]}");
    T_OK("{\"mergingIntList\":[1,2,3]}", "{\"mergingIntList\":[3,1]}",
         "{\"mergingIntList\":[2,3,1]}");
    T_OK("{\"mergingIntList\":[1,2]}", "{\"mergingIntList\":[2,3]}",
         "{\"mergingIntList\":[1,2,3]}");
    T_OK("{\"mergingIntList\":[1,1,2]}", "{\"mergingIntList\":[2,2]}",
         "{\"mergingIntList\":[1,2]}");
    /* a new item with no $setElementOrder goes before the server-only items, as in Kubernetes */
    T_OK("{\"mergingList\":[{\"name\":1},{\"name\":2}]}", "{\"mergingList\":[{\"name\":9}]}",
         "{\"mergingList\":[{\"name\":9},{\"name\":1},{\"name\":2}]}");
    T_OK("{\"mergingList\":[]}", "{\"mergingList\":[]}", "{\"mergingList\":[]}");
    openapi_free(oa);
}

static void t_smp_set_element_order(void)
{
    const json_t *schema;
    struct openapi *oa = test_oa(&schema);

    /* "set elements order in a list" */
    T_OK("{\"mergingList\":[{\"name\":1,\"other\":\"a\"},{\"name\":3,\"value\":3},"
         "{\"name\":4,\"value\":4},{\"name\":2,\"value\":2}]}",
         "{\"$setElementOrder/mergingList\":[{\"name\":4},{\"name\":2},{\"name\":3},{\"name\":1}]}",
         "{\"mergingList\":[{\"name\":4,\"value\":4},{\"name\":2,\"value\":2},"
         "{\"name\":3,\"value\":3},{\"name\":1,\"other\":\"a\"}]}");
    /* "... with server-only items" 1, 2 and 3 */
    T_OK("{\"mergingList\":[{\"name\":1,\"other\":\"a\"},{\"name\":3,\"value\":3},"
         "{\"name\":4,\"value\":4},{\"name\":2,\"value\":2},{\"name\":9}]}",
         "{\"$setElementOrder/mergingList\":[{\"name\":4},{\"name\":2},{\"name\":3},{\"name\":1}]}",
         "{\"mergingList\":[{\"name\":4,\"value\":4},{\"name\":2,\"value\":2},"
         "{\"name\":3,\"value\":3},{\"name\":1,\"other\":\"a\"},{\"name\":9}]}");
    T_OK("{\"mergingList\":[{\"name\":1,\"other\":\"a\"},{\"name\":2,\"value\":2},{\"name\":9},"
         "{\"name\":3,\"value\":3},{\"name\":4,\"value\":4}]}",
         "{\"$setElementOrder/mergingList\":[{\"name\":2},{\"name\":1},{\"name\":4},{\"name\":3}]}",
         "{\"mergingList\":[{\"name\":2,\"value\":2},{\"name\":1,\"other\":\"a\"},{\"name\":9},"
         "{\"name\":4,\"value\":4},{\"name\":3,\"value\":3}]}");
    T_OK("{\"mergingList\":[{\"name\":1,\"other\":\"a\"},{\"name\":2,\"value\":2},{\"name\":7},"
         "{\"name\":9},{\"name\":8},{\"name\":3,\"value\":3},{\"name\":4,\"value\":4}]}",
         "{\"$setElementOrder/mergingList\":[{\"name\":2},{\"name\":1},{\"name\":4},{\"name\":3}]}",
         "{\"mergingList\":[{\"name\":2,\"value\":2},{\"name\":1,\"other\":\"a\"},{\"name\":7},"
         "{\"name\":9},{\"name\":8},{\"name\":4,\"value\":4},{\"name\":3,\"value\":3}]}");
    /* "add an item in a list and preserve order" (three-way case) */
    T_OK(
        "{\"mergingList\":[{\"name\":1,\"other\":\"a\"},{\"name\":2,\"value\":2,\"other\":\"b\"}]}",
        "{\"$setElementOrder/mergingList\":[{\"name\":3},{\"name\":1},{\"name\":2}],"
        "\"mergingList\":[{\"name\":3,\"value\":3}]}",
        "{\"mergingList\":[{\"name\":3,\"value\":3},{\"name\":1,\"other\":\"a\"},"
        "{\"name\":2,\"value\":2,\"other\":\"b\"}]}");
    /* an order item that is not in the list is ignored; int lists too */
    T_OK("{\"mergingList\":[{\"name\":1},{\"name\":3}]}",
         "{\"$setElementOrder/mergingList\":[{\"name\":3},{\"name\":2},{\"name\":1}],"
         "\"mergingList\":[{\"name\":3,\"value\":3},{\"name\":1,\"value\":1}]}",
         "{\"mergingList\":[{\"name\":3,\"value\":3},{\"name\":1,\"value\":1}]}");
    T_OK("{\"mergingIntList\":[1,3]}", "{\"$setElementOrder/mergingIntList\":[3,2,1]}",
         "{\"mergingIntList\":[3,1]}");
    /* the list is new: the patch list, in order */
    T_OK("{}",
         "{\"$setElementOrder/mergingList\":[{\"name\":1},{\"name\":2}],"
         "\"mergingList\":[{\"name\":1},{\"name\":2,\"value\":null}]}",
         "{\"mergingList\":[{\"name\":1},{\"name\":2}]}");
    /* an order for a list that exists nowhere changes nothing */
    T_OK("{\"a\":1}", "{\"$setElementOrder/mergingList\":[{\"name\":1}]}", "{\"a\":1}");
    /* a deleted item in the patch list does not count against the order */
    T_OK("{\"mergingList\":[{\"name\":1},{\"name\":2}]}",
         "{\"$setElementOrder/mergingList\":[{\"name\":2}],"
         "\"mergingList\":[{\"name\":1,\"$patch\":\"delete\"}]}",
         "{\"mergingList\":[{\"name\":2}]}");
    /*
     * "add map and delete map from merging list" (three-way, with and without conflict): the
     * live order strategicpatch uses here is the list after its in-place deletions and appends
     */
    T_OK("{\"mergingList\":[{\"name\":1},{\"name\":2,\"other\":\"b\"},{\"name\":4,\"other\":\"c\"}]"
         "}",
         "{\"$setElementOrder/mergingList\":[{\"name\":2},{\"name\":3}],"
         "\"mergingList\":[{\"name\":3},{\"$patch\":\"delete\",\"name\":1}]}",
         "{\"mergingList\":[{\"name\":2,\"other\":\"b\"},{\"name\":4,\"other\":\"c\"},{\"name\":3}]"
         "}");
    T_OK("{\"mergingList\":[{\"name\":1,\"other\":\"a\"},{\"name\":4,\"other\":\"c\"}]}",
         "{\"$setElementOrder/mergingList\":[{\"name\":2},{\"name\":3}],"
         "\"mergingList\":[{\"name\":2},{\"name\":3},{\"$patch\":\"delete\",\"name\":1}]}",
         "{\"mergingList\":[{\"name\":4,\"other\":\"c\"},{\"name\":2},{\"name\":3}]}");
    /* "should check if order in $setElementOrder and patch list match" */
    T_ERR("{\"mergingList\":[{\"name\":1},{\"name\":3},{\"name\":2}]}",
          "{\"$setElementOrder/mergingList\":[{\"name\":1},{\"name\":2},{\"name\":3}],"
          "\"mergingList\":[{\"name\":3,\"value\":3},{\"name\":1,\"value\":1}]}",
          "the order in patch list [{\"name\":3,\"value\":3},{\"name\":1,\"value\":1}] doesn't "
          "match $setElementOrder list [{\"name\":1},{\"name\":2},{\"name\":3}]");
    T_ERR("{}", "{\"$setElementOrder/mergingList\":{\"name\":1}}",
          "invalid patch format of setElementOrder list: $setElementOrder/mergingList");
    T_ERR("{}", "{\"$setElementOrderX\":[]}",
          "invalid patch format of setElementOrder list: $setElementOrderX");
    T_ERR("{\"mergingList\":[{\"name\":1}]}", "{\"$setElementOrder/mergingList\":[{\"value\":1}]}",
          "map: {\"value\":1} does not contain declared merge key: name");
    T_ERR("{\"mergingList\":7}", "{\"$setElementOrder/mergingList\":[]}",
          "invalid patch format of setElementOrder list: mergingList is not a list");
    openapi_free(oa);
}

static void t_smp_directives_lists(void)
{
    const json_t *schema;
    struct openapi *oa = test_oa(&schema);

    /* "delete all duplicate entries in a merging list" */
    T_OK(
        "{\"mergingList\":[{\"name\":1},{\"name\":1},{\"name\":2,\"value\":\"a\"},{\"name\":3},"
        "{\"name\":3}]}",
        "{\"mergingList\":[{\"name\":1,\"$patch\":\"delete\"},{\"name\":3,\"$patch\":\"delete\"}]}",
        "{\"mergingList\":[{\"name\":2,\"value\":\"a\"}]}");
    /* "delete all items from merging list"; replace with other elements */
    T_OK("{\"mergingList\":[{\"name\":1},{\"name\":2}]}",
         "{\"mergingList\":[{\"$patch\":\"replace\"}]}", "{\"mergingList\":[]}");
    T_OK("{\"mergingList\":[{\"name\":1,\"value\":\"a\"},{\"name\":2}]}",
         "{\"mergingList\":[{\"name\":5},{\"$patch\":\"replace\"},{\"name\":1,\"other\":\"o\"}]}",
         "{\"mergingList\":[{\"name\":5},{\"name\":1,\"other\":\"o\"}]}");
    /* delete of a missing item is fine */
    T_OK("{\"mergingList\":[{\"name\":1}]}",
         "{\"mergingList\":[{\"name\":8,\"$patch\":\"delete\"}]}",
         "{\"mergingList\":[{\"name\":1}]}");
    /* $deleteFromPrimitiveList */
    T_OK("{\"mergingIntList\":[1,2,3,2]}", "{\"$deleteFromPrimitiveList/mergingIntList\":[2,7]}",
         "{\"mergingIntList\":[1,3]}");
    T_OK("{\"a\":1}", "{\"$deleteFromPrimitiveList/mergingIntList\":[2]}", "{\"a\":1}");
    T_OK("{\"mergingIntList\":[1,2]}",
         "{\"mergingIntList\":[5],\"$deleteFromPrimitiveList/mergingIntList\":[1]}",
         "{\"mergingIntList\":[5,2]}");
    T_ERR("{}", "{\"$deleteFromPrimitiveList\":[1]}",
          "invalid patch format of primitive list: $deleteFromPrimitiveList");
    T_ERR("{}", "{\"$deleteFromPrimitiveList/mergingIntList\":3}",
          "invalid patch format of primitive list: $deleteFromPrimitiveList/mergingIntList");
    /* nested merge lists inside a merged item */
    T_OK("{\"mergingList\":[{\"name\":\"a\",\"nested\":[{\"name\":\"x\",\"value\":\"1\"}]}]}",
         "{\"mergingList\":[{\"name\":\"a\",\"nested\":[{\"name\":\"x\",\"other\":\"2\"},"
         "{\"name\":\"y\"}]}]}",
         "{\"mergingList\":[{\"name\":\"a\",\"nested\":[{\"name\":\"x\",\"value\":\"1\","
         "\"other\":\"2\"},{\"name\":\"y\"}]}]}");
    /* a struct-typed field used as a list: its items have the struct's schema */
    T_OK("{\"itemPtr\":[{\"name\":1,\"nested\":[{\"name\":\"a\"}]}]}",
         "{\"itemPtr\":[{\"name\":1,\"nested\":[{\"name\":\"b\"}]}]}",
         "{\"itemPtr\":[{\"name\":1,\"nested\":[{\"name\":\"b\"},{\"name\":\"a\"}]}]}");
    /* a list without merge strategy is replaced, directives and all */
    T_OK("{\"nonMergingList\":[{\"name\":1},{\"name\":2}]}", "{\"nonMergingList\":[{\"name\":3}]}",
         "{\"nonMergingList\":[{\"name\":3}]}");
    /* errors */
    T_ERR("{\"mergingList\":[{\"name\":1}]}", "{\"mergingList\":[{\"value\":\"x\"}]}",
          "map: {\"value\":\"x\"} does not contain declared merge key: name");
    T_ERR("{\"mergingList\":[{\"name\":1}]}", "{\"mergingList\":[{\"$patch\":\"delete\"}]}",
          "map: {\"$patch\":\"delete\"} does not contain declared merge key: name");
    T_ERR("{\"mergingList\":[{\"name\":1}]}",
          "{\"mergingList\":[{\"name\":1,\"$patch\":\"merge\"}]}",
          "merging lists cannot yet be specified in the patch");
    T_ERR("{\"mergingList\":[{\"name\":1}]}",
          "{\"mergingList\":[{\"name\":1,\"$patch\":\"frob\"}]}",
          "unknown patch type: frob in map: {\"$patch\":\"frob\",\"name\":1}");
    T_ERR("{\"mergingList\":[{\"name\":1}]}", "{\"mergingList\":[\"x\"]}",
          "list element types are not identical in field mergingList");
    T_ERR("{\"mergingList\":[{\"name\":1}]}", "{\"mergingList\":[[1]]}",
          "lists of lists are not supported (field mergingList)");
    T_ERR("{\"noKeyList\":[{\"name\":1}]}", "{\"noKeyList\":[{\"name\":2}]}",
          "cannot merge lists without merge key for noKeyList");
    T_ERR("{\"mergingList\":[{\"value\":\"no key\"}]}", "{\"mergingList\":[{\"name\":1}]}",
          "map: {\"value\":\"no key\"} does not contain declared merge key: name");
    openapi_free(oa);
}

static void t_smp_directives_maps(void)
{
    const json_t *schema;
    struct openapi *oa = test_oa(&schema);

    /* "delete map from nested map": the map becomes empty */
    T_OK("{\"simpleMap\":{\"key1\":\"1\",\"key2\":\"1\"}}",
         "{\"simpleMap\":{\"$patch\":\"delete\"}}", "{\"simpleMap\":{}}");
    /* "delete all keys from map", "add key and delete all keys from map" */
    T_OK("{\"name\":1,\"value\":1}", "{\"$patch\":\"replace\"}", "{}");
    T_OK("{\"name\":1,\"value\":1}", "{\"other\":\"a\",\"$patch\":\"replace\"}",
         "{\"other\":\"a\"}");
    T_OK("{\"simpleMap\":{\"a\":\"1\"},\"x\":1}",
         "{\"simpleMap\":{\"$patch\":\"replace\",\"b\":\"2\",\"c\":null}}",
         "{\"simpleMap\":{\"b\":\"2\"},\"x\":1}");
    /* $patch: merge is the default behaviour spelled out */
    T_OK("{\"simpleMap\":{\"a\":\"1\"}}", "{\"simpleMap\":{\"$patch\":\"merge\",\"b\":\"2\"}}",
         "{\"simpleMap\":{\"a\":\"1\",\"b\":\"2\"}}");
    /* map values of a map merge by the value schema */
    T_OK("{\"itemMap\":{\"k\":{\"name\":\"n\",\"nested\":[{\"name\":\"a\"}]}}}",
         "{\"itemMap\":{\"k\":{\"nested\":[{\"name\":\"b\"}]}}}",
         "{\"itemMap\":{\"k\":{\"name\":\"n\",\"nested\":[{\"name\":\"b\"},{\"name\":\"a\"}]}}}");
    /* replace strategy on a map */
    T_OK("{\"replaceMap\":{\"a\":\"1\",\"b\":\"2\"}}", "{\"replaceMap\":{\"c\":\"3\"}}",
         "{\"replaceMap\":{\"c\":\"3\"}}");
    /* retainKeys */
    T_OK("{\"retainKeysMap\":{\"name\":\"foo\",\"value\":\"a\"}}",
         "{\"retainKeysMap\":{\"$retainKeys\":[\"value\"],\"value\":\"b\"}}",
         "{\"retainKeysMap\":{\"value\":\"b\"}}");
    T_OK("{\"retainKeysMap\":{\"name\":\"foo\",\"value\":\"a\"}}",
         "{\"retainKeysMap\":{\"value\":\"b\"}}",
         "{\"retainKeysMap\":{\"name\":\"foo\",\"value\":\"b\"}}");
    T_OK("{\"retainKeysMap\":{\"name\":\"foo\",\"value\":\"a\",\"other\":\"o\"}}",
         "{\"retainKeysMap\":{\"$retainKeys\":[\"name\",\"other\"],\"value\":null}}",
         "{\"retainKeysMap\":{\"name\":\"foo\",\"other\":\"o\"}}");
    T_ERR("{\"retainKeysMap\":{\"name\":\"foo\"}}",
          "{\"retainKeysMap\":{\"$retainKeys\":[\"name\"],\"value\":\"b\"}}",
          "invalid patch format of retainKeys: value is not in the $retainKeys list");
    T_ERR("{\"retainKeysMap\":{}}", "{\"retainKeysMap\":{\"$retainKeys\":\"name\"}}",
          "invalid patch format of retainKeys");
    T_ERR("{\"simpleMap\":{}}", "{\"simpleMap\":{\"$patch\":\"frob\",\"a\":\"1\"}}",
          "unknown patch type: frob in map: {\"$patch\":\"frob\",\"a\":\"1\"}");
    T_ERR("{}", "{\"$patch\":1}", "unknown patch type: number in map: {\"$patch\":1}");
    openapi_free(oa);
}

static void t_smp_new_and_retyped_fields(void)
{
    const json_t *schema;
    struct openapi *oa = test_oa(&schema);

    /* a field the document lacks: directives and nulls do not leak into the object */
    T_OK("{}",
         "{\"mergingList\":[{\"name\":1,\"$patch\":\"delete\"},"
         "{\"name\":2,\"value\":null,\"other\":\"x\"}],"
         "\"simpleMap\":{\"a\":null,\"b\":\"1\"},\"gone\":null}",
         "{\"mergingList\":[{\"name\":2,\"other\":\"x\"}],\"simpleMap\":{\"b\":\"1\"}}");
    T_OK("{\"x\":1}", "{\"simpleMap\":{\"$patch\":\"delete\"}}", "{\"x\":1}");
    T_OK("{}", "{\"itemMap\":{\"k\":{\"nested\":[{\"name\":\"a\",\"$patch\":\"delete\"}]}}}",
         "{\"itemMap\":{\"k\":{\"nested\":[]}}}");
    /* a value of another type is replaced */
    T_OK("{\"mergingList\":\"str\"}", "{\"mergingList\":[{\"name\":1}]}",
         "{\"mergingList\":[{\"name\":1}]}");
    T_OK("{\"simpleMap\":[1]}", "{\"simpleMap\":{\"a\":\"1\"}}", "{\"simpleMap\":{\"a\":\"1\"}}");
    T_OK("{\"simpleMap\":{\"a\":\"1\"}}", "{\"simpleMap\":\"s\"}", "{\"simpleMap\":\"s\"}");
    T_OK("{\"n\":1}", "{\"n\":\"one\"}", "{\"n\":\"one\"}");
    /* unknown fields: maps merge, lists replace */
    T_OK("{\"u\":{\"a\":1,\"l\":[1,2]}}", "{\"u\":{\"b\":2,\"l\":[3]}}",
         "{\"u\":{\"a\":1,\"b\":2,\"l\":[3]}}");
    openapi_free(oa);
}

static void t_smp_no_schema(void)
{
    /* schema NULL: a merge patch that understands the directives */
    APPLY_OK(SMP, "{\"a\":{\"b\":1,\"c\":2},\"l\":[1,2]}", "{\"a\":{\"b\":null,\"d\":3},\"l\":[3]}",
             NULL, NULL, "{\"a\":{\"c\":2,\"d\":3},\"l\":[3]}");
    APPLY_OK(SMP, "{\"a\":{\"b\":1,\"c\":2}}", "{\"a\":{\"$patch\":\"replace\",\"z\":1}}", NULL,
             NULL, "{\"a\":{\"z\":1}}");
    APPLY_OK(SMP, "{\"a\":{\"b\":1},\"k\":\"v\"}",
             "{\"a\":{\"$retainKeys\":[],\"$patch\":\"merge\"}}", NULL, NULL,
             "{\"a\":{},\"k\":\"v\"}");
    APPLY_OK(SMP, "{\"l\":[\"a\",\"b\"]}", "{\"$deleteFromPrimitiveList/l\":[\"a\"]}", NULL, NULL,
             "{\"l\":[\"b\"]}");
    APPLY_OK(SMP, NULL, "{\"a\":1}", NULL, NULL, "{\"a\":1}");
    APPLY_ERR(SMP, "{}", "[]", NULL, NULL, ERR_INVALID,
              "strategic merge patch must be a JSON object, not array");
    APPLY_ERR(SMP, "{}", "\"x\"", NULL, NULL, ERR_INVALID,
              "strategic merge patch must be a JSON object, not string");
    APPLY_ERR(SMP, "[1]", "{}", NULL, NULL, ERR_INVALID,
              "invalid JSON document: array is not an object");
}

/* ---------------------------------------------------------------------------------------- */
/* Strategic merge patch: the official Kubernetes schemas                                   */
/* ---------------------------------------------------------------------------------------- */

static const char *const DEPLOY =
    "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
    "\"metadata\":{\"name\":\"web\",\"namespace\":\"default\","
    " \"labels\":{\"app\":\"web\",\"tier\":\"fe\"},"
    " \"finalizers\":[\"a.io/x\",\"b.io/y\"],"
    " \"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"X\",\"name\":\"o1\",\"uid\":\"u1\"}]},"
    "\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
    " \"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{"
    "  \"containers\":["
    "   {\"name\":\"app\",\"image\":\"nginx:1\",\"args\":[\"--a\",\"--b\"],"
    "    \"ports\":[{\"containerPort\":80,\"protocol\":\"TCP\"}],"
    "    \"env\":[{\"name\":\"A\",\"value\":\"1\"}]},"
    "   {\"name\":\"sidecar\",\"image\":\"envoy:1\",\"ports\":[{\"containerPort\":9901}]}],"
    "  \"volumes\":[{\"name\":\"cfg\",\"configMap\":{\"name\":\"web-cfg\"}},"
    "   {\"name\":\"data\",\"emptyDir\":{}}],"
    "  \"tolerations\":[{\"key\":\"k1\",\"operator\":\"Exists\"}]}}}}";

static struct openapi *kube_oa(const json_t **deploy)
{
    struct openapi *oa = NULL;

    REQUIRE(openapi_load_dir("tests/kubelite/openapi", &oa) == 0);
    *deploy = openapi_gvk_schema(oa, "apps", "v1", "Deployment");
    REQUIRE(*deploy != NULL);
    return oa;
}

/* Patch DEPLOY with p; the result must be DEPLOY with the edits (path, JSON or NULL) pairs. */
static void deploy_case(int line, const struct openapi *oa, const json_t *schema, const char *p,
                        const char *const *edits, size_t nedits)
{
    json_t *out = NULL, *want = jparse(DEPLOY);
    char msg[512];
    int rc = apply(SMP, DEPLOY, p, oa, schema, &out, msg, sizeof(msg));

    if (rc)
        fprintf(stderr, "  line %d: unexpected error: %s\n", line, msg);
    CHECK_INT(rc, 0);
    for (size_t i = 0; i + 1 < nedits; i += 2)
        tset(want, edits[i], edits[i + 1]);
    check_json_at(__FILE__, line, out, want);
    json_decref(out);
    json_decref(want);
}

#define DEPLOY_CASE(p, ...)                                                                        \
    do {                                                                                           \
        static const char *const e_[] = {__VA_ARGS__};                                             \
        deploy_case(__LINE__, oa, schema, p, e_, ARRAY_LEN(e_));                                   \
    } while (0)

#define C0 "/spec/template/spec/containers/0"
#define C1 "/spec/template/spec/containers/1"

static void t_kube_containers(void)
{
    const json_t *schema;
    struct openapi *oa = kube_oa(&schema);

    /* one container's image changes; the other container and all other fields stay */
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"sidecar\","
                "\"image\":\"envoy:2\"}]}}}}",
                C1 "/image", "\"envoy:2\"");
    /* add an env var; with the $setElementOrder kubectl sends it lands where it says */
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\","
                "\"$setElementOrder/env\":[{\"name\":\"A\"},{\"name\":\"B\"}],"
                "\"env\":[{\"name\":\"B\",\"value\":\"2\"}]}]}}}}",
                C0 "/env", "[{\"name\":\"A\",\"value\":\"1\"},{\"name\":\"B\",\"value\":\"2\"}]");
    /* without it (kubectl patch), Kubernetes puts the new item first */
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\","
                "\"env\":[{\"name\":\"B\",\"value\":\"2\"}]}]}}}}",
                C0 "/env", "[{\"name\":\"B\",\"value\":\"2\"},{\"name\":\"A\",\"value\":\"1\"}]");
    /* change an env var's value, drop another field of it */
    DEPLOY_CASE(
        "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\","
        "\"env\":[{\"name\":\"A\",\"value\":null,\"valueFrom\":{\"fieldRef\":"
        "{\"fieldPath\":\"metadata.name\"}}}]}]}}}}",
        C0 "/env",
        "[{\"name\":\"A\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"metadata.name\"}}}]");
    /* delete a container */
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"sidecar\","
                "\"$patch\":\"delete\"}]}}}}",
                C1, NULL);
    /* reorder containers */
    DEPLOY_CASE(
        "{\"spec\":{\"template\":{\"spec\":{\"$setElementOrder/containers\":"
        "[{\"name\":\"sidecar\"},{\"name\":\"app\"}]}}}}",
        "/spec/template/spec/containers",
        "[{\"name\":\"sidecar\",\"image\":\"envoy:1\",\"ports\":[{\"containerPort\":9901}]},"
        "{\"name\":\"app\",\"image\":\"nginx:1\",\"args\":[\"--a\",\"--b\"],"
        "\"ports\":[{\"containerPort\":80,\"protocol\":\"TCP\"}],"
        "\"env\":[{\"name\":\"A\",\"value\":\"1\"}]}]");
    /* args has no patch strategy: replaced whole; tolerations too */
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\","
                "\"args\":[\"--c\"]}],\"tolerations\":[{\"key\":\"k2\"}]}}}}",
                C0 "/args", "[\"--c\"]", "/spec/template/spec/tolerations", "[{\"key\":\"k2\"}]");
    /* ports merge by containerPort */
    DEPLOY_CASE(
        "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\","
        "\"ports\":[{\"containerPort\":80,\"name\":\"http\"},{\"containerPort\":443}]}]}}}}",
        C0 "/ports",
        "[{\"containerPort\":80,\"protocol\":\"TCP\",\"name\":\"http\"},"
        "{\"containerPort\":443}]");
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"sidecar\","
                "\"ports\":[{\"containerPort\":9901,\"$patch\":\"delete\"}]}]}}}}",
                C1 "/ports", "[]");
    /* a new container, and one replacing the whole list */
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"$setElementOrder/containers\":"
                "[{\"name\":\"app\"},{\"name\":\"sidecar\"},{\"name\":\"log\"}],"
                "\"containers\":[{\"name\":\"log\",\"image\":\"busybox\"}]}}}}",
                "/spec/template/spec/containers/2", "{\"name\":\"log\",\"image\":\"busybox\"}");
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"$patch\":\"replace\"},"
                "{\"name\":\"only\",\"image\":\"x\"}]}}}}",
                "/spec/template/spec/containers", "[{\"name\":\"only\",\"image\":\"x\"}]");
    openapi_free(oa);
}

static void t_kube_volumes_retain_keys(void)
{
    const json_t *schema;
    struct openapi *oa = kube_oa(&schema);

    /* what kubectl apply sends to switch a volume from configMap to secret */
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"volumes\":[{\"$retainKeys\":[\"name\","
                "\"secret\"],\"name\":\"cfg\",\"secret\":{\"secretName\":\"s\"}}]}}}}",
                "/spec/template/spec/volumes/0",
                "{\"name\":\"cfg\",\"secret\":{\"secretName\":\"s\"}}");
    /* without $retainKeys both sources would stay (the reason kubectl sends it) */
    DEPLOY_CASE("{\"spec\":{\"template\":{\"spec\":{\"volumes\":[{\"name\":\"cfg\","
                "\"secret\":{\"secretName\":\"s\"}}]}}}}",
                "/spec/template/spec/volumes/0",
                "{\"name\":\"cfg\",\"configMap\":{\"name\":\"web-cfg\"},"
                "\"secret\":{\"secretName\":\"s\"}}");
    APPLY_ERR(SMP, DEPLOY,
              "{\"spec\":{\"template\":{\"spec\":{\"volumes\":[{\"$retainKeys\":[\"name\"],"
              "\"name\":\"cfg\",\"secret\":{}}]}}}}",
              oa, schema, ERR_INVALID,
              "invalid patch format of retainKeys: secret is not in the $retainKeys list");
    openapi_free(oa);
}

static void t_kube_metadata(void)
{
    const json_t *schema;
    struct openapi *oa = kube_oa(&schema);

    /* finalizers: a set merged as a union; parallel deletion list */
    DEPLOY_CASE("{\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":[\"a.io/x\"]}}",
                "/metadata/finalizers", "[\"b.io/y\"]");
    DEPLOY_CASE("{\"metadata\":{\"finalizers\":[\"c.io/z\",\"a.io/x\"]}}", "/metadata/finalizers",
                "[\"c.io/z\",\"a.io/x\",\"b.io/y\"]");
    DEPLOY_CASE("{\"metadata\":{\"$setElementOrder/finalizers\":[\"a.io/x\",\"b.io/y\",\"c.io/z\"],"
                "\"finalizers\":[\"c.io/z\"]}}",
                "/metadata/finalizers", "[\"a.io/x\",\"b.io/y\",\"c.io/z\"]");
    /* what kubectl apply sends when a finalizer leaves the manifest */
    DEPLOY_CASE("{\"metadata\":{\"$setElementOrder/finalizers\":[\"b.io/y\"],"
                "\"$deleteFromPrimitiveList/finalizers\":[\"a.io/x\"]}}",
                "/metadata/finalizers", "[\"b.io/y\"]");
    /* labels: null deletes, others merge */
    DEPLOY_CASE("{\"metadata\":{\"labels\":{\"tier\":null,\"new\":\"x\",\"absent\":null}}}",
                "/metadata/labels", "{\"app\":\"web\",\"new\":\"x\"}");
    DEPLOY_CASE("{\"metadata\":{\"labels\":null}}", "/metadata/labels", NULL);
    /* ownerReferences merge by uid */
    DEPLOY_CASE("{\"metadata\":{\"ownerReferences\":[{\"uid\":\"u1\",\"controller\":true},"
                "{\"uid\":\"u2\",\"name\":\"o2\",\"kind\":\"Y\",\"apiVersion\":\"v1\"}]}}",
                "/metadata/ownerReferences",
                "[{\"apiVersion\":\"v1\",\"kind\":\"X\",\"name\":\"o1\",\"uid\":\"u1\","
                "\"controller\":true},{\"uid\":\"u2\",\"name\":\"o2\",\"kind\":\"Y\","
                "\"apiVersion\":\"v1\"}]");
    /* $patch: replace on a plain struct */
    DEPLOY_CASE("{\"spec\":{\"selector\":{\"$patch\":\"replace\",\"matchLabels\":{\"x\":\"y\"}}}}",
                "/spec/selector", "{\"matchLabels\":{\"x\":\"y\"}}");
    openapi_free(oa);
}

static void t_kube_apply_three_way(void)
{
    const json_t *schema;
    struct openapi *oa = kube_oa(&schema);

    /* exactly what kubectl apply sends to change replicas and the image */
    DEPLOY_CASE(
        "{\"metadata\":{\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
        "\"{\\\"apiVersion\\\":\\\"apps/v1\\\",\\\"kind\\\":\\\"Deployment\\\"}\\n\"}},"
        "\"spec\":{\"replicas\":3,\"template\":{\"spec\":{\"$setElementOrder/containers\":"
        "[{\"name\":\"app\"}],\"containers\":[{\"image\":\"nginx:2\",\"name\":\"app\"}]}}}}",
        "/metadata/annotations",
        "{\"kubectl.kubernetes.io/last-applied-configuration\":"
        "\"{\\\"apiVersion\\\":\\\"apps/v1\\\",\\\"kind\\\":\\\"Deployment\\\"}\\n\"}",
        "/spec/replicas", "3", C0 "/image", "\"nginx:2\"");
    /* the same for a Pod, through the core group's schema */
    {
        const json_t *pod = openapi_gvk_schema(oa, "", "v1", "Pod");

        REQUIRE(pod != NULL);
        APPLY_OK(SMP,
                 "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"},"
                 "\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"i:1\"},"
                 "{\"name\":\"b\",\"image\":\"j:1\"}]}}",
                 "{\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"i:2\"}]}}", oa, pod,
                 "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"},"
                 "\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"i:2\"},"
                 "{\"name\":\"b\",\"image\":\"j:1\"}]}}");
    }
    openapi_free(oa);
}

static void t_kube_malformed(void)
{
    const json_t *schema;
    struct openapi *oa = kube_oa(&schema);

    APPLY_ERR(SMP, DEPLOY, "[{\"op\":\"add\"}]", oa, schema, ERR_INVALID,
              "strategic merge patch must be a JSON object, not array");
    APPLY_ERR(SMP, DEPLOY, "{\"spec\":{\"$patch\":\"frob\"}}", oa, schema, ERR_INVALID,
              "unknown patch type: frob in map: {\"$patch\":\"frob\"}");
    APPLY_ERR(SMP, DEPLOY,
              "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"image\":\"x\"}]}}}}", oa,
              schema, ERR_INVALID,
              "map: {\"image\":\"x\"} does not contain declared merge key: name");
    APPLY_ERR(SMP, DEPLOY,
              "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\","
              "\"ports\":[{\"name\":\"http\"}]}]}}}}",
              oa, schema, ERR_INVALID,
              "map: {\"name\":\"http\"} does not contain declared merge key: containerPort");
    APPLY_ERR(SMP, DEPLOY,
              "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\","
              "\"$patch\":\"replace!\"}]}}}}",
              oa, schema, ERR_INVALID,
              "unknown patch type: replace! in map: {\"$patch\":\"replace!\",\"name\":\"app\"}");
    openapi_free(oa);
}

static void t_smp_msg_null_and_short(void)
{
    json_t *doc = jparse("{}"), *p = jparse("{\"$patch\":\"frob\"}"), *out = NULL;
    char msg[8];

    CHECK_INT(patch_strategic(doc, p, NULL, NULL, &out, NULL, 0), ERR_INVALID);
    CHECK_INT(patch_strategic(doc, p, NULL, NULL, &out, msg, sizeof(msg)), ERR_INVALID);
    CHECK_STR(msg, "unknown");
    CHECK(out == NULL);
    CHECK_INT(patch_merge(doc, NULL, &out, msg, sizeof(msg)), ERR_INVALID);
    CHECK(out == NULL);
    json_decref(doc);
    json_decref(p);
}

/* ---------------------------------------------------------------------------------------- */
/* Allocation failures: every jansson allocation in turn fails                              */
/* ---------------------------------------------------------------------------------------- */

static long alloc_count, alloc_fail_at = -1;

static void *failing_malloc(size_t n)
{
    if (alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at)
        return NULL;
    return malloc(n);
}

/*
 * Fail the 1st, 2nd, ... allocation of one call until it succeeds: each must return -ENOMEM
 * (leaving *out and the inputs alone, leaking nothing) or the right answer.
 */
static void sweep(enum kind k, const char *doc, const char *patch, const struct openapi *oa,
                  const json_t *schema)
{
    json_t *d = jparse(doc), *p = jparse(patch), *d0 = json_deep_copy(d), *p0 = json_deep_copy(p);
    json_t *want = NULL, *out = NULL;
    char msg[256];
    int rc = 0;
    long n;

    switch (k) {
    case JP:
        rc = patch_json(d, p, &want, msg, sizeof(msg));
        break;
    case MP:
        rc = patch_merge(d, p, &want, msg, sizeof(msg));
        break;
    case SMP:
        rc = patch_strategic(d, p, oa, schema, &want, msg, sizeof(msg));
        break;
    }
    REQUIRE(rc == 0);
    json_set_alloc_funcs(failing_malloc, free);
    for (n = 0; n < 100000; n++) {
        out = NULL;
        alloc_count = 0;
        alloc_fail_at = n;
        switch (k) {
        case JP:
            rc = patch_json(d, p, &out, msg, sizeof(msg));
            break;
        case MP:
            rc = patch_merge(d, p, &out, msg, sizeof(msg));
            break;
        case SMP:
            rc = patch_strategic(d, p, oa, schema, &out, msg, sizeof(msg));
            break;
        }
        alloc_fail_at = -1;
        CHECK(json_equal(d, d0));
        CHECK(json_equal(p, p0));
        if (rc == 0) {
            CHECK_JSONV(out, want);
            json_decref(out);
            break;
        }
        if (rc != -ENOMEM)
            fprintf(stderr, "  allocation %ld failed: %s\n", n, msg);
        CHECK_INT(rc, -ENOMEM);
        CHECK(out == NULL);
    }
    CHECK(n > 3);
    json_set_alloc_funcs(malloc, free);
    json_decref(d);
    json_decref(d0);
    json_decref(p);
    json_decref(p0);
    json_decref(want);
}

static void t_alloc_failure_sweep(void)
{
    const json_t *schema, *tschema;
    struct openapi *oa = kube_oa(&schema), *toa = test_oa(&tschema);

    sweep(JP, "{\"a\":{\"b\":[1,2]},\"c\":\"d\"}",
          "[{\"op\":\"add\",\"path\":\"/a/b/-\",\"value\":{\"x\":[1]}},"
          "{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/e\"},"
          "{\"op\":\"move\",\"from\":\"/c\",\"path\":\"/a/c\"},"
          "{\"op\":\"replace\",\"path\":\"/a/b/0\",\"value\":\"z\"},"
          "{\"op\":\"remove\",\"path\":\"/e/b/1\"},"
          "{\"op\":\"test\",\"path\":\"/a/c\",\"value\":\"d\"}]",
          NULL, NULL);
    sweep(MP, "{\"a\":{\"b\":1,\"c\":[1]},\"d\":2}",
          "{\"a\":{\"b\":null,\"e\":{\"f\":{\"g\":1}}},\"d\":[3]}", NULL, NULL);
    sweep(
        SMP, DEPLOY,
        "{\"metadata\":{\"labels\":{\"tier\":null,\"n\":\"1\"},"
        "\"$setElementOrder/finalizers\":[\"b.io/y\",\"c.io/z\"],\"finalizers\":[\"c.io/z\"],"
        "\"$deleteFromPrimitiveList/finalizers\":[\"a.io/x\"]},"
        "\"spec\":{\"replicas\":3,\"selector\":{\"$patch\":\"replace\",\"matchLabels\":{}},"
        "\"template\":{\"spec\":{"
        "\"$setElementOrder/containers\":[{\"name\":\"app\"},{\"name\":\"new\"}],"
        "\"containers\":[{\"name\":\"app\",\"image\":\"nginx:2\",\"env\":[{\"name\":\"B\"}],"
        "\"ports\":[{\"containerPort\":80,\"$patch\":\"delete\"}]},{\"name\":\"new\",\"image\":"
        "\"n\"},"
        "{\"name\":\"sidecar\",\"$patch\":\"delete\"}],"
        "\"volumes\":[{\"$retainKeys\":[\"name\",\"secret\"],\"name\":\"cfg\",\"secret\":{}}]}}}}",
        oa, schema);
    sweep(SMP, "{\"mergingIntList\":[1,2,3],\"mergingList\":[{\"name\":1},{\"name\":2}]}",
          "{\"mergingIntList\":[3,1],\"mergingList\":[{\"$patch\":\"replace\"},{\"name\":3}],"
          "\"simpleMap\":{\"$patch\":\"delete\"}}",
          toa, tschema);
    openapi_free(oa);
    openapi_free(toa);
}

UNIT_MAIN(UNIT(t_jp_rfc_add_remove_replace), UNIT(t_jp_move_copy), UNIT(t_jp_test_op),
          UNIT(t_jp_pointer_escapes), UNIT(t_jp_array_bounds), UNIT(t_jp_missing_targets),
          UNIT(t_jp_malformed), UNIT(t_jp_atomic), UNIT(t_jp_null_args), UNIT(t_mp_rfc7386),
          UNIT(t_mp_kube), UNIT(t_smp_list_order), UNIT(t_smp_set_element_order),
          UNIT(t_smp_directives_lists), UNIT(t_smp_directives_maps),
          UNIT(t_smp_new_and_retyped_fields), UNIT(t_smp_no_schema), UNIT(t_kube_containers),
          UNIT(t_kube_volumes_retain_keys), UNIT(t_kube_metadata), UNIT(t_kube_apply_three_way),
          UNIT(t_kube_malformed), UNIT(t_smp_msg_null_and_short), UNIT(t_alloc_failure_sweep))
