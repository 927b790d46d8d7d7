/*
 * selector_test.c - label and field selectors against k8s.io/apimachinery's behaviour.
 */
#include <jansson.h>

#include "tests/kubelite/selector.h"
#include "tests/unit/unit.h"

#define QNAME_ERR                                                                                  \
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "    \
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "         \
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"

static json_t *obj_with_labels(const char *labels_json)
{
    json_t *labels = json_loads(labels_json, 0, NULL);
    json_t *o;

    REQUIRE(labels);
    o = json_pack("{s:{s:s, s:o}}", "metadata", "name", "x", "labels", labels);
    REQUIRE(o);
    return o;
}

/* Parse s, match it against labels, and free. Returns -1 on parse failure. */
static int lmatch(const char *s, const char *labels_json)
{
    struct selector *sel = NULL;
    char msg[512];
    json_t *o = obj_with_labels(labels_json);
    int r;

    if (selector_parse_labels(s, &sel, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "  parse of '%s' failed: %s\n", s, msg);
        json_decref(o);
        return -1;
    }
    r = selector_match(sel, o) ? 1 : 0;
    selector_free(sel);
    json_decref(o);
    return r;
}

/* Parse s expecting ERR_INVALID; returns the message (static storage). */
static const char *lerr(const char *s)
{
    static char msg[2048];
    struct selector *sel = NULL;
    int rc;

    msg[0] = '\0';
    rc = selector_parse_labels(s, &sel, msg, sizeof(msg));
    CHECK_INT(rc, ERR_INVALID);
    CHECK(sel == NULL);
    selector_free(sel);
    return msg;
}

static char *lstr(const char *s)
{
    struct selector *sel = NULL;
    char msg[512], *out;

    REQUIRE(selector_parse_labels(s, &sel, msg, sizeof(msg)) == 0);
    out = selector_string(sel);
    REQUIRE(out);
    selector_free(sel);
    return out;
}

static void t_label_equality(void)
{
    CHECK_INT(lmatch("app=web", "{\"app\":\"web\"}"), 1);
    CHECK_INT(lmatch("app=web", "{\"app\":\"db\"}"), 0);
    CHECK_INT(lmatch("app=web", "{}"), 0);
    CHECK_INT(lmatch("app==web", "{\"app\":\"web\"}"), 1);
    CHECK_INT(lmatch("app!=web", "{\"app\":\"web\"}"), 0);
    CHECK_INT(lmatch("app!=web", "{\"app\":\"db\"}"), 1);
    /* != matches objects without the key */
    CHECK_INT(lmatch("app!=web", "{}"), 1);
    /* "a=" selects the empty value, not absence */
    CHECK_INT(lmatch("app=", "{\"app\":\"\"}"), 1);
    CHECK_INT(lmatch("app=", "{}"), 0);
    /* helm's release query */
    CHECK_INT(lmatch("name=rel,owner=helm", "{\"name\":\"rel\",\"owner\":\"helm\",\"x\":\"1\"}"),
              1);
    CHECK_INT(lmatch("name=rel,owner=helm", "{\"name\":\"rel\"}"), 0);
    /* prefixed keys and values with dots, dashes, underscores */
    CHECK_INT(lmatch("app.kubernetes.io/name=my_app-1.0", "{\"app.kubernetes.io/name\":"
                                                          "\"my_app-1.0\"}"),
              1);
}

static void t_label_set_based(void)
{
    CHECK_INT(lmatch("env in (prod, qa)", "{\"env\":\"qa\"}"), 1);
    CHECK_INT(lmatch("env in (prod,qa)", "{\"env\":\"dev\"}"), 0);
    CHECK_INT(lmatch("env in (prod,qa)", "{}"), 0);
    CHECK_INT(lmatch("env notin (prod)", "{\"env\":\"qa\"}"), 1);
    CHECK_INT(lmatch("env notin (prod)", "{\"env\":\"prod\"}"), 0);
    /* notin matches when the key is absent */
    CHECK_INT(lmatch("env notin (prod)", "{}"), 1);
    CHECK_INT(lmatch("env", "{\"env\":\"\"}"), 1);
    CHECK_INT(lmatch("env", "{}"), 0);
    CHECK_INT(lmatch("!env", "{}"), 1);
    CHECK_INT(lmatch("!env", "{\"env\":\"x\"}"), 0);
    /* "in" and "notin" are plain values inside parentheses */
    CHECK_INT(lmatch("x in (in,notin)", "{\"x\":\"notin\"}"), 1);
    /* () and empty members select the empty value */
    CHECK_INT(lmatch("x in ()", "{\"x\":\"\"}"), 1);
    CHECK_INT(lmatch("x in ()", "{\"x\":\"a\"}"), 0);
    CHECK_INT(lmatch("x in (,a)", "{\"x\":\"\"}"), 1);
    CHECK_INT(lmatch("x in (a,)", "{\"x\":\"\"}"), 1);
    CHECK_INT(lmatch("x in (a,,b)", "{\"x\":\"b\"}"), 1);
    /* whitespace everywhere */
    CHECK_INT(lmatch("  a = 1 ,\tb\n,  !c  ", "{\"a\":\"1\",\"b\":\"z\"}"), 1);
    CHECK_INT(lmatch("a=1,b,!c", "{\"a\":\"1\",\"b\":\"z\",\"c\":\"\"}"), 0);
}

static void t_label_gt_lt(void)
{
    CHECK_INT(lmatch("n>1", "{\"n\":\"2\"}"), 1);
    CHECK_INT(lmatch("n>1", "{\"n\":\"1\"}"), 0);
    CHECK_INT(lmatch("n<10", "{\"n\":\"-3\"}"), 1);
    CHECK_INT(lmatch("n<10", "{\"n\":\"+9\"}"), 1);
    CHECK_INT(lmatch("n<10", "{\"n\":\"10\"}"), 0);
    /* absent or non-integer label values never match */
    CHECK_INT(lmatch("n>1", "{}"), 0);
    CHECK_INT(lmatch("n>1", "{\"n\":\"abc\"}"), 0);
    CHECK_INT(lmatch("n<1", "{\"n\":\"99999999999999999999\"}"), 0);
}

static void t_label_empty_selects_all(void)
{
    struct selector *sel = NULL;
    json_t *o = obj_with_labels("{\"a\":\"b\"}");
    json_t *bare = json_pack("{s:{s:s}}", "metadata", "name", "n");
    char msg[64];

    REQUIRE(selector_parse_labels("", &sel, msg, sizeof(msg)) == 0);
    CHECK(selector_empty(sel));
    CHECK(selector_match(sel, o));
    CHECK(selector_match(sel, bare));
    selector_free(sel);
    sel = NULL;
    REQUIRE(selector_parse_labels(NULL, &sel, msg, sizeof(msg)) == 0);
    CHECK(selector_empty(sel));
    selector_free(sel);
    sel = NULL;
    REQUIRE(selector_parse_labels("   ", &sel, msg, sizeof(msg)) == 0);
    CHECK(selector_empty(sel));
    selector_free(sel);
    /* a NULL selector matches and is empty */
    CHECK(selector_match(NULL, o));
    CHECK(selector_empty(NULL));
    selector_free(NULL);
    /* objects without labels */
    sel = NULL;
    REQUIRE(selector_parse_labels("a!=b,!c", &sel, msg, sizeof(msg)) == 0);
    CHECK(!selector_empty(sel));
    CHECK(selector_match(sel, bare));
    selector_free(sel);
    json_decref(o);
    json_decref(bare);
}

static void t_label_string(void)
{
    char *s;

    s = lstr("z=1, a in (c,b,b), !m, k, n>5, x notin (), p!=q, r==s");
    CHECK_STR(s, "a in (b,c),k,!m,n>5,p!=q,r==s,x notin (),z=1");
    free(s);
    s = lstr("");
    CHECK_STR(s, "");
    free(s);
    s = selector_string(NULL);
    CHECK_STR(s, "");
    free(s);
}

static void t_label_syntax_errors(void)
{
    CHECK_STR(lerr("a b"), "unable to parse requirement: found 'b', expected: in, notin, =, ==, "
                           "!=, gt, lt");
    CHECK_STR(lerr("a=("), "unable to parse requirement: found '(', expected: identifier");
    CHECK_STR(lerr("a in x"), "unable to parse requirement: found 'x' expected: '('");
    CHECK_STR(lerr("a in ("),
              "unable to parse requirement: found '', expected: ',', ')' or identifier");
    CHECK_STR(lerr("a in (x y)"), "unable to parse requirement: found 'y', expected: ',' or ')'");
    CHECK_STR(lerr("a in (x,="),
              "unable to parse requirement: found '=', expected: ',', or identifier");
    CHECK_STR(lerr("a=b,"), "found '', expected: identifier after ','");
    CHECK_STR(lerr("a=b,,c"), "found ',', expected: identifier after ','");
    CHECK_STR(lerr("a=b c"), "found 'c', expected: ',' or 'end of string'");
    CHECK_STR(lerr("(a)"), "found '(', expected: !, identifier, or 'end of string'");
    CHECK_STR(lerr(",a"), "found ',', expected: !, identifier, or 'end of string'");
    CHECK_STR(lerr("!"), "unable to parse requirement: found '', expected: identifier");
    CHECK_STR(lerr("!=a"), "found '!=', expected: !, identifier, or 'end of string'");
    CHECK_STR(lerr("!,a"), "unable to parse requirement: found ',', expected: identifier");
    CHECK_STR(lerr("a notin"), "unable to parse requirement: found '' expected: '('");
    /* after "!key" kube expects the end of the requirement */
    CHECK_STR(lerr("!a=b"), "found '=', expected: ',' or 'end of string'");
    CHECK_STR(lerr("a=b=c"), "found '=', expected: ',' or 'end of string'");
}

static void t_label_validation_errors(void)
{
    CHECK_STR(lerr("a>b"), "unable to parse requirement: values[0]: Invalid value: \"b\": for "
                           "'Gt', 'Lt' operators, the value must be an integer");
    CHECK_STR(lerr("-a=b"),
              "unable to parse requirement: <nil>: Invalid value: \"-a\": name part " QNAME_ERR);
    CHECK_STR(lerr("a/b/c"), "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a "
                             "qualified name " QNAME_ERR " with an optional DNS subdomain prefix "
                             "and '/' (e.g. 'example.com/MyName')");
    CHECK_STR(lerr("Example.com/x"),
              "unable to parse requirement: <nil>: Invalid value: \"Example.com/x\": prefix part "
              "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
              "'-' or '.', and must start and end with an alphanumeric character (e.g. "
              "'example.com', regex used for validation is "
              "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
    CHECK_STR(lerr("/x"), "unable to parse requirement: <nil>: Invalid value: \"/x\": prefix part "
                          "must be non-empty");
    CHECK_STR(lerr("x/"), "unable to parse requirement: <nil>: Invalid value: \"x/\": name part "
                          "must be non-empty; name part " QNAME_ERR);
    CHECK_STR(lerr("a=b@c"),
              "unable to parse requirement: values[0][a]: Invalid value: \"b@c\": a valid label "
              "must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
              "and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
              "'my_value',  or '12345', regex used for validation is "
              "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')");
    /* 64-character name part */
    CHECK_STR(lerr("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
              "unable to parse requirement: <nil>: Invalid value: "
              "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": name part "
              "must be no more than 63 characters");
    /* messages are truncated, never overflowed */
    {
        struct selector *sel = NULL;
        char small[8];
        CHECK_INT(selector_parse_labels("a b", &sel, small, sizeof(small)), ERR_INVALID);
        CHECK_STR(small, "unable ");
        CHECK_INT(selector_parse_labels("a b", &sel, NULL, 0), ERR_INVALID);
    }
}

/* ---- field selectors ---- */

static json_t *pod(void)
{
    json_t *p =
        json_loads("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web-1\","
                   "\"namespace\":\"default\"},\"spec\":{\"nodeName\":\"node-a\","
                   "\"restartPolicy\":\"Always\",\"hostNetwork\":true},"
                   "\"status\":{\"phase\":\"Running\",\"podIPs\":[{\"ip\":\"10.0.0.5\"}]}}",
                   0, NULL);
    REQUIRE(p);
    return p;
}

static int fmatch(const char *s, const char *resource, const json_t *obj)
{
    struct selector *sel = NULL;
    char msg[512];
    int r;

    if (selector_parse_fields(s, resource, &sel, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "  field parse of '%s' failed: %s\n", s, msg);
        return -1;
    }
    r = selector_match(sel, obj) ? 1 : 0;
    selector_free(sel);
    return r;
}

static const char *ferr(const char *s, const char *resource)
{
    static char msg[1024];
    struct selector *sel = NULL;

    msg[0] = '\0';
    CHECK_INT(selector_parse_fields(s, resource, &sel, msg, sizeof(msg)), ERR_INVALID);
    CHECK(sel == NULL);
    return msg;
}

static void t_field_match(void)
{
    json_t *p = pod(), *ns;

    CHECK_INT(fmatch("metadata.name=web-1", "pods", p), 1);
    CHECK_INT(fmatch("metadata.name==web-1", "pods", p), 1);
    CHECK_INT(fmatch("metadata.name=web-2", "pods", p), 0);
    CHECK_INT(fmatch("metadata.name!=web-2,metadata.namespace=default", "pods", p), 1);
    CHECK_INT(fmatch("metadata.namespace=default,status.phase!=Running", "pods", p), 0);
    CHECK_INT(fmatch("spec.nodeName=node-a", "pods", p), 1);
    CHECK_INT(fmatch("spec.host=node-a", "pods", p), 1);
    CHECK_INT(fmatch("spec.hostNetwork=true", "pods", p), 1);
    CHECK_INT(fmatch("spec.schedulerName=", "pods", p), 1);
    /* podIP falls back to podIPs[0] */
    CHECK_INT(fmatch("status.podIP=10.0.0.5", "pods", p), 1);
    CHECK_INT(fmatch("status.podIP=", "pods", p), 0);
    json_object_del(json_object_get(p, "status"), "podIPs");
    CHECK_INT(fmatch("status.podIP=", "pods", p), 1);
    /* hostNetwork absent reads as "false", like the internal pod's SecurityContext default */
    json_object_del(json_object_get(p, "spec"), "hostNetwork");
    CHECK_INT(fmatch("spec.hostNetwork=false", "pods", p), 1);
    CHECK_INT(fmatch("spec.hostNetwork!=false", "pods", p), 0);
    /* empty and comma-only selectors select everything */
    CHECK_INT(fmatch("", "pods", p), 1);
    CHECK_INT(fmatch(",", "pods", p), 1);

    /* cluster-scoped objects: metadata.namespace is "" */
    ns = json_loads("{\"metadata\":{\"name\":\"kube-system\"},\"status\":{\"phase\":\"Active\"}}",
                    0, NULL);
    REQUIRE(ns);
    CHECK_INT(fmatch("metadata.namespace=", "namespaces", ns), 1);
    CHECK_INT(fmatch("metadata.namespace=default", "namespaces", ns), 0);
    CHECK_INT(fmatch("status.phase=Active,metadata.name=kube-system", "namespaces", ns), 1);
    json_decref(ns);
    json_decref(p);
}

static void t_field_resources(void)
{
    json_t *sec =
        json_loads("{\"metadata\":{\"name\":\"s\"},\"type\":\"helm.sh/release.v1\"}", 0, NULL);
    json_t *ev = json_loads("{\"metadata\":{\"name\":\"e\",\"namespace\":\"d\"},"
                            "\"involvedObject\":{\"kind\":\"Pod\",\"name\":\"web-1\"},"
                            "\"reason\":\"Started\",\"reportingComponent\":\"kubelet\","
                            "\"type\":\"Normal\"}",
                            0, NULL);
    json_t *rs = json_loads("{\"metadata\":{\"name\":\"r\"},\"status\":{\"replicas\":3}}", 0, NULL);
    json_t *rs0 = json_loads("{\"metadata\":{\"name\":\"r\"}}", 0, NULL);

    REQUIRE(sec && ev && rs && rs0);
    CHECK_INT(fmatch("type=helm.sh/release.v1", "secrets", sec), 1);
    CHECK_INT(fmatch("involvedObject.kind=Pod,involvedObject.name=web-1", "events", ev), 1);
    CHECK_INT(fmatch("involvedObject.uid=", "events", ev), 1);
    /* source falls back to reportingComponent */
    CHECK_INT(fmatch("source=kubelet", "events", ev), 1);
    CHECK_INT(fmatch("reportingComponent=kubelet,type=Normal,reason=Started", "events", ev), 1);
    CHECK_INT(fmatch("status.replicas=3", "replicasets", rs), 1);
    CHECK_INT(fmatch("status.replicas=0", "replicasets", rs0), 1);
    json_decref(sec);
    json_decref(ev);
    json_decref(rs);
    json_decref(rs0);
}

static void t_field_escapes(void)
{
    json_t *o = json_loads("{\"metadata\":{\"name\":\"a,b=c\\\\d\"}}", 0, NULL);
    struct selector *sel = NULL;
    char msg[256], *s;

    REQUIRE(o);
    CHECK_INT(fmatch("metadata.name=a\\,b\\=c\\\\d", "configmaps", o), 1);
    CHECK_INT(fmatch("metadata.name!=a\\,b\\=c\\\\d", "configmaps", o), 0);
    /* the canonical string re-escapes, and terms come out sorted */
    REQUIRE(selector_parse_fields("metadata.namespace!=x,metadata.name==a\\,b", "configmaps", &sel,
                                  msg, sizeof(msg)) == 0);
    s = selector_string(sel);
    CHECK_STR(s, "metadata.name=a\\,b,metadata.namespace!=x");
    free(s);
    selector_free(sel);
    json_decref(o);
}

static void t_field_errors(void)
{
    CHECK_STR(ferr("spec.foo=x", "configmaps"),
              "\"spec.foo\" is not a known field selector: only \"metadata.name\", "
              "\"metadata.namespace\"");
    CHECK_STR(ferr("metadata.name=x,spec.foo=x", "secrets"),
              "\"spec.foo\" is not a known field selector: only \"metadata.name\", "
              "\"metadata.namespace\", \"type\"");
    CHECK_STR(ferr("status.podIPs=x", "pods"),
              "\"status.podIPs\" is not a known field selector: only \"metadata.name\", "
              "\"metadata.namespace\", \"spec.nodeName\", \"spec.restartPolicy\", "
              "\"spec.schedulerName\", \"spec.serviceAccountName\", \"spec.hostNetwork\", "
              "\"status.phase\", \"status.podIP\", \"status.nominatedNodeName\"");
    /* whitespace is not trimmed from field names */
    CHECK_STR(ferr("metadata.name =x", "pods"),
              "\"metadata.name \" is not a known field selector: only \"metadata.name\", "
              "\"metadata.namespace\", \"spec.nodeName\", \"spec.restartPolicy\", "
              "\"spec.schedulerName\", \"spec.serviceAccountName\", \"spec.hostNetwork\", "
              "\"status.phase\", \"status.podIP\", \"status.nominatedNodeName\"");
    CHECK_STR(ferr("metadata.name", "pods"),
              "invalid selector: 'metadata.name'; can't understand 'metadata.name'");
    CHECK_STR(ferr("a=b,metadata.name", "pods"),
              "invalid selector: 'a=b,metadata.name'; can't understand 'metadata.name'");
    CHECK_STR(ferr("metadata.name=a\\b", "pods"),
              "invalid field selector: invalid escape sequence: \\b");
    CHECK_STR(ferr("metadata.name=a\\", "pods"),
              "invalid field selector: invalid escape sequence: \\");
    /* kube prints the rune as a number */
    CHECK_STR(ferr("metadata.name=a=b", "pods"),
              "invalid field selector: unescaped character in value: 61");
    /* syntax errors win over unknown fields */
    CHECK_STR(ferr("zzz=1,bad", "pods"), "invalid selector: 'zzz=1,bad'; can't understand 'bad'");
}

/* ---- LabelSelector objects ---- */

static int jsel(const char *json, struct selector **sel, char *msg, size_t len)
{
    json_t *j = json_loads(json, 0, NULL);
    int rc;

    REQUIRE(j);
    rc = selector_from_json(j, sel, msg, len);
    json_decref(j);
    return rc;
}

static void t_json_selector(void)
{
    struct selector *sel = NULL;
    char msg[1024], *s;
    json_t *a = obj_with_labels("{\"app\":\"web\",\"tier\":\"fe\"}");
    json_t *b = obj_with_labels("{\"app\":\"web\",\"tier\":\"be\",\"canary\":\"1\"}");

    REQUIRE(jsel("{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":["
                 "{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"fe\",\"api\"]},"
                 "{\"key\":\"canary\",\"operator\":\"DoesNotExist\"}]}",
                 &sel, msg, sizeof(msg)) == 0);
    CHECK(selector_match(sel, a));
    CHECK(!selector_match(sel, b));
    s = selector_string(sel);
    CHECK_STR(s, "app=web,!canary,tier in (api,fe)");
    free(s);
    selector_free(sel);
    sel = NULL;

    REQUIRE(jsel("{\"matchExpressions\":[{\"key\":\"tier\",\"operator\":\"NotIn\","
                 "\"values\":[\"fe\"]},{\"key\":\"app\",\"operator\":\"Exists\"}]}",
                 &sel, msg, sizeof(msg)) == 0);
    CHECK(!selector_match(sel, a));
    CHECK(selector_match(sel, b));
    selector_free(sel);
    sel = NULL;

    /* {} and null select everything */
    REQUIRE(jsel("{}", &sel, msg, sizeof(msg)) == 0);
    CHECK(selector_empty(sel));
    CHECK(selector_match(sel, a));
    selector_free(sel);
    sel = NULL;
    REQUIRE(selector_from_json(NULL, &sel, msg, sizeof(msg)) == 0);
    CHECK(selector_empty(sel));
    selector_free(sel);
    json_decref(a);
    json_decref(b);
}

static void t_json_selector_errors(void)
{
    struct selector *sel = NULL;
    char msg[1024];

    CHECK_INT(
        jsel("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Gt\",\"values\":[\"1\"]}]}",
             &sel, msg, sizeof(msg)),
        ERR_INVALID);
    CHECK_STR(msg, "\"Gt\" is not a valid label selector operator");
    CHECK_INT(jsel("{\"matchExpressions\":[{\"key\":\"a\"}]}", &sel, msg, sizeof(msg)),
              ERR_INVALID);
    CHECK_STR(msg, "\"\" is not a valid label selector operator");
    CHECK_INT(jsel("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\"}]}", &sel, msg,
                   sizeof(msg)),
              ERR_INVALID);
    CHECK_STR(msg, "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set "
                   "can't be empty");
    CHECK_INT(jsel("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"NotIn\",\"values\":[]}]}",
                   &sel, msg, sizeof(msg)),
              ERR_INVALID);
    CHECK_STR(msg, "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set "
                   "can't be empty");
    CHECK_INT(jsel("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Exists\","
                   "\"values\":[\"x\",\"y\"]}]}",
                   &sel, msg, sizeof(msg)),
              ERR_INVALID);
    CHECK_STR(msg, "values: Invalid value: []string{\"x\", \"y\"}: values set must be empty for "
                   "exists and does not exist");
    CHECK_INT(jsel("{\"matchLabels\":{\"-bad\":\"x\"}}", &sel, msg, sizeof(msg)), ERR_INVALID);
    CHECK_STR(msg, "key: Invalid value: \"-bad\": name part " QNAME_ERR);
    /* several problems aggregate as [a, b] */
    CHECK_INT(jsel("{\"matchExpressions\":[{\"key\":\"-bad\",\"operator\":\"In\"}]}", &sel, msg,
                   sizeof(msg)),
              ERR_INVALID);
    CHECK_STR(msg, "[key: Invalid value: \"-bad\": name part " QNAME_ERR ", values: Invalid value: "
                   "[]string(nil): for 'in', 'notin' operators, values set can't be empty]");
    CHECK_INT(jsel("{\"matchLabels\":{\"a\":1}}", &sel, msg, sizeof(msg)), ERR_INVALID);
    CHECK_STR(msg, "invalid label selector: matchLabels[\"a\"] must be a string");
    CHECK_INT(jsel("{\"matchExpressions\":{}}", &sel, msg, sizeof(msg)), ERR_INVALID);
    CHECK_STR(msg, "invalid label selector: matchExpressions must be an array");
    CHECK_INT(jsel("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\",\"values\":[1]}]}",
                   &sel, msg, sizeof(msg)),
              ERR_INVALID);
    CHECK_STR(msg, "invalid label selector: values must be an array of strings");
    CHECK_INT(jsel("[]", &sel, msg, sizeof(msg)), ERR_INVALID);
    CHECK_STR(msg, "invalid label selector: expected an object");
    CHECK(sel == NULL);
}

UNIT_MAIN(UNIT(t_label_equality), UNIT(t_label_set_based), UNIT(t_label_gt_lt),
          UNIT(t_label_empty_selects_all), UNIT(t_label_string), UNIT(t_label_syntax_errors),
          UNIT(t_label_validation_errors), UNIT(t_field_match), UNIT(t_field_resources),
          UNIT(t_field_escapes), UNIT(t_field_errors), UNIT(t_json_selector),
          UNIT(t_json_selector_errors))
