/*
 * yamljson.h - YAML documents to JSON values, with YAML 1.1/Kubernetes scalar typing.
 *
 * Used for YAML request bodies (application/yaml), manifests (weftctl inject, tests) and chart
 * values. Plain scalars become null (~, null, empty), booleans (true/false; also yes/no/on/off
 * as sigs.k8s.io/yaml does), integers, floats, or strings; quoted scalars are strings. Anchors
 * and aliases are resolved; merge keys (<<) honoured. Multi-document streams give one value per
 * document (empty documents skipped).
 */
#ifndef WEFT_CONF_YAMLJSON_H
#define WEFT_CONF_YAMLJSON_H

#include <jansson.h>
#include <stddef.h>

#include "core/diag.h"
#include "core/err.h"

/*
 * Parse text (len bytes) into a JSON array of documents in *out. Returns 0, ERR_PARSE (diag, if
 * not NULL, gets "yaml: line N: <problem>" as the Go library words it when it can), -ENOMEM.
 */
int yaml_to_json(const char *text, size_t len, json_t **out, struct diag *diag) WUR;

/* Serialize a JSON value as YAML (block style, keys in the object's order). Caller frees. */
char *json_to_yaml(const json_t *value);

#endif
