/*
 * validate_test.c - schema validation, defaulting, pruning, names and metadata maps.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kubelite/openapi.h"
#include "tests/kubelite/validate.h"
#include "tests/unit/unit.h"

/* JSON with ' for " (test literals only; no apostrophes in the data). */
static json_t *J(const char *text)
{
    char *s = strdup(text);
    json_error_t err;
    json_t *v;

    REQUIRE(s);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    v = json_loads(s, JSON_DECODE_ANY, &err);
    if (!v)
        fprintf(stderr, "  bad test JSON: %s: %s\n", err.text, s);
    REQUIRE(v);
    free(s);
    return v;
}

/* Causes as "field|reason|message" lines. */
static char *render(const json_t *causes)
{
    size_t i, len = 0;
    json_t *c;
    char *out = calloc(1, 1);

    REQUIRE(out);
    json_array_foreach(causes, i, c)
    {
        const char *f = json_string_value(json_object_get(c, "field"));
        const char *r = json_string_value(json_object_get(c, "reason"));
        const char *m = json_string_value(json_object_get(c, "message"));
        size_t add;

        REQUIRE(f && r && m && json_object_size(c) == 3);
        add = strlen(f) + strlen(r) + strlen(m) + 4;
        out = realloc(out, len + add);
        REQUIRE(out);
        len += (size_t)snprintf(out + len, add, "%s|%s|%s\n", f, r, m);
    }
    return out;
}

static char *render_strings(const json_t *arr)
{
    size_t i, len = 0;
    json_t *s;
    char *out = calloc(1, 1);

    REQUIRE(out);
    json_array_foreach(arr, i, s)
    {
        const char *v = json_string_value(s);
        size_t add;
        REQUIRE(v);
        add = strlen(v) + 2;
        out = realloc(out, len + add);
        REQUIRE(out);
        len += (size_t)snprintf(out + len, add, "%s\n", v);
    }
    return out;
}

/* Validate (flags) and compare rc and the rendered causes. */
static void expect(const struct openapi *oa, const json_t *schema, json_t *obj, unsigned flags,
                   int want_rc, const char *want)
{
    json_t *causes = json_array();
    char *got;
    int rc;

    REQUIRE(causes);
    rc = validate_object(oa, schema, obj, flags, causes, NULL);
    got = render(causes);
    CHECK_INT(rc, want_rc);
    CHECK_STR(got, want);
    free(got);
    json_decref(causes);
}

/* One-shot: schema and object given as JSON text, no flags. */
static void expect_text(const char *schema, const char *obj, const char *want)
{
    json_t *s = J(schema), *o = J(obj);
    expect(NULL, s, o, 0, want[0] ? ERR_INVALID : 0, want);
    json_decref(s);
    json_decref(o);
}

/* Schema {spec: {x: <prop>}} */
static json_t *spec_schema(const char *prop)
{
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{'type':'object','properties':{'spec':{'type':'object','properties':{'x':%s}}}}",
             prop);
    return J(buf);
}

static void expect_x(const char *prop, const char *value, const char *want)
{
    char buf[4096];
    json_t *s = spec_schema(prop), *o;

    snprintf(buf, sizeof(buf), "{'spec':{'x':%s}}", value);
    o = J(buf);
    expect(NULL, s, o, 0, want[0] ? ERR_INVALID : 0, want);
    json_decref(s);
    json_decref(o);
}

static struct openapi *load_oa(void)
{
    struct openapi *oa = NULL;
    int rc = openapi_load_dir("tests/kubelite/openapi", &oa);
    CHECK_INT(rc, 0);
    REQUIRE(oa);
    return oa;
}

/* ---- types ------------------------------------------------------------------------------ */

static void t_type_errors(void)
{
    expect_text("{'type':'object','properties':{'spec':{'type':'object','properties':{"
                "'replicas':{'type':'integer'}}}}}",
                "{'spec':{'replicas':'3'}}",
                "spec.replicas|FieldValueTypeInvalid|Invalid value: \"string\": spec.replicas in "
                "body must be of type integer: \"string\"\n");
    expect_x("{'type':'string'}", "true",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"boolean\": spec.x in body must be of "
             "type string: \"boolean\"\n");
    expect_x("{'type':'string'}", "{'a':1}",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"object\": spec.x in body must be of "
             "type string: \"object\"\n");
    expect_x("{'type':'object'}", "[1]",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"array\": spec.x in body must be of "
             "type object: \"array\"\n");
    expect_x("{'type':'integer'}", "1.5",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"number\": spec.x in body must be of "
             "type integer: \"number\"\n");
    expect_x("{'type':'integer'}", "2.0", ""); /* an integral float is an integer */
    expect_x("{'type':'number'}", "7", "");    /* number accepts integers */
    expect_x("{'type':'boolean'}", "false", "");
    expect_x("{'type':'array'}", "[]", "");
    /* the top level itself: kube-openapi's root path is empty, apiextensions prints <nil> */
    expect_text("{'type':'object'}", "[]",
                "<nil>|FieldValueTypeInvalid|Invalid value: \"array\":  in body must be of type "
                "object: \"array\"\n");
}

static void t_nullable(void)
{
    expect_x("{'type':'string'}", "null",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"null\": spec.x in body must be of "
             "type string: \"null\"\n");
    expect_x("{'type':'string','nullable':true}", "null", "");
    expect_x("{'type':'object','nullable':true,'properties':{'a':{'type':'string'}}}", "null", "");
    /* nulls inside arrays are values like any other */
    expect_x("{'type':'array','items':{'type':'integer'}}", "[1,null]",
             "spec.x[1]|FieldValueTypeInvalid|Invalid value: \"null\": spec.x[1] in body must be "
             "of type integer: \"null\"\n");
    /* a nullable enum must list null itself (a real kube-openapi quirk) */
    expect_x("{'type':'string','nullable':true,'enum':['a']}", "null",
             "spec.x|FieldValueNotSupported|Unsupported value: \"null\": supported values: "
             "\"a\"\n");
}

static void t_nulls_pruned_and_defaulted(void)
{
    json_t *s = J("{'type':'object','properties':{'spec':{'type':'object','properties':{"
                  "'a':{'type':'string'},'b':{'type':'string','default':'B'},"
                  "'c':{'type':'string','nullable':true,'default':'C'}}}}}");
    json_t *o = J("{'spec':{'a':null,'b':null,'c':null}}");
    char *dump;

    /* structural defaulting: drop the null a, default the null b, keep the nullable c */
    expect(NULL, s, o, VALIDATE_PRUNE | VALIDATE_DEFAULTS, 0, "");
    dump = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(dump, "{\"spec\":{\"b\":\"B\",\"c\":null}}");
    free(dump);
    json_decref(o);
    json_decref(s);
}

static void t_int_or_string(void)
{
    const char *p = "{'x-kubernetes-int-or-string':true,'anyOf':[{'type':'integer'},"
                    "{'type':'string'}]}";
    expect_x(p, "80", "");
    expect_x(p, "'http'", "");
    expect_x(p, "true",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"boolean\": spec.x in body must be of "
             "type integer,string: \"boolean\"\n"
             "<nil>|FieldValueInvalid|Invalid value: \"\": \"spec.x\" must validate at least one "
             "schema (anyOf)\n"
             "spec.x|FieldValueTypeInvalid|Invalid value: \"boolean\": spec.x in body must be of "
             "type integer: \"boolean\"\n");
    expect_x("{'x-kubernetes-int-or-string':true}", "1.5",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"number\": spec.x in body must be of "
             "type integer,string: \"number\"\n");
}

/* ---- values ----------------------------------------------------------------------------- */

static void t_enum(void)
{
    const char *p = "{'type':'string','enum':['Allow','Deny','Audit']}";
    expect_x(p, "'Deny'", "");
    expect_x(p, "'Maybe'",
             "spec.x|FieldValueNotSupported|Unsupported value: \"Maybe\": supported values: "
             "\"Allow\", \"Deny\", \"Audit\"\n");
    /* Go's %q escaping of the bad value */
    expect_x(p, "'a\\\\\\\"b\\n\\u0001'",
             "spec.x|FieldValueNotSupported|Unsupported value: \"a\\\\\\\"b\\n\\x01\": "
             "supported values: \"Allow\", \"Deny\", \"Audit\"\n");
    /* non-string values: JSON, then quoted */
    expect_x("{'type':'integer','enum':[1,2,3.0]}", "2", "");
    expect_x("{'type':'integer','enum':[1,2,3.0]}", "3", "");
    expect_x("{'type':'integer','enum':[1,2.5,{'a':1}]}", "5",
             "spec.x|FieldValueNotSupported|Unsupported value: 5: supported values: \"1\", "
             "\"2.5\", \"{\\\"a\\\":1}\"\n");
}

static void t_required(void)
{
    expect_text("{'type':'object','properties':{'spec':{'type':'object','required':['service',"
                "'backends'],'properties':{'service':{'type':'string'},'backends':{'type':"
                "'array'}}}}}",
                "{'spec':{}}",
                "spec.service|FieldValueRequired|Required value\n"
                "spec.backends|FieldValueRequired|Required value\n");
    /* required at the top level: no leading dot in the field */
    expect_text("{'type':'object','required':['spec'],'properties':{'spec':{'type':'object'}}}",
                "{}", "spec|FieldValueRequired|Required value\n");
    /* apiVersion, kind and metadata at the top are the caller's */
    expect_text("{'type':'object','required':['metadata','kind'],'properties':{}}", "{}", "");
}

static void t_numbers(void)
{
    expect_x("{'type':'integer','minimum':0,'maximum':1000000}", "2000000",
             "spec.x|FieldValueInvalid|Invalid value: 2000000: spec.x in body should be less "
             "than or equal to 1000000\n");
    expect_x("{'type':'integer','minimum':0,'maximum':1000000}", "-1",
             "spec.x|FieldValueInvalid|Invalid value: -1: spec.x in body should be greater than "
             "or equal to 0\n");
    expect_x("{'type':'integer','minimum':0,'maximum':1000000}", "1000000", "");
    expect_x("{'type':'integer','minimum':0,'exclusiveMinimum':true,'maximum':10,"
             "'exclusiveMaximum':true}",
             "10",
             "spec.x|FieldValueInvalid|Invalid value: 10: spec.x in body should be less than "
             "10\n");
    expect_x("{'type':'integer','minimum':0,'exclusiveMinimum':true}", "0",
             "spec.x|FieldValueInvalid|Invalid value: 0: spec.x in body should be greater than "
             "0\n");
    /* floats print as Go's %v prints a float64 */
    expect_x("{'type':'number','maximum':1}", "1.5",
             "spec.x|FieldValueInvalid|Invalid value: 1.5: spec.x in body should be less than or "
             "equal to 1\n");
    expect_x("{'type':'number','maximum':1000000}", "2500000.5",
             "spec.x|FieldValueInvalid|Invalid value: 2.5000005e+06: spec.x in body should be "
             "less than or equal to 1e+06\n");
    expect_x("{'type':'number','minimum':0.25}", "0.0001",
             "spec.x|FieldValueInvalid|Invalid value: 0.0001: spec.x in body should be greater "
             "than or equal to 0.25\n");
    expect_x("{'type':'integer','multipleOf':5}", "12",
             "spec.x|FieldValueInvalid|Invalid value: 12: spec.x in body should be a multiple of "
             "5\n");
    expect_x("{'type':'integer','multipleOf':5}", "15", "");
    expect_x("{'type':'number','multipleOf':0.5}", "1.25",
             "spec.x|FieldValueInvalid|Invalid value: 1.25: spec.x in body should be a multiple "
             "of 0.5\n");
    /* order as kube-openapi: multipleOf, minimum, maximum */
    expect_x("{'type':'integer','multipleOf':2,'minimum':10,'maximum':0}", "5",
             "spec.x|FieldValueInvalid|Invalid value: 5: spec.x in body should be a multiple of "
             "2\n"
             "spec.x|FieldValueInvalid|Invalid value: 5: spec.x in body should be greater than or "
             "equal to 10\n"
             "spec.x|FieldValueInvalid|Invalid value: 5: spec.x in body should be less than or "
             "equal to 0\n");
}

static void t_strings(void)
{
    expect_x("{'type':'string','pattern':'^[a-z]+$'}", "'Bad_Name'",
             "spec.x|FieldValueInvalid|Invalid value: \"Bad_Name\": spec.x in body should match "
             "'^[a-z]+$'\n");
    expect_x("{'type':'string','maxLength':63}",
             "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'",
             "spec.x|FieldValueTooLong|Too long: may not be more than 63 bytes\n");
    expect_x("{'type':'string','maxLength':1}", "'ab'",
             "spec.x|FieldValueTooLong|Too long: may not be more than 1 byte\n");
    /* lengths are in runes */
    expect_x("{'type':'string','maxLength':3}", "'\\u00e9\\u00e9\\u00e9'", "");
    expect_x("{'type':'string','minLength':3}", "'ab'",
             "spec.x|FieldValueInvalid|Invalid value: \"ab\": spec.x in body should be at least 3 "
             "chars long\n");
    /* only the first string failure is reported */
    expect_x("{'type':'string','maxLength':2,'pattern':'^[0-9]+$'}", "'abc'",
             "spec.x|FieldValueTooLong|Too long: may not be more than 2 bytes\n");
}

static bool pattern_ok(const char *pattern, const char *value)
{
    json_t *s = json_pack("{s:s,s:{s:{s:s,s:s}}}", "type", "object", "properties", "x", "type",
                          "string", "pattern", pattern);
    json_t *o = json_pack("{s:s}", "x", value);
    int rc;

    REQUIRE(s && o);
    rc = validate_object(NULL, s, o, 0, NULL, NULL);
    json_decref(s);
    json_decref(o);
    CHECK(rc == 0 || rc == ERR_INVALID);
    return rc == 0;
}

static void t_patterns(void)
{
    CHECK(pattern_ok("^\\d{1,3}(\\.\\d{1,3}){3}$", "10.0.0.1"));
    CHECK(!pattern_ok("^\\d{1,3}(\\.\\d{1,3}){3}$", "10.0.0x1"));
    CHECK(!pattern_ok("^\\d+$", "12a"));
    CHECK(pattern_ok("^\\w+$", "ab_C9"));
    CHECK(!pattern_ok("^\\w+$", "ab-c"));
    CHECK(pattern_ok("^\\S+\\s\\S+$", "a b"));
    CHECK(!pattern_ok("^\\S+\\s\\S+$", "a  b"));
    CHECK(pattern_ok("^(?:/[^/]+)+$", "/api/v1"));
    CHECK(!pattern_ok("^(?:/[^/]+)+$", "/api//v1"));
    CHECK(pattern_ok("^[\\w.-]+$", "my.name-1_x"));
    CHECK(!pattern_ok("^[\\w.-]+$", "my name"));
    CHECK(pattern_ok("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "my-svc"));
    CHECK(!pattern_ok("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "-svc"));
    CHECK(pattern_ok("^[^\\]]+$", "abc"));
    CHECK(!pattern_ok("^[^\\]]+$", "a]c"));
    CHECK(pattern_ok("^[\\d\\-+]+$", "+1-2"));
    CHECK(!pattern_ok("^[\\d\\-+]+$", "1*2"));
    CHECK(pattern_ok("^a.*?b$", "axxb"));
    CHECK(pattern_ok("^\\$\\{[A-Z_]+\\}$", "${HOME_DIR}"));
    CHECK(!pattern_ok("^\\$\\{[A-Z_]+\\}$", "$HOME"));
    CHECK(pattern_ok("^(?P<scheme>https?)://", "https://x"));
    CHECK(!pattern_ok("^(?P<scheme>https?)://", "ftp://x"));
    CHECK(pattern_ok("[\\^]", "a^b"));
    CHECK(!pattern_ok("[\\^]", "ab"));
    CHECK(pattern_ok("^\\/x\\/$", "/x/"));
    /* unanchored patterns search, as Go's MatchString does */
    CHECK(pattern_ok("[0-9]", "abc1"));
    /* constructs POSIX cannot express are not enforced rather than misapplied */
    CHECK(pattern_ok("^(?!foo).*$", "foo"));
    CHECK(pattern_ok("^\\p{L}+$", "123"));
}

static void t_formats(void)
{
    const char *dt = "{'type':'string','format':'date-time'}";
    expect_x(dt, "'2024-05-01T12:00:00Z'", "");
    expect_x(dt, "'2024-05-01T12:00:00.123456Z'", "");
    expect_x(dt, "'2024-05-01T12:00:00+02:00'", "");
    expect_x(dt, "'2024-05-01 12:00'",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"2024-05-01 12:00\": spec.x in body "
             "must be of type date-time: \"2024-05-01 12:00\"\n");
    expect_x(dt, "'2024-13-01T12:00:00Z'",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"2024-13-01T12:00:00Z\": spec.x in "
             "body must be of type date-time: \"2024-13-01T12:00:00Z\"\n");
    expect_x("{'type':'string','format':'byte'}", "'aGVsbG8='", "");
    expect_x("{'type':'string','format':'byte'}", "'aGVsbG8'",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"aGVsbG8\": spec.x in body must be of "
             "type byte: \"aGVsbG8\"\n");
    expect_x("{'type':'string','format':'date'}", "'2024-02-30x'",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"2024-02-30x\": spec.x in body must be "
             "of type date: \"2024-02-30x\"\n");
    /* unknown formats are not enforced */
    expect_x("{'type':'string','format':'hostname-ish'}", "'!!'", "");
    /* kube-openapi's type check with a format and the wrong kind of value */
    expect_x("{'type':'integer','format':'int32'}", "true",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"\": spec.x in body must be of type "
             "int32: \"\"\n");
    expect_x("{'type':'integer','format':'int32'}", "'5'",
             "spec.x|FieldValueTypeInvalid|Invalid value: \"string\": spec.x in body must be of "
             "type integer: \"string\"\n");
    expect_x("{'type':'integer','format':'int32'}", "2147483647", "");
    expect_x("{'type':'integer','format':'int32'}", "2147483648",
             "spec.x|FieldValueInvalid|Invalid value: 2147483648: spec.x in body should be less "
             "than or equal to 2147483647\n");
    expect_x("{'type':'integer','format':'int64'}", "2147483648", "");
}

/* ---- arrays and objects ----------------------------------------------------------------- */

static void t_arrays(void)
{
    const char *p = "{'type':'array','minItems':1,'maxItems':2,'items':{'type':'integer',"
                    "'maximum':5}}";
    expect_x(p, "[1,9]",
             "spec.x[1]|FieldValueInvalid|Invalid value: 9: spec.x[1] in body should be less than "
             "or equal to 5\n");
    expect_x(p, "[]",
             "spec.x|FieldValueInvalid|Invalid value: 0: spec.x in body should have at least 1 "
             "items\n");
    expect_x(p, "[1,2,'a']",
             "spec.x[2]|FieldValueTypeInvalid|Invalid value: \"string\": spec.x[2] in body must "
             "be of type integer: \"string\"\n"
             "spec.x|FieldValueTooMany|Too many: 3: must have at most 2 items\n");
    expect_x("{'type':'array','maxItems':1}", "[1,2]",
             "spec.x|FieldValueTooMany|Too many: 2: must have at most 1 item\n");
    expect_x("{'type':'array','uniqueItems':true}", "[1,{'a':1},{'a':1}]",
             "spec.x|FieldValueInvalid|Invalid value: \"\": spec.x in body shouldn't contain "
             "duplicates\n");
    expect_x("{'type':'array','uniqueItems':true}", "[1,1.0,'1']", "");
}

static void t_objects(void)
{
    expect_x("{'type':'object','minProperties':1}", "{}",
             "spec.x|FieldValueInvalid|Invalid value: 0: spec.x in body should have at least 1 "
             "properties\n");
    /* too many properties stops the object's other checks */
    expect_x("{'type':'object','maxProperties':2,'required':['z']}", "{'a':1,'b':2,'c':3}",
             "spec.x|FieldValueTooMany|Too many: 3: must have at most 2 items\n");
    expect_x("{'type':'object','additionalProperties':{'type':'string'}}", "{'a':'1','b':2}",
             "spec.x.b|FieldValueTypeInvalid|Invalid value: \"integer\": spec.x.b in body must be "
             "of type string: \"integer\"\n");
    expect_x("{'type':'object','properties':{'a':{'type':'string'}},'additionalProperties':false}",
             "{'a':'1','b':2}",
             "spec.x|FieldValueInvalid|Invalid value: \"b\": spec.x.b in body is a forbidden "
             "property\n");
    /* embedded resources need apiVersion and kind */
    expect_x("{'type':'object','x-kubernetes-embedded-resource':true,"
             "'x-kubernetes-preserve-unknown-fields':true}",
             "{'metadata':{'name':'a'}}",
             "spec.x.apiVersion|FieldValueRequired|Required value: must not be empty\n"
             "spec.x.kind|FieldValueRequired|Required value: must not be empty\n");
}

static void t_composites(void)
{
    const char *one = "{'oneOf':[{'required':['a']},{'required':['b']}]}";
    expect_x(one, "{'a':1}", "");
    expect_x(one, "{'a':1,'b':2}",
             "<nil>|FieldValueInvalid|Invalid value: \"\": \"spec.x\" must validate one and only "
             "one schema (oneOf). Found 2 valid alternatives\n");
    expect_x(one, "{}",
             "<nil>|FieldValueInvalid|Invalid value: \"\": \"spec.x\" must validate one and only "
             "one schema (oneOf). Found none valid\n"
             "spec.x.a|FieldValueRequired|Required value\n");
    expect_x("{'allOf':[{'minimum':1},{'maximum':3}]}", "5",
             "spec.x|FieldValueInvalid|Invalid value: 5: spec.x in body should be less than or "
             "equal to 3\n"
             "<nil>|FieldValueInvalid|Invalid value: \"\": \"spec.x\" must validate all the "
             "schemas (allOf)\n");
    expect_x("{'allOf':[{'minimum':10},{'maximum':3}]}", "5",
             "spec.x|FieldValueInvalid|Invalid value: 5: spec.x in body should be greater than or "
             "equal to 10\n"
             "spec.x|FieldValueInvalid|Invalid value: 5: spec.x in body should be less than or "
             "equal to 3\n"
             "<nil>|FieldValueInvalid|Invalid value: \"\": \"spec.x\" must validate all the "
             "schemas (allOf). None validated\n");
    expect_x("{'not':{'type':'string'}}", "'s'",
             "<nil>|FieldValueInvalid|Invalid value: \"\": \"spec.x\" must not validate the "
             "schema (not)\n");
    expect_x("{'not':{'type':'string'}}", "1", "");
}

/* ---- a TrafficSplit-like CRD ------------------------------------------------------------- */

static const char *ts_schema_text =
    "{'type':'object','properties':{"
    " 'apiVersion':{'type':'string'},'kind':{'type':'string'},'metadata':{'type':'object'},"
    " 'spec':{'type':'object','required':['service','backends'],'properties':{"
    "  'service':{'type':'string','maxLength':63,'pattern':'^[a-z]([-a-z0-9]*[a-z0-9])?$'},"
    "  'action':{'type':'string','enum':['Allow','Deny','Audit'],'default':'Allow'},"
    "  'replicas':{'type':'integer','format':'int32'},"
    "  'backends':{'type':'array','minItems':1,'maxItems':16,'items':{"
    "   'type':'object','required':['service'],'properties':{"
    "    'service':{'type':'string'},"
    "    'weight':{'type':'integer','minimum':0,'maximum':1000000,'default':1}}}},"
    "  'matches':{'type':'array','items':{'type':'object','properties':{"
    "   'path':{'type':'object','default':{},'properties':{"
    "    'type':{'type':'string','enum':['Exact','PathPrefix','RegularExpression'],"
    "            'default':'PathPrefix'},"
    "    'value':{'type':'string','default':'/'}}},"
    "   'headers':{'type':'object','additionalProperties':{'type':'string'}}}}},"
    "  'timeout':{'type':'string','nullable':true},"
    "  'extra':{'type':'object','x-kubernetes-preserve-unknown-fields':true}}},"
    " 'status':{'type':'object','x-kubernetes-preserve-unknown-fields':true}}}";

static void t_trafficsplit_defaults_and_pruning(void)
{
    json_t *s = J(ts_schema_text);
    json_t *o = J("{'apiVersion':'split.weft.io/v1','kind':'TrafficSplit',"
                  "'metadata':{'name':'a','bogus':1},"
                  "'spec':{'service':'web','typo':true,"
                  " 'backends':[{'service':'v1'},{'service':'v2','weight':0,'wieght':5}],"
                  " 'matches':[{},{'path':{'type':'Exact'},'headers':{'x':'y'},'hdrs':{}}],"
                  " 'timeout':null,'extra':{'anything':{'goes':[1]}}},"
                  "'status':{'free':'form'},'junk':[]}");
    json_t *causes = json_array(), *unknown = json_array();
    char *got;
    int rc;

    REQUIRE(causes && unknown);
    rc = validate_object(NULL, s, o, VALIDATE_DEFAULTS | VALIDATE_PRUNE, causes, unknown);
    CHECK_INT(rc, 0);
    CHECK_INT(json_array_size(causes), 0);
    got = render_strings(unknown);
    /* metadata's schema declares no properties: nothing under it is unknown here */
    CHECK_STR(got, ".spec.typo\n"
                   ".spec.backends[1].wieght\n"
                   ".spec.matches[1].hdrs\n"
                   ".junk\n");
    free(got);
    got = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(got, "{\"apiVersion\":\"split.weft.io/v1\",\"kind\":\"TrafficSplit\","
                   "\"metadata\":{\"bogus\":1,\"name\":\"a\"},"
                   "\"spec\":{\"action\":\"Allow\",\"backends\":[{\"service\":\"v1\",\"weight\":1},"
                   "{\"service\":\"v2\",\"weight\":0}],\"extra\":{\"anything\":{\"goes\":[1]}},"
                   "\"matches\":[{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/\"}},"
                   "{\"headers\":{\"x\":\"y\"},\"path\":{\"type\":\"Exact\",\"value\":\"/\"}}],"
                   "\"service\":\"web\",\"timeout\":null},"
                   "\"status\":{\"free\":\"form\"}}");
    free(got);
    json_decref(o);
    json_decref(causes);
    json_decref(unknown);

    /* without the flags: nothing changes, unknown fields are still reported */
    o = J("{'spec':{'service':'web','backends':[{'service':'v1','x':1}]}}");
    unknown = json_array();
    REQUIRE(unknown);
    rc = validate_object(NULL, s, o, 0, NULL, unknown);
    CHECK_INT(rc, 0);
    got = render_strings(unknown);
    CHECK_STR(got, ".spec.backends[0].x\n");
    free(got);
    got = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(got, "{\"spec\":{\"backends\":[{\"service\":\"v1\",\"x\":1}],\"service\":\"web\"}}");
    free(got);
    json_decref(unknown);
    json_decref(o);
    json_decref(s);
}

static void t_trafficsplit_every_cause(void)
{
    json_t *s = J(ts_schema_text);
    char text[8192];
    size_t n;
    json_t *o;

    /* 17 backends: the second misses service, the third weighs too much */
    n = (size_t)snprintf(text, sizeof(text),
                         "{'spec':{'service':'Web_Service_With_A_Name_That_Is_Far_Too_Long_For_"
                         "The_Limit_xxxxx','action':'Maybe','replicas':'3','backends':[");
    for (int i = 0; i < 17; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", i ? "," : "",
                              i == 1   ? "{'weight':5}"
                              : i == 2 ? "{'service':'b','weight':2000000}"
                                       : "{'service':'b'}");
    snprintf(text + n, sizeof(text) - n,
             "],'matches':[{'path':{'type':'Glob'}},{'headers':{'h':1}}],'timeout':5}}");
    o = J(text);
    expect(NULL, s, o, VALIDATE_DEFAULTS | VALIDATE_PRUNE, ERR_INVALID,
           "spec.service|FieldValueTooLong|Too long: may not be more than 63 bytes\n"
           "spec.action|FieldValueNotSupported|Unsupported value: \"Maybe\": supported values: "
           "\"Allow\", \"Deny\", \"Audit\"\n"
           "spec.replicas|FieldValueTypeInvalid|Invalid value: \"string\": spec.replicas in body "
           "must be of type integer: \"string\"\n"
           "spec.backends[1].service|FieldValueRequired|Required value\n"
           "spec.backends[2].weight|FieldValueInvalid|Invalid value: 2000000: "
           "spec.backends[2].weight in body should be less than or equal to 1000000\n"
           "spec.backends|FieldValueTooMany|Too many: 17: must have at most 16 items\n"
           "spec.matches[0].path.type|FieldValueNotSupported|Unsupported value: \"Glob\": "
           "supported values: \"Exact\", \"PathPrefix\", \"RegularExpression\"\n"
           "spec.matches[1].headers.h|FieldValueTypeInvalid|Invalid value: \"integer\": "
           "spec.matches[1].headers.h in body must be of type string: \"integer\"\n"
           "spec.timeout|FieldValueTypeInvalid|Invalid value: \"integer\": spec.timeout in body "
           "must be of type string: \"integer\"\n");
    json_decref(o);

    /* the pattern, and the required list of spec */
    o = J("{'spec':{'service':'Bad_Name'}}");
    expect(NULL, s, o, 0, ERR_INVALID,
           "spec.service|FieldValueInvalid|Invalid value: \"Bad_Name\": spec.service in body "
           "should match '^[a-z]([-a-z0-9]*[a-z0-9])?$'\n"
           "spec.backends|FieldValueRequired|Required value\n");
    json_decref(o);
    o = J("{'spec':{'service':'web','backends':[]}}");
    expect(NULL, s, o, 0, ERR_INVALID,
           "spec.backends|FieldValueInvalid|Invalid value: 0: spec.backends in body should have "
           "at least 1 items\n");
    json_decref(o);
    json_decref(s);
}

/* ---- built-in kinds against the official schemas ----------------------------------------- */

static const char *deployment_text =
    "{'apiVersion':'apps/v1','kind':'Deployment','metadata':{'name':'web','namespace':'default',"
    " 'labels':{'app':'web'},'annotations':{'deployment.kubernetes.io/revision':'1'},"
    " 'creationTimestamp':'2024-05-01T12:00:00Z','generation':1,'uid':'5f0c-11',"
    " 'resourceVersion':'42'},"
    "'spec':{'replicas':3,'revisionHistoryLimit':10,'progressDeadlineSeconds':600,"
    " 'selector':{'matchLabels':{'app':'web'},'matchExpressions':[{'key':'tier','operator':'In',"
    "  'values':['front']}]},"
    " 'strategy':{'type':'RollingUpdate','rollingUpdate':{'maxSurge':'25%','maxUnavailable':1}},"
    " 'template':{'metadata':{'labels':{'app':'web','tier':'front'},"
    "  'annotations':{'weft.io/inject':'true'}},"
    "  'spec':{'serviceAccountName':'web','terminationGracePeriodSeconds':30,"
    "   'nodeSelector':{'kubernetes.io/os':'linux'},"
    "   'tolerations':[{'key':'k','operator':'Exists','effect':'NoSchedule'}],"
    "   'volumes':[{'name':'cfg','configMap':{'name':'web-cfg','defaultMode':420}},"
    "    {'name':'tmp','emptyDir':{'sizeLimit':'64Mi'}}],"
    "   'containers':[{'name':'web','image':'nginx:1.27','imagePullPolicy':'IfNotPresent',"
    "    'args':['--port','8080'],"
    "    'ports':[{'name':'http','containerPort':8080,'protocol':'TCP'}],"
    "    'env':[{'name':'A','value':'b'},{'name':'POD','valueFrom':{'fieldRef':"
    "     {'fieldPath':'metadata.name'}}}],"
    "    'resources':{'requests':{'cpu':'100m','memory':'128Mi'},'limits':{'cpu':1}},"
    "    'readinessProbe':{'httpGet':{'path':'/healthz','port':'http'},'periodSeconds':5},"
    "    'livenessProbe':{'tcpSocket':{'port':8080},'initialDelaySeconds':3},"
    "    'volumeMounts':[{'name':'cfg','mountPath':'/etc/web','readOnly':true}],"
    "    'securityContext':{'runAsNonRoot':true,'runAsUser':1000,"
    "     'capabilities':{'drop':['ALL']}}}]}}},"
    "'status':{'replicas':3,'readyReplicas':3,'observedGeneration':1,"
    " 'conditions':[{'type':'Available','status':'True','lastUpdateTime':'2024-05-01T12:00:00Z',"
    "  'lastTransitionTime':'2024-05-01T12:00:00Z','reason':'MinimumReplicasAvailable',"
    "  'message':'ok'}]}}";

static const char *pod_text =
    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'web-0','namespace':'default',"
    " 'labels':{'app':'web'},'ownerReferences':[{'apiVersion':'apps/v1','kind':'ReplicaSet',"
    "  'name':'web-1','uid':'u1','controller':true,'blockOwnerDeletion':true}],"
    " 'managedFields':[{'manager':'kubectl','operation':'Apply','apiVersion':'v1',"
    "  'time':'2024-05-01T12:00:00Z','fieldsType':'FieldsV1','fieldsV1':{'f:metadata':{"
    "   'f:labels':{'.':{},'f:app':{}}}}}]},"
    "'spec':{'restartPolicy':'Always','dnsPolicy':'ClusterFirst','hostNetwork':false,"
    " 'initContainers':[{'name':'init','image':'busybox','command':['sh','-c','true']}],"
    " 'containers':[{'name':'app','image':'busybox:1.36','command':['sleep','3600'],"
    "  'ports':[{'containerPort':80}],'stdin':false,'tty':false,"
    "  'lifecycle':{'preStop':{'exec':{'command':['sleep','5']}}},"
    "  'startupProbe':{'exec':{'command':['true']},'failureThreshold':30}}],"
    " 'securityContext':{'fsGroup':2000,'seccompProfile':{'type':'RuntimeDefault'}},"
    " 'affinity':{'podAntiAffinity':{'preferredDuringSchedulingIgnoredDuringExecution':["
    "  {'weight':100,'podAffinityTerm':{'topologyKey':'kubernetes.io/hostname',"
    "   'labelSelector':{'matchLabels':{'app':'web'}}}}]}}},"
    "'status':{'phase':'Running','podIP':'10.0.0.5','podIPs':[{'ip':'10.0.0.5'}],"
    " 'startTime':'2024-05-01T12:00:00Z','containerStatuses':[{'name':'app','ready':true,"
    "  'restartCount':0,'image':'busybox:1.36','imageID':'sha256:x','started':true,"
    "  'state':{'running':{'startedAt':'2024-05-01T12:00:01Z'}}}]}}";

static void check_clean(const struct openapi *oa, const char *group, const char *version,
                        const char *kind, const char *text)
{
    const json_t *schema = openapi_gvk_schema(oa, group, version, kind);
    json_t *o = J(text), *causes = json_array(), *unknown = json_array();
    json_t *orig = json_deep_copy(o);
    char *got;
    int rc;

    REQUIRE(schema && causes && unknown && orig);
    rc = validate_object(oa, schema, o, VALIDATE_PRUNE, causes, unknown);
    CHECK_INT(rc, 0);
    got = render(causes);
    CHECK_STR(got, "");
    free(got);
    got = render_strings(unknown);
    CHECK_STR(got, "");
    free(got);
    CHECK(json_equal(o, orig)); /* nothing pruned */
    json_decref(orig);
    json_decref(o);
    json_decref(causes);
    json_decref(unknown);
}

static void t_builtin_clean(void)
{
    struct openapi *oa = load_oa();
    check_clean(oa, "apps", "v1", "Deployment", deployment_text);
    check_clean(oa, "", "v1", "Pod", pod_text);
    check_clean(oa, "", "v1", "Service",
                "{'apiVersion':'v1','kind':'Service','metadata':{'name':'web'},"
                "'spec':{'selector':{'app':'web'},'ports':[{'name':'http','port':80,"
                "'targetPort':'http'},{'name':'m','port':9090,'targetPort':9090}]}}");
    check_clean(oa, "", "v1", "Secret",
                "{'apiVersion':'v1','kind':'Secret','metadata':{'name':'s'},'type':'Opaque',"
                "'data':{'a':'aGVsbG8='},'stringData':{'b':'plain'}}");
    openapi_free(oa);
}

static void t_builtin_pod_typos(void)
{
    struct openapi *oa = load_oa();
    const json_t *schema = openapi_gvk_schema(oa, "", "v1", "Pod");
    json_t *o = J("{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','labelz':{}},"
                  "'spec':{'containers':[{'name':'a','imagee':'busybox','ports':[{"
                  "'containerPort':80,'hostPot':1}]},{'name':'b','image':'x','resources':{"
                  "'limit':{'cpu':1}}}],'restartPolicyy':'Never',"
                  "'nodeSelector':{'any':'thing'}},'statuss':{}}");
    json_t *causes = json_array(), *unknown = json_array();
    char *got;
    int rc;

    REQUIRE(schema && causes && unknown);
    rc = validate_object(oa, schema, o, VALIDATE_PRUNE, causes, unknown);
    CHECK_INT(rc, 0);
    got = render_strings(unknown);
    CHECK_STR(got, ".metadata.labelz\n"
                   ".spec.containers[0].imagee\n"
                   ".spec.containers[0].ports[0].hostPot\n"
                   ".spec.containers[1].resources.limit\n"
                   ".spec.restartPolicyy\n"
                   ".statuss\n");
    free(got);
    /* pruned, except in the top-level metadata, which the caller owns */
    got = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(got, "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"labelz\":{},"
                   "\"name\":\"p\"},\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":[{"
                   "\"containerPort\":80}]},{\"image\":\"x\",\"name\":\"b\",\"resources\":{}}],"
                   "\"nodeSelector\":{\"any\":\"thing\"}}}");
    free(got);
    json_decref(o);
    json_decref(causes);
    json_decref(unknown);
    openapi_free(oa);
}

static void t_builtin_errors(void)
{
    struct openapi *oa = load_oa();
    const json_t *pod = openapi_gvk_schema(oa, "", "v1", "Pod");
    const json_t *deploy = openapi_gvk_schema(oa, "apps", "v1", "Deployment");
    const json_t *svc = openapi_gvk_schema(oa, "", "v1", "Service");
    json_t *o;

    REQUIRE(pod && deploy && svc);
    o = J("{'spec':{}}");
    expect(oa, pod, o, 0, ERR_INVALID, "spec.containers|FieldValueRequired|Required value\n");
    json_decref(o);
    o = J("{'spec':{'containers':[{'image':'x','ports':[{'containerPort':'80'}]}]}}");
    expect(oa, pod, o, 0, ERR_INVALID,
           "spec.containers[0].ports[0].containerPort|FieldValueTypeInvalid|Invalid value: "
           "\"string\": spec.containers[0].ports[0].containerPort in body must be of type "
           "integer: \"string\"\n"
           "spec.containers[0].name|FieldValueRequired|Required value\n");
    json_decref(o);
    o = J("{'spec':{'replicas':'3','selector':{},'template':{'metadata':{'labels':{'a':1},"
          "'creationTimestamp':'yesterday'},'spec':{'containers':[{'name':'a'}]}}}}");
    expect(oa, deploy, o, 0, ERR_INVALID,
           "spec.replicas|FieldValueTypeInvalid|Invalid value: \"string\": spec.replicas in body "
           "must be of type integer: \"string\"\n"
           "spec.template.metadata.creationTimestamp|FieldValueTypeInvalid|Invalid value: "
           "\"yesterday\": spec.template.metadata.creationTimestamp in body must be of type "
           "date-time: \"yesterday\"\n"
           "spec.template.metadata.labels.a|FieldValueTypeInvalid|Invalid value: \"integer\": "
           "spec.template.metadata.labels.a in body must be of type string: \"integer\"\n");
    json_decref(o);
    /* nested ObjectMeta of a built-in is pruned like any other object */
    o = J("{'spec':{'selector':{},'template':{'metadata':{'labels':{'a':'b'},'labls':{}}}}}");
    {
        json_t *unknown = json_array();
        char *got;
        REQUIRE(unknown);
        CHECK_INT(validate_object(oa, deploy, o, VALIDATE_PRUNE, NULL, unknown), 0);
        got = render_strings(unknown);
        CHECK_STR(got, ".spec.template.metadata.labls\n");
        free(got);
        got = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        CHECK_STR(got, "{\"spec\":{\"selector\":{},\"template\":{\"metadata\":{\"labels\":{"
                       "\"a\":\"b\"}}}}}");
        free(got);
        json_decref(unknown);
    }
    json_decref(o);
    /* IntOrString, Quantity */
    o = J("{'spec':{'ports':[{'port':80,'targetPort':true}]}}");
    expect(oa, svc, o, 0, ERR_INVALID,
           "spec.ports[0].targetPort|FieldValueTypeInvalid|Invalid value: \"boolean\": "
           "spec.ports[0].targetPort in body must be of type integer,string: \"boolean\"\n");
    json_decref(o);
    o = J("{'spec':{'containers':[{'name':'a','resources':{'limits':{'cpu':'1','memory':1.5}}}]}}");
    expect(oa, pod, o, 0, 0, "");
    json_decref(o);
    o = J("{'data':{'a':'not base64!'}}");
    expect(oa, openapi_gvk_schema(oa, "", "v1", "Secret"), o, 0, ERR_INVALID,
           "data.a|FieldValueTypeInvalid|Invalid value: \"not base64!\": data.a in body must be "
           "of type byte: \"not base64!\"\n");
    json_decref(o);
    openapi_free(oa);
}

/* ---- robustness --------------------------------------------------------------------------- */

static void t_deep_nesting(void)
{
    struct openapi *oa = openapi_new();
    json_t *doc = J("{'components':{'schemas':{'Node':{'type':'object','properties':{"
                    "'child':{'$ref':'#/components/schemas/Node'},'v':{'type':'integer'}}}}}}");
    const json_t *node;
    json_t *root, *cur, *causes = json_array(), *unknown = json_array();
    int rc;

    REQUIRE(oa && causes && unknown);
    CHECK_INT(openapi_set_doc(oa, "apis/x/v1", doc), 0);
    node = openapi_schema(oa, "Node");
    REQUIRE(node);
    root = json_object();
    cur = root;
    for (int i = 0; i < 3000; i++) {
        json_t *next = json_object();
        REQUIRE(next);
        json_object_set_new(cur, "child", next);
        json_object_set_new(cur, "x", json_integer(i));
        cur = next;
    }
    rc = validate_object(oa, node, root, VALIDATE_PRUNE | VALIDATE_DEFAULTS, causes, unknown);
    CHECK_INT(rc, ERR_INVALID);
    CHECK_INT(json_array_size(causes), 1);
    CHECK_STR(json_string_value(json_object_get(json_array_get(causes, 0), "reason")),
              "FieldValueInvalid");
    CHECK(strstr(json_string_value(json_object_get(json_array_get(causes, 0), "message")),
                 "exceeded max depth") != NULL);
    CHECK(json_array_size(unknown) > 100); /* the x of each level up to the limit */
    json_decref(root);
    json_array_clear(causes);

    /* a shallow instance of the same recursive schema validates normally */
    root = J("{'child':{'child':{'v':'no'}}}");
    expect(oa, node, root, 0, ERR_INVALID,
           "child.child.v|FieldValueTypeInvalid|Invalid value: \"string\": child.child.v in body "
           "must be of type integer: \"string\"\n");
    json_decref(root);

    /* deep data under preserve-unknown-fields is not walked at all */
    root = J("{'spec':{}}");
    cur = json_object_get(root, "spec");
    for (int i = 0; i < 1500; i++) {
        json_t *next = json_array();
        REQUIRE(next);
        json_object_set_new(cur, "a", next);
        cur = json_object();
        json_array_append_new(next, cur);
    }
    {
        json_t *s = J("{'type':'object','properties':{'spec':{'type':'object',"
                      "'x-kubernetes-preserve-unknown-fields':true}}}");
        expect(NULL, s, root, VALIDATE_PRUNE, 0, "");
        json_decref(s);
    }
    json_decref(root);
    json_decref(causes);
    json_decref(unknown);
    openapi_free(oa);
}

static void t_large_input(void)
{
    json_t *s = J("{'type':'object','properties':{'items':{'type':'array','items':{'type':"
                  "'object','required':['n'],'properties':{'n':{'type':'integer','maximum':10},"
                  "'w':{'type':'integer','default':1},'s':{'type':'string','pattern':"
                  "'^[a-z]+\\\\d*$'}}}}}}");
    json_t *o = json_object(), *arr = json_array(), *causes = json_array();
    int rc;

    REQUIRE(s && o && arr && causes);
    json_object_set_new(o, "items", arr);
    for (int i = 0; i < 20000; i++)
        json_array_append_new(
            arr, json_pack("{s:i,s:s,s:i}", "n", i % 20, "s", i % 2 ? "abc12" : "ABC", "junk", i));
    rc = validate_object(NULL, s, o, VALIDATE_DEFAULTS | VALIDATE_PRUNE, causes, NULL);
    CHECK_INT(rc, ERR_INVALID);
    /* 9 of every 20 break the maximum, every other one the pattern */
    CHECK_INT(json_array_size(causes), 20000 / 20 * 9 + 10000);
    CHECK_INT(json_integer_value(json_object_get(json_array_get(arr, 19999), "w")), 1);
    CHECK(json_object_get(json_array_get(arr, 19999), "junk") == NULL);
    CHECK_STR(json_string_value(json_object_get(json_array_get(causes, 0), "field")), "items[0].s");
    json_decref(causes);
    json_decref(o);
    json_decref(s);
}

static void t_malformed(void)
{
    json_t *o = J("{'spec':{'a':1}}");
    json_t *causes = json_array();
    json_t *s;

    REQUIRE(causes);
    CHECK_INT(validate_object(NULL, NULL, NULL, 0, causes, NULL), -EINVAL);
    CHECK_INT(validate_object(NULL, NULL, o, 0, causes, NULL), 0);
    /* schemas of the wrong shape are tolerated */
    s = J("{'type':5,'properties':'x','items':[],'required':'spec','enum':{},"
          "'minimum':'0','pattern':7,'anyOf':{},'additionalProperties':3}");
    CHECK_INT(validate_object(NULL, s, o, VALIDATE_DEFAULTS | VALIDATE_PRUNE, causes, NULL), 0);
    CHECK(json_integer_value(json_object_get(json_object_get(o, "spec"), "a")) == 1);
    json_decref(s);
    /* an unresolvable $ref is not enforced (and needs no openapi set) */
    s = J("{'type':'object','properties':{'spec':{'$ref':'#/components/schemas/Nope'}}}");
    CHECK_INT(validate_object(NULL, s, o, VALIDATE_PRUNE, causes, NULL), 0);
    json_decref(s);
    /* a bad pattern is not enforced */
    s = J("{'type':'object','properties':{'spec':{'type':'object','properties':{'a':{"
          "'type':'integer'},'b':{'type':'string','pattern':'(['}}}}}");
    json_object_set_new(json_object_get(o, "spec"), "b", json_string("x"));
    CHECK_INT(validate_object(NULL, s, o, 0, causes, NULL), 0);
    /* causes == NULL still reports the failure */
    json_object_set_new(json_object_get(o, "spec"), "a", json_string("1"));
    CHECK_INT(validate_object(NULL, s, o, 0, NULL, NULL), ERR_INVALID);
    CHECK_INT(json_array_size(causes), 0);
    json_decref(s);
    json_decref(o);
    json_decref(causes);
}

/* ---- names and metadata ----------------------------------------------------------------- */

#define SUBDOMAIN_MSG                                                                              \
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "   \
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "  \
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
#define LABEL_MSG                                                                                  \
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "   \
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "     \
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"

static void t_names(void)
{
    char msg[1024], name[300];

    CHECK(validate_name("web-1.example.com", VALIDATE_NAME_SUBDOMAIN, msg, sizeof(msg)));
    CHECK_STR(msg, "");
    CHECK(!validate_name("Web", VALIDATE_NAME_SUBDOMAIN, msg, sizeof(msg)));
    CHECK_STR(msg, SUBDOMAIN_MSG);
    CHECK(!validate_name("a..b", VALIDATE_NAME_SUBDOMAIN, msg, sizeof(msg)));
    CHECK_STR(msg, SUBDOMAIN_MSG);
    CHECK(!validate_name("-a", VALIDATE_NAME_SUBDOMAIN, msg, sizeof(msg)));
    CHECK(!validate_name("", VALIDATE_NAME_SUBDOMAIN, msg, sizeof(msg)));
    memset(name, 'a', 254);
    name[254] = '\0';
    CHECK(!validate_name(name, VALIDATE_NAME_SUBDOMAIN, msg, sizeof(msg)));
    CHECK_STR(msg, "must be no more than 253 characters");
    name[253] = '\0';
    CHECK(validate_name(name, VALIDATE_NAME_SUBDOMAIN, msg, sizeof(msg)));
    name[253] = '-';
    name[254] = '\0';
    CHECK(!validate_name(name, VALIDATE_NAME_SUBDOMAIN, msg, sizeof(msg)));
    CHECK_STR(msg, "must be no more than 253 characters; " SUBDOMAIN_MSG);

    CHECK(validate_name("my-ns", VALIDATE_NAME_LABEL, msg, sizeof(msg)));
    CHECK(validate_name("123-abc", VALIDATE_NAME_LABEL, msg, sizeof(msg)));
    CHECK(!validate_name("My-ns", VALIDATE_NAME_LABEL, msg, sizeof(msg)));
    CHECK_STR(msg, LABEL_MSG);
    CHECK(!validate_name("a.b", VALIDATE_NAME_LABEL, msg, sizeof(msg)));
    CHECK_STR(msg, "must not contain dots");
    memset(name, 'a', 64);
    name[64] = '\0';
    CHECK(!validate_name(name, VALIDATE_NAME_LABEL, msg, sizeof(msg)));
    CHECK_STR(msg, "must be no more than 63 characters");

    CHECK(validate_name("system:admin", VALIDATE_NAME_PATH, msg, sizeof(msg)));
    CHECK(validate_name("Any_Thing", VALIDATE_NAME_PATH, msg, sizeof(msg)));
    CHECK(!validate_name(".", VALIDATE_NAME_PATH, msg, sizeof(msg)));
    CHECK_STR(msg, "may not be '.'");
    CHECK(!validate_name("..", VALIDATE_NAME_PATH, msg, sizeof(msg)));
    CHECK_STR(msg, "may not be '..'");
    CHECK(!validate_name("a/b", VALIDATE_NAME_PATH, msg, sizeof(msg)));
    CHECK_STR(msg, "may not contain '/'");
    CHECK(!validate_name("a%b/c", VALIDATE_NAME_PATH, msg, sizeof(msg)));
    CHECK_STR(msg, "may not contain '/'; may not contain '%'");

    /* a short buffer truncates and stays terminated; NULL msg is allowed */
    CHECK(!validate_name("Web", VALIDATE_NAME_SUBDOMAIN, msg, 10));
    CHECK_STR(msg, "a lowerca");
    CHECK(!validate_name("Web", VALIDATE_NAME_SUBDOMAIN, NULL, 0));
    CHECK(!validate_name(NULL, VALIDATE_NAME_LABEL, NULL, 0));
}

#define QNAME_MSG                                                                                  \
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "    \
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "         \
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"

static void t_metadata_maps(void)
{
    json_t *causes = json_array(), *md;
    char *got, big[300];

    REQUIRE(causes);
    md = J("{'labels':{'app':'web','example.com/Tier':'Front_1','e':''},"
           "'annotations':{'Example.COM/Key':'v','x':''}}");
    validate_metadata_maps(md, causes);
    CHECK_INT(json_array_size(causes), 0);
    json_decref(md);

    md = J("{'labels':{'app':'bad value!','-x':'ok','Bad_Prefix/x':'v','/x':'v','a/':'v',"
           "'a/b/c':'v'}}");
    validate_metadata_maps(md, causes);
    got = render(causes);
    CHECK_STR(
        got,
        "metadata.labels|FieldValueInvalid|Invalid value: \"bad value!\": a valid label "
        "must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
        "'my_value',  or '12345', regex used for validation is "
        "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')\n"
        "metadata.labels|FieldValueInvalid|Invalid value: \"-x\": name part " QNAME_MSG "\n"
        "metadata.labels|FieldValueInvalid|Invalid value: \"Bad_Prefix/x\": prefix "
        "part " SUBDOMAIN_MSG "\n"
        "metadata.labels|FieldValueInvalid|Invalid value: \"/x\": prefix part must be "
        "non-empty\n"
        "metadata.labels|FieldValueInvalid|Invalid value: \"a/\": name part must be "
        "non-empty\n"
        "metadata.labels|FieldValueInvalid|Invalid value: \"a/\": name part " QNAME_MSG "\n"
        "metadata.labels|FieldValueInvalid|Invalid value: \"a/b/c\": a qualified name " QNAME_MSG
        " with an optional DNS subdomain prefix and '/' (e.g. "
        "'example.com/MyName')\n");
    free(got);
    json_decref(md);
    json_array_clear(causes);

    /* 64-character name part and label value */
    memset(big, 'a', 64);
    big[64] = '\0';
    md = json_pack("{s:{s:s}}", "labels", big, big);
    REQUIRE(md);
    validate_metadata_maps(md, causes);
    got = render(causes);
    CHECK_STR(got, "metadata.labels|FieldValueInvalid|Invalid value: "
                   "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": name "
                   "part must be no more than 63 characters\n"
                   "metadata.labels|FieldValueInvalid|Invalid value: "
                   "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": must be "
                   "no more than 63 characters\n");
    free(got);
    json_decref(md);
    json_array_clear(causes);

    /* annotations: 256 KiB in total, keys included */
    {
        size_t n = 262144 - 1;
        char *v = malloc(n + 1);
        REQUIRE(v);
        memset(v, 'x', n);
        v[n] = '\0';
        md = json_pack("{s:{s:s}}", "annotations", "a", v);
        REQUIRE(md);
        validate_metadata_maps(md, causes);
        CHECK_INT(json_array_size(causes), 0);
        json_object_set_new(json_object_get(md, "annotations"), "b", json_string(""));
        validate_metadata_maps(md, causes);
        got = render(causes);
        CHECK_STR(got, "metadata.annotations|FieldValueTooLong|Too long: must have at most "
                       "262144 bytes\n");
        free(got);
        json_decref(md);
        free(v);
    }
    json_array_clear(causes);
    md = J("{'annotations':{'bad key':'v'}}");
    validate_metadata_maps(md, causes);
    got = render(causes);
    CHECK_STR(
        got,
        "metadata.annotations|FieldValueInvalid|Invalid value: \"bad key\": name part " QNAME_MSG
        "\n");
    free(got);
    json_decref(md);
    /* no maps, no metadata, no causes array: nothing happens */
    json_array_clear(causes);
    validate_metadata_maps(NULL, causes);
    md = J("{'labels':'x','annotations':[]}");
    validate_metadata_maps(md, causes);
    validate_metadata_maps(md, NULL);
    CHECK_INT(json_array_size(causes), 0);
    json_decref(md);
    json_decref(causes);
}

UNIT_MAIN(UNIT(t_type_errors), UNIT(t_nullable), UNIT(t_nulls_pruned_and_defaulted),
          UNIT(t_int_or_string), UNIT(t_enum), UNIT(t_required), UNIT(t_numbers), UNIT(t_strings),
          UNIT(t_patterns), UNIT(t_formats), UNIT(t_arrays), UNIT(t_objects), UNIT(t_composites),
          UNIT(t_trafficsplit_defaults_and_pruning), UNIT(t_trafficsplit_every_cause),
          UNIT(t_builtin_clean), UNIT(t_builtin_pod_typos), UNIT(t_builtin_errors),
          UNIT(t_deep_nesting), UNIT(t_large_input), UNIT(t_malformed), UNIT(t_names),
          UNIT(t_metadata_maps))
