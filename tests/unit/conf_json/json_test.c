/*
 * json_test.c - conf_json_loadb and conf_json_dump against jansson, the reference they promise
 * to match: the same documents accepted and refused, equal values, byte-equal output.
 *
 * Inputs: every JSON file in the repository's test data (the official OpenAPI documents kubelite
 * serves, the mesh fixtures), hand-written edge cases, and many thousands of mutated documents
 * (every truncation, bytes deleted, replaced and inserted with JSON's meaningful bytes and
 * invalid UTF-8).
 */
#include <glob.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf/jbuild.h"
#include "conf/jsonio.h"
#include "core/buf.h"
#include "tests/unit/unit.h"

static int mismatches;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char chunk[65536];
    size_t n;

    REQUIRE(f);
    buf_init(&b);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        REQUIRE(buf_append(&b, chunk, n) == 0);
    fclose(f);
    *len = b.len;
    return buf_take(&b);
}

/* Our writer's text for v, or NULL when it refuses (rc in *rc). */
static char *our_dump(const json_t *v, int *rc)
{
    struct buf b;

    buf_init(&b);
    *rc = conf_json_dump(v, &b);
    if (*rc < 0) {
        buf_release(&b);
        return NULL;
    }
    return buf_take(&b);
}

/*
 * The heart of the test: text (len bytes) must be accepted by both readers or by neither; when
 * accepted the values must be equal and both writers must produce the same bytes.
 */
static void check_same(const char *what, const char *text, size_t len)
{
    json_error_t je, oe;
    json_t *ref = json_loadb(text, len, 0, &je);
    json_t *got = conf_json_loadb(text, len, &oe);
    char *a, *b;
    int rc;

    /*
     * The one deliberate difference: jansson drops a NUL byte that follows a number ("[1\0]"
     * reads as [1]); a NUL byte outside a string is not JSON, and we refuse it.
     */
    if (ref && memchr(text, '\0', len)) {
        if (got && mismatches++ < 10)
            fprintf(stderr, "  %s: a NUL byte outside a string was accepted\n", what);
        CHECK(got == NULL);
        goto out;
    }
    if (!ref != !got) {
        if (mismatches++ < 10)
            fprintf(stderr, "  %s: jansson %s (%s), ours %s (%s at %d): %.*s\n", what,
                    ref ? "accepts" : "refuses", ref ? "" : je.text, got ? "accepts" : "refuses",
                    got ? "" : oe.text, got ? je.position : oe.position,
                    (int)(len > 400 ? 400 : len), text);
        CHECK(!ref == !got);
        goto out;
    }
    if (!ref) {
        /* a refusal always says what and where */
        CHECK(oe.text[0] != '\0');
        CHECK(oe.position >= 0 && (size_t)oe.position <= len);
        CHECK(oe.line >= 1 && oe.column >= 1);
        goto out;
    }
    if (!json_equal(ref, got)) {
        if (mismatches++ < 10)
            fprintf(stderr, "  %s: values differ\n", what);
        CHECK(json_equal(ref, got));
    }
    a = json_dumps(ref, JSON_COMPACT);
    b = our_dump(ref, &rc);
    if (!a || !b || strcmp(a, b) != 0) {
        if (mismatches++ < 10)
            fprintf(stderr, "  %s: dumps differ:\n    jansson %.300s\n    ours    %.300s\n", what,
                    a ? a : "(refused)", b ? b : "(refused)");
        CHECK(a && b && strcmp(a, b) == 0);
    }
    free(a);
    free(b);
    /* and our writer on our reader's value */
    b = our_dump(got, &rc);
    a = json_dumps(got, JSON_COMPACT);
    CHECK(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);
out:
    json_decref(ref);
    json_decref(got);
}

static void t_repository_documents(void)
{
    glob_t g;
    int files = 0;

    REQUIRE(glob("tests/kubelite/openapi/*.json", 0, NULL, &g) == 0);
    REQUIRE(glob("tests/fixtures/*/*/*/*.json", GLOB_APPEND, NULL, &g) == 0);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        size_t len;
        char *text;

        if (strchr(g.gl_pathv[i], '*'))
            continue;
        text = slurp(g.gl_pathv[i], &len);
        check_same(g.gl_pathv[i], text, len);
        free(text);
        files++;
    }
    globfree(&g);
    /* 21 OpenAPI documents and the mesh fixtures */
    CHECK(files > 40);
    CHECK_INT(mismatches, 0);
}

#define SAME(lit) check_same(lit, lit, sizeof(lit) - 1)

static void t_edge_cases(void)
{
    /* containers and whitespace */
    SAME("{}");
    SAME("[]");
    SAME(" \t\r\n[ 1 , 2 ]\n ");
    SAME("[[[[[]]]]]");
    SAME("{\"a\":{\"b\":[{}]}}");
    SAME("");
    SAME("   ");
    SAME("1");
    SAME("\"s\"");
    SAME("null");
    SAME("[1,]");
    SAME("[,1]");
    SAME("{\"a\":1,}");
    SAME("{\"a\" 1}");
    SAME("{a:1}");
    SAME("{\"a\":1}x");
    SAME("{\"a\":1}{}");
    SAME("[1 2]");
    SAME("[");
    SAME("{");
    SAME("{\"a\"");
    SAME("{\"a\":");
    SAME("[tru]");
    SAME("[true,false,null]");
    SAME("[truex]");
    SAME("[nul]");
    SAME("\xEF\xBB\xBF{}");
    /* a repeated key keeps its place and takes the last value */
    SAME("{\"a\":1,\"b\":2,\"a\":3}");
    /* numbers */
    SAME("[0,-0,1,-1,10,123456789]");
    SAME("[9223372036854775807,-9223372036854775808]");
    SAME("[9223372036854775808]");
    SAME("[-9223372036854775809]");
    SAME("[99999999999999999999999]");
    SAME("[01]");
    SAME("[-01]");
    SAME("[00]");
    SAME("[-]");
    SAME("[+1]");
    SAME("[.5]");
    SAME("[1.]");
    SAME("[1.e5]");
    SAME("[1e]");
    SAME("[1e+]");
    SAME("[1E-2,1e+2,1E2,2.5e-3]");
    SAME("[0.1,0.5,1.0,-0.0,3.141592653589793,1e22,1e21,1e-7,123456789012345678901234567890.0]");
    SAME("[1e308,1.7976931348623157e308,1e309]");
    SAME("[-1e309]");
    SAME("[1e-400,5e-324,2.2250738585072014e-308]");
    SAME("[100000000000000000000.0,1e+100,1E-0100]");
    SAME("[0e0,0.0e-0,-0e5]");
    SAME("[1x]");
    SAME("[0x10]");
    SAME("[NaN]");
    SAME("[Infinity]");
    /* strings */
    SAME("[\"\"]");
    SAME("[\"plain ascii ~!@#$%^&*()_+`-={}|[]:;'<>?,./\"]");
    SAME("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]");
    SAME("[\"\\u0041\\u00e9\\u00E9\\u4e2d\\uFFFF\"]");
    SAME("[\"\\ud83d\\ude00 and \\uD834\\uDD1E\"]");
    SAME("[\"\\ud83d\"]");
    SAME("[\"\\ud83dx\"]");
    SAME("[\"\\ud83d\\u0041\"]");
    SAME("[\"\\ude00\"]");
    SAME("[\"\\u0000\"]");
    SAME("[\"\\u001f\\u0001\\u007f\"]");
    SAME("[\"\\u12\"]");
    SAME("[\"\\u12G4\"]");
    SAME("[\"\\x\"]");
    SAME("[\"\\");
    SAME("[\"abc");
    SAME("[\"tab\there\"]");
    SAME("[\"nl\nhere\"]");
    SAME("[\"\x01\"]");
    SAME("[\"\x7f\"]");
    SAME("[\"caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF\"]");
    SAME("[\"\xC3\"]");
    SAME("[\"\xC3(\"]");
    SAME("[\"\xC0\xAF\"]");
    SAME("[\"\xC1\xBF\"]");
    SAME("[\"\xE0\x80\xAF\"]");
    SAME("[\"\xE0\xA0\x80\"]");
    SAME("[\"\xED\xA0\x80\"]");
    SAME("[\"\xED\x9F\xBF\"]");
    SAME("[\"\xF0\x80\x80\xAF\"]");
    SAME("[\"\xF0\x90\x80\x80\"]");
    SAME("[\"\xF4\x90\x80\x80\"]");
    SAME("[\"\xF5\x80\x80\x80\"]");
    SAME("[\"\xFF\"]");
    SAME("[\"\x80\"]");
    SAME("{\"k\\u00e9y\":\"v\\n\",\"k\\u00e9y\":\"w\"}");
    SAME("{\"\\u0000\":1}");
    SAME("{\"\":1}");
    /* bytes outside strings */
    SAME("[\x00]");
    SAME("[1,\x80]");
    SAME("[1]\x00");
    CHECK_INT(mismatches, 0);
}

static void t_nul_inside_buffer(void)
{
    static const char t1[] = {'[', '1', ']', '\0', ' '};
    static const char t2[] = {'[', '"', 'a', '\0', 'b', '"', ']'};
    static const char t3[] = {'[', '8', '0', '\0', ']'};

    check_same("NUL after the value", t1, sizeof(t1));
    check_same("NUL inside a string", t2, sizeof(t2));
    check_same("NUL after a number", t3, sizeof(t3));
    CHECK_INT(mismatches, 0);
}

static void t_depth(void)
{
    struct buf b;
    json_error_t e;
    json_t *v;

    /* 2,048 levels are read; 2,049 are refused, with the reason */
    buf_init(&b);
    for (int i = 0; i < 2048; i++)
        REQUIRE(buf_append(&b, "[", 1) == 0);
    for (int i = 0; i < 2048; i++)
        REQUIRE(buf_append(&b, "]", 1) == 0);
    check_same("2048 levels", b.p, b.len);
    v = conf_json_loadb(b.p, b.len, &e);
    CHECK(v != NULL);
    json_decref(v);
    buf_reset(&b);
    for (int i = 0; i < 2049; i++)
        REQUIRE(buf_append(&b, "{\"a\":", 5) == 0);
    REQUIRE(buf_append(&b, "1", 1) == 0);
    for (int i = 0; i < 2049; i++)
        REQUIRE(buf_append(&b, "}", 1) == 0);
    check_same("2049 levels", b.p, b.len);
    v = conf_json_loadb(b.p, b.len, &e);
    CHECK(v == NULL);
    CHECK(strstr(e.text, "depth") != NULL);
    buf_release(&b);
    CHECK_INT(mismatches, 0);
}

static void t_error_position(void)
{
    static const char text[] = "{\n  \"a\": [1, 2],\n  \"b\": tru\n}";
    json_error_t e;
    json_t *v = conf_json_loadb(text, sizeof(text) - 1, &e);

    CHECK(v == NULL);
    CHECK_INT(e.line, 3);
    CHECK_INT(e.column, 8);
    CHECK_INT(e.position, (long long)(strstr(text, "tru") - text));
    CHECK_STR(e.text, "invalid token");
    v = conf_json_loadb("[\"a\x01\"]", 6, &e);
    CHECK(v == NULL);
    CHECK_STR(e.text, "control character 0x01 in a string (it must be escaped)");
    CHECK_INT(e.column, 4);
    v = conf_json_loadb(NULL, 0, &e);
    CHECK(v == NULL);
    CHECK_STR(e.text, "'[' or '{' expected");
    /* err may be NULL */
    CHECK(conf_json_loadb("[", 1, NULL) == NULL);
}

/* xorshift64*: deterministic, so a failure reproduces */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static const char seed_doc[] =
    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"caf\xC3\xA9-1\","
    "\"labels\":{\"app\":\"a\\u00e9\\ud83d\\ude00\"},\"annotations\":{\"x\":\"q\\\"\\\\\\n\"}},"
    "\"spec\":{\"containers\":[{\"name\":\"c\",\"ports\":[{\"containerPort\":8080}],"
    "\"resources\":{\"limits\":{\"cpu\":0.5,\"n\":-12e-3}},\"tty\":true,\"x\":null,"
    "\"big\":9223372036854775807,\"e\":[],\"o\":{}}]}}";

static void t_mutations(void)
{
    static const unsigned char bytes[] = {
        '"',  '\\', '{',  '}',  '[',  ']',  ',',  ':',  '0',  '1',  '-',  '+',  'e',
        'E',  '.',  'u',  'n',  't',  'f',  ' ',  '\n', 0x00, 0x01, 0x1f, 0x7f, 0x80,
        0xBF, 0xC0, 0xC3, 0xE0, 0xED, 0xF0, 0xF4, 0xF8, 0xFF, '/',  'a',  'D',  '8'};
    size_t n = sizeof(seed_doc) - 1;
    char *m = malloc(n + 8);
    int checked = 0;

    REQUIRE(m);
    check_same("seed", seed_doc, n);
    for (size_t cut = 0; cut <= n; cut++, checked++)
        check_same("truncated", seed_doc, cut);
    for (size_t i = 0; i < n; i++) {
        /* delete byte i */
        memcpy(m, seed_doc, i);
        memcpy(m + i, seed_doc + i + 1, n - i - 1);
        check_same("deleted", m, n - 1);
        checked++;
        for (size_t k = 0; k < sizeof(bytes); k++) {
            /* replace byte i */
            memcpy(m, seed_doc, n);
            m[i] = (char)bytes[k];
            check_same("replaced", m, n);
            /* insert before byte i */
            memcpy(m, seed_doc, i);
            m[i] = (char)bytes[k];
            memcpy(m + i + 1, seed_doc + i, n - i);
            check_same("inserted", m, n + 1);
            checked += 2;
        }
    }
    /* random multi-byte damage */
    for (int round = 0; round < 40000; round++, checked++) {
        memcpy(m, seed_doc, n);
        for (int j = 0, hits = 1 + (int)(rng() % 4); j < hits; j++)
            m[rng() % n] = (char)bytes[rng() % sizeof(bytes)];
        check_same("random", m, n);
    }
    free(m);
    CHECK(checked > 50000);
    CHECK_INT(mismatches, 0);
}

static void t_dump_values(void)
{
    static const char nul_str[] = {'a', '\0', 'b', '\x1f', '"', '\\', '\x7f'};
    json_t *v = json_array(), *o, *cyc;
    char *a, *b;
    int rc;

    REQUIRE(v);
    /* values only an API can build */
    json_array_append_new(v, json_stringn(nul_str, sizeof(nul_str)));
    json_array_append_new(v, json_integer(INT64_MIN));
    json_array_append_new(v, json_real(-0.0));
    json_array_append_new(v, json_real(1e300 * 1e8 / 1e8));
    json_array_append_new(v, json_real(6.02214076e23));
    json_array_append_new(v, json_real(1.0 / 3.0));
    o = json_object();
    json_object_setn_new(o, "k\0ey", 4, json_true());
    json_object_set_new(o, "\xE4\xB8\xAD", json_false());
    json_array_append_new(v, o);
    a = json_dumps(v, JSON_COMPACT);
    b = our_dump(v, &rc);
    CHECK_STR(b, a);
    free(a);
    free(b);
    /* scalars on their own */
    o = json_string("top");
    b = our_dump(o, &rc);
    CHECK_STR(b, "\"top\"");
    free(b);
    json_decref(o);
    /* random reals, byte for byte as jansson writes them */
    for (int i = 0; i < 100000; i++) {
        uint64_t bits = rng();
        double d;
        json_t *r;

        memcpy(&d, &bits, sizeof(d));
        if (!isfinite(d))
            continue;
        if (i % 2)
            d = (double)(int64_t)(rng() % 2000000) / 1000.0;
        r = json_real(d);
        REQUIRE(r);
        a = json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY);
        b = our_dump(r, &rc);
        if (!a || !b || strcmp(a, b) != 0) {
            if (mismatches++ < 10)
                fprintf(stderr, "  real %.17g: jansson %s ours %s\n", d, a ? a : "-", b ? b : "-");
        }
        free(a);
        free(b);
        json_decref(r);
    }
    CHECK_INT(mismatches, 0);
    /* a string that is not UTF-8 is refused by both */
    o = json_stringn_nocheck("\xC3(", 2);
    a = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    b = our_dump(o, &rc);
    CHECK(a == NULL);
    CHECK(b == NULL);
    CHECK_INT(rc, ERR_INVALID);
    json_decref(o);
    /* a container that holds itself is refused, not a crash */
    cyc = json_array();
    o = json_object();
    json_array_append(cyc, o);
    json_object_set(o, "loop", cyc);
    b = our_dump(cyc, &rc);
    CHECK(b == NULL);
    CHECK_INT(rc, ERR_INVALID);
    json_object_del(o, "loop");
    json_decref(o);
    json_decref(cyc);
    json_decref(v);
    /* a partial text after an error does not disturb the buffer's earlier contents */
    {
        struct buf out;

        buf_init(&out);
        REQUIRE(buf_append(&out, "keep:", 5) == 0);
        o = json_pack("[s,s]", "ok", "x");
        json_array_append_new(o, json_stringn_nocheck("\xFF", 1));
        CHECK_INT(conf_json_dump(o, &out), ERR_INVALID);
        CHECK(strncmp(out.p, "keep:", 5) == 0);
        json_decref(o);
        buf_release(&out);
    }
}

/* ---- jbuild.h: the first error is kept, later calls consume their values, end drops all --- */

static long jb_calls, jb_fail_at = -1;

static void *jb_malloc(size_t n)
{
    if (jb_fail_at >= 0 && jb_calls++ == jb_fail_at)
        return NULL;
    return malloc(n);
}

static void t_jbuild(void)
{
    struct jbuild b = JBUILD_INIT;
    json_t *d = jbuild_new(&b, json_object()), *a = json_array(), *shared = json_string("s");
    char *text;

    REQUIRE(d && a && shared);
    jbuild_set(&b, d, "n", json_integer(1));
    jbuild_set_ref(&b, d, "s", shared);
    jbuild_append(&b, a, json_true());
    jbuild_set(&b, d, "a", a);
    CHECK_INT(jbuild_end(&b, &d), 0);
    text = json_dumps(d, JSON_COMPACT);
    CHECK_STR(text, "{\"n\":1,\"s\":\"s\",\"a\":[true]}");
    free(text);
    CHECK_INT(shared->refcount, 2); /* borrowed: one reference is d's */
    json_decref(d);
    CHECK_INT(shared->refcount, 1);

    /* a NULL value (a constructor that failed) is an error; the first error is kept */
    b = (struct jbuild)JBUILD_INIT;
    d = jbuild_new(&b, json_object());
    jbuild_set(&b, d, "x", NULL);
    jbuild_fail(&b, -EINVAL);
    jbuild_set_ref(&b, d, "s", shared); /* ignored, and its reference not taken */
    jbuild_append(&b, NULL, json_string("consumed"));
    CHECK_INT(shared->refcount, 1);
    CHECK_INT(jbuild_end(&b, &d), -ENOMEM);
    CHECK(d == NULL);
    json_decref(shared);

    /* jbuild_fail records a caller's error; a NULL root with no error recorded is -ENOMEM */
    b = (struct jbuild)JBUILD_INIT;
    d = json_object();
    jbuild_fail(&b, 0); /* not an error */
    jbuild_fail(&b, -EINVAL);
    CHECK_INT(jbuild_end(&b, &d), -EINVAL);
    CHECK(d == NULL);
    b = (struct jbuild)JBUILD_INIT;
    d = NULL;
    CHECK_INT(jbuild_end(&b, &d), -ENOMEM);

    /* every allocation of a small build failed in turn: whole document or -ENOMEM */
    for (long k = 0;; k++) {
        bool injected;
        int rc;

        b = (struct jbuild)JBUILD_INIT;
        jb_calls = 0;
        jb_fail_at = k;
        json_set_alloc_funcs(jb_malloc, free);
        d = jbuild_new(&b, json_object());
        a = jbuild_new(&b, json_array());
        for (int i = 0; i < 20; i++)
            jbuild_append(&b, a, json_pack("{s:i}", "i", i));
        jbuild_set(&b, d, "items", a);
        jbuild_set(&b, d, "name", json_string("x"));
        rc = jbuild_end(&b, &d);
        injected = jb_calls > k;
        jb_fail_at = -1;
        json_set_alloc_funcs(malloc, free);
        if (rc == 0) {
            CHECK_INT(json_array_size(json_object_get(d, "items")), 20);
            CHECK_STR(json_string_value(json_object_get(d, "name")), "x");
        } else {
            CHECK_INT(rc, -ENOMEM);
            CHECK(d == NULL);
        }
        json_decref(d);
        if (!injected)
            break;
        CHECK(rc == -ENOMEM);
    }
}

/* Keys holding NUL (yaml_to_json makes them): jansson's json_equal looks keys up cut at the NUL,
 * so it calls a copy of such an object unequal (found by fuzz_yaml); conf_json_equal does not. */
/* {"\0<c>": null, "x": [1, 2.5, "<s>"]}, its members set in the order given by first. */
static json_t *nul_key_doc(char c, const char *s, int nul_first)
{
    char key[2] = {'\0', c};
    json_t *o = json_object(), *x = json_pack("[i f s]", 1, 2.5, s);

    if (!o || !x)
        return NULL;
    if (!nul_first)
        json_object_set(o, "x", x);
    json_object_setn_new(o, key, 2, json_null());
    json_object_set_new(o, "x", x);
    return o;
}

static void t_equal_nul_keys(void)
{
    json_t *a = nul_key_doc('m', "s", 1), *b = nul_key_doc('m', "s", 0);
    json_t *c = nul_key_doc('n', "s", 1), *d = nul_key_doc('m', "t", 1);

    CHECK(a && b && c && d);
    CHECK(conf_json_equal(a, b));
    CHECK(!conf_json_equal(a, c));
    CHECK(!conf_json_equal(a, d));
    CHECK(conf_json_equal(NULL, NULL));
    CHECK(!conf_json_equal(a, NULL));
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d);
}

UNIT_MAIN(UNIT(t_repository_documents), UNIT(t_edge_cases), UNIT(t_nul_inside_buffer),
          UNIT(t_depth), UNIT(t_error_position), UNIT(t_mutations), UNIT(t_dump_values),
          UNIT(t_jbuild), UNIT(t_equal_nul_keys))
