/*
 * rbac.c - a minimal RBAC authorizer: Roles and ClusterRoles bound by RoleBindings and
 * ClusterRoleBindings to users, groups and ServiceAccounts, evaluated as kube-apiserver's RBAC
 * authorizer does for resource requests and non-resource URLs (nonResourceURLs, with a trailing
 * '*' as a prefix, from ClusterRoles bound by ClusterRoleBindings). The admin (system:masters) is
 * always allowed, and every authenticated user may read discovery and OpenAPI (system:discovery).
 */
#include <stdio.h>
#include <string.h>

#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"

/* A nonResourceURLs entry matches the path exactly, or as a prefix when it ends in '*'. */
static bool url_matches(const json_t *urls, const char *path)
{
    size_t i;
    json_t *u;
    json_array_foreach(urls, i, u)
    {
        const char *p = json_string_value(u);
        size_t n = p ? strlen(p) : 0;
        if (!p)
            continue;
        if (strcmp(p, path) == 0 || (n && p[n - 1] == '*' && strncmp(p, path, n - 1) == 0))
            return true;
    }
    return false;
}

static bool rule_allows(const json_t *rule, const struct kl_authz *a)
{
    char res[300];
    const json_t *names = json_object_get(rule, "resourceNames");

    if (!jlist_has(json_object_get(rule, "verbs"), a->verb))
        return false;
    if (a->path)
        return url_matches(json_object_get(rule, "nonResourceURLs"), a->path);
    if (!jlist_has(json_object_get(rule, "apiGroups"), a->group))
        return false;
    if (a->subresource && *a->subresource) {
        char wild[300];
        snprintf(res, sizeof(res), "%s/%s", a->resource, a->subresource);
        snprintf(wild, sizeof(wild), "*/%s", a->subresource);
        if (!jlist_has(json_object_get(rule, "resources"), res) &&
            !jlist_has(json_object_get(rule, "resources"), wild))
            return false;
    } else if (!jlist_has(json_object_get(rule, "resources"), a->resource)) {
        return false;
    }
    if (json_array_size(names) && (!a->name || !jlist_has(names, a->name)))
        return false;
    return true;
}

static bool subject_matches(const json_t *subjects, const struct kl_authz *a)
{
    size_t i;
    json_t *s;
    json_array_foreach(subjects, i, s)
    {
        const char *kind = jstr_or(s, "kind", ""), *name = jstr_or(s, "name", "");
        if (strcmp(kind, "ServiceAccount") == 0) {
            char u[600];
            snprintf(u, sizeof(u), "system:serviceaccount:%s:%s", jstr_or(s, "namespace", ""),
                     name);
            if (strcmp(u, a->user) == 0)
                return true;
        } else if (strcmp(kind, "User") == 0) {
            if (strcmp(name, a->user) == 0)
                return true;
        } else if (strcmp(kind, "Group") == 0) {
            if (jlist_has(a->groups, name) && strcmp(name, "*") != 0)
                return true;
        }
    }
    return false;
}

static const json_t *find_role(struct kl *kl, const char *kind, const char *ns, const char *name)
{
    bool cluster = strcmp(kind, "ClusterRole") == 0;
    struct rstore *st =
        kl_store_get(kl, "rbac.authorization.k8s.io", cluster ? "clusterroles" : "roles", false);
    char key[600];
    if (!st)
        return NULL;
    kl_key(cluster ? NULL : ns, name, key, sizeof(key));
    return kl_store_lookup(st, key);
}

static bool bindings_allow(struct kl *kl, const char *plural, const struct kl_authz *a)
{
    struct rstore *st = kl_store_get(kl, "rbac.authorization.k8s.io", plural, false);
    bool cluster = strcmp(plural, "clusterrolebindings") == 0;
    const char *key;
    json_t *b;

    if (!st)
        return false;
    json_object_foreach(st->objs, key, b)
    {
        const json_t *role, *ref = json_object_get(b, "roleRef"), *rule;
        const char *bns = jstr(json_object_get(b, "metadata"), "namespace");
        size_t i;
        if (!cluster && (a->path || !a->ns || !bns || strcmp(bns, a->ns) != 0))
            continue; /* non-resource URLs are granted by ClusterRoleBindings only */
        if (!subject_matches(json_object_get(b, "subjects"), a))
            continue;
        role = find_role(kl, jstr_or(ref, "kind", ""), bns, jstr_or(ref, "name", ""));
        json_array_foreach(json_object_get(role, "rules"), i, rule)
        {
            if (rule_allows(rule, a))
                return true;
        }
    }
    return false;
}

bool kl_authorize(struct kl *kl, const struct kl_authz *a, char *msg, size_t msglen)
{
    if (jlist_has(a->groups, "system:masters"))
        return true;
    /* system:basic-user, bound to every authenticated user on a real cluster */
    if (strcmp(a->verb, "create") == 0 &&
        ((strcmp(a->group, "authorization.k8s.io") == 0 &&
          (strcmp(a->resource, "selfsubjectaccessreviews") == 0 ||
           strcmp(a->resource, "selfsubjectrulesreviews") == 0)) ||
         (strcmp(a->group, "authentication.k8s.io") == 0 &&
          strcmp(a->resource, "selfsubjectreviews") == 0)))
        return true;
    if (bindings_allow(kl, "clusterrolebindings", a) || bindings_allow(kl, "rolebindings", a))
        return true;
    if (a->path) {
        snprintf(msg, msglen, "User \"%s\" cannot %s path \"%s\"", a->user, a->verb, a->path);
        return false;
    }
    {
        char what[400], res[300], where[300];
        if (a->name)
            snprintf(what, sizeof(what), "%s \"%s\"", a->resource, a->name);
        else
            snprintf(what, sizeof(what), "%s", a->resource);
        if (a->subresource && *a->subresource)
            snprintf(res, sizeof(res), "%s/%s", a->resource, a->subresource);
        else
            snprintf(res, sizeof(res), "%s", a->resource);
        if (a->ns)
            snprintf(where, sizeof(where), "in the namespace \"%s\"", a->ns);
        else
            snprintf(where, sizeof(where), "at the cluster scope");
        snprintf(msg, msglen,
                 "%s is forbidden: User \"%s\" cannot %s resource \"%s\" in API group \"%s\" %s",
                 what, a->user, a->verb, res, a->group, where);
    }
    return false;
}
