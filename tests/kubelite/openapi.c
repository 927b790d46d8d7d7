#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/openapi.h"

struct oa_doc {
    char *path;
    char *body; /* served as is */
    char hash[17];
    json_t *doc; /* parsed on first use (start-up reads and hashes only) */
};

struct openapi {
    struct oa_doc *docs;
    size_t ndocs, cap;
    json_t *schemas; /* name -> schema (borrowed from docs, referenced here) */
    json_t *gvk;     /* "group/version/kind" -> schema */
};

struct openapi *openapi_new(void)
{
    struct openapi *oa = calloc(1, sizeof(*oa));
    if (!oa)
        return NULL;
    oa->schemas = json_object();
    oa->gvk = json_object();
    if (!oa->schemas || !oa->gvk) {
        openapi_free(oa);
        return NULL;
    }
    return oa;
}

void openapi_free(struct openapi *oa)
{
    if (!oa)
        return;
    for (size_t i = 0; i < oa->ndocs; i++) {
        free(oa->docs[i].path);
        free(oa->docs[i].body);
        json_decref(oa->docs[i].doc);
    }
    free(oa->docs);
    json_decref(oa->schemas);
    json_decref(oa->gvk);
    free(oa);
}

static void hash_hex(const char *s, char out[17])
{
    unsigned long long h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016llX", h);
}

/* Add one parsed document's schemas to the merged maps. */
static int index_doc(struct openapi *oa, const struct oa_doc *d)
{
    {
        json_t *schemas = json_object_get(json_object_get(d->doc, "components"), "schemas");
        const char *name;
        json_t *s;

        json_object_foreach(schemas, name, s)
        {
            json_t *gvks = json_object_get(s, "x-kubernetes-group-version-kind");
            size_t j;
            json_t *g;

            if (json_object_set(oa->schemas, name, s))
                return -ENOMEM;
            json_array_foreach(gvks, j, g)
            {
                char key[512];
                snprintf(key, sizeof(key), "%s/%s/%s", jstr_or(g, "group", ""),
                         jstr_or(g, "version", ""), jstr_or(g, "kind", ""));
                /* The first document that names a GVK is its home (DeleteOptions appears in many).
                 */
                if (!json_object_get(oa->gvk, key) && json_object_set(oa->gvk, key, s))
                    return -ENOMEM;
            }
        }
    }
    return 0;
}

/* Rebuild the merged maps from every parsed document (CRD changes only). */
static int reindex(struct openapi *oa)
{
    json_object_clear(oa->schemas);
    json_object_clear(oa->gvk);
    for (size_t i = 0; i < oa->ndocs; i++) {
        int rc;
        if (!oa->docs[i].doc)
            continue;
        rc = index_doc(oa, &oa->docs[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* Parse document i if it is not yet. Lookups are logically const; parsing is a cache fill. */
static int ensure_doc(struct openapi *oa, size_t i)
{
    json_error_t jerr;
    struct oa_doc *d = &oa->docs[i];
    if (d->doc)
        return 0;
    d->doc = json_loads(d->body, 0, &jerr);
    if (!d->doc) {
        log_error("msg=\"cannot parse openapi document\" path=%s line=%d error=\"%s\"", d->path,
                  jerr.line, jerr.text);
        return -EINVAL;
    }
    return index_doc(oa, d);
}

static void ensure_all(struct openapi *oa)
{
    for (size_t i = 0; i < oa->ndocs; i++)
        IGNORE_RESULT(ensure_doc(oa, i));
}

int openapi_set_doc(struct openapi *oa, const char *path, json_t *doc)
{
    size_t i;
    char *body = NULL;
    int rc = 0;

    for (i = 0; i < oa->ndocs; i++)
        if (strcmp(oa->docs[i].path, path) == 0)
            break;
    if (!doc) {
        if (i == oa->ndocs)
            return 0;
        free(oa->docs[i].path);
        free(oa->docs[i].body);
        json_decref(oa->docs[i].doc);
        oa->docs[i] = oa->docs[--oa->ndocs];
        return reindex(oa);
    }
    body = json_dumps(doc, JSON_COMPACT);
    if (!body) {
        rc = -ENOMEM;
        goto out;
    }
    if (i == oa->ndocs) {
        if (oa->ndocs == oa->cap) {
            size_t ncap = oa->cap ? oa->cap * 2 : 32;
            struct oa_doc *nd = realloc(oa->docs, ncap * sizeof(*nd));
            if (!nd) {
                rc = -ENOMEM;
                goto out;
            }
            oa->docs = nd;
            oa->cap = ncap;
        }
        oa->docs[i].path = strdup(path);
        if (!oa->docs[i].path) {
            rc = -ENOMEM;
            goto out;
        }
        oa->docs[i].doc = NULL;
        oa->docs[i].body = NULL;
        oa->ndocs++;
    }
    json_decref(oa->docs[i].doc);
    free(oa->docs[i].body);
    oa->docs[i].doc = doc;
    oa->docs[i].body = body;
    hash_hex(body, oa->docs[i].hash);
    doc = NULL;
    body = NULL;
    rc = reindex(oa);
out:
    json_decref(doc);
    free(body);
    return rc;
}

/* Register a built-in document from a file: read and hashed now, parsed on first use. */
static int add_raw(struct openapi *oa, const char *path, const char *file)
{
    FILE *f = fopen(file, "rb");
    long n;
    char *body;
    struct oa_doc *d;

    if (!f)
        return -errno;
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return -EIO;
    }
    body = malloc((size_t)n + 1);
    if (!body || fread(body, 1, (size_t)n, f) != (size_t)n) {
        free(body);
        fclose(f);
        return body ? -EIO : -ENOMEM;
    }
    fclose(f);
    body[n] = '\0';
    if (oa->ndocs == oa->cap) {
        size_t ncap = oa->cap ? oa->cap * 2 : 32;
        struct oa_doc *nd = realloc(oa->docs, ncap * sizeof(*nd));
        if (!nd) {
            free(body);
            return -ENOMEM;
        }
        oa->docs = nd;
        oa->cap = ncap;
    }
    d = &oa->docs[oa->ndocs];
    d->path = strdup(path);
    if (!d->path) {
        free(body);
        return -ENOMEM;
    }
    d->body = body;
    d->doc = NULL;
    hash_hex(body, d->hash);
    oa->ndocs++;
    return 0;
}

int openapi_load_dir(const char *dir, struct openapi **out)
{
    struct openapi *oa = openapi_new();
    DIR *d = NULL;
    struct dirent *de;
    int rc = 0, n = 0;

    if (!oa)
        return -ENOMEM;
    d = opendir(dir);
    if (!d) {
        rc = -errno;
        goto out;
    }
    while ((de = readdir(d))) {
        char file[4096], path[512];
        const char *suffix = "_openapi.json";
        size_t len = strlen(de->d_name), sl = strlen(suffix);
        char *p;

        if (len <= sl || strcmp(de->d_name + len - sl, suffix) != 0)
            continue;
        snprintf(file, sizeof(file), "%s/%s", dir, de->d_name);
        /* "apis__apps__v1_openapi.json" -> "apis/apps/v1" */
        snprintf(path, sizeof(path), "%.*s", (int)(len - sl), de->d_name);
        while ((p = strstr(path, "__")))
            memmove(p + 1, p + 2, strlen(p + 2) + 1), *p = '/';
        rc = add_raw(oa, path, file);
        if (rc)
            goto out;
        n++;
    }
    if (n == 0)
        rc = -ENOENT;
out:
    if (d)
        closedir(d);
    if (rc)
        openapi_free(oa);
    else
        *out = oa;
    return rc;
}

const json_t *openapi_schema(const struct openapi *oa, const char *name)
{
    const json_t *s;
    if (!oa)
        return NULL;
    s = json_object_get(oa->schemas, name);
    if (!s) {
        ensure_all((struct openapi *)oa);
        s = json_object_get(oa->schemas, name);
    }
    return s;
}

const json_t *openapi_resolve(const struct openapi *oa, const json_t *schema)
{
    for (int depth = 0; schema && depth < 8; depth++) {
        const char *ref = json_string_value(json_object_get(schema, "$ref"));
        json_t *all = json_object_get(schema, "allOf");

        if (!ref && json_array_size(all) == 1)
            ref = json_string_value(json_object_get(json_array_get(all, 0), "$ref"));
        if (!ref)
            return schema;
        if (strncmp(ref, "#/components/schemas/", 21) != 0 || !oa)
            return NULL;
        schema = openapi_schema(oa, ref + 21);
    }
    return schema;
}

const json_t *openapi_gvk_schema(const struct openapi *oa, const char *group, const char *version,
                                 const char *kind)
{
    char key[512], path[512];
    const json_t *s;
    if (!oa)
        return NULL;
    snprintf(key, sizeof(key), "%s/%s/%s", group ? group : "", version, kind);
    s = json_object_get(oa->gvk, key);
    if (s)
        return s;
    /* Parse the group-version's own document first, everything else only if needed. */
    if (group && *group)
        snprintf(path, sizeof(path), "apis/%s/%s", group, version);
    else
        snprintf(path, sizeof(path), "api/%s", version);
    for (size_t i = 0; i < oa->ndocs; i++)
        if (strcmp(oa->docs[i].path, path) == 0)
            IGNORE_RESULT(ensure_doc((struct openapi *)oa, i));
    s = json_object_get(oa->gvk, key);
    if (!s) {
        ensure_all((struct openapi *)oa);
        s = json_object_get(oa->gvk, key);
    }
    return s;
}

char *openapi_index_json(const struct openapi *oa)
{
    json_t *idx = json_object(), *paths = json_object();
    char *out;

    json_object_set_new(idx, "paths", paths);
    for (size_t i = 0; i < oa->ndocs; i++) {
        char url[600];
        snprintf(url, sizeof(url), "/openapi/v3/%s?hash=%s", oa->docs[i].path, oa->docs[i].hash);
        json_object_set_new(paths, oa->docs[i].path, json_pack("{s:s}", "serverRelativeURL", url));
    }
    out = json_dumps(idx, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(idx);
    return out;
}

const char *openapi_doc_body(const struct openapi *oa, const char *path, const char **hash)
{
    for (size_t i = 0; i < oa->ndocs; i++) {
        if (strcmp(oa->docs[i].path, path) == 0) {
            if (hash)
                *hash = oa->docs[i].hash;
            return oa->docs[i].body;
        }
    }
    return NULL;
}
