/*
 * hooks.c - what particular kinds do beyond generic storage: defaults the real API server
 * applies, namespace lifecycle, CRD establishment, the scale subresource, review kinds that are
 * answered rather than stored, and the OpenAPI endpoints.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"
#include "tests/kubelite/openapi.h"
#include "tests/kubelite/patch.h"

static bool is(const struct rtype *rt, const char *group, const char *plural)
{
    return strcmp(rt->group, group) == 0 && strcmp(rt->plural, plural) == 0;
}

static json_t *ensure_obj(json_t *parent, const char *key)
{
    json_t *o = json_object_get(parent, key);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(parent, key, o);
    }
    return o;
}

static void set_default(json_t *obj, const char *key, json_t *v)
{
    if (!json_object_get(obj, key))
        json_object_set(obj, key, v);
    json_decref(v);
}

static void container_defaults(json_t *c)
{
    const char *image = jstr_or(c, "image", "");
    const char *colon = strrchr(image, ':');
    bool latest = !colon || strchr(colon, '/') || strcmp(colon, ":latest") == 0;
    size_t i;
    json_t *p;

    if (strchr(image, '@'))
        latest = false;
    set_default(c, "terminationMessagePath", json_string("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json_string("File"));
    set_default(c, "imagePullPolicy", json_string(latest ? "Always" : "IfNotPresent"));
    set_default(c, "resources", json_object());
    json_array_foreach(json_object_get(c, "ports"), i, p)
        set_default(p, "protocol", json_string("TCP"));
}

static void pod_spec_defaults(json_t *spec)
{
    size_t i;
    json_t *c;
    if (!json_is_object(spec))
        return;
    set_default(spec, "restartPolicy", json_string("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json_integer(30));
    set_default(spec, "dnsPolicy", json_string("ClusterFirst"));
    set_default(spec, "schedulerName", json_string("default-scheduler"));
    set_default(spec, "securityContext", json_object());
    json_array_foreach(json_object_get(spec, "containers"), i, c) container_defaults(c);
    json_array_foreach(json_object_get(spec, "initContainers"), i, c) container_defaults(c);
}

static void template_defaults(json_t *obj)
{
    pod_spec_defaults(jget2(json_object_get(obj, "spec"), "template", "spec"));
}

/* ClusterIPs from 10.96.0.0/12, skipping the first address (the kubernetes service). */
static int alloc_cluster_ip(struct kl *kl, char *out, size_t outlen)
{
    struct rstore *st = kl_store_get(kl, "", "services", false);
    for (unsigned n = 10; n < (1u << 20); n++) {
        char ip[32];
        const char *key;
        json_t *svc;
        bool used = false;
        snprintf(ip, sizeof(ip), "10.%u.%u.%u", 96 + (n >> 16), (n >> 8) & 255, n & 255);
        if (st)
            json_object_foreach(st->objs, key, svc)
            {
                if (strcmp(jstr_or(json_object_get(svc, "spec"), "clusterIP", ""), ip) == 0) {
                    used = true;
                    break;
                }
            }
        if (!used) {
            snprintf(out, outlen, "%s", ip);
            return 0;
        }
    }
    return -ENOSPC;
}

static int service_defaults(struct kl *kl, const json_t *old, json_t *obj)
{
    json_t *spec = ensure_obj(obj, "spec"), *p;
    const char *type;
    size_t i;

    set_default(spec, "type", json_string("ClusterIP"));
    type = jstr_or(spec, "type", "ClusterIP");
    set_default(spec, "sessionAffinity", json_string("None"));
    json_array_foreach(json_object_get(spec, "ports"), i, p)
    {
        set_default(p, "protocol", json_string("TCP"));
        if (json_object_get(p, "port"))
            set_default(p, "targetPort", json_incref(json_object_get(p, "port")));
    }
    if (strcmp(type, "ExternalName") == 0)
        return 0;
    if (!jstr(spec, "clusterIP")) {
        const char *prev = jstr(json_object_get(old, "spec"), "clusterIP");
        char ip[32];
        if (prev) {
            json_object_set_new(spec, "clusterIP", json_string(prev));
        } else {
            int rc = alloc_cluster_ip(kl, ip, sizeof(ip));
            if (rc)
                return rc;
            json_object_set_new(spec, "clusterIP", json_string(ip));
        }
    }
    set_default(spec, "clusterIPs", json_pack("[s]", jstr(spec, "clusterIP")));
    set_default(spec, "ipFamilies", json_pack("[s]", "IPv4"));
    set_default(spec, "ipFamilyPolicy", json_string("SingleStack"));
    set_default(spec, "internalTrafficPolicy", json_string("Cluster"));
    if (!json_object_get(obj, "status"))
        json_object_set_new(obj, "status", json_pack("{s:{}}", "loadBalancer"));
    return 0;
}

/* stringData is write-only: its values move into data, base64-encoded, as on a real server. */
static void secret_string_data(json_t *obj)
{
    json_t *sd = json_object_get(obj, "stringData"), *data;
    const char *k;
    json_t *v;

    if (!json_is_object(sd))
        return;
    data = ensure_obj(obj, "data");
    json_object_foreach(sd, k, v)
    {
        const char *in = json_string_value(v);
        char *out = base64_encode(in ? in : "", in ? strlen(in) : 0);
        if (out)
            json_object_set_new(data, k, json_string(out));
        free(out);
    }
    json_object_del(obj, "stringData");
}

#define SA_MOUNT_PATH "/var/run/secrets/kubernetes.io/serviceaccount"

/*
 * The ServiceAccount admission plugin's token volume (with --advertise-address): unless the pod
 * or its ServiceAccount sets automountServiceAccountToken: false, a projected volume
 * kube-api-access-<5> (a bound token, ca.crt from kube-root-ca.crt, the namespace) mounted
 * read-only at SA_MOUNT_PATH in every container that has no mount there.
 */
static void pod_service_account_volume(struct kl *kl, const char *ns, json_t *spec)
{
    static const char alnum[] = "bcdfghjklmnpqrstvwxz2456789";
    json_t *automount = json_object_get(spec, "automountServiceAccountToken"), *vols, *c;
    char name[32] = "kube-api-access-", key[600];
    size_t i, n = strlen(name);

    if (!automount) {
        struct rstore *sas = kl_store_get(kl, "", "serviceaccounts", false);
        kl_key(ns, jstr_or(spec, "serviceAccountName", "default"), key, sizeof(key));
        automount =
            json_object_get(sas ? kl_store_lookup(sas, key) : NULL, "automountServiceAccountToken");
    }
    if (json_is_false(automount))
        return;
    for (i = 0; i < 5; i++)
        name[n + i] = alnum[(unsigned)rand() % (sizeof(alnum) - 1)];
    name[n + 5] = '\0';
    vols = json_object_get(spec, "volumes");
    if (!json_is_array(vols)) {
        vols = json_array();
        json_object_set_new(spec, "volumes", vols);
    }
    json_array_append_new(vols, json_pack("{s:s,s:{s:i,s:[{s:{s:i,s:s}},{s:{s:s,s:[{s:s,s:s}]}},"
                                          "{s:{s:[{s:{s:s,s:s},s:s}]}}]}}",
                                          "name", name, "projected", "defaultMode", 420, "sources",
                                          "serviceAccountToken", "expirationSeconds", 3607, "path",
                                          "token", "configMap", "name", "kube-root-ca.crt", "items",
                                          "key", "ca.crt", "path", "ca.crt", "downwardAPI", "items",
                                          "fieldRef", "apiVersion", "v1", "fieldPath",
                                          "metadata.namespace", "path", "namespace"));
    for (int pass = 0; pass < 2; pass++) {
        json_array_foreach(json_object_get(spec, pass ? "initContainers" : "containers"), i, c)
        {
            json_t *mounts = json_object_get(c, "volumeMounts"), *m;
            size_t j;
            bool has = false;
            json_array_foreach(mounts, j, m) has =
                has || strcmp(jstr_or(m, "mountPath", ""), SA_MOUNT_PATH) == 0;
            if (has)
                continue;
            if (!json_is_array(mounts)) {
                mounts = json_array();
                json_object_set_new(c, "volumeMounts", mounts);
            }
            json_array_append_new(mounts, json_pack("{s:s,s:s,s:b}", "name", name, "mountPath",
                                                    SA_MOUNT_PATH, "readOnly", 1));
        }
    }
}

int kl_hooks_defaults(struct kl *kl, const struct rtype *rt, const json_t *old, json_t *obj)
{
    json_t *md = ensure_obj(obj, "metadata");

    if (is(rt, "", "namespaces")) {
        json_t *labels = ensure_obj(md, "labels");
        json_object_set_new(labels, "kubernetes.io/metadata.name",
                            json_string(jstr_or(md, "name", "")));
        set_default(ensure_obj(obj, "spec"), "finalizers", json_pack("[s]", "kubernetes"));
        if (!old)
            json_object_set_new(obj, "status", json_pack("{s:s}", "phase", "Active"));
    } else if (is(rt, "", "services")) {
        return service_defaults(kl, old, obj);
    } else if (is(rt, "", "pods")) {
        json_t *spec = ensure_obj(obj, "spec");
        pod_spec_defaults(spec);
        set_default(spec, "serviceAccountName", json_string("default"));
        set_default(spec, "serviceAccount", json_string(jstr_or(spec, "serviceAccountName", "")));
        set_default(spec, "enableServiceLinks", json_true());
        set_default(spec, "priority", json_integer(0));
        if (!old && kl->advertise)
            pod_service_account_volume(kl, jstr_or(md, "namespace", "default"), spec);
        if (!old && !json_object_get(obj, "status"))
            json_object_set_new(
                obj, "status",
                json_pack("{s:s,s:s}", "phase", "Pending", "qosClass", "BestEffort"));
    } else if (is(rt, "", "secrets")) {
        set_default(obj, "type", json_string("Opaque"));
        secret_string_data(obj);
    } else if (is(rt, "apps", "deployments")) {
        json_t *spec = ensure_obj(obj, "spec");
        set_default(spec, "replicas", json_integer(1));
        set_default(spec, "revisionHistoryLimit", json_integer(10));
        set_default(spec, "progressDeadlineSeconds", json_integer(600));
        set_default(spec, "strategy",
                    json_pack("{s:s,s:{s:s,s:s}}", "type", "RollingUpdate", "rollingUpdate",
                              "maxUnavailable", "25%", "maxSurge", "25%"));
        template_defaults(obj);
    } else if (is(rt, "apps", "replicasets") || is(rt, "apps", "statefulsets") ||
               is(rt, "", "replicationcontrollers")) {
        set_default(ensure_obj(obj, "spec"), "replicas", json_integer(1));
        template_defaults(obj);
    } else if (is(rt, "apps", "daemonsets") || is(rt, "batch", "jobs")) {
        template_defaults(obj);
    }
    return 0;
}

static void check_port(json_t *causes, const json_t *v, const char *field)
{
    if (json_is_integer(v) && (json_integer_value(v) < 1 || json_integer_value(v) > 65535))
        kl_cause_add(causes, "FieldValueInvalid", field,
                     "Invalid value: %lld: must be between 1 and 65535, inclusive",
                     (long long)json_integer_value(v));
}

/* The hand-written validation of kube-apiserver that users meet most often. */
static void validate_pod_spec(const json_t *spec, const char *prefix, json_t *causes)
{
    static const char *const lists[] = {"initContainers", "containers"};
    json_t *seen = json_object();
    for (size_t l = 0; l < ARRAY_LEN(lists); l++) {
        size_t i, j;
        json_t *c, *p;
        json_array_foreach(json_object_get(spec, lists[l]), i, c)
        {
            char field[400];
            const char *name = jstr(c, "name");
            if (name && json_object_get(seen, name)) {
                snprintf(field, sizeof(field), "%s.%s[%zu].name", prefix, lists[l], i);
                kl_cause_add(causes, "FieldValueDuplicate", field, "Duplicate value: \"%s\"", name);
            } else if (name) {
                json_object_set_new(seen, name, json_true());
            }
            json_array_foreach(json_object_get(c, "ports"), j, p)
            {
                snprintf(field, sizeof(field), "%s.%s[%zu].ports[%zu].containerPort", prefix,
                         lists[l], i, j);
                check_port(causes, json_object_get(p, "containerPort"), field);
            }
        }
    }
    json_decref(seen);
}

static void validate_workload(const json_t *obj, json_t *causes)
{
    json_t *spec = json_object_get(obj, "spec"), *ml, *tl;
    const char *k;
    json_t *v;

    if (json_is_integer(json_object_get(spec, "replicas")) &&
        json_integer_value(json_object_get(spec, "replicas")) < 0)
        kl_cause_add(causes, "FieldValueInvalid", "spec.replicas",
                     "Invalid value: %lld: must be greater than or equal to 0",
                     (long long)json_integer_value(json_object_get(spec, "replicas")));
    ml = jget2(spec, "selector", "matchLabels");
    if (!json_object_get(spec, "selector")) {
        kl_cause_add(causes, "FieldValueRequired", "spec.selector", "Required value");
        return;
    }
    if (!json_object_size(ml) && !json_array_size(jget2(spec, "selector", "matchExpressions")))
        kl_cause_add(causes, "FieldValueInvalid", "spec.selector",
                     "Invalid value: \"\": empty selector is invalid for deployment");
    tl = json_object_get(json_object_get(json_object_get(spec, "template"), "metadata"), "labels");
    json_object_foreach(ml, k, v)
    {
        if (!json_equal(json_object_get(tl, k), v)) {
            kl_cause_add(causes, "FieldValueInvalid", "spec.template.metadata.labels",
                         "Invalid value: map[...]: `selector` does not match template `labels`");
            break;
        }
    }
    validate_pod_spec(jget2(spec, "template", "spec"), "spec.template.spec", causes);
}

static void validate_service(const json_t *obj, json_t *causes)
{
    json_t *spec = json_object_get(obj, "spec"), *p, *names = json_object();
    const char *type = jstr_or(spec, "type", "ClusterIP");
    size_t i, n = json_array_size(json_object_get(spec, "ports"));

    if (!n && strcmp(type, "ExternalName") != 0 &&
        strcmp(jstr_or(spec, "clusterIP", ""), "None") != 0)
        kl_cause_add(causes, "FieldValueRequired", "spec.ports", "Required value");
    json_array_foreach(json_object_get(spec, "ports"), i, p)
    {
        char field[128];
        const char *name = jstr(p, "name"), *proto = jstr_or(p, "protocol", "TCP");
        snprintf(field, sizeof(field), "spec.ports[%zu].port", i);
        check_port(causes, json_object_get(p, "port"), field);
        snprintf(field, sizeof(field), "spec.ports[%zu].targetPort", i);
        check_port(causes, json_object_get(p, "targetPort"), field);
        if (n > 1 && (!name || !*name)) {
            snprintf(field, sizeof(field), "spec.ports[%zu].name", i);
            kl_cause_add(causes, "FieldValueRequired", field, "Required value");
        } else if (name && *name && json_object_get(names, name)) {
            snprintf(field, sizeof(field), "spec.ports[%zu].name", i);
            kl_cause_add(causes, "FieldValueDuplicate", field, "Duplicate value: \"%s\"", name);
        } else if (name) {
            json_object_set_new(names, name, json_true());
        }
        if (strcmp(proto, "TCP") && strcmp(proto, "UDP") && strcmp(proto, "SCTP")) {
            snprintf(field, sizeof(field), "spec.ports[%zu].protocol", i);
            kl_cause_add(causes, "FieldValueNotSupported", field,
                         "Unsupported value: \"%s\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                         proto);
        }
    }
    json_decref(names);
}

static void validate_data_keys(const json_t *obj, json_t *causes)
{
    static const char *const maps[] = {"data", "binaryData", "stringData"};
    for (size_t m = 0; m < ARRAY_LEN(maps); m++) {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(obj, maps[m]), k, v)
        {
            bool ok = *k && strlen(k) <= 253 && strcmp(k, ".") && strcmp(k, "..");
            for (const char *c = k; ok && *c; c++)
                ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.';
            if (!ok) {
                char field[300];
                snprintf(field, sizeof(field), "%s[%s]", maps[m], k);
                kl_cause_add(
                    causes, "FieldValueInvalid", field,
                    "Invalid value: \"%s\": a valid config key must consist of alphanumeric "
                    "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                    "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    k);
            }
        }
    }
}

int kl_hooks_validate(struct kl *kl, const struct rtype *rt, const json_t *old, json_t *obj,
                      json_t *causes)
{
    (void)old;
    if (is(rt, "apiextensions.k8s.io", "customresourcedefinitions"))
        return kl_crd_prepare(kl, obj, causes);
    if (is(rt, "", "services"))
        validate_service(obj, causes);
    else if (is(rt, "", "pods"))
        validate_pod_spec(json_object_get(obj, "spec"), "spec", causes);
    else if (is(rt, "apps", "deployments") || is(rt, "apps", "replicasets") ||
             is(rt, "apps", "statefulsets") || is(rt, "apps", "daemonsets"))
        validate_workload(obj, causes);
    else if (is(rt, "", "configmaps") || is(rt, "", "secrets"))
        validate_data_keys(obj, causes);
    return json_array_size(causes) ? ERR_INVALID : 0;
}

int kl_hooks_before_commit(struct kl *kl, const struct rtype *rt, const json_t *old, json_t *obj)
{
    (void)kl;
    (void)rt;
    (void)old;
    (void)obj;
    return 0;
}

/* Every store that holds namespaced objects. */
static void delete_namespace_contents(struct kl *kl, const char *ns)
{
    for (size_t i = 0; i < kl->ntypes; i++) {
        struct rtype *rt = kl->types[i];
        json_t *keys;
        const char *key;
        json_t *o;
        size_t j;
        char prefix[300];
        bool first = true;

        if (!rt->namespaced)
            continue;
        /* one pass per store, not per version */
        for (size_t k = 0; k < i; k++)
            if (kl->types[k]->store == rt->store)
                first = false;
        if (!first)
            continue;
        snprintf(prefix, sizeof(prefix), "%s/", ns);
        keys = json_array();
        json_object_foreach(rt->store->objs, key, o)
        {
            if (strncmp(key, prefix, strlen(prefix)) == 0)
                json_array_append_new(keys, json_string(key));
        }
        json_array_foreach(keys, j, o)
        {
            json_t *cur = kl_store_lookup(rt->store, json_string_value(o)), *res;
            int rc;
            if (!cur)
                continue;
            json_incref(cur);
            res = kl_delete_object(kl, rt, json_string_value(o), cur, false, -1, &rc);
            json_decref(res);
            json_decref(cur);
        }
        json_decref(keys);
    }
}

static bool namespace_empty(struct kl *kl, const char *ns)
{
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "%s/", ns);
    for (size_t i = 0; i < kl->nstores; i++) {
        const char *key;
        json_t *o;
        if (strcmp(kl->store_list[i]->id, "/namespaces") == 0)
            continue;
        json_object_foreach(kl->store_list[i]->objs, key, o)
        {
            if (strncmp(key, prefix, strlen(prefix)) == 0)
                return false;
        }
    }
    return true;
}

void kl_hooks_after_commit(struct kl *kl, const struct rtype *rt, const json_t *old,
                           const json_t *obj)
{
    (void)old;
    if (is(rt, "apiextensions.k8s.io", "customresourcedefinitions")) {
        if (kl_crd_activate(kl, obj))
            fprintf(stderr, "kubelite: cannot establish CRD %s\n",
                    jstr_or(json_object_get(obj, "metadata"), "name", "?"));
    } else if (is(rt, "", "namespaces") &&
               json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp") &&
               !json_object_get(json_object_get(old, "metadata"), "deletionTimestamp")) {
        delete_namespace_contents(kl, jstr_or(json_object_get(obj, "metadata"), "name", ""));
    }
}

void kl_hooks_after_delete(struct kl *kl, const struct rtype *rt, const json_t *obj)
{
    if (is(rt, "apiextensions.k8s.io", "customresourcedefinitions"))
        kl_crd_deactivate(kl, obj);
}

bool kl_hooks_delete_pending(struct kl *kl, const struct rtype *rt, const json_t *obj, long grace)
{
    (void)kl;
    /* Namespaces always pass through Terminating; the tick removes them once empty. */
    if (is(rt, "", "namespaces"))
        return true;
    /* A pod on a node waits for its kubelet, unless deleted with grace 0. */
    if (is(rt, "", "pods"))
        return grace != 0 && jstr(json_object_get(obj, "spec"), "nodeName") &&
               *jstr(json_object_get(obj, "spec"), "nodeName");
    return false;
}

void kl_hooks_tick(struct kl *kl)
{
    struct rstore *st = kl_store_get(kl, "", "namespaces", false);
    struct rtype *rt = kl_rtype_find(kl, "", "v1", "namespaces");
    json_t *done = json_array(), *v;
    const char *key;
    json_t *ns;
    size_t i;

    if (!st || !rt || !done) {
        json_decref(done);
        return;
    }
    json_object_foreach(st->objs, key, ns)
    {
        json_t *md = json_object_get(ns, "metadata");
        const char *name = jstr_or(md, "name", "");
        if (!json_object_get(md, "deletionTimestamp"))
            continue;
        if (strcmp(jstr_or(json_object_get(ns, "status"), "phase", ""), "Terminating") != 0) {
            json_t *n = json_deep_copy(ns);
            json_object_set_new(ensure_obj(n, "status"), "phase", json_string("Terminating"));
            IGNORE_RESULT(kl_commit(kl, st, key, n, NULL));
            json_decref(done);
            return; /* the store changed under the iteration */
        }
        if (namespace_empty(kl, name) && !json_array_size(json_object_get(md, "finalizers")))
            json_array_append_new(done, json_string(key));
        else
            delete_namespace_contents(kl, name);
    }
    json_array_foreach(done, i, v)
        IGNORE_RESULT(kl_commit(kl, st, json_string_value(v), NULL, NULL));
    json_decref(done);
}

bool kl_type_keeps_status_on_create(const struct rtype *rt)
{
    /* CRD status is computed by the server; pods keep what kubelet-like writers send. */
    return is(rt, "", "pods") && false;
}

bool kl_type_creates_on_update(const struct rtype *rt)
{
    /* Kinds whose registry allows create-on-update in kube-apiserver. */
    return is(rt, "", "endpoints") || is(rt, "", "events") ||
           is(rt, "coordination.k8s.io", "leases") || is(rt, "events.k8s.io", "events");
}

void kl_virtual_create(struct kl *kl, struct http_conn *c, const struct http_request *req,
                       const struct rtype *rt, json_t *obj)
{
    (void)req;
    if (is(rt, "authentication.k8s.io", "tokenreviews")) {
        const char *token = jstr(json_object_get(obj, "spec"), "token");
        json_t *status;
        if (!token || !*token) {
            kl_respond_status(c, 422, "Invalid",
                              "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: "
                              "Required value: token must not be empty",
                              "TokenReview", "", "authentication.k8s.io", NULL);
            return;
        }
        if (kl->admin_token && strcmp(token, kl->admin_token) == 0)
            status =
                json_pack("{s:b,s:{s:s,s:[s,s]}}", "authenticated", 1, "user", "username",
                          "kubelite-admin", "groups", "system:masters", "system:authenticated");
        else
            status = kl_token_review(kl, token, jget2(obj, "spec", "audiences"));
        json_object_set_new(obj, "status", status);
    } else if (is(rt, "authentication.k8s.io", "selfsubjectreviews")) {
        json_t *ui = json_pack("{s:s,s:O}", "username",
                               jstr_or(kl->cur_user, "username", "system:anonymous"), "groups",
                               json_object_get(kl->cur_user, "groups")
                                   ? json_object_get(kl->cur_user, "groups")
                                   : json_array());
        json_object_set_new(obj, "status", json_pack("{s:o}", "userInfo", ui));
    } else if (is(rt, "authorization.k8s.io", "selfsubjectrulesreviews")) {
        /* The admin may do everything; others get what their RBAC grants (not enumerated). */
        bool admin = strcmp(jstr_or(kl->cur_user, "username", ""), "kubelite-admin") == 0;
        json_object_set_new(obj, "status",
                            admin ? json_pack("{s:[{s:[s],s:[s],s:[s]}],s:[{s:[s],s:[s]}],s:b}",
                                              "resourceRules", "verbs", "*", "apiGroups", "*",
                                              "resources", "*", "nonResourceRules", "verbs", "*",
                                              "nonResourceURLs", "*", "incomplete", 0)
                                  : json_pack("{s:[],s:[],s:b}", "resourceRules",
                                              "nonResourceRules", "incomplete", 1));
    } else {
        /* SelfSubjectAccessReview / SubjectAccessReview: RBAC decides. */
        json_t *ra = jget2(obj, "spec", "resourceAttributes");
        json_t *nra = jget2(obj, "spec", "nonResourceAttributes");
        char msg[1024];
        json_t *groups = json_object_get(kl->cur_user, "groups");
        const char *user = jstr_or(kl->cur_user, "username", "");
        bool allowed;
        struct kl_authz az;
        if (is(rt, "authorization.k8s.io", "subjectaccessreviews")) {
            user = jstr_or(json_object_get(obj, "spec"), "user", "");
            groups = jget2(obj, "spec", "groups");
        }
        az.user = user;
        az.groups = groups;
        az.verb = jstr_or(ra, "verb", "get");
        az.group = jstr_or(ra, "group", "");
        az.resource = jstr_or(ra, "resource", "");
        az.subresource = jstr_or(ra, "subresource", "");
        az.ns = jstr(ra, "namespace");
        az.name = jstr(ra, "name");
        az.path = NULL;
        if (!ra && nra) {
            az.verb = jstr_or(nra, "verb", "get");
            az.path = jstr_or(nra, "path", "");
        }
        allowed = ra || nra ? kl_authorize(kl, &az, msg, sizeof(msg)) : true;
        /* like kube's RBAC authorizer: a reason when allowed, none when merely not allowed */
        json_object_set_new(
            obj, "status",
            json_pack("{s:b,s:s}", "allowed", allowed, "reason", allowed ? "allowed by RBAC" : ""));
    }
    kl_respond_json(c, 201, obj, NULL);
}

bool kl_subresource_known(const struct rtype *rt, const char *sub)
{
    return (strcmp(sub, "status") == 0 && rt->has_status) ||
           (strcmp(sub, "scale") == 0 && rt->has_scale) ||
           (strcmp(sub, "token") == 0 && is(rt, "", "serviceaccounts")) ||
           (strcmp(sub, "binding") == 0 && is(rt, "", "pods")) ||
           (strcmp(sub, "log") == 0 && is(rt, "", "pods")) ||
           (strcmp(sub, "portforward") == 0 && is(rt, "", "pods"));
}

static json_t *scale_of(const struct rtype *rt, const json_t *obj)
{
    json_t *md = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
    json_t *ml = jget2(spec, "selector", "matchLabels");
    json_t *scale;
    char sel[1024] = "";
    const char *k;
    json_t *v;
    size_t o = 0;

    (void)rt;
    json_object_foreach(ml, k, v)
    {
        int n = snprintf(sel + o, sizeof(sel) - o, "%s%s=%s", o ? "," : "", k,
                         json_string_value(v) ? json_string_value(v) : "");
        if (n < 0 || (size_t)n >= sizeof(sel) - o)
            break;
        o += (size_t)n;
    }
    scale = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s,s:s},s:{s:I},s:{s:I,s:s}}", "kind", "Scale",
                      "apiVersion", "autoscaling/v1", "metadata", "name", jstr_or(md, "name", ""),
                      "namespace", jstr_or(md, "namespace", ""), "uid", jstr_or(md, "uid", ""),
                      "resourceVersion", jstr_or(md, "resourceVersion", ""), "creationTimestamp",
                      jstr_or(md, "creationTimestamp", ""), "spec", "replicas",
                      json_integer_value(json_object_get(spec, "replicas")), "status", "replicas",
                      json_integer_value(jget2(obj, "status", "replicas")), "selector", sel);
    return scale;
}

/* POST pods/<name>/binding: the scheduler's (or kubelet-lite's) placement of a pod on a node. */
static void pod_binding(struct kl *kl, struct http_conn *c, const struct http_request *req,
                        const struct rtype *rt, const char *ns, const char *name)
{
    char key[600], msg[700];
    json_t *body = NULL, *pod, *n;
    const char *node;

    if (strcmp(req->method, "POST") != 0) {
        kl_respond_status(c, 405, "MethodNotAllowed",
                          "the server does not allow this method on the requested resource", NULL,
                          NULL, NULL, NULL);
        return;
    }
    if (kl_parse_body(c, req, &body))
        return;
    node = jstr(json_object_get(body, "target"), "name");
    kl_key(ns, name, key, sizeof(key));
    pod = kl_store_lookup(rt->store, key);
    if (!pod) {
        snprintf(msg, sizeof(msg), "pods \"%s\" not found", name);
        kl_respond_status(c, 404, "NotFound", msg, "pods", name, "", NULL);
    } else if (!node || !*node) {
        kl_respond_status(c, 422, "Invalid", "Binding \"\" is invalid: target.name: Required value",
                          "Binding", name, "", NULL);
    } else if (jstr(json_object_get(pod, "spec"), "nodeName") &&
               *jstr(json_object_get(pod, "spec"), "nodeName")) {
        snprintf(msg, sizeof(msg),
                 "Operation cannot be fulfilled on pods/binding \"%s\": pod %s is already "
                 "assigned to node \"%s\"",
                 name, name, jstr(json_object_get(pod, "spec"), "nodeName"));
        kl_respond_status(c, 409, "Conflict", msg, "pods/binding", name, "", NULL);
    } else {
        n = json_deep_copy(pod);
        json_object_set_new(json_object_get(n, "spec"), "nodeName", json_string(node));
        if (kl_commit(kl, rt->store, key, n, NULL)) {
            kl_respond_status(c, 500, "InternalError", "cannot store the binding", NULL, NULL, NULL,
                              NULL);
        } else {
            json_t *st = json_pack("{s:s,s:s,s:{},s:s,s:i}", "kind", "Status", "apiVersion", "v1",
                                   "metadata", "status", "Success", "code", 201);
            kl_respond_json(c, 201, st, NULL);
            json_decref(st);
        }
    }
    json_decref(body);
}

void kl_subresource_handle(struct kl *kl, struct http_conn *c, const struct http_request *req,
                           const struct rtype *rt, const char *ns, const char *name,
                           const char *sub)
{
    char key[1024], msg[512];
    json_t *obj, *scale, *res = NULL, *body = NULL, *n;
    json_error_t jerr;
    int rc = 0;

    if (name && strcmp(sub, "token") == 0) {
        if (strcmp(req->method, "POST") != 0) {
            kl_respond_status(c, 405, "MethodNotAllowed",
                              "the server does not allow this method on the requested resource",
                              NULL, NULL, NULL, NULL);
            return;
        }
        kl_token_request(kl, c, req, ns, name);
        return;
    }
    if (!name) {
        kl_respond_status(c, 404, "NotFound", "the server could not find the requested resource",
                          NULL, NULL, NULL, NULL);
        return;
    }
    if (strcmp(sub, "binding") == 0) {
        pod_binding(kl, c, req, rt, ns, name);
        return;
    }
    if (strcmp(sub, "log") == 0) {
        kl_pod_log(kl, c, req, ns, name);
        return;
    }
    if (strcmp(sub, "portforward") == 0) {
        kl_pod_portforward(kl, c, req, ns, name);
        return;
    }
    kl_key(ns, name, key, sizeof(key));
    obj = kl_store_lookup(rt->store, key);
    if (!obj) {
        snprintf(msg, sizeof(msg), "%s%s%s \"%s\" not found", rt->plural, rt->group[0] ? "." : "",
                 rt->group, name);
        kl_respond_status(c, 404, "NotFound", msg, rt->plural, name, rt->group, NULL);
        return;
    }
    scale = scale_of(rt, obj);
    if (strcmp(req->method, "GET") == 0) {
        kl_respond_json(c, 200, scale, NULL);
        json_decref(scale);
        return;
    }
    body = json_loadb(req->body, req->body_len, 0, &jerr);
    if (!body) {
        kl_respond_status(c, 400, "BadRequest", "the body is not valid JSON", NULL, NULL, NULL,
                          NULL);
        json_decref(scale);
        return;
    }
    if (strcmp(req->method, "PUT") == 0) {
        res = json_incref(body);
    } else if (strcmp(req->method, "PATCH") == 0) {
        const char *ct = http_req_header(req, "content-type");
        if (ct && strncmp(ct, "application/json-patch+json", 27) == 0)
            rc = patch_json(scale, body, &res, msg, sizeof(msg));
        else
            rc = patch_merge(scale, body, &res, msg, sizeof(msg));
    } else {
        kl_respond_status(c, 405, "MethodNotAllowed",
                          "the server does not allow this method on the requested resource", NULL,
                          NULL, NULL, NULL);
        goto out;
    }
    if (rc || !json_is_integer(jget2(res, "spec", "replicas")) ||
        json_integer_value(jget2(res, "spec", "replicas")) < 0) {
        kl_respond_status(c, 422, "Invalid",
                          rc ? msg
                             : "spec.replicas: Invalid value: must be greater than or "
                               "equal to 0",
                          "Scale", name, "autoscaling", NULL);
        goto out;
    }
    n = json_deep_copy(obj);
    if (!json_equal(jget2(n, "spec", "replicas"), jget2(res, "spec", "replicas"))) {
        json_object_set(json_object_get(n, "spec"), "replicas", jget2(res, "spec", "replicas"));
        json_object_set_new(
            json_object_get(n, "metadata"), "generation",
            json_integer(json_integer_value(jget2(n, "metadata", "generation")) + 1));
        rc = kl_commit(kl, rt->store, key, json_incref(n), NULL);
    }
    json_decref(scale);
    scale = scale_of(rt, n);
    json_decref(n);
    kl_respond_json(c, 200, scale, NULL);
out:
    json_decref(scale);
    json_decref(res);
    json_decref(body);
}

void kl_openapi_handle(struct kl *kl, struct http_conn *c, const struct http_request *req,
                       char **segs, int nseg)
{
    (void)req;
    if (nseg == 2 && strcmp(segs[1], "v2") == 0) {
        /*
         * kubectl falls back to /openapi/v2 when a group-version's v3 document cannot settle
         * validation (an unknown group-version, a create-only kind). An empty protobuf document
         * tells it "no schema here", so the real error (no matches for kind ...) surfaces.
         */
        http_respond(c, 200, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf", "", 0,
                     NULL);
        return;
    }
    if (nseg >= 2 && strcmp(segs[1], "v3") == 0) {
        if (nseg == 2) {
            char *idx = openapi_index_json(kl->oa);
            if (!idx) {
                kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
                return;
            }
            http_respond(c, 200, "application/json", idx, strlen(idx), NULL);
            free(idx);
            return;
        } else {
            char path[600] = "";
            size_t o = 0;
            const char *body, *hash;
            for (int i = 2; i < nseg; i++) {
                int n = snprintf(path + o, sizeof(path) - o, "%s%s", i > 2 ? "/" : "", segs[i]);
                if (n < 0 || (size_t)n >= sizeof(path) - o)
                    break;
                o += (size_t)n;
            }
            body = openapi_doc_body(kl->oa, path, &hash);
            if (body) {
                char hdr[128];
                snprintf(hdr, sizeof(hdr), "Etag: \"%s\"\r\n", hash);
                http_respond(c, 200, "application/json", body, strlen(body), hdr);
                return;
            }
        }
    }
    kl_respond_status(c, 404, "NotFound", "the server could not find the requested resource", NULL,
                      NULL, NULL, NULL);
}
