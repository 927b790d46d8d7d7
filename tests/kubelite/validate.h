/*
 * validate.h - validating objects against OpenAPI v3 schemas, as kube-apiserver does.
 *
 * Used for built-in kinds (schema from the official documents, through openapi_gvk_schema) and
 * for custom resources (the CRD version's openAPIV3Schema, structural). Called on kubelite's
 * loop thread.
 */
#ifndef KUBELITE_VALIDATE_H
#define KUBELITE_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>

#include "core/err.h"

struct openapi;

enum validate_flags {
    VALIDATE_DEFAULTS = 1 << 0, /* apply "default" values in place (CRDs) */
    VALIDATE_PRUNE = 1 << 1,    /* drop fields the schema does not declare, in place, unless
                                   x-kubernetes-preserve-unknown-fields (CRDs; built-ins too,
                                   since a real server's decoder drops unknown fields) */
};

/*
 * Validate obj (modified in place only as flags say) against schema, following $refs through oa
 * (oa may be NULL for self-contained CRD schemas). metadata, apiVersion and kind at the top
 * level are checked by the caller, not here; the schema of metadata is still honoured for
 * unknown-field detection.
 *
 * causes: if not NULL, each problem is appended as a Kubernetes StatusCause object
 *   {"reason": "FieldValueInvalid"|"FieldValueRequired"|"FieldValueNotSupported"|
 *    "FieldValueTypeInvalid"|"FieldValueTooLong"|"FieldValueTooMany", "message": "...",
 *    "field": "spec.replicas"}
 *   with messages worded as kube-apiserver words them, e.g. (shown as "<field>: <message>")
 *   spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"
 *   spec.action: Unsupported value: "Maybe": supported values: "Allow", "Deny", "Audit"
 *   spec.backends: Required value
 *   spec.weight: Invalid value: 2000000: spec.weight in body should be less than or equal to
 * 1000000 As in a real StatusCause, "message" is the part after "<field>: "
 * (field.Error.ErrorBody()); the full error text (Status.message, "[a, b]" when several) is field +
 * ": " + message. anyOf/oneOf/allOf/not failures have field "<nil>", as apiextensions reports them.
 *   With VALIDATE_PRUNE, a null in a non-nullable property without a default is dropped (and
 *   defaulted with VALIDATE_DEFAULTS) before validation, as structural defaulting does.
 * unknown: if not NULL, the path of each undeclared field is appended as a string such as
 *   ".spec.foo" or ".spec.containers[0].bar" (found before pruning).
 *
 * Supports type (object/array/string/integer/number/boolean), format int32/int64, nullable,
 * required, properties, additionalProperties (bool or schema), items, enum, minimum/maximum
 * (and exclusive), minLength/maxLength, pattern (POSIX ERE translation of the usual subset),
 * minItems/maxItems, uniqueItems, minProperties/maxProperties, x-kubernetes-int-or-string,
 * x-kubernetes-preserve-unknown-fields, x-kubernetes-embedded-resource, anyOf/oneOf/allOf
 * of value constraints. Returns 0 when valid, ERR_INVALID when causes were added, -ENOMEM.
 */
int validate_object(const struct openapi *oa, const json_t *schema, json_t *obj, unsigned flags,
                    json_t *causes, json_t *unknown) WUR;

/*
 * Object names. kind: VALIDATE_NAME_SUBDOMAIN (RFC 1123 subdomain, most kinds),
 * VALIDATE_NAME_LABEL (RFC 1123 label: namespaces, services), VALIDATE_NAME_PATH (anything but
 * "/", "%", "." and ".."; RBAC, CRs by default). Returns true when valid; otherwise writes
 * kube-apiserver's message (e.g. 'a lowercase RFC 1123 subdomain must consist of ...') to msg,
 * several (each one cause on a real server) joined by "; ".
 */
enum validate_name_kind { VALIDATE_NAME_SUBDOMAIN, VALIDATE_NAME_LABEL, VALIDATE_NAME_PATH };
bool validate_name(const char *name, enum validate_name_kind kind, char *msg, size_t msglen);

/* Label keys and values, annotation size: appends causes for metadata.labels/annotations. */
void validate_metadata_maps(const json_t *metadata, json_t *causes);

#endif
