/*
 * yaml_test.c - YAML to JSON with go-yaml v2 / sigs.k8s.io/yaml typing, and JSON back to YAML.
 */
#include <glob.h>
#include <time.h>

#include "conf/yamljson.h"
#include "core/buf.h"
#include "tests/unit/unit.h"

static char *dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    REQUIRE(s);
    return s;
}

/* Parse text; on success return the compact JSON of all documents, else "ERR: <msg>". */
static char *parse(const char *text)
{
    json_t *out = NULL;
    struct diag yd = {0, ""};
    int rc = yaml_to_json(text, strlen(text), &out, &yd);
    char *s;

    if (rc < 0) {
        CHECK(out == NULL);
        if (rc != ERR_PARSE)
            fprintf(stderr, "  rc %d for %s\n", rc, text);
        REQUIRE(asprintf(&s, "ERR: %s", yd.text) > 0);
        return s;
    }
    s = dump(out);
    json_decref(out);
    return s;
}

#define CHECK_YAML(text, want)                                                                     \
    do {                                                                                           \
        char *got__ = parse(text);                                                                 \
        CHECK_STR(got__, want);                                                                    \
        free(got__);                                                                               \
    } while (0)

/* The JSON of one plain scalar value: "v: <text>". */
static void check_scalar(const char *text, const char *want_json)
{
    char *doc, *want;

    REQUIRE(asprintf(&doc, "v: %s\n", text) > 0);
    REQUIRE(asprintf(&want, "[{\"v\":%s}]", want_json) > 0);
    CHECK_YAML(doc, want);
    free(doc);
    free(want);
}

static void t_plain_scalars(void)
{
    static const char *const cases[][2] = {
        /* nulls */
        {"", "null"},
        {"~", "null"},
        {"null", "null"},
        {"Null", "null"},
        {"NULL", "null"},
        {"nULL", "\"nULL\""},
        /* booleans, go-yaml v2 spelling (YAML 1.1) */
        {"true", "true"},
        {"True", "true"},
        {"TRUE", "true"},
        {"yes", "true"},
        {"Yes", "true"},
        {"YES", "true"},
        {"y", "true"},
        {"Y", "true"},
        {"on", "true"},
        {"On", "true"},
        {"ON", "true"},
        {"false", "false"},
        {"False", "false"},
        {"FALSE", "false"},
        {"no", "false"},
        {"No", "false"},
        {"NO", "false"},
        {"n", "false"},
        {"N", "false"},
        {"off", "false"},
        {"Off", "false"},
        {"OFF", "false"},
        {"tRUE", "\"tRUE\""},
        {"yEs", "\"yEs\""},
        {"oN", "\"oN\""},
        {"yes!", "\"yes!\""},
        /* integers */
        {"0", "0"},
        {"-0", "0"},
        {"42", "42"},
        {"+42", "42"},
        {"-42", "-42"},
        {"1_000_000", "1000000"},
        {"0x1F", "31"},
        {"0X1f", "31"},
        {"-0x10", "-16"},
        {"0x_ff", "255"},
        {"0o17", "15"},
        {"017", "15"},
        {"-017", "-15"},
        {"00", "0"},
        {"0b101", "5"},
        {"-0b11", "-3"},
        {"9223372036854775807", "9223372036854775807"},
        {"-9223372036854775808", "-9223372036854775808"},
        /* past int64: uint64, then float (JSON has no uint64: a double) */
        {"18446744073709551615", "1.8446744073709552e19"},
        {"-9223372036854775809", "-9.2233720368547758e18"},
        /* not integers */
        {"0x", "\"0x\""},
        {"0b2", "\"0b2\""},
        {"0o8", "\"0o8\""},
        {"1_", "1"},
        {"_1", "\"_1\""},
        {"12abc", "\"12abc\""},
        {"1-2", "\"1-2\""},
        {"+", "\"+\""},
        {"-x", "\"-x\""},
        {"+.", "\"+.\""},
        {"1:20", "\"1:20\""},
        /* invalid octal falls through to float: an integral float is written as an int */
        {"08", "8"},
        {"09.5", "9.5"},
        /* floats */
        {"1.5", "1.5"},
        {"-1.25", "-1.25"},
        {"1.", "1"},
        {"1.0", "1"},
        {"1e3", "1000"},
        {"1E-2", "0.01"},
        {"6.02e+23", "6.02e23"},
        {".5", "0.5"},
        {"+.5", "0.5"},
        {"-.5e1", "-5"},
        {"1_0.5", "10.5"},
        {"1e400", "\"1e400\""},
        {".", "\".\""},
        {".e1", "\".e1\""},
        {"1.2.3", "\"1.2.3\""},
        {"0x1p3", "\"0x1p3\""},
        {"nan", "\"nan\""},
        {"inf", "\"inf\""},
        /* timestamps stay strings (go-yaml v2 keeps them as text in interface{}) */
        {"2001-12-14", "\"2001-12-14\""},
        {"2001-12-14t21:59:43.10-05:00", "\"2001-12-14t21:59:43.10-05:00\""},
        /* other strings */
        {"hello world", "\"hello world\""},
        {"<<", "\"<<\""},
        {"a b  c", "\"a b  c\""},
        {"a:b", "\"a:b\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        check_scalar(cases[i][0], cases[i][1]);
}

static void t_quoted_block_tagged(void)
{
    CHECK_YAML("a: \"true\"\nb: '123'\nc: \"\"\nd: ''\ne: \"null\"\nf: '~'\ng: \"0x10\"\n",
               "[{\"a\":\"true\",\"b\":\"123\",\"c\":\"\",\"d\":\"\",\"e\":\"null\",\"f\":\"~\","
               "\"g\":\"0x10\"}]");
    CHECK_YAML("esc: \"tab\\tnl\\nq\\\"u\\u00e9\\x41\"\nsq: 'it''s'\n",
               "[{\"esc\":\"tab\\tnl\\nq\\\"u\xc3\xa9\x41\",\"sq\":\"it's\"}]");
    /* Block scalars are strings, whatever they contain. */
    CHECK_YAML("lit: |\n  true\n  123\nkeep: |+\n  x\n\nstrip: |-\n  x\nfold: >\n  a\n  b\n\n  c\n"
               "num: |\n  42\n",
               "[{\"lit\":\"true\\n123\\n\",\"keep\":\"x\\n\\n\",\"strip\":\"x\",\"fold\":\"a "
               "b\\nc\\n\",\"num\":\"42\\n\"}]");
    CHECK_YAML("ind: |2\n    two\n  one\n", "[{\"ind\":\"  two\\none\\n\"}]");
    /* Tags. */
    CHECK_YAML("a: !!str 123\nb: !!int \"12\"\nc: !!float 5\nd: !!bool yes\ne: !!null ''\n"
               "f: ! 5\ng: !custom 7\nh: !!str true\ni: !!float 2.5\nj: !!binary aGk=\n",
               "[{\"a\":\"123\",\"b\":12,\"c\":5,\"d\":true,\"e\":null,\"f\":\"5\",\"g\":\"7\","
               "\"h\":\"true\",\"i\":2.5,\"j\":\"aGk=\"}]");
    CHECK_YAML("a: !!int abc\n", "ERR: yaml: line 1: cannot decode !!str `abc` as a !!int");
    CHECK_YAML("a:\n  b: !!bool 1\n", "ERR: yaml: line 2: cannot decode !!int `1` as a !!bool");
    CHECK_YAML("a: !!null x\n", "ERR: yaml: line 1: cannot decode !!str `x` as a !!null");
    CHECK_YAML("a: !!float yes\n", "ERR: yaml: line 1: cannot decode !!bool `yes` as a !!float");
    /* Flow collections. */
    CHECK_YAML("{a: [1, \"2\", {b: ~}], c: []}\n", "[{\"a\":[1,\"2\",{\"b\":null}],\"c\":[]}]");
    CHECK_YAML("[]", "[[]]");
    CHECK_YAML("{}", "[{}]");
    CHECK_YAML("- - - x\n", "[[[[\"x\"]]]]");
}

static void t_inf_nan(void)
{
    CHECK_YAML("x: .inf\n", "ERR: yaml: line 1: json: unsupported value: .inf");
    CHECK_YAML("a: 1\nx: -.Inf\n", "ERR: yaml: line 2: json: unsupported value: -.Inf");
    CHECK_YAML("- +.INF\n", "ERR: yaml: line 1: json: unsupported value: +.INF");
    CHECK_YAML("- 1\n- .NaN\n", "ERR: yaml: line 2: json: unsupported value: .NaN");
    CHECK_YAML("x: !!float .nan\n", "ERR: yaml: line 1: json: unsupported value: .nan");
    /* Quoted, they are only strings. */
    CHECK_YAML("x: \".inf\"\nz: '.nan'\n", "[{\"x\":\".inf\",\"z\":\".nan\"}]");
    /* As keys they become text, as sigs.k8s.io/yaml names them. */
    CHECK_YAML(".inf: 1\n-.inf: 2\n.NaN: 3\n", "[{\".inf\":1,\"-.inf\":2,\".nan\":3}]");
}

static void t_keys(void)
{
    CHECK_YAML("80: http\n443: https\n", "[{\"80\":\"http\",\"443\":\"https\"}]");
    /* y is a boolean in go-yaml v2, so it collides with true. */
    CHECK_YAML("true: a\nno: b\ny: c\n",
               "ERR: yaml: line 3: mapping key \"true\" already defined at line 1");
    CHECK_YAML("true: a\nno: b\n", "[{\"true\":\"a\",\"false\":\"b\"}]");
    CHECK_YAML("0x10: a\n-7: b\n1_000: c\n", "[{\"16\":\"a\",\"-7\":\"b\",\"1000\":\"c\"}]");
    /* Floats as strconv.FormatFloat(f, 'g', -1, 32). */
    CHECK_YAML("1.5: a\n0.1: b\n1e7: c\n1e-5: d\n123456.7: e\n1.0: f\n3.14159265: g\n",
               "[{\"1.5\":\"a\",\"0.1\":\"b\",\"1e+07\":\"c\",\"1e-05\":\"d\",\"123456.7\":\"e\","
               "\"1\":\"f\",\"3.1415927\":\"g\"}]");
    CHECK_YAML("\"80\": a\n'true': b\n\"\": c\n", "[{\"80\":\"a\",\"true\":\"b\",\"\":\"c\"}]");
    CHECK_YAML("a: &k 5\n*k : v\n", "[{\"a\":5,\"5\":\"v\"}]");
    CHECK_YAML("&k key: 5\nother: *k\n", "[{\"key\":5,\"other\":\"key\"}]");
    CHECK_YAML("~: 1\n", "ERR: yaml: line 1: unsupported map key: null");
    CHECK_YAML("a: 1\n? [1]\n: 2\n", "ERR: yaml: line 2: invalid map key");
    CHECK_YAML("? {a: 1}\n: 2\n", "ERR: yaml: line 1: invalid map key");
    CHECK_YAML("a: &m {x: 1}\n*m : 2\n", "ERR: yaml: line 2: invalid map key");
    /* Keys with a NUL survive. */
    {
        json_t *out = NULL;
        struct diag yd = {0, ""};
        const char txt[] = "\"a\\0b\": 1\n";

        CHECK_INT(yaml_to_json(txt, sizeof(txt) - 1, &out, &yd), 0);
        CHECK(json_object_getn(json_array_get(out, 0), "a\0b", 3) != NULL);
        json_decref(out);
    }
}

static void t_duplicate_keys(void)
{
    CHECK_YAML("a: 1\nb: 2\na: 3\n",
               "ERR: yaml: line 3: mapping key \"a\" already defined at line 1");
    CHECK_YAML("top:\n  x: 1\n\n  x: 2\n",
               "ERR: yaml: line 4: mapping key \"x\" already defined at line 2");
    CHECK_YAML("{a: 1, a: 2}", "ERR: yaml: line 1: mapping key \"a\" already defined at line 1");
    /* Distinct after conversion only at the text level: 80 and "80" are the same JSON key. */
    CHECK_YAML("80: a\n\"80\": b\n",
               "ERR: yaml: line 2: mapping key \"80\" already defined at line 1");
    /* Same key in different mappings is fine. */
    CHECK_YAML("- a: 1\n- a: 2\n", "[[{\"a\":1},{\"a\":2}]]");
}

static void t_anchors_merge(void)
{
    CHECK_YAML("base: &b {x: 1, w: [1, 2]}\ncopy: *b\nlist: [*b, *b]\ns: &s hi\nt: *s\n",
               "[{\"base\":{\"x\":1,\"w\":[1,2]},\"copy\":{\"x\":1,\"w\":[1,2]},\"list\":[{\"x\":1,"
               "\"w\":[1,2]},{\"x\":1,\"w\":[1,2]}],\"s\":\"hi\",\"t\":\"hi\"}]");
    /* Redefined anchors: an alias takes the latest. */
    CHECK_YAML("a: &x 1\nb: &x 2\nc: *x\n", "[{\"a\":1,\"b\":2,\"c\":2}]");
    /* Merge a map; explicit keys win whether they come before or after "<<". */
    CHECK_YAML("b: &b {x: 1, w: 2, z: 3}\nm:\n  w: 9\n  <<: *b\n  z: 8\n",
               "[{\"b\":{\"x\":1,\"w\":2,\"z\":3},\"m\":{\"w\":9,\"x\":1,\"z\":8}}]");
    /* A list of maps: the earlier map wins; inline maps are allowed. */
    CHECK_YAML("a: &a {k: a, ka: 1}\nb: &b {k: b, kb: 2}\nm:\n  <<: [*a, *b, {k: c, kc: 3}]\n",
               "[{\"a\":{\"k\":\"a\",\"ka\":1},\"b\":{\"k\":\"b\",\"kb\":2},\"m\":{\"k\":\"a\","
               "\"ka\":1,\"kb\":2,\"kc\":3}}]");
    CHECK_YAML("m:\n  !!merge <<: {a: 1}\n", "[{\"m\":{\"a\":1}}]");
    /* A quoted "<<" is an ordinary key. */
    CHECK_YAML("m:\n  \"<<\": {a: 1}\n", "[{\"m\":{\"<<\":{\"a\":1}}}]");
    CHECK_YAML("<<: 5\n",
               "ERR: yaml: line 1: map merge requires map or sequence of maps as the value");
    CHECK_YAML("a: &a [1]\nm:\n  <<: [*a]\n",
               "ERR: yaml: line 3: map merge requires map or sequence of maps as the value");
    CHECK_YAML("m:\n  <<: ~\n",
               "ERR: yaml: line 2: map merge requires map or sequence of maps as the value");
    CHECK_YAML("x: *nope\n", "ERR: yaml: line 1: unknown anchor 'nope' referenced");
    CHECK_YAML("a: &a [1, *a]\n", "ERR: yaml: line 1: anchor 'a' value contains itself");
    CHECK_YAML("a: &a {b: *a}\n", "ERR: yaml: line 1: anchor 'a' value contains itself");
    /* Anchors do not cross documents. */
    CHECK_YAML("a: &a 1\n---\nb: *a\n", "ERR: yaml: line 3: unknown anchor 'a' referenced");

    /* Aliased values are independent copies for the caller. */
    {
        const char *txt = "b: &b {x: [1]}\nc: *b\nm: {<<: *b}\n";
        json_t *out = NULL, *doc;
        struct diag yd = {0, ""};
        char *s;

        CHECK_INT(yaml_to_json(txt, strlen(txt), &out, &yd), 0);
        doc = json_array_get(out, 0);
        json_array_append_new(json_object_get(json_object_get(doc, "b"), "x"), json_integer(2));
        json_object_set_new(json_object_get(doc, "c"), "new", json_true());
        s = dump(out);
        CHECK_STR(s, "[{\"b\":{\"x\":[1,2]},\"c\":{\"x\":[1],\"new\":true},\"m\":{\"x\":[1]}}]");
        free(s);
        json_decref(out);
    }
}

static void t_limits(void)
{
    struct buf b;
    char *s;
    clock_t t0 = clock();

    /* Billion laughs: refused from the sizes alone, without expanding anything. */
    CHECK_YAML("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
               "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
               "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
               "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
               "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
               "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
               "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
               "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
               "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n",
               "ERR: yaml: document too large");
    /* The same through merge keys. */
    CHECK_YAML("a: &a {a0: [x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x]}\n"
               "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
               "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
               "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
               "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
               "ERR: yaml: document too large");
    CHECK(clock() - t0 < CLOCKS_PER_SEC);
    /* Three levels of the bomb (1,111 values) are fine and fully expanded. */
    {
        const char *txt = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                          "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                          "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n";
        json_t *out = NULL;
        struct diag yd = {0, ""};

        CHECK_INT(yaml_to_json(txt, strlen(txt), &out, &yd), 0);
        CHECK_STR(
            json_string_value(json_array_get(
                json_array_get(json_array_get(json_object_get(json_array_get(out, 0), "c"), 9), 9),
                9)),
            "x");
        json_decref(out);
    }

    /* Depth: 1000 nested sequences parse, 1001 do not. */
    buf_init(&b);
    for (int i = 0; i < 1000; i++)
        REQUIRE(buf_puts(&b, "[") == 0);
    for (int i = 0; i < 1000; i++)
        REQUIRE(buf_puts(&b, "]") == 0);
    s = parse(b.p);
    CHECK(strncmp(s, "[[[[", 4) == 0);
    free(s);
    buf_reset(&b);
    for (int i = 0; i < 1001; i++)
        REQUIRE(buf_puts(&b, "[") == 0);
    for (int i = 0; i < 1001; i++)
        REQUIRE(buf_puts(&b, "]") == 0);
    s = parse(b.p);
    CHECK_STR(s, "ERR: yaml: document too large");
    free(s);
    /* Depth reached through an alias counts too: 600 under an anchor, reused 600 deep. */
    buf_reset(&b);
    REQUIRE(buf_puts(&b, "a: &a ") == 0);
    for (int i = 0; i < 600; i++)
        REQUIRE(buf_puts(&b, "[") == 0);
    for (int i = 0; i < 600; i++)
        REQUIRE(buf_puts(&b, "]") == 0);
    REQUIRE(buf_puts(&b, "\nb: ") == 0);
    for (int i = 0; i < 600; i++)
        REQUIRE(buf_puts(&b, "[") == 0);
    REQUIRE(buf_puts(&b, "*a") == 0);
    for (int i = 0; i < 600; i++)
        REQUIRE(buf_puts(&b, "]") == 0);
    s = parse(b.p);
    CHECK_STR(s, "ERR: yaml: document too large");
    free(s);

    buf_release(&b);
}

/* Without aliases: 50,000 list items are fine, 1,000,001 values are not (nulls, which jansson
 * does not allocate, keep this quick under valgrind). */
static void t_node_cap(void)
{
    struct buf b;
    json_t *out = NULL;
    struct diag yd = {0, ""};
    char *s;

    buf_init(&b);
    for (int i = 0; i < 50000; i++)
        REQUIRE(buf_puts(&b, "- ~\n") == 0);
    CHECK_INT(yaml_to_json(b.p, b.len, &out, &yd), 0);
    CHECK_INT(json_array_size(json_array_get(out, 0)), 50000);
    json_decref(out);
    /* The cap counts across documents: 1,000,000 scalars + the document's sequence. */
    buf_reset(&b);
    for (int i = 0; i < 100; i++) {
        REQUIRE(buf_puts(&b, "---\n[") == 0);
        for (int j = 0; j < 10000; j++)
            REQUIRE(buf_puts(&b, "~,") == 0);
        REQUIRE(buf_puts(&b, "~]\n") == 0);
    }
    s = parse(b.p);
    CHECK_STR(s, "ERR: yaml: document too large");
    free(s);
    buf_release(&b);
}

static void t_documents(void)
{
    CHECK_YAML("", "[]");
    CHECK_YAML("# only a comment\n", "[]");
    CHECK_YAML("---\n", "[]");
    CHECK_YAML("---\n# c\n---\n\n---\na: 1\n...\n---\n- 2\n--- x\n---\n", "[{\"a\":1},[2],\"x\"]");
    CHECK_YAML("--- null\n--- ''\n", "[null,\"\"]");
    CHECK_YAML("%YAML 1.1\n---\na: b\n", "[{\"a\":\"b\"}]");
    /* A NULL text with no length is an empty stream; diag may be NULL. */
    {
        json_t *out = NULL;

        CHECK_INT(yaml_to_json(NULL, 0, &out, NULL), 0);
        CHECK_INT(json_array_size(out), 0);
        json_decref(out);
        out = NULL;
        CHECK_INT(yaml_to_json("a: [", 4, &out, NULL), ERR_PARSE);
        CHECK(out == NULL);
    }
    /* Only len bytes are read. */
    {
        json_t *out = NULL;
        struct diag yd = {0, ""};
        char *s;

        CHECK_INT(yaml_to_json("a: 1\nb: [", 5, &out, &yd), 0);
        s = dump(out);
        CHECK_STR(s, "[{\"a\":1}]");
        free(s);
        json_decref(out);
    }
}

static void t_errors(void)
{
    CHECK_YAML("a: [1, 2\n", "ERR: yaml: line 2: did not find expected ',' or ']'");
    CHECK_YAML("a:\n  b: 1\n c: 2\n", "ERR: yaml: line 3: did not find expected key");
    CHECK_YAML("a: b: c\n", "ERR: yaml: line 1: mapping values are not allowed in this context");
    CHECK_YAML("ok: 1\nx: @y\n", "ERR: yaml: line 2: found character that cannot start any token");
    CHECK_YAML("a:\n\tb: 1\n", "ERR: yaml: line 2: found character that cannot start any token");
    CHECK_YAML("a: \"\\q\"\n", "ERR: yaml: line 1: found unknown escape character");
    CHECK_YAML("a: 'open\n", "ERR: yaml: line 2: found unexpected end of stream");
    CHECK_YAML("- a\nb: c\n", "ERR: yaml: line 2: did not find expected '-' indicator");
    CHECK_YAML("a\x01: 1\n", "ERR: yaml: control characters are not allowed");
    CHECK_YAML("a: \xff\n", "ERR: yaml: invalid leading UTF-8 octet");
    CHECK_YAML("a: &x\n", "[{\"a\":null}]");
    CHECK_YAML("a: 1\n---\n{x: [\n", "ERR: yaml: line 4: did not find expected node content");
}

/* ---- JSON to YAML ---- */

static void check_emit(const char *json, const char *want)
{
    json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    char *y;

    REQUIRE(v);
    y = json_to_yaml(v);
    CHECK_STR(y, want);
    free(y);
    json_decref(v);
}

static void t_json_to_yaml(void)
{
    check_emit(
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"x\","
        "\"labels\":{\"app\":\"web\"}},\"data\":{\"a\":\"1\",\"b\":\"true\",\"c\":\"\","
        "\"d\":\"null\",\"e\":\"yes\",\"f\":\"0x1F\",\"g\":\"1.5\",\"h\":\"plain text\","
        "\"i\":\"k: v\",\"j\":\"- x\",\"k\":\"#c\",\"l\":\" lead\",\"m\":\"~\",\"n\":\"<<\","
        "\"o\":\"caf\xc3\xa9\",\"p\":\"1e400\",\"q\":\"y\"}}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels:\n    app: web\n"
        "data:\n  a: \"1\"\n  b: \"true\"\n  c: \"\"\n  d: \"null\"\n  e: \"yes\"\n"
        "  f: \"0x1F\"\n  g: \"1.5\"\n  h: plain text\n  i: 'k: v'\n  j: '- x'\n"
        "  k: '#c'\n  l: ' lead'\n  m: \"~\"\n  \"n\": \"<<\"\n  o: caf\xc3\xa9\n  p: 1e400\n"
        "  q: \"y\"\n");
    check_emit(
        "{\"n\":1,\"neg\":-7,\"r\":1.5,\"whole\":2.0,\"big\":1e300,\"tiny\":1e-7,\"t\":true,"
        "\"f\":false,\"z\":null,\"e\":{},\"a\":[],\"l\":[1,[2,3],{\"k\":\"v\"}]}",
        "\"n\": 1\nneg: -7\nr: 1.5\nwhole: 2.0\nbig: 1e+300\ntiny: 1e-07\nt: true\nf: false\n"
        "z: null\ne: {}\na: []\nl:\n- 1\n- - 2\n  - 3\n- k: v\n");
    /* Keys that read back as other types are quoted too. */
    check_emit("{\"80\":\"a\",\"true\":\"b\",\"\":\"c\",\"<<\":\"d\",\"a b\":\"e\"}",
               "\"80\": a\n\"true\": b\n\"\": c\n\"<<\": d\na b: e\n");
    /* Multi-line strings as literal blocks, with chomping indicators. */
    check_emit("{\"s\":\"line1\\nline2\\n\",\"t\":\"no newline\\nat end\",\"u\":\"keep\\n\\n\"}",
               "s: |\n  line1\n  line2\nt: |-\n  no newline\n  at end\nu: |+\n  keep\n\n...\n");
    /* When a literal block cannot hold the text exactly, libyaml quotes it. */
    check_emit("{\"s\":\"trailing \\nspace\"}", "s: \"trailing \\nspace\"\n");
    check_emit("[\"a\",\"b\"]", "- a\n- b\n");
    check_emit("\"true\"", "\"true\"\n");
    check_emit("{\"nul\":\"a\\u0000b\"}", "nul: \"a\\0b\"\n");
    CHECK(json_to_yaml(NULL) == NULL);
}

/* json -> yaml -> json gives the same value. */
static void check_round_trip(const json_t *v, const char *what)
{
    char *y = json_to_yaml(v);
    struct diag yd = {0, ""};
    json_t *back = NULL;
    int rc;

    REQUIRE(y);
    rc = yaml_to_json(y, strlen(y), &back, &yd);
    CHECK_INT(rc, 0);
    CHECK_INT(json_array_size(back), 1);
    if (rc != 0 || !json_equal(json_array_get(back, 0), v)) {
        char *a = dump(v), *b = back ? dump(back) : NULL;

        fprintf(stderr,
                "  round trip of %s failed: %s\n  json: %.300s\n  yaml: %.300s\n  back: "
                "%.300s\n",
                what, yd.text, a, y, b ? b : "-");
        free(a);
        free(b);
        unit__failures++;
    }
    json_decref(back);
    free(y);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char tmp[8192];
    size_t n;

    REQUIRE(f);
    buf_init(&b);
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        REQUIRE(buf_append(&b, tmp, n) == 0);
    fclose(f);
    *len = b.len;
    return buf_take(&b);
}

static void t_round_trip_corpus(void)
{
    glob_t g;
    size_t files = 0, docs = 0;

    REQUIRE(glob("/work/shared/inject-corpus/*.yaml", 0, NULL, &g) == 0);
    REQUIRE(glob("/work/shared/real-apps/bookinfo.yaml", GLOB_APPEND, NULL, &g) == 0);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        size_t len;
        char *text = slurp(g.gl_pathv[i], &len);
        struct diag yd = {0, ""};
        json_t *out = NULL, *doc;
        size_t j;
        int rc = yaml_to_json(text, len, &out, &yd);

        if (rc != 0)
            fprintf(stderr, "  %s: %s\n", g.gl_pathv[i], yd.text);
        CHECK_INT(rc, 0);
        CHECK(json_array_size(out) > 0);
        json_array_foreach(out, j, doc)
        {
            CHECK(json_is_object(doc));
            check_round_trip(doc, g.gl_pathv[i]);
            docs++;
        }
        if (strstr(g.gl_pathv[i], "bookinfo.yaml")) {
            /* 15 documents, the first only comments. */
            CHECK_INT(json_array_size(out), 14);
            CHECK_STR(json_string_value(json_object_get(
                          json_object_get(json_array_get(out, 13), "metadata"), "name")),
                      "productpage-v1");
        }
        files++;
        json_decref(out);
        free(text);
    }
    globfree(&g);
    CHECK(files >= 95);
    CHECK(docs >= files);
}

static void t_round_trip_tricky(void)
{
    static const char *const strs[] = {"",
                                       " ",
                                       "  ",
                                       "a",
                                       "true",
                                       "True",
                                       "yes",
                                       "y",
                                       "n",
                                       "N",
                                       "on",
                                       "OFF",
                                       "null",
                                       "~",
                                       "NULL",
                                       "0",
                                       "-0",
                                       "007",
                                       "08",
                                       "0x1F",
                                       "0o7",
                                       "0b1",
                                       "1_000",
                                       "1e3",
                                       "1e400",
                                       ".5",
                                       "-.inf",
                                       ".nan",
                                       "+1",
                                       "1.",
                                       "2001-12-14",
                                       "1:20",
                                       "<<",
                                       "---",
                                       "...",
                                       "- x",
                                       "-",
                                       "? x",
                                       "?",
                                       ":",
                                       "a:",
                                       "a: b",
                                       "a:b",
                                       "a #b",
                                       "#a",
                                       "&a",
                                       "*a",
                                       "!t",
                                       "!!str",
                                       "|",
                                       ">",
                                       "%x",
                                       "@x",
                                       "`x",
                                       "'",
                                       "\"",
                                       "''",
                                       "{",
                                       "}",
                                       "[",
                                       "]",
                                       ",",
                                       "a,b",
                                       "[a]",
                                       "{a: 1}",
                                       "\\",
                                       "\t",
                                       "\ta",
                                       "a\t",
                                       " lead",
                                       "trail ",
                                       "\n",
                                       "\n\n",
                                       "a\n",
                                       "a\nb",
                                       "a\nb\n",
                                       "a\n\n",
                                       "\na",
                                       " a\nb",
                                       "a \nb",
                                       "a\n b",
                                       "a\r\nb",
                                       "\xc2\x85",
                                       "\xe2\x80\xa8",
                                       "caf\xc3\xa9",
                                       "\xf0\x9f\x98\x80",
                                       "\x7f",
                                       "\x01",
                                       "line1\nline2\n\n\n",
                                       "  indented\n  block\n",
                                       "x\n# not a comment\n",
                                       "--- \n",
                                       "a\n...\nb"};
    json_t *obj = json_object(), *arr = json_array(), *nums;

    REQUIRE(obj && arr);
    for (size_t i = 0; i < ARRAY_LEN(strs); i++) {
        json_t *s = json_string(strs[i]);

        REQUIRE(s);
        check_round_trip(s, strs[i]);
        REQUIRE(json_array_append(arr, s) == 0);
        REQUIRE(json_object_set_new(obj, strs[i], s) == 0);
    }
    check_round_trip(arr, "strings in a list");
    check_round_trip(obj, "strings as keys and values");
    {
        json_t *nested = json_pack("{s:[o,{s:o}]}", "x", json_incref(arr), "y", json_incref(obj));

        REQUIRE(nested);
        check_round_trip(nested, "nested");
        json_decref(nested);
    }
    /* A long string and one with a NUL. */
    {
        char *big = malloc(20001);
        json_t *s;

        REQUIRE(big);
        for (int i = 0; i < 20000; i++)
            big[i] = (char)('a' + i % 26);
        big[20000] = '\0';
        for (int i = 80; i < 20000; i += 81)
            big[i] = ' ';
        s = json_string(big);
        check_round_trip(s, "long string");
        json_decref(s);
        free(big);
        s = json_stringn("a\0b", 3);
        check_round_trip(s, "NUL");
        json_decref(s);
    }
    nums = json_pack("[I,I,I,f,f,f,f,f,f,b,b,n]", (json_int_t)INT64_MAX, (json_int_t)INT64_MIN,
                     (json_int_t)0, 0.1, -2.5e-10, 1e300, 1e21, 123456.789, 1.0 / 3, 1, 0);
    REQUIRE(nums);
    check_round_trip(nums, "numbers");
    json_decref(nums);
    json_decref(arr);
    json_decref(obj);
}

UNIT_MAIN(UNIT(t_plain_scalars), UNIT(t_quoted_block_tagged), UNIT(t_inf_nan), UNIT(t_keys),
          UNIT(t_duplicate_keys), UNIT(t_anchors_merge), UNIT(t_limits), UNIT(t_node_cap),
          UNIT(t_documents), UNIT(t_errors), UNIT(t_json_to_yaml), UNIT(t_round_trip_corpus),
          UNIT(t_round_trip_tricky))
