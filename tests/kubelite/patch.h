/*
 * patch.h - the three patch formats the API server accepts on PATCH.
 *
 * All functions are pure: they never modify their inputs and return a new document in *out
 * (caller json_decref()s it) only on success. On failure they return a negative code and, when
 * msg is not NULL, write a one-line reason the way kube-apiserver words it (for a 422/400
 * Status message). Called on kubelite's loop thread; no shared state.
 */
#ifndef KUBELITE_PATCH_H
#define KUBELITE_PATCH_H

#include <jansson.h>
#include <stddef.h>

#include "core/err.h"

struct openapi;

/*
 * RFC 6902 JSON Patch. ops must be an array of operation objects (add, remove, replace, move,
 * copy, test), JSON Pointer paths with ~0/~1 escapes and "-" for append. Returns 0,
 * ERR_INVALID (malformed operation, path does not exist, failed test; msg says which op) or
 * -ENOMEM.
 */
int patch_json(const json_t *doc, const json_t *ops, json_t **out, char *msg, size_t msglen) WUR;

/* RFC 7386 JSON merge patch (null deletes, objects merge recursively, anything else replaces). */
int patch_merge(const json_t *doc, const json_t *patch, json_t **out, char *msg, size_t msglen) WUR;

/*
 * Kubernetes strategic merge patch, as kubectl sends it for built-in kinds. schema is the
 * OpenAPI v3 schema of the whole object (from openapi_gvk_schema); list and map behaviour comes
 * from x-kubernetes-patch-strategy ("merge", "retainKeys", "merge,retainKeys", "replace") and
 * x-kubernetes-patch-merge-key on each property, following $refs through oa. Supports the
 * directives $patch (merge|replace|delete, in maps and list items), $retainKeys,
 * $deleteFromPrimitiveList/<field>, $setElementOrder/<field>; null deletes a field. Lists
 * without a merge strategy are replaced. schema may be NULL (then it behaves like a merge
 * patch that also understands the directives).
 */
int patch_strategic(const json_t *doc, const json_t *patch, const struct openapi *oa,
                    const json_t *schema, json_t **out, char *msg, size_t msglen) WUR;

#endif
