/*
 * proto.h - decoding Kubernetes protobuf request bodies into the JSON the API would have got.
 *
 * kubectl 1.32 and later POST the objects of its imperative commands (create <kind>, create
 * token, autoscale, auth can-i, auth whoami) as application/vnd.kubernetes.protobuf, and helm
 * stores releases as protobuf Secrets. The envelope is the 4-byte magic "k8s\0" followed by
 * runtime.Unknown {1: typeMeta {1: apiVersion, 2: kind}, 2: raw (the object's own protobuf),
 * 3: contentEncoding, 4: contentType}.
 *
 * Objects are decoded by per-message descriptor tables built from the field numbers of
 * k8s.io/api and k8s.io/apimachinery generated.proto. Supported (apiVersion kind):
 *   v1: Secret, ConfigMap, ServiceAccount, Namespace, Service, ResourceQuota
 *   apps/v1: Deployment, ControllerRevision      batch/v1: Job, CronJob
 *   rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding
 *   networking.k8s.io/v1: Ingress                policy/v1: PodDisruptionBudget
 *   scheduling.k8s.io/v1: PriorityClass          coordination.k8s.io/v1: Lease
 *   authentication.k8s.io/v1: TokenRequest, SelfSubjectReview (also v1beta1, v1alpha1)
 *   authorization.k8s.io/v1: SelfSubjectAccessReview, SelfSubjectRulesReview
 *   autoscaling/v2 and autoscaling/v1: HorizontalPodAutoscaler
 *
 * The JSON follows Go's encoding/json of the decoded object: omitempty scalars left out when
 * zero, pointers kept when present, value structs and non-omitempty scalars always written;
 * keys in Go's field order. Values Go would write as null (zero Time, nil slices and pointers)
 * are left out instead. bytes are base64; metav1.Time is RFC 3339 in seconds (its protobuf
 * nanos are dropped, as in Go), MicroTime has microseconds, Duration is Go's duration string
 * ("1h0m0s"), Quantity its string, IntOrString a number or string, RawExtension the embedded
 * JSON. A repeated singular message merges, as protobuf specifies; for scalars the last wins.
 * Unknown fields are skipped by wire type. A few deep structures kubectl never sends (pod
 * volumes, probes, affinity, security contexts) are not in the tables and are skipped.
 */
#ifndef KUBELITE_PROTO_H
#define KUBELITE_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/*
 * Decode body into the JSON form of the object, with apiVersion and kind from the envelope.
 * Returns 0, ERR_PARSE (truncated, bad magic, wrong wire type, invalid UTF-8, a Time outside
 * years 0..9999, a bad IntOrString type, a RawExtension that is not JSON; msg says what and the
 * byte offset), ERR_UNSUPPORTED (a kind not listed above, or a content encoding; msg names the
 * kind and apiVersion, and the server answers 415), -ENOMEM. *out (caller decrefs) is written
 * only on success. Never reads past len. Any thread.
 */
int proto_decode(const uint8_t *body, size_t len, json_t **out, char *msg, size_t msglen) WUR;

/* Internal, exposed for tests: Go's time.Duration.String() of ns into out (NUL-terminated,
 * at most PROTO_DURATION_MAX bytes with the NUL), e.g. "1h0m0s", "1.5µs", "-2ns", "0s". */
#define PROTO_DURATION_MAX 32
void proto__duration_format(int64_t ns, char *out);

#endif
