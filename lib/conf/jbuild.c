/*
 * jbuild.c - the first-error document builder of jbuild.h.
 */
#include "conf/jbuild.h"

void jbuild_fail(struct jbuild *b, int rc)
{
    if (!b->rc && rc < 0)
        b->rc = rc;
}

json_t *jbuild_new(struct jbuild *b, json_t *v)
{
    if (!v)
        jbuild_fail(b, -ENOMEM);
    return v;
}

void jbuild_set(struct jbuild *b, json_t *obj, const char *key, json_t *v)
{
    if (b->rc || !obj || !v) {
        jbuild_fail(b, -ENOMEM);
        json_decref(v);
        return;
    }
    if (json_object_set_new(obj, key, v) < 0) /* consumes v either way */
        jbuild_fail(b, -ENOMEM);
}

void jbuild_set_ref(struct jbuild *b, json_t *obj, const char *key, json_t *v)
{
    jbuild_set(b, obj, key, json_incref(v));
}

void jbuild_append(struct jbuild *b, json_t *arr, json_t *v)
{
    if (b->rc || !arr || !v) {
        jbuild_fail(b, -ENOMEM);
        json_decref(v);
        return;
    }
    if (json_array_append_new(arr, v) < 0)
        jbuild_fail(b, -ENOMEM);
}

int jbuild_end(struct jbuild *b, json_t **v)
{
    if (!b->rc && !*v)
        b->rc = -ENOMEM;
    if (b->rc) {
        json_decref(*v);
        *v = NULL;
    }
    return b->rc;
}
