/*
 * controller_int.h - internals shared by the files of controller/ (never included elsewhere):
 * a 128-bit content hash, JSON helpers, and the model and compiler
 * internals (model.h, compile.h).
 */
#ifndef WEFT_CONTROLLER_INT_H
#define WEFT_CONTROLLER_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controller/controller.h"
#include "core/map.h"

/* ---- hashing ------------------------------------------------------------------------------ */

struct chash {
    uint64_t a, b;
};
void controller__hash_init(struct chash *h);
void controller__hash_add(struct chash *h, const void *p, size_t n);
/* Feed a JSON value's compact serialization (object keys in insertion order). */
int controller__hash_json(struct chash *h, const json_t *v);

/* ---- JSON helpers (NULL-tolerant) --------------------------------------------------------- */

const char *controller__jstr(const json_t *o, const char *key);
json_t *controller__jget(const json_t *o, const char *path); /* "a.b.c" */
/* An integer field as long long; def when absent or not an integer. */
long long controller__jint(const json_t *o, const char *key, long long def);

/* Kubernetes label selector {matchLabels, matchExpressions} against a labels object. An
 * empty selector matches everything; a NULL selector nothing. */
bool controller__selector_match(const json_t *sel, const json_t *labels);
/* A Service's spec.selector (plain map): empty or NULL selects nothing. */
bool controller__map_selects(const json_t *sel, const json_t *labels);

/* "1m30s" style durations to milliseconds; -1 when malformed or above INT32_MAX ms. */
long long controller__duration_ms(const char *s);
/* A Kubernetes quantity ("500m", "1", "2k", "1.5") scaled to millis; -1 when malformed or
 * negative or too large. */
long long controller__quantity_milli(const json_t *v);

/*
 * The certificate subject string HAProxy 2.6 sees for a mesh peer (what `ssl_c_s_dn` returns)
 * for the identity ns/sa. PROVISIONAL: the lead points this at ca/'s ca_identity_subject_cn()
 * once ca/ lands; until then it is "/O=<trust domain>/OU=<ns>/CN=<sa>". The peer identity
 * match key stays the SPIFFE ID (docs/proxy-config.md). Returns a malloc'ed string or NULL.
 */
char *controller__peer_match_string(const char *trust_domain, const char *ns, const char *sa);

#include "controller/model.h"
#include "controller/compile.h"

#endif
