/*
 * ssa.h - server-side apply and managedFields, after Kubernetes' structured-merge-diff.
 *
 * Each object carries metadata.managedFields: entries {manager, operation ("Apply"|"Update"),
 * apiVersion, time, fieldsType:"FieldsV1", fieldsV1, subresource?}, where fieldsV1 is the set
 * of owned fields in the real encoding ("f:spec": {"f:replicas": {}}, list items by key
 * "k:{\"name\":\"app\"}", by value "v:\"x\"", by index "i:0", "." for the item itself). List
 * and map semantics come from the schema: x-kubernetes-list-type (atomic|set|map),
 * x-kubernetes-list-map-keys, x-kubernetes-map-type, and for built-ins also
 * x-kubernetes-patch-merge-key; $refs are followed through oa (may be NULL for CRD schemas).
 * Pure functions on the loop thread; inputs are never modified.
 */
#ifndef KUBELITE_SSA_H
#define KUBELITE_SSA_H

#include <jansson.h>
#include <stdbool.h>

#include "core/err.h"

struct openapi;

/*
 * Apply `applied` (the full intent of manager, as sent) to `live` (NULL when the object does
 * not exist yet). The result is live with: every field manager owned before but no longer
 * applies removed (unless another manager also owns it), every applied field set, and
 * managedFields updated (the manager's Apply entry replaced by exactly the applied field set;
 * fields taken over with force removed from their previous owners; empty entries dropped).
 * metadata.managedFields in applied is ignored; metadata.resourceVersion in applied, when set,
 * must match live's (else ERR_CONFLICT with no conflicts added, the caller answers 409
 * Conflict). now is the RFC 3339 timestamp for the entry.
 *
 * Conflicts: when force is false and applied sets a field to a value different from live's
 * while another manager owns that field, nothing is changed, ERR_CONFLICT is returned and each
 * conflicting field appended to conflicts as {"reason":"FieldManagerConflict",
 * "message":"conflict with \"kubectl-client-side-apply\" using apps/v1","field":".spec.replicas"}.
 * Returns 0, ERR_CONFLICT, ERR_INVALID (applied is not an object, msg says why), -ENOMEM.
 */
int ssa_apply(const json_t *live, const json_t *applied, const char *manager, bool force,
              const struct openapi *oa, const json_t *schema, const char *now, json_t **out,
              json_t *conflicts, char *msg, size_t msglen) WUR;

/*
 * Record an ordinary write (create, update, patch) by manager on newobj, in place: the fields
 * whose values differ between old (NULL on create) and newobj become owned by manager with
 * operation Update (merged into its existing Update entry for the same apiVersion and
 * subresource), and are removed from every other manager's set. On create every field set in
 * newobj is owned. subresource is "" or "status". Status, metadata.uid/resourceVersion/
 * generation/creationTimestamp/managedFields are never tracked (kube does not track them either
 * except status under the status subresource). Returns 0 or -ENOMEM.
 */
int ssa_update(const json_t *old, json_t *newobj, const char *manager, const char *subresource,
               const struct openapi *oa, const json_t *schema, const char *now) WUR;

#endif
