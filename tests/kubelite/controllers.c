/*
 * controllers.c - the controllers a cluster runs beside its API server, in their simplest
 * faithful form, level-based: after any write the loop marks them dirty and the next tick
 * reconciles everything, writing only differences.
 *
 *   serviceaccounts  a "default" ServiceAccount in every active namespace
 *   endpointslices   one EndpointSlice set per Service with a selector, from matching pods
 *                    (IP, readiness, named target ports resolved per pod)
 *   deployments      a ReplicaSet per pod template (pod-template-hash), old ones scaled to 0,
 *                    status counts and Available/Progressing conditions
 *   replicasets      pods created and deleted to match spec.replicas, status counts
 *   jobs             one pod at a time until spec.completions succeeded (Complete) or more
 *                    than spec.backoffLimit failed (Failed); status counts
 *   garbage          ownerReferences: dependents of deleted owners are deleted (background),
 *                    owners deleted in the foreground wait for their dependents, orphaning
 *                    owners remove their references from them (see collect_garbage)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"
#include "tests/kubelite/selector.h"

static struct rstore *store(struct kl *kl, const char *group, const char *plural)
{
    return kl_store_get(kl, group, plural, true);
}

static json_t *md_of(const json_t *o)
{
    return json_object_get(o, "metadata");
}

static const char *name_of(const json_t *o)
{
    return jstr_or(md_of(o), "name", "");
}

static const char *ns_of(const json_t *o)
{
    return jstr_or(md_of(o), "namespace", "");
}

static bool deleting(const json_t *o)
{
    return json_object_get(md_of(o), "deletionTimestamp") != NULL;
}

/* Write obj at key if it differs from what is stored (obj consumed). */
static void put_if_changed(struct kl *kl, struct rstore *st, const char *key, json_t *obj)
{
    json_t *cur = kl_store_lookup(st, key);
    if (cur) {
        json_t *a = json_deep_copy(cur);
        bool same;
        json_object_del(md_of(a), "resourceVersion");
        json_object_del(md_of(obj), "resourceVersion");
        same = json_equal(a, obj);
        json_decref(a);
        if (same) {
            json_decref(obj);
            return;
        }
    }
    if (kl_commit(kl, st, key, obj, NULL))
        log_warn("msg=\"controller write failed\" store=%s key=%s", st->id, key);
}

/* A fresh object with system metadata, as a create through the API would have. */
static json_t *new_object(struct kl *kl, const char *api_version, const char *kind, const char *ns,
                          const char *name)
{
    char uid[37], now[40];
    kl_new_uid(kl, uid);
    kl_now_rfc3339(now, sizeof(now));
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "apiVersion", api_version, "kind", kind,
                     "metadata", "name", name, "namespace", ns, "uid", uid, "creationTimestamp",
                     now);
}

static json_t *owner_ref(const char *api_version, const json_t *owner)
{
    return json_pack("[{s:s,s:s,s:s,s:s,s:b,s:b}]", "apiVersion", api_version, "kind",
                     jstr_or(owner, "kind", ""), "name", name_of(owner), "uid",
                     jstr_or(md_of(owner), "uid", ""), "controller", 1, "blockOwnerDeletion", 1);
}

static bool owned_by(const json_t *o, const json_t *owner)
{
    size_t i;
    json_t *r;
    const char *uid = jstr_or(md_of(owner), "uid", "");
    json_array_foreach(json_object_get(md_of(o), "ownerReferences"), i, r)
    {
        if (strcmp(jstr_or(r, "uid", ""), uid) == 0)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------ serviceaccounts */

static void reconcile_serviceaccounts(struct kl *kl)
{
    struct rstore *nss = store(kl, "", "namespaces"), *sas = store(kl, "", "serviceaccounts");
    const char *key;
    json_t *ns;

    json_object_foreach(nss->objs, key, ns)
    {
        char sakey[300];
        json_t *sa;
        if (deleting(ns))
            continue;
        kl_key(name_of(ns), "default", sakey, sizeof(sakey));
        if (kl_store_lookup(sas, sakey))
            continue;
        sa = new_object(kl, "v1", "ServiceAccount", name_of(ns), "default");
        if (sa)
            put_if_changed(kl, sas, sakey, sa);
    }
}

/* Write obj at key keeping the stored object's uid and creationTimestamp (obj consumed). */
static void upsert(struct kl *kl, struct rstore *st, const char *key, json_t *obj)
{
    json_t *cur = kl_store_lookup(st, key);
    if (!obj)
        return;
    if (cur) {
        json_object_set(md_of(obj), "uid", json_object_get(md_of(cur), "uid"));
        json_object_set(md_of(obj), "creationTimestamp",
                        json_object_get(md_of(cur), "creationTimestamp"));
    }
    put_if_changed(kl, st, key, obj);
}

/* The root-ca-cert-publisher: ConfigMap kube-root-ca.crt (the API server's CA) in every
 * namespace, so that the kube-api-access volume finds ca.crt. */
static void reconcile_root_ca(struct kl *kl)
{
    struct rstore *nss = store(kl, "", "namespaces"), *cms = store(kl, "", "configmaps");
    const char *key;
    json_t *ns;

    if (!kl->advertise || !kl->ca_pem)
        return;
    json_object_foreach(nss->objs, key, ns)
    {
        char cmkey[300];
        json_t *cm;
        if (deleting(ns))
            continue;
        kl_key(name_of(ns), "kube-root-ca.crt", cmkey, sizeof(cmkey));
        cm = new_object(kl, "v1", "ConfigMap", name_of(ns), "kube-root-ca.crt");
        if (!cm)
            continue;
        json_object_set_new(md_of(cm), "annotations",
                            json_pack("{s:s}", "kubernetes.io/description",
                                      "Contains a CA bundle that can be used to verify the "
                                      "kube-apiserver when using internal endpoints such as the "
                                      "internal service IP or kubernetes.default.svc."));
        json_object_set_new(cm, "data", json_pack("{s:s}", "ca.crt", kl->ca_pem));
        upsert(kl, cms, cmkey, cm);
    }
}

/* The `kubernetes` Service in default and its EndpointSlice: the advertised address and port,
 * as kube-apiserver publishes itself (recreated when deleted). */
static void reconcile_kubernetes_service(struct kl *kl)
{
    struct rstore *svcs = store(kl, "", "services");
    struct rstore *eps = store(kl, "discovery.k8s.io", "endpointslices");
    char key[64];
    json_t *svc, *slice;

    if (!kl->advertise)
        return;
    kl_key("default", "kubernetes", key, sizeof(key));
    svc = new_object(kl, "v1", "Service", "default", "kubernetes");
    if (svc) {
        json_object_set_new(
            md_of(svc), "labels",
            json_pack("{s:s,s:s}", "component", "apiserver", "provider", "kubernetes"));
        json_object_set_new(
            svc, "spec",
            json_pack("{s:s,s:s,s:[s],s:[s],s:s,s:s,s:s,s:[{s:s,s:s,s:i,s:i}]}", "type",
                      "ClusterIP", "clusterIP", KL_KUBERNETES_IP, "clusterIPs", KL_KUBERNETES_IP,
                      "ipFamilies", "IPv4", "ipFamilyPolicy", "SingleStack", "sessionAffinity",
                      "None", "internalTrafficPolicy", "Cluster", "ports", "name", "https",
                      "protocol", "TCP", "port", 443, "targetPort", kl->advertise_port));
        json_object_set_new(svc, "status", json_pack("{s:{}}", "loadBalancer"));
        upsert(kl, svcs, key, svc);
    }
    slice = new_object(kl, "discovery.k8s.io/v1", "EndpointSlice", "default", "kubernetes");
    if (slice) {
        json_object_set_new(md_of(slice), "labels",
                            json_pack("{s:s}", "kubernetes.io/service-name", "kubernetes"));
        json_object_set_new(slice, "addressType", json_string("IPv4"));
        json_object_set_new(slice, "endpoints",
                            json_pack("[{s:[s],s:{s:b,s:b,s:b}}]", "addresses", kl->advertise,
                                      "conditions", "ready", 1, "serving", 1, "terminating", 0));
        json_object_set_new(slice, "ports",
                            json_pack("[{s:s,s:s,s:i}]", "name", "https", "protocol", "TCP", "port",
                                      kl->advertise_port));
        upsert(kl, eps, key, slice);
    }
}

void kl_publish_kubernetes_service(struct kl *kl)
{
    reconcile_kubernetes_service(kl);
    reconcile_root_ca(kl);
}

/* ------------------------------------------------------------ endpointslices */

static bool pod_ready(const json_t *pod)
{
    size_t i;
    json_t *c;
    json_array_foreach(jget2(pod, "status", "conditions"), i, c)
    {
        if (strcmp(jstr_or(c, "type", ""), "Ready") == 0)
            return strcmp(jstr_or(c, "status", ""), "True") == 0;
    }
    return false;
}

/* Resolve a Service port's targetPort against a pod's container ports; 0 when unresolved. */
static long resolve_port(const json_t *sport, const json_t *pod)
{
    json_t *tp = json_object_get(sport, "targetPort");
    const char *tname = json_string_value(tp);
    size_t i, j;
    json_t *c, *p;

    if (json_is_integer(tp))
        return (long)json_integer_value(tp);
    if (!tname)
        return (long)json_integer_value(json_object_get(sport, "port"));
    if (tname[0] >= '0' && tname[0] <= '9')
        return atol(tname);
    json_array_foreach(jget2(pod, "spec", "containers"), i, c)
    {
        json_array_foreach(json_object_get(c, "ports"), j, p)
        {
            if (strcmp(jstr_or(p, "name", ""), tname) == 0)
                return (long)json_integer_value(json_object_get(p, "containerPort"));
        }
    }
    return 0;
}

static void reconcile_endpointslices(struct kl *kl)
{
    struct rstore *svcs = store(kl, "", "services"), *pods = store(kl, "", "pods");
    struct rstore *eps = store(kl, "discovery.k8s.io", "endpointslices");
    json_t *wanted = json_object(); /* key -> slice */
    const char *key;
    json_t *svc, *o, *stale = json_array();
    size_t i;

    json_object_foreach(svcs->objs, key, svc)
    {
        json_t *sel = jget2(svc, "spec", "selector"), *groups = json_object(), *g;
        struct selector *ls = NULL;
        const char *pk, *gk;
        json_t *pod;
        char msg[256];

        if (!json_object_size(sel) || deleting(svc)) {
            json_decref(groups);
            continue;
        }
        {
            json_t *lsel = json_pack("{s:O}", "matchLabels", sel);
            int src = selector_from_json(lsel, &ls, msg, sizeof(msg));
            json_decref(lsel);
            if (src) {
                json_decref(groups);
                continue;
            }
        }
        /* Pods grouped by their resolved port list: one slice per distinct mapping. */
        json_object_foreach(pods->objs, pk, pod)
        {
            json_t *ports = json_array(), *sp, *ep;
            const char *ip = jstr(json_object_get(pod, "status"), "podIP");
            char *sig;
            size_t k;
            if (strcmp(ns_of(pod), ns_of(svc)) != 0 || !ip || !selector_match(ls, pod)) {
                json_decref(ports);
                continue;
            }
            json_array_foreach(jget2(svc, "spec", "ports"), k, sp)
            {
                long port = resolve_port(sp, pod);
                json_t *e = json_pack("{s:s,s:I}", "protocol", jstr_or(sp, "protocol", "TCP"),
                                      "port", (json_int_t)port);
                if (jstr(sp, "name"))
                    json_object_set_new(e, "name", json_string(jstr(sp, "name")));
                else
                    json_object_set_new(e, "name", json_string(""));
                if (jstr(sp, "appProtocol"))
                    json_object_set_new(e, "appProtocol", json_string(jstr(sp, "appProtocol")));
                if (port > 0)
                    json_array_append_new(ports, e);
                else
                    json_decref(e);
            }
            sig = json_dumps(ports, JSON_COMPACT | JSON_SORT_KEYS);
            g = json_object_get(groups, sig);
            if (!g) {
                g = json_pack("{s:o,s:[]}", "ports", ports, "endpoints");
                json_object_set_new(groups, sig, g);
            } else {
                json_decref(ports);
            }
            free(sig);
            ep = json_pack("{s:[s],s:{s:b,s:b,s:b},s:{s:s,s:s,s:s,s:s}}", "addresses", ip,
                           "conditions", "ready", pod_ready(pod) && !deleting(pod), "serving",
                           pod_ready(pod), "terminating", deleting(pod), "targetRef", "kind", "Pod",
                           "namespace", ns_of(pod), "name", name_of(pod), "uid",
                           jstr_or(md_of(pod), "uid", ""));
            if (jstr(json_object_get(pod, "spec"), "nodeName"))
                json_object_set_new(ep, "nodeName",
                                    json_string(jstr(json_object_get(pod, "spec"), "nodeName")));
            json_array_append_new(json_object_get(g, "endpoints"), ep);
        }
        selector_free(ls);
        if (!json_object_size(groups)) /* a Service with no endpoints still has a slice */
            json_object_set_new(groups, "[]", json_pack("{s:[],s:[]}", "ports", "endpoints"));
        i = 0;
        json_object_foreach(groups, gk, g)
        {
            char sname[400], skey[700];
            json_t *slice;
            /* Deterministic names keep the level-based diff stable. */
            if (i == 0)
                snprintf(sname, sizeof(sname), "%s-kl", name_of(svc));
            else
                snprintf(sname, sizeof(sname), "%s-kl%zu", name_of(svc), i);
            i++;
            kl_key(ns_of(svc), sname, skey, sizeof(skey));
            slice = json_pack(
                "{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s},s:o},s:s,s:O,s:O}", "apiVersion",
                "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata", "name", sname,
                "namespace", ns_of(svc), "labels", "kubernetes.io/service-name", name_of(svc),
                "endpointslice.kubernetes.io/managed-by", "endpointslice-controller.k8s.io",
                "ownerReferences", owner_ref("v1", svc), "addressType", "IPv4", "endpoints",
                json_object_get(g, "endpoints"), "ports", json_object_get(g, "ports"));
            json_object_set_new(json_object_get(slice, "metadata"), "generateName",
                                json_sprintf("%s-", name_of(svc)));
            json_object_set_new(wanted, skey, slice);
        }
        json_decref(groups);
    }
    /* Apply: write wanted slices (keeping uid/creationTimestamp), delete managed strays. */
    json_object_foreach(eps->objs, key, o)
    {
        const char *mb =
            jstr(jget2(o, "metadata", "labels"), "endpointslice.kubernetes.io/managed-by");
        if (mb && strcmp(mb, "endpointslice-controller.k8s.io") == 0 &&
            !json_object_get(wanted, key))
            json_array_append_new(stale, json_string(key));
    }
    json_array_foreach(stale, i, o)
        IGNORE_RESULT(kl_commit(kl, eps, json_string_value(o), NULL, NULL));
    json_object_foreach(wanted, key, o)
    {
        json_t *cur = kl_store_lookup(eps, key), *md = md_of(o);
        char uid[37], now[40];
        if (cur) {
            json_object_set(md, "uid", json_object_get(md_of(cur), "uid"));
            json_object_set(md, "creationTimestamp",
                            json_object_get(md_of(cur), "creationTimestamp"));
            if (json_object_get(md_of(cur), "generation"))
                json_object_set(md, "generation", json_object_get(md_of(cur), "generation"));
        } else {
            kl_new_uid(kl, uid);
            kl_now_rfc3339(now, sizeof(now));
            json_object_set_new(md, "uid", json_string(uid));
            json_object_set_new(md, "creationTimestamp", json_string(now));
        }
        put_if_changed(kl, eps, key, json_incref(o));
    }
    json_decref(stale);
    json_decref(wanted);
}

/* ------------------------------------------------------------ deployments, replicasets */

static unsigned long long fnv(const char *s)
{
    unsigned long long h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* kube encodes the hash with a consonant-heavy alphabet; any stable short string serves. */
static void template_hash(const json_t *tmpl, char out[11])
{
    static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
    char *s = json_dumps(tmpl, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned long long h = fnv(s ? s : "");
    free(s);
    for (int i = 0; i < 10; i++) {
        out[i] = alphabet[h % (sizeof(alphabet) - 1)];
        h /= (sizeof(alphabet) - 1);
    }
    out[10] = '\0';
}

static int count_ready(struct kl *kl, const json_t *rs, int *total)
{
    struct rstore *pods = store(kl, "", "pods");
    const char *key;
    json_t *pod;
    int ready = 0;
    *total = 0;
    json_object_foreach(pods->objs, key, pod)
    {
        if (strcmp(ns_of(pod), ns_of(rs)) != 0 || !owned_by(pod, rs) || deleting(pod))
            continue;
        (*total)++;
        if (pod_ready(pod))
            ready++;
    }
    return ready;
}

static void set_status(struct kl *kl, struct rstore *st, const json_t *obj, json_t *status)
{
    char key[600];
    json_t *n;
    if (json_equal(json_object_get(obj, "status"), status)) {
        json_decref(status);
        return;
    }
    n = json_deep_copy(obj);
    json_object_set_new(n, "status", status);
    kl_key(ns_of(obj), name_of(obj), key, sizeof(key));
    put_if_changed(kl, st, key, n);
}

static void reconcile_replicasets(struct kl *kl)
{
    struct rstore *rss = store(kl, "apps", "replicasets"), *pods = store(kl, "", "pods");
    json_t *list = json_array(), *rs;
    const char *key;
    size_t i;

    json_object_foreach(rss->objs, key, rs) json_array_append(list, rs);
    json_array_foreach(list, i, rs)
    {
        long want = (long)json_integer_value(jget2(rs, "spec", "replicas"));
        json_t *mine = json_array(), *pod;
        const char *pk;
        int total, ready;
        size_t j;

        /* A ReplicaSet being deleted is left to the garbage collector (its finalizers say
         * whether its pods go first or stay as orphans). */
        if (deleting(rs))
            want = -1;
        json_object_foreach(pods->objs, pk, pod)
        {
            if (strcmp(ns_of(pod), ns_of(rs)) == 0 && owned_by(pod, rs) && !deleting(pod))
                json_array_append(mine, pod);
        }
        /* Creates still waiting for admission count as made (the controller's expectations). */
        for (long n = (long)json_array_size(mine) +
                      kl_inflight_owned(kl, "pods", jstr_or(md_of(rs), "uid", ""));
             want >= 0 && n < want; n++) {
            json_t *tmpl = jget2(rs, "spec", "template"), *p;
            p = new_object(kl, "v1", "Pod", ns_of(rs), "");
            if (!p)
                break;
            json_object_del(md_of(p), "name"); /* the API server generates it */
            json_object_set_new(md_of(p), "generateName", json_sprintf("%s-", name_of(rs)));
            if (json_object_get(json_object_get(tmpl, "metadata"), "labels"))
                json_object_set(md_of(p), "labels", jget2(tmpl, "metadata", "labels"));
            if (json_object_get(json_object_get(tmpl, "metadata"), "annotations"))
                json_object_set(md_of(p), "annotations", jget2(tmpl, "metadata", "annotations"));
            json_object_set_new(md_of(p), "ownerReferences", owner_ref("apps/v1", rs));
            json_object_set_new(p, "spec", json_deep_copy(json_object_get(tmpl, "spec")));
            kl_create_internal(kl, "", "v1", "pods", ns_of(rs), p,
                               "system:serviceaccount:kube-system:replicaset-controller");
        }
        for (size_t n = json_array_size(mine); want >= 0 && (long)n > want; n--) {
            /* Not-ready pods go first, then the newest. */
            json_t *victim = NULL;
            json_array_foreach(mine, j, pod) if (!victim || (!pod_ready(pod) && pod_ready(victim)))
                victim = pod;
            if (victim) {
                char pkey[700];
                int rc;
                json_t *res;
                kl_key(ns_of(victim), name_of(victim), pkey, sizeof(pkey));
                res = kl_delete_object(kl, kl_rtype_find(kl, "", "v1", "pods"), pkey,
                                       json_incref(victim), false, -1, &rc);
                json_decref(victim);
                json_decref(res);
                for (j = 0; j < json_array_size(mine); j++)
                    if (json_array_get(mine, j) == victim)
                        json_array_remove(mine, j);
            }
        }
        ready = count_ready(kl, rs, &total);
        set_status(kl, rss, rs,
                   json_pack("{s:i,s:i,s:i,s:i,s:I}", "replicas", total, "fullyLabeledReplicas",
                             total, "readyReplicas", ready, "availableReplicas", ready,
                             "observedGeneration",
                             json_integer_value(jget2(rs, "metadata", "generation"))));
        json_decref(mine);
    }
    json_decref(list);
}

/* ------------------------------------------------------------ jobs */

static const char *pod_phase(const json_t *pod)
{
    return jstr_or(json_object_get(pod, "status"), "phase", "");
}

static json_t *job_condition(const char *type, const char *reason, const char *message,
                             const char *now)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "type", type, "status", "True", "reason", reason,
                     "message", message, "lastProbeTime", now, "lastTransitionTime", now);
}

/*
 * The Job controller for the sequential case (parallelism 1): one pod at a time from the
 * template, owned by the Job (labels job-name and batch.kubernetes.io/job-name added), until
 * spec.completions pods (default 1) Succeeded (condition Complete) or more than
 * spec.backoffLimit (default 6) Failed (condition Failed, BackoffLimitExceeded). Finished Jobs
 * are left alone, their pods kept, as the real controller does.
 */
static void reconcile_jobs(struct kl *kl)
{
    struct rstore *jobs = store(kl, "batch", "jobs"), *pods = store(kl, "", "pods");
    json_t *list = json_array(), *job;
    const char *key;
    size_t i;

    json_object_foreach(jobs->objs, key, job) json_array_append(list, job);
    json_array_foreach(list, i, job)
    {
        const json_t *st = json_object_get(job, "status"), *c;
        long completions = 1, backoff = 6, active = 0, succeeded = 0, failed = 0;
        bool finished = false;
        json_t *status, *pod, *conds;
        const char *pk;
        char now[40];
        size_t j;

        if (deleting(job))
            continue;
        json_array_foreach(json_object_get(st, "conditions"), j, c)
        {
            const char *t = jstr_or(c, "type", "");
            finished |= strcmp(t, "Complete") == 0 || strcmp(t, "Failed") == 0;
        }
        if (finished)
            continue;
        if (json_is_integer(jget2(job, "spec", "completions")))
            completions = (long)json_integer_value(jget2(job, "spec", "completions"));
        if (json_is_integer(jget2(job, "spec", "backoffLimit")))
            backoff = (long)json_integer_value(jget2(job, "spec", "backoffLimit"));
        json_object_foreach(pods->objs, pk, pod)
        {
            const char *ph = pod_phase(pod);
            if (strcmp(ns_of(pod), ns_of(job)) != 0 || !owned_by(pod, job))
                continue;
            if (strcmp(ph, "Succeeded") == 0)
                succeeded++;
            else if (strcmp(ph, "Failed") == 0)
                failed++;
            else if (!deleting(pod))
                active++;
        }
        active += kl_inflight_owned(kl, "pods", jstr_or(md_of(job), "uid", ""));
        kl_now_rfc3339(now, sizeof(now));
        if (!active && succeeded < completions && failed <= backoff) {
            json_t *tmpl = jget2(job, "spec", "template"), *p, *labels;
            p = new_object(kl, "v1", "Pod", ns_of(job), "");
            if (p) {
                json_object_del(md_of(p), "name"); /* the API server generates it */
                json_object_set_new(md_of(p), "generateName", json_sprintf("%s-", name_of(job)));
                labels =
                    json_deep_copy(json_object_get(json_object_get(tmpl, "metadata"), "labels"));
                if (!json_is_object(labels)) {
                    json_decref(labels);
                    labels = json_object();
                }
                json_object_set_new(labels, "job-name", json_string(name_of(job)));
                json_object_set_new(labels, "batch.kubernetes.io/job-name",
                                    json_string(name_of(job)));
                json_object_set_new(md_of(p), "labels", labels);
                if (json_object_get(json_object_get(tmpl, "metadata"), "annotations"))
                    json_object_set(md_of(p), "annotations",
                                    jget2(tmpl, "metadata", "annotations"));
                json_object_set_new(md_of(p), "ownerReferences", owner_ref("batch/v1", job));
                json_object_set_new(p, "spec", json_deep_copy(json_object_get(tmpl, "spec")));
                kl_create_internal(kl, "", "v1", "pods", ns_of(job), p,
                                   "system:serviceaccount:kube-system:job-controller");
                active++;
            }
        }
        status = json_pack("{s:i,s:i,s:i}", "active", (int)active, "succeeded", (int)succeeded,
                           "failed", (int)failed);
        if (!status)
            continue;
        if (json_object_get(st, "startTime"))
            json_object_set(status, "startTime", json_object_get(st, "startTime"));
        else
            json_object_set_new(status, "startTime", json_string(now));
        conds = NULL;
        if (succeeded >= completions) {
            conds = json_pack("[o]", job_condition("Complete", "Completed", "Job completed", now));
            json_object_set_new(status, "completionTime", json_string(now));
        } else if (failed > backoff) {
            conds =
                json_pack("[o]", job_condition("Failed", "BackoffLimitExceeded",
                                               "Job has reached the specified backoff limit", now));
        }
        if (conds)
            json_object_set_new(status, "conditions", conds);
        set_status(kl, jobs, job, status);
    }
    json_decref(list);
}

static void reconcile_deployments(struct kl *kl)
{
    struct rstore *deps = store(kl, "apps", "deployments"), *rss = store(kl, "apps", "replicasets");
    json_t *list = json_array(), *d;
    const char *key;
    size_t i;

    json_object_foreach(deps->objs, key, d) json_array_append(list, d);
    json_array_foreach(list, i, d)
    {
        json_t *tmpl = jget2(d, "spec", "template"), *rs, *owned = json_array(), *cur = NULL;
        long replicas = (long)json_integer_value(jget2(d, "spec", "replicas"));
        char hash[11], rsname[400], rskey[700], now[40];
        const char *rk;
        int upd_total = 0, upd_ready = 0, all_total = 0, all_ready = 0;
        size_t j;
        json_t *status, *conds;

        if (deleting(d)) {
            json_decref(owned);
            continue;
        }
        template_hash(tmpl, hash);
        snprintf(rsname, sizeof(rsname), "%s-%s", name_of(d), hash);
        kl_key(ns_of(d), rsname, rskey, sizeof(rskey));
        json_object_foreach(rss->objs, rk, rs)
        {
            if (strcmp(ns_of(rs), ns_of(d)) == 0 && owned_by(rs, d))
                json_array_append(owned, rs);
        }
        cur = kl_store_lookup(rss, rskey);
        {
            json_t *want = cur ? json_deep_copy(cur)
                               : new_object(kl, "apps/v1", "ReplicaSet", ns_of(d), rsname);
            json_t *t = json_deep_copy(tmpl), *labels;
            labels = json_object_get(json_object_get(t, "metadata"), "labels");
            if (!labels) {
                labels = json_object();
                if (!json_object_get(t, "metadata"))
                    json_object_set_new(t, "metadata", json_object());
                json_object_set_new(json_object_get(t, "metadata"), "labels", labels);
            }
            json_object_set_new(labels, "pod-template-hash", json_string(hash));
            json_object_set(md_of(want), "labels", labels);
            json_object_set_new(md_of(want), "ownerReferences", owner_ref("apps/v1", d));
            if (!cur)
                json_object_set_new(md_of(want), "generation", json_integer(1));
            json_object_set_new(want, "spec",
                                json_pack("{s:I,s:{s:O},s:o}", "replicas", (json_int_t)replicas,
                                          "selector", "matchLabels", labels, "template", t));
            json_object_set(json_object_get(json_object_get(want, "spec"), "selector"),
                            "matchLabels", labels);
            if (cur && !json_equal(json_object_get(cur, "spec"), json_object_get(want, "spec")))
                json_object_set_new(
                    md_of(want), "generation",
                    json_integer(json_integer_value(jget2(cur, "metadata", "generation")) + 1));
            put_if_changed(kl, rss, rskey, want);
        }
        /* Older ReplicaSets scale to zero (a rollout in one step). */
        json_array_foreach(owned, j, rs)
        {
            int t, r = count_ready(kl, rs, &t);
            all_total += t;
            all_ready += r;
            if (strcmp(name_of(rs), rsname) == 0) {
                upd_total = t;
                upd_ready = r;
                continue;
            }
            if (json_integer_value(jget2(rs, "spec", "replicas")) != 0) {
                json_t *n = json_deep_copy(rs);
                char k2[700];
                json_object_set_new(json_object_get(n, "spec"), "replicas", json_integer(0));
                kl_key(ns_of(rs), name_of(rs), k2, sizeof(k2));
                put_if_changed(kl, rss, k2, n);
            }
        }
        kl_now_rfc3339(now, sizeof(now));
        {
            bool available = all_ready >= replicas;
            bool complete = upd_total == replicas && upd_ready == replicas && all_total == replicas;
            json_t *old_conds = jget2(d, "status", "conditions");
            conds = json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s,s:s,s:s}]", "type",
                              "Available", "status", available ? "True" : "False", "lastUpdateTime",
                              now, "lastTransitionTime", now, "reason",
                              available ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
                              "message",
                              available ? "Deployment has minimum availability."
                                        : "Deployment does not have minimum availability.",
                              "type", "Progressing", "status", "True", "lastUpdateTime", now,
                              "lastTransitionTime", now, "reason",
                              complete ? "NewReplicaSetAvailable" : "ReplicaSetUpdated", "message",
                              complete ? "ReplicaSet has successfully progressed."
                                       : "ReplicaSet is progressing.");
            /* Keep timestamps of conditions that did not change. */
            for (size_t k = 0; k < 2; k++) {
                json_t *nc = json_array_get(conds, k), *oc = json_array_get(old_conds, k);
                if (oc &&
                    json_equal(json_object_get(oc, "status"), json_object_get(nc, "status")) &&
                    json_equal(json_object_get(oc, "reason"), json_object_get(nc, "reason"))) {
                    json_object_set(nc, "lastUpdateTime", json_object_get(oc, "lastUpdateTime"));
                    json_object_set(nc, "lastTransitionTime",
                                    json_object_get(oc, "lastTransitionTime"));
                }
            }
        }
        status =
            json_pack("{s:I,s:i,s:i,s:i,s:i,s:i,s:o}", "observedGeneration",
                      json_integer_value(jget2(d, "metadata", "generation")), "replicas", all_total,
                      "updatedReplicas", upd_total, "readyReplicas", all_ready, "availableReplicas",
                      all_ready, "unavailableReplicas",
                      all_total - all_ready > 0 ? all_total - all_ready : 0, "conditions", conds);
        if (json_integer_value(json_object_get(status, "unavailableReplicas")) == 0)
            json_object_del(status, "unavailableReplicas");
        set_status(kl, deps, d, status);
        json_decref(owned);
    }
    json_decref(list);
}

/* ------------------------------------------------------------ garbage collection */

static bool has_finalizer(const json_t *o, const char *f)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(md_of(o), "finalizers"), i, x)
    {
        if (json_string_value(x) && strcmp(json_string_value(x), f) == 0)
            return true;
    }
    return false;
}

static struct rtype *rtype_of(struct kl *kl, const struct rstore *st)
{
    for (size_t t = 0; t < kl->ntypes; t++)
        if (kl->types[t]->store == st)
            return kl->types[t];
    return NULL;
}

/* The stored object at key with one finalizer less: deleted when it was the last one and no
 * grace period is pending (a pod waits for its kubelet). */
static void drop_finalizer(struct kl *kl, struct rstore *st, const char *key, const char *f)
{
    json_t *o = kl_store_lookup(st, key), *n, *fins;
    struct rtype *rt = rtype_of(kl, st);
    size_t i;

    if (!o || !has_finalizer(o, f))
        return;
    n = json_deep_copy(o);
    fins = json_object_get(md_of(n), "finalizers");
    for (i = json_array_size(fins); i-- > 0;) {
        const char *x = json_string_value(json_array_get(fins, i));
        if (x && strcmp(x, f) == 0)
            json_array_remove(fins, i);
    }
    if (!json_array_size(fins))
        json_object_del(md_of(n), "finalizers");
    if (deleting(n) && !json_object_get(md_of(n), "finalizers") &&
        json_integer_value(json_object_get(md_of(n), "deletionGracePeriodSeconds")) == 0) {
        if (kl_commit(kl, st, key, NULL, NULL) == 0 && rt)
            kl_hooks_after_delete(kl, rt, n);
        json_decref(n);
        return;
    }
    if (kl_commit(kl, st, key, n, NULL))
        log_warn("msg=\"garbage collector write failed\" store=%s key=%s", st->id, key);
}

/* The stored object at key without its ownerReferences to uid (orphaned by that owner). */
static void drop_owner_ref(struct kl *kl, struct rstore *st, const char *key, const char *uid)
{
    json_t *o = kl_store_lookup(st, key), *n, *refs;
    size_t i;

    if (!o)
        return;
    n = json_deep_copy(o);
    refs = json_object_get(md_of(n), "ownerReferences");
    for (i = json_array_size(refs); i-- > 0;)
        if (strcmp(jstr_or(json_array_get(refs, i), "uid", ""), uid) == 0)
            json_array_remove(refs, i);
    if (!json_array_size(refs))
        json_object_del(md_of(n), "ownerReferences");
    put_if_changed(kl, st, key, n);
}

/* Delete a dependent; in the foreground (foregroundDeletion finalizer first) when asked. */
static void delete_dependent(struct kl *kl, struct rstore *st, const char *key, bool foreground)
{
    struct rtype *rt = rtype_of(kl, st);
    json_t *o = kl_store_lookup(st, key), *res;
    int rc;

    if (!o || !rt)
        return;
    o = json_deep_copy(o);
    if (foreground) {
        if (!json_is_array(json_object_get(md_of(o), "finalizers")))
            json_object_set_new(md_of(o), "finalizers", json_array());
        json_array_append_new(json_object_get(md_of(o), "finalizers"),
                              json_string("foregroundDeletion"));
    }
    res = kl_delete_object(kl, rt, key, o, false, -1, &rc);
    json_decref(o);
    json_decref(res);
}

/*
 * Owners and dependents by metadata.ownerReferences, as kube-controller-manager's garbage
 * collector:
 *   - a dependent none of whose owners is "solid" (present and not being deleted in the
 *     foreground) is deleted: in the background when its owners are gone, in the foreground
 *     when an owner waits for it (foregroundDeletion) and it has dependents of its own;
 *   - an owner being deleted with the foregroundDeletion finalizer loses it (and goes) once no
 *     dependent with blockOwnerDeletion remains;
 *   - an owner being deleted with the orphan finalizer has its references removed from every
 *     dependent, then loses the finalizer.
 */
static void collect_garbage(struct kl *kl)
{
    json_t *owners = json_object(), *blocking = json_object(), *dependents = json_object();
    json_t *acts = json_array(), *a;
    size_t i;

    /* uid -> {"s": store, "k": key}; uid -> count of blocking / any dependents. */
    for (size_t s = 0; s < kl->nstores; s++) {
        const char *key;
        json_t *o;
        json_object_foreach(kl->store_list[s]->objs, key, o)
        {
            const char *uid = jstr(md_of(o), "uid");
            json_t *r;
            size_t j;
            if (uid)
                json_object_set_new(owners, uid, json_pack("{s:i,s:s}", "s", (int)s, "k", key));
            json_array_foreach(json_object_get(md_of(o), "ownerReferences"), j, r)
            {
                const char *ou = jstr_or(r, "uid", "");
                json_object_set_new(dependents, ou, json_true());
                if (json_is_true(json_object_get(r, "blockOwnerDeletion")))
                    json_object_set_new(blocking, ou, json_true());
            }
        }
    }
    for (size_t s = 0; s < kl->nstores; s++) {
        const char *key;
        json_t *o;
        json_object_foreach(kl->store_list[s]->objs, key, o)
        {
            json_t *refs = json_object_get(md_of(o), "ownerReferences"), *r;
            const char *uid = jstr_or(md_of(o), "uid", "");
            bool solid = false, waiting = false;
            size_t j;

            if (deleting(o) && has_finalizer(o, "orphan")) {
                json_array_append_new(
                    acts, json_pack("{s:s,s:i,s:s}", "do", "orphan", "s", (int)s, "k", key));
                continue;
            }
            if (deleting(o) && has_finalizer(o, "foregroundDeletion") &&
                !json_object_get(blocking, uid)) {
                json_array_append_new(
                    acts, json_pack("{s:s,s:i,s:s}", "do", "unblock", "s", (int)s, "k", key));
                continue;
            }
            if (!json_array_size(refs) || deleting(o))
                continue;
            json_array_foreach(refs, j, r)
            {
                json_t *where = json_object_get(owners, jstr_or(r, "uid", "")), *owner;
                if (!where)
                    continue; /* dangling */
                owner =
                    kl_store_lookup(kl->store_list[json_integer_value(json_object_get(where, "s"))],
                                    jstr(where, "k"));
                if (owner && deleting(owner) && has_finalizer(owner, "foregroundDeletion"))
                    waiting = true;
                else
                    solid = true;
            }
            if (!solid)
                json_array_append_new(acts, json_pack("{s:s,s:i,s:s}", "do",
                                                      waiting && json_object_get(dependents, uid)
                                                          ? "foreground"
                                                          : "background",
                                                      "s", (int)s, "k", key));
        }
    }
    json_array_foreach(acts, i, a)
    {
        struct rstore *st = kl->store_list[json_integer_value(json_object_get(a, "s"))];
        const char *key = jstr(a, "k"), *what = jstr(a, "do");
        json_t *o = kl_store_lookup(st, key);
        if (!o)
            continue;
        if (strcmp(what, "orphan") == 0) {
            char uid[64];
            snprintf(uid, sizeof(uid), "%s", jstr_or(md_of(o), "uid", ""));
            for (size_t s = 0; s < kl->nstores; s++) {
                json_t *keys = json_array(), *k, *d;
                const char *dk;
                size_t j;
                json_object_foreach(kl->store_list[s]->objs, dk, d)
                {
                    if (owned_by(d, o))
                        json_array_append_new(keys, json_string(dk));
                }
                json_array_foreach(keys, j, k)
                    drop_owner_ref(kl, kl->store_list[s], json_string_value(k), uid);
                json_decref(keys);
            }
            drop_finalizer(kl, st, key, "orphan");
        } else if (strcmp(what, "unblock") == 0) {
            drop_finalizer(kl, st, key, "foregroundDeletion");
        } else {
            delete_dependent(kl, st, key, strcmp(what, "foreground") == 0);
        }
    }
    json_decref(owners);
    json_decref(blocking);
    json_decref(dependents);
    json_decref(acts);
}

/*
 * Each controller runs when one of the stores it reads changed since it last ran (or, for the
 * ReplicaSet controller, when a create it was waiting for finished); garbage collection when a
 * write deleted something or involved ownership. So a write burst to objects no controller
 * reads (the bench's 10,000 pods without owners) costs the controllers nothing.
 */
struct ctl {
    void (*run)(struct kl *kl);
    const char *inputs[4]; /* store ids "group/plural" */
    bool inflight;         /* also waits on writes_done */
};

static const struct ctl ctls[] = {
    {reconcile_serviceaccounts, {"/namespaces", "/serviceaccounts"}, false},
    {reconcile_deployments, {"apps/deployments", "apps/replicasets", "/pods"}, false},
    {reconcile_replicasets, {"apps/replicasets", "/pods"}, true},
    {reconcile_jobs, {"batch/jobs", "/pods"}, true},
    {reconcile_endpointslices, {"/services", "/pods", "discovery.k8s.io/endpointslices"}, false},
    {reconcile_kubernetes_service, {"/services", "discovery.k8s.io/endpointslices"}, false},
    {reconcile_root_ca, {"/namespaces", "/configmaps"}, false},
};

/* A number that grows whenever any input of c changes (resourceVersions only grow). */
static uint64_t inputs_stamp(struct kl *kl, const struct ctl *c)
{
    uint64_t stamp = c->inflight ? kl->writes_done : 0;
    for (size_t i = 0; i < ARRAY_LEN(c->inputs) && c->inputs[i]; i++) {
        const char *id = c->inputs[i], *slash = strchr(id, '/');
        char group[128];
        struct rstore *st;
        snprintf(group, sizeof(group), "%.*s", (int)(slash - id), id);
        st = kl_store_get(kl, group, slash + 1, false);
        if (st)
            stamp += st->rv;
    }
    return stamp;
}

void kl_controllers_run(struct kl *kl)
{
    /* Each pass can cause the next to have work; a few rounds settle a cascade. */
    for (int round = 0; round < 4; round++) {
        uint64_t start = kl->rv;
        for (size_t i = 0; i < ARRAY_LEN(ctls); i++) {
            uint64_t stamp = inputs_stamp(kl, &ctls[i]);
            if (stamp == kl->controllers_seen[i])
                continue;
            kl->controllers_seen[i] = stamp;
            ctls[i].run(kl);
        }
        if (kl->gc_pending) {
            kl->gc_pending = false;
            collect_garbage(kl);
        }
        if (kl->rv == start)
            break;
    }
}
