/*
 * jpatch.c - JSON Pointer escaping, mutations recorded as JSON Patch operations, base64.
 *
 * Injection mutates a working copy of the pod and, through these helpers, records each change
 * as the RFC 6902 operation that performs it. Paths are computed against the working copy at
 * the moment of the change, so the recorded patch replays in order to exactly that copy.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "webhook/webhook_int.h"

int webhook__ptr_append(struct buf *b, const char *token)
{
    int rc = buf_puts(b, "/");

    for (const char *s = token; rc == 0 && *s; s++) {
        if (*s == '~')
            rc = buf_puts(b, "~0");
        else if (*s == '/')
            rc = buf_puts(b, "~1");
        else
            rc = buf_append(b, s, 1);
    }
    return rc;
}

/*
 * Append {"op":op,"path":path,"value":value}, sharing value with the pod it is put into: injection
 * never changes an object after inserting it (the golden and corpus tests apply the recorded
 * patch to the input and compare with the injected pod, which would catch it). Borrows value.
 */
static int record(json_t *ops, const char *op, const char *path, const json_t *value)
{
    json_t *o = json_pack("{s:s,s:s,s:O}", "op", op, "path", path, "value", value);

    if (!o || json_array_append_new(ops, o) < 0)
        return -ENOMEM;
    return 0;
}

static int member_op(json_t *ops, const char *op, json_t *parent, const char *parent_ptr,
                     const char *key, json_t *value)
{
    struct buf path;
    int rc;

    buf_init(&path);
    rc = buf_puts(&path, parent_ptr);
    if (rc == 0)
        rc = webhook__ptr_append(&path, key);
    if (rc == 0)
        rc = record(ops, op, path.p, value);
    if (rc == 0 && json_object_set(parent, key, value) < 0)
        rc = -ENOMEM;
    json_decref(value);
    buf_release(&path);
    return rc;
}

int webhook__op_add(json_t *ops, json_t *parent, const char *parent_ptr, const char *key,
                    json_t *value)
{
    return member_op(ops, "add", parent, parent_ptr, key, value);
}

int webhook__op_replace(json_t *ops, json_t *parent, const char *parent_ptr, const char *key,
                        json_t *value)
{
    return member_op(ops, "replace", parent, parent_ptr, key, value);
}

int webhook__op_insert(json_t *ops, json_t *array, const char *array_ptr, size_t index,
                       json_t *value)
{
    struct buf path;
    size_t n = json_array_size(array);
    int rc;

    buf_init(&path);
    if (index >= n)
        rc = buf_printf(&path, "%s/-", array_ptr);
    else
        rc = buf_printf(&path, "%s/%zu", array_ptr, index);
    if (rc == 0)
        rc = record(ops, "add", path.p, value);
    if (rc == 0 &&
        (index >= n ? json_array_append(array, value) : json_array_insert(array, index, value)) < 0)
        rc = -ENOMEM;
    json_decref(value);
    buf_release(&path);
    return rc;
}

int webhook__op_remove(json_t *ops, json_t *parent, const char *parent_ptr, const char *key)
{
    struct buf path;
    json_t *o;
    int rc;

    buf_init(&path);
    rc = buf_puts(&path, parent_ptr);
    if (rc == 0)
        rc = webhook__ptr_append(&path, key);
    if (rc == 0) {
        o = json_pack("{s:s,s:s}", "op", "remove", "path", path.p);
        if (!o || json_array_append_new(ops, o) < 0)
            rc = -ENOMEM;
    }
    if (rc == 0)
        json_object_del(parent, key);
    buf_release(&path);
    return rc;
}
