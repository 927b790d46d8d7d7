/*
 * meshgen.c - a seeded stream of mesh changes against an API server, for weftd's fault test.
 *
 *   meshgen --kubeconfig FILE [--seed N] [--changes N] [--duration SEC] [--namespaces N]
 *
 * In namespaces mg-0..mg-<N-1> (not labelled for injection: meshgen writes the weft-proxy
 * container itself, so no admission webhook is involved) it creates, changes and
 * deletes ServiceAccounts, Services (even-numbered ones with a selector, whose EndpointSlices
 * the API server's controller maintains; odd-numbered ones without, whose EndpointSlices
 * meshgen writes with pod IPs and pod references), Pods (most with a weft-proxy container;
 * status.podIP and the Ready condition set through /status), TrafficSplits (mostly weight
 * changes), AccessPolicies, RetryPolicies and a namespace label that namespaceSelectors match.
 * Every write is a server-side apply (create or update), a merge patch of /status or a DELETE,
 * so a retried write is harmless: 429 and 5xx answers (kubelite --fault-error) are retried at
 * once, without honouring Retry-After, until they succeed. The same seed gives the same
 * sequence of changes (and, when all --changes are made, the same final state).
 *
 * It makes --changes changes (default 4000), pacing itself so that they spread over --duration
 * seconds (default 35); on a machine too slow for that pace it takes longer but still makes every
 * change (the caller bounds the time). It prints one line:
 *   meshgen: changes=N requests=N retried=N elapsed=S.SS
 * Exit status 0 when every change was made, 1 on a failed request or bad usage.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/yamljson.h"
#include "core/base64.h"
#include "core/buf.h"
#include "core/err.h"

#define MG_MAX_NS 8
#define MG_SAS 4
#define MG_SVCS 12
#define MG_PODS 24
#define MG_SPLITS 5 /* ts-4 shares its apex with ts-0: a conflict */
#define MG_POLICIES 4
#define MG_RETRIES 2
#define MG_MAX_ATTEMPTS 200

/* ------------------------------------------------------------------ the API client */

struct client {
    CURL *h;
    char *server;
    char *ca; /* PEM, NULL for plain HTTP */
    size_t ca_len;
    struct curl_slist *auth; /* "Authorization: Bearer ..." or NULL */
    struct buf resp;
    unsigned long requests, retried;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    return buf_append(b, p, size * n) ? 0 : size * n;
}

static const char *jstr(const json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : "";
}

/* The kubeconfig's current context: server, CA and bearer token. */
static int client_init(struct client *c, const char *kubeconfig)
{
    FILE *f = fopen(kubeconfig, "rb");
    struct buf text;
    json_t *docs = NULL, *cfg, *v;
    const char *ctx_name, *cluster_name = NULL, *user_name = NULL, *server = NULL, *ca64 = NULL,
                          *token = NULL;
    char chunk[4096];
    size_t i, n;
    int rc = ERR_PARSE;

    memset(c, 0, sizeof(*c));
    buf_init(&c->resp);
    buf_init(&text);
    if (!f) {
        fprintf(stderr, "meshgen: cannot open %s\n", kubeconfig);
        return -ENOENT;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (buf_append(&text, chunk, n)) {
            rc = -ENOMEM;
            goto out;
        }
    if (yaml_to_json(text.p ? text.p : "", text.len, &docs, NULL) ||
        !(cfg = json_array_get(docs, 0)))
        goto out;
    ctx_name = json_string_value(json_object_get(cfg, "current-context"));
    json_array_foreach(json_object_get(cfg, "contexts"), i, v)
    {
        if (ctx_name && strcmp(jstr(v, "name"), ctx_name) != 0)
            continue;
        cluster_name = json_string_value(json_object_get(json_object_get(v, "context"), "cluster"));
        user_name = json_string_value(json_object_get(json_object_get(v, "context"), "user"));
        break;
    }
    json_array_foreach(json_object_get(cfg, "clusters"), i, v)
    {
        if (cluster_name && strcmp(jstr(v, "name"), cluster_name) == 0) {
            json_t *cl = json_object_get(v, "cluster");
            server = json_string_value(json_object_get(cl, "server"));
            ca64 = json_string_value(json_object_get(cl, "certificate-authority-data"));
        }
    }
    json_array_foreach(json_object_get(cfg, "users"), i, v)
    {
        if (user_name && strcmp(jstr(v, "name"), user_name) == 0)
            token = json_string_value(json_object_get(json_object_get(v, "user"), "token"));
    }
    if (!server)
        goto out;
    rc = -ENOMEM;
    if (!(c->server = strdup(server)))
        goto out;
    if (ca64 && base64_decode(ca64, &c->ca, &c->ca_len))
        goto out;
    if (token) {
        struct buf h;
        buf_init(&h);
        if (buf_printf(&h, "Authorization: Bearer %s", token)) {
            buf_release(&h);
            goto out;
        }
        c->auth = curl_slist_append(NULL, h.p);
        buf_release(&h);
        if (!c->auth)
            goto out;
    }
    if (!(c->h = curl_easy_init()))
        goto out;
    rc = 0;
out:
    if (rc == ERR_PARSE)
        fprintf(stderr, "meshgen: %s: no usable current context (server, token)\n", kubeconfig);
    json_decref(docs);
    buf_release(&text);
    fclose(f);
    return rc;
}

static void client_release(struct client *c)
{
    curl_easy_cleanup(c->h);
    curl_slist_free_all(c->auth);
    free(c->server);
    free(c->ca);
    buf_release(&c->resp);
}

/*
 * One request; retried while the server answers 429 or 5xx (or the connection fails). Returns
 * the final HTTP status, or 0 when every attempt failed to connect. c->resp holds the body.
 */
static long client_do(struct client *c, const char *method, const char *path, const char *ctype,
                      const json_t *body)
{
    char url[1024], *data = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *hdrs = NULL;
    long status = 0;

    snprintf(url, sizeof(url), "%s%s", c->server, path);
    for (const struct curl_slist *s = c->auth; s; s = s->next)
        hdrs = curl_slist_append(hdrs, s->data);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (ctype) {
        char h[128];
        snprintf(h, sizeof(h), "Content-Type: %s", ctype);
        hdrs = curl_slist_append(hdrs, h);
    }
    for (int attempt = 0; attempt < MG_MAX_ATTEMPTS; attempt++) {
        CURLcode cc;
        buf_reset(&c->resp);
        curl_easy_reset(c->h);
        curl_easy_setopt(c->h, CURLOPT_URL, url);
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->resp);
        curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 20L);
        if (data)
            curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, data);
        if (c->ca) {
            struct curl_blob blob = {c->ca, c->ca_len, CURL_BLOB_COPY};
            curl_easy_setopt(c->h, CURLOPT_CAINFO_BLOB, &blob);
        }
        c->requests++;
        cc = curl_easy_perform(c->h);
        status = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_OK && status != 429 && status < 500)
            break;
        c->retried++;
        usleep(attempt < 5 ? 1000 : 20000);
    }
    curl_slist_free_all(hdrs);
    free(data);
    return status;
}

/* ------------------------------------------------------------------ the generator */

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int rnd(struct rng *r, int n)
{
    return (int)(rng_next(r) % (uint64_t)n);
}

/* What meshgen believes exists (it is the only writer of these objects). */
struct nsstate {
    char name[16];
    bool team;
    bool sa[MG_SAS];
    bool svc[MG_SVCS];
    bool eps[MG_SVCS];
    struct {
        bool exists, meshed;
        int sa, app, gen;
    } pod[MG_PODS];
    bool split[MG_SPLITS], policy[MG_POLICIES], retry[MG_RETRIES];
};

struct gen {
    struct client c;
    struct rng r;
    int nns;
    struct nsstate ns[MG_MAX_NS];
    unsigned long changes;
    bool failed;
};

/* A write that must succeed (2xx; 404 is fine for a DELETE). */
static void must(struct gen *g, const char *method, const char *path, const char *ctype,
                 json_t *body)
{
    long st = client_do(&g->c, method, path, ctype, body);
    json_decref(body);
    g->changes++;
    if ((st >= 200 && st < 300) || (st == 404 && strcmp(method, "DELETE") == 0))
        return;
    fprintf(stderr, "meshgen: %s %s: HTTP %ld: %.600s\n", method, path, st,
            g->c.resp.p ? g->c.resp.p : "");
    g->failed = true;
}

static void apply(struct gen *g, const char *base, const char *ns, const char *plural,
                  const char *name, json_t *obj)
{
    char path[512];
    if (ns)
        snprintf(path, sizeof(path), "%s/namespaces/%s/%s/%s?fieldManager=meshgen&force=true", base,
                 ns, plural, name);
    else
        snprintf(path, sizeof(path), "%s/%s/%s?fieldManager=meshgen&force=true", base, plural,
                 name);
    must(g, "PATCH", path, "application/apply-patch+yaml", obj);
}

static void del(struct gen *g, const char *base, const char *ns, const char *plural,
                const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/namespaces/%s/%s/%s?gracePeriodSeconds=0", base, ns, plural,
             name);
    must(g, "DELETE", path, NULL, NULL);
}

#define MESH "/apis/mesh.weft.dev/v1alpha1"

static json_t *meta(const char *api, const char *kind, const char *ns, const char *name)
{
    return json_pack("{s:s,s:s,s:{s:s,s:s}}", "apiVersion", api, "kind", kind, "metadata", "name",
                     name, "namespace", ns);
}

static void gen_namespace(struct gen *g, struct nsstate *s)
{
    json_t *o = json_pack("{s:s,s:s,s:{s:s,s:{s:s}}}", "apiVersion", "v1", "kind", "Namespace",
                          "metadata", "name", s->name, "labels", "weft.dev/meshgen", "true");
    if (s->team)
        json_object_set_new(json_object_get(json_object_get(o, "metadata"), "labels"), "team",
                            json_string("payments"));
    apply(g, "/api/v1", NULL, "namespaces", s->name, o);
}

static void gen_sa(struct gen *g, struct nsstate *s)
{
    int i = rnd(&g->r, MG_SAS);
    char name[32];
    snprintf(name, sizeof(name), "sa-%d", i);
    if (s->sa[i] && rnd(&g->r, 3) == 0) {
        del(g, "/api/v1", s->name, "serviceaccounts", name);
        s->sa[i] = false;
    } else {
        apply(g, "/api/v1", s->name, "serviceaccounts", name,
              meta("v1", "ServiceAccount", s->name, name));
        s->sa[i] = true;
    }
}

static void gen_service(struct gen *g, struct nsstate *s)
{
    int i = rnd(&g->r, MG_SVCS);
    char name[32], app[32];
    json_t *o, *spec;
    snprintf(name, sizeof(name), "svc-%d", i);
    if (s->svc[i] && rnd(&g->r, 4) == 0) {
        del(g, "/api/v1", s->name, "services", name);
        s->svc[i] = false;
        return;
    }
    o = meta("v1", "Service", s->name, name);
    spec = json_pack("{s:[{s:s,s:i,s:i},{s:s,s:i,s:i}]}", "ports", "name",
                     rnd(&g->r, 4) ? "http" : "web", "port", 80, "targetPort", 8080, "name",
                     "tcp-db", "port", 5432, "targetPort", 5432);
    if (i % 2 == 0) {
        snprintf(app, sizeof(app), "svc-%d", i);
        json_object_set_new(spec, "selector", json_pack("{s:s}", "app", app));
    }
    json_object_set_new(o, "spec", spec);
    apply(g, "/api/v1", s->name, "services", name, o);
    s->svc[i] = true;
}

static void pod_ip(const struct gen *g, const struct nsstate *s, int p, char *out, size_t len)
{
    snprintf(out, len, "10.%d.%d.%d", 100 + (int)(s - g->ns), p, 1 + s->pod[p].gen % 250);
}

/* An EndpointSlice for a selector-less (odd) Service: some pods, some of them not ready. */
static void gen_endpointslice(struct gen *g, struct nsstate *s)
{
    int i = 2 * rnd(&g->r, MG_SVCS / 2) + 1;
    char name[32], svc[32];
    json_t *o, *eps;
    snprintf(svc, sizeof(svc), "svc-%d", i);
    snprintf(name, sizeof(name), "svc-%d-mg", i);
    if (s->eps[i] && rnd(&g->r, 5) == 0) {
        del(g, "/apis/discovery.k8s.io/v1", s->name, "endpointslices", name);
        s->eps[i] = false;
        return;
    }
    o = meta("discovery.k8s.io/v1", "EndpointSlice", s->name, name);
    json_object_set_new(json_object_get(o, "metadata"), "labels",
                        json_pack("{s:s,s:s}", "kubernetes.io/service-name", svc,
                                  "endpointslice.kubernetes.io/managed-by", "meshgen"));
    json_object_set_new(o, "addressType", json_string("IPv4"));
    json_object_set_new(o, "ports",
                        json_pack("[{s:s,s:i,s:s},{s:s,s:i,s:s}]", "name", "http", "port", 8080,
                                  "protocol", "TCP", "name", "tcp-db", "port", 5432, "protocol",
                                  "TCP"));
    eps = json_array();
    for (int p = 0; p < MG_PODS; p++) {
        char ip[32], pname[32];
        if (!s->pod[p].exists || rnd(&g->r, 3) != 0)
            continue;
        pod_ip(g, s, p, ip, sizeof(ip));
        snprintf(pname, sizeof(pname), "pod-%d", p);
        json_array_append_new(eps, json_pack("{s:[s],s:{s:b},s:{s:s,s:s,s:s}}", "addresses", ip,
                                             "conditions", "ready", rnd(&g->r, 5) != 0, "targetRef",
                                             "kind", "Pod", "namespace", s->name, "name", pname));
    }
    json_object_set_new(o, "endpoints", eps);
    apply(g, "/apis/discovery.k8s.io/v1", s->name, "endpointslices", name, o);
    s->eps[i] = true;
}

static void pod_status(struct gen *g, struct nsstate *s, int p, bool ready)
{
    char path[256], ip[32];
    pod_ip(g, s, p, ip, sizeof(ip));
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/pod-%d/status", s->name, p);
    must(g, "PATCH", path, "application/merge-patch+json",
         json_pack("{s:{s:s,s:s,s:[{s:s}],s:[{s:s,s:s}]}}", "status", "phase", "Running", "podIP",
                   ip, "podIPs", "ip", ip, "conditions", "type", "Ready", "status",
                   ready ? "True" : "False"));
}

static void gen_pod(struct gen *g, struct nsstate *s)
{
    int p = rnd(&g->r, MG_PODS), what = rnd(&g->r, 6);
    char name[32], app[32], sa[32];
    json_t *o, *containers;

    snprintf(name, sizeof(name), "pod-%d", p);
    if (s->pod[p].exists && what == 0) {
        del(g, "/api/v1", s->name, "pods", name);
        s->pod[p].exists = false;
        return;
    }
    if (s->pod[p].exists && what <= 2) {
        /* a new IP, readiness flips */
        s->pod[p].gen++;
        pod_status(g, s, p, what == 1);
        return;
    }
    if (!s->pod[p].exists) {
        s->pod[p].meshed = rnd(&g->r, 5) != 0;
        s->pod[p].sa = rnd(&g->r, MG_SAS + 1); /* MG_SAS: the default ServiceAccount */
        s->pod[p].gen++;
    }
    s->pod[p].app = 2 * rnd(&g->r, MG_SVCS / 2); /* relabel: another selector Service */
    snprintf(app, sizeof(app), "svc-%d", s->pod[p].app);
    if (s->pod[p].sa < MG_SAS)
        snprintf(sa, sizeof(sa), "sa-%d", s->pod[p].sa);
    else
        snprintf(sa, sizeof(sa), "default");
    o = meta("v1", "Pod", s->name, name);
    json_object_set_new(json_object_get(o, "metadata"), "labels",
                        json_pack("{s:s,s:s}", "app", app, "tier", p % 2 ? "back" : "front"));
    containers = json_pack("[{s:s,s:s,s:[{s:s,s:i},{s:i}]}]", "name", "app", "image", "app:1",
                           "ports", "name", "http", "containerPort", 8080, "containerPort", 5432);
    if (s->pod[p].meshed)
        json_array_append_new(containers,
                              json_pack("{s:s,s:s}", "name", "weft-proxy", "image", "weft/proxy"));
    json_object_set_new(o, "spec",
                        json_pack("{s:s,s:o}", "serviceAccountName", sa, "containers", containers));
    apply(g, "/api/v1", s->name, "pods", name, o);
    if (!s->pod[p].exists) {
        s->pod[p].exists = true;
        pod_status(g, s, p, rnd(&g->r, 4) != 0);
    }
}

static void gen_split(struct gen *g, struct nsstate *s)
{
    int i = rnd(&g->r, MG_SPLITS), nb = 1 + rnd(&g->r, 3);
    char name[32], svc[32];
    json_t *o, *backends;

    snprintf(name, sizeof(name), "ts-%d", i);
    if (s->split[i] && rnd(&g->r, 8) == 0) {
        del(g, MESH, s->name, "trafficsplits", name);
        s->split[i] = false;
        return;
    }
    /* The apex and backends follow from the split's name (weights change): few conflicts. */
    snprintf(svc, sizeof(svc), "svc-%d", (3 * i) % MG_SVCS);
    backends = json_array();
    for (int b = 0; b < nb; b++) {
        char bs[32];
        snprintf(bs, sizeof(bs), "svc-%d", (3 * i + 1 + b) % MG_SVCS);
        json_array_append_new(backends, json_pack("{s:s,s:i}", "service", bs, "weight",
                                                  rnd(&g->r, 10) == 0 ? 0 : rnd(&g->r, 1000)));
    }
    o = meta("mesh.weft.dev/v1alpha1", "TrafficSplit", s->name, name);
    json_object_set_new(o, "spec", json_pack("{s:s,s:o}", "service", svc, "backends", backends));
    if (rnd(&g->r, 4) == 0)
        json_object_set_new(
            json_object_get(o, "spec"), "matches",
            json_pack("[{s:{s:s,s:s}}]", "path", "type", "PathPrefix", "value", "/canary"));
    apply(g, MESH, s->name, "trafficsplits", name, o);
    s->split[i] = true;
}

static void gen_policy(struct gen *g, struct nsstate *s)
{
    static const char *const actions[] = {"Allow", "Allow", "Deny", "Audit"};
    int i = rnd(&g->r, MG_POLICIES), t = rnd(&g->r, 3);
    char name[32], target[32], sa[32], other[16];
    json_t *o, *spec, *from;

    snprintf(name, sizeof(name), "ap-%d", i);
    if (s->policy[i] && rnd(&g->r, 5) == 0) {
        del(g, MESH, s->name, "accesspolicies", name);
        s->policy[i] = false;
        return;
    }
    spec = json_pack("{s:s}", "action", actions[rnd(&g->r, 4)]);
    snprintf(target, sizeof(target), "svc-%d", rnd(&g->r, MG_SVCS));
    if (t == 0)
        json_object_set_new(spec, "targetRef",
                            json_pack("{s:s,s:s}", "kind", "Service", "name", target));
    else if (t == 1)
        json_object_set_new(spec, "targetRef", json_pack("{s:s}", "kind", "Namespace"));
    else
        json_object_set_new(
            spec, "selector",
            json_pack("{s:{s:s}}", "matchLabels", "tier", rnd(&g->r, 2) ? "back" : "front"));
    if (rnd(&g->r, 3) == 0)
        json_object_set_new(spec, "ports", json_pack("[i]", rnd(&g->r, 2) ? 8080 : 5432));
    snprintf(sa, sizeof(sa), "sa-%d", rnd(&g->r, MG_SAS));
    snprintf(other, sizeof(other), "mg-%d", rnd(&g->r, g->nns));
    from = json_pack("[{s:{s:s}},{s:s}]", "serviceAccount", "name", sa, "namespace", other);
    if (rnd(&g->r, 2))
        json_array_append_new(from, json_pack("{s:{s:{s:s}}}", "namespaceSelector", "matchLabels",
                                              "team", "payments"));
    json_object_set_new(spec, "from", from);
    if (rnd(&g->r, 3) == 0)
        json_object_set_new(spec, "rules",
                            json_pack("[{s:[s],s:[{s:s,s:s}]}]", "methods", "GET", "paths", "type",
                                      "PathPrefix", "value", "/public"));
    o = meta("mesh.weft.dev/v1alpha1", "AccessPolicy", s->name, name);
    json_object_set_new(o, "spec", spec);
    apply(g, MESH, s->name, "accesspolicies", name, o);
    s->policy[i] = true;
}

static void gen_retry(struct gen *g, struct nsstate *s)
{
    int i = rnd(&g->r, MG_RETRIES);
    char name[32], target[32];
    json_t *o, *spec;

    snprintf(name, sizeof(name), "rp-%d", i);
    if (s->retry[i] && rnd(&g->r, 4) == 0) {
        del(g, MESH, s->name, "retrypolicies", name);
        s->retry[i] = false;
        return;
    }
    snprintf(target, sizeof(target), "svc-%d", rnd(&g->r, MG_SVCS));
    spec = json_pack("{s:{s:s,s:s},s:i,s:s,s:[s,s]}", "targetRef", "kind", "Service", "name",
                     target, "attempts", rnd(&g->r, 11), "timeout", rnd(&g->r, 2) ? "3s" : "1500ms",
                     "retryOn", "connect-failure", "503");
    if (rnd(&g->r, 2))
        json_object_set_new(json_object_get(spec, "targetRef"), "port", json_integer(80));
    o = meta("mesh.weft.dev/v1alpha1", "RetryPolicy", s->name, name);
    json_object_set_new(o, "spec", spec);
    apply(g, MESH, s->name, "retrypolicies", name, o);
    s->retry[i] = true;
}

/* One change somewhere, weighted towards what moves most in a real mesh. */
static void gen_step(struct gen *g)
{
    struct nsstate *s = &g->ns[rnd(&g->r, g->nns)];
    int k = rnd(&g->r, 100);

    if (k < 30)
        gen_pod(g, s);
    else if (k < 48)
        gen_endpointslice(g, s);
    else if (k < 68)
        gen_split(g, s);
    else if (k < 78)
        gen_service(g, s);
    else if (k < 88)
        gen_policy(g, s);
    else if (k < 93)
        gen_sa(g, s);
    else if (k < 97)
        gen_retry(g, s);
    else {
        s->team = !s->team;
        gen_namespace(g, s);
    }
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: meshgen --kubeconfig FILE [--seed N] [--changes N] [--duration SEC]\n"
            "               [--namespaces N (1..%d)]\n",
            MG_MAX_NS);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"kubeconfig", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 's'},
        {"changes", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"namespaces", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct gen g;
    const char *kubeconfig = NULL;
    unsigned long max_changes = 4000;
    double duration = 35, t0;
    int opt, rc = 1;

    g.nns = 3;
    g.r.s = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'k':
            kubeconfig = optarg;
            break;
        case 's':
            g.r.s = strtoull(optarg, NULL, 10);
            break;
        case 'c':
            max_changes = strtoul(optarg, NULL, 10);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'n':
            g.nns = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (!kubeconfig || g.nns < 1 || g.nns > MG_MAX_NS || duration <= 0 || !max_changes) {
        usage(stderr);
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (client_init(&g.c, kubeconfig))
        goto out;
    for (int i = 0; i < g.nns; i++) {
        snprintf(g.ns[i].name, sizeof(g.ns[i].name), "mg-%d", i);
        gen_namespace(&g, &g.ns[i]);
    }
    t0 = now_s();
    while (!g.failed && g.changes < max_changes) {
        double elapsed = now_s() - t0, due = duration * (double)g.changes / (double)max_changes;
        if (due > elapsed)
            usleep((useconds_t)((due - elapsed) * 1e6));
        gen_step(&g);
    }
    printf("meshgen: changes=%lu requests=%lu retried=%lu elapsed=%.2f\n", g.changes, g.c.requests,
           g.c.retried, now_s() - t0);
    rc = g.failed || g.changes != max_changes ? 1 : 0;
out:
    client_release(&g.c);
    curl_global_cleanup();
    return rc;
}
