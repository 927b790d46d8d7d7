/*
 * compile_bench.c - the mesh compiler on a synthetic mesh (default 10,000 services, 50,000
 * pods): full compile, incremental recompile after one TrafficSplit weight change, and memory
 * per pod and per service, each reported with a ratio against a baseline measured in the same
 * run (time: json_deep_copy of the whole input set; memory: the input JSON itself).
 *
 *   compile_bench [--namespaces N] [--services-per-ns N] [--pods-per-service N]
 *
 * Shape per namespace: services app-0..app-(S-1), each with its own ServiceAccount, P pods and
 * one EndpointSlice; TrafficSplits on app-0..app-9 (apex) over app-(10+k) and app-(20+k) at
 * 90/10; an AccessPolicy allowing the namespace's own workloads and a shared "monitoring"
 * namespace to call everything in it; a RetryPolicy on app-0. The model runs with the outbound
 * scope "admitted" (weftd --outbound-scope admitted, docs/proxy-config.md): each proxy's
 * document lists the S services of its namespace, the ones its identity may call. (With the
 * default scope "mesh" every document would list all N*S services.)
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller/controller.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static size_t rss_bytes(void)
{
    unsigned long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return res * (size_t)sysconf(_SC_PAGESIZE);
}

static json_t *mk_ts(const char *ns, int k, int w1, int w2)
{
    char name[64], apex[64], b1[64], b2[64];
    snprintf(name, sizeof(name), "split-%d", k);
    snprintf(apex, sizeof(apex), "app-%d", k);
    snprintf(b1, sizeof(b1), "app-%d", 10 + k);
    snprintf(b2, sizeof(b2), "app-%d", 20 + k);
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:i},s:{s:s,s:[{s:s,s:i},{s:s,s:i}]}}", "apiVersion",
                     "mesh.weft.dev/v1alpha1", "kind", "TrafficSplit", "metadata", "name", name,
                     "namespace", ns, "creationTimestamp", "2026-01-01T00:00:00Z", "generation", 1,
                     "spec", "service", apex, "backends", "service", b1, "weight", w1, "service",
                     b2, "weight", w2);
}

static json_t *build(int nns, int sper, int pper, size_t *npods, size_t *nsvcs)
{
    json_t *all = json_array();
    int n, s, p;
    json_array_append_new(all, json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind",
                                         "Namespace", "metadata", "name", "monitoring"));
    for (n = 0; n < nns; n++) {
        char ns[32];
        snprintf(ns, sizeof(ns), "ns-%d", n);
        json_array_append_new(all, json_pack("{s:s,s:s,s:{s:s,s:{s:s}}}", "apiVersion", "v1",
                                             "kind", "Namespace", "metadata", "name", ns, "labels",
                                             "weft.dev/inject", "enabled"));
        for (s = 0; s < sper; s++) {
            char app[32], ip[32];
            json_t *eps = json_array();
            snprintf(app, sizeof(app), "app-%d", s);
            snprintf(ip, sizeof(ip), "10.%d.%d.%d", 96 + n / 256, n % 256, s % 250 + 1);
            json_array_append_new(all, json_pack("{s:s,s:s,s:{s:s,s:s}}", "apiVersion", "v1",
                                                 "kind", "ServiceAccount", "metadata", "name", app,
                                                 "namespace", ns));
            json_array_append_new(
                all, json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:[{s:s,s:i,s:i}],s:{s:s}}}",
                               "apiVersion", "v1", "kind", "Service", "metadata", "name", app,
                               "namespace", ns, "spec", "clusterIP", ip, "ports", "name", "http",
                               "port", 8080, "targetPort", 8080, "selector", "app", app));
            (*nsvcs)++;
            for (p = 0; p < pper; p++) {
                char pod[48], pip[32];
                int idx = (n * sper + s) * pper + p;
                snprintf(pod, sizeof(pod), "%s-%d", app, p);
                snprintf(pip, sizeof(pip), "10.%d.%d.%d", idx / 65536 % 256, idx / 256 % 256,
                         idx % 256);
                json_array_append_new(
                    all,
                    json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s}},s:{s:s,s:[{s:s,s:s,s:[{s:i,s:s}]},"
                              "{s:s,s:s}]},s:{s:s,s:s,s:[{s:s,s:s}]}}",
                              "apiVersion", "v1", "kind", "Pod", "metadata", "name", pod,
                              "namespace", ns, "labels", "app", app, "pod-template-hash",
                              "5d8f9c7b6", "spec", "serviceAccountName", app, "containers", "name",
                              "app", "image", "registry.example/app:1.0", "ports", "containerPort",
                              8080, "name", "http", "name", "weft-proxy", "image", "weft/agent:1",
                              "status", "phase", "Running", "podIP", pip, "conditions", "type",
                              "Ready", "status", "True"));
                json_array_append_new(eps, json_pack("{s:[s],s:{s:b},s:{s:s,s:s,s:s}}", "addresses",
                                                     pip, "conditions", "ready", 1, "targetRef",
                                                     "kind", "Pod", "name", pod, "namespace", ns));
                (*npods)++;
            }
            json_array_append_new(
                all, json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:s,s:[{s:s,s:i,s:s}],s:o}",
                               "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice",
                               "metadata", "name", app, "namespace", ns, "labels",
                               "kubernetes.io/service-name", app, "addressType", "IPv4", "ports",
                               "name", "http", "port", 8080, "protocol", "TCP", "endpoints", eps));
        }
        for (s = 0; s < 10 && s + 20 < sper; s++)
            json_array_append_new(all, mk_ts(ns, s, 90, 10));
        json_array_append_new(
            all,
            json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:{s:s},s:s,s:[{s:s},{s:s}]}}", "apiVersion",
                      "mesh.weft.dev/v1alpha1", "kind", "AccessPolicy", "metadata", "name",
                      "same-namespace", "namespace", ns, "spec", "targetRef", "kind", "Namespace",
                      "action", "Allow", "from", "namespace", ns, "namespace", "monitoring"));
        json_array_append_new(all, json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:{s:s},s:i,s:s,s:[s,s]}}",
                                             "apiVersion", "mesh.weft.dev/v1alpha1", "kind",
                                             "RetryPolicy", "metadata", "name", "app-0",
                                             "namespace", ns, "spec", "targetRef", "name", "app-0",
                                             "attempts", 2, "perTryTimeout", "500ms", "retryOn",
                                             "connect-failure", "503"));
    }
    return all;
}

static int compile_keys(struct mesh_model *m, json_t *keys, json_t **docs, size_t *changed)
{
    size_t i;
    json_t *k;
    *changed = 0;
    json_array_foreach(keys, i, k)
    {
        char ns[64], name[128];
        struct mesh_compile_info info;
        json_t *doc = NULL;
        int rc;
        if (sscanf(json_string_value(k), "%63[^/]/%127s", ns, name) != 2)
            return -1;
        rc = mesh_compile_pod_ex(m, ns, name, &doc, &info);
        if (rc == ERR_NOTFOUND)
            continue;
        if (rc < 0)
            return rc;
        if (info.changed)
            (*changed)++;
        if (docs)
            json_object_set_new(*docs, json_string_value(k), doc);
        else
            json_decref(doc);
    }
    return 0;
}

/* Serialize up to `limit` documents (what the config stream sends); returns their bytes. */
static size_t dump_size(json_t *docs, size_t limit, size_t *count)
{
    const char *k;
    json_t *v;
    size_t total = 0;
    *count = 0;
    json_object_foreach(docs, k, v)
    {
        char *s;
        if (*count >= limit)
            break;
        s = json_dumps(v, JSON_COMPACT);
        total += s ? strlen(s) : 0;
        free(s);
        (*count)++;
    }
    return total;
}

int main(int argc, char **argv)
{
    int nns = 100, sper = 100, pper = 5, i;
    size_t npods = 0, nsvcs = 0, h0, h1, h2, h3, r0, r2, r3, changed = 0, ndirty;
    double t0, t_copy, t_upsert, t_full, t_incr, t_noop, t_ser;
    json_t *input, *copy, *o, *keys = NULL, *docs = json_object(), *ts, *dirty = NULL;
    struct mesh_model *m = NULL;
    /* the scaling option: each proxy lists the S Services its Allow admits it to, not all of
     * them (weftd --outbound-scope admitted) */
    struct mesh_config cfg = {.mode = MESH_MODE_ALL_AUTHENTICATED,
                              .outbound_scope = MESH_OUTBOUND_ADMITTED};
    size_t idx;

    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--namespaces"))
            nns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--services-per-ns"))
            sper = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pods-per-service"))
            pper = atoi(argv[i + 1]);
    }
    h0 = heap_bytes();
    r0 = rss_bytes();
    input = build(nns, sper, pper, &npods, &nsvcs);
    h1 = heap_bytes();

    /* baseline: deep copy of the whole input set */
    t0 = now_s();
    copy = json_deep_copy(input);
    t_copy = now_s() - t0;
    json_decref(copy);

    /* full compile: load the model, then every dirty proxy */
    h2 = heap_bytes();
    r2 = rss_bytes();
    if (mesh_model_new(&cfg, &m) != 0)
        return 1;
    t0 = now_s();
    json_array_foreach(input, idx, o) if (mesh_model_upsert(m, o) != 0) return 1;
    t_upsert = now_s() - t0;
    if (mesh_model_dirty_proxies(m, &keys) != 0 || compile_keys(m, keys, &docs, &changed) != 0)
        return 1;
    t_full = now_s() - t0;
    h3 = heap_bytes();
    r3 = rss_bytes();
    ndirty = json_array_size(keys);
    json_decref(keys);
    t0 = now_s();
    {
        size_t nser = 0, bytes = dump_size(docs, 1000, &nser);
        t_ser = now_s() - t0;
        printf("documents: %zu compiled; serialized (sample of %zu): %.1f KB and %.3f ms per "
               "document\n",
               ndirty, nser, (double)bytes / (double)(nser ? nser : 1) / 1024,
               t_ser * 1e3 / (double)(nser ? nser : 1));
    }

    /* incremental: one weight change in ns-0 */
    ts = mk_ts("ns-0", 3, 50, 50);
    t0 = now_s();
    if (mesh_model_upsert(m, ts) != 0 || mesh_model_dirty_proxies(m, &keys) != 0 ||
        compile_keys(m, keys, NULL, &changed) != 0)
        return 1;
    t_incr = now_s() - t0;
    ndirty = json_array_size(keys);
    json_decref(keys);
    /* and the same object again: nothing to do */
    t0 = now_s();
    if (mesh_model_upsert(m, ts) != 0 || mesh_model_dirty_proxies(m, &dirty) != 0)
        return 1;
    t_noop = now_s() - t0;

    printf("mesh: %zu services, %zu pods, %d namespaces, %zu input objects\n", nsvcs, npods, nns,
           json_array_size(input));
    printf("baseline json_deep_copy(input): %.3f s; input JSON: %.1f MB\n", t_copy,
           (double)(h1 - h0) / 1e6);
    printf("full compile: %.3f s (upsert %.3f s) = %.2fx baseline\n", t_full, t_upsert,
           t_full / t_copy);
    printf("incremental after one weight change: %.3f ms, %zu proxies dirty, %zu changed = "
           "%.5fx baseline\n",
           t_incr * 1e3, ndirty, changed, t_incr / t_copy);
    printf("identical upsert: %.3f ms, %zu proxies dirty\n", t_noop * 1e3, json_array_size(dirty));
    printf("memory (heap, mallinfo2): model+documents %.1f MB = %.2fx input JSON; "
           "%.1f KB per pod, %.1f KB per service\n",
           (double)(h3 - h2) / 1e6, (double)(h3 - h2) / (double)(h1 - h0),
           (double)(h3 - h2) / (double)npods / 1024, (double)(h3 - h2) / (double)nsvcs / 1024);
    printf("memory (RSS, /proc/self/statm): input %.1f MB, model+documents %.1f MB\n",
           (double)(r2 - r0) / 1e6, (double)(r3 - r2) / 1e6);
    json_decref(dirty);
    json_decref(ts);
    /* documents released: what the model itself keeps */
    json_decref(docs);
    printf("memory without the documents (model, blocks, outbound arrays): %.1f MB = %.1f KB per "
           "pod\n",
           (double)(heap_bytes() - h2) / 1e6, (double)(heap_bytes() - h2) / (double)npods / 1024);
    mesh_model_free(m);
    json_decref(input);
    return 0;
}
