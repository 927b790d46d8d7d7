/*
 * registry.c - the resource types kubelite serves: built-ins from a table, CRD versions added
 * and removed at run time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kubelite/kubelite_int.h"
#include "tests/kubelite/validate.h"

struct builtin {
    const char *group, *version, *kind, *plural, *singular;
    const char *short_names; /* comma-separated */
    const char *categories;
    bool namespaced, status, scale, generation;
    unsigned verbs;
    int name_kind;
};

#define NS true
#define CL false
#define SUB VALIDATE_NAME_SUBDOMAIN
#define LBL VALIDATE_NAME_LABEL
#define PTH VALIDATE_NAME_PATH

static const struct builtin builtins[] = {
    {"", "v1", "Namespace", "namespaces", "namespace", "ns", NULL, CL, true, false, false,
     V_ALL & ~V_DELETECOLLECTION, LBL},
    {"", "v1", "Pod", "pods", "pod", "po", "all", NS, true, false, false, V_ALL, SUB},
    {"", "v1", "Service", "services", "service", "svc", "all", NS, true, false, false, V_ALL, LBL},
    {"", "v1", "Endpoints", "endpoints", "endpoints", "ep", NULL, NS, false, false, false, V_ALL,
     SUB},
    {"", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", "sa", NULL, NS, false, false,
     false, V_ALL, SUB},
    {"", "v1", "Secret", "secrets", "secret", NULL, NULL, NS, false, false, false, V_ALL, SUB},
    {"", "v1", "ConfigMap", "configmaps", "configmap", "cm", NULL, NS, false, false, false, V_ALL,
     SUB},
    {"", "v1", "Event", "events", "event", "ev", NULL, NS, false, false, false, V_ALL, SUB},
    {"", "v1", "Node", "nodes", "node", "no", NULL, CL, true, false, false, V_ALL, SUB},
    {"", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", "pvc",
     NULL, NS, true, false, false, V_ALL, SUB},
    {"", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", "rc",
     "all", NS, true, true, true, V_ALL, SUB},
    {"", "v1", "ResourceQuota", "resourcequotas", "resourcequota", "quota", NULL, NS, true, false,
     false, V_ALL, SUB},
    {"", "v1", "LimitRange", "limitranges", "limitrange", "limits", NULL, NS, false, false, false,
     V_ALL, SUB},
    {"apps", "v1", "Deployment", "deployments", "deployment", "deploy", "all", NS, true, true, true,
     V_ALL, SUB},
    {"apps", "v1", "ReplicaSet", "replicasets", "replicaset", "rs", "all", NS, true, true, true,
     V_ALL, SUB},
    {"apps", "v1", "StatefulSet", "statefulsets", "statefulset", "sts", "all", NS, true, true, true,
     V_ALL, SUB},
    {"apps", "v1", "DaemonSet", "daemonsets", "daemonset", "ds", "all", NS, true, false, true,
     V_ALL, SUB},
    {"apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", NULL, NULL,
     NS, false, false, false, V_ALL, SUB},
    {"batch", "v1", "Job", "jobs", "job", NULL, "all", NS, true, false, true, V_ALL, SUB},
    {"batch", "v1", "CronJob", "cronjobs", "cronjob", "cj", "all", NS, true, false, true, V_ALL,
     SUB},
    {"discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", NULL, NULL, NS,
     false, false, false, V_ALL, SUB},
    {"coordination.k8s.io", "v1", "Lease", "leases", "lease", NULL, NULL, NS, false, false, false,
     V_ALL, SUB},
    {"apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
     "customresourcedefinition", "crd,crds", "api-extensions", CL, true, false, true, V_ALL, SUB},
    {"admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
     "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", NULL, "api-extensions", CL,
     false, false, true, V_ALL, SUB},
    {"admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
     "validatingwebhookconfigurations", "validatingwebhookconfiguration", NULL, "api-extensions",
     CL, false, false, true, V_ALL, SUB},
    {"rbac.authorization.k8s.io", "v1", "Role", "roles", "role", NULL, NULL, NS, false, false,
     false, V_ALL, PTH},
    {"rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", NULL, NULL,
     NS, false, false, false, V_ALL, PTH},
    {"rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", NULL, NULL,
     CL, false, false, false, V_ALL, PTH},
    {"rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
     "clusterrolebinding", NULL, NULL, CL, false, false, false, V_ALL, PTH},
    {"authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", NULL, NULL, CL,
     false, false, false, V_CREATE_ONLY, SUB},
    {"authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
     NULL, NULL, CL, false, false, false, V_CREATE_ONLY, SUB},
    {"authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
     "selfsubjectrulesreview", NULL, NULL, CL, false, false, false, V_CREATE_ONLY, SUB},
    {"authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
     "selfsubjectaccessreview", NULL, NULL, CL, false, false, false, V_CREATE_ONLY, SUB},
    {"authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
     "subjectaccessreview", NULL, NULL, CL, false, false, false, V_CREATE_ONLY, SUB},
    {"policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", "pdb",
     NULL, NS, true, false, true, V_ALL, SUB},
    {"networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", "netpol", NULL,
     NS, false, false, true, V_ALL, SUB},
    {"networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", "ing", NULL, NS, true, false,
     true, V_ALL, SUB},
    {"events.k8s.io", "v1", "Event", "events", "event", "ev", NULL, NS, false, false, false, V_ALL,
     SUB},
    {"autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
     "horizontalpodautoscaler", "hpa", "all", NS, true, false, true, V_ALL, SUB},
    {"scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", "pc", NULL, CL,
     false, false, false, V_ALL, SUB},
    {"storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", "sc", NULL, CL,
     false, false, false, V_ALL, SUB},
};

static json_t *csv_array(const char *csv)
{
    json_t *a = json_array();
    const char *p = csv;
    while (a && p && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        json_array_append_new(a, json_stringn(p, n));
        p = comma ? comma + 1 : NULL;
    }
    return a;
}

void kl_rtype_free(struct rtype *rt)
{
    if (!rt)
        return;
    free(rt->group);
    free(rt->version);
    free(rt->kind);
    free(rt->plural);
    free(rt->singular);
    free(rt->list_kind);
    json_decref(rt->short_names);
    json_decref(rt->categories);
    json_decref(rt->schema);
    json_decref(rt->printer_columns);
    free(rt);
}

struct rstore *kl_store_get(struct kl *kl, const char *group, const char *plural, bool create)
{
    char id[512];
    struct rstore *st;

    snprintf(id, sizeof(id), "%s/%s", group, plural);
    for (size_t i = 0; i < kl->nstores; i++)
        if (strcmp(kl->store_list[i]->id, id) == 0)
            return kl->store_list[i];
    if (!create)
        return NULL;
    if (kl->nstores == kl->stores_cap) {
        size_t ncap = kl->stores_cap ? kl->stores_cap * 2 : 64;
        struct rstore **nl = realloc(kl->store_list, ncap * sizeof(*nl));
        if (!nl)
            return NULL;
        kl->store_list = nl;
        kl->stores_cap = ncap;
    }
    st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->id = strdup(id);
    st->objs = json_object();
    if (!st->id || !st->objs) {
        free(st->id);
        json_decref(st->objs);
        free(st);
        return NULL;
    }
    kl->store_list[kl->nstores++] = st;
    return st;
}

int kl_rtype_add(struct kl *kl, struct rtype *rt)
{
    if (!rt->store) {
        rt->store = kl_store_get(kl, rt->group, rt->plural, true);
        if (!rt->store) {
            kl_rtype_free(rt);
            return -ENOMEM;
        }
    }
    if (kl->ntypes == kl->types_cap) {
        size_t ncap = kl->types_cap ? kl->types_cap * 2 : 64;
        struct rtype **nt = realloc(kl->types, ncap * sizeof(*nt));
        if (!nt) {
            kl_rtype_free(rt);
            return -ENOMEM;
        }
        kl->types = nt;
        kl->types_cap = ncap;
    }
    rt->store->refs++;
    kl->types[kl->ntypes++] = rt;
    return 0;
}

void kl_rtype_remove(struct kl *kl, struct rtype *rt)
{
    for (size_t i = 0; i < kl->ntypes; i++) {
        if (kl->types[i] != rt)
            continue;
        memmove(&kl->types[i], &kl->types[i + 1], (kl->ntypes - i - 1) * sizeof(rt));
        kl->ntypes--;
        rt->store->refs--;
        kl_rtype_free(rt);
        return;
    }
}

int kl_registry_init(struct kl *kl)
{
    for (size_t i = 0; i < ARRAY_LEN(builtins); i++) {
        const struct builtin *b = &builtins[i];
        struct rtype *rt = calloc(1, sizeof(*rt));
        char lk[256];
        int rc;

        if (!rt)
            return -ENOMEM;
        snprintf(lk, sizeof(lk), "%sList", b->kind);
        rt->group = strdup(b->group);
        rt->version = strdup(b->version);
        rt->kind = strdup(b->kind);
        rt->plural = strdup(b->plural);
        rt->singular = strdup(b->singular);
        rt->list_kind = strdup(lk);
        rt->short_names = csv_array(b->short_names);
        rt->categories = csv_array(b->categories);
        if (!rt->group || !rt->version || !rt->kind || !rt->plural || !rt->singular ||
            !rt->list_kind || !rt->short_names || !rt->categories) {
            kl_rtype_free(rt);
            return -ENOMEM;
        }
        rt->namespaced = b->namespaced;
        rt->has_status = b->status;
        rt->has_scale = b->scale;
        rt->generation = b->generation;
        rt->verbs = b->verbs;
        rt->virtual_only = b->verbs == V_CREATE_ONLY;
        rt->name_kind = b->name_kind;
        rt->preferred = true;
        rc = kl_rtype_add(kl, rt);
        if (rc)
            return rc;
    }
    return 0;
}

struct rtype *kl_rtype_find(const struct kl *kl, const char *group, const char *version,
                            const char *plural)
{
    for (size_t i = 0; i < kl->ntypes; i++) {
        struct rtype *rt = kl->types[i];
        if (strcmp(rt->plural, plural) == 0 && strcmp(rt->group, group) == 0 &&
            strcmp(rt->version, version) == 0)
            return rt;
    }
    return NULL;
}

struct rtype *kl_rtype_by_kind(const struct kl *kl, const char *group, const char *version,
                               const char *kind)
{
    for (size_t i = 0; i < kl->ntypes; i++) {
        struct rtype *rt = kl->types[i];
        if (strcmp(rt->kind, kind) == 0 && strcmp(rt->group, group) == 0 &&
            strcmp(rt->version, version) == 0)
            return rt;
    }
    return NULL;
}

void kl_api_version(const struct rtype *rt, char *out, size_t outlen)
{
    if (rt->group[0])
        snprintf(out, outlen, "%s/%s", rt->group, rt->version);
    else
        snprintf(out, outlen, "%s", rt->version);
}
