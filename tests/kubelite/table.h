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
 *
 * Details, as kube-apiserver does them:
 * - Priority-1 ("wide") columns are always present; cells are strings, integers or null.
 * - Which convertor: a built-in printer for (group, resource) when there is one (pods,
 *   services, deployments, replicasets, namespaces, configmaps, secrets, serviceaccounts,
 *   endpointslices, events, leases, webhook configurations, role/clusterrole bindings); else
 *   the CRD convertor when printer_columns is an array or the group is not one kube serves
 *   itself ("" , apps, batch, autoscaling, policy, *.k8s.io); else the generic convertor's
 *   Name + "Created At" (type date, RFC 3339 UTC) - e.g. roles, clusterroles, CRDs, nodes.
 * - CRD columns: Name, then each printer column (none declared: Age, type date, over
 *   .metadata.creationTimestamp). Only the first JSONPath result is used; "string" columns
 *   print lists and maps as compact JSON; a type mismatch or no result gives a null cell.
 * - include_object NULL (or unknown) means Metadata; with "None" rows have no "object". Rows of
 *   Succeeded/Failed pods carry the "Completed" row condition.
 * - Objects are referenced, not copied: do not modify items while the Table is alive.
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
 * Supported (client-go jsonpath semantics): optional {} and leading $ or @, .field with \.
 * escapes, ['key'], [n], [-n], [a:b:c], [*], .*, ..field, and filters [?(@.x OP literal)] with
 * == != < > <= >= on strings, numbers, booleans, or [?(@.x)] (exists). NULL for no match and for
 * what kube reports as an error (index out of range, indexing a non-list, comparing different
 * types, unions [a,b], syntax errors).
 */
json_t *table_jsonpath(const json_t *obj, const char *path);

#endif
