/*
 * proto.h - decoding Kubernetes protobuf request bodies (helm stores releases as protobuf).
 *
 * The envelope is the 4-byte magic "k8s\0" followed by runtime.Unknown {1: typeMeta
 * {1: apiVersion, 2: kind}, 2: raw (the object's own protobuf), 3: contentEncoding,
 * 4: contentType}. Supported objects: v1 Secret {1: metadata, 2: data map<string,bytes>,
 * 3: type, 4: stringData map<string,string>, 5: immutable} and v1 ConfigMap {1: metadata,
 * 2: data map<string,string>, 3: binaryData map<string,bytes>, 4: immutable}; ObjectMeta
 * {1 name, 2 generateName, 3 namespace, 5 uid, 6 resourceVersion, 7 generation,
 * 8 creationTimestamp (Time{1 seconds, 2 nanos}), 11 labels, 12 annotations,
 * 13 ownerReferences, 14 finalizers}. Unknown fields are skipped by wire type.
 */
#ifndef KUBELITE_PROTO_H
#define KUBELITE_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/*
 * Decode body into the JSON form of the object (bytes fields base64-encoded, as in JSON), with
 * apiVersion and kind from the envelope. Returns 0, ERR_PARSE (truncated, bad magic, wrong wire
 * type; msg says where), ERR_UNSUPPORTED (a kind other than Secret/ConfigMap; msg names it),
 * -ENOMEM. Never reads past len.
 */
int proto_decode(const uint8_t *body, size_t len, json_t **out, char *msg, size_t msglen) WUR;

#endif
