/*
 * openapi.h - the OpenAPI v3 documents kubelite serves and validates against.
 *
 * Built-in group-versions come from the official documents (tests/kubelite/openapi/, copies of
 * Kubernetes release-1.33 api/openapi-spec/v3). Every CRD version adds a generated document.
 * All component schemas are merged into one name -> schema map, so a "$ref" from any document
 * resolves. The struct is owned by the server's loop thread; returned pointers are borrowed and
 * stay valid until the next openapi_set_doc() for that path or openapi_free().
 */
#ifndef KUBELITE_OPENAPI_H
#define KUBELITE_OPENAPI_H

#include <jansson.h>
#include <stddef.h>

#include "core/err.h"

struct openapi;

/* Load every *_openapi.json in dir. Returns 0, -ENOENT (no documents) or -ENOMEM/-EINVAL. */
int openapi_load_dir(const char *dir, struct openapi **out) WUR;
/* An empty set (for unit tests that add their own schemas). */
struct openapi *openapi_new(void);
void openapi_free(struct openapi *oa);

/*
 * Add or replace the served document for path ("api/v1", "apis/<g>/<v>"); consumes doc, even on
 * failure. doc == NULL removes it. Its components.schemas join the global map.
 */
int openapi_set_doc(struct openapi *oa, const char *path, json_t *doc) WUR;

/* Follow "$ref" and a single-element "allOf":[{"$ref"}] wrapper. NULL-safe; oa may be NULL. */
const json_t *openapi_resolve(const struct openapi *oa, const json_t *schema);
/* A named component schema ("io.k8s.api.core.v1.Pod"), or NULL. */
const json_t *openapi_schema(const struct openapi *oa, const char *name);
/* The schema whose x-kubernetes-group-version-kind names group/version/kind (group "" = core). */
const json_t *openapi_gvk_schema(const struct openapi *oa, const char *group, const char *version,
                                 const char *kind);

/* Serving: the /openapi/v3 index body (caller frees), and one document's body and hash. */
char *openapi_index_json(const struct openapi *oa);
/* Returns the serialized document for path or NULL; *hash gets its content hash (borrowed). */
const char *openapi_doc_body(const struct openapi *oa, const char *path, const char **hash);

#endif
