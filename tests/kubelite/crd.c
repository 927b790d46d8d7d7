/*
 * crd.c - CustomResourceDefinitions: validation and status on write, and what establishing
 * one means: a resource type for every served version (sharing one store), discovery entries,
 * and a generated OpenAPI document per group-version.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"
#include "tests/kubelite/openapi.h"
#include "tests/kubelite/validate.h"

/* Kubernetes version priority: v1 > v1beta1 > v1alpha1 > non-matching (alphabetical). */
static void version_rank(const char *v, int *cls, int *major, int *minor)
{
    int n = 0;
    *cls = 0;
    *major = *minor = 0;
    if (v[0] != 'v' || !isdigit((unsigned char)v[1]))
        return;
    if (sscanf(v, "v%d%n", major, &n) != 1)
        return;
    if (v[n] == '\0') {
        *cls = 3;
    } else if (strncmp(v + n, "beta", 4) == 0 && sscanf(v + n + 4, "%d", minor) == 1) {
        *cls = 2;
    } else if (strncmp(v + n, "alpha", 5) == 0 && sscanf(v + n + 5, "%d", minor) == 1) {
        *cls = 1;
    }
}

int kl_version_cmp(const char *a, const char *b)
{
    int ca, ma, na, cb, mb, nb;
    version_rank(a, &ca, &ma, &na);
    version_rank(b, &cb, &mb, &nb);
    if (ca != cb)
        return cb - ca;
    if (ca == 0)
        return strcmp(a, b);
    if (ma != mb)
        return mb - ma;
    return nb - na;
}

int kl_crd_prepare(struct kl *kl, json_t *crd, json_t *causes)
{
    json_t *spec = json_object_get(crd, "spec"), *names = json_object_get(spec, "names");
    const char *group = jstr(spec, "group"), *plural = jstr(names, "plural");
    const char *kind = jstr(names, "kind"), *scope = jstr(spec, "scope");
    const char *name = jstr(json_object_get(crd, "metadata"), "name");
    json_t *versions = json_object_get(spec, "versions"), *v, *status, *stored, *conds;
    size_t i, nstorage = 0;
    char expect[600], msg[800], now[40];
    json_t *old_status = json_object_get(crd, "status");

    (void)kl;
    if (!group || !strchr(group, '.'))
        kl_cause_add(causes, "FieldValueInvalid", "spec.group", "%s",
                     "Invalid value: \"\": should be a domain with at least one dot");
    if (!plural || !*plural)
        kl_cause_add(causes, "FieldValueRequired", "spec.names.plural", "%s", "Required value");
    if (!kind || !*kind)
        kl_cause_add(causes, "FieldValueRequired", "spec.names.kind", "%s", "Required value");
    if (!scope || (strcmp(scope, "Namespaced") != 0 && strcmp(scope, "Cluster") != 0))
        kl_cause_add(causes, "FieldValueNotSupported", "spec.scope", "%s",
                     "Unsupported value: \"\": supported values: \"Cluster\", \"Namespaced\"");
    if (plural && group && name) {
        snprintf(expect, sizeof(expect), "%s.%s", plural, group);
        if (strcmp(name, expect) != 0) {
            snprintf(msg, sizeof(msg),
                     "Invalid value: \"%s\": must be spec.names.plural+\".\"+spec.group", name);
            kl_cause_add(causes, "FieldValueInvalid", "metadata.name", "%s", msg);
        }
    }
    if (plural && !validate_name(plural, VALIDATE_NAME_LABEL, msg, sizeof(msg))) {
        char m2[1200];
        snprintf(m2, sizeof(m2), "Invalid value: \"%s\": %s", plural, msg);
        kl_cause_add(causes, "FieldValueInvalid", "spec.names.plural", "%s", m2);
    }
    if (!json_array_size(versions))
        kl_cause_add(causes, "FieldValueRequired", "spec.versions", "%s",
                     "Required value: must have exactly one version marked as storage version");
    json_array_foreach(versions, i, v)
    {
        char field[64];
        if (json_is_true(json_object_get(v, "storage")))
            nstorage++;
        if (!jstr(v, "name")) {
            snprintf(field, sizeof(field), "spec.versions[%zu].name", i);
            kl_cause_add(causes, "FieldValueRequired", field, "%s", "Required value");
        }
        if (!json_object_get(jget2(v, "schema", "openAPIV3Schema"), "type") &&
            !json_is_true(json_object_get(jget2(v, "schema", "openAPIV3Schema"),
                                          "x-kubernetes-preserve-unknown-fields"))) {
            snprintf(field, sizeof(field), "spec.versions[%zu].schema.openAPIV3Schema", i);
            kl_cause_add(causes, "FieldValueRequired", field, "%s",
                         "Required value: schemas are required");
        }
    }
    if (json_array_size(versions) && nstorage != 1)
        kl_cause_add(
            causes, "FieldValueInvalid", "spec.versions", "%s",
            "Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must have "
            "exactly one version marked as storage version");
    if (json_array_size(causes))
        return ERR_INVALID;

    /* names defaults */
    if (!jstr(names, "singular")) {
        char lower[256];
        size_t k;
        for (k = 0; kind[k] && k + 1 < sizeof(lower); k++)
            lower[k] = (char)tolower((unsigned char)kind[k]);
        lower[k] = '\0';
        json_object_set_new(names, "singular", json_string(lower));
    }
    if (!jstr(names, "listKind")) {
        char lk[300];
        snprintf(lk, sizeof(lk), "%sList", kind);
        json_object_set_new(names, "listKind", json_string(lk));
    }

    /* status: accepted and established at once */
    kl_now_rfc3339(now, sizeof(now));
    stored = json_array();
    json_array_foreach(json_object_get(old_status, "storedVersions"), i, v)
        json_array_append(stored, v);
    json_array_foreach(versions, i, v)
    {
        if (json_is_true(json_object_get(v, "storage"))) {
            bool have = false;
            size_t j;
            json_t *s;
            json_array_foreach(stored, j, s) have |= json_equal(s, json_object_get(v, "name"));
            if (!have)
                json_array_append(stored, json_object_get(v, "name"));
        }
    }
    conds = json_pack("[{s:s,s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s,s:s}]", "type", "NamesAccepted",
                      "status", "True", "lastTransitionTime", now, "reason", "NoConflicts",
                      "message", "no conflicts found", "type", "Established", "status", "True",
                      "lastTransitionTime", now, "reason", "InitialNamesAccepted", "message",
                      "the initial names have been accepted");
    /* keep transition times when nothing flipped */
    if (json_array_size(json_object_get(old_status, "conditions")) == 2) {
        json_decref(conds);
        conds = json_incref(json_object_get(old_status, "conditions"));
    }
    status = json_pack("{s:o,s:O,s:o}", "conditions", conds, "acceptedNames", names,
                       "storedVersions", stored);
    if (!status)
        return -ENOMEM;
    json_object_set_new(crd, "status", status);
    return 0;
}

/* Collect "$ref" targets of a schema, transitively, into comps. */
static void collect_refs(const struct openapi *oa, const json_t *node, json_t *comps)
{
    if (json_is_object(node)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)node, k, v)
        {
            if (strcmp(k, "$ref") == 0 && json_is_string(v)) {
                const char *ref = json_string_value(v);
                if (strncmp(ref, "#/components/schemas/", 21) == 0 &&
                    !json_object_get(comps, ref + 21)) {
                    const json_t *s = openapi_schema(oa, ref + 21);
                    if (s) {
                        json_object_set(comps, ref + 21, (json_t *)s);
                        collect_refs(oa, s, comps);
                    }
                }
            } else {
                collect_refs(oa, v, comps);
            }
        }
    } else if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach((json_t *)node, i, v) collect_refs(oa, v, comps);
    }
}

static void reverse_group(const char *group, char *out, size_t outlen)
{
    /* "mesh.weft.dev" -> "dev.weft.mesh" */
    char tmp[256];
    size_t o = 0;
    snprintf(tmp, sizeof(tmp), "%s", group);
    out[0] = '\0';
    for (;;) {
        char *dot = strrchr(tmp, '.');
        const char *part = dot ? dot + 1 : tmp;
        int n = snprintf(out + o, outlen - o, "%s%s", o ? "." : "", part);
        if (n < 0 || (size_t)n >= outlen - o)
            break;
        o += (size_t)n;
        if (!dot)
            break;
        *dot = '\0';
    }
}

/* The OpenAPI v3 document of one CRD group-version, from every rtype in it. */
static int publish_doc(struct kl *kl, const char *group, const char *version)
{
    json_t *doc = NULL, *paths, *comps;
    char path[600], rg[300];
    bool any = false;

    snprintf(path, sizeof(path), "apis/%s/%s", group, version);
    reverse_group(group, rg, sizeof(rg));
    doc =
        json_pack("{s:s,s:{s:s,s:s},s:{},s:{s:{}}}", "openapi", "3.0.0", "info", "title",
                  "Kubernetes CRD Swagger", "version", "v0.1.0", "paths", "components", "schemas");
    if (!doc)
        return -ENOMEM;
    paths = json_object_get(doc, "paths");
    comps = jget2(doc, "components", "schemas");
    for (size_t i = 0; i < kl->ntypes; i++) {
        struct rtype *rt = kl->types[i];
        char sname[600], lname[600], item[900], coll[800], gvk_ref[700];
        json_t *schema, *gvk, *params, *op;

        if (!rt->crd || strcmp(rt->group, group) != 0 || strcmp(rt->version, version) != 0)
            continue;
        any = true;
        snprintf(sname, sizeof(sname), "%s.%s.%s", rg, version, rt->kind);
        snprintf(lname, sizeof(lname), "%s.%s.%s", rg, version, rt->list_kind);
        snprintf(gvk_ref, sizeof(gvk_ref), "#/components/schemas/%s", sname);
        schema = json_deep_copy(json_object_get(rt->schema, "openAPIV3Schema"));
        if (!schema)
            schema = json_pack("{s:s}", "type", "object");
        if (!json_object_get(schema, "properties"))
            json_object_set_new(schema, "properties", json_object());
        json_object_set_new(json_object_get(schema, "properties"), "metadata",
                            json_pack("{s:[{s:s}],s:s}", "allOf", "$ref",
                                      "#/components/schemas/"
                                      "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                                      "description", "Standard object's metadata."));
        json_object_set_new(json_object_get(schema, "properties"), "apiVersion",
                            json_pack("{s:s,s:s}", "type", "string", "description",
                                      "APIVersion defines the versioned schema of this "
                                      "representation of an object."));
        json_object_set_new(json_object_get(schema, "properties"), "kind",
                            json_pack("{s:s,s:s}", "type", "string", "description",
                                      "Kind is a string value representing the REST resource "
                                      "this object represents."));
        /* schemas carry a list of GVKs, operations a single one */
        json_object_set_new(
            schema, "x-kubernetes-group-version-kind",
            json_pack("[{s:s,s:s,s:s}]", "group", group, "version", version, "kind", rt->kind));
        gvk = json_pack("{s:s,s:s,s:s}", "group", group, "version", version, "kind", rt->kind);
        json_object_set_new(comps, sname, schema);
        json_object_set_new(comps, lname,
                            json_pack("{s:s,s:[s],s:{s:{s:s},s:{s:s},s:{s:{s:s}},s:{}},s:[{s:s,s:"
                                      "s,s:s}]}",
                                      "type", "object", "required", "items", "properties",
                                      "apiVersion", "type", "string", "kind", "type", "string",
                                      "items", "items", "$ref", gvk_ref, "metadata",
                                      "x-kubernetes-group-version-kind", "group", group, "version",
                                      version, "kind", rt->list_kind));
        if (rt->namespaced) {
            snprintf(coll, sizeof(coll), "/apis/%s/%s/namespaces/{namespace}/%s", group, version,
                     rt->plural);
        } else {
            snprintf(coll, sizeof(coll), "/apis/%s/%s/%s", group, version, rt->plural);
        }
        snprintf(item, sizeof(item), "%s/{name}", coll);
        params = json_pack("[{s:s,s:s,s:{s:s}},{s:s,s:s,s:{s:s}},{s:s,s:s,s:{s:s}},{s:s,s:s,s:{s:"
                           "s}}]",
                           "name", "dryRun", "in", "query", "schema", "type", "string", "name",
                           "fieldManager", "in", "query", "schema", "type", "string", "name",
                           "fieldValidation", "in", "query", "schema", "type", "string", "name",
                           "force", "in", "query", "schema", "type", "boolean");
        op = json_pack(
            "{s:{s:s,s:O,s:{s:s,s:s,s:s},s:O,s:{s:{s:s}}},s:{s:s,s:O,s:{s:s,s:s,s:s},"
            "s:{s:{s:s}}},s:{s:s,s:O,s:{s:s,s:s,s:s},s:O,s:{s:{s:s}}},s:{s:s,s:O,s:{"
            "s:s,s:s,s:s},s:{s:{s:s}}}}",
            "patch", "operationId", "patch", "x-kubernetes-group-version-kind", gvk,
            "x-kubernetes-action", "x", "patch", "description", "partially update", "tags", "crd",
            "parameters", params, "responses", "200", "description", "OK", "get", "operationId",
            "read", "x-kubernetes-group-version-kind", gvk, "x-kubernetes-action", "x", "get",
            "description", "read", "tags", "crd", "responses", "200", "description", "OK", "put",
            "operationId", "replace", "x-kubernetes-group-version-kind", gvk, "x-kubernetes-action",
            "x", "put", "description", "replace", "tags", "crd", "parameters", params, "responses",
            "200", "description", "OK", "delete", "operationId", "delete",
            "x-kubernetes-group-version-kind", gvk, "x-kubernetes-action", "x", "delete",
            "description", "delete", "tags", "crd", "responses", "200", "description", "OK");
        if (op) {
            json_t *pa = json_object_get(op, "patch"), *pu = json_object_get(op, "put");
            json_object_set_new(pa, "x-kubernetes-action", json_string("patch"));
            json_object_set_new(json_object_get(op, "get"), "x-kubernetes-action",
                                json_string("get"));
            json_object_set_new(pu, "x-kubernetes-action", json_string("put"));
            json_object_set_new(json_object_get(op, "delete"), "x-kubernetes-action",
                                json_string("delete"));
            json_object_set_new(paths, item, op);
        }
        json_object_set_new(paths, coll,
                            json_pack("{s:{s:s,s:O,s:s,s:{s:{s:s}}}}", "get", "operationId", "list",
                                      "x-kubernetes-group-version-kind", gvk, "x-kubernetes-action",
                                      "list", "responses", "200", "description", "OK"));
        json_decref(params);
        json_decref(gvk);
    }
    if (!any) {
        json_decref(doc);
        return openapi_set_doc(kl->oa, path, NULL);
    }
    {
        json_t *needed = json_object();
        collect_refs(kl->oa, comps, needed);
        json_object_update_missing(comps, needed);
        json_decref(needed);
    }
    return openapi_set_doc(kl->oa, path, doc);
}

static bool crd_served(const json_t *crd, const char *version, const json_t **vout)
{
    size_t i;
    json_t *v;
    json_array_foreach(jget2(crd, "spec", "versions"), i, v)
    {
        if (strcmp(jstr_or(v, "name", ""), version) == 0 &&
            json_is_true(json_object_get(v, "served"))) {
            if (vout)
                *vout = v;
            return true;
        }
    }
    return false;
}

int kl_crd_activate(struct kl *kl, const json_t *crd)
{
    json_t *spec = json_object_get(crd, "spec"), *names = json_object_get(spec, "names");
    const char *group = jstr(spec, "group"), *plural = jstr(names, "plural");
    json_t *versions = json_object_get(spec, "versions"), *v, *touched = json_object();
    size_t i;
    int rc = 0;
    const char *preferred = NULL;

    if (!group || !plural || !touched) {
        json_decref(touched);
        return -EINVAL;
    }
    /* Versions no longer served go away (their watchers end). */
    for (i = 0; i < kl->ntypes;) {
        struct rtype *rt = kl->types[i];
        if (rt->crd && strcmp(rt->group, group) == 0 && strcmp(rt->plural, plural) == 0 &&
            !crd_served(crd, rt->version, NULL)) {
            json_object_set_new(touched, rt->version, json_true());
            kl_watch_remove_rtype(kl, rt);
            kl_rtype_remove(kl, rt);
            continue;
        }
        i++;
    }
    json_array_foreach(versions, i, v)
    {
        const char *vn = jstr(v, "name");
        if (vn && json_is_true(json_object_get(v, "served")) &&
            (!preferred || kl_version_cmp(vn, preferred) < 0))
            preferred = vn;
    }
    json_array_foreach(versions, i, v)
    {
        const char *vn = jstr(v, "name");
        struct rtype *rt;
        bool fresh = false;

        if (!vn || !json_is_true(json_object_get(v, "served")))
            continue;
        rt = kl_rtype_find(kl, group, vn, plural);
        if (!rt) {
            rt = calloc(1, sizeof(*rt));
            if (!rt) {
                rc = -ENOMEM;
                break;
            }
            fresh = true;
        } else {
            free(rt->kind);
            free(rt->singular);
            free(rt->list_kind);
            json_decref(rt->short_names);
            json_decref(rt->categories);
            json_decref(rt->schema);
            json_decref(rt->printer_columns);
        }
        if (fresh) {
            rt->group = strdup(group);
            rt->version = strdup(vn);
            rt->plural = strdup(plural);
        }
        rt->kind = strdup(jstr_or(names, "kind", ""));
        rt->singular = strdup(jstr_or(names, "singular", ""));
        rt->list_kind = strdup(jstr_or(names, "listKind", ""));
        rt->short_names = json_incref(json_object_get(names, "shortNames"));
        if (!rt->short_names)
            rt->short_names = json_array();
        rt->categories = json_incref(json_object_get(names, "categories"));
        if (!rt->categories)
            rt->categories = json_array();
        rt->schema = json_incref(json_object_get(v, "schema"));
        rt->printer_columns = json_incref(json_object_get(v, "additionalPrinterColumns"));
        rt->namespaced = strcmp(jstr_or(spec, "scope", "Namespaced"), "Namespaced") == 0;
        rt->has_status = json_object_get(jget2(v, "subresources", "status"), "") != NULL ||
                         json_is_object(jget2(v, "subresources", "status"));
        rt->has_scale = json_is_object(jget2(v, "subresources", "scale"));
        rt->generation = true;
        rt->crd = true;
        rt->verbs = V_ALL;
        rt->name_kind = VALIDATE_NAME_PATH;
        rt->preferred = preferred && strcmp(preferred, vn) == 0;
        if (!rt->group || !rt->version || !rt->plural || !rt->kind || !rt->singular ||
            !rt->list_kind) {
            if (fresh)
                kl_rtype_free(rt);
            rc = -ENOMEM;
            break;
        }
        if (fresh) {
            rc = kl_rtype_add(kl, rt);
            if (rc)
                break;
        }
        json_object_set_new(touched, vn, json_true());
    }
    {
        const char *vn;
        json_t *dummy;
        json_object_foreach(touched, vn, dummy)
        {
            int r = publish_doc(kl, group, vn);
            if (r && !rc)
                rc = r;
        }
    }
    json_decref(touched);
    return rc;
}

void kl_crd_deactivate(struct kl *kl, const json_t *crd)
{
    json_t *spec = json_object_get(crd, "spec");
    const char *group = jstr(spec, "group"), *plural = jstr(jget2(crd, "spec", "names"), "plural");
    struct rstore *st;
    json_t *versions = json_array();
    size_t i;
    json_t *v;

    if (!group || !plural) {
        json_decref(versions);
        return;
    }
    for (i = 0; i < kl->ntypes;) {
        struct rtype *rt = kl->types[i];
        if (rt->crd && strcmp(rt->group, group) == 0 && strcmp(rt->plural, plural) == 0) {
            json_array_append_new(versions, json_string(rt->version));
            kl_watch_remove_rtype(kl, rt);
            kl_rtype_remove(kl, rt);
            continue;
        }
        i++;
    }
    st = kl_store_get(kl, group, plural, false);
    if (st) {
        /* Every custom resource goes with its definition. */
        const char *key;
        json_t *obj, *keys = json_array();
        json_object_foreach(st->objs, key, obj) json_array_append_new(keys, json_string(key));
        json_array_foreach(keys, i, v)
            IGNORE_RESULT(kl_commit(kl, st, json_string_value(v), NULL, NULL));
        json_decref(keys);
    }
    json_array_foreach(versions, i, v) IGNORE_RESULT(publish_doc(kl, group, json_string_value(v)));
    json_decref(versions);
}
