/*
 * proto_test.c - kubelite's protobuf body decoder: Secrets and ConfigMaps built by a tiny
 * encoder below, then truncated, corrupted and mislabelled.
 */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "tests/kubelite/proto.h"
#include "tests/unit/unit.h"

/* ---- a tiny protobuf encoder ---- */

static void put(struct buf *b, const void *p, size_t n)
{
    REQUIRE(buf_append(b, p, n) == 0);
}

static void e_varint(struct buf *b, uint64_t v)
{
    uint8_t c;

    while (v >= 0x80) {
        c = (uint8_t)(v | 0x80);
        put(b, &c, 1);
        v >>= 7;
    }
    c = (uint8_t)v;
    put(b, &c, 1);
}

static void e_tag(struct buf *b, unsigned field, unsigned wt)
{
    e_varint(b, (uint64_t)field << 3 | wt);
}

static void e_bytes(struct buf *b, unsigned field, const void *p, size_t n)
{
    e_tag(b, field, 2);
    e_varint(b, n);
    put(b, p, n);
}

static void e_str(struct buf *b, unsigned field, const char *s)
{
    e_bytes(b, field, s, strlen(s));
}

static void e_uint(struct buf *b, unsigned field, uint64_t v)
{
    e_tag(b, field, 0);
    e_varint(b, v);
}

/* Embed sub as field, then release sub. */
static void e_msg(struct buf *b, unsigned field, struct buf *sub)
{
    e_bytes(b, field, sub->p ? sub->p : "", sub->len);
    buf_release(sub);
}

static void e_map(struct buf *b, unsigned field, const char *k, const void *v, size_t vn)
{
    struct buf e;

    buf_init(&e);
    e_str(&e, 1, k);
    e_bytes(&e, 2, v, vn);
    e_msg(b, field, &e);
}

static void e_smap(struct buf *b, unsigned field, const char *k, const char *v)
{
    e_map(b, field, k, v, strlen(v));
}

/* "k8s\0" + runtime.Unknown{typeMeta, raw, contentEncoding "", contentType ""}, as Go writes it.
 * bounds (optional, 5 slots) receives the body length after the magic and after each field. */
static void e_envelope(struct buf *out, const char *apiv, const char *kind, const struct buf *raw,
                       size_t *bounds)
{
    struct buf tm;

    buf_init(out);
    buf_init(&tm);
    put(out, "k8s\0", 4);
    if (bounds)
        bounds[0] = out->len;
    e_str(&tm, 1, apiv);
    e_str(&tm, 2, kind);
    e_msg(out, 1, &tm);
    if (bounds)
        bounds[1] = out->len;
    e_bytes(out, 2, raw->p ? raw->p : "", raw->len);
    if (bounds)
        bounds[2] = out->len;
    e_str(out, 3, "");
    if (bounds)
        bounds[3] = out->len;
    e_str(out, 4, "");
    if (bounds)
        bounds[4] = out->len;
}

/* Decode a private, exactly sized copy so any read past len trips ASan/valgrind. */
static int decode(const struct buf *b, size_t len, json_t **out, char *msg, size_t msglen)
{
    uint8_t *copy = malloc(len ? len : 1);
    int rc;

    REQUIRE(copy);
    if (len)
        memcpy(copy, b->p, len);
    rc = proto_decode(copy, len, out, msg, msglen);
    free(copy);
    return rc;
}

static char *dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    REQUIRE(s);
    return s;
}

#define RELEASE_LEN (100 * 1024)

/* A helm v4 release Secret with a 100 KB payload; *data receives the payload (caller frees). */
static void helm_secret(struct buf *body, uint8_t **data, size_t datalen, size_t *bounds)
{
    struct buf raw, meta, ts;
    uint8_t *d = malloc(datalen);

    REQUIRE(d);
    for (size_t i = 0; i < datalen; i++)
        d[i] = (uint8_t)(i * 7 + (i >> 8));
    buf_init(&raw);
    buf_init(&meta);
    buf_init(&ts);
    e_str(&meta, 1, "sh.helm.release.v1.demo.v1");
    e_str(&meta, 2, "");
    e_str(&meta, 3, "default");
    e_uint(&ts, 1, 1704067200);
    e_msg(&meta, 8, &ts);
    e_smap(&meta, 11, "name", "demo");
    e_smap(&meta, 11, "owner", "helm");
    e_smap(&meta, 11, "status", "pending-install");
    e_smap(&meta, 11, "version", "1");
    e_msg(&raw, 1, &meta);
    e_map(&raw, 2, "release", d, datalen);
    e_str(&raw, 3, "helm.sh/release.v1");
    e_envelope(body, "v1", "Secret", &raw, bounds);
    buf_release(&raw);
    *data = d;
}

static void t_helm_secret(void)
{
    struct buf body;
    uint8_t *data = NULL;
    json_t *out = NULL;
    char msg[256] = "", *s, *b64;
    int n;

    helm_secret(&body, &data, RELEASE_LEN, NULL);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), 0);
    REQUIRE(out);
    s = dump(json_object_get(out, "metadata"));
    CHECK_STR(s, "{\"name\":\"sh.helm.release.v1.demo.v1\",\"namespace\":\"default\","
                 "\"creationTimestamp\":\"2024-01-01T00:00:00Z\",\"labels\":{\"name\":\"demo\","
                 "\"owner\":\"helm\",\"status\":\"pending-install\",\"version\":\"1\"}}");
    free(s);
    CHECK_STR(json_string_value(json_object_get(out, "apiVersion")), "v1");
    CHECK_STR(json_string_value(json_object_get(out, "kind")), "Secret");
    CHECK_STR(json_string_value(json_object_get(out, "type")), "helm.sh/release.v1");
    CHECK_INT(json_object_size(out), 5);
    CHECK_INT(json_object_size(json_object_get(out, "data")), 1);

    /* Compare the payload with OpenSSL's independent base64 encoder. */
    b64 = malloc((RELEASE_LEN + 2) / 3 * 4 + 1);
    REQUIRE(b64);
    n = EVP_EncodeBlock((unsigned char *)b64, data, RELEASE_LEN);
    CHECK_INT(n, (RELEASE_LEN + 2) / 3 * 4);
    {
        json_t *rel = json_object_get(json_object_get(out, "data"), "release");

        CHECK_INT(json_string_length(rel), n);
        CHECK(json_string_value(rel) && strcmp(json_string_value(rel), b64) == 0);
        CHECK_STR(json_string_value(rel) + n - 8, b64 + n - 8);
    }

    /* Key order follows the API's JSON. */
    {
        const char *want[] = {"apiVersion", "kind", "metadata", "data", "type"};
        size_t i = 0;
        const char *key;
        json_t *v;

        json_object_foreach(out, key, v)
        {
            (void)v;
            REQUIRE(i < 5);
            CHECK_STR(key, want[i]);
            i++;
        }
    }
    free(b64);
    free(data);
    json_decref(out);
    buf_release(&body);
}

static void t_configmap(void)
{
    struct buf raw, meta, ts, owner, body;
    json_t *out = NULL;
    char msg[256] = "", *s;
    uint8_t fixed[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    buf_init(&raw);
    buf_init(&meta);
    buf_init(&ts);
    buf_init(&owner);
    e_str(&meta, 1, "cfg");
    e_str(&meta, 2, "cfg-");
    e_str(&meta, 3, "ns1");
    e_str(&meta, 4, "/selflink/ignored");
    e_str(&meta, 5, "0b7f-uid");
    e_str(&meta, 6, "42");
    e_uint(&meta, 7, 3);
    e_uint(&ts, 1, 951825600); /* 2000-02-29T12:00:00Z */
    e_uint(&ts, 2, 999999999);
    e_msg(&meta, 8, &ts);
    e_smap(&meta, 12, "note", "caf\xc3\xa9 \"q\"");
    e_str(&owner, 1, "Deployment");
    e_str(&owner, 3, "web");
    e_str(&owner, 4, "owner-uid");
    e_str(&owner, 5, "apps/v1");
    e_uint(&owner, 6, 1);
    e_uint(&owner, 7, 0);
    e_msg(&meta, 13, &owner);
    e_str(&owner, 1, "ReplicaSet"); /* no controller/blockOwnerDeletion: omitted */
    e_msg(&meta, 13, &owner);
    e_str(&meta, 14, "a/b");
    e_str(&meta, 14, "c");
    /* Unknown fields of every skippable wire type. */
    e_uint(&meta, 99, UINT64_MAX);
    e_tag(&meta, 98, 1);
    put(&meta, fixed, 8);
    e_tag(&meta, 97, 5);
    put(&meta, fixed, 4);
    e_str(&meta, 96, "unknown");
    e_msg(&raw, 1, &meta);
    e_smap(&raw, 2, "app.conf", "x = 1\n");
    e_smap(&raw, 2, "empty", "");
    e_map(&raw, 3, "b0", "", 0);
    e_map(&raw, 3, "b1", "f", 1);
    e_map(&raw, 3, "b2", "fo", 2);
    e_map(&raw, 3, "b3", "foo", 3);
    e_map(&raw, 3, "b4", "foob", 4);
    e_map(&raw, 3, "b5", "fooba", 5);
    e_map(&raw, 3, "b6", "foobar", 6);
    e_map(&raw, 3, "nul", "\0\xff", 2);
    e_uint(&raw, 4, 1);
    e_uint(&raw, 77, 5);
    e_envelope(&body, "v1", "ConfigMap", &raw, NULL);
    buf_release(&raw);

    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), 0);
    REQUIRE(out);
    s = dump(out);
    CHECK_STR(s, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cfg\","
                 "\"generateName\":\"cfg-\",\"namespace\":\"ns1\",\"uid\":\"0b7f-uid\","
                 "\"resourceVersion\":\"42\",\"generation\":3,"
                 "\"creationTimestamp\":\"2000-02-29T12:00:00Z\","
                 "\"annotations\":{\"note\":\"caf\xc3\xa9 \\\"q\\\"\"},\"ownerReferences\":[{"
                 "\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"name\":\"web\","
                 "\"uid\":\"owner-uid\",\"controller\":true,\"blockOwnerDeletion\":false},{"
                 "\"apiVersion\":\"\",\"kind\":\"ReplicaSet\",\"name\":\"\",\"uid\":\"\"}],"
                 "\"finalizers\":[\"a/b\",\"c\"]},\"immutable\":true,"
                 "\"data\":{\"app.conf\":\"x = 1\\n\",\"empty\":\"\"},\"binaryData\":{\"b0\":\"\","
                 "\"b1\":\"Zg==\",\"b2\":\"Zm8=\",\"b3\":\"Zm9v\",\"b4\":\"Zm9vYg==\","
                 "\"b5\":\"Zm9vYmE=\",\"b6\":\"Zm9vYmFy\",\"nul\":\"AP8=\"}}");
    free(s);
    json_decref(out);
    buf_release(&body);
}

/* A Secret with stringData, immutable and an empty metadata; Secret.type omitted when empty. */
static void t_secret_minimal(void)
{
    struct buf raw, body;
    json_t *out = NULL;
    char msg[256] = "", *s;

    buf_init(&raw);
    e_smap(&raw, 4, "password", "hunter2");
    e_str(&raw, 3, "");
    e_uint(&raw, 5, 0);
    e_envelope(&body, "v1", "Secret", &raw, NULL);
    buf_release(&raw);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), 0);
    s = dump(out);
    CHECK_STR(s, "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{},\"immutable\":false,"
                 "\"stringData\":{\"password\":\"hunter2\"}}");
    free(s);
    json_decref(out);
    buf_release(&body);
}

/* Repeated embedded messages merge; repeated scalars and map keys: the last wins. */
static void t_merge_and_repeats(void)
{
    struct buf raw, meta, body, e;
    json_t *out = NULL;
    char msg[256] = "", *s;

    buf_init(&raw);
    buf_init(&meta);
    buf_init(&e);
    e_str(&meta, 1, "first");
    e_smap(&meta, 11, "k", "old");
    e_msg(&raw, 1, &meta);
    e_str(&meta, 1, "second");
    e_str(&meta, 3, "ns");
    e_smap(&meta, 11, "k", "new");
    e_msg(&raw, 1, &meta);
    /* Map entries with the value, or the key, left out. */
    e_str(&e, 1, "novalue");
    e_msg(&raw, 2, &e);
    e_bytes(&e, 2, "v", 1);
    e_msg(&raw, 2, &e);
    e_str(&raw, 3, "Opaque");
    e_envelope(&body, "v1", "Secret", &raw, NULL);
    buf_release(&raw);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), 0);
    s = dump(out);
    CHECK_STR(s, "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"second\","
                 "\"namespace\":\"ns\",\"labels\":{\"k\":\"new\"}},"
                 "\"data\":{\"novalue\":\"\",\"\":\"dg==\"},\"type\":\"Opaque\"}");
    free(s);
    json_decref(out);
    buf_release(&body);
}

static const char *jstr_meta_ts(const json_t *obj)
{
    return json_string_value(
        json_object_get(json_object_get(obj, "metadata"), "creationTimestamp"));
}

static void check_time(int64_t sec, int32_t nsec, const char *want)
{
    struct buf raw, meta, ts, body;
    json_t *out = NULL;
    char msg[256] = "";
    int rc;

    buf_init(&raw);
    buf_init(&meta);
    buf_init(&ts);
    if (sec)
        e_uint(&ts, 1, (uint64_t)sec);
    if (nsec)
        e_uint(&ts, 2, (uint64_t)(int64_t)nsec);
    e_msg(&meta, 8, &ts);
    e_msg(&raw, 1, &meta);
    e_envelope(&body, "v1", "Secret", &raw, NULL);
    buf_release(&raw);
    rc = decode(&body, body.len, &out, msg, sizeof(msg));
    if (!want) {
        CHECK_INT(rc, ERR_PARSE);
        CHECK_STR(msg, "proto: ObjectMeta.creationTimestamp out of range at byte 22");
        CHECK(out == NULL);
    } else if (!*want) {
        CHECK_INT(rc, 0);
        CHECK(out &&
              json_object_get(json_object_get(out, "metadata"), "creationTimestamp") == NULL);
    } else {
        CHECK_INT(rc, 0);
        CHECK_STR(jstr_meta_ts(out), want);
    }
    json_decref(out);
    buf_release(&body);
}

static void t_timestamps(void)
{
    check_time(0, 0, "");
    check_time(0, 5, "1970-01-01T00:00:00Z");
    check_time(-1, 0, "1969-12-31T23:59:59Z");
    check_time(1704067199, 0, "2023-12-31T23:59:59Z");
    check_time(1709208000, 0, "2024-02-29T12:00:00Z");
    check_time(4107542400, 0, "2100-03-01T00:00:00Z");
    /* metav1.Time's Unmarshal ignores nanos altogether (apimachinery time_proto.go). */
    check_time(10, 2000000000, "1970-01-01T00:00:10Z");
    check_time(10, -1, "1970-01-01T00:00:10Z");
    check_time(10, 999999999, "1970-01-01T00:00:10Z");
    /* Go's zero instant (what ProtoTime gives a zero time) is null, like an empty message. */
    check_time(-62135596800LL, 0, "");
    check_time(-62135596800LL, 5, "");
    check_time(-62135596799LL, 0, "0001-01-01T00:00:01Z");
    check_time(-62167219200LL, 0, "0000-01-01T00:00:00Z");
    check_time(253402300799LL, 0, "9999-12-31T23:59:59Z");
    check_time(253402300800LL, 0, NULL);
    check_time(-62167219201LL, 0, NULL);
    check_time(INT64_MIN, 0, NULL);
    check_time(INT64_MAX, 0, NULL);
    check_time(INT64_MAX, 2000000000, NULL);
    check_time(INT64_MIN, -2000000000, NULL);
    check_time(253402300799LL, 1000000000, "9999-12-31T23:59:59Z");
    check_time(253402300800LL, -1, NULL);
}

static void t_generation_values(void)
{
    struct buf raw, meta, body;
    json_t *out = NULL;
    char msg[256] = "";

    buf_init(&raw);
    buf_init(&meta);
    e_uint(&meta, 7, (uint64_t)-5);
    e_msg(&raw, 1, &meta);
    e_envelope(&body, "v1", "ConfigMap", &raw, NULL);
    buf_release(&raw);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), 0);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(out, "metadata"), "generation")),
              -5);
    json_decref(out);
    buf_release(&body);

    /* generation 0 is omitted (omitempty). */
    buf_init(&raw);
    buf_init(&meta);
    e_uint(&meta, 7, 0);
    e_msg(&raw, 1, &meta);
    e_envelope(&body, "v1", "ConfigMap", &raw, NULL);
    buf_release(&raw);
    out = NULL;
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), 0);
    CHECK_INT(json_object_size(json_object_get(out, "metadata")), 0);
    json_decref(out);
    buf_release(&body);
}

/*
 * Every proper prefix of a valid body. A prefix that ends exactly between two fields of the
 * outer runtime.Unknown is itself a well-formed message (Go accepts it too), so those few
 * boundaries may decode; every other prefix must be ERR_PARSE (the raw field's length runs past
 * the end), or ERR_PARSE for a broken magic.
 */
static void t_truncated_prefixes(void)
{
    struct buf body;
    uint8_t *data = NULL;
    size_t bounds[5];
    json_t *out;
    char msg[256];
    int parse = 0;

    helm_secret(&body, &data, 300, bounds);
    free(data);
    for (size_t n = 0; n < body.len; n++) {
        int rc;

        out = NULL;
        msg[0] = '\0';
        rc = decode(&body, n, &out, msg, sizeof(msg));
        if (n == bounds[0] || n == bounds[1]) {
            /* magic only: no kind; typeMeta only: an empty Secret. */
            CHECK_INT(rc, n == bounds[0] ? ERR_UNSUPPORTED : 0);
        } else if (n == bounds[2] || n == bounds[3]) {
            CHECK_INT(rc, 0);
            CHECK_STR(json_string_value(json_object_get(out, "type")), "helm.sh/release.v1");
        } else {
            if (rc != ERR_PARSE)
                fprintf(stderr, "  prefix %zu of %zu: rc %d\n", n, body.len, rc);
            CHECK_INT(rc, ERR_PARSE);
            CHECK(out == NULL);
            CHECK(strncmp(msg, "proto: ", 7) == 0);
            parse++;
        }
        json_decref(out);
    }
    CHECK_INT(parse, body.len - 4);
    /* And the whole body decodes. */
    out = NULL;
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), 0);
    CHECK_INT(json_string_length(json_object_get(json_object_get(out, "data"), "release")), 400);
    json_decref(out);
    buf_release(&body);
}

/* Truncate the inner object at every offset while keeping the envelope consistent. */
static void t_truncated_raw(void)
{
    struct buf body, inner;
    uint8_t *data = NULL;
    size_t bounds[5], rawoff, rawlen;
    int ok = 0, bad = 0;

    helm_secret(&body, &data, 200, bounds);
    free(data);
    /* The raw field payload ends at bounds[2]; its length varint is 2 bytes (> 127). */
    rawoff = bounds[1] + 1 + 2;
    rawlen = bounds[2] - rawoff;
    for (size_t n = 0; n < rawlen; n++) {
        json_t *out = NULL;
        char msg[256] = "";
        struct buf wrapped;
        int rc;

        buf_init(&inner);
        put(&inner, body.p + rawoff, n);
        e_envelope(&wrapped, "v1", "Secret", &inner, NULL);
        buf_release(&inner);
        rc = decode(&wrapped, wrapped.len, &out, msg, sizeof(msg));
        CHECK(rc == 0 || rc == ERR_PARSE);
        CHECK(rc == 0 ? out != NULL : out == NULL);
        if (rc == 0)
            ok++;
        else
            bad++;
        json_decref(out);
        buf_release(&wrapped);
    }
    /* Only the field boundaries of the Secret (0, after metadata, after data) are whole. */
    CHECK_INT(ok, 3);
    CHECK_INT(bad, rawlen - 3);
    buf_release(&body);
}

static void t_bad_magic(void)
{
    static const char *const bodies[] = {
        "", "k", "k8", "k8s", "k8s\1\x0a\x00", "K8s\0\x0a\x00", "{\"kind\":\"Secret\"}"};
    static const size_t lens[] = {0, 1, 2, 3, 6, 6, 17};
    json_t *out = NULL;
    char msg[128];

    for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
        struct buf b = {(char *)bodies[i], lens[i], 0};

        msg[0] = '\0';
        CHECK_INT(decode(&b, lens[i], &out, msg, sizeof(msg)), ERR_PARSE);
        CHECK_STR(msg, "proto: missing k8s protobuf magic");
        CHECK(out == NULL);
    }
    CHECK_INT(proto_decode(NULL, 0, &out, msg, sizeof(msg)), ERR_PARSE);
    /* No message buffer is fine. */
    CHECK_INT(proto_decode((const uint8_t *)"k8", 2, &out, NULL, 0), ERR_PARSE);
    CHECK(out == NULL);
}

static void check_kind(const char *apiv, const char *kind, const char *want)
{
    struct buf raw, body;
    json_t *out = NULL;
    char msg[256] = "";

    buf_init(&raw);
    e_str(&raw, 3, "x");
    e_envelope(&body, apiv, kind, &raw, NULL);
    buf_release(&raw);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), ERR_UNSUPPORTED);
    CHECK_STR(msg, want);
    CHECK(out == NULL);
    buf_release(&body);
}

static void t_unknown_kind(void)
{
    struct buf body, tm;
    json_t *out = NULL;
    char msg[256] = "";

    check_kind("v1", "Pod", "proto: unsupported kind \"Pod\" (apiVersion \"v1\")");
    check_kind("apps/v1", "Secret", "proto: unsupported kind \"Secret\" (apiVersion \"apps/v1\")");
    check_kind("v1", "secret", "proto: unsupported kind \"secret\" (apiVersion \"v1\")");
    check_kind("", "", "proto: unsupported kind \"\" (apiVersion \"\")");
    /* No typeMeta at all. */
    buf_init(&body);
    put(&body, "k8s\0", 4);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), ERR_UNSUPPORTED);
    CHECK_STR(msg, "proto: unsupported kind \"\" (apiVersion \"\")");
    /* A compressed payload is refused rather than misread. */
    buf_init(&tm);
    e_str(&tm, 1, "v1");
    e_str(&tm, 2, "Secret");
    e_msg(&body, 1, &tm);
    e_str(&body, 3, "gzip");
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), ERR_UNSUPPORTED);
    CHECK_STR(msg, "proto: unsupported content encoding \"gzip\"");
    CHECK(out == NULL);
    buf_release(&body);
}

static void check_raw(const void *p, size_t n, int want_rc, const char *want_msg)
{
    struct buf body;
    json_t *out = NULL;
    char msg[256] = "";

    buf_init(&body);
    put(&body, "k8s\0", 4);
    put(&body, p, n);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), want_rc);
    if (want_msg)
        CHECK_STR(msg, want_msg);
    CHECK(want_rc == 0 ? out != NULL : out == NULL);
    json_decref(out);
    buf_release(&body);
}

static void t_varint_overflow(void)
{
    /* Tag 0x08 (field 1, varint) then 11 continuation bytes. */
    check_raw("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, ERR_PARSE,
              "proto: varint overflows 64 bits at byte 5");
    /* Tenth byte carrying more than the 64th bit. */
    check_raw("\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02", 11, ERR_PARSE,
              "proto: varint overflows 64 bits at byte 5");
    /* Overlong tag. */
    check_raw("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, ERR_PARSE,
              "proto: varint overflows 64 bits at byte 4");
    /* Truncated varint. */
    check_raw("\x08\xff\xff", 3, ERR_PARSE, "proto: truncated varint at byte 5");
    check_raw("\x88", 1, ERR_PARSE, "proto: truncated varint at byte 4");
    /* Field number above 2^29-1 (as a valid 64-bit varint). */
    check_raw("\xf8\xff\xff\xff\x7f\x00", 6, ERR_PARSE, "proto: illegal field number at byte 4");
    /* The largest 10-byte varint is fine in an unknown field (then no kind). */
    check_raw("\x78\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, ERR_UNSUPPORTED, NULL);
}

static void t_lengths_past_end(void)
{
    struct buf raw, meta, body, tm;
    json_t *out = NULL;
    char msg[256] = "";

    /* Outer field: claims 100 bytes, has 3. */
    check_raw("\x12\x64\x01\x02\x03", 5, ERR_PARSE, "proto: length past end of message at byte 4");
    /* Length of 2^63. */
    check_raw("\x12\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 11, ERR_PARSE,
              "proto: length past end of message at byte 4");
    /* Fixed-width fields cut short. */
    check_raw("\x79\x01\x02\x03", 4, ERR_PARSE, "proto: truncated fixed-width field at byte 4");
    check_raw("\x7d\x01\x02\x03", 4, ERR_PARSE, "proto: truncated fixed-width field at byte 4");

    /*
     * A metadata length that fits the body but not the raw field around it: the sub-reader must
     * stop at raw's end. raw = {1: len 10 "name..."} is declared 4 bytes long, and 10 bytes of
     * plausible data follow inside the outer message (as a trailing unknown field).
     */
    buf_init(&body);
    buf_init(&tm);
    put(&body, "k8s\0", 4);
    e_str(&tm, 1, "v1");
    e_str(&tm, 2, "Secret");
    e_msg(&body, 1, &tm);
    e_tag(&body, 2, 2);
    e_varint(&body, 4);
    put(&body, "\x0a\x0a\x0a\x08", 4); /* metadata, len 10: past raw's end */
    e_str(&body, 15, "0123456789");
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), ERR_PARSE);
    CHECK_STR(msg, "proto: length past end of message at byte 20");
    CHECK(out == NULL);
    buf_release(&body);

    /* Same inside a map entry inside metadata. */
    buf_init(&raw);
    buf_init(&meta);
    e_tag(&meta, 11, 2);
    e_varint(&meta, 3);
    put(&meta, "\x0a\x05k", 3);
    e_msg(&raw, 1, &meta);
    e_str(&raw, 3, "padding-padding");
    e_envelope(&body, "v1", "Secret", &raw, NULL);
    buf_release(&raw);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), ERR_PARSE);
    CHECK(strstr(msg, "proto: length past end of message at byte ") == msg);
    buf_release(&body);
}

static void check_meta_field(struct buf *meta, int want_rc, const char *want_msg)
{
    struct buf raw, body;
    json_t *out = NULL;
    char msg[256] = "";

    buf_init(&raw);
    e_msg(&raw, 1, meta);
    e_envelope(&body, "v1", "Secret", &raw, NULL);
    buf_release(&raw);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), want_rc);
    CHECK_STR(msg, want_msg);
    CHECK(out == NULL);
    buf_release(&body);
}

static void t_wire_errors(void)
{
    struct buf meta, e;

    /* Groups, reserved wire types, field 0. */
    check_raw("\x0b\x0c", 2, ERR_PARSE, "proto: groups are not supported at byte 4");
    check_raw("\x0c", 1, ERR_PARSE, "proto: groups are not supported at byte 4");
    check_raw("\x0e", 1, ERR_PARSE, "proto: invalid wire type at byte 4");
    check_raw("\x0f", 1, ERR_PARSE, "proto: invalid wire type at byte 4");
    check_raw("\x02\x00", 2, ERR_PARSE, "proto: illegal field number at byte 4");
    check_raw("\x08\x01", 2, ERR_PARSE, "proto: wrong wire type 0 for Unknown.typeMeta at byte 4");
    check_raw("\x10\x01", 2, ERR_PARSE, "proto: wrong wire type 0 for Unknown.raw at byte 4");

    /* Known fields with the wrong wire type, at their own offsets. */
    buf_init(&meta);
    e_uint(&meta, 1, 7);
    check_meta_field(&meta, ERR_PARSE, "proto: wrong wire type 0 for ObjectMeta.name at byte 22");
    buf_release(&meta);
    e_str(&meta, 7, "1");
    check_meta_field(&meta, ERR_PARSE,
                     "proto: wrong wire type 2 for ObjectMeta.generation at byte 22");
    buf_release(&meta);
    e_uint(&meta, 11, 1);
    check_meta_field(&meta, ERR_PARSE, "proto: wrong wire type 0 for ObjectMeta.labels at byte 22");
    buf_release(&meta);
    buf_init(&e);
    e_uint(&e, 1, 1);
    e_msg(&meta, 11, &e);
    check_meta_field(&meta, ERR_PARSE, "proto: wrong wire type 0 for map key at byte 24");
    buf_release(&meta);
    e_str(&e, 6, "yes");
    e_msg(&meta, 13, &e);
    check_meta_field(&meta, ERR_PARSE,
                     "proto: wrong wire type 2 for OwnerReference.controller at byte 24");
    buf_release(&meta);
    e_str(&e, 1, "5");
    e_msg(&meta, 8, &e);
    check_meta_field(&meta, ERR_PARSE, "proto: wrong wire type 2 for Time.seconds at byte 24");
    buf_release(&meta);
    /* A group inside metadata. */
    e_tag(&meta, 20, 3);
    check_meta_field(&meta, ERR_PARSE, "proto: groups are not supported at byte 22");
    buf_release(&meta);
    /* Strings must be UTF-8 (JSON cannot carry anything else). */
    e_str(&meta, 1, "bad\xc3(");
    check_meta_field(&meta, ERR_PARSE, "proto: invalid UTF-8 in ObjectMeta.name at byte 22");
    buf_release(&meta);
    e_str(&meta, 3, "\xed\xa0\x80"); /* a surrogate */
    check_meta_field(&meta, ERR_PARSE, "proto: invalid UTF-8 in ObjectMeta.namespace at byte 22");
    buf_release(&meta);
    e_str(&meta, 3, "\xc0\xaf"); /* overlong '/' */
    check_meta_field(&meta, ERR_PARSE, "proto: invalid UTF-8 in ObjectMeta.namespace at byte 22");
    buf_release(&meta);
}

/* ---- fixtures: bodies captured from the real kubectl 1.33 ---- */

/*
 * Each NAME has tests/fixtures/proto/NAME.bin (the request body kubectl 1.33 sent; 1.32 sends
 * the same bytes, earlier versions send JSON) and NAME.json (kubectl's --dry-run=client -o json
 * of the same command with null members removed; written by hand from the Go types for the
 * commands without a dry-run). tests/fixtures/proto/README.md lists the commands.
 */
static const char *const fixtures[] = {
    "serviceaccount",
    "namespace",
    "service-clusterip",
    "service-nodeport",
    "service-loadbalancer",
    "service-externalname",
    "service-headless",
    "secret-generic",
    "secret-docker-registry",
    "secret-tls",
    "configmap",
    "resourcequota",
    "tokenrequest",
    "tokenrequest-plain",
    "deployment",
    "deployment-command",
    "job",
    "cronjob",
    "role",
    "clusterrole",
    "clusterrole-nonresource",
    "clusterrole-aggregation",
    "rolebinding",
    "rolebinding-role",
    "clusterrolebinding",
    "ingress",
    "poddisruptionbudget",
    "poddisruptionbudget-maxunavailable",
    "priorityclass",
    "priorityclass-default",
    "horizontalpodautoscaler",
    "horizontalpodautoscaler-v1",
    "selfsubjectaccessreview",
    "selfsubjectaccessreview-nonresource",
    "selfsubjectrulesreview",
    "selfsubjectreview",
};

static void fixture_load(const char *name, const char *ext, struct buf *b)
{
    char path[256];
    char chunk[4096];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "tests/fixtures/proto/%s.%s", name, ext);
    f = fopen(path, "rb");
    if (!f)
        fprintf(stderr, "  cannot open %s\n", path);
    REQUIRE(f);
    buf_init(b);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        put(b, chunk, n);
    fclose(f);
}

static char *dump_sorted(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    REQUIRE(s);
    return s;
}

static void t_fixtures(void)
{
    for (size_t i = 0; i < ARRAY_LEN(fixtures); i++) {
        struct buf body, text;
        json_t *out = NULL, *want;
        json_error_t jerr;
        char msg[256] = "";
        int rc;

        fixture_load(fixtures[i], "bin", &body);
        fixture_load(fixtures[i], "json", &text);
        want = json_loadb(text.p, text.len, 0, &jerr);
        if (!want)
            fprintf(stderr, "  %s.json: %s\n", fixtures[i], jerr.text);
        REQUIRE(want);
        rc = decode(&body, body.len, &out, msg, sizeof(msg));
        if (rc != 0)
            fprintf(stderr, "  %s: %s\n", fixtures[i], msg);
        CHECK_INT(rc, 0);
        if (!json_equal(out, want)) {
            char *a = dump_sorted(out), *b = dump_sorted(want);

            fprintf(stderr, "  %s:\n    got  %s\n    want %s\n", fixtures[i], a, b);
            unit__failures++;
            free(a);
            free(b);
        }
        json_decref(out);
        json_decref(want);
        buf_release(&body);
        buf_release(&text);
    }
}

/* Key order follows Go's struct order (kubectl's dry-run prints kind before apiVersion). */
static void t_fixture_key_order(void)
{
    struct buf body;
    json_t *out = NULL;
    char msg[256] = "", *s;

    fixture_load("deployment", "bin", &body);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), 0);
    s = dump(out);
    CHECK_STR(s,
              "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\","
              "\"labels\":{\"app\":\"web\"}},\"spec\":{\"replicas\":3,\"selector\":{"
              "\"matchLabels\":{\"app\":\"web\"}},\"template\":{\"metadata\":{\"labels\":{"
              "\"app\":\"web\"}},\"spec\":{\"containers\":[{\"name\":\"nginx\","
              "\"image\":\"nginx:1.25\",\"ports\":[{\"containerPort\":80}],"
              "\"resources\":{}}]}},\"strategy\":{}},\"status\":{}}");
    free(s);
    json_decref(out);
    buf_release(&body);
}

/* A tiny wire walker, independent of proto.c, for the field boundaries of a message. */
static uint64_t w_varint(const uint8_t *p, size_t *o, size_t end)
{
    uint64_t v = 0;

    for (unsigned sh = 0; *o < end; sh += 7) {
        uint8_t b = p[(*o)++];

        v |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80))
            return v;
    }
    REQUIRE(!"truncated varint in a fixture");
    return 0;
}

/* Offsets just past each field of the message p[start, end); *f2 gets field 2's payload. */
static size_t w_fields(const uint8_t *p, size_t start, size_t end, size_t *ends, size_t max,
                       size_t *f2, size_t *f2len)
{
    size_t o = start, n = 0;

    while (o < end) {
        uint64_t tag = w_varint(p, &o, end), len;

        switch (tag & 7) {
        case 0:
            (void)w_varint(p, &o, end);
            break;
        case 1:
            o += 8;
            break;
        case 5:
            o += 4;
            break;
        case 2:
            len = w_varint(p, &o, end);
            if (tag >> 3 == 2 && f2) {
                *f2 = o;
                *f2len = (size_t)len;
            }
            o += (size_t)len;
            break;
        default:
            REQUIRE(!"unexpected wire type in a fixture");
        }
        REQUIRE(o <= end && n < max);
        ends[n++] = o;
    }
    return n;
}

static bool in_list(const size_t *v, size_t n, size_t x)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == x)
            return true;
    }
    return false;
}

/*
 * Every proper prefix of every fixture: ERR_PARSE, except that the magic alone has no kind
 * (ERR_UNSUPPORTED) and a prefix ending exactly between two envelope fields after typeMeta is a
 * whole message (an object with fewer fields).
 */
static void t_fixture_prefixes(void)
{
    for (size_t i = 0; i < ARRAY_LEN(fixtures); i++) {
        struct buf body;
        size_t ends[8], n, raw = 0, rawlen = 0;
        int ok = 0;

        fixture_load(fixtures[i], "bin", &body);
        n = w_fields((const uint8_t *)body.p, 4, body.len, ends, ARRAY_LEN(ends), &raw, &rawlen);
        CHECK_INT(n, 4); /* typeMeta, raw, contentEncoding, contentType */
        for (size_t len = 0; len < body.len; len++) {
            json_t *out = NULL;
            char msg[256] = "";
            int rc = decode(&body, len, &out, msg, sizeof(msg)), want;

            if (len == 4)
                want = ERR_UNSUPPORTED;
            else if (len > 4 && in_list(ends, n, len))
                want = 0;
            else
                want = ERR_PARSE;
            if (rc != want)
                fprintf(stderr, "  %s prefix %zu of %zu: %s\n", fixtures[i], len, body.len, msg);
            CHECK_INT(rc, want);
            CHECK(rc == 0 ? out != NULL : out == NULL);
            CHECK(rc == 0 || strncmp(msg, "proto: ", 7) == 0);
            ok += rc == 0;
            json_decref(out);
        }
        CHECK_INT(ok, 3);
        buf_release(&body);
    }
}

/*
 * Every prefix of every fixture's object, re-wrapped in a consistent envelope: only the cuts
 * between the object's own top-level fields decode; every other cut lands inside a field and
 * must be ERR_PARSE.
 */
static void t_fixture_truncated_objects(void)
{
    for (size_t i = 0; i < ARRAY_LEN(fixtures); i++) {
        struct buf body;
        size_t ends[8], oends[64], n, on, raw = 0, rawlen = 0;

        fixture_load(fixtures[i], "bin", &body);
        n = w_fields((const uint8_t *)body.p, 4, body.len, ends, ARRAY_LEN(ends), &raw, &rawlen);
        REQUIRE(n == 4 && raw > 0);
        on = w_fields((const uint8_t *)body.p, raw, raw + rawlen, oends, ARRAY_LEN(oends), NULL,
                      NULL);
        for (size_t len = 0; len <= rawlen; len++) {
            struct buf w;
            json_t *out = NULL;
            char msg[256] = "";
            int rc, want = (len == 0 || in_list(oends, on, raw + len)) ? 0 : ERR_PARSE;

            buf_init(&w);
            put(&w, body.p, ends[0]); /* magic and typeMeta as captured */
            e_bytes(&w, 2, body.p + raw, len);
            rc = decode(&w, w.len, &out, msg, sizeof(msg));
            if (rc != want)
                fprintf(stderr, "  %s object cut at %zu of %zu: %s\n", fixtures[i], len, rawlen,
                        msg);
            CHECK_INT(rc, want);
            CHECK(rc == 0 ? out != NULL : out == NULL);
            json_decref(out);
            buf_release(&w);
        }
        buf_release(&body);
    }
}

/* Every byte of every fixture replaced by a few values: never a crash or an over-read (ASan,
 * valgrind), and a result only on success. */
static void t_fixture_corruption(void)
{
    static const uint8_t subst[] = {0x00, 0x01, 0x7f, 0x80, 0xff};

    for (size_t i = 0; i < ARRAY_LEN(fixtures); i++) {
        struct buf body;

        fixture_load(fixtures[i], "bin", &body);
        for (size_t pos = 4; pos < body.len; pos++) {
            uint8_t orig = (uint8_t)body.p[pos];

            for (size_t k = 0; k < ARRAY_LEN(subst) + 1; k++) {
                json_t *out = NULL;
                char msg[256] = "";
                int rc;

                body.p[pos] = (char)(k < ARRAY_LEN(subst) ? subst[k] : orig ^ 0x40);
                rc = decode(&body, body.len, &out, msg, sizeof(msg));
                CHECK(rc == 0 || rc == ERR_PARSE || rc == ERR_UNSUPPORTED);
                CHECK(rc == 0 ? out != NULL : out == NULL);
                json_decref(out);
            }
            body.p[pos] = (char)orig;
        }
        buf_release(&body);
    }
}

/* ---- synthetic bodies for the parts kubectl's fixtures do not reach ---- */

/* Wrap raw (released) as apiv/kind, decode, and compare the compact JSON with want (or the
 * error with want_rc/want_msg). */
static void check_obj(const char *apiv, const char *kind, struct buf *raw, int want_rc,
                      const char *want)
{
    struct buf body;
    json_t *out = NULL;
    char msg[256] = "";

    e_envelope(&body, apiv, kind, raw, NULL);
    buf_release(raw);
    CHECK_INT(decode(&body, body.len, &out, msg, sizeof(msg)), want_rc);
    if (want_rc == 0) {
        char *s;

        REQUIRE(out);
        s = dump(out);
        CHECK_STR(s, want);
        free(s);
    } else {
        CHECK_STR(msg, want);
        CHECK(out == NULL);
    }
    json_decref(out);
    buf_release(&body);
}

static void e_ios_int(struct buf *b, unsigned field, int32_t v)
{
    struct buf m;

    buf_init(&m);
    e_uint(&m, 1, 0);
    e_uint(&m, 2, (uint64_t)(int64_t)v);
    e_msg(b, field, &m);
}

static void e_ios_str(struct buf *b, unsigned field, const char *v)
{
    struct buf m;

    buf_init(&m);
    e_uint(&m, 1, 1);
    e_str(&m, 3, v);
    e_msg(b, field, &m);
}

static void t_intorstring(void)
{
    struct buf raw, spec, m;

    /* PodDisruptionBudget: minAvailable/maxUnavailable; int32 sign; status zero defaults. */
    buf_init(&raw);
    buf_init(&spec);
    e_ios_int(&spec, 1, -7);
    e_ios_str(&spec, 3, "25%");
    e_msg(&raw, 2, &spec);
    check_obj("policy/v1", "PodDisruptionBudget", &raw, 0,
              "{\"apiVersion\":\"policy/v1\",\"kind\":\"PodDisruptionBudget\",\"metadata\":{},"
              "\"spec\":{\"minAvailable\":-7,\"maxUnavailable\":\"25%\"},\"status\":{"
              "\"disruptionsAllowed\":0,\"currentHealthy\":0,\"desiredHealthy\":0,"
              "\"expectedPods\":0}}");

    /* Empty IntOrString is int 0; type string without strVal is "". */
    buf_init(&m);
    e_msg(&spec, 1, &m);
    e_uint(&m, 1, 1);
    e_msg(&spec, 3, &m);
    e_msg(&raw, 2, &spec);
    check_obj("policy/v1", "PodDisruptionBudget", &raw, 0,
              "{\"apiVersion\":\"policy/v1\",\"kind\":\"PodDisruptionBudget\",\"metadata\":{},"
              "\"spec\":{\"minAvailable\":0,\"maxUnavailable\":\"\"},\"status\":{"
              "\"disruptionsAllowed\":0,\"currentHealthy\":0,\"desiredHealthy\":0,"
              "\"expectedPods\":0}}");

    /* An impossible type, and a wrongly typed intVal. */
    e_uint(&m, 1, 2);
    e_msg(&spec, 1, &m);
    e_msg(&raw, 2, &spec);
    check_obj("policy/v1", "PodDisruptionBudget", &raw, ERR_PARSE,
              "proto: invalid IntOrString type in PodDisruptionBudgetSpec.minAvailable at byte 42");
    e_str(&m, 2, "5");
    e_msg(&spec, 1, &m);
    e_msg(&raw, 2, &spec);
    check_obj("policy/v1", "PodDisruptionBudget", &raw, ERR_PARSE,
              "proto: wrong wire type 2 for IntOrString.intVal at byte 44");
    /* A Service port's non-pointer targetPort is written even when absent (Go's zero: 0). */
    e_uint(&m, 3, 80);
    e_msg(&spec, 1, &m);
    e_msg(&raw, 2, &spec);
    check_obj("v1", "Service", &raw, 0,
              "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{},\"spec\":{\"ports\":[{"
              "\"port\":80,\"targetPort\":0}]},\"status\":{\"loadBalancer\":{}}}");
}

static void e_qty(struct buf *b, unsigned field, const char *k, const char *v)
{
    struct buf e, q;

    buf_init(&e);
    buf_init(&q);
    e_str(&e, 1, k);
    if (v) {
        e_str(&q, 1, v);
        e_msg(&e, 2, &q);
    }
    e_msg(b, field, &e);
}

static void t_quantity_maps(void)
{
    struct buf raw, spec, q;

    buf_init(&raw);
    buf_init(&spec);
    buf_init(&q);
    e_qty(&spec, 1, "cpu", "500m");
    e_qty(&spec, 1, "pods", NULL); /* entry without a value: the zero Quantity */
    e_qty(&spec, 1, "memory", "");
    e_qty(&spec, 1, "cpu", "2"); /* a repeated key: the last wins, in place */
    e_str(&spec, 2, "BestEffort");
    e_str(&spec, 2, "");
    e_msg(&raw, 2, &spec);
    e_msg(&q, 2, &spec); /* status.used: an entry with neither key nor value */
    e_msg(&raw, 3, &q);
    check_obj("v1", "ResourceQuota", &raw, 0,
              "{\"apiVersion\":\"v1\",\"kind\":\"ResourceQuota\",\"metadata\":{},\"spec\":{"
              "\"hard\":{\"cpu\":\"2\",\"pods\":\"0\",\"memory\":\"0\"},"
              "\"scopes\":[\"BestEffort\",\"\"]},\"status\":{\"used\":{\"\":\"0\"}}}");
    /* A quantity string that is not UTF-8. */
    e_qty(&spec, 1, "cpu", "\xff");
    e_msg(&raw, 2, &spec);
    check_obj("v1", "ResourceQuota", &raw, ERR_PARSE,
              "proto: invalid UTF-8 in Quantity.string at byte 38");
}

static void t_rawextension(void)
{
    struct buf raw, d;

    buf_init(&raw);
    buf_init(&d);
    e_str(&d, 1, "{\"spec\":{\"template\":{\"$patch\":\"replace\"}},\"n\":[1,2.5,null]}");
    e_msg(&raw, 2, &d);
    e_uint(&raw, 3, 4);
    check_obj("apps/v1", "ControllerRevision", &raw, 0,
              "{\"apiVersion\":\"apps/v1\",\"kind\":\"ControllerRevision\",\"metadata\":{},"
              "\"data\":{\"spec\":{\"template\":{\"$patch\":\"replace\"}},\"n\":[1,2.5,null]},"
              "\"revision\":4}");
    /* Scalars are JSON too; an empty RawExtension is null (left out); revision is not
     * omitempty. */
    e_str(&d, 1, "\"x\"");
    e_msg(&raw, 2, &d);
    check_obj("apps/v1", "ControllerRevision", &raw, 0,
              "{\"apiVersion\":\"apps/v1\",\"kind\":\"ControllerRevision\",\"metadata\":{},"
              "\"data\":\"x\",\"revision\":0}");
    e_msg(&raw, 2, &d);
    check_obj("apps/v1", "ControllerRevision", &raw, 0,
              "{\"apiVersion\":\"apps/v1\",\"kind\":\"ControllerRevision\",\"metadata\":{},"
              "\"revision\":0}");
    /* Not JSON (for example an embedded protobuf object), or JSON with trailing bytes. */
    e_str(&d, 1, "k8s\0");
    e_msg(&raw, 2, &d);
    check_obj("apps/v1", "ControllerRevision", &raw, ERR_PARSE,
              "proto: invalid JSON in ControllerRevision.data at byte 37");
    e_str(&d, 1, "{} {}");
    e_msg(&raw, 2, &d);
    check_obj("apps/v1", "ControllerRevision", &raw, ERR_PARSE,
              "proto: invalid JSON in ControllerRevision.data at byte 37");
    e_uint(&d, 1, 1);
    e_msg(&raw, 2, &d);
    check_obj("apps/v1", "ControllerRevision", &raw, ERR_PARSE,
              "proto: wrong wire type 0 for RawExtension.raw at byte 39");
}

static void e_ts(struct buf *b, unsigned field, int64_t sec, int32_t nsec)
{
    struct buf t;

    buf_init(&t);
    e_uint(&t, 1, (uint64_t)sec);
    e_uint(&t, 2, (uint64_t)(int64_t)nsec);
    e_msg(b, field, &t);
}

static void t_microtime(void)
{
    struct buf raw, spec, t;

    buf_init(&raw);
    buf_init(&spec);
    buf_init(&t);
    e_str(&spec, 1, "");
    e_uint(&spec, 2, 15);
    e_ts(&spec, 3, 1704067200, 123456789); /* truncated, not rounded, to microseconds */
    e_ts(&spec, 4, 1704067200, -1500);     /* truncated toward zero, then normalised */
    e_uint(&spec, 5, 0);
    e_msg(&raw, 2, &spec);
    check_obj("coordination.k8s.io/v1", "Lease", &raw, 0,
              "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{},"
              "\"spec\":{\"holderIdentity\":\"\",\"leaseDurationSeconds\":15,"
              "\"acquireTime\":\"2024-01-01T00:00:00.123456Z\","
              "\"renewTime\":\"2023-12-31T23:59:59.999999Z\",\"leaseTransitions\":0}}");
    /* Empty and Go-zero MicroTimes are null; nanos of a second or more carry. */
    e_msg(&spec, 3, &t);
    e_ts(&spec, 4, -62135596800LL, 999);
    e_ts(&spec, 4, -62135596800LL, 0);
    e_msg(&raw, 2, &spec);
    check_obj("coordination.k8s.io/v1", "Lease", &raw, 0,
              "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{},"
              "\"spec\":{}}");
    e_ts(&spec, 3, 0, 2000000001);
    e_msg(&raw, 2, &spec);
    check_obj("coordination.k8s.io/v1", "Lease", &raw, 0,
              "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{},"
              "\"spec\":{\"acquireTime\":\"1970-01-01T00:00:02.000000Z\"}}");
    e_ts(&spec, 4, 253402300800LL, 0);
    e_msg(&raw, 2, &spec);
    check_obj("coordination.k8s.io/v1", "Lease", &raw, ERR_PARSE,
              "proto: LeaseSpec.renewTime out of range at byte 41");
    e_str(&t, 2, "1");
    e_msg(&spec, 3, &t);
    e_msg(&raw, 2, &spec);
    check_obj("coordination.k8s.io/v1", "Lease", &raw, ERR_PARSE,
              "proto: wrong wire type 2 for MicroTime.nanos at byte 43");
}

static void check_duration(int64_t ns, const char *want)
{
    char got[PROTO_DURATION_MAX];

    memset(got, 'x', sizeof(got));
    proto__duration_format(ns, got);
    CHECK_STR(got, want);
}

/* Expected strings are Go's time.Duration(ns).String(). */
static void t_duration(void)
{
    check_duration(0, "0s");
    check_duration(1, "1ns");
    check_duration(999, "999ns");
    check_duration(1000, "1\xc2\xb5s");
    check_duration(1500, "1.5\xc2\xb5s");
    check_duration(999999, "999.999\xc2\xb5s");
    check_duration(1000000, "1ms");
    check_duration(1500000, "1.5ms");
    check_duration(999999999, "999.999999ms");
    check_duration(1000000000, "1s");
    check_duration(1500000000, "1.5s");
    check_duration(59000000000LL, "59s");
    check_duration(60000000000LL, "1m0s");
    check_duration(90000000000LL, "1m30s");
    check_duration(3600000000000LL, "1h0m0s");
    check_duration(90061000000005LL, "25h1m1.000000005s");
    check_duration(-1, "-1ns");
    check_duration(-1500000000, "-1.5s");
    check_duration(INT64_MAX, "2562047h47m16.854775807s");
    check_duration(INT64_MIN, "-2562047h47m16.854775808s");
}

/* Inline structs, pointer vs omitempty scalars, REQ defaults, merging, skipped unknowns. */
static void t_deployment_shapes(void)
{
    struct buf raw, spec, tmpl, pod, c, env, src, sel, lor, unk;
    uint8_t fixed[8] = {0};

    buf_init(&raw);
    buf_init(&spec);
    buf_init(&tmpl);
    buf_init(&pod);
    buf_init(&c);
    buf_init(&env);
    buf_init(&src);
    buf_init(&sel);
    buf_init(&lor);
    buf_init(&unk);
    /* env: {name: A, valueFrom: {configMapKeyRef: {localObjectReference: {name: cm}, key: k}}} */
    e_str(&lor, 1, "cm");
    e_str(&sel, 2, "k");
    e_msg(&sel, 1, &lor); /* the embedded struct after the key: Go order puts name first */
    e_msg(&src, 3, &sel);
    e_str(&env, 1, "A");
    e_msg(&env, 3, &src);
    e_msg(&c, 7, &env);
    e_str(&c, 2, "img");
    e_uint(&c, 16, 0); /* stdin false: omitempty */
    e_uint(&c, 18, 1); /* tty true */
    e_uint(&c, 999, 5);
    e_tag(&c, 998, 1);
    put(&c, fixed, 8);
    e_tag(&c, 997, 5);
    put(&c, fixed, 4);
    e_str(&unk, 1, "nested unknown");
    e_msg(&c, 996, &unk);
    e_msg(&pod, 2, &c); /* a container without name: name is not omitempty */
    e_str(&pod, 3, "Never");
    e_uint(&pod, 4, 0); /* terminationGracePeriodSeconds: a pointer, 0 is kept */
    e_msg(&tmpl, 2, &pod);
    e_msg(&spec, 3, &tmpl);
    e_uint(&spec, 1, UINT64_MAX); /* replicas: int32(-1), as Go truncates */
    e_uint(&spec, 5, 0);          /* minReadySeconds: omitempty */
    e_msg(&raw, 2, &spec);
    /* A second spec merges into the first; its replicas wins. */
    e_uint(&spec, 1, 0xffffffffULL);
    e_uint(&spec, 7, 1);
    e_msg(&raw, 2, &spec);
    check_obj("apps/v1", "Deployment", &raw, 0,
              "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{},\"spec\":{"
              "\"replicas\":-1,\"template\":{\"metadata\":{},\"spec\":{\"containers\":[{"
              "\"name\":\"\",\"image\":\"img\",\"env\":[{\"name\":\"A\",\"valueFrom\":{"
              "\"configMapKeyRef\":{\"name\":\"cm\",\"key\":\"k\"}}}],\"resources\":{},"
              "\"tty\":true}],\"restartPolicy\":\"Never\",\"terminationGracePeriodSeconds\":0}},"
              "\"strategy\":{},\"paused\":true},\"status\":{}}");

    /* A wrongly typed field deep inside, named by its message. */
    e_uint(&c, 2, 1);
    e_msg(&pod, 2, &c);
    e_msg(&tmpl, 2, &pod);
    e_msg(&spec, 3, &tmpl);
    e_msg(&raw, 2, &spec);
    check_obj("apps/v1", "Deployment", &raw, ERR_PARSE,
              "proto: wrong wire type 0 for Container.image at byte 37");
    /* A message field sent as a varint. */
    e_uint(&spec, 3, 1);
    e_msg(&raw, 2, &spec);
    check_obj("apps/v1", "Deployment", &raw, ERR_PARSE,
              "proto: wrong wire type 0 for DeploymentSpec.template at byte 31");
    /* Inline struct sent as a varint. */
    e_uint(&sel, 1, 1);
    e_msg(&src, 4, &sel);
    e_msg(&env, 3, &src);
    e_msg(&c, 7, &env);
    e_msg(&pod, 2, &c);
    e_msg(&tmpl, 2, &pod);
    e_msg(&spec, 3, &tmpl);
    e_msg(&raw, 2, &spec);
    check_obj("apps/v1", "Deployment", &raw, ERR_PARSE,
              "proto: wrong wire type 0 for SecretKeySelector.LocalObjectReference at byte 43");
}

static void t_required_defaults(void)
{
    struct buf raw, subj, m;

    /* roleRef absent: the zero RoleRef with its non-omitempty strings; an empty subject. */
    buf_init(&raw);
    buf_init(&subj);
    buf_init(&m);
    e_msg(&raw, 2, &subj);
    check_obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", &raw, 0,
              "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRoleBinding\","
              "\"metadata\":{},\"subjects\":[{\"kind\":\"\",\"name\":\"\"}],\"roleRef\":{"
              "\"apiGroup\":\"\",\"kind\":\"\",\"name\":\"\"}}");
    /* PriorityClass value is not omitempty; pointer preemptionPolicy kept even when "". */
    e_str(&raw, 5, "");
    e_uint(&raw, 3, 0);
    check_obj("scheduling.k8s.io/v1", "PriorityClass", &raw, 0,
              "{\"apiVersion\":\"scheduling.k8s.io/v1\",\"kind\":\"PriorityClass\","
              "\"metadata\":{},\"value\":0,\"preemptionPolicy\":\"\"}");
    /* PodDisruptionBudget status map<string, Time>: a zero Time is null inside a map. */
    e_str(&m, 1, "pod-a");
    e_msg(&subj, 2, &m);
    e_str(&m, 1, "pod-b");
    e_ts(&m, 2, 1704067200, 0);
    e_msg(&subj, 2, &m);
    e_uint(&subj, 3, 2);
    e_msg(&raw, 3, &subj);
    check_obj("policy/v1", "PodDisruptionBudget", &raw, 0,
              "{\"apiVersion\":\"policy/v1\",\"kind\":\"PodDisruptionBudget\",\"metadata\":{},"
              "\"spec\":{},\"status\":{\"disruptedPods\":{\"pod-a\":null,"
              "\"pod-b\":\"2024-01-01T00:00:00Z\"},\"disruptionsAllowed\":2,\"currentHealthy\":0,"
              "\"desiredHealthy\":0,\"expectedPods\":0}}");
}

/* Other group/versions resolve through the table; near misses are refused. */
static void t_kind_table(void)
{
    struct buf raw;

    buf_init(&raw);
    e_str(&raw, 4, "high");
    check_obj("scheduling.k8s.io/v1", "PriorityClass", &raw, 0,
              "{\"apiVersion\":\"scheduling.k8s.io/v1\",\"kind\":\"PriorityClass\","
              "\"metadata\":{},\"value\":0,\"description\":\"high\"}");
    check_kind("scheduling.k8s.io/v1beta1", "PriorityClass",
               "proto: unsupported kind \"PriorityClass\" (apiVersion "
               "\"scheduling.k8s.io/v1beta1\")");
    check_kind("v1", "Deployment", "proto: unsupported kind \"Deployment\" (apiVersion \"v1\")");
    check_kind("apps/v1", "deployment",
               "proto: unsupported kind \"deployment\" (apiVersion \"apps/v1\")");
    check_kind("rbac.authorization.k8s.io/v1", "Subject",
               "proto: unsupported kind \"Subject\" (apiVersion \"rbac.authorization.k8s.io/v1\")");
    check_kind("batch/v1", "", "proto: unsupported kind \"\" (apiVersion \"batch/v1\")");
}

UNIT_MAIN(UNIT(t_helm_secret), UNIT(t_configmap), UNIT(t_secret_minimal), UNIT(t_merge_and_repeats),
          UNIT(t_timestamps), UNIT(t_generation_values), UNIT(t_truncated_prefixes),
          UNIT(t_truncated_raw), UNIT(t_bad_magic), UNIT(t_unknown_kind), UNIT(t_varint_overflow),
          UNIT(t_lengths_past_end), UNIT(t_wire_errors), UNIT(t_fixtures),
          UNIT(t_fixture_key_order), UNIT(t_fixture_prefixes), UNIT(t_fixture_truncated_objects),
          UNIT(t_fixture_corruption), UNIT(t_intorstring), UNIT(t_quantity_maps),
          UNIT(t_rawextension), UNIT(t_microtime), UNIT(t_duration), UNIT(t_deployment_shapes),
          UNIT(t_required_defaults), UNIT(t_kind_table))
