/*
 * selector.h - label selectors and field selectors, as LIST and WATCH take them.
 */
#ifndef KUBELITE_SELECTOR_H
#define KUBELITE_SELECTOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

struct selector;

/*
 * Parse a label selector string: equality (a=b, a==b, a!=b), set-based (a in (x,y),
 * a notin (x), a, !a), comma-separated requirements; "" selects everything. On a syntax error
 * returns ERR_INVALID with kube-apiserver's message in msg (e.g. 'unable to parse requirement:
 * found '(', expected: identifier'). Free with selector_free().
 */
int selector_parse_labels(const char *s, struct selector **out, char *msg, size_t msglen) WUR;

/*
 * Parse a field selector ("metadata.name=x,status.phase!=Running"). resource is the plural
 * ("pods"); the supported fields are those of kube-apiserver for that resource: metadata.name
 * and metadata.namespace for all; pods: spec.nodeName, spec.restartPolicy, spec.schedulerName,
 * spec.serviceAccountName, spec.hostNetwork, status.phase, status.podIP, status.nominatedNodeName;
 * secrets: type; events: involvedObject.{kind,namespace,name,uid,apiVersion,resourceVersion,
 * fieldPath}, reason, reportingComponent, source, type; namespaces: status.phase;
 * replicasets: status.replicas. Others -> ERR_INVALID with message
 * '"foo" is not a known field selector: only "metadata.name", "metadata.namespace"'.
 */
int selector_parse_fields(const char *s, const char *resource, struct selector **out, char *msg,
                          size_t msglen) WUR;

/*
 * Label selector from a LabelSelector object {matchLabels, matchExpressions} (for CRD use).
 * Errors are ERR_INVALID with metav1.LabelSelectorAsSelector's text ('"Foo" is not a valid label
 * selector operator', 'values: Invalid value: []string(nil): for 'in', 'notin' operators, values
 * set can't be empty'). NULL or JSON null selects everything (what kube's defaulting of an unset
 * webhook namespaceSelector/objectSelector to {} gives); callers that need kube's "nil selects
 * nothing" (LabelSelectorAsSelector(nil)) must check for NULL themselves.
 */
int selector_from_json(const json_t *label_selector, struct selector **out, char *msg,
                       size_t msglen) WUR;

/* Does obj match? Label selectors read metadata.labels; field selectors read the fields. NULL
 * selector matches everything. */
bool selector_match(const struct selector *sel, const json_t *obj);
bool selector_empty(const struct selector *sel);
void selector_free(struct selector *sel);

/*
 * The canonical string form kube prints (Selector.String()): requirements sorted by key, values
 * sorted, e.g. "app=web,tier in (a,b),!x"; field selectors as "f=v,g!=w" with \, \= \\ escaped.
 * NULL or empty selector -> "". Returns a malloc'd string (free()) or NULL on -ENOMEM.
 */
char *selector_string(const struct selector *sel);

#endif
