/*
 * controller_test.c - the mesh model and compiler: golden documents and statuses for the
 * cluster states in tests/fixtures/mesh/<case>/, weight normalization, incremental
 * recompilation (what a change dirties), error paths, and allocation failures (every k-th
 * jansson allocation failed in turn: a compile yields the whole document or fails visibly).
 *
 * Goldens: tests/fixtures/mesh/<case>/expected/<ns>.<pod>.json for every meshed pod (and no
 * file for the others) and expected/status.json for every custom resource. Run with
 * UPDATE_GOLDEN=1 to rewrite them after a deliberate change, then review the diff (tests/run.sh
 * clears UPDATE_GOLDEN). The t_hand_* cases state each scenario's weights and peers as worked
 * out by hand, so a regenerated golden cannot hide a change in them.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf/yamljson.h"
#include "controller/controller.h"
#include "controller/controller_int.h"
#include "tests/unit/unit.h"

#define FIX "tests/fixtures/mesh"
#define NOW "2026-01-01T00:00:00Z"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        p = malloc((size_t)n + 1);
        if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
            free(p);
            p = NULL;
        }
        if (p) {
            p[n] = '\0';
            *len = (size_t)n;
        }
    }
    fclose(f);
    return p;
}

static json_t *load_yaml(const char *path)
{
    size_t len = 0;
    char *text = slurp(path, &len);
    json_t *docs = NULL;
    REQUIRE(text);
    REQUIRE(yaml_to_json(text, len, &docs, NULL) == 0);
    free(text);
    return docs;
}

static struct mesh_model *model_scoped(json_t *docs, enum mesh_mode mode,
                                       enum mesh_outbound_scope scope)
{
    struct mesh_config cfg = {.mode = mode, .outbound_scope = scope};
    struct mesh_model *m = NULL;
    size_t i;
    json_t *o;
    REQUIRE(mesh_model_new(&cfg, &m) == 0);
    json_array_foreach(docs, i, o) REQUIRE(mesh_model_upsert(m, o) == 0);
    return m;
}

/* Most cases state who may call what: the outbound scope "admitted" (the goldens too). */
static struct mesh_model *model_from(json_t *docs, enum mesh_mode mode)
{
    return model_scoped(docs, mode, MESH_OUTBOUND_ADMITTED);
}

static const char *cr_kind(const json_t *o)
{
    const char *av = controller__jstr(o, "apiVersion"), *k = controller__jstr(o, "kind");
    if (!strncmp(av, "split.smi-spec.io/", 18))
        return "TrafficSplit.split.smi-spec.io";
    if (!strncmp(av, "mesh.weft.dev/", 14))
        return k;
    return NULL;
}

/* Compare (or with UPDATE_GOLDEN write) every meshed pod's document and every CR status. */
static void golden(const char *name, enum mesh_mode mode)
{
    char dir[256], path[512];
    json_t *docs, *o, *status = json_object();
    struct mesh_model *m;
    size_t i;
    bool update = getenv("UPDATE_GOLDEN") != NULL;
    int ndocs = 0;

    snprintf(dir, sizeof(dir), FIX "/%s", name);
    snprintf(path, sizeof(path), "%s/cluster.yaml", dir);
    docs = load_yaml(path);
    m = model_from(docs, mode);
    json_array_foreach(docs, i, o)
    {
        const char *ns = controller__jstr(controller__jget(o, "metadata"), "namespace");
        const char *pn = controller__jstr(controller__jget(o, "metadata"), "name");
        const char *kind = controller__jstr(o, "kind");
        const char *ck = cr_kind(o);
        json_t *doc = NULL, *want;
        struct stat st;
        int rc;
        if (ck) {
            json_t *conds = NULL;
            char key[300];
            REQUIRE(mesh_model_status(m, ck, ns, pn, NULL, NOW, &conds) == 0);
            snprintf(key, sizeof(key), "%s %s/%s", ck, ns, pn);
            json_object_set_new(status, key, conds);
            continue;
        }
        if (strcmp(kind, "Pod") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/expected/%s.%s.json", dir, ns, pn);
        rc = mesh_compile_pod(m, ns, pn, &doc);
        if (rc == ERR_NOTFOUND) {
            if (update)
                unlink(path);
            else if (stat(path, &st) == 0) {
                fprintf(stderr, "  %s: pod %s/%s has no document but %s exists\n", name, ns, pn,
                        path);
                unit__failures++;
            }
            continue;
        }
        CHECK_INT(rc, 0);
        ndocs++;
        if (update) {
            REQUIRE(json_dump_file(doc, path, JSON_INDENT(2)) == 0);
        } else {
            want = json_load_file(path, 0, NULL);
            if (!want || !json_equal(want, doc)) {
                char *got = json_dumps(doc, JSON_INDENT(2));
                fprintf(stderr, "  %s: document of %s/%s differs from %s; got:\n%s\n", name, ns, pn,
                        path, got ? got : "(null)");
                free(got);
                unit__failures++;
            }
            json_decref(want);
        }
        json_decref(doc);
    }
    snprintf(path, sizeof(path), "%s/expected/status.json", dir);
    if (update && json_object_size(status)) {
        REQUIRE(json_dump_file(status, path, JSON_INDENT(2)) == 0);
    } else if (json_object_size(status)) {
        json_t *want = json_load_file(path, 0, NULL);
        if (!want || !json_equal(want, status)) {
            char *got = json_dumps(status, JSON_INDENT(2));
            fprintf(stderr, "  %s: status differs from %s; got:\n%s\n", name, path,
                    got ? got : "(null)");
            free(got);
            unit__failures++;
        }
        json_decref(want);
    }
    CHECK(ndocs > 0);
    json_decref(status);
    json_decref(docs);
    mesh_model_free(m);
}

/* Compile one pod (must be meshed). */
static json_t *compile(struct mesh_model *m, const char *ns, const char *pod)
{
    json_t *doc = NULL;
    REQUIRE(mesh_compile_pod(m, ns, pod, &doc) == 0);
    return doc;
}

/* The outbound port object of service svc, port. */
static json_t *outbound_port(json_t *doc, const char *svc, long long port)
{
    size_t i, j;
    json_t *s, *p;
    json_array_foreach(json_object_get(doc, "outbound"), i, s)
    {
        if (strcmp(controller__jstr(s, "service"), svc) != 0)
            continue;
        json_array_foreach(json_object_get(s, "ports"), j,
                           p) if (controller__jint(p, "port", 0) == port) return p;
    }
    return NULL;
}

static json_t *inbound_port(json_t *doc, long long port)
{
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(doc, "inbound"), i,
                       l) if (controller__jint(l, "port", 0) == port) return l;
    return NULL;
}

static const char *cond(json_t *conds, const char *type, const char *field)
{
    size_t i;
    json_t *c;
    json_array_foreach(conds, i, c) if (!strcmp(controller__jstr(c, "type"),
                                                type)) return controller__jstr(c, field);
    return NULL;
}

/* ---- goldens ------------------------------------------------------------------------------ */

static void t_golden_split_uneven(void)
{
    golden("split-uneven", MESH_MODE_ALL_AUTHENTICATED);
}
static void t_golden_smi(void)
{
    golden("smi", MESH_MODE_ALL_AUTHENTICATED);
}
static void t_golden_policies(void)
{
    golden("policies", MESH_MODE_ALL_AUTHENTICATED);
}
static void t_golden_retries(void)
{
    golden("retries", MESH_MODE_ALL_AUTHENTICATED);
}
static void t_golden_missing_refs(void)
{
    golden("missing-refs", MESH_MODE_ALL_AUTHENTICATED);
}
static void t_golden_conflicts(void)
{
    golden("conflicts", MESH_MODE_ALL_AUTHENTICATED);
}
static void t_golden_sidecars(void)
{
    golden("sidecars", MESH_MODE_ALL_AUTHENTICATED);
}
static void t_golden_headless(void)
{
    golden("headless", MESH_MODE_ALL_AUTHENTICATED);
}
static void t_golden_protocols(void)
{
    golden("protocols", MESH_MODE_PERMISSIVE);
}

/* ---- hand-computed expectations for the goldens ------------------------------------------- *
 * The goldens above are the compiler's own output, reviewed once. These cases state, for every
 * scenario, the numbers that matter, worked out by hand from cluster.yaml and the rules of
 * docs/proxy-config.md (not copied from the goldens): each route's backends with their requested
 * and achieved shares and every endpoint's weight, and each inbound port's default and the peers
 * of its deny/audit/allow rules. A compiler change that moves any of them fails here even after
 * the goldens are regenerated.
 */

/* Append to a fixed buffer (truncation shows up as a mismatch). */
static void sum_add(char *b, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sum_add(char *b, size_t n, const char *fmt, ...)
{
    size_t len = strlen(b);
    va_list ap;
    if (len >= n)
        return;
    va_start(ap, fmt);
    vsnprintf(b + len, n - len, fmt, ap);
    va_end(ap);
}

/*
 * What a caller's proxy does for svc:port, one string: each route as
 * "<split or -> [<method>]: <backend> <requestedPpm>/<achievedPpm> <ip>:<port>*<weight>,...; ..."
 * joined by " | "; a headless port as "headless <ip>:<port>,..."; then " retry=<policy>x<attempts>"
 * when a retry policy applies. "(none)" when the caller has no such block.
 */
static const char *route_summary(json_t *doc, const char *svc, long long port)
{
    static char b[2048];
    json_t *p = outbound_port(doc, svc, port), *r, *bk, *e;
    size_t i, j, k;

    b[0] = '\0';
    if (!p)
        return "(none)";
    if (!json_object_get(p, "routes")) {
        sum_add(b, sizeof(b), "headless");
        json_array_foreach(json_object_get(p, "endpoints"), k, e)
            sum_add(b, sizeof(b), "%s%s:%lld", k ? "," : " ", controller__jstr(e, "ip"),
                    controller__jint(e, "port", 0));
    }
    json_array_foreach(json_object_get(p, "routes"), i, r)
    {
        const char *method = controller__jstr(json_object_get(r, "match"), "method");
        sum_add(b, sizeof(b), "%s%s%s%s:", i ? " | " : "",
                controller__jstr(r, "split") ? controller__jstr(r, "split") : "-",
                method ? " " : "", method ? method : "");
        json_array_foreach(json_object_get(r, "backends"), j, bk)
        {
            sum_add(b, sizeof(b), "%s %s %lld/%lld", j ? ";" : "", controller__jstr(bk, "service"),
                    controller__jint(bk, "requestedPpm", -1),
                    controller__jint(bk, "achievedPpm", -1));
            json_array_foreach(json_object_get(bk, "endpoints"), k, e)
                sum_add(b, sizeof(b), "%s%s:%lld*%lld", k ? "," : " ", controller__jstr(e, "ip"),
                        controller__jint(e, "port", 0), controller__jint(e, "weight", -1));
        }
    }
    if (json_object_get(p, "retry"))
        sum_add(b, sizeof(b), " retry=%sx%lld",
                controller__jstr(json_object_get(p, "retry"), "policy"),
                controller__jint(json_object_get(p, "retry"), "attempts", -1));
    return b;
}

/*
 * Who may call this pod on each inbound port, one string: per port (in document order)
 * "<port>/<protocol> <default> deny[...] audit[...] allow[...]", each rule "<policy>:<peer>,..."
 * with peers "any" or the ids then the prefixes; ports joined by " || ".
 */
static const char *peers_summary(json_t *doc)
{
    static char b[4096];
    static const char *const kinds[] = {"deny", "audit", "allow"};
    json_t *l, *rule, *x;
    size_t i, j, k, q;

    b[0] = '\0';
    json_array_foreach(json_object_get(doc, "inbound"), i, l)
    {
        sum_add(b, sizeof(b), "%s%lld/%s %s", i ? " || " : "", controller__jint(l, "port", 0),
                controller__jstr(l, "protocol"), controller__jstr(l, "default"));
        for (q = 0; q < 3; q++) {
            sum_add(b, sizeof(b), " %s[", kinds[q]);
            json_array_foreach(json_object_get(l, kinds[q]), j, rule)
            {
                json_t *peers = json_object_get(rule, "peers");
                int n = 0;
                sum_add(b, sizeof(b), "%s%s:", j ? " " : "", controller__jstr(rule, "policy"));
                if (json_is_true(json_object_get(peers, "any")))
                    sum_add(b, sizeof(b), "any");
                json_array_foreach(json_object_get(peers, "ids"), k, x)
                    sum_add(b, sizeof(b), "%s%s", n++ ? "," : "", json_string_value(x));
                json_array_foreach(json_object_get(peers, "prefixes"), k, x)
                    sum_add(b, sizeof(b), "%s%s", n++ ? "," : "", json_string_value(x));
            }
            sum_add(b, sizeof(b), "]");
        }
    }
    return b;
}

/* The Services a pod's proxy may call, "ns/name ..." in document order. */
static const char *callees(json_t *doc)
{
    static char b[1024];
    json_t *s;
    size_t i;

    b[0] = '\0';
    json_array_foreach(json_object_get(doc, "outbound"), i, s)
        sum_add(b, sizeof(b), "%s%s/%s", i ? " " : "", controller__jstr(s, "namespace"),
                controller__jstr(s, "service"));
    return b;
}

/* A scenario's model, and one pod's document from it. */
struct scen {
    json_t *docs;
    struct mesh_model *m;
};

static struct scen scen_load(const char *name)
{
    char path[256];
    struct scen s;
    snprintf(path, sizeof(path), FIX "/%s/cluster.yaml", name);
    s.docs = load_yaml(path);
    s.m = model_from(s.docs, MESH_MODE_ALL_AUTHENTICATED);
    return s;
}

static void scen_free(struct scen *s)
{
    mesh_model_free(s->m);
    json_decref(s->docs);
}

#define ID(ns, sa) "spiffe://cluster.local/ns/" ns "/sa/" sa

/*
 * smi: reviews-rollout asks 750m:250m of reviews-v1 and reviews-v2, two ready endpoints each:
 * per endpoint 375:125 = 3:1, so weights 3,3 and 1,1, achieving 6/8 = 75% and 2/8 = 25%.
 * details-ab (v1alpha4) routes GET and HEAD of its HTTPRouteGroup to details-v2 (one route per
 * method), the rest to details itself. ratings-ab's HTTPRouteGroup is missing: not applied.
 * No AccessPolicy: every port allows any authenticated peer.
 */
static void t_hand_smi(void)
{
    struct scen s = scen_load("smi");
    json_t *doc = compile(s.m, "default", "productpage-1");

    CHECK_STR(route_summary(doc, "reviews", 9080),
              "split.smi-spec.io/reviews-rollout: reviews-v1 750000/750000 "
              "10.1.1.1:9080*3,10.1.1.2:9080*3; reviews-v2 250000/250000 "
              "10.1.2.1:9080*1,10.1.2.2:9080*1");
    CHECK_STR(route_summary(doc, "details", 9080),
              "split.smi-spec.io/details-ab GET: details-v2 1000000/1000000 "
              "10.1.2.1:9080*1,10.1.2.2:9080*1 | split.smi-spec.io/details-ab HEAD: details-v2 "
              "1000000/1000000 10.1.2.1:9080*1,10.1.2.2:9080*1 | -: details 1000000/1000000 "
              "10.1.1.1:9080*1,10.1.1.2:9080*1");
    CHECK_STR(route_summary(doc, "ratings", 9080),
              "-: ratings 1000000/1000000 10.1.1.1:9080*1,10.1.1.2:9080*1");
    CHECK_STR(peers_summary(doc), "9080/http allow-authenticated deny[] audit[] allow[]");
    json_decref(doc);
    scen_free(&s);
}

/*
 * conflicts: of the splits on reviews, "invalid" (weights sum to 0) takes no part; b-older and
 * a-same-time share the oldest creationTimestamp and a-same-time sorts first by name: it wins,
 * sending everything to reviews-v2 (one endpoint, weight 1). reviews' pods have the Allow
 * allow-productpage (so default deny) and the namespace-wide Deny deny-productpage, both for
 * productpage's identity; productpage-1 only has the Deny.
 */
static void t_hand_conflicts(void)
{
    struct scen s = scen_load("conflicts");
    json_t *pp = compile(s.m, "default", "productpage-1");
    json_t *rv = compile(s.m, "default", "reviews-v1-a");

    CHECK_STR(route_summary(pp, "reviews", 9080),
              "split.smi-spec.io/a-same-time: reviews-v2 1000000/1000000 10.1.2.1:9080*1");
    CHECK_STR(
        peers_summary(rv),
        "9080/http deny deny[deny-productpage:" ID(
            "default", "productpage") "] audit[] allow[allow-productpage:" ID("default",
                                                                              "productpage") "]");
    CHECK_STR(peers_summary(pp), "9080/http allow-authenticated deny[deny-productpage:" ID(
                                     "default", "productpage") "] audit[] allow[]");
    /* reviews' own proxy may not call reviews (only productpage may) */
    CHECK_STR(route_summary(rv, "reviews", 9080), "(none)");
    json_decref(pp);
    json_decref(rv);
    scen_free(&s);
}

/*
 * missing-refs: the reviews split's backends are reviews-v9 (missing) and reviews-v1 (no port
 * 9080): nothing resolvable, so reviews keeps its own endpoint. reviews-allow admits
 * productpage, the missing ServiceAccount nobody (an exact ID all the same) and the missing
 * namespace nowhere (a prefix): default deny on reviews-1.
 */
static void t_hand_missing_refs(void)
{
    struct scen s = scen_load("missing-refs");
    json_t *pp = compile(s.m, "default", "productpage-1");
    json_t *rv = compile(s.m, "default", "reviews-1");

    CHECK_STR(route_summary(pp, "reviews", 9080), "-: reviews 1000000/1000000 10.1.1.1:9080*1");
    CHECK_STR(peers_summary(rv),
              "9080/http deny deny[] audit[] allow[reviews-allow:" ID("default", "nobody") "," ID(
                  "default", "productpage") ",spiffe://cluster.local/ns/nowhere/sa/]");
    CHECK_STR(peers_summary(pp), "9080/http allow-authenticated deny[] audit[] allow[]");
    json_decref(pp);
    json_decref(rv);
    scen_free(&s);
}

/*
 * policies: on api-1's tcp port 5432 the Allow db-allow-l7 has L7 rules, so it admits nothing
 * but makes the default deny; the Denies with L7 rules apply to all of their peers' traffic.
 * On 8080 api-allow admits web's identity, the namespaces labelled team=payments (payments) and
 * the written prefix ns/batch/. audit-monitoring covers every pod of shop. web-1 has no Allow:
 * the mode's default. Callers: api may be called by web, payments and batch (so api-1 itself
 * may not); web and billing by anyone.
 */
static void t_hand_policies(void)
{
    struct scen s = scen_load("policies");
    json_t *api = compile(s.m, "shop", "api-1");
    json_t *web = compile(s.m, "shop", "web-1");
    json_t *bill = compile(s.m, "payments", "billing-1");

    CHECK_STR(
        peers_summary(api),
        "5432/tcp deny deny[api-deny-billing-admin:" ID(
            "payments",
            "billing") " db-deny-monitoring:spiffe://cluster.local/ns/monitoring/sa/] "
                       "audit[audit-monitoring:spiffe://cluster.local/ns/monitoring/sa/] allow[] "
                       "|| "
                       "8080/http deny deny[api-deny-billing-admin:" ID(
                           "payments",
                           "billing") "] "
                                      "audit[audit-monitoring:spiffe://cluster.local/ns/monitoring/"
                                      "sa/] "
                                      "allow[api-allow:" ID(
                                          "shop", "web") ",spiffe://cluster.local/ns/batch/,"
                                                         "spiffe://cluster.local/ns/payments/sa/]");
    CHECK_STR(peers_summary(web),
              "8000/http allow-authenticated deny[] "
              "audit[audit-monitoring:spiffe://cluster.local/ns/monitoring/sa/] allow[]");
    CHECK_STR(peers_summary(bill), "");
    CHECK_STR(callees(api), "shop/web");
    CHECK_STR(callees(web), "shop/api shop/web");
    CHECK_STR(callees(bill), "shop/api shop/web");
    CHECK_STR(route_summary(web, "api", 8080), "-: api 1000000/1000000 10.2.0.1:8080*1");
    json_decref(api);
    json_decref(web);
    json_decref(bill);
    scen_free(&s);
}

/*
 * retries: ratings-http (port 9080) beats the service-wide ratings-all there; ratings-http-later
 * is Conflicted and bad-durations invalid, so 9090 and 6379 get ratings-all. One endpoint on
 * each port, weight 1. No AccessPolicy.
 */
static void t_hand_retries(void)
{
    struct scen s = scen_load("retries");
    json_t *c = compile(s.m, "default", "client-1");

    CHECK_STR(route_summary(c, "ratings", 9080),
              "-: ratings 1000000/1000000 10.4.0.2:9080*1 retry=ratings-httpx2");
    CHECK_STR(route_summary(c, "ratings", 9090),
              "-: ratings 1000000/1000000 10.4.0.2:9090*1 retry=ratings-allx1");
    CHECK_STR(route_summary(c, "ratings", 6379),
              "-: ratings 1000000/1000000 10.4.0.2:6379*1 retry=ratings-allx1");
    CHECK_STR(peers_summary(c), "");
    json_decref(c);
    scen_free(&s);
}

/*
 * sidecars: web's two ready endpoints (plain-1 without a proxy, native-1 with a native sidecar)
 * share its traffic equally; plain-1 has no identity. native-1 listens on its container port.
 */
static void t_hand_sidecars(void)
{
    struct scen s = scen_load("sidecars");
    json_t *n = compile(s.m, "default", "native-1");
    json_t *p = outbound_port(n, "web", 80);

    CHECK_STR(route_summary(n, "web", 80),
              "-: web 1000000/1000000 10.5.0.1:8080*1,10.5.0.2:8080*1");
    REQUIRE(p);
    {
        json_t *eps = json_object_get(
            json_array_get(
                json_object_get(json_array_get(json_object_get(p, "routes"), 0), "backends"), 0),
            "endpoints");
        CHECK(json_object_get(json_array_get(eps, 0), "identity") == NULL ||
              json_is_null(json_object_get(json_array_get(eps, 0), "identity")));
        CHECK_STR(controller__jstr(json_array_get(eps, 1), "identity"), ID("default", "default"));
    }
    CHECK_STR(peers_summary(n), "8080/http allow-authenticated deny[] audit[] allow[]");
    json_decref(n);
    scen_free(&s);
}

/*
 * headless: db has no ClusterIP: callers get its endpoints by pod IP (sorted), no weighted
 * routes, and the split on it is not programmed.
 */
static void t_hand_headless(void)
{
    struct scen s = scen_load("headless");
    json_t *a = compile(s.m, "data", "app-1");
    json_t *d = compile(s.m, "data", "db-0");

    CHECK_STR(route_summary(a, "db", 5432), "headless 10.6.0.1:5432,10.6.0.2:5432");
    CHECK_STR(peers_summary(d), "5432/tcp allow-authenticated deny[] audit[] allow[]");
    json_decref(a);
    json_decref(d);
    scen_free(&s);
}

/*
 * protocols: each Service port's protocol by the rule of docs/proxy-config.md, stated here from
 * cluster.yaml: appProtocol first (case-insensitive; any other value is tcp), else the name as
 * a word or the word and "-". Inbound ports take the protocol of the Service ports targeting
 * them, tcp where Services disagree (8082: api-legacy says http).
 */
static void t_hand_protocols(void)
{
    static const struct {
        long long port, target;
        const char *proto, *inbound;
    } want[] = {
        {80, 8080, "http", "http"},
        {81, 8081, "http2", "http2"},
        {82, 8082, "http2", "tcp"},
        {83, 8083, "http2", "http2"},
        {50051, 50051, "grpc", "grpc"},
        {50052, 50052, "grpc", "grpc"},
        {3306, 3306, "server-first", "server-first"},
        {25, 2525, "server-first", "server-first"},
        {26, 2626, "server-first-plaintext", "server-first-plaintext"},
        {5432, 5432, "tcp", "tcp"},
        {6379, 6379, "tcp", "tcp"},
    };
    json_t *docs = load_yaml(FIX "/protocols/cluster.yaml");
    struct mesh_model *m = model_from(docs, MESH_MODE_PERMISSIVE);
    json_t *c = compile(m, "proto", "client-1"), *a = compile(m, "proto", "api-1");
    size_t i;

    for (i = 0; i < ARRAY_LEN(want); i++) {
        json_t *o = outbound_port(c, "api", want[i].port), *in = inbound_port(a, want[i].target);
        REQUIRE(o && in);
        CHECK_STR(controller__jstr(o, "protocol"), want[i].proto);
        CHECK_STR(controller__jstr(in, "protocol"), want[i].inbound);
    }
    CHECK_STR(controller__jstr(outbound_port(c, "api-legacy", 82), "protocol"), "http");
    json_decref(c);
    json_decref(a);
    mesh_model_free(m);
    /* plaintext exists in mode permissive only: elsewhere the port is server-first (mTLS) */
    m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);
    c = compile(m, "proto", "client-1");
    a = compile(m, "proto", "api-1");
    CHECK_STR(controller__jstr(outbound_port(c, "api", 26), "protocol"), "server-first");
    CHECK_STR(controller__jstr(inbound_port(a, 2626), "protocol"), "server-first");
    json_decref(c);
    json_decref(a);
    json_decref(docs);
    mesh_model_free(m);
}

/* ---- explicit checks on the goldens' key values ------------------------------------------- */

static void t_split_uneven_weights(void)
{
    json_t *docs = load_yaml(FIX "/split-uneven/cluster.yaml");
    struct mesh_model *m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);
    json_t *doc = compile(m, "default", "productpage-1");
    json_t *p = outbound_port(doc, "reviews", 9080), *routes, *bs, *e;
    size_t i;
    long long sum = 0, v1 = 0;

    REQUIRE(p);
    routes = json_object_get(p, "routes");
    CHECK_INT(json_array_size(routes), 1);
    CHECK_STR(controller__jstr(json_array_get(routes, 0), "split"), "mesh.weft.dev/reviews");
    bs = json_object_get(json_array_get(routes, 0), "backends");
    CHECK_INT(json_array_size(bs), 2);
    CHECK_STR(controller__jstr(json_array_get(bs, 0), "service"), "reviews-v1");
    CHECK_INT(controller__jint(json_array_get(bs, 0), "requestedPpm", 0), 700000);
    CHECK_INT(controller__jint(json_array_get(bs, 0), "achievedPpm", 0), 700000);
    CHECK_INT(controller__jint(json_array_get(bs, 1), "achievedPpm", 0), 300000);
    /* observed split from the per-server weights: 3 ready v1 servers at 7, 1 v2 server at 9 */
    json_array_foreach(json_object_get(json_array_get(bs, 0), "endpoints"), i, e)
    {
        long long w = controller__jint(e, "weight", -1);
        CHECK_INT(w, json_is_true(json_object_get(e, "ready")) ? 7 : 0);
        v1 += w;
    }
    CHECK_INT(json_array_size(json_object_get(json_array_get(bs, 0), "endpoints")), 4);
    e = json_array_get(json_object_get(json_array_get(bs, 1), "endpoints"), 0);
    CHECK_INT(controller__jint(e, "weight", -1), 9);
    sum = v1 + 9;
    CHECK_INT(v1 * 100 / sum, 70);
    CHECK_STR(controller__jstr(e, "identity"), "spiffe://cluster.local/ns/default/sa/reviews");
    json_decref(doc);
    json_decref(docs);
    mesh_model_free(m);
}

/* The bound documented in docs/proxy-config.md, checked over many uneven cases. */
static void t_weights_bound(void)
{
    long long W[4], n[4], ach[4];
    int w[4];
    unsigned seed = 12345;
    int iter;

    for (iter = 0; iter < 20000; iter++) {
        size_t nb = 2 + (size_t)(iter % 3), b;
        double sumw = 0, total = 0, A = 0, smax = 0, k;
        for (b = 0; b < nb; b++) {
            seed = seed * 1103515245u + 12345u;
            W[b] = 1 + (long long)((seed >> 8) % 1000);
            seed = seed * 1103515245u + 12345u;
            n[b] = 1 + (long long)((seed >> 8) % 50);
            sumw += (double)W[b];
            if ((double)W[b] / (double)n[b] > smax)
                smax = (double)W[b] / (double)n[b];
        }
        REQUIRE(controller__weights(nb, W, n, w, ach) == 0);
        k = 256.0 / smax;
        for (b = 0; b < nb; b++) {
            total += (double)w[b] * (double)n[b];
            A += (double)n[b] * k * (double)W[b] / (double)n[b];
        }
        for (b = 0; b < nb; b++) {
            double req = (double)W[b] / sumw, got = (double)w[b] * (double)n[b] / total;
            CHECK(w[b] >= 1 && w[b] <= 256);
            CHECK(fabs(got - req) <= 0.5);
        }
        {
            /* The documented bound: with x_b = 256 * s_b / s_max and E = sum n_b |w'_b - x_b|
             * for the rounded (and clamped) weights w' at that largest scale, the total error
             * sum |achieved - requested| <= 2E / (A - E) with A = sum n_b x_b; the search
             * never does worse than that scale. */
            double err = 0, err256 = 0, tot256 = 0, E = 0;
            int w256[4];
            for (b = 0; b < nb; b++) {
                double x = k * (double)W[b] / (double)n[b];
                int r = (int)floor(x + 0.5);
                w256[b] = r < 1 ? 1 : r;
                tot256 += (double)w256[b] * (double)n[b];
                E += (double)n[b] * fabs(w256[b] - x);
            }
            for (b = 0; b < nb; b++) {
                double req = (double)W[b] / sumw;
                err += fabs((double)w[b] * (double)n[b] / total - req);
                err256 += fabs((double)w256[b] * (double)n[b] / tot256 - req);
            }
            CHECK(err <= err256 + 1e-12);
            if (A > E && !(err256 <= 2 * E / (A - E) + 1e-12)) {
                fprintf(stderr, "  bound: err %g > %g (nb %zu)\n", err256, 2 * E / (A - E), nb);
                unit__failures++;
                return;
            }
        }
    }
}

static void t_weights_exact(void)
{
    long long W[3], n[3], ach[3];
    int w[3];

    /* equal endpoints, 90/10: exact with weights 9 and 1 */
    W[0] = 90, W[1] = 10, n[0] = 2, n[1] = 2;
    CHECK_INT(controller__weights(2, W, n, w, ach), 0);
    CHECK_INT(w[0], 9);
    CHECK_INT(w[1], 1);
    CHECK_INT(ach[0], 900000);
    /* 50/50 with 1 and 4 endpoints: one server at 4, four at 1 */
    W[0] = 50, W[1] = 50, n[0] = 1, n[1] = 4;
    CHECK_INT(controller__weights(2, W, n, w, ach), 0);
    CHECK_INT(w[0], 4);
    CHECK_INT(w[1], 1);
    CHECK_INT(ach[1], 500000);
    /* weight 0 and a backend without endpoints get 0; the rest share everything */
    W[0] = 0, W[1] = 30, W[2] = 70, n[0] = 3, n[1] = 0, n[2] = 5;
    CHECK_INT(controller__weights(3, W, n, w, ach), 0);
    CHECK_INT(w[0], 0);
    CHECK_INT(w[1], 0);
    CHECK_INT(w[2], 1);
    CHECK_INT(ach[2], 1000000);
    /* extreme ratio: clamped to 1, the smallest representable share */
    W[0] = 1000000, W[1] = 1, n[0] = 1, n[1] = 1;
    CHECK_INT(controller__weights(2, W, n, w, ach), 0);
    CHECK_INT(w[0], 256);
    CHECK_INT(w[1], 1);
    CHECK_INT(ach[1], 3891); /* 1/257 */
    /* bad input */
    W[0] = -1;
    CHECK_INT(controller__weights(1, W, n, w, ach), -EINVAL);
    CHECK_INT(controller__weights(0, W, n, w, ach), -EINVAL);
}

static void t_parsers(void)
{
    json_t *v;
    CHECK_INT(controller__duration_ms("500ms"), 500);
    CHECK_INT(controller__duration_ms("1m30s"), 90000);
    CHECK_INT(controller__duration_ms("2h"), 7200000);
    CHECK_INT(controller__duration_ms("1.5s"), -1);
    CHECK_INT(controller__duration_ms("3 s"), -1);
    CHECK_INT(controller__duration_ms(""), -1);
    CHECK_INT(controller__duration_ms("999999h"), -1);
    v = json_string("500m");
    CHECK_INT(controller__quantity_milli(v), 500);
    json_decref(v);
    v = json_string("1.5");
    CHECK_INT(controller__quantity_milli(v), 1500);
    json_decref(v);
    v = json_string("2k");
    CHECK_INT(controller__quantity_milli(v), 2000000);
    json_decref(v);
    v = json_integer(3);
    CHECK_INT(controller__quantity_milli(v), 3000);
    json_decref(v);
    v = json_string("-5");
    CHECK_INT(controller__quantity_milli(v), -1);
    json_decref(v);
    v = json_string("1x");
    CHECK_INT(controller__quantity_milli(v), -1);
    json_decref(v);
}

/* ---- incremental -------------------------------------------------------------------------- */

/* Namespace "other": a meshed pod that may not call reviews (deny mode, no Allow for it). */
static json_t *other_ns(void)
{
    const char *y =
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lonely, namespace: other, labels: {app: "
        "lonely}}\nspec: {serviceAccountName: lonely, containers: [{name: app}, {name: "
        "weft-proxy}]}\nstatus: {podIP: 10.9.0.1}\n---\n"
        "apiVersion: mesh.weft.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: same-ns, "
        "namespace: default}\nspec: {targetRef: {kind: Namespace}, action: Allow, from: "
        "[{namespace: default}]}\n";
    json_t *docs = NULL;
    REQUIRE(yaml_to_json(y, strlen(y), &docs, NULL) == 0);
    return docs;
}

/* AccessPolicy default/v2: Allow, to the Service reviews-v2, from other_ns's ServiceAccount
 * other/lonely. */
static json_t *allow_v2_from_lonely(void)
{
    return json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:{s:s,s:s},s:s,s:[{s:{s:s,s:s}}]}}", "apiVersion",
                     "mesh.weft.dev/v1alpha1", "kind", "AccessPolicy", "metadata", "name", "v2",
                     "namespace", "default", "spec", "targetRef", "kind", "Service", "name",
                     "reviews-v2", "action", "Allow", "from", "serviceAccount", "name", "lonely",
                     "namespace", "other");
}

static void dirty_is(struct mesh_model *m, const char *const *want, size_t n)
{
    json_t *d = NULL;
    size_t i;
    REQUIRE(mesh_model_dirty_proxies(m, &d) == 0);
    if (json_array_size(d) != n) {
        char *s = json_dumps(d, 0);
        fprintf(stderr, "  dirty: got %s, want %zu entries\n", s, n);
        free(s);
        unit__failures++;
    } else {
        for (i = 0; i < n; i++)
            CHECK_STR(json_string_value(json_array_get(d, i)), want[i]);
    }
    json_decref(d);
}

static void compile_all(struct mesh_model *m)
{
    json_t *d = NULL, *k;
    size_t i;
    REQUIRE(mesh_model_dirty_proxies(m, &d) == 0);
    json_array_foreach(d, i, k)
    {
        char ns[128], name[128];
        json_t *doc = NULL;
        REQUIRE(sscanf(json_string_value(k), "%127[^/]/%127s", ns, name) == 2);
        if (mesh_compile_pod(m, ns, name, &doc) == 0)
            json_decref(doc);
    }
    json_decref(d);
}

static json_t *find_obj(json_t *docs, const char *kind, const char *name)
{
    size_t i;
    json_t *o;
    json_array_foreach(
        docs, i,
        o) if (!strcmp(controller__jstr(o, "kind"), kind) &&
               !strcmp(controller__jstr(controller__jget(o, "metadata"), "name"), name)) return o;
    return NULL;
}

static void t_incr_weight_change(void)
{
    json_t *docs = load_yaml(FIX "/split-uneven/cluster.yaml"), *extra = other_ns(), *o, *ts;
    struct mesh_model *m;
    struct mesh_compile_info info;
    json_t *doc = NULL, *before, *p;
    size_t i;
    static const char *const callers[] = {"default/productpage-1", "default/reviews-v1-a",
                                          "default/reviews-v1-b",  "default/reviews-v1-c",
                                          "default/reviews-v1-d",  "default/reviews-v2-a"};

    m = model_from(docs, MESH_MODE_DENY);
    json_array_foreach(extra, i, o) REQUIRE(mesh_model_upsert(m, o) == 0);
    compile_all(m);
    REQUIRE(mesh_compile_pod_ex(m, "other", "lonely", &before, &info) == 0);
    CHECK(json_array_size(json_object_get(before, "outbound")) == 0); /* deny mode: nothing */
    CHECK(!info.changed);

    /* the weight of reviews-v2 from 30 to 50: all default pods may call reviews */
    ts = json_deep_copy(find_obj(docs, "TrafficSplit", "reviews"));
    json_integer_set(
        controller__jget(json_array_get(controller__jget(ts, "spec.backends"), 1), "weight"), 50);
    REQUIRE(mesh_model_upsert(m, ts) == 0);
    dirty_is(m, callers, ARRAY_LEN(callers));
    REQUIRE(mesh_compile_pod_ex(m, "default", "productpage-1", &doc, &info) == 0);
    CHECK(info.changed);
    p = outbound_port(doc, "reviews", 9080);
    CHECK_INT(
        controller__jint(
            json_array_get(
                controller__jget(json_array_get(json_object_get(p, "routes"), 0), "backends"), 1),
            "requestedPpm", 0),
        416667);
    json_decref(doc);
    /* the lonely pod did not change */
    REQUIRE(mesh_compile_pod_ex(m, "other", "lonely", &doc, &info) == 0);
    CHECK(!info.changed);
    CHECK(json_equal(doc, before));
    json_decref(doc);

    /* the same object again: nothing dirty, documents unchanged */
    REQUIRE(mesh_model_upsert(m, ts) == 0);
    dirty_is(m, NULL, 0);
    REQUIRE(mesh_compile_pod_ex(m, "default", "productpage-1", &doc, &info) == 0);
    CHECK(!info.changed);
    json_decref(doc);
    json_decref(ts);
    json_decref(before);
    json_decref(extra);
    json_decref(docs);
    mesh_model_free(m);
}

static void t_incr_policy_and_pods(void)
{
    json_t *docs = load_yaml(FIX "/split-uneven/cluster.yaml"), *extra = other_ns(), *o, *pod, *ap,
           *doc;
    struct mesh_model *m;
    struct mesh_compile_info info;
    size_t i;
    static const char *const v2[] = {"default/reviews-v2-a"};
    static const char *const lonely[] = {"other/lonely"};
    static const char *const lonely_and_v2[] = {"default/reviews-v2-a", "other/lonely"};

    m = model_from(docs, MESH_MODE_DENY);
    json_array_foreach(extra, i, o) REQUIRE(mesh_model_upsert(m, o) == 0);
    compile_all(m);

    /* a pod status change that moves no compiled field dirties nothing */
    pod = json_deep_copy(find_obj(docs, "Pod", "reviews-v2-a"));
    json_object_set_new(json_object_get(pod, "status"), "phase", json_string("Running"));
    json_object_set_new(json_object_get(pod, "status"), "conditions",
                        json_pack("[{s:s,s:s}]", "type", "Ready", "status", "True"));
    REQUIRE(mesh_model_upsert(m, pod) == 0);
    dirty_is(m, NULL, 0);
    /* a label change dirties that pod only */
    json_object_set_new(controller__jget(pod, "metadata.labels"), "track", json_string("canary"));
    REQUIRE(mesh_model_upsert(m, pod) == 0);
    dirty_is(m, v2, 1);

    /* an Allow for reviews-v2 only from other/lonely: v2's inbound, and lonely may now call
     * reviews-v2 (its outbound) */
    ap = allow_v2_from_lonely();
    REQUIRE(mesh_model_upsert(m, ap) == 0);
    dirty_is(m, lonely_and_v2, 2);
    REQUIRE(mesh_compile_pod_ex(m, "other", "lonely", &doc, &info) == 0);
    CHECK(info.changed);
    /* reviews-v2 only: the apex reviews still admits callers from default only */
    CHECK_INT(json_array_size(json_object_get(doc, "outbound")), 1);
    CHECK_STR(controller__jstr(json_array_get(json_object_get(doc, "outbound"), 0), "service"),
              "reviews-v2");
    json_decref(doc);
    doc = NULL;
    REQUIRE(mesh_compile_pod_ex(m, "default", "reviews-v2-a", &doc, &info) == 0);
    CHECK(info.changed);
    CHECK_STR(controller__jstr(inbound_port(doc, 9080), "default"), "deny");
    json_decref(doc);

    /* deleting the lonely pod: listed once, then not found */
    REQUIRE(mesh_model_delete(m, "Pod", "other", "lonely") == 0);
    dirty_is(m, lonely, 1);
    CHECK_INT(mesh_compile_pod(m, "other", "lonely", &doc), ERR_NOTFOUND);
    /* deleting the policy: the reviews-v2 pod only (nobody else calls through it now) */
    REQUIRE(mesh_model_delete(m, "AccessPolicy", "default", "v2") == 0);
    dirty_is(m, v2, 1);
    CHECK_INT(mesh_model_delete(m, "AccessPolicy", "default", "v2"), ERR_NOTFOUND);
    json_decref(ap);
    json_decref(pod);
    json_decref(extra);
    json_decref(docs);
    mesh_model_free(m);
}

static void t_incr_endpoints_and_service(void)
{
    json_t *docs = load_yaml(FIX "/split-uneven/cluster.yaml"), *sl, *doc;
    struct mesh_model *m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);
    struct mesh_compile_info info;
    json_t *d = NULL;

    compile_all(m);
    /* reviews-v2's only endpoint becomes not ready: callers recompile; weights move to v1 */
    sl = json_deep_copy(find_obj(docs, "EndpointSlice", "reviews-v2-x"));
    json_object_set_new(
        controller__jget(json_array_get(json_object_get(sl, "endpoints"), 0), "conditions"),
        "ready", json_false());
    REQUIRE(mesh_model_upsert(m, sl) == 0);
    REQUIRE(mesh_model_dirty_proxies(m, &d) == 0);
    CHECK_INT(json_array_size(d), 6); /* every pod in default may call reviews */
    json_decref(d);
    REQUIRE(mesh_compile_pod_ex(m, "default", "productpage-1", &doc, &info) == 0);
    CHECK(info.changed);
    {
        json_t *bs = controller__jget(
            json_array_get(json_object_get(outbound_port(doc, "reviews", 9080), "routes"), 0),
            "backends");
        CHECK_INT(controller__jint(json_array_get(bs, 0), "achievedPpm", 0), 1000000);
        CHECK_INT(controller__jint(json_array_get(bs, 1), "achievedPpm", 0), 0);
        CHECK_INT(controller__jint(json_array_get(bs, 1), "requestedPpm", 0), 300000);
    }
    json_decref(doc);
    /* deleting the split: the apex serves its own endpoints */
    REQUIRE(mesh_model_delete(m, "TrafficSplit", "default", "reviews") == 0);
    REQUIRE(mesh_compile_pod_ex(m, "default", "productpage-1", &doc, &info) == 0);
    CHECK(info.changed);
    CHECK(!json_object_get(
        json_array_get(json_object_get(outbound_port(doc, "reviews", 9080), "routes"), 0),
        "split"));
    json_decref(doc);
    /* deleting a service removes it from every outbound */
    REQUIRE(mesh_model_delete(m, "Service", "default", "reviews-v1") == 0);
    REQUIRE(mesh_compile_pod(m, "default", "productpage-1", &doc) == 0);
    CHECK(!outbound_port(doc, "reviews-v1", 9080));
    CHECK(outbound_port(doc, "reviews-v2", 9080));
    json_decref(doc);
    json_decref(sl);
    json_decref(docs);
    mesh_model_free(m);
}

static void t_incr_namespace_labels(void)
{
    json_t *docs = load_yaml(FIX "/policies/cluster.yaml"), *ns, *doc;
    struct mesh_model *m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);
    static const char *const want[] = {"payments/billing-1", "shop/api-1"};
    json_t *allow;

    compile_all(m);
    /* payments loses team=payments: billing's reach to api and api's compiled peers change */
    ns = json_deep_copy(find_obj(docs, "Namespace", "payments"));
    json_object_set_new(json_object_get(ns, "metadata"), "labels", json_object());
    REQUIRE(mesh_model_upsert(m, ns) == 0);
    dirty_is(m, want, 2);
    doc = compile(m, "shop", "api-1");
    allow = json_array_get(json_object_get(inbound_port(doc, 8080), "allow"), 0);
    CHECK_INT(json_array_size(controller__jget(allow, "peers.prefixes")), 1); /* batch only */
    json_decref(doc);
    doc = compile(m, "payments", "billing-1");
    CHECK(!outbound_port(doc, "api", 8080));
    json_decref(doc);
    json_decref(ns);
    json_decref(docs);
    mesh_model_free(m);
}

/* After a series of changes, every document equals the one a fresh model compiles from the
 * final object set. */
static void upsert_tracked(struct mesh_model *m, json_t *state, json_t *o)
{
    char key[512];
    snprintf(key, sizeof(key), "%s|%s|%s/%s", controller__jstr(o, "apiVersion"),
             controller__jstr(o, "kind"),
             controller__jstr(controller__jget(o, "metadata"), "namespace"),
             controller__jstr(controller__jget(o, "metadata"), "name"));
    REQUIRE(mesh_model_upsert(m, o) == 0);
    json_object_set(state, key, o);
}

static void incr_matches_scratch(enum mesh_outbound_scope scope)
{
    json_t *a = load_yaml(FIX "/split-uneven/cluster.yaml"),
           *b = load_yaml(FIX "/policies/cluster.yaml");
    json_t *state = json_object(), *o, *fresh_docs = json_array(), *keys = NULL, *k;
    struct mesh_model *m = NULL, *fresh;
    struct mesh_config cfg = {.mode = MESH_MODE_ALL_AUTHENTICATED, .outbound_scope = scope};
    const char *key;
    size_t i;
    int round;

    REQUIRE(mesh_model_new(&cfg, &m) == 0);
    json_array_foreach(a, i, o) upsert_tracked(m, state, o);
    json_array_foreach(b, i, o) upsert_tracked(m, state, o);
    compile_all(m);
    for (round = 0; round < 3; round++) {
        json_t *ts = json_deep_copy(find_obj(a, "TrafficSplit", "reviews"));
        json_t *pod = json_deep_copy(find_obj(a, "Pod", "reviews-v2-a"));
        json_t *ns = json_deep_copy(find_obj(b, "Namespace", "payments"));
        json_t *svc = json_deep_copy(find_obj(b, "Service", "web"));
        json_integer_set(
            controller__jget(json_array_get(controller__jget(ts, "spec.backends"), 0), "weight"),
            10 + round * 40);
        upsert_tracked(m, state, ts);
        json_object_set_new(json_object_get(pod, "spec"), "serviceAccountName",
                            json_string(round % 2 ? "reviews" : "productpage"));
        upsert_tracked(m, state, pod);
        json_object_set_new(json_object_get(ns, "metadata"), "labels",
                            round % 2 ? json_pack("{s:s}", "team", "payments") : json_object());
        upsert_tracked(m, state, ns);
        json_object_set_new(controller__jget(svc, "spec.selector"), "app",
                            json_string(round % 2 ? "web" : "api"));
        upsert_tracked(m, state, svc);
        if (round == 1) {
            REQUIRE(mesh_model_delete(m, "AccessPolicy", "shop", "api-allow") == 0);
            json_object_del(state, "mesh.weft.dev/v1alpha1|AccessPolicy|shop/api-allow");
            REQUIRE(mesh_model_delete(m, "EndpointSlice.discovery.k8s.io", "default",
                                      "reviews-v1-x") == 0);
            json_object_del(state, "discovery.k8s.io/v1|EndpointSlice|default/reviews-v1-x");
        }
        compile_all(m);
        json_decref(ts);
        json_decref(pod);
        json_decref(ns);
        json_decref(svc);
    }
    json_object_foreach(state, key, o) json_array_append(fresh_docs, o);
    fresh = model_scoped(fresh_docs, MESH_MODE_ALL_AUTHENTICATED, scope);
    REQUIRE(mesh_model_dirty_proxies(fresh, &keys) == 0);
    CHECK_INT(json_array_size(keys), 9);
    json_array_foreach(keys, i, k)
    {
        char pns[64], pn[64];
        json_t *d1 = NULL, *d2 = NULL;
        REQUIRE(sscanf(json_string_value(k), "%63[^/]/%63s", pns, pn) == 2);
        CHECK_INT(mesh_compile_pod(fresh, pns, pn, &d1), 0);
        CHECK_INT(mesh_compile_pod(m, pns, pn, &d2), 0);
        if (!json_equal(d1, d2)) {
            fprintf(stderr, "  %s: incremental document differs from a fresh compile (%s)\n",
                    json_string_value(k), mesh_outbound_scope_name(scope));
            unit__failures++;
        }
        json_decref(d1);
        json_decref(d2);
    }
    json_decref(keys);
    json_decref(fresh_docs);
    json_decref(state);
    json_decref(a);
    json_decref(b);
    mesh_model_free(fresh);
    mesh_model_free(m);
}

static void t_incr_matches_scratch(void)
{
    incr_matches_scratch(MESH_OUTBOUND_ADMITTED);
    incr_matches_scratch(MESH_OUTBOUND_MESH);
}

/* ---- the outbound scope "mesh" (the default) ---------------------------------------------- */

/* A document without its "outbound" (a new reference). */
static json_t *without_outbound(json_t *doc)
{
    json_t *c = json_copy(doc);
    REQUIRE(c);
    json_object_del(c, "outbound");
    return c;
}

/*
 * policies in the scope "mesh": every pod's outbound lists both meshed Services, api included
 * for api-1 and web-1, which no Allow admits to api:5432 (db-allow-l7 has L7 rules on a tcp
 * port) and web-1 only on 8080; everything else in the documents (the inbound rules the target
 * enforces, the head) is what the scope "admitted" compiles.
 */
static void t_scope_mesh_policies(void)
{
    char path[256];
    json_t *docs;
    struct mesh_model *mesh, *adm;
    static const struct {
        const char *ns, *pod, *mesh, *admitted;
    } want[] = {{"shop", "api-1", "shop/api shop/web", "shop/web"},
                {"shop", "web-1", "shop/api shop/web", "shop/api shop/web"},
                {"payments", "billing-1", "shop/api shop/web", "shop/api shop/web"}};

    snprintf(path, sizeof(path), FIX "/policies/cluster.yaml");
    docs = load_yaml(path);
    mesh = model_scoped(docs, MESH_MODE_ALL_AUTHENTICATED, MESH_OUTBOUND_MESH);
    adm = model_scoped(docs, MESH_MODE_ALL_AUTHENTICATED, MESH_OUTBOUND_ADMITTED);
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        json_t *dm = compile(mesh, want[i].ns, want[i].pod);
        json_t *da = compile(adm, want[i].ns, want[i].pod);
        json_t *rm = without_outbound(dm), *ra = without_outbound(da);
        CHECK_STR(callees(dm), want[i].mesh);
        CHECK_STR(callees(da), want[i].admitted);
        CHECK(json_equal(rm, ra));
        /* a Service's block is the same whoever calls it */
        CHECK(json_equal(outbound_port(dm, "web", 80), outbound_port(da, "web", 80)));
        json_decref(rm);
        json_decref(ra);
        json_decref(dm);
        json_decref(da);
    }
    mesh_model_free(mesh);
    mesh_model_free(adm);
    json_decref(docs);
}

/*
 * Mode deny in the scope "mesh": no Allow anywhere for reviews, yet lonely (other namespace,
 * admitted by nothing) lists every meshed Service; the targets' inbound default is deny, so
 * their sidecars answer 403 <ns>/default. In the scope "admitted" lonely lists nothing.
 */
static void t_scope_mesh_mode_deny(void)
{
    json_t *docs = load_yaml(FIX "/split-uneven/cluster.yaml"), *extra = other_ns(), *o, *doc;
    struct mesh_model *m;
    size_t i;

    m = model_scoped(docs, MESH_MODE_DENY, MESH_OUTBOUND_MESH);
    json_array_foreach(extra, i, o) REQUIRE(mesh_model_upsert(m, o) == 0);
    doc = compile(m, "other", "lonely");
    CHECK_STR(callees(doc), "default/productpage default/reviews default/reviews-v1 "
                            "default/reviews-v2");
    CHECK_STR(controller__jstr(doc, "mode"), "deny");
    json_decref(doc);
    doc = compile(m, "default", "reviews-v2-a");
    CHECK_STR(controller__jstr(inbound_port(doc, 9080), "default"), "deny");
    json_decref(doc);
    mesh_model_free(m);

    m = model_scoped(docs, MESH_MODE_DENY, MESH_OUTBOUND_ADMITTED);
    json_array_foreach(extra, i, o) REQUIRE(mesh_model_upsert(m, o) == 0);
    doc = compile(m, "other", "lonely");
    CHECK_STR(callees(doc), "");
    json_decref(doc);
    mesh_model_free(m);
    json_decref(extra);
    json_decref(docs);
}

/*
 * What changes dirty in the scope "mesh": an AccessPolicy only the pods it targets (no caller's
 * outbound depends on policies), namespace labels only the targets of the policies whose
 * namespaceSelector flips, a TrafficSplit every meshed pod (everyone calls its apex).
 */
static void t_scope_mesh_dirty(void)
{
    json_t *docs = load_yaml(FIX "/split-uneven/cluster.yaml"), *extra = other_ns(), *o, *ap, *ts;
    json_t *pol = load_yaml(FIX "/policies/cluster.yaml"), *ns;
    struct mesh_model *m;
    size_t i;
    static const char *const v2[] = {"default/reviews-v2-a"};
    static const char *const api[] = {"shop/api-1"};
    static const char *const everyone[] = {"default/productpage-1",
                                           "default/reviews-v1-a",
                                           "default/reviews-v1-b",
                                           "default/reviews-v1-c",
                                           "default/reviews-v1-d",
                                           "default/reviews-v2-a",
                                           "other/lonely",
                                           "payments/billing-1",
                                           "shop/api-1",
                                           "shop/web-1"};

    m = model_scoped(docs, MESH_MODE_DENY, MESH_OUTBOUND_MESH);
    json_array_foreach(extra, i, o) REQUIRE(mesh_model_upsert(m, o) == 0);
    json_array_foreach(pol, i, o) REQUIRE(mesh_model_upsert(m, o) == 0);
    compile_all(m);

    /* an Allow for reviews-v2 from other/lonely: reviews-v2-a's inbound only */
    ap = allow_v2_from_lonely();
    REQUIRE(mesh_model_upsert(m, ap) == 0);
    dirty_is(m, v2, 1);
    REQUIRE(mesh_model_delete(m, "AccessPolicy", "default", "v2") == 0);
    dirty_is(m, v2, 1);

    /* payments loses team=payments: api-allow's namespaceSelector flips for api-1 only */
    ns = json_deep_copy(find_obj(pol, "Namespace", "payments"));
    json_object_set_new(json_object_get(ns, "metadata"), "labels", json_object());
    REQUIRE(mesh_model_upsert(m, ns) == 0);
    dirty_is(m, api, 1);

    /* a weight change of the reviews split: every meshed pod calls reviews */
    ts = json_deep_copy(find_obj(docs, "TrafficSplit", "reviews"));
    json_integer_set(
        controller__jget(json_array_get(controller__jget(ts, "spec.backends"), 1), "weight"), 50);
    REQUIRE(mesh_model_upsert(m, ts) == 0);
    dirty_is(m, everyone, ARRAY_LEN(everyone));

    json_decref(ts);
    json_decref(ns);
    json_decref(ap);
    json_decref(pol);
    json_decref(extra);
    json_decref(docs);
    mesh_model_free(m);
}

/* ---- status ------------------------------------------------------------------------------- */

static void t_status_transitions(void)
{
    json_t *docs = load_yaml(FIX "/missing-refs/cluster.yaml"), *c1 = NULL, *c2 = NULL, *svc;
    struct mesh_model *m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);

    REQUIRE(mesh_model_status(m, "RetryPolicy", "default", "svc-missing", NULL, NOW, &c1) == 0);
    CHECK_STR(cond(c1, "ResolvedRefs", "status"), "False");
    CHECK_STR(cond(c1, "ResolvedRefs", "message"),
              "Service default/ratings (the target) not found");
    /* still missing: lastTransitionTime kept */
    REQUIRE(mesh_model_status(m, "RetryPolicy", "default", "svc-missing", c1,
                              "2026-02-02T00:00:00Z", &c2) == 0);
    CHECK_STR(cond(c2, "ResolvedRefs", "lastTransitionTime"), NOW);
    json_decref(c2);
    /* the Service appears: ResolvedRefs flips and moves its time; Accepted keeps its own */
    svc = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:[{s:i,s:s}],s:{s:s}}}", "apiVersion", "v1",
                    "kind", "Service", "metadata", "name", "ratings", "namespace", "default",
                    "spec", "clusterIP", "10.96.9.9", "ports", "port", 9080, "name", "http",
                    "selector", "app", "ratings");
    REQUIRE(mesh_model_upsert(m, svc) == 0);
    REQUIRE(mesh_model_status(m, "RetryPolicy", "default", "svc-missing", c1,
                              "2026-02-02T00:00:00Z", &c2) == 0);
    CHECK_STR(cond(c2, "ResolvedRefs", "status"), "True");
    CHECK_STR(cond(c2, "ResolvedRefs", "lastTransitionTime"), "2026-02-02T00:00:00Z");
    CHECK_STR(cond(c2, "Accepted", "lastTransitionTime"), NOW);
    CHECK_STR(cond(c2, "Programmed", "reason"), "Compiled");
    json_decref(c1);
    json_decref(c2);
    json_decref(svc);
    CHECK_INT(mesh_model_status(m, "RetryPolicy", "default", "nope", NULL, NOW, &c1), ERR_NOTFOUND);
    CHECK_INT(mesh_model_status(m, "Pod", "default", "x", NULL, NOW, &c1), ERR_UNSUPPORTED);
    CHECK_INT(mesh_model_status(m, "Gadget", "default", "x", NULL, NOW, &c1), ERR_UNSUPPORTED);
    json_decref(docs);
    mesh_model_free(m);
}

/* ---- the proxies a resource shapes -------------------------------------------------------- */

static int collect_key(void *arg, const char *key)
{
    return json_array_append_new(arg, json_string(key)) ? -ENOMEM : 0;
}

static int stop_at_first(void *arg, const char *key)
{
    (void)key;
    ++*(int *)arg;
    return 42;
}

/* The affected proxies of kind/ns/name, sorted and joined with spaces ("" when none). */
static char *affected(struct mesh_model *m, const char *kind, const char *ns, const char *name,
                      int *rc)
{
    json_t *keys = json_array(), *k;
    char *out = calloc(1, 4096);
    const char *v[64];
    size_t i, n = 0;

    *rc = mesh_model_affected_proxies(m, kind, ns, name, collect_key, keys);
    json_array_foreach(keys, i, k) if (n < 64) v[n++] = json_string_value(k);
    for (i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            const char *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    for (i = 0; i < n; i++)
        snprintf(out + strlen(out), 4096 - strlen(out), "%s%s", i ? " " : "", v[i]);
    json_decref(keys);
    return out;
}

static void t_affected_proxies(void)
{
    json_t *docs = load_yaml(FIX "/retries/cluster.yaml");
    json_t *pdocs = load_yaml(FIX "/policies/cluster.yaml");
    struct mesh_model *m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);
    struct mesh_model *pm = model_from(pdocs, MESH_MODE_ALL_AUTHENTICATED);
    char *s;
    int rc, calls = 0;

    /* a RetryPolicy: every meshed pod that may call its Service */
    s = affected(m, "RetryPolicy", "default", "ratings-http", &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(s, "default/client-1 default/ratings-1");
    free(s);
    /* an AccessPolicy: the meshed pods it targets (a Service's, a selector's, a namespace's) */
    s = affected(pm, "AccessPolicy", "shop", "api-allow", &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(s, "shop/api-1");
    free(s);
    s = affected(pm, "AccessPolicy", "shop", "audit-monitoring", &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(s, "shop/api-1 shop/web-1");
    free(s);
    /* the walk stops at the visitor's first nonzero return, which is returned */
    CHECK_INT(mesh_model_affected_proxies(m, "RetryPolicy", "default", "ratings-http",
                                          stop_at_first, &calls),
              42);
    CHECK_INT(calls, 1);
    s = affected(m, "RetryPolicy", "default", "nope", &rc);
    CHECK_INT(rc, ERR_NOTFOUND);
    free(s);
    s = affected(m, "Pod", "default", "client-1", &rc);
    CHECK_INT(rc, ERR_UNSUPPORTED);
    free(s);
    json_decref(docs);
    json_decref(pdocs);
    mesh_model_free(m);
    mesh_model_free(pm);
}

/* ---- errors ------------------------------------------------------------------------------- */

/* An AccessPolicy d/NAME allowing one path match {TYPE, VALUE}, upserted; its status. */
static json_t *path_policy_status(struct mesh_model *m, const char *name, const char *type,
                                  const char *value)
{
    json_t *st = NULL,
           *o = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:{s:s},s:s,s:[{s:[{s:s,s:s}]}]}}", "apiVersion",
                          "mesh.weft.dev/v1alpha1", "kind", "AccessPolicy", "metadata", "name",
                          name, "namespace", "d", "spec", "targetRef", "kind", "Namespace",
                          "action", "Allow", "rules", "paths", "type", type, "value", value);

    CHECK_INT(mesh_model_upsert(m, o), 0);
    json_decref(o);
    REQUIRE(mesh_model_status(m, "AccessPolicy", "d", name, NULL, NOW, &st) == 0);
    return st;
}

static void t_errors(void)
{
    struct mesh_model *m = NULL;
    json_t *o, *doc = NULL, *st;
    enum mesh_mode mode;
    enum mesh_outbound_scope scope;

    REQUIRE(mesh_model_new(NULL, &m) == 0);
    o = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap", "metadata", "name",
                  "x");
    CHECK_INT(mesh_model_upsert(m, o), ERR_UNSUPPORTED);
    json_decref(o);
    o = json_pack("{s:s,s:s,s:{}}", "apiVersion", "v1", "kind", "Pod", "metadata");
    CHECK_INT(mesh_model_upsert(m, o), ERR_INVALID);
    json_decref(o);
    o = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Pod", "metadata", "name",
                  "no-namespace");
    CHECK_INT(mesh_model_upsert(m, o), ERR_INVALID);
    json_decref(o);
    o = json_pack("[]");
    CHECK_INT(mesh_model_upsert(m, o), ERR_UNSUPPORTED);
    json_decref(o);
    /* malformed custom resources are stored, not accepted */
    o = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:[{s:s,s:s}]}}", "apiVersion",
                  "mesh.weft.dev/v1alpha1", "kind", "TrafficSplit", "metadata", "name", "bad",
                  "namespace", "d", "spec", "service", "a", "backends", "service", "b", "weight",
                  "ten");
    CHECK_INT(mesh_model_upsert(m, o), 0);
    json_decref(o);
    REQUIRE(mesh_model_status(m, "TrafficSplit", "d", "bad", NULL, NOW, &st) == 0);
    CHECK_STR(cond(st, "Accepted", "reason"), "Invalid");
    CHECK_STR(cond(st, "Accepted", "message"),
              "spec.backends[0].weight: must be an integer 0..1000000");
    json_decref(st);
    st = path_policy_status(m, "bad", "Exact", "no-slash");
    CHECK_STR(cond(st, "Accepted", "message"),
              "spec.rules[0].paths[0].value: no-slash must start with \"/\"");
    json_decref(st);
    /* regular expressions are checked by the engine the proxies run (PCRE2, as HAProxy):
     * "/x**" compiles as POSIX ERE but HAProxy refuses it */
    st = path_policy_status(m, "re", "RegularExpression", "/x**");
    CHECK_STR(cond(st, "Accepted", "reason"), "Invalid");
    CHECK_STR(cond(st, "Accepted", "message"),
              "spec.rules[0].paths[0].value: /x** is not a valid regular expression (quantifier "
              "does not follow a repeatable item at offset 3)");
    json_decref(st);
    st = path_policy_status(m, "re2", "RegularExpression", "^/api/v[0-9]+/(?:a|b)$");
    CHECK_STR(cond(st, "Accepted", "status"), "True");
    json_decref(st);
    CHECK_INT(mesh_model_delete(m, "Pod", "nowhere", "x"), ERR_NOTFOUND);
    CHECK_INT(mesh_model_delete(m, "Gadget", "d", "x"), ERR_UNSUPPORTED);
    CHECK_INT(mesh_model_delete(m, "Namespace", NULL, "nowhere"), ERR_NOTFOUND);
    CHECK_INT(mesh_compile_pod(m, "d", "nope", &doc), ERR_NOTFOUND);
    CHECK(doc == NULL);
    CHECK_INT(mesh_mode_parse("deny", &mode), 0);
    CHECK_INT(mode, MESH_MODE_DENY);
    CHECK_INT(mesh_mode_parse("strict", &mode), -EINVAL);
    CHECK_STR(mesh_mode_name(MESH_MODE_PERMISSIVE), "permissive");
    CHECK_INT(mesh_outbound_scope_parse("admitted", &scope), 0);
    CHECK_INT(scope, MESH_OUTBOUND_ADMITTED);
    CHECK_INT(mesh_outbound_scope_parse("mesh", &scope), 0);
    CHECK_INT(scope, MESH_OUTBOUND_MESH);
    CHECK_INT(mesh_outbound_scope_parse("Mesh", &scope), -EINVAL);
    CHECK_INT(mesh_outbound_scope_parse("", &scope), -EINVAL);
    CHECK_INT(mesh_outbound_scope_parse(NULL, &scope), -EINVAL);
    CHECK_STR(mesh_outbound_scope_name(MESH_OUTBOUND_ADMITTED), "admitted");
    CHECK_STR(mesh_outbound_scope_name(MESH_OUTBOUND_MESH), "mesh");
    mesh_model_free(m);
    mesh_model_free(NULL);
}

/* Every object of every fixture upserted, then deleted one by one: no leaks, nothing left. */
static void t_upsert_delete_all(void)
{
    static const char *const cases[] = {"split-uneven", "smi",       "policies", "retries",
                                        "missing-refs", "conflicts", "sidecars", "headless"};
    size_t c, i;
    for (c = 0; c < ARRAY_LEN(cases); c++) {
        char path[256];
        json_t *docs, *o, *stats, *d = NULL;
        struct mesh_model *m;
        const char *k;
        json_t *v;
        snprintf(path, sizeof(path), FIX "/%s/cluster.yaml", cases[c]);
        docs = load_yaml(path);
        m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);
        compile_all(m);
        for (i = json_array_size(docs); i-- > 0;) {
            char kind[128];
            const char *av;
            o = json_array_get(docs, i);
            av = controller__jstr(o, "apiVersion");
            snprintf(kind, sizeof(kind), "%s%s%.*s", controller__jstr(o, "kind"),
                     strchr(av, '/') ? "." : "", strchr(av, '/') ? (int)(strchr(av, '/') - av) : 0,
                     av);
            CHECK_INT(mesh_model_delete(
                          m, kind, controller__jstr(controller__jget(o, "metadata"), "namespace"),
                          controller__jstr(controller__jget(o, "metadata"), "name")),
                      0);
        }
        REQUIRE(mesh_model_dirty_proxies(m, &d) == 0);
        json_decref(d);
        stats = mesh_model_stats(m);
        json_object_foreach(stats, k, v) CHECK_INT(json_integer_value(v), 0);
        json_decref(stats);
        json_decref(docs);
        mesh_model_free(m);
    }
}

/* A backend refused before valid ones leaves no entry to compare names with: the split is
 * refused with the first problem, and the model does not crash (it read past the entries). */
static void t_split_skipped_backend(void)
{
    const char *y = "apiVersion: mesh.weft.dev/v1alpha1\nkind: TrafficSplit\nmetadata: {name: s, "
                    "namespace: default, generation: 1}\nspec: {service: a, backends: [{weight: "
                    "10}, {service: b, weight: 1}, {service: b, weight: 2}]}\n";
    struct mesh_model *m = NULL;
    json_t *docs = NULL, *conds = NULL;

    REQUIRE(yaml_to_json(y, strlen(y), &docs, NULL) == 0);
    m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);
    REQUIRE(mesh_model_status(m, "TrafficSplit", "default", "s", NULL, NOW, &conds) == 0);
    CHECK_STR(cond(conds, "Accepted", "status"), "False");
    CHECK(strstr(cond(conds, "Accepted", "message"), "spec.backends[0].service: required") != NULL);
    json_decref(conds);
    json_decref(docs);
    mesh_model_free(m);
}

/* ---- allocation failure: a compile yields the whole document or nothing ------------------ */

static long alloc_calls, alloc_fail_at = -1;

/* jansson's allocator for the sweeps: the alloc_fail_at-th call (0-based) fails. */
static void *failing_malloc(size_t n)
{
    if (alloc_fail_at >= 0 && alloc_calls++ == alloc_fail_at)
        return NULL;
    return malloc(n);
}

static void fail_jansson_alloc(long k)
{
    alloc_calls = 0;
    alloc_fail_at = k;
    json_set_alloc_funcs(failing_malloc, free);
}

/* Back to plain malloc; true when the k-th allocation happened (and so failed). */
static bool restore_jansson_alloc(void)
{
    bool injected = alloc_fail_at >= 0 && alloc_calls > alloc_fail_at;
    alloc_fail_at = -1;
    json_set_alloc_funcs(malloc, free);
    return injected;
}

static char *dump(const json_t *d)
{
    char *s = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
    REQUIRE(s);
    return s;
}

static bool is_dirty(struct mesh_model *m, const char *key)
{
    json_t *d = NULL, *k;
    size_t i;
    bool found = false;
    REQUIRE(mesh_model_dirty_proxies(m, &d) == 0);
    json_array_foreach(d, i, k) found = found || !strcmp(json_string_value(k), key);
    json_decref(d);
    return found;
}

/*
 * For every k: in a model built from fixture (and, when change is given, after ns/pod compiled
 * once and change was upserted), compile ns/pod with jansson's k-th allocation failing. Either
 * the compile succeeds with exactly the document compiled with memory to spare, or it fails with
 * -ENOMEM and: *doc and info are untouched, the document the caller kept (the last good one) is
 * unchanged, the failure counter moved by one, the pod is dirty again, and a retry yields the
 * whole document, reported as changed. The sweep ends at the first k the compile never reached.
 */
static void compile_sweep(const char *fixture, const char *ns, const char *pod,
                          const json_t *change)
{
    char path[256], key[256];
    json_t *docs, *ref;
    struct mesh_model *m;
    char *want;
    long k, failed = 0;
    bool injected = true;

    snprintf(path, sizeof(path), FIX "/%s/cluster.yaml", fixture);
    snprintf(key, sizeof(key), "%s/%s", ns, pod);
    docs = load_yaml(path);
    m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);
    if (change) {
        json_decref(compile(m, ns, pod));
        REQUIRE(mesh_model_upsert(m, change) == 0);
    }
    ref = compile(m, ns, pod);
    want = dump(ref);
    json_decref(ref);
    mesh_model_free(m);

    for (k = 0; injected; k++) {
        json_t *kept = NULL, *doc, *untouched = json_string("untouched");
        struct mesh_compile_info info = {.changed = false, .hash = {7, 7}};
        char *kept_text = NULL;
        uint64_t fails;
        int rc;

        REQUIRE(untouched);
        m = model_from(docs, MESH_MODE_ALL_AUTHENTICATED);
        if (change) {
            kept = compile(m, ns, pod); /* what the caller serves: the last good document */
            kept_text = dump(kept);
            REQUIRE(mesh_model_upsert(m, change) == 0);
        }
        (void)is_dirty(m, key); /* start from an empty dirty set */
        fails = mesh_model_compile_failures(m);
        doc = untouched;
        fail_jansson_alloc(k);
        rc = mesh_compile_pod_ex(m, ns, pod, &doc, &info);
        injected = restore_jansson_alloc();
        if (rc == 0) {
            char *got = dump(doc);
            CHECK_STR(got, want); /* never a partial document */
            CHECK_INT(mesh_model_compile_failures(m), fails);
            free(got);
            json_decref(doc);
        } else {
            json_t *again = NULL;
            char *got;

            failed++;
            CHECK_INT(rc, -ENOMEM);
            CHECK(doc == untouched);
            CHECK(!info.changed && info.hash[0] == 7 && info.hash[1] == 7);
            CHECK_INT(mesh_model_compile_failures(m), fails + 1);
            CHECK(is_dirty(m, key));
            REQUIRE(mesh_compile_pod_ex(m, ns, pod, &again, &info) == 0);
            got = dump(again);
            CHECK_STR(got, want);
            CHECK(info.changed); /* against the last good document, not a partial one */
            free(got);
            json_decref(again);
        }
        if (kept) {
            char *now = dump(kept);
            CHECK_STR(now, kept_text);
            free(now);
        }
        if (unit__failures) {
            fprintf(stderr, "  %s %s: failing jansson allocation %ld\n", fixture, key, k);
            k = -2; /* stop at the first failing k */
            injected = false;
        }
        free(kept_text);
        json_decref(kept);
        json_decref(untouched);
        mesh_model_free(m);
    }
    CHECK(failed > 20); /* the sweep did fail allocations inside the compile */
    free(want);
    json_decref(docs);
}

/*
 * For every k: build a model from fixture with jansson's k-th allocation failing. An upsert
 * that fails says -ENOMEM and is retried (as the work queue does); the model then compiles
 * exactly the documents of a model built with memory to spare: no object is kept partial.
 */
static void upsert_sweep(const char *fixture, enum mesh_outbound_scope scope)
{
    char path[256];
    json_t *docs, *want = json_object(), *o;
    struct mesh_model *m;
    bool injected = true;
    long k, failed = 0;
    size_t i;

    REQUIRE(want);
    snprintf(path, sizeof(path), FIX "/%s/cluster.yaml", fixture);
    docs = load_yaml(path);
    m = model_scoped(docs, MESH_MODE_ALL_AUTHENTICATED, scope);
    json_array_foreach(docs, i, o)
    {
        const char *ns = controller__jstr(controller__jget(o, "metadata"), "namespace");
        const char *pn = controller__jstr(controller__jget(o, "metadata"), "name");
        json_t *doc = NULL;
        char key[256], *text;
        if (strcmp(controller__jstr(o, "kind"), "Pod") != 0 ||
            mesh_compile_pod(m, ns, pn, &doc) != 0)
            continue;
        snprintf(key, sizeof(key), "%s/%s", ns, pn);
        text = dump(doc);
        REQUIRE(json_object_set_new(want, key, json_string(text)) == 0);
        free(text);
        json_decref(doc);
    }
    mesh_model_free(m);
    REQUIRE(json_object_size(want) > 0);

    for (k = 0; injected; k++) {
        struct mesh_config cfg = {.mode = MESH_MODE_ALL_AUTHENTICATED, .outbound_scope = scope};
        const char *key;
        json_t *w;

        m = NULL;
        REQUIRE(mesh_model_new(&cfg, &m) == 0);
        fail_jansson_alloc(k);
        json_array_foreach(docs, i, o)
        {
            int rc = mesh_model_upsert(m, o);
            if (rc) {
                failed++;
                CHECK_INT(rc, -ENOMEM);
                rc = mesh_model_upsert(m, o); /* only the k-th allocation fails */
                CHECK_INT(rc, 0);
            }
        }
        injected = restore_jansson_alloc();
        json_object_foreach(want, key, w)
        {
            char ns[128], pn[128];
            json_t *doc = NULL;
            REQUIRE(sscanf(key, "%127[^/]/%127s", ns, pn) == 2);
            if (mesh_compile_pod(m, ns, pn, &doc) == 0) {
                char *got = dump(doc);
                CHECK_STR(got, json_string_value(w));
                free(got);
                json_decref(doc);
            } else {
                fprintf(stderr, "  %s: %s has no document\n", fixture, key);
                unit__failures++;
            }
        }
        mesh_model_free(m);
        if (unit__failures) {
            fprintf(stderr, "  %s (%s): failing jansson allocation %ld of the upserts\n", fixture,
                    mesh_outbound_scope_name(scope), k);
            break;
        }
    }
    CHECK(failed > 20);
    json_decref(want);
    json_decref(docs);
}

static void t_compile_alloc_failure(void)
{
    compile_sweep("policies", "shop", "api-1", NULL);
    compile_sweep("retries", "default", "client-1", NULL);
    compile_sweep("smi", "default", "productpage-1", NULL);
}

static void t_compile_alloc_failure_update(void)
{
    json_t *docs = load_yaml(FIX "/split-uneven/cluster.yaml");
    json_t *ts = json_deep_copy(find_obj(docs, "TrafficSplit", "reviews"));

    REQUIRE(ts);
    json_integer_set(
        controller__jget(json_array_get(controller__jget(ts, "spec.backends"), 1), "weight"), 50);
    compile_sweep("split-uneven", "default", "productpage-1", ts);
    json_decref(ts);
    json_decref(docs);
}

static void t_upsert_alloc_failure(void)
{
    upsert_sweep("policies", MESH_OUTBOUND_ADMITTED);
    upsert_sweep("policies", MESH_OUTBOUND_MESH);
    upsert_sweep("smi", MESH_OUTBOUND_ADMITTED);
}

UNIT_MAIN(UNIT(t_golden_split_uneven), UNIT(t_golden_smi), UNIT(t_golden_policies),
          UNIT(t_golden_retries), UNIT(t_golden_missing_refs), UNIT(t_golden_conflicts),
          UNIT(t_golden_sidecars), UNIT(t_golden_headless), UNIT(t_golden_protocols),
          UNIT(t_hand_protocols), UNIT(t_split_uneven_weights), UNIT(t_weights_bound),
          UNIT(t_weights_exact), UNIT(t_parsers), UNIT(t_incr_weight_change),
          UNIT(t_incr_policy_and_pods), UNIT(t_incr_endpoints_and_service),
          UNIT(t_incr_namespace_labels), UNIT(t_incr_matches_scratch), UNIT(t_scope_mesh_policies),
          UNIT(t_scope_mesh_mode_deny), UNIT(t_scope_mesh_dirty), UNIT(t_status_transitions),
          UNIT(t_affected_proxies), UNIT(t_errors), UNIT(t_upsert_delete_all),
          UNIT(t_compile_alloc_failure), UNIT(t_compile_alloc_failure_update),
          UNIT(t_upsert_alloc_failure), UNIT(t_split_skipped_backend), UNIT(t_hand_smi),
          UNIT(t_hand_conflicts), UNIT(t_hand_missing_refs), UNIT(t_hand_policies),
          UNIT(t_hand_retries), UNIT(t_hand_sidecars), UNIT(t_hand_headless))
