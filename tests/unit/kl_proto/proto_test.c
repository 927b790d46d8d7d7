/*
 * proto_test.c - kubelite's protobuf body decoder: Secrets and ConfigMaps built by a tiny
 * encoder below, then truncated, corrupted and mislabelled.
 */
#include <openssl/evp.h>
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
        const char *want[] = {"apiVersion", "kind", "metadata", "type", "data"};
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
                 "\"namespace\":\"ns\",\"labels\":{\"k\":\"new\"}},\"type\":\"Opaque\","
                 "\"data\":{\"novalue\":\"\",\"\":\"dg==\"}}");
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
        CHECK(strstr(msg, "creationTimestamp out of range") != NULL);
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
    /* Nanoseconds are normalised into seconds like time.Unix, then dropped. */
    check_time(10, 2000000000, "1970-01-01T00:00:12Z");
    check_time(10, -1, "1970-01-01T00:00:09Z");
    check_time(-62167219200LL, 0, "0000-01-01T00:00:00Z");
    check_time(253402300799LL, 0, "9999-12-31T23:59:59Z");
    check_time(253402300800LL, 0, NULL);
    check_time(-62167219201LL, 0, NULL);
    check_time(INT64_MIN, 0, NULL);
    check_time(INT64_MAX, 0, NULL);
    check_time(INT64_MAX, 2000000000, NULL);
    check_time(INT64_MIN, -2000000000, NULL);
    check_time(253402300799LL, 1000000000, NULL);
    check_time(253402300800LL, -1, "9999-12-31T23:59:59Z");
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

UNIT_MAIN(UNIT(t_helm_secret), UNIT(t_configmap), UNIT(t_secret_minimal), UNIT(t_merge_and_repeats),
          UNIT(t_timestamps), UNIT(t_generation_values), UNIT(t_truncated_prefixes),
          UNIT(t_truncated_raw), UNIT(t_bad_magic), UNIT(t_unknown_kind), UNIT(t_varint_overflow),
          UNIT(t_lengths_past_end), UNIT(t_wire_errors))
