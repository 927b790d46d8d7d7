/*
 * table.h - meta.k8s.io/v1 Table responses for `kubectl get`.
 */
#ifndef KUBELITE_TABLE_H
#define KUBELITE_TABLE_H

#include <jansson.h>
#include <time.h>

#include "core/err.h"

/*
 * Build a Table for items (an array of full objects, borrowed) of resource `resource` (plural,
 * group "" for core). printer_columns: for custom resources, the CRD version's
 * additionalPrinterColumns (may be NULL: then NAME and AGE); built-ins use the columns
 * kube-apiserver prints (pods: NAME READY STATUS RESTARTS AGE; services: NAME TYPE CLUSTER-IP
 * EXTERNAL-IP PORT(S) AGE; deployments: NAME READY UP-TO-DATE AVAILABLE AGE; ...; others NAME,
 * AGE or NAME, DATA, AGE as kubectl shows). list_meta (borrowed) becomes the Table's metadata.
 * include_object: "Object" (full object in each row), "Metadata" (PartialObjectMetadata) or
 * "None". now is the reference time for AGE ("5m", "3h12m", "2d" as kubectl's
 * duration.HumanDuration prints). Returns the Table (caller decrefs) or NULL on -ENOMEM.
 */
json_t *table_build(const char *group, const char *resource, const json_t *printer_columns,
                    const json_t *items, const json_t *list_meta, const char *include_object,
                    time_t now);

/* kubectl's HumanDuration for d seconds ("0s", "45s", "5m12s", "3h", "2d5h", "3y"). */
void table_human_duration(long long d, char *out, size_t outlen);

/*
 * Evaluate a simple JSONPath as used in additionalPrinterColumns (".spec.service",
 * ".status.conditions[?(@.type==\"Accepted\")].status", ".spec.backends[*].service", ".a[0]")
 * on obj. Returns a new reference to the result (several matches -> array) or NULL.
 */
json_t *table_jsonpath(const json_t *obj, const char *path);

#endif
