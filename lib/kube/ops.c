/*
 * ops.c - resource paths, typed request helpers and read-modify-write with conflict retry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pct.h"
#include "kube/kube_int.h"

#define UPDATE_ATTEMPTS 5

/* Append s percent-escaped as one path segment (RFC 3986 unreserved and ':' kept). */
static int put_segment(struct buf *b, const char *s)
{
    if (!*s)
        return -EINVAL;
    return pct_encode_buf(b, s, ":");
}

int kube_path(const struct kube_resource *res, const char *ns, const char *name, const char *sub,
              char *out, size_t outlen)
{
    struct buf b;
    int rc;

    if (!res || !res->version || !res->plural || !res->plural[0] || (sub && !name))
        return -EINVAL;
    if (res->namespaced && name && (!ns || !*ns))
        return -EINVAL;
    buf_init(&b);
    if (res->group && res->group[0])
        rc = buf_printf(&b, "/apis/%s/%s", res->group, res->version);
    else
        rc = buf_printf(&b, "/api/%s", res->version);
    if (!rc && res->namespaced && ns && *ns) {
        rc = buf_puts(&b, "/namespaces/");
        if (!rc)
            rc = put_segment(&b, ns);
    }
    if (!rc)
        rc = buf_printf(&b, "/%s", res->plural);
    if (!rc && name) {
        rc = buf_puts(&b, "/");
        if (!rc)
            rc = put_segment(&b, name);
    }
    if (!rc && sub) {
        rc = buf_puts(&b, "/");
        if (!rc)
            rc = put_segment(&b, sub);
    }
    if (!rc && b.len >= outlen)
        rc = -ENAMETOOLONG;
    if (!rc)
        memcpy(out, b.p, b.len + 1);
    buf_release(&b);
    return rc;
}

int kube_get(struct kube_client *c, const struct kube_resource *res, const char *ns,
             const char *name, kube_response_fn *cb, void *arg)
{
    char path[2048];
    int rc = kube_path(res, ns, name, NULL, path, sizeof(path));
    if (!rc && !name)
        rc = -EINVAL;
    if (!rc)
        rc = kube_request(c, "GET", path, NULL, NULL, cb, arg, NULL);
    return rc;
}

int kube_list(struct kube_client *c, const struct kube_resource *res, const char *ns,
              const char *query, kube_response_fn *cb, void *arg)
{
    char path[4096];
    size_t n;
    int rc = kube_path(res, ns, NULL, NULL, path, sizeof(path));
    if (rc)
        return rc;
    n = strlen(path);
    if (query && *query) {
        int w = snprintf(path + n, sizeof(path) - n, "?%s", query);
        if (w < 0 || (size_t)w >= sizeof(path) - n)
            return -ENAMETOOLONG;
    }
    return kube_request(c, "GET", path, NULL, NULL, cb, arg, NULL);
}

int kube_create(struct kube_client *c, const struct kube_resource *res, const char *ns,
                const json_t *obj, kube_response_fn *cb, void *arg)
{
    char path[2048];
    int rc = kube_path(res, ns, NULL, NULL, path, sizeof(path));
    if (!rc && !obj)
        rc = -EINVAL;
    if (!rc)
        rc = kube_request(c, "POST", path, obj, NULL, cb, arg, NULL);
    return rc;
}

int kube_update(struct kube_client *c, const struct kube_resource *res, const char *ns,
                const char *name, const json_t *obj, kube_response_fn *cb, void *arg)
{
    char path[2048];
    int rc = kube_path(res, ns, name, NULL, path, sizeof(path));
    if (!rc && (!name || !obj))
        rc = -EINVAL;
    if (!rc)
        rc = kube_request(c, "PUT", path, obj, NULL, cb, arg, NULL);
    return rc;
}

int kube_patch(struct kube_client *c, const struct kube_resource *res, const char *ns,
               const char *name, enum kube_patch_type type, const json_t *patch,
               kube_response_fn *cb, void *arg)
{
    char path[2048];
    int rc = kube_path(res, ns, name, NULL, path, sizeof(path));
    if (!rc && (!name || !patch))
        rc = -EINVAL;
    if (!rc)
        rc = kube_request(c, "PATCH", path, patch,
                          type == KUBE_PATCH_JSON ? "application/json-patch+json"
                                                  : "application/merge-patch+json",
                          cb, arg, NULL);
    return rc;
}

int kube_apply(struct kube_client *c, const struct kube_resource *res, const char *ns,
               const char *name, const json_t *obj, const char *field_manager, bool force,
               kube_response_fn *cb, void *arg)
{
    char path[2048];
    struct buf b;
    int rc = kube_path(res, ns, name, NULL, path, sizeof(path));

    if (!rc && (!name || !obj || !field_manager || !*field_manager))
        rc = -EINVAL;
    if (rc)
        return rc;
    buf_init(&b);
    rc = buf_printf(&b, "%s?fieldManager=", path);
    if (!rc)
        rc = put_segment(&b, field_manager);
    if (!rc && force)
        rc = buf_puts(&b, "&force=true");
    if (!rc)
        rc = kube_request(c, "PATCH", b.p, obj, "application/apply-patch+yaml", cb, arg, NULL);
    buf_release(&b);
    return rc;
}

int kube_delete(struct kube_client *c, const struct kube_resource *res, const char *ns,
                const char *name, kube_response_fn *cb, void *arg)
{
    char path[2048];
    json_t *opts;
    int rc = kube_path(res, ns, name, NULL, path, sizeof(path));

    if (!rc && !name)
        rc = -EINVAL;
    if (rc)
        return rc;
    opts = json_pack("{s:s,s:s,s:s}", "kind", "DeleteOptions", "apiVersion", "v1",
                     "propagationPolicy", "Background");
    if (!opts)
        return -ENOMEM;
    rc = kube_request(c, "DELETE", path, opts, NULL, cb, arg, NULL);
    json_decref(opts);
    return rc;
}

/* ---- read-modify-write ------------------------------------------------------------------ */

struct rmw {
    struct kube_client *c;
    char path[2048];
    char put_path[2048];
    kube_mutate_fn *mutate;
    void *mutate_arg;
    kube_response_fn *cb;
    void *arg;
    int attempts;
};

static void rmw_finish(struct rmw *r, int err, long status, json_t *body)
{
    r->cb(r->arg, err, status, body);
    free(r);
}

static void rmw_on_get(void *arg, int err, long status, json_t *body);

static void rmw_on_put(void *arg, int err, long status, json_t *body)
{
    struct rmw *r = arg;
    int rc;

    if (!err && status == 409 && r->attempts < UPDATE_ATTEMPTS &&
        kube_result_err(0, status, body) == ERR_CONFLICT) {
        rc = kube_request(r->c, "GET", r->path, NULL, NULL, rmw_on_get, r, NULL);
        if (!rc)
            return;
        rmw_finish(r, rc, 0, NULL);
        return;
    }
    rmw_finish(r, err, status, body);
}

static void rmw_on_get(void *arg, int err, long status, json_t *body)
{
    struct rmw *r = arg;
    json_t *copy = NULL;
    int rc;

    r->attempts++;
    if (err || status != 200 || !json_is_object(body)) {
        rmw_finish(r, err, status, body);
        return;
    }
    copy = json_deep_copy(body);
    if (!copy) {
        rmw_finish(r, -ENOMEM, 0, NULL);
        return;
    }
    rc = r->mutate(r->mutate_arg, copy);
    if (rc == 1) {
        rmw_finish(r, 0, status, body);
    } else if (rc < 0) {
        rmw_finish(r, rc, 0, NULL);
    } else {
        rc = kube_request(r->c, "PUT", r->put_path, copy, NULL, rmw_on_put, r, NULL);
        if (rc)
            rmw_finish(r, rc, 0, NULL);
    }
    json_decref(copy);
}

int kube_update_retry(struct kube_client *c, const struct kube_resource *res, const char *ns,
                      const char *name, const char *sub, kube_mutate_fn *mutate, void *mutate_arg,
                      kube_response_fn *cb, void *arg)
{
    struct rmw *r;
    int rc;

    if (!name || !mutate || !cb)
        return -EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->c = c;
    r->mutate = mutate;
    r->mutate_arg = mutate_arg;
    r->cb = cb;
    r->arg = arg;
    rc = kube_path(res, ns, name, NULL, r->path, sizeof(r->path));
    if (!rc)
        rc = kube_path(res, ns, name, sub, r->put_path, sizeof(r->put_path));
    if (!rc)
        rc = kube_request(c, "GET", r->path, NULL, NULL, rmw_on_get, r, NULL);
    if (rc)
        free(r);
    return rc;
}
