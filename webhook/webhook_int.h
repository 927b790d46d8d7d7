/*
 * webhook_int.h - internals shared by the webhook module files (and its unit tests). Not for other
 * modules.
 */
#ifndef WEFT_WEBHOOK_INT_H
#define WEFT_WEBHOOK_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/diag.h"
#include "core/err.h"

/* Fixed names and numbers (DESIGN.md "Ports"). */
#define WEBHOOK_PROXY_UID 1337
#define WEBHOOK_PORT_OUTBOUND 15001
#define WEBHOOK_PORT_INBOUND 15006
#define WEBHOOK_PORT_HEALTH 15020
#define WEBHOOK_PORT_METRICS 15090
#define WEBHOOK_CA_CONFIGMAP "weft-root-ca"
#define WEBHOOK_TOKEN_AUDIENCE "weft"

/* Annotations Weft reads or writes. */
#define WEBHOOK_A_INJECT "weft.dev/inject"
#define WEBHOOK_A_STATUS "weft.dev/status"
#define WEBHOOK_A_PROBES "weft.dev/original-probes"
#define WEBHOOK_A_REWRITE "weft.dev/rewrite-app-probes"
#define WEBHOOK_A_ACCESS_LOG "weft.dev/access-log"
#define WEBHOOK_A_CPU "weft.dev/proxy-cpu"
#define WEBHOOK_A_MEM "weft.dev/proxy-memory"
#define WEBHOOK_A_CPU_LIMIT "weft.dev/proxy-cpu-limit"
#define WEBHOOK_A_MEM_LIMIT "weft.dev/proxy-memory-limit"
#define WEBHOOK_A_IN_PORTS "traffic.weft.dev/include-inbound-ports"
#define WEBHOOK_A_EX_IN_PORTS "traffic.weft.dev/exclude-inbound-ports"
#define WEBHOOK_A_EX_OUT_PORTS "traffic.weft.dev/exclude-outbound-ports"
#define WEBHOOK_A_IN_RANGES "traffic.weft.dev/include-outbound-ip-ranges"
#define WEBHOOK_A_EX_RANGES "traffic.weft.dev/exclude-outbound-ip-ranges"
#define WEBHOOK_A_DEFAULT_CONTAINER "kubectl.kubernetes.io/default-container"

/* ---- JSON Pointer and recorded mutations (jpatch.c) ---- */

/* Append "/" and token with RFC 6901 escapes (~ -> ~0, / -> ~1) to b. */
int webhook__ptr_append(struct buf *b, const char *token) WUR;

/*
 * Each op function applies one mutation to the working document (parent lives inside it, at
 * JSON Pointer parent_ptr) and appends the matching RFC 6902 operation to ops, with a deep copy
 * of the value. They consume value, even on failure. Returns 0 or -ENOMEM.
 */
/* parent[key] = value, op "add" (object member; replaces an existing one). */
int webhook__op_add(json_t *ops, json_t *parent, const char *parent_ptr, const char *key,
                    json_t *value) WUR;
/* Insert value into array before index (index >= size: append, path ".../-"). */
int webhook__op_insert(json_t *ops, json_t *array, const char *array_ptr, size_t index,
                       json_t *value) WUR;
/* parent[key] = value for an existing key, op "replace". */
int webhook__op_replace(json_t *ops, json_t *parent, const char *parent_ptr, const char *key,
                        json_t *value) WUR;
/* Delete the existing member parent[key], op "remove". */
int webhook__op_remove(json_t *ops, json_t *parent, const char *parent_ptr, const char *key) WUR;

/* ---- annotation values (annot.c) ---- */

/*
 * Validate a comma-separated port list (spaces around items allowed, "" means none; "*" only
 * when allow_star). Writes the normalised list ("80,8080", "*" or "") to norm. ERR_INVALID with
 * a message naming annot; -ENOMEM.
 */
int webhook__ports_parse(const char *annot, const char *value, bool allow_star, struct buf *norm,
                         struct diag *diag) WUR;
/* Same for a list of IPv4/IPv6 CIDRs ("10.0.0.0/8,fd00::/8"). */
int webhook__cidrs_parse(const char *annot, const char *value, bool allow_star, struct buf *norm,
                         struct diag *diag) WUR;
/*
 * Parse a non-negative Kubernetes quantity ("100m", "1.5Gi", "2e3") to a double in base units.
 * Returns 0 or ERR_INVALID.
 */
int webhook__quantity_parse(const char *s, double *out) WUR;
/* "true" -> 1, "false" -> 0, anything else ERR_INVALID with a message naming annot. */
int webhook__bool_parse(const char *annot, const char *value, bool *out, struct diag *diag) WUR;

struct inject_config;
struct webhook_result;

/* webhook_pod_inject on a pod the caller gives up (consumed, even on failure; mutated). */
int webhook__pod_inject_owned(const struct inject_config *cfg, json_t *pod, const char *ns,
                              struct webhook_result *res, struct diag *diag) WUR;

#endif
