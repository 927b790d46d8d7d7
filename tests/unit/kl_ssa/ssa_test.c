/*
 * ssa_test.c - server-side apply and managedFields: the official ConfigMap and Deployment
 * schemas (tests/kubelite/openapi) and a hand-written CRD schema without $refs. Expected
 * fieldsV1 are what a real API server shows for the same requests.
 */
#include <jansson.h>

#include "tests/kubelite/openapi.h"
#include "tests/kubelite/ssa.h"
#include "tests/unit/unit.h"

#define T1 "2024-05-01T12:00:00Z"
#define T2 "2024-05-01T12:00:05Z"
#define T3 "2024-05-01T12:00:09Z"

/* ---- helpers ---- */

static json_t *J(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);

    if (!v)
        fprintf(stderr, "  bad test JSON at %d: %s\n  %s\n", err.position, err.text, text);
    REQUIRE(v);
    return v;
}

/* Canonical text (sorted keys) of v; caller frees. */
static char *canon(const json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
}

#define CHECK_JSON(v, text)                                                                        \
    do {                                                                                           \
        json_t *unit__e = J(text);                                                                 \
        char *unit__x = canon(v), *unit__y = canon(unit__e);                                       \
        CHECK_STR(unit__x, unit__y);                                                               \
        free(unit__x);                                                                             \
        free(unit__y);                                                                             \
        json_decref(unit__e);                                                                      \
    } while (0)

static json_t *mf_of(const json_t *obj)
{
    return json_object_get(json_object_get(obj, "metadata"), "managedFields");
}

/* The managedFields entry for manager/operation (NULL if none). */
static json_t *entry_of(const json_t *obj, const char *manager, const char *op)
{
    json_t *e;
    size_t i;

    json_array_foreach(mf_of(obj), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "manager")), manager) == 0 &&
            strcmp(json_string_value(json_object_get(e, "operation")), op) == 0)
            return e;
    }
    return NULL;
}

static json_t *fields_of(const json_t *obj, const char *manager, const char *op)
{
    return json_object_get(entry_of(obj, manager, op), "fieldsV1");
}

/* obj without metadata.managedFields (a copy). */
static json_t *strip_mf(const json_t *obj)
{
    json_t *c = json_deep_copy(obj);

    REQUIRE(c);
    json_object_del(json_object_get(c, "metadata"), "managedFields");
    return c;
}

static struct openapi *load_oa(void)
{
    struct openapi *oa = NULL;

    REQUIRE(openapi_load_dir("tests/kubelite/openapi", &oa) == 0);
    return oa;
}

static const json_t *cm_schema(const struct openapi *oa)
{
    const json_t *s = openapi_gvk_schema(oa, "", "v1", "ConfigMap");
    REQUIRE(s);
    return s;
}

static const json_t *deploy_schema(const struct openapi *oa)
{
    const json_t *s = openapi_gvk_schema(oa, "apps", "v1", "Deployment");
    REQUIRE(s);
    return s;
}

/* Apply that must succeed; consumes live. */
static json_t *apply_ok(json_t *live, const char *applied, const char *manager, bool force,
                        const struct openapi *oa, const json_t *schema, const char *now)
{
    json_t *a = J(applied), *out = NULL, *conf = json_array();
    char msg[512] = "";
    int rc = ssa_apply(live, a, manager, force, oa, schema, now, &out, conf, msg, sizeof(msg));

    if (rc)
        fprintf(stderr, "  ssa_apply: %d (%s) conflicts %zu\n", rc, msg, json_array_size(conf));
    REQUIRE(rc == 0 && out);
    CHECK_INT(json_array_size(conf), 0);
    json_decref(a);
    json_decref(conf);
    json_decref(live);
    return out;
}

#define CM(data)                                                                                   \
    "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","                  \
    "\"namespace\":\"default\"},\"data\":" data "}"

/* ---- ConfigMap ---- */

static void t_cm_create(void)
{
    struct openapi *oa = load_oa();
    const char *in = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
                     "\"namespace\":\"default\",\"labels\":{\"x\":\"y\"}},\"data\":{\"a\":\"b\"}}";
    json_t *out = apply_ok(NULL, in, "kubectl", false, oa, cm_schema(oa), T1);
    json_t *bare = strip_mf(out);
    char *s;

    CHECK_JSON(bare, in);
    CHECK_JSON(mf_of(out),
               "[{\"manager\":\"kubectl\",\"operation\":\"Apply\",\"apiVersion\":\"v1\","
               "\"time\":\"" T1 "\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":"
               "{\"f:data\":{\"f:a\":{}},\"f:metadata\":{\"f:labels\":{\"f:x\":{}}}}}]");
    /* Entry keys in kube's order. */
    s = json_dumps(json_array_get(mf_of(out), 0), JSON_COMPACT);
    CHECK_STR(s, "{\"manager\":\"kubectl\",\"operation\":\"Apply\",\"apiVersion\":\"v1\",\"time\":"
                 "\"" T1 "\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:data\":{\"f:a\":{}},"
                 "\"f:metadata\":{\"f:labels\":{\"f:x\":{}}}}}");
    free(s);
    json_decref(bare);
    json_decref(out);
    openapi_free(oa);
}

static void t_cm_reapply_unchanged(void)
{
    struct openapi *oa = load_oa();
    const char *in = CM("{\"a\":\"1\",\"b\":\"2\"}");
    json_t *first = apply_ok(NULL, in, "kubectl", false, oa, cm_schema(oa), T1);
    json_t *again = apply_ok(json_deep_copy(first), in, "kubectl", false, oa, cm_schema(oa), T2);

    /* A no-op apply leaves the object and managedFields (time included) as they were. */
    CHECK(json_equal(first, again));
    CHECK_STR(json_string_value(json_object_get(entry_of(again, "kubectl", "Apply"), "time")), T1);
    json_decref(first);
    json_decref(again);
    openapi_free(oa);
}

static void t_cm_remove_field(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = cm_schema(oa);
    json_t *o =
        apply_ok(NULL,
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
                 "\"labels\":{\"x\":\"y\"}},\"data\":{\"a\":\"1\",\"b\":\"2\"}}",
                 "kubectl", false, oa, s, T1);
    json_t *bare;

    o = apply_ok(o, CM("{\"a\":\"1\"}"), "kubectl", false, oa, s, T2);
    bare = strip_mf(o);
    /* b and the labels (with the labels map itself) are gone; name stays. */
    CHECK_JSON(bare, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
                     "\"namespace\":\"default\"},\"data\":{\"a\":\"1\"}}");
    CHECK_JSON(fields_of(o, "kubectl", "Apply"), "{\"f:data\":{\"f:a\":{}}}");
    CHECK_STR(json_string_value(json_object_get(entry_of(o, "kubectl", "Apply"), "time")), T2);
    json_decref(bare);

    /* Dropping data altogether removes the map. */
    o = apply_ok(o,
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
                 "\"labels\":{\"k\":\"v\"}}}",
                 "kubectl", false, oa, s, T3);
    CHECK(json_object_get(o, "data") == NULL);
    CHECK_JSON(fields_of(o, "kubectl", "Apply"), "{\"f:metadata\":{\"f:labels\":{\"f:k\":{}}}}");
    json_decref(o);
    openapi_free(oa);
}

static void t_cm_remove_field_owned_by_other(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = cm_schema(oa);
    json_t *o = apply_ok(NULL, CM("{\"a\":\"1\",\"b\":\"2\"}"), "alice", false, oa, s, T1);

    /* bob applies the same value of a: shared, no conflict. */
    o = apply_ok(o, CM("{\"a\":\"1\"}"), "bob", false, oa, s, T2);
    CHECK_JSON(fields_of(o, "alice", "Apply"), "{\"f:data\":{\"f:a\":{},\"f:b\":{}}}");
    CHECK_JSON(fields_of(o, "bob", "Apply"), "{\"f:data\":{\"f:a\":{}}}");
    /* alice drops a and b: a survives (bob owns it), b goes. */
    o = apply_ok(o, CM("{\"c\":\"3\"}"), "alice", false, oa, s, T3);
    CHECK_JSON(json_object_get(o, "data"), "{\"a\":\"1\",\"c\":\"3\"}");
    CHECK_JSON(fields_of(o, "alice", "Apply"), "{\"f:data\":{\"f:c\":{}}}");
    CHECK_JSON(fields_of(o, "bob", "Apply"), "{\"f:data\":{\"f:a\":{}}}");
    json_decref(o);
    openapi_free(oa);
}

static void t_cm_conflict(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = cm_schema(oa);
    json_t *live = apply_ok(NULL, CM("{\"a\":\"1\",\"b\":\"2\"}"), "alice", false, oa, s, T1);
    json_t *before = json_deep_copy(live), *a = J(CM("{\"a\":\"9\",\"b\":\"2\"}"));
    json_t *conf = json_array(), *out = (json_t *)&out;
    char msg[512] = "x";
    int rc = ssa_apply(live, a, "bob", false, oa, s, T2, &out, conf, msg, sizeof(msg));

    CHECK_INT(rc, ERR_CONFLICT);
    CHECK(out == (json_t *)&out); /* untouched */
    CHECK_JSON(conf, "[{\"reason\":\"FieldManagerConflict\",\"message\":\"conflict with "
                     "\\\"alice\\\"\",\"field\":\".data.a\"}]");
    CHECK_STR(msg, "Apply failed with 1 conflict: conflict with \"alice\": .data.a");
    CHECK(json_equal(live, before)); /* inputs never modified */

    /* Two conflicting fields: kube's grouped message. */
    json_decref(a);
    json_array_clear(conf);
    a = J(CM("{\"a\":\"9\",\"b\":\"8\"}"));
    rc = ssa_apply(live, a, "bob", false, oa, s, T2, &out, conf, msg, sizeof(msg));
    CHECK_INT(rc, ERR_CONFLICT);
    CHECK_INT(json_array_size(conf), 2);
    CHECK_STR(msg,
              "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .data.a\n- .data.b");
    /* conflicts may be NULL. */
    rc = ssa_apply(live, a, "bob", false, oa, s, T2, &out, NULL, NULL, 0);
    CHECK_INT(rc, ERR_CONFLICT);
    CHECK(out == (json_t *)&out);
    json_decref(a);
    json_decref(conf);
    json_decref(before);
    json_decref(live);
    openapi_free(oa);
}

static void t_cm_force(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = cm_schema(oa);
    json_t *o = apply_ok(NULL, CM("{\"a\":\"1\",\"b\":\"2\"}"), "alice", false, oa, s, T1);

    o = apply_ok(o, CM("{\"a\":\"9\"}"), "bob", true, oa, s, T2);
    CHECK_JSON(json_object_get(o, "data"), "{\"a\":\"9\",\"b\":\"2\"}");
    CHECK_JSON(fields_of(o, "alice", "Apply"), "{\"f:data\":{\"f:b\":{}}}");
    CHECK_JSON(fields_of(o, "bob", "Apply"), "{\"f:data\":{\"f:a\":{}}}");
    /* Taking the last field drops alice's entry. */
    o = apply_ok(o, CM("{\"a\":\"9\",\"b\":\"7\"}"), "bob", true, oa, s, T3);
    CHECK(entry_of(o, "alice", "Apply") == NULL);
    CHECK_INT(json_array_size(mf_of(o)), 1);
    json_decref(o);
    openapi_free(oa);
}

static void t_cm_update_create(void)
{
    struct openapi *oa = load_oa();
    json_t *o = J("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
                  "\"namespace\":\"default\",\"uid\":\"u1\",\"resourceVersion\":\"3\","
                  "\"creationTimestamp\":\"" T1 "\",\"labels\":{\"x\":\"y\"}},"
                  "\"data\":{\"a\":\"b\"}}");

    CHECK_INT(ssa_update(NULL, o, "kubectl-create", "", oa, cm_schema(oa), T1), 0);
    /* What `kubectl create` shows: "." for maps the write brought into being. */
    CHECK_JSON(mf_of(o), "[{\"manager\":\"kubectl-create\",\"operation\":\"Update\","
                         "\"apiVersion\":\"v1\",\"time\":\"" T1 "\",\"fieldsType\":\"FieldsV1\","
                         "\"fieldsV1\":{\"f:data\":{\".\":{},\"f:a\":{}},\"f:metadata\":"
                         "{\"f:labels\":{\".\":{},\"f:x\":{}}}}}]");
    json_decref(o);
    openapi_free(oa);
}

static void t_cm_update_takes_ownership(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = cm_schema(oa);
    json_t *live = apply_ok(NULL, CM("{\"a\":\"1\",\"b\":\"2\"}"), "alice", false, oa, s, T1);
    json_t *edited = json_deep_copy(live), *a, *out = NULL, *conf = json_array();
    char msg[256];
    int rc;

    /* kubectl edit: a changes, c is added, managedFields sent back unchanged. */
    json_object_set_new(json_object_get(edited, "data"), "a", json_string("5"));
    json_object_set_new(json_object_get(edited, "data"), "c", json_string("3"));
    CHECK_INT(ssa_update(live, edited, "kubectl-edit", "", oa, s, T2), 0);
    CHECK_JSON(fields_of(edited, "alice", "Apply"), "{\"f:data\":{\"f:b\":{}}}");
    CHECK_JSON(fields_of(edited, "kubectl-edit", "Update"), "{\"f:data\":{\"f:a\":{},\"f:c\":{}}}");
    CHECK_JSON(json_object_get(edited, "data"), "{\"a\":\"5\",\"b\":\"2\",\"c\":\"3\"}");
    /* Apply before Update in kube's order. */
    CHECK_STR(json_string_value(json_object_get(json_array_get(mf_of(edited), 0), "operation")),
              "Apply");

    /* alice re-applies her old value: conflict with the Update manager, version shown. */
    a = J(CM("{\"a\":\"1\",\"b\":\"2\"}"));
    rc = ssa_apply(edited, a, "alice", false, oa, s, T3, &out, conf, msg, sizeof(msg));
    CHECK_INT(rc, ERR_CONFLICT);
    CHECK_JSON(conf, "[{\"reason\":\"FieldManagerConflict\",\"message\":\"conflict with "
                     "\\\"kubectl-edit\\\" using v1\",\"field\":\".data.a\"}]");

    /* A second edit by the same manager merges into its entry; removing c drops it. */
    json_t *edit2 = json_deep_copy(edited);
    json_object_del(json_object_get(edit2, "data"), "c");
    json_object_set_new(json_object_get(edit2, "data"), "d", json_string("4"));
    CHECK_INT(ssa_update(edited, edit2, "kubectl-edit", "", oa, s, T3), 0);
    CHECK_JSON(fields_of(edit2, "kubectl-edit", "Update"), "{\"f:data\":{\"f:a\":{},\"f:d\":{}}}");
    CHECK_STR(json_string_value(json_object_get(entry_of(edit2, "kubectl-edit", "Update"), "time")),
              T3);
    CHECK_INT(json_array_size(mf_of(edit2)), 2);

    /* A write that changes nothing tracked keeps everything, time included. */
    json_t *edit3 = json_deep_copy(edit2);
    CHECK_INT(ssa_update(edit2, edit3, "other", "", oa, s, "2030-01-01T00:00:00Z"), 0);
    CHECK(json_equal(edit2, edit3));

    json_decref(edit3);
    json_decref(edit2);
    json_decref(a);
    json_decref(conf);
    json_decref(edited);
    json_decref(live);
    openapi_free(oa);
}

static void t_update_managed_fields_from_request(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = cm_schema(oa);
    json_t *live = apply_ok(NULL, CM("{\"a\":\"1\"}"), "alice", false, oa, s, T1);
    json_t *put = json_deep_copy(live);

    /* A PUT without managedFields keeps the live ones. */
    json_object_del(json_object_get(put, "metadata"), "managedFields");
    json_object_set_new(json_object_get(put, "data"), "b", json_string("2"));
    CHECK_INT(ssa_update(live, put, "ctl", "", oa, s, T2), 0);
    CHECK_JSON(fields_of(put, "alice", "Apply"), "{\"f:data\":{\"f:a\":{}}}");
    CHECK_JSON(fields_of(put, "ctl", "Update"), "{\"f:data\":{\"f:b\":{}}}");
    json_decref(put);

    /* managedFields: [{}] resets: only this write's changes remain owned. */
    put = json_deep_copy(live);
    json_object_set_new(json_object_get(put, "metadata"), "managedFields", J("[{}]"));
    json_object_set_new(json_object_get(put, "data"), "b", json_string("2"));
    CHECK_INT(ssa_update(live, put, "ctl", "", oa, s, T2), 0);
    CHECK_JSON(mf_of(put), "[{\"manager\":\"ctl\",\"operation\":\"Update\",\"apiVersion\":\"v1\","
                           "\"time\":\"" T2 "\",\"fieldsType\":\"FieldsV1\","
                           "\"fieldsV1\":{\"f:data\":{\"f:b\":{}}}}]");
    json_decref(put);
    json_decref(live);
    openapi_free(oa);
}

static void t_resource_version(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = cm_schema(oa);
    json_t *live = J("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
                     "\"resourceVersion\":\"6\",\"uid\":\"u\"},\"data\":{\"a\":\"1\"}}");
    json_t *stale = J("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
                      "\"resourceVersion\":\"5\"},\"data\":{\"a\":\"2\"}}");
    json_t *conf = json_array(), *out = NULL;
    char msg[256] = "";

    CHECK_INT(ssa_apply(live, stale, "m", true, oa, s, T1, &out, conf, msg, sizeof(msg)),
              ERR_CONFLICT);
    CHECK_INT(json_array_size(conf), 0);
    CHECK(out == NULL);
    CHECK(strstr(msg, "the object has been modified") != NULL);
    /* Creating with a resourceVersion: nothing to match. */
    CHECK_INT(ssa_apply(NULL, stale, "m", true, oa, s, T1, &out, conf, msg, sizeof(msg)),
              ERR_CONFLICT);
    CHECK_INT(json_array_size(conf), 0);
    /* Matching: applied; uid and resourceVersion stay the server's and are not tracked. */
    json_object_set_new(json_object_get(stale, "metadata"), "resourceVersion", json_string("6"));
    CHECK_INT(ssa_apply(live, stale, "m", false, oa, s, T1, &out, conf, msg, sizeof(msg)), 0);
    CHECK_STR(json_string_value(json_object_get(json_object_get(out, "metadata"), "uid")), "u");
    CHECK_JSON(fields_of(out, "m", "Apply"), "{\"f:data\":{\"f:a\":{}}}");
    CHECK_JSON(json_object_get(out, "data"), "{\"a\":\"2\"}");
    json_decref(out);
    json_decref(conf);
    json_decref(stale);
    json_decref(live);
    openapi_free(oa);
}

static void t_malformed(void)
{
    struct openapi *oa = load_oa();
    const json_t *cs = cm_schema(oa), *ds = deploy_schema(oa);
    static const struct {
        const char *applied;
        int deploy;
        const char *msg;
    } cases[] = {
        {"[1,2]", 0, "the applied configuration must be a JSON object, not list"},
        {"\"x\"", 0, "the applied configuration must be a JSON object, not string"},
        {"{\"metadata\":{\"name\":\"c\"},\"data\":[\"a\"]}", 0, ".data: expected map, got list"},
        {"{\"metadata\":{\"name\":\"c\",\"labels\":[]}}", 0,
         ".metadata.labels: expected map, got list"},
        {"{\"metadata\":{\"name\":\"c\"},\"data\":{\"a\":{\"b\":1}}}", 0,
         ".data.a: expected scalar, got map"},
        {"{\"metadata\":{\"name\":\"d\"},\"spec\":[]}", 1, ".spec: expected map, got list"},
        {"{\"metadata\":{\"name\":\"d\"},\"spec\":{\"replicas\":{}}}", 1,
         ".spec.replicas: expected scalar, got map"},
        {"{\"spec\":{\"template\":{\"spec\":{\"containers\":{\"name\":\"a\"}}}}}", 1,
         ".spec.template.spec.containers: expected list, got map"},
        {"{\"spec\":{\"template\":{\"spec\":{\"containers\":[\"a\"]}}}}", 1,
         ".spec.template.spec.containers: element 0: associative list with keys may not have "
         "non-map elements"},
        {"{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\"},{\"name\":\"a\"}]}}}"
         "}",
         1, ".spec.template.spec.containers: duplicate entries for key [name=\"a\"]"},
        {"{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":"
         "[{\"containerPort\":80},{\"containerPort\":80,\"protocol\":\"TCP\"}]}]}}}}",
         1,
         ".spec.template.spec.containers[name=\"a\"].ports: duplicate entries for key "
         "[containerPort=80,protocol=\"TCP\"]"},
        {"{\"metadata\":{\"finalizers\":[{\"a\":1}]}}", 0,
         ".metadata.finalizers: element 0: elements of a set list must be scalars"},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        json_t *a = J(cases[i].applied), *conf = json_array(), *out = NULL;
        char msg[256] = "";
        int rc = ssa_apply(NULL, a, "m", false, oa, cases[i].deploy ? ds : cs, T1, &out, conf, msg,
                           sizeof(msg));

        CHECK_INT(rc, ERR_INVALID);
        CHECK_STR(msg, cases[i].msg);
        CHECK(out == NULL);
        CHECK_INT(json_array_size(conf), 0);
        json_decref(conf);
        json_decref(a);
    }

    /* NULL applied, a live object that is not an object, a NULL msg buffer. */
    {
        json_t *out = NULL, *a = J(CM("{}")), *bad = J("[]");
        char msg[128];

        CHECK_INT(ssa_apply(NULL, NULL, "m", false, oa, cs, T1, &out, NULL, msg, sizeof(msg)),
                  ERR_INVALID);
        CHECK_STR(msg, "the applied configuration must be a JSON object, not nothing");
        CHECK_INT(ssa_apply(bad, a, "m", false, oa, cs, T1, &out, NULL, msg, sizeof(msg)),
                  ERR_INVALID);
        CHECK_STR(msg, "the live object must be a JSON object, not list");
        CHECK_INT(ssa_apply(bad, a, "m", false, oa, cs, T1, &out, NULL, NULL, 0), ERR_INVALID);
        CHECK(out == NULL);
        /* ssa_update ignores what it cannot track. */
        CHECK_INT(ssa_update(NULL, bad, "m", "", oa, cs, T1), 0);
        CHECK_JSON(bad, "[]");
        json_decref(a);
        json_decref(bad);
    }

    /* Absurd nesting is refused by apply, tolerated by update; nothing overflows. */
    {
        json_t *deep = J("{\"apiVersion\":\"x/v1\",\"kind\":\"X\",\"metadata\":{\"name\":"
                         "\"n\"}}"),
               *cur = deep, *out = NULL;
        char msg[256] = "";

        for (int i = 0; i < 300; i++) {
            json_t *next = json_object();

            REQUIRE(json_object_set_new(cur, "a", next) == 0);
            cur = next;
        }
        CHECK_INT(ssa_apply(NULL, deep, "m", false, NULL, NULL, T1, &out, NULL, msg, sizeof(msg)),
                  ERR_INVALID);
        CHECK(strstr(msg, ".a.a.a: object nesting is too deep") != NULL);
        CHECK(strncmp(msg, "....a.a.a", 9) == 0);
        CHECK_INT(strlen(msg), sizeof(msg) - 1);
        CHECK(out == NULL);
        CHECK_INT(ssa_update(NULL, deep, "m", "", NULL, NULL, T1), 0);
        CHECK_INT(json_array_size(mf_of(deep)), 1);
        json_decref(deep);
    }

    /* Junk in a live object (unkeyable items) does not stop an apply: replaced whole. */
    {
        json_t *live = J("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":"
                         "{\"name\":\"d\"},\"spec\":{\"template\":{\"spec\":{\"containers\":"
                         "[7,{\"image\":\"x\"}]}}}}");
        json_t *o = apply_ok(live,
                             "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":"
                             "{\"name\":\"d\"},\"spec\":{\"template\":{\"spec\":{\"containers\":"
                             "[{\"name\":\"a\",\"image\":\"i\"}]}}}}",
                             "m", false, oa, ds, T1);

        CHECK_JSON(json_object_get(o, "spec"),
                   "{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}}}");
        json_decref(o);
    }
    openapi_free(oa);
}

/* ---- Deployment ---- */

#define DEPLOY(spec)                                                                               \
    "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\","          \
    "\"namespace\":\"default\"},\"spec\":" spec "}"

static void t_deploy_create(void)
{
    struct openapi *oa = load_oa();
    const char *in =
        DEPLOY("{\"replicas\":2,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},\"template\":"
               "{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":[{\"name\":"
               "\"nginx\",\"image\":\"nginx:1\",\"args\":[\"-g\"],\"ports\":[{\"containerPort\":80}"
               "]}]}}}");
    json_t *o = apply_ok(NULL, in, "kubectl", false, oa, deploy_schema(oa), T1);
    json_t *bare = strip_mf(o);

    CHECK_JSON(bare, in);
    /* selector is an atomic struct; the port key gets protocol's default TCP. */
    CHECK_JSON(fields_of(o, "kubectl", "Apply"),
               "{\"f:spec\":{\"f:replicas\":{},\"f:selector\":{},\"f:template\":{\"f:metadata\":"
               "{\"f:labels\":{\"f:app\":{}}},\"f:spec\":{\"f:containers\":{\"k:{\\\"name\\\":"
               "\\\"nginx\\\"}\":{\".\":{},\"f:args\":{},\"f:image\":{},\"f:name\":{},\"f:ports\":"
               "{\"k:{\\\"containerPort\\\":80,\\\"protocol\\\":\\\"TCP\\\"}\":{\".\":{},"
               "\"f:containerPort\":{}}}}}}}}}");
    CHECK_STR(json_string_value(json_object_get(entry_of(o, "kubectl", "Apply"), "apiVersion")),
              "apps/v1");
    json_decref(bare);
    json_decref(o);
    openapi_free(oa);
}

static void t_deploy_update_create(void)
{
    struct openapi *oa = load_oa();
    json_t *o = J(DEPLOY("{\"replicas\":1,\"selector\":{\"matchLabels\":{\"app\":\"w\"}},"
                         "\"strategy\":{\"type\":\"RollingUpdate\",\"rollingUpdate\":{\"maxSurge\":"
                         "\"25%\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"w\"}},"
                         "\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"i\",\"ports\":"
                         "[{\"containerPort\":80,\"protocol\":\"TCP\"}]}]}}}"));

    json_object_set_new(o, "status", J("{\"replicas\":1}"));
    CHECK_INT(ssa_update(NULL, o, "kubectl-create", "", oa, deploy_schema(oa), T1), 0);
    /* Non-pointer structs (schema default {}: spec, strategy, template, template.metadata)
     * carry no "."; maps, pointer structs, list items and lists do. (Real kube also leaves
     * it off non-omitempty Go slices such as containers; the schema cannot tell them apart.)
     * Status is not tracked. */
    CHECK_JSON(
        fields_of(o, "kubectl-create", "Update"),
        "{\"f:spec\":{\"f:replicas\":{},\"f:selector\":{},\"f:strategy\":{\"f:rollingUpdate\":"
        "{\".\":{},\"f:maxSurge\":{}},\"f:type\":{}},\"f:template\":{\"f:metadata\":"
        "{\"f:labels\":{\".\":{},\"f:app\":{}}},\"f:spec\":{\"f:containers\":{\".\":{},"
        "\"k:{\\\"name\\\":\\\"c\\\"}\":{\".\":{},\"f:image\":{},\"f:name\":{},\"f:ports\":"
        "{\".\":{},\"k:{\\\"containerPort\\\":80,\\\"protocol\\\":\\\"TCP\\\"}\":{\".\":{},"
        "\"f:containerPort\":{},\"f:protocol\":{}}}}}}}}}");
    json_decref(o);
    openapi_free(oa);
}

static void t_deploy_containers_by_name(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = deploy_schema(oa);
    json_t *o =
        apply_ok(NULL,
                 DEPLOY("{\"replicas\":1,\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\","
                        "\"image\":\"ia\"}]}}}"),
                 "alice", false, oa, s, T1);

    /* bob adds container b: both kept, each owns its own. */
    o = apply_ok(o,
                 DEPLOY("{\"template\":{\"spec\":{\"containers\":[{\"name\":\"b\",\"image\":"
                        "\"ib\"}]}}}"),
                 "bob", false, oa, s, T2);
    CHECK_JSON(json_object_get(o, "spec"),
               "{\"replicas\":1,\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":"
               "\"ia\"},{\"name\":\"b\",\"image\":\"ib\"}]}}}");
    CHECK_JSON(fields_of(o, "bob", "Apply"),
               "{\"f:spec\":{\"f:template\":{\"f:spec\":{\"f:containers\":{\"k:{\\\"name\\\":"
               "\\\"b\\\"}\":{\".\":{},\"f:image\":{},\"f:name\":{}}}}}}}");

    /* bob changing a's image conflicts with alice, naming the item by key. */
    {
        json_t *a = J(DEPLOY("{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":"
                             "\"evil\"}]}}}"));
        json_t *conf = json_array(), *out = NULL;
        char msg[256];

        CHECK_INT(ssa_apply(o, a, "bob", false, oa, s, T2, &out, conf, msg, sizeof(msg)),
                  ERR_CONFLICT);
        CHECK_JSON(conf,
                   "[{\"reason\":\"FieldManagerConflict\",\"message\":\"conflict with "
                   "\\\"alice\\\"\",\"field\":\".spec.template.spec.containers[name=\\\"a\\\"]"
                   ".image\"}]");
        json_decref(conf);
        json_decref(a);
    }

    /* alice re-applies without a: a removed, b kept. */
    o = apply_ok(o, DEPLOY("{\"replicas\":3}"), "alice", false, oa, s, T3);
    CHECK_JSON(json_object_get(o, "spec"),
               "{\"replicas\":3,\"template\":{\"spec\":{\"containers\":[{\"name\":\"b\",\"image\":"
               "\"ib\"}]}}}");
    CHECK_JSON(fields_of(o, "alice", "Apply"), "{\"f:spec\":{\"f:replicas\":{}}}");
    json_decref(o);
    openapi_free(oa);
}

static void t_deploy_list_order(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = deploy_schema(oa);
    json_t *o = apply_ok(NULL,
                         DEPLOY("{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\"},"
                                "{\"name\":\"b\"},{\"name\":\"c\"}]}}}"),
                         "alice", false, oa, s, T1);

    /* bob's items: new ones go next to the shared item they precede; live order otherwise. */
    o = apply_ok(o,
                 DEPLOY("{\"template\":{\"spec\":{\"containers\":[{\"name\":\"x\"},{\"name\":"
                        "\"b\"},{\"name\":\"y\"}]}}}"),
                 "bob", false, oa, s, T2);
    CHECK_JSON(json_object_get(o, "spec"),
               "{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\"},{\"name\":\"x\"},"
               "{\"name\":\"b\"},{\"name\":\"c\"},{\"name\":\"y\"}]}}}");
    json_decref(o);
    openapi_free(oa);
}

static void t_deploy_atomic_list(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = deploy_schema(oa);
    json_t *o = apply_ok(NULL,
                         DEPLOY("{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\","
                                "\"args\":[\"1\",\"2\"]}]}}}"),
                         "alice", false, oa, s, T1);

    /* args is atomic: bob replaces the whole list and takes it (force). */
    o = apply_ok(o,
                 DEPLOY("{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\",\"args\":"
                        "[\"3\"]}]}}}"),
                 "bob", true, oa, s, T2);
    CHECK_JSON(json_object_get(o, "spec"),
               "{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\",\"args\":[\"3\"]}]}}}");
    CHECK_JSON(fields_of(o, "alice", "Apply"),
               "{\"f:spec\":{\"f:template\":{\"f:spec\":{\"f:containers\":{\"k:{\\\"name\\\":"
               "\\\"a\\\"}\":{\".\":{},\"f:name\":{}}}}}}}");
    CHECK_JSON(fields_of(o, "bob", "Apply"),
               "{\"f:spec\":{\"f:template\":{\"f:spec\":{\"f:containers\":{\"k:{\\\"name\\\":"
               "\\\"a\\\"}\":{\".\":{},\"f:args\":{},\"f:name\":{}}}}}}}");
    json_decref(o);
    openapi_free(oa);
}

static void t_deploy_update_then_apply(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = deploy_schema(oa);
    json_t *o = J(DEPLOY("{\"replicas\":1,\"template\":{\"spec\":{\"containers\":[{\"name\":"
                         "\"a\",\"image\":\"i\"}]}}}"));
    json_t *a = J(DEPLOY("{\"replicas\":5,\"template\":{\"spec\":{\"containers\":[{\"name\":"
                         "\"a\",\"image\":\"j\"}]}}}"));
    json_t *conf = json_array(), *out = NULL;
    char msg[512];

    CHECK_INT(ssa_update(NULL, o, "kubectl-client-side-apply", "", oa, s, T1), 0);
    CHECK_INT(ssa_apply(o, a, "kubectl", false, oa, s, T2, &out, conf, msg, sizeof(msg)),
              ERR_CONFLICT);
    CHECK_JSON(conf,
               "[{\"reason\":\"FieldManagerConflict\",\"message\":\"conflict with "
               "\\\"kubectl-client-side-apply\\\" using apps/v1\",\"field\":\".spec.replicas\"},"
               "{\"reason\":\"FieldManagerConflict\",\"message\":\"conflict with "
               "\\\"kubectl-client-side-apply\\\" using apps/v1\",\"field\":"
               "\".spec.template.spec.containers[name=\\\"a\\\"].image\"}]");
    CHECK_STR(msg, "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" "
                   "using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"a\"]"
                   ".image");
    CHECK_INT(ssa_apply(o, a, "kubectl", true, oa, s, T2, &out, conf, msg, sizeof(msg)), 0);
    CHECK_JSON(fields_of(out, "kubectl-client-side-apply", "Update"),
               "{\"f:spec\":{\"f:template\":{\"f:spec\":{\"f:containers\":{\".\":{},"
               "\"k:{\\\"name\\\":\\\"a\\\"}\":{\".\":{},\"f:name\":{}}}}}}}");
    CHECK_INT(json_integer_value(json_object_get(json_object_get(out, "spec"), "replicas")), 5);
    json_decref(out);
    json_decref(conf);
    json_decref(a);
    json_decref(o);
    openapi_free(oa);
}

static void t_status_not_tracked(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = deploy_schema(oa);
    json_t *o = apply_ok(NULL, DEPLOY("{\"replicas\":1}"), "kubectl", false, oa, s, T1);
    json_t *n = json_deep_copy(o), *before;

    /* An apply carrying status: merged, never owned. */
    o = apply_ok(o,
                 "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":"
                 "\"web\"},\"spec\":{\"replicas\":1},\"status\":{\"replicas\":1}}",
                 "kubectl", false, oa, s, T2);
    CHECK_JSON(fields_of(o, "kubectl", "Apply"), "{\"f:spec\":{\"f:replicas\":{}}}");

    /* A main-resource write changing only status records nothing. */
    before = json_deep_copy(n);
    json_object_set_new(n, "status", J("{\"replicas\":3}"));
    CHECK_INT(ssa_update(before, n, "ctrl", "", oa, s, T2), 0);
    CHECK(json_equal(mf_of(n), mf_of(before)));

    /* The status subresource: only status, with a subresource entry of its own. */
    {
        json_t *st = json_deep_copy(n);

        json_object_set_new(st, "status", J("{\"replicas\":3,\"readyReplicas\":2}"));
        json_object_set_new(json_object_get(st, "spec"), "paused", json_true());
        json_object_set_new(json_object_get(st, "metadata"), "labels", J("{\"l\":\"1\"}"));
        CHECK_INT(ssa_update(n, st, "deployment-controller", "status", oa, s, T3), 0);
        CHECK_JSON(entry_of(st, "deployment-controller", "Update"),
                   "{\"manager\":\"deployment-controller\",\"operation\":\"Update\",\"apiVersion\":"
                   "\"apps/v1\",\"time\":\"" T3 "\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":"
                   "{\"f:status\":{\"f:readyReplicas\":{}}},\"subresource\":\"status\"}");
        CHECK_JSON(fields_of(st, "kubectl", "Apply"), "{\"f:spec\":{\"f:replicas\":{}}}");
        json_decref(st);
    }
    json_decref(before);
    json_decref(n);
    json_decref(o);
    openapi_free(oa);
}

static void t_managed_fields_order(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = cm_schema(oa);
    json_t *o = J(CM("{\"a\":\"1\"}")), *n;

    CHECK_INT(ssa_update(NULL, o, "zed", "", oa, s, T1), 0);
    o = apply_ok(o, CM("{\"b\":\"1\"}"), "mid", false, oa, s, T3);
    o = apply_ok(o, CM("{\"c\":\"1\"}"), "alpha", false, oa, s, T3);
    n = json_deep_copy(o);
    json_object_set_new(json_object_get(n, "data"), "d", json_string("1"));
    json_object_set_new(n, "apiVersion", json_string("v2"));
    CHECK_INT(ssa_update(o, n, "zed", "", oa, s, T2), 0);
    /* Apply first, then by time, then manager; zed has one Update entry per apiVersion. */
    {
        static const char *const want[][3] = {{"alpha", "Apply", "v1"},
                                              {"mid", "Apply", "v1"},
                                              {"zed", "Update", "v1"},
                                              {"zed", "Update", "v2"}};
        json_t *mf = mf_of(n);

        CHECK_INT(json_array_size(mf), 4);
        for (size_t i = 0; i < 4 && i < json_array_size(mf); i++) {
            json_t *e = json_array_get(mf, i);

            CHECK_STR(json_string_value(json_object_get(e, "manager")), want[i][0]);
            CHECK_STR(json_string_value(json_object_get(e, "operation")), want[i][1]);
            CHECK_STR(json_string_value(json_object_get(e, "apiVersion")), want[i][2]);
        }
    }
    json_decref(n);
    json_decref(o);
    openapi_free(oa);
}

/* ---- a CRD schema: no $refs, oa NULL ---- */

static const char crd_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"apiVersion\":{\"type\":\"string\"},\"kind\":{\"type\":\"string\"},"
    "\"metadata\":{\"type\":\"object\"},"
    "\"spec\":{\"type\":\"object\",\"properties\":{"
    "\"size\":{\"type\":\"integer\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
    "\"x-kubernetes-list-type\":\"set\"},"
    "\"args\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"ports\":{\"type\":\"array\",\"x-kubernetes-list-type\":\"map\","
    "\"x-kubernetes-list-map-keys\":[\"port\",\"protocol\"],\"items\":{\"type\":\"object\","
    "\"properties\":{\"port\":{\"type\":\"integer\"},\"protocol\":{\"type\":\"string\","
    "\"default\":\"TCP\"},\"name\":{\"type\":\"string\"}}}},"
    "\"env\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
    "\"selector\":{\"type\":\"object\",\"x-kubernetes-map-type\":\"atomic\","
    "\"additionalProperties\":{\"type\":\"string\"}},"
    "\"extra\":{\"type\":\"object\",\"x-kubernetes-preserve-unknown-fields\":true}}},"
    "\"status\":{\"type\":\"object\",\"properties\":{\"phase\":{\"type\":\"string\"}}}}}";

#define W(spec)                                                                                    \
    "{\"apiVersion\":\"ex.io/"                                                                     \
    "v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"w\"},\"spec\":" spec "}"

static void t_crd_set_list(void)
{
    json_t *s = J(crd_schema);
    json_t *o = apply_ok(NULL, W("{\"tags\":[\"x\",\"y\"]}"), "alice", false, NULL, s, T1);

    CHECK_JSON(fields_of(o, "alice", "Apply"),
               "{\"f:spec\":{\"f:tags\":{\"v:\\\"x\\\"\":{},\"v:\\\"y\\\"\":{}}}}");
    o = apply_ok(o, W("{\"tags\":[\"z\",\"y\"]}"), "bob", false, NULL, s, T2);
    CHECK_JSON(json_object_get(o, "spec"), "{\"tags\":[\"x\",\"z\",\"y\"]}");
    /* alice drops x and y: x goes, y stays (bob), z stays. */
    o = apply_ok(o, W("{\"size\":1}"), "alice", false, NULL, s, T3);
    CHECK_JSON(json_object_get(o, "spec"), "{\"tags\":[\"z\",\"y\"],\"size\":1}");
    CHECK_JSON(fields_of(o, "bob", "Apply"),
               "{\"f:spec\":{\"f:tags\":{\"v:\\\"y\\\"\":{},\"v:\\\"z\\\"\":{}}}}");
    json_decref(o);
    json_decref(s);
}

static void t_crd_atomic_and_maps(void)
{
    json_t *s = J(crd_schema);
    json_t *o = apply_ok(NULL,
                         W("{\"args\":[\"1\",\"2\"],\"env\":{\"A\":\"1\"},\"selector\":{\"k\":"
                           "\"v\",\"j\":\"w\"},\"extra\":{\"deep\":{\"x\":[1,2]}}}"),
                         "alice", false, NULL, s, T1);

    /* args: atomic list (no list-type); selector: atomic map; extra: deduced (map entries
     * granular, lists atomic); env: granular map. */
    CHECK_JSON(fields_of(o, "alice", "Apply"),
               "{\"f:spec\":{\"f:args\":{},\"f:env\":{\"f:A\":{}},\"f:extra\":{\"f:deep\":"
               "{\".\":{},\"f:x\":{}}},\"f:selector\":{}}}");
    o = apply_ok(o,
                 W("{\"args\":[\"3\"],\"env\":{\"B\":\"2\"},\"selector\":{\"n\":\"1\"},"
                   "\"extra\":{\"deep\":{\"y\":true}}}"),
                 "bob", true, NULL, s, T2);
    CHECK_JSON(json_object_get(o, "spec"),
               "{\"args\":[\"3\"],\"env\":{\"A\":\"1\",\"B\":\"2\"},\"selector\":{\"n\":\"1\"},"
               "\"extra\":{\"deep\":{\"x\":[1,2],\"y\":true}}}");
    CHECK_JSON(fields_of(o, "alice", "Apply"),
               "{\"f:spec\":{\"f:env\":{\"f:A\":{}},\"f:extra\":{\"f:deep\":{\".\":{},"
               "\"f:x\":{}}}}}");
    /* The same manager replacing its atomic list: replaced, no conflict. */
    o = apply_ok(o, W("{\"args\":[\"4\",\"5\"]}"), "bob", false, NULL, s, T3);
    CHECK_JSON(json_object_get(json_object_get(o, "spec"), "args"), "[\"4\",\"5\"]");
    json_decref(o);
    json_decref(s);
}

static void t_crd_keyed_defaults_and_metadata(void)
{
    json_t *s = J(crd_schema);
    json_t *o = apply_ok(NULL,
                         "{\"apiVersion\":\"ex.io/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":"
                         "\"w\",\"labels\":{\"a\":\"1\"},\"finalizers\":[\"f1\"]},\"spec\":"
                         "{\"ports\":[{\"port\":80},{\"port\":80,\"protocol\":\"UDP\"}]}}",
                         "alice", false, NULL, s, T1);

    /* A bare metadata schema is typed as ObjectMeta (labels granular, finalizers a set). */
    CHECK_JSON(fields_of(o, "alice", "Apply"),
               "{\"f:metadata\":{\"f:finalizers\":{\"v:\\\"f1\\\"\":{}},\"f:labels\":{\"f:a\":{}}},"
               "\"f:spec\":{\"f:ports\":{\"k:{\\\"port\\\":80,\\\"protocol\\\":\\\"TCP\\\"}\":{"
               "\".\":{},\"f:port\":{}},\"k:{\\\"port\\\":80,\\\"protocol\\\":\\\"UDP\\\"}\":{"
               "\".\":{},\"f:port\":{},\"f:protocol\":{}}}}}");
    /* The item without protocol and the one saying TCP are the same item. */
    o = apply_ok(o, W("{\"ports\":[{\"port\":80,\"protocol\":\"TCP\",\"name\":\"http\"}]}"), "bob",
                 false, NULL, s, T2);
    CHECK_JSON(json_object_get(json_object_get(o, "spec"), "ports"),
               "[{\"port\":80,\"protocol\":\"TCP\",\"name\":\"http\"},{\"port\":80,\"protocol\":"
               "\"UDP\"}]");
    json_decref(o);
    json_decref(s);
}

static void t_no_schema(void)
{
    /* No schema at all: maps granular, lists atomic, map entries are members. */
    json_t *o = apply_ok(NULL,
                         "{\"apiVersion\":\"x/v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\"},"
                         "\"spec\":{\"a\":{\"b\":1},\"l\":[1]}}",
                         "m", false, NULL, NULL, T1);

    CHECK_JSON(fields_of(o, "m", "Apply"),
               "{\"f:spec\":{\".\":{},\"f:a\":{\".\":{},\"f:b\":{}},\"f:l\":{}}}");
    o = apply_ok(o,
                 "{\"apiVersion\":\"x/v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\"},"
                 "\"spec\":{\"l\":[2]}}",
                 "m", false, NULL, NULL, T2);
    CHECK_JSON(json_object_get(o, "spec"), "{\"l\":[2]}");
    json_decref(o);
}

static void t_null_in_config(void)
{
    json_t *s = J(crd_schema);
    json_t *o =
        apply_ok(NULL, W("{\"size\":3,\"env\":{\"A\":\"1\"}}"), "alice", false, NULL, s, T1);

    /* "size: null" from another manager: a change (conflict), with force the field goes. */
    {
        json_t *a = J(W("{\"size\":null}")), *out = NULL, *conf = json_array();

        CHECK_INT(ssa_apply(o, a, "bob", false, NULL, s, T2, &out, conf, NULL, 0), ERR_CONFLICT);
        CHECK_INT(json_array_size(conf), 1);
        json_decref(conf);
        json_decref(a);
    }
    o = apply_ok(o, W("{\"size\":null}"), "bob", true, NULL, s, T2);
    CHECK_JSON(json_object_get(o, "spec"), "{\"env\":{\"A\":\"1\"}}");
    CHECK_JSON(fields_of(o, "bob", "Apply"), "{\"f:spec\":{\"f:size\":{}}}");
    CHECK_JSON(fields_of(o, "alice", "Apply"), "{\"f:spec\":{\"f:env\":{\"f:A\":{}}}}");
    json_decref(o);
    json_decref(s);
}

static void t_inputs_untouched(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = deploy_schema(oa);
    json_t *live = apply_ok(NULL,
                            DEPLOY("{\"replicas\":1,\"template\":{\"spec\":{\"containers\":"
                                   "[{\"name\":\"a\"},{\"name\":\"b\"}]}}}"),
                            "alice", false, oa, s, T1);
    json_t *a = J(DEPLOY("{\"template\":{\"spec\":{\"containers\":[{\"name\":\"b\",\"image\":"
                         "\"x\"}]}}}"));
    json_t *lc = json_deep_copy(live), *ac, *out = NULL;

    REQUIRE(json_object_set_new(json_object_get(a, "metadata"), "managedFields",
                                J("[{\"manager\":\"forged\",\"operation\":\"Apply\","
                                  "\"fieldsV1\":{\"f:spec\":{}}}]")) == 0);
    ac = json_deep_copy(a);
    CHECK_INT(ssa_apply(live, a, "alice", false, oa, s, T2, &out, NULL, NULL, 0), 0);
    CHECK(json_equal(live, lc));
    CHECK(json_equal(a, ac));
    /* managedFields in the applied object are ignored. */
    CHECK(entry_of(out, "forged", "Apply") == NULL);
    CHECK_JSON(json_object_get(out, "spec"),
               "{\"template\":{\"spec\":{\"containers\":[{\"name\":\"b\",\"image\":\"x\"}]}}}");
    json_decref(out);
    json_decref(lc);
    json_decref(ac);
    json_decref(a);
    json_decref(live);
    openapi_free(oa);
}

/* ---- allocation failures: jansson's allocator fails the Nth allocation ---- */

static long alloc_countdown = -1;

static void *failing_malloc(size_t n)
{
    if (alloc_countdown == 0)
        return NULL;
    if (alloc_countdown > 0)
        alloc_countdown--;
    return malloc(n);
}

static void t_alloc_failures(void)
{
    struct openapi *oa = load_oa();
    const json_t *s = deploy_schema(oa);
    json_t *live = apply_ok(NULL,
                            DEPLOY("{\"replicas\":1,\"template\":{\"spec\":{\"containers\":"
                                   "[{\"name\":\"a\",\"ports\":[{\"containerPort\":80}]}]}}}"),
                            "alice", false, oa, s, T1);
    json_t *a = J(DEPLOY("{\"replicas\":2,\"template\":{\"spec\":{\"containers\":[{\"name\":"
                         "\"b\",\"args\":[\"x\"]}]}}}"));
    json_t *ref = NULL, *conf = json_array(), *upd, *upd_ref;
    int rc, done_apply = 0, done_update = 0;
    long n_apply = 0, n_update = 0;

    json_set_alloc_funcs(failing_malloc, free);
    /* References without failures. */
    REQUIRE(ssa_apply(live, a, "bob", true, oa, s, T2, &ref, NULL, NULL, 0) == 0);
    upd_ref = json_deep_copy(ref);
    json_object_set_new(json_object_get(upd_ref, "spec"), "paused", json_true());
    REQUIRE(ssa_update(ref, upd_ref, "ctl", "", oa, s, T3) == 0);

    for (long n = 0; n < 20000 && !(done_apply && done_update); n++) {
        json_t *out = NULL;
        char msg[256];

        if (!done_apply) {
            alloc_countdown = n;
            rc = ssa_apply(live, a, "bob", true, oa, s, T2, &out, conf, msg, sizeof(msg));
            done_apply = alloc_countdown != 0; /* the failure was never reached */
            n_apply = n;
            alloc_countdown = -1;
            if (rc != 0 && rc != -ENOMEM)
                fprintf(stderr, "  apply n=%ld rc=%d\n", n, rc);
            CHECK(rc == 0 || rc == -ENOMEM);
            if (rc == 0)
                CHECK(json_equal(out, ref));
            else
                CHECK(out == NULL);
            json_decref(out);
        }
        if (!done_update) {
            upd = json_deep_copy(ref);
            REQUIRE(upd);
            json_object_set_new(json_object_get(upd, "spec"), "paused", json_true());
            alloc_countdown = n;
            rc = ssa_update(ref, upd, "ctl", "", oa, s, T3);
            done_update = alloc_countdown != 0;
            n_update = n;
            alloc_countdown = -1;
            CHECK(rc == 0 || rc == -ENOMEM);
            if (rc == 0)
                CHECK(json_equal(upd, upd_ref));
            json_decref(upd);
        }
    }
    CHECK(done_apply && done_update);
    /* The sweep did go through many allocation sites of both calls. */
    CHECK(n_apply > 500);
    CHECK(n_update > 100);
    json_decref(upd_ref);
    json_decref(ref);
    json_decref(conf);
    json_decref(a);
    json_decref(live);
    openapi_free(oa);
}

UNIT_MAIN(UNIT(t_cm_create), UNIT(t_cm_reapply_unchanged), UNIT(t_cm_remove_field),
          UNIT(t_cm_remove_field_owned_by_other), UNIT(t_cm_conflict), UNIT(t_cm_force),
          UNIT(t_cm_update_create), UNIT(t_cm_update_takes_ownership),
          UNIT(t_update_managed_fields_from_request), UNIT(t_resource_version), UNIT(t_malformed),
          UNIT(t_deploy_create), UNIT(t_deploy_update_create), UNIT(t_deploy_containers_by_name),
          UNIT(t_deploy_list_order), UNIT(t_deploy_atomic_list), UNIT(t_deploy_update_then_apply),
          UNIT(t_status_not_tracked), UNIT(t_managed_fields_order), UNIT(t_crd_set_list),
          UNIT(t_crd_atomic_and_maps), UNIT(t_crd_keyed_defaults_and_metadata), UNIT(t_no_schema),
          UNIT(t_null_in_config), UNIT(t_inputs_untouched), UNIT(t_alloc_failures))
