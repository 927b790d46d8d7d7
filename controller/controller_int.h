/*
 * controller_int.h - internals shared by the files of controller/ (never included elsewhere):
 * a string-keyed hash map, a 128-bit content hash, JSON helpers, and the model and compiler
 * internals (model.h, compile.h).
 */
#ifndef WEFT_CONTROLLER_INT_H
#define WEFT_CONTROLLER_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controller/controller.h"

/* ---- string-keyed map: open addressing, keys copied, values borrowed ---------------------- */

struct cmap_slot {
    char *key; /* NULL: empty; CMAP_TOMB: deleted */
    uint64_t h;
    void *val;
};

struct cmap {
    struct cmap_slot *s;
    size_t cap;  /* 0 or a power of two */
    size_t n;    /* live entries */
    size_t used; /* live + tombstones */
};

extern char controller__cmap_tomb[];
#define CMAP_TOMB controller__cmap_tomb
#define CMAP_LIVE(slot) ((slot)->key && (slot)->key != CMAP_TOMB)
#define CMAP_FOREACH(m, slot)                                                                      \
    for (struct cmap_slot *slot = (m)->s; slot && slot < (m)->s + (m)->cap; slot++)                \
        if (CMAP_LIVE(slot))

void *controller__cmap_get(const struct cmap *m, const char *key);
/* Insert or replace; returns 0 or -ENOMEM (map unchanged then). */
int controller__cmap_put(struct cmap *m, const char *key, void *val);
/* Remove; returns the value or NULL when absent. */
void *controller__cmap_del(struct cmap *m, const char *key);
/* Free the slots (values are the caller's). */
void controller__cmap_release(struct cmap *m);
/* The keys in sorted order (borrowed pointers, valid until the map changes); caller frees the
 * array only. *n gets the count. NULL with *n 0 when empty or out of memory (-ENOMEM in *rc). */
const char **controller__cmap_sorted_keys(const struct cmap *m, size_t *n, int *rc);

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
