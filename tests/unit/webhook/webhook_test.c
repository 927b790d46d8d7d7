/*
 * webhook_test.c - sidecar injection (webhook/), AdmissionReview handling and `weftctl inject`
 * (cli/inject.c).
 *
 * Golden cases: tests/fixtures/inject/<case>.yaml is the input pod, <case>.golden.yaml the
 * expected mutated pod (regenerate with WEFT_UPDATE_GOLDEN=1, then review the diff). Every
 * injected pod is also checked by applying the produced JSON Patch to the input with kubelite's
 * independent RFC 6902 implementation (tests/kubelite/patch.h), by un-injecting it, by injecting
 * it again (must be skipped) and by sending it through webhook_review.
 * The corpus in ../shared/inject-corpus/ (94 manifests) goes through cli_inject_docs.
 */
#include <glob.h>
#include <jansson.h>
#include <sys/stat.h>

#include "core/base64.h"
#include "cli/cli.h"
#include "conf/yamljson.h"
#include "core/buf.h"
#include "tests/kubelite/patch.h"
#include "tests/unit/unit.h"
#include "webhook/webhook.h"
#include "webhook/webhook_int.h"

#define FIXTURES "tests/fixtures/inject/"
/* The injection corpus lives outside the repository (INJECT_CORPUS overrides, as for t0910). */
#define CORPUS_DEFAULT "../shared/inject-corpus"

/* ---- helpers ---- */

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
    if (!got || !want || !json_equal(got, want)) {
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

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char chunk[4096];
    size_t n;

    if (!f) {
        fprintf(stderr, "  cannot open %s\n", path);
        exit(1);
    }
    buf_init(&b);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        REQUIRE(buf_append(&b, chunk, n) == 0);
    fclose(f);
    *len = b.len;
    return buf_take(&b);
}

/* The single document of a YAML file. */
static json_t *load_yaml(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    struct diag msg = {0, ""};
    json_t *docs = NULL, *d;

    if (yaml_to_json(text, len, &docs, &msg) < 0) {
        fprintf(stderr, "  %s: %s\n", path, msg.text);
        exit(1);
    }
    free(text);
    REQUIRE(json_array_size(docs) == 1);
    d = json_incref(json_array_get(docs, 0));
    json_decref(docs);
    return d;
}

static struct inject_config test_cfg(bool native)
{
    struct inject_config cfg;

    webhook_config_init(&cfg);
    cfg.version = "1.2.3";
    cfg.proxy_image = "registry.example/weft-proxy:1.2.3";
    cfg.native_sidecars = native;
    return cfg;
}

/* Patch paths of res.patch, in order, as one JSON array of "op path" strings. */
static json_t *op_paths(const json_t *ops)
{
    json_t *out = json_array();
    size_t i;
    json_t *o;

    json_array_foreach(ops, i, o)
    {
        char s[512];
        snprintf(s, sizeof(s), "%s %s", json_string_value(json_object_get(o, "op")),
                 json_string_value(json_object_get(o, "path")));
        json_array_append_new(out, json_string(s));
    }
    return out;
}

static int b64val(char c)
{
    const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(tab, c);
    return c && p ? (int)(p - tab) : -1;
}

/* Strict base64 decoder (independent of the module's encoder); NULL if invalid. */
static char *b64decode(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *out;

    if (n % 4)
        return NULL;
    out = malloc(n / 4 * 3 + 1);
    for (size_t i = 0; i < n; i += 4) {
        int a = b64val(s[i]), b = b64val(s[i + 1]), c = s[i + 2] == '=' ? 0 : b64val(s[i + 2]),
            d = s[i + 3] == '=' ? 0 : b64val(s[i + 3]);
        if (a < 0 || b < 0 || c < 0 || d < 0) {
            free(out);
            return NULL;
        }
        out[o++] = (char)(a << 2 | b >> 4);
        if (s[i + 2] != '=')
            out[o++] = (char)((b & 15) << 4 | c >> 2);
        if (s[i + 3] != '=')
            out[o++] = (char)((c & 3) << 6 | d);
    }
    out[o] = '\0';
    return out;
}

/* Wrap a pod in an AdmissionReview v1 request. */
static char *review_body(const char *uid, const char *op, const char *group, const char *kind,
                         const char *sub, bool dry, const char *ns, const json_t *obj)
{
    json_t *req = json_pack("{s:s,s:{s:s,s:s,s:s},s:{s:s,s:s,s:s},s:s,s:b,s:{s:s}}", "uid", uid,
                            "kind", "group", group, "version", "v1", "kind", kind, "resource",
                            "group", group, "version", "v1", "resource", "pods", "operation", op,
                            "dryRun", dry, "userInfo", "username",
                            "system:serviceaccount:kube-"
                            "system:replicaset-controller");
    json_t *rev;
    char *s;

    REQUIRE(req);
    if (sub)
        json_object_set_new(req, "subResource", json_string(sub));
    if (ns)
        json_object_set_new(req, "namespace", json_string(ns));
    if (obj)
        json_object_set(req, "object", (json_t *)obj);
    rev = json_pack("{s:s,s:s,s:o}", "apiVersion", "admission.k8s.io/v1", "kind", "AdmissionReview",
                    "request", req);
    s = json_dumps(rev, JSON_COMPACT);
    json_decref(rev);
    return s;
}

/* Run webhook_review on body; returns the parsed response and the HTTP status. */
static json_t *review(const struct inject_config *cfg, const char *body, int *status)
{
    char *resp = NULL;
    json_t *j;

    *status = -1;
    REQUIRE(webhook_review(cfg, body, body ? strlen(body) : 0, &resp, status) == 0);
    REQUIRE(resp);
    j = jparse(resp);
    free(resp);
    return j;
}

/* ---- internals ---- */

static char *ptr(const char *token)
{
    struct buf b;

    buf_init(&b);
    REQUIRE(webhook__ptr_append(&b, token) == 0);
    return buf_take(&b);
}

static void t_pointer_escape(void)
{
    char *a = ptr("weft.dev/status"), *b = ptr("a~b/c~1"), *c = ptr("");

    CHECK_STR(a, "/weft.dev~1status");
    CHECK_STR(b, "/a~0b~1c~01");
    CHECK_STR(c, "/");
    free(a);
    free(b);
    free(c);
}

static void t_base64(void)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const want[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                       "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

    for (size_t i = 0; i < ARRAY_LEN(in); i++) {
        char *s = base64_encode(in[i], strlen(in[i]));
        CHECK_STR(s, want[i]);
        free(s);
    }
    {
        const unsigned char bin[] = {0xff, 0xfe, 0x00, 0x3e, 0x3f};
        char *s = base64_encode(bin, sizeof(bin));
        CHECK_STR(s, "//4APj8=");
        free(s);
    }
}

/* Parse a list; returns the normalised text or "ERR: msg". */
static char *list(bool cidr, const char *v, bool star)
{
    struct buf b;
    struct diag msg = {0, ""};
    char *s;
    int rc;

    buf_init(&b);
    rc = cidr ? webhook__cidrs_parse("a/b", v, star, &b, &msg)
              : webhook__ports_parse("a/b", v, star, &b, &msg);
    if (rc < 0) {
        CHECK_INT(rc, ERR_INVALID);
        REQUIRE(asprintf(&s, "ERR: %s", msg.text) > 0);
        buf_release(&b);
        return s;
    }
    s = strdup(b.p ? b.p : "");
    buf_release(&b);
    return s;
}

#define CHECK_LIST(cidr, v, star, want)                                                            \
    do {                                                                                           \
        char *got__ = list(cidr, v, star);                                                         \
        CHECK_STR(got__, want);                                                                    \
        free(got__);                                                                               \
    } while (0)

static void t_ports(void)
{
    CHECK_LIST(false, "80", false, "80");
    CHECK_LIST(false, " 80 , 8080,65535 ", false, "80,8080,65535");
    CHECK_LIST(false, "", false, "");
    CHECK_LIST(false, "   ", false, "");
    CHECK_LIST(false, "*", true, "*");
    CHECK_LIST(false, " * ", true, "*");
    CHECK_LIST(false, "*", false,
               "ERR: annotation a/b: \"*\" is not allowed here (want comma-separated ports "
               "1-65535)");
    CHECK_LIST(false, "0", false,
               "ERR: annotation a/b: invalid item \"0\" (want comma-separated ports 1-65535)");
    CHECK_LIST(false, "65536", true,
               "ERR: annotation a/b: invalid item \"65536\" (want \"*\" or comma-separated ports "
               "1-65535)");
    CHECK_LIST(false, "80,,90", false,
               "ERR: annotation a/b: empty item in \"80,,90\" (want comma-separated ports "
               "1-65535)");
    CHECK_LIST(false, "80,", false,
               "ERR: annotation a/b: empty item in \"80,\" (want comma-separated ports 1-65535)");
    CHECK_LIST(false, "http", false,
               "ERR: annotation a/b: invalid item \"http\" (want comma-separated ports 1-65535)");
    CHECK_LIST(false, "-1", false,
               "ERR: annotation a/b: invalid item \"-1\" (want comma-separated ports 1-65535)");
    CHECK_LIST(false, "80,*", true,
               "ERR: annotation a/b: invalid item \"*\" (want \"*\" or comma-separated ports "
               "1-65535)");
    CHECK_LIST(false, "000000000000000000080", false,
               "ERR: annotation a/b: invalid item \"000000000000000000080\" (want comma-separated "
               "ports 1-65535)");
}

static void t_cidrs(void)
{
    CHECK_LIST(true, "10.0.0.0/8", false, "10.0.0.0/8");
    CHECK_LIST(true, "10.0.0.0/8, 192.168.1.7/32,fd00::/8,::/0", false,
               "10.0.0.0/8,192.168.1.7/32,fd00::/8,::/0");
    CHECK_LIST(true, "*", true, "*");
    CHECK_LIST(true, "*", false,
               "ERR: annotation a/b: \"*\" is not allowed here (want comma-separated CIDRs such as "
               "10.0.0.0/8)");
    CHECK_LIST(true, "10.0.0.1", false,
               "ERR: annotation a/b: invalid item \"10.0.0.1\" (want comma-separated CIDRs such as "
               "10.0.0.0/8)");
    CHECK_LIST(true, "10.0.0.0/33", false,
               "ERR: annotation a/b: invalid item \"10.0.0.0/33\" (want comma-separated CIDRs "
               "such as 10.0.0.0/8)");
    CHECK_LIST(true, "::/129", false,
               "ERR: annotation a/b: invalid item \"::/129\" (want comma-separated CIDRs such as "
               "10.0.0.0/8)");
    CHECK_LIST(true, "300.0.0.0/8", false,
               "ERR: annotation a/b: invalid item \"300.0.0.0/8\" (want comma-separated CIDRs "
               "such as 10.0.0.0/8)");
    CHECK_LIST(true, "10.0.0.0/", false,
               "ERR: annotation a/b: invalid item \"10.0.0.0/\" (want comma-separated CIDRs such "
               "as 10.0.0.0/8)");
    CHECK_LIST(true, "/8", false,
               "ERR: annotation a/b: invalid item \"/8\" (want comma-separated CIDRs such as "
               "10.0.0.0/8)");
    CHECK_LIST(true, "10.0.0.0/8x", false,
               "ERR: annotation a/b: invalid item \"10.0.0.0/8x\" (want comma-separated CIDRs "
               "such as 10.0.0.0/8)");
}

static void t_quantity(void)
{
    static const struct {
        const char *s;
        double want;
    } ok[] = {
        {"100m", 0.1},   {"1", 1},          {"1.5Gi", 1610612736.0},
        {"2e3", 2000},   {"+1", 1},         {"128Mi", 134217728.0},
        {".5", 0.5},     {"1k", 1000},      {"0", 0},
        {"1E-3", 0.001}, {"250u", 0.00025}, {"3Ti", 3298534883328.0},
    };
    static const char *const bad[] = {"-1",  "",    "m",  "1.2.3", "1KiB", "1e",
                                      "abc", "1 m", "e3", "1e+",   "1x"};

    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        double q = -1;
        CHECK_INT(webhook__quantity_parse(ok[i].s, &q), 0);
        if (q < ok[i].want * 0.999999 || q > ok[i].want * 1.000001 + 1e-12) {
            fprintf(stderr, "  quantity %s: %g != %g\n", ok[i].s, q, ok[i].want);
            unit__failures++;
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        double q = -7;
        if (webhook__quantity_parse(bad[i], &q) != ERR_INVALID || q != -7) {
            fprintf(stderr, "  quantity \"%s\" accepted\n", bad[i]);
            unit__failures++;
        }
    }
}

static void t_bool(void)
{
    bool b = false;
    struct diag msg = {0, ""};

    CHECK_INT(webhook__bool_parse("x/y", "true", &b, &msg), 0);
    CHECK(b);
    CHECK_INT(webhook__bool_parse("x/y", "false", &b, &msg), 0);
    CHECK(!b);
    b = true;
    CHECK_INT(webhook__bool_parse("x/y", "True", &b, &msg), ERR_INVALID);
    CHECK(b);
    CHECK_STR(msg.text, "annotation x/y: \"True\" is not \"true\" or \"false\"");
    CHECK_INT(webhook__bool_parse("x/y", "", &b, &msg), ERR_INVALID);
}

/* ---- golden cases ---- */

/*
 * Inject the fixture, compare with the golden pod, and check the patch, the uninjection, the
 * reinjection and the AdmissionReview answer. Returns the result for case-specific checks.
 */
static struct webhook_result golden(const char *name, bool native, json_t **input)
{
    struct inject_config cfg = test_cfg(native);
    struct webhook_result res = {0}, again = {0};
    char path[256], gpath[256], pmsg[256] = "";
    struct diag msg = {0, ""};
    json_t *in, *want, *patched = NULL, *undone = NULL;
    int rc;

    snprintf(path, sizeof(path), FIXTURES "%s.yaml", name);
    snprintf(gpath, sizeof(gpath), FIXTURES "%s.golden.yaml", name);
    in = load_yaml(path);
    rc = webhook_pod_inject(&cfg, in, NULL, &res, &msg);
    if (rc != 0)
        fprintf(stderr, "  %s: %s\n", name, msg.text);
    REQUIRE(rc == 0);
    REQUIRE(res.verdict == WEBHOOK_INJECTED);
    if (getenv("WEFT_UPDATE_GOLDEN")) {
        char *y = json_to_yaml(res.pod);
        FILE *f = fopen(gpath, "w");

        REQUIRE(f && y);
        fprintf(f, "# Expected result of injecting %s.yaml (%s sidecar). Generated, reviewed.\n",
                name, native ? "native" : "classic");
        fputs(y, f);
        fclose(f);
        free(y);
    }
    want = load_yaml(gpath);
    CHECK_JSONV(res.pod, want);

    /* The patch applies to the input with an independent JSON Patch and gives the same pod. */
    rc = patch_json(in, res.patch, &patched, pmsg, sizeof(pmsg));
    if (rc != 0)
        fprintf(stderr, "  %s: patch does not apply: %s\n", name, pmsg);
    CHECK_INT(rc, 0);
    CHECK_JSONV(patched, want);

    /* Uninjection restores the input exactly. */
    CHECK_INT(webhook_pod_uninject(res.pod, &undone, &msg), 0);
    CHECK_JSONV(undone, in);

    /* Reinvocation is a no-op. */
    CHECK_INT(webhook_pod_inject(&cfg, res.pod, NULL, &again, &msg), 0);
    CHECK_INT(again.verdict, WEBHOOK_SKIPPED);
    CHECK_STR(again.reason, "already injected");
    webhook_result_release(&again);

    /* The webhook answers with the same patch. */
    {
        const char *ns =
            json_string_value(json_object_get(json_object_get(in, "metadata"), "namespace"));
        char *body = review_body("u-1", "CREATE", "", "Pod", NULL, false, ns ? ns : "default", in);
        int status;
        json_t *r = review(&cfg, body, &status), *resp = json_object_get(r, "response");
        const char *b64 = json_string_value(json_object_get(resp, "patch"));
        char *dec = b64 ? b64decode(b64) : NULL;
        json_t *ops = dec ? jparse(dec) : NULL;

        CHECK_INT(status, 200);
        CHECK_STR(json_string_value(json_object_get(resp, "uid")), "u-1");
        CHECK(json_is_true(json_object_get(resp, "allowed")));
        CHECK_STR(json_string_value(json_object_get(resp, "patchType")), "JSONPatch");
        CHECK_JSONV(ops, res.patch);
        if (json_array_size(res.warnings))
            CHECK_JSONV(json_object_get(resp, "warnings"), res.warnings);
        else
            CHECK(json_object_get(resp, "warnings") == NULL);
        json_decref(ops);
        free(dec);
        free(body);
        json_decref(r);
    }
    json_decref(want);
    json_decref(patched);
    json_decref(undone);
    if (input)
        *input = in;
    else
        json_decref(in);
    return res;
}

static const json_t *container(const json_t *pod, const char *list, const char *name)
{
    size_t i;
    json_t *c;

    json_array_foreach(json_object_get(json_object_get(pod, "spec"), list), i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
            return c;
    }
    return NULL;
}

static const char *env_value(const json_t *ctr, const char *name)
{
    size_t i;
    json_t *e;

    json_array_foreach(json_object_get(ctr, "env"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0)
            return json_string_value(json_object_get(e, "value"));
    }
    return NULL;
}

static const char *annotation(const json_t *pod, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(pod, "metadata"), "annotations"), key));
}

static void t_golden_simple(void)
{
    struct webhook_result res = golden("simple", false, NULL);
    json_t *paths = op_paths(res.patch);
    const json_t *proxy = container(res.pod, "containers", "weft-proxy");

    /* Missing parents are created whole; nothing else touched. */
    CHECK_JSON(paths, "[\"add /spec/initContainers\",\"add /spec/containers/0\","
                      "\"add /spec/volumes\",\"add /metadata/annotations\"]");
    CHECK_STR(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_object_get(res.pod, "spec"), "containers"), 0),
            "name")),
        "weft-proxy");
    CHECK_STR(annotation(res.pod, "weft.dev/status"),
              "{\"version\":\"1.2.3\",\"initContainers\":[\"weft-init\"],\"containers\":"
              "[\"weft-proxy\"],\"volumes\":[\"weft-data\",\"weft-token\",\"weft-ca\","
              "\"weft-podinfo\"],\"annotations\":[\"kubectl.kubernetes.io/default-container\","
              "\"prometheus.io/scrape\",\"prometheus.io/port\",\"prometheus.io/path\"],"
              "\"created\":[\"initContainers\",\"volumes\",\"annotations\"]}");
    CHECK_STR(annotation(res.pod, "kubectl.kubernetes.io/default-container"), "web");
    CHECK_STR(annotation(res.pod, "prometheus.io/port"), "15020");
    CHECK(annotation(res.pod, "weft.dev/original-probes") == NULL);
    CHECK_JSON(json_object_get(proxy, "lifecycle"),
               "{\"postStart\":{\"exec\":{\"command\":[\"weft-agent\",\"wait\"]}}}");
    CHECK(json_object_get(proxy, "restartPolicy") == NULL);
    CHECK(env_value(proxy, "WEFT_EXIT_ON_COMPLETION") == NULL);
    CHECK(env_value(proxy, "WEFT_APP_PROBES") == NULL);
    CHECK_STR(env_value(proxy, "WEFT_APP_CONTAINERS"), "web");
    CHECK_STR(env_value(proxy, "WEFT_SIDECAR_MODE"), "classic");
    CHECK_INT(json_array_size(res.warnings), 0);
    json_decref(paths);
    webhook_result_release(&res);
}

static void t_golden_probes(void)
{
    struct webhook_result res = golden("probes", false, NULL);
    json_t *paths = op_paths(res.patch);
    const json_t *api = container(res.pod, "containers", "api");
    const json_t *worker = container(res.pod, "containers", "worker");
    const json_t *proxy = container(res.pod, "containers", "weft-proxy");

    /*
     * Replaced at the original indices, before the proxy shifts containers by one; a tcpSocket
     * or grpc handler is removed and an httpGet added in its place.
     */
    CHECK_JSON(paths, "[\"replace /spec/containers/0/livenessProbe/httpGet\","
                      "\"replace /spec/containers/0/readinessProbe/httpGet\","
                      "\"replace /spec/containers/0/startupProbe/httpGet\","
                      "\"remove /spec/containers/1/livenessProbe/tcpSocket\","
                      "\"add /spec/containers/1/livenessProbe/httpGet\","
                      "\"remove /spec/containers/1/startupProbe/grpc\","
                      "\"add /spec/containers/1/startupProbe/httpGet\","
                      "\"add /spec/initContainers\",\"add /spec/containers/0\","
                      "\"add /spec/volumes\",\"add /metadata/annotations\"]");
    CHECK_JSON(json_object_get(api, "livenessProbe"),
               "{\"httpGet\":{\"path\":\"/app-health/api/livez\",\"port\":15020},"
               "\"initialDelaySeconds\":5,\"periodSeconds\":10}");
    CHECK_JSON(json_object_get(api, "readinessProbe"),
               "{\"httpGet\":{\"path\":\"/app-health/api/readyz\",\"port\":15020},"
               "\"timeoutSeconds\":4}");
    CHECK_JSON(json_object_get(api, "startupProbe"),
               "{\"httpGet\":{\"path\":\"/app-health/api/startupz\",\"port\":15020},"
               "\"failureThreshold\":30}");
    /*
     * Through the proxy a tcpSocket probe would always pass and a grpc probe always fail:
     * both go to the agent. exec runs in the container and stays.
     */
    CHECK_JSON(json_object_get(worker, "livenessProbe"),
               "{\"httpGet\":{\"path\":\"/app-health/worker/livez\",\"port\":15020}}");
    CHECK_JSON(json_object_get(worker, "startupProbe"),
               "{\"httpGet\":{\"path\":\"/app-health/worker/startupz\",\"port\":15020}}");
    CHECK_JSON(json_object_get(worker, "readinessProbe"),
               "{\"exec\":{\"command\":[\"cat\",\"/tmp/ready\"]}}");
    CHECK_STR(annotation(res.pod, "weft.dev/original-probes"),
              "{\"api\":{\"livenessProbe\":{\"httpGet\":{\"path\":\"/live\",\"port\":\"http\","
              "\"httpHeaders\":[{\"name\":\"X-Probe\",\"value\":\"kubelet\"}]}},"
              "\"readinessProbe\":{\"httpGet\":{\"path\":\"/ready\",\"port\":9090,\"scheme\":"
              "\"HTTPS\"}},\"startupProbe\":{\"httpGet\":{\"port\":\"admin\"}}},\"worker\":{"
              "\"livenessProbe\":{\"tcpSocket\":{\"port\":7000}},\"startupProbe\":{\"grpc\":"
              "{\"port\":7001}}}}");
    CHECK_STR(env_value(proxy, "WEFT_APP_PROBES"),
              "{\"/app-health/api/livez\":{\"httpGet\":{\"scheme\":\"HTTP\",\"port\":8080,"
              "\"path\":\"/live\",\"httpHeaders\":[{\"name\":\"X-Probe\",\"value\":"
              "\"kubelet\"}]},\"timeoutSeconds\":1},\"/app-health/api/readyz\":{\"httpGet\":{"
              "\"scheme\":\"HTTPS\",\"port\":9090,\"path\":\"/ready\"},\"timeoutSeconds\":4},"
              "\"/app-health/api/startupz\":{\"httpGet\":{\"scheme\":\"HTTP\",\"port\":9090,"
              "\"path\":\"/\"},\"timeoutSeconds\":1},\"/app-health/worker/livez\":{"
              "\"tcpSocket\":{\"port\":7000},\"timeoutSeconds\":1},"
              "\"/app-health/worker/startupz\":{\"grpc\":{\"port\":7001},\"timeoutSeconds\":1}}");
    CHECK_STR(env_value(proxy, "WEFT_APP_CONTAINERS"), "api,worker,sidecar-log");
    CHECK_JSON(res.warnings, "[\"container sidecar-log: livenessProbe port cannot be resolved; "
                             "probe left unchanged\"]");
    json_decref(paths);
    webhook_result_release(&res);
}

static void t_golden_existing(void)
{
    struct webhook_result res = golden("existing", false, NULL);
    json_t *paths = op_paths(res.patch);

    /* Existing lists are appended to, existing annotations get one op each, keys escaped. */
    CHECK_JSON(paths, "[\"add /spec/initContainers/-\",\"add /spec/containers/0\","
                      "\"add /spec/volumes/-\",\"add /spec/volumes/-\",\"add /spec/volumes/-\","
                      "\"add /spec/volumes/-\",\"add /metadata/annotations/weft.dev~1status\"]");
    /* User init containers run before weft-init (plain network), the user's annotations stay. */
    CHECK_STR(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_object_get(res.pod, "spec"), "initContainers"), 1),
            "name")),
        "weft-init");
    CHECK_STR(annotation(res.pod, "prometheus.io/scrape"), "false");
    CHECK(annotation(res.pod, "prometheus.io/port") == NULL);
    CHECK_STR(annotation(res.pod, "kubectl.kubernetes.io/default-container"), "app");
    CHECK_STR(annotation(res.pod, "weft.dev/status"),
              "{\"version\":\"1.2.3\",\"initContainers\":[\"weft-init\"],\"containers\":"
              "[\"weft-proxy\"],\"volumes\":[\"weft-data\",\"weft-token\",\"weft-ca\","
              "\"weft-podinfo\"],\"annotations\":[],\"created\":[]}");
    json_decref(paths);
    webhook_result_release(&res);
}

static void t_golden_nonroot(void)
{
    struct webhook_result res = golden("nonroot", false, NULL);
    const json_t *init = container(res.pod, "initContainers", "weft-init");
    const json_t *proxy = container(res.pod, "containers", "weft-proxy");

    CHECK_JSON(json_object_get(init, "securityContext"),
               "{\"runAsUser\":0,\"runAsGroup\":0,\"runAsNonRoot\":false,\"privileged\":false,"
               "\"allowPrivilegeEscalation\":false,\"readOnlyRootFilesystem\":false,"
               "\"capabilities\":{\"add\":[\"NET_ADMIN\",\"NET_RAW\"],\"drop\":[\"ALL\"]}}");
    CHECK_JSON(json_object_get(proxy, "securityContext"),
               "{\"runAsUser\":1337,\"runAsGroup\":1337,\"runAsNonRoot\":true,\"privileged\":"
               "false,\"allowPrivilegeEscalation\":false,\"readOnlyRootFilesystem\":true,"
               "\"capabilities\":{\"drop\":[\"ALL\"]}}");
    webhook_result_release(&res);
}

static void t_golden_generatename(void)
{
    struct webhook_result res = golden("generatename", false, NULL);

    CHECK_STR(annotation(res.pod, "kubectl.kubernetes.io/default-container"), "checkout");
    CHECK(env_value(container(res.pod, "containers", "weft-proxy"), "WEFT_EXIT_ON_COMPLETION") ==
          NULL);
    webhook_result_release(&res);
}

static void t_golden_job(void)
{
    struct webhook_result res = golden("job", false, NULL);

    CHECK_STR(env_value(container(res.pod, "containers", "weft-proxy"), "WEFT_EXIT_ON_COMPLETION"),
              "true");
    webhook_result_release(&res);
}

static void t_golden_native_job(void)
{
    struct webhook_result res = golden("native-job", true, NULL);
    const json_t *proxy = container(res.pod, "initContainers", "weft-proxy");

    CHECK(proxy != NULL);
    CHECK(container(res.pod, "containers", "weft-proxy") == NULL);
    CHECK(env_value(proxy, "WEFT_EXIT_ON_COMPLETION") == NULL);
    CHECK_STR(env_value(proxy, "WEFT_SIDECAR_MODE"), "native");
    webhook_result_release(&res);
}

static void t_golden_native(void)
{
    struct webhook_result res = golden("native", true, NULL);
    json_t *paths = op_paths(res.patch);
    const json_t *init = json_object_get(json_object_get(res.pod, "spec"), "initContainers");
    const json_t *proxy = json_array_get(init, 1);

    CHECK_JSON(paths, "[\"replace /spec/containers/0/livenessProbe/httpGet\","
                      "\"add /spec/initContainers/0\",\"add /spec/initContainers/1\","
                      "\"add /spec/volumes\",\"add /metadata/annotations/kubectl.kubernetes.io~1"
                      "default-container\",\"add /metadata/annotations/prometheus.io~1scrape\","
                      "\"add /metadata/annotations/prometheus.io~1port\","
                      "\"add /metadata/annotations/prometheus.io~1path\","
                      "\"add /metadata/annotations/weft.dev~1original-probes\","
                      "\"add /metadata/annotations/weft.dev~1status\"]");
    CHECK_STR(json_string_value(json_object_get(json_array_get(init, 0), "name")), "weft-init");
    CHECK_STR(json_string_value(json_object_get(proxy, "name")), "weft-proxy");
    CHECK_STR(json_string_value(json_object_get(json_array_get(init, 2), "name")), "fetch-config");
    CHECK_STR(json_string_value(json_object_get(proxy, "restartPolicy")), "Always");
    CHECK_JSON(json_object_get(proxy, "startupProbe"),
               "{\"httpGet\":{\"path\":\"/healthz/ready\",\"port\":15020},\"periodSeconds\":1,"
               "\"timeoutSeconds\":3,\"failureThreshold\":600}");
    CHECK(json_object_get(proxy, "lifecycle") == NULL);
    CHECK_INT(json_array_size(json_object_get(json_object_get(res.pod, "spec"), "containers")), 1);
    json_decref(paths);
    webhook_result_release(&res);
}

static void t_golden_volume_clash(void)
{
    struct webhook_result res = golden("volume-clash", false, NULL);
    const json_t *proxy = container(res.pod, "containers", "weft-proxy");
    json_t *mounts = json_object_get(proxy, "volumeMounts");

    CHECK_STR(json_string_value(json_object_get(json_array_get(mounts, 0), "name")), "weft-data");
    CHECK_STR(json_string_value(json_object_get(json_array_get(mounts, 1), "name")),
              "weft-token-2");
    CHECK_STR(json_string_value(json_object_get(json_array_get(mounts, 2), "name")), "weft-ca-1");
    CHECK(strstr(annotation(res.pod, "weft.dev/status"),
                 "\"volumes\":[\"weft-data\",\"weft-token-2\",\"weft-ca-1\",\"weft-podinfo\"]"));
    /* The user's volumes are untouched. */
    CHECK_JSON(json_array_get(json_object_get(json_object_get(res.pod, "spec"), "volumes"), 0),
               "{\"name\":\"weft-token\",\"secret\":{\"secretName\":\"my-token\"}}");
    webhook_result_release(&res);
}

static void t_golden_traffic(void)
{
    struct webhook_result res = golden("traffic", false, NULL);
    const json_t *init = container(res.pod, "initContainers", "weft-init");
    const json_t *proxy = container(res.pod, "containers", "weft-proxy");

    CHECK_JSON(json_object_get(init, "args"),
               "[\"--proxy-uid\",\"1337\",\"--outbound-port\",\"15001\",\"--inbound-port\","
               "\"15006\",\"--include-inbound-ports\",\"8080,9090\",\"--exclude-inbound-ports\","
               "\"9091,15020,15090\",\"--exclude-outbound-ports\",\"5432,6379\","
               "\"--include-outbound-ip-ranges\",\"10.0.0.0/8,fd00::/8\","
               "\"--exclude-outbound-ip-ranges\",\"169.254.169.254/32\"]");
    CHECK_JSON(json_object_get(proxy, "resources"),
               "{\"requests\":{\"cpu\":\"250m\",\"memory\":\"256Mi\"},\"limits\":{\"cpu\":\"1\","
               "\"memory\":\"1Gi\"}}");
    /* The init container keeps the configured resources, not the pod's overrides. */
    CHECK_JSON(json_object_get(init, "resources"),
               "{\"requests\":{\"cpu\":\"100m\",\"memory\":\"128Mi\"},\"limits\":{\"cpu\":\"2\","
               "\"memory\":\"1Gi\"}}");
    /* weft.dev/rewrite-app-probes: "false" */
    CHECK_JSON(json_object_get(container(res.pod, "containers", "app"), "readinessProbe"),
               "{\"httpGet\":{\"path\":\"/ready\",\"port\":8080}}");
    CHECK(annotation(res.pod, "weft.dev/original-probes") == NULL);
    webhook_result_release(&res);
}

static void t_golden_template(void)
{
    struct webhook_result res = golden("template", false, NULL);
    json_t *paths = op_paths(res.patch);

    CHECK_JSON(paths, "[\"add /spec/initContainers\",\"add /spec/containers/0\","
                      "\"add /spec/volumes\",\"add /metadata\"]");
    CHECK_STR(env_value(container(res.pod, "containers", "weft-proxy"), "WEFT_EXIT_ON_COMPLETION"),
              "true");
    json_decref(paths);
    webhook_result_release(&res);
}

/* Inject pod, apply the patch independently, uninject; returns the op paths. */
static json_t *roundtrip(const char *pod, bool native)
{
    struct inject_config cfg = test_cfg(native);
    struct webhook_result res = {0};
    struct diag msg = {0, ""};
    json_t *in = jparse(pod), *patched = NULL, *undone = NULL, *paths;

    REQUIRE(webhook_pod_inject(&cfg, in, "shop", &res, &msg) == 0);
    REQUIRE(res.verdict == WEBHOOK_INJECTED);
    CHECK_INT(patch_json(in, res.patch, &patched, msg.text, sizeof(msg.text)), 0);
    CHECK_JSONV(patched, res.pod);
    CHECK_INT(webhook_pod_uninject(res.pod, &undone, &msg), 0);
    CHECK_JSONV(undone, in);
    paths = op_paths(res.patch);
    json_decref(patched);
    json_decref(undone);
    json_decref(in);
    webhook_result_release(&res);
    return paths;
}

/* "annotations:" with nothing after it is an explicit null: replaced, and restored as null. */
static void t_null_parents(void)
{
    json_t *p;

    p = roundtrip("{\"metadata\":{\"name\":\"n\",\"annotations\":null},\"spec\":{"
                  "\"initContainers\":null,\"volumes\":null,\"containers\":[{\"name\":\"a\"}]}}",
                  false);
    CHECK_JSON(p, "[\"add /spec/initContainers\",\"add /spec/containers/0\","
                  "\"add /spec/volumes\",\"add /metadata/annotations\"]");
    json_decref(p);
    p = roundtrip("{\"metadata\":null,\"spec\":{\"initContainers\":null,\"containers\":"
                  "[{\"name\":\"a\"}]}}",
                  true);
    CHECK_JSON(p, "[\"add /spec/initContainers\",\"add /spec/volumes\",\"add /metadata\"]");
    json_decref(p);
    /* Existing but empty lists and maps are kept (as empty) by uninjection. */
    p = roundtrip("{\"metadata\":{\"annotations\":{}},\"spec\":{\"initContainers\":[],"
                  "\"volumes\":[],\"containers\":[{\"name\":\"a\"}]}}",
                  true);
    CHECK_JSON(p, "[\"add /spec/initContainers/-\",\"add /spec/initContainers/-\","
                  "\"add /spec/volumes/-\",\"add /spec/volumes/-\",\"add /spec/volumes/-\","
                  "\"add /spec/volumes/-\",\"add /metadata/annotations/kubectl.kubernetes.io~1"
                  "default-container\",\"add /metadata/annotations/prometheus.io~1scrape\","
                  "\"add /metadata/annotations/prometheus.io~1port\","
                  "\"add /metadata/annotations/prometheus.io~1path\","
                  "\"add /metadata/annotations/weft.dev~1status\"]");
    json_decref(p);
}

/* ---- skip and deny ---- */

static void expect_skip(const char *pod, const char *ns, const char *reason)
{
    struct inject_config cfg = test_cfg(false);
    struct webhook_result res = {0};
    struct diag msg = {0, ""};
    json_t *p = jparse(pod);
    int rc = webhook_pod_inject(&cfg, p, ns, &res, &msg);

    CHECK_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "  msg: %s\n", msg.text);
    CHECK_INT(res.verdict, WEBHOOK_SKIPPED);
    CHECK_STR(res.reason, reason);
    CHECK(res.pod == NULL && res.patch == NULL);
    webhook_result_release(&res);
    json_decref(p);
}

#define POD_A(annots)                                                                              \
    "{\"metadata\":{\"name\":\"p\",\"annotations\":{" annots "}},"                                 \
    "\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"x\"}]}}"

/* weft.dev/access-log reaches the agent as --access-log; without it the agent's default. */
static void t_access_log_annotation(void)
{
    static const char *const v[] = {"all", "decisions", NULL};

    for (int i = 0; i < 3; i++) {
        struct inject_config cfg = test_cfg(true);
        struct webhook_result res = {0};
        struct diag msg = {0, ""};
        char pod[256], want[128];
        json_t *in;

        if (v[i]) {
            snprintf(pod, sizeof(pod), POD_A("\"weft.dev/access-log\":\"%s\""), v[i]);
            snprintf(want, sizeof(want), "[\"--log-level\",\"info\",\"--access-log\",\"%s\"]",
                     v[i]);
        } else {
            snprintf(pod, sizeof(pod), POD_A(""));
            snprintf(want, sizeof(want), "[\"--log-level\",\"info\"]");
        }
        in = jparse(pod);
        REQUIRE(webhook_pod_inject(&cfg, in, "shop", &res, &msg) == 0);
        CHECK_JSON(json_object_get(container(res.pod, "initContainers", "weft-proxy"), "args"),
                   want);
        json_decref(in);
        webhook_result_release(&res);
    }
}

static void t_skips(void)
{
    expect_skip("{\"spec\":{\"hostNetwork\":true,\"containers\":[{\"name\":\"a\"}]}}", "shop",
                "hostNetwork pod");
    expect_skip(POD_A("\"weft.dev/inject\":\"false\""), "shop",
                "opted out by annotation weft.dev/inject");
    expect_skip("{\"metadata\":{\"labels\":{\"weft.dev/inject\":\"false\"}},"
                "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
                "shop", "opted out by label weft.dev/inject");
    expect_skip(POD_A("\"weft.dev/status\":\"{}\""), "shop", "already injected");
    expect_skip("{\"spec\":{\"containers\":[{\"name\":\"weft-proxy\"},{\"name\":\"a\"}]}}", "shop",
                "already injected");
    expect_skip("{\"spec\":{\"initContainers\":[{\"name\":\"weft-init\"}],"
                "\"containers\":[{\"name\":\"a\"}]}}",
                "shop", "already injected");
    expect_skip(POD_A(""), "kube-system", "system namespace");
    expect_skip("{\"metadata\":{\"namespace\":\"weft-system\"},"
                "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
                NULL, "system namespace");
    /* Never inject into system namespaces, even when asked to; bad values are not judged. */
    expect_skip(POD_A("\"weft.dev/inject\":\"true\""), "kube-system", "system namespace");
    expect_skip(POD_A("\"weft.dev/inject\":\"maybe\""), "weft-system", "system namespace");
    /* An opted-out pod's other annotations are not validated. */
    expect_skip(POD_A("\"weft.dev/inject\":\"false\",\"traffic.weft.dev/exclude-inbound-ports\":"
                      "\"*\""),
                "shop", "opted out by annotation weft.dev/inject");
    /* The annotation wins over the label. */
    {
        struct inject_config cfg = test_cfg(false);
        struct webhook_result res = {0};
        struct diag msg = {0, ""};
        json_t *p = jparse("{\"metadata\":{\"labels\":{\"weft.dev/inject\":\"false\"},"
                           "\"annotations\":{\"weft.dev/inject\":\"true\"}},"
                           "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}");

        CHECK_INT(webhook_pod_inject(&cfg, p, "shop", &res, &msg), 0);
        CHECK_INT(res.verdict, WEBHOOK_INJECTED);
        webhook_result_release(&res);
        json_decref(p);
    }
}

static void expect_deny(const char *pod, const char *want)
{
    struct inject_config cfg = test_cfg(false);
    struct webhook_result res = {0};
    struct diag msg = {0, ""};
    json_t *p = jparse(pod);

    CHECK_INT(webhook_pod_inject(&cfg, p, "shop", &res, &msg), ERR_INVALID);
    CHECK_STR(msg.text, want);
    CHECK(res.verdict == 0 && res.pod == NULL && res.warnings == NULL);
    json_decref(p);
}

/* The opt-in path: the namespace is not selected, so only pods that ask are injected. */
static int opt_in_verdict(const char *pod, const char *ns, char *reason, size_t len)
{
    struct inject_config cfg = test_cfg(false);
    struct webhook_result res = {0};
    struct diag msg = {0, ""};
    json_t *p = jparse(pod);
    int rc, verdict;

    cfg.opt_in_only = true;
    rc = webhook_pod_inject(&cfg, p, ns, &res, &msg);
    verdict = rc == 0 ? (int)res.verdict : rc;
    snprintf(reason, len, "%s", rc == 0 ? res.reason : msg.text);
    if (rc == 0 && res.verdict == WEBHOOK_INJECTED)
        CHECK(res.patch != NULL && res.pod != NULL);
    webhook_result_release(&res);
    json_decref(p);
    return verdict;
}

static void t_opt_in(void)
{
    char why[256];

    /* nothing asks: skipped, with the reason */
    CHECK_INT(opt_in_verdict(POD_A(""), "web", why, sizeof(why)), WEBHOOK_SKIPPED);
    CHECK_STR(why, "namespace not selected for injection and the pod does not opt in "
                   "(weft.dev/inject: \"true\")");
    /* the annotation asks */
    CHECK_INT(opt_in_verdict(POD_A("\"weft.dev/inject\":\"true\""), "web", why, sizeof(why)),
              WEBHOOK_INJECTED);
    /* the label asks, when there is no annotation */
    CHECK_INT(opt_in_verdict("{\"metadata\":{\"labels\":{\"weft.dev/inject\":\"true\"}},"
                             "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
                             "web", why, sizeof(why)),
              WEBHOOK_INJECTED);
    /* the annotation wins over the label, both ways */
    CHECK_INT(opt_in_verdict("{\"metadata\":{\"labels\":{\"weft.dev/inject\":\"true\"},"
                             "\"annotations\":{\"weft.dev/inject\":\"false\"}},"
                             "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
                             "web", why, sizeof(why)),
              WEBHOOK_SKIPPED);
    CHECK_STR(why, "opted out by annotation weft.dev/inject");
    CHECK_INT(opt_in_verdict("{\"metadata\":{\"labels\":{\"weft.dev/inject\":\"false\"},"
                             "\"annotations\":{\"weft.dev/inject\":\"true\"}},"
                             "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
                             "web", why, sizeof(why)),
              WEBHOOK_INJECTED);
    /* other label values do not ask */
    CHECK_INT(opt_in_verdict("{\"metadata\":{\"labels\":{\"weft.dev/inject\":\"enabled\"}},"
                             "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
                             "web", why, sizeof(why)),
              WEBHOOK_SKIPPED);
    /* asking does not override the other rules */
    CHECK_INT(
        opt_in_verdict(POD_A("\"weft.dev/inject\":\"true\""), "kube-system", why, sizeof(why)),
        WEBHOOK_SKIPPED);
    CHECK_STR(why, "system namespace");
    CHECK_INT(opt_in_verdict("{\"metadata\":{\"annotations\":{\"weft.dev/inject\":\"true\"}},"
                             "\"spec\":{\"hostNetwork\":true,\"containers\":[{\"name\":\"a\"}]}}",
                             "web", why, sizeof(why)),
              WEBHOOK_SKIPPED);
    CHECK_STR(why, "hostNetwork pod");
    CHECK_INT(opt_in_verdict(POD_A("\"weft.dev/inject\":\"true\",\"weft.dev/status\":\"{}\""),
                             "web", why, sizeof(why)),
              WEBHOOK_SKIPPED);
    CHECK_STR(why, "already injected");
    /* a pod that does not ask is not judged on its other annotations */
    CHECK_INT(opt_in_verdict(POD_A("\"traffic.weft.dev/exclude-inbound-ports\":\"*\""), "web", why,
                             sizeof(why)),
              WEBHOOK_SKIPPED);
    /* a malformed weft.dev/inject is still refused with the reason */
    CHECK_INT(opt_in_verdict(POD_A("\"weft.dev/inject\":\"enabled\""), "web", why, sizeof(why)),
              ERR_INVALID);
    CHECK(strstr(why, "weft.dev/inject") != NULL);
}

static void t_denials(void)
{
    expect_deny(POD_A("\"traffic.weft.dev/exclude-inbound-ports\":\"*\""),
                "annotation traffic.weft.dev/exclude-inbound-ports: \"*\" is not allowed here "
                "(want comma-separated ports 1-65535)");
    expect_deny(POD_A("\"traffic.weft.dev/include-inbound-ports\":\"80,http\""),
                "annotation traffic.weft.dev/include-inbound-ports: invalid item \"http\" (want "
                "\"*\" or comma-separated ports 1-65535)");
    expect_deny(POD_A("\"traffic.weft.dev/exclude-outbound-ports\":\"70000\""),
                "annotation traffic.weft.dev/exclude-outbound-ports: invalid item \"70000\" (want "
                "comma-separated ports 1-65535)");
    expect_deny(POD_A("\"traffic.weft.dev/exclude-outbound-ip-ranges\":\"10.0.0.1\""),
                "annotation traffic.weft.dev/exclude-outbound-ip-ranges: invalid item "
                "\"10.0.0.1\" (want comma-separated CIDRs such as 10.0.0.0/8)");
    expect_deny(POD_A("\"traffic.weft.dev/include-outbound-ip-ranges\":\"10.0.0.0/8,,\""),
                "annotation traffic.weft.dev/include-outbound-ip-ranges: empty item in "
                "\"10.0.0.0/8,,\" (want \"*\" or comma-separated CIDRs such as 10.0.0.0/8)");
    expect_deny(POD_A("\"weft.dev/inject\":\"enabled\""),
                "annotation weft.dev/inject: \"enabled\" is not \"true\" or \"false\"");
    expect_deny(POD_A("\"weft.dev/rewrite-app-probes\":\"no\""),
                "annotation weft.dev/rewrite-app-probes: \"no\" is not \"true\" or \"false\"");
    expect_deny(POD_A("\"weft.dev/access-log\":\"verbose\""),
                "annotation weft.dev/access-log: \"verbose\" is not decisions or all");
    expect_deny(POD_A("\"weft.dev/proxy-memory\":\"lots\""),
                "annotation weft.dev/proxy-memory: \"lots\" is not a Kubernetes quantity (such as "
                "100m, 1, 128Mi)");
    expect_deny(POD_A("\"weft.dev/proxy-cpu\":\"3\""),
                "annotation weft.dev/proxy-cpu: proxy cpu request 3 exceeds its limit 2");
    expect_deny(POD_A("\"weft.dev/proxy-memory-limit\":\"64Mi\""),
                "annotation weft.dev/proxy-memory-limit: proxy memory request 128Mi exceeds its "
                "limit 64Mi");
    /* Shapes the API server would never send, but weftctl may read. */
    expect_deny("{\"spec\":{}}", "spec.containers: missing or empty");
    expect_deny("{\"spec\":{\"containers\":[]}}", "spec.containers: missing or empty");
    expect_deny("{\"metadata\":{}}", "spec: missing");
    expect_deny("[]", "pod: must be an object");
    expect_deny("{\"spec\":{\"containers\":{}}}", "spec.containers: must be a list");
    expect_deny("{\"spec\":{\"containers\":[{\"image\":\"x\"}]}}",
                "spec.containers[0]: must be an object with a name");
    expect_deny("{\"spec\":{\"containers\":[{\"name\":\"a\"}],\"volumes\":[7]}}",
                "spec.volumes[0]: must be an object with a name");
    expect_deny("{\"metadata\":{\"annotations\":{\"a\":1}},\"spec\":{\"containers\":[{\"name\":"
                "\"a\"}]}}",
                "metadata.annotations.a: must be a string");
    expect_deny("{\"metadata\":{\"annotations\":[]},\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
                "metadata.annotations: must be an object");
}

static void t_port_clash_warning(void)
{
    struct inject_config cfg = test_cfg(false);
    struct webhook_result res = {0};
    struct diag msg = {0, ""};
    json_t *p = jparse("{\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":[{\"containerPort\":"
                       "15006},{\"containerPort\":8080}]}]}}");

    CHECK_INT(webhook_pod_inject(&cfg, p, "shop", &res, &msg), 0);
    CHECK_JSON(res.warnings,
               "[\"container a: port 15006 is reserved for the weft-proxy sidecar\"]");
    webhook_result_release(&res);
    json_decref(p);
}

static void t_uninject_errors(void)
{
    struct diag msg = {0, ""};
    json_t *out = NULL, *p;

    p = jparse(POD_A("\"weft.dev/status\":\"not json\""));
    CHECK_INT(webhook_pod_uninject(p, &out, &msg), ERR_INVALID);
    CHECK_STR(msg.text, "annotation weft.dev/status: not what injection writes");
    CHECK(out == NULL);
    json_decref(p);
    p = jparse(POD_A("\"weft.dev/status\":\"{\\\"version\\\":\\\"1\\\",\\\"initContainers\\\":"
                     "[1],\\\"containers\\\":[],\\\"volumes\\\":[],\\\"annotations\\\":[],"
                     "\\\"created\\\":[]}\""));
    CHECK_INT(webhook_pod_uninject(p, &out, &msg), ERR_INVALID);
    json_decref(p);
    /* Not injected: an equal copy. */
    p = jparse(POD_A("\"a\":\"b\""));
    CHECK_INT(webhook_pod_uninject(p, &out, &msg), 0);
    CHECK_JSONV(out, p);
    CHECK(out != p);
    json_decref(out);
    json_decref(p);
    p = jparse("7");
    CHECK_INT(webhook_pod_uninject(p, &out, &msg), ERR_INVALID);
    json_decref(p);
    /* weft.dev/original-probes that injection did not write: refused, naming where */
    {
        static const char *const bad_probes[] = {
            "{\\\"app\\\":{\\\"livenessProbe\\\":{\\\"port\\\":80}}}",
            "{\\\"app\\\":{\\\"livenessProbe\\\":{\\\"exec\\\":{}}}}",
            "{\\\"app\\\":{\\\"livenessProbe\\\":{\\\"httpGet\\\":{},\\\"grpc\\\":{}}}}",
            "{\\\"app\\\":{\\\"livenessProbe\\\":{\\\"tcpSocket\\\":7}}}",
        };

        for (size_t i = 0; i < ARRAY_LEN(bad_probes); i++) {
            char *pod;

            REQUIRE(asprintf(&pod,
                             POD_A("\"weft.dev/status\":\"{\\\"version\\\":\\\"1\\\","
                                   "\\\"initContainers\\\":[],\\\"containers\\\":[],"
                                   "\\\"volumes\\\":[],\\\"annotations\\\":[\\\"weft.dev/"
                                   "original-probes\\\"],\\\"created\\\":[]}\","
                                   "\"weft.dev/original-probes\":\"%s\""),
                             bad_probes[i]) > 0);
            p = jparse(pod);
            msg.text[0] = '\0';
            CHECK_INT(webhook_pod_uninject(p, &out, &msg), ERR_INVALID);
            CHECK_STR(msg.text, "annotation weft.dev/original-probes: container app livenessProbe: "
                                "not {\"httpGet\"|\"tcpSocket\"|\"grpc\": {...}}");
            json_decref(p);
            free(pod);
        }
    }
}

/* ---- AdmissionReview ---- */

static const char *const POD = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":"
                               "\"web\"},\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":"
                               "\"nginx\"}]}}";

/* Expect allowed without patch, uid echoed. */
static void expect_allowed(const struct inject_config *cfg, const char *body, const char *uid)
{
    int status;
    json_t *r = review(cfg, body, &status);

    CHECK_INT(status, 200);
    CHECK_STR(json_string_value(json_object_get(r, "apiVersion")), "admission.k8s.io/v1");
    CHECK_STR(json_string_value(json_object_get(r, "kind")), "AdmissionReview");
    {
        char *w;
        REQUIRE(asprintf(&w, "{\"uid\":\"%s\",\"allowed\":true}", uid) > 0);
        CHECK_JSON(json_object_get(r, "response"), w);
        free(w);
    }
    json_decref(r);
}

static void t_review_passthrough(void)
{
    struct inject_config cfg = test_cfg(false);
    json_t *pod = jparse(POD);
    char *b;

    b = review_body("u-up", "UPDATE", "", "Pod", NULL, false, "shop", pod);
    expect_allowed(&cfg, b, "u-up");
    free(b);
    b = review_body("u-del", "DELETE", "", "Pod", NULL, false, "shop", NULL);
    expect_allowed(&cfg, b, "u-del");
    free(b);
    b = review_body("u-con", "CONNECT", "", "Pod", "exec", false, "shop", NULL);
    expect_allowed(&cfg, b, "u-con");
    free(b);
    b = review_body("u-dep", "CREATE", "apps", "Deployment", NULL, false, "shop", pod);
    expect_allowed(&cfg, b, "u-dep");
    free(b);
    b = review_body("u-cm", "CREATE", "", "ConfigMap", NULL, false, "shop", pod);
    expect_allowed(&cfg, b, "u-cm");
    free(b);
    b = review_body("u-sub", "CREATE", "", "Pod", "binding", false, "shop", pod);
    expect_allowed(&cfg, b, "u-sub");
    free(b);
    b = review_body("u-ks", "CREATE", "", "Pod", NULL, false, "kube-system", pod);
    expect_allowed(&cfg, b, "u-ks");
    free(b);
    /* Empty subResource is the main resource. */
    {
        int status;
        json_t *r;

        b = review_body("u-empty-sub", "CREATE", "", "Pod", "", false, "shop", pod);
        r = review(&cfg, b, &status);
        CHECK_INT(status, 200);
        CHECK_STR(json_string_value(json_object_get(json_object_get(r, "response"), "patchType")),
                  "JSONPatch");
        json_decref(r);
        free(b);
    }
    /* A dry run is answered exactly as the real create: the same patch and warnings. */
    {
        int status, status_dry;
        json_t *r, *rd, *resp, *resp_dry;

        b = review_body("u-dry", "CREATE", "", "Pod", NULL, false, "shop", pod);
        r = review(&cfg, b, &status);
        free(b);
        b = review_body("u-dry", "CREATE", "", "Pod", NULL, true, "shop", pod);
        rd = review(&cfg, b, &status_dry);
        free(b);
        CHECK_INT(status_dry, 200);
        CHECK_INT(status, 200);
        resp = json_object_get(r, "response");
        resp_dry = json_object_get(rd, "response");
        CHECK_STR(json_string_value(json_object_get(resp_dry, "patchType")), "JSONPatch");
        CHECK(json_is_string(json_object_get(resp_dry, "patch")));
        CHECK(json_equal(resp, resp_dry));
        json_decref(r);
        json_decref(rd);
    }
    json_decref(pod);
}

static void expect_400(const char *body, size_t len, const char *message)
{
    struct inject_config cfg = test_cfg(false);
    char *resp = (char *)"sentinel";
    int status = -1;
    json_t *r, *want;

    REQUIRE(webhook_review(&cfg, body, len, &resp, &status) == 0);
    CHECK_INT(status, 400);
    r = jparse(resp);
    want = json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion", "v1",
                     "metadata", "status", "Failure", "message", message, "reason", "BadRequest",
                     "code", 400);
    CHECK_JSONV(r, want);
    json_decref(want);
    json_decref(r);
    free(resp);
}

#define E400(body, msg) expect_400((body), strlen(body), (msg))

static void t_review_malformed(void)
{
    E400("{\"apiVersion\":", "malformed AdmissionReview: premature end of input (a value "
                             "expected) at line 1, column 15 (byte 14)");
    E400("{\n  \"apiVersion\": \"v1\",\n  \"kind\": tru\n}",
         "malformed AdmissionReview: invalid token at line 3, column 11 (byte 34)");
    E400(" ", "malformed AdmissionReview: '[' or '{' expected at line 1, column 2 (byte 1)");
    E400("", "malformed AdmissionReview: empty body");
    expect_400(NULL, 0, "malformed AdmissionReview: empty body");
    E400("[1]", "malformed AdmissionReview: not an object");
    E400("{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\",\"request\":"
         "{\"uid\":\"x\"}}",
         "unsupported AdmissionReview apiVersion \"admission.k8s.io/v1beta1\" (want "
         "admission.k8s.io/v1)");
    E400("{\"kind\":\"AdmissionReview\"}",
         "unsupported AdmissionReview apiVersion \"\" (want admission.k8s.io/v1)");
    E400("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"Pod\"}",
         "unexpected kind \"Pod\" (want AdmissionReview)");
    E400("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
         "AdmissionReview has no request");
    E400("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":7}",
         "AdmissionReview has no request");
    E400("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":"
         "{\"operation\":\"CREATE\"}}",
         "AdmissionReview request has no uid");
    E400("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":"
         "{\"uid\":\"\"}}",
         "AdmissionReview request has no uid");
    E400("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":"
         "{\"uid\":\"u9\",\"operation\":\"CREATE\"}}",
         "AdmissionReview request u9 lacks operation or kind");
    E400("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":"
         "{\"uid\":\"u9\",\"operation\":\"CREATE\",\"kind\":{\"group\":\"\",\"version\":\"v1\","
         "\"kind\":\"Pod\"}}}",
         "AdmissionReview request u9 has no object to admit");
    /* Trailing garbage and an embedded NUL are malformed, not silently accepted. */
    {
        static const char nul[] = "{\"a\":1}\0{}";
        expect_400(nul, sizeof(nul) - 1,
                   "malformed AdmissionReview: end of input expected after the top-level value "
                   "at line 1, column 8 (byte 7)");
    }
}

/* What webhook_review_explain reports for each kind of answer. */
static void expect_outcome(const struct inject_config *cfg, const char *body,
                           enum webhook_outcome want, const char *pod, const char *reason)
{
    struct webhook_review_info info;
    char *resp = NULL;
    int status;

    REQUIRE(webhook_review_explain(cfg, body, body ? strlen(body) : 0, &resp, &status, &info) == 0);
    CHECK_STR(webhook_outcome_name(info.outcome), webhook_outcome_name(want));
    CHECK_STR(info.pod, pod);
    CHECK_STR(info.reason, reason);
    free(resp);
}

static void t_review_outcomes(void)
{
    struct inject_config cfg = test_cfg(false), opt = test_cfg(false);
    json_t *pod = jparse(POD), *gen = jparse("{\"metadata\":{\"generateName\":\"web-7d9-\"},"
                                             "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}");
    char *b;

    opt.opt_in_only = true;
    b = review_body("u1", "CREATE", "", "Pod", NULL, false, "shop", pod);
    expect_outcome(&cfg, b, WEBHOOK_OUTCOME_INJECTED, "shop/web", "");
    expect_outcome(&opt, b, WEBHOOK_OUTCOME_SKIPPED, "shop/web",
                   "namespace not selected for injection and the pod does not opt in "
                   "(weft.dev/inject: \"true\")");
    free(b);
    b = review_body("u2", "CREATE", "", "Pod", NULL, false, "kube-system", gen);
    expect_outcome(&cfg, b, WEBHOOK_OUTCOME_SKIPPED, "kube-system/web-7d9-*", "system namespace");
    free(b);
    b = review_body("u3", "UPDATE", "", "Pod", NULL, false, "shop", pod);
    expect_outcome(&cfg, b, WEBHOOK_OUTCOME_PASSED, "shop/web", "UPDATE of Pod");
    free(b);
    b = review_body("u4", "CREATE", "", "Pod", "binding", false, "shop", pod);
    expect_outcome(&cfg, b, WEBHOOK_OUTCOME_PASSED, "shop/web", "CREATE of Pod/binding");
    free(b);
    b = review_body("u5", "CREATE", "", "Pod", NULL, true, "shop", pod);
    expect_outcome(&cfg, b, WEBHOOK_OUTCOME_INJECTED, "shop/web", "");
    free(b);
    b = review_body("u5b", "UPDATE", "", "Pod", NULL, true, "shop", pod);
    expect_outcome(&cfg, b, WEBHOOK_OUTCOME_PASSED, "shop/web", "UPDATE of Pod, dry run");
    free(b);
    b = review_body("u6", "CREATE", "apps", "Deployment", NULL, false, "shop", pod);
    expect_outcome(&cfg, b, WEBHOOK_OUTCOME_PASSED, "shop/web", "CREATE of Deployment (apps)");
    free(b);
    json_object_set_new(json_object_get(pod, "metadata"), "annotations",
                        json_pack("{s:s}", "weft.dev/inject", "maybe"));
    b = review_body("u7", "CREATE", "", "Pod", NULL, false, "shop", pod);
    expect_outcome(&cfg, b, WEBHOOK_OUTCOME_DENIED, "shop/web",
                   "annotation weft.dev/inject: \"maybe\" is not \"true\" or \"false\"");
    free(b);
    expect_outcome(&cfg, "{\"kind\":\"AdmissionReview\"}", WEBHOOK_OUTCOME_BAD_REQUEST, "",
                   "unsupported AdmissionReview apiVersion \"\" (want admission.k8s.io/v1)");
    expect_outcome(&cfg, NULL, WEBHOOK_OUTCOME_BAD_REQUEST, "",
                   "malformed AdmissionReview: empty body");
    json_decref(pod);
    json_decref(gen);
}

/* An app container running as the proxy's UID would bypass the redirection: refused. */
static void t_proxy_uid(void)
{
    struct inject_config cfg = test_cfg(false);
    struct webhook_result res = {0};
    struct diag msg = {0, ""};
    json_t *p;

    expect_deny("{\"spec\":{\"containers\":[{\"name\":\"a\"},{\"name\":\"b\","
                "\"securityContext\":{\"runAsUser\":1337}}]}}",
                "container \"b\" runs as UID 1337 (spec.containers[1].securityContext.runAsUser), "
                "the UID reserved for the weft-proxy sidecar: its traffic would bypass the proxy; "
                "run it as another user or opt the pod out with the annotation weft.dev/inject: "
                "\"false\"");
    expect_deny("{\"spec\":{\"securityContext\":{\"runAsUser\":1337},\"containers\":[{"
                "\"name\":\"a\",\"securityContext\":{\"runAsUser\":1000}},{\"name\":\"b\"}]}}",
                "container \"b\" runs as UID 1337 (spec.securityContext.runAsUser), the UID "
                "reserved for the weft-proxy sidecar: its traffic would bypass the proxy; run it "
                "as another user or opt the pod out with the annotation weft.dev/inject: "
                "\"false\"");

    /* The container's own UID wins over the pod's; other UIDs and a group of 1337 pass. */
    p = jparse("{\"spec\":{\"securityContext\":{\"runAsUser\":1337},\"containers\":[{"
               "\"name\":\"a\",\"securityContext\":{\"runAsUser\":0,\"runAsGroup\":1337}}]}}");
    CHECK_INT(webhook_pod_inject(&cfg, p, "shop", &res, &msg), 0);
    CHECK_INT(res.verdict, WEBHOOK_INJECTED);
    webhook_result_release(&res);
    json_decref(p);

    /* A user init container as 1337: not captured in classic mode (it runs before weft-init),
     * captured with native sidecars, so refused there only. */
    p = jparse("{\"spec\":{\"initContainers\":[{\"name\":\"setup\",\"securityContext\":{"
               "\"runAsUser\":1337}}],\"containers\":[{\"name\":\"a\"}]}}");
    CHECK_INT(webhook_pod_inject(&cfg, p, "shop", &res, &msg), 0);
    CHECK_INT(res.verdict, WEBHOOK_INJECTED);
    webhook_result_release(&res);
    cfg.native_sidecars = true;
    CHECK_INT(webhook_pod_inject(&cfg, p, "shop", &res, &msg), ERR_INVALID);
    CHECK_STR(msg.text,
              "init container \"setup\" runs as UID 1337 "
              "(spec.initContainers[0].securityContext.runAsUser), the UID reserved for the "
              "weft-proxy sidecar: its traffic would bypass the proxy; run it as another user "
              "or opt the pod out with the annotation weft.dev/inject: \"false\"");
    json_decref(p);

    /* Skipped pods are not checked (an opted-out pod may run as anything). */
    cfg.native_sidecars = false;
    p = jparse("{\"metadata\":{\"annotations\":{\"weft.dev/inject\":\"false\"}},\"spec\":{"
               "\"containers\":[{\"name\":\"a\",\"securityContext\":{\"runAsUser\":1337}}]}}");
    CHECK_INT(webhook_pod_inject(&cfg, p, "shop", &res, &msg), 0);
    CHECK_INT(res.verdict, WEBHOOK_SKIPPED);
    webhook_result_release(&res);
    json_decref(p);
}

static void t_review_deny_proxy_uid(void)
{
    struct inject_config cfg = test_cfg(false);
    json_t *pod = jparse("{\"metadata\":{\"name\":\"p\"},\"spec\":{\"containers\":[{"
                         "\"name\":\"app\",\"securityContext\":{\"runAsUser\":1337}}]}}");
    char *b = review_body("u-1337", "CREATE", "", "Pod", NULL, false, "shop", pod);
    int status;
    json_t *r = review(&cfg, b, &status), *resp = json_object_get(r, "response");

    CHECK_INT(status, 200);
    CHECK(json_is_false(json_object_get(resp, "allowed")));
    CHECK(json_object_get(resp, "patch") == NULL);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(resp, "status"), "code")), 400);
    CHECK(strstr(json_string_value(json_object_get(json_object_get(resp, "status"), "message")),
                 "container \"app\" runs as UID 1337 ") != NULL);
    json_decref(r);
    free(b);
    json_decref(pod);
}

static void t_review_deny(void)
{
    struct inject_config cfg = test_cfg(false);
    json_t *pod = jparse(POD_A("\"traffic.weft.dev/exclude-outbound-ports\":\"db\""));
    char *b = review_body("u-bad", "CREATE", "", "Pod", NULL, false, "shop", pod);
    int status;
    json_t *r = review(&cfg, b, &status);

    CHECK_INT(status, 200);
    CHECK_JSON(json_object_get(r, "response"),
               "{\"uid\":\"u-bad\",\"allowed\":false,\"status\":{\"status\":\"Failure\","
               "\"message\":\"annotation traffic.weft.dev/exclude-outbound-ports: invalid item "
               "\\\"db\\\" (want comma-separated ports 1-65535)\",\"reason\":\"BadRequest\","
               "\"code\":400}}");
    json_decref(r);
    free(b);
    json_decref(pod);
}

static void t_review_patch_warnings(void)
{
    struct inject_config cfg = test_cfg(true);
    json_t *pod = load_yaml(FIXTURES "probes.yaml"), *patched = NULL, *ops;
    char *b = review_body("u-w", "CREATE", "", "Pod", NULL, false, "shop", pod), *dec;
    char pmsg[256] = "";
    int status;
    json_t *r = review(&cfg, b, &status), *resp = json_object_get(r, "response");

    CHECK_INT(status, 200);
    CHECK_JSON(json_object_get(resp, "warnings"),
               "[\"container sidecar-log: livenessProbe port cannot be resolved; probe left "
               "unchanged\"]");
    dec = b64decode(json_string_value(json_object_get(resp, "patch")));
    REQUIRE(dec);
    ops = jparse(dec);
    CHECK_INT(patch_json(pod, ops, &patched, pmsg, sizeof(pmsg)), 0);
    CHECK_STR(annotation(patched, "kubectl.kubernetes.io/default-container"), "api");
    CHECK_STR(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_object_get(patched, "spec"), "initContainers"), 1),
            "restartPolicy")),
        "Always");
    json_decref(patched);
    json_decref(ops);
    free(dec);
    json_decref(r);
    free(b);
    json_decref(pod);
}

/*
 * Damaged reviews: every truncation and thousands of random byte changes of a real review. The
 * webhook must answer every one (200 or 400, never a crash), with valid JSON; a 200 must be an
 * AdmissionReview answer, and a patch in it must apply to the pod the damaged review carried.
 */
static void t_review_damaged(void)
{
    static const unsigned char bytes[] = {'"', '\\', '{', '}',  '[',  ']',  ',',  ':',  '0', '-',
                                          'e', 'u',  ' ', 0x00, 0x01, 0x80, 0xC3, 0xED, 0xFF};
    struct inject_config cfg = test_cfg(false);
    json_t *pod = load_yaml(FIXTURES "probes.yaml");
    char *b = review_body("u-d", "CREATE", "", "Pod", NULL, false, "shop", pod);
    size_t n = strlen(b);
    char *m = malloc(n + 1);
    unsigned long long seed = 0x2545F4914F6CDD1Dull;
    int answers[2] = {0, 0}, patches = 0;

    REQUIRE(m);
    for (size_t round = 0; round < n + 6000; round++) {
        size_t len = n;
        char *resp = NULL;
        int status = -1;
        json_t *r, *resp_obj, *req, *ops, *patched = NULL;
        const char *b64;
        char pmsg[256];

        memcpy(m, b, n);
        if (round < n) {
            len = round; /* every truncation */
        } else {
            for (int k = 0; k < 1 + (int)(round % 3); k++) {
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                m[(seed * 2685821657736338717ull >> 20) % n] =
                    (char)bytes[(seed >> 7) % sizeof(bytes)];
            }
        }
        REQUIRE(webhook_review(&cfg, m, len, &resp, &status) == 0);
        REQUIRE(resp);
        CHECK(status == 200 || status == 400);
        answers[status == 200]++;
        r = json_loads(resp, 0, NULL);
        CHECK(r != NULL);
        resp_obj = json_object_get(r, "response");
        if (status == 200) {
            CHECK(json_is_object(resp_obj));
            CHECK(json_is_boolean(json_object_get(resp_obj, "allowed")));
            b64 = json_string_value(json_object_get(resp_obj, "patch"));
            if (b64) {
                char *dec = b64decode(b64);
                json_t *damaged = json_loadb(m, len, 0, NULL);

                REQUIRE(dec && damaged);
                req = json_object_get(damaged, "request");
                ops = json_loads(dec, 0, NULL);
                CHECK(ops != NULL);
                CHECK_INT(
                    patch_json(json_object_get(req, "object"), ops, &patched, pmsg, sizeof(pmsg)),
                    0);
                patches++;
                json_decref(patched);
                json_decref(ops);
                json_decref(damaged);
                free(dec);
            }
        } else {
            CHECK_STR(json_string_value(json_object_get(r, "kind")), "Status");
        }
        json_decref(r);
        free(resp);
    }
    /* the mix must include both outcomes and injected pods, or the test tests nothing */
    CHECK(answers[0] > 1000);
    CHECK(answers[1] > 100);
    CHECK(patches > 100);
    fprintf(stderr, "  damaged reviews: %d answered 200 (%d with a patch), %d answered 400\n",
            answers[1], patches, answers[0]);
    free(m);
    free(b);
    json_decref(pod);
}

/* ---- weftctl inject ---- */

static json_t *cli_docs(const char *text, unsigned flags, int want_rc, const char *want_msg)
{
    struct inject_config cfg = test_cfg(false);
    json_t *docs = NULL;
    struct diag msg = {0, ""};
    int rc = cli_inject_docs(&cfg, "in.yaml", text, strlen(text), flags, &docs, NULL, &msg);

    CHECK_INT(rc, want_rc);
    if (want_msg)
        CHECK_STR(msg.text, want_msg);
    else if (rc)
        fprintf(stderr, "  msg: %s\n", msg.text);
    return docs;
}

static const json_t *tmpl_of(const json_t *doc)
{
    const char *kind = json_string_value(json_object_get(doc, "kind"));

    if (!kind)
        return NULL;
    if (!strcmp(kind, "Pod"))
        return doc;
    if (!strcmp(kind, "CronJob"))
        return json_object_get(
            json_object_get(json_object_get(json_object_get(doc, "spec"), "jobTemplate"), "spec"),
            "template");
    if (!strcmp(kind, "Deployment") || !strcmp(kind, "StatefulSet") || !strcmp(kind, "DaemonSet") ||
        !strcmp(kind, "ReplicaSet") || !strcmp(kind, "ReplicationController") ||
        !strcmp(kind, "Job"))
        return json_object_get(json_object_get(doc, "spec"), "template");
    return NULL;
}

static void t_cli_kinds(void)
{
    static const char text[] =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n"
        "---\n"
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj}\nspec:\n  schedule: '* * * * "
        "*'\n"
        "  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: "
        "Never\n"
        "          containers: [{name: c, image: busybox}]\n"
        "---\n"
        "# only a comment\n"
        "---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: apps/v1, kind: DaemonSet, metadata: {name: d}, spec: {template: {spec: "
        "{containers: [{name: d, image: x}]}}}}\n"
        "- {apiVersion: apps/v1, kind: StatefulSet, metadata: {name: s}, spec: {template: {spec: "
        "{hostNetwork: true, containers: [{name: s, image: x}]}}}}\n"
        "- {apiVersion: v1, kind: Service, metadata: {name: svc}, spec: {ports: [{port: 80}]}}\n";
    json_t *in = NULL, *docs = cli_docs(text, 0, 0, NULL), *back, *items;
    struct diag msg = {0, ""};

    REQUIRE(yaml_to_json(text, strlen(text), &in, &msg) == 0);
    REQUIRE(json_array_size(docs) == 3);
    CHECK_JSONV(json_array_get(docs, 0), json_array_get(in, 0));
    CHECK(annotation(tmpl_of(json_array_get(docs, 1)), "weft.dev/status") != NULL);
    CHECK_STR(env_value(container(tmpl_of(json_array_get(docs, 1)), "containers", "weft-proxy"),
                        "WEFT_EXIT_ON_COMPLETION"),
              "true");
    items = json_object_get(json_array_get(docs, 2), "items");
    CHECK(annotation(tmpl_of(json_array_get(items, 0)), "weft.dev/status") != NULL);
    CHECK_JSONV(json_array_get(items, 1),
                json_array_get(json_object_get(json_array_get(in, 2), "items"), 1));
    CHECK_JSONV(json_array_get(items, 2),
                json_array_get(json_object_get(json_array_get(in, 2), "items"), 2));
    /* uninject(inject(x)) == x through the command path. */
    {
        struct inject_config cfg = test_cfg(false);
        char *y = NULL;
        struct buf all;

        buf_init(&all);
        for (size_t i = 0; i < json_array_size(docs); i++) {
            y = json_to_yaml(json_array_get(docs, i));
            REQUIRE(buf_printf(&all, "%s%s", i ? "---\n" : "", y) == 0);
            free(y);
        }
        back = NULL;
        CHECK_INT(cli_inject_docs(&cfg, "x", all.p, all.len, CLI_INJECT_UNDO, &back, NULL, &msg),
                  0);
        CHECK_JSONV(back, in);
        json_decref(back);
        buf_release(&all);
    }
    json_decref(docs);
    json_decref(in);
}

static void t_cli_errors(void)
{
    json_t *d;

    d = cli_docs("kind: Pod\nspec:\n  containers: [{name: a}]\n---\nkind: Pod\nspec: [\n", 0,
                 ERR_PARSE, "in.yaml:doc 2: yaml: line 7: did not find expected node content");
    CHECK(d == NULL);
    {
        struct inject_config cfg = test_cfg(false);
        struct diag msg = {0, ""};
        const char *t = "kind: Pod\nspec:\n  containers: [{name: a}]\n---\n---\nkind: Pod\n"
                        "spec: [\n";
        json_t *out = NULL;

        CHECK_INT(cli_inject_docs(&cfg, "m.yaml", t, strlen(t), 0, &out, NULL, &msg), ERR_PARSE);
        CHECK(strncmp(msg.text, "m.yaml:doc 2: yaml: line ", 25) == 0);
        CHECK(out == NULL);
    }
    cli_docs("kind: Pod\nspec:\n  containers: [{name: a}]\n---\n- 1\n- 2\n", 0, ERR_INVALID,
             "in.yaml:doc 2: not a Kubernetes object (want a mapping with kind)");
    cli_docs("metadata: {name: x}\n", 0, ERR_INVALID, "in.yaml:doc 1: object has no kind");
    cli_docs("kind: Pod\nspec:\n  containers: [{name: a}]\n---\n"
             "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n"
             "    metadata:\n      annotations: {traffic.weft.dev/exclude-inbound-ports: '*'}\n"
             "    spec: {containers: [{name: a}]}\n",
             0, ERR_INVALID,
             "in.yaml:doc 2: Deployment/web: annotation traffic.weft.dev/exclude-inbound-ports: "
             "\"*\" is not allowed here (want comma-separated ports 1-65535)");
    cli_docs("kind: List\nitems:\n- {kind: Pod, metadata: {name: p}, spec: {containers: []}}\n", 0,
             ERR_INVALID, "in.yaml:doc 1: items[0] Pod/p: spec.containers: missing or empty");
    cli_docs("kind: List\nitems:\n- kind: List\n  items: []\n", 0, ERR_INVALID,
             "in.yaml:doc 1: items[0] List/: nested List");
    /* A workload without a template is passed through (the API server will judge it). */
    d = cli_docs("kind: Deployment\nmetadata: {name: x}\nspec: {}\n", 0, 0, NULL);
    CHECK_JSON(d, "[{\"kind\":\"Deployment\",\"metadata\":{\"name\":\"x\"},\"spec\":{}}]");
    json_decref(d);
}

/* Run cli_inject_main with args and stdin text; returns exit status, out/err captured. */
static int run_main(const char *const *args, int n, const char *stdin_text, char **out, char **err)
{
    char *argv[16];
    size_t olen = 0, elen = 0;
    FILE *in = fmemopen((void *)stdin_text, strlen(stdin_text), "r");
    FILE *o = open_memstream(out, &olen), *e = open_memstream(err, &elen);
    int rc;

    REQUIRE(n < 16 && in && o && e);
    for (int i = 0; i < n; i++)
        argv[i] = (char *)args[i];
    argv[n] = NULL;
    rc = cli_inject_main(n, argv, in, o, e);
    fclose(in);
    fclose(o);
    fclose(e);
    return rc;
}

static void t_cli_main(void)
{
    static const char pod[] = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n"
                              "  containers:\n  - name: a\n    image: x\n";
    char *out = NULL, *err = NULL;
    json_t *docs = NULL;
    struct diag msg = {0, ""};

    {
        const char *a[] = {"inject", "-f", "-"};
        CHECK_INT(run_main(a, 3, pod, &out, &err), 0);
        CHECK_STR(err, "");
        CHECK(strncmp(out, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n",
                      60) == 0);
        REQUIRE(yaml_to_json(out, strlen(out), &docs, &msg) == 0);
        CHECK_INT(json_array_size(docs), 1);
        json_decref(docs);
        free(out);
        free(err);
    }
    {
        const char *a[] = {"inject",        "-o",    "json", "--native-sidecars",
                           "--proxy-image", "img:9", "-f",   "-"};
        json_t *j;

        CHECK_INT(run_main(a, 8, pod, &out, &err), 0);
        j = jparse(out);
        CHECK_STR(json_string_value(
                      json_object_get(container(j, "initContainers", "weft-proxy"), "image")),
                  "img:9");
        json_decref(j);
        free(out);
        free(err);
    }
    {
        const char *a[] = {"inject", "-f", "-"};
        CHECK_INT(run_main(a, 3, "kind: Pod\nspec: {containers: [{name: a}]}\n---\nkind: [\n", &out,
                           &err),
                  1);
        CHECK_STR(out, "");
        CHECK(strncmp(err, "weftctl inject: <stdin>:doc 2: yaml: line ", 42) == 0);
        free(out);
        free(err);
    }
    {
        const char *a[] = {"inject", "-f", "/nonexistent/x.yaml"};
        CHECK_INT(run_main(a, 3, "", &out, &err), 1);
        CHECK_STR(err, "weftctl inject: /nonexistent/x.yaml: No such file or directory\n");
        free(out);
        free(err);
    }
    {
        const char *a[] = {"inject"};
        CHECK_INT(run_main(a, 1, "", &out, &err), 2);
        CHECK(strncmp(err, "weftctl inject: -f FILE (or - for standard input) is required\n", 62) ==
              0);
        free(out);
        free(err);
    }
    {
        const char *a[] = {"inject", "-f", "-", "-o", "wide"};
        CHECK_INT(run_main(a, 5, pod, &out, &err), 2);
        CHECK(strncmp(err, "weftctl inject: unknown output format \"wide\"", 44) == 0);
        free(out);
        free(err);
    }
    {
        const char *a[] = {"inject", "-f", "-", "--bogus"};
        CHECK_INT(run_main(a, 4, pod, &out, &err), 2);
        CHECK(strncmp(err, "weftctl inject: unexpected argument \"--bogus\"", 45) == 0);
        free(out);
        free(err);
    }
}

/* ---- the corpus ---- */

static void check_template_patch(const json_t *tmpl, const char *file, size_t doc)
{
    struct inject_config cfg = test_cfg(false);
    struct webhook_result res = {0};
    json_t *patched = NULL;
    struct diag msg = {0, ""};

    if (webhook_pod_inject(&cfg, tmpl, NULL, &res, &msg) != 0 || res.verdict != WEBHOOK_INJECTED)
        return;
    if (patch_json(tmpl, res.patch, &patched, msg.text, sizeof(msg.text)) != 0 ||
        !json_equal(patched, res.pod)) {
        fprintf(stderr, "  %s doc %zu: patch does not reproduce the pod: %s\n", file, doc,
                msg.text);
        unit__failures++;
    }
    json_decref(patched);
    webhook_result_release(&res);
}

static void t_corpus(void)
{
    struct inject_config cfg = test_cfg(false);
    glob_t g;
    size_t files = 0, injected = 0, host = 0, other = 0, refused = 0;
    const char *dir = getenv("INJECT_CORPUS");
    char pattern[1024];
    struct stat st;

    if (!dir || !*dir)
        dir = CORPUS_DEFAULT;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        SKIP("no injection corpus at %s (set INJECT_CORPUS)", dir);
    snprintf(pattern, sizeof(pattern), "%s/*.yaml", dir);
    REQUIRE(glob(pattern, 0, NULL, &g) == 0);
    CHECK_INT(g.gl_pathc, 94);
    for (size_t f = 0; f < g.gl_pathc; f++) {
        const char *file = g.gl_pathv[f];
        size_t len;
        char *text = read_file(file, &len);
        struct diag msg = {0, ""};
        json_t *in = NULL, *out = NULL, *back = NULL;
        struct buf yaml;

        files++;
        REQUIRE(yaml_to_json(text, len, &in, &msg) == 0);
        if (strstr(file, "/merge-probers.yaml")) {
            /* An Istio-injected Deployment: its istio-proxy runs as UID 1337 and is refused. */
            CHECK_INT(cli_inject_docs(&cfg, file, text, len, 0, &out, NULL, &msg), ERR_INVALID);
            CHECK(strstr(msg.text,
                         "Deployment/hello: container \"istio-proxy\" runs as UID 1337 ") != NULL);
            refused++;
            free(text);
            json_decref(in);
            continue;
        }
        if (cli_inject_docs(&cfg, file, text, len, 0, &out, NULL, &msg) != 0) {
            fprintf(stderr, "  %s: %s\n", file, msg.text);
            unit__failures++;
            free(text);
            json_decref(in);
            continue;
        }
        CHECK_INT(json_array_size(out), json_array_size(in));
        buf_init(&yaml);
        for (size_t d = 0; d < json_array_size(out); d++) {
            const json_t *od = json_array_get(out, d), *id = json_array_get(in, d);
            const char *kind = json_string_value(json_object_get(id, "kind"));
            json_t *objs_in = json_array(), *objs_out = json_array();
            char *y = json_to_yaml(od);

            REQUIRE(y && buf_printf(&yaml, "%s%s", d ? "---\n" : "", y) == 0);
            free(y);
            if (kind && !strcmp(kind, "List")) {
                json_array_extend(objs_in, json_object_get(id, "items"));
                json_array_extend(objs_out, json_object_get(od, "items"));
            } else {
                json_array_append(objs_in, (json_t *)id);
                json_array_append(objs_out, (json_t *)od);
            }
            for (size_t i = 0; i < json_array_size(objs_in); i++) {
                const json_t *ti = tmpl_of(json_array_get(objs_in, i));
                const json_t *to = tmpl_of(json_array_get(objs_out, i));
                bool hn =
                    ti && json_is_true(json_object_get(json_object_get(ti, "spec"), "hostNetwork"));

                if (!ti) {
                    other++;
                    CHECK_JSONV(json_array_get(objs_out, i), json_array_get(objs_in, i));
                } else if (hn) {
                    host++;
                    CHECK_JSONV(json_array_get(objs_out, i), json_array_get(objs_in, i));
                } else {
                    injected++;
                    if (!annotation(to, "weft.dev/status") ||
                        !container(to, "initContainers", "weft-init")) {
                        fprintf(stderr, "  %s doc %zu item %zu: not injected\n", file, d + 1, i);
                        unit__failures++;
                    }
                    check_template_patch(ti, file, d + 1);
                }
            }
            json_decref(objs_in);
            json_decref(objs_out);
        }
        /* The printed YAML reads back and un-injects to the original. */
        if (cli_inject_docs(&cfg, file, yaml.p, yaml.len, CLI_INJECT_UNDO, &back, NULL, &msg) !=
            0) {
            fprintf(stderr, "  %s: uninject: %s\n", file, msg.text);
            unit__failures++;
        } else if (!json_equal(back, in)) {
            fprintf(stderr, "  %s: uninject(inject(x)) != x\n", file);
            unit__failures++;
        }
        buf_release(&yaml);
        json_decref(back);
        json_decref(out);
        json_decref(in);
        free(text);
    }
    globfree(&g);
    CHECK_INT(files, 94);
    /* Counted independently from the corpus: 93 pod templates injected before the UID check, 2
     * of them hostNetwork Deployments, and 3 other objects (two Services and an OpenShift
     * DeploymentConfig); one file refused (merge-probers.yaml, above). */
    fprintf(stderr, "  corpus: %zu files, %zu injected, %zu refused, %zu hostNetwork, %zu other\n",
            files, injected, refused, host, other);
    CHECK_INT(injected, 92);
    CHECK_INT(refused, 1);
    CHECK_INT(host, 2);
    CHECK_INT(other, 3);
}

UNIT_MAIN(UNIT(t_pointer_escape), UNIT(t_base64), UNIT(t_ports), UNIT(t_cidrs), UNIT(t_quantity),
          UNIT(t_bool), UNIT(t_golden_simple), UNIT(t_golden_probes), UNIT(t_golden_existing),
          UNIT(t_golden_nonroot), UNIT(t_golden_generatename), UNIT(t_golden_job),
          UNIT(t_golden_native_job), UNIT(t_golden_native), UNIT(t_golden_volume_clash),
          UNIT(t_golden_traffic), UNIT(t_golden_template), UNIT(t_access_log_annotation),
          UNIT(t_null_parents), UNIT(t_skips), UNIT(t_opt_in), UNIT(t_denials),
          UNIT(t_port_clash_warning), UNIT(t_uninject_errors), UNIT(t_proxy_uid),
          UNIT(t_review_passthrough), UNIT(t_review_malformed), UNIT(t_review_deny),
          UNIT(t_review_deny_proxy_uid), UNIT(t_review_outcomes), UNIT(t_review_patch_warnings),
          UNIT(t_review_damaged), UNIT(t_cli_kinds), UNIT(t_cli_errors), UNIT(t_cli_main),
          UNIT(t_corpus))
