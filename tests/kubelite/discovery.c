/*
 * discovery.c - /api, /apis and the group-version endpoints: aggregated discovery (v2 and
 * v2beta1) negotiated by the client's Accept list in order, and the legacy documents.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"

enum disco_fmt { DISCO_LEGACY, DISCO_V2, DISCO_V2BETA1 };

static enum disco_fmt negotiate(const struct http_request *req)
{
    const char *a = http_req_header(req, "accept");
    const char *p = a;

    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[512];
        snprintf(item, sizeof(item), "%.*s", (int)n, p);
        if (strstr(item, "as=APIGroupDiscoveryList") && strstr(item, "g=apidiscovery.k8s.io")) {
            if (strstr(item, "v=v2beta1"))
                return DISCO_V2BETA1;
            if (strstr(item, "v=v2"))
                return DISCO_V2;
        } else if (strstr(item, "application/json") || strstr(item, "*/*")) {
            return DISCO_LEGACY;
        }
        p = comma ? comma + 1 : NULL;
        while (p && *p == ' ')
            p++;
    }
    return DISCO_LEGACY;
}

static json_t *verbs_array(unsigned verbs)
{
    static const struct {
        unsigned bit;
        const char *name;
    } tbl[] = {{V_CREATE, "create"}, {V_DELETE, "delete"}, {V_DELETECOLLECTION, "deletecollection"},
               {V_GET, "get"},       {V_LIST, "list"},     {V_PATCH, "patch"},
               {V_UPDATE, "update"}, {V_WATCH, "watch"}};
    json_t *a = json_array();
    for (size_t i = 0; i < ARRAY_LEN(tbl); i++)
        if (verbs & tbl[i].bit)
            json_array_append_new(a, json_string(tbl[i].name));
    return a;
}

/* Groups in discovery order (core first, then by first registration), versions preferred first. */
static json_t *group_versions(const struct kl *kl, bool core)
{
    json_t *groups = json_array(); /* [{name, versions:[..]}] */
    for (size_t i = 0; i < kl->ntypes; i++) {
        const struct rtype *rt = kl->types[i];
        json_t *g = NULL, *vs;
        size_t j, k;
        json_t *x;
        bool have = false;

        if (core != (rt->group[0] == '\0'))
            continue;
        json_array_foreach(groups, j, x) if (strcmp(jstr_or(x, "name", ""), rt->group) == 0) g = x;
        if (!g) {
            g = json_pack("{s:s,s:[]}", "name", rt->group, "versions");
            json_array_append_new(groups, g);
        }
        vs = json_object_get(g, "versions");
        json_array_foreach(vs, k, x) have |= strcmp(json_string_value(x), rt->version) == 0;
        if (!have) {
            /* insert keeping priority order */
            size_t pos = json_array_size(vs);
            json_array_foreach(vs, k, x)
            {
                if (kl_version_cmp(rt->version, json_string_value(x)) < 0) {
                    pos = k;
                    break;
                }
            }
            json_array_insert_new(vs, pos, json_string(rt->version));
        }
    }
    return groups;
}

static json_t *aggregated_resources(const struct kl *kl, const char *group, const char *version)
{
    json_t *res = json_array();
    for (size_t i = 0; i < kl->ntypes; i++) {
        const struct rtype *rt = kl->types[i];
        json_t *r, *subs;
        if (strcmp(rt->group, group) != 0 || strcmp(rt->version, version) != 0)
            continue;
        r = json_pack("{s:s,s:{s:s,s:s,s:s},s:s,s:s,s:o}", "resource", rt->plural, "responseKind",
                      "group", rt->group, "version", rt->version, "kind", rt->kind, "scope",
                      rt->namespaced ? "Namespaced" : "Cluster", "singularResource", rt->singular,
                      "verbs", verbs_array(rt->verbs));
        if (json_array_size(rt->short_names))
            json_object_set(r, "shortNames", rt->short_names);
        if (json_array_size(rt->categories))
            json_object_set(r, "categories", rt->categories);
        subs = json_array();
        if (rt->has_status)
            json_array_append_new(subs, json_pack("{s:s,s:{s:s,s:s,s:s},s:[s,s,s]}", "subresource",
                                                  "status", "responseKind", "group", rt->group,
                                                  "version", rt->version, "kind", rt->kind, "verbs",
                                                  "get", "patch", "update"));
        if (rt->has_scale)
            json_array_append_new(subs, json_pack("{s:s,s:{s:s,s:s,s:s},s:[s,s,s]}", "subresource",
                                                  "scale", "responseKind", "group", "autoscaling",
                                                  "version", "v1", "kind", "Scale", "verbs", "get",
                                                  "patch", "update"));
        if (strcmp(rt->plural, "serviceaccounts") == 0 && !rt->group[0])
            json_array_append_new(subs, json_pack("{s:s,s:{s:s,s:s,s:s},s:[s]}", "subresource",
                                                  "token", "responseKind", "group",
                                                  "authentication.k8s.io", "version", "v1", "kind",
                                                  "TokenRequest", "verbs", "create"));
        if (json_array_size(subs))
            json_object_set_new(r, "subresources", subs);
        else
            json_decref(subs);
        json_array_append_new(res, r);
    }
    return res;
}

static json_t *aggregated(const struct kl *kl, bool core, enum disco_fmt fmt)
{
    json_t *groups = group_versions(kl, core), *items = json_array(), *g;
    size_t i, j;
    json_t *v;

    json_array_foreach(groups, i, g)
    {
        json_t *versions = json_array();
        json_array_foreach(json_object_get(g, "versions"), j, v)
        {
            json_array_append_new(
                versions,
                json_pack("{s:s,s:o,s:s}", "version", json_string_value(v), "resources",
                          aggregated_resources(kl, jstr_or(g, "name", ""), json_string_value(v)),
                          "freshness", "Current"));
        }
        json_array_append_new(items, json_pack("{s:{s:s},s:o}", "metadata", "name",
                                               jstr_or(g, "name", ""), "versions", versions));
    }
    json_decref(groups);
    return json_pack("{s:s,s:s,s:{},s:o}", "kind", "APIGroupDiscoveryList", "apiVersion",
                     fmt == DISCO_V2 ? "apidiscovery.k8s.io/v2" : "apidiscovery.k8s.io/v2beta1",
                     "metadata", "items", items);
}

static json_t *api_group(const json_t *g)
{
    json_t *vs = json_array(), *v;
    size_t i;
    const char *name = jstr_or(g, "name", "");
    char gv[300];
    json_array_foreach(json_object_get(g, "versions"), i, v)
    {
        snprintf(gv, sizeof(gv), "%s/%s", name, json_string_value(v));
        json_array_append_new(
            vs, json_pack("{s:s,s:s}", "groupVersion", gv, "version", json_string_value(v)));
    }
    return json_pack("{s:s,s:o,s:O}", "name", name, "versions", vs, "preferredVersion",
                     json_array_get(vs, 0));
}

static json_t *resource_list(const struct kl *kl, const char *group, const char *version)
{
    json_t *res = json_array();
    char gv[300];
    bool any = false;

    for (size_t i = 0; i < kl->ntypes; i++) {
        const struct rtype *rt = kl->types[i];
        json_t *r;
        char sub[300];
        if (strcmp(rt->group, group) != 0 || strcmp(rt->version, version) != 0)
            continue;
        any = true;
        r = json_pack("{s:s,s:s,s:b,s:s,s:o}", "name", rt->plural, "singularName", rt->singular,
                      "namespaced", rt->namespaced, "kind", rt->kind, "verbs",
                      verbs_array(rt->verbs));
        if (json_array_size(rt->short_names))
            json_object_set(r, "shortNames", rt->short_names);
        if (json_array_size(rt->categories))
            json_object_set(r, "categories", rt->categories);
        json_array_append_new(res, r);
        if (rt->has_status) {
            snprintf(sub, sizeof(sub), "%s/status", rt->plural);
            json_array_append_new(res,
                                  json_pack("{s:s,s:s,s:b,s:s,s:[s,s,s]}", "name", sub,
                                            "singularName", "", "namespaced", rt->namespaced,
                                            "kind", rt->kind, "verbs", "get", "patch", "update"));
        }
        if (rt->has_scale) {
            snprintf(sub, sizeof(sub), "%s/scale", rt->plural);
            json_array_append_new(res, json_pack("{s:s,s:s,s:b,s:s,s:s,s:s,s:[s,s,s]}", "name", sub,
                                                 "singularName", "", "namespaced", rt->namespaced,
                                                 "group", "autoscaling", "version", "v1", "kind",
                                                 "Scale", "verbs", "get", "patch", "update"));
        }
    }
    if (!any) {
        json_decref(res);
        return NULL;
    }
    if (group[0])
        snprintf(gv, sizeof(gv), "%s/%s", group, version);
    else
        snprintf(gv, sizeof(gv), "%s", version);
    return json_pack("{s:s,s:s,s:s,s:o}", "kind", "APIResourceList", "apiVersion", "v1",
                     "groupVersion", gv, "resources", res);
}

void kl_discovery_handle(struct kl *kl, struct http_conn *c, const struct http_request *req,
                         char **segs, int nseg)
{
    bool core = strcmp(segs[0], "api") == 0;
    json_t *body = NULL;

    if (nseg == 1) {
        enum disco_fmt fmt = negotiate(req);
        if (fmt != DISCO_LEGACY) {
            char *s;
            body = aggregated(kl, core, fmt);
            s = body ? json_dumps(body, JSON_COMPACT) : NULL;
            if (s)
                http_respond(c, 200,
                             fmt == DISCO_V2 ? "application/json;g=apidiscovery.k8s.io;v=v2;"
                                               "as=APIGroupDiscoveryList"
                                             : "application/json;g=apidiscovery.k8s.io;v=v2beta1;"
                                               "as=APIGroupDiscoveryList",
                             s, strlen(s), "Vary: Accept\r\n");
            else
                kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
            free(s);
            json_decref(body);
            return;
        }
        if (core) {
            body = json_pack("{s:s,s:[s],s:[{s:s,s:s}]}", "kind", "APIVersions", "versions", "v1",
                             "serverAddressByClientCIDRs", "clientCIDR", "0.0.0.0/0",
                             "serverAddress", "127.0.0.1:6443");
        } else {
            json_t *groups = group_versions(kl, false), *g, *list = json_array();
            size_t i;
            json_array_foreach(groups, i, g) json_array_append_new(list, api_group(g));
            json_decref(groups);
            body = json_pack("{s:s,s:s,s:o}", "kind", "APIGroupList", "apiVersion", "v1", "groups",
                             list);
        }
    } else if (core) {
        body = resource_list(kl, "", segs[1]);
    } else if (nseg == 2) {
        json_t *groups = group_versions(kl, false), *g;
        size_t i;
        json_array_foreach(groups, i, g)
        {
            if (strcmp(jstr_or(g, "name", ""), segs[1]) == 0) {
                body = api_group(g);
                json_object_set_new(body, "kind", json_string("APIGroup"));
                json_object_set_new(body, "apiVersion", json_string("v1"));
            }
        }
        json_decref(groups);
    } else {
        body = resource_list(kl, segs[1], segs[2]);
    }
    if (!body) {
        kl_respond_status(c, 404, "NotFound", "the server could not find the requested resource",
                          NULL, NULL, NULL, NULL);
        return;
    }
    kl_respond_json(c, 200, body, NULL);
    json_decref(body);
}
